/*
 * test_raft_storage.c - raft/storage.c on the in-memory wal storage (crash,
 * torn writes, EIO/ENOSPC at every step) and once on real files with a
 * libuv loop: a restart returns exactly what was durably saved.
 */
#include "common/common.h"
#include "raft/raft.h"
#include "wal/wal.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

struct done {
	int fired;
	int status;
};

static void on_done(struct raft_storage *st, int status, void *data)
{
	struct done *d = data;

	(void)st;
	d->fired++;
	d->status = status;
}

static struct wal_storage *ms;

static struct raft_storage *open_mem(struct raft_persisted *ps, int *rc_out)
{
	struct wal_config c;
	struct raft_storage *st = NULL;
	char err[256];
	int rc;

	wal_config_init(&c);
	c.storage = ms;
	c.segment_size = 8192;
	rc = raft_storage_open(&c, NULL, &st, ps, err, sizeof(err));
	if (rc_out != NULL)
		*rc_out = rc;
	else
		ck_assert_msg(rc == 0, "open: %s (%d)", err, rc);
	return rc == 0 ? st : NULL;
}

/* Runs the storage until the operation's callback fired; returns status. */
static int finish(struct raft_storage *st, struct done *d)
{
	for (int i = 0; i < 100 && d->fired == 0; i++)
		raft_storage_step(st);
	ck_assert_int_eq(d->fired, 1);
	return d->status;
}

static int save(struct raft_storage *st, const struct raft_ready *rd)
{
	struct done d = { 0, 0 };
	int rc = raft_storage_save(st, rd, on_done, &d);

	if (rc < 0)
		return rc;
	return finish(st, &d);
}

static int compact(struct raft_storage *st, uint64_t index, const char *data)
{
	struct done d = { 0, 0 };
	int rc = raft_storage_compact(st, index, data, strlen(data), on_done,
				      &d);

	if (rc < 0)
		return rc;
	return finish(st, &d);
}

static void close_st(struct raft_storage *st)
{
	raft_storage_close(st, NULL, NULL);
}

/* Entry data is "e<index>t<term>" so any mix-up shows. */
static char payload[256][32];

static struct raft_entry *mk_entries(uint64_t from, uint64_t to,
				     uint64_t term)
{
	struct raft_entry *e = calloc(to - from + 1, sizeof(*e));

	for (uint64_t i = from; i <= to; i++) {
		struct raft_entry *x = &e[i - from];

		snprintf(payload[i % 256], sizeof(payload[0]),
			 "e%" PRIu64 "t%" PRIu64, i, term);
		x->index = i;
		x->term = term;
		x->len = strlen(payload[i % 256]) + 1;
		x->data = strdup(payload[i % 256]);
	}
	return e;
}

static void free_entries(struct raft_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].data);
	free(e);
}

static int save_entries(struct raft_storage *st, uint64_t from, uint64_t to,
			uint64_t term, const struct raft_hard_state *hs)
{
	struct raft_ready rd;
	struct raft_entry *e = mk_entries(from, to, term);
	int rc;

	memset(&rd, 0, sizeof(rd));
	rd.entries = e;
	rd.n_entries = to - from + 1;
	if (hs != NULL) {
		rd.has_hard_state = true;
		rd.hard_state = *hs;
	}
	rc = save(st, &rd);
	free_entries(e, to - from + 1);
	return rc;
}

static struct raft_snapshot boot_snap(unsigned voters)
{
	struct raft_snapshot s;

	memset(&s, 0, sizeof(s));
	s.conf.n = voters;
	for (unsigned i = 0; i < voters; i++)
		s.conf.members[i].id = i + 1;
	return s;
}

static int save_boot(struct raft_storage *st)
{
	struct raft_snapshot s = boot_snap(3);
	struct raft_ready rd;

	memset(&rd, 0, sizeof(rd));
	rd.snapshot = &s;
	return save(st, &rd);
}

/* ps holds entries from..to with the given terms: t1 up to split, t2 after. */
static void expect_log(const struct raft_persisted *ps, uint64_t from,
		       uint64_t to, uint64_t split, uint64_t t1, uint64_t t2)
{
	ck_assert_uint_eq(ps->n_entries, to + 1 - from);
	for (uint64_t i = from; i <= to; i++) {
		const struct raft_entry *e = &ps->entries[i - from];
		uint64_t t = i <= split ? t1 : t2;
		char want[32];

		snprintf(want, sizeof(want), "e%" PRIu64 "t%" PRIu64, i, t);
		ck_assert_uint_eq(e->index, i);
		ck_assert_uint_eq(e->term, t);
		ck_assert_str_eq(e->data, want);
	}
}

static void setup(void)
{
	ms = wal_mem_storage_new();
	ck_assert_ptr_nonnull(ms);
}

static void teardown(void)
{
	wal_mem_storage_free(ms);
	ms = NULL;
}

/* -------------------------------------------------------------- tests */

START_TEST(round_trip_entries_hard_state_and_snapshot)
{
	struct raft_persisted ps;
	struct raft_hard_state hs = { .term = 2, .vote = 1, .commit = 4 };
	struct raft_storage *st = open_mem(&ps, NULL);

	ck_assert_ptr_null(ps.snapshot);
	ck_assert_uint_eq(ps.n_entries, 0);
	ck_assert_uint_eq(ps.hard_state.term, 0);
	ck_assert_int_eq(save_boot(st), 0);
	ck_assert_int_eq(save_entries(st, 1, 6, 2, &hs), 0);
	close_st(st);
	wal_mem_storage_crash(ms);

	st = open_mem(&ps, NULL);
	ck_assert_ptr_nonnull(ps.snapshot);
	ck_assert_uint_eq(ps.snapshot->index, 0);
	ck_assert_uint_eq(ps.snapshot->conf.n, 3);
	ck_assert_uint_eq(ps.hard_state.term, 2);
	ck_assert_uint_eq(ps.hard_state.vote, 1);
	ck_assert_uint_eq(ps.hard_state.commit, 4);
	expect_log(&ps, 1, 6, 6, 2, 2);

	ck_assert_int_eq(compact(st, 4, "state@4"), 0);
	close_st(st);
	wal_mem_storage_crash(ms);
	st = open_mem(&ps, NULL);
	ck_assert_uint_eq(ps.snapshot->index, 4);
	ck_assert_uint_eq(ps.snapshot->term, 2);
	ck_assert_uint_eq(ps.snapshot->conf.n, 3);
	ck_assert_uint_eq(ps.snapshot->len, 7);
	ck_assert_int_eq(memcmp(ps.snapshot->data, "state@4", 7), 0);
	expect_log(&ps, 5, 6, 6, 2, 2);
	ck_assert_uint_eq(ps.hard_state.term, 2);
	ck_assert_uint_eq(ps.hard_state.vote, 1);
	close_st(st);
}
END_TEST

