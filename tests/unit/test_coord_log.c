/* test_coord_log.c - decision log records (encode/decode, strictness), the
 * in-memory log's durability, recovery planning from a replayed log, and
 * the engine's recover/reconcile on top of it. */
#include "test_coord_harness.h"
#include "tests/lib/suite.h"

#include <errno.h>
#include <stdlib.h>

static struct coordinator_record *mk(enum coordinator_rec_type t,
				     const char *txn, int nb)
{
	struct coordinator_record *r = calloc(1, sizeof(*r));

	r->type = t;
	r->protocol = COORDINATOR_PROTO_2PC_PA;
	snprintf(r->txn, sizeof(r->txn), "%s", txn);
	r->nbranches = (size_t)nb;
	r->branches = nb ? calloc((size_t)nb, sizeof(*r->branches)) : NULL;
	for (int i = 0; i < nb; i++) {
		snprintf(r->branches[i].resource,
			 sizeof(r->branches[i].resource), "db%d", i + 1);
		snprintf(r->branches[i].gid, sizeof(r->branches[i].gid),
			 "%s_%dof%d", txn, i + 1, nb);
	}
	return r;
}

static void unmk(struct coordinator_record *r)
{
	free(r->branches);
	free(r);
}

START_TEST(records_round_trip)
{
	unsigned char buf[4096];
	struct coordinator_record *r =
				      mk(COORDINATOR_REC_COMMIT, "bank_3_7", 3),
				  *d;
	struct coordinator_record ep = {.type = COORDINATOR_REC_EPOCH,
					.epoch = 0x0102030405060708ull};
	long n;

	n = coordinator_record_encode(r, buf, sizeof(buf));
	ck_assert_int_eq(n, coordinator_record_size(r));
	ck_assert_int_eq(buf[0], 'D');
	ck_assert_int_eq(buf[1], 'L');
	ck_assert_int_eq(buf[2], 1);
	ck_assert_int_eq(buf[3], COORDINATOR_REC_COMMIT);
	ck_assert_int_eq(coordinator_record_decode(buf, (size_t)n, &d), 0);
	ck_assert_int_eq(d->type, COORDINATOR_REC_COMMIT);
	ck_assert_str_eq(d->txn, "bank_3_7");
	ck_assert_uint_eq(d->nbranches, 3);
	ck_assert_str_eq(d->branches[2].resource, "db3");
	ck_assert_str_eq(d->branches[2].gid, "bank_3_7_3of3");
	coordinator_record_free(d);
	n = coordinator_record_encode(&ep, buf, sizeof(buf));
	ck_assert_int_eq(n, 12);
	ck_assert_int_eq(buf[4], 0x08);
	ck_assert_int_eq(coordinator_record_decode(buf, 12, &d), 0);
	ck_assert_uint_eq(d->epoch, 0x0102030405060708ull);
	coordinator_record_free(d);
	ck_assert_int_eq(coordinator_record_encode(r, buf, 10), -ENOSPC);
	/* the idempotency key travels with the decision */
	snprintf(r->key, sizeof(r->key), "transfer-42");
	n = coordinator_record_encode(r, buf, sizeof(buf));
	ck_assert_int_eq(buf[5], 11);
	ck_assert_int_eq(coordinator_record_decode(buf, (size_t)n, &d), 0);
	ck_assert_str_eq(d->key, "transfer-42");
	ck_assert_str_eq(d->branches[0].gid, "bank_3_7_1of3");
	coordinator_record_free(d);
	unmk(r);
}
END_TEST

