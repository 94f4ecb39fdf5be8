/*
 * test_job.c - the job lifecycle, single process.
 *
 * Most tests drive a worker with taskring_worker_run_one() from the test
 * thread, so every step is deterministic; some start worker threads. Every
 * test gets its own store (fixture), closed and unlinked in the teardown.
 *
 * Handlers never call cmocka's asserts (they may run in worker threads):
 * they record what they saw, and the test asserts afterwards.
 */
#include "testutil.h"

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------ */
/* Fixture and helpers                                                       */
/* ------------------------------------------------------------------------ */

/* Every test gets a struct tu_fx (testutil.h): its store name, and the store
 * and worker the teardown closes. */
#define T(fn) cmocka_unit_test_setup_teardown(fn, tu_fx_setup, tu_fx_teardown)

static struct taskring_store *fx_open(struct tu_fx *f, uint32_t slots, uint32_t max_payload, uint64_t arena)
{
	struct taskring_store_opts o = tu_store_opts(slots, max_payload, arena, 0, 0);
	f->st = tu_open(f->name, &o);
	return f->st;
}

static struct taskring_worker *fx_worker(struct tu_fx *f, const char *const *queues, uint32_t nq)
{
	f->w = tu_worker(f->st, queues, nq, 1);
	return f->w;
}

static int64_t now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* The result of the "echo" task: the payload reversed, each byte inverted
 * and xor'ed with the length's low byte. */
static void xform(const uint8_t *in, size_t len, uint8_t *out)
{
	for (size_t i = 0; i < len; i++)
		out[i] = (uint8_t)(~in[len - 1 - i] ^ (uint8_t)len);
}

static void fill_pattern(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13; x ^= x >> 17; x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static atomic_int echo_calls;

static int h_echo(struct taskring_ctx *ctx, void *arg)
{
	size_t len = 0;
	const uint8_t *p = taskring_ctx_payload(ctx, &len);
	uint8_t small[64];
	uint8_t *out = len <= sizeof(small) ? small : malloc(len);
	if (!out || (len && !p))
		return TASKRING_FAIL;
	xform(p, len, out);
	int rc = taskring_ctx_result(ctx, out, len);
	if (out != small)
		free(out);
	atomic_fetch_add(&echo_calls, 1);
	return rc == 0 ? TASKRING_OK : TASKRING_FAIL;
}

/* Check that @j completed with xform(@payload). */
static void expect_echo_result(const struct taskring_job *j, const void *payload, size_t len)
{
	uint8_t *want = malloc(len + 1), *got = malloc(len + 1);
	size_t glen = 12345;
	xform(payload, len, want);
	assert_rc(taskring_job_result(j, 10 * SEC, got, len + 1, &glen), 0);
	assert_int_equal(glen, len);
	if (len)
		assert_memory_equal(got, want, len);
	free(want);
	free(got);
}

static struct taskring_queue_stats stats(struct taskring_store *st, const char *q)
{
	struct taskring_queue_stats s;
	assert_rc(taskring_queue_stats(st, q, &s), 0);
	return s;
}

static void expect_counts(struct taskring_store *st, const char *q, uint64_t pending, uint64_t running,
			  uint64_t complete, uint64_t failed, uint64_t dead, uint64_t cancelled)
{
	struct taskring_queue_stats s = stats(st, q);
	uint64_t want[6] = {pending, running, complete, failed, dead, cancelled};
	for (int i = 0; i < 6; i++)
		if (s.by_status[i] != want[i])
			fail_msg("queue %s: %s = %llu, expected %llu", q ? q : "(all)", taskring_status_name(i),
				 (unsigned long long)s.by_status[i], (unsigned long long)want[i]);
}

static void job_id_of(const struct taskring_job *j, char *id)
{
	assert_rc(taskring_job_id(j, id), 0);
	assert_int_equal(strlen(id), TASKRING_ID_LEN);
}

static struct taskring_job_info jinfo(const struct taskring_job *j)
{
	struct taskring_job_info i;
	assert_rc(taskring_job_info(j, &i), 0);
	return i;
}

/* ---- JSON checks ------------------------------------------------------ */

/* A small strict JSON validator: returns the end of a value or NULL. */
static const char *js_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *js_value(const char *p, int depth);

static const char *js_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p != '"') {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char)p[i]))
						return NULL;
				p += 5;
				continue;
			}
			if (!strchr("\"\\/bfnrt", *p) || !*p)
				return NULL;
		}
		p++;
	}
	return p + 1;
}

static const char *js_number(const char *p)
{
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (isdigit((unsigned char)*p))
			p++;
	else
		return NULL;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return p;
}

static const char *js_value(const char *p, int depth)
{
	if (depth > 32)
		return NULL;
	p = js_ws(p);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		int obj = *p == '{';
		p = js_ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (obj) {
				p = js_string(js_ws(p));
				if (!p)
					return NULL;
				p = js_ws(p);
				if (*p++ != ':')
					return NULL;
			}
			p = js_value(p, depth + 1);
			if (!p)
				return NULL;
			p = js_ws(p);
			if (*p == ',') {
				p++;
				continue;
			}
			if (*p == close)
				return p + 1;
			return NULL;
		}
	}
	if (*p == '"')
		return js_string(p);
	if (!strncmp(p, "true", 4))
		return p + 4;
	if (!strncmp(p, "false", 5))
		return p + 5;
	if (!strncmp(p, "null", 4))
		return p + 4;
	return js_number(p);
}

static const char *const json_keys[] = {
	"id", "queue", "task_name", "status", "priority", "progress", "retry_count", "max_retries",
	"created_at", "scheduled_at", "started_at", "completed_at", "error", "timeout_ms", "unique_key",
	"metadata", "dependencies", "dependents", "errors",
};

static const char *python(void)
{
	static int have = -1;
	static const char *py;
	if (have < 0) {
		py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "%s -c pass >/dev/null 2>&1", py);
		have = system(cmd) == 0;
	}
	return have ? py : NULL;
}

/*
 * Validate @json as one JSON object with every taskito key, then, when
 * python3 is available, parse it with python's json module and run @checks
 * (python statements over the dict `d`; each an assert).
 */
static void check_json(const char *json, const char *checks)
{
	const char *end = js_value(json, 0);
	if (!end || *js_ws(end) != '\0')
		fail_msg("invalid JSON: %s", json);
	assert_int_equal(*js_ws(json), '{');
	for (size_t i = 0; i < sizeof(json_keys) / sizeof(json_keys[0]); i++) {
		char k[64];
		snprintf(k, sizeof(k), "\"%s\"", json_keys[i]);
		if (!strstr(json, k))
			fail_msg("JSON lacks key %s: %s", k, json);
	}
	const char *py = python();
	if (!py)
		return;
	char jf[] = "/tmp/taskring-test-json-XXXXXX";
	char cf[] = "/tmp/taskring-test-chk-XXXXXX";
	int fd = mkstemp(jf);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	fd = mkstemp(cf);
	assert_true(fd >= 0);
	static const char pre[] =
		"import json,sys\n"
		"d=json.load(open(sys.argv[1]))\n"
		"assert isinstance(d, dict)\n"
		"for k in ['id','queue','task_name','status','priority','progress','retry_count','max_retries',"
		"'created_at','scheduled_at','started_at','completed_at','error','timeout_ms','unique_key',"
		"'metadata','dependencies','dependents','errors']:\n"
		"    assert k in d, k\n"
		"assert d['dependencies'] == [] and d['dependents'] == []\n"
		"assert d['unique_key'] is None\n"
		"assert isinstance(d['errors'], list)\n";
	assert_int_equal(write(fd, pre, strlen(pre)), (ssize_t)strlen(pre));
	if (checks)
		assert_int_equal(write(fd, checks, strlen(checks)), (ssize_t)strlen(checks));
	close(fd);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s - '%s' < '%s'", py, jf, cf);
	int rc = system(cmd);
	unlink(jf);
	unlink(cf);
	if (rc != 0)
		fail_msg("python JSON checks failed (rc %d) on: %s\nchecks:\n%s", rc, json, checks ? checks : "");
}

static char *job_json(const struct taskring_job *j)
{
	int n = taskring_job_to_json(j, NULL, 0);
	assert_true(n > 0);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	memset(buf, 'Z', (size_t)n + 1);
	assert_rc(taskring_job_to_json(j, buf, (size_t)n + 1), n);
	assert_int_equal(strlen(buf), (size_t)n);
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle: pending -> running -> complete                                 */
/* ------------------------------------------------------------------------ */

struct observe {
	struct taskring_job job;
	int status, progress0, progress1, progress_rc;
	uint32_t attempt;
	int64_t deadline, mono;
	struct taskring_job_info info;
	int info_rc;
	char *json;
	int payload_ok;
	int cancel_req;
};

static int h_observe(struct taskring_ctx *ctx, void *arg)
{
	struct observe *o = arg;
	o->job = *taskring_ctx_job(ctx);
	o->status = taskring_job_status(&o->job);
	o->progress0 = taskring_job_progress(&o->job);
	o->progress_rc = taskring_ctx_progress(ctx, 30);
	o->progress_rc |= taskring_ctx_progress(ctx, 75);
	o->progress1 = taskring_job_progress(&o->job);
	o->attempt = taskring_ctx_attempt(ctx);
	o->deadline = taskring_ctx_deadline(ctx);
	o->mono = tu_now_ns();
	o->info_rc = taskring_job_info(&o->job, &o->info);
	o->cancel_req = taskring_ctx_cancel_requested(ctx);
	int n = taskring_job_to_json(&o->job, NULL, 0);
	if (n > 0) {
		o->json = malloc((size_t)n + 1);
		taskring_job_to_json(&o->job, o->json, (size_t)n + 1);
	}
	size_t len = 0;
	const void *p = taskring_ctx_payload(ctx, &len);
	o->payload_ok = p && len == 11 && !memcmp(p, "hello world", 11);
	return h_echo(ctx, NULL);
}

static void test_lifecycle_complete(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct observe ob;
	memset(&ob, 0, sizeof(ob));
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_observe, &ob), 0);

	struct taskring_enqueue_opts o = tu_eopts();
	o.priority = 5;
	o.metadata = "note: \"quoted\" back\\slash\nnewline\ttab";
	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	int64_t t0 = now_real();
	assert_rc(taskring_enqueue(st, "echo", "hello world", 11, &o, &j), 0);
	int64_t t1 = now_real();
	job_id_of(&j, id);

	/* Pending. */
	assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	assert_rc(taskring_job_progress(&j), -ENODATA);
	char ebuf[64] = "untouched";
	assert_rc(taskring_job_error(&j, ebuf, sizeof(ebuf)), -ENODATA);
	assert_string_equal(ebuf, "untouched");
	assert_rc(taskring_job_errors(&j, NULL, 0), 0);
	struct taskring_job_info in = jinfo(&j);
	assert_string_equal(in.id, id);
	assert_string_equal(in.task_name, "echo");
	assert_string_equal(in.queue, "default");
	assert_int_equal(in.status, TASKRING_PENDING);
	assert_int_equal(in.progress, -1);
	assert_int_equal(in.priority, 5);
	assert_int_equal(in.retry_count, 0);
	assert_int_equal(in.max_retries, 3);
	assert_int_equal(in.cancel_requested, 0);
	assert_true(in.created_at_ns >= t0 && in.created_at_ns <= t1);
	assert_true(in.scheduled_at_ns == 0 || (in.scheduled_at_ns >= t0 && in.scheduled_at_ns <= t1));
	assert_int_equal(in.started_at_ns, 0);
	assert_int_equal(in.completed_at_ns, 0);
	assert_int_equal(in.timeout_ns, 300 * SEC);
	assert_int_equal(in.result_ttl_ns, 0);
	assert_int_equal(in.payload_len, 11);
	assert_int_equal(in.result_len, 0);
	assert_int_equal(in.error_count, 0);
	char pbuf[32];
	size_t plen = 0;
	assert_rc(taskring_job_payload(&j, pbuf, sizeof(pbuf), &plen), 0);
	assert_int_equal(plen, 11);
	assert_memory_equal(pbuf, "hello world", 11);

	char *js = job_json(&j);
	char chk[1024];
	snprintf(chk, sizeof(chk),
		 "assert d['id']=='%s'\n"
		 "assert d['queue']=='default' and d['task_name']=='echo'\n"
		 "assert d['status']=='pending', d['status']\n"
		 "assert d['priority']==5 and d['progress'] is None\n"
		 "assert d['retry_count']==0 and d['max_retries']==3\n"
		 "assert d['created_at']==%lld, d['created_at']\n"
		 "assert d['started_at'] is None and d['completed_at'] is None\n"
		 "assert d['error'] is None and d['errors']==[]\n"
		 "assert d['timeout_ms']==300000\n"
		 "assert d['metadata']=='note: \"quoted\" back\\\\slash\\nnewline\\ttab', repr(d['metadata'])\n",
		 id, (long long)(in.created_at_ns / MS));
	check_json(js, chk);
	free(js);

	/* Not terminal: result and wait time out at once with timeout 0. */
	char rbuf[32] = "untouched";
	size_t rlen = 777;
	assert_rc(taskring_job_result(&j, 0, rbuf, sizeof(rbuf), &rlen), -ETIMEDOUT);
	assert_string_equal(rbuf, "untouched");
	assert_int_equal(rlen, 777);
	assert_rc(taskring_job_wait(&j, 0), -ETIMEDOUT);

	/* Running, as seen from the handler. */
	int64_t r0 = now_real();
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	int64_t r1 = now_real();
	assert_int_equal(ob.status, TASKRING_RUNNING);
	assert_rc(ob.progress0, -ENODATA);
	assert_int_equal(ob.progress_rc, 0);
	assert_int_equal(ob.progress1, 75);
	assert_int_equal(ob.attempt, 0);
	assert_true(ob.payload_ok);
	assert_int_equal(ob.cancel_req, 0);
	/* The deadline is 300 s after the start of the attempt (monotonic). */
	assert_true(ob.deadline > ob.mono + 290 * SEC && ob.deadline <= ob.mono + 300 * SEC);
	assert_rc(ob.info_rc, 0);
	assert_int_equal(ob.info.status, TASKRING_RUNNING);
	assert_int_equal(ob.info.progress, 75);
	assert_true(ob.info.started_at_ns >= r0 && ob.info.started_at_ns <= r1);
	assert_int_equal(ob.info.completed_at_ns, 0);
	char ctxid[TASKRING_ID_LEN + 1];
	job_id_of(&ob.job, ctxid);
	assert_string_equal(ctxid, id);
	assert_non_null(ob.json);
	check_json(ob.json, "assert d['status']=='running', d['status']\n"
			    "assert d['progress']==75\n"
			    "assert isinstance(d['started_at'], int) and d['completed_at'] is None\n");
	free(ob.json);

	/* Complete. */
	assert_rc(taskring_job_status(&j), TASKRING_COMPLETE);
	assert_rc(taskring_job_progress(&j), 75);
	assert_rc(taskring_job_wait(&j, 0), TASKRING_COMPLETE);
	assert_rc(taskring_job_wait(&j, -1), TASKRING_COMPLETE);
	expect_echo_result(&j, "hello world", 11);
	assert_rc(taskring_job_error(&j, NULL, 0), -ENODATA);
	assert_rc(taskring_job_errors(&j, NULL, 0), 0);
	in = jinfo(&j);
	assert_int_equal(in.status, TASKRING_COMPLETE);
	assert_int_equal(in.progress, 75);
	assert_int_equal(in.result_len, 11);
	assert_int_equal(in.retry_count, 0);
	assert_true(in.started_at_ns >= in.created_at_ns);
	assert_true(in.completed_at_ns >= in.started_at_ns);
	assert_true(in.completed_at_ns <= now_real());
	/* Cancelling a terminal job is refused and changes nothing. */
	assert_rc(taskring_job_cancel(&j), TASKRING_ESTATE);
	assert_rc(taskring_job_status(&j), TASKRING_COMPLETE);
	assert_rc(taskring_job_retry_dead(&j, NULL), TASKRING_ESTATE);

	js = job_json(&j);
	snprintf(chk, sizeof(chk),
		 "assert d['status']=='complete'\n"
		 "assert d['progress']==75\n"
		 "assert d['started_at']==%lld and d['completed_at']==%lld\n"
		 "assert d['error'] is None and d['errors']==[]\n",
		 (long long)(in.started_at_ns / MS), (long long)(in.completed_at_ns / MS));
	check_json(js, chk);
	/* to_json truncates like snprintf. */
	int n = (int)strlen(js);
	char small[16];
	memset(small, 'Z', sizeof(small));
	assert_rc(taskring_job_to_json(&j, small, sizeof(small)), n);
	assert_int_equal(small[15], '\0');
	assert_memory_equal(small, js, 15);
	free(js);

	/* Nothing else to run. */
	assert_rc(taskring_worker_run_one(w, 0), 0);

	struct taskring_queue_stats s = stats(st, NULL);
	assert_int_equal(s.by_status[TASKRING_COMPLETE], 1);
	assert_int_equal(s.by_status[TASKRING_PENDING], 0);
	assert_int_equal(s.by_status[TASKRING_RUNNING], 0);
	assert_int_equal(s.enqueued, 1);
	assert_int_equal(s.started, 1);
	assert_int_equal(s.completed, 1);
	assert_int_equal(s.failed + s.dead + s.cancelled + s.retried, 0);
	struct taskring_queue_stats sd = stats(st, "default");
	tu_assert_stats_same(&s, &sd);
}