START_TEST(conflicting_suffix_is_replaced_and_survives_crash)
{
	struct raft_persisted ps;
	struct raft_hard_state h1 = { .term = 1, .vote = 1 };
	struct raft_hard_state h2 = { .term = 2, .vote = 2, .commit = 2 };
	struct raft_storage *st = open_mem(&ps, NULL);
	uint64_t next_before;

	ck_assert_int_eq(save_entries(st, 1, 8, 1, &h1), 0);
	/* hard state below the cut: the suffix is cut physically */
	next_before = wal_next_lsn(raft_storage_wal(st));
	ck_assert_int_eq(save_entries(st, 6, 7, 1, NULL), 0);
	ck_assert_uint_lt(wal_next_lsn(raft_storage_wal(st)), next_before);
	/* a newer hard state lies above the cut: logical replacement */
	ck_assert_int_eq(save_entries(st, 3, 4, 2, &h2), 0);
	close_st(st);
	wal_mem_storage_crash(ms);

	st = open_mem(&ps, NULL);
	expect_log(&ps, 1, 4, 2, 1, 2);
	ck_assert_uint_eq(ps.hard_state.term, 2);
	ck_assert_uint_eq(ps.hard_state.vote, 2);
	ck_assert_uint_eq(ps.hard_state.commit, 2);
	/* and the log grows from the replaced suffix */
	ck_assert_int_eq(save_entries(st, 5, 6, 2, NULL), 0);
	close_st(st);
	wal_mem_storage_crash(ms);
	st = open_mem(&ps, NULL);
	expect_log(&ps, 1, 6, 2, 1, 2);

	/* a hard state saved after entry 5: replacing 5.. must keep it */
	h2.commit = 4;
	h2.vote = 3;
	{
		struct raft_ready rd;

		memset(&rd, 0, sizeof(rd));
		rd.has_hard_state = true;
		rd.hard_state = h2;
		ck_assert_int_eq(save(st, &rd), 0);
	}
	next_before = wal_next_lsn(raft_storage_wal(st));
	ck_assert_int_eq(save_entries(st, 5, 5, 2, NULL), 0);
	ck_assert_uint_gt(wal_next_lsn(raft_storage_wal(st)), next_before);
	close_st(st);
	wal_mem_storage_crash(ms);
	st = open_mem(&ps, NULL);
	expect_log(&ps, 1, 5, 2, 1, 2);
	ck_assert_uint_eq(ps.hard_state.vote, 3);
	ck_assert_uint_eq(ps.hard_state.commit, 4);
	close_st(st);
}
END_TEST

/* Builds snapshot 10 over entries 1..20 (terms 1), hard state (3, 1, 20). */
static struct raft_storage *two_snapshot_base(void)
{
	struct raft_persisted ps;
	struct raft_hard_state hs = { .term = 3, .vote = 1, .commit = 20 };
	struct raft_storage *st = open_mem(&ps, NULL);

	ck_assert_int_eq(save_boot(st), 0);
	ck_assert_int_eq(save_entries(st, 1, 20, 1, &hs), 0);
	ck_assert_int_eq(compact(st, 10, "s10"), 0);
	return st;
}

static void check_hs(const struct raft_persisted *ps)
{
	ck_assert_uint_eq(ps->hard_state.term, 3);
	ck_assert_uint_eq(ps->hard_state.vote, 1);
	ck_assert_uint_eq(ps->hard_state.commit, 20);
}

START_TEST(compaction_survives_crash_at_every_step)
{
	bool completed = false;

	for (long k = 1; k < 60 && !completed; k++) {
		struct raft_persisted ps;
		struct raft_storage *st;
		struct done d = { 0, 0 };
		int rc;

		setup();
		st = two_snapshot_base();
		wal_mem_storage_fail(ms, WAL_MEM_OP_MUTATING, k, -EIO, true);
		rc = raft_storage_compact(st, 15, "s15", 3, on_done, &d);
		if (rc == 0)
			rc = finish(st, &d);
		completed = rc == 0 &&
			    wal_mem_storage_count(ms, WAL_MEM_OP_MUTATING) > 0 &&
			    raft_storage_failed(st) == 0;
		if (rc != 0) {
			ck_assert_int_ne(raft_storage_failed(st), 0);
			ck_assert_int_eq(compact(st, 16, "x"),
					 -RAFT_STORAGE_EFAILED);
		}
		close_st(st);
		wal_mem_storage_fail(ms, 0, 0, 0, false);
		wal_mem_storage_crash(ms);

		st = open_mem(&ps, NULL);
		check_hs(&ps);
		ck_assert_ptr_nonnull(ps.snapshot);
		if (rc == 0)
			ck_assert_uint_eq(ps.snapshot->index, 15);
		ck_assert_msg(ps.snapshot->index == 10 ||
				      ps.snapshot->index == 15,
			      "step %ld: snapshot %" PRIu64, k,
			      ps.snapshot->index);
		expect_log(&ps, ps.snapshot->index + 1, 20, 20, 1, 1);
		/* the storage keeps working after the restart */
		ck_assert_int_eq(save_entries(st, 21, 21, 3, NULL), 0);
		close_st(st);
		teardown();
	}
	ck_assert(completed);
}
END_TEST

START_TEST(hard_state_survives_prefix_cut_that_drops_its_record)
{
	struct raft_persisted ps;
	struct raft_storage *st = two_snapshot_base();
	uint64_t first_before = wal_first_lsn(raft_storage_wal(st));

	/* the hard state record precedes entry 11: the cut at 11 drops it */
	ck_assert_int_eq(compact(st, 18, "s18"), 0);
	ck_assert_uint_gt(wal_first_lsn(raft_storage_wal(st)), first_before);
	close_st(st);
	wal_mem_storage_crash(ms);
	st = open_mem(&ps, NULL);
	check_hs(&ps);
	ck_assert_uint_eq(ps.snapshot->index, 18);
	ck_assert_int_eq(memcmp(ps.snapshot->data, "s18", 3), 0);
	expect_log(&ps, 19, 20, 20, 1, 1);
	close_st(st);
}
END_TEST

