/*
 * test_crashpoints.c - a process that dies at any crash point of a job's
 * path leaves a store that the reaper and the robust locks repair.
 *
 * For each crash point (src/internal.h: TR_CRASH_POINTS) at least 100
 * trials: a child process arms the point (to fire the 1st, 2nd or 3rd time
 * it passes, at random) and works until it dies there (exit status
 * TR_CRASH_STATUS). Then this process runs the reaper and walks the region
 * with an invariant checker:
 *   - every slot is in exactly one place: the recycle ring (free or
 *     terminal), a queue's ready bands (pending, READY) or timer heap
 *     (pending, TIMER), waiting for dependencies (pending, WAITING), or
 *     running for a live process (none is left once the reaper ran);
 *   - each queue's ready and timer counts match its lists, the ring's
 *     cells between head and tail are all published;
 * and every job it made is either finished or back in its queue. Then it
 * runs what is left to the end (in this process, without threads) and
 * checks again: every job finished, every slot back in the ring or waiting.
 *
 * The recycle ring's own steps (between its CAS and its cell store) have no
 * crash point: a death there stalls the ring (see the note of issue 5).
 */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"
#include "internal.h"
#include "invariants.h"

#define TRIALS 100
#define JOBS 6
#define KID_ALARM_S 60

static const char *g_name;
static struct taskring_store *g_store;

/* ---- scenarios --------------------------------------------------------------- */

/* Its result takes an arena block (a crash before it is attached must
 * not leak it: the checker counts every block). */
static int h_ok(struct taskring_ctx *ctx, void *arg)
{
	static const char big[100] = "ok";
	(void)arg;
	return taskring_ctx_result(ctx, big, sizeof(big)) ? TASKRING_RETRY : TASKRING_OK;
}

/* Fails the first two attempts, then completes. */
static int h_flaky(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	return taskring_ctx_attempt(ctx) < 2 ? TASKRING_RETRY : h_ok(ctx, arg);
}

static int h_fail(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	return TASKRING_FAIL;
}

static int h_hang(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	for (;;)
		pause();
	return TASKRING_OK;
}

enum kind { K_RUN, K_CANCEL, K_DEPS, K_REAP, K_ENQ };

struct point {
	const char *name;
	enum kind kind;
};

static const struct point g_points[] = {
	{"claim", K_RUN},          {"start", K_RUN},           {"end.closing", K_RUN},
	{"end.logged", K_RUN},     {"end.terminal", K_RUN},    {"retry.linked", K_RUN},
	{"retry.pending", K_RUN},  {"cancel.terminal", K_CANCEL}, {"deps.resolving", K_DEPS},
	{"reap.closing", K_REAP},  {"enqueue.popped", K_ENQ},   {"enqueue.filled", K_ENQ},
	{"ring.push", K_RUN},      {"ring.pop", K_ENQ},        {"arena.carve", K_ENQ},
	{"arena.taken", K_ENQ},
};

static struct taskring_job g_jobs[JOBS + 8];
static size_t g_njobs;
static char g_ids[JOBS + 8][TASKRING_ID_LEN + 1];
static const struct point *g_point;
static uint32_t g_nth;

/* A worker without a reaper thread for the scenarios' tasks; "hang" runs
 * @hang. (CK: in this process too, a failure ends the test.) */
static struct taskring_worker *worker(struct taskring_store *st, taskring_handler_fn hang)
{
	struct taskring_worker_opts wo;
	struct taskring_worker *w = NULL;
	taskring_worker_opts_init(&wo);
	wo.reap_interval_ns = -1;
	CK_RC(taskring_worker_create(st, &wo, &w), 0);
	CK_RC(taskring_worker_register(w, "ok", h_ok, NULL), 0);
	CK_RC(taskring_worker_register(w, "flaky", h_flaky, NULL), 0);
	CK_RC(taskring_worker_register(w, "fail", h_fail, NULL), 0);
	CK_RC(taskring_worker_register(w, "hang", hang, NULL), 0);
	return w;
}

