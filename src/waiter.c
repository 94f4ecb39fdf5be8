/*
 * waiter.c - the fallback for waiting from an event loop where io_uring's
 * futex wait is missing (Linux before 6.7, including Debian 12's 6.1, or a
 * container that blocks io_uring): a set of jobs with a pollable file
 * descriptor (an eventfd) that becomes readable when jobs of the set end.
 *
 * Helper threads do the waiting, each for up to HELPER_MAX jobs at once with
 * futex_waitv (Linux 5.16+) on the jobs' state words plus a process-private
 * control word of its own, through which taskring_waiter_add() and destroy
 * wake it. A job that ends goes to the ready queue and the eventfd is
 * written; taskring_waiter_next() takes ready jobs and clears the eventfd
 * when the queue empties. Both happen under the waiter's mutex, so the fd is
 * readable exactly while a ready job waits. Nothing polls: a helper sleeps
 * until one of its jobs changes state or it is given more.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

#define HELPER_MAX 127 /* futex_waitv takes 128 words: one is the control word */

struct wjob {
	struct taskring_job job;
	uint64_t user_data;
};

struct helper {
	struct taskring_waiter *w;
	pthread_t tid;
	_Atomic uint32_t ctl;          /* bumped to wake this helper */
	struct wjob watch[HELPER_MAX]; /* its jobs (changed under w->mu) */
	uint32_t nwatch;
	struct wjob inbox[HELPER_MAX]; /* given to it, under w->mu */
	uint32_t ninbox;
};

struct taskring_waiter {
	struct taskring_store *st;
	int efd;
	pthread_mutex_t mu;
	int stopping;
	struct helper **helpers;
	size_t nhelpers;
	struct wjob *ready;
	size_t nready, ready_cap;
};

/* Wake a helper. Its control word is waited on with the shared futex key
 * (as every word of one futex_waitv call is), so it is woken the same way. */
static void helper_kick(struct helper *h)
{
	atomic_fetch_add_explicit(&h->ctl, 1, memory_order_seq_cst);
	tr__futex_wake(&h->ctl, 1, 0xffffffffu);
}

