/*
 * test_deps.c - dependencies between jobs: a job runs only after all of its
 * dependencies completed; a dependency that fails, dies or is cancelled
 * cancels every transitive dependent ("dependency failed"), at every depth
 * of a chain, across processes; bad dependencies are refused and change
 * nothing; cycles cannot be made; registration racing with completion never
 * loses a dependent; a process dying with the deps lock held is repaired.
 */
#include <sys/mman.h>

#include "internal.h"
#include "testutil.h"

#define T(fn) cmocka_unit_test_setup_teardown(fn, tu_fx_setup, tu_fx_teardown)

/* What the "work" handler does with a job: by its payload. */
enum { WM_OK, WM_FAIL, WM_DEAD, WM_RETRY_ONCE };
struct work {
	int mode;
	int id;
};

/* Order in which jobs ran (ids), for the in-process tests. */
static _Atomic int ran_n;
static int ran[4096];

static int work(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const struct work *w = taskring_ctx_payload(ctx, &len);
	(void)arg;
	if (len != sizeof(*w))
		return TASKRING_FAIL;
	if (w->mode == WM_FAIL)
		return TASKRING_FAIL;
	if (w->mode == WM_DEAD || (w->mode == WM_RETRY_ONCE && taskring_ctx_attempt(ctx) == 0))
		return TASKRING_RETRY;
	int k = atomic_fetch_add(&ran_n, 1);
	if (k < 4096)
		ran[k] = w->id;
	return TASKRING_OK;
}

static struct taskring_store *open_store(struct tu_fx *f, uint32_t slots)
{
	struct taskring_store *st = f->st = tu_open_small(f->name, slots);
	assert_rc(taskring_task_declare(st, "work"), 0);
	atomic_store(&ran_n, 0);
	return st;
}

/* A worker (not started) serving "work"; run jobs with run_one. */
static struct taskring_worker *manual_worker(struct tu_fx *f)
{
	f->w = tu_worker(f->st, NULL, 0, 1);
	assert_rc(taskring_worker_register(f->w, "work", work, NULL), 0);
	return f->w;
}

static struct taskring_enqueue_opts deps_opts(const struct taskring_job *deps, uint32_t n)
{
	struct taskring_enqueue_opts o = tu_eopts();
	o.depends_on = deps;
	o.n_depends_on = n;
	o.max_retries = 0;
	o.backoff_base_ns = 0;
	return o;
}

static void enq(struct taskring_store *st, int id, int mode, const struct taskring_job *deps, uint32_t n,
		struct taskring_job *out)
{
	struct work w = {mode, id};
	struct taskring_enqueue_opts o = deps_opts(deps, n);
	if (mode == WM_RETRY_ONCE)
		o.max_retries = 1;
	assert_rc(taskring_enqueue(st, "work", &w, sizeof(w), &o, out), 0);
}

static void same_id(const struct taskring_job *a, const struct taskring_job *b)
{
	char x[TASKRING_ID_LEN + 1], y[TASKRING_ID_LEN + 1];
	assert_rc(taskring_job_id(a, x), 0);
	assert_rc(taskring_job_id(b, y), 0);
	assert_string_equal(x, y);
}

static void assert_dep_failed(const struct taskring_job *j)
{
	char err[256];
	assert_rc(taskring_job_status(j), TASKRING_CANCELLED);
	assert_true(taskring_job_error(j, err, sizeof(err)) > 0);
	assert_string_equal(err, "dependency failed");
	assert_rc(taskring_job_result(j, 0, NULL, 0, NULL), -ECANCELED);
}

