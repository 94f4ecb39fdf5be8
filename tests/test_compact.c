/*
 * test_compact.c - checkpoints and compaction of a store's log, on a real
 * disk (the build directory): a store's own processes compact the log as it
 * grows, so its size follows the live jobs, not the history; a store
 * recovered from a checkpoint and the segments after it is the store that
 * was lost, job by job and field by field; a compaction killed at any
 * moment (kill -9) leaves a log that recovers to the same store; a
 * simulated power loss at any write, sync, rename or deletion of a store's
 * life, compactions included, loses no acknowledged job or completion; a damaged checkpoint is refused with
 * its file and offset, never half-used; `taskring log compact` works on a
 * log by hand.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "wal.h"
#include "testutil.h"
#include "logsim.h"

static int cfx_setup(void **state);
#define T(fn) cmocka_unit_test_setup_teardown(fn, cfx_setup, dfx_teardown)

/* Open with the log in @dir; the tests that compact by hand (all but the
 * two that watch the store compact) set manual_compact. */
static int manual_compact;

static int cfx_setup(void **state)
{
	manual_compact = 0;
	return dfx_setup(state);
}

static struct taskring_store *open_logged(const char *name, const char *dir)
{
	struct taskring_store_opts o = log_opts(dir, TASKRING_DURABLE);
	if (manual_compact)
		o.flags |= TASKRING_STORE_MANUAL_COMPACT;
	struct taskring_store *st = NULL;
	int rc = taskring_store_open(name, &o, &st);
	if (rc)
		fail_msg("open with log %s: %d (%s)", dir, rc, taskring_strerror(rc));
	return st;
}

/* ---- a workload that uses every part of a job ------------------------------------------ */

static int h_work(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const char *p = taskring_ctx_payload(ctx, &len);
	(void)arg;
	if (len && p[0] == 'F') {
		taskring_ctx_error(ctx, "retry me (%.*s)", (int)(len < 20 ? len : 20), p);
		return TASKRING_RETRY;
	}
	if (len && p[0] == 'P') {
		taskring_ctx_error(ctx, "permanent (%zu bytes)", len);
		return TASKRING_FAIL;
	}
	char out[300];
	size_t n = len < sizeof(out) - 2 ? len : sizeof(out) - 2;
	out[0] = 'r';
	out[1] = ':';
	memcpy(out + 2, p, n);
	taskring_ctx_result(ctx, out, n + 2); /* inline (short) or in the arena */
	return TASKRING_OK;
}

struct load {
	struct taskring_store *st;
	struct taskring_worker *w;
	int round;
	int runs; /* per round: fewer than 40 leaves a backlog */
	uint64_t enqueued;
};

/* One round: 40 jobs of every kind, about 30 runs, cancels, priority
 * changes, and now and then a purge of what ended. */
static void load_round(struct load *l)
{
	static char payload[4096];
	static const char *const queues[] = {"default", "q2"};
	static const int64_t delays[] = {0, 0, 0};
	struct taskring_job made[40];
	for (int i = 0; i < 40; i++) {
		struct taskring_enqueue_opts o = tu_eopts();
		char ukey[32], meta[64];
		uint64_t r = ls_rng();
		size_t len = 8 + (size_t)(r % 2500);
		memset(payload, 'a' + (int)(r % 26), len);
		int n = snprintf(payload, 24, "%c%d-%d", (r >> 12) % 9 == 0 ? 'F' : (r >> 12) % 13 == 0 ? 'P' : 'j',
				 l->round, i);
		payload[n] = '.';
		o.queue = queues[(r >> 20) % 2];
		o.priority = (int32_t)((r >> 24) % 7) - 3;
		o.max_retries = (uint32_t)((r >> 28) % 3);
		o.backoff_base_ns = 0;
		if ((r >> 32) % 4 == 0) {
			snprintf(meta, sizeof(meta), "{\"round\":%d,\"i\":%d}", l->round, i);
			o.metadata = meta;
		}
		if ((r >> 34) % 5 == 0) {
			snprintf(ukey, sizeof(ukey), "u-%d-%d", l->round, i);
			o.unique_key = ukey;
		}
		if ((r >> 37) % 6 == 0) {
			o.retry_delays_ns = delays;
			o.n_retry_delays = 3;
		}
		if (i > 0 && (r >> 40) % 5 == 0) {
			o.depends_on = &made[(r >> 44) % (unsigned)i];
			o.n_depends_on = 1;
		}
		int rc = taskring_enqueue(l->st, "w", payload, len, &o, &made[i]);
		if (rc == TASKRING_EDEPFAILED || rc == -ENOENT) {
			o.depends_on = NULL; /* its dependency ended badly, or is gone */
			o.n_depends_on = 0;
			rc = taskring_enqueue(l->st, "w", payload, len, &o, &made[i]);
		}
		assert_rc(rc, 0);
		l->enqueued++;
	}
	for (int i = 0; i < l->runs; i++)
		if (taskring_worker_run_one(l->w, 0) < 0)
			fail_msg("run_one failed");
	for (int i = 0; i < 3; i++) {
		uint64_t r = ls_rng();
		taskring_job_cancel(&made[r % 40]);
		taskring_job_set_priority(&made[(r >> 8) % 40], (int32_t)((r >> 16) % 5));
	}
	if (l->round % 7 == 6) {
		uint64_t n;
		assert_rc(taskring_store_purge_terminal(l->st, 0, &n), 0);
	}
	l->round++;
}

