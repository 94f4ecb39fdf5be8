/*
 * ring.c - the recycle ring: a bounded ring of slot indices holding every
 * slot that is free or terminal, oldest first.
 *
 * Producers that need a slot pop the oldest entry; a job that reaches a
 * terminal state pushes its slot at the tail. So a terminal job keeps its
 * result until every older free or terminal slot has been reused: "oldest
 * terminal first", with no scan. Capacity is a power of two >= the slot
 * count; since each slot is in the ring at most once, a push never finds it
 * full.
 *
 * Each cell is one u64: the high 32 bits are the position it was written
 * at plus one (so a reader can tell a cell written for this lap), the low
 * 32 bits the index. Positions are 32-bit and compared as differences,
 * which is safe because the capacity is below 2^31.
 *
 * Two locks (lock.c): pops hold h_ring_pop_lock, pushes h_ring_push_lock,
 * each on its own line with its position and a journal of the step in
 * progress, so producers and completers do not share a line. A lock-free
 * ring (Vyukov's, which this was) has a window between its CAS on a
 * position and its store to the cell: a process killed there lost a slot,
 * or left a cell unpublished that every later pop stopped at. Under a lock
 * whose holder can be found dead, the next locker finishes or undoes the
 * journalled step (tr__ring_repair()). A pop costs what the CAS did: one
 * locked instruction, the unlock a plain store; a push costs two (its
 * journal is cleared with an exchange, the barrier before the look for
 * blocked producers that follows every push).
 *
 * Who may push a slot is decided by a word of the slot: a closer pushes
 * only while s_owner still names it (TR_OWNER_CLOSER | its token), and a
 * producer gives a popped slot back only while s_holder names it
 * (TR_OWNER_HELD | its token). The push clears that word under the lock, so
 * a slot is pushed once: a reaper that takes a dead closer's job moves
 * s_owner to itself first, and a dead pusher's journalled push is finished
 * only if its word still names it (or it had already cleared it).
 *
 * Journals (h_ring_push_op, h_ring_pop_op): position << 32 | kind << 30 |
 * index; 0 when no step is in progress. A popped slot is marked as its
 * producer's (s_holder) only after the head has moved past it, so the
 * reaper, which gives back slots held by dead producers, never finds a
 * mark on a slot still in the ring.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define J_OWNER 1u  /* push of a closer's slot (s_owner) */
#define J_HOLDER 2u /* push of a slot popped and not used (s_holder) */
#define J_POP 3u
#define J_IDX_MASK 0x3fffffffu
#define J_MAKE(pos, kind, idx) ((uint64_t)(pos) << 32 | (uint64_t)(kind) << 30 | (idx))

void tr__ring_init(struct taskring_store *st)
{
	uint32_t cap = st->ring_mask + 1, i;

	/* Every slot starts free and in the ring, in index order. */
	for (i = 0; i < cap; i++) {
		uint64_t turn = i < st->nslots ? (uint64_t)(i + 1) : 0;
		uint64_t val = i < st->nslots ? i : 0;
		atomic_store_explicit(&st->ring[i], (turn << 32) | val, memory_order_relaxed);
	}
	atomic_store_explicit(&st->hdr->h_ring_head, 0, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_tail, st->nslots, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_push_op, 0, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_pop_op, 0, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_push_lock, 0, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_pop_lock, 0, memory_order_relaxed);
}

/* The word of slot @idx that says who may push it, for journal kind @kind. */
static _Atomic uint32_t *claim_word(struct taskring_store *st, uint32_t idx, uint32_t kind)
{
	return kind == J_OWNER ? &st->slots[idx].s_owner : &st->slots[idx].s_holder;
}

/* Write slot @idx at the tail and move it on. Push lock held. */
static void publish(struct taskring_store *st, uint32_t tail, uint32_t idx)
{
	atomic_store_explicit(&st->slots[idx].s_owner, 0, memory_order_relaxed);
	/* Release: the slot's terminal state and fields are visible to
	 * whoever reads this cell and pops this index (a pop looks at the
	 * cell, not at the tail). */
	atomic_store_explicit(&st->ring[tail & st->ring_mask], ((uint64_t)(tail + 1) << 32) | idx,
			      memory_order_release);
	atomic_store_explicit(&st->hdr->h_ring_tail, tail + 1, memory_order_release);
}

