/*
 * logsim.h - simulated power loss for the log's tests: an I/O seam that
 * records what a disk would see, the disk images a power loss could leave,
 * and the check of a store recovered from one; the fixture of stores with
 * a log on a real disk, and the log tool. Shared by test_log.c (the log
 * writer), test_durable.c and test_compact.c (stores).
 */
#ifndef TASKRING_TEST_LOGSIM_H
#define TASKRING_TEST_LOGSIM_H

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "wal.h"
#include "testutil.h"

static uint64_t ls_rng_state = 0x2545f4914f6cdd1dull;
static inline uint64_t ls_rng(void)
{
	ls_rng_state ^= ls_rng_state << 13;
	ls_rng_state ^= ls_rng_state >> 7;
	ls_rng_state ^= ls_rng_state << 17;
	return ls_rng_state;
}

/*
 * An I/O seam that does every operation for real (in a /dev/shm directory)
 * and records what would matter to a disk: writes (with their bytes), file
 * syncs, directory syncs, creations and renames, each against a file id
 * that survives renames. From such a recording, an image of "the disk
 * after a power loss at operation p" is made: every write a sync covered
 * before p is there; each 512-byte sector of the later writes is there or
 * not, independently (so writes are dropped, torn and reordered); the
 * directory is as its last sync left it, with each later creation,
 * rename or deletion there or not.
 */
enum { OP_WRITE, OP_SYNC, OP_DIRSYNC, OP_CREATE, OP_RENAME, OP_UNLINK };
struct op {
	int kind, file;
	off_t off;
	size_t len;
	uint8_t *data;
	char name[48], name2[48];
};

#define MAX_FILES 256
struct rec {
	struct op *ops;
	size_t nops, cap;
	char is_dir[1024];         /* fd -> it is a directory (the log's) */
	int fd_file[1024];         /* fd -> file id + 1 */
	char names[MAX_FILES][48]; /* file id -> its name now */
	int nfiles;
};

static inline struct op *rec_op(struct rec *r, int kind)
{
	if (r->nops == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 256;
		r->ops = realloc(r->ops, r->cap * sizeof(*r->ops));
		assert_non_null(r->ops);
	}
	struct op *o = &r->ops[r->nops++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	return o;
}

static inline int rec_open(void *ctx, int dirfd, const char *name, int flags, mode_t mode)
{
	struct rec *r = ctx;
	int fd = tr__log_sysio.open(NULL, dirfd, name, flags, mode);
	if (fd < 0 || fd >= 1024)
		return fd;
	r->is_dir[fd] = !!(flags & O_DIRECTORY);
	if (flags & O_DIRECTORY) {
		r->fd_file[fd] = 0;
		return fd;
	}
	/* A file made by this recording is known by its name; others (from
	 * before it) are not recorded. O_CREAT of a known name opens it. */
	int id = -1;
	for (int f = 0; f < r->nfiles; f++)
		if (!strcmp(r->names[f], name))
			id = f;
	if ((flags & O_CREAT) && (id < 0 || (flags & O_TRUNC))) {
		assert_true(r->nfiles < MAX_FILES);
		struct op *o = rec_op(r, OP_CREATE);
		if (id >= 0)
			r->names[id][0] = 0; /* O_TRUNC: a new file under that name */
		o->file = r->nfiles++;
		snprintf(o->name, sizeof(o->name), "%s", name);
		snprintf(r->names[o->file], sizeof(r->names[0]), "%s", name);
		id = o->file;
	}
	r->fd_file[fd] = id + 1;
	return fd;
}

static inline ssize_t rec_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	struct rec *r = ctx;
	ssize_t w = tr__log_sysio.pwrite(NULL, fd, buf, n, off);
	if (w > 0 && r->fd_file[fd]) {
		struct op *o = rec_op(r, OP_WRITE);
		o->file = r->fd_file[fd] - 1;
		o->off = off;
		o->len = (size_t)w;
		o->data = malloc((size_t)w);
		assert_non_null(o->data);
		memcpy(o->data, buf, (size_t)w);
	}
	return w;
}

