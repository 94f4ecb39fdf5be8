/*
 * deps.c - dependencies between jobs.
 *
 * A job D enqueued with dependencies keeps them in an arena block of struct
 * tr_dep (s_deps_off, s_ndeps): each names one job P by slot, generation and
 * uuid, and says whether P has completed (d_done). s_deps_left counts the
 * entries not yet done. While s_deps_left > 0, D is pending but in no queue
 * list: s_loc is TR_LOC_WAITING. Each P that was pending or running when D
 * was enqueued has D in its dependents list: a chain of arena blocks
 * (s_dents_head .. s_dents_tail) of struct tr_dent, each naming D and the
 * index of P's entry in D's array, and P's state word carries TR_ST_DEPS.
 *
 * Cycles cannot be made: a job can only depend on jobs that already exist
 * (a live handle) or on earlier items of its own batch.
 *
 * The deps lock (h_deps_lock, lock.c) serialises every registration and
 * every resolution, and is the only lock under which a TR_LOC_WAITING job
 * changes. The protocol:
 *
 *   Registration (enqueue): under the deps lock, each dependency is read;
 *   complete counts as done, failed/dead/cancelled refuses the enqueue
 *   (TASKRING_EDEPFAILED), gone refuses it (-ENOENT), pending or running gets
 *   TR_ST_DEPS with a compare-and-swap on its exact state word. Transitions
 *   keep the bit (tr__slot_transition carries it), so from then on P's end
 *   is seen by tr__slot_finished(), which resolves P before pushing its slot
 *   into the recycle ring: a P with the bit cannot be recycled (and its
 *   dependents list freed) before its dependents are resolved, and the
 *   resolution waits for our lock. Blocks for the lists are taken before
 *   anything is written, so a refused enqueue changes nothing (a TR_ST_DEPS
 *   left on a dependency with no new dependent is harmless).
 *
 *   Resolution (a job with TR_ST_DEPS ended): under the deps lock, walk its
 *   dependents. When it completed, each waiting dependent's entry is marked
 *   done and its count drops; one that reaches 0 becomes TR_LOC_READYING.
 *   When it failed, died or was cancelled, each waiting dependent is
 *   cancelled with the error "dependency failed", and a dependent that has
 *   dependents of its own is resolved the same way (an intrusive stack
 *   through s_next, which a job in no list does not use), so the cascade is
 *   transitive and needs no memory. After the lock is released, the
 *   dependents made READYING are linked into their queues under each
 *   queue's lock, where a cancel may have got there first (state checked).
 *
 * Lock order: a queue lock, then the deps lock, then the unique-key lock.
 * A resolution under a queue lock (a job expired at claim) only cancels,
 * which needs no queue lock; only a completion links, and completions are
 * never made under a queue lock (tr__deps_resolve() tells them apart).
 *
 * Crash safety: the d_done marks make a resolution idempotent, so the repair
 * after a holder died (its lock taken over) recounts every waiting job's s_deps_left
 * from its marks and resolves every ended job with TR_ST_DEPS again; jobs
 * that it finds ready are linked after the lock is released.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "wal.h"

#define DENTS_MIN_CAP 14 /* entries of a first list block: 512 bytes */

#define S tr__slot

/* D's tr_dep array, checked against s_ndeps, or NULL. */
static struct tr_dep *deps_of(struct taskring_store *st, struct tr_slot *s, uint32_t *np)
{
	uint32_t len, n = TR_GET(s->s_ndeps);
	if (!(TR_GET(s->s_flags) & TR_SF_DEPS))
		return NULL;
	struct tr_dep *d = tr__arena_data(st, TR_GET(s->s_deps_off), &len);
	if (!d || (uint64_t)n * sizeof(*d) > len)
		return NULL;
	*np = n;
	return d;
}

struct tr_dep *tr__deps_of(struct taskring_store *st, struct tr_slot *s, uint32_t *np)
{
	return deps_of(st, s, np);
}

/* A block of a dependents list, checked, or NULL. */
static struct tr_dents_hdr *dents_block(struct taskring_store *st, uint64_t off, uint32_t *capp)
{
	uint32_t len;
	struct tr_dents_hdr *h = tr__arena_data(st, off, &len);
	if (!h || len < sizeof(*h))
		return NULL;
	uint32_t cap = TR_GET(h->t_cap);
	if ((uint64_t)cap * sizeof(struct tr_dent) > len - sizeof(*h))
		return NULL;
	*capp = cap;
	return h;
}

static struct tr_dent *dents_entries(struct tr_dents_hdr *h)
{
	return (struct tr_dent *)(h + 1);
}

