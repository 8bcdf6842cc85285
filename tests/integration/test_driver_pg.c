/*
 * test_driver_pg.c - the coordinator's postgres driver against real
 * PostgreSQL servers: statements with parameters, errors with SQLSTATE,
 * read-only detection, prepare / commit prepared / rollback prepared, the
 * 42704 mapping, listing by prefix, the pool bound and queue, a server
 * killed and restarted, statement timeouts on both sides, and a server
 * without prepared transactions being refused.
 *
 * Two servers are started once in main(): server 0 is shared by the tests
 * that leave it as they found it; server 1 is killed, restarted and
 * reconfigured by the tests that need that.  Every test drives a libuv
 * loop until a condition holds (with a deadline), then closes the driver
 * and checks that the loop closes empty.
 */
#include "coordinator/coordinator.h"

#include "common/common.h"
#include "tests/lib/pg.h"

#include <check.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static struct pg_harness *harness;

/* ---- a loop and a driver ----------------------------------------------- */

struct ctx {
	uv_loop_t loop;
	uv_timer_t watchdog;
	struct coordinator_pg *pg;
	bool closed;
};

/* What a callback got, copied out of the driver's result. */
struct got {
	bool done;
	enum coordinator_pg_outcome outcome;
	int code;
	char msg[700];
	char sqlstate[6];
	char detail[256];
	char hint[256];
	bool has_detail, has_hint;
	bool in_doubt;
	long long rows;
	int ncols, nrows;
	bool truncated;
	char cols[4][32];
	char vals[64][4][64]; /* first 64 rows, 4 columns */
	bool isnull[64][4];
	struct coordinator_pg_branch *branch;
	uint64_t at; /* loop time of the callback */
	uv_loop_t *loop;
};

static void on_result(const struct coordinator_pg_result *r, void *data)
{
	struct got *g = data;

	ck_assert_msg(!g->done, "callback fired twice");
	g->done = true;
	g->outcome = r->outcome;
	g->code = r->code;
	ck_assert_ptr_nonnull(r->message);
	ck_assert_ptr_nonnull(r->sqlstate);
	snprintf(g->msg, sizeof(g->msg), "%s", r->message);
	snprintf(g->sqlstate, sizeof(g->sqlstate), "%s", r->sqlstate);
	g->has_detail = r->detail != NULL;
	g->has_hint = r->hint != NULL;
	snprintf(g->detail, sizeof(g->detail), "%s",
		 r->detail ? r->detail : "");
	snprintf(g->hint, sizeof(g->hint), "%s", r->hint ? r->hint : "");
	g->in_doubt = r->in_doubt;
	g->rows = r->rows_affected;
	g->ncols = r->ncols;
	g->nrows = r->nrows;
	g->truncated = r->truncated;
	for (int c = 0; c < r->ncols && c < 4; c++)
		snprintf(g->cols[c], sizeof(g->cols[c]), "%s", r->colnames[c]);
	for (int i = 0; i < r->nrows && i < 64; i++) {
		for (int c = 0; c < r->ncols && c < 4; c++) {
			const char *v = coordinator_pg_result_value(r, i, c);

			g->isnull[i][c] = v == NULL;
			snprintf(g->vals[i][c], sizeof(g->vals[i][c]), "%s",
				 v ? v : "");
		}
	}
	g->branch = r->branch;
	if (g->loop != NULL)
		g->at = uv_now(g->loop);
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until *flag is true or ms pass; false on the deadline. */
static bool run_until(struct ctx *t, const bool *flag, uint64_t ms)
{
	uint64_t deadline;

	uv_update_time(&t->loop);
	deadline = uv_now(&t->loop) + ms;
	/* Wakes the loop now and then so the deadline is seen. */
	uv_timer_start(&t->watchdog, on_watchdog, 50, 50);
	while (!*flag && uv_now(&t->loop) < deadline)
		uv_run(&t->loop, UV_RUN_ONCE);
	uv_timer_stop(&t->watchdog);
	return *flag;
}

static void wait_got(struct ctx *t, struct got *g)
{
	ck_assert_msg(run_until(t, &g->done, 20000), "no callback in 20 s");
}

static void config_defaults(struct coordinator_pg_config *cfg, const char *name,
			    const char *conninfo)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->name = name;
	cfg->conninfo = conninfo;
	cfg->pool_size = 2;
	cfg->statement_timeout_ms = 10000;
	cfg->backoff_min_ms = 50;
	cfg->backoff_max_ms = 400;
}

static void ctx_open(struct ctx *t, const struct coordinator_pg_config *cfg)
{
	char err[256];

	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(uv_loop_init(&t->loop), 0);
	ck_assert_int_eq(uv_timer_init(&t->loop, &t->watchdog), 0);
	ck_assert_int_eq(
	    coordinator_pg_open(&t->loop, cfg, &t->pg, err, sizeof(err)), 0);
}

static void open_server(struct ctx *t, int server, const char *name)
{
	struct coordinator_pg_config cfg;

	config_defaults(&cfg, name, pg_harness_conninfo(harness, server));
	ctx_open(t, &cfg);
}

static void on_closed(void *data)
{
	*(bool *)data = true;
}

/* Closes the driver and the loop; the loop must end with nothing left. */
static void ctx_close(struct ctx *t)
{
	coordinator_pg_close(t->pg, on_closed, &t->closed);
	uv_close((uv_handle_t *)&t->watchdog, NULL);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	ck_assert(t->closed);
	ck_assert_int_eq(uv_loop_close(&t->loop), 0);
}

/* ---- synchronous-looking helpers --------------------------------------- */

static struct coordinator_pg_branch *begin_ok(struct ctx *t)
{
	struct coordinator_pg_branch *b = NULL;
	struct got g = {.loop = &t->loop};

	ck_assert_int_eq(coordinator_pg_begin(t->pg, on_result, &g, &b), 0);
	ck_assert_ptr_nonnull(b);
	wait_got(t, &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "begin: %s", g.msg);
	ck_assert_ptr_eq(g.branch, b);
	return b;
}

static void exec_got(struct ctx *t, struct coordinator_pg_branch *b,
		     const char *sql, int n, const char *const *params,
		     struct got *g)
{
	memset(g, 0, sizeof(*g));
	g->loop = &t->loop;
	ck_assert_int_eq(
	    coordinator_pg_branch_exec(b, sql, n, params, on_result, g), 0);
	wait_got(t, g);
}

static void exec_ok(struct ctx *t, struct coordinator_pg_branch *b,
		    const char *sql, int n, const char *const *params,
		    struct got *g)
{
	exec_got(t, b, sql, n, params, g);
	ck_assert_msg(g->outcome == COORDINATOR_PG_OK && g->code == 0, "%s: %s",
		      sql, g->msg);
}

typedef int (*end_fn)(struct coordinator_pg_branch *, coordinator_pg_cb,
		      void *);

static void end_branch(struct ctx *t, struct coordinator_pg_branch *b,
		       end_fn fn, struct got *g)
{
	memset(g, 0, sizeof(*g));
	g->loop = &t->loop;
	ck_assert_int_eq(fn(b, on_result, g), 0);
	wait_got(t, g);
}

static void prepare_got(struct ctx *t, struct coordinator_pg_branch *b,
			const char *gid, struct got *g)
{
	memset(g, 0, sizeof(*g));
	g->loop = &t->loop;
	ck_assert_int_eq(coordinator_pg_branch_prepare(b, gid, on_result, g),
			 0);
	wait_got(t, g);
}

typedef int (*gid_fn)(struct coordinator_pg *, const char *, coordinator_pg_cb,
		      void *);

static void gid_op(struct ctx *t, gid_fn fn, const char *gid, struct got *g)
{
	memset(g, 0, sizeof(*g));
	g->loop = &t->loop;
	ck_assert_int_eq(fn(t->pg, gid, on_result, g), 0);
	wait_got(t, g);
}

/* Runs one statement in its own committed branch. */
static void run_committed(struct ctx *t, const char *sql, int n,
			  const char *const *params)
{
	struct coordinator_pg_branch *b = begin_ok(t);
	struct got g;

	exec_ok(t, b, sql, n, params, &g);
	end_branch(t, b, coordinator_pg_branch_commit, &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "commit: %s", g.msg);
}

