/*
 * cli.h - what the parts of the taskring tool share: exit codes, argument
 * parsing, opening a store, JSON text, and a snapshot of a store (counts,
 * processes, log, reaper) that info, metrics, ls and top print.
 *
 * The tool reads the store's process table, log positions and reaper
 * counters from the region itself (src/internal.h): they have no public
 * call, and the tool is built with the library.
 */
#ifndef TASKRING_CLI_H
#define TASKRING_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "taskring.h"

/* Exit codes; taskring(1) documents them. */
#define EXIT_OK 0
#define EXIT_FAIL 1    /* a taskring call failed (the message says which) */
#define EXIT_USAGE 2   /* bad usage */
#define EXIT_ENDED 3   /* wait: the job ended failed, dead or cancelled */
#define EXIT_TIMEOUT 4 /* wait: it had not ended when the timeout passed */

/* One command: its name, its function, its usage text (the first line is
 * the synopsis). */
struct cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
};

/* Print "taskring: WHAT: the error's text" to stderr; returns EXIT_FAIL. */
int cli_fail(const char *what, int rc);
/* Print "taskring CMD: MESSAGE" and the command's synopsis to stderr;
 * returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Option parsing for command @cmd: getopt_long over @argv with @lo, which
 * must hold {"help", 0, 0, 'h'} and {"json", 0, 0, 'j'} where the command
 * has them. Returns the option, -1 at the end, or -2 after it printed the
 * usage (then the command returns *@exitp). Positional arguments are left
 * in argv[optind..argc).
 */
int cli_getopt(const char *cmd, int argc, char **argv, const struct option *lo, int *exitp);
/* A command whose only options are --json (when @json is not NULL) and
 * --help, with @lo..@hi positional arguments (@what names them in the
 * message, as in "a STORE and a job ID are"). Returns -1 to go on, or the
 * exit code. */
int cli_plain_args(const char *cmd, int argc, char **argv, int lo, int hi, const char *what, int *json);
/* The usage text of @cmd. */
const char *cli_usage_of(const char *cmd);

/* Values of options: 0, or EXIT_USAGE after a message. */
int cli_duration(const char *cmd, const char *opt, const char *s, int64_t *ns);
int cli_size(const char *cmd, const char *opt, const char *s, uint64_t *v);
int cli_long(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *v);

/* Open the existing store @name (never creates one). 0, or EXIT_FAIL after
 * a message. */
int cli_open(const char *name, struct taskring_store **stp);
/* Look up job @id in @st: 0, or EXIT_FAIL after a message. */
int cli_lookup(struct taskring_store *st, const char *id, struct taskring_job *job);

/* JSON: a string with escapes; a CLOCK_REALTIME ns time as ms or null. */
void cli_json_str(FILE *f, const char *s);
void cli_json_strn(FILE *f, const char *s, size_t n);
void cli_json_ms(FILE *f, int64_t ns);
/* A job's JSON (taskring_job_to_json) in a malloc'd string, or to @f; 0
 * or a taskring error. */
int cli_job_text(const struct taskring_job *job, char **textp);
int cli_job_json(FILE *f, const struct taskring_job *job);
/* "2026-11-29 12:00:00" (UTC) or "-" for 0. */
void cli_time(int64_t ns, char *buf, size_t cap);

int64_t cli_now_real(void);
int64_t cli_now_mono(void);

/* ---- snapshot ---------------------------------------------------------- */

struct cli_queue {
	char name[TASKRING_NAME_MAX + 1];
	struct taskring_queue_stats qs;
};

struct cli_proc {
	int pid;
	char comm[16];
	int64_t attached_at, heartbeat; /* CLOCK_REALTIME ns */
	int alive, self;
};

struct cli_log {
	int on;
	char dir[256];
	int durable;       /* TASKRING_DURABLE, else async */
	int64_t flush_interval_ns;
	uint64_t staged, written, synced; /* staging positions, bytes */
	uint64_t next_seq, compactions, segno;
	uint64_t disk_bytes; /* the files in the directory */
	int failed, low_space;
};

struct cli_snap {
	const char *name;
	int64_t at_mono, at_real;
	struct taskring_store_info info;
	int64_t created_at;
	uint32_t nq;
	struct cli_queue q[TASKRING_MAX_QUEUES];
	struct taskring_queue_stats total;
	uint32_t np, attached; /* entries; live ones other than this tool */
	struct cli_proc *p;    /* malloc'd, TR_PROCS entries */
	struct cli_log log;
	uint64_t reaped_procs, reaped_jobs, reaped_blocks, reap_scans;
};

/* Fill @s from @st (walks the slot table once per queue). 0 or an error. */
int cli_snapshot(struct taskring_store *st, const char *name, struct cli_snap *s);
void cli_snap_free(struct cli_snap *s);
/* The store's object of `info --json` and `create --json` (no newline). */
void cli_json_store(const struct cli_snap *s);
/* Jobs that ended (complete, failed, dead, cancelled) as counted. */
uint64_t cli_ended(const struct taskring_queue_stats *q);
/* Rate per second of a counter between two snapshots; < 0 when there is
 * no earlier one. */
double cli_rate(uint64_t now, uint64_t before, const struct cli_snap *a, const struct cli_snap *b);
/* The earlier snapshot's stats of queue @name, or NULL. */
const struct taskring_queue_stats *cli_snap_queue(const struct cli_snap *s, const char *name);

/* The commands. */
int cmd_demo(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_enqueue(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_purge(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_reap(int argc, char **argv);
int cmd_top(int argc, char **argv);

#endif
