/* test_coord_engine.c - the pure 2PC engine, one protocol path per test:
 * effects emitted, forced writes counted against DESIGN.md section 6. */
#include "test_coord_harness.h"
#include "tests/lib/suite.h"

#include <errno.h>
#include <stdlib.h>

/* Runs statements ok on every branch of id (n branches). */
static void all_ran(struct coordinator_engine *e, const char *id, int n,
		    struct coordinator_fx *fx)
{
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(
		    feed_ran(e, id, i, COORDINATOR_ST_OK, NULL, NULL, fx), 0);
}

static struct coordinator_txn *txn(struct coordinator_engine *e, const char *id)
{
	struct coordinator_txn *x =
	    coordinator_table_find(coordinator_engine_table(e), id);

	ck_assert_ptr_nonnull(x);
	return x;
}

START_TEST(two_branches_commit_with_one_forced_write)
{
	struct coordinator_fx fx, all;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, logf;
	char id[COORDINATOR_GID_SIZE];

	coordinator_fx_init(&all);
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 7, NULL, &fx, id),
	    0);
	ck_assert_str_eq(id, "bank_1_1");
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_RUN), 2);
	ck_assert_str_eq(fx_find(&fx, COORDINATOR_FX_RUN, 1, 0)->resource,
			 "r2");
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_SET_TIMER), 1);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_ACTIVE);
	coordinator_fx_clear(&fx);
	all_ran(e, id, 2, &fx);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 2);
	ck_assert_str_eq(fx_find(&fx, COORDINATOR_FX_PREPARE, 0, 0)->gid,
			 "bank_1_1_1of2");
	ck_assert_str_eq(fx_find(&fx, COORDINATOR_FX_PREPARE, 1, 0)->gid,
			 "bank_1_1_2of2");
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_PREPARING);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_uint_eq(fx.n, 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert(f->forced);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_COMMIT);
	ck_assert_uint_eq(f->rec->nbranches, 2);
	ck_assert_str_eq(f->rec->branches[1].gid, "bank_1_1_2of2");
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_CANCEL_TIMER), 1);
	/* not committed for the client until durable */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  0);
	logf = *f;
	logf.rec = NULL;
	ck_assert_uint_eq(coordinator_fx_count(&fx, COORDINATOR_FX_LOG, true),
			  1);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, 30, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->reply->client, 7);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_str_eq(f->reply->txn, id);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  2);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 40, &fx),
			 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED, id, 1,
				 COORDINATOR_ST_OK, 40, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert(!f->forced);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_END);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	ck_assert_int_eq(txn(e, id)->outcome, COORDINATOR_OUTCOME_COMMITTED);
	coordinator_fx_clear(&fx);
	coordinator_fx_clear(&all);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(statement_error_aborts_naming_the_branch)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 3, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_ran(e, id, 0, COORDINATOR_ST_OK, NULL, NULL, &fx),
			 0);
	ck_assert_int_eq(
	    feed_ran(e, id, 1, COORDINATOR_ST_ERROR, "23505",
		     "duplicate key value violates unique constraint", &fx),
	    0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(f->reply->error, COORDINATOR_ESTATEMENT);
	ck_assert_int_eq(f->reply->err_branch, 1);
	ck_assert_str_eq(f->reply->sqlstate, "23505");
	ck_assert_ptr_nonnull(strstr(f->reply->errmsg, "branch 2 (r2)"));
	ck_assert_ptr_nonnull(strstr(f->reply->errmsg, "23505 duplicate key"));
	/* every open local txn rolled back, nothing prepared, nothing logged */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_LOCAL), 3);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	/* the third branch's late answer changes nothing */
	ck_assert_int_eq(feed_ran(e, id, 2, COORDINATOR_ST_OK, NULL, NULL, &fx),
			 COORDINATOR_ESTALE);
	ck_assert_uint_eq(fx.n, 0);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(no_vote_aborts_without_any_log_write)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_2PC_PA, &fx);
	struct coordinator_effect *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 2, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_NO, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(f->reply->error, COORDINATOR_EVOTE_NO);
	ck_assert_ptr_nonnull(strstr(f->reply->errmsg, "40001"));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  1);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 0, 0));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_ABORTING);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 30, &fx),
			 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(prepare_timeout_aborts_txn)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect timer, *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	timer = *fx_find(&fx, COORDINATOR_FX_SET_TIMER, -1, 0);
	ck_assert_uint_eq(timer.at, 1000);
	all_ran(e, id, 2, &fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_timer(e, &timer, 1000, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(f->reply->error, COORDINATOR_ETIMEOUT);
	ck_assert_int_eq(f->reply->err_branch, 1);
	/* the yes branch and the silent one may both be prepared */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  2);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	coordinator_fx_clear(&fx);
	/* the late yes is stale: the branch is already being rolled back */
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx),
			 COORDINATOR_ESTALE);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 1001, &fx),
			 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 1,
				 COORDINATOR_ST_NOT_FOUND, 1001, &fx),
			 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	/* the timer, fired again, is stale */
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_timer(e, &timer, 1002, &fx), COORDINATOR_ESTALE);
	ck_assert_uint_eq(fx.n, 0);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(statement_timeout_aborts_and_rolls_back_locally)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect timer, *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	timer = *fx_find(&fx, COORDINATOR_FX_SET_TIMER, -1, 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_timer(e, &timer, 1000, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->error, COORDINATOR_ETIMEOUT);
	ck_assert_ptr_nonnull(strstr(f->reply->errmsg, "branch 1 (r1)"));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_LOCAL), 2);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(lost_prepare_answer_issues_rollback_prepared)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, timer;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 3, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	timer = *fx_find(&fx, COORDINATOR_FX_SET_TIMER, -1, 0);
	all_ran(e, id, 3, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_LOST, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->error, COORDINATOR_EPREPARE_LOST);
	ck_assert_int_eq(f->reply->err_branch, 1);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 1, 0));
	/* branches 0 and 2 still have PREPARE outstanding: wait for them */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  1);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 0, 0));
	coordinator_fx_clear(&fx);
	/* branch 2 never answers: the phase timer gives up on it */
	ck_assert_int_eq(feed_timer(e, &timer, 1000, &fx), 0);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 2, 0));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 0);
	coordinator_fx_clear(&fx);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED,
					 id, i,
					 i == 0 ? COORDINATOR_ST_OK
						: COORDINATOR_ST_NOT_FOUND,
					 1001, &fx),
				 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(single_branch_commits_one_phase_without_log)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_2PC_PN, &fx);
	struct coordinator_effect *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 1, &fx);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_ONE_PHASE),
			  1);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_ONE_PHASE, id, 0,
				 COORDINATOR_ST_OK, 20, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);

	/* a failed COMMIT aborts; a lost answer is an unknown outcome */
	ck_assert_int_eq(
	    begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 1, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_ONE_PHASE, id, 0,
				 COORDINATOR_ST_ERROR, 20, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(f->reply->error, COORDINATOR_ECOMMIT_FAILED);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(
	    begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 1, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_ONE_PHASE, id, 0,
				 COORDINATOR_ST_LOST, 20, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_UNKNOWN);
	ck_assert_int_eq(f->reply->error, COORDINATOR_ECOMMIT_UNKNOWN);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(read_only_branches_leave_after_phase_one)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, logf;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 3, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 3, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_READ_ONLY, &fx),
			 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_int_eq(feed_vote(e, id, 2, COORDINATOR_VOTE_READ_ONLY, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_uint_eq(f->rec->nbranches, 1);
	ck_assert_str_eq(f->rec->branches[0].gid, "bank_1_1_2of3");
	logf = *f;
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, 30, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  1);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_COMMIT_PREPARED, 1, 0));
	coordinator_fx_clear(&fx);

	/* all read-only: committed at once, nothing written (PA) */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 2, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_READ_ONLY, &fx),
			 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_READ_ONLY, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

