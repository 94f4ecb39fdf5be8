/*
 * job.c - jobs: enqueue (single and batch), slot recycling, state
 * transitions, the job handle's reads (status, progress, errors, payload,
 * JSON) and copies of jobs (retry_dead, replay). Waiting is in wait.c;
 * cancel, purge, listing and statistics in ops.c.
 *
 * Slot life cycle. A producer pops the oldest free-or-terminal slot from the
 * recycle ring, makes its generation odd, frees the old job's arena blocks,
 * writes the new job, makes the generation even again (release) and then
 * stores the PENDING state (release) before linking the slot into its queue
 * under the queue lock. Arena blocks for the new job are taken before any
 * slot, and slots before anything is written, so a failing enqueue (or
 * batch) changes nothing: popped slots go back to the ring untouched.
 *
 * Reading a job (seqlock). Readers load s_gen (acquire), copy what they need
 * with relaxed loads, then load s_gen again after an acquire fence; if it
 * moved, the slot was recycled under them and the job is gone (-ENOENT). A
 * handle is (slot, generation, uuid); lookup by id decodes the slot from the
 * id and compares the stored uuid.
 *
 * Transitions. Every change of s_state is one compare-and-swap that clears
 * TR_ST_WAITERS and wakes the sleepers if it was set (see wait.c).
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

/* ---- handle validation -------------------------------------------------- */

/*
 * The slot a handle names, after the checks that need no shared memory: a
 * handle is a plain value the caller may have copied or forged, so its slot
 * index is bounds-checked here and an odd generation (one no stable job has)
 * is refused. Whether the job still lives is tr__read_begin()'s business.
 */
struct tr_slot *tr__job_slot(const struct taskring_job *job)
{
	if (!job || !job->store || job->slot >= job->store->nslots || (job->gen & 1))
		return NULL;
	return &job->store->slots[job->slot];
}

/* Is this terminal job past its result_ttl? (Then it reads as gone.) */
int tr__ttl_expired(struct tr_slot *s, uint32_t state)
{
	int64_t ttl = TR_GET(s->s_result_ttl_ns), now = tr__now_real(), done = TR_GET(s->s_completed_at);
	if (!TR_TERMINAL(TR_STATUS(state)) || ttl <= 0 || done >= now)
		return 0;
	/* (in unsigned arithmetic: the times come from the shared region,
	 * which a scribbler may have filled with anything) */
	return (uint64_t)now - (uint64_t)done > (uint64_t)ttl;
}

/*
 * Start a seqlock read of the job: returns the slot and its state, or NULL
 * with *err set (-EINVAL bad handle, -ENOENT gone).
 */
struct tr_slot *tr__read_begin(const struct taskring_job *job, uint32_t *statep, int *err)
{
	struct tr_slot *s = tr__job_slot(job);
	if (!s) {
		*err = -EINVAL;
		return NULL;
	}
	/* Acquire: pairs with the producer's release of s_gen, so the job's
	 * fields written before it are visible. */
	uint32_t g = atomic_load_explicit(&s->s_gen, memory_order_acquire);
	uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);
	if (g != job->gen || TR_TAG(state) != TR_GEN_TAG(g) || TR_STATUS(state) == TR_ST_FREE ||
	    tr__ttl_expired(s, state)) {
		*err = -ENOENT;
		return NULL;
	}
	*statep = state;
	return s;
}

/* Finish a seqlock read: 0 if everything read since read_begin is valid. */
int tr__read_end(const struct taskring_job *job, struct tr_slot *s)
{
	/* Acquire fence: the copies above happen before this re-check; pairs
	 * with the release fence in gen_begin(). */
#ifdef TR_TSAN
	return atomic_fetch_add_explicit(&s->s_gen, 0, memory_order_acq_rel) == job->gen ? 0 : -ENOENT;
#else
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&s->s_gen, memory_order_relaxed) == job->gen ? 0 : -ENOENT;
#endif
}

/* ---- state transitions --------------------------------------------------- */

void tr__slot_wake(struct tr_slot *s)
{
	tr__futex_wake(&s->s_state, INT32_MAX, 0xffffffffu);
}

/*
 * Move s_state from @expect (everything but TR_ST_WAITERS and TR_ST_DEPS must
 * match, so a cancel request that arrived since the caller looked makes it
 * fail) to @next. Clears TR_ST_WAITERS and wakes the sleepers if it was set;
 * keeps TR_ST_DEPS (a dependent registered meanwhile), except into the free
 * state. Returns 0, or -ESTALE when the state is no longer @expect. *@oldp
 * gets the old word.
 */
int tr__slot_transition(struct tr_slot *s, uint32_t expect, uint32_t next, uint32_t *oldp)
{
	const uint32_t ignore = TR_ST_WAITERS | TR_ST_DEPS;
	uint32_t old = atomic_load_explicit(&s->s_state, memory_order_relaxed);
	for (;;) {
		if ((old & ~ignore) != (expect & ~ignore))
			return -ESTALE;
		uint32_t to = next;
		if (TR_STATUS(next) != TR_ST_FREE)
			to |= old & TR_ST_DEPS;
		/* Acq_rel: release the job's fields written before the
		 * transition (result, times, errors) to whoever sees the new
		 * state; acquire so a cancel bit set before is seen. */
		if (atomic_compare_exchange_weak_explicit(&s->s_state, &old, to, memory_order_acq_rel,
							  memory_order_relaxed))
			break;
	}
	if (old & TR_ST_WAITERS)
		tr__slot_wake(s);
	if (oldp)
		*oldp = old;
	return 0;
}

/*
 * A slot whose job just became terminal: its dependents, if it has any, are
 * resolved first (deps.c), then it goes to the ring's tail. May be called
 * with a queue lock held only for a job that did not complete (a completion
 * can link dependents into queues).
 */
void tr__slot_finished(struct taskring_store *st, uint32_t idx)
{
	if (atomic_load_explicit(&st->slots[idx].s_state, memory_order_acquire) & TR_ST_DEPS)
		tr__deps_resolve(st, idx);
	tr__slot_release(st, idx);
}

/* Push the slot of a job that ended (or was removed while pending) into the
 * recycle ring; producers blocked on a full store are woken only if there
 * are any. */
void tr__slot_release(struct taskring_store *st, uint32_t idx)
{
	if (st->wal)
		tr__wal_ended(st); /* (no longer owed room for its end) */
	tr__ring_push(st, idx);
	tr__wake_blocked(st);
}

static void free_error_chain(struct taskring_store *st, uint64_t off)
{
	for (int i = 0; off && i <= TASKRING_MAX_RETRIES_LIMIT + 8; i++) {
		uint32_t len;
		struct tr_block *b = (struct tr_block *)tr__arena_data(st, off, &len);
		if (!b)
			return;
		b--; /* tr__arena_data returns the data after the header */
		uint64_t next = TR_GET(b->k_next);
		tr__arena_free(st, off);
		off = next;
	}
}

/* Free the arena blocks of the job in @s (whose generation is odd). */
/* Take the block @*offp from the slot, then free it: a process killed in
 * between leaks it, and never leaves a slot naming a freed block (which the
 * next release, the reaper's or a producer's, would free again). */
static void drop_block(struct taskring_store *st, uint64_t *offp)
{
	uint64_t off = TR_GET(*offp);
	TR_SET(*offp, 0);
	if (off)
		tr__arena_free(st, off);
}

static void release_blocks(struct taskring_store *st, struct tr_slot *s)
{
	uint8_t flags = TR_GET(s->s_flags);
	if (flags & TR_SF_PAYLOAD_INLINE)
		TR_SET(s->s_payload_off, 0);
	else
		drop_block(st, &s->s_payload_off);
	if (flags & TR_SF_RESULT_INLINE)
		TR_SET(s->s_result_off, 0);
	else
		drop_block(st, &s->s_result_off);
	drop_block(st, &s->s_meta_off);
	drop_block(st, &s->s_delays_off);
	TR_SET(s->s_flags, flags & ~(TR_SF_UNIQUE | TR_SF_DEPS));
	if (flags & TR_SF_UNIQUE)
		drop_block(st, &s->s_unique_off);
	if (flags & TR_SF_DEPS)
		drop_block(st, &s->s_deps_off);
	if (atomic_load_explicit(&s->s_state, memory_order_relaxed) & TR_ST_DEPS)
		tr__dents_free(st, s);
	uint64_t errors = TR_GET(s->s_errors_off);
	TR_SET(s->s_errors_off, 0);
	free_error_chain(st, errors);
	TR_SET(s->s_flags, 0);
}

