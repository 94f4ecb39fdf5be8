/*
 * test_nopoll.c - nothing polls: waiters and idle workers sleep until the
 * change they wait for, and producers make no system call when no worker
 * sleeps.
 *
 * The evidence is counted, not timed:
 *   - tr__futex_wait_calls() / tr__futex_wake_calls(): the library's own
 *     per-process counts of futex system calls (src/internal.h);
 *   - voluntary context switches: getrusage(RUSAGE_THREAD) for a waiter, and
 *     /proc/<pid>/task/<tid>/status "voluntary_ctxt_switches" summed over a
 *     worker's threads (a thread that sleeps in one futex wait makes one
 *     switch however long it sleeps; a thread that polls makes one per
 *     period);
 *   - optionally strace -c on a waiter process (skipped when strace is
 *     missing or cannot trace here). The waiter leaves with _exit(), so a
 *     sanitizer's exit-time work (LeakSanitizer ptraces) never runs there.
 *
 * Waiters run in child processes (or in the parent, which never starts a
 * thread, so fork() stays safe under ThreadSanitizer). A worker child
 * answers "snapshot" commands on its control pipe: its main thread, blocked
 * in read() otherwise, records the process's futex counts and its worker
 * threads' context switches in shared memory. Its worker threads are told
 * apart from the main thread (and from a sanitizer's background thread) by
 * listing /proc/self/task before and after taskring_worker_start().
 *
 * The child helpers (tu_spawn_ack(), tu_kid_join(), CK()...) are in
 * testutil.h; see test_multiproc.c for how children are run.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "testutil.h"
#include "internal.h"

#define KID_ALARM_S 120
#define MAX_TIDS 64

/* What a worker child's main thread records on a snapshot command. */
struct snap {
	uint64_t waits, wakes; /* the worker process's futex system calls */
	long csw_workers;      /* voluntary switches summed over its worker threads */
	long csw_all;          /* ... over all its threads */
	long csw_reaper;       /* ... by its reaper thread (-1: none) */
	int nworkers;
};

struct shared {
	_Atomic int ready;
	_Atomic int flag[4];
	_Atomic int64_t t[4];
	_Atomic int rc[4];
	_Atomic int done;
	char id[4][TASKRING_ID_LEN + 1];
	/* The waiter child's counts. */
	uint64_t w_waits0, w_waits1;
	long w_csw0, w_csw1;
	char result[64];
	size_t rlen;
	/* Worker child snapshots. */
	struct snap snap[8];
	_Atomic int nsnap;
};

static struct shared *g_sh;
static const char *g_name;
static struct taskring_store *g_store;
static int g_gate[2] = { -1, -1 }; /* the "block" handler reads one byte from g_gate[0] */
static char g_self[4096];          /* this program, for the strace test */

static long thread_csw(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_nvcsw;
}

/* voluntary_ctxt_switches of one task of this process, or -1. */
static long task_csw(int tid)
{
	char path[64], line[256];
	long v = -1;
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* Is thread @tid the worker's reaper thread (by the name it gives itself)? */
static int is_reaper(int tid)
{
	char path[64], name[32] = "";
	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(name, sizeof(name), f))
		name[0] = 0;
	fclose(f);
	return strncmp(name, "taskring-reap", 13) == 0;
}

/* The tids of this process's threads. */
static int list_tids(int *out, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL && n < max)
		if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
			out[n++] = atoi(e->d_name);
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------------ */
/* Children (see test_multiproc.c)                                           */
/* ------------------------------------------------------------------------ */

