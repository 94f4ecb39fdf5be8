/*
 * taskring.h - the public interface of taskring, a job queue for one Linux host.
 *
 * Producers and workers, in one process or many, exchange jobs through one
 * shared-memory store: a slot table, per-queue ready lists and timers, and an
 * arena for payloads, results and error texts. Idle workers and result waiters
 * sleep on futexes in the store and are woken by the change they wait for;
 * nothing polls. The job model is that of the Python task queue taskito: six
 * states (pending, running, complete, failed, dead, cancelled), retries with
 * backoff, a dead-letter list, progress, error history and a JSON view.
 *
 * This is the only public header. Every function is documented below with
 * what it does, each parameter, every error it returns and whether it blocks.
 *
 * Conventions
 *   - Every fallible call returns int: >= 0 on success, < 0 on failure. A
 *     failure is -errno where one fits (-EINVAL, -ENOENT, -EAGAIN, ...) or one
 *     of the library codes TASKRING_E* below (a band from -1000 down);
 *     taskring_strerror() describes either. errno is never part of the API.
 *   - When a call fails, its output parameters are left untouched and the
 *     store is unchanged.
 *   - The library never prints, never exits and never aborts on bad input.
 *   - Durations are int64_t nanoseconds (names end in _ns). Absolute times
 *     (eta, created_at, ...) are CLOCK_REALTIME nanoseconds since the epoch.
 *     A timeout of -1 means "wait forever"; 0 means "do not wait".
 *   - Names (task and queue names) are 1 to 63 bytes of printable ASCII
 *     (0x21-0x7e) other than '"' and '\\'.
 *
 * Caveats (read these first)
 *   - A store's sizing is fixed when it is created. Reopening with other
 *     explicit sizes fails with TASKRING_ESIZING; it is never resized.
 *   - Terminal jobs keep their result and errors until their slot is needed
 *     again (oldest terminal first) or until result_ttl passes. After that
 *     every call on the job returns -ENOENT; never another job's data.
 *   - Handlers run in worker threads, or with TASKRING_WORKER_PREFORK in
 *     child processes. A thread cannot be killed safely, so in thread mode a
 *     cancel request on a running job is cooperative: the handler sees the
 *     request through its context. The per-attempt timeout is then the
 *     attempt's lease (see "Leases and the reaper"): when it runs out, the
 *     attempt is ended as a failed attempt (retried by the rules) while the
 *     handler may still run; whatever it does afterwards is ignored. In
 *     prefork mode a timeout or a cancel kills the handler's process.
 *   - Without a log (taskring_store_opts.log_dir), a store survives the
 *     death of any process, not a reboot. With one, it survives both; see
 *     "The log" below. Delivery is at-least-once per attempt.
 *   - A process that dies holding one of the store's locks does not wedge
 *     it: a lock word names its holder's process, and the next locker that
 *     finds that process gone takes the lock over and repairs what it
 *     guards (a queue is rebuilt from the slot table). A job whose worker
 *     process dies while running it, or whose lease runs out, is put back
 *     (or ended) by the reaper; see "Leases and the reaper". So is a slot
 *     that a process held when it died: a job half-written by its producer
 *     (dropped, or linked if it was whole), a job ended and not yet
 *     recycled, a slot half taken from or put into the recycle ring. So are
 *     the arena blocks a dead process had taken and not yet attached to a
 *     job (a payload being enqueued, a result being set): after a death,
 *     the reaper frees every block whose allocator is gone and that no job
 *     names (taskring_reap_stats.blocks_freed). Three windows of a few
 *     instructions still leak a block (space, never data): between taking
 *     a block from a free list and marking it, between marking it attached
 *     and storing it in the job, and between unhooking a job's block and
 *     freeing it.
 *   - A lock held by a live process for more than 5 s (a stopped process)
 *     makes the call that waits for it fail with -EDEADLK, instead of
 *     blocking on; except the log's lock, whose holder may wait that long
 *     on a slow disk.
 *   - Dependencies are registered and resolved under one store-wide
 *     lock, which only jobs that have dependencies or dependents take. A
 *     process that dies holding it leaves the rest to the next holder, which
 *     repairs the counts from marks in the jobs and finishes the cascade; a
 *     dependent that a dying process had found ready and not yet put into
 *     its queue is linked by the reaper.
 *   - The arena (payloads and results over 32 bytes, error texts, metadata)
 *     is shared by all jobs. When it is full, the oldest terminal jobs give
 *     up their blocks first (they read as gone from then on); if that is not
 *     enough, an enqueue fails with -EAGAIN (or waits) and a failed attempt
 *     whose error text finds no room is still retried or ended, without that
 *     entry in its history.
 *   - The store is shared memory: every process attached to it can read and
 *     write all of it. Only give access to processes you trust with the jobs.
 *     One that writes garbage into it (a stray pointer) can lose or damage
 *     jobs, but cannot make the library read or write outside the mapping
 *     or hang: every index, offset and length read from the region is
 *     checked, list walks are bounded, and a lock word that names no live
 *     process is taken over. Calls on such a store may fail with
 *     TASKRING_ECORRUPT (shared state no correct process writes), -EIO,
 *     -ENOENT, -EDEADLK or whatever the damage leads to; tests/test_hostile.c
 *     checks this for 60 s of random writes.
 *   - The library is not async-signal-safe. Handles (struct taskring_job) are
 *     plain values: copy them freely, across threads and, for stores named by
 *     shm name or path, use taskring_job_id()/taskring_job_lookup() to pass a
 *     job to another process.
 *
 * Versions: the library's (TASKRING_VERSION_*, soname on the major), the
 * shared-region format (checked when a store is opened) and, later, the log
 * format are three separate numbers.
 */
#ifndef TASKRING_H
#define TASKRING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TASKRING_VERSION_MAJOR 0
#define TASKRING_VERSION_MINOR 1
#define TASKRING_VERSION_PATCH 0

#if defined(__GNUC__)
#define TASKRING_API __attribute__((visibility("default")))
#define TASKRING_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TASKRING_API
#define TASKRING_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Library error codes, returned negated like -errno values. The X-macro
 * generates both this enum and the texts of taskring_strerror().
 *
 * Besides the errors each call lists: a call that waits for one of the
 * store's locks may fail with -EDEADLK when a live process has held it for
 * more than 5 s (a stopped process, or a lock word written over); and on a
 * store whose shared state was written over by a process outside the
 * library, any call may fail with TASKRING_ECORRUPT or another of its
 * errors (see the caveat on shared memory above).
 */
#define TASKRING_ERRNO_MAP(X)                                                  \
	X(EFORMAT, 1000, "not a taskring store (bad magic)")                   \
	X(EVERSION, 1001, "store has another region format version")           \
	X(EBUILD, 1002, "store was made by an incompatible build (layout signature differs)") \
	X(ESIZING, 1003, "store exists with different sizing")                 \
	X(ECORRUPT, 1004, "store region is corrupt (a header field or offset is out of bounds, or shared state was written over)") \
	X(EOWNER, 1005, "store is owned by another user")                      \
	X(ENOTASK, 1006, "unknown task name (no worker registered it and it was not declared)") \
	X(EFAILED, 1007, "job failed permanently (its error message is available)") \
	X(EDEAD, 1008, "job is dead: retries exhausted (its error message is available)") \
	X(ESTATE, 1009, "job is not in a state that allows this operation")   \
	X(EOPTS, 1010, "options struct was not initialised with its _init function") \
	X(ENOHANDLER, 1011, "no handler registered for this task in this worker") \
	X(EDEPFAILED, 1012, "a dependency failed, is dead or was cancelled") \
	X(ELOG, 1013, "store has another log directory, or none") \
	X(ELOGCORRUPT, 1014, "log is corrupt before its end: `taskring log verify DIR` names the file and offset")