/* Drives a 2-branch txn to the end with the given votes, completing every
 * log write and phase-2 operation; returns forced and total log writes. */
static void run_votes(struct coordinator_engine *e, enum coordinator_protocol p,
		      const enum coordinator_hint *hints,
		      enum coordinator_vote v0, enum coordinator_vote v1,
		      int *forced, int *total, enum coordinator_outcome *out)
{
	struct coordinator_fx fx, next;
	char id[COORDINATOR_GID_SIZE];
	bool voted = false;
	int guard = 0;

	coordinator_fx_init(&fx);
	*forced = *total = 0;
	*out = COORDINATOR_OUTCOME_PENDING;
	ck_assert_int_eq(begin_n(e, 2, p, NULL, 1, hints, &fx, id), 0);
	while (fx.n > 0 && guard++ < 50) {
		coordinator_fx_init(&next);
		for (size_t i = 0; i < fx.n; i++) {
			struct coordinator_effect *f = &fx.v[i];
			enum coordinator_ev_type t;

			switch (f->type) {
			case COORDINATOR_FX_RUN:
				feed_ran(e, id, f->branch, COORDINATOR_ST_OK,
					 NULL, NULL, &next);
				break;
			case COORDINATOR_FX_PREPARE:
				if (!voted && f->branch == 1) {
					voted = true;
					feed_vote(e, id, 0, v0, &next);
					feed_vote(e, id, 1, v1, &next);
				}
				break;
			case COORDINATOR_FX_LOG:
				(*total)++;
				*forced += f->forced;
				feed_log(e, f, 0, 50, &next);
				break;
			case COORDINATOR_FX_COMMIT_PREPARED:
			case COORDINATOR_FX_ROLLBACK_PREPARED:
				t = f->type == COORDINATOR_FX_COMMIT_PREPARED
					? COORDINATOR_EV_COMMITTED_PREPARED
					: COORDINATOR_EV_ROLLED_BACK_PREPARED;
				feed_p2(e, t, id, f->branch, COORDINATOR_ST_OK,
					60, &next);
				break;
			case COORDINATOR_FX_REPLY:
				ck_assert_int_eq(*out,
						 COORDINATOR_OUTCOME_PENDING);
				*out = f->reply->outcome;
				break;
			default:
				break;
			}
		}
		coordinator_fx_clear(&fx);
		fx = next;
	}
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
}

