/*
 * test_multiproc.c - producers, workers, result waiters and cancellers in
 * separate fork()ed processes sharing one store.
 *
 * Every child opens the store itself by name (a "/name" shm store, or a file
 * path in one test), except in the anonymous-store test where it inherits the
 * parent's handle, and exits with a status the parent checks (0 = all its
 * checks passed). Children never call cmocka: a failed check in a child
 * prints the file, line and values to stderr and _exit()s with
 * TU_CHILD_FAILED.
 *
 * The parent never creates a thread (only children start workers), so the
 * fork()s are safe under ThreadSanitizer. Children get the signal handlers
 * the process had before cmocka installed its own (cmocka's handlers longjmp
 * into its runner, which must never happen in a child), an alarm of their
 * own, and are SIGKILLed by the teardown if a test fails before it reaped
 * them. Each child has a control pipe: the parent closes it to tell a worker
 * child to stop.
 *
 * The child helpers (tu_spawn(), tu_kid_join(), tu_kid_open(), the CK()/
 * CK_RC() checks, ...) are in testutil.h, shared with test_nopoll.c and
 * test_soak.c; worker_main() is this file's worker child.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "testutil.h"
#include "internal.h"

#define KID_ALARM_S 120

/* ------------------------------------------------------------------------ */
/* State shared between the parent and its children (MAP_SHARED)             */
/* ------------------------------------------------------------------------ */

#define MAX_SEEN 4096

struct shared {
	_Atomic int ready;               /* worker children that started */
	_Atomic int stop_requested[4];   /* set by worker child i just before worker_stop */
	_Atomic int stop_rc[4];
	_Atomic int64_t stop_ns[4];
	_Atomic int flag[8];
	_Atomic int64_t t[8];
	_Atomic int rc[8];
	_Atomic int done[4];             /* jobs run, per worker child */
	_Atomic int norder;
	_Atomic int order[1024];
	_Atomic uint32_t seen[MAX_SEEN]; /* runs per job sequence number */
	char id[4][TASKRING_ID_LEN + 1];
};

static struct shared *g_sh;
static const char *g_name;       /* the test's store name */
static char g_dir[64];           /* temporary directory (file-path test) */
static char g_path[128];         /* file-path store */
static struct taskring_store *g_store;

/* ------------------------------------------------------------------------ */
/* Children                                                                  */
/* ------------------------------------------------------------------------ */

/* A worker child: what it serves, and how it stops. Its handlers get the
 * struct wspec as their argument. */
struct wspec {
	struct tu_wspec ws;              /* threads, queues, tasks */
	const char *store_name;          /* opened by the child ... */
	struct taskring_store *inherit;  /* ... or this inherited handle */
	int index;                       /* 0..3: its counters in g_sh */
	int64_t drain_ns;                /* taskring_worker_stop()'s timeout */
	int want_stop_rc;
	int job_complete_after_stop;     /* g_sh->id[0] must be complete when stop returns */
};

static void wspec_init(struct wspec *w, const char *name, int index)
{
	memset(w, 0, sizeof(*w));
	w->store_name = name;
	w->ws.threads = 1;
	w->index = index;
	w->drain_ns = -1;
}

static int worker_main(void *arg, int ctl, int ack)
{
	struct wspec *w = arg;
	struct taskring_store *st = w->inherit ? w->inherit : tu_kid_open(w->store_name);
	struct taskring_worker *wk = tu_kid_worker_start(st, &w->ws, w);

	atomic_fetch_add(&g_sh->ready, 1);

	tu_wait_eof(ctl);

	atomic_store(&g_sh->stop_requested[w->index], 1);
	int64_t t0 = tu_now_ns();
	int rc = taskring_worker_stop(wk, w->drain_ns);
	atomic_store(&g_sh->stop_ns[w->index], tu_now_ns() - t0);
	atomic_store(&g_sh->stop_rc[w->index], rc);
	CK_RC(rc, w->want_stop_rc);
	if (w->job_complete_after_stop) {
		struct taskring_job j;
		CK_RC(taskring_job_lookup(st, g_sh->id[0], &j), 0);
		CK_RC(taskring_job_status(&j), TASKRING_COMPLETE);
	}
	CK_RC(taskring_worker_destroy(wk), 0);
	if (!w->inherit)
		CK_RC(taskring_store_close(st), 0);
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
	g_dir[0] = g_path[0] = '\0';
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_mp_teardown(&g_store, g_name);
	if (g_path[0]) {
		taskring_store_unlink(g_path);
		unlink(g_path);
	}
	if (g_dir[0])
		rmdir(g_dir);
	munmap(g_sh, sizeof(struct shared));
	g_sh = NULL;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Handlers (run in worker children)                                         */
/* ------------------------------------------------------------------------ */

/* Deterministic payload bytes for job i. */
static void fill(uint32_t i, unsigned char *buf, size_t len)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
	for (size_t k = 0; k < len; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[k] = (unsigned char)x;
	}
}

/* The result a job must get: its payload reversed and xor-ed with 0x5a. */
static void xform(const unsigned char *in, size_t len, unsigned char *out)
{
	for (size_t k = 0; k < len; k++)
		out[k] = in[len - 1 - k] ^ 0x5a;
}

static int h_xform(struct taskring_ctx *ctx, void *arg)
{
	struct wspec *w = arg;
	size_t len = 0;
	const unsigned char *p = taskring_ctx_payload(ctx, &len);
	unsigned char *out = malloc(len ? len : 1);
	CK(out != NULL);
	CK(len == 0 || p != NULL);
	xform(p, len, out);
	CK_RC(taskring_ctx_result(ctx, out, len), 0);
	free(out);
	atomic_fetch_add(&g_sh->done[w->index], 1);
	return TASKRING_OK;
}

/* Payload: a u32 sequence number. Result: {seq, worker index}. */
static int h_share(struct taskring_ctx *ctx, void *arg)
{
	struct wspec *w = arg;
	size_t len = 0;
	const void *p = taskring_ctx_payload(ctx, &len);
	uint32_t seq, res[2];
	CK(len == sizeof(seq));
	memcpy(&seq, p, sizeof(seq));
	CK(seq < MAX_SEEN);
	atomic_fetch_add(&g_sh->seen[seq], 1);
	atomic_fetch_add(&g_sh->done[w->index], 1);
	tu_sleep_ns(300 * 1000); /* long enough that one worker cannot take all */
	res[0] = seq;
	res[1] = (uint32_t)w->index;
	CK_RC(taskring_ctx_result(ctx, res, sizeof(res)), 0);
	return TASKRING_OK;
}

