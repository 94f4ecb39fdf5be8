/*
 * main.c - bench/peers: the same workloads against taskring, the real peers
 * a user would pick instead (beanstalkd, redis-server, a SQLite job table)
 * and the machine's transport floors (pipe, UNIX socket, POSIX message
 * queue), one JSON line per (system, scenario).
 *
 *   peers SYSTEM...        run every scenario of each SYSTEM
 *   peers --list           print the systems and their scenarios
 *
 * Systems: taskring, taskring-durable, beanstalkd, beanstalkd-f0, redis,
 * redis-always, sqlite-normal, sqlite-full, pipe, unix, mq. The servers are
 * not started here: bench/peers/run.sh starts them on loopback and names
 * their ports in the environment (PEERS_HOST, PEERS_PORT_BEANSTALKD,
 * PEERS_PORT_BEANSTALKD_F0, PEERS_PORT_REDIS, PEERS_PORT_REDIS_ALWAYS).
 * PEERS_DIR is a directory on a real disk for SQLite's databases and
 * taskring's logs. BENCH_SCALE, BENCH_ONLY (prefixes of "SYSTEM/SCENARIO")
 * and BENCH_PIN as in bench/common.h.
 *
 * Scenarios (see peer.h for what a driver does in each), each with 64-byte
 * payloads and again with 4 KiB ones ("_4k" appended):
 *   rtt         one job round trip: the producer enqueues, a worker
 *               process runs a no-op, the producer has the result. p50,
 *               p99, p99.9 over up to 50,000 round trips (2 s cap).
 *   tput_1p1w   jobs/s from the first enqueue until every job sent is
 *               completed, 1 producer sending batches of 64, 1 worker
 *               process (2 s of sending).
 *   tput_4p2w   the same with 4 producer threads and 2 worker processes.
 *   dur_1       one producer enqueueing one job at a time, each
 *               acknowledged (durable, for a durable system); no worker.
 *               jobs/s and the latency of one enqueue; 2 s or 50,000 jobs.
 *   dur_64      the same with 64 producer threads, each its own client.
 *   dur_50      (redis systems only) with 50 connections, redis-benchmark's
 *               default and the comparison the targets name.
 * The floors run rtt only.
 *
 * Placement: this process (the producers) on the first CPU, worker
 * processes on the second (common.h; BENCH_PIN=0 turns it off), except in
 * dur_N, whose producer threads (the whole load there) may run on every
 * CPU. Servers are not pinned.
 *
 * Exit status: 0; 1 when a scenario failed (its JSON line has "error");
 * 2 on bad usage.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "peer.h"
#include "../common.h"

#define SEC 1000000000LL
#define RTT_WARMUP 200
#define DRAIN_TIMEOUT_NS (120 * SEC)
#define LAT_CAP (1u << 16) /* latency samples kept per dur_N thread */
#define DUR_MAX_JOBS 50000 /* dur_N: jobs at most (times BENCH_SCALE), so that a
			    * system without a worker never fills up */

enum scen_kind { RTT, TPUT, DUR };

struct scenario {
	const char *name; /* without "_4k" */
	enum scen_kind kind;
	int producers;
	int workers;
};

static const struct scenario scenarios[] = {
	{ "rtt", RTT, 1, 1 },
	{ "tput_1p1w", TPUT, 1, 1 },
	{ "tput_4p2w", TPUT, 4, 2 },
	{ "dur_1", DUR, 1, 0 },
	{ "dur_50", DUR, 50, 0 },
	{ "dur_64", DUR, 64, 0 },
};

#define S_RTT (1u << 0)
#define S_TPUT1 (1u << 1)
#define S_TPUT4 (1u << 2)
#define S_DUR1 (1u << 3)
#define S_DUR50 (1u << 4)
#define S_DUR64 (1u << 5)
#define S_QUEUE (S_RTT | S_TPUT1 | S_TPUT4 | S_DUR1 | S_DUR64)

struct system {
	const char *name;
	const struct peer_driver *drv;
	const char *port_env; /* NULL: no server */
	bool durable;         /* an acknowledged enqueue is on disk */
	unsigned scenarios;
	const char *config;   /* how the server or store is set up */
};

