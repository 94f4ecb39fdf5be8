/*
 * test_durable.c - stores with a log, on a real disk (the build directory;
 * never tmpfs, where fdatasync is a no-op): jobs, results, error histories,
 * dead letters, cancels and dependencies survive the loss of the region;
 * a job that was running comes back as an interrupted attempt; reopening
 * a region that survived replays nothing; concurrent durable callers share
 * a flush; a failed sync is never acknowledged and stops durable work; the
 * ASYNC mode gets records to disk without anyone waiting; and producers and
 * workers killed at random moments never lose an acknowledged job nor
 * duplicate one. Every test runs with io_uring and with pwrite/fdatasync.
 * (Simulated power loss at any moment of a store's life: test_compact.c.)
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "wal.h"
#include "testutil.h"
#include "logsim.h"

#define T(fn) cmocka_unit_test_setup_teardown(fn, dfx_setup, dfx_teardown)

static struct taskring_store *open_logged(struct dfx *f, uint32_t durability)
{
	struct taskring_store_opts o = log_opts(f->dir, durability);
	struct taskring_store *st = NULL;
	assert_rc(taskring_store_open(f->fx.name, &o, &st), 0);
	return st;
}

/* The host goes down: the region is gone, only the log is left. (Closing
 * the handle flushes nothing a durable store had not flushed already.) */
static void lose_region(struct dfx *f, struct taskring_store **st)
{
	if (f->fx.w) {
		taskring_worker_destroy(f->fx.w);
		f->fx.w = NULL;
	}
	if (*st)
		assert_rc(taskring_store_close(*st), 0);
	*st = NULL;
	taskring_store_unlink(f->fx.name);
}

static int h_echo(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const char *p = taskring_ctx_payload(ctx, &len);
	(void)arg;
	if (len && p[0] == 'F') {
		taskring_ctx_error(ctx, "failing on purpose (%.*s)", (int)len, p);
		return TASKRING_RETRY;
	}
	char out[200];
	int n = snprintf(out, sizeof(out), "done:%.*s", (int)(len < 100 ? len : 100), p);
	taskring_ctx_result(ctx, out, (size_t)n);
	return TASKRING_OK;
}

static void id_of(const struct taskring_job *j, char *out)
{
	assert_rc(taskring_job_id(j, out), 0);
}

/* Jobs in every state, the region lost, the store recovered from its log:
 * each job as it was, by id. */
static void survive(struct dfx *f)
{
	struct taskring_store *st = open_logged(f, TASKRING_DURABLE);
	struct taskring_job a, b, c, d, e, g;
	char ida[40], idb[40], idc[40], idd[40], ide[40], idg[40];
	static char big[3000];
	memset(big, 'x', sizeof(big));

	assert_rc(taskring_task_declare(st, "echo"), 0);
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 1;
	o.backoff_base_ns = 0;
	o.metadata = "{\"k\": 1}";
	assert_rc(taskring_enqueue(st, "echo", "alpha", 5, &o, &a), 0);          /* will complete */
	assert_rc(taskring_enqueue(st, "echo", "Fail", 4, &o, &b), 0);           /* will die */
	o.metadata = NULL;
	o.unique_key = "only-one";
	o.priority = 7;
	assert_rc(taskring_enqueue(st, "echo", big, sizeof(big), &o, &c), 0); /* stays pending */
	o.unique_key = NULL;
	o.priority = 0;
	assert_rc(taskring_enqueue(st, "echo", "gone", 4, &o, &d), 0);           /* cancelled */
	o.depends_on = &c;
	o.n_depends_on = 1;
	assert_rc(taskring_enqueue(st, "echo", "after-c", 7, &o, &e), 0);        /* waits on c */
	o.depends_on = NULL;
	o.n_depends_on = 0;
	o.queue = "other";
	assert_rc(taskring_enqueue(st, "echo", "later", 5, &o, &g), 0);          /* pending, other queue */
	assert_rc(taskring_job_cancel(&d), 0);
	id_of(&a, ida), id_of(&b, idb), id_of(&c, idc), id_of(&d, idd), id_of(&e, ide), id_of(&g, idg);

	/* A worker on "default" runs a and b (twice: dead) but not c: c is
	 * behind... c has priority 7, so pause: run a and b by hand. */
	f->fx.w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(f->fx.w, "echo", h_echo, NULL), 0);
	assert_rc(taskring_job_set_priority(&c, -5), 0);
	for (int i = 0; i < 3; i++)
		assert_rc(taskring_worker_run_one(f->fx.w, 2 * SEC), 1);
	assert_rc(taskring_job_status(&a), TASKRING_COMPLETE);
	assert_rc(taskring_job_status(&b), TASKRING_DEAD);
	assert_rc(taskring_job_status(&c), TASKRING_PENDING);

	lose_region(f, &st);
	st = open_logged(f, TASKRING_DURABLE);
	char buf[4096];
	size_t len;
	struct taskring_job j;
	struct taskring_job_info in;
	assert_rc(taskring_job_lookup(st, ida, &j), 0);
	assert_rc(taskring_job_result(&j, 0, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 10);
	assert_memory_equal(buf, "done:alpha", 10);
	assert_rc(taskring_job_to_json(&j, buf, sizeof(buf)) > 0, 1);
	assert_non_null(strstr(buf, "\"metadata\":\"{\\\"k\\\": 1}\""));
	assert_rc(taskring_job_lookup(st, idb, &j), 0);
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);
	struct taskring_error_record er[4];
	assert_rc(taskring_job_errors(&j, er, 4), 2);
	assert_string_equal(er[0].error, "failing on purpose (Fail)");
	assert_int_equal(er[1].attempt, 1);
	assert_rc(taskring_job_lookup(st, idc, &j), 0);
	assert_rc(taskring_job_info(&j, &in), 0);
	assert_int_equal(in.status, TASKRING_PENDING);
	assert_int_equal(in.priority, -5);
	assert_int_equal(in.payload_len, sizeof(big));
	assert_rc(taskring_job_payload(&j, buf, sizeof(buf), &len), 0);
	assert_memory_equal(buf, big, sizeof(big));
	/* Its unique key still holds. */
	struct taskring_enqueue_opts u = tu_eopts();
	u.unique_key = "only-one";
	struct taskring_job same;
	assert_rc(taskring_enqueue(st, "echo", NULL, 0, &u, &same), 1);
	assert_rc(taskring_job_lookup(st, idd, &j), 0);
	assert_rc(taskring_job_status(&j), TASKRING_CANCELLED);
	assert_rc(taskring_job_lookup(st, ide, &j), 0);
	assert_rc(taskring_job_info(&j, &in), 0);
	assert_int_equal(in.status, TASKRING_PENDING);
	assert_int_equal(in.dependencies_left, 1);
	assert_rc(taskring_job_lookup(st, idg, &j), 0);
	assert_rc(taskring_job_info(&j, &in), 0);
	assert_string_equal(in.queue, "other");

	/* And it goes on: c then e run; e only after c. */
	f->fx.w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(f->fx.w, "echo", h_echo, NULL), 0);
	assert_rc(taskring_worker_run_one(f->fx.w, 2 * SEC), 1);
	assert_rc(taskring_worker_run_one(f->fx.w, 2 * SEC), 1);
	assert_rc(taskring_job_lookup(st, ide, &j), 0);
	assert_rc(taskring_job_result(&j, 0, buf, sizeof(buf), &len), 0);
	assert_memory_equal(buf, "done:after-c", 12);

	/* Recovered twice: the same again (the recovery's own records and
	 * the runs since are in the log). */
	lose_region(f, &st);
	st = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_job_lookup(st, ide, &j), 0);
	assert_rc(taskring_job_status(&j), TASKRING_COMPLETE);
	assert_rc(taskring_job_lookup(st, idc, &j), 0);
	assert_rc(taskring_job_status(&j), TASKRING_COMPLETE);
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
	assert_int_equal(qs.by_status[TASKRING_PENDING], 1); /* g */
	assert_int_equal(qs.by_status[TASKRING_COMPLETE], 3);
	assert_int_equal(qs.by_status[TASKRING_DEAD], 1);
	assert_int_equal(qs.by_status[TASKRING_CANCELLED], 1);
	f->fx.st = st;
}