static uint64_t block_next(struct taskring_store *st, uint64_t off)
{
	return TR_GET(((struct tr_block *)(st->arena + off))->k_next);
}

/*
 * A walk over the entries of a dependents list, block by block; every
 * block and count is checked, and the chain is followed at most nslots
 * blocks (a scribbled link cannot make it loop). Links and counts are read
 * with acquire: a list may grow while it is read (see dents_append()).
 */
struct dents_walk {
	struct taskring_store *st;
	uint64_t off;
	struct tr_dents_hdr *h;
	uint32_t i, count, cap, blocks;
};

static void walk_start(struct dents_walk *w, struct taskring_store *st, struct tr_slot *p)
{
	memset(w, 0, sizeof(*w));
	w->st = st;
	w->off = __atomic_load_n(&p->s_dents_head, __ATOMIC_ACQUIRE);
}

/* The next entry (in the shared list: copy what you need), or NULL. */
static struct tr_dent *walk_next(struct dents_walk *w)
{
	for (;;) {
		if (!w->h) {
			if (!w->off || w->blocks++ > w->st->nslots ||
			    !(w->h = dents_block(w->st, w->off, &w->cap)))
				return NULL;
			w->count = atomic_load_explicit(&w->h->t_count, memory_order_acquire);
			w->i = 0;
		}
		if (w->i < w->count && w->i < w->cap)
			return &dents_entries(w->h)[w->i++];
		w->off = __atomic_load_n(&((struct tr_block *)(w->st->arena + w->off))->k_next, __ATOMIC_ACQUIRE);
		w->h = NULL;
	}
}

/* How many dependents the list of @p holds (counted, not stored: a count
 * kept beside the list could disagree with it). */
/* The next entry of a dependents list whose job still exists (a dependent
 * purged or recycled since is not one any more), copied into *@e. */
static int walk_next_present(struct dents_walk *w, struct taskring_store *st, struct tr_dent *e)
{
	struct tr_dent *ep;
	while ((ep = walk_next(w)) != NULL) {
		tr__copy_shared(e, ep, sizeof(*e));
		if (e->t_slot < st->nslots &&
		    atomic_load_explicit(&S(st, e->t_slot)->s_gen, memory_order_acquire) == e->t_gen)
			return 1;
	}
	return 0;
}

/* How many of @p's dependents exist. */
uint32_t tr__dents_count(struct taskring_store *st, struct tr_slot *p)
{
	struct dents_walk w;
	struct tr_dent e;
	uint32_t n = 0;
	walk_start(&w, st, p);
	while (walk_next_present(&w, st, &e))
		n++;
	return n;
}

void tr__dents_free(struct taskring_store *st, struct tr_slot *s)
{
	/* Unhooked first: a process killed while freeing leaks blocks, and
	 * never leaves a list that names a freed one. */
	uint64_t off = TR_GET(s->s_dents_head);
	TR_SET(s->s_dents_head, 0);
	TR_SET(s->s_dents_tail, 0);
	for (uint32_t i = 0; off && i <= st->nslots; i++) {
		uint32_t cap;
		if (!dents_block(st, off, &cap))
			break;
		uint64_t next = block_next(st, off);
		tr__arena_free(st, off);
		off = next;
	}
}

/* ---- the lock -------------------------------------------------------------- */

int tr__deps_lock(struct taskring_store *st)
{
	return tr__lock(&st->hdr->h_deps_lock, st, TR_LOCK_DEPS);
}

/* Release the deps lock (taken with a queue lock held: nothing else). */
void tr__deps_unlock(struct taskring_store *st)
{
	tr__unlock(&st->hdr->h_deps_lock);
}

/*
 * Release the deps lock, holding no queue lock; then link the jobs a repair
 * (run inside tr__lock() when it takes the lock from a dead holder, here or by an earlier locker of this
 * process that held a queue lock) found ready.
 */
static void deps_unlock_relink(struct taskring_store *st)
{
	tr__unlock(&st->hdr->h_deps_lock);
	if (atomic_exchange_explicit(&st->deps_relink, 0, memory_order_relaxed)) {
		for (uint32_t i = 0; i < st->nslots; i++)
			if (TR_GET(S(st, i)->s_loc) == TR_LOC_READYING)
				tr__deps_link_readying(st, i, atomic_load_explicit(&S(st, i)->s_gen, memory_order_acquire));
	}
}

/* ---- resolution -------------------------------------------------------------- */

/*
 * Is @e's job still the one it names, pending and waiting on dependencies?
 * Under the deps lock that cannot change, so its tr_dep array is then ours to
 * update. Returns its entry for @e, or NULL.
 */