/* Send a command byte and wait (up to 10 s) for the child's answer. */
static void kid_cmd(pid_t pid, char cmd)
{
	struct tu_kid *k = tu_kid_find(pid);
	char c;
	assert_non_null(k);
	assert_int_equal(write(k->ctl, &cmd, 1), 1);
	struct pollfd pfd = { .fd = k->ack, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	assert_int_equal(read(k->ack, &c, 1), 1);
}

/* ------------------------------------------------------------------------ */
/* Handlers and the worker child                                             */
/* ------------------------------------------------------------------------ */

static int h_nop(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	atomic_fetch_add(&g_sh->done, 1);
	CK_RC(taskring_ctx_result(ctx, "done", 4), 0);
	return TASKRING_OK;
}

static int h_sleep1s(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	tu_sleep_ms(1000);
	CK_RC(taskring_ctx_result(ctx, "slept", 5), 0);
	return TASKRING_OK;
}

/* Busy until the parent writes a byte into the gate pipe (at most 20 s). */
static int h_block(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	char c;
	struct pollfd pfd = { .fd = g_gate[0], .events = POLLIN };
	CK(poll(&pfd, 1, 20000) == 1);
	CK(read(g_gate[0], &c, 1) == 1);
	CK_RC(taskring_ctx_result(ctx, "unblocked", 9), 0);
	return TASKRING_OK;
}

static int g_wtids[MAX_TIDS], g_nwtids;
static int g_reaper_tid; /* 0: the worker has none */

static void *noop_thread(void *arg)
{
	return arg;
}

static void take_snapshot(struct taskring_store *st)
{
	int tids[MAX_TIDS], n = list_tids(tids, MAX_TIDS);
	int k = atomic_load(&g_sh->nsnap);
	struct snap *s;
	(void)st;
	CK(k < 8);
	s = &g_sh->snap[k];
	s->waits = tr__futex_wait_calls();
	s->wakes = tr__futex_wake_calls();
	s->csw_workers = s->csw_all = 0;
	s->nworkers = g_nwtids;
	s->csw_reaper = g_reaper_tid ? task_csw(g_reaper_tid) : -1;
	for (int i = 0; i < g_nwtids; i++) {
		long v = task_csw(g_wtids[i]);
		CK(v >= 0);
		s->csw_workers += v;
	}
	for (int i = 0; i < n; i++) {
		long v = task_csw(tids[i]);
		if (v > 0)
			s->csw_all += v;
	}
	atomic_store(&g_sh->nsnap, k + 1);
}

/* A worker child; its main thread answers 'S' (snapshot) until EOF. */
static int worker_main(void *arg, int ctl, int ack)
{
	struct tu_wspec *w = arg;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_worker *wk;
	int before[MAX_TIDS], after[MAX_TIDS], nb, na;
	pthread_t th;

	/* A first thread, joined: a sanitizer runtime starts its background
	 * thread (if any) now, so it is not taken for a worker thread. */
	CK(pthread_create(&th, NULL, noop_thread, NULL) == 0);
	CK(pthread_join(th, NULL) == 0);
	nb = list_tids(before, MAX_TIDS);
	CK(nb > 0);

	wk = tu_kid_worker_start(st, w, NULL);
	na = list_tids(after, MAX_TIDS);
	g_nwtids = 0;
	for (int i = 0; i < na; i++) {
		int old = 0;
		for (int j = 0; j < nb; j++)
			old |= after[i] == before[j];
		if (old)
			continue;
		if (is_reaper(after[i]))
			g_reaper_tid = after[i];
		else
			g_wtids[g_nwtids++] = after[i];
	}
	CK(w->reap_ns < 0 ? g_reaper_tid == 0 : g_reaper_tid != 0);
	CK(g_nwtids >= (int)w->threads);
	atomic_fetch_add(&g_sh->ready, 1);

	for (;;) {
		char c;
		ssize_t r = read(ctl, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (c == 'S')
			take_snapshot(st);
		CK(write(ack, "k", 1) == 1);
	}
	tu_kid_worker_end(st, wk, 10 * SEC);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                   */
/* ------------------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	g_sh = tu_mp_setup(sizeof(struct shared), &g_name, &g_store);
	if (!g_sh)
		return -1;
	if (pipe(g_gate) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_mp_teardown(&g_store, g_name);
	close(g_gate[0]);
	close(g_gate[1]);
	munmap(g_sh, sizeof(struct shared));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

/* Looks up g_sh->id[0] and waits up to 5 s for its result, counting. */
static int waiter_main(void *arg, int ctl, int ack)
{
	(void)arg;
	(void)ctl;
	(void)ack;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_job j;
	CK_RC(taskring_job_lookup(st, g_sh->id[0], &j), 0);
	g_sh->w_waits0 = tr__futex_wait_calls();
	g_sh->w_csw0 = thread_csw();
	atomic_store(&g_sh->t[0], tu_now_ns());
	atomic_store(&g_sh->flag[0], 1);
	int rc = taskring_job_result(&j, 5 * SEC, g_sh->result, sizeof(g_sh->result), &g_sh->rlen);
	g_sh->w_csw1 = thread_csw();
	g_sh->w_waits1 = tr__futex_wait_calls();
	atomic_store(&g_sh->t[1], tu_now_ns());
	atomic_store(&g_sh->rc[0], rc);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

/* A waiter in its own process sleeps through ~1 s until another process
 * completes the job: at most 2 futex waits, at most 3 voluntary switches. */
static void test_result_waiter_sleeps_until_completion(void **state)
{
	(void)state;
	struct taskring_job j;
	struct tu_wspec w = { .threads = 1, .tasks = { "sleepy" }, .fns = { h_sleep1s }, .ntasks = 1 };

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "sleepy"), 0);
	assert_rc(taskring_enqueue(g_store, "sleepy", NULL, 0, NULL, &j), 0);
	assert_rc(taskring_job_id(&j, g_sh->id[0]), 0);
	pid_t pw = tu_spawn_ack(waiter_main, NULL);
	assert_true(tu_wait_int(&g_sh->flag[0], 1, 10000));
	tu_sleep_ms(50);
	pid_t pk = tu_spawn_ack(worker_main, &w);
	assert_int_equal(tu_kid_join(pw, 20000), 0);
	assert_int_equal(tu_kid_join(pk, 20000), 0);

	int64_t waited = atomic_load(&g_sh->t[1]) - atomic_load(&g_sh->t[0]);
	uint64_t waits = g_sh->w_waits1 - g_sh->w_waits0;
	long csw = g_sh->w_csw1 - g_sh->w_csw0;
	printf("# waiter: %.1f ms, %llu futex waits, %ld voluntary switches\n", waited / 1e6,
	       (unsigned long long)waits, csw);
	assert_rc(atomic_load(&g_sh->rc[0]), 0);
	assert_int_equal(g_sh->rlen, 5);
	assert_memory_equal(g_sh->result, "slept", 5);
	assert_true(waited >= 900 * MS); /* it really waited for the handler */
	assert_true(waits >= 1);         /* and slept in the kernel to do so */
	assert_true(waits <= 2);
	assert_true(csw <= 3);
}

/* A waiter with a 1 s timeout on a job nobody runs: -ETIMEDOUT after the
 * timeout, with at most 2 futex waits (no periodic wake-ups). */
static void test_timeout_waiter_no_periodic_wakeups(void **state)
{
	(void)state;
	struct taskring_job j;
	char buf[8];
	size_t rlen = 0;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "nobody"), 0);
	assert_rc(taskring_enqueue(g_store, "nobody", NULL, 0, NULL, &j), 0);
	uint64_t w0 = tr__futex_wait_calls();
	long c0 = thread_csw();
	int64_t t0 = tu_now_ns();
	int rc = taskring_job_result(&j, 1 * SEC, buf, sizeof(buf), &rlen);
	int64_t t1 = tu_now_ns();
	long c1 = thread_csw();
	uint64_t w1 = tr__futex_wait_calls();
	printf("# timed-out waiter: %.1f ms, %llu futex waits, %ld voluntary switches\n", (t1 - t0) / 1e6,
	       (unsigned long long)(w1 - w0), c1 - c0);
	assert_rc(rc, -ETIMEDOUT);
	assert_true(t1 - t0 >= 990 * MS);
	assert_true(t1 - t0 < 10 * SEC);
	assert_true(w1 - w0 >= 1);
	assert_true(w1 - w0 <= 2);
	assert_true(c1 - c0 <= 3);
	/* The same through taskring_job_wait(). */
	w0 = tr__futex_wait_calls();
	t0 = tu_now_ns();
	assert_rc(taskring_job_wait(&j, 300 * MS), -ETIMEDOUT);
	t1 = tu_now_ns();
	w1 = tr__futex_wait_calls();
	assert_true(t1 - t0 >= 290 * MS);
	assert_true(w1 - w0 <= 2);
	assert_rc(taskring_job_status(&j), TASKRING_PENDING);
}

