/*
 * drv_redis.c - the redis-server peer: a list as the queue, through hiredis.
 *
 * One driver serves both redis systems; they differ only in the server's
 * configuration (and so in env->host / env->port):
 *   redis          --save '' --appendonly no: memory only;
 *   redis-always   --appendonly yes --appendfsync always, its dir on a real
 *                  disk: redis writes and fsyncs the AOF before it sends the
 *                  replies of the commands it just ran, so a reply to LPUSH
 *                  means the job is durable.
 *
 * The queue is the list env->queue, used the way redis documents it:
 * producers LPUSH, workers pop from the other end (BRPOP / RPOP), so the
 * list is FIFO. Every client is one hiredis connection, opened once and
 * reused; a blocking context, since each client is driven by one thread
 * that waits for each answer anyway.
 *
 * A job's value is a header line and then the payload:
 *
 *	"<queue>:r<id>\n" payload     asks for a result (roundtrip())
 *	"\n" payload                  asks for none (enqueue())
 *
 * The header names the list on which producer <id> waits for results (its
 * own, so that no producer takes another's); the payload (letters only, see
 * peer.h) follows the first '\n'. A worker that pops a job asking for a
 * result LPUSHes RD_RESULT to that list; for any other job the pop is the
 * completion (redis has no acknowledgement: a job popped by a worker that
 * then dies is lost, which is how the plain list pattern behaves).
 *
 * The choices below were measured on the 2-vCPU development VM (loaded by
 * other benchmarks at the time, so only differences of 2x and more are
 * trusted), with 64 and 4096-byte payloads and batches of 64; see
 * rd_enqueue(), rd_work() and rd_open() for what was compared.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis.h>

#include "peer.h"

#define RD_RESULT "done"     /* what a worker sends back to roundtrip() */
#define RD_HDRMAX 96         /* a header line (with its '\n') is at most this */
#define RD_CONNECT_TIMEOUT 5 /* seconds to wait for the server to accept */
#define RD_ARGC_ROOM 16      /* room before the LPUSH template for "*<argc>\r\n" */

struct rd_client {
	redisContext *c;
	size_t payload;            /* env->payload */
	char key[64];              /* the queue: env->queue */
	char rkey[RD_HDRMAX - 1];  /* producer: its result list, "<queue>:r<id>" */
	char *rjob;                /* producer: "<rkey>\n" and room for a payload */
	size_t rhdr;               /* bytes of rjob's header */
	/*
	 * Producer: a variadic LPUSH of PEER_BATCH jobs in RESP, formatted once
	 * (see rd_enqueue()): RD_ARGC_ROOM spare bytes for "*<n + 2>\r\n", then
	 * "$5\r\nLPUSH\r\n$<len>\r\n<key>\r\n" (@fixed bytes), then PEER_BATCH
	 * values "$<len>\r\n\n<payload>\r\n" of @slot bytes each.
	 */
	char *cmd;
	size_t fixed, slot, voff;  /* voff: where a value's payload starts in its slot */
};

/* ---- errors and replies ------------------------------------------------ */

/*
 * Write "redis <what>: <why>" to @err and return -1. Why: the context's
 * error (I/O, protocol), else the server's error reply, else the reply's
 * unexpected type.
 */
static int rd_fail(char *err, const char *what, const redisContext *c, const redisReply *r)
{
	if (c && c->err)
		snprintf(err, PEER_ERRLEN, "redis %s: %s", what, c->errstr[0] ? c->errstr : "connection error");
	else if (r && r->type == REDIS_REPLY_ERROR)
		snprintf(err, PEER_ERRLEN, "redis %s: %.*s", what, (int)r->len, r->str);
	else if (r)
		snprintf(err, PEER_ERRLEN, "redis %s: unexpected reply (type %d)", what, r->type);
	else
		snprintf(err, PEER_ERRLEN, "redis %s: no reply", what);
	return -1;
}

/* The next reply of a pipeline, or NULL with c->err set. */
static redisReply *rd_get(redisContext *c)
{
	void *r = NULL;
	if (redisGetReply(c, &r) != REDIS_OK)
		return NULL;
	return r;
}