static inline int rec_sync(void *ctx, int fd)
{
	struct rec *r = ctx;
	int rc = tr__log_sysio.fsync(NULL, fd);
	if (!rc) {
		if (fd >= 0 && fd < 1024 && r->is_dir[fd])
			rec_op(r, OP_DIRSYNC);
		else if (r->fd_file[fd])
			rec_op(r, OP_SYNC)->file = r->fd_file[fd] - 1;
	}
	return rc;
}

static inline int rec_renameat(void *ctx, int dirfd, const char *from, const char *to)
{
	struct rec *r = ctx;
	int rc = tr__log_sysio.renameat(NULL, dirfd, from, to);
	if (!rc) {
		struct op *o = rec_op(r, OP_RENAME);
		snprintf(o->name, sizeof(o->name), "%s", from);
		snprintf(o->name2, sizeof(o->name2), "%s", to);
		for (int f = 0; f < r->nfiles; f++)
			if (!strcmp(r->names[f], to))
				r->names[f][0] = 0;
		for (int f = 0; f < r->nfiles; f++)
			if (!strcmp(r->names[f], from))
				snprintf(r->names[f], sizeof(r->names[0]), "%s", to);
	}
	return rc;
}

static inline int rec_unlinkat(void *ctx, int dirfd, const char *name)
{
	struct rec *r = ctx;
	int rc = tr__log_sysio.unlinkat(NULL, dirfd, name);
	if (!rc) {
		struct op *o = rec_op(r, OP_UNLINK);
		snprintf(o->name, sizeof(o->name), "%s", name);
		for (int f = 0; f < r->nfiles; f++)
			if (!strcmp(r->names[f], name))
				r->names[f][0] = 0;
	}
	return rc;
}

static inline int rec_close(void *ctx, int fd)
{
	struct rec *r = ctx;
	if (fd >= 0 && fd < 1024)
		r->fd_file[fd] = 0, r->is_dir[fd] = 0;
	return tr__log_sysio.close(NULL, fd);
}

static inline int pass_fallocate(void *ctx, int fd, off_t off, off_t len)
{
	(void)ctx;
	return tr__log_sysio.fallocate(NULL, fd, off, len);
}

static inline struct tr_log_io rec_io(struct rec *r)
{
	struct tr_log_io io = tr__log_sysio;
	io.ctx = r;
	io.open = rec_open;
	io.close = rec_close;
	io.pwrite = rec_pwrite;
	io.fdatasync = rec_sync;
	io.fsync = rec_sync;
	io.renameat = rec_renameat;
	io.unlinkat = rec_unlinkat;
	io.fallocate = pass_fallocate; /* zeros: the image's files read 0 past their writes */
	return io;
}

/* A file's bytes in an image. */
struct img_file {
	uint8_t *data;
	size_t len;
};

static inline void img_put(struct img_file *f, off_t off, const uint8_t *p, size_t n)
{
	size_t end = (size_t)off + n;
	if (end > f->len) {
		f->data = realloc(f->data, end);
		assert_non_null(f->data);
		memset(f->data + f->len, 0, end - f->len);
		f->len = end;
	}
	memcpy(f->data + off, p, n);
}

