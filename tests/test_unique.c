/*
 * test_unique.c - unique_key: one job per key while it is pending or
 * running, across threads and processes; the key is free once the job ends;
 * a process dying with the index's lock held does not lose the keys.
 */
#include <sys/mman.h>

#include "internal.h"
#include "testutil.h"

#define T(fn) cmocka_unit_test_setup_teardown(fn, tu_fx_setup, tu_fx_teardown)

static _Atomic int gate;

static int hold(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	while (!atomic_load(&gate))
		tu_sleep_ms(1);
	return TASKRING_OK;
}

static struct taskring_enqueue_opts keyed(const char *key)
{
	struct taskring_enqueue_opts o = tu_eopts();
	o.unique_key = key;
	return o;
}

static void same_job(const struct taskring_job *a, const struct taskring_job *b)
{
	char x[TASKRING_ID_LEN + 1], y[TASKRING_ID_LEN + 1];
	taskring_job_id(a, x);
	taskring_job_id(b, y);
	assert_string_equal(x, y);
}

static void test_one_job_per_key(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = f->st = tu_open_small(f->name, 64);
	struct taskring_enqueue_opts o1 = keyed("report-42"), o2 = keyed("report-43");
	struct taskring_job a, b, c, d;

	assert_rc(taskring_task_declare(st, "hold"), 0);
	assert_rc(taskring_enqueue(st, "hold", NULL, 0, &o1, &a), 0);
	assert_rc(taskring_enqueue(st, "hold", "x", 1, &o1, &b), 1);
	same_job(&a, &b);
	assert_rc(taskring_enqueue(st, "hold", NULL, 0, &o2, &c), 0);
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
	assert_int_equal(qs.by_status[TASKRING_PENDING], 2);
	assert_int_equal(qs.enqueued, 2);
	char json[2048];
	assert_true(taskring_job_to_json(&a, json, sizeof(json)) > 0);
	assert_non_null(strstr(json, "\"unique_key\":\"report-42\""));

	/* Running still holds the key. */
	atomic_store(&gate, 0);
	f->w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(f->w, "hold", hold, NULL), 0);
	assert_rc(taskring_worker_start(f->w), 0);
	assert_int_equal(tu_wait_status(&a, TASKRING_RUNNING, 5000), 1);
	assert_rc(taskring_enqueue(st, "hold", NULL, 0, &o1, &d), 1);
	same_job(&a, &d);
	/* Ended: the key is free, a new job is made. */
	atomic_store(&gate, 1);
	assert_rc(taskring_job_wait(&a, 5 * SEC), TASKRING_COMPLETE);
	assert_rc(taskring_enqueue(st, "hold", NULL, 0, &o1, &d), 0);
	char x[TASKRING_ID_LEN + 1], y[TASKRING_ID_LEN + 1];
	taskring_job_id(&a, x);
	taskring_job_id(&d, y);
	assert_string_not_equal(x, y);
	/* Cancelled frees it too (the worker gone, so it stays pending). */
	assert_rc(taskring_job_wait(&d, 5 * SEC), TASKRING_COMPLETE);
	assert_rc(taskring_job_wait(&c, 5 * SEC), TASKRING_COMPLETE);
	taskring_worker_destroy(f->w);
	f->w = NULL;
	struct taskring_enqueue_opts o3 = keyed("report-44");
	assert_rc(taskring_enqueue(st, "hold", NULL, 0, &o3, &c), 0);
	assert_rc(taskring_enqueue(st, "hold", NULL, 0, &o3, &d), 1);
	same_job(&c, &d);
	assert_rc(taskring_job_cancel(&c), 0);
	assert_rc(taskring_enqueue(st, "hold", NULL, 0, &o3, &d), 0);
	taskring_job_id(&c, x);
	taskring_job_id(&d, y);
	assert_string_not_equal(x, y);
}

