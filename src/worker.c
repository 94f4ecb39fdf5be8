/*
 * worker.c - workers: handler registration, worker threads, claiming,
 * idle sleeping, running a handler and the transitions that end an attempt.
 *
 * A worker serves an ordered list of queues: it always claims from the first
 * queue that has a ready job (strict order, as taskito). An idle worker first
 * spins for the store's spin time, checking its queues' q_ready words (reads
 * only, so the cache lines stay shared until a producer writes them), then
 * registers in each queue's q_sleepers and sleeps on the store's h_wake futex
 * with FUTEX_WAIT_BITSET, bitset = its queues' bits, until the earliest timer
 * of its queues (q_next_due) or until woken. See queue.c for the protocol
 * that makes a producer wake it exactly when it sleeps.
 *
 * Ending an attempt. The worker owns a RUNNING slot (nobody else writes its
 * fields), writes the result or the error entry first, then moves s_state
 * with one compare-and-swap that names the attempt; a cancel request that
 * arrives meanwhile makes the CAS fail and the decision is taken again, so a
 * requested cancel is never lost to a retry. Retries go back to their queue
 * (ready list or timer heap) under the queue lock in the same step.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"
#include "wal.h"

#define MAX_WORKER_QUEUES 32
#define MAX_WORKER_THREADS 1024
#define MAX_PREFETCH 64

struct handler {
	taskring_handler_fn fn;
	void *arg;
};

struct taskring_ctx {
	struct taskring_worker *w;
	struct taskring_job job;
	struct tr_slot *s;
	uint32_t attempt;
	uint32_t state; /* RUNNING word as claimed (flags aside) */
	int64_t start_mono, end_mono, deadline;
	const void *payload;
	size_t len;
	int has_error;
	size_t errlen;
	char err[TASKRING_ERROR_MAX + 1];
};

struct thread_slot {
	struct taskring_worker *w;
	pthread_t tid;
	struct taskring_job current; /* written before busy is set */
	_Atomic int busy;
	/* Claimed by this thread and not run yet (prefetch > 1). */
	uint32_t claimed[MAX_PREFETCH];
	uint32_t claimed_q, nclaimed, next;
	/* CLOCK_MONOTONIC at which this thread's last job ended, while it has
	 * gone straight on to claim and run more (0 after any wait). */
	int64_t last_end;
};

struct taskring_worker {
	struct taskring_store *st;
	uint32_t nq;
	uint32_t qidx[MAX_WORKER_QUEUES];
	uint32_t bits;
	uint32_t nthreads;
	uint32_t prefetch;
	int64_t spin_ns;
	struct handler *handlers; /* indexed by task */
	struct thread_slot *threads;
	_Atomic int stopping;
	_Atomic int drain_expired; /* stop() gave up waiting: cancel the rest */
	int started;
	int joined;
	/* Threads (and run_one calls) that are not idle; a process-private
	 * futex word that taskring_worker_stop() sleeps on while draining. */
	_Atomic uint32_t running;
	_Atomic uint32_t drain_waiting;
};

void taskring_worker_opts_init(struct taskring_worker_opts *o)
{
	if (o) {
		memset(o, 0, sizeof(*o));
		o->abi = TASKRING_WORKER_OPTS_ABI;
		o->threads = 1;
		o->prefetch = 1;
	}
}

int taskring_worker_create(struct taskring_store *st, const struct taskring_worker_opts *opts,
			   struct taskring_worker **out)
{
	struct taskring_worker_opts def;
	static const char *const default_queue[] = {"default"};