enum taskring_error {
#define TASKRING_ERR_ENUM(name, num, text) TASKRING_##name = -(num),
	TASKRING_ERRNO_MAP(TASKRING_ERR_ENUM)
#undef TASKRING_ERR_ENUM
};

/*
 * taskring_strerror - describe an error code.
 * @err: a negative value returned by any taskring call (-errno or TASKRING_E*).
 * Returns a static, NUL-terminated string; never NULL. Thread-safe.
 */
TASKRING_API const char *taskring_strerror(int err);

/* ------------------------------------------------------------------------ */
/* Store                                                                     */
/* ------------------------------------------------------------------------ */

struct taskring_store;

/* Defaults and limits of a store's sizing. */
#define TASKRING_DEFAULT_SLOTS (1u << 16)
#define TASKRING_MIN_SLOTS 16u
#define TASKRING_MAX_SLOTS (1u << 24)
#define TASKRING_DEFAULT_MAX_PAYLOAD (1u << 20)
#define TASKRING_MAX_MAX_PAYLOAD (64u << 20)
#define TASKRING_DEFAULT_QUEUES 16u
#define TASKRING_MAX_QUEUES 64u
#define TASKRING_DEFAULT_TASKS 256u
#define TASKRING_MAX_TASKS 4096u
#define TASKRING_NAME_MAX 63u
#define TASKRING_ID_LEN 36u          /* canonical UUID text, without NUL */
#define TASKRING_ERROR_MAX 1023u     /* error messages are cut to this length */
#define TASKRING_METADATA_MAX 4096u  /* metadata text, bytes */
#define TASKRING_MAX_RETRY_DELAYS 32u
#define TASKRING_MAX_RETRIES_LIMIT 1000
#define TASKRING_UNIQUE_KEY_MAX 255u
#define TASKRING_DEPENDS_MAX 65536u  /* dependencies of one job */

/* Flags for taskring_store_opts.flags. */
#define TASKRING_STORE_GROUP 0x1u    /* create with mode 0660 instead of 0600 */
#define TASKRING_STORE_NOCREATE 0x2u /* fail with -ENOENT if it does not exist */
#define TASKRING_STORE_EXCL 0x4u     /* fail with -EEXIST if it exists */
#define TASKRING_STORE_NO_IOURING 0x8u /* this process writes the log with
					  pwrite and fdatasync, not io_uring */
#define TASKRING_STORE_MANUAL_COMPACT 0x10u /* a store with a log: its processes
					       never compact the log by themselves
					       (`taskring log compact DIR` does);
					       set by the store's creator */
#define TASKRING_STORE_PREFAULT 0x20u /* this process maps every page of the
					 region when it opens the store, so no
					 job's first touch of a page takes a
					 page fault; see taskring_store_open() */

/* Durability of a store with a log (taskring_store_opts.durability). */
#define TASKRING_DURABLE 0u /* enqueue, cancel and each job's end return (or
			       become visible) only once their record is on
			       stable storage; concurrent callers, in any
			       process, share each fdatasync (group commit) */
#define TASKRING_ASYNC 1u   /* records are written and synced within
			       flush_interval_ns; a crash loses at most that */

/*
 * Sizing of a store. A field left 0 means "the default" when the store is
 * created and "whatever it has" when an existing store is opened; a field set
 * to non-zero must equal the existing store's value or the open fails with
 * TASKRING_ESIZING. A zeroed struct (or NULL) is valid.
 */
struct taskring_store_opts {
	uint32_t slots;        /* job slots; default 65,536; 16 .. 16,777,216 */
	uint32_t max_payload;  /* largest payload or result, bytes; default 1 MiB */
	uint64_t arena_bytes;  /* payload/result/error arena; default 64 MiB,
				  at least 4 * max_payload */
	uint32_t queues;       /* named queues; default 16, at most 64 */
	uint32_t tasks;        /* task names; default 256, at most 4096 */
	uint32_t flags;        /* TASKRING_STORE_* */
	uint32_t durability;   /* with log_dir: TASKRING_DURABLE (default) or
				  TASKRING_ASYNC */
	const char *log_dir;   /* a directory for the store's log (made if
				  missing, mode 0700, 0770 with
				  TASKRING_STORE_GROUP; on a real disk); it
				  must be ours and writable by nobody else
				  (the group: with TASKRING_STORE_GROUP);
				  NULL = no log: the store does not survive
				  a reboot */
	int64_t flush_interval_ns; /* TASKRING_ASYNC: default 10 ms; 1 ms .. 10 s */
	uint64_t segment_bytes;    /* log segment size: default 64 MiB;
				      1 MiB .. 4 GiB */
	uint64_t reserved[1];  /* must be zero */
};