static void test_survives_region_loss(void **state)
{
	for (no_iouring = 0; no_iouring < 2; no_iouring++) {
		struct dfx *f = *state;
		survive(f);
		lose_region(f, &f->fx.st);
		rm_dir(f->dir);
		assert_int_equal(mkdir(f->dir, 0700), 0);
	}
}

/* A job running when the host went down comes back as an interrupted
 * attempt: retried if it has retries left, else dead. */
struct hang_arg {
	char name[64];
	char dir[PATH_MAX];
	int no_iouring;
	_Atomic int started; /* handlers running (their start is logged) */
};

static int h_hang(struct taskring_ctx *ctx, void *arg)
{
	struct hang_arg *h = arg;
	(void)ctx;
	atomic_fetch_add(&h->started, 1);
	for (;;)
		pause();
	return TASKRING_OK;
}

/*
 * In a child: open the store @name (its log in @dir) and run a worker of
 * @threads threads for @task with @fn until killed.
 */
static int child_worker(const char *dir, const char *name, int no_iour, uint32_t threads, const char *task,
			taskring_handler_fn fn, void *arg)
{
	struct taskring_store_opts o = log_opts(dir, TASKRING_DURABLE);
	struct taskring_store *st = NULL;
	struct taskring_worker *w = NULL;
	o.flags = no_iour ? TASKRING_STORE_NO_IOURING : 0;
	o.slots = 0;
	CK_RC(taskring_store_open(name, &o, &st), 0);
	CK_RC(tu_worker_create(st, NULL, 0, threads, &w), 0);
	CK_RC(taskring_worker_register(w, task, fn, arg), 0);
	CK_RC(taskring_worker_start(w), 0);
	for (;;)
		pause();
	return 0;
}

static int hang_worker(void *arg, int ctl, int ack)
{
	struct hang_arg *h = arg;
	(void)ctl;
	(void)ack;
	return child_worker(h->dir, h->name, h->no_iouring, 2, "hang", h_hang, h);
}

