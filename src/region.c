/*
 * region.c - the shared region: layout, creation, validation, attach, close.
 *
 * The layout itself is documented byte by byte at the top of internal.h and
 * computed in one place, tr__layout(), which both the creator and every
 * validating opener use, so a header whose offsets disagree with its own
 * sizing is refused.
 *
 * Creation is atomic. The creator builds the region in an unnamed file
 * (O_TMPFILE in the target directory, or a hidden temporary name where that
 * is not supported), initialises it completely, marks it ready, and only then
 * links it under the store's name. link() never replaces an existing name, so
 * of several concurrent first openers exactly one wins; the others discard
 * their copy and open the winner's. No opener can ever map a half-built
 * region, so nobody has to wait for one (the header's h_init word is still
 * checked, as a last guard against a region built some other way).
 *
 * Security: files are created 0600 (0660 with TASKRING_STORE_GROUP, set with
 * fchmod so the umask cannot widen or narrow it), opened with O_NOFOLLOW, and
 * refused unless they are regular files owned by the caller's effective uid.
 * Sizing is copied out of the header once, after validation, into the
 * process-local handle, so later scribbles on the header cannot move this
 * process's bounds.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "wal.h"
#include "log.h"

_Static_assert(sizeof(struct tr_hdr) <= TR_PAGE, "header fits its page");
_Static_assert(offsetof(struct tr_hdr, h_format) == 8, "format word at offset 8");
_Static_assert(offsetof(struct tr_hdr, h_build) == 12, "build signature at offset 12");
_Static_assert(offsetof(struct tr_hdr, h_lock) % TR_CACHELINE == 0, "store lock on its own line");
_Static_assert(offsetof(struct tr_hdr, h_wake) % TR_CACHELINE == 0, "wake word on its own line");
_Static_assert(offsetof(struct tr_hdr, h_ring_pop_lock) % TR_CACHELINE == 0, "ring pop side on its own line");
_Static_assert(offsetof(struct tr_hdr, h_ring_push_lock) % TR_CACHELINE == 0, "ring push side on its own line");
_Static_assert(sizeof(struct tr_slot) == 320, "slot is five cache lines");
_Static_assert(offsetof(struct tr_slot, s_unique_off) == 256, "slot line 4");
_Static_assert(offsetof(struct tr_hdr, h_unique_lock) % TR_CACHELINE == 0, "unique lock on its own line");
_Static_assert(offsetof(struct tr_hdr, h_deps_lock) % TR_CACHELINE == 0, "deps lock on its own line");
_Static_assert(offsetof(struct tr_slot, s_deps_off) == 272, "slot line 4: dependencies");
_Static_assert(sizeof(struct tr_dep) == 32 && sizeof(struct tr_dent) == 32 && sizeof(struct tr_dents_hdr) == 8,
	       "dependency entries");
_Static_assert(offsetof(struct tr_slot, s_uuid) == 64, "slot line 1");
_Static_assert(offsetof(struct tr_slot, s_payload_off) == 128, "slot line 2");
_Static_assert(offsetof(struct tr_slot, s_inline_payload) == 192, "slot line 3");
_Static_assert(sizeof(struct tr_queue) == 10 * TR_CACHELINE, "queue is ten cache lines");
_Static_assert(offsetof(struct tr_queue, q_name) == 64, "queue name on line 1");
_Static_assert(offsetof(struct tr_queue, q_lock) == 128, "queue lock on line 2");
_Static_assert(offsetof(struct tr_queue, q_bands) == 256, "bands on line 4");
_Static_assert(offsetof(struct tr_queue, q_enqueued) == 512, "counters on line 8");
_Static_assert(sizeof(struct tr_block) == 16, "block header");
_Static_assert(sizeof(struct tr_proc) == 64, "process table entry is one cache line");
_Static_assert(offsetof(struct tr_slot, s_lease) == 304 && offsetof(struct tr_slot, s_owner) == 312,
	       "slot line 4: the lease and the owner");
_Static_assert(offsetof(struct tr_slot, s_holder) == 184, "slot line 2: the holder");
_Static_assert(TASKRING_MAX_SLOTS <= (1u << 24), "slot index fits the 24 bits an id carries");
_Static_assert(TASKRING_MAX_QUEUES <= 0xffff && TASKRING_MAX_TASKS <= 0xffff, "u16 indices");

static uint64_t page_up(uint64_t x)
{
	return (x + TR_PAGE - 1) & ~(uint64_t)(TR_PAGE - 1);
}

/*
 * Compute the offsets of every part of a region from its sizing (see the
 * layout in internal.h). Each part starts on a page, so parts never share a
 * cache line and a mapping can be made huge-page friendly later. The ring's
 * capacity is the next power of two of the slot count, for masking.
 */
