/*
 * drv_sqlite.c - SQLite as a job queue: a job table in one database file,
 * the way taskito (a Python task queue) keeps its jobs.
 *
 * One row per job. A producer INSERTs rows (status 0, pending); a worker
 * claims the oldest pending rows with one UPDATE ... RETURNING (status 1,
 * running), runs them, and completes them in a second transaction (status
 * 2, done, with a result); a roundtrip()'s producer learns the result by
 * reading its row. Completed rows stay, as they do in taskito until its
 * result TTL purges them.
 *
 * Two systems share this driver, chosen by env->system: "sqlite-normal"
 * (journal_mode=WAL, synchronous=NORMAL: taskito's setting; a commit
 * appends to the WAL and only checkpoints fsync) and "sqlite-full" (WAL,
 * synchronous=FULL: every commit fsyncs the WAL, so enqueue() returns once
 * its jobs are durable).
 *
 * Every client has its own connection (opened without SQLite's per-
 * connection mutex: one thread uses it) and keeps its statements prepared.
 * Writers take the database's one write lock with BEGIN IMMEDIATE, so a
 * transaction never has to upgrade a read snapshot (which fails with
 * SQLITE_BUSY_SNAPSHOT, past any busy handler).
 *
 * Waiting. SQLite tells nobody about a commit, so whoever waits polls.
 * PRAGMA data_version is the probe: its value changes whenever another
 * connection has committed. It costs a read transaction, which is a look
 * at the WAL index header in the -shm file plus two fcntl() calls for the
 * read lock: ~7.6 us on the 2-vCPU development VM, where a system call is
 * ~3.5 us. A waiter polls it flat out for WAIT_SPIN_NS, then with a
 * sched_yield() between polls until WAIT_YIELD_NS, then with a
 * WAIT_SLEEP_NS sleep between polls, for as long as it takes. The spin
 * covers the other side's transaction on the other CPU in the common case
 * (an rtt hand-off with synchronous=NORMAL is a few tens of microseconds;
 * sleeping at once took the rtt's p50 from ~125 us to ~400 us, and a
 * longer spin did not lower it); the yields hand the CPU to a second
 * worker, which the harness pins to the same CPU as the first; the sleep
 * bounds an idle waiter's cost (a poll per ~100 us with the kernel's
 * default 50 us timer slack) while adding at most that to a wait that is
 * already long (an fsync). taskito polls its database with sleeps too;
 * this is the same idea, tightened. A worker also reads before it writes:
 * it takes the write lock to claim only once a read has seen a pending job.
 *
 * Lock contention. SQLite's write lock is a try-lock: a connection that
 * finds it held calls its busy handler and tries again. The default one
 * (sqlite3_busy_timeout) sleeps 1, 2, 5, 10 ... ms, far longer than a
 * NORMAL commit holds the lock, which would make contention look worse
 * than it is. A handler that merely sleeps in short steps is not enough
 * either: a writer that commits and begins again at once (a producer in a
 * loop) finds the lock free a microsecond later and takes it back, while
 * the others, asleep, find it free only by chance. Measured with such a
 * handler (yields, then 10-100 us sleeps): tput with 4 producers and 2
 * workers had a connection go 10 s without the lock in 3 runs of 4, and
 * dur with 64 producers made 4.6k (NORMAL) and 19 (FULL) enqueues/s, some
 * threads one in 3 s. So the clients of a queue share a small file,
 * <queue>.db-lockq, mapped by each: the count of writers waiting, the
 * count of write transactions open, and a futex word. A writer that ends a
 * transaction while some wait bumps the word and wakes one of them (the
 * longest asleep); a writer about to begin while some wait and a
 * transaction is open queues behind them instead of barging in. This only
 * orders the waiters and wakes them on time; the lock is still SQLite's,
 * and every wait has a timeout (LOCKQ_WAIT_NS), so a client killed in the
 * middle costs the others at most that per wait. The timeout is long
 * because a waiter that times out goes to the back of the futex's queue
 * and tries the lock (a read transaction, which also keeps the WAL from
 * being restarted): with 2 ms, 64 FULL producers grew the WAL without
 * bound and one tput run with 4 KiB payloads still starved a producer.
 * busy() gives up after BUSY_LIMIT_NS.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "peer.h"
#include "../clock.h"

#define WAIT_SPIN_NS 50000LL	   /* poll data_version flat out this long */
#define WAIT_YIELD_NS 200000LL	   /* then with a sched_yield() between polls */
#define WAIT_SLEEP_NS 50000LL	   /* then with this sleep between polls */