START_TEST(forced_writes_match_the_design_table)
{
	static const enum coordinator_hint ro[2] = {COORDINATOR_HINT_READ_ONLY,
						    COORDINATOR_HINT_READ_ONLY};
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	enum coordinator_outcome out;
	int forced, total;

	/* 2PC-PA commit: forced decision, unforced end */
	run_votes(e, COORDINATOR_PROTO_2PC_PA, NULL, COORDINATOR_VOTE_YES,
		  COORDINATOR_VOTE_YES, &forced, &total, &out);
	ck_assert_int_eq(out, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_int_eq(forced, 1);
	ck_assert_int_eq(total, 2);
	/* 2PC-PA abort: nothing */
	run_votes(e, COORDINATOR_PROTO_2PC_PA, NULL, COORDINATOR_VOTE_YES,
		  COORDINATOR_VOTE_NO, &forced, &total, &out);
	ck_assert_int_eq(out, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(forced, 0);
	ck_assert_int_eq(total, 0);
	/* 2PC-PN commit: forced begin, forced decision, unforced end */
	run_votes(e, COORDINATOR_PROTO_2PC_PN, NULL, COORDINATOR_VOTE_YES,
		  COORDINATOR_VOTE_YES, &forced, &total, &out);
	ck_assert_int_eq(out, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_int_eq(forced, 2);
	ck_assert_int_eq(total, 3);
	/* 2PC-PN abort: forced begin, forced decision, unforced end */
	run_votes(e, COORDINATOR_PROTO_2PC_PN, NULL, COORDINATOR_VOTE_NO,
		  COORDINATOR_VOTE_YES, &forced, &total, &out);
	ck_assert_int_eq(out, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(forced, 2);
	ck_assert_int_eq(total, 3);
	/* all read-only: nothing under PA; nothing under PN when hinted */
	run_votes(e, COORDINATOR_PROTO_2PC_PA, NULL, COORDINATOR_VOTE_READ_ONLY,
		  COORDINATOR_VOTE_READ_ONLY, &forced, &total, &out);
	ck_assert_int_eq(out, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_int_eq(total, 0);
	run_votes(e, COORDINATOR_PROTO_2PC_PN, ro, COORDINATOR_VOTE_READ_ONLY,
		  COORDINATOR_VOTE_READ_ONLY, &forced, &total, &out);
	ck_assert_int_eq(out, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_int_eq(total, 0);
	/* PN, hinted read-only but one branch wrote: the decision is forced */
	run_votes(e, COORDINATOR_PROTO_2PC_PN, ro, COORDINATOR_VOTE_READ_ONLY,
		  COORDINATOR_VOTE_YES, &forced, &total, &out);
	ck_assert_int_eq(out, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_int_eq(forced, 1);
	ck_assert_int_eq(total, 2);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(pn_waits_for_forced_begin_and_abort)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_2PC_PN, &fx);
	struct coordinator_effect *f, logf;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 2, &fx);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_BEGIN);
	ck_assert(f->forced);
	ck_assert_uint_eq(f->rec->nbranches, 2);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 0);
	logf = *f;
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, 20, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 2);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_NO, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_ABORT);
	ck_assert(f->forced);
	/* nothing undone or told before the abort is durable */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  0);
	logf = *f;
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, 30, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 1);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 0, 0));
	coordinator_fx_clear(&fx);
	/* a statement error before BEGIN was written writes nothing */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	ck_assert_int_eq(feed_ran(e, id, 0, COORDINATOR_ST_ERROR, "22012",
				  "division by zero", &fx),
			 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 1);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(phase_two_retries_with_backoff_and_42704_counts_as_done)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, logf, t;
	char id[COORDINATOR_GID_SIZE];
	uint64_t now = 100;

	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 2, &fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx), 0);
	logf = *fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, now, &fx), 0);
	coordinator_fx_clear(&fx);
	/* branch 0 commits; branch 1 fails three times, then 42704 */
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED, id, 0,
				 COORDINATOR_ST_OK, now, &fx),
			 0);
	for (int k = 0; k < 4; k++) {
		static const uint64_t want[] = {10, 20, 40, 40};

		coordinator_fx_clear(&fx);
		ck_assert_int_eq(
		    feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED, id, 1,
			    k % 2 ? COORDINATOR_ST_LOST : COORDINATOR_ST_ERROR,
			    now, &fx),
		    0);
		f = fx_find(&fx, COORDINATOR_FX_SET_TIMER, 1, 0);
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(f->at, now + want[k]);
		ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_IN_DOUBT);
		ck_assert_uint_eq(
		    coordinator_table_count(coordinator_engine_table(e),
					    COORDINATOR_TXN_IN_DOUBT),
		    1);
		ck_assert_uint_eq(coordinator_engine_oldest_prepared_ms(e, now),
				  now - 10);
		ck_assert_uint_eq(
		    fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED), 0);
		t = *f;
		now += want[k];
		coordinator_fx_clear(&fx);
		ck_assert_int_eq(feed_timer(e, &t, now, &fx), 0);
		ck_assert_ptr_nonnull(
		    fx_find(&fx, COORDINATOR_FX_COMMIT_PREPARED, 1, 0));
		ck_assert_uint_eq(
		    fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED), 0);
	}
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED, id, 1,
				 COORDINATOR_ST_NOT_FOUND, now, &fx),
			 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	ck_assert_int_eq(txn(e, id)->branches[1].state,
			 COORDINATOR_BR_COMMITTED);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_END);
	ck_assert_uint_eq(coordinator_engine_oldest_prepared_ms(e, now + 5), 0);
	/* done txns are kept for lookups, then pruned */
	ck_assert_uint_eq(coordinator_engine_prune(e, now + 10, 60000, 0), 0);
	ck_assert_uint_eq(coordinator_engine_prune(e, now + 60000, 60000, 0),
			  1);
	ck_assert_ptr_null(
	    coordinator_table_find(coordinator_engine_table(e), id));
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(idempotency_key_runs_once)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	char id[COORDINATOR_GID_SIZE], id2[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, "k1", 1, NULL, &fx, id),
	    0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(
	    begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, "k1", 2, NULL, &fx, id2),
	    COORDINATOR_BEGIN_EXISTING);
	ck_assert_str_eq(id, id2);
	ck_assert_uint_eq(fx.n, 0); /* runs nothing */
	ck_assert_uint_eq(coordinator_table_size(coordinator_engine_table(e)),
			  1);
	all_ran(e, id, 1, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_ONE_PHASE, id, 0,
				 COORDINATOR_ST_OK, 20, &fx),
			 0);
	/* both clients hear the one outcome */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 2);
	ck_assert_uint_eq(
	    fx_find(&fx, COORDINATOR_FX_REPLY, -2, 1)->reply->client, 2);
	coordinator_fx_clear(&fx);
	/* after it is done, the key answers at once with the outcome */
	ck_assert_int_eq(
	    begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, "k1", 3, NULL, &fx, id2),
	    COORDINATOR_BEGIN_EXISTING);
	ck_assert_uint_eq(fx.n, 1);
	ck_assert_int_eq(fx.v[0].reply->outcome, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_uint_eq(fx.v[0].reply->client, 3);
	coordinator_fx_clear(&fx);
	/* another key is another transaction */
	ck_assert_int_eq(
	    begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, "k2", 4, NULL, &fx, id2),
	    0);
	ck_assert_str_ne(id, id2);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(bad_input_gets_an_error_and_changes_nothing)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e;
	struct coordinator_engine_config cfg = {.cluster = "bank"};
	struct coordinator_branch_req br[2] = {{"r1", NULL, 0}, {"", NULL, 0}};
	struct coordinator_begin req = {.nbranches = 2, .branches = br};
	char id[COORDINATOR_GID_SIZE], key[200];
	struct coordinator_event ev;

	coordinator_fx_init(&fx);
	{
		static const uint64_t zero[] = {10, 0};
		struct coordinator_engine_config bad = cfg;

		bad.backoff_ms = zero;
		bad.nbackoff = 2;
		ck_assert_int_eq(coordinator_engine_new(&bad, &e), -EINVAL);
		bad = cfg;
		bad.cluster = "ba_nk";
		ck_assert_int_eq(coordinator_engine_new(&bad, &e),
				 COORDINATOR_EGID_CLUSTER);
		bad = cfg;
		bad.protocol = (enum coordinator_protocol)7;
		ck_assert_int_eq(coordinator_engine_new(&bad, &e),
				 COORDINATOR_EBAD_PROTOCOL);
	}
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	/* not ready: no epoch yet */
	br[1].resource = "r2";
	ck_assert_int_eq(
	    coordinator_engine_begin(e, &req, 0, &fx, id, sizeof(id)),
	    COORDINATOR_ENOT_READY);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
	e = ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	br[1].resource = "";
	ck_assert_int_eq(
	    coordinator_engine_begin(e, &req, 0, &fx, id, sizeof(id)),
	    COORDINATOR_EBAD_RESOURCE);
	ck_assert_ptr_nonnull(strstr(coordinator_engine_errmsg(e), "branch 2"));
	br[1].resource = NULL;
	ck_assert_int_eq(
	    coordinator_engine_begin(e, &req, 0, &fx, id, sizeof(id)),
	    COORDINATOR_EBAD_RESOURCE);
	br[1].resource = "r2";
	req.nbranches = 0;
	ck_assert_int_eq(
	    coordinator_engine_begin(e, &req, 0, &fx, id, sizeof(id)),
	    COORDINATOR_ENO_BRANCHES);
	req.nbranches = 65;
	ck_assert_int_eq(
	    coordinator_engine_begin(e, &req, 0, &fx, id, sizeof(id)),
	    COORDINATOR_ETOO_MANY_BRANCHES);
	req.nbranches = 2;
	req.protocol = (enum coordinator_protocol)9;
	ck_assert_int_eq(
	    coordinator_engine_begin(e, &req, 0, &fx, id, sizeof(id)),
	    COORDINATOR_EBAD_PROTOCOL);
	req.protocol = COORDINATOR_PROTO_DEFAULT;
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	req.key = key;
	ck_assert_int_eq(
	    coordinator_engine_begin(e, &req, 0, &fx, id, sizeof(id)),
	    COORDINATOR_EBAD_KEY);
	ck_assert_uint_eq(fx.n, 0);
	ck_assert_uint_eq(coordinator_table_size(coordinator_engine_table(e)),
			  0);
	/* events for unknown txns, bad branches, bad tokens */
	ev = ev_make(COORDINATOR_EV_VOTED, "bank_1_77", 0);
	ck_assert_int_eq(coordinator_engine_step(e, &ev, 0, &fx),
			 COORDINATOR_ESTALE);
	req.key = NULL;
	ck_assert_int_eq(
	    coordinator_engine_begin(e, &req, 0, &fx, id, sizeof(id)), 0);
	coordinator_fx_clear(&fx);
	ev = ev_make(COORDINATOR_EV_VOTED, id, 5);
	ck_assert_int_eq(coordinator_engine_step(e, &ev, 0, &fx),
			 COORDINATOR_EBAD_EVENT);
	ev = ev_make(COORDINATOR_EV_RAN, id, -1);
	ck_assert_int_eq(coordinator_engine_step(e, &ev, 0, &fx),
			 COORDINATOR_EBAD_EVENT);
	ev = ev_make(COORDINATOR_EV_VOTED, id, 0); /* not preparing yet */
	ck_assert_int_eq(coordinator_engine_step(e, &ev, 0, &fx),
			 COORDINATOR_ESTALE);
	ev = ev_make(COORDINATOR_EV_LOG, id, -1);
	ev.token = 12345;
	ck_assert_int_eq(coordinator_engine_step(e, &ev, 0, &fx),
			 COORDINATOR_ESTALE);
	ev = ev_make(COORDINATOR_EV_TIMER, id, -1);
	ev.timer_id = 999;
	ck_assert_int_eq(coordinator_engine_step(e, &ev, 0, &fx),
			 COORDINATOR_ESTALE);
	memset(ev.txn, 'x', sizeof(ev.txn));
	ck_assert_int_eq(coordinator_engine_step(e, &ev, 0, &fx),
			 COORDINATOR_EBAD_EVENT);
	ck_assert_uint_eq(fx.n, 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_ACTIVE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(failed_commit_write_leaves_txn_in_doubt)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, logf;
	char id[COORDINATOR_GID_SIZE], id2[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 2, NULL, &fx, id2),
	    0);
	all_ran(e, id, 2, &fx);
	all_ran(e, id2, 2, &fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_int_eq(feed_vote(e, id2, 0, COORDINATOR_VOTE_YES, &fx), 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx), 0);
	logf = *fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, -EIO, 30, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_UNKNOWN);
	ck_assert_int_eq(f->reply->error, COORDINATOR_ELOG_FAILED);
	/* neither committed nor rolled back: restart decides */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_IN_DOUBT);
	ck_assert(coordinator_engine_is_failed(e));
	coordinator_fx_clear(&fx);
	/* the other txn cannot commit any more: it aborts, without a write */
	ck_assert_int_eq(feed_vote(e, id2, 1, COORDINATOR_VOTE_YES, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  2);
	coordinator_fx_clear(&fx);
	/* and no new work is accepted */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 3, NULL, &fx, id2),
	    COORDINATOR_ELOG_FAILED);
	ck_assert_uint_eq(fx.n, 0);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(begin_survives_every_failed_allocation)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	char id[COORDINATOR_GID_SIZE];
	int rc = -1;

	for (long n = 1; n < 50 && rc != 0; n++) {
		size_t size =
		    coordinator_table_size(coordinator_engine_table(e));

		mem_fail_after(n);
		rc = begin_n(e, 3, COORDINATOR_PROTO_DEFAULT, "key", 1, NULL,
			     &fx, id);
		mem_fail_reset();
		if (rc != 0) {
			ck_assert_int_eq(rc, -ENOMEM);
			ck_assert_uint_eq(fx.n, 0);
			ck_assert_uint_eq(
			    coordinator_table_size(coordinator_engine_table(e)),
			    size);
			ck_assert_ptr_null(coordinator_table_find_key(
			    coordinator_engine_table(e), "key"));
			coordinator_fx_clear(&fx);
		}
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_RUN), 3);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

