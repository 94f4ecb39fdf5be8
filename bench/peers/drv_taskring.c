/*
 * drv_taskring.c - taskring through its public API, as bench/peers' driver
 * (peer.h). Systems "taskring" (no log) and "taskring-durable" (a log in
 * env->dir, TASKRING_DURABLE).
 *
 * The store is "/<queue>" in /dev/shm, made by prepare() in the harness's
 * process, whose producer threads share that one handle (a store handle is
 * thread-safe). prepare() then runs one full turn of the slot table (as
 * bench/core does): every slot and arena block has been used once, so the
 * figures are those of a store in steady use, not of a new one taking its
 * first page faults (a 4 KiB payload's first use of its arena pages costs
 * more than the whole round trip on a VM). The peers' allocators reuse the
 * memory of deleted jobs from the start; a taskring store keeps each ended
 * job (and its payload) readable until its slot comes round again.
 *
 * Every process opens the store with TASKRING_STORE_PREFAULT: each maps the
 * region's pages for itself, and without it a worker process's first pass
 * over the arena takes a page fault per 4 KiB payload.
 *
 * A worker process opens the store by name, as an unrelated process would.
 * Without a log it runs jobs with taskring_worker_run_one() in its own
 * thread: the first waits for a job (spinning briefly, then on a futex),
 * the rest of a work() call take what is ready without waiting. With the
 * log, each job's end waits for its fdatasync before it becomes visible, so
 * one thread would run one job per disk flush: the worker runs
 * DURABLE_THREADS threads (taskring_worker_start), whose ends share each
 * flush, and work() reports the jobs their handlers finished.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "taskring.h"
#include "peer.h"

#define SEC 1000000000LL
#define SLOTS 65536        /* dur_N's 50,000 jobs (no worker), and PEER_WINDOW */
#define DURABLE_THREADS 16 /* worker threads per process with the log */

/* The harness's process: the store prepare() made. */
static struct taskring_store *g_store;
static char g_name[80];
static char g_logdir[512];

struct client {
	struct taskring_store *st;
	struct taskring_worker *w; /* workers only */
	bool threads;              /* w runs its own threads (durable) */
	uint32_t reported;         /* g_ran as of the last work() */
	size_t payload;
};

/* A worker process's handler state. */
static size_t g_expect;
static _Atomic bool g_bad;
static char g_bad_msg[128];
static _Atomic uint32_t g_ran;     /* jobs the handlers finished */
static _Atomic uint32_t g_waiting; /* work() sleeps on g_ran */

static bool durable(const struct peer_env *env)
{
	return strcmp(env->system, "taskring-durable") == 0;
}

static void opts_for(const struct peer_env *env, struct taskring_store_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->slots = SLOTS;
	o->max_payload = 4096;
	/* A turn of the slots with every payload live: a 4 KiB payload takes
	 * an 8 KiB block. */
	o->arena_bytes = env->payload > 64 ? 768ull << 20 : 64ull << 20;
	o->flags = TASKRING_STORE_PREFAULT;
	if (durable(env)) {
		o->log_dir = g_logdir;
		o->durability = TASKRING_DURABLE;
	}
}

static void rm_logdir(void)
{
	char cmd[600];
	if (!g_logdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_logdir);
	if (system(cmd) != 0) {
		/* Left behind; run.sh removes PEERS_DIR's contents anyway. */
	}
	g_logdir[0] = '\0';
}