/*
 * taskring_store_open - open a store, creating it if it does not exist.
 * @name: "/name" (one leading slash, no other) is a POSIX shared-memory
 *        object (/dev/shm/name); any other non-empty string is a path to a
 *        regular file that is mapped (tmpfs, hugetlbfs or disk); NULL makes an
 *        anonymous region shared only with children fork()ed after this call.
 * @opts: sizing and flags, or NULL for defaults.
 * @storep: OUT: the store, to be closed with taskring_store_close().
 *
 * Creation is atomic: the region is built under a temporary name and linked
 * into place only when fully initialised, so concurrent first openers either
 * create it or find it ready; none sees a half-built region. A new store has
 * mode 0600 (0660 with TASKRING_STORE_GROUP). Symbolic links are never
 * followed. Does not block other than on file-system calls.
 *
 * The log. With log_dir set, every change of a job is also recorded in an
 * append-only log in that directory (one store per directory), which must be
 * on a real disk. A store that is created (its region did not exist: after a
 * reboot, say; or it cannot be used by this build: another region format,
 * a corrupt header, which is then replaced) while its log has records is
 * first rebuilt from them: jobs,
 * payloads, results, error histories, dead letters, cancels, priorities,
 * unique keys and dependencies; a job that was running becomes an
 * interrupted attempt (an error in its history; retried if it has retries
 * left, else dead). Sizing left 0 is then the log's. Opening a store whose
 * region exists replays nothing. TASKRING_DURABLE (the default): enqueue,
 * cancel, set_priority and the end of every job (before its waiters see it)
 * return only once their record is on stable storage, and concurrent callers
 * in all processes share each fdatasync. TASKRING_ASYNC: nobody waits; a
 * thread of each writing process flushes what is staged every half
 * flush_interval_ns. A failed write or fdatasync is never retried into a
 * success: the calls that waited for it fail with -EIO, and so does every
 * later enqueue, cancel or priority change, until the store is recreated
 * from its log (unlink it and open it again). The log is written with
 * io_uring (a write linked to its fdatasync) where the kernel allows it,
 * else, or with TASKRING_STORE_NO_IOURING or TASKRING_NO_IOURING=1 (any
 * value but empty or 0) in the environment, with pwrite and fdatasync. `taskring log verify DIR` checks a
 * log; `taskring log dump DIR` prints it; `taskring log compact DIR`
 * compacts it.
 *
 * A full disk: segments are preallocated, and room for the end of every
 * unfinished job is set aside when the job is made (about 1.1 KiB each:
 * its last record with an error of up to TASKRING_ERROR_MAX bytes or a
 * result of about 1 KiB, and its removal), in the current segment and in
 * spare segment files made ahead, with one segment more for everything
 * else. When the spares needed cannot be made, new jobs are refused with
 * -ENOSPC (nothing changes), while the jobs already in the store go on and
 * end on the room kept for them; enqueueing works again as soon as the
 * spares can be made. (Results larger than about 1 KiB, and starts and
 * retries, come out of the one segment of slack: a store whose jobs keep
 * retrying, or complete with large results, on a disk that stays full can
 * still use it up, and then fails like any write error, -EIO.)
 *
 * Compaction: the log does not grow with the store's history. When the
 * closed segments after the newest checkpoint hold two segments and as much
 * as that checkpoint, a thread of the process that started the new segment
 * folds them into a new checkpoint (every job they leave, whole) and deletes
 * the files it replaces; nobody waits for it. So the log stays within about
 * twice its live jobs plus a few segments. `taskring log compact DIR` does
 * one at once; with TASKRING_STORE_MANUAL_COMPACT (at creation), only that
 * does (for a service that compacts at a time of its choosing). A
 * compaction that dies or is stopped (its process closes the store) leaves
 * the log as it was; the next one starts over.
 *
 * A process killed while it stages a record does
 * not stop the log: once it is gone (judged by its pid, so the processes of
 * one store must share a pid namespace), its unfinished record is skipped;
 * one killed in the instant between reserving its place and writing its
 * pid there still stops durable work until the store is recreated (the
 * reaper does not look at the log yet).
 *
 * TASKRING_STORE_PREFAULT: the opening process faults the whole region into
 * its page tables at once (madvise MADV_POPULATE_WRITE), which also
 * allocates all of its memory. Each process maps the region's pages for
 * itself on first touch, and on a VM a page fault costs microseconds: a
 * process's first pass over a large arena takes faults all the way
 * (measured with 4 KiB payloads on a new store, one producer and one
 * worker process: 0.18-0.26 M jobs/s without the flag, 0.52-0.83 M/s with
 * it in both). For latency-sensitive processes; the open then takes time
 * in proportion to the region (measured for a 1 GiB region: 80 ms to map
 * one that exists, 0.3 s to create one, whose memory is then allocated
 * and cleared). On a kernel before 5.14 the flag does nothing.
 *
 * Errors: -EINVAL (bad name, bad sizing, non-zero reserved fields, unknown
 * flags, log settings without log_dir or out of range), -ENAMETOOLONG,
 * -ENOENT (TASKRING_STORE_NOCREATE and absent),
 * -EEXIST (TASKRING_STORE_EXCL and present), -ELOOP (the name is a symbolic
 * link), -EACCES/-EPERM (file-system permission), -ENOMEM/-ENOSPC (cannot
 * size the region), TASKRING_EOWNER (owned by another user, or not a regular
 * file; or log_dir is another user's, or writable by others, or by the group
 * without TASKRING_STORE_GROUP), TASKRING_EFORMAT (bad magic), TASKRING_EVERSION (other region format),
 * TASKRING_EBUILD (incompatible build), TASKRING_ESIZING (explicit sizing
 * differs), TASKRING_ECORRUPT (header fields or offsets out of bounds, or the
 * file's size disagrees with its header), TASKRING_ELOG (log_dir names
 * another directory than the existing store's, or it has none; or the
 * directory is another store's: a store being made while a process is
 * attached to another store with that directory is refused, and a store
 * whose directory was taken over by another while nobody was attached can
 * no longer be opened),
 * TASKRING_ELOGCORRUPT (the log is damaged before its end: `taskring log
 * verify DIR` names the file and offset; a torn tail is not damage, it is
 * cut), -ENOTDIR (log_dir is not a directory), -EIO (recovery could not
 * write the log), -EUSERS (the store's process table is full: 1,024 handles
 * are attached), -ENOMEM (TASKRING_STORE_PREFAULT: the region's memory
 * could not be allocated, e.g. /dev/shm is full; the store is not opened),
 * -EAGAIN (TASKRING_STORE_PREFAULT interrupted; try again), or another
 * -errno from open/mmap.
 */
TASKRING_API int taskring_store_open(const char *name, const struct taskring_store_opts *opts,
				     struct taskring_store **storep);

/*
 * taskring_store_close - unmap and free a store handle.
 * Every worker created on it must have been destroyed first. Jobs handles that
 * refer to the store become invalid in this process. The store itself (the
 * shared region) and its jobs remain for other processes and later opens.
 * Returns 0, or -EINVAL when @store is NULL, -EBUSY when a worker still uses it.
 */
TASKRING_API int taskring_store_close(struct taskring_store *store);

/*
 * taskring_store_unlink - remove a store's name, like shm_unlink()/unlink().
 * Processes that have it open keep using it; the memory is freed when the
 * last one closes it. Never follows a symbolic link at the final component.
 * Errors: -EINVAL (NULL or invalid name), -ENOENT, TASKRING_EOWNER (not ours),
 * or another -errno from unlink.
 */
TASKRING_API int taskring_store_unlink(const char *name);

/*
 * Leases and the reaper
 *
 * Every store handle registers in the store's process table when it is
 * opened (and again, lazily, in a child after fork()). Its liveness is an
 * open-file-description lock (F_OFD_SETLK) it holds on the store file: the
 * kernel drops the lock when the process dies, even before its parent
 * reaps it, so a recycled pid is never mistaken for the dead process and
 * kill(pid, 0) is never used. The processes of one store must therefore
 * open the same file (or share an anonymous store through fork()).
 *
 * A running attempt carries its owner (the registration of the worker's
 * process) and a lease: a CLOCK_MONOTONIC deadline, set when the job is
 * claimed to the worker's lease_ns (by default the job's timeout_ns) and
 * extended by taskring_ctx_touch(). The reaper ends an attempt whose owner
 * is gone ("worker process N died while running attempt A") or whose lease
 * ran out ("... lease of M ms ran out"): the attempt counts as a failed
 * attempt and the job is retried by its rules (delays, max_retries, then
 * dead; cancelled if a cancel was requested). Result waiters are woken by
 * that transition as by any other. Whatever the old holder does with the
 * attempt afterwards (a result, an error, a touch) is refused: exactly one
 * end is accepted per attempt.
 *
 * Who reaps: every worker object runs one reaper thread that wakes every
 * reap_interval_ns (default 100 ms; see taskring_worker_opts) and, if no
 * other process of the store did it within that interval, looks at the
 * process table: one fcntl() per attached handle. Only when a process is
 * gone or a lease may have run out does it walk the slot table. This timer
 * is the only periodic wake-up in taskring; idle workers and result waiters
 * still sleep until their change. A store with no running worker is reaped
 * only by taskring_store_reap() (and `taskring reap STORE`), and when a
 * worker starts.
 */

/* What one taskring_store_reap() found and did. */
struct taskring_reap_stats {
	uint32_t procs_gone;     /* registrations found dead (now) */
	uint32_t owner_died;     /* attempts ended because their worker died */
	uint32_t lease_expired;  /* attempts ended because their lease ran out */
	uint32_t procs_attached; /* live registrations, this one included */
	uint32_t recycled;       /* ended jobs whose closer died before it
				    resolved their dependents and recycled
				    their slot: done now */
	uint32_t blocks_freed;   /* arena blocks that processes found dead
				    had taken and not attached to a job
				    (after a death, or on demand) */
	uint64_t reserved[1];
};

/*
 * taskring_store_reap - run the reaper now, whatever the interval: every
 * registration's liveness, then every running attempt's owner and lease.
 * Non-blocking apart from the queue locks it takes to put jobs back; O(slots).
 * @out may be NULL. Returns the number of attempts it ended (>= 0).
 * Errors: -EINVAL (NULL store).
 */
TASKRING_API int taskring_store_reap(struct taskring_store *store, struct taskring_reap_stats *out);