/* Drives one 2-branch commit, executing every effect at once, while the
 * n-th allocation and all after it fail.  Returns the outcome told. */
static enum coordinator_outcome commit_with_failures(long n, int mode,
						     bool *logged_commit)
{
	struct coordinator_fx fx, next;
	struct coordinator_engine *e = ready_engine_mode(
	    mode == 1 ? COORDINATOR_PROTO_2PC_PN : COORDINATOR_PROTO_2PC_PA,
	    mode == 2, &fx);
	enum coordinator_outcome out = COORDINATOR_OUTCOME_PENDING;
	char id[COORDINATOR_GID_SIZE];
	int guard = 0;

	*logged_commit = false;
	mem_fail_after(n);
	if (begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, mode == 2 ? "key" : NULL,
		    1, NULL, &fx, id) != 0)
		goto out;
	while (fx.n > 0 && guard++ < 50) {
		coordinator_fx_init(&next);
		for (size_t i = 0; i < fx.n; i++) {
			struct coordinator_effect *f = &fx.v[i];

			switch (f->type) {
			case COORDINATOR_FX_RUN:
				feed_ran(e, id, f->branch, COORDINATOR_ST_OK,
					 NULL, NULL, &next);
				break;
			case COORDINATOR_FX_PREPARE:
				feed_vote(e, id, f->branch,
					  COORDINATOR_VOTE_YES, &next);
				break;
			case COORDINATOR_FX_LOG:
				if (f->rec->type == COORDINATOR_REC_COMMIT)
					*logged_commit = true;
				feed_log(e, f, 0, 50, &next);
				break;
			case COORDINATOR_FX_COMMIT_PREPARED:
				feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED,
					id, f->branch, COORDINATOR_ST_OK, 60,
					&next);
				break;
			case COORDINATOR_FX_ROLLBACK_PREPARED:
				feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED,
					id, f->branch, COORDINATOR_ST_OK, 60,
					&next);
				break;
			case COORDINATOR_FX_REPLY:
				out = f->reply->outcome;
				break;
			default:
				break;
			}
		}
		coordinator_fx_clear(&fx);
		fx = next;
	}
