/*
 * common.h - helpers shared by the benchmark programs (not part of the library).
 *
 * Timing, percentiles, the scale knob, JSON output, cross-process futexes and
 * the bookkeeping that makes sure no child process or shared-memory name
 * outlives a benchmark, however it ends.
 *
 * Output: every scenario prints exactly one JSON object on its own line on
 * stdout; diagnostics go to stderr. Latencies are in nanoseconds measured
 * with CLOCK_MONOTONIC (a vDSO call, ~25 ns on the development VM, so it is
 * part of every sample; that is well under the figures measured).
 *
 * Placement: with two or more CPUs allowed, the parent pins itself to the
 * first and every child forked with bench_fork() to the second (BENCH_PIN=0
 * turns this off). Unpinned, the wake-affine logic of the scheduler often
 * keeps both ends of a ping-pong on one CPU, where spinning only burns the
 * other's time slice: on the 2-vCPU development VM the spinning ping-pong
 * then swings from ~0.2 us to ~50 us from one run to the next. Every JSON
 * line says "pin":"A,B" or "pin":"none".
 *
 * Sizing: each scenario has an iteration count and a wall-clock cap, both
 * multiplied by the environment variable BENCH_SCALE (a float, default 1),
 * so BENCH_SCALE=0.1 gives a quick run and BENCH_SCALE=5 a steadier one.
 * Whichever limit comes first ends the run; the JSON reports the iterations
 * actually made. BENCH_ONLY=prefix[,prefix...] runs only the scenarios whose
 * names start with one of the prefixes.
 */
#ifndef TASKRING_BENCH_COMMON_H
#define TASKRING_BENCH_COMMON_H

#include <errno.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__GNUC__)
#define BENCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BENCH_PRINTF(f, a)
#endif

/* Two cache lines: keeps the adjacent-line prefetcher from pairing words
 * that different processes write. */
#define BENCH_LINE 128

#include "clock.h"

/* ------------------------------------------------------------------------ */
/* Scale                                                                     */
/* ------------------------------------------------------------------------ */

/* BENCH_SCALE, read once; a bad value is reported and replaced by 1. */
static inline double bench_scale(void)
{
	static double scale;
	if (scale == 0) {
		const char *s = getenv("BENCH_SCALE");
		char *end = NULL;
		scale = 1;
		if (s && *s) {
			double v = strtod(s, &end);
			if (end && *end == '\0' && v > 0 && v < 1e6)
				scale = v;
			else
				fprintf(stderr, "bench: ignoring bad BENCH_SCALE=%s\n", s);
		}
	}
	return scale;
}

/*
 * Should @scenario run? BENCH_ONLY, when set, is a comma-separated list of
 * name prefixes ("rtt.spin_,tput"); unset or empty runs everything.
 */