/* The job: check the payload, return no result. */
static int noop(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const char *p = taskring_ctx_payload(ctx, &len);
	if (len != g_expect || (len && p[len - 1] != peer_payload_byte(len - 1))) {
		if (!atomic_exchange(&g_bad, true))
			snprintf(g_bad_msg, sizeof(g_bad_msg), "a payload of %zu bytes, expected %zu", len, g_expect);
	}
	atomic_fetch_add(&g_ran, 1);
	if (atomic_load(&g_waiting))
		syscall(SYS_futex, &g_ran, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	return TASKRING_OK;
}

static int make_worker(struct taskring_store *st, int threads, struct taskring_worker **wp, char *err)
{
	struct taskring_worker_opts wo;
	int rc;
	*wp = NULL;
	taskring_worker_opts_init(&wo);
	wo.threads = (uint32_t)threads;
	rc = taskring_worker_create(st, &wo, wp);
	if (rc >= 0)
		rc = taskring_worker_register(*wp, "noop", noop, NULL);
	if (rc < 0) {
		snprintf(err, PEER_ERRLEN, "taskring worker: %s", taskring_strerror(rc));
		if (*wp)
			taskring_worker_destroy(*wp);
		*wp = NULL;
		return -1;
	}
	return 0;
}

static void tr_finish(const struct peer_env *env)
{
	if (g_store)
		taskring_store_close(g_store);
	g_store = NULL;
	taskring_store_unlink(g_name);
	rm_logdir();
}

/* One full turn of the slot table, run by worker threads of this process
 * that are gone again when it returns (before the harness forks). */
static int prewarm(const struct peer_env *env, const char *payload, char *err)
{
	struct taskring_enqueue_item items[PEER_BATCH];
	struct taskring_job jobs[PEER_BATCH];
	struct taskring_enqueue_opts o;
	struct taskring_worker *w;
	int rc = 0;

	if (make_worker(g_store, durable(env) ? DURABLE_THREADS : 1, &w, err) < 0)
		return -1;
	g_expect = env->payload;
	rc = taskring_worker_start(w);
	for (int i = 0; i < PEER_BATCH; i++)
		items[i] = (struct taskring_enqueue_item){ .task = "noop", .payload = payload, .len = env->payload };
	taskring_enqueue_opts_init(&o);
	o.flags = TASKRING_ENQ_BLOCK;
	o.block_timeout_ns = 30 * SEC;
	for (uint32_t sent = 0; rc >= 0 && sent < SLOTS; sent += PEER_BATCH) {
		rc = taskring_enqueue_batch(g_store, items, PEER_BATCH, &o, jobs);
		if (rc >= 0 && sent + PEER_BATCH >= SLOTS) {
			rc = taskring_job_wait(&jobs[PEER_BATCH - 1], 60 * SEC);
			if (rc >= 0 && rc != TASKRING_COMPLETE)
				rc = -EPROTO;
		}
	}
	if (rc < 0)
		snprintf(err, PEER_ERRLEN, "prewarm: %s", taskring_strerror(rc));
	else if (g_bad)
		snprintf(err, PEER_ERRLEN, "prewarm: %s", g_bad_msg);
	taskring_worker_destroy(w);
	return rc < 0 || g_bad ? -1 : 0;
}

static int tr_prepare(const struct peer_env *env, char *err)
{
	struct taskring_store_opts o;
	char *payload;
	int rc;

	snprintf(g_name, sizeof(g_name), "/%s", env->queue);
	g_logdir[0] = '\0';
	if (durable(env)) {
		if (mkdir(env->dir, 0700) < 0 && errno != EEXIST) {
			snprintf(err, PEER_ERRLEN, "mkdir %s: %s", env->dir, strerror(errno));
			return -1;
		}
		snprintf(g_logdir, sizeof(g_logdir), "%s/%s.log", env->dir, env->queue);
	}
	opts_for(env, &o);
	taskring_store_unlink(g_name);
	rc = taskring_store_open(g_name, &o, &g_store);
	if (rc < 0) {
		snprintf(err, PEER_ERRLEN, "taskring_store_open(%s): %s", g_name, taskring_strerror(rc));
		g_store = NULL;
		rm_logdir();
		return -1;
	}
	payload = malloc(env->payload);
	if (!payload) {
		snprintf(err, PEER_ERRLEN, "out of memory");
		tr_finish(env);
		return -1;
	}
	for (size_t i = 0; i < env->payload; i++)
		payload[i] = peer_payload_byte(i);
	rc = prewarm(env, payload, err);
	free(payload);
	if (rc < 0) {
		tr_finish(env);
		return -1;
	}
	return 0;
}

static void *tr_open(const struct peer_env *env, enum peer_role role, int id, char *err)
{
	struct client *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		snprintf(err, PEER_ERRLEN, "out of memory");
		return NULL;
	}
	c->payload = env->payload;
	if (role == PEER_PRODUCER) {
		if (!g_store) {
			snprintf(err, PEER_ERRLEN, "no store: prepare() did not run in this process");
			free(c);
			return NULL;
		}
		c->st = g_store;
		return c;
	}
	/* A worker process: its own handle, opened by name. */
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.flags = TASKRING_STORE_NOCREATE | TASKRING_STORE_PREFAULT;
	if (durable(env))
		o.log_dir = g_logdir;
	rc = taskring_store_open(g_name, &o, &c->st);
	if (rc < 0) {
		snprintf(err, PEER_ERRLEN, "taskring_store_open(%s): %s", g_name, taskring_strerror(rc));
		free(c);
		return NULL;
	}
	c->threads = durable(env);
	g_expect = env->payload;
	g_ran = 0;
	if (make_worker(c->st, c->threads ? DURABLE_THREADS : 1, &c->w, err) < 0 ||
	    (c->threads && (rc = taskring_worker_start(c->w)) < 0)) {
		if (c->w)
			snprintf(err, PEER_ERRLEN, "taskring_worker_start: %s", taskring_strerror(rc));
		taskring_worker_destroy(c->w);
		taskring_store_close(c->st);
		free(c);
		return NULL;
	}
	return c;
}

