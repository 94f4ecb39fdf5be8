/*
 * invariants.h - the region's invariant checker, for tests that kill
 * processes (test_crashpoints.c, test_killsoak.c). Include after
 * testutil.h and internal.h.
 */
#ifndef TASKRING_INVARIANTS_H
#define TASKRING_INVARIANTS_H

/* ---- the invariant checker ------------------------------------------------- */

/*
 * Walk the region (quiescent: nobody else acts) and check the invariants.
 * Takes every queue lock, the deps lock and the ring's locks first, so that
 * a lock left by a dead holder is repaired as any next holder would. A slot
 * in no place, or a ring cell not published, fails the test; so does an
 * arena block neither free nor named (unless @leaked counts those).
 */
/*
 * The arena: every block below the bump is on exactly one free stack or
 * named by exactly one place of a slot (a field, or a list of errors or
 * dependents), never both, never neither. With @leaked, blocks in neither
 * are counted there instead of failing (the windows arena.c names);
 * otherwise they fail the test.
 */
static inline void check_arena(struct taskring_store *st, const char *when, uint32_t *leaked)
{
	uint64_t nb = st->arena_bytes / 64;
	uint8_t *mark = calloc((size_t)nb, 1); /* 1 free, 2 named */
	assert_non_null(mark);
	for (int k = 0; k < TR_ARENA_CLASSES; k++) {
		uint64_t h = atomic_load(&st->hdr->h_arena_free[k]);
		uint64_t off = (h & 0xffffffffu) << TR_ARENA_MIN_SHIFT;
		for (uint64_t n = 0; off; n++) {
			assert_true(off < st->arena_bytes && !(off & 63) && n < nb);
			if (mark[off / 64])
				fail_msg("%s: arena block %llu twice on the free stacks", when, (unsigned long long)off);
			mark[off / 64] = 1;
			off = ((struct tr_block *)(st->arena + off))->k_next;
		}
	}
	for (uint32_t i = 0; i < st->nslots; i++) {
		struct tr_slot *s = &st->slots[i];
		uint64_t one[6] = {s->s_payload_off, s->s_result_off, s->s_meta_off, s->s_delays_off, s->s_unique_off,
				   s->s_deps_off};
		uint64_t heads[2] = {s->s_errors_off, s->s_dents_head};
		for (int f = 0; f < 6 + 2; f++) {
			uint64_t off = f < 6 ? one[f] : heads[f - 6];
			for (uint64_t n = 0; off; n++) {
				assert_true(off < st->arena_bytes && !(off & 63) && n < nb);
				if (mark[off / 64])
					fail_msg("%s: arena block %llu of slot %u is %s", when, (unsigned long long)off, i,
						 mark[off / 64] == 1 ? "also free" : "named twice");
				mark[off / 64] = 2;
				off = f < 6 ? 0 : ((struct tr_block *)(st->arena + off))->k_next;
			}
		}
	}
	uint64_t bump = atomic_load(&st->hdr->h_arena_bump);
	for (uint64_t off = 64; off < bump;) {
		struct tr_block *b = (struct tr_block *)(st->arena + off);
		uint32_t k = b->k_magic & 0xff;
		if ((b->k_magic & ~0xffu) != TR_BLOCK_MAGIC || k >= TR_ARENA_CLASSES)
			fail_msg("%s: arena block at %llu has no header", when, (unsigned long long)off);
		if (!mark[off / 64]) {
			if (!leaked)
				fail_msg("%s: arena block %llu (k_next %#llx) is neither free nor named", when,
					 (unsigned long long)off, (unsigned long long)b->k_next);
			(*leaked)++;
		}
		off += 1ull << (TR_ARENA_MIN_SHIFT + k);
	}
	free(mark);
}