/* Make the slot's generation odd: readers of the old job will notice. */
static uint32_t gen_begin(struct tr_slot *s)
{
	uint32_t g = atomic_load_explicit(&s->s_gen, memory_order_relaxed) | 1;
	/* Release fence after the store: the odd generation is visible before
	 * any field of the slot changes (seqlock writer side); pairs with the
	 * acquire fence in tr__read_end(). */
#ifdef TR_TSAN
	atomic_exchange_explicit(&s->s_gen, g, memory_order_acq_rel);
#else
	atomic_store_explicit(&s->s_gen, g, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
#endif
	return g;
}

/*
 * Remove the job in slot @s (ours alone: popped from the ring, or pending
 * under its queue's lock) from the store: its generation moves on, so its
 * handles and id read as gone; its blocks are freed; its state becomes free,
 * waking any waiter, who then finds it gone. @state is the word we saw.
 */
int tr__free_in_place(struct taskring_store *st, struct tr_slot *s, uint32_t state)
{
	uint32_t g = gen_begin(s);
	release_blocks(st, s);
	atomic_store_explicit(&s->s_gen, g + 1, memory_order_release);
	return tr__slot_transition(s, state, TR_MKSTATE(TR_ST_FREE, 0, TR_GEN_TAG(g + 1)), NULL);
}

/*
 * Look at up to @max of the oldest entries of the recycle ring and remove
 * every terminal job among them that ended at or before @ended_before
 * (CLOCK_REALTIME; INT64_MAX = any): its blocks are freed and its slot is
 * free (its handles read -ENOENT from then on). Returns how many. Serves a
 * full arena (terminal results go before new work is refused) and
 * taskring_store_purge_terminal().
 */
uint32_t tr__reclaim(struct taskring_store *st, uint32_t max, int64_t ended_before, int log)
{
	uint32_t count = 0;

	/* Through the ring: a slot popped from it is ours until pushed back,
	 * so no producer can be recycling it while we free it. */
	for (uint32_t n = 0; n < max; n++) {
		uint32_t idx;
		if (tr__ring_pop(st, &idx) < 0)
			break;
		struct tr_slot *s = &st->slots[idx];
		uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);
		if (TR_TERMINAL(TR_STATUS(state)) && TR_GET(s->s_completed_at) <= ended_before) {
			/* A purge is recorded, so recovery does not bring the
			 * job back; room for a new job is not (its own record
			 * replaces the old one in the slot). */
			if (log && st->wal)
				tr__wal_log(st, TR_LOG_REMOVE, s, NULL, 0, NULL, 0, NULL);
			if (tr__free_in_place(st, s, state) == 0)
				count++;
		}
		tr__ring_give_back(st, idx);
	}
	return count;
}

/*
 * tr__arena_alloc() that, while the arena is full, takes the blocks of the
 * oldest terminal jobs, 64 at a time, until there is room or the whole ring
 * has been looked at (then 0).
 */
uint64_t tr__arena_alloc_reclaim(struct taskring_store *st, size_t len)
{
	for (uint32_t seen = 0;; seen += 64) {
		uint64_t off = tr__arena_alloc(st, len);
		if (off || seen >= st->nslots)
			return off;
		tr__reclaim(st, 64, INT64_MAX, 0);
	}
}

/* ---- results ---------------------------------------------------------------- */

void tr__slot_drop_result(struct taskring_store *st, struct tr_slot *s)
{
	if (!(TR_GET(s->s_flags) & TR_SF_RESULT_INLINE) && TR_GET(s->s_result_off))
		tr__arena_free(st, TR_GET(s->s_result_off));
	TR_SET(s->s_result_off, 0);
	TR_SET(s->s_result_len, 0);
	TR_SET(s->s_flags, TR_GET(s->s_flags) & ~TR_SF_RESULT_INLINE);
}

/* Give the job in @s (held by the caller: the closer of its attempt, or a
 * replay) the result of @len bytes at @inl (up to TR_INLINE_RESULT bytes,
 * kept in the slot) or in the arena block @off (filled, now the job's). */
void tr__slot_attach_result(struct taskring_store *st, struct tr_slot *s, const void *inl, uint64_t off, size_t len)
{
	tr__slot_drop_result(st, s);
	if (off) {
		tr__arena_attach(st, off);
		TR_SET(s->s_result_off, off);
	} else {
		if (len)
			tr__copy_shared(s->s_inline_result, inl, len);
		TR_SET(s->s_flags, TR_GET(s->s_flags) | TR_SF_RESULT_INLINE);
	}
	TR_SET(s->s_result_len, (uint32_t)len);
}

/* Set the result of the job in @s (held by the caller, as above). */
int tr__slot_set_result(struct taskring_store *st, struct tr_slot *s, const void *data, size_t len)
{
	uint64_t off = 0;
	tr__slot_drop_result(st, s);
	if (len > TR_INLINE_RESULT) {
		off = tr__arena_alloc_reclaim(st, len);
		if (!off)
			return -ENOSPC;
		tr__copy_shared((struct tr_block *)(st->arena + off) + 1, data, len);
	}
	tr__slot_attach_result(st, s, data, off, len);
	return 0;
}

/* ---- errors --------------------------------------------------------------- */

/*
 * Add an entry to the slot's error history (newest first): an error that
 * happened at @now (the time its log record gives, so a replay makes the
 * same entry). Called only by the job's owner, before its transition, or
 * by a replay.
 */
int tr__error_append_at(struct taskring_store *st, struct tr_slot *s, uint32_t attempt, const char *msg, size_t len,
			int64_t now)
{
	if (len > TASKRING_ERROR_MAX)
		len = TASKRING_ERROR_MAX;
	size_t need = sizeof(struct tr_error_entry) + len + 1;
	uint64_t off = tr__arena_alloc_reclaim(st, need);
	if (!off)
		return -ENOSPC;
	struct tr_block *b = (struct tr_block *)(st->arena + off);
	struct tr_error_entry *e = (struct tr_error_entry *)(b + 1);
	e->e_failed_at = (uint64_t)now;
	e->e_attempt = attempt;
	e->e_len = (uint32_t)len;
	tr__uuid7(e->e_uuid, tr__uuid_slot(s->s_uuid), now);
	memcpy(e->e_text, msg, len);
	e->e_text[len] = 0;
	TR_SET(b->k_next, TR_GET(s->s_errors_off));
	TR_SET(s->s_errors_off, off);
	return 0;
}

static struct tr_error_entry *error_at(struct taskring_store *st, uint64_t off, uint64_t *nextp);

/* The offsets of the slot's error entries, newest first (into @offs, unless
 * it is NULL); returns how many. The count is derived, never stored. */
#define ERRORS_MAX (TASKRING_MAX_RETRIES_LIMIT + 8)
static size_t collect_errors(struct taskring_store *st, struct tr_slot *s, uint64_t offs[ERRORS_MAX])
{
	size_t n = 0;
	uint64_t off = TR_GET(s->s_errors_off);
	while (off && n < ERRORS_MAX) {
		uint64_t next;
		if (!error_at(st, off, &next))
			break;
		if (offs)
			offs[n] = off;
		n++;
		off = next;
	}
	return n;
}

static struct tr_error_entry *error_at(struct taskring_store *st, uint64_t off, uint64_t *nextp)
{
	uint32_t len;
	void *d = tr__arena_data(st, off, &len);
	if (!d || len < sizeof(struct tr_error_entry))
		return NULL;
	struct tr_error_entry *e = d;
	if (e->e_len > len - sizeof(struct tr_error_entry) - 1 || e->e_len > TASKRING_ERROR_MAX)
		return NULL;
	*nextp = TR_GET(((struct tr_block *)d - 1)->k_next);
	return e;
}

/* ---- checkpoints ----------------------------------------------------------- */

static const void *blob(struct taskring_store *st, struct tr_slot *s, int inline_flag, const uint8_t *inl,
			size_t inl_max, uint64_t off, uint32_t len);

/* A NUL-terminated string in an arena block (0 = none): its bytes and
 * length, or NULL when the block is unsound. */
