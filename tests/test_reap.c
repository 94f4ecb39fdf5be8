/*
 * test_reap.c - dead processes and expired leases never wedge a job.
 *
 *   - A worker killed with SIGKILL while it runs a job, and not yet waited
 *     for (a zombie, which kill(pid, 0) still reports as there): the reaper
 *     finds its registration gone and puts the job back with an error that
 *     names the process; the tool's `reap` command does the same.
 *   - With a worker's reaper thread running elsewhere, the time from each
 *     kill to the job being back in the queue (printed, not asserted).
 *   - A SIGSTOPped worker: its lease runs out within 10% of its length, the
 *     job is retried and completed by another worker, and when the stopped
 *     one resumes, its touch is refused and its completion ignored.
 *   - A handler that always kills its own process: the job is dead after
 *     exactly max_retries + 1 attempts, and other jobs keep flowing.
 *   - fork(): a child that uses its parent's handle registers as itself.
 *   - In one process, threads: touches keep a long handler's lease; one
 *     that does not touch is ended by the lease, and its late result is
 *     refused.
 *
 * The parent never starts a thread before it forks (see testutil.h); the
 * threaded test runs last.
 */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"
#include "internal.h"

#define KID_ALARM_S 120

struct shared {
	_Atomic int started;        /* handler entries */
	_Atomic int64_t start_ns;   /* CLOCK_MONOTONIC of the last entry */
	_Atomic int late_touch;     /* what the resumed handler's touch returned */
	_Atomic int late_result;    /* ... and its ctx_result */
	_Atomic int late_done;
	_Atomic int nops;           /* nop jobs run */
	_Atomic int crashes;        /* crash handler entries */
};

static struct shared *g_sh;
static const char *g_name;
static struct taskring_store *g_store;

static int setup(void **state)
{
	(void)state;
	g_sh = tu_mp_setup(sizeof(struct shared), &g_name, &g_store);
	return g_sh ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tu_mp_teardown(&g_store, g_name);
	memset(g_sh, 0, sizeof(*g_sh));
	munmap(g_sh, sizeof(struct shared));
	return 0;
}

/* ---- handlers ------------------------------------------------------------ */

/* Runs until its process is killed (the alarm ends it otherwise). */
static int h_hang(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	atomic_store(&g_sh->start_ns, tu_now_ns());
	atomic_fetch_add(&g_sh->started, 1);
	for (;;)
		pause();
	return TASKRING_OK;
}

static int h_done(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	taskring_ctx_result(ctx, "done", 4);
	return TASKRING_OK;
}

/* Attempt 0: works (without touching) for 3 s of its own running time, so
 * a SIGSTOP stretches it; then touches and completes, both too late. Later
 * attempts complete at once. */
static int h_slow(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	if (taskring_ctx_attempt(ctx) > 0)
		return taskring_ctx_result(ctx, "second", 6) ? TASKRING_RETRY : TASKRING_OK;
	atomic_store(&g_sh->start_ns, tu_now_ns());
	atomic_fetch_add(&g_sh->started, 1);
	for (int i = 0; i < 300; i++)
		tu_sleep_ms(10);
	atomic_store(&g_sh->late_touch, taskring_ctx_touch(ctx));
	atomic_store(&g_sh->late_result, taskring_ctx_result(ctx, "late", 4));
	atomic_store(&g_sh->late_done, 1);
	return TASKRING_OK;
}

static int h_crash(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	atomic_fetch_add(&g_sh->crashes, 1);
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
	return TASKRING_OK;
}

static int h_nop(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	atomic_fetch_add(&g_sh->nops, 1);
	return TASKRING_OK;
}

/* ---- children -------------------------------------------------------------- */

/* A worker child as @arg says, until its control pipe closes. */
static int worker_main(void *arg, int ctl, int ack)
{
	(void)ack;
	struct tu_wspec *w = arg;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_worker *wk = tu_kid_worker_start(st, w, NULL);
	tu_wait_eof(ctl);
	tu_kid_worker_end(st, wk, 10 * SEC);
	return 0;
}

/* The reaper of the live tests: a worker of another queue, which only reaps. */
static struct tu_wspec g_reaper = { .threads = 1, .queues = { "elsewhere" }, .nqueues = 1, .reap_ns = 10 * MS };