int tr__layout(uint32_t slots, uint32_t queues, uint32_t tasks, uint64_t arena, uint64_t logbuf,
	       struct tr_layout *l)
{
	uint32_t cap = 1;

	if (slots < TASKRING_MIN_SLOTS || slots > TASKRING_MAX_SLOTS || queues < 1 ||
	    queues > TASKRING_MAX_QUEUES || tasks < 1 || tasks > TASKRING_MAX_TASKS ||
	    arena > (1ull << 38) || arena < TR_PAGE)
		return -EINVAL;
	while (cap < slots)
		cap <<= 1;
	l->ring_mask = cap - 1;
	l->off_procs = TR_PAGE;
	l->off_queues = l->off_procs + page_up((uint64_t)TR_PROCS * sizeof(struct tr_proc));
	l->off_tasks = l->off_queues + page_up((uint64_t)queues * sizeof(struct tr_queue));
	l->off_slots = l->off_tasks + page_up((uint64_t)tasks * 64);
	l->off_ring = l->off_slots + page_up((uint64_t)slots * sizeof(struct tr_slot));
	l->off_heaps = l->off_ring + page_up((uint64_t)cap * 8);
	l->unique_mask = 2 * cap - 1;
	l->off_unique = l->off_heaps + page_up((uint64_t)queues * slots * 4);
	l->off_arena = l->off_unique + page_up((uint64_t)(l->unique_mask + 1) * 8);
	l->off_logbuf = l->off_arena + page_up(arena);
	l->total = l->off_logbuf + logbuf;
	return 0;
}

