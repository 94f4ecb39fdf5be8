/*
 * internal.h - the shared-region layout and the internal interfaces.
 *
 * Internal non-static functions carry the prefix tr__; shared-memory struct
 * fields carry a per-struct prefix (h_ header, q_ queue, s_ slot, b_ band) so
 * that a grep finds every access to shared state.
 *
 * THE SHARED REGION (format version TR_FORMAT_VERSION)
 *
 * One mapping per store. Every reference inside it is an offset from the
 * start of the mapping or an index, never a pointer. All integers are in the
 * host's byte order (the region never leaves the host). Layout, in order,
 * each part starting on a 4096-byte boundary:
 *
 *   offset 0       struct tr_hdr (one page): magic "TASKRING" (8 bytes),
 *                  format version (u32), build signature (u32), init word,
 *                  region size, sizing, the offsets below, the store lock,
 *                  and the hot shared words, each on its own cache line.
 *   h_off_procs    TR_PROCS x struct tr_proc (64 bytes each): the process
 *                  table, one entry per attached store handle (proc.c).
 *   h_off_queues   h_queues x struct tr_queue (640 bytes each).
 *   h_off_tasks    h_tasks x 64-byte task names (NUL-terminated).
 *   h_off_slots    h_slots x struct tr_slot (320 bytes, 5 cache lines).
 *   h_off_ring     the recycle ring: h_ring_mask + 1 cells of u64.
 *   h_off_heaps    h_queues x h_slots x u32: each queue's timer heap.
 *   h_off_unique   h_unique_mask + 1 u64 entries: the unique-key index, an
 *                  open-addressing table of (generation << 32 | slot + 1),
 *                  0 = empty (see unique.c).
 *   h_off_arena    h_arena_bytes of blocks (payloads, results, errors,
 *                  metadata, retry-delay lists).
 *   h_off_logbuf   h_logbuf_bytes (0 without a log): the log's staging
 *                  ring, where records wait for the flusher (see wal.c).
 *
 * A region is valid only when the magic, format version and build signature
 * match this build, h_init is TR_INIT_READY, every offset and size lies
 * inside the mapping and agrees with the layout computed from the sizing
 * (tr__layout), and the file's size equals h_region_bytes.
 *
 * Invariants
 *   - Every slot is in exactly one place: the recycle ring (free or
 *     terminal), a queue's ready list (pending, due), a queue's timer heap
 *     (pending, not yet due), waiting for its dependencies (pending,
 *     s_loc TR_LOC_WAITING or TR_LOC_READYING, in no list), or held by one
 *     process (being written by a producer, or running in a worker).
 *   - s_gen is even while a slot holds a stable job and odd while it is being
 *     rewritten; a job is (slot, generation, uuid). Readers copy what they
 *     need and re-check s_gen afterwards (seqlock), so a recycled slot is
 *     never taken for the old job.
 *   - s_state is the only word that decides a job's status, and also the
 *     futex word its result waiters sleep on. It packs the status (bits
 *     0-2), TR_ST_WAITERS (bit 3: someone sleeps on it), TR_ST_CANCEL (bit
 *     4: cancel requested), TR_ST_DEPS (bit 5: it has dependents to
 *     resolve when it ends), the attempt number (bits 8-19) and a tag of the
 *     slot's generation (bits 20-31). Every transition is a compare-and-swap
 *     that names the attempt and the tag, so a late completion of an earlier
 *     attempt, or a call through a stale handle, can never be accepted.
 *   - Ready lists, timer heaps and the per-queue band table are changed only
 *     under the queue's lock (lock.c); so is a slot's s_state when it moves
 *     between pending and running or is cancelled while pending.
 */
#ifndef TASKRING_INTERNAL_H
#define TASKRING_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "taskring.h"

#define TR_INTERNAL __attribute__((visibility("hidden")))

#define TR_MAGIC 0x474e49524b534154ull /* "TASKRING" read as a little-endian u64 */
#define TR_FORMAT_VERSION 8u

/* A lock in the region (lock.c): 0 free, else TR_LOCK_HELD | the holder's
 * process token, | TR_LOCK_WAITERS once someone sleeps on it. */
typedef _Atomic uint32_t tr_lock_t;
#define TR_LOCK_WAITERS 0x80000000u
#define TR_LOCK_HELD 0x40000000u
#define TR_LOCK_TOKEN_MASK 0x3fffffffu
#define TR_INIT_READY 0x52454459u /* "YDER" */
#define TR_CACHELINE 64
#define TR_PAGE 4096
#define TR_NIL 0xffffffffu
#define TR_BANDS 16
#define TR_ARENA_CLASSES 28 /* 64 B << 27 = 8 GiB: more than any block */
#define TR_ARENA_MIN_SHIFT 6
#define TR_INLINE_PAYLOAD 32
#define TR_INLINE_RESULT 24
#define TR_NO_PROGRESS 0xffffffffu
#define TR_DEFAULT_SPIN_NS 20000
#define TR_DEFAULT_ARENA (64ull << 20)

/* s_state bits. */
#define TR_ST_MASK 0x7u
#define TR_ST_FREE 7u /* not a job (never used, or recycled) */
#define TR_ST_WAITERS 0x8u
#define TR_ST_CANCEL 0x10u
#define TR_ST_DEPS 0x20u /* jobs were registered as its dependents: its
			   terminal transition resolves them (deps.c) */