static inline int bench_want(const char *scenario)
{
	const char *p = getenv("BENCH_ONLY");
	if (!p || !*p)
		return 1;
	while (*p) {
		size_t len = strcspn(p, ",");
		if (len && strncmp(scenario, p, len) == 0)
			return 1;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

/* An iteration count times the scale, at least @min. */
static inline size_t bench_iters(size_t base, size_t min)
{
	double v = (double)base * bench_scale();
	return v < (double)min ? min : (size_t)v;
}

/* A wall-clock cap of @base_s seconds times the scale, in ns. */
static inline int64_t bench_cap_ns(double base_s)
{
	return (int64_t)(base_s * bench_scale() * 1e9);
}

/* ------------------------------------------------------------------------ */
/* CPU placement                                                             */
/* ------------------------------------------------------------------------ */

static int bench_cpus[2] = { -1, -1 }; /* parent's, children's; -1: unpinned */
static char bench_pin_text[32] = "none";

/* Pins the calling thread to bench_cpus[@which]; no-op when unpinned. */
static inline void bench_pin_self(int which)
{
	cpu_set_t set;
	if (bench_cpus[which] < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(bench_cpus[which], &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		perror("bench: sched_setaffinity");
}

/* Chooses the two CPUs (the first two allowed) unless BENCH_PIN=0. */
static inline void bench_pin_init(void)
{
	const char *v = getenv("BENCH_PIN");
	cpu_set_t allowed;
	int n = 0;
	if ((v && strcmp(v, "0") == 0) || sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		return;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &allowed))
			bench_cpus[n++] = c;
	if (n < 2) {
		bench_cpus[0] = bench_cpus[1] = -1;
		return;
	}
	snprintf(bench_pin_text, sizeof(bench_pin_text), "%d,%d", bench_cpus[0], bench_cpus[1]);
	bench_pin_self(0);
}

/* ------------------------------------------------------------------------ */
/* Percentiles and JSON                                                      */
/* ------------------------------------------------------------------------ */

static int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted @s[0..n), @q in (0, 1]. */
static inline uint64_t bench_pct(const uint64_t *s, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);
	return s[rank == 0 ? 0 : rank - 1];
}

/* Writes @s as a JSON string body (without the quotes) to stdout. */
static inline void bench_json_escape(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
}

/*
 * Prints the members "iters":n,"p50_ns":...,"mean_ns":... of the @n > 0
 * samples @s (sorted here), without braces or a leading comma.
 */
static inline void bench_print_pcts(uint64_t *s, size_t n)
{
	long double sum = 0;
	qsort(s, n, sizeof(*s), bench_cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += s[i];
	printf("\"iters\":%zu,\"p50_ns\":%llu,\"p90_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu,\"min_ns\":%llu,"
	       "\"max_ns\":%llu,\"mean_ns\":%.0Lf",
	       n, (unsigned long long)bench_pct(s, n, 0.50), (unsigned long long)bench_pct(s, n, 0.90),
	       (unsigned long long)bench_pct(s, n, 0.99), (unsigned long long)bench_pct(s, n, 0.999),
	       (unsigned long long)s[0], (unsigned long long)s[n - 1], sum / n);
}

/*
 * Prints {"scenario":..., "iters":n, "p50_ns":... "max_ns":..., <extra>}.
 * Sorts @s in place. @extra_fmt (may be NULL) formats more members, without
 * a leading comma, e.g. "\"spin_ns\":%d". Flushed at once so a tee sees
 * each line when it is made and a fork() never duplicates it.
 */
BENCH_PRINTF(4, 5)
static inline void bench_print_latency(const char *scenario, uint64_t *s, size_t n, const char *extra_fmt, ...)
{
	if (n == 0) {
		printf("{\"scenario\":\"%s\",\"iters\":0,\"error\":\"no samples\"}\n", scenario);
		fflush(stdout);
		return;
	}
	printf("{\"scenario\":\"%s\",", scenario);
	bench_print_pcts(s, n);
	printf(",\"pin\":\"%s\"", bench_pin_text);
	if (extra_fmt && *extra_fmt) {
		va_list ap;
		va_start(ap, extra_fmt);
		putchar(',');
		vprintf(extra_fmt, ap);
		va_end(ap);
	}
	printf("}\n");
	fflush(stdout);
}

/* Prints {"scenario":..., "jobs":n, "secs":..., "ops_per_s":..., <extra>}. */
BENCH_PRINTF(4, 5)
static inline void bench_print_tput(const char *scenario, uint64_t jobs, int64_t elapsed_ns, const char *extra_fmt,
				    ...)
{
	double secs = (double)elapsed_ns / 1e9;
	printf("{\"scenario\":\"%s\",\"jobs\":%llu,\"secs\":%.3f,\"ops_per_s\":%.0f", scenario,
	       (unsigned long long)jobs, secs, secs > 0 ? (double)jobs / secs : 0.0);
	printf(",\"pin\":\"%s\"", bench_pin_text);
	if (extra_fmt && *extra_fmt) {
		va_list ap;
		va_start(ap, extra_fmt);
		putchar(',');
		vprintf(extra_fmt, ap);
		va_end(ap);
	}
	printf("}\n");
	fflush(stdout);
}

/* Counts scenarios that failed, so main() can exit non-zero at the end. */
static int bench_failures;

/* Prints {"scenario":..., "error":"..."} and the same on stderr. */
BENCH_PRINTF(2, 3)
static inline void bench_print_error(const char *scenario, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "bench: %s: %s\n", scenario, msg);
	printf("{\"scenario\":\"%s\",\"error\":\"", scenario);
	bench_json_escape(msg);
	printf("\"}\n");
	fflush(stdout);
	bench_failures++;
}

/* ------------------------------------------------------------------------ */
/* Futexes in shared memory                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Shared (not FUTEX_PRIVATE_FLAG) operations: the words live in a
 * MAP_SHARED mapping and the other side is another process, which a private
 * futex would never wake.
 */
static inline int bench_futex_wait(uint32_t *word, uint32_t val, int64_t rel_ns)
{
	struct timespec ts, *tsp = NULL;
	if (rel_ns >= 0) {
		ts.tv_sec = rel_ns / 1000000000LL;
		ts.tv_nsec = rel_ns % 1000000000LL;
		tsp = &ts;
	}
	return (int)syscall(SYS_futex, word, FUTEX_WAIT, val, tsp, NULL, 0);
}

static inline int bench_futex_wake(uint32_t *word, int n)
{
	return (int)syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* Stores @val into a shared word and wakes everyone sleeping on it. */
static inline void bench_flag_set(uint32_t *word, uint32_t val)
{
	__atomic_store_n(word, val, __ATOMIC_RELEASE);
	bench_futex_wake(word, INT32_MAX);
}

/* Zero-filled shared anonymous memory that fork()ed children see. */
static inline void *bench_shared_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("bench: mmap");
		exit(1);
	}
	return p;
}

/* ------------------------------------------------------------------------ */
/* Children and names that must not outlive the benchmark                    */
/* ------------------------------------------------------------------------ */

#define BENCH_MAX_CHILDREN 8
#define BENCH_MAX_NAMES 8

/* Filled in the parent only; a signal handler reads them, hence volatile. */
static volatile pid_t bench_children[BENCH_MAX_CHILDREN];
static char bench_names[BENCH_MAX_NAMES][64];
static volatile int bench_is_child;

/* Kills and reaps every child still registered. Async-signal-safe. */
static inline void bench_kill_children(void)
{
	if (bench_is_child)
		return;
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++) {
		pid_t pid = bench_children[i];
		if (pid > 0) {
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			bench_children[i] = 0;
		}
	}
}

