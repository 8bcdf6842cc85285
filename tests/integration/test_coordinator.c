/*
 * test_coordinator.c - `decree coordinator` end to end against two real
 * PostgreSQL servers: a commit across both, an abort on a CHECK violation,
 * an abort with one database down before prepare, bad requests that change
 * nothing, the forced writes of each protocol case counted through
 * /metrics, and 8 concurrent clients x 500 transfers that conserve the
 * total.  (Crash points and a database restarted between the phases are in
 * test_coordinator_crash.c.)
 *
 * Two servers are started once in main() and shared: every test makes a
 * fresh accounts table on both (rolling back any prepared transaction a
 * failed test left), a fresh data_dir and its own cluster id, then runs
 * real coordinator processes ($DECREE_BIN) through tests/lib/coord.h.
 * Every wait polls a condition with a deadline.
 */
#include "common/common.h"
#include "tests/lib/coord.h"
#include "tests/lib/pg.h"

#include <check.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct pg_harness *harness;

#define ACCOUNTS 100
#define BALANCE	 1000

struct env {
	char dir[256];
	char cfg[320];
	char data[320];
	const char *ci[2];
	struct coord *c;
};

static void env_setup(struct env *e, const char *cluster, const char *extra)
{
	memset(e, 0, sizeof(*e));
	/* A test that failed half-way may have left a server stopped. */
	for (int i = 0; i < 2; i++)
		if (pg_harness_pid(harness, i) == 0)
			ck_assert_int_eq(pg_harness_start_server(harness, i),
					 0);
	e->ci[0] = pg_harness_conninfo(harness, 0);
	e->ci[1] = pg_harness_conninfo(harness, 1);
	ck_assert_int_eq(coord_tmpdir_make(e->dir, sizeof(e->dir)), 0);
	snprintf(e->cfg, sizeof(e->cfg), "%s/config.json", e->dir);
	snprintf(e->data, sizeof(e->data), "%s/data", e->dir);
	ck_assert_int_eq(
	    coord_config_write(e->cfg, cluster, e->data, e->ci, 2, extra), 0);
	ck_assert_int_eq(coord_bank_create(e->ci[0], ACCOUNTS, BALANCE), 0);
	ck_assert_int_eq(coord_bank_create(e->ci[1], ACCOUNTS, BALANCE), 0);
	ck_assert_int_eq(coord_start(e->cfg, NULL, &e->c), 0);
}

static void env_teardown(struct env *e)
{
	if (e->c != NULL)
		ck_assert_int_eq(coord_stop(e->c), 0);
	coord_free(e->c);
	e->c = NULL;
	coord_tmpdir_remove(e->dir);
}

static long long balance(const char *ci, int id)
{
	char sql[128];
	long long v = -1;

	snprintf(sql, sizeof(sql), "select balance from accounts where id = %d",
		 id);
	ck_assert_int_eq(coord_pg_int(ci, sql, &v), 0);
	return v;
}

static long long total(const char *ci)
{
	long long v = -1;

	ck_assert_int_eq(
	    coord_pg_int(ci, "select sum(balance) from accounts", &v), 0);
	return v;
}

static long long prepared(const char *ci)
{
	long long v = -1;

	ck_assert_int_eq(
	    coord_pg_int(ci, "select count(*) from pg_prepared_xacts", &v), 0);
	return v;
}

/* Polls until no prepared transaction is left on either server. */
static void assert_none_prepared(const struct env *e)
{
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(
		    coord_pg_wait_int(e->ci[i],
				      "select count(*) from pg_prepared_xacts",
				      0, 15000),
		    0);
}

/* A transfer: debit `from` on resource fr, credit `to` on resource tr. */
static void transfer_body(char *buf, size_t size, char fr, int from, char tr,
			  int to, int amount, const char *protocol)
{
	snprintf(buf, size,
		 "{%s%s%s\"branches\":["
		 "{\"resource\":\"bank_%c\",\"statements\":[{\"sql\":"
		 "\"update accounts set balance = balance - $1 where id = $2\","
		 "\"params\":[%d,%d]}]},"
		 "{\"resource\":\"bank_%c\",\"statements\":[{\"sql\":"
		 "\"update accounts set balance = balance + $1 where id = $2 "
		 "returning balance\",\"params\":[%d,%d]}]}]}",
		 protocol ? "\"protocol\":\"" : "", protocol ? protocol : "",
		 protocol ? "\"," : "", fr, amount, from, tr, amount, to);
}

static const char *jstr(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));

	return s ? s : "";
}

static json_t *jpath(json_t *j, const char *a, size_t i, const char *b)
{
	return json_object_get(json_array_get(json_object_get(j, a), i), b);
}

static double metric(const struct coord *c, const char *name)
{
	double v = -1;

	ck_assert_msg(coord_metric(c, name, &v) == 0, "no metric %s", name);
	return v;
}

/* ------------------------------------------------------------ commit */