static const struct snap *snap_at(int k)
{
	assert_true(atomic_load(&g_sh->nsnap) > k);
	return &g_sh->snap[k];
}

/* A 64-slot store and a worker child as @w says, idle and given 300 ms to
 * settle into its sleep; then its first snapshot. */
static pid_t start_idle_worker(struct tu_wspec *w)
{
	g_store = tu_open_small(g_name, 64);
	pid_t pk = tu_spawn_ack(worker_main, w);
	assert_true(tu_wait_int(&g_sh->ready, 1, 10000));
	tu_sleep_ms(300);
	kid_cmd(pk, 'S');
	return pk;
}

/* An idle worker process (2 threads) sleeps: over 1 s its threads make at
 * most 2 voluntary switches each, and its reaper thread (the one periodic
 * timer, every 250 ms here) at most one per period; an enqueue wakes it and
 * the job runs. */
static void test_idle_worker_sleeps_and_enqueue_wakes(void **state)
{
	(void)state;
	struct taskring_job j;
	struct tu_wspec w = { .threads = 2, .tasks = { "nop" }, .fns = { h_nop }, .ntasks = 1,
			      .reap_ns = 250 * MS };
	char buf[8];
	size_t rlen = 0;

	pid_t pk = start_idle_worker(&w); /* both threads asleep */
	tu_sleep_ms(1000);
	kid_cmd(pk, 'S');
	const struct snap *a = snap_at(0), *b = snap_at(1);
	long reaper = b->csw_reaper - a->csw_reaper;
	printf("# idle worker (%d threads) over 1 s: %ld voluntary switches (all threads %ld), "
	       "%llu futex waits; its reaper thread (250 ms period): %ld switches\n",
	       a->nworkers, b->csw_workers - a->csw_workers, b->csw_all - a->csw_all,
	       (unsigned long long)(b->waits - a->waits), reaper);
	assert_true(b->csw_workers - a->csw_workers <= 2L * a->nworkers);
	assert_true(reaper >= 2 && reaper <= 6); /* it does run, once a period */
	assert_true(b->waits - a->waits <= 2ull * (unsigned)a->nworkers + (unsigned long)reaper);

	/* A worker is asleep: the enqueue must wake it. */
	uint64_t k0 = tr__futex_wake_calls();
	assert_rc(taskring_enqueue(g_store, "nop", NULL, 0, NULL, &j), 0);
	uint64_t k1 = tr__futex_wake_calls();
	printf("# enqueue to a sleeping worker: %llu futex wakes\n", (unsigned long long)(k1 - k0));
	assert_true(k1 - k0 >= 1);
	assert_rc(taskring_job_result(&j, 5 * SEC, buf, sizeof(buf), &rlen), 0);
	assert_int_equal(rlen, 4);
	assert_memory_equal(buf, "done", 4);
	assert_int_equal(tu_kid_join(pk, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->done), 1);
}