/* ------------------------------------------------------------------------ */
/* Payload and result sizes                                                  */
/* ------------------------------------------------------------------------ */

static void test_payload_sizes(void **state)
{
	struct tu_fx *f = *state;
	const uint32_t maxp = 256 * 1024;
	struct taskring_store *st = fx_open(f, 64, maxp, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);

	size_t sizes[] = {0, 1, 31, 32, 33, 64, 4095, 4096, 100 * 1000, maxp - 1, maxp};
	size_t ns = sizeof(sizes) / sizeof(sizes[0]);
	struct taskring_job jobs[16];
	uint8_t *buf = malloc(maxp + 16);
	assert_non_null(buf);
	for (size_t i = 0; i < ns; i++) {
		fill_pattern(buf, sizes[i], (uint32_t)i);
		assert_rc(taskring_enqueue(st, "echo", sizes[i] ? buf : NULL, sizes[i], NULL, &jobs[i]), 0);
		assert_int_equal(jinfo(&jobs[i]).payload_len, sizes[i]);
	}
	/* Payloads read back exactly; a too-small buffer gives -ENOBUFS and the length. */
	for (size_t i = 0; i < ns; i++) {
		uint8_t *want = malloc(sizes[i] + 1);
		fill_pattern(want, sizes[i], (uint32_t)i);
		size_t len = 0;
		assert_rc(taskring_job_payload(&jobs[i], buf, maxp + 16, &len), 0);
		assert_int_equal(len, sizes[i]);
		if (len)
			assert_memory_equal(buf, want, len);
		if (sizes[i] > 0) {
			len = 0;
			assert_rc(taskring_job_payload(&jobs[i], buf, sizes[i] - 1, &len), -ENOBUFS);
			assert_int_equal(len, sizes[i]);
			assert_rc(taskring_job_payload(&jobs[i], buf, sizes[i], &len), 0);
			assert_memory_equal(buf, want, len);
		}
		free(want);
	}
	for (size_t i = 0; i < ns; i++)
		assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	for (size_t i = 0; i < ns; i++) {
		fill_pattern(buf, sizes[i], (uint32_t)i);
		expect_echo_result(&jobs[i], buf, sizes[i]);
		assert_int_equal(jinfo(&jobs[i]).result_len, sizes[i]);
		/* An empty result may be fetched with a NULL buffer. */
		if (sizes[i] == 0) {
			size_t len = 99;
			assert_rc(taskring_job_result(&jobs[i], 0, NULL, 0, &len), 0);
			assert_int_equal(len, 0);
		} else {
			size_t len = 0;
			char one;
			assert_rc(taskring_job_result(&jobs[i], 0, &one, 0, &len), -ENOBUFS);
			assert_int_equal(len, sizes[i]);
		}
	}
	/* One byte over: refused. */
	assert_rc(taskring_enqueue(st, "echo", buf, maxp + 1, NULL, NULL), -EMSGSIZE);
	free(buf);
}

/* A handler that sets a result of the length given in its payload. */
static int h_result_len(struct taskring_ctx *ctx, void *arg)
{
	size_t len = 0;
	const uint32_t *p = taskring_ctx_payload(ctx, &len);
	uint32_t n = *p;
	uint8_t *out = malloc(n + 1);
	fill_pattern(out, n, n);
	/* First a different result, then the real one: the last call wins. */
	taskring_ctx_result(ctx, "first", 5);
	int rc = taskring_ctx_result(ctx, out, n);
	free(out);
	return rc == 0 ? TASKRING_OK : TASKRING_FAIL;
}

static void test_result_sizes(void **state)
{
	struct tu_fx *f = *state;
	const uint32_t maxp = 128 * 1024;
	struct taskring_store *st = fx_open(f, 64, maxp, 4u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "rl", h_result_len, NULL), 0);
	uint32_t sizes[] = {0, 1, 31, 32, 33, 100 * 1000, maxp};
	size_t ns = sizeof(sizes) / sizeof(sizes[0]);
	struct taskring_job jobs[8];
	for (size_t i = 0; i < ns; i++)
		assert_rc(taskring_enqueue(st, "rl", &sizes[i], 4, NULL, &jobs[i]), 0);
	for (size_t i = 0; i < ns; i++)
		assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	uint8_t *buf = malloc(maxp + 1), *want = malloc(maxp + 1);
	for (size_t i = 0; i < ns; i++) {
		size_t len = 0;
		assert_rc(taskring_job_status(&jobs[i]), TASKRING_COMPLETE);
		assert_rc(taskring_job_result(&jobs[i], 0, buf, maxp + 1, &len), 0);
		assert_int_equal(len, sizes[i]);
		fill_pattern(want, sizes[i], sizes[i]);
		if (len)
			assert_memory_equal(buf, want, len);
	}
	free(buf);
	free(want);
}

/* ------------------------------------------------------------------------ */
/* Retries, dead letters, permanent failure                                  */
/* ------------------------------------------------------------------------ */

struct failer {
	int fail_first;     /* this many attempts fail */
	int outcome;        /* what a failing attempt returns */
	atomic_int calls;
	uint32_t attempts[64];
	int64_t when[64];   /* CLOCK_REALTIME at the start of each call */
};

static int h_fail(struct taskring_ctx *ctx, void *arg)
{
	struct failer *fl = arg;
	int c = atomic_fetch_add(&fl->calls, 1);
	uint32_t a = taskring_ctx_attempt(ctx);
	if (c < 64) {
		fl->attempts[c] = a;
		fl->when[c] = now_real();
	}
	if (c < fl->fail_first) {
		taskring_ctx_error(ctx, "fail attempt %u \"q\"\\", a);
		return fl->outcome;
	}
	return h_echo(ctx, NULL);
}

static void expect_error_history(const struct taskring_job *j, int n, const char *jid)
{
	struct taskring_error_record recs[8];
	memset(recs, 0, sizeof(recs));
	assert_rc(taskring_job_errors(j, recs, 8), n);
	for (int i = 0; i < n; i++) {
		char msg[64];
		snprintf(msg, sizeof(msg), "fail attempt %d \"q\"\\", i);
		assert_int_equal(recs[i].attempt, (uint32_t)i);
		assert_string_equal(recs[i].error, msg);
		assert_string_equal(recs[i].job_id, jid);
		assert_int_equal(strlen(recs[i].id), TASKRING_ID_LEN);
		assert_int_equal(recs[i].id[14], '7');
		assert_string_not_equal(recs[i].id, jid);
		assert_true(recs[i].failed_at_ns > 0);
		if (i > 0) {
			assert_true(recs[i].failed_at_ns >= recs[i - 1].failed_at_ns);
			assert_string_not_equal(recs[i].id, recs[i - 1].id);
		}
	}
	/* Fewer slots than records: the total, and only the oldest written. */
	if (n >= 2) {
		struct taskring_error_record one[2];
		memset(one, 0x5a, sizeof(one));
		assert_rc(taskring_job_errors(j, one, 1), n);
		assert_int_equal(one[0].attempt, 0);
		unsigned char pat[sizeof(one[1])];
		memset(pat, 0x5a, sizeof(pat));
		assert_memory_equal(&one[1], pat, sizeof(pat));
	}
	assert_rc(taskring_job_errors(j, NULL, 0), n);
}

