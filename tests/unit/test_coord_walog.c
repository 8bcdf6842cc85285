/* test_coord_walog.c - the local decision log on wal/ (in-memory storage,
 * manual mode): durability of forced and unforced records across a power
 * loss, failure handling, and an engine's commit recovered from it. */
#include "test_coord_harness.h"
#include "tests/lib/suite.h"
#include "wal/wal.h"

#include <errno.h>
#include <stdlib.h>

struct done {
	int calls, last;
};

static void on_done(void *arg, int status)
{
	struct done *d = arg;

	d->calls++;
	d->last = status;
}

static struct coordinator_log open_log(struct wal_storage *st)
{
	struct wal_config cfg;
	struct coordinator_log log;

	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.segment_size = 64 * 1024;
	ck_assert_int_eq(coordinator_walog_open(&cfg, &log, NULL), 0);
	ck_assert_ptr_nonnull(coordinator_walog_wal(&log));
	return log;
}

static struct coordinator_record rec(enum coordinator_rec_type t,
				     const char *txn,
				     struct coordinator_rec_branch *br,
				     size_t n)
{
	struct coordinator_record r;

	memset(&r, 0, sizeof(r));
	r.type = t;
	r.protocol = COORDINATOR_PROTO_2PC_PA;
	snprintf(r.txn, sizeof(r.txn), "%s", txn);
	r.branches = br;
	r.nbranches = n;
	return r;
}

static int add_rec(void *arg, const struct coordinator_record *r)
{
	return coordinator_recovery_add(arg, r);
}

START_TEST(forced_records_survive_power_loss_unforced_may_not)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct coordinator_log log = open_log(st);
	struct coordinator_rec_branch br[2] = {{"db1", "bank_1_1_1of2"},
					       {"db2", "bank_1_1_2of2"}};
	struct coordinator_record ep = {.type = COORDINATOR_REC_EPOCH,
					.epoch = 1};
	struct coordinator_record c =
	    rec(COORDINATOR_REC_COMMIT, "bank_1_1", br, 2);
	struct coordinator_record e =
	    rec(COORDINATOR_REC_END, "bank_1_1", NULL, 0);
	struct coordinator_recovery *r;
	struct done d = {0, 1};

	ck_assert_int_eq(coordinator_log_append(&log, &ep, true, on_done, &d),
			 0);
	ck_assert_int_eq(coordinator_log_append(&log, &c, true, on_done, &d),
			 0);
	ck_assert_int_eq(d.calls, 0);
	ck_assert_int_gt(wal_step(coordinator_walog_wal(&log)), 0);
	ck_assert_int_eq(d.calls, 2);
	ck_assert_int_eq(d.last, 0);
	ck_assert_int_eq(coordinator_log_append(&log, &e, false, on_done, &d),
			 0);
	wal_step(coordinator_walog_wal(&log));
	ck_assert_int_eq(d.calls, 3);
	/* power loss: the unforced END is gone, the COMMIT is not */
	wal_mem_storage_crash(st);
	coordinator_log_close(&log);
	log = open_log(st);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_recovery_replay(r, &log), 0);
	ck_assert_uint_eq(coordinator_recovery_next_epoch(r), 2);
	ck_assert_uint_eq(coordinator_recovery_count(r), 1);
	ck_assert_str_eq(coordinator_recovery_get(r, 0)->branches[1].gid,
			 "bank_1_1_2of2");
	coordinator_recovery_free(r);
	/* the same log replayed through the generic record walker */
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_log_replay(&log, add_rec, r), 0);
	ck_assert_uint_eq(coordinator_recovery_count(r), 1);
	coordinator_recovery_free(r);
	coordinator_log_close(&log);
	wal_mem_storage_free(st);
}
END_TEST

START_TEST(failed_sync_fails_the_log_for_good)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct coordinator_log log = open_log(st);
	struct coordinator_record ep = {.type = COORDINATOR_REC_EPOCH,
					.epoch = 1};
	struct done d = {0, 1};
	int rc;

	wal_mem_storage_fail(st, WAL_MEM_OP_SYNC, 1, -EIO, false);
	ck_assert_int_eq(coordinator_log_append(&log, &ep, true, on_done, &d),
			 0);
	wal_step(coordinator_walog_wal(&log));
	ck_assert_int_eq(d.calls, 1);
	ck_assert_int_lt(d.last, 0);
	rc = coordinator_log_append(&log, &ep, true, on_done, &d);
	ck_assert_int_lt(rc, 0);
	ck_assert_str_ne(coordinator_strerror(rc), "unknown error");
	ck_assert_int_eq(d.calls, 1); /* refused: no callback */
	coordinator_log_close(&log);
	wal_mem_storage_free(st);
}
END_TEST

