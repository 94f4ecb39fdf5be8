/*
 * log.c - the append-only log's format: records, segment files, the I/O seam
 * and the scanner that recovery and `taskring log verify|dump` use.
 *
 * THE LOG (format version TR_LOG_FORMAT)
 *
 * A log is a directory of segment files. The log is one stream of bytes;
 * a record's sequence number is its position in that stream (bytes since
 * the log began), so sequence numbers grow with every record, and a record
 * copied to any other place never validates there. Each segment holds a
 * contiguous piece of the stream, named by where it begins:
 * "<16 lower-case hex digits of its base>.tlog".
 *
 * Segment file, all integers little-endian:
 *
 *   offset size
 *   0      8    magic "TRLOGSG1"
 *   8      4    format version (1)
 *   12     4    header length (64)
 *   16     8    base: the sequence number of its first record
 *   24     8    salt: random, chosen when the segment is made
 *   32     8    segno: 0 for the first segment of the log, then +1 each
 *   40     8    created_at, CLOCK_REALTIME ns
 *   48     8    reserved, 0
 *   56     8    XXH3-64 of bytes 0..55, seed TR_LOG_HDR_SEED
 *   64     ...  records, back to back; a record at file offset o has
 *               sequence number base + (o - 64). After the last record the
 *               file is zero (segments are preallocated).
 *
 * Record:
 *
 *   offset size
 *   0      4    len: bytes of the whole record, this field to the checksum
 *   4      2    type (enum tr_logrec_type)
 *   6      2    body version (1)
 *   8      8    seq: the record's sequence number
 *   16     16   the job's uuid (zero in checkpoint markers)
 *   32     8*S  S signed 64-bit scalars, S fixed per type (specs[] below)
 *   ...         B blobs, B fixed per type: each a u32 length and its bytes
 *   len-8  8    XXH3-64 of bytes 0..len-9, seeded with the segment's salt
 *
 * A record is valid when len is in range and matches exactly what its type's
 * scalars and blobs take, the type and body version are known, seq is its
 * position, and the checksum matches under its segment's salt. The salt
 * makes bytes left over from another segment (a recycled file, an earlier
 * log) fail the check. A zero length word is the end of the data.
 *
 * Crash consistency. A segment is made under a temporary name, preallocated,
 * its header written and synced, then renamed into place and the directory
 * synced; so a segment with its final name always has a sound header.
 * Records are only ever appended, and a flush syncs the file before anything
 * it covered is acknowledged. So after a power loss, every acknowledged
 * record lies in a valid prefix of the stream, and what follows the last
 * valid record of the last segment is a torn tail of unacknowledged writes.
 * The scanner accepts bytes after a segment's valid prefix only in the last
 * segment, or where the next segment begins exactly at that prefix's end
 * (recovery starts a new segment after a torn tail); anything else is
 * corruption in the middle of the log, reported with the file and offset.
 * Repair (on recovery) zeroes the torn tail, so no stale record after it can
 * ever line up again with new data.
 *
 * CHECKPOINTS
 *
 * A checkpoint holds, whole, every job that the records of the stream
 * before position pos leave in the store, so that the segments before pos
 * can be deleted: compaction (ckpt.c) folds the previous checkpoint and the
 * closed segments after it into a new one. pos is always the base of a
 * segment. File "<16 hex digits of pos>.tckpt":
 *
 *   offset size
 *   0      8    magic "TRCKPT01"
 *   8      4    format version (1)
 *   12     4    header length (64)
 *   16     8    pos
 *   24     8    salt: random, chosen when the checkpoint is made
 *   32     16   reserved, 0
 *   48     8    created_at, CLOCK_REALTIME ns
 *   56     8    XXH3-64 of bytes 0..55, seed TR_LOG_HDR_SEED
 *   64     ...  records, in the record format above, sealed with this
 *               file's salt; their seq is their offset - 64 (the file is
 *               a stream of its own): one "checkpoint_begin" {pos}, one
 *               "store" (the sizing), a "job" for each job, dependencies
 *               before their dependents, and one "checkpoint_end" {pos,
 *               jobs}, which ends the file.
 *
 * A job record's "errors" blob is its error history, oldest first, each
 * entry: u64 failed_at, u32 attempt, u32 length, then that many bytes.
 *
 * A checkpoint is written under a temporary name (".tmp-" and its name),
 * synced, renamed into place and the directory synced, so one with its
 * final name is whole: any flaw in it is corruption, reported with its file
 * and offset. The log is then the newest checkpoint and the segments from
 * its pos on; segments wholly before it (a compaction that died before it
 * deleted them) are ignored, and so are older checkpoints.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#include "log.h"

#define TR_LOG_FORMAT 1u
#define TR_LOG_BODY_VERSION 1u
#define TR_LOG_SEG_MAGIC "TRLOGSG1"
#define TR_LOG_CKPT_MAGIC "TRCKPT01"
#define TR_LOG_HDR_SEED 0x74726c6f67686472ull /* "trloghdr" */

/* ---- little-endian fields ---------------------------------------------------- */

/* Little-endian fields at any alignment: one move each on a little-endian
 * host (memcpy of a fixed size compiles to a plain load or store). */
static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return le16toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

/* ---- record types ---------------------------------------------------------------- */

#define ENQ_SCALARS "priority", "max_retries", "created_at", "scheduled_at", "timeout_ns", "result_ttl_ns", \
	"backoff_base_ns", "backoff_cap_ns", "expires_at"
#define ENQ_BLOBS "queue", "task", "payload", "metadata", "unique_key", "retry_delays", "depends_on"

