/*
 * region_seed.c - writes the region fuzz target's seed (`make fuzz-seeds`
 * puts it in tests/fuzz/corpus/region/store): a small store with a job in
 * every state (complete with an arena result, failed, dead, cancelled with
 * metadata and a unique key, pending on a dependency, delayed), copied while
 * one more job runs. Run it again whenever the region format changes.
 */
#include <stdio.h>
#include <stdlib.h>

#include "taskring.h"

static const char *g_out;

static int h_ok(struct taskring_ctx *c, void *a)
{
	(void)a;
	taskring_ctx_result(c, "a result longer than inline, in the arena", 41);
	return TASKRING_OK;
}

static int h_fail(struct taskring_ctx *c, void *a)
{
	(void)a;
	taskring_ctx_error(c, "boom");
	return TASKRING_FAIL;
}

static int h_retry(struct taskring_ctx *c, void *a)
{
	(void)a;
	taskring_ctx_error(c, "again");
	return TASKRING_RETRY;
}

/* The copy is made while this job runs. */
static int h_snap(struct taskring_ctx *c, void *a)
{
	char cmd[512];
	(void)a;
	(void)c;
	snprintf(cmd, sizeof(cmd), "cp /dev/shm/taskring-seed '%s'", g_out);
	return system(cmd) ? TASKRING_FAIL : TASKRING_OK;
}

int main(int argc, char **argv)
{
	struct taskring_store_opts so = {.slots = 16, .max_payload = 256, .arena_bytes = 8192, .queues = 2, .tasks = 8};
	struct taskring_store *st;
	struct taskring_enqueue_opts o;
	struct taskring_job a, d, j;
	struct taskring_worker *w;
	static const char *const tasks[] = {"ok", "fail", "retry", "snap", "never"};

	if (argc != 2) {
		fprintf(stderr, "usage: region_seed OUT\n");
		return 2;
	}
	g_out = argv[1];
	taskring_store_unlink("/taskring-seed");
	if (taskring_store_open("/taskring-seed", &so, &st))
		return 1;
	for (int i = 0; i < 5; i++)
		taskring_task_declare(st, tasks[i]);
	taskring_enqueue_opts_init(&o);
	o.max_retries = 0;
	taskring_enqueue(st, "ok", "payload of more than 32 bytes, in the arena", 44, &o, &a);
	taskring_enqueue(st, "fail", "x", 1, &o, &j);
	taskring_enqueue(st, "retry", "y", 1, &o, &j);
	o.metadata = "{\"k\":1}";
	o.unique_key = "uk";
	o.queue = "q2"; /* jobs nobody runs live in a queue the worker does not serve */
	taskring_enqueue(st, "never", "z", 1, &o, &d);
	taskring_job_cancel(&d);
	o.metadata = NULL;
	o.unique_key = NULL;
	o.queue = NULL;
	if (taskring_worker_create(st, NULL, &w))
		return 1;
	taskring_worker_register(w, "ok", h_ok, NULL);
	taskring_worker_register(w, "fail", h_fail, NULL);
	taskring_worker_register(w, "retry", h_retry, NULL);
	taskring_worker_register(w, "snap", h_snap, NULL);
	for (int i = 0; i < 3; i++)
		taskring_worker_run_one(w, 0);
	o.queue = "q2";
	o.depends_on = &a;
	o.n_depends_on = 1;
	taskring_enqueue(st, "never", "dep", 3, &o, &j);
	o.depends_on = NULL;
	o.n_depends_on = 0;
	o.delay_ns = 3600000000000LL;
	taskring_enqueue(st, "never", "later", 5, &o, &j);
	o.delay_ns = 0;
	o.queue = NULL;
	taskring_enqueue(st, "snap", NULL, 0, &o, &j);
	int ran = taskring_worker_run_one(w, 0);
	int copied = taskring_job_status(&j) == TASKRING_COMPLETE;
	taskring_worker_destroy(w);
	taskring_store_close(st);
	taskring_store_unlink("/taskring-seed");
	return ran == 1 && copied ? 0 : 1;
}