START_TEST(record_decoder_is_strict)
{
	unsigned char buf[4096], bad[4096];
	struct coordinator_record *r = mk(COORDINATOR_REC_BEGIN, "bank_3_7", 2),
				  *d = NULL;
	size_t n = (size_t)coordinator_record_encode(r, buf, sizeof(buf));

	/* every truncation fails, and never reads past the end */
	for (size_t k = 0; k < n; k++) {
		unsigned char *cut = malloc(k ? k : 1);

		memcpy(cut, buf, k);
		ck_assert_int_lt(coordinator_record_decode(cut, k, &d), 0);
		free(cut);
	}
	memcpy(bad, buf, n);
	bad[n] = 0;
	ck_assert_int_eq(coordinator_record_decode(bad, n + 1, &d),
			 COORDINATOR_EREC_TRUNCATED);
	memcpy(bad, buf, n);
	bad[0] = 'X';
	ck_assert_int_eq(coordinator_record_decode(bad, n, &d),
			 COORDINATOR_EREC_MAGIC);
	memcpy(bad, buf, n);
	bad[2] = 2;
	ck_assert_int_eq(coordinator_record_decode(bad, n, &d),
			 COORDINATOR_EREC_VERSION);
	memcpy(bad, buf, n);
	bad[3] = 9;
	ck_assert_int_eq(coordinator_record_decode(bad, n, &d),
			 COORDINATOR_EREC_TYPE);
	memcpy(bad, buf, n);
	bad[4] = 7; /* protocol */
	ck_assert_int_eq(coordinator_record_decode(bad, n, &d),
			 COORDINATOR_EREC_FIELD);
	memcpy(bad, buf, n);
	bad[7] = 'x'; /* txn "xank_3_7": its branch gids are bank_3_7_* */
	ck_assert_int_eq(coordinator_record_decode(bad, n, &d),
			 COORDINATOR_EREC_FIELD);
	memcpy(bad, buf, n);
	bad[7 + 4] = '!'; /* "bank!3_7" */
	ck_assert_int_eq(coordinator_record_decode(bad, n, &d),
			 COORDINATOR_EREC_FIELD);
	/* a branch gid of another transaction */
	memcpy(bad, buf, n);
	bad[n - 5] = '8'; /* bank_3_7_2of2 -> bank_3_8_2of2 */
	ck_assert_int_eq(coordinator_record_decode(bad, n, &d),
			 COORDINATOR_EREC_FIELD);
	/* END with branches is refused at encode time too */
	r->type = COORDINATOR_REC_END;
	ck_assert_int_eq(coordinator_record_size(r), COORDINATOR_EREC_FIELD);
	r->type = COORDINATOR_REC_BEGIN;
	snprintf(r->branches[0].gid, sizeof(r->branches[0].gid),
		 "bank_3_9_1of2");
	ck_assert_int_eq(coordinator_record_size(r), COORDINATOR_EREC_FIELD);
	unmk(r);
}
END_TEST

START_TEST(decoder_survives_failed_allocations)
{
	unsigned char buf[4096];
	struct coordinator_record *r =
				      mk(COORDINATOR_REC_COMMIT, "bank_3_7", 2),
				  *d;
	size_t n = (size_t)coordinator_record_encode(r, buf, sizeof(buf));

	for (long k = 1; k <= 2; k++) {
		mem_fail_after(k);
		ck_assert_int_eq(coordinator_record_decode(buf, n, &d),
				 -ENOMEM);
		mem_fail_reset();
	}
	unmk(r);
}
END_TEST

struct done {
	int calls, last;
};

static void on_done(void *arg, int status)
{
	struct done *d = arg;

	d->calls++;
	d->last = status;
}

static int count_rec(void *arg, const struct coordinator_record *rec)
{
	(void)rec;
	(*(int *)arg)++;
	return 0;
}