/* The value of a one-row, one-column query, run in a fresh branch. */
static void query_one(struct ctx *t, const char *sql, char *out, size_t n)
{
	struct coordinator_pg_branch *b = begin_ok(t);
	struct got g;

	exec_ok(t, b, sql, 0, NULL, &g);
	ck_assert_int_eq(g.nrows, 1);
	snprintf(out, n, "%s", g.vals[0][0]);
	end_branch(t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
}

static bool listed(const struct got *g, const char *gid)
{
	for (int i = 0; i < g->nrows && i < 64; i++)
		if (strcmp(g->vals[i][0], gid) == 0)
			return true;
	return false;
}

static void list_got(struct ctx *t, const char *prefix, struct got *g)
{
	gid_op(t, coordinator_pg_list_prepared, prefix, g);
	ck_assert_msg(g->outcome == COORDINATOR_PG_OK, "list: %s", g->msg);
}

/* Begins a branch, inserts v into table, prepares it under gid. */
static void prepare_insert(struct ctx *t, const char *table, const char *v,
			   const char *gid)
{
	struct coordinator_pg_branch *b = begin_ok(t);
	char sql[128];
	const char *p[1] = {v};
	struct got g;

	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES ($1)", table);
	exec_ok(t, b, sql, 1, p, &g);
	ck_assert_int_eq(g.rows, 1);
	prepare_got(t, b, gid, &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK && g.code == 0,
		      "prepare %s: %s", gid, g.msg);
}

/* Blocking libpq for what a branch cannot do (ALTER SYSTEM). */
static void admin_exec(int server, const char *sql)
{
	PGconn *c = PQconnectdb(pg_harness_conninfo(harness, server));
	PGresult *r;

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK ||
			  PQresultStatus(r) == PGRES_TUPLES_OK,
		      "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

/* Runs sql on a fresh blocking connection until its one value is want
 * (a reload reaches backends a little later); false after many tries. */
static bool admin_wait_value(int server, const char *sql, const char *want)
{
	uint64_t deadline = uv_hrtime() + 20ull * 1000000000ull;

	while (uv_hrtime() < deadline) {
		PGconn *c = PQconnectdb(pg_harness_conninfo(harness, server));
		PGresult *r = PQexec(c, sql);
		bool ok = PQresultStatus(r) == PGRES_TUPLES_OK &&
			  PQntuples(r) == 1 &&
			  strcmp(PQgetvalue(r, 0, 0), want) == 0;

		PQclear(r);
		PQfinish(c);
		if (ok)
			return true;
	}
	return false;
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(statement_with_params_returns_rows)
{
	struct ctx t;
	struct coordinator_pg_branch *b;
	const char *ins[2] = {"1", "it's; DROP TABLE x --"};
	const char *ins_null[2] = {"2", NULL};
	struct got g;

	open_server(&t, 0, "bank_a");
	run_committed(&t,
		      "CREATE TABLE IF NOT EXISTS params_t (id int PRIMARY "
		      "KEY, note text)",
		      0, NULL);
	b = begin_ok(&t);
	exec_ok(&t, b, "INSERT INTO params_t VALUES ($1, $2)", 2, ins, &g);
	ck_assert_int_eq(g.rows, 1);
	exec_ok(&t, b, "INSERT INTO params_t VALUES ($1, $2)", 2, ins_null, &g);
	exec_ok(&t, b, "UPDATE params_t SET note = note || '!' WHERE id > 0", 0,
		NULL, &g);
	ck_assert_int_eq(g.rows, 2);
	exec_ok(&t, b, "SELECT id, note FROM params_t ORDER BY id", 0, NULL,
		&g);
	ck_assert_int_eq(g.ncols, 2);
	ck_assert_str_eq(g.cols[0], "id");
	ck_assert_str_eq(g.cols[1], "note");
	ck_assert_int_eq(g.nrows, 2);
	ck_assert_int_eq(g.rows, 2);
	ck_assert(!g.truncated);
	ck_assert_str_eq(g.vals[0][0], "1");
	ck_assert_str_eq(g.vals[0][1], "it's; DROP TABLE x --!");
	ck_assert_str_eq(g.vals[1][0], "2");
	ck_assert(g.isnull[1][1]);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	ctx_close(&t);
}
END_TEST

START_TEST(returned_rows_stop_at_the_limit)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.row_limit = 10;
	ctx_open(&t, &cfg);
	b = begin_ok(&t);
	exec_ok(&t, b, "SELECT g FROM generate_series(1, 50) g", 0, NULL, &g);
	ck_assert_int_eq(g.nrows, 10);
	ck_assert(g.truncated);
	ck_assert_int_eq(g.rows, 50);
	ck_assert_str_eq(g.vals[9][0], "10");
	exec_ok(&t, b, "SELECT 1 AS one WHERE false", 0, NULL, &g);
	ck_assert_int_eq(g.nrows, 0);
	ck_assert_int_eq(g.ncols, 1);
	ck_assert_str_eq(g.cols[0], "one");
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ctx_close(&t);
}
END_TEST

START_TEST(statement_error_carries_sqlstate_detail_hint)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg_stats st;
	struct ctx t;
	struct coordinator_pg_branch *b;
	const char *one[1] = {"1"};
	struct got g;

	/* One connection: every error below must leave it usable. */
	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	run_committed(&t,
		      "CREATE TABLE IF NOT EXISTS err_t (id int PRIMARY KEY)",
		      0, NULL);
	run_committed(
	    &t, "INSERT INTO err_t VALUES ($1) ON CONFLICT DO NOTHING", 1, one);

	b = begin_ok(&t);
	exec_got(&t, b, "SELECT * FROM no_such_table", 0, NULL, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_ESQL);
	ck_assert_str_eq(g.sqlstate, "42P01");
	ck_assert_msg(strstr(g.msg, "cannot run statement on bank_a:") == g.msg,
		      "%s", g.msg);
	ck_assert_msg(strstr(g.msg, "no_such_table") != NULL, "%s", g.msg);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);

	b = begin_ok(&t);
	exec_got(&t, b, "INSERT INTO err_t VALUES ($1)", 1, one, &g);
	ck_assert_str_eq(g.sqlstate, "23505");
	ck_assert(g.has_detail);
	ck_assert_msg(strstr(g.detail, "(id)=(1)") != NULL, "%s", g.detail);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);

	b = begin_ok(&t);
	exec_got(&t, b, "SELECT no_such_function($1)", 1, one, &g);
	ck_assert_str_eq(g.sqlstate, "42883");
	ck_assert(g.has_hint);
	/* The failed transaction votes no at prepare; the branch is gone. */
	prepare_got(&t, b, "errtest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_str_eq(g.sqlstate, "25P02");
	ck_assert_msg(strstr(g.msg, "cannot prepare branch on bank_a") == g.msg,
		      "%s", g.msg);
	ck_assert(!g.in_doubt);
	list_got(&t, "errtest_", &g);
	ck_assert_int_eq(g.nrows, 0);

	/* One-phase commit of a failed transaction reports the rollback. */
	b = begin_ok(&t);
	exec_got(&t, b, "SELECT 1/0", 0, NULL, &g);
	ck_assert_str_eq(g.sqlstate, "22012");
	end_branch(&t, b, coordinator_pg_branch_commit, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_EROLLED_BACK);
	b = begin_ok(&t);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_uint_eq(st.connects, 1);
	ck_assert_uint_eq(st.lost, 0);
	ctx_close(&t);
}
END_TEST

