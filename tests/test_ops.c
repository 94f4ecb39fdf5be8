/*
 * test_ops.c - operations on jobs and queues: replay, change of priority,
 * purge of a queue's pending jobs, purge of old terminal jobs; expiry; and
 * waiting for any or all of a set of jobs.
 */
#include <pthread.h>

#include "internal.h"
#include "testutil.h"

#define T(fn) cmocka_unit_test_setup_teardown(fn, tu_fx_setup, tu_fx_teardown)

/* Records the payload (an int) of every job it runs, in order. */
static int order[256], norder;

static int rec(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const int *p = taskring_ctx_payload(ctx, &len);
	(void)arg;
	if (len == sizeof(int) && norder < 256)
		order[norder++] = *p;
	int r = len == sizeof(int) ? *p * 10 : -1;
	taskring_ctx_result(ctx, &r, sizeof(r));
	return TASKRING_OK;
}

static struct taskring_store *setup(struct tu_fx *f, uint32_t slots)
{
	f->st = tu_open_small(f->name, slots);
	assert_rc(taskring_task_declare(f->st, "rec"), 0);
	f->w = tu_worker(f->st, NULL, 0, 1);
	assert_rc(taskring_worker_register(f->w, "rec", rec, NULL), 0);
	norder = 0;
	return f->st;
}

static void run_all(struct tu_fx *f)
{
	while (taskring_worker_run_one(f->w, 0) == 1)
		;
}

static void test_replay(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = setup(f, 64);
	struct taskring_enqueue_opts o = tu_eopts();
	struct taskring_job a, b, c;
	char ida[TASKRING_ID_LEN + 1], idb[TASKRING_ID_LEN + 1];
	int v = 7, r;
	size_t len;

	o.priority = 4;
	o.max_retries = 1;
	o.metadata = "{\"k\": 1}";
	assert_rc(taskring_enqueue(st, "rec", &v, sizeof(v), &o, &a), 0);
	/* A pending job can be replayed too: two jobs then. */
	assert_rc(taskring_job_replay(&a, &b), 0);
	taskring_job_id(&a, ida);
	taskring_job_id(&b, idb);
	assert_string_not_equal(ida, idb);
	run_all(f);
	assert_int_equal(norder, 2);
	assert_rc(taskring_job_result(&b, SEC, &r, sizeof(r), &len), 0);
	assert_int_equal(r, 70);
	/* And a complete one: the copy keeps queue, priority, options. */
	assert_rc(taskring_job_replay(&a, &c), 0);
	struct taskring_job_info ia, ic;
	assert_rc(taskring_job_info(&a, &ia), 0);
	assert_rc(taskring_job_info(&c, &ic), 0);
	assert_int_equal(ia.status, TASKRING_COMPLETE);
	assert_int_equal(ic.status, TASKRING_PENDING);
	assert_int_equal(ic.priority, 4);
	assert_int_equal(ic.max_retries, 1);
	assert_int_equal(ic.retry_count, 0);
	assert_string_equal(ic.queue, ia.queue);
	char json[2048];
	assert_true(taskring_job_to_json(&c, json, sizeof(json)) > 0);
	assert_non_null(strstr(json, "\"metadata\":\"{\\\"k\\\": 1}\""));
	size_t plen;
	int pv = 0;
	assert_rc(taskring_job_payload(&c, &pv, sizeof(pv), &plen), 0);
	assert_int_equal(pv, 7);
	/* Bad handles. */
	struct taskring_job bad = a;
	bad.slot = 1u << 30;
	assert_rc(taskring_job_replay(&bad, NULL), -EINVAL);
	assert_rc(taskring_job_replay(NULL, NULL), -EINVAL);
}

