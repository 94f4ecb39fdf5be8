/*
 * test_prefork.c - TASKRING_WORKER_PREFORK: handlers run in child
 * processes, so a timeout or a cancel can kill them.
 *
 *   - Jobs run in children (their pid is not ours) and complete.
 *   - A handler that never returns is killed at its timeout, each attempt,
 *     until the job is dead; the other jobs keep flowing.
 *   - A cancel of a running job kills its child at once: the job is
 *     cancelled, and the next job runs in a replacement.
 *   - A handler that crashes its child (SIGSEGV) fails that attempt only.
 *   - A graceful stop drains; a stop whose drain runs out cancels the job
 *     that still runs; no child is left behind either way.
 *
 * The children are the worker's, so this program starts threads and forks
 * in the same process: it forks no children of its own.
 */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"
#include "internal.h"

struct shared {
	_Atomic int runs;     /* handler entries, over all children */
	_Atomic int hangs;    /* entries of the hanging handler */
	_Atomic int crashes;
	_Atomic int64_t hang_at; /* CLOCK_MONOTONIC of the last hang entry */
};
static struct shared *g_sh;

static int h_pid(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	int pid = (int)getpid();
	atomic_fetch_add(&g_sh->runs, 1);
	return taskring_ctx_result(ctx, &pid, sizeof(pid)) ? TASKRING_RETRY : TASKRING_OK;
}

static int h_hang(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	atomic_store(&g_sh->hang_at, tu_now_ns());
	atomic_fetch_add(&g_sh->hangs, 1);
	for (;;)
		pause();
	return TASKRING_OK;
}

/* Crashes on its first attempt, completes on the next. */
static int h_crash_once(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	if (taskring_ctx_attempt(ctx) == 0) {
		atomic_fetch_add(&g_sh->crashes, 1);
		signal(SIGSEGV, SIG_DFL); /* cmocka's handler, inherited, would catch it */
		raise(SIGSEGV);
	}
	return taskring_ctx_result(ctx, "ok", 2) ? TASKRING_RETRY : TASKRING_OK;
}

struct fx {
	const char *name;
	struct taskring_store *st;
	struct taskring_worker *w;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	g_sh = mmap(NULL, sizeof(*g_sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!f || g_sh == MAP_FAILED)
		return -1;
	memset(g_sh, 0, sizeof(*g_sh));
	f->name = tu_shm_name();
	f->st = tu_open_small(f->name, 256);
	taskring_task_declare(f->st, "pid");
	taskring_task_declare(f->st, "hang");
	taskring_task_declare(f->st, "crash");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->w)
		taskring_worker_destroy(f->w);
	taskring_store_close(f->st);
	taskring_store_unlink(f->name);
	munmap(g_sh, sizeof(*g_sh));
	free(f);
	return 0;
}

static struct taskring_worker *start_pool(struct fx *f, uint32_t children)
{
	struct taskring_worker_opts wo;
	taskring_worker_opts_init(&wo);
	wo.threads = children;
	wo.flags = TASKRING_WORKER_PREFORK;
	wo.reap_interval_ns = 20 * MS;
	assert_rc(taskring_worker_create(f->st, &wo, &f->w), 0);
	assert_rc(taskring_worker_register(f->w, "pid", h_pid, NULL), 0);
	assert_rc(taskring_worker_register(f->w, "hang", h_hang, NULL), 0);
	assert_rc(taskring_worker_register(f->w, "crash", h_crash_once, NULL), 0);
	assert_rc(taskring_worker_start(f->w), 0);
	return f->w;
}

