/*
 * ckpt.c - rebuilding jobs from the log (recovery's replay), and compaction:
 * the checkpoints that let the log forget its old segments.
 *
 * Replay. Recovery (wal.c) hands every record of the log, in order, to
 * tr__replay_record(), which applies it to a region that nobody else sees
 * yet: an enqueue (or a checkpoint's job record) puts the job in the slot
 * its id names, whatever the slot held; the other records change the job
 * only if the slot still holds it. The finish then turns running jobs into
 * interrupted attempts and puts the pending ones back in their queues and
 * dependents lists, in the order they were made.
 *
 * Compaction. The log's records are never rewritten; instead, a checkpoint
 * (format: log.c) holds every job that the stream up to a position pos
 * leaves, so the segments before pos can go. The checkpoint is computed
 * from the log alone, never from the live region: tr__log_compact() replays
 * the newest checkpoint and the closed segments after it (every segment but
 * the newest, which the flusher may be writing) into a private, anonymous
 * region sized like the store, writes every job found there as a job record
 * of the new checkpoint (in the order they were enqueued, so dependencies
 * come before their dependents), syncs and renames it into place, then
 * deletes the segments before its pos and the older checkpoints. So a
 * checkpoint is exactly the fold of the records before its pos: replaying
 * it, then the segments from pos, gives what replaying the whole log gave,
 * whatever the live store did meanwhile; and nobody writing to the log ever
 * waits for a compaction.
 *
 * Killed at any instruction, a compaction leaves either no new checkpoint
 * (at most a temporary file, removed by the next) or a whole one; deletion
 * comes after, and a scan ignores what the newest checkpoint covers. One
 * compaction at a time per directory: each holds an exclusive flock() on
 * the directory's COMPACT file; recovery and `taskring log verify|dump`
 * hold it shared while they read, so no file goes from under them.
 *
 * A store's flusher starts a compaction (a thread of its process) when it
 * starts a new segment and the closed segments after the checkpoint hold
 * at least two segments' worth and at least as much as the checkpoint: so
 * the log stays within about twice its live data plus three segments, and
 * each byte is rewritten a bounded number of times. `taskring log compact
 * DIR` does one at once.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"
#include "wal.h"

/* ---- replay -------------------------------------------------------------------------------- */

struct replay {
	struct taskring_store *st;
	uint64_t applied;
	char *err;
	size_t errcap;
	uint64_t *order; /* slot -> when its job was put there (compaction) */
	uint64_t next_order;
	const _Atomic int *stop; /* compaction: give up when it is set */
};

/* The slot of the job a record names, if the slot holds that job now. */
static struct tr_slot *replay_job(struct replay *p, const struct tr_logrec *r)
{
	uint32_t idx = tr__uuid_slot(r->uuid);
	if (idx >= p->st->nslots)
		return NULL;
	struct tr_slot *s = &p->st->slots[idx];
	uint32_t state = atomic_load_explicit(&s->s_state, memory_order_relaxed);
	if (TR_STATUS(state) == TR_ST_FREE || memcmp(s->s_uuid, r->uuid, 16))
		return NULL;
	return s;
}

static void set_state(struct tr_slot *s, uint32_t status, uint32_t attempt)
{
	uint32_t g = atomic_load_explicit(&s->s_gen, memory_order_relaxed);
	uint32_t old = atomic_load_explicit(&s->s_state, memory_order_relaxed);
	atomic_store_explicit(&s->s_state,
			      TR_MKSTATE(status, attempt & TR_ATTEMPT_MAX, TR_GEN_TAG(g)) | (old & TR_ST_CANCEL),
			      memory_order_relaxed);
}

static struct tr_queue *queue_of(struct taskring_store *st, struct tr_slot *s)
{
	uint32_t qi = TR_GET(s->s_queue);
	return qi < st->nqueues ? &st->queues[qi] : NULL;
}

static void count(struct taskring_store *st, struct tr_slot *s, size_t field)
{
	struct tr_queue *q = queue_of(st, s);
	if (q)
		atomic_fetch_add_explicit((_Atomic uint64_t *)((uint8_t *)q + field), 1, memory_order_relaxed);
}