START_TEST(read_only_branch_commits_locally)
{
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;

	open_server(&t, 0, "bank_a");
	b = begin_ok(&t);
	exec_ok(&t, b, "SELECT count(*) FROM pg_class", 0, NULL, &g);
	prepare_got(&t, b, "rotest_1", &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_READ_ONLY, "%s", g.msg);
	ck_assert_int_eq(g.code, 0);
	list_got(&t, "rotest_", &g);
	ck_assert_int_eq(g.nrows, 0);

	/* A branch that wrote is not read-only. */
	run_committed(&t, "CREATE TABLE IF NOT EXISTS ro_t (v text)", 0, NULL);
	prepare_insert(&t, "ro_t", "x", "rotest_2");
	list_got(&t, "rotest_", &g);
	ck_assert_int_eq(g.nrows, 1);
	ck_assert_str_eq(g.vals[0][0], "rotest_2");
	gid_op(&t, coordinator_pg_rollback_prepared, "rotest_2", &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	ctx_close(&t);
}
END_TEST

/* Queries a prepare of a branch sends (session reset off, so nothing else
 * runs on the connection). */
static uint64_t prepare_queries(struct ctx *t, const char *stmt,
				const char *gid,
				enum coordinator_pg_outcome *outcome)
{
	struct coordinator_pg_stats st;
	struct coordinator_pg_branch *b = begin_ok(t);
	struct got g;
	uint64_t q0;

	exec_ok(t, b, stmt, 0, NULL, &g);
	coordinator_pg_stats_get(t->pg, &st);
	q0 = st.queries;
	prepare_got(t, b, gid, &g);
	ck_assert_msg(g.outcome != COORDINATOR_PG_FAILED, "%s", g.msg);
	*outcome = g.outcome;
	coordinator_pg_stats_get(t->pg, &st);
	return st.queries - q0;
}

START_TEST(written_branch_prepares_in_one_round_trip)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	enum coordinator_pg_outcome o;
	struct got g;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.keep_session_state = true;
	ctx_open(&t, &cfg);
	run_committed(&t, "CREATE TABLE IF NOT EXISTS rt_t (v text)", 0, NULL);
	ck_assert_uint_eq(prepare_queries(&t, "INSERT INTO rt_t VALUES ('a')",
					  "rttest_1", &o),
			  1);
	ck_assert(o == COORDINATOR_PG_OK);
	ck_assert_uint_eq(prepare_queries(&t, "SELECT 1", "rttest_2", &o), 2);
	ck_assert(o == COORDINATOR_PG_READ_ONLY);
	/* An UPDATE that changed nothing is not known to have written. */
	ck_assert_uint_eq(prepare_queries(&t,
					  "UPDATE rt_t SET v = 'b' WHERE "
					  "false",
					  "rttest_3", &o),
			  2);
	list_got(&t, "rttest_1", &g);
	ck_assert_int_eq(g.nrows, 1);
	gid_op(&t, coordinator_pg_rollback_prepared, "rttest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	gid_op(&t, coordinator_pg_rollback_prepared, "rttest_3", &g);
	ck_assert(g.outcome != COORDINATOR_PG_FAILED);
	ctx_close(&t);
}
END_TEST

START_TEST(prepare_then_commit_prepared)
{
	struct ctx t;
	struct got g;
	char v[64];

	open_server(&t, 0, "bank_a");
	run_committed(&t, "CREATE TABLE IF NOT EXISTS cp_t (v text)", 0, NULL);
	prepare_insert(&t, "cp_t", "committed", "cptest_7_1_1of2");
	/* Prepared work is invisible until the commit. */
	query_one(&t, "SELECT count(*) FROM cp_t WHERE v = 'committed'", v,
		  sizeof(v));
	ck_assert_str_eq(v, "0");
	list_got(&t, "cptest_", &g);
	ck_assert_int_eq(g.nrows, 1);
	gid_op(&t, coordinator_pg_commit_prepared, "cptest_7_1_1of2", &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "%s", g.msg);
	query_one(&t, "SELECT count(*) FROM cp_t WHERE v = 'committed'", v,
		  sizeof(v));
	ck_assert_str_eq(v, "1");
	list_got(&t, "cptest_", &g);
	ck_assert_int_eq(g.nrows, 0);
	/* Phase 2 again: already done, 42704 maps to not found. */
	gid_op(&t, coordinator_pg_commit_prepared, "cptest_7_1_1of2", &g);
	ck_assert(g.outcome == COORDINATOR_PG_NOT_FOUND);
	ck_assert_int_eq(g.code, 0);
	ck_assert_str_eq(g.sqlstate, "42704");
	ctx_close(&t);
}
END_TEST

START_TEST(prepare_then_rollback_prepared)
{
	struct ctx t;
	struct got g;
	char v[64];

	open_server(&t, 0, "bank_a");
	run_committed(&t, "CREATE TABLE IF NOT EXISTS rp_t (v text)", 0, NULL);
	prepare_insert(&t, "rp_t", "undone", "rptest_1");
	gid_op(&t, coordinator_pg_rollback_prepared, "rptest_1", &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "%s", g.msg);
	query_one(&t, "SELECT count(*) FROM rp_t", v, sizeof(v));
	ck_assert_str_eq(v, "0");
	gid_op(&t, coordinator_pg_rollback_prepared, "rptest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_NOT_FOUND);
	ck_assert_str_eq(g.sqlstate, "42704");
	ctx_close(&t);
}
END_TEST

START_TEST(unknown_gid_is_not_found)
{
	struct ctx t;
	struct got g;

	open_server(&t, 0, "bank_a");
	gid_op(&t, coordinator_pg_commit_prepared, "never_prepared_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_NOT_FOUND);
	ck_assert_str_eq(g.sqlstate, "42704");
	gid_op(&t, coordinator_pg_rollback_prepared, "never_prepared_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_NOT_FOUND);
	ck_assert_str_eq(g.sqlstate, "42704");
	ctx_close(&t);
}
END_TEST

START_TEST(gid_is_an_escaped_literal)
{
	struct ctx t;
	struct got g;
	const char *gid = "q'x'); DROP TABLE gq_t; --\\_1";
	char v[64];

	open_server(&t, 0, "bank_a");
	run_committed(&t, "CREATE TABLE IF NOT EXISTS gq_t (v text)", 0, NULL);
	prepare_insert(&t, "gq_t", "a", gid);
	list_got(&t, "q'x'", &g);
	ck_assert_int_eq(g.nrows, 1);
	ck_assert_str_eq(g.vals[0][0], gid);
	gid_op(&t, coordinator_pg_commit_prepared, gid, &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "%s", g.msg);
	query_one(&t, "SELECT count(*) FROM gq_t", v, sizeof(v));
	ck_assert_str_eq(v, "1");
	ctx_close(&t);
}
END_TEST

START_TEST(bad_gids_are_refused_and_change_nothing)
{
	struct ctx t;
	struct coordinator_pg_branch *b;
	char longgid[COORDINATOR_PG_GID_MAX + 2];
	struct got g = {0};

	memset(longgid, 'a', sizeof(longgid) - 1);
	longgid[sizeof(longgid) - 1] = '\0';
	open_server(&t, 0, "bank_a");
	ck_assert_int_eq(
	    coordinator_pg_commit_prepared(t.pg, "", on_result, &g),
	    COORDINATOR_PG_EBAD_GID);
	ck_assert_int_eq(
	    coordinator_pg_rollback_prepared(t.pg, longgid, on_result, &g),
	    COORDINATOR_PG_EBAD_GID);
	ck_assert_int_eq(
	    coordinator_pg_commit_prepared(t.pg, NULL, on_result, &g),
	    COORDINATOR_PG_EBAD_GID);
	b = begin_ok(&t);
	ck_assert_int_eq(
	    coordinator_pg_branch_prepare(b, longgid, on_result, &g),
	    COORDINATOR_PG_EBAD_GID);
	ck_assert_int_eq(
	    coordinator_pg_branch_exec(b, NULL, 0, NULL, on_result, &g),
	    -EINVAL);
	/* The branch is still usable: nothing changed. */
	exec_ok(&t, b, "SELECT 1", 0, NULL, &g);
	/* One operation at a time per branch. */
	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(coordinator_pg_branch_exec(b, "SELECT pg_sleep(0.05)",
						    0, NULL, on_result, &g),
			 0);
	ck_assert_int_eq(
	    coordinator_pg_branch_exec(b, "SELECT 2", 0, NULL, on_result, &g),
	    -EBUSY);
	wait_got(&t, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	ck_assert_int_eq(g.nrows, 1);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	ctx_close(&t);
}
END_TEST

START_TEST(list_matches_the_prefix_literally)
{
	struct ctx t;
	struct got g;
	static const char *const gids[] = {"lp_a_1",  "lpXa_1", "lp%a_1",
					   "lpQQa_1", "lp!a_1", "lother_1"};
	size_t i;

	open_server(&t, 0, "bank_a");
	run_committed(&t, "CREATE TABLE IF NOT EXISTS lp_t (v text)", 0, NULL);
	for (i = 0; i < sizeof(gids) / sizeof(gids[0]); i++)
		prepare_insert(&t, "lp_t", gids[i], gids[i]);

	list_got(&t, "lp_", &g); /* '_' must not match 'X' */
	ck_assert_int_eq(g.nrows, 1);
	ck_assert(listed(&g, "lp_a_1"));
	list_got(&t, "lp%", &g); /* '%' must not match "QQ" */
	ck_assert_int_eq(g.nrows, 1);
	ck_assert(listed(&g, "lp%a_1"));
	list_got(&t, "lp!", &g); /* the escape character itself */
	ck_assert_int_eq(g.nrows, 1);
	ck_assert(listed(&g, "lp!a_1"));
	list_got(&t, "lp", &g);
	ck_assert_int_eq(g.nrows, 5);
	ck_assert(!listed(&g, "lother_1"));
	list_got(&t, "l", &g);
	ck_assert_int_eq(g.nrows, 6);
	ck_assert_str_eq(g.cols[0], "gid");

	for (i = 0; i < sizeof(gids) / sizeof(gids[0]); i++) {
		gid_op(&t, coordinator_pg_rollback_prepared, gids[i], &g);
		ck_assert(g.outcome == COORDINATOR_PG_OK);
	}
	list_got(&t, "l", &g);
	ck_assert_int_eq(g.nrows, 0);
	ctx_close(&t);
}
END_TEST

START_TEST(statement_that_ends_the_transaction_breaks_the_branch)
{
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	char v[64];

	open_server(&t, 0, "bank_a");
	run_committed(&t, "CREATE TABLE IF NOT EXISTS end_t (v text)", 0, NULL);
	b = begin_ok(&t);
	exec_ok(&t, b, "INSERT INTO end_t VALUES ('sneaky')", 0, NULL, &g);
	exec_got(&t, b, "ROLLBACK", 0, NULL, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_EENDED);
	ck_assert_msg(strstr(g.msg, "not allowed in a branch") != NULL, "%s",
		      g.msg);
	/* Not mistaken for read-only: prepare votes no. */
	prepare_got(&t, b, "endtest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_EENDED);
	query_one(&t, "SELECT count(*) FROM end_t", v, sizeof(v));
	ck_assert_str_eq(v, "0");
	ctx_close(&t);
}
END_TEST

/* Runs a branch that changes session state, then looks at it from the next
 * branch on the same (only) connection. */
static void session_state_after(bool keep, char *timeout, size_t tlen,
				char *locks, size_t llen)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg_stats st;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	cfg.keep_session_state = keep;
	ctx_open(&t, &cfg);
	b = begin_ok(&t);
	exec_ok(&t, b, "SET statement_timeout = 0", 0, NULL, &g);
	exec_ok(&t, b, "SELECT pg_advisory_lock(4242)", 0, NULL, &g);
	end_branch(&t, b, coordinator_pg_branch_commit, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	query_one(&t, "SHOW statement_timeout", timeout, tlen);
	query_one(&t,
		  "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
		  "AND objid = 4242",
		  locks, llen);
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_uint_eq(st.connects, 1);
	ctx_close(&t);
}

START_TEST(session_state_does_not_leak_between_branches)
{
	char timeout[64], locks[64];

	session_state_after(false, timeout, sizeof(timeout), locks,
			    sizeof(locks));
	ck_assert_str_eq(timeout, "10s");
	ck_assert_str_eq(locks, "0");
	/* The opt-out keeps it (and shows the test can fail). */
	session_state_after(true, timeout, sizeof(timeout), locks,
			    sizeof(locks));
	ck_assert_str_eq(timeout, "0");
	ck_assert_str_eq(locks, "1");
}
END_TEST

/* Queries (round trips) the pool has sent so far. */
static uint64_t queries_sent(struct ctx *t)
{
	struct coordinator_pg_stats st;

	coordinator_pg_stats_get(t->pg, &st);
	return st.queries;
}

static uint64_t resets_sent(struct ctx *t)
{
	struct coordinator_pg_stats st;

	coordinator_pg_stats_get(t->pg, &st);
	return st.resets;
}

START_TEST(begin_goes_out_with_the_first_statement)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	uint64_t q0;
	char v[64];

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	run_committed(&t, "CREATE TABLE IF NOT EXISTS bw_t (v text)", 0, NULL);
	/* begin costs no round trip; BEGIN + INSERT cost one. */
	q0 = queries_sent(&t);
	b = begin_ok(&t);
	ck_assert_uint_eq(queries_sent(&t), q0);
	exec_ok(&t, b, "INSERT INTO bw_t VALUES ('gone')", 0, NULL, &g);
	ck_assert_int_eq(g.rows, 1);
	ck_assert_uint_eq(queries_sent(&t), q0 + 1);
	/* ... and they ran in one transaction: rolling back undoes it. */
	exec_ok(&t, b, "SELECT count(*) FROM bw_t WHERE v = 'gone'", 0, NULL,
		&g);
	ck_assert_str_eq(g.vals[0][0], "1");
	ck_assert_uint_eq(queries_sent(&t), q0 + 2);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	query_one(&t, "SELECT count(*) FROM bw_t WHERE v = 'gone'", v,
		  sizeof(v));
	ck_assert_str_eq(v, "0");
	/* A first statement with rows, parameters and the row limit. */
	b = begin_ok(&t);
	{
		const char *p[1] = {"3"};

		exec_ok(&t, b,
			"SELECT g, $1::int * g AS x FROM "
			"generate_series(1, 5) g",
			1, p, &g);
	}
	ck_assert_int_eq(g.nrows, 5);
	ck_assert_int_eq(g.ncols, 2);
	ck_assert_str_eq(g.cols[1], "x");
	ck_assert_str_eq(g.vals[4][1], "15");
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ctx_close(&t);
}
END_TEST

/* ---- run_prepare: statements and PREPARE in one pipeline --------------- */

/* What the per-statement callback saw. */
struct each_got {
	int n;
	long long rows[8];
	int nrows[8];
	char first[8][32]; /* first value of the first row */
};

/* on_result, plus the failed statement's index and what each saw. */
struct rp_got {
	struct got g;
	struct each_got each;
	int stmt;
};

static void on_each(const struct coordinator_pg_result *r, void *data)
{
	struct each_got *e = &((struct rp_got *)data)->each;

	ck_assert(r->outcome == COORDINATOR_PG_OK);
	ck_assert_int_eq(r->stmt, -1);
	if (e->n < 8) {
		const char *v = coordinator_pg_result_value(r, 0, 0);

		e->rows[e->n] = r->rows_affected;
		e->nrows[e->n] = r->nrows;
		snprintf(e->first[e->n], sizeof(e->first[0]), "%s", v ? v : "");
	}
	e->n++;
}

static void on_rp_result(const struct coordinator_pg_result *r, void *data)
{
	struct rp_got *rg = data;

	rg->stmt = r->stmt;
	on_result(r, &rg->g);
}

static void run_prepare_got(struct ctx *t, struct coordinator_pg_branch *b,
			    const struct coordinator_pg_stmt *v, int n,
			    const char *gid, struct rp_got *rg)
{
	memset(rg, 0, sizeof(*rg));
	rg->g.loop = &t->loop;
	ck_assert_int_eq(coordinator_pg_branch_run_prepare(
			     b, v, n, gid, on_each, on_rp_result, rg),
			 0);
	wait_got(t, &rg->g);
}

static int prepared_count(struct ctx *t, const char *gid)
{
	struct got g;

	list_got(t, gid, &g);
	return g.nrows;
}

START_TEST(run_prepare_prepares_in_one_round_trip)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	const char *p[1] = {"piped"};
	struct coordinator_pg_stmt v[2] = {
	    {"INSERT INTO rp_t VALUES ($1)", 1, p},
	    {"SELECT count(*) FROM rp_t WHERE v = 'piped'", 0, NULL},
	};
	struct rp_got rg;
	struct got g;
	uint64_t q0;
	char out[64];

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	run_committed(&t, "CREATE TABLE IF NOT EXISTS rp_t (v text)", 0, NULL);
	b = begin_ok(&t);
	q0 = queries_sent(&t) - resets_sent(&t);
	run_prepare_got(&t, b, v, 2, "rp_gid_1", &rg);
	ck_assert_msg(rg.g.outcome == COORDINATOR_PG_OK, "%s", rg.g.msg);
	ck_assert_int_eq(rg.stmt, -1);
	/* BEGIN, both statements and PREPARE: one round trip (the SELECT
	 * then costs the connection a DISCARD ALL, counted apart) */
	ck_assert_uint_eq(queries_sent(&t) - resets_sent(&t), q0 + 1);
	/* each statement's result, in order, before the outcome */
	ck_assert_int_eq(rg.each.n, 2);
	ck_assert_int_eq(rg.each.rows[0], 1);
	ck_assert_int_eq(rg.each.nrows[1], 1);
	ck_assert_str_eq(rg.each.first[1], "1"); /* same transaction */
	ck_assert_int_eq(prepared_count(&t, "rp_gid_1"), 1);
	/* not visible until committed */
	query_one(&t, "SELECT count(*) FROM rp_t WHERE v = 'piped'", out,
		  sizeof(out));
	ck_assert_str_eq(out, "0");
	gid_op(&t, coordinator_pg_commit_prepared, "rp_gid_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	query_one(&t, "SELECT count(*) FROM rp_t WHERE v = 'piped'", out,
		  sizeof(out));
	ck_assert_str_eq(out, "1");
	run_committed(&t, "DELETE FROM rp_t", 0, NULL);
	ctx_close(&t);
}
END_TEST

START_TEST(run_prepare_statement_error_prepares_nothing)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg_stats st;
	struct ctx t;
	struct coordinator_pg_branch *b;
	const char *one[1] = {"1"}, *two[1] = {"2"};
	struct coordinator_pg_stmt v[3] = {
	    {"INSERT INTO rpe_t VALUES ($1)", 1, two},
	    {"INSERT INTO rpe_t VALUES ($1)", 1, one}, /* duplicate key */
	    {"INSERT INTO rpe_t VALUES (3)", 0, NULL},
	};
	struct rp_got rg;
	char out[64];

	/* One connection: it must come back clean (rolled back). */
	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	run_committed(&t,
		      "CREATE TABLE IF NOT EXISTS rpe_t (id int PRIMARY KEY)",
		      0, NULL);
	run_committed(
	    &t, "INSERT INTO rpe_t VALUES ($1) ON CONFLICT DO NOTHING", 1, one);
	b = begin_ok(&t);
	run_prepare_got(&t, b, v, 3, "rpe_gid_1", &rg);
	ck_assert(rg.g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(rg.g.code, COORDINATOR_PG_ESQL);
	ck_assert_int_eq(rg.stmt, 1);
	ck_assert_str_eq(rg.g.sqlstate, "23505");
	ck_assert(!rg.g.in_doubt);
	ck_assert_msg(strstr(rg.g.msg, "cannot run statement on bank_a:") ==
			  rg.g.msg,
		      "%s", rg.g.msg);
	ck_assert_int_eq(rg.each.n, 1); /* the first one ran */
	ck_assert_int_eq(prepared_count(&t, "rpe_gid_1"), 0);
	/* nothing of it stayed, and the one connection works */
	query_one(&t, "SELECT count(*) FROM rpe_t", out, sizeof(out));
	ck_assert_str_eq(out, "1");
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_eq(st.open, 1);

	/* PREPARE itself refused (a temporary object): a "no" vote, stmt
	 * -1, not in doubt, nothing prepared */
	{
		struct coordinator_pg_stmt tv[1] = {
		    {"CREATE TEMP TABLE rpe_tmp (x int)", 0, NULL}};

		b = begin_ok(&t);
		run_prepare_got(&t, b, tv, 1, "rpe_gid_2", &rg);
		ck_assert(rg.g.outcome == COORDINATOR_PG_FAILED);
		ck_assert_int_eq(rg.stmt, -1);
		ck_assert(!rg.g.in_doubt);
		ck_assert_str_eq(rg.g.sqlstate, "0A000");
		ck_assert_msg(
		    strstr(rg.g.msg, "cannot prepare branch on bank_a:") ==
			rg.g.msg,
		    "%s", rg.g.msg);
		ck_assert_int_eq(prepared_count(&t, "rpe_gid_2"), 0);
	}
	/* a statement that would end the transaction: refused, unsent */
	{
		struct coordinator_pg_stmt cv[2] = {
		    {"INSERT INTO rpe_t VALUES (5)", 0, NULL},
		    {" commit", 0, NULL}};
		uint64_t q0 = queries_sent(&t);

		b = begin_ok(&t);
		run_prepare_got(&t, b, cv, 2, "rpe_gid_3", &rg);
		ck_assert(rg.g.outcome == COORDINATOR_PG_FAILED);
		ck_assert_int_eq(rg.g.code, COORDINATOR_PG_EENDED);
		ck_assert_int_eq(rg.stmt, 1);
		ck_assert_uint_eq(queries_sent(&t), q0);
		ck_assert_int_eq(prepared_count(&t, "rpe_gid_3"), 0);
	}
	query_one(&t, "SELECT count(*) FROM rpe_t", out, sizeof(out));
	ck_assert_str_eq(out, "1");
	ctx_close(&t);
}
END_TEST

START_TEST(run_prepare_cancel_keeps_the_answer)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg_stats st0, st;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct coordinator_pg_stmt v[1] = {{"SELECT pg_sleep(20)", 0, NULL}};
	struct rp_got rg;
	uint64_t t0;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	b = begin_ok(&t);
	coordinator_pg_stats_get(t.pg, &st0);
	memset(&rg, 0, sizeof(rg));
	rg.g.loop = &t.loop;
	ck_assert_int_eq(coordinator_pg_branch_run_prepare(
			     b, v, 1, "rpc_gid_1", on_each, on_rp_result, &rg),
			 0);
	t0 = uv_now(&t.loop);
	ck_assert_int_eq(coordinator_pg_branch_cancel(b), 0);
	ck_assert_int_eq(coordinator_pg_branch_cancel(b), 0); /* once */
	wait_got(&t, &rg.g);
	/* the statement's own answer, not a lost connection: nothing
	 * prepared, and the engine need not roll back by gid */
	ck_assert(rg.g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_str_eq(rg.g.sqlstate, "57014");
	ck_assert_int_eq(rg.stmt, 0);
	ck_assert(!rg.g.in_doubt);
	ck_assert_msg(rg.g.at - t0 < 5000, "took %llu ms",
		      (unsigned long long)(rg.g.at - t0));
	/* the connection is closed, not pooled (a late cancel must not hit
	 * its next user), and not counted as lost */
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_eq(st.open, 0);
	ck_assert_uint_eq(st.lost, st0.lost);
	ck_assert_int_eq(prepared_count(&t, "rpc_gid_1"), 0);
	ctx_close(&t);
}
END_TEST

START_TEST(run_prepare_reuses_prepared_statements)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	const char *p1[1] = {"c1"}, *p2[1] = {"c2"};
	static const char ins[] = "INSERT INTO rpc_t VALUES ($1)";
	static const char count[] =
	    "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE "
	    "'decree!_%' ESCAPE '!'";
	struct coordinator_pg_stmt v1[1] = {{ins, 1, p1}};
	struct coordinator_pg_stmt v2[2] = {{ins, 1, p2}, {count, 0, NULL}};
	struct coordinator_pg_stmt v3[1] = {{count, 0, NULL}};
	struct rp_got rg;
	struct got g;

	/* One connection, so every branch meets the same cache. */
	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	run_committed(&t, "CREATE TABLE IF NOT EXISTS rpc_t (v text)", 0, NULL);
	b = begin_ok(&t);
	run_prepare_got(&t, b, v1, 1, "rpc_c_1", &rg);
	ck_assert_msg(rg.g.outcome == COORDINATOR_PG_OK, "%s", rg.g.msg);
	/* the INSERT is prepared once and reused; the SELECT adds one */
	b = begin_ok(&t);
	run_prepare_got(&t, b, v2, 2, "rpc_c_2", &rg);
	ck_assert_msg(rg.g.outcome == COORDINATOR_PG_OK, "%s", rg.g.msg);
	ck_assert_int_eq(rg.each.n, 2);
	ck_assert_int_eq(rg.each.rows[0], 1);
	ck_assert_str_eq(rg.each.first[1], "2");
	/* the SELECT cost the session a DISCARD ALL, which emptied it: the
	 * next branch prepares afresh */
	b = begin_ok(&t);
	run_prepare_got(&t, b, v3, 1, "rpc_c_3", &rg);
	ck_assert_msg(rg.g.outcome == COORDINATOR_PG_OK, "%s", rg.g.msg);
	ck_assert_str_eq(rg.each.first[0], "1");
	/* a statement that does not parse fails as itself, and the next
	 * branch on the connection still works */
	{
		struct coordinator_pg_stmt bad[2] = {{"SELEC 1", 0, NULL},
						     {ins, 1, p1}};

		b = begin_ok(&t);
		run_prepare_got(&t, b, bad, 2, "rpc_c_4", &rg);
		ck_assert(rg.g.outcome == COORDINATOR_PG_FAILED);
		ck_assert_int_eq(rg.stmt, 0);
		ck_assert_str_eq(rg.g.sqlstate, "42601");
		ck_assert_int_eq(prepared_count(&t, "rpc_c_4"), 0);
		b = begin_ok(&t);
		run_prepare_got(&t, b, v1, 1, "rpc_c_5", &rg);
		ck_assert_msg(rg.g.outcome == COORDINATOR_PG_OK, "%s",
			      rg.g.msg);
	}
	for (int i = 1; i <= 5; i++) {
		char gid[32];

		snprintf(gid, sizeof(gid), "rpc_c_%d", i);
		if (i == 4)
			continue;
		gid_op(&t, coordinator_pg_rollback_prepared, gid, &g);
		ck_assert(g.outcome == COORDINATOR_PG_OK);
	}
	ctx_close(&t);
}
END_TEST

START_TEST(branch_without_statements_sends_nothing)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	uint64_t q0;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	b = begin_ok(&t);
	q0 = queries_sent(&t);
	prepare_got(&t, b, "emptytest_1", &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_READ_ONLY, "%s", g.msg);
	ck_assert_int_eq(g.code, 0);
	b = begin_ok(&t);
	end_branch(&t, b, coordinator_pg_branch_commit, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	b = begin_ok(&t);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	ck_assert_uint_eq(queries_sent(&t), q0);
	/* The connection went back clean: the next branch works on it. */
	b = begin_ok(&t);
	exec_ok(&t, b, "SELECT 1", 0, NULL, &g);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	list_got(&t, "emptytest_", &g);
	ck_assert_int_eq(g.nrows, 0);
	ctx_close(&t);
}
END_TEST

START_TEST(connection_lost_before_the_first_statement)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	char conninfo[512];

	snprintf(conninfo, sizeof(conninfo), "%s application_name=bw_victim",
		 pg_harness_conninfo(harness, 0));
	config_defaults(&cfg, "bank_a", conninfo);
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	b = begin_ok(&t);
	/* The server drops the pinned connection before BEGIN went out;
	 * the loop does not run in between, so the statement meets it. */
	admin_exec(0, "SELECT pg_terminate_backend(pid) FROM "
		      "pg_stat_activity WHERE application_name = 'bw_victim'");
	exec_got(&t, b, "SELECT 1", 0, NULL, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_ECONNLOST);
	ck_assert(!g.in_doubt);
	ck_assert_msg(strstr(g.msg, "cannot run statement on bank_a:") == g.msg,
		      "%s", g.msg);
	/* Prepare votes no, not in doubt; rollback is fine. */
	prepare_got(&t, b, "bwtest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert(!g.in_doubt);
	/* The pool reconnects for the next branch. */
	b = begin_ok(&t);
	exec_ok(&t, b, "SELECT 2", 0, NULL, &g);
	ck_assert_str_eq(g.vals[0][0], "2");
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ctx_close(&t);
}
END_TEST

/* Runs stmts in one committed branch; returns the resets it caused. */
static uint64_t resets_after(struct ctx *t, const char *const *stmts, int n)
{
	struct coordinator_pg_branch *b = begin_ok(t);
	uint64_t r0 = resets_sent(t);
	struct got g;

	for (int i = 0; i < n; i++)
		exec_got(t, b, stmts[i], 0, NULL, &g);
	/* The reset, if any, goes out before the rollback answers. */
	end_branch(t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	return resets_sent(t) - r0;
}

START_TEST(plain_dml_branch_skips_the_reset)
{
	static const char *const dml[] = {
	    "INSERT INTO dml_t VALUES (1), (2)",
	    "UPDATE dml_t SET v = v + 1 WHERE v > 1",
	    "DELETE FROM dml_t WHERE v = 1",
	    "INSERT INTO dml_t VALUES (7) RETURNING v",
	    "MERGE INTO dml_t d USING (SELECT 9 AS v) s ON d.v = s.v "
	    "WHEN NOT MATCHED THEN INSERT VALUES (s.v)",
	};
	static const char *const sel[] = {"INSERT INTO dml_t VALUES (3)",
					  "SELECT count(*) FROM dml_t"};
	static const char *const set[] = {"SET statement_timeout = 0"};
	static const char *const fn[] = {
	    "SELECT set_config('statement_timeout', '0', false)"};
	static const char *const failed[] = {"INSERT INTO dml_t VALUES (1/0)"};
	struct coordinator_pg_config cfg;
	struct coordinator_pg_branch *b;
	struct ctx t;
	struct got g;
	char v[64];

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1; /* every branch on the same session */
	ctx_open(&t, &cfg);
	run_committed(&t, "CREATE TABLE IF NOT EXISTS dml_t (v int)", 0, NULL);
	ck_assert_uint_eq(resets_after(&t, dml, 5), 0);
	/* A prepared DML branch neither. */
	b = begin_ok(&t);
	exec_ok(&t, b, "INSERT INTO dml_t VALUES (5)", 0, NULL, &g);
	{
		uint64_t r0 = resets_sent(&t);

		prepare_got(&t, b, "dmltest_1", &g);
		ck_assert(g.outcome == COORDINATOR_PG_OK);
		gid_op(&t, coordinator_pg_rollback_prepared, "dmltest_1", &g);
		ck_assert(g.outcome == COORDINATOR_PG_OK);
		ck_assert_uint_eq(resets_sent(&t), r0);
	}
	/* Anything else resets, and the session state does not leak. */
	ck_assert_uint_eq(resets_after(&t, sel, 2), 1);
	ck_assert_uint_eq(resets_after(&t, set, 1), 1);
	query_one(&t, "SHOW statement_timeout", v, sizeof(v));
	ck_assert_str_eq(v, "10s");
	ck_assert_uint_eq(resets_after(&t, fn, 1), 1);
	query_one(&t, "SHOW statement_timeout", v, sizeof(v));
	ck_assert_str_eq(v, "10s");
	/* A failed statement may have done anything before it failed. */
	ck_assert_uint_eq(resets_after(&t, failed, 1), 1);
	ctx_close(&t);
}
END_TEST

START_TEST(transaction_control_is_refused_before_it_runs)
{
	static const char *const refused[] = {
	    "COMMIT",
	    "  /* a /* nested */ comment */ -- and a line\n commit work",
	    "END",
	    "abort",
	    "ROLLBACK AND CHAIN",
	    "rollback transaction",
	    "PREPARE TRANSACTION 'sneaky_1'",
	    "prepare\ttransaction 'sneaky_2'",
	    "COMMIT PREPARED 'sneaky_1'",
	};
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	char v[64];
	uint64_t q0;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	run_committed(&t, "CREATE TABLE IF NOT EXISTS tc_t (v text)", 0, NULL);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		b = begin_ok(&t);
		exec_ok(&t, b, "INSERT INTO tc_t VALUES ('x')", 0, NULL, &g);
		q0 = queries_sent(&t);
		exec_got(&t, b, refused[i], 0, NULL, &g);
		ck_assert_msg(g.outcome == COORDINATOR_PG_FAILED &&
				  g.code == COORDINATOR_PG_EENDED,
			      "%s: %s", refused[i], g.msg);
		/* Not sent; only the driver's own ROLLBACK went out. */
		ck_assert_msg(queries_sent(&t) == q0 + 1, "%s was sent",
			      refused[i]);
		prepare_got(&t, b, "tctest_1", &g);
		ck_assert(g.outcome == COORDINATOR_PG_FAILED);
		ck_assert_int_eq(g.code, COORDINATOR_PG_EENDED);
	}
	/* Also as a branch's very first statement (BEGIN not yet sent). */
	b = begin_ok(&t);
	exec_got(&t, b, "commit", 0, NULL, &g);
	ck_assert_int_eq(g.code, COORDINATOR_PG_EENDED);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	query_one(&t, "SELECT count(*) FROM tc_t", v, sizeof(v));
	ck_assert_str_eq(v, "0");
	list_got(&t, "sneaky_", &g);
	ck_assert_int_eq(g.nrows, 0);
	/* Savepoints and named prepared statements are not transaction
	 * control. */
	b = begin_ok(&t);
	exec_ok(&t, b, "SAVEPOINT s1", 0, NULL, &g);
	exec_ok(&t, b, "INSERT INTO tc_t VALUES ('undone')", 0, NULL, &g);
	exec_ok(&t, b, "ROLLBACK TO SAVEPOINT s1", 0, NULL, &g);
	exec_ok(&t, b, "rollback work to s1", 0, NULL, &g);
	exec_ok(&t, b, "PREPARE tc_q AS SELECT 1", 0, NULL, &g);
	exec_ok(&t, b, "INSERT INTO tc_t VALUES ('kept')", 0, NULL, &g);
	end_branch(&t, b, coordinator_pg_branch_commit, &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "%s", g.msg);
	query_one(&t, "SELECT string_agg(v, ',') FROM tc_t", v, sizeof(v));
	ck_assert_str_eq(v, "kept");
	run_committed(&t, "DELETE FROM tc_t", 0, NULL);
	ctx_close(&t);
}
END_TEST

struct chain {
	struct ctx *t;
	int left; /* operations still to start from callbacks */
	int done;
	int closed_results; /* results that came as ECLOSED */
	bool finished;
	bool close_in_callback;
	struct got pending[4];
};

/* Every result starts the next operation from inside the callback; the
 * last one closes the resource from inside its callback. */
static void on_chain(const struct coordinator_pg_result *r, void *data)
{
	struct chain *ch = data;
	struct coordinator_pg_branch *b = NULL;

	ch->done++;
	if (r->code == COORDINATOR_PG_ECLOSED)
		ch->closed_results++;
	if (r->branch != NULL) {
		/* a begin: end the branch again, from the callback */
		ck_assert_int_eq(
		    coordinator_pg_branch_rollback(r->branch, on_chain, ch), 0);
		return;
	}
	if (ch->left > 0) {
		ch->left--;
		if (ch->left % 2)
			ck_assert_int_eq(
			    coordinator_pg_begin(ch->t->pg, on_chain, ch, &b),
			    0);
		else
			ck_assert_int_eq(
			    coordinator_pg_check(ch->t->pg, on_chain, ch), 0);
		return;
	}
	if (ch->close_in_callback && !ch->finished) {
		ch->finished = true;
		/* Requests still queued complete (ECLOSED) inside close. */
		for (int i = 0; i < 4; i++) {
			memset(&ch->pending[i], 0, sizeof(ch->pending[i]));
			ck_assert_int_eq(
			    coordinator_pg_list_prepared(
				ch->t->pg, "x", on_result, &ch->pending[i]),
			    0);
		}
		coordinator_pg_close(ch->t->pg, on_closed, &ch->t->closed);
		for (int i = 0; i < 4; i++) {
			ck_assert(ch->pending[i].done);
			ck_assert_int_eq(ch->pending[i].code,
					 COORDINATOR_PG_ECLOSED);
		}
		/* After close every call is refused, nothing fires. */
		ck_assert_int_eq(coordinator_pg_check(ch->t->pg, on_chain, ch),
				 COORDINATOR_PG_ECLOSED);
	}
	ch->finished = true;
}

START_TEST(callbacks_may_start_work_and_close)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct chain ch = {0};

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	ch.t = &t;
	ch.left = 20;
	ch.close_in_callback = true;
	ck_assert_int_eq(coordinator_pg_check(t.pg, on_chain, &ch), 0);
	ck_assert(run_until(&t, &ch.finished, 20000));
	/* 21 checks/begins, 10 rollbacks of the begun branches */
	ck_assert_int_eq(ch.done, 31);
	ck_assert_int_eq(ch.closed_results, 0);
	/* The driver is closing: finish the loop by hand. */
	uv_close((uv_handle_t *)&t.watchdog, NULL);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	ck_assert(t.closed);
	ck_assert_int_eq(uv_loop_close(&t.loop), 0);
}
END_TEST

START_TEST(startup_settings_keep_user_options_and_survive_reset)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	char conninfo[512], v[64];

	snprintf(conninfo, sizeof(conninfo),
		 "%s options='-c work_mem=7MB -c statement_timeout=1'",
		 pg_harness_conninfo(harness, 0));
	config_defaults(&cfg, "bank_a", conninfo);
	cfg.pool_size = 1;
	cfg.statement_timeout_ms = 4000;
	ctx_open(&t, &cfg);
	b = begin_ok(&t);
	exec_ok(&t, b, "SET work_mem = '1MB'", 0, NULL, &g);
	exec_ok(&t, b, "SET application_name = 'someone'", 0, NULL, &g);
	end_branch(&t, b, coordinator_pg_branch_commit, &g);
	/* After the reset: the user's option, our timeout (it comes last),
	 * our fallback application name. */
	query_one(&t, "SHOW work_mem", v, sizeof(v));
	ck_assert_str_eq(v, "7MB");
	query_one(&t, "SHOW statement_timeout", v, sizeof(v));
	ck_assert_str_eq(v, "4s");
	query_one(&t, "SHOW application_name", v, sizeof(v));
	ck_assert_str_eq(v, "decree");
	ctx_close(&t);
}
END_TEST

START_TEST(pool_is_bounded_and_queues)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg_stats st;
	struct ctx t;
	struct coordinator_pg_branch *b1, *b2, *b3 = NULL, *b4 = NULL;
	struct got g3 = {0}, g4 = {0}, g;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 2;
	cfg.queue_limit = 1;
	ctx_open(&t, &cfg);
	b1 = begin_ok(&t);
	b2 = begin_ok(&t);
	g3.loop = &t.loop;
	ck_assert_int_eq(coordinator_pg_begin(t.pg, on_result, &g3, &b3), 0);
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_eq(st.queued, 1);
	ck_assert_int_eq(st.open, 2);
	ck_assert_int_eq(st.pinned, 2);
	/* The queue is full: a clear synchronous error, no callback. */
	ck_assert_int_eq(coordinator_pg_begin(t.pg, on_result, &g4, &b4),
			 COORDINATOR_PG_EQUEUE_FULL);
	ck_assert_ptr_null(b4);
	ck_assert_str_eq(coordinator_pg_strerror(COORDINATOR_PG_EQUEUE_FULL),
			 "too many requests waiting for a connection");
	/* Still queued after the loop turns: no third connection. */
	exec_ok(&t, b1, "SELECT 1", 0, NULL, &g);
	ck_assert(!g3.done);
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_le(st.open + st.connecting, 2);
	/* Releasing one connection lets the queued branch begin. */
	end_branch(&t, b1, coordinator_pg_branch_rollback, &g);
	wait_got(&t, &g3);
	ck_assert(g3.outcome == COORDINATOR_PG_OK);
	ck_assert_ptr_eq(g3.branch, b3);
	exec_ok(&t, b3, "SELECT 3", 0, NULL, &g);
	ck_assert_str_eq(g.vals[0][0], "3");
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_eq(st.queued, 0);
	ck_assert_int_eq(st.pinned, 2);
	end_branch(&t, b2, coordinator_pg_branch_rollback, &g);
	end_branch(&t, b3, coordinator_pg_branch_rollback, &g);
	ck_assert(!g4.done);
	ctx_close(&t);
}
END_TEST

