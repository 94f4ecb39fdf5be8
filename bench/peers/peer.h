/*
 * peer.h - the interface between bench/peers' harness (main.c) and the
 * systems it measures (one drv_*.c each): taskring itself, the real peers
 * (beanstalkd, redis-server, SQLite) and the transport floors (pipe, UNIX
 * socket, POSIX message queue).
 *
 * The harness owns the workloads, the timing and the JSON; a driver only
 * moves jobs. Every driver gets the same calls in the same shapes, so a
 * figure of one system can be set beside another's:
 *
 *   rtt       one producer (the harness's thread) calls roundtrip() in a
 *             loop; one worker process calls work(max 1) in a loop.
 *   tput_PpWw P producer threads call enqueue(n <= PEER_BATCH) in a loop,
 *             each with its own client; W worker processes call work(max
 *             PEER_BATCH) in a loop. A job counts once its worker's work()
 *             returned it; the run ends when every job sent is counted.
 *             At most PEER_WINDOW jobs are in flight (sent, not counted), so
 *             that no system's queue grows without bound.
 *   dur_N     N producer threads call enqueue(1) in a loop, no worker: what
 *             one durable enqueue costs, alone and with company.
 *
 * Processes and threads: prepare() and finish() run in the harness's
 * process. Worker processes are fork()ed after prepare(); each calls
 * open(PEER_WORKER) itself. Producer clients are opened in the harness's
 * process (one per producer thread, by that thread). Worker processes are
 * ended with SIGKILL when the scenario is over: a driver must not need them
 * to clean up.
 *
 * Errors: every call returns 0 (work(): the count, > 0) or -1 with a
 * one-line message written to @err (PEER_ERRLEN bytes). Nothing prints.
 */
#ifndef TASKRING_BENCH_PEER_H
#define TASKRING_BENCH_PEER_H

#include <stddef.h>
#include <stdint.h>

#define PEER_ERRLEN 256
#define PEER_BATCH 64    /* jobs per enqueue() / work() at most */
#define PEER_WINDOW 8192 /* jobs in flight at most in tput_* */

enum peer_role { PEER_PRODUCER, PEER_WORKER };

/* What one scenario runs against. The harness fills it; drivers read it. */
struct peer_env {
	const char *system;  /* the JSON's "system": "beanstalkd-f0", "sqlite-full", ... */
	const char *host;    /* server address (beanstalkd, redis): "127.0.0.1" */
	int port;            /* server port (beanstalkd, redis) */
	const char *dir;     /* a directory on a real disk (not tmpfs) for the
			      * system's own files: SQLite's database, taskring's log */
	char queue[64];      /* a name new to this scenario: a tube, a list key,
			      * a table or file name, a store name ([A-Za-z0-9_-]) */
	size_t payload;      /* bytes of every job's payload: 64 or 4096 */
	int producers;       /* producer clients in this scenario */
	int workers;         /* worker processes in this scenario (0 in dur_N) */
};

/*
 * A job's payload is env->payload bytes, byte i being 'a' + i % 26. A
 * worker checks that it received exactly that many bytes and that the last
 * is right, and fails (-1) otherwise: a system that lost or cut a payload
 * must not be counted.
 */
static inline char peer_payload_byte(size_t i)
{
	return (char)('a' + i % 26);
}

struct peer_driver {
	const char *name; /* "taskring", "beanstalkd", "redis", "sqlite", "pipe", ... */

	/* Before the scenario, in the harness's process, before any fork:
	 * make a new, empty queue named env->queue (flush, create, mkfifo...).
	 * NULL: nothing to do. */
	int (*prepare)(const struct peer_env *env, char *err);

	/* One client: a connection (or the process's handle), used by one
	 * thread. @id numbers the scenario's clients of a role from 0. */
	void *(*open)(const struct peer_env *env, enum peer_role role, int id, char *err);
	void (*close)(void *client);

	/* Producer: enqueue @n jobs (1 <= n <= PEER_BATCH), each a copy of
	 * @payload (env->payload bytes), batched or pipelined as the system
	 * allows, and return once the system acknowledged every one (for a
	 * durable system: once each is durable). NULL: tput and dur not run. */
	int (*enqueue)(void *client, const void *payload, int n, char *err);

	/* Producer: enqueue one job that asks for its result, and return once
	 * this client has that result (a worker ran the job). */
	int (*roundtrip)(void *client, const void *payload, char *err);

	/* Worker: wait (blocking, without a time limit) for at least one job,
	 * take up to @max, run each (a no-op that checks the payload), and
	 * complete it the system's way (delete, acknowledge, mark done; reply
	 * to a roundtrip()'s producer). Returns how many were completed. */
	int (*work)(void *client, int max, char *err);

	/* After the scenario (worker processes are gone), in the harness's
	 * process: remove what prepare() made. NULL: nothing to do. */
	void (*finish)(const struct peer_env *env);

	/* A short description of how this driver uses the system, for the
	 * JSON's "method" (one line, no quotes). */
	const char *method;
};

extern const struct peer_driver peer_taskring, peer_beanstalkd, peer_redis, peer_sqlite;
extern const struct peer_driver peer_pipe, peer_unix, peer_mq;

#endif /* TASKRING_BENCH_PEER_H */