/* Make in @dir the disk as a power loss at operation @p would leave it. */
static inline void make_image(const struct rec *r, size_t p, const char *dir)
{
	struct img_file files[MAX_FILES];
	char dirent_name[MAX_FILES][48]; /* file id -> its name in the image, or "" */
	char live_name[MAX_FILES][48];   /* file id -> its name as the ops went */
	size_t last_sync[MAX_FILES], last_dirsync = 0;
	int has_sync[MAX_FILES];
	memset(files, 0, sizeof(files));
	memset(dirent_name, 0, sizeof(dirent_name));
	memset(live_name, 0, sizeof(live_name));
	memset(has_sync, 0, sizeof(has_sync));
	int has_dirsync = 0;
	for (size_t k = 0; k < p; k++) {
		const struct op *o = &r->ops[k];
		if (o->kind == OP_SYNC) {
			last_sync[o->file] = k;
			has_sync[o->file] = 1;
		} else if (o->kind == OP_DIRSYNC) {
			last_dirsync = k;
			has_dirsync = 1;
		}
	}
	/* Names: replayed in order; those after the last directory sync
	 * only by chance. */
	for (size_t k = 0; k < p; k++) {
		const struct op *o = &r->ops[k];
		int durable = has_dirsync && k < last_dirsync;
		if (o->kind == OP_CREATE) {
			snprintf(live_name[o->file], 48, "%s", o->name);
			if (durable || ls_rng() % 2)
				snprintf(dirent_name[o->file], 48, "%s", o->name);
		} else if (o->kind == OP_RENAME) {
			int id = -1;
			for (int f = 0; f < MAX_FILES; f++)
				if (!strcmp(live_name[f], o->name))
					id = f;
			if (id < 0)
				continue;
			snprintf(live_name[id], 48, "%s", o->name2);
			if (durable || ls_rng() % 2) {
				/* The target name now means this file. */
				for (int f = 0; f < MAX_FILES; f++)
					if (!strcmp(dirent_name[f], o->name2))
						dirent_name[f][0] = 0;
				snprintf(dirent_name[id], 48, "%s", o->name2);
			}
		} else if (o->kind == OP_UNLINK) {
			for (int f = 0; f < MAX_FILES; f++)
				if (!strcmp(live_name[f], o->name)) {
					live_name[f][0] = 0;
					if (durable || ls_rng() % 2)
						dirent_name[f][0] = 0;
				}
		}
	}
	/* Data: synced writes whole, later ones sector by sector. */
	for (size_t k = 0; k < p; k++) {
		const struct op *o = &r->ops[k];
		if (o->kind != OP_WRITE)
			continue;
		if (has_sync[o->file] && k < last_sync[o->file]) {
			img_put(&files[o->file], o->off, o->data, o->len);
			continue;
		}
		for (size_t at = 0; at < o->len;) {
			size_t sector_end = ((size_t)(o->off + (off_t)at) / 512 + 1) * 512 - (size_t)o->off;
			size_t n = (sector_end < o->len ? sector_end : o->len) - at;
			if (ls_rng() % 2)
				img_put(&files[o->file], o->off + (off_t)at, o->data + at, n);
			at += n;
		}
	}
	for (int f = 0; f < MAX_FILES; f++) {
		if (dirent_name[f][0]) {
			char path[160];
			snprintf(path, sizeof(path), "%.96s/%.47s", dir, dirent_name[f]);
			int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
			assert_true(fd >= 0);
			if (files[f].len)
				assert_int_equal(pwrite(fd, files[f].data, files[f].len, 0), (ssize_t)files[f].len);
			close(fd);
		}
		free(files[f].data);
	}
}

/* Remove the files of @dir; 0, or -1 if it cannot be opened. */
static inline int unlink_all(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	return 0;
}

/* Empty @dir, which must exist. */
static inline void empty_dir(const char *dir)
{
	assert_int_equal(unlink_all(dir), 0);
}

/* Remove @dir and its files, if it is there. */
static inline void rm_dir(const char *dir)
{
	if (unlink_all(dir) == 0)
		rmdir(dir);
}


/* The whole of the file open on @fd (malloc()ed), its size in *@sizep. */
static inline uint8_t *slurp(int fd, size_t *sizep)
{
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	size_t size = (size_t)sb.st_size;
	uint8_t *p = malloc(size ? size : 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, size, 0), (ssize_t)size);
	*sizep = size;
	return p;
}

/* Free what a recording holds. */
static inline void rec_free(struct rec *r)
{
	for (size_t k = 0; k < r->nops; k++)
		free(r->ops[k].data);
	free(r->ops);
	memset(r, 0, sizeof(*r));
}

/* ---- stores with a log on a real disk: the tests' fixture ------------------------ */

/*
 * A store name and a log directory in the build directory (a real disk:
 * never tmpfs, where fdatasync is a no-op), removed afterwards.
 */
struct dfx {
	struct tu_fx fx;
	char dir[PATH_MAX];
};