/* A name from a record: 1..63 bytes, copied with its NUL. */
static int record_name(const struct tr_logrec *r, int k, char out[TASKRING_NAME_MAX + 1])
{
	if (r->blen[k] == 0 || r->blen[k] > TASKRING_NAME_MAX)
		return -EBADMSG;
	memcpy(out, r->blob[k], r->blen[k]);
	out[r->blen[k]] = 0;
	return 0;
}

static int replay_enqueue(struct replay *p, const struct tr_logrec *r)
{
	struct taskring_store *st = p->st;
	struct enq_req q;
	char queue[TASKRING_NAME_MAX + 1], task[TASKRING_NAME_MAX + 1];
	char meta[TASKRING_METADATA_MAX + 1], ukey[TASKRING_UNIQUE_KEY_MAX + 1];
	uint32_t idx = tr__uuid_slot(r->uuid);
	int rc;

	if (idx >= st->nslots || r->blen[2] > st->max_payload || r->blen[3] > TASKRING_METADATA_MAX ||
	    r->blen[4] > TASKRING_UNIQUE_KEY_MAX || r->blen[5] % 8 || r->blen[5] / 8 > TASKRING_MAX_RETRY_DELAYS ||
	    r->blen[6] % 16 || r->blen[6] / 16 > TASKRING_DEPENDS_MAX)
		return -EBADMSG;
	if ((rc = record_name(r, 0, queue)) || (rc = record_name(r, 1, task)))
		return rc;
	memset(&q, 0, sizeof(q));
	if ((rc = tr__queue_find(st, queue, 1)) < 0)
		return rc;
	q.queue = (uint32_t)rc;
	if ((rc = tr__task_find(st, task, 1)) < 0)
		return rc;
	q.task = (uint32_t)rc;
	q.payload = r->blob[2];
	q.len = r->blen[2];
	q.priority = (int32_t)r->v[0];
	q.max_retries = (uint32_t)r->v[1];
	q.eta_ns = r->v[3];
	q.timeout_ns = r->v[4];
	q.ttl_ns = r->v[5];
	q.base_ns = r->v[6];
	q.cap_ns = r->v[7];
	q.expires_ns = r->v[8] ? r->v[8] - r->v[2] : 0;
	if (r->blen[3]) {
		memcpy(meta, r->blob[3], r->blen[3]);
		meta[r->blen[3]] = 0;
		q.meta = meta;
		q.metalen = r->blen[3];
	}
	if (r->blen[4]) {
		memcpy(ukey, r->blob[4], r->blen[4]);
		ukey[r->blen[4]] = 0;
		q.ukey = ukey;
		q.ukeylen = r->blen[4];
		q.uhash = tr__unique_hash(ukey, q.ukeylen);
	}
	q.delays = r->blen[5] ? r->blob[5] : NULL;
	q.ndelays = r->blen[5] / 8;
	q.ndeps = r->blen[6] / 16;
	rc = tr__job_restore(st, idx, &q, r->uuid, r->v[2], r->blob[6]);
	if (rc)
		return rc;
	count(st, &st->slots[idx], offsetof(struct tr_queue, q_enqueued));
	if (p->order)
		p->order[idx] = ++p->next_order;
	return 0;
}

/*
 * A checkpoint's job record: the enqueue it begins like, then the rest of
 * the job as it stood (state, times, result, error history).
 */
