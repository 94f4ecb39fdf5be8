/*
 * taskring - the command-line tool.
 *
 *   taskring demo [--jobs N] [--workers N] [--store NAME]
 *       taskring's main job on an embedded default: a store in /dev/shm,
 *       worker processes, a producer that enqueues jobs and waits for their
 *       results; prints throughput, latency percentiles and final counts;
 *       then a durable store (log in /var/tmp) recovered after its region
 *       is dropped.
 *   taskring info STORE [--json]
 *       sizing and counts per state of an existing store.
 *   taskring reap STORE [--json]
 *       run the reaper now: the running jobs of processes that died, and
 *       of leases that ran out, go back by their retry rules.
 *   taskring rm STORE
 *       remove a store's name.
 *   taskring log verify DIR
 *       check the checkpoint and every segment and record of the log in
 *       DIR; report its extent, its checkpoint and any torn tail (which recovery zeroes). Exit 1 on
 *       corruption, naming the file and offset.
 *   taskring log dump DIR [--json]
 *       print every valid record, one per line (JSON lines with --json):
 *       the checkpoint's first, then the segments'.
 *   taskring log compact DIR
 *       fold the log's checkpoint and closed segments into a new
 *       checkpoint, and delete the files it replaces (a store's own
 *       processes do this by themselves as the log grows).
 *
 * Exit codes: 0 success, 1 a taskring call failed or the log is corrupt
 * (the message says which), 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "taskring.h"
#include "log.h"
#include "wal.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "taskring: %s: %s\n", what, taskring_strerror(rc));
	return 1;
}

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
		return fail("worker: open", rc);
	taskring_worker_opts_init(&wo);
	if ((rc = taskring_worker_create(st, &wo, &w)) || (rc = taskring_worker_register(w, "square", h_square, NULL)) ||
	    (rc = taskring_worker_register(w, "flaky", h_flaky, NULL)) ||
	    (rc = taskring_worker_register(w, "doomed", h_doomed, NULL)) || (rc = taskring_worker_start(w)))
		return fail("worker: start", rc);
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
		return fail("durable store", rc);
	}
	enum { ONE = 500, BATCH = 4096 };
	int64_t lat[ONE];
	uint64_t v = 7;
	int64_t t0 = now_ns();
	for (int i = 0; i < ONE && !rc; i++) {
		int64_t a = now_ns();
		rc = taskring_enqueue(st, "square", &v, sizeof(v), NULL, NULL);
		lat[i] = now_ns() - a;
	}
	int64_t t1 = now_ns();
	static struct taskring_enqueue_item items[BATCH];
	for (int i = 0; i < BATCH; i++)
		items[i] = (struct taskring_enqueue_item){.task = "square", .payload = &v, .len = sizeof(v)};
	int64_t t2 = now_ns();
	if (!rc && (rc = taskring_enqueue_batch(st, items, BATCH, NULL, NULL)) > 0)
		rc = 0;
	int64_t t3 = now_ns();
	taskring_store_close(st);
	if (rc) {
		taskring_store_unlink(name);
		rm_log_dir(dir);
		return fail("durable enqueue", rc);
	}
	qsort(lat, ONE, sizeof(lat[0]), cmp_i64);
	printf("durable store (log in %s): %d enqueues one at a time, each on disk before it returns: "
	       "p50 %.0f us, %.0f jobs/s; a batch of %d: %.0f jobs/s\n",
	       dir, ONE, (double)lat[ONE / 2] / 1e3, ONE * 1e9 / (double)(t1 - t0), BATCH,
	       BATCH * 1e9 / (double)(t3 - t2));
	/* The host goes down: the region is gone, the log is not. */
	taskring_store_unlink(name);
	int64_t t4 = now_ns();
	st = NULL;
	rc = taskring_store_open(name, &o, &st);
	int64_t t5 = now_ns();
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
	return rc ? fail("recovery", rc) : 0;
}