START_TEST(commit_across_two_databases)
{
	struct env e;
	char body[1024];
	json_t *j = NULL, *rows;
	int st;

	env_setup(&e, "tcommit", NULL);
	transfer_body(body, sizeof(body), 'a', 1, 'b', 2, 10, NULL);
	st = coord_request(e.c, "POST", "/v1/txns", body, 30000, &j);
	ck_assert_int_eq(st, 200);
	ck_assert_str_eq(jstr(j, "gid"), "tcommit_1_1");
	ck_assert_str_eq(jstr(j, "outcome"), "committed");
	ck_assert_str_eq(jstr(j, "protocol"), "2pc-pa");
	ck_assert_ptr_null(json_object_get(j, "error"));
	/* The credit's RETURNING row comes back in the branch's results. */
	rows = json_object_get(
	    json_array_get(jpath(j, "branches", 1, "results"), 0), "rows");
	ck_assert_str_eq(
	    json_string_value(json_array_get(json_array_get(rows, 0), 0)),
	    "1010");
	json_decref(j);

	ck_assert_int_eq(
	    coord_wait_txn_state(e.c, "tcommit_1_1", "done", 15000), 0);
	st = coord_request(e.c, "GET", "/v1/txns/tcommit_1_1", NULL, 5000, &j);
	ck_assert_int_eq(st, 200);
	ck_assert_str_eq(jstr(j, "state"), "done");
	ck_assert_str_eq(jstr(j, "outcome"), "committed");
	for (size_t i = 0; i < 2; i++)
		ck_assert_str_eq(
		    json_string_value(jpath(j, "branches", i, "state")),
		    "committed");
	ck_assert_str_eq(json_string_value(jpath(j, "branches", 0, "gid")),
			 "tcommit_1_1_1of2");
	json_decref(j);

	/* Listed among the done transactions. */
	st = coord_request(e.c, "GET", "/v1/txns?state=done", NULL, 5000, &j);
	ck_assert_int_eq(st, 200);
	ck_assert_str_eq(
	    jstr(json_array_get(json_object_get(j, "txns"), 0), "gid"),
	    "tcommit_1_1");
	json_decref(j);

	ck_assert_int_eq(balance(e.ci[0], 1), BALANCE - 10);
	ck_assert_int_eq(balance(e.ci[1], 2), BALANCE + 10);
	ck_assert_int_eq(prepared(e.ci[0]), 0);
	ck_assert_int_eq(prepared(e.ci[1]), 0);
	ck_assert_int_eq(
	    metric(e.c, "decree_txns_total{outcome=\"committed\"}"), 1);
	env_teardown(&e);
}
END_TEST

/* ------------------------------------------------------------- abort */

static void check_aborted_naming(json_t *j, int branch, const char *resource)
{
	json_t *err = json_object_get(j, "error");

	ck_assert_str_eq(jstr(j, "outcome"), "aborted");
	ck_assert_ptr_nonnull(err);
	ck_assert_int_eq(json_integer_value(json_object_get(err, "branch")),
			 branch);
	ck_assert_str_eq(jstr(err, "resource"), resource);
	ck_assert_str_eq(jstr(err, "sqlstate"), "23514");
	ck_assert_msg(strstr(jstr(err, "message"), "check constraint") != NULL,
		      "message: %s", jstr(err, "message"));
	ck_assert_msg(strstr(jstr(err, "message"), resource) != NULL,
		      "message does not name %s: %s", resource,
		      jstr(err, "message"));
}

START_TEST(check_violation_aborts_everything_and_names_the_branch)
{
	struct env e;
	char body[1024];
	json_t *j = NULL;

	env_setup(&e, "tabort", NULL);
	/* Debit on bank_a fails (1000 - 5000 < 0). */
	transfer_body(body, sizeof(body), 'a', 3, 'b', 3, 5000, NULL);
	ck_assert_int_eq(
	    coord_request(e.c, "POST", "/v1/txns", body, 30000, &j), 409);
	check_aborted_naming(j, 0, "bank_a");
	json_decref(j);
	/* Debit on bank_b, listed second, fails: the error names bank_b. */
	transfer_body(body, sizeof(body), 'a', 4, 'b', 4, -5000, NULL);
	ck_assert_int_eq(
	    coord_request(e.c, "POST", "/v1/txns", body, 30000, &j), 409);
	check_aborted_naming(j, 1, "bank_b");
	json_decref(j);
	/* The same under presumed nothing. */
	transfer_body(body, sizeof(body), 'a', 5, 'b', 5, 5000, "2pc-pn");
	ck_assert_int_eq(
	    coord_request(e.c, "POST", "/v1/txns", body, 30000, &j), 409);
	check_aborted_naming(j, 0, "bank_a");
	json_decref(j);

	assert_none_prepared(&e);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(total(e.ci[i]), (long long)ACCOUNTS * BALANCE);
		for (int id = 3; id <= 5; id++)
			ck_assert_int_eq(balance(e.ci[i], id), BALANCE);
	}
	ck_assert_int_eq(metric(e.c, "decree_txns_total{outcome=\"aborted\"}"),
			 3);
	ck_assert_int_eq(
	    metric(e.c, "decree_txns_total{outcome=\"committed\"}"), 0);
	env_teardown(&e);
}
END_TEST

/* ------------------------------------------------------ database down */

START_TEST(database_down_before_prepare_aborts)
{
	struct env e;
	char body[1024];
	json_t *j = NULL, *err;
	int st, committed = 0;
	time_t deadline;

	env_setup(&e, "tdown",
		  "\"timeouts\":{\"statement_ms\":3000,\"prepare_ms\":3000,"
		  "\"retry_initial_ms\":20,\"retry_max_ms\":200}");
	/* Both servers known to be reachable first. */
	transfer_body(body, sizeof(body), 'a', 1, 'b', 1, 1, NULL);
	ck_assert_int_eq(
	    coord_request(e.c, "POST", "/v1/txns", body, 30000, NULL), 200);

	ck_assert_int_eq(pg_harness_stop_server(harness, 1), 0);
	transfer_body(body, sizeof(body), 'a', 2, 'b', 2, 10, NULL);
	st = coord_request(e.c, "POST", "/v1/txns", body, 30000, &j);
	ck_assert_msg(st >= 400 && st < 600, "status %d", st);
	ck_assert_str_eq(jstr(j, "outcome"), "aborted");
	err = json_object_get(j, "error");
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(jstr(err, "resource"), "bank_b");
	ck_assert_msg(strlen(jstr(err, "message")) > 0, "no message");
	json_decref(j);
	/* bank_a: its branch was rolled back, nothing prepared. */
	ck_assert_int_eq(balance(e.ci[0], 2), BALANCE);
	ck_assert_int_eq(
	    coord_pg_wait_int(e.ci[0], "select count(*) from pg_prepared_xacts",
			      0, 15000),
	    0);

	ck_assert_int_eq(pg_harness_start_server(harness, 1), 0);
	assert_none_prepared(&e);
	ck_assert_int_eq(balance(e.ci[1], 2), BALANCE);

	/* Once bank_b is back, transfers commit again (the pool reconnects
	 * with backoff: attempts before that abort and change nothing). */
	deadline = time(NULL) + 20;
	while (!committed && time(NULL) < deadline) {
		st = coord_request(e.c, "POST", "/v1/txns", body, 30000, &j);
		if (st == 200)
			committed = 1;
		else
			ck_assert_str_eq(jstr(j, "outcome"), "aborted");
		json_decref(j);
	}
	ck_assert_msg(committed, "no commit within 20 s of bank_b's restart");
	assert_none_prepared(&e);
	ck_assert_int_eq(balance(e.ci[0], 2), BALANCE - 10);
	ck_assert_int_eq(balance(e.ci[1], 2), BALANCE + 10);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(total(e.ci[i]), (long long)ACCOUNTS * BALANCE +
						     (i == 0 ? -11 : 11));
	env_teardown(&e);
}
END_TEST