static struct tr_dep *waiting_entry(struct taskring_store *st, const struct tr_dent *e)
{
	if (e->t_slot >= st->nslots)
		return NULL;
	struct tr_slot *d = S(st, e->t_slot);
	uint32_t state = atomic_load_explicit(&d->s_state, memory_order_acquire);
	if (atomic_load_explicit(&d->s_gen, memory_order_acquire) != e->t_gen ||
	    TR_STATUS(state) != TASKRING_PENDING || TR_TAG(state) != TR_GEN_TAG(e->t_gen) ||
	    TR_GET(d->s_loc) != TR_LOC_WAITING)
		return NULL;
	uint32_t n;
	struct tr_dep *deps = deps_of(st, d, &n);
	if (!deps || e->t_index >= n)
		return NULL;
	return &deps[e->t_index];
}

/* Cancel the waiting job in slot @idx: its dependency failed. Returns the
 * state word it had. Deps lock held. */
static uint32_t cancel_waiting(struct taskring_store *st, uint32_t idx)
{
	static const char msg[] = "dependency failed";
	struct tr_slot *d = S(st, idx);
	uint32_t state = atomic_load_explicit(&d->s_state, memory_order_acquire);
	uint32_t qi = TR_GET(d->s_queue), old = state;

	int64_t now = tr__now_real();
	tr__error_append_at(st, d, TR_ATTEMPT(state), msg, sizeof(msg) - 1, now);
	TR_SET(d->s_completed_at, now);
	if (st->wal) {
		int64_t v[2] = {TR_ATTEMPT(state), now};
		tr__wal_log(st, TR_LOG_CANCEL, d, v, 2, msg, sizeof(msg) - 1, NULL);
	}
	if (qi < st->nqueues)
		atomic_fetch_add_explicit(&st->queues[qi].q_cancelled, 1, memory_order_relaxed);
	/* Cannot lose: a waiting job changes only under our lock (waiters
	 * registering are ignored by the transition). Ours to recycle once
	 * terminal (see proc.c). */
	atomic_store_explicit(&d->s_owner, tr__proc_token(st) | TR_OWNER_CLOSER, memory_order_relaxed);
	tr__slot_transition(d, state, TR_MKSTATE(TASKRING_CANCELLED, TR_ATTEMPT(state), TR_TAG(state)), &old);
	TR_SET(d->s_loc, TR_LOC_NONE);
	return old;
}

/*
 * Resolve the ended job in slot @root and, transitively, the dependents it
 * cancels. Deps lock held. Each list entry is read, then the owner's
 * generation is checked again (seqlock), so a list freed under a repair's
 * walk is never acted on. Returns whether a dependent became READYING.
 */
static int resolve_locked(struct taskring_store *st, uint32_t root)
{
	int ready = 0;
	uint32_t x = root, top = TR_NIL;

	for (;;) {
		struct tr_slot *p = S(st, x);
		uint32_t gen = atomic_load_explicit(&p->s_gen, memory_order_acquire);
		uint32_t state = atomic_load_explicit(&p->s_state, memory_order_acquire);
		uint32_t status = TR_STATUS(state);
		struct dents_walk walk;
		struct tr_dent *ep = NULL;
		walk_start(&walk, st, p);
		int live = !(gen & 1) && (state & TR_ST_DEPS) && TR_TERMINAL(status) && TR_TAG(state) == TR_GEN_TAG(gen);
		while (live && (ep = walk_next(&walk)) != NULL) {
			struct tr_dent e;
			tr__copy_shared(&e, ep, sizeof(e));
			if (tr__read_end(&(struct taskring_job){st, x, gen, {0}}, p))
				break; /* recycled under a repair: stop */
			struct tr_dep *dep = waiting_entry(st, &e);
			/* The entry must name this job back. */
			if (!dep || TR_GET(dep->d_done) || TR_GET(dep->d_slot) != x || TR_GET(dep->d_gen) != gen)
				continue;
			struct tr_slot *d = S(st, e.t_slot);
			if (status == TASKRING_COMPLETE) {
				TR_SET(dep->d_done, 1);
				uint32_t left = TR_GET(d->s_deps_left);
				TR_SET(d->s_deps_left, left ? left - 1 : 0);
				if (left <= 1) {
					TR_SET(d->s_loc, TR_LOC_READYING);
					ready = 1;
				}
			} else if (cancel_waiting(st, e.t_slot) & TR_ST_DEPS) {
				/* Resolve it too, before its slot is recycled;
				 * it is in no list, so its s_next is free to
				 * chain the stack. */
				TR_SET(d->s_next, top);
				top = e.t_slot;
			} else {
				tr__slot_release(st, e.t_slot);
			}
			TR_CRASH(DEPS_RESOLVING);
		}
		if (x != root)
			tr__slot_release(st, x); /* a cascaded job, resolved now */
		if (top == TR_NIL)
			return ready;
		x = top;
		top = TR_GET(S(st, x)->s_next);
	}
}

