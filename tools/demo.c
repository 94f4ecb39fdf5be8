/*
 * demo.c - `taskring demo`: taskring's main job on an embedded default (a
 * store in /dev/shm, worker processes, a producer that enqueues jobs and
 * waits for their results), then a durable store recovered after its
 * region is dropped. `make demo` runs it.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* ---- demo ------------------------------------------------------------------ */

static int h_square(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const uint64_t *p = taskring_ctx_payload(ctx, &len);
	if (len != sizeof(uint64_t)) {
		taskring_ctx_error(ctx, "square wants 8 bytes, got %zu", len);
		return TASKRING_FAIL;
	}
	uint64_t r = *p * *p;
	taskring_ctx_result(ctx, &r, sizeof(r));
	return TASKRING_OK;
}

/* Fails its first attempt, succeeds on the retry. */
static int h_flaky(struct taskring_ctx *ctx, void *arg)
{
	if (taskring_ctx_attempt(ctx) == 0) {
		taskring_ctx_error(ctx, "flaky: transient failure on attempt 0");
		return TASKRING_RETRY;
	}
	taskring_ctx_progress(ctx, 100);
	return TASKRING_OK;
}

/* Always fails: ends dead after its retries. */
static int h_doomed(struct taskring_ctx *ctx, void *arg)
{
	taskring_ctx_error(ctx, "doomed: attempt %u failed", taskring_ctx_attempt(ctx));
	return TASKRING_RETRY;
}

static volatile sig_atomic_t stop_flag;
static void on_term(int sig)
{
	stop_flag = 1;
}

static int worker_process(const char *name)
{
	struct taskring_store *st;
	struct taskring_worker *w;
	struct taskring_worker_opts wo;
	int rc = taskring_store_open(name, NULL, &st);
	if (rc)
		return cli_fail("worker: open", rc);
	taskring_worker_opts_init(&wo);
	if ((rc = taskring_worker_create(st, &wo, &w)) || (rc = taskring_worker_register(w, "square", h_square, NULL)) ||
	    (rc = taskring_worker_register(w, "flaky", h_flaky, NULL)) ||
	    (rc = taskring_worker_register(w, "doomed", h_doomed, NULL)) || (rc = taskring_worker_start(w)))
		return cli_fail("worker: start", rc);
	while (!stop_flag)
		pause();
	taskring_worker_stop(w, 1000000000LL);
	taskring_worker_destroy(w);
	taskring_store_close(st);
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Remove a log directory the demo made (its segment files and spare). */
static void rm_log_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		for (struct dirent *e; (e = readdir(d));)
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
}

/*
 * 4. Durability: the same kind of store with a log on disk (/var/tmp, not
 * tmpfs), durable enqueues, then the region dropped as a reboot would, and
 * the store recovered from its log.
 */
