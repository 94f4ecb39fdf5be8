/*
 * durable.c - taskring with a log, against the disk's own limit, in one run.
 *
 * The log directories live under $BENCH_DIR (default $BUILD/bench, which
 * `make bench` passes): on the repository's disk, never tmpfs, where
 * fdatasync costs nothing and the figures would mean nothing. Each
 * scenario uses a new directory, removed afterwards.
 *
 *   dur.fsync_floor  one 64-byte append + fdatasync per iteration on a
 *                    preallocated file: the disk's own limit for one
 *                    durable write at a time (latency and ops/s).
 *   dur.enqueue_1    one producer, TASKRING_DURABLE, one job per call: every
 *                    call waits for its own fdatasync.
 *   dur.enqueue_64c  64 producer threads, each enqueueing one job per call
 *                    and waiting for its own acknowledgement: group commit
 *                    shares the fdatasyncs. Jobs/s.
 *   dur.batch        taskring_enqueue_batch of 4,096 jobs per call, in a
 *                    store whose slots were all used once. Jobs/s.
 *   dur.recover      61,440 jobs enqueued, the region dropped, the store
 *                    opened again: jobs/s of the replay, that is the time of
 *                    that open less the time to open a new, empty store of
 *                    the same size (both reported).
 *   dur.compact      the same jobs in 4 MiB segments, compacted (as
 *                    `taskring log compact` does): jobs/s folded into the
 *                    checkpoint.
 *   dur.recover_ckpt the store opened from that checkpoint and the segment
 *                    after it: jobs/s, as dur.recover.
 *
 * Jobs carry a 64-byte payload and no worker runs them (the enqueue path is
 * what is measured). Environment: BENCH_SCALE, BENCH_ONLY (common.h),
 * BENCH_DIR, and TASKRING_NO_IOURING=1 for the pwrite/fdatasync path.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "taskring.h"
#include "common.h"
#include "log.h" /* tr__log_compact(): what `taskring log compact` runs */
#include "wal.h"

#define SEC 1000000000LL

static char base_dir[512];

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(dir);
}

static int new_dir(char *out, size_t cap)
{
	snprintf(out, cap, "%s/dur-XXXXXX", base_dir);
	return mkdtemp(out) ? 0 : -errno;
}

static const char *io_path(void)
{
	const char *v = getenv("TASKRING_NO_IOURING");
	return v && !strcmp(v, "1") ? "pwrite" : "io_uring";
}

static int open_store(const char *name, const char *dir, uint32_t slots, struct taskring_store **st)
{
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.slots = slots;
	o.log_dir = dir;
	o.durability = TASKRING_DURABLE;
	int rc = taskring_store_open(name, &o, st);
	if (!rc)
		rc = taskring_task_declare(*st, "job");
	return rc;
}

/* ---- dur.fsync_floor ------------------------------------------------------------ */

