/*
 * floors.c - the machine's own limits, measured the way taskring would meet
 * them: two processes (fork()), a MAP_SHARED|MAP_ANONYMOUS mapping, and
 * shared futexes (no FUTEX_PRIVATE_FLAG, which would lose cross-process
 * wake-ups). taskring's figures (bench/core.c) are reported as ratios to
 * these, because absolute times on a shared VM drift from run to run.
 *
 * Scenarios, one JSON line each:
 *   floor.pingpong_spin   RTT of a ping-pong over a shared word; each side
 *                         spins ~20 us, then sleeps on the futex with a
 *                         waiter bit so the waker only calls FUTEX_WAKE when
 *                         someone really sleeps.
 *   floor.pingpong_futex  the same, never spinning: the floor of a blocking
 *                         cross-CPU wake-up in both directions.
 *   floor.pipe            RTT of one byte each way over two pipes.
 *   floor.unix            RTT of one byte each way over a UNIX stream socketpair.
 *   floor.ring            throughput of a bare bounded MPMC ring of u32
 *                         (Vyukov: a sequence number per cell), one producer
 *                         process, one consumer process, both spinning.
 *
 * The parent runs on one CPU and the child on another (common.h, BENCH_PIN).
 * Exit status: 0, or 1 when a scenario failed (its JSON line has "error").
 */
#include <stdbool.h>
#include <sys/socket.h>

#include "common.h"

/* ------------------------------------------------------------------------ */
/* Ping-pong over shared words                                               */
/* ------------------------------------------------------------------------ */

/*
 * A channel word holds (sequence << 1) | WAITER. The one reader of a word
 * sets WAITER (by CAS, so it cannot miss a change made meanwhile) before
 * FUTEX_WAIT; the writer publishes with an exchange and calls FUTEX_WAKE only
 * when the old value had WAITER. So a hand-off to a spinning reader makes no
 * system call at all, and one to a sleeper makes exactly one.
 */
#define PP_WAITER 1u
#define PP_STOP 0x7fffffffu /* sequence that tells the echo side to leave */

struct pingpong {
	_Alignas(BENCH_LINE) uint32_t ping; /* parent -> child */
	_Alignas(BENCH_LINE) uint32_t pong; /* child -> parent */
	_Alignas(BENCH_LINE) uint32_t ready;
};

static void pp_signal(uint32_t *word, uint32_t seq)
{
	/* The exchange is a full barrier: the new sequence is visible before we
	 * look at WAITER, pairing with the reader's CAS that sets WAITER before
	 * it re-reads the sequence (no lost wake-up). */
	uint32_t old = __atomic_exchange_n(word, seq << 1, __ATOMIC_SEQ_CST);
	if (old & PP_WAITER)
		bench_futex_wake(word, 1);
}

/* Waits until the sequence in @word differs from @old and returns it. */
static uint32_t pp_wait_change(uint32_t *word, uint32_t old, int64_t spin_ns)
{
	uint32_t v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
	if ((v >> 1) != old)
		return v >> 1;
	if (spin_ns > 0) {
		int64_t start = bench_now_ns();
		do {
			/* Read the clock only every 16 pauses: a pause is tens of
			 * cycles, the clock ~25 ns, and the budget is coarse. */
			for (int k = 0; k < 16; k++) {
				bench_cpu_relax();
				v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
				if ((v >> 1) != old)
					return v >> 1;
			}
		} while (bench_now_ns() - start < spin_ns);
	}
	for (;;) {
		v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
		if ((v >> 1) != old)
			return v >> 1;
		if (!(v & PP_WAITER)) {
			/* Announce the sleeper; fails (and we re-check) if the
			 * writer got in first. */
			if (!__atomic_compare_exchange_n(word, &v, v | PP_WAITER, false, __ATOMIC_SEQ_CST,
							 __ATOMIC_ACQUIRE))
				continue;
			v |= PP_WAITER;
		}
		/* EAGAIN (the word changed), EINTR and spurious wake-ups all
		 * loop back to the re-check. */
		bench_futex_wait(word, v, -1);
	}
}

