/*
 * log.h - the append-only log's internal interfaces: records, segments, the
 * I/O seam and the scanner. The format is specified in log.c.
 */
#ifndef TASKRING_LOG_H
#define TASKRING_LOG_H

#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

/* Record types. The numbers are part of the format. */
enum tr_logrec_type {
	TR_LOG_ENQUEUE = 1,    /* a new job, with everything it was given */
	TR_LOG_START = 2,      /* an attempt started */
	TR_LOG_COMPLETE = 3,   /* ended complete, with its result */
	TR_LOG_RETRY = 4,      /* an attempt failed; due again at scheduled_at */
	TR_LOG_FAILED = 5,     /* ended failed (permanent) */
	TR_LOG_DEAD = 6,       /* ended dead (retries exhausted) */
	TR_LOG_CANCEL = 7,     /* ended cancelled */
	TR_LOG_REMOVE = 8,     /* removed (purged, reclaimed, result_ttl) */
	TR_LOG_RESCHEDULE = 9, /* priority or due time changed while pending */
	TR_LOG_CKPT_BEGIN = 10,
	TR_LOG_CKPT_END = 11,
	TR_LOG_JOB = 12,       /* a live job, whole, inside a checkpoint */
	TR_LOG_STORE = 13,     /* the store's sizing: first in each segment */
	TR_LOG_TYPES = 14
};

#define TR_LOG_SCALARS 15
#define TR_LOG_BLOBS 9
#define TR_LOG_REC_MIN 40u          /* header + uuid + checksum */
#define TR_LOG_REC_MAX (256u << 20) /* no record is larger */
#define TR_LOG_SEG_HDR 64u

/* A decoded record. Blobs point into the buffer it was decoded from. */
struct tr_logrec {
	uint16_t type;
	uint64_t seq; /* its position in the log stream */
	uint8_t uuid[16];
	int64_t v[TR_LOG_SCALARS];
	const void *blob[TR_LOG_BLOBS];
	uint32_t blen[TR_LOG_BLOBS];
};

/* What a record type holds: counts and names, for the codec and the dumper. */
struct tr_logrec_spec {
	const char *name;
	uint8_t nscalars, nblobs;
	const char *scalar[TR_LOG_SCALARS];
	const char *blob[TR_LOG_BLOBS];
};
TR_INTERNAL const struct tr_logrec_spec *tr__logrec_spec(unsigned type);

TR_INTERNAL size_t tr__logrec_size(const struct tr_logrec *r);
TR_INTERNAL size_t tr__logrec_encode(const struct tr_logrec *r, uint8_t *buf, size_t cap, uint64_t salt);
TR_INTERNAL void tr__logrec_seal(uint8_t *rec, uint64_t salt);
/* tr__logrec_decode() results besides 0 (a record): */
#define TR_LOG_DEC_END 1 /* zeros: no record here (the end of the data) */
TR_INTERNAL int tr__logrec_decode(const uint8_t *buf, size_t avail, uint64_t salt, uint64_t expect_seq,
				  struct tr_logrec *out, uint32_t *lenp);

/*
 * The I/O seam: every file operation of the log goes through one of these,
 * so a test can record, drop, tear or fail any of them. Each returns what
 * the system call would, with -errno instead of -1 and errno.
 */
struct tr_log_io {
	void *ctx;
	int (*open)(void *ctx, int dirfd, const char *name, int flags, mode_t mode);
	int (*close)(void *ctx, int fd);
	ssize_t (*pread)(void *ctx, int fd, void *buf, size_t n, off_t off);
	ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, off_t off);
	int (*fdatasync)(void *ctx, int fd);
	int (*fsync)(void *ctx, int fd); /* also for directories */
	int (*fallocate)(void *ctx, int fd, off_t off, off_t len);
	int (*renameat)(void *ctx, int dirfd, const char *from, const char *to);
	int (*unlinkat)(void *ctx, int dirfd, const char *name);
	int (*fstat_size)(void *ctx, int fd, off_t *sizep);
	/* Where the file's written data ends (past it, up to @size, it reads
	 * as zeros: preallocated, never written); @size if unknown. */
	off_t (*data_end)(void *ctx, int fd, off_t size);
};
TR_INTERNAL extern const struct tr_log_io tr__log_sysio;
TR_INTERNAL int tr__log_write_all(const struct tr_log_io *io, int fd, const void *buf, size_t n, off_t off);

/* Segment files: "<16 hex digits of the base sequence>.tlog"; checkpoints:
 * "<16 hex digits of the position they cover up to>.tckpt". */
