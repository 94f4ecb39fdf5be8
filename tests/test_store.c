/*
 * test_store.c - opening, creating, validating, closing and unlinking stores.
 *
 * Covers the three kinds of name (shm "/name", file path, anonymous), the
 * sizing rules, the creation flags and modes, every refusal of a region that
 * is not ours or not valid (symlink, bad magic, other format version, other
 * build, truncated or inconsistent header, other owner, not a regular file),
 * concurrent first openers, unlink, and taskring_strerror().
 *
 * Children created with fork() never use cmocka's asserts: they report
 * through their exit status, which the parent checks.
 */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* /dev/shm/<name without the slash> for a "/name" store. */
static void shm_file(const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "/dev/shm/%s", name + 1);
}

/* Every temporary directory made, removed at exit even if a test failed
 * half-way (a failed assert leaves the test without running its cleanup). */
static char made_dirs[64][32];
static int nmade;

static void remove_made_dirs(void)
{
	for (int i = 0; i < nmade; i++) {
		char cmd[96];
		snprintf(cmd, sizeof(cmd), "rm -rf '%.31s'", made_dirs[i]);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", made_dirs[i]);
	}
	nmade = 0;
}

static char *make_tmpdir(void)
{
	char *d = strdup("/tmp/taskring-test-XXXXXX");
	assert_non_null(d);
	assert_non_null(mkdtemp(d));
	if (nmade < 64)
		snprintf(made_dirs[nmade++], sizeof(made_dirs[0]), "%s", d);
	return d;
}

/* make_tmpdir(), and @path set to @leaf in it. */
static char *make_tmpdir_with(const char *leaf, char *path, size_t cap)
{
	char *dir = make_tmpdir();
	snprintf(path, cap, "%s/%s", dir, leaf);
	return dir;
}

/* Remove (rm -rf) and free a directory from make_tmpdir(). */
static void remove_tmpdir(char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fail_msg("cannot remove %s", dir);
	free(dir);
}

static struct taskring_store_opts small_opts(void)
{
	return tu_store_opts(64, 4096, 1u << 20, 4, 8);
}

static struct taskring_store *open_ok(const char *name, const struct taskring_store_opts *o)
{
	struct taskring_store *st = tu_open(name, o);
	assert_non_null(st);
	return st;
}

/* Open must fail with @want, leave the out parameter untouched. */
static void open_fails(const char *name, const struct taskring_store_opts *o, int want)
{
	struct taskring_store *sentinel = (struct taskring_store *)(uintptr_t)0x5a5a5a5a;
	struct taskring_store *st = sentinel;
	int rc = taskring_store_open(name, o, &st);
	if (rc == 0 && st != sentinel)
		taskring_store_close(st);
	assert_rc(rc, want);
	assert_ptr_equal(st, sentinel);
}

static off_t file_size(const char *path)
{
	struct stat sb;
	if (stat(path, &sb) != 0)
		return -1;
	return sb.st_size;
}

/* Read or write exactly @n bytes of the file @path at @off. */
static void file_io(const char *path, off_t off, void *buf, size_t n, int do_write)
{
	int fd = open(path, do_write ? O_RDWR : O_RDONLY);
	assert_true(fd >= 0);
	if (do_write)
		assert_int_equal(pwrite(fd, buf, n, off), (ssize_t)n);
	else
		assert_int_equal(pread(fd, buf, n, off), (ssize_t)n);
	close(fd);
}

/* A u32 (@n 4) or u64 (@n 8) header word of the file @path at @off. */
union word {
	uint32_t u32;
	uint64_t u64;
};

static uint64_t read_word(const char *path, off_t off, size_t n)
{
	union word v = { .u64 = 0 };
	file_io(path, off, &v, n, 0);
	return n == 4 ? v.u32 : v.u64;
}

static void write_word(const char *path, off_t off, size_t n, uint64_t x)
{
	union word v;
	if (n == 4)
		v.u32 = (uint32_t)x;
	else
		v.u64 = x;
	file_io(path, off, &v, n, 1);
}

#define read_u32(path, off) ((uint32_t)read_word(path, off, 4))
#define read_u64(path, off) read_word(path, off, 8)
#define write_u32(path, off, v) write_word(path, off, 4, (uint32_t)(v))
#define write_u64(path, off, v) write_word(path, off, 8, (uint64_t)(v))

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	if (len)
		assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Enqueue a job of task "t" with @payload; returns its id text. */
static void enqueue_text(struct taskring_store *st, const char *payload, struct taskring_job *j, char *id)
{
	assert_rc(taskring_task_declare(st, "t"), 0);
	assert_rc(taskring_enqueue(st, "t", payload, strlen(payload), NULL, j), 0);
	assert_rc(taskring_job_id(j, id), 0);
	assert_int_equal(strlen(id), TASKRING_ID_LEN);
}

/* The job @id exists in @st with payload @payload and status @status. */
static void expect_job(struct taskring_store *st, const char *id, const char *payload, int status)
{
	struct taskring_job j;
	char buf[256];
	size_t len = 0;
	assert_rc(taskring_job_lookup(st, id, &j), 0);
	assert_rc(taskring_job_status(&j), status);
	assert_rc(taskring_job_payload(&j, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, strlen(payload));
	assert_memory_equal(buf, payload, len);
}

static void expect_empty_stats(struct taskring_store *st)
{
	struct taskring_queue_stats s;
	assert_rc(taskring_queue_stats(st, NULL, &s), 0);
	for (int i = 0; i < TASKRING_STATUS_COUNT; i++)
		assert_int_equal(s.by_status[i], 0);
	assert_int_equal(s.enqueued, 0);
	assert_int_equal(s.started, 0);
	assert_int_equal(s.completed, 0);
	assert_int_equal(s.failed, 0);
	assert_int_equal(s.dead, 0);
	assert_int_equal(s.cancelled, 0);
	assert_int_equal(s.retried, 0);
}

static int h_upper(struct taskring_ctx *ctx, void *arg)
{
	size_t len = 0;
	const char *p = taskring_ctx_payload(ctx, &len);
	char out[256];
	if (!p || len > sizeof(out))
		return TASKRING_FAIL;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)((p[i] >= 'a' && p[i] <= 'z') ? p[i] - 32 : p[i]);
	return taskring_ctx_result(ctx, out, len) == 0 ? TASKRING_OK : TASKRING_FAIL;
}

/* ------------------------------------------------------------------------ */
/* Opening by each kind of name                                              */
/* ------------------------------------------------------------------------ */