/* Result: "<queue>:<seq>", the queue read from the job's own info. */
static int h_queue(struct taskring_ctx *ctx, void *arg)
{
	struct wspec *w = arg;
	struct taskring_job_info info;
	size_t len = 0;
	const void *p = taskring_ctx_payload(ctx, &len);
	uint32_t seq;
	char res[96];
	CK(len == sizeof(seq));
	memcpy(&seq, p, sizeof(seq));
	CK_RC(taskring_job_info(taskring_ctx_job(ctx), &info), 0);
	CK(info.status == TASKRING_RUNNING);
	int n = atomic_fetch_add(&g_sh->norder, 1);
	CK(n < 1024);
	atomic_store(&g_sh->order[n], strcmp(info.queue, "qa") == 0 ? 0 : strcmp(info.queue, "qb") == 0 ? 1 : 2);
	snprintf(res, sizeof(res), "%s:%u", info.queue, seq);
	CK_RC(taskring_ctx_result(ctx, res, strlen(res)), 0);
	atomic_fetch_add(&g_sh->done[w->index], 1);
	return TASKRING_OK;
}

/* Runs until a cancel request reaches it (at most 20 s). */
static int h_until_cancel(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	int64_t end = tu_now_ns() + 20 * SEC;
	atomic_store(&g_sh->flag[5], 1);
	while (!taskring_ctx_cancel_requested(ctx) && tu_now_ns() < end)
		tu_sleep_ms(1);
	atomic_store(&g_sh->flag[6], taskring_ctx_cancel_requested(ctx));
	return TASKRING_CANCEL;
}

/* Blocks until g_sh->flag[1] is set (at most 20 s). */
static int h_blocker(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	int64_t end = tu_now_ns() + 20 * SEC;
	CK_RC(taskring_ctx_progress(ctx, 42), 0);
	atomic_store(&g_sh->flag[0], 1);
	while (!atomic_load(&g_sh->flag[1]) && tu_now_ns() < end)
		tu_sleep_ms(1);
	CK_RC(taskring_ctx_result(ctx, "unblocked", 9), 0);
	return TASKRING_OK;
}

static int h_count(struct taskring_ctx *ctx, void *arg)
{
	struct wspec *w = arg;
	atomic_fetch_add(&g_sh->done[w->index], 1);
	CK_RC(taskring_ctx_result(ctx, "counted", 7), 0);
	return TASKRING_OK;
}

/* Behaviour chosen by the payload text. */
static int h_flaky(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	size_t len = 0;
	const char *p = taskring_ctx_payload(ctx, &len);
	char mode[16] = { 0 };
	uint32_t att = taskring_ctx_attempt(ctx);
	memcpy(mode, p, len < sizeof(mode) - 1 ? len : sizeof(mode) - 1);
	if (strcmp(mode, "dead") == 0) {
		taskring_ctx_error(ctx, "boom attempt %u pid %d", att, (int)getpid());
		return TASKRING_RETRY;
	}
	if (strcmp(mode, "fail") == 0) {
		taskring_ctx_error(ctx, "permanent in pid %d", (int)getpid());
		return TASKRING_FAIL;
	}
	if (strcmp(mode, "once") == 0) {
		if (att == 0) {
			taskring_ctx_error(ctx, "first attempt fails");
			return TASKRING_RETRY;
		}
		CK_RC(taskring_ctx_result(ctx, "recovered", 9), 0);
		return TASKRING_OK;
	}
	if (strcmp(mode, "heal") == 0) {
		if (!atomic_load(&g_sh->flag[3])) {
			taskring_ctx_error(ctx, "not healed yet");
			return TASKRING_RETRY;
		}
		CK_RC(taskring_ctx_result(ctx, "healed", 6), 0);
		return TASKRING_OK;
	}
	CK(!"unknown mode");
	return TASKRING_FAIL;
}

/* Signals it runs, waits until its worker was asked to stop, then 200 ms more. */
static int h_slow_stop(struct taskring_ctx *ctx, void *arg)
{
	struct wspec *w = arg;
	int64_t end = tu_now_ns() + 20 * SEC;
	atomic_store(&g_sh->flag[0], 1);
	while (!atomic_load(&g_sh->stop_requested[w->index]) && tu_now_ns() < end)
		tu_sleep_ms(1);
	tu_sleep_ms(200);
	CK_RC(taskring_ctx_result(ctx, "finished", 8), 0);
	atomic_store(&g_sh->flag[1], 1);
	return TASKRING_OK;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

#define T1_JOBS 200

static size_t t1_len(uint32_t i)
{
	if (i == 7)
		return 64 * 1024; /* the store's max_payload, in the arena */
	if (i % 7 == 0)
		return 3000 + i;  /* arena */
	return i % 41;            /* inline, including empty */
}

/* Enqueue xform jobs first .. first + n - 1 (payload sizes from t1_len()). */
static void produce_xform(struct taskring_store *st, uint32_t first, uint32_t n, struct taskring_job *jobs)
{
	unsigned char *pay = malloc(64 * 1024);
	assert_non_null(pay);
	for (uint32_t i = first; i < first + n; i++) {
		size_t len = t1_len(i);
		fill(i, pay, len);
		assert_rc(taskring_enqueue(st, "xform", len ? pay : NULL, len, NULL, &jobs[i]), 0);
	}
	free(pay);
}

static void check_xform_results(struct taskring_job *jobs, uint32_t n)
{
	unsigned char *pay = malloc(64 * 1024), *exp = malloc(64 * 1024), *got = malloc(64 * 1024);
	assert_non_null(pay);
	assert_non_null(exp);
	assert_non_null(got);
	for (uint32_t i = 0; i < n; i++) {
		size_t len = t1_len(i), rlen = 12345;
		fill(i, pay, len);
		xform(pay, len, exp);
		assert_rc(taskring_job_result(&jobs[i], 30 * SEC, got, 64 * 1024, &rlen), 0);
		assert_int_equal(rlen, len);
		if (memcmp(got, exp, len) != 0)
			fail_msg("job %u: result bytes differ from the expected transform", i);
		assert_rc(taskring_job_status(&jobs[i]), TASKRING_COMPLETE);
	}
	free(pay);
	free(exp);
	free(got);
}

/* A worker process completes jobs the producer process enqueued; the
 * producer's taskring_job_result() gets the right bytes. */
static void test_worker_process_completes_jobs(void **state)
{
	(void)state;
	struct taskring_job jobs[T1_JOBS];
	struct taskring_queue_stats qs;
	struct taskring_job_info info;
	struct wspec w;
	size_t rlen = 0;

	g_store = tu_open_small(g_name, 1024);
	assert_rc(taskring_task_declare(g_store, "xform"), 0);
	/* Half before the worker process exists, half while it runs. */
	produce_xform(g_store, 0, T1_JOBS / 2, jobs);
	wspec_init(&w, g_name, 0);
	w.ws.threads = 2;
	tu_wspec_task(&w.ws, "xform", h_xform);
	pid_t pid = tu_spawn(worker_main, &w);
	assert_true(tu_wait_int(&g_sh->ready, 1, 10000));
	produce_xform(g_store, T1_JOBS / 2, T1_JOBS / 2, jobs);
	check_xform_results(jobs, T1_JOBS);

	/* The big one through a buffer that is too small: -ENOBUFS, length. */
	assert_rc(taskring_job_result(&jobs[7], 0, NULL, 0, &rlen), -ENOBUFS);
	assert_int_equal(rlen, 64 * 1024);
	assert_rc(taskring_job_info(&jobs[7], &info), 0);
	assert_int_equal(info.result_len, 64 * 1024);
	assert_int_equal(info.payload_len, 64 * 1024);
	assert_string_equal(info.task_name, "xform");

	assert_int_equal(tu_kid_join(pid, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->done[0]), T1_JOBS);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.enqueued, T1_JOBS);
	assert_int_equal(qs.completed, T1_JOBS);
	assert_int_equal(qs.started, T1_JOBS);
	assert_int_equal(qs.failed, 0);
	assert_int_equal(qs.dead, 0);
	assert_int_equal(qs.by_status[TASKRING_COMPLETE], T1_JOBS);
	assert_int_equal(qs.by_status[TASKRING_PENDING], 0);
}