/* What a store is made of; see taskring_store_info(). */
struct taskring_store_info {
	uint32_t slots, max_payload, queues, tasks;
	uint64_t arena_bytes;
	uint64_t region_bytes;   /* size of the whole mapping */
	uint32_t format_version; /* shared-region format */
	uint32_t build_signature;
	uint32_t queues_used, tasks_used;
	uint64_t arena_used;     /* bytes carved from the arena so far */
	uint64_t reserved[4];
};

/*
 * taskring_store_info - describe a store. Non-blocking.
 * Errors: -EINVAL (NULL argument).
 */
TASKRING_API int taskring_store_info(struct taskring_store *store, struct taskring_store_info *out);

/*
 * taskring_store_set_spin - how long this process spins before sleeping.
 * @spin_ns: time a result waiter or an idle worker of this process spends
 *           checking the shared word before it sleeps on its futex; 0
 *           disables spinning. Default 20,000 ns (on a VM, a blocking
 *           cross-CPU wake-up costs ~25-30 us, a spinning hand-off ~0.2 us).
 *           At most 10,000,000 ns.
 * Process-local: other processes keep their own setting. Workers read it when
 * they are created. Errors: -EINVAL.
 */
TASKRING_API int taskring_store_set_spin(struct taskring_store *store, int64_t spin_ns);

/*
 * taskring_task_declare - make a task name known to the store.
 * Enqueueing a task name that no worker has registered and nobody declared
 * fails with TASKRING_ENOTASK, so that a typo never leaves a job pending
 * forever. Workers declare their tasks when they register handlers; call this
 * from a producer that may start before any worker. Idempotent.
 * Errors: -EINVAL (bad name), -ENAMETOOLONG, -ENOSPC (task table full).
 */
TASKRING_API int taskring_task_declare(struct taskring_store *store, const char *task);

/*
 * taskring_queue_pause / taskring_queue_resume - stop or restart claiming
 * from a queue. Enqueueing into a paused queue still works; its jobs wait.
 * Resuming wakes sleeping workers of that queue. Idempotent; the queue is
 * created if it did not exist.
 * Errors: -EINVAL (bad name), -ENAMETOOLONG, -ENOSPC (queue table full).
 */
TASKRING_API int taskring_queue_pause(struct taskring_store *store, const char *queue);
TASKRING_API int taskring_queue_resume(struct taskring_store *store, const char *queue);

/* ------------------------------------------------------------------------ */
/* Jobs                                                                      */
/* ------------------------------------------------------------------------ */

/* Job states; the numbers are taskito's. */
enum taskring_status {
	TASKRING_PENDING = 0,
	TASKRING_RUNNING = 1,
	TASKRING_COMPLETE = 2,
	TASKRING_FAILED = 3,    /* permanent failure chosen by the handler */
	TASKRING_DEAD = 4,      /* retries exhausted; on the dead-letter list */
	TASKRING_CANCELLED = 5,
};
#define TASKRING_STATUS_COUNT 6

/* "pending", "running", ...; "unknown" for anything else. */
TASKRING_API const char *taskring_status_name(int status);

/*
 * A job handle: a plain value, filled by enqueue or lookup. Treat the fields
 * as opaque. A handle whose job's slot was recycled is detected by its
 * generation and every call on it returns -ENOENT.
 */
struct taskring_job {
	struct taskring_store *store;
	uint32_t slot;
	uint32_t gen;
	unsigned char uuid[16];
};

#define TASKRING_ENQUEUE_OPTS_ABI 0x7e510001u

/* Flags for taskring_enqueue_opts.flags. */
#define TASKRING_ENQ_BLOCK 0x1u  /* when the store is full, wait up to
				    block_timeout_ns for a slot instead of
				    failing with -EAGAIN */

/*
 * Options of one enqueue. Initialise with taskring_enqueue_opts_init() (or
 * TASKRING_ENQUEUE_OPTS_INIT) and change what you need: a struct that was not
 * initialised is refused with TASKRING_EOPTS, because 0 is a meaningful value
 * for max_retries.
 */
struct taskring_enqueue_opts {
	uint32_t abi;              /* set by the initialiser; do not touch */
	uint32_t flags;            /* TASKRING_ENQ_* */
	const char *queue;         /* NULL = "default" */
	int32_t priority;          /* higher runs first; FIFO among equals; default 0 */
	int32_t max_retries;       /* attempts after the first; default 3; 0 = run
				      at most once; 0 .. TASKRING_MAX_RETRIES_LIMIT */
	int64_t delay_ns;          /* run no earlier than now + delay; default 0 */
	int64_t eta_ns;            /* or at this absolute time; 0 = none; not
				      both with delay_ns */
	int64_t timeout_ns;        /* per-attempt limit; default 300 s; > 0 */
	int64_t result_ttl_ns;     /* keep a job at most this long after it
				      ends (counted from completed_at); 0
				      (default) = until its slot is needed */
	int64_t backoff_base_ns;   /* retry backoff: uniform(0, min(cap, base *
				      2^retry_count)); default 1 s */
	int64_t backoff_cap_ns;    /* default 300 s; >= base */
	const int64_t *retry_delays_ns; /* or exact per-retry delays (the last
					   repeats); NULL = use backoff */
	uint32_t n_retry_delays;   /* 1 .. TASKRING_MAX_RETRY_DELAYS when set */
	uint32_t reserved0;
	const char *metadata;      /* NUL-terminated text kept with the job (JSON
				      by convention), up to TASKRING_METADATA_MAX
				      bytes; NULL = none */
	int64_t block_timeout_ns;  /* with TASKRING_ENQ_BLOCK: -1 = forever */
	int64_t expires_ns;        /* a job not started within this time of its
				      enqueue is cancelled with the error
				      "expired before execution" when a worker
				      would claim it; 0 (default) = never */
	const char *unique_key;    /* while a job with this key is pending or
				      running, enqueue returns that job instead
				      of a new one; 1 .. TASKRING_UNIQUE_KEY_MAX
				      bytes, NUL-terminated; NULL = none */
	const struct taskring_job *depends_on; /* jobs of this store that
				      must complete before this one can run
				      (see "Dependencies" below); NULL = none */
	uint32_t n_depends_on;     /* entries in depends_on; 0 when it is NULL */
	uint32_t reserved1;        /* must be zero */
	uint64_t reserved[2];      /* must be zero */
};

#define TASKRING_ENQUEUE_OPTS_INIT                                                    \
	{ .abi = TASKRING_ENQUEUE_OPTS_ABI, .max_retries = 3, .timeout_ns = 300000000000LL, \
	  .backoff_base_ns = 1000000000LL, .backoff_cap_ns = 300000000000LL,            \
	  .block_timeout_ns = -1 }

/* taskring_enqueue_opts_init - fill @opts with the defaults above. */
TASKRING_API void taskring_enqueue_opts_init(struct taskring_enqueue_opts *opts);

/*
 * Dependencies. A job enqueued with depends_on (and, in a batch, with
 * depends_on_items) is pending but cannot be claimed until every one of its
 * dependencies has completed; then it joins its queue as if enqueued at that
 * moment: its scheduled_at becomes that moment, unless its own delay or eta
 * is later, which still applies. When a dependency ends failed,
 * dead or cancelled (expired and purged included), the job is cancelled at
 * once with the error "dependency failed", and so is every job that depends
 * on it, transitively, in whatever process it was enqueued. A job can only
 * depend on jobs that exist when it is enqueued, so a cycle cannot be made.
 * Enqueueing with a dependency that has already failed, died or been
 * cancelled fails with TASKRING_EDEPFAILED; with one that is unknown or gone
 * (its slot reused, or its result_ttl passed), with -ENOENT. A dependency
 * that has already completed counts as met. Copies of a job (retry_dead,
 * replay) do not carry its dependencies. Jobs that depend on nothing pay
 * nothing for the feature: the enqueue and claim paths are unchanged.
 */