START_TEST(save_survives_crash_at_every_step)
{
	bool completed = false;

	for (long k = 1; k < 60 && !completed; k++) {
		struct raft_persisted ps;
		struct raft_hard_state h4 = { .term = 4, .vote = 2,
					      .commit = 12 };
		struct raft_storage *st;
		int rc;

		setup();
		st = two_snapshot_base();
		wal_mem_storage_fail(ms, WAL_MEM_OP_MUTATING, k,
				     k % 2 ? -EIO : -ENOSPC, true);
		/* conflicting entries 13.. in term 4 with a new hard state */
		rc = save_entries(st, 13, 22, 4, &h4);
		completed = rc == 0;
		if (rc != 0) {
			ck_assert_int_eq(rc, k % 2 ? -EIO : -ENOSPC);
			ck_assert_int_eq(save_entries(st, 23, 23, 4, NULL),
					 -RAFT_STORAGE_EFAILED);
		}
		close_st(st);
		wal_mem_storage_fail(ms, 0, 0, 0, false);
		wal_mem_storage_crash(ms);

		st = open_mem(&ps, NULL);
		ck_assert_uint_eq(ps.snapshot->index, 10);
		if (ps.hard_state.term == 3) {
			/* before: the old log, perhaps cut below 13 */
			ck_assert_uint_ge(ps.n_entries, 2);
			expect_log(&ps, 11, 10 + ps.n_entries, 20, 1, 1);
			ck_assert(rc != 0);
		} else {
			ck_assert_uint_eq(ps.hard_state.term, 4);
			ck_assert_uint_eq(ps.hard_state.vote, 2);
			ck_assert_uint_ge(ps.n_entries, 2);
			ck_assert_uint_le(ps.n_entries, 12);
			/* 11, 12 old, then a prefix of 13.. in term 4 or
			 * (logical replacement not yet durable) the old ones */
			if (ps.n_entries > 2 && ps.entries[2].term == 4)
				expect_log(&ps, 11, 10 + ps.n_entries, 12, 1,
					   4);
			else
				expect_log(&ps, 11, 10 + ps.n_entries, 20, 1,
					   1);
			ck_assert_uint_le(ps.hard_state.commit,
					  10 + ps.n_entries);
		}
		if (rc == 0) {
			ck_assert_uint_eq(ps.hard_state.term, 4);
			expect_log(&ps, 11, 22, 12, 1, 4);
		}
		close_st(st);
		teardown();
	}
	ck_assert(completed);
}
END_TEST

START_TEST(torn_tail_keeps_a_prefix_of_the_unsynced_save)
{
	bool any_torn = false;

	for (size_t keep = 0; keep < 400; keep += 7) {
		struct raft_persisted ps;
		struct raft_hard_state h = { .term = 5, .vote = 3 };
		struct raft_storage *st;
		size_t len;
		int rc;

		setup();
		st = two_snapshot_base();
		/* the write lands, its sync fails: nothing is durable */
		wal_mem_storage_fail(ms, WAL_MEM_OP_SYNC, 1, -EIO, true);
		rc = save_entries(st, 21, 30, 5, &h);
		ck_assert_int_eq(rc, -EIO);
		len = wal_mem_storage_last_write_len(ms);
		any_torn |= keep > 0 && keep < len;
		close_st(st);
		wal_mem_storage_fail(ms, 0, 0, 0, false);
		wal_mem_storage_crash_torn(ms, keep);

		st = open_mem(&ps, NULL);
		ck_assert_uint_eq(ps.snapshot->index, 10);
		ck_assert_uint_ge(ps.n_entries, 10);
		expect_log(&ps, 11, 10 + ps.n_entries, 20, 1, 5);
		if (ps.n_entries > 10)
			ck_assert_uint_eq(ps.hard_state.term, 5);
		else
			ck_assert(ps.hard_state.term == 3 ||
				  ps.hard_state.term == 5);
		close_st(st);
		teardown();
	}
	ck_assert(any_torn);
}
END_TEST

START_TEST(failed_write_or_sync_refuses_later_saves)
{
	int errs[] = { -ENOSPC, -EIO };
	unsigned masks[] = { WAL_MEM_OP_WRITE, WAL_MEM_OP_SYNC };

	for (int i = 0; i < 2; i++) {
		struct raft_persisted ps;
		struct raft_hard_state h = { .term = 1, .vote = 1 };
		struct raft_storage *st;

		setup();
		st = open_mem(&ps, NULL);
		ck_assert_int_eq(save_entries(st, 1, 3, 1, &h), 0);
		wal_mem_storage_fail(ms, masks[i], 1, errs[i], false);
		ck_assert_int_eq(save_entries(st, 4, 5, 1, NULL), errs[i]);
		ck_assert_int_eq(raft_storage_failed(st), errs[i]);
		ck_assert_int_eq(save_entries(st, 4, 5, 1, NULL),
				 -RAFT_STORAGE_EFAILED);
		ck_assert_int_eq(compact(st, 2, "x"), -RAFT_STORAGE_EFAILED);
		ck_assert_str_ne(raft_storage_errmsg(st), "");
		close_st(st);
		wal_mem_storage_crash(ms);
		st = open_mem(&ps, NULL);
		ck_assert_uint_ge(ps.n_entries, 3);
		expect_log(&ps, 1, 3, 3, 1, 1);
		/* reopened, it accepts saves again */
		ck_assert_int_eq(save_entries(st, 4, 4, 1, NULL), 0);
		close_st(st);
		teardown();
	}
}
END_TEST

START_TEST(bad_snapshot_crc_falls_back_to_previous_snapshot)
{
	struct raft_persisted ps;
	struct raft_storage *st = two_snapshot_base();
	int rc;

	ck_assert_int_eq(compact(st, 15, "s15"), 0);
	close_st(st);
	ck_assert_int_eq(wal_mem_storage_flip_bit(
				 ms, "raft-snap-000000000000000f", 45, 2),
			 0);
	st = open_mem(&ps, NULL);
	ck_assert_uint_eq(raft_storage_snapshots_rejected(st), 1);
	ck_assert_ptr_nonnull(strstr(raft_storage_errmsg(st), "CRC"));
	ck_assert_uint_eq(ps.snapshot->index, 10);
	ck_assert_int_eq(memcmp(ps.snapshot->data, "s10", 3), 0);
	expect_log(&ps, 11, 20, 20, 1, 1);
	check_hs(&ps);
	close_st(st);

	/* both damaged, and the log does not start at 1: refused */
	ck_assert_int_eq(wal_mem_storage_flip_bit(
				 ms, "raft-snap-000000000000000a", 41, 0),
			 0);
	open_mem(&ps, &rc);
	ck_assert_int_eq(rc, -RAFT_STORAGE_ECORRUPT);
}
END_TEST