static void test_open_shm_defaults(void **state)
{
	const char *name = tu_shm_name();
	char path[128];
	struct stat sb;
	struct taskring_store_info info;
	shm_file(name, path, sizeof(path));

	mode_t old = umask(0);
	struct taskring_store *st = open_ok(name, NULL);
	umask(old);

	assert_rc(taskring_store_info(st, &info), 0);
	assert_int_equal(info.slots, 65536);
	assert_int_equal(info.max_payload, 1u << 20);
	assert_int_equal(info.queues, 16);
	assert_int_equal(info.tasks, 256);
	assert_int_equal(info.arena_bytes, 64ull << 20);
	assert_int_equal(info.tasks_used, 0);
	assert_true(info.queues_used <= info.queues);
	assert_true(info.arena_used <= info.arena_bytes);
	/* The region holds at least the arena and 65,536 slots. */
	assert_true(info.region_bytes > info.arena_bytes + 65536ull * 64);

	/* The file in /dev/shm: ours, regular, 0600 even under umask 0, as big
	 * as the mapping; its header words are the ones info reports. */
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(sb.st_uid, geteuid());
	assert_int_equal((uint64_t)sb.st_size, info.region_bytes);
	assert_int_equal(read_u64(path, 0), TR_MAGIC);
	assert_int_equal(read_u32(path, 8), info.format_version);
	assert_int_equal(read_u32(path, 12), info.build_signature);
	assert_int_equal(info.format_version, TR_FORMAT_VERSION);

	expect_empty_stats(st);

	/* A zeroed opts struct is the same as NULL on an existing store. */
	struct taskring_store_opts z;
	memset(&z, 0, sizeof(z));
	struct taskring_store *st2 = open_ok(name, &z);
	struct taskring_store_info info2;
	assert_rc(taskring_store_info(st2, &info2), 0);
	assert_int_equal(info2.slots, info.slots);
	assert_int_equal(info2.region_bytes, info.region_bytes);
	assert_rc(taskring_store_close(st2), 0);

	assert_rc(taskring_store_close(st), 0);
	assert_rc(taskring_store_unlink(name), 0);
	assert_int_equal(stat(path, &sb), -1);
	assert_int_equal(errno, ENOENT);
	assert_rc(taskring_store_unlink(name), -ENOENT);
}

static void test_open_shm_zeroed_opts_creates_defaults(void **state)
{
	const char *name = tu_shm_name();
	struct taskring_store_opts z;
	struct taskring_store_info info;
	memset(&z, 0, sizeof(z));
	struct taskring_store *st = open_ok(name, &z);
	assert_rc(taskring_store_info(st, &info), 0);
	assert_int_equal(info.slots, TASKRING_DEFAULT_SLOTS);
	assert_int_equal(info.max_payload, TASKRING_DEFAULT_MAX_PAYLOAD);
	assert_int_equal(info.queues, TASKRING_DEFAULT_QUEUES);
	assert_int_equal(info.tasks, TASKRING_DEFAULT_TASKS);
	assert_int_equal(info.arena_bytes, 64ull << 20);
	assert_rc(taskring_store_close(st), 0);
	assert_rc(taskring_store_unlink(name), 0);
}

static void test_open_path_custom_sizing(void **state)
{
	char path[512];
	char *dir = make_tmpdir_with("store", path, sizeof(path));
	struct stat sb;
	struct taskring_store_info info;

	/* 1000 slots: not a power of two. */
	struct taskring_store_opts o = tu_store_opts(1000, 4096, 1u << 20, 5, 9);
	mode_t old = umask(0);
	struct taskring_store *st = open_ok(path, &o);
	umask(old);

	assert_rc(taskring_store_info(st, &info), 0);
	assert_int_equal(info.slots, 1000);
	assert_int_equal(info.max_payload, 4096);
	assert_int_equal(info.arena_bytes, 1u << 20);
	assert_int_equal(info.queues, 5);
	assert_int_equal(info.tasks, 9);
	assert_int_equal(info.format_version, TR_FORMAT_VERSION);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal((uint64_t)sb.st_size, info.region_bytes);

	/* tasks_used / queues_used count what was made, idempotently. */
	uint32_t q0 = info.queues_used;
	assert_int_equal(info.tasks_used, 0);
	assert_rc(taskring_task_declare(st, "a"), 0);
	assert_rc(taskring_task_declare(st, "a"), 0);
	assert_rc(taskring_task_declare(st, "b"), 0);
	assert_rc(taskring_queue_pause(st, "qq"), 0);
	assert_rc(taskring_queue_pause(st, "qq"), 0);
	assert_rc(taskring_queue_resume(st, "qq"), 0);
	assert_rc(taskring_store_info(st, &info), 0);
	assert_int_equal(info.tasks_used, 2);
	assert_int_equal(info.queues_used, q0 + 1);

	/* A job survives close and reopen with NULL opts. */
	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	enqueue_text(st, "hello path", &j, id);
	assert_rc(taskring_store_close(st), 0);

	st = open_ok(path, NULL);
	struct taskring_store_info info2;
	assert_rc(taskring_store_info(st, &info2), 0);
	assert_int_equal(info2.slots, 1000);
	assert_int_equal(info2.max_payload, 4096);
	assert_int_equal(info2.arena_bytes, 1u << 20);
	assert_int_equal(info2.queues, 5);
	assert_int_equal(info2.tasks, 9);
	assert_int_equal(info2.region_bytes, info.region_bytes);
	assert_int_equal(info2.tasks_used, 3);
	expect_job(st, id, "hello path", TASKRING_PENDING);
	assert_rc(taskring_store_close(st), 0);

	assert_rc(taskring_store_unlink(path), 0);
	assert_int_equal(stat(path, &sb), -1);
	assert_rc(taskring_store_unlink(path), -ENOENT);

	/* A path in a directory that does not exist. */
	char bad[600];
	snprintf(bad, sizeof(bad), "%s/nodir/store", dir);
	open_fails(bad, NULL, -ENOENT);
	remove_tmpdir(dir);
}

static void test_open_anonymous(void **state)
{
	struct taskring_store_opts o = small_opts();
	struct taskring_store *st = open_ok(NULL, &o);
	struct taskring_store_info info;
	assert_rc(taskring_store_info(st, &info), 0);
	assert_int_equal(info.slots, 64);
	assert_int_equal(info.max_payload, 4096);

	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	enqueue_text(st, "anon job", &j, id);

	/* A child fork()ed after the open shares the region and runs the job. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct taskring_worker *w = NULL;
		if (tu_worker_create(st, NULL, 0, 1, &w) != 0)
			_exit(10);
		if (taskring_worker_register(w, "t", h_upper, NULL) != 0)
			_exit(11);
		if (taskring_worker_run_one(w, 5 * SEC) != 1)
			_exit(12);
		taskring_worker_destroy(w);
		_exit(0);
	}
	assert_int_equal(tu_wait_child(pid), 0);
	char buf[64];
	size_t len = 0;
	assert_rc(taskring_job_result(&j, 5 * SEC, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(buf, "ANON JOB", 8);

	/* Another anonymous open is another store. */
	struct taskring_store *st2 = open_ok(NULL, &o);
	struct taskring_job j2;
	assert_rc(taskring_job_lookup(st2, id, &j2), -ENOENT);
	expect_empty_stats(st2);
	assert_rc(taskring_store_close(st2), 0);
	assert_rc(taskring_store_close(st), 0);
}