static void test_retry_then_dead(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct failer fl = {.fail_first = 100, .outcome = TASKRING_RETRY};
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "flaky", h_fail, &fl), 0);

	static const int64_t delays[] = {1 * MS};
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 2;
	o.retry_delays_ns = delays;
	o.n_retry_delays = 1;
	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	assert_rc(taskring_enqueue(st, "flaky", "abc", 3, &o, &j), 0);
	job_id_of(&j, id);

	for (int a = 0; a < 2; a++) {
		int64_t t0 = now_real();
		assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
		int64_t t1 = now_real();
		/* Back to pending, later, one more retry counted, one more error. */
		assert_rc(taskring_job_status(&j), TASKRING_PENDING);
		struct taskring_job_info in = jinfo(&j);
		assert_int_equal(in.retry_count, (uint32_t)a + 1);
		assert_int_equal(in.max_retries, 2);
		assert_int_equal(in.error_count, (uint32_t)a + 1);
		assert_true(in.scheduled_at_ns >= t0 + 1 * MS);
		assert_true(in.scheduled_at_ns <= t1 + 1 * MS);
		char msg[64], want[64];
		snprintf(want, sizeof(want), "fail attempt %d \"q\"\\", a);
		assert_rc(taskring_job_error(&j, msg, sizeof(msg)), (int)strlen(want));
		assert_string_equal(msg, want);
		expect_error_history(&j, a + 1, id);
		size_t len;
		assert_rc(taskring_job_result(&j, 0, msg, sizeof(msg), &len), -ETIMEDOUT);
	}
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_int_equal(atomic_load(&fl.calls), 3);
	for (int a = 0; a < 3; a++)
		assert_int_equal(fl.attempts[a], (uint32_t)a);

	/* Dead: no more runs, the error is there, result() says dead. */
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);
	struct taskring_job_info in = jinfo(&j);
	assert_int_equal(in.retry_count, 2);
	assert_int_equal(in.error_count, 3);
	assert_true(in.completed_at_ns >= in.started_at_ns && in.completed_at_ns > 0);
	char buf[64] = "untouched";
	size_t len = 4242;
	assert_rc(taskring_job_result(&j, 0, buf, sizeof(buf), &len), TASKRING_EDEAD);
	assert_rc(taskring_job_result(&j, -1, buf, sizeof(buf), &len), TASKRING_EDEAD);
	assert_rc(taskring_job_wait(&j, -1), TASKRING_DEAD);
	const char *last = "fail attempt 2 \"q\"\\";
	assert_rc(taskring_job_error(&j, buf, sizeof(buf)), (int)strlen(last));
	assert_string_equal(buf, last);
	/* Cut like snprintf. */
	char cut[8];
	assert_rc(taskring_job_error(&j, cut, sizeof(cut)), (int)strlen(last));
	assert_string_equal(cut, "fail at");
	assert_rc(taskring_job_error(&j, NULL, 0), (int)strlen(last));
	expect_error_history(&j, 3, id);
	assert_rc(taskring_worker_run_one(w, 20 * MS), 0);
	assert_int_equal(atomic_load(&fl.calls), 3);
	assert_rc(taskring_job_cancel(&j), TASKRING_ESTATE);

	char *js = job_json(&j);
	check_json(js, "assert d['status']=='dead'\n"
		       "assert d['retry_count']==2 and d['max_retries']==2\n"
		       "assert d['error']=='fail attempt 2 \"q\"\\\\', repr(d['error'])\n"
		       "assert len(d['errors'])==3\n");
	free(js);

	struct taskring_queue_stats s = stats(st, NULL);
	assert_int_equal(s.by_status[TASKRING_DEAD], 1);
	assert_int_equal(s.enqueued, 1);
	assert_int_equal(s.started, 3);
	assert_int_equal(s.retried, 2);
	assert_int_equal(s.dead, 1);
	assert_int_equal(s.failed, 0);
	assert_int_equal(s.completed, 0);
}

static void test_max_retries_zero_runs_once(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct failer fl = {.fail_first = 100, .outcome = TASKRING_RETRY};
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "flaky", h_fail, &fl), 0);
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 0;
	o.backoff_base_ns = 1 * MS;
	o.backoff_cap_ns = 1 * MS;
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "flaky", "x", 1, &o, &j), 0);
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);
	assert_rc(taskring_worker_run_one(w, 50 * MS), 0);
	assert_int_equal(atomic_load(&fl.calls), 1);
	struct taskring_job_info in = jinfo(&j);
	assert_int_equal(in.retry_count, 0);
	assert_int_equal(in.max_retries, 0);
	assert_int_equal(in.error_count, 1);
	size_t len;
	assert_rc(taskring_job_result(&j, 0, NULL, 0, &len), TASKRING_EDEAD);
	struct taskring_queue_stats s = stats(st, NULL);
	assert_int_equal(s.retried, 0);
	assert_int_equal(s.dead, 1);
	assert_int_equal(s.started, 1);
}

static void test_retry_delays_and_backoff(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct failer fl = {.fail_first = 100, .outcome = TASKRING_RETRY};
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "flaky", h_fail, &fl), 0);

	/* Explicit delays {20 ms, 250 ms}: the last repeats. */
	static const int64_t delays[] = {20 * MS, 250 * MS};
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 3;
	o.retry_delays_ns = delays;
	o.n_retry_delays = 2;
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "flaky", "d", 1, &o, &j), 0);
	int64_t expect_delay[3] = {20 * MS, 250 * MS, 250 * MS};
	for (int a = 0; a < 3; a++) {
		int64_t t0 = now_real();
		int64_t m0 = tu_now_ns();
		assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
		int64_t t1 = now_real();
		struct taskring_job_info in = jinfo(&j);
		assert_int_equal(in.status, TASKRING_PENDING);
		assert_true(in.scheduled_at_ns >= t0 + expect_delay[a]);
		assert_true(in.scheduled_at_ns <= t1 + expect_delay[a]);
		if (a == 1) {
			/* Not claimable before it is due. */
			assert_rc(taskring_worker_run_one(w, 50 * MS), 0);
			assert_int_equal(atomic_load(&fl.calls), 2);
			assert_rc(taskring_job_status(&j), TASKRING_PENDING);
		}
		(void)m0;
	}
	/* The fourth attempt starts no earlier than scheduled. */
	int64_t sched = jinfo(&j).scheduled_at_ns;
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_int_equal(atomic_load(&fl.calls), 4);
	assert_true(fl.when[3] >= sched);
	assert_true(fl.when[1] >= fl.when[0] + 20 * MS);
	assert_true(fl.when[2] >= fl.when[1] + 250 * MS);
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);

	/* Jittered backoff: uniform(0, min(cap, base * 2^n)), base 100 ms,
	 * cap 150 ms: the retry is scheduled within the cap. */
	atomic_store(&fl.calls, 0);
	o = tu_eopts();
	o.max_retries = 3;
	o.backoff_base_ns = 100 * MS;
	o.backoff_cap_ns = 150 * MS;
	struct taskring_job k;
	assert_rc(taskring_enqueue(st, "flaky", "b", 1, &o, &k), 0);
	int64_t caps[3] = {100 * MS, 150 * MS, 150 * MS};
	for (int a = 0; a < 3; a++) {
		int64_t t0 = now_real();
		assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
		int64_t t1 = now_real();
		struct taskring_job_info in = jinfo(&k);
		assert_int_equal(in.status, TASKRING_PENDING);
		assert_int_equal(in.retry_count, (uint32_t)a + 1);
		assert_true(in.scheduled_at_ns >= t0);
		assert_true(in.scheduled_at_ns <= t1 + caps[a]);
	}
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_job_status(&k), TASKRING_DEAD);
	assert_int_equal(atomic_load(&fl.calls), 4);
}

static void test_permanent_failure(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct failer fl = {.fail_first = 100, .outcome = TASKRING_FAIL};
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "perm", h_fail, &fl), 0);
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 5;
	o.backoff_base_ns = 1 * MS;
	o.backoff_cap_ns = 1 * MS;
	struct taskring_job j;
	char id[TASKRING_ID_LEN + 1];
	assert_rc(taskring_enqueue(st, "perm", "p", 1, &o, &j), 0);
	job_id_of(&j, id);
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_job_status(&j), TASKRING_FAILED);
	assert_rc(taskring_worker_run_one(w, 50 * MS), 0);
	assert_int_equal(atomic_load(&fl.calls), 1);
	struct taskring_job_info in = jinfo(&j);
	assert_int_equal(in.retry_count, 0);
	assert_int_equal(in.error_count, 1);
	char buf[64];
	size_t len = 31337;
	assert_rc(taskring_job_result(&j, 1 * SEC, buf, sizeof(buf), &len), TASKRING_EFAILED);
	assert_int_equal(len, 31337);
	assert_rc(taskring_job_wait(&j, 0), TASKRING_FAILED);
	assert_rc(taskring_job_error(&j, buf, sizeof(buf)), (int)strlen("fail attempt 0 \"q\"\\"));
	assert_string_equal(buf, "fail attempt 0 \"q\"\\");
	expect_error_history(&j, 1, id);
	assert_rc(taskring_job_retry_dead(&j, NULL), TASKRING_ESTATE);
	/* Not on the dead-letter list. */
	uint64_t cur = 0;
	struct taskring_job x;
	assert_rc(taskring_job_next(st, 1u << TASKRING_DEAD, NULL, NULL, &cur, &x), 0);
	struct taskring_queue_stats s = stats(st, NULL);
	assert_int_equal(s.failed, 1);
	assert_int_equal(s.dead, 0);
	assert_int_equal(s.retried, 0);
	assert_int_equal(s.by_status[TASKRING_FAILED], 1);
	char *js = job_json(&j);
	check_json(js, "assert d['status']=='failed' and len(d['errors'])==1\n"
		       "assert d['errors'][0]['attempt']==0\n");
	free(js);
}

static int h_weird(struct taskring_ctx *ctx, void *arg)
{
	return 42;
}

static void test_unknown_outcome_is_retry(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "weird", h_weird, NULL), 0);
	static const int64_t delays[] = {1 * MS};
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 1;
	o.retry_delays_ns = delays;
	o.n_retry_delays = 1;
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "weird", "w", 1, &o, &j), 0);
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	assert_int_equal(jinfo(&j).retry_count, 1);
	assert_true(taskring_job_error(&j, NULL, 0) > 0);
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);
	assert_rc(taskring_job_errors(&j, NULL, 0), 2);
}

/* A job whose task has no handler in the claiming worker: a retryable failure
 * naming the task. */
static void test_no_handler_in_worker(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	assert_rc(taskring_task_declare(st, "orphan_task"), 0);
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 0;
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "orphan_task", "o", 1, &o, &j), 0);
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_job_status(&j), TASKRING_DEAD);
	char buf[TASKRING_ERROR_MAX + 1];
	assert_true(taskring_job_error(&j, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "orphan_task"));
}

static void test_dead_letters_and_retry_dead(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct failer fl = {.fail_first = 2, .outcome = TASKRING_RETRY};
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "flaky", h_fail, &fl), 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);

	/* Two dead (queue "default"), one complete, one pending. */
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 0;
	o.priority = 7;
	o.timeout_ns = 5 * SEC;
	o.metadata = "{\"k\":1}";
	struct taskring_job d1, d2, c, p;
	char id1[TASKRING_ID_LEN + 1], id2[TASKRING_ID_LEN + 1];
	assert_rc(taskring_enqueue(st, "flaky", "dead-one", 8, &o, &d1), 0);
	assert_rc(taskring_enqueue(st, "flaky", "dead-two", 8, &o, &d2), 0);
	assert_rc(taskring_enqueue(st, "echo", "ok", 2, NULL, &c), 0);
	job_id_of(&d1, id1);
	job_id_of(&d2, id2);
	for (int i = 0; i < 3; i++)
		assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_enqueue(st, "echo", "later", 5, NULL, &p), 0);
	assert_rc(taskring_job_status(&d1), TASKRING_DEAD);
	assert_rc(taskring_job_status(&d2), TASKRING_DEAD);
	assert_rc(taskring_job_status(&c), TASKRING_COMPLETE);

	/* The dead-letter list holds exactly the two. */
	uint64_t cur = 0;
	struct taskring_job x;
	int n = 0, got1 = 0, got2 = 0, rc;
	while ((rc = taskring_job_next(st, 1u << TASKRING_DEAD, NULL, NULL, &cur, &x)) == 1) {
		char xid[TASKRING_ID_LEN + 1];
		job_id_of(&x, xid);
		got1 += !strcmp(xid, id1);
		got2 += !strcmp(xid, id2);
		assert_rc(taskring_job_status(&x), TASKRING_DEAD);
		n++;
	}
	assert_rc(rc, 0);
	assert_int_equal(n, 2);
	assert_int_equal(got1, 1);
	assert_int_equal(got2, 1);
	/* At the end it stays at the end. */
	assert_rc(taskring_job_next(st, 1u << TASKRING_DEAD, NULL, NULL, &cur, &x), 0);
	/* A queue filter: none dead in another queue. */
	cur = 0;
	assert_rc(taskring_queue_pause(st, "elsewhere"), 0);
	assert_rc(taskring_job_next(st, 1u << TASKRING_DEAD, "elsewhere", NULL, &cur, &x), 0);
	cur = 0;
	n = 0;
	while (taskring_job_next(st, 1u << TASKRING_DEAD, "default", NULL, &cur, &x) == 1)
		n++;
	assert_int_equal(n, 2);
	/* Mask 0 = all four; a mask of two states. */
	cur = 0;
	n = 0;
	while (taskring_job_next(st, 0, NULL, NULL, &cur, &x) == 1)
		n++;
	assert_int_equal(n, 4);
	cur = 0;
	n = 0;
	while (taskring_job_next(st, (1u << TASKRING_COMPLETE) | (1u << TASKRING_PENDING), NULL, NULL, &cur, &x) == 1)
		n++;
	assert_int_equal(n, 2);

	/* retry_dead: a new job, new id, same payload/queue/options, fresh budget. */
	assert_rc(taskring_job_retry_dead(&c, NULL), TASKRING_ESTATE);
	assert_rc(taskring_job_retry_dead(&p, NULL), TASKRING_ESTATE);
	struct taskring_job nj;
	assert_rc(taskring_job_retry_dead(&d1, &nj), 0);
	char nid[TASKRING_ID_LEN + 1];
	job_id_of(&nj, nid);
	assert_string_not_equal(nid, id1);
	struct taskring_job_info ni = jinfo(&nj), oi = jinfo(&d1);
	assert_int_equal(ni.status, TASKRING_PENDING);
	assert_int_equal(ni.retry_count, 0);
	assert_int_equal(ni.max_retries, 0);
	assert_int_equal(ni.priority, 7);
	assert_int_equal(ni.timeout_ns, 5 * SEC);
	assert_int_equal(ni.error_count, 0);
	assert_string_equal(ni.queue, "default");
	assert_string_equal(ni.task_name, "flaky");
	assert_true(ni.created_at_ns >= oi.created_at_ns);
	char pb[16];
	size_t plen = 0;
	assert_rc(taskring_job_payload(&nj, pb, sizeof(pb), &plen), 0);
	assert_int_equal(plen, 8);
	assert_memory_equal(pb, "dead-one", 8);
	char *js = job_json(&nj);
	check_json(js, "assert d['metadata']=='{\"k\":1}' or d['metadata']=={'k':1}, repr(d['metadata'])\n"
		       "assert d['status']=='pending' and d['retry_count']==0\n");
	free(js);
	/* The dead job stays as it was. */
	assert_rc(taskring_job_status(&d1), TASKRING_DEAD);
	assert_rc(taskring_job_errors(&d1, NULL, 0), 1);
	/* The new job (third call of the handler) succeeds. */
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1); /* "later" or the new one, by priority: nj (7) */
	assert_rc(taskring_job_status(&nj), TASKRING_COMPLETE);
	expect_echo_result(&nj, "dead-one", 8);
	/* The dead list still holds d1 and d2. */
	cur = 0;
	n = 0;
	while (taskring_job_next(st, 1u << TASKRING_DEAD, NULL, NULL, &cur, &x) == 1)
		n++;
	assert_int_equal(n, 2);
	/* A dead job may be retried again: another new job. */
	struct taskring_job nj2;
	assert_rc(taskring_job_retry_dead(&d1, &nj2), 0);
	char nid2[TASKRING_ID_LEN + 1];
	job_id_of(&nj2, nid2);
	assert_string_not_equal(nid2, nid);
	struct taskring_queue_stats s = stats(st, NULL);
	assert_int_equal(s.enqueued, 6);
	assert_int_equal(s.dead, 2);
	assert_int_equal(s.by_status[TASKRING_DEAD], 2);
	assert_int_equal(s.by_status[TASKRING_PENDING], 2);
	assert_int_equal(s.by_status[TASKRING_COMPLETE], 2);
}