/*
 * taskring_enqueue - add one job.
 * @task: the registered or declared task name.
 * @payload, @len: opaque bytes copied into the store (@payload may be NULL
 *        when @len is 0); at most the store's max_payload.
 * @opts: options, or NULL for the defaults.
 * @jobp: OUT (may be NULL): a handle to the new job.
 *
 * The job is pending at once; a sleeping worker of its queue is woken only if
 * one is asleep, so enqueueing makes no system call when workers are busy or
 * spinning. Does not block unless TASKRING_ENQ_BLOCK is set and the store is
 * full.
 *
 * Returns 0 for a new job, or 1 when opts->unique_key names a job that is
 * pending or running: then *@jobp is that job and nothing was enqueued
 * (exactly one job per key, across processes).
 *
 * Errors: -EINVAL (NULL store or task, an empty or non-printable task or
 * queue name, @payload NULL with @len > 0, depends_on NULL with
 * n_depends_on > 0 (or the reverse), more than TASKRING_DEPENDS_MAX
 * dependencies, a dependency handle of another store, a bad option value: negative
 * delay/eta/ttl/backoff/expires, timeout <= 0, max_retries out of range, both delay
 * and eta, cap < base, bad retry_delays, non-zero reserved fields, a
 * block_timeout_ns below -1), -ENAMETOOLONG (task or queue name too long),
 * TASKRING_EOPTS (opts not initialised), TASKRING_ENOTASK, -EMSGSIZE (payload
 * or metadata too large), -EINVAL/-ENAMETOOLONG (an empty or too long
 * unique_key), -EAGAIN (every slot holds a pending or running job,
 * or the arena is full, and TASKRING_ENQ_BLOCK is not set), -ETIMEDOUT (it is
 * set and no room appeared in time; at once when block_timeout_ns is 0),
 * -ENOSPC (queue table full; or, with a log, the log's disk is full: see
 * "The log"), TASKRING_EDEPFAILED and -ENOENT (a
 * dependency; see "Dependencies"), -ENOMEM, -EIO (a store with a log whose
 * write or sync failed, now or before: see "The log"; when it fails while
 * this call waits, the job exists but was never acknowledged). The queue is created by the
 * first enqueue that names it.
 */
TASKRING_API int taskring_enqueue(struct taskring_store *store, const char *task, const void *payload,
				  size_t len, const struct taskring_enqueue_opts *opts,
				  struct taskring_job *jobp);

/* One job of a batch. */
struct taskring_enqueue_item {
	const char *task;
	const void *payload;
	size_t len;
	const struct taskring_enqueue_opts *opts; /* NULL = the batch's opts */
	const uint32_t *depends_on_items; /* indices of earlier items of the
					     same batch this job depends on
					     (besides opts->depends_on) */
	uint32_t n_depends_on_items;
};

/*
 * taskring_enqueue_batch - add @n jobs in one call, all or none.
 * Every item is validated before anything changes; then slots for all of
 * them are taken, so a full store fails the whole batch with -EAGAIN (or
 * waits, with TASKRING_ENQ_BLOCK in the batch's @opts). Jobs of one queue are
 * linked under one lock acquisition and sleeping workers are woken once.
 * @jobs: OUT (may be NULL): @n handles, in item order.
 * Returns how many items named the unique key of a pending or running job
 * (their handles are those jobs'; two items of one batch with the same key
 * give one job). Errors: as taskring_enqueue(), plus -EINVAL for @n == 0 or
 * @items NULL, a depends_on_items entry that is not the index of an earlier
 * item, or that names an item with a unique_key (it might not make a job of
 * its own); -E2BIG when @n exceeds the store's slot count.
 */
TASKRING_API int taskring_enqueue_batch(struct taskring_store *store, const struct taskring_enqueue_item *items,
					size_t n, const struct taskring_enqueue_opts *opts,
					struct taskring_job *jobs);

/*
 * taskring_job_lookup - find a job by its id text, from any process.
 * @id: 36-character canonical UUID text (hex digits in either case).
 * Errors: -EINVAL (NULL, or malformed text), -ENOENT (no such job in this
 * store, or it ended and was removed).
 */
TASKRING_API int taskring_job_lookup(struct taskring_store *store, const char *id, struct taskring_job *jobp);

/*
 * taskring_job_id - the job's id as text.
 * @buf: OUT: at least TASKRING_ID_LEN + 1 bytes; receives the id and a NUL.
 * The id is a UUIDv7 (RFC 9562): 48 bits of Unix time in ms, then bits
 * that are random except for the job's slot index, which makes lookup O(1).
 * Errors: -EINVAL.
 */
TASKRING_API int taskring_job_id(const struct taskring_job *job, char *buf);

/*
 * taskring_job_status - the job's status, read fresh from the store.
 * Returns a TASKRING_PENDING .. TASKRING_CANCELLED value, or -EINVAL, -ENOENT.
 */
TASKRING_API int taskring_job_status(const struct taskring_job *job);

/*
 * taskring_job_progress - the last progress the handler reported, 0..100.
 * Errors: -ENODATA (none reported yet), -EINVAL, -ENOENT.
 */
TASKRING_API int taskring_job_progress(const struct taskring_job *job);

/*
 * taskring_job_error - the newest error message of the job.
 * Copies the message, cut to @cap - 1 bytes and NUL-terminated, into @buf
 * (which may be NULL when @cap is 0) and returns its full length, like
 * snprintf(). Errors: -ENODATA (no failed attempt), -EINVAL, -ENOENT.
 */
TASKRING_API int taskring_job_error(const struct taskring_job *job, char *buf, size_t cap);

/* One entry of a job's error history: one per failed attempt. */
struct taskring_error_record {
	char id[TASKRING_ID_LEN + 1];      /* the error record's own UUIDv7 */
	char job_id[TASKRING_ID_LEN + 1];
	uint32_t attempt;                  /* 0-indexed, as taskito */
	int64_t failed_at_ns;              /* CLOCK_REALTIME */
	char error[TASKRING_ERROR_MAX + 1];
};

/*
 * taskring_job_errors - the job's error history, oldest first.
 * @out: OUT: room for @max records (may be NULL when @max is 0).
 * Returns the total number of records (which may exceed @max; only the
 * oldest @max are written). Errors: -EINVAL, -ENOENT.
 */
TASKRING_API int taskring_job_errors(const struct taskring_job *job, struct taskring_error_record *out,
				     size_t max);

/* A consistent snapshot of a job's fields; see taskring_job_info(). */
struct taskring_job_info {
	char id[TASKRING_ID_LEN + 1];
	char task_name[TASKRING_NAME_MAX + 1];
	char queue[TASKRING_NAME_MAX + 1];
	int status;
	int progress;            /* -1 = none */
	int32_t priority;
	uint32_t retry_count, max_retries;
	int cancel_requested;    /* a cancel was requested (kept after the job ends) */
	int64_t created_at_ns, scheduled_at_ns, started_at_ns, completed_at_ns; /* 0 = not yet */
	int64_t timeout_ns, result_ttl_ns;
	uint32_t payload_len, result_len;
	uint32_t error_count;
	int64_t expires_at_ns;   /* 0 = never */
	uint32_t dependencies;   /* how many it has */
	uint32_t dependencies_left; /* of those, not yet complete (while pending) */
	uint32_t dependents;     /* how many registered on it still exist */
	uint32_t reserved0;
	uint64_t reserved[1];
};

/* taskring_job_info - fill @out. Errors: -EINVAL, -ENOENT. Non-blocking. */
TASKRING_API int taskring_job_info(const struct taskring_job *job, struct taskring_job_info *out);