static const char *arena_str(struct taskring_store *st, uint64_t off, uint32_t *lenp)
{
	uint32_t blen;
	const char *p = off ? tr__arena_data(st, off, &blen) : NULL;
	*lenp = p && blen ? (uint32_t)strnlen(p, blen - 1) : 0;
	return p;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * The job in slot @idx, whole, as a checkpoint's "job" record (log.c) in
 * *@r: its blobs point into the region, but for the dependencies and the
 * error history, which are encoded into *@scratch (grown as needed). For a
 * region that nobody changes meanwhile (compaction's own). Returns 0, 1
 * when the slot holds no job, -ENOMEM, or -EIO (an unsound slot).
 */
int tr__job_snapshot(struct taskring_store *st, uint32_t idx, struct tr_logrec *r, uint8_t **scratch, size_t *scap)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t state = atomic_load_explicit(&s->s_state, memory_order_relaxed), n, len;
	uint32_t qi = TR_GET(s->s_queue), ti = TR_GET(s->s_task);
	if (TR_STATUS(state) == TR_ST_FREE)
		return 1;
	if (TR_STATUS(state) > TASKRING_CANCELLED || qi >= st->nqueues || ti >= st->ntasks)
		return -EIO;
	memset(r, 0, sizeof(*r));
	r->type = TR_LOG_JOB;
	memcpy(r->uuid, s->s_uuid, 16);
	int64_t v[TR_LOG_SCALARS] = {
		TR_GET(s->s_priority),	   TR_GET(s->s_max_retries), TR_GET(s->s_created_at), TR_GET(s->s_scheduled_at),
		TR_GET(s->s_timeout_ns),   TR_GET(s->s_result_ttl_ns), TR_GET(s->s_backoff_base),
		TR_GET(s->s_backoff_cap),  TR_GET(s->s_expires_at), TR_STATUS(state), TR_ATTEMPT(state),
		TR_GET(s->s_retry_count), TR_GET(s->s_started_at), TR_GET(s->s_completed_at), TR_GET(s->s_owner_pid)};
	memcpy(r->v, v, sizeof(v));
	r->blob[0] = st->queues[qi].q_name;
	r->blen[0] = (uint32_t)strnlen(st->queues[qi].q_name, TASKRING_NAME_MAX);
	r->blob[1] = st->tasks[ti];
	r->blen[1] = (uint32_t)strnlen(st->tasks[ti], TASKRING_NAME_MAX);
	len = TR_GET(s->s_payload_len);
	r->blob[2] = blob(st, s, TR_SF_PAYLOAD_INLINE, s->s_inline_payload, TR_INLINE_PAYLOAD,
			  TR_GET(s->s_payload_off), len);
	r->blen[2] = len;
	r->blob[3] = arena_str(st, TR_GET(s->s_meta_off), &r->blen[3]);
	if (TR_GET(s->s_flags) & TR_SF_UNIQUE)
		r->blob[4] = arena_str(st, TR_GET(s->s_unique_off), &r->blen[4]);
	if (TR_GET(s->s_delays_off)) {
		r->blob[5] = tr__arena_data(st, TR_GET(s->s_delays_off), &r->blen[5]);
		if (!r->blob[5] || r->blen[5] % 8)
			return -EIO;
	}
	len = TR_GET(s->s_result_len);
	r->blob[7] = blob(st, s, TR_SF_RESULT_INLINE, s->s_inline_result, TR_INLINE_RESULT, TR_GET(s->s_result_off),
			  len);
	r->blen[7] = len;
	if (!r->blob[2] || !r->blob[7] || (TR_GET(s->s_meta_off) && !r->blob[3]) ||
	    ((TR_GET(s->s_flags) & TR_SF_UNIQUE) && !r->blob[4]))
		return -EIO;
	/* Dependencies and errors, encoded into the scratch buffer. */
	uint64_t offs[ERRORS_MAX];
	size_t nerr = collect_errors(st, s, offs), need = 0;
	struct tr_dep *deps = tr__deps_of(st, s, &n);
	if (!deps)
		n = 0;
	need = 16 * (size_t)n;
	for (size_t k = 0; k < nerr; k++) {
		uint64_t next;
		need += 16 + error_at(st, offs[k], &next)->e_len;
	}
	if (tr__buf_reserve(scratch, scap, need, 4096))
		return -ENOMEM;
	uint8_t *p = *scratch;
	for (uint32_t k = 0; k < n; k++, p += 16)
		memcpy(p, deps[k].d_uuid, 16);
	r->blob[6] = *scratch;
	r->blen[6] = 16 * n;
	r->blob[8] = p;
	for (size_t k = nerr; k-- > 0;) { /* oldest first */
		uint64_t next;
		struct tr_error_entry *e = error_at(st, offs[k], &next);
		put_le(p, e->e_failed_at, 8);
		put_le(p + 8, e->e_attempt, 4);
		put_le(p + 12, e->e_len, 4);
		memcpy(p + 16, e->e_text, e->e_len);
		p += 16 + e->e_len;
	}
	r->blen[8] = (uint32_t)(p - (uint8_t *)r->blob[8]);
	return 0;
}

/* ---- enqueue ------------------------------------------------------------ */

/* One job, validated and resolved, with its arena blocks. */

void taskring_enqueue_opts_init(struct taskring_enqueue_opts *o)
{
	if (o)
		*o = (struct taskring_enqueue_opts)TASKRING_ENQUEUE_OPTS_INIT;
}

/*
 * Validate enqueue options without touching the store. Every rule here is
 * listed under taskring_enqueue()'s errors in the header; reserved fields must
 * be zero so that a later release can give them a meaning without old
 * callers passing garbage into it.
 */
static int check_opts(const struct taskring_enqueue_opts *o)
{
	if (o->abi != TASKRING_ENQUEUE_OPTS_ABI)
		return TASKRING_EOPTS;
	for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i])
			return -EINVAL;
	if (o->reserved0 || o->reserved1 || (o->flags & ~TASKRING_ENQ_BLOCK))
		return -EINVAL;
	if (!o->depends_on != !o->n_depends_on || o->n_depends_on > TASKRING_DEPENDS_MAX)
		return -EINVAL;
	if (o->max_retries < 0 || o->max_retries > TASKRING_MAX_RETRIES_LIMIT)
		return -EINVAL;
	if (o->delay_ns < 0 || o->eta_ns < 0 || (o->delay_ns && o->eta_ns) || o->timeout_ns <= 0 || o->expires_ns < 0 ||
	    o->result_ttl_ns < 0 || o->backoff_base_ns < 0 || o->backoff_cap_ns < o->backoff_base_ns)
		return -EINVAL;
	if ((o->flags & TASKRING_ENQ_BLOCK) && o->block_timeout_ns < -1)
		return -EINVAL;
	if (o->retry_delays_ns) {
		if (o->n_retry_delays == 0 || o->n_retry_delays > TASKRING_MAX_RETRY_DELAYS)
			return -EINVAL;
		for (uint32_t i = 0; i < o->n_retry_delays; i++)
			if (o->retry_delays_ns[i] < 0)
				return -EINVAL;
	} else if (o->n_retry_delays) {
		return -EINVAL;
	}
	if (o->metadata && strnlen(o->metadata, TASKRING_METADATA_MAX + 1) > TASKRING_METADATA_MAX)
		return -EMSGSIZE;
	return 0;
}