static void test_running_job_interrupted(void **state)
{
	struct dfx *f = *state;
	for (no_iouring = 0; no_iouring < 2; no_iouring++) {
		struct taskring_store *st = open_logged(f, TASKRING_DURABLE);
		struct taskring_job once, twice;
		char id1[40], id2[40];
		assert_rc(taskring_task_declare(st, "hang"), 0);
		struct taskring_enqueue_opts o = tu_eopts();
		o.max_retries = 0;
		assert_rc(taskring_enqueue(st, "hang", NULL, 0, &o, &once), 0);
		o.max_retries = 2;
		assert_rc(taskring_enqueue(st, "hang", NULL, 0, &o, &twice), 0);
		id_of(&once, id1);
		id_of(&twice, id2);
		struct hang_arg *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		assert_true(h != MAP_FAILED);
		snprintf(h->name, sizeof(h->name), "%s", f->fx.name);
		snprintf(h->dir, sizeof(h->dir), "%s", f->dir);
		h->no_iouring = no_iouring;
		tu_kids_init(60, 2);
		pid_t kid = tu_spawn(hang_worker, h);
		/* A handler runs only after its start was staged in the log;
		 * those records reach the disk with the next flush. */
		assert_int_equal(tu_wait_int(&h->started, 2, 10000), 1);
		assert_rc(tr__wal_sync(st), 0);
		kill(kid, SIGKILL);
		tu_kid_join(kid, 10000);
		lose_region(f, &st);
		st = open_logged(f, TASKRING_DURABLE);
		struct taskring_job j;
		char err[256];
		assert_rc(taskring_job_lookup(st, id1, &j), 0);
		assert_rc(taskring_job_status(&j), TASKRING_DEAD);
		assert_true(taskring_job_error(&j, err, sizeof(err)) > 0);
		assert_non_null(strstr(err, "interrupted"));
		assert_rc(taskring_job_lookup(st, id2, &j), 0);
		struct taskring_job_info in;
		assert_rc(taskring_job_info(&j, &in), 0);
		assert_int_equal(in.status, TASKRING_PENDING);
		assert_int_equal(in.retry_count, 1);
		assert_int_equal(in.error_count, 1);
		lose_region(f, &st);
		munmap(h, sizeof(*h));
		rm_dir(f->dir);
		assert_int_equal(mkdir(f->dir, 0700), 0);
	}
}

/* Purges are recorded: recovery does not bring purged jobs back. */
static void test_purges_are_logged(void **state)
{
	struct dfx *f = *state;
	for (no_iouring = 0; no_iouring < 2; no_iouring++) {
		struct taskring_store *st = open_logged(f, TASKRING_DURABLE);
		struct taskring_job j[4];
		char ids[4][40];
		assert_rc(taskring_task_declare(st, "echo"), 0);
		for (int i = 0; i < 4; i++) {
			assert_rc(taskring_enqueue(st, "echo", "x", 1, NULL, &j[i]), 0);
			id_of(&j[i], ids[i]);
		}
		f->fx.w = tu_worker(st, NULL, 0, 1);
		assert_rc(taskring_worker_register(f->fx.w, "echo", h_echo, NULL), 0);
		assert_rc(taskring_worker_run_one(f->fx.w, 2 * SEC), 1);
		uint64_t n = 0;
		assert_rc(taskring_store_purge_terminal(st, 0, &n), 0);
		assert_int_equal(n, 1);
		assert_rc(taskring_queue_purge(st, "default", &n), 0);
		assert_int_equal(n, 3);
		lose_region(f, &st);
		st = open_logged(f, TASKRING_DURABLE);
		for (int i = 0; i < 4; i++) {
			struct taskring_job k;
			assert_rc(taskring_job_lookup(st, ids[i], &k), -ENOENT);
		}
		lose_region(f, &st);
		rm_dir(f->dir);
		assert_int_equal(mkdir(f->dir, 0700), 0);
	}
}

/*
 * A real full disk: a 4 MiB tmpfs mounted for the test (skipped, saying so,
 * where mounting is not allowed). New jobs are refused with -ENOSPC and
 * nothing changes; every job already in the store ends, on the room kept
 * for it: small jobs (a small enqueue record each) whose ends are large
 * (half of them fail for good with an error of 1,000 bytes), so the room
 * their ends take was set aside when they were made, not found at the end.
 * Once space is freed, enqueueing works again, without reopening; and a
 * recovery afterwards has every end.
 */
static int h_long_error(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const char *p = taskring_ctx_payload(ctx, &len);
	(void)arg;
	if (len && p[0] & 1) {
		static char msg[1001];
		memset(msg, 'e', 1000);
		taskring_ctx_error(ctx, "%s", msg);
		return TASKRING_FAIL;
	}
	taskring_ctx_result(ctx, "ok", 2);
	return TASKRING_OK;
}

static void test_full_disk(void **state)
{
	struct dfx *f = *state;
	char mnt[PATH_MAX + 8], logdir[PATH_MAX + 16], filler[PATH_MAX + 16];
	snprintf(mnt, sizeof(mnt), "%s/mnt", f->dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("taskring-test", mnt, "tmpfs", 0, "size=4m,mode=0700") != 0) {
		int err = errno;
		rmdir(mnt);
		print_message("# skipped: cannot mount a 4 MiB tmpfs for a full disk (%s)\n", strerror(err));
		skip();
	}
	snprintf(logdir, sizeof(logdir), "%s/log", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	/* 1.5 MiB that the test frees later (room for a spare segment). */
	int fd = open(filler, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fallocate(fd, 0, 0, 1536 * 1024), 0);
	close(fd);

	struct taskring_store_opts o = log_opts(logdir, TASKRING_DURABLE);
	o.slots = 4096;
	struct taskring_store *st = NULL;
	assert_rc(taskring_store_open(f->fx.name, &o, &st), 0);
	assert_rc(taskring_task_declare(st, "echo"), 0);
	static char payload[16];
	int made = 0, rc = 0;
	static char ids[4096][TASKRING_ID_LEN + 1];
	for (; made < 4000; made++) {
		struct taskring_job j;
		payload[0] = (char)made;
		if ((rc = taskring_enqueue(st, "echo", payload, sizeof(payload), NULL, &j)) != 0)
			break;
		taskring_job_id(&j, ids[made]);
	}
	assert_rc(rc, -ENOSPC);
	assert_true(made > 100);
	struct taskring_queue_stats a, b;
	assert_rc(taskring_queue_stats(st, NULL, &a), 0);
	struct taskring_job none = {0};
	assert_rc(taskring_enqueue(st, "echo", payload, sizeof(payload), NULL, &none), -ENOSPC);
	assert_null(none.store);
	assert_rc(taskring_queue_stats(st, NULL, &b), 0);
	tu_assert_stats_same(&a, &b);

	/* Every job in the store ends: half complete, half fail with their
	 * long errors. */
	f->fx.w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(f->fx.w, "echo", h_long_error, NULL), 0);
	for (int i = 0; i < made; i++)
		assert_rc(taskring_worker_run_one(f->fx.w, 2 * SEC), 1);
	assert_rc(taskring_queue_stats(st, NULL, &b), 0);
	assert_int_equal(b.by_status[TASKRING_COMPLETE], (made + 1) / 2);
	assert_int_equal(b.by_status[TASKRING_FAILED], made / 2);
	assert_int_equal(b.by_status[TASKRING_PENDING], 0);

	/* Space again: enqueueing works again. */
	assert_int_equal(unlink(filler), 0);
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "echo", payload, 16, NULL, &j), 0);

	/* And the completions were durable. */
	lose_region(f, &st);
	assert_rc(taskring_store_open(f->fx.name, &o, &st), 0);
	for (int i = 0; i < made; i += 7) {
		struct taskring_job k;
		assert_rc(taskring_job_lookup(st, ids[i], &k), 0);
		assert_rc(taskring_job_status(&k), i & 1 ? TASKRING_FAILED : TASKRING_COMPLETE);
	}
	printf("# full disk: %d small jobs made before -ENOSPC, all ended (half with 1,000-byte errors) on the room "
	       "kept for them\n",
	       made);
	lose_region(f, &st);
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
}