static const struct tr_logrec_spec specs[TR_LOG_TYPES] = {
	[TR_LOG_ENQUEUE] = {"enqueue", 9, 7, {ENQ_SCALARS}, {ENQ_BLOBS}},
	[TR_LOG_START] = {"start", 3, 0, {"attempt", "owner_pid", "started_at"}, {0}},
	[TR_LOG_COMPLETE] = {"complete", 2, 1, {"attempt", "completed_at"}, {"result"}},
	[TR_LOG_RETRY] = {"retry", 3, 1, {"attempt", "failed_at", "scheduled_at"}, {"error"}},
	[TR_LOG_FAILED] = {"failed", 2, 1, {"attempt", "failed_at"}, {"error"}},
	[TR_LOG_DEAD] = {"dead", 2, 1, {"attempt", "failed_at"}, {"error"}},
	[TR_LOG_CANCEL] = {"cancel", 2, 1, {"attempt", "completed_at"}, {"error"}},
	[TR_LOG_REMOVE] = {"remove", 0, 0, {0}, {0}},
	[TR_LOG_RESCHEDULE] = {"reschedule", 2, 0, {"priority", "scheduled_at"}, {0}},
	[TR_LOG_CKPT_BEGIN] = {"checkpoint_begin", 1, 0, {"pos"}, {0}},
	[TR_LOG_CKPT_END] = {"checkpoint_end", 2, 0, {"pos", "jobs"}, {0}},
	[TR_LOG_JOB] = {"job", 15, 9,
			{ENQ_SCALARS, "status", "attempt", "retry_count", "started_at", "completed_at", "owner_pid"},
			{ENQ_BLOBS, "result", "errors"}},
	[TR_LOG_STORE] = {"store", 7, 0,
			  {"slots", "max_payload", "queues", "tasks", "arena_bytes", "durability", "segment_bytes"},
			  {0}},
};

const struct tr_logrec_spec *tr__logrec_spec(unsigned type)
{
	return type > 0 && type < TR_LOG_TYPES ? &specs[type] : NULL;
}

/* ---- records ----------------------------------------------------------------------- */

/* Bytes the record takes encoded, or 0 if it is not a valid record. */
size_t tr__logrec_size(const struct tr_logrec *r)
{
	const struct tr_logrec_spec *sp = tr__logrec_spec(r->type);
	if (!sp)
		return 0;
	uint64_t n = 32 + 8u * sp->nscalars + 8;
	for (unsigned i = 0; i < sp->nblobs; i++) {
		if (r->blen[i] && !r->blob[i])
			return 0;
		n += 4 + (uint64_t)r->blen[i];
	}
	return n <= TR_LOG_REC_MAX ? (size_t)n : 0;
}

/* Put the checksum of the encoded record @rec in place. */
void tr__logrec_seal(uint8_t *rec, uint64_t salt)
{
	uint32_t len = get32(rec);
	put64(rec + len - 8, XXH3_64bits_withSeed(rec, len - 8, salt));
}

/*
 * Encode @r (with its seq) into @buf and seal it with @salt. Returns the
 * length, or 0 when @r is not valid or @cap is too small (nothing written).
 */
size_t tr__logrec_encode(const struct tr_logrec *r, uint8_t *buf, size_t cap, uint64_t salt)
{
	size_t n = tr__logrec_size(r);
	if (!n || n > cap)
		return 0;
	const struct tr_logrec_spec *sp = tr__logrec_spec(r->type);
	put32(buf, (uint32_t)n);
	put16(buf + 4, r->type);
	put16(buf + 6, TR_LOG_BODY_VERSION);
	put64(buf + 8, r->seq);
	memcpy(buf + 16, r->uuid, 16);
	uint8_t *p = buf + 32;
	for (unsigned i = 0; i < sp->nscalars; i++, p += 8)
		put64(p, (uint64_t)r->v[i]);
	for (unsigned i = 0; i < sp->nblobs; i++) {
		put32(p, r->blen[i]);
		if (r->blen[i])
			memcpy(p + 4, r->blob[i], r->blen[i]);
		p += 4 + r->blen[i];
	}
	tr__logrec_seal(buf, salt);
	return n;
}

/*
 * Decode the record at @buf (with @avail bytes after it in the segment),
 * which must be at stream position @expect_seq. Returns 0 with *@out and
 * *@lenp filled, TR_LOG_DEC_END when there is no record here (a zero length
 * word, or fewer than 4 bytes left, all zero), or -EBADMSG.
 */
int tr__logrec_decode(const uint8_t *buf, size_t avail, uint64_t salt, uint64_t expect_seq, struct tr_logrec *out,
		      uint32_t *lenp)
{
	if (avail < 4) {
		for (size_t i = 0; i < avail; i++)
			if (buf[i])
				return -EBADMSG;
		return TR_LOG_DEC_END;
	}
	uint32_t len = get32(buf);
	if (len == 0)
		return TR_LOG_DEC_END;
	if (len < TR_LOG_REC_MIN || len > TR_LOG_REC_MAX || len > avail)
		return -EBADMSG;
	const struct tr_logrec_spec *sp = tr__logrec_spec(get16(buf + 4));
	if (!sp || get16(buf + 6) != TR_LOG_BODY_VERSION || get64(buf + 8) != expect_seq)
		return -EBADMSG;
	if (get64(buf + len - 8) != XXH3_64bits_withSeed(buf, len - 8, salt))
		return -EBADMSG;
	/* The checksum holds; the layout must still add up exactly. */
	struct tr_logrec r;
	memset(&r, 0, sizeof(r));
	r.type = get16(buf + 4);
	r.seq = expect_seq;
	memcpy(r.uuid, buf + 16, 16);
	const uint8_t *p = buf + 32, *end = buf + len - 8;
	if ((size_t)(end - p) < 8u * sp->nscalars)
		return -EBADMSG;
	for (unsigned i = 0; i < sp->nscalars; i++, p += 8)
		r.v[i] = (int64_t)get64(p);
	for (unsigned i = 0; i < sp->nblobs; i++) {
		if (end - p < 4)
			return -EBADMSG;
		r.blen[i] = get32(p);
		p += 4;
		if ((size_t)(end - p) < r.blen[i])
			return -EBADMSG;
		r.blob[i] = p;
		p += r.blen[i];
	}
	if (p != end)
		return -EBADMSG;
	*out = r;
	*lenp = len;
	return 0;
}

