/*
 * core.c - taskring itself, through the public API only, in the same shapes
 * as the floors of bench/floors.c so that bench/run.sh can report ratios.
 *
 * Scenarios, one JSON line each:
 *   rtt.xproc           one job round trip: the parent enqueues a "noop" job
 *                       and waits in taskring_job_result(); a worker in a
 *                       fork()ed child runs it. Default spin. Measured with
 *                       the worker's own thread (taskring_worker_start) and
 *                       with taskring_worker_run_one() in the child's main
 *                       thread; the faster (by p50) is reported, the other's
 *                       figures ride along as other_*.
 *   rtt.xproc_nospin    the same with taskring_store_set_spin(0) in both
 *                       processes, so every hand-off should be a futex
 *                       wake-up (compare floor.pingpong_futex).
 *   rtt.spin_<N>us      the same at spin budgets 0, 2, 5, 10, 20, 50 us
 *                       (both processes), short runs: the evidence for the
 *                       default budget. These and rtt.xproc_nospin use the
 *                       worker mode that won rtt.xproc.
 *   tput.xproc          one producer process enqueueing batches of 64 (with
 *                       TASKRING_ENQ_BLOCK), one worker process; jobs/s from
 *                       the first enqueue until the last job is complete.
 *                       Both worker modes, the faster reported.
 *   rtt.inproc          rtt.xproc with the worker as a thread of this process.
 *   tput.inproc         tput.xproc with the worker as a thread of this process.
 *   rtt.async           64 jobs in flight, awaited from one io_uring loop
 *                       (taskring_job_prep_wait), the worker in a child;
 *                       latency enqueue -> completion seen, and jobs/s.
 *   tput.deps           fan-in: rounds of one batch of 1,000 noop jobs plus
 *                       one noop that depends on all of them (through
 *                       depends_on_items), the worker in a child; a round
 *                       ends when the dependent has completed. Jobs/s and
 *                       the round time, with the same rounds made without
 *                       the dependency (the parent waits for all 1,001)
 *                       alternating in the same store: nodeps_* figures.
 *
 * Every store is new (anonymous, or "/taskring-bench-<pid>-<n>" with
 * BENCH_STORE=shm, unlinked afterwards) and is first run through one full
 * turn of its slot table (a batch of `slots` jobs), so that the figures are
 * those of a store in steady use: every slot touched, pages faulted in, and
 * enqueue recycling the oldest terminal job as it will in production.
 *
 * Placement (common.h): this process on one CPU, the worker child (or, in
 * process, the worker thread) on another, as the floors are measured.
 * Environment: BENCH_SCALE, BENCH_ONLY and BENCH_PIN (common.h), and
 * BENCH_STORE=shm for a named store that the child opens by name.
 *
 * The worker counts the noop jobs it ran; a scenario whose count disagrees
 * with what was enqueued reports an error instead of figures.
 * Exit status: 0, or 1 when a scenario failed (its JSON line has "error").
 */
#include <stdbool.h>

#include <liburing.h>

#include "taskring.h"
#include "common.h"

#define SEC 1000000000LL
#define RESULT_TIMEOUT_NS (5 * SEC) /* a round trip is microseconds */
#define BLOCK_TIMEOUT_NS (10 * SEC) /* TASKRING_ENQ_BLOCK wait for a free slot */
#define LAST_JOB_TIMEOUT_NS (30 * SEC)
#define BATCH 64

enum worker_mode { MODE_THREAD, MODE_RUN_ONE, MODE_INPROC };
static const char *const mode_names[] = { "thread", "run_one", "inproc" };

/* Shared by the parent and the worker child (MAP_SHARED, made before fork). */
struct ctl {
	_Alignas(BENCH_LINE) uint32_t ready; /* 0 starting, 1 ready, 2 failed */
	_Alignas(BENCH_LINE) uint32_t stop;  /* the parent asks the child to stop */
	/* Noop jobs run. Written by the one thread that runs handlers, read
	 * by the parent only after the child exited or the worker joined. */
	_Alignas(BENCH_LINE) uint64_t done;
	char msg[256]; /* the child's error, when ready == 2 or at exit */
};

/* One benchmark setup: a store and a worker, in a child or in this process. */
struct setup {
	const char *scenario;
	enum worker_mode mode;
	int64_t spin_ns;              /* < 0: the library's default */
	struct taskring_store *store; /* this process's handle */
	const char *shm_name;         /* NULL: anonymous store */
	struct ctl *ctl;
	pid_t pid;                    /* worker child, or 0 */
	struct taskring_worker *worker; /* MODE_INPROC only */
	uint64_t enqueued;            /* noop jobs enqueued so far */
	uint32_t slots;
	char err[512];                /* the first error; empty if none */
};