static void test_reopen_sees_same_jobs(void **state)
{
	const char *name = tu_shm_name();
	struct taskring_store_opts o = small_opts();
	struct taskring_store *a = open_ok(name, &o);
	struct taskring_job ja[3];
	char ida[3][TASKRING_ID_LEN + 1];
	const char *pl[3] = {"one", "two", "three"};
	for (int i = 0; i < 3; i++)
		enqueue_text(a, pl[i], &ja[i], ida[i]);

	/* A second handle in the same process sees them, and vice versa. */
	struct taskring_store *b = open_ok(name, NULL);
	for (int i = 0; i < 3; i++)
		expect_job(b, ida[i], pl[i], TASKRING_PENDING);
	struct taskring_job jb;
	char idb[TASKRING_ID_LEN + 1];
	enqueue_text(b, "four", &jb, idb);
	expect_job(a, idb, "four", TASKRING_PENDING);

	struct taskring_queue_stats sa, sb;
	assert_rc(taskring_queue_stats(a, NULL, &sa), 0);
	assert_rc(taskring_queue_stats(b, NULL, &sb), 0);
	assert_int_equal(sa.by_status[TASKRING_PENDING], 4);
	assert_int_equal(sb.by_status[TASKRING_PENDING], 4);
	assert_int_equal(sa.enqueued, 4);
	assert_int_equal(sb.enqueued, 4);

	/* A worker on b runs a's job; a sees the result. */
	struct taskring_worker *w = tu_worker(b, NULL, 0, 1);
	assert_rc(taskring_worker_register(w, "t", h_upper, NULL), 0);
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_worker_destroy(w), 0);
	char buf[64];
	size_t len = 0;
	assert_rc(taskring_job_result(&ja[0], 0, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "ONE", 3);

	/* Close both, reopen: everything is still there. */
	assert_rc(taskring_store_close(a), 0);
	assert_rc(taskring_store_close(b), 0);
	struct taskring_store *c = open_ok(name, &o);
	expect_job(c, ida[0], "one", TASKRING_COMPLETE);
	expect_job(c, ida[1], "two", TASKRING_PENDING);
	expect_job(c, ida[2], "three", TASKRING_PENDING);
	expect_job(c, idb, "four", TASKRING_PENDING);
	struct taskring_queue_stats sc;
	assert_rc(taskring_queue_stats(c, NULL, &sc), 0);
	assert_int_equal(sc.enqueued, 4);
	assert_int_equal(sc.completed, 1);
	assert_int_equal(sc.by_status[TASKRING_COMPLETE], 1);
	assert_int_equal(sc.by_status[TASKRING_PENDING], 3);
	assert_rc(taskring_store_close(c), 0);
	assert_rc(taskring_store_unlink(name), 0);
}

/* ------------------------------------------------------------------------ */
/* Modes and flags                                                           */
/* ------------------------------------------------------------------------ */