#define TR_ST_FLAGS (TR_ST_WAITERS | TR_ST_CANCEL | TR_ST_DEPS)
#define TR_ST_ATTEMPT_SHIFT 8
#define TR_ST_TAG_SHIFT 20
#define TR_ATTEMPT_MAX 0xfffu
#define TR_STATUS(s) ((s) & TR_ST_MASK)
#define TR_ATTEMPT(s) (((s) >> TR_ST_ATTEMPT_SHIFT) & TR_ATTEMPT_MAX)
#define TR_TAG(s) ((s) >> TR_ST_TAG_SHIFT)
/* The tag is the low 12 bits of the slot's generation / 2, so a compare-and-
 * swap on the state word can never hit the next job of the same slot. */
#define TR_GEN_TAG(gen) (((gen) >> 1) & 0xfffu)
#define TR_MKSTATE(status, attempt, tag)                                                    \
	((uint32_t)(status) | ((uint32_t)(attempt) << TR_ST_ATTEMPT_SHIFT) | ((uint32_t)(tag) << TR_ST_TAG_SHIFT))
#define TR_TERMINAL(st) ((st) >= TASKRING_COMPLETE && (st) <= TASKRING_CANCELLED)

/* s_loc: where a pending slot is linked. */
#define TR_LOC_NONE 0
#define TR_LOC_READY 1
#define TR_LOC_TIMER 2
#define TR_LOC_WAITING 3   /* pending on dependencies: in no list; changed
			      only under the deps lock */
#define TR_LOC_READYING 4  /* its last dependency completed: to be linked
			      by the resolver (under the queue lock) */

/* s_flags */
#define TR_SF_PAYLOAD_INLINE 0x1
#define TR_SF_RESULT_INLINE 0x2
#define TR_SF_UNIQUE 0x4 /* s_unique_off/s_unique_hash hold a key: line 4 is
			   touched only for jobs that have one */
#define TR_SF_DEPS 0x8   /* s_deps_off/s_ndeps/s_deps_left hold its
			   dependencies (line 4 again) */

/* Memory-ordering helpers. Each use says what it orders against. */
#define tr_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define tr_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define tr_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define tr_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
/* ThreadSanitizer does not model atomic_thread_fence(); under it, the two
 * seqlock fences become read-modify-writes that order the same accesses. */
#if defined(__SANITIZE_THREAD__)
#define TR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TR_TSAN 1
#endif
#endif

/* Plain (non-_Atomic) fields that another process may rewrite concurrently
 * are read and written through these, so the compiler neither tears nor
 * caches them and ThreadSanitizer sees atomic accesses. */
#define TR_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define TR_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

struct tr_hdr {
	/* Identity: written once by the creator before the region is published. */
	uint64_t h_magic;
	uint32_t h_format;
	uint32_t h_build;
	uint32_t h_init;
	uint32_t h_slots;
	uint32_t h_max_payload;
	uint32_t h_queues;
	uint32_t h_tasks;
	uint32_t h_ring_mask;
	uint64_t h_arena_bytes;
	uint64_t h_region_bytes;
	uint64_t h_off_queues, h_off_tasks, h_off_slots, h_off_ring, h_off_heaps, h_off_arena;
	int64_t h_created_at;
	uint64_t h_off_unique;
	uint32_t h_unique_mask;

	/* Structural lock: queue and task tables (rare). The locks are words
	 * naming their holder's process, taken over from a dead one (lock.c). */
	_Alignas(TR_CACHELINE) tr_lock_t h_lock;
	/* The unique-key index's lock; the index is rebuilt from the slots
	 * when the lock is taken from a dead holder. */
	_Alignas(TR_CACHELINE) tr_lock_t h_unique_lock;
	/* The dependency lock: registrations and resolutions of dependents.
	 * Repaired from the slots when taken from a dead holder (deps.c). Taken after
	 * a queue lock where both are held, before the unique-key lock. */
	_Alignas(TR_CACHELINE) tr_lock_t h_deps_lock;
	_Alignas(TR_CACHELINE) _Atomic uint32_t h_queues_used;
	_Atomic uint32_t h_tasks_used;

	/* The futex idle workers sleep on, with FUTEX_WAIT_BITSET: bit (q % 32)
	 * for each queue they serve. Bumped before every wake. */
	_Alignas(TR_CACHELINE) _Atomic uint32_t h_wake;

	/* Producers blocked on a full store register in h_free_waiters and
	 * sleep on h_done, which moves (and wakes them) when a job ends while
	 * someone is registered. */
	_Alignas(TR_CACHELINE) _Atomic uint32_t h_done;
	_Atomic uint32_t h_free_waiters;

	/* Recycle ring (ring.c): each end's lock, position and journal on a
	 * line of its own (producers pop, completers push). */
	_Alignas(TR_CACHELINE) tr_lock_t h_ring_pop_lock;
	_Atomic uint32_t h_ring_head;
	_Atomic uint64_t h_ring_pop_op;
	_Alignas(TR_CACHELINE) tr_lock_t h_ring_push_lock;
	_Atomic uint32_t h_ring_tail;
	_Atomic uint64_t h_ring_push_op;

	/* Arena: bump pointer and per-class free stacks ((tag << 32) | off >> 6). */
	_Alignas(TR_CACHELINE) _Atomic uint64_t h_arena_bump;
	_Atomic uint64_t h_arena_free[TR_ARENA_CLASSES];
	/* Carving from the bump (arena.c): its lock, and the journal of the
	 * carve in progress (the block's offset | its class; 0 when none). */
	tr_lock_t h_arena_lock;
	_Atomic uint64_t h_arena_carve;

