/*
 * test_soak.c - 1,000,000 jobs across four processes with exact accounting.
 *
 * Two producer processes enqueue in batches (TASKRING_ENQ_BLOCK) and two
 * worker processes run the jobs, on one "/name" store of 65,536 slots.
 *
 *   payload = { producer, seq, value = mix64(producer << 32 | seq) }
 *   result  = mix64(value ^ RESULT_SALT)
 *
 * The handler checks the payload (length, ranges, value), marks the job in a
 * MAP_SHARED array (one byte per job, atomically incremented) and returns
 * the result. Each producer checks the result of every one of its jobs with
 * taskring_job_result(). At the end: every byte of the array is exactly 1,
 * every producer verified all of its results, the workers ran exactly the
 * total between them and the store's counters agree (completed == enqueued
 * == started == total, nothing failed, dead, cancelled or retried).
 *
 * Result checking and slot recycling. A terminal job keeps its result only
 * until its slot is needed again, and with 65,536 slots the store wraps many
 * times. So the producers hand out global tickets (one per job, in
 * enqueue order) and keep the distance between the newest ticket and the
 * oldest ticket either of them has not checked yet under SOAK_WINDOW
 * (16,384): a producer that would go past it checks its own oldest jobs if
 * it holds the oldest, and otherwise waits for the other one. A job then
 * has at most SOAK_WINDOW + 2 batches of jobs enqueued after it before it
 * is checked, and at least 65,536 - SOAK_WINDOW - 1 free or older terminal
 * slots are recycled before its own, so -ENOENT from taskring_job_result()
 * is a failure, never an expected outcome.
 *
 * Scale: 1,000,000 jobs in the normal build, 100,000 under
 * SANITIZE=address,... and 50,000 under SANITIZE=thread; the environment
 * variable TASKRING_SOAK_JOBS overrides (an even number >= 2). The measured
 * jobs/s is printed for information; nothing asserts a time.
 *
 * The child helpers (tu_spawn(), tu_kid_join(), CK()...) are in testutil.h;
 * see test_multiproc.c for how children are run.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "testutil.h"

#define KID_ALARM_S 580

#define SOAK_SLOTS 65536u
#define SOAK_BATCH 256u
#define SOAK_WINDOW 16384u
#define SOAK_CHECK_CHUNK 1024u
#define RING_CAP 65536u /* per producer; > SOAK_WINDOW + 2 * SOAK_BATCH */
#define RESULT_SALT 0xa5a5a5a5a5a5a5a5ull

struct soak_payload {
	uint32_t producer;
	uint32_t seq;
	uint64_t value;
};

struct soak_shared {
	_Atomic uint64_t ticket;      /* next global ticket */
	_Atomic uint64_t low[2];      /* oldest unchecked ticket per producer, or UINT64_MAX */
	_Atomic uint64_t verified[2]; /* results checked per producer */
	_Atomic uint64_t done[2];     /* jobs run per worker process */
	_Atomic uint64_t bad;         /* handler saw a wrong payload */
	_Atomic int ready;
	uint32_t per_producer;
	uint8_t marks[];              /* one byte per job; __atomic access only */
};

static struct soak_shared *g_sh;
static size_t g_sh_bytes;
static const char *g_name;
static struct taskring_store *g_store;

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t payload_value(uint32_t producer, uint32_t seq)
{
	return mix64(((uint64_t)producer << 32) | seq);
}

