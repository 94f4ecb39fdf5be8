/*
 * queue.c - named queues: priority bands of ready jobs, the timer heap of
 * jobs not yet due, and the wake-up protocol for idle workers. Also the task
 * name table, which shares the append-only naming scheme.
 *
 * Ready structure. Each queue has up to TR_BANDS bands, kept sorted by
 * priority, highest first; each band is a doubly linked list of slots
 * (s_prev/s_next), sorted by (priority desc, link order asc). In the common
 * case a band holds one priority and insertion appends at its tail in O(1);
 * claiming takes the head of band 0 in O(1). When more distinct priorities
 * are pending than there are bands, a band holds several, kept sorted by
 * insertion from the tail: still strict priority, FIFO among equals, only
 * slower. Invariant: every job in band i has a higher priority than every
 * job in band i+1; b_prio is the highest priority in the band (its head's).
 *
 * Timers. Jobs whose s_scheduled_at (CLOCK_REALTIME) is in the future sit
 * in the queue's binary min-heap (an array of slot indices; s_heap_pos is
 * each slot's position, for O(log n) removal on cancel). Whoever claims from
 * the queue first moves every due timer into the bands. q_next_due mirrors
 * the heap's top so sleeping workers know how long to sleep.
 *
 * Locking. Bands, heap and a pending slot's s_loc/s_prev/s_next/s_heap_pos
 * change only under the queue's lock (lock.c). A slot's s_loc is set before
 * its links and cleared after them, so that if a process dies holding the
 * lock, tr__queue_repair() can rebuild the bands and heap from the slot table
 * (every PENDING slot of the queue that is linked), in link order. A job
 * waiting on dependencies (TR_LOC_WAITING) is in no list: its s_loc is
 * changed under the deps lock (deps.c), never under a queue lock alone.
 *
 * Wake-up protocol (no lost wake-ups, no system call when nobody sleeps, no
 * fence on the hot path). q_sleepers is incremented and read under the
 * queue's lock, so the lock orders a sleeper's registration against every
 * link and claim:
 *   worker:   w = h_wake; for each queue it serves: lock, q_sleepers += 1,
 *             look at q_ready / q_next_due / q_paused, unlock; if nothing,
 *             futex_wait(h_wake, w, bits of its queues); then q_sleepers -= 1.
 *   producer: lock, link, s = q_sleepers, unlock; if s > 0: h_wake += 1,
 *             futex_wake(h_wake, n, bit of the queue).
 * A producer that links after a worker's look sees its registration and bumps
 * h_wake after the worker read it, so the worker's futex_wait returns at once
 * or is woken. A claimer that leaves jobs behind passes the wake-up on the
 * same way, so one wake per enqueue is enough however many workers sleep.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "wal.h"

/* ---- names ------------------------------------------------------------- */

/* Cached by the store handle's id (a pointer could be reused by a later
 * open of another store) and re-verified against the table on every hit. */
struct name_cache {
	uint64_t store_id;
	uint32_t idx;
};
static __thread struct name_cache qcache[4], tcache[4];
static __thread unsigned qcache_next, tcache_next;

/*
 * Find (or create) @name in an append-only table of 64-byte names whose
 * count lives in *@used. One lookup per thread is cached by index and
 * re-verified by comparing the name, so the hot path is one strncmp.
 */
