/* test_coord_stmts.c - parsing a branch's statements from a request. */
#include "coordinator/stmts.h"

#include "common/common.h"

#include "tests/lib/suite.h"
#include <check.h>
#include <string.h>

static int parse(const char *json, struct coordinator_stmts **out, char *err,
		 size_t errlen)
{
	struct jsonr_error jerr;
	struct jsonr_doc doc;
	int rc = jsonr_parse(&doc, json, strlen(json), &jerr);

	ck_assert_msg(rc == 0, "bad test JSON: %s", jerr.text);
	rc = coordinator_stmts_parse(jsonr_root(&doc), "branches[0]", out, err,
				     errlen);
	jsonr_free(&doc);
	return rc;
}

/* One statement as a one-element array. */
static int parse_one(const char *sql, const char *where,
		     struct coordinator_stmts **out, char *err, size_t errlen)
{
	struct jsonr_error jerr;
	struct jsonr_doc doc;
	struct jsonw w;
	int rc;

	jsonw_init(&w);
	jsonw_begin_array(&w);
	jsonw_string(&w, sql);
	jsonw_end_array(&w);
	ck_assert_int_eq(jsonr_parse(&doc, w.p, w.len, &jerr), 0);
	jsonw_free(&w);
	rc = coordinator_stmts_parse(jsonr_root(&doc), where, out, err, errlen);
	jsonr_free(&doc);
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
	char err[256];

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct coordinator_stmts *st = NULL;
		int rc =
		    parse_one(refused[i], "branches[1]", &st, err, sizeof(err));

		ck_assert_msg(rc == -EINVAL, "'%s' was accepted", refused[i]);
		ck_assert_ptr_nonnull(strstr(err, "transaction control"));
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		struct coordinator_stmts *st = NULL;
		int rc = parse_one(allowed[i], "b", &st, err, sizeof(err));

		ck_assert_msg(rc == 0, "'%s' was refused: %s", allowed[i], err);
		coordinator_stmts_free(st);
	}
}
END_TEST

START_TEST(allocation_failures_leave_nothing)
{
	static const char json[] =
	    "[\"select 1\", {\"sql\": \"select $1, $2\", "
	    "\"params\": [1, \"b\"]}]";
	struct jsonr_error jerr;
	struct jsonr_doc doc;
	char err[256];

	/* The document is read first: the failures hit the statements. */
	ck_assert_int_eq(jsonr_parse(&doc, json, strlen(json), &jerr), 0);
	for (long n = 1; n < 40; n++) {
		struct coordinator_stmts *st = NULL;
		int rc;

		mem_fail_after(n);
		rc = coordinator_stmts_parse(jsonr_root(&doc), "branches[0]",
					     &st, err, sizeof(err));
		mem_fail_reset();
		if (rc == 0) {
			ck_assert_uint_eq(st->n, 2);
			coordinator_stmts_free(st);
			jsonr_free(&doc);
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