#define NOWAKE_JOBS 10000

/* No worker at all: 10,000 enqueues (and a batch) make no futex wake. */
static void test_enqueue_without_workers_makes_no_wake(void **state)
{
	(void)state;
	static struct taskring_enqueue_item items[1000];
	struct taskring_queue_stats qs;

	g_store = tu_open_small(g_name, 16384);
	assert_rc(taskring_task_declare(g_store, "nop"), 0);
	uint64_t k0 = tr__futex_wake_calls();
	for (uint32_t i = 0; i < NOWAKE_JOBS; i++)
		assert_rc(taskring_enqueue(g_store, "nop", &i, sizeof(i), NULL, NULL), 0);
	for (uint32_t i = 0; i < 1000; i++) {
		items[i].task = "nop";
		items[i].payload = NULL;
		items[i].len = 0;
		items[i].opts = NULL;
	}
	assert_rc(taskring_enqueue_batch(g_store, items, 1000, NULL, NULL), 0);
	uint64_t k1 = tr__futex_wake_calls();
	printf("# %d enqueues + a batch of 1000, no worker: %llu futex wakes\n", NOWAKE_JOBS,
	       (unsigned long long)(k1 - k0));
	assert_int_equal(k1 - k0, 0);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.by_status[TASKRING_PENDING], NOWAKE_JOBS + 1000);
}

/* A worker busy in a handler: 10,000 enqueues make no futex wake; then the
 * worker runs them all. */