#define BUSY_YIELDS 2		    /* busy(): tries after a yield, before waiting */
#define BUSY_READ_SLEEP_NS 50000LL  /* a reader's sleep (nobody wakes readers) */
#define BUSY_LIMIT_NS 10000000000LL /* a lock not had in 10 s: fail */
#define LOCKQ_WAIT_NS 20000000LL    /* a writer's wait for a wake-up, at most */

enum { JOB_PENDING = 0, JOB_RUNNING = 1, JOB_DONE = 2 };

static const char schema[] =
	"CREATE TABLE jobs ("
	" id INTEGER PRIMARY KEY,"
	" status INTEGER NOT NULL DEFAULT 0,"	/* 0 pending, 1 running, 2 done */
	" payload BLOB NOT NULL,"
	" result BLOB,"
	" wants_result INTEGER NOT NULL DEFAULT 0,"
	" claimed_by INTEGER,"			/* the worker's pid */
	" created_at INTEGER NOT NULL,"		/* ms since the epoch, as taskito */
	" started_at INTEGER,"
	" completed_at INTEGER);"
	"CREATE INDEX jobs_status ON jobs(status, id);";

/* The statements a client keeps prepared. */
enum {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_VERSION,
	S_INSERT,
	S_CLAIM,
	S_COMPLETE,
	S_PEEK,
	S_RESULT,
	S_COUNT
};

static const char *const sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_VERSION] = "PRAGMA data_version",
	[S_INSERT] = "INSERT INTO jobs(status, payload, wants_result, created_at) VALUES(0, ?1, ?2, ?3)",
	/* RETURNING with a subquery in WHERE works since 3.35; the rows come
	 * back in no particular order, which does not matter here. */
	[S_CLAIM] = "UPDATE jobs SET status = 1, claimed_by = ?1, started_at = ?2"
		    " WHERE id IN (SELECT id FROM jobs WHERE status = 0 ORDER BY id LIMIT ?3)"
		    " RETURNING id, payload, wants_result",
	[S_COMPLETE] = "UPDATE jobs SET status = 2, result = ?1, completed_at = ?2 WHERE id = ?3",
	[S_PEEK] = "SELECT EXISTS(SELECT 1 FROM jobs WHERE status = 0)",
	[S_RESULT] = "SELECT status, result FROM jobs WHERE id = ?1",
};

/* The shared file <queue>.db-lockq: see the top of the file. */
struct sq_lockq {
	_Atomic uint32_t waiters; /* writers in busy() or deferring */
	_Atomic uint32_t seq;	  /* futex word: bumped at a write's end while waiters */
	_Atomic uint32_t held;	  /* write transactions open: 0 or 1 (2 for a moment
				   * as one's COMMIT lets the next BEGIN in) */
};

struct sq_client {
	sqlite3 *db;
	struct sq_lockq *lq;	/* mapped <queue>.db-lockq */
	uint32_t lq_seen;	/* lq->seq, read before the next try for the lock */
	int queued;		/* counted in lq->waiters */
	int beginning;		/* in BEGIN IMMEDIATE: busy() is a writer's */
	int writing;		/* counted in lq->held */
	sqlite3_stmt *st[S_COUNT];
	size_t payload;		/* env->payload */
	int pid;		/* claimed_by */
	int64_t busy_since;	/* busy(): when this wait for the lock began */
	int busy_expired;	/* busy() gave up (BUSY_LIMIT_NS) */
	int64_t claimed[PEER_BATCH];	/* work(): the ids just claimed */
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

/* Wall-clock milliseconds: the timestamps in a row, as taskito keeps them. */
static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL };
	syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Taking turns at the write lock                                            */
/* ------------------------------------------------------------------------ */

/*
 * Count @c among the waiters, and read the futex word: from here on, a
 * write's end wakes one waiter and ends a wait on the value read. The
 * loads and stores here and in lockq_release() are sequentially
 * consistent: a waiter either sees the writer's held = 0 or is seen by it.
 */
static void lockq_join(struct sq_client *c)
{
	if (!c->queued) {
		c->queued = 1;
		atomic_fetch_add(&c->lq->waiters, 1);
	}
	c->lq_seen = atomic_load(&c->lq->seq);
}

