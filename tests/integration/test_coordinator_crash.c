/*
 * test_coordinator_crash.c - the coordinator dies at each named crash point
 * (DECREE_CRASH_POINT, _exit(86): as abrupt as SIGKILL) and is restarted on
 * the same data_dir: every transfer ends all-or-nothing, the total is
 * conserved and no prepared transaction is left; and a database that
 * crashes between prepare and commit gets its COMMIT PREPARED once it is
 * back.  Real PostgreSQL servers (tests/lib/pg.h), real coordinator
 * processes (tests/lib/coord.h).
 *
 * What the client sees is recorded and checked against the end state: a
 * crash before the answer is a reset connection (or a reply that was
 * already on its way); an answer, when one arrives, never contradicts what
 * the databases end up holding.
 */
#include "common/common.h"
#include "common/crashpoint.h"
#include "tests/lib/coord.h"
#include "tests/lib/pg.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct pg_harness *harness;

#define ACCOUNTS 10
#define BALANCE	 1000
#define EXTRA                                                                  \
	"\"timeouts\":{\"retry_initial_ms\":20,\"retry_max_ms\":200,"          \
	"\"prepare_ms\":5000,\"statement_ms\":5000}"

static const struct {
	const char *point;
	bool decided; /* the commit decision is durable when it dies */
} points[] = {
    {"coordinator.before_prepare", false},
    {"coordinator.after_prepare_sent", false},
    {"coordinator.after_decision_forced", true},
    {"coordinator.after_first_commit_sent", true},
    {"coordinator.before_end", true},
};

struct env {
	char dir[256];
	char cfg[320];
	char data[320];
	const char *ci[2];
};

static void env_setup(struct env *e, const char *cluster)
{
	memset(e, 0, sizeof(*e));
	e->ci[0] = pg_harness_conninfo(harness, 0);
	e->ci[1] = pg_harness_conninfo(harness, 1);
	ck_assert_int_eq(coord_tmpdir_make(e->dir, sizeof(e->dir)), 0);
	snprintf(e->cfg, sizeof(e->cfg), "%s/config.json", e->dir);
	snprintf(e->data, sizeof(e->data), "%s/data", e->dir);
	ck_assert_int_eq(
	    coord_config_write(e->cfg, cluster, e->data, e->ci, 2, EXTRA), 0);
	ck_assert_int_eq(coord_bank_create(e->ci[0], ACCOUNTS, BALANCE), 0);
	ck_assert_int_eq(coord_bank_create(e->ci[1], ACCOUNTS, BALANCE), 0);
}

static long long query(const char *ci, const char *fmt, int arg)
{
	char sql[256];
	long long v = -1;

	snprintf(sql, sizeof(sql), fmt, arg);
	ck_assert_int_eq(coord_pg_int(ci, sql, &v), 0);
	return v;
}

static long long balance(const char *ci, int id)
{
	return query(ci, "select balance from accounts where id = %d", id);
}

static void assert_none_prepared(const struct env *e)
{
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(
		    coord_pg_wait_int(e->ci[i],
				      "select count(*) from pg_prepared_xacts",
				      0, 20000),
		    0);
}

static void assert_total_conserved(const struct env *e)
{
	long long a = query(e->ci[0], "select sum(balance) from accounts%.0d",
			    0),
		  b = query(e->ci[1], "select sum(balance) from accounts%.0d",
			    0);

	ck_assert_int_eq(a + b, 2LL * ACCOUNTS * BALANCE);
}

static void transfer_body(char *buf, size_t size, int id, int amount,
			  const char *protocol)
{
	snprintf(buf, size,
		 "{\"protocol\":\"%s\",\"branches\":["
		 "{\"resource\":\"bank_a\",\"statements\":[{\"sql\":"
		 "\"update accounts set balance = balance - $1 where id = $2\","
		 "\"params\":[%d,%d]}]},"
		 "{\"resource\":\"bank_b\",\"statements\":[{\"sql\":"
		 "\"update accounts set balance = balance + $1 where id = $2\","
		 "\"params\":[%d,%d]}]}]}",
		 protocol ? protocol : "2pc-pa", amount, id, amount, id);
}

static const char *jstr(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));

	return s ? s : "";
}

/* One transfer of account id on both banks: what the client saw, and
 * whether it took effect (both rows) or not (neither); anything else
 * fails. */