START_TEST(memlog_keeps_only_durable_records_and_compacts)
{
	struct coordinator_log log;
	struct coordinator_record *c =
	    mk(COORDINATOR_REC_COMMIT, "bank_1_1", 1);
	struct coordinator_record *e = mk(COORDINATOR_REC_END, "bank_1_1", 0);
	struct coordinator_memlog_stats st;
	struct done d = {0, 1};
	int n = 0;

	ck_assert_int_eq(coordinator_memlog_open(&log), 0);
	ck_assert_int_eq(coordinator_log_append(&log, c, true, on_done, &d), 0);
	ck_assert_int_eq(d.calls, 0); /* never inside append */
	ck_assert_int_eq(coordinator_log_append(&log, e, false, on_done, &d),
			 0);
	ck_assert_uint_eq(coordinator_memlog_flush(&log, 0), 2);
	ck_assert_int_eq(d.calls, 2);
	ck_assert_int_eq(d.last, 0);
	/* the unforced end is lost on a crash; the forced commit stays */
	coordinator_memlog_crash(&log);
	ck_assert_int_eq(coordinator_log_replay(&log, count_rec, &n), 0);
	ck_assert_int_eq(n, 1);
	/* a pending append is cancelled by the crash, and dropped */
	ck_assert_int_eq(coordinator_log_append(&log, c, true, on_done, &d), 0);
	coordinator_memlog_crash(&log);
	ck_assert_int_eq(d.calls, 3);
	ck_assert_int_eq(d.last, -ECANCELED);
	/* an injected failure reports the error and keeps nothing */
	coordinator_memlog_fail_next(&log, 1, -EIO);
	ck_assert_int_eq(coordinator_log_append(&log, c, true, on_done, &d), 0);
	coordinator_memlog_flush(&log, 0);
	ck_assert_int_eq(d.last, -EIO);
	coordinator_memlog_stats_get(&log, &st);
	ck_assert_uint_eq(st.records, 1);
	ck_assert_uint_eq(st.failed, 1);
	ck_assert_uint_eq(st.forced, 3);
	/* a checkpoint keeps its own records and drops the ones before */
	{
		struct coordinator_record ep = {.type = COORDINATOR_REC_EPOCH,
						.epoch = 5};
		struct coordinator_record *ck[2] = {&ep, c};

		n = 0;
		ck_assert_int_eq(
		    coordinator_log_append(&log, e, false, NULL, NULL), 0);
		ck_assert_int_eq(
		    coordinator_log_checkpoint(&log, ck, 2, on_done, &d), 0);
		ck_assert_int_eq(d.calls, 4);
		coordinator_memlog_flush(&log, 0);
		ck_assert_int_eq(d.calls, 5);
		ck_assert_int_eq(d.last, 0);
		ck_assert_int_eq(coordinator_log_replay(&log, count_rec, &n),
				 0);
		ck_assert_int_eq(n, 2);
		coordinator_memlog_crash(&log);
		n = 0;
		ck_assert_int_eq(coordinator_log_replay(&log, count_rec, &n),
				 0);
		ck_assert_int_eq(n, 2);
	}
	coordinator_log_close(&log);
	unmk(c);
	unmk(e);
}
END_TEST

/* Replays records into a plan. */
static struct coordinator_recovery *plan_of(struct coordinator_record **v,
					    int n)
{
	struct coordinator_recovery *r;

	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(coordinator_recovery_add(r, v[i]), 0);
	return r;
}