static void test_waits_then_runs(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 64);
	struct taskring_worker *w = manual_worker(f);
	struct taskring_job a, b, c, list[4];
	struct taskring_job_info info;

	enq(st, 1, WM_OK, NULL, 0, &a);
	enq(st, 2, WM_OK, &a, 1, &b);
	enq(st, 3, WM_OK, NULL, 0, &c);
	assert_rc(taskring_job_info(&b, &info), 0);
	assert_int_equal(info.status, TASKRING_PENDING);
	assert_int_equal(info.dependencies, 1);
	assert_int_equal(info.dependencies_left, 1);
	assert_rc(taskring_job_info(&a, &info), 0);
	assert_int_equal(info.dependents, 1);
	assert_rc(taskring_job_dependencies(&b, list, 4), 1);
	same_id(&list[0], &a);
	assert_rc(taskring_job_dependents(&a, list, 4), 1);
	same_id(&list[0], &b);
	assert_rc(taskring_job_dependents(&a, NULL, 0), 1);
	assert_rc(taskring_job_dependencies(&a, list, 4), 0);
	assert_rc(taskring_job_dependents(&b, list, 4), 0);
	assert_rc(taskring_job_dependencies(&b, NULL, 1), -EINVAL);

	/* JSON lists both directions by id. */
	char json[4096], ida[40], idb[40], want[128];
	taskring_job_id(&a, ida);
	taskring_job_id(&b, idb);
	assert_true(taskring_job_to_json(&b, json, sizeof(json)) > 0);
	snprintf(want, sizeof(want), "\"dependencies\":[\"%s\"],\"dependents\":[]", ida);
	assert_non_null(strstr(json, want));
	assert_true(taskring_job_to_json(&a, json, sizeof(json)) > 0);
	snprintf(want, sizeof(want), "\"dependencies\":[],\"dependents\":[\"%s\"]", idb);
	assert_non_null(strstr(json, want));

	/* b was enqueued before c but waits: a, then c, then b. */
	assert_rc(taskring_worker_run_one(w, 0), 1);
	assert_rc(taskring_worker_run_one(w, 0), 1);
	assert_rc(taskring_worker_run_one(w, 0), 1);
	assert_rc(taskring_worker_run_one(w, 0), 0);
	assert_int_equal(atomic_load(&ran_n), 3);
	assert_int_equal(ran[0], 1);
	assert_int_equal(ran[1], 3);
	assert_int_equal(ran[2], 2);
	assert_rc(taskring_job_info(&b, &info), 0);
	assert_int_equal(info.status, TASKRING_COMPLETE);
	assert_int_equal(info.dependencies_left, 0);

	/* A dependency that already completed counts as met; the new job did
	 * not wait for it, so it is not listed among a's dependents. */
	struct taskring_job d;
	enq(st, 4, WM_OK, &a, 1, &d);
	assert_rc(taskring_job_info(&d, &info), 0);
	assert_int_equal(info.dependencies_left, 0);
	assert_rc(taskring_job_dependents(&a, list, 4), 1);
	assert_rc(taskring_worker_run_one(w, 0), 1);
	assert_rc(taskring_job_status(&d), TASKRING_COMPLETE);

	/* A retried dependency keeps its dependents waiting until it
	 * completes. */
	struct taskring_job r, e;
	enq(st, 5, WM_RETRY_ONCE, NULL, 0, &r);
	enq(st, 6, WM_OK, &r, 1, &e);
	assert_rc(taskring_worker_run_one(w, 0), 1); /* r fails once */
	assert_rc(taskring_job_status(&r), TASKRING_PENDING);
	assert_rc(taskring_job_status(&e), TASKRING_PENDING);
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1); /* r completes */
	assert_rc(taskring_worker_run_one(w, 0), 1);       /* then e */
	assert_rc(taskring_job_status(&e), TASKRING_COMPLETE);
}

/* A diamond (a; b, c on a; d on b and c), made in one batch with
 * depends_on_items, run by a worker thread; then the same with b failing. */
