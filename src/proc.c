/*
 * proc.c - the process table, liveness, and the reaper.
 *
 * Registration. Every store handle takes an entry of the table when it is
 * opened: it opens the store's file anew through /proc/self/fd (a new open
 * file description, its own), takes an OFD write lock on byte
 * TR_PROC_LOCK_BASE + index with F_OFD_SETLK (the first entry whose byte
 * nobody holds is ours), and only then moves the entry's generation on and
 * sets its live bit. The lock is the liveness: the kernel releases it when
 * the last descriptor of that description is closed, which for a killed
 * process happens in exit, before it is a zombie. So a probe with
 * F_OFD_GETLK answers "gone" for a dead process whether or not its parent
 * reaped it, and a recycled pid is irrelevant (kill(pid, 0) is never used).
 * A fork()ed child shares the parent's descriptions; a fork handler closes
 * the child's copy of each lock descriptor, and the child registers anew on
 * its first claim.
 *
 * Owner tokens. A running attempt's s_owner is TR_PROC_TOKEN(index,
 * generation) of the handle that claimed it. The owner is alive while the
 * entry still has that generation, its live bit, and its byte locked.
 *
 * Closing an attempt. Ending a running attempt writes several of the job's
 * fields, so it is exclusive: the closer moves s_owner from the owner's
 * token T to its own token | TR_OWNER_CLOSER with one CAS. The worker does
 * that at the end of its handler (T -> T | closer); a reaper does it for an
 * attempt whose owner is gone or whose lease ran out (T -> R | closer). Of
 * the two, one CAS wins and the other closer leaves the attempt. A reaper
 * that finds, once it holds the attempt, that the lease was extended
 * meanwhile (a touch, which stores the lease and then looks at s_owner)
 * hands it back (s_owner = T again); a worker that finds a reaper holding
 * its attempt waits those few microseconds to see which way it goes. A
 * closer that dies is taken over by the next reaper, with a CAS from its
 * token (it is checked dead first) to the reaper's. So at any moment at
 * most one process writes the attempt's fields, and exactly one end is
 * accepted per attempt. (A closer that is stopped, not dead, keeps the
 * attempt until it goes on: closing takes microseconds.)
 *
 * Reaping. tr__reap() probes each live entry's lock (one fcntl each). It
 * walks the slot table only when an entry was found dead (h_reap_marks,
 * kept until a walk covers it, so a reaper killed in between leaves the
 * walk to the next one), when an entry's p_lease_min (a lower bound of the
 * leases of its jobs, kept by each claim with an atomic minimum) has
 * passed, or when asked for a full look.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- every handle of this process, for the fork handler ----------------- */

static pthread_mutex_t g_handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct taskring_store *g_handles;

static void fork_prepare(void)
{
	pthread_mutex_lock(&g_handles_lock);
	for (struct taskring_store *h = g_handles; h; h = h->reg_next)
		pthread_mutex_lock(&h->reg_lock);
}

static void fork_parent(void)
{
	for (struct taskring_store *h = g_handles; h; h = h->reg_next)
		pthread_mutex_unlock(&h->reg_lock);
	pthread_mutex_unlock(&g_handles_lock);
}

/* The child must not keep its parent's registrations alive: close its copy
 * of each lock description (the parent's own descriptor keeps the lock). */
static void fork_child(void)
{
	for (struct taskring_store *h = g_handles; h; h = h->reg_next) {
		if (h->lockfd >= 0)
			close(h->lockfd);
		h->lockfd = -1;
		atomic_store_explicit(&h->token, 0, memory_order_relaxed);
		atomic_store_explicit(&h->reg_pid, 0, memory_order_relaxed);
		pthread_mutex_unlock(&h->reg_lock);
	}
	pthread_mutex_unlock(&g_handles_lock);
}

/* Called once per process, from util.c's one pthread_once() (each
 * pthread_once() costs a futex system call the first time). */
void tr__proc_fork_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- locks --------------------------------------------------------------- */

static void lock_range(struct flock *fl, short type, uint32_t idx)
{
	memset(fl, 0, sizeof(*fl));
	fl->l_type = type;
	fl->l_whence = SEEK_SET;
	fl->l_start = (off_t)(TR_PROC_LOCK_BASE + idx);
	fl->l_len = 1;
}

