/*
 * testutil.h - helpers shared by the test programs (not part of the library).
 *
 * Every test gets its own shared-memory name and temporary directory, derived
 * from the test program's pid and a counter, so tests never see each other's
 * stores. tu_alarm() arms a watchdog so a hung test fails instead of hanging
 * the suite; tests/run.sh adds an outer timeout as well.
 *
 * Everything here is a macro or a static inline function, so a test program
 * pays (and warns) for nothing it does not use. State that must outlive a
 * call lives in function-local statics (tu_kids()).
 *
 * Sections: time and waiting; return-code checks (assert_rc for cmocka,
 * CK/CK_RC in children); stores and workers; the per-test fixture of the
 * single-process tests; child processes (tu_spawn(), tu_kid_join(), ...).
 */
#ifndef TASKRING_TESTUTIL_H
#define TASKRING_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "taskring.h"

#define MS 1000000LL     /* nanoseconds in a millisecond */
#define SEC 1000000000LL /* nanoseconds in a second */

/* ------------------------------------------------------------------------ */
/* Names, time, waiting                                                      */
/* ------------------------------------------------------------------------ */

/* A fresh "/taskring-test-<run>-<pid>-<n>" name (<run>: tests/run.sh's
 * TR_TEST_RUN, so that a suite cleans up only its own stores, never those
 * of another suite running at the same time); unlinked first in case it
 * exists. */
static inline const char *tu_shm_name(void)
{
	static char names[64][80];
	static unsigned n;
	char *s = names[n % 64];
	const char *run = getenv("TR_TEST_RUN");
	snprintf(s, 80, "/taskring-test-%.12s-%d-%u", run && *run ? run : "x", (int)getpid(), n++);
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

/* Sleep @ns nanoseconds (resumed after a signal). */
static inline void tu_sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / SEC), (long)(ns % SEC) };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static inline void tu_sleep_ms(int ms)
{
	tu_sleep_ns((int64_t)ms * MS);
}

/* Test-side waiting (not the library's): is *p >= want within timeout_ms?
 * Looks every millisecond. */
static inline int tu_wait_int(_Atomic int *p, int want, int timeout_ms)
{
	int64_t end = tu_now_ns() + (int64_t)timeout_ms * MS;
	while (atomic_load(p) < want) {
		if (tu_now_ns() > end)
			return 0;
		tu_sleep_ms(1);
	}
	return 1;
}

/* Wait up to timeout_ms for @j to reach @status; returns the last status seen. */
static inline int tu_wait_status(const struct taskring_job *j, int status, int timeout_ms)
{
	int64_t end = tu_now_ns() + (int64_t)timeout_ms * MS;
	int s;
	while ((s = taskring_job_status(j)) != status) {
		if (tu_now_ns() > end)
			return s;
		tu_sleep_ms(1);
	}
	return s;
}

/* Kill the whole test program if it runs longer than @secs. */
static inline void tu_alarm(unsigned secs)
{
	signal(SIGALRM, SIG_DFL);
	alarm(secs);
}

/* Before cmocka_run_group_tests(): TR_TEST_FILTER runs only the tests
 * matching its pattern, TR_TEST_SKIP skips those matching its pattern. */
static inline void tu_test_filters(void)
{
	if (getenv("TR_TEST_FILTER"))
		cmocka_set_test_filter(getenv("TR_TEST_FILTER"));
	if (getenv("TR_TEST_SKIP"))
		cmocka_set_skip_filter(getenv("TR_TEST_SKIP"));
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

/* ------------------------------------------------------------------------ */
/* Return-code checks                                                        */
/* ------------------------------------------------------------------------ */

/* Like assert_int_equal, but says which error each side is. */
#define assert_rc(expr, want)                                                                   \
	do {                                                                                    \
		long g_ = (long)(expr), w_ = (long)(want);                                      \
		if (g_ != w_)                                                                   \
			fail_msg("%s = %ld (%s), expected %ld (%s)", #expr, g_,                 \
				 taskring_strerror((int)g_), w_, taskring_strerror((int)w_));   \
	} while (0)

/*
 * Checks for fork()ed children, which never call cmocka: a failed check
 * prints the file, line and values to stderr and _exit()s with
 * TU_CHILD_FAILED, which the parent sees as the child's exit status.
 */
#define TU_CHILD_FAILED 3

#define CK(cond)                                                                                  \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			fprintf(stderr, "[child %d] %s:%d: check failed: %s\n", (int)getpid(),   \
				__FILE__, __LINE__, #cond);                                       \
			_exit(TU_CHILD_FAILED);                                                   \
		}                                                                                 \
	} while (0)