out:
	mem_fail_reset();
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
	return out;
}

START_TEST(every_allocation_failure_in_a_commit_is_survived)
{
	/* PA, PN, Raft mode with a key */
	for (int mode = 0; mode < 3; mode++) {
		bool completed = false;

		for (long n = 1; n < 400 && !completed; n++) {
			bool logged;
			enum coordinator_outcome out =
			    commit_with_failures(n, mode, &logged);

			/* never told committed without the decision logged */
			if (out == COORDINATOR_OUTCOME_COMMITTED)
				ck_assert_msg(logged,
					      "mode %d allocation %ld: "
					      "committed without a decision",
					      mode, n);
			completed =
			    out == COORDINATOR_OUTCOME_COMMITTED && n > 1;
		}
		ck_assert(completed);
	}
}
END_TEST

START_TEST(raft_mode_forces_aborts_after_prepare)
{
	struct coordinator_engine_config cfg = {.cluster = "bank",
						.log_aborts = true};
	struct coordinator_fx fx;
	struct coordinator_engine *e;
	struct coordinator_effect *f, logf, ep;
	struct coordinator_recovery *r;
	char id[COORDINATOR_GID_SIZE];

	coordinator_fx_init(&fx);
	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 0, &fx), 0);
	coordinator_recovery_free(r);
	ep = fx.v[0];
	ep.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &ep, 0, 0, &fx), 0);
	/* abort before any PREPARE: nothing can be prepared, nothing logged */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	ck_assert_int_eq(
	    feed_ran(e, id, 0, COORDINATOR_ST_ERROR, "42P01", "no table", &fx),
	    0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 1);
	coordinator_fx_clear(&fx);
	/* abort after PREPARE: the ABORT is forced before anything else */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 2, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_NO, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_ABORT);
	ck_assert(f->forced);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  0);
	logf = *f;
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, 30, &fx), 0);
	ck_assert_int_eq(
	    fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0)->reply->outcome,
	    COORDINATOR_OUTCOME_ABORTED);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 0, 0));
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 40, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_END);
	coordinator_fx_clear(&fx);
	/* a failed ABORT write freezes the txn: no rollback, outcome unknown */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	all_ran(e, id, 2, &fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_LOST, &fx), 0);
	logf = *fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, -EIO, 50, &fx), 0);
	ck_assert_int_eq(
	    fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0)->reply->outcome,
	    COORDINATOR_OUTCOME_UNKNOWN);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_IN_DOUBT);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