static void test_mode_group(void **state)
{
	const char *name = tu_shm_name();
	char shm[128], path[512];
	struct stat sb;
	char *dir = make_tmpdir_with("store", path, sizeof(path));
	shm_file(name, shm, sizeof(shm));

	/* With the usual umask 022 a group store is still 0660, as documented. */
	mode_t old = umask(022);
	struct taskring_store_opts o = small_opts();
	o.flags = TASKRING_STORE_GROUP;
	struct taskring_store *a = open_ok(name, &o);
	struct taskring_store *b = open_ok(path, &o);
	umask(old);
	assert_int_equal(stat(shm, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0660);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0660);
	assert_rc(taskring_store_close(a), 0);
	assert_rc(taskring_store_close(b), 0);
	assert_rc(taskring_store_unlink(name), 0);
	assert_rc(taskring_store_unlink(path), 0);

	/* Without the flag: 0600 even when the umask would allow more. */
	old = umask(0);
	o.flags = 0;
	a = open_ok(name, &o);
	b = open_ok(path, &o);
	umask(old);
	assert_int_equal(stat(shm, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_rc(taskring_store_close(a), 0);
	assert_rc(taskring_store_close(b), 0);
	assert_rc(taskring_store_unlink(name), 0);
	assert_rc(taskring_store_unlink(path), 0);
	remove_tmpdir(dir);
}

static void test_nocreate_excl(void **state)
{
	const char *name = tu_shm_name();
	char shm[128], path[512];
	struct stat sb;
	char *dir = make_tmpdir_with("store", path, sizeof(path));
	shm_file(name, shm, sizeof(shm));
	const char *names[2] = {name, path};
	const char *files[2] = {shm, path};

	for (int k = 0; k < 2; k++) {
		struct taskring_store_opts o = small_opts();
		/* NOCREATE on a missing store: -ENOENT, and nothing is created. */
		o.flags = TASKRING_STORE_NOCREATE;
		open_fails(names[k], &o, -ENOENT);
		assert_int_equal(stat(files[k], &sb), -1);
		/* EXCL on a missing store creates it. */
		o.flags = TASKRING_STORE_EXCL;
		struct taskring_store *st = open_ok(names[k], &o);
		struct taskring_job j;
		char id[TASKRING_ID_LEN + 1];
		enqueue_text(st, "kept", &j, id);
		/* EXCL on an existing store: -EEXIST, and the store is unchanged. */
		open_fails(names[k], &o, -EEXIST);
		struct taskring_store_opts z;
		memset(&z, 0, sizeof(z));
		z.flags = TASKRING_STORE_EXCL;
		open_fails(names[k], &z, -EEXIST);
		expect_job(st, id, "kept", TASKRING_PENDING);
		/* NOCREATE on an existing store opens it. */
		z.flags = TASKRING_STORE_NOCREATE;
		struct taskring_store *st2 = open_ok(names[k], &z);
		expect_job(st2, id, "kept", TASKRING_PENDING);
		assert_rc(taskring_store_close(st2), 0);
		assert_rc(taskring_store_close(st), 0);
		assert_rc(taskring_store_unlink(names[k]), 0);
		/* After unlink, NOCREATE fails again. */
		open_fails(names[k], &z, -ENOENT);
	}
	remove_tmpdir(dir);
}

static void test_sizing_mismatch(void **state)
{
	const char *name = tu_shm_name();
	struct taskring_store_opts o = small_opts();
	struct taskring_store *st = open_ok(name, &o);
	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	enqueue_text(st, "sized", &j, id);
	struct taskring_store_info before, after;
	assert_rc(taskring_store_info(st, &before), 0);

	struct taskring_store_opts d;
	d = o; d.slots = 128; open_fails(name, &d, TASKRING_ESIZING);
	d = o; d.max_payload = 8192; open_fails(name, &d, TASKRING_ESIZING);
	d = o; d.arena_bytes = 2u << 20; open_fails(name, &d, TASKRING_ESIZING);
	d = o; d.queues = 5; open_fails(name, &d, TASKRING_ESIZING);
	d = o; d.tasks = 9; open_fails(name, &d, TASKRING_ESIZING);
	/* One explicit field that differs is enough, the others zero. */
	memset(&d, 0, sizeof(d)); d.slots = 65536; open_fails(name, &d, TASKRING_ESIZING);
	memset(&d, 0, sizeof(d)); d.max_payload = TASKRING_DEFAULT_MAX_PAYLOAD; open_fails(name, &d, TASKRING_ESIZING);
	memset(&d, 0, sizeof(d)); d.tasks = TASKRING_DEFAULT_TASKS; open_fails(name, &d, TASKRING_ESIZING);

	/* Zero sizing, equal sizing, partly-equal sizing, and flags that are
	 * not sizing all open it. */
	struct taskring_store *x;
	memset(&d, 0, sizeof(d));
	x = open_ok(name, &d); assert_rc(taskring_store_close(x), 0);
	x = open_ok(name, &o); assert_rc(taskring_store_close(x), 0);
	memset(&d, 0, sizeof(d)); d.slots = 64; d.tasks = 8;
	x = open_ok(name, &d); assert_rc(taskring_store_close(x), 0);
	d = o; d.flags = TASKRING_STORE_GROUP;
	x = open_ok(name, &d); assert_rc(taskring_store_close(x), 0);

	assert_rc(taskring_store_info(st, &after), 0);
	assert_int_equal(after.slots, before.slots);
	assert_int_equal(after.region_bytes, before.region_bytes);
	assert_int_equal(after.arena_used, before.arena_used);
	expect_job(st, id, "sized", TASKRING_PENDING);
	assert_rc(taskring_store_close(st), 0);
	assert_rc(taskring_store_unlink(name), 0);
}

/* ------------------------------------------------------------------------ */
/* Regions that are refused                                                  */
/* ------------------------------------------------------------------------ */

static void test_symlink_refused(void **state)
{
	char *dir = make_tmpdir();
	char real[512], link[512], dangling[512], target[512];
	struct stat sb;
	snprintf(real, sizeof(real), "%s/real", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	snprintf(dangling, sizeof(dangling), "%s/dangling", dir);
	snprintf(target, sizeof(target), "%s/target", dir);

	struct taskring_store_opts o = small_opts();
	struct taskring_store *st = open_ok(real, &o);
	assert_rc(taskring_store_close(st), 0);

	/* A link to a valid store, and a dangling link, are both refused; the
	 * dangling link's target is not created. */
	assert_int_equal(symlink(real, link), 0);
	assert_int_equal(symlink(target, dangling), 0);
	open_fails(link, &o, -ELOOP);
	open_fails(link, NULL, -ELOOP);
	open_fails(dangling, &o, -ELOOP);
	assert_int_equal(lstat(target, &sb), -1);
	o.flags = TASKRING_STORE_NOCREATE;
	open_fails(link, &o, -ELOOP);

	/* Unlink never follows the link: the real store survives it. */
	int rc = taskring_store_unlink(link);
	if (rc != 0 && rc != -ELOOP)
		fail_msg("unlink(symlink) = %d (%s)", rc, taskring_strerror(rc));
	assert_int_equal(stat(real, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));

	/* The same for shared-memory names: /dev/shm/<name> a symlink. */
	const char *name = tu_shm_name();
	const char *other = tu_shm_name();
	char shm[128], shm_other[128];
	shm_file(name, shm, sizeof(shm));
	shm_file(other, shm_other, sizeof(shm_other));
	o.flags = 0;
	st = open_ok(other, &o);
	assert_rc(taskring_store_close(st), 0);
	assert_int_equal(symlink(shm_other, shm), 0);
	open_fails(name, &o, -ELOOP);
	open_fails(name, NULL, -ELOOP);
	unlink(shm);
	assert_rc(taskring_store_unlink(other), 0);

	remove_tmpdir(dir);
}

static void test_bad_magic(void **state)
{
	char path[512];
	char *dir = make_tmpdir_with("garbage", path, sizeof(path));

	/* 1 MiB of pseudo-random bytes. */
	size_t n = 1u << 20;
	unsigned char *g = malloc(n);
	assert_non_null(g);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		g[i] = (unsigned char)x;
	}
	g[0] = 'X'; /* certainly not the magic */
	write_file(path, g, n);
	open_fails(path, NULL, TASKRING_EFORMAT);
	struct taskring_store_opts o = small_opts();
	open_fails(path, &o, TASKRING_EFORMAT);
	/* The file is left exactly as it was. */
	assert_int_equal(file_size(path), (off_t)n);
	unsigned char *back = malloc(n);
	file_io(path, 0, back, n, 0);
	assert_memory_equal(back, g, n);
	free(back);

	/* 64 KiB of zeros. */
	memset(g, 0, 65536);
	write_file(path, g, 65536);
	open_fails(path, NULL, TASKRING_EFORMAT);
	assert_int_equal(file_size(path), 65536);

	/* "TASKRINX": one byte off. */
	memcpy(g, "TASKRINX", 8);
	write_file(path, g, 65536);
	open_fails(path, NULL, TASKRING_EFORMAT);

	/* A store whose magic was changed. */
	char sp[512];
	snprintf(sp, sizeof(sp), "%s/store", dir);
	struct taskring_store *st = open_ok(sp, &o);
	assert_rc(taskring_store_close(st), 0);
	write_u32(sp, 0, 0x12345678);
	open_fails(sp, NULL, TASKRING_EFORMAT);

	/* Garbage in /dev/shm under a store name. */
	const char *name = tu_shm_name();
	char shm[128];
	shm_file(name, shm, sizeof(shm));
	write_file(shm, g + 8, 65536 - 8);
	open_fails(name, NULL, TASKRING_EFORMAT);
	assert_int_equal(file_size(shm), 65536 - 8);
	unlink(shm);

	free(g);
	remove_tmpdir(dir);
}

/* Files too small to hold a header: refused as not a store (EFORMAT) or as
 * corrupt; the header does not pin which, but never opened, never resized. */
static void test_tiny_files(void **state)
{
	char path[512];
	char *dir = make_tmpdir_with("tiny", path, sizeof(path));
	size_t sizes[] = {0, 1, 4, 8, 16, 100};
	unsigned char hdr[128];
	memset(hdr, 0, sizeof(hdr));
	uint64_t magic = TR_MAGIC;
	memcpy(hdr, &magic, 8);
	uint32_t fmt = TR_FORMAT_VERSION;
	memcpy(hdr + 8, &fmt, 4);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		write_file(path, hdr, sizes[i]);
		struct taskring_store *st = (struct taskring_store *)(uintptr_t)0x77;
		int rc = taskring_store_open(path, NULL, &st);
		if (rc != TASKRING_EFORMAT && rc != TASKRING_ECORRUPT)
			fail_msg("%zu-byte file: open = %d (%s), expected EFORMAT or ECORRUPT", sizes[i], rc,
				 taskring_strerror(rc));
		assert_ptr_equal(st, (void *)(uintptr_t)0x77);
		assert_int_equal(file_size(path), (off_t)sizes[i]);
	}
	remove_tmpdir(dir);
}

static void test_version_and_build_mismatch(void **state)
{
	char path[512];
	char *dir = make_tmpdir_with("store", path, sizeof(path));
	struct taskring_store_opts o = small_opts();
	struct taskring_store *st = open_ok(path, &o);
	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	enqueue_text(st, "versioned", &j, id);
	assert_rc(taskring_store_close(st), 0);

	uint32_t ver = read_u32(path, 8), sig = read_u32(path, 12);
	assert_int_equal(ver, TR_FORMAT_VERSION);

	write_u32(path, 8, ver + 1);
	open_fails(path, NULL, TASKRING_EVERSION);
	open_fails(path, &o, TASKRING_EVERSION);
	assert_int_equal(read_u32(path, 8), ver + 1); /* not rewritten */
	write_u32(path, 8, 0);
	open_fails(path, NULL, TASKRING_EVERSION);
	write_u32(path, 8, ver);

	write_u32(path, 12, sig ^ 0xdeadbeefu);
	open_fails(path, NULL, TASKRING_EBUILD);
	open_fails(path, &o, TASKRING_EBUILD);
	assert_int_equal(read_u32(path, 12), sig ^ 0xdeadbeefu);
	write_u32(path, 12, sig + 1);
	open_fails(path, NULL, TASKRING_EBUILD);
	write_u32(path, 12, sig);

	/* Restored: opens, and the job is intact. */
	st = open_ok(path, NULL);
	expect_job(st, id, "versioned", TASKRING_PENDING);
	assert_rc(taskring_store_close(st), 0);

	/* The same on a shared-memory store. */
	const char *name = tu_shm_name();
	char shm[128];
	shm_file(name, shm, sizeof(shm));
	st = open_ok(name, &o);
	assert_rc(taskring_store_close(st), 0);
	write_u32(shm, 8, ver + 7);
	open_fails(name, NULL, TASKRING_EVERSION);
	write_u32(shm, 8, ver);
	write_u32(shm, 12, ~sig);
	open_fails(name, NULL, TASKRING_EBUILD);
	write_u32(shm, 12, sig);
	st = open_ok(name, NULL);
	assert_rc(taskring_store_close(st), 0);
	assert_rc(taskring_store_unlink(name), 0);

	remove_tmpdir(dir);
}

static void test_truncated_and_inconsistent(void **state)
{
	char path[512];
	char *dir = make_tmpdir_with("store", path, sizeof(path));
	struct taskring_store_opts o = small_opts();
	struct taskring_store *st = open_ok(path, &o);
	struct taskring_store_info info;
	assert_rc(taskring_store_info(st, &info), 0);
	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	enqueue_text(st, "whole", &j, id);
	assert_rc(taskring_store_close(st), 0);
	off_t full = (off_t)info.region_bytes;
	assert_int_equal(file_size(path), full);

	/* Truncated to half, to its header page, one page short, and grown:
	 * the header is intact but the size disagrees with it. */
	unsigned char *saved = malloc((size_t)full);
	assert_non_null(saved);
	file_io(path, 0, saved, (size_t)full, 0);
	off_t sizes[] = {full / 2, 4096, full - 4096, full + 4096};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_int_equal(truncate(path, sizes[i]), 0);
		open_fails(path, NULL, TASKRING_ECORRUPT);
		open_fails(path, &o, TASKRING_ECORRUPT);
		assert_int_equal(file_size(path), sizes[i]); /* never resized */
	}
	/* Put the bytes back (truncation zero-filled the tail). */
	write_file(path, saved, (size_t)full);
	free(saved);
	st = open_ok(path, NULL);
	expect_job(st, id, "whole", TASKRING_PENDING);
	assert_rc(taskring_store_close(st), 0);

	/* Header fields that disagree with the layout or the file. */
	uint64_t rb = read_u64(path, offsetof(struct tr_hdr, h_region_bytes));
	assert_int_equal(rb, info.region_bytes);
	write_u64(path, offsetof(struct tr_hdr, h_region_bytes), rb * 2);
	open_fails(path, NULL, TASKRING_ECORRUPT);
	write_u64(path, offsetof(struct tr_hdr, h_region_bytes), rb);

	uint64_t offs = read_u64(path, offsetof(struct tr_hdr, h_off_slots));
	write_u64(path, offsetof(struct tr_hdr, h_off_slots), 1ull << 40);
	open_fails(path, NULL, TASKRING_ECORRUPT);
	write_u64(path, offsetof(struct tr_hdr, h_off_slots), offs + 64);
	open_fails(path, NULL, TASKRING_ECORRUPT);
	write_u64(path, offsetof(struct tr_hdr, h_off_slots), offs);

	uint64_t offa = read_u64(path, offsetof(struct tr_hdr, h_off_arena));
	write_u64(path, offsetof(struct tr_hdr, h_off_arena), rb - 64);
	open_fails(path, NULL, TASKRING_ECORRUPT);
	write_u64(path, offsetof(struct tr_hdr, h_off_arena), offa);

	uint32_t ns = read_u32(path, offsetof(struct tr_hdr, h_slots));
	assert_int_equal(ns, 64);
	write_u32(path, offsetof(struct tr_hdr, h_slots), 1u << 30);
	open_fails(path, NULL, TASKRING_ECORRUPT);
	write_u32(path, offsetof(struct tr_hdr, h_slots), 0);
	open_fails(path, NULL, TASKRING_ECORRUPT);
	write_u32(path, offsetof(struct tr_hdr, h_slots), ns);

	uint64_t ab = read_u64(path, offsetof(struct tr_hdr, h_arena_bytes));
	write_u64(path, offsetof(struct tr_hdr, h_arena_bytes), ~0ull);
	open_fails(path, NULL, TASKRING_ECORRUPT);
	write_u64(path, offsetof(struct tr_hdr, h_arena_bytes), ab);

	/* A region that never finished initialising is not valid. */
	uint32_t init = read_u32(path, offsetof(struct tr_hdr, h_init));
	write_u32(path, offsetof(struct tr_hdr, h_init), 0);
	{
		struct taskring_store *x = NULL;
		int rc = taskring_store_open(path, NULL, &x);
		if (rc != TASKRING_ECORRUPT && rc != TASKRING_EFORMAT)
			fail_msg("uninitialised region: open = %d (%s)", rc, taskring_strerror(rc));
	}
	write_u32(path, offsetof(struct tr_hdr, h_init), init);

	/* All restored: the job is intact. */
	st = open_ok(path, NULL);
	expect_job(st, id, "whole", TASKRING_PENDING);
	assert_rc(taskring_store_close(st), 0);
	remove_tmpdir(dir);
}