static void test_set_priority(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = setup(f, 64);
	struct taskring_job j[4], delayed;
	struct taskring_enqueue_opts o = tu_eopts();

	for (int i = 0; i < 4; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), NULL, &j[i]), 0);
	/* 3 to the front, 0 to the back, 1 and 2 keep their order. */
	assert_rc(taskring_job_set_priority(&j[3], 5), 0);
	assert_rc(taskring_job_set_priority(&j[0], -1), 0);
	/* A delayed job keeps its time, takes its priority when due. */
	int d = 9;
	o.delay_ns = 100 * MS;
	assert_rc(taskring_enqueue(st, "rec", &d, sizeof(d), &o, &delayed), 0);
	assert_rc(taskring_job_set_priority(&delayed, 100), 0);
	struct taskring_job_info in;
	assert_rc(taskring_job_info(&delayed, &in), 0);
	assert_int_equal(in.priority, 100);
	run_all(f);
	assert_int_equal(norder, 4);
	assert_int_equal(order[0], 3);
	assert_int_equal(order[1], 1);
	assert_int_equal(order[2], 2);
	assert_int_equal(order[3], 0);
	/* Terminal: refused, nothing changes. */
	assert_rc(taskring_job_set_priority(&j[1], 3), TASKRING_ESTATE);
	assert_rc(taskring_job_info(&j[1], &in), 0);
	assert_int_equal(in.priority, 0);
	/* The delayed job, due now, runs before a job of priority 50. */
	int e = 10;
	assert_rc(taskring_job_status(&delayed), TASKRING_PENDING);
	tu_sleep_ms(150);
	o = tu_eopts();
	o.priority = 50;
	assert_rc(taskring_enqueue(st, "rec", &e, sizeof(e), &o, NULL), 0);
	run_all(f);
	assert_int_equal(norder, 6);
	assert_int_equal(order[4], 9);
	assert_int_equal(order[5], 10);
	assert_rc(taskring_job_set_priority(NULL, 1), -EINVAL);
}

struct waiter {
	struct taskring_job job;
	_Atomic int rc;
	_Atomic int done;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	atomic_store(&w->rc, taskring_job_result(&w->job, 10 * SEC, NULL, 0, NULL));
	atomic_store(&w->done, 1);
	return NULL;
}

static void test_queue_purge(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = setup(f, 128);
	struct taskring_enqueue_opts o = tu_eopts();
	struct taskring_job first, kept, delayed;
	char id[TASKRING_ID_LEN + 1];
	uint64_t n = 99;

	o.queue = "q1";
	for (int i = 0; i < 100; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), &o, i == 0 ? &first : NULL), 0);
	o.delay_ns = 60 * SEC;
	for (int i = 0; i < 10; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), &o, i == 0 ? &delayed : NULL), 0);
	o = tu_eopts();
	o.queue = "q2";
	for (int i = 0; i < 5; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), &o, &kept), 0);
	taskring_job_id(&first, id);

	/* A result waiter on a purged job is released at once. */
	struct waiter w = {.job = first};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
	tu_sleep_ms(50);
	assert_int_equal(atomic_load(&w.done), 0);

	assert_rc(taskring_queue_purge(st, "q1", &n), 0);
	assert_int_equal(n, 110);
	assert_int_equal(tu_wait_int(&w.done, 1, 5000), 1);
	pthread_join(t, NULL);
	assert_rc(atomic_load(&w.rc), -ENOENT);

	assert_rc(taskring_job_status(&first), -ENOENT);
	assert_rc(taskring_job_status(&delayed), -ENOENT);
	struct taskring_job look;
	assert_rc(taskring_job_lookup(st, id, &look), -ENOENT);
	struct taskring_queue_stats s1, s2;
	assert_rc(taskring_queue_stats(st, "q1", &s1), 0);
	assert_rc(taskring_queue_stats(st, "q2", &s2), 0);
	for (int k = 0; k < TASKRING_STATUS_COUNT; k++)
		assert_int_equal(s1.by_status[k], 0);
	assert_int_equal(s2.by_status[TASKRING_PENDING], 5);
	assert_rc(taskring_job_status(&kept), TASKRING_PENDING);

	/* The slots are free again: 110 more jobs fit in the 128-slot store
	 * next to the 5 pending in q2. */
	o = tu_eopts();
	o.queue = "q1";
	for (int i = 0; i < 110; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), &o, NULL), 0);
	assert_rc(taskring_queue_purge(st, "q1", NULL), 0);
	assert_rc(taskring_queue_purge(st, "q1", &n), 0);
	assert_int_equal(n, 0);
	assert_rc(taskring_queue_purge(st, "no-such-queue", &n), -ENOENT);
	assert_rc(taskring_queue_purge(st, "", &n), -EINVAL);
	assert_rc(taskring_queue_purge(NULL, "q1", &n), -EINVAL);
}