/* ------------------------------------------------------------------------ */
/* Cancel                                                                    */
/* ------------------------------------------------------------------------ */

struct waiter {
	struct taskring_job job;
	int rc;
	int use_wait;
	pthread_t th;
};

static void *waiter_main(void *arg)
{
	struct waiter *wt = arg;
	if (wt->use_wait) {
		wt->rc = taskring_job_wait(&wt->job, 10 * SEC);
	} else {
		char buf[64];
		size_t len;
		wt->rc = taskring_job_result(&wt->job, 10 * SEC, buf, sizeof(buf), &len);
	}
	return NULL;
}

static void test_cancel_pending(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	struct taskring_job j, k;
	assert_rc(taskring_enqueue(st, "echo", "c", 1, NULL, &j), 0);
	assert_rc(taskring_enqueue(st, "echo", "k", 1, NULL, &k), 0);

	/* A waiter blocked in result() is woken by the cancel. */
	struct waiter wt = {.job = j};
	assert_int_equal(pthread_create(&wt.th, NULL, waiter_main, &wt), 0);
	struct waiter wt2 = {.job = j, .use_wait = 1};
	assert_int_equal(pthread_create(&wt2.th, NULL, waiter_main, &wt2), 0);
	tu_sleep_ms(50);
	assert_rc(taskring_job_cancel(&j), 0);
	pthread_join(wt.th, NULL);
	pthread_join(wt2.th, NULL);
	assert_rc(wt.rc, -ECANCELED);
	assert_rc(wt2.rc, TASKRING_CANCELLED);

	assert_rc(taskring_job_status(&j), TASKRING_CANCELLED);
	size_t len;
	assert_rc(taskring_job_result(&j, 0, NULL, 0, &len), -ECANCELED);
	assert_rc(taskring_job_cancel(&j), TASKRING_ESTATE);
	struct taskring_job_info in = jinfo(&j);
	assert_int_equal(in.started_at_ns, 0);
	assert_true(in.completed_at_ns > 0);
	/* The worker runs only the other job. */
	int before = atomic_load(&echo_calls);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_job_status(&k), TASKRING_COMPLETE);
	assert_rc(taskring_worker_run_one(w, 50 * MS), 0);
	assert_int_equal(atomic_load(&echo_calls), before + 1);
	/* A cancelled job cannot be retried as dead. */
	assert_rc(taskring_job_retry_dead(&j, NULL), TASKRING_ESTATE);
	struct taskring_queue_stats s = stats(st, NULL);
	assert_int_equal(s.cancelled, 1);
	assert_int_equal(s.started, 1);
	assert_int_equal(s.by_status[TASKRING_CANCELLED], 1);
	assert_int_equal(s.by_status[TASKRING_COMPLETE], 1);

	/* A delayed pending job can be cancelled too, and never runs. */
	struct taskring_enqueue_opts o = tu_eopts();
	o.delay_ns = 30 * MS;
	struct taskring_job dj;
	assert_rc(taskring_enqueue(st, "echo", "d", 1, &o, &dj), 0);
	assert_rc(taskring_job_cancel(&dj), 0);
	assert_rc(taskring_worker_run_one(w, 150 * MS), 0);
	assert_rc(taskring_job_status(&dj), TASKRING_CANCELLED);
}

struct cw {
	atomic_int started;
	atomic_int saw_cancel;
	atomic_int done;
	int on_cancel; /* outcome returned when the cancel is seen */
};

static int h_cancel_wait(struct taskring_ctx *ctx, void *arg)
{
	struct cw *c = arg;
	atomic_store(&c->started, 1);
	int64_t end = tu_now_ns() + 10 * SEC;
	while (tu_now_ns() < end) {
		if (taskring_ctx_cancel_requested(ctx)) {
			atomic_store(&c->saw_cancel, 1);
			taskring_ctx_result(ctx, "partial", 7);
			taskring_ctx_error(ctx, "stopped on request");
			atomic_store(&c->done, 1);
			return c->on_cancel;
		}
		tu_sleep_ms(1);
	}
	atomic_store(&c->done, 1);
	return TASKRING_OK;
}

/* Wait (up to 10 s) for a flag that goes from 0 to 1. */
static void wait_flag(atomic_int *flag)
{
	if (!tu_wait_int(flag, 1, 10000))
		fail_msg("flag never set");
}

static void cancel_running_case(struct tu_fx *f, int on_cancel, int want_status)
{
	struct taskring_store *st = f->st;
	struct cw c = {.on_cancel = on_cancel};
	struct taskring_worker *w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(w, "spin", h_cancel_wait, &c), 0);
	assert_rc(taskring_worker_start(w), 0);
	static const int64_t delays[] = {1 * MS};
	struct taskring_enqueue_opts o = tu_eopts();
	o.max_retries = 3;
	o.retry_delays_ns = delays;
	o.n_retry_delays = 1;
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "spin", "s", 1, &o, &j), 0);
	wait_flag(&c.started);
	assert_rc(taskring_job_status(&j), TASKRING_RUNNING);
	assert_int_equal(jinfo(&j).cancel_requested, 0);
	assert_rc(taskring_job_cancel(&j), 1);
	assert_rc(taskring_job_wait(&j, 10 * SEC), want_status);
	assert_int_equal(atomic_load(&c.saw_cancel), 1);
	assert_rc(taskring_job_status(&j), want_status);
	/* The request is kept after the job ends, whichever way it ended. */
	assert_int_equal(jinfo(&j).cancel_requested, 1);
	char buf[16];
	size_t len = 0;
	if (want_status == TASKRING_CANCELLED) {
		assert_rc(taskring_job_result(&j, 0, buf, sizeof(buf), &len), -ECANCELED);
		assert_rc(taskring_job_cancel(&j), TASKRING_ESTATE);
		assert_int_equal(jinfo(&j).retry_count, 0); /* not retried */
	} else {
		assert_rc(taskring_job_result(&j, 0, buf, sizeof(buf), &len), 0);
		assert_int_equal(len, 7);
		assert_memory_equal(buf, "partial", 7);
	}
	assert_rc(taskring_worker_stop(w, 5 * SEC), 0);
	assert_rc(taskring_worker_destroy(w), 0);
}

static void test_cancel_running(void **state)
{
	struct tu_fx *f = *state;
	fx_open(f, 64, 64 * 1024, 8u << 20);
	/* The handler returns CANCEL: cancelled. */
	cancel_running_case(f, TASKRING_CANCEL, TASKRING_CANCELLED);
	struct taskring_queue_stats s = stats(f->st, NULL);
	assert_int_equal(s.cancelled, 1);
	assert_int_equal(s.retried, 0);
	/* The handler returns RETRY with retries left: still cancelled, not retried. */
	cancel_running_case(f, TASKRING_RETRY, TASKRING_CANCELLED);
	/* FAIL after a cancel request: cancelled too. */
	cancel_running_case(f, TASKRING_FAIL, TASKRING_CANCELLED);
	/* The handler finishes successfully anyway: complete. */
	cancel_running_case(f, TASKRING_OK, TASKRING_COMPLETE);
	s = stats(f->st, NULL);
	assert_int_equal(s.cancelled, 3);
	assert_int_equal(s.completed, 1);
	assert_int_equal(s.retried, 0);
	assert_int_equal(s.failed, 0);
	assert_int_equal(s.dead, 0);
	assert_int_equal(s.by_status[TASKRING_CANCELLED], 3);
	assert_int_equal(s.by_status[TASKRING_COMPLETE], 1);
}

/* ------------------------------------------------------------------------ */
/* Priorities                                                                */
/* ------------------------------------------------------------------------ */

struct rec {
	pthread_mutex_t mu;
	int n, cap;
	int32_t *seq;
};

struct prio_payload {
	int32_t prio;
	int32_t seq;
};

static int h_record(struct taskring_ctx *ctx, void *arg)
{
	struct rec *r = arg;
	size_t len = 0;
	const struct prio_payload *p = taskring_ctx_payload(ctx, &len);
	pthread_mutex_lock(&r->mu);
	if (r->n < r->cap)
		r->seq[r->n] = len == sizeof(*p) ? p->seq : -1;
	r->n++;
	pthread_mutex_unlock(&r->mu);
	return TASKRING_OK;
}

static struct rec *rec_new(int cap)
{
	struct rec *r = calloc(1, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->cap = cap;
	r->seq = calloc((size_t)cap, sizeof(int32_t));
	return r;
}

static void rec_free(struct rec *r)
{
	pthread_mutex_destroy(&r->mu);
	free(r->seq);
	free(r);
}

static void test_priorities_static(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 256, 64 * 1024, 8u << 20);
	struct rec *r = rec_new(256);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "rec", h_record, r), 0);

	/* 40 distinct priorities (more than the 16 bands), 4 jobs each,
	 * interleaved; plus the extremes. */
	enum { NP = 40, PER = 4 };
	struct prio_payload jobs[NP * PER + 2];
	int n = 0;
	for (int k = 0; k < PER; k++)
		for (int i = 0; i < NP; i++) {
			int32_t prio = ((i * 17) % NP - 20) * 3; /* -60 .. 57, shuffled */
			jobs[n].prio = prio;
			jobs[n].seq = n;
			n++;
		}
	jobs[n].prio = INT32_MIN;
	jobs[n].seq = n;
	n++;
	jobs[n].prio = INT32_MAX;
	jobs[n].seq = n;
	n++;
	for (int i = 0; i < n; i++) {
		struct taskring_enqueue_opts o = tu_eopts();
		o.priority = jobs[i].prio;
		assert_rc(taskring_enqueue(st, "rec", &jobs[i], sizeof(jobs[i]), &o, NULL), 0);
	}
	for (int i = 0; i < n; i++)
		assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_worker_run_one(w, 0), 0);
	assert_int_equal(r->n, n);
	for (int i = 1; i < n; i++) {
		const struct prio_payload *a = &jobs[r->seq[i - 1]], *b = &jobs[r->seq[i]];
		if (a->prio < b->prio || (a->prio == b->prio && a->seq > b->seq))
			fail_msg("run %d: (prio %d, seq %d) before (prio %d, seq %d)", i, a->prio, a->seq, b->prio,
				 b->seq);
	}
	assert_int_equal(jobs[r->seq[0]].prio, INT32_MAX);
	assert_int_equal(jobs[r->seq[n - 1]].prio, INT32_MIN);
	rec_free(r);
}

/* Random enqueues and claims against a model: every claim takes the highest
 * priority, the oldest among equals. */