#define CK_RC(expr, want)                                                                         \
	do {                                                                                      \
		int ck_rc_ = (expr), ck_want_ = (want);                                           \
		if (ck_rc_ != ck_want_) {                                                         \
			fprintf(stderr, "[child %d] %s:%d: %s = %d (%s), want %d (%s)\n",          \
				(int)getpid(), __FILE__, __LINE__, #expr, ck_rc_,                 \
				taskring_strerror(ck_rc_), ck_want_, taskring_strerror(ck_want_)); \
			_exit(TU_CHILD_FAILED);                                                   \
		}                                                                                 \
	} while (0)

/* ------------------------------------------------------------------------ */
/* Stores and workers                                                        */
/* ------------------------------------------------------------------------ */

/* Store options with this sizing (0 = the default) and nothing else set. */
static inline struct taskring_store_opts tu_store_opts(uint32_t slots, uint32_t max_payload, uint64_t arena_bytes,
							uint32_t queues, uint32_t tasks)
{
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.slots = slots;
	o.max_payload = max_payload;
	o.arena_bytes = arena_bytes;
	o.queues = queues;
	o.tasks = tasks;
	return o;
}

/* Open (or create) @name with @o; the open must succeed. */
static inline struct taskring_store *tu_open(const char *name, const struct taskring_store_opts *o)
{
	struct taskring_store *st = NULL;
	assert_rc(taskring_store_open(name, o, &st), 0);
	return st;
}

/* A store with small sizing for tests. */
static inline struct taskring_store *tu_open_small(const char *name, uint32_t slots)
{
	struct taskring_store_opts o = tu_store_opts(slots, 64 * 1024, 8u << 20, 0, 0);
	return tu_open(name, &o);
}

/* taskring_worker_create() with default options but @threads, serving the
 * @nq queues @queues in order (NULL: the default queue). */
static inline int tu_worker_create(struct taskring_store *st, const char *const *queues, uint32_t nq,
				   uint32_t threads, struct taskring_worker **out)
{
	struct taskring_worker_opts wo;
	taskring_worker_opts_init(&wo);
	wo.threads = threads;
	if (queues) {
		wo.queues = queues;
		wo.nqueues = nq;
	}
	return taskring_worker_create(st, &wo, out);
}

/* The same, for the test thread: the create must succeed. */
static inline struct taskring_worker *tu_worker(struct taskring_store *st, const char *const *queues, uint32_t nq,
						uint32_t threads)
{
	struct taskring_worker *w = NULL;
	assert_rc(tu_worker_create(st, queues, nq, threads, &w), 0);
	return w;
}

/* Enqueue options as taskring_enqueue_opts_init() makes them. */
static inline struct taskring_enqueue_opts tu_eopts(void)
{
	struct taskring_enqueue_opts o;
	taskring_enqueue_opts_init(&o);
	return o;
}

/* Two stats snapshots are the same in every count. */
static inline void tu_assert_stats_same(const struct taskring_queue_stats *a, const struct taskring_queue_stats *b)
{
	for (int i = 0; i < TASKRING_STATUS_COUNT; i++)
		if (a->by_status[i] != b->by_status[i])
			fail_msg("by_status[%s]: %llu != %llu", taskring_status_name(i),
				 (unsigned long long)a->by_status[i], (unsigned long long)b->by_status[i]);
	assert_int_equal(a->enqueued, b->enqueued);
	assert_int_equal(a->started, b->started);
	assert_int_equal(a->completed, b->completed);
	assert_int_equal(a->failed, b->failed);
	assert_int_equal(a->dead, b->dead);
	assert_int_equal(a->cancelled, b->cancelled);
	assert_int_equal(a->retried, b->retried);
	assert_int_equal(a->paused, b->paused);
}