static int table_find(struct taskring_store *st, const char *name, int create, char *base, size_t stride,
		      uint32_t cap, _Atomic uint32_t *used, struct name_cache *cache, unsigned *next)
{
	if (!name)
		return -EINVAL;
	/* A hit needs no further check: the stored names were checked when
	 * they were made, and strncmp() over 64 bytes matches only a name that
	 * ends where the stored one does. */
	for (int i = 0; i < 4; i++)
		if (cache[i].store_id == st->id && cache[i].idx < cap &&
		    cache[i].idx < atomic_load_explicit(used, memory_order_acquire) &&
		    !strncmp(base + cache[i].idx * stride, name, 64))
			return (int)cache[i].idx;
	int rc = tr__name_check(name);
	if (rc)
		return rc;
	for (int pass = 0; pass < 2; pass++) {
		/* Acquire: pairs with the release below, so names counted are
		 * fully written. */
		uint32_t n = atomic_load_explicit(used, memory_order_acquire);
		if (n > cap)
			n = cap;
		for (uint32_t i = 0; i < n; i++) {
			if (!strncmp(base + i * stride, name, 64)) {
				if (pass == 1) /* another process made it meanwhile */
					tr__unlock(&st->hdr->h_lock);
				cache[*next % 4] = (struct name_cache){st->id, i};
				(*next)++;
				return (int)i;
			}
		}
		if (!create)
			return -ENOENT; /* only on pass 0: pass 1 runs with create */
		if (pass == 1) {
			if (n >= cap) {
				tr__unlock(&st->hdr->h_lock);
				return -ENOSPC;
			}
			char *dst = base + n * stride;
			memset(dst, 0, 64);
			memcpy(dst, name, strlen(name));
			/* Release: the name is complete before it is counted.
			 * A process killed before this store leaves an uncounted
			 * name that the next creator overwrites. */
			atomic_store_explicit(used, n + 1, memory_order_release);
			tr__unlock(&st->hdr->h_lock);
			return (int)n;
		}
		rc = tr__lock(&st->hdr->h_lock, st, -1);
		if (rc)
			return rc;
	}
	tr__unlock(&st->hdr->h_lock);
	return -ENOENT; /* not reached */
}

int tr__queue_find(struct taskring_store *st, const char *name, int create)
{
	return table_find(st, name, create, (char *)st->queues + offsetof(struct tr_queue, q_name),
			  sizeof(struct tr_queue), st->nqueues, &st->hdr->h_queues_used, qcache, &qcache_next);
}

int tr__task_find(struct taskring_store *st, const char *name, int create)
{
	return table_find(st, name, create, (char *)st->tasks, 64, st->ntasks, &st->hdr->h_tasks_used, tcache,
			  &tcache_next);
}

int taskring_task_declare(struct taskring_store *st, const char *task)
{
	if (!st)
		return -EINVAL;
	int rc = tr__task_find(st, task, 1);
	return rc < 0 ? rc : 0;
}

/* ---- bands ------------------------------------------------------------- */

#define S tr__slot

/* The queue's band count, within TR_BANDS (a written-over count is cut). */
static uint32_t nbands(struct tr_queue *q)
{
	if (__builtin_expect(q->q_nbands > TR_BANDS, 0))
		q->q_nbands = TR_BANDS;
	return q->q_nbands;
}

/* The queue's timer count, within the heap's room. */
static uint32_t ntimers(struct taskring_store *st, struct tr_queue *q)
{
	uint32_t n = atomic_load_explicit(&q->q_timers, memory_order_relaxed);
	if (__builtin_expect(n > st->nslots, 0)) {
		n = st->nslots;
		atomic_store_explicit(&q->q_timers, n, memory_order_relaxed);
	}
	return n;
}

static void band_remove_at(struct tr_queue *q, uint32_t b)
{
	uint32_t nb = nbands(q);
	if (b >= nb)
		return;
	memmove(&q->q_bands[b], &q->q_bands[b + 1], (nb - b - 1) * sizeof(struct tr_band));
	q->q_nbands = nb - 1;
}