static int demo(int argc, char **argv)
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
		case 'h':
			printf("usage: taskring demo [--jobs N] [--workers N] [--store NAME]\n");
			return 0;
		default: return 2;
		}
	}
	if (njobs < 1000 || nworkers < 1 || nworkers > 64) {
		fprintf(stderr, "taskring demo: --jobs must be >= 1000, --workers 1..64\n");
		return 2;
	}

	taskring_store_unlink(name);
	struct taskring_store *st;
	int rc = taskring_store_open(name, NULL, &st);
	if (rc)
		return fail("open", rc);
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
		int64_t t0 = now_ns();
		if ((rc = taskring_enqueue(st, "square", &v, sizeof(v), NULL, &job)) ||
		    (rc = taskring_job_result(&job, 5000000000LL, &r, sizeof(r), &len)))
			return fail("round trip", rc);
		lat[i] = now_ns() - t0;
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
	int64_t t0 = now_ns();
	for (long i = 0; i < njobs; i += 64) {
		struct taskring_enqueue_item items[64];
		long n = njobs - i < 64 ? njobs - i : 64;
		for (long k = 0; k < n; k++) {
			vals[i + k] = (uint64_t)(i + k) * 7 + 3;
			items[k] = (struct taskring_enqueue_item){.task = "square", .payload = &vals[i + k], .len = sizeof(uint64_t)};
		}
		for (; checked < i + n - window; checked++) {
			if ((rc = taskring_job_result(&jobs[checked], 10000000000LL, &r, sizeof(r), &len)))
				return fail("throughput result", rc);
			if (r != vals[checked] * vals[checked]) {
				fprintf(stderr, "taskring demo: wrong result for job %ld\n", checked);
				return 1;
			}
		}
		if ((rc = taskring_enqueue_batch(st, items, (size_t)n, &bo, &jobs[i])))
			return fail("enqueue_batch", rc);
	}
	for (; checked < njobs; checked++) {
		if ((rc = taskring_job_result(&jobs[checked], 10000000000LL, &r, sizeof(r), &len)))
			return fail("throughput result", rc);
		if (r != vals[checked] * vals[checked]) {
			fprintf(stderr, "taskring demo: wrong result for job %ld\n", checked);
			return 1;
		}
	}
	double secs = (now_ns() - t0) / 1e9;
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
		return fail("enqueue flaky", rc);
	o.max_retries = 2;
	o.metadata = "{\"demo\": true}";
	if ((rc = taskring_enqueue(st, "doomed", NULL, 0, &o, &doomed)))
		return fail("enqueue doomed", rc);
	/* Dependencies: one job waits for flaky (it completes on its retry),
	 * one for doomed (it dies, so its dependent is cancelled). */
	struct taskring_job after_flaky, after_doomed;
	int refused = 0;
	taskring_enqueue_opts_init(&o);
	o.depends_on = &flaky;
	o.n_depends_on = 1;
	if ((rc = taskring_enqueue(st, "square", &v, sizeof(v), &o, &after_flaky)))
		return fail("enqueue a dependent of flaky", rc);
	o.depends_on = &doomed;
	rc = taskring_enqueue(st, "square", &v, sizeof(v), &o, &after_doomed);
	if (rc == TASKRING_EDEPFAILED)
		refused = 1; /* doomed died already: refused at once */
	else if (rc)
		return fail("enqueue a dependent of doomed", rc);
	taskring_enqueue_opts_init(&o);
	o.delay_ns = 60000000000LL;
	if ((rc = taskring_enqueue(st, "square", &v, sizeof(v), &o, &later)) || (rc = taskring_job_cancel(&later)) < 0)
		return fail("cancel", rc);
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
		return fail("wait for the dependent of flaky", rc < 0 ? rc : -EIO);
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

/* ---- info / rm -------------------------------------------------------------------- */

/*
 * The arguments of a command "taskring CMD STORE [--json]": opens the
 * existing store into *@stp. Returns -1 to go on, or the exit code (0 for
 * --help, 2 for bad usage, 1 when the store cannot be opened).
 */