/* Damage before the log's end: the store is not opened, and the error
 * says where to look; the tool names the file and the offset. */
static void test_corrupt_middle_refused(void **state)
{
	struct dfx *f = *state;
	struct taskring_store *st = open_logged(f, TASKRING_DURABLE);
	static char payload[1000];
	assert_rc(taskring_task_declare(st, "t"), 0);
	/* Over 1 MiB of records: two segments at least. */
	for (int i = 0; i < 1500; i++)
		assert_rc(taskring_enqueue(st, "t", payload, sizeof(payload), NULL, NULL), 0);
	lose_region(f, &st);
	char path[PATH_MAX + 40], name[32];
	tr__log_seg_name(0, name);
	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	off_t at = 64 + 5000;
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 1;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
	struct taskring_store_opts o = log_opts(f->dir, TASKRING_DURABLE);
	assert_rc(taskring_store_open(f->fx.name, &o, &st), TASKRING_ELOGCORRUPT);
	assert_non_null(strstr(taskring_strerror(TASKRING_ELOGCORRUPT), "taskring log verify"));
	struct tr_log_scan sc;
	memset(&sc, 0, sizeof(sc));
	assert_rc(tr__log_scan(&tr__log_sysio, f->dir, &sc), -EBADMSG);
	assert_non_null(strstr(sc.error, name));
	assert_non_null(strstr(sc.error, "corrupt record at offset"));
	taskring_store_unlink(f->fx.name);
}

/* A region that survived (processes died, the host did not): opening it
 * again replays nothing; the counters and jobs are as they were. */
static void test_survived_region_not_replayed(void **state)
{
	struct dfx *f = *state;
	struct taskring_store *st = f->fx.st = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_task_declare(st, "t"), 0);
	for (int i = 0; i < 20; i++)
		assert_rc(taskring_enqueue(st, "t", &i, sizeof(i), NULL, NULL), 0);
	struct taskring_queue_stats a, b;
	assert_rc(taskring_queue_stats(st, NULL, &a), 0);
	uint64_t end = st->hdr->h_log_end;
	struct taskring_store *again = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_queue_stats(again, NULL, &b), 0);
	tu_assert_stats_same(&a, &b);
	assert_int_equal(again->hdr->h_log_end, end);
	assert_rc(taskring_store_close(again), 0);
	/* Naming another log directory for it is refused. */
	char other[PATH_MAX + 8];
	snprintf(other, sizeof(other), "%s-x", f->dir);
	struct taskring_store_opts o = log_opts(other, TASKRING_DURABLE);
	struct taskring_store *bad = NULL;
	assert_rc(taskring_store_open(f->fx.name, &o, &bad), TASKRING_ELOG);
	assert_null(bad);
	rmdir(other);
}

/* Group commit, deterministically: ten records staged, one commit; one
 * flush covers them all. Then threads together: every one durable, with
 * fewer flushes than enqueues (printed). */
struct gc_arg {
	struct taskring_store *st;
	_Atomic int *go;
	int n;
};

static void *gc_thread(void *p)
{
	struct gc_arg *a = p;
	while (!atomic_load(a->go))
		;
	for (int i = 0; i < a->n; i++)
		if (taskring_enqueue(a->st, "t", &i, sizeof(i), NULL, NULL) != 0)
			return (void *)1;
	return NULL;
}

static _Atomic long gc_syncs;
static int counting_fdatasync(void *ctx, int fd)
{
	(void)ctx;
	atomic_fetch_add(&gc_syncs, 1);
	return tr__log_sysio.fdatasync(NULL, fd);
}