static int replay_job_whole(struct replay *p, const struct tr_logrec *r)
{
	struct taskring_store *st = p->st;
	int64_t status = r->v[9], attempt = r->v[10];
	if (status < TASKRING_PENDING || status > TASKRING_CANCELLED || attempt < 0 || attempt > TR_ATTEMPT_MAX ||
	    r->v[11] < 0 || r->v[11] > TR_ATTEMPT_MAX || r->blen[7] > st->max_payload)
		return -EBADMSG;
	/* The error history must parse whole before anything is applied. */
	const uint8_t *e = r->blob[8], *end = e + r->blen[8];
	uint32_t nerr = 0;
	for (const uint8_t *q = e; q < end; nerr++) {
		uint32_t len;
		if (end - q < 16)
			return -EBADMSG;
		memcpy(&len, q + 12, 4);
		len = le32toh(len);
		if (len > TASKRING_ERROR_MAX || (size_t)(end - q - 16) < len)
			return -EBADMSG;
		q += 16 + len;
	}
	int rc = replay_enqueue(p, r);
	if (rc)
		return rc;
	struct tr_slot *s = &st->slots[tr__uuid_slot(r->uuid)];
	for (const uint8_t *q = e; q < end;) {
		uint64_t at;
		uint32_t att, len;
		memcpy(&at, q, 8);
		memcpy(&att, q + 8, 4);
		memcpy(&len, q + 12, 4);
		len = le32toh(len);
		tr__error_append_at(st, s, le32toh(att), (const char *)q + 16, len, (int64_t)le64toh(at));
		q += 16 + len;
	}
	if (r->blen[7] || status == TASKRING_COMPLETE)
		tr__slot_set_result(st, s, r->blob[7], r->blen[7]);
	TR_SET(s->s_retry_count, (uint32_t)r->v[11]);
	TR_SET(s->s_started_at, r->v[12]);
	TR_SET(s->s_completed_at, r->v[13]);
	TR_SET(s->s_owner_pid, (int32_t)r->v[14]);
	set_state(s, (uint32_t)status, (uint32_t)attempt);
	static const size_t counter[] = {
		[TASKRING_COMPLETE] = offsetof(struct tr_queue, q_completed),
		[TASKRING_FAILED] = offsetof(struct tr_queue, q_failed),
		[TASKRING_DEAD] = offsetof(struct tr_queue, q_dead),
		[TASKRING_CANCELLED] = offsetof(struct tr_queue, q_cancelled),
	};
	if (TR_TERMINAL(status))
		count(st, s, counter[status]);
	return 0;
}

/* An error entry from a record's error blob (the last one). */
static void replay_error(struct replay *p, struct tr_slot *s, const struct tr_logrec *r, int blob, uint32_t attempt,
			 int64_t when)
{
	if (r->blen[blob])
		tr__error_append_at(p->st, s, attempt, r->blob[blob], r->blen[blob], when);
}

/* Apply record @r to the region (the scanner's record callback). */
int tr__replay_record(void *arg, const struct tr_logrec *r, const char *seg, uint64_t off)
{
	struct replay *p = arg;
	struct taskring_store *st = p->st;
	struct tr_slot *s;
	int rc = 0;
	(void)off;

	if (p->stop && atomic_load_explicit(p->stop, memory_order_acquire))
		return -ECANCELED;
	switch (r->type) {
	case TR_LOG_STORE:
		if ((uint64_t)r->v[0] != st->nslots || (uint64_t)r->v[1] != st->max_payload ||
		    (uint64_t)r->v[2] != st->nqueues || (uint64_t)r->v[3] != st->ntasks ||
		    (uint64_t)r->v[4] != st->arena_bytes)
			rc = TASKRING_ESIZING;
		break;
	case TR_LOG_ENQUEUE:
		rc = replay_enqueue(p, r);
		break;
	case TR_LOG_JOB:
		rc = replay_job_whole(p, r);
		break;
	case TR_LOG_START:
		if ((s = replay_job(p, r)) != NULL) {
			set_state(s, TASKRING_RUNNING, (uint32_t)r->v[0]);
			TR_SET(s->s_started_at, r->v[2]);
			TR_SET(s->s_owner_pid, (int32_t)r->v[1]);
			count(st, s, offsetof(struct tr_queue, q_started));
		}
		break;
	case TR_LOG_COMPLETE:
		if ((s = replay_job(p, r)) != NULL) {
			if (r->blen[0] > st->max_payload)
				return -EBADMSG;
			tr__slot_set_result(st, s, r->blob[0], r->blen[0]);
			TR_SET(s->s_completed_at, r->v[1]);
			set_state(s, TASKRING_COMPLETE, (uint32_t)r->v[0]);
			count(st, s, offsetof(struct tr_queue, q_completed));
		}
		break;
	case TR_LOG_RETRY:
		if ((s = replay_job(p, r)) != NULL) {
			replay_error(p, s, r, 0, (uint32_t)r->v[0], r->v[1]);
			TR_SET(s->s_retry_count, (uint32_t)r->v[0] + 1);
			TR_SET(s->s_scheduled_at, r->v[2]);
			TR_SET(s->s_completed_at, 0);
			set_state(s, TASKRING_PENDING, (uint32_t)r->v[0] + 1);
			count(st, s, offsetof(struct tr_queue, q_retried));
		}
		break;
	case TR_LOG_FAILED:
	case TR_LOG_DEAD:
	case TR_LOG_CANCEL:
		if ((s = replay_job(p, r)) != NULL) {
			replay_error(p, s, r, 0, (uint32_t)r->v[0], r->v[1]);
			TR_SET(s->s_completed_at, r->v[1]);
			uint32_t status = r->type == TR_LOG_FAILED ? TASKRING_FAILED
					  : r->type == TR_LOG_DEAD  ? TASKRING_DEAD
								     : TASKRING_CANCELLED;
			set_state(s, status, (uint32_t)r->v[0]);
			count(st, s,
			      r->type == TR_LOG_FAILED ? offsetof(struct tr_queue, q_failed)
			      : r->type == TR_LOG_DEAD ? offsetof(struct tr_queue, q_dead)
							: offsetof(struct tr_queue, q_cancelled));
		}
		break;
	case TR_LOG_REMOVE:
		if ((s = replay_job(p, r)) != NULL)
			tr__free_in_place(st, s, atomic_load_explicit(&s->s_state, memory_order_relaxed));
		break;
	case TR_LOG_RESCHEDULE:
		if ((s = replay_job(p, r)) != NULL) {
			TR_SET(s->s_priority, (int32_t)r->v[0]);
			TR_SET(s->s_scheduled_at, r->v[1]);
		}
		break;
	default:
		break; /* checkpoint_begin, checkpoint_end: markers */
	}
	if (rc && p->err)
		snprintf(p->err, p->errcap, "%s: record at sequence %llu cannot be applied (%d)", seg,
			 (unsigned long long)r->seq, rc);
	if (!rc)
		p->applied++;
	return rc;
}