static void band_insert_sorted(struct taskring_store *st, struct tr_band *b, uint32_t idx)
{
	struct tr_slot *s = S(st, idx);
	int32_t p = s->s_priority;
	uint32_t cur = b->b_tail;

	/* Walk back over lower priorities; stops at once when the tail has the
	 * same priority (the common case), which keeps FIFO among equals.
	 * (At most a slot table's length: a written-over list may loop.) */
	for (uint32_t k = 0; cur != TR_NIL && S(st, cur)->s_priority < p && k < st->nslots; k++)
		cur = S(st, cur)->s_prev;
	if (cur >= st->nslots)
		cur = TR_NIL;
	s->s_prev = cur;
	if (cur == TR_NIL) {
		s->s_next = b->b_head;
		b->b_head = idx;
	} else {
		s->s_next = S(st, cur)->s_next;
		S(st, cur)->s_next = idx;
	}
	if (s->s_next == TR_NIL)
		b->b_tail = idx;
	else
		S(st, s->s_next)->s_prev = idx;
	b->b_count++;
	b->b_prio = S(st, b->b_head)->s_priority;
}

static void ready_insert(struct taskring_store *st, struct tr_queue *q, uint32_t idx)
{
	int32_t p = S(st, idx)->s_priority;
	uint32_t i, nb = nbands(q);

	for (i = 0; i < nb && q->q_bands[i].b_prio > p; i++)
		;
	if (i < nb && q->q_bands[i].b_prio == p) {
		band_insert_sorted(st, &q->q_bands[i], idx);
		return;
	}
	/* A new band fits at i only if everything in band i-1 outranks p. */
	int fits = (i == 0 || S(st, q->q_bands[i - 1].b_tail)->s_priority > p);
	if (fits && nb < TR_BANDS) {
		memmove(&q->q_bands[i + 1], &q->q_bands[i], (nb - i) * sizeof(struct tr_band));
		q->q_bands[i] = (struct tr_band){.b_prio = p, .b_head = TR_NIL, .b_tail = TR_NIL, .b_count = 0};
		q->q_nbands++;
		band_insert_sorted(st, &q->q_bands[i], idx);
		return;
	}
	/* Overflow (or band i-1 reaches below p): share a band, sorted. */
	band_insert_sorted(st, &q->q_bands[i == 0 ? 0 : i - 1], idx);
}

/* The band holding a linked slot: the last band whose top is >= its priority. */
static uint32_t band_of(struct tr_queue *q, int32_t p)
{
	uint32_t b = 0, nb = nbands(q);
	for (uint32_t i = 0; i < nb; i++)
		if (q->q_bands[i].b_prio >= p)
			b = i;
	return b;
}

static void ready_remove(struct taskring_store *st, struct tr_queue *q, uint32_t idx)
{
	struct tr_slot *s = S(st, idx);
	uint32_t bi = band_of(q, s->s_priority);
	struct tr_band *b = &q->q_bands[bi];

	if (s->s_prev == TR_NIL)
		b->b_head = s->s_next;
	else
		S(st, s->s_prev)->s_next = s->s_next;
	if (s->s_next == TR_NIL)
		b->b_tail = s->s_prev;
	else
		S(st, s->s_next)->s_prev = s->s_prev;
	s->s_prev = s->s_next = TR_NIL;
	if (--b->b_count == 0 || b->b_head == TR_NIL)
		band_remove_at(q, bi);
	else
		b->b_prio = S(st, b->b_head)->s_priority;
}

/* ---- timer heap -------------------------------------------------------- */

static uint32_t *heap_of(struct taskring_store *st, struct tr_queue *q)
{
	return st->heaps + (size_t)(q - st->queues) * st->nslots;
}

static int64_t due_of(struct taskring_store *st, uint32_t idx)
{
	return S(st, idx)->s_scheduled_at;
}

static void heap_set(struct taskring_store *st, uint32_t *h, uint32_t pos, uint32_t idx)
{
	h[pos] = idx;
	S(st, idx)->s_heap_pos = pos;
}

static void heap_up(struct taskring_store *st, uint32_t *h, uint32_t pos)
{
	uint32_t idx = h[pos];
	int64_t d = due_of(st, idx);
	while (pos > 0) {
		uint32_t parent = (pos - 1) / 2;
		if (due_of(st, h[parent]) <= d)
			break;
		heap_set(st, h, pos, h[parent]);
		pos = parent;
	}
	heap_set(st, h, pos, idx);
}