static const struct system systems[] = {
	{ "taskring", &peer_taskring, NULL, false, S_QUEUE,
	  "shared-memory store, no log" },
	{ "taskring-durable", &peer_taskring, NULL, true, S_QUEUE,
	  "log on disk, TASKRING_DURABLE: enqueue and each job's end wait for fdatasync (group commit)" },
	{ "beanstalkd", &peer_beanstalkd, "PEERS_PORT_BEANSTALKD", false, S_QUEUE, "beanstalkd, no binlog" },
	{ "beanstalkd-f0", &peer_beanstalkd, "PEERS_PORT_BEANSTALKD_F0", true, S_QUEUE,
	  "beanstalkd -b DIR -f0: binlog fsynced on every write" },
	{ "redis", &peer_redis, "PEERS_PORT_REDIS", false, S_QUEUE | S_DUR50,
	  "redis-server --save '' --appendonly no" },
	{ "redis-always", &peer_redis, "PEERS_PORT_REDIS_ALWAYS", true, S_QUEUE | S_DUR50,
	  "redis-server --appendonly yes --appendfsync always" },
	{ "sqlite-normal", &peer_sqlite, NULL, false, S_QUEUE,
	  "SQLite WAL, synchronous=NORMAL (taskito's setting: a commit is not fsynced)" },
	{ "sqlite-full", &peer_sqlite, NULL, true, S_QUEUE, "SQLite WAL, synchronous=FULL: each commit fsyncs" },
	{ "pipe", &peer_pipe, NULL, false, S_RTT, "two pipes" },
	{ "unix", &peer_unix, NULL, false, S_RTT, "a UNIX stream socket pair" },
	{ "mq", &peer_mq, NULL, false, S_RTT, "two POSIX message queues" },
};

#define N_SYSTEMS (sizeof(systems) / sizeof(systems[0]))
#define N_SCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

/* ------------------------------------------------------------------------ */
/* Output                                                                    */
/* ------------------------------------------------------------------------ */

/* The members every line of a (system, scenario) starts with. */
static void print_head(const struct system *sys, const char *scen, const struct peer_env *env)
{
	printf("{\"system\":\"%s\",\"scenario\":\"%s\",\"clients\":%d,\"workers\":%d,\"payload\":%zu,"
	       "\"durable\":%s",
	       sys->name, scen, env->producers, env->workers, env->payload, sys->durable ? "true" : "false");
}

static void print_tail(const struct system *sys)
{
	printf(",\"pin\":\"%s\",\"config\":\"", bench_pin_text);
	bench_json_escape(sys->config);
	printf("\",\"method\":\"");
	bench_json_escape(sys->drv->method ? sys->drv->method : "");
	printf("\"}\n");
	fflush(stdout);
}

static void print_error(const struct system *sys, const char *scen, const struct peer_env *env, const char *msg)
{
	fprintf(stderr, "peers: %s %s: %s\n", sys->name, scen, msg);
	print_head(sys, scen, env);
	printf(",\"error\":\"");
	bench_json_escape(msg);
	printf("\"");
	print_tail(sys);
	bench_failures++;
}

/* ,"iters":...,"p50_ns":... of @s[0..n), n > 0 (sorted here). */
static void print_latency(uint64_t *s, size_t n)
{
	putchar(',');
	bench_print_pcts(s, n);
}

/* ------------------------------------------------------------------------ */
/* Worker processes                                                          */
/* ------------------------------------------------------------------------ */

/* Shared with the worker processes (MAP_SHARED, made before they fork). */
struct ctl {
	struct {
		_Alignas(BENCH_LINE) uint64_t done; /* jobs completed; its worker's only store */
	} w[2];
	_Alignas(BENCH_LINE) uint32_t ready;  /* workers that opened their client */
	uint32_t failed;                      /* a worker failed: msg says why */
	char msg[PEER_ERRLEN];
};

static struct ctl *ctl;

static void worker_main(const struct system *sys, const struct peer_env *env, int id, int max)
{
	char err[PEER_ERRLEN] = "";
	void *c = sys->drv->open(env, PEER_WORKER, id, err);
	if (!c) {
		snprintf(ctl->msg, sizeof(ctl->msg), "worker %d: open: %s", id, err);
		bench_flag_set(&ctl->failed, 1);
		_exit(1);
	}
	__atomic_fetch_add(&ctl->ready, 1, __ATOMIC_RELEASE);
	bench_futex_wake(&ctl->ready, INT32_MAX);
	uint64_t done = 0;
	for (;;) {
		int n = sys->drv->work(c, max, err);
		if (n <= 0) {
			snprintf(ctl->msg, sizeof(ctl->msg), "worker %d: work: %s", id, n ? err : "no job");
			bench_flag_set(&ctl->failed, 1);
			_exit(1);
		}
		done += (uint64_t)n;
		__atomic_store_n(&ctl->w[id].done, done, __ATOMIC_RELEASE);
	}
}