static pid_t spawn_worker(struct tu_wspec *w)
{
	return tu_spawn(worker_main, w);
}

/* SIGKILL a child and wait for it (it must die by that signal). */
static void kill_kid(pid_t pid)
{
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(tu_kid_join(pid, 10000), -1);
}

/* Wait (up to 10 s) until the job's status is @status; returns when. */
static int64_t wait_status(const struct taskring_job *j, int status)
{
	int64_t end = tu_now_ns() + 10 * SEC;
	while (taskring_job_status(j) != status) {
		if (tu_now_ns() > end)
			fail_msg("job still %s, not %s, after 10 s", taskring_status_name(taskring_job_status(j)),
				 taskring_status_name(status));
		tu_sleep_ns(200000);
	}
	return tu_now_ns();
}

static struct taskring_store *open_store(void)
{
	g_store = tu_open_small(g_name, 256);
	assert_rc(taskring_task_declare(g_store, "hang"), 0);
	assert_rc(taskring_task_declare(g_store, "slow"), 0);
	assert_rc(taskring_task_declare(g_store, "crash"), 0);
	assert_rc(taskring_task_declare(g_store, "nop"), 0);
	return g_store;
}

static struct taskring_enqueue_opts no_delay(uint32_t retries)
{
	static const int64_t zero = 0;
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = retries;
	o.retry_delays_ns = &zero;
	o.n_retry_delays = 1;
	return o;
}

/* The newest error of @j contains @what. */
static void assert_error_has(const struct taskring_job *j, const char *what)
{
	char err[TASKRING_ERROR_MAX + 1];
	assert_true(taskring_job_error(j, err, sizeof(err)) >= 0);
	if (!strstr(err, what))
		fail_msg("error '%s' does not say '%s'", err, what);
}

/* `taskring reap STORE --json`: its exit status, and its output in @out. */
static int run_reap_tool(char *out, size_t cap)
{
	const char *build = getenv("BUILD");
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s/taskring reap %s --json 2>&1", build && *build ? build : "build", g_name);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, cap - 1, p);
	out[n] = 0;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_killed_worker_job_goes_back(void **state)
{
	(void)state;
	struct taskring_store *st = open_store();
	struct taskring_enqueue_opts o = no_delay(2);
	struct taskring_job j;
	struct taskring_reap_stats r;
	struct tu_wspec w = { .threads = 1, .reap_ns = -1 };
	tu_wspec_task(&w, "hang", h_hang);

	assert_rc(taskring_enqueue(st, "hang", NULL, 0, &o, &j), 0);
	pid_t pk = spawn_worker(&w);
	assert_true(tu_wait_int(&g_sh->started, 1, 10000));
	assert_rc(taskring_job_status(&j), TASKRING_RUNNING);
	/* Nobody is dead yet: the reaper changes nothing. */
	assert_rc(taskring_store_reap(st, &r), 0);
	assert_int_equal(r.procs_gone, 0);
	assert_int_equal(r.procs_attached, 2);
	assert_rc(taskring_job_status(&j), TASKRING_RUNNING);

	/* Killed, and not waited for: a zombie answers kill(pid, 0). */
	assert_int_equal(kill(pk, SIGKILL), 0);
	int64_t t0 = tu_now_ns();
	for (;;) {
		char path[64], line[256] = "";
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pk);
		FILE *f = fopen(path, "r");
		assert_non_null(f);
		assert_non_null(fgets(line, sizeof(line), f));
		fclose(f);
		char *rp = strrchr(line, ')');
		if (rp && rp[2] == 'Z')
			break;
		assert_true(tu_now_ns() - t0 < 10 * SEC);
		tu_sleep_ms(1);
	}
	/* Its last thread may still be on its way out (a sanitizer's thread):
	 * the lock goes with the last one. */
	int rc;
	uint32_t gone = 0;
	while ((rc = taskring_store_reap(st, &r)) == 0) {
		gone += r.procs_gone;
		assert_true(tu_now_ns() - t0 < 10 * SEC);
		tu_sleep_ms(1);
	}
	gone += r.procs_gone;
	assert_rc(rc, 1);
	assert_int_equal(kill(pk, 0), 0); /* still a zombie, still "there" */
	/* The lock can go between the look at the table and the walk of the
	 * slots (a sanitizer's thread leaving last): then this walk ended the
	 * attempt and the next look marks the registration gone. */
	uint32_t attached = r.procs_attached;
	if (!gone) {
		struct taskring_reap_stats r2;
		assert_rc(taskring_store_reap(st, &r2), 0);
		gone = r2.procs_gone;
		attached = r2.procs_attached;
	}
	assert_int_equal(gone, 1);
	assert_int_equal(r.owner_died, 1);
	assert_int_equal(r.lease_expired, 0);
	assert_int_equal(attached, 1);
	assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	char want[64];
	snprintf(want, sizeof(want), "worker process %d died while running attempt 0", (int)pk);
	assert_error_has(&j, want);
	struct taskring_job_info info;
	assert_rc(taskring_job_info(&j, &info), 0);
	assert_int_equal(info.retry_count, 1);
	assert_int_equal(tu_kid_join(pk, 10000), -1);

	/* Once is enough: nothing more to do. */
	assert_rc(taskring_store_reap(st, &r), 0);
	assert_int_equal(r.procs_gone, 0);

	/* The job runs again and its waiter gets the result. */
	struct tu_wspec w2 = { .threads = 1, .reap_ns = -1 };
	tu_wspec_task(&w2, "hang", h_done);
	pid_t pk2 = spawn_worker(&w2);
	char buf[8];
	size_t rlen = 0;
	assert_rc(taskring_job_result(&j, 10 * SEC, buf, sizeof(buf), &rlen), 0);
	assert_int_equal(rlen, 4);
	assert_int_equal(tu_kid_join(pk2, 10000), 0);
}