/* ------------------------------------------- pipelined phase 1 (RUN+PREPARE)
 */

/* A ready engine with pipeline_prepare set. */
static struct coordinator_engine *pipe_engine(enum coordinator_protocol proto,
					      struct coordinator_fx *fx)
{
	return ready_engine_opts(proto, false, true, fx);
}

/* Begins a 2-branch PA txn on a pipelining engine and checks that both
 * branches got one RUN each carrying their PREPARE. */
static void begin_pipelined(struct coordinator_engine *e,
			    struct coordinator_fx *fx, char *id)
{
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 7, NULL, fx, id), 0);
	ck_assert_uint_eq(fx_count_type(fx, COORDINATOR_FX_RUN), 2);
	for (int i = 0; i < 2; i++) {
		struct coordinator_effect *f =
		    fx_find(fx, COORDINATOR_FX_RUN, i, 0);

		ck_assert(f->prepare);
		ck_assert_str_eq(f->gid,
				 i == 0 ? "bank_1_1_1of2" : "bank_1_1_2of2");
		ck_assert_int_eq(txn(e, id)->branches[i].state,
				 COORDINATOR_BR_PREPARING);
	}
	ck_assert_uint_eq(fx_count_type(fx, COORDINATOR_FX_PREPARE), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_PREPARING);
	ck_assert_uint_eq(fx_count_type(fx, COORDINATOR_FX_LOG), 0);
}

