/*
 * drv_beanstalkd.c - beanstalkd (1.12) through its text protocol, over one
 * TCP connection per client, with no client library.
 *
 * The same driver measures "beanstalkd" (a server without a binlog) and
 * "beanstalkd-f0" (one run with -b DIR -f0, which fsyncs the binlog on every
 * write before it replies); only env->host and env->port tell them apart.
 *
 * Tubes. Jobs go to the tube env->queue: producers `use` it, workers
 * `watch` it and `ignore default`. Producer @id watches (only) its reply
 * tube "<queue>.r<id>". A job's body is a short header and the payload:
 *
 *   "-" payload          enqueue(): no reply wanted
 *   "r<id>:" payload     roundtrip(): put the result in "<queue>.r<id>"
 *
 * The result is a job whose body is the request's job id in decimal, so the
 * producer knows the reply it reserved is the one to its own request.
 *
 * Pipelining, as a competent user of the protocol would do it:
 *   - enqueue(n) sends its n `put`s in one sendmsg() and then reads the n
 *     `INSERTED` replies;
 *   - roundtrip() sends its `put`, the `delete` of the previous round
 *     trip's reply and the `reserve` of this one's in one sendmsg();
 *   - work() sends the completions of the jobs it took last time (the
 *     result `put`, with a `use` when the reply tube changes, and the
 *     `delete`) together with its blocking `reserve`, and while it takes
 *     more jobs, sends the completions so far with each further group of
 *     `reserve-with-timeout 0`s. The completions of the last jobs taken
 *     ride with the next call's `reserve`; the harness calls work() again
 *     at once, and a worker that is killed first releases them when its
 *     connection closes (they are harmless in a finished scenario's tube).
 *
 * Pipelining saves the clients' round trips and system calls, not the
 * server's: beanstalkd reads at most 224 bytes of commands at a time and
 * answers one command per turn of its event loop (epoll_wait for one event,
 * then one write() per reply; seen with strace on 1.12).
 *
 * Replies are read through a buffer (large read()s, lines and bodies parsed
 * from it). Every reply other than the expected one (BURIED, JOB_TOO_BIG,
 * EXPECTED_CRLF, DRAINING, OUT_OF_MEMORY, DEADLINE_SOON, NOT_FOUND, ...) is
 * an error that quotes the server's words.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "peer.h"

#define BS_PRI 0        /* every job the same priority */
#define BS_TTR 60       /* seconds a reserved job stays ours: ample, since a
			 * worker completes its jobs on its next call */
#define BS_RBUF (256 * 1024) /* reader: holds any one reply (jobs <= 64 KiB) */
#define BS_LINE 224     /* beanstalkd's own line limit (LINE_BUF_SIZE) */
#define BS_HDR 16       /* room for a job header, "r<id>:" */
#define BS_FIRST_GROUP 4 /* work(): first group of non-blocking reserves */

/* Replies a queued command will produce, in the order they will come. */
enum bs_expect { BS_EXP_USING, BS_EXP_WATCHING, BS_EXP_INSERTED, BS_EXP_DELETED };

struct bs_client {
	int fd;
	size_t payload;              /* env->payload */
	char queue[64];              /* env->queue */

	/* Reader: unparsed bytes are rbuf[rpos, rlen). */
	char *rbuf;
	size_t rpos, rlen;

	/* Commands queued for the next send, and the replies they will bring. */
	char *wbuf;
	size_t wlen, wcap;
	unsigned char *exp;
	int nexp, expcap;

	/* Producer: the `put` line and header of a job, both kinds. */
	char put_plain[64];          /* "put 0 0 60 <len>\r\n-" */
	char put_reply[64];          /* "put 0 0 60 <len>\r\nr<id>:" */
	size_t put_plain_len, put_reply_len;

	/* Worker: the reply tube this connection `use`s (-1: "default"). */
	int using;
	int reserving;               /* a blocking `reserve` was sent, unanswered */
	uint64_t watching;           /* the count in the last WATCHING reply */
};