static void heap_down(struct taskring_store *st, uint32_t *h, uint32_t n, uint32_t pos)
{
	uint32_t idx = h[pos];
	int64_t d = due_of(st, idx);
	for (;;) {
		uint32_t c = 2 * pos + 1;
		if (c >= n)
			break;
		if (c + 1 < n && due_of(st, h[c + 1]) < due_of(st, h[c]))
			c++;
		if (due_of(st, h[c]) >= d)
			break;
		heap_set(st, h, pos, h[c]);
		pos = c;
	}
	heap_set(st, h, pos, idx);
}

static void heap_remove(struct taskring_store *st, struct tr_queue *q, uint32_t idx)
{
	uint32_t *h = heap_of(st, q);
	uint32_t n = ntimers(st, q);
	uint32_t pos = S(st, idx)->s_heap_pos;

	if (pos >= n || h[pos] != idx)
		return; /* not in the heap: nothing to undo */
	n--;
	if (pos != n) {
		heap_set(st, h, pos, h[n]);
		heap_down(st, h, n, pos);
		heap_up(st, h, pos);
	}
	S(st, idx)->s_heap_pos = TR_NIL;
	atomic_store_explicit(&q->q_timers, n, memory_order_relaxed);
}

static void update_next_due(struct taskring_store *st, struct tr_queue *q)
{
	uint32_t n = ntimers(st, q);
	atomic_store_explicit(&q->q_next_due, n ? due_of(st, heap_of(st, q)[0]) : INT64_MAX, memory_order_relaxed);
}

/* ---- linking ----------------------------------------------------------- */

void tr__queue_link_locked(struct taskring_store *st, struct tr_queue *q, uint32_t idx, int64_t now_real)
{
	struct tr_slot *s = S(st, idx);

	s->s_link_seq = ++q->q_link_seq;
	if (s->s_scheduled_at > now_real) {
		uint32_t n = ntimers(st, q);
		if (n >= st->nslots)
			return; /* a written-over count: the heap has no room */
		TR_SET(s->s_loc, TR_LOC_TIMER);
		heap_of(st, q)[n] = idx;
		atomic_store_explicit(&q->q_timers, n + 1, memory_order_relaxed);
		heap_up(st, heap_of(st, q), n);
		update_next_due(st, q);
	} else {
		TR_SET(s->s_loc, TR_LOC_READY);
		ready_insert(st, q, idx);
		atomic_store_explicit(&q->q_ready, atomic_load_explicit(&q->q_ready, memory_order_relaxed) + 1,
				      memory_order_relaxed);
	}
}

void tr__queue_unlink_locked(struct taskring_store *st, struct tr_queue *q, uint32_t idx)
{
	struct tr_slot *s = S(st, idx);

	if (TR_GET(s->s_loc) == TR_LOC_READY) {
		ready_remove(st, q, idx);
		atomic_store_explicit(&q->q_ready, atomic_load_explicit(&q->q_ready, memory_order_relaxed) - 1,
				      memory_order_relaxed);
	} else if (TR_GET(s->s_loc) == TR_LOC_TIMER) {
		heap_remove(st, q, idx);
		update_next_due(st, q);
	}
	TR_SET(s->s_loc, TR_LOC_NONE);
	/* The callers take the head again (claims, purges): a written-over
	 * s_loc, priority, link or heap position can leave the slot where it
	 * was, and they would find it forever. Rebuild instead; the slot is no
	 * longer marked linked, so the rebuild leaves it out. */
	if (__builtin_expect((nbands(q) > 0 && q->q_bands[0].b_head == idx) ||
			     (ntimers(st, q) > 0 && heap_of(st, q)[0] == idx), 0))
		tr__queue_repair(st, (uint32_t)(q - st->queues));
}

