/*
 * inspect.c - the commands that look: ls, info, jobs, show, metrics; and
 * the snapshot of a store they (and top) print.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "internal.h"

/* ---- snapshot ---------------------------------------------------------- */

/* Bytes the files of @dir take on disk (segments are preallocated). */
static uint64_t dir_bytes(const char *dir)
{
	uint64_t sum = 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));) {
		struct stat sb;
		if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode))
			sum += (uint64_t)sb.st_blocks * 512;
	}
	closedir(d);
	return sum;
}

int cli_snapshot(struct taskring_store *st, const char *name, struct cli_snap *s)
{
	struct tr_hdr *h = st->hdr;
	int rc;

	memset(s, 0, sizeof(*s));
	s->name = name;
	s->at_mono = cli_now_mono();
	s->at_real = cli_now_real();
	if ((rc = taskring_store_info(st, &s->info)) != 0 || (rc = taskring_queue_stats(st, NULL, &s->total)) != 0)
		return rc;
	s->created_at = h->h_created_at;
	uint32_t nq = s->info.queues_used;
	if (nq > s->info.queues)
		nq = s->info.queues;
	if (nq > TASKRING_MAX_QUEUES)
		nq = TASKRING_MAX_QUEUES;
	for (uint32_t i = 0; i < nq; i++) {
		struct cli_queue *q = &s->q[s->nq];
		memcpy(q->name, st->queues[i].q_name, sizeof(q->name) - 1);
		q->name[sizeof(q->name) - 1] = 0;
		/* A name written over (or being written) is skipped. */
		if (q->name[0] && taskring_queue_stats(st, q->name, &q->qs) == 0)
			s->nq++;
	}

	s->p = calloc(TR_PROCS, sizeof(*s->p));
	if (!s->p)
		return -ENOMEM;
	uint32_t me = TR_PROC_IDX(tr__proc_token(st));
	for (uint32_t i = 0; i < TR_PROCS; i++) {
		struct tr_proc *p = &st->procs[i];
		uint32_t w = atomic_load_explicit(&p->p_word, memory_order_acquire);
		if (!(w & 1))
			continue;
		struct cli_proc *c = &s->p[s->np++];
		c->pid = p->p_pid;
		memcpy(c->comm, p->p_comm, sizeof(c->comm) - 1);
		c->comm[sizeof(c->comm) - 1] = 0;
		for (char *k = c->comm; *k; k++)
			if (*k < 0x20 || *k > 0x7e)
				*k = '?';
		c->attached_at = p->p_attached_at;
		c->heartbeat = atomic_load_explicit(&p->p_heartbeat, memory_order_relaxed);
		c->self = i == me;
		c->alive = tr__proc_alive(st, TR_PROC_TOKEN(i, (w >> 1) & TR_PROC_GEN_MASK));
		if (c->alive && !c->self)
			s->attached++;
	}

	if (h->h_logbuf_bytes) {
		struct cli_log *l = &s->log;
		l->on = 1;
		memcpy(l->dir, h->h_log_dir, sizeof(l->dir) - 1);
		l->durable = h->h_durability == TASKRING_DURABLE;
		l->flush_interval_ns = h->h_flush_interval_ns;
		l->staged = atomic_load_explicit(&h->h_log_reserve, memory_order_relaxed);
		l->written = atomic_load_explicit(&h->h_log_flushed, memory_order_relaxed);
		l->synced = atomic_load_explicit(&h->h_log_durable, memory_order_relaxed);
		l->next_seq = h->h_log_end;
		l->segno = h->h_log_segno;
		l->compactions = atomic_load_explicit(&h->h_log_compactions, memory_order_relaxed);
		l->failed = atomic_load_explicit(&h->h_log_failed, memory_order_relaxed) != 0;
		l->low_space = atomic_load_explicit(&h->h_log_low_space, memory_order_relaxed) != 0;
		l->disk_bytes = dir_bytes(l->dir);
	}
	s->reaped_procs = atomic_load_explicit(&h->h_reaped_procs, memory_order_relaxed);
	s->reaped_jobs = atomic_load_explicit(&h->h_reaped_jobs, memory_order_relaxed);
	s->reaped_blocks = atomic_load_explicit(&h->h_reaped_blocks, memory_order_relaxed);
	s->reap_scans = atomic_load_explicit(&h->h_reap_scans, memory_order_relaxed);
	return 0;
}

void cli_snap_free(struct cli_snap *s)
{
	free(s->p);
	s->p = NULL;
}

uint64_t cli_ended(const struct taskring_queue_stats *q)
{
	return q->completed + q->failed + q->dead + q->cancelled;
}

double cli_rate(uint64_t now, uint64_t before, const struct cli_snap *a, const struct cli_snap *b)
{
	if (!b || a->at_mono <= b->at_mono)
		return -1;
	return (double)(now - before) * 1e9 / (double)(a->at_mono - b->at_mono);
}