/* Executes the log effects of fx on log, feeding completions back. */
struct ctx {
	struct coordinator_engine *e;
	struct coordinator_fx *out;
	char txn[COORDINATOR_GID_SIZE];
	uint64_t token;
};

static void on_engine_log(void *arg, int status)
{
	struct ctx *c = arg;
	struct coordinator_event ev = ev_make(COORDINATOR_EV_LOG, c->txn, -1);

	ev.token = c->token;
	ev.log_status = status;
	coordinator_engine_step(c->e, &ev, 50, c->out);
	free(c);
}

static int run_logs(struct coordinator_engine *e, struct coordinator_log *log,
		    struct coordinator_fx *fx, struct coordinator_fx *out)
{
	int forced = 0;

	for (size_t i = 0; i < fx->n; i++) {
		struct ctx *c;

		if (fx->v[i].type != COORDINATOR_FX_LOG)
			continue;
		c = calloc(1, sizeof(*c));
		c->e = e;
		c->out = out;
		memcpy(c->txn, fx->v[i].txn, sizeof(c->txn));
		c->token = fx->v[i].token;
		forced += fx->v[i].forced;
		ck_assert_int_eq(coordinator_log_append(log, fx->v[i].rec,
							fx->v[i].forced,
							on_engine_log, c),
				 0);
	}
	wal_step(coordinator_walog_wal(log));
	return forced;
}

START_TEST(engine_commit_through_the_wal_is_redriven_after_power_loss)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct coordinator_log log = open_log(st);
	struct coordinator_engine_config cfg = {.cluster = "bank"};
	struct coordinator_engine *e;
	struct coordinator_recovery *r;
	struct coordinator_fx fx, out;
	struct wal_stats ws;
	char id[COORDINATOR_GID_SIZE];

	coordinator_fx_init(&fx);
	coordinator_fx_init(&out);
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_recovery_replay(r, &log), 0);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 0, &fx), 0);
	coordinator_recovery_free(r);
	run_logs(e, &log, &fx, &out);
	coordinator_fx_clear(&fx);
	ck_assert(coordinator_table_is_ready(coordinator_engine_table(e)));
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	coordinator_fx_clear(&fx);
	for (int i = 0; i < 2; i++)
		feed_ran(e, id, i, COORDINATOR_ST_OK, NULL, NULL, &fx);
	coordinator_fx_clear(&fx);
	feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx);
	feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx);
	ck_assert_int_eq(run_logs(e, &log, &fx, &out), 1);
	coordinator_fx_clear(&fx);
	/* durable: the client hears committed, COMMIT PREPARED goes out */
	ck_assert_int_eq(
	    fx_find(&out, COORDINATOR_FX_REPLY, -2, 0)->reply->outcome,
	    COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_uint_eq(fx_count_type(&out, COORDINATOR_FX_COMMIT_PREPARED),
			  2);
	coordinator_fx_clear(&out);
	wal_stats_get(coordinator_walog_wal(&log), &ws);
	ck_assert_uint_eq(ws.syncs, 2); /* epoch, decision */
	/* power loss before phase 2 */
	coordinator_engine_free(e);
	coordinator_log_close(&log);
	wal_mem_storage_crash(st);
	log = open_log(st);
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_recovery_replay(r, &log), 0);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 100, &fx), 0);
	coordinator_recovery_free(r);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  2);
	ck_assert_str_eq(
	    fx_find(&fx, COORDINATOR_FX_COMMIT_PREPARED, 0, 0)->gid,
	    "bank_1_1_1of2");
	ck_assert_uint_eq(fx_find(&fx, COORDINATOR_FX_LOG, -2, 0)->rec->epoch,
			  2);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
	coordinator_log_close(&log);
	wal_mem_storage_free(st);
}
END_TEST

