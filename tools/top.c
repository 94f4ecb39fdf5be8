/*
 * top.c - `taskring top STORE [--interval D]`: a live full-screen view of a
 * store (ncurses), redrawn every interval from a fresh snapshot: the store
 * line, per queue the counts per state and the enqueue/end rates, the
 * running jobs with their progress as bars and the newest dead jobs with
 * their errors. Keys: q quits, p pauses or resumes the selected queue,
 * up/down (k/j) select a queue.
 *
 * Everything it keeps is bounded: TOP_JOBS running jobs and TOP_DEAD dead
 * ones per frame, in static buffers.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curses.h>

#include "cli.h"

#define MS 1000000LL
#define SEC 1000000000LL

#define TOP_JOBS 256      /* running jobs kept per frame */
#define TOP_DEAD 10       /* newest dead jobs shown */
#define TOP_BAR 20        /* cells of a progress bar */
#define TOP_NAME_W 24     /* widest TASK / QUEUE column */
#define TOP_LINE 2048     /* longest line formatted */
#define TOP_MIN_PERIOD (10 * MS) /* the screen is never redrawn faster */
#define TOP_MSG_NS (5 * SEC)     /* how long a status message stays */

struct top_job {
	struct taskring_job job;
	struct taskring_job_info ji;
	char err[TASKRING_ERROR_MAX + 1]; /* dead jobs: the newest error */
};

static struct top_job top_run[TOP_JOBS];
static struct top_job top_dead[TOP_DEAD];

struct top {
	struct taskring_store *st;
	const char *name;
	int64_t interval;
	struct cli_snap cur, prev;
	int have_prev;
	double enq[TASKRING_MAX_QUEUES], end[TASKRING_MAX_QUEUES]; /* < 0: none */
	uint32_t sel, qtop;                        /* selected queue, first shown */
	char sel_name[TASKRING_NAME_MAX + 1];
	size_t nrun, nrun_all, ndead, ndead_all;   /* kept, and found */
	int64_t jobs_at;                           /* CLOCK_REALTIME of the walk */
	char msg[256];
	int64_t msg_until;                         /* CLOCK_MONOTONIC */
};

static volatile sig_atomic_t top_stop;

static void top_on_signal(int sig)
{
	top_stop = 1;
}

static void top_message(struct top *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void top_message(struct top *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->msg, sizeof(t->msg), fmt, ap);
	va_end(ap);
	t->msg_until = cli_now_mono() + TOP_MSG_NS;
}

/* Printable ASCII only: a control character or a byte above 0x7e would move
 * the cursor or take another width than one cell. */
static void top_sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = (*s == '\n' || *s == '\t' || *s == '\r') ? ' ' : '?';
}

/* Write one line at row @y, cut to the screen's width (and one short of the
 * last column on the last row, which would scroll). @fill pads it with blanks
 * to the full width (for a highlighted row). */