static int open_store_args(int argc, char **argv, const char *usage_line, int *json, struct taskring_store **stp)
{
	static const struct option lo[] = {{"json", 0, 0, 'j'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c;
	*json = 0;
	while ((c = getopt_long(argc, argv, "jh", lo, NULL)) != -1) {
		if (c == 'j')
			*json = 1;
		else if (c == 'h') {
			printf("%s", usage_line);
			return 0;
		} else
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "%s", usage_line);
		return 2;
	}
	struct taskring_store_opts so = {.flags = TASKRING_STORE_NOCREATE};
	int rc = taskring_store_open(argv[optind], &so, stp);
	return rc ? fail(argv[optind], rc) : -1;
}

static int info(int argc, char **argv)
{
	int json;
	struct taskring_store *st;
	int rc = open_store_args(argc, argv, "usage: taskring info STORE [--json]\n", &json, &st);
	if (rc >= 0)
		return rc;
	struct taskring_store_info i;
	struct taskring_queue_stats qs;
	taskring_store_info(st, &i);
	taskring_queue_stats(st, NULL, &qs);
	if (json) {
		printf("{\"slots\":%u,\"max_payload\":%u,\"queues\":%u,\"tasks\":%u,\"arena_bytes\":%" PRIu64
		       ",\"region_bytes\":%" PRIu64 ",\"queues_used\":%u,\"tasks_used\":%u,\"counts\":{",
		       i.slots, i.max_payload, i.queues, i.tasks, i.arena_bytes, i.region_bytes, i.queues_used,
		       i.tasks_used);
		for (int s = 0; s < TASKRING_STATUS_COUNT; s++)
			printf("%s\"%s\":%" PRIu64, s ? "," : "", taskring_status_name(s), qs.by_status[s]);
		printf("}}\n");
	} else {
		printf("slots %u, max payload %u, queues %u/%u, tasks %u/%u, arena %" PRIu64 " bytes, region %" PRIu64
		       " bytes\n",
		       i.slots, i.max_payload, i.queues_used, i.queues, i.tasks_used, i.tasks, i.arena_bytes,
		       i.region_bytes);
		for (int s = 0; s < TASKRING_STATUS_COUNT; s++)
			printf("%-10s %" PRIu64 "\n", taskring_status_name(s), qs.by_status[s]);
	}
	taskring_store_close(st);
	return 0;
}

/* Run the reaper now: dead processes' and expired leases' jobs go back. */
static int reap(int argc, char **argv)
{
	int json;
	struct taskring_store *st;
	int rc = open_store_args(argc, argv, "usage: taskring reap STORE [--json]\n", &json, &st);
	if (rc >= 0)
		return rc;
	struct taskring_reap_stats r;
	rc = taskring_store_reap(st, &r);
	taskring_store_close(st);
	if (rc < 0)
		return fail(argv[optind], rc);
	/* This tool's own registration is one of the attached. */
	if (json)
		printf("{\"procs_gone\":%u,\"owner_died\":%u,\"lease_expired\":%u,\"procs_attached\":%u,"
		       "\"recycled\":%u,\"blocks_freed\":%u}\n",
		       r.procs_gone, r.owner_died, r.lease_expired, r.procs_attached - 1, r.recycled, r.blocks_freed);
	else
		printf("%u process(es) found gone, %u other(s) attached; %u job(s) of dead workers and %u with "
		       "expired leases put back or ended\n",
		       r.procs_gone, r.procs_attached - 1, r.owner_died, r.lease_expired);
	return 0;
}

/* ---- log --------------------------------------------------------------------- */

/* Blobs that hold text; the others are shown as hex. */
static int text_blob(const char *name)
{
	static const char *const text[] = {"queue", "task", "metadata", "unique_key", "error"};
	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
		if (!strcmp(name, text[i]))
			return 1;
	return 0;
}

static void json_text(const uint8_t *p, uint32_t n)
{
	putchar('"');
	for (uint32_t i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\')
			printf("\\%c", p[i]);
		else if (p[i] < 0x20 || p[i] > 0x7e)
			printf("\\u%04x", p[i]);
		else
			putchar(p[i]);
	}
	putchar('"');
}

struct dump_ctx {
	int json;
};

static int dump_record(void *arg, const struct tr_logrec *r, const char *seg, uint64_t off)
{
	struct dump_ctx *d = arg;
	const struct tr_logrec_spec *sp = tr__logrec_spec(r->type);
	char id[40];
	snprintf(id, sizeof(id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r->uuid[0],
		 r->uuid[1], r->uuid[2], r->uuid[3], r->uuid[4], r->uuid[5], r->uuid[6], r->uuid[7], r->uuid[8],
		 r->uuid[9], r->uuid[10], r->uuid[11], r->uuid[12], r->uuid[13], r->uuid[14], r->uuid[15]);
	if (d->json)
		printf("{\"seq\":%llu,\"segment\":\"%s\",\"offset\":%llu,\"type\":\"%s\",\"job\":\"%s\"",
		       (unsigned long long)r->seq, seg, (unsigned long long)off, sp->name, id);
	else
		printf("%llu %s %s", (unsigned long long)r->seq, sp->name, id);
	for (unsigned i = 0; i < sp->nscalars; i++)
		printf(d->json ? ",\"%s\":%lld" : " %s=%lld", sp->scalar[i], (long long)r->v[i]);
	for (unsigned i = 0; i < sp->nblobs; i++) {
		const uint8_t *p = r->blob[i];
		uint32_t n = r->blen[i], show = n < 64 ? n : 64;
		if (d->json) {
			printf(",\"%s\":", sp->blob[i]);
			if (text_blob(sp->blob[i])) {
				json_text(p, n);
				continue;
			}
			printf("{\"len\":%u,\"hex\":\"", n);
			for (uint32_t k = 0; k < show; k++)
				printf("%02x", p[k]);
			printf("\"%s}", show < n ? ",\"truncated\":true" : "");
		} else if (text_blob(sp->blob[i])) {
			printf(" %s=", sp->blob[i]);
			json_text(p, n);
		} else {
			printf(" %s=%u bytes", sp->blob[i], n);
		}
	}
	printf(d->json ? "}\n" : "\n");
	return 0;
}

#define LOG_USAGE "usage: taskring log verify DIR\n       taskring log dump DIR [--json]\n       taskring log compact DIR\n"

/* taskring log compact DIR: fold the closed segments into a checkpoint. */
static int log_compact(const char *dir)
{
	struct tr_compaction c;
	char err[512] = "";
	int rc = tr__log_compact(&tr__log_sysio, dir, NULL, &c, err, sizeof(err));
	if (rc == -EBUSY) {
		fprintf(stderr, "taskring log: %s: a compaction of this log is already under way\n", dir);
		return 1;
	}
	if (rc) {
		fprintf(stderr, "taskring log: %s\n", err[0] ? err : taskring_strerror(rc));
		return 1;
	}
	if (!c.pos)
		printf("log %s: nothing to compact (no closed segment after the checkpoint)\n", dir);
	else
		printf("log %s: checkpoint at sequence %llu: %llu job(s), %llu bytes; %u segment(s) folded, %u file(s) "
		       "removed\n",
		       dir, (unsigned long long)c.pos, (unsigned long long)c.jobs, (unsigned long long)c.bytes, c.folded,
		       c.removed);
	return 0;
}

static int log_cmd(int argc, char **argv)
{
	int json = 0;
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf(LOG_USAGE);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[3], "--json"))
		json = 1;
	else if (argc != 3) {
		fprintf(stderr, LOG_USAGE);
		return 2;
	}
	if (!strcmp(argv[1], "compact") && !json)
		return log_compact(argv[2]);
	int dump = !strcmp(argv[1], "dump");
	if (!dump && (strcmp(argv[1], "verify") || json)) {
		fprintf(stderr, "taskring log: unknown subcommand '%s' (verify, dump, compact)\n", argv[1]);
		return 2;
	}
	struct dump_ctx d = {json};
	struct tr_log_scan s;
	memset(&s, 0, sizeof(s));
	if (dump) {
		s.record = dump_record;
		s.arg = &d;
	}
	/* Shared with other readers, never with a compaction that deletes. */
	int lock = tr__log_lock(argv[2], 0, 1);
	int rc = lock < 0 && lock != -ENOENT ? lock : tr__log_scan(&tr__log_sysio, argv[2], &s);
	if (lock >= 0)
		close(lock);
	fflush(stdout);
	if (rc) {
		fprintf(stderr, "taskring log: %s\n", s.error[0] ? s.error : strerror(-rc));
		return 1;
	}
	if (dump)
		return 0;
	printf("log %s: %u segment(s), %llu record(s), sequence %llu to %llu\n", argv[2], s.segments,
	       (unsigned long long)s.records, (unsigned long long)s.first_seq, (unsigned long long)s.end_seq);
	if (s.ckpt[0])
		printf("checkpoint %s: %llu job(s), %llu bytes, covers the log up to sequence %llu\n", s.ckpt,
		       (unsigned long long)s.ckpt_jobs, (unsigned long long)s.ckpt_bytes,
		       (unsigned long long)s.ckpt_pos);
	if (s.stale)
		printf("%u segment(s) before the checkpoint are no longer needed; the next compaction deletes them\n",
		       s.stale);
	if (s.torn)
		printf("torn tail: %s at offset %llu, %llu byte(s) never acknowledged; recovery zeroes them\n",
		       s.torn_seg, (unsigned long long)s.torn_off, (unsigned long long)s.torn_bytes);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: taskring demo [--jobs N] [--workers N] [--store NAME]\n"
		   "       taskring info STORE [--json]\n"
		   "       taskring reap STORE [--json]\n"
		   "       taskring rm STORE\n"
		   "       taskring log verify DIR\n"
		   "       taskring log dump DIR [--json]\n"
		   "       taskring log compact DIR\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "demo"))
		return demo(argc - 1, argv + 1);
	if (!strcmp(cmd, "info"))
		return info(argc - 1, argv + 1);
	if (!strcmp(cmd, "reap"))
		return reap(argc - 1, argv + 1);
	if (!strcmp(cmd, "log"))
		return log_cmd(argc - 1, argv + 1);
	if (!strcmp(cmd, "rm")) {
		if (argc != 3) {
			usage(stderr);
			return 2;
		}
		int rc = taskring_store_unlink(argv[2]);
		return rc ? fail(argv[2], rc) : 0;
	}
	fprintf(stderr, "taskring: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