/*
 * After the replay: every job that was running when the log ends had its
 * attempt interrupted (counted as a failed attempt, as the death of its
 * worker would be); pending jobs join their queues (or wait for their
 * dependencies); the unique keys and the recycle ring are rebuilt.
 */
static int by_order(const void *a, const void *b, void *arg)
{
	const uint64_t *order = arg;
	uint64_t x = order[*(const uint32_t *)a], y = order[*(const uint32_t *)b];
	return x < y ? -1 : x > y;
}

/*
 * The slots that were given jobs, in the order the jobs were made (@order:
 * slot -> its rank among the log's enqueues, unique, 1 .. @ranks; 0 none):
 * *@np of them, or NULL (no memory: slot order will do). By buckets when
 * the ranks are few, else sorted.
 */
static uint32_t *made_order(struct taskring_store *st, const uint64_t *order, uint64_t ranks, uint32_t *np)
{
	uint32_t *seq = malloc(sizeof(*seq) * st->nslots), n = 0;
	uint32_t *by_rank = ranks <= 4ull * st->nslots ? malloc(sizeof(*by_rank) * (ranks + 1)) : NULL;
	if (!seq) {
		free(by_rank);
		return NULL;
	}
	if (!by_rank) {
		for (uint32_t i = 0; i < st->nslots; i++)
			if (order[i])
				seq[n++] = i;
		qsort_r(seq, n, sizeof(*seq), by_order, (void *)order);
		*np = n;
		return seq;
	}
	for (uint64_t r = 0; r <= ranks; r++)
		by_rank[r] = TR_NIL;
	for (uint32_t i = 0; i < st->nslots; i++)
		if (order[i] && order[i] <= ranks)
			by_rank[order[i]] = i;
	for (uint64_t r = 1; r <= ranks; r++)
		if (by_rank[r] != TR_NIL)
			seq[n++] = by_rank[r];
	free(by_rank);
	*np = n;
	return seq;
}

