/*
 * steer.c - the commands that change a store: create, rm, enqueue, wait,
 * cancel, retry, replay, purge, pause, resume, reap.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* cli_plain_args(), then open the store (the first argument). Returns -1
 * to go on, or the exit code. */
static int simple_args(const char *cmd, int argc, char **argv, int lo, int hi, const char *what, int *json,
		       struct taskring_store **stp)
{
	int ex = cli_plain_args(cmd, argc, argv, lo, hi, what, json);
	if (ex >= 0)
		return ex;
	return cli_open(argv[optind], stp) ? EXIT_FAIL : -1;
}

/* ---- create / rm ------------------------------------------------------------------ */

int cmd_create(int argc, char **argv)
{
	static const struct option lo[] = {
		{"slots", 1, 0, 's'},         {"max-payload", 1, 0, 'p'}, {"arena", 1, 0, 'a'},
		{"queues", 1, 0, 'q'},        {"tasks", 1, 0, 't'},       {"log-dir", 1, 0, 'l'},
		{"async", 0, 0, 'A'},         {"flush-interval", 1, 0, 'f'}, {"segment-bytes", 1, 0, 'S'},
		{"manual-compact", 0, 0, 'M'}, {"group", 0, 0, 'g'},      {"json", 0, 0, 'j'},
		{"help", 0, 0, 'h'},          {0, 0, 0, 0}};
	struct taskring_store_opts so = {.flags = TASKRING_STORE_EXCL};
	int c, ex, json = 0, async = 0;
	long long v;
	uint64_t b;
	while ((c = cli_getopt("create", argc, argv, lo, &ex)) != -1) {
		switch (c) {
		case -2: return ex;
		case 's':
			if ((ex = cli_long("create", "--slots", optarg, TASKRING_MIN_SLOTS, TASKRING_MAX_SLOTS, &v)))
				return ex;
			so.slots = (uint32_t)v;
			break;
		case 'q':
			if ((ex = cli_long("create", "--queues", optarg, 1, TASKRING_MAX_QUEUES, &v)))
				return ex;
			so.queues = (uint32_t)v;
			break;
		case 't':
			if ((ex = cli_long("create", "--tasks", optarg, 1, TASKRING_MAX_TASKS, &v)))
				return ex;
			so.tasks = (uint32_t)v;
			break;
		case 'p':
			if ((ex = cli_size("create", "--max-payload", optarg, &b)))
				return ex;
			if (b == 0 || b > TASKRING_MAX_MAX_PAYLOAD)
				return cli_usage_error("create", "--max-payload: 1 .. %u bytes", TASKRING_MAX_MAX_PAYLOAD);
			so.max_payload = (uint32_t)b;
			break;
		case 'a':
			if ((ex = cli_size("create", "--arena", optarg, &so.arena_bytes)))
				return ex;
			if (!so.arena_bytes)
				return cli_usage_error("create", "--arena: 0 bytes");
			break;
		case 'S':
			if ((ex = cli_size("create", "--segment-bytes", optarg, &so.segment_bytes)))
				return ex;
			break;
		case 'f':
			if ((ex = cli_duration("create", "--flush-interval", optarg, &so.flush_interval_ns)))
				return ex;
			break;
		case 'l': so.log_dir = optarg; break;
		case 'A': async = 1; break;
		case 'M': so.flags |= TASKRING_STORE_MANUAL_COMPACT; break;
		case 'g': so.flags |= TASKRING_STORE_GROUP; break;
		case 'j': json = 1; break;
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("create", "one STORE is needed");
	if (!so.log_dir && (async || so.flush_interval_ns || so.segment_bytes ||
			    (so.flags & TASKRING_STORE_MANUAL_COMPACT)))
		return cli_usage_error("create", "--async, --flush-interval, --segment-bytes and --manual-compact "
						 "go with --log-dir");
	if (so.flush_interval_ns && !async)
		return cli_usage_error("create", "--flush-interval goes with --async");
	so.durability = async ? TASKRING_ASYNC : TASKRING_DURABLE;
	const char *name = argv[optind];
	struct taskring_store *st;
	int rc = taskring_store_open(name, &so, &st);
	if (rc == -EINVAL)
		fprintf(stderr, "taskring create: the sizing is out of range (see taskring create --help)\n");
	if (rc)
		return cli_fail(name, rc);
	struct taskring_store_info i;
	struct cli_snap s;
	taskring_store_info(st, &i);
	if (json && (rc = cli_snapshot(st, name, &s)) == 0) {
		cli_json_store(&s);
		printf("\n");
		cli_snap_free(&s);
	}
	taskring_store_close(st);
	if (rc)
		return cli_fail(name, rc);
	if (!json) {
		printf("created %s: %u slots, max payload %u, arena %" PRIu64 " bytes, %u queues, %u tasks, region %" PRIu64
		       " bytes%s%s%s\n",
		       name, i.slots, i.max_payload, i.arena_bytes, i.queues, i.tasks, i.region_bytes,
		       so.log_dir ? ", log in " : "", so.log_dir ? so.log_dir : "",
		       !so.log_dir ? "" : async ? " (async)" : " (durable)");
	}
	return EXIT_OK;
}

int cmd_rm(int argc, char **argv)
{
	int ex = cli_plain_args("rm", argc, argv, 1, 1, "one STORE is", NULL);
	if (ex >= 0)
		return ex;
	int rc = taskring_store_unlink(argv[optind]);
	return rc ? cli_fail(argv[optind], rc) : EXIT_OK;
}

/* ---- enqueue -------------------------------------------------------------------- */

/* Seconds since the epoch ("1764417600.5") or ISO 8601 UTC
 * ("2026-11-29T12:00:00Z", fractions allowed) into ns. */
static int parse_eta(const char *s, int64_t *ns)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end != s && !*end && !errno && v > 0 && v < 9.2e9) {
		*ns = (int64_t)(v * 1e9);
		return 0;
	}
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return cli_usage_error("enqueue", "--eta: '%s' is neither seconds since the epoch nor "
						  "2026-11-29T12:00:00Z",
				       s);
	double frac = 0;
	if (*p == '.') {
		frac = strtod(p, &end);
		p = end;
	}
	if (strcmp(p, "Z") && strcmp(p, "+00:00"))
		return cli_usage_error("enqueue", "--eta: '%s': give the time in UTC (ending in Z)", s);
	time_t t = timegm(&tm);
	*ns = (int64_t)t * 1000000000LL + (int64_t)(frac * 1e9);
	return 0;
}