START_TEST(recovery_plan_from_log)
{
	struct coordinator_record ep = {.type = COORDINATOR_REC_EPOCH,
					.epoch = 4};
	struct coordinator_record *v[] = {
	    &ep,
	    mk(COORDINATOR_REC_COMMIT, "bank_4_1", 2), /* open commit */
	    mk(COORDINATOR_REC_COMMIT, "bank_4_2", 2),
	    mk(COORDINATOR_REC_END, "bank_4_2", 0),   /* finished */
	    mk(COORDINATOR_REC_BEGIN, "bank_4_3", 2), /* PN, undecided */
	    mk(COORDINATOR_REC_BEGIN, "bank_4_4", 2),
	    mk(COORDINATOR_REC_ABORT, "bank_4_4", 2),	/* PN abort, no end */
	    mk(COORDINATOR_REC_COMMIT, "other_9_1", 1), /* not ours */
	};
	int n = sizeof(v) / sizeof(v[0]);
	struct coordinator_recovery *r = plan_of(v, n);

	ck_assert_uint_eq(coordinator_recovery_last_epoch(r), 4);
	ck_assert_uint_eq(coordinator_recovery_next_epoch(r), 5);
	ck_assert_uint_eq(coordinator_recovery_count(r), 3);
	ck_assert_int_eq(coordinator_recovery_get(r, 0)->type,
			 COORDINATOR_REC_COMMIT);
	ck_assert_str_eq(coordinator_recovery_get(r, 0)->txn, "bank_4_1");
	ck_assert_str_eq(coordinator_recovery_get(r, 1)->txn, "bank_4_3");
	ck_assert_int_eq(coordinator_recovery_get(r, 2)->type,
			 COORDINATOR_REC_ABORT);
	ck_assert_ptr_null(coordinator_recovery_get(r, 3));
	ck_assert(coordinator_recovery_is_committed(r, "bank_4_2"));
	ck_assert(!coordinator_recovery_is_committed(r, "bank_4_3"));
	/* classification of prepared gids found on a resource */
	ck_assert_int_eq(coordinator_recovery_classify(r, "bank_4_1_1of2"),
			 COORDINATOR_ACT_COMMIT);
	ck_assert_int_eq(coordinator_recovery_classify(r, "bank_4_2_2of2"),
			 COORDINATOR_ACT_COMMIT);
	ck_assert_int_eq(coordinator_recovery_classify(r, "bank_4_3_1of2"),
			 COORDINATOR_ACT_ROLLBACK);
	ck_assert_int_eq(coordinator_recovery_classify(r, "bank_2_9_1of2"),
			 COORDINATOR_ACT_ROLLBACK);
	ck_assert_int_eq(coordinator_recovery_classify(r, "bank_5_1_1of2"),
			 COORDINATOR_ACT_NONE);
	ck_assert_int_eq(coordinator_recovery_classify(r, "bank_6_1_1of2"),
			 COORDINATOR_ACT_NONE);
	ck_assert_int_eq(coordinator_recovery_classify(r, "other_1_1_1of2"),
			 COORDINATOR_ACT_NONE);
	ck_assert_int_eq(coordinator_recovery_classify(r, "bank2_1_1_1of2"),
			 COORDINATOR_ACT_NONE);
	ck_assert_int_eq(coordinator_recovery_classify(r, "not a gid"),
			 COORDINATOR_ACT_NONE);
	coordinator_recovery_free(r);
	for (int i = 1; i < n; i++)
		unmk(v[i]);
}
END_TEST

START_TEST(recovery_epoch_comes_from_gids_too)
{
	struct coordinator_record *v[] = {
	    mk(COORDINATOR_REC_COMMIT, "bank_7_1", 1)};
	struct coordinator_recovery *r = plan_of(v, 1);

	/* an epoch record lost? the gids still say 7 was used */
	ck_assert_uint_eq(coordinator_recovery_next_epoch(r), 8);
	coordinator_recovery_free(r);
	unmk(v[0]);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_uint_eq(coordinator_recovery_next_epoch(r), 1);
	ck_assert_uint_eq(coordinator_recovery_count(r), 0);
	coordinator_recovery_free(r);
}
END_TEST