/* @o has passed check_opts(). Names are checked by the table lookups. */
static int resolve_item(struct taskring_store *st, const char *task, const void *payload, size_t len,
			const struct taskring_enqueue_opts *o, struct enq_req *r)
{
	int rc;

	if (!task || (!payload && len))
		return -EINVAL;
	if (len > st->max_payload)
		return -EMSGSIZE;
	rc = tr__task_find(st, task, 0);
	if (rc < 0)
		return rc == -ENOENT ? TASKRING_ENOTASK : rc;
	memset(r, 0, sizeof(*r));
	r->task = (uint32_t)rc;
	rc = tr__queue_find(st, o->queue ? o->queue : "default", 1);
	if (rc < 0)
		return rc;
	r->queue = (uint32_t)rc;
	r->payload = payload;
	r->len = len;
	r->priority = o->priority;
	r->max_retries = (uint32_t)o->max_retries;
	r->delay_ns = o->delay_ns;
	r->eta_ns = o->eta_ns;
	r->timeout_ns = o->timeout_ns;
	r->ttl_ns = o->result_ttl_ns;
	r->base_ns = o->backoff_base_ns;
	r->cap_ns = o->backoff_cap_ns;
	r->expires_ns = o->expires_ns;
	r->delays = o->retry_delays_ns;
	r->ndelays = o->retry_delays_ns ? o->n_retry_delays : 0;
	r->meta = o->metadata;
	r->metalen = o->metadata ? strlen(o->metadata) : 0;
	if (o->unique_key) {
		r->ukeylen = strnlen(o->unique_key, TASKRING_UNIQUE_KEY_MAX + 1);
		if (r->ukeylen == 0)
			return -EINVAL;
		if (r->ukeylen > TASKRING_UNIQUE_KEY_MAX)
			return -ENAMETOOLONG;
		r->ukey = o->unique_key;
		r->uhash = tr__unique_hash(r->ukey, r->ukeylen);
	}
	r->xdeps = o->depends_on;
	r->nxdeps = o->depends_on ? o->n_depends_on : 0;
	r->ndeps = r->nxdeps;
	/* A first look at the dependencies, before any block is taken, so
	 * that a bad one is refused with nothing carved; tr__deps_prepare()
	 * looks again under the deps lock, where it counts. */
	for (uint32_t i = 0; i < r->nxdeps; i++) {
		const struct taskring_job *h = &r->xdeps[i];
		uint32_t state;
		int err;
		if (h->store != st)
			return -EINVAL;
		struct tr_slot *s = tr__read_begin(h, &state, &err);
		if (!s)
			return err;
		uint32_t status = TR_STATUS(state);
		if (TR_TERMINAL(status) && status != TASKRING_COMPLETE)
			return TASKRING_EDEPFAILED;
	}
	return 0;
}

/* Give back the blocks taken for @n requests (a batch that failed). */
static void free_req_blocks(struct taskring_store *st, struct enq_req *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (r[i].payload_off)
			tr__arena_free(st, r[i].payload_off);
		if (r[i].meta_off)
			tr__arena_free(st, r[i].meta_off);
		if (r[i].delays_off)
			tr__arena_free(st, r[i].delays_off);
		if (r[i].ukey_off)
			tr__arena_free(st, r[i].ukey_off);
		if (r[i].deps_off)
			tr__arena_free(st, r[i].deps_off);
		r[i].payload_off = r[i].meta_off = r[i].delays_off = r[i].ukey_off = r[i].deps_off = 0;
	}
}

/*
 * Take the arena blocks every job of the batch needs; all or none. When the
 * arena is full, the oldest terminal jobs give up their blocks, 64 at a time,
 * before the call fails with -EAGAIN.
 */
static int alloc_req_blocks(struct taskring_store *st, struct enq_req *r, size_t n)
{
	for (uint32_t reclaimed = 0;; reclaimed += 64) {
		size_t i;
		for (i = 0; i < n; i++) {
			if (r[i].len > TR_INLINE_PAYLOAD && !(r[i].payload_off = tr__arena_put(st, r[i].payload, r[i].len)))
				break;
			if (r[i].meta && !(r[i].meta_off = tr__arena_put(st, r[i].meta, r[i].metalen + 1)))
				break;
			if (r[i].ndelays &&
			    !(r[i].delays_off = tr__arena_put(st, r[i].delays, r[i].ndelays * sizeof(int64_t))))
				break;
			if (r[i].ukey && !(r[i].ukey_off = tr__arena_put(st, r[i].ukey, r[i].ukeylen + 1)))
				break;
			if (r[i].ndeps && !(r[i].deps_off = tr__arena_alloc(st, r[i].ndeps * sizeof(struct tr_dep))))
				break;
		}
		if (i == n)
			return 0;
		free_req_blocks(st, r, i + 1);
		if (reclaimed >= st->nslots)
			return -EAGAIN;
		tr__reclaim(st, 64, INT64_MAX, 0);
	}
}

/* Write job @r into slot @idx (popped from the ring, so ours alone). */
static void fill_slot(struct taskring_store *st, uint32_t idx, const struct enq_req *r, int64_t now,
		      struct taskring_job *out)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t g = gen_begin(s);

	release_blocks(st, s);
	TR_SET(s->s_queue, (uint16_t)r->queue);
	TR_SET(s->s_task, (uint16_t)r->task);
	TR_SET(s->s_priority, r->priority);
	TR_SET(s->s_max_retries, r->max_retries);
	TR_SET(s->s_retry_count, 0);
	atomic_store_explicit(&s->s_progress, TR_NO_PROGRESS, memory_order_relaxed);
	TR_SET(s->s_prev, TR_NIL);
	TR_SET(s->s_next, TR_NIL);
	TR_SET(s->s_heap_pos, TR_NIL);
	TR_SET(s->s_loc, TR_LOC_NONE);
	TR_SET(s->s_payload_len, (uint32_t)r->len);
	TR_SET(s->s_result_len, 0);
	TR_SET(s->s_owner_pid, 0);
	TR_SET(s->s_created_at, now);
	TR_SET(s->s_scheduled_at, r->eta_ns ? r->eta_ns : now + r->delay_ns);
	TR_SET(s->s_started_at, 0);
	TR_SET(s->s_completed_at, 0);
	TR_SET(s->s_timeout_ns, r->timeout_ns);
	TR_SET(s->s_result_ttl_ns, r->ttl_ns);
	TR_SET(s->s_backoff_base, r->base_ns);
	TR_SET(s->s_backoff_cap, r->cap_ns);
	TR_SET(s->s_expires_at, r->expires_ns ? now + r->expires_ns : 0);
	if (r->len <= TR_INLINE_PAYLOAD) {
		TR_SET(s->s_flags, TR_SF_PAYLOAD_INLINE);
		if (r->len)
			tr__copy_shared(s->s_inline_payload, r->payload, r->len);
	} else {
		tr__arena_attach(st, r->payload_off);
		TR_SET(s->s_payload_off, r->payload_off);
	}
	tr__arena_attach(st, r->meta_off);
	TR_SET(s->s_meta_off, r->meta_off);
	tr__arena_attach(st, r->delays_off);
	TR_SET(s->s_delays_off, r->delays_off);
	if (r->ukey) {
		TR_SET(s->s_flags, TR_GET(s->s_flags) | TR_SF_UNIQUE);
		tr__arena_attach(st, r->ukey_off);
		TR_SET(s->s_unique_off, r->ukey_off);
		TR_SET(s->s_unique_hash, r->uhash);
	}
	uint32_t deps_bit = 0;
	if (r->ndeps) {
		/* Its tr_dep array was written by tr__deps_prepare() (and is
		 * completed, with s_deps_left, by tr__deps_commit()). */
		TR_SET(s->s_flags, TR_GET(s->s_flags) | TR_SF_DEPS);
		tr__arena_attach(st, r->deps_off);
		TR_SET(s->s_deps_off, r->deps_off);
		TR_SET(s->s_ndeps, r->ndeps);
		TR_SET(s->s_deps_left, 0);
	}
	if (r->dents) {
		/* A later item of the batch depends on it: born with the bit,
		 * its list filled by tr__deps_commit(). */
		TR_SET(s->s_dents_head, 0);
		TR_SET(s->s_dents_tail, 0);
		deps_bit = TR_ST_DEPS;
	}
	uint8_t uuid[16];
	tr__uuid7(uuid, idx, now);
	tr__copy_shared(s->s_uuid, uuid, 16);
	g += 1;
	/* Release: the job's fields (and its uuid) are visible to any reader
	 * that sees the even generation. */
	atomic_store_explicit(&s->s_gen, g, memory_order_release);
	/* Release: and to any reader of the PENDING state. */
	atomic_store_explicit(&s->s_state, TR_MKSTATE(TASKRING_PENDING, 0, TR_GEN_TAG(g)) | deps_bit,
			      memory_order_release);
	if (out) {
		out->store = st;
		out->slot = idx;
		out->gen = g;
		memcpy(out->uuid, uuid, 16);
	}
}

/*
 * Recovery: put the job of an enqueue record back into slot @idx of a region
 * nobody else sees yet, whatever the slot held (a job it replaced there).
 * @r was built from the record (r->eta_ns = its scheduled_at, expiry as a
 * duration from @created_at); the dependencies' entries are completed by
 * tr__deps_restore(). Pending, in no list, until recovery links it.
 */