/* 1: someone holds entry @idx's byte; 0: nobody; -1: cannot tell. */
static int entry_locked(struct taskring_store *st, uint32_t idx)
{
	struct flock fl;
	if (st->lock_src < 0)
		return -1;
	lock_range(&fl, F_WRLCK, idx);
	if (fcntl(st->lock_src, F_OFD_GETLK, &fl) < 0)
		return -1;
	return fl.l_type != F_UNLCK;
}

/* Take an entry: called with st->reg_lock held, in the process that will
 * use the registration. Without OFD locks (or /proc), the handle stays
 * unregistered: its jobs are reaped by lease only. */
static int proc_register(struct taskring_store *st)
{
	char path[64];
	pid_t pid = tr__pid();

	snprintf(path, sizeof(path), "/proc/self/fd/%d", st->lock_src);
	int fd = st->lock_src >= 0 ? open(path, O_RDWR | O_CLOEXEC) : -1;
	if (fd < 0)
		goto unregistered;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < TR_PROCS; i++) {
			struct tr_proc *p = &st->procs[i];
			uint32_t w = atomic_load_explicit(&p->p_word, memory_order_acquire);
			if (pass == 0 && (w & 1))
				continue; /* live or left live by a dead process: later */
			struct flock fl;
			lock_range(&fl, F_WRLCK, i);
			if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
				if (errno == EAGAIN || errno == EACCES)
					continue;
				close(fd);
				if (errno == EINVAL || errno == ENOLCK)
					goto unregistered;
				return -errno;
			}
			/* Ours. Describe it, then publish the new generation. */
			p->p_pid = (int32_t)pid;
			p->p_attached_at = tr__now_real();
			atomic_store_explicit(&p->p_heartbeat, p->p_attached_at, memory_order_relaxed);
			atomic_store_explicit(&p->p_lease_min, INT64_MAX, memory_order_relaxed);
			atomic_store_explicit(&p->p_supervised, 0, memory_order_relaxed);
			memset(p->p_comm, 0, sizeof(p->p_comm));
			prctl(PR_GET_NAME, p->p_comm, 0, 0, 0);
			p->p_comm[sizeof(p->p_comm) - 1] = 0;
			w = atomic_load_explicit(&p->p_word, memory_order_relaxed);
			uint32_t gen;
			for (;;) {
				gen = ((w >> 1) + 1) & TR_PROC_GEN_MASK;
				if (!gen)
					gen = 1;
				if (atomic_compare_exchange_weak_explicit(&p->p_word, &w, (gen << 1) | 1,
									  memory_order_acq_rel, memory_order_relaxed))
					break;
			}
			if (w & 1) {
				/* Its last holder died unnoticed: its jobs
				 * still name it. Leave a mark for the walk. */
				atomic_fetch_add_explicit(&st->hdr->h_reaped_procs, 1, memory_order_relaxed);
				atomic_fetch_add_explicit(&st->hdr->h_reap_marks, 1, memory_order_seq_cst);
			}
			st->lockfd = fd;
			atomic_store_explicit(&st->token, TR_PROC_TOKEN(i, gen), memory_order_relaxed);
			atomic_store_explicit(&st->reg_pid, pid, memory_order_release);
			return 0;
		}
	}
	close(fd);
	return -EUSERS;
unregistered:
	atomic_store_explicit(&st->token, 0, memory_order_relaxed);
	atomic_store_explicit(&st->reg_pid, pid, memory_order_release);
	return 0;
}

int tr__proc_attach(struct taskring_store *st, int src, int own_src)
{
	(void)tr__pid(); /* installs the fork handlers */
	st->procs = (struct tr_proc *)(st->base + st->hdr->h_off_procs);
	st->lock_src = src;
	st->own_src = own_src;
	st->lockfd = -1;
	pthread_mutex_init(&st->reg_lock, NULL);
	pthread_mutex_lock(&g_handles_lock);
	pthread_mutex_lock(&st->reg_lock);
	int rc = proc_register(st);
	pthread_mutex_unlock(&st->reg_lock);
	if (rc == 0) {
		st->reg_prev = NULL;
		st->reg_next = g_handles;
		if (g_handles)
			g_handles->reg_prev = st;
		g_handles = st;
	}
	pthread_mutex_unlock(&g_handles_lock);
	if (rc) {
		pthread_mutex_destroy(&st->reg_lock);
		if (own_src)
			close(src);
		st->lock_src = -1;
	}
	return rc;
}

