/*
 * arena.c - variable-size blobs in the shared region: payloads and results
 * larger than a slot's inline space, error-history entries, metadata and
 * retry-delay lists.
 *
 * Blocks come in power-of-two size classes from 64 bytes (class 0) upwards;
 * each starts with a 16-byte struct tr_block header that records its class.
 * Fresh blocks are carved from a bump pointer; freed blocks go onto a
 * lock-free stack per class (Treiber), whose head packs a 32-bit ABA tag with
 * the block's offset / 64, so a pop that raced with a pop-and-push of the same
 * block fails its CAS. When a class and the bump space are exhausted, a larger
 * free block is used whole (it keeps its class, so freeing returns it where
 * it came from). Blocks are never split or merged: the arena trades some
 * space for an allocator with no lock on its common path (only carving
 * takes one) and no step whose interruption could corrupt it.
 *
 * Crash safety. A block taken and not yet attached to a job carries its
 * allocator's process token in k_next (TR_BLOCK_STAMP | token); attaching
 * it (tr__arena_attach(), before the slot names it) clears that, and list
 * blocks (errors, dependents) overwrite it with their link. So a block
 * whose stamp names a dead process was never attached: after a death, the
 * reaper's census (tr__arena_census()) frees every such block that no slot
 * names either. Carving from the bump pointer is under a short lock with a
 * journal (h_arena_lock), so every block below the bump has its header and
 * the census can walk the arena block by block; a carver killed between
 * the two is finished by the next (tr__arena_repair()). Three windows of a
 * few instructions still leak (space, never data): a block popped from a
 * free stack and not yet stamped, one attached and not yet stored in its
 * slot, and one unhooked from a job and not yet pushed.
 *
 * Offsets are relative to the arena's start and are never 0 for a real block
 * (the first 64 bytes are reserved), so 0 means "none" in a slot. Every
 * offset and length read back from a slot is bounds-checked here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include "internal.h"

static int size_class(size_t bytes)
{
	size_t need = bytes + sizeof(struct tr_block);
	int k = 0;
	while (((size_t)1 << (TR_ARENA_MIN_SHIFT + k)) < need) {
		k++;
		if (k >= TR_ARENA_CLASSES)
			return -1;
	}
	return k;
}

static struct tr_block *block_at(struct taskring_store *st, uint64_t off)
{
	if (off < TR_CACHELINE || off > st->arena_bytes - sizeof(struct tr_block) || (off & 63))
		return NULL;
	return (struct tr_block *)(st->arena + off);
}

static uint64_t pop_class(struct taskring_store *st, int k)
{
	_Atomic uint64_t *head = &st->hdr->h_arena_free[k];
	/* Acquire: pairs with the release in tr__arena_free so the block's
	 * k_next link is visible. */
	uint64_t h = atomic_load_explicit(head, memory_order_acquire);

	for (;;) {
		uint64_t off = (h & 0xffffffffu) << TR_ARENA_MIN_SHIFT;
		if (off == 0)
			return 0;
		struct tr_block *b = block_at(st, off);
		if (!b)
			return 0; /* scribbled head: give up on this class */
		uint64_t next = TR_GET(b->k_next);
		uint64_t nh = ((h >> 32) + 1) << 32 | (next >> TR_ARENA_MIN_SHIFT);
		if (atomic_compare_exchange_weak_explicit(head, &h, nh, memory_order_acquire, memory_order_acquire))
			return off;
	}
}

/*
 * The carve of [@from, @to) from the bump space crossed into a new MiB:
 * fault in the next one with one call, so the blocks carved from it do not
 * each take a page fault (which costs microseconds on a VM; recovery and
 * large batches carve a block per job). Only the carver that crosses the
 * line does it; a failure only means the faults happen anyway.
 */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define POPULATE_STEP (1u << 20)

static void populate_ahead(struct taskring_store *st, uint64_t from, uint64_t to)
{
	if (from / POPULATE_STEP == to / POPULATE_STEP && from % POPULATE_STEP)
		return;
	uint64_t start = (to / POPULATE_STEP) * POPULATE_STEP, end = start + 2 * POPULATE_STEP;
	uintptr_t base = (uintptr_t)st->arena + start;
	uintptr_t page = base & ~(uintptr_t)(TR_PAGE - 1);
	if (end > st->arena_bytes)
		end = st->arena_bytes;
	if (end > start)
		madvise((void *)page, (size_t)((uintptr_t)st->arena + end - page), MADV_POPULATE_WRITE);
}

/* Is @bump a place to carve a block of @size bytes from? */
static int bump_ok(struct taskring_store *st, uint64_t bump, uint64_t size)
{
	return bump >= TR_CACHELINE && !(bump & (TR_CACHELINE - 1)) && bump <= st->arena_bytes &&
	       st->arena_bytes - bump >= size;
}