struct transfer {
	pthread_t th;
	const char *addr;
	int id, amount;
	const char *protocol; /* NULL: presumed abort */
	int status;	      /* HTTP status or negative errno */
	char outcome[16];     /* from the answer, "" if none */
};

static void *transfer_main(void *arg)
{
	struct transfer *t = arg;
	char body[768];
	json_t *j = NULL;

	transfer_body(body, sizeof(body), t->id, t->amount, t->protocol);
	t->status =
	    coord_request_at(t->addr, "POST", "/v1/txns", body, 30000, &j);
	snprintf(t->outcome, sizeof(t->outcome), "%s", jstr(j, "outcome"));
	json_decref(j);
	return NULL;
}

/* true: applied on both; false: on neither; a half-done transfer fails. */
static bool applied(const struct env *e, const struct transfer *t)
{
	long long a = balance(e->ci[0], t->id), b = balance(e->ci[1], t->id);

	ck_assert_msg((a == BALANCE - t->amount && b == BALANCE + t->amount) ||
			  (a == BALANCE && b == BALANCE),
		      "transfer on account %d is half done: a=%lld b=%lld",
		      t->id, a, b);
	if (t->status == 200)
		ck_assert_msg(
		    strcmp(t->outcome, "committed") != 0 || a != BALANCE,
		    "account %d: client told committed, not applied", t->id);
	if (t->status == 409)
		ck_assert_msg(a == BALANCE,
			      "account %d: client told aborted, applied",
			      t->id);
	return a != BALANCE;
}

static const char *seen(int status, char *buf, size_t size)
{
	if (status < 0)
		snprintf(buf, size, "error %s", strerror(-status));
	else
		snprintf(buf, size, "HTTP %d", status);
	return buf;
}

START_TEST(crash_point_then_restart_is_all_or_nothing)
{
	/* Runs 0..4 under presumed abort, 5..9 the same points under
	 * presumed nothing. */
	int np = (int)(sizeof(points) / sizeof(points[0]));
	const char *point = points[_i % np].point;
	bool decided = points[_i % np].decided;
	const char *protocol = _i < np ? NULL : "2pc-pn";
	struct transfer t[5];
	struct coord *c = NULL;
	struct env e;
	char cluster[16], gid[64], path[96], buf[64];
	json_t *j = NULL;
	int st, napplied = 0;

	snprintf(cluster, sizeof(cluster), "crash%d", _i);
	env_setup(&e, cluster);

	/* Round 1: one transfer, the first of epoch 1: its gid is known. */
	ck_assert_int_eq(coord_start(e.cfg, point, &c), 0);
	memset(t, 0, sizeof(t));
	t[0].addr = coord_addr(c);
	t[0].id = 1;
	t[0].amount = 10;
	t[0].protocol = protocol;
	transfer_main(&t[0]);
	ck_assert_int_eq(coord_wait_exit(c, 20000), CRASHPOINT_EXIT);
	coord_free(c);
	c = NULL;
	fprintf(stderr, "%s %s: the client saw %s %s\n", point,
		protocol ? protocol : "2pc-pa",
		seen(t[0].status, buf, sizeof(buf)), t[0].outcome);
	/* Before the decision nobody may be told "committed"; nobody is
	 * ever told "aborted" here. */
	ck_assert_int_ne(t[0].status, 409);
	if (!decided)
		ck_assert_int_ne(t[0].status, 200);

	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	assert_none_prepared(&e);
	ck_assert_int_eq(applied(&e, &t[0]), decided);
	snprintf(gid, sizeof(gid), "%s_1_1", cluster);
	snprintf(path, sizeof(path), "/v1/txns/%s", gid);
	if (decided) {
		ck_assert_int_eq(coord_wait_txn_state(c, gid, "done", 20000),
				 0);
		st = coord_request(c, "GET", path, NULL, 5000, &j);
		ck_assert_int_eq(st, 200);
		ck_assert_str_eq(jstr(j, "outcome"), "committed");
		fprintf(stderr, "%s: after restart GET %s: %s %s%s\n", point,
			gid, jstr(j, "state"), jstr(j, "outcome"),
			json_is_true(json_object_get(j, "recovered"))
			    ? " recovered"
			    : "");
		/* Re-driven from the log by this process. */
		if (_i % np == 2)
			ck_assert(
			    json_is_true(json_object_get(j, "recovered")));
	} else {
		/* Presumed abort: no decision was written, so the restarted
		 * coordinator knows nothing of it. */
		st = coord_request(c, "GET", path, NULL, 5000, &j);
		fprintf(stderr, "%s: after restart GET %s: HTTP %d %s\n", point,
			gid, st, jstr(j, "outcome"));
		ck_assert_msg(st == 404 ||
				  (st == 200 &&
				   strcmp(jstr(j, "outcome"), "aborted") == 0),
			      "GET %s: %d", gid, st);
	}
	json_decref(j);
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	c = NULL;

	/* Round 2: four transfers at once, on accounts 2..5; the first to
	 * reach the point takes the process down with the others in flight. */
	ck_assert_int_eq(coord_start(e.cfg, point, &c), 0);
	for (int k = 1; k < 5; k++) {
		t[k].addr = coord_addr(c);
		t[k].id = k + 1;
		t[k].amount = 10 * (k + 1);
		t[k].protocol = protocol;
		ck_assert_int_eq(
		    pthread_create(&t[k].th, NULL, transfer_main, &t[k]), 0);
	}
	for (int k = 1; k < 5; k++)
		pthread_join(t[k].th, NULL);
	ck_assert_int_eq(coord_wait_exit(c, 20000), CRASHPOINT_EXIT);
	coord_free(c);
	c = NULL;
	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	assert_none_prepared(&e);
	for (int k = 1; k < 5; k++) {
		bool a = applied(&e, &t[k]);

		napplied += a;
		fprintf(stderr,
			"%s: concurrent transfer %d: client saw %s %s, "
			"%s\n",
			point, k, seen(t[k].status, buf, sizeof(buf)),
			t[k].outcome, a ? "applied" : "not applied");
	}
	/* The one that hit the point went the point's way; before any
	 * decision none of the others can have been decided either (each
	 * would have passed the same point first). */
	if (decided)
		ck_assert_int_ge(napplied, 1);
	else
		ck_assert_int_eq(napplied, 0);
	assert_total_conserved(&e);
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	coord_tmpdir_remove(e.dir);
}
END_TEST