#define TR_LOG_SEG_SUFFIX ".tlog"
#define TR_LOG_CKPT_SUFFIX ".tckpt"
TR_INTERNAL void tr__log_seg_name(uint64_t base, char out[32]);
TR_INTERNAL int tr__log_seg_create(const struct tr_log_io *io, int dirfd, uint64_t base, uint64_t segno,
				   uint64_t prealloc, int *fdp, uint64_t *saltp);
TR_INTERNAL int tr__log_seg_create_from(const struct tr_log_io *io, int dirfd, uint64_t base, uint64_t segno,
					uint64_t prealloc, const char *spare, int *fdp, uint64_t *saltp);

/* What a scan found. */
struct tr_log_scan {
	/* IN: called for each valid record, in order (may be NULL); a
	 * non-zero return stops the scan and is returned by it. */
	int (*record)(void *arg, const struct tr_logrec *r, const char *seg, uint64_t off);
	void *arg;
	int repair; /* zero the torn tail of the last segment on disk */
	uint64_t until; /* scan only segments that begin before this (0: all) */
	/* OUT */
	uint32_t segments;
	uint64_t records;
	uint64_t first_seq, end_seq; /* the stream covered: [first_seq, end_seq) */
	uint64_t last_segno, last_base; /* the last segment's */
	int torn;                    /* the last segment had a torn tail */
	char torn_seg[32];
	uint64_t torn_off, torn_bytes; /* where it began, how many bytes it had */
	char ckpt[32];               /* the checkpoint it began with, or "" */
	uint64_t ckpt_pos, ckpt_jobs, ckpt_bytes;
	uint32_t stale;              /* segments before the checkpoint (ignored) */
	char error[256];             /* why the scan failed */
};
TR_INTERNAL int tr__log_scan(const struct tr_log_io *io, const char *dir, struct tr_log_scan *s);
TR_INTERNAL int tr__log_last_store(const struct tr_log_io *io, const char *dir, struct tr_logrec *out);

/* Writing a checkpoint (log.c): begin, add a job record at a time, commit
 * (or abort: nothing is left behind). */
struct tr_ckpt_writer {
	const struct tr_log_io *io;
	int dirfd, fd;
	uint64_t pos, salt;
	uint64_t off;  /* file offset where the buffered bytes go */
	uint64_t jobs;
	uint8_t *buf;
	size_t n, cap;
	char name[32], tmp[48];
};
TR_INTERNAL void tr__log_ckpt_name(uint64_t pos, char out[32]);
TR_INTERNAL int tr__ckpt_begin(struct tr_ckpt_writer *c, const struct tr_log_io *io, int dirfd, uint64_t pos,
			       struct tr_logrec *store);
TR_INTERNAL int tr__ckpt_add(struct tr_ckpt_writer *c, struct tr_logrec *r);
TR_INTERNAL int tr__ckpt_commit(struct tr_ckpt_writer *c);
TR_INTERNAL void tr__ckpt_abort(struct tr_ckpt_writer *c);
TR_INTERNAL int tr__log_bounds(int dirfd, uint64_t *lastp, uint64_t *ckptp);
TR_INTERNAL int tr__log_prune(const struct tr_log_io *io, int dirfd, uint64_t pos);


/*
 * A writer of one log, used by one thread at a time (the flusher): it
 * appends encoded records at the end of the stream, sealing each with its
 * segment's salt, and starts a new segment when the current one has reached
 * its size. Opening scans the log (zeroing a torn tail) and always starts a
 * new segment, so nothing is ever appended after a torn tail.
 */
struct tr_log_writer {
	const struct tr_log_io *io;
	int dirfd, fd;
	uint64_t seg_bytes; /* a segment is closed once it holds this much */
	uint64_t base;      /* the current segment's first sequence number */
	uint64_t salt, segno;
	uint64_t end;       /* the stream's end: the next record's seq */
	uint64_t synced;    /* everything before this is on stable storage */
	int failed;         /* a write or sync failed: refuses more (-EIO) */
	int started;        /* a segment exists (the next one gets segno + 1) */
};
TR_INTERNAL int tr__logw_open(struct tr_log_writer *w, const struct tr_log_io *io, const char *dir,
			      uint64_t seg_bytes, struct tr_log_scan *scan);
TR_INTERNAL int tr__logw_write(struct tr_log_writer *w, uint8_t *recs, size_t n);
TR_INTERNAL int tr__logw_sync(struct tr_log_writer *w);
TR_INTERNAL void tr__logw_close(struct tr_log_writer *w);

#endif
