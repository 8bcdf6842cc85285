/*
 * coord.h - a real `decree coordinator` process for integration tests:
 * start it on a config file (optionally with a crash point), wait until it
 * listens, talk HTTP/JSON to it, read its /metrics, kill or stop it.  Plus
 * the few blocking libpq helpers those tests need (run a statement, read one
 * integer, poll an integer until it has a value).
 *
 * The binary is $DECREE_BIN (tests/run sets it), else build/decree.  The
 * child's stdout and stderr go to files next to the config
 * (<config>.out.<N>, <config>.err, appended), so a failing test can show
 * them; it gets SIGKILL if the process that started it dies, so a test that
 * fails or times out leaves no coordinator behind.
 *
 * Errors are 0 or a negative errno and a line on stderr (test code: it
 * prints, it never exits).  Waits poll a condition with a deadline; none is
 * a fixed sleep.
 */
#ifndef DECREE_TESTS_COORD_H
#define DECREE_TESTS_COORD_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

struct coord;

/*
 * Starts `decree coordinator --config config_path` with
 * DECREE_CRASH_POINT=crash_point (NULL: the variable is removed from the
 * child's environment) and waits, at most 30 s, until it prints
 * "listening on ... port P" and GET /healthz answers 200 (its new epoch is
 * durable).  -EIO if it exited or never got ready (its stderr tail is
 * printed).
 */
int coord_start(const char *config_path, const char *crash_point,
		struct coord **out);
/* "127.0.0.1:P" of its HTTP API. */
const char *coord_addr(const struct coord *c);
pid_t coord_pid(const struct coord *c);

/*
 * Sends one request (body may be NULL) and waits at most timeout_ms.
 * Returns the HTTP status, or a negative errno from http_client_request
 * (-ECONNRESET when the process died before answering, ...).  *json (may be
 * NULL) gets the parsed body, or NULL when it is not JSON; the caller
 * json_decref()s it.
 */
int coord_request(const struct coord *c, const char *method, const char *path,
		  const char *body, int timeout_ms, json_t **json);
/* The same against any "host:port" (for threads that only hold the
 * address). */
int coord_request_at(const char *addr, const char *method, const char *path,
		     const char *body, int timeout_ms, json_t **json);

/*
 * Value of the series `name` in GET /metrics: the exact text before the
 * value, e.g. "decree_log_forced_writes_total" or
 * "decree_txns_total{outcome=\"committed\"}".  0 or -ENOENT / an HTTP
 * error.
 */
int coord_metric(const struct coord *c, const char *name, double *out);

/*
 * Polls GET /v1/txns/<gid> until its "state" is `state` (e.g. "done"), at
 * most timeout_ms.  0, or -ETIMEDOUT (the last body is printed).
 */
int coord_wait_txn_state(const struct coord *c, const char *gid,
			 const char *state, int timeout_ms);

/*
 * Waits at most timeout_ms for the process to exit by itself.  Returns its
 * exit status (0..255), 128 + signal if a signal ended it, or -ETIMEDOUT
 * (it still runs).
 */
int coord_wait_exit(struct coord *c, int timeout_ms);
/* SIGKILL and reap.  0. */
int coord_kill(struct coord *c);
/* SIGTERM, wait up to 15 s (then SIGKILL); returns what coord_wait_exit
 * would. */
int coord_stop(struct coord *c);
/* Kills it if it still runs and frees c.  NULL is a no-op. */
void coord_free(struct coord *c);

/* Makes a fresh directory $TMPDIR/decree-it-XXXXXX (or /tmp); path gets
 * at least 64 bytes.  0 or -errno. */
int coord_tmpdir_make(char *path, size_t size);
/* Removes a directory tree.  0 or -errno. */
int coord_tmpdir_remove(const char *path);

/* Runs sql (one or more statements, no parameters) on a fresh connection.
 * 0 or -EIO (the error is printed). */
int coord_pg_exec(const char *conninfo, const char *sql);
/* The first column of the first row of sql as an integer (NULL: 0).
 * 0 or -EIO. */
int coord_pg_int(const char *conninfo, const char *sql, long long *out);
/*
 * Polls coord_pg_int(conninfo, sql) until it equals want, at most
 * timeout_ms (a failing connection counts as "not yet").  0 or -ETIMEDOUT
 * (the last value is printed).
 */
int coord_pg_wait_int(const char *conninfo, const char *sql, long long want,
		      int timeout_ms);

/*
 * Writes a coordinator config to path: node "c1", cluster_id cluster,
 * listen.http 127.0.0.1:0, data_dir, and n postgres resources named
 * bank_a, bank_b, ... with the given conninfos.  extra (may be NULL) is
 * more top-level members as JSON text without braces, e.g.
 * "\"timeouts\":{\"retry_max_ms\":200}".  0 or -errno.
 */
int coord_config_write(const char *path, const char *cluster,
		       const char *data_dir, const char *const *conninfos,
		       int n, const char *extra);
/*
 * Makes a fresh bank on one server: rolls back every prepared transaction
 * left there, then (re)creates accounts(id int primary key, balance int not
 * null check (balance >= 0)) with ids 1..accounts, each holding balance.
 * 0 or -EIO.
 */
int coord_bank_create(const char *conninfo, int accounts, int balance);

#endif