static void load_start(struct load *l, struct taskring_store *st)
{
	static const char *const qs[] = {"default", "q2"};
	memset(l, 0, sizeof(*l));
	l->st = st;
	l->runs = 30;
	assert_rc(taskring_task_declare(st, "w"), 0);
	l->w = tu_worker(st, qs, 2, 1);
	assert_rc(taskring_worker_register(l->w, "w", h_work, NULL), 0);
}

/* ---- a store, job by job --------------------------------------------------------------------- */

struct snap {
	char **line;
	size_t n;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every job of @st as a line: its JSON (without the error ids, which are
 * made anew by a replay), payload, result and error history. */
static void snapshot(struct taskring_store *st, struct snap *s)
{
	static char json[1 << 16], blob[8192];
	memset(s, 0, sizeof(*s));
	uint64_t cur = 0;
	struct taskring_job j;
	while (taskring_job_next(st, 0, NULL, NULL, &cur, &j) == 1) {
		size_t cap = 1 << 17, len;
		char *line = malloc(cap), *p = line;
		assert_non_null(line);
		assert_true(taskring_job_to_json(&j, json, sizeof(json)) > 0);
		char *errs = strstr(json, ",\"errors\":[");
		if (errs)
			*errs = 0;
		p += snprintf(p, 1 << 16, "%s", json);
		assert_rc(taskring_job_payload(&j, blob, sizeof(blob), &len), 0);
		p += snprintf(p, 64, " payload=%zu:", len);
		for (size_t k = 0; k < len; k += 97)
			*p++ = blob[k];
		int st_ = taskring_job_status(&j);
		if (st_ == TASKRING_COMPLETE) {
			assert_rc(taskring_job_result(&j, 0, blob, sizeof(blob), &len), 0);
			p += snprintf(p, 400, " result=%.*s", (int)len, blob);
		}
		struct taskring_error_record er[8];
		int ne = taskring_job_errors(&j, er, 8);
		assert_true(ne >= 0);
		for (int k = 0; k < ne && k < 8; k++)
			p += snprintf(p, 1200, " err[%u@%lld]=%s", er[k].attempt, (long long)er[k].failed_at_ns,
				      er[k].error);
		*p = 0;
		s->line = realloc(s->line, (s->n + 1) * sizeof(*s->line));
		assert_non_null(s->line);
		s->line[s->n++] = line;
	}
	qsort(s->line, s->n, sizeof(*s->line), cmp_str);
}

static void snap_free(struct snap *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->line[i]);
	free(s->line);
	memset(s, 0, sizeof(*s));
}