/* ---- the I/O seam: the system's calls ------------------------------------------------------- */

static int sys_open(void *ctx, int dirfd, const char *name, int flags, mode_t mode)
{
	(void)ctx;
	int fd = openat(dirfd, name, flags | O_CLOEXEC, mode);
	return fd < 0 ? -errno : fd;
}

static int sys_close(void *ctx, int fd)
{
	(void)ctx;
	return close(fd) ? -errno : 0;
}

static ssize_t sys_pread(void *ctx, int fd, void *buf, size_t n, off_t off)
{
	(void)ctx;
	ssize_t r = pread(fd, buf, n, off);
	return r < 0 ? -errno : r;
}

static ssize_t sys_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	(void)ctx;
	ssize_t r = pwrite(fd, buf, n, off);
	return r < 0 ? -errno : r;
}

static int sys_fdatasync(void *ctx, int fd)
{
	(void)ctx;
	return fdatasync(fd) ? -errno : 0;
}

static int sys_fsync(void *ctx, int fd)
{
	(void)ctx;
	return fsync(fd) ? -errno : 0;
}

static int sys_fallocate(void *ctx, int fd, off_t off, off_t len)
{
	(void)ctx;
	if (fallocate(fd, 0, off, len) == 0)
		return 0;
	/* A file system without fallocate: write the zeros. */
	if (errno != EOPNOTSUPP)
		return -errno;
	static const uint8_t zero[4096];
	for (off_t o = off; o < off + len;) {
		size_t n = (size_t)(off + len - o < (off_t)sizeof(zero) ? off + len - o : (off_t)sizeof(zero));
		ssize_t w = pwrite(fd, zero, n, o);
		if (w < 0)
			return -errno;
		o += w;
	}
	return 0;
}

static int sys_renameat(void *ctx, int dirfd, const char *from, const char *to)
{
	(void)ctx;
	return renameat(dirfd, from, dirfd, to) ? -errno : 0;
}

static int sys_unlinkat(void *ctx, int dirfd, const char *name)
{
	(void)ctx;
	return unlinkat(dirfd, name, 0) ? -errno : 0;
}

static int sys_fstat_size(void *ctx, int fd, off_t *sizep)
{
	struct stat sb;
	(void)ctx;
	if (fstat(fd, &sb))
		return -errno;
	*sizep = sb.st_size;
	return 0;
}

/* SEEK_DATA/SEEK_HOLE: a preallocated segment's unwritten extents are
 * holes (ext4, xfs), so the scanner need not read them. */
static off_t sys_data_end(void *ctx, int fd, off_t size)
{
	(void)ctx;
	off_t end = 0, off = 0;
	for (int i = 0; i < 4096 && off < size; i++) {
		off_t d = lseek(fd, off, SEEK_DATA);
		if (d < 0)
			return errno == ENXIO ? end : size;
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return size;
		end = h;
		off = h;
	}
	return end < size ? end : size;
}

const struct tr_log_io tr__log_sysio = {
	NULL, sys_open, sys_close, sys_pread, sys_pwrite, sys_fdatasync, sys_fsync, sys_fallocate, sys_renameat,
	sys_unlinkat, sys_fstat_size, sys_data_end,
};

/* All of @n bytes at @off, or an error (-EIO for a write that makes no
 * progress). */
int tr__log_write_all(const struct tr_log_io *io, int fd, const void *buf, size_t n, off_t off)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t w = io->pwrite(io->ctx, fd, p, n, off);
		if (w < 0)
			return (int)w;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

static int read_all(const struct tr_log_io *io, int fd, void *buf, size_t n, off_t off)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = io->pread(io->ctx, fd, p, n, off);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* ---- segments ------------------------------------------------------------------------------- */

void tr__log_seg_name(uint64_t base, char out[32])
{
	snprintf(out, 32, "%016llx" TR_LOG_SEG_SUFFIX, (unsigned long long)base);
}

static void seg_header(uint8_t h[TR_LOG_SEG_HDR], uint64_t base, uint64_t salt, uint64_t segno)
{
	memset(h, 0, TR_LOG_SEG_HDR);
	memcpy(h, TR_LOG_SEG_MAGIC, 8);
	put32(h + 8, TR_LOG_FORMAT);
	put32(h + 12, TR_LOG_SEG_HDR);
	put64(h + 16, base);
	put64(h + 24, salt);
	put64(h + 32, segno);
	put64(h + 40, (uint64_t)tr__now_real());
	put64(h + 56, XXH3_64bits_withSeed(h, 56, TR_LOG_HDR_SEED));
}

/* 0 and the header's fields, or -EBADMSG. */
static int seg_header_check(const uint8_t *h, size_t n, uint64_t *base, uint64_t *salt, uint64_t *segno)
{
	if (n < TR_LOG_SEG_HDR || memcmp(h, TR_LOG_SEG_MAGIC, 8) || get32(h + 8) != TR_LOG_FORMAT ||
	    get32(h + 12) != TR_LOG_SEG_HDR || get64(h + 56) != XXH3_64bits_withSeed(h, 56, TR_LOG_HDR_SEED))
		return -EBADMSG;
	*base = get64(h + 16);
	*salt = get64(h + 24);
	*segno = get64(h + 32);
	return 0;
}