/* ------------------------------------------------------------------------ */
/* Per-test fixture of the single-process tests                              */
/* ------------------------------------------------------------------------ */

/*
 * A fresh store name per test; the teardown destroys the worker and closes
 * the store the test left in it and unlinks the name. A test program that
 * needs more per-test state puts a struct tu_fx first in its own struct and
 * sets it up with tu_fx_alloc(state, sizeof(its struct)).
 */
struct tu_fx {
	const char *name;
	struct taskring_store *st;
	struct taskring_worker *w;
};

static inline int tu_fx_alloc(void **state, size_t size)
{
	struct tu_fx *f = calloc(1, size);
	if (!f)
		return -1;
	f->name = tu_shm_name();
	*state = f;
	return 0;
}

static inline int tu_fx_setup(void **state)
{
	return tu_fx_alloc(state, sizeof(struct tu_fx));
}

static inline int tu_fx_teardown(void **state)
{
	struct tu_fx *f = *state;
	if (f->w)
		taskring_worker_destroy(f->w);
	if (f->st)
		taskring_store_close(f->st);
	taskring_store_unlink(f->name);
	free(f);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Child processes                                                           */
/* ------------------------------------------------------------------------ */

/*
 * A parent that fork()s children with tu_spawn() must never have started a
 * thread (fork() stays safe under ThreadSanitizer). Each child gets the
 * signal handlers the process had before cmocka installed its own (cmocka's
 * handlers longjmp into its runner, which must never happen in a child), an
 * alarm of its own, and a control pipe: the parent closes its end to tell
 * the child to stop (tu_kid_release(), tu_kid_join()). tu_spawn_ack() adds a
 * pipe the other way, for children that answer commands. A test's teardown
 * calls tu_kids_kill_all() so that children of a failed test do not outlive
 * it.
 */
#define TU_MAX_KIDS 8
#define TU_EXC_SIGS { SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGSYS }
#define TU_NEXC_SIGS 5

struct tu_kid {
	pid_t pid;
	int ctl; /* write end of the child's control pipe; closing it = "stop" */
	int ack; /* read end of the child's answers, or -1 */
};

struct tu_kids {
	struct tu_kid kid[TU_MAX_KIDS];
	int n;
	unsigned alarm_s; /* each child's alarm */
	int poll_ms;      /* how often tu_kid_join() looks */
	struct sigaction saved[TU_NEXC_SIGS];
};

static inline struct tu_kids *tu_kids(void)
{
	static struct tu_kids k;
	return &k;
}

/* In main(), before cmocka runs: remember the signal handlers for the
 * children, the alarm each child gets and tu_kid_join()'s polling interval. */
static inline void tu_kids_init(unsigned child_alarm_s, int join_poll_ms)
{
	static const int sigs[TU_NEXC_SIGS] = TU_EXC_SIGS;
	struct tu_kids *k = tu_kids();
	for (int i = 0; i < TU_NEXC_SIGS; i++)
		sigaction(sigs[i], NULL, &k->saved[i]);
	k->alarm_s = child_alarm_s;
	k->poll_ms = join_poll_ms;
}

/* A child process body: its argument, the read end of its control pipe and
 * the write end of its answer pipe (-1 without tu_spawn_ack()). Its return
 * value is its exit status. */
typedef int (*tu_kid_fn)(void *arg, int ctl, int ack);

/* In a new child: the old handlers, its alarm, none of the other children's
 * pipes (they would never see their end of file otherwise). */
static inline void tu_kid_prepare(void)
{
	static const int sigs[TU_NEXC_SIGS] = TU_EXC_SIGS;
	struct tu_kids *k = tu_kids();
	for (int i = 0; i < TU_NEXC_SIGS; i++)
		sigaction(sigs[i], &k->saved[i], NULL);
	signal(SIGALRM, SIG_DFL);
	alarm(k->alarm_s);
	for (int i = 0; i < k->n; i++) {
		if (k->kid[i].ctl >= 0)
			close(k->kid[i].ctl);
		if (k->kid[i].ack >= 0)
			close(k->kid[i].ack);
	}
	k->n = 0;
}

static inline pid_t tu_spawn_kid(tu_kid_fn fn, void *arg, int with_ack)
{
	struct tu_kids *k = tu_kids();
	int c[2], a[2] = { -1, -1 };
	assert_true(k->n < TU_MAX_KIDS);
	assert_int_equal(pipe2(c, O_CLOEXEC), 0);
	if (with_ack)
		assert_int_equal(pipe2(a, O_CLOEXEC), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		tu_kid_prepare();
		close(c[1]);
		if (with_ack)
			close(a[0]);
		_exit(fn(arg, c[0], a[1]));
	}
	close(c[0]);
	if (with_ack)
		close(a[1]);
	k->kid[k->n].pid = pid;
	k->kid[k->n].ctl = c[1];
	k->kid[k->n].ack = a[0];
	k->n++;
	return pid;
}

/* Start a child running fn(arg, ctl, -1). */
static inline pid_t tu_spawn(tu_kid_fn fn, void *arg)
{
	return tu_spawn_kid(fn, arg, 0);
}

/* Start a child running fn(arg, ctl, ack), with an answer pipe. */
static inline pid_t tu_spawn_ack(tu_kid_fn fn, void *arg)
{
	return tu_spawn_kid(fn, arg, 1);
}

static inline struct tu_kid *tu_kid_find(pid_t pid)
{
	struct tu_kids *k = tu_kids();
	for (int i = 0; i < k->n; i++)
		if (k->kid[i].pid == pid)
			return &k->kid[i];
	return NULL;
}

/* Tell the child to stop (close its control pipe). */
static inline void tu_kid_release(pid_t pid)
{
	struct tu_kids *k = tu_kids();
	for (int i = 0; i < k->n; i++)
		if (k->kid[i].pid == pid && k->kid[i].ctl >= 0) {
			close(k->kid[i].ctl);
			k->kid[i].ctl = -1;
		}
}

/* Forget a child that was reaped: close what is left of its pipes. */
static inline void tu_kid_forget(pid_t pid)
{
	struct tu_kids *k = tu_kids();
	for (int i = 0; i < k->n; i++)
		if (k->kid[i].pid == pid) {
			if (k->kid[i].ctl >= 0)
				close(k->kid[i].ctl);
			if (k->kid[i].ack >= 0)
				close(k->kid[i].ack);
			k->kid[i] = k->kid[--k->n];
			break;
		}
}

/*
 * Release the child and wait up to timeout_ms for it. Returns its exit
 * status, -1 if a signal killed it, -2 if it had to be killed.
 */
static inline int tu_kid_join(pid_t pid, int timeout_ms)
{
	int st = 0, ret = 0;
	int64_t end = tu_now_ns() + (int64_t)timeout_ms * MS;
	tu_kid_release(pid);
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			if (WIFEXITED(st)) {
				ret = WEXITSTATUS(st);
			} else {
				fprintf(stderr, "child %d killed by signal %d\n", (int)pid,
					WIFSIGNALED(st) ? WTERMSIG(st) : 0);
				ret = -1;
			}
			break;
		}
		if (r < 0 && errno != EINTR) {
			ret = -1;
			break;
		}
		if (tu_now_ns() > end) {
			fprintf(stderr, "child %d did not exit in %d ms; killing it\n", (int)pid, timeout_ms);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			ret = -2;
			break;
		}
		tu_sleep_ms(tu_kids()->poll_ms);
	}
	tu_kid_forget(pid);
	return ret;
}