static void top_line(int y, attr_t attr, int fill, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void top_line(int y, attr_t attr, int fill, const char *fmt, ...)
{
	char buf[TOP_LINE];
	int rows, cols;
	getmaxyx(stdscr, rows, cols);
	if (y < 0 || y >= rows || cols <= 0)
		return;
	int w = y == rows - 1 ? cols - 1 : cols;
	if (w <= 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	top_sanitize(buf);
	int n = (int)strlen(buf);
	if (n > w)
		n = w;
	if (attr)
		attron(attr);
	if (n > 0)
		mvaddnstr(y, 0, buf, n);
	if (fill)
		for (int x = n; x < w; x++)
			mvaddch(y, x, ' ');
	if (attr)
		attroff(attr);
}

/* 12.3s, 4m05s, 2h10m, 3d04h. */
static void top_dur(int64_t ns, char *buf, size_t cap)
{
	if (ns < 0)
		ns = 0;
	long long s = ns / SEC;
	if (s < 60)
		snprintf(buf, cap, "%.1fs", (double)ns / 1e9);
	else if (s < 3600)
		snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, cap, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else
		snprintf(buf, cap, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

/* "[####      ]  42%" (TOP_BAR cells), or "      -" without progress. */
static void top_bar(int progress, char *buf, size_t cap)
{
	if (progress < 0) {
		snprintf(buf, cap, "      -");
		return;
	}
	if (progress > 100)
		progress = 100;
	char cells[TOP_BAR + 1];
	int filled = progress * TOP_BAR / 100;
	for (int i = 0; i < TOP_BAR; i++)
		cells[i] = i < filled ? '#' : ' ';
	cells[TOP_BAR] = '\0';
	snprintf(buf, cap, "[%s] %3d%%", cells, progress);
}

static void top_rate(double r, char *buf, size_t cap)
{
	if (r < 0)
		snprintf(buf, cap, "%s", "");
	else if (r < 1000)
		snprintf(buf, cap, "%.1f", r);
	else
		snprintf(buf, cap, "%.0f", r);
}

static int cmp_started(const void *a, const void *b)
{
	const struct top_job *x = a, *y = b;
	int64_t p = x->ji.started_at_ns, q = y->ji.started_at_ns;
	return p < q ? -1 : p > q;
}

/* The running jobs (the first TOP_JOBS found, oldest start first) and the
 * TOP_DEAD newest dead ones. */
static void top_jobs(struct top *t)
{
	struct taskring_job j;
	struct taskring_job_info ji;
	uint64_t cursor = 0;

	t->nrun = t->nrun_all = 0;
	while (taskring_job_next(t->st, 1u << TASKRING_RUNNING, NULL, NULL, &cursor, &j) == 1) {
		t->nrun_all++;
		if (t->nrun == TOP_JOBS || taskring_job_info(&j, &ji) || ji.status != TASKRING_RUNNING)
			continue;
		top_run[t->nrun].job = j;
		top_run[t->nrun].ji = ji;
		t->nrun++;
	}
	qsort(top_run, t->nrun, sizeof(top_run[0]), cmp_started);

	/* Insertion into a short list sorted by completed_at, newest first. */
	t->ndead = t->ndead_all = 0;
	cursor = 0;
	while (taskring_job_next(t->st, 1u << TASKRING_DEAD, NULL, NULL, &cursor, &j) == 1) {
		t->ndead_all++;
		if (taskring_job_info(&j, &ji) || ji.status != TASKRING_DEAD)
			continue;
		size_t i = t->ndead;
		while (i > 0 && top_dead[i - 1].ji.completed_at_ns < ji.completed_at_ns)
			i--;
		if (i == TOP_DEAD)
			continue;
		size_t n = t->ndead < TOP_DEAD ? t->ndead : TOP_DEAD - 1;
		memmove(&top_dead[i + 1], &top_dead[i], (n - i) * sizeof(top_dead[0]));
		top_dead[i].job = j;
		top_dead[i].ji = ji;
		if (t->ndead < TOP_DEAD)
			t->ndead++;
	}
	for (size_t i = 0; i < t->ndead; i++) {
		char *e = top_dead[i].err;
		if (taskring_job_error(&top_dead[i].job, e, sizeof(top_dead[i].err)) < 0)
			snprintf(e, sizeof(top_dead[i].err), "-");
		top_sanitize(e);
	}
	t->jobs_at = cli_now_real();
}

/* The selection follows its queue by name when the table changes. */
static void top_select(struct top *t)
{
	for (uint32_t i = 0; i < t->cur.nq; i++)
		if (!strcmp(t->cur.q[i].name, t->sel_name)) {
			t->sel = i;
			return;
		}
	if (t->sel >= t->cur.nq)
		t->sel = t->cur.nq ? t->cur.nq - 1 : 0;
	if (t->cur.nq)
		snprintf(t->sel_name, sizeof(t->sel_name), "%s", t->cur.q[t->sel].name);
}

/* A new snapshot, rates against the one before, and the jobs. */
static int top_refresh(struct top *t)
{
	struct cli_snap s;
	memset(&s, 0, sizeof(s));
	int rc = cli_snapshot(t->st, t->name, &s);
	if (rc < 0)
		return rc;
	if (t->have_prev)
		cli_snap_free(&t->prev);
	t->prev = t->cur;
	t->have_prev = 1;
	t->cur = s;
	for (uint32_t i = 0; i < t->cur.nq; i++) {
		const struct taskring_queue_stats *q = &t->cur.q[i].qs;
		const struct taskring_queue_stats *p = cli_snap_queue(&t->prev, t->cur.q[i].name);
		t->enq[i] = p ? cli_rate(q->enqueued, p->enqueued, &t->cur, &t->prev) : -1;
		t->end[i] = p ? cli_rate(cli_ended(q), cli_ended(p), &t->cur, &t->prev) : -1;
	}
	top_select(t);
	top_jobs(t);
	return 0;
}

static int top_name_width(size_t n, const struct top_job *jobs, int task, int w)
{
	for (size_t i = 0; i < n; i++) {
		int l = (int)strlen(task ? jobs[i].ji.task_name : jobs[i].ji.queue);
		if (l > w)
			w = l;
	}
	return w > TOP_NAME_W ? TOP_NAME_W : w;
}

static void top_draw(struct top *t)
{
	const struct cli_snap *s = &t->cur;
	int rows, cols;
	char a[64], b[64], c[64];
	getmaxyx(stdscr, rows, cols);
	(void)cols;
	erase();

	/* 1. The store. */
	uint64_t jobs = 0;
	for (int i = 0; i < TASKRING_STATUS_COUNT; i++)
		jobs += s->total.by_status[i];
	char when[32], log[300];
	cli_time(s->at_real, when, sizeof(when));
	const char *hms = strrchr(when, ' ');
	hms = hms ? hms + 1 : when;
	if (s->log.on)
		snprintf(log, sizeof(log), "%s (%s)", s->log.dir, s->log.durable ? "durable" : "async");
	else
		snprintf(log, sizeof(log), "none");
	top_line(0, A_BOLD, 0, "taskring top - %s - %u slots, %llu jobs, %u attached, log: %s - %s", t->name,
		 s->info.slots, (unsigned long long)jobs, s->attached, log, hms);

	/* The rows between the title and the message line are shared: the
	 * queues first, then at least some running jobs, then the dead. */
	int y = 2, body = rows - 4;
	int qrows = (int)s->nq;
	if (qrows > body - 10)
		qrows = body - 10;
	if (qrows < 1)
		qrows = 1;
	if (t->sel < t->qtop)
		t->qtop = t->sel;
	if ((int)(t->sel - t->qtop) >= qrows)
		t->qtop = t->sel - (uint32_t)qrows + 1;
	if (s->nq > (uint32_t)qrows && t->qtop > s->nq - (uint32_t)qrows)
		t->qtop = s->nq - (uint32_t)qrows;
	if (s->nq <= (uint32_t)qrows)
		t->qtop = 0;

	/* 2. The queues. */
	int qw = 5;
	for (uint32_t i = 0; i < s->nq; i++)
		if ((int)strlen(s->q[i].name) > qw)
			qw = (int)strlen(s->q[i].name);
	if (qw > TOP_NAME_W)
		qw = TOP_NAME_W;
	top_line(y++, A_BOLD, 0, "%-*s  %-6s %9s %9s %9s %9s %9s %9s %9s %9s", qw, "QUEUE", "STATE", "PENDING",
		 "RUNNING", "COMPLETE", "FAILED", "DEAD", "CANCELLED", "ENQ/s", "END/s");
	if (!s->nq)
		top_line(y++, 0, 0, "(no queues)");
	for (uint32_t i = t->qtop; i < s->nq && (int)(i - t->qtop) < qrows; i++) {
		const struct taskring_queue_stats *q = &s->q[i].qs;
		top_rate(t->have_prev ? t->enq[i] : -1, a, sizeof(a));
		top_rate(t->have_prev ? t->end[i] : -1, b, sizeof(b));
		top_line(y++, i == t->sel ? A_REVERSE : 0, i == t->sel,
			 "%-*.*s  %-6s %9llu %9llu %9llu %9llu %9llu %9llu %9s %9s", qw, qw, s->q[i].name,
			 q->paused ? "paused" : "active", (unsigned long long)q->by_status[TASKRING_PENDING],
			 (unsigned long long)q->by_status[TASKRING_RUNNING],
			 (unsigned long long)q->by_status[TASKRING_COMPLETE],
			 (unsigned long long)q->by_status[TASKRING_FAILED],
			 (unsigned long long)q->by_status[TASKRING_DEAD],
			 (unsigned long long)q->by_status[TASKRING_CANCELLED], a, b);
	}
	if (s->nq > (uint32_t)qrows)
		top_line(y++, 0, 0, "  (queues %u-%u of %u)", t->qtop + 1, t->qtop + (uint32_t)qrows, s->nq);

	/* Rows left for the running and the dead jobs: each section has a
	 * blank line, a title and a header. */
	int avail = rows - 2 - y - 6;
	if (avail < 0)
		avail = 0;
	int rwant = (int)t->nrun, dwant = (int)t->ndead;
	int rmin = rwant < avail - avail / 2 ? rwant : avail - avail / 2;
	int nd = dwant < avail - rmin ? dwant : avail - rmin;
	int nr = rwant < avail - nd ? rwant : avail - nd;

	/* 3. The running jobs. */
	int tw = top_name_width((size_t)nr, top_run, 1, 4), uw = top_name_width((size_t)nr, top_run, 0, 5);
	y++;
	if ((size_t)nr < t->nrun_all)
		top_line(y++, A_BOLD, 0, "Running: %zu (showing %d)", t->nrun_all, nr);
	else
		top_line(y++, A_BOLD, 0, "Running: %zu", t->nrun_all);
	top_line(y++, A_BOLD, 0, "%-36s  %-*s  %-*s  %8s  %s", "ID", tw, "TASK", uw, "QUEUE", "RUNTIME", "PROGRESS");
	for (int i = 0; i < nr; i++) {
		const struct taskring_job_info *ji = &top_run[i].ji;
		if (ji->started_at_ns)
			top_dur(t->jobs_at - ji->started_at_ns, a, sizeof(a));
		else
			snprintf(a, sizeof(a), "-");
		top_bar(ji->progress, c, sizeof(c));
		top_line(y++, 0, 0, "%-36s  %-*.*s  %-*.*s  %8s  %s", ji->id, tw, tw, ji->task_name, uw, uw, ji->queue, a,
			 c);
	}

	/* 4. The newest dead jobs. */
	tw = top_name_width((size_t)nd, top_dead, 1, 4);
	uw = top_name_width((size_t)nd, top_dead, 0, 5);
	y++;
	if ((size_t)nd < t->ndead_all)
		top_line(y++, A_BOLD, 0, "Dead: %zu (newest %d)", t->ndead_all, nd);
	else
		top_line(y++, A_BOLD, 0, "Dead: %zu", t->ndead_all);
	top_line(y++, A_BOLD, 0, "%-36s  %-*s  %-*s  %-19s  %s", "ID", tw, "TASK", uw, "QUEUE", "ENDED", "ERROR");
	for (int i = 0; i < nd; i++) {
		const struct taskring_job_info *ji = &top_dead[i].ji;
		cli_time(ji->completed_at_ns, a, sizeof(a));
		top_line(y++, 0, 0, "%-36s  %-*.*s  %-*.*s  %-19s  %s", ji->id, tw, tw, ji->task_name, uw, uw, ji->queue,
			 a, top_dead[i].err);
	}

	/* 5. The message and the keys. */
	if (t->msg[0] && cli_now_mono() < t->msg_until)
		top_line(rows - 2, 0, 0, "%s", t->msg);
	top_line(rows - 1, A_REVERSE, 1, "q quit  p pause/resume  up/down select  (refresh every %g s)",
		 (double)t->interval / 1e9);
	refresh();
}

static void top_pause(struct top *t)
{
	if (t->sel >= t->cur.nq) {
		top_message(t, "no queue selected");
		return;
	}
	struct cli_queue *q = &t->cur.q[t->sel];
	int paused = q->qs.paused;
	int rc = paused ? taskring_queue_resume(t->st, q->name) : taskring_queue_pause(t->st, q->name);
	if (rc < 0) {
		top_message(t, "%s %s: %s", paused ? "resume" : "pause", q->name, taskring_strerror(rc));
		return;
	}
	/* Shown at once; the next snapshot reads it from the store. */
	q->qs.paused = !paused;
	top_message(t, "queue %s %s", q->name, paused ? "resumed" : "paused");
}

/* Keys until the next frame is due or a key needs a redraw. Returns 1 to
 * quit. */
static int top_keys(struct top *t)
{
	int ch = getch();
	switch (ch) {
	case ERR: return 0;
	case 'q': case 'Q': return 1;
	case KEY_UP: case 'k':
		if (t->sel > 0)
			t->sel--;
		break;
	case KEY_DOWN: case 'j':
		if (t->sel + 1 < t->cur.nq)
			t->sel++;
		break;
	case 'p': top_pause(t); break;
	case 12: /* ^L */ clearok(curscr, TRUE); break;
	case KEY_RESIZE: break;
	default: return 0;
	}
	if (t->sel < t->cur.nq)
		snprintf(t->sel_name, sizeof(t->sel_name), "%s", t->cur.q[t->sel].name);
	top_draw(t);
	return 0;
}

static int top_run_screen(struct top *t)
{
	int64_t period = t->interval < TOP_MIN_PERIOD ? TOP_MIN_PERIOD : t->interval;
	int64_t next = cli_now_mono() + period;

	top_draw(t);
	while (!top_stop) {
		int64_t now = cli_now_mono();
		if (now >= next) {
			int rc = top_refresh(t);
			if (rc < 0)
				top_message(t, "snapshot of %s: %s", t->name, taskring_strerror(rc));
			next += period;
			if (next <= now)
				next = now + period;
			top_draw(t);
			continue;
		}
		/* A short wait at most, so a signal is seen soon even where
		 * getch() restarts after it. */
		int64_t left = (next - now + MS - 1) / MS;
		timeout(left > 250 ? 250 : (int)left);
		if (top_keys(t))
			break;
	}
	return EXIT_OK;
}

int cmd_top(int argc, char **argv)
{
	static const struct option lo[] = {{"interval", 1, 0, 'i'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int64_t interval = SEC;
	int c, ex;
	while ((c = cli_getopt("top", argc, argv, lo, &ex)) != -1) {
		if (c == -2)
			return ex;
		if (c == 'i') {
			if ((ex = cli_duration("top", "--interval", optarg, &interval)))
				return ex;
			if (interval <= 0 || interval > 3600 * SEC)
				return cli_usage_error("top", "--interval must be more than 0 and at most 1h");
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("top", "one STORE is needed");

	static struct top t; /* the snapshots are large */
	memset(&t, 0, sizeof(t));
	t.name = argv[optind];
	t.interval = interval;
	if ((ex = cli_open(t.name, &t.st)))
		return ex;
	if (!isatty(STDOUT_FILENO)) {
		fprintf(stderr, "taskring top: stdout is not a terminal (use `taskring info --watch`)\n");
		taskring_store_close(t.st);
		return EXIT_FAIL;
	}
	int rc = cli_snapshot(t.st, t.name, &t.cur);
	if (rc < 0) {
		taskring_store_close(t.st);
		return cli_fail(t.name, rc);
	}
	top_select(&t);
	top_jobs(&t);

	/* Installed before the screen, so ncurses keeps ours (it only takes
	 * signals left at their default); no SA_RESTART, so a signal ends a
	 * wait in getch(). */
	struct sigaction sa, old_int, old_term, old_hup;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = top_on_signal;
	sigemptyset(&sa.sa_mask);
	top_stop = 0;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);

	ex = EXIT_OK;
	SCREEN *scr = newterm(NULL, stdout, stdin);
	if (!scr) {
		const char *term = getenv("TERM");
		fprintf(stderr, "taskring top: cannot use the terminal (TERM=%s)\n", term ? term : "");
		ex = EXIT_FAIL;
	} else {
		cbreak();
		noecho();
		nonl();
		intrflush(stdscr, FALSE);
		keypad(stdscr, TRUE);
		curs_set(0);
		ex = top_run_screen(&t);
		endwin();
		delscreen(scr);
	}

	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	if (t.have_prev)
		cli_snap_free(&t.prev);
	cli_snap_free(&t.cur);
	taskring_store_close(t.st);
	return ex;
}