	if (!st || !out)
		return -EINVAL;
	if (!opts) {
		taskring_worker_opts_init(&def);
		opts = &def;
	}
	if (opts->abi != TASKRING_WORKER_OPTS_ABI)
		return TASKRING_EOPTS;
	for (size_t i = 0; i < sizeof(opts->reserved) / sizeof(opts->reserved[0]); i++)
		if (opts->reserved[i])
			return -EINVAL;
	if (opts->threads < 1 || opts->threads > MAX_WORKER_THREADS || opts->prefetch > MAX_PREFETCH)
		return -EINVAL;
	const char *const *names = opts->queues ? opts->queues : default_queue;
	uint32_t nq = opts->queues ? opts->nqueues : 1;
	if (nq < 1 || nq > MAX_WORKER_QUEUES)
		return -EINVAL;
	for (uint32_t i = 0; i < nq; i++) {
		int rc = tr__name_check(names[i]);
		if (rc)
			return rc;
	}
	struct taskring_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->handlers = calloc(st->ntasks, sizeof(struct handler));
	w->threads = calloc(opts->threads, sizeof(struct thread_slot));
	if (!w->handlers || !w->threads) {
		free(w->handlers);
		free(w->threads);
		free(w);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < nq; i++) {
		int qi = tr__queue_find(st, names[i], 1);
		if (qi < 0) {
			free(w->handlers);
			free(w->threads);
			free(w);
			return qi;
		}
		w->qidx[i] = (uint32_t)qi;
		w->bits |= 1u << (qi % 32);
	}
	w->st = st;
	w->nq = nq;
	w->nthreads = opts->threads;
	w->prefetch = opts->prefetch ? opts->prefetch : 1;
	w->spin_ns = atomic_load(&st->spin_ns);
	atomic_fetch_add(&st->nworkers, 1);
	*out = w;
	return 0;
}

int taskring_worker_register(struct taskring_worker *w, const char *task, taskring_handler_fn fn, void *arg)
{
	if (!w || !fn)
		return -EINVAL;
	if (w->started)
		return -EBUSY;
	int ti = tr__task_find(w->st, task, 1);
	if (ti < 0)
		return ti;
	if (w->handlers[ti].fn)
		return -EEXIST;
	w->handlers[ti] = (struct handler){fn, arg};
	return 0;
}

/* ---- the handler's context ------------------------------------------------- */

const struct taskring_job *taskring_ctx_job(struct taskring_ctx *ctx)
{
	return ctx ? &ctx->job : NULL;
}

const void *taskring_ctx_payload(struct taskring_ctx *ctx, size_t *lenp)
{
	if (!ctx)
		return NULL;
	if (lenp)
		*lenp = ctx->len;
	return ctx->payload;
}

uint32_t taskring_ctx_attempt(struct taskring_ctx *ctx)
{
	return ctx ? ctx->attempt : 0;
}

int64_t taskring_ctx_deadline(struct taskring_ctx *ctx)
{
	return ctx ? ctx->deadline : 0;
}

int taskring_ctx_progress(struct taskring_ctx *ctx, int percent)
{
	if (!ctx || percent < 0 || percent > 100)
		return -EINVAL;
	/* Relaxed: progress is a lone word; readers need no ordering with it. */
	atomic_store_explicit(&ctx->s->s_progress, (uint32_t)percent, memory_order_relaxed);
	return 0;
}

int taskring_ctx_cancel_requested(struct taskring_ctx *ctx)
{
	if (!ctx)
		return 0;
	return !!(atomic_load_explicit(&ctx->s->s_state, memory_order_relaxed) & TR_ST_CANCEL);
}

/*
 * The result goes straight into the slot (inline) or an arena block: no
 * copy in between, and nothing for the worker to free if the process dies.
 * A full arena gives up the oldest terminal results first.
 */
int taskring_ctx_result(struct taskring_ctx *ctx, const void *data, size_t len)
{
	if (!ctx || (!data && len))
		return -EINVAL;
	struct taskring_store *st = ctx->w->st;
	if (len > st->max_payload)
		return -EMSGSIZE;
	/* The slot is ours while the attempt runs: nobody reads the result
	 * before the terminal transition publishes it. */
	return tr__slot_set_result(st, ctx->s, data, len);
}

int taskring_ctx_error(struct taskring_ctx *ctx, const char *fmt, ...)
{
	if (!ctx || !fmt)
		return -EINVAL;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	ctx->errlen = (size_t)n < sizeof(ctx->err) ? (size_t)n : sizeof(ctx->err) - 1;
	ctx->has_error = 1;
	return 0;
}

