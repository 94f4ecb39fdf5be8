/*
 * test_async.c - waiting for many jobs from one io_uring event loop
 * (taskring_job_prep_wait), with the jobs run by a worker in another
 * process; the forced fallback answer; and the fallback itself, a waiter
 * whose file descriptor an event loop polls.
 */
#include <liburing.h>
#include <poll.h>

#include "internal.h"
#include "testutil.h"

#define NJOBS 200

static int square(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const int *p = taskring_ctx_payload(ctx, &len);
	(void)arg;
	/* Slow enough that most requests are in the kernel when woken. */
	tu_sleep_ns(200 * 1000);
	int r = *p * *p;
	taskring_ctx_result(ctx, &r, sizeof(r));
	return TASKRING_OK;
}

/* A worker process that runs @n square jobs of store @name, then exits. */
struct kid_args {
	const char *name;
	int n;
};

static int worker_main(void *arg, int ctl, int ack)
{
	const struct kid_args *a = arg;
	struct taskring_store *st = tu_kid_open(a->name);
	struct taskring_worker *w;
	(void)ctl;
	(void)ack;
	CK_RC(tu_worker_create(st, NULL, 0, 1, &w), 0);
	CK_RC(taskring_worker_register(w, "square", square, NULL), 0);
	for (int done = 0; done < a->n;)
		if (taskring_worker_run_one(w, 10 * SEC) == 1)
			done++;
	taskring_worker_destroy(w);
	taskring_store_close(st);
	return 0;
}

static void test_ring_waits_for_many(void **state)
{
	(void)state;
	if (taskring_async_supported() != 0) {
		print_message("io_uring futex wait unavailable here (Linux 6.7+ needed)\n");
		skip();
	}
	const char *name = tu_shm_name();
	struct taskring_store *st = tu_open_small(name, 1024);
	struct taskring_job jobs[NJOBS];
	struct io_uring ring;
	int done[NJOBS] = {0}, ndone = 0, resubmits = 0;

	assert_rc(taskring_task_declare(st, "square"), 0);
	for (int i = 0; i < NJOBS; i++)
		assert_rc(taskring_enqueue(st, "square", &i, sizeof(i), NULL, &jobs[i]), 0);
	assert_int_equal(io_uring_queue_init(256, &ring, 0), 0);
	for (int i = 0; i < NJOBS; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		assert_non_null(sqe);
		assert_rc(taskring_job_prep_wait(&jobs[i], sqe), 0);
		io_uring_sqe_set_data64(sqe, (uint64_t)i);
	}
	assert_int_equal(io_uring_submit(&ring), NJOBS);

	/* Only now does a worker, in another process, start running them. */
	tu_kids_init(60, 2);
	struct kid_args ka = {name, NJOBS};
	pid_t pid = tu_spawn(worker_main, &ka);
	uint64_t waits0 = tr__futex_wait_calls();
	while (ndone < NJOBS) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = {.tv_sec = 10};
		assert_int_equal(io_uring_wait_cqe_timeout(&ring, &cqe, &ts), 0);
		int i = (int)io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		assert_true(i >= 0 && i < NJOBS);
		assert_true(res == 0 || res == -EAGAIN);
		assert_int_equal(done[i], 0);
		int r;
		int rc = taskring_job_result(&jobs[i], 0, &r, sizeof(r), NULL);
		if (rc == -ETIMEDOUT) {
			/* Woken by a change short of the end (pending ->
			 * running): wait again. */
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			assert_non_null(sqe);
			rc = taskring_job_prep_wait(&jobs[i], sqe);
			if (rc == 0) {
				io_uring_sqe_set_data64(sqe, (uint64_t)i);
				assert_int_equal(io_uring_submit(&ring), 1);
				resubmits++;
				continue;
			}
			assert_rc(rc, 1); /* it ended meanwhile */
			io_uring_prep_nop(sqe); /* give the SQE back unused */
			io_uring_sqe_set_data64(sqe, (uint64_t)-1);
			assert_int_equal(io_uring_submit(&ring), 1);
			struct io_uring_cqe *nop;
			assert_int_equal(io_uring_wait_cqe(&ring, &nop), 0);
			assert_int_equal(io_uring_cqe_get_data64(nop), (uint64_t)-1);
			io_uring_cqe_seen(&ring, nop);
			rc = taskring_job_result(&jobs[i], 0, &r, sizeof(r), NULL);
		}
		assert_rc(rc, 0);
		assert_int_equal(r, i * i);
		done[i] = 1;
		ndone++;
	}
	/* The ring did the waiting: no futex system call of our own. */
	assert_int_equal(tr__futex_wait_calls() - waits0, 0);
	print_message("%d jobs awaited on one ring, %d re-armed after a non-final change\n", NJOBS, resubmits);
	assert_int_equal(tu_kid_join(pid, 30000), 0);
	/* An ended job needs no request. */
	struct io_uring_sqe spare;
	assert_rc(taskring_job_prep_wait(&jobs[0], &spare), 1);
	assert_rc(taskring_job_prep_wait(&jobs[0], NULL), -EINVAL);
	io_uring_queue_exit(&ring);
	taskring_store_close(st);
	taskring_store_unlink(name);
}

