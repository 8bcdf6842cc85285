/* test_wal.c - the forced-write log: crashes, torn tails, bit flips, I/O
 * errors, truncation crash safety, group commit completions, real files. */
#include "common/common.h"
#include "wal/wal.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEG 4096u

/* ---- helpers */

/* Deterministic payload of record lsn (built by test, checked on read). */
static size_t payload_of(uint64_t lsn, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "{\"lsn\":%" PRIu64 ",\"pad\":\"", lsn);
	size_t len = (size_t)n, pad = (size_t)(lsn * 7 % 53);

	for (size_t i = 0; i < pad && len + 3 < cap; i++)
		buf[len++] = (char)('a' + (lsn + i) % 26);
	buf[len++] = '"';
	buf[len++] = '}';
	return len;
}

struct acks {
	int64_t results[20000];
	size_t n;
};

static void ack_cb(struct wal *w, int64_t result, void *data)
{
	struct acks *a = data;

	(void)w;
	if (a->n < sizeof(a->results) / sizeof(a->results[0]))
		a->results[a->n] = result;
	a->n++;
}

static void append_lsn(struct wal *w, bool forced, struct acks *a)
{
	char buf[160];
	uint64_t lsn = wal_next_lsn(w);
	size_t len = payload_of(lsn, buf, sizeof(buf));

	ck_assert_int_eq(wal_append(w, (uint32_t)(lsn % 5), buf, len, forced,
				    a ? ack_cb : NULL, a),
			 0);
}

static struct wal *open_mem(struct wal_storage *st,
			    struct wal_recovery_report *rep)
{
	struct wal_config cfg;
	struct wal *w = NULL;

	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.segment_size = SEG;
	ck_assert_int_eq(wal_open(&cfg, &w, rep), 0);
	return w;
}

/* Checks that the log holds exactly first..last with the right bytes. */
static void check_contents(struct wal *w, uint64_t first, uint64_t last)
{
	struct wal_iter *it;
	struct wal_entry e;
	uint64_t want = first;
	char buf[160];
	int rc;

	ck_assert_int_eq(wal_iter_open(w, first, &it), 0);
	while ((rc = wal_iter_next(it, &e)) == 1) {
		size_t len = payload_of(want, buf, sizeof(buf));

		ck_assert_uint_eq(e.lsn, want);
		ck_assert_uint_eq(e.type, want % 5);
		ck_assert_uint_eq(e.len, len);
		ck_assert_int_eq(memcmp(e.payload, buf, len), 0);
		want++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(want, last + 1);
	wal_iter_close(it);
}

/* Appends records until the log holds `count`, forced, and syncs them. */
static void fill(struct wal *w, uint64_t count)
{
	struct acks *a = calloc(1, sizeof(*a));

	while (wal_next_lsn(w) <= count)
		append_lsn(w, true, a);
	wal_step(w);
	for (size_t i = 0; i < a->n; i++)
		ck_assert_int_gt(a->results[i], 0);
	free(a);
}

static void reopen(struct wal_storage *st, struct wal **w,
		   struct wal_recovery_report *rep)
{
	wal_close(*w, NULL, NULL);
	*w = open_mem(st, rep);
}

/* ---- crc and errors */

START_TEST(crc32c_matches_standard_vector)
{
	const char *v = "123456789";
	unsigned char big[1000];

	ck_assert_uint_eq(wal_crc32c(0, v, 9), 0xE3069283u);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 31 + 7);
	/* one call equals two chained calls, at an unaligned split */
	ck_assert_uint_eq(
	    wal_crc32c(0, big, sizeof(big)),
	    wal_crc32c(wal_crc32c(0, big, 13), big + 13, sizeof(big) - 13));
	ck_assert_str_eq(wal_strerror(-WAL_ETOOBIG),
			 "record too large for a segment");
	ck_assert_str_eq(wal_strerror(-EIO), strerror(EIO));
}
END_TEST

/* ---- crash */

START_TEST(forced_records_survive_crash_unsynced_never_corrupt)
{
	for (unsigned seed = 1; seed <= 30; seed++) {
		struct wal_storage *st = wal_mem_storage_new();
		struct wal_recovery_report rep;
		struct wal *w = open_mem(st, NULL);
		struct acks *a = calloc(1, sizeof(*a));
		uint64_t durable = 0, appended = 0;
		unsigned r = seed;

		for (int i = 0; i < 200; i++) {
			r = r * 1103515245u + 12345u;
			if ((r >> 16) % 4 == 0) {
				size_t before = a->n;

				wal_step(w);
				/* a forced ack makes everything before it
				 * durable */
				for (size_t k = before; k < a->n; k++)
					ck_assert_int_gt(a->results[k], 0);
				continue;
			}
			append_lsn(w, (r >> 20) % 3 == 0, NULL);
			appended++;
			if ((r >> 20) % 3 == 0) {
				/* track the forced ones through a sync ack */
			}
		}
		/* a final forced record; its ack proves durability */
		append_lsn(w, true, a);
		appended++;
		wal_step(w);
		durable = appended;
		for (int i = 0; i < 20; i++)
			append_lsn(w, (i % 4) == 3, NULL);
		if (seed % 2)
			wal_step(w);
		r = r * 1103515245u + 12345u;
		if (seed % 3 == 0)
			wal_mem_storage_crash_torn(
			    st, (r >> 8) %
				    (wal_mem_storage_last_write_len(st) + 1));
		else
			wal_mem_storage_crash(st);
		reopen(st, &w, &rep);
		ck_assert_msg(rep.last_lsn >= durable,
			      "seed %u: lost forced records (last %" PRIu64
			      " < %" PRIu64 ")",
			      seed, rep.last_lsn, durable);
		ck_assert_msg(rep.last_lsn <= appended + 20, "seed %u", seed);
		check_contents(w, 1, rep.last_lsn);
		wal_close(w, NULL, NULL);
		free(a);
		wal_mem_storage_free(st);
	}
}
END_TEST