/* The statement that waited is over (lock had, or an error). */
static void lockq_leave(struct sq_client *c)
{
	if (c->queued) {
		c->queued = 0;
		atomic_fetch_sub(&c->lq->waiters, 1);
	}
}

/* Wait for a write's end (or LOCKQ_WAIT_NS, whichever first). */
static void lockq_wait(struct sq_client *c)
{
	if (atomic_load(&c->lq->held))
		futex_wait(&c->lq->seq, c->lq_seen, LOCKQ_WAIT_NS);
	c->lq_seen = atomic_load(&c->lq->seq);
}

/* Before BEGIN IMMEDIATE: while others wait for a writer, queue behind
 * them until its end rather than barge in. */
static void lockq_enter(struct sq_client *c)
{
	if (atomic_load(&c->lq->waiters) == 0)
		return;
	lockq_join(c);
	lockq_wait(c);
}

/* A write transaction ended (COMMIT or ROLLBACK): wake the next waiter. */
static void lockq_release(struct sq_client *c)
{
	if (!c->writing)
		return;
	c->writing = 0;
	atomic_fetch_sub(&c->lq->held, 1);
	if (atomic_load(&c->lq->waiters) != 0) {
		atomic_fetch_add(&c->lq->seq, 1);
		futex_wake(&c->lq->seq, 1);
	}
}

/* Roll back the transaction left open by a failure, if any. */
static void rollback(struct sq_client *c)
{
	if (!sqlite3_get_autocommit(c->db)) {
		sqlite3_step(c->st[S_ROLLBACK]);
		sqlite3_reset(c->st[S_ROLLBACK]);
		lockq_release(c);
	}
	lockq_leave(c);
}

/*
 * Report a failure of @what on @c's connection, with SQLite's message, and
 * roll back. Returns -1.
 */
static int fail(struct sq_client *c, char *err, const char *what)
{
	snprintf(err, PEER_ERRLEN, "sqlite: %s: %s%s", what, sqlite3_errmsg(c->db),
		 c->busy_expired ? " (lock not had in 10 s)" : "");
	c->busy_expired = 0;
	rollback(c);
	return -1;
}