/*
 * Make the segment that begins at stream position @base: under a temporary
 * name, preallocated to @prealloc bytes in all, its header written and
 * synced; then renamed into place and the directory synced. Returns 0 with
 * the open descriptor and the salt, or an error (nothing left behind but,
 * at worst, a temporary file that the next scan ignores).
 */
int tr__log_seg_create(const struct tr_log_io *io, int dirfd, uint64_t base, uint64_t segno, uint64_t prealloc,
		       int *fdp, uint64_t *saltp)
{
	return tr__log_seg_create_from(io, dirfd, base, segno, prealloc, NULL, fdp, saltp);
}

/*
 * tr__log_seg_create(), made from the preallocated, never-written file
 * @spare of the directory when it is not NULL (a reserve kept for a full
 * disk: see wal.c); it is left in place if this fails.
 */
int tr__log_seg_create_from(const struct tr_log_io *io, int dirfd, uint64_t base, uint64_t segno, uint64_t prealloc,
			    const char *spare, int *fdp, uint64_t *saltp)
{
	char name[32], tmp[48];
	uint8_t h[TR_LOG_SEG_HDR];
	uint64_t salt = tr__rand64() | 1; /* never 0 */

	tr__log_seg_name(base, name);
	snprintf(tmp, sizeof(tmp), "%s", spare ? spare : "");
	if (!spare)
		snprintf(tmp, sizeof(tmp), ".tmp-%s", name);
	int fd = io->open(io->ctx, dirfd, tmp, spare ? O_RDWR | O_NOFOLLOW : O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW,
			  0600);
	if (fd < 0)
		return fd;
	seg_header(h, base, salt, segno);
	int rc = 0;
	if (prealloc > TR_LOG_SEG_HDR)
		rc = io->fallocate(io->ctx, fd, 0, (off_t)prealloc);
	if (!rc)
		rc = tr__log_write_all(io, fd, h, sizeof(h), 0);
	if (!rc)
		rc = io->fsync(io->ctx, fd);
	if (!rc)
		rc = io->renameat(io->ctx, dirfd, tmp, name);
	if (!rc)
		rc = io->fsync(io->ctx, dirfd);
	if (rc) {
		io->close(io->ctx, fd);
		if (!spare)
			io->unlinkat(io->ctx, dirfd, tmp);
		return rc;
	}
	*fdp = fd;
	*saltp = salt;
	return 0;
}

/* ---- the scanner ------------------------------------------------------------------------------ */

struct seg_ent {
	uint64_t base;
	char name[32];
};

static int by_base(const void *a, const void *b)
{
	uint64_t x = ((const struct seg_ent *)a)->base, y = ((const struct seg_ent *)b)->base;
	return x < y ? -1 : x > y;
}

/* The files of @dirfd named "<16 hex digits>@suffix", sorted by that
 * number; *@np of them. */
static int list_files(int dirfd, const char *suffix, struct seg_ent **out, uint32_t *np)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct seg_ent *v = NULL;
	uint32_t n = 0, cap = 0;

	if (!d) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	rewinddir(d);
	for (struct dirent *e; (e = readdir(d));) {
		size_t len = strlen(e->d_name);
		if (len != 16 + strlen(suffix) || strcmp(e->d_name + 16, suffix))
			continue;
		char *endp;
		char hex[17];
		memcpy(hex, e->d_name, 16);
		hex[16] = 0;
		if (strspn(hex, "0123456789abcdef") != 16)
			continue;
		uint64_t base = strtoull(hex, &endp, 16);
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct seg_ent *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n].base = base;
		memcpy(v[n].name, e->d_name, len + 1);
		n++;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), by_base);
	*out = v;
	*np = n;
	return 0;
}

/* Zero @len bytes of @fd from @off and sync (the repair of a torn tail). */
static int zero_range(const struct tr_log_io *io, int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zero[65536];
	for (uint64_t o = off; o < off + len;) {
		size_t n = off + len - o < sizeof(zero) ? (size_t)(off + len - o) : sizeof(zero);
		int rc = tr__log_write_all(io, fd, zero, n, (off_t)o);
		if (rc)
			return rc;
		o += n;
	}
	return io->fdatasync(io->ctx, fd);
}