/*
 * Link the READYING job in slot @idx (generation @gen) into its queue, unless
 * something changed it first (a cancel, a purge, another resolver).
 */
void tr__deps_link_readying(struct taskring_store *st, uint32_t idx, uint32_t gen)
{
	struct tr_slot *d = S(st, idx);
	uint32_t qi = TR_GET(d->s_queue);
	if (qi >= st->nqueues)
		return;
	struct tr_queue *q = &st->queues[qi];
	if (tr__lock(&q->q_lock, st, (int)qi))
		return;
	uint32_t state = atomic_load_explicit(&d->s_state, memory_order_acquire);
	int linked = 0;
	if (atomic_load_explicit(&d->s_gen, memory_order_relaxed) == gen && TR_STATUS(state) == TASKRING_PENDING &&
	    TR_TAG(state) == TR_GEN_TAG(gen) && TR_GET(d->s_loc) == TR_LOC_READYING) {
		/* It may run from now on (or at its own time, if later): its
		 * scheduled_at says so, and a start is never placed before it. */
		int64_t now = tr__now_real();
		if (TR_GET(d->s_scheduled_at) < now) {
			TR_SET(d->s_scheduled_at, now);
			if (st->wal) {
				/* Not waited for: a recovery without it has
				 * the time the job was made. */
				int64_t v[2] = {TR_GET(d->s_priority), now};
				tr__wal_log(st, TR_LOG_RESCHEDULE, d, v, 2, NULL, 0, NULL);
			}
		}
		tr__queue_link_locked(st, q, idx, now);
		linked = 1;
	}
	uint32_t sleepers = linked ? tr__queue_sleepers_locked(q) : 0;
	tr__unlock(&q->q_lock);
	if (sleepers)
		tr__queue_wake(st, qi, 1);
}

void tr__deps_resolve(struct taskring_store *st, uint32_t idx)
{
	if (tr__deps_lock(st))
		return;
	int completed = TR_STATUS(atomic_load_explicit(&S(st, idx)->s_state, memory_order_acquire)) == TASKRING_COMPLETE;
	int ready = resolve_locked(st, idx);
	if (!completed) {
		/* A job that did not complete only cancels its dependents,
		 * which links nothing: so this may run under a queue lock (an
		 * expiry at claim). What a repair found to link waits for the
		 * next completion's unlock. */
		tr__deps_unlock(st);
		return;
	}
	deps_unlock_relink(st);
	if (!ready)
		return;
	/* The root is ours until its slot goes into the ring, after this. */
	struct dents_walk walk;
	struct tr_dent *e;
	walk_start(&walk, st, S(st, idx));
	while ((e = walk_next(&walk)) != NULL)
		if (e->t_slot < st->nslots && TR_GET(S(st, e->t_slot)->s_loc) == TR_LOC_READYING)
			tr__deps_link_readying(st, e->t_slot, e->t_gen);
}

void tr__deps_repair(struct taskring_store *st)
{
	int relink = 0;

	/* Counts first, from the marks (a holder may have died between a mark
	 * and its count). */
	for (uint32_t i = 0; i < st->nslots; i++) {
		struct tr_slot *d = S(st, i);
		uint32_t state = atomic_load_explicit(&d->s_state, memory_order_acquire);
		if (TR_STATUS(state) != TASKRING_PENDING || TR_GET(d->s_loc) != TR_LOC_WAITING)
			continue;
		uint32_t n, left = 0;
		struct tr_dep *deps = deps_of(st, d, &n);
		for (uint32_t k = 0; deps && k < n; k++)
			left += !TR_GET(deps[k].d_done);
		TR_SET(d->s_deps_left, left);
		if (!left) {
			TR_SET(d->s_loc, TR_LOC_READYING);
			relink = 1;
		}
	}
	/* Then every ended job with dependents, again: idempotent. */
	for (uint32_t i = 0; i < st->nslots; i++) {
		uint32_t state = atomic_load_explicit(&S(st, i)->s_state, memory_order_acquire);
		if ((state & TR_ST_DEPS) && TR_TERMINAL(TR_STATUS(state)) && resolve_locked(st, i))
			relink = 1;
	}
	if (relink)
		atomic_store_explicit(&st->deps_relink, 1, memory_order_relaxed);
}