/* ---- claiming and sleeping ------------------------------------------------- */

/*
 * Claim up to @max jobs from the first of the worker's queues that has one,
 * under one acquisition of its lock. Returns how many (0: none), with the
 * slots in @out and the queue in *@qout.
 */
static uint32_t try_claim(struct taskring_worker *w, uint32_t max, uint32_t *out, uint32_t *qout, int *waited)
{
	struct taskring_store *st = w->st;
	int64_t now = -1;

	*waited = 0;
	for (uint32_t i = 0; i < w->nq; i++) {
		uint32_t qi = w->qidx[i];
		struct tr_queue *q = &st->queues[qi];
		if (atomic_load_explicit(&q->q_paused, memory_order_relaxed))
			continue;
		if (atomic_load_explicit(&q->q_ready, memory_order_relaxed) == 0) {
			int64_t due = atomic_load_explicit(&q->q_next_due, memory_order_relaxed);
			if (due == INT64_MAX)
				continue;
			if (now < 0)
				now = tr__now_real();
			if (due > now)
				continue;
		}
		int lw;
		if (tr__lock_waited(&q->q_lock, st, (int)qi, &lw))
			continue;
		*waited |= lw;
		uint32_t n = 0;
		while (n < max && (out[n] = tr__queue_pop_locked(st, q, now)) != TR_NIL)
			n++;
		uint32_t left = atomic_load_explicit(&q->q_ready, memory_order_relaxed);
		uint32_t sleepers = left ? tr__queue_sleepers_locked(q) : 0;
		tr__unlock(&q->q_lock);
		if (n) {
			/* More work and someone asleep: pass the wake-up on. */
			if (sleepers)
				tr__queue_wake(st, qi, 1);
			*qout = qi;
			return n;
		}
	}
	return 0;
}

/* Spin condition: a served queue has a ready job, or the worker stops. */
static int ready_or_stopping(void *arg)
{
	struct taskring_worker *w = arg;
	if (atomic_load_explicit(&w->stopping, memory_order_relaxed))
		return 1;
	for (uint32_t k = 0; k < w->nq; k++) {
		struct tr_queue *q = &w->st->queues[w->qidx[k]];
		if (atomic_load_explicit(&q->q_ready, memory_order_relaxed) &&
		    !atomic_load_explicit(&q->q_paused, memory_order_relaxed))
			return 1;
	}
	return 0;
}

/*
 * Wait until work may be there, the deadline (mono ns, -1 none) passes, or
 * the worker stops. Returns 0 to try claiming, -ETIMEDOUT, or -ECANCELED.
 */
