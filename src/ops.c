/*
 * ops.c - operations on jobs and queues that are not enqueue or waiting:
 * cancel, change of priority, purge of a queue's pending jobs, purge of old
 * terminal jobs, listing and statistics.
 *
 * Operations on a pending job take its queue's lock: there a pending job can
 * be neither claimed nor recycled, so what is checked under the lock holds
 * until it is released. Operations on terminal jobs go through the recycle
 * ring: a slot popped from it belongs to the popper until pushed back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "wal.h"

/*
 * Lock the queue of @job (in slot @s) and read the job's state under that
 * lock, where a pending job can be neither claimed nor recycled. Returns 0
 * with the lock held, or -ENOENT (no lock held) when the slot no longer holds
 * the job.
 */
static int lock_job_queue(const struct taskring_job *job, struct tr_slot *s, struct tr_queue **qp, uint32_t *statep)
{
	struct taskring_store *st = job->store;
	uint32_t qi = TR_GET(s->s_queue);
	if (qi >= st->nqueues)
		return -ENOENT;
	struct tr_queue *q = &st->queues[qi];
	int rc = tr__lock(&q->q_lock, st, (int)qi);
	if (rc)
		return rc;
	uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);
	if (TR_TAG(state) != TR_GEN_TAG(job->gen) || TR_STATUS(state) == TR_ST_FREE) {
		tr__unlock(&q->q_lock);
		return -ENOENT;
	}
	*qp = q;
	*statep = state;
	return 0;
}

int taskring_job_cancel(const struct taskring_job *job)
{
	uint32_t state;
	int err;
	struct tr_slot *s = tr__read_begin(job, &state, &err);

	if (!s)
		return err;
	struct taskring_store *st = job->store;
	uint32_t tag = TR_GEN_TAG(job->gen);
	for (;;) {
		state = atomic_load_explicit(&s->s_state, memory_order_acquire);
		if (TR_TAG(state) != tag || TR_STATUS(state) == TR_ST_FREE)
			return -ENOENT;
		uint32_t status = TR_STATUS(state);
		if (TR_TERMINAL(status))
			return TASKRING_ESTATE;
		if (status == TASKRING_RUNNING) {
			if (state & TR_ST_CANCEL)
				return 1;
			if (!atomic_compare_exchange_weak_explicit(&s->s_state, &state, state | TR_ST_CANCEL,
								   memory_order_acq_rel, memory_order_relaxed))
				continue;
			/* Tell the process that runs it, if a prefork
			 * supervisor watches it: it kills the handler's process
			 * (worker.c). Thread-mode workers see the flag alone. */
			uint32_t owner = TR_OWNER_TOKEN(atomic_load_explicit(&s->s_owner, memory_order_relaxed));
			if (owner && atomic_load_explicit(&st->procs[TR_PROC_IDX(owner)].p_supervised,
							  memory_order_acquire)) {
				_Atomic uint32_t *w = &st->procs[TR_PROC_IDX(owner)].p_cancel;
				atomic_fetch_add_explicit(w, 1, memory_order_seq_cst);
				tr__futex_wake(w, INT32_MAX, 0xffffffffu);
			}
			return 1;
		}
		if (status != TASKRING_PENDING)
			return TASKRING_ECORRUPT; /* no such state: written over */
		/* Pending: under the queue lock nobody can claim it, so it
		 * cannot end and be recycled while we look. */
		struct tr_queue *q;
		int rc = lock_job_queue(job, s, &q, &state);
		if (rc)
			return rc;
		if (TR_STATUS(state) != TASKRING_PENDING) {
			tr__unlock(&q->q_lock);
			continue;
		}
		/* A job with dependencies may be waiting on them, in no list,
		 * where only the deps lock holds it still. */
		int deps = !!(TR_GET(s->s_flags) & TR_SF_DEPS);
		if (deps && (rc = tr__deps_lock(st)) != 0) {
			tr__unlock(&q->q_lock);
			return rc;
		}
		TR_SET(s->s_completed_at, tr__now_real());
		/* Ours to recycle once terminal (see proc.c). */
		atomic_store_explicit(&s->s_owner, tr__proc_token(st) | TR_OWNER_CLOSER, memory_order_relaxed);
		uint32_t next = TR_MKSTATE(TASKRING_CANCELLED, TR_ATTEMPT(state), tag) | TR_ST_CANCEL;
		/* Counted first, so it never lags what a woken waiter sees. */
		atomic_fetch_add_explicit(&q->q_cancelled, 1, memory_order_relaxed);
		uint64_t log_end = 0;
		int log_rc = 0;
		if (st->wal) {
			int64_t v[2] = {TR_ATTEMPT(state), TR_GET(s->s_completed_at)};
			log_rc = tr__wal_log(st, TR_LOG_CANCEL, s, v, 2, NULL, 0, &log_end);
		}
		rc = tr__slot_transition(s, state, next, NULL);
		if (rc == 0) {
			tr__queue_unlink_locked(st, q, job->slot);
			TR_CRASH(CANCEL_TERMINAL);
		} else {
			atomic_fetch_sub_explicit(&q->q_cancelled, 1, memory_order_relaxed);
		}
		if (deps)
			tr__deps_unlock(st);
		tr__unlock(&q->q_lock);
		if (rc)
			continue;
		tr__slot_finished(st, job->slot);
		/* TASKRING_DURABLE: return once the cancel is on disk. */
		if (st->wal && !log_rc)
			log_rc = tr__wal_commit(st, log_end);
		return log_rc;
	}
}