	/* The log (wal.c); all zero for a store without one. Identity and
	 * settings, written once by the creator: */
	_Alignas(TR_CACHELINE) uint64_t h_off_logbuf;
	uint64_t h_logbuf_bytes;     /* a power of two, or 0: no log */
	uint32_t h_durability;       /* TASKRING_DURABLE / TASKRING_ASYNC */
	uint32_t h_log_manual_compact; /* TASKRING_STORE_MANUAL_COMPACT */
	int64_t h_flush_interval_ns;
	uint64_t h_segment_bytes;
	char h_log_dir[256];         /* absolute path, NUL-terminated */
	uint64_t h_log_id;           /* this region's claim on the directory
					(its STORE file; see wal.c) */
	/* Staging: writers reserve ring positions here (bytes since the
	 * store's log began in this region), under h_log_stage_lock. */
	_Alignas(TR_CACHELINE) _Atomic uint64_t h_log_reserve;
	tr_lock_t h_log_stage_lock;
	/* What the flusher has done: the ring up to h_log_flushed is written
	 * to the file (and zeroed for reuse), and up to h_log_durable synced.
	 * h_log_seq moves (and wakes the h_log_waiters) at each flush:
	 * those whose records that flush covers (the futex bit of the new
	 * h_log_seq), and everyone when the flusher gives the lock back. */
	_Alignas(TR_CACHELINE) _Atomic uint64_t h_log_flushed;
	_Atomic uint64_t h_log_durable;
	_Atomic uint32_t h_log_seq;
	_Atomic uint32_t h_log_waiters;
	_Atomic uint32_t h_log_failed; /* a write or sync failed: no more
					  durable work until recovery */
	_Atomic uint32_t h_log_flushing; /* a flusher holds h_log_lock */
	_Atomic uint32_t h_log_low_space; /* the spares needed could not be
					     made: new jobs are refused */
	_Atomic uint64_t h_log_flush_to; /* the staging position the flush in
					    progress reads up to, at most */
	/* The flusher's lock and what it alone changes: the current segment
	 * (every process opens it by name) and the file stream's end. */
	_Alignas(TR_CACHELINE) tr_lock_t h_log_lock;
	uint64_t h_log_end;          /* the next record's sequence number */
	uint64_t h_log_seg_base;     /* the current segment, or UINT64_MAX */
	uint64_t h_log_seg_salt;
	uint64_t h_log_segno;        /* of the current (or last) segment */
	uint32_t h_log_started;      /* a segment exists */
	uint32_t h_log_spares;       /* spare segment files ready (wal.c) */
	/* Unfinished jobs, owed room for their ends (wal.c): moved by every
	 * enqueue and every end, so on a line of its own, away from the
	 * flusher's. */
	_Alignas(TR_CACHELINE) _Atomic int64_t h_log_owed_jobs;
	int64_t h_log_room_tried;    /* when a new job last found it short */
	uint64_t h_log_ckpt_pos;     /* the newest checkpoint known here covers
					the log up to this position ... */
	uint64_t h_log_ckpt_bytes;   /* ... and has this size (ckpt.c) */
	_Atomic uint64_t h_log_compactions; /* made by this store's processes */

	/* The process table and the reaper (proc.c). */
	_Alignas(TR_CACHELINE) uint64_t h_off_procs;
	_Atomic int64_t h_reap_next;      /* CLOCK_MONOTONIC ns: the next periodic
					     check is due (one process runs it) */
	_Atomic uint64_t h_reap_marks;    /* entries found dead ... */
	_Atomic uint64_t h_reap_done;     /* ... and covered by a slot scan */
	_Atomic uint64_t h_reaped_procs;  /* counters, for the tools */
	_Atomic uint64_t h_reaped_jobs;
	_Atomic uint64_t h_reaped_blocks; /* arena blocks freed by censuses */
	_Atomic uint64_t h_reap_scans;
};

/*
 * One entry of the process table: a store handle attached to the region.
 * The handle holds an OFD write lock on byte TR_PROC_LOCK_BASE + index of
 * the store's file for as long as it is attached; the kernel drops the lock
 * when the last descriptor of that open file description goes, so a killed
 * process (even one not yet reaped by its parent) frees it at once, and a
 * recycled pid does not matter. p_word is (generation << 1) | live; a job's
 * owner is the token TR_PROC_TOKEN(index, generation), so a token names one
 * registration and never the next holder of the same entry.
 */
#define TR_PROCS 1024u
#define TR_PROC_BITS 10
#define TR_PROC_GEN_MASK 0xfffffu
#define TR_OWNER_CLOSER 0x80000000u /* in s_owner: that token is ending the
				       running attempt, or ended the job and
				       has not recycled its slot (proc.c) */
#define TR_OWNER_HELD 0x40000000u   /* in s_holder: that token popped the
				       slot from the ring (proc.c) */