#define T2_JOBS 400

static void two_workers_share(int batch)
{
	struct taskring_job *jobs = calloc(T2_JOBS, sizeof(*jobs));
	struct wspec w0, w1;
	int by_result[2] = { 0, 0 };
	assert_non_null(jobs);

	g_store = tu_open_small(g_name, 1024);
	assert_rc(taskring_task_declare(g_store, "share"), 0);
	wspec_init(&w0, g_name, 0);
	tu_wspec_task(&w0.ws, "share", h_share);
	wspec_init(&w1, g_name, 1);
	tu_wspec_task(&w1.ws, "share", h_share);
	pid_t p0 = tu_spawn(worker_main, &w0);
	pid_t p1 = tu_spawn(worker_main, &w1);
	assert_true(tu_wait_int(&g_sh->ready, 2, 10000));
	tu_sleep_ms(50); /* both asleep */

	uint32_t *seqs = calloc(T2_JOBS, sizeof(*seqs));
	assert_non_null(seqs);
	for (uint32_t i = 0; i < T2_JOBS; i++)
		seqs[i] = i;
	if (batch) {
		struct taskring_enqueue_item *items = calloc(T2_JOBS, sizeof(*items));
		assert_non_null(items);
		for (uint32_t i = 0; i < T2_JOBS; i++) {
			items[i].task = "share";
			items[i].payload = &seqs[i];
			items[i].len = sizeof(uint32_t);
		}
		assert_rc(taskring_enqueue_batch(g_store, items, T2_JOBS, NULL, jobs), 0);
		free(items);
	} else {
		for (uint32_t i = 0; i < T2_JOBS; i++)
			assert_rc(taskring_enqueue(g_store, "share", &seqs[i], sizeof(uint32_t), NULL, &jobs[i]), 0);
	}
	for (uint32_t i = 0; i < T2_JOBS; i++) {
		uint32_t res[2] = { 0, 0 };
		size_t rlen = 0;
		assert_rc(taskring_job_result(&jobs[i], 30 * SEC, res, sizeof(res), &rlen), 0);
		assert_int_equal(rlen, sizeof(res));
		assert_int_equal(res[0], i);
		assert_true(res[1] <= 1);
		by_result[res[1]]++;
	}
	assert_int_equal(tu_kid_join(p0, 20000), 0);
	assert_int_equal(tu_kid_join(p1, 20000), 0);

	int d0 = atomic_load(&g_sh->done[0]), d1 = atomic_load(&g_sh->done[1]);
	printf("# %s: worker 0 ran %d jobs, worker 1 ran %d\n", batch ? "batch" : "single", d0, d1);
	assert_int_equal(d0 + d1, T2_JOBS);
	assert_int_equal(by_result[0], d0);
	assert_int_equal(by_result[1], d1);
	assert_true(d0 > 0);
	assert_true(d1 > 0);
	for (uint32_t i = 0; i < T2_JOBS; i++)
		if (atomic_load(&g_sh->seen[i]) != 1)
			fail_msg("job %u ran %u times", i, atomic_load(&g_sh->seen[i]));
	free(seqs);
	free(jobs);
}

/* Two worker processes on one queue share the work; every job runs once. */
static void test_two_worker_processes_share(void **state)
{
	(void)state;
	two_workers_share(0);
}

/* The same with one batch: the batch must not leave an idle worker asleep
 * while hundreds of its jobs wait ("sleeping workers are woken"). */
static void test_batch_wakes_idle_worker_processes(void **state)
{
	(void)state;
	two_workers_share(1);
}

/* One worker process serving queues qa and qb, in that (strict) order. */
static void test_worker_serves_two_queues(void **state)
{
	(void)state;
	struct taskring_enqueue_opts oa, ob;
	struct taskring_job ja[30], jb[30];
	struct taskring_queue_stats qs;
	struct wspec w;
	char buf[96], want[96];

	g_store = tu_open_small(g_name, 256);
	assert_rc(taskring_task_declare(g_store, "qtask"), 0);
	taskring_enqueue_opts_init(&oa);
	oa.queue = "qa";
	taskring_enqueue_opts_init(&ob);
	ob.queue = "qb";
	/* qb's jobs first, then qa's; the worker starts after both. */
	for (uint32_t i = 0; i < 20; i++)
		assert_rc(taskring_enqueue(g_store, "qtask", &i, sizeof(i), &ob, &jb[i]), 0);
	for (uint32_t i = 0; i < 20; i++)
		assert_rc(taskring_enqueue(g_store, "qtask", &i, sizeof(i), &oa, &ja[i]), 0);

	wspec_init(&w, g_name, 0);
	w.ws.queues[0] = "qa";
	w.ws.queues[1] = "qb";
	w.ws.nqueues = 2;
	tu_wspec_task(&w.ws, "qtask", h_queue);
	pid_t pid = tu_spawn(worker_main, &w);
	assert_true(tu_wait_int(&g_sh->done[0], 40, 20000));
	/* Strict order: every qa job ran before any qb job. */
	for (int k = 0; k < 40; k++)
		assert_int_equal(atomic_load(&g_sh->order[k]), k < 20 ? 0 : 1);

	/* The worker is idle now; jobs on either queue wake it. */
	tu_sleep_ms(50);
	for (uint32_t i = 20; i < 30; i++) {
		assert_rc(taskring_enqueue(g_store, "qtask", &i, sizeof(i), &ob, &jb[i]), 0);
		assert_rc(taskring_enqueue(g_store, "qtask", &i, sizeof(i), &oa, &ja[i]), 0);
	}
	for (uint32_t i = 0; i < 30; i++) {
		size_t rlen = 0;
		assert_rc(taskring_job_result(&ja[i], 20 * SEC, buf, sizeof(buf) - 1, &rlen), 0);
		buf[rlen] = '\0';
		snprintf(want, sizeof(want), "qa:%u", i);
		assert_string_equal(buf, want);
		assert_rc(taskring_job_result(&jb[i], 20 * SEC, buf, sizeof(buf) - 1, &rlen), 0);
		buf[rlen] = '\0';
		snprintf(want, sizeof(want), "qb:%u", i);
		assert_string_equal(buf, want);
	}
	assert_int_equal(tu_kid_join(pid, 20000), 0);
	assert_rc(taskring_queue_stats(g_store, "qa", &qs), 0);
	assert_int_equal(qs.completed, 30);
	assert_int_equal(qs.enqueued, 30);
	assert_rc(taskring_queue_stats(g_store, "qb", &qs), 0);
	assert_int_equal(qs.completed, 30);
	assert_int_equal(qs.enqueued, 30);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.completed, 60);
}