static void test_other_owner(void **state)
{
	if (geteuid() != 0) {
		skip();
		return;
	}
	char path[512];
	struct stat sb;
	char *dir = make_tmpdir_with("store", path, sizeof(path));
	struct taskring_store_opts o = small_opts();
	struct taskring_store *st = open_ok(path, &o);
	assert_rc(taskring_store_close(st), 0);

	assert_int_equal(chown(path, 65534, 65534), 0);
	open_fails(path, NULL, TASKRING_EOWNER);
	open_fails(path, &o, TASKRING_EOWNER);
	o.flags = TASKRING_STORE_NOCREATE;
	open_fails(path, &o, TASKRING_EOWNER);
	/* Unlink refuses it too, and the file stays. */
	assert_rc(taskring_store_unlink(path), TASKRING_EOWNER);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_uid, 65534);
	/* Group-only difference is fine: owner is what counts. */
	assert_int_equal(chown(path, 0, 65534), 0);
	st = open_ok(path, NULL);
	assert_rc(taskring_store_close(st), 0);

	/* Shared memory. */
	const char *name = tu_shm_name();
	char shm[128];
	shm_file(name, shm, sizeof(shm));
	o.flags = 0;
	st = open_ok(name, &o);
	assert_rc(taskring_store_close(st), 0);
	assert_int_equal(chown(shm, 65534, 65534), 0);
	open_fails(name, NULL, TASKRING_EOWNER);
	assert_rc(taskring_store_unlink(name), TASKRING_EOWNER);
	assert_int_equal(stat(shm, &sb), 0);
	assert_int_equal(chown(shm, 0, 0), 0);
	assert_rc(taskring_store_unlink(name), 0);

	remove_tmpdir(dir);
}

