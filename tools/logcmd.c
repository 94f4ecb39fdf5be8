/*
 * logcmd.c - `taskring log verify|dump|compact DIR`: check, print and
 * compact a store's log without the store.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "wal.h"

/* ---- log --------------------------------------------------------------------- */

/* Blobs that hold text; the others are shown as hex. */
static int text_blob(const char *name)
{
	static const char *const text[] = {"queue", "task", "metadata", "unique_key", "error"};
	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
		if (!strcmp(name, text[i]))
			return 1;
	return 0;
}

struct dump_ctx {
	int json;
};

static int dump_record(void *arg, const struct tr_logrec *r, const char *seg, uint64_t off)
{
	struct dump_ctx *d = arg;
	const struct tr_logrec_spec *sp = tr__logrec_spec(r->type);
	char id[40];
	snprintf(id, sizeof(id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r->uuid[0],
		 r->uuid[1], r->uuid[2], r->uuid[3], r->uuid[4], r->uuid[5], r->uuid[6], r->uuid[7], r->uuid[8],
		 r->uuid[9], r->uuid[10], r->uuid[11], r->uuid[12], r->uuid[13], r->uuid[14], r->uuid[15]);
	if (d->json)
		printf("{\"seq\":%llu,\"segment\":\"%s\",\"offset\":%llu,\"type\":\"%s\",\"job\":\"%s\"",
		       (unsigned long long)r->seq, seg, (unsigned long long)off, sp->name, id);
	else
		printf("%llu %s %s", (unsigned long long)r->seq, sp->name, id);
	for (unsigned i = 0; i < sp->nscalars; i++)
		printf(d->json ? ",\"%s\":%lld" : " %s=%lld", sp->scalar[i], (long long)r->v[i]);
	for (unsigned i = 0; i < sp->nblobs; i++) {
		const uint8_t *p = r->blob[i];
		uint32_t n = r->blen[i], show = n < 64 ? n : 64;
		if (d->json) {
			printf(",\"%s\":", sp->blob[i]);
			if (text_blob(sp->blob[i])) {
				cli_json_strn(stdout, (const char *)p, n);
				continue;
			}
			printf("{\"len\":%u,\"hex\":\"", n);
			for (uint32_t k = 0; k < show; k++)
				printf("%02x", p[k]);
			printf("\"%s}", show < n ? ",\"truncated\":true" : "");
		} else if (text_blob(sp->blob[i])) {
			printf(" %s=", sp->blob[i]);
			cli_json_strn(stdout, (const char *)p, n);
		} else {
			printf(" %s=%u bytes", sp->blob[i], n);
		}
	}
	printf(d->json ? "}\n" : "\n");
	return 0;
}

/* taskring log compact DIR: fold the closed segments into a checkpoint. */
static int log_compact(const char *dir)
{
	struct tr_compaction c;
	char err[512] = "";
	int rc = tr__log_compact(&tr__log_sysio, dir, NULL, &c, err, sizeof(err));
	if (rc == -EBUSY) {
		fprintf(stderr, "taskring log: %s: a compaction of this log is already under way\n", dir);
		return 1;
	}
	if (rc) {
		fprintf(stderr, "taskring log: %s\n", err[0] ? err : taskring_strerror(rc));
		return 1;
	}
	if (!c.pos)
		printf("log %s: nothing to compact (no closed segment after the checkpoint)\n", dir);
	else
		printf("log %s: checkpoint at sequence %llu: %llu job(s), %llu bytes; %u segment(s) folded, %u file(s) "
		       "removed\n",
		       dir, (unsigned long long)c.pos, (unsigned long long)c.jobs, (unsigned long long)c.bytes, c.folded,
		       c.removed);
	return 0;
}

int cmd_log(int argc, char **argv)
{
	int json, ex = cli_plain_args("log", argc, argv, 2, 2, "a subcommand and a directory are", &json);
	if (ex >= 0)
		return ex;
	const char *sub = argv[optind], *dir = argv[optind + 1];
	int dump = !strcmp(sub, "dump");
	if (!dump && strcmp(sub, "verify") && strcmp(sub, "compact"))
		return cli_usage_error("log", "unknown subcommand '%s' (verify, dump, compact)", sub);
	if (json && !dump)
		return cli_usage_error("log", "--json goes with dump");
	if (!strcmp(sub, "compact"))
		return log_compact(dir);
	struct dump_ctx d = {json};
	struct tr_log_scan s;
	memset(&s, 0, sizeof(s));
	if (dump) {
		s.record = dump_record;
		s.arg = &d;
	}
	/* Shared with other readers, never with a compaction that deletes. */
	int lock = tr__log_lock(dir, 0, 1);
	int rc = lock < 0 && lock != -ENOENT ? lock : tr__log_scan(&tr__log_sysio, dir, &s);
	if (lock >= 0)
		close(lock);
	fflush(stdout);
	if (rc) {
		fprintf(stderr, "taskring log: %s\n", s.error[0] ? s.error : strerror(-rc));
		return EXIT_FAIL;
	}
	if (dump)
		return EXIT_OK;
	printf("log %s: %u segment(s), %llu record(s), sequence %llu to %llu\n", dir, s.segments,
	       (unsigned long long)s.records, (unsigned long long)s.first_seq, (unsigned long long)s.end_seq);
	if (s.ckpt[0])
		printf("checkpoint %s: %llu job(s), %llu bytes, covers the log up to sequence %llu\n", s.ckpt,
		       (unsigned long long)s.ckpt_jobs, (unsigned long long)s.ckpt_bytes,
		       (unsigned long long)s.ckpt_pos);
	if (s.stale)
		printf("%u segment(s) before the checkpoint are no longer needed; the next compaction deletes them\n",
		       s.stale);
	if (s.torn)
		printf("torn tail: %s at offset %llu, %llu byte(s) never acknowledged; recovery zeroes them\n",
		       s.torn_seg, (unsigned long long)s.torn_off, (unsigned long long)s.torn_bytes);
	return EXIT_OK;
}