static void test_enqueue_to_busy_worker_makes_no_wake(void **state)
{
	(void)state;
	struct taskring_job blk, *jobs = calloc(NOWAKE_JOBS, sizeof(*jobs));
	struct taskring_queue_stats qs;
	struct tu_wspec w = { .threads = 1, .tasks = { "block", "nop" }, .fns = { h_block, h_nop }, .ntasks = 2 };
	char buf[16];
	size_t rlen = 0;
	assert_non_null(jobs);

	g_store = tu_open_small(g_name, 16384);
	pid_t pk = tu_spawn_ack(worker_main, &w);
	assert_true(tu_wait_int(&g_sh->ready, 1, 10000));
	assert_rc(taskring_enqueue(g_store, "block", NULL, 0, NULL, &blk), 0);
	assert_int_equal(tu_wait_status(&blk, TASKRING_RUNNING, 10000), TASKRING_RUNNING);

	uint64_t k0 = tr__futex_wake_calls();
	for (uint32_t i = 0; i < NOWAKE_JOBS; i++)
		assert_rc(taskring_enqueue(g_store, "nop", &i, sizeof(i), NULL, &jobs[i]), 0);
	uint64_t k1 = tr__futex_wake_calls();
	printf("# %d enqueues, worker busy: %llu futex wakes\n", NOWAKE_JOBS, (unsigned long long)(k1 - k0));
	assert_int_equal(k1 - k0, 0);

	assert_int_equal(write(g_gate[1], "g", 1), 1);
	assert_rc(taskring_job_result(&blk, 10 * SEC, buf, sizeof(buf), &rlen), 0);
	for (uint32_t i = 0; i < NOWAKE_JOBS; i++)
		assert_rc(taskring_job_result(&jobs[i], 30 * SEC, buf, sizeof(buf), &rlen), 0);
	assert_int_equal(tu_kid_join(pk, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->done), NOWAKE_JOBS);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.completed, NOWAKE_JOBS + 1);
	free(jobs);
}

/* An idle worker and a job delayed by 300 ms: the worker does not wake
 * periodically before it is due, runs it when due, then sleeps again. */
static void test_delayed_job_wakes_worker_when_due(void **state)
{
	(void)state;
	struct taskring_enqueue_opts o;
	struct taskring_job j;
	struct taskring_job_info info;
	/* Without a reaper thread: the futex counts are the worker threads'. */
	struct tu_wspec w = { .threads = 1, .tasks = { "nop" }, .fns = { h_nop }, .ntasks = 1, .reap_ns = -1 };
	char buf[8];
	size_t rlen = 0;

	pid_t pk = start_idle_worker(&w); /* snapshot A: idle, asleep */
	taskring_enqueue_opts_init(&o);
	o.delay_ns = 300 * MS;
	int64_t t0 = tu_now_ns();
	assert_rc(taskring_enqueue(g_store, "nop", NULL, 0, &o, &j), 0);
	tu_sleep_ms(150);
	kid_cmd(pk, 'S'); /* M: halfway to due */
	assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	assert_rc(taskring_job_result(&j, 5 * SEC, buf, sizeof(buf), &rlen), 0);
	int64_t t1 = tu_now_ns();
	tu_sleep_ms(100);
	kid_cmd(pk, 'S'); /* B: ran it, asleep again */
	const struct snap *a = snap_at(0), *m = snap_at(1), *b = snap_at(2);
	printf("# delayed job: done after %.1f ms; worker before due: %llu futex waits, %ld switches; "
	       "in all: %llu futex waits, %ld switches\n",
	       (t1 - t0) / 1e6, (unsigned long long)(m->waits - a->waits), m->csw_workers - a->csw_workers,
	       (unsigned long long)(b->waits - a->waits), b->csw_workers - a->csw_workers);
	assert_int_equal(rlen, 4);
	assert_true(t1 - t0 >= 290 * MS);
	assert_rc(taskring_job_info(&j, &info), 0);
	assert_true(info.scheduled_at_ns - info.created_at_ns >= 299 * MS);
	assert_true(info.started_at_ns >= info.scheduled_at_ns);
	/* Before due: at most a wake-up to learn the new deadline. */
	assert_true(m->waits - a->waits <= 2);
	assert_true(m->csw_workers - a->csw_workers <= 3);
	/* In all: that, the timeout when due, the sleep after the job. */
	assert_true(b->waits - a->waits <= 4);
	assert_true(b->csw_workers - a->csw_workers <= 6);
	assert_true(b->waits - a->waits >= 1);
	assert_int_equal(tu_kid_join(pk, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->done), 1);
}

/* ------------------------------------------------------------------------ */
/* strace                                                                    */
/* ------------------------------------------------------------------------ */