static inline int dfx_setup(void **state)
{
	if (tu_fx_alloc(state, sizeof(struct dfx)))
		return -1;
	struct dfx *f = *state;
	const char *build = getenv("BUILD");
	snprintf(f->dir, sizeof(f->dir), "%s/durable-XXXXXX", build && *build ? build : "build");
	return mkdtemp(f->dir) ? 0 : -1;
}

static inline int dfx_teardown(void **state)
{
	struct dfx *f = *state;
	tr__wal_test_io = NULL;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", f->dir);
	char mnt[PATH_MAX + 8];
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	umount2(mnt, MNT_DETACH); /* (a full-disk test that failed) */
	tu_kids_kill_all();
	tu_fx_teardown(state);
	rm_dir(dir);
	return 0;
}

static int no_iouring; /* the pass: 0 io_uring, 1 pwrite + fdatasync */

/* Options of a store with its log in @dir: 1 MiB segments. */
static inline struct taskring_store_opts log_opts(const char *dir, uint32_t durability)
{
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.slots = 8192;
	o.log_dir = dir;
	o.durability = durability;
	o.flags = no_iouring ? TASKRING_STORE_NO_IOURING : 0;
	o.segment_bytes = 1 << 20;
	return o;
}

/* `taskring log ARGS DIR`: its exit status, with its output in @out. */
static inline int run_tool(const char *args, const char *dir, char *out, size_t cap)
{
	const char *build = getenv("BUILD");
	char cmd[PATH_MAX * 2 + 64];
	snprintf(cmd, sizeof(cmd), "%s/taskring log %s %s 2>&1", build && *build ? build : "build", args, dir);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, cap - 1, p);
	out[n] = 0;
	char sink[4096];
	while (fread(sink, 1, sizeof(sink), p) > 0) /* the rest, unread */
		;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * Power-loss images of a store: what the workload had acknowledged when
 * operation op of the recording began, and the check of an image.
 */
struct pl_ack {
	size_t op;     /* acknowledged once the ops before it happened */
	int completed; /* 0 enqueue, 1 completion */
	char id[TASKRING_ID_LEN + 1];
};

/* A handler that completes its job, and says which it was. */
static char pl_ran_id[TASKRING_ID_LEN + 1];
static inline int pl_note(struct taskring_ctx *ctx, void *arg)
{
	(void)arg;
	taskring_job_id(taskring_ctx_job(ctx), pl_ran_id);
	taskring_ctx_result(ctx, "ok", 2);
	return TASKRING_OK;
}

/*
 * Open the store recovered from image @img (made at op @p), with @o, and
 * check it: every job acknowledged before @p is there (complete, where
 * that was acknowledged), and nothing that was never enqueued. Returns how
 * many jobs it has.
 */
static inline int pl_check_image(int k, size_t p, size_t nops, const char *img, struct taskring_store_opts *o,
				 const struct pl_ack *acks, int nacks)
{
	struct taskring_store *rs = NULL;
	o->log_dir = img;
	int rc = taskring_store_open(NULL, o, &rs);
	if (rc)
		fail_msg("image %d (power loss at op %zu of %zu): open = %d (%s)", k, p, nops, rc,
			 taskring_strerror(rc));
	for (int a = 0; a < nacks && acks[a].op <= p; a++) {
		struct taskring_job j;
		if (taskring_job_lookup(rs, acks[a].id, &j) != 0)
			fail_msg("image %d (op %zu): acknowledged job %s lost", k, p, acks[a].id);
		if (acks[a].completed && taskring_job_status(&j) != TASKRING_COMPLETE)
			fail_msg("image %d (op %zu): acknowledged completion of %s lost", k, p, acks[a].id);
	}
	uint64_t cur = 0;
	struct taskring_job j;
	int n = 0;
	while (taskring_job_next(rs, 0, NULL, NULL, &cur, &j) == 1) {
		char id[TASKRING_ID_LEN + 1];
		taskring_job_id(&j, id);
		int known = 0;
		for (int a = 0; a < nacks && !known; a++)
			known = !strcmp(acks[a].id, id);
		if (!known)
			fail_msg("image %d (op %zu): job %s was never enqueued", k, p, id);
		n++;
	}
	assert_rc(taskring_store_close(rs), 0);
	return n;
}

#endif