START_TEST(bad_snapshot_without_fallback_is_an_error)
{
	struct raft_persisted ps;
	struct raft_storage *st = open_mem(&ps, NULL);
	struct raft_snapshot s = boot_snap(1);
	struct raft_ready rd;
	char err[256];
	struct wal_config c;
	int rc;

	memset(&rd, 0, sizeof(rd));
	s.index = 50;
	s.term = 2;
	s.data = "app";
	s.len = 3;
	rd.snapshot = &s;
	ck_assert_int_eq(save(st, &rd), 0);
	close_st(st);
	ck_assert_int_eq(wal_mem_storage_flip_bit(
				 ms, "raft-snap-0000000000000032", 10, 1),
			 0);
	wal_config_init(&c);
	c.storage = ms;
	st = NULL;
	rc = raft_storage_open(&c, NULL, &st, &ps, err, sizeof(err));
	ck_assert_int_eq(rc, -RAFT_STORAGE_ECORRUPT);
	ck_assert_ptr_null(st);
	ck_assert_ptr_nonnull(strstr(err, "raft-snap-0000000000000032"));
	ck_assert_str_ne(raft_storage_strerror(rc), "");
}
END_TEST

START_TEST(received_snapshot_replaces_log_and_survives_crash_at_every_step)
{
	/* 15: the old log has index 15 in another term (it diverges);
	 * 40: the old log ends before the snapshot */
	uint64_t S = _i == 0 ? 15 : 40;
	bool completed = false;

	for (long k = 1; k < 60 && !completed; k++) {
		struct raft_persisted ps;
		struct raft_snapshot s = boot_snap(3);
		struct raft_entry *e = mk_entries(S + 1, S + 2, 6);
		struct raft_ready rd;
		struct raft_storage *st;
		int rc;

		setup();
		st = two_snapshot_base();
		memset(&rd, 0, sizeof(rd));
		s.index = S;
		s.term = 6;
		s.data = "s40";
		s.len = 3;
		rd.snapshot = &s;
		rd.entries = e;
		rd.n_entries = 2;
		rd.has_hard_state = true;
		rd.hard_state.term = 7;
		rd.hard_state.commit = S;
		wal_mem_storage_fail(ms, WAL_MEM_OP_MUTATING, k, -EIO, true);
		rc = save(st, &rd);
		free_entries(e, 2);
		completed = rc == 0;
		close_st(st);
		wal_mem_storage_fail(ms, 0, 0, 0, false);
		wal_mem_storage_crash(ms);

		st = open_mem(&ps, NULL);
		if (ps.snapshot->index == 10) {
			ck_assert(rc != 0);
			check_hs(&ps);
			expect_log(&ps, 11, 20, 20, 1, 1);
		} else {
			ck_assert_uint_eq(ps.snapshot->index, S);
			ck_assert_uint_eq(ps.snapshot->term, 6);
			/* the old log (terms 1, ending at 20) never follows */
			ck_assert_uint_le(ps.n_entries, 2);
			expect_log(&ps, S + 1, S + ps.n_entries, S + 2, 6, 6);
			/* an older hard state is raised to the snapshot */
			ck_assert_uint_ge(ps.hard_state.term, 6);
			ck_assert_uint_le(ps.hard_state.commit,
					  S + ps.n_entries);
			if (ps.hard_state.term == 6)
				ck_assert_uint_eq(ps.hard_state.vote, 0);
		}
		if (rc == 0) {
			ck_assert_uint_eq(ps.hard_state.term, 7);
			expect_log(&ps, S + 1, S + 2, S + 2, 6, 6);
		}
		/* whatever came back, the storage takes the next entry */
		ck_assert_int_eq(save_entries(st, ps.snapshot->index +
							  ps.n_entries + 1,
					      ps.snapshot->index +
						      ps.n_entries + 1,
					      7, NULL),
				 0);
		close_st(st);
		wal_mem_storage_crash(ms);
		st = open_mem(&ps, NULL);
		ck_assert_uint_eq(ps.entries[ps.n_entries - 1].term, 7);
		close_st(st);
		teardown();
	}
	ck_assert(completed);
}
END_TEST

START_TEST(bad_input_changes_nothing)
{
	struct raft_persisted ps;
	struct raft_hard_state h = { .term = 1 };
	struct raft_storage *st = open_mem(&ps, NULL);
	struct raft_entry *e = mk_entries(1, 3, 1);
	struct raft_ready rd;
	uint64_t next;

	ck_assert_int_eq(save_entries(st, 1, 5, 1, &h), 0);
	next = wal_next_lsn(raft_storage_wal(st));
	ck_assert_int_eq(save_entries(st, 8, 9, 1, NULL), -EINVAL); /* gap */
	memset(&rd, 0, sizeof(rd));
	e[1].index = 7; /* not contiguous */
	rd.entries = e;
	rd.n_entries = 3;
	ck_assert_int_eq(raft_storage_save(st, &rd, on_done, NULL), -EINVAL);
	ck_assert_int_eq(raft_storage_save(st, NULL, on_done, NULL), -EINVAL);
	ck_assert_int_eq(compact(st, 9, "x"), -RAFT_STORAGE_ERANGE);
	ck_assert_int_eq(compact(st, 3, "x"), 0);
	ck_assert_int_eq(compact(st, 2, "x"), -RAFT_STORAGE_ECOMPACTED);
	ck_assert_int_eq(save_entries(st, 2, 2, 1, NULL), -EINVAL);
	ck_assert_int_eq(raft_storage_failed(st), 0);
	ck_assert_uint_gt(wal_next_lsn(raft_storage_wal(st)), next - 1);
	free_entries(e, 3);
	close_st(st);
	st = open_mem(&ps, NULL);
	ck_assert_uint_eq(ps.snapshot->index, 3);
	expect_log(&ps, 4, 5, 5, 1, 1);
	close_st(st);
}
END_TEST

