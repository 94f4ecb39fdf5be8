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
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"
#include "wal.h"

#define MAX_WORKER_QUEUES 32
#define MAX_WORKER_THREADS 1024
#define MAX_PREFETCH 64
#define MIN_LEASE_NS 1000000ll               /* 1 ms */
#define MAX_LEASE_NS 86400000000000ll        /* 1 day */
#define MIN_REAP_NS 1000000ll                /* 1 ms */
#define MAX_REAP_NS 3600000000000ll          /* 1 hour */
#define DEFAULT_REAP_NS 100000000ll          /* 100 ms */

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
	uint32_t me;      /* our registration's token (proc.c) */
	int64_t lease_ns; /* this attempt's lease length */
	/* The result, staged until the attempt's closing is ours: inline, or
	 * in an arena block that nobody else knows yet. */
	int has_result;
	uint32_t res_len;
	uint64_t res_off;
	uint8_t res_inline[TR_INLINE_RESULT];
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
	int64_t claim_start; /* the time its last claim took as the start (0:
				read the clock) */
};

/*
 * Prefork (TASKRING_WORKER_PREFORK). Each child has a control block in a
 * shared anonymous mapping that fork() gives it: a robust mutex it holds
 * for its whole life (the kernel marks it FUTEX_OWNER_DIED and wakes a
 * waiter when the child dies), a word it moves to wake the supervisor, and
 * what it runs now. The supervisor sleeps with futex_waitv on each child's
 * mutex word, each child's wake word and each child's p_cancel word in the
 * process table (moved by taskring_job_cancel()), until the earliest
 * running job's timeout.
 */
struct pf_child {
	pthread_mutex_t alive;    /* robust, process-shared; held by the child */
	_Atomic uint32_t seq;     /* moved (and woken) by the child: it started,
				     or began a job due before sup_until */
	_Atomic uint32_t token;   /* the child's registration */
	_Atomic uint32_t stop;    /* supervisor -> child: stop claiming */
	_Atomic uint32_t running; /* 1 while a job runs (fields below set) */
	uint32_t slot, gen, attempt;
	_Atomic int64_t deadline; /* CLOCK_MONOTONIC: the job's hard timeout */
};

struct pf_pool {
	_Atomic int64_t sup_until; /* the supervisor sleeps until then (0:
				      awake) */
	struct pf_child c[];
};