static void snap_same(const struct snap *a, const struct snap *b, const char *what)
{
	if (a->n != b->n)
		fail_msg("%s: %zu jobs, then %zu", what, a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const char *x = a->line[i], *y = b->line[i];
		size_t k = 0;
		while (x[k] && x[k] == y[k])
			k++;
		if (x[k] || y[k])
			fail_msg("%s: job differs at byte %zu:\n  %.300s\n  ...%.300s\n  ...%.300s", what, k, x,
				 x + (k > 60 ? k - 60 : 0), y + (k > 60 ? k - 60 : 0));
	}
}

/* The log's files: segments, checkpoints, and their bytes on disk (the
 * spares, room kept for the jobs' ends, are not the log). */
static void dir_files(const char *dir, int *segs, int *ckpts, uint64_t *bytes)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	*segs = *ckpts = 0;
	*bytes = 0;
	for (struct dirent *e; (e = readdir(d));) {
		size_t n = strlen(e->d_name);
		struct stat sb;
		int seg = n > 5 && !strcmp(e->d_name + n - 5, ".tlog") && e->d_name[0] != '.';
		int ckpt = n > 6 && !strcmp(e->d_name + n - 6, ".tckpt") && e->d_name[0] != '.';
		if ((seg || ckpt) && fstatat(dirfd(d), e->d_name, &sb, 0) == 0)
			*bytes += (uint64_t)sb.st_blocks * 512;
		*segs += seg;
		*ckpts += ckpt;
	}
	closedir(d);
}

static void scan(const char *dir, struct tr_log_scan *s)
{
	memset(s, 0, sizeof(*s));
	int rc = tr__log_scan(&tr__log_sysio, dir, s);
	if (rc)
		fail_msg("scan %s: %d: %s", dir, rc, s->error);
}

/* Compact now, waiting while the store's own compaction holds the lock. */
static void compact_now(const char *dir, struct tr_compaction *c)
{
	char err[512] = "";
	for (int tries = 0;; tries++) {
		int rc = tr__log_compact(&tr__log_sysio, dir, NULL, c, err, sizeof(err));
		if (rc == 0)
			return;
		if (rc != -EBUSY || tries > 2000)
			fail_msg("compact %s: %d (%s) %s", dir, rc, taskring_strerror(rc), err);
		tu_sleep_ms(5);
	}
}

/* ---- tests -------------------------------------------------------------------------------- */

/*
 * A long history with a small live set: the store compacts its log by
 * itself, so the log's files stay a few segments while many times that was
 * written. Then the region is lost, and the store recovered from the
 * checkpoint and the segments after it is the one that was lost, job by
 * job; and the same again after a compaction by hand.
 */
