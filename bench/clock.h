/*
 * clock.h - the clock, sleeping and spin-wait hint of the benchmarks, on
 * their own so that a file that wants only these (a bench/peers driver)
 * need not take common.h's process bookkeeping with them.
 */
#ifndef TASKRING_BENCH_CLOCK_H
#define TASKRING_BENCH_CLOCK_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Time                                                                      */
/* ------------------------------------------------------------------------ */

/* Nanoseconds on CLOCK_MONOTONIC; the same clock in every process. */
static inline int64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void bench_sleep_ns(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The spin-wait hint: lets the sibling hyper-thread (or the hypervisor, on a
 * VM with pause-loop exiting) have the core while we wait. */
static inline void bench_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

#endif /* TASKRING_BENCH_CLOCK_H */