/*
 * Give a linked pending slot a new priority. A ready job moves to the tail of
 * its new priority (as if enqueued now); one in the timer heap keeps its time
 * (the heap is ordered by time alone) and is placed by its new priority when
 * it falls due.
 */
void tr__queue_set_priority_locked(struct taskring_store *st, struct tr_queue *q, uint32_t idx, int32_t priority)
{
	struct tr_slot *s = S(st, idx);

	if (TR_GET(s->s_loc) == TR_LOC_READY) {
		ready_remove(st, q, idx);
		TR_SET(s->s_priority, priority); /* read without the lock by job_info */
		s->s_link_seq = ++q->q_link_seq;
		ready_insert(st, q, idx);
	} else {
		TR_SET(s->s_priority, priority);
	}
}

/* Move every due timer into the bands. */
static void release_due(struct taskring_store *st, struct tr_queue *q, int64_t now_real)
{
	uint32_t *h = heap_of(st, q);
	uint32_t n = ntimers(st, q);
	int moved = 0;

	while (n > 0 && due_of(st, h[0]) <= now_real) {
		uint32_t idx = h[0];
		n--;
		atomic_store_explicit(&q->q_timers, n, memory_order_relaxed);
		if (n > 0) {
			heap_set(st, h, 0, h[n]);
			heap_down(st, h, n, 0);
		}
		S(st, idx)->s_heap_pos = TR_NIL;
		TR_SET(S(st, idx)->s_loc, TR_LOC_READY);
		ready_insert(st, q, idx);
		atomic_store_explicit(&q->q_ready, atomic_load_explicit(&q->q_ready, memory_order_relaxed) + 1,
				      memory_order_relaxed);
		moved = 1;
	}
	if (moved)
		update_next_due(st, q);
}

/*
 * A job at the head of its band whose expiry has passed is cancelled instead
 * of claimed, with the error taskito gives, so expiry needs nobody to watch
 * the clock: it happens when a worker would otherwise have run the job.
 * Counted before the transition, like every ending.
 */
static void expire_locked(struct taskring_store *st, struct tr_queue *q, uint32_t idx, int64_t now_real)
{
	static const char msg[] = "expired before execution";
	struct tr_slot *s = S(st, idx);
	uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);

	if (TR_STATUS(state) == TASKRING_PENDING) {
		/* Ours to recycle once terminal (see proc.c). */
		atomic_store_explicit(&s->s_owner, tr__proc_token(st) | TR_OWNER_CLOSER, memory_order_relaxed);
		tr__error_append_at(st, s, TR_ATTEMPT(state), msg, sizeof(msg) - 1, now_real);
		TR_SET(s->s_completed_at, now_real);
		if (st->wal) {
			int64_t v[2] = {TR_ATTEMPT(state), now_real};
			tr__wal_log(st, TR_LOG_CANCEL, s, v, 2, msg, sizeof(msg) - 1, NULL);
		}
		atomic_fetch_add_explicit(&q->q_cancelled, 1, memory_order_relaxed);
		if (tr__slot_transition(s, state, TR_MKSTATE(TASKRING_CANCELLED, TR_ATTEMPT(state), TR_TAG(state)),
					NULL) == 0) {
			tr__queue_unlink_locked(st, q, idx);
			/* Its dependents are cancelled now; the queue lock is
			 * held, which a cancellation allows (deps.c). */
			tr__slot_finished(st, idx);
			return;
		}
		atomic_fetch_sub_explicit(&q->q_cancelled, 1, memory_order_relaxed);
	}
	tr__queue_unlink_locked(st, q, idx); /* not pending: cannot stay linked */
}