int tr__job_restore(struct taskring_store *st, uint32_t idx, struct enq_req *r, const uint8_t uuid[16],
		    int64_t created_at, const uint8_t *dep_uuids)
{
	struct taskring_job made;
	int rc = alloc_req_blocks(st, r, 1);
	if (rc)
		return rc;
	if (r->ndeps) {
		struct tr_dep *d = (struct tr_dep *)(st->arena + r->deps_off + sizeof(struct tr_block));
		for (uint32_t k = 0; k < r->ndeps; k++) {
			memset(&d[k], 0, sizeof(d[k]));
			memcpy(d[k].d_uuid, dep_uuids + 16 * k, 16);
			d[k].d_slot = tr__uuid_slot(d[k].d_uuid);
		}
	}
	fill_slot(st, idx, r, created_at, &made);
	tr__copy_shared(st->slots[idx].s_uuid, uuid, 16);
	return 0;
}

/* Slots in the recycle ring now (a snapshot). */
uint32_t tr__ring_count(struct taskring_store *st)
{
	uint32_t head = atomic_load_explicit(&st->hdr->h_ring_head, memory_order_seq_cst);
	uint32_t tail = atomic_load_explicit(&st->hdr->h_ring_tail, memory_order_seq_cst);
	return (int32_t)(tail - head) > 0 ? tail - head : 0;
}

/*
 * Wake producers blocked on a full store, if any. Called right after a push
 * into the recycle ring, whose tail CAS is seq_cst: that is the full barrier
 * between the push and this look at h_free_waiters (store-buffer pattern with
 * the producer, which registers in h_free_waiters before it looks at the
 * ring). h_done, the word they sleep on, moves only when someone waits, so a
 * completion with nobody blocked costs one load here.
 */
void tr__wake_blocked(struct taskring_store *st)
{
	if (atomic_load_explicit(&st->hdr->h_free_waiters, memory_order_seq_cst)) {
		atomic_fetch_add_explicit(&st->hdr->h_done, 1, memory_order_seq_cst);
		tr__futex_wake(&st->hdr->h_done, INT32_MAX, 0xffffffffu);
	}
}

/* Register as a producer blocked on a full store, and read h_done. */
static uint32_t block_begin(struct taskring_store *st)
{
	atomic_fetch_add_explicit(&st->hdr->h_free_waiters, 1, memory_order_seq_cst);
	return atomic_load_explicit(&st->hdr->h_done, memory_order_seq_cst);
}

static void block_end(struct taskring_store *st)
{
	atomic_fetch_sub_explicit(&st->hdr->h_free_waiters, 1, memory_order_seq_cst);
}

/* Sleep until h_done moves from @done0 or @deadline passes (-ETIMEDOUT). */
static int block_sleep(struct taskring_store *st, uint32_t done0, int64_t deadline)
{
	int rc = tr__futex_wait(&st->hdr->h_done, done0, deadline, 0xffffffffu);
	return rc == -ETIMEDOUT ? rc : 0;
}

struct free_wait {
	struct taskring_store *st;
	uint32_t need;
};

/* Spin condition of wait_slots(). */
static int slots_ready(void *arg)
{
	struct free_wait *f = arg;
	return tr__ring_count(f->st) >= f->need;
}

/*
 * Wait until the ring holds @need slots or @deadline (mono ns, -1 = none)
 * passes: spin for the store's spin time (a busy worker ends a job every
 * microsecond or so), looking at the ring only every 16 pauses (~0.3 us, as
 * each look pulls the tail's cache line from the worker), then register and
 * sleep until a job ends.
 */
static int wait_slots(struct taskring_store *st, int64_t deadline, uint32_t need)
{
	struct free_wait f = {st, need};
	int rc = tr__spin(atomic_load_explicit(&st->spin_ns, memory_order_relaxed), deadline, 15, slots_ready, &f);
	if (rc)
		return rc < 0 ? rc : 0;
	uint32_t done0 = block_begin(st);
	if (tr__ring_count(st) < need)
		rc = block_sleep(st, done0, deadline);
	block_end(st);
	return rc;
}

#define BATCH_STACK 64

static int enqueue_reqs(struct taskring_store *st, struct enq_req *r, size_t n, uint32_t flags, int64_t block_ns,
			struct taskring_job *jobs)
{
	uint32_t stack_idx[BATCH_STACK];
	uint32_t *idx = n <= BATCH_STACK ? stack_idx : malloc(n * sizeof(uint32_t));
	/* The new jobs' handles: the caller's array, or ours. */
	struct taskring_job stack_made[BATCH_STACK];
	struct taskring_job *made = jobs ? jobs : n <= BATCH_STACK ? stack_made : NULL;
	int64_t deadline = block_ns < 0 ? -1 : tr__now_mono() + block_ns;
	size_t unmade = 0;
	int rc;

	if (!idx)
		return -ENOMEM;
	if (tr__wal_failed(st)) {
		rc = -EIO; /* no durable work until the store is recovered */
		goto out;
	}
	if (st->wal && (rc = tr__wal_room(st, (uint32_t)n)) != 0)
		goto out; /* the disk is full: existing jobs keep the room kept for them */
	/* Owed room for n new jobs from here: given back for those not made. */
	unmade = st->wal ? n : 0;
	for (;;) {
		rc = alloc_req_blocks(st, r, n);
		if (rc == 0)
			break;
		if (!(flags & TASKRING_ENQ_BLOCK))
			goto out;
		/* The arena is full. Register, then try once more: a job that
		 * ends after we register wakes us (its blocks can then be
		 * reclaimed); one that ended before is seen by the retry. */
		uint32_t done0 = block_begin(st);
		rc = alloc_req_blocks(st, r, n);
		int wrc = rc ? block_sleep(st, done0, deadline) : 0;
		block_end(st);
		if (rc == 0)
			break;
		if (wrc) {
			rc = wrc;
			goto out;
		}
	}
	/* Slots: all or none. A blocking call pops only when the ring seems
	 * to hold enough, and gives back a partial set (waking others that
	 * may need it), so two producers can never hold halves forever. */
	for (;;) {
		size_t got = 0;
		if (!(flags & TASKRING_ENQ_BLOCK) || tr__ring_count(st) >= n) {
			got = tr__ring_pop_n(st, idx, n);
			if (got == n) {
				TR_CRASH(ENQ_POPPED);
				break;
			}
			for (size_t i = 0; i < got; i++)
				tr__ring_give_back(st, idx[i]);
			if (got)
				tr__wake_blocked(st);
		}
		rc = -EAGAIN;
		if (flags & TASKRING_ENQ_BLOCK)
			rc = wait_slots(st, deadline, (uint32_t)n);
		if (rc) {
			free_req_blocks(st, r, n);
			goto out;
		}
	}

	/*
	 * Dependencies: checked, and room for the lists taken, under the deps
	 * lock, which is held until the new jobs are registered (deps.c).
	 */
	int deps = 0, keyed = 0, existing = 0;
	for (size_t i = 0; i < n; i++) {
		deps |= r[i].ndeps != 0;
		keyed |= r[i].ukey != NULL;
	}
	if (!made)
		made = malloc(n * sizeof(*made));
	rc = made ? 0 : -ENOMEM;
	if (!rc && deps)
		rc = tr__deps_prepare(st, r, n, idx);
	/*
	 * Unique keys: under the index's lock, an item whose key names a live
	 * job gives back its slot and blocks and returns that job; the others
	 * are written and indexed before the lock is released, so two
	 * producers racing on one key make exactly one job.
	 */
	if (!rc && keyed && (rc = tr__lock(&st->hdr->h_unique_lock, st, TR_LOCK_UNIQUE)) < 0 && deps)
		tr__deps_abort(st, r, n);
	if (rc) {
		for (size_t i = 0; i < n; i++)
			tr__ring_give_back(st, idx[i]);
		tr__wake_blocked(st);
		free_req_blocks(st, r, n);
		goto out;
	}
	int64_t now = tr__now_real();
	for (size_t i = 0; i < n; i++) {
		if (r[i].ukey && tr__unique_find_locked(st, r[i].ukey, r[i].ukeylen, r[i].uhash, &made[i])) {
			tr__ring_give_back(st, idx[i]); /* untouched: back it goes */
			idx[i] = TR_NIL;
			free_req_blocks(st, &r[i], 1);
			existing++;
		} else {
			fill_slot(st, idx[i], &r[i], now, &made[i]);
			if (r[i].ukey)
				tr__unique_insert_locked(st, r[i].uhash, made[i].slot, made[i].gen);
		}
	}
	if (keyed)
		tr__unlock(&st->hdr->h_unique_lock);
	if (deps)
		tr__deps_commit(st, r, n, idx, made);
	if (existing)
		tr__wake_blocked(st);
	unmade = st->wal ? (size_t)existing : 0;
	TR_CRASH(ENQ_FILLED);
	/* The log: each new job's record, staged before it can be claimed. */
	uint64_t log_end = 0;
	int log_rc = 0;
	for (size_t i = 0; st->wal && i < n; i++)
		if (idx[i] != TR_NIL && !log_rc)
			log_rc = tr__wal_log_enqueue(st, idx[i], &r[i], &log_end);