/* -1 with a message in @err: "beanstalkd: ..." */
static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char *err, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, PEER_ERRLEN, "beanstalkd: ");
	va_start(ap, fmt);
	vsnprintf(err + n, PEER_ERRLEN - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static int fail_errno(char *err, const char *what, int e)
{
	char buf[128];
	return fail(err, "%s: %s", what, strerror_r(e, buf, sizeof(buf)));
}

/* An unexpected reply: quoted, printable bytes only, cut short. */
static int fail_reply(char *err, const char *cmd, const char *line)
{
	char q[96];
	size_t i;
	for (i = 0; i < sizeof(q) - 1 && line[i]; i++)
		q[i] = (line[i] >= 0x20 && line[i] < 0x7f) ? line[i] : '?';
	q[i] = '\0';
	return fail(err, "%s: the server replied %s", cmd, q);
}

/* ------------------------------------------------------------------------ */
/* Connection, sending, reading                                              */
/* ------------------------------------------------------------------------ */

static int bs_connect(const char *host, int port, char *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	char svc[16];
	int fd = -1, rc, e = 0, one = 1;

	snprintf(svc, sizeof(svc), "%d", port);
	rc = getaddrinfo(host, svc, &hints, &res);
	if (rc != 0)
		return fail(err, "%s:%d: %s", host, port, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		char what[96];
		snprintf(what, sizeof(what), "cannot connect to %s:%d", host, port);
		return fail_errno(err, what, e);
	}
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
		e = errno;
		close(fd);
		return fail_errno(err, "TCP_NODELAY", e);
	}
	return fd;
}

/* Sends all of @iov[0..cnt) (which it consumes); MSG_NOSIGNAL, so a server
 * that went away is an error here rather than a SIGPIPE. */