static void diamond(struct tu_fx *f, int b_mode)
{
	struct taskring_store *st = f->st;
	struct work w[4] = {{WM_OK, 1}, {b_mode, 2}, {WM_OK, 3}, {WM_OK, 4}};
	static const uint32_t on_a[] = {0}, on_bc[] = {1, 2};
	struct taskring_enqueue_opts o = deps_opts(NULL, 0);
	struct taskring_enqueue_item items[4] = {
		{.task = "work", .payload = &w[0], .len = sizeof(w[0])},
		{.task = "work", .payload = &w[1], .len = sizeof(w[1]), .depends_on_items = on_a, .n_depends_on_items = 1},
		{.task = "work", .payload = &w[2], .len = sizeof(w[2]), .depends_on_items = on_a, .n_depends_on_items = 1},
		{.task = "work", .payload = &w[3], .len = sizeof(w[3]), .depends_on_items = on_bc, .n_depends_on_items = 2},
	};
	struct taskring_job j[4], list[4];
	struct taskring_job_info in[4];

	atomic_store(&ran_n, 0);
	assert_rc(taskring_enqueue_batch(st, items, 4, &o, j), 0);
	assert_rc(taskring_job_dependencies(&j[3], list, 4), 2);
	same_id(&list[0], &j[1]);
	same_id(&list[1], &j[2]);
	assert_rc(taskring_job_dependents(&j[0], list, 4), 2);
	same_id(&list[0], &j[1]);
	same_id(&list[1], &j[2]);
	int want_d = b_mode == WM_OK ? TASKRING_COMPLETE : TASKRING_CANCELLED;
	assert_rc(taskring_job_wait(&j[3], 10 * SEC), want_d);
	assert_rc(taskring_job_wait(&j[2], 10 * SEC), TASKRING_COMPLETE);
	for (int i = 0; i < 4; i++)
		assert_rc(taskring_job_info(&j[i], &in[i]), 0);
	assert_true(in[1].started_at_ns >= in[0].completed_at_ns);
	assert_true(in[2].started_at_ns >= in[0].completed_at_ns);
	if (b_mode == WM_OK) {
		assert_true(in[3].started_at_ns >= in[1].completed_at_ns);
		assert_true(in[3].started_at_ns >= in[2].completed_at_ns);
		assert_int_equal(atomic_load(&ran_n), 4);
		assert_int_equal(ran[0], 1);
		assert_int_equal(ran[3], 4);
	} else {
		assert_rc(taskring_job_status(&j[1]), TASKRING_FAILED);
		assert_dep_failed(&j[3]);
		assert_int_equal(in[3].started_at_ns, 0);
	}
}

static void test_diamond(void **state)
{
	struct tu_fx *f = *state;
	open_store(f, 64);
	f->w = tu_worker(f->st, NULL, 0, 2);
	assert_rc(taskring_worker_register(f->w, "work", work, NULL), 0);
	assert_rc(taskring_worker_start(f->w), 0);
	diamond(f, WM_OK);
	diamond(f, WM_FAIL);
}

/*
 * A chain j0 <- j1 <- ... <- j(L-1): for every depth k, the jobs before k
 * complete, job k ends failed, dead or cancelled (in turn), and every job
 * after it is cancelled with "dependency failed" at once, by the one call
 * that ended job k.
 */
#define CHAIN 60
static void test_chain_cascade_every_depth(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 256);
	struct taskring_worker *w = manual_worker(f);
	struct taskring_job j[CHAIN];

	for (int k = 0; k < CHAIN; k++) {
		int how = k % 3; /* 0 cancel, 1 failed, 2 dead */
		for (int i = 0; i < CHAIN; i++) {
			int mode = i != k ? WM_OK : how == 1 ? WM_FAIL : how == 2 ? WM_DEAD : WM_OK;
			enq(st, i, mode, i ? &j[i - 1] : NULL, i ? 1 : 0, &j[i]);
		}
		for (int i = 0; i < k; i++)
			assert_rc(taskring_worker_run_one(w, 0), 1);
		if (how == 0)
			assert_rc(taskring_job_cancel(&j[k]), 0);
		else
			assert_rc(taskring_worker_run_one(w, 0), 1);
		/* Nothing left to run, and everything ended already. */
		assert_rc(taskring_worker_run_one(w, 0), 0);
		for (int i = 0; i < k; i++)
			assert_rc(taskring_job_status(&j[i]), TASKRING_COMPLETE);
		static const int ended[] = {TASKRING_CANCELLED, TASKRING_FAILED, TASKRING_DEAD};
		assert_rc(taskring_job_status(&j[k]), ended[how]);
		for (int i = k + 1; i < CHAIN; i++)
			assert_dep_failed(&j[i]);
		struct taskring_queue_stats qs;
		assert_rc(taskring_queue_stats(st, NULL, &qs), 0);
		assert_int_equal(qs.by_status[TASKRING_PENDING], 0);
	}
}