START_TEST(recover_redrives_commits_and_reconcile_spares_live_gids)
{
	struct coordinator_record ep = {.type = COORDINATOR_REC_EPOCH,
					.epoch = 2};
	struct coordinator_record *v[] = {
	    &ep,
	    mk(COORDINATOR_REC_COMMIT, "bank_2_1", 2),
	    mk(COORDINATOR_REC_COMMIT, "bank_2_2", 1),
	    mk(COORDINATOR_REC_END, "bank_2_2", 0),
	};
	struct coordinator_recovery *r = plan_of(v, 4);
	struct coordinator_engine_config cfg = {.cluster = "bank"};
	struct coordinator_engine *e;
	struct coordinator_fx fx;
	struct coordinator_effect *f, epochf;
	struct coordinator_txn *x;
	char id[COORDINATOR_GID_SIZE];
	const char *gids[] = {
	    "bank_2_1_1of2", /* being committed already: left alone */
	    "bank_2_3_1of2", /* older epoch, no decision: roll back */
	    "bank_2_3_2of2",  "bank_3_1_1of2", /* current epoch: live */
	    "other_1_1_1of2",		       /* other cluster */
	    "garbage",
	};

	coordinator_fx_init(&fx);
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 100, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_EPOCH);
	ck_assert_uint_eq(f->rec->epoch, 3);
	ck_assert(f->forced);
	epochf = *f;
	epochf.rec = NULL;
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  2);
	ck_assert_str_eq(
	    fx_find(&fx, COORDINATOR_FX_COMMIT_PREPARED, 1, 0)->gid,
	    "bank_2_1_2of2");
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  0);
	/* no new gid before the epoch is durable */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    COORDINATOR_ENOT_READY);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &epochf, 0, 100, &fx), 0);
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	ck_assert_str_eq(id, "bank_3_1");
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(
	    coordinator_engine_reconcile(e, r, "db1", gids, 6, 100, &fx), 2);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  2);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  0);
	ck_assert_str_eq(fx.v[0].gid, "bank_2_3_1of2");
	ck_assert_str_eq(fx.v[0].resource, "db1");
	x = coordinator_table_find(coordinator_engine_table(e), "bank_2_3");
	ck_assert_ptr_nonnull(x);
	ck_assert(x->recovered);
	ck_assert_int_eq(x->state, COORDINATOR_TXN_ABORTING);
	/* the same list again issues nothing new */
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(
	    coordinator_engine_reconcile(e, r, "db1", gids, 6, 100, &fx), 0);
	/* finishing: the recovered commit ends with an unforced END */
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED,
				 "bank_2_1", 0, COORDINATOR_ST_NOT_FOUND, 110,
				 &fx),
			 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED,
				 "bank_2_1", 1, COORDINATOR_ST_OK, 110, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_END);
	ck_assert(!f->forced);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 0);
	coordinator_fx_clear(&fx);
	/* the orphan rollbacks finish without any log write (presumed abort) */
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED,
				 "bank_2_3", 0, COORDINATOR_ST_OK, 110, &fx),
			 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED,
				 "bank_2_3", 1, COORDINATOR_ST_OK, 110, &fx),
			 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(x->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
	coordinator_recovery_free(r);
	for (int i = 1; i < 4; i++)
		unmk(v[i]);
}
END_TEST

/* Begins a 2-branch txn whose statements ran and whose branch 1 voted
 * no: it aborts while branch 2's PREPARE is still out.  id gets its id. */
static void begin_aborting(struct coordinator_engine *e,
			   struct coordinator_fx *fx, char *id)
{
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, fx, id), 0);
	for (int i = 0; i < 2; i++)
		feed_ran(e, id, i, COORDINATOR_ST_OK, NULL, NULL, fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_NO, fx), 0);
}

START_TEST(reconcile_rolls_back_a_late_prepare_of_an_aborted_txn)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	char id[COORDINATOR_GID_SIZE], gid[COORDINATOR_GID_SIZE + 8];
	const char *gids[1] = {gid};

	begin_aborting(e, &fx, id);
	snprintf(gid, sizeof(gid), "%s_2of2", id);
	coordinator_fx_clear(&fx);
	/* branch 2's PREPARE is still outstanding: live, left alone */
	ck_assert_int_eq(
	    coordinator_engine_reconcile(e, NULL, "r2", gids, 1, 50, &fx), 0);
	/* its answer got lost; the rollback said 42704; then it landed */
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_LOST, &fx), 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 1,
				 COORDINATOR_ST_NOT_FOUND, 60, &fx),
			 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(
	    coordinator_engine_reconcile(e, NULL, "r2", gids, 1, 70, &fx), 1);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 1, 0));
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

/* The same late PREPARE after its transaction finished and was pruned
 * from the table: still rolled back (the gid was handed out in this
 * epoch); a gid of this epoch not handed out yet is left alone. */