/*
 * Written-over links (any attached process can write the region): a head
 * whose s_loc, priority or heap position no longer matches the list it is
 * in is not removed by an unlink. Purges and claims take the head again, so
 * they must rebuild the queue rather than find the same slot forever. A
 * hang is caught by the alarm.
 */
static void test_written_over_head(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = setup(f, 64);
	struct taskring_enqueue_opts o = tu_eopts();
	struct taskring_job j[4];
	uint64_t n = 99;
	unsigned left = alarm(30);
	int v = 3;

	o.queue = "q1";
	for (int i = 0; i < 3; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), &o, &j[i]), 0);
	o.delay_ns = 60 * 1000000000LL;
	assert_rc(taskring_enqueue(st, "rec", &v, sizeof(v), &o, &j[3]), 0);
	/* The ready head is marked unlinked; the timer's heap position is
	 * wrong. Both stay where they are when unlinked. */
	TR_SET(st->slots[j[0].slot].s_loc, TR_LOC_NONE);
	st->slots[j[3].slot].s_heap_pos = 5;
	assert_rc(taskring_queue_purge(st, "q1", &n), 0);
	assert_int_equal(n, 4);
	for (int i = 0; i < 4; i++)
		assert_rc(taskring_job_status(&j[i]), -ENOENT);

	/* A claim: the head is a running job (not pending) marked unlinked;
	 * the worker drops it and runs the next. */
	o.delay_ns = 0;
	o.queue = NULL; /* the one the worker serves */
	for (int i = 0; i < 2; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), &o, &j[i]), 0);
	struct tr_slot *s = &st->slots[j[0].slot];
	uint32_t old = atomic_load(&s->s_state);
	atomic_store(&s->s_state, TR_MKSTATE(TASKRING_RUNNING, TR_ATTEMPT(old), TR_TAG(old)));
	TR_SET(s->s_loc, TR_LOC_NONE);
	assert_rc(taskring_worker_run_one(f->w, 0), 1);
	assert_rc(taskring_job_status(&j[1]), TASKRING_COMPLETE);
	atomic_store(&s->s_state, old);
	alarm(left);
}

static void test_purge_terminal(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = setup(f, 64);
	struct taskring_job old[10], young[5], pending;
	uint64_t n = 99;

	for (int i = 0; i < 10; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), NULL, &old[i]), 0);
	run_all(f);
	tu_sleep_ms(200);
	for (int i = 0; i < 5; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), NULL, &young[i]), 0);
	run_all(f);
	int p = 1;
	assert_rc(taskring_enqueue(st, "rec", &p, sizeof(p), NULL, &pending), 0);

	assert_rc(taskring_store_purge_terminal(st, 100 * MS, &n), 0);
	assert_int_equal(n, 10);
	for (int i = 0; i < 10; i++)
		assert_rc(taskring_job_status(&old[i]), -ENOENT);
	for (int i = 0; i < 5; i++) {
		int r;
		assert_rc(taskring_job_result(&young[i], 0, &r, sizeof(r), NULL), 0);
		assert_int_equal(r, i * 10);
	}
	assert_rc(taskring_job_status(&pending), TASKRING_PENDING);
	assert_rc(taskring_store_purge_terminal(st, 0, &n), 0);
	assert_int_equal(n, 5);
	assert_rc(taskring_job_status(&young[0]), -ENOENT);
	assert_rc(taskring_job_status(&pending), TASKRING_PENDING);
	struct taskring_queue_stats s;
	assert_rc(taskring_queue_stats(st, NULL, &s), 0);
	assert_int_equal(s.by_status[TASKRING_COMPLETE], 0);
	assert_int_equal(s.by_status[TASKRING_PENDING], 1);
	assert_rc(taskring_store_purge_terminal(st, -1, &n), -EINVAL);
	assert_rc(taskring_store_purge_terminal(NULL, 0, &n), -EINVAL);
	/* The store still works: 63 more jobs fit. */
	for (int i = 0; i < 63; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), NULL, NULL), 0);
	assert_rc(taskring_enqueue(st, "rec", &p, sizeof(p), NULL, NULL), -EAGAIN);
}