/* The tool finds the same; and a job whose retries are spent goes dead. */
static void test_reap_tool(void **state)
{
	(void)state;
	struct taskring_store *st = open_store();
	struct taskring_enqueue_opts o = no_delay(0);
	struct taskring_job j;
	struct tu_wspec w = { .threads = 1, .reap_ns = -1 };
	tu_wspec_task(&w, "hang", h_hang);
	char out[512];

	assert_rc(taskring_enqueue(st, "hang", NULL, 0, &o, &j), 0);
	pid_t pk = spawn_worker(&w);
	assert_true(tu_wait_int(&g_sh->started, 1, 10000));
	assert_int_equal(run_reap_tool(out, sizeof(out)), 0);
	printf("# taskring reap, worker alive: %s", out);
	assert_non_null(strstr(out, "\"owner_died\":0"));
	assert_non_null(strstr(out, "\"procs_attached\":2"));
	kill_kid(pk);
	assert_int_equal(run_reap_tool(out, sizeof(out)), 0);
	printf("# taskring reap, worker killed: %s", out);
	assert_non_null(strstr(out, "\"procs_gone\":1"));
	assert_non_null(strstr(out, "\"owner_died\":1"));
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);
	assert_error_has(&j, "died while running attempt 0");
	{ char b0[8]; size_t l0 = 0; assert_rc(taskring_job_result(&j, 0, b0, sizeof(b0), &l0), TASKRING_EDEAD); }
	/* Bad usage and unknown stores. */
	const char *build = getenv("BUILD");
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "%s/taskring reap /taskring-no-such-store >/dev/null 2>&1",
		 build && *build ? build : "build");
	int rc = system(cmd);
	assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
	snprintf(cmd, sizeof(cmd), "%s/taskring reap >/dev/null 2>&1", build && *build ? build : "build");
	rc = system(cmd);
	assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
}