static int idle_wait(struct taskring_worker *w, int64_t deadline)
{
	struct taskring_store *st = w->st;

	/* Spin (unless the spin time is 0) on the queues' words. */
	int rc = tr__spin(w->spin_ns, deadline, 0, ready_or_stopping, w);
	if (rc)
		return rc < 0 ? rc : (atomic_load_explicit(&w->stopping, memory_order_relaxed) ? -ECANCELED : 0);

	/* Read the wake word first, then register in each queue under its
	 * lock and look at it there (see the protocol in queue.c). */
	uint32_t seq = atomic_load_explicit(&st->hdr->h_wake, memory_order_acquire);
	int64_t now_real = tr__now_real();
	int64_t next_due = INT64_MAX;
	int work = 0;
	uint32_t registered = 0;
	for (uint32_t k = 0; k < w->nq; k++) {
		struct tr_queue *q = &st->queues[w->qidx[k]];
		if (tr__lock(&q->q_lock, st, (int)w->qidx[k])) {
			work = 1; /* cannot look: do not sleep on it */
			break;
		}
		atomic_fetch_add_explicit(&q->q_sleepers, 1, memory_order_relaxed);
		registered++;
		if (!atomic_load_explicit(&q->q_paused, memory_order_relaxed)) {
			int64_t due = atomic_load_explicit(&q->q_next_due, memory_order_relaxed);
			if (atomic_load_explicit(&q->q_ready, memory_order_relaxed) || due <= now_real)
				work = 1;
			else if (due < next_due)
				next_due = due;
		}
		tr__unlock(&q->q_lock);
	}
	rc = 0;
	if (atomic_load_explicit(&w->stopping, memory_order_seq_cst)) {
		rc = -ECANCELED;
	} else if (!work) {
		int64_t now = tr__now_mono();
		int64_t until = deadline;
		if (next_due != INT64_MAX) {
			/* Timers are wall-clock; sleep in monotonic time. */
			int64_t d = now + (next_due - now_real);
			if (until < 0 || d < until)
				until = d;
		}
		if (deadline >= 0 && now >= deadline)
			rc = -ETIMEDOUT;
		else
			rc = tr__futex_wait(&st->hdr->h_wake, seq, until, w->bits);
		if (rc == -ETIMEDOUT && (deadline < 0 || tr__now_mono() < deadline))
			rc = 0; /* a timer fell due, not our deadline */
		if (rc == -EAGAIN || rc == -EINTR)
			rc = 0;
	}
	for (uint32_t k = 0; k < registered; k++)
		atomic_fetch_sub_explicit(&st->queues[w->qidx[k]].q_sleepers, 1, memory_order_relaxed);
	if (rc == 0 && atomic_load_explicit(&w->stopping, memory_order_relaxed))
		rc = -ECANCELED;
	return rc;
}

/* ---- ending an attempt ---------------------------------------------------------- */

/*
 * The delay before retry number @attempt + 1: the job's explicit list (its
 * last entry repeats), or full jitter as taskito computes it, with the
 * shift bounded so base * 2^attempt cannot overflow.
 */
static int64_t backoff(struct taskring_store *st, struct tr_slot *s, uint32_t attempt)
{
	uint64_t off = TR_GET(s->s_delays_off);
	if (off) {
		uint32_t blen;
		const int64_t *d = tr__arena_data(st, off, &blen);
		uint32_t n = d ? blen / (uint32_t)sizeof(int64_t) : 0;
		if (n) {
			int64_t v = d[attempt < n ? attempt : n - 1];
			return v < 0 ? 0 : v;
		}
	}
	int64_t base = TR_GET(s->s_backoff_base), cap = TR_GET(s->s_backoff_cap);
	if (base <= 0 || cap <= 0)
		return 0;
	int64_t lim = cap;
	if (attempt < 62 && base <= (cap >> attempt))
		lim = base << attempt;
	/* Full jitter: uniform over [0, min(cap, base * 2^attempt)]. */
	return (int64_t)(tr__rand64() % ((uint64_t)lim + 1));
}

/*
 * Make the attempt terminal with @status. The queue's counter goes up first
 * (and back down if the CAS loses), so a waiter woken by the transition never
 * reads a counter that lags its job. The cancel-requested flag is kept, so
 * the job still says it was asked to stop. Returns 0, or -ESTALE to decide
 * again with a fresh state word.
 */
static int end_as(struct taskring_store *st, struct taskring_ctx *c, uint32_t now_state, uint32_t status,
		  _Atomic uint64_t *counter, const char *msg, size_t mlen)
{
	uint32_t next = TR_MKSTATE(status, c->attempt, TR_TAG(c->state)) | (now_state & TR_ST_CANCEL);

	if (st->wal) {
		/* Logged first and, in a durable store, on disk before anyone
		 * can see the end (a failed log leaves the job to recovery). */
		static const uint16_t type_of[TASKRING_STATUS_COUNT] = {
			[TASKRING_COMPLETE] = TR_LOG_COMPLETE, [TASKRING_FAILED] = TR_LOG_FAILED,
			[TASKRING_DEAD] = TR_LOG_DEAD, [TASKRING_CANCELLED] = TR_LOG_CANCEL};
		uint64_t end = 0;
		if (tr__wal_log_end(st, c->s, type_of[status], c->attempt, TR_GET(c->s->s_completed_at), 0, msg, mlen,
				    &end) == 0)
			tr__wal_commit(st, end);
	}
	atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
	if (tr__slot_transition(c->s, now_state, next, NULL)) {
		atomic_fetch_sub_explicit(counter, 1, memory_order_relaxed);
		return -ESTALE;
	}
	tr__slot_finished(st, c->job.slot);
	return 0;
}