START_TEST(database_crash_between_prepare_and_commit_completes_when_back)
{
	struct transfer t;
	struct coord *c = NULL;
	struct env e;
	json_t *j = NULL;
	const char *s;
	double retries = 0;
	int st;

	env_setup(&e, "tdbrst");
	ck_assert_int_eq(
	    coord_start(e.cfg, "coordinator.after_decision_forced", &c), 0);
	memset(&t, 0, sizeof(t));
	t.addr = coord_addr(c);
	t.id = 1;
	t.amount = 25;
	transfer_main(&t);
	ck_assert_int_eq(coord_wait_exit(c, 20000), CRASHPOINT_EXIT);
	coord_free(c);
	c = NULL;
	/* Both branches prepared, the decision durable, nothing committed. */
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(query(e.ci[i],
				       "select count(*) from pg_prepared_xacts "
				       "where gid = 'tdbrst_1_1_%dof2'",
				       i + 1),
				 1);

	/* bank_b crashes; the coordinator restarts without it. */
	ck_assert_int_eq(pg_harness_kill_server(harness, 1), 0);
	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	/* bank_a gets its COMMIT PREPARED... */
	ck_assert_int_eq(
	    coord_pg_wait_int(e.ci[0], "select count(*) from pg_prepared_xacts",
			      0, 20000),
	    0);
	ck_assert_int_eq(balance(e.ci[0], 1), BALANCE - 25);
	/* ...while bank_b's is retried: the txn is in doubt until then. */
	ck_assert_int_eq(
	    coord_wait_txn_state(c, "tdbrst_1_1", "in_doubt", 20000), 0);
	st = coord_request(c, "GET", "/v1/txns?state=in_doubt", NULL, 5000, &j);
	ck_assert_int_eq(st, 200);
	s = jstr(json_array_get(json_object_get(j, "txns"), 0), "gid");
	ck_assert_str_eq(s, "tdbrst_1_1");
	json_decref(j);
	ck_assert_int_eq(
	    coord_metric(c, "decree_phase2_retries_total", &retries), 0);
	ck_assert_msg(retries >= 1, "retries %g", retries);
	ck_assert_int_eq(coord_metric(c, "decree_txns_in_doubt", &retries), 0);
	ck_assert_msg(retries == 1, "in doubt %g", retries);

	/* A clean stop while it is in doubt, and a start while bank_b is
	 * still down: the decision is kept and re-driven again. */
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	ck_assert_int_eq(
	    coord_wait_txn_state(c, "tdbrst_1_1", "in_doubt", 20000), 0);

	/* bank_b comes back (its prepared branch survived the crash). */
	ck_assert_int_eq(pg_harness_start_server(harness, 1), 0);
	ck_assert_int_eq(coord_wait_txn_state(c, "tdbrst_1_1", "done", 20000),
			 0);
	assert_none_prepared(&e);
	ck_assert_int_eq(balance(e.ci[1], 1), BALANCE + 25);
	st = coord_request(c, "GET", "/v1/txns/tdbrst_1_1", NULL, 5000, &j);
	ck_assert_int_eq(st, 200);
	ck_assert_str_eq(jstr(j, "outcome"), "committed");
	json_decref(j);
	assert_total_conserved(&e);
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	coord_tmpdir_remove(e.dir);
}
END_TEST