static uint64_t done_total(int workers)
{
	uint64_t d = 0;
	for (int i = 0; i < workers; i++)
		d += __atomic_load_n(&ctl->w[i].done, __ATOMIC_ACQUIRE);
	return d;
}

/* Forks @env->workers workers and waits until each has its client. */
static int start_workers(const struct system *sys, const struct peer_env *env, int max, pid_t *pids, char *err)
{
	memset(ctl, 0, sizeof(*ctl));
	for (int i = 0; i < env->workers; i++) {
		pids[i] = bench_fork();
		if (pids[i] < 0) {
			snprintf(err, PEER_ERRLEN, "fork failed");
			return -1;
		}
		if (pids[i] == 0)
			worker_main(sys, env, i, max);
	}
	int64_t deadline = bench_now_ns() + 30 * SEC;
	for (;;) {
		uint32_t r = __atomic_load_n(&ctl->ready, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&ctl->failed, __ATOMIC_ACQUIRE)) {
			snprintf(err, PEER_ERRLEN, "%s", ctl->msg);
			return -1;
		}
		if ((int)r == env->workers)
			return 0;
		if (bench_now_ns() > deadline) {
			snprintf(err, PEER_ERRLEN, "workers not ready after 30 s");
			return -1;
		}
		bench_futex_wait(&ctl->ready, r, 10000000);
	}
}