/* Teardown: children still registered belong to a test that failed. */
static inline void tu_kids_kill_all(void)
{
	struct tu_kids *k = tu_kids();
	for (int i = 0; i < k->n; i++) {
		if (k->kid[i].ctl >= 0)
			close(k->kid[i].ctl);
		if (k->kid[i].ack >= 0)
			close(k->kid[i].ack);
		kill(k->kid[i].pid, SIGKILL);
		waitpid(k->kid[i].pid, NULL, 0);
	}
	k->n = 0;
}

/* Setup of a multi-process test: a fresh store name in *name, no store in
 * *store yet, and (returned) @bytes of zeroed memory shared with the
 * children it will fork, or NULL if that failed. */
static inline void *tu_mp_setup(size_t bytes, const char **name, struct taskring_store **store)
{
	*name = tu_shm_name();
	*store = NULL;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Teardown of a multi-process test: kill the children still registered
 * (they belong to a test that failed), close the parent's handle *store if
 * any and unlink the store @name. */
static inline void tu_mp_teardown(struct taskring_store **store, const char *name)
{
	tu_kids_kill_all();
	if (*store)
		taskring_store_close(*store);
	*store = NULL;
	taskring_store_unlink(name);
}

/* In a child: block until the parent closes the control pipe. */
static inline void tu_wait_eof(int fd)
{
	char c;
	for (;;) {
		ssize_t r = read(fd, &c, 1);
		if (r == 0 || (r < 0 && errno != EINTR))
			return;
	}
}

/* In a child: open the parent's existing store @name. */
static inline struct taskring_store *tu_kid_open(const char *name)
{
	struct taskring_store_opts o;
	struct taskring_store *st = NULL;
	memset(&o, 0, sizeof(o));
	o.flags = TASKRING_STORE_NOCREATE;
	CK_RC(taskring_store_open(name, &o, &st), 0);
	CK(st != NULL);
	return st;
}

/* What a worker child serves. */
struct tu_wspec {
	uint32_t threads;
	const char *queues[4];
	uint32_t nqueues; /* 0 = the default queue */
	const char *tasks[4];
	taskring_handler_fn fns[4];
	int ntasks;
	int64_t reap_ns;  /* the worker's reap_interval_ns (0 = its default) */
	int64_t lease_ns; /* the worker's lease_ns (0 = each job's timeout) */
};

static inline void tu_wspec_task(struct tu_wspec *w, const char *task, taskring_handler_fn fn)
{
	w->tasks[w->ntasks] = task;
	w->fns[w->ntasks] = fn;
	w->ntasks++;
}

/* In a child: a started worker on @st as @w says; its handlers get @arg. */
static inline struct taskring_worker *tu_kid_worker_start(struct taskring_store *st, const struct tu_wspec *w,
							  void *arg)
{
	struct taskring_worker *wk = NULL;
	struct taskring_worker_opts wo;
	taskring_worker_opts_init(&wo);
	wo.threads = w->threads;
	if (w->nqueues) {
		wo.queues = w->queues;
		wo.nqueues = w->nqueues;
	}
	wo.reap_interval_ns = w->reap_ns;
	wo.lease_ns = w->lease_ns;
	CK_RC(taskring_worker_create(st, &wo, &wk), 0);
	for (int i = 0; i < w->ntasks; i++)
		CK_RC(taskring_worker_register(wk, w->tasks[i], w->fns[i], arg), 0);
	CK_RC(taskring_worker_start(wk), 0);
	return wk;
}

/* In a child: stop (draining up to @drain_ns) and destroy the worker, close
 * the store; each must succeed. */
static inline void tu_kid_worker_end(struct taskring_store *st, struct taskring_worker *wk, int64_t drain_ns)
{
	CK_RC(taskring_worker_stop(wk, drain_ns), 0);
	CK_RC(taskring_worker_destroy(wk), 0);
	CK_RC(taskring_store_close(st), 0);
}

#endif
