/*
 * wait.c - waiting for jobs: one job (taskring_job_wait, taskring_job_result),
 * any of a set, or all of a set. Nothing polls.
 *
 * A waiter spins on a job's state word for the store's spin time (most
 * hand-offs finish within it), then sets TR_ST_WAITERS with a CAS, so that
 * the transition knows to call FUTEX_WAKE, and sleeps on the word with an
 * absolute CLOCK_MONOTONIC deadline. Every transition of the word clears
 * TR_ST_WAITERS and wakes the sleepers if it was set, so a waiter makes one
 * futex call per state change it sleeps through, and none when nobody
 * waits. The word also carries a tag of the slot's generation: a waiter
 * whose job's slot was recycled sees the tag change and returns -ENOENT.
 * Waiting for any of a set sleeps on all their words at once (futex_waitv).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Has @job ended: terminal, or its slot moved on to another job? */
int tr__job_ended(const struct taskring_job *job)
{
	struct tr_slot *s = &job->store->slots[job->slot];
	uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);
	return TR_TAG(state) != TR_GEN_TAG(job->gen) || TR_STATUS(state) == TR_ST_FREE ||
	       TR_TERMINAL(TR_STATUS(state));
}

static int ended_cb(void *arg)
{
	return tr__job_ended(arg);
}

/*
 * Register as a waiter on @job's state word, for every kind of waiter
 * (blocking, futex_waitv, io_uring, helper thread): set TR_ST_WAITERS with a
 * CAS, so that the job's next transition calls FUTEX_WAKE on the word.
 * Returns 0 with *@valp set to the value to wait on, or 1 when the job has
 * ended (nothing to wait for).
 */
int tr__job_arm(const struct taskring_job *job, uint32_t *valp)
{
	struct tr_slot *s = &job->store->slots[job->slot];
	uint32_t tag = TR_GEN_TAG(job->gen);
	uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);

	for (;;) {
		if (TR_TAG(state) != tag || TR_STATUS(state) == TR_ST_FREE || TR_TERMINAL(TR_STATUS(state)))
			return 1;
		if (state & TR_ST_WAITERS)
			break;
		/* Acq_rel: the transition that clears the flag is ordered after
		 * it, so it sees the flag and wakes the word. */
		if (atomic_compare_exchange_weak_explicit(&s->s_state, &state, state | TR_ST_WAITERS,
							  memory_order_acq_rel, memory_order_acquire)) {
			state |= TR_ST_WAITERS;
			break;
		}
	}
	*valp = state;
	return 0;
}

/*
 * Waiting is three steps: a spin on the state word (most hand-offs finish
 * within it), then a loop that registers in TR_ST_WAITERS with a CAS (so the
 * transition knows to call FUTEX_WAKE) and sleeps with the absolute
 * deadline. A wake-up or EINTR only re-reads the word: the deadline never
 * stretches, and the tag in the word tells a recycled slot from our job.
 */
int taskring_job_wait(const struct taskring_job *job, int64_t timeout_ns)
{
	uint32_t state;
	int err;
	struct tr_slot *s = tr__read_begin(job, &state, &err);

	if (!s)
		return err;
	if (timeout_ns < -1)
		return -EINVAL;
	if (TR_TERMINAL(TR_STATUS(state)))
		return (int)TR_STATUS(state);
	int64_t deadline = timeout_ns < 0 ? -1 : tr__now_mono() + timeout_ns;

	/* Spin: a hand-off between running CPUs costs a fraction of a
	 * microsecond, a futex sleep and wake tens of microseconds. */
	if (timeout_ns != 0 && tr__spin(atomic_load_explicit(&job->store->spin_ns, memory_order_relaxed), deadline,
					0, ended_cb, (void *)job) == -ETIMEDOUT)
		return -ETIMEDOUT;
	/* Sleep. The deadline is looked at before registering, so a caller
	 * that only checks (or whose time is up) never makes the job's next
	 * transition pay for a FUTEX_WAKE. */
	while (!tr__job_ended(job)) {
		uint32_t val;
		if (deadline >= 0 && tr__now_mono() >= deadline)
			return -ETIMEDOUT;
		if (tr__job_arm(job, &val))
			break;
		tr__futex_wait(&s->s_state, val, deadline, 0xffffffffu);
	}
	state = atomic_load_explicit(&s->s_state, memory_order_acquire);
	if (TR_TAG(state) != TR_GEN_TAG(job->gen) || TR_STATUS(state) == TR_ST_FREE || tr__ttl_expired(s, state))
		return -ENOENT;
	return (int)TR_STATUS(state);
}