void tr__proc_detach(struct taskring_store *st)
{
	if (!st->procs)
		return;
	pthread_mutex_lock(&g_handles_lock);
	if (st->reg_prev)
		st->reg_prev->reg_next = st->reg_next;
	else
		g_handles = st->reg_next;
	if (st->reg_next)
		st->reg_next->reg_prev = st->reg_prev;
	pthread_mutex_unlock(&g_handles_lock);
	uint32_t tok = atomic_load_explicit(&st->token, memory_order_relaxed);
	if (tok && atomic_load_explicit(&st->reg_pid, memory_order_relaxed) == tr__pid()) {
		/* Gone cleanly: clear the live bit (if the entry is still ours)
		 * before the lock goes. */
		struct tr_proc *p = &st->procs[TR_PROC_IDX(tok)];
		uint32_t w = (TR_PROC_GEN(tok) << 1) | 1;
		atomic_compare_exchange_strong_explicit(&p->p_word, &w, w & ~1u, memory_order_acq_rel,
							memory_order_relaxed);
	}
	if (st->lockfd >= 0)
		close(st->lockfd);
	if (st->own_src && st->lock_src >= 0)
		close(st->lock_src);
	pthread_mutex_destroy(&st->reg_lock);
	st->procs = NULL;
}

uint32_t tr__proc_token(struct taskring_store *st)
{
	pid_t pid = tr__pid();
	if (__builtin_expect(atomic_load_explicit(&st->reg_pid, memory_order_acquire) == pid, 1))
		return atomic_load_explicit(&st->token, memory_order_relaxed);
	/* Not attached yet (a region being rebuilt from its log, which
	 * nobody else can see): no token. */
	if (!st->procs)
		return 0;
	/* A child after fork(): register this process. */
	pthread_mutex_lock(&st->reg_lock);
	if (atomic_load_explicit(&st->reg_pid, memory_order_relaxed) != pid && proc_register(st) != 0) {
		/* Table full: run unregistered (reaped by lease only). */
		atomic_store_explicit(&st->token, 0, memory_order_relaxed);
		atomic_store_explicit(&st->reg_pid, pid, memory_order_release);
	}
	pthread_mutex_unlock(&st->reg_lock);
	return atomic_load_explicit(&st->token, memory_order_relaxed);
}

/* Is the registration @token (without TR_OWNER_CLOSER) alive? Cannot-tell
 * counts as alive: the reaper never ends an attempt on a guess. */
int tr__proc_alive(struct taskring_store *st, uint32_t token)
{
	if (!token)
		return 1;
	uint32_t idx = TR_PROC_IDX(token);
	uint32_t w = atomic_load_explicit(&st->procs[idx].p_word, memory_order_acquire);
	if (!(w & 1) || ((w >> 1) & TR_PROC_GEN_MASK) != TR_PROC_GEN(token))
		return 0;
	if (token == atomic_load_explicit(&st->token, memory_order_relaxed) &&
	    atomic_load_explicit(&st->reg_pid, memory_order_relaxed) == tr__pid())
		return 1;
	return entry_locked(st, idx) != 0;
}

/* Keep @token's entry's p_lease_min at or below @until. A store only when it
 * lowers it, so a claim usually just reads the line. */
static void lease_min_at(struct taskring_store *st, uint32_t idx, int64_t until)
{
	_Atomic int64_t *m = &st->procs[idx].p_lease_min;
	int64_t cur = atomic_load_explicit(m, memory_order_relaxed);
	while (until < cur &&
	       !atomic_compare_exchange_weak_explicit(m, &cur, until, memory_order_relaxed, memory_order_relaxed))
		;
}