/*
 * Decide how the attempt ends and make it so. The message is fixed first
 * (the handler's, or one saying why: timeout, unknown outcome), then the
 * loop re-reads the state word and takes the one transition that fits it;
 * when the CAS loses to a cancel request it decides again. An attempt that
 * is no longer the running one (reaped and retried elsewhere) changes
 * nothing: exactly one completion per attempt is accepted.
 */
static void end_attempt(struct taskring_worker *w, struct taskring_ctx *c, int outcome, uint32_t qi)
{
	struct taskring_store *st = w->st;
	struct tr_slot *s = c->s;
	struct tr_queue *q = &st->queues[qi];
	uint32_t tag = TR_TAG(c->state);
	int64_t end_mono = c->end_mono = tr__now_mono();
	int64_t end_real = tr__mono_to_real(end_mono);
	int timed_out = end_mono > c->deadline;
	char msg[TASKRING_ERROR_MAX + 1];
	size_t mlen = 0;

	if (outcome == TASKRING_OK && timed_out) {
		mlen = (size_t)snprintf(msg, sizeof(msg), "attempt %u exceeded its timeout of %lld ms", c->attempt,
					(long long)(TR_GET(s->s_timeout_ns) / 1000000));
		outcome = TASKRING_RETRY;
	} else if (outcome != TASKRING_OK && c->has_error) {
		memcpy(msg, c->err, c->errlen + 1);
		mlen = c->errlen;
	} else if (outcome < TASKRING_OK || outcome > TASKRING_CANCEL) {
		mlen = (size_t)snprintf(msg, sizeof(msg), "handler returned %d, not a taskring_outcome", outcome);
		outcome = TASKRING_RETRY;
	} else if (outcome == TASKRING_RETRY) {
		mlen = (size_t)snprintf(msg, sizeof(msg), "%s", timed_out ? "attempt exceeded its timeout" : "handler failed");
	} else if (outcome == TASKRING_FAIL) {
		mlen = (size_t)snprintf(msg, sizeof(msg), "handler failed permanently");
	}
	if (mlen >= sizeof(msg))
		mlen = sizeof(msg) - 1;
	if (outcome != TASKRING_OK)
		tr__slot_drop_result(st, s);
	int error_written = 0;

	for (;;) {
		uint32_t now_state = atomic_load_explicit(&s->s_state, memory_order_acquire);
		uint32_t expect = TR_MKSTATE(TASKRING_RUNNING, c->attempt, tag);
		if ((now_state & ~TR_ST_FLAGS) != expect)
			return; /* not ours any more (reaped): our completion is void */
		int cancel = !!(now_state & TR_ST_CANCEL);
		TR_SET(s->s_completed_at, end_real);
		if (outcome == TASKRING_OK) {
			if (end_as(st, c, now_state, TASKRING_COMPLETE, &q->q_completed, NULL, 0))
				continue;
			return;
		}
		if (cancel || outcome == TASKRING_CANCEL) {
			if (end_as(st, c, now_state, TASKRING_CANCELLED, &q->q_cancelled, msg, mlen))
				continue;
			return;
		}
		if (!error_written) {
			tr__error_append_at(st, s, c->attempt, msg, mlen, end_real); /* as logged */
			error_written = 1;
		}
		if (outcome == TASKRING_FAIL) {
			if (end_as(st, c, now_state, TASKRING_FAILED, &q->q_failed, msg, mlen))
				continue;
			return;
		}
		if (c->attempt >= TR_GET(s->s_max_retries) || c->attempt + 1 > TR_ATTEMPT_MAX) {
			if (end_as(st, c, now_state, TASKRING_DEAD, &q->q_dead, msg, mlen))
				continue;
			return;
		}
		/* Retry: back to the queue, due after the backoff. */
		int64_t now = end_real;
		TR_SET(s->s_completed_at, 0);
		TR_SET(s->s_scheduled_at, now + backoff(st, s, c->attempt));
		TR_SET(s->s_retry_count, c->attempt + 1);
		TR_SET(s->s_owner_pid, 0);
		if (st->wal)
			tr__wal_log_end(st, s, TR_LOG_RETRY, c->attempt, now, TR_GET(s->s_scheduled_at), msg, mlen, NULL);
		if (tr__lock(&q->q_lock, st, (int)qi))
			return;
		atomic_fetch_add_explicit(&q->q_retried, 1, memory_order_relaxed);
		int rc = tr__slot_transition(s, now_state, TR_MKSTATE(TASKRING_PENDING, c->attempt + 1, tag), NULL);
		if (rc == 0)
			tr__queue_link_locked(st, q, c->job.slot, now);
		else
			atomic_fetch_sub_explicit(&q->q_retried, 1, memory_order_relaxed);
		uint32_t sleepers = tr__queue_sleepers_locked(q);
		tr__unlock(&q->q_lock);
		if (rc)
			continue;
		if (sleepers)
			tr__queue_wake(st, qi, 1);
		return;
	}
}