struct any_wait {
	const struct taskring_job *jobs;
	size_t n;
	int found;
};

static int any_ended(void *arg)
{
	struct any_wait *a = arg;
	for (size_t i = 0; i < a->n; i++)
		if (tr__job_ended(&a->jobs[i])) {
			a->found = (int)i;
			return 1;
		}
	return 0;
}

int taskring_job_wait_any(const struct taskring_job *jobs, size_t n, int64_t timeout_ns)
{
	_Atomic uint32_t *words[TASKRING_WAIT_MAX];
	uint32_t vals[TASKRING_WAIT_MAX];

	if (!jobs || n == 0 || n > TASKRING_WAIT_MAX || timeout_ns < -1)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!tr__job_slot(&jobs[i]) || jobs[i].store != jobs[0].store)
			return -EINVAL;
	struct taskring_store *st = jobs[0].store;
	int64_t deadline = timeout_ns < 0 ? -1 : tr__now_mono() + timeout_ns;
	struct any_wait a = {jobs, n, -1};

	if (any_ended(&a))
		return a.found;
	if (timeout_ns == 0)
		return -ETIMEDOUT;
	int rc = tr__spin(atomic_load_explicit(&st->spin_ns, memory_order_relaxed), deadline, 0, any_ended, &a);
	if (rc == 1)
		return a.found;
	if (rc < 0)
		return rc;
	for (;;) {
		/* Register on every word (as taskring_job_wait() does), then
		 * sleep on all of them; any transition wakes us. */
		for (size_t i = 0; i < n; i++) {
			if (tr__job_arm(&jobs[i], &vals[i]))
				return (int)i;
			words[i] = &st->slots[jobs[i].slot].s_state;
		}
		rc = tr__futex_waitv(words, vals, (unsigned)n, deadline);
		if (any_ended(&a))
			return a.found;
		if (rc == -ETIMEDOUT || rc == -ENOSYS)
			return rc;
	}
}

int taskring_job_wait_all(const struct taskring_job *jobs, size_t n, int64_t timeout_ns)
{
	if (!jobs || n == 0 || timeout_ns < -1)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!tr__job_slot(&jobs[i]))
			return -EINVAL;
	int64_t deadline = timeout_ns < 0 ? -1 : tr__now_mono() + timeout_ns;
	for (size_t i = 0; i < n; i++) {
		int64_t left = deadline < 0 ? -1 : deadline - tr__now_mono();
		if (left < -1 || (deadline >= 0 && left < 0))
			left = 0;
		int rc = taskring_job_wait(&jobs[i], left);
		if (rc == -ETIMEDOUT)
			return rc;
		/* Terminal, or gone (-ENOENT): either way it has ended. */
	}
	return 0;
}

int taskring_job_result(const struct taskring_job *job, int64_t timeout_ns, void *buf, size_t cap, size_t *lenp)
{
	size_t dummy;
	if (!buf && cap)
		return -EINVAL;
	if (!lenp)
		lenp = &dummy;
	int st = taskring_job_wait(job, timeout_ns);
	if (st < 0)
		return st;
	switch (st) {
	case TASKRING_FAILED:
		return TASKRING_EFAILED;
	case TASKRING_DEAD:
		return TASKRING_EDEAD;
	case TASKRING_CANCELLED:
		return -ECANCELED;
	default:
		break;
	}
	return tr__copy_blob(job, 1, buf, cap, lenp);
}