#define KILL_ROUNDS 20

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* A reaper thread elsewhere: each kill's job is back in the queue soon. */
static void test_kill_to_requeue_time(void **state)
{
	(void)state;
	struct taskring_store *st = open_store();
	struct taskring_enqueue_opts o = no_delay(KILL_ROUNDS + 1);
	struct taskring_job j;
	struct tu_wspec w = { .threads = 1, .reap_ns = -1 };
	tu_wspec_task(&w, "hang", h_hang);
	int64_t took[KILL_ROUNDS];

	pid_t pr = spawn_worker(&g_reaper);
	assert_rc(taskring_enqueue(st, "hang", NULL, 0, &o, &j), 0);
	for (int i = 0; i < KILL_ROUNDS; i++) {
		pid_t pk = spawn_worker(&w);
		assert_true(tu_wait_int(&g_sh->started, i + 1, 10000));
		assert_int_equal(kill(pk, SIGKILL), 0);
		int64_t t0 = tu_now_ns();
		took[i] = wait_status(&j, TASKRING_PENDING) - t0;
		assert_int_equal(tu_kid_join(pk, 10000), -1);
	}
	struct taskring_job_info info;
	assert_rc(taskring_job_info(&j, &info), 0);
	assert_int_equal(info.retry_count, KILL_ROUNDS);
	qsort(took, KILL_ROUNDS, sizeof(took[0]), cmp64);
	printf("# kill -9 of a running worker -> job back in its queue, %d rounds, reaper period 10 ms: "
	       "p50 %.1f ms, max %.1f ms\n",
	       KILL_ROUNDS, took[KILL_ROUNDS / 2] / 1e6, took[KILL_ROUNDS - 1] / 1e6);
	assert_int_equal(tu_kid_join(pr, 10000), 0);
}

#define LEASE_MS 1000

/* A stopped worker: its lease runs out on time; its late end is refused. */
static void test_stopped_worker_lease(void **state)
{
	(void)state;
	struct taskring_store *st = open_store();
	struct taskring_enqueue_opts o = no_delay(3);
	struct taskring_job j;
	struct tu_wspec w = { .threads = 1, .reap_ns = -1, .lease_ns = LEASE_MS * MS };
	tu_wspec_task(&w, "slow", h_slow);
	struct taskring_queue_stats before, after;

	assert_rc(taskring_queue_stats(st, NULL, &before), 0);
	pid_t pr = spawn_worker(&g_reaper);
	assert_rc(taskring_enqueue(st, "slow", NULL, 0, &o, &j), 0);
	pid_t ps = spawn_worker(&w);
	assert_true(tu_wait_int(&g_sh->started, 1, 10000));
	assert_int_equal(kill(ps, SIGSTOP), 0);
	int64_t t_end = wait_status(&j, TASKRING_PENDING);
	int64_t held = t_end - atomic_load(&g_sh->start_ns);
	struct taskring_job_info info;
	assert_rc(taskring_job_info(&j, &info), 0);
	printf("# SIGSTOPped worker, lease %d ms: attempt ended after %.1f ms (%+.1f%%)\n", LEASE_MS, held / 1e6,
	       100.0 * (held - LEASE_MS * MS) / (LEASE_MS * MS));
	assert_true(held >= LEASE_MS * MS * 9 / 10);
	assert_true(held <= LEASE_MS * MS * 11 / 10);
	char want[64];
	snprintf(want, sizeof(want), "lease of %d ms ran out: worker process %d", LEASE_MS, (int)ps);
	assert_error_has(&j, want);

	/* Another worker runs the retry. */
	struct tu_wspec w2 = { .threads = 1, .reap_ns = -1 };
	tu_wspec_task(&w2, "slow", h_slow);
	pid_t p2 = spawn_worker(&w2);
	char buf[8];
	size_t rlen = 0;
	assert_rc(taskring_job_result(&j, 10 * SEC, buf, sizeof(buf), &rlen), 0);
	assert_int_equal(rlen, 6);
	assert_memory_equal(buf, "second", 6);

	/* The stopped one resumes: its touch is refused, its completion too. */
	assert_int_equal(kill(ps, SIGCONT), 0);
	assert_true(tu_wait_int(&g_sh->late_done, 1, 10000));
	assert_int_equal(atomic_load(&g_sh->late_touch), -ESTALE);
	assert_int_equal(tu_kid_join(ps, 10000), 0);
	rlen = 0;
	assert_rc(taskring_job_result(&j, 0, buf, sizeof(buf), &rlen), 0);
	assert_memory_equal(buf, "second", 6);
	assert_rc(taskring_queue_stats(st, NULL, &after), 0);
	assert_int_equal(after.completed - before.completed, 1); /* exactly one completion */
	assert_int_equal(after.retried - before.retried, 1);
	assert_int_equal(taskring_job_errors(&j, NULL, 0), 1);
	assert_int_equal(tu_kid_join(p2, 10000), 0);
	assert_int_equal(tu_kid_join(pr, 10000), 0);
}