START_TEST(queued_request_times_out)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b1, *b2 = NULL;
	struct got g2 = {0}, g;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	cfg.queue_timeout_ms = 200;
	ctx_open(&t, &cfg);
	b1 = begin_ok(&t);
	g2.loop = &t.loop;
	ck_assert_int_eq(coordinator_pg_begin(t.pg, on_result, &g2, &b2), 0);
	wait_got(&t, &g2);
	ck_assert(g2.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g2.code, COORDINATOR_PG_ETIMEOUT);
	ck_assert_msg(strstr(g2.msg, "bank_a") != NULL, "%s", g2.msg);
	end_branch(&t, b1, coordinator_pg_branch_rollback, &g);
	ctx_close(&t);
}
END_TEST

START_TEST(server_timeout_cancels_sleep)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	uint64_t t0;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.statement_timeout_ms = 300;
	cfg.timeout_grace_ms = 5000;
	ctx_open(&t, &cfg);
	b = begin_ok(&t);
	t0 = uv_now(&t.loop);
	exec_got(&t, b, "SELECT pg_sleep(20)", 0, NULL, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_str_eq(g.sqlstate, "57014");
	ck_assert_msg(g.at - t0 < 5000, "took %llu ms",
		      (unsigned long long)(g.at - t0));
	/* The server cancelled; the connection stays (the branch is in a
	 * failed transaction and rolls back). */
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	ctx_close(&t);
}
END_TEST