static void floor_pingpong(const char *scenario, int64_t spin_ns, size_t max_iters, double cap_s)
{
	struct pingpong *pp = bench_shared_alloc(sizeof(*pp));
	size_t warm = max_iters / 20 < 100 ? 100 : max_iters / 20;
	uint64_t *samples = malloc(max_iters * sizeof(*samples));
	if (!samples) {
		bench_print_error(scenario, "out of memory");
		goto out_unmap;
	}
	pid_t pid = bench_fork();
	if (pid < 0) {
		bench_print_error(scenario, "fork failed");
		goto out_free;
	}
	if (pid == 0) {
		/* The echo side: answer every ping with the same sequence. */
		uint32_t last = 0;
		bench_flag_set(&pp->ready, 1);
		for (;;) {
			uint32_t s = pp_wait_change(&pp->ping, last, spin_ns);
			if (s == PP_STOP)
				_exit(0);
			pp_signal(&pp->pong, s);
			last = s;
		}
	}
	while (__atomic_load_n(&pp->ready, __ATOMIC_ACQUIRE) == 0)
		bench_futex_wait(&pp->ready, 0, 10000000);

	uint32_t seq = 0;
	size_t n = 0;
	int64_t cap = bench_cap_ns(cap_s), t_start = 0;
	for (size_t i = 0; i < warm + max_iters; i++) {
		if (i == warm)
			t_start = bench_now_ns();
		int64_t t0 = bench_now_ns();
		pp_signal(&pp->ping, ++seq);
		pp_wait_change(&pp->pong, seq - 1, spin_ns);
		int64_t t1 = bench_now_ns();
		if (i >= warm) {
			samples[n++] = (uint64_t)(t1 - t0);
			if ((n & 1023) == 0 && t1 - t_start > cap)
				break;
		}
	}
	pp_signal(&pp->ping, PP_STOP);
	int st = bench_reap(pid, 5000000000LL);
	if (st != 0)
		bench_print_error(scenario, "echo process ended with status %d", st);
	else
		bench_print_latency(scenario, samples, n, "\"spin_ns\":%lld,\"warmup\":%zu", (long long)spin_ns, warm);
out_free:
	free(samples);
out_unmap:
	munmap(pp, sizeof(*pp));
}

/* ------------------------------------------------------------------------ */
/* Ping-pong over file descriptors                                           */
/* ------------------------------------------------------------------------ */

/* Reads or writes exactly one byte, retrying on EINTR. */
static int fd_xfer(int fd, char *c, bool wr)
{
	for (;;) {
		ssize_t r = wr ? write(fd, c, 1) : read(fd, c, 1);
		if (r == 1)
			return 0;
		if (r < 0 && errno == EINTR)
			continue;
		return -1;
	}
}

/*
 * @to_child/@from_child: the parent's ends; @child_in/@child_out: the child's.
 * The parent sends 'p' per round trip and 'q' to stop.
 */