static void stop_pool(struct fx *f)
{
	assert_rc(taskring_worker_stop(f->w, 10 * SEC), 0);
	assert_rc(taskring_worker_destroy(f->w), 0);
	f->w = NULL;
	/* Every child was waited for. */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static struct taskring_enqueue_opts opts(int64_t timeout_ns, uint32_t retries)
{
	static const int64_t zero = 0;
	struct taskring_enqueue_opts o = tu_eopts();
	o.timeout_ns = timeout_ns;
	o.max_retries = retries;
	o.retry_delays_ns = &zero;
	o.n_retry_delays = 1;
	return o;
}

static int run_pid_job(struct fx *f)
{
	struct taskring_job j;
	int pid = 0;
	size_t len = 0;
	assert_rc(taskring_enqueue(f->st, "pid", NULL, 0, NULL, &j), 0);
	assert_rc(taskring_job_result(&j, 10 * SEC, &pid, sizeof(pid), &len), 0);
	assert_int_equal(len, sizeof(pid));
	return pid;
}

static void test_jobs_run_in_children(void **state)
{
	struct fx *f = *state;
	struct taskring_job jobs[100];
	start_pool(f, 2);
	for (int i = 0; i < 100; i++)
		assert_rc(taskring_enqueue(f->st, "pid", NULL, 0, NULL, &jobs[i]), 0);
	for (int i = 0; i < 100; i++) {
		int pid = 0;
		size_t len = 0;
		assert_rc(taskring_job_result(&jobs[i], 10 * SEC, &pid, sizeof(pid), &len), 0);
		assert_true(pid > 0 && pid != (int)getpid()); /* a child ran it */
	}
	assert_int_equal(atomic_load(&g_sh->runs), 100);
	stop_pool(f);
}

static void test_timeout_kills_the_child(void **state)
{
	struct fx *f = *state;
	struct taskring_enqueue_opts o = opts(300 * MS, 1);
	struct taskring_job j;
	start_pool(f, 2);
	int64_t t0 = tu_now_ns();
	assert_rc(taskring_enqueue(f->st, "hang", NULL, 0, &o, &j), 0);
	/* Meanwhile, the other child keeps running jobs. */
	for (int i = 0; i < 20; i++)
		run_pid_job(f);
	assert_rc(taskring_job_wait(&j, 20 * SEC), TASKRING_DEAD);
	int64_t took = tu_now_ns() - t0;
	assert_int_equal(atomic_load(&g_sh->hangs), 2);
	struct taskring_error_record er[2];
	assert_int_equal(taskring_job_errors(&j, er, 2), 2);
	for (int i = 0; i < 2; i++) {
		if (!strstr(er[i].error, "exceeded its timeout of 300 ms: handler process"))
			fail_msg("error %d: '%s'", i, er[i].error);
		assert_non_null(strstr(er[i].error, "killed"));
	}
	printf("# two attempts of 300 ms killed at their timeout: dead after %.0f ms; '%s'\n", took / 1e6,
	       er[0].error);
	assert_true(took >= 600 * MS); /* never killed early */
	/* The pool still serves, from replacements. */
	assert_true(run_pid_job(f) > 0);
	stop_pool(f);
}

static void test_cancel_kills_the_child(void **state)
{
	struct fx *f = *state;
	struct taskring_enqueue_opts o = opts(60 * SEC, 3);
	struct taskring_job j;
	start_pool(f, 1);
	int first = run_pid_job(f);
	assert_rc(taskring_enqueue(f->st, "hang", NULL, 0, &o, &j), 0);
	assert_rc(tu_wait_status(&j, TASKRING_RUNNING, 10000), TASKRING_RUNNING);
	int64_t t0 = tu_now_ns();
	assert_rc(taskring_job_cancel(&j), 1);
	assert_rc(taskring_job_wait(&j, 10 * SEC), TASKRING_CANCELLED);
	int64_t took = tu_now_ns() - t0;
	printf("# cancel of a running job: cancelled %.2f ms later, its process killed\n", took / 1e6);
	assert_int_equal(taskring_job_errors(&j, NULL, 0), 0); /* a cancel is not an error */
	/* The one child was replaced. */
	int second = run_pid_job(f);
	assert_true(second != first);
	stop_pool(f);
}

static void test_crash_fails_one_attempt(void **state)
{
	struct fx *f = *state;
	struct taskring_enqueue_opts o = opts(60 * SEC, 2);
	struct taskring_job j;
	char buf[8];
	size_t len = 0;
	start_pool(f, 1);
	assert_rc(taskring_enqueue(f->st, "crash", NULL, 0, &o, &j), 0);
	assert_rc(taskring_job_result(&j, 10 * SEC, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 2);
	assert_int_equal(atomic_load(&g_sh->crashes), 1);
	struct taskring_error_record er;
	assert_int_equal(taskring_job_errors(&j, &er, 1), 1);
	printf("# crash: '%s'\n", er.error);
	assert_non_null(strstr(er.error, "died (SIGSEGV) while running attempt 0"));
	stop_pool(f);
}

static void test_stop_drains_or_cancels(void **state)
{
	struct fx *f = *state;
	struct taskring_enqueue_opts o = opts(60 * SEC, 3);
	struct taskring_job j;
	start_pool(f, 2);
	run_pid_job(f);
	assert_rc(taskring_enqueue(f->st, "hang", NULL, 0, &o, &j), 0);
	assert_rc(tu_wait_status(&j, TASKRING_RUNNING, 10000), TASKRING_RUNNING);
	assert_rc(taskring_worker_stop(f->w, 200 * MS), -ETIMEDOUT);
	assert_rc(taskring_job_wait(&j, 10 * SEC), TASKRING_CANCELLED);
	assert_rc(taskring_worker_destroy(f->w), 0);
	f->w = NULL;
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

int main(void)
{
	tu_alarm(300);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_jobs_run_in_children, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_kills_the_child, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_kills_the_child, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_fails_one_attempt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_drains_or_cancels, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