/* Returns the block's offset, or 0 when there is no room. */
uint64_t tr__arena_alloc(struct taskring_store *st, size_t len)
{
	int k = size_class(len);
	uint64_t off, size;
	int carved = 0;

	if (k < 0)
		return 0;
	size = (uint64_t)1 << (TR_ARENA_MIN_SHIFT + k);
	uint32_t stamp = TR_BLOCK_STAMP_TOKEN(tr__proc_token(st));
	off = pop_class(st, k);
	if (!off) {
		struct tr_hdr *h = st->hdr;
		uint64_t bump = atomic_load_explicit(&h->h_arena_bump, memory_order_relaxed);
		/* Blocks are aligned to 64 bytes, not to their size (a bump that
		 * is not was written over: never carve there). */
		if (bump_ok(st, bump, size) && tr__spin_lock(&h->h_arena_lock, st, TR_LOCK_ARENA) == 0) {
			bump = atomic_load_explicit(&h->h_arena_bump, memory_order_relaxed);
			if (bump_ok(st, bump, size)) {
				/* The header, then the bump: a block below the bump
				 * always has one (the journal covers a carver
				 * killed in between). */
				atomic_store_explicit(&h->h_arena_carve, bump | (uint64_t)k, memory_order_relaxed);
				struct tr_block *nb = (struct tr_block *)(st->arena + bump);
				TR_SET(nb->k_magic, TR_BLOCK_MAGIC | (uint32_t)k);
				TR_SET(nb->k_len, 0);
				TR_SET(nb->k_next, TR_BLOCK_STAMP | stamp);
				TR_CRASH(ARENA_CARVE);
				atomic_store_explicit(&h->h_arena_bump, bump + size, memory_order_release);
				atomic_store_explicit(&h->h_arena_carve, 0, memory_order_relaxed);
				off = bump;
				carved = 1;
			}
			tr__spin_unlock(&h->h_arena_lock);
			if (carved)
				populate_ahead(st, off, off + size);
		}
	}
	for (int j = k + 1; !off && j < TR_ARENA_CLASSES; j++)
		off = pop_class(st, j);
	if (!off)
		return 0;
	struct tr_block *b = block_at(st, off);
	if (!b)
		return 0;
	/* A carved block has its class; a reused one keeps the class of the
	 * stack it came from. Ours until attached: the stamp says so. */
	TR_SET(b->k_len, (uint32_t)len);
	TR_SET(b->k_next, TR_BLOCK_STAMP | stamp);
	TR_CRASH(ARENA_TAKEN);
	return off;
}

/* Block @off is about to be named by a slot: no longer anybody's in flight
 * (it must not look like a block its allocator died holding). */
void tr__arena_attach(struct taskring_store *st, uint64_t off)
{
	struct tr_block *b = off ? block_at(st, off) : NULL;
	if (b && (TR_GET(b->k_next) & TR_BLOCK_STAMP))
		TR_SET(b->k_next, 0);
}

/* A carver died holding h_arena_lock: give its block the header it was
 * writing if the bump had moved past it, so the arena stays walkable. Its
 * stamp names the dead carver: the census frees it. */
void tr__arena_repair(struct taskring_store *st, uint32_t dead)
{
	struct tr_hdr *h = st->hdr;
	uint64_t j = atomic_load_explicit(&h->h_arena_carve, memory_order_relaxed);
	uint64_t at = j & ~(uint64_t)63, bump = atomic_load_explicit(&h->h_arena_bump, memory_order_relaxed);
	uint32_t k = (uint32_t)(j & 63);
	if (j && k < TR_ARENA_CLASSES && at >= TR_CACHELINE && at + ((uint64_t)1 << (TR_ARENA_MIN_SHIFT + k)) == bump &&
	    bump <= st->arena_bytes) {
		struct tr_block *b = (struct tr_block *)(st->arena + at);
		TR_SET(b->k_magic, TR_BLOCK_MAGIC | k);
		TR_SET(b->k_len, 0);
		TR_SET(b->k_next, TR_BLOCK_STAMP | TR_BLOCK_STAMP_TOKEN(dead & TR_LOCK_TOKEN_MASK));
	}
	atomic_store_explicit(&h->h_arena_carve, 0, memory_order_relaxed);
}

/*
 * After a death: free every block whose stamp names a process that is gone
 * (@dead(st, token) says so) and that no slot names. The slots are read
 * first; a block a live process attaches meanwhile has that process's
 * stamp, or none. Returns how many blocks were freed.
 */
