/*
 * drv_floor.c - the machine's transport floors as bench/peers drivers
 * (peer.h): a round trip over two pipes, over a UNIX stream socket pair,
 * and over two POSIX message queues. The producer writes the job (the
 * payload, env->payload bytes) and reads a 1-byte result; the worker reads
 * the whole payload, checks it and writes the result. Blocking reads and
 * writes, no spinning: what any process-to-process job hand-off through the
 * kernel costs at least. rtt only (enqueue is NULL).
 *
 * prepare() makes the channel in the harness's process before the worker
 * is forked, so the worker inherits it; finish() closes and removes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

enum kind { K_PIPE, K_UNIX, K_MQ };

/* The channel: [0] producer -> worker, [1] worker -> producer; each with
 * a reading and a writing descriptor (the same one for a socket). */
static int g_rd[2] = { -1, -1 }, g_wr[2] = { -1, -1 };
static int g_fds[4], g_nfds; /* what to close */
static char g_mq[2][96];

struct client {
	enum kind kind;
	int in, out; /* descriptors this side reads and writes */
	size_t payload;
	char buf[4096];
};

static void close_all(void)
{
	while (g_nfds > 0)
		close(g_fds[--g_nfds]);
	g_rd[0] = g_rd[1] = g_wr[0] = g_wr[1] = -1;
}

static int prepare(enum kind k, const struct peer_env *env, char *err)
{
	close_all();
	if (env->payload > sizeof(((struct client *)0)->buf)) {
		snprintf(err, PEER_ERRLEN, "payload over %zu bytes", sizeof(((struct client *)0)->buf));
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		int fd[2];
		switch (k) {
		case K_PIPE:
			if (pipe(fd) < 0)
				goto fail;
			g_rd[i] = g_fds[g_nfds++] = fd[0];
			g_wr[i] = g_fds[g_nfds++] = fd[1];
			break;
		case K_UNIX:
			if (i == 1)
				break; /* one pair carries both directions */
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd) < 0)
				goto fail;
			/* fd[0] is the producer's end, fd[1] the worker's. */
			g_wr[0] = g_rd[1] = g_fds[g_nfds++] = fd[0];
			g_rd[0] = g_wr[1] = g_fds[g_nfds++] = fd[1];
			break;
		case K_MQ: {
			struct mq_attr a = { .mq_maxmsg = 2, .mq_msgsize = 4096 };
			snprintf(g_mq[i], sizeof(g_mq[i]), "/%s-%c", env->queue, i ? 'b' : 'a');
			mq_unlink(g_mq[i]);
			mqd_t q = mq_open(g_mq[i], O_RDWR | O_CREAT | O_EXCL, 0600, &a);
			if (q == (mqd_t)-1)
				goto fail;
			g_rd[i] = g_wr[i] = g_fds[g_nfds++] = (int)q;
			break;
		}
		}
	}
	return 0;
fail:
	snprintf(err, PEER_ERRLEN, "%s: %s", k == K_PIPE ? "pipe" : k == K_UNIX ? "socketpair" : "mq_open",
		 strerror(errno));
	close_all();
	return -1;
}

static void finish(const struct peer_env *env)
{
	close_all();
	for (int i = 0; i < 2; i++) {
		if (g_mq[i][0])
			mq_unlink(g_mq[i]);
		g_mq[i][0] = '\0';
	}
}

static void *open_kind(enum kind k, const struct peer_env *env, enum peer_role role, char *err)
{
	struct client *c;
	if (g_rd[0] < 0) {
		snprintf(err, PEER_ERRLEN, "no channel: prepare() did not run before this process was forked");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, PEER_ERRLEN, "out of memory");
		return NULL;
	}
	c->kind = k;
	c->payload = env->payload;
	if (role == PEER_PRODUCER) {
		c->out = g_wr[0];
		c->in = g_rd[1];
	} else {
		c->in = g_rd[0];
		c->out = g_wr[1];
	}
	return c;
}

static void fl_close(void *client)
{
	free(client);
}

/* Sends @len bytes of @p as one message. */
static int send_msg(struct client *c, const void *p, size_t len, char *err)
{
	if (c->kind == K_MQ) {
		while (mq_send((mqd_t)c->out, p, len, 0) < 0) {
			if (errno != EINTR)
				goto fail;
		}
		return 0;
	}
	for (size_t off = 0; off < len;) {
		ssize_t r = write(c->out, (const char *)p + off, len - off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)r;
	}
	return 0;
fail:
	snprintf(err, PEER_ERRLEN, "send: %s", strerror(errno));
	return -1;
}

/* Receives one message of exactly @len bytes into c->buf. */
static int recv_msg(struct client *c, size_t len, char *err)
{
	if (c->kind == K_MQ) {
		ssize_t r;
		while ((r = mq_receive((mqd_t)c->in, c->buf, sizeof(c->buf), NULL)) < 0) {
			if (errno != EINTR)
				goto fail;
		}
		if ((size_t)r != len) {
			snprintf(err, PEER_ERRLEN, "a message of %zd bytes, expected %zu", r, len);
			return -1;
		}
		return 0;
	}
	for (size_t off = 0; off < len;) {
		ssize_t r = read(c->in, c->buf + off, len - off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (r == 0) {
			snprintf(err, PEER_ERRLEN, "end of stream after %zu of %zu bytes", off, len);
			return -1;
		}
		off += (size_t)r;
	}
	return 0;
fail:
	snprintf(err, PEER_ERRLEN, "receive: %s", strerror(errno));
	return -1;
}

static int fl_roundtrip(void *client, const void *payload, char *err)
{
	struct client *c = client;
	if (send_msg(c, payload, c->payload, err) < 0 || recv_msg(c, 1, err) < 0)
		return -1;
	return 0;
}

static int fl_work(void *client, int max, char *err)
{
	struct client *c = client;
	if (recv_msg(c, c->payload, err) < 0)
		return -1;
	if (c->payload && c->buf[c->payload - 1] != peer_payload_byte(c->payload - 1)) {
		snprintf(err, PEER_ERRLEN, "payload damaged");
		return -1;
	}
	return send_msg(c, "r", 1, err) < 0 ? -1 : 1;
}

#define FLOOR_DRIVER(sym, nm, kind, how)                                                          \
	static int fl_##sym##_prepare(const struct peer_env *env, char *err)                          \
	{                                                                                         \
		return prepare(kind, env, err);                                                   \
	}                                                                                         \
	static void *fl_##sym##_open(const struct peer_env *env, enum peer_role role, int id, char *err) \
	{                                                                                         \
		return open_kind(kind, env, role, err);                                           \
	}                                                                                         \
	const struct peer_driver peer_##sym = {                                                   \
		.name = nm,                                                               \
		.prepare = fl_##sym##_prepare,                                                         \
		.open = fl_##sym##_open,                                                               \
		.close = fl_close,                                                                \
		.roundtrip = fl_roundtrip,                                                        \
		.work = fl_work,                                                                  \
		.finish = finish,                                                                 \
		.method = how,                                                                    \
	}

FLOOR_DRIVER(pipe, "pipe", K_PIPE, "payload down one pipe, 1-byte result up another; blocking read/write");
FLOOR_DRIVER(unix, "unix", K_UNIX, "payload and 1-byte result over one AF_UNIX SOCK_STREAM socketpair; blocking");
FLOOR_DRIVER(mq, "mq", K_MQ, "payload as one message on a POSIX queue, 1-byte result on another; blocking mq_send/mq_receive");