/* Waits for the result of g_sh->id[0] in its own process; expects -ECANCELED. */
static int waiter_main(void *arg, int ctl, int ack)
{
	(void)arg;
	(void)ctl;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_job j;
	char buf[16];
	size_t rlen = 0;
	CK_RC(taskring_job_lookup(st, g_sh->id[0], &j), 0);
	atomic_store(&g_sh->t[0], tu_now_ns());
	atomic_store(&g_sh->flag[2], 1); /* about to wait */
	int rc = taskring_job_result(&j, 15 * SEC, buf, sizeof(buf), &rlen);
	atomic_store(&g_sh->t[1], tu_now_ns());
	atomic_store(&g_sh->rc[0], rc);
	CK_RC(rc, -ECANCELED);
	CK_RC(taskring_job_status(&j), TASKRING_CANCELLED);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

/* Cancels g_sh->id[0] once the waiter waits; arg = the expected return. */
static int canceller_main(void *arg, int ctl, int ack)
{
	(void)ctl;
	int want = (int)(intptr_t)arg;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_job j;
	CK_RC(taskring_job_lookup(st, g_sh->id[0], &j), 0);
	CK(tu_wait_int(&g_sh->flag[2], 1, 10000));
	if (want == 1)
		CK_RC(tu_wait_status(&j, TASKRING_RUNNING, 10000), TASKRING_RUNNING);
	tu_sleep_ms(200); /* the waiter is asleep by now */
	atomic_store(&g_sh->t[2], tu_now_ns());
	int rc = taskring_job_cancel(&j);
	atomic_store(&g_sh->rc[1], rc);
	CK_RC(rc, want);
	if (want == 0)
		CK_RC(taskring_job_cancel(&j), TASKRING_ESTATE);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

static void check_cancel_timing(void)
{
	int64_t waited = atomic_load(&g_sh->t[1]) - atomic_load(&g_sh->t[0]);
	int64_t after_cancel = atomic_load(&g_sh->t[1]) - atomic_load(&g_sh->t[2]);
	printf("# waiter woke %.3f ms after the cancel (waited %.3f ms)\n", after_cancel / 1e6, waited / 1e6);
	assert_true(waited >= 150 * MS);       /* it really waited */
	assert_true(after_cancel >= 0);
	assert_true(after_cancel < 2 * SEC);   /* promptly, not at its timeout */
}

/* A pending job: the waiter in one process gets -ECANCELED when a third
 * process cancels it. */
static void test_cancel_pending_wakes_waiter_elsewhere(void **state)
{
	(void)state;
	struct taskring_job j;
	struct taskring_queue_stats qs;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "nobody"), 0);
	assert_rc(taskring_enqueue(g_store, "nobody", "x", 1, NULL, &j), 0);
	assert_rc(taskring_job_id(&j, g_sh->id[0]), 0);
	pid_t pw = tu_spawn(waiter_main, NULL);
	pid_t pc = tu_spawn(canceller_main, (void *)(intptr_t)0);
	assert_int_equal(tu_kid_join(pc, 20000), 0);
	assert_int_equal(tu_kid_join(pw, 20000), 0);
	check_cancel_timing();
	assert_rc(taskring_job_status(&j), TASKRING_CANCELLED);
	size_t rlen = 0;
	assert_rc(taskring_job_result(&j, 0, NULL, 0, &rlen), -ECANCELED);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.cancelled, 1);
	assert_int_equal(qs.started, 0);
}

/* A running job: a worker process runs it, a waiter waits in another, a
 * third cancels; the handler sees the request, the waiter -ECANCELED. */
static void test_cancel_running_wakes_waiter_elsewhere(void **state)
{
	(void)state;
	struct taskring_job j;
	struct taskring_job_info info;
	struct wspec w;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "coop"), 0);
	assert_rc(taskring_enqueue(g_store, "coop", "x", 1, NULL, &j), 0);
	assert_rc(taskring_job_id(&j, g_sh->id[0]), 0);
	wspec_init(&w, g_name, 0);
	tu_wspec_task(&w.ws, "coop", h_until_cancel);
	pid_t pk = tu_spawn(worker_main, &w);
	pid_t pw = tu_spawn(waiter_main, NULL);
	pid_t pc = tu_spawn(canceller_main, (void *)(intptr_t)1);
	assert_int_equal(tu_kid_join(pc, 20000), 0);
	assert_int_equal(tu_kid_join(pw, 20000), 0);
	check_cancel_timing();
	assert_int_equal(atomic_load(&g_sh->flag[6]), 1); /* the handler saw it */
	assert_rc(taskring_job_status(&j), TASKRING_CANCELLED);
	assert_rc(taskring_job_info(&j, &info), 0);
	assert_int_equal(info.cancel_requested, 1);
	assert_int_equal(tu_kid_join(pk, 20000), 0);
}