struct bg_post {
	pthread_t th;
	const char *addr;
	const char *body;
	int status;
	char outcome[16];
	char resource[16];
};

static void *bg_post_main(void *arg)
{
	struct bg_post *p = arg;
	json_t *j = NULL;

	p->status =
	    coord_request_at(p->addr, "POST", "/v1/txns", p->body, 30000, &j);
	snprintf(p->outcome, sizeof(p->outcome), "%s", jstr(j, "outcome"));
	snprintf(p->resource, sizeof(p->resource), "%s",
		 jstr(json_object_get(j, "error"), "resource"));
	json_decref(j);
	return NULL;
}

START_TEST(database_crash_after_its_statements_aborts)
{
	/* bank_b has run its first statement and waits in its second on
	 * our row lock there, so its PREPARE (pipelined after the
	 * statements) has not run; bank_a's is held up by our table lock.
	 * bank_b crashes (its open branch dies with it), then bank_a goes
	 * on: the transaction cannot prepare bank_b and must abort, undoing
	 * bank_a's branch whatever state it reached. */
	static const char body[] =
	    "{\"branches\":["
	    "{\"resource\":\"bank_a\",\"statements\":[\"update accounts "
	    "set balance = balance - 10 where id = 11\"]},"
	    "{\"resource\":\"bank_b\",\"statements\":[\"update accounts "
	    "set balance = balance + 10 where id = 11\",\"update accounts set "
	    "balance = balance where id = 12\"]}]}";
	struct env e;
	struct bg_post p;
	PGconn *lock, *rowlock;
	PGresult *r;

	env_setup(&e, "tcrashb", NULL);
	lock = PQconnectdb(e.ci[0]);
	ck_assert_int_eq(PQstatus(lock), CONNECTION_OK);
	r = PQexec(lock, "begin; lock table accounts in access exclusive mode");
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	rowlock = PQconnectdb(e.ci[1]);
	ck_assert_int_eq(PQstatus(rowlock), CONNECTION_OK);
	r = PQexec(rowlock,
		   "begin; select 1 from accounts where id = 12 for update");
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	memset(&p, 0, sizeof(p));
	p.addr = coord_addr(e.c);
	p.body = body;
	ck_assert_int_eq(pthread_create(&p.th, NULL, bg_post_main, &p), 0);
	/* bank_b's branch ran its first statement and waits for our row
	 * lock in its second. */
	ck_assert_int_eq(
	    coord_pg_wait_int(e.ci[1],
			      "select count(*) from pg_locks where not granted",
			      1, 15000),
	    0);
	ck_assert_int_eq(pg_harness_kill_server(harness, 1), 0);
	PQfinish(rowlock);
	r = PQexec(lock, "commit");
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(lock);
	pthread_join(p.th, NULL);
	ck_assert_msg(p.status == 409 && strcmp(p.outcome, "aborted") == 0,
		      "status %d outcome %s", p.status, p.outcome);
	ck_assert_str_eq(p.resource, "bank_b");
	ck_assert_int_eq(pg_harness_start_server(harness, 1), 0);
	assert_none_prepared(&e);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(balance(e.ci[i], 11), BALANCE);
		ck_assert_int_eq(total(e.ci[i]), (long long)ACCOUNTS * BALANCE);
	}
	env_teardown(&e);
}
END_TEST

/* ------------------------------------------------------ bad requests */

