/*
 * testutil.h - helpers shared by the test programs (not part of the library).
 *
 * Every test gets its own shared-memory name and temporary directory, derived
 * from the test program's pid and a counter, so tests never see each other's
 * stores. tu_alarm() arms a watchdog so a hung test fails instead of hanging
 * the suite; tests/run.sh adds an outer timeout as well.
 */
#ifndef TASKRING_TESTUTIL_H
#define TASKRING_TESTUTIL_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "taskring.h"

/* A fresh "/taskring-test-<pid>-<n>" name; unlinked first in case it exists. */
static inline const char *tu_shm_name(void)
{
	static char names[64][64];
	static unsigned n;
	char *s = names[n % 64];
	snprintf(s, 64, "/taskring-test-%d-%u", (int)getpid(), n++);
	taskring_store_unlink(s);
	return s;
}

/* Nanoseconds on CLOCK_MONOTONIC. */
static inline int64_t tu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Kill the whole test program if it runs longer than @secs. */
static inline void tu_alarm(unsigned secs)
{
	signal(SIGALRM, SIG_DFL);
	alarm(secs);
}

/* Wait for a child and return its exit status, or -1 if it did not exit. */
static inline int tu_wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Is a sanitizer build running (the scale of soak tests shrinks)? */
static inline int tu_sanitized(void)
{
	const char *s = getenv("SANITIZE");
	return s && *s;
}

/* A store with small sizing for tests. */
static inline struct taskring_store *tu_open_small(const char *name, uint32_t slots)
{
	struct taskring_store_opts o;
	struct taskring_store *st = NULL;
	memset(&o, 0, sizeof(o));
	o.slots = slots;
	o.max_payload = 64 * 1024;
	o.arena_bytes = 8u << 20;
	int rc = taskring_store_open(name, &o, &st);
	assert_int_equal(rc, 0);
	return st;
}

#endif
