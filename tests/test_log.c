/*
 * test_log.c - the log's format: every record type round-trips; a log of
 * 64+ KiB cut at every byte offset, and hit by 100,000 random bit flips,
 * scans to exactly the records before the damage and never yields a record
 * that was not written; corruption before the last segment is refused with
 * the file and offset; leftovers under another salt never validate; a torn
 * tail is zeroed on reopen and appending goes on after it.
 *
 * These tests are about bytes, not about what reaches the disk, so the log
 * directories live in /dev/shm. (Durability tests put theirs on a real disk.)
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"
#include "logsim.h"

/* ---- a model of the records written ---------------------------------------------- */

/* Record @i of a test log: its type, uuid, scalars and blobs follow from i. */
static uint8_t blob_bytes[TR_LOG_BLOBS][512];

static void model(uint32_t i, struct tr_logrec *r)
{
	memset(r, 0, sizeof(*r));
	r->type = (uint16_t)(1 + i % (TR_LOG_TYPES - 1));
	for (int k = 0; k < 16; k++)
		r->uuid[k] = (uint8_t)(i * 7 + k);
	const struct tr_logrec_spec *sp = tr__logrec_spec(r->type);
	for (unsigned k = 0; k < sp->nscalars; k++)
		r->v[k] = (int64_t)i * 1000003 - (int64_t)k * 77;
	for (unsigned k = 0; k < sp->nblobs; k++) {
		r->blen[k] = (i * 13 + k * 29) % 97;
		r->blob[k] = r->blen[k] ? blob_bytes[k] + (i % 64) : NULL;
	}
}

static void model_init(void)
{
	for (int k = 0; k < TR_LOG_BLOBS; k++)
		for (int j = 0; j < 512; j++)
			blob_bytes[k][j] = (uint8_t)(j * 31 + k);
}

/* Is @r exactly model record @i at @seq? */
static int same_as_model(const struct tr_logrec *r, uint32_t i, uint64_t seq)
{
	struct tr_logrec m;
	model(i, &m);
	if (r->type != m.type || r->seq != seq || memcmp(r->uuid, m.uuid, 16))
		return 0;
	const struct tr_logrec_spec *sp = tr__logrec_spec(m.type);
	for (unsigned k = 0; k < sp->nscalars; k++)
		if (r->v[k] != m.v[k])
			return 0;
	for (unsigned k = 0; k < sp->nblobs; k++)
		if (r->blen[k] != m.blen[k] || (m.blen[k] && memcmp(r->blob[k], m.blob[k], m.blen[k])))
			return 0;
	return 1;
}

/* Where each model record begins in the stream. */
struct tlog {
	char dir[64];
	uint32_t n;
	uint64_t *seq; /* n + 1 entries: the last is the stream's end */
};

/* A scan callback that checks each record against the model, in order. */
struct check {
	const struct tlog *t;
	uint32_t next;
	int bogus;
};

static int check_record(void *arg, const struct tr_logrec *r, const char *seg, uint64_t off)
{
	struct check *c = arg;
	(void)seg;
	(void)off;
	if (c->next >= c->t->n || !same_as_model(r, c->next, c->t->seq[c->next]))
		c->bogus++;
	c->next++;
	return 0;
}

static int scan(const struct tlog *t, int repair, struct tr_log_scan *s, struct check *c)
{
	memset(s, 0, sizeof(*s));
	memset(c, 0, sizeof(*c));
	c->t = t;
	s->record = check_record;
	s->arg = c;
	s->repair = repair;
	return tr__log_scan(&tr__log_sysio, t->dir, s);
}

/* Append model records [from, to) through a writer (one write each). */
static void append(struct tr_log_writer *w, struct tlog *t, uint32_t from, uint32_t to)
{
	static uint8_t buf[8192];
	for (uint32_t i = from; i < to; i++) {
		struct tr_logrec r;
		model(i, &r);
		r.seq = w->end;
		t->seq[i] = w->end;
		size_t n = tr__logrec_encode(&r, buf, sizeof(buf), 0);
		assert_true(n > 0);
		assert_rc(tr__logw_write(w, buf, n), 0);
		t->seq[i + 1] = w->end;
	}
	assert_rc(tr__logw_sync(w), 0);
}