#define TR_OWNER_TOKEN(o) ((o) & ~(TR_OWNER_CLOSER | TR_OWNER_HELD))
#define TR_PROC_TOKEN(idx, gen) ((((gen) & TR_PROC_GEN_MASK) << TR_PROC_BITS) | (idx))
#define TR_PROC_IDX(tok) ((tok) & (TR_PROCS - 1))
#define TR_PROC_GEN(tok) ((tok) >> TR_PROC_BITS)
#define TR_PROC_LOCK_BASE (1ll << 40) /* past any region's end */
struct tr_proc {
	_Atomic uint32_t p_word;
	int32_t p_pid;
	_Atomic int64_t p_heartbeat;  /* CLOCK_REALTIME ns: attach, and each tick
					 of its reaper thread */
	int64_t p_attached_at;        /* CLOCK_REALTIME ns */
	_Atomic int64_t p_lease_min;  /* CLOCK_MONOTONIC ns: no lease of a job
					 it runs ends before this (a lower
					 bound; INT64_MAX: none) */
	_Atomic uint32_t p_supervised; /* TR_OWNER_HELD | the token of the
					  prefork supervisor that watches
					  its p_cancel and its death
					  (worker.c), or 0 */
	_Atomic uint32_t p_cancel;    /* moved (and woken) when a job it runs
					 is asked to cancel */
	char p_comm[16];              /* its name, for the tools */
	uint8_t p_reserved[8];
};

struct tr_band {
	int32_t b_prio;
	uint32_t b_head, b_tail, b_count;
};

struct tr_queue {
	/* Line 0: read without the lock by idle and spinning workers. */
	_Atomic uint32_t q_ready;    /* jobs in the ready bands */
	_Atomic uint32_t q_paused;
	_Atomic uint32_t q_sleepers; /* workers asleep (or about to be) on it */
	_Atomic uint32_t q_timers;   /* jobs in the timer heap */
	_Atomic int64_t q_next_due;  /* CLOCK_REALTIME ns of the earliest timer */
	uint8_t q_pad0[TR_CACHELINE - 24];
	/* Line 1: the name; written once under h_lock before h_queues_used. */
	char q_name[64];
	/* Lines 2-3: the lock and what it guards besides the bands. */
	tr_lock_t q_lock;
	uint32_t q_nbands;
	uint64_t q_link_seq;        /* FIFO order of links, for rebuilds */
	uint8_t q_pad2[TR_CACHELINE * 2 - 16];
	/* Lines 4-7: priority bands, highest first. */
	struct tr_band q_bands[TR_BANDS];
	/* Line 8: cumulative counters. */
	_Atomic uint64_t q_enqueued, q_started, q_completed, q_failed, q_dead, q_cancelled, q_retried;
	uint8_t q_pad3[TR_CACHELINE - 56];
	/* Line 9: reserved. */
	uint8_t q_reserved[TR_CACHELINE];
};

struct tr_slot {
	/* Line 0: the state word and what claim and transitions touch. */
	_Atomic uint32_t s_state;
	_Atomic uint32_t s_gen;
	_Atomic uint32_t s_progress;
	uint32_t s_retry_count;
	uint16_t s_queue;
	uint16_t s_task;
	int32_t s_priority;
	uint32_t s_max_retries;
	uint32_t s_prev, s_next;
	uint32_t s_heap_pos;
	uint8_t s_loc;
	uint8_t s_flags;
	uint16_t s_pad0;
	uint32_t s_payload_len;
	uint32_t s_result_len;
	int32_t s_owner_pid;
	int64_t s_scheduled_at;
	/* Line 1: identity and times. */
	uint8_t s_uuid[16];
	int64_t s_created_at, s_started_at, s_completed_at;
	int64_t s_timeout_ns, s_result_ttl_ns;
	uint64_t s_link_seq;
	/* Line 2: arena references (offsets of block headers; 0 = none). */
	uint64_t s_payload_off, s_result_off, s_errors_off, s_meta_off, s_delays_off;
	int64_t s_backoff_base, s_backoff_cap;
	/* The producer that took the slot from the ring (token |
	 * TR_OWNER_HELD), and the slot's generation then: the mark counts only
	 * while the generation says the producer has not finished writing it
	 * (proc.c). On this line, which the producer writes anyway. */
	_Atomic uint32_t s_holder;
	_Atomic uint32_t s_holder_gen;
	/* Line 3: small payloads and results live here, not in the arena;
	 * and the expiry, which only a claim reads. */
	uint8_t s_inline_payload[TR_INLINE_PAYLOAD];
	uint8_t s_inline_result[TR_INLINE_RESULT];
	int64_t s_expires_at; /* CLOCK_REALTIME; 0 = never */
	/* Line 4: the unique key and dependencies (see deps.c). Touched only
	 * for jobs that have them (TR_SF_UNIQUE, TR_SF_DEPS, TR_ST_DEPS). */
	uint64_t s_unique_off; /* arena block with the key, NUL-terminated */
	uint32_t s_unique_hash;
	uint32_t s_ndeps;      /* entries in the s_deps_off block */
	uint64_t s_deps_off;   /* block of struct tr_dep[s_ndeps] (TR_SF_DEPS) */
	uint64_t s_dents_head; /* first block of its dependents list, or 0 */
	uint64_t s_dents_tail; /* last block (where the next one is added) */
	uint32_t s_deps_left;  /* dependencies not yet complete */
	uint32_t s_pad3;
	/* While RUNNING: who holds the attempt (a process token; | closer
	 * while it is being ended) and until when; after the end, the closer
	 * until the slot is recycled (proc.c). Set by the claim before the
	 * state word says RUNNING. Only workers write this line for most
	 * jobs, so it does not move between producer and worker. */
	_Atomic int64_t s_lease;   /* CLOCK_MONOTONIC ns */
	_Atomic uint32_t s_owner;  /* a process token and TR_OWNER_CLOSER */
	uint32_t s_lease_ms;       /* the lease's length, for messages */
};