/*
 * Read @n replies to appended commands, each of which must be an integer
 * (LPUSH's new length). All are read even after a bad one, so that the
 * connection stays in step for the next call; the first error is reported.
 */
static int rd_get_ints(redisContext *c, int n, const char *what, char *err)
{
	int ret = 0;
	for (int i = 0; i < n; i++) {
		redisReply *r = rd_get(c);
		if (!r)
			return rd_fail(err, what, c, NULL);
		if (r->type != REDIS_REPLY_INTEGER && ret == 0)
			ret = rd_fail(err, what, c, r);
		freeReplyObject(r);
	}
	return ret;
}

static redisContext *rd_connect(const struct peer_env *env, char *err)
{
	struct timeval tv = { .tv_sec = RD_CONNECT_TIMEOUT };
	redisContext *c = redisConnectWithTimeout(env->host, env->port, tv);
	if (!c) {
		snprintf(err, PEER_ERRLEN, "redis connect %s:%d: out of memory", env->host, env->port);
		return NULL;
	}
	if (c->err) {
		snprintf(err, PEER_ERRLEN, "redis connect %s:%d: %s", env->host, env->port, c->errstr);
		redisFree(c);
		return NULL;
	}
	/* The timeout was for connecting only: a worker's BRPOP waits as long
	 * as it takes. (hiredis sets TCP_NODELAY itself.) */
	tv.tv_sec = 0;
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(err, PEER_ERRLEN, "redis connect %s:%d: cannot clear the timeout: %s", env->host,
			 env->port, c->errstr);
		redisFree(c);
		return NULL;
	}
	return c;
}

/* ---- prepare / finish -------------------------------------------------- */

/*
 * Remove the queue and every result list of the scenario ("<queue>:*").
 * UNLINK frees a long list (dur_N's leftovers) off redis's main thread.
 * Queue names are [A-Za-z0-9_-], so the SCAN pattern matches only ours.
 */