	/* Link, holding each queue's lock across a run of items for it. */
	for (size_t i = 0; i < n;) {
		uint32_t qi = r[i].queue;
		struct tr_queue *q = &st->queues[qi];
		int linked = 0;
		rc = tr__lock(&q->q_lock, st, (int)qi);
		if (rc)
			goto out; /* ENOTRECOVERABLE: cannot happen with repair */
		uint64_t added = 0;
		for (; i < n && r[i].queue == qi; i++) {
			if (idx[i] == TR_NIL)
				continue;
			added++;
			if (!r[i].deps_left) { /* else waiting on dependencies */
				tr__queue_link_locked(st, q, idx[i], now);
				linked++;
			}
		}
		atomic_fetch_add_explicit(&q->q_enqueued, added, memory_order_relaxed);
		uint32_t sleepers = tr__queue_sleepers_locked(q);
		tr__unlock(&q->q_lock);
		if (sleepers && linked)
			tr__queue_wake(st, qi, linked);
	}
	rc = existing;
	/* TASKRING_DURABLE: return once the records are on disk. */
	if (st->wal && !log_rc)
		log_rc = tr__wal_commit(st, log_end);
	if (log_rc)
		rc = log_rc;
out:
	if (unmade)
		tr__wal_unadmit(st, (uint32_t)unmade);
	if (made != jobs && made != stack_made)
		free(made);
	if (idx != stack_idx)
		free(idx);
	return rc;
}

int taskring_enqueue(struct taskring_store *st, const char *task, const void *payload, size_t len,
		     const struct taskring_enqueue_opts *opts, struct taskring_job *jobp)
{
	static const struct taskring_enqueue_opts defaults = TASKRING_ENQUEUE_OPTS_INIT;
	struct enq_req r;
	struct taskring_job job;

	if (!st)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	int rc = check_opts(opts);
	if (rc)
		return rc;
	rc = resolve_item(st, task, payload, len, opts, &r);
	if (rc)
		return rc;
	rc = enqueue_reqs(st, &r, 1, opts->flags, opts->block_timeout_ns, &job);
	if (rc >= 0 && jobp)
		*jobp = job;
	return rc;
}

/*
 * Item @i's dependencies on earlier items: each must name an earlier item
 * (so no cycle can be made) that has no unique key (an item with one may
 * resolve to an existing job instead of making its own).
 */
static int resolve_item_deps(const struct taskring_enqueue_item *items, size_t i, struct enq_req *r)
{
	const struct taskring_enqueue_item *it = &items[i];
	if (!it->depends_on_items != !it->n_depends_on_items ||
	    (uint64_t)it->n_depends_on_items + r[i].nxdeps > TASKRING_DEPENDS_MAX)
		return -EINVAL;
	for (uint32_t j = 0; j < it->n_depends_on_items; j++) {
		uint32_t d = it->depends_on_items[j];
		if (d >= i || r[d].ukey)
			return -EINVAL;
		r[d].dents = 1;
	}
	r[i].ideps = it->depends_on_items;
	r[i].nideps = it->n_depends_on_items;
	r[i].ndeps = r[i].nxdeps + r[i].nideps;
	return 0;
}

int taskring_enqueue_batch(struct taskring_store *st, const struct taskring_enqueue_item *items, size_t n,
			   const struct taskring_enqueue_opts *opts, struct taskring_job *jobs)
{
	static const struct taskring_enqueue_opts defaults = TASKRING_ENQUEUE_OPTS_INIT;
	struct enq_req stack_r[BATCH_STACK];
	struct enq_req *r;
	int rc = 0;

	if (!st || !items || n == 0)
		return -EINVAL;
	if (n > st->nslots)
		return -E2BIG;
	if (!opts)
		opts = &defaults;
	else if ((rc = check_opts(opts)) < 0)
		return rc;
	r = n <= BATCH_STACK ? stack_r : malloc(n * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		const struct taskring_enqueue_opts *o = items[i].opts ? items[i].opts : opts;
		if (o != opts)
			rc = check_opts(o);
		if (!rc)
			rc = resolve_item(st, items[i].task, items[i].payload, items[i].len, o, &r[i]);
		if (!rc)
			rc = resolve_item_deps(items, i, r);
	}
	if (!rc)
		rc = enqueue_reqs(st, r, n, opts->flags, opts->block_timeout_ns, jobs);
	if (r != stack_r)
		free(r);
	return rc;
}

/* ---- reads ----------------------------------------------------------------- */

int taskring_job_lookup(struct taskring_store *st, const char *id, struct taskring_job *jobp)
{
	uint8_t u[16];

	if (!st || !jobp || tr__uuid_parse(id, u) < 0)
		return -EINVAL;
	uint32_t idx = tr__uuid_slot(u);
	if (idx >= st->nslots)
		return -ENOENT;
	struct tr_slot *s = &st->slots[idx];
	struct taskring_job job = {.store = st, .slot = idx};
	job.gen = atomic_load_explicit(&s->s_gen, memory_order_acquire);
	if (job.gen & 1)
		return -ENOENT;
	uint8_t stored[16];
	for (int i = 0; i < 16; i++)
		stored[i] = TR_GET(s->s_uuid[i]);
	uint32_t state;
	int err;
	if (memcmp(stored, u, 16) || !tr__read_begin(&job, &state, &err) || tr__read_end(&job, s))
		return -ENOENT;
	memcpy(job.uuid, u, 16);
	*jobp = job;
	return 0;
}

int taskring_job_id(const struct taskring_job *job, char *buf)
{
	if (!job || !buf)
		return -EINVAL;
	tr__uuid_format(job->uuid, buf);
	return 0;
}

int taskring_job_status(const struct taskring_job *job)
{
	uint32_t state;
	int err;
	if (!tr__read_begin(job, &state, &err))
		return err;
	return (int)TR_STATUS(state);
}

int taskring_job_progress(const struct taskring_job *job)
{
	uint32_t state;
	int err;
	struct tr_slot *s = tr__read_begin(job, &state, &err);
	if (!s)
		return err;
	uint32_t p = atomic_load_explicit(&s->s_progress, memory_order_relaxed);
	if (tr__read_end(job, s))
		return -ENOENT;
	return p > 100 ? -ENODATA : (int)p;
}

/* Copy the newest error text into @buf (cut), returning its full length. */
static int newest_error(struct taskring_store *st, struct tr_slot *s, char *buf, size_t cap)
{
	uint64_t next;
	struct tr_error_entry *e = error_at(st, TR_GET(s->s_errors_off), &next);
	if (!e)
		return -ENODATA;
	size_t len = e->e_len;
	if (cap) {
		size_t n = len < cap - 1 ? len : cap - 1;
		memcpy(buf, e->e_text, n);
		buf[n] = 0;
	}
	return (int)len;
}

int taskring_job_error(const struct taskring_job *job, char *buf, size_t cap)
{
	uint32_t state;
	int err;
	char tmp[TASKRING_ERROR_MAX + 1];

	if (!buf && cap)
		return -EINVAL;
	struct tr_slot *s = tr__read_begin(job, &state, &err);
	if (!s)
		return err;
	int len = newest_error(job->store, s, tmp, sizeof(tmp));
	if (tr__read_end(job, s))
		return -ENOENT;
	if (len >= 0 && cap) {
		size_t n = (size_t)len < cap - 1 ? (size_t)len : cap - 1;
		memcpy(buf, tmp, n);
		buf[n] = 0;
	}
	return len;
}

