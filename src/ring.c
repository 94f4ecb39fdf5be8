/*
 * ring.c - the recycle ring: a bounded multi-producer multi-consumer ring of
 * slot indices (Vyukov's design), holding every slot that is free or
 * terminal, oldest first.
 *
 * Producers that need a slot pop the oldest entry; a job that reaches a
 * terminal state pushes its slot at the tail. So a terminal job keeps its
 * result until every older free or terminal slot has been reused: "oldest
 * terminal first", with no scan. Capacity is a power of two >= the slot
 * count; since each slot is in the ring at most once, a push never finds it
 * full.
 *
 * Each cell is one u64: the high 32 bits are the cell's turn (sequence), the
 * low 32 bits the index. A producer of position p waits for turn p, claims p
 * by CAS on the tail and writes (p + 1, idx) with release; a consumer of
 * position p waits for turn p + 1, claims p by CAS on the head, and writes
 * turn p + capacity. Positions are 32-bit and compared as signed
 * differences, which is safe because the capacity is below 2^31.
 *
 * Crash note: a process killed between its CAS and its cell store leaves that
 * cell's turn behind: after a pop, the slot it took is lost and a push
 * cannot pass that cell once the ring wraps to it; after a push, pops see
 * the ring empty from that cell on. Only slot reuse stalls, never a job
 * already made, but enqueue can then fail with -EAGAIN. The reaper does not
 * repair this yet (a few instructions wide; test_killsoak counts the cases).
 * Outside that window a slot a dead producer popped carries its mark
 * (s_holder, set here) and is given back by the reaper (proc.c).
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

void tr__ring_init(struct taskring_store *st)
{
	uint32_t cap = st->ring_mask + 1, i;

	/* Every slot starts free and in the ring, in index order. */
	for (i = 0; i < cap; i++) {
		uint64_t turn = i < st->nslots ? (uint64_t)(i + 1) : (uint64_t)i;
		uint64_t val = i < st->nslots ? i : 0;
		atomic_store_explicit(&st->ring[i], (turn << 32) | val, memory_order_relaxed);
	}
	atomic_store_explicit(&st->hdr->h_ring_head, 0, memory_order_relaxed);
	atomic_store_explicit(&st->hdr->h_ring_tail, st->nslots, memory_order_relaxed);
}

int tr__ring_push(struct taskring_store *st, uint32_t idx)
{
	_Atomic uint32_t *tailp = &st->hdr->h_ring_tail;
	uint32_t pos = atomic_load_explicit(tailp, memory_order_relaxed);

	for (;;) {
		_Atomic uint64_t *cell = &st->ring[pos & st->ring_mask];
		/* Acquire: pairs with the consumer's release of this cell's turn,
		 * so its read of the old value happened before we overwrite it. */
		uint64_t c = atomic_load_explicit(cell, memory_order_acquire);
		int32_t dif = (int32_t)((uint32_t)(c >> 32) - pos);
		if (dif == 0) {
			/* Seq_cst: the full barrier between this push and the
			 * look for blocked producers that follows it (see
			 * wake_blocked() in job.c); a locked instruction on x86
			 * either way. */
			/* Nobody holds it once it is in the ring (proc.c). */
			atomic_store_explicit(&st->slots[idx].s_owner, 0, memory_order_relaxed);
			if (atomic_compare_exchange_weak_explicit(tailp, &pos, pos + 1, memory_order_seq_cst,
								  memory_order_relaxed)) {
				/* Release: the slot's terminal state and fields are
				 * visible to whoever pops this index. */
				atomic_store_explicit(cell, ((uint64_t)(pos + 1) << 32) | idx, memory_order_release);
				return 0;
			}
		} else if (dif < 0) {
			return -ENOSPC; /* cannot happen while each slot is in once */
		} else {
			pos = atomic_load_explicit(tailp, memory_order_relaxed);
		}
	}
}

/* Push back a slot popped and not used: its holder mark goes first (the
 * generation it names is still the slot's, so it would count). */
void tr__ring_give_back(struct taskring_store *st, uint32_t idx)
{
	atomic_store_explicit(&st->slots[idx].s_holder, 0, memory_order_relaxed);
	tr__ring_push(st, idx);
}

int tr__ring_pop(struct taskring_store *st, uint32_t *idx)
{
	_Atomic uint32_t *headp = &st->hdr->h_ring_head;
	uint32_t pos = atomic_load_explicit(headp, memory_order_relaxed);

	for (;;) {
		_Atomic uint64_t *cell = &st->ring[pos & st->ring_mask];
		/* Acquire: pairs with the producer's release above. */
		uint64_t c = atomic_load_explicit(cell, memory_order_acquire);
		int32_t dif = (int32_t)((uint32_t)(c >> 32) - (pos + 1));
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(headp, &pos, pos + 1, memory_order_relaxed,
								  memory_order_relaxed)) {
				uint32_t v = (uint32_t)c;
				/* Release: our read of the value precedes the
				 * producer that reuses this cell. */
				atomic_store_explicit(cell, (uint64_t)(pos + st->ring_mask + 1) << 32,
						      memory_order_release);
				if (v >= st->nslots)
					return -EIO; /* scribbled cell: never index with it */
				/* Ours until written and linked: if we die
				 * before, the reaper finishes or undoes it. */
				struct tr_slot *s = &st->slots[v];
				atomic_store_explicit(&s->s_holder_gen,
						      atomic_load_explicit(&s->s_gen, memory_order_relaxed),
						      memory_order_relaxed);
				atomic_store_explicit(&s->s_holder, tr__proc_token(st) | TR_OWNER_HELD,
						      memory_order_release);
				*idx = v;
				return 0;
			}
		} else if (dif < 0) {
			return -EAGAIN; /* empty */
		} else {
			pos = atomic_load_explicit(headp, memory_order_relaxed);
		}
	}
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
		uint64_t turn = i < n ? (uint64_t)(i + 1) : (uint64_t)i;
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
	free(v);
}