/* Lookup by id text in a process other than the producer's, both ways. */
static int lookup_main(void *arg, int ctl, int ack)
{
	(void)arg;
	(void)ctl;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_job j, ju, mine;
	struct taskring_job_info info;
	struct taskring_enqueue_opts o;
	char id[TASKRING_ID_LEN + 1], idu[TASKRING_ID_LEN + 1], bad[TASKRING_ID_LEN + 1];
	char pay[64], json[8192];
	size_t plen = 0;

	CK_RC(taskring_job_lookup(st, g_sh->id[0], &j), 0);
	CK_RC(taskring_job_id(&j, id), 0);
	CK(strcmp(id, g_sh->id[0]) == 0);
	CK_RC(taskring_job_status(&j), TASKRING_PENDING);
	CK_RC(taskring_job_info(&j, &info), 0);
	CK(strcmp(info.id, g_sh->id[0]) == 0);
	CK(strcmp(info.task_name, "lk") == 0);
	CK(strcmp(info.queue, "lq") == 0);
	CK(info.priority == 7);
	CK(info.status == TASKRING_PENDING);
	CK(info.payload_len == 12);
	CK_RC(taskring_job_payload(&j, pay, sizeof(pay), &plen), 0);
	CK(plen == 12 && memcmp(pay, "hello lookup", 12) == 0);
	int n = taskring_job_to_json(&j, json, sizeof(json));
	CK(n > 0 && (size_t)n < sizeof(json));
	CK(strstr(json, g_sh->id[0]) != NULL);
	CK(strstr(json, "\"lq\"") != NULL);

	/* Upper-case hex finds the same job. */
	CK_RC(taskring_job_lookup(st, g_sh->id[1], &ju), 0);
	CK_RC(taskring_job_id(&ju, idu), 0);
	CK(strcmp(idu, id) == 0);
	/* Malformed text and an id no job has. */
	CK_RC(taskring_job_lookup(st, "not-a-job-id", &ju), -EINVAL);
	memcpy(bad, id, sizeof(bad));
	bad[TASKRING_ID_LEN - 1] = bad[TASKRING_ID_LEN - 1] == '0' ? '1' : '0';
	CK_RC(taskring_job_lookup(st, bad, &ju), -ENOENT);

	/* And the other way: a job made here, looked up by the parent. */
	taskring_enqueue_opts_init(&o);
	o.queue = "lq";
	CK_RC(taskring_enqueue(st, "lk", "from child", 10, &o, &mine), 0);
	CK_RC(taskring_job_id(&mine, g_sh->id[2]), 0);
	atomic_store(&g_sh->flag[0], 1);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

static void test_lookup_by_id_other_process(void **state)
{
	(void)state;
	struct taskring_enqueue_opts o;
	struct taskring_job j, theirs;
	struct taskring_job_info info;
	char pay[64];
	size_t plen = 0;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "lk"), 0);
	taskring_enqueue_opts_init(&o);
	o.queue = "lq";
	o.priority = 7;
	o.metadata = "{\"k\":1}";
	assert_rc(taskring_enqueue(g_store, "lk", "hello lookup", 12, &o, &j), 0);
	assert_rc(taskring_job_id(&j, g_sh->id[0]), 0);
	assert_int_equal(strlen(g_sh->id[0]), TASKRING_ID_LEN);
	for (int k = 0; k <= (int)TASKRING_ID_LEN; k++) {
		char c = g_sh->id[0][k];
		g_sh->id[1][k] = (c >= 'a' && c <= 'f') ? (char)(c - 'a' + 'A') : c;
	}
	pid_t pid = tu_spawn(lookup_main, NULL);
	assert_int_equal(tu_kid_join(pid, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->flag[0]), 1);
	assert_rc(taskring_job_lookup(g_store, g_sh->id[2], &theirs), 0);
	assert_rc(taskring_job_payload(&theirs, pay, sizeof(pay), &plen), 0);
	assert_int_equal(plen, 10);
	assert_memory_equal(pay, "from child", 10);
	assert_rc(taskring_job_info(&theirs, &info), 0);
	assert_string_equal(info.queue, "lq");
	assert_int_equal(info.status, TASKRING_PENDING);
}

static int resume_main(void *arg, int ctl, int ack)
{
	(void)ctl;
	struct taskring_store *st = tu_kid_open(g_name);
	CK_RC(taskring_queue_resume(st, (const char *)arg), 0);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

/* Pause in this process stops claiming in the worker process (even one that
 * was busy when the pause came); resume in a third process wakes it. */
static void test_pause_resume_across_processes(void **state)
{
	(void)state;
	struct taskring_enqueue_opts o;
	struct taskring_job blk, jobs[10];
	struct taskring_queue_stats qs;
	struct wspec w;
	char buf[16];
	size_t rlen = 0;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "blocker"), 0);
	assert_rc(taskring_task_declare(g_store, "count"), 0);
	taskring_enqueue_opts_init(&o);
	o.queue = "pq";
	wspec_init(&w, g_name, 0);
	w.ws.queues[0] = "pq";
	w.ws.nqueues = 1;
	tu_wspec_task(&w.ws, "blocker", h_blocker);
	tu_wspec_task(&w.ws, "count", h_count);
	pid_t pid = tu_spawn(worker_main, &w);
	assert_true(tu_wait_int(&g_sh->ready, 1, 10000));

	assert_rc(taskring_enqueue(g_store, "blocker", NULL, 0, &o, &blk), 0);
	assert_int_equal(tu_wait_status(&blk, TASKRING_RUNNING, 10000), TASKRING_RUNNING);
	/* Progress reported in the worker process is visible here at once. */
	assert_true(tu_wait_int(&g_sh->flag[0], 1, 10000));
	assert_rc(taskring_job_progress(&blk), 42);
	assert_rc(taskring_queue_pause(g_store, "pq"), 0);
	assert_rc(taskring_queue_pause(g_store, "pq"), 0); /* idempotent */
	for (int i = 0; i < 10; i++)
		assert_rc(taskring_enqueue(g_store, "count", NULL, 0, &o, &jobs[i]), 0);
	atomic_store(&g_sh->flag[1], 1); /* let the blocker finish */
	assert_rc(taskring_job_result(&blk, 10 * SEC, buf, sizeof(buf), &rlen), 0);
	assert_int_equal(rlen, 9);

	tu_sleep_ms(300);
	assert_int_equal(atomic_load(&g_sh->done[0]), 0);
	for (int i = 0; i < 10; i++)
		assert_rc(taskring_job_status(&jobs[i]), TASKRING_PENDING);
	assert_rc(taskring_queue_stats(g_store, "pq", &qs), 0);
	assert_int_equal(qs.paused, 1);
	assert_int_equal(qs.by_status[TASKRING_PENDING], 10);
	assert_int_equal(qs.by_status[TASKRING_RUNNING], 0);

	pid_t pr = tu_spawn(resume_main, (void *)"pq");
	assert_int_equal(tu_kid_join(pr, 10000), 0);
	for (int i = 0; i < 10; i++) {
		assert_rc(taskring_job_result(&jobs[i], 10 * SEC, buf, sizeof(buf), &rlen), 0);
		assert_int_equal(rlen, 7);
	}
	assert_int_equal(atomic_load(&g_sh->done[0]), 10);
	assert_int_equal(tu_kid_join(pid, 20000), 0);
	assert_rc(taskring_queue_stats(g_store, "pq", &qs), 0);
	assert_int_equal(qs.paused, 0);
	assert_int_equal(qs.completed, 11);
}