BENCH_PRINTF(2, 3)
static void setup_fail(struct setup *s, const char *fmt, ...)
{
	va_list ap;
	if (s->err[0])
		return; /* keep the first, the cause */
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

static bool use_shm(void)
{
	const char *v = getenv("BENCH_STORE");
	return v && strcmp(v, "shm") == 0;
}

static const char *store_kind(void)
{
	return use_shm() ? "shm" : "anon";
}

/* ------------------------------------------------------------------------ */
/* The worker side                                                           */
/* ------------------------------------------------------------------------ */

static int noop_handler(struct taskring_ctx *ctx, void *arg)
{
	uint64_t *done = arg;
	(void)ctx;
	/* Only one thread runs handlers, so load + store is exact, and
	 * cheaper than a locked add. */
	__atomic_store_n(done, __atomic_load_n(done, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
	return TASKRING_OK;
}

/* Runs the job that wakes a run_one loop so that it sees ctl->stop. */
static int kick_handler(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	return TASKRING_OK;
}

/* Jobs a worker thread claims at once (taskring_worker_opts.prefetch). */
static uint32_t g_prefetch = 1;

/* Creates the worker (1 thread) with both handlers on @st. */
static int make_worker(struct taskring_store *st, uint64_t *done, struct taskring_worker **wp, char *msg,
		       size_t cap)
{
	struct taskring_worker_opts wo;
	struct taskring_worker *w;
	int rc;
	taskring_worker_opts_init(&wo);
	wo.threads = 1;
	wo.prefetch = g_prefetch;
	rc = taskring_worker_create(st, &wo, &w);
	if (rc < 0) {
		snprintf(msg, cap, "taskring_worker_create: %s", taskring_strerror(rc));
		return rc;
	}
	rc = taskring_worker_register(w, "noop", noop_handler, done);
	if (rc >= 0)
		rc = taskring_worker_register(w, "kick", kick_handler, NULL);
	if (rc < 0) {
		snprintf(msg, cap, "taskring_worker_register: %s", taskring_strerror(rc));
		taskring_worker_destroy(w);
		return rc;
	}
	*wp = w;
	return 0;
}

/* The worker child's main(); returns its exit status. */
static int child_main(struct setup *s)
{
	struct ctl *ctl = s->ctl;
	struct taskring_store *st = s->store; /* inherited; valid for an anonymous store */
	struct taskring_worker *w = NULL;
	int rc;

	if (s->shm_name) {
		/* A separate open, as an unrelated worker process would do. */
		struct taskring_store_opts o;
		memset(&o, 0, sizeof(o));
		o.flags = TASKRING_STORE_NOCREATE;
		rc = taskring_store_open(s->shm_name, &o, &st);
		if (rc < 0) {
			snprintf(ctl->msg, sizeof(ctl->msg), "child: taskring_store_open(%s): %s", s->shm_name,
				 taskring_strerror(rc));
			goto fail;
		}
	}
	/* Before creating the worker: it reads the spin setting then. */
	if (s->spin_ns >= 0 && (rc = taskring_store_set_spin(st, s->spin_ns)) < 0) {
		snprintf(ctl->msg, sizeof(ctl->msg), "child: taskring_store_set_spin: %s", taskring_strerror(rc));
		goto fail;
	}
	if (make_worker(st, &ctl->done, &w, ctl->msg, sizeof(ctl->msg)) < 0)
		goto fail;
	if (s->mode == MODE_THREAD && (rc = taskring_worker_start(w)) < 0) {
		snprintf(ctl->msg, sizeof(ctl->msg), "child: taskring_worker_start: %s", taskring_strerror(rc));
		goto fail;
	}
	bench_flag_set(&ctl->ready, 1);

	if (s->mode == MODE_THREAD) {
		/* The worker's thread does the work; this one just sleeps. */
		while (__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) == 0)
			bench_futex_wait(&ctl->stop, 0, -1);
	} else {
		/* The parent enqueues a "kick" job after setting stop, so a
		 * forever wait here always ends. */
		while (__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) == 0) {
			rc = taskring_worker_run_one(w, -1);
			if (rc < 0) {
				snprintf(ctl->msg, sizeof(ctl->msg), "child: taskring_worker_run_one: %s",
					 taskring_strerror(rc));
				taskring_worker_destroy(w);
				return 1;
			}
		}
	}
	rc = taskring_worker_stop(w, 5 * SEC);
	if (rc < 0) {
		snprintf(ctl->msg, sizeof(ctl->msg), "child: taskring_worker_stop: %s", taskring_strerror(rc));
		taskring_worker_destroy(w);
		return 1;
	}
	rc = taskring_worker_destroy(w);
	if (rc < 0) {
		snprintf(ctl->msg, sizeof(ctl->msg), "child: taskring_worker_destroy: %s", taskring_strerror(rc));
		return 1;
	}
	rc = taskring_store_close(st);
	if (rc < 0) {
		snprintf(ctl->msg, sizeof(ctl->msg), "child: taskring_store_close: %s", taskring_strerror(rc));
		return 1;
	}
	return 0;
fail:
	if (w)
		taskring_worker_destroy(w);
	bench_flag_set(&ctl->ready, 2);
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Setting up and tearing down                                               */
/* ------------------------------------------------------------------------ */

/*
 * One full turn of the slot table: a batch enqueue of `slots` noop jobs
 * (in BATCH-sized calls) and a wait for the last, so every slot has been
 * used once and the store is in its steady state.
 */
static int prewarm(struct setup *s)
{
	struct taskring_enqueue_item items[BATCH];
	struct taskring_job jobs[BATCH];
	struct taskring_enqueue_opts bo;
	int rc;

	for (int i = 0; i < BATCH; i++)
		items[i] = (struct taskring_enqueue_item){ .task = "noop" };
	taskring_enqueue_opts_init(&bo);
	bo.flags = TASKRING_ENQ_BLOCK;
	bo.block_timeout_ns = BLOCK_TIMEOUT_NS;
	for (uint32_t sent = 0; sent < s->slots; sent += BATCH) {
		size_t n = s->slots - sent < BATCH ? s->slots - sent : BATCH;
		rc = taskring_enqueue_batch(s->store, items, n, &bo, jobs);
		if (rc < 0) {
			setup_fail(s, "prewarm: taskring_enqueue_batch (after %u jobs): %s", sent,
				   taskring_strerror(rc));
			return -1;
		}
		s->enqueued += n;
		if (sent + n >= s->slots) {
			rc = taskring_job_wait(&jobs[n - 1], LAST_JOB_TIMEOUT_NS);
			if (rc != TASKRING_COMPLETE) {
				setup_fail(s, "prewarm: taskring_job_wait on the last job: %s",
					   rc < 0 ? taskring_strerror(rc) : taskring_status_name(rc));
				return -1;
			}
		}
	}
	return 0;
}

/*
 * Opens a new store, declares the tasks, starts the worker (child process or
 * thread), waits until it is ready and prewarms. On failure s->err says why;
 * setup_finish() must be called either way.
 */
static int setup_start(struct setup *s, const char *scenario, enum worker_mode mode, int64_t spin_ns)
{
	struct taskring_store_info info;
	int rc;

	memset(s, 0, sizeof(*s));
	s->scenario = scenario;
	s->mode = mode;
	s->spin_ns = spin_ns;
	s->ctl = bench_shared_alloc(sizeof(*s->ctl));
	if (use_shm()) {
		s->shm_name = bench_shm_name("taskring-bench");
		if (!s->shm_name) {
			setup_fail(s, "too many shm names");
			return -1;
		}
	}
	rc = taskring_store_open(s->shm_name, NULL, &s->store);
	if (rc < 0) {
		setup_fail(s, "taskring_store_open(%s): %s", s->shm_name ? s->shm_name : "NULL",
			   taskring_strerror(rc));
		s->store = NULL;
		return -1;
	}
	rc = taskring_store_info(s->store, &info);
	if (rc < 0) {
		setup_fail(s, "taskring_store_info: %s", taskring_strerror(rc));
		return -1;
	}
	s->slots = info.slots;
	/* Declared here so the parent's enqueues never race the child's
	 * registration into TASKRING_ENOTASK. */
	if ((rc = taskring_task_declare(s->store, "noop")) < 0 ||
	    (rc = taskring_task_declare(s->store, "kick")) < 0) {
		setup_fail(s, "taskring_task_declare: %s", taskring_strerror(rc));
		return -1;
	}
	/* This process's spin: the result waiter (and the in-process worker,
	 * which reads it when created). */
	if (spin_ns >= 0 && (rc = taskring_store_set_spin(s->store, spin_ns)) < 0) {
		setup_fail(s, "taskring_store_set_spin(%lld): %s", (long long)spin_ns, taskring_strerror(rc));
		return -1;
	}

	if (mode == MODE_INPROC) {
		char msg[256];
		if (make_worker(s->store, &s->ctl->done, &s->worker, msg, sizeof(msg)) < 0) {
			setup_fail(s, "%s", msg);
			return -1;
		}
		/* The worker's thread inherits our CPU mask: start it from
		 * the children's CPU, then come back, so the two ends sit
		 * where they do across processes. Left to the scheduler,
		 * wake-affinity often stacks both on one CPU, where spinning
		 * only delays the other side. */
		bench_pin_self(1);
		rc = taskring_worker_start(s->worker);
		bench_pin_self(0);
		if (rc < 0) {
			setup_fail(s, "taskring_worker_start: %s", taskring_strerror(rc));
			return -1;
		}
		return prewarm(s);
	}

	s->pid = bench_fork();
	if (s->pid < 0) {
		s->pid = 0;
		setup_fail(s, "fork failed");
		return -1;
	}
	if (s->pid == 0)
		_exit(child_main(s));

	/* Wait for the child's worker, watching for its death. */
	int64_t deadline = bench_now_ns() + 10 * SEC;
	for (;;) {
		uint32_t r = __atomic_load_n(&s->ctl->ready, __ATOMIC_ACQUIRE);
		int st;
		if (r == 1)
			break;
		if (r == 2) {
			setup_fail(s, "worker process failed to start: %s", s->ctl->msg);
			return -1;
		}
		if (bench_child_gone(s->pid, &st)) {
			s->pid = 0;
			setup_fail(s, "worker process exited (status %d) before it was ready", st);
			return -1;
		}
		if (bench_now_ns() > deadline) {
			setup_fail(s, "worker process not ready after 10 s");
			return -1;
		}
		bench_futex_wait(&s->ctl->ready, 0, 50000000);
	}
	return prewarm(s);
}

/*
 * Stops the worker, checks that it ran exactly the noop jobs enqueued,
 * closes (and unlinks) the store. Returns 0, or -1 with s->err set.
 */
static int setup_finish(struct setup *s)
{
	int rc;
	bool counted = false;

	if (s->worker) {
		rc = taskring_worker_stop(s->worker, 5 * SEC);
		if (rc < 0)
			setup_fail(s, "taskring_worker_stop: %s", taskring_strerror(rc));
		rc = taskring_worker_destroy(s->worker);
		if (rc < 0)
			setup_fail(s, "taskring_worker_destroy: %s", taskring_strerror(rc));
		s->worker = NULL;
		counted = true;
	}
	if (s->pid > 0) {
		bench_flag_set(&s->ctl->stop, 1);
		/* Wakes a run_one loop; a thread-mode worker may leave it. */
		rc = taskring_enqueue(s->store, "kick", NULL, 0, NULL, NULL);
		if (rc < 0)
			setup_fail(s, "taskring_enqueue(kick): %s", taskring_strerror(rc));
		int st = bench_reap(s->pid, 10 * SEC);
		s->pid = 0;
		if (st == -2)
			setup_fail(s, "worker process did not exit within 10 s of being stopped (killed)");
		else if (st != 0)
			setup_fail(s, "worker process ended with status %d%s%s", st, s->ctl->msg[0] ? ": " : "",
				   s->ctl->msg);
		else
			counted = true;
	}
	if (counted && !s->err[0] && s->ctl->done != s->enqueued)
		setup_fail(s, "worker ran %llu noop jobs, %llu were enqueued", (unsigned long long)s->ctl->done,
			   (unsigned long long)s->enqueued);
	if (s->store) {
		rc = taskring_store_close(s->store);
		if (rc < 0)
			setup_fail(s, "taskring_store_close: %s", taskring_strerror(rc));
		s->store = NULL;
	}
	if (s->shm_name) {
		rc = taskring_store_unlink(s->shm_name);
		if (rc < 0)
			setup_fail(s, "taskring_store_unlink(%s): %s", s->shm_name, taskring_strerror(rc));
		bench_shm_release(s->shm_name);
		s->shm_name = NULL;
	}
	munmap(s->ctl, sizeof(*s->ctl));
	s->ctl = NULL;
	return s->err[0] ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Round trip                                                                */
/* ------------------------------------------------------------------------ */

struct rtt_result {
	uint64_t *samples; /* sorted */
	size_t n;
	size_t warm;
	char err[512];
};

/*
 * Measures enqueue -> taskring_job_result() round trips of an empty noop job
 * for up to @max_iters iterations or @cap_s (scaled) seconds after @warm
 * unmeasured ones.
 */
static void rtt_measure(struct rtt_result *r, const char *scenario, enum worker_mode mode, int64_t spin_ns,
			size_t max_iters, size_t warm, double cap_s)
{
	struct setup s;
	struct taskring_job job;
	char buf[64];
	int64_t cap = bench_cap_ns(cap_s), t_start = 0;

	memset(r, 0, sizeof(*r));
	r->warm = warm;
	r->samples = malloc(max_iters * sizeof(*r->samples));
	if (!r->samples) {
		snprintf(r->err, sizeof(r->err), "out of memory");
		return;
	}
	if (setup_start(&s, scenario, mode, spin_ns) == 0) {
		for (size_t i = 0; i < warm + max_iters; i++) {
			size_t len = 0;
			if (i == warm)
				t_start = bench_now_ns();
			int64_t t0 = bench_now_ns();
			int rc = taskring_enqueue(s.store, "noop", NULL, 0, NULL, &job);
			if (rc < 0) {
				setup_fail(&s, "taskring_enqueue (iteration %zu): %s", i, taskring_strerror(rc));
				break;
			}
			s.enqueued++;
			rc = taskring_job_result(&job, RESULT_TIMEOUT_NS, buf, sizeof(buf), &len);
			int64_t t1 = bench_now_ns();
			if (rc < 0) {
				setup_fail(&s, "taskring_job_result (iteration %zu): %s", i, taskring_strerror(rc));
				break;
			}
			if (len != 0) {
				setup_fail(&s, "taskring_job_result (iteration %zu): result of %zu bytes, expected 0",
					   i, len);
				break;
			}
			if (i >= warm) {
				r->samples[r->n++] = (uint64_t)(t1 - t0);
				if ((r->n & 1023) == 0 && t1 - t_start > cap)
					break;
			}
		}
	}
	setup_finish(&s);
	if (s.err[0])
		snprintf(r->err, sizeof(r->err), "%s", s.err);
	qsort(r->samples, r->n, sizeof(*r->samples), bench_cmp_u64);
}

/*
 * rtt.async: jobs awaited from one io_uring event loop
 * (taskring_job_prep_wait), 64 in flight; each completion is replaced by a
 * new job. Latency is enqueue -> completion seen by the loop; ops/s is jobs
 * completed per second.
 */
#define ASYNC_INFLIGHT 64
static void async_measure(struct rtt_result *r, const char *scenario, size_t max_iters, double cap_s,
			  double *ops_per_s)
{
	struct setup s;
	struct io_uring ring;
	struct taskring_job jobs[ASYNC_INFLIGHT];
	int64_t t_enq[ASYNC_INFLIGHT];
	int64_t cap = bench_cap_ns(cap_s), t_start;
	size_t started = 0;

	memset(r, 0, sizeof(*r));
	*ops_per_s = 0;
	r->samples = malloc(max_iters * sizeof(*r->samples));
	if (!r->samples) {
		snprintf(r->err, sizeof(r->err), "out of memory");
		return;
	}
	if (taskring_async_supported() != 0) {
		snprintf(r->err, sizeof(r->err), "io_uring futex wait unsupported here");
		return;
	}
	if (io_uring_queue_init(2 * ASYNC_INFLIGHT, &ring, 0) < 0) {
		snprintf(r->err, sizeof(r->err), "io_uring_queue_init failed");
		return;
	}
	if (setup_start(&s, scenario, MODE_THREAD, -1) == 0) {
		t_start = bench_now_ns();
		/* Start a job in slot k and arm its request. */
		for (int k = 0; k < ASYNC_INFLIGHT && !s.err[0]; k++) {
			int rc = taskring_enqueue(s.store, "noop", NULL, 0, NULL, &jobs[k]);
			if (rc < 0) {
				setup_fail(&s, "taskring_enqueue: %s", taskring_strerror(rc));
				break;
			}
			s.enqueued++;
			started++;
			t_enq[k] = bench_now_ns();
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			rc = taskring_job_prep_wait(&jobs[k], sqe);
			if (rc == 1)
				io_uring_prep_nop(sqe); /* already ended: complete at once */
			io_uring_sqe_set_data64(sqe, (uint64_t)k);
		}
		int stop = 0;
		while (!s.err[0] && !stop && r->n < max_iters) {
			struct io_uring_cqe *cqe;
			/* One completion at a time, each new request submitted at
			 * once. (Reaping in batches measured half as fast here:
			 * the completions of woken futex waits are posted by task
			 * work that runs when this thread enters the kernel.) */
			if (io_uring_submit(&ring) < 0 || io_uring_wait_cqe(&ring, &cqe) < 0) {
				setup_fail(&s, "io_uring_wait_cqe failed");
				break;
			}
			{
			int k = (int)io_uring_cqe_get_data64(cqe);
			io_uring_cqe_seen(&ring, cqe);
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			int st = taskring_job_status(&jobs[k]);
			if (st >= 0 && st < TASKRING_COMPLETE) {
				/* A change short of the end: wait again. */
				if (taskring_job_prep_wait(&jobs[k], sqe) == 1)
					io_uring_prep_nop(sqe);
			} else {
				int64_t now = bench_now_ns();
				r->samples[r->n++] = (uint64_t)(now - t_enq[k]);
				if (r->n >= max_iters || ((r->n & 1023) == 0 && now - t_start > cap)) {
					io_uring_prep_nop(sqe);
					io_uring_sqe_set_data64(sqe, (uint64_t)k);
					stop = 1;
					break;
				}
				int rc = taskring_enqueue(s.store, "noop", NULL, 0, NULL, &jobs[k]);
				if (rc < 0) {
					setup_fail(&s, "taskring_enqueue: %s", taskring_strerror(rc));
					break;
				}
				s.enqueued++;
				t_enq[k] = bench_now_ns();
				if (taskring_job_prep_wait(&jobs[k], sqe) == 1)
					io_uring_prep_nop(sqe);
			}
			io_uring_sqe_set_data64(sqe, (uint64_t)k);
			}
		}
		io_uring_submit(&ring);
		double secs = (bench_now_ns() - t_start) / 1e9;
		*ops_per_s = secs > 0 ? r->n / secs : 0;
		/* Let the jobs still in flight finish before tearing down. */
		for (int k = 0; k < ASYNC_INFLIGHT; k++)
			taskring_job_wait(&jobs[k], RESULT_TIMEOUT_NS);
	}
	io_uring_queue_exit(&ring);
	setup_finish(&s);
	if (s.err[0])
		snprintf(r->err, sizeof(r->err), "%s", s.err);
	qsort(r->samples, r->n, sizeof(*r->samples), bench_cmp_u64);
}

static void rtt_print(const char *scenario, struct rtt_result *r, enum worker_mode mode, int64_t spin_ns,
		      const struct rtt_result *other, enum worker_mode other_mode)
{
	char spin[32], extra[256] = "";
	if (r->err[0]) {
		bench_print_error(scenario, "%s (%s worker)", r->err, mode_names[mode]);
		return;
	}
	if (spin_ns < 0)
		snprintf(spin, sizeof(spin), "\"default\"");
	else
		snprintf(spin, sizeof(spin), "%lld", (long long)spin_ns);
	if (other && !other->err[0] && other->n)
		snprintf(extra, sizeof(extra), ",\"other_worker\":\"%s\",\"other_p50_ns\":%llu,\"other_p99_ns\":%llu",
			 mode_names[other_mode], (unsigned long long)bench_pct(other->samples, other->n, 0.5),
			 (unsigned long long)bench_pct(other->samples, other->n, 0.99));
	else if (other)
		snprintf(extra, sizeof(extra), ",\"other_worker\":\"%s\",\"other_error\":true", mode_names[other_mode]);
	bench_print_latency(scenario, r->samples, r->n, "\"worker\":\"%s\",\"store\":\"%s\",\"spin_ns\":%s,\"warmup\":%zu%s",
			    mode_names[mode], store_kind(), spin, r->warm, extra);
}

/* ------------------------------------------------------------------------ */
/* Throughput                                                                */
/* ------------------------------------------------------------------------ */

struct tput_result {
	uint64_t jobs;
	int64_t elapsed_ns;
	char err[512];
};

/*
 * One producer (this thread) enqueues batches of BATCH noop jobs with
 * TASKRING_ENQ_BLOCK until @max_jobs or @cap_s (scaled) seconds, then waits
 * for the last job. With one worker thread claiming in FIFO order, the last
 * job complete means all are; setup_finish() checks the count anyway.
 */
static void tput_measure(struct tput_result *r, const char *scenario, enum worker_mode mode, uint64_t max_jobs,
			 double cap_s)
{
	struct setup s;
	struct taskring_enqueue_item items[BATCH];
	struct taskring_job jobs[BATCH], last;
	struct taskring_enqueue_opts bo;
	int64_t cap = bench_cap_ns(cap_s);

	memset(r, 0, sizeof(*r));
	for (int i = 0; i < BATCH; i++)
		items[i] = (struct taskring_enqueue_item){ .task = "noop" };
	taskring_enqueue_opts_init(&bo);
	bo.flags = TASKRING_ENQ_BLOCK;
	bo.block_timeout_ns = BLOCK_TIMEOUT_NS;

	if (setup_start(&s, scenario, mode, -1) == 0) {
		uint64_t sent = 0, batches = 0;
		int64_t t0 = bench_now_ns();
		int rc = 0;
		while (sent < max_jobs) {
			size_t n = max_jobs - sent < BATCH ? (size_t)(max_jobs - sent) : BATCH;
			rc = taskring_enqueue_batch(s.store, items, n, &bo, jobs);
			if (rc < 0) {
				setup_fail(&s, "taskring_enqueue_batch (after %llu jobs): %s",
					   (unsigned long long)sent, taskring_strerror(rc));
				break;
			}
			sent += n;
			s.enqueued += n;
			last = jobs[n - 1];
			if ((++batches & 15) == 0 && bench_now_ns() - t0 > cap)
				break;
		}
		if (rc >= 0 && sent > 0) {
			rc = taskring_job_wait(&last, LAST_JOB_TIMEOUT_NS);
			int64_t t1 = bench_now_ns();
			if (rc != TASKRING_COMPLETE)
				setup_fail(&s, "taskring_job_wait on the last job: %s",
					   rc < 0 ? taskring_strerror(rc) : taskring_status_name(rc));
			r->jobs = sent;
			r->elapsed_ns = t1 - t0;
		}
	}
	setup_finish(&s);
	if (s.err[0])
		snprintf(r->err, sizeof(r->err), "%s", s.err);
}

static void tput_print(const char *scenario, const struct tput_result *r, enum worker_mode mode,
		       const struct tput_result *other, enum worker_mode other_mode)
{
	char extra[160] = "";
	if (r->err[0]) {
		bench_print_error(scenario, "%s (%s worker)", r->err, mode_names[mode]);
		return;
	}
	if (other && !other->err[0] && other->elapsed_ns > 0)
		snprintf(extra, sizeof(extra), ",\"other_worker\":\"%s\",\"other_ops_per_s\":%.0f",
			 mode_names[other_mode], (double)other->jobs * 1e9 / (double)other->elapsed_ns);
	else if (other)
		snprintf(extra, sizeof(extra), ",\"other_worker\":\"%s\",\"other_error\":true", mode_names[other_mode]);
	bench_print_tput(scenario, r->jobs, r->elapsed_ns, "\"worker\":\"%s\",\"store\":\"%s\",\"batch\":%d%s",
			 mode_names[mode], store_kind(), BATCH, extra);
}

static double tput_rate(const struct tput_result *r)
{
	return r->err[0] || r->elapsed_ns <= 0 ? 0 : (double)r->jobs / (double)r->elapsed_ns;
}

/* ------------------------------------------------------------------------ */
/* Dependencies: fan-in                                                      */
/* ------------------------------------------------------------------------ */

#define FAN_IN 1000

struct deps_result {
	uint64_t *rounds[2]; /* round times, [0] with the dependency, [1] without */
	size_t n;
	char err[512];
};

static void deps_measure(struct deps_result *r, size_t max_rounds, double cap_s)
{
	struct setup s;
	static struct taskring_enqueue_item items[FAN_IN + 1];
	static struct taskring_job jobs[FAN_IN + 1];
	static uint32_t all[FAN_IN];
	struct taskring_enqueue_opts bo;
	int64_t cap = bench_cap_ns(cap_s);

	memset(r, 0, sizeof(*r));
	r->rounds[0] = calloc(max_rounds, sizeof(uint64_t));
	r->rounds[1] = calloc(max_rounds, sizeof(uint64_t));
	if (!r->rounds[0] || !r->rounds[1]) {
		snprintf(r->err, sizeof(r->err), "out of memory");
		return;
	}
	for (int i = 0; i <= FAN_IN; i++)
		items[i] = (struct taskring_enqueue_item){ .task = "noop" };
	for (uint32_t i = 0; i < FAN_IN; i++)
		all[i] = i;
	taskring_enqueue_opts_init(&bo);
	bo.flags = TASKRING_ENQ_BLOCK;
	bo.block_timeout_ns = BLOCK_TIMEOUT_NS;

	if (setup_start(&s, "tput.deps", MODE_THREAD, -1) == 0) {
		int64_t t_start = bench_now_ns();
		while (r->n < max_rounds && !s.err[0]) {
			for (int k = 0; k < 2 && !s.err[0]; k++) {
				items[FAN_IN].depends_on_items = k ? NULL : all;
				items[FAN_IN].n_depends_on_items = k ? 0 : FAN_IN;
				int64_t t0 = bench_now_ns();
				int rc = taskring_enqueue_batch(s.store, items, FAN_IN + 1, &bo, jobs);
				if (rc < 0) {
					setup_fail(&s, "taskring_enqueue_batch: %s", taskring_strerror(rc));
					break;
				}
				s.enqueued += FAN_IN + 1;
				/* With the dependency, its end means every job's;
				 * without, the parent waits for each. */
				rc = k ? taskring_job_wait_all(jobs, FAN_IN + 1, LAST_JOB_TIMEOUT_NS)
				       : taskring_job_wait(&jobs[FAN_IN], LAST_JOB_TIMEOUT_NS);
				int64_t t1 = bench_now_ns();
				if (rc != (k ? 0 : TASKRING_COMPLETE)) {
					setup_fail(&s, "waiting for round %zu: %s", r->n,
						   rc < 0 ? taskring_strerror(rc) : taskring_status_name(rc));
					break;
				}
				r->rounds[k][r->n] = (uint64_t)(t1 - t0);
			}
			if (!s.err[0])
				r->n++;
			if (bench_now_ns() - t_start > cap)
				break;
		}
	}
	setup_finish(&s);
	if (s.err[0])
		snprintf(r->err, sizeof(r->err), "%s", s.err);
	qsort(r->rounds[0], r->n, sizeof(uint64_t), bench_cmp_u64);
	qsort(r->rounds[1], r->n, sizeof(uint64_t), bench_cmp_u64);
}

static void deps_print(struct deps_result *r)
{
	if (r->err[0] || !r->n) {
		bench_print_error("tput.deps", "%s", r->err[0] ? r->err : "no round completed");
		return;
	}
	double sum[2] = {0, 0};
	for (size_t i = 0; i < r->n; i++)
		for (int k = 0; k < 2; k++)
			sum[k] += (double)r->rounds[k][i];
	printf("{\"scenario\":\"tput.deps\",\"rounds\":%zu,\"fan_in\":%d,\"ops_per_s\":%.0f,"
	       "\"round_p50_ns\":%llu,\"round_p99_ns\":%llu,\"nodeps_ops_per_s\":%.0f,"
	       "\"nodeps_round_p50_ns\":%llu,\"worker\":\"thread\",\"store\":\"%s\"}\n",
	       r->n, FAN_IN, (double)r->n * (FAN_IN + 1) * 1e9 / sum[0],
	       (unsigned long long)bench_pct(r->rounds[0], r->n, 0.5),
	       (unsigned long long)bench_pct(r->rounds[0], r->n, 0.99), (double)r->n * (FAN_IN + 1) * 1e9 / sum[1],
	       (unsigned long long)bench_pct(r->rounds[1], r->n, 0.5), store_kind());
	fflush(stdout);
}

/* ------------------------------------------------------------------------ */

int main(void)
{
	struct rtt_result a, b;
	struct tput_result ta, tb;
	enum worker_mode best = MODE_THREAD;
	static const int sweep_us[] = { 0, 2, 5, 10, 20, 50 };

	bench_init();

	/* rtt.xproc: both worker modes; keep the faster by p50. A mode that
	 * failed loses; if both failed, the thread mode's error is shown.
	 * The later cross-process round trips use the winner. */
	if (bench_want("rtt.xproc")) {
		rtt_measure(&a, "rtt.xproc", MODE_THREAD, -1, bench_iters(1000000, 1000), 1000, 2.5);
		rtt_measure(&b, "rtt.xproc", MODE_RUN_ONE, -1, bench_iters(1000000, 1000), 1000, 2.5);
		if (!b.err[0] && b.n &&
		    (a.err[0] || !a.n || bench_pct(b.samples, b.n, 0.5) < bench_pct(a.samples, a.n, 0.5))) {
			best = MODE_RUN_ONE;
			rtt_print("rtt.xproc", &b, MODE_RUN_ONE, -1, &a, MODE_THREAD);
		} else {
			rtt_print("rtt.xproc", &a, MODE_THREAD, -1, &b, MODE_RUN_ONE);
		}
		free(a.samples);
		free(b.samples);
	}

	/* Every hand-off through the futex. */
	if (bench_want("rtt.xproc_nospin")) {
		rtt_measure(&a, "rtt.xproc_nospin", best, 0, bench_iters(100000, 200), 200, 2.5);
		rtt_print("rtt.xproc_nospin", &a, best, 0, NULL, best);
		free(a.samples);
	}

	for (size_t i = 0; i < sizeof(sweep_us) / sizeof(sweep_us[0]); i++) {
		char name[32];
		snprintf(name, sizeof(name), "rtt.spin_%dus", sweep_us[i]);
		if (!bench_want(name))
			continue;
		rtt_measure(&a, name, best, sweep_us[i] * 1000LL, bench_iters(300000, 200), 200, 1.0);
		rtt_print(name, &a, best, sweep_us[i] * 1000LL, NULL, best);
		free(a.samples);
	}

	if (bench_want("tput.xproc")) {
		tput_measure(&ta, "tput.xproc", MODE_THREAD, bench_iters(20000000, 1000), 2.5);
		tput_measure(&tb, "tput.xproc", MODE_RUN_ONE, bench_iters(20000000, 1000), 2.5);
		if (tput_rate(&tb) > tput_rate(&ta))
			tput_print("tput.xproc", &tb, MODE_RUN_ONE, &ta, MODE_THREAD);
		else
			tput_print("tput.xproc", &ta, MODE_THREAD, &tb, MODE_RUN_ONE);
	}

	/* The same with a worker thread that claims 16 jobs per lock (less
	 * strict priority, see taskring_worker_opts.prefetch). */
	if (bench_want("tput.xproc_prefetch16")) {
		g_prefetch = 16;
		tput_measure(&ta, "tput.xproc_prefetch16", MODE_THREAD, bench_iters(20000000, 1000), 2.5);
		tput_print("tput.xproc_prefetch16", &ta, MODE_THREAD, NULL, MODE_THREAD);
		g_prefetch = 1;
	}

	if (bench_want("rtt.async")) {
		double ops;
		async_measure(&a, "rtt.async", bench_iters(2000000, 1000), 2.5, &ops);
		if (a.err[0]) {
			printf("{\"scenario\":\"rtt.async\",\"error\":\"%s\"}\n", a.err);
			bench_failures++;
		} else {
			printf("{\"scenario\":\"rtt.async\",\"iters\":%zu,\"p50_ns\":%llu,\"p99_ns\":%llu,"
			       "\"p999_ns\":%llu,\"ops_per_s\":%.0f,\"inflight\":%d,\"worker\":\"thread\"}\n",
			       a.n, (unsigned long long)a.samples[a.n / 2], (unsigned long long)a.samples[a.n * 99 / 100],
			       (unsigned long long)a.samples[a.n * 999 / 1000], ops, ASYNC_INFLIGHT);
			fflush(stdout);
		}
		free(a.samples);
	}

	if (bench_want("tput.deps")) {
		struct deps_result d;
		deps_measure(&d, bench_iters(20000, 5), 2.5);
		deps_print(&d);
		free(d.rounds[0]);
		free(d.rounds[1]);
	}

	if (bench_want("rtt.inproc")) {
		rtt_measure(&a, "rtt.inproc", MODE_INPROC, -1, bench_iters(1000000, 1000), 1000, 2.5);
		rtt_print("rtt.inproc", &a, MODE_INPROC, -1, NULL, MODE_INPROC);
		free(a.samples);
	}

	if (bench_want("tput.inproc")) {
		tput_measure(&ta, "tput.inproc", MODE_INPROC, bench_iters(20000000, 1000), 2.5);
		tput_print("tput.inproc", &ta, MODE_INPROC, NULL, MODE_INPROC);
	}

	return bench_failures ? 1 : 0;
}
