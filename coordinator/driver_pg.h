/*
 * driver_pg.h - the coordinator's `postgres` resource driver: libpq in
 * nonblocking mode on the libuv loop, one bounded connection pool per
 * resource, branch sessions pinned to a connection, and the two-phase
 * operations (prepare, commit/rollback prepared, list prepared by prefix).
 *
 * Private to coordinator/ until coordinator/coordinator.h carries these
 * declarations; see docs/driver-pg.md for the behaviour in full.
 *
 * Calling conventions (libuv style):
 *  - Every operation is asynchronous and completes by calling its callback on
 *    the loop, never from inside the call that started it.
 *  - A function that takes a callback and returns a negative code failed
 *    synchronously: nothing changed and the callback never fires.
 *  - The result passed to a callback, and every pointer inside it, is owned
 *    by the driver and valid only during the callback: copy what you keep.
 *  - Strings passed in (SQL, parameters, gids, prefixes, the config) are
 *    copied; the caller keeps ownership of its own.
 *  - Error codes are negative: -errno, or one of COORDINATOR_PG_E* below.
 */
#ifndef DECREE_COORDINATOR_DRIVER_PG_H
#define DECREE_COORDINATOR_DRIVER_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The driver's own error codes (negative, apart from -errno values). */
#define COORDINATOR_PG_ERRORS(X)                                               \
	X(SQL, "the server reported an error")                                 \
	X(CONNECT, "cannot connect to the server")                             \
	X(CONNLOST, "connection to the server lost")                           \
	X(TIMEOUT, "the server did not answer in time")                        \
	X(QUEUE_FULL, "too many requests waiting for a connection")            \
	X(REFUSED, "max_prepared_transactions is 0 on the server")             \
	X(ROLLED_BACK, "the transaction was rolled back by the server")        \
	X(BAD_GID, "invalid transaction id")                                   \
	X(CLOSED, "the resource is closed")

enum {
	COORDINATOR_PG_EBASE = -2000,
#define COORDINATOR_PG_ENUM(name, text) COORDINATOR_PG_E##name,
	COORDINATOR_PG_ERRORS(COORDINATOR_PG_ENUM)
#undef COORDINATOR_PG_ENUM
	COORDINATOR_PG_ELAST
};

/* Text for a driver code or a -errno value; never NULL. */
const char *coordinator_pg_strerror(int code);

/* gids are at most this many bytes (PostgreSQL's GIDSIZE less the NUL). */
#define COORDINATOR_PG_GID_MAX 199

struct coordinator_pg_config {
	const char *name;     /* resource name, used in every message */
	const char *conninfo; /* libpq conninfo; never logged or shown */
	int pool_size;        /* connections, 1..1000; 0 means 4 */
	int queue_limit;      /* requests waiting for a connection; 0: 1024 */
	/* SET statement_timeout on each connection; 0 disables.  The client
	 * gives the server this long plus timeout_grace_ms to answer before it
	 * cancels the statement and drops the connection. */
	uint64_t statement_timeout_ms;
	uint64_t timeout_grace_ms;   /* 0 means 1000 */
	uint64_t connect_timeout_ms; /* 0 means 5000 */
	uint64_t queue_timeout_ms;   /* longest wait for a connection; 0: 10000 */
	uint64_t backoff_min_ms;     /* first reconnect delay; 0 means 100 */
	uint64_t backoff_max_ms;     /* reconnect delay cap; 0 means 5000 */
	size_t row_limit;            /* rows kept per statement; 0 means 1000 */
};

/* What an operation came to. */
enum coordinator_pg_outcome {
	COORDINATOR_PG_OK,        /* done (prepare: voted yes, now prepared) */
	COORDINATOR_PG_READ_ONLY, /* prepare: no xid assigned, committed */
	COORDINATOR_PG_NOT_FOUND, /* commit/rollback prepared: 42704 */
	COORDINATOR_PG_FAILED     /* see code, message, sqlstate */
};

struct coordinator_pg_branch;

struct coordinator_pg_result {
	enum coordinator_pg_outcome outcome;
	int code;            /* 0, or why it failed (see above) */
	const char *message; /* "" on success; else names the resource:
			      * "cannot prepare branch on bank_b: ..." */
	const char *sqlstate; /* "" unless the server sent one */
	const char *detail;   /* NULL unless the server sent one */
	const char *hint;     /* NULL unless the server sent one */
	/* The request reached the server but its answer was lost (connection
	 * lost or timed out after sending): a PREPARE or COMMIT may or may not
	 * have happened. */
	bool in_doubt;
	long long rows_affected; /* from the command tag; -1 if none */
	int ncols;
	const char *const *colnames; /* ncols names */
	int nrows;                   /* rows kept, at most row_limit */
	bool truncated;              /* more rows came than were kept */
	/* nrows * ncols values, row-major; NULL for SQL NULL. */
	const char *const *values;
	/* begin: the branch (also returned by coordinator_pg_begin). */
	struct coordinator_pg_branch *branch;
};