/*
 * taskring_job_payload - copy the job's payload.
 * @buf, @cap: destination; @lenp: OUT (may be NULL): the payload's length.
 * Errors: -ENOBUFS (@cap too small; *@lenp still receives the length),
 * -EINVAL, -ENOENT.
 */
TASKRING_API int taskring_job_payload(const struct taskring_job *job, void *buf, size_t cap, size_t *lenp);

/*
 * taskring_job_to_json - the job as one JSON object.
 * Keys as taskito's to_dict(): id, queue, task_name, status (text), priority,
 * progress (null if none), retry_count, max_retries, created_at,
 * scheduled_at, started_at, completed_at (integers, whole milliseconds since
 * the epoch, rounded down, or null; completed_at is set for every terminal
 * state, dead and cancelled included), error (newest message or null),
 * timeout_ms, unique_key (the text, or null), metadata (the text as a JSON
 * string, or null), plus dependencies and dependents (arrays of ids, as
 * taskring_job_dependencies() and taskring_job_dependents()) and errors (the history: objects with id, job_id, attempt,
 * error and failed_at as ISO 8601 UTC text). Bytes outside printable ASCII
 * are written as \u00XX escapes, so the output is always valid JSON.
 * Writes at most @cap bytes including the NUL and returns the length the
 * whole text needs, like snprintf(). Errors: -EINVAL, -ENOENT.
 */
TASKRING_API int taskring_job_to_json(const struct taskring_job *job, char *buf, size_t cap);

/*
 * taskring_job_dependencies - the jobs this job depends on, in the order
 * they were given (depends_on first, then depends_on_items).
 * @out: OUT: room for @max handles (may be NULL when @max is 0). A handle of
 *       a dependency whose slot was reused since reads -ENOENT; its id is
 *       still given by taskring_job_id().
 * Returns the number of dependencies (which may exceed @max; the first @max
 * are written). Errors: -EINVAL, -ENOENT, -ENOMEM. Non-blocking.
 */
TASKRING_API int taskring_job_dependencies(const struct taskring_job *job, struct taskring_job *out, size_t max);

/*
 * taskring_job_dependents - the jobs that were enqueued depending on this
 * one while it was pending or running (a job enqueued after it completed
 * does not wait for it and is not listed), in the order they were enqueued.
 * They stay listed after they end, until they are removed (purged, or their
 * slot reused). @out, @max and the return value as
 * taskring_job_dependencies(). Errors: -EINVAL, -ENOENT, -ENOMEM.
 */
TASKRING_API int taskring_job_dependents(const struct taskring_job *job, struct taskring_job *out, size_t max);

/*
 * taskring_job_wait - block until the job is terminal.
 * Sleeps on the job's state word (a futex in the store), after spinning for
 * the store's spin time; makes no system call until the job changes state
 * or the timeout expires. Returns the terminal status (>= 2).
 * @timeout_ns: -1 = forever, 0 = check once.
 * Errors: -ETIMEDOUT, -EINVAL, -ENOENT (the job's slot was recycled).
 */
TASKRING_API int taskring_job_wait(const struct taskring_job *job, int64_t timeout_ns);

#define TASKRING_WAIT_MAX 128 /* jobs one taskring_job_wait_any() can watch */

/*
 * taskring_job_wait_any - block until one of @n jobs has ended.
 * Returns the index of the first job (in array order) that is terminal, or
 * that is gone (its slot was recycled or purged: it ended long ago). Spins
 * for the store's spin time, then sleeps on all the jobs' state words at
 * once (futex_waitv, Linux 5.16+): no polling, one system call per wake-up.
 * @jobs: 1 .. TASKRING_WAIT_MAX handles, all of one store.
 * Errors: -ETIMEDOUT, -EINVAL (NULL, @n out of range, a bad handle, handles
 * of different stores), -ENOSYS (the kernel lacks futex_waitv and no job has
 * ended yet).
 */
TASKRING_API int taskring_job_wait_any(const struct taskring_job *jobs, size_t n, int64_t timeout_ns);

/*
 * taskring_job_wait_all - block until every one of @n jobs has ended (is
 * terminal, or gone), with one timeout for the whole set.
 * Returns 0. Errors: -ETIMEDOUT, -EINVAL (NULL, @n == 0, a bad handle).
 */
TASKRING_API int taskring_job_wait_all(const struct taskring_job *jobs, size_t n, int64_t timeout_ns);

/*
 * Waiting from an event loop (taskito's aresult()): an io_uring request per
 * job on the caller's own ring, so one thread can wait for any number of
 * jobs. Needs Linux 6.7+ (IORING_OP_FUTEX_WAIT); taskring_async_supported()
 * says whether this process can use it.
 */
struct io_uring_sqe; /* from <liburing.h> */

/*
 * taskring_async_supported - 0 when taskring_job_prep_wait() can be used
 * here, else -EOPNOTSUPP (the kernel lacks IORING_OP_FUTEX_WAIT, io_uring is
 * blocked, or TASKRING_NO_IOURING is set in the environment to any value but
 * empty or 0, e.g. 1). Probed once
 * per process. Fallback: a taskring_waiter (below).
 */
TASKRING_API int taskring_async_supported(void);

/*
 * taskring_job_prep_wait - prepare an io_uring request that completes when
 * the job's state changes.
 * Fills every field of @sqe but user_data (set it yourself, before or after)
 * with a futex wait on the job's state word. Submit it on your ring; its
 * completion (res 0 when woken, -EAGAIN when the state had already moved)
 * means "look again": call taskring_job_status() or taskring_job_result(0)
 * and, if the job has not ended, call this again. Registers as a waiter, so
 * the job's next transition wakes the request; no polling.
 * Returns 0 (prepared), or 1 when the job has already ended or is gone
 * (nothing prepared: read its outcome now).
 * Errors: -EOPNOTSUPP (see taskring_async_supported()), -EINVAL.
 */
TASKRING_API int taskring_job_prep_wait(const struct taskring_job *job, struct io_uring_sqe *sqe);

/*
 * The fallback where taskring_async_supported() says no (Linux 5.16 to 6.6,
 * such as Debian 12's 6.1): a waiter, a set of jobs with a file descriptor
 * for your event loop (poll/epoll/select) that is readable while ended jobs
 * of the set wait to be collected. Helper threads, one per 127 jobs, sleep
 * on the jobs' state words (futex_waitv); nothing polls.
 */
struct taskring_waiter;

/*
 * taskring_waiter_create - an empty waiter on @store.
 * Errors: -EINVAL, -ENOSYS (the kernel lacks futex_waitv, Linux < 5.16),
 * -ENOMEM, -EMFILE/-ENFILE (eventfd).
 */
TASKRING_API int taskring_waiter_create(struct taskring_store *store, struct taskring_waiter **waiterp);

/*
 * taskring_waiter_add - watch @job; @user_data comes back with it. A job
 * that has already ended is ready at once. A job added twice is reported
 * twice. Errors: -EINVAL (NULL, a bad handle, another store's job),
 * -ENOMEM, -EAGAIN (a helper thread could not be started).
 */
TASKRING_API int taskring_waiter_add(struct taskring_waiter *waiter, const struct taskring_job *job,
				     uint64_t user_data);

/* taskring_waiter_fd - the descriptor to poll for reading. Errors: -EINVAL. */
TASKRING_API int taskring_waiter_fd(const struct taskring_waiter *waiter);

/*
 * taskring_waiter_next - take one ended job (terminal, or gone) of the set,
 * in the order they ended. Non-blocking. Returns 1 with *@job and *@user_data
 * (either may be NULL) filled, or 0 when none is ready (the fd then reads as
 * not ready). Errors: -EINVAL.
 */