uint64_t tr__arena_census(struct taskring_store *st, int (*dead)(struct taskring_store *, uint32_t, void *),
			  void *arg)
{
	uint64_t nb = st->arena_bytes / TR_CACHELINE, freed = 0;
	uint64_t *named = calloc((size_t)(nb + 63) / 64, sizeof(uint64_t));
	if (!named)
		return 0;
#define NAME(off)                                                                  \
	do {                                                                       \
		uint64_t o_ = (off);                                               \
		if (o_ && o_ < st->arena_bytes && !(o_ & 63))                      \
			named[o_ / TR_CACHELINE / 64] |= 1ull << (o_ / TR_CACHELINE % 64); \
	} while (0)
	for (uint32_t i = 0; i < st->nslots; i++) {
		struct tr_slot *s = &st->slots[i];
		NAME(TR_GET(s->s_payload_off));
		NAME(TR_GET(s->s_result_off));
		NAME(TR_GET(s->s_meta_off));
		NAME(TR_GET(s->s_delays_off));
		NAME(TR_GET(s->s_unique_off));
		NAME(TR_GET(s->s_deps_off));
		/* Lists: their blocks carry links, not stamps; named anyway. */
		uint64_t heads[2] = {TR_GET(s->s_errors_off), TR_GET(s->s_dents_head)};
		for (int l = 0; l < 2; l++)
			for (uint64_t o = heads[l], n = 0; o && n < nb; n++) {
				struct tr_block *b = block_at(st, o);
				if (!b)
					break;
				NAME(o);
				o = TR_GET(b->k_next);
			}
	}
#undef NAME
	uint64_t bump = atomic_load_explicit(&st->hdr->h_arena_bump, memory_order_acquire);
	if (bump > st->arena_bytes)
		bump = st->arena_bytes;
	for (uint64_t off = TR_CACHELINE; off + sizeof(struct tr_block) <= bump;) {
		struct tr_block *b = (struct tr_block *)(st->arena + off);
		uint32_t magic = TR_GET(b->k_magic), k = magic & 0xff;
		if ((magic & ~0xffu) != TR_BLOCK_MAGIC || k >= TR_ARENA_CLASSES)
			break; /* written over: the rest cannot be walked */
		uint64_t next = TR_GET(b->k_next);
		if ((next & TR_BLOCK_STAMP) && !(named[off / TR_CACHELINE / 64] & (1ull << (off / TR_CACHELINE % 64))) &&
		    dead(st, (uint32_t)next & TR_LOCK_TOKEN_MASK, arg) &&
		    __atomic_compare_exchange_n(&b->k_next, &next, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
			tr__arena_free(st, off);
			freed++;
		}
		off += (uint64_t)1 << (TR_ARENA_MIN_SHIFT + k);
	}
	free(named);
	return freed;
}

void tr__arena_free(struct taskring_store *st, uint64_t off)
{
	struct tr_block *b = block_at(st, off);
	if (!b)
		return;
	uint32_t magic = TR_GET(b->k_magic);
	int k = (int)(magic & 0xff);
	if ((magic & ~0xffu) != TR_BLOCK_MAGIC || k >= TR_ARENA_CLASSES)
		return; /* not a block we made: leak rather than corrupt a stack */
	if (off + ((uint64_t)1 << (TR_ARENA_MIN_SHIFT + k)) > st->arena_bytes)
		return;
	_Atomic uint64_t *head = &st->hdr->h_arena_free[k];
	uint64_t h = atomic_load_explicit(head, memory_order_relaxed);
	for (;;) {
		TR_SET(b->k_next, (h & 0xffffffffu) << TR_ARENA_MIN_SHIFT);
		uint64_t nh = ((h >> 32) + 1) << 32 | (off >> TR_ARENA_MIN_SHIFT);
		/* Release: k_next is visible to the popper (acquire above). */
		if (atomic_compare_exchange_weak_explicit(head, &h, nh, memory_order_release, memory_order_relaxed))
			return;
	}
}

/* The data of block @off and its length, or NULL if @off is not sound. */
void *tr__arena_data(struct taskring_store *st, uint64_t off, uint32_t *lenp)
{
	struct tr_block *b = block_at(st, off);
	if (!b)
		return NULL;
	uint32_t magic = TR_GET(b->k_magic);
	uint32_t k = magic & 0xff, len = TR_GET(b->k_len);
	if ((magic & ~0xffu) != TR_BLOCK_MAGIC || k >= TR_ARENA_CLASSES)
		return NULL;
	uint64_t size = (uint64_t)1 << (TR_ARENA_MIN_SHIFT + k);
	if (off + size > st->arena_bytes || len > size - sizeof(struct tr_block))
		return NULL;
	*lenp = len;
	return b + 1;
}

/* Allocate and fill; returns the offset or 0. */
uint64_t tr__arena_put(struct taskring_store *st, const void *data, size_t len)
{
	uint64_t off = tr__arena_alloc(st, len);
	if (off && len)
		tr__copy_shared((struct tr_block *)(st->arena + off) + 1, data, len);
	return off;
}