const struct taskring_queue_stats *cli_snap_queue(const struct cli_snap *s, const char *name)
{
	if (!s)
		return NULL;
	for (uint32_t i = 0; i < s->nq; i++)
		if (!strcmp(s->q[i].name, name))
			return &s->q[i].qs;
	return NULL;
}

/* ---- info ---------------------------------------------------------------- */

static void json_rate(double r)
{
	if (r < 0)
		printf("null");
	else
		printf("%.1f", r);
}

static void json_stats(const struct taskring_queue_stats *q, const struct taskring_queue_stats *was,
		       const struct cli_snap *s, const struct cli_snap *prev)
{
	printf("\"counts\":{");
	for (int k = 0; k < TASKRING_STATUS_COUNT; k++)
		printf("%s\"%s\":%" PRIu64, k ? "," : "", taskring_status_name(k), q->by_status[k]);
	printf("},\"enqueued\":%" PRIu64 ",\"started\":%" PRIu64 ",\"completed\":%" PRIu64 ",\"failed\":%" PRIu64
	       ",\"dead\":%" PRIu64 ",\"cancelled\":%" PRIu64 ",\"retried\":%" PRIu64 ",\"enqueued_per_s\":",
	       q->enqueued, q->started, q->completed, q->failed, q->dead, q->cancelled, q->retried);
	json_rate(was ? cli_rate(q->enqueued, was->enqueued, s, prev) : -1);
	printf(",\"ended_per_s\":");
	json_rate(was ? cli_rate(cli_ended(q), cli_ended(was), s, prev) : -1);
}

void cli_json_store(const struct cli_snap *s)
{
	const struct taskring_store_info *i = &s->info;
	printf("{\"name\":");
	cli_json_str(stdout, s->name);
	printf(",\"slots\":%u,\"max_payload\":%u,\"queues\":%u,\"tasks\":%u,\"arena_bytes\":%" PRIu64
	       ",\"arena_used\":%" PRIu64 ",\"region_bytes\":%" PRIu64 ",\"created_at\":",
	       i->slots, i->max_payload, i->queues, i->tasks, i->arena_bytes, i->arena_used, i->region_bytes);
	cli_json_ms(stdout, s->created_at);
	printf(",\"log_dir\":");
	cli_json_str(stdout, s->log.on ? s->log.dir : NULL);
	printf(",\"durability\":\"%s\"}", !s->log.on ? "none" : s->log.durable ? "durable" : "async");
}

static void info_json(const struct cli_snap *s, const struct cli_snap *prev, int64_t interval)
{
	printf("{\"store\":");
	cli_json_store(s);
	printf(",\"queues\":[");
	for (uint32_t k = 0; k < s->nq; k++) {
		const struct cli_queue *q = &s->q[k];
		printf("%s{\"name\":", k ? "," : "");
		cli_json_str(stdout, q->name);
		printf(",\"paused\":%s,", q->qs.paused ? "true" : "false");
		json_stats(&q->qs, cli_snap_queue(prev, q->name), s, prev);
		printf("}");
	}
	printf("],\"totals\":{");
	json_stats(&s->total, prev ? &prev->total : NULL, s, prev);
	printf("},\"processes\":[");
	for (uint32_t k = 0, n = 0; k < s->np; k++) {
		const struct cli_proc *p = &s->p[k];
		printf("%s{\"pid\":%d,\"name\":", n++ ? "," : "", p->pid);
		cli_json_str(stdout, p->comm);
		printf(",\"attached_at\":");
		cli_json_ms(stdout, p->attached_at);
		printf(",\"heartbeat_age_ms\":%lld,\"alive\":%s,\"self\":%s}",
		       (long long)((s->at_real - p->heartbeat) / 1000000), p->alive ? "true" : "false",
		       p->self ? "true" : "false");
	}
	printf("],\"log\":");
	if (s->log.on) {
		const struct cli_log *l = &s->log;
		printf("{\"dir\":");
		cli_json_str(stdout, l->dir);
		printf(",\"mode\":\"%s\",\"flush_interval_ms\":%.3f,\"disk_bytes\":%" PRIu64 ",\"staged\":%" PRIu64
		       ",\"written\":%" PRIu64 ",\"durable\":%" PRIu64 ",\"next_seq\":%" PRIu64
		       ",\"failed\":%s,\"low_space\":%s,\"compactions\":%" PRIu64 "}",
		       l->durable ? "durable" : "async", (double)l->flush_interval_ns / 1e6, l->disk_bytes, l->staged,
		       l->written, l->synced, l->next_seq, l->failed ? "true" : "false", l->low_space ? "true" : "false",
		       l->compactions);
	} else {
		printf("null");
	}
	printf(",\"reaper\":{\"processes_reaped\":%" PRIu64 ",\"jobs_reaped\":%" PRIu64 ",\"blocks_freed\":%" PRIu64
	       ",\"scans\":%" PRIu64 "},\"interval_ms\":%lld}\n",
	       s->reaped_procs, s->reaped_jobs, s->reaped_blocks, s->reap_scans, (long long)(interval / 1000000));
}