static int rd_clear(redisContext *c, const char *queue, char *err)
{
	char cursor[32] = "0";
	redisReply *r = redisCommand(c, "UNLINK %s", queue);

	if (!r || r->type != REDIS_REPLY_INTEGER) {
		rd_fail(err, "UNLINK", c, r);
		goto fail;
	}
	freeReplyObject(r);
	do {
		r = redisCommand(c, "SCAN %s MATCH %s:* COUNT 1000", cursor, queue);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
			rd_fail(err, "SCAN", c, r);
			goto fail;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			const redisReply *k = r->element[1]->element[i];
			redisReply *d = redisCommand(c, "UNLINK %b", k->str, (size_t)k->len);
			if (!d || d->type != REDIS_REPLY_INTEGER) {
				rd_fail(err, "UNLINK", c, d);
				freeReplyObject(d);
				goto fail;
			}
			freeReplyObject(d);
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	return 0;
fail:
	freeReplyObject(r);
	return -1;
}

static int rd_prepare(const struct peer_env *env, char *err)
{
	redisContext *c = rd_connect(env, err);
	int ret;
	if (!c)
		return -1;
	ret = rd_clear(c, env->queue, err);
	redisFree(c);
	return ret;
}

/* dur_N leaves every job it sent in the list (it has no worker): give the
 * memory (and, for redis-always, the AOF's next rewrite) back. */
static void rd_finish(const struct peer_env *env)
{
	char err[PEER_ERRLEN];
	redisContext *c = rd_connect(env, err);
	if (!c)
		return;
	rd_clear(c, env->queue, err);
	redisFree(c);
}

/* ---- clients ----------------------------------------------------------- */

static void rd_close(void *client)
{
	struct rd_client *cl = client;
	if (!cl)
		return;
	if (cl->c)
		redisFree(cl->c);
	free(cl->rjob);
	free(cl->cmd);
	free(cl);
}

/* Format the variadic LPUSH template (struct rd_client's @cmd). */
static int rd_format_lpush(struct rd_client *cl)
{
	char vh[32];
	int f, v;

	v = snprintf(vh, sizeof(vh), "$%zu\r\n", 1 + cl->payload);
	f = snprintf(NULL, 0, "$5\r\nLPUSH\r\n$%zu\r\n%s\r\n", strlen(cl->key), cl->key);
	cl->fixed = (size_t)f;
	cl->voff = (size_t)v + 1;
	cl->slot = cl->voff + cl->payload + 2;
	cl->cmd = malloc(RD_ARGC_ROOM + cl->fixed + 1 + PEER_BATCH * cl->slot);
	if (!cl->cmd)
		return -1;
	snprintf(cl->cmd + RD_ARGC_ROOM, cl->fixed + 1, "$5\r\nLPUSH\r\n$%zu\r\n%s\r\n", strlen(cl->key), cl->key);
	for (int i = 0; i < PEER_BATCH; i++) {
		char *s = cl->cmd + RD_ARGC_ROOM + cl->fixed + i * cl->slot;
		memcpy(s, vh, (size_t)v);
		s[v] = '\n'; /* the empty header: no result wanted */
		memset(s + cl->voff, 0, cl->payload);
		memcpy(s + cl->voff + cl->payload, "\r\n", 2);
	}
	return 0;
}

static void *rd_open(const struct peer_env *env, enum peer_role role, int id, char *err)
{
	struct rd_client *cl = calloc(1, sizeof(*cl));
	int len;

	if (!cl) {
		snprintf(err, PEER_ERRLEN, "redis open: out of memory");
		return NULL;
	}
	cl->payload = env->payload;
	len = snprintf(cl->key, sizeof(cl->key), "%s", env->queue);
	if (len <= 0 || len >= (int)sizeof(cl->key)) {
		snprintf(err, PEER_ERRLEN, "redis open: bad queue name");
		goto fail;
	}
	if (role == PEER_PRODUCER) {
		len = snprintf(cl->rkey, sizeof(cl->rkey), "%s:r%d", env->queue, id);
		if (len < 0 || len >= (int)sizeof(cl->rkey)) {
			snprintf(err, PEER_ERRLEN, "redis open: queue name too long");
			goto fail;
		}
		cl->rhdr = (size_t)len + 1;
		cl->rjob = malloc(cl->rhdr + env->payload);
		if (!cl->rjob || rd_format_lpush(cl) < 0) {
			snprintf(err, PEER_ERRLEN, "redis open: out of memory");
			goto fail;
		}
		memcpy(cl->rjob, cl->rkey, (size_t)len);
		cl->rjob[len] = '\n';
	} else {
		/*
		 * A worker process is this driver's alone, so its allocator may
		 * be tuned. A reply of 64 4 KB jobs is 64 small malloc()s that
		 * free() gives back at once: glibc then trims the heap (> 128 KB
		 * free at its top) and the next reply faults every page in again.
		 * With BLMPOP that cost 19-21 us of worker CPU per 4 KB job (2
		 * with the heap kept) and cut tput_1p1w at 4 KB to 25-35k jobs/s
		 * from 110-150k; BRPOP + RPOP escaped it only by the order of its
		 * frees. A client artifact, not redis's cost: keep freed memory.
		 */
		mallopt(M_MMAP_THRESHOLD, 16 << 20);
		mallopt(M_TRIM_THRESHOLD, 256 << 20);
	}
	cl->c = rd_connect(env, err);
	if (!cl->c)
		goto fail;
	/* Keep the reader's buffer between replies rather than free it each
	 * time it holds more than 16 KB unused (a 256 KB batch always does). */
	cl->c->reader->maxbuf = 0;
	return cl;
fail:
	rd_close(cl);
	return NULL;
}

/* ---- producer ---------------------------------------------------------- */

/*
 * @n copies of the job in one variadic LPUSH: one command, one reply, one
 * AOF write (for redis-always, one fsync) for the batch.
 *
 * Variadic beats n pipelined LPUSHes: at 64 bytes, 32 us against 60 us for
 * a batch of 64 (median, LPUSH then drain, one client), with less CPU on
 * both sides (the server parses and dispatches one command, not 64).
 *
 * The command is formatted once per client and handed to hiredis already in
 * RESP (redisAppendFormattedCommand()); only the argument count and, when
 * the payload changed, the values are rewritten. redisCommandArgv() would
 * format 64 x 4 KB into a new buffer and copy that into a new output
 * buffer, ~0.8 MB of fresh memory per call that glibc hands back and faults
 * in again: at 4 KB that took 1.2-1.4 ms per batch of 64 (21-37 us of
 * client CPU per job) against 150-240 us (2-5 us) preformatted, and made
 * the variadic form slower than pipelined single LPUSHes (~400 us).
 */
static int rd_enqueue(void *client, const void *payload, int n, char *err)
{
	struct rd_client *cl = client;
	char *body = cl->cmd + RD_ARGC_ROOM, *start, argc[RD_ARGC_ROOM];
	char *v0 = body + cl->fixed + cl->voff;
	int k;

	if (n < 1 || n > PEER_BATCH) {
		snprintf(err, PEER_ERRLEN, "redis enqueue: batch of %d", n);
		return -1;
	}
	/* Every slot holds the same payload: compare with the first. */
	if (memcmp(v0, payload, cl->payload) != 0)
		for (int i = 0; i < PEER_BATCH; i++)
			memcpy(v0 + i * cl->slot, payload, cl->payload);
	k = snprintf(argc, sizeof(argc), "*%d\r\n", n + 2);
	start = body - k;
	memcpy(start, argc, (size_t)k);
	if (redisAppendFormattedCommand(cl->c, start, (size_t)k + cl->fixed + (size_t)n * cl->slot) != REDIS_OK)
		return rd_fail(err, "LPUSH", cl->c, NULL);
	return rd_get_ints(cl->c, 1, "LPUSH", err);
}

/*
 * The job (naming this producer's result list) and the wait for its result
 * in one write: LPUSH, then BRPOP on the result list. Redis runs the BRPOP
 * after the LPUSH; it blocks until a worker's LPUSH of the result.
 */
static int rd_roundtrip(void *client, const void *payload, char *err)
{
	struct rd_client *cl = client;
	const redisReply *v;
	redisReply *r;
	int ret;

	memcpy(cl->rjob + cl->rhdr, payload, cl->payload);
	if (redisAppendCommand(cl->c, "LPUSH %s %b", cl->key, cl->rjob, cl->rhdr + cl->payload) != REDIS_OK ||
	    redisAppendCommand(cl->c, "BRPOP %s 0", cl->rkey) != REDIS_OK)
		return rd_fail(err, "LPUSH", cl->c, NULL);
	ret = rd_get_ints(cl->c, 1, "LPUSH", err);
	r = rd_get(cl->c);
	if (!r)
		return rd_fail(err, "BRPOP", cl->c, NULL);
	if (ret == 0 && (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[1]->type != REDIS_REPLY_STRING))
		ret = rd_fail(err, "BRPOP", cl->c, r);
	if (ret == 0) {
		v = r->element[1];
		if (v->len != strlen(RD_RESULT) || memcmp(v->str, RD_RESULT, v->len) != 0) {
			snprintf(err, PEER_ERRLEN, "redis roundtrip: a wrong result (%zu bytes)", (size_t)v->len);
			ret = -1;
		}
	}
	freeReplyObject(r);
	return ret;
}

/* ---- worker ------------------------------------------------------------ */

/*
 * Run one popped job: check its header and payload, and if it asks for a
 * result, append the LPUSH of that result (sent with the batch's others).
 * Returns 1 if a result was appended, 0 if not, -1 on a bad job.
 */
static int rd_run(struct rd_client *cl, const redisReply *v, char *err)
{
	const char *nl;
	size_t hdr, len;

	if (v->type != REDIS_REPLY_STRING)
		return rd_fail(err, "pop", NULL, v);
	nl = memchr(v->str, '\n', v->len < RD_HDRMAX ? v->len : RD_HDRMAX);
	if (!nl) {
		snprintf(err, PEER_ERRLEN, "redis work: a job of %zu bytes without a header", (size_t)v->len);
		return -1;
	}
	hdr = (size_t)(nl - v->str);
	len = v->len - hdr - 1;
	if (len != cl->payload) {
		snprintf(err, PEER_ERRLEN, "redis work: a payload of %zu bytes, expected %zu", len, cl->payload);
		return -1;
	}
	if (len && v->str[v->len - 1] != peer_payload_byte(len - 1)) {
		snprintf(err, PEER_ERRLEN, "redis work: a payload whose last byte is wrong");
		return -1;
	}
	if (hdr == 0)
		return 0;
	if (redisAppendCommand(cl->c, "LPUSH %b %s", v->str, hdr, RD_RESULT) != REDIS_OK)
		return rd_fail(err, "LPUSH", cl->c, NULL);
	return 1;
}

/*
 * Block for one job (BRPOP key 0) and take up to @max - 1 more that are
 * ready (RPOP key count, redis >= 6.2), both sent in one write: redis runs
 * the RPOP as soon as the BRPOP is served, so it is one round trip. Then
 * run the jobs and send the results that were asked for, in one write.
 *
 * Measured against: BRPOP, then RPOP once BRPOP answered (two round trips:
 * 55 us against 31 us to drain a batch of 64 at 64 bytes), and BLMPOP 0 1
 * key RIGHT COUNT max (7.0; one round trip, one command): no slower
 * sequentially (31 us), and within noise in tput (tput_4p2w at 64 bytes:
 * median 465k jobs/s against 513k here, server CPU 0.92 against 0.84 us
 * per job). The pipelined pair is kept for that small edge.
 */
static int rd_work(void *client, int max, char *err)
{
	struct rd_client *cl = client;
	redisReply *r = NULL, *more = NULL;
	int jobs = 0, results = 0, ret = 0, asked;

	if (redisAppendCommand(cl->c, "BRPOP %s 0", cl->key) != REDIS_OK ||
	    (max > 1 && redisAppendCommand(cl->c, "RPOP %s %d", cl->key, max - 1) != REDIS_OK))
		return rd_fail(err, "BRPOP", cl->c, NULL);

	r = rd_get(cl->c);
	if (!r)
		return rd_fail(err, "BRPOP", cl->c, NULL);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		ret = rd_fail(err, "BRPOP", cl->c, r);
	else if ((asked = rd_run(cl, r->element[1], err)) < 0)
		ret = -1;
	else
		results += asked, jobs++;

	/* RPOP's answer: the jobs, or nil when the list was left empty. Read
	 * even after an error, to keep the connection in step. */
	if (max > 1) {
		more = rd_get(cl->c);
		if (!more) {
			ret = rd_fail(err, "RPOP", cl->c, NULL);
			goto out;
		}
		if (more->type == REDIS_REPLY_ARRAY) {
			for (size_t i = 0; i < more->elements && ret == 0; i++) {
				if ((asked = rd_run(cl, more->element[i], err)) < 0)
					ret = -1;
				else
					results += asked, jobs++;
			}
		} else if (more->type != REDIS_REPLY_NIL && ret == 0) {
			ret = rd_fail(err, "RPOP", cl->c, more);
		}
	}

	/* The results' LPUSHes were appended by rd_run(): send, and read. */
	if (results) {
		char ignored[PEER_ERRLEN];
		int rret = rd_get_ints(cl->c, results, "LPUSH (result)", ret ? ignored : err);
		if (ret == 0)
			ret = rret;
	}
out:
	freeReplyObject(r);
	freeReplyObject(more);
	return ret ? ret : jobs;
}

const struct peer_driver peer_redis = {
	.name = "redis",
	.prepare = rd_prepare,
	.open = rd_open,
	.close = rd_close,
	.enqueue = rd_enqueue,
	.roundtrip = rd_roundtrip,
	.work = rd_work,
	.finish = rd_finish,
	.method = "LPUSH (variadic per batch, preformatted RESP) / BRPOP pipelined with RPOP count; hiredis, "
		  "one connection per client; result via a per-producer list",
};