START_TEST(idempotent_retry_after_a_crash_runs_nothing_twice)
{
	static const char *const body =
	    "{\"idempotency_key\":\"transfer-42\",\"branches\":["
	    "{\"resource\":\"bank_a\",\"statements\":[\"update accounts "
	    "set balance = balance - 42 where id = 1\"]},"
	    "{\"resource\":\"bank_b\",\"statements\":[\"update accounts "
	    "set balance = balance + 42 where id = 1\"]}]}";
	struct coord *c = NULL;
	struct env e;
	json_t *j = NULL;
	int st;

	env_setup(&e, "tidem");
	ck_assert_int_eq(
	    coord_start(e.cfg, "coordinator.after_decision_forced", &c), 0);
	st = coord_request(c, "POST", "/v1/txns", body, 30000, NULL);
	ck_assert_msg(st < 0, "the client got an answer: %d", st);
	ck_assert_int_eq(coord_wait_exit(c, 20000), CRASHPOINT_EXIT);
	coord_free(c);
	c = NULL;

	/* The client, told nothing, retries with the same key. */
	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	st = coord_request(c, "POST", "/v1/txns", body, 30000, &j);
	ck_assert_int_eq(st, 200);
	ck_assert_str_eq(jstr(j, "gid"), "tidem_1_1");
	ck_assert_str_eq(jstr(j, "outcome"), "committed");
	json_decref(j);
	ck_assert_int_eq(coord_wait_txn_state(c, "tidem_1_1", "done", 20000),
			 0);
	assert_none_prepared(&e);
	ck_assert_int_eq(balance(e.ci[0], 1), BALANCE - 42);
	ck_assert_int_eq(balance(e.ci[1], 1), BALANCE + 42);
	/* Found by its key too. */
	st = coord_request(c, "GET", "/v1/txns?idempotency_key=transfer-42",
			   NULL, 5000, &j);
	ck_assert_int_eq(st, 200);
	{
		char *d = json_dumps(j, JSON_COMPACT);

		ck_assert_msg(d != NULL && strstr(d, "tidem_1_1") != NULL,
			      "GET by key: %s", d ? d : "(null)");
		free(d);
	}
	json_decref(j);
	/* A retry after a clean restart still runs nothing. */
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	st = coord_request(c, "POST", "/v1/txns", body, 30000, &j);
	ck_assert_int_eq(st, 200);
	ck_assert_str_eq(jstr(j, "gid"), "tidem_1_1");
	json_decref(j);
	ck_assert_int_eq(balance(e.ci[0], 1), BALANCE - 42);
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	coord_tmpdir_remove(e.dir);
}
END_TEST

START_TEST(presumed_nothing_crash_after_begin_rolls_back)
{
	/* Under PN the BEGIN record is forced before the PREPAREs: a crash
	 * after them leaves a BEGIN with no decision, which recovery must
	 * abort (rolling back what was prepared) and record. */
	static const char *const body =
	    "{\"protocol\":\"2pc-pn\",\"branches\":["
	    "{\"resource\":\"bank_a\",\"statements\":[\"update accounts "
	    "set balance = balance - 5 where id = 2\"]},"
	    "{\"resource\":\"bank_b\",\"statements\":[\"update accounts "
	    "set balance = balance + 5 where id = 2\"]}]}";
	struct coord *c = NULL;
	struct env e;
	json_t *j = NULL;
	int st;

	env_setup(&e, "tpncrash");
	ck_assert_int_eq(
	    coord_start(e.cfg, "coordinator.after_prepare_sent", &c), 0);
	st = coord_request(c, "POST", "/v1/txns", body, 30000, NULL);
	ck_assert_msg(st < 0, "the client got an answer: %d", st);
	ck_assert_int_eq(coord_wait_exit(c, 20000), CRASHPOINT_EXIT);
	coord_free(c);
	c = NULL;
	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	assert_none_prepared(&e);
	ck_assert_int_eq(balance(e.ci[0], 2), BALANCE);
	ck_assert_int_eq(balance(e.ci[1], 2), BALANCE);
	ck_assert_int_eq(coord_wait_txn_state(c, "tpncrash_1_1", "done", 20000),
			 0);
	st = coord_request(c, "GET", "/v1/txns/tpncrash_1_1", NULL, 5000, &j);
	ck_assert_int_eq(st, 200);
	ck_assert_str_eq(jstr(j, "outcome"), "aborted");
	json_decref(j);
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	coord_tmpdir_remove(e.dir);
}
END_TEST