int taskring_job_errors(const struct taskring_job *job, struct taskring_error_record *out, size_t max)
{
	uint32_t state;
	int err;
	uint64_t offs[ERRORS_MAX];

	if (!out && max)
		return -EINVAL;
	struct tr_slot *s = tr__read_begin(job, &state, &err);
	if (!s)
		return err;
	size_t n = collect_errors(job->store, s, offs);
	/* The list is newest first; records go out oldest first. */
	struct taskring_error_record *tmp = max ? malloc((n < max ? n : max) * sizeof(*tmp) + 1) : NULL;
	if (max && !tmp)
		return -ENOMEM;
	size_t w = 0;
	for (size_t i = n; i-- > 0 && w < max;) {
		uint64_t next;
		struct tr_error_entry *e = error_at(job->store, offs[i], &next);
		if (!e)
			break;
		struct taskring_error_record *rec = &tmp[w++];
		memset(rec, 0, sizeof(*rec));
		tr__uuid_format(e->e_uuid, rec->id);
		tr__uuid_format(job->uuid, rec->job_id);
		rec->attempt = e->e_attempt;
		rec->failed_at_ns = (int64_t)e->e_failed_at;
		memcpy(rec->error, e->e_text, e->e_len);
		rec->error[e->e_len] = 0;
	}
	if (tr__read_end(job, s)) {
		free(tmp);
		return -ENOENT;
	}
	if (w)
		memcpy(out, tmp, w * sizeof(*tmp));
	free(tmp);
	return (int)n;
}

/* Copy a job's name fields, bounds-checked. */
static void copy_name(char *dst, const char *src)
{
	size_t n = strnlen(src, TASKRING_NAME_MAX);
	memcpy(dst, src, n);
	dst[n] = 0;
}

int taskring_job_info(const struct taskring_job *job, struct taskring_job_info *out)
{
	uint32_t state;
	int err;
	struct taskring_job_info i;

	if (!out)
		return -EINVAL;
	struct tr_slot *s = tr__read_begin(job, &state, &err);
	if (!s)
		return err;
	struct taskring_store *st = job->store;
	memset(&i, 0, sizeof(i));
	tr__uuid_format(job->uuid, i.id);
	uint32_t t = TR_GET(s->s_task), q = TR_GET(s->s_queue);
	copy_name(i.task_name, t < st->ntasks ? st->tasks[t] : "?");
	copy_name(i.queue, q < st->nqueues ? st->queues[q].q_name : "?");
	i.status = (int)TR_STATUS(state);
	uint32_t p = atomic_load_explicit(&s->s_progress, memory_order_relaxed);
	i.progress = p > 100 ? -1 : (int)p;
	i.priority = TR_GET(s->s_priority);
	i.retry_count = TR_GET(s->s_retry_count);
	i.max_retries = TR_GET(s->s_max_retries);
	i.cancel_requested = !!(atomic_load_explicit(&s->s_state, memory_order_relaxed) & TR_ST_CANCEL);
	i.created_at_ns = TR_GET(s->s_created_at);
	i.scheduled_at_ns = TR_GET(s->s_scheduled_at);
	i.started_at_ns = TR_GET(s->s_started_at);
	i.completed_at_ns = TR_GET(s->s_completed_at);
	i.timeout_ns = TR_GET(s->s_timeout_ns);
	i.result_ttl_ns = TR_GET(s->s_result_ttl_ns);
	i.payload_len = TR_GET(s->s_payload_len);
	i.result_len = TR_STATUS(state) == TASKRING_COMPLETE ? TR_GET(s->s_result_len) : 0;
	i.error_count = (uint32_t)collect_errors(st, s, NULL);
	i.expires_at_ns = TR_GET(s->s_expires_at);
	if (TR_GET(s->s_flags) & TR_SF_DEPS) {
		i.dependencies = TR_GET(s->s_ndeps);
		uint8_t loc = TR_GET(s->s_loc);
		if (TR_STATUS(state) == TASKRING_PENDING && loc == TR_LOC_WAITING)
			i.dependencies_left = TR_GET(s->s_deps_left);
	}
	if (state & TR_ST_DEPS)
		i.dependents = tr__dents_count(st, s);
	if (tr__read_end(job, s))
		return -ENOENT;
	*out = i;
	return 0;
}

/* Locate a blob stored inline (in @inl, of @inl_max bytes) or in the arena;
 * NULL if unsound. */
static const void *blob(struct taskring_store *st, struct tr_slot *s, int inline_flag, const uint8_t *inl,
			size_t inl_max, uint64_t off, uint32_t len)
{
	if (TR_GET(s->s_flags) & inline_flag)
		return len <= inl_max ? inl : NULL;
	if (!len)
		return inl;
	uint32_t blen;
	const void *d = tr__arena_data(st, off, &blen);
	return d && blen == len ? d : NULL;
}

/*
 * Copy the job's payload (@result 0) or result (@result 1) to @buf. The
 * caller's buffer may receive bytes of a job that is recycled meanwhile, but
 * the call then reports -ENOENT and *@lenp is untouched.
 */
int tr__copy_blob(const struct taskring_job *job, int result, void *buf, size_t cap, size_t *lenp)
{
	uint32_t state;
	int err;
	struct tr_slot *s = tr__read_begin(job, &state, &err);

	if (!s)
		return err;
	uint32_t len = result ? TR_GET(s->s_result_len) : TR_GET(s->s_payload_len);
	const void *d = result ? blob(job->store, s, TR_SF_RESULT_INLINE, s->s_inline_result, TR_INLINE_RESULT,
				      TR_GET(s->s_result_off), len)
			       : blob(job->store, s, TR_SF_PAYLOAD_INLINE, s->s_inline_payload, TR_INLINE_PAYLOAD,
				      TR_GET(s->s_payload_off), len);
	if (!d || len > job->store->max_payload)
		return tr__read_end(job, s) ? -ENOENT : -EIO;
	if (len > cap) {
		if (tr__read_end(job, s))
			return -ENOENT;
		*lenp = len;
		return -ENOBUFS;
	}
	if (len)
		tr__copy_shared(buf, d, len);
	if (tr__read_end(job, s))
		return -ENOENT;
	*lenp = len;
	return 0;
}

int taskring_job_payload(const struct taskring_job *job, void *buf, size_t cap, size_t *lenp)
{
	size_t dummy;
	if (!buf && cap)
		return -EINVAL;
	if (!lenp)
		lenp = &dummy;
	return tr__copy_blob(job, 0, buf, cap, lenp);
}

/* ---- JSON ------------------------------------------------------------------ */

struct sbuf {
	char *p;
	size_t cap, len;
};

static void sb_putc(struct sbuf *b, char c)
{
	if (b->len + 1 < b->cap)
		b->p[b->len] = c;
	b->len++;
}

static void sb_puts(struct sbuf *b, const char *s)
{
	while (*s)
		sb_putc(b, *s++);
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) TASKRING_PRINTF(2, 3);
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	sb_puts(b, tmp);
}

static void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
	sb_putc(b, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			sb_putc(b, '\\');
			sb_putc(b, (char)c);
		} else if (c == '\n') {
			sb_puts(b, "\\n");
		} else if (c == '\t') {
			sb_puts(b, "\\t");
		} else if (c == '\r') {
			sb_puts(b, "\\r");
		} else if (c < 0x20 || c == 0x7f) {
			sb_printf(b, "\\u%04x", c);
		} else if (c >= 0x80) {
			/* Bytes are not validated as UTF-8: escape them so the
			 * output is always valid JSON. */
			sb_printf(b, "\\u%04x", c);
		} else {
			sb_putc(b, (char)c);
		}
	}
	sb_putc(b, '"');
}

static void sb_ms(struct sbuf *b, const char *key, int64_t ns)
{
	sb_printf(b, ",\"%s\":", key);
	if (ns)
		sb_printf(b, "%lld", (long long)(ns / 1000000));
	else
		sb_puts(b, "null");
}

/* ,"key":[ids...] from one of the dependency lists ([] when it cannot be
 * read: no memory, or the job went meanwhile, which read_end then says). */
static void sb_ids(struct sbuf *b, const char *key, const struct taskring_job *job,
		   int (*list)(const struct taskring_job *, struct taskring_job *, size_t))
{
	sb_printf(b, ",\"%s\":[", key);
	int n = list(job, NULL, 0);
	struct taskring_job *h = n > 0 ? malloc((size_t)n * sizeof(*h)) : NULL;
	if (h) {
		int got = list(job, h, (size_t)n);
		for (int k = 0; k < got && k < n; k++) {
			char id[TASKRING_ID_LEN + 1];
			tr__uuid_format(h[k].uuid, id);
			sb_printf(b, k ? ",\"%s\"" : "\"%s\"", id);
		}
		free(h);
	}
	sb_putc(b, ']');
}