static void replay_finish(struct taskring_store *st, const uint64_t *order, uint64_t ranks)
{
	static const char msg[] = "attempt interrupted: the store was recovered from its log while it ran";
	int64_t now = tr__now_real();
	uint64_t end = 0;
	uint32_t nseq = 0, *seq = made_order(st, order, ranks, &nseq);

	for (uint32_t i = 0; i < st->nslots; i++) {
		struct tr_slot *s = &st->slots[i];
		uint32_t state = atomic_load_explicit(&s->s_state, memory_order_relaxed);
		if (TR_STATUS(state) != TASKRING_RUNNING)
			continue;
		uint32_t attempt = TR_ATTEMPT(state);
		tr__error_append_at(st, s, attempt, msg, sizeof(msg) - 1, now);
		if (attempt >= TR_GET(s->s_max_retries) || attempt + 1 > TR_ATTEMPT_MAX) {
			int64_t v[2] = {attempt, now};
			TR_SET(s->s_completed_at, now);
			set_state(s, TASKRING_DEAD, attempt);
			tr__wal_log(st, TR_LOG_DEAD, s, v, 2, msg, sizeof(msg) - 1, &end);
		} else {
			int64_t v[3] = {attempt, now, now};
			TR_SET(s->s_retry_count, attempt + 1);
			TR_SET(s->s_scheduled_at, now);
			set_state(s, TASKRING_PENDING, attempt + 1);
			tr__wal_log(st, TR_LOG_RETRY, s, v, 3, msg, sizeof(msg) - 1, &end);
		}
	}
	tr__deps_restore(st, seq, nseq);
	for (uint32_t n = 0; n < (seq ? nseq : st->nslots); n++) {
		uint32_t i = seq ? seq[n] : n;
		struct tr_slot *s = &st->slots[i];
		uint32_t state = atomic_load_explicit(&s->s_state, memory_order_relaxed);
		struct tr_queue *q = queue_of(st, s);
		uint8_t loc = TR_GET(s->s_loc);
		if (TR_STATUS(state) == TASKRING_PENDING && q && (loc == TR_LOC_NONE || loc == TR_LOC_READYING))
			tr__queue_link_locked(st, q, i, now);
	}
	tr__unique_rebuild(st);
	tr__ring_rebuild(st);
	free(seq);
}


/* ---- compaction ------------------------------------------------------------------------------ */

#define COMPACT_NAME "COMPACT"

/*
 * The compaction lock of the log in @dir: exclusive (a compaction) or shared
 * (a reader of the whole log), waiting for it or not (-EBUSY). Returns the
 * descriptor that holds it (close() gives it back), or an error.
 */
int tr__log_lock(const char *dir, int exclusive, int wait)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/" COMPACT_NAME, dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EACCES)
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC); /* a read-only reader */
	if (fd < 0)
		return -errno;
	if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)) < 0) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return err;
	}
	return fd;
}

/*
 * Scan the log of @st's directory (st->hdr->h_log_dir) with repair, replay
 * it into @st, a region nobody else sees yet, and finish (above). Returns 0
 * with *@s what the scan found, or an error (@err, if given, says what and
 * where).
 */
int tr__replay_log(struct taskring_store *st, const struct tr_log_io *io, struct tr_log_scan *s, char *err,
		   size_t errcap)
{
	struct replay p = {st, 0, err, errcap, calloc(st->nslots, sizeof(uint64_t)), 0, NULL};
	if (!p.order)
		return -ENOMEM;
	int lock = tr__log_lock(st->hdr->h_log_dir, 0, 1);
	memset(s, 0, sizeof(*s));
	s->record = tr__replay_record;
	s->arg = &p;
	s->repair = 1;
	int rc = lock < 0 ? lock : tr__log_scan(io, st->hdr->h_log_dir, s);
	if (lock >= 0)
		close(lock);
	if (rc && err && s->error[0])
		snprintf(err, errcap, "%s", s->error);
	if (!rc)
		replay_finish(st, p.order, p.next_order);
	free(p.order);
	return rc;
}

/* Write every job of the folded region @st into checkpoint @c, in the
 * order they were made (@order, @ranks: as for made_order()). */
