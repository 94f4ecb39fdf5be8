/*
 * wal.h - a store's log (wal.c): staging, group commit, recovery.
 */
#ifndef TASKRING_WAL_H
#define TASKRING_WAL_H

#include "internal.h"

struct tr_logrec;
struct tr_log_io;

TR_INTERNAL extern const struct tr_log_io *tr__wal_test_io;
TR_INTERNAL uint64_t tr__wal_ring_bytes(uint32_t max_payload);
TR_INTERNAL int tr__wal_attach(struct taskring_store *st, const struct tr_log_io *io, int no_iouring, int create);
TR_INTERNAL int tr__wal_claimed(struct taskring_store *st);
TR_INTERNAL void tr__wal_detach(struct taskring_store *st);
TR_INTERNAL int tr__wal_recover(struct taskring_store *st, char *err, size_t errcap);
TR_INTERNAL int tr__wal_append(struct taskring_store *st, const struct tr_logrec *r, uint64_t *endp);
TR_INTERNAL int tr__wal_commit(struct taskring_store *st, uint64_t end);
TR_INTERNAL int tr__wal_sync(struct taskring_store *st);
TR_INTERNAL int tr__wal_failed(struct taskring_store *st);
TR_INTERNAL int tr__wal_room(struct taskring_store *st, uint32_t n);
TR_INTERNAL void tr__wal_ended(struct taskring_store *st);
TR_INTERNAL void tr__wal_unadmit(struct taskring_store *st, uint32_t n);
TR_INTERNAL uint64_t tr__wal_test_stall(struct taskring_store *st);
TR_INTERNAL int tr__wal_log(struct taskring_store *st, uint16_t type, struct tr_slot *s, const int64_t *v, unsigned nv,
			    const void *blob, uint32_t blen, uint64_t *endp);
TR_INTERNAL int tr__wal_log_end(struct taskring_store *st, struct tr_slot *s, uint16_t type, uint32_t attempt,
				int64_t when, int64_t v2, const char *msg, size_t mlen, uint64_t *endp);
TR_INTERNAL int tr__wal_log_enqueue(struct taskring_store *st, uint32_t idx, const struct enq_req *q, uint64_t *endp);


/* ckpt.c */
struct tr_log_scan;
struct tr_compaction {
	uint64_t pos;     /* the new checkpoint covers the log up to here (0: none made) */
	uint64_t jobs;    /* jobs in it */
	uint64_t bytes;   /* its size */
	uint32_t folded;  /* segments folded into it */
	uint32_t removed; /* files deleted after it */
};
TR_INTERNAL int tr__replay_record(void *arg, const struct tr_logrec *r, const char *seg, uint64_t off);
TR_INTERNAL int tr__replay_log(struct taskring_store *st, const struct tr_log_io *io, struct tr_log_scan *s,
			       char *err, size_t errcap);
TR_INTERNAL int tr__log_lock(const char *dir, int exclusive, int wait);
TR_INTERNAL int tr__log_compact(const struct tr_log_io *io, const char *dir, const _Atomic int *stop,
				struct tr_compaction *out, char *err, size_t errcap);

#endif