/* Scan one segment already read into @buf (@size bytes). */
static int scan_segment(const struct tr_log_io *io, int fd, const char *name, const uint8_t *buf, uint64_t size,
			int last, uint64_t next_base, struct tr_log_scan *s)
{
	uint64_t base, salt, segno;
	if (seg_header_check(buf, size, &base, &salt, &segno)) {
		snprintf(s->error, sizeof(s->error), "%s: bad segment header at offset 0", name);
		return -EBADMSG;
	}
	if (s->segments && (base != s->end_seq || segno != s->last_segno + 1)) {
		snprintf(s->error, sizeof(s->error),
			 "%s: begins at sequence %llu (segment %llu), but the log before it ends at %llu (segment %llu)",
			 name, (unsigned long long)base, (unsigned long long)segno, (unsigned long long)s->end_seq,
			 (unsigned long long)s->last_segno);
		return -EBADMSG;
	}
	if (!s->segments)
		s->first_seq = base;
	s->segments++;
	s->last_segno = segno;
	s->last_base = base;
	uint64_t off = TR_LOG_SEG_HDR;
	for (;;) {
		struct tr_logrec r;
		uint32_t len;
		int rc = tr__logrec_decode(buf + off, size - off, salt, base + off - TR_LOG_SEG_HDR, &r, &len);
		if (rc)
			break; /* the end of the valid data: judged below */
		if (s->record && (rc = s->record(s->arg, &r, name, off)) != 0)
			return rc;
		s->records++;
		off += len;
	}
	s->end_seq = base + off - TR_LOG_SEG_HDR;
	/* Bytes after the valid data: a torn tail, unless they are zero. */
	uint64_t nz = size;
	while (nz >= off + 8) { /* a word at a time, then bytes */
		uint64_t w;
		memcpy(&w, buf + nz - 8, 8);
		if (w)
			break;
		nz -= 8;
	}
	while (nz > off && buf[nz - 1] == 0)
		nz--;
	if (nz == off)
		return 0;
	if (!last && next_base != s->end_seq) {
		snprintf(s->error, sizeof(s->error),
			 "%s: corrupt record at offset %llu (sequence %llu), followed by more of the log; "
			 "see `taskring log verify`",
			 name, (unsigned long long)off, (unsigned long long)s->end_seq);
		return -EBADMSG;
	}
	if (last) {
		s->torn = 1;
		snprintf(s->torn_seg, sizeof(s->torn_seg), "%s", name);
		s->torn_off = off;
		s->torn_bytes = nz - off;
		if (s->repair) {
			int rc = zero_range(io, fd, off, nz - off);
			if (rc) {
				snprintf(s->error, sizeof(s->error), "%s: cannot zero the torn tail at offset %llu: %s",
					 name, (unsigned long long)off, strerror(-rc));
				return rc;
			}
		}
	}
	return 0;
}

/* Read the whole of file @name of @dirfd (past its written data it is
 * zeros: not read) into *@bufp; its descriptor stays open in *@fdp. */
static int read_whole(const struct tr_log_io *io, int dirfd, const char *name, int rw, int *fdp, uint8_t **bufp,
		      size_t *capp, uint64_t *sizep, uint64_t min_size, struct tr_log_scan *s)
{
	int fd = io->open(io->ctx, dirfd, name, (rw ? O_RDWR : O_RDONLY) | O_NOFOLLOW, 0);
	off_t size = 0;
	int rc = fd < 0 ? fd : io->fstat_size(io->ctx, fd, &size);
	if (rc) {
		snprintf(s->error, sizeof(s->error), "%s: cannot open: %s", name, strerror(-rc));
		if (fd >= 0)
			io->close(io->ctx, fd);
		return rc;
	}
	off_t data = io->data_end ? io->data_end(io->ctx, fd, size) : size;
	if (data < size && data >= 0)
		size = data < (off_t)min_size ? (off_t)min_size : data;
	if ((uint64_t)size > *capp) {
		uint8_t *nb = realloc(*bufp, (size_t)size);
		if (!nb) {
			io->close(io->ctx, fd);
			snprintf(s->error, sizeof(s->error), "%s: no memory to read it", name);
			return -ENOMEM;
		}
		*bufp = nb;
		*capp = (size_t)size;
		/* Its pages faulted in with one call, not one fault each
		 * (costly on a VM); where this fails, the faults happen. */
		uintptr_t a = ((uintptr_t)nb + TR_PAGE - 1) & ~(uintptr_t)(TR_PAGE - 1);
		if (a < (uintptr_t)nb + (size_t)size)
			madvise((void *)a, (uintptr_t)nb + (size_t)size - a, MADV_POPULATE_WRITE);
	}
	rc = size ? read_all(io, fd, *bufp, (size_t)size, 0) : 0;
	if (rc) {
		snprintf(s->error, sizeof(s->error), "%s: cannot read: %s", name, strerror(-rc));
		io->close(io->ctx, fd);
		return rc;
	}
	*fdp = fd;
	*sizep = (uint64_t)size;
	return 0;
}

/* Check checkpoint @name (@size bytes in @buf), which must cover @pos, and
 * hand its records to s->record. */
static int scan_checkpoint(const char *name, const uint8_t *buf, uint64_t size, uint64_t pos, struct tr_log_scan *s)
{
	uint64_t hpos, salt, jobs = 0, off = TR_LOG_SEG_HDR;
	if (size < TR_LOG_SEG_HDR || memcmp(buf, TR_LOG_CKPT_MAGIC, 8) || get32(buf + 8) != TR_LOG_FORMAT ||
	    get32(buf + 12) != TR_LOG_SEG_HDR || get64(buf + 56) != XXH3_64bits_withSeed(buf, 56, TR_LOG_HDR_SEED) ||
	    (hpos = get64(buf + 16)) != pos) {
		snprintf(s->error, sizeof(s->error), "%s: bad checkpoint header at offset 0", name);
		return -EBADMSG;
	}
	salt = get64(buf + 24);
	for (unsigned k = 0;; k++) {
		struct tr_logrec r;
		uint32_t len;
		int rc = tr__logrec_decode(buf + off, size - off, salt, off - TR_LOG_SEG_HDR, &r, &len);
		/* begin {pos}, store, jobs, end {pos, jobs}: nothing else. */
		int ok = rc == 0 && (k == 0	  ? r.type == TR_LOG_CKPT_BEGIN && (uint64_t)r.v[0] == pos
				     : k == 1 ? r.type == TR_LOG_STORE
					      : r.type == TR_LOG_JOB || r.type == TR_LOG_CKPT_END);
		if (ok && r.type == TR_LOG_CKPT_END)
			ok = (uint64_t)r.v[0] == pos && (uint64_t)r.v[1] == jobs && off + len == size;
		if (!ok) {
			snprintf(s->error, sizeof(s->error),
				 "%s: corrupt checkpoint record at offset %llu; see `taskring log verify`", name,
				 (unsigned long long)off);
			return -EBADMSG;
		}
		if (s->record && (rc = s->record(s->arg, &r, name, off)) != 0)
			return rc;
		s->records++;
		off += len;
		if (r.type == TR_LOG_CKPT_END)
			break;
		jobs += r.type == TR_LOG_JOB;
	}
	s->ckpt_pos = pos;
	s->ckpt_jobs = jobs;
	s->ckpt_bytes = size;
	snprintf(s->ckpt, sizeof(s->ckpt), "%s", name);
	return 0;
}