START_TEST(torn_write_at_every_offset_recovers_completed_records)
{
	const uint64_t synced = 5, torn = 6;
	size_t len, bounds[16], nb = 0, off = 0;
	char buf[160];

	for (uint64_t l = synced + 1; l <= synced + torn; l++) {
		off += 24 + payload_of(l, buf, sizeof(buf));
		bounds[nb++] = off;
	}
	len = off;
	for (size_t keep = 0; keep <= len; keep++) {
		struct wal_storage *st = wal_mem_storage_new();
		struct wal_recovery_report rep;
		struct wal *w = open_mem(st, NULL);
		struct acks a = {0};
		uint64_t whole = 0;

		fill(w, synced);
		for (uint64_t i = 0; i < torn; i++)
			append_lsn(w, i == torn - 1, NULL);
		/* the batch is written: crash before its sync lands */
		wal_mem_storage_fail(st, WAL_MEM_OP_SYNC, 1, -EIO, true);
		wal_step(w);
		ck_assert_uint_eq(wal_mem_storage_last_write_len(st), len);
		wal_mem_storage_crash_torn(st, keep);
		wal_mem_storage_fail(st, 0, 0, 0, false);
		while (whole < nb && bounds[whole] <= keep)
			whole++;
		reopen(st, &w, &rep);
		ck_assert_msg(rep.last_lsn == synced + whole,
			      "keep %zu: last %" PRIu64 " want %" PRIu64, keep,
			      rep.last_lsn, synced + whole);
		if (keep == 0 || (whole && bounds[whole - 1] == keep))
			ck_assert_int_eq(rep.reason, WAL_CUT_NONE);
		else
			ck_assert_msg(rep.reason != WAL_CUT_NONE, "keep %zu",
				      keep);
		check_contents(w, 1, rep.last_lsn);
		/* the log continues densely after the cut */
		append_lsn(w, true, &a);
		wal_step(w);
		ck_assert_int_eq(a.results[0], (int64_t)(synced + whole + 1));
		wal_mem_storage_crash(st);
		reopen(st, &w, &rep);
		ck_assert_int_eq(rep.reason, WAL_CUT_NONE);
		check_contents(w, 1, synced + whole + 1);
		wal_close(w, NULL, NULL);
		wal_mem_storage_free(st);
	}
}
END_TEST

START_TEST(flipped_bit_anywhere_cuts_log_there)
{
	const uint64_t n = 6;
	uint64_t starts[8], off = WAL_SEGMENT_HEADER_SIZE;
	char buf[160], name[32];

	for (uint64_t l = 1; l <= n; l++) {
		starts[l - 1] = off;
		off += 24 + payload_of(l, buf, sizeof(buf));
	}
	starts[n] = off;
	snprintf(name, sizeof(name), "%016x.wal", 1);
	for (uint64_t pos = 0; pos < starts[n]; pos++) {
		struct wal_storage *st = wal_mem_storage_new();
		struct wal_recovery_report rep;
		struct wal *w = open_mem(st, NULL);
		uint64_t hit = 0;

		fill(w, n);
		wal_close(w, NULL, NULL);
		ck_assert_int_eq(wal_mem_storage_flip_bit(st, name, pos,
							  (unsigned)(pos % 8)),
				 0);
		w = open_mem(st, &rep);
		if (pos < WAL_SEGMENT_HEADER_SIZE) {
			ck_assert_int_eq(rep.reason, WAL_CUT_HEADER);
			ck_assert_uint_eq(rep.records, 0);
		} else {
			while (starts[hit + 1] <= pos)
				hit++;
			ck_assert_msg(rep.last_lsn == hit,
				      "flip at %" PRIu64 ": kept %" PRIu64
				      " want %" PRIu64,
				      pos, rep.last_lsn, hit);
			ck_assert_uint_eq(rep.cut_lsn, hit + 1);
			ck_assert_uint_eq(rep.cut_offset, starts[hit]);
			ck_assert(rep.reason == WAL_CUT_CRC ||
				  rep.reason == WAL_CUT_TORN);
			ck_assert_uint_gt(rep.bytes_cut, 0);
			check_contents(w, 1, hit);
		}
		wal_close(w, NULL, NULL);
		wal_mem_storage_free(st);
	}
}
END_TEST