/* One dependency of a job: an entry of its s_deps_off block. */
struct tr_dep {
	uint8_t d_uuid[16];
	uint32_t d_slot, d_gen;
	uint32_t d_done; /* 1 once this dependency completed (counted out of
			    s_deps_left); written under the deps lock */
	uint32_t d_pad;
};

/* One dependent of a job: an entry of a block of its dependents list. */
struct tr_dent {
	uint8_t t_uuid[16];
	uint32_t t_slot, t_gen;
	uint32_t t_index; /* which entry of the dependent's tr_dep array */
	uint32_t t_pad;
};

/* A block of a dependents list: this header, then t_cap entries. Linked by
 * the block header's k_next. */
struct tr_dents_hdr {
	_Atomic uint32_t t_count; /* entries in use (release after each) */
	uint32_t t_cap;
};

/* An arena block: a 16-byte header, then the data. */
struct tr_block {
	uint32_t k_magic; /* TR_BLOCK_MAGIC ^ class */
	uint32_t k_len;   /* bytes of data in use */
	uint64_t k_next;  /* free-stack link (when free) or list link (errors) */
};
#define TR_BLOCK_MAGIC 0x6b6c4200u
/* In k_next of a block taken and not yet attached: this bit | the
 * allocator's process token (never a list link: those are offsets). */
#define TR_BLOCK_STAMP (1ull << 63)
#define TR_BLOCK_STAMP_TOKEN(t) ((t) & TR_LOCK_TOKEN_MASK)

/* An error-history entry, stored as an arena block's data. */
struct tr_error_entry {
	uint64_t e_failed_at;
	uint32_t e_attempt;
	uint32_t e_len;
	uint8_t e_uuid[16];
	char e_text[];
};

/* The process-local handle. Sizing is copied out of the header once, after
 * validation, so a process that scribbles on the header cannot move our
 * bounds. */
struct taskring_store {
	uint8_t *base;
	size_t size;
	int fd;
	struct tr_hdr *hdr;
	struct tr_queue *queues;
	char (*tasks)[64];
	struct tr_slot *slots;
	_Atomic uint64_t *ring;
	uint32_t *heaps;
	uint64_t *unique;
	uint32_t unique_mask;
	uint8_t *arena;
	uint32_t nslots, max_payload, nqueues, ntasks, ring_mask;
	uint64_t arena_bytes;
	_Atomic int64_t spin_ns;
	_Atomic int nworkers;
	_Atomic int deps_relink; /* a deps repair found jobs to link (deps.c) */
	struct tr_wal *wal;      /* this process's side of the log, or NULL */
	uint64_t id; /* unique per handle in this process, never 0 */
	/* The process table (proc.c). */
	struct tr_proc *procs;
	int lock_src;            /* the store's file (or a memfd, for an
				    anonymous store): probed for locks */
	int lockfd;              /* our own open of it, holding our entry's lock */
	int own_src;             /* lock_src is ours to close (memfd) */
	_Atomic uint32_t token;  /* our registration, 0 if none */
	_Atomic pid_t reg_pid;   /* the process that registered it */
	pthread_mutex_t reg_lock;
	struct taskring_store *reg_next, *reg_prev; /* all handles, for fork */
	/* What tr__slot() gives for an index out of range: a slot of this
	 * process's own, which nobody reads for anything that matters. */
	struct tr_slot sink;
};

/*
 * Slot @i, where @i was read from the region (a list link, a heap entry):
 * an index out of range, which only a process writing over the region
 * makes, gives this handle's sink instead of an access outside the slot
 * table. What the damaged list or heap held is lost to it (a repair
 * rebuilds them from the slots), but nothing outside the mapping is read
 * or written.
 */
static inline struct tr_slot *tr__slot(struct taskring_store *st, uint32_t i)
{
	return __builtin_expect(i < st->nslots, 1) ? &st->slots[i] : &st->sink;
}

/* layout.c / region.c */
struct tr_layout {
	uint64_t off_procs, off_queues, off_tasks, off_slots, off_ring, off_heaps, off_unique, off_arena, off_logbuf, total;
	uint32_t ring_mask, unique_mask;
};
TR_INTERNAL int tr__layout(uint32_t slots, uint32_t queues, uint32_t tasks, uint64_t arena, uint64_t logbuf,
			   struct tr_layout *out);
TR_INTERNAL uint32_t tr__build_signature(void);
/* lock.c. @which of tr__lock(): a queue index (its lock), or one of these;
 * it says what to repair when the lock is taken from a dead holder
 * (tr__lock_repair(), region.c). */
#define TR_LOCK_STORE (-1)
#define TR_LOCK_UNIQUE (-2)
#define TR_LOCK_DEPS (-3)
#define TR_LOCK_LOG (-4)
#define TR_LOCK_RING_PUSH (-5)
#define TR_LOCK_RING_POP (-6)
#define TR_LOCK_LOG_STAGE (-7)
#define TR_LOCK_ARENA (-8)
TR_INTERNAL int tr__lock(tr_lock_t *w, struct taskring_store *st, int which);
TR_INTERNAL int tr__lock_waited(tr_lock_t *w, struct taskring_store *st, int which, int *waited);
TR_INTERNAL int tr__trylock(tr_lock_t *w, struct taskring_store *st, int which);
TR_INTERNAL void tr__unlock(tr_lock_t *w);
TR_INTERNAL int tr__spin_lock(tr_lock_t *w, struct taskring_store *st, int which);
TR_INTERNAL void tr__spin_unlock(tr_lock_t *w);
TR_INTERNAL void tr__lock_repair(struct taskring_store *st, int which, uint32_t dead);
#define TR_FUTEX_ANY 0xffffffffu

