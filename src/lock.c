/*
 * lock.c - the region's locks: one 32-bit word each, naming its holder.
 *
 * A lock word is 0 when free, else TR_LOCK_HELD | the holder's process
 * token (proc.c), with TR_LOCK_WAITERS set once someone sleeps on it. So a
 * waiter can tell whether the holder is still alive, from the process table
 * (an OFD lock probe), instead of trusting the kernel's robust-futex list:
 *
 * - A holder that died is taken over with one CAS from its word to ours,
 *   and the structure the lock guards is repaired (its repair function, as
 *   for EOWNERDEAD), then used.
 * - The word is all the lock's state. pthread's robust mutexes keep a list
 *   pointer and a kind in the shared mutex, which glibc follows and asserts
 *   on: a process that scribbles the region could crash every locker. Here
 *   a scribbled word is a token that names nobody alive, so the next locker
 *   takes it over and repairs; the repairs bound every walk they make.
 *
 * Waiting: spin about 50 us (reading the word, not CASing it, so the
 * holder keeps its line), then sleep on the word with the waiters bit set,
 * waking every TR_LOCK_PROBE_NS to look at the holder again (a holder that
 * dies wakes nobody). A wait gives up with -EDEADLK after TR_LOCK_GIVEUP_NS
 * (5 s) on a live holder that never lets go (stopped, or a scribbled word
 * that happens to name a live process): an error the caller reports,
 * instead of a call that never returns. Except the log's lock, whose holder
 * may legitimately wait that long for a slow disk's fdatasync.
 *
 * Unlocking exchanges the word with 0 and wakes one sleeper if the bit was
 * set. A woken waiter takes the lock with the bit set again (it cannot know
 * whether others still sleep), so at worst one wake too many.
 *
 * The recycle ring's two locks (ring.c) are held for a few instructions
 * only; their waiters never sleep (tr__spin_lock), so their unlock is a
 * plain release store, and the ring costs no more locked instructions than
 * a lock-free ring's compare-and-swap.
 */
#include <errno.h>
#include <sched.h>

#include "internal.h"

#define TR_LOCK_SPIN_NS 50000LL
#define TR_LOCK_PROBE_NS 20000000LL
#define TR_LOCK_GIVEUP_NS 5000000000LL

/* The holder named by word @v is gone: take the lock from it (the waiters
 * bit is kept) and repair what it guards. 1 if we hold it now. */
static int take_over(tr_lock_t *w, uint32_t v, uint32_t me, struct taskring_store *st, int which)
{
	if (!atomic_compare_exchange_strong_explicit(w, &v, me | (v & TR_LOCK_WAITERS), memory_order_acquire,
						     memory_order_relaxed))
		return 0;
	tr__lock_repair(st, which, v);
	return 1;
}

/* Is the holder named by @v alive? Words that cannot be a holder's (no
 * TR_LOCK_HELD: scribbled) count as dead. */
static int holder_alive(struct taskring_store *st, uint32_t v)
{
	return (v & TR_LOCK_HELD) && tr__proc_alive(st, v & TR_LOCK_TOKEN_MASK);
}