static int push_ready(struct taskring_waiter *w, const struct wjob *j)
{
	if (w->nready == w->ready_cap) {
		size_t cap = w->ready_cap ? 2 * w->ready_cap : 64;
		struct wjob *r = realloc(w->ready, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		w->ready = r;
		w->ready_cap = cap;
	}
	w->ready[w->nready++] = *j;
	uint64_t one = 1;
	if (write(w->efd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow with one write per job. */
	}
	return 0;
}

static void *helper_main(void *arg)
{
	struct helper *h = arg;
	struct taskring_waiter *w = h->w;
	_Atomic uint32_t *words[HELPER_MAX + 1];
	uint32_t vals[HELPER_MAX + 1];

	for (;;) {
		/* Read the control word before looking, so a kick after the
		 * look makes the wait below return at once. */
		uint32_t c = atomic_load_explicit(&h->ctl, memory_order_seq_cst);
		pthread_mutex_lock(&w->mu);
		if (w->stopping) {
			pthread_mutex_unlock(&w->mu);
			return NULL;
		}
		for (uint32_t i = 0; i < h->ninbox; i++)
			h->watch[h->nwatch++] = h->inbox[i];
		h->ninbox = 0;
		/* Hand over what has ended. */
		for (uint32_t i = 0; i < h->nwatch;) {
			if (tr__job_ended(&h->watch[i].job) && push_ready(w, &h->watch[i]) == 0) {
				h->watch[i] = h->watch[--h->nwatch];
			} else {
				i++;
			}
		}
		pthread_mutex_unlock(&w->mu);

		unsigned n = 0;
		int ended_meanwhile = 0;
		words[n] = &h->ctl;
		vals[n++] = c;
		for (uint32_t i = 0; i < h->nwatch && !ended_meanwhile; i++) {
			/* A job that ended since the look above: look again
			 * instead of sleeping. */
			ended_meanwhile = tr__job_arm(&h->watch[i].job, &vals[n]);
			words[n++] = &w->st->slots[h->watch[i].job.slot].s_state;
		}
		if (ended_meanwhile)
			continue;
		int rc = tr__futex_waitv(words, vals, n, -1);
		if (rc == -ENOSYS)
			return NULL; /* cannot wait here: taskring_waiter_create() refused */
	}
}

int taskring_waiter_create(struct taskring_store *st, struct taskring_waiter **wp)
{
	if (!st || !wp)
		return -EINVAL;
	/* futex_waitv is what the helpers sleep in: check it is there. */
	_Atomic uint32_t probe_word = 1;
	_Atomic uint32_t *pw = &probe_word;
	uint32_t pv = 0;
	if (tr__futex_waitv(&pw, &pv, 1, 0) == -ENOSYS)
		return -ENOSYS;
	struct taskring_waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		int rc = -errno;
		free(w);
		return rc;
	}
	w->st = st;
	pthread_mutex_init(&w->mu, NULL);
	*wp = w;
	return 0;
}

int taskring_waiter_fd(const struct taskring_waiter *w)
{
	return w ? w->efd : -EINVAL;
}

int taskring_waiter_add(struct taskring_waiter *w, const struct taskring_job *job, uint64_t user_data)
{
	if (!w || !tr__job_slot(job) || job->store != w->st)
		return -EINVAL;
	struct helper *h = NULL;
	int rc = 0;
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->nhelpers && !h; i++)
		if (w->helpers[i]->nwatch + w->helpers[i]->ninbox < HELPER_MAX)
			h = w->helpers[i];
	if (!h) {
		struct helper **hs = realloc(w->helpers, (w->nhelpers + 1) * sizeof(*hs));
		h = calloc(1, sizeof(*h));
		if (hs)
			w->helpers = hs;
		if (!hs || !h) {
			free(h);
			pthread_mutex_unlock(&w->mu);
			return -ENOMEM;
		}
		h->w = w;
		rc = -pthread_create(&h->tid, NULL, helper_main, h);
		if (rc) {
			free(h);
			pthread_mutex_unlock(&w->mu);
			return rc;
		}
		w->helpers[w->nhelpers++] = h;
	}
	h->inbox[h->ninbox++] = (struct wjob){*job, user_data};
	pthread_mutex_unlock(&w->mu);
	helper_kick(h);
	return 0;
}

int taskring_waiter_next(struct taskring_waiter *w, struct taskring_job *job, uint64_t *user_data)
{
	if (!w)
		return -EINVAL;
	int found = 0;
	pthread_mutex_lock(&w->mu);
	if (w->nready) {
		struct wjob j = w->ready[0];
		memmove(w->ready, w->ready + 1, (w->nready - 1) * sizeof(*w->ready));
		w->nready--;
		if (job)
			*job = j.job;
		if (user_data)
			*user_data = j.user_data;
		found = 1;
	}
	if (!w->nready) {
		/* Empty: clear the counter, so the fd reads as not ready. */
		uint64_t v;
		if (read(w->efd, &v, sizeof(v)) < 0) {
			/* EAGAIN: it was 0 already. */
		}
	}
	pthread_mutex_unlock(&w->mu);
	return found;
}

int taskring_waiter_destroy(struct taskring_waiter *w)
{
	if (!w)
		return -EINVAL;
	pthread_mutex_lock(&w->mu);
	w->stopping = 1;
	pthread_mutex_unlock(&w->mu);
	for (size_t i = 0; i < w->nhelpers; i++) {
		helper_kick(w->helpers[i]);
		pthread_join(w->helpers[i]->tid, NULL);
		free(w->helpers[i]);
	}
	free(w->helpers);
	free(w->ready);
	close(w->efd);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return 0;
}