static void test_log_bounded_and_recovered(void **state)
{
	struct dfx *f = *state;
	for (no_iouring = 0; no_iouring < 2; no_iouring++) {
		struct taskring_store *st = open_logged(f->fx.name, f->dir);
		struct load l;
		load_start(&l, st);
		l.runs = 45; /* no backlog: the live jobs stay about as many */
		int rounds = tu_sanitized() ? 110 : 260, max_segs = 0;
		for (int r = 0; r < rounds; r++) {
			load_round(&l);
			int segs, ckpts;
			uint64_t bytes;
			dir_files(f->dir, &segs, &ckpts, &bytes);
			if (r > rounds / 2 && segs > max_segs)
				max_segs = segs;
		}
		uint64_t written = st->hdr->h_log_end;
		/* Wait for a compaction of the store's own to finish. */
		for (int i = 0; i < 2000 && !atomic_load(&st->hdr->h_log_compactions); i++)
			tu_sleep_ms(5);
		uint64_t made = atomic_load(&st->hdr->h_log_compactions);
		assert_true(made >= 1);
		int segs, ckpts;
		uint64_t bytes;
		dir_files(f->dir, &segs, &ckpts, &bytes);
		printf("# %s: %d rounds, %llu jobs, %.1f MiB of records written; %llu compactions by the store, "
		       "at most %d segments in the second half; now %d segment(s), %d checkpoint, %.1f MiB on disk "
		       "(spares aside)\n",
		       no_iouring ? "pwrite" : "io_uring", rounds, (unsigned long long)l.enqueued, written / 1048576.0,
		       (unsigned long long)made, max_segs, segs, ckpts, bytes / 1048576.0);
		/* Bounded by the live jobs, not the history: the rule keeps
		 * at most twice the checkpoint and three segments after it,
		 * plus the spare and the new checkpoint being written. */
		struct tr_log_scan sc0;
		scan(f->dir, &sc0);
		assert_true(written > 6u << 20);
		assert_true(max_segs <= 6);
		if (bytes > 3 * sc0.ckpt_bytes + (5u << 20) || bytes > written / 2)
			fail_msg("%llu bytes on disk for a checkpoint of %llu", (unsigned long long)bytes,
				 (unsigned long long)sc0.ckpt_bytes);

		struct snap live, back;
		snapshot(st, &live);
		assert_true(live.n > 20);
		taskring_worker_destroy(l.w);
		assert_rc(taskring_store_close(st), 0);
		taskring_store_unlink(f->fx.name);
		struct tr_log_scan sc;
		scan(f->dir, &sc);
		assert_true(sc.ckpt[0] != 0);
		st = open_logged(f->fx.name, f->dir);
		snapshot(st, &back);
		snap_same(&live, &back, "recovered from the store's own checkpoint");
		snap_free(&back);
		/* (a record, so the recovered store starts its own segment) */
		struct taskring_job fj;
		struct taskring_enqueue_opts fo = tu_eopts();
		uint64_t nf;
		fo.queue = "filler";
		assert_rc(taskring_enqueue(st, "w", "x", 1, &fo, &fj), 0);
		assert_rc(taskring_queue_purge(st, "filler", &nf), 0);
		assert_rc(taskring_store_close(st), 0);
		taskring_store_unlink(f->fx.name);

		/* By hand: only the newest segment stays, with the checkpoint. */
		struct tr_compaction c;
		compact_now(f->dir, &c);
		assert_true(c.pos > 0 && c.jobs > 0);
		scan(f->dir, &sc);
		assert_int_equal(sc.segments, 1);
		assert_int_equal(sc.stale, 0);
		assert_int_equal(sc.ckpt_pos, c.pos);
		st = open_logged(f->fx.name, f->dir);
		snapshot(st, &back);
		snap_same(&live, &back, "recovered after a compaction by hand");
		snap_free(&back);
		snap_free(&live);
		assert_rc(taskring_store_close(st), 0);
		taskring_store_unlink(f->fx.name);
		rm_dir(f->dir);
		assert_int_equal(mkdir(f->dir, 0700), 0);
	}
}

/*
 * A store that goes on after its recovery from a checkpoint: its jobs run,
 * their dependents follow, and a second loss recovers that too.
 */