START_TEST(bad_requests_get_4xx_and_change_nothing)
{
	static const struct {
		const char *method, *path, *body;
		int status;
	} cases[] = {
	    {"POST", "/v1/txns", "{\"branches\":[", 400},
	    {"POST", "/v1/txns", "not json", 400},
	    {"POST", "/v1/txns", "[1,2]", 400},
	    {"POST", "/v1/txns", "{}", 400},
	    {"POST", "/v1/txns", "{\"branches\":[]}", 400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_x\",\"statements\":"
	     "[\"update accounts set balance = 0\"]}]}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":["
	     "{\"resource\":\"bank_a\",\"statements\":[\"update accounts "
	     "set balance = 0\"]},"
	     "{\"resource\":\"bank_b\",\"statements\":[\"update accounts "
	     "set balance = 0\"]},"
	     "{\"resource\":\"bank_a\",\"statements\":[\"update accounts "
	     "set balance = 0\"]}]}",
	     413},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	     "\"update accounts set balance = 0\"}]}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":7,\"statements\":"
	     "[\"update accounts set balance = 0\"]}]}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	     "[{\"sql\":\"update accounts set balance = $1\",\"params\":"
	     "{\"a\":1}}]}]}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	     "[\"update accounts set balance = 0\"]}],\"protocol\":5}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	     "[\"update accounts set balance = 0\"]}],\"protocol\":\"3pc\"}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	     "[\"update accounts set balance = 0\"]}],\"timeout_ms\":\"9\"}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	     "[\"update accounts set balance = 0\"],\"read_only\":\"no\"}]}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	     "[\"update accounts set balance = 0\"]}],\"colour\":\"red\"}",
	     400},
	    {"POST", "/v1/txns",
	     "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	     "[\"update accounts set balance = 0\"]}],"
	     "\"branches\":[]}",
	     400},
	    {"GET", "/v1/nothing", NULL, 404},
	    {"GET", "/v1/txns/tbad_9_9", NULL, 404},
	    {"GET", "/v1/txns?state=sleeping", NULL, 400},
	    {"DELETE", "/v1/txns", NULL, 405},
	};
	struct env e;
	char big[4096];
	json_t *j = NULL;
	double writes0;
	int st;

	env_setup(&e, "tbad",
		  "\"limits\":{\"max_branches\":2,\"max_body_bytes\":2048}");
	writes0 = metric(e.c, "decree_log_writes_total"); /* the EPOCH */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		st = coord_request(e.c, cases[i].method, cases[i].path,
				   cases[i].body, 10000, &j);
		ck_assert_msg(st == cases[i].status,
			      "case %zu (%s %s %s): status %d, wanted %d", i,
			      cases[i].method, cases[i].path,
			      cases[i].body ? cases[i].body : "", st,
			      cases[i].status);
		ck_assert_msg(
		    strlen(jstr(json_object_get(j, "error"), "message")) > 0,
		    "case %zu: no error message", i);
		json_decref(j);
	}
	/* A body over max_body_bytes: 413, answered by the HTTP layer. */
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "{\"branches\":[", 13);
	st = coord_request(e.c, "POST", "/v1/txns", big, 10000, NULL);
	ck_assert_int_eq(st, 413);

	/* Nothing reached the engine, the log or the databases. */
	ck_assert_int_eq(metric(e.c, "decree_txns_begun_total"), 0);
	ck_assert_int_eq(metric(e.c, "decree_log_writes_total"), writes0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(total(e.ci[i]), (long long)ACCOUNTS * BALANCE);
		ck_assert_int_eq(prepared(e.ci[i]), 0);
	}
	/* And the server still works. */
	ck_assert_int_eq(
	    coord_request(e.c, "GET", "/healthz", NULL, 5000, NULL), 200);
	env_teardown(&e);
}
END_TEST

/* ----------------------------------------------------- forced writes */

struct writes {
	double forced, all;
};

static struct writes writes_now(const struct coord *c)
{
	struct writes w = {metric(c, "decree_log_forced_writes_total"),
			   metric(c, "decree_log_writes_total")};

	return w;
}

/*
 * Runs body, expects status, waits until the transaction is done, and
 * returns the log writes it made; *j (if not NULL) gets the answer.
 */
static struct writes run_counted(const struct coord *c, const char *body,
				 int status, json_t **out)
{
	struct writes w0 = writes_now(c), w1;
	json_t *j = NULL;
	char gid[128];

	ck_assert_int_eq(coord_request(c, "POST", "/v1/txns", body, 30000, &j),
			 status);
	snprintf(gid, sizeof(gid), "%s", jstr(j, "gid"));
	ck_assert_int_eq(coord_wait_txn_state(c, gid, "done", 15000), 0);
	w1 = writes_now(c);
	w1.forced -= w0.forced;
	w1.all -= w0.all;
	if (out != NULL)
		*out = j;
	else
		json_decref(j);
	return w1;
}

START_TEST(forced_writes_per_commit_match_the_protocol_table)
{
	struct env e;
	char body[1024];
	struct writes w;
	json_t *j;

	env_setup(&e, "tforced", NULL);

	/* 2PC presumed abort commit: the COMMIT decision forced, END not. */
	transfer_body(body, sizeof(body), 'a', 1, 'b', 1, 5, NULL);
	w = run_counted(e.c, body, 200, NULL);
	ck_assert_int_eq(w.forced, 1);
	ck_assert_int_eq(w.all, 2);

	/* Presumed abort abort (statement error): nothing written. */
	transfer_body(body, sizeof(body), 'a', 2, 'b', 2, 5000, NULL);
	w = run_counted(e.c, body, 409, NULL);
	ck_assert_int_eq(w.forced, 0);
	ck_assert_int_eq(w.all, 0);

	/* Presumed nothing commit: BEGIN and COMMIT forced, END not. */
	transfer_body(body, sizeof(body), 'a', 3, 'b', 3, 5, "2pc-pn");
	w = run_counted(e.c, body, 200, &j);
	ck_assert_str_eq(jstr(j, "protocol"), "2pc-pn");
	json_decref(j);
	ck_assert_int_eq(w.forced, 2);
	ck_assert_int_eq(w.all, 3);

	/* One branch: one-phase commit, no log write at all. */
	w = run_counted(
	    e.c,
	    "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	    "[\"update accounts set balance = balance - 7 where "
	    "id = 4\"]}]}",
	    200, &j);
	ck_assert_str_eq(jstr(j, "outcome"), "committed");
	json_decref(j);
	ck_assert_int_eq(w.forced, 0);
	ck_assert_int_eq(w.all, 0);
	ck_assert_int_eq(balance(e.ci[0], 4), BALANCE - 7);

	/* A SELECT-only branch hinted read-only leaves after phase 1: it is
	 * read_only, and the COMMIT decision lists the writing branch only. */
	w = run_counted(
	    e.c,
	    "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	    "[\"update accounts set balance = balance + 7 where "
	    "id = 4\"]},{\"resource\":\"bank_b\",\"read_only\":true,"
	    "\"statements\":"
	    "[\"select balance from accounts where id = 4\"]}]}",
	    200, &j);
	ck_assert_str_eq(json_string_value(jpath(j, "branches", 1, "state")),
			 "read_only");
	json_decref(j);
	ck_assert_int_eq(w.forced, 1);
	ck_assert_int_eq(w.all, 2);
	ck_assert_int_eq(balance(e.ci[0], 4), BALANCE);

	/* Unhinted, the same branch prepares with its statement (one round
	 * trip): it votes yes, and the commit still costs 1/2. */
	w = run_counted(
	    e.c,
	    "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	    "[\"update accounts set balance = balance - 7 where "
	    "id = 4\"]},{\"resource\":\"bank_b\",\"statements\":"
	    "[\"select balance from accounts where id = 4\"]}]}",
	    200, &j);
	ck_assert_str_eq(json_string_value(jpath(j, "branches", 1, "state")),
			 "prepared"); /* as the answer left, before phase 2 */
	json_decref(j);
	ck_assert_int_eq(w.forced, 1);
	ck_assert_int_eq(w.all, 2);
	ck_assert_int_eq(balance(e.ci[0], 4), BALANCE - 7);

	/* Every branch hinted read-only under presumed abort: nothing
	 * written. */
	w = run_counted(
	    e.c,
	    "{\"branches\":[{\"resource\":\"bank_a\",\"read_only\":true,"
	    "\"statements\":[\"select 1\"]},{\"resource\":\"bank_b\","
	    "\"read_only\":true,\"statements\":[\"select 2\"]}]}",
	    200, &j);
	for (size_t i = 0; i < 2; i++)
		ck_assert_str_eq(
		    json_string_value(jpath(j, "branches", i, "state")),
		    "read_only");
	json_decref(j);
	ck_assert_int_eq(w.forced, 0);
	ck_assert_int_eq(w.all, 0);

	/* Presumed nothing, every branch hinted read-only: nothing written. */
	w = run_counted(e.c,
			"{\"protocol\":\"2pc-pn\",\"branches\":["
			"{\"resource\":\"bank_a\",\"read_only\":true,"
			"\"statements\":[\"select 1\"]},"
			"{\"resource\":\"bank_b\",\"read_only\":true,"
			"\"statements\":[\"select 2\"]}]}",
			200, NULL);
	ck_assert_int_eq(w.forced, 0);
	ck_assert_int_eq(w.all, 0);

	assert_none_prepared(&e);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(total(e.ci[i]), (long long)ACCOUNTS * BALANCE +
						     (i == 0 ? -17 : 10));
	env_teardown(&e);
}
END_TEST

/* ------------------------------------------------------------ limits */

struct slow {
	pthread_t th;
	const char *addr;
	int status;
};

static void *slow_main(void *arg)
{
	struct slow *sl = arg;

	sl->status = coord_request_at(
	    sl->addr, "POST", "/v1/txns",
	    "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":"
	    "[\"select count(*) from accounts\"]}]}",
	    30000, NULL);
	return NULL;
}

START_TEST(limits_bound_rows_and_transactions_in_flight)
{
	struct env e;
	struct slow sl;
	json_t *j = NULL, *res;
	PGconn *lock;
	PGresult *r;
	double active = 0;
	time_t deadline;

	env_setup(&e, "tlimits",
		  "\"limits\":{\"max_rows\":5,\"max_concurrency\":1}");
	/* 100 rows asked, 5 returned, marked truncated. */
	ck_assert_int_eq(
	    coord_request(e.c, "POST", "/v1/txns",
			  "{\"branches\":[{\"resource\":\"bank_b\","
			  "\"statements\":[\"select id from accounts order "
			  "by id\"]}]}",
			  30000, &j),
	    200);
	res = json_array_get(jpath(j, "branches", 0, "results"), 0);
	ck_assert_int_eq(json_array_size(json_object_get(res, "rows")), 5);
	ck_assert(json_is_true(json_object_get(res, "truncated")));
	json_decref(j);

	/* One transaction in flight (held up by our lock on its table): the
	 * next one is turned away. */
	lock = PQconnectdb(e.ci[0]);
	ck_assert_int_eq(PQstatus(lock), CONNECTION_OK);
	r = PQexec(lock, "begin; lock table accounts in access exclusive mode");
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	memset(&sl, 0, sizeof(sl));
	sl.addr = coord_addr(e.c);
	ck_assert_int_eq(pthread_create(&sl.th, NULL, slow_main, &sl), 0);
	deadline = time(NULL) + 10;
	while (active < 1 && time(NULL) < deadline) /* bounded poll */
		ck_assert_int_eq(
		    coord_metric(e.c, "decree_txns_active", &active), 0);
	ck_assert_msg(active == 1, "the slow transaction never showed");
	ck_assert_int_eq(
	    coord_request(e.c, "POST", "/v1/txns",
			  "{\"branches\":[{\"resource\":\"bank_a\","
			  "\"statements\":[\"update accounts set "
			  "balance = 0 where id = 1\"]}]}",
			  30000, &j),
	    429);
	ck_assert_str_eq(jstr(json_object_get(j, "error"), "code"), "too_busy");
	json_decref(j);
	r = PQexec(lock, "commit");
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(lock);
	pthread_join(sl.th, NULL);
	ck_assert_int_eq(sl.status, 200);
	ck_assert_int_eq(balance(e.ci[0], 1), BALANCE);
	env_teardown(&e);
}
END_TEST

/* ----------------------------------------- aborts after phase 1 began */

START_TEST(refused_prepare_rolls_back_the_prepared_branch)
{
	/* PostgreSQL refuses to PREPARE a transaction that touched a
	 * temporary table: bank_b votes no after bank_a may have prepared. */
	static const char *const fmt =
	    "{\"protocol\":\"%s\",\"branches\":["
	    "{\"resource\":\"bank_a\",\"statements\":[\"update accounts "
	    "set balance = balance - 9 where id = 6\"]},"
	    "{\"resource\":\"bank_b\",\"statements\":[\"create temp table "
	    "scratch(x int)\",\"update accounts set balance = balance + 9 "
	    "where id = 6\"]}]}";
	static const struct {
		const char *protocol;
		int forced, all;
	} cases[] = {
	    {"2pc-pa", 0, 0}, /* presumed abort: nothing to write */
	    {"2pc-pn", 2, 3}, /* BEGIN and ABORT forced, END not */
	};
	struct env e;
	char body[1024];
	struct writes w;
	json_t *j;

	env_setup(&e, "tvoteno", NULL);
	for (size_t i = 0; i < 2; i++) {
		snprintf(body, sizeof(body), fmt, cases[i].protocol);
		w = run_counted(e.c, body, 409, &j);
		ck_assert_str_eq(jstr(j, "outcome"), "aborted");
		ck_assert_str_eq(jstr(json_object_get(j, "error"), "resource"),
				 "bank_b");
		json_decref(j);
		ck_assert_msg(w.forced == cases[i].forced &&
				  w.all == cases[i].all,
			      "%s: %g forced, %g writes", cases[i].protocol,
			      w.forced, w.all);
	}
	assert_none_prepared(&e);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(balance(e.ci[i], 6), BALANCE);
	env_teardown(&e);
}
END_TEST

/* POSTs a transaction whose bank_b branch sleeps `sleep_s` seconds, with a
 * 300 ms transaction timeout; checks the abort came within seconds. */
static void post_slow_branch(const struct env *e, int id, int sleep_s)
{
	char body[1024];
	json_t *j = NULL;
	time_t t0 = time(NULL);

	snprintf(body, sizeof(body),
		 "{\"timeout_ms\":300,\"branches\":["
		 "{\"resource\":\"bank_a\",\"statements\":["
		 "\"update accounts set balance = 0 where id = %d\"]},"
		 "{\"resource\":\"bank_b\",\"statements\":["
		 "\"update accounts set balance = 0 where id = %d\","
		 "\"select pg_sleep(%d)\"]}]}",
		 id, id, sleep_s);
	ck_assert_int_eq(
	    coord_request(e->c, "POST", "/v1/txns", body, 30000, &j), 409);
	ck_assert_str_eq(jstr(j, "outcome"), "aborted");
	json_decref(j);
	/* 300 ms, not the statement's seconds (whole seconds: slack). */
	ck_assert_int_le(time(NULL) - t0, sleep_s > 5 ? 4 : 2);
}

/* Polls until row id can be locked on server i (within ms). */
static int row_free_within(const struct env *e, int i, int id, int ms)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
		 "set lock_timeout = '200ms'; update accounts set balance = "
		 "balance where id = %d returning balance",
		 id);
	return coord_pg_wait_int(e->ci[i], sql, BALANCE, ms);
}

START_TEST(timeout_aborts_a_slow_branch)
{
	struct env e;

	env_setup(&e, "ttimeout", NULL);
	post_slow_branch(&e, 7, 3);
	assert_none_prepared(&e);
	/* Both branches end rolled back: the rows are free again and
	 * nothing changed. */
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(row_free_within(&e, i, 7, 30000), 0);
		ck_assert_int_eq(total(e.ci[i]), (long long)ACCOUNTS * BALANCE);
	}
	env_teardown(&e);
}
END_TEST

START_TEST(timeout_abort_cancels_the_running_statement)
{
	/* After the abort the sleeping statement should be cancelled, not
	 * left to run (holding its row lock) until it ends by itself or
	 * statement_ms (60 s here) passes. */
	struct env e;
	time_t t0;
	int rc;

	env_setup(&e, "tcancel", "\"timeouts\":{\"statement_ms\":60000}");
	post_slow_branch(&e, 12, 8);
	t0 = time(NULL);
	rc = row_free_within(&e, 1, 12, 3000);
	if (rc != 0) /* let the statement end before the next test */
		row_free_within(&e, 1, 12, 30000);
	ck_assert_msg(rc == 0,
		      "bank_b's row stayed locked %ld s after the abort: the "
		      "aborted branch's statement was not cancelled",
		      (long)(time(NULL) - t0));
	assert_none_prepared(&e);
	env_teardown(&e);
}
END_TEST

/* ------------------------------------------- two branches, one pool */

START_TEST(two_branches_on_one_resource_do_not_starve_its_pool)
{
	/* Both branches on bank_a, whose pool holds one connection: the
	 * first branch pins it for the whole transaction, so the second
	 * must not wait for it until the timeout.  Either commit, or refuse
	 * the request at once.  Fails at the time of writing: it aborts
	 * when prepare_ms (1 s here) runs out. */
	static const char *const body =
	    "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":["
	    "\"update accounts set balance = balance - 1 where id = 13\"]},"
	    "{\"resource\":\"bank_a\",\"statements\":["
	    "\"update accounts set balance = balance + 1 where id = 14\"]}]}";
	const char *ci[2];
	struct env e;
	json_t *j = NULL;
	char *d;
	int st;

	env_setup(&e, "tpool", "\"timeouts\":{\"prepare_ms\":1000}");
	/* The same two servers, bank_a's pool cut to one connection. */
	ck_assert_int_eq(coord_stop(e.c), 0);
	coord_free(e.c);
	e.c = NULL;
	ci[0] = e.ci[0];
	ci[1] = e.ci[1];
	{
		FILE *f = fopen(e.cfg, "w");

		ck_assert_ptr_nonnull(f);
		fprintf(
		    f,
		    "{\"node_id\":\"c1\",\"cluster_id\":\"tpool\","
		    "\"listen\":{\"http\":\"127.0.0.1:0\"},"
		    "\"data_dir\":\"%s\",\"timeouts\":{\"prepare_ms\":1000},"
		    "\"resources\":[{\"name\":\"bank_a\",\"driver\":"
		    "\"postgres\",\"conninfo\":\"%s\",\"pool_size\":1},"
		    "{\"name\":\"bank_b\",\"driver\":\"postgres\","
		    "\"conninfo\":\"%s\"}]}\n",
		    e.data, ci[0], ci[1]);
		ck_assert_int_eq(fclose(f), 0);
	}
	ck_assert_int_eq(coord_start(e.cfg, NULL, &e.c), 0);
	st = coord_request(e.c, "POST", "/v1/txns", body, 30000, &j);
	d = j ? json_dumps(j, JSON_COMPACT) : NULL;
	ck_assert_msg(st == 200 || st == 400,
		      "status %d (wanted a commit or an immediate refusal): "
		      "%.300s",
		      st, d ? d : "");
	free(d);
	json_decref(j);
	assert_none_prepared(&e);
	if (st == 200) {
		ck_assert_int_eq(balance(e.ci[0], 13), BALANCE - 1);
		ck_assert_int_eq(balance(e.ci[0], 14), BALANCE + 1);
	} else {
		ck_assert_int_eq(total(e.ci[0]), (long long)ACCOUNTS * BALANCE);
	}
	env_teardown(&e);
}
END_TEST

/* --------------------------------------------- transaction control */

START_TEST(transaction_control_in_a_branch_changes_nothing)
{
	/* A branch's statements run inside the branch's transaction; one that
	 * ends it (COMMIT, PREPARE TRANSACTION) must be refused before it
	 * runs, or the transaction is no longer all-or-nothing. */
	static const char *const bodies[] = {
	    /* 2PC: bank_a commits its write itself. */
	    "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":["
	    "\"update accounts set balance = balance - 5 where id = 8\","
	    "\"commit\"]},{\"resource\":\"bank_b\",\"statements\":["
	    "\"update accounts set balance = balance + 5 where id = 8\"]}]}",
	    /* One branch: the client must not hear "aborted" for a commit. */
	    "{\"branches\":[{\"resource\":\"bank_b\",\"statements\":["
	    "\"update accounts set balance = balance + 3 where id = 9\","
	    "\"/* hello */ COMMIT\"]}]}",
	    /* PREPARE under a gid of the user's choosing. */
	    "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":["
	    "\"update accounts set balance = balance - 7 where id = 10\","
	    "\"prepare transaction 'sneaky'\"]},{\"resource\":\"bank_b\","
	    "\"statements\":[\"select 1\"]}]}",
	};
	struct env e;
	json_t *j = NULL;
	int st;

	env_setup(&e, "ttxctl", NULL);
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		st = coord_request(e.c, "POST", "/v1/txns", bodies[i], 30000,
				   &j);
		ck_assert_msg(st == 409 || (st >= 400 && st < 500),
			      "case %zu: status %d", i, st);
		json_decref(j);
	}
	/* Whatever the answer, nothing may have changed or stay prepared. */
	ck_assert_msg(balance(e.ci[0], 8) == BALANCE,
		      "bank_a id 8 is %lld: a COMMIT statement in a branch "
		      "applied its write, the transaction aborted",
		      balance(e.ci[0], 8));
	ck_assert_msg(balance(e.ci[1], 9) == BALANCE,
		      "bank_b id 9 is %lld: the client was told aborted, the "
		      "write was committed",
		      balance(e.ci[1], 9));
	ck_assert_msg(prepared(e.ci[0]) == 0,
		      "a user's PREPARE TRANSACTION left a prepared "
		      "transaction on bank_a");
	ck_assert_int_eq(balance(e.ci[0], 10), BALANCE);
	ck_assert_int_eq(balance(e.ci[1], 8), BALANCE);
	env_teardown(&e);
}
END_TEST

/* ------------------------------------------------------- concurrency */

#define CLIENTS	   8
#define PER_CLIENT 500

struct client {
	pthread_t th;
	const char *addr;
	unsigned seed;
	long long delta[2][ACCOUNTS + 1]; /* committed changes, per account */
	int committed, aborted_by_design, aborted_other, errors;
	int cancelled; /* aborted by a cancel nobody asked for */
	char first_cancel[256];
	char first_error[256];
	char first_other[256]; /* why the first valid transfer aborted */
};

static void *client_main(void *arg)
{
	struct client *cl = arg;
	char body[1024];

	for (int n = 0; n < PER_CLIENT; n++) {
		int dir = rand_r(&cl->seed) % 2;
		int from = 1 + rand_r(&cl->seed) % ACCOUNTS;
		int to = 1 + rand_r(&cl->seed) % ACCOUNTS;
		/* One in ten is more than all the money there is. */
		bool doomed = rand_r(&cl->seed) % 10 == 0;
		int amount = doomed ? 10 * ACCOUNTS * BALANCE
				    : 1 + rand_r(&cl->seed) % 20;
		json_t *j = NULL;
		int st;

		/* One in four under presumed nothing. */
		transfer_body(body, sizeof(body), dir ? 'b' : 'a', from,
			      dir ? 'a' : 'b', to, amount,
			      rand_r(&cl->seed) % 4 == 0 ? "2pc-pn" : NULL);
		st = coord_request_at(cl->addr, "POST", "/v1/txns", body, 30000,
				      &j);
		if (st == 200 && !doomed &&
		    strcmp(jstr(j, "outcome"), "committed") == 0) {
			cl->committed++;
			cl->delta[dir][from] -= amount;
			cl->delta[!dir][to] += amount;
		} else if (st == 409 && doomed &&
			   strcmp(jstr(json_object_get(j, "error"), "sqlstate"),
				  "23514") == 0) {
			cl->aborted_by_design++;
		} else if (st == 409 && !doomed &&
			   strcmp(jstr(j, "outcome"), "aborted") == 0) {
			/* A lock wait across the two databases (a distributed
			 * deadlock PostgreSQL cannot see) ends in a timeout
			 * and an abort: allowed, counted, bounded below. */
			if (strstr(jstr(json_object_get(j, "error"), "message"),
				   "due to user request") != NULL)
				if (cl->cancelled++ == 0)
					snprintf(
					    cl->first_cancel,
					    sizeof(cl->first_cancel), "%.200s",
					    jstr(json_object_get(j, "error"),
						 "message"));
			if (cl->aborted_other++ == 0)
				snprintf(cl->first_other,
					 sizeof(cl->first_other), "%.200s",
					 jstr(json_object_get(j, "error"),
					      "message"));
		} else {
			char *d = j ? json_dumps(j, JSON_COMPACT) : NULL;

			if (cl->errors++ == 0)
				snprintf(cl->first_error,
					 sizeof(cl->first_error),
					 "status %d doomed %d: %.200s", st,
					 doomed, d ? d : "");
			free(d);
		}
		json_decref(j);
	}
	return NULL;
}

START_TEST(concurrent_transfers_conserve_the_total)
{
	static struct client cl[CLIENTS];
	unsigned seed = (unsigned)time(NULL);
	int committed = 0, doomed = 0, other = 0;
	struct env e;
	char sql[128];

	env_setup(&e, "tconc",
		  "\"timeouts\":{\"statement_ms\":1000,\"prepare_ms\":3000}");
	fprintf(stderr, "concurrent_transfers: seed %u\n", seed);
	memset(cl, 0, sizeof(cl));
	for (int i = 0; i < CLIENTS; i++) {
		cl[i].addr = coord_addr(e.c);
		cl[i].seed = seed + (unsigned)i * 7919u;
		ck_assert_int_eq(
		    pthread_create(&cl[i].th, NULL, client_main, &cl[i]), 0);
	}
	for (int i = 0; i < CLIENTS; i++) {
		pthread_join(cl[i].th, NULL);
		ck_assert_msg(
		    cl[i].errors == 0,
		    "seed %u client %d: %d unexpected answers, first: "
		    "%s",
		    seed, i, cl[i].errors, cl[i].first_error);
		committed += cl[i].committed;
		doomed += cl[i].aborted_by_design;
		other += cl[i].aborted_other;
		if (cl[i].aborted_other > 0)
			fprintf(stderr,
				"concurrent_transfers: client %d: %d valid "
				"transfers aborted, first: %s\n",
				i, cl[i].aborted_other, cl[i].first_other);
	}
	fprintf(stderr,
		"concurrent_transfers: %d committed, %d aborted by design, "
		"%d aborted otherwise\n",
		committed, doomed, other);
	ck_assert_int_eq(committed + doomed + other, CLIENTS * PER_CLIENT);
	ck_assert_msg(doomed > CLIENTS * PER_CLIENT / 20, "seed %u", seed);
	ck_assert_msg(other <= CLIENTS * PER_CLIENT / 100,
		      "seed %u: %d valid transfers aborted", seed, other);

	assert_none_prepared(&e);
	ck_assert_int_eq(total(e.ci[0]) + total(e.ci[1]),
			 2LL * ACCOUNTS * BALANCE);
	/* Every account holds exactly what the clients were told. */
	for (int db = 0; db < 2; db++) {
		for (int id = 1; id <= ACCOUNTS; id++) {
			long long want = BALANCE;

			for (int i = 0; i < CLIENTS; i++)
				want += cl[i].delta[db][id];
			snprintf(sql, sizeof(sql), "seed %u db %d id %d", seed,
				 db, id);
			ck_assert_msg(balance(e.ci[db], id) == want,
				      "%s: %lld, wanted %lld", sql,
				      balance(e.ci[db], id), want);
		}
	}
	ck_assert_int_eq(
	    metric(e.c, "decree_txns_total{outcome=\"committed\"}"), committed);
	ck_assert_int_eq(metric(e.c, "decree_txns_begun_total"),
			 CLIENTS * PER_CLIENT);
	ck_assert_int_eq(metric(e.c, "decree_txns_in_doubt"), 0);
	/* A cancel is only ever meant for a branch of an aborted transaction;
	 * one that lands on another transaction's statement (its connection
	 * reused too early) aborts an innocent transfer. */
	for (int i = 0; i < CLIENTS; i++)
		ck_assert_msg(
		    cl[i].cancelled == 0,
		    "seed %u client %d: %d valid transfers aborted by "
		    "a cancel meant for another transaction: %s",
		    seed, i, cl[i].cancelled, cl[i].first_cancel);
	env_teardown(&e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("coordinator");
	TCase *tc = tcase_create("postgres");
	SRunner *sr;
	int failed;

	if (pg_harness_start(2, &harness) < 0) {
		fprintf(stderr, "cannot start PostgreSQL servers\n");
		return 1;
	}
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, commit_across_two_databases);
	tcase_add_test(tc,
		       check_violation_aborts_everything_and_names_the_branch);
	tcase_add_test(tc, database_down_before_prepare_aborts);
	tcase_add_test(tc, database_crash_after_its_statements_aborts);
	tcase_add_test(tc, bad_requests_get_4xx_and_change_nothing);
	tcase_add_test(tc, forced_writes_per_commit_match_the_protocol_table);
	tcase_add_test(tc, limits_bound_rows_and_transactions_in_flight);
	tcase_add_test(tc, refused_prepare_rolls_back_the_prepared_branch);
	tcase_add_test(tc, timeout_aborts_a_slow_branch);
	tcase_add_test(tc, timeout_abort_cancels_the_running_statement);
	tcase_add_test(tc, two_branches_on_one_resource_do_not_starve_its_pool);
	tcase_add_test(tc, transaction_control_in_a_branch_changes_nothing);
	tcase_add_test(tc, concurrent_transfers_conserve_the_total);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	pg_harness_destroy(harness);
	return failed == 0 ? 0 : 1;
}
