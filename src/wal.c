/*
 * wal.c - a store's log: staging in the region, group commit, the flusher,
 * durable waits, and recovery (the replay of a log into a new region).
 *
 * Staging. Any thread of any process that changes a job appends a record
 * to the staging ring in the region (h_off_logbuf, a power of two of
 * bytes): under a short lock (h_log_stage_lock) it stores its pid and the
 * slot's length at h_log_reserve and moves h_log_reserve past the slot
 * (reserve_slot()), then copies the encoded record in, and publishes
 * the slot by setting SLOT_READY in the length (release). A writer that
 * dies in the middle leaves a slot whose length and owner the flusher
 * knows: once the owner is gone, the flusher turns the slot into padding
 * (the record was never acknowledged) and goes on. A slot is 8-byte
 * aligned:
 *
 *   offset size
 *   0      4    slot length (a multiple of 8; 0 = not yet begun), with
 *               SLOT_READY set once the record is in place
 *   4      4    record length (0 = padding, nothing to write)
 *   8      4    the writer's pid, stored before the length
 *   12     4    zero
 *   16     ...  the record (log.c's format; its seq and checksum are
 *               filled in by the flusher), then zeros to the slot's end
 *
 * A writer waits for room when its slot would overwrite bytes the flusher
 * has not yet written out (reserve - flushed > ring size); the oldest
 * unwritten slot always has room, since every record is at most a quarter
 * of the ring, so this cannot deadlock.
 *
 * Group commit. One lock, h_log_lock (lock.c), makes one flusher at a time,
 * in whatever process. The flusher takes every published slot from
 * h_log_flushed on (stopping at the first one not yet published), copies
 * the records into one buffer, gives each its sequence number (its position
 * in the file stream) and seals it with the current segment's salt, writes
 * the buffer with one write and syncs it (io_uring: a write linked to an
 * fdatasync; or pwrite + fdatasync), zeroes the ring bytes it consumed, and
 * only then moves h_log_flushed and h_log_durable and wakes the waiters
 * (h_log_seq). A durable caller waits for h_log_durable to pass the end of
 * its slot: it tries the lock and flushes itself, or sleeps on h_log_seq
 * while another flushes, and checks again; so everybody who arrived during
 * one flush is covered by the next, with one fdatasync for all. No daemon:
 * a flusher that dies leaves the lock to the next (found dead), which writes
 * the same bytes again from h_log_flushed.
 *
 * A failed write or sync sets h_log_failed: the records it covered are never
 * acknowledged, and every later durable call fails with -EIO until the
 * store is recovered from its log (PostgreSQL's lesson: a failed fsync is
 * not retried into a false success).
 *
 * Segments are made by the flusher when none is open or the next record
 * does not fit in what is left of the current one's preallocated size:
 * from a spare (below) or preallocated anew, under a temporary name,
 * renamed, the directory synced (log.c). Each begins with a "store" record
 * that gives the store's sizing, for a recovery without the region.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "log.h"
#include "wal.h"

#define SLOT_HDR 16u
#define SLOT_READY 0x80000000u /* in the slot length word: record in place */
#define FLUSH_MAX (8u << 20) /* bytes of records one flush takes at most */
#define FLUSH_ROUNDS 4       /* flushes one holder of the log lock makes in a row */
/* A waiter sleeps at most this long before it looks at the lock again: a
 * flusher that died (its robust lock free for the taking) wakes nobody. A
 * live flusher always does, long before. */
#define FLUSHER_DEAD_NS 100000000LL

/* This process's side of a store's log. */
struct tr_wal {
	const struct tr_log_io *io;
	int dirfd;
	int lockfd;          /* LOCK in the log directory, flock()ed shared */
	int fd;              /* the current segment, opened by this process */
	uint64_t fd_base;    /* ... and which one it is */
	uint8_t *out;        /* the flusher's buffer */
	size_t outcap;
	struct io_uring ring;
	int ring_state;      /* 0 not tried, 1 ready, -1 not usable here */
	int no_iouring;
	pid_t pid;           /* the process this was set up in (see fork_check) */
	/* ASYNC: the thread that flushes within the interval. */
	pthread_t thread;
	_Atomic int thread_started;
	_Atomic int stop;
	pthread_mutex_t start_lock;
	/* The compaction this process runs (ckpt.c): 0 none, 1 running, 2
	 * finished (to be joined). */
	pthread_t cthread;
	_Atomic int cstate;
};

static uint64_t align8(uint64_t x)
{
	return (x + 7) & ~(uint64_t)7;
}

/* The staging ring's size for a store whose largest payload is @max_payload:
 * at least 4 MiB and four times the largest record. */
uint64_t tr__wal_ring_bytes(uint32_t max_payload)
{
	uint64_t need = 4 * ((uint64_t)max_payload + 64 * 1024 + TASKRING_METADATA_MAX + 4096);
	uint64_t n = 4u << 20;
	while (n < need)
		n <<= 1;
	return n;
}

static uint8_t *ring_at(struct taskring_store *st, uint64_t pos)
{
	return st->base + st->hdr->h_off_logbuf + (pos & (st->hdr->h_logbuf_bytes - 1));
}

/* Copy @n bytes between the ring (from position @pos, wrapping) and @p. */
static void ring_copy(struct taskring_store *st, uint64_t pos, void *p, size_t n, int to_ring)
{
	uint64_t size = st->hdr->h_logbuf_bytes, at = pos & (size - 1);
	uint8_t *base = st->base + st->hdr->h_off_logbuf;
	size_t first = n < size - at ? n : (size_t)(size - at);
	if (to_ring) {
		tr__copy_shared(base + at, p, first);
		tr__copy_shared(base, (uint8_t *)p + first, n - first);
	} else {
		tr__copy_shared(p, base + at, first);
		tr__copy_shared((uint8_t *)p + first, base, n - first);
	}
}

static void ring_zero(struct taskring_store *st, uint64_t from, uint64_t to)
{
	uint64_t size = st->hdr->h_logbuf_bytes;
	uint8_t *base = st->base + st->hdr->h_off_logbuf;
	while (from < to) {
		uint64_t at = from & (size - 1);
		uint64_t n = to - from < size - at ? to - from : size - at;
		memset(base + at, 0, n);
		from += n;
	}
}

/* ---- the flusher ------------------------------------------------------------------------ */

/* The flusher's lock; a dead flusher needs no repair (see above). */
static int log_trylock(struct taskring_store *st)
{
	return -tr__trylock(&st->hdr->h_log_lock, st, TR_LOCK_LOG);
}