/* A new log of @n records in segments of @seg_bytes. */
static void make_log(struct tlog *t, uint32_t n, uint64_t seg_bytes)
{
	struct tr_log_writer w;
	snprintf(t->dir, sizeof(t->dir), "/dev/shm/taskring-logtest-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	t->n = n;
	t->seq = calloc(n + 1, sizeof(uint64_t));
	assert_non_null(t->seq);
	assert_rc(tr__logw_open(&w, &tr__log_sysio, t->dir, seg_bytes, NULL), 0);
	append(&w, t, 0, n);
	tr__logw_close(&w);
}

static void free_log(struct tlog *t)
{
	rm_dir(t->dir);
	free(t->seq);
}

/* The one segment file of a single-segment log, opened read-write. */
static int only_segment(const struct tlog *t, char *path, size_t cap)
{
	char name[32];
	tr__log_seg_name(0, name);
	snprintf(path, cap, "%s/%s", t->dir, name);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	return fd;
}

/* How many model records end at or before stream position @pos. */
static uint32_t records_before(const struct tlog *t, uint64_t pos)
{
	uint32_t k = 0;
	while (k < t->n && t->seq[k + 1] <= pos)
		k++;
	return k;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_roundtrip(void **state)
{
	(void)state;
	static uint8_t buf[1 << 16];
	model_init();
	for (uint32_t i = 0; i < 500; i++) {
		struct tr_logrec r, d;
		uint32_t len;
		model(i, &r);
		r.seq = 4096 + i;
		size_t n = tr__logrec_encode(&r, buf, sizeof(buf), 99);
		assert_int_equal(n, tr__logrec_size(&r));
		assert_rc(tr__logrec_decode(buf, n + 10, 99, 4096 + i, &d, &len), 0);
		assert_int_equal(len, n);
		assert_true(same_as_model(&d, i, 4096 + i));
		/* Another salt, another position, one byte short: refused. */
		assert_rc(tr__logrec_decode(buf, n, 98, 4096 + i, &d, &len), -EBADMSG);
		assert_rc(tr__logrec_decode(buf, n, 99, 4097 + i, &d, &len), -EBADMSG);
		assert_rc(tr__logrec_decode(buf, n - 1, 99, 4096 + i, &d, &len), -EBADMSG);
		/* Too small a buffer: nothing written. */
		memset(buf, 0xee, 8);
		assert_int_equal(tr__logrec_encode(&r, buf, n - 1, 99), 0);
		assert_int_equal(buf[0], 0xee);
	}
	/* Every type by name, and invalid records. */
	for (unsigned t = 1; t < TR_LOG_TYPES; t++)
		assert_non_null(tr__logrec_spec(t)->name);
	assert_null(tr__logrec_spec(0));
	assert_null(tr__logrec_spec(TR_LOG_TYPES));
	struct tr_logrec bad;
	model(1, &bad);
	bad.type = TR_LOG_TYPES;
	assert_int_equal(tr__logrec_size(&bad), 0);
	model(0, &bad); /* an enqueue: it has blobs */
	bad.blob[0] = NULL;
	bad.blen[0] = 5;
	assert_int_equal(tr__logrec_size(&bad), 0);
	/* Zeros are the end; a lone non-zero byte at the very end is not. */
	uint8_t z[3] = {0, 0, 0};
	struct tr_logrec d;
	uint32_t len;
	assert_rc(tr__logrec_decode(z, 3, 1, 0, &d, &len), TR_LOG_DEC_END);
	z[2] = 1;
	assert_rc(tr__logrec_decode(z, 3, 1, 0, &d, &len), -EBADMSG);

	/* A log of many segments scans back whole, and goes on after a
	 * reopen with its sequence unbroken. */
	struct tlog t;
	struct tr_log_scan s;
	struct check c;
	make_log(&t, 3000, 4096);
	assert_rc(scan(&t, 0, &s, &c), 0);
	assert_int_equal(c.bogus, 0);
	assert_int_equal(s.records, 3000);
	assert_true(s.segments > 20);
	assert_int_equal(s.end_seq, t.seq[3000]);
	assert_false(s.torn);
	uint64_t *more = realloc(t.seq, 4001 * sizeof(uint64_t));
	assert_non_null(more);
	t.seq = more;
	struct tr_log_writer w;
	assert_rc(tr__logw_open(&w, &tr__log_sysio, t.dir, 4096, &s), 0);
	assert_int_equal(s.records, 3000);
	assert_int_equal(w.end, t.seq[3000]);
	t.n = 4000;
	append(&w, &t, 3000, 4000);
	tr__logw_close(&w);
	assert_rc(scan(&t, 0, &s, &c), 0);
	assert_int_equal(c.bogus, 0);
	assert_int_equal(s.records, 4000);
	free_log(&t);
}

/* A log of 64+ KiB cut at every byte offset: exactly the whole records
 * before the cut, the rest reported as a torn tail (or nothing, at a
 * record boundary). */
static void test_truncate_every_offset(void **state)
{
	(void)state;
	struct tlog t;
	char path[128];
	model_init();
	make_log(&t, 700, 1 << 17);
	assert_true(t.seq[t.n] >= 65536);
	int fd = only_segment(&t, path, sizeof(path));
	size_t size;
	uint8_t *orig = slurp(fd, &size);
	uint64_t data_end = TR_LOG_SEG_HDR + t.seq[t.n];
	/* Under a sanitizer, every 13th offset (the same code, 10x slower). */
	uint64_t step = tu_sanitized() ? 13 : 1, cuts = 0;
	/* From the longest cut down: each one only removes bytes, so what is
	 * left is always the original. */
	for (uint64_t k = data_end + 1; k-- > TR_LOG_SEG_HDR;) {
		if ((data_end - k) % step)
			continue;
		cuts++;
		struct tr_log_scan s;
		struct check c;
		assert_int_equal(ftruncate(fd, (off_t)k), 0);
		assert_rc(scan(&t, 0, &s, &c), 0);
		uint32_t want = records_before(&t, k - TR_LOG_SEG_HDR);
		if (s.records != want || c.bogus)
			fail_msg("cut at %llu: %llu records (want %u), %d bogus", (unsigned long long)k,
				 (unsigned long long)s.records, want, c.bogus);
		/* Torn when the cut kept any non-zero byte of the next record. */
		int kept = 0;
		for (uint64_t o = TR_LOG_SEG_HDR + t.seq[want]; o < k; o++)
			kept |= orig[o] != 0;
		if (s.torn != kept)
			fail_msg("cut at %llu: torn %d, kept %d, want %u", (unsigned long long)k, s.torn, kept, want);
		if (s.torn)
			assert_int_equal(s.torn_off, TR_LOG_SEG_HDR + t.seq[want]);
	}
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(pwrite(fd, orig, size, 0), (ssize_t)size);
	printf("# %llu cuts of a %llu-byte log, each scanned\n", (unsigned long long)cuts,
	       (unsigned long long)data_end);
	close(fd);
	free(orig);
	free_log(&t);
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* 100,000 random single-bit flips in the records (and a little past
 * them): exactly the records before the damaged one, never a bogus one. */
static void test_bit_flips(void **state)
{
	(void)state;
	struct tlog t;
	char path[128];
	model_init();
	make_log(&t, 700, 1 << 17);
	int fd = only_segment(&t, path, sizeof(path));
	uint64_t data_end = TR_LOG_SEG_HDR + t.seq[t.n];
	uint64_t span = data_end + 256 - TR_LOG_SEG_HDR;
	int flips = tu_sanitized() ? 10000 : 100000, torn = 0;
	for (int i = 0; i < flips; i++) {
		uint64_t off = TR_LOG_SEG_HDR + rng() % span;
		uint8_t bit = (uint8_t)(1u << (rng() % 8)), b;
		assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
		b ^= bit;
		assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
		struct tr_log_scan s;
		struct check c;
		assert_rc(scan(&t, 0, &s, &c), 0);
		uint32_t want = off >= data_end ? t.n : records_before(&t, off - TR_LOG_SEG_HDR);
		if (s.records != want || c.bogus)
			fail_msg("flip at %llu: %llu records (want %u), %d bogus", (unsigned long long)off,
				 (unsigned long long)s.records, want, c.bogus);
		assert_true(s.torn);
		torn++;
		b ^= bit;
		assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	}
	/* A flip in the header: the segment is refused, never read. */
	for (int i = 0; i < 512; i++) {
		uint64_t off = (uint64_t)i / 8;
		uint8_t bit = (uint8_t)(1u << (i % 8)), b;
		assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
		b ^= bit;
		assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
		struct tr_log_scan s;
		struct check c;
		assert_rc(scan(&t, 0, &s, &c), -EBADMSG);
		assert_int_equal(s.records, 0);
		assert_non_null(strstr(s.error, "bad segment header"));
		b ^= bit;
		assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	}
	printf("# %d bit flips, each scanned to the records before it\n", torn);
	close(fd);
	free_log(&t);
}

/* Damage before the last segment is refused, naming the file and offset:
 * a flipped bit, a lost tail, a missing segment. */
static void test_middle_corruption(void **state)
{
	(void)state;
	struct tlog t;
	struct tr_log_scan s;
	struct check c;
	char name[32], path[160];
	model_init();
	make_log(&t, 600, 4096);
	assert_rc(scan(&t, 0, &s, &c), 0);
	assert_true(s.segments >= 4);
	/* The second segment: flip a bit in its 3rd record. */
	uint64_t base = 0;
	int k = 0;
	for (uint32_t i = 0; i < t.n; i++)
		if (t.seq[i] >= 4096) {
			base = t.seq[i];
			k = (int)i;
			break;
		}
	/* Segments begin where one has reached 4,096 bytes: find the real one. */
	tr__log_seg_name(base, name);
	snprintf(path, sizeof(path), "%s/%s", t.dir, name);
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		/* The writer closes a segment once it holds 4,096 bytes, at a
		 * record boundary: the first record at or after 4,096. */
		fail_msg("no segment at %llu (record %d)", (unsigned long long)base, k);
	}
	uint64_t off = TR_LOG_SEG_HDR + (t.seq[k + 2] - base) + 20;
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 4;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	assert_rc(scan(&t, 0, &s, &c), -EBADMSG);
	assert_int_equal(c.bogus, 0);
	char want[96];
	snprintf(want, sizeof(want), "%s: corrupt record at offset %llu", name,
		 (unsigned long long)(TR_LOG_SEG_HDR + t.seq[k + 2] - base));
	assert_non_null(strstr(s.error, want));
	b ^= 4;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	/* Its tail lost (zeros): the next segment no longer follows on. */
	uint8_t zero[64] = {0};
	uint8_t keep[64];
	off_t at = (off_t)(TR_LOG_SEG_HDR + t.seq[k + 3] - base);
	assert_int_equal(pread(fd, keep, sizeof(keep), at), (ssize_t)sizeof(keep));
	assert_int_equal(pwrite(fd, zero, sizeof(zero), at), (ssize_t)sizeof(zero));
	assert_rc(scan(&t, 0, &s, &c), -EBADMSG);
	assert_int_equal(c.bogus, 0);
	assert_int_equal(pwrite(fd, keep, sizeof(keep), at), (ssize_t)sizeof(keep));
	close(fd);
	assert_rc(scan(&t, 0, &s, &c), 0);
	/* A missing segment. */
	char moved[200];
	snprintf(moved, sizeof(moved), "%s.away", path);
	assert_int_equal(rename(path, moved), 0);
	assert_rc(scan(&t, 0, &s, &c), -EBADMSG);
	assert_non_null(strstr(s.error, "but the log before it ends at"));
	assert_int_equal(rename(moved, path), 0);
	assert_rc(scan(&t, 0, &s, &c), 0);
	assert_int_equal(s.records, t.n);
	free_log(&t);
}

/* Old records under another salt (a recycled file) never validate, even
 * at the right positions; a torn tail is zeroed on reopen, and the log
 * goes on in a new segment after it. */
static void test_salt_and_repair(void **state)
{
	(void)state;
	struct tlog t;
	struct tr_log_scan s;
	struct check c;
	char path[128];
	model_init();
	make_log(&t, 200, 1 << 20);
	int fd = only_segment(&t, path, sizeof(path));
	/* Re-make the segment's header with another salt and write the first
	 * 50 records again under it: the other 150 are leftovers. */
	close(fd);
	char name[32];
	tr__log_seg_name(0, name);
	int dfd = open(t.dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	uint64_t salt;
	int nfd;
	assert_int_equal(rename(path, "/dev/shm/taskring-logtest-old"), 0);
	assert_rc(tr__log_seg_create(&tr__log_sysio, dfd, 0, 0, 0, &nfd, &salt), 0);
	int ofd = open("/dev/shm/taskring-logtest-old", O_RDONLY);
	assert_true(ofd >= 0);
	size_t rest = (size_t)t.seq[t.n];
	uint8_t *old = malloc(rest);
	assert_non_null(old);
	assert_int_equal(pread(ofd, old, rest, TR_LOG_SEG_HDR), (ssize_t)rest);
	close(ofd);
	unlink("/dev/shm/taskring-logtest-old");
	assert_int_equal(pwrite(nfd, old, rest, TR_LOG_SEG_HDR), (ssize_t)rest);
	size_t first = (size_t)t.seq[50];
	for (size_t o = 0; o < first;) {
		uint32_t len = (uint32_t)old[o] | (uint32_t)old[o + 1] << 8 | (uint32_t)old[o + 2] << 16 |
			       (uint32_t)old[o + 3] << 24;
		tr__logrec_seal(old + o, salt);
		o += len;
	}
	assert_int_equal(pwrite(nfd, old, first, TR_LOG_SEG_HDR), (ssize_t)first);
	close(nfd);
	close(dfd);
	/* The torn tail ends at the leftovers' last non-zero byte: zeros at
	 * their very end (a checksum byte may be 0) look like the file's
	 * unwritten part, and are. */
	size_t tail_end = (size_t)t.seq[200];
	while (tail_end > (size_t)t.seq[50] && old[tail_end - 1] == 0)
		tail_end--;
	free(old);
	assert_rc(scan(&t, 0, &s, &c), 0);
	assert_int_equal(c.bogus, 0);
	assert_int_equal(s.records, 50);
	assert_true(s.torn);
	assert_int_equal(s.torn_off, TR_LOG_SEG_HDR + t.seq[50]);
	assert_int_equal(s.torn_bytes, tail_end - t.seq[50]);

	/* Reopen for writing: the tail is zeroed, a new segment begins at
	 * the end of the 50, and 30 more records follow them. */
	struct tr_log_writer w;
	assert_rc(tr__logw_open(&w, &tr__log_sysio, t.dir, 1 << 20, &s), 0);
	assert_true(s.torn);
	assert_int_equal(w.end, t.seq[50]);
	append(&w, &t, 50, 80);
	tr__logw_close(&w);
	t.n = 80;
	assert_rc(scan(&t, 0, &s, &c), 0);
	assert_int_equal(c.bogus, 0);
	assert_int_equal(s.records, 80);
	assert_int_equal(s.segments, 2);
	assert_false(s.torn);
	free_log(&t);
}


/* ---- recorded writes: simulated power loss (the seam is in logsim.h) ------------ */

/* The workload: batches of records, each batch synced; acks[k] = how many
 * records were acknowledged once operation k had happened. */
struct workload {
	struct tlog t;
	uint32_t *acked_at; /* per op index: records acknowledged by then */
	size_t nops;
};

static void run_workload(struct rec *r, struct workload *wl, uint32_t n, uint64_t seg_bytes)
{
	struct tr_log_io io = rec_io(r);
	struct tr_log_writer w;
	static uint8_t buf[1 << 16];
	struct tlog *t = &wl->t;
	snprintf(t->dir, sizeof(t->dir), "/dev/shm/taskring-logtest-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	t->n = n;
	t->seq = calloc(n + 1, sizeof(uint64_t));
	uint32_t *acks = calloc(n + 1, sizeof(uint32_t));
	size_t *ack_op = calloc(n + 1, sizeof(size_t));
	assert_non_null(t->seq);
	assert_rc(tr__logw_open(&w, &io, t->dir, seg_bytes, NULL), 0);
	uint32_t i = 0, nacks = 0;
	while (i < n) {
		uint32_t batch = 1 + (uint32_t)(rng() % 12);
		size_t used = 0;
		for (uint32_t k = 0; k < batch && i < n; k++, i++) {
			struct tr_logrec m;
			model(i, &m);
			m.seq = w.end + used;
			t->seq[i] = m.seq;
			used += tr__logrec_encode(&m, buf + used, sizeof(buf) - used, 0);
			t->seq[i + 1] = w.end + used;
		}
		assert_rc(tr__logw_write(&w, buf, used), 0);
		assert_rc(tr__logw_sync(&w), 0);
		acks[nacks] = i;
		ack_op[nacks++] = r->nops; /* acknowledged once ops [0, nops) happened */
	}
	tr__logw_close(&w);
	wl->nops = r->nops;
	wl->acked_at = calloc(r->nops + 1, sizeof(uint32_t));
	assert_non_null(wl->acked_at);
	for (size_t p = 0, a = 0; p <= r->nops; p++) {
		while (a < nacks && ack_op[a] <= p)
			a++;
		wl->acked_at[p] = a ? acks[a - 1] : 0;
	}
	free(acks);
	free(ack_op);
}

/* 10,000 power-loss images of a logged workload: each scans to a prefix of
 * what was written that holds every acknowledged record, and a writer
 * reopened on it goes on from there. */
static void test_power_loss_images(void **state)
{
	(void)state;
	struct rec r;
	struct workload wl;
	model_init();
	memset(&r, 0, sizeof(r));
	run_workload(&r, &wl, 600, 3000);
	char img[64];
	snprintf(img, sizeof(img), "/dev/shm/taskring-logimg-XXXXXX");
	assert_non_null(mkdtemp(img));
	struct tlog view = wl.t;
	snprintf(view.dir, sizeof(view.dir), "%s", img);
	int images = tu_sanitized() ? 2000 : 10000, torn = 0, reopened = 0;
	uint64_t min_extra = UINT64_MAX;
	for (int i = 0; i < images; i++) {
		size_t p = (size_t)(rng() % (wl.nops + 1));
		empty_dir(img);
		make_image(&r, p, img);
		struct tr_log_scan s;
		struct check c;
		int rc = scan(&view, 0, &s, &c);
		if (rc || c.bogus || s.records < wl.acked_at[p])
			fail_msg("image %d (power loss at op %zu of %zu): rc %d (%s), %llu records, %u acknowledged, %d bogus",
				 i, p, wl.nops, rc, s.error, (unsigned long long)s.records, wl.acked_at[p], c.bogus);
		torn += s.torn;
		if (s.records - wl.acked_at[p] < min_extra)
			min_extra = s.records - wl.acked_at[p];
		if (i % 10 == 0) {
			/* Recovery goes on: reopen, append the next 5, rescan. */
			struct tr_log_writer w;
			uint32_t have = (uint32_t)s.records;
			assert_rc(tr__logw_open(&w, &tr__log_sysio, img, 3000, &s), 0);
			assert_int_equal(w.end, view.seq[have]);
			uint32_t upto = have + 5 < view.n ? have + 5 : view.n;
			uint64_t *saved = malloc((view.n + 1) * sizeof(uint64_t));
			memcpy(saved, view.seq, (view.n + 1) * sizeof(uint64_t));
			append(&w, &view, have, upto);
			tr__logw_close(&w);
			uint32_t n0 = view.n;
			view.n = upto;
			assert_rc(scan(&view, 0, &s, &c), 0);
			assert_int_equal(c.bogus, 0);
			assert_int_equal(s.records, upto);
			view.n = n0;
			memcpy(view.seq, saved, (view.n + 1) * sizeof(uint64_t));
			free(saved);
			reopened++;
		}
	}
	printf("# %d power-loss images of %zu operations (%d with a torn tail), %d reopened and appended to\n",
	       images, wl.nops, torn, reopened);
	empty_dir(img);
	rmdir(img);
	rec_free(&r);
	free(wl.acked_at);
	free_log(&wl.t);
}


/* ---- injected I/O errors -------------------------------------------------------------- */

/* An I/O seam that fails operation number fail_at (and, when persistent,
 * every one after it) with -EIO, or -ENOSPC for writes and allocations. */
struct inject {
	long ops, fail_at;
	int persistent, failed;
};

static int inj_fail(struct inject *j, int enospc)
{
	long k = j->ops++;
	if (k == j->fail_at || (j->persistent && k > j->fail_at)) {
		j->failed = 1;
		return enospc ? -ENOSPC : -EIO;
	}
	return 0;
}

static int inj_open(void *ctx, int dirfd, const char *name, int flags, mode_t mode)
{
	int rc = inj_fail(ctx, 0);
	return rc ? rc : tr__log_sysio.open(NULL, dirfd, name, flags, mode);
}

static ssize_t inj_pread(void *ctx, int fd, void *buf, size_t n, off_t off)
{
	int rc = inj_fail(ctx, 0);
	return rc ? rc : tr__log_sysio.pread(NULL, fd, buf, n, off);
}

static ssize_t inj_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	int rc = inj_fail(ctx, 1);
	return rc ? rc : tr__log_sysio.pwrite(NULL, fd, buf, n, off);
}

static int inj_fdatasync(void *ctx, int fd)
{
	int rc = inj_fail(ctx, 0);
	return rc ? rc : tr__log_sysio.fdatasync(NULL, fd);
}

static int inj_fsync(void *ctx, int fd)
{
	int rc = inj_fail(ctx, 0);
	return rc ? rc : tr__log_sysio.fsync(NULL, fd);
}

static int inj_fallocate(void *ctx, int fd, off_t off, off_t len)
{
	int rc = inj_fail(ctx, 1);
	return rc ? rc : tr__log_sysio.fallocate(NULL, fd, off, len);
}

static int inj_renameat(void *ctx, int dirfd, const char *from, const char *to)
{
	int rc = inj_fail(ctx, 0);
	return rc ? rc : tr__log_sysio.renameat(NULL, dirfd, from, to);
}

static int inj_fstat_size(void *ctx, int fd, off_t *sizep)
{
	int rc = inj_fail(ctx, 0);
	return rc ? rc : tr__log_sysio.fstat_size(NULL, fd, sizep);
}

/*
 * Run a workload of @n records through @io; returns how many records were
 * acknowledged (their sync returned 0). Once any call failed, no later
 * one may succeed: a writer never acknowledges after an error.
 */
static uint32_t inj_workload(const struct tr_log_io *io, struct tlog *t, uint32_t n)
{
	struct tr_log_writer w;
	static uint8_t buf[1 << 16];
	if (tr__logw_open(&w, io, t->dir, 2000, NULL))
		return 0;
	uint32_t acked = 0, i = 0;
	int broken = 0;
	uint64_t pos = w.end;
	while (i < n) {
		uint32_t batch = 1 + i % 7;
		size_t used = 0;
		for (uint32_t k = 0; k < batch && i < n; k++, i++) {
			struct tr_logrec m;
			model(i, &m);
			m.seq = pos + used;
			t->seq[i] = m.seq;
			used += tr__logrec_encode(&m, buf + used, sizeof(buf) - used, 0);
			t->seq[i + 1] = pos + used;
		}
		int rc = tr__logw_write(&w, buf, used);
		if (!rc)
			rc = tr__logw_sync(&w);
		if (rc) {
			broken = 1;
			assert_int_equal(w.failed, 1);
			break;
		}
		assert_false(broken);
		acked = i;
		pos = w.end;
	}
	/* After a failure, everything is refused. */
	if (broken) {
		assert_rc(tr__logw_write(&w, buf, 0), -EIO);
		assert_rc(tr__logw_sync(&w), -EIO);
	}
	tr__logw_close(&w);
	return acked;
}

/* An error at every operation k of a workload, once and from k on: every
 * acknowledged record is in the log a clean scan finds afterwards, nothing
 * else but a prefix of what was written, and recovery appends after it. */
static void test_injected_errors(void **state)
{
	(void)state;
	model_init();
	struct inject probe = {0, -1, 0, 0};
	struct tr_log_io io = tr__log_sysio;
	io.ctx = &probe;
	io.open = inj_open;
	io.pread = inj_pread;
	io.pwrite = inj_pwrite;
	io.fdatasync = inj_fdatasync;
	io.fsync = inj_fsync;
	io.fallocate = inj_fallocate;
	io.renameat = inj_renameat;
	io.fstat_size = inj_fstat_size;
	enum { N = 120 };
	struct tlog t;
	snprintf(t.dir, sizeof(t.dir), "/dev/shm/taskring-logtest-XXXXXX");
	assert_non_null(mkdtemp(t.dir));
	t.n = N;
	t.seq = calloc(N + 1, sizeof(uint64_t));
	assert_non_null(t.seq);
	/* A first run without errors counts the operations. */
	assert_int_equal(inj_workload(&io, &t, N), N);
	long total = probe.ops;
	int runs = 0, false_acks = 0;
	for (int persistent = 0; persistent < 2; persistent++) {
		for (long k = 0; k < total; k++) {
			empty_dir(t.dir);
			struct inject j = {0, k, persistent, 0};
			io.ctx = &j;
			uint32_t acked = inj_workload(&io, &t, N);
			assert_true(j.failed);
			struct tr_log_scan s;
			struct check c;
			int rc = scan(&t, 0, &s, &c);
			if (rc || c.bogus || s.records < acked) {
				false_acks++;
				fail_msg("error at op %ld (%s): rc %d (%s), %llu records, %u acknowledged, %d bogus", k,
					 persistent ? "persistent" : "once", rc, s.error, (unsigned long long)s.records,
					 acked, c.bogus);
			}
			/* Recovery with working I/O goes on after it. */
			struct tr_log_writer w;
			assert_rc(tr__logw_open(&w, &tr__log_sysio, t.dir, 2000, &s), 0);
			assert_int_equal(w.end, t.seq[s.records]);
			tr__logw_close(&w);
			runs++;
		}
	}
	printf("# %d workloads of %ld operations, each failing at one of them (once or from then on): "
	       "%d false acknowledgements\n", runs, total, false_acks);
	empty_dir(t.dir);
	free_log(&t);
}


/* `taskring log verify|dump`: the extent, a torn tail, corruption with its
 * file and offset (exit 1), bad usage (exit 2); dump gives every record. */
static void test_tool(void **state)
{
	(void)state;
	struct tlog t;
	static char out[1 << 20];
	char path[128];
	model_init();
	make_log(&t, 300, 4096);
	assert_int_equal(run_tool("verify", t.dir, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "300 record(s)"));
	assert_null(strstr(out, "torn"));
	assert_int_equal(run_tool("dump", t.dir, out, sizeof(out)), 0);
	int lines = 0;
	for (char *p = out; (p = strchr(p, '\n')); p++)
		lines++;
	assert_int_equal(lines, 300);
	assert_int_equal(run_tool("dump", t.dir, out, 4096), 0);
	assert_true(out[0] == '0' && strstr(out, " enqueue ") != NULL);
	/* Options go anywhere (getopt_long permutes); --json goes with dump. */
	assert_int_equal(run_tool("dump --json", t.dir, out, 4096), 0);
	assert_true(out[0] == '{' && strstr(out, "\"type\":\"enqueue\"") != NULL);
	assert_int_equal(run_tool("verify --json", t.dir, out, sizeof(out)), 2);
	assert_int_equal(run_tool("verify --frob", t.dir, out, sizeof(out)), 2);
	assert_int_equal(run_tool("frobnicate", t.dir, out, sizeof(out)), 2);
	assert_int_equal(run_tool("verify", "/nonexistent-taskring-log", out, sizeof(out)), 1);
	assert_non_null(strstr(out, "cannot open the log directory"));

	/* Damage in the first segment: exit 1, file and offset named. */
	char name[32];
	tr__log_seg_name(0, name);
	snprintf(path, sizeof(path), "%s/%s", t.dir, name);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	off_t at = (off_t)(TR_LOG_SEG_HDR + t.seq[3] + 9);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	assert_int_equal(run_tool("verify", t.dir, out, sizeof(out)), 1);
	char want[96];
	snprintf(want, sizeof(want), "%s: corrupt record at offset %llu", name,
		 (unsigned long long)(TR_LOG_SEG_HDR + t.seq[3]));
	assert_non_null(strstr(out, want));
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
	free_log(&t);

	/* A torn tail is reported, not refused. */
	make_log(&t, 100, 1 << 20);
	fd = only_segment(&t, path, sizeof(path));
	assert_int_equal(ftruncate(fd, (off_t)(TR_LOG_SEG_HDR + t.seq[99] + 7)), 0);
	close(fd);
	assert_int_equal(run_tool("verify", t.dir, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "99 record(s)"));
	assert_non_null(strstr(out, "torn tail"));
	free_log(&t);
}

int main(void)
{
	tu_alarm(600);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_truncate_every_offset),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_middle_corruption),
		cmocka_unit_test(test_salt_and_repair),
		cmocka_unit_test(test_tool),
		cmocka_unit_test(test_power_loss_images),
		cmocka_unit_test(test_injected_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