/* Not a regular file: a FIFO, a directory, a character device. Run in a
 * child with its own alarm, because opening a FIFO the wrong way blocks. */
static void test_not_regular_file(void **state)
{
	char *dir = make_tmpdir();
	char fifo[512], sub[512];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(mkdir(sub, 0700), 0);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(5);
		struct taskring_store *st = NULL;
		if (taskring_store_open(fifo, NULL, &st) != TASKRING_EOWNER)
			_exit(1);
		if (taskring_store_open("/dev/null", NULL, &st) != TASKRING_EOWNER)
			_exit(2);
		int rc = taskring_store_open(sub, NULL, &st);
		if (rc != TASKRING_EOWNER && rc != -EISDIR)
			_exit(3);
		_exit(0);
	}
	int rc = tu_wait_child(pid);
	if (rc != 0)
		fail_msg("child: %s", rc == 1 ? "FIFO not refused with EOWNER"
				      : rc == 2 ? "/dev/null not refused with EOWNER"
				      : rc == 3 ? "directory not refused with EOWNER/EISDIR"
						: "hung or crashed (opening a FIFO blocked?)");
	struct stat sb;
	assert_int_equal(lstat(fifo, &sb), 0);
	assert_true(S_ISFIFO(sb.st_mode));
	remove_tmpdir(dir);
}

/* ------------------------------------------------------------------------ */
/* Concurrent first openers                                                  */
/* ------------------------------------------------------------------------ */

#define NOPENERS 6

/*
 * Wait for @n children, each of which must exit 0, for at most @secs in
 * all; children still running then are killed and the test fails (a hang in
 * one child must not hang the whole program).
 */
static void wait_children(pid_t *pids, int n, int secs, const char *what)
{
	int64_t end = tu_now_ns() + (int64_t)secs * SEC;
	int left = n, bad = -1, badrc = 0;
	int done[64] = {0};
	while (left > 0 && tu_now_ns() < end) {
		for (int i = 0; i < n; i++) {
			int st;
			if (done[i] || waitpid(pids[i], &st, WNOHANG) != pids[i])
				continue;
			done[i] = 1;
			left--;
			int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
			if (rc != 0 && bad < 0) {
				bad = i;
				badrc = rc;
			}
		}
		usleep(1000);
	}
	int hung = left;
	for (int i = 0; i < n; i++) {
		if (!done[i]) {
			kill(pids[i], SIGKILL);
			tu_wait_child(pids[i]);
		}
	}
	if (hung)
		fail_msg("%d of %d %s children did not finish within %d s (killed)", hung, n, what, secs);
	if (bad >= 0)
		fail_msg("%s %d exited %d", what, bad, badrc);
}

static int opener_child(const char *name, int gate, int idx)
{
	char c;
	/* Every child blocks here until the parent closes the gate's write end. */
	if (read(gate, &c, 1) != 0)
		return 20;
	struct taskring_store_opts o = small_opts();
	struct taskring_store *st = NULL;
	int rc = taskring_store_open(name, &o, &st);
	if (rc != 0)
		return 21;
	if (taskring_task_declare(st, "t") != 0)
		return 22;
	int32_t v = idx;
	if (taskring_enqueue(st, "t", &v, sizeof(v), NULL, NULL) != 0)
		return 23;
	if (taskring_store_close(st) != 0)
		return 24;
	return 0;
}

static void check_openers_result(const char *name)
{
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.flags = TASKRING_STORE_NOCREATE;
	struct taskring_store *st = open_ok(name, &o);
	int seen[NOPENERS] = {0};
	uint64_t cur = 0;
	struct taskring_job j;
	int n = 0, rc;
	while ((rc = taskring_job_next(st, 0, NULL, NULL, &cur, &j)) == 1) {
		int32_t v = -1;
		size_t len = 0;
		assert_rc(taskring_job_payload(&j, &v, sizeof(v), &len), 0);
		assert_int_equal(len, 4);
		assert_true(v >= 0 && v < NOPENERS);
		seen[v]++;
		n++;
	}
	assert_rc(rc, 0);
	assert_int_equal(n, NOPENERS);
	for (int i = 0; i < NOPENERS; i++)
		assert_int_equal(seen[i], 1);
	struct taskring_queue_stats s;
	assert_rc(taskring_queue_stats(st, NULL, &s), 0);
	assert_int_equal(s.enqueued, NOPENERS);
	assert_int_equal(s.by_status[TASKRING_PENDING], NOPENERS);
	struct taskring_store_info info;
	assert_rc(taskring_store_info(st, &info), 0);
	assert_int_equal(info.tasks_used, 1);
	assert_rc(taskring_store_close(st), 0);
}

static void run_openers(const char *name)
{
	int gate[2];
	pid_t pids[NOPENERS];
	assert_int_equal(pipe(gate), 0);
	for (int i = 0; i < NOPENERS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			close(gate[1]);
			_exit(opener_child(name, gate[0], i));
		}
	}
	close(gate[0]);
	usleep(20000); /* let them all reach read() */
	close(gate[1]);
	wait_children(pids, NOPENERS, 30, "opener");
}

static void test_concurrent_first_openers_shm(void **state)
{
	int rounds = tu_sanitized() ? 3 : 10;
	for (int r = 0; r < rounds; r++) {
		const char *name = tu_shm_name();
		run_openers(name);
		check_openers_result(name);
		/* No temporary object was left next to it. */
		DIR *d = opendir("/dev/shm");
		assert_non_null(d);
		struct dirent *e;
		size_t nl = strlen(name + 1);
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, name + 1, nl) == 0 && strcmp(e->d_name, name + 1) != 0 &&
			    !(e->d_name[nl] >= '0' && e->d_name[nl] <= '9'))
				fail_msg("leftover /dev/shm/%s", e->d_name);
		}
		closedir(d);
		assert_rc(taskring_store_unlink(name), 0);
	}
}