void tr__proc_lease_min(struct taskring_store *st, uint32_t token, int64_t until)
{
	if (token)
		lease_min_at(st, TR_PROC_IDX(token), until);
}

/* ---- the reaper --------------------------------------------------------- */

/*
 * Take the closing of the attempt in slot @idx that @state (RUNNING) names,
 * from @owner (as read from s_owner; a closer's token with TR_OWNER_CLOSER
 * only if that closer is dead), because its owner is @dead or its lease ran
 * out. Returns 1 when the caller holds it, 0 when it was left (changed
 * meanwhile, touched, or another closer won).
 */
static int take_for_reap(struct taskring_store *st, uint32_t idx, uint32_t state, uint32_t owner, int dead,
			 int64_t now, uint32_t me)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t seen = owner;

	if (!atomic_compare_exchange_strong_explicit(&s->s_owner, &seen, me | TR_OWNER_CLOSER, memory_order_seq_cst,
						     memory_order_relaxed))
		return 0; /* another closer won, or a new attempt began */
	/* Still the attempt we judged? (Its owner may have ended it and a
	 * dead closer's transition may have happened before it died.) */
	uint32_t cur = atomic_load_explicit(&s->s_state, memory_order_acquire);
	if ((cur & ~TR_ST_FLAGS) != (state & ~TR_ST_FLAGS)) {
		if (!(owner & TR_OWNER_CLOSER))
			atomic_store_explicit(&s->s_owner, owner, memory_order_seq_cst);
		return 0;
	}
	if (!dead && atomic_load_explicit(&s->s_lease, memory_order_seq_cst) > now) {
		/* Touched meanwhile: hand the attempt back. */
		atomic_store_explicit(&s->s_owner, owner, memory_order_seq_cst);
		return 0;
	}
	return 1;
}

/* The reaper's end of an attempt: its owner is @dead, or its lease ran out. */
static int reap_one(struct taskring_store *st, uint32_t idx, uint32_t state, uint32_t owner, int dead, int64_t now,
		    uint32_t me)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t attempt = TR_ATTEMPT(state);
	int32_t pid = TR_GET(s->s_owner_pid);
	uint32_t lease_ms = TR_GET(s->s_lease_ms);

	if (!take_for_reap(st, idx, state, owner, dead, now, me))
		return 0;
	TR_CRASH(REAP_CLOSING);
	char msg[160];
	int n;
	if (dead)
		n = snprintf(msg, sizeof(msg), "worker process %d died while running attempt %u", (int)pid, attempt);
	else
		n = snprintf(msg, sizeof(msg), "lease of %u ms ran out: worker process %d held attempt %u without a touch",
			     lease_ms, (int)pid, attempt);
	tr__attempt_close_end(st, idx, attempt, TR_TAG(state), TASKRING_RETRY, msg, (size_t)n, tr__now_real());
	atomic_fetch_add_explicit(&st->hdr->h_reaped_jobs, 1, memory_order_relaxed);
	return 1;
}

int tr__reap_take(struct taskring_store *st, uint32_t idx, uint32_t state, uint32_t owner)
{
	return take_for_reap(st, idx, state, owner, 1, tr__now_coarse(), tr__proc_token(st));
}

void tr__reap_end(struct taskring_store *st, uint32_t idx, uint32_t state, int outcome, const char *msg, size_t mlen)
{
	tr__attempt_close_end(st, idx, TR_ATTEMPT(state), TR_TAG(state), outcome, msg, mlen, tr__now_real());
	atomic_fetch_add_explicit(&st->hdr->h_reaped_jobs, 1, memory_order_relaxed);
}

int tr__reap_attempt(struct taskring_store *st, uint32_t idx, uint32_t state, uint32_t owner, int outcome,
		     const char *msg, size_t mlen)
{
	if (!tr__reap_take(st, idx, state, owner))
		return 0;
	tr__reap_end(st, idx, state, outcome, msg, mlen);
	return 1;
}