static void test_expires(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = setup(f, 64);
	struct taskring_enqueue_opts o = tu_eopts();
	struct taskring_job gone, fine, never;
	int a = 1, b = 2, c = 3;

	o.expires_ns = 50 * MS;
	assert_rc(taskring_enqueue(st, "rec", &a, sizeof(a), &o, &gone), 0);
	o.expires_ns = 60 * SEC;
	assert_rc(taskring_enqueue(st, "rec", &b, sizeof(b), &o, &fine), 0);
	o.expires_ns = 0;
	assert_rc(taskring_enqueue(st, "rec", &c, sizeof(c), &o, &never), 0);
	struct taskring_job_info in;
	assert_rc(taskring_job_info(&gone, &in), 0);
	assert_true(in.expires_at_ns > in.created_at_ns);
	assert_rc(taskring_job_info(&never, &in), 0);
	assert_int_equal(in.expires_at_ns, 0);
	tu_sleep_ms(100);
	/* Nobody watched the clock; the claim finds it expired. */
	assert_rc(taskring_job_status(&gone), TASKRING_PENDING);
	run_all(f);
	assert_int_equal(norder, 2);
	assert_int_equal(order[0], 2);
	assert_int_equal(order[1], 3);
	assert_rc(taskring_job_result(&gone, 0, NULL, 0, NULL), -ECANCELED);
	char err[64];
	assert_true(taskring_job_error(&gone, err, sizeof(err)) > 0);
	assert_string_equal(err, "expired before execution");
	assert_rc(taskring_job_info(&gone, &in), 0);
	assert_true(in.completed_at_ns > 0);
	assert_int_equal(in.cancel_requested, 0);
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
	assert_int_equal(qs.cancelled, 1);
	assert_int_equal(qs.by_status[TASKRING_CANCELLED], 1);
	o.expires_ns = -1;
	assert_rc(taskring_enqueue(st, "rec", &a, sizeof(a), &o, NULL), -EINVAL);
}

struct slow_arg {
	struct taskring_store *st;
	struct taskring_job job;
};

/* Cancels a job after 100 ms, from another thread. */
static void *cancel_later(void *arg)
{
	struct slow_arg *a = arg;
	tu_sleep_ms(100);
	taskring_job_cancel(&a->job);
	return NULL;
}

static void test_wait_any_all(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = setup(f, 64);
	struct taskring_job j[3];

	for (int i = 0; i < 3; i++)
		assert_rc(taskring_enqueue(st, "rec", &i, sizeof(i), NULL, &j[i]), 0);
	assert_rc(taskring_job_wait_any(j, 3, 0), -ETIMEDOUT);
	int64_t t0 = tu_now_ns();
	assert_rc(taskring_job_wait_any(j, 3, 50 * MS), -ETIMEDOUT);
	assert_true(tu_now_ns() - t0 >= 50 * MS);
	/* Another thread ends job 2: wait_any sleeps until then, and says 2. */
	struct slow_arg a = {st, j[2]};
	pthread_t t;
	uint64_t waits0 = tr__futex_wait_calls();
	assert_int_equal(pthread_create(&t, NULL, cancel_later, &a), 0);
	assert_rc(taskring_job_wait_any(j, 3, 10 * SEC), 2);
	pthread_join(t, NULL);
	/* It slept on the futexes and did not poll: one call, or a few. */
	uint64_t waits = tr__futex_wait_calls() - waits0;
	assert_true(waits >= 1 && waits <= 3);
	assert_rc(taskring_job_wait_all(j, 3, 50 * MS), -ETIMEDOUT);
	run_all(f);
	assert_rc(taskring_job_wait_all(j, 3, SEC), 0);
	assert_rc(taskring_job_wait_any(j, 3, 0), 0);
	/* Bad input. */
	assert_rc(taskring_job_wait_any(NULL, 1, 0), -EINVAL);
	assert_rc(taskring_job_wait_any(j, 0, 0), -EINVAL);
	assert_rc(taskring_job_wait_any(j, TASKRING_WAIT_MAX + 1, 0), -EINVAL);
	assert_rc(taskring_job_wait_all(j, 0, 0), -EINVAL);
	struct taskring_job bad[2] = {j[0], j[1]};
	bad[1].slot = 1u << 30;
	assert_rc(taskring_job_wait_any(bad, 2, 0), -EINVAL);
	assert_rc(taskring_job_wait_all(bad, 2, 0), -EINVAL);
}