/*
 * Claim the best ready job of @q: under the queue lock, move due timers,
 * take band 0's head, and turn it from PENDING to RUNNING (keeping the
 * WAITERS bit so the final transition wakes result waiters). The state
 * changes before the slot is unlinked, so a process killed in between leaves
 * a RUNNING job (the reaper's business), never a pending job in no list.
 * Returns the slot index or TR_NIL. @now_real may be -1 (see below).
 */
/*
 * Claim the first ready job of @q for the registration @owner: its owner,
 * pid and lease (from @start_mono, @lease_ns long, or the job's timeout when
 * @lease_ns is 0) are written before the CAS that makes it RUNNING, so a
 * reaper that sees it running sees them too (proc.c).
 */
uint32_t tr__queue_pop_locked(struct taskring_store *st, struct tr_queue *q, int64_t now_real, uint32_t owner,
			      int64_t start_mono, int64_t lease_ns)
{
	/* @now_real < 0: read the clock only if there is a timer at all. */
	int64_t due = atomic_load_explicit(&q->q_next_due, memory_order_relaxed);
	if (due != INT64_MAX) {
		if (now_real < 0)
			now_real = tr__now_real();
		if (due <= now_real)
			release_due(st, q, now_real);
	}
	if (atomic_load_explicit(&q->q_paused, memory_order_relaxed))
		return TR_NIL;
	while (nbands(q) > 0) {
		uint32_t idx = q->q_bands[0].b_head;
		if (idx >= st->nslots) {
			/* Corrupt list head: rebuild rather than follow it. */
			tr__queue_repair(st, (uint32_t)(q - st->queues));
			continue;
		}
		struct tr_slot *s = S(st, idx);
		int64_t expires = TR_GET(s->s_expires_at);
		if (expires) {
			if (now_real < 0)
				now_real = tr__now_real();
			if (now_real > expires) {
				expire_locked(st, q, idx, now_real);
				continue;
			}
		}
		uint32_t old = atomic_load_explicit(&s->s_state, memory_order_relaxed);
		int64_t len = lease_ns ? lease_ns : TR_GET(s->s_timeout_ns);
		int64_t lease = start_mono + len;
		for (;;) {
			if (TR_STATUS(old) != TASKRING_PENDING)
				break;
			atomic_store_explicit(&s->s_owner, owner, memory_order_relaxed);
			atomic_store_explicit(&s->s_lease, lease, memory_order_relaxed);
			TR_SET(s->s_lease_ms, (uint32_t)(len / 1000000 > UINT32_MAX ? UINT32_MAX : len / 1000000));
			TR_SET(s->s_owner_pid, (int32_t)tr__pid());
			uint32_t next = TR_MKSTATE(TASKRING_RUNNING, TR_ATTEMPT(old), TR_TAG(old)) |
					(old & (TR_ST_WAITERS | TR_ST_DEPS));
			/* Acq_rel: acquire the producer's slot writes (also
			 * covered by the lock); release our claim. */
			if (atomic_compare_exchange_weak_explicit(&s->s_state, &old, next, memory_order_acq_rel,
								  memory_order_relaxed))
				break;
		}
		if (TR_STATUS(old) == TASKRING_PENDING)
			TR_CRASH(CLAIM);
		tr__queue_unlink_locked(st, q, idx);
		if (TR_STATUS(old) == TASKRING_PENDING) {
			/* After the CAS: a reaper's walk that missed the
			 * claim finds the bound lowered (proc.c). */
			tr__proc_lease_min(st, owner, lease);
			return idx;
		}
		/* A non-pending slot in a ready list cannot happen through the
		 * API; drop it and look again. */
	}
	return TR_NIL;
}

/*
 * Rebuild @qi's bands and heap from the slot table: every PENDING slot of the
 * queue that is linked or ready to be, in link order. Called with the queue lock, taken from
 * a dead holder (lock.c), or when a list is found corrupt. O(slots log slots).
 */