static void stop_workers(int n, pid_t *pids)
{
	for (int i = 0; i < n; i++) {
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			bench_reap(pids[i], 10 * SEC);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* rtt                                                                       */
/* ------------------------------------------------------------------------ */

static int run_rtt(const struct system *sys, const char *scen, const struct peer_env *env, const char *payload)
{
	size_t max = bench_iters(50000, 1000), n = 0;
	int64_t cap = bench_cap_ns(2.0), t_start = 0;
	uint64_t *s = malloc(max * sizeof(*s));
	char err[PEER_ERRLEN] = "";
	pid_t pid = 0;
	void *c = NULL;
	int rc = -1;

	if (!s) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	if (start_workers(sys, env, 1, &pid, err) < 0)
		goto out;
	c = sys->drv->open(env, PEER_PRODUCER, 0, err);
	if (!c)
		goto out;
	for (size_t i = 0; i < RTT_WARMUP + max; i++) {
		if (i == RTT_WARMUP)
			t_start = bench_now_ns();
		int64_t t0 = bench_now_ns();
		if (sys->drv->roundtrip(c, payload, err) < 0) {
			char tmp[PEER_ERRLEN];
			snprintf(tmp, sizeof(tmp), "round trip %zu: %s", i, err);
			memcpy(err, tmp, sizeof(err));
			goto out;
		}
		int64_t t1 = bench_now_ns();
		if (i >= RTT_WARMUP) {
			s[n++] = (uint64_t)(t1 - t0);
			if ((n & 63) == 0 && t1 - t_start > cap)
				break;
		}
	}
	/* Every round trip was one job, run once (the worker counts it just
	 * after the producer has its result: give it a moment). */
	uint64_t done;
	for (int k = 0; (done = done_total(1)) < RTT_WARMUP + n && k < 1000; k++)
		bench_sleep_ns(1000000);
	bench_sleep_ns(10000000);
	done = done_total(1);
	if (done != RTT_WARMUP + n) {
		snprintf(err, sizeof(err), "the worker completed %llu jobs for %zu round trips",
			 (unsigned long long)done, RTT_WARMUP + n);
		goto out;
	}
	rc = 0;
out:
	if (c)
		sys->drv->close(c);
	stop_workers(1, &pid);
	if (rc == 0) {
		print_head(sys, scen, env);
		print_latency(s, n);
		print_tail(sys);
	} else {
		print_error(sys, scen, env, err);
	}
	free(s);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* tput_PpWw                                                                 */
/* ------------------------------------------------------------------------ */

struct tput_shared {
	const struct system *sys;
	const struct peer_env *env;
	const char *payload;
	_Atomic int go, stop, failed;
	_Atomic uint64_t sent;
	uint64_t max_each; /* dur_N: enqueues per producer at most */
	int64_t t0, cap;
	char msg[PEER_ERRLEN];
	pthread_mutex_t msg_lock;
};

struct tput_thread {
	struct tput_shared *sh;
	int id;
	pthread_t th;
};

static void tput_fail(struct tput_shared *sh, const char *fmt, const char *detail, int id)
{
	pthread_mutex_lock(&sh->msg_lock);
	if (!atomic_load(&sh->failed))
		snprintf(sh->msg, sizeof(sh->msg), fmt, id, detail);
	atomic_store(&sh->failed, 1);
	pthread_mutex_unlock(&sh->msg_lock);
}

/* A producer thread's client, once the harness says go (NULL: failed). */
static void *producer_start(struct tput_shared *sh, int id)
{
	char err[PEER_ERRLEN] = "";
	void *c = sh->sys->drv->open(sh->env, PEER_PRODUCER, id, err);
	if (!c) {
		tput_fail(sh, "producer %d: open: %s", err, id);
		return NULL;
	}
	while (!atomic_load(&sh->go))
		bench_sleep_ns(100000);
	return c;
}

static void *tput_producer(void *arg)
{
	struct tput_thread *t = arg;
	struct tput_shared *sh = t->sh;
	char err[PEER_ERRLEN] = "";
	void *c = producer_start(sh, t->id);
	if (!c)
		return NULL;
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed) && !atomic_load(&sh->failed)) {
		/* The window: no more than PEER_WINDOW jobs sent and not done. */
		while (atomic_load_explicit(&sh->sent, memory_order_relaxed) - done_total(sh->env->workers) >
		       PEER_WINDOW - PEER_BATCH) {
			if (atomic_load(&sh->failed) || __atomic_load_n(&ctl->failed, __ATOMIC_ACQUIRE))
				goto out;
			bench_sleep_ns(20000);
		}
		if (sh->sys->drv->enqueue(c, sh->payload, PEER_BATCH, err) < 0) {
			tput_fail(sh, "producer %d: enqueue: %s", err, t->id);
			break;
		}
		atomic_fetch_add(&sh->sent, PEER_BATCH);
		if (bench_now_ns() - sh->t0 > sh->cap)
			break;
	}
out:
	sh->sys->drv->close(c);
	return NULL;
}

static int run_tput(const struct system *sys, const char *scen, const struct peer_env *env, const char *payload)
{
	struct tput_shared sh = { .sys = sys, .env = env, .payload = payload, .cap = bench_cap_ns(2.0) };
	struct tput_thread th[8];
	pid_t pids[2] = { 0, 0 };
	char err[PEER_ERRLEN] = "";
	int started = 0, rc = -1;
	int64_t t1 = 0;
	uint64_t done = 0;

	pthread_mutex_init(&sh.msg_lock, NULL);
	if (start_workers(sys, env, PEER_BATCH, pids, err) < 0)
		goto out;
	for (; started < env->producers; started++) {
		th[started] = (struct tput_thread){ .sh = &sh, .id = started };
		if (pthread_create(&th[started].th, NULL, tput_producer, &th[started]) != 0) {
			snprintf(err, sizeof(err), "pthread_create failed");
			atomic_store(&sh.failed, 1);
			break;
		}
	}
	bench_sleep_ns(50000000); /* the producers' clients connect */
	sh.t0 = bench_now_ns();
	atomic_store(&sh.go, 1);
	for (int i = 0; i < started; i++)
		pthread_join(th[i].th, NULL);
	if (atomic_load(&sh.failed)) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", sh.msg);
		goto out;
	}
	/* Every job sent is completed, and none twice. */
	uint64_t sent = atomic_load(&sh.sent);
	int64_t deadline = bench_now_ns() + DRAIN_TIMEOUT_NS;
	while ((done = done_total(env->workers)) < sent) {
		if (__atomic_load_n(&ctl->failed, __ATOMIC_ACQUIRE)) {
			snprintf(err, sizeof(err), "%s", ctl->msg);
			goto out;
		}
		if (bench_now_ns() > deadline) {
			snprintf(err, sizeof(err), "%llu of %llu jobs completed after %lld s",
				 (unsigned long long)done, (unsigned long long)sent,
				 (long long)(DRAIN_TIMEOUT_NS / SEC));
			goto out;
		}
		bench_sleep_ns(100000);
	}
	t1 = bench_now_ns();
	/* A job run twice would show here once the workers had a moment. */
	bench_sleep_ns(20000000);
	done = done_total(env->workers);
	if (done != sent) {
		snprintf(err, sizeof(err), "%llu jobs completed for %llu sent", (unsigned long long)done,
			 (unsigned long long)sent);
		goto out;
	}
	rc = 0;
out:
	stop_workers(env->workers, pids);
	if (rc == 0) {
		double secs = (double)(t1 - sh.t0) / 1e9;
		print_head(sys, scen, env);
		printf(",\"jobs\":%llu,\"secs\":%.3f,\"ops_per_s\":%.0f,\"batch\":%d", (unsigned long long)done,
		       secs, (double)done / secs, PEER_BATCH);
		print_tail(sys);
	} else {
		print_error(sys, scen, env, err);
	}
	pthread_mutex_destroy(&sh.msg_lock);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* dur_N                                                                     */
/* ------------------------------------------------------------------------ */

struct dur_thread {
	struct tput_shared *sh;
	int id;
	pthread_t th;
	uint64_t count;
	size_t n;
	uint64_t lat[LAT_CAP];
};

/* Every CPU this process was allowed before common.h pinned it. */
static cpu_set_t all_cpus;

static void *dur_producer(void *arg)
{
	struct dur_thread *t = arg;
	struct tput_shared *sh = t->sh;
	char err[PEER_ERRLEN] = "";
	/* The producers are the whole load here: on every CPU, as a server's
	 * own thread is (pinned to the harness's one CPU, taskring's 64
	 * producers, its flusher among them, had half the machine a server
	 * and its clients have). */
	sched_setaffinity(0, sizeof(all_cpus), &all_cpus);
	void *c = producer_start(sh, t->id);
	if (!c)
		return NULL;
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed) && !atomic_load(&sh->failed) &&
	       t->count < sh->max_each) {
		int64_t t0 = bench_now_ns();
		if (sh->sys->drv->enqueue(c, sh->payload, 1, err) < 0) {
			tput_fail(sh, "producer %d: enqueue: %s", err, t->id);
			break;
		}
		int64_t t1 = bench_now_ns();
		__atomic_store_n(&t->count, t->count + 1, __ATOMIC_RELAXED);
		if (t->n < LAT_CAP)
			t->lat[t->n++] = (uint64_t)(t1 - t0);
	}
	sh->sys->drv->close(c);
	return NULL;
}