/* Is the registration @tok alive? Remembered per entry for one walk. */
#define VERDICT_ALIVE TR_OWNER_CLOSER
#define VERDICT_DEAD TR_OWNER_HELD
static int alive_cached(struct taskring_store *st, uint32_t tok, uint32_t *verdict)
{
	uint32_t e = TR_PROC_IDX(tok);
	uint32_t w = atomic_load_explicit(&st->procs[e].p_word, memory_order_acquire);
	if (!(w & 1) || ((w >> 1) & TR_PROC_GEN_MASK) != TR_PROC_GEN(tok))
		return 0;
	/* Kept with its token: the entry may have a new holder by now, and a
	 * verdict about the old one says nothing about it. */
	if (verdict && TR_OWNER_TOKEN(verdict[e]) == tok)
		return !!(verdict[e] & VERDICT_ALIVE);
	int alive = tr__proc_alive(st, tok);
	if (verdict)
		verdict[e] = tok | (alive ? VERDICT_ALIVE : VERDICT_DEAD);
	return alive;
}

/* For the arena census: is @tok a registration that is gone? (0, an
 * unregistered process, never is.) */
static int census_dead(struct taskring_store *st, uint32_t tok, void *verdict)
{
	return tok && !alive_cached(st, tok, verdict);
}

/*
 * A terminal (or purged, free) job whose closer died before it resolved its
 * dependents and recycled its slot (s_owner still names the closer;
 * recycling clears it): finish that, once (the s_owner CAS decides who).
 */
static void finish_ended(struct taskring_store *st, uint32_t idx, uint32_t *verdict,
			 struct taskring_reap_stats *stats)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t owner = atomic_load_explicit(&s->s_owner, memory_order_acquire);
	uint32_t tok = TR_OWNER_TOKEN(owner);
	if (!(owner & TR_OWNER_CLOSER) || !tok || alive_cached(st, tok, verdict))
		return;
	/* Ours now as its closer: the push checks that (ring.c). */
	if (!atomic_compare_exchange_strong_explicit(&s->s_owner, &owner, tr__proc_token(st) | TR_OWNER_CLOSER,
						     memory_order_seq_cst, memory_order_relaxed))
		return;
	tr__slot_finished(st, idx);
	stats->recycled++;
}

/*
 * The producer that took slot @idx from the ring, if it is dead and had not
 * finished with it: the slot's generation is still the one it took (or one
 * more: half-written), or two more and the job is pending in no list
 * (written, not linked). Returns the holder word to CAS from, or 0.
 */
static uint32_t dead_holder(struct taskring_store *st, struct tr_slot *s, uint32_t gen_delta_lo,
			    uint32_t gen_delta_hi, uint32_t *verdict)
{
	uint32_t holder = atomic_load_explicit(&s->s_holder, memory_order_acquire);
	uint32_t tok = TR_OWNER_TOKEN(holder);
	if (!(holder & TR_OWNER_HELD) || !tok)
		return 0;
	uint32_t d = atomic_load_explicit(&s->s_gen, memory_order_acquire) -
		     atomic_load_explicit(&s->s_holder_gen, memory_order_relaxed);
	if (d < gen_delta_lo || d > gen_delta_hi || alive_cached(st, tok, verdict))
		return 0;
	return holder;
}

/* A free or ended slot a dead producer took from the ring and had not yet
 * written (or half wrote): whatever it holds goes, and it goes back. */
static void give_back_held(struct taskring_store *st, uint32_t idx, uint32_t state, uint32_t *verdict,
			   struct taskring_reap_stats *stats)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t holder = dead_holder(st, s, 0, 1, verdict);
	/* Ours now as its holder: the give-back checks that (ring.c). */
	if (!holder || !atomic_compare_exchange_strong_explicit(&s->s_holder, &holder, tr__proc_token(st) | TR_OWNER_HELD,
								memory_order_seq_cst, memory_order_relaxed))
		return;
	if (atomic_load_explicit(&s->s_gen, memory_order_acquire) & 1 || TR_TERMINAL(TR_STATUS(state)))
		tr__free_in_place(st, s, state);
	tr__ring_give_back(st, idx);
	tr__wake_blocked(st);
	stats->recycled++;
}

/*
 * A job its producer wrote and died before linking (PENDING, in no list):
 * linked now, unless its dependencies were not registered (then it is
 * dropped; it was never acknowledged).
 */
