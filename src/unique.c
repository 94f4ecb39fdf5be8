/*
 * unique.c - the unique-key index: while a job with a given unique_key is
 * pending or running, enqueueing another job with that key returns the
 * existing one (taskito's unique_key). Once the job ends, the key is free.
 *
 * The index is an open-addressing table in the region (h_off_unique), twice
 * the ring's size, of u64 entries: (generation << 32) | (slot + 1), 0 for
 * empty. The key itself lives in the job's arena block (s_unique_off) and its
 * hash in s_unique_hash, both valid only with TR_SF_UNIQUE in s_flags. An entry is live only while its slot still has that
 * generation, the job is pending or running, and the key matches; ending a
 * job therefore frees its key with no work at all, and dead entries are
 * reused by later inserts (they are tombstones in the probe chains). When a
 * probe grows long the table is rebuilt from the slots.
 *
 * Every access happens under h_unique_lock (lock.c): a process that
 * dies holding it leaves a table that the next locker rebuilds from the slot
 * table (tr__lock() calls tr__unique_rebuild() when it takes the lock from a dead holder). Slots are
 * read with the seqlock rules of job.c, since producers recycle them
 * without this lock.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define PROBE_REBUILD 128 /* a probe this long triggers a rebuild */

/* FNV-1a; never 0, so a zeroed slot never matches a key. */
uint32_t tr__unique_hash(const char *key, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 16777619u;
	}
	return h ? h : 1;
}

/*
 * Is entry @e a live job whose key is @key (or, with @key NULL, any live
 * keyed job)? Fills *@out when it is.
 */
static int entry_live(struct taskring_store *st, uint64_t e, const char *key, size_t len, uint32_t hash,
		      struct taskring_job *out)
{
	uint32_t slot = (uint32_t)e - 1, gen = (uint32_t)(e >> 32);
	if (!e || slot >= st->nslots)
		return 0;
	struct tr_slot *s = &st->slots[slot];
	struct taskring_job job = {.store = st, .slot = slot, .gen = gen};
	uint32_t state;
	int err;
	if (!tr__read_begin(&job, &state, &err))
		return 0;
	uint32_t status = TR_STATUS(state);
	if (status != TASKRING_PENDING && status != TASKRING_RUNNING)
		return 0;
	if (key) {
		uint32_t blen;
		const char *k = (TR_GET(s->s_flags) & TR_SF_UNIQUE) ? tr__arena_data(st, TR_GET(s->s_unique_off), &blen)
								 : NULL;
		if (TR_GET(s->s_unique_hash) != hash || !k || blen != len + 1 || memcmp(k, key, len) != 0)
			return 0;
	}
	for (int i = 0; i < 16; i++)
		job.uuid[i] = TR_GET(s->s_uuid[i]);
	if (tr__read_end(&job, s))
		return 0;
	if (out)
		*out = job;
	return 1;
}

int tr__unique_find_locked(struct taskring_store *st, const char *key, size_t len, uint32_t hash,
			   struct taskring_job *out)
{
	uint32_t mask = st->unique_mask;
	for (uint32_t i = 0, pos = hash & mask; i <= mask; i++, pos = (pos + 1) & mask) {
		uint64_t e = TR_GET(st->unique[pos]);
		if (!e)
			return 0;
		if (entry_live(st, e, key, len, hash, out))
			return 1;
	}
	return 0;
}

/* Put an entry at the first empty or dead position of its probe chain. */
static int insert(struct taskring_store *st, uint32_t hash, uint64_t entry)
{
	uint32_t mask = st->unique_mask;
	for (uint32_t i = 0, pos = hash & mask; i <= mask && i < PROBE_REBUILD; i++, pos = (pos + 1) & mask) {
		uint64_t e = TR_GET(st->unique[pos]);
		if (!e || !entry_live(st, e, NULL, 0, 0, NULL)) {
			TR_SET(st->unique[pos], entry);
			return 0;
		}
	}
	return -1;
}

void tr__unique_insert_locked(struct taskring_store *st, uint32_t hash, uint32_t slot, uint32_t gen)
{
	uint64_t entry = ((uint64_t)gen << 32) | (slot + 1);
	if (insert(st, hash, entry) == 0)
		return;
	/* The chain is long with dead entries: rebuild, then insert (the
	 * table is twice the slot count, so there is room). */
	tr__unique_rebuild(st);
	insert(st, hash, entry);
}

/*
 * Rebuild the table from the slots: every pending or running job with a
 * key. Called with the lock held (taken from a dead holder, or when chains grow).
 */
void tr__unique_rebuild(struct taskring_store *st)
{
	memset(st->unique, 0, (size_t)(st->unique_mask + 1) * sizeof(uint64_t));
	for (uint32_t i = 0; i < st->nslots; i++) {
		struct tr_slot *s = &st->slots[i];
		uint32_t gen = atomic_load_explicit(&s->s_gen, memory_order_acquire);
		uint64_t e = ((uint64_t)gen << 32) | (i + 1);
		if ((gen & 1) || !(TR_GET(s->s_flags) & TR_SF_UNIQUE) || !entry_live(st, e, NULL, 0, 0, NULL))
			continue;
		insert(st, TR_GET(s->s_unique_hash), e);
	}
}