int taskring_job_set_priority(const struct taskring_job *job, int32_t priority)
{
	uint32_t state;
	int err;
	struct tr_slot *s = tr__read_begin(job, &state, &err);
	struct tr_queue *q;

	if (!s)
		return err;
	int rc = lock_job_queue(job, s, &q, &state);
	if (rc)
		return rc;
	uint64_t log_end = 0;
	if (TR_STATUS(state) != TASKRING_PENDING) {
		rc = TASKRING_ESTATE;
	} else {
		tr__queue_set_priority_locked(job->store, q, job->slot, priority);
		if (job->store->wal) {
			int64_t v[2] = {priority, TR_GET(s->s_scheduled_at)};
			rc = tr__wal_log(job->store, TR_LOG_RESCHEDULE, s, v, 2, NULL, 0, &log_end);
		}
	}
	tr__unlock(&q->q_lock);
	if (!rc && job->store->wal)
		rc = tr__wal_commit(job->store, log_end);
	return rc;
}

/*
 * Take the pending job in slot @idx out of the store, with its queue's lock
 * and the deps lock held (so no dependent can register meanwhile): it is
 * unlinked, its generation moves on (so its handles and id read as gone),
 * its blocks are freed, its waiters are woken (they find it gone) and its
 * slot is free. A job that has dependents is cancelled instead, so that
 * they are cancelled through it. Returns 0 (the caller pushes the slot into
 * the ring with tr__slot_finished() after unlocking), or -ESTALE.
 */
static int remove_pending_locked(struct taskring_store *st, struct tr_queue *q, uint32_t idx)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);

	if (TR_STATUS(state) != TASKRING_PENDING)
		return -ESTALE;
	tr__queue_unlink_locked(st, q, idx);
	/* Ours to recycle, cancelled or freed (see proc.c and ring.c). */
	atomic_store_explicit(&s->s_owner, tr__proc_token(st) | TR_OWNER_CLOSER, memory_order_relaxed);
	if (state & TR_ST_DEPS) {
		TR_SET(s->s_completed_at, tr__now_real());
		atomic_fetch_add_explicit(&q->q_cancelled, 1, memory_order_relaxed);
		if (st->wal) {
			int64_t v[2] = {TR_ATTEMPT(state), TR_GET(s->s_completed_at)};
			tr__wal_log(st, TR_LOG_CANCEL, s, v, 2, NULL, 0, NULL);
		}
		return tr__slot_transition(s, state, TR_MKSTATE(TASKRING_CANCELLED, TR_ATTEMPT(state), TR_TAG(state)),
					   NULL);
	}
	if (st->wal)
		tr__wal_log(st, TR_LOG_REMOVE, s, NULL, 0, NULL, 0, NULL);
	/* Under the locks the job cannot change state but for waiters
	 * registering, which the transition ignores (and wakes). */
	return tr__free_in_place(st, s, state);
}