static int send_iov(struct bs_client *c, struct iovec *iov, int cnt, char *err)
{
	while (cnt > 0 && iov->iov_len == 0)
		iov++, cnt--;
	while (cnt > 0) {
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)(cnt < IOV_MAX ? cnt : IOV_MAX) };
		ssize_t r = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return fail_errno(err, "send", errno);
		}
		while (cnt > 0 && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++, cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* Sends the queued commands (wbuf). */
static int flush(struct bs_client *c, char *err)
{
	struct iovec iov = { c->wbuf, c->wlen };
	c->wlen = 0;
	return send_iov(c, &iov, 1, err);
}

/* Queues a command line; wbuf is sized at open() for the most work() can
 * queue, so running out of room is a bug, reported as such. */
static int queue_cmd(struct bs_client *c, enum bs_expect exp, char *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int queue_cmd(struct bs_client *c, enum bs_expect exp, char *err, const char *fmt, ...)
{
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(c->wbuf + c->wlen, c->wcap - c->wlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= c->wcap - c->wlen || c->nexp == c->expcap)
		return fail(err, "internal: command buffer full");
	c->wlen += (size_t)n;
	c->exp[c->nexp++] = (unsigned char)exp;
	return 0;
}

/* Makes @need bytes readable at rbuf + rpos, reading as much as arrives. */
static int fill(struct bs_client *c, size_t need, char *err)
{
	if (need > BS_RBUF)
		return fail(err, "a reply of %zu bytes is more than this driver reads", need);
	if (c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
	while (c->rlen - c->rpos < need) {
		ssize_t r;
		if (c->rpos > 0 && BS_RBUF - c->rpos < need) {
			memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
			c->rlen -= c->rpos;
			c->rpos = 0;
		}
		r = read(c->fd, c->rbuf + c->rlen, BS_RBUF - c->rlen);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return fail_errno(err, "read", errno);
		}
		if (r == 0)
			return fail(err, "the server closed the connection");
		c->rlen += (size_t)r;
	}
	return 0;
}

/*
 * Reads one reply line; *@line points at it in rbuf, NUL-terminated where
 * its "\r\n" was, valid until the next read. Lines are short (beanstalkd's
 * longest is well under BS_LINE bytes).
 */
static int read_line(struct bs_client *c, char **line, char *err)
{
	size_t scanned = 0;
	for (;;) {
		char *s = c->rbuf + c->rpos, *nl;
		size_t have = c->rlen - c->rpos;
		nl = have > scanned ? memchr(s + scanned, '\n', have - scanned) : NULL;
		if (nl) {
			if (nl == s || nl[-1] != '\r')
				return fail(err, "a reply line without CRLF");
			nl[-1] = '\0';
			c->rpos += (size_t)(nl - s) + 1;
			*line = s;
			return 0;
		}
		if (have > BS_LINE)
			return fail(err, "a reply line longer than %d bytes", BS_LINE);
		scanned = have;
		if (fill(c, have + 1, err) < 0)
			return -1;
	}
}

/* Parses "<word> <u64>[ <u64>]" after @prefix; 0 on a match. */
static int parse_ids(const char *line, const char *prefix, uint64_t *a, uint64_t *b)
{
	size_t len = strlen(prefix);
	char *end;
	if (strncmp(line, prefix, len) != 0 || line[len] < '0' || line[len] > '9')
		return -1;
	errno = 0;
	*a = strtoull(line + len, &end, 10);
	if (b) {
		if (*end != ' ' || end[1] < '0' || end[1] > '9')
			return -1;
		*b = strtoull(end + 1, &end, 10);
	}
	return (*end != '\0' || errno) ? -1 : 0;
}

/* Reads the replies to the queued commands already sent (exp[0..nexp)). */
static int read_expected(struct bs_client *c, char *err)
{
	for (int i = 0; i < c->nexp; i++) {
		char *line;
		uint64_t id;
		if (read_line(c, &line, err) < 0)
			return -1;
		switch (c->exp[i]) {
		case BS_EXP_USING:
			if (strncmp(line, "USING ", 6) != 0)
				return fail_reply(err, "use", line);
			break;
		case BS_EXP_WATCHING:
			if (parse_ids(line, "WATCHING ", &c->watching, NULL) < 0)
				return fail_reply(err, "watch/ignore", line);
			break;
		case BS_EXP_INSERTED:
			if (parse_ids(line, "INSERTED ", &id, NULL) < 0)
				return fail_reply(err, "put (a result)", line);
			break;
		case BS_EXP_DELETED:
			if (strcmp(line, "DELETED") != 0)
				return fail_reply(err, "delete", line);
			break;
		}
	}
	c->nexp = 0;
	return 0;
}

/*
 * Reads a "RESERVED <id> <bytes>" reply and its body; *@body points at the
 * body in rbuf, valid until the next read. Returns 1 for a job, 0 for
 * TIMED_OUT when @timed_out_ok, -1 otherwise.
 */
static int read_reserved(struct bs_client *c, int timed_out_ok, uint64_t *id,
			 const char **body, size_t *len, char *err)
{
	char *line;
	uint64_t n;
	if (read_line(c, &line, err) < 0)
		return -1;
	if (parse_ids(line, "RESERVED ", id, &n) < 0) {
		if (timed_out_ok && strcmp(line, "TIMED_OUT") == 0)
			return 0;
		return fail_reply(err, "reserve", line);
	}
	if (n > BS_RBUF - 2)
		return fail(err, "reserve: a job of %llu bytes", (unsigned long long)n);
	if (fill(c, (size_t)n + 2, err) < 0)
		return -1;
	*body = c->rbuf + c->rpos;
	*len = (size_t)n;
	if (c->rbuf[c->rpos + n] != '\r' || c->rbuf[c->rpos + n + 1] != '\n')
		return fail(err, "reserve: a job body without CRLF");
	c->rpos += (size_t)n + 2;
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Clients                                                                   */
/* ------------------------------------------------------------------------ */

static void bs_close(void *client)
{
	struct bs_client *c = client;
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->rbuf);
	free(c->wbuf);
	free(c->exp);
	free(c);
}

static void *bs_open(const struct peer_env *env, enum peer_role role, int id, char *err)
{
	struct bs_client *c = calloc(1, sizeof(*c));

	if (!c) {
		fail(err, "out of memory");
		return NULL;
	}
	c->fd = -1;
	c->payload = env->payload;
	c->using = -1;
	snprintf(c->queue, sizeof(c->queue), "%s", env->queue);

	/* A worker queues at most, per job taken, a `use`, a result `put` and a
	 * `delete`, plus a group of reserves; producers queue far less. */
	c->wcap = (size_t)(3 * PEER_BATCH + PEER_BATCH) * (BS_LINE + 16);
	c->expcap = 3 * PEER_BATCH + 8;
	c->rbuf = malloc(BS_RBUF);
	c->wbuf = malloc(c->wcap);
	c->exp = malloc((size_t)c->expcap);
	if (!c->rbuf || !c->wbuf || !c->exp) {
		fail(err, "out of memory");
		goto fail;
	}
	c->put_plain_len = (size_t)snprintf(c->put_plain, sizeof(c->put_plain), "put %d 0 %d %zu\r\n-",
					    BS_PRI, BS_TTR, env->payload + 1);
	{
		char hdr[BS_HDR];
		int h = snprintf(hdr, sizeof(hdr), "r%d:", id);
		c->put_reply_len = (size_t)snprintf(c->put_reply, sizeof(c->put_reply), "put %d 0 %d %zu\r\n%s",
						    BS_PRI, BS_TTR, env->payload + (size_t)h, hdr);
	}

	c->fd = bs_connect(env->host, env->port, err);
	if (c->fd < 0)
		goto fail;

	/* One exchange sets the tubes up: producers `use` the job tube and
	 * watch their reply tube only; workers watch the job tube only. */
	if (role == PEER_PRODUCER) {
		if (queue_cmd(c, BS_EXP_USING, err, "use %s\r\n", c->queue) < 0 ||
		    queue_cmd(c, BS_EXP_WATCHING, err, "watch %s.r%d\r\n", c->queue, id) < 0)
			goto fail;
	} else {
		if (queue_cmd(c, BS_EXP_WATCHING, err, "watch %s\r\n", c->queue) < 0)
			goto fail;
	}
	if (queue_cmd(c, BS_EXP_WATCHING, err, "ignore default\r\n") < 0 ||
	    flush(c, err) < 0 || read_expected(c, err) < 0)
		goto fail;
	if (c->watching != 1) {
		fail(err, "ignore default: still watching %llu tubes", (unsigned long long)c->watching);
		goto fail;
	}
	return c;
fail:
	bs_close(c);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Producer                                                                  */
/* ------------------------------------------------------------------------ */

static int bs_enqueue(void *client, const void *payload, int n, char *err)
{
	struct bs_client *c = client;
	struct iovec iov[1 + 3 * PEER_BATCH];
	int cnt = 0;

	if (n < 1 || n > PEER_BATCH)
		return fail(err, "enqueue: %d jobs", n);
	/* Commands still queued (a roundtrip()'s last delete) go first. */
	iov[cnt++] = (struct iovec){ c->wbuf, c->wlen };
	c->wlen = 0;
	for (int i = 0; i < n; i++) {
		iov[cnt++] = (struct iovec){ c->put_plain, c->put_plain_len };
		iov[cnt++] = (struct iovec){ (void *)payload, c->payload };
		iov[cnt++] = (struct iovec){ "\r\n", 2 };
	}
	if (send_iov(c, iov, cnt, err) < 0 || read_expected(c, err) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		char *line;
		uint64_t id;
		if (read_line(c, &line, err) < 0)
			return -1;
		if (parse_ids(line, "INSERTED ", &id, NULL) < 0)
			return fail_reply(err, "put", line);
	}
	return 0;
}

static int bs_roundtrip(void *client, const void *payload, char *err)
{
	struct bs_client *c = client;
	struct iovec iov[5];
	uint64_t id, rid;
	const char *body;
	size_t len;
	char want[24];
	char *line;
	int r;

	/*
	 * put <job>, [delete <last reply>], reserve, in one send. The put goes
	 * first so that the job reaches a waiting worker before the server
	 * spends a turn on the delete (it answers one command per turn).
	 */
	iov[0] = (struct iovec){ c->put_reply, c->put_reply_len };
	iov[1] = (struct iovec){ (void *)payload, c->payload };
	iov[2] = (struct iovec){ "\r\n", 2 };
	iov[3] = (struct iovec){ c->wbuf, c->wlen };
	iov[4] = (struct iovec){ "reserve\r\n", 9 };
	c->wlen = 0;
	if (send_iov(c, iov, 5, err) < 0)
		return -1;
	if (read_line(c, &line, err) < 0)
		return -1;
	if (parse_ids(line, "INSERTED ", &id, NULL) < 0)
		return fail_reply(err, "put", line);
	if (read_expected(c, err) < 0)
		return -1;
	r = read_reserved(c, 0, &rid, &body, &len, err);
	if (r < 0)
		return -1;
	snprintf(want, sizeof(want), "%llu", (unsigned long long)id);
	if (len != strlen(want) || memcmp(body, want, len) != 0)
		return fail(err, "roundtrip: job %s got the reply %.*s", want, (int)(len < 24 ? len : 24), body);
	/* The reply is ours until we delete it: with the next round trip. */
	return queue_cmd(c, BS_EXP_DELETED, err, "delete %llu\r\n", (unsigned long long)rid);
}

/* ------------------------------------------------------------------------ */
/* Worker                                                                    */
/* ------------------------------------------------------------------------ */

/* Checks one job and queues its completion: the result (if it asks for
 * one) and the delete. */
static int complete(struct bs_client *c, uint64_t id, const char *body, size_t len, char *err)
{
	size_t hlen;
	int reply = -1;

	if (len >= 1 && body[0] == '-') {
		hlen = 1;
	} else if (len >= 3 && body[0] == 'r') {
		const char *p = body + 1, *end = body + (len < BS_HDR ? len : BS_HDR);
		reply = 0;
		while (p < end && *p >= '0' && *p <= '9' && reply < 100000000)
			reply = reply * 10 + (*p++ - '0');
		if (p == body + 1 || p == end || *p != ':')
			return fail(err, "job %llu: a bad header", (unsigned long long)id);
		hlen = (size_t)(p + 1 - body);
	} else {
		return fail(err, "job %llu: a bad header", (unsigned long long)id);
	}
	if (len - hlen != c->payload)
		return fail(err, "job %llu: a payload of %zu bytes, not %zu", (unsigned long long)id,
			    len - hlen, c->payload);
	if (c->payload > 0 && body[len - 1] != peer_payload_byte(c->payload - 1))
		return fail(err, "job %llu: the payload's last byte is wrong", (unsigned long long)id);

	if (reply >= 0) {
		char res[24];
		int rlen = snprintf(res, sizeof(res), "%llu", (unsigned long long)id);
		if (reply != c->using) {
			if (queue_cmd(c, BS_EXP_USING, err, "use %s.r%d\r\n", c->queue, reply) < 0)
				return -1;
			c->using = reply;
		}
		if (queue_cmd(c, BS_EXP_INSERTED, err, "put %d 0 %d %d\r\n%s\r\n", BS_PRI, BS_TTR, rlen, res) < 0)
			return -1;
	}
	return queue_cmd(c, BS_EXP_DELETED, err, "delete %llu\r\n", (unsigned long long)id);
}

/* Sends what is queued and a blocking `reserve` after it, in one write. */
static int send_reserve(struct bs_client *c, char *err)
{
	if (c->wlen + 16 > c->wcap)
		return fail(err, "internal: command buffer full");
	memcpy(c->wbuf + c->wlen, "reserve\r\n", 9);
	c->wlen += 9;
	return flush(c, err);
}

/*
 * Takes one job with a blocking `reserve`, then as many more as are ready,
 * up to @max, with `reserve-with-timeout 0` in groups that double (4, 8,
 * 16, ...) while every one of a group returns a job; a TIMED_OUT ends it.
 * Groups rather than max - 1 at once: beanstalkd answers one command per
 * turn of its event loop, so a burst of 63 reserves against a tube that
 * has few jobs costs the server (the bottleneck in tput) a turn for each
 * TIMED_OUT. Batching rather than one `reserve` per call, because a group
 * costs one round trip for up to 2^k jobs and carries the completions so
 * far with it. Measured (tput 2p2w, 64 / 4096-byte payloads, on a shared
 * 2-CPU VM, so roughly): one `reserve` per call 10.6k / 8.2-9.2k jobs/s
 * and 67-91 us of client CPU per job; doubling groups 12.3-15.3k /
 * 10.9-12.3k jobs/s and 46-54 us; all 63 at once 11.1-16.4k / 7.4-10.4k
 * jobs/s, with more server CPU per job at 4096 bytes (63-80 us, groups
 * 68 us).
 */
static int bs_work(void *client, int max, char *err)
{
	struct bs_client *c = client;
	uint64_t id;
	const char *body;
	size_t len;
	int got = 0, group = BS_FIRST_GROUP;

	if (max < 1)
		return fail(err, "work: max %d", max);
	/* The previous call sent its completions with this reserve. */
	if (!c->reserving) {
		if (send_reserve(c, err) < 0)
			return -1;
	}
	c->reserving = 0;
	if (read_expected(c, err) < 0)
		return -1;
	if (read_reserved(c, 0, &id, &body, &len, err) < 0 ||
	    complete(c, id, body, len, err) < 0)
		return -1;
	got = 1;

	while (got < max) {
		int k = max - got < group ? max - got : group, timed_out = 0;
		if (c->wlen + (size_t)k * 24 > c->wcap)
			return fail(err, "internal: command buffer full");
		for (int i = 0; i < k; i++) {
			memcpy(c->wbuf + c->wlen, "reserve-with-timeout 0\r\n", 24);
			c->wlen += 24;
		}
		if (flush(c, err) < 0 || read_expected(c, err) < 0)
			return -1;
		/* Read all k replies: a job may have arrived after a TIMED_OUT. */
		for (int i = 0; i < k; i++) {
			int r = read_reserved(c, 1, &id, &body, &len, err);
			if (r < 0)
				return -1;
			if (r == 0) {
				timed_out = 1;
				continue;
			}
			if (complete(c, id, body, len, err) < 0)
				return -1;
			got++;
		}
		if (timed_out)
			break;
		group *= 2;
	}
	/* A job counted as completed has had its delete (and result) sent:
	 * they go now, with the next call's blocking reserve, in one write. */
	if (send_reserve(c, err) < 0)
		return -1;
	c->reserving = 1;
	return got;
}

const struct peer_driver peer_beanstalkd = {
	.name = "beanstalkd",
	.prepare = NULL,
	.open = bs_open,
	.close = bs_close,
	.enqueue = bs_enqueue,
	.roundtrip = bs_roundtrip,
	.work = bs_work,
	.finish = NULL,
	.method = "put/reserve/delete on one TCP connection per client; puts pipelined per batch; "
		  "worker takes a blocking reserve then doubling groups of reserve-with-timeout 0, "
		  "its deletes sent with its next reserve before it counts the jobs; reply via a per-producer tube",
};