static inline void check_store_leaks(struct taskring_store *st, const char *when, uint32_t *leaked)
{
	uint32_t n = st->nslots;
	uint8_t *seen = calloc(n, 1);
	assert_non_null(seen);
	uint32_t nq = atomic_load(&st->hdr->h_queues_used);
	for (uint32_t qi = 0; qi < nq; qi++) {
		assert_rc(tr__lock(&st->queues[qi].q_lock, st, (int)qi), 0);
		tr__unlock(&st->queues[qi].q_lock);
	}
	assert_rc(tr__deps_lock(st), 0);
	tr__deps_unlock(st);
	tr__ring_settle(st);

	/* The ring: every cell between head and tail published, once each. */
	uint32_t head = atomic_load(&st->hdr->h_ring_head), tail = atomic_load(&st->hdr->h_ring_tail);
	for (uint32_t p = head; p != tail; p++) {
		uint64_t cell = atomic_load(&st->ring[p & st->ring_mask]);
		if ((uint32_t)(cell >> 32) != p + 1)
			fail_msg("%s: ring cell %u not published (turn %u)", when, p, (uint32_t)(cell >> 32));
		uint32_t idx = (uint32_t)cell;
		assert_true(idx < n);
		if (seen[idx]++)
			fail_msg("%s: slot %u twice (ring)", when, idx);
		uint32_t status = TR_STATUS(atomic_load(&st->slots[idx].s_state));
		if (status != TR_ST_FREE && !TR_TERMINAL(status))
			fail_msg("%s: slot %u in the ring is %s", when, idx, taskring_status_name((int)status));
	}
	/* The queues' bands and heaps. */
	for (uint32_t qi = 0; qi < nq; qi++) {
		struct tr_queue *q = &st->queues[qi];
		uint32_t ready = 0;
		for (uint32_t b = 0; b < q->q_nbands; b++) {
			uint32_t k = 0;
			for (uint32_t idx = q->q_bands[b].b_head; idx != TR_NIL; idx = st->slots[idx].s_next, k++) {
				assert_true(idx < n && k < n);
				if (seen[idx]++)
					fail_msg("%s: slot %u twice (queue %u band %u)", when, idx, qi, b);
				struct tr_slot *s = &st->slots[idx];
				if (TR_STATUS(atomic_load(&s->s_state)) != TASKRING_PENDING || s->s_loc != TR_LOC_READY ||
				    s->s_queue != qi)
					fail_msg("%s: slot %u in a ready list is %s (loc %u)", when, idx,
						 taskring_status_name(TR_STATUS(atomic_load(&s->s_state))), s->s_loc);
			}
			assert_int_equal(k, q->q_bands[b].b_count);
			ready += k;
		}
		assert_int_equal(ready, atomic_load(&q->q_ready));
		uint32_t timers = atomic_load(&q->q_timers);
		for (uint32_t k = 0; k < timers; k++) {
			uint32_t idx = st->heaps[(size_t)qi * n + k];
			assert_true(idx < n);
			if (seen[idx]++)
				fail_msg("%s: slot %u twice (queue %u heap)", when, idx, qi);
			struct tr_slot *s = &st->slots[idx];
			assert_int_equal(TR_STATUS(atomic_load(&s->s_state)), TASKRING_PENDING);
			assert_int_equal(s->s_loc, TR_LOC_TIMER);
		}
	}
	/* The rest: waiting for dependencies, or nowhere (a defect). */
	for (uint32_t idx = 0; idx < n; idx++) {
		if (seen[idx])
			continue;
		struct tr_slot *s = &st->slots[idx];
		uint32_t status = TR_STATUS(atomic_load(&s->s_state));
		if (status == TASKRING_PENDING && s->s_loc == TR_LOC_WAITING && s->s_deps_left > 0)
			continue;
		fail_msg("%s: slot %u is %s (loc %u, owner %#x) and in no place", when, idx,
			 status == TR_ST_FREE ? "free" : taskring_status_name((int)status), s->s_loc,
			 atomic_load(&s->s_owner));
	}
	free(seen);
	check_arena(st, when, leaked);
}

static inline void check_store(struct taskring_store *st, const char *when)
{
	check_store_leaks(st, when, NULL);
}

#endif
