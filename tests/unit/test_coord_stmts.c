/* test_coord_stmts.c - parsing a branch's statements from a request. */
#include "coordinator/stmts.h"

#include "common/common.h"

#include "tests/lib/suite.h"
#include <check.h>
#include <string.h>

static int parse(const char *json, struct coordinator_stmts **out, char *err,
		 size_t errlen)
{
	json_error_t jerr;
	json_t *arr = json_loads(json, 0, &jerr);
	int rc;

	ck_assert_msg(arr != NULL, "bad test JSON: %s", jerr.text);
	rc = coordinator_stmts_parse(arr, "branches[0]", out, err, errlen);
	json_decref(arr);
	return rc;
}

START_TEST(statements_and_params_become_text)
{
	struct coordinator_stmts *st = NULL;
	char err[256] = "";

	ck_assert_int_eq(parse("[\"select 1\", {\"sql\": \"update t set a = $1 "
			       "where b = $2 and c = $3 and d = $4\", "
			       "\"params\": [7, \"x y\", null, true]}]",
			       &st, err, sizeof(err)),
			 0);
	ck_assert_uint_eq(st->n, 2);
	ck_assert_str_eq(st->v[0].sql, "select 1");
	ck_assert_int_eq(st->v[0].nparams, 0);
	ck_assert_int_eq(st->v[1].nparams, 4);
	ck_assert_str_eq(st->v[1].params[0], "7");
	ck_assert_str_eq(st->v[1].params[1], "x y");
	ck_assert_ptr_null(st->v[1].params[2]);
	ck_assert_str_eq(st->v[1].params[3], "true");
	coordinator_stmts_free(st);
}
END_TEST

START_TEST(bad_statements_are_refused_with_where)
{
	static const char *const bad[][2] = {
		{"[]", "branches[0].statements: must be a non-empty array"},
		{"[\"\"]", "branches[0].statements[0]: \"sql\" must be"},
		{"[3]", "branches[0].statements[0]: \"sql\" must be"},
		{"[{\"sql\": \"x\", \"bind\": []}]",
		 "branches[0].statements[0]: unknown key \"bind\""},
		{"[{\"params\": []}]", "missing key \"sql\""},
		{"[{\"sql\": \"x\", \"params\": {}}]", "\"params\" must be an array"},
		{"[{\"sql\": \"x\", \"params\": [[1]]}]",
		 "branches[0].statements[0].params[0]: a parameter must be"},
	};
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct coordinator_stmts *st = NULL;

		err[0] = '\0';
		ck_assert_int_eq(parse(bad[i][0], &st, err, sizeof(err)),
				 -EINVAL);
		ck_assert_ptr_null(st);
		ck_assert_msg(strstr(err, bad[i][1]) != NULL,
			      "case %zu: got \"%s\"", i, err);
	}
}
END_TEST

START_TEST(transaction_control_is_refused)
{
	static const char *const refused[] = {
		"commit", "COMMIT;", "  -- a comment\n commit", "/* x */ END",
		"rollback", "ROLLBACK WORK", "abort", "begin", "start transaction",
		"prepare transaction 'sneaky'", "PREPARE TRANSACTION 'x'",
		"commit prepared 'x'", "rollback prepared 'x'",
	};
	static const char *const allowed[] = {
		"savepoint a", "rollback to savepoint a", "ROLLBACK TO a",
		"rollback work to savepoint a", "release savepoint a",
		"prepare q as select 1", "update t set committed = true",
		"select 'commit'", "set transaction isolation level serializable",
	};
	char json[256], err[256];

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct coordinator_stmts *st = NULL;
		json_t *a = json_pack("[s]", refused[i]);
		int rc = coordinator_stmts_parse(a, "branches[1]", &st, err,
						 sizeof(err));

		json_decref(a);
		ck_assert_msg(rc == -EINVAL, "'%s' was accepted", refused[i]);
		ck_assert_ptr_nonnull(strstr(err, "transaction control"));
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		struct coordinator_stmts *st = NULL;
		json_t *a = json_pack("[s]", allowed[i]);
		int rc = coordinator_stmts_parse(a, "b", &st, err, sizeof(err));

		json_decref(a);
		ck_assert_msg(rc == 0, "'%s' was refused: %s", allowed[i], err);
		coordinator_stmts_free(st);
	}
	(void)json;
}
END_TEST

START_TEST(allocation_failures_leave_nothing)
{
	char err[256];

	for (long n = 1; n < 40; n++) {
		struct coordinator_stmts *st = NULL;
		int rc;

		mem_fail_after(n);
		rc = parse("[\"select 1\", {\"sql\": \"select $1, $2\", "
			   "\"params\": [1, \"b\"]}]",
			   &st, err, sizeof(err));
		mem_fail_reset();
		if (rc == 0) {
			ck_assert_uint_eq(st->n, 2);
			coordinator_stmts_free(st);
			return;
		}
		ck_assert_int_eq(rc, -ENOMEM);
		ck_assert_ptr_null(st);
	}
	ck_abort_msg("parse never succeeded");
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    statements_and_params_become_text,
	    bad_statements_are_refused_with_where,
	    transaction_control_is_refused,
	    allocation_failures_leave_nothing,
	    NULL,
	};

	return suite_main("coord_stmts", 0, tests);
}