/*
 * Crash points (util.c): named places inside multi-step updates of shared
 * state. A test arms one with tr__crash_arm() and the process _exit()s with
 * TR_CRASH_STATUS the n-th time it passes there, as if killed at that
 * instruction; the store must then be repairable by the reaper and the
 * next holder of its locks. Unarmed, a point costs one load and a predicted branch.
 */
#define TR_CRASH_POINTS(X)                                                      \
	X(CLAIM, "claim")                 /* pop: RUNNING, still linked, queue lock held */ \
	X(START, "start")                 /* run_job: started and logged, before the handler */ \
	X(END_CLOSING, "end.closing")     /* the attempt's closing taken */ \
	X(END_LOGGED, "end.logged")       /* its end logged, state not moved */ \
	X(END_TERMINAL, "end.terminal")   /* terminal, dependents not resolved, slot not recycled */ \
	X(RETRY_LINKED, "retry.linked")   /* linked for its retry, still RUNNING, queue lock held */ \
	X(RETRY_PENDING, "retry.pending") /* PENDING again, queue lock held */ \
	X(CANCEL_TERMINAL, "cancel.terminal") /* a pending job cancelled, locks held, not recycled */ \
	X(DEPS_RESOLVING, "deps.resolving") /* deps lock held, dependents half resolved */ \
	X(REAP_CLOSING, "reap.closing")   /* a reaper took an attempt's closing */ \
	X(ENQ_POPPED, "enqueue.popped")   /* slots taken from the ring, not written */ \
	X(ENQ_FILLED, "enqueue.filled")   /* jobs written (PENDING), not linked */ \
	X(RING_PUSH, "ring.push")         /* push lock held, journalled, tail not moved */ \
	X(RING_POP, "ring.pop")           /* pop lock held, head moved, slot not marked */ \
	X(LOG_STAGE, "log.stage")         /* staging lock held, a log slot begun, not taken */ \
	X(ARENA_CARVE, "arena.carve")     /* arena lock held, a block's header written, bump not moved */ \
	X(ARENA_TAKEN, "arena.taken")     /* a block taken and stamped, not attached */
enum tr_crash_point {
#define TR_CP_ENUM(id, name) TR_CP_##id,
	TR_CRASH_POINTS(TR_CP_ENUM)
#undef TR_CP_ENUM
	TR_CP_COUNT
};
#define TR_CRASH_STATUS 86
TR_INTERNAL extern int tr__crash_armed;
TR_INTERNAL void tr__crash_hit(enum tr_crash_point point);
/* Arm crash point @name to fire the @nth time it is passed (>= 1); NULL
 * disarms. Returns 0, or -EINVAL for an unknown name. Tests only. */