static void link_unlinked(struct taskring_store *st, uint32_t idx, uint32_t state, uint32_t *verdict,
			  struct taskring_reap_stats *stats)
{
	struct tr_slot *s = &st->slots[idx];
	uint32_t qi = TR_GET(s->s_queue);
	uint32_t holder = dead_holder(st, s, 2, 2, verdict);
	if (!holder || qi >= st->nqueues)
		return;
	struct tr_queue *q = &st->queues[qi];
	if (tr__lock(&q->q_lock, st, (int)qi))
		return;
	uint32_t now_state = atomic_load_explicit(&s->s_state, memory_order_acquire);
	int link = 0, drop = (TR_GET(s->s_flags) & TR_SF_DEPS) && TR_GET(s->s_deps_left);
	/* A dropped slot is ours to give back as its holder (ring.c). */
	if (now_state == state && TR_GET(s->s_loc) == TR_LOC_NONE &&
	    atomic_compare_exchange_strong_explicit(&s->s_holder, &holder, drop ? tr__proc_token(st) | TR_OWNER_HELD : 0,
						    memory_order_seq_cst, memory_order_relaxed))
		link = !drop;
	else
		drop = 0;
	if (link)
		tr__queue_link_locked(st, q, idx, tr__now_real());
	uint32_t sleepers = link ? tr__queue_sleepers_locked(q) : 0;
	tr__unlock(&q->q_lock);
	if (sleepers)
		tr__queue_wake(st, qi, 1);
	if (drop && tr__free_in_place(st, s, state) == 0) {
		tr__ring_give_back(st, idx);
		tr__wake_blocked(st);
	}
	stats->recycled += link | drop;
}