static int run_dur(const struct system *sys, const char *scen, const struct peer_env *env, const char *payload)
{
	int nt = env->producers, started = 0, rc = -1;
	struct tput_shared sh = { .sys = sys, .env = env, .payload = payload,
				  .max_each = bench_iters(DUR_MAX_JOBS, 2000) / (size_t)nt };
	struct dur_thread *th = calloc((size_t)nt, sizeof(*th));
	uint64_t *all = NULL, jobs = 0;
	size_t n = 0;
	char err[PEER_ERRLEN] = "";
	int64_t t0 = 0, t1 = 0;

	pthread_mutex_init(&sh.msg_lock, NULL);
	if (!th) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	for (; started < nt; started++) {
		th[started].sh = &sh;
		th[started].id = started;
		if (pthread_create(&th[started].th, NULL, dur_producer, &th[started]) != 0) {
			snprintf(err, sizeof(err), "pthread_create failed");
			atomic_store(&sh.failed, 1);
			break;
		}
	}
	bench_sleep_ns(100000000); /* the clients connect */
	t0 = bench_now_ns();
	atomic_store(&sh.go, 1);
	/* Until the time is up, or every producer made its count. */
	for (int64_t cap = bench_cap_ns(2.0); bench_now_ns() - t0 < cap && !atomic_load(&sh.failed);) {
		int busy = 0;
		for (int i = 0; i < started; i++)
			busy += __atomic_load_n(&th[i].count, __ATOMIC_RELAXED) < sh.max_each;
		if (!busy)
			break;
		bench_sleep_ns(1000000);
	}
	atomic_store(&sh.stop, 1);
	for (int i = 0; i < started; i++)
		pthread_join(th[i].th, NULL);
	t1 = bench_now_ns();
	if (atomic_load(&sh.failed)) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", sh.msg);
		goto out;
	}
	for (int i = 0; i < nt; i++) {
		jobs += th[i].count;
		n += th[i].n;
	}
	all = malloc((n ? n : 1) * sizeof(*all));
	if (!all || n == 0) {
		snprintf(err, sizeof(err), n ? "out of memory" : "no enqueue completed");
		goto out;
	}
	n = 0;
	for (int i = 0; i < nt; i++) {
		memcpy(all + n, th[i].lat, th[i].n * sizeof(*all));
		n += th[i].n;
	}
	rc = 0;