/* Push @idx if its word for @kind still holds @claim. */
static int push(struct taskring_store *st, uint32_t idx, uint32_t kind, uint32_t claim)
{
	struct tr_hdr *h = st->hdr;
	if (idx >= st->nslots)
		return -EINVAL;
	int rc = tr__spin_lock(&h->h_ring_push_lock, st, TR_LOCK_RING_PUSH);
	if (rc)
		return rc;
	/* (Never full while each slot is in once; the head is not read, so
	 * the two ends' lines do not travel between producers and workers.) */
	uint32_t tail = atomic_load_explicit(&h->h_ring_tail, memory_order_relaxed);
	_Atomic uint32_t *w = claim_word(st, idx, kind);
	if (atomic_load_explicit(w, memory_order_relaxed) != claim) {
		rc = -EALREADY; /* another process is responsible for it now */
	} else {
		/* The word is ours: only a reaper moves it, and only once we
		 * are dead. Cleared before the tail moves, so a dead pusher's
		 * step is either complete or journalled with its word. */
		atomic_store_explicit(&h->h_ring_push_op, J_MAKE(tail, kind, idx), memory_order_relaxed);
		atomic_store_explicit(w, 0, memory_order_relaxed);
		TR_CRASH(RING_PUSH);
		publish(st, tail, idx);
		/* Seq_cst: the full barrier between the tail's store and
		 * the look for blocked producers that follows this push
		 * (wake_blocked() in job.c; they register, then read the
		 * tail). */
		atomic_exchange_explicit(&h->h_ring_push_op, 0, memory_order_seq_cst);
	}
	tr__spin_unlock(&h->h_ring_push_lock);
	return rc;
}

/* Push the slot of a job we closed (s_owner names us as its closer). */
int tr__ring_push(struct taskring_store *st, uint32_t idx)
{
	return push(st, idx, J_OWNER, tr__proc_token(st) | TR_OWNER_CLOSER);
}

/* Push back a slot we popped (or took over from a dead producer, s_holder
 * naming us) and did not use. */
void tr__ring_give_back(struct taskring_store *st, uint32_t idx)
{
	push(st, idx, J_HOLDER, tr__proc_token(st) | TR_OWNER_HELD);
}

/* A slot a ring repair took out of a dead popper's hands, for this thread
 * to give back once it has let go of the lock (tr__ring_repair()). */
static __thread uint32_t tl_owed = UINT32_MAX;

static void give_back_owed(struct taskring_store *st)
{
	uint32_t idx = tl_owed;
	if (__builtin_expect(idx != UINT32_MAX, 0)) {
		tl_owed = UINT32_MAX;
		tr__ring_give_back(st, idx);
	}
}

/* Take the slot at the head (pop lock held): 0, -EAGAIN (empty) or -EIO (a
 * scribbled cell, stepped past). */