static void tr_close(void *client)
{
	struct client *c = client;
	if (c->w) {
		taskring_worker_destroy(c->w);
		taskring_store_close(c->st);
	}
	free(c);
}

static int tr_enqueue(void *client, const void *payload, int n, char *err)
{
	struct client *c = client;
	struct taskring_enqueue_item items[PEER_BATCH];
	struct taskring_enqueue_opts o;
	int rc;

	if (n == 1) {
		rc = taskring_enqueue(c->st, "noop", payload, c->payload, NULL, NULL);
	} else {
		for (int i = 0; i < n; i++)
			items[i] = (struct taskring_enqueue_item){ .task = "noop", .payload = payload,
								   .len = c->payload };
		taskring_enqueue_opts_init(&o);
		o.flags = TASKRING_ENQ_BLOCK;
		o.block_timeout_ns = 10 * SEC;
		rc = taskring_enqueue_batch(c->st, items, (size_t)n, &o, NULL);
	}
	if (rc < 0) {
		snprintf(err, PEER_ERRLEN, "%s: %s", n == 1 ? "taskring_enqueue" : "taskring_enqueue_batch",
			 taskring_strerror(rc));
		return -1;
	}
	return 0;
}

static int tr_roundtrip(void *client, const void *payload, char *err)
{
	struct client *c = client;
	struct taskring_job job;
	size_t len = 0;
	char buf[16];
	int rc = taskring_enqueue(c->st, "noop", payload, c->payload, NULL, &job);
	if (rc < 0) {
		snprintf(err, PEER_ERRLEN, "taskring_enqueue: %s", taskring_strerror(rc));
		return -1;
	}
	rc = taskring_job_result(&job, 10 * SEC, buf, sizeof(buf), &len);
	if (rc < 0) {
		snprintf(err, PEER_ERRLEN, "taskring_job_result: %s", taskring_strerror(rc));
		return -1;
	}
	return 0;
}

/* The worker's own threads run the jobs: wait until they finished more. */
static int work_threads(struct client *c, char *err)
{
	uint32_t now;
	while ((now = atomic_load(&g_ran)) == c->reported) {
		atomic_store(&g_waiting, 1);
		if (atomic_load(&g_ran) == c->reported)
			syscall(SYS_futex, &g_ran, FUTEX_WAIT_PRIVATE, c->reported, NULL, NULL, 0);
		atomic_store(&g_waiting, 0);
	}
	if (g_bad) {
		snprintf(err, PEER_ERRLEN, "%s", g_bad_msg);
		return -1;
	}
	int n = (int)(now - c->reported);
	c->reported = now;
	return n;
}

static int tr_work(void *client, int max, char *err)
{
	struct client *c = client;
	int done = 0, rc;

	if (c->threads)
		return work_threads(c, err);
	/* The first job: wait as long as it takes. */
	while ((rc = taskring_worker_run_one(c->w, -1)) == 0)
		;
	while (rc == 1) {
		done++;
		if (done == max)
			break;
		rc = taskring_worker_run_one(c->w, 0);
	}
	if (rc < 0) {
		snprintf(err, PEER_ERRLEN, "taskring_worker_run_one: %s", taskring_strerror(rc));
		return -1;
	}
	if (g_bad) {
		snprintf(err, PEER_ERRLEN, "%s", g_bad_msg);
		return -1;
	}
	return done;
}

const struct peer_driver peer_taskring = {
	.name = "taskring",
	.prepare = tr_prepare,
	.open = tr_open,
	.close = tr_close,
	.enqueue = tr_enqueue,
	.roundtrip = tr_roundtrip,
	.work = tr_work,
	.finish = tr_finish,
	.method = "public API; a store in steady use (one full turn of its 65,536 slots before the scenario), "
		  "opened with TASKRING_STORE_PREFAULT in every process; "
		  "producers share one store handle; taskring_enqueue_batch of 64 with TASKRING_ENQ_BLOCK; "
		  "no log: workers run jobs with taskring_worker_run_one in their own thread; durable: 16 worker "
		  "threads per process, whose job ends share each fdatasync, jobs counted as their handlers return; "
		  "round trip = taskring_enqueue + taskring_job_result",
};