START_TEST(client_timer_cancels_and_drops_silent_server)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg_stats st;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	char v[64] = "";
	uint64_t t0;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.statement_timeout_ms = 300;
	cfg.timeout_grace_ms = 300;
	ctx_open(&t, &cfg);
	b = begin_ok(&t);
	/* The user's statement switches the server-side timeout off: only the
	 * client timer is left to stop the sleep. */
	exec_ok(&t, b, "SET LOCAL statement_timeout = 0", 0, NULL, &g);
	t0 = uv_now(&t.loop);
	exec_got(&t, b, "SELECT pg_sleep(30) AS client_timer_victim", 0, NULL,
		 &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_ETIMEOUT);
	ck_assert_msg(g.at - t0 >= 500 && g.at - t0 < 5000, "took %llu ms",
		      (unsigned long long)(g.at - t0));
	ck_assert_msg(strstr(g.msg, "cannot run statement on bank_a") == g.msg,
		      "%s", g.msg);
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_eq(st.timeouts, 1);
	/* The branch lost its connection: prepare votes no, not in doubt. */
	prepare_got(&t, b, "timeouttest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_ETIMEOUT);
	ck_assert(!g.in_doubt);
	/* The server stops the sleep (the cancel, or its check for a dropped
	 * client) well before the 30 s are up. */
	for (uint64_t end = uv_now(&t.loop) + 20000; uv_now(&t.loop) < end;) {
		query_one(&t,
			  "SELECT count(*) FROM pg_stat_activity WHERE query "
			  "LIKE '%client_timer_victim%' AND pid <> "
			  "pg_backend_pid()",
			  v, sizeof(v));
		if (strcmp(v, "0") == 0)
			break;
	}
	ck_assert_str_eq(v, "0");
	ctx_close(&t);
}
END_TEST