static void text_rate(double r)
{
	if (r < 0)
		printf(" %9s", "-");
	else
		printf(" %9.1f", r);
}

static void text_queue_row(const char *name, int paused, const struct taskring_queue_stats *q,
			   const struct taskring_queue_stats *was, const struct cli_snap *s, const struct cli_snap *prev)
{
	printf("%-16s %-6s", name, paused < 0 ? "" : paused ? "paused" : "active");
	for (int k = 0; k < TASKRING_STATUS_COUNT; k++)
		printf(" %9" PRIu64, q->by_status[k]);
	text_rate(was ? cli_rate(q->enqueued, was->enqueued, s, prev) : -1);
	text_rate(was ? cli_rate(cli_ended(q), cli_ended(was), s, prev) : -1);
	printf("\n");
}

static void human_bytes(uint64_t b, char *buf, size_t cap)
{
	if (b >= (1ull << 30))
		snprintf(buf, cap, "%.1f GiB", (double)b / (1ull << 30));
	else if (b >= (1ull << 20))
		snprintf(buf, cap, "%.1f MiB", (double)b / (1ull << 20));
	else if (b >= 1024)
		snprintf(buf, cap, "%.1f KiB", (double)b / 1024);
	else
		snprintf(buf, cap, "%" PRIu64 " B", b);
}

static void info_text(const struct cli_snap *s, const struct cli_snap *prev)
{
	const struct taskring_store_info *i = &s->info;
	char t[64], r[32], a[32], u[32];
	cli_time(s->created_at, t, sizeof(t));
	human_bytes(i->region_bytes, r, sizeof(r));
	human_bytes(i->arena_bytes, a, sizeof(a));
	human_bytes(i->arena_used, u, sizeof(u));
	printf("store %s: %u slots, region %s, arena %s used of %s, max payload %u, queues %u/%u, tasks %u/%u, "
	       "created %s UTC\n\n",
	       s->name, i->slots, r, u, a, i->max_payload, i->queues_used, i->queues, i->tasks_used, i->tasks, t);
	printf("%-16s %-6s", "QUEUE", "STATE");
	for (int k = 0; k < TASKRING_STATUS_COUNT; k++) {
		char up[16];
		snprintf(up, sizeof(up), "%s", taskring_status_name(k));
		for (char *c = up; *c; c++)
			*c = (char)(*c - 32);
		printf(" %9s", up);
	}
	printf(" %9s %9s\n", "ENQ/s", "END/s");
	for (uint32_t k = 0; k < s->nq; k++)
		text_queue_row(s->q[k].name, s->q[k].qs.paused, &s->q[k].qs, cli_snap_queue(prev, s->q[k].name), s,
			       prev);
	text_queue_row("(all)", -1, &s->total, prev ? &prev->total : NULL, s, prev);
	printf("since creation: enqueued %" PRIu64 ", started %" PRIu64 ", completed %" PRIu64 ", failed %" PRIu64
	       ", dead %" PRIu64 ", cancelled %" PRIu64 ", retried %" PRIu64 "\n\n",
	       s->total.enqueued, s->total.started, s->total.completed, s->total.failed, s->total.dead,
	       s->total.cancelled, s->total.retried);

	printf("%u process(es) attached besides this one\n", s->attached);
	printf("  %8s  %-15s  %-19s  %13s  %s\n", "PID", "NAME", "ATTACHED (UTC)", "HEARTBEAT AGE", "STATE");
	for (uint32_t k = 0; k < s->np; k++) {
		const struct cli_proc *p = &s->p[k];
		cli_time(p->attached_at, t, sizeof(t));
		printf("  %8d  %-15s  %-19s  %12.1fs  %s\n", p->pid, p->comm, t, (double)(s->at_real - p->heartbeat) / 1e9,
		       p->self ? "this tool" : p->alive ? "alive" : "gone (the reaper has not run yet)");
	}
	printf("\n");
	if (s->log.on) {
		const struct cli_log *l = &s->log;
		human_bytes(l->disk_bytes, r, sizeof(r));
		printf("log %s: %s", l->dir, l->durable ? "durable (each change waits for its sync)" : "async");
		if (!l->durable)
			printf(" (flushed every %.1f ms)", (double)l->flush_interval_ns / 1e6 / 2);
		printf(", %s on disk, segment %" PRIu64 ", next sequence %" PRIu64 ", %" PRIu64 " compaction(s)\n", r,
		       l->segno, l->next_seq, l->compactions);
		printf("  staged %" PRIu64 ", written %" PRIu64 ", durable %" PRIu64 " (bytes since the region began "
		       "its log; %" PRIu64 " not yet durable)%s%s\n",
		       l->staged, l->written, l->synced, l->staged - l->synced,
		       l->failed ? "; FAILED: a write or sync failed, durable work is refused (-EIO)" : "",
		       l->low_space ? "; LOW ON SPACE: new jobs are refused (-ENOSPC)" : "");
	} else {
		printf("log: none (the store survives the death of any process, not a reboot)\n");
	}
	printf("reaper: %" PRIu64 " process(es) found dead, %" PRIu64 " job(s) put back or ended, %" PRIu64
	       " arena block(s) freed, %" PRIu64 " scan(s)\n",
	       s->reaped_procs, s->reaped_jobs, s->reaped_blocks, s->reap_scans);
}