/* Every refusal of test_bad_dependencies(), on jobs made there. */
static void refusals(struct taskring_store *st, const struct taskring_job *pend, const struct taskring_job *failed,
		     const struct taskring_job *dead, const struct taskring_job *cancelled)
{
	struct taskring_enqueue_opts o;
	struct taskring_job forged = *pend, other;
	forged.uuid[15] ^= 1;
	const struct taskring_job *bad[] = {failed, dead, cancelled, &forged};
	const int want[] = {TASKRING_EDEPFAILED, TASKRING_EDEPFAILED, TASKRING_EDEPFAILED, -ENOENT};
	for (size_t i = 0; i < 4; i++) {
		/* The bad one after a good one, which gets flagged first. */
		struct taskring_job two[2] = {*pend, *bad[i]};
		o = deps_opts(two, 2);
		struct taskring_job out = {0};
		assert_rc(taskring_enqueue(st, "work", NULL, 0, &o, &out), want[i]);
		assert_null(out.store);
	}
	/* A handle of another store, NULL with a count, a count without one,
	 * too many. */
	struct taskring_store *st2 = tu_open_small(NULL, 16);
	assert_rc(taskring_task_declare(st2, "work"), 0);
	assert_rc(taskring_enqueue(st2, "work", NULL, 0, NULL, &other), 0);
	o = deps_opts(&other, 1);
	assert_rc(taskring_enqueue(st, "work", NULL, 0, &o, NULL), -EINVAL);
	o = deps_opts(NULL, 1);
	assert_rc(taskring_enqueue(st, "work", NULL, 0, &o, NULL), -EINVAL);
	o = deps_opts(pend, 0);
	assert_rc(taskring_enqueue(st, "work", NULL, 0, &o, NULL), -EINVAL);
	o = deps_opts(pend, TASKRING_DEPENDS_MAX + 1);
	assert_rc(taskring_enqueue(st, "work", NULL, 0, &o, NULL), -EINVAL);
	taskring_store_close(st2);

	/* Batch: an item may name only earlier items, and none with a key. */
	static const uint32_t self[] = {1}, later[] = {2}, first[] = {0};
	struct taskring_enqueue_opts keyed = tu_eopts();
	keyed.unique_key = "k";
	struct taskring_enqueue_item items[3] = {
		{.task = "work"}, {.task = "work"}, {.task = "work"},
	};
	items[1].depends_on_items = self;
	items[1].n_depends_on_items = 1;
	assert_rc(taskring_enqueue_batch(st, items, 3, NULL, NULL), -EINVAL);
	items[1].depends_on_items = later;
	assert_rc(taskring_enqueue_batch(st, items, 3, NULL, NULL), -EINVAL);
	items[1].depends_on_items = first;
	items[0].opts = &keyed;
	assert_rc(taskring_enqueue_batch(st, items, 3, NULL, NULL), -EINVAL);
	items[0].opts = NULL;
	items[1].n_depends_on_items = 0;
	assert_rc(taskring_enqueue_batch(st, items, 3, NULL, NULL), -EINVAL);
	/* One bad dependency fails the whole batch, whose other items have
	 * good ones (on the batch and on pend). */
	items[1].n_depends_on_items = 1;
	struct taskring_enqueue_opts good = deps_opts(pend, 1), bad_opts = deps_opts(failed, 1);
	items[0].opts = &good;
	items[2].opts = &bad_opts;
	assert_rc(taskring_enqueue_batch(st, items, 3, NULL, NULL), TASKRING_EDEPFAILED);
}

/* Refused: unknown, gone, failed, dead, cancelled, other store, bad
 * arguments; a refused enqueue changes nothing. */
static void test_bad_dependencies(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 64);
	struct taskring_worker *w = manual_worker(f);
	struct taskring_job ok, failed, dead, cancelled, pend;

	enq(st, 1, WM_OK, NULL, 0, &ok);
	enq(st, 2, WM_FAIL, NULL, 0, &failed);
	enq(st, 3, WM_DEAD, NULL, 0, &dead);
	enq(st, 4, WM_OK, NULL, 0, &cancelled);
	assert_rc(taskring_job_cancel(&cancelled), 0);
	for (int i = 0; i < 3; i++)
		assert_rc(taskring_worker_run_one(w, 0), 1);
	enq(st, 5, WM_OK, NULL, 0, &pend);

	/* Once to carve the blocks the refusals take and give back; then the
	 * arena's high-water mark must not move either. */
	refusals(st, &pend, &failed, &dead, &cancelled);
	struct taskring_queue_stats s0, s1;
	struct taskring_store_info i0, i1;
	assert_rc(taskring_queue_stats(st, NULL, &s0), 0);
	assert_rc(taskring_store_info(st, &i0), 0);
	refusals(st, &pend, &failed, &dead, &cancelled);
	assert_rc(taskring_queue_stats(st, NULL, &s1), 0);
	assert_rc(taskring_store_info(st, &i1), 0);
	tu_assert_stats_same(&s0, &s1);
	assert_int_equal(i0.arena_used, i1.arena_used);
	assert_int_equal(s1.by_status[TASKRING_PENDING], 1);
	assert_rc(taskring_job_dependents(&pend, NULL, 0), 0);
	/* The flag those refusals left on pend is harmless: it still runs,
	 * and ends with nobody to resolve. */
	assert_rc(taskring_worker_run_one(w, 0), 1);
	assert_rc(taskring_job_status(&pend), TASKRING_COMPLETE);
}