static void test_priorities_model(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 512, 64 * 1024, 8u << 20);
	int ops = tu_sanitized() ? 1500 : 5000;
	struct rec *r = rec_new(ops + 1);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "rec", h_record, r), 0);

	struct prio_payload *model = calloc((size_t)ops, sizeof(*model));
	char *alive = calloc((size_t)ops, 1);
	int nj = 0, pending = 0;
	uint32_t x = 12345;
	for (int op = 0; op < ops; op++) {
		x = x * 1103515245u + 12345u;
		int enq = pending == 0 || (pending < 400 && (x >> 16) % 3 != 0);
		if (enq) {
			x = x * 1103515245u + 12345u;
			/* 50 distinct values, with many repeats. */
			int32_t prio = (int32_t)((x >> 16) % 50) * 1000 - 25000;
			model[nj].prio = prio;
			model[nj].seq = nj;
			struct taskring_enqueue_opts o = tu_eopts();
			o.priority = prio;
			assert_rc(taskring_enqueue(st, "rec", &model[nj], sizeof(model[nj]), &o, NULL), 0);
			alive[nj] = 1;
			nj++;
			pending++;
		} else {
			int best = -1;
			for (int i = 0; i < nj; i++)
				if (alive[i] && (best < 0 || model[i].prio > model[best].prio))
					best = i; /* first of the highest = oldest */
			int before = r->n;
			assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
			assert_int_equal(r->n, before + 1);
			int got = r->seq[before];
			if (got != best)
				fail_msg("op %d: ran seq %d (prio %d), expected seq %d (prio %d)", op, got,
					 got >= 0 ? model[got].prio : 0, best, model[best].prio);
			alive[best] = 0;
			pending--;
		}
	}
	/* Drain. */
	while (pending > 0) {
		int best = -1;
		for (int i = 0; i < nj; i++)
			if (alive[i] && (best < 0 || model[i].prio > model[best].prio))
				best = i;
		int before = r->n;
		assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
		assert_int_equal(r->seq[before], best);
		alive[best] = 0;
		pending--;
	}
	assert_rc(taskring_worker_run_one(w, 0), 0);
	free(model);
	free(alive);
	rec_free(r);
}

/* ------------------------------------------------------------------------ */
/* Delay, eta, pause, queues                                                 */
/* ------------------------------------------------------------------------ */

static void test_delay_and_eta(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct rec *r = rec_new(16);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "rec", h_record, r), 0);

	/* delay 200 ms */
	struct prio_payload pl = {0, 1};
	struct taskring_enqueue_opts o = tu_eopts();
	o.delay_ns = 200 * MS;
	struct taskring_job j;
	int64_t m0 = tu_now_ns();
	int64_t t0 = now_real();
	assert_rc(taskring_enqueue(st, "rec", &pl, sizeof(pl), &o, &j), 0);
	struct taskring_job_info in = jinfo(&j);
	assert_true(in.scheduled_at_ns >= t0 + 200 * MS);
	assert_true(in.scheduled_at_ns <= now_real() + 200 * MS);
	assert_rc(taskring_worker_run_one(w, 50 * MS), 0);
	if (tu_now_ns() - m0 < 180 * MS)
		assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	/* Waiting longer gets it when due, not before. */
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_true(tu_now_ns() - m0 >= 195 * MS);
	in = jinfo(&j);
	assert_int_equal(in.status, TASKRING_COMPLETE);
	assert_true(in.started_at_ns >= in.scheduled_at_ns);

	/* eta = now + 200 ms */
	o = tu_eopts();
	int64_t eta = now_real() + 200 * MS;
	o.eta_ns = eta;
	m0 = tu_now_ns();
	pl.seq = 2;
	assert_rc(taskring_enqueue(st, "rec", &pl, sizeof(pl), &o, &j), 0);
	in = jinfo(&j);
	assert_int_equal(in.scheduled_at_ns, eta);
	assert_rc(taskring_worker_run_one(w, 30 * MS), 0);
	assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_true(jinfo(&j).started_at_ns >= eta);

	/* eta in the past: runs at once. */
	o = tu_eopts();
	o.eta_ns = now_real() - 1 * SEC;
	pl.seq = 3;
	assert_rc(taskring_enqueue(st, "rec", &pl, sizeof(pl), &o, &j), 0);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_job_status(&j), TASKRING_COMPLETE);

	/* A not-yet-due job of high priority does not hold back a due one. */
	o = tu_eopts();
	o.delay_ns = 300 * MS;
	o.priority = 100;
	struct taskring_job late, now_j;
	pl.seq = 4;
	assert_rc(taskring_enqueue(st, "rec", &pl, sizeof(pl), &o, &late), 0);
	pl.seq = 5;
	assert_rc(taskring_enqueue(st, "rec", &pl, sizeof(pl), NULL, &now_j), 0);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_job_status(&now_j), TASKRING_COMPLETE);
	assert_rc(taskring_job_status(&late), TASKRING_PENDING);
	/* Once due, the delayed one joins at its priority: ahead of a low one. */
	o = tu_eopts();
	o.priority = -5;
	struct taskring_job low;
	pl.seq = 6;
	assert_rc(taskring_enqueue(st, "rec", &pl, sizeof(pl), &o, &low), 0);
	tu_sleep_ms(350);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_job_status(&late), TASKRING_COMPLETE);
	assert_rc(taskring_job_status(&low), TASKRING_PENDING);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_int_equal(r->n, 6);
	int32_t want[6] = {1, 2, 3, 5, 4, 6};
	for (int i = 0; i < 6; i++)
		assert_int_equal(r->seq[i], want[i]);

	rec_free(r);
}

static void test_delay_wakes_sleeping_worker_thread(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	assert_rc(taskring_worker_start(w), 0);
	tu_sleep_ms(20); /* let it go to sleep */
	struct taskring_enqueue_opts o = tu_eopts();
	o.delay_ns = 150 * MS;
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "echo", "zz", 2, &o, &j), 0);
	expect_echo_result(&j, "zz", 2);
	struct taskring_job_info in = jinfo(&j);
	assert_true(in.started_at_ns >= in.created_at_ns + 150 * MS);
}

struct bounded {
	struct taskring_worker *w;
	int64_t timeout;
	int rc;
	atomic_int done;
};

static void *bounded_main(void *arg)
{
	struct bounded *b = arg;
	b->rc = taskring_worker_run_one(b->w, b->timeout);
	atomic_store(&b->done, 1);
	return NULL;
}

/*
 * taskring_worker_run_one(@w, @timeout) in a helper thread. If it has not
 * returned 10 s after its timeout, the worker is stopped (so the call ends)
 * and the test fails with @what, instead of the whole program hanging.
 */
static int run_one_bounded(struct taskring_worker *w, int64_t timeout, const char *what)
{
	struct bounded b = {.w = w, .timeout = timeout};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, bounded_main, &b), 0);
	int64_t end = tu_now_ns() + timeout + 10 * SEC;
	while (!atomic_load(&b.done) && tu_now_ns() < end)
		tu_sleep_ms(1);
	if (!atomic_load(&b.done)) {
		taskring_worker_stop(w, 0);
		pthread_join(th, NULL);
		fail_msg("%s: taskring_worker_run_one(timeout %lld ms) did not return within 10 s after its timeout",
			 what, (long long)(timeout / MS));
	}
	pthread_join(th, NULL);
	return b.rc;
}

static void test_pause_resume(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);

	assert_rc(taskring_queue_pause(st, "default"), 0);
	assert_rc(taskring_queue_pause(st, "default"), 0); /* idempotent */
	assert_int_equal(stats(st, "default").paused, 1);
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "echo", "p", 1, NULL, &j), 0);
	assert_rc(run_one_bounded(w, 100 * MS, "paused queue with a ready job"), 0);
	assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	assert_rc(taskring_queue_resume(st, "default"), 0);
	assert_int_equal(stats(st, "default").paused, 0);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_job_status(&j), TASKRING_COMPLETE);
	assert_rc(taskring_queue_resume(st, "default"), 0); /* idempotent */

	/* With a worker thread asleep: paused jobs wait, resume wakes it. */
	assert_rc(taskring_queue_pause(st, "default"), 0);
	struct taskring_worker *w2 = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(w2, "echo", h_echo, NULL), 0);
	assert_rc(taskring_worker_start(w2), 0);
	struct taskring_job k;
	assert_rc(taskring_enqueue(st, "echo", "q", 1, NULL, &k), 0);
	tu_sleep_ms(100);
	assert_rc(taskring_job_status(&k), TASKRING_PENDING);
	size_t len;
	char buf[8];
	assert_rc(taskring_job_result(&k, 50 * MS, buf, sizeof(buf), &len), -ETIMEDOUT);
	assert_rc(taskring_queue_resume(st, "default"), 0);
	expect_echo_result(&k, "q", 1);
	assert_rc(taskring_worker_destroy(w2), 0);

	/* Pausing one queue does not stop another. */
	assert_rc(taskring_queue_pause(st, "other"), 0);
	const char *const qs[] = {"other", "default"};
	struct taskring_worker *w3 = tu_worker(st, qs, 2, 1);
	assert_rc(taskring_worker_register(w3, "echo", h_echo, NULL), 0);
	struct taskring_enqueue_opts o = tu_eopts();
	o.queue = "other";
	struct taskring_job a, b;
	assert_rc(taskring_enqueue(st, "echo", "a", 1, &o, &a), 0);
	assert_rc(taskring_enqueue(st, "echo", "b", 1, NULL, &b), 0);
	assert_rc(taskring_worker_run_one(w3, 1 * SEC), 1);
	assert_rc(taskring_job_status(&b), TASKRING_COMPLETE);
	assert_rc(taskring_job_status(&a), TASKRING_PENDING);
	assert_rc(run_one_bounded(w3, 50 * MS, "one of two queues paused, with a ready job"), 0);
	assert_rc(taskring_queue_resume(st, "other"), 0);
	assert_rc(taskring_worker_run_one(w3, 1 * SEC), 1);
	assert_rc(taskring_job_status(&a), TASKRING_COMPLETE);
	assert_rc(taskring_worker_destroy(w3), 0);
}

static void test_queues_in_list_order(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct rec *r = rec_new(32);
	const char *const qs[] = {"high", "low"};
	struct taskring_worker *w = fx_worker(f, qs, 2);
	assert_rc(taskring_worker_register(w, "rec", h_record, r), 0);
	/* Five in "low" (with a higher priority), then five in "high". */
	struct prio_payload pl[10];
	for (int i = 0; i < 10; i++) {
		struct taskring_enqueue_opts o = tu_eopts();
		o.queue = i < 5 ? "low" : "high";
		o.priority = i < 5 ? 1000 : 0;
		pl[i].prio = o.priority;
		pl[i].seq = i;
		struct taskring_job j;
		assert_rc(taskring_enqueue(st, "rec", &pl[i], sizeof(pl[i]), &o, &j), 0);
		assert_string_equal(jinfo(&j).queue, o.queue);
	}
	for (int i = 0; i < 5; i++)
		assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	/* A new "high" job jumps ahead of the rest of "low". */
	struct prio_payload extra = {0, 10};
	struct taskring_enqueue_opts o = tu_eopts();
	o.queue = "high";
	assert_rc(taskring_enqueue(st, "rec", &extra, sizeof(extra), &o, NULL), 0);
	for (int i = 0; i < 6; i++)
		assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_worker_run_one(w, 0), 0);
	int32_t want[11] = {5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4};
	assert_int_equal(r->n, 11);
	for (int i = 0; i < 11; i++)
		if (r->seq[i] != want[i])
			fail_msg("run %d was seq %d, expected %d", i, r->seq[i], want[i]);
	expect_counts(st, "high", 0, 0, 6, 0, 0, 0);
	expect_counts(st, "low", 0, 0, 5, 0, 0, 0);
	/* A worker of the default queue sees none of these. */
	struct taskring_worker *wd = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(wd, "rec", h_record, r), 0);
	o.queue = "low";
	assert_rc(taskring_enqueue(st, "rec", &extra, sizeof(extra), &o, NULL), 0);
	assert_rc(taskring_worker_run_one(wd, 50 * MS), 0);
	assert_rc(taskring_worker_destroy(wd), 0);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	rec_free(r);
}

/* ------------------------------------------------------------------------ */
/* Result waiting                                                            */
/* ------------------------------------------------------------------------ */

static int h_big_result(struct taskring_ctx *ctx, void *arg)
{
	char out[100];
	for (int i = 0; i < 100; i++)
		out[i] = (char)('a' + i % 26);
	return taskring_ctx_result(ctx, out, sizeof(out)) == 0 ? TASKRING_OK : TASKRING_FAIL;
}

static void test_result_timeout_nobufs_wait(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "big", h_big_result, NULL), 0);
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "big", "x", 1, NULL, &j), 0);

	/* Nobody runs it: -ETIMEDOUT after (not before) the timeout. */
	char buf[128];
	memset(buf, 'U', sizeof(buf));
	size_t len = 555;
	int64_t m0 = tu_now_ns();
	assert_rc(taskring_job_result(&j, 100 * MS, buf, sizeof(buf), &len), -ETIMEDOUT);
	assert_true(tu_now_ns() - m0 >= 99 * MS);
	assert_int_equal(len, 555);
	assert_int_equal(buf[0], 'U');
	m0 = tu_now_ns();
	assert_rc(taskring_job_wait(&j, 60 * MS), -ETIMEDOUT);
	assert_true(tu_now_ns() - m0 >= 59 * MS);

	/* Waiters in other threads are woken by completion. */
	struct waiter wr = {.job = j}, ww = {.job = j, .use_wait = 1};
	assert_int_equal(pthread_create(&wr.th, NULL, waiter_main, &wr), 0);
	assert_int_equal(pthread_create(&ww.th, NULL, waiter_main, &ww), 0);
	tu_sleep_ms(30);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	pthread_join(wr.th, NULL);
	pthread_join(ww.th, NULL);
	assert_rc(ww.rc, TASKRING_COMPLETE);
	assert_rc(wr.rc, -ENOBUFS); /* its buffer holds 64 bytes */

	/* Too small: -ENOBUFS with the needed length; buffer untouched. */
	memset(buf, 'U', sizeof(buf));
	len = 0;
	assert_rc(taskring_job_result(&j, 0, buf, 99, &len), -ENOBUFS);
	assert_int_equal(len, 100);
	assert_int_equal(buf[0], 'U');
	len = 0;
	assert_rc(taskring_job_result(&j, 0, NULL, 0, &len), -ENOBUFS);
	assert_int_equal(len, 100);
	assert_rc(taskring_job_result(&j, 0, buf, 100, &len), 0);
	assert_int_equal(len, 100);
	assert_memory_equal(buf, "abcdefghijklmnopqrstuvwxyzabcd", 30);
	assert_rc(taskring_job_wait(&j, -1), TASKRING_COMPLETE);
}