TASKRING_API int taskring_waiter_next(struct taskring_waiter *waiter, struct taskring_job *job,
				      uint64_t *user_data);

/* taskring_waiter_destroy - stop the helpers and free the waiter. */
TASKRING_API int taskring_waiter_destroy(struct taskring_waiter *waiter);

/*
 * taskring_job_result - wait for the job to end and copy its result.
 * Blocks like taskring_job_wait(). Returns 0 with the result copied to @buf
 * (which may be NULL when @cap is 0 and the result is empty) and its length
 * in *@lenp (@lenp may be NULL).
 * Errors: -ETIMEDOUT (not terminal in time), TASKRING_EFAILED (failed
 * permanently) and TASKRING_EDEAD (retries exhausted), for both of which
 * taskring_job_error() gives the message; -ECANCELED (cancelled); -ENOBUFS
 * (@cap too small; *@lenp receives the needed length); -EINVAL; -ENOENT.
 */
TASKRING_API int taskring_job_result(const struct taskring_job *job, int64_t timeout_ns, void *buf, size_t cap,
				     size_t *lenp);

/*
 * taskring_job_cancel - cancel a job.
 * A pending job is cancelled at once (0 is returned) and its waiters woken;
 * the jobs that depend on it are cancelled ("dependency failed").
 * A running job gets a cancel request that its handler sees through
 * taskring_ctx_cancel_requested(); 1 is returned. The job ends cancelled
 * when the handler returns anything but success.
 * Errors: TASKRING_ESTATE (already terminal), -EINVAL, -ENOENT, -EIO (the
 * store's log failed: the job is cancelled here, but not durably).
 */
TASKRING_API int taskring_job_cancel(const struct taskring_job *job);

/*
 * taskring_job_retry_dead - enqueue a dead job again, as taskito's retry_dead:
 * a new job (new id) with the same task, payload, queue and options and a
 * fresh retry budget. The dead job stays as it is.
 * @newjob: OUT (may be NULL).
 * Errors: TASKRING_ESTATE (not dead), the errors of taskring_enqueue(),
 * -EINVAL, -ENOENT.
 */
TASKRING_API int taskring_job_retry_dead(const struct taskring_job *job, struct taskring_job *newjob);

/*
 * taskring_job_replay - enqueue a copy of a job, whatever its state: a new
 * job (new id) with the same task, payload, queue, priority and options and
 * a fresh retry budget, due at once. The original is unchanged.
 * @newjob: OUT (may be NULL).
 * Errors: the errors of taskring_enqueue() (-EAGAIN when the store is full),
 * -EINVAL, -ENOENT.
 */
TASKRING_API int taskring_job_replay(const struct taskring_job *job, struct taskring_job *newjob);

/*
 * taskring_job_set_priority - change the priority of a pending job.
 * A ready job moves behind the jobs of its new priority that are already
 * waiting, as if it had been enqueued now. A job waiting for its time
 * (delay, eta, retry backoff) keeps that time and takes its place by the new
 * priority when it falls due. Non-blocking (takes the queue's lock), but
 * in a TASKRING_DURABLE store it waits for its record to reach the disk.
 * Errors: TASKRING_ESTATE (not pending), -EINVAL, -ENOENT, -EIO (the log
 * failed).
 */
TASKRING_API int taskring_job_set_priority(const struct taskring_job *job, int32_t priority);

/*
 * taskring_queue_purge - remove every pending job of a queue, ready,
 * waiting for its time or waiting for its dependencies. Removed jobs are
 * gone, as if their slots had been reused: their handles and ids read
 * -ENOENT and their result waiters return -ENOENT at once. A pending job
 * that other jobs depend on is cancelled instead of removed (counted all the
 * same), so that its dependents are cancelled ("dependency failed") rather
 * than left waiting for a job that no longer exists. Running and terminal
 * jobs are not touched.
 * @countp: OUT (may be NULL): how many were removed.
 * Errors: -EINVAL, -ENAMETOOLONG, -ENOENT (no such queue).
 */
TASKRING_API int taskring_queue_purge(struct taskring_store *store, const char *queue, uint64_t *countp);

/*
 * taskring_store_purge_terminal - remove the terminal jobs (complete, failed,
 * dead, cancelled) that ended at least @age_ns ago, freeing their slots and
 * blocks now instead of when they are needed. They read as gone afterwards.
 * Terminal jobs younger than @age_ns may move later in the reuse order.
 * @countp: OUT (may be NULL): how many were removed.
 * Errors: -EINVAL (NULL store, negative age).
 */
TASKRING_API int taskring_store_purge_terminal(struct taskring_store *store, int64_t age_ns, uint64_t *countp);

/*
 * taskring_job_next - iterate over the store's jobs (the dead-letter list is
 * status_mask = 1 << TASKRING_DEAD).
 * @status_mask: bit (1 << status) for each status wanted; 0 = all.
 * @queue: only jobs of this queue, or NULL for all.
 * @task: only jobs of this task name, or NULL for all.
 * @cursor: IN/OUT: start at 0; the call advances it. Each slot is visited once
 *          per pass, so a pass terminates even while the store is busy.
 * @jobp: OUT: the next matching job.
 * Returns 1 when a job was found, 0 at the end (at once for a queue or task
 * that does not exist). Errors: -EINVAL (NULL argument, bits above the six
 * statuses, a bad queue or task name), -ENAMETOOLONG.
 */
TASKRING_API int taskring_job_next(struct taskring_store *store, uint32_t status_mask, const char *queue,
				   const char *task, uint64_t *cursor, struct taskring_job *jobp);

/* Counts of one queue, or of all queues. */
struct taskring_queue_stats {
	uint64_t by_status[TASKRING_STATUS_COUNT]; /* jobs now in each state */
	uint64_t enqueued, started, completed, failed, dead, cancelled, retried; /* since creation */
	int paused;
	uint64_t reserved[4];
};

/*
 * taskring_queue_stats - counts per state (a walk of the slot table) and
 * cumulative counters. @queue NULL = all queues together.
 * Errors: -EINVAL, -ENOENT (no such queue).
 */
TASKRING_API int taskring_queue_stats(struct taskring_store *store, const char *queue,
				      struct taskring_queue_stats *out);

/* ------------------------------------------------------------------------ */
/* Workers                                                                   */
/* ------------------------------------------------------------------------ */

struct taskring_worker;
struct taskring_ctx;

/* What a handler returns. */
enum taskring_outcome {
	TASKRING_OK = 0,     /* success; the result set with taskring_ctx_result() */
	TASKRING_RETRY = 1,  /* retryable failure: retried while retries remain, then dead */
	TASKRING_FAIL = 2,   /* permanent failure: failed, no retry, no dead letter */
	TASKRING_CANCEL = 3, /* the handler stopped because cancel was requested */
};

/*
 * A handler. Runs in a worker thread with the job's context; returns a
 * taskring_outcome. Any other return value counts as TASKRING_RETRY with an
 * error saying so. If a cancel was requested and the handler returns
 * anything other than TASKRING_OK, the job ends cancelled.
 */
typedef int (*taskring_handler_fn)(struct taskring_ctx *ctx, void *arg);