/* ---- registration ------------------------------------------------------------ */

/*
 * Put an entry for dependent @e at the end of @p's list, taking a block from
 * @spare when the last one is full. Deps lock held; @p has TR_ST_DEPS.
 */
static void dents_append(struct taskring_store *st, struct tr_slot *p, const struct tr_dent *e, uint64_t *spare)
{
	uint32_t cap = 0;
	uint64_t tail = TR_GET(p->s_dents_tail);
	struct tr_dents_hdr *h = tail ? dents_block(st, tail, &cap) : NULL;
	uint32_t count = h ? atomic_load_explicit(&h->t_count, memory_order_relaxed) : 0;

	if (!h || count >= cap) {
		if (!*spare)
			return; /* cannot happen: the plan counted this entry */
		uint64_t off = *spare;
		*spare = 0;
		struct tr_dents_hdr *nh = dents_block(st, off, &cap);
		if (!nh)
			return;
		if (h) {
			/* Release: the new block's header is written before
			 * a reader can follow the link. */
			__atomic_store_n(&((struct tr_block *)(st->arena + tail))->k_next, off, __ATOMIC_RELEASE);
		} else {
			__atomic_store_n(&p->s_dents_head, off, __ATOMIC_RELEASE);
		}
		TR_SET(p->s_dents_tail, off);
		h = nh;
		count = 0;
	}
	tr__copy_shared(&dents_entries(h)[count], e, sizeof(*e));
	/* Release: the entry is complete before a reader counts it. */
	atomic_store_explicit(&h->t_count, count + 1, memory_order_release);
}

/* How many entries the last block of @p's list still has room for. */
static uint32_t dents_room(struct taskring_store *st, struct tr_slot *p)
{
	uint32_t cap;
	uint64_t tail = TR_GET(p->s_dents_tail);
	struct tr_dents_hdr *h = tail ? dents_block(st, tail, &cap) : NULL;
	if (!h)
		return 0;
	uint32_t count = atomic_load_explicit(&h->t_count, memory_order_relaxed);
	return count < cap ? cap - count : 0;
}

static uint64_t dents_alloc(struct taskring_store *st, uint32_t entries)
{
	uint32_t cap = entries < DENTS_MIN_CAP ? DENTS_MIN_CAP : entries;
	uint64_t off = tr__arena_alloc_reclaim(st, sizeof(struct tr_dents_hdr) + (size_t)cap * sizeof(struct tr_dent));
	if (off) {
		/* The last block of a list: no link, and no stamp (it is linked
		 * under the deps lock; a death in between leaks it). */
		tr__arena_attach(st, off);
		struct tr_dents_hdr *h = (struct tr_dents_hdr *)(st->arena + off + sizeof(struct tr_block));
		atomic_store_explicit(&h->t_count, 0, memory_order_relaxed);
		TR_SET(h->t_cap, cap);
	}
	return off;
}

/*
 * Check one dependency named by handle @h for a job being enqueued, under
 * the deps lock, and write its entry @d. Returns 0 (done: complete), 1 (to
 * register: pending or running, now with TR_ST_DEPS), or an error.
 */
static int check_dependency(struct taskring_store *st, const struct taskring_job *h, struct tr_dep *d)
{
	uint32_t state;
	int err;

	if (!h || h->store != st)
		return -EINVAL;
	struct tr_slot *p = tr__read_begin(h, &state, &err);
	if (!p)
		return err;
	uint8_t uuid[16];
	tr__copy_shared(uuid, p->s_uuid, 16);
	if (tr__read_end(h, p) || memcmp(uuid, h->uuid, 16))
		return -ENOENT;
	for (;;) {
		uint32_t status = TR_STATUS(state);
		if (TR_TAG(state) != TR_GEN_TAG(h->gen) || status == TR_ST_FREE)
			return -ENOENT;
		if (status == TASKRING_COMPLETE) {
			/* Complete stays complete; but a result_ttl that has
			 * passed makes it gone, as for every other call. */
			if (tr__ttl_expired(p, state))
				return -ENOENT;
			break;
		}
		if (TR_TERMINAL(status))
			return TASKRING_EDEPFAILED;
		if (state & TR_ST_DEPS)
			break;
		/* Acq_rel: after this, its end is resolved under our lock. */
		if (atomic_compare_exchange_weak_explicit(&p->s_state, &state, state | TR_ST_DEPS,
							  memory_order_acq_rel, memory_order_acquire)) {
			TR_SET(p->s_dents_head, 0);
			TR_SET(p->s_dents_tail, 0);
			state |= TR_ST_DEPS;
			break;
		}
	}
	memcpy(d->d_uuid, uuid, 16);
	d->d_slot = h->slot;
	d->d_gen = h->gen;
	d->d_done = TR_STATUS(state) == TASKRING_COMPLETE;
	d->d_pad = 0;
	return !d->d_done;
}