#define CRASH_RETRIES 3
#define CRASH_NOPS 50

/* A handler that kills its process: dead after exactly max_retries + 1
 * attempts; the nop jobs around it all run. */
static void test_always_crashing_handler(void **state)
{
	(void)state;
	struct taskring_store *st = open_store();
	struct taskring_enqueue_opts o = no_delay(CRASH_RETRIES);
	struct taskring_job j, nops[CRASH_NOPS];
	struct tu_wspec w = { .threads = 1, .reap_ns = 10 * MS };
	tu_wspec_task(&w, "crash", h_crash);
	tu_wspec_task(&w, "nop", h_nop);

	assert_rc(taskring_enqueue(st, "crash", NULL, 0, &o, &j), 0);
	for (int i = 0; i < CRASH_NOPS; i++)
		assert_rc(taskring_enqueue(st, "nop", NULL, 0, NULL, &nops[i]), 0);
	int deaths = 0;
	while (taskring_job_status(&j) != TASKRING_DEAD) {
		assert_true(deaths <= CRASH_RETRIES + 1);
		pid_t pk = spawn_worker(&w);
		/* Supervise: wait until it dies (or the job is dead). */
		int64_t end = tu_now_ns() + 10 * SEC;
		int wst;
		pid_t r;
		while ((r = waitpid(pk, &wst, WNOHANG)) == 0 && taskring_job_status(&j) != TASKRING_DEAD) {
			assert_true(tu_now_ns() < end);
			tu_sleep_ms(1);
		}
		if (r == pk) {
			assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
			tu_kid_forget(pk);
			deaths++;
		} else {
			assert_int_equal(tu_kid_join(pk, 10000), 0);
		}
	}
	assert_int_equal(atomic_load(&g_sh->crashes), CRASH_RETRIES + 1);
	assert_int_equal(deaths, CRASH_RETRIES + 1);
	assert_int_equal(taskring_job_errors(&j, NULL, 0), CRASH_RETRIES + 1);
	assert_error_has(&j, "died while running attempt 3");
	/* The others keep flowing. */
	pid_t pk = spawn_worker(&w);
	assert_rc(taskring_job_wait_all(nops, CRASH_NOPS, 20 * SEC), 0);
	for (int i = 0; i < CRASH_NOPS; i++)
		assert_rc(taskring_job_status(&nops[i]), TASKRING_COMPLETE);
	assert_int_equal(atomic_load(&g_sh->nops), CRASH_NOPS);
	assert_int_equal(tu_kid_join(pk, 10000), 0);
	printf("# always-crashing handler: dead after %d attempts (%d process deaths); %d other jobs ran\n",
	       CRASH_RETRIES + 1, deaths, CRASH_NOPS);
}

/* A child that runs a job through the handle it inherited from fork(). */
static int fork_child_main(void *arg, int ctl, int ack)
{
	(void)arg;
	(void)ctl;
	(void)ack;
	struct taskring_worker *wk = NULL;
	CK_RC(tu_worker_create(g_store, NULL, 0, 1, &wk), 0);
	CK_RC(taskring_worker_register(wk, "hang", h_hang, NULL), 0);
	taskring_worker_run_one(wk, 10 * SEC);
	return 1; /* h_hang never returns */
}

static void test_forked_child_registers_as_itself(void **state)
{
	(void)state;
	struct taskring_store *st = open_store();
	struct taskring_enqueue_opts o = no_delay(1);
	struct taskring_job j;
	struct taskring_reap_stats r;

	assert_rc(taskring_enqueue(st, "hang", NULL, 0, &o, &j), 0);
	uint32_t mine = atomic_load(&st->token);
	assert_true(mine != 0);
	pid_t pk = tu_spawn(fork_child_main, NULL);
	assert_true(tu_wait_int(&g_sh->started, 1, 10000));
	struct tr_slot *s = &st->slots[j.slot];
	uint32_t owner = atomic_load(&s->s_owner);
	assert_true(owner != 0 && owner != mine);
	assert_int_equal(st->procs[TR_PROC_IDX(owner)].p_pid, pk);
	assert_rc(taskring_store_reap(st, &r), 0);
	assert_int_equal(r.procs_attached, 2);
	assert_int_equal(kill(pk, SIGKILL), 0);
	assert_int_equal(tu_kid_join(pk, 10000), -1);
	assert_rc(taskring_store_reap(st, &r), 1);
	assert_int_equal(r.procs_gone, 1);
	assert_int_equal(r.owner_died, 1);
	assert_true(tr__proc_alive(st, mine)); /* the parent's own registration */
	assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	/* Handles come and go from the table. */
	struct taskring_store *h2 = tu_kid_open(g_name), *h3 = tu_kid_open(g_name);
	assert_rc(taskring_store_reap(st, &r), 0);
	assert_int_equal(r.procs_attached, 3);
	assert_rc(taskring_store_close(h2), 0);
	assert_rc(taskring_store_reap(st, &r), 0);
	assert_int_equal(r.procs_attached, 2);
	assert_int_equal(r.procs_gone, 0); /* closed, not dead */
	assert_rc(taskring_store_close(h3), 0);
}