static void fsync_floor(void)
{
	char dir[600], path[700];
	if (new_dir(dir, sizeof(dir))) {
		bench_print_error("dur.fsync_floor", "cannot make a directory under %s", base_dir);
		return;
	}
	snprintf(path, sizeof(path), "%s/floor", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	size_t max = bench_iters(20000, 100), n = 0;
	uint64_t *s = calloc(max, sizeof(uint64_t));
	if (fd < 0 || !s || fallocate(fd, 0, 0, (off_t)(max * 64 + 4096)) || fsync(fd)) {
		bench_print_error("dur.fsync_floor", "cannot make %s: %s", path, strerror(errno));
		free(s);
		if (fd >= 0)
			close(fd);
		rm_dir(dir);
		return;
	}
	char rec[64];
	memset(rec, 'r', sizeof(rec));
	int64_t cap = bench_cap_ns(2.5), t0 = bench_now_ns(), t1 = t0;
	for (; n < max && t1 - t0 < cap; n++) {
		int64_t a = bench_now_ns();
		if (pwrite(fd, rec, sizeof(rec), (off_t)(n * sizeof(rec))) != (ssize_t)sizeof(rec) || fdatasync(fd)) {
			bench_print_error("dur.fsync_floor", "write/fdatasync: %s", strerror(errno));
			break;
		}
		t1 = bench_now_ns();
		s[n] = (uint64_t)(t1 - a);
	}
	qsort(s, n, sizeof(uint64_t), bench_cmp_u64);
	bench_print_latency("dur.fsync_floor", s, n, "\"ops_per_s\":%.0f,\"record_bytes\":64",
			    (double)n * 1e9 / (double)(t1 - t0));
	free(s);
	close(fd);
	rm_dir(dir);
}

/* ---- dur.enqueue_1 ------------------------------------------------------------------ */

static void enqueue_1(void)
{
	char dir[600];
	struct taskring_store *st = NULL;
	const char *name = bench_shm_name("taskring-dur");
	int rc = new_dir(dir, sizeof(dir));
	if (!rc)
		rc = open_store(name, dir, 65536, &st);
	if (rc) {
		bench_print_error("dur.enqueue_1", "store: %s", taskring_strerror(rc));
		return;
	}
	size_t max = bench_iters(20000, 100), n = 0;
	uint64_t *s = calloc(max, sizeof(uint64_t));
	char payload[64];
	memset(payload, 'p', sizeof(payload));
	int64_t cap = bench_cap_ns(2.5), t0 = bench_now_ns(), t1 = t0;
	for (; s && n < max && n < 60000 && t1 - t0 < cap; n++) {
		int64_t a = bench_now_ns();
		if ((rc = taskring_enqueue(st, "job", payload, sizeof(payload), NULL, NULL)) != 0) {
			bench_print_error("dur.enqueue_1", "enqueue: %s", taskring_strerror(rc));
			break;
		}
		t1 = bench_now_ns();
		s[n] = (uint64_t)(t1 - a);
	}
	if (!rc) {
		qsort(s, n, sizeof(uint64_t), bench_cmp_u64);
		bench_print_latency("dur.enqueue_1", s, n, "\"ops_per_s\":%.0f,\"payload\":64,\"io\":\"%s\"",
				    (double)n * 1e9 / (double)(t1 - t0), io_path());
	}
	free(s);
	taskring_store_close(st);
	taskring_store_unlink(name);
	bench_shm_release(name);
	rm_dir(dir);
}

/* ---- dur.enqueue_64c ----------------------------------------------------------------- */

#define PRODUCERS 64

struct prod {
	struct taskring_store *st;
	_Atomic int *go, *stop;
	uint64_t done;
	int rc;
};

static void *producer(void *arg)
{
	struct prod *p = arg;
	char payload[64];
	memset(payload, 'p', sizeof(payload));
	while (!atomic_load(p->go))
		bench_cpu_relax();
	while (!atomic_load_explicit(p->stop, memory_order_relaxed) && p->done < 60000 / PRODUCERS * 15) {
		p->rc = taskring_enqueue(p->st, "job", payload, sizeof(payload), NULL, NULL);
		if (p->rc)
			break;
		p->done++;
	}
	return NULL;
}

static void enqueue_64c(void)
{
	char dir[600];
	struct taskring_store *st = NULL;
	const char *name = bench_shm_name("taskring-dur");
	int rc = new_dir(dir, sizeof(dir));
	if (!rc)
		rc = open_store(name, dir, 1 << 20, &st);
	if (rc) {
		bench_print_error("dur.enqueue_64c", "store: %s", taskring_strerror(rc));
		return;
	}
	pthread_t th[PRODUCERS];
	struct prod p[PRODUCERS];
	_Atomic int go = 0, stop = 0;
	for (int i = 0; i < PRODUCERS; i++) {
		p[i] = (struct prod){st, &go, &stop, 0, 0};
		pthread_create(&th[i], NULL, producer, &p[i]);
	}
	int64_t t0 = bench_now_ns();
	atomic_store(&go, 1);
	bench_sleep_ns(bench_cap_ns(2.5));
	atomic_store(&stop, 1);
	uint64_t jobs = 0;
	for (int i = 0; i < PRODUCERS; i++) {
		pthread_join(th[i], NULL);
		jobs += p[i].done;
		if (p[i].rc && !rc)
			rc = p[i].rc;
	}
	int64_t t1 = bench_now_ns();
	if (rc)
		bench_print_error("dur.enqueue_64c", "enqueue: %s", taskring_strerror(rc));
	else
		bench_print_tput("dur.enqueue_64c", jobs, t1 - t0, "\"producers\":%d,\"payload\":64,\"io\":\"%s\"",
				 PRODUCERS, io_path());
	taskring_store_close(st);
	taskring_store_unlink(name);
	bench_shm_release(name);
	rm_dir(dir);
}

/* ---- dur.batch and dur.recover --------------------------------------------------------- */

#define BATCH 4096

static int fill(struct taskring_store *st, size_t batches)
{
	static struct taskring_enqueue_item items[BATCH];
	static char payload[64];
	memset(payload, 'p', sizeof(payload));
	for (int i = 0; i < BATCH; i++)
		items[i] = (struct taskring_enqueue_item){.task = "job", .payload = payload, .len = sizeof(payload)};
	for (size_t b = 0; b < batches; b++) {
		int rc = taskring_enqueue_batch(st, items, BATCH, NULL, NULL);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A log in a new directory @dir with @batches batches of pending jobs, in
 * segments of @seg bytes (0: the default), its region gone. */
static int filled_log(const char *name, char *dir, size_t cap, uint64_t seg, size_t batches)
{
	struct taskring_store *st = NULL;
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.slots = 65536;
	o.log_dir = dir;
	o.segment_bytes = seg;
	int rc = new_dir(dir, cap);
	if (!rc)
		rc = taskring_store_open(name, &o, &st);
	if (!rc)
		rc = taskring_task_declare(st, "job");
	if (!rc)
		rc = fill(st, batches);
	if (st)
		taskring_store_close(st);
	/* The host went down: only the log is left. */
	taskring_store_unlink(name);
	return rc;
}

/*
 * Open the store @name whose region is gone, from its log (@o), time it,
 * and print @scenario: jobs/s of the replay, that is the time of that open
 * less that of a new, empty store of the same size (both reported). The
 * open store is left in *@stp.
 */
static int time_recovery(const char *scenario, const char *name, struct taskring_store_opts *o, size_t expect,
			 const char *what, struct taskring_store **stp)
{
	int64_t a = bench_now_ns();
	int rc = taskring_store_open(name, o, stp);
	int64_t b = bench_now_ns();
	char empty[600];
	struct taskring_store *e = NULL;
	const char *ename = bench_shm_name("taskring-dur");
	int64_t c = 0, d = 0;
	if (!rc && !new_dir(empty, sizeof(empty))) {
		c = bench_now_ns();
		if (open_store(ename, empty, 65536, &e) == 0)
			d = bench_now_ns();
		if (e)
			taskring_store_close(e);
		taskring_store_unlink(ename);
		rm_dir(empty);
	}
	bench_shm_release(ename);
	struct taskring_queue_stats qs;
	if (!rc)
		rc = taskring_queue_stats(*stp, NULL, &qs);
	if (rc)
		bench_print_error(scenario, "%s", taskring_strerror(rc));
	else if (qs.by_status[TASKRING_PENDING] != expect)
		bench_print_error(scenario, "recovered %llu jobs, %zu were enqueued",
				  (unsigned long long)qs.by_status[TASKRING_PENDING], expect);
	else
		bench_print_tput(scenario, expect, b - a - (d - c), "\"what\":\"%s\",\"open_s\":%.3f,\"empty_open_s\":%.3f",
				 what, (double)(b - a) / 1e9, (double)(d - c) / 1e9);
	return rc;
}

/*
 * dur.batch: a store of 65,536 slots is filled once and purged (every slot
 * and page touched, as in steady use), then filled again, measured: 15
 * batches of 4,096. dur.recover: a new store filled with 15 batches, its
 * region dropped, and opened again: the time of that open.
 */
static void batch_and_recover(void)
{
	char dir[600];
	struct taskring_store *st = NULL;
	const char *name = bench_shm_name("taskring-dur");
	size_t batches = 15;
	int rc = new_dir(dir, sizeof(dir));
	if (!rc)
		rc = open_store(name, dir, 65536, &st);
	if (!rc)
		rc = fill(st, batches);
	if (!rc)
		rc = taskring_queue_purge(st, "default", NULL);
	int64_t t0 = bench_now_ns();
	if (!rc)
		rc = fill(st, batches);
	int64_t t1 = bench_now_ns();
	if (rc < 0)
		bench_print_error("dur.batch", "%s", taskring_strerror(rc));
	else if (bench_want("dur.batch"))
		bench_print_tput("dur.batch", batches * BATCH, t1 - t0, "\"batch\":%d,\"payload\":64,\"io\":\"%s\"",
				 BATCH, io_path());
	if (st)
		taskring_store_close(st);
	taskring_store_unlink(name);
	rm_dir(dir);
	st = NULL;
	if (rc >= 0 && bench_want("dur.recover")) {
		rc = filled_log(name, dir, sizeof(dir), 0, batches);
		struct taskring_store_opts o;
		memset(&o, 0, sizeof(o));
		o.log_dir = dir;
		if (!rc)
			time_recovery("dur.recover", name, &o, batches * BATCH,
				      "replay: the open of a 65,536-slot store whose region is gone, less that of an "
				      "empty one",
				      &st);
		if (st)
			taskring_store_close(st);
		taskring_store_unlink(name);
		rm_dir(dir);
	}
	bench_shm_release(name);
}

/*
 * dur.compact: a log of 61,440 pending jobs in 4 MiB segments (its region
 * dropped), compacted: jobs/s folded into the checkpoint. Then
 * dur.recover_ckpt: the store opened from that checkpoint and the segment
 * after it, less an empty store's open.
 */
static void compact_and_recover(void)
{
	char dir[600];
	struct taskring_store *st = NULL;
	const char *name = bench_shm_name("taskring-dur");
	size_t batches = 15;
	int rc = filled_log(name, dir, sizeof(dir), 4u << 20, batches);
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.log_dir = dir;
	struct tr_compaction c;
	char err[300] = "";
	int64_t a = bench_now_ns();
	/* (the store's own compaction may hold the lock for a moment) */
	do
		rc = rc ? rc : tr__log_compact(&tr__log_sysio, dir, NULL, &c, err, sizeof(err));
	while (rc == -EBUSY);
	int64_t b = bench_now_ns();
	if (rc || !c.pos)
		bench_print_error("dur.compact", "%s", rc ? taskring_strerror(rc) : "nothing to compact");
	else if (bench_want("dur.compact"))
		bench_print_tput("dur.compact", c.jobs, b - a,
				 "\"what\":\"jobs folded into a checkpoint\",\"folded_segments\":%u,"
				 "\"checkpoint_bytes\":%llu",
				 c.folded, (unsigned long long)c.bytes);
	if (!rc && bench_want("dur.recover_ckpt")) {
		char what[160];
		snprintf(what, sizeof(what), "replay of a checkpoint (%llu jobs) and the segment after it, less an empty open",
			 (unsigned long long)c.jobs);
		o.slots = 0;
		time_recovery("dur.recover_ckpt", name, &o, batches * BATCH, what, &st);
	}
	if (st)
		taskring_store_close(st);
	taskring_store_unlink(name);
	rm_dir(dir);
	bench_shm_release(name);
}

int main(void)
{
	bench_init();
	/* No placement here: every thread is this process's, and the producers
	 * and flushers should use every CPU, as an application's would. */
	cpu_set_t all;
	CPU_ZERO(&all);
	for (int c = 0; c < CPU_SETSIZE; c++)
		CPU_SET(c, &all);
	sched_setaffinity(0, sizeof(all), &all);
	const char *d = getenv("BENCH_DIR");
	const char *build = getenv("BUILD");
	snprintf(base_dir, sizeof(base_dir), "%s", d && *d ? d : build && *build ? build : "build");
	if (bench_want("dur.fsync_floor"))
		fsync_floor();
	if (bench_want("dur.enqueue_1"))
		enqueue_1();
	if (bench_want("dur.enqueue_64c"))
		enqueue_64c();
	if (bench_want("dur.batch") || bench_want("dur.recover"))
		batch_and_recover();
	if (bench_want("dur.compact") || bench_want("dur.recover_ckpt"))
		compact_and_recover();
	return bench_failures ? 1 : 0;
}