START_TEST(bad_record_in_middle_segment_drops_later_segments)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal_recovery_report rep;
	struct wal *w = open_mem(st, NULL);
	char name[32];

	fill(w, 200); /* several 4 KiB segments */
	wal_close(w, NULL, NULL);
	snprintf(name, sizeof(name), "%016x.wal", 1);
	/* damage the third record of the first segment */
	ck_assert_int_eq(
	    wal_mem_storage_flip_bit(st, name, 32 + 3 * 24 + 70, 2), 0);
	w = open_mem(st, &rep);
	ck_assert_uint_lt(rep.last_lsn, 4);
	ck_assert_uint_gt(rep.segments_removed, 2);
	ck_assert_int_eq(rep.segments, 1);
	check_contents(w, 1, rep.last_lsn);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
}
END_TEST

START_TEST(records_after_a_lost_write_never_come_back)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal_recovery_report rep;
	struct wal *w = open_mem(st, NULL);
	struct acks a = {0};

	fill(w, 5);
	/* 6 written alone, then 7..9 in a later write; the crash loses the
	 * first write but keeps the second: a hole, then whole records */
	append_lsn(w, false, NULL);
	wal_step(w);
	for (int i = 0; i < 3; i++)
		append_lsn(w, false, NULL);
	wal_step(w);
	wal_mem_storage_crash_torn(st, wal_mem_storage_last_write_len(st));
	reopen(st, &w, &rep);
	ck_assert_uint_eq(rep.last_lsn, 5);
	ck_assert_int_eq(rep.reason, WAL_CUT_TORN);
	ck_assert_uint_gt(rep.bytes_cut, 0);
	/* a new 6 of the same length must not revive the old 7..9 */
	append_lsn(w, true, &a);
	wal_step(w);
	ck_assert_int_eq(a.results[0], 6);
	wal_mem_storage_crash(st);
	reopen(st, &w, &rep);
	ck_assert_int_eq(rep.reason, WAL_CUT_NONE);
	ck_assert_uint_eq(rep.last_lsn, 6);
	check_contents(w, 1, 6);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
}
END_TEST

/* ---- I/O errors */

static void io_error_case(unsigned mask, int err, long nth)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal_recovery_report rep;
	struct wal *w = open_mem(st, NULL);
	struct acks a = {0};

	fill(w, 30);
	wal_mem_storage_fail(st, mask, nth, err, false);
	for (int i = 0; i < 40; i++) /* crosses a segment boundary */
		append_lsn(w, true, &a);
	wal_step(w);
	ck_assert_uint_eq(a.n, 40);
	for (size_t i = 0; i < a.n; i++)
		ck_assert_int_eq(a.results[i], err);
	ck_assert_int_eq(wal_failed(w), err);
	ck_assert_str_ne(wal_errmsg(w), "");
	ck_assert_int_eq(wal_append(w, 1, "x", 1, true, NULL, NULL),
			 -WAL_EFAILED);
	ck_assert_int_eq(wal_sync(w, NULL, NULL), -WAL_EFAILED);
	/* what was acknowledged stays readable */
	check_contents(w, 1, 30);
	wal_mem_storage_crash(st);
	reopen(st, &w, &rep);
	ck_assert_uint_ge(rep.last_lsn, 30);
	check_contents(w, 1, rep.last_lsn);
	/* and the reopened log takes appends again */
	append_lsn(w, true, &a);
	ck_assert_int_eq(wal_step(w), 1);
	ck_assert_int_eq(a.results[40], (int64_t)rep.last_lsn + 1);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
}

START_TEST(eio_on_write_fails_waiters_and_keeps_acked)
{
	io_error_case(WAL_MEM_OP_WRITE, -EIO, 1);
}
END_TEST

START_TEST(eio_on_sync_is_fatal_never_retried)
{
	io_error_case(WAL_MEM_OP_SYNC, -EIO, 1);
}
END_TEST

START_TEST(enospc_on_write_fails_waiters_and_keeps_acked)
{
	io_error_case(WAL_MEM_OP_WRITE, -ENOSPC, 1);
}
END_TEST

START_TEST(enospc_on_preallocate_fails_rotation)
{
	io_error_case(WAL_MEM_OP_ALLOCATE, -ENOSPC, 1);
}
END_TEST

/* ---- truncation crash safety */

/* No segment holds only records below first (recovery deleted them). */
static void assert_no_dead_segments(struct wal_storage *st, uint64_t first)
{
	char **names;
	size_t count, below = 0;
	uint64_t v;

	ck_assert_int_eq(st->ops->list(st->data, &names, &count), 0);
	for (size_t i = 0; i < count; i++) {
		if (sscanf(names[i], "%16" SCNx64 ".wal", &v) == 1 &&
		    v <= first)
			below++;
	}
	wal_storage_list_free(names, count);
	ck_assert_uint_le(below, 1);
}

