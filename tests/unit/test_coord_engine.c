/* test_coord_engine.c - the pure 2PC engine, one protocol path per test:
 * effects emitted, forced writes counted against DESIGN.md section 6. */
#include "test_coord_harness.h"

#include <errno.h>
#include <stdlib.h>

/* Runs statements ok on every branch of id (n branches). */
static void all_ran(struct coordinator_engine *e, const char *id, int n,
		    struct coordinator_fx *fx)
{
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(feed_ran(e, id, i, COORDINATOR_ST_OK, NULL, NULL, fx), 0);
}

static struct coordinator_txn *txn(struct coordinator_engine *e, const char *id)
{
	struct coordinator_txn *x = coordinator_table_find(coordinator_engine_table(e), id);

	ck_assert_ptr_nonnull(x);
	return x;
}

START_TEST(two_branches_commit_with_one_forced_write)
{
	struct coordinator_fx fx, all;
	struct coordinator_engine *e = ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, logf;
	char id[COORDINATOR_GID_SIZE];

	coordinator_fx_init(&all);
	ck_assert_int_eq(begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 7, NULL, &fx, id), 0);
	ck_assert_str_eq(id, "bank_1_1");
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_RUN), 2);
	ck_assert_str_eq(fx_find(&fx, COORDINATOR_FX_RUN, 1, 0)->resource, "r2");
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_SET_TIMER), 1);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_ACTIVE);
	coordinator_fx_clear(&fx);
	all_ran(e, id, 2, &fx);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_PREPARE), 2);
	ck_assert_str_eq(fx_find(&fx, COORDINATOR_FX_PREPARE, 0, 0)->gid, "bank_1_1_1of2");
	ck_assert_str_eq(fx_find(&fx, COORDINATOR_FX_PREPARE, 1, 0)->gid, "bank_1_1_2of2");
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
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED), 0);
	logf = *f;
	logf.rec = NULL;
	ck_assert_uint_eq(coordinator_fx_count(&fx, COORDINATOR_FX_LOG, true), 1);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_log(e, &logf, 0, 30, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->reply->client, 7);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_COMMITTED);
	ck_assert_str_eq(f->reply->txn, id);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_COMMIT_PREPARED), 2);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 40, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_COMMITTED_PREPARED, id, 1,
				 COORDINATOR_ST_OK, 40, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_LOG, -2, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert(!f->forced);
	ck_assert_int_eq(f->rec->type, COORDINATOR_REC_END);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	ck_assert_int_eq(txn(e, id)->outcome, COORDINATOR_OUTCOME_COMMITTED);
	coordinator_fx_clear(&fx);
	coordinator_fx_clear(&all);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(statement_error_aborts_naming_the_branch)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e = ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(begin_n(e, 3, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id), 0);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_ran(e, id, 0, COORDINATOR_ST_OK, NULL, NULL, &fx), 0);
	ck_assert_int_eq(feed_ran(e, id, 1, COORDINATOR_ST_ERROR, "23505",
				  "duplicate key value violates unique constraint", &fx), 0);
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
	coordinator_engine_free(e);
}
END_TEST

START_TEST(no_vote_aborts_without_any_log_write)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e = ready_engine(COORDINATOR_PROTO_2PC_PA, &fx);
	struct coordinator_effect *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id), 0);
	all_ran(e, id, 2, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_NO, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->outcome, COORDINATOR_OUTCOME_ABORTED);
	ck_assert_int_eq(f->reply->error, COORDINATOR_EVOTE_NO);
	ck_assert_ptr_nonnull(strstr(f->reply->errmsg, "40001"));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED), 1);
	ck_assert_ptr_nonnull(fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 0, 0));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_ABORTING);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 30, &fx), 0);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(prepare_timeout_aborts_txn)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e = ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect timer, *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id), 0);
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
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED), 2);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	coordinator_fx_clear(&fx);
	/* the late yes is stale: the branch is already being rolled back */
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_YES, &fx),
			 COORDINATOR_ESTALE);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 0,
				 COORDINATOR_ST_OK, 1001, &fx), 0);
	ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, 1,
				 COORDINATOR_ST_NOT_FOUND, 1001, &fx), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	/* the timer, fired again, is stale */
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_timer(e, &timer, 1002, &fx), COORDINATOR_ESTALE);
	ck_assert_uint_eq(fx.n, 0);
	coordinator_engine_free(e);
}
END_TEST

START_TEST(statement_timeout_aborts_and_rolls_back_locally)
{
	struct coordinator_fx fx;
	struct coordinator_engine *e = ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect timer, *f;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(begin_n(e, 2, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id), 0);
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
	struct coordinator_engine *e = ready_engine(COORDINATOR_PROTO_DEFAULT, &fx);
	struct coordinator_effect *f, timer;
	char id[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(begin_n(e, 3, COORDINATOR_PROTO_DEFAULT, NULL, 1, NULL, &fx, id), 0);
	timer = *fx_find(&fx, COORDINATOR_FX_SET_TIMER, -1, 0);
	all_ran(e, id, 3, &fx);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 1, COORDINATOR_VOTE_LOST, &fx), 0);
	f = fx_find(&fx, COORDINATOR_FX_REPLY, -2, 0);
	ck_assert_int_eq(f->reply->error, COORDINATOR_EPREPARE_LOST);
	ck_assert_int_eq(f->reply->err_branch, 1);
	ck_assert_ptr_nonnull(fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 1, 0));
	/* branches 0 and 2 still have PREPARE outstanding: wait for them */
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_ROLLBACK_PREPARED), 1);
	coordinator_fx_clear(&fx);
	ck_assert_int_eq(feed_vote(e, id, 0, COORDINATOR_VOTE_YES, &fx), 0);
	ck_assert_ptr_nonnull(fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 0, 0));
	coordinator_fx_clear(&fx);
	/* branch 2 never answers: the phase timer gives up on it */
	ck_assert_int_eq(feed_timer(e, &timer, 1000, &fx), 0);
	ck_assert_ptr_nonnull(fx_find(&fx, COORDINATOR_FX_ROLLBACK_PREPARED, 2, 0));
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_REPLY), 0);
	coordinator_fx_clear(&fx);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(feed_p2(e, COORDINATOR_EV_ROLLED_BACK_PREPARED, id, i,
					 i == 0 ? COORDINATOR_ST_OK : COORDINATOR_ST_NOT_FOUND,
					 1001, &fx), 0);
	ck_assert_int_eq(txn(e, id)->state, COORDINATOR_TXN_DONE);
	ck_assert_uint_eq(fx_count_type(&fx, COORDINATOR_FX_LOG), 0);
	coordinator_fx_clear(&fx);
	coordinator_engine_free(e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("coordinator_engine");
	TCase *tc = tcase_create("engine");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, two_branches_commit_with_one_forced_write);
	tcase_add_test(tc, statement_error_aborts_naming_the_branch);
	tcase_add_test(tc, no_vote_aborts_without_any_log_write);
	tcase_add_test(tc, prepare_timeout_aborts_txn);
	tcase_add_test(tc, statement_timeout_aborts_and_rolls_back_locally);
	tcase_add_test(tc, lost_prepare_answer_issues_rollback_prepared);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