/* FNV-1a over the sizes and offsets that two builds must agree on. */
uint32_t tr__build_signature(void)
{
	const uint64_t v[] = {
		sizeof(struct tr_hdr), sizeof(struct tr_queue), sizeof(struct tr_slot),
		sizeof(tr_lock_t), offsetof(struct tr_hdr, h_wake), offsetof(struct tr_hdr, h_ring_push_op),
		offsetof(struct tr_hdr, h_arena_free), offsetof(struct tr_slot, s_state),
		offsetof(struct tr_slot, s_uuid), offsetof(struct tr_queue, q_lock),
		sizeof(struct tr_band), sizeof(struct tr_error_entry), TR_BANDS, TR_ARENA_CLASSES,
		sizeof(struct tr_proc), TR_PROCS, offsetof(struct tr_slot, s_lease), offsetof(struct tr_slot, s_owner), offsetof(struct tr_slot, s_holder),
		TR_INLINE_PAYLOAD, TR_INLINE_RESULT, sizeof(void *), 0x01020304u,
	};
	uint32_t h = 2166136261u;
	const unsigned char *p = (const unsigned char *)v;
	for (size_t i = 0; i < sizeof(v); i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

/* What to repair when a lock is taken from @dead, its holder, who died
 * (lock.c). The store lock and the log's need nothing: the store lock's
 * steps are ordered to be safe, and a dead flusher's bytes are written
 * again by the next (wal.c). */
void tr__lock_repair(struct taskring_store *st, int which, uint32_t dead)
{
	if (which >= 0) {
		if ((uint32_t)which < st->nqueues)
			tr__queue_repair(st, (uint32_t)which);
	} else if (which == TR_LOCK_UNIQUE) {
		tr__unique_rebuild(st);
	} else if (which == TR_LOCK_DEPS) {
		tr__deps_repair(st);
	} else if (which == TR_LOCK_RING_PUSH || which == TR_LOCK_RING_POP) {
		tr__ring_repair(st, which, dead);
	} else if (which == TR_LOCK_ARENA) {
		tr__arena_repair(st, dead);
	}
}

/* Turn the validated header's offsets into this process's pointers, and copy
 * the sizing it uses for every bounds check. */
static void set_pointers(struct taskring_store *st)
{
	struct tr_hdr *h = st->hdr;
	st->queues = (struct tr_queue *)(st->base + h->h_off_queues);
	st->tasks = (char(*)[64])(st->base + h->h_off_tasks);
	st->slots = (struct tr_slot *)(st->base + h->h_off_slots);
	st->ring = (_Atomic uint64_t *)(st->base + h->h_off_ring);
	st->heaps = (uint32_t *)(st->base + h->h_off_heaps);
	st->arena = st->base + h->h_off_arena;
	st->unique = (uint64_t *)(st->base + h->h_off_unique);
	st->unique_mask = h->h_unique_mask;
	st->nslots = h->h_slots;
	st->max_payload = h->h_max_payload;
	st->nqueues = h->h_queues;
	st->ntasks = h->h_tasks;
	st->ring_mask = h->h_ring_mask;
	st->arena_bytes = h->h_arena_bytes;
}

/* Build a fresh region in memory that nobody else can see yet. */
static int init_region(struct taskring_store *st, const struct taskring_store_opts *o, const struct tr_layout *l)
{
	struct tr_hdr *h = st->hdr;

	/* Every slot and ring cell is written below: fault their pages in
	 * with one call rather than one fault each (a fault costs micro-
	 * seconds on a VM). Linux 5.14+; elsewhere the faults happen anyway. */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
	madvise(st->base, l->off_heaps, MADV_POPULATE_WRITE);

	h->h_magic = TR_MAGIC;
	h->h_format = TR_FORMAT_VERSION;
	h->h_build = tr__build_signature();
	h->h_slots = o->slots;
	h->h_max_payload = o->max_payload;
	h->h_queues = o->queues;
	h->h_tasks = o->tasks;
	h->h_ring_mask = l->ring_mask;
	h->h_arena_bytes = o->arena_bytes;
	h->h_region_bytes = l->total;
	h->h_off_queues = l->off_queues;
	h->h_off_procs = l->off_procs;
	h->h_off_tasks = l->off_tasks;
	h->h_off_slots = l->off_slots;
	h->h_off_ring = l->off_ring;
	h->h_off_heaps = l->off_heaps;
	h->h_off_arena = l->off_arena;
	h->h_off_unique = l->off_unique;
	h->h_unique_mask = l->unique_mask;
	h->h_created_at = tr__now_real();
	h->h_off_logbuf = l->off_logbuf;
	h->h_logbuf_bytes = l->total - l->off_logbuf;
	if (o->log_dir) {
		/* (resolve_log_dir() made it absolute and checked its length.) */
		snprintf(h->h_log_dir, sizeof(h->h_log_dir), "%s", o->log_dir);
		h->h_durability = o->durability;
		h->h_flush_interval_ns = o->flush_interval_ns;
		h->h_segment_bytes = o->segment_bytes;
		h->h_log_manual_compact = !!(o->flags & TASKRING_STORE_MANUAL_COMPACT);
		h->h_log_seg_base = UINT64_MAX;
	}
	/* Locks are words, free at 0 (lock.c): the region is zero-filled. */
	atomic_store_explicit(&h->h_arena_bump, TR_CACHELINE, memory_order_relaxed);
	set_pointers(st);
	for (uint32_t q = 0; q < st->nqueues; q++) {
		atomic_store_explicit(&st->queues[q].q_next_due, INT64_MAX, memory_order_relaxed);
	}
	for (uint32_t i = 0; i < st->nslots; i++) {
		struct tr_slot *s = &st->slots[i];
		atomic_store_explicit(&s->s_state, TR_ST_FREE, memory_order_relaxed);
		s->s_heap_pos = TR_NIL;
		s->s_prev = s->s_next = TR_NIL;
	}
	tr__ring_init(st);
	/* Release: everything above is visible before the region is declared
	 * ready (and, for named stores, before link() publishes it). */
	atomic_store_explicit((_Atomic uint32_t *)&h->h_init, TR_INIT_READY, memory_order_release);
	return 0;
}

/* Fill defaults and check ranges. */
static int resolve_opts(const struct taskring_store_opts *in, struct taskring_store_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (in) {
		*o = *in;
		for (size_t i = 0; i < sizeof(in->reserved) / sizeof(in->reserved[0]); i++)
			if (in->reserved[i])
				return -EINVAL;
		if (in->flags & ~(TASKRING_STORE_GROUP | TASKRING_STORE_NOCREATE | TASKRING_STORE_EXCL |
				  TASKRING_STORE_NO_IOURING | TASKRING_STORE_MANUAL_COMPACT | TASKRING_STORE_PREFAULT))
			return -EINVAL;
		if ((in->flags & TASKRING_STORE_MANUAL_COMPACT) && !in->log_dir)
			return -EINVAL;
		/* Log settings only with a log; each in its range. */
		if (in->durability > TASKRING_ASYNC || in->flush_interval_ns < 0 ||
		    (in->flush_interval_ns && (in->flush_interval_ns < 1000000 || in->flush_interval_ns > 10000000000LL)) ||
		    (in->segment_bytes && (in->segment_bytes < (1u << 20) || in->segment_bytes > (4ull << 30))) ||
		    (!in->log_dir && (in->durability || in->flush_interval_ns || in->segment_bytes)) ||
		    (in->log_dir && !in->log_dir[0]))
			return -EINVAL;
		if ((in->flags & TASKRING_STORE_NOCREATE) && (in->flags & TASKRING_STORE_EXCL))
			return -EINVAL;
	}
	if (!o->slots)
		o->slots = TASKRING_DEFAULT_SLOTS;
	if (!o->max_payload)
		o->max_payload = TASKRING_DEFAULT_MAX_PAYLOAD;
	if (!o->queues)
		o->queues = TASKRING_DEFAULT_QUEUES;
	if (!o->tasks)
		o->tasks = TASKRING_DEFAULT_TASKS;
	if (!o->arena_bytes) {
		o->arena_bytes = TR_DEFAULT_ARENA;
		if (o->arena_bytes < 4ull * o->max_payload)
			o->arena_bytes = 4ull * o->max_payload;
	}
	if (o->log_dir && !o->flush_interval_ns)
		o->flush_interval_ns = 10000000;
	if (o->log_dir && !o->segment_bytes)
		o->segment_bytes = 64ull << 20;
	if (o->slots < TASKRING_MIN_SLOTS || o->slots > TASKRING_MAX_SLOTS || o->max_payload > TASKRING_MAX_MAX_PAYLOAD ||
	    o->queues > TASKRING_MAX_QUEUES || o->tasks > TASKRING_MAX_TASKS ||
	    o->arena_bytes < 4ull * o->max_payload || o->arena_bytes > (1ull << 38))
		return -EINVAL;
	return 0;
}

/* Check a mapped header against this build and the file's size. */
static int validate(const struct tr_hdr *h, uint64_t file_size, const struct taskring_store_opts *want)
{
	struct tr_layout l;

	if (h->h_magic != TR_MAGIC)
		return TASKRING_EFORMAT;
	if (h->h_format != TR_FORMAT_VERSION)
		return TASKRING_EVERSION;
	if (h->h_build != tr__build_signature())
		return TASKRING_EBUILD;
	if (atomic_load_explicit((const _Atomic uint32_t *)&h->h_init, memory_order_acquire) != TR_INIT_READY)
		return TASKRING_ECORRUPT;
	if (h->h_max_payload > TASKRING_MAX_MAX_PAYLOAD || h->h_arena_bytes < 4ull * h->h_max_payload ||
	    (h->h_logbuf_bytes && h->h_logbuf_bytes != tr__wal_ring_bytes(h->h_max_payload)) ||
	    tr__layout(h->h_slots, h->h_queues, h->h_tasks, h->h_arena_bytes, h->h_logbuf_bytes, &l) < 0)
		return TASKRING_ECORRUPT;
	if (h->h_logbuf_bytes && (memchr(h->h_log_dir, 0, sizeof(h->h_log_dir)) == NULL || h->h_log_dir[0] != '/' ||
				  h->h_durability > TASKRING_ASYNC))
		return TASKRING_ECORRUPT;
	if (l.ring_mask != h->h_ring_mask || l.total != h->h_region_bytes || l.off_queues != h->h_off_queues ||
	    l.off_tasks != h->h_off_tasks || l.off_slots != h->h_off_slots || l.off_ring != h->h_off_ring ||
	    l.off_heaps != h->h_off_heaps || l.off_arena != h->h_off_arena || l.off_unique != h->h_off_unique ||
	    l.unique_mask != h->h_unique_mask || l.off_logbuf != h->h_off_logbuf || l.off_procs != h->h_off_procs)
		return TASKRING_ECORRUPT;
	if (file_size != h->h_region_bytes)
		return TASKRING_ECORRUPT;
	if (want && ((want->slots && want->slots != h->h_slots) ||
		     (want->max_payload && want->max_payload != h->h_max_payload) ||
		     (want->queues && want->queues != h->h_queues) ||
		     (want->tasks && want->tasks != h->h_tasks) ||
		     (want->arena_bytes && want->arena_bytes != h->h_arena_bytes)))
		return TASKRING_ESIZING;
	return 0;
}

static struct taskring_store *new_handle(void)
{
	static _Atomic uint64_t next_id = 1;
	struct taskring_store *st = calloc(1, sizeof(*st));
	if (st) {
		st->id = atomic_fetch_add(&next_id, 1);
		st->fd = -1;
		atomic_store(&st->spin_ns, TR_DEFAULT_SPIN_NS);
	}
	return st;
}

/* Attach to an existing store file. Consumes nothing on failure. */
static int attach(int fd, const struct taskring_store_opts *want, struct taskring_store **out)
{
	struct stat sb;
	struct tr_hdr hdr;

	if (fstat(fd, &sb) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid())
		return TASKRING_EOWNER;
	/* Read the header with pread first: a short or foreign file is judged
	 * without mapping it. */
	memset(&hdr, 0, sizeof(hdr));
	ssize_t n = pread(fd, &hdr, sizeof(hdr), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n < sizeof(hdr.h_magic) || hdr.h_magic != TR_MAGIC)
		return TASKRING_EFORMAT;
	if ((size_t)n < sizeof(hdr))
		return TASKRING_ECORRUPT;
	int rc = validate(&hdr, (uint64_t)sb.st_size, want);
	if (rc)
		return rc;
	void *base = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	struct taskring_store *st = new_handle();
	if (!st) {
		munmap(base, (size_t)sb.st_size);
		return -ENOMEM;
	}
	st->base = base;
	st->size = (size_t)sb.st_size;
	st->hdr = base;
	/* Validate the mapped copy again: the header could have changed
	 * between pread and mmap (it cannot legitimately, but a scribbler
	 * could), and from here on only the mapped values are used. */
	rc = validate(st->hdr, st->size, want);
	if (rc) {
		munmap(base, st->size);
		free(st);
		return rc;
	}
	set_pointers(st);
	/* The log: the store's own; a caller who names one must name it. */
	if ((want && want->log_dir && (!st->hdr->h_logbuf_bytes || strcmp(want->log_dir, st->hdr->h_log_dir))) ||
	    (st->hdr->h_logbuf_bytes &&
	     (rc = tr__wal_attach(st, NULL, want && (want->flags & TASKRING_STORE_NO_IOURING), 0)) != 0)) {
		munmap(base, st->size);
		free(st);
		return rc ? rc : TASKRING_ELOG;
	}
	if ((rc = tr__proc_attach(st, fd, 0)) != 0) {
		tr__wal_detach(st);
		munmap(base, st->size);
		free(st);
		return rc;
	}
	st->fd = fd;
	*out = st;
	return 0;
}

/*
 * Split a store name into the file path to open and the directory in which
 * to build it. "/name" -> "/dev/shm/name".
 */
static int resolve_path(const char *name, char *path, size_t cap, char *dir, size_t dcap)
{
	size_t len = strlen(name);
	int n;

	if (!len)
		return -EINVAL;
	if (name[0] == '/' && !strchr(name + 1, '/')) {
		if (len == 1 || len > NAME_MAX)
			return len == 1 ? -EINVAL : -ENAMETOOLONG;
		n = snprintf(path, cap, "/dev/shm%s", name);
	} else {
		n = snprintf(path, cap, "%s", name);
	}
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	if (name[len - 1] == '/')
		return -EINVAL;
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	n = snprintf(dir, dcap, "%s", dirname(tmp));
	if (n < 0 || (size_t)n >= dcap)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * A new region with a log: attach this process to the log and recover what
 * it holds into the region, before anyone else can see the region.
 */
static int log_start(struct taskring_store *st, const struct taskring_store_opts *o)
{
	if (!o->log_dir)
		return 0;
	st->hdr->h_log_id = tr__rand64() | 1;
	int rc = tr__wal_attach(st, NULL, !!(o->flags & TASKRING_STORE_NO_IOURING), 1);
	if (!rc)
		rc = tr__wal_recover(st, NULL, 0);
	if (!rc)
		rc = tr__wal_claimed(st);
	return rc;
}

/*
 * A store made from a log that already has records takes the sizing the log
 * was written with, for every field the caller left 0; a field the caller
 * set must agree (TASKRING_ESIZING). Needed when it is created, harmless
 * when it already exists (then its own sizing is checked as usual).
 */
static int sizing_from_log(const struct taskring_store_opts *in, struct taskring_store_opts *o)
{
	struct tr_logrec r;
	int rc = tr__log_last_store(&tr__log_sysio, o->log_dir, &r);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	uint64_t want[5] = {in ? in->slots : 0, in ? in->max_payload : 0, in ? in->queues : 0, in ? in->tasks : 0,
			    in ? in->arena_bytes : 0};
	for (int i = 0; i < 5; i++)
		if (want[i] && want[i] != (uint64_t)r.v[i])
			return TASKRING_ESIZING;
	if (r.v[0] < TASKRING_MIN_SLOTS || r.v[0] > TASKRING_MAX_SLOTS || r.v[1] < 0 ||
	    r.v[1] > TASKRING_MAX_MAX_PAYLOAD || r.v[2] < 1 || r.v[2] > TASKRING_MAX_QUEUES || r.v[3] < 1 ||
	    r.v[3] > TASKRING_MAX_TASKS || r.v[4] < 4 * r.v[1] || r.v[4] > (1ll << 38))
		return TASKRING_ELOGCORRUPT;
	o->slots = (uint32_t)r.v[0];
	o->max_payload = (uint32_t)r.v[1];
	o->queues = (uint32_t)r.v[2];
	o->tasks = (uint32_t)r.v[3];
	o->arena_bytes = (uint64_t)r.v[4];
	return 0;
}

/* Make @o->log_dir (one level, mode 0700, if missing) and absolute, in @buf. */
static int resolve_log_dir(struct taskring_store_opts *o, char *buf, size_t cap)
{
	char real[PATH_MAX];
	struct stat sb;
	if (!o->log_dir)
		return 0;
	int group = !!(o->flags & TASKRING_STORE_GROUP);
	if (mkdir(o->log_dir, group ? 0770 : 0700) < 0 && errno != EEXIST)
		return -errno;
	if (!realpath(o->log_dir, real))
		return -errno;
	if (stat(real, &sb) < 0)
		return -errno;
	if (!S_ISDIR(sb.st_mode))
		return -ENOTDIR;
	/* Ours, and nobody else can plant files in it (a segment, a
	 * checkpoint, a spare): not writable by others, nor by the group
	 * unless the store is the group's. */
	if (sb.st_uid != geteuid() || (sb.st_mode & S_IWOTH) || ((sb.st_mode & S_IWGRP) && !group))
		return TASKRING_EOWNER;
	if (strlen(real) >= cap)
		return -ENAMETOOLONG;
	snprintf(buf, cap, "%s", real);
	o->log_dir = buf;
	return 0;
}

/* Create the region in an unnamed file of @dir and try to link it as @path.
 * Returns 0 with *out set, -EEXIST when someone else's store won the race, or
 * another error. */
static int create_and_link(const char *path, const char *dir, const struct taskring_store_opts *o, int replace,
			   struct taskring_store **out)
{
	struct tr_layout l;
	mode_t mode = (o->flags & TASKRING_STORE_GROUP) ? 0660 : 0600;
	char tmpname[PATH_MAX + 64] = "";
	int fd, rc;

	rc = tr__layout(o->slots, o->queues, o->tasks, o->arena_bytes, o->log_dir ? tr__wal_ring_bytes(o->max_payload) : 0,
			&l);
	if (rc)
		return rc;
	/* O_TMPFILE leaves nothing behind if we die while building; linking it
	 * goes through /proc, so without /proc use a hidden temporary name. */
	fd = access("/proc/self/fd", X_OK) == 0 ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode) : -1;
	if (fd < 0) {
		snprintf(tmpname, sizeof(tmpname), "%s/.taskring-%d-%llx.tmp", dir, (int)getpid(),
			 (unsigned long long)tr__rand64());
		fd = open(tmpname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0)
			return -errno;
	}
	if (fchmod(fd, mode) < 0 || ftruncate(fd, (off_t)l.total) < 0) {
		rc = -errno;
		goto fail_fd;
	}
	void *base = mmap(NULL, l.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		goto fail_fd;
	}
	struct taskring_store *st = new_handle();
	if (!st) {
		rc = -ENOMEM;
		goto fail_map;
	}
	st->base = base;
	st->size = l.total;
	st->hdr = base;
	rc = init_region(st, o, &l);
	if (!rc)
		rc = log_start(st, o);
	if (rc)
		goto fail_st;
	if (replace) {
		/* @path holds an unusable region: the new one takes its
		 * place in one rename. */
		if (!tmpname[0]) {
			char proc[64];
			snprintf(tmpname, sizeof(tmpname), "%s/.taskring-%d-%llx.tmp", dir, (int)getpid(),
				 (unsigned long long)tr__rand64());
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
			rc = linkat(AT_FDCWD, proc, AT_FDCWD, tmpname, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
		}
		if (!rc)
			rc = rename(tmpname, path) < 0 ? -errno : 0;
		if (rc)
			unlink(tmpname);
	} else if (tmpname[0]) {
		rc = link(tmpname, path) < 0 ? -errno : 0;
		unlink(tmpname);
	} else {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		rc = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
	}
	if (rc)
		goto fail_st;
	if ((rc = tr__proc_attach(st, fd, 0)) != 0)
		goto fail_st;
	st->fd = fd;
	*out = st;
	return 0;
fail_st:
	tr__wal_detach(st);
	free(st);
fail_map:
	munmap(base, l.total);
fail_fd:
	if (tmpname[0])
		unlink(tmpname);
	close(fd);
	return rc;
}

/* An anonymous store: MAP_SHARED so that fork()ed children share it, and
 * MAP_NORESERVE because most of the arena is never touched. */
static int open_anonymous(const struct taskring_store_opts *o, struct taskring_store **out)
{
	struct tr_layout l;
	int rc = tr__layout(o->slots, o->queues, o->tasks, o->arena_bytes,
			    o->log_dir ? tr__wal_ring_bytes(o->max_payload) : 0, &l);
	if (rc)
		return rc;
	void *base = mmap(NULL, l.total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return -errno;
	struct taskring_store *st = new_handle();
	if (!st) {
		munmap(base, l.total);
		return -ENOMEM;
	}
	st->base = base;
	st->size = l.total;
	st->hdr = base;
	rc = init_region(st, o, &l);
	if (!rc)
		rc = log_start(st, o);
	if (!rc) {
		/* The process table's locks need a file: a memfd, which
		 * fork()ed children inherit with the mapping. */
		int mfd = memfd_create("taskring-procs", MFD_CLOEXEC);
		rc = mfd < 0 ? -errno : tr__proc_attach(st, mfd, 1);
	}
	if (rc) {
		tr__wal_detach(st);
		munmap(base, l.total);
		free(st);
		return rc;
	}
	*out = st;
	return 0;
}

/*
 * Open-or-create as a loop: open the name; if it is absent, build a region
 * and link it; if someone linked theirs first (EEXIST), open theirs. The
 * loop is bounded because a store can also be unlinked between our steps.
 */
static int open_store(const char *name, const struct taskring_store_opts *opts, struct taskring_store **storep)
{
	struct taskring_store_opts o;
	char path[PATH_MAX], dir[PATH_MAX];
	int rc;

	rc = resolve_opts(opts, &o);
	if (rc)
		return rc;
	char logdir[sizeof(((struct tr_hdr *)0)->h_log_dir)];
	rc = resolve_log_dir(&o, logdir, sizeof(logdir));
	if (rc)
		return rc;
	if (o.log_dir && (rc = sizing_from_log(opts, &o)) != 0)
		return rc;
	if (!name)
		return open_anonymous(&o, storep);
	rc = resolve_path(name, path, sizeof(path), dir, sizeof(dir));
	if (rc)
		return rc;
	/* A few rounds: a store may be created or unlinked by others between
	 * our open and our link. */
	for (int round = 0; round < 8; round++) {
		int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			if (o.flags & TASKRING_STORE_EXCL) {
				close(fd);
				return -EEXIST;
			}
			/* The caller's sizing as given (0 = whatever it has),
			 * with the log directory made absolute. */
			struct taskring_store_opts want;
			memset(&want, 0, sizeof(want));
			if (opts)
				want = *opts;
			want.log_dir = o.log_dir;
			rc = attach(fd, &want, storep);
			if (rc)
				close(fd);
			/* A region this build cannot use, but a log that knows
			 * the store: rebuild it from the log, in its place. */
			if (o.log_dir && (rc == TASKRING_EFORMAT || rc == TASKRING_EVERSION || rc == TASKRING_EBUILD ||
					  rc == TASKRING_ECORRUPT))
				rc = create_and_link(path, dir, &o, 1, storep);
			return rc;
		}
		if (errno != ENOENT)
			return -errno;
		if (o.flags & TASKRING_STORE_NOCREATE)
			return -ENOENT;
		rc = create_and_link(path, dir, &o, 0, storep);
		if (rc != -EEXIST)
			return rc;
		if (o.flags & TASKRING_STORE_EXCL)
			return -EEXIST;
	}
	return -EAGAIN;
}

/*
 * TASKRING_STORE_PREFAULT: every page of the region in this process's page
 * tables now, with one call, rather than a fault on each page's first touch
 * (microseconds each on a VM; a worker process's first pass over a big
 * arena takes one per payload). It also allocates the region's memory, so
 * a /dev/shm without room for it fails here (-ENOMEM) rather than with a
 * SIGBUS later. A kernel without MADV_POPULATE_WRITE (before 5.14): the
 * faults happen as before.
 */
static int prefault(struct taskring_store *st)
{
	if (madvise(st->base, st->size, MADV_POPULATE_WRITE) == 0 || errno == EINVAL)
		return 0;
	return errno == EINTR || errno == EAGAIN ? -EAGAIN : -ENOMEM;
}

int taskring_store_open(const char *name, const struct taskring_store_opts *opts, struct taskring_store **storep)
{
	int rc;

	if (!storep)
		return -EINVAL;
	rc = open_store(name, opts, storep);
	if (rc == 0 && opts && (opts->flags & TASKRING_STORE_PREFAULT) && (rc = prefault(*storep)) != 0) {
		taskring_store_close(*storep);
		*storep = NULL;
	}
	return rc;
}

int taskring_store_close(struct taskring_store *st)
{
	if (!st)
		return -EINVAL;
	if (atomic_load(&st->nworkers) > 0)
		return -EBUSY;
	tr__wal_detach(st);
	tr__proc_detach(st);
	munmap(st->base, st->size);
	if (st->fd >= 0)
		close(st->fd);
	free(st);
	return 0;
}

/* Ownership is checked with lstat(): the name itself, never a link's target,
 * and never another user's file. */
int taskring_store_unlink(const char *name)
{
	char path[PATH_MAX], dir[PATH_MAX];
	struct stat sb;
	int rc;

	if (!name)
		return -EINVAL;
	rc = resolve_path(name, path, sizeof(path), dir, sizeof(dir));
	if (rc)
		return rc;
	if (lstat(path, &sb) < 0)
		return -errno;
	if (sb.st_uid != geteuid())
		return TASKRING_EOWNER;
	return unlink(path) < 0 ? -errno : 0;
}

int taskring_store_info(struct taskring_store *st, struct taskring_store_info *out)
{
	if (!st || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->slots = st->nslots;
	out->max_payload = st->max_payload;
	out->queues = st->nqueues;
	out->tasks = st->ntasks;
	out->arena_bytes = st->arena_bytes;
	out->region_bytes = st->size;
	out->format_version = TR_FORMAT_VERSION;
	out->build_signature = tr__build_signature();
	uint32_t qu = atomic_load_explicit(&st->hdr->h_queues_used, memory_order_relaxed);
	uint32_t tu = atomic_load_explicit(&st->hdr->h_tasks_used, memory_order_relaxed);
	out->queues_used = qu < st->nqueues ? qu : st->nqueues;
	out->tasks_used = tu < st->ntasks ? tu : st->ntasks;
	uint64_t bump = atomic_load_explicit(&st->hdr->h_arena_bump, memory_order_relaxed);
	out->arena_used = bump > st->arena_bytes ? st->arena_bytes : bump;
	return 0;
}

int taskring_store_set_spin(struct taskring_store *st, int64_t spin_ns)
{
	if (!st || spin_ns < 0 || spin_ns > 10000000)
		return -EINVAL;
	atomic_store(&st->spin_ns, spin_ns);
	return 0;
}