int tr__lock_waited(tr_lock_t *w, struct taskring_store *st, int which, int *waited)
{
	uint32_t me = TR_LOCK_HELD | tr__proc_token(st);
	uint32_t v = 0;

	*waited = 0;
	if (__builtin_expect(atomic_compare_exchange_strong_explicit(w, &v, me, memory_order_acquire,
								    memory_order_relaxed), 1))
		return 0;
	*waited = 1;
	int64_t start = tr__now_mono(), now = start, probe = 0;
	uint32_t last = v, slept = 0;
	for (int i = 1;; i++) {
		v = atomic_load_explicit(w, memory_order_relaxed);
		if (v == 0) {
			/* A woken sleeper keeps the bit: others may still sleep. */
			uint32_t want = me | slept;
			if (atomic_compare_exchange_strong_explicit(w, &v, want, memory_order_acquire,
								    memory_order_relaxed))
				return 0;
			continue;
		}
		if ((v ^ last) & ~TR_LOCK_WAITERS) {
			last = v; /* a new holder: its own time to give up */
			start = now;
			probe = 0;
		}
		if (now - start < TR_LOCK_SPIN_NS && !slept) {
			tr__cpu_relax();
			if ((i & 63) == 0)
				now = tr__now_mono();
			continue;
		}
		if (now >= probe) {
			if (!holder_alive(st, v)) {
				if (take_over(w, v, me, st, which))
					return 0;
				continue;
			}
			if (now - start >= TR_LOCK_GIVEUP_NS && which != TR_LOCK_LOG)
				return -EDEADLK;
			probe = now + TR_LOCK_PROBE_NS;
		}
		if (!(v & TR_LOCK_WAITERS) &&
		    !atomic_compare_exchange_strong_explicit(w, &v, v | TR_LOCK_WAITERS, memory_order_relaxed,
							     memory_order_relaxed))
			continue;
		tr__futex_wait(w, v | TR_LOCK_WAITERS, probe, TR_FUTEX_ANY);
		slept = TR_LOCK_WAITERS;
		now = tr__now_mono();
	}
}

int tr__lock(tr_lock_t *w, struct taskring_store *st, int which)
{
	int waited;
	return tr__lock_waited(w, st, which, &waited);
}

/* One try: 0, or -EBUSY while a live holder has it (a dead one is taken
 * over, and what it guards repaired). */
int tr__trylock(tr_lock_t *w, struct taskring_store *st, int which)
{
	uint32_t me = TR_LOCK_HELD | tr__proc_token(st);
	uint32_t v = 0;
	if (atomic_compare_exchange_strong_explicit(w, &v, me, memory_order_acquire, memory_order_relaxed))
		return 0;
	if (v && !holder_alive(st, v) && take_over(w, v, me, st, which))
		return 0;
	return -EBUSY;
}

void tr__unlock(tr_lock_t *w)
{
	if (atomic_exchange_explicit(w, 0, memory_order_release) & TR_LOCK_WAITERS)
		tr__futex_wake(w, 1, TR_FUTEX_ANY);
}

/*
 * The ring's locks: held for a handful of stores, so a waiter spins and
 * yields, and looks at the holder about every 100 us once it has waited
 * 50 us (a preempted holder is normal; a dead one is rare).
 */
int tr__spin_lock(tr_lock_t *w, struct taskring_store *st, int which)
{
	uint32_t me = TR_LOCK_HELD | tr__proc_token(st);
	uint32_t v = 0;

	if (__builtin_expect(atomic_compare_exchange_weak_explicit(w, &v, me, memory_order_acquire,
								  memory_order_relaxed), 1))
		return 0;
	int64_t start = 0, probe = 0;
	uint32_t last = 0;
	for (int i = 1;; i++) {
		v = atomic_load_explicit(w, memory_order_relaxed);
		if (v == 0) {
			if (atomic_compare_exchange_weak_explicit(w, &v, me, memory_order_acquire,
								  memory_order_relaxed))
				return 0;
			continue;
		}
		if (i < 256) {
			tr__cpu_relax();
			continue;
		}
		int64_t now = tr__now_mono();
		if (v != last) {
			last = v;
			start = now;
			probe = now + TR_LOCK_SPIN_NS;
		}
		if (now >= probe) {
			if (!holder_alive(st, v)) {
				if (take_over(w, v, me, st, which))
					return 0;
				continue;
			}
			if (now - start >= TR_LOCK_GIVEUP_NS)
				return -EDEADLK;
			probe = now + TR_LOCK_SPIN_NS * 2;
		}
		sched_yield();
	}
}

void tr__spin_unlock(tr_lock_t *w)
{
	atomic_store_explicit(w, 0, memory_order_release);
}
