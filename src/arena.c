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
 * space for an allocator with no lock and no step whose interruption could
 * corrupt it.
 *
 * Crash note: a process that dies between taking a block and recording it in
 * a slot leaks that block (space, never data); the reaper's future full scan
 * can rebuild the free stacks from the slot table.
 *
 * Offsets are relative to the arena's start and are never 0 for a real block
 * (the first 64 bytes are reserved), so 0 means "none" in a slot. Every
 * offset and length read back from a slot is bounds-checked here.
 */
#include <errno.h>
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

/* Returns the block's offset, or 0 when there is no room. */
uint64_t tr__arena_alloc(struct taskring_store *st, size_t len)
{
	int k = size_class(len);
	uint64_t off, size;
	int carved = 0;

	if (k < 0)
		return 0;
	size = (uint64_t)1 << (TR_ARENA_MIN_SHIFT + k);
	off = pop_class(st, k);
	if (!off) {
		uint64_t bump = atomic_load_explicit(&st->hdr->h_arena_bump, memory_order_relaxed);
		for (;;) {
			/* Blocks are aligned to 64 bytes, not to their size. */
			if (bump < TR_CACHELINE || bump > st->arena_bytes || st->arena_bytes - bump < size)
				break;
			if (atomic_compare_exchange_weak_explicit(&st->hdr->h_arena_bump, &bump, bump + size,
								  memory_order_relaxed, memory_order_relaxed)) {
				off = bump;
				carved = 1;
				populate_ahead(st, bump, bump + size);
				break;
			}
		}
	}
	for (int j = k + 1; !off && j < TR_ARENA_CLASSES; j++)
		off = pop_class(st, j);
	if (!off)
		return 0;
	struct tr_block *b = block_at(st, off);
	if (!b)
		return 0;
	/* A carved block gets its class; a reused one keeps the class of the
	 * stack it came from. */
	if (carved)
		TR_SET(b->k_magic, TR_BLOCK_MAGIC | (uint32_t)k);
	TR_SET(b->k_len, (uint32_t)len);
	TR_SET(b->k_next, 0);
	return off;
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