static void prefix_case(uint64_t cut)
{
	bool done = false;

	for (long n = 1; !done; n++) {
		struct wal_storage *st = wal_mem_storage_new();
		struct wal_recovery_report rep;
		struct wal *w = open_mem(st, NULL);
		struct acks a = {0};
		long before;

		fill(w, 120);
		before = wal_mem_storage_count(st, WAL_MEM_OP_MUTATING);
		wal_mem_storage_fail(st, WAL_MEM_OP_MUTATING, n, -EIO, true);
		ck_assert_int_eq(wal_truncate_prefix(w, cut, ack_cb, &a), 0);
		ck_assert_uint_eq(wal_first_lsn(w), cut);
		wal_step(w);
		ck_assert_uint_eq(a.n, 1);
		done =
		    wal_mem_storage_count(st, WAL_MEM_OP_MUTATING) - before < n;
		wal_mem_storage_crash(st);
		wal_mem_storage_fail(st, 0, 0, 0, false);
		reopen(st, &w, &rep);
		if (a.results[0] == 0)
			ck_assert_uint_eq(rep.first_lsn, cut);
		ck_assert_msg(rep.first_lsn == 1 || rep.first_lsn == cut,
			      "step %ld: first %" PRIu64, n, rep.first_lsn);
		assert_no_dead_segments(st, rep.first_lsn);
		if (cut <= 121) {
			ck_assert_uint_eq(rep.last_lsn, 120);
			check_contents(w, rep.first_lsn, 120);
		} else if (rep.first_lsn == cut) {
			ck_assert_uint_eq(rep.records, 0);
			ck_assert_uint_eq(wal_next_lsn(w), cut);
		}
		/* the log goes on from where it is */
		append_lsn(w, true, &a);
		wal_step(w);
		ck_assert_int_eq(a.results[1], (int64_t)rep.last_lsn + 1 >
						       (int64_t)rep.first_lsn
						   ? (int64_t)rep.last_lsn + 1
						   : (int64_t)rep.first_lsn);
		wal_close(w, NULL, NULL);
		wal_mem_storage_free(st);
		ck_assert_int_lt(n, 200);
	}
}

START_TEST(prefix_truncation_survives_crash_at_every_step)
{
	prefix_case(77);
}
END_TEST

START_TEST(prefix_truncation_past_end_survives_crash_at_every_step)
{
	prefix_case(500);
}
END_TEST

static void suffix_case(uint64_t cut)
{
	bool done = false;

	for (long n = 1; !done; n++) {
		struct wal_storage *st = wal_mem_storage_new();
		struct wal_recovery_report rep;
		struct wal *w = open_mem(st, NULL);
		struct acks a = {0};
		long before;

		fill(w, 120);
		before = wal_mem_storage_count(st, WAL_MEM_OP_MUTATING);
		wal_mem_storage_fail(st, WAL_MEM_OP_MUTATING, n, -EIO, true);
		ck_assert_int_eq(wal_truncate_suffix(w, cut, ack_cb, &a), 0);
		ck_assert_uint_eq(wal_next_lsn(w), cut + 1);
		wal_step(w);
		ck_assert_uint_eq(a.n, 1);
		done =
		    wal_mem_storage_count(st, WAL_MEM_OP_MUTATING) - before < n;
		wal_mem_storage_crash(st);
		wal_mem_storage_fail(st, 0, 0, 0, false);
		reopen(st, &w, &rep);
		if (a.results[0] == 0)
			ck_assert_uint_eq(rep.last_lsn, cut);
		ck_assert_msg(rep.last_lsn >= cut && rep.last_lsn <= 120,
			      "step %ld: last %" PRIu64, n, rep.last_lsn);
		ck_assert_int_eq(rep.reason, WAL_CUT_NONE);
		check_contents(w, 1, rep.last_lsn);
		ck_assert_int_eq(wal_truncate_suffix(w, cut, ack_cb, &a), 0);
		append_lsn(w, true, &a);
		wal_step(w);
		ck_assert_int_eq(a.results[1], 0);
		ck_assert_int_eq(a.results[2], (int64_t)cut + 1);
		wal_mem_storage_crash(st);
		reopen(st, &w, &rep);
		check_contents(w, 1, cut + 1);
		wal_close(w, NULL, NULL);
		wal_mem_storage_free(st);
		ck_assert_int_lt(n, 200);
	}
}

START_TEST(suffix_truncation_survives_crash_at_every_step)
{
	suffix_case(45);
}
END_TEST

START_TEST(suffix_truncation_at_segment_boundary_survives_crash)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal *w = open_mem(st, NULL);
	char **names;
	size_t count;
	uint64_t second = UINT64_MAX, v;

	fill(w, 120);
	ck_assert_int_eq(st->ops->list(st->data, &names, &count), 0);
	for (size_t i = 0; i < count; i++) {
		if (sscanf(names[i], "%16" SCNx64 ".wal", &v) == 1 && v > 1 &&
		    v < second)
			second = v;
	}
	wal_storage_list_free(names, count);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
	ck_assert_uint_lt(second, 120);
	suffix_case(second - 1);
	suffix_case(0);
}
END_TEST

/* ---- completions */

struct order {
	uint64_t next;
	size_t fired;
	size_t total;
	bool bad;
	struct wal *w;
	int closed;
};

static void order_cb(struct wal *w, int64_t result, void *data)
{
	struct order *o = data;

	(void)w;
	if (result != (int64_t)o->next)
		o->bad = true;
	o->next++;
	o->fired++;
}

static void closed_cb(void *data)
{
	(*(int *)data)++;
}

static void sync_then_close(struct wal *w, int64_t result, void *data)
{
	struct order *o = data;

	ck_assert_int_eq(result, (int64_t)o->total);
	wal_close(w, closed_cb, &o->closed);
}

