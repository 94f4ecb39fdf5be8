/*
 * futex.c - the only place that makes futex system calls.
 *
 * Futex words live in the shared mapping, so FUTEX_PRIVATE_FLAG is not used
 * for them (it would lose wake-ups across processes); only a worker's own
 * process-local drain counter uses the private form. Waits take an absolute
 * CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET), so a retry after EINTR never
 * stretches the wait. The bitset lets one word serve many queues: an idle
 * worker waits with the bits of the queues it serves and a producer wakes
 * with the bit of its queue.
 *
 * Each call is counted per process (relaxed atomics, on the slow path only),
 * so tests can prove that waiting makes no periodic system calls.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static _Atomic uint64_t futex_waits, futex_wakes;

uint64_t tr__futex_wait_calls(void)
{
	return atomic_load_explicit(&futex_waits, memory_order_relaxed);
}

uint64_t tr__futex_wake_calls(void)
{
	return atomic_load_explicit(&futex_wakes, memory_order_relaxed);
}

/*
 * Sleep while *word == val, until woken or until @deadline_mono (ns on
 * CLOCK_MONOTONIC; < 0 = no deadline). Returns 0 when woken (or spuriously),
 * -EAGAIN when *word already differed, -ETIMEDOUT at the deadline, -EINTR.
 */
int tr__futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline_mono, uint32_t bitset)
{
	return tr__futex_wait_op(word, val, deadline_mono, bitset, 0);
}

/*
 * The same, with @private set for a word that only this process uses (a
 * worker's drain counter): FUTEX_PRIVATE_FLAG skips the shared-mapping
 * lookup. Never use it for a word in the store.
 */
int tr__futex_wait_op(_Atomic uint32_t *word, uint32_t val, int64_t deadline_mono, uint32_t bitset, int private)
{
	struct timespec ts, *tsp = NULL;

	if (deadline_mono >= 0) {
		ts.tv_sec = deadline_mono / 1000000000LL;
		ts.tv_nsec = deadline_mono % 1000000000LL;
		tsp = &ts;
	}
	atomic_fetch_add_explicit(&futex_waits, 1, memory_order_relaxed);
	int op = FUTEX_WAIT_BITSET | (private ? FUTEX_PRIVATE_FLAG : 0);
	long rc = syscall(SYS_futex, (uint32_t *)word, op, val, tsp, NULL, bitset);
	if (rc == 0)
		return 0;
	return -errno;
}

/*
 * Sleep on several shared words at once (futex_waitv, Linux 5.16+) until one
 * of them differs from its value, one is woken, or @deadline_mono passes.
 * Returns the index of a woken word (or 0 on a spurious wake-up), -EAGAIN when
 * a word already differed, -ETIMEDOUT, -EINTR, or -ENOSYS on older kernels.
 */
int tr__futex_waitv(_Atomic uint32_t *const *words, const uint32_t *vals, unsigned n, int64_t deadline_mono)
{
	struct futex_waitv w[FUTEX_WAITV_MAX];
	struct timespec ts, *tsp = NULL;

	if (n == 0 || n > FUTEX_WAITV_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		w[i].val = vals[i];
		w[i].uaddr = (uintptr_t)words[i];
		w[i].flags = FUTEX_32; /* shared: no FUTEX_PRIVATE_FLAG */
		w[i].__reserved = 0;
	}
	if (deadline_mono >= 0) {
		ts.tv_sec = deadline_mono / 1000000000LL;
		ts.tv_nsec = deadline_mono % 1000000000LL;
		tsp = &ts;
	}
	atomic_fetch_add_explicit(&futex_waits, 1, memory_order_relaxed);
#ifdef SYS_futex_waitv
	long rc = syscall(SYS_futex_waitv, w, n, 0, tsp, CLOCK_MONOTONIC);
	return rc >= 0 ? (int)rc : -errno;
#else
	return -ENOSYS;
#endif
}

/* Wake up to @n waiters whose bitset intersects @bitset. Returns how many. */
int tr__futex_wake(_Atomic uint32_t *word, int n, uint32_t bitset)
{
	return tr__futex_wake_op(word, n, bitset, 0);
}

int tr__futex_wake_op(_Atomic uint32_t *word, int n, uint32_t bitset, int private)
{
	atomic_fetch_add_explicit(&futex_wakes, 1, memory_order_relaxed);
	int op = FUTEX_WAKE_BITSET | (private ? FUTEX_PRIVATE_FLAG : 0);
	long rc = syscall(SYS_futex, (uint32_t *)word, op, n, NULL, NULL, bitset);
	return rc < 0 ? -errno : (int)rc;
}