static struct taskring_store *sort_st;
static int by_link_seq(const void *a, const void *b)
{
	uint64_t x = sort_st->slots[*(const uint32_t *)a].s_link_seq;
	uint64_t y = sort_st->slots[*(const uint32_t *)b].s_link_seq;
	return x < y ? -1 : x > y;
}

void tr__queue_repair(struct taskring_store *st, uint32_t qi)
{
	static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;
	struct tr_queue *q = &st->queues[qi];
	uint32_t *list = malloc((size_t)st->nslots * sizeof(uint32_t));
	uint32_t n = 0;
	int64_t now = tr__now_real();

	q->q_nbands = 0;
	atomic_store_explicit(&q->q_ready, 0, memory_order_relaxed);
	atomic_store_explicit(&q->q_timers, 0, memory_order_relaxed);
	for (uint32_t i = 0; i < st->nslots; i++) {
		struct tr_slot *s = S(st, i);
		uint32_t state = atomic_load_explicit(&s->s_state, memory_order_relaxed);
		/* Linked (ready or timer), or made ready by a resolver that has
		 * not linked it yet (it will find it linked and leave it). Jobs
		 * waiting on dependencies are in no list. */
		uint8_t loc = TR_GET(s->s_loc);
		if (s->s_queue != qi || TR_STATUS(state) != TASKRING_PENDING ||
		    (loc != TR_LOC_READY && loc != TR_LOC_TIMER && loc != TR_LOC_READYING))
			continue;
		s->s_prev = s->s_next = s->s_heap_pos = TR_NIL;
		if (list)
			list[n++] = i;
		else
			TR_SET(s->s_loc, TR_LOC_NONE); /* no memory: leave it to the reaper */
	}
	if (!list) {
		update_next_due(st, q);
		return;
	}
	pthread_mutex_lock(&sort_lock);
	sort_st = st;
	qsort(list, n, sizeof(uint32_t), by_link_seq);
	pthread_mutex_unlock(&sort_lock);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t seq = S(st, list[i])->s_link_seq;
		tr__queue_link_locked(st, q, list[i], now);
		S(st, list[i])->s_link_seq = seq;
	}
	update_next_due(st, q);
	free(list);
}

/* ---- wake-ups ---------------------------------------------------------- */

/*
 * Wake up to @n workers asleep on queue @qi: the caller saw q_sleepers > 0
 * under the queue's lock (see the protocol above) and has released it. The
 * seq_cst increment moves h_wake before the system call, so a worker about
 * to sleep with the old value returns at once.
 */
void tr__queue_wake(struct taskring_store *st, uint32_t qi, int n)
{
	atomic_fetch_add_explicit(&st->hdr->h_wake, 1, memory_order_seq_cst);
	tr__futex_wake(&st->hdr->h_wake, n, 1u << (qi % 32));
}

/* How many workers sleep on @q; call with its lock held. */
uint32_t tr__queue_sleepers_locked(struct tr_queue *q)
{
	return atomic_load_explicit(&q->q_sleepers, memory_order_relaxed);
}

static int set_paused(struct taskring_store *st, const char *name, uint32_t v)
{
	if (!st)
		return -EINVAL;
	int qi = tr__queue_find(st, name, 1);
	if (qi < 0)
		return qi;
	struct tr_queue *q = &st->queues[qi];
	int rc = tr__lock(&q->q_lock, st, qi);
	if (rc)
		return rc;
	atomic_store_explicit(&q->q_paused, v, memory_order_relaxed);
	uint32_t sleepers = tr__queue_sleepers_locked(q);
	tr__unlock(&q->q_lock);
	if (!v && sleepers)
		tr__queue_wake(st, (uint32_t)qi, INT32_MAX);
	return 0;
}

int taskring_queue_pause(struct taskring_store *st, const char *queue)
{
	return set_paused(st, queue, 1);
}

int taskring_queue_resume(struct taskring_store *st, const char *queue)
{
	return set_paused(st, queue, 0);
}