/* The whole of @path ("-": stdin) into *@buf. */
static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "taskring enqueue: %s: %s\n", path, strerror(errno));
		return EXIT_FAIL;
	}
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	for (size_t r; b && (r = fread(b + n, 1, cap - n, f)) > 0;) {
		n += r;
		if (n == cap) {
			char *nb = realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				b = NULL;
			}
			b = nb;
		}
	}
	int err = !b || ferror(f);
	if (f != stdin)
		fclose(f);
	if (err) {
		free(b);
		fprintf(stderr, "taskring enqueue: %s: cannot read it\n", path);
		return EXIT_FAIL;
	}
	*buf = b;
	*len = n;
	return 0;
}

int cmd_enqueue(int argc, char **argv)
{
	static const struct option lo[] = {
		{"payload", 1, 0, 'p'},    {"payload-file", 1, 0, 'f'}, {"queue", 1, 0, 'q'},
		{"priority", 1, 0, 'P'},   {"max-retries", 1, 0, 'r'}, {"delay", 1, 0, 'd'},
		{"eta", 1, 0, 'e'},        {"timeout", 1, 0, 't'},     {"ttl", 1, 0, 'T'},
		{"expires", 1, 0, 'x'},    {"unique-key", 1, 0, 'u'},  {"metadata", 1, 0, 'm'},
		{"depends-on", 1, 0, 'D'}, {"declare", 0, 0, 'c'},     {"block", 1, 0, 'b'},
		{"json", 0, 0, 'j'},       {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
	struct taskring_enqueue_opts o;
	taskring_enqueue_opts_init(&o);
	const char *payload = NULL, *pfile = NULL;
	const char **deps = calloc((size_t)argc + 1, sizeof(*deps));
	uint32_t ndeps = 0;
	int c, ex = -1, json = 0, declare = 0;
	long long v;
	if (!deps)
		return cli_fail("enqueue", -ENOMEM);
	while (ex < 0 && (c = cli_getopt("enqueue", argc, argv, lo, &ex)) != -1) {
		int r = 0;
		switch (c) {
		case -2: break;
		case 'p': payload = optarg; break;
		case 'f': pfile = optarg; break;
		case 'q': o.queue = optarg; break;
		case 'u': o.unique_key = optarg; break;
		case 'm': o.metadata = optarg; break;
		case 'D': deps[ndeps++] = optarg; break;
		case 'c': declare = 1; break;
		case 'j': json = 1; break;
		case 'P':
			if (!(r = cli_long("enqueue", "--priority", optarg, INT32_MIN, INT32_MAX, &v)))
				o.priority = (int32_t)v;
			break;
		case 'r':
			if (!(r = cli_long("enqueue", "--max-retries", optarg, 0, TASKRING_MAX_RETRIES_LIMIT, &v)))
				o.max_retries = (int32_t)v;
			break;
		case 'd': r = cli_duration("enqueue", "--delay", optarg, &o.delay_ns); break;
		case 'e': r = parse_eta(optarg, &o.eta_ns); break;
		case 't': r = cli_duration("enqueue", "--timeout", optarg, &o.timeout_ns); break;
		case 'T': r = cli_duration("enqueue", "--ttl", optarg, &o.result_ttl_ns); break;
		case 'x': r = cli_duration("enqueue", "--expires", optarg, &o.expires_ns); break;
		case 'b':
			o.flags |= TASKRING_ENQ_BLOCK;
			r = cli_duration("enqueue", "--block", optarg, &o.block_timeout_ns);
			break;
		}
		if (r)
			ex = r;
	}
	if (ex < 0 && argc - optind != 2)
		ex = cli_usage_error("enqueue", "a STORE and a TASK are needed");
	if (ex < 0 && payload && pfile)
		ex = cli_usage_error("enqueue", "--payload and --payload-file do not go together");
	if (ex < 0 && o.delay_ns && o.eta_ns)
		ex = cli_usage_error("enqueue", "--delay and --eta do not go together");
	if (ex < 0 && o.timeout_ns == 0)
		ex = cli_usage_error("enqueue", "--timeout must be above 0");
	if (ex >= 0) {
		free(deps);
		return ex;
	}
	const char *name = argv[optind], *task = argv[optind + 1];
	char *data = NULL;
	size_t len = payload ? strlen(payload) : 0;
	struct taskring_store *st = NULL;
	struct taskring_job *dj = calloc(ndeps + 1, sizeof(*dj)), job;
	int rc = 0;
	if (!dj)
		ex = cli_fail("enqueue", -ENOMEM);
	else if (pfile && read_file(pfile, &data, &len))
		ex = EXIT_FAIL;
	if (ex < 0 && !(ex = cli_open(name, &st)))
		ex = -1;
	for (uint32_t i = 0; ex < 0 && i < ndeps; i++)
		if (cli_lookup(st, deps[i], &dj[i]))
			ex = EXIT_FAIL;
	if (ex < 0) {
		if (ndeps) {
			o.depends_on = dj;
			o.n_depends_on = ndeps;
		}
		if (declare && (rc = taskring_task_declare(st, task)) != 0)
			ex = cli_fail(task, rc);
	}
	if (ex < 0) {
		rc = taskring_enqueue(st, task, data ? data : payload, len, &o, &job);
		if (rc == TASKRING_ENOTASK)
			fprintf(stderr, "taskring enqueue: no worker has registered task '%s' and nobody declared it "
					"(--declare declares it)\n",
				task);
		if (rc < 0) {
			ex = cli_fail(task, rc);
		} else {
			char id[TASKRING_ID_LEN + 1];
			taskring_job_id(&job, id);
			if (json)
				printf("{\"id\":\"%s\",\"new\":%s}\n", id, rc == 0 ? "true" : "false");
			else
				printf("%s%s\n", id, rc == 0 ? "" : " (existing: a job with this unique key is pending or running)");
			ex = EXIT_OK;
		}
	}
	if (st)
		taskring_store_close(st);
	free(data);
	free(dj);
	free(deps);
	return ex;
}

/* ---- wait ------------------------------------------------------------------------ */

int cmd_wait(int argc, char **argv)
{
	static const struct option lo[] = {{"timeout", 1, 0, 't'}, {"result", 0, 0, 'r'}, {"json", 0, 0, 'j'},
					   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c, ex, json = 0, result = 0;
	int64_t timeout = -1;
	while ((c = cli_getopt("wait", argc, argv, lo, &ex)) != -1) {
		switch (c) {
		case -2: return ex;
		case 'j': json = 1; break;
		case 'r': result = 1; break;
		case 't':
			if ((ex = cli_duration("wait", "--timeout", optarg, &timeout)))
				return ex;
			break;
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("wait", "a STORE and a job ID are needed");
	if (json && result)
		return cli_usage_error("wait", "--json and --result do not go together");
	struct taskring_store *st;
	struct taskring_job job;
	if ((ex = cli_open(argv[optind], &st)))
		return ex;
	if ((ex = cli_lookup(st, argv[optind + 1], &job))) {
		taskring_store_close(st);
		return ex;
	}
	int s = taskring_job_wait(&job, timeout);
	if (s == -ETIMEDOUT) {
		fprintf(stderr, "taskring wait: %s: still %s after the timeout\n", argv[optind + 1],
			taskring_status_name(taskring_job_status(&job)));
		ex = EXIT_TIMEOUT;
	} else if (s < 0) {
		ex = cli_fail(argv[optind + 1], s);
	} else if (json) {
		int rc = cli_job_json(stdout, &job);
		printf("\n");
		ex = rc ? cli_fail(argv[optind + 1], rc) : s == TASKRING_COMPLETE ? EXIT_OK : EXIT_ENDED;
	} else if (result && s == TASKRING_COMPLETE) {
		size_t len = 0;
		char *buf = NULL;
		int rc = taskring_job_result(&job, 0, NULL, 0, &len);
		if (rc == -ENOBUFS && (buf = malloc(len)) != NULL)
			rc = taskring_job_result(&job, 0, buf, len, &len);
		if (rc == 0 && len)
			fwrite(buf, 1, len, stdout);
		free(buf);
		ex = rc ? cli_fail(argv[optind + 1], rc) : EXIT_OK;
	} else {
		char err[TASKRING_ERROR_MAX + 1] = "";
		int have = s != TASKRING_COMPLETE && taskring_job_error(&job, err, sizeof(err)) >= 0;
		/* --result of a job that did not complete: nothing on stdout. */
		FILE *f = result ? stderr : stdout;
		fprintf(f, "%s%s%s\n", taskring_status_name(s), have ? ": " : "", have ? err : "");
		ex = s == TASKRING_COMPLETE ? EXIT_OK : EXIT_ENDED;
	}
	taskring_store_close(st);
	return ex;
}

/* ---- cancel / retry / replay ----------------------------------------------------------- */

int cmd_cancel(int argc, char **argv)
{
	int json;
	struct taskring_store *st;
	int ex = simple_args("cancel", argc, argv, 2, argc, "a STORE and at least one job ID are", &json, &st);
	if (ex >= 0)
		return ex;
	if (json)
		printf("[");
	ex = EXIT_OK;
	for (int i = optind + 1; i < argc; i++) {
		struct taskring_job job;
		int rc = taskring_job_lookup(st, argv[i], &job);
		if (rc == 0)
			rc = taskring_job_cancel(&job);
		const char *outcome = rc == 0 ? "cancelled" : rc == 1 ? "requested" : "error";
		if (rc < 0) {
			fprintf(stderr, "taskring cancel: %s: %s\n", argv[i],
				rc == TASKRING_ESTATE ? "the job has already ended" : taskring_strerror(rc));
			ex = EXIT_FAIL;
		}
		if (json) {
			printf("%s{\"id\":", i > optind + 1 ? "," : "");
			cli_json_str(stdout, argv[i]);
			printf(",\"outcome\":\"%s\",\"error\":", outcome);
			cli_json_str(stdout, rc < 0 ? taskring_strerror(rc) : NULL);
			printf("}");
		} else if (rc >= 0) {
			printf("%s %s\n", argv[i], rc == 0 ? "cancelled" : "running: cancel requested");
		}
	}
	if (json)
		printf("]\n");
	taskring_store_close(st);
	return ex;
}

/* Print one "old -> new" pair (JSON object when @json; @first: no comma). */
static void print_pair(const char *old, const struct taskring_job *nj, int json, int first)
{
	char id[TASKRING_ID_LEN + 1];
	taskring_job_id(nj, id);
	if (json) {
		printf("%s{\"id\":", first ? "" : ",");
		cli_json_str(stdout, old);
		printf(",\"new_id\":\"%s\"}", id);
	} else {
		printf("%s -> %s\n", old, id);
	}
}

int cmd_retry(int argc, char **argv)
{
	static const struct option lo[] = {{"all", 0, 0, 'a'}, {"queue", 1, 0, 'q'}, {"json", 0, 0, 'j'},
					   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c, ex, json = 0, all = 0;
	const char *queue = NULL;
	while ((c = cli_getopt("retry", argc, argv, lo, &ex)) != -1) {
		switch (c) {
		case -2: return ex;
		case 'a': all = 1; break;
		case 'q': queue = optarg; break;
		case 'j': json = 1; break;
		}
	}
	int n = argc - optind;
	if (n < 1 || (all && n != 1) || (!all && n < 2))
		return cli_usage_error("retry", "a STORE and job IDs, or a STORE and --all, are needed");
	if (queue && !all)
		return cli_usage_error("retry", "--queue goes with --all");
	struct taskring_store *st;
	if ((ex = cli_open(argv[optind], &st)))
		return ex;
	int first = 1, rc = 0;
	ex = EXIT_OK;
	if (json)
		printf("[");
	if (all) {
		/* The dead jobs as they are now: collect them first, so the
		 * new jobs (pending) cannot be met again. */
		uint64_t cursor = 0;
		size_t cnt = 0, cap = 0;
		struct taskring_job *dead = NULL, j;
		while ((rc = taskring_job_next(st, 1u << TASKRING_DEAD, queue, NULL, &cursor, &j)) == 1) {
			if (cnt == cap) {
				struct taskring_job *nd = realloc(dead, (cap = cap ? cap * 2 : 64) * sizeof(*dead));
				if (!nd)
					break;
				dead = nd;
			}
			dead[cnt++] = j;
		}
		if (rc < 0)
			ex = cli_fail(argv[optind], rc);
		for (size_t i = 0; i < cnt; i++) {
			struct taskring_job nj;
			char id[TASKRING_ID_LEN + 1];
			taskring_job_id(&dead[i], id);
			if ((rc = taskring_job_retry_dead(&dead[i], &nj)) == -ENOENT)
				continue; /* gone since */
			if (rc) {
				ex = cli_fail(id, rc);
				continue;
			}
			print_pair(id, &nj, json, first);
			first = 0;
		}
		free(dead);
	} else {
		for (int i = optind + 1; i < argc; i++) {
			struct taskring_job job, nj;
			if (cli_lookup(st, argv[i], &job)) {
				ex = EXIT_FAIL;
				continue;
			}
			if ((rc = taskring_job_retry_dead(&job, &nj)) != 0) {
				if (rc == TASKRING_ESTATE)
					fprintf(stderr, "taskring retry: %s: the job is not dead (%s)\n", argv[i],
						taskring_status_name(taskring_job_status(&job)));
				else
					cli_fail(argv[i], rc);
				ex = EXIT_FAIL;
				continue;
			}
			print_pair(argv[i], &nj, json, first);
			first = 0;
		}
	}
	if (json)
		printf("]\n");
	taskring_store_close(st);
	return ex;
}

int cmd_replay(int argc, char **argv)
{
	int json;
	struct taskring_store *st;
	int ex = simple_args("replay", argc, argv, 2, 2, "a STORE and a job ID are", &json, &st);
	if (ex >= 0)
		return ex;
	struct taskring_job job, nj;
	const char *id = argv[optind + 1];
	if (!(ex = cli_lookup(st, id, &job))) {
		int rc = taskring_job_replay(&job, &nj);
		if (rc) {
			ex = cli_fail(id, rc);
		} else if (json) {
			print_pair(id, &nj, json, 1);
			printf("\n");
		} else {
			char nid[TASKRING_ID_LEN + 1];
			taskring_job_id(&nj, nid);
			printf("%s\n", nid);
		}
	}
	taskring_store_close(st);
	return ex;
}

/* ---- purge / pause / resume / reap ------------------------------------------------------ */

int cmd_purge(int argc, char **argv)
{
	static const struct option lo[] = {{"terminal", 0, 0, 't'}, {"older-than", 1, 0, 'o'}, {"json", 0, 0, 'j'},
					   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c, ex, json = 0, terminal = 0, aged = 0;
	int64_t age = 0;
	while ((c = cli_getopt("purge", argc, argv, lo, &ex)) != -1) {
		switch (c) {
		case -2: return ex;
		case 't': terminal = 1; break;
		case 'j': json = 1; break;
		case 'o':
			if ((ex = cli_duration("purge", "--older-than", optarg, &age)))
				return ex;
			aged = 1;
			break;
		}
	}
	if (argc - optind != (terminal ? 1 : 2))
		return cli_usage_error("purge", terminal ? "only a STORE goes with --terminal" : "a STORE and a QUEUE are needed");
	if (aged && !terminal)
		return cli_usage_error("purge", "--older-than goes with --terminal");
	struct taskring_store *st;
	if ((ex = cli_open(argv[optind], &st)))
		return ex;
	uint64_t n = 0;
	int rc = terminal ? taskring_store_purge_terminal(st, age, &n) : taskring_queue_purge(st, argv[optind + 1], &n);
	taskring_store_close(st);
	if (rc == -ENOENT && !terminal) {
		fprintf(stderr, "taskring purge: %s: no such queue\n", argv[optind + 1]);
		return EXIT_FAIL;
	}
	if (rc)
		return cli_fail(terminal ? argv[optind] : argv[optind + 1], rc);
	if (json)
		printf("{\"removed\":%" PRIu64 "}\n", n);
	else
		printf("%" PRIu64 " %s job(s) removed\n", n, terminal ? "ended" : "pending");
	return EXIT_OK;
}

static int pause_resume(const char *cmd, int argc, char **argv, int (*fn)(struct taskring_store *, const char *))
{
	struct taskring_store *st;
	int ex = simple_args(cmd, argc, argv, 2, 2, "a STORE and a QUEUE are", NULL, &st);
	if (ex >= 0)
		return ex;
	int rc = fn(st, argv[optind + 1]);
	taskring_store_close(st);
	if (rc)
		return cli_fail(argv[optind + 1], rc);
	printf("queue %s %s\n", argv[optind + 1], fn == taskring_queue_pause ? "paused" : "resumed");
	return EXIT_OK;
}

int cmd_pause(int argc, char **argv)
{
	return pause_resume("pause", argc, argv, taskring_queue_pause);
}

int cmd_resume(int argc, char **argv)
{
	return pause_resume("resume", argc, argv, taskring_queue_resume);
}

int cmd_reap(int argc, char **argv)
{
	int json;
	struct taskring_store *st;
	int ex = simple_args("reap", argc, argv, 1, 1, "one STORE is", &json, &st);
	if (ex >= 0)
		return ex;
	struct taskring_reap_stats r;
	int rc = taskring_store_reap(st, &r);
	taskring_store_close(st);
	if (rc < 0)
		return cli_fail(argv[optind], rc);
	/* This tool's own registration is one of the attached. */
	if (json)
		printf("{\"procs_gone\":%u,\"owner_died\":%u,\"lease_expired\":%u,\"procs_attached\":%u,"
		       "\"recycled\":%u,\"blocks_freed\":%u}\n",
		       r.procs_gone, r.owner_died, r.lease_expired, r.procs_attached - 1, r.recycled, r.blocks_freed);
	else
		printf("%u process(es) found gone, %u other(s) attached; %u job(s) of dead workers and %u with "
		       "expired leases put back or ended\n",
		       r.procs_gone, r.procs_attached - 1, r.owner_died, r.lease_expired);
	return EXIT_OK;
}