static void test_group_commit(void **state)
{
	struct dfx *f = *state;
	/* fdatasync counted through the I/O seam (the pwrite path). */
	static struct tr_log_io io;
	io = tr__log_sysio;
	io.fdatasync = counting_fdatasync;
	tr__wal_test_io = &io;
	struct taskring_store *st = f->fx.st = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_task_declare(st, "t"), 0);
	assert_rc(taskring_enqueue(st, "t", NULL, 0, NULL, NULL), 0);
	long syncs0 = atomic_load(&gc_syncs);
	uint64_t end = 0;
	struct tr_slot *s = &st->slots[0];
	for (int i = 0; i < 10; i++) {
		int64_t v[2] = {0, i};
		assert_rc(tr__wal_log(st, TR_LOG_RESCHEDULE, s, v, 2, NULL, 0, &end), 0);
	}
	assert_false(atomic_load(&st->hdr->h_log_durable) >= end);
	/* Ten records staged, one commit: one fdatasync covers them all. */
	assert_rc(tr__wal_commit(st, end), 0);
	assert_int_equal(atomic_load(&gc_syncs), syncs0 + 1);
	assert_true(atomic_load(&st->hdr->h_log_durable) >= end);
	/* Nothing staged: a commit syncs nothing. */
	assert_rc(tr__wal_commit(st, end), 0);
	assert_int_equal(atomic_load(&gc_syncs), syncs0 + 1);

	enum { THREADS = 8, EACH = 40 };
	pthread_t th[THREADS];
	_Atomic int go = 0;
	struct gc_arg args[THREADS];
	long syncs1 = atomic_load(&gc_syncs);
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct gc_arg){st, &go, EACH};
		assert_int_equal(pthread_create(&th[i], NULL, gc_thread, &args[i]), 0);
	}
	atomic_store(&go, 1);
	for (int i = 0; i < THREADS; i++) {
		void *r;
		pthread_join(th[i], &r);
		assert_null(r);
	}
	/* Never more than one sync per durable call (how many fewer depends
	 * on the scheduling: printed, not asserted). */
	long syncs = atomic_load(&gc_syncs) - syncs1;
	printf("# %d durable enqueues from %d threads: %ld fdatasyncs\n", THREADS * EACH, THREADS, syncs);
	assert_true(syncs >= 1 && syncs <= THREADS * EACH);
	tr__wal_test_io = NULL;
	struct tr_log_scan sc;
	memset(&sc, 0, sizeof(sc));
	assert_rc(tr__log_scan(&tr__log_sysio, f->dir, &sc), 0);
	assert_int_equal(sc.end_seq, st->hdr->h_log_end);
	assert_int_equal(sc.records, 1 + 1 + 10 + THREADS * EACH); /* store record, first job, ten, the threads' */
}

/* A failed fdatasync: the enqueue that waited for it gets -EIO, and so
 * does every durable call after it; recovery finds exactly what was
 * acknowledged before. */
static long sync_calls, fail_from = -1;
static int failing_fdatasync(void *ctx, int fd)
{
	(void)ctx;
	if (fail_from >= 0 && sync_calls++ >= fail_from)
		return -EIO;
	return tr__log_sysio.fdatasync(NULL, fd);
}

static void test_sync_failure(void **state)
{
	struct dfx *f = *state;
	static struct tr_log_io io;
	io = tr__log_sysio;
	io.fdatasync = failing_fdatasync;
	tr__wal_test_io = &io;
	fail_from = -1;
	struct taskring_store *st = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_task_declare(st, "t"), 0);
	struct taskring_job ok[5];
	char ids[5][40];
	for (int i = 0; i < 5; i++) {
		assert_rc(taskring_enqueue(st, "t", &i, sizeof(i), NULL, &ok[i]), 0);
		id_of(&ok[i], ids[i]);
	}
	sync_calls = 0;
	fail_from = 0;
	int i = 99;
	struct taskring_job bad = {0};
	assert_rc(taskring_enqueue(st, "t", &i, sizeof(i), NULL, &bad), -EIO);
	assert_null(bad.store); /* not acknowledged: no handle */
	assert_rc(taskring_enqueue(st, "t", &i, sizeof(i), NULL, NULL), -EIO);
	fail_from = -1; /* even with the disk back: no retry into a false success */
	assert_rc(taskring_enqueue(st, "t", &i, sizeof(i), NULL, NULL), -EIO);
	assert_rc(taskring_job_cancel(&ok[0]), -EIO);
	tr__wal_test_io = NULL;
	lose_region(f, &st);
	st = f->fx.st = open_logged(f, TASKRING_DURABLE);
	struct taskring_job j;
	for (int k = 1; k < 5; k++) {
		assert_rc(taskring_job_lookup(st, ids[k], &j), 0);
		assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	}
	/* The failed sync may or may not have reached the disk: at most the
	 * one job it covered besides the five. */
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
	assert_true(qs.by_status[TASKRING_PENDING] >= 5 && qs.by_status[TASKRING_PENDING] <= 6);
	/* And the recovered store takes durable work again. */
	assert_rc(taskring_enqueue(st, "t", &i, sizeof(i), NULL, NULL), 0);
}

/* ASYNC: nobody waits, yet the records reach the disk (within the interval:
 * here, within a generous bound that says nothing of speed). A child makes
 * a job and exits without closing the store (nothing flushed at exit); the
 * region is then lost, and the job is in the log all the same. */
struct async_arg {
	char name[64];
	char dir[PATH_MAX];
	char id[TASKRING_ID_LEN + 1];
	_Atomic int durable;
};

static int async_child(void *arg, int ctl, int ack)
{
	struct async_arg *a = arg;
	struct taskring_store_opts o = log_opts(a->dir, TASKRING_ASYNC);
	struct taskring_store *st = NULL;
	struct taskring_job j;
	(void)ctl;
	(void)ack;
	o.flush_interval_ns = 2000000;
	CK_RC(taskring_store_open(a->name, &o, &st), 0);
	CK_RC(taskring_task_declare(st, "t"), 0);
	CK_RC(taskring_enqueue(st, "t", "a", 1, NULL, &j), 0);
	CK_RC(taskring_job_id(&j, a->id), 0);
	uint64_t want = atomic_load(&st->hdr->h_log_reserve);
	int64_t t0 = tu_now_ns();
	while (atomic_load(&st->hdr->h_log_durable) < want && tu_now_ns() - t0 < 10 * SEC)
		tu_sleep_ms(1);
	atomic_store(&a->durable, atomic_load(&st->hdr->h_log_durable) >= want);
	_exit(0); /* no close: nothing flushed on the way out */
}