static void test_goes_on_after_checkpoint(void **state)
{
	struct dfx *f = *state;
	struct taskring_store *st = open_logged(f->fx.name, f->dir);
	assert_rc(taskring_task_declare(st, "w"), 0);
	struct taskring_job a, b, c;
	char ida[40], idb[40], idc[40];
	static char big[200000];
	memset(big, 'x', sizeof(big));
	struct taskring_enqueue_opts o = tu_eopts();
	assert_rc(taskring_enqueue(st, "w", "first", 5, &o, &a), 0);
	o.depends_on = &a;
	o.n_depends_on = 1;
	assert_rc(taskring_enqueue(st, "w", "second", 6, &o, &b), 0);
	o.depends_on = NULL;
	o.n_depends_on = 0;
	o.max_retries = 2;
	o.backoff_base_ns = 0;
	assert_rc(taskring_enqueue(st, "w", "Fthird", 6, &o, &c), 0);
	taskring_job_id(&a, ida), taskring_job_id(&b, idb), taskring_job_id(&c, idc);
	/* c fails once; then enough history (large payloads, purged) for
	 * three segments. */
	static const char *const qs[] = {"default"};
	f->fx.w = tu_worker(st, qs, 1, 1);
	assert_rc(taskring_worker_register(f->fx.w, "w", h_work, NULL), 0);
	assert_rc(taskring_job_set_priority(&c, 9), 0);
	assert_rc(taskring_worker_run_one(f->fx.w, 2 * SEC), 1);
	assert_rc(taskring_job_status(&c), TASKRING_PENDING);
	assert_rc(taskring_job_set_priority(&c, -9), 0);
	struct taskring_enqueue_opts lo = tu_eopts();
	lo.queue = "filler";
	for (int i = 0; i < 20; i++) {
		struct taskring_job j;
		uint64_t n;
		assert_rc(taskring_enqueue(st, "w", big, sizeof(big), &lo, &j), 0);
		assert_rc(taskring_queue_purge(st, "filler", &n), 0);
		assert_int_equal(n, 1);
	}
	taskring_worker_destroy(f->fx.w);
	f->fx.w = NULL;
	assert_rc(taskring_store_close(st), 0);
	taskring_store_unlink(f->fx.name);
	/* A checkpoint: the store's own (made as the log grew), or ours. */
	struct tr_compaction cp;
	struct tr_log_scan sc;
	compact_now(f->dir, &cp);
	scan(f->dir, &sc);
	assert_true(sc.ckpt[0] != 0);
	assert_true(sc.ckpt_jobs >= 3); /* (and the last filler, if its purge is after) */

	st = open_logged(f->fx.name, f->dir);
	struct taskring_job j;
	struct taskring_job_info in;
	assert_rc(taskring_job_lookup(st, idb, &j), 0);
	assert_rc(taskring_job_info(&j, &in), 0);
	assert_int_equal(in.status, TASKRING_PENDING);
	assert_int_equal(in.dependencies_left, 1);
	assert_rc(taskring_job_lookup(st, idc, &j), 0);
	assert_rc(taskring_job_info(&j, &in), 0);
	assert_int_equal(in.retry_count, 1);
	assert_int_equal(in.priority, -9);
	struct taskring_error_record er[4];
	assert_rc(taskring_job_errors(&j, er, 4), 1);
	assert_string_equal(er[0].error, "retry me (Fthird)");
	f->fx.w = tu_worker(st, qs, 1, 1);
	assert_rc(taskring_worker_register(f->fx.w, "w", h_work, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_rc(taskring_worker_run_one(f->fx.w, 2 * SEC), 1); /* a, b, c twice */
	assert_rc(taskring_job_lookup(st, idb, &j), 0);
	size_t len;
	char buf[64];
	assert_rc(taskring_job_result(&j, 0, buf, sizeof(buf), &len), 0);
	assert_memory_equal(buf, "r:second", 8);
	assert_rc(taskring_job_lookup(st, idc, &j), 0);
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);
	taskring_worker_destroy(f->fx.w);
	f->fx.w = NULL;
	assert_rc(taskring_store_close(st), 0);
	taskring_store_unlink(f->fx.name);
	st = open_logged(f->fx.name, f->dir);
	assert_rc(taskring_job_lookup(st, idc, &j), 0);
	assert_rc(taskring_job_errors(&j, er, 4), 3); /* max_retries 2: three attempts */
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);
	assert_rc(taskring_job_lookup(st, ida, &j), 0);
	assert_rc(taskring_job_status(&j), TASKRING_COMPLETE);
	f->fx.st = st;
}

/* A log made by a workload, its region gone; the snapshot of the store it
 * recovers to in @want. */
static void make_history(struct dfx *f, int rounds, struct snap *want)
{
	manual_compact = 1; /* (reset by the fixture) */
	struct taskring_store *st = open_logged(f->fx.name, f->dir);
	struct load l;
	load_start(&l, st);
	for (int r = 0; r < rounds; r++)
		load_round(&l);
	taskring_worker_destroy(l.w);
	assert_rc(taskring_store_close(st), 0);
	taskring_store_unlink(f->fx.name);
	st = open_logged(f->fx.name, f->dir);
	snapshot(st, want);
	assert_rc(taskring_store_close(st), 0);
	taskring_store_unlink(f->fx.name);
}

/*
 * Compactions killed (-9) at random moments, over and over on the same
 * log: each time, the store recovered from what is left is the same store.
 */
