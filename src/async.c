/*
 * async.c - waiting for jobs from an event loop (taskito's aresult()),
 * without a thread per job: an io_uring futex-wait request on the caller's
 * ring (IORING_OP_FUTEX_WAIT, Linux 6.7+).
 *
 * taskring_job_prep_wait() registers as a waiter on the job's state word
 * (sets TR_ST_WAITERS, as a blocking waiter does, so the next transition
 * calls FUTEX_WAKE) and fills the caller's SQE with a futex wait on that word
 * for the value it saw. The kernel completes the request when the word is
 * woken, or at once with -EAGAIN when it has already changed; the caller
 * then looks at the job and, if it has not ended, prepares again. So an
 * event loop can have thousands of jobs in flight on one ring, and nothing
 * polls.
 *
 * liburing 2.3 (Debian 12) has no io_uring_prep_futex_wait(), so the SQE is
 * filled here, field by field, as the kernel reads it for this opcode:
 *   opcode   IORING_OP_FUTEX_WAIT (51)
 *   fd       futex2 flags: FUTEX2_SIZE_U32, shared (no FUTEX2_PRIVATE), as
 *            the word lives in a shared mapping and is woken with the
 *            classic FUTEX_WAKE_BITSET, which reaches futex2 waiters too
 *   addr     the word's address; off: the value to wait on
 *   addr3    the bitset mask (all bits)
 *   rw_flags (futex_flags) 0; len 0
 * Support is probed once per process with io_uring_get_probe(); a kernel
 * without the opcode, or a container that blocks io_uring, gets -EOPNOTSUPP,
 * and the caller falls back to taskring_job_wait_any() in a thread of its
 * own. Setting TASKRING_NO_IOURING=1 in the environment forces that answer
 * (for tests of the fallback path).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#include "internal.h"

#define TR_IORING_OP_FUTEX_WAIT 51
#define TR_FUTEX2_SIZE_U32 0x02

/* Probed once per process: a fork()ed child probes again (its environment
 * may differ). */
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic pid_t probe_pid;
static int probe_rc;

static void probe(void)
{
	if (tr__no_iouring_env()) {
		probe_rc = -EOPNOTSUPP;
		return;
	}
	struct io_uring_probe *p = io_uring_get_probe();
	if (!p) {
		probe_rc = -EOPNOTSUPP;
		return;
	}
	probe_rc = io_uring_opcode_supported(p, TR_IORING_OP_FUTEX_WAIT) ? 0 : -EOPNOTSUPP;
	io_uring_free_probe(p);
}

int taskring_async_supported(void)
{
	pid_t pid = tr__pid();
	/* Acquire: pairs with the release below, so probe_rc is set. */
	if (atomic_load_explicit(&probe_pid, memory_order_acquire) != pid) {
		pthread_mutex_lock(&probe_lock);
		if (atomic_load_explicit(&probe_pid, memory_order_relaxed) != pid) {
			probe();
			atomic_store_explicit(&probe_pid, pid, memory_order_release);
		}
		pthread_mutex_unlock(&probe_lock);
	}
	return probe_rc;
}

int taskring_job_prep_wait(const struct taskring_job *job, struct io_uring_sqe *sqe)
{
	uint32_t state;
	int err;

	if (!sqe)
		return -EINVAL;
	struct tr_slot *s = tr__read_begin(job, &state, &err);
	if (!s)
		return err == -ENOENT ? 1 : err; /* gone: it ended long ago */
	if (TR_TERMINAL(TR_STATUS(state)))
		return 1;
	int rc = taskring_async_supported();
	if (rc)
		return rc;
	if (tr__job_arm(job, &state))
		return 1;
	/* Every field but user_data, which is the caller's. */
	sqe->opcode = TR_IORING_OP_FUTEX_WAIT;
	sqe->flags = 0;
	sqe->ioprio = 0;
	sqe->fd = TR_FUTEX2_SIZE_U32;
	sqe->off = state;
	sqe->addr = (uint64_t)(uintptr_t)&s->s_state;
	sqe->len = 0;
	sqe->rw_flags = 0;
	sqe->buf_index = 0;
	sqe->personality = 0;
	sqe->file_index = 0;
	sqe->addr3 = 0xffffffffu;
	sqe->__pad2[0] = 0;
	return 0;
}