static void floor_fd_pingpong(const char *scenario, int to_child, int from_child, int child_in, int child_out,
			      size_t max_iters, double cap_s)
{
	size_t warm = max_iters / 20 < 100 ? 100 : max_iters / 20;
	uint64_t *samples = malloc(max_iters * sizeof(*samples));
	if (!samples) {
		bench_print_error(scenario, "out of memory");
		return;
	}
	pid_t pid = bench_fork();
	if (pid < 0) {
		bench_print_error(scenario, "fork failed");
		free(samples);
		return;
	}
	if (pid == 0) {
		char c;
		close(to_child);
		close(from_child);
		while (fd_xfer(child_in, &c, false) == 0 && c != 'q')
			if (fd_xfer(child_out, &c, true) < 0)
				_exit(1);
		_exit(0);
	}
	close(child_in);
	close(child_out);

	size_t n = 0;
	int64_t cap = bench_cap_ns(cap_s), t_start = 0;
	char c = 'p';
	int err = 0;
	for (size_t i = 0; i < warm + max_iters; i++) {
		if (i == warm)
			t_start = bench_now_ns();
		int64_t t0 = bench_now_ns();
		c = 'p';
		if (fd_xfer(to_child, &c, true) < 0 || fd_xfer(from_child, &c, false) < 0) {
			err = errno;
			break;
		}
		int64_t t1 = bench_now_ns();
		if (i >= warm) {
			samples[n++] = (uint64_t)(t1 - t0);
			if ((n & 1023) == 0 && t1 - t_start > cap)
				break;
		}
	}
	c = 'q';
	fd_xfer(to_child, &c, true);
	close(to_child);
	close(from_child);
	int st = bench_reap(pid, 5000000000LL);
	if (err)
		bench_print_error(scenario, "read/write: %s", strerror(err));
	else if (st != 0)
		bench_print_error(scenario, "echo process ended with status %d", st);
	else
		bench_print_latency(scenario, samples, n, "\"warmup\":%zu", warm);
	free(samples);
}

static void floor_pipe(size_t max_iters, double cap_s)
{
	int down[2], up[2];
	if (pipe(down) < 0 || pipe(up) < 0) {
		bench_print_error("floor.pipe", "pipe: %s", strerror(errno));
		return;
	}
	floor_fd_pingpong("floor.pipe", down[1], up[0], down[0], up[1], max_iters, cap_s);
}

static void floor_unix(size_t max_iters, double cap_s)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		bench_print_error("floor.unix", "socketpair: %s", strerror(errno));
		return;
	}
	/* One socket carries both directions; dup() gives each side the two
	 * descriptors the helper expects. */
	int a2 = dup(sv[0]), b2 = dup(sv[1]);
	if (a2 < 0 || b2 < 0) {
		bench_print_error("floor.unix", "dup: %s", strerror(errno));
		return;
	}
	floor_fd_pingpong("floor.unix", sv[0], a2, sv[1], b2, max_iters, cap_s);
}

/* ------------------------------------------------------------------------ */
/* Bare MPMC ring                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Dmitry Vyukov's bounded MPMC queue. Cell i starts with seq = i. A producer
 * at position pos may fill the cell when seq == pos, then publishes it with
 * seq = pos + 1; a consumer at pos may take it when seq == pos + 1 and hands
 * it back with seq = pos + capacity. Positions are claimed by CAS, so it is
 * multi-producer/multi-consumer even though one of each runs here: the floor
 * is what a general ring costs, not what an SPSC trick could reach.
 * Positions are u32 and compared by signed difference, which is exact while
 * the capacity is below 2^31.
 */
#define RING_CAP 65536u /* the size of a default store's slot table */
#define RING_STOP 0xffffffffu

struct ring_cell {
	uint32_t seq;
	uint32_t val;
};

struct ring {
	_Alignas(BENCH_LINE) uint32_t head; /* next enqueue position */
	_Alignas(BENCH_LINE) uint32_t tail; /* next dequeue position */
	_Alignas(BENCH_LINE) uint32_t ready;
	uint32_t bad;          /* consumer saw a value out of order */
	uint64_t consumed;     /* items the consumer took (RING_STOP excluded) */
	int64_t t_end;         /* when it took the last one */
	_Alignas(BENCH_LINE) struct ring_cell cells[RING_CAP];
};

static bool ring_push(struct ring *r, uint32_t v)
{
	uint32_t pos = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
	for (;;) {
		struct ring_cell *c = &r->cells[pos & (RING_CAP - 1)];
		/* Acquire: the consumer's reading of this cell is complete
		 * before we overwrite it. */
		uint32_t seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
		int32_t dif = (int32_t)(seq - pos);
		if (dif == 0) {
			if (__atomic_compare_exchange_n(&r->head, &pos, pos + 1, true, __ATOMIC_RELAXED,
							__ATOMIC_RELAXED)) {
				c->val = v;
				/* Release: the value is visible before the
				 * cell is marked full. */
				__atomic_store_n(&c->seq, pos + 1, __ATOMIC_RELEASE);
				return true;
			}
		} else if (dif < 0) {
			return false; /* full */
		} else {
			pos = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
		}
	}
}