/* Listing by task name, alone and with the state and queue filters. */
static void test_list_by_task(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = setup(f, 64);
	struct taskring_enqueue_opts o = tu_eopts();
	struct taskring_job j;
	uint64_t cur;
	int n, v = 1;

	assert_rc(taskring_task_declare(st, "other"), 0);
	for (int i = 0; i < 6; i++) {
		o.queue = i % 2 ? "qa" : "qb";
		assert_rc(taskring_enqueue(st, i < 4 ? "rec" : "other", &v, sizeof(v), &o, NULL), 0);
	}
	/* rec: jobs 0-3 (qb, qa, qb, qa); other: 4 (qb), 5 (qa). */
	for (cur = 0, n = 0; taskring_job_next(st, 0, NULL, "rec", &cur, &j) == 1; n++) {
		struct taskring_job_info in;
		assert_rc(taskring_job_info(&j, &in), 0);
		assert_string_equal(in.task_name, "rec");
	}
	assert_int_equal(n, 4);
	for (cur = 0, n = 0; taskring_job_next(st, 0, "qa", "other", &cur, &j) == 1; n++)
		;
	assert_int_equal(n, 1);
	for (cur = 0, n = 0; taskring_job_next(st, 1u << TASKRING_COMPLETE, NULL, "rec", &cur, &j) == 1; n++)
		;
	assert_int_equal(n, 0);
	cur = 0;
	assert_rc(taskring_job_next(st, 0, NULL, "never-declared", &cur, &j), 0);
	assert_rc(taskring_job_next(st, 0, NULL, "", &cur, &j), -EINVAL);
}


/* Listing a busy store: a producer thread and two worker threads run while
 * the test lists every job again and again. Each pass ends, sees no job
 * twice (by id), and every handle it returns reads back, or reads as gone. */
struct busy {
	struct taskring_store *st;
	_Atomic int stop;
	_Atomic long made;
};

static void *busy_producer(void *arg)
{
	struct busy *b = arg;
	int v = 1;
	while (!atomic_load(&b->stop))
		if (taskring_enqueue(b->st, "rec", &v, sizeof(v), NULL, NULL) == 0)
			atomic_fetch_add(&b->made, 1);
	return NULL;
}

static int noop(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	return TASKRING_OK;
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, TASKRING_ID_LEN + 1);
}

static void test_list_while_busy(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = f->st = tu_open_small(f->name, 256);
	struct busy b = {.st = st};
	pthread_t prod;
	static char ids[256][TASKRING_ID_LEN + 1];

	assert_rc(taskring_task_declare(st, "rec"), 0);
	f->w = tu_worker(st, NULL, 0, 2);
	assert_rc(taskring_worker_register(f->w, "rec", noop, NULL), 0);
	assert_rc(taskring_worker_start(f->w), 0);
	assert_int_equal(pthread_create(&prod, NULL, busy_producer, &b), 0);
	int passes = 0;
	long listed = 0;
	long want = tu_sanitized() ? 2000 : 20000;
	int64_t give_up = tu_now_ns() + 20 * SEC;
	/* List until the store has turned over many times under us. */
	for (; passes < 20 || (atomic_load(&b.made) < want && tu_now_ns() < give_up); passes++) {
		uint64_t cur = 0;
		struct taskring_job j;
		int n = 0, rc;
		while ((rc = taskring_job_next(st, 0, NULL, NULL, &cur, &j)) == 1) {
			assert_true(n < 256); /* one visit per slot: it ends */
			taskring_job_id(&j, ids[n++]);
			int s2 = taskring_job_status(&j);
			assert_true((s2 >= TASKRING_PENDING && s2 <= TASKRING_CANCELLED) || s2 == -ENOENT);
		}
		assert_rc(rc, 0);
		qsort(ids, (size_t)n, sizeof(ids[0]), cmp_id);
		for (int i = 1; i < n; i++)
			assert_string_not_equal(ids[i - 1], ids[i]);
		listed += n;
	}
	atomic_store(&b.stop, 1);
	pthread_join(prod, NULL);
	print_message("%d passes listed %ld jobs while %ld were enqueued\n", passes, listed, atomic_load(&b.made));
	assert_true(atomic_load(&b.made) >= want);
}

int main(void)
{
	tu_alarm(120);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		T(test_replay),
		T(test_set_priority),
		T(test_queue_purge),
		T(test_written_over_head),
		T(test_purge_terminal),
		T(test_expires),
		T(test_wait_any_all),
		T(test_list_by_task),
		T(test_list_while_busy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