static void test_async_mode(void **state)
{
	struct dfx *f = *state;
	struct async_arg *a = mmap(NULL, sizeof(*a), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(a != MAP_FAILED);
	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%s", f->fx.name);
	snprintf(a->dir, sizeof(a->dir), "%s", f->dir);
	tu_kids_init(60, 2);
	pid_t kid = tu_spawn(async_child, a);
	assert_int_equal(tu_kid_join(kid, 30000), 0);
	assert_int_equal(atomic_load(&a->durable), 1);
	taskring_store_unlink(f->fx.name);
	struct taskring_store_opts o = log_opts(f->dir, TASKRING_ASYNC);
	struct taskring_store *st = NULL;
	assert_rc(taskring_store_open(f->fx.name, &o, &st), 0);
	f->fx.st = st;
	struct taskring_job j;
	assert_rc(taskring_job_lookup(st, a->id, &j), 0);
	munmap(a, sizeof(*a));
}

/* A region this build cannot use (here: its magic scribbled over) is
 * rebuilt from the log in its place; without a log it is refused. */
static void test_unusable_region_rebuilt(void **state)
{
	struct dfx *f = *state;
	struct taskring_store *st = open_logged(f, TASKRING_DURABLE);
	struct taskring_job j;
	char id[40];
	assert_rc(taskring_task_declare(st, "t"), 0);
	assert_rc(taskring_enqueue(st, "t", "kept", 4, NULL, &j), 0);
	id_of(&j, id);
	assert_rc(taskring_store_close(st), 0);
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm%s", f->fx.name);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "XXXXXXXX", 8, 0), 8);
	close(fd);
	struct taskring_store *bad = NULL;
	assert_rc(taskring_store_open(f->fx.name, NULL, &bad), TASKRING_EFORMAT);
	st = f->fx.st = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_job_lookup(st, id, &j), 0);
	char buf[8];
	size_t len;
	assert_rc(taskring_job_payload(&j, buf, sizeof(buf), &len), 0);
	assert_memory_equal(buf, "kept", 4);
}

/* A writer killed in the middle of staging a record (its slot begun, not
 * ready) does not wedge the log: once its process is gone, the flusher
 * steps over the slot, and durable work goes on. Nor does one killed
 * while it begins its slot, under the staging lock. */
struct stall_arg {
	char name[64];
	char dir[PATH_MAX];
	int in_lock; /* die holding the staging lock instead (log.stage) */
};

static int stall_child(void *arg, int ctl, int ack)
{
	struct stall_arg *a = arg;
	struct taskring_store_opts o = log_opts(a->dir, TASKRING_DURABLE);
	struct taskring_store *st = NULL;
	(void)ctl;
	(void)ack;
	CK_RC(taskring_store_open(a->name, &o, &st), 0);
	if (a->in_lock) {
		/* Killed while it begins its slot, under the staging lock. */
		CK_RC(tr__crash_arm("log.stage", 1), 0);
		taskring_enqueue(st, "t", "lost", 4, NULL, NULL);
		return 0; /* not reached: the crash point exits with TR_CRASH_STATUS */
	}
	tr__wal_test_stall(st);
	_exit(0); /* as if killed right there */
}

/*
 * A log directory must be ours and writable by nobody else, or somebody
 * could plant a segment in it: one writable by others is refused, one
 * writable by the group only for a store made for the group; another
 * user's is refused. Nothing is made in a refused directory.
 */