START_TEST(thousands_of_waiters_complete_once_in_lsn_order)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct order o = {.next = 1, .total = 5000};
	struct wal_config cfg;
	struct wal_stats stats;
	uv_loop_t loop;
	struct wal *w;

	uv_loop_init(&loop);
	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.loop = &loop;
	cfg.segment_size = 64 * 1024;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	for (size_t i = 0; i < o.total; i++)
		ck_assert_int_eq(
		    wal_append(w, 1, &i, sizeof(i), i % 3 == 0, order_cb, &o),
		    0);
	ck_assert_int_eq(wal_sync(w, sync_then_close, &o), 0);
	ck_assert_uint_eq(wal_pending(w), o.total + 1);
	wal_stats_get(w, &stats);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(o.closed, 1);
	ck_assert_uint_eq(o.fired, o.total);
	ck_assert(!o.bad);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	/* group commit: far fewer syncs than forced records */
	ck_assert_int_lt(wal_mem_storage_count(st, WAL_MEM_OP_SYNC),
			 (long)o.total / 3);
	cfg.loop = NULL;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	ck_assert_uint_eq(wal_next_lsn(w), o.total + 1);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
}
END_TEST

struct fail_run {
	size_t fired, errors, eio;
	int after, closed;
};

static void fail_cb(struct wal *w, int64_t result, void *data)
{
	struct fail_run *f = data;

	f->fired++;
	f->errors += result < 0;
	f->eio += result == -EIO;
	if (f->fired == 200) {
		f->after = wal_append(w, 1, "x", 1, true, NULL, NULL);
		wal_close(w, closed_cb, &f->closed);
	}
}

START_TEST(threaded_sync_error_reaches_every_waiter_on_the_loop)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct fail_run f = {0};
	struct wal_config cfg;
	uv_loop_t loop;
	struct wal *w;

	uv_loop_init(&loop);
	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.loop = &loop;
	cfg.segment_size = SEG;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	/* the first sync of a record batch fails (the segment creation's
	 * sync is the first one) */
	wal_mem_storage_fail(st, WAL_MEM_OP_SYNC, 2, -EIO, false);
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(
		    wal_append(w, 1, &i, sizeof(i), true, fail_cb, &f), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(f.closed, 1);
	ck_assert_uint_eq(f.fired, 200);
	/* the first batch hit the error; it and everything after failed */
	ck_assert_uint_eq(f.eio, 200);
	ck_assert_int_eq(f.after, -WAL_EFAILED);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	wal_mem_storage_free(st);
}
END_TEST

struct reader_run {
	size_t done, total, reads;
	int closed;
	bool bad;
};

static void read_back(struct wal *w)
{
	uint64_t last = wal_written_lsn(w), from = last > 30 ? last - 30 : 1;
	struct wal_iter *it;
	struct wal_entry e;
	char buf[160];
	int rc;

	ck_assert_int_eq(wal_iter_open(w, from, &it), 0);
	while ((rc = wal_iter_next(it, &e)) == 1) {
		size_t len = payload_of(e.lsn, buf, sizeof(buf));

		ck_assert_uint_eq(e.lsn, from);
		ck_assert_uint_eq(e.len, len);
		ck_assert_int_eq(memcmp(e.payload, buf, len), 0);
		from++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_ge(from, last + 1);
	wal_iter_close(it);
}

static void reader_cb(struct wal *w, int64_t result, void *data)
{
	struct reader_run *r = data;
	char buf[160];
	size_t len;

	ck_assert_int_gt(result, 0);
	if (++r->done % 7 == 0) {
		read_back(w);
		r->reads++;
	}
	if (wal_next_lsn(w) <= r->total) {
		len = payload_of(wal_next_lsn(w), buf, sizeof(buf));
		ck_assert_int_eq(wal_append(w, (uint32_t)(wal_next_lsn(w) % 5),
					    buf, len, r->done % 2, reader_cb,
					    r),
				 0);
	} else if (r->done == r->total) {
		wal_close(w, closed_cb, &r->closed);
	}
}

START_TEST(threaded_readers_see_records_while_the_writer_rotates)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct reader_run r = {.total = 3000};
	struct wal_config cfg;
	uv_loop_t loop;
	struct wal *w;

	uv_loop_init(&loop);
	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.loop = &loop;
	cfg.segment_size = SEG;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	for (int i = 0; i < 8; i++) {
		char buf[160];
		size_t len = payload_of(wal_next_lsn(w), buf, sizeof(buf));

		ck_assert_int_eq(wal_append(w, (uint32_t)(wal_next_lsn(w) % 5),
					    buf, len, true, reader_cb, &r),
				 0);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(r.closed, 1);
	ck_assert_uint_eq(r.done, r.total);
	ck_assert_uint_gt(r.reads, 100);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	cfg.loop = NULL;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	check_contents(w, 1, r.total);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
}
END_TEST

START_TEST(manual_step_is_one_write_and_one_sync)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal *w = open_mem(st, NULL);
	struct acks *a = calloc(1, sizeof(*a));
	struct wal_stats s;
	long writes, syncs;

	for (int i = 0; i < 20; i++)
		append_lsn(w, i == 19, a);
	writes = wal_mem_storage_count(st, WAL_MEM_OP_WRITE);
	syncs = wal_mem_storage_count(st, WAL_MEM_OP_SYNC);
	ck_assert_uint_eq(a->n, 0); /* nothing fires before the step */
	ck_assert_int_eq(wal_step(w), 20);
	ck_assert_uint_eq(a->n, 20);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(a->results[i], i + 1);
	wal_stats_get(w, &s);
	ck_assert_uint_eq(s.records, 20);
	ck_assert_uint_eq(s.batches, 1);
	/* one segment creation (header write + sync) and one batch */
	ck_assert_int_eq(wal_mem_storage_count(st, WAL_MEM_OP_WRITE) - writes,
			 2);
	ck_assert_int_eq(wal_mem_storage_count(st, WAL_MEM_OP_SYNC) - syncs, 2);
	/* non-forced: written, not synced; wal_sync then syncs once */
	append_lsn(w, false, a);
	syncs = wal_mem_storage_count(st, WAL_MEM_OP_SYNC);
	ck_assert_int_eq(wal_step(w), 1);
	ck_assert_int_eq(wal_mem_storage_count(st, WAL_MEM_OP_SYNC), syncs);
	ck_assert_int_eq(wal_sync(w, ack_cb, a), 0);
	ck_assert_int_eq(wal_step(w), 1);
	ck_assert_int_eq(wal_mem_storage_count(st, WAL_MEM_OP_SYNC), syncs + 1);
	ck_assert_int_eq(a->results[21], 21);
	/* requests left at close complete with -WAL_ECLOSED */
	append_lsn(w, true, a);
	wal_close(w, NULL, NULL);
	ck_assert_int_eq(a->results[22], -WAL_ECLOSED);
	free(a);
	wal_mem_storage_free(st);
}
END_TEST