/* Removes every shm name still registered. shm_unlink() is one unlink(2) on
 * /dev/shm in glibc, so this is safe enough in a signal handler. */
static inline void bench_unlink_names(void)
{
	if (bench_is_child)
		return;
	for (int i = 0; i < BENCH_MAX_NAMES; i++) {
		if (bench_names[i][0]) {
			shm_unlink(bench_names[i]);
			bench_names[i][0] = '\0';
		}
	}
}

static inline void bench_cleanup(void)
{
	bench_kill_children();
	bench_unlink_names();
}

static void bench_on_signal(int sig)
{
	bench_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Call first in main(): cleanup at exit and on the usual fatal signals. */
static inline void bench_init(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = bench_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* A closed tee should end the run, not leave children behind. */
	sigaction(SIGPIPE, &sa, NULL);
	atexit(bench_cleanup);
	bench_scale();
	bench_pin_init();
}

/* A fresh "/<prefix>-<pid>-<n>" shm name, registered so it is unlinked
 * however the program ends. Returns NULL when the table is full. */
static inline const char *bench_shm_name(const char *prefix)
{
	static unsigned counter;
	for (int i = 0; i < BENCH_MAX_NAMES; i++) {
		if (!bench_names[i][0]) {
			snprintf(bench_names[i], sizeof(bench_names[i]), "/%s-%d-%u", prefix, (int)getpid(),
				 counter++);
			shm_unlink(bench_names[i]); /* a leftover of a recycled pid */
			return bench_names[i];
		}
	}
	return NULL;
}

/* Unlinks a name made by bench_shm_name() now and forgets it. */
static inline void bench_shm_release(const char *name)
{
	for (int i = 0; i < BENCH_MAX_NAMES; i++) {
		if (bench_names[i][0] && bench_names[i] == name) {
			shm_unlink(bench_names[i]);
			bench_names[i][0] = '\0';
		}
	}
}

/*
 * fork() that registers the child. In the child: returns 0, the child dies
 * with its parent (PR_SET_PDEATHSIG) and must leave with _exit() so that it
 * runs none of the parent's atexit handlers or stdio flushes.
 * In the parent: the child's pid, or -1 (reported).
 */
static inline pid_t bench_fork(void)
{
	pid_t parent = getpid();
	fflush(NULL); /* or the child's copy of the buffers could be written twice */
	pid_t pid = fork();
	if (pid < 0) {
		perror("bench: fork");
		return -1;
	}
	if (pid == 0) {
		bench_is_child = 1;
		for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
			bench_children[i] = 0;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) /* the parent died before prctl() */
			_exit(1);
		bench_pin_self(1);
		return 0;
	}
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++) {
		if (bench_children[i] == 0) {
			bench_children[i] = pid;
			return pid;
		}
	}
	fprintf(stderr, "bench: too many children\n");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/*
 * Waits up to @timeout_ns for a child to exit and unregisters it. Returns its
 * exit status (0..255), or -1 when it was killed by a signal, or -2 when it
 * did not exit in time (it is then killed and reaped).
 */
static inline int bench_reap(pid_t pid, int64_t timeout_ns)
{
	int st = 0, rc = -2;
	int64_t deadline = bench_now_ns() + timeout_ns;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
			break;
		}
		if (r < 0 && errno != EINTR) {
			rc = -1;
			break;
		}
		if (bench_now_ns() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			break;
		}
		bench_sleep_ns(1000000);
	}
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (bench_children[i] == pid)
			bench_children[i] = 0;
	return rc;
}

/* Has the child exited (it is then reaped and *statusp gets what
 * bench_reap() would return)? Non-blocking. */
static inline int bench_child_gone(pid_t pid, int *statusp)
{
	int st;
	pid_t r = waitpid(pid, &st, WNOHANG);
	if (r != pid)
		return 0;
	*statusp = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (bench_children[i] == pid)
			bench_children[i] = 0;
	return 1;
}

#endif /* TASKRING_BENCH_COMMON_H */