static void test_kill_during_compaction(void **state)
{
	struct dfx *f = *state;
	struct snap want, got;
	make_history(f, 60, &want);
	int rounds = tu_sanitized() ? 12 : 60, finished = 0, killed = 0;
	int64_t span = 0;
	tu_kids_init(60, 5);
	for (int r = 0; r < rounds; r++) {
		/* A fresh segment between rounds, so each has one to fold. */
		struct taskring_store *st = open_logged(f->fx.name, f->dir);
		struct taskring_job j;
		struct taskring_enqueue_opts lo = tu_eopts();
		static char big[400000];
		uint64_t n;
		lo.queue = "filler";
		assert_rc(taskring_enqueue(st, "w", big, r % 2 ? sizeof(big) : 10, &lo, &j), 0);
		assert_rc(taskring_queue_purge(st, "filler", &n), 0);
		assert_rc(taskring_store_close(st), 0);
		taskring_store_unlink(f->fx.name);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct tr_compaction c;
			_exit(tr__log_compact(&tr__log_sysio, f->dir, NULL, &c, NULL, 0) ? 1 : 0);
		}
		/* The first runs to its end, and says how long one takes; the
		 * others are killed anywhere in 1.5 times that. */
		int64_t t0 = tu_now_ns();
		if (r == 0) {
			assert_int_equal(tu_wait_child(pid), 0);
			span = tu_now_ns() - t0;
			finished++;
			goto check;
		}
		tu_sleep_ns((int64_t)(ls_rng() % (uint64_t)(span + span / 2 + 1)));
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFEXITED(status)) {
			assert_int_equal(WEXITSTATUS(status), 0);
			finished++;
		} else {
			killed++;
		}
	check:
		st = open_logged(f->fx.name, f->dir);
		snapshot(st, &got);
		snap_same(&want, &got, "after a killed compaction");
		snap_free(&got);
		assert_rc(taskring_store_close(st), 0);
		taskring_store_unlink(f->fx.name);
	}
	struct tr_log_scan sc;
	scan(f->dir, &sc);
	printf("# %d compactions killed at random moments, %d finished first (one takes %.1f ms); the store "
	       "recovered the same each time (%zu jobs)\n",
	       killed, finished, span / 1e6, want.n);
	assert_true(killed > 0);
	snap_free(&want);
}

/* ---- power loss ---------------------------------------------------------------------------- */

/*
 * Power loss at any moment of a store's life that includes compactions:
 * every write, sync, rename and deletion is recorded, and disk images of
 * a power loss after each operation are made. Each recovers to a store that
 * has every acknowledged job (complete where that was acknowledged) and
 * nothing never enqueued; and images with a checkpoint are among them.
 */
static void test_power_loss_with_compaction(void **state)
{
	struct dfx *f = *state;
	enum { JOBS = 160 };
	static struct rec r;
	static struct tr_log_io io;
	static struct pl_ack acks[2 * JOBS];
	int nacks = 0, compactions = 0;
	memset(&r, 0, sizeof(r));
	io = rec_io(&r);
	tr__wal_test_io = &io;
	struct taskring_store_opts o = log_opts(f->dir, TASKRING_DURABLE);
	o.slots = 256; /* no job is recycled: each acknowledged one stays */
	struct taskring_store *st = NULL;
	assert_rc(taskring_store_open(NULL, &o, &st), 0);
	assert_rc(taskring_task_declare(st, "n"), 0);
	struct taskring_worker *w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(w, "n", pl_note, NULL), 0);
	static char big[24 * 1024];
	for (int i = 0; i < JOBS; i++) {
		struct taskring_job j;
		memcpy(big, &i, sizeof(i));
		assert_rc(taskring_enqueue(st, "n", big, sizeof(big), NULL, &j), 0);
		acks[nacks].op = r.nops;
		acks[nacks].completed = 0;
		taskring_job_id(&j, acks[nacks++].id);
		if (i % 3 != 0) {
			assert_rc(taskring_worker_run_one(w, 0), 1);
			acks[nacks].op = r.nops;
			acks[nacks].completed = 1;
			memcpy(acks[nacks++].id, pl_ran_id, sizeof(pl_ran_id));
		}
		if (i % 20 == 19) {
			struct tr_compaction c;
			assert_rc(tr__log_compact(&io, f->dir, NULL, &c, NULL, 0), 0);
			compactions += c.pos != 0;
		}
	}
	taskring_worker_destroy(w);
	assert_rc(taskring_store_close(st), 0);
	tr__wal_test_io = NULL;
	assert_true(compactions >= 2);

	/* The images are made in tmpfs: the recording is the disk here,
	 * and what a recovery writes to an image need not reach one. */
	char img[PATH_MAX + 16];
	snprintf(img, sizeof(img), "/dev/shm/taskring-img-XXXXXX");
	if (!mkdtemp(img)) {
		snprintf(img, sizeof(img), "%s-img-XXXXXX", f->dir);
		assert_non_null(mkdtemp(img));
	}
	int images = tu_sanitized() ? 150 : 1200, with_ckpt = 0;
	for (int k = 0; k < images; k++) {
		size_t p = (size_t)(ls_rng() % (r.nops + 1));
		empty_dir(img);
		make_image(&r, p, img);
		struct taskring_store_opts o2 = log_opts(img, TASKRING_DURABLE);
		o2.slots = 0;
		o2.flags |= TASKRING_STORE_MANUAL_COMPACT; /* (the image is checked, not grown) */
		struct tr_log_scan sc;
		memset(&sc, 0, sizeof(sc));
		if (tr__log_scan(&tr__log_sysio, img, &sc) == 0 && sc.ckpt[0])
			with_ckpt++;
		pl_check_image(k, p, r.nops, img, &o2, acks, nacks);
	}
	printf("# %d power-loss images of %zu operations with %d compactions (%d images with a checkpoint), each "
	       "recovered\n",
	       images, r.nops, compactions, with_ckpt);
	assert_true(with_ckpt > 0);
	empty_dir(img);
	rmdir(img);
	rec_free(&r);
}