/* "--waiter NAME ID": the strace'd waiter process. */
static int strace_waiter_main(const char *name, const char *id)
{
	struct taskring_store_opts o;
	struct taskring_store *st = NULL;
	struct taskring_job j;
	char buf[16];
	size_t rlen = 0;
	memset(&o, 0, sizeof(o));
	o.flags = TASKRING_STORE_NOCREATE;
	if (taskring_store_open(name, &o, &st) != 0 || taskring_job_lookup(st, id, &j) != 0)
		_exit(10);
	int rc = taskring_job_result(&j, 5 * SEC, buf, sizeof(buf), &rlen);
	if (rc != 0)
		_exit(11);
	if (rlen != 5 || memcmp(buf, "slept", 5) != 0)
		_exit(12);
	_exit(0); /* no exit handlers: a leak checker would ptrace the process */
}

static int strace_usable(void)
{
	return system("strace -o /dev/null true >/dev/null 2>&1") == 0;
}

/* Calls of @sys in an strace -c summary, or 0. */
static long strace_calls(const char *file, const char *sys)
{
	FILE *f = fopen(file, "r");
	char line[512];
	long calls = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *tok[8];
		int n = 0;
		for (char *s = strtok(line, " \t\n"); s && n < 8; s = strtok(NULL, " \t\n"))
			tok[n++] = s;
		if (n >= 5 && strcmp(tok[n - 1], sys) == 0 && strchr(tok[0], '.'))
			calls = atol(tok[3]);
	}
	fclose(f);
	return calls;
}

static int strace_child_main(void *arg, int ctl, int ack)
{
	(void)ctl;
	(void)ack;
	const char *out = arg;
	execlp("strace", "strace", "-f", "-qq", "-c", "-o", out, "-e",
	       "trace=futex,nanosleep,clock_nanosleep,poll,ppoll,select,pselect6,epoll_wait,epoll_pwait",
	       g_self, "--waiter", g_name, g_sh->id[0], (char *)NULL);
	_exit(127);
}

/* A waiter under strace -f -c: at most 2 futex calls and no sleep or poll
 * calls while another process takes ~1 s to complete its job. */
static void test_strace_waiter(void **state)
{
	(void)state;
	struct taskring_job j;
	struct tu_wspec w = { .threads = 1, .tasks = { "sleepy" }, .fns = { h_sleep1s }, .ntasks = 1 };
	char out[] = "/tmp/taskring-strace-XXXXXX";

	if (!strace_usable()) {
		printf("# strace test: skipped, strace is missing or cannot trace here\n");
		skip();
	}
	int fd = mkstemp(out);
	assert_true(fd >= 0);
	close(fd);
	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "sleepy"), 0);
	assert_rc(taskring_enqueue(g_store, "sleepy", NULL, 0, NULL, &j), 0);
	assert_rc(taskring_job_id(&j, g_sh->id[0]), 0);
	pid_t ps = tu_spawn_ack(strace_child_main, out);
	tu_sleep_ms(500); /* the waiter is most likely asleep by now */
	pid_t pk = tu_spawn_ack(worker_main, &w);
	int rc = tu_kid_join(ps, 30000);
	assert_int_equal(tu_kid_join(pk, 20000), 0);
	long futex = strace_calls(out, "futex");
	long sleeps = strace_calls(out, "nanosleep") + strace_calls(out, "clock_nanosleep");
	long polls = strace_calls(out, "poll") + strace_calls(out, "ppoll") + strace_calls(out, "select") +
		     strace_calls(out, "pselect6") + strace_calls(out, "epoll_wait") +
		     strace_calls(out, "epoll_pwait");
	printf("# strace'd waiter: exit %d, futex %ld, sleeps %ld, polls %ld\n", rc, futex, sleeps, polls);
	unlink(out);
	assert_int_equal(rc, 0);
	assert_true(futex <= 2);
	assert_int_equal(sleeps, 0);
	assert_int_equal(polls, 0);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--waiter") == 0)
		return strace_waiter_main(argv[2], argv[3]);
	ssize_t n = readlink("/proc/self/exe", g_self, sizeof(g_self) - 1);
	if (n > 0)
		g_self[n] = '\0';
	tu_kids_init(KID_ALARM_S, 2);
	tu_alarm(300);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_result_waiter_sleeps_until_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_waiter_no_periodic_wakeups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_worker_sleeps_and_enqueue_wakes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enqueue_without_workers_makes_no_wake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enqueue_to_busy_worker_makes_no_wake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delayed_job_wakes_worker_when_due, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strace_waiter, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