/* Step a statement that returns no rows to its end and reset it. */
static int exec(struct sq_client *c, int s)
{
	int rc = sqlite3_step(c->st[s]);
	sqlite3_reset(c->st[s]);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Begin a write transaction: take a turn at the write lock. */
static int begin(struct sq_client *c)
{
	int rc;

	lockq_enter(c);
	c->beginning = 1;
	rc = exec(c, S_BEGIN);
	c->beginning = 0;
	if (rc == 0) {
		c->writing = 1;
		atomic_fetch_add(&c->lq->held, 1);
	}
	lockq_leave(c);
	return rc;
}

static int commit(struct sq_client *c)
{
	int rc = exec(c, S_COMMIT);

	lockq_release(c);
	return rc;
}

/*
 * The busy handler: called when the lock wanted is held by another
 * connection, @count being how often it was called for this wait already.
 * Returns 1 to try again, 0 to give up (the call fails with SQLITE_BUSY).
 */
static int busy(void *arg, int count)
{
	struct sq_client *c = arg;
	int64_t now = bench_now_ns();

	if (count == 0) {
		c->busy_since = now;
		c->busy_expired = 0;
		if (c->beginning)
			lockq_join(c);
	} else if (now - c->busy_since > BUSY_LIMIT_NS) {
		c->busy_expired = 1;
		return 0;
	}
	if (count < BUSY_YIELDS) {
		/* Try again after a yield (the holder may be on this CPU); the
		 * first of these also covers a COMMIT that came before
		 * lockq_join() and so woke nobody. */
		sched_yield();
		if (c->beginning)
			c->lq_seen = atomic_load(&c->lq->seq);
	} else if (c->beginning) {
		/* Until the holder's COMMIT wakes us: lq_seen was read before
		 * the try that failed. */
		lockq_wait(c);
	} else {
		/* A reader: WAL recovery, or a read mark being moved. Rare and
		 * short, and nobody wakes it. */
		bench_sleep_ns(BUSY_READ_SLEEP_NS);
	}
	return 1;
}

/* The database's file name, and its -wal and -shm companions. */
static int db_path(const struct peer_env *env, const char *suffix, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s.db%s", env->dir, env->queue, suffix);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static void unlink_db(const struct peer_env *env)
{
	static const char *const suffixes[] = { "", "-wal", "-shm", "-journal", "-lockq" };
	char path[4096];

	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (db_path(env, suffixes[i], path, sizeof(path)) == 0)
			unlink(path);
}

/* ------------------------------------------------------------------------ */
/* Waiting for another connection's commit                                   */
/* ------------------------------------------------------------------------ */

static int data_version(struct sq_client *c, int64_t *v, char *err)
{
	sqlite3_stmt *st = c->st[S_VERSION];
	int rc = sqlite3_step(st);

	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return fail(c, err, "PRAGMA data_version");
	}
	*v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

/*
 * Wait, without a time limit, until PRAGMA data_version differs from *@dv
 * (another connection has committed since *@dv was read), and store the new
 * value in *@dv. See the top of the file for the spin, yield, sleep steps.
 */
static int wait_commit(struct sq_client *c, int64_t *dv, char *err)
{
	int64_t t0 = bench_now_ns();

	for (;;) {
		int64_t v = 0;
		if (data_version(c, &v, err) < 0)
			return -1;
		if (v != *dv) {
			*dv = v;
			return 0;
		}
		int64_t waited = bench_now_ns() - t0;
		if (waited < WAIT_SPIN_NS) {
			for (int i = 0; i < 32; i++)
				bench_cpu_relax();
		} else if (waited < WAIT_YIELD_NS) {
			sched_yield();
		} else {
			bench_sleep_ns(WAIT_SLEEP_NS);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* The driver                                                                */
/* ------------------------------------------------------------------------ */

/* env->system's synchronous setting, or NULL for a system not ours. */
static const char *sync_pragma(const struct peer_env *env)
{
	if (env->system && strcmp(env->system, "sqlite-normal") == 0)
		return "PRAGMA synchronous=NORMAL";
	if (env->system && strcmp(env->system, "sqlite-full") == 0)
		return "PRAGMA synchronous=FULL";
	return NULL;
}

/* A fresh database with the job table, in WAL mode (a property of the file,
 * so set once here). */
static int sq_prepare(const struct peer_env *env, char *err)
{
	char path[4096];
	sqlite3 *db = NULL;
	char *msg = NULL;
	int rc;

	if (!sync_pragma(env)) {
		snprintf(err, PEER_ERRLEN, "sqlite: unknown system %s (sqlite-normal or sqlite-full)",
			 env->system ? env->system : "(null)");
		return -1;
	}
	if (db_path(env, "-lockq", path, sizeof(path)) < 0) { /* the longest name */
		snprintf(err, PEER_ERRLEN, "sqlite: database path too long");
		return -1;
	}
	unlink_db(env); /* a leftover of an earlier run of the same name */

	/* The shared turn-taking file, zeroed. */
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, sizeof(struct sq_lockq)) < 0) {
		snprintf(err, PEER_ERRLEN, "sqlite: create %.160s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink_db(env);
		return -1;
	}
	close(fd);

	db_path(env, "", path, sizeof(path));
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, PEER_ERRLEN, "sqlite: open %.160s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		goto out;
	}
	rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, schema, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		snprintf(err, PEER_ERRLEN, "sqlite: create %.160s: %s", path, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
out:
	sqlite3_close(db); /* nothing may stay open across the harness's fork() */
	if (rc != SQLITE_OK)
		unlink_db(env);
	return rc == SQLITE_OK ? 0 : -1;
}

static void sq_close(void *client)
{
	struct sq_client *c = client;

	if (!c)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close(c->db);
	if (c->lq)
		munmap(c->lq, sizeof(*c->lq));
	free(c);
}

static void *sq_open(const struct peer_env *env, enum peer_role role, int id, char *err)
{
	const char *sync = sync_pragma(env);
	struct sq_client *c;
	char path[4096];
	int rc;

	if (!sync) {
		snprintf(err, PEER_ERRLEN, "sqlite: unknown system %s", env->system ? env->system : "(null)");
		return NULL;
	}
	if (db_path(env, "-lockq", path, sizeof(path)) < 0) {
		snprintf(err, PEER_ERRLEN, "sqlite: database path too long");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, PEER_ERRLEN, "sqlite: out of memory");
		return NULL;
	}
	c->payload = env->payload;
	c->pid = (int)getpid();

	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		void *p = mmap(NULL, sizeof(*c->lq), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		c->lq = p == MAP_FAILED ? NULL : p;
		close(fd);
	}
	if (!c->lq) {
		snprintf(err, PEER_ERRLEN, "sqlite: map %.160s: %s", path, strerror(errno));
		sq_close(c);
		return NULL;
	}
	db_path(env, "", path, sizeof(path));

	/* No CREATE: prepare() made the file, and a missing one is an error. */
	rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, PEER_ERRLEN, "sqlite: open %.160s: %s", path,
			 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		sq_close(c);
		return NULL;
	}
	sqlite3_busy_handler(c->db, busy, c);
	if (sqlite3_exec(c->db, sync, NULL, NULL, NULL) != SQLITE_OK) {
		fail(c, err, sync);
		sq_close(c);
		return NULL;
	}
	for (int i = 0; i < S_COUNT; i++) {
		if (sqlite3_prepare_v3(c->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL) != SQLITE_OK) {
			fail(c, err, sql[i]);
			sq_close(c);
			return NULL;
		}
	}
	return c;
}

/* Insert one job (inside the caller's transaction, or as its own). */
static int insert(struct sq_client *c, const void *payload, int wants_result, int64_t now_ms)
{
	sqlite3_stmt *st = c->st[S_INSERT];

	sqlite3_bind_blob(st, 1, payload, (int)c->payload, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, wants_result);
	sqlite3_bind_int64(st, 3, now_ms);
	return exec(c, S_INSERT);
}

/* @n jobs in one transaction: returns after the COMMIT (with FULL, after
 * the WAL's fsync). */
static int sq_enqueue(void *client, const void *payload, int n, char *err)
{
	struct sq_client *c = client;
	int64_t now = wall_ms();

	if (begin(c) < 0)
		return fail(c, err, "BEGIN IMMEDIATE");
	for (int i = 0; i < n; i++)
		if (insert(c, payload, 0, now) < 0)
			return fail(c, err, "INSERT");
	if (commit(c) < 0)
		return fail(c, err, "COMMIT");
	return 0;
}

/*
 * One job that wants its result: insert it (its own transaction), then wait
 * for commits and read the row after each until it is done.
 */
static int sq_roundtrip(void *client, const void *payload, char *err)
{
	struct sq_client *c = client;
	sqlite3_stmt *st = c->st[S_RESULT];
	int64_t dv, id;

	/* Read before the insert: any commit of the worker's after it moves
	 * data_version (our own commits do not). */
	if (data_version(c, &dv, err) < 0)
		return -1;
	if (begin(c) < 0)
		return fail(c, err, "BEGIN IMMEDIATE");
	if (insert(c, payload, 1, wall_ms()) < 0)
		return fail(c, err, "INSERT");
	id = sqlite3_last_insert_rowid(c->db);
	if (commit(c) < 0)
		return fail(c, err, "COMMIT");

	for (;;) {
		if (wait_commit(c, &dv, err) < 0)
			return -1;
		sqlite3_bind_int64(st, 1, id);
		int rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(st);
			if (rc == SQLITE_DONE) {
				snprintf(err, PEER_ERRLEN, "sqlite: job %lld vanished", (long long)id);
				return -1;
			}
			return fail(c, err, "SELECT result");
		}
		if (sqlite3_column_int(st, 0) == JOB_DONE) {
			/* The worker's result is the job's id (see sq_work). */
			int64_t r = 0;
			int len = sqlite3_column_bytes(st, 1);
			const void *blob = sqlite3_column_blob(st, 1);
			if (len == (int)sizeof(r) && blob)
				memcpy(&r, blob, sizeof(r));
			sqlite3_reset(st);
			if (len != (int)sizeof(r) || r != id) {
				snprintf(err, PEER_ERRLEN, "sqlite: job %lld done with a wrong result (%d bytes)",
					 (long long)id, len);
				return -1;
			}
			return 0;
		}
		sqlite3_reset(st);
	}
}

/*
 * Claim up to @max pending jobs in one transaction (checking each payload
 * while its row is at hand). Returns how many, 0 for none, -1 on error.
 */
static int claim(struct sq_client *c, int max, char *err)
{
	sqlite3_stmt *st = c->st[S_CLAIM];
	const char *bad = NULL;
	int n = 0, rc;

	if (begin(c) < 0)
		return fail(c, err, "BEGIN IMMEDIATE");
	sqlite3_bind_int(st, 1, c->pid);
	sqlite3_bind_int64(st, 2, wall_ms());
	sqlite3_bind_int(st, 3, max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* Running the job: a no-op that checks its payload. */
		const char *p = sqlite3_column_blob(st, 1);
		size_t len = (size_t)sqlite3_column_bytes(st, 1);
		if (n >= max)
			bad = "more rows than asked for";
		else if (len != c->payload || !p)
			bad = "payload of a wrong size";
		else if (p[len - 1] != peer_payload_byte(len - 1))
			bad = "payload with a wrong last byte";
		if (bad) {
			snprintf(err, PEER_ERRLEN, "sqlite: job %lld: %s (%zu bytes)",
				 (long long)sqlite3_column_int64(st, 0), bad, len);
			sqlite3_reset(st);
			rollback(c); /* the jobs stay pending */
			return -1;
		}
		c->claimed[n++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return fail(c, err, "claim UPDATE");
	if (commit(c) < 0)
		return fail(c, err, "COMMIT claim");
	return n;
}

/* Is a job pending? 1 yes, 0 no, -1 error. */
static int pending(struct sq_client *c, char *err)
{
	sqlite3_stmt *st = c->st[S_PEEK];
	int rc = sqlite3_step(st);
	int any = rc == SQLITE_ROW && sqlite3_column_int(st, 0);

	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return fail(c, err, "SELECT pending");
	return any;
}

static int sq_work(void *client, int max, char *err)
{
	struct sq_client *c = client;
	sqlite3_stmt *st = c->st[S_COMPLETE];
	int64_t dv, now;
	int n;

	if (max > PEER_BATCH)
		max = PEER_BATCH;
	if (max < 1)
		max = 1;

	/*
	 * Look before taking the write lock: a read (the peek) costs less than
	 * an empty claim, and does not hold up a producer's BEGIN IMMEDIATE.
	 * data_version is read before the peek, so a commit after the peek's
	 * snapshot moves it and ends the wait. Most commits that wake a worker
	 * with a sibling are that sibling's claims and completions: the peek
	 * sends it back to waiting without the lock. A claim can still come
	 * back empty (the sibling took the jobs first): wait again.
	 */
	if (data_version(c, &dv, err) < 0)
		return -1;
	for (;;) {
		int any = pending(c, err);
		if (any < 0)
			return -1;
		if (any) {
			n = claim(c, max, err);
			if (n != 0)
				break;
		}
		if (wait_commit(c, &dv, err) < 0)
			return -1;
	}
	if (n < 0)
		return -1;

	/* Complete them: status done, with a result (the job's id, 8 bytes,
	 * about what taskito stores for a task returning None). */
	now = wall_ms();
	if (begin(c) < 0)
		return fail(c, err, "BEGIN IMMEDIATE");
	for (int i = 0; i < n; i++) {
		sqlite3_bind_blob(st, 1, &c->claimed[i], sizeof(c->claimed[i]), SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, now);
		sqlite3_bind_int64(st, 3, c->claimed[i]);
		if (exec(c, S_COMPLETE) < 0)
			return fail(c, err, "complete UPDATE");
	}
	if (commit(c) < 0)
		return fail(c, err, "COMMIT complete");
	return n;
}

static void sq_finish(const struct peer_env *env)
{
	unlink_db(env);
}

const struct peer_driver peer_sqlite = {
	.name = "sqlite",
	.prepare = sq_prepare,
	.open = sq_open,
	.close = sq_close,
	.enqueue = sq_enqueue,
	.roundtrip = sq_roundtrip,
	.work = sq_work,
	.finish = sq_finish,
	.method = "SQLite job table (WAL; synchronous NORMAL or FULL by system), one connection per client;"
		  " enqueue: n INSERTs in one BEGIN IMMEDIATE transaction; work: claim up to max pending rows"
		  " with UPDATE ... RETURNING, then mark them done with a result in a second transaction;"
		  " roundtrip: INSERT, then read the row until done; waiters poll PRAGMA data_version"
		  " (spin 50 us, yield to 200 us, then 50 us sleeps); busy writers wait in turn,"
		  " woken by the holder's COMMIT through a shared futex",
};