START_TEST(unreachable_server_error_names_resource_hides_password)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct got g = {0}, g2 = {0};
	char *logbuf = NULL;
	size_t loglen = 0;
	FILE *logf = open_memstream(&logbuf, &loglen);
	struct coordinator_pg_branch *b = NULL;

	ck_assert_ptr_nonnull(logf);
	log_set_output(logf);
	config_defaults(&cfg, "bank_x",
			"host=127.0.0.1 port=1 dbname=postgres user=postgres "
			"password=hunter2secret");
	ctx_open(&t, &cfg);
	g.loop = &t.loop;
	ck_assert_int_eq(coordinator_pg_check(t.pg, on_result, &g), 0);
	wait_got(&t, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_ECONNECT);
	ck_assert_msg(strstr(g.msg, "bank_x") != NULL, "%s", g.msg);
	ck_assert_msg(strstr(g.msg, "refused") != NULL, "%s", g.msg);
	ck_assert(strstr(g.msg, "hunter2") == NULL);
	ck_assert(!coordinator_pg_is_up(t.pg));
	ck_assert(strstr(coordinator_pg_last_error(t.pg), "bank_x") != NULL);
	ck_assert(strstr(coordinator_pg_last_error(t.pg), "hunter2") == NULL);
	/* While down, a branch fails fast with the same error. */
	g2.loop = &t.loop;
	ck_assert_int_eq(coordinator_pg_begin(t.pg, on_result, &g2, &b), 0);
	wait_got(&t, &g2);
	ck_assert(g2.outcome == COORDINATOR_PG_FAILED);
	ck_assert_msg(strstr(g2.msg, "cannot begin branch on bank_x") == g2.msg,
		      "%s", g2.msg);
	ctx_close(&t);
	log_set_output(NULL);
	fclose(logf);
	ck_assert_msg(strstr(logbuf, "connect_failed") != NULL, "%s", logbuf);
	ck_assert_msg(strstr(logbuf, "hunter2") == NULL, "%s", logbuf);
	free(logbuf);
}
END_TEST