static void test_concurrent_first_openers_path(void **state)
{
	int rounds = tu_sanitized() ? 2 : 5;
	for (int r = 0; r < rounds; r++) {
		char path[512];
		char *dir = make_tmpdir_with("store", path, sizeof(path));
		run_openers(path);
		check_openers_result(path);
		/* Only the store itself is in the directory: no temporary file left. */
		DIR *d = opendir(dir);
		assert_non_null(d);
		struct dirent *e;
		int n = 0;
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (strcmp(e->d_name, "store") != 0)
				fail_msg("leftover file %s/%s", dir, e->d_name);
			n++;
		}
		closedir(d);
		assert_int_equal(n, 1);
		remove_tmpdir(dir);
	}
}

/*
 * Two threads declare the same new task and queue names at the same time.
 * Whoever loses the race must find the winner's entry and leave the store's
 * structural lock free: afterwards both can go on declaring.
 */
struct declarer {
	struct taskring_store *st;
	pthread_barrier_t *bar;
	int n;
	atomic_int progress;
	int rc;
	atomic_int done;
};

static void *declarer_main(void *arg)
{
	struct declarer *d = arg;
	char nm[32];
	pthread_barrier_wait(d->bar);
	for (int i = 0; i < d->n; i++) {
		snprintf(nm, sizeof(nm), "task-%d", i);
		int rc = taskring_task_declare(d->st, nm);
		if (rc) {
			d->rc = rc;
			break;
		}
		if (i < 60) {
			snprintf(nm, sizeof(nm), "queue-%d", i);
			rc = taskring_queue_pause(d->st, nm);
			if (rc) {
				d->rc = rc;
				break;
			}
		}
		atomic_store(&d->progress, i + 1);
	}
	atomic_store(&d->done, 1);
	return NULL;
}

static void test_concurrent_declare_same_names(void **state)
{
	const char *name = tu_shm_name();
	struct taskring_store_opts o = small_opts();
	o.tasks = TASKRING_MAX_TASKS;
	o.queues = TASKRING_MAX_QUEUES;
	struct taskring_store *st = open_ok(name, &o);
	/* On the heap: if the threads hang they keep using these after the
	 * test has failed and returned. */
	pthread_barrier_t *bar = malloc(sizeof(*bar));
	assert_non_null(bar);
	pthread_barrier_init(bar, NULL, 2);
	int n = tu_sanitized() ? 1000 : 4000;
	struct declarer *d = calloc(2, sizeof(*d));
	assert_non_null(d);
	pthread_t th[2];
	for (int k = 0; k < 2; k++) {
		d[k].st = st;
		d[k].bar = bar;
		d[k].n = n;
		assert_int_equal(pthread_create(&th[k], NULL, declarer_main, &d[k]), 0);
	}
	int64_t end = tu_now_ns() + 15 * SEC;
	while ((!atomic_load(&d[0].done) || !atomic_load(&d[1].done)) && tu_now_ns() < end)
		usleep(1000);
	if (!atomic_load(&d[0].done) || !atomic_load(&d[1].done)) {
		/* Leave the store mapped and the threads blocked: nothing else
		 * can be done for them. */
		pthread_detach(th[0]);
		pthread_detach(th[1]);
		fail_msg("concurrent declares hung after %d and %d names (structural lock left held?)",
			 atomic_load(&d[0].progress), atomic_load(&d[1].progress));
	}
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	pthread_barrier_destroy(bar);
	free(bar);
	int rc0 = d[0].rc, rc1 = d[1].rc;
	free(d);
	assert_rc(rc0, 0);
	assert_rc(rc1, 0);
	struct taskring_store_info info;
	assert_rc(taskring_store_info(st, &info), 0);
	assert_int_equal(info.tasks_used, (uint32_t)n);
	/* The lock is free: one more of each works, from this thread. */
	assert_rc(taskring_task_declare(st, "after"), 0);
	assert_rc(taskring_store_close(st), 0);
	assert_rc(taskring_store_unlink(name), 0);
}

/* ------------------------------------------------------------------------ */
/* Unlink                                                                    */
/* ------------------------------------------------------------------------ */

static void test_unlink_then_open_is_fresh(void **state)
{
	const char *name = tu_shm_name();
	struct taskring_store_opts o = small_opts();
	struct taskring_store *a = open_ok(name, &o);
	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	enqueue_text(a, "old", &j, id);

	/* Unlinked while open: the open handle keeps working. */
	assert_rc(taskring_store_unlink(name), 0);
	struct taskring_job j2;
	assert_rc(taskring_enqueue(a, "t", "x", 1, NULL, &j2), 0);
	expect_job(a, id, "old", TASKRING_PENDING);

	/* A new open creates a new, empty store. */
	struct taskring_store *b = open_ok(name, &o);
	expect_empty_stats(b);
	struct taskring_store_info info;
	assert_rc(taskring_store_info(b, &info), 0);
	assert_int_equal(info.tasks_used, 0);
	struct taskring_job x;
	assert_rc(taskring_job_lookup(b, id, &x), -ENOENT);
	assert_rc(taskring_enqueue(b, "t", "x", 1, NULL, NULL), TASKRING_ENOTASK);
	expect_empty_stats(b);

	/* The old one is still intact and separate. */
	struct taskring_queue_stats s;
	assert_rc(taskring_queue_stats(a, NULL, &s), 0);
	assert_int_equal(s.enqueued, 2);
	assert_rc(taskring_store_close(a), 0);

	/* Close, unlink, reopen once more: fresh again. */
	assert_rc(taskring_task_declare(b, "t"), 0);
	assert_rc(taskring_enqueue(b, "t", "y", 1, NULL, NULL), 0);
	assert_rc(taskring_store_close(b), 0);
	assert_rc(taskring_store_unlink(name), 0);
	b = open_ok(name, &o);
	expect_empty_stats(b);
	assert_rc(taskring_store_close(b), 0);
	assert_rc(taskring_store_unlink(name), 0);
	assert_rc(taskring_store_unlink(name), -ENOENT);
}

/* ------------------------------------------------------------------------ */
/* TASKRING_STORE_PREFAULT                                                   */
/* ------------------------------------------------------------------------ */

/* The minor faults this process takes reading one byte of every page of
 * @st's mapping. Not instrumented: a sanitizer's check of each read would
 * fault in its own shadow pages and be counted too. */
__attribute__((no_sanitize("address", "thread"))) static long faults_reading(struct taskring_store *st)
{
	struct rusage a, b;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	volatile const uint8_t *p = st->base;
	unsigned sum = 0;
	getrusage(RUSAGE_SELF, &a);
	for (size_t off = 0; off < st->size; off += page)
		sum += p[off];
	getrusage(RUSAGE_SELF, &b);
	(void)sum;
	return b.ru_minflt - a.ru_minflt;
}