static bool ring_pop(struct ring *r, uint32_t *v)
{
	uint32_t pos = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
	for (;;) {
		struct ring_cell *c = &r->cells[pos & (RING_CAP - 1)];
		/* Acquire: pairs with the producer's release of seq. */
		uint32_t seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
		int32_t dif = (int32_t)(seq - (pos + 1));
		if (dif == 0) {
			if (__atomic_compare_exchange_n(&r->tail, &pos, pos + 1, true, __ATOMIC_RELAXED,
							__ATOMIC_RELAXED)) {
				*v = c->val;
				/* Release: the value is read before the cell
				 * is handed back to producers. */
				__atomic_store_n(&c->seq, pos + RING_CAP, __ATOMIC_RELEASE);
				return true;
			}
		} else if (dif < 0) {
			return false; /* empty */
		} else {
			pos = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
		}
	}
}

static void floor_ring(size_t max_items, double cap_s)
{
	const char *scenario = "floor.ring";
	struct ring *r = bench_shared_alloc(sizeof(*r));
	for (uint32_t i = 0; i < RING_CAP; i++)
		r->cells[i].seq = i;
	pid_t pid = bench_fork();
	if (pid < 0) {
		bench_print_error(scenario, "fork failed");
		munmap(r, sizeof(*r));
		return;
	}
	if (pid == 0) {
		/* Consumer: values must arrive as 0, 1, 2, ... (one producer). */
		uint32_t v, expect = 0;
		bench_flag_set(&r->ready, 1);
		for (;;) {
			while (!ring_pop(r, &v))
				bench_cpu_relax();
			if (v == RING_STOP)
				break;
			if (v != expect)
				r->bad = 1;
			expect = v + 1;
		}
		r->t_end = bench_now_ns();
		r->consumed = expect;
		_exit(0);
	}
	while (__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE) == 0)
		bench_futex_wait(&r->ready, 0, 10000000);

	int64_t cap = bench_cap_ns(cap_s);
	int64_t t0 = bench_now_ns();
	uint32_t i;
	for (i = 0; i < max_items && i < RING_STOP; i++) {
		while (!ring_push(r, i))
			bench_cpu_relax();
		if ((i & 0xffff) == 0xffff && bench_now_ns() - t0 > cap) {
			i++;
			break;
		}
	}
	while (!ring_push(r, RING_STOP))
		bench_cpu_relax();
	int st = bench_reap(pid, 10000000000LL);
	if (st != 0)
		bench_print_error(scenario, "consumer ended with status %d", st);
	else if (r->bad || r->consumed != i)
		bench_print_error(scenario, "consumer saw %llu items (sent %u)%s", (unsigned long long)r->consumed, i,
				  r->bad ? ", out of order" : "");
	else
		bench_print_tput(scenario, i, r->t_end - t0, "\"capacity\":%u", RING_CAP);
	munmap(r, sizeof(*r));
}

int main(void)
{
	bench_init();
	if (bench_want("floor.pingpong_spin"))
		floor_pingpong("floor.pingpong_spin", 20000, bench_iters(2000000, 1000), 2.5);
	if (bench_want("floor.pingpong_futex"))
		floor_pingpong("floor.pingpong_futex", 0, bench_iters(80000, 200), 2.5);
	if (bench_want("floor.pipe"))
		floor_pipe(bench_iters(80000, 200), 2.0);
	if (bench_want("floor.unix"))
		floor_unix(bench_iters(80000, 200), 2.0);
	if (bench_want("floor.ring"))
		floor_ring(bench_iters(120000000, 100000), 3.0);
	return bench_failures ? 1 : 0;
}