/* ------------------------------------------------------------------------ */
/* Slot recycling and result_ttl                                             */
/* ------------------------------------------------------------------------ */

static void expect_gone(const struct taskring_job *j, const char *id)
{
	char buf[256];
	size_t len = 0;
	struct taskring_job_info in;
	struct taskring_error_record er;
	struct taskring_job x;
	assert_rc(taskring_job_status(j), -ENOENT);
	assert_rc(taskring_job_progress(j), -ENOENT);
	assert_rc(taskring_job_error(j, buf, sizeof(buf)), -ENOENT);
	assert_rc(taskring_job_errors(j, &er, 1), -ENOENT);
	assert_rc(taskring_job_info(j, &in), -ENOENT);
	assert_rc(taskring_job_payload(j, buf, sizeof(buf), &len), -ENOENT);
	assert_rc(taskring_job_to_json(j, buf, sizeof(buf)), -ENOENT);
	assert_rc(taskring_job_wait(j, 0), -ENOENT);
	assert_rc(taskring_job_wait(j, 10 * MS), -ENOENT);
	assert_rc(taskring_job_result(j, 0, buf, sizeof(buf), &len), -ENOENT);
	assert_rc(taskring_job_result(j, 10 * MS, buf, sizeof(buf), &len), -ENOENT);
	assert_rc(taskring_job_cancel(j), -ENOENT);
	assert_rc(taskring_job_retry_dead(j, NULL), -ENOENT);
	assert_rc(taskring_job_lookup(j->store, id, &x), -ENOENT);
}

static void test_slot_recycling(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 16, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	struct taskring_job old[16], nw[16];
	char oid[16][TASKRING_ID_LEN + 1], nid[16][TASKRING_ID_LEN + 1];
	char pl[16][8];
	for (int i = 0; i < 16; i++) {
		snprintf(pl[i], sizeof(pl[i]), "old%02d", i);
		assert_rc(taskring_enqueue(st, "echo", pl[i], 5, NULL, &old[i]), 0);
		job_id_of(&old[i], oid[i]);
		assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
		assert_rc(taskring_job_status(&old[i]), TASKRING_COMPLETE);
	}
	/* One new job takes the oldest terminal slot only. */
	assert_rc(taskring_enqueue(st, "echo", "new00", 5, NULL, &nw[0]), 0);
	job_id_of(&nw[0], nid[0]);
	expect_gone(&old[0], oid[0]);
	for (int i = 1; i < 16; i++) {
		assert_rc(taskring_job_status(&old[i]), TASKRING_COMPLETE);
		expect_echo_result(&old[i], pl[i], 5);
	}
	for (int i = 1; i < 16; i++) {
		char p[8];
		snprintf(p, sizeof(p), "new%02d", i);
		assert_rc(taskring_enqueue(st, "echo", p, 5, NULL, &nw[i]), 0);
		job_id_of(&nw[i], nid[i]);
	}
	/* Every old handle and id is gone; never the new job's data. */
	for (int i = 0; i < 16; i++)
		expect_gone(&old[i], oid[i]);
	for (int i = 0; i < 16; i++) {
		char p[8], buf[8];
		size_t len;
		snprintf(p, sizeof(p), "new%02d", i);
		assert_rc(taskring_job_status(&nw[i]), TASKRING_PENDING);
		assert_rc(taskring_job_payload(&nw[i], buf, sizeof(buf), &len), 0);
		assert_int_equal(len, 5);
		assert_memory_equal(buf, p, 5);
		struct taskring_job x;
		assert_rc(taskring_job_lookup(st, nid[i], &x), 0);
		for (int k = 0; k < 16; k++)
			assert_string_not_equal(nid[i], oid[k]);
	}
	/* Full of pending jobs: the 17th is refused. */
	assert_rc(taskring_enqueue(st, "echo", "x", 1, NULL, NULL), -EAGAIN);
	for (int i = 0; i < 16; i++)
		assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	for (int i = 0; i < 16; i++) {
		char p[8];
		snprintf(p, sizeof(p), "new%02d", i);
		expect_echo_result(&nw[i], p, 5);
	}
	/* Many more rounds: old handles never resolve to new jobs. */
	int rounds = tu_sanitized() ? 20 : 100;
	for (int r = 0; r < rounds; r++) {
		struct taskring_job j;
		char p[16];
		snprintf(p, sizeof(p), "r%d", r);
		assert_rc(taskring_enqueue(st, "echo", p, strlen(p), NULL, &j), 0);
		assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
		expect_echo_result(&j, p, strlen(p));
	}
	for (int i = 0; i < 16; i++)
		expect_gone(&nw[i], nid[i]);
}

static void test_result_ttl(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	struct taskring_enqueue_opts o = tu_eopts();
	o.result_ttl_ns = 50 * MS;
	struct taskring_job j, keep;
	char id[TASKRING_ID_LEN + 1];
	assert_rc(taskring_enqueue(st, "echo", "ttl", 3, &o, &j), 0);
	assert_rc(taskring_enqueue(st, "echo", "keep", 4, NULL, &keep), 0);
	job_id_of(&j, id);
	assert_int_equal(jinfo(&j).result_ttl_ns, 50 * MS);
	/* A pending job does not expire by its result ttl. */
	tu_sleep_ms(100);
	assert_rc(taskring_job_status(&j), TASKRING_PENDING);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	int64_t m0 = tu_now_ns();
	char buf[8];
	size_t len;
	int rc = taskring_job_result(&j, 0, buf, sizeof(buf), &len);
	if (tu_now_ns() - m0 < 40 * MS) /* read within the ttl */
		assert_rc(rc, 0);
	tu_sleep_ms(100);
	expect_gone(&j, id);
	expect_echo_result(&keep, "keep", 4);
	/* A cancelled job with a ttl goes away too. */
	struct taskring_job c;
	char cid[TASKRING_ID_LEN + 1];
	assert_rc(taskring_enqueue(st, "echo", "c", 1, &o, &c), 0);
	job_id_of(&c, cid);
	assert_rc(taskring_job_cancel(&c), 0);
	tu_sleep_ms(100);
	expect_gone(&c, cid);
}

/* ------------------------------------------------------------------------ */
/* Full store                                                                */
/* ------------------------------------------------------------------------ */

struct later {
	struct taskring_worker *w;
	struct taskring_job job;
	int delay_ms;
	int rc;
	int cancel; /* cancel job instead of running one */
	pthread_t th;
};

static void *later_main(void *arg)
{
	struct later *l = arg;
	tu_sleep_ms(l->delay_ms);
	if (l->cancel)
		l->rc = taskring_job_cancel(&l->job);
	else
		l->rc = taskring_worker_run_one(l->w, 5 * SEC);
	return NULL;
}

static void test_store_full(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 16, 64 * 1024, 8u << 20);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	struct taskring_job jobs[16];
	for (int i = 0; i < 16; i++)
		assert_rc(taskring_enqueue(st, "echo", "f", 1, NULL, &jobs[i]), 0);
	struct taskring_queue_stats s0 = stats(st, NULL);
	struct taskring_store_info i0, i1;
	assert_rc(taskring_store_info(st, &i0), 0);

	struct taskring_job sentinel, out;
	memset(&sentinel, 0xa5, sizeof(sentinel));
	out = sentinel;
	assert_rc(taskring_enqueue(st, "echo", "g", 1, NULL, &out), -EAGAIN);
	assert_memory_equal(&out, &sentinel, sizeof(out));
	struct taskring_enqueue_opts o = tu_eopts();
	o.flags = TASKRING_ENQ_BLOCK;
	o.block_timeout_ns = 0;
	assert_rc(taskring_enqueue(st, "echo", "g", 1, &o, &out), -ETIMEDOUT);
	o.block_timeout_ns = 100 * MS;
	int64_t m0 = tu_now_ns();
	assert_rc(taskring_enqueue(st, "echo", "g", 1, &o, &out), -ETIMEDOUT);
	assert_true(tu_now_ns() - m0 >= 99 * MS);
	assert_memory_equal(&out, &sentinel, sizeof(out));
	struct taskring_queue_stats s1 = stats(st, NULL);
	tu_assert_stats_same(&s0, &s1);
	assert_rc(taskring_store_info(st, &i1), 0);
	assert_int_equal(i1.arena_used, i0.arena_used);

	/* Blocked, and a thread completes a job meanwhile: it goes through. */
	struct later l = {.w = w, .delay_ms = 50};
	assert_int_equal(pthread_create(&l.th, NULL, later_main, &l), 0);
	o.block_timeout_ns = 5 * SEC;
	assert_rc(taskring_enqueue(st, "echo", "h", 1, &o, &out), 0);
	pthread_join(l.th, NULL);
	assert_rc(l.rc, 1);
	assert_rc(taskring_job_status(&out), TASKRING_PENDING);
	assert_rc(taskring_job_status(&jobs[0]), -ENOENT); /* its slot was taken */

	/* Forever, and a thread cancels a pending job. */
	struct later c = {.job = jobs[1], .delay_ms = 50, .cancel = 1};
	assert_int_equal(pthread_create(&c.th, NULL, later_main, &c), 0);
	o.block_timeout_ns = -1;
	struct taskring_job out2;
	assert_rc(taskring_enqueue(st, "echo", "i", 1, &o, &out2), 0);
	pthread_join(c.th, NULL);
	assert_rc(c.rc, 0);
	assert_rc(taskring_job_status(&out2), TASKRING_PENDING);
	expect_counts(st, NULL, 16, 0, 0, 0, 0, 0);
	struct taskring_queue_stats s2 = stats(st, NULL);
	assert_int_equal(s2.enqueued, 18);
	assert_int_equal(s2.completed, 1);
	assert_int_equal(s2.cancelled, 1);
}

static void test_arena_full(void **state)
{
	struct tu_fx *f = *state;
	/* 256 KiB arena, 64 KiB payloads: the arena fills before the slots. */
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 256 * 1024);
	assert_rc(taskring_task_declare(st, "t"), 0);
	uint8_t *big = calloc(1, 64 * 1024);
	int ok = 0, rc = 0;
	for (int i = 0; i < 64; i++) {
		rc = taskring_enqueue(st, "t", big, 64 * 1024, NULL, NULL);
		if (rc != 0)
			break;
		ok++;
	}
	assert_rc(rc, -EAGAIN);
	assert_true(ok >= 1 && ok <= 4);
	struct taskring_queue_stats s0 = stats(st, NULL);
	struct taskring_store_info i0, i1;
	assert_rc(taskring_store_info(st, &i0), 0);
	assert_rc(taskring_enqueue(st, "t", big, 64 * 1024, NULL, NULL), -EAGAIN);
	struct taskring_enqueue_opts o = tu_eopts();
	o.flags = TASKRING_ENQ_BLOCK;
	o.block_timeout_ns = 30 * MS;
	assert_rc(taskring_enqueue(st, "t", big, 64 * 1024, &o, NULL), -ETIMEDOUT);
	struct taskring_queue_stats s1 = stats(st, NULL);
	tu_assert_stats_same(&s0, &s1);
	assert_rc(taskring_store_info(st, &i1), 0);
	assert_int_equal(i1.arena_used, i0.arena_used);
	assert_int_equal(s1.by_status[TASKRING_PENDING], (uint64_t)ok);
	/* Small payloads still fit (inline, no arena). */
	assert_rc(taskring_enqueue(st, "t", "tiny", 4, NULL, NULL), 0);
	free(big);
}

/* ------------------------------------------------------------------------ */
/* Batch enqueue                                                             */
/* ------------------------------------------------------------------------ */