/* PREPARE TRANSACTION gid on server i, holding a row of its own. */
static void prepare_foreign(const struct env *e, int i, const char *gid,
			    int row)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "begin; insert into accounts values (%d, 1); "
		 "prepare transaction '%s'",
		 row, gid);
	ck_assert_int_eq(coord_pg_exec(e->ci[i], sql), 0);
}

static long long has_prepared(const struct env *e, int i, const char *gid)
{
	char sql[256];
	long long v = -1;

	snprintf(sql, sizeof(sql),
		 "select count(*) from pg_prepared_xacts where gid = '%s'",
		 gid);
	ck_assert_int_eq(coord_pg_int(e->ci[i], sql, &v), 0);
	return v;
}

START_TEST(recovery_rolls_back_only_our_older_epochs)
{
	static const char *const keep[] = {
	    "other_1_7_1of2",	/* another cluster */
	    "trecovx_1_7_1of2", /* a cluster whose name extends ours */
	    "trecov_9_7_1of2",	/* a newer epoch: not ours to judge */
	    "trecov_not_a_gid", /* our prefix, not a gid */
	};
	struct coord *c = NULL;
	struct env e;
	char sql[128];

	env_setup(&e, "trecov");
	/* Epoch 1 comes and goes; its transaction 7 prepared a branch and
	 * decided nothing (as after a crash before the decision). */
	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	prepare_foreign(&e, 0, "trecov_1_7_1of2", 101);
	prepare_foreign(&e, 1, "trecov_1_7_2of2", 101);
	for (int k = 0; k < 4; k++)
		prepare_foreign(&e, 0, keep[k], 102 + k);

	ck_assert_int_eq(coord_start(e.cfg, NULL, &c), 0);
	for (int i = 0; i < 2; i++) {
		snprintf(sql, sizeof(sql),
			 "select count(*) from pg_prepared_xacts where gid = "
			 "'trecov_1_7_%dof2'",
			 i + 1);
		ck_assert_int_eq(coord_pg_wait_int(e.ci[i], sql, 0, 20000), 0);
	}
	/* The same pass over bank_a saw the others and left them alone. */
	for (int k = 0; k < 4; k++)
		ck_assert_msg(has_prepared(&e, 0, keep[k]) == 1,
			      "%s was touched", keep[k]);
	ck_assert_int_eq(query(e.ci[0],
			       "select count(*) from accounts where "
			       "id = %d",
			       101),
			 0);
	ck_assert_int_eq(coord_stop(c), 0);
	coord_free(c);
	for (int k = 0; k < 4; k++) {
		snprintf(sql, sizeof(sql), "rollback prepared '%s'", keep[k]);
		ck_assert_int_eq(coord_pg_exec(e.ci[0], sql), 0);
	}
	coord_tmpdir_remove(e.dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("coordinator_crash");
	TCase *tc = tcase_create("postgres");
	SRunner *sr;
	int failed;

	if (pg_harness_start(2, &harness) < 0) {
		fprintf(stderr, "cannot start PostgreSQL servers\n");
		return 1;
	}
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, crash_point_then_restart_is_all_or_nothing, 0,
			    2 * (int)(sizeof(points) / sizeof(points[0])));
	tcase_add_test(
	    tc, database_crash_between_prepare_and_commit_completes_when_back);
	tcase_add_test(tc, idempotent_retry_after_a_crash_runs_nothing_twice);
	tcase_add_test(tc, presumed_nothing_crash_after_begin_rolls_back);
	tcase_add_test(tc, recovery_rolls_back_only_our_older_epochs);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	pg_harness_destroy(harness);
	return failed == 0 ? 0 : 1;
}