/*
 * Run the claimed job in slot @idx: build the handler's context (the payload
 * is read in place, from the slot or the arena, after bounds checks), record
 * the start, call the handler and end the attempt. A job whose cancel was
 * requested before it started, or whose task this worker has no handler for,
 * does not reach a handler.
 */
static void run_job(struct taskring_worker *w, struct thread_slot *ts, uint32_t idx, uint32_t qi)
{
	int64_t start_hint = ts ? ts->last_end : 0;
	struct taskring_store *st = w->st;
	struct tr_slot *s = &st->slots[idx];
	struct taskring_ctx c;
	int outcome;

	/* Not memset: err[] is 1 KiB and written only when used. */
	c.has_error = 0;
	c.errlen = 0;
	c.w = w;
	c.s = s;
	c.state = atomic_load_explicit(&s->s_state, memory_order_acquire);
	c.attempt = TR_ATTEMPT(c.state);
	c.job.store = st;
	c.job.slot = idx;
	c.job.gen = atomic_load_explicit(&s->s_gen, memory_order_relaxed);
	tr__copy_shared(c.job.uuid, s->s_uuid, 16);
	/*
	 * One clock read per job, not two: a thread that went straight from
	 * its last job to claiming this one (no wait in between, not even for
	 * the queue's lock) takes the last job's end as this one's start.
	 * The error is the claim itself, well under a microsecond, and the
	 * start is never placed before the job was due. A clock read costs
	 * ~35-50 ns on a VM's kvm-clock.
	 */
	c.start_mono = start_hint ? start_hint : tr__now_mono();
	int64_t started = tr__mono_to_real(c.start_mono);
	int64_t due = TR_GET(s->s_scheduled_at);
	TR_SET(s->s_started_at, started < due ? due : started);
	TR_SET(s->s_owner_pid, (int32_t)tr__pid());
	if (st->wal) {
		int64_t v[3] = {c.attempt, tr__pid(), TR_GET(s->s_started_at)};
		tr__wal_log(st, TR_LOG_START, s, v, 3, NULL, 0, NULL);
	}
	c.deadline = c.start_mono + TR_GET(s->s_timeout_ns);
	atomic_fetch_add_explicit(&st->queues[qi].q_started, 1, memory_order_relaxed);
	if (ts) {
		ts->current = c.job;
		/* Release: current is complete before stop() may read it. */
		atomic_store_explicit(&ts->busy, 1, memory_order_release);
	}

	uint32_t task = TR_GET(s->s_task);
	uint32_t len = TR_GET(s->s_payload_len);
	if (TR_GET(s->s_flags) & TR_SF_PAYLOAD_INLINE) {
		c.payload = len <= TR_INLINE_PAYLOAD ? s->s_inline_payload : NULL;
	} else {
		uint32_t blen = 0;
		c.payload = tr__arena_data(st, TR_GET(s->s_payload_off), &blen);
		if (blen != len)
			c.payload = NULL;
	}
	c.len = len;
	if (c.state & TR_ST_CANCEL) {
		/* Cancelled between claim and start (a prefetched job, or a
		 * drain that ran out of time): never started. */
		outcome = TASKRING_CANCEL;
	} else if (task >= st->ntasks || !w->handlers[task].fn) {
		taskring_ctx_error(&c, "no handler for task '%.63s' in worker process %d",
				   task < st->ntasks ? st->tasks[task] : "?", (int)tr__pid());
		outcome = TASKRING_RETRY;
	} else if (!c.payload && len) {
		taskring_ctx_error(&c, "payload unreadable (store corrupt)");
		outcome = TASKRING_FAIL;
	} else {
		outcome = w->handlers[task].fn(&c, w->handlers[task].arg);
	}
	end_attempt(w, &c, outcome, qi);
	if (ts) {
		ts->last_end = c.end_mono;
		atomic_store_explicit(&ts->busy, 0, memory_order_relaxed);
	}
}