int tr__reap(struct taskring_store *st, int full, struct taskring_reap_stats *out)
{
	struct tr_hdr *h = st->hdr;
	struct taskring_reap_stats stats;
	int64_t now = tr__now_coarse();
	uint32_t me = tr__proc_token(st);
	int scan = full;

	memset(&stats, 0, sizeof(stats));
	/* A ring step whose process died inside it is finished first. */
	tr__ring_settle(st);
	/* The process table: one probe per live entry. */
	for (uint32_t i = 0; i < TR_PROCS; i++) {
		struct tr_proc *p = &st->procs[i];
		uint32_t w = atomic_load_explicit(&p->p_word, memory_order_acquire);
		if (!(w & 1))
			continue;
		uint32_t tok = TR_PROC_TOKEN(i, (w >> 1) & TR_PROC_GEN_MASK);
		if (!tr__proc_alive(st, tok)) {
			/* The mark goes first: a reaper killed after the CAS
			 * still leaves the walk to the next one. */
			atomic_fetch_add_explicit(&h->h_reap_marks, 1, memory_order_seq_cst);
			if (atomic_compare_exchange_strong_explicit(&p->p_word, &w, w & ~1u, memory_order_acq_rel,
								    memory_order_relaxed)) {
				stats.procs_gone++;
				atomic_fetch_add_explicit(&h->h_reaped_procs, 1, memory_order_relaxed);
			}
			scan = 1;
			continue;
		}
		stats.procs_attached++;
		if (atomic_load_explicit(&p->p_lease_min, memory_order_relaxed) <= now)
			scan = 1;
	}
	uint64_t marks = atomic_load_explicit(&h->h_reap_marks, memory_order_seq_cst);
	int census = full || stats.procs_gone;
	if (marks != atomic_load_explicit(&h->h_reap_done, memory_order_relaxed))
		scan = census = 1;
	if (scan) {
		/* Each live entry's lease bound starts again from "none";
		 * claims made during the walk lower it themselves, and what
		 * the walk sees is folded in after it. */
		int64_t *mins = malloc(TR_PROCS * sizeof(int64_t));
		uint32_t *verdict = calloc(TR_PROCS, sizeof(uint32_t)); /* per entry: token | verdict */
		if (mins)
			for (uint32_t i = 0; i < TR_PROCS; i++) {
				mins[i] = INT64_MAX;
				/* Only live entries have jobs to bound (a new one
				 * starts at INT64_MAX): no store to the others. */
				if (atomic_load_explicit(&st->procs[i].p_word, memory_order_relaxed) & 1)
					atomic_store_explicit(&st->procs[i].p_lease_min, INT64_MAX,
							      memory_order_seq_cst);
			}
		atomic_fetch_add_explicit(&h->h_reap_scans, 1, memory_order_relaxed);
		for (uint32_t i = 0; i < st->nslots; i++) {
			struct tr_slot *s = &st->slots[i];
			uint32_t state = atomic_load_explicit(&s->s_state, memory_order_acquire);
			uint32_t status = TR_STATUS(state);
			if (TR_TERMINAL(status) || status == TR_ST_FREE) {
				/* (Free too: a purged pending job, freed in
				 * place by a closer that died before the push.) */
				finish_ended(st, i, verdict, &stats);
				give_back_held(st, i, state, verdict, &stats);
				continue;
			}
			if (status == TASKRING_PENDING) {
				/* Found ready by a resolver that died before
				 * linking it (linking twice is harmless). */
				uint8_t loc = TR_GET(s->s_loc);
				if (loc == TR_LOC_READYING)
					tr__deps_link_readying(st, i, atomic_load_explicit(&s->s_gen,
											memory_order_acquire));
				else if (loc == TR_LOC_NONE)
					link_unlinked(st, i, state, verdict, &stats);
				continue;
			}
			if (status != TASKRING_RUNNING)
				continue;
			uint32_t owner = atomic_load_explicit(&s->s_owner, memory_order_acquire);
			int64_t lease = atomic_load_explicit(&s->s_lease, memory_order_relaxed);
			uint32_t tok = TR_OWNER_TOKEN(owner);
			int dead = tok && !alive_cached(st, tok, verdict);
			/* A prefork child's death is its live supervisor's to
			 * report (it knows the signal, or that it killed it). */
			uint32_t sup = dead && !(owner & TR_OWNER_CLOSER)
					       ? atomic_load_explicit(&st->procs[TR_PROC_IDX(tok)].p_supervised,
								      memory_order_acquire)
					       : 0;
			if (sup && TR_OWNER_TOKEN(sup) && alive_cached(st, TR_OWNER_TOKEN(sup), verdict))
				continue;
			/* An attempt being closed is taken over only from a
			 * dead closer; otherwise a dead owner or a lease
			 * that ran out. */
			if (!dead && ((owner & TR_OWNER_CLOSER) || lease > now)) {
				if (tok && mins && lease < mins[TR_PROC_IDX(tok)] && !(owner & TR_OWNER_CLOSER))
					mins[TR_PROC_IDX(tok)] = lease;
				continue;
			}
			if (reap_one(st, i, state, owner, dead, now, me)) {
				if (dead)
					stats.owner_died++;
				else
					stats.lease_expired++;
			} else if (tok && mins && lease < mins[TR_PROC_IDX(tok)]) {
				mins[TR_PROC_IDX(tok)] = lease; /* look again next time */
			}
		}
		if (mins)
			for (uint32_t i = 0; i < TR_PROCS; i++)
				if (mins[i] != INT64_MAX)
					lease_min_at(st, i, mins[i]);
		free(mins);
		/* After a death: the arena blocks the dead had taken and not
		 * attached (arena.c). */
		if (census) {
			stats.blocks_freed = (uint32_t)tr__arena_census(st, census_dead, verdict);
			atomic_fetch_add_explicit(&h->h_reaped_blocks, stats.blocks_freed, memory_order_relaxed);
		}
		free(verdict);
		/* Everything marked before the walk is covered. */
		uint64_t done = atomic_load_explicit(&h->h_reap_done, memory_order_relaxed);
		while (done < marks && !atomic_compare_exchange_weak_explicit(&h->h_reap_done, &done, marks,
									       memory_order_seq_cst, memory_order_relaxed))
			;
	}
	if (out)
		*out = stats;
	return (int)(stats.owner_died + stats.lease_expired);
}

int taskring_store_reap(struct taskring_store *st, struct taskring_reap_stats *out)
{
	if (!st)
		return -EINVAL;
	return tr__reap(st, 1, out);
}