/* ---- bad input, modes, allocation failures */

START_TEST(bad_input_is_rejected_and_changes_nothing)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal_config cfg;
	struct wal *w, *ro;
	struct wal_iter *it;
	char big[SEG];
	void *f;

	wal_config_init(&cfg);
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), -EINVAL);
	cfg.storage = st;
	cfg.segment_size = 100;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), -EINVAL);
	cfg.segment_size = SEG;
	cfg.sync_mode = (enum wal_sync_mode)9;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), -EINVAL);
	w = open_mem(st, NULL);
	fill(w, 10);
	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(wal_append(w, 1, big, sizeof(big), true, NULL, NULL),
			 -WAL_ETOOBIG);
	ck_assert_int_eq(wal_append(w, 1, NULL, 3, true, NULL, NULL), -EINVAL);
	ck_assert_int_eq(wal_truncate_suffix(w, 11, NULL, NULL), -WAL_ERANGE);
	ck_assert_int_eq(wal_iter_open(w, 12, &it), -WAL_ERANGE);
	ck_assert_uint_eq(wal_next_lsn(w), 11);
	/* allocation failure on append: error, nothing queued */
	mem_fail_after(1);
	ck_assert_int_eq(wal_append(w, 1, "a", 1, true, NULL, NULL), -ENOMEM);
	mem_fail_reset();
	ck_assert_uint_eq(wal_next_lsn(w), 11);
	ck_assert_uint_eq(wal_pending(w), 0);
	ck_assert_int_eq(wal_truncate_prefix(w, 5, NULL, NULL), 0);
	wal_step(w);
	ck_assert_int_eq(wal_iter_open(w, 4, &it), -WAL_ECOMPACTED);
	ck_assert_int_eq(wal_truncate_suffix(w, 2, NULL, NULL),
			 -WAL_ECOMPACTED);
	check_contents(w, 5, 10);
	wal_close(w, NULL, NULL);
	/* read-only refuses writes */
	cfg.sync_mode = WAL_SYNC_FDATASYNC;
	cfg.read_only = true;
	ck_assert_int_eq(wal_open(&cfg, &ro, NULL), 0);
	ck_assert_int_eq(wal_append(ro, 1, "a", 1, true, NULL, NULL),
			 -WAL_EREADONLY);
	check_contents(ro, 5, 10);
	wal_close(ro, NULL, NULL);
	/* a damaged start marker is refused with a clear error */
	ck_assert_int_eq(wal_mem_storage_flip_bit(st, "wal.start", 9, 0), 0);
	cfg.read_only = false;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), -WAL_EFORMAT);
	ck_assert_int_eq(st->ops->open(st->data, "wal.start", 0, &f), 0);
	st->ops->close(st->data, f);
	wal_mem_storage_free(st);
}
END_TEST

START_TEST(read_only_open_reports_cut_and_changes_nothing)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal_recovery_report rep;
	struct wal_config cfg;
	struct wal *w = open_mem(st, NULL);
	char name[32];

	fill(w, 10);
	for (int i = 0; i < 3; i++)
		append_lsn(w, false, NULL);
	wal_step(w);
	wal_mem_storage_crash_torn(st, 30);
	wal_close(w, NULL, NULL);
	snprintf(name, sizeof(name), "%016x.wal", 1);
	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.read_only = true;
	ck_assert_int_eq(wal_open(&cfg, &w, &rep), 0);
	ck_assert_int_eq(rep.reason, WAL_CUT_CRC);
	ck_assert_uint_eq(rep.last_lsn, 10);
	ck_assert_uint_eq(rep.cut_lsn, 11);
	ck_assert_uint_eq(rep.bytes_cut, 30);
	check_contents(w, 1, 10);
	wal_close(w, NULL, NULL);
	/* nothing was cut: a second read-only open sees the same */
	ck_assert_int_eq(wal_open(&cfg, &w, &rep), 0);
	ck_assert_uint_eq(rep.bytes_cut, 30);
	wal_close(w, NULL, NULL);
	cfg.read_only = false;
	ck_assert_int_eq(wal_open(&cfg, &w, &rep), 0);
	ck_assert_uint_eq(rep.bytes_cut, 30);
	wal_close(w, NULL, NULL);
	ck_assert_int_eq(wal_open(&cfg, &w, &rep), 0);
	ck_assert_int_eq(rep.reason, WAL_CUT_NONE);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
}
END_TEST