static int durable_demo(const char *base_name)
{
	char dir[] = "/var/tmp/taskring-demo-log-XXXXXX", name[128];
	if (!mkdtemp(dir)) {
		fprintf(stderr, "taskring demo: cannot make a log directory in /var/tmp: %s\n", strerror(errno));
		return 1;
	}
	snprintf(name, sizeof(name), "%s-durable", base_name);
	taskring_store_unlink(name);
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.slots = 16384;
	o.log_dir = dir;
	o.durability = TASKRING_DURABLE;
	struct taskring_store *st;
	int rc = taskring_store_open(name, &o, &st);
	if (rc || (rc = taskring_task_declare(st, "square"))) {
		rm_log_dir(dir);
		return cli_fail("durable store", rc);
	}
	enum { ONE = 500, BATCH = 4096 };
	int64_t lat[ONE];
	uint64_t v = 7;
	int64_t t0 = cli_now_mono();
	for (int i = 0; i < ONE && !rc; i++) {
		int64_t a = cli_now_mono();
		rc = taskring_enqueue(st, "square", &v, sizeof(v), NULL, NULL);
		lat[i] = cli_now_mono() - a;
	}
	int64_t t1 = cli_now_mono();
	static struct taskring_enqueue_item items[BATCH];
	for (int i = 0; i < BATCH; i++)
		items[i] = (struct taskring_enqueue_item){.task = "square", .payload = &v, .len = sizeof(v)};
	int64_t t2 = cli_now_mono();
	if (!rc && (rc = taskring_enqueue_batch(st, items, BATCH, NULL, NULL)) > 0)
		rc = 0;
	int64_t t3 = cli_now_mono();
	taskring_store_close(st);
	if (rc) {
		taskring_store_unlink(name);
		rm_log_dir(dir);
		return cli_fail("durable enqueue", rc);
	}
	qsort(lat, ONE, sizeof(lat[0]), cmp_i64);
	printf("durable store (log in %s): %d enqueues one at a time, each on disk before it returns: "
	       "p50 %.0f us, %.0f jobs/s; a batch of %d: %.0f jobs/s\n",
	       dir, ONE, (double)lat[ONE / 2] / 1e3, ONE * 1e9 / (double)(t1 - t0), BATCH,
	       BATCH * 1e9 / (double)(t3 - t2));
	/* The host goes down: the region is gone, the log is not. */
	taskring_store_unlink(name);
	int64_t t4 = cli_now_mono();
	st = NULL;
	rc = taskring_store_open(name, &o, &st);
	int64_t t5 = cli_now_mono();
	struct taskring_queue_stats qs;
	if (!rc && !(rc = taskring_queue_stats(st, NULL, &qs)))
		printf("region dropped and the store reopened: %" PRIu64 " pending jobs recovered from the log in %.1f ms\n",
		       qs.by_status[TASKRING_PENDING], (double)(t5 - t4) / 1e6);
	if (!rc && qs.by_status[TASKRING_PENDING] != ONE + BATCH) {
		fprintf(stderr, "taskring demo: %" PRIu64 " jobs recovered, %d were enqueued\n",
			qs.by_status[TASKRING_PENDING], ONE + BATCH);
		rc = -EIO;
	}
	if (st)
		taskring_store_close(st);
	taskring_store_unlink(name);
	rm_log_dir(dir);
	return rc ? cli_fail("recovery", rc) : 0;
}