struct taskring_worker {
	struct taskring_store *st;
	uint32_t nq;
	uint32_t qidx[MAX_WORKER_QUEUES];
	uint32_t bits;
	uint32_t nthreads;
	uint32_t prefetch;
	int64_t spin_ns;
	int64_t lease_ns;        /* 0: each job's timeout */
	int64_t reap_interval_ns; /* -1: no reaper thread */
	pthread_t reaper;
	int reaper_started;
	_Atomic uint32_t reaper_stop; /* process-private futex word */
	/* Prefork: the pool (shared with the children), their pids (ours),
	 * the supervisor thread and its wake word; in a child, its block. */
	int prefork;
	struct pf_pool *pf;
	size_t pf_bytes;
	pid_t *pf_pid;
	uint32_t pf_sup;      /* the supervisor's token, for its children */
	pthread_t sup;
	int sup_started;
	_Atomic uint32_t sup_wake;
	struct pf_child *pf_self;
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

/* The worker stops: taskring_worker_stop() in this process, or, in a
 * prefork child, its supervisor's word. */
static inline int is_stopping(struct taskring_worker *w)
{
	return atomic_load_explicit(&w->stopping, memory_order_seq_cst) ||
	       (w->pf_self && atomic_load_explicit(&w->pf_self->stop, memory_order_seq_cst));
}

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
	if (opts->lease_ns && (opts->lease_ns < MIN_LEASE_NS || opts->lease_ns > MAX_LEASE_NS))
		return -EINVAL;
	if (opts->reap_interval_ns && opts->reap_interval_ns != -1 &&
	    (opts->reap_interval_ns < MIN_REAP_NS || opts->reap_interval_ns > MAX_REAP_NS))
		return -EINVAL;
	if ((opts->flags & ~TASKRING_WORKER_PREFORK) || opts->reserved32 ||
	    ((opts->flags & TASKRING_WORKER_PREFORK) && opts->threads > TASKRING_PREFORK_MAX))
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
	if (opts->flags & TASKRING_WORKER_PREFORK) {
		w->prefork = 1;
		w->pf_bytes = sizeof(struct pf_pool) + opts->threads * sizeof(struct pf_child);
		w->pf = mmap(NULL, w->pf_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		w->pf_pid = calloc(opts->threads, sizeof(pid_t));
		if (w->pf == MAP_FAILED || !w->pf_pid) {
			if (w->pf != MAP_FAILED)
				munmap(w->pf, w->pf_bytes);
			free(w->pf_pid);
			free(w->handlers);
			free(w->threads);
			free(w);
			return -ENOMEM;
		}
	}
	w->st = st;
	w->nq = nq;
	w->nthreads = opts->threads;
	w->prefetch = opts->prefetch ? opts->prefetch : 1;
	w->spin_ns = atomic_load(&st->spin_ns);
	w->lease_ns = opts->lease_ns;
	w->reap_interval_ns = opts->reap_interval_ns ? opts->reap_interval_ns : DEFAULT_REAP_NS;
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
 * The result is staged, not written to the slot: the attempt may stop being
 * ours at any moment (its lease runs out and a reaper ends it), and then the
 * slot's fields are the reaper's and the next attempt's. A large result goes
 * into an arena block that only this context knows until the end of the
 * attempt attaches it; a full arena gives up the oldest terminal results
 * first. (A block staged by a process that dies is not reclaimed.)
 */
int taskring_ctx_result(struct taskring_ctx *ctx, const void *data, size_t len)
{
	if (!ctx || (!data && len))
		return -EINVAL;
	struct taskring_store *st = ctx->w->st;
	if (len > st->max_payload)
		return -EMSGSIZE;
	uint64_t off = 0;
	if (len > TR_INLINE_RESULT) {
		off = tr__arena_alloc_reclaim(st, len);
		if (!off)
			return -ENOSPC;
		tr__copy_shared((struct tr_block *)(st->arena + off) + 1, data, len);
	} else if (len) {
		memcpy(ctx->res_inline, data, len);
	}
	if (ctx->res_off)
		tr__arena_free(st, ctx->res_off);
	ctx->res_off = off;
	ctx->res_len = (uint32_t)len;
	ctx->has_result = 1;
	return 0;
}

/*
 * Wait until the attempt (@expect: RUNNING, attempt and tag, no flags) is
 * ours again (s_owner == @me): a reaper that holds it only to look hands it
 * back within microseconds. Returns 1, or 0 when the attempt is no longer
 * running (it was ended by someone else), or is still held after a second.
 */
static int settle_owner(struct tr_slot *s, uint32_t expect, uint32_t me)
{
	int64_t give_up = 0;
	for (uint32_t i = 0;; i++) {
		uint32_t cur = atomic_load_explicit(&s->s_state, memory_order_seq_cst);
		if ((cur & ~TR_ST_FLAGS) != expect)
			return 0;
		if (atomic_load_explicit(&s->s_owner, memory_order_seq_cst) == me)
			return 1;
		if (i < 200) {
			tr__cpu_relax();
			continue;
		}
		int64_t now = tr__now_mono();
		if (!give_up)
			give_up = now + 1000000000ll;
		else if (now > give_up)
			return 0;
		struct timespec ts = {0, 50000};
		nanosleep(&ts, NULL);
	}
}

/* Renew the attempt's lease from @from (coarse mono ns). 0, or -ESTALE. */
static int touch_at(struct taskring_ctx *c, int64_t from)
{
	struct tr_slot *s = c->s;
	uint32_t expect = TR_MKSTATE(TASKRING_RUNNING, c->attempt, TR_TAG(c->state));
	if (!settle_owner(s, expect, c->me))
		return -ESTALE;
	/* Store, then look (both seq_cst): a reaper whose CAS comes after our
	 * look sees the new lease and hands the attempt back. */
	atomic_store_explicit(&s->s_lease, from + c->lease_ns, memory_order_seq_cst);
	return settle_owner(s, expect, c->me) ? 0 : -ESTALE;
}

int taskring_ctx_touch(struct taskring_ctx *ctx)
{
	if (!ctx)
		return -EINVAL;
	return touch_at(ctx, tr__now_coarse());
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
static uint32_t try_claim(struct taskring_worker *w, uint32_t max, uint32_t *out, uint32_t *qout, int *waited,
			  int64_t start_hint, int64_t *claim_monop)
{
	struct taskring_store *st = w->st;
	int64_t now = -1;
	int64_t claim_mono = 0;
	uint32_t owner = 0;
	int n_owner_read = 0;

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
		if (!n_owner_read) {
			owner = tr__proc_token(st);
			claim_mono = start_hint ? start_hint : tr__now_mono();
			n_owner_read = 1;
		}
		while (n < max && (out[n] = tr__queue_pop_locked(st, q, now, owner, claim_mono, w->lease_ns)) != TR_NIL)
			n++;
		uint32_t left = atomic_load_explicit(&q->q_ready, memory_order_relaxed);
		uint32_t sleepers = left ? tr__queue_sleepers_locked(q) : 0;
		tr__unlock(&q->q_lock);
		if (n) {
			/* More work and someone asleep: pass the wake-up on. */
			if (sleepers)
				tr__queue_wake(st, qi, 1);
			*qout = qi;
			*claim_monop = claim_mono;
			return n;
		}
	}
	return 0;
}

/* Spin condition: a served queue has a ready job, or the worker stops. */
static int ready_or_stopping(void *arg)
{
	struct taskring_worker *w = arg;
	if (is_stopping(w))
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
		return rc < 0 ? rc : (is_stopping(w) ? -ECANCELED : 0);

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
	if (is_stopping(w)) {
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
	if (rc == 0 && is_stopping(w))
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
 * again with a fresh state word (a cancel request arrived).
 */
static int end_as(struct taskring_store *st, uint32_t idx, uint32_t attempt, uint32_t tag, uint32_t now_state,
		  uint32_t status, _Atomic uint64_t *counter, const char *msg, size_t mlen)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t next = TR_MKSTATE(status, attempt, tag) | (now_state & TR_ST_CANCEL);

	if (st->wal) {
		/* Logged first and, in a durable store, on disk before anyone
		 * can see the end (a failed log leaves the job to recovery). */
		static const uint16_t type_of[TASKRING_STATUS_COUNT] = {
			[TASKRING_COMPLETE] = TR_LOG_COMPLETE, [TASKRING_FAILED] = TR_LOG_FAILED,
			[TASKRING_DEAD] = TR_LOG_DEAD, [TASKRING_CANCELLED] = TR_LOG_CANCEL};
		uint64_t end = 0;
		if (tr__wal_log_end(st, s, type_of[status], attempt, TR_GET(s->s_completed_at), 0, msg, mlen, &end) ==
		    0)
			tr__wal_commit(st, end);
	}
	TR_CRASH(END_LOGGED);
	atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
	if (tr__slot_transition(s, now_state, next, NULL)) {
		atomic_fetch_sub_explicit(counter, 1, memory_order_relaxed);
		return -ESTALE;
	}
	/* Terminal: s_owner still names us as its closer, so if we die here
	 * the reaper resolves and recycles it (proc.c). */
	TR_CRASH(END_TERMINAL);
	tr__slot_finished(st, idx);
	return 0;
}

/*
 * End the running attempt (@attempt, @tag) of the job in slot @idx, whose
 * closing (s_owner, proc.c) the caller holds: the worker at the end of
 * its handler, or a reaper. @outcome is a taskring_outcome, with the error
 * message @msg for any outcome but TASKRING_OK. The loop re-reads the state
 * word and takes the one transition that fits it; when the CAS loses to a
 * cancel request it decides again, so a requested cancel is never lost to a
 * retry. Retries go back to their queue (ready list or timer heap) under the
 * queue lock in the same step.
 */
void tr__attempt_close_end(struct taskring_store *st, uint32_t idx, uint32_t attempt, uint32_t tag, int outcome,
			   const char *msg, size_t mlen, int64_t end_real)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t qi = TR_GET(s->s_queue);
	int error_written = 0;

	if (qi >= st->nqueues)
		return; /* a scribbled slot: leave it */
	struct tr_queue *q = &st->queues[qi];
	if (outcome != TASKRING_OK)
		tr__slot_drop_result(st, s);
	for (;;) {
		uint32_t now_state = atomic_load_explicit(&s->s_state, memory_order_acquire);
		uint32_t expect = TR_MKSTATE(TASKRING_RUNNING, attempt, tag);
		if ((now_state & ~(TR_ST_WAITERS | TR_ST_CANCEL | TR_ST_DEPS)) != expect)
			return; /* not ours (only a scribble can do this) */
		int cancel = !!(now_state & TR_ST_CANCEL);
		TR_SET(s->s_completed_at, end_real);
		if (outcome == TASKRING_OK) {
			if (end_as(st, idx, attempt, tag, now_state, TASKRING_COMPLETE, &q->q_completed, NULL, 0))
				continue;
			return;
		}
		if (cancel || outcome == TASKRING_CANCEL) {
			if (end_as(st, idx, attempt, tag, now_state, TASKRING_CANCELLED, &q->q_cancelled, msg, mlen))
				continue;
			return;
		}
		if (!error_written) {
			tr__error_append_at(st, s, attempt, msg, mlen, end_real); /* as logged */
			error_written = 1;
		}
		if (outcome == TASKRING_FAIL) {
			if (end_as(st, idx, attempt, tag, now_state, TASKRING_FAILED, &q->q_failed, msg, mlen))
				continue;
			return;
		}
		if (attempt >= TR_GET(s->s_max_retries) || attempt + 1 > TR_ATTEMPT_MAX) {
			if (end_as(st, idx, attempt, tag, now_state, TASKRING_DEAD, &q->q_dead, msg, mlen))
				continue;
			return;
		}
		/* Retry: back to the queue, due after the backoff. */
		int64_t now = end_real;
		TR_SET(s->s_completed_at, 0);
		TR_SET(s->s_scheduled_at, now + backoff(st, s, attempt));
		TR_SET(s->s_retry_count, attempt + 1);
		TR_SET(s->s_owner_pid, 0);
		if (st->wal)
			tr__wal_log_end(st, s, TR_LOG_RETRY, attempt, now, TR_GET(s->s_scheduled_at), msg, mlen, NULL);
		if (tr__lock(&q->q_lock, st, (int)qi))
			return;
		atomic_fetch_add_explicit(&q->q_retried, 1, memory_order_relaxed);
		/* Linked first, then PENDING: a process killed in between
		 * leaves a RUNNING job that a claim drops from the list and
		 * the reaper ends again, never a pending job in no list. */
		tr__queue_link_locked(st, q, idx, now);
		TR_CRASH(RETRY_LINKED);
		int rc = tr__slot_transition(s, now_state, TR_MKSTATE(TASKRING_PENDING, attempt + 1, tag), NULL);
		if (rc) {
			tr__queue_unlink_locked(st, q, idx);
			atomic_fetch_sub_explicit(&q->q_retried, 1, memory_order_relaxed);
		} else {
			TR_CRASH(RETRY_PENDING);
		}
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
 * Take the closing of our attempt (see proc.c): s_owner from our token to
 * our token | TR_OWNER_CLOSER. A reaper can hold it instead (our lease ran
 * out): then the attempt is not ours, unless it hands it back because a
 * touch came in time. Returns 0, or -ESTALE.
 */
static int take_closing(struct taskring_ctx *c)
{
	struct tr_slot *s = c->s;
	uint32_t expect = TR_MKSTATE(TASKRING_RUNNING, c->attempt, TR_TAG(c->state));
	for (;;) {
		uint32_t owner = c->me;
		if (atomic_compare_exchange_strong_explicit(&s->s_owner, &owner, c->me | TR_OWNER_CLOSER,
							    memory_order_seq_cst, memory_order_relaxed))
			break;
		if (!settle_owner(s, expect, c->me))
			return -ESTALE;
	}
	/* Ours, unless a reaper ended our attempt and another thread of this
	 * process (the same token) claimed the job's next one: then the owner
	 * word is that attempt's, and goes back to it at once. */
	uint32_t cur = atomic_load_explicit(&s->s_state, memory_order_acquire);
	if ((cur & ~TR_ST_FLAGS) == expect)
		return 0;
	atomic_store_explicit(&s->s_owner, c->me, memory_order_seq_cst);
	return -ESTALE;
}

/*
 * Decide how the handler's attempt ends (the message first: the handler's,
 * or one saying why: timeout, unknown outcome), take its closing and end it.
 * An attempt that is no longer ours (its lease ran out and a reaper ended
 * it) changes nothing, and its staged result is dropped: exactly one end is
 * accepted per attempt.
 */
static void end_attempt(struct taskring_worker *w, struct taskring_ctx *c, int outcome)
{
	struct taskring_store *st = w->st;
	struct tr_slot *s = c->s;
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
	if (take_closing(c)) {
		if (c->res_off)
			tr__arena_free(st, c->res_off);
		c->res_off = 0;
		return;
	}
	TR_CRASH(END_CLOSING);
	if (outcome == TASKRING_OK && c->has_result) {
		tr__slot_attach_result(st, s, c->res_inline, c->res_off, c->res_len);
		c->res_off = 0;
	} else if (c->res_off) {
		tr__arena_free(st, c->res_off);
		c->res_off = 0;
	}
	tr__attempt_close_end(st, c->job.slot, c->attempt, TR_TAG(c->state), outcome, msg, mlen, end_real);
}

/*
 * A prefork child tells its supervisor what it runs now, and wakes it if
 * the job's timeout comes before the supervisor means to wake (the store of
 * running and the load of sup_until are seq_cst, against the supervisor's
 * store of sup_until and its look at running).
 */
static void pf_started(struct pf_pool *pf, struct pf_child *c, const struct taskring_ctx *x)
{
	c->slot = x->job.slot;
	c->gen = x->job.gen;
	c->attempt = x->attempt;
	atomic_store_explicit(&c->deadline, x->deadline, memory_order_relaxed);
	atomic_store_explicit(&c->running, 1, memory_order_seq_cst);
	if (x->deadline < atomic_load_explicit(&pf->sup_until, memory_order_seq_cst) ||
	    !atomic_load_explicit(&pf->sup_until, memory_order_seq_cst)) {
		atomic_fetch_add_explicit(&c->seq, 1, memory_order_seq_cst);
		tr__futex_wake(&c->seq, 1, 0xffffffffu);
	}
}

/*
 * Run the claimed job in slot @idx: build the handler's context (the payload
 * is read in place, from the slot or the arena, after bounds checks), record
 * the start, call the handler and end the attempt. A job whose cancel was
 * requested before it started, or whose task this worker has no handler for,
 * does not reach a handler.
 */
static void run_job(struct taskring_worker *w, struct thread_slot *ts, uint32_t idx, uint32_t qi, int prefetched,
		    int64_t start_hint)
{
	struct taskring_store *st = w->st;
	struct tr_slot *s = &st->slots[idx];
	struct taskring_ctx c;
	int outcome;

	/* Not memset: err[] is 1 KiB and written only when used. */
	c.has_error = 0;
	c.errlen = 0;
	c.has_result = 0;
	c.res_off = 0;
	c.res_len = 0;
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
	 * the queue's lock) takes the last job's end as this one's start, and
	 * otherwise the time the claim read for the lease (@start_hint). The
	 * error is the claim itself, well under a microsecond, and the start
	 * is never placed before the job was due. A clock read costs ~35-50
	 * ns on a VM's kvm-clock.
	 */
	c.start_mono = start_hint ? start_hint : tr__now_mono();
	c.me = tr__proc_token(st);
	c.lease_ns = w->lease_ns ? w->lease_ns : TR_GET(s->s_timeout_ns);
	/* A job claimed ahead (prefetch) may have waited past its lease and
	 * been reaped: it is not ours then. Otherwise its lease starts now. */
	if (prefetched && touch_at(&c, tr__now_coarse()))
		return;
	int64_t started = tr__mono_to_real(c.start_mono);
	int64_t due = TR_GET(s->s_scheduled_at);
	TR_SET(s->s_started_at, started < due ? due : started);
	if (st->wal) {
		int64_t v[3] = {c.attempt, tr__pid(), TR_GET(s->s_started_at)};
		tr__wal_log(st, TR_LOG_START, s, v, 3, NULL, 0, NULL);
	}
	TR_CRASH(START);
	c.deadline = c.start_mono + TR_GET(s->s_timeout_ns);
	atomic_fetch_add_explicit(&st->queues[qi].q_started, 1, memory_order_relaxed);
	if (w->pf_self)
		pf_started(w->pf, w->pf_self, &c);
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
	end_attempt(w, &c, outcome);
	if (w->pf_self)
		atomic_store_explicit(&w->pf_self->running, 0, memory_order_release);
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
			uint32_t first = ts->next == 0;
			uint32_t idx = ts->claimed[ts->next++];
			if (atomic_load_explicit(&w->drain_expired, memory_order_relaxed))
				cancel_claimed(w->st, idx);
			run_job(w, ts, idx, ts->claimed_q, !first, first ? ts->claim_start : ts->last_end);
			continue;
		}
		if (ran && once)
			break;
		if (is_stopping(w))
			break;
		uint32_t max = ts ? w->prefetch : 1;
		uint32_t *out = ts ? ts->claimed : &one;
		int waited;
		int64_t claim_mono = 0;
		uint32_t n = try_claim(w, max, out, &qi, &waited, ts ? ts->last_end : 0, &claim_mono);
		if (waited)
			claim_mono = 0; /* the claim waited: read the clock afresh */
		if (n) {
			if (ts) {
				ts->claimed_q = qi;
				ts->nclaimed = n;
				ts->next = 0;
				ts->claim_start = claim_mono;
			} else {
				run_job(w, NULL, one, qi, 0, claim_mono);
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

/*
 * The worker's reaper thread (see "Leases and the reaper" in taskring.h):
 * every reap_interval_ns it marks this process alive (p_heartbeat) and, if
 * no process of the store has looked within the interval (h_reap_next, one
 * CAS), runs the reaper's cheap look. It sleeps on a private futex word that
 * taskring_worker_stop() moves.
 */
static void *reaper_main(void *arg)
{
	struct taskring_worker *w = arg;
	struct taskring_store *st = w->st;

	for (;;) {
		int64_t now = tr__now_mono();
		uint32_t tok = tr__proc_token(st);
		if (tok)
			atomic_store_explicit(&st->procs[TR_PROC_IDX(tok)].p_heartbeat, tr__now_real(),
					      memory_order_relaxed);
		int64_t next = atomic_load_explicit(&st->hdr->h_reap_next, memory_order_relaxed);
		if (now >= next && atomic_compare_exchange_strong_explicit(&st->hdr->h_reap_next, &next,
									  now + w->reap_interval_ns,
									  memory_order_relaxed, memory_order_relaxed))
			tr__reap(st, 0, NULL);
		if (atomic_load_explicit(&w->reaper_stop, memory_order_acquire))
			break;
		tr__futex_wait_op(&w->reaper_stop, 0, tr__now_mono() + w->reap_interval_ns, 0xffffffffu, 1);
		if (atomic_load_explicit(&w->reaper_stop, memory_order_acquire))
			break;
	}
	return NULL;
}

static void reaper_stop(struct taskring_worker *w)
{
	if (!w->reaper_started)
		return;
	atomic_store_explicit(&w->reaper_stop, 1, memory_order_release);
	tr__futex_wake_op(&w->reaper_stop, INT32_MAX, 0xffffffffu, 1);
	pthread_join(w->reaper, NULL);
	w->reaper_started = 0;
}


/* ---- prefork: children and their supervisor -------------------------------- */

#define FUTEX_TID_BITS 0x3fffffffu
#define FUTEX_WAITERS_BIT 0x80000000u
#define FUTEX_OWNER_DIED_BIT 0x40000000u
#define PF_FALLBACK_NS 50000000ll /* without futex_waitv: look this often */
#define PF_UNHELD_NS 5000000ll    /* a child that does not hold its mutex
				     (starting or leaving): look this often */

/* A child's life: hold its mutex, register, serve until told to stop. */
static void pf_child_main(struct taskring_worker *w, uint32_t k)
{
	struct pf_child *c = &w->pf->c[k];
	w->pf_self = c;
	w->reaper_started = 0;
	w->sup_started = 0;
	if (pthread_mutex_lock(&c->alive) == EOWNERDEAD)
		pthread_mutex_consistent(&c->alive);
	uint32_t sup = w->pf_sup;
	uint32_t tok = tr__proc_token(w->st);
	if (tok) /* before it claims: a cancel of its job wakes the supervisor,
		    and a reaper leaves its death to the supervisor */
		atomic_store_explicit(&w->st->procs[TR_PROC_IDX(tok)].p_supervised, sup, memory_order_release);
	atomic_store_explicit(&c->token, tok, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->seq, 1, memory_order_seq_cst);
	tr__futex_wake(&c->seq, 1, 0xffffffffu);
	struct thread_slot *ts = &w->threads[k];
	memset(ts, 0, sizeof(*ts));
	ts->w = w;
	serve(w, ts, -1, 0);
	pthread_mutex_unlock(&c->alive);
	_exit(0);
}

/* Fork child @k (its block made fresh). */
static int pf_spawn(struct taskring_worker *w, uint32_t k)
{
	struct pf_child *c = &w->pf->c[k];
	pthread_mutexattr_t a;

	memset(c, 0, sizeof(*c));
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&c->alive, &a);
	pthread_mutexattr_destroy(&a);
	w->pf_sup = TR_OWNER_HELD | tr__proc_token(w->st); /* (the child's copy is 0) */
	pid_t pid = fork();
	if (pid == 0)
		pf_child_main(w, k); /* never returns */
	if (pid < 0)
		return -errno;
	w->pf_pid[k] = pid;
	return 0;
}

enum pf_why { PF_DIED, PF_TIMEOUT, PF_CANCEL };

/*
 * Child @k is gone (@status from waitpid), because it died or because we
 * killed it (@why): end the attempt it was running, as a failed attempt or
 * cancelled, then let the reaper put back what else it held (jobs claimed
 * ahead with prefetch).
 */
/* The attempt child @k runs, as its state word reads now, or 0. */
static uint32_t pf_attempt(struct taskring_worker *w, struct pf_child *c)
{
	struct taskring_store *st = w->st;
	if (!atomic_load_explicit(&c->running, memory_order_acquire) || c->slot >= st->nslots)
		return 0;
	uint32_t state = atomic_load_explicit(&st->slots[c->slot].s_state, memory_order_acquire);
	if (TR_STATUS(state) == TASKRING_RUNNING && TR_ATTEMPT(state) == c->attempt &&
	    TR_TAG(state) == TR_GEN_TAG(c->gen))
		return state;
	return 0;
}

/* @held: the state of the attempt whose closing the supervisor took before
 * it killed the child (pf_kill()), or 0. */
static void pf_ended(struct taskring_worker *w, uint32_t k, int status, enum pf_why why, uint32_t held)
{
	struct taskring_store *st = w->st;
	struct pf_child *c = &w->pf->c[k];
	pid_t pid = w->pf_pid[k];

	w->pf_pid[k] = 0;
	uint32_t state = held ? held : pf_attempt(w, c);
	if (state) {
		struct tr_slot *s = &st->slots[c->slot];
		char msg[200];
		int n, outcome = TASKRING_RETRY;
		if (why == PF_TIMEOUT)
			n = snprintf(msg, sizeof(msg),
				     "attempt %u exceeded its timeout of %lld ms: handler process %d killed",
				     c->attempt, (long long)(TR_GET(s->s_timeout_ns) / 1000000), (int)pid);
		else if (why == PF_CANCEL) {
			n = snprintf(msg, sizeof(msg), "cancelled while running: handler process %d killed",
				     (int)pid);
			outcome = TASKRING_CANCEL;
		} else if (WIFSIGNALED(status)) {
			const char *sig = sigabbrev_np(WTERMSIG(status));
			n = snprintf(msg, sizeof(msg), "handler process %d died (SIG%s) while running attempt %u",
				     (int)pid, sig ? sig : "?", c->attempt);
		} else {
			n = snprintf(msg, sizeof(msg), "handler process %d exited (status %d) while running attempt %u",
				     (int)pid, WEXITSTATUS(status), c->attempt);
		}
		if (held) {
			tr__reap_end(st, c->slot, state, outcome, msg, (size_t)n);
		} else {
			uint32_t owner = atomic_load_explicit(&s->s_owner, memory_order_acquire);
			tr__reap_attempt(st, c->slot, state, owner, outcome, msg, (size_t)n);
		}
	}
	atomic_store_explicit(&c->running, 0, memory_order_relaxed);
	/* What else it held (jobs claimed ahead) is the reaper's now: a full
	 * walk, since the one that found it dead left its jobs to us. */
	uint32_t tok = atomic_load_explicit(&c->token, memory_order_relaxed);
	if (tok) {
		struct tr_proc *p = &st->procs[TR_PROC_IDX(tok)];
		uint32_t sup = atomic_load_explicit(&p->p_supervised, memory_order_relaxed);
		if (((atomic_load_explicit(&p->p_word, memory_order_acquire) >> 1) & TR_PROC_GEN_MASK) ==
		    TR_PROC_GEN(tok))
			atomic_compare_exchange_strong_explicit(&p->p_supervised, &sup, 0, memory_order_seq_cst,
								memory_order_relaxed);
	}
	tr__reap(st, 1, NULL);
}

/* Kill child @k (if it is still there), wait for it, end its attempt. */
static void pf_kill(struct taskring_worker *w, uint32_t k, enum pf_why why)
{
	struct taskring_store *st = w->st;
	struct pf_child *c = &w->pf->c[k];
	int status = 0;
	/* The attempt's closing first: a reaper that finds the child dead
	 * before we have ended the attempt then leaves it to us, and the
	 * error says why we killed it. */
	uint32_t held = pf_attempt(w, c);
	if (held) {
		uint32_t owner = atomic_load_explicit(&st->slots[c->slot].s_owner, memory_order_acquire);
		if ((owner & TR_OWNER_CLOSER) || !tr__reap_take(st, c->slot, held, owner))
			held = 0;
	}
	kill(w->pf_pid[k], SIGKILL);
	while (waitpid(w->pf_pid[k], &status, 0) < 0 && errno == EINTR)
		;
	pf_ended(w, k, status, why, held);
}

/*
 * The supervisor: one thread of the worker's process. Each round it takes
 * the futex words' values first, then looks (deaths with waitpid, cancel
 * requests, timeouts), then sleeps on those values until the earliest
 * running job's timeout: any change after the look ends the sleep at once.
 */
static void *pf_supervise(void *arg)
{
	struct taskring_worker *w = arg;
	struct taskring_store *st = w->st;
	struct pf_pool *pf = w->pf;
	_Atomic uint32_t *words[3 * TASKRING_PREFORK_MAX + 1];
	uint32_t vals[3 * TASKRING_PREFORK_MAX + 1];
	int told_stop = 0, no_waitv = 0;

	/* (Counted in w->running by taskring_worker_start(), before it ran.) */
	for (;;) {
		int stopping = is_stopping(w);
		if (stopping && !told_stop) {
			for (uint32_t k = 0; k < w->nthreads; k++)
				atomic_store_explicit(&pf->c[k].stop, 1, memory_order_seq_cst);
			atomic_fetch_add_explicit(&st->hdr->h_wake, 1, memory_order_seq_cst);
			tr__futex_wake(&st->hdr->h_wake, INT32_MAX, w->bits);
			told_stop = 1;
		}
		/* The words first. */
		atomic_store_explicit(&pf->sup_until, 0, memory_order_seq_cst);
		unsigned n = 0;
		int unheld = 0;
		words[n] = &w->sup_wake;
		vals[n++] = atomic_load_explicit(&w->sup_wake, memory_order_seq_cst);
		for (uint32_t k = 0; k < w->nthreads; k++) {
			struct pf_child *c = &pf->c[k];
			pid_t pid = w->pf_pid[k];
			if (!pid)
				continue;
			words[n] = &c->seq;
			vals[n++] = atomic_load_explicit(&c->seq, memory_order_seq_cst);
			_Atomic uint32_t *aw = (_Atomic uint32_t *)&c->alive; /* glibc: __data.__lock */
			uint32_t v = atomic_load_explicit(aw, memory_order_seq_cst);
			if ((v & FUTEX_TID_BITS) == (uint32_t)pid && !(v & FUTEX_OWNER_DIED_BIT)) {
				/* Ask the kernel to wake us when it dies. */
				if (!(v & FUTEX_WAITERS_BIT) &&
				    atomic_compare_exchange_strong_explicit(aw, &v, v | FUTEX_WAITERS_BIT,
									    memory_order_seq_cst, memory_order_seq_cst))
					v |= FUTEX_WAITERS_BIT;
				if (v & FUTEX_WAITERS_BIT) {
					words[n] = aw;
					vals[n++] = v;
				}
			} else {
				/* Not holding it: starting (it moves seq once it
				 * does) or leaving. Look again soon. */
				unheld = 1;
			}
			uint32_t tok = atomic_load_explicit(&c->token, memory_order_relaxed);
			if (tok) {
				words[n] = &st->procs[TR_PROC_IDX(tok)].p_cancel;
				vals[n] = atomic_load_explicit(words[n], memory_order_seq_cst);
				n++;
			}
		}
		/* Then the look. */
		int64_t now = tr__now_mono(), until = INT64_MAX;
		int expired = atomic_load_explicit(&w->drain_expired, memory_order_relaxed);
		uint32_t alive = 0;
		for (uint32_t k = 0; k < w->nthreads; k++) {
			struct pf_child *c = &pf->c[k];
			pid_t pid = w->pf_pid[k];
			int status = 0;
			if (!pid) {
				if (!stopping && pf_spawn(w, k) == 0)
					alive++;
				continue;
			}
			if (waitpid(pid, &status, WNOHANG) == pid) {
				pf_ended(w, k, status, PF_DIED, 0);
				if (!stopping && pf_spawn(w, k) == 0)
					alive++;
				continue;
			}
			alive++;
			if (!atomic_load_explicit(&c->running, memory_order_seq_cst) || c->slot >= st->nslots)
				continue;
			uint32_t state = atomic_load_explicit(&st->slots[c->slot].s_state, memory_order_acquire);
			if (TR_STATUS(state) != TASKRING_RUNNING || TR_ATTEMPT(state) != c->attempt ||
			    TR_TAG(state) != TR_GEN_TAG(c->gen))
				continue; /* ending: the child clears running next */
			int64_t dl = atomic_load_explicit(&c->deadline, memory_order_relaxed);
			enum pf_why why = PF_DIED;
			if ((state & TR_ST_CANCEL) || expired)
				why = PF_CANCEL;
			else if (now >= dl)
				why = PF_TIMEOUT;
			if (why != PF_DIED) {
				pf_kill(w, k, why);
				if (!stopping && pf_spawn(w, k) == 0)
					continue;
				alive--;
				continue;
			}
			if (dl < until)
				until = dl;
		}
		if (stopping && alive == 0)
			break;
		/* Then the sleep. */
		atomic_store_explicit(&pf->sup_until, until, memory_order_seq_cst);
		if (unheld && until > now + PF_UNHELD_NS)
			until = now + PF_UNHELD_NS;
		int64_t deadline = until == INT64_MAX ? -1 : until;
		int rc = no_waitv ? -ENOSYS : tr__futex_waitv(words, vals, n, deadline);
		if (rc == -ENOSYS) {
			/* Before Linux 5.16: look again within PF_FALLBACK_NS. */
			no_waitv = 1;
			int64_t d = tr__now_mono() + PF_FALLBACK_NS;
			tr__futex_wait(&w->sup_wake, vals[0], deadline >= 0 && deadline < d ? deadline : d, 0xffffffffu);
		}
	}
	leave(w);
	return NULL;
}

/* Wake the supervisor (stop, or a drain that ran out). */
static void pf_poke(struct taskring_worker *w)
{
	atomic_fetch_add_explicit(&w->sup_wake, 1, memory_order_seq_cst);
	tr__futex_wake(&w->sup_wake, INT32_MAX, 0xffffffffu);
}

int taskring_worker_start(struct taskring_worker *w)
{
	if (!w)
		return -EINVAL;
	if (w->started)
		return -EBUSY;
	/* Whatever died before we came is put back first. */
	tr__reap(w->st, 0, NULL);
	if (w->prefork) {
		/* The children first, while this process may have no thread
		 * of ours: fork() is simplest then. */
		for (uint32_t k = 0; k < w->nthreads; k++) {
			int rc = pf_spawn(w, k);
			if (rc) {
				for (uint32_t j = 0; j < k; j++) {
					kill(w->pf_pid[j], SIGKILL);
					waitpid(w->pf_pid[j], NULL, 0);
					w->pf_pid[j] = 0;
				}
				return rc;
			}
		}
	}
	if (w->reap_interval_ns > 0) {
		int rc = pthread_create(&w->reaper, NULL, reaper_main, w);
		if (rc)
			return -rc;
		/* Named before we return, so that it can be told apart. */
		pthread_setname_np(w->reaper, "taskring-reap");
		w->reaper_started = 1;
	}
	if (w->prefork) {
		enter(w); /* the supervisor's; it leaves when its children are gone */
		int rc = pthread_create(&w->sup, NULL, pf_supervise, w);
		if (rc) {
			leave(w);
			for (uint32_t j = 0; j < w->nthreads; j++) {
				kill(w->pf_pid[j], SIGKILL);
				waitpid(w->pf_pid[j], NULL, 0);
				w->pf_pid[j] = 0;
			}
			reaper_stop(w);
			atomic_store(&w->reaper_stop, 0);
			return -rc;
		}
		pthread_setname_np(w->sup, "taskring-pfork");
		w->sup_started = 1;
		w->started = 1;
		return 0;
	}
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
			reaper_stop(w);
			atomic_store(&w->reaper_stop, 0);
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
	if (w->prefork)
		pf_poke(w); /* it tells the children, and leaves when they are gone */

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
		if (w->prefork)
			pf_poke(w); /* it kills the children that still run a job */
		for (uint32_t i = 0; i < w->nthreads && !w->prefork; i++)
			if (atomic_load_explicit(&w->threads[i].busy, memory_order_acquire))
				taskring_job_cancel(&w->threads[i].current);
	}
	if (rc == 0 && w->started && !w->joined) {
		if (w->prefork)
			pthread_join(w->sup, NULL);
		for (uint32_t i = 0; i < w->nthreads && !w->prefork; i++)
			pthread_join(w->threads[i].tid, NULL);
		w->joined = 1;
	}
	if (rc == 0)
		reaper_stop(w);
	return rc;
}

int taskring_worker_destroy(struct taskring_worker *w)
{
	if (!w)
		return -EINVAL;
	taskring_worker_stop(w, -1);
	reaper_stop(w);
	atomic_fetch_sub(&w->st->nworkers, 1);
	if (w->pf) {
		munmap(w->pf, w->pf_bytes);
		free(w->pf_pid);
	}
	free(w->handlers);
	free(w->threads);
	free(w);
	return 0;
}