/* The child: arm the point, then do the scenario's work until it fires. */
static int kid_main(void *arg, int ctl, int ack)
{
	(void)arg;
	(void)ctl;
	(void)ack;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_worker *w = worker(st, h_hang);
	if (g_point->kind == K_REAP) {
		/* The worker that held these died already: reaping them is
		 * what crashes. */
		CK_RC(tr__crash_arm(g_point->name, g_nth), 0);
		taskring_store_reap(st, NULL);
		return 0;
	}
	CK_RC(tr__crash_arm(g_point->name, g_nth), 0);
	if (g_point->kind == K_ENQ) {
		/* Single jobs and a batch, one depending on a job of ours. */
		struct taskring_enqueue_item items[4];
		struct taskring_enqueue_opts d = tu_eopts();
		struct taskring_job dep;
		CK_RC(taskring_job_lookup(st, g_ids[0], &dep), 0);
		d.depends_on = &dep;
		d.n_depends_on = 1;
		memset(items, 0, sizeof(items));
		/* Payloads in arena blocks, fresh ones carved as well. */
		static char payload[200];
		for (int i = 0; i < 4; i++) {
			items[i].task = "ok";
			items[i].payload = payload;
			items[i].len = 100 + 30 * (size_t)i;
		}
		items[3].opts = &d;
		for (int round = 0; round < 3; round++) {
			CK_RC(taskring_enqueue(st, "ok", payload, 150, NULL, NULL), 0);
			CK_RC(taskring_enqueue_batch(st, items, 4, NULL, NULL), 0);
		}
		return 0;
	}
	if (g_point->kind == K_CANCEL) {
		for (size_t i = 0; i < g_njobs; i++) {
			struct taskring_job j;
			if (taskring_job_lookup(st, g_ids[i], &j) == 0)
				taskring_job_cancel(&j);
		}
		return 0;
	}
	while (taskring_worker_run_one(w, 0) == 1)
		;
	return 0;
}

/* A child that claims one job and hangs in it, to be killed. */
static int hang_main(void *arg, int ctl, int ack)
{
	(void)arg;
	(void)ctl;
	(void)ack;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_worker *w = worker(st, h_hang);
	taskring_worker_run_one(w, 10 * SEC);
	return 0;
}

static void enqueue(struct taskring_store *st, const char *task, const struct taskring_enqueue_opts *o)
{
	assert_true(g_njobs < sizeof(g_jobs) / sizeof(g_jobs[0]));
	assert_rc(taskring_enqueue(st, task, NULL, 0, o, &g_jobs[g_njobs]), 0);
	assert_rc(taskring_job_id(&g_jobs[g_njobs], g_ids[g_njobs]), 0);
	g_njobs++;
}

/* The jobs of one trial, as the point's scenario needs them. */
static void make_jobs(struct taskring_store *st, enum kind kind)
{
	static const int64_t zero = 0;
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 5;
	o.retry_delays_ns = &zero;
	o.n_retry_delays = 1;
	g_njobs = 0;
	switch (kind) {
	case K_RUN:
		for (int i = 0; i < JOBS; i++)
			enqueue(st, i % 3 == 0 ? "ok" : i % 3 == 1 ? "flaky" : "fail", &o);
		break;
	case K_ENQ:
		enqueue(st, "ok", &o); /* the one the child's jobs may depend on */
		break;
	case K_CANCEL:
		o.delay_ns = 3600 * SEC; /* nobody claims them */
		for (int i = 0; i < JOBS; i++)
			enqueue(st, "ok", &o);
		break;
	case K_DEPS: {
		/* Two roots, one completes and one fails, each with three
		 * dependents (made ready, or cancelled in a cascade). */
		for (int r = 0; r < 2; r++) {
			enqueue(st, r ? "fail" : "ok", &o);
			struct taskring_job root = g_jobs[g_njobs - 1];
			struct taskring_enqueue_opts d = o;
			d.depends_on = &root;
			d.n_depends_on = 1;
			for (int i = 0; i < 3; i++)
				enqueue(st, "ok", &d);
		}
		break;
	}
	case K_REAP: {
		o.max_retries = 2;
		for (int i = 0; i < 3; i++) {
			enqueue(st, "hang", &o);
			pid_t pk = tu_spawn(hang_main, NULL);
			assert_rc(tu_wait_status(&g_jobs[g_njobs - 1], TASKRING_RUNNING, 10000), TASKRING_RUNNING);
			assert_int_equal(kill(pk, SIGKILL), 0);
			assert_int_equal(tu_kid_join(pk, 10000), -1);
		}
		break;
	}
	}
}