static void test_batch(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 2048, 64 * 1024, 16u << 20);
	struct rec *r = rec_new(2048);
	struct taskring_worker *w = fx_worker(f, NULL, 0);
	assert_rc(taskring_worker_register(w, "rec", h_record, r), 0);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);

	enum { N = 1000 };
	struct taskring_enqueue_item *items = calloc(N, sizeof(*items));
	struct prio_payload *pl = calloc(N, sizeof(*pl));
	struct taskring_job *jobs = calloc(N, sizeof(*jobs));
	for (int i = 0; i < N; i++) {
		pl[i].seq = i;
		items[i].task = "rec";
		items[i].payload = &pl[i];
		items[i].len = sizeof(pl[i]);
	}
	assert_rc(taskring_enqueue_batch(st, items, N, NULL, jobs), 0);
	for (int i = 0; i < N; i++) {
		char buf[16];
		size_t len;
		assert_rc(taskring_job_status(&jobs[i]), TASKRING_PENDING);
		assert_rc(taskring_job_payload(&jobs[i], buf, sizeof(buf), &len), 0);
		assert_int_equal(len, sizeof(pl[i]));
		assert_memory_equal(buf, &pl[i], len);
	}
	struct taskring_queue_stats s = stats(st, NULL);
	assert_int_equal(s.enqueued, N);
	assert_int_equal(s.by_status[TASKRING_PENDING], N);
	for (int i = 0; i < N; i++)
		assert_rc(taskring_worker_run_one(w, 1 * SEC), 1);
	assert_rc(taskring_worker_run_one(w, 0), 0);
	assert_int_equal(r->n, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(r->seq[i], i); /* FIFO in item order */
	for (int i = 0; i < N; i++)
		assert_rc(taskring_job_status(&jobs[i]), TASKRING_COMPLETE);

	/* Per-item options and batch options. */
	struct taskring_enqueue_opts bo = tu_eopts(), io = tu_eopts();
	bo.priority = 3;
	bo.queue = "bq";
	io.priority = 9;
	io.queue = "iq";
	struct taskring_enqueue_item two[2] = {
		{.task = "echo", .payload = "one", .len = 3, .opts = NULL},
		{.task = "echo", .payload = "two", .len = 3, .opts = &io},
	};
	struct taskring_job tj[2];
	assert_rc(taskring_enqueue_batch(st, two, 2, &bo, tj), 0);
	struct taskring_job_info a = jinfo(&tj[0]), b = jinfo(&tj[1]);
	assert_string_equal(a.queue, "bq");
	assert_int_equal(a.priority, 3);
	assert_string_equal(b.queue, "iq");
	assert_int_equal(b.priority, 9);
	/* jobs may be NULL */
	assert_rc(taskring_enqueue_batch(st, two, 2, NULL, NULL), 0);
	free(items);
	free(pl);
	free(jobs);
	rec_free(r);
}

static void test_batch_all_or_nothing(void **state)
{
	struct tu_fx *f = *state;
	const uint32_t maxp = 4096;
	struct taskring_store *st = fx_open(f, 64, maxp, 1u << 20);
	assert_rc(taskring_task_declare(st, "t"), 0);
	/* Some jobs already there. */
	for (int i = 0; i < 3; i++)
		assert_rc(taskring_enqueue(st, "t", "pre-existing-payload-longer-than-32", 35, NULL, NULL), 0);
	struct taskring_queue_stats s0 = stats(st, NULL);
	struct taskring_store_info i0;
	assert_rc(taskring_store_info(st, &i0), 0);

	enum { N = 20 };
	static char big[5000];
	struct taskring_enqueue_item items[N] = {0};
	struct taskring_enqueue_opts bad = tu_eopts();
	bad.timeout_ns = 0;
	struct taskring_job jobs[N], sentinel[N];
	memset(sentinel, 0xa5, sizeof(sentinel));
	for (int k = 0; k < 6; k++) {
		for (int i = 0; i < N; i++) {
			items[i].task = "t";
			items[i].payload = "a payload that is longer than the inline space";
			items[i].len = 46;
			items[i].opts = NULL;
		}
		int want;
		switch (k) {
		case 0: items[10].task = "nope"; want = TASKRING_ENOTASK; break;
		case 1: items[19].len = maxp + 1; items[19].payload = big; want = -EMSGSIZE; break;
		case 2: items[5].opts = &bad; want = -EINVAL; break;
		case 3: items[0].task = NULL; want = -EINVAL; break;
		case 4: items[7].payload = NULL; want = -EINVAL; break;
		default: items[N - 1].task = ""; want = -EINVAL; break;
		}
		memcpy(jobs, sentinel, sizeof(jobs));
		int rc = taskring_enqueue_batch(st, items, N, NULL, jobs);
		/* Task "": the header lists a bad task name under neither -EINVAL
		 * nor ENOTASK for enqueue; either refusal is fine. */
		if (k == 5 && rc == TASKRING_ENOTASK)
			rc = -EINVAL;
		if (rc != want)
			fail_msg("bad batch case %d: enqueue_batch = %d (%s), expected %d (%s)", k, rc,
				 taskring_strerror(rc), want, taskring_strerror(want));
		assert_memory_equal(jobs, sentinel, sizeof(jobs));
		struct taskring_queue_stats s1 = stats(st, NULL);
		tu_assert_stats_same(&s0, &s1);
		struct taskring_store_info i1;
		assert_rc(taskring_store_info(st, &i1), 0);
		assert_int_equal(i1.arena_used, i0.arena_used);
		assert_int_equal(i1.queues_used, i0.queues_used);
		assert_int_equal(i1.tasks_used, i0.tasks_used);
	}

	/* More than the free slots (61 free): -EAGAIN, nothing enqueued. */
	struct taskring_enqueue_item many[64] = {0};
	for (int i = 0; i < 64; i++) {
		many[i].task = "t";
		many[i].payload = "m";
		many[i].len = 1;
		many[i].opts = NULL;
	}
	assert_rc(taskring_enqueue_batch(st, many, 62, NULL, NULL), -EAGAIN);
	struct taskring_enqueue_opts blk = tu_eopts();
	blk.flags = TASKRING_ENQ_BLOCK;
	blk.block_timeout_ns = 30 * MS;
	assert_rc(taskring_enqueue_batch(st, many, 62, &blk, NULL), -ETIMEDOUT);
	struct taskring_queue_stats s2 = stats(st, NULL);
	tu_assert_stats_same(&s0, &s2);
	/* More than the store's slots: -E2BIG. */
	struct taskring_enqueue_item *huge = calloc(65, sizeof(*huge));
	for (int i = 0; i < 65; i++) {
		huge[i].task = "t";
		huge[i].payload = "m";
		huge[i].len = 1;
	}
	assert_rc(taskring_enqueue_batch(st, huge, 65, NULL, NULL), -E2BIG);
	free(huge);
	/* Exactly the free slots: fine, and then the store is full. */
	assert_rc(taskring_enqueue_batch(st, many, 61, NULL, NULL), 0);
	assert_rc(taskring_enqueue(st, "t", "x", 1, NULL, NULL), -EAGAIN);
	expect_counts(st, NULL, 64, 0, 0, 0, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* Worker threads                                                            */
/* ------------------------------------------------------------------------ */

static void test_worker_threads_many_jobs(void **state)
{
	struct tu_fx *f = *state;
	int n = tu_sanitized() ? 1000 : 10000;
	struct taskring_store *st = fx_open(f, 16384, 64 * 1024, 8u << 20);
	struct taskring_worker *w = tu_worker(st, NULL, 0, 2);
	f->w = w;
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	assert_rc(taskring_worker_start(w), 0);
	assert_rc(taskring_worker_start(w), -EBUSY);
	struct taskring_job *jobs = calloc((size_t)n, sizeof(*jobs));
	uint32_t *pl = calloc((size_t)n, sizeof(*pl));
	for (int i = 0; i < n; i++) {
		pl[i] = (uint32_t)i * 2654435761u;
		assert_rc(taskring_enqueue(st, "echo", &pl[i], 4, NULL, &jobs[i]), 0);
	}
	for (int i = 0; i < n; i++)
		expect_echo_result(&jobs[i], &pl[i], 4);
	struct taskring_queue_stats s = stats(st, NULL);
	assert_int_equal(s.completed, (uint64_t)n);
	assert_int_equal(s.started, (uint64_t)n);
	assert_int_equal(s.by_status[TASKRING_COMPLETE], (uint64_t)n);
	assert_rc(taskring_worker_stop(w, 5 * SEC), 0);
	assert_rc(taskring_worker_run_one(w, 10 * MS), 0); /* stopping */
	free(jobs);
	free(pl);
}

/*
 * Once result() has returned a job's result, the counters include it: a
 * caller that saw N results never reads completed < N.
 */
static void test_counters_visible_with_result(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct taskring_worker *w = tu_worker(st, NULL, 0, 1);
	f->w = w;
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	assert_rc(taskring_worker_start(w), 0);
	int n = tu_sanitized() ? 300 : 3000;
	for (int i = 0; i < n; i++) {
		struct taskring_job j;
		uint32_t v = (uint32_t)i;
		assert_rc(taskring_enqueue(st, "echo", &v, 4, NULL, &j), 0);
		expect_echo_result(&j, &v, 4);
		struct taskring_queue_stats s = stats(st, "default");
		if (s.completed != (uint64_t)i + 1 || s.started != (uint64_t)i + 1)
			fail_msg("after %d results: completed = %llu, started = %llu", i + 1,
				 (unsigned long long)s.completed, (unsigned long long)s.started);
	}
}

struct sleeper {
	atomic_int started;
	int ms;
};

static int h_sleep(struct taskring_ctx *ctx, void *arg)
{
	struct sleeper *s = arg;
	atomic_store(&s->started, 1);
	tu_sleep_ms(s->ms);
	return taskring_ctx_result(ctx, "slept", 5) == 0 ? TASKRING_OK : TASKRING_FAIL;
}

static void test_stop_drains_running_job(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct sleeper sl = {.ms = 100};
	struct taskring_worker *w = tu_worker(st, NULL, 0, 2);
	assert_rc(taskring_worker_register(w, "sleep", h_sleep, &sl), 0);
	assert_rc(taskring_worker_start(w), 0);
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "sleep", "s", 1, NULL, &j), 0);
	wait_flag(&sl.started);
	assert_rc(taskring_worker_stop(w, 1 * SEC), 0);
	/* Drained: the job finished before stop returned. */
	assert_rc(taskring_job_status(&j), TASKRING_COMPLETE);
	/* Stopped: a new job is not claimed. */
	struct taskring_job k;
	assert_rc(taskring_enqueue(st, "sleep", "t", 1, NULL, &k), 0);
	tu_sleep_ms(50);
	assert_rc(taskring_job_status(&k), TASKRING_PENDING);
	assert_rc(taskring_worker_destroy(w), 0);
	assert_rc(taskring_job_status(&k), TASKRING_PENDING);
	/* The store can be closed now that the worker is gone (teardown). */
}

static void test_stop_drain_timeout_cancels(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 64, 64 * 1024, 8u << 20);
	struct cw c = {.on_cancel = TASKRING_CANCEL};
	struct taskring_worker *w = tu_worker(st, NULL, 0, 1);
	assert_rc(taskring_worker_register(w, "spin", h_cancel_wait, &c), 0);
	assert_rc(taskring_worker_start(w), 0);
	struct taskring_job j;
	assert_rc(taskring_enqueue(st, "spin", "s", 1, NULL, &j), 0);
	wait_flag(&c.started);
	int64_t m0 = tu_now_ns();
	assert_rc(taskring_worker_stop(w, 50 * MS), -ETIMEDOUT);
	assert_true(tu_now_ns() - m0 >= 49 * MS);
	assert_rc(taskring_worker_destroy(w), 0);
	assert_int_equal(atomic_load(&c.saw_cancel), 1);
	assert_rc(taskring_job_status(&j), TASKRING_CANCELLED);
	size_t len;
	assert_rc(taskring_job_result(&j, 0, NULL, 0, &len), -ECANCELED);
}

/* ------------------------------------------------------------------------ */
/* Ids and lookup                                                            */
/* ------------------------------------------------------------------------ */

static void check_uuid7_text(const char *id)
{
	assert_int_equal(strlen(id), 36);
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (id[i] != '-')
				fail_msg("id %s: no dash at %d", id, i);
		} else if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) {
			fail_msg("id %s: char %d is not lowercase hex", id, i);
		}
	}
	if (id[14] != '7')
		fail_msg("id %s: version nibble is not 7", id);
	if (!strchr("89ab", id[19]))
		fail_msg("id %s: variant is not 10xx", id);
}

static uint64_t uuid_ms(const char *id)
{
	char hex[13];
	memcpy(hex, id, 8);
	memcpy(hex + 8, id + 9, 4);
	hex[12] = 0;
	return strtoull(hex, NULL, 16);
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, TASKRING_ID_LEN);
}