/* A dependency's target slot and how many new entries its list gets. */
struct tr_deps_group {
	uint32_t slot, count;
	uint32_t fresh; /* an item of this batch: its list starts empty */
	uint64_t spare; /* a block for them when the last one is full */
};

static int by_key(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * Before an enqueue of @n items with dependencies writes anything, with the
 * deps lock held (taken here): check every dependency on a handle, write
 * the items' tr_dep arrays (those on earlier items are completed by
 * tr__deps_commit()), and take the list blocks the new entries need. @idx are
 * the items' slots. On error the lock is released and nothing changed but
 * TR_ST_DEPS bits, which are harmless.
 */
int tr__deps_prepare(struct taskring_store *st, struct enq_req *r, size_t n, const uint32_t *idx)
{
	size_t nreg = 0, k = 0;
	int rc = tr__deps_lock(st);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct tr_dep *d = r[i].ndeps ? (struct tr_dep *)(st->arena + r[i].deps_off + sizeof(struct tr_block))
					      : NULL;
		r[i].deps_left = 0;
		for (uint32_t j = 0; j < r[i].nxdeps; j++) {
			rc = check_dependency(st, &r[i].xdeps[j], &d[j]);
			if (rc < 0)
				goto fail;
			r[i].deps_left += (uint32_t)rc;
			nreg += (size_t)rc;
		}
		nreg += r[i].nideps;
		r[i].deps_left += r[i].nideps;
	}
	/* One group per target slot, with a block for the entries that do not
	 * fit its list's last block. */
	/* (slot << 1 | 1 for an item of this batch, whose list starts empty):
	 * a slot popped for the batch holds no live job, so no slot is both. */
	uint64_t *targets = nreg ? malloc(nreg * sizeof(uint64_t)) : NULL;
	struct tr_deps_group *g = nreg ? malloc(nreg * sizeof(*g)) : NULL;
	if (nreg && (!targets || !g)) {
		free(targets);
		free(g);
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		struct tr_dep *d = r[i].ndeps ? (struct tr_dep *)(st->arena + r[i].deps_off + sizeof(struct tr_block))
					      : NULL;
		for (uint32_t j = 0; j < r[i].nxdeps; j++)
			if (!d[j].d_done)
				targets[k++] = (uint64_t)d[j].d_slot << 1;
		for (uint32_t j = 0; j < r[i].nideps; j++)
			targets[k++] = (uint64_t)idx[r[i].ideps[j]] << 1 | 1;
	}
	if (nreg)
		qsort(targets, nreg, sizeof(uint64_t), by_key);
	size_t ng = 0;
	for (size_t i = 0; i < nreg; i++) {
		if (ng && g[ng - 1].slot == (uint32_t)(targets[i] >> 1)) {
			g[ng - 1].count++;
			continue;
		}
		g[ng].slot = (uint32_t)(targets[i] >> 1);
		g[ng].fresh = (uint32_t)(targets[i] & 1);
		g[ng].count = 1;
		g[ng].spare = 0;
		ng++;
	}
	free(targets);
	for (size_t i = 0; i < ng; i++) {
		uint32_t room = g[i].fresh ? 0 : dents_room(st, S(st, g[i].slot));
		if (g[i].count > room && !(g[i].spare = dents_alloc(st, g[i].count - room))) {
			for (size_t j = 0; j < i; j++)
				if (g[j].spare)
					tr__arena_free(st, g[j].spare);
			free(g);
			rc = -EAGAIN;
			goto fail;
		}
	}
	r[0].plan = g;
	r[0].nplan = ng;
	return 0;
fail:
	deps_unlock_relink(st);
	return rc;
}