/* Retries, dead letter, permanent failure and retry_dead across processes. */
static void test_retries_and_dead_across_processes(void **state)
{
	(void)state;
	static const int64_t delays[1] = { 20 * MS };
	struct taskring_enqueue_opts o, o0;
	struct taskring_job jdead, jfail, jonce, jheal, jnew;
	struct taskring_error_record recs[8];
	struct taskring_job_info info;
	struct taskring_queue_stats qs;
	struct wspec w;
	char buf[256], want[128], id[TASKRING_ID_LEN + 1], nid[TASKRING_ID_LEN + 1];
	size_t rlen = 0;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "flaky"), 0);
	wspec_init(&w, g_name, 0);
	tu_wspec_task(&w.ws, "flaky", h_flaky);
	pid_t pid = tu_spawn(worker_main, &w);

	taskring_enqueue_opts_init(&o);
	o.max_retries = 2;
	o.retry_delays_ns = delays;
	o.n_retry_delays = 1;
	taskring_enqueue_opts_init(&o0);
	o0.max_retries = 0;
	assert_rc(taskring_enqueue(g_store, "flaky", "dead", 4, &o, &jdead), 0);
	assert_rc(taskring_enqueue(g_store, "flaky", "fail", 4, &o, &jfail), 0);
	assert_rc(taskring_enqueue(g_store, "flaky", "once", 4, &o, &jonce), 0);
	assert_rc(taskring_enqueue(g_store, "flaky", "heal", 4, &o0, &jheal), 0);

	/* Retries exhausted: dead, with the newest error and the history. */
	assert_rc(taskring_job_result(&jdead, 20 * SEC, buf, sizeof(buf), &rlen), TASKRING_EDEAD);
	assert_rc(taskring_job_status(&jdead), TASKRING_DEAD);
	snprintf(want, sizeof(want), "boom attempt 2 pid %d", (int)pid);
	assert_int_equal(taskring_job_error(&jdead, buf, sizeof(buf)), (int)strlen(want));
	assert_string_equal(buf, want);
	assert_rc(taskring_job_id(&jdead, id), 0);
	assert_int_equal(taskring_job_errors(&jdead, recs, 8), 3);
	for (uint32_t k = 0; k < 3; k++) {
		snprintf(want, sizeof(want), "boom attempt %u pid %d", k, (int)pid);
		assert_int_equal(recs[k].attempt, k);
		assert_string_equal(recs[k].error, want);
		assert_string_equal(recs[k].job_id, id);
		assert_int_equal(strlen(recs[k].id), TASKRING_ID_LEN);
		assert_true(recs[k].failed_at_ns > 0);
		if (k > 0)
			assert_true(recs[k].failed_at_ns >= recs[k - 1].failed_at_ns);
	}
	assert_rc(taskring_job_info(&jdead, &info), 0);
	assert_int_equal(info.retry_count, 2);
	assert_int_equal(info.max_retries, 2);
	assert_int_equal(info.error_count, 3);

	/* Permanent failure: failed, one error, no retry. */
	assert_rc(taskring_job_result(&jfail, 20 * SEC, buf, sizeof(buf), &rlen), TASKRING_EFAILED);
	assert_rc(taskring_job_status(&jfail), TASKRING_FAILED);
	snprintf(want, sizeof(want), "permanent in pid %d", (int)pid);
	assert_true(taskring_job_error(&jfail, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, want);
	assert_int_equal(taskring_job_errors(&jfail, recs, 8), 1);
	assert_rc(taskring_job_info(&jfail, &info), 0);
	assert_int_equal(info.retry_count, 0);

	/* One failed attempt, then success. */
	assert_rc(taskring_job_result(&jonce, 20 * SEC, buf, sizeof(buf) - 1, &rlen), 0);
	buf[rlen] = '\0';
	assert_string_equal(buf, "recovered");
	assert_int_equal(taskring_job_errors(&jonce, recs, 8), 1);
	assert_int_equal(recs[0].attempt, 0);
	assert_string_equal(recs[0].error, "first attempt fails");
	assert_rc(taskring_job_info(&jonce, &info), 0);
	assert_int_equal(info.retry_count, 1);
	assert_int_equal(info.status, TASKRING_COMPLETE);

	/* max_retries 0: dead after one run; retry_dead makes a new job. */
	assert_rc(taskring_job_result(&jheal, 20 * SEC, buf, sizeof(buf), &rlen), TASKRING_EDEAD);
	assert_int_equal(taskring_job_errors(&jheal, NULL, 0), 1);

	/* The dead-letter list, read here, holds both dead jobs. */
	{
		uint64_t cur = 0;
		struct taskring_job it;
		int r, ndead = 0, found = 0;
		char itid[TASKRING_ID_LEN + 1];
		while ((r = taskring_job_next(g_store, 1u << TASKRING_DEAD, NULL, NULL, &cur, &it)) == 1) {
			ndead++;
			assert_rc(taskring_job_id(&it, itid), 0);
			if (strcmp(itid, id) == 0)
				found++;
		}
		assert_int_equal(r, 0);
		assert_int_equal(ndead, 2);
		assert_int_equal(found, 1);
	}

	atomic_store(&g_sh->flag[3], 1);
	assert_rc(taskring_job_retry_dead(&jheal, &jnew), 0);
	assert_rc(taskring_job_retry_dead(&jonce, NULL), TASKRING_ESTATE);
	assert_rc(taskring_job_result(&jnew, 20 * SEC, buf, sizeof(buf) - 1, &rlen), 0);
	buf[rlen] = '\0';
	assert_string_equal(buf, "healed");
	assert_rc(taskring_job_id(&jheal, id), 0);
	assert_rc(taskring_job_id(&jnew, nid), 0);
	assert_string_not_equal(id, nid);
	assert_rc(taskring_job_status(&jheal), TASKRING_DEAD);

	/* The cumulative counters, once the worker is gone: a waiter may see
	 * a job terminal a moment before its counter moves. */
	assert_int_equal(tu_kid_join(pid, 20000), 0);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.dead, 2);
	assert_int_equal(qs.completed, 2);
	assert_true(qs.retried >= 3);
	assert_int_equal(qs.by_status[TASKRING_DEAD], 2);
	assert_int_equal(qs.by_status[TASKRING_FAILED], 1);
}

/* A worker process stopped gracefully finishes its running job and claims
 * nothing more. */
static void test_graceful_stop_finishes_running_job(void **state)
{
	(void)state;
	struct taskring_job j1, j2;
	struct wspec w;
	char buf[16];
	size_t rlen = 0;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "slow"), 0);
	assert_rc(taskring_enqueue(g_store, "slow", NULL, 0, NULL, &j1), 0);
	assert_rc(taskring_job_id(&j1, g_sh->id[0]), 0);
	wspec_init(&w, g_name, 0);
	w.drain_ns = 10 * SEC;
	w.want_stop_rc = 0;
	w.job_complete_after_stop = 1;
	tu_wspec_task(&w.ws, "slow", h_slow_stop);
	pid_t pid = tu_spawn(worker_main, &w);
	assert_int_equal(tu_wait_status(&j1, TASKRING_RUNNING, 10000), TASKRING_RUNNING);
	/* One thread, busy: this one stays pending and must not be claimed
	 * once the stop began. */
	assert_rc(taskring_enqueue(g_store, "slow", NULL, 0, NULL, &j2), 0);
	assert_int_equal(tu_kid_join(pid, 20000), 0); /* closes the pipe: stop */
	assert_int_equal(atomic_load(&g_sh->stop_rc[0]), 0);
	assert_int_equal(atomic_load(&g_sh->flag[1]), 1);
	assert_true(atomic_load(&g_sh->stop_ns[0]) >= 150 * MS); /* it did wait for the handler */
	assert_rc(taskring_job_result(&j1, 0, buf, sizeof(buf), &rlen), 0);
	assert_int_equal(rlen, 8);
	assert_memory_equal(buf, "finished", 8);
	assert_rc(taskring_job_status(&j2), TASKRING_PENDING);
}