START_TEST(read_only_open_returns_state_and_refuses_saves)
{
	struct raft_persisted ps;
	struct raft_hard_state h = { .term = 1, .vote = 1 };
	struct raft_storage *st = open_mem(&ps, NULL);
	struct wal_config c;
	char err[256];

	ck_assert_int_eq(save_entries(st, 1, 3, 1, &h), 0);
	close_st(st);
	wal_config_init(&c);
	c.storage = ms;
	c.read_only = true;
	ck_assert_int_eq(raft_storage_open(&c, NULL, &st, &ps, err,
					   sizeof(err)),
			 0);
	expect_log(&ps, 1, 3, 3, 1, 1);
	ck_assert_int_eq(save_entries(st, 4, 4, 1, NULL), -WAL_EREADONLY);
	ck_assert_int_eq(compact(st, 2, "x"), -WAL_EREADONLY);
	close_st(st);
}
END_TEST

START_TEST(allocation_failures_are_reported_and_leak_nothing)
{
	bool open_ok = false, save_ok = false;

	for (long n = 1; n < 400 && !(open_ok && save_ok); n++) {
		struct raft_persisted ps;
		struct raft_hard_state h = { .term = 2, .vote = 1 };
		struct raft_storage *st;
		struct done d = { 0, 0 };
		struct raft_entry *e;
		struct raft_ready rd;
		int rc;

		setup();
		st = two_snapshot_base();
		close_st(st);

		/* open under allocation failure */
		mem_fail_after(n);
		st = open_mem(&ps, &rc);
		mem_fail_reset();
		if (rc == 0) {
			open_ok = true;
			expect_log(&ps, 11, 20, 20, 1, 1);
		} else {
			ck_assert_ptr_null(st);
			st = open_mem(&ps, NULL);
		}

		/* save and compact under allocation failure */
		e = mk_entries(21, 25, 2);
		memset(&rd, 0, sizeof(rd));
		rd.entries = e;
		rd.n_entries = 5;
		rd.has_hard_state = true;
		rd.hard_state = h;
		mem_fail_after(n);
		rc = raft_storage_save(st, &rd, on_done, &d);
		if (rc == 0)
			rc = finish(st, &d);
		if (rc == 0) {
			d.fired = 0;
			rc = raft_storage_compact(st, 22, "s22", 3, on_done,
						  &d);
			if (rc == 0)
				rc = finish(st, &d);
		}
		mem_fail_reset();
		free_entries(e, 5);
		if (rc == 0)
			save_ok = true;
		else
			ck_assert_int_ne(raft_storage_failed(st), 0);
		close_st(st);
		wal_mem_storage_crash(ms);
		st = open_mem(&ps, NULL);
		ck_assert(ps.snapshot->index == 10 ||
			  ps.snapshot->index == 22);
		if (rc == 0) {
			ck_assert_uint_eq(ps.snapshot->index, 22);
			ck_assert_uint_eq(ps.hard_state.term, 2);
			expect_log(&ps, 23, 25, 25, 2, 2);
		}
		close_st(st);
		teardown();
	}
	ck_assert(open_ok && save_ok);
}
END_TEST

START_TEST(error_codes_have_messages)
{
	ck_assert_str_eq(raft_storage_strerror(-RAFT_STORAGE_EFAILED),
			 "raft storage failed after a write or sync error; "
			 "reopen it");
	ck_assert_str_eq(raft_storage_strerror(-RAFT_STORAGE_EBUSY),
			 "a save or compaction is in progress");
	ck_assert_ptr_nonnull(raft_storage_strerror(-EIO));
	ck_assert_ptr_nonnull(raft_storage_strerror(-WAL_EFAILED));
}
END_TEST

START_TEST(one_operation_at_a_time)
{
	struct raft_persisted ps;
	struct raft_storage *st = open_mem(&ps, NULL);
	struct raft_entry *e = mk_entries(1, 2, 1);
	struct raft_ready rd;
	struct done d = { 0, 0 };

	memset(&rd, 0, sizeof(rd));
	rd.entries = e;
	rd.n_entries = 2;
	ck_assert_int_eq(raft_storage_save(st, &rd, on_done, &d), 0);
	ck_assert_int_eq(raft_storage_save(st, &rd, on_done, &d),
			 -RAFT_STORAGE_EBUSY);
	ck_assert_int_eq(d.fired, 0);
	ck_assert_int_eq(finish(st, &d), 0);
	free_entries(e, 2);
	close_st(st);
}
END_TEST

/* ---------------------------------------- a real node, random crashes */

struct model {
	uint64_t term, vote;
	uint64_t last;	     /* every entry through last is durable */
	uint64_t snap_index; /* durable snapshot */
	uint64_t terms[4096];
	char data[4096][24];
};

/* What the random runs covered, so a vacuous run fails. */
static unsigned n_compactions, n_failed_saves, n_recovered_entries;