int cmd_demo(int argc, char **argv)
{
	const char *name = "/taskring-demo";
	long njobs = 200000, nworkers = 2, rtt_iters = 20000;
	static const struct option lo[] = {{"jobs", 1, 0, 'j'}, {"workers", 1, 0, 'w'}, {"store", 1, 0, 's'},
					   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "j:w:s:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': njobs = strtol(optarg, NULL, 10); break;
		case 'w': nworkers = strtol(optarg, NULL, 10); break;
		case 's': name = optarg; break;
		case 'h': printf("%s", cli_usage_of("demo")); return EXIT_OK;
		default: return cli_usage_error("demo", "unknown option");
		}
	}
	if (njobs < 1000 || nworkers < 1 || nworkers > 64) {
		return cli_usage_error("demo", "--jobs must be >= 1000, --workers 1..64");
	}

	taskring_store_unlink(name);
	struct taskring_store *st;
	int rc = taskring_store_open(name, NULL, &st);
	if (rc)
		return cli_fail("open", rc);
	struct taskring_store_info info;
	taskring_store_info(st, &info);
	printf("store %s: %u slots, %u MiB region in /dev/shm, %ld worker processes\n", name, info.slots,
	       (unsigned)(info.region_bytes >> 20), nworkers);
	taskring_task_declare(st, "square");
	taskring_task_declare(st, "flaky");
	taskring_task_declare(st, "doomed");

	signal(SIGTERM, on_term);
	pid_t pids[64];
	for (long i = 0; i < nworkers; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(worker_process(name));
	}

	/* 1. Round trips: enqueue one job, wait for its result. */
	int64_t *lat = malloc(sizeof(int64_t) * (size_t)rtt_iters);
	struct taskring_job job;
	uint64_t v, r;
	size_t len;
	for (long i = 0; i < rtt_iters; i++) {
		v = (uint64_t)i;
		int64_t t0 = cli_now_mono();
		if ((rc = taskring_enqueue(st, "square", &v, sizeof(v), NULL, &job)) ||
		    (rc = taskring_job_result(&job, 5000000000LL, &r, sizeof(r), &len)))
			return cli_fail("round trip", rc);
		lat[i] = cli_now_mono() - t0;
		if (r != v * v) {
			fprintf(stderr, "taskring demo: wrong result %" PRIu64 " for %" PRIu64 "\n", r, v);
			return 1;
		}
	}
	qsort(lat, (size_t)rtt_iters, sizeof(int64_t), cmp_i64);
	printf("round trip (enqueue -> worker process -> result), %ld jobs: p50 %.2f us  p99 %.2f us  p99.9 %.2f us\n",
	       rtt_iters, lat[rtt_iters / 2] / 1e3, lat[rtt_iters * 99 / 100] / 1e3, lat[rtt_iters * 999 / 1000] / 1e3);
	free(lat);

	/* 2. Throughput: batches of 64; each result checked before its slot
	 * can be reused (the store holds info.slots jobs). */
	struct taskring_job *jobs = malloc(sizeof(*jobs) * (size_t)njobs);
	uint64_t *vals = malloc(sizeof(uint64_t) * (size_t)njobs);
	struct taskring_enqueue_opts bo;
	taskring_enqueue_opts_init(&bo);
	bo.flags = TASKRING_ENQ_BLOCK;
	long window = info.slots / 2, checked = 0;
	int64_t t0 = cli_now_mono();
	for (long i = 0; i < njobs; i += 64) {
		struct taskring_enqueue_item items[64];
		long n = njobs - i < 64 ? njobs - i : 64;
		for (long k = 0; k < n; k++) {
			vals[i + k] = (uint64_t)(i + k) * 7 + 3;
			items[k] = (struct taskring_enqueue_item){.task = "square", .payload = &vals[i + k], .len = sizeof(uint64_t)};
		}
		for (; checked < i + n - window; checked++) {
			if ((rc = taskring_job_result(&jobs[checked], 10000000000LL, &r, sizeof(r), &len)))
				return cli_fail("throughput result", rc);
			if (r != vals[checked] * vals[checked]) {
				fprintf(stderr, "taskring demo: wrong result for job %ld\n", checked);
				return 1;
			}
		}
		if ((rc = taskring_enqueue_batch(st, items, (size_t)n, &bo, &jobs[i])))
			return cli_fail("enqueue_batch", rc);
	}
	for (; checked < njobs; checked++) {
		if ((rc = taskring_job_result(&jobs[checked], 10000000000LL, &r, sizeof(r), &len)))
			return cli_fail("throughput result", rc);
		if (r != vals[checked] * vals[checked]) {
			fprintf(stderr, "taskring demo: wrong result for job %ld\n", checked);
			return 1;
		}
	}
	double secs = (cli_now_mono() - t0) / 1e9;
	printf("throughput: %ld jobs in %.3f s = %.0f jobs/s (batches of 64, %ld worker processes, every result checked)\n",
	       njobs, secs, njobs / secs, nworkers);
	free(jobs);
	free(vals);

	/* 3. The rest of the life cycle: a retry, a dead letter, a cancel. */
	struct taskring_enqueue_opts o;
	taskring_enqueue_opts_init(&o);
	static const int64_t fast[] = {1000000};
	o.retry_delays_ns = fast;
	o.n_retry_delays = 1;
	struct taskring_job flaky, doomed, later;
	o.max_retries = 3;
	if ((rc = taskring_enqueue(st, "flaky", NULL, 0, &o, &flaky)))
		return cli_fail("enqueue flaky", rc);
	o.max_retries = 2;
	o.metadata = "{\"demo\": true}";
	if ((rc = taskring_enqueue(st, "doomed", NULL, 0, &o, &doomed)))
		return cli_fail("enqueue doomed", rc);
	/* Dependencies: one job waits for flaky (it completes on its retry),
	 * one for doomed (it dies, so its dependent is cancelled). */
	struct taskring_job after_flaky, after_doomed;
	int refused = 0;
	taskring_enqueue_opts_init(&o);
	o.depends_on = &flaky;
	o.n_depends_on = 1;
	if ((rc = taskring_enqueue(st, "square", &v, sizeof(v), &o, &after_flaky)))
		return cli_fail("enqueue a dependent of flaky", rc);
	o.depends_on = &doomed;
	rc = taskring_enqueue(st, "square", &v, sizeof(v), &o, &after_doomed);
	if (rc == TASKRING_EDEPFAILED)
		refused = 1; /* doomed died already: refused at once */
	else if (rc)
		return cli_fail("enqueue a dependent of doomed", rc);
	taskring_enqueue_opts_init(&o);
	o.delay_ns = 60000000000LL;
	if ((rc = taskring_enqueue(st, "square", &v, sizeof(v), &o, &later)) || (rc = taskring_job_cancel(&later)) < 0)
		return cli_fail("cancel", rc);
	rc = taskring_job_result(&flaky, 5000000000LL, NULL, 0, &len);
	printf("flaky job: %s after %d error(s)\n", rc == 0 ? "complete" : taskring_strerror(rc),
	       taskring_job_errors(&flaky, NULL, 0));
	rc = taskring_job_result(&doomed, 5000000000LL, NULL, 0, &len);
	char buf[8192];
	taskring_job_to_json(&doomed, buf, sizeof(buf));
	printf("doomed job: %s\n  %s\n", taskring_strerror(rc), buf);
	printf("delayed job cancelled: %s\n", taskring_status_name(taskring_job_status(&later)));
	struct taskring_job_info fi, ai;
	rc = taskring_job_wait(&after_flaky, 5000000000LL);
	if (rc < 0 || taskring_job_info(&flaky, &fi) || taskring_job_info(&after_flaky, &ai))
		return cli_fail("wait for the dependent of flaky", rc < 0 ? rc : -EIO);
	printf("job depending on flaky: %s, started %.3f ms after flaky completed\n", taskring_status_name(rc),
	       (double)(ai.started_at_ns - fi.completed_at_ns) / 1e6);
	if (refused) {
		printf("job depending on doomed: refused, %s\n", taskring_strerror(TASKRING_EDEPFAILED));
	} else {
		rc = taskring_job_wait(&after_doomed, 5000000000LL);
		buf[0] = 0;
		taskring_job_error(&after_doomed, buf, sizeof(buf));
		printf("job depending on doomed: %s (%s)\n", rc < 0 ? taskring_strerror(rc) : taskring_status_name(rc),
		       buf);
	}

	for (long i = 0; i < nworkers; i++)
		kill(pids[i], SIGTERM);
	int bad = 0;
	for (long i = 0; i < nworkers; i++) {
		int ws;
		waitpid(pids[i], &ws, 0);
		bad |= !WIFEXITED(ws) || WEXITSTATUS(ws) != 0;
	}

	struct taskring_queue_stats qs;
	taskring_queue_stats(st, NULL, &qs);
	printf("final status counts:");
	for (int s = 0; s < TASKRING_STATUS_COUNT; s++)
		printf(" %s=%" PRIu64, taskring_status_name(s), qs.by_status[s]);
	printf("\ncumulative: enqueued=%" PRIu64 " started=%" PRIu64 " completed=%" PRIu64 " retried=%" PRIu64
	       " dead=%" PRIu64 " cancelled=%" PRIu64 "\n",
	       qs.enqueued, qs.started, qs.completed, qs.retried, qs.dead, qs.cancelled);
	taskring_store_close(st);
	taskring_store_unlink(name);
	if (bad) {
		fprintf(stderr, "taskring demo: a worker process failed\n");
		return 1;
	}
	return durable_demo(name);
}