/* ---- damage ----------------------------------------------------------------------------------- */

/*
 * A checkpoint is whole or refused: cut anywhere, or with a bit
 * flipped anywhere, the scan fails with the checkpoint's name and never
 * hands on a job it did not check. Segments before it are ignored; a
 * missing segment at its position is named.
 */
static void test_checkpoint_damage(void **state)
{
	struct dfx *f = *state;
	struct snap want;
	make_history(f, 30, &want); /* (more than a segment: one to fold) */
	struct tr_compaction c;
	compact_now(f->dir, &c);
	assert_true(c.pos > 0);
	char name[32], path[PATH_MAX + 40];
	tr__log_ckpt_name(c.pos, name);
	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	size_t size;
	uint8_t *orig = slurp(fd, &size);
	assert_int_equal((uint64_t)size, c.bytes);
	/* Cuts all through it (every byte of a small one; 20,000 spread
	 * over a larger one, 4,000 under a sanitizer). */
	size_t spread = tu_sanitized() ? 4000 : 20000;
	size_t step = size > spread ? size / spread : 1, cuts = 0;
	for (size_t at = 0; at < size; at += step, cuts++) {
		assert_int_equal(ftruncate(fd, (off_t)at), 0);
		struct tr_log_scan s;
		memset(&s, 0, sizeof(s));
		int rc = tr__log_scan(&tr__log_sysio, f->dir, &s);
		if (rc != -EBADMSG || !strstr(s.error, name))
			fail_msg("cut at %zu of %zu: scan = %d (%s)", at, size, rc, s.error);
	}
	assert_int_equal(pwrite(fd, orig, size, 0), (ssize_t)size);
	/* Bit flips. */
	int flips = tu_sanitized() ? 1000 : 10000;
	for (int k = 0; k < flips; k++) {
		size_t at = (size_t)(ls_rng() % size);
		uint8_t b = orig[at] ^ (uint8_t)(1u << (ls_rng() % 8));
		assert_int_equal(pwrite(fd, &b, 1, (off_t)at), 1);
		struct tr_log_scan s;
		memset(&s, 0, sizeof(s));
		int rc = tr__log_scan(&tr__log_sysio, f->dir, &s);
		if (rc != -EBADMSG || !strstr(s.error, name))
			fail_msg("bit flip at %zu: scan = %d (%s)", at, rc, s.error);
		assert_int_equal(pwrite(fd, &orig[at], 1, (off_t)at), 1);
	}
	close(fd);
	printf("# checkpoint of %zu bytes: %zu cuts and %d bit flips, each refused with its name\n", size, cuts,
	       flips);
	struct taskring_store_opts o = log_opts(f->dir, TASKRING_DURABLE);
	o.flags |= TASKRING_STORE_MANUAL_COMPACT;

	/* A stale segment from before it (a compaction that died before its
	 * deletions) is ignored, reported, and deleted by the next. */
	char seg0[32], seg0p[PATH_MAX + 40];
	tr__log_seg_name(0, seg0);
	snprintf(seg0p, sizeof(seg0p), "%s/%s", f->dir, seg0);
	int sfd = open(seg0p, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(sfd >= 0);
	assert_int_equal(pwrite(sfd, "garbage", 7, 0), 7);
	close(sfd);
	struct tr_log_scan s;
	scan(f->dir, &s);
	assert_int_equal(s.stale, 1);
	struct taskring_store *st = NULL;
	assert_rc(taskring_store_open(f->fx.name, &o, &st), 0);
	struct snap got;
	snapshot(st, &got);
	snap_same(&want, &got, "with a stale segment");
	snap_free(&got);
	/* (a new segment, then a compaction that folds it) */
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "w", "x", 1, NULL, &j), 0);
	assert_rc(taskring_store_close(st), 0);
	taskring_store_unlink(f->fx.name);
	compact_now(f->dir, &c);
	assert_int_equal(access(seg0p, F_OK), -1);

	/* The segment at the checkpoint's position missing: named. */
	tr__log_seg_name(c.pos, seg0);
	snprintf(seg0p, sizeof(seg0p), "%s/%s", f->dir, seg0);
	char moved[PATH_MAX + 48];
	snprintf(moved, sizeof(moved), "%s.away", seg0p);
	assert_int_equal(rename(seg0p, moved), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(tr__log_scan(&tr__log_sysio, f->dir, &s), -EBADMSG);
	assert_non_null(strstr(s.error, "no segment begins there"));
	assert_rc(taskring_store_open(f->fx.name, &o, &st), TASKRING_ELOGCORRUPT);
	assert_int_equal(rename(moved, seg0p), 0);
	free(orig);
	snap_free(&want);
}