/* The next linked job of @q (band 0's head, else the heap's top), or TR_NIL. */
static uint32_t next_linked(struct taskring_store *st, struct tr_queue *q, uint32_t qi)
{
	if (q->q_nbands > 0)
		return q->q_bands[0].b_head;
	if (atomic_load_explicit(&q->q_timers, memory_order_relaxed) > 0)
		return st->heaps[(size_t)qi * st->nslots];
	return TR_NIL;
}

/* The next job of @q at or after *@cursor waiting on its dependencies (in
 * no list), or TR_NIL. Deps lock held. */
static uint32_t next_waiting(struct taskring_store *st, uint32_t qi, uint32_t *cursor)
{
	for (; *cursor < st->nslots; (*cursor)++) {
		struct tr_slot *s = &st->slots[*cursor];
		uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);
		uint8_t loc = TR_GET(s->s_loc);
		if (TR_STATUS(state) == TASKRING_PENDING && TR_GET(s->s_queue) == qi &&
		    (loc == TR_LOC_WAITING || loc == TR_LOC_READYING))
			return (*cursor)++;
	}
	return TR_NIL;
}

int taskring_queue_purge(struct taskring_store *st, const char *queue, uint64_t *countp)
{
	if (!st || !queue)
		return -EINVAL;
	int qi = tr__queue_find(st, queue, 0);
	if (qi < 0)
		return qi;
	struct tr_queue *q = &st->queues[qi];
	uint64_t count = 0;
	uint32_t batch[64], cursor = 0;

	/* In rounds of up to 64, so the locks are never held for long and the
	 * freed slots go back to the ring (which may wake producers) soon:
	 * first the linked jobs, then those waiting on dependencies (a walk
	 * of the slot table that goes on where the last round stopped). */
	for (;;) {
		uint32_t n = 0;
		int rc = tr__lock(&q->q_lock, st, qi);
		if (rc)
			return rc;
		if ((rc = tr__deps_lock(st)) != 0) {
			tr__unlock(&q->q_lock);
			return rc;
		}
		while (n < 64) {
			uint32_t idx = next_linked(st, q, (uint32_t)qi);
			if (idx >= st->nslots)
				idx = next_waiting(st, (uint32_t)qi, &cursor);
			if (idx >= st->nslots)
				break;
			if (remove_pending_locked(st, q, idx) == 0)
				batch[n++] = idx;
			else
				tr__queue_unlink_locked(st, q, idx); /* not pending: cannot be linked */
		}
		tr__deps_unlock(st);
		tr__unlock(&q->q_lock);
		for (uint32_t i = 0; i < n; i++)
			tr__slot_finished(st, batch[i]);
		count += n;
		if (n < 64)
			break;
	}
	if (countp)
		*countp = count;
	return 0;
}

int taskring_store_purge_terminal(struct taskring_store *st, int64_t age_ns, uint64_t *countp)
{
	if (!st || age_ns < 0)
		return -EINVAL;
	/* One pass over what the ring held when we started. */
	uint64_t count = tr__reclaim(st, tr__ring_count(st), tr__now_real() - age_ns, 1);
	if (count)
		tr__wake_blocked(st);
	if (countp)
		*countp = count;
	return 0;
}

/* ---- listing and statistics ------------------------------------------------------ */

