/*
 * test_crash.c - a process that dies holding a queue's lock never wedges the
 * store: the next locker gets EOWNERDEAD from the robust mutex, rebuilds the
 * queue's bands and timer heap from the slot table, and carries on with
 * every job still there, in priority and FIFO order.
 */
#include "testutil.h"
#include "internal.h"

static int order[64], norder;

static int record(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const int *p = taskring_ctx_payload(ctx, &len);
	order[norder++] = *p;
	return TASKRING_OK;
}

/* Enqueue jobs with mixed priorities and a delayed one, kill a process that
 * holds the queue lock, and check that everything comes out in order. */
static void test_dead_lock_holder(void **state)
{
	const char *name = tu_shm_name();
	struct taskring_store *st = tu_open_small(name, 64);
	struct taskring_enqueue_opts o;
	struct taskring_job delayed;

	assert_int_equal(taskring_task_declare(st, "rec"), 0);
	taskring_enqueue_opts_init(&o);
	/* payload = expected position in the run order */
	int prios[] = {1, 5, 1, 5, 3, 1};
	int expect_pos[] = {3, 0, 4, 1, 2, 5};
	for (int i = 0; i < 6; i++) {
		o.priority = prios[i];
		assert_int_equal(taskring_enqueue(st, "rec", &expect_pos[i], sizeof(int), &o, NULL), 0);
	}
	o.priority = 9;
	o.delay_ns = 60000000000LL; /* in the timer heap when the lock dies */
	int never = 99;
	assert_int_equal(taskring_enqueue(st, "rec", &never, sizeof(int), &o, &delayed), 0);

	pid_t pid = fork();
	if (pid == 0) {
		struct taskring_store *c;
		if (taskring_store_open(name, NULL, &c))
			_exit(1);
		int qi = tr__queue_find(c, "default", 0);
		if (qi < 0 || tr__lock(&c->queues[qi].q_lock, c, qi))
			_exit(2);
		/* Leave the lists as a process killed mid-update might: here
		 * they look empty, so only the EOWNERDEAD rebuild can find
		 * the jobs again. */
		c->queues[qi].q_nbands = 0;
		atomic_store(&c->queues[qi].q_ready, 0);
		atomic_store(&c->queues[qi].q_timers, 0);
		_exit(0); /* dies holding the lock */
	}
	assert_int_equal(tu_wait_child(pid), 0);

	/* The next enqueue takes the lock, gets EOWNERDEAD and rebuilds. */
	int pos6 = 6;
	o.priority = 0;
	o.delay_ns = 0;
	assert_int_equal(taskring_enqueue(st, "rec", &pos6, sizeof(int), &o, NULL), 0);

	struct taskring_worker *w;
	assert_int_equal(taskring_worker_create(st, NULL, &w), 0);
	assert_int_equal(taskring_worker_register(w, "rec", record, NULL), 0);
	norder = 0;
	for (int i = 0; i < 7; i++)
		assert_int_equal(taskring_worker_run_one(w, 1000000000LL), 1);
	for (int i = 0; i < 7; i++)
		assert_int_equal(order[i], i);
	assert_int_equal(taskring_worker_run_one(w, 0), 0);
	/* The delayed job survived the rebuild in the timer heap: cancelling
	 * it finds and removes it there. */
	assert_int_equal(taskring_job_status(&delayed), TASKRING_PENDING);
	int qi = tr__queue_find(st, "default", 0);
	assert_int_equal(atomic_load(&st->queues[qi].q_timers), 1);
	assert_int_equal(taskring_job_cancel(&delayed), 0);
	assert_int_equal(atomic_load(&st->queues[qi].q_timers), 0);
	assert_int_equal(taskring_job_status(&delayed), TASKRING_CANCELLED);

	/* The store lock too: a creator dying with it held does not block
	 * the next one. */
	pid = fork();
	if (pid == 0) {
		struct taskring_store *c;
		if (taskring_store_open(name, NULL, &c) || tr__lock(&c->hdr->h_lock, c, -1))
			_exit(1);
		_exit(0);
	}
	assert_int_equal(tu_wait_child(pid), 0);
	assert_int_equal(taskring_task_declare(st, "after-crash"), 0);
	assert_int_equal(taskring_queue_pause(st, "another-queue"), 0);

	taskring_worker_destroy(w);
	taskring_store_close(st);
	taskring_store_unlink(name);
}

int main(void)
{
	tu_alarm(60);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dead_lock_holder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