/* The job being run. Valid during the handler. */
TASKRING_API const struct taskring_job *taskring_ctx_job(struct taskring_ctx *ctx);
/* The payload (read-only, in the store) and its length in *@lenp. */
TASKRING_API const void *taskring_ctx_payload(struct taskring_ctx *ctx, size_t *lenp);
/* This attempt's number: 0 for the first run. */
TASKRING_API uint32_t taskring_ctx_attempt(struct taskring_ctx *ctx);
/* CLOCK_MONOTONIC ns at which this attempt's timeout expires. */
TASKRING_API int64_t taskring_ctx_deadline(struct taskring_ctx *ctx);
/* Report progress 0..100, visible at once to every process. Errors: -EINVAL. */
TASKRING_API int taskring_ctx_progress(struct taskring_ctx *ctx, int percent);
/*
 * Extend this attempt's lease to now + its length (the worker's lease_ns,
 * or the job's timeout_ns), as beanstalkd's touch. Call it from a handler
 * that runs longer than its lease. Returns 0, or -ESTALE when the attempt
 * is no longer this handler's (its lease ran out and the reaper ended it,
 * or it is being ended): stop working on it, the result will be refused.
 * Errors: -EINVAL (NULL), -ESTALE. Never blocks for long (it may wait a few
 * microseconds for a reaper that is looking at the attempt).
 */
TASKRING_API int taskring_ctx_touch(struct taskring_ctx *ctx);
/* 1 if a cancel was requested for this job, else 0. */
TASKRING_API int taskring_ctx_cancel_requested(struct taskring_ctx *ctx);
/*
 * Set the result (copied; the last call wins). Errors: -EMSGSIZE (over the
 * store's max_payload), -ENOSPC (the arena is full even after the oldest
 * terminal jobs gave up their blocks), -EINVAL.
 */
TASKRING_API int taskring_ctx_result(struct taskring_ctx *ctx, const void *data, size_t len);
/* Set the error message for a failing return (cut to TASKRING_ERROR_MAX).
 * Errors: -EINVAL (NULL ctx or fmt). */
TASKRING_API int taskring_ctx_error(struct taskring_ctx *ctx, const char *fmt, ...) TASKRING_PRINTF(2, 3);

#define TASKRING_WORKER_OPTS_ABI 0x7e520001u

/* Options of a worker; initialise with taskring_worker_opts_init(). */
struct taskring_worker_opts {
	uint32_t abi;                /* set by the initialiser */
	uint32_t threads;            /* worker threads; default 1; 1 .. 1024 */
	const char *const *queues;   /* served in this order (strict); NULL =
					{"default"} */
	uint32_t nqueues;            /* 1 .. 32 when queues is set */
	uint32_t prefetch;           /* jobs a worker thread claims at once:
					1 (default) .. 64; see below */
	int64_t lease_ns;            /* lease of each attempt it runs; 0
					(default) = the job's timeout_ns;
					1 ms .. 1 day */
	int64_t reap_interval_ns;    /* its reaper thread's period; 0
					(default) = 100 ms; -1 = no reaper
					thread; 1 ms .. 1 hour */
	uint32_t flags;              /* TASKRING_WORKER_* */
	uint32_t reserved32;         /* must be zero */
	uint64_t reserved[3];        /* must be zero */
};

/*
 * TASKRING_WORKER_PREFORK: run the handlers in child processes, one per
 * thread (at most TASKRING_PREFORK_MAX), forked by taskring_worker_start()
 * and supervised by one thread of the worker's process. Each child claims
 * and runs jobs as a worker thread would. When a job's timeout passes, or a
 * cancel is requested while it runs, the supervisor kills the child
 * (SIGKILL), ends the attempt (a failed attempt "exceeded its timeout ...:
 * handler process N killed", retried by the rules; or cancelled) and forks
 * a replacement. A child that dies by itself (a crash in the handler) ends
 * its attempt the same way ("handler process N died ..."). Handlers and
 * their arguments are the parent's, as fork() copies them; a handler must
 * not rely on threads of the parent. The supervisor learns of a death, a
 * cancel and a new deadline by futex_waitv (Linux 5.16+) without polling;
 * on older kernels it looks every 50 ms while a job runs.
 */
#define TASKRING_WORKER_PREFORK 0x1u
#define TASKRING_PREFORK_MAX 40u

/*
 * Prefetch. With prefetch N > 1 a worker thread claims up to N ready jobs of
 * one queue under one lock acquisition and runs them in turn: fewer shared
 * cache lines move per job, so throughput rises, at two costs. The claimed
 * jobs are "running" from the moment they are claimed (other threads and
 * processes cannot take them), and a job of higher priority that arrives
 * meanwhile waits for up to N - 1 of them: priority is strict per claim,
 * not per job. A claimed job cancelled before it starts ends cancelled
 * without running; a graceful stop runs the claimed jobs within the drain
 * time and cancels those it cannot. taskring_worker_run_one() always claims
 * one job.
 */
TASKRING_API void taskring_worker_opts_init(struct taskring_worker_opts *opts);

/*
 * taskring_worker_create - a worker on @store (not started).
 * Its queues are created in the store if they do not exist. Spinning follows
 * the store's taskring_store_set_spin() at this moment.
 * Errors: -EINVAL (threads, nqueues, prefetch, lease_ns or reap_interval_ns
 * out of range, unknown flags, more than TASKRING_PREFORK_MAX threads with
 * TASKRING_WORKER_PREFORK, a bad queue name, non-zero reserved fields),
 * TASKRING_EOPTS, -ENAMETOOLONG, -ENOSPC
 * (queue table full), -ENOMEM.
 */
TASKRING_API int taskring_worker_create(struct taskring_store *store, const struct taskring_worker_opts *opts,
					struct taskring_worker **workerp);

/*
 * taskring_worker_register - run @fn for jobs of @task (declared in the store
 * as by taskring_task_declare()). Before taskring_worker_start() only.
 * A job whose task has no handler in the worker that claims it fails that
 * attempt (retryable) with an error naming the task and the worker's pid.
 * Errors: -EINVAL, -ENAMETOOLONG, -EEXIST (already registered here), -EBUSY
 * (already started), -ENOSPC (task table full).
 */
TASKRING_API int taskring_worker_register(struct taskring_worker *worker, const char *task, taskring_handler_fn fn,
					  void *arg);

/*
 * taskring_worker_start - start the worker's threads (with
 * TASKRING_WORKER_PREFORK: fork its children, then start the supervisor).
 * Also runs the reaper once, so a restarted worker finds the jobs of the
 * one that died at once. Returns at once.
 * Errors: -EINVAL (NULL), -EBUSY (already started), -EAGAIN/-ENOMEM (thread
 * creation or fork()).
 */
TASKRING_API int taskring_worker_start(struct taskring_worker *worker);

/*
 * taskring_worker_run_one - claim one job from the worker's queues and run it
 * in the calling thread, waiting up to @timeout_ns for one. For custom loops
 * and tests; may be used whether or not the worker's threads run (and runs
 * in the calling thread even with TASKRING_WORKER_PREFORK).
 * Returns 1 when a job ran, 0 when none came in time (or the worker is
 * stopping). Errors: -EINVAL.
 */
TASKRING_API int taskring_worker_run_one(struct taskring_worker *worker, int64_t timeout_ns);

/*
 * taskring_worker_stop - graceful stop: stop claiming, let running jobs
 * finish. Blocks up to @drain_timeout_ns (-1 = forever). When it expires,
 * jobs still running get a cancel request and -ETIMEDOUT is returned; the
 * threads end as their handlers return, and taskring_worker_destroy() waits
 * for them. Errors: -EINVAL, -ETIMEDOUT.
 */
TASKRING_API int taskring_worker_stop(struct taskring_worker *worker, int64_t drain_timeout_ns);

/*
 * taskring_worker_destroy - stop (waiting for running handlers without a
 * limit) and free the worker. Errors: -EINVAL.
 */
TASKRING_API int taskring_worker_destroy(struct taskring_worker *worker);

#ifdef __cplusplus
}
#endif
#endif /* TASKRING_H */