static void run_node_seed(uint64_t seed)
{
	static struct model m;
	struct raft_options o = {
		.id = 1, .election_tick = 10, .heartbeat_tick = 1,
		.seed = seed, .max_inflight = 4, .max_batch_entries = 8,
	};
	uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
	unsigned proposals = 0;
	char err[128];

#define RND() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17, rng)
	memset(&m, 0, sizeof(m));
	setup();
	{
		struct raft_persisted ps;
		struct raft_storage *st = open_mem(&ps, NULL);
		struct raft_snapshot s = boot_snap(1);
		struct raft_ready rd;

		memset(&rd, 0, sizeof(rd));
		rd.snapshot = &s;
		ck_assert_int_eq(save(st, &rd), 0);
		close_st(st);
	}
	for (int life = 0; life < 6; life++) {
		struct raft_persisted ps;
		struct raft_storage *st = open_mem(&ps, NULL);
		struct raft *r = NULL;
		bool crashed = false;
		/* outlives a crash: close completes what is queued */
		struct done d = { 0, 0 };

		/* what came back holds everything durably saved */
		ck_assert_msg(ps.hard_state.term >= m.term, "seed %" PRIu64,
			      seed);
		if (ps.hard_state.term == m.term && m.vote != 0)
			ck_assert_uint_eq(ps.hard_state.vote, m.vote);
		ck_assert_ptr_nonnull(ps.snapshot);
		ck_assert_uint_ge(ps.snapshot->index, m.snap_index);
		ck_assert_uint_ge(ps.snapshot->index + ps.n_entries, m.last);
		for (size_t i = 0; i < ps.n_entries; i++) {
			const struct raft_entry *e = &ps.entries[i];

			if (e->index > m.last)
				break;
			ck_assert_msg(e->term == m.terms[e->index],
				      "seed %" PRIu64 " index %" PRIu64, seed,
				      e->index);
			if (e->len > 0)
				ck_assert_str_eq(e->data, m.data[e->index]);
		}
		n_recovered_entries += (unsigned)ps.n_entries;
		ck_assert_msg(raft_new(&o, &ps, &r, err, sizeof(err)) == 0,
			      "seed %" PRIu64 ": %s", seed, err);
		/* the model follows what this life persists */
		m.term = ps.hard_state.term;
		m.vote = ps.hard_state.vote;
		m.snap_index = ps.snapshot->index;
		m.last = ps.snapshot->index + ps.n_entries;
		for (size_t i = 0; i < ps.n_entries; i++) {
			m.terms[ps.entries[i].index] = ps.entries[i].term;
			if (ps.entries[i].len > 0)
				snprintf(m.data[ps.entries[i].index], 24,
					 "%s", (char *)ps.entries[i].data);
		}
		ck_assert_int_eq(raft_campaign(r), 0);

		for (int step = 0; step < 120 && !crashed; step++) {
			unsigned dice = (unsigned)(RND() % 100);

			if (dice < 50 && raft_role(r) == RAFT_LEADER &&
			    proposals < 3000) {
				char buf[24];

				snprintf(buf, sizeof(buf), "p%u", proposals++);
				ck_assert_int_eq(raft_propose(r, buf,
							      strlen(buf) + 1,
							      NULL),
						 0);
			} else if (dice < 60) {
				raft_tick(r);
			} else if (dice < 66 && raft_applied_index(r) >
							m.snap_index + 3) {
				uint64_t idx = raft_applied_index(r) - 1;
				int rc;

				ck_assert_int_eq(raft_compact(r, idx, "app", 3),
						 0);
				d.fired = 0;
				rc = raft_storage_compact(st, idx, "app", 3,
							  on_done, &d);
				/* an armed fault may hit the file write:
				 * reported at once, the storage is failed */
				if (rc != 0) {
					ck_assert_int_ne(
						raft_storage_failed(st), 0);
					crashed = true;
					break;
				}
				if (RND() % 8 == 0) {
					crashed = true;
					break;
				}
				if (finish(st, &d) != 0) {
					crashed = true;
					break;
				}
				m.snap_index = idx;
				n_compactions++;
			}
			while (!crashed && raft_has_ready(r)) {
				struct raft_ready rd;
				unsigned fault = (unsigned)(RND() % 40);

				ck_assert_int_eq(raft_ready(r, &rd), 0);
				if (fault == 0)
					wal_mem_storage_fail(
						ms, WAL_MEM_OP_MUTATING,
						(long)(RND() % 4) + 1, -EIO,
						true);
				d.fired = 0;
				ck_assert_int_eq(raft_storage_save(st, &rd,
								   on_done,
								   &d),
						 0);
				if (fault == 1) {
					crashed = true; /* before any step */
					break;
				}
				if (finish(st, &d) != 0) {
					n_failed_saves++;
					crashed = true;
					break;
				}
				/* durable: the model moves on */
				if (rd.has_hard_state) {
					m.term = rd.hard_state.term;
					m.vote = rd.hard_state.vote;
				}
				for (size_t i = 0; i < rd.n_entries; i++) {
					const struct raft_entry *e =
						&rd.entries[i];

					m.terms[e->index] = e->term;
					m.data[e->index][0] = '\0';
					if (e->len > 0)
						snprintf(m.data[e->index], 24,
							 "%s", (char *)e->data);
					m.last = e->index;
				}
				ck_assert_int_eq(raft_advance(r, &rd), 0);
			}
		}
		close_st(st);
		raft_free(r);
		wal_mem_storage_fail(ms, 0, 0, 0, false);
		if (RND() % 2)
			wal_mem_storage_crash(ms);
		else
			wal_mem_storage_crash_torn(ms, (size_t)(RND() % 64));
	}
	teardown();
#undef RND
}

START_TEST(random_node_restarts_to_its_last_durable_state)
{
	for (uint64_t seed = 1; seed <= 40; seed++)
		run_node_seed(seed);
	ck_assert_uint_ge(n_compactions, 20);
	ck_assert_uint_ge(n_failed_saves, 10);
	ck_assert_uint_ge(n_recovered_entries, 200);
}
END_TEST

/*
 * A follower driven by a fake leader whose log changes with its term: the
 * follower's readies then carry conflicting suffixes and snapshots.
 */
#define FMAX 1600

struct fleader {
	uint64_t term, len, commit;
	uint64_t L[FMAX + 8]; /* L[i]: term of entry i; L[0] = 0 */
};

struct fmodel {
	uint64_t term, vote, snap_index, last;
	uint64_t terms[FMAX + 8];
	/* the save in flight when the node crashed */
	bool inflight;
	uint64_t ifirst, ilast;
	uint64_t iterms[FMAX + 8];
};

static void ent_data(char *buf, uint64_t index, uint64_t term)
{
	snprintf(buf, 24, "i%" PRIu64 "t%" PRIu64, index, term);
}

static void check_recovered(const struct raft_persisted *ps,
			    const struct fmodel *m, const struct fleader *l,
			    uint64_t seed)
{
	uint64_t snap = ps->snapshot->index;
	uint64_t need = m->last;

	ck_assert_msg(ps->hard_state.term >= m->term, "seed %" PRIu64, seed);
	if (ps->hard_state.term == m->term && m->vote != 0)
		ck_assert_uint_eq(ps->hard_state.vote, m->vote);
	ck_assert_msg(snap >= m->snap_index, "seed %" PRIu64, seed);
	ck_assert_msg(ps->snapshot->term == l->L[snap], "seed %" PRIu64, seed);
	if (m->inflight && m->ifirst <= need)
		need = m->ifirst - 1;
	/* every entry acknowledged as durable is there */
	ck_assert_msg(snap + ps->n_entries >= need,
		      "seed %" PRIu64 ": recovered through %" PRIu64
		      ", durable through %" PRIu64,
		      seed, snap + ps->n_entries, need);
	for (size_t i = 0; i < ps->n_entries; i++) {
		const struct raft_entry *e = &ps->entries[i];
		uint64_t x = e->index;
		bool ok_m = x <= m->last && e->term == m->terms[x];
		bool ok_i = m->inflight && x >= m->ifirst && x <= m->ilast &&
			    e->term == m->iterms[x];
		char want[24];

		ck_assert_msg(ok_m || ok_i,
			      "seed %" PRIu64 ": entry %" PRIu64 " term %" PRIu64
			      " was never saved",
			      seed, x, e->term);
		if (x < m->ifirst || !m->inflight)
			ck_assert_msg(ok_m, "seed %" PRIu64, seed);
		ent_data(want, x, e->term);
		ck_assert_str_eq(e->data, want);
	}
}