TR_INTERNAL int tr__crash_arm(const char *name, uint32_t nth);
TR_INTERNAL const char *tr__crash_name(int point);
#define TR_CRASH(point)                                                         \
	do {                                                                    \
		if (__builtin_expect(tr__crash_armed, 0))                       \
			tr__crash_hit(TR_CP_##point);                           \
	} while (0)

/* util.c */
TR_INTERNAL pid_t tr__pid(void);
TR_INTERNAL int64_t tr__now_mono(void);
TR_INTERNAL int64_t tr__now_real(void);
TR_INTERNAL int64_t tr__now_coarse(void);
TR_INTERNAL int tr__no_iouring_env(void);
TR_INTERNAL int64_t tr__mono_to_real(int64_t mono);
TR_INTERNAL int tr__name_check(const char *name);
TR_INTERNAL uint64_t tr__rand64(void);
TR_INTERNAL void tr__uuid7(uint8_t out[16], uint32_t slot, int64_t now_real);
TR_INTERNAL void tr__uuid_format(const uint8_t u[16], char *out);
TR_INTERNAL int tr__uuid_parse(const char *text, uint8_t out[16]);
TR_INTERNAL uint32_t tr__uuid_slot(const uint8_t u[16]);
TR_INTERNAL void tr__cpu_relax(void);
TR_INTERNAL int tr__buf_reserve(uint8_t **bufp, size_t *capp, size_t need, size_t first);
/*
 * memcpy() for bytes in the shared region that another process may rewrite
 * while they are copied (a seqlock reader copying a job's data, a writer
 * filling a recycled slot): the seqlock decides afterwards whether the copy
 * counts. Under ThreadSanitizer the copy is made of relaxed atomic byte
 * accesses, so such a race is not reported as the undefined one it is not.
 * Inline, so that small fixed copies (a uuid) stay a few moves.
 */
static inline void tr__copy_shared(void *dst, const void *src, size_t n)
{
#ifdef TR_TSAN
	unsigned char *d = dst;
	const unsigned char *s = src;
	for (size_t i = 0; i < n; i++)
		__atomic_store_n(&d[i], __atomic_load_n(&s[i], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
#else
	__builtin_memcpy(dst, src, n);
#endif
}
TR_INTERNAL int tr__spin(int64_t spin_ns, int64_t deadline, unsigned mask, int (*done)(void *), void *arg);

/* futex.c */
TR_INTERNAL int tr__futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline_mono, uint32_t bitset);
TR_INTERNAL int tr__futex_wake(_Atomic uint32_t *word, int n, uint32_t bitset);
TR_INTERNAL int tr__futex_wait_op(_Atomic uint32_t *word, uint32_t val, int64_t deadline_mono, uint32_t bitset,
				  int private);
TR_INTERNAL int tr__futex_wake_op(_Atomic uint32_t *word, int n, uint32_t bitset, int private);
TR_INTERNAL int tr__futex_waitv(_Atomic uint32_t *const *words, const uint32_t *vals, unsigned n,
				int64_t deadline_mono);
/* Per-process counts of futex system calls, for tests that prove nothing polls. */
TR_INTERNAL uint64_t tr__futex_wait_calls(void);
TR_INTERNAL uint64_t tr__futex_wake_calls(void);

/* ring.c: the recycle ring of slot indices (free or terminal slots). */
TR_INTERNAL void tr__ring_init(struct taskring_store *st);
TR_INTERNAL int tr__ring_push(struct taskring_store *st, uint32_t idx);
TR_INTERNAL int tr__ring_pop(struct taskring_store *st, uint32_t *idx);
TR_INTERNAL size_t tr__ring_pop_n(struct taskring_store *st, uint32_t *idx, size_t n);
TR_INTERNAL void tr__ring_give_back(struct taskring_store *st, uint32_t idx);
TR_INTERNAL void tr__ring_rebuild(struct taskring_store *st);
TR_INTERNAL void tr__ring_repair(struct taskring_store *st, int which, uint32_t dead);
TR_INTERNAL void tr__ring_settle(struct taskring_store *st);

/* arena.c */
TR_INTERNAL uint64_t tr__arena_alloc(struct taskring_store *st, size_t len);
TR_INTERNAL void tr__arena_free(struct taskring_store *st, uint64_t off);
TR_INTERNAL void tr__arena_attach(struct taskring_store *st, uint64_t off);
TR_INTERNAL void tr__arena_repair(struct taskring_store *st, uint32_t dead);
TR_INTERNAL uint64_t tr__arena_census(struct taskring_store *st,
				      int (*dead)(struct taskring_store *, uint32_t, void *), void *arg);
TR_INTERNAL void *tr__arena_data(struct taskring_store *st, uint64_t off, uint32_t *lenp);
TR_INTERNAL uint64_t tr__arena_put(struct taskring_store *st, const void *data, size_t len);

/* queue.c */
TR_INTERNAL int tr__queue_find(struct taskring_store *st, const char *name, int create);
TR_INTERNAL int tr__task_find(struct taskring_store *st, const char *name, int create);
TR_INTERNAL void tr__queue_link_locked(struct taskring_store *st, struct tr_queue *q, uint32_t idx, int64_t now_real);
TR_INTERNAL void tr__queue_unlink_locked(struct taskring_store *st, struct tr_queue *q, uint32_t idx);
TR_INTERNAL uint32_t tr__queue_pop_locked(struct taskring_store *st, struct tr_queue *q, int64_t now_real,
					  uint32_t owner, int64_t start_mono, int64_t lease_ns);
TR_INTERNAL void tr__queue_wake(struct taskring_store *st, uint32_t qi, int n);
TR_INTERNAL uint32_t tr__queue_sleepers_locked(struct tr_queue *q);
TR_INTERNAL void tr__queue_repair(struct taskring_store *st, uint32_t qi);
TR_INTERNAL void tr__queue_set_priority_locked(struct taskring_store *st, struct tr_queue *q, uint32_t idx,
					       int32_t priority);

/* unique.c */
TR_INTERNAL uint32_t tr__unique_hash(const char *key, size_t len);
TR_INTERNAL int tr__unique_find_locked(struct taskring_store *st, const char *key, size_t len, uint32_t hash,
				       struct taskring_job *out);
TR_INTERNAL void tr__unique_insert_locked(struct taskring_store *st, uint32_t hash, uint32_t slot, uint32_t gen);
TR_INTERNAL void tr__unique_rebuild(struct taskring_store *st);

/* deps.c */
/* One item of an enqueue, resolved and checked (job.c); the dependency
 * fields are deps.c's. */
struct tr_deps_group;
struct enq_req {
	uint32_t task, queue;
	const void *payload;
	size_t len;
	int32_t priority;
	uint32_t max_retries;
	int64_t delay_ns, eta_ns, timeout_ns, ttl_ns, base_ns, cap_ns, expires_ns;
	uint64_t payload_off, meta_off, delays_off;
	const int64_t *delays;
	uint32_t ndelays;
	const char *meta;
	size_t metalen;
	const char *ukey;           /* unique key, or NULL */
	size_t ukeylen;
	uint32_t uhash;
	uint64_t ukey_off;
	const struct taskring_job *xdeps; /* dependencies on existing jobs */
	uint32_t nxdeps;
	const uint32_t *ideps;      /* and on earlier items of the batch */
	uint32_t nideps;
	uint32_t ndeps;             /* nxdeps + nideps */
	uint32_t deps_left;         /* not complete when enqueued */
	int dents;                  /* a later item of the batch depends on it */
	uint64_t deps_off;          /* block of struct tr_dep[ndeps] */
	struct tr_deps_group *plan; /* item 0 only: list blocks to add */
	size_t nplan;
};
TR_INTERNAL int tr__deps_prepare(struct taskring_store *st, struct enq_req *r, size_t n, const uint32_t *idx);
TR_INTERNAL void tr__deps_commit(struct taskring_store *st, struct enq_req *r, size_t n, const uint32_t *idx,
				 const struct taskring_job *made);
TR_INTERNAL void tr__deps_abort(struct taskring_store *st, struct enq_req *r, size_t n);
TR_INTERNAL void tr__deps_resolve(struct taskring_store *st, uint32_t idx);
TR_INTERNAL int tr__deps_lock(struct taskring_store *st);
TR_INTERNAL void tr__deps_unlock(struct taskring_store *st);
TR_INTERNAL void tr__deps_repair(struct taskring_store *st);
/* Link the READYING job in slot @idx (generation @gen) into its queue, if it
 * still is: whoever found it ready, or the reaper when that one died. */
TR_INTERNAL void tr__deps_link_readying(struct taskring_store *st, uint32_t idx, uint32_t gen);
TR_INTERNAL void tr__dents_free(struct taskring_store *st, struct tr_slot *s);
TR_INTERNAL uint32_t tr__dents_count(struct taskring_store *st, struct tr_slot *p);
TR_INTERNAL void tr__deps_restore(struct taskring_store *st, const uint32_t *seq, uint32_t nseq);
/* The job's dependency entries (*@np of them), or NULL if it has none. */
TR_INTERNAL struct tr_dep *tr__deps_of(struct taskring_store *st, struct tr_slot *s, uint32_t *np);

/* proc.c */
TR_INTERNAL void tr__proc_fork_init(void);
TR_INTERNAL int tr__proc_attach(struct taskring_store *st, int src, int own_src);
TR_INTERNAL void tr__proc_detach(struct taskring_store *st);
TR_INTERNAL uint32_t tr__proc_token(struct taskring_store *st);
TR_INTERNAL int tr__proc_alive(struct taskring_store *st, uint32_t token);
TR_INTERNAL void tr__proc_lease_min(struct taskring_store *st, uint32_t token, int64_t until);
TR_INTERNAL int tr__reap(struct taskring_store *st, int full, struct taskring_reap_stats *out);
/* End the running attempt that @state names in slot @idx, whose owner
 * @owner is known to be dead (a prefork child the caller killed), as
 * @outcome with @msg. Returns 1 if this call ended it. */
/* The two halves of tr__reap_attempt(): take the closing of the attempt
 * (@state, @owner as read), and end it once taken. */
TR_INTERNAL int tr__reap_take(struct taskring_store *st, uint32_t idx, uint32_t state, uint32_t owner);
TR_INTERNAL void tr__reap_end(struct taskring_store *st, uint32_t idx, uint32_t state, int outcome, const char *msg,
			      size_t mlen);
TR_INTERNAL int tr__reap_attempt(struct taskring_store *st, uint32_t idx, uint32_t state, uint32_t owner, int outcome,
				 const char *msg, size_t mlen);
/* worker.c: end a running attempt whose closing the caller holds. */
TR_INTERNAL void tr__attempt_close_end(struct taskring_store *st, uint32_t idx, uint32_t attempt, uint32_t tag,
				       int outcome, const char *msg, size_t mlen, int64_t end_real);

/* job.c */
TR_INTERNAL struct tr_slot *tr__job_slot(const struct taskring_job *job);
TR_INTERNAL struct tr_slot *tr__read_begin(const struct taskring_job *job, uint32_t *statep, int *err);
TR_INTERNAL int tr__read_end(const struct taskring_job *job, struct tr_slot *s);
TR_INTERNAL int tr__ttl_expired(struct tr_slot *s, uint32_t state);
TR_INTERNAL int tr__free_in_place(struct taskring_store *st, struct tr_slot *s, uint32_t state);
TR_INTERNAL uint32_t tr__ring_count(struct taskring_store *st);
TR_INTERNAL void tr__wake_blocked(struct taskring_store *st);
TR_INTERNAL int tr__copy_blob(const struct taskring_job *job, int result, void *buf, size_t cap, size_t *lenp);

/* wait.c */
TR_INTERNAL int tr__job_ended(const struct taskring_job *job);
TR_INTERNAL int tr__job_arm(const struct taskring_job *job, uint32_t *valp);
TR_INTERNAL int tr__slot_transition(struct tr_slot *s, uint32_t expect, uint32_t next, uint32_t *oldp);
TR_INTERNAL void tr__slot_finished(struct taskring_store *st, uint32_t idx);
TR_INTERNAL void tr__slot_release(struct taskring_store *st, uint32_t idx);
TR_INTERNAL uint32_t tr__reclaim(struct taskring_store *st, uint32_t max, int64_t ended_before, int log);
TR_INTERNAL uint64_t tr__arena_alloc_reclaim(struct taskring_store *st, size_t len);
TR_INTERNAL void tr__slot_wake(struct tr_slot *s);
TR_INTERNAL int tr__error_append_at(struct taskring_store *st, struct tr_slot *s, uint32_t attempt, const char *msg,
				    size_t len, int64_t now);
TR_INTERNAL int tr__job_restore(struct taskring_store *st, uint32_t idx, struct enq_req *r, const uint8_t uuid[16],
				int64_t created_at, const uint8_t *dep_uuids);
TR_INTERNAL void tr__slot_drop_result(struct taskring_store *st, struct tr_slot *s);
TR_INTERNAL int tr__slot_set_result(struct taskring_store *st, struct tr_slot *s, const void *data, size_t len);
TR_INTERNAL void tr__slot_attach_result(struct taskring_store *st, struct tr_slot *s, const void *inl, uint64_t off,
					size_t len);
struct tr_logrec;
TR_INTERNAL int tr__job_snapshot(struct taskring_store *st, uint32_t idx, struct tr_logrec *r, uint8_t **scratch,
				 size_t *scap);

#endif