static int log_lock(struct taskring_store *st)
{
	return -tr__lock(&st->hdr->h_log_lock, st, TR_LOCK_LOG);
}

static void log_unlock(struct taskring_store *st)
{
	tr__unlock(&st->hdr->h_log_lock);
}

static int out_reserve(struct tr_wal *w, size_t need)
{
	return tr__buf_reserve(&w->out, &w->outcap, need, 1 << 16);
}

/* The "store" record that begins each segment: the sizing, for a recovery
 * that has no region to read it from. */
static size_t store_record(struct taskring_store *st, uint8_t *buf, size_t cap)
{
	struct tr_logrec r;
	memset(&r, 0, sizeof(r));
	r.type = TR_LOG_STORE;
	r.v[0] = st->nslots;
	r.v[1] = st->max_payload;
	r.v[2] = st->nqueues;
	r.v[3] = st->ntasks;
	r.v[4] = (int64_t)st->arena_bytes;
	r.v[5] = st->hdr->h_durability;
	r.v[6] = (int64_t)st->hdr->h_segment_bytes;
	return tr__logrec_encode(&r, buf, cap, 0);
}

/* Make the current segment (h_log_seg_*) open in this process. */
static int open_segment(struct taskring_store *st, struct tr_wal *w)
{
	struct tr_hdr *h = st->hdr;
	if (w->fd >= 0 && w->fd_base == h->h_log_seg_base)
		return 0;
	char name[32];
	tr__log_seg_name(h->h_log_seg_base, name);
	int fd = w->io->open(w->io->ctx, w->dirfd, name, O_RDWR | O_NOFOLLOW, 0);
	if (fd < 0)
		return fd;
	if (w->fd >= 0)
		w->io->close(w->io->ctx, w->fd);
	w->fd = fd;
	w->fd_base = h->h_log_seg_base;
	return 0;
}

/*
 * Room for the ends of jobs (beanstalkd's rule: room for a job's last record
 * is set aside when the job is made). Every unfinished job (pending or
 * running) is owed END_RESERVE bytes of log: a retry or end record with the
 * longest error, or a result of up to about 1 KiB, and its removal. The log
 * keeps preallocated room, in its current segment and in spare segment
 * files (".spare.<n>", made ahead with fallocate and renamed into segments
 * as needed), for all it owes plus one segment of slack for the other
 * records (starts, priority changes, larger results). A new job is admitted
 * only while that holds; when more spares cannot be made (the disk is
 * full), the log is "low on space" and new jobs get -ENOSPC (nothing
 * changes), while everything about existing jobs goes on into the room kept
 * for them. h_log_owed_jobs counts the unfinished jobs: up when jobs are
 * admitted, down when one ends or is removed (its slot goes back to the
 * ring). A process that dies in between leaves it too high, never too low
 * (but for jobs admitted while a recount walks the slots); so it is counted
 * again, by a walk of the slots, when a recovery builds a region and when
 * the room is found short.
 */
#define SPARE_FMT ".spare.%u"
#define END_RESERVE (32u + 3 * 8 + 4 + TASKRING_ERROR_MAX + 8 + TR_LOG_REC_MIN)
#define STORE_REC_LEN (32u + 7 * 8 + 8)

static int64_t owed_walk(struct taskring_store *st)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < st->nslots; i++) {
		uint32_t status = TR_STATUS(atomic_load_explicit(&st->slots[i].s_state, memory_order_relaxed));
		n += status == TASKRING_PENDING || status == TASKRING_RUNNING;
	}
	return n;
}

/* A job left the unfinished ones (ended, or removed while pending). */
void tr__wal_ended(struct taskring_store *st)
{
	atomic_fetch_sub_explicit(&st->hdr->h_log_owed_jobs, 1, memory_order_relaxed);
}

/* @n jobs admitted by tr__wal_room() were not made after all. */
void tr__wal_unadmit(struct taskring_store *st, uint32_t n)
{
	atomic_fetch_sub_explicit(&st->hdr->h_log_owed_jobs, n, memory_order_relaxed);
}

/* Preallocated room left: what the current segment has after what is
 * written and staged, and the spares. */
static uint64_t log_room(struct taskring_store *st)
{
	struct tr_hdr *h = st->hdr;
	uint64_t seg = TR_GET(h->h_segment_bytes), base = TR_GET(h->h_log_seg_base), end = TR_GET(h->h_log_end);
	uint64_t staged = atomic_load_explicit(&h->h_log_reserve, memory_order_relaxed) -
			  atomic_load_explicit(&h->h_log_flushed, memory_order_relaxed);
	uint64_t room = (uint64_t)TR_GET(h->h_log_spares) * (seg - STORE_REC_LEN);
	if (base != UINT64_MAX && base + seg > end)
		room += base + seg - end;
	return room > staged ? room - staged : 0;
}

/* Make spares until the room covers @need bytes (log lock held). 0, or the
 * error of the one that could not be made: the log is then low on space. */