/*
 * w->running counts the threads (and run_one calls) that are active: between
 * leaving an idle wait and entering the next one. A thread that goes from job
 * to job stays active and touches the counter not at all; every locked
 * instruction is a full barrier on x86, which stalls behind the stores a job
 * leaves in flight to the shared lines.
 *
 * enter(): seq_cst increment, then the caller looks at stopping (seq_cst).
 * stop() sets stopping, then reads running. So either the thread sees the
 * stop before it claims anything, or stop() sees the thread and drains it.
 */
static void enter(struct taskring_worker *w)
{
	atomic_fetch_add_explicit(&w->running, 1, memory_order_seq_cst);
}

static void leave(struct taskring_worker *w)
{
	if (atomic_fetch_sub_explicit(&w->running, 1, memory_order_seq_cst) == 1 &&
	    atomic_load_explicit(&w->drain_waiting, memory_order_seq_cst))
		tr__futex_wake_op(&w->running, INT32_MAX, 0xffffffffu, 1);
}

/* Ask for the cancel of a claimed job that has not started. */
static void cancel_claimed(struct taskring_store *st, uint32_t idx)
{
	struct tr_slot *s = &st->slots[idx];
	atomic_fetch_or_explicit(&s->s_state, TR_ST_CANCEL, memory_order_acq_rel);
}

/*
 * The body of a worker thread, or (@ts NULL, @once) of one run_one call:
 * run what this thread claimed, claim more, and wait when there is nothing.
 * Claimed jobs are run even while stopping: they are running already.
 * Returns 1 when a job ran (run_one), 0 otherwise.
 */
static int serve(struct taskring_worker *w, struct thread_slot *ts, int64_t deadline, int once)
{
	uint32_t one, qi;
	int ran = 0;

	enter(w);
	for (;;) {
		if (ts && ts->next < ts->nclaimed) {
			uint32_t idx = ts->claimed[ts->next++];
			if (atomic_load_explicit(&w->drain_expired, memory_order_relaxed))
				cancel_claimed(w->st, idx);
			run_job(w, ts, idx, ts->claimed_q);
			continue;
		}
		if (ran && once)
			break;
		if (atomic_load_explicit(&w->stopping, memory_order_seq_cst))
			break;
		uint32_t max = ts ? w->prefetch : 1;
		uint32_t *out = ts ? ts->claimed : &one;
		int waited;
		uint32_t n = try_claim(w, max, out, &qi, &waited);
		if (ts && waited)
			ts->last_end = 0; /* the claim waited: read the clock afresh */
		if (n) {
			if (ts) {
				ts->claimed_q = qi;
				ts->nclaimed = n;
				ts->next = 0;
			} else {
				run_job(w, NULL, one, qi);
				ran = 1;
			}
			continue;
		}
		if (deadline == 0)
			break;
		if (ts)
			ts->last_end = 0;
		leave(w);
		int rc = idle_wait(w, deadline);
		enter(w);
		if (rc == -ETIMEDOUT || rc == -ECANCELED)
			break;
	}
	leave(w);
	return ran;
}