/* TASKRING_NO_IOURING=1 forces the fallback answer (probed once per process,
 * so in a child). */
static void test_forced_fallback(void **state)
{
	(void)state;
	const char *name = tu_shm_name();
	struct taskring_store *st = tu_open_small(name, 16);
	struct taskring_job job;
	assert_rc(taskring_task_declare(st, "square"), 0);
	int v = 3;
	assert_rc(taskring_enqueue(st, "square", &v, sizeof(v), NULL, &job), 0);
	pid_t pid = fork();
	if (pid == 0) {
		setenv("TASKRING_NO_IOURING", "1", 1);
		struct io_uring_sqe sqe;
		if (taskring_async_supported() != -EOPNOTSUPP)
			_exit(1);
		if (taskring_job_prep_wait(&job, &sqe) != -EOPNOTSUPP)
			_exit(2);
		/* The documented fallback works: wait_any in this thread. */
		if (taskring_job_wait_any(&job, 1, 50 * MS) != -ETIMEDOUT)
			_exit(3);
		_exit(0);
	}
	assert_int_equal(tu_wait_child(pid), 0);
	taskring_store_close(st);
	taskring_store_unlink(name);
}


/* The fallback: a waiter's fd, polled by the test's "event loop", for more
 * jobs than one helper thread watches (so several helpers), run by a worker
 * in another process. */
#define WJOBS 300
static void test_waiter_fd(void **state)
{
	(void)state;
	const char *name = tu_shm_name();
	struct taskring_store *st = tu_open_small(name, 1024);
	struct taskring_job jobs[WJOBS], early;
	struct taskring_waiter *w;
	int seen[WJOBS] = {0};

	assert_rc(taskring_task_declare(st, "square"), 0);
	assert_rc(taskring_waiter_create(st, &w), 0);
	int fd = taskring_waiter_fd(w);
	assert_true(fd >= 0);
	/* An ended job is ready at once. */
	int e = 5;
	assert_rc(taskring_enqueue(st, "square", &e, sizeof(e), NULL, &early), 0);
	assert_rc(taskring_job_cancel(&early), 0);
	assert_rc(taskring_waiter_add(w, &early, 777), 0);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	uint64_t ud = 0;
	struct taskring_job got;
	assert_rc(taskring_waiter_next(w, &got, &ud), 1);
	assert_int_equal(ud, 777);
	assert_rc(taskring_waiter_next(w, &got, &ud), 0);
	assert_int_equal(poll(&pfd, 1, 0), 0); /* cleared */

	for (int i = 0; i < WJOBS; i++) {
		assert_rc(taskring_enqueue(st, "square", &i, sizeof(i), NULL, &jobs[i]), 0);
		assert_rc(taskring_waiter_add(w, &jobs[i], (uint64_t)i), 0);
	}
	tu_kids_init(60, 2);
	uint64_t waits0 = tr__futex_wait_calls();
	struct kid_args ka = {name, WJOBS};
	pid_t pid = tu_spawn(worker_main, &ka);
	int n = 0;
	while (n < WJOBS) {
		assert_int_equal(poll(&pfd, 1, 10000), 1);
		while (taskring_waiter_next(w, &got, &ud) == 1) {
			assert_true(ud < WJOBS);
			assert_int_equal(seen[ud], 0);
			seen[ud] = 1;
			int r;
			assert_rc(taskring_job_result(&got, 0, &r, sizeof(r), NULL), 0);
			assert_int_equal(r, (int)(ud * ud));
			n++;
		}
	}
	/* The helpers slept between changes: about one wait per job, not a
	 * stream of them. */
	uint64_t waits = tr__futex_wait_calls() - waits0;
	print_message("%d jobs through the waiter's fd, %llu futex waits by its helpers\n", WJOBS,
		      (unsigned long long)waits);
	assert_true(waits <= 3 * WJOBS + 20);
	assert_int_equal(tu_kid_join(pid, 30000), 0);
	assert_rc(taskring_waiter_destroy(w), 0);
	assert_rc(taskring_waiter_add(NULL, &early, 0), -EINVAL);
	taskring_store_close(st);
	taskring_store_unlink(name);
}

int main(void)
{
	tu_alarm(120);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring_waits_for_many),
		cmocka_unit_test(test_forced_fallback),
		cmocka_unit_test(test_waiter_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