/* values[row * ncols + col], or NULL if out of range or SQL NULL. */
const char *coordinator_pg_result_value(const struct coordinator_pg_result *r,
					int row, int col);

typedef void (*coordinator_pg_cb)(const struct coordinator_pg_result *res,
				  void *data);

struct coordinator_pg;

/*
 * Creates the resource and starts its first connection in the background
 * (which checks max_prepared_transactions).  Fails with -EINVAL on a bad
 * config or conninfo (the reason, never a password, goes to errbuf when it
 * is not NULL) or -ENOMEM.  *out is owned by the caller until
 * coordinator_pg_close().
 */
int coordinator_pg_open(uv_loop_t *loop, const struct coordinator_pg_config *cfg,
			struct coordinator_pg **out, char *errbuf,
			size_t errlen);

/*
 * Closes the resource: every pending request completes with
 * COORDINATOR_PG_ECLOSED before this returns, every branch ends (the server
 * rolls back unprepared work) and its pointer becomes invalid; connections
 * close, and cb (may be NULL) fires once every handle is closed, after
 * which the memory is gone.
 */
void coordinator_pg_close(struct coordinator_pg *pg, void (*cb)(void *data),
			  void *data);

const char *coordinator_pg_name(const struct coordinator_pg *pg);
/* True while the last connection attempt succeeded (or none failed yet). */
bool coordinator_pg_is_up(const struct coordinator_pg *pg);
/* The last connect error ("" if none); it names the resource. */
const char *coordinator_pg_last_error(const struct coordinator_pg *pg);

struct coordinator_pg_stats {
	int open;      /* connections established (idle + busy + pinned) */
	int idle;      /* established and free */
	int pinned;    /* held by a branch */
	int connecting;
	int queued;    /* requests waiting for a connection */
	uint64_t connects;         /* successful connection setups */
	uint64_t connect_failures;
	uint64_t timeouts;         /* statements cancelled by the client timer */
	uint64_t lost;             /* connections lost while open */
};
void coordinator_pg_stats_get(const struct coordinator_pg *pg,
			      struct coordinator_pg_stats *out);

/* Gets a connection (connecting if need be) and gives it back: OK means the
 * resource is reachable and accepts prepared transactions. */
int coordinator_pg_check(struct coordinator_pg *pg, coordinator_pg_cb cb,
			 void *data);

/*
 * Starts a branch: takes a pooled connection (or waits in the queue), sends
 * BEGIN and pins the connection to the branch until prepare, commit or
 * rollback ends it.  *out is valid from now on; if the callback reports a
 * failure the branch is already gone when the callback returns.
 */
int coordinator_pg_begin(struct coordinator_pg *pg, coordinator_pg_cb cb,
			 void *data, struct coordinator_pg_branch **out);

/*
 * Runs one statement of the user's with text parameters ($1..$n) on the
 * branch.  The result has rows affected and up to row_limit returned rows,
 * or the server's error (SQLSTATE, message, detail, hint); after an error
 * the branch stays open (the server's transaction is aborted) and must be
 * rolled back.  -EBUSY if an operation of the branch is still running,
 * -EINVAL on a NULL statement.
 */
int coordinator_pg_branch_exec(struct coordinator_pg_branch *b, const char *sql,
			       int nparams, const char *const *params,
			       coordinator_pg_cb cb, void *data);

/*
 * Phase 1: READ_ONLY if the branch was assigned no transaction id (it is
 * committed locally), OK once PREPARE TRANSACTION gid succeeded, FAILED
 * (vote no; the server rolled the branch back) otherwise.  A FAILED result
 * with in_doubt set may still have prepared.  Ends the branch.
 * COORDINATOR_PG_EBAD_GID for an empty or too long gid.
 */
int coordinator_pg_branch_prepare(struct coordinator_pg_branch *b,
				  const char *gid, coordinator_pg_cb cb,
				  void *data);
/* One-phase commit (COMMIT); ends the branch.  FAILED with ROLLED_BACK if
 * the server rolled back instead. */
int coordinator_pg_branch_commit(struct coordinator_pg_branch *b,
				 coordinator_pg_cb cb, void *data);
/* ROLLBACK of an unprepared branch; ends the branch.  OK also when the
 * connection was already lost (the server dropped the work). */
int coordinator_pg_branch_rollback(struct coordinator_pg_branch *b,
				   coordinator_pg_cb cb, void *data);

/* Phase 2 on any pooled connection: OK, NOT_FOUND (SQLSTATE 42704: no such
 * prepared transaction) or FAILED. */
int coordinator_pg_commit_prepared(struct coordinator_pg *pg, const char *gid,
				   coordinator_pg_cb cb, void *data);
int coordinator_pg_rollback_prepared(struct coordinator_pg *pg,
				     const char *gid, coordinator_pg_cb cb,
				     void *data);

/* The gids of this database's prepared transactions that start with prefix
 * (taken literally: '%' and '_' match only themselves), sorted, one column
 * "gid", no row limit. */
int coordinator_pg_list_prepared(struct coordinator_pg *pg, const char *prefix,
				 coordinator_pg_cb cb, void *data);

#endif