/*
 * No cycle can be made: a job can only name jobs that exist when it is
 * enqueued (a handle for a job not made yet is refused), and a batch item
 * only earlier items. A random DAG of 300 jobs runs every job after all of
 * its dependencies.
 */
#define DAG 300
static void test_no_cycles(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 1024);
	struct taskring_job j[DAG], future;

	/* The slot the next job will take, with the generation it will have:
	 * not a job yet, so refused. */
	enq(st, 0, WM_OK, NULL, 0, &j[0]);
	future = j[0];
	future.slot = j[0].slot + 1;
	assert_rc(taskring_enqueue(st, "work", NULL, 0, &(struct taskring_enqueue_opts){0}, NULL), TASKRING_EOPTS);
	struct taskring_enqueue_opts o = deps_opts(&future, 1);
	assert_rc(taskring_enqueue(st, "work", NULL, 0, &o, NULL), -ENOENT);

	uint32_t seed = 12345;
	int ndeps[DAG] = {0}, dep[DAG][4];
	for (int i = 1; i < DAG; i++) {
		struct taskring_job d[4];
		ndeps[i] = i < 4 ? i : 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 4;
		for (int k = 0; k < ndeps[i]; k++) {
			dep[i][k] = (int)((seed = seed * 1103515245u + 12345u) >> 16) % i;
			d[k] = j[dep[i][k]];
		}
		enq(st, i, WM_OK, d, (uint32_t)ndeps[i], &j[i]);
	}
	f->w = tu_worker(st, NULL, 0, 2);
	assert_rc(taskring_worker_register(f->w, "work", work, NULL), 0);
	assert_rc(taskring_worker_start(f->w), 0);
	assert_rc(taskring_job_wait_all(j, DAG, 30 * SEC), 0);
	for (int i = 0; i < DAG; i++) {
		struct taskring_job_info a, b;
		assert_rc(taskring_job_info(&j[i], &a), 0);
		assert_int_equal(a.status, TASKRING_COMPLETE);
		assert_int_equal(a.dependencies, ndeps[i]);
		for (int k = 0; k < ndeps[i]; k++) {
			assert_rc(taskring_job_info(&j[dep[i][k]], &b), 0);
			assert_true(a.started_at_ns >= b.completed_at_ns);
		}
	}
}

/* Fan-in of 1,000 into one job (one batch) and fan-out of one job to 500
 * dependents enqueued one by one (the list grows over many blocks). */
static void test_fan_in_fan_out(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 2048);
	enum { IN = 1000, OUT = 500 };
	struct taskring_enqueue_item *items = calloc(IN + 1, sizeof(*items));
	uint32_t *all = calloc(IN, sizeof(uint32_t));
	struct taskring_job *j = calloc(IN + 1, sizeof(*j)), *list = calloc(IN + 1, sizeof(*j));
	assert_non_null(items);
	assert_non_null(all);
	assert_non_null(j);
	assert_non_null(list);
	static struct work w = {WM_OK, 0};
	for (int i = 0; i <= IN; i++) {
		items[i].task = "work";
		items[i].payload = &w;
		items[i].len = sizeof(w);
	}
	for (uint32_t i = 0; i < IN; i++)
		all[i] = i;
	items[IN].depends_on_items = all;
	items[IN].n_depends_on_items = IN;
	assert_rc(taskring_enqueue_batch(st, items, IN + 1, NULL, j), 0);
	assert_rc(taskring_job_dependencies(&j[IN], list, IN + 1), IN);
	for (int i = 0; i < IN; i++) {
		same_id(&list[i], &j[i]);
		assert_rc(taskring_job_dependents(&j[i], list + IN, 1), 1);
		same_id(&list[IN], &j[IN]);
	}
	struct taskring_job root;
	enq(st, -1, WM_OK, NULL, 0, &root);
	for (int i = 0; i < OUT; i++)
		enq(st, i, WM_OK, &root, 1, &list[i]);
	struct taskring_job *got = calloc(OUT, sizeof(*got));
	assert_non_null(got);
	assert_rc(taskring_job_dependents(&root, got, OUT), OUT);
	for (int i = 0; i < OUT; i++)
		same_id(&got[i], &list[i]);
	f->w = tu_worker(st, NULL, 0, 2);
	assert_rc(taskring_worker_register(f->w, "work", work, NULL), 0);
	assert_rc(taskring_worker_start(f->w), 0);
	assert_rc(taskring_job_wait(&j[IN], 30 * SEC), TASKRING_COMPLETE);
	assert_rc(taskring_job_wait_all(list, OUT, 30 * SEC), 0);
	for (int i = 0; i < OUT; i++)
		assert_rc(taskring_job_status(&list[i]), TASKRING_COMPLETE);
	free(items);
	free(all);
	free(j);
	free(list);
	free(got);
}

