/*
 * util.c - clocks, names, random numbers, UUIDv7 and error texts.
 *
 * Job ids are UUIDv7 (RFC 9562): 48 bits of Unix time in milliseconds, the
 * version nibble 7, 12 bits rand_a, the variant bits 10, 62 bits rand_b. The
 * RFC leaves rand_a/rand_b to the implementation; taskring puts the job's
 * slot index in the low 24 bits of rand_b and random bits in the other 50.
 * An id therefore names its slot, and lookup by id is one bounds check and a
 * 16-byte compare against the slot's stored id: no shared hash index to
 * keep consistent across crashes. Ids stay unique because the slot's stored
 * id is compared in full, and time-ordered across milliseconds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"

int64_t tr__now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t tr__now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* TASKRING_NO_IOURING in the environment: set to anything but "" or "0",
 * io_uring is not used (the log's writes and job waits take their
 * fallbacks). One rule for both users (async.c, wal.c). */
int tr__no_iouring_env(void)
{
	const char *v = getenv("TASKRING_NO_IOURING");
	return v && *v && strcmp(v, "0") != 0;
}

/* CLOCK_MONOTONIC_COARSE: a few ns (no clock read), ticks of 1-4 ms. For
 * leases, which are milliseconds to hours long. */
int64_t tr__now_coarse(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * CLOCK_REALTIME for an instant read on CLOCK_MONOTONIC, without reading the
 * wall clock each time (a clock read costs ~35 ns on a VM; a worker needs
 * both clocks per job). The offset between the two clocks only changes when
 * the wall clock is stepped (slewing moves both), so it is re-measured once
 * a millisecond per thread; a step shows up within that millisecond.
 */
int64_t tr__mono_to_real(int64_t mono)
{
	static __thread int64_t off, off_at;
	static __thread int have;
	if (!have || mono < off_at || mono - off_at > 1000000) {
		have = 1;
		int64_t r = tr__now_real();
		int64_t m = tr__now_mono();
		off = r - m;
		off_at = m;
	}
	return mono + off;
}

/*
 * Spin until @done(@arg) returns non-zero, for at most @spin_ns and never
 * past @deadline (CLOCK_MONOTONIC ns, -1 = none). @done is called every
 * @mask + 1 pauses (@mask is a power of two minus one): looking at a shared
 * word pulls its cache line from the writer, so busy words are looked at
 * less often. The clock is read every 64 pauses. Returns 1 when done, 0 when
 * the spin time ran out (or is 0), -ETIMEDOUT when the deadline passed.
 */
int tr__spin(int64_t spin_ns, int64_t deadline, unsigned mask, int (*done)(void *), void *arg)
{
	if (spin_ns <= 0)
		return 0;
	int64_t until = tr__now_mono() + spin_ns;
	for (unsigned i = 0;; i++) {
		if ((i & mask) == 0 && done(arg))
			return 1;
		tr__cpu_relax();
		if ((i & 63) == 63) {
			int64_t now = tr__now_mono();
			if (deadline >= 0 && now >= deadline)
				return -ETIMEDOUT;
			if (now >= until)
				return 0;
		}
	}
}

void tr__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* Returns 0 for a valid name, -EINVAL or -ENAMETOOLONG otherwise. */
int tr__name_check(const char *name)
{
	size_t i;

	if (!name || !name[0])
		return -EINVAL;
	for (i = 0; name[i]; i++) {
		unsigned char c = (unsigned char)name[i];
		if (i >= TASKRING_NAME_MAX)
			return -ENAMETOOLONG;
		if (c < 0x21 || c > 0x7e || c == '"' || c == '\\')
			return -EINVAL;
	}
	return 0;
}

/*
 * The process id, cached: getpid() is a system call in current glibc, and
 * system calls cost microseconds on a VM. A fork handler refreshes it in the
 * child and bumps fork_gen, which makes every thread's generator reseed.
 */
static pid_t cached_pid;
static _Atomic uint32_t fork_gen = 1;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void after_fork_child(void)
{
	cached_pid = getpid();
	atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void pid_init(void)
{
	cached_pid = getpid();
	pthread_atfork(NULL, NULL, after_fork_child);
	tr__proc_fork_init();
}

pid_t tr__pid(void)
{
	pthread_once(&pid_once, pid_init);
	return cached_pid;
}

/*
 * A per-thread xoshiro256** generator seeded from getrandom(). Used for ids
 * and backoff jitter; not for secrets. After fork() the child reseeds (the
 * pid is mixed in) so parent and child never produce the same ids.
 */
static __thread uint64_t rng_s[4];
static __thread uint32_t rng_gen;

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t tr__rand64(void)
{
	uint32_t gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
	if (rng_gen != gen) {
		pid_t pid = tr__pid();
		uint64_t seed[4] = {0};
		if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
			seed[0] = (uint64_t)tr__now_mono();
			seed[1] = (uint64_t)tr__now_real();
			seed[2] = (uint64_t)(uintptr_t)&seed;
		}
		seed[3] ^= (uint64_t)pid * 0x9e3779b97f4a7c15ull;
		for (int i = 0; i < 4; i++)
			rng_s[i] = seed[i] | 1;
		rng_gen = gen;
	}
	uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
	rng_s[2] ^= rng_s[0];
	rng_s[3] ^= rng_s[1];
	rng_s[1] ^= rng_s[2];
	rng_s[0] ^= rng_s[3];
	rng_s[2] ^= t;
	rng_s[3] = rotl(rng_s[3], 45);
	return r;
}

void tr__uuid7(uint8_t u[16], uint32_t slot, int64_t now_real)
{
	uint64_t ms = (uint64_t)(now_real / 1000000);
	uint64_t r = tr__rand64();

	for (int i = 0; i < 6; i++)
		u[i] = (uint8_t)(ms >> (40 - 8 * i));
	u[6] = (uint8_t)(0x70 | ((r >> 8) & 0x0f)); /* version 7, rand_a high */
	u[7] = (uint8_t)r;                           /* rand_a low */
	u[8] = (uint8_t)(0x80 | ((r >> 16) & 0x3f)); /* variant 10, rand_b */
	u[9] = (uint8_t)(r >> 24);
	u[10] = (uint8_t)(r >> 32);
	u[11] = (uint8_t)(r >> 40);
	u[12] = (uint8_t)(r >> 48);
	u[13] = (uint8_t)(slot >> 16);
	u[14] = (uint8_t)(slot >> 8);
	u[15] = (uint8_t)slot;
}

uint32_t tr__uuid_slot(const uint8_t u[16])
{
	return ((uint32_t)u[13] << 16) | ((uint32_t)u[14] << 8) | u[15];
}

void tr__uuid_format(const uint8_t u[16], char *out)
{
	static const char hex[] = "0123456789abcdef";
	int j = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[u[i] >> 4];
		out[j++] = hex[u[i] & 15];
	}
	out[j] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Strict: exactly 8-4-4-4-12 hex digits, NUL after them. */
int tr__uuid_parse(const char *t, uint8_t out[16])
{
	uint8_t u[16];
	int j = 0;

	if (!t)
		return -EINVAL;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10) {
			if (t[j++] != '-')
				return -EINVAL;
		}
		int hi = hexval(t[j]);
		int lo = hi < 0 ? -1 : hexval(t[j + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		u[i] = (uint8_t)(hi << 4 | lo);
		j += 2;
	}
	if (t[j] != 0)
		return -EINVAL;
	memcpy(out, u, 16);
	return 0;
}

const char *taskring_strerror(int err)
{
	switch (err) {
#define TASKRING_ERR_TEXT(name, num, text) case TASKRING_##name: return text;
		TASKRING_ERRNO_MAP(TASKRING_ERR_TEXT)
#undef TASKRING_ERR_TEXT
	case 0:
		return "success";
	default:
		break;
	}
	if (err < 0 && err > -4096) {
		const char *s = strerrordesc_np(-err);
		if (s)
			return s;
	}
	return "unknown error";
}

const char *taskring_status_name(int status)
{
	static const char *const names[] = {"pending", "running", "complete", "failed", "dead", "cancelled"};
	if (status < 0 || status >= TASKRING_STATUS_COUNT)
		return "unknown";
	return names[status];
}

/*
 * Make *@bufp (of *@capp bytes, malloc()ed or NULL) hold at least @need
 * bytes, doubling from @first; its contents are kept. 0 or -ENOMEM (then
 * it is as it was).
 */
int tr__buf_reserve(uint8_t **bufp, size_t *capp, size_t need, size_t first)
{
	if (need <= *capp)
		return 0;
	size_t cap = *capp ? *capp : first;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(*bufp, cap);
	if (!p)
		return -ENOMEM;
	*bufp = p;
	*capp = cap;
	return 0;
}

/* ---- crash points (see internal.h) ------------------------------------------ */

int tr__crash_armed;
static int crash_point = -1;
static uint32_t crash_left;

static const char *const crash_names[TR_CP_COUNT] = {
#define TR_CP_NAME(id, name) name,
	TR_CRASH_POINTS(TR_CP_NAME)
#undef TR_CP_NAME
};

const char *tr__crash_name(int point)
{
	return point >= 0 && point < TR_CP_COUNT ? crash_names[point] : NULL;
}

int tr__crash_arm(const char *name, uint32_t nth)
{
	if (!name) {
		tr__crash_armed = 0;
		crash_point = -1;
		return 0;
	}
	for (int i = 0; i < TR_CP_COUNT; i++)
		if (!strcmp(name, crash_names[i])) {
			if (nth < 1)
				return -EINVAL;
			crash_point = i;
			crash_left = nth;
			tr__crash_armed = 1;
			return 0;
		}
	return -EINVAL;
}

void tr__crash_hit(enum tr_crash_point point)
{
	if ((int)point == crash_point && __atomic_sub_fetch(&crash_left, 1, __ATOMIC_RELAXED) == 0)
		_exit(TR_CRASH_STATUS);
}