/* The drain timeout expires: stop returns -ETIMEDOUT, the running handler
 * gets a cancel request and the job ends cancelled. */
static void test_stop_drain_timeout_cancels(void **state)
{
	(void)state;
	struct taskring_job j;
	struct wspec w;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "coop"), 0);
	assert_rc(taskring_enqueue(g_store, "coop", NULL, 0, NULL, &j), 0);
	wspec_init(&w, g_name, 0);
	w.drain_ns = 200 * MS;
	w.want_stop_rc = -ETIMEDOUT;
	tu_wspec_task(&w.ws, "coop", h_until_cancel);
	pid_t pid = tu_spawn(worker_main, &w);
	assert_int_equal(tu_wait_status(&j, TASKRING_RUNNING, 10000), TASKRING_RUNNING);
	assert_int_equal(tu_kid_join(pid, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->stop_rc[0]), -ETIMEDOUT);
	assert_int_equal(atomic_load(&g_sh->flag[6]), 1);
	size_t rlen = 0;
	assert_rc(taskring_job_result(&j, 5 * SEC, NULL, 0, &rlen), -ECANCELED);
}

/* Anonymous store, enqueues and checks xform results from a child. */
static int anon_producer_main(void *arg, int ctl, int ack)
{
	(void)ctl;
	struct taskring_store *st = arg;
	struct taskring_job jobs[50];
	unsigned char pay[4096], exp[4096], got[4096];
	for (uint32_t i = 0; i < 50; i++) {
		size_t len = (size_t)(i * 83) % sizeof(pay);
		fill(1000 + i, pay, len);
		CK_RC(taskring_enqueue(st, "xform", pay, len, NULL, &jobs[i]), 0);
	}
	for (uint32_t i = 0; i < 50; i++) {
		size_t len = (size_t)(i * 83) % sizeof(pay), rlen = 0;
		fill(1000 + i, pay, len);
		xform(pay, len, exp);
		CK_RC(taskring_job_result(&jobs[i], 20 * SEC, got, sizeof(got), &rlen), 0);
		CK(rlen == len);
		CK(memcmp(got, exp, len) == 0);
	}
	return 0;
}

/* An anonymous store shared with fork()ed children through the inherited
 * handle: a worker child serves the parent's jobs and a producer child's. */
static void test_anonymous_store_shared_with_children(void **state)
{
	(void)state;
	struct taskring_job jobs[T1_JOBS];
	struct taskring_queue_stats qs;
	struct wspec w;

	g_store = tu_open_small(NULL, 1024); /* anonymous */
	assert_rc(taskring_task_declare(g_store, "xform"), 0);
	wspec_init(&w, NULL, 0);
	w.inherit = g_store;
	w.ws.threads = 2;
	tu_wspec_task(&w.ws, "xform", h_xform);
	pid_t pw = tu_spawn(worker_main, &w);
	pid_t pp = tu_spawn(anon_producer_main, g_store);
	produce_xform(g_store, 0, T1_JOBS, jobs);
	check_xform_results(jobs, T1_JOBS);
	assert_int_equal(tu_kid_join(pp, 30000), 0);
	assert_int_equal(tu_kid_join(pw, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->done[0]), T1_JOBS + 50);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.enqueued, T1_JOBS + 50);
	assert_int_equal(qs.completed, T1_JOBS + 50);
}

/* A store at a file path: producer and worker are both children that open
 * it by path. */