static volatile sig_atomic_t interrupted;
static void on_int(int sig)
{
	interrupted = 1;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
	while (!interrupted && nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int cmd_info(int argc, char **argv)
{
	static const struct option lo[] = {{"json", 0, 0, 'j'}, {"interval", 1, 0, 'i'}, {"watch", 0, 0, 'w'},
					   {"count", 1, 0, 'c'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c, ex, json = 0, watch = 0;
	int64_t interval = 1000000000LL;
	long long count = 0;
	while ((c = cli_getopt("info", argc, argv, lo, &ex)) != -1) {
		switch (c) {
		case -2: return ex;
		case 'j': json = 1; break;
		case 'w': watch = 1; break;
		case 'i':
			if ((ex = cli_duration("info", "--interval", optarg, &interval)))
				return ex;
			break;
		case 'c':
			if ((ex = cli_long("info", "--count", optarg, 1, 1000000000, &count)))
				return ex;
			watch = 1;
			break;
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("info", "one STORE is needed");
	if (watch && interval <= 0)
		return cli_usage_error("info", "--watch needs an --interval above 0");
	const char *name = argv[optind];
	struct taskring_store *st;
	if ((ex = cli_open(name, &st)))
		return ex;
	signal(SIGINT, on_int);
	signal(SIGTERM, on_int);
	struct cli_snap a, b, *cur = &a, *prev = NULL;
	int rc = 0;
	if (interval > 0) {
		if ((rc = cli_snapshot(st, name, &b)))
			goto out;
		prev = &b;
		sleep_ns(interval);
	}
	for (long long n = 1; !interrupted; n++) {
		if ((rc = cli_snapshot(st, name, cur)))
			break;
		if (json) {
			info_json(cur, prev, interval);
		} else {
			if (watch && isatty(STDOUT_FILENO))
				printf("\033[H\033[2J");
			else if (n > 1)
				printf("\n");
			info_text(cur, prev);
		}
		fflush(stdout);
		if (!watch || n == count)
			break;
		/* The next report's rates run from this one. */
		if (prev)
			cli_snap_free(prev);
		prev = cur;
		cur = cur == &a ? &b : &a;
		sleep_ns(interval);
	}
	cli_snap_free(cur);
	if (prev && prev != cur)
		cli_snap_free(prev);
out:
	taskring_store_close(st);
	return rc ? cli_fail(name, rc) : EXIT_OK;
}

/* ---- ls ---------------------------------------------------------------------- */

/* Is @name in the directory @dfd a regular file that starts with the magic? */
static int is_store(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return 0;
	struct stat sb;
	uint64_t magic = 0;
	int ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && pread(fd, &magic, sizeof(magic), 0) == sizeof(magic) &&
		 magic == TR_MAGIC;
	close(fd);
	return ok;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One store of `taskring ls`: a line, or an object (@first: the first). */
static void ls_one(const char *name, const char *path, int json, int first)
{
	struct taskring_store_opts so = {.flags = TASKRING_STORE_NOCREATE};
	struct taskring_store *st;
	struct cli_snap s;
	int rc = taskring_store_open(name, &so, &st);
	if (rc == 0) {
		rc = cli_snapshot(st, name, &s);
		taskring_store_close(st);
	}
	uint64_t jobs = 0;
	if (rc == 0)
		for (int k = 0; k < TASKRING_STATUS_COUNT; k++)
			jobs += s.total.by_status[k];
	if (json) {
		printf("%s{\"name\":", first ? "" : ",");
		cli_json_str(stdout, name);
		printf(",\"path\":");
		cli_json_str(stdout, path);
		if (rc == 0) {
			printf(",\"region_bytes\":%" PRIu64 ",\"slots\":%u,\"jobs\":%" PRIu64 ",\"attached\":%u,\"log_dir\":",
			       s.info.region_bytes, s.info.slots, jobs, s.attached);
			cli_json_str(stdout, s.log.on ? s.log.dir : NULL);
			printf(",\"durability\":\"%s\",\"error\":null}",
			       !s.log.on ? "none" : s.log.durable ? "durable" : "async");
		} else {
			printf(",\"region_bytes\":null,\"slots\":null,\"jobs\":null,\"attached\":null,\"log_dir\":null,"
			       "\"durability\":null,\"error\":");
			cli_json_str(stdout, taskring_strerror(rc));
			printf("}");
		}
	} else if (rc == 0) {
		char size[32];
		human_bytes(s.info.region_bytes, size, sizeof(size));
		printf("%-32s %10s %9u %9" PRIu64 " %8u  %s%s\n", name, size, s.info.slots, jobs, s.attached,
		       s.log.on ? s.log.dir : "-", !s.log.on ? "" : s.log.durable ? " (durable)" : " (async)");
	} else {
		printf("%-32s cannot be opened: %s\n", name, taskring_strerror(rc));
	}
	if (rc == 0)
		cli_snap_free(&s);
}

int cmd_ls(int argc, char **argv)
{
	int json, bad = 0, first = 1, ex = cli_plain_args("ls", argc, argv, 0, argc, "", &json);
	if (ex >= 0)
		return ex;
	static char *dflt[] = {"/dev/shm"};
	char **dirs = optind < argc ? argv + optind : dflt;
	int ndirs = optind < argc ? argc - optind : 1;
	if (json)
		printf("[");
	else
		printf("%-32s %10s %9s %9s %8s  %s\n", "NAME", "SIZE", "SLOTS", "JOBS", "ATTACHED", "LOG");
	for (int i = 0; i < ndirs; i++) {
		DIR *d = opendir(dirs[i]);
		if (!d) {
			fprintf(stderr, "taskring ls: %s: %s\n", dirs[i], strerror(errno));
			bad = 1;
			continue;
		}
		char **names = NULL;
		size_t n = 0, cap = 0;
		for (struct dirent *e; (e = readdir(d));) {
			if (e->d_name[0] == '.' || !is_store(dirfd(d), e->d_name))
				continue;
			if (n == cap) {
				char **nn = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof(*names));
				if (!nn)
					break;
				names = nn;
			}
			if (!(names[n] = strdup(e->d_name)))
				break;
			n++;
		}
		closedir(d);
		if (n)
			qsort(names, n, sizeof(*names), by_name);
		int shm = !strcmp(dirs[i], "/dev/shm") || !strcmp(dirs[i], "/dev/shm/");
		for (size_t k = 0; k < n; k++) {
			char *path = NULL, *name = NULL;
			int bad_alloc = asprintf(&path, "%s%s%s", dirs[i],
						 dirs[i][strlen(dirs[i]) - 1] == '/' ? "" : "/", names[k]) < 0 ||
					asprintf(&name, "%s%s", shm ? "/" : "", shm ? names[k] : path) < 0;
			if (!bad_alloc)
				ls_one(name, path, json, first);
			free(path);
			free(name);
			first = 0;
			free(names[k]);
		}
		free(names);
	}
	if (json)
		printf("]\n");
	return bad ? EXIT_FAIL : EXIT_OK;
}

/* ---- jobs / show ----------------------------------------------------------------- */

/* "pending,dead" into a status mask; -1 after a message. */
static int parse_states(const char *s, uint32_t *mask)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	*mask = 0;
	for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k;
		for (k = 0; k < TASKRING_STATUS_COUNT && strcmp(t, taskring_status_name(k)); k++)
			;
		if (k == TASKRING_STATUS_COUNT) {
			cli_usage_error("jobs", "--state: unknown state '%s' (pending, running, complete, failed, dead, "
						"cancelled)",
					t);
			return -1;
		}
		*mask |= 1u << k;
	}
	if (!*mask) {
		cli_usage_error("jobs", "--state: no state given");
		return -1;
	}
	return 0;
}

int cmd_jobs(int argc, char **argv)
{
	static const struct option lo[] = {{"state", 1, 0, 's'}, {"queue", 1, 0, 'q'}, {"task", 1, 0, 't'},
					   {"limit", 1, 0, 'n'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'},
					   {0, 0, 0, 0}};
	int c, ex, json = 0;
	uint32_t mask = 0;
	const char *queue = NULL, *task = NULL;
	long long limit = 100;
	while ((c = cli_getopt("jobs", argc, argv, lo, &ex)) != -1) {
		switch (c) {
		case -2: return ex;
		case 'j': json = 1; break;
		case 'q': queue = optarg; break;
		case 't': task = optarg; break;
		case 's':
			if (parse_states(optarg, &mask))
				return EXIT_USAGE;
			break;
		case 'n':
			if ((ex = cli_long("jobs", "--limit", optarg, 0, 1LL << 40, &limit)))
				return ex;
			break;
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("jobs", "one STORE is needed");
	struct taskring_store *st;
	if ((ex = cli_open(argv[optind], &st)))
		return ex;
	uint64_t cursor = 0;
	struct taskring_job job;
	long long n = 0;
	int rc = 0;
	if (json)
		printf("[");
	else
		printf("%-36s %-9s %-12s %-16s %5s %7s %8s %-19s %s\n", "ID", "STATE", "QUEUE", "TASK", "PRIO", "RETRIES",
		       "PROGRESS", "CREATED (UTC)", "ERROR");
	while ((limit == 0 || n < limit) && (rc = taskring_job_next(st, mask, queue, task, &cursor, &job)) == 1) {
		if (json) {
			/* A job that ended and went since the walk found it is
			 * left out. */
			char *t;
			if (cli_job_text(&job, &t))
				continue;
			printf("%s%s", n ? "," : "", t);
			free(t);
			n++;
			continue;
		}
		struct taskring_job_info ji;
		if (taskring_job_info(&job, &ji))
			continue;
		char created[32], err[64] = "", prog[16] = "-";
		cli_time(ji.created_at_ns, created, sizeof(created));
		if (ji.error_count && taskring_job_error(&job, err, sizeof(err)) >= 0)
			for (char *k = err; *k; k++)
				if (*k == '\n')
					*k = ' ';
		if (ji.progress >= 0)
			snprintf(prog, sizeof(prog), "%d%%", ji.progress);
		printf("%-36s %-9s %-12s %-16s %5d %3u/%-3u %8s %-19s %s\n", ji.id, taskring_status_name(ji.status), ji.queue,
		       ji.task_name, ji.priority, ji.retry_count, ji.max_retries, prog, created, err);
		n++;
	}
	if (json)
		printf("]\n");
	if (rc < 0) {
		taskring_store_close(st);
		return cli_fail(argv[optind], rc);
	}
	if (!json && limit && n == limit && taskring_job_next(st, mask, queue, task, &cursor, &job) == 1)
		fprintf(stderr, "taskring jobs: more jobs than --limit %lld shows (--limit 0 for all)\n", limit);
	taskring_store_close(st);
	return EXIT_OK;
}

/* The ids of @n handles, comma-separated, with their states. */
static void print_job_list(const char *label, const struct taskring_job *jobs, int n, int shown)
{
	printf("%-12s", label);
	if (n == 0)
		printf(" -");
	for (int i = 0; i < shown; i++) {
		char id[TASKRING_ID_LEN + 1];
		int s = taskring_job_status(&jobs[i]);
		taskring_job_id(&jobs[i], id);
		printf("%s %s (%s)", i ? "," : "", id, s >= 0 ? taskring_status_name(s) : "gone");
	}
	if (n > shown)
		printf(", and %d more", n - shown);
	printf("\n");
}

/*
 * The text of the top-level string member @key of the job's JSON (the
 * unique key and the metadata, which taskring_job_info() does not carry),
 * unescaped, or "-" when it is null. A quote in a JSON string is always
 * escaped, so "\"key\":" can only be a member's name.
 */
static void print_json_member(const char *json, const char *label, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = json ? strstr(json, pat) : NULL;
	printf("%-12s ", label);
	if (!p || p[strlen(pat)] != '"') {
		printf("-\n");
		return;
	}
	for (p += strlen(pat) + 1; *p && *p != '"'; p++) {
		if (*p != '\\') {
			putchar(*p);
			continue;
		}
		unsigned v;
		switch (*++p) {
		case 'n': putchar('\n'); break;
		case 't': putchar('\t'); break;
		case 'u':
			/* Only \u00XX is written (bytes outside printable ASCII). */
			if (sscanf(p + 1, "%4x", &v) == 1 && v < 0x100) {
				putchar(v >= 0x20 && v < 0x7f ? (int)v : '?');
				p += 4;
			}
			break;
		case 0: p--; break;
		default: putchar(*p); break;
		}
	}
	printf("\n");
}

static void show_text(const struct taskring_job *job, const struct taskring_job_info *ji)
{
	char t[32];
	printf("%-12s %s\n%-12s %s\n%-12s %s\n%-12s %s%s\n%-12s %d\n", "id", ji->id, "task", ji->task_name, "queue",
	       ji->queue, "status", taskring_status_name(ji->status), ji->cancel_requested ? " (cancel requested)" : "",
	       "priority", ji->priority);
	if (ji->progress >= 0)
		printf("%-12s %d%%\n", "progress", ji->progress);
	else
		printf("%-12s -\n", "progress");
	printf("%-12s %u of %u\n", "retries", ji->retry_count, ji->max_retries);
	static const char *const when[] = {"created", "scheduled", "started", "completed", "expires"};
	const int64_t at[] = {ji->created_at_ns, ji->scheduled_at_ns, ji->started_at_ns, ji->completed_at_ns,
			      ji->expires_at_ns};
	for (int i = 0; i < 5; i++) {
		cli_time(at[i], t, sizeof(t));
		printf("%-12s %s%s\n", when[i], t, at[i] ? " UTC" : "");
	}
	printf("%-12s %.3f s\n", "timeout", (double)ji->timeout_ns / 1e9);
	if (ji->result_ttl_ns)
		printf("%-12s %.3f s\n", "result ttl", (double)ji->result_ttl_ns / 1e9);
	printf("%-12s %u bytes\n%-12s %u bytes\n", "payload", ji->payload_len, "result", ji->result_len);
	char *json = NULL;
	cli_job_text(job, &json); /* on failure the two read "-" */
	print_json_member(json, "unique key", "unique_key");
	print_json_member(json, "metadata", "metadata");
	free(json);
	struct taskring_job deps[16];
	int n = taskring_job_dependencies(job, deps, 16);
	if (n >= 0)
		print_job_list("depends on", deps, n, n < 16 ? n : 16);
	n = taskring_job_dependents(job, deps, 16);
	if (n >= 0)
		print_job_list("dependents", deps, n, n < 16 ? n : 16);
	int ne = taskring_job_errors(job, NULL, 0);
	printf("%-12s %d\n", "errors", ne < 0 ? 0 : ne);
	if (ne > 0) {
		struct taskring_error_record *er = calloc((size_t)ne, sizeof(*er));
		int m = er ? taskring_job_errors(job, er, (size_t)ne) : -ENOMEM;
		for (int i = 0; i < m && i < ne; i++) {
			cli_time(er[i].failed_at_ns, t, sizeof(t));
			printf("  attempt %u at %s UTC: %s\n", er[i].attempt, t, er[i].error);
		}
		free(er);
	}
}

int cmd_show(int argc, char **argv)
{
	int json, ex = cli_plain_args("show", argc, argv, 2, 2, "a STORE and a job ID are", &json);
	if (ex >= 0)
		return ex;
	struct taskring_store *st;
	struct taskring_job job;
	struct taskring_job_info ji;
	if ((ex = cli_open(argv[optind], &st)))
		return ex;
	if ((ex = cli_lookup(st, argv[optind + 1], &job))) {
		taskring_store_close(st);
		return ex;
	}
	int rc = json ? cli_job_json(stdout, &job) : taskring_job_info(&job, &ji);
	if (!rc && json)
		printf("\n");
	else if (!rc)
		show_text(&job, &ji);
	taskring_store_close(st);
	return rc ? cli_fail(argv[optind + 1], rc) : EXIT_OK;
}

/* ---- metrics --------------------------------------------------------------------- */

struct prom {
	FILE *f;
	const char *store;
};

/* "# HELP" and "# TYPE" of a family. */
static void fam(struct prom *p, const char *name, const char *type, const char *help)
{
	fprintf(p->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void label_value(FILE *f, const char *v)
{
	fputc('"', f);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

/* One sample: name{store="..."[,k="v"][,k2="v2"]} value. */
static void sample(struct prom *p, const char *name, const char *k, const char *v, const char *k2, const char *v2,
		   uint64_t value)
{
	fprintf(p->f, "%s{store=", name);
	label_value(p->f, p->store);
	if (k) {
		fprintf(p->f, ",%s=", k);
		label_value(p->f, v);
	}
	if (k2) {
		fprintf(p->f, ",%s=", k2);
		label_value(p->f, v2);
	}
	fprintf(p->f, "} %" PRIu64 "\n", value);
}

static void metrics_text(FILE *f, const struct cli_snap *s)
{
	struct prom p = {f, s->name};
	fam(&p, "taskring_jobs", "gauge", "Jobs in the store by queue and state.");
	for (uint32_t i = 0; i < s->nq; i++)
		for (int k = 0; k < TASKRING_STATUS_COUNT; k++)
			sample(&p, "taskring_jobs", "queue", s->q[i].name, "state", taskring_status_name(k),
			       s->q[i].qs.by_status[k]);
	static const struct {
		const char *name, *help;
		size_t off;
	} ctr[] = {
		{"taskring_jobs_enqueued_total", "Jobs enqueued since the store was created.",
		 offsetof(struct taskring_queue_stats, enqueued)},
		{"taskring_jobs_started_total", "Attempts started.", offsetof(struct taskring_queue_stats, started)},
		{"taskring_jobs_completed_total", "Jobs completed.", offsetof(struct taskring_queue_stats, completed)},
		{"taskring_jobs_failed_total", "Jobs failed permanently.", offsetof(struct taskring_queue_stats, failed)},
		{"taskring_jobs_dead_total", "Jobs that ran out of retries (dead letters).",
		 offsetof(struct taskring_queue_stats, dead)},
		{"taskring_jobs_cancelled_total", "Jobs cancelled.", offsetof(struct taskring_queue_stats, cancelled)},
		{"taskring_jobs_retried_total", "Failed attempts that were retried.",
		 offsetof(struct taskring_queue_stats, retried)},
	};
	for (size_t c = 0; c < sizeof(ctr) / sizeof(ctr[0]); c++) {
		fam(&p, ctr[c].name, "counter", ctr[c].help);
		for (uint32_t i = 0; i < s->nq; i++)
			sample(&p, ctr[c].name, "queue", s->q[i].name, NULL, NULL,
			       *(const uint64_t *)((const char *)&s->q[i].qs + ctr[c].off));
	}
	fam(&p, "taskring_queue_paused", "gauge", "1 when workers do not claim from the queue.");
	for (uint32_t i = 0; i < s->nq; i++)
		sample(&p, "taskring_queue_paused", "queue", s->q[i].name, NULL, NULL, s->q[i].qs.paused ? 1 : 0);
	const struct {
		const char *name, *type, *help;
		uint64_t v;
	} one[] = {
		{"taskring_store_slots", "gauge", "Job slots.", s->info.slots},
		{"taskring_store_region_bytes", "gauge", "Size of the shared region.", s->info.region_bytes},
		{"taskring_store_arena_bytes", "gauge", "Size of the payload arena.", s->info.arena_bytes},
		{"taskring_store_arena_used_bytes", "gauge", "Arena bytes carved so far.", s->info.arena_used},
		{"taskring_processes_attached", "gauge", "Live processes attached to the store (the tool not counted).",
		 s->attached},
		{"taskring_reaped_processes_total", "counter", "Attached processes the reaper found dead.",
		 s->reaped_procs},
		{"taskring_reaped_jobs_total", "counter", "Running jobs the reaper put back or ended.", s->reaped_jobs},
		{"taskring_reaped_blocks_total", "counter", "Arena blocks of dead processes the reaper freed.",
		 s->reaped_blocks},
		{"taskring_reap_scans_total", "counter", "Walks of the slot table by the reaper.", s->reap_scans},
	};
	for (size_t c = 0; c < sizeof(one) / sizeof(one[0]); c++) {
		fam(&p, one[c].name, one[c].type, one[c].help);
		sample(&p, one[c].name, NULL, NULL, NULL, NULL, one[c].v);
	}
	if (!s->log.on)
		return;
	const struct cli_log *l = &s->log;
	const struct {
		const char *name, *type, *help;
		uint64_t v;
	} lg[] = {
		{"taskring_log_staged_bytes", "gauge", "Log position staged by writers (bytes since the region's log began).",
		 l->staged},
		{"taskring_log_written_bytes", "gauge", "Log position written to the file.", l->written},
		{"taskring_log_durable_bytes", "gauge", "Log position synced to stable storage.", l->synced},
		{"taskring_log_next_sequence", "gauge", "Sequence number of the next log record.", l->next_seq},
		{"taskring_log_disk_bytes", "gauge", "Bytes the log directory's files take on disk.", l->disk_bytes},
		{"taskring_log_failed", "gauge", "1 when a log write or sync failed (durable work is refused).",
		 (uint64_t)l->failed},
		{"taskring_log_low_space", "gauge", "1 when new jobs are refused for lack of disk space.",
		 (uint64_t)l->low_space},
		{"taskring_log_compactions_total", "counter", "Log compactions made by the store's processes.",
		 l->compactions},
	};
	for (size_t c = 0; c < sizeof(lg) / sizeof(lg[0]); c++) {
		fam(&p, lg[c].name, lg[c].type, lg[c].help);
		sample(&p, lg[c].name, "mode", l->durable ? "durable" : "async", NULL, NULL, lg[c].v);
	}
}

/* Write @len bytes to @path through a temporary file in its directory,
 * synced and renamed over it. */
static int write_atomic(const char *path, const char *buf, size_t len)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = 0;
	for (size_t off = 0; off < len && !rc;) {
		ssize_t n = write(fd, buf + off, len - off);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n > 0)
			off += (size_t)n;
	}
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

int cmd_metrics(int argc, char **argv)
{
	static const struct option lo[] = {{"output", 1, 0, 'o'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c, ex;
	const char *out = NULL;
	while ((c = cli_getopt("metrics", argc, argv, lo, &ex)) != -1) {
		if (c == -2)
			return ex;
		out = optarg;
	}
	if (argc - optind != 1)
		return cli_usage_error("metrics", "one STORE is needed");
	const char *name = argv[optind];
	struct taskring_store *st;
	struct cli_snap s;
	if ((ex = cli_open(name, &st)))
		return ex;
	int rc = cli_snapshot(st, name, &s);
	taskring_store_close(st);
	if (rc)
		return cli_fail(name, rc);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		cli_snap_free(&s);
		return cli_fail("metrics", -ENOMEM);
	}
	metrics_text(f, &s);
	fclose(f);
	cli_snap_free(&s);
	if (out && (rc = write_atomic(out, buf, len)) != 0) {
		free(buf);
		fprintf(stderr, "taskring metrics: %s: %s\n", out, strerror(-rc));
		return EXIT_FAIL;
	}
	if (!out)
		fwrite(buf, 1, len, stdout);
	free(buf);
	return EXIT_OK;
}