/* ---- in one process, with threads (last: the parent forks no more) ----- */

static _Atomic int g_touch_rcs, g_late_touch = 1, g_late_result = 1;

static int h_toucher(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	for (int i = 0; i < 16; i++) {
		tu_sleep_ms(25);
		if (taskring_ctx_touch(ctx) == 0)
			atomic_fetch_add(&g_touch_rcs, 1);
	}
	taskring_ctx_result(ctx, "kept", 4);
	return TASKRING_OK;
}

static int h_sleeper(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	tu_sleep_ms(400);
	atomic_store(&g_late_touch, taskring_ctx_touch(ctx));
	atomic_store(&g_late_result, taskring_ctx_result(ctx, "late", 4));
	return TASKRING_OK;
}

static void test_thread_mode_touch_and_lease(void **state)
{
	(void)state;
	struct taskring_store *st = open_store();
	struct taskring_enqueue_opts o = no_delay(0);
	struct taskring_job a, b;
	struct taskring_worker_opts wo;
	struct taskring_worker *w;
	char buf[8];
	size_t rlen = 0;

	assert_rc(taskring_ctx_touch(NULL), -EINVAL);
	taskring_worker_opts_init(&wo);
	wo.threads = 2;
	wo.lease_ns = 100 * MS;
	wo.reap_interval_ns = 10 * MS;
	assert_rc(taskring_worker_create(st, &wo, &w), 0);
	assert_rc(taskring_worker_register(w, "slow", h_toucher, NULL), 0);
	assert_rc(taskring_worker_register(w, "hang", h_sleeper, NULL), 0);
	assert_rc(taskring_worker_start(w), 0);
	assert_rc(taskring_enqueue(st, "slow", NULL, 0, &o, &a), 0);
	assert_rc(taskring_enqueue(st, "hang", NULL, 0, &o, &b), 0);
	/* 400 ms with touches every 25 ms: a 100 ms lease holds. */
	assert_rc(taskring_job_result(&a, 10 * SEC, buf, sizeof(buf), &rlen), 0);
	assert_memory_equal(buf, "kept", 4);
	assert_int_equal(atomic_load(&g_touch_rcs), 16);
	assert_int_equal(taskring_job_errors(&a, NULL, 0), 0);
	/* 400 ms without: the lease ends it (no retries left: dead). */
	assert_rc(taskring_job_wait(&b, 10 * SEC), TASKRING_DEAD);
	assert_error_has(&b, "lease of 100 ms ran out");
	assert_rc(taskring_worker_stop(w, 10 * SEC), 0);
	assert_rc(taskring_worker_destroy(w), 0);
	/* Its late touch was refused, its result staged and dropped. */
	assert_int_equal(atomic_load(&g_late_touch), -ESTALE);
	assert_int_equal(atomic_load(&g_late_result), 0);
	assert_rc(taskring_job_status(&b), TASKRING_DEAD);
	assert_rc(taskring_job_result(&b, 0, buf, sizeof(buf), &rlen), TASKRING_EDEAD);
}

int main(void)
{
	tu_alarm(600);
	tu_kids_init(KID_ALARM_S, 1);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_killed_worker_job_goes_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reap_tool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_to_requeue_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stopped_worker_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_always_crashing_handler, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forked_child_registers_as_itself, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thread_mode_touch_and_lease, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