static int path_producer_main(void *arg, int ctl, int ack)
{
	(void)ctl;
	struct taskring_store *st = tu_kid_open((const char *)arg);
	CK(anon_producer_main(st, -1, -1) == 0);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

static void test_file_path_store(void **state)
{
	(void)state;
	struct taskring_queue_stats qs;
	struct wspec w;

	snprintf(g_dir, sizeof(g_dir), "/tmp/taskring-mp-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	snprintf(g_path, sizeof(g_path), "%s/store", g_dir);
	g_store = tu_open_small(g_path, 256);
	assert_rc(taskring_task_declare(g_store, "xform"), 0);
	wspec_init(&w, g_path, 0);
	tu_wspec_task(&w.ws, "xform", h_xform);
	pid_t pw = tu_spawn(worker_main, &w);
	pid_t pp = tu_spawn(path_producer_main, g_path);
	assert_int_equal(tu_kid_join(pp, 30000), 0);
	assert_int_equal(tu_kid_join(pw, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->done[0]), 50);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.completed, 50);
	struct stat sb;
	assert_int_equal(lstat(g_path, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
}

/* Many processes open a store that does not exist yet, all at once: each
 * either creates it or finds it ready, and all use the same one. */
#define OPENERS 6

static int opener_main(void *arg, int ctl, int ack)
{
	(void)ctl;
	uint32_t idx = (uint32_t)(intptr_t)arg;
	struct taskring_store_opts o = tu_store_opts(256, 4096, 1u << 20, 0, 0);
	struct taskring_store_info info;
	struct taskring_store *st = NULL;

	atomic_fetch_add(&g_sh->ready, 1);
	while (!atomic_load(&g_sh->flag[0]))
		; /* start together */
	CK_RC(taskring_store_open(g_name, &o, &st), 0);
	CK_RC(taskring_store_info(st, &info), 0);
	CK(info.slots == 256);
	CK(info.max_payload == 4096);
	CK_RC(taskring_task_declare(st, "open"), 0);
	CK_RC(taskring_enqueue(st, "open", &idx, sizeof(idx), NULL, NULL), 0);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

static void test_concurrent_first_open(void **state)
{
	(void)state;
	struct taskring_store_opts o;
	struct taskring_queue_stats qs;
	struct taskring_job j;
	pid_t pids[OPENERS];
	uint64_t cur = 0;
	int r, seen[OPENERS] = { 0 };

	for (int i = 0; i < OPENERS; i++)
		pids[i] = tu_spawn(opener_main, (void *)(intptr_t)i);
	assert_true(tu_wait_int(&g_sh->ready, OPENERS, 10000));
	atomic_store(&g_sh->flag[0], 1);
	for (int i = 0; i < OPENERS; i++)
		assert_int_equal(tu_kid_join(pids[i], 20000), 0);

	memset(&o, 0, sizeof(o));
	o.flags = TASKRING_STORE_NOCREATE;
	assert_rc(taskring_store_open(g_name, &o, &g_store), 0);
	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.enqueued, OPENERS);
	assert_int_equal(qs.by_status[TASKRING_PENDING], OPENERS);
	while ((r = taskring_job_next(g_store, 0, NULL, NULL, &cur, &j)) == 1) {
		uint32_t idx = 99;
		size_t len = 0;
		assert_rc(taskring_job_payload(&j, &idx, sizeof(idx), &len), 0);
		assert_int_equal(len, sizeof(idx));
		assert_true(idx < OPENERS);
		seen[idx]++;
	}
	assert_int_equal(r, 0);
	for (int i = 0; i < OPENERS; i++)
		assert_int_equal(seen[i], 1);
}

/* A producer process blocked on a full store (TASKRING_ENQ_BLOCK) is woken
 * when a worker process frees slots. */
static int blocked_producer_main(void *arg, int ctl, int ack)
{
	(void)arg;
	(void)ctl;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_enqueue_opts o;
	struct taskring_enqueue_item items[4] = {0};
	struct taskring_job j, bj[4];
	char buf[16];
	size_t rlen = 0;

	for (int i = 0; i < 16; i++)
		CK_RC(taskring_enqueue(st, "count", NULL, 0, NULL, NULL), 0);
	/* Full: -EAGAIN without the flag, -ETIMEDOUT with a short wait. */
	CK_RC(taskring_enqueue(st, "count", NULL, 0, NULL, NULL), -EAGAIN);
	taskring_enqueue_opts_init(&o);
	o.flags = TASKRING_ENQ_BLOCK;
	o.block_timeout_ns = 100 * MS;
	int64_t t0 = tu_now_ns();
	CK_RC(taskring_enqueue(st, "count", NULL, 0, &o, NULL), -ETIMEDOUT);
	CK(tu_now_ns() - t0 >= 90 * MS);

	o.block_timeout_ns = 20 * SEC;
	atomic_store(&g_sh->flag[0], 1); /* about to block */
	t0 = tu_now_ns();
	int rc = taskring_enqueue(st, "count", NULL, 0, &o, &j);
	atomic_store(&g_sh->t[0], tu_now_ns() - t0);
	CK_RC(rc, 0);
	atomic_store(&g_sh->flag[1], 1);
	for (int i = 0; i < 4; i++) {
		items[i].task = "count";
		items[i].payload = NULL;
		items[i].len = 0;
		items[i].opts = NULL;
	}
	CK_RC(taskring_enqueue_batch(st, items, 4, &o, bj), 0);
	CK_RC(taskring_job_result(&j, 20 * SEC, buf, sizeof(buf), &rlen), 0);
	for (int i = 0; i < 4; i++)
		CK_RC(taskring_job_result(&bj[i], 20 * SEC, buf, sizeof(buf), &rlen), 0);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

static void test_enqueue_block_woken_by_other_process(void **state)
{
	(void)state;
	struct wspec w;

	g_store = tu_open_small(g_name, 16);
	assert_rc(taskring_task_declare(g_store, "count"), 0);
	pid_t pp = tu_spawn(blocked_producer_main, NULL);
	assert_true(tu_wait_int(&g_sh->flag[0], 1, 10000));
	tu_sleep_ms(300);
	assert_int_equal(atomic_load(&g_sh->flag[1]), 0); /* still blocked: nothing freed a slot */
	wspec_init(&w, g_name, 0);
	tu_wspec_task(&w.ws, "count", h_count);
	pid_t pk = tu_spawn(worker_main, &w);
	assert_int_equal(tu_kid_join(pp, 30000), 0);
	printf("# producer blocked %.1f ms on the full store\n", atomic_load(&g_sh->t[0]) / 1e6);
	assert_true(atomic_load(&g_sh->t[0]) >= 250 * MS);
	assert_int_equal(tu_kid_join(pk, 20000), 0);
	assert_int_equal(atomic_load(&g_sh->done[0]), 16 + 1 + 4);
}

/* Several processes wait on one job's result; its completion wakes all. */
#define WAITERS 4

static int result_waiter_main(void *arg, int ctl, int ack)
{
	(void)ctl;
	int idx = (int)(intptr_t)arg;
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_job j;
	char buf[16];
	size_t rlen = 0;
	CK_RC(taskring_job_lookup(st, g_sh->id[0], &j), 0);
	atomic_fetch_add(&g_sh->flag[2], 1);
	int rc = taskring_job_result(&j, 20 * SEC, buf, sizeof(buf), &rlen);
	atomic_store(&g_sh->rc[idx], rc);
	CK_RC(rc, 0);
	CK(rlen == 9 && memcmp(buf, "unblocked", 9) == 0);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

static void test_completion_wakes_every_waiting_process(void **state)
{
	(void)state;
	struct taskring_job j;
	struct wspec w;
	pid_t pids[WAITERS];
	char buf[16];
	size_t rlen = 0;

	g_store = tu_open_small(g_name, 64);
	assert_rc(taskring_task_declare(g_store, "blocker"), 0);
	assert_rc(taskring_enqueue(g_store, "blocker", NULL, 0, NULL, &j), 0);
	assert_rc(taskring_job_id(&j, g_sh->id[0]), 0);
	for (int i = 0; i < WAITERS; i++)
		pids[i] = tu_spawn(result_waiter_main, (void *)(intptr_t)i);
	wspec_init(&w, g_name, 0);
	tu_wspec_task(&w.ws, "blocker", h_blocker);
	pid_t pk = tu_spawn(worker_main, &w);
	assert_true(tu_wait_int(&g_sh->flag[2], WAITERS, 10000));
	assert_true(tu_wait_int(&g_sh->flag[0], 1, 10000));
	tu_sleep_ms(200); /* all asleep on the job */
	atomic_store(&g_sh->flag[1], 1);
	assert_rc(taskring_job_result(&j, 20 * SEC, buf, sizeof(buf), &rlen), 0);
	for (int i = 0; i < WAITERS; i++)
		assert_int_equal(tu_kid_join(pids[i], 10000), 0);
	assert_int_equal(tu_kid_join(pk, 20000), 0);
}

int main(void)
{
	/* The handlers before cmocka's, for children (see tu_kid_prepare). */
	tu_kids_init(KID_ALARM_S, 2);
	tu_alarm(400);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_worker_process_completes_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_worker_processes_share, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_wakes_idle_worker_processes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_worker_serves_two_queues, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_pending_wakes_waiter_elsewhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_running_wakes_waiter_elsewhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_by_id_other_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume_across_processes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retries_and_dead_across_processes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_graceful_stop_finishes_running_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_drain_timeout_cancels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_anonymous_store_shared_with_children, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_path_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_first_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enqueue_block_woken_by_other_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_wakes_every_waiting_process, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