START_TEST(pipelined_votes_yes_commit_with_one_forced_write)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    pipe_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, logf;
	char id[COORDINATOR_GID_SIZE];

	begin_pipelined(e, &fx, id);
	coordinator_fx_clear(&fx);
	/* success answers with VOTED only; a RAN ok is malformed */
	ck_assert_int_eq(feed_ran(e, id, 0, COORDINATOR_ST_OK, NULL, NULL, &fx),
			 COORDINATOR_EBAD_EVENT);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_uint_eq(fx.n, 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert(f->forced);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_COMMIT);
	ck_assert_uint_eq(f->rec->nbranches, 2);
	ck_assert_uint_eq(coordinator_fx_count(&fx, COORDINATOR_FX_LOG, true),
			  1);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_CANCEL_TIMER), 1);
	logf = *f;
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, 30, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED),
			  2);
	coordinator_fx_clear(&fx);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED,
					 id, i, COORDINATOR_ST_OK, 40, &fx),
				 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert(!f->forced);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_END);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 1);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(pipelined_statement_error_rolls_back_the_prepared_branch)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    pipe_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f;
	char id[COORDINATOR_GID_SIZE];

	begin_pipelined(e, &fx, id);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_int_eq(feed_ran(e, id, 1, COORDINATOR_ST_ERROR, "23514",
				  "new row violates check constraint", &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(f->reply->error, COORDINATOR_ESTATEMENT);
	ck_assert_int_eq(f->reply->err_branch, 1);
	ck_assert_str_eq(f->reply->sqlstate, "23514");
	ck_assert_ptr_nonnull(strstr(f->reply->errmsg, "branch 2 (r2)"));
	ck_assert_ptr_nonnull(strstr(f->reply->errmsg, "23514 new row"));
	/* the prepared one is rolled back by gid; the failed one has no
	 * local txn left to roll back; nothing logged */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  1);
	ck_assert_str_eq(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 0, 0)->gid,
	    "bank_1_1_1of2");
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_LOCAL), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_CANCEL_RUN), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->branches[1].state,
			 COORDINATOR_BR_ROLLED_BACK);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_ABORTING);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 30, &fx),
			 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	ck_assert_int_eq(txn(e, id)->outcome, COORDINATOR_OUTCOME_ABORTED);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(pipelined_statement_error_cancels_the_branch_in_flight)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    pipe_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f;
	char id[COORDINATOR_GID_SIZE];

	/* branch 1 fails while branch 2's pipeline is in flight: it is
	 * cancelled, and whatever it answers is undone */
	begin_pipelined(e, &fx, id);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_ran(e, id, 0, COORDINATOR_ST_ERROR, "23505",
				  "duplicate key", &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->err_branch, 0);
	ck_assert_ptr_nonnull(fx_find(&fx, COORDINATOR_FX_CANCEL_RUN, 1, 0));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_CANCEL_RUN), 1);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_ABORTING);
	coordinator_fx_clear(&fx);
	/* it had prepared before the cancel landed: rolled back by gid */
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 1, 0));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_CANCEL_TIMER), 1);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 1,
				 COORDINATOR_ST_OK, 30, &fx),
			 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);

	/* the same, but the cancel stopped its statement: nothing to undo */
	e = pipe_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	begin_pipelined(e, &fx, id);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_ran(e, id, 0, COORDINATOR_ST_ERROR, "23505",
				  "duplicate key", &fx),
			 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_ran(e, id, 1, COORDINATOR_ST_ERROR, "57014",
				  "canceling statement", &fx),
			 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_CANCEL_TIMER), 1);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	/* the first error stays the one reported */
	ck_assert_int_eq(txn(e, id)->err_branch, 0);
	coordinator_fx_clear(&fx);
	/* a yes after that (impossible from one pipeline, but a late
	 * answer looks the same) is undone by gid, to be safe */
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_ptr_nonnull(
	    fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 1, 0));
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(pipelined_lost_vote_rolls_back_by_gid)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    pipe_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f;
	char id[COORDINATOR_GID_SIZE];

	begin_pipelined(e, &fx, id);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_LOST, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(f->reply->error, COORDINATOR_EPREPARE_LOST);
	ck_assert_int_eq(f->reply->err_branch, 1);
	/* both may be prepared */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  2);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	coordinator_fx_clear(&fx);
	/* the lost one was never prepared (42704): done, and retried
	 * rollbacks are not needed */
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 1,
				 COORDINATOR_ST_NOT_FOUND, 30, &fx),
			 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 30, &fx),
			 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(pipelined_timeout_aborts_and_cancels)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    pipe_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect timer, *f;
	char id[COORDINATOR_GID_SIZE];

	begin_pipelined(e, &fx, id);
	timer = *fx_find(&fx, COORDINATOR_FX_SET_TIMER, -1, 0);
	ck_assert_uint_eq(timer.at, 1000);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_timer(e, &timer, 1000, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(f->reply->error, COORDINATOR_ETIMEOUT);
	ck_assert_int_eq(f->reply->err_branch, 1);
	/* the silent one is stopped, and both may be prepared */
	ck_assert_ptr_nonnull(fx_find(&fx, COORDINATOR_FX_CANCEL_RUN, 1, 0));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED),
			  2);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->branches[1].state,
			 COORDINATOR_BR_ROLLING_BACK);
	coordinator_fx_clear(&fx);
	/* its late answer (the cancelled statement) is stale */
	ck_assert_int_eq(feed_ran(e, id, 1, COORDINATOR_ST_ERROR, "57014",
				  "canceling statement", &fx),
			 COORDINATOR_ESTALE);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 1001, &fx),
			 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 1,
				 COORDINATOR_ST_NOT_FOUND, 1001, &fx),
			 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(pipelining_leaves_pn_one_phase_raft_and_hints_two_step)
{
	static const enum coordinator_hint hints[2] = {
	    COORDINATOR_HINT_UNKNOWN, COORDINATOR_HINT_READ_ONLY};
	struct coordinator_fx fx;
	struct coordinator_engine *e =
	    pipe_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, logf;
	char id[COORDINATOR_GID_SIZE];

	/* presumed nothing: RUN alone, then BEGIN forced, then PREPAREs */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_2PC_PN, NULL, 1, NULL, &fx, id), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_RUN), 2);
	for (int i = 0; i < 2; i++)
		ck_assert(!fx_find(&fx, COORDINATOR_FX_RUN, i, 0)->prepare);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_ACTIVE);
	coordinator_fx_clear(&fx);
	all_ran(e, id, 2, &fx);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert(f->forced);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_BEGIN);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 0);
	logf = *f;
	logf.rec = NULL;
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, 15, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 2);
	coordinator_fx_clear(&fx);

	/* a single branch: RUN alone, then one-phase COMMIT */
	ck_assert_int_eq(
	    begin_n(e, 1, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	ck_assert(!fx_find(&fx, COORDINATOR_FX_RUN, 0, 0)->prepare);
	coordinator_fx_clear(&fx);
	all_ran(e, id, 1, &fx);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_ONE_PHASE),
			  1);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 0);
	coordinator_fx_clear(&fx);

	/* a branch hinted read-only keeps RUN then PREPARE (with its probe)
	 * next to a pipelined one; the decision waits for both */
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, hints, &fx, id),
	    0);
	ck_assert(fx_find(&fx, COORDINATOR_FX_RUN, 0, 0)->prepare);
	ck_assert(!fx_find(&fx, COORDINATOR_FX_RUN, 1, 0)->prepare);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(feed_ran(e, id, 1, COORDINATOR_ST_OK, NULL, NULL, &fx),
			 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 1);
	ck_assert_ptr_nonnull(fx_find(&fx, COORDINATOR_FX_PREPARE, 1, 0));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_READ_ONLY, &fx),
			 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_COMMIT);
	ck_assert_uint_eq(f->rec->nbranches, 1); /* the yes branch only */
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);

	/* Raft mode: the two-step path (no forced abort for a statement
	 * error that a pipeline would have made "after PREPARE") */
	e = ready_engine_opts(COORDINATOR_PROTO_DEFAULT, true, true, &fx);
	ck_assert_int_eq(
	    begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id),
	    0);
	for (int i = 0; i < 2; i++)
		ck_assert(!fx_find(&fx, COORDINATOR_FX_RUN, i, 0)->prepare);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    two_branches_commit_with_one_forced_write,
	    statement_error_aborts_naming_the_branch,
	    no_vote_aborts_without_any_log_write,
	    prepare_timeout_aborts_txn,
	    statement_timeout_aborts_and_rolls_back_locally,
	    lost_prepare_answer_issues_rollback_prepared,
	    single_branch_commits_one_phase_without_log,
	    read_only_branches_leave_after_phase_one,
	    forced_writes_match_the_design_table,
	    pn_waits_for_forced_begin_and_abort,
	    phase_two_retries_with_backoff_and_42704_counts_as_done,
	    idempotency_key_runs_once,
	    bad_input_gets_an_error_and_changes_nothing,
	    failed_commit_write_leaves_txn_in_doubt,
	    begin_survives_every_failed_allocation,
	    every_allocation_failure_in_a_commit_is_survived,
	    raft_mode_forces_aborts_after_prepare,
	    pipelined_votes_yes_commit_with_one_forced_write,
	    pipelined_statement_error_rolls_back_the_prepared_branch,
	    pipelined_statement_error_cancels_the_branch_in_flight,
	    pipelined_lost_vote_rolls_back_by_gid,
	    pipelined_timeout_aborts_and_cancels,
	    pipelining_leaves_pn_one_phase_raft_and_hints_two_step,
	    NULL,
	};

	return suite_main("coordinator_engine", 0, tests);
}