START_TEST(reconcile_rolls_back_a_late_prepare_after_the_txn_is_pruned)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	char id[COORDINATOR_GID_SIZE], gid[COORDINATOR_GID_SIZE + 8];
	char unborn[COORDINATOR_GID_SIZE + 8];
	const char *gids[2] = {gid, unborn};
	struct coordinator_gid g;
	struct coordinator_effect *f;

	begin_aborting(e, &fx, id);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_LOST, &fx), 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 1,
				 COORDINATOR_ST_NOT_FOUND, 60, &fx),
			 0);
	ck_assert_int_eq(
	    coordinator_table_find(coordinator_engine_table(e), id)->state,
	    COORDINATOR_TXN_DONE);
	ck_assert_uint_eq(coordinator_engine_prune(e, 100000, 1000, 0), 1);
	ck_assert_ptr_null(
	    coordinator_table_find(coordinator_engine_table(e), id));
	coordinator_fx_clear(&fx);

	snprintf(gid, sizeof(gid), "%s_2of2", id);
	ck_assert_int_eq(coordinator_gid_parse(gid, &g), 0);
	g.seq += 1000;
	ck_assert_int_eq(coordinator_gid_format(&g, unborn, sizeof(unborn)), 0);
	ck_assert_int_eq(
	    coordinator_engine_reconcile(e, NULL, "r2", gids, 2, 100010, &fx),
	    1);
	/* Adopted anew with the one branch it was shown, and rolled back. */
	f = fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_str_eq(f->gid, gid);
	ck_assert_str_eq(f->resource, "r2");
	ck_assert_uint_eq(
	    coordinator_fx_count(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, false),
	    1);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(idempotency_key_survives_a_restart)
{
	struct coordinator_log log;
	struct coordinator_recovery *r;
	struct coordinator_engine_config cfg = {.cluster = "bank"};
	struct coordinator_engine *e;
	struct coordinator_fx fx;
	struct coordinator_effect *f;
	struct coordinator_record *v[] = {
	    mk(COORDINATOR_REC_COMMIT, "bank_1_1", 2),
	    mk(COORDINATOR_REC_END, "bank_1_1", 0),
	    mk(COORDINATOR_REC_COMMIT, "bank_1_2", 1),
	};
	char id[COORDINATOR_GID_SIZE];

	snprintf(v[0]->key, sizeof(v[0]->key), "done-key");
	snprintf(v[2]->key, sizeof(v[2]->key), "open-key");
	ck_assert_int_eq(coordinator_memlog_open(&log), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(
		    coordinator_log_append(&log, v[i], true, NULL, NULL), 0);
	coordinator_memlog_flush(&log, 0);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_recovery_replay(r, &log), 0);
	coordinator_fx_init(&fx);
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 5, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_int_eq(feed_log(e, f, 0, 5, &fx), 0);
	coordinator_fx_clear(&fx);
	/* a retry of the finished commit runs nothing and hears "committed" */
	ck_assert_int_eq(begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, "done-key", 9,
				 NULL, &fx, id),
			 COORDINATOR_BEGIN_EXISTING);
	ck_assert_str_eq(id, "bank_1_1");
	ck_assert_uint_eq(fx.n, 1);
	ck_assert_int_eq(fx.v[0].reply->outcome, COORDINATOR_OUTCOME_COMMITTED);
	coordinator_fx_clear(&fx);
	/* a retry of the one being re-driven waits for it... it is known */
	ck_assert_int_eq(begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, "open-key", 9,
				 NULL, &fx, id),
			 COORDINATOR_BEGIN_EXISTING);
	ck_assert_str_eq(id, "bank_1_2");
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, "new-key", 9,
				 NULL, &fx, id),
			 0);
	ck_assert_str_eq(id, "bank_2_1");
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
	coordinator_recovery_free(r);
	coordinator_log_close(&log);
	for (int i = 0; i < 3; i++)
		unmk(v[i]);
}
END_TEST