START_TEST(sync_modes_none_and_dsync)
{
	enum wal_sync_mode m;
	struct wal_storage *st = wal_mem_storage_new();
	struct wal_config cfg;
	struct wal_stats s;
	struct wal *w;

	ck_assert_int_eq(wal_sync_mode_parse("dsync", &m), 0);
	ck_assert_int_eq(m, WAL_SYNC_DSYNC);
	ck_assert_int_eq(wal_sync_mode_parse("fsync-maybe", &m), -EINVAL);
	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.segment_size = SEG;
	cfg.sync_mode = WAL_SYNC_NONE;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	fill(w, 50);
	ck_assert_int_eq(wal_mem_storage_count(st, WAL_MEM_OP_SYNC), 0);
	wal_close(w, NULL, NULL);
	cfg.sync_mode = WAL_SYNC_DSYNC;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	fill(w, 100);
	wal_stats_get(w, &s);
	ck_assert_uint_eq(s.syncs, s.writes);
	/* dsync writes are durable without a sync call */
	wal_mem_storage_crash(st);
	wal_close(w, NULL, NULL);
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	check_contents(w, 1, 100);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
}
END_TEST

START_TEST(allocation_failures_in_open_and_step_are_clean)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal *w = open_mem(st, NULL);
	struct wal_config cfg;
	int ok = 0;

	fill(w, 150);
	wal_close(w, NULL, NULL);
	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.segment_size = SEG;
	for (long n = 1; n < 400 && !ok; n++) {
		int rc;

		mem_fail_after(n);
		rc = wal_open(&cfg, &w, NULL);
		mem_fail_reset();
		ck_assert(rc == 0 || rc == -ENOMEM);
		if (rc == 0) {
			check_contents(w, 1, 150);
			wal_close(w, NULL, NULL);
			ok = 1;
		}
	}
	ck_assert(ok);
	wal_mem_storage_free(st);
}
END_TEST

/* ---- real files */