static unsigned f_snapshots, f_overwrites, f_entries, f_crashes;

static void run_follower_seed(uint64_t seed)
{
	static struct fleader l;
	static struct fmodel m;
	static struct raft_entry ents[8];
	static char edata[8][24];
	struct raft_options o = {
		.id = 2, .election_tick = 100000, .heartbeat_tick = 1,
		.seed = seed, .max_inflight = 4, .max_batch_entries = 8,
	};
	struct raft_snapshot boot = boot_snap(3);
	uint64_t rng = seed * 0x2545F4914F6CDD1Dull + 7;
	char err[128];

#define RND() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17, rng)
	memset(&l, 0, sizeof(l));
	memset(&m, 0, sizeof(m));
	l.term = 1;
	setup();
	{
		struct raft_persisted ps;
		struct raft_storage *st = open_mem(&ps, NULL);
		struct raft_ready rd;

		memset(&rd, 0, sizeof(rd));
		rd.snapshot = &boot;
		ck_assert_int_eq(save(st, &rd), 0);
		close_st(st);
	}
	for (int life = 0; life < 8; life++) {
		struct raft_persisted ps;
		struct raft_storage *st = open_mem(&ps, NULL);
		struct raft *r = NULL;
		bool crashed = false;
		struct done d = { 0, 0 };

		check_recovered(&ps, &m, &l, seed);
		f_entries += (unsigned)ps.n_entries;
		f_crashes += m.inflight;
		ck_assert_msg(raft_new(&o, &ps, &r, err, sizeof(err)) == 0,
			      "seed %" PRIu64 ": %s", seed, err);
		m.inflight = false;
		m.term = ps.hard_state.term;
		m.vote = ps.hard_state.vote;
		m.snap_index = ps.snapshot->index;
		m.last = ps.snapshot->index + ps.n_entries;
		for (size_t i = 0; i < ps.n_entries; i++)
			m.terms[ps.entries[i].index] = ps.entries[i].term;

		for (int step = 0; step < 150 && !crashed; step++) {
			unsigned dice = (unsigned)(RND() % 100);
			struct raft_msg msg;

			memset(&msg, 0, sizeof(msg));
			msg.from = 1;
			msg.to = 2;
			if (dice < 8 && l.len < FMAX - 8) {
				/* a new leader: its log may drop the
				 * uncommitted tail and grow its own */
				uint64_t add = RND() % 4 + 1;

				l.term++;
				l.len = l.commit + RND() % (l.len - l.commit + 1);
				for (uint64_t k = 0; k < add; k++) {
					l.len++;
					l.L[l.len] = l.term;
				}
			} else if (dice < 20 && l.len < FMAX - 8) {
				l.len++;
				l.L[l.len] = l.term;
			} else if (dice < 30) {
				l.commit += RND() % (l.len - l.commit + 1);
			}
			if (dice >= 30 && dice < 33 &&
			    l.commit > raft_first_index(r)) {
				msg.type = RAFT_MSG_SNAPSHOT;
				msg.term = l.term;
				msg.snapshot = boot;
				msg.snapshot.index = l.commit;
				msg.snapshot.term = l.L[l.commit];
				msg.snapshot.data = "snap";
				msg.snapshot.len = 4;
			} else {
				uint64_t lo = raft_first_index(r) - 1;
				uint64_t hi = raft_last_index(r) < l.len
						      ? raft_last_index(r)
						      : l.len;
				uint64_t prev, k;

				if (hi < lo)
					hi = lo;
				prev = hi - RND() % (hi - lo + 1);
				k = RND() % 5;
				if (k > l.len - prev)
					k = l.len - prev;
				for (uint64_t j = 0; j < k; j++) {
					ents[j].index = prev + 1 + j;
					ents[j].term = l.L[prev + 1 + j];
					ents[j].type = RAFT_ENTRY_NORMAL;
					ent_data(edata[j], ents[j].index,
						 ents[j].term);
					ents[j].data = edata[j];
					ents[j].len = strlen(edata[j]) + 1;
				}
				msg.type = RAFT_MSG_APPEND;
				msg.term = l.term;
				msg.index = prev;
				msg.log_term = l.L[prev];
				msg.commit = l.commit < prev + k ? l.commit
								 : prev + k;
				msg.entries = ents;
				msg.n_entries = (size_t)k;
			}
			raft_step(r, &msg);

			if (RND() % 10 == 0 && raft_applied_index(r) >
						       raft_first_index(r) + 2) {
				uint64_t idx = raft_applied_index(r) - 1;

				ck_assert_int_eq(raft_compact(r, idx, "app", 3),
						 0);
				d.fired = 0;
				if (raft_storage_compact(st, idx, "app", 3,
							 on_done, &d) != 0 ||
				    finish(st, &d) != 0) {
					crashed = true;
					break;
				}
				m.snap_index = idx;
			}
			while (!crashed && raft_has_ready(r)) {
				struct raft_ready rd;
				unsigned fault = (unsigned)(RND() % 50);

				ck_assert_int_eq(raft_ready(r, &rd), 0);
				/* what this save may leave behind */
				m.inflight = rd.snapshot != NULL ||
					     rd.n_entries > 0;
				m.ifirst = rd.snapshot ? rd.snapshot->index + 1
						       : rd.n_entries
							 ? rd.entries[0].index
							 : 0;
				m.ilast = m.ifirst - 1;
				for (size_t i = 0; i < rd.n_entries; i++) {
					m.iterms[rd.entries[i].index] =
						rd.entries[i].term;
					m.ilast = rd.entries[i].index;
				}
				if (fault == 0)
					wal_mem_storage_fail(
						ms, WAL_MEM_OP_MUTATING,
						(long)(RND() % 6) + 1, -EIO,
						true);
				d.fired = 0;
				if (raft_storage_save(st, &rd, on_done, &d) !=
					    0 ||
				    fault == 1) {
					crashed = true;
					break;
				}
				if (finish(st, &d) != 0) {
					crashed = true;
					break;
				}
				m.inflight = false;
				f_snapshots += rd.snapshot != NULL;
				f_overwrites += rd.n_entries > 0 &&
						rd.entries[0].index <= m.last;
				if (rd.has_hard_state) {
					m.term = rd.hard_state.term;
					m.vote = rd.hard_state.vote;
				}
				if (rd.snapshot != NULL) {
					m.snap_index = rd.snapshot->index;
					m.last = rd.snapshot->index;
				}
				for (size_t i = 0; i < rd.n_entries; i++) {
					m.terms[rd.entries[i].index] =
						rd.entries[i].term;
					m.last = rd.entries[i].index;
				}
				ck_assert_int_eq(raft_advance(r, &rd), 0);
			}
		}
		close_st(st);
		raft_free(r);
		wal_mem_storage_fail(ms, 0, 0, 0, false);
		if (RND() % 2)
			wal_mem_storage_crash(ms);
		else
			wal_mem_storage_crash_torn(ms, (size_t)(RND() % 64));
	}
	teardown();
#undef RND
}