static struct tr_deps_group *group_of(struct enq_req *r, uint32_t slot)
{
	size_t lo = 0, hi = r[0].nplan;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (r[0].plan[mid].slot < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r[0].nplan && r[0].plan[lo].slot == slot ? &r[0].plan[lo] : NULL;
}

/* Give back what tr__deps_prepare() took, and the lock (a failed enqueue). */
void tr__deps_abort(struct taskring_store *st, struct enq_req *r, size_t n)
{
	(void)n;
	for (size_t i = 0; i < r[0].nplan; i++)
		if (r[0].plan[i].spare)
			tr__arena_free(st, r[0].plan[i].spare);
	free(r[0].plan);
	r[0].plan = NULL;
	r[0].nplan = 0;
	deps_unlock_relink(st);
}

/*
 * After the items were written (@made: their jobs; @idx[i] TR_NIL for an item
 * that found its unique key taken and made nothing): complete the entries on
 * earlier items, register every new job in its dependencies' lists, and mark
 * the jobs still waiting (r[i].deps_left > 0) TR_LOC_WAITING, which keeps
 * them out of the queues. Releases the deps lock.
 */
void tr__deps_commit(struct taskring_store *st, struct enq_req *r, size_t n, const uint32_t *idx,
		     const struct taskring_job *made)
{
	for (size_t i = 0; i < n; i++) {
		if (!r[i].ndeps || idx[i] == TR_NIL)
			continue;
		struct tr_slot *s = S(st, idx[i]);
		struct tr_dep *d = (struct tr_dep *)(st->arena + r[i].deps_off + sizeof(struct tr_block));
		for (uint32_t j = 0; j < r[i].nideps; j++) {
			const struct taskring_job *m = &made[r[i].ideps[j]];
			struct tr_dep *e = &d[r[i].nxdeps + j];
			memcpy(e->d_uuid, m->uuid, 16);
			e->d_slot = m->slot;
			e->d_gen = m->gen;
			e->d_done = 0;
			e->d_pad = 0;
		}
		for (uint32_t j = 0; j < r[i].ndeps; j++) {
			if (d[j].d_done)
				continue;
			struct tr_dent t = {.t_slot = idx[i], .t_gen = made[i].gen, .t_index = j};
			memcpy(t.t_uuid, made[i].uuid, 16);
			struct tr_deps_group *g = group_of(r, d[j].d_slot);
			dents_append(st, S(st, d[j].d_slot), &t, g ? &g->spare : &(uint64_t){0});
		}
		TR_SET(s->s_deps_left, r[i].deps_left);
		if (r[i].deps_left)
			TR_SET(s->s_loc, TR_LOC_WAITING);
	}
	for (size_t i = 0; i < r[0].nplan; i++)
		if (r[0].plan[i].spare) /* planned for an item that made nothing */
			tr__arena_free(st, r[0].plan[i].spare);
	free(r[0].plan);
	r[0].plan = NULL;
	r[0].nplan = 0;
	deps_unlock_relink(st);
}

/* ---- recovery ------------------------------------------------------------------ */

/*
 * After a replay (ckpt.c), in a region nobody else sees yet: complete the
 * dependency entries of every job from the jobs they name, and put each job
 * back in the dependents lists it was in: those of its dependencies that
 * had not ended when it was made (a job gone from its slot ended long ago
 * and counts as met). A pending job waits for those not complete; the
 * repair then resolves every dependency that has already ended (a cancel
 * that the crash lost is made again, and logged).
 */
void tr__deps_restore(struct taskring_store *st, const uint32_t *seq, uint32_t nseq)
{
	/* In the order the jobs were made (@seq, if not NULL: the slots that
	 * hold jobs, in that order), so each dependents list is in that order
	 * again. */
	for (uint32_t r = 0; r < (seq ? nseq : st->nslots); r++) {
		uint32_t i = seq ? seq[r] : r;
		struct tr_slot *d = S(st, i);
		uint32_t state = atomic_load_explicit(&d->s_state, memory_order_relaxed), n;
		struct tr_dep *deps = deps_of(st, d, &n);
		if (TR_STATUS(state) == TR_ST_FREE || !deps)
			continue;
		int pending = TR_STATUS(state) == TASKRING_PENDING;
		uint32_t left = 0, gen = atomic_load_explicit(&d->s_gen, memory_order_relaxed);
		int64_t made = TR_GET(d->s_created_at);
		for (uint32_t k = 0; k < n; k++) {
			struct tr_slot *p = deps[k].d_slot < st->nslots ? S(st, deps[k].d_slot) : NULL;
			uint32_t ps = p ? atomic_load_explicit(&p->s_state, memory_order_relaxed) : TR_ST_FREE;
			deps[k].d_done = 1;
			if (!p || TR_STATUS(ps) == TR_ST_FREE || memcmp(p->s_uuid, deps[k].d_uuid, 16) ||
			    (TR_TERMINAL(TR_STATUS(ps)) && TR_GET(p->s_completed_at) < made))
				continue;
			deps[k].d_gen = atomic_load_explicit(&p->s_gen, memory_order_relaxed);
			deps[k].d_done = TR_STATUS(ps) == TASKRING_COMPLETE || !pending;
			if (!(ps & TR_ST_DEPS)) {
				atomic_store_explicit(&p->s_state, ps | TR_ST_DEPS, memory_order_relaxed);
				TR_SET(p->s_dents_head, 0);
				TR_SET(p->s_dents_tail, 0);
			}
			uint64_t spare = dents_room(st, p) ? 0 : dents_alloc(st, DENTS_MIN_CAP);
			struct tr_dent t = {.t_slot = i, .t_gen = gen, .t_index = k};
			memcpy(t.t_uuid, d->s_uuid, 16);
			dents_append(st, p, &t, &spare);
			if (spare)
				tr__arena_free(st, spare);
			left += !deps[k].d_done;
		}
		if (pending) {
			TR_SET(d->s_deps_left, left);
			TR_SET(d->s_loc, left ? TR_LOC_WAITING : TR_LOC_NONE);
		}
	}
	tr__deps_repair(st);
	atomic_store_explicit(&st->deps_relink, 0, memory_order_relaxed); /* recovery links them */
}

/* ---- reads -------------------------------------------------------------------- */

/*
 * Copy up to @max handles from a list of @total into @out only after the
 * seqlock check passed, so a failed call leaves @out untouched: @tmp holds
 * them meanwhile.
 */
static int finish_list(const struct taskring_job *job, struct tr_slot *s, struct taskring_job *tmp, size_t w,
		       size_t total, struct taskring_job *out)
{
	int rc = tr__read_end(job, s);
	if (rc == 0 && w)
		memcpy(out, tmp, w * sizeof(*tmp));
	free(tmp);
	if (rc)
		return rc;
	return total > INT32_MAX ? INT32_MAX : (int)total;
}

/* Room for the first min(@n, @max) handles of a list, or -ENOMEM. */
static int list_room(size_t n, size_t max, size_t *wp, struct taskring_job **tmpp)
{
	*wp = n < max ? n : max;
	*tmpp = *wp ? malloc(*wp * sizeof(**tmpp)) : NULL;
	return *wp && !*tmpp ? -ENOMEM : 0;
}

/* The checks both lists begin with: the slot of @job under a seqlock read,
 * or NULL with *@err set. */
static struct tr_slot *list_begin(const struct taskring_job *job, const struct taskring_job *out, size_t max,
				  uint32_t *statep, int *err)
{
	if (!out && max) {
		*err = -EINVAL;
		return NULL;
	}
	return tr__read_begin(job, statep, err);
}

int taskring_job_dependencies(const struct taskring_job *job, struct taskring_job *out, size_t max)
{
	uint32_t state, n;
	int err;
	struct tr_slot *s = list_begin(job, out, max, &state, &err);
	if (!s)
		return err;
	struct taskring_store *st = job->store;
	struct tr_dep *d = deps_of(st, s, &n);
	if (!d)
		n = 0;
	size_t w;
	struct taskring_job *tmp;
	if ((err = list_room(n, max, &w, &tmp)) != 0)
		return err;
	for (size_t i = 0; i < w; i++) {
		struct tr_dep e;
		tr__copy_shared(&e, &d[i], sizeof(e));
		tmp[i] = (struct taskring_job){st, e.d_slot, e.d_gen, {0}};
		memcpy(tmp[i].uuid, e.d_uuid, 16);
	}
	return finish_list(job, s, tmp, w, n, out);
}

int taskring_job_dependents(const struct taskring_job *job, struct taskring_job *out, size_t max)
{
	uint32_t state;
	int err;
	struct tr_slot *s = list_begin(job, out, max, &state, &err);
	if (!s)
		return err;
	struct taskring_store *st = job->store;
	int has = !!(state & TR_ST_DEPS);
	size_t w, total = 0;
	struct taskring_job *tmp;
	if ((err = list_room(has ? tr__dents_count(st, s) : 0, max, &w, &tmp)) != 0)
		return err;
	struct dents_walk walk;
	struct tr_dent e;
	walk_start(&walk, st, s);
	while (has && walk_next_present(&walk, st, &e)) {
		if (total < w) {
			tmp[total] = (struct taskring_job){st, e.t_slot, e.t_gen, {0}};
			memcpy(tmp[total].uuid, e.t_uuid, 16);
		}
		total++;
	}
	/* Entries added since they were counted are counted, not copied. */
	return finish_list(job, s, tmp, total < w ? total : w, total, out);
}
