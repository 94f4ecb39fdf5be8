/*
 * taskring - the command-line tool: see and steer a store without writing
 * C. Each command lives in its own file (inspect.c: ls, info, jobs, show,
 * metrics; steer.c: create, rm, enqueue, wait, cancel, retry, replay,
 * purge, pause, resume, reap; top.c; logcmd.c; demo.c); this file holds
 * the command table with every usage text, and what the commands share.
 * taskring(1) is the manual.
 *
 * Exit codes: 0 success; 1 a taskring call failed (the message says which);
 * 2 bad usage; 3 `wait`: the job ended failed, dead or cancelled; 4 `wait`:
 * the timeout passed first.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define STORE_NOTE "STORE is /NAME (shared memory, /dev/shm/NAME) or a path to a store file.\n"
#define DUR_NOTE "D is a duration: a number with ns, us, ms, s (the default), m or h.\n"

static const struct cli_cmd cmds[] = {
	{"ls", cmd_ls,
	 "usage: taskring ls [--json] [DIR...]\n"
	 "The stores in each DIR (default /dev/shm): name, size, slots, jobs held,\n"
	 "processes attached (this tool not counted) and log directory.\n"
	 "  --json   an array of objects\n"},
	{"create", cmd_create,
	 "usage: taskring create STORE [--slots N] [--max-payload B] [--arena B] [--queues N]\n"
	 "                       [--tasks N] [--log-dir DIR [--async] [--flush-interval D]\n"
	 "                       [--segment-bytes B] [--manual-compact]] [--group] [--json]\n"
	 "Create a new store; fails if it exists. B is a size: a number with K, M or G.\n"
	 "  --slots N            job slots (default 65536; 16 .. 16777216)\n"
	 "  --max-payload B      largest payload or result (default 1M)\n"
	 "  --arena B            payload/result/error arena (default 64M, at least 4 x max payload)\n"
	 "  --queues N, --tasks N   named queues (default 16, at most 64), task names (256, 4096)\n"
	 "  --log-dir DIR        keep a log in DIR (on a real disk): the store survives a reboot\n"
	 "  --async              with a log: flush within --flush-interval (default 10ms) instead\n"
	 "                       of making every enqueue and end wait for its sync\n"
	 "  --segment-bytes B    log segment size (default 64M)\n"
	 "  --manual-compact     only `taskring log compact` compacts the log\n"
	 "  --group              mode 0660 instead of 0600\n"
	 "  --json               print the store's sizing as a JSON object\n" STORE_NOTE DUR_NOTE},
	{"rm", cmd_rm,
	 "usage: taskring rm STORE\n"
	 "Remove a store's name; processes attached to it keep using it until they close it.\n" STORE_NOTE},
	{"info", cmd_info,
	 "usage: taskring info STORE [--json] [--interval D] [--watch] [--count N]\n"
	 "The store's sizing; per queue the jobs in each state, the counters and the rates\n"
	 "(measured over --interval); the attached processes with their heartbeat's age;\n"
	 "the log (mode, size on disk, positions staged, written and durable); the reaper.\n"
	 "  --interval D   measure rates over D (default 1s; 0: no rates)\n"
	 "  --watch        print again every interval until interrupted\n"
	 "  --count N      print N reports (implies --watch)\n"
	 "  --json         one JSON object (with --watch: one per line)\n" STORE_NOTE DUR_NOTE},
	{"jobs", cmd_jobs,
	 "usage: taskring jobs STORE [--state S[,S...]] [--queue Q] [--task T] [--limit N] [--json]\n"
	 "The store's jobs, in slot order.\n"
	 "  --state S      only jobs in these states: pending, running, complete, failed,\n"
	 "                 dead, cancelled (dead: the dead-letter list)\n"
	 "  --queue Q, --task T   only jobs of this queue, of this task\n"
	 "  --limit N      at most N jobs (default 100; 0: all)\n"
	 "  --json         an array of job objects, as `taskring show --json`\n" STORE_NOTE},
	{"show", cmd_show,
	 "usage: taskring show STORE ID [--json]\n"
	 "One job: its fields, dependencies, dependents and error history.\n"
	 "  --json   the job as a JSON object (the keys of taskito's to_dict)\n" STORE_NOTE},
	{"enqueue", cmd_enqueue,
	 "usage: taskring enqueue STORE TASK [--payload S | --payload-file F] [--queue Q]\n"
	 "                        [--priority N] [--max-retries N] [--delay D | --eta T]\n"
	 "                        [--timeout D] [--ttl D] [--expires D] [--unique-key K]\n"
	 "                        [--metadata TEXT] [--depends-on ID]... [--declare]\n"
	 "                        [--block D] [--json]\n"
	 "Enqueue one job and print its id.\n"
	 "  --payload S        the payload bytes (default none)\n"
	 "  --payload-file F   the payload read from F (- for stdin)\n"
	 "  --queue Q          its queue (default \"default\")\n"
	 "  --priority N       higher runs first (default 0)\n"
	 "  --max-retries N    attempts after the first (default 3)\n"
	 "  --delay D          run no earlier than D from now\n"
	 "  --eta T            or at T: seconds since the epoch, or 2026-11-29T12:00:00Z\n"
	 "  --timeout D        per-attempt limit (default 300s)\n"
	 "  --ttl D            keep it at most D after it ends\n"
	 "  --expires D        cancel it if not started within D\n"
	 "  --unique-key K     while a job with this key is pending or running, print its id\n"
	 "                     instead of enqueueing another\n"
	 "  --metadata TEXT    text kept with the job (JSON by convention)\n"
	 "  --depends-on ID    run only after job ID completes (repeatable)\n"
	 "  --declare          declare TASK first (else a task no worker registered is refused)\n"
	 "  --block D          when the store is full, wait up to D for room\n"
	 "  --json             {\"id\": ..., \"new\": true|false}\n" STORE_NOTE DUR_NOTE},
	{"wait", cmd_wait,
	 "usage: taskring wait STORE ID [--timeout D] [--result] [--json]\n"
	 "Wait until the job ends and print its state (and error). Exit 0: complete;\n"
	 "3: failed, dead or cancelled; 4: not ended when the timeout passed.\n"
	 "  --timeout D   wait at most D (default: forever)\n"
	 "  --result      write the result's bytes to stdout instead\n"
	 "  --json        the ended job as a JSON object\n" STORE_NOTE DUR_NOTE},
	{"cancel", cmd_cancel,
	 "usage: taskring cancel STORE ID... [--json]\n"
	 "Cancel jobs: a pending job at once; a running one is asked to stop (its handler\n"
	 "sees the request). An ended job cannot be cancelled (exit 1).\n"
	 "  --json   an array of {\"id\", \"outcome\": cancelled|requested|error, \"error\"}\n" STORE_NOTE},
	{"retry", cmd_retry,
	 "usage: taskring retry STORE ID... [--json]\n"
	 "       taskring retry STORE --all [--queue Q] [--json]\n"
	 "Enqueue dead jobs again (new ids, fresh retries); the dead jobs stay as they are.\n"
	 "  --all       every dead job (of queue Q with --queue)\n"
	 "  --json      an array of {\"id\", \"new_id\"}\n" STORE_NOTE},
	{"replay", cmd_replay,
	 "usage: taskring replay STORE ID [--json]\n"
	 "Enqueue a copy of a job in any state (a new id, due now) and print its id.\n"
	 "  --json   {\"id\", \"new_id\"}\n" STORE_NOTE},
	{"purge", cmd_purge,
	 "usage: taskring purge STORE QUEUE [--json]\n"
	 "       taskring purge STORE --terminal [--older-than D] [--json]\n"
	 "Remove a queue's pending jobs, or the ended jobs (older than D); print how many.\n"
	 "  --json   {\"removed\": N}\n" STORE_NOTE DUR_NOTE},
	{"pause", cmd_pause,
	 "usage: taskring pause STORE QUEUE\n"
	 "Stop workers claiming from QUEUE; enqueueing goes on and its jobs wait.\n" STORE_NOTE},
	{"resume", cmd_resume,
	 "usage: taskring resume STORE QUEUE\n"
	 "Let workers claim from QUEUE again.\n" STORE_NOTE},
	{"reap", cmd_reap,
	 "usage: taskring reap STORE [--json]\n"
	 "Run the reaper now: the running jobs of processes that died, and those whose lease\n"
	 "ran out, are retried or ended by their rules.\n"
	 "  --json   the reaper's findings as a JSON object\n" STORE_NOTE},
	{"top", cmd_top,
	 "usage: taskring top STORE [--interval D]\n"
	 "A live view: queues with counts and rates, running jobs with their progress, dead\n"
	 "jobs with their errors. Keys: q quit, p pause/resume the selected queue, up/down.\n"
	 "  --interval D   refresh every D (default 1s)\n" STORE_NOTE DUR_NOTE},
	{"metrics", cmd_metrics,
	 "usage: taskring metrics STORE [--output FILE]\n"
	 "The store's counts, counters, log positions and reaper counts in Prometheus's text\n"
	 "format, for node_exporter's textfile collector.\n"
	 "  --output FILE   write FILE atomically (a temporary file renamed over it)\n" STORE_NOTE},
	{"log", cmd_log,
	 "usage: taskring log verify DIR\n"
	 "       taskring log dump DIR [--json]\n"
	 "       taskring log compact DIR\n"
	 "verify: check every record of the log in DIR (exit 1 on corruption, naming the\n"
	 "file and offset); dump: print every record (JSON lines with --json); compact: fold\n"
	 "the closed segments into a checkpoint and delete the files it replaces.\n"},
	{"demo", cmd_demo,
	 "usage: taskring demo [--jobs N] [--workers N] [--store NAME]\n"
	 "taskring's main job on an embedded default: worker processes, round trips,\n"
	 "throughput, retries, dead letters, dependencies; then a durable store recovered\n"
	 "from its log after its region is dropped.\n"},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct cli_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

const char *cli_usage_of(const char *cmd)
{
	const struct cli_cmd *c = find_cmd(cmd);
	return c ? c->usage : "";
}

/* The usage's synopsis: its lines up to the first that is not "usage:" or
 * a continuation; with @indent, "usage:" becomes spaces. */