START_TEST(random_follower_with_conflicting_leaders_restarts_to_durable_state)
{
	for (uint64_t seed = 1; seed <= 40; seed++)
		run_follower_seed(seed);
	ck_assert_uint_ge(f_snapshots, 10);
	ck_assert_uint_ge(f_overwrites, 100);
	ck_assert_uint_ge(f_entries, 500);
	ck_assert_uint_ge(f_crashes, 30);
}
END_TEST

/* ------------------------------------------------- real files, libuv */

static void rm_dir(const char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(real_files_on_a_loop_round_trip)
{
	char dir[] = "/tmp/raft-storage-XXXXXX";
	char snapdir[64];
	uv_loop_t loop;
	struct wal_config c;
	struct raft_persisted ps;
	struct raft_storage *st = NULL;
	struct raft_hard_state h = { .term = 2, .vote = 1, .commit = 3 };
	struct raft_entry *e = mk_entries(1, 5, 2);
	struct raft_snapshot s = boot_snap(3);
	struct raft_ready rd;
	struct done d = { 0, 0 };
	char err[256];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(snapdir, sizeof(snapdir), "%s/snap", dir);
	ck_assert_int_eq(mkdir(snapdir, 0700), 0);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	wal_config_init(&c);
	c.dir = dir;
	c.loop = &loop;

	for (int pass = 0; pass < 2; pass++) {
		const char *sd = pass ? snapdir : NULL;

		ck_assert_msg(raft_storage_open(&c, sd, &st, &ps, err,
						sizeof(err)) == 0,
			      "%s", err);
		memset(&rd, 0, sizeof(rd));
		rd.snapshot = &s;
		rd.entries = e;
		rd.n_entries = 5;
		rd.has_hard_state = true;
		rd.hard_state = h;
		d.fired = 0;
		ck_assert_int_eq(raft_storage_save(st, &rd, on_done, &d), 0);
		while (d.fired == 0)
			uv_run(&loop, UV_RUN_ONCE);
		ck_assert_int_eq(d.status, 0);
		d.fired = 0;
		ck_assert_int_eq(raft_storage_compact(st, 3, "abc", 3, on_done,
						      &d),
				 0);
		while (d.fired == 0)
			uv_run(&loop, UV_RUN_ONCE);
		ck_assert_int_eq(d.status, 0);
		raft_storage_close(st, NULL, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);

		ck_assert_int_eq(raft_storage_open(&c, sd, &st, &ps, err,
						   sizeof(err)),
				 0);
		ck_assert_uint_eq(ps.snapshot->index, 3);
		ck_assert_uint_eq(ps.snapshot->term, 2);
		ck_assert_int_eq(memcmp(ps.snapshot->data, "abc", 3), 0);
		expect_log(&ps, 4, 5, 5, 2, 2);
		ck_assert_uint_eq(ps.hard_state.term, 2);
		ck_assert_uint_eq(ps.hard_state.vote, 1);
		raft_storage_close(st, NULL, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
		{
			char p[128];

			snprintf(p, sizeof(p), "%s/raft-snap-0000000000000003",
				 pass ? snapdir : dir);
			ck_assert_int_eq(access(p, R_OK), 0);
		}
		rm_dir(dir);
		ck_assert_int_eq(mkdir(dir, 0700), 0);
		ck_assert_int_eq(mkdir(snapdir, 0700), 0);
	}
	free_entries(e, 5);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	rm_dir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("raft");
	TCase *tc = tcase_create("storage");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, round_trip_entries_hard_state_and_snapshot);
	tcase_add_test(tc, conflicting_suffix_is_replaced_and_survives_crash);
	tcase_add_test(tc, hard_state_survives_prefix_cut_that_drops_its_record);
	tcase_add_test(tc, bad_snapshot_crc_falls_back_to_previous_snapshot);
	tcase_add_test(tc, bad_snapshot_without_fallback_is_an_error);
	tcase_add_test(tc, bad_input_changes_nothing);
	tcase_add_test(tc, error_codes_have_messages);
	tcase_add_test(tc, read_only_open_returns_state_and_refuses_saves);
	tcase_add_test(tc, one_operation_at_a_time);
	tcase_add_test(tc, real_files_on_a_loop_round_trip);
	suite_add_tcase(s, tc);

	/* these make their own storage per step */
	tc = tcase_create("storage_crash");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, compaction_survives_crash_at_every_step);
	tcase_add_test(tc, save_survives_crash_at_every_step);
	tcase_add_test(tc, torn_tail_keeps_a_prefix_of_the_unsynced_save);
	tcase_add_test(tc, failed_write_or_sync_refuses_later_saves);
	tcase_add_loop_test(
		tc, received_snapshot_replaces_log_and_survives_crash_at_every_step,
		0, 2);
	tcase_add_test(tc, random_node_restarts_to_its_last_durable_state);
	tcase_add_test(tc, allocation_failures_are_reported_and_leak_nothing);
	tcase_add_test(
		tc,
		random_follower_with_conflicting_leaders_restarts_to_durable_state);
	suite_add_tcase(s, tc);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