/*
 * Scan the log in @dir: its newest checkpoint, then every segment from the
 * checkpoint's position (or the first) in order, every record checked and
 * handed to s->record. Returns 0 (the log is sound, perhaps with a torn tail
 * in its last segment, which s->torn reports and s->repair zeroes),
 * -EBADMSG with s->error naming the file and offset of corruption, or
 * another -errno (s->error says which file).
 */
int tr__log_scan(const struct tr_log_io *io, const char *dir, struct tr_log_scan *s)
{
	struct seg_ent *segs = NULL, *ckpts = NULL;
	uint32_t n = 0, nckpts = 0;
	uint8_t *buf = NULL;
	size_t bufcap = 0;
	int rc, fd;

	s->segments = 0;
	s->records = 0;
	s->first_seq = s->end_seq = 0;
	s->last_segno = s->last_base = 0;
	s->torn = 0;
	s->torn_seg[0] = 0;
	s->torn_off = s->torn_bytes = 0;
	s->ckpt[0] = 0;
	s->ckpt_pos = s->ckpt_jobs = s->ckpt_bytes = 0;
	s->stale = 0;
	s->error[0] = 0;
	int dirfd = io->open(io->ctx, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
	if (dirfd < 0) {
		snprintf(s->error, sizeof(s->error), "%s: cannot open the log directory: %s", dir, strerror(-dirfd));
		return dirfd;
	}
	rc = list_files(dirfd, TR_LOG_SEG_SUFFIX, &segs, &n);
	if (!rc)
		rc = list_files(dirfd, TR_LOG_CKPT_SUFFIX, &ckpts, &nckpts);
	if (rc)
		snprintf(s->error, sizeof(s->error), "%s: cannot list the log directory: %s", dir, strerror(-rc));
	uint32_t i = 0;
	if (!rc && nckpts) {
		/* The newest checkpoint; the segments before it are done. */
		const struct seg_ent *c = &ckpts[nckpts - 1];
		uint64_t size;
		rc = read_whole(io, dirfd, c->name, 0, &fd, &buf, &bufcap, &size, 0, s);
		if (!rc) {
			rc = scan_checkpoint(c->name, buf, size, c->base, s);
			io->close(io->ctx, fd);
		}
		while (i < n && segs[i].base < c->base)
			i++;
		s->stale = i;
		if (!rc && (i == n || segs[i].base != c->base)) {
			snprintf(s->error, sizeof(s->error),
				 "%s: covers the log up to sequence %llu, but no segment begins there", c->name,
				 (unsigned long long)c->base);
			rc = -EBADMSG;
		}
		s->first_seq = s->end_seq = c->base;
	}
	for (; !rc && i < n && (!s->until || segs[i].base < s->until); i++) {
		uint64_t size;
		rc = read_whole(io, dirfd, segs[i].name, s->repair, &fd, &buf, &bufcap, &size, TR_LOG_SEG_HDR, s);
		if (rc)
			break;
		rc = scan_segment(io, fd, segs[i].name, buf, size, i + 1 == n, i + 1 < n ? segs[i + 1].base : 0, s);
		io->close(io->ctx, fd);
	}
	free(buf);
	free(segs);
	free(ckpts);
	io->close(io->ctx, dirfd);
	return rc;
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

void tr__log_ckpt_name(uint64_t pos, char out[32])
{
	snprintf(out, 32, "%016llx" TR_LOG_CKPT_SUFFIX, (unsigned long long)pos);
}

static int ckpt_flush(struct tr_ckpt_writer *c)
{
	int rc = tr__log_write_all(c->io, c->fd, c->buf, c->n, (off_t)c->off);
	c->off += c->n;
	c->n = 0;
	return rc;
}

/* Add record @r (its seq is set here) to checkpoint @c. */
int tr__ckpt_add(struct tr_ckpt_writer *c, struct tr_logrec *r)
{
	size_t len = tr__logrec_size(r);
	if (!len)
		return -EINVAL;
	if (c->n + len > c->cap) {
		int rc = c->n ? ckpt_flush(c) : 0;
		if (rc)
			return rc;
		if ((rc = tr__buf_reserve(&c->buf, &c->cap, len, 1 << 20)) != 0)
			return rc;
	}
	r->seq = c->off + c->n - TR_LOG_SEG_HDR;
	tr__logrec_encode(r, c->buf + c->n, len, c->salt);
	c->n += len;
	c->jobs += r->type == TR_LOG_JOB;
	return 0;
}

/*
 * Begin checkpoint @pos in @dirfd: its temporary file, with its header,
 * "checkpoint_begin" and the "store" record @store.
 */
int tr__ckpt_begin(struct tr_ckpt_writer *c, const struct tr_log_io *io, int dirfd, uint64_t pos,
		   struct tr_logrec *store)
{
	memset(c, 0, sizeof(*c));
	c->io = io;
	c->dirfd = dirfd;
	c->pos = pos;
	c->salt = tr__rand64() | 1;
	c->off = TR_LOG_SEG_HDR;
	tr__log_ckpt_name(pos, c->name);
	snprintf(c->tmp, sizeof(c->tmp), ".tmp-%s", c->name);
	c->fd = io->open(io->ctx, dirfd, c->tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
	if (c->fd < 0)
		return c->fd;
	uint8_t h[TR_LOG_SEG_HDR];
	memset(h, 0, sizeof(h));
	memcpy(h, TR_LOG_CKPT_MAGIC, 8);
	put32(h + 8, TR_LOG_FORMAT);
	put32(h + 12, TR_LOG_SEG_HDR);
	put64(h + 16, pos);
	put64(h + 24, c->salt);
	put64(h + 48, (uint64_t)tr__now_real());
	put64(h + 56, XXH3_64bits_withSeed(h, 56, TR_LOG_HDR_SEED));
	struct tr_logrec b;
	memset(&b, 0, sizeof(b));
	b.type = TR_LOG_CKPT_BEGIN;
	b.v[0] = (int64_t)pos;
	int rc = tr__log_write_all(io, c->fd, h, sizeof(h), 0);
	if (!rc)
		rc = tr__ckpt_add(c, &b);
	if (!rc)
		rc = tr__ckpt_add(c, store);
	if (rc)
		tr__ckpt_abort(c);
	return rc;
}

/* End checkpoint @c: "checkpoint_end", sync, rename into place, sync the
 * directory. Returns 0 with c->off its size, or an error (nothing left). */
int tr__ckpt_commit(struct tr_ckpt_writer *c)
{
	struct tr_logrec e;
	memset(&e, 0, sizeof(e));
	e.type = TR_LOG_CKPT_END;
	e.v[0] = (int64_t)c->pos;
	e.v[1] = (int64_t)c->jobs;
	int rc = tr__ckpt_add(c, &e);
	if (!rc)
		rc = ckpt_flush(c);
	if (!rc)
		rc = c->io->fsync(c->io->ctx, c->fd);
	if (!rc)
		rc = c->io->renameat(c->io->ctx, c->dirfd, c->tmp, c->name);
	if (!rc)
		rc = c->io->fsync(c->io->ctx, c->dirfd);
	if (rc) {
		tr__ckpt_abort(c);
		return rc;
	}
	c->io->close(c->io->ctx, c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	return 0;
}

void tr__ckpt_abort(struct tr_ckpt_writer *c)
{
	if (c->fd >= 0) {
		c->io->close(c->io->ctx, c->fd);
		c->io->unlinkat(c->io->ctx, c->dirfd, c->tmp);
	}
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

/*
 * Where the log in @dirfd stands: *@lastp the base of its newest segment,
 * *@ckptp the position its newest checkpoint covers (without one, the base
 * of its first segment). -ENOENT when it has no segment.
 */
int tr__log_bounds(int dirfd, uint64_t *lastp, uint64_t *ckptp)
{
	struct seg_ent *segs = NULL, *ckpts = NULL;
	uint32_t n = 0, nc = 0;
	int rc = list_files(dirfd, TR_LOG_SEG_SUFFIX, &segs, &n);
	if (!rc)
		rc = list_files(dirfd, TR_LOG_CKPT_SUFFIX, &ckpts, &nc);
	if (!rc && !n)
		rc = -ENOENT;
	if (!rc) {
		*lastp = segs[n - 1].base;
		*ckptp = nc ? ckpts[nc - 1].base : segs[0].base;
	}
	free(segs);
	free(ckpts);
	return rc;
}

/*
 * After checkpoint @pos is in place: delete what it replaces (segments
 * before it, older checkpoints, temporary files of checkpoints that were
 * never finished), then sync the directory. Returns how many files went.
 */
int tr__log_prune(const struct tr_log_io *io, int dirfd, uint64_t pos)
{
	int fd = dup(dirfd), gone = 0;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	size_t sl = strlen(TR_LOG_SEG_SUFFIX), cl = strlen(TR_LOG_CKPT_SUFFIX);
	rewinddir(d);
	for (struct dirent *e; (e = readdir(d));) {
		const char *nm = e->d_name;
		size_t len = strlen(nm);
		int doomed = 0;
		if (!strncmp(nm, ".tmp-", 5) && len > cl && !strcmp(nm + len - cl, TR_LOG_CKPT_SUFFIX)) {
			doomed = 1;
		} else if ((len == 16 + sl && !strcmp(nm + 16, TR_LOG_SEG_SUFFIX)) ||
			   (len == 16 + cl && !strcmp(nm + 16, TR_LOG_CKPT_SUFFIX))) {
			char hex[17];
			memcpy(hex, nm, 16);
			hex[16] = 0;
			doomed = strspn(hex, "0123456789abcdef") == 16 && strtoull(hex, NULL, 16) < pos;
		}
		if (doomed && io->unlinkat(io->ctx, dirfd, nm) == 0)
			gone++;
	}
	closedir(d);
	io->fsync(io->ctx, dirfd);
	return gone;
}

/* ---- the writer ------------------------------------------------------------------------------- */

static int logw_new_segment(struct tr_log_writer *w)
{
	int fd;
	uint64_t salt, segno = w->started ? w->segno + 1 : 0;
	int rc = tr__log_seg_create(w->io, w->dirfd, w->end, segno, w->seg_bytes + TR_LOG_SEG_HDR, &fd, &salt);
	if (rc)
		return rc;
	if (w->fd >= 0)
		w->io->close(w->io->ctx, w->fd);
	w->fd = fd;
	w->base = w->end;
	w->salt = salt;
	w->segno = segno;
	w->started = 1;
	return 0;
}

/*
 * Open the log in @dir (created if missing) for appending: scan it with
 * repair (@scan, if not NULL, receives what was found, with its record
 * callback honoured), then start a new segment at its end.
 */
int tr__logw_open(struct tr_log_writer *w, const struct tr_log_io *io, const char *dir, uint64_t seg_bytes,
		  struct tr_log_scan *scan)
{
	struct tr_log_scan local;
	memset(w, 0, sizeof(*w));
	w->io = io;
	w->fd = -1;
	w->seg_bytes = seg_bytes;
	if (!scan) {
		memset(&local, 0, sizeof(local));
		scan = &local;
	}
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	scan->repair = 1;
	int rc = tr__log_scan(io, dir, scan);
	if (rc)
		return rc;
	w->dirfd = io->open(io->ctx, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
	if (w->dirfd < 0)
		return w->dirfd;
	w->end = w->synced = scan->end_seq;
	/* The new segment follows the last (segno + 1); but a last segment
	 * without records begins where the new one does, and is replaced by
	 * it (same name, same segno). */
	if (scan->segments && scan->last_base != scan->end_seq) {
		w->segno = scan->last_segno;
		w->started = 1;
	} else if (scan->segments) {
		w->segno = scan->last_segno - 1;
		w->started = scan->last_segno > 0;
	}
	rc = logw_new_segment(w);
	if (rc) {
		io->close(io->ctx, w->dirfd);
		w->dirfd = -1;
	}
	return rc;
}

/*
 * Append @n bytes of encoded records (their seq fields already the stream
 * positions from w->end on) to the log; seals each with its segment's salt.
 * Not durable until tr__logw_sync(). Returns 0 or an error; after an error
 * the writer refuses everything (-EIO), as what reached the disk is unknown.
 */
int tr__logw_write(struct tr_log_writer *w, uint8_t *recs, size_t n)
{
	if (w->failed)
		return -EIO;
	size_t done = 0;
	while (done < n) {
		uint64_t used = w->end - w->base;
		if (used >= w->seg_bytes) {
			int rc = tr__logw_sync(w);
			if (!rc)
				rc = logw_new_segment(w);
			if (rc) {
				w->failed = 1;
				return rc;
			}
			used = 0;
		}
		/* As many whole records as the segment takes (at least one). */
		size_t run = 0;
		while (done + run < n) {
			uint32_t len = get32(recs + done + run);
			if (len < TR_LOG_REC_MIN || len > n - done - run || get64(recs + done + run + 8) != w->end + run) {
				w->failed = 1;
				return -EINVAL; /* not records at this position: a bug */
			}
			tr__logrec_seal(recs + done + run, w->salt);
			run += len;
			if (used + run >= w->seg_bytes)
				break;
		}
		int rc = tr__log_write_all(w->io, w->fd, recs + done, run, (off_t)(TR_LOG_SEG_HDR + used));
		if (rc) {
			w->failed = 1;
			return rc;
		}
		done += run;
		w->end += run;
	}
	return 0;
}

/* Make everything written so far durable. An error is never retried: the
 * writer refuses everything afterwards (see tr__logw_write()). */
int tr__logw_sync(struct tr_log_writer *w)
{
	if (w->failed)
		return -EIO;
	if (w->synced == w->end)
		return 0;
	int rc = w->io->fdatasync(w->io->ctx, w->fd);
	if (rc) {
		w->failed = 1;
		return rc;
	}
	w->synced = w->end;
	return 0;
}

void tr__logw_close(struct tr_log_writer *w)
{
	if (w->fd >= 0)
		w->io->close(w->io->ctx, w->fd);
	if (w->dirfd >= 0)
		w->io->close(w->io->ctx, w->dirfd);
	w->fd = w->dirfd = -1;
}

/*
 * The "store" record at the start of the last segment of the log in @dir:
 * the sizing of the store the log belongs to. Returns 0 with *@out filled,
 * -ENOENT when the log has no segment (or its last has no such record), or
 * another error. Reads one record; the full scan comes with recovery.
 */
int tr__log_last_store(const struct tr_log_io *io, const char *dir, struct tr_logrec *out)
{
	struct seg_ent *segs = NULL;
	uint32_t n = 0;
	uint8_t buf[TR_LOG_SEG_HDR + 256];
	int dirfd = io->open(io->ctx, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
	if (dirfd < 0)
		return dirfd;
	int rc = list_files(dirfd, TR_LOG_SEG_SUFFIX, &segs, &n);
	if (!rc && n == 0)
		rc = -ENOENT;
	for (uint32_t i = n; !rc && i-- > 0;) {
		/* The newest segment that has its first record. */
		int fd = io->open(io->ctx, dirfd, segs[i].name, O_RDONLY | O_NOFOLLOW, 0);
		if (fd < 0) {
			rc = fd;
			break;
		}
		memset(buf, 0, sizeof(buf));
		ssize_t got = io->pread(io->ctx, fd, buf, sizeof(buf), 0);
		io->close(io->ctx, fd);
		uint64_t base, salt, segno;
		struct tr_logrec r;
		uint32_t len;
		if (got > 0 && seg_header_check(buf, (size_t)got, &base, &salt, &segno) == 0 &&
		    tr__logrec_decode(buf + TR_LOG_SEG_HDR, (size_t)got - TR_LOG_SEG_HDR, salt, base, &r, &len) == 0 &&
		    r.type == TR_LOG_STORE) {
			*out = r;
			break;
		}
		if (i == 0)
			rc = -ENOENT;
	}
	free(segs);
	io->close(io->ctx, dirfd);
	return rc;
}