START_TEST(bad_config_is_refused)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg *pg = NULL;
	uv_loop_t loop;
	char err[256];

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	config_defaults(&cfg, "bank_a",
			"host=127.0.0.1 password=hunter2 bogus");
	ck_assert_int_eq(
	    coordinator_pg_open(&loop, &cfg, &pg, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(pg);
	ck_assert_msg(strstr(err, "bank_a") != NULL, "%s", err);
	ck_assert(strstr(err, "hunter2") == NULL);
	config_defaults(&cfg, "", "host=127.0.0.1");
	ck_assert_int_eq(
	    coordinator_pg_open(&loop, &cfg, &pg, err, sizeof(err)), -EINVAL);
	config_defaults(&cfg, "bank_a", "host=127.0.0.1");
	cfg.pool_size = -1;
	ck_assert_int_eq(
	    coordinator_pg_open(&loop, &cfg, &pg, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(out_of_memory_at_open_leaves_nothing)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg *pg = NULL;
	uv_loop_t loop;
	char err[256];
	int rc = -ENOMEM;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	for (long n = 1; rc == -ENOMEM && n < 400; n++) {
		mem_fail_after(n);
		rc = coordinator_pg_open(&loop, &cfg, &pg, err, sizeof(err));
		mem_fail_reset();
		if (rc == -ENOMEM) {
			ck_assert_ptr_null(pg);
			ck_assert_msg(strstr(err, "out of memory") != NULL,
				      "%s", err);
		}
	}
	ck_assert_int_eq(rc, 0);
	coordinator_pg_close(pg, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(close_fails_pending_requests)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b1, *b2 = NULL;
	struct got g2 = {0}, g3 = {0};

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 1;
	ctx_open(&t, &cfg);
	b1 = begin_ok(&t);
	ck_assert_int_eq(coordinator_pg_begin(t.pg, on_result, &g2, &b2), 0);
	ck_assert_int_eq(coordinator_pg_branch_exec(b1, "SELECT pg_sleep(5)", 0,
						    NULL, on_result, &g3),
			 0);
	coordinator_pg_close(t.pg, on_closed, &t.closed);
	ck_assert(g2.done && g3.done);
	ck_assert_int_eq(g2.code, COORDINATOR_PG_ECLOSED);
	ck_assert_int_eq(g3.code, COORDINATOR_PG_ECLOSED);
	ck_assert_msg(strstr(g2.msg, "bank_a") != NULL, "%s", g2.msg);
	uv_close((uv_handle_t *)&t.watchdog, NULL);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	ck_assert(t.closed);
	ck_assert_int_eq(uv_loop_close(&t.loop), 0);
}
END_TEST

START_TEST(unix_socket_conninfo_works)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct got g = {0};

	config_defaults(&cfg, "bank_unix",
			pg_harness_conninfo_unix(harness, 0));
	ctx_open(&t, &cfg);
	g.loop = &t.loop;
	ck_assert_int_eq(coordinator_pg_check(t.pg, on_result, &g), 0);
	wait_got(&t, &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "%s", g.msg);
	ck_assert_str_eq(coordinator_pg_name(t.pg), "bank_unix");
	/* A Unix-domain socket has no cork: its queries go out at once. */
	{
		struct coordinator_pg_branch *b = begin_ok(&t);
		struct coordinator_pg_stats st;
		const char *p[1] = {"7"};

		memset(&g, 0, sizeof(g));
		g.loop = &t.loop;
		ck_assert_int_eq(coordinator_pg_branch_exec(
				     b, "SELECT $1::int", 1, p, on_result, &g),
				 0);
		coordinator_pg_stats_get(t.pg, &st);
		ck_assert_int_eq(st.corked, 0);
		wait_got(&t, &g);
		ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "%s", g.msg);
		ck_assert_str_eq(g.vals[0][0], "7");
		coordinator_pg_stats_get(t.pg, &st);
		ck_assert_uint_eq(st.batches, 0);
		end_branch(&t, b, coordinator_pg_branch_rollback, &g);
	}
	ctx_close(&t);
}
END_TEST

/* The queries sent during one loop turn wait in the kernel and go out
 * together when the turn ends: one batch, nothing held once the loop
 * waits, every answer right. */
START_TEST(sends_of_one_turn_go_out_together)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg_stats st;
	struct coordinator_pg_branch *b[3];
	struct got g[3], e;
	const char *p[3][1] = {{"10"}, {"11"}, {"12"}};
	struct ctx t;
	uint64_t batches;

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 3;
	ctx_open(&t, &cfg);
	for (int i = 0; i < 3; i++)
		b[i] = begin_ok(&t);
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_eq(st.corked, 0);
	batches = st.batches;
	for (int i = 0; i < 3; i++) {
		memset(&g[i], 0, sizeof(g[i]));
		g[i].loop = &t.loop;
		ck_assert_int_eq(
		    coordinator_pg_branch_exec(b[i], "SELECT $1::int + 1", 1,
					       p[i], on_result, &g[i]),
		    0);
	}
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_eq(st.corked, 3);
	ck_assert_uint_eq(st.batches, batches);
	for (int i = 0; i < 3; i++) {
		char want[8];

		wait_got(&t, &g[i]);
		ck_assert_msg(g[i].outcome == COORDINATOR_PG_OK, "%s",
			      g[i].msg);
		snprintf(want, sizeof(want), "%d", 11 + i);
		ck_assert_str_eq(g[i].vals[0][0], want);
	}
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_int_eq(st.corked, 0);
	ck_assert_uint_eq(st.batches, batches + 1);
	for (int i = 0; i < 3; i++)
		end_branch(&t, b[i], coordinator_pg_branch_rollback, &e);
	ctx_close(&t);
}
END_TEST

struct many {
	struct ctx *t;
	int done, failed, max_open, pool;
	bool all;
};

static void on_many(const struct coordinator_pg_result *r, void *data)
{
	struct many *m = data;
	struct coordinator_pg_stats st;

	coordinator_pg_stats_get(m->t->pg, &st);
	if (st.open + st.connecting > m->max_open)
		m->max_open = st.open + st.connecting;
	if (r->outcome != COORDINATOR_PG_OK &&
	    r->outcome != COORDINATOR_PG_NOT_FOUND)
		m->failed++;
	if (++m->done == 60)
		m->all = true;
}

START_TEST(many_requests_share_a_small_pool)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct many m = {0};
	char gid[32];

	config_defaults(&cfg, "bank_a", pg_harness_conninfo(harness, 0));
	cfg.pool_size = 3;
	ctx_open(&t, &cfg);
	m.t = &t;
	for (int i = 0; i < 20; i++) {
		snprintf(gid, sizeof(gid), "many_%d", i);
		ck_assert_int_eq(
		    coordinator_pg_commit_prepared(t.pg, gid, on_many, &m), 0);
		ck_assert_int_eq(
		    coordinator_pg_list_prepared(t.pg, "many_", on_many, &m),
		    0);
		ck_assert_int_eq(coordinator_pg_check(t.pg, on_many, &m), 0);
	}
	ck_assert(run_until(&t, &m.all, 20000));
	ck_assert_int_eq(m.done, 60);
	ck_assert_int_eq(m.failed, 0);
	ck_assert_int_le(m.max_open, 3);
	ctx_close(&t);
}
END_TEST

START_TEST(allocation_failures_fail_cleanly)
{
	struct ctx t;
	struct coordinator_pg_branch *b;
	const char *p[1] = {"7"};
	struct got g;
	bool ok = false;
	long n;
	int rc;

	open_server(&t, 0, "bank_a");
	run_committed(&t, "CREATE TABLE IF NOT EXISTS oom_t (v text)", 0, NULL);
	b = begin_ok(&t);
	for (n = 1; !ok && n < 60; n++) {
		memset(&g, 0, sizeof(g));
		mem_fail_after(n);
		rc = coordinator_pg_branch_exec(
		    b,
		    "SELECT $1::int AS v, 'x' AS w FROM "
		    "generate_series(1, 3)",
		    1, p, on_result, &g);
		if (rc < 0) {
			mem_fail_reset();
			ck_assert_int_eq(rc, -ENOMEM);
			continue;
		}
		wait_got(&t, &g);
		mem_fail_reset();
		if (g.outcome == COORDINATOR_PG_OK) {
			ck_assert_int_eq(g.nrows, 3);
			ck_assert_str_eq(g.vals[2][0], "7");
			ok = true;
		} else {
			ck_assert_int_eq(g.code, -ENOMEM);
			ck_assert_msg(strstr(g.msg, "out of memory") != NULL,
				      "%s", g.msg);
		}
	}
	ck_assert(ok);
	end_branch(&t, b, coordinator_pg_branch_rollback, &g);

	/* Prepare: every failure votes no (or fails at once); nothing is
	 * left prepared; the pool keeps working. */
	ok = false;
	for (n = 1; !ok && n < 60; n++) {
		b = begin_ok(&t);
		exec_ok(&t, b, "INSERT INTO oom_t VALUES ('x')", 0, NULL, &g);
		memset(&g, 0, sizeof(g));
		mem_fail_after(n);
		rc = coordinator_pg_branch_prepare(b, "oomtest_1", on_result,
						   &g);
		if (rc < 0) {
			mem_fail_reset();
			ck_assert_int_eq(rc, -ENOMEM);
			end_branch(&t, b, coordinator_pg_branch_rollback, &g);
			continue;
		}
		wait_got(&t, &g);
		mem_fail_reset();
		if (g.outcome == COORDINATOR_PG_OK) {
			ok = true;
		} else {
			ck_assert_int_eq(g.code, -ENOMEM);
			list_got(&t, "oomtest_", &g);
			ck_assert_int_eq(g.nrows, 0);
		}
	}
	ck_assert(ok);
	gid_op(&t, coordinator_pg_rollback_prepared, "oomtest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_OK);
	ctx_close(&t);
}
END_TEST

static bool is_up_with_conn(struct ctx *t)
{
	struct coordinator_pg_stats st;

	coordinator_pg_stats_get(t->pg, &st);
	return coordinator_pg_is_up(t->pg) && st.open >= 1;
}

/* Runs the loop until the pool has reconnected (or ms pass). */
static bool wait_reconnected(struct ctx *t, uint64_t ms)
{
	uint64_t deadline;

	uv_update_time(&t->loop);
	deadline = uv_now(&t->loop) + ms;
	uv_timer_start(&t->watchdog, on_watchdog, 50, 50);
	while (!is_up_with_conn(t) && uv_now(&t->loop) < deadline)
		uv_run(&t->loop, UV_RUN_ONCE);
	uv_timer_stop(&t->watchdog);
	return is_up_with_conn(t);
}

START_TEST(killed_server_gives_clean_error_and_pool_reconnects)
{
	struct coordinator_pg_config cfg;
	struct coordinator_pg_stats st;
	struct ctx t;
	struct coordinator_pg_branch *b, *idle_b;
	struct got g;
	char conninfo[512];

	snprintf(conninfo, sizeof(conninfo), "%s password=hunter2secret",
		 pg_harness_conninfo(harness, 1));
	config_defaults(&cfg, "bank_b", conninfo);
	ctx_open(&t, &cfg);
	run_committed(&t, "CREATE TABLE IF NOT EXISTS kill_t (v text)", 0,
		      NULL);
	b = begin_ok(&t);
	idle_b = begin_ok(&t);
	exec_ok(&t, b, "INSERT INTO kill_t VALUES ('lost')", 0, NULL, &g);

	ck_assert_int_eq(pg_harness_kill_server(harness, 1), 0);
	exec_got(&t, b, "INSERT INTO kill_t VALUES ('more')", 0, NULL, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_ECONNLOST);
	ck_assert_msg(strstr(g.msg, "cannot run statement on bank_b:") == g.msg,
		      "%s", g.msg);
	ck_assert(strstr(g.msg, "hunter2") == NULL);
	prepare_got(&t, b, "killtest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_msg(strstr(g.msg, "cannot prepare branch on bank_b:") ==
			  g.msg,
		      "%s", g.msg);
	/* A branch that sat idle when the server died rolls back fine: the
	 * server dropped its work with the connection. */
	end_branch(&t, idle_b, coordinator_pg_branch_rollback, &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "%s", g.msg);
	/* While it is down, new work fails with a connect error. */
	gid_op(&t, coordinator_pg_commit_prepared, "killtest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_msg(g.code == COORDINATOR_PG_ECONNECT ||
			  g.code == COORDINATOR_PG_ECONNLOST,
		      "%d %s", g.code, g.msg);
	ck_assert(strstr(g.msg, "hunter2") == NULL);

	ck_assert_int_eq(pg_harness_start_server(harness, 1), 0);
	ck_assert_msg(wait_reconnected(&t, 15000), "no reconnect: %s",
		      coordinator_pg_last_error(t.pg));
	coordinator_pg_stats_get(t.pg, &st);
	ck_assert_uint_ge(st.connect_failures, 1);
	ck_assert_uint_ge(st.lost, 1);
	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(coordinator_pg_check(t.pg, on_result, &g), 0);
	wait_got(&t, &g);
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK, "%s", g.msg);
	/* The lost branch's work is gone. */
	{
		char v[64];

		query_one(&t, "SELECT count(*) FROM kill_t", v, sizeof(v));
		ck_assert_str_eq(v, "0");
	}
	ctx_close(&t);
}
END_TEST