static void test_log_dir_permissions(void **state)
{
	struct dfx *f = *state;
	struct taskring_store_opts o = log_opts(f->dir, TASKRING_DURABLE);
	struct taskring_store *st = NULL;
	struct stat sb;
	char lock[PATH_MAX + 8];
	snprintf(lock, sizeof(lock), "%s/LOCK", f->dir);
	assert_int_equal(chmod(f->dir, 0777), 0);
	assert_rc(taskring_store_open(f->fx.name, &o, &st), TASKRING_EOWNER);
	assert_int_equal(chmod(f->dir, 0770), 0);
	assert_rc(taskring_store_open(f->fx.name, &o, &st), TASKRING_EOWNER);
	assert_int_equal(stat(lock, &sb), -1); /* nothing made */
	o.flags |= TASKRING_STORE_GROUP;
	assert_rc(taskring_store_open(f->fx.name, &o, &st), 0);
	assert_rc(taskring_store_close(st), 0);
	taskring_store_unlink(f->fx.name);
	o.flags &= ~TASKRING_STORE_GROUP;
	assert_int_equal(chmod(f->dir, 0700), 0);
	assert_rc(taskring_store_open(f->fx.name, &o, &st), 0);
	assert_rc(taskring_store_close(st), 0);
	taskring_store_unlink(f->fx.name);
	/* A new directory is made 0700 (0770 for the group). */
	char sub[PATH_MAX + 8];
	snprintf(sub, sizeof(sub), "%s/sub", f->dir);
	struct taskring_store_opts g = log_opts(sub, TASKRING_DURABLE);
	g.flags |= TASKRING_STORE_GROUP;
	mode_t old = umask(0);
	assert_rc(taskring_store_open(f->fx.name, &g, &st), 0);
	umask(old);
	assert_int_equal(stat(sub, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0770);
	assert_rc(taskring_store_close(st), 0);
	taskring_store_unlink(f->fx.name);
	rm_dir(sub);
	if (geteuid() == 0) {
		assert_int_equal(chown(f->dir, 65534, 65534), 0);
		assert_rc(taskring_store_open(f->fx.name, &o, &st), TASKRING_EOWNER);
		assert_int_equal(chown(f->dir, 0, 0), 0);
	}
}

/*
 * Spare segments: the store keeps room for its unfinished jobs' ends in
 * spare files, and takes them over after a recovery. A flusher that died
 * between renaming a spare into a segment and counting it out leaves a
 * count one too many: the next segment is made without it, and nothing
 * fails (here every spare is lost so).
 */
static void test_spares(void **state)
{
	struct dfx *f = *state;
	struct taskring_store *st = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_task_declare(st, "echo"), 0);
	static char big[100000];
	struct taskring_job j;
	/* 3,000 unfinished jobs are owed about 3.3 MiB: spares for them. */
	for (int i = 0; i < 3000; i++)
		assert_rc(taskring_enqueue(st, "echo", "x", 1, NULL, &j), 0);
	uint32_t spares = st->hdr->h_log_spares;
	assert_true(spares >= 3);
	assert_int_equal(atomic_load(&st->hdr->h_log_owed_jobs), 3000);
	/* Enqueues refused after they were admitted (a unique key that
	 * names a live job, here) give their room back. */
	struct taskring_enqueue_opts u = tu_eopts();
	u.unique_key = "one";
	for (int i = 0; i < 1000; i++)
		assert_rc(taskring_enqueue(st, "echo", "x", 1, &u, &j), i > 0);
	assert_int_equal(atomic_load(&st->hdr->h_log_owed_jobs), 3001);
	/* Flushers "died" after renaming each spare: none left, and the
	 * jobs end, so no new one is needed before the next segments. */
	for (uint32_t k = 0; k < spares; k++) {
		char path[PATH_MAX + 40];
		snprintf(path, sizeof(path), "%s/.spare.%u", f->dir, k);
		assert_int_equal(unlink(path), 0);
	}
	f->fx.w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(f->fx.w, "echo", h_echo, NULL), 0);
	for (int i = 0; i < 3001; i++)
		assert_rc(taskring_worker_run_one(f->fx.w, 2 * SEC), 1);
	assert_int_equal(atomic_load(&st->hdr->h_log_owed_jobs), 0);
	taskring_worker_destroy(f->fx.w);
	f->fx.w = NULL;
	struct taskring_enqueue_opts o = tu_eopts();
	o.queue = "filler";
	for (int i = 0; i < 30; i++) { /* 3 MiB: new segments */
		uint64_t n;
		assert_rc(taskring_enqueue(st, "echo", big, sizeof(big), &o, &j), 0);
		assert_rc(taskring_queue_purge(st, "filler", &n), 0);
	}
	assert_false(tr__wal_failed(st));
	lose_region(f, &st);
	st = open_logged(f, TASKRING_DURABLE);
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
	assert_int_equal(qs.by_status[TASKRING_COMPLETE], 3001);
	/* The recovered store took over the spares on disk. */
	assert_true(st->hdr->h_log_spares >= 1);
	printf("# %u spares for 3,000 unfinished jobs; all lost in rolls, made up for\n", spares);
	f->fx.st = st;
}

static void test_dead_writer_skipped(void **state)
{
	struct dfx *f = *state;
	struct taskring_store *st = f->fx.st = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_task_declare(st, "t"), 0);
	struct stall_arg *a = mmap(NULL, sizeof(*a), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(a != MAP_FAILED);
	snprintf(a->name, sizeof(a->name), "%s", f->fx.name);
	snprintf(a->dir, sizeof(a->dir), "%s", f->dir);
	tu_kids_init(60, 2);
	pid_t kid = tu_spawn(stall_child, a);
	assert_int_equal(tu_kid_join(kid, 30000), 0);
	/* And one that dies holding the staging lock: the next writer takes
	 * the lock over from the dead process and writes over its slot. */
	a->in_lock = 1;
	kid = tu_spawn(stall_child, a);
	assert_int_equal(tu_kid_join(kid, 30000), TR_CRASH_STATUS);
	struct taskring_job j;
	char id[40];
	assert_rc(taskring_enqueue(st, "t", "after", 5, NULL, &j), 0);
	id_of(&j, id);
	lose_region(f, &st);
	st = f->fx.st = open_logged(f, TASKRING_DURABLE);
	assert_rc(taskring_job_lookup(st, id, &j), 0);
	munmap(a, sizeof(*a));
}

/* One store per log directory: a second store is refused while a process
 * is attached to the first; one that took the directory over while nobody
 * was attached makes the first refuse attachment from then on. */
static void test_one_store_per_dir(void **state)
{
	struct dfx *f = *state;
	struct taskring_store *a = f->fx.st = open_logged(f, TASKRING_DURABLE);
	char other[80];
	snprintf(other, sizeof(other), "%s-other", f->fx.name);
	struct taskring_store_opts o = log_opts(f->dir, TASKRING_DURABLE);
	struct taskring_store *b = NULL;
	assert_rc(taskring_store_open(other, &o, &b), TASKRING_ELOG);
	assert_null(b);
	assert_rc(taskring_task_declare(a, "t"), 0);
	assert_rc(taskring_enqueue(a, "t", NULL, 0, NULL, NULL), 0);
	assert_rc(taskring_store_close(a), 0);
	f->fx.st = NULL;
	/* Nobody attached to the first: the second takes the log over (and
	 * recovers its job); the first, still in /dev/shm, is refused. */
	assert_rc(taskring_store_open(other, &o, &b), 0);
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(b, NULL, &qs), 0);
	assert_int_equal(qs.by_status[TASKRING_PENDING], 1);
	assert_rc(taskring_store_close(b), 0);
	assert_rc(taskring_store_open(f->fx.name, &o, &a), TASKRING_ELOG);
	taskring_store_unlink(other);
}