START_TEST(raft_mode_finishes_fully_prepared_orphans)
{
	struct coordinator_record ep = {.type = COORDINATOR_REC_EPOCH,
					.epoch = 1};
	struct coordinator_record *ab =
	    mk(COORDINATOR_REC_ABORT, "bank_1_3", 2);
	struct coordinator_record *v[] = {&ep, ab};
	struct coordinator_recovery *r = plan_of(v, 2);
	struct coordinator_prepared items[] = {
	    {"db1", "bank_1_1_1of2"},
	    {"db2", "bank_1_1_2of2"}, /* all: finish */
	    {"db1", "bank_1_2_1of2"}, /* partial */
	    {"db1", "bank_1_3_1of2"},
	    {"db2", "bank_1_3_2of2"}, /* aborted */
	    {"db1", "bank_2_1_1of2"},
	    {"db2", "bank_2_1_2of2"}, /* current */
	};
	enum coordinator_action act[7];
	struct coordinator_engine_config cfg = {.cluster = "bank",
						.log_aborts = true};
	struct coordinator_engine *e;
	struct coordinator_fx fx;
	struct coordinator_effect *f, logs[4];
	size_t nlogs = 0;

	ck_assert_int_eq(coordinator_recovery_plan(r, items, 7, true, act), 0);
	ck_assert_int_eq(act[0], COORDINATOR_ACT_FINISH);
	ck_assert_int_eq(act[1], COORDINATOR_ACT_FINISH);
	ck_assert_int_eq(act[2], COORDINATOR_ACT_ROLLBACK);
	ck_assert_int_eq(act[3], COORDINATOR_ACT_ROLLBACK);
	ck_assert_int_eq(act[5], COORDINATOR_ACT_NONE);
	ck_assert_int_eq(coordinator_recovery_plan(r, items, 7, false, act), 0);
	ck_assert_int_eq(act[0], COORDINATOR_ACT_ROLLBACK);

	coordinator_fx_init(&fx);
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 10, &fx), 0);
	/* the logged abort is re-driven at once */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  2);
	coordinator_fx_clear(&fx);
	ck_assert_int_gt(coordinator_engine_resolve(e, r, items, 7, 10, &fx),
			 0);
	/* finish: a forced COMMIT before any COMMIT PREPARED; the partial
	 * orphan: a forced ABORT before its rollback */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  0);
	for (size_t i = 0; i < fx.n; i++) {
		if (fx.v[i].type != COORDINATOR_FX_LOG)
			continue;
		ck_assert(fx.v[i].forced);
		ck_assert_uint_lt(nlogs, 4);
		logs[nlogs] = fx.v[i];
		logs[nlogs].rec = NULL;
		if (fx.v[i].rec->type == COORDINATOR_REC_COMMIT) {
			ck_assert_str_eq(fx.v[i].txn, "bank_1_1");
			ck_assert_uint_eq(fx.v[i].rec->nbranches, 2);
		} else {
			ck_assert_int_eq(fx.v[i].rec->type,
					 COORDINATOR_REC_ABORT);
			ck_assert_str_eq(fx.v[i].txn, "bank_1_2");
		}
		nlogs++;
	}
	ck_assert_uint_eq(nlogs, 2);
	coordinator_fx_clear(&fx);
	for (size_t i = 0; i < nlogs; i++)
		ck_assert_int_eq(feed_log(e, &logs[i], 0, 20, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  2);
	f = fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_str_eq(f->gid, "bank_1_2_1of2");
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
	coordinator_recovery_free(r);
	unmk(ab);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    records_round_trip,
	    record_decoder_is_strict,
	    decoder_survives_failed_allocations,
	    memlog_keeps_only_durable_records_and_compacts,
	    recovery_plan_from_log,
	    recovery_epoch_comes_from_gids_too,
	    recover_redrives_commits_and_reconcile_spares_live_gids,
	    reconcile_rolls_back_a_late_prepare_of_an_aborted_txn,
	    reconcile_rolls_back_a_late_prepare_after_the_txn_is_pruned,
	    idempotency_key_survives_a_restart,
	    raft_mode_finishes_fully_prepared_orphans,
	    NULL,
	};

	return suite_main("coordinator_log", 0, tests);
}