static int pop_locked(struct taskring_store *st, uint32_t *idx)
{
	struct tr_hdr *h = st->hdr;
	uint32_t head = atomic_load_explicit(&h->h_ring_head, memory_order_relaxed);
	/* Acquire: pairs with publish(): the slot's fields are visible. */
	uint64_t c = atomic_load_explicit(&st->ring[head & st->ring_mask], memory_order_acquire);
	if ((uint32_t)(c >> 32) != head + 1) {
		if (atomic_load_explicit(&h->h_ring_tail, memory_order_acquire) - head - 1 > st->ring_mask)
			return -EAGAIN; /* empty */
		/* The tail is past us: the cell was written before it moved
		 * (a push racing our first look), or it was scribbled. */
		c = atomic_load_explicit(&st->ring[head & st->ring_mask], memory_order_acquire);
	}
	uint32_t v = (uint32_t)c;
	if ((uint32_t)(c >> 32) != head + 1 || v >= st->nslots) {
		/* Scribbled: never index with it; step past it. */
		atomic_store_explicit(&h->h_ring_head, head + 1, memory_order_release);
		return -EIO;
	}
	/* The slot leaves the ring, then is marked ours until written and
	 * linked: if we die after, the reaper finishes or undoes it (proc.c);
	 * if we die in between, the next popper marks it (repair). A mark is
	 * never on a slot still in the ring. */
	struct tr_slot *s = &st->slots[v];
	atomic_store_explicit(&h->h_ring_pop_op, J_MAKE(head, J_POP, v), memory_order_relaxed);
	/* Release: our read of the cell precedes the push that reuses it a
	 * lap later. */
	atomic_store_explicit(&h->h_ring_head, head + 1, memory_order_release);
	TR_CRASH(RING_POP);
	atomic_store_explicit(&s->s_holder_gen, atomic_load_explicit(&s->s_gen, memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(&s->s_holder, tr__proc_token(st) | TR_OWNER_HELD, memory_order_relaxed);
	atomic_store_explicit(&h->h_ring_pop_op, 0, memory_order_relaxed);
	*idx = v;
	return 0;
}

/*
 * Take up to @n slots from the head, under one hold of the pop lock (a
 * batch enqueue pays one locked instruction, not one per job). Returns how
 * many (0: empty, or the lock's error), each marked ours in s_holder.
 */
size_t tr__ring_pop_n(struct taskring_store *st, uint32_t *idx, size_t n)
{
	struct tr_hdr *h = st->hdr;
	/* A cell holds a slot for this lap when it was written at this
	 * position (its high half is the position + 1); the tail is not read,
	 * so the two ends' lines do not travel. Nothing to take: no lock (a
	 * snapshot; a racing push is missed as a lock-free ring would). */
	uint32_t head = atomic_load_explicit(&h->h_ring_head, memory_order_relaxed);
	uint64_t c = atomic_load_explicit(&st->ring[head & st->ring_mask], memory_order_relaxed);
	if (!n || ((uint32_t)(c >> 32) != head + 1 && atomic_load_explicit(&h->h_ring_tail, memory_order_relaxed) == head))
		return 0;
	if (tr__spin_lock(&h->h_ring_pop_lock, st, TR_LOCK_RING_POP))
		return 0;
	size_t got = 0;
	for (int bad = 0; got < n && bad < 64;) {
		int rc = pop_locked(st, &idx[got]);
		if (rc == -EAGAIN)
			break;
		if (rc == 0)
			got++;
		else
			bad++;
	}
	tr__spin_unlock(&h->h_ring_pop_lock);
	give_back_owed(st);
	return got;
}

int tr__ring_pop(struct taskring_store *st, uint32_t *idx)
{
	return tr__ring_pop_n(st, idx, 1) == 1 ? 0 : -EAGAIN;
}

/*
 * A ring lock taken from @dead, who died holding it. A push is finished if
 * the pusher was still entitled to it (its word names it, or it had
 * cleared it); a pop whose head had moved is finished by marking the slot
 * ours, to be given back when the lock is let go. A step whose position
 * already moved (push) or had not (pop) needs nothing.
 */
void tr__ring_repair(struct taskring_store *st, int which, uint32_t dead)
{
	struct tr_hdr *h = st->hdr;
	int is_push = which == TR_LOCK_RING_PUSH;
	_Atomic uint64_t *op = is_push ? &h->h_ring_push_op : &h->h_ring_pop_op;
	uint64_t j = atomic_load_explicit(op, memory_order_relaxed);
	uint32_t pos = (uint32_t)(j >> 32);
	uint32_t idx = (uint32_t)j & J_IDX_MASK, kind = (uint32_t)(j >> 30) & 3;
	uint32_t tok = dead & TR_LOCK_TOKEN_MASK;

	if (j && idx < st->nslots && is_push && (kind == J_OWNER || kind == J_HOLDER) &&
	    atomic_load_explicit(&h->h_ring_tail, memory_order_relaxed) == pos) {
		_Atomic uint32_t *w = claim_word(st, idx, kind);
		uint32_t c = tok | (kind == J_OWNER ? TR_OWNER_CLOSER : TR_OWNER_HELD);
		if (atomic_compare_exchange_strong_explicit(w, &c, 0, memory_order_seq_cst, memory_order_relaxed) ||
		    c == 0)
			publish(st, pos, idx);
	} else if (j && idx < st->nslots && !is_push && kind == J_POP &&
		   atomic_load_explicit(&h->h_ring_head, memory_order_relaxed) == pos + 1) {
		struct tr_slot *s = &st->slots[idx];
		atomic_store_explicit(&s->s_holder_gen, atomic_load_explicit(&s->s_gen, memory_order_relaxed),
				      memory_order_relaxed);
		atomic_store_explicit(&s->s_holder, tr__proc_token(st) | TR_OWNER_HELD, memory_order_relaxed);
		tl_owed = idx;
	}
	atomic_store_explicit(op, 0, memory_order_relaxed);
}

/* Finish or undo a ring step whose process died holding a ring lock, now
 * rather than at the next push or pop (the reaper calls this). */
void tr__ring_settle(struct taskring_store *st)
{
	struct tr_hdr *h = st->hdr;
	if (tr__trylock(&h->h_ring_push_lock, st, TR_LOCK_RING_PUSH) == 0)
		tr__spin_unlock(&h->h_ring_push_lock);
	if (tr__trylock(&h->h_ring_pop_lock, st, TR_LOCK_RING_POP) == 0)
		tr__spin_unlock(&h->h_ring_pop_lock);
	give_back_owed(st);
}

struct by_end {
	int64_t at;
	uint32_t idx;
};

static int cmp_end(const void *a, const void *b)
{
	const struct by_end *x = a, *y = b;
	return x->at < y->at ? -1 : x->at > y->at ? 1 : (x->idx > y->idx) - (x->idx < y->idx);
}

/*
 * Recovery: refill the ring from the slots of a region nobody else sees
 * yet: free slots first, then terminal ones, oldest ended first, so reuse
 * takes them in the order it would have.
 */
void tr__ring_rebuild(struct taskring_store *st)
{
	uint32_t cap = st->ring_mask + 1, n = 0, nfree = 0;
	struct by_end *v = malloc((size_t)st->nslots * sizeof(*v));

	for (uint32_t i = 0; i < st->nslots; i++) {
		uint32_t status = TR_STATUS(atomic_load_explicit(&st->slots[i].s_state, memory_order_relaxed));
		if (status == TR_ST_FREE)
			nfree++;
	}
	for (uint32_t i = 0, f = 0, t = nfree; i < st->nslots; i++) {
		struct tr_slot *s = &st->slots[i];
		uint32_t status = TR_STATUS(atomic_load_explicit(&s->s_state, memory_order_relaxed));
		if (status == TR_ST_FREE) {
			if (v)
				v[f++] = (struct by_end){INT64_MIN, i};
		} else if (TR_TERMINAL(status)) {
			if (v)
				v[t++] = (struct by_end){TR_GET(s->s_completed_at), i};
		} else {
			continue;
		}
		n++;
	}
	if (v)
		qsort(v + nfree, n - nfree, sizeof(*v), cmp_end);
	for (uint32_t i = 0, k = 0; i < cap; i++) {
		uint64_t turn = i < n ? (uint64_t)(i + 1) : 0;
		uint32_t idx = 0;
		if (i < n) {
			if (v) {
				idx = v[i].idx;
			} else {
				/* No memory for the order: slot order will do. */
				while (k < st->nslots &&
				       !TR_TERMINAL(TR_STATUS(atomic_load_explicit(&st->slots[k].s_state,
										     memory_order_relaxed))) &&
				       TR_STATUS(atomic_load_explicit(&st->slots[k].s_state, memory_order_relaxed)) !=
					       TR_ST_FREE)
					k++;
				idx = k++;
			}
		}
		atomic_store_explicit(&st->ring[i], (turn << 32) | idx, memory_order_relaxed);
	}
	atomic_store_explicit(&st->hdr->h_ring_head, 0, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_tail, n, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_push_op, 0, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_pop_op, 0, memory_order_relaxed);
	free(v);
}