static void rm_dir(const char *dir)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (d) {
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

static int count_segments(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	while (d && (de = readdir(d)))
		n += strstr(de->d_name, ".wal") != NULL;
	if (d)
		closedir(d);
	return n;
}

static void file_done_cb(struct wal *w, int64_t result, void *data)
{
	struct order *o = data;

	ck_assert_int_eq(result, (int64_t)o->next);
	o->next++;
	if (++o->fired == o->total)
		wal_close(w, closed_cb, &o->closed);
}

START_TEST(real_files_reopen_after_rotation)
{
	char tmpl[] = "/tmp/decree-wal-test-XXXXXX";
	char *dir = mkdtemp(tmpl);
	struct order o = {.next = 1, .total = 300};
	struct wal_recovery_report rep;
	struct wal_config cfg;
	struct acks a = {0};
	uv_loop_t loop;
	struct wal *w;

	ck_assert_ptr_nonnull(dir);
	uv_loop_init(&loop);
	wal_config_init(&cfg);
	cfg.dir = dir;
	cfg.loop = &loop;
	cfg.segment_size = SEG;
	ck_assert_int_eq(wal_open(&cfg, &w, &rep), 0);
	ck_assert_uint_eq(rep.records, 0);
	for (size_t i = 0; i < o.total; i++) {
		char buf[160];
		size_t len = payload_of(i + 1, buf, sizeof(buf));

		ck_assert_int_eq(wal_append(w, (uint32_t)((i + 1) % 5), buf,
					    len, true, file_done_cb, &o),
				 0);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(o.closed, 1);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	ck_assert_int_gt(count_segments(dir), 5);

	cfg.loop = NULL;
	ck_assert_int_eq(wal_open(&cfg, &w, &rep), 0);
	ck_assert_int_eq(rep.reason, WAL_CUT_NONE);
	ck_assert_uint_eq(rep.last_lsn, 300);
	check_contents(w, 1, 300);
	ck_assert_int_eq(wal_truncate_prefix(w, 100, ack_cb, &a), 0);
	ck_assert_int_eq(wal_truncate_suffix(w, 250, ack_cb, &a), 0);
	append_lsn(w, true, &a);
	ck_assert_int_eq(wal_step(w), 3);
	ck_assert_int_eq(a.results[0], 0);
	ck_assert_int_eq(a.results[1], 0);
	ck_assert_int_eq(a.results[2], 251);
	wal_close(w, NULL, NULL);
	ck_assert_int_eq(wal_open(&cfg, &w, &rep), 0);
	ck_assert_uint_eq(rep.first_lsn, 100);
	ck_assert_uint_eq(rep.last_lsn, 251);
	check_contents(w, 100, 251);
	wal_close(w, NULL, NULL);
	rm_dir(dir);
}
END_TEST

START_TEST(second_writer_is_refused_while_first_is_open)
{
	char tmpl[] = "/tmp/decree-wal-lock-XXXXXX";
	char *dir = mkdtemp(tmpl);
	struct wal_config cfg;
	struct wal *a, *b, *ro;

	ck_assert_ptr_nonnull(dir);
	wal_config_init(&cfg);
	cfg.dir = dir;
	ck_assert_int_eq(wal_open(&cfg, &a, NULL), 0);
	ck_assert_int_eq(wal_open(&cfg, &b, NULL), -WAL_ELOCKED);
	ck_assert_str_eq(wal_strerror(-WAL_ELOCKED),
			 "log directory is in use by another process");
	cfg.read_only = true; /* a reader (decree wal dump) is fine */
	ck_assert_int_eq(wal_open(&cfg, &ro, NULL), 0);
	wal_close(ro, NULL, NULL);
	wal_close(a, NULL, NULL);
	cfg.read_only = false;
	ck_assert_int_eq(wal_open(&cfg, &b, NULL), 0);
	wal_close(b, NULL, NULL);
	rm_dir(dir);
}
END_TEST

START_TEST(iterator_from_any_lsn_reads_right_records)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct wal *w = open_mem(st, NULL);
	unsigned r = 7;

	fill(w, 400);
	for (int i = 0; i < 300; i++) {
		struct wal_iter *it;
		struct wal_entry e;
		uint64_t from;
		char buf[160];

		r = r * 1103515245u + 12345u;
		/* mostly forward steps (the hint), sometimes anywhere */
		from = (r >> 16) % 4 ? 1 + (uint64_t)(i * 4 / 3) % 400
				     : 1 + (r >> 8) % 400;
		ck_assert_int_eq(wal_iter_open(w, from, &it), 0);
		for (uint64_t k = 0; k < 3 && from + k <= 400; k++) {
			size_t len = payload_of(from + k, buf, sizeof(buf));

			ck_assert_int_eq(wal_iter_next(it, &e), 1);
			ck_assert_uint_eq(e.lsn, from + k);
			ck_assert_uint_eq(e.len, len);
			ck_assert_int_eq(memcmp(e.payload, buf, len), 0);
		}
		wal_iter_close(it);
	}
	/* records a queued suffix truncation cuts are never readable */
	{
		struct wal_iter *it;
		struct wal_entry e;

		append_lsn(w, false, NULL); /* 401 */
		append_lsn(w, false, NULL); /* 402 */
		ck_assert_int_eq(wal_truncate_suffix(w, 398, NULL, NULL), 0);
		ck_assert_uint_eq(wal_written_lsn(w), 398);
		ck_assert_int_eq(wal_step(w), 3);
		ck_assert_uint_eq(wal_written_lsn(w), 398);
		ck_assert_int_eq(wal_iter_open(w, 398, &it), 0);
		ck_assert_int_eq(wal_iter_next(it, &e), 1);
		ck_assert_int_eq(wal_iter_next(it, &e), 0);
		wal_iter_close(it);
		append_lsn(w, true, NULL); /* 399, new */
		append_lsn(w, true, NULL); /* 400, new */
		ck_assert_int_eq(wal_step(w), 2);
		ck_assert_uint_eq(wal_written_lsn(w), 400);
		check_contents(w, 1, 400);
	}
	/* a truncation stales open iterators */
	{
		struct wal_iter *it;
		struct wal_entry e;

		ck_assert_int_eq(wal_iter_open(w, 390, &it), 0);
		ck_assert_int_eq(wal_truncate_suffix(w, 395, NULL, NULL), 0);
		ck_assert_int_eq(wal_iter_next(it, &e), -WAL_ESTALE);
		wal_iter_close(it);
		wal_step(w);
		check_contents(w, 1, 395);
	}
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    crc32c_matches_standard_vector,
	    forced_records_survive_crash_unsynced_never_corrupt,
	    torn_write_at_every_offset_recovers_completed_records,
	    flipped_bit_anywhere_cuts_log_there,
	    bad_record_in_middle_segment_drops_later_segments,
	    records_after_a_lost_write_never_come_back,
	    eio_on_write_fails_waiters_and_keeps_acked,
	    eio_on_sync_is_fatal_never_retried,
	    enospc_on_write_fails_waiters_and_keeps_acked,
	    enospc_on_preallocate_fails_rotation,
	    prefix_truncation_survives_crash_at_every_step,
	    prefix_truncation_past_end_survives_crash_at_every_step,
	    suffix_truncation_survives_crash_at_every_step,
	    suffix_truncation_at_segment_boundary_survives_crash,
	    thousands_of_waiters_complete_once_in_lsn_order,
	    manual_step_is_one_write_and_one_sync,
	    threaded_readers_see_records_while_the_writer_rotates,
	    threaded_sync_error_reaches_every_waiter_on_the_loop,
	    bad_input_is_rejected_and_changes_nothing,
	    read_only_open_reports_cut_and_changes_nothing,
	    sync_modes_none_and_dsync,
	    allocation_failures_in_open_and_step_are_clean,
	    real_files_reopen_after_rotation,
	    second_writer_is_refused_while_first_is_open,
	    iterator_from_any_lsn_reads_right_records,
	    NULL,
	};

	return suite_main("wal", 60, tests);
}
