/*
 * cli_worker.c - a worker process for tests/test_cli.py (not a test itself).
 *
 *   cli_worker STORE [THREADS]
 *
 * Opens the existing STORE, starts a worker (THREADS threads, default 2) on
 * the queues "default", "q1" and "q2" with these handlers, prints "ready"
 * and runs until SIGTERM or SIGINT, then stops (1 s drain) and exits 0:
 *   echo  the result is the payload
 *   fail  fails every attempt, retryably ("fail: attempt N"): ends dead
 *   hold  reports the payload's decimal percent (default 42) as progress,
 *         then waits until a cancel is requested and returns TASKRING_CANCEL
 *   slow  sleeps the payload's decimal milliseconds, then the result "done"
 * Exit 1 (with a message) when a taskring call fails, 2 on bad usage.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "taskring.h"

#define MS 1000000LL
#define SEC 1000000000LL

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / SEC), (long)(ns % SEC) };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The payload as a non-negative decimal number, or @dflt when it is empty
 * or not one. */
static long payload_number(struct taskring_ctx *ctx, long dflt)
{
	size_t len = 0;
	const char *p = taskring_ctx_payload(ctx, &len);
	char buf[32];
	char *end;
	long v;

	if (!p || len == 0 || len >= sizeof(buf))
		return dflt;
	memcpy(buf, p, len);
	buf[len] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno || end == buf || v < 0)
		return dflt;
	return v;
}

static int h_echo(struct taskring_ctx *ctx, void *arg)
{
	size_t len = 0;
	const void *p = taskring_ctx_payload(ctx, &len);
	int rc = taskring_ctx_result(ctx, len ? p : "", len);

	if (rc < 0) {
		taskring_ctx_error(ctx, "echo: %s", taskring_strerror(rc));
		return TASKRING_FAIL;
	}
	return TASKRING_OK;
}

static int h_fail(struct taskring_ctx *ctx, void *arg)
{
	taskring_ctx_error(ctx, "fail: attempt %u", taskring_ctx_attempt(ctx));
	return TASKRING_RETRY;
}

static int h_hold(struct taskring_ctx *ctx, void *arg)
{
	long pct = payload_number(ctx, 42);

	taskring_ctx_progress(ctx, pct > 100 ? 100 : (int)pct);
	while (!taskring_ctx_cancel_requested(ctx))
		sleep_ns(10 * MS);
	return TASKRING_CANCEL;
}

static int h_slow(struct taskring_ctx *ctx, void *arg)
{
	long ms = payload_number(ctx, 0);

	sleep_ns((int64_t)ms * MS);
	if (taskring_ctx_result(ctx, "done", 4) < 0)
		return TASKRING_RETRY;
	return TASKRING_OK;
}

static int die(const char *what, int rc)
{
	fprintf(stderr, "cli_worker: %s: %s\n", what, taskring_strerror(rc));
	return 1;
}

int main(int argc, char **argv)
{
	static const char *const queues[] = { "default", "q1", "q2" };
	static const struct {
		const char *name;
		taskring_handler_fn fn;
	} handlers[] = {
		{ "echo", h_echo },
		{ "fail", h_fail },
		{ "hold", h_hold },
		{ "slow", h_slow },
	};
	struct taskring_store_opts so = { .flags = TASKRING_STORE_NOCREATE };
	struct taskring_worker_opts wo;
	struct taskring_store *store = NULL;
	struct taskring_worker *worker = NULL;
	unsigned long threads = 2;
	sigset_t set;
	size_t i;
	int sig, rc;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: cli_worker STORE [THREADS]\n");
		return 2;
	}
	if (argc == 3) {
		char *end;

		errno = 0;
		threads = strtoul(argv[2], &end, 10);
		if (errno || *end || end == argv[2] || threads < 1 || threads > 1024) {
			fprintf(stderr, "cli_worker: bad thread count: %s\n", argv[2]);
			return 2;
		}
	}

	/* Blocked before any thread starts, so the worker's threads inherit the
	 * mask and only sigwait() below takes the signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	rc = taskring_store_open(argv[1], &so, &store);
	if (rc < 0)
		return die(argv[1], rc);

	taskring_worker_opts_init(&wo);
	wo.threads = (uint32_t)threads;
	wo.queues = queues;
	wo.nqueues = sizeof(queues) / sizeof(queues[0]);
	wo.reap_interval_ns = 50 * MS;
	rc = taskring_worker_create(store, &wo, &worker);
	if (rc < 0) {
		taskring_store_close(store);
		return die("taskring_worker_create", rc);
	}
	for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
		rc = taskring_worker_register(worker, handlers[i].name, handlers[i].fn, NULL);
		if (rc < 0)
			break;
	}
	if (rc >= 0)
		rc = taskring_worker_start(worker);
	if (rc < 0) {
		taskring_worker_destroy(worker);
		taskring_store_close(store);
		return die("starting the worker", rc);
	}

	fputs("ready\n", stdout);
	fflush(stdout);

	do
		rc = sigwait(&set, &sig);
	while (rc == EINTR);

	/* A hold job still running gets a cancel request when the drain
	 * time passes, and returns. */
	taskring_worker_stop(worker, 1 * SEC);
	taskring_worker_destroy(worker);
	taskring_store_close(store);
	return 0;
}