/*
 * Registration races completion: a dependent is enqueued on a job that a
 * worker thread is claiming, running or ending at that very moment. The
 * dependent must always run (or be cancelled when the dependency fails,
 * or be refused when it had already failed); never be left waiting.
 */
static void test_registration_races_completion(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 256);
	int rounds = tu_sanitized() ? 300 : 3000;

	f->w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(f->w, "work", work, NULL), 0);
	assert_rc(taskring_worker_start(f->w), 0);
	for (int i = 0; i < rounds; i++) {
		int fail = i % 4 == 3;
		struct taskring_job p, d;
		struct work wp = {fail ? WM_FAIL : WM_OK, i}, wd = {WM_OK, i};
		struct taskring_enqueue_opts o = deps_opts(NULL, 0);
		assert_rc(taskring_enqueue(st, "work", &wp, sizeof(wp), &o, &p), 0);
		for (int spin = 0; spin < (i % 7) * 40; spin++)
			tr__cpu_relax();
		o = deps_opts(&p, 1);
		int rc = taskring_enqueue(st, "work", &wd, sizeof(wd), &o, &d);
		if (fail && rc == TASKRING_EDEPFAILED)
			continue;
		assert_rc(rc, 0);
		assert_rc(taskring_job_wait(&d, 10 * SEC), fail ? TASKRING_CANCELLED : TASKRING_COMPLETE);
	}
}

/* Purge and expiry end dependencies too: dependents are cancelled. */
static void test_purge_and_expiry(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 64);
	struct taskring_worker *w = manual_worker(f);
	struct taskring_job a, b, c, e, x;
	uint64_t n = 0;

	/* a (ready) <- b (waiting) <- c (waiting), and e on a: purging the
	 * queue removes b and c, and cancels a (it has dependents) and so e.
	 * The other queue's e is cancelled, not purged. */
	enq(st, 1, WM_OK, NULL, 0, &a);
	enq(st, 2, WM_OK, &a, 1, &b);
	enq(st, 3, WM_OK, &b, 1, &c);
	struct taskring_enqueue_opts o = deps_opts(&a, 1);
	o.queue = "other";
	assert_rc(taskring_enqueue(st, "work", NULL, 0, &o, &e), 0);
	assert_rc(taskring_queue_purge(st, "default", &n), 0);
	assert_int_equal(n, 3);
	assert_rc(taskring_job_status(&a), TASKRING_CANCELLED);
	assert_true(taskring_job_status(&b) == -ENOENT || taskring_job_status(&b) == TASKRING_CANCELLED);
	assert_dep_failed(&e);
	assert_rc(taskring_worker_run_one(w, 0), 0);

	/* An expired dependency cancels its dependents when a worker would
	 * have claimed it. */
	o = deps_opts(NULL, 0);
	o.expires_ns = 1 * MS;
	assert_rc(taskring_enqueue(st, "work", NULL, 0, &o, &x), 0);
	enq(st, 4, WM_OK, &x, 1, &b);
	enq(st, 5, WM_OK, &b, 1, &c);
	tu_sleep_ms(5);
	assert_rc(taskring_worker_run_one(w, 0), 0);
	char err[64];
	assert_rc(taskring_job_status(&x), TASKRING_CANCELLED);
	assert_true(taskring_job_error(&x, err, sizeof(err)) > 0);
	assert_string_equal(err, "expired before execution");
	assert_dep_failed(&b);
	assert_dep_failed(&c);
}