START_TEST(checkpoint_shrinks_the_wal_and_keeps_what_recovery_needs)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct coordinator_log log = open_log(st);
	struct coordinator_engine_config cfg = {.cluster = "bank"};
	struct coordinator_engine *e;
	struct coordinator_recovery *r;
	struct coordinator_fx fx, out;
	struct coordinator_record **recs;
	struct done d = {0, 1};
	char id[COORDINATOR_GID_SIZE], open_id[COORDINATOR_GID_SIZE];
	uint64_t first;
	size_t n;

	coordinator_fx_init(&fx);
	coordinator_fx_init(&out);
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 0, &fx), 0);
	coordinator_recovery_free(r);
	run_logs(e, &log, &fx, &out);
	coordinator_fx_clear(&fx);
	/* ten finished commits, one with a key, and one left in phase 2 */
	for (int t = 0; t < 11; t++) {
		ck_assert_int_eq(begin_n(e, 2, COORDINATOR_PROTO_DEFAULT,
					 t == 3 ? "kept-key" : NULL, 1, NULL,
					 &fx, id),
				 0);
		coordinator_fx_clear(&fx);
		for (int i = 0; i < 2; i++)
			feed_ran(e, id, i, COORDINATOR_ST_OK, NULL, NULL, &fx);
		coordinator_fx_clear(&fx);
		feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx);
		feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx);
		run_logs(e, &log, &fx, &out);
		coordinator_fx_clear(&fx);
		if (t == 10) {
			memcpy(open_id, id, sizeof(id));
			break;
		}
		for (int i = 0; i < 2; i++)
			feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED, id, i,
				COORDINATOR_ST_OK, 60, &fx);
		run_logs(e, &log, &fx, &out);
		coordinator_fx_clear(&fx);
	}
	coordinator_fx_clear(&out);
	ck_assert_int_eq(coordinator_engine_snapshot(e, &recs, &n), 0);
	/* epoch; the open commit; the keyed one's commit and end */
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(recs[0]->type, COORDINATOR_REC_EPOCH);
	ck_assert_int_eq(recs[1]->type, COORDINATOR_REC_COMMIT);
	ck_assert_str_eq(recs[1]->key, "kept-key");
	ck_assert_int_eq(recs[2]->type, COORDINATOR_REC_END);
	ck_assert_str_eq(recs[3]->txn, open_id);
	ck_assert_uint_eq(recs[3]->nbranches, 2);
	ck_assert_int_eq(coordinator_log_checkpoint(&log, recs, n, on_done, &d),
			 0);
	coordinator_records_free(recs, n);
	first = wal_first_lsn(coordinator_walog_wal(&log));
	while (d.calls == 0)
		ck_assert_int_ge(wal_step(coordinator_walog_wal(&log)), 0);
	ck_assert_int_eq(d.last, 0);
	ck_assert_uint_gt(wal_first_lsn(coordinator_walog_wal(&log)),
			  first + 20);
	/* power loss; the compacted log recovers the same state */
	coordinator_engine_free(e);
	coordinator_log_close(&log);
	wal_mem_storage_crash(st);
	log = open_log(st);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_recovery_replay(r, &log), 0);
	ck_assert_uint_eq(coordinator_recovery_next_epoch(r), 2);
	ck_assert_uint_eq(coordinator_recovery_count(r), 1);
	ck_assert_str_eq(coordinator_recovery_get(r, 0)->txn, open_id);
	ck_assert(coordinator_recovery_is_committed(r, "bank_1_4"));
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 100, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  2);
	ck_assert_ptr_nonnull(coordinator_table_find_key(
	    coordinator_engine_table(e), "kept-key"));
	coordinator_fx_clear(&fx);
	coordinator_recovery_free(r);
	coordinator_engine_free(e);
	coordinator_log_close(&log);
	wal_mem_storage_free(st);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    forced_records_survive_power_loss_unforced_may_not,
	    failed_sync_fails_the_log_for_good,
	    engine_commit_through_the_wal_is_redriven_after_power_loss,
	    checkpoint_shrinks_the_wal_and_keeps_what_recovery_needs,
	    NULL,
	};

	return suite_main("coordinator_walog", 0, tests);
}