static int write_jobs(struct taskring_store *st, struct tr_ckpt_writer *c, const uint64_t *order, uint64_t ranks,
		      const _Atomic int *stop)
{
	uint32_t n = 0, *seq = made_order(st, order, ranks, &n);
	uint8_t *scratch = NULL;
	size_t scap = 0;
	int rc = seq ? 0 : -ENOMEM;
	for (uint32_t k = 0; k < n && !rc; k++) {
		struct tr_logrec r;
		if (stop && atomic_load_explicit(stop, memory_order_acquire))
			rc = -ECANCELED;
		else if ((rc = tr__job_snapshot(st, seq[k], &r, &scratch, &scap)) == 0)
			rc = tr__ckpt_add(c, &r);
		else if (rc == 1)
			rc = 0; /* (removed since it was made) */
	}
	free(scratch);
	free(seq);
	return rc;
}

/*
 * Compact the log in @dir (see the top): fold its newest checkpoint and its
 * closed segments into a new checkpoint, then delete what that replaces.
 * Returns 0 with *@out filled (out->pos 0: there was nothing to fold),
 * -EBUSY (another compaction of this log is under way), -ECANCELED (*@stop
 * became non-zero), TASKRING_ELOGCORRUPT (@err says where), or another
 * error; after an error the log is as it was.
 */
int tr__log_compact(const struct tr_log_io *io, const char *dir, const _Atomic int *stop,
		    struct tr_compaction *out, char *err, size_t errcap)
{
	struct tr_log_scan s;
	struct tr_logrec store;
	struct taskring_store *st = NULL;
	uint64_t *order = NULL;
	uint64_t pos = 0, ckpt = 0;
	int rc, dirfd = -1;

	memset(out, 0, sizeof(*out));
	int lock = tr__log_lock(dir, 1, 0);
	if (lock < 0)
		return lock;
	dirfd = io->open(io->ctx, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
	rc = dirfd < 0 ? dirfd : tr__log_bounds(dirfd, &pos, &ckpt);
	if (rc == -ENOENT || (!rc && pos <= ckpt)) {
		rc = 0; /* no closed segment after the checkpoint */
		goto out;
	}
	if (rc || (rc = tr__log_last_store(io, dir, &store)) != 0)
		goto out;
	struct taskring_store_opts o;
	memset(&o, 0, sizeof(o));
	o.slots = (uint32_t)store.v[0];
	o.max_payload = (uint32_t)store.v[1];
	o.queues = (uint32_t)store.v[2];
	o.tasks = (uint32_t)store.v[3];
	o.arena_bytes = (uint64_t)store.v[4];
	if ((rc = taskring_store_open(NULL, &o, &st)) != 0)
		goto out;
	if (!(order = calloc(st->nslots, sizeof(*order)))) {
		rc = -ENOMEM;
		goto out;
	}
	struct replay p = {st, 0, err, errcap, order, 0, stop};
	memset(&s, 0, sizeof(s));
	s.record = tr__replay_record;
	s.arg = &p;
	s.until = pos;
	rc = tr__log_scan(io, dir, &s);
	if (rc) {
		if (err && s.error[0])
			snprintf(err, errcap, "%s", s.error);
		if (rc == -EBADMSG)
			rc = TASKRING_ELOGCORRUPT;
		goto out;
	}
	if (s.end_seq != pos) {
		/* A segment after the checkpoint is missing or short. */
		if (err)
			snprintf(err, errcap, "%s: the log before sequence %llu ends at %llu", dir,
				 (unsigned long long)pos, (unsigned long long)s.end_seq);
		rc = TASKRING_ELOGCORRUPT;
		goto out;
	}
	struct tr_ckpt_writer c;
	if ((rc = tr__ckpt_begin(&c, io, dirfd, pos, &store)) != 0)
		goto out;
	rc = write_jobs(st, &c, order, p.next_order, stop);
	rc = rc ? (tr__ckpt_abort(&c), rc) : tr__ckpt_commit(&c);
	if (rc)
		goto out;
	out->pos = pos;
	out->jobs = c.jobs;
	out->bytes = c.off;
	out->folded = s.segments;
	out->removed = (uint32_t)tr__log_prune(io, dirfd, pos);
out:
	free(order);
	if (st)
		taskring_store_close(st);
	if (dirfd >= 0)
		io->close(io->ctx, dirfd);
	close(lock);
	return rc;
}