/* Run or cancel what is left, in this process, and check that all ended. */
static void finish_jobs(struct taskring_store *st)
{
	struct taskring_worker *w = worker(st, h_fail); /* no more hanging */
	for (size_t i = 0; i < g_njobs; i++)
		if (taskring_job_status(&g_jobs[i]) == TASKRING_PENDING) {
			struct taskring_job_info in;
			if (taskring_job_info(&g_jobs[i], &in) == 0 && in.scheduled_at_ns > tu_now_ns() + SEC)
				taskring_job_cancel(&g_jobs[i]);
		}
	while (taskring_worker_run_one(w, 0) == 1)
		;
	assert_rc(taskring_worker_destroy(w), 0);
	for (size_t i = 0; i < g_njobs; i++) {
		int s = taskring_job_status(&g_jobs[i]);
		if (s < TASKRING_COMPLETE)
			fail_msg("job %zu (%s) is still %s", i, g_ids[i], taskring_status_name(s));
	}
}

static void test_every_crash_point(void **state)
{
	(void)state;
	uint32_t seed = (uint32_t)tu_now_ns();
	printf("# seed %u\n", seed);
	for (size_t p = 0; p < sizeof(g_points) / sizeof(g_points[0]); p++) {
		g_point = &g_points[p];
		g_name = tu_shm_name();
		struct taskring_store *st = g_store = tu_open_small(g_name, 256);
		for (const char *t = "ok\0flaky\0fail\0hang\0"; *t; t += strlen(t) + 1)
			assert_rc(taskring_task_declare(st, t), 0);
		int hits = 0;
		uint64_t reaped = 0, recycled = 0, freed = 0;
		int64_t t0 = tu_now_ns();
		for (int trial = 0; trial < TRIALS; trial++) {
			g_nth = 1 + (uint32_t)(rand_r(&seed) % 3);
			make_jobs(st, g_point->kind);
			pid_t pk = tu_spawn(kid_main, NULL);
			int rc = tu_kid_join(pk, 20000);
			if (rc != 0 && rc != TR_CRASH_STATUS)
				fail_msg("%s, trial %d: child exit %d", g_point->name, trial, rc);
			hits += rc == TR_CRASH_STATUS;
			struct taskring_reap_stats r;
			assert_true(taskring_store_reap(st, &r) >= 0);
			reaped += r.owner_died;
			recycled += r.recycled;
			freed += r.blocks_freed;
			char when[96];
			snprintf(when, sizeof(when), "%s, trial %d, after the crash", g_point->name, trial);
			check_store(st, when);
			finish_jobs(st);
			snprintf(when, sizeof(when), "%s, trial %d, at the end", g_point->name, trial);
			check_store(st, when);
		}
		printf("# %-15s %3d trials, %3d deaths there; the reaper ended %llu attempts, recycled %llu "
		       "slots, freed %llu blocks (%.0f ms)\n",
		       g_point->name, TRIALS, hits, (unsigned long long)reaped, (unsigned long long)recycled,
		       (unsigned long long)freed, (tu_now_ns() - t0) / 1e6);
		/* Nearly every trial reaches its point; all of them must not be
		 * needed for the checks to mean something, most must. */
		assert_true(hits >= TRIALS / 2);
		assert_rc(taskring_store_close(st), 0);
		g_store = NULL;
		taskring_store_unlink(g_name);
	}
}

static int teardown(void **state)
{
	(void)state;
	tu_mp_teardown(&g_store, g_name);
	return 0;
}

int main(void)
{
	tu_alarm(1200);
	tu_kids_init(KID_ALARM_S, 1);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_every_crash_point, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