static void test_ids_and_lookup(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 1024, 64 * 1024, 8u << 20);
	assert_rc(taskring_task_declare(st, "t"), 0);

	/* Lookup returns a handle on the same job, in either case. */
	struct taskring_job j, l, u;
	char id[TASKRING_ID_LEN + 1], lid[TASKRING_ID_LEN + 1], up[TASKRING_ID_LEN + 1];
	assert_rc(taskring_enqueue(st, "t", "look", 4, NULL, &j), 0);
	job_id_of(&j, id);
	check_uuid7_text(id);
	assert_rc(taskring_job_lookup(st, id, &l), 0);
	job_id_of(&l, lid);
	assert_string_equal(lid, id);
	assert_string_equal(jinfo(&l).id, id);
	for (int i = 0; i <= 36; i++)
		up[i] = (char)toupper((unsigned char)id[i]);
	assert_rc(taskring_job_lookup(st, up, &u), 0);
	job_id_of(&u, lid);
	assert_string_equal(lid, id);
	char buf[8];
	size_t len;
	assert_rc(taskring_job_payload(&u, buf, sizeof(buf), &len), 0);
	assert_memory_equal(buf, "look", 4);
	/* It sees changes made through the other handle. */
	assert_rc(taskring_job_cancel(&l), 0);
	assert_rc(taskring_job_status(&j), TASKRING_CANCELLED);
	assert_rc(taskring_job_status(&u), TASKRING_CANCELLED);

	/* Time-ordered across milliseconds, and the time is now. */
	char prev[TASKRING_ID_LEN + 1];
	strcpy(prev, id);
	for (int i = 0; i < 10; i++) {
		tu_sleep_ms(2);
		struct taskring_job k;
		char kid[TASKRING_ID_LEN + 1];
		uint64_t before = (uint64_t)(now_real() / MS);
		assert_rc(taskring_enqueue(st, "t", "o", 1, NULL, &k), 0);
		uint64_t after = (uint64_t)(now_real() / MS);
		job_id_of(&k, kid);
		check_uuid7_text(kid);
		assert_true(uuid_ms(kid) >= before && uuid_ms(kid) <= after);
		if (strcmp(prev, kid) >= 0)
			fail_msg("%s (later) sorts before %s", kid, prev);
		strcpy(prev, kid);
		assert_rc(taskring_job_cancel(&k), 0);
	}

	/* Unique over many jobs (slots recycled meanwhile), time never goes back. */
	int n = tu_sanitized() ? 20000 : 100000;
	char (*ids)[TASKRING_ID_LEN + 1] = calloc((size_t)n, sizeof(*ids));
	uint64_t last_ms = 0;
	for (int i = 0; i < n; i++) {
		struct taskring_job k;
		assert_rc(taskring_enqueue(st, "t", NULL, 0, NULL, &k), 0);
		assert_rc(taskring_job_id(&k, ids[i]), 0);
		assert_rc(taskring_job_cancel(&k), 0);
		uint64_t ms = uuid_ms(ids[i]);
		if (ms < last_ms)
			fail_msg("id %d goes back in time: %s", i, ids[i]);
		last_ms = ms;
		if ((i & 1023) == 0)
			check_uuid7_text(ids[i]);
	}
	qsort(ids, (size_t)n, sizeof(*ids), cmp_id);
	for (int i = 1; i < n; i++)
		if (!memcmp(ids[i - 1], ids[i], TASKRING_ID_LEN))
			fail_msg("duplicate id %s", ids[i]);
	free(ids);
}

/* ------------------------------------------------------------------------ */
/* Stats                                                                     */
/* ------------------------------------------------------------------------ */

static void test_stats(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_store *st = fx_open(f, 128, 64 * 1024, 8u << 20);
	struct failer dead = {.fail_first = 1000, .outcome = TASKRING_RETRY};
	struct failer perm = {.fail_first = 1000, .outcome = TASKRING_FAIL};
	const char *const qs[] = {"a"};
	struct taskring_worker *w = fx_worker(f, qs, 1);
	assert_rc(taskring_worker_register(w, "echo", h_echo, NULL), 0);
	assert_rc(taskring_worker_register(w, "dead", h_fail, &dead), 0);
	assert_rc(taskring_worker_register(w, "perm", h_fail, &perm), 0);

	struct taskring_enqueue_opts oa = tu_eopts();
	oa.queue = "a";
	static const int64_t delays[] = {1 * MS};
	struct taskring_enqueue_opts od = oa;
	od.max_retries = 2;
	od.retry_delays_ns = delays;
	od.n_retry_delays = 1;
	struct taskring_enqueue_opts ob = tu_eopts();
	ob.queue = "b";

	/* Queue a: 3 complete, 1 failed, 1 dead (3 attempts), 1 cancelled, 2 pending. */
	for (int i = 0; i < 3; i++)
		assert_rc(taskring_enqueue(st, "echo", "e", 1, &oa, NULL), 0);
	assert_rc(taskring_enqueue(st, "perm", "p", 1, &oa, NULL), 0);
	assert_rc(taskring_enqueue(st, "dead", "d", 1, &od, NULL), 0);
	for (int i = 0; i < 7; i++) /* 3 + 1 + 3 attempts */
		assert_rc(taskring_worker_run_one(w, 5 * SEC), 1);
	assert_rc(taskring_worker_run_one(w, 20 * MS), 0);
	struct taskring_job c;
	assert_rc(taskring_enqueue(st, "echo", "c", 1, &oa, &c), 0);
	assert_rc(taskring_job_cancel(&c), 0);
	assert_rc(taskring_enqueue(st, "echo", "x", 1, &oa, NULL), 0);
	assert_rc(taskring_enqueue(st, "echo", "y", 1, &oa, NULL), 0);
	/* Queue b: 2 pending, 1 cancelled; paused. */
	assert_rc(taskring_enqueue(st, "echo", "b1", 2, &ob, NULL), 0);
	assert_rc(taskring_enqueue(st, "echo", "b2", 2, &ob, &c), 0);
	assert_rc(taskring_job_cancel(&c), 0);
	assert_rc(taskring_enqueue(st, "echo", "b3", 2, &ob, NULL), 0);
	assert_rc(taskring_queue_pause(st, "b"), 0);

	struct taskring_queue_stats a = stats(st, "a"), b = stats(st, "b"), all = stats(st, NULL);
	expect_counts(st, "a", 2, 0, 3, 1, 1, 1);
	assert_int_equal(a.enqueued, 8);
	assert_int_equal(a.started, 7);
	assert_int_equal(a.completed, 3);
	assert_int_equal(a.failed, 1);
	assert_int_equal(a.dead, 1);
	assert_int_equal(a.cancelled, 1);
	assert_int_equal(a.retried, 2);
	assert_int_equal(a.paused, 0);
	expect_counts(st, "b", 2, 0, 0, 0, 0, 1);
	assert_int_equal(b.enqueued, 3);
	assert_int_equal(b.started, 0);
	assert_int_equal(b.cancelled, 1);
	assert_int_equal(b.paused, 1);
	expect_counts(st, NULL, 4, 0, 3, 1, 1, 2);
	assert_int_equal(all.enqueued, 11);
	assert_int_equal(all.started, 7);
	assert_int_equal(all.completed, 3);
	assert_int_equal(all.failed, 1);
	assert_int_equal(all.dead, 1);
	assert_int_equal(all.cancelled, 2);
	assert_int_equal(all.retried, 2);
	/* The default queue exists (NULL queue in opts) or not; an unknown one does not. */
	struct taskring_queue_stats x;
	assert_rc(taskring_queue_stats(st, "never-made", &x), -ENOENT);

	/* A running job counts as running. */
	struct cw cwst = {.on_cancel = TASKRING_CANCEL};
	const char *const qr[] = {"r"};
	struct taskring_worker *wr = tu_worker(st, qr, 1, 1);
	assert_rc(taskring_worker_register(wr, "spin", h_cancel_wait, &cwst), 0);
	assert_rc(taskring_worker_start(wr), 0);
	struct taskring_enqueue_opts orr = tu_eopts();
	orr.queue = "r";
	struct taskring_job rj;
	assert_rc(taskring_enqueue(st, "spin", "r", 1, &orr, &rj), 0);
	wait_flag(&cwst.started);
	expect_counts(st, "r", 0, 1, 0, 0, 0, 0);
	assert_int_equal(stats(st, "r").started, 1);
	expect_counts(st, NULL, 4, 1, 3, 1, 1, 2);
	assert_rc(taskring_job_cancel(&rj), 1);
	assert_rc(taskring_job_wait(&rj, 10 * SEC), TASKRING_CANCELLED);
	assert_rc(taskring_worker_destroy(wr), 0);
	expect_counts(st, "r", 0, 0, 0, 0, 0, 1);
	assert_int_equal(stats(st, "r").cancelled, 1);
}


/* ---- prefetch ---------------------------------------------------------- */

static _Atomic int pf_gate, pf_ran[8];

/* Job 0 waits at the gate so that the others sit claimed behind it. */
static int pf_handler(struct taskring_ctx *ctx, void *arg)
{
	size_t len;
	const int *p = taskring_ctx_payload(ctx, &len);
	(void)arg;
	if (*p == 0)
		while (!atomic_load(&pf_gate))
			tu_sleep_ms(1);
	atomic_fetch_add(&pf_ran[*p], 1);
	return TASKRING_OK;
}

/*
 * @n jobs 0 .. n - 1 of task "pf" (payload: the index), then a started
 * worker (f->w, one thread) that claims up to @prefetch at once; returns
 * when the last job runs (within 5000 tries, 1 ms apart).
 */
static void pf_start(struct tu_fx *f, struct taskring_job *jobs, int n, uint32_t prefetch)
{
	struct taskring_store *st = fx_open(f, 64, 4096, 1u << 20);
	struct taskring_worker_opts wo;

	assert_rc(taskring_task_declare(st, "pf"), 0);
	for (int i = 0; i < n; i++)
		assert_rc(taskring_enqueue(st, "pf", &i, sizeof(i), NULL, &jobs[i]), 0);
	atomic_store(&pf_gate, 0);
	for (int i = 0; i < 8; i++)
		atomic_store(&pf_ran[i], 0);
	taskring_worker_opts_init(&wo);
	wo.prefetch = prefetch;
	assert_rc(taskring_worker_create(st, &wo, &f->w), 0);
	assert_rc(taskring_worker_register(f->w, "pf", pf_handler, NULL), 0);
	assert_rc(taskring_worker_start(f->w), 0);
	for (int tries = 0; taskring_job_status(&jobs[n - 1]) != TASKRING_RUNNING; tries++) {
		assert_true(tries < 5000);
		tu_sleep_ms(1);
	}
}

static void test_prefetch_claims_and_cancel(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_job jobs[5];

	/* One claim takes all five: they are all running while job 0 waits. */
	pf_start(f, jobs, 5, 8);
	for (int i = 0; i < 5; i++)
		assert_int_equal(taskring_job_status(&jobs[i]), TASKRING_RUNNING);
	/* A claimed job that has not started: the cancel request ends it
	 * without running its handler. */
	assert_int_equal(taskring_job_cancel(&jobs[2]), 1);
	atomic_store(&pf_gate, 1);
	for (int i = 0; i < 5; i++) {
		int rc = taskring_job_result(&jobs[i], 10 * SEC, NULL, 0, NULL);
		assert_rc(rc, i == 2 ? -ECANCELED : 0);
	}
	for (int i = 0; i < 5; i++)
		assert_int_equal(atomic_load(&pf_ran[i]), i == 2 ? 0 : 1);
	struct taskring_job_info in;
	assert_rc(taskring_job_info(&jobs[2], &in), 0);
	assert_int_equal(in.cancel_requested, 1);
}

/* A stop whose drain time runs out cancels the claimed jobs not started. */
static void test_prefetch_stop_cancels_unstarted(void **state)
{
	struct tu_fx *f = *state;
	struct taskring_job jobs[4];

	pf_start(f, jobs, 4, 4);
	/* Job 0 ignores cancel and waits at the gate: the drain runs out. */
	assert_rc(taskring_worker_stop(f->w, 50 * MS), -ETIMEDOUT);
	atomic_store(&pf_gate, 1);
	assert_rc(taskring_worker_destroy(f->w), 0);
	f->w = NULL;
	/* Job 0 finished (it was running); 1-3 were cancelled unstarted. */
	assert_int_equal(taskring_job_status(&jobs[0]), TASKRING_COMPLETE);
	for (int i = 1; i < 4; i++) {
		assert_int_equal(taskring_job_status(&jobs[i]), TASKRING_CANCELLED);
		assert_int_equal(atomic_load(&pf_ran[i]), 0);
	}
}

int main(void)
{
	tu_alarm(tu_sanitized() ? 280 : 120);
	const struct CMUnitTest tests[] = {
		T(test_lifecycle_complete),
		T(test_payload_sizes),
		T(test_result_sizes),
		T(test_retry_then_dead),
		T(test_max_retries_zero_runs_once),
		T(test_retry_delays_and_backoff),
		T(test_permanent_failure),
		T(test_unknown_outcome_is_retry),
		T(test_no_handler_in_worker),
		T(test_dead_letters_and_retry_dead),
		T(test_cancel_pending),
		T(test_cancel_running),
		T(test_priorities_static),
		T(test_priorities_model),
		T(test_delay_and_eta),
		T(test_delay_wakes_sleeping_worker_thread),
		T(test_pause_resume),
		T(test_prefetch_claims_and_cancel),
		T(test_prefetch_stop_cancels_unstarted),
		T(test_queues_in_list_order),
		T(test_result_timeout_nobufs_wait),
		T(test_slot_recycling),
		T(test_result_ttl),
		T(test_store_full),
		T(test_arena_full),
		T(test_batch),
		T(test_batch_all_or_nothing),
		T(test_worker_threads_many_jobs),
		T(test_counters_visible_with_result),
		T(test_stop_drains_running_job),
		T(test_stop_drain_timeout_cancels),
		T(test_ids_and_lookup),
		T(test_stats),
	};
	tu_test_filters();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