int taskring_job_to_json(const struct taskring_job *job, char *buf, size_t cap)
{
	struct taskring_job_info i;
	uint32_t state;
	int err;

	if (!buf && cap)
		return -EINVAL;
	int rc = taskring_job_info(job, &i);
	if (rc)
		return rc;
	struct tr_slot *s = tr__read_begin(job, &state, &err);
	if (!s)
		return err;
	/* Rendered straight into the caller's buffer, snprintf-style. */
	struct sbuf b = {.p = buf, .cap = cap};
	char id[TASKRING_ID_LEN + 1];
	sb_puts(&b, "{\"id\":");
	sb_json_str(&b, i.id, strlen(i.id));
	sb_puts(&b, ",\"queue\":");
	sb_json_str(&b, i.queue, strlen(i.queue));
	sb_puts(&b, ",\"task_name\":");
	sb_json_str(&b, i.task_name, strlen(i.task_name));
	sb_printf(&b, ",\"status\":\"%s\"", taskring_status_name(i.status));
	sb_printf(&b, ",\"priority\":%d", i.priority);
	if (i.progress >= 0)
		sb_printf(&b, ",\"progress\":%d", i.progress);
	else
		sb_puts(&b, ",\"progress\":null");
	sb_printf(&b, ",\"retry_count\":%u,\"max_retries\":%u", i.retry_count, i.max_retries);
	sb_ms(&b, "created_at", i.created_at_ns);
	sb_ms(&b, "scheduled_at", i.scheduled_at_ns);
	sb_ms(&b, "started_at", i.started_at_ns);
	sb_ms(&b, "completed_at", i.completed_at_ns);
	char err_text[TASKRING_ERROR_MAX + 1];
	int elen = newest_error(job->store, s, err_text, sizeof(err_text));
	sb_puts(&b, ",\"error\":");
	if (elen >= 0)
		sb_json_str(&b, err_text, strlen(err_text));
	else
		sb_puts(&b, "null");
	sb_printf(&b, ",\"timeout_ms\":%lld", (long long)(i.timeout_ns / 1000000));
	sb_puts(&b, ",\"unique_key\":");
	uint32_t mlen;
	const char *ukey = (TR_GET(s->s_flags) & TR_SF_UNIQUE) ? tr__arena_data(job->store, TR_GET(s->s_unique_off), &mlen)
							       : NULL;
	if (ukey && mlen > 0)
		sb_json_str(&b, ukey, strnlen(ukey, mlen - 1));
	else
		sb_puts(&b, "null");
	sb_puts(&b, ",\"metadata\":");
	const char *meta = TR_GET(s->s_meta_off) ? tr__arena_data(job->store, TR_GET(s->s_meta_off), &mlen) : NULL;
	if (meta && mlen > 0)
		sb_json_str(&b, meta, strnlen(meta, mlen - 1));
	else
		sb_puts(&b, "null");
	sb_ids(&b, "dependencies", job, taskring_job_dependencies);
	sb_ids(&b, "dependents", job, taskring_job_dependents);
	sb_puts(&b, ",\"errors\":[");
	uint64_t offs[ERRORS_MAX];
	size_t n = collect_errors(job->store, s, offs);
	for (size_t k = n; k-- > 0;) {
		uint64_t next;
		struct tr_error_entry *e = error_at(job->store, offs[k], &next);
		if (!e)
			break;
		tr__uuid_format(e->e_uuid, id);
		sb_puts(&b, k + 1 == n ? "{\"id\":" : ",{\"id\":");
		sb_json_str(&b, id, strlen(id));
		sb_puts(&b, ",\"job_id\":");
		sb_json_str(&b, i.id, strlen(i.id));
		sb_printf(&b, ",\"attempt\":%u,\"error\":", e->e_attempt);
		sb_json_str(&b, e->e_text, e->e_len);
		time_t t = (time_t)(e->e_failed_at / 1000000000ull);
		struct tm tm;
		gmtime_r(&t, &tm);
		char iso[96];
		snprintf(iso, sizeof(iso), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (unsigned)((e->e_failed_at % 1000000000ull) / 1000));
		sb_printf(&b, ",\"failed_at\":\"%s\"}", iso);
	}
	sb_puts(&b, "]}");
	if (cap)
		b.p[b.len < cap - 1 ? b.len : cap - 1] = 0;
	if (tr__read_end(job, s))
		return -ENOENT;
	return b.len > INT32_MAX ? -EOVERFLOW : (int)b.len;
}

/* ---- copies of jobs --------------------------------------------------------- */

/*
 * Enqueue a copy of @job (dead only, with @dead_only), as a new job. The job
 * is read under the seqlock and copied (payload, metadata, retry delays)
 * before the new job is enqueued: the enqueue may itself recycle the old
 * job's slot, which may be the oldest terminal one.
 */
static int copy_enqueue(const struct taskring_job *job, int dead_only, struct taskring_job *newjob)
{
	uint32_t state;
	int err;
	struct tr_slot *s = tr__read_begin(job, &state, &err);

	if (!s)
		return err;
	if (dead_only && TR_STATUS(state) != TASKRING_DEAD)
		return TASKRING_ESTATE;
	struct taskring_store *st = job->store;
	struct enq_req r;
	memset(&r, 0, sizeof(r));
	r.task = TR_GET(s->s_task);
	r.queue = TR_GET(s->s_queue);
	r.priority = TR_GET(s->s_priority);
	r.max_retries = TR_GET(s->s_max_retries);
	r.timeout_ns = TR_GET(s->s_timeout_ns);
	r.ttl_ns = TR_GET(s->s_result_ttl_ns);
	r.base_ns = TR_GET(s->s_backoff_base);
	r.cap_ns = TR_GET(s->s_backoff_cap);
	r.len = TR_GET(s->s_payload_len);
	if (r.task >= st->ntasks || r.queue >= st->nqueues || r.len > st->max_payload)
		return tr__read_end(job, s) ? -ENOENT : -EIO;
	/* Copy what lives in the slot or the arena: the dead job's slot may be
	 * recycled while we enqueue. */
	void *payload = malloc(r.len ? r.len : 1);
	char *meta = NULL;
	int64_t delays[TASKRING_MAX_RETRY_DELAYS];
	if (!payload)
		return -ENOMEM;
	const void *d = blob(st, s, TR_SF_PAYLOAD_INLINE, s->s_inline_payload, TR_INLINE_PAYLOAD,
			     TR_GET(s->s_payload_off), (uint32_t)r.len);
	int rc = d ? 0 : -EIO;
	if (d && r.len)
		tr__copy_shared(payload, d, r.len);
	r.payload = payload;
	uint32_t blen;
	const char *m = TR_GET(s->s_meta_off) ? tr__arena_data(st, TR_GET(s->s_meta_off), &blen) : NULL;
	if (!rc && m && blen > 0) {
		r.metalen = strnlen(m, blen - 1);
		meta = malloc(r.metalen + 1);
		if (!meta)
			rc = -ENOMEM;
		else {
			memcpy(meta, m, r.metalen);
			meta[r.metalen] = 0;
			r.meta = meta;
		}
	}
	const int64_t *dl = TR_GET(s->s_delays_off) ? tr__arena_data(st, TR_GET(s->s_delays_off), &blen) : NULL;
	if (!rc && dl && blen % sizeof(int64_t) == 0 && blen / sizeof(int64_t) <= TASKRING_MAX_RETRY_DELAYS) {
		r.ndelays = blen / sizeof(int64_t);
		memcpy(delays, dl, blen);
		r.delays = delays;
	}
	if (tr__read_end(job, s))
		rc = -ENOENT;
	if (!rc)
		rc = enqueue_reqs(st, &r, 1, 0, 0, newjob);
	free(payload);
	free(meta);
	return rc;
}

int taskring_job_retry_dead(const struct taskring_job *job, struct taskring_job *newjob)
{
	return copy_enqueue(job, 1, newjob);
}

int taskring_job_replay(const struct taskring_job *job, struct taskring_job *newjob)
{
	return copy_enqueue(job, 0, newjob);
}