/*
 * kill -9 of a producer and a worker process at random moments, at least
 * 200 rounds: after each, the region is dropped and the store recovered
 * from its log; every job whose enqueue returned is there, exactly once,
 * and no job appears that nobody enqueued.
 */
#define KILL_MAX 4096
struct kill_shared {
	char name[64];
	char dir[PATH_MAX];
	int no_iouring;
	_Atomic uint32_t acked;            /* ids acknowledged so far */
	char ids[KILL_MAX][TASKRING_ID_LEN + 1];
	_Atomic uint32_t attempted;        /* enqueue calls started */
};

static int kill_producer(void *arg, int ctl, int ack)
{
	struct kill_shared *k = arg;
	struct taskring_store_opts o = log_opts(k->dir, TASKRING_DURABLE);
	struct taskring_store *st = NULL;
	(void)ctl;
	(void)ack;
	o.flags = k->no_iouring ? TASKRING_STORE_NO_IOURING : 0;
	o.slots = 0;
	CK_RC(taskring_store_open(k->name, &o, &st), 0);
	for (uint32_t i = atomic_load(&k->acked); i < KILL_MAX; i++) {
		struct taskring_job j;
		atomic_fetch_add(&k->attempted, 1);
		if (taskring_enqueue(st, "k", &i, sizeof(i), NULL, &j) != 0)
			_exit(3);
		char id[40];
		taskring_job_id(&j, id);
		uint32_t n = atomic_load(&k->acked);
		memcpy(k->ids[n], id, sizeof(id));
		atomic_store(&k->acked, n + 1);
	}
	return 0;
}

static int h_k(struct taskring_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	return TASKRING_OK;
}

static int kill_worker(void *arg, int ctl, int ack)
{
	struct kill_shared *k = arg;
	(void)ctl;
	(void)ack;
	return child_worker(k->dir, k->name, k->no_iouring, 1, "k", h_k, NULL);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_kill_producers_and_workers(void **state)
{
	struct dfx *f = *state;
	int rounds = tu_sanitized() ? 60 : 200, total_rounds = 0;
	struct kill_shared *k = mmap(NULL, sizeof(*k), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(k != MAP_FAILED);
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	tu_kids_init(60, 2);
	for (no_iouring = 0; no_iouring < 2; no_iouring++) {
		memset(k, 0, sizeof(*k));
		snprintf(k->name, sizeof(k->name), "%s", f->fx.name);
		snprintf(k->dir, sizeof(k->dir), "%s", f->dir);
		k->no_iouring = no_iouring;
		struct taskring_store *st = open_logged(f, TASKRING_DURABLE);
		assert_rc(taskring_task_declare(st, "k"), 0);
		assert_rc(taskring_store_close(st), 0);
		for (int r = 0; r < rounds / 2 && atomic_load(&k->acked) < KILL_MAX - 64; r++) {
			pid_t p = tu_spawn(kill_producer, k), w = tu_spawn(kill_worker, k);
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			tu_sleep_ns((int64_t)(rng % 15000000));
			kill(p, SIGKILL);
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			if (rng & 1)
				tu_sleep_ns((int64_t)(rng % 3000000));
			kill(w, SIGKILL);
			tu_kid_join(p, 10000);
			tu_kid_join(w, 10000);
			/* The host goes down too: recover from the log alone. */
			taskring_store_unlink(f->fx.name);
			st = open_logged(f, TASKRING_DURABLE);
			uint32_t acked = atomic_load(&k->acked);
			for (uint32_t i = 0; i < acked; i++) {
				struct taskring_job j;
				if (taskring_job_lookup(st, k->ids[i], &j) != 0)
					fail_msg("round %d: acknowledged job %u (%s) lost", r, i, k->ids[i]);
			}
			/* No duplicates, nothing nobody enqueued. */
			static char seen[KILL_MAX + 16][TASKRING_ID_LEN + 1];
			uint32_t n = 0;
			uint64_t cur = 0;
			struct taskring_job j;
			while (taskring_job_next(st, 0, NULL, NULL, &cur, &j) == 1) {
				assert_true(n < KILL_MAX + 16);
				taskring_job_id(&j, seen[n++]);
			}
			assert_true(n <= atomic_load(&k->attempted));
			assert_true(n >= acked);
			qsort(seen, n, sizeof(seen[0]), cmp_id);
			for (uint32_t i = 1; i < n; i++)
				if (!strcmp(seen[i], seen[i - 1]))
					fail_msg("round %d: job %s twice", r, seen[i]);
			assert_rc(taskring_store_close(st), 0);
			/* What was made but not acknowledged counts as attempted;
			 * the next producer goes on from the acknowledged. */
			atomic_store(&k->attempted, n > acked ? n : acked);
			total_rounds++;
		}
		taskring_store_unlink(f->fx.name);
		rm_dir(f->dir);
		assert_int_equal(mkdir(f->dir, 0700), 0);
	}
	printf("# %d rounds of kill -9 (producer and worker) and recovery from the log\n", total_rounds);
	munmap(k, sizeof(*k));
}

int main(void)
{
	tu_alarm(900);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		T(test_survives_region_loss),
		T(test_running_job_interrupted),
		T(test_purges_are_logged),
		T(test_corrupt_middle_refused),
		T(test_full_disk),
		T(test_survived_region_not_replayed),
		T(test_group_commit),
		T(test_sync_failure),
		T(test_async_mode),
		T(test_one_store_per_dir),
		T(test_unusable_region_rebuilt),
		T(test_dead_writer_skipped),
		T(test_spares),
		T(test_log_dir_permissions),
		T(test_kill_producers_and_workers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