/* `taskring log compact|verify|dump` on a log. */
static void test_tool(void **state)
{
	struct dfx *f = *state;
	static char out[1 << 22];
	struct snap want;
	make_history(f, 30, &want);
	assert_int_equal(run_tool("compact", f->dir, out, sizeof(out)), 0);
	char *at = strstr(out, "checkpoint at sequence ");
	assert_non_null(at);
	unsigned long long pos, njobs;
	assert_int_equal(sscanf(at, "checkpoint at sequence %llu: %llu job(s)", &pos, &njobs), 2);
	assert_true(pos > 0 && njobs > 0 && njobs <= want.n);
	assert_int_equal(run_tool("compact", f->dir, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "nothing to compact"));
	assert_int_equal(run_tool("verify", f->dir, out, sizeof(out)), 0);
	char line[128];
	snprintf(line, sizeof(line), ".tckpt: %llu job(s)", njobs);
	assert_non_null(strstr(out, line));
	snprintf(line, sizeof(line), "covers the log up to sequence %llu", pos);
	assert_non_null(strstr(out, line));
	assert_int_equal(run_tool("dump", f->dir, out, sizeof(out)), 0);
	unsigned long long n = 0;
	for (char *p = out; (p = strstr(p, " job ")); p++)
		n++;
	assert_int_equal(n, njobs);
	assert_non_null(strstr(out, " checkpoint_begin "));
	assert_non_null(strstr(out, " checkpoint_end "));
	/* One compaction at a time. */
	int lock = tr__log_lock(f->dir, 1, 0);
	assert_true(lock >= 0);
	assert_int_equal(run_tool("compact", f->dir, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "already under way"));
	close(lock);
	assert_int_equal(run_tool("compact", "/nonexistent-taskring-log", out, sizeof(out)), 1);
	snap_free(&want);
}

int main(void)
{
	tu_alarm(900);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		T(test_goes_on_after_checkpoint),
		T(test_checkpoint_damage),
		T(test_tool),
		T(test_kill_during_compaction),
		T(test_power_loss_with_compaction),
		T(test_log_bounded_and_recovered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