static uint64_t expected_result(uint32_t producer, uint32_t seq)
{
	return mix64(payload_value(producer, seq) ^ RESULT_SALT);
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                   */
/* ------------------------------------------------------------------------ */

static int h_soak(struct taskring_ctx *ctx, void *arg)
{
	int index = (int)(intptr_t)arg;
	uint32_t per = g_sh->per_producer;
	struct soak_payload pl;
	size_t len = 0;
	const void *p = taskring_ctx_payload(ctx, &len);

	if (len != sizeof(pl) || p == NULL)
		goto bad;
	memcpy(&pl, p, sizeof(pl));
	if (pl.producer > 1 || pl.seq >= per || pl.value != payload_value(pl.producer, pl.seq) ||
	    taskring_ctx_attempt(ctx) != 0)
		goto bad;
	__atomic_fetch_add(&g_sh->marks[(size_t)pl.producer * per + pl.seq], 1, __ATOMIC_RELAXED);
	uint64_t r = mix64(pl.value ^ RESULT_SALT);
	if (taskring_ctx_result(ctx, &r, sizeof(r)) != 0)
		goto bad;
	atomic_fetch_add_explicit(&g_sh->done[index], 1, memory_order_relaxed);
	return TASKRING_OK;
bad:
	atomic_fetch_add(&g_sh->bad, 1);
	taskring_ctx_error(ctx, "bad payload (len %zu)", len);
	return TASKRING_FAIL;
}

/* A worker child; @arg is its index (0 or 1). */
static int worker_main(void *arg, int ctl, int ack)
{
	static const struct tu_wspec w = { .threads = 1, .tasks = { "soak" }, .fns = { h_soak }, .ntasks = 1 };
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_worker *wk = tu_kid_worker_start(st, &w, arg);
	atomic_fetch_add(&g_sh->ready, 1);
	tu_wait_eof(ctl);
	tu_kid_worker_end(st, wk, -1);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Producers                                                                 */
/* ------------------------------------------------------------------------ */

struct pent {
	struct taskring_job job;
	uint32_t seq;
	uint64_t ticket;
};

struct producer {
	int me;
	struct pent *ring;
	uint64_t head, tail; /* oldest unchecked, next free */
};

/* Check the results of up to n of this producer's oldest jobs. */
static void check_oldest(struct producer *pr, uint32_t n)
{
	for (uint32_t k = 0; k < n && pr->head != pr->tail; k++) {
		struct pent *e = &pr->ring[pr->head % RING_CAP];
		uint64_t r = 0;
		size_t len = 0;
		int rc = taskring_job_result(&e->job, 120 * SEC, &r, sizeof(r), &len);
		if (rc != 0) {
			char err[256] = "";
			taskring_job_error(&e->job, err, sizeof(err));
			fprintf(stderr, "[producer %d] seq %u ticket %llu: result %d (%s), error \"%s\"\n", pr->me,
				e->seq, (unsigned long long)e->ticket, rc, taskring_strerror(rc), err);
		}
		CK_RC(rc, 0);
		CK(len == sizeof(r));
		CK(r == expected_result((uint32_t)pr->me, e->seq));
		pr->head++;
		atomic_fetch_add_explicit(&g_sh->verified[pr->me], 1, memory_order_relaxed);
	}
	atomic_store(&g_sh->low[pr->me], pr->head != pr->tail ? pr->ring[pr->head % RING_CAP].ticket : UINT64_MAX);
}

static int producer_main(void *arg, int ctl, int ack)
{
	(void)ctl;
	struct producer pr = { .me = (int)(intptr_t)arg };
	struct taskring_store *st = tu_kid_open(g_name);
	struct taskring_enqueue_opts o;
	struct taskring_enqueue_item items[SOAK_BATCH] = {0};
	struct soak_payload pls[SOAK_BATCH];
	struct taskring_job hs[SOAK_BATCH];
	uint32_t per = g_sh->per_producer, sent = 0;
	int64_t stall_since = 0;

	pr.ring = calloc(RING_CAP, sizeof(*pr.ring));
	CK(pr.ring != NULL);
	taskring_enqueue_opts_init(&o);
	o.flags = TASKRING_ENQ_BLOCK;
	o.block_timeout_ns = 120 * SEC;
	o.max_retries = 0; /* a failure shows as failed/dead, never as a silent rerun */
	for (uint32_t i = 0; i < SOAK_BATCH; i++) {
		items[i].task = "soak";
		items[i].payload = &pls[i];
		items[i].len = sizeof(pls[i]);
		items[i].opts = NULL;
	}

	while (sent < per) {
		uint32_t b = per - sent < SOAK_BATCH ? per - sent : SOAK_BATCH;
		/* Flow control (see the top of the file). */
		for (;;) {
			uint64_t t = atomic_load(&g_sh->ticket);
			uint64_t l0 = atomic_load(&g_sh->low[0]), l1 = atomic_load(&g_sh->low[1]);
			uint64_t m = l0 < l1 ? l0 : l1;
			if (m == UINT64_MAX || t + b - m <= SOAK_WINDOW)
				break;
			if (atomic_load(&g_sh->low[pr.me]) == m) {
				check_oldest(&pr, SOAK_CHECK_CHUNK);
				stall_since = 0;
			} else {
				/* The other producer holds the oldest; it checks
				 * it when it needs room. */
				if (!stall_since)
					stall_since = tu_now_ns();
				CK(tu_now_ns() - stall_since < 120 * SEC);
				tu_sleep_ns(50 * 1000);
			}
		}
		uint64_t t0 = atomic_fetch_add(&g_sh->ticket, b);
		if (pr.head == pr.tail)
			atomic_store(&g_sh->low[pr.me], t0);
		for (uint32_t i = 0; i < b; i++) {
			pls[i].producer = (uint32_t)pr.me;
			pls[i].seq = sent + i;
			pls[i].value = payload_value((uint32_t)pr.me, sent + i);
		}
		CK_RC(taskring_enqueue_batch(st, items, b, &o, hs), 0);
		for (uint32_t i = 0; i < b; i++) {
			struct pent *e = &pr.ring[pr.tail % RING_CAP];
			e->job = hs[i];
			e->seq = sent + i;
			e->ticket = t0 + i;
			pr.tail++;
		}
		CK(pr.tail - pr.head < RING_CAP);
		sent += b;
	}
	while (pr.head != pr.tail)
		check_oldest(&pr, SOAK_CHECK_CHUNK);
	CK(atomic_load(&g_sh->verified[pr.me]) == per);
	free(pr.ring);
	CK_RC(taskring_store_close(st), 0);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The test                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t soak_total(void)
{
	const char *env = getenv("TASKRING_SOAK_JOBS");
	const char *san = getenv("SANITIZE");
	if (env && *env) {
		uint64_t n = strtoull(env, NULL, 10);
		if (n >= 2)
			return n & ~1ull;
	}
	if (san && strstr(san, "thread"))
		return 50000;
	if (tu_sanitized())
		return 100000;
	return 1000000;
}

static int setup(void **state)
{
	(void)state;
	uint64_t total = soak_total();
	g_sh_bytes = sizeof(struct soak_shared) + total;
	g_sh = tu_mp_setup(g_sh_bytes, &g_name, &g_store);
	if (!g_sh)
		return -1;
	g_sh->per_producer = (uint32_t)(total / 2);
	atomic_store(&g_sh->low[0], UINT64_MAX);
	atomic_store(&g_sh->low[1], UINT64_MAX);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_mp_teardown(&g_store, g_name);
	munmap(g_sh, g_sh_bytes);
	return 0;
}

static void test_soak_two_producers_two_workers(void **state)
{
	(void)state;
	struct taskring_store_opts so;
	struct taskring_queue_stats qs;
	uint32_t per = g_sh->per_producer;
	uint64_t total = (uint64_t)per * 2;

	so = tu_store_opts(SOAK_SLOTS, 4096, 16u << 20, 0, 0);
	assert_rc(taskring_store_open(g_name, &so, &g_store), 0);
	assert_rc(taskring_task_declare(g_store, "soak"), 0);

	pid_t w0 = tu_spawn(worker_main, (void *)(intptr_t)0);
	pid_t w1 = tu_spawn(worker_main, (void *)(intptr_t)1);
	int64_t end = tu_now_ns() + 20 * SEC;
	while (atomic_load(&g_sh->ready) < 2 && tu_now_ns() < end)
		tu_sleep_ns(MS);
	assert_int_equal(atomic_load(&g_sh->ready), 2);

	int64_t t0 = tu_now_ns();
	pid_t p0 = tu_spawn(producer_main, (void *)(intptr_t)0);
	pid_t p1 = tu_spawn(producer_main, (void *)(intptr_t)1);
	/* Either producer failing ends the test at once (the other one may be
	 * waiting for it); the teardown kills the rest. */
	pid_t prod[2] = { p0, p1 };
	int rc[2] = { -100, -100 };
	int64_t deadline = tu_now_ns() + 560 * SEC;
	for (int left = 2; left > 0;) {
		for (int i = 0; i < 2; i++) {
			int st;
			if (rc[i] != -100 || waitpid(prod[i], &st, WNOHANG) != prod[i])
				continue;
			rc[i] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
			tu_kid_forget(prod[i]);
			left--;
			if (rc[i] != 0)
				fail_msg("producer %d exited with %d (signal or failed check)", i, rc[i]);
		}
		if (left && tu_now_ns() > deadline)
			fail_msg("producers still running after 560 s");
		if (left)
			tu_sleep_ns(MS);
	}
	int rc0 = rc[0], rc1 = rc[1];
	int64_t t1 = tu_now_ns();
	double secs = (double)(t1 - t0) / 1e9;
	printf("# soak: %llu jobs, 2 producer + 2 worker processes, %.2f s, %.0f jobs/s "
	       "(worker 0 ran %llu, worker 1 ran %llu)\n",
	       (unsigned long long)total, secs, (double)total / secs,
	       (unsigned long long)atomic_load(&g_sh->done[0]), (unsigned long long)atomic_load(&g_sh->done[1]));
	fflush(stdout);
	assert_int_equal(rc0, 0);
	assert_int_equal(rc1, 0);
	assert_int_equal(tu_kid_join(w0, 60 * 1000), 0);
	assert_int_equal(tu_kid_join(w1, 60 * 1000), 0);

	assert_int_equal(atomic_load(&g_sh->bad), 0);
	assert_int_equal(atomic_load(&g_sh->verified[0]), per);
	assert_int_equal(atomic_load(&g_sh->verified[1]), per);
	assert_int_equal(atomic_load(&g_sh->done[0]) + atomic_load(&g_sh->done[1]), total);
	for (uint64_t i = 0; i < total; i++) {
		uint8_t m = __atomic_load_n(&g_sh->marks[i], __ATOMIC_RELAXED);
		if (m != 1)
			fail_msg("job of producer %llu seq %llu ran %u times", (unsigned long long)(i / per),
				 (unsigned long long)(i % per), m);
	}

	assert_rc(taskring_queue_stats(g_store, NULL, &qs), 0);
	assert_int_equal(qs.enqueued, total);
	assert_int_equal(qs.started, total);
	assert_int_equal(qs.completed, total);
	assert_int_equal(qs.failed, 0);
	assert_int_equal(qs.dead, 0);
	assert_int_equal(qs.cancelled, 0);
	assert_int_equal(qs.retried, 0);
	assert_int_equal(qs.by_status[TASKRING_PENDING], 0);
	assert_int_equal(qs.by_status[TASKRING_RUNNING], 0);
	assert_int_equal(qs.by_status[TASKRING_FAILED], 0);
	assert_int_equal(qs.by_status[TASKRING_DEAD], 0);
	assert_int_equal(qs.by_status[TASKRING_COMPLETE], total < SOAK_SLOTS ? total : SOAK_SLOTS);
}

int main(void)
{
	tu_kids_init(KID_ALARM_S, 5);
	tu_alarm(590);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_soak_two_producers_two_workers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