int taskring_job_next(struct taskring_store *st, uint32_t mask, const char *queue, const char *task,
		      uint64_t *cursor, struct taskring_job *jobp)
{
	int qi = -1, ti = -1;

	if (!st || !cursor || !jobp || (mask & ~((1u << TASKRING_STATUS_COUNT) - 1)))
		return -EINVAL;
	if (queue) {
		qi = tr__queue_find(st, queue, 0);
		if (qi == -ENOENT)
			return 0;
		if (qi < 0)
			return qi;
	}
	if (task) {
		ti = tr__task_find(st, task, 0);
		if (ti == -ENOENT)
			return 0;
		if (ti < 0)
			return ti;
	}
	if (!mask)
		mask = (1u << TASKRING_STATUS_COUNT) - 1;
	for (uint64_t i = *cursor; i < st->nslots; i++) {
		struct tr_slot *s = &st->slots[i];
		struct taskring_job job = {.store = st, .slot = (uint32_t)i};
		job.gen = atomic_load_explicit(&s->s_gen, memory_order_acquire);
		uint32_t state;
		int err;
		if ((job.gen & 1) || !tr__read_begin(&job, &state, &err))
			continue;
		if (!(mask & (1u << TR_STATUS(state))) || (qi >= 0 && TR_GET(s->s_queue) != (uint32_t)qi) ||
		    (ti >= 0 && TR_GET(s->s_task) != (uint32_t)ti))
			continue;
		for (int k = 0; k < 16; k++)
			job.uuid[k] = TR_GET(s->s_uuid[k]);
		if (tr__read_end(&job, s))
			continue;
		*cursor = i + 1;
		*jobp = job;
		return 1;
	}
	*cursor = st->nslots;
	return 0;
}

/*
 * Counts per state come from a walk of the slot table (each state word read
 * once), so they are exact for a quiet store and a consistent-per-slot
 * snapshot of a busy one; the cumulative counters are the queues' own.
 */
int taskring_queue_stats(struct taskring_store *st, const char *queue, struct taskring_queue_stats *out)
{
	struct taskring_queue_stats r;
	int qi = -1;

	if (!st || !out)
		return -EINVAL;
	if (queue) {
		qi = tr__queue_find(st, queue, 0);
		if (qi < 0)
			return qi;
	}
	memset(&r, 0, sizeof(r));
	for (uint32_t i = 0; i < st->nslots; i++) {
		struct tr_slot *s = &st->slots[i];
		uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);
		uint32_t status = TR_STATUS(state);
		if (status >= TASKRING_STATUS_COUNT || (qi >= 0 && TR_GET(s->s_queue) != (uint32_t)qi) ||
		    tr__ttl_expired(s, state))
			continue;
		r.by_status[status]++;
	}
	uint32_t used = atomic_load_explicit(&st->hdr->h_queues_used, memory_order_acquire);
	for (uint32_t q = 0; q < used && q < st->nqueues; q++) {
		if (qi >= 0 && q != (uint32_t)qi)
			continue;
		struct tr_queue *Q = &st->queues[q];
		r.enqueued += atomic_load_explicit(&Q->q_enqueued, memory_order_relaxed);
		r.started += atomic_load_explicit(&Q->q_started, memory_order_relaxed);
		r.completed += atomic_load_explicit(&Q->q_completed, memory_order_relaxed);
		r.failed += atomic_load_explicit(&Q->q_failed, memory_order_relaxed);
		r.dead += atomic_load_explicit(&Q->q_dead, memory_order_relaxed);
		r.cancelled += atomic_load_explicit(&Q->q_cancelled, memory_order_relaxed);
		r.retried += atomic_load_explicit(&Q->q_retried, memory_order_relaxed);
		if (qi >= 0)
			r.paused = (int)atomic_load_explicit(&Q->q_paused, memory_order_relaxed);
	}
	*out = r;
	return 0;
}