/*
 * Across processes: a child producer makes the root, the parent makes a
 * chain on it (looked up by id), a child worker runs them; the parent's
 * result waiter is woken by the cascade when the root fails.
 */
struct xp {
	char name[64];
	char id[TASKRING_ID_LEN + 1];
	int mode;
	_Atomic int made;
};

static int xp_producer(void *arg, int ctl, int ack)
{
	struct xp *x = arg;
	struct taskring_store *st = tu_kid_open(x->name);
	struct taskring_job j;
	struct work w = {x->mode, 100};
	struct taskring_enqueue_opts o = deps_opts(NULL, 0);
	struct tu_wspec ws = {.threads = 1};
	(void)ctl;
	(void)ack;
	o.delay_ns = 200 * MS; /* the parent's chain registers on it pending */
	CK_RC(taskring_enqueue(st, "work", &w, sizeof(w), &o, &j), 0);
	CK_RC(taskring_job_id(&j, x->id), 0);
	atomic_store(&x->made, 1);
	tu_wspec_task(&ws, "work", work);
	struct taskring_worker *wk = tu_kid_worker_start(st, &ws, NULL);
	tu_wait_eof(ctl);
	tu_kid_worker_end(st, wk, 5 * SEC);
	return 0;
}

static void test_across_processes(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 64);
	struct xp *x = mmap(NULL, sizeof(*x), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(x != MAP_FAILED);

	tu_kids_init(60, 2);
	for (int mode = 0; mode < 2; mode++) {
		memset(x, 0, sizeof(*x));
		snprintf(x->name, sizeof(x->name), "%s", f->name);
		x->mode = mode ? WM_DEAD : WM_OK;
		pid_t kid = tu_spawn(xp_producer, x);
		assert_int_equal(tu_wait_int(&x->made, 1, 10000), 1);
		struct taskring_job chain[4];
		assert_rc(taskring_job_lookup(st, x->id, &chain[0]), 0);
		for (int i = 1; i < 4; i++)
			enq(st, i, WM_OK, &chain[i - 1], 1, &chain[i]);
		assert_rc(taskring_job_wait(&chain[3], 20 * SEC), mode ? TASKRING_CANCELLED : TASKRING_COMPLETE);
		assert_rc(taskring_job_status(&chain[0]), mode ? TASKRING_DEAD : TASKRING_COMPLETE);
		for (int i = 1; i < 4; i++) {
			if (mode)
				assert_dep_failed(&chain[i]);
			else
				assert_rc(taskring_job_status(&chain[i]), TASKRING_COMPLETE);
		}
		assert_int_equal(tu_kid_join(kid, 20000), 0);
	}
	munmap(x, sizeof(*x));
}

/*
 * A process dies holding the deps lock, after it miscounted a waiting job
 * (as a crash between a mark and its count would leave it): the next locker
 * repairs the counts from the marks, and the job runs once its dependency
 * completes.
 */
static void test_dead_lock_holder(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = open_store(f, 64);
	struct taskring_worker *w = manual_worker(f);
	struct taskring_job a, b;

	enq(st, 1, WM_OK, NULL, 0, &a);
	enq(st, 2, WM_OK, &a, 1, &b);
	pid_t pid = fork();
	if (pid == 0) {
		struct taskring_store *c;
		if (taskring_store_open(f->name, NULL, &c) || tr__lock(&c->hdr->h_deps_lock, c, TR_LOCK_DEPS))
			_exit(1);
		TR_SET(c->slots[b.slot].s_deps_left, 7);
		_exit(0);
	}
	assert_int_equal(tu_wait_child(pid), 0);
	assert_rc(taskring_worker_run_one(w, 0), 1); /* a; b's count repaired */
	assert_rc(taskring_worker_run_one(w, 0), 1);
	assert_rc(taskring_job_status(&b), TASKRING_COMPLETE);
}

int main(void)
{
	tu_alarm(300);
	tu_test_filters();
	const struct CMUnitTest tests[] = {
		T(test_waits_then_runs),
		T(test_diamond),
		T(test_chain_cascade_every_depth),
		T(test_bad_dependencies),
		T(test_no_cycles),
		T(test_fan_in_fan_out),
		T(test_registration_races_completion),
		T(test_purge_and_expiry),
		T(test_across_processes),
		T(test_dead_lock_holder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