static void print_synopsis(FILE *f, const char *usage, int indent)
{
	const char *p = usage;
	while (*p && (!strncmp(p, "usage:", 6) || *p == ' ')) {
		const char *e = strchr(p, '\n');
		if (!e)
			break;
		if (indent && !strncmp(p, "usage:", 6)) {
			fputs("      ", f);
			p += 6;
		}
		fwrite(p, 1, (size_t)(e - p + 1), f);
		p = e + 1;
	}
}

int cli_fail(const char *what, int rc)
{
	fprintf(stderr, "taskring: %s: %s\n", what, taskring_strerror(rc));
	return EXIT_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "taskring %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_synopsis(stderr, cli_usage_of(cmd), 0);
	return EXIT_USAGE;
}

int cli_getopt(const char *cmd, int argc, char **argv, const struct option *lo, int *exitp)
{
	/* Only -h is short; the others are long options alone. Permuted:
	 * options may follow the positional arguments. */
	int c = getopt_long(argc, argv, ":h", lo, NULL);
	if (c == 'h') {
		printf("%s", cli_usage_of(cmd));
		*exitp = EXIT_OK;
		return -2;
	}
	if (c == '?' || c == ':') {
		if (c == ':')
			*exitp = cli_usage_error(cmd, "option %s needs a value", argv[optind - 1]);
		else if (optopt)
			*exitp = cli_usage_error(cmd, "unknown option -%c", optopt);
		else
			*exitp = cli_usage_error(cmd, "unknown option %s", argv[optind - 1]);
		return -2;
	}
	return c;
}