static void test_prefault(void **state)
{
	const char *name = tu_shm_name();
	struct taskring_store_opts o = tu_store_opts(64, 4096, 32u << 20, 4, 8);
	struct taskring_store *made = open_ok(name, &o);
	long pages = (long)(made->size / (size_t)sysconf(_SC_PAGESIZE));
	assert_true(pages > 8000);

	/* A handle of its own is a mapping of its own: without the flag, its
	 * pages fault in as they are first read (the kernel maps up to 16 at
	 * a time around a fault)... */
	struct taskring_store_opts plain;
	memset(&plain, 0, sizeof(plain));
	plain.flags = TASKRING_STORE_NOCREATE;
	struct taskring_store *cold = open_ok(name, &plain);
	long cold_faults = faults_reading(cold);
	assert_rc(taskring_store_close(cold), 0);

	/* ...with it, they are all mapped when the open returns. */
	struct taskring_store_opts pre = plain;
	pre.flags |= TASKRING_STORE_PREFAULT;
	struct taskring_store *warm = open_ok(name, &pre);
	long warm_faults = faults_reading(warm);
	print_message("# %ld pages: %ld faults reading them without the flag, %ld with it\n", pages, cold_faults,
		      warm_faults);
	assert_true(cold_faults >= pages / 32);
	assert_true(warm_faults <= pages / 100);

	/* The handle works as any other. */
	assert_rc(taskring_task_declare(warm, "t"), 0);
	assert_rc(taskring_enqueue(warm, "t", "x", 1, NULL, NULL), 0);
	struct taskring_queue_stats qs;
	assert_rc(taskring_queue_stats(made, NULL, &qs), 0);
	assert_int_equal(qs.enqueued, 1);
	assert_rc(taskring_store_close(warm), 0);

	/* A creator and an anonymous store may ask for it too. */
	assert_rc(taskring_store_close(made), 0);
	assert_rc(taskring_store_unlink(name), 0);
	o.flags = TASKRING_STORE_PREFAULT;
	made = open_ok(name, &o);
	assert_true(faults_reading(made) <= pages / 100);
	assert_rc(taskring_store_close(made), 0);
	assert_rc(taskring_store_unlink(name), 0);
	struct taskring_store *anon = open_ok(NULL, &o);
	assert_true(faults_reading(anon) <= pages / 100);
	assert_rc(taskring_store_close(anon), 0);

	/* An unknown flag next to it is still refused, and nothing is made. */
	o.flags = TASKRING_STORE_PREFAULT | 0x40000000u;
	struct taskring_store *none = (struct taskring_store *)&o;
	assert_rc(taskring_store_open(name, &o, &none), -EINVAL);
	assert_ptr_equal(none, (struct taskring_store *)&o);
	char path[PATH_MAX];
	shm_file(name, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
}

/* ------------------------------------------------------------------------ */
/* strerror / status names                                                   */
/* ------------------------------------------------------------------------ */

struct errtext {
	int code;
	const char *text;
};

static void test_strerror(void **state)
{
	static const struct errtext lib[] = {
#define X(name, num, text) {TASKRING_##name, text},
		TASKRING_ERRNO_MAP(X)
#undef X
	};
	size_t n = sizeof(lib) / sizeof(lib[0]);
	assert_int_equal(n, 15);
	for (size_t i = 0; i < n; i++) {
		const char *s = taskring_strerror(lib[i].code);
		assert_non_null(s);
		assert_true(s[0] != '\0');
		assert_string_equal(s, lib[i].text);
		for (size_t k = 0; k < i; k++)
			assert_string_not_equal(s, taskring_strerror(lib[k].code));
	}
	assert_int_equal(TASKRING_EFORMAT, -1000);
	assert_int_equal(TASKRING_ENOHANDLER, -1011);

	/* -errno values: non-empty, distinct from each other and from the
	 * library's own texts. */
	int errs[] = {-ENOENT, -EINVAL, -EAGAIN, -ETIMEDOUT, -ECANCELED, -EMSGSIZE, -ENOBUFS, -EEXIST,
		      -ELOOP, -ENODATA, -EBUSY, -ENOSPC, -E2BIG, -ENAMETOOLONG};
	size_t ne = sizeof(errs) / sizeof(errs[0]);
	for (size_t i = 0; i < ne; i++) {
		const char *s = taskring_strerror(errs[i]);
		assert_non_null(s);
		assert_true(strlen(s) > 3);
		for (size_t k = 0; k < n; k++)
			assert_string_not_equal(s, lib[k].text);
		for (size_t k = 0; k < i; k++)
			assert_string_not_equal(s, taskring_strerror(errs[k]));
	}
	/* The text for -ENOENT is the system's. */
	assert_string_equal(taskring_strerror(-ENOENT), strerror(ENOENT));

	/* Anything else: a string, never NULL, never a crash. */
	int odd[] = {0, 1, 5, -999, -1012, -1999, -5000, INT_MIN, INT_MAX, -4096};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		const char *s = taskring_strerror(odd[i]);
		assert_non_null(s);
	}
	assert_true(taskring_strerror(-1012)[0] != '\0');

	/* Status names. */
	assert_string_equal(taskring_status_name(TASKRING_PENDING), "pending");
	assert_string_equal(taskring_status_name(TASKRING_RUNNING), "running");
	assert_string_equal(taskring_status_name(TASKRING_COMPLETE), "complete");
	assert_string_equal(taskring_status_name(TASKRING_FAILED), "failed");
	assert_string_equal(taskring_status_name(TASKRING_DEAD), "dead");
	assert_string_equal(taskring_status_name(TASKRING_CANCELLED), "cancelled");
	assert_string_equal(taskring_status_name(6), "unknown");
	assert_string_equal(taskring_status_name(-1), "unknown");
	assert_string_equal(taskring_status_name(INT_MAX), "unknown");
}

int main(void)
{
	tu_alarm(tu_sanitized() ? 280 : 120);
	atexit(remove_made_dirs);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_shm_defaults),
		cmocka_unit_test(test_open_shm_zeroed_opts_creates_defaults),
		cmocka_unit_test(test_open_path_custom_sizing),
		cmocka_unit_test(test_open_anonymous),
		cmocka_unit_test(test_reopen_sees_same_jobs),
		cmocka_unit_test(test_mode_group),
		cmocka_unit_test(test_nocreate_excl),
		cmocka_unit_test(test_sizing_mismatch),
		cmocka_unit_test(test_symlink_refused),
		cmocka_unit_test(test_bad_magic),
		cmocka_unit_test(test_tiny_files),
		cmocka_unit_test(test_version_and_build_mismatch),
		cmocka_unit_test(test_truncated_and_inconsistent),
		cmocka_unit_test(test_other_owner),
		cmocka_unit_test(test_not_regular_file),
		cmocka_unit_test(test_concurrent_first_openers_shm),
		cmocka_unit_test(test_concurrent_first_openers_path),
		cmocka_unit_test(test_concurrent_declare_same_names),
		cmocka_unit_test(test_unlink_then_open_is_fresh),
		cmocka_unit_test(test_prefault),
		cmocka_unit_test(test_strerror),
	};
	tu_test_filters();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