START_TEST(server_without_prepared_transactions_is_refused)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct got g = {0};

	admin_exec(1, "ALTER SYSTEM SET max_prepared_transactions = 0");
	ck_assert_int_eq(pg_harness_stop_server(harness, 1), 0);
	ck_assert_int_eq(pg_harness_start_server(harness, 1), 0);

	config_defaults(&cfg, "bank_b", pg_harness_conninfo(harness, 1));
	ctx_open(&t, &cfg);
	g.loop = &t.loop;
	ck_assert_int_eq(coordinator_pg_check(t.pg, on_result, &g), 0);
	wait_got(&t, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_EREFUSED);
	ck_assert_msg(strstr(g.msg, "bank_b") != NULL, "%s", g.msg);
	ck_assert_msg(strstr(g.msg, "max_prepared_transactions") != NULL, "%s",
		      g.msg);
	ck_assert(!coordinator_pg_is_up(t.pg));
	ck_assert_msg(strstr(coordinator_pg_last_error(t.pg),
			     "max_prepared_transactions") != NULL,
		      "%s", coordinator_pg_last_error(t.pg));

	/* Fixed and restarted, the resource comes back by itself. */
	admin_exec(1, "ALTER SYSTEM RESET max_prepared_transactions");
	ck_assert_int_eq(pg_harness_stop_server(harness, 1), 0);
	ck_assert_int_eq(pg_harness_start_server(harness, 1), 0);
	ck_assert_msg(wait_reconnected(&t, 15000), "still refused: %s",
		      coordinator_pg_last_error(t.pg));
	ctx_close(&t);
}
END_TEST

START_TEST(lost_answers_are_in_doubt)
{
	struct coordinator_pg_config cfg;
	struct ctx t;
	struct coordinator_pg_branch *b;
	struct got g;
	char v[64] = "";

	config_defaults(&cfg, "bank_b", pg_harness_conninfo(harness, 1));
	cfg.statement_timeout_ms = 300;
	cfg.timeout_grace_ms = 300;
	ctx_open(&t, &cfg);
	run_committed(&t, "CREATE TABLE IF NOT EXISTS doubt_t (v text)", 0,
		      NULL);
	/* A synchronous standby that never comes: PREPARE and COMMIT are
	 * written locally, then wait for it forever, ignoring
	 * statement_timeout.  Only the client timer ends the wait. */
	admin_exec(1, "ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
	admin_exec(1, "SELECT pg_reload_conf()");
	ck_assert(admin_wait_value(
	    1, "SELECT current_setting('synchronous_standby_names')",
	    "nobody"));

	b = begin_ok(&t);
	for (uint64_t end = uv_now(&t.loop) + 20000;
	     uv_now(&t.loop) < end && strcmp(v, "nobody") != 0;) {
		exec_ok(&t, b,
			"SELECT current_setting('synchronous_standby_names')",
			0, NULL, &g);
		snprintf(v, sizeof(v), "%s", g.vals[0][0]);
	}
	ck_assert_str_eq(v, "nobody");
	exec_ok(&t, b, "INSERT INTO doubt_t VALUES ('p')", 0, NULL, &g);
	prepare_got(&t, b, "doubttest_1", &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_ETIMEOUT);
	ck_assert(g.in_doubt);

	b = begin_ok(&t);
	exec_ok(&t, b, "INSERT INTO doubt_t VALUES ('c')", 0, NULL, &g);
	end_branch(&t, b, coordinator_pg_branch_commit, &g);
	ck_assert(g.outcome == COORDINATOR_PG_FAILED);
	ck_assert_int_eq(g.code, COORDINATOR_PG_ETIMEOUT);
	ck_assert(g.in_doubt);

	admin_exec(1, "ALTER SYSTEM RESET synchronous_standby_names");
	admin_exec(1, "SELECT pg_reload_conf()");
	ck_assert(admin_wait_value(
	    1, "SELECT current_setting('synchronous_standby_names')", ""));
	/* In doubt means exactly that: the prepare may have landed.  Abort
	 * is ROLLBACK PREPARED, and "not found" means nothing to undo. */
	/* A pooled backend may run one more command under the old setting
	 * (a reload is applied between commands), so allow a retry. */
	for (int i = 0; i < 3; i++) {
		memset(&g, 0, sizeof(g));
		g.loop = &t.loop;
		ck_assert_int_eq(coordinator_pg_rollback_prepared(
				     t.pg, "doubttest_1", on_result, &g),
				 0);
		wait_got(&t, &g);
		if (g.outcome != COORDINATOR_PG_FAILED)
			break;
	}
	ck_assert_msg(g.outcome == COORDINATOR_PG_OK ||
			  g.outcome == COORDINATOR_PG_NOT_FOUND,
		      "%s", g.msg);
	list_got(&t, "doubttest_", &g);
	ck_assert_int_eq(g.nrows, 0);
	ctx_close(&t);
}
END_TEST

START_TEST(strerror_covers_every_code)
{
	for (int c = COORDINATOR_PG_EBASE + 1; c < COORDINATOR_PG_ELAST; c++) {
		const char *s = coordinator_pg_strerror(c);

		ck_assert_ptr_nonnull(s);
		ck_assert_str_ne(s, "unknown error");
	}
	ck_assert_str_eq(coordinator_pg_strerror(0), "success");
	ck_assert_str_eq(coordinator_pg_strerror(-ENOMEM), strerror(ENOMEM));
	ck_assert_str_eq(coordinator_pg_strerror(1), "unknown error");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("driver_pg");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed, rc;

	log_set_level(LOG_WARN);
	rc = pg_harness_start(2, &harness);
	if (rc < 0) {
		fprintf(stderr, "cannot start PostgreSQL servers: %s\n",
			strerror(-rc));
		return 1;
	}
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, strerror_covers_every_code);
	tcase_add_test(tc, bad_config_is_refused);
	tcase_add_test(tc, out_of_memory_at_open_leaves_nothing);
	tcase_add_test(tc, statement_with_params_returns_rows);
	tcase_add_test(tc, returned_rows_stop_at_the_limit);
	tcase_add_test(tc, statement_error_carries_sqlstate_detail_hint);
	tcase_add_test(tc, read_only_branch_commits_locally);
	tcase_add_test(tc, prepare_then_commit_prepared);
	tcase_add_test(tc, written_branch_prepares_in_one_round_trip);
	tcase_add_test(tc, run_prepare_prepares_in_one_round_trip);
	tcase_add_test(tc, run_prepare_statement_error_prepares_nothing);
	tcase_add_test(tc, run_prepare_cancel_keeps_the_answer);
	tcase_add_test(tc, run_prepare_reuses_prepared_statements);
	tcase_add_test(tc, prepare_then_rollback_prepared);
	tcase_add_test(tc, unknown_gid_is_not_found);
	tcase_add_test(tc, gid_is_an_escaped_literal);
	tcase_add_test(tc, bad_gids_are_refused_and_change_nothing);
	tcase_add_test(tc, list_matches_the_prefix_literally);
	tcase_add_test(tc, unix_socket_conninfo_works);
	tcase_add_test(tc, sends_of_one_turn_go_out_together);
	tcase_add_test(tc,
		       statement_that_ends_the_transaction_breaks_the_branch);
	tcase_add_test(tc, session_state_does_not_leak_between_branches);
	tcase_add_test(tc, transaction_control_is_refused_before_it_runs);
	tcase_add_test(tc, begin_goes_out_with_the_first_statement);
	tcase_add_test(tc, branch_without_statements_sends_nothing);
	tcase_add_test(tc, connection_lost_before_the_first_statement);
	tcase_add_test(tc, plain_dml_branch_skips_the_reset);
	tcase_add_test(tc,
		       startup_settings_keep_user_options_and_survive_reset);
	tcase_add_test(tc, many_requests_share_a_small_pool);
	tcase_add_test(tc, allocation_failures_fail_cleanly);
	tcase_add_test(tc, pool_is_bounded_and_queues);
	tcase_add_test(tc, queued_request_times_out);
	tcase_add_test(tc, server_timeout_cancels_sleep);
	tcase_add_test(tc, client_timer_cancels_and_drops_silent_server);
	tcase_add_test(tc,
		       unreachable_server_error_names_resource_hides_password);
	tcase_add_test(tc, close_fails_pending_requests);
	tcase_add_test(tc, callbacks_may_start_work_and_close);
	tcase_add_test(tc, killed_server_gives_clean_error_and_pool_reconnects);
	tcase_add_test(tc, server_without_prepared_transactions_is_refused);
	tcase_add_test(tc, lost_answers_are_in_doubt);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	pg_harness_destroy(harness);
	return failed ? 1 : 0;
}