static void test_batch_and_bad_keys(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = f->st = tu_open_small(f->name, 64);
	struct taskring_enqueue_opts o = keyed("dup"), p = keyed("solo");
	struct taskring_enqueue_item items[3] = {
		{"t", NULL, 0, &o, NULL, 0}, {"t", NULL, 0, &p, NULL, 0}, {"t", NULL, 0, &o, NULL, 0},
	};
	struct taskring_job jobs[3];

	assert_rc(taskring_task_declare(st, "t"), 0);
	/* Two items with one key in one batch make one job. */
	assert_rc(taskring_enqueue_batch(st, items, 3, NULL, jobs), 1);
	same_job(&jobs[0], &jobs[2]);
	assert_rc(taskring_enqueue_batch(st, items, 3, NULL, jobs), 3);
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
	assert_int_equal(qs.by_status[TASKRING_PENDING], 2);

	char big[TASKRING_UNIQUE_KEY_MAX + 2];
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	struct taskring_enqueue_opts bad = keyed(big);
	assert_rc(taskring_enqueue(st, "t", NULL, 0, &bad, NULL), -ENAMETOOLONG);
	bad = keyed("");
	assert_rc(taskring_enqueue(st, "t", NULL, 0, &bad, NULL), -EINVAL);
	big[TASKRING_UNIQUE_KEY_MAX] = 0; /* exactly the maximum is fine */
	bad = keyed(big);
	assert_rc(taskring_enqueue(st, "t", NULL, 0, &bad, NULL), 0);
	assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
	assert_int_equal(qs.by_status[TASKRING_PENDING], 3);
}

/* Two producer processes race on the same 300 keys: one job per key. */
#define KEYS 300
struct race {
	_Atomic int made[KEYS];
	_Atomic int go;
};

static int racer(void *arg, int ctl, int ack)
{
	struct race *r = arg;
	const char *name = (const char *)(r + 1);
	struct taskring_store *st = tu_kid_open(name);
	(void)ctl;
	(void)ack;
	while (!atomic_load(&r->go))
		;
	for (int i = 0; i < KEYS; i++) {
		char key[32];
		snprintf(key, sizeof(key), "key-%d", i);
		struct taskring_enqueue_opts o = keyed(key);
		int rc = taskring_enqueue(st, "t", &i, sizeof(i), &o, NULL);
		CK(rc == 0 || rc == 1);
		if (rc == 0)
			atomic_fetch_add(&r->made[i], 1);
	}
	taskring_store_close(st);
	return 0;
}

static void test_race_between_processes(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = f->st = tu_open_small(f->name, 1024);
	struct race *r = mmap(NULL, sizeof(*r) + 128, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(r != MAP_FAILED);
	memset(r, 0, sizeof(*r));
	snprintf((char *)(r + 1), 128, "%s", f->name);
	assert_rc(taskring_task_declare(st, "t"), 0);
	tu_kids_init(60, 2);
	pid_t a = tu_spawn(racer, r), b = tu_spawn(racer, r);
	atomic_store(&r->go, 1);
	assert_int_equal(tu_kid_join(a, 30000), 0);
	assert_int_equal(tu_kid_join(b, 30000), 0);
	for (int i = 0; i < KEYS; i++)
		assert_int_equal(atomic_load(&r->made[i]), 1);
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
	assert_int_equal(qs.by_status[TASKRING_PENDING], KEYS);
	munmap(r, sizeof(*r) + 128);
}

/* A process dies holding the index's lock: the index is rebuilt from the
 * slots and the keys still hold. */
static void test_dead_lock_holder(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = f->st = tu_open_small(f->name, 64);
	struct taskring_enqueue_opts o = keyed("survives");
	struct taskring_job a, b;

	assert_rc(taskring_task_declare(st, "t"), 0);
	assert_rc(taskring_enqueue(st, "t", NULL, 0, &o, &a), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct taskring_store *c;
		if (taskring_store_open(f->name, NULL, &c) || tr__lock(&c->hdr->h_unique_lock, c, TR_LOCK_UNIQUE))
			_exit(1);
		/* Wipe the index, as a crash mid-update might leave it. */
		memset(c->unique, 0, (size_t)(c->unique_mask + 1) * sizeof(uint64_t));
		_exit(0);
	}
	assert_int_equal(tu_wait_child(pid), 0);
	assert_rc(taskring_enqueue(st, "t", NULL, 0, &o, &b), 1);
	same_job(&a, &b);
}

int main(void)
{
	tu_alarm(120);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		T(test_one_job_per_key),
		T(test_batch_and_bad_keys),
		T(test_race_between_processes),
		T(test_dead_lock_holder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