int cli_plain_args(const char *cmd, int argc, char **argv, int lo, int hi, const char *what, int *json)
{
	static const struct option with_json[] = {{"json", 0, 0, 'j'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	static const struct option help_only[] = {{"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c, ex;
	if (json)
		*json = 0;
	while ((c = cli_getopt(cmd, argc, argv, json ? with_json : help_only, &ex)) != -1) {
		if (c == -2)
			return ex;
		*json = 1;
	}
	int n = argc - optind;
	if (n < lo || n > hi)
		return cli_usage_error(cmd, "%s needed", what);
	return -1;
}

int cli_duration(const char *cmd, const char *opt, const char *s, int64_t *ns)
{
	static const struct {
		const char *unit;
		double mul;
	} units[] = {{"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"", 1e9}, {"m", 60e9}, {"h", 3600e9}};
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || !isfinite(v) || v < 0)
		return cli_usage_error(cmd, "%s: '%s' is not a duration (e.g. 5, 1.5s, 200ms)", opt, s);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit))
			continue;
		double x = v * units[i].mul;
		if (x > 9.2e18)
			return cli_usage_error(cmd, "%s: '%s' is too long", opt, s);
		*ns = (int64_t)x;
		return 0;
	}
	return cli_usage_error(cmd, "%s: '%s': unknown unit (ns, us, ms, s, m, h)", opt, s);
}

int cli_size(const char *cmd, const char *opt, const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return cli_usage_error(cmd, "%s: '%s' is not a size", opt, s);
	unsigned long long x = strtoull(s, &end, 10);
	int shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (end == s || errno || *end || (x << shift) >> shift != x)
		return cli_usage_error(cmd, "%s: '%s' is not a size (e.g. 4096, 64K, 1M, 2G)", opt, s);
	*v = x << shift;
	return 0;
}

int cli_long(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *v)
{
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (end == s || *end || errno || x < lo || x > hi)
		return cli_usage_error(cmd, "%s: '%s' is not a whole number from %lld to %lld", opt, s, lo, hi);
	*v = x;
	return 0;
}

int cli_open(const char *name, struct taskring_store **stp)
{
	struct taskring_store_opts so = {.flags = TASKRING_STORE_NOCREATE};
	int rc = taskring_store_open(name, &so, stp);
	return rc ? cli_fail(name, rc) : 0;
}

int cli_lookup(struct taskring_store *st, const char *id, struct taskring_job *job)
{
	int rc = taskring_job_lookup(st, id, job);
	if (rc == -EINVAL) {
		fprintf(stderr, "taskring: '%s' is not a job id (36 characters: 8-4-4-4-12 hex digits)\n", id);
		return EXIT_FAIL;
	}
	if (rc == -ENOENT) {
		fprintf(stderr, "taskring: %s: no such job in this store (never made, or ended and removed)\n", id);
		return EXIT_FAIL;
	}
	return rc ? cli_fail(id, rc) : 0;
}

void cli_json_strn(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch > 0x7e)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

void cli_json_str(FILE *f, const char *s)
{
	if (s)
		cli_json_strn(f, s, strlen(s));
	else
		fputs("null", f);
}

void cli_json_ms(FILE *f, int64_t ns)
{
	if (ns)
		fprintf(f, "%lld", (long long)(ns / 1000000));
	else
		fputs("null", f);
}

int cli_job_text(const struct taskring_job *job, char **textp)
{
	for (;;) {
		int n = taskring_job_to_json(job, NULL, 0);
		if (n < 0)
			return n;
		char *t = malloc((size_t)n + 1);
		if (!t)
			return -ENOMEM;
		int m = taskring_job_to_json(job, t, (size_t)n + 1);
		if (m >= 0 && m <= n) {
			*textp = t;
			return 0;
		}
		free(t);
		if (m < 0)
			return m;
		/* It grew in between (an error appended): ask again. */
	}
}

int cli_job_json(FILE *f, const struct taskring_job *job)
{
	char *t;
	int rc = cli_job_text(job, &t);
	if (rc == 0) {
		fputs(t, f);
		free(t);
	}
	return rc;
}

void cli_time(int64_t ns, char *buf, size_t cap)
{
	if (!ns) {
		snprintf(buf, cap, "-");
		return;
	}
	time_t t = (time_t)(ns / 1000000000LL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t cli_now_real(void)
{
	return clock_ns(CLOCK_REALTIME);
}

int64_t cli_now_mono(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: taskring COMMAND [ARGS] (taskring COMMAND --help for each)\n\n"
		   "Stores:   ls, create, rm, info, metrics, top, reap\n"
		   "Jobs:     jobs, show, enqueue, wait, cancel, retry, replay\n"
		   "Queues:   purge, pause, resume\n"
		   "The log:  log verify | dump | compact\n"
		   "Try it:   demo\n\n");
	for (size_t i = 0; i < NCMDS; i++)
		print_synopsis(f, cmds[i].usage, 1);
	fprintf(f, "\nExit codes: 0 success, 1 a taskring call failed, 2 bad usage,\n"
		   "3 (wait) the job ended failed, dead or cancelled, 4 (wait) timed out.\n"
		   "See taskring(1) and taskring(7).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		if (argc > 2 && find_cmd(argv[2])) {
			printf("%s", cli_usage_of(argv[2]));
			return EXIT_OK;
		}
		usage(stdout);
		return EXIT_OK;
	}
	const struct cli_cmd *c = find_cmd(name);
	if (!c) {
		fprintf(stderr, "taskring: unknown command '%s'\n", name);
		usage(stderr);
		return EXIT_USAGE;
	}
	opterr = 0; /* cli_getopt() says what was wrong, naming the command */
	return c->fn(argc - 1, argv + 1);
}