int taskring_worker_run_one(struct taskring_worker *w, int64_t timeout_ns)
{
	if (!w || timeout_ns < -1)
		return -EINVAL;
	int64_t deadline = timeout_ns < 0 ? -1 : (timeout_ns == 0 ? 0 : tr__now_mono() + timeout_ns);
	return serve(w, NULL, deadline, 1);
}

static void *thread_main(void *arg)
{
	struct thread_slot *ts = arg;
	serve(ts->w, ts, -1, 0);
	return NULL;
}

int taskring_worker_start(struct taskring_worker *w)
{
	if (!w)
		return -EINVAL;
	if (w->started)
		return -EBUSY;
	for (uint32_t i = 0; i < w->nthreads; i++) {
		w->threads[i].w = w;
		int rc = pthread_create(&w->threads[i].tid, NULL, thread_main, &w->threads[i]);
		if (rc) {
			atomic_store(&w->stopping, 1);
			atomic_fetch_add_explicit(&w->st->hdr->h_wake, 1, memory_order_seq_cst);
			tr__futex_wake(&w->st->hdr->h_wake, INT32_MAX, w->bits);
			for (uint32_t k = 0; k < i; k++)
				pthread_join(w->threads[k].tid, NULL);
			atomic_store(&w->stopping, 0);
			return -rc;
		}
	}
	w->started = 1;
	return 0;
}

/*
 * Draining waits for w->running, the threads that are not idle, to reach 0:
 * a thread leaves only after running every job it claimed, and the last one
 * to leave wakes us through a process-private futex on that counter.
 */
int taskring_worker_stop(struct taskring_worker *w, int64_t drain_timeout_ns)
{
	if (!w || drain_timeout_ns < -1)
		return -EINVAL;
	atomic_store_explicit(&w->stopping, 1, memory_order_seq_cst);
	/* Wake our sleeping threads. The bitset reaches every worker of these
	 * queues, in any process; the others find nothing new and sleep again. */
	atomic_fetch_add_explicit(&w->st->hdr->h_wake, 1, memory_order_seq_cst);
	tr__futex_wake(&w->st->hdr->h_wake, INT32_MAX, w->bits);

	int rc = 0;
	int64_t deadline = drain_timeout_ns < 0 ? -1 : tr__now_mono() + drain_timeout_ns;
	atomic_store_explicit(&w->drain_waiting, 1, memory_order_seq_cst);
	for (;;) {
		uint32_t n = atomic_load_explicit(&w->running, memory_order_seq_cst);
		if (n == 0)
			break;
		if (deadline >= 0 && tr__now_mono() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		tr__futex_wait_op(&w->running, n, deadline, 0xffffffffu, 1);
	}
	atomic_store_explicit(&w->drain_waiting, 0, memory_order_relaxed);
	if (rc) {
		/* Stopping: no thread claims again, so current is stable; jobs
		 * claimed and not started are cancelled by their thread. */
		atomic_store_explicit(&w->drain_expired, 1, memory_order_relaxed);
		for (uint32_t i = 0; i < w->nthreads; i++)
			if (atomic_load_explicit(&w->threads[i].busy, memory_order_acquire))
				taskring_job_cancel(&w->threads[i].current);
	}
	if (rc == 0 && w->started && !w->joined) {
		for (uint32_t i = 0; i < w->nthreads; i++)
			pthread_join(w->threads[i].tid, NULL);
		w->joined = 1;
	}
	return rc;
}

int taskring_worker_destroy(struct taskring_worker *w)
{
	if (!w)
		return -EINVAL;
	taskring_worker_stop(w, -1);
	atomic_fetch_sub(&w->st->nworkers, 1);
	free(w->handlers);
	free(w->threads);
	free(w);
	return 0;
}