static int make_spares(struct taskring_store *st, struct tr_wal *w, uint64_t need)
{
	struct tr_hdr *h = st->hdr;
	int rc = 0;
	while (log_room(st) < need && h->h_log_spares < 1u << 20) {
		char name[32];
		snprintf(name, sizeof(name), SPARE_FMT, h->h_log_spares);
		int fd = w->io->open(w->io->ctx, w->dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
		rc = fd < 0 ? fd : w->io->fallocate(w->io->ctx, fd, 0, (off_t)(h->h_segment_bytes + TR_LOG_SEG_HDR));
		if (fd >= 0)
			w->io->close(w->io->ctx, fd);
		if (rc) {
			w->io->unlinkat(w->io->ctx, w->dirfd, name);
			break;
		}
		TR_SET(h->h_log_spares, h->h_log_spares + 1);
	}
	atomic_store_explicit(&h->h_log_low_space, rc != 0, memory_order_release);
	return rc;
}

/*
 * A new region takes over the spares its log directory has (".spare.0" on,
 * each of a whole segment's size), and deletes the rest. Log lock not
 * needed: nobody else sees the region yet.
 */
static void adopt_spares(struct taskring_store *st, struct tr_wal *w)
{
	struct tr_hdr *h = st->hdr;
	uint32_t n = 0;
	for (uint32_t k = 0; k < 1u << 20; k++) {
		char name[32];
		off_t size = 0;
		snprintf(name, sizeof(name), SPARE_FMT, k);
		int fd = w->io->open(w->io->ctx, w->dirfd, name, O_RDONLY | O_NOFOLLOW, 0);
		if (fd < 0)
			break;
		int ok = w->io->fstat_size(w->io->ctx, fd, &size) == 0 &&
			 (uint64_t)size == h->h_segment_bytes + TR_LOG_SEG_HDR && n == k;
		w->io->close(w->io->ctx, fd);
		if (ok)
			n++;
		else
			w->io->unlinkat(w->io->ctx, w->dirfd, name);
	}
	w->io->unlinkat(w->io->ctx, w->dirfd, ".spare"); /* (an earlier release's) */
	TR_SET(h->h_log_spares, n);
}

/* What the log must have room for now: what it owes, @extra, a segment. */
static uint64_t room_needed(struct taskring_store *st, uint64_t extra)
{
	int64_t owed = atomic_load_explicit(&st->hdr->h_log_owed_jobs, memory_order_relaxed);
	return (owed > 0 ? (uint64_t)owed * END_RESERVE : 0) + extra + TR_GET(st->hdr->h_segment_bytes);
}

/*
 * Admit @n new jobs: 0 if the log has room for their ends (and counts them
 * as owed), else -ENOSPC (nothing changes). Makes spares when the room is
 * short; -EIO once the log failed.
 */
int tr__wal_room(struct taskring_store *st, uint32_t n)
{
	struct tr_hdr *h = st->hdr;
	uint64_t extra = (uint64_t)n * END_RESERVE;
	if (room_needed(st, extra) > log_room(st)) {
		/* On a full disk, at most once every 10 ms: producers that
		 * keep trying are told at once. */
		int64_t now = tr__now_mono();
		if (atomic_load_explicit(&h->h_log_low_space, memory_order_acquire) &&
		    now - TR_GET(h->h_log_room_tried) < 10000000)
			return -ENOSPC;
		if (log_lock(st))
			return -EIO;
		/* Spares first; the count again only if they cannot be made
		 * (it is never low, but may be high). */
		if (room_needed(st, extra) > log_room(st) && make_spares(st, st->wal, room_needed(st, extra))) {
			atomic_store_explicit(&h->h_log_owed_jobs, owed_walk(st), memory_order_relaxed);
			make_spares(st, st->wal, room_needed(st, extra));
		}
		int short_ = room_needed(st, extra) > log_room(st);
		TR_SET(h->h_log_room_tried, now);
		log_unlock(st);
		if (short_)
			return -ENOSPC;
	}
	atomic_fetch_add_explicit(&h->h_log_owed_jobs, n, memory_order_relaxed);
	return 0;
}

/* ---- compaction ------------------------------------------------------------------------ */

static void *compact_main(void *arg)
{
	struct taskring_store *st = arg;
	struct tr_wal *w = st->wal;
	struct tr_compaction c;
	if (tr__log_compact(w->io, st->hdr->h_log_dir, &w->stop, &c, NULL, 0) == 0 && c.pos) {
		TR_SET(st->hdr->h_log_ckpt_pos, c.pos);
		TR_SET(st->hdr->h_log_ckpt_bytes, c.bytes);
		atomic_fetch_add_explicit(&st->hdr->h_log_compactions, 1, memory_order_relaxed);
	}
	atomic_store_explicit(&w->cstate, 2, memory_order_release);
	return NULL;
}

static void compact_join(struct tr_wal *w)
{
	if (atomic_load_explicit(&w->cstate, memory_order_acquire) == 0)
		return;
	pthread_join(w->cthread, NULL);
	atomic_store_explicit(&w->cstate, 0, memory_order_relaxed);
}

/*
 * At the start of a new segment (log lock held): start a compaction in a
 * thread of this process when the closed segments after the checkpoint hold
 * two segments' worth and as much as the checkpoint (see ckpt.c). Not in a
 * store made with TASKRING_STORE_MANUAL_COMPACT, nor with a test's I/O seam,
 * which is not thread-safe: those tests compact themselves.
 */
static void maybe_compact(struct taskring_store *st, struct tr_wal *w)
{
	struct tr_hdr *h = st->hdr;
	uint64_t closed = h->h_log_seg_base - TR_GET(h->h_log_ckpt_pos);
	if (w->io != &tr__log_sysio || h->h_log_manual_compact || closed < 2 * h->h_segment_bytes ||
	    closed < TR_GET(h->h_log_ckpt_bytes))
		return;
	int cs = atomic_load_explicit(&w->cstate, memory_order_acquire);
	if (cs == 1)
		return;
	if (cs == 2)
		compact_join(w);
	atomic_store_explicit(&w->cstate, 1, memory_order_relaxed);
	if (pthread_create(&w->cthread, NULL, compact_main, st) != 0)
		atomic_store_explicit(&w->cstate, 0, memory_order_relaxed);
}

/* Start a new segment at the stream's end, from a spare if there is one;
 * then make the spares needed (their failure only marks the log low on
 * space). Log lock held. */
static int roll(struct taskring_store *st, struct tr_wal *w)
{
	struct tr_hdr *h = st->hdr;
	int fd;
	uint64_t salt, segno = h->h_log_started ? h->h_log_segno + 1 : 0;
	char spare[32];
	snprintf(spare, sizeof(spare), SPARE_FMT, h->h_log_spares - 1);
	int rc = tr__log_seg_create_from(w->io, w->dirfd, h->h_log_end, segno, h->h_segment_bytes + TR_LOG_SEG_HDR,
					 h->h_log_spares ? spare : NULL, &fd, &salt);
	if (rc == -ENOENT && h->h_log_spares) {
		/* A flusher died between renaming that spare and counting
		 * it out: the count is one too many. */
		TR_SET(h->h_log_spares, h->h_log_spares - 1);
		return roll(st, w);
	}
	if (rc)
		return rc;
	if (h->h_log_spares)
		TR_SET(h->h_log_spares, h->h_log_spares - 1); /* (renamed into the segment) */
	if (w->fd >= 0)
		w->io->close(w->io->ctx, w->fd);
	w->fd = fd;
	w->fd_base = h->h_log_end;
	TR_SET(h->h_log_seg_base, h->h_log_end);
	h->h_log_seg_salt = salt;
	h->h_log_segno = segno;
	h->h_log_started = 1;
	/* Room for what is owed, and a segment ahead. */
	make_spares(st, w, room_needed(st, h->h_segment_bytes));
	maybe_compact(st, w);
	return 0;
}

/*
 * After fork() (an anonymous store's children share its region), the child
 * holds a copy of its parent's side of the log: its io_uring ring's user
 * state is a copy that must not be used, and its flushing thread did not
 * survive. Start both afresh in the child.
 */
static void fork_check(struct tr_wal *w)
{
	pid_t pid = tr__pid();
	if (w->pid == pid)
		return;
	if (w->ring_state == 1)
		io_uring_queue_exit(&w->ring); /* the child's mapping and fd only */
	w->ring_state = 0;
	atomic_store_explicit(&w->thread_started, 0, memory_order_relaxed);
	atomic_store_explicit(&w->cstate, 0, memory_order_relaxed); /* (the parent's) */
	pthread_mutex_init(&w->start_lock, NULL);
	w->pid = pid;
}

/* Write @n bytes at @off and sync them: io_uring (a write linked to an
 * fdatasync) where this process can, else pwrite + fdatasync. */
static int write_sync(struct tr_wal *w, const uint8_t *p, size_t n, uint64_t off)
{
	fork_check(w);
	if (!w->no_iouring && w->ring_state == 0)
		w->ring_state = io_uring_queue_init(4, &w->ring, 0) == 0 ? 1 : -1;
	if (!w->no_iouring && w->ring_state == 1) {
		size_t done = 0;
		while (done < n) {
			struct io_uring_sqe *a = io_uring_get_sqe(&w->ring), *b = io_uring_get_sqe(&w->ring);
			if (!a || !b)
				return -EIO;
			io_uring_prep_write(a, w->fd, p + done, (unsigned)(n - done), off + done);
			a->flags |= IOSQE_IO_LINK;
			io_uring_prep_fsync(b, w->fd, IORING_FSYNC_DATASYNC);
			int rc = io_uring_submit_and_wait(&w->ring, 2);
			if (rc < 0)
				return rc;
			int res[2] = {-EIO, -EIO};
			for (int k = 0; k < 2; k++) {
				struct io_uring_cqe *cqe;
				rc = io_uring_wait_cqe(&w->ring, &cqe);
				if (rc < 0)
					return rc;
				res[k] = cqe->res;
				io_uring_cqe_seen(&w->ring, cqe);
			}
			/* A short write cancels nothing but is not all: the sync
			 * covered what was written; go on from there. */
			if (res[0] < 0)
				return res[0];
			if (res[0] == 0)
				return -EIO;
			if (res[1] < 0 && res[1] != -ECANCELED)
				return res[1];
			if (res[1] == -ECANCELED && (size_t)res[0] == n - done)
				return -EIO;
			done += (size_t)res[0];
		}
		return 0;
	}
	int rc = tr__log_write_all(w->io, w->fd, p, n, (off_t)off);
	return rc ? rc : w->io->fdatasync(w->io->ctx, w->fd);
}

/* Is the process that wrote a slot's pid gone (or a zombie)? */
static int writer_gone(uint32_t pid)
{
	if (pid == 0 || (pid_t)pid == tr__pid())
		return 0;
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return 1;
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	const char *rp = strrchr(buf, ')'); /* "pid (comm) S ..." */
	return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/* The futex bit of the flush that moves h_log_seq to @seq. */
static uint32_t seq_bit(uint32_t seq)
{
	return 1u << (seq & 31);
}

/* A flush is done: move h_log_seq and wake the writers waiting for it,
 * those whose wait this flush ends (seq_bit() of the new value), or with
 * @all everyone. */
static void publish(struct taskring_store *st, int all)
{
	struct tr_hdr *h = st->hdr;
	uint32_t seq = atomic_fetch_add_explicit(&h->h_log_seq, 1, memory_order_seq_cst) + 1;
	if (atomic_load_explicit(&h->h_log_waiters, memory_order_seq_cst))
		tr__futex_wake(&h->h_log_seq, INT32_MAX, all ? 0xffffffffu : seq_bit(seq));
}

/*
 * Flush what is staged (log lock held): see "Group commit" above. Returns 0
 * (also when there was nothing), or the error that failed the log.
 */
static int flush_locked(struct taskring_store *st, uint64_t want)
{
	struct tr_hdr *h = st->hdr;
	struct tr_wal *w = st->wal;
	uint64_t start = atomic_load_explicit(&h->h_log_flushed, memory_order_relaxed), pos = start;
	uint64_t reserved = atomic_load_explicit(&h->h_log_reserve, memory_order_acquire);
	size_t n = 0;
	int rc;

	if (atomic_load_explicit(&h->h_log_failed, memory_order_acquire))
		return -EIO;
	/* Records go into the current segment while they fit in its
	 * preallocated size; the first that does not begins a new one (a
	 * record larger than a whole segment has one to itself). */
	int need_roll = !h->h_log_started || h->h_log_seg_base == UINT64_MAX;
	uint64_t room = need_roll ? 0 : h->h_log_seg_base + h->h_segment_bytes - h->h_log_end;
	if (!need_roll && h->h_log_end - h->h_log_seg_base > h->h_segment_bytes)
		room = 0;
	if ((rc = out_reserve(w, 4096)) != 0)
		return rc;
	if (need_roll) {
		n = store_record(st, w->out, w->outcap);
		room = h->h_segment_bytes - n;
	}
	/* Waiters whose records lie beyond this do not wake for this flush. */
	atomic_store_explicit(&h->h_log_flush_to, reserved, memory_order_seq_cst);
	int64_t give_up = 0;
	while (pos < reserved && n < FLUSH_MAX) {
		/* Acquire: the slot's bytes were written before its length. */
		uint32_t sl = atomic_load_explicit((_Atomic uint32_t *)ring_at(st, pos), memory_order_acquire);
		if (!(sl & SLOT_READY)) {
			/* Not written yet. Its writer is between its
			 * reservation and its last store, a few hundred
			 * nanoseconds unless it was preempted: when our caller
			 * waits for a record after it, wait for it (letting
			 * it run), rather than flush without it. After a
			 * while, a slot whose writer died (its length and pid
			 * are there) becomes padding: that record was never
			 * acknowledged. (A slot below h_log_reserve always has
			 * them: reserve_slot(). A zero length is a scribbled
			 * ring: give up.) */
			if (pos >= want)
				break;
			int64_t now = tr__now_mono();
			if (!give_up) {
				give_up = now + FLUSHER_DEAD_NS;
			} else if (now > give_up) {
				if (!sl || !writer_gone(*(uint32_t *)ring_at(st, pos + 8)))
					break;
				uint32_t zero = 0;
				memcpy(ring_at(st, pos + 4), &zero, 4);
				atomic_store_explicit((_Atomic uint32_t *)ring_at(st, pos), sl | SLOT_READY,
						      memory_order_release);
				continue;
			}
			sched_yield();
			continue;
		}
		sl &= ~SLOT_READY;
		give_up = 0;
		uint32_t rl = *(uint32_t *)ring_at(st, pos + 4);
		if ((sl & 7) || sl < SLOT_HDR + rl || sl > h->h_logbuf_bytes / 2 || (rl && rl < TR_LOG_REC_MIN)) {
			rc = -EIO; /* a scribbled ring: never write what it says */
			goto fail;
		}
		if (rl > room) {
			size_t first = need_roll ? STORE_REC_LEN : 0;
			if (n > first)
				break; /* this segment is full: the next flush goes on */
			if (!need_roll) {
				need_roll = 1; /* nothing taken yet: a new segment first */
				n = store_record(st, w->out, w->outcap);
				room = h->h_segment_bytes - n;
			}
		}
		if (rl) {
			room = room > rl ? room - rl : 0;
			if ((rc = out_reserve(w, n + rl)) != 0)
				goto fail;
			ring_copy(st, pos + SLOT_HDR, w->out + n, rl, 0);
			n += rl;
		}
		pos += sl;
	}
	if (pos == start && !need_roll)
		return 0;
	if (need_roll && (rc = roll(st, w)) != 0)
		goto fail;
	if ((rc = open_segment(st, w)) != 0)
		goto fail;
	/* Sequence numbers and seals: this segment's. */
	for (size_t o = 0; o < n;) {
		uint32_t len;
		memcpy(&len, w->out + o, 4);
		uint64_t seq = h->h_log_end + o;
		for (int i = 0; i < 8; i++)
			w->out[o + 8 + i] = (uint8_t)(seq >> (8 * i));
		tr__logrec_seal(w->out + o, h->h_log_seg_salt);
		o += len;
	}
	rc = write_sync(w, w->out, n, TR_LOG_SEG_HDR + (h->h_log_end - h->h_log_seg_base));
	if (rc)
		goto fail;
	ring_zero(st, start, pos);
	TR_SET(h->h_log_end, h->h_log_end + n);
	/* Release: the zeroed ring is visible before writers see the room. */
	atomic_store_explicit(&h->h_log_flushed, pos, memory_order_release);
	atomic_store_explicit(&h->h_log_durable, pos, memory_order_release);
	return 0;
fail:
	atomic_store_explicit(&h->h_log_failed, 1, memory_order_release);
	return rc < 0 ? rc : -EIO;
}

/*
 * Flush with the log lock held, as the one flusher. h_log_flushing tells
 * waiters that a flush is under way: one that registered while it was set
 * is woken by a publish after it (seq_cst on both sides: the flag is
 * cleared before the last publish moves h_log_seq, and a waiter reads
 * h_log_seq before it reads the flag), and one that finds it clear tries
 * the lock itself; so no waiter sleeps with nobody to wake it.
 *
 * While writers wait for records staged after a flush began, the flusher
 * goes on with the next flush at once, up to FLUSH_ROUNDS in all, waking
 * after each only the writers whose records it covered (publish(), and
 * wait_flush() for the writers' side): with dozens of writers, the rest
 * used to wake with them, find their records not yet durable, and sleep
 * again, or spin in sched_yield() while the lock changed hands. The last
 * publish wakes everyone, so that a writer left waiting takes the lock
 * over.
 */
static int flush_as_flusher(struct taskring_store *st, uint64_t want)
{
	struct tr_hdr *h = st->hdr;
	int rc;
	atomic_store_explicit(&h->h_log_flushing, 1, memory_order_seq_cst);
	for (int round = 1;; round++) {
		rc = flush_locked(st, want);
		if (rc || round == FLUSH_ROUNDS || !atomic_load_explicit(&h->h_log_waiters, memory_order_seq_cst) ||
		    atomic_load_explicit(&h->h_log_reserve, memory_order_acquire) <=
			    atomic_load_explicit(&h->h_log_durable, memory_order_acquire))
			break;
		publish(st, 0);
		want = 0; /* later rounds take what is ready */
	}
	atomic_store_explicit(&h->h_log_flushing, 0, memory_order_seq_cst);
	publish(st, 1);
	return rc;
}

/* Flush now if nobody else is (0), or say that somebody is (1). */
static int try_flush(struct taskring_store *st, uint64_t want)
{
	if (log_trylock(st))
		return 1;
	int rc = flush_as_flusher(st, want);
	log_unlock(st);
	return rc;
}

/*
 * Sleep until the flusher publishes again (or @until, mono ns, -1 none),
 * unless @done(@need) already holds: a wait for the ring to be flushed up to
 * staging position @need (synced: is_durable; written: is_flushed). When
 * @need lies beyond what the flush in progress reads, no publish before the
 * next flush's can end the wait: sleep until then (or the flusher's last
 * publish, which wakes everyone). A stale look only costs a wake-up too
 * many or one flush of delay: a flush moves h_log_seq, so nobody sleeps
 * through one it missed.
 */
static void wait_flush(struct taskring_store *st, int (*done)(struct taskring_store *, uint64_t), uint64_t need,
		       int64_t until)
{
	struct tr_hdr *h = st->hdr;
	uint32_t seq = atomic_load_explicit(&h->h_log_seq, memory_order_seq_cst);
	atomic_fetch_add_explicit(&h->h_log_waiters, 1, memory_order_seq_cst);
	if (!done(st, need) && !atomic_load_explicit(&h->h_log_failed, memory_order_seq_cst)) {
		if (atomic_load_explicit(&h->h_log_flushing, memory_order_seq_cst)) {
			uint32_t next = seq + 1;
			if (need > atomic_load_explicit(&h->h_log_flush_to, memory_order_seq_cst))
				next++;
			tr__futex_wait(&h->h_log_seq, seq, until, seq_bit(next));
		} else {
			sched_yield(); /* the lock is being taken or given back */
		}
	}
	atomic_fetch_sub_explicit(&h->h_log_waiters, 1, memory_order_seq_cst);
}

static int is_durable(struct taskring_store *st, uint64_t end)
{
	return atomic_load_explicit(&st->hdr->h_log_durable, memory_order_acquire) >= end;
}

static int is_flushed(struct taskring_store *st, uint64_t need)
{
	return atomic_load_explicit(&st->hdr->h_log_flushed, memory_order_acquire) >= need;
}

/* Up to where the ring must be flushed for a slot ending at @end to fit. */
static uint64_t room_needs(struct taskring_store *st, uint64_t end)
{
	uint64_t cap = st->hdr->h_logbuf_bytes;
	return end > cap ? end - cap : 0;
}

static int has_room(struct taskring_store *st, uint64_t end)
{
	return is_flushed(st, room_needs(st, end));
}

/* ---- ASYNC: the interval flusher ---------------------------------------------------------- */

static void *async_main(void *arg)
{
	struct taskring_store *st = arg;
	struct tr_hdr *h = st->hdr;
	int64_t half = h->h_flush_interval_ns / 2;
	while (!atomic_load_explicit(&st->wal->stop, memory_order_acquire)) {
		/* Every half interval, whatever is staged goes: so a record is
		 * on disk within the interval (a flush takes well under half). */
		uint32_t seq = atomic_load_explicit(&h->h_log_seq, memory_order_relaxed);
		tr__futex_wait_op(&h->h_log_seq, seq, tr__now_mono() + half, 0xffffffffu, 0);
		/* Until all is written (a flush stops at a segment's end);
		 * when busy, whoever flushes takes ours too. */
		for (int i = 0; i < 64 && atomic_load_explicit(&h->h_log_reserve, memory_order_acquire) >
						 atomic_load_explicit(&h->h_log_flushed, memory_order_acquire);
		     i++) {
			uint64_t before = atomic_load_explicit(&h->h_log_flushed, memory_order_acquire);
			if (try_flush(st, 0) != 0 ||
			    atomic_load_explicit(&h->h_log_flushed, memory_order_acquire) == before)
				break;
		}
	}
	return NULL;
}

static void async_start(struct taskring_store *st)
{
	struct tr_wal *w = st->wal;
	pthread_mutex_lock(&w->start_lock);
	if (!w->thread_started && pthread_create(&w->thread, NULL, async_main, st) == 0)
		w->thread_started = 1;
	pthread_mutex_unlock(&w->start_lock);
}

/* ---- the writers' side ------------------------------------------------------------------- */

/*
 * Take the next @sl bytes of the staging ring, once they are free, and begin
 * the slot there (owner and length): *@posp is its position. Under the
 * staging lock (lock.c), so the slot is begun before h_log_reserve moves
 * past it: a writer killed at any point leaves either nothing taken (its
 * half-begun slot is the next writer's to overwrite) or a slot whose length
 * and owner the flusher knows (see the top). 0, or -EIO (the log failed;
 * the ring is stuck anyway), or the lock's error.
 */
static int reserve_slot(struct taskring_store *st, uint64_t sl, uint64_t *posp)
{
	struct tr_hdr *h = st->hdr;
	uint32_t me = (uint32_t)tr__pid();
	for (;;) {
		uint64_t pos = atomic_load_explicit(&h->h_log_reserve, memory_order_acquire);
		if (has_room(st, pos + sl)) {
			int rc = tr__spin_lock(&h->h_log_stage_lock, st, TR_LOCK_LOG_STAGE);
			if (rc)
				return rc;
			pos = atomic_load_explicit(&h->h_log_reserve, memory_order_relaxed);
			int room = has_room(st, pos + sl);
			if (room) {
				/* Owner and length, then the position: a flusher
				 * reads slots below h_log_reserve only. */
				memcpy(ring_at(st, pos + 8), &me, 4);
				atomic_store_explicit((_Atomic uint32_t *)ring_at(st, pos), (uint32_t)sl,
						      memory_order_relaxed);
				TR_CRASH(LOG_STAGE);
				atomic_store_explicit(&h->h_log_reserve, pos + sl, memory_order_release);
			}
			tr__spin_unlock(&h->h_log_stage_lock);
			if (room) {
				*posp = pos;
				return 0;
			}
			continue;
		}
		/* Room: flush, or wait for the flusher. */
		if (atomic_load_explicit(&h->h_log_failed, memory_order_acquire))
			return -EIO;
		int rc = try_flush(st, 0);
		if (rc == 1)
			wait_flush(st, is_flushed, room_needs(st, pos + sl), tr__now_mono() + FLUSHER_DEAD_NS);
		else if (rc == 0)
			sched_yield(); /* a slot before ours is being written: let its writer run */
	}
}

/*
 * Stage record @r (seq and checksum are the flusher's). Returns 0 with
 * *@endp the ring position after it (what tr__wal_commit() waits for), or
 * -EIO (the log failed), -ENOMEM, -EINVAL (not a record).
 */
int tr__wal_append(struct taskring_store *st, const struct tr_logrec *r, uint64_t *endp)
{
	struct tr_hdr *h = st->hdr;
	size_t rl = tr__logrec_size(r);
	if (!rl)
		return -EINVAL;
	if (atomic_load_explicit(&h->h_log_failed, memory_order_acquire))
		return -EIO;
	uint64_t sl = align8(SLOT_HDR + rl);
	if (sl > h->h_logbuf_bytes / 4)
		return -EMSGSIZE; /* cannot happen: the ring is sized for the largest */
	/* A record that would wrap around the ring's end is encoded aside
	 * first (on the stack when small); the others in place, below. */
	uint8_t small[1024], *aside = NULL;
	uint64_t size = h->h_logbuf_bytes, pos;
	int rc = reserve_slot(st, sl, &pos);
	if (rc)
		return rc;
	int wraps = ((pos + SLOT_HDR) & (size - 1)) + rl > size;
	if (!wraps) {
		tr__logrec_encode(r, ring_at(st, pos + SLOT_HDR), rl, 0);
	} else {
		aside = rl <= sizeof(small) ? small : malloc(rl);
		if (!aside) {
			/* Keep the ring moving: the slot becomes padding. */
			uint32_t zero = 0;
			memcpy(ring_at(st, pos + 4), &zero, 4);
			atomic_store_explicit((_Atomic uint32_t *)ring_at(st, pos), (uint32_t)sl | SLOT_READY,
					      memory_order_release);
			return -ENOMEM;
		}
		tr__logrec_encode(r, aside, rl, 0);
		ring_copy(st, pos + SLOT_HDR, aside, rl, 1);
		if (aside != small)
			free(aside);
	}
	uint32_t rl32 = (uint32_t)rl;
	memcpy(ring_at(st, pos + 4), &rl32, 4);
	/* Release: the record is in place before the slot says so. A CAS: a
	 * flusher that took us for dead (we were stopped for long, and our pid
	 * looked gone) has made the slot padding; then the record is not in
	 * the log, and we say so. */
	uint32_t expect = (uint32_t)sl;
	if (!atomic_compare_exchange_strong_explicit((_Atomic uint32_t *)ring_at(st, pos), &expect,
						     (uint32_t)sl | SLOT_READY, memory_order_release,
						     memory_order_relaxed))
		return -EIO;
	if (h->h_durability == TASKRING_ASYNC) {
		fork_check(st->wal);
		if (!atomic_load_explicit(&st->wal->thread_started, memory_order_acquire))
			async_start(st);
	}
	*endp = pos + sl;
	return 0;
}

/*
 * For tests: reserve a slot and begin it (owner and length) as a writer
 * killed at that moment would leave it. Returns the ring position after it.
 */
uint64_t tr__wal_test_stall(struct taskring_store *st)
{
	uint64_t sl = align8(SLOT_HDR + 64), pos = 0;
	reserve_slot(st, sl, &pos);
	return pos + sl;
}

/*
 * Return once everything staged up to ring position @end is on stable
 * storage (TASKRING_DURABLE), flushing it if no other thread or process is
 * flushing; at once for TASKRING_ASYNC. Errors: -EIO (a write or sync
 * failed: this and every later durable call).
 */
int tr__wal_commit(struct taskring_store *st, uint64_t end)
{
	struct tr_hdr *h = st->hdr;
	if (h->h_durability != TASKRING_DURABLE)
		return 0;
	for (;;) {
		if (is_durable(st, end))
			return 0;
		if (atomic_load_explicit(&h->h_log_failed, memory_order_acquire))
			return -EIO;
		int rc = try_flush(st, end);
		if (rc == 1)
			wait_flush(st, is_durable, end, tr__now_mono() + FLUSHER_DEAD_NS);
		else if (rc < 0)
			return rc;
		else
			sched_yield(); /* a slot before ours is being written: let its writer run */
	}
}

/* Flush everything staged so far and wait for it (store close, tests). */
int tr__wal_sync(struct taskring_store *st)
{
	struct tr_hdr *h = st->hdr;
	uint64_t end = atomic_load_explicit(&h->h_log_reserve, memory_order_acquire);
	for (;;) {
		if (is_durable(st, end))
			return 0;
		if (atomic_load_explicit(&h->h_log_failed, memory_order_acquire))
			return -EIO;
		if (log_lock(st))
			return -EIO;
		int rc = flush_as_flusher(st, end);
		log_unlock(st);
		if (rc)
			return rc;
	}
}

/* ---- attaching ---------------------------------------------------------------------------- */

/* Tests put their I/O seam here (recorded or failing operations); it
 * also turns io_uring off, as io_uring does not go through the seam. */
const struct tr_log_io *tr__wal_test_io;

/*
 * One store per log directory. Every process attached to a store with a log
 * holds a shared flock() on the directory's LOCK file, and the directory's
 * STORE file names the region that owns the log (h_log_id). A region being
 * created takes the lock exclusively, without waiting: it fails
 * (TASKRING_ELOG) while any process of another store is attached; then it
 * writes its id to STORE before anyone can see it. A process attaching to
 * an existing region checks that STORE still names it: a region whose log
 * was taken over by another (while nobody was attached to it) is refused.
 */
#define LOCK_NAME "LOCK"
#define STORE_NAME "STORE"

static int claim_dir(struct taskring_store *st, struct tr_wal *w, int create)
{
	struct tr_hdr *h = st->hdr;
	w->lockfd = openat(w->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (w->lockfd < 0)
		return -errno;
	if (create) {
		if (flock(w->lockfd, LOCK_EX | LOCK_NB) < 0)
			return errno == EWOULDBLOCK ? TASKRING_ELOG : -errno;
		return 0; /* STORE is written by tr__wal_claimed(), after recovery */
	}
	if (flock(w->lockfd, LOCK_SH) < 0)
		return -errno;
	uint64_t id = 0;
	int fd = openat(w->dirfd, STORE_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, &id, sizeof(id), 0) : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(id) || id != h->h_log_id)
		return TASKRING_ELOG;
	return 0;
}

/* The new region owns the directory: write STORE (durably), then hold the
 * lock shared like every other attached process. */
int tr__wal_claimed(struct taskring_store *st)
{
	struct tr_wal *w = st->wal;
	char tmp[] = ".STORE.tmp";
	uint64_t id = st->hdr->h_log_id;
	int fd = openat(w->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	int rc = 0;
	if (fd < 0 || pwrite(fd, &id, sizeof(id), 0) != (ssize_t)sizeof(id) || fsync(fd) < 0 ||
	    renameat(w->dirfd, tmp, w->dirfd, STORE_NAME) < 0 || fsync(w->dirfd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (!rc && flock(w->lockfd, LOCK_SH) < 0)
		rc = -errno;
	return rc;
}

/* This process's side, for a region that has a log (@create: a region
 * being created, which claims the directory; see claim_dir()). */
int tr__wal_attach(struct taskring_store *st, const struct tr_log_io *io, int no_iouring, int create)
{
	struct tr_wal *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	if (!io && tr__wal_test_io) {
		io = tr__wal_test_io;
		no_iouring = 1;
	}
	w->io = io ? io : &tr__log_sysio;
	w->fd = -1;
	w->lockfd = -1;
	w->pid = tr__pid();
	w->no_iouring = no_iouring || tr__no_iouring_env();
	pthread_mutex_init(&w->start_lock, NULL);
	w->dirfd = w->io->open(w->io->ctx, AT_FDCWD, st->hdr->h_log_dir, O_RDONLY | O_DIRECTORY, 0);
	int rc = w->dirfd < 0 ? w->dirfd : claim_dir(st, w, create);
	if (rc) {
		if (w->lockfd >= 0)
			close(w->lockfd);
		if (w->dirfd >= 0)
			w->io->close(w->io->ctx, w->dirfd);
		pthread_mutex_destroy(&w->start_lock);
		free(w);
		return rc;
	}
	st->wal = w;
	return 0;
}

void tr__wal_detach(struct taskring_store *st)
{
	struct tr_wal *w = st->wal;
	if (!w)
		return;
	fork_check(w);
	if (w->thread_started) {
		atomic_store_explicit(&w->stop, 1, memory_order_release);
		atomic_fetch_add_explicit(&st->hdr->h_log_seq, 1, memory_order_seq_cst);
		tr__futex_wake_op(&st->hdr->h_log_seq, INT32_MAX, 0xffffffffu, 0);
		pthread_join(w->thread, NULL);
	}
	atomic_store_explicit(&w->stop, 1, memory_order_release);
	compact_join(w);
	if (!atomic_load_explicit(&st->hdr->h_log_failed, memory_order_acquire))
		tr__wal_sync(st); /* what this process staged reaches the disk */
	if (w->ring_state == 1)
		io_uring_queue_exit(&w->ring);
	if (w->fd >= 0)
		w->io->close(w->io->ctx, w->fd);
	w->io->close(w->io->ctx, w->dirfd);
	if (w->lockfd >= 0)
		close(w->lockfd); /* gives up this process's share of the lock */
	pthread_mutex_destroy(&w->start_lock);
	free(w->out);
	free(w);
	st->wal = NULL;
}

/* ---- records of jobs ------------------------------------------------------------------------ */

/* Stage a record of the job in @s with scalars @v and at most one blob. */
int tr__wal_log(struct taskring_store *st, uint16_t type, struct tr_slot *s, const int64_t *v, unsigned nv,
		const void *blob, uint32_t blen, uint64_t *endp)
{
	struct tr_logrec r;
	uint64_t end;
	memset(&r, 0, sizeof(r));
	r.type = type;
	tr__copy_shared(r.uuid, s->s_uuid, 16);
	for (unsigned i = 0; i < nv && i < TR_LOG_SCALARS; i++)
		r.v[i] = v[i];
	const struct tr_logrec_spec *sp = tr__logrec_spec(type);
	if (sp && sp->nblobs) {
		r.blob[0] = blob;
		r.blen[0] = blen;
	}
	int rc = tr__wal_append(st, &r, &end);
	if (!rc && endp && end > *endp)
		*endp = end;
	return rc;
}

/*
 * Stage the record of the end of an attempt of the job in @s (its owner's
 * call, before the transition): COMPLETE carries the result set in the slot;
 * the others the error @msg (may be empty). @v2: RETRY's next due time.
 */
int tr__wal_log_end(struct taskring_store *st, struct tr_slot *s, uint16_t type, uint32_t attempt, int64_t when,
		    int64_t v2, const char *msg, size_t mlen, uint64_t *endp)
{
	int64_t v[3] = {attempt, when, v2};
	if (type != TR_LOG_COMPLETE)
		return tr__wal_log(st, type, s, v, type == TR_LOG_RETRY ? 3 : 2, msg, (uint32_t)mlen, endp);
	uint32_t len = TR_GET(s->s_result_len), blen = 0;
	const void *res = s->s_inline_result;
	if (!(TR_GET(s->s_flags) & TR_SF_RESULT_INLINE) && len) {
		res = tr__arena_data(st, TR_GET(s->s_result_off), &blen);
		if (!res || blen < len)
			return -EIO;
	} else if (len > TR_INLINE_RESULT) {
		return -EIO;
	}
	return tr__wal_log(st, TR_LOG_COMPLETE, s, v, 2, res, len, endp);
}

/* Stage the enqueue record of the new job in slot @idx, made from @q. */
int tr__wal_log_enqueue(struct taskring_store *st, uint32_t idx, const struct enq_req *q, uint64_t *endp)
{
	struct tr_slot *s = &st->slots[idx];
	struct tr_logrec r;
	uint8_t stack_deps[16 * 8], *deps = stack_deps;
	uint64_t end;
	memset(&r, 0, sizeof(r));
	r.type = TR_LOG_ENQUEUE;
	tr__copy_shared(r.uuid, s->s_uuid, 16);
	r.v[0] = q->priority;
	r.v[1] = q->max_retries;
	r.v[2] = TR_GET(s->s_created_at);
	r.v[3] = TR_GET(s->s_scheduled_at);
	r.v[4] = q->timeout_ns;
	r.v[5] = q->ttl_ns;
	r.v[6] = q->base_ns;
	r.v[7] = q->cap_ns;
	r.v[8] = TR_GET(s->s_expires_at);
	r.blob[0] = st->queues[q->queue].q_name;
	r.blen[0] = (uint32_t)strnlen(st->queues[q->queue].q_name, TASKRING_NAME_MAX);
	r.blob[1] = st->tasks[q->task];
	r.blen[1] = (uint32_t)strnlen(st->tasks[q->task], TASKRING_NAME_MAX);
	r.blob[2] = q->payload;
	r.blen[2] = (uint32_t)q->len;
	r.blob[3] = q->meta;
	r.blen[3] = (uint32_t)q->metalen;
	r.blob[4] = q->ukey;
	r.blen[4] = (uint32_t)q->ukeylen;
	r.blob[5] = q->delays;
	r.blen[5] = q->ndelays * (uint32_t)sizeof(int64_t);
	if (q->ndeps) {
		/* The dependencies by uuid, from the job's own entries. */
		if (q->ndeps > sizeof(stack_deps) / 16 && !(deps = malloc(16 * (size_t)q->ndeps)))
			return -ENOMEM;
		const struct tr_dep *d = (const struct tr_dep *)(st->arena + q->deps_off + sizeof(struct tr_block));
		for (uint32_t k = 0; k < q->ndeps; k++)
			memcpy(deps + 16 * k, d[k].d_uuid, 16);
		r.blob[6] = deps;
		r.blen[6] = 16 * q->ndeps;
	}
	int rc = tr__wal_append(st, &r, &end);
	if (deps != stack_deps)
		free(deps);
	if (!rc && end > *endp)
		*endp = end;
	return rc;
}

/* Is the log unable to take more work (it failed)? */
int tr__wal_failed(struct taskring_store *st)
{
	return st->wal && atomic_load_explicit(&st->hdr->h_log_failed, memory_order_acquire);
}

/* ---- recovery --------------------------------------------------------------------------------- */

/*
 * Recover the log of a new region (attached: st->wal): scan it, zeroing a
 * torn tail, replay its checkpoint and every record after it into the
 * region and finish (ckpt.c), and set
 * the flusher to start a new segment at the log's end. Returns 0,
 * TASKRING_ELOGCORRUPT (corruption before the log's end; @err, if given,
 * says where), TASKRING_ESIZING (the log is of a store with other sizing),
 * or another error.
 */
int tr__wal_recover(struct taskring_store *st, char *err, size_t errcap)
{
	struct tr_hdr *h = st->hdr;
	struct tr_log_scan s;
	int rc = tr__replay_log(st, st->wal->io, &s, err, errcap);
	if (rc)
		return rc == -EBADMSG ? TASKRING_ELOGCORRUPT : rc;
	h->h_log_ckpt_pos = s.ckpt[0] ? s.ckpt_pos : s.first_seq;
	h->h_log_ckpt_bytes = s.ckpt_bytes;
	TR_SET(h->h_log_end, s.end_seq);
	TR_SET(h->h_log_seg_base, UINT64_MAX); /* the first flush starts a segment */
	adopt_spares(st, st->wal);
	atomic_store_explicit(&h->h_log_owed_jobs, owed_walk(st), memory_order_relaxed);
	if (s.segments && s.last_base != s.end_seq) {
		h->h_log_segno = s.last_segno;
		h->h_log_started = 1;
	} else if (s.segments) {
		/* A last segment without records: the next one replaces it. */
		h->h_log_segno = s.last_segno - 1;
		h->h_log_started = s.last_segno > 0;
	}
	return tr__wal_sync(st); /* a new segment, with what the finish logged */
}