out:
	if (rc == 0) {
		double secs = (double)(t1 - t0) / 1e9;
		print_head(sys, scen, env);
		printf(",\"jobs\":%llu,\"secs\":%.3f,\"ops_per_s\":%.0f", (unsigned long long)jobs, secs,
		       (double)jobs / secs);
		print_latency(all, n);
		print_tail(sys);
	} else {
		print_error(sys, scen, env, err);
	}
	free(all);
	free(th);
	pthread_mutex_destroy(&sh.msg_lock);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static const struct system *find_system(const char *name)
{
	for (size_t i = 0; i < N_SYSTEMS; i++)
		if (strcmp(systems[i].name, name) == 0)
			return &systems[i];
	return NULL;
}

/* BENCH_ONLY takes prefixes of "SYSTEM/SCENARIO". */
static bool want(const struct system *sys, const char *scen)
{
	char key[96];
	snprintf(key, sizeof(key), "%s/%s", sys->name, scen);
	return bench_want(key);
}

static void run_system(const struct system *sys)
{
	static unsigned counter;
	const char *host = getenv("PEERS_HOST");
	const char *dir = getenv("PEERS_DIR");
	int port = 0;

	if (sys->port_env) {
		const char *p = getenv(sys->port_env);
		port = p ? atoi(p) : 0;
	}
	for (int big = 0; big < 2; big++) {
		for (size_t k = 0; k < N_SCENARIOS; k++) {
			const struct scenario *sc = &scenarios[k];
			struct peer_env env = {
				.system = sys->name,
				.host = host && *host ? host : "127.0.0.1",
				.port = port,
				.dir = dir && *dir ? dir : "build/bench/peers",
				.payload = big ? 4096 : 64,
				.producers = sc->producers,
				.workers = sc->workers,
			};
			char scen[32], err[PEER_ERRLEN] = "";
			char *payload;

			if (!(sys->scenarios & (1u << k)))
				continue;
			snprintf(scen, sizeof(scen), "%s%s", sc->name, big ? "_4k" : "");
			if (!want(sys, scen))
				continue;
			if (sys->port_env && port <= 0) {
				print_error(sys, scen, &env, "no server: set the port variable (bench/peers/run.sh does)");
				continue;
			}
			snprintf(env.queue, sizeof(env.queue), "trpeers-%d-%u", (int)getpid(), counter++);
			payload = malloc(env.payload);
			if (!payload) {
				print_error(sys, scen, &env, "out of memory");
				continue;
			}
			for (size_t i = 0; i < env.payload; i++)
				payload[i] = peer_payload_byte(i);
			fprintf(stderr, "# %s %s\n", sys->name, scen);
			if (sys->drv->prepare && sys->drv->prepare(&env, err) < 0) {
				char msg[PEER_ERRLEN + 16];
				snprintf(msg, sizeof(msg), "prepare: %s", err);
				print_error(sys, scen, &env, msg);
				free(payload);
				continue;
			}
			switch (sc->kind) {
			case RTT:
				run_rtt(sys, scen, &env, payload);
				break;
			case TPUT:
				run_tput(sys, scen, &env, payload);
				break;
			case DUR:
				run_dur(sys, scen, &env, payload);
				break;
			}
			if (sys->drv->finish)
				sys->drv->finish(&env);
			free(payload);
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: peers SYSTEM...   (or --list)\nsystems:");
	for (size_t i = 0; i < N_SYSTEMS; i++)
		fprintf(f, " %s", systems[i].name);
	fprintf(f, "\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < N_SYSTEMS; i++) {
			printf("%-17s", systems[i].name);
			for (size_t k = 0; k < N_SCENARIOS; k++)
				if (systems[i].scenarios & (1u << k))
					printf(" %s", scenarios[k].name);
			printf("   (%s)\n", systems[i].config);
		}
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (!find_system(argv[i])) {
			fprintf(stderr, "peers: unknown system '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (sched_getaffinity(0, sizeof(all_cpus), &all_cpus) < 0)
		CPU_ZERO(&all_cpus);
	bench_init();
	ctl = bench_shared_alloc(sizeof(*ctl));
	for (int i = 1; i < argc; i++)
		run_system(find_system(argv[i]));
	return bench_failures ? 1 : 0;
}
