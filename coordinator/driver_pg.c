/*
 * driver_pg.c - the `postgres` resource driver: a bounded pool of libpq
 * connections per resource, driven in nonblocking mode on the libuv loop.
 *
 * Design notes
 *  - Nothing here blocks the loop: connections are made with
 *    PQconnectStart/PQconnectPoll, queries go out with PQsendQueryParams and
 *    PQflush, answers come in through PQconsumeInput/PQisBusy/PQgetResult, all
 *    driven by a uv_poll_t on PQsocket().  The one blocking libpq call we
 *    need, PQcancel(), runs on the libuv thread pool.  (Host names in the
 *    conninfo are resolved by PQconnectStart itself; use addresses or
 *    hostaddr to keep that off the loop too.)
 *  - User statements use the extended protocol (PQsendQueryParams), so a
 *    statement can never smuggle a second one in.  Values reach the server
 *    only as parameters; gids only as quoted literals (PQescapeLiteral
 *    unless they hold only safe characters).  The driver's own statements
 *    without parameters (fixed text, or a gid literal) go out as simple
 *    queries: one message, less server CPU.
 *  - A request needing a connection takes an idle one or waits in a bounded
 *    FIFO queue; the pool grows on demand up to pool_size.  A branch pins
 *    its connection from begin until prepare, commit or rollback.
 *  - begin sends nothing: BEGIN goes out with the branch's first statement
 *    in one libpq pipeline (BEGIN, statement, one Sync), one round trip.
 *    A branch that ends before any statement never sends BEGIN.
 *  - A connection goes back to the pool clean: a transaction left open (a
 *    failed prepare) gets an internal ROLLBACK, and after a branch that ran
 *    anything but successful plain DML (INSERT/UPDATE/DELETE/MERGE tags)
 *    the session gets DISCARD ALL, unless keep_session_state says not to
 *    bother.
 *  - After each user statement the transaction status is checked: a user
 *    COMMIT/ROLLBACK/PREPARE TRANSACTION breaks the branch (EENDED) rather
 *    than let prepare call it read-only.  A branch whose DML changed rows
 *    (or that ran DDL) prepares without the read-only probe.
 *  - A failed connection attempt backs off exponentially (backoff_min_ms
 *    doubling to backoff_max_ms) and is retried in the background; while
 *    the resource is down with no live connection, requests fail at once
 *    with the last connect error instead of piling up.
 *  - Connections start with statement_timeout in the startup "options" and
 *    application_name "decree" as a fallback: as startup settings they are
 *    the session defaults, so DISCARD ALL keeps them.  Each new connection
 *    then reads max_prepared_transactions; 0 refuses the resource.
 *  - A client timer per running statement (statement_timeout_ms +
 *    timeout_grace_ms) catches a server that does not answer even its own
 *    timeout: it sends a cancel (off the loop) and drops the connection.
 *  - Callbacks never fire from inside an API call: completions that arise
 *    there (a dead branch, a failed send, a resource known down) go to a
 *    deferred list drained by a zero timer.
 *  - The conninfo is never logged or put in a message: libpq's own errors
 *    do not contain the password, and we log only host, port and database.
 *
 * Invariants
 *  1. c->req != NULL exactly when c->state is C_SETUP or C_BUSY.
 *  2. c->branch != NULL iff a branch is pinned to c, and then
 *     c->branch->conn == c.
 *  3. A request is in exactly one place: the queue, the deferred list, a
 *     connection's req slot, or being delivered.
 *  4. pg memory is freed only when every handle has closed, so a callback
 *     may call coordinator_pg_close() and the code after it still runs on
 *     valid memory (it checks pg->closing).
 *
 * Connection states
 *
 *   EMPTY -> CONNECTING -> SETUP -> IDLE <-> BUSY
 *     ^          |           |      |         |
 *     +----------+-----------+------+---------+  (failure, loss, timeout)
 *
 *   EMPTY -> CONNECTING   [start_connect]   pool grows or retry timer
 *   CONNECTING -> SETUP   [connect_step]    PQconnectPoll said OK
 *   SETUP -> IDLE         [setup_done]      max_prepared_transactions > 0
 *   IDLE -> BUSY          [send_req from pump, run_on_branch, release]
 *   (a begin pins an IDLE connection without sending: pin_branch)
 *   BUSY -> IDLE          [finish, release]
 *   any -> EMPTY          [connect_failed, conn_lost, release]
 */
#include "coordinator/driver_pg.h"

#include "common/common.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COMP "driver_pg"

enum conn_state { C_EMPTY, C_CONNECTING, C_SETUP, C_IDLE, C_BUSY };

enum op {
	OP_SETUP,
	OP_CHECK,
	OP_BEGIN,
	OP_EXEC,
	OP_PREPARE,
	OP_COMMIT,
	OP_ROLLBACK,
	OP_COMMIT_PREPARED,
	OP_ROLLBACK_PREPARED,
	OP_LIST,
	OP_RESET,      /* internal: DISCARD ALL between branches */
	OP_RUN_PREPARE /* BEGIN, statements, PREPARE TRANSACTION: one pipeline
			*/
};

/* Which query of a pipeline an answer belongs to: BEGIN, the Parse of a
 * statement going into the connection's statement cache, a statement,
 * PREPARE TRANSACTION. */
enum qkind { Q_BEGIN, Q_PARSE, Q_STMT, Q_PREPARE };

/*
 * The statements a connection holds as named prepared statements
 * ("decree_<n>"), so that a statement a branch runs again is neither
 * parsed nor planned again (after a few runs the server keeps a generic
 * plan).  Only run_prepare's pipelines use it (there a Parse can go ahead
 * of the statement in the same round trip).  DISCARD ALL and a new
 * connection empty it; a Parse that failed or was skipped removes its
 * entry.
 */
#define STMT_CACHE_MAX 32
struct cached_stmt {
	char *sql;
	uint32_t hash;
	int nparams;
	unsigned seq; /* of its name */
	char name[24];
};

/* One statement's answer, kept until delivery (OP_RUN_PREPARE). */
struct answer {
	long long rows_affected;
	int ncols;
	char **colnames;
	int nrows;
	char **values;
	bool truncated;
};

/* Steps of OP_PREPARE. */
enum step { STEP_XID, STEP_PREPARE, STEP_RO_COMMIT };

struct coordinator_pg;
struct conn;

/* A poll handle lives apart from its connection: it must outlive
 * close_conn() until libuv's close callback. */
struct pollh {
	uv_poll_t h;
	struct conn *c; /* NULL once detached */
	struct coordinator_pg *pg;
};

struct conn {
	struct coordinator_pg *pg;
	enum conn_state state;
	PGconn *pq;
	struct pollh *poll;
	int poll_fd;
	int poll_events;
	uv_timer_t timer; /* connect timeout or client statement timer */
	struct req *req;
	struct coordinator_pg_branch *branch;
	bool dirty; /* ran user statements since the last reset */
	struct cached_stmt cache[STMT_CACHE_MAX];
	int ncache;
	unsigned cache_seq; /* names are never reused on a connection */
	/* A cancel went out for its pipeline: close it once the answer is
	 * in, so a late cancel cannot hit its next user. */
	bool doomed;
	struct cork cork; /* send batching (common/cork.h) */
	/* A send failed inside an API call: handled by the defer timer. */
	int fail_code;
	char fail_msg[256];
};

struct req {
	struct req *next;
	struct coordinator_pg *pg;
	enum op op;
	enum step step;
	coordinator_pg_cb cb;
	void *data;
	struct coordinator_pg_branch *branch;
	/* OP_EXEC: the caller's statement and parameters, borrowed: they are
	 * sent (copied into libpq's buffer) within the exec call itself. */
	const char *sql;
	int nparams;
	const char *const *params;
	/* OP_RUN_PREPARE: the statements, borrowed the same way; their
	 * answers; the statement that failed (-1: none); the per-statement
	 * callback. */
	const struct coordinator_pg_stmt *stmts;
	int nstmts;
	struct answer *answers;
	int nanswers;
	int fail_stmt;
	coordinator_pg_cb each;
	/* OP_RUN_PREPARE: per query of the pipeline, its kind and (Q_PARSE,
	 * Q_STMT) statement index; for Q_PARSE qstmt also names the cache
	 * entry (qentry) to drop if the Parse does not succeed. */
	unsigned char *qkind;
	int *qstmt;
	int *qentry;
	/* Their memory when the pipeline is short (most are: BEGIN, a
	 * Parse, a statement, PREPARE), instead of three allocations. */
#define QSMALL 8
	unsigned char qkind_small[QSMALL];
	int qstmt_small[QSMALL];
	int qentry_small[QSMALL];
	char *arg; /* gid or LIKE pattern */
	uint64_t queued_at;
	bool sent;
	/* The branch's BEGIN went out in the same pipeline, ahead of the
	 * statement(s); nq is the number of queries in the pipeline (0: not
	 * pipelined), ends the query ends (NULL results) seen so far. */
	bool with_begin;
	bool begin_failed;
	int nq;
	int ends;
	size_t row_limit;
	/* the answer, accumulated */
	enum coordinator_pg_outcome outcome;
	int code;
	PGresult *err;
	char *msg; /* on failure: what happened (req_fail) */
	char cmd[32];
	bool in_doubt;
	long long rows_affected;
	int ncols;
	char **colnames;
	int nrows;
	int cap;
	char **values;
	bool truncated;
};

enum branch_state { B_BEGINNING, B_OPEN, B_BROKEN };

struct coordinator_pg_branch {
	struct coordinator_pg *pg;
	struct conn *conn;
	enum branch_state state;
	bool busy;
	/* BEGIN not sent yet: it goes out with the first statement. */
	bool need_begin;
	/* A statement surely got a transaction id (DML that changed rows,
	 * DDL): prepare can skip the read-only probe. */
	bool wrote;
	int broken_code;
	char broken_msg[256];
	struct coordinator_pg_branch *prev, *next;
};

struct coordinator_pg {
	uv_loop_t *loop;
	char *name;
	/* The parsed conninfo plus our startup settings, for
	 * PQconnectStartParams; NULL-terminated; values may hold a password
	 * (wiped at close). */
	char **kw;
	char **val;
	int pool_size;
	int queue_limit;
	uint64_t statement_timeout_ms;
	uint64_t grace_ms;
	uint64_t connect_timeout_ms;
	uint64_t queue_timeout_ms;
	uint64_t backoff_min_ms;
	uint64_t backoff_max_ms;
	size_t row_limit;
	bool keep_session_state;

	struct conn *conns;
	struct req *qhead, *qtail;
	int qlen;
	struct req *dhead, *dtail;
	struct coordinator_pg_branch *branches;

	uv_timer_t retry_timer;
	uv_timer_t defer_timer;
	uv_timer_t queue_timer;
	struct cork_batch corks; /* the turn's sends go out together */
	bool retry_pending;
	uint64_t backoff_ms;

	bool up;
	int last_code;
	char last_detail[512];
	char last_error[640];

	struct coordinator_pg_stats stats;

	bool closing;
	int handles;
	void (*close_cb)(void *data);
	void *close_data;
};

static const char *const err_text[] = {
#define COORDINATOR_PG_TEXT(name, text) text,
    COORDINATOR_PG_ERRORS(COORDINATOR_PG_TEXT)
#undef COORDINATOR_PG_TEXT
};

const char *coordinator_pg_strerror(int code)
{
	if (code == 0)
		return "success";
	if (code > COORDINATOR_PG_EBASE && code < COORDINATOR_PG_ELAST)
		return err_text[code - COORDINATOR_PG_EBASE - 1];
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

const char *coordinator_pg_result_value(const struct coordinator_pg_result *r,
					int row, int col)
{
	if (r == NULL || row < 0 || col < 0 || row >= r->nrows ||
	    col >= r->ncols || r->values == NULL)
		return NULL;
	return r->values[(size_t)row * (size_t)r->ncols + (size_t)col];
}

/* Copies src into dst, turning runs of whitespace (libpq's messages span
 * lines) into one space and trimming both ends. */
static void clean_copy(char *dst, size_t n, const char *src)
{
	size_t o = 0;
	bool space = false;

	if (n == 0)
		return;
	for (; src != NULL && *src != '\0' && o + 1 < n; src++) {
		if (*src == ' ' || *src == '\n' || *src == '\t' ||
		    *src == '\r') {
			space = o > 0;
			continue;
		}
		if (space && o + 2 < n)
			dst[o++] = ' ';
		space = false;
		dst[o++] = *src;
	}
	dst[o] = '\0';
}

static const char *op_action(enum op op)
{
	switch (op) {
	case OP_SETUP:
		return "connect";
	case OP_CHECK:
		return "check resource";
	case OP_BEGIN:
		return "begin branch";
	case OP_EXEC:
		return "run statement";
	case OP_PREPARE:
		return "prepare branch";
	case OP_COMMIT:
		return "commit branch";
	case OP_ROLLBACK:
		return "roll back branch";
	case OP_COMMIT_PREPARED:
		return "commit prepared transaction";
	case OP_ROLLBACK_PREPARED:
		return "roll back prepared transaction";
	case OP_LIST:
		return "list prepared transactions";
	case OP_RESET:
		return "reset session";
	case OP_RUN_PREPARE:
		return "prepare branch";
	}
	return "use resource";
}

/* ---- requests ---------------------------------------------------------- */

static void reset_answer(struct req *r)
{
	int i, n = r->nrows * r->ncols;

	for (i = 0; i < n; i++)
		mem_free(r->values[i]);
	mem_free(r->values);
	for (i = 0; i < r->ncols; i++)
		mem_free(r->colnames[i]);
	mem_free(r->colnames);
	if (r->err != NULL)
		PQclear(r->err);
	r->values = NULL;
	r->colnames = NULL;
	r->err = NULL;
	r->ncols = 0;
	r->nrows = 0;
	r->cap = 0;
	r->truncated = false;
	r->rows_affected = -1;
	r->cmd[0] = '\0';
	r->code = 0;
	r->sent = false;
}

static void answer_free(struct answer *a)
{
	for (int i = 0; i < a->nrows * a->ncols; i++)
		mem_free(a->values[i]);
	mem_free(a->values);
	for (int i = 0; i < a->ncols; i++)
		mem_free(a->colnames[i]);
	mem_free(a->colnames);
}

static void req_free(struct req *r)
{
	if (r == NULL)
		return;
	reset_answer(r);
	for (int i = 0; i < r->nanswers; i++)
		answer_free(&r->answers[i]);
	mem_free(r->answers);
	if (r->qkind != r->qkind_small) {
		mem_free(r->qkind);
		mem_free(r->qstmt);
		mem_free(r->qentry);
	}
	mem_free(r->arg);
	mem_free(r->msg);
	mem_free(r);
}

static struct req *req_new(struct coordinator_pg *pg, enum op op,
			   coordinator_pg_cb cb, void *data)
{
	struct req *r = mem_calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->pg = pg;
	r->op = op;
	r->cb = cb;
	r->data = data;
	r->rows_affected = -1;
	r->row_limit = SIZE_MAX;
	r->outcome = COORDINATOR_PG_OK;
	r->fail_stmt = -1;
	return r;
}

/* Marks r failed with code; detail says why (already human text). */
#define REQ_MSG_SIZE 640

static void req_fail(struct req *r, int code, const char *detail)
{
	char clean[512];

	clean_copy(clean, sizeof(clean), detail);
	r->outcome = COORDINATOR_PG_FAILED;
	r->code = code;
	/* Allocated on failure only: a request that succeeds has none. */
	if (r->msg == NULL)
		r->msg = mem_alloc(REQ_MSG_SIZE);
	if (r->msg == NULL)
		return; /* delivered with the code's text */
	snprintf(r->msg, REQ_MSG_SIZE, "cannot %s on %s: %s",
		 op_action(r->begin_failed ? OP_BEGIN
			   : r->op == OP_RUN_PREPARE && r->fail_stmt >= 0
			       ? OP_EXEC
			       : r->op),
		 r->pg->name, clean[0] ? clean : coordinator_pg_strerror(code));
}

static void branch_unlink(struct coordinator_pg_branch *b)
{
	struct coordinator_pg *pg = b->pg;

	if (b->prev != NULL)
		b->prev->next = b->next;
	else if (pg->branches == b)
		pg->branches = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	b->prev = b->next = NULL;
}

static bool ends_branch(const struct req *r)
{
	switch (r->op) {
	case OP_PREPARE:
	case OP_RUN_PREPARE:
	case OP_COMMIT:
	case OP_ROLLBACK:
		return true;
	case OP_BEGIN:
		return r->outcome == COORDINATOR_PG_FAILED;
	default:
		return false;
	}
}

/* Calls the request's callback and frees it (and its branch, if the
 * request ended the branch).  Only from loop callbacks. */
static void deliver(struct req *r)
{
	struct coordinator_pg_branch *b = r->branch;
	struct coordinator_pg_result res;
	bool end = b != NULL && ends_branch(r);

	if (b != NULL) {
		b->busy = false;
		if (end)
			branch_unlink(b);
	}
	memset(&res, 0, sizeof(res));
	res.outcome = r->outcome;
	res.code = r->code;
	/* A failure without its message had no memory for it: the code's
	 * text stands in. */
	if (r->msg != NULL)
		res.message = r->msg;
	else if (r->outcome != COORDINATOR_PG_FAILED)
		res.message = "";
	else if (r->code == -ENOMEM)
		res.message = "out of memory";
	else
		res.message = coordinator_pg_strerror(r->code);
	res.sqlstate = "";
	if (r->err != NULL) {
		const char *s = PQresultErrorField(r->err, PG_DIAG_SQLSTATE);

		res.sqlstate = s ? s : "";
		res.detail = PQresultErrorField(r->err, PG_DIAG_MESSAGE_DETAIL);
		res.hint = PQresultErrorField(r->err, PG_DIAG_MESSAGE_HINT);
	}
	res.in_doubt = r->in_doubt;
	res.rows_affected = r->rows_affected;
	res.ncols = r->ncols;
	res.colnames = (const char *const *)r->colnames;
	res.nrows = r->nrows;
	res.truncated = r->truncated;
	res.values = (const char *const *)r->values;
	res.branch = r->op == OP_BEGIN && !end ? b : NULL;
	res.stmt = r->fail_stmt;
	for (int i = 0; r->each != NULL && i < r->nanswers; i++) {
		const struct answer *a = &r->answers[i];
		struct coordinator_pg_result one;

		memset(&one, 0, sizeof(one));
		one.outcome = COORDINATOR_PG_OK;
		one.message = "";
		one.sqlstate = "";
		one.rows_affected = a->rows_affected;
		one.ncols = a->ncols;
		one.colnames = (const char *const *)a->colnames;
		one.nrows = a->nrows;
		one.truncated = a->truncated;
		one.values = (const char *const *)a->values;
		one.stmt = -1;
		r->each(&one, r->data);
	}
	if (r->cb != NULL)
		r->cb(&res, r->data);
	req_free(r);
	if (end)
		mem_free(b);
}

static void on_defer(uv_timer_t *t);

/* Makes the defer timer run at the start of the next loop iteration. */
static void kick(struct coordinator_pg *pg)
{
	uv_timer_start(&pg->defer_timer, on_defer, 0, 0);
}

static void defer(struct req *r)
{
	struct coordinator_pg *pg = r->pg;

	r->next = NULL;
	if (pg->dtail != NULL)
		pg->dtail->next = r;
	else
		pg->dhead = r;
	pg->dtail = r;
	kick(pg);
}

/* ---- pool bookkeeping -------------------------------------------------- */

static int count_state(const struct coordinator_pg *pg, enum conn_state s)
{
	int n = 0;

	for (int i = 0; i < pg->pool_size; i++)
		n += pg->conns[i].state == s;
	return n;
}

static int live_count(const struct coordinator_pg *pg)
{
	return count_state(pg, C_IDLE) + count_state(pg, C_BUSY);
}

static int connecting_count(const struct coordinator_pg *pg)
{
	return count_state(pg, C_CONNECTING) + count_state(pg, C_SETUP);
}

static void on_poll(uv_poll_t *h, int status, int events);
static void on_poll_closed(uv_handle_t *h);
static void pump(struct coordinator_pg *pg);
static void arm_retry(struct coordinator_pg *pg);

static void poll_close(struct conn *c)
{
	if (c->poll == NULL)
		return;
	c->poll->c = NULL;
	uv_close((uv_handle_t *)&c->poll->h, on_poll_closed);
	c->poll = NULL;
	c->poll_events = 0;
	c->poll_fd = -1;
}

/* Polls c's socket for events (re-creating the handle if libpq moved to
 * another socket). */
static int watch(struct conn *c, int events)
{
	struct coordinator_pg *pg = c->pg;
	int fd = PQsocket(c->pq);
	int rc;

	if (fd < 0)
		return -EBADF;
	if (c->poll != NULL && c->poll_fd != fd)
		poll_close(c);
	if (c->poll == NULL) {
		struct pollh *p = mem_calloc(1, sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		rc = uv_poll_init_socket(pg->loop, &p->h, fd);
		if (rc < 0) {
			mem_free(p);
			return rc;
		}
		p->c = c;
		p->pg = pg;
		p->h.data = p;
		pg->handles++;
		c->poll = p;
		c->poll_fd = fd;
		c->poll_events = 0;
	}
	if (events == c->poll_events)
		return 0;
	rc = uv_poll_start(&c->poll->h, events, on_poll);
	if (rc < 0)
		return rc;
	c->poll_events = events;
	return 0;
}

static void cache_clear(struct conn *c)
{
	for (int i = 0; i < c->ncache; i++)
		mem_free(c->cache[i].sql);
	c->ncache = 0;
}

/* FNV-1a: a cheap first comparison before strcmp. */
static uint32_t sql_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static int cache_find(const struct conn *c, const char *sql, uint32_t h,
		      int nparams)
{
	for (int i = 0; i < c->ncache; i++) {
		const struct cached_stmt *e = &c->cache[i];

		if (e->hash == h && e->nparams == nparams &&
		    strcmp(e->sql, sql) == 0)
			return i;
	}
	return -1;
}

/* A Parse did not happen (failed, or skipped after an earlier error):
 * forget the entry of that name. */
static void cache_drop(struct conn *c, unsigned seq)
{
	int i = 0;

	while (i < c->ncache && c->cache[i].seq != seq)
		i++;
	if (i == c->ncache)
		return;
	mem_free(c->cache[i].sql);
	memmove(&c->cache[i], &c->cache[i + 1],
		(size_t)(c->ncache - i - 1) * sizeof(c->cache[0]));
	c->ncache--;
}

static void close_conn(struct conn *c)
{
	poll_close(c);
	uv_timer_stop(&c->timer);
	cork_drop(&c->cork);
	if (c->pq != NULL)
		PQfinish(c->pq);
	c->pq = NULL;
	c->state = C_EMPTY;
	c->req = NULL;
	c->branch = NULL;
	c->dirty = false;
	c->doomed = false;
	c->fail_code = 0;
	cache_clear(c);
}

/* Fails every queued request (deferred: may run inside an API call). */
static void fail_queue(struct coordinator_pg *pg, int code, const char *detail)
{
	while (pg->qhead != NULL) {
		struct req *r = pg->qhead;

		pg->qhead = r->next;
		pg->qlen--;
		req_fail(r, code, detail);
		defer(r);
	}
	pg->qtail = NULL;
	uv_timer_stop(&pg->queue_timer);
}

static void connect_failed(struct conn *c, int code, const char *detail)
{
	struct coordinator_pg *pg = c->pg;

	/* detail may point into c->pq: copy it before closing. */
	clean_copy(pg->last_detail, sizeof(pg->last_detail), detail);
	close_conn(c);
	pg->stats.connect_failures++;
	/* Our own allocation failure says nothing about the server: the
	 * resource is not marked down (requests are not failed fast). */
	if (code != -ENOMEM)
		pg->up = false;
	pg->last_code = code;
	snprintf(pg->last_error, sizeof(pg->last_error),
		 "cannot connect to %s: %s", pg->name, pg->last_detail);
	log_warn(COMP, "connect_failed",
		 "resource=%s error=%s backoff_ms=%" PRIu64, log_q(pg->name),
		 log_q(pg->last_detail), pg->backoff_ms);
	if (!pg->closing)
		arm_retry(pg);
	if (live_count(pg) == 0 && connecting_count(pg) == 0)
		fail_queue(pg, code, pg->last_detail);
}

static void evaluate(struct req *r);

/* A live connection broke (or timed out): its request fails (deferred), its
 * branch is broken, and a reconnect is scheduled if nothing is left. */
static void conn_lost(struct conn *c, int code, const char *detail)
{
	struct coordinator_pg *pg = c->pg;
	struct req *r = c->req;
	struct coordinator_pg_branch *b = c->branch;
	char clean[256];

	if (c->state == C_CONNECTING || c->state == C_SETUP) {
		if (r != NULL)
			req_free(r);
		connect_failed(c,
			       code == COORDINATOR_PG_ECONNLOST
				   ? COORDINATOR_PG_ECONNECT
				   : code,
			       detail);
		return;
	}
	clean_copy(clean, sizeof(clean), detail);
	log_warn(COMP, "connection_lost", "resource=%s error=%s",
		 log_q(pg->name), log_q(clean));
	pg->stats.lost++;
	close_conn(c);
	if (b != NULL) {
		b->conn = NULL;
		b->state = B_BROKEN;
		b->broken_code = code;
		str_copy(b->broken_msg, sizeof(b->broken_msg), clean);
	}
	if (r != NULL) {
		bool doubt =
		    r->sent &&
		    (r->op == OP_COMMIT || r->op == OP_COMMIT_PREPARED ||
		     r->op == OP_ROLLBACK_PREPARED ||
		     (r->op == OP_PREPARE && r->step != STEP_XID));

		/* A lost connection is the statement's failure, even when
		 * the BEGIN ahead of it already reported the loss. */
		r->begin_failed = false;
		if (r->op == OP_RUN_PREPARE) {
			/* PREPARE may have run unless the server already
			 * answered with an error (it then skips the rest of
			 * the pipeline) or nothing went out. */
			doubt = r->sent && r->err == NULL;
			if (!r->sent)
				r->fail_stmt = 0;
		}
		if (r->op == OP_RUN_PREPARE && r->err != NULL) {
			evaluate(r); /* the error the server sent first */
		} else if (r->op == OP_ROLLBACK) {
			/* The server rolls back a branch whose client went. */
			r->outcome = COORDINATOR_PG_OK;
			r->code = 0;
		} else {
			req_fail(r, code, clean);
			r->in_doubt = doubt;
		}
		defer(r);
	}
	if (!pg->closing && live_count(pg) == 0 && connecting_count(pg) == 0)
		arm_retry(pg);
	if (!pg->closing)
		kick(pg);
}

/* A send failed: inside an API call we may not deliver, so the defer timer
 * finishes the job. */
static void fail_later(struct conn *c, int code, const char *detail)
{
	c->fail_code = code;
	clean_copy(c->fail_msg, sizeof(c->fail_msg), detail);
	kick(c->pg);
}

/* ---- sending ----------------------------------------------------------- */

static void on_conn_timer(uv_timer_t *t);

/* True if gid needs no escaping: the usual gids (letters, digits and a
 * few punctuation marks, no quote or backslash) are quoted as they are. */
static bool gid_plain(const char *gid)
{
	for (const char *p = gid; *p != '\0'; p++) {
		char ch = *p;

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
		      ch == '.' || ch == ':' || ch == '/' || ch == '@' ||
		      ch == '#' || ch == '+' || ch == '=' || ch == ','))
			return false;
	}
	return true;
}

/* The statement for r's gid, with the gid as an escaped literal, in buf;
 * NULL with *code set (BAD_GID if libpq cannot quote it, e.g. invalid
 * encoding).  Plain gids are quoted by hand (no allocation); the rest go
 * through PQescapeLiteral. */
static const char *gid_statement(struct conn *c, struct req *r, char *buf,
				 size_t n, int *code)
{
	const char *prefix;
	char *lit;
	int len;

	*code = COORDINATOR_PG_EBAD_GID;
	switch (r->op) {
	case OP_COMMIT_PREPARED:
		prefix = "COMMIT PREPARED ";
		break;
	case OP_ROLLBACK_PREPARED:
		prefix = "ROLLBACK PREPARED ";
		break;
	default:
		prefix = "PREPARE TRANSACTION ";
		break;
	}
	if (gid_plain(r->arg)) {
		/* (By hand: this runs for every branch's PREPARE and
		 * COMMIT PREPARED.) */
		size_t p = strlen(prefix), g = strlen(r->arg);

		if (p + g + 3 > n)
			return NULL;
		memcpy(buf, prefix, p);
		buf[p] = '\'';
		memcpy(buf + p + 1, r->arg, g);
		buf[p + 1 + g] = '\'';
		buf[p + 2 + g] = '\0';
		return buf;
	}
	lit = PQescapeLiteral(c->pq, r->arg, strlen(r->arg));
	if (lit == NULL)
		return NULL;
	/* A gid is at most 199 bytes: its literal fits buf (n >= 512). */
	len = snprintf(buf, n, "%s%s", prefix, lit);
	PQfreemem(lit);
	return len > 0 && (size_t)len < n ? buf : NULL;
}

/* Notes query k of r's pipeline. */
static void add_query(struct req *r, enum qkind kind, int stmt, int entry)
{
	r->qkind[r->nq] = (unsigned char)kind;
	r->qstmt[r->nq] = stmt;
	r->qentry[r->nq] = entry;
	r->nq++;
}

/* Sends statement i of r: by name if the connection has it prepared, as
 * a Parse of a new cache entry then by name if there is room, else
 * unnamed.  1 on success (as libpq). */
static int send_cached(struct conn *c, struct req *r, int i)
{
	const struct coordinator_pg_stmt *q = &r->stmts[i];
	uint32_t h = sql_hash(q->sql);
	int k = cache_find(c, q->sql, h, q->nparams);

	if (k < 0 && c->ncache < STMT_CACHE_MAX) {
		struct cached_stmt *e = &c->cache[c->ncache];

		e->sql = mem_strdup(q->sql);
		if (e->sql != NULL) {
			e->hash = h;
			e->nparams = q->nparams;
			e->seq = ++c->cache_seq;
			snprintf(e->name, sizeof(e->name), "decree_%u", e->seq);
			if (PQsendPrepare(c->pq, e->name, q->sql, q->nparams,
					  NULL) != 1) {
				mem_free(e->sql);
				return 0;
			}
			add_query(r, Q_PARSE, i, (int)e->seq);
			k = c->ncache++;
		}
	}
	add_query(r, Q_STMT, i, -1);
	if (k < 0)
		return PQsendQueryParams(c->pq, q->sql, q->nparams, NULL,
					 q->params, NULL, NULL, 0);
	return PQsendQueryPrepared(c->pq, c->cache[k].name, q->nparams,
				   q->params, NULL, NULL, 0);
}

/* Queues OP_RUN_PREPARE's pipeline: BEGIN if the branch has not begun,
 * the statements (through the statement cache), prepare_sql, one Sync.
 * 1 on success (as libpq). */
static int send_run_prepare(struct conn *c, struct req *r,
			    const char *prepare_sql)
{
	bool begin = r->branch->need_begin;
	size_t most = 2 + 2 * (size_t)r->nstmts; /* BEGIN, Parses, PREPARE */
	int ok;

	r->branch->need_begin = false;
	r->with_begin = begin;
	r->nq = 0;
	if (most <= QSMALL) {
		r->qkind = r->qkind_small;
		r->qstmt = r->qstmt_small;
		r->qentry = r->qentry_small;
	} else {
		r->qkind = mem_alloc(most);
		r->qstmt = mem_alloc(most * sizeof(*r->qstmt));
		r->qentry = mem_alloc(most * sizeof(*r->qentry));
	}
	if (r->qkind == NULL || r->qstmt == NULL || r->qentry == NULL)
		return 0; /* nothing sent yet: fails like a lost connection */
	ok = PQenterPipelineMode(c->pq) == 1;
	if (ok && begin) {
		add_query(r, Q_BEGIN, -1, -1);
		ok = PQsendQueryParams(c->pq, "BEGIN", 0, NULL, NULL, NULL,
				       NULL, 0) == 1;
	}
	for (int i = 0; ok && i < r->nstmts; i++)
		ok = send_cached(c, r, i) == 1;
	/* Extended protocol for PREPARE too: a simple query is not allowed
	 * in a pipeline. */
	if (ok) {
		add_query(r, Q_PREPARE, -1, -1);
		ok = PQsendQueryParams(c->pq, prepare_sql, 0, NULL, NULL, NULL,
				       NULL, 0) == 1 &&
		     PQpipelineSync(c->pq) == 1;
	}
	r->stmts = NULL; /* borrowed only for the call */
	return ok ? 1 : 0;
}

/* Sends r's (current step's) query on c.  On failure the connection is
 * handed to fail_later(); never calls back. */
static void send_req(struct conn *c, struct req *r)
{
	struct coordinator_pg *pg = c->pg;
	const char *sql = NULL;
	char gidsql[512];
	const char *vals[1];
	int nparams = 0;
	const char *const *params = NULL;
	bool single_row = false;
	int code = 0;
	int rc;

	c->req = r;
	c->state = r->op == OP_SETUP ? C_SETUP : C_BUSY;
	switch (r->op) {
	case OP_SETUP:
		sql =
		    "SELECT current_setting('max_prepared_transactions')::int";
		break;
	case OP_CHECK:
		sql = "SELECT 1";
		break;
	case OP_BEGIN: /* pinned by pin_branch(), never sent alone */
		sql = "BEGIN";
		break;
	case OP_EXEC:
		sql = r->sql;
		nparams = r->nparams;
		params = r->params;
		single_row = true;
		r->sql = NULL; /* borrowed only for the call */
		r->params = NULL;
		break;
	case OP_RESET:
		/* Alone in its query, outside any transaction block, as it
		 * must be; the session's startup settings survive it. */
		sql = "DISCARD ALL";
		pg->stats.resets++;
		cache_clear(c); /* it deallocates every prepared statement */
		break;
	case OP_PREPARE:
		if (r->step == STEP_XID) {
			/* The function got its current name in PostgreSQL
			 * 13; 10 to 12 call it txid_current_if_assigned. */
			sql = PQserverVersion(c->pq) >= 130000
				  ? "SELECT pg_current_xact_id_if_assigned() "
				    "IS NULL"
				  : "SELECT txid_current_if_assigned() IS NULL";
		} else if (r->step == STEP_RO_COMMIT) {
			sql = "COMMIT";
		} else {
			sql =
			    gid_statement(c, r, gidsql, sizeof(gidsql), &code);
		}
		break;
	case OP_COMMIT:
		sql = "COMMIT";
		break;
	case OP_ROLLBACK:
		sql = "ROLLBACK";
		break;
	case OP_COMMIT_PREPARED:
	case OP_ROLLBACK_PREPARED:
	case OP_RUN_PREPARE: /* PREPARE TRANSACTION, after the statements */
		sql = gid_statement(c, r, gidsql, sizeof(gidsql), &code);
		break;
	case OP_LIST:
		sql = "SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE "
		      "database = current_database() AND gid LIKE $1 "
		      "ESCAPE '!' ORDER BY gid";
		vals[0] = r->arg;
		nparams = 1;
		params = vals;
		break;
	}
	if (sql == NULL) {
		char m[256];

		snprintf(m, sizeof(m), "cannot quote the transaction id: %s",
			 PQerrorMessage(c->pq));
		fail_later(c, code, m);
		return;
	}
	/* The turn's queries leave together when its callbacks are done
	 * (common/cork.h, docs/driver-pg.md "Send batching"). */
	cork_hold(&pg->corks, &c->cork, PQsocket(c->pq));
	if (r->op == OP_RUN_PREPARE) {
		rc = send_run_prepare(c, r, sql);
		/* The first statement's single-row mode: set now if no
		 * BEGIN goes ahead of it, else when its turn comes. */
		single_row = !r->with_begin && r->nstmts > 0;
	} else if (r->op == OP_EXEC && r->branch->need_begin) {
		/* BEGIN and the statement in one pipeline, one Sync: one
		 * round trip.  A failed BEGIN aborts the statement. */
		r->branch->need_begin = false;
		r->with_begin = true;
		r->nq = 2;
		rc = PQenterPipelineMode(c->pq) == 1 &&
		     PQsendQueryParams(c->pq, "BEGIN", 0, NULL, NULL, NULL,
				       NULL, 0) == 1 &&
		     PQsendQueryParams(c->pq, sql, nparams, NULL, params, NULL,
				       NULL, 0) == 1 &&
		     PQpipelineSync(c->pq) == 1;
		/* Single-row mode is set once the statement's turn comes. */
		single_row = false;
	} else if (r->op != OP_EXEC && nparams == 0) {
		/* The driver's own statements (fixed text, gids as quoted
		 * literals) go out as simple queries: one message, and a few
		 * microseconds less server CPU than Parse/Bind/Execute. */
		rc = PQsendQuery(c->pq, sql);
	} else {
		rc = PQsendQueryParams(c->pq, sql, nparams, NULL, params, NULL,
				       NULL, 0);
	}
	if (rc != 1) {
		fail_later(c, COORDINATOR_PG_ECONNLOST, PQerrorMessage(c->pq));
		return;
	}
	if (single_row)
		PQsetSingleRowMode(c->pq);
	r->sent = true;
	pg->stats.queries++;
	rc = PQflush(c->pq);
	if (rc < 0) {
		fail_later(c, COORDINATOR_PG_ECONNLOST, PQerrorMessage(c->pq));
		return;
	}
	if (watch(c, UV_READABLE | (rc == 1 ? UV_WRITABLE : 0)) < 0) {
		fail_later(c, COORDINATOR_PG_ECONNLOST,
			   "cannot poll the connection's socket");
		return;
	}
	if (r->op == OP_SETUP)
		return; /* the connect timer still runs */
	if (pg->statement_timeout_ms > 0)
		uv_timer_start(&c->timer, on_conn_timer,
			       pg->statement_timeout_ms + pg->grace_ms, 0);
}

/* ---- receiving --------------------------------------------------------- */

static int copy_colnames(struct req *r, const PGresult *res)
{
	int n = PQnfields(res);

	if (r->colnames != NULL || n <= 0)
		return 0;
	r->colnames = mem_calloc((size_t)n, sizeof(char *));
	if (r->colnames == NULL)
		return -ENOMEM;
	r->ncols = n;
	for (int i = 0; i < n; i++) {
		r->colnames[i] = mem_strdup(PQfname(res, i));
		if (r->colnames[i] == NULL)
			return -ENOMEM;
	}
	return 0;
}

static int copy_rows(struct req *r, const PGresult *res)
{
	int ntup = PQntuples(res);

	if (ntup > 0 && copy_colnames(r, res) < 0)
		return -ENOMEM;
	for (int t = 0; t < ntup; t++) {
		if ((size_t)r->nrows >= r->row_limit) {
			r->truncated = true;
			return 0;
		}
		if (r->nrows == r->cap) {
			int cap = r->cap ? r->cap * 2 : 16;
			char **v = mem_realloc(r->values, (size_t)cap *
							      (size_t)r->ncols *
							      sizeof(char *));

			if (v == NULL)
				return -ENOMEM;
			r->values = v;
			r->cap = cap;
		}
		char **row = r->values + (size_t)r->nrows * (size_t)r->ncols;

		memset(row, 0, (size_t)r->ncols * sizeof(char *));
		r->nrows++;
		for (int f = 0; f < r->ncols && f < PQnfields(res); f++) {
			if (PQgetisnull(res, t, f))
				continue;
			row[f] = mem_strdup(PQgetvalue(res, t, f));
			if (row[f] == NULL)
				return -ENOMEM;
		}
	}
	return 0;
}

/* The query of r's pipeline whose answer comes next. */
static enum qkind query_kind(const struct req *r)
{
	if (r->qkind != NULL)
		return r->ends < r->nq ? (enum qkind)r->qkind[r->ends]
				       : Q_PREPARE;
	return r->with_begin && r->ends == 0 ? Q_BEGIN : Q_STMT;
}

/* Takes one PGresult of the running request (and frees or keeps it).
 * False if the connection must be dropped (COPY, which a branch cannot
 * drive). */
static bool absorb(struct conn *c, struct req *r, PGresult *res)
{
	enum qkind kind = query_kind(r);
	const char *tuples;

	if (kind == Q_BEGIN) {
		/* The pipelined BEGIN's answer: only a failure matters (the
		 * statements after it then come back PIPELINE_ABORTED). */
		if (PQresultStatus(res) != PGRES_COMMAND_OK && r->err == NULL) {
			r->err = res;
			r->begin_failed = true;
			if (r->op == OP_RUN_PREPARE)
				r->fail_stmt = 0;
			return true;
		}
		PQclear(res);
		return true;
	}
	if (kind == Q_PARSE) {
		/* A statement going into the cache: if its Parse failed (a
		 * syntax error: the statement's failure) or was skipped, the
		 * name does not exist. */
		ExecStatusType st = PQresultStatus(res);

		if (st != PGRES_COMMAND_OK)
			cache_drop(c, (unsigned)r->qentry[r->ends]);
		if (st != PGRES_COMMAND_OK && st != PGRES_PIPELINE_ABORTED &&
		    r->err == NULL) {
			r->err = res;
			r->fail_stmt = r->qstmt[r->ends];
			return true;
		}
		PQclear(res);
		return true;
	}
	if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
		/* Skipped: an earlier query of the pipeline failed. */
		PQclear(res);
		return true;
	}
	switch (PQresultStatus(res)) {
	case PGRES_SINGLE_TUPLE:
	case PGRES_TUPLES_OK:
		if (r->code == 0 && r->err == NULL && copy_rows(r, res) < 0)
			r->code = -ENOMEM;
		if (r->ncols == 0 && r->code == 0 && copy_colnames(r, res) < 0)
			r->code = -ENOMEM;
		/* fall through */
	case PGRES_COMMAND_OK:
		tuples = PQcmdTuples(res);
		if (tuples != NULL && tuples[0] != '\0')
			r->rows_affected = strtoll(tuples, NULL, 10);
		str_copy(r->cmd, sizeof(r->cmd), PQcmdStatus(res));
		break;
	case PGRES_EMPTY_QUERY:
		break;
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
	case PGRES_COPY_BOTH:
		PQclear(res);
		return false;
	default:
		if (r->err == NULL) {
			r->err = res;
			if (r->op == OP_RUN_PREPARE && kind == Q_STMT)
				r->fail_stmt = r->qstmt[r->ends];
			return true;
		}
		break;
	}
	PQclear(res);
	return true;
}

static bool plain_dml(const struct req *r);

/* A query of an OP_RUN_PREPARE pipeline ended: a statement that
 * succeeded gets its answer put aside for delivery, and the session is
 * marked for a reset unless it was plain DML.  0 or -ENOMEM. */
static int query_ended(struct conn *c, struct req *r, enum qkind kind)
{
	struct answer *a, *v;

	if (kind != Q_STMT)
		return 0;
	if (r->err != NULL) {
		c->dirty = true; /* it may have changed the session first */
		return 0;
	}
	if (r->code == -ENOMEM) {
		/* Rows we could not keep: the statement itself ran. */
		r->code = 0;
		r->truncated = true;
	}
	if (!plain_dml(r))
		c->dirty = true;
	v = mem_realloc(r->answers,
			(size_t)(r->nanswers + 1) * sizeof(*r->answers));
	if (v == NULL)
		return -ENOMEM;
	r->answers = v;
	a = &v[r->nanswers++];
	a->rows_affected = r->rows_affected;
	a->ncols = r->ncols;
	a->colnames = r->colnames;
	a->nrows = r->nrows;
	a->values = r->values;
	a->truncated = r->truncated;
	r->colnames = NULL;
	r->values = NULL;
	r->ncols = r->nrows = r->cap = 0;
	r->truncated = false;
	r->rows_affected = -1;
	r->cmd[0] = '\0';
	return 0;
}

static bool cmd_is(const struct req *r, const char *tag)
{
	return strcmp(r->cmd, tag) == 0;
}

/* Turns the accumulated answer into the outcome of r. */
static void evaluate(struct req *r)
{
	if (r->err != NULL) {
		const char *state =
		    PQresultErrorField(r->err, PG_DIAG_SQLSTATE);
		const char *m =
		    PQresultErrorField(r->err, PG_DIAG_MESSAGE_PRIMARY);
		int code = state != NULL ? COORDINATOR_PG_ESQL
					 : COORDINATOR_PG_ECONNLOST;

		req_fail(r, code, m ? m : PQresultErrorMessage(r->err));
		if ((r->op == OP_COMMIT_PREPARED ||
		     r->op == OP_ROLLBACK_PREPARED) &&
		    state != NULL && strcmp(state, "42704") == 0) {
			r->outcome = COORDINATOR_PG_NOT_FOUND;
			r->code = 0;
		}
		return;
	}
	if (r->code == -ENOMEM) {
		req_fail(r, r->code, "out of memory");
		return;
	}
	switch (r->op) {
	case OP_COMMIT:
		if (!cmd_is(r, "COMMIT"))
			req_fail(r, COORDINATOR_PG_EROLLED_BACK,
				 "the server rolled the transaction back (an "
				 "earlier statement failed)");
		break;
	case OP_RUN_PREPARE:
		/* A PREPARE that found no transaction block to prepare (a
		 * statement ended it) answers ROLLBACK: nothing prepared. */
		if (!cmd_is(r, "PREPARE TRANSACTION"))
			req_fail(r, COORDINATOR_PG_EROLLED_BACK,
				 "the server rolled the transaction back");
		break;
	case OP_PREPARE:
		if (r->step == STEP_PREPARE &&
		    !cmd_is(r, "PREPARE TRANSACTION"))
			req_fail(r, COORDINATOR_PG_EROLLED_BACK,
				 "the server rolled the transaction back (an "
				 "earlier statement failed)");
		else if (r->step == STEP_RO_COMMIT && !cmd_is(r, "COMMIT"))
			req_fail(r, COORDINATOR_PG_EROLLED_BACK,
				 "the server rolled the transaction back");
		else if (r->step == STEP_RO_COMMIT)
			r->outcome = COORDINATOR_PG_READ_ONLY;
		break;
	default:
		break;
	}
}

/* Gives c back to the pool: idle if the server is outside any transaction;
 * inside one (a failed prepare leaves it so), an internal ROLLBACK runs
 * first; anything else closes it (the server then rolls back). */
static void release(struct conn *c)
{
	PGTransactionStatusType ts;

	c->req = NULL;
	c->branch = NULL;
	uv_timer_stop(&c->timer);
	if (c->pg->closing || PQstatus(c->pq) != CONNECTION_OK) {
		close_conn(c);
		return;
	}
	ts = PQtransactionStatus(c->pq);
	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
		struct req *r = req_new(c->pg, OP_ROLLBACK, NULL, NULL);

		if (r == NULL)
			close_conn(c);
		else
			send_req(c, r);
		return;
	}
	if (ts == PQTRANS_IDLE && c->dirty && !c->pg->keep_session_state) {
		struct req *r = req_new(c->pg, OP_RESET, NULL, NULL);

		c->dirty = false;
		if (r == NULL)
			close_conn(c);
		else
			send_req(c, r);
		return;
	}
	if (ts != PQTRANS_IDLE || watch(c, UV_READABLE) < 0) {
		close_conn(c);
		return;
	}
	c->state = C_IDLE;
}

static void setup_done(struct conn *c)
{
	struct coordinator_pg *pg = c->pg;
	struct req *r = c->req;
	const char *mpt;

	c->req = NULL;
	if (r->err != NULL) {
		char m[512];

		str_copy(m, sizeof(m), PQresultErrorMessage(r->err));
		req_free(r);
		connect_failed(c, COORDINATOR_PG_ECONNECT, m);
		return;
	}
	if (r->code != 0) {
		int code = r->code;

		req_free(r);
		connect_failed(c, code, "out of memory");
		return;
	}
	mpt = r->nrows == 1 && r->ncols == 1 ? r->values[0] : NULL;
	if (mpt == NULL || strtol(mpt, NULL, 10) <= 0) {
		req_free(r);
		connect_failed(c, COORDINATOR_PG_EREFUSED,
			       "max_prepared_transactions is 0 on the server, "
			       "so it cannot prepare transactions; set it "
			       "above 0 (at least the number of concurrent "
			       "transactions) and restart PostgreSQL");
		return;
	}
	req_free(r);
	uv_timer_stop(&c->timer);
	if (!pg->up || pg->stats.connects == 0)
		log_info(COMP, "connected", "resource=%s host=%s port=%s db=%s",
			 log_q(pg->name), log_q(PQhost(c->pq)),
			 log_q(PQport(c->pq)), log_q(PQdb(c->pq)));
	pg->stats.connects++;
	pg->up = true;
	pg->backoff_ms = pg->backoff_min_ms;
	pg->last_code = 0;
	pg->last_detail[0] = '\0';
	pg->last_error[0] = '\0';
	release(c);
}

/* True if the statement r ran certainly assigned a transaction id.  A
 * wrong "false" costs one round trip at prepare; a wrong "true" would only
 * prepare a read-only transaction instead of committing it, which is still
 * correct.  So the rule can stay simple. */
static bool surely_wrote(const struct req *r)
{
	static const char *const dml[] = {"INSERT ", "UPDATE ", "DELETE ",
					  "MERGE "};
	static const char *const ddl[] = {"CREATE ", "ALTER ", "DROP ",
					  "TRUNCATE"};

	for (size_t i = 0; i < sizeof(dml) / sizeof(dml[0]); i++)
		if (strncmp(r->cmd, dml[i], strlen(dml[i])) == 0)
			return r->rows_affected > 0;
	for (size_t i = 0; i < sizeof(ddl) / sizeof(ddl[0]); i++)
		if (strncmp(r->cmd, ddl[i], strlen(ddl[i])) == 0)
			return true;
	return false;
}

/* True if r was a plain INSERT, UPDATE, DELETE or MERGE that succeeded:
 * such a statement leaves no session state behind (unless a function it
 * calls, say a trigger, does), so its connection needs no reset. */
static bool plain_dml(const struct req *r)
{
	static const char *const dml[] = {"INSERT ", "UPDATE ", "DELETE ",
					  "MERGE "};

	if (r->outcome != COORDINATOR_PG_OK || r->code != 0)
		return false;
	for (size_t i = 0; i < sizeof(dml) / sizeof(dml[0]); i++)
		if (strncmp(r->cmd, dml[i], strlen(dml[i])) == 0)
			return true;
	return false;
}

/* Sends the next step of a prepare; false if the prepare is over. */
static bool prepare_next(struct conn *c, struct req *r)
{
	bool read_only;

	if (r->step != STEP_XID || r->err != NULL || r->code != 0)
		return false;
	read_only = r->nrows == 1 && r->ncols == 1 && r->values[0] != NULL &&
		    strcmp(r->values[0], "t") == 0;
	reset_answer(r);
	r->step = read_only ? STEP_RO_COMMIT : STEP_PREPARE;
	send_req(c, r);
	return true;
}

/* The running request got all its results. */
static void finish(struct conn *c)
{
	struct coordinator_pg *pg = c->pg;
	struct req *r = c->req;
	struct coordinator_pg_branch *b = r->branch;

	uv_timer_stop(&c->timer);
	if (r->op == OP_SETUP) {
		setup_done(c);
		pump(pg);
		return;
	}
	if (r->op == OP_PREPARE && prepare_next(c, r))
		return;
	evaluate(r);
	c->req = NULL;
	switch (r->op) {
	case OP_EXEC:
		if (!plain_dml(r))
			c->dirty = true;
		if (r->begin_failed) {
			/* The branch never began: broken, with the reason,
			 * until the caller rolls it back. */
			const char *m =
			    PQresultErrorField(r->err, PG_DIAG_MESSAGE_PRIMARY);
			char clean[200];

			clean_copy(clean, sizeof(clean),
				   m ? m : PQresultErrorMessage(r->err));
			b->state = B_BROKEN;
			b->broken_code = r->code;
			snprintf(b->broken_msg, sizeof(b->broken_msg),
				 "BEGIN failed: %s", clean);
			b->conn = NULL;
			release(c);
			break;
		}
		if (PQtransactionStatus(c->pq) == PQTRANS_IDLE) {
			/* The user's COMMIT, ROLLBACK or PREPARE TRANSACTION
			 * ended the transaction: the branch is over, and a
			 * later prepare must not report it read-only. */
			static const char why[] =
			    "the statement ended the branch's transaction "
			    "(COMMIT, ROLLBACK and PREPARE TRANSACTION are "
			    "not allowed in a branch)";

			if (r->outcome != COORDINATOR_PG_FAILED)
				req_fail(r, COORDINATOR_PG_EENDED, why);
			b->state = B_BROKEN;
			b->broken_code = COORDINATOR_PG_EENDED;
			str_copy(b->broken_msg, sizeof(b->broken_msg), why);
			b->conn = NULL;
			release(c);
			break;
		}
		if (r->outcome == COORDINATOR_PG_OK && surely_wrote(r))
			b->wrote = true;
		else if (r->outcome == COORDINATOR_PG_FAILED)
			b->wrote = false; /* let prepare's probe say why */
		c->state = C_IDLE;
		if (watch(c, UV_READABLE) < 0)
			conn_lost(c, COORDINATOR_PG_ECONNLOST,
				  "cannot poll the connection's socket");
		break;
	case OP_RESET:
		if (r->outcome == COORDINATOR_PG_FAILED)
			close_conn(c);
		else
			release(c);
		break;
	case OP_PREPARE:
	case OP_RUN_PREPARE:
	case OP_COMMIT:
	case OP_ROLLBACK:
		/* After a failed statement of a pipeline the transaction is
		 * open and aborted: release() rolls it back. */
		if (b != NULL)
			b->conn = NULL;
		if (c->doomed)
			close_conn(c); /* the server rolls back */
		else
			release(c);
		break;
	default:
		release(c);
		break;
	}
	deliver(r);
	if (!pg->closing)
		pump(pg);
}

/* Reads what the server sent while c runs a request. */
static void io_step(struct conn *c, int events)
{
	int rc;

	if ((events & UV_READABLE) && PQconsumeInput(c->pq) != 1) {
		conn_lost(c, COORDINATOR_PG_ECONNLOST, PQerrorMessage(c->pq));
		return;
	}
	while (!PQisBusy(c->pq)) {
		struct req *r = c->req;
		PGresult *res = PQgetResult(c->pq);

		if (res == NULL) {
			if (PQstatus(c->pq) != CONNECTION_OK) {
				conn_lost(c, COORDINATOR_PG_ECONNLOST,
					  PQerrorMessage(c->pq));
				return;
			}
			if (r->nq == 0) {
				finish(c);
				return;
			}
			/* The end of one query of the pipeline (BEGIN, the
			 * statements, PREPARE); the Sync's result follows. */
			if (r->ends >= r->nq) {
				conn_lost(c, COORDINATOR_PG_ECONNLOST,
					  "unexpected end of the pipeline");
				return;
			}
			if (r->op == OP_RUN_PREPARE &&
			    query_ended(c, r, query_kind(r)) < 0) {
				conn_lost(c, -ENOMEM, "out of memory");
				return;
			}
			r->ends++;
			if (query_kind(r) == Q_STMT && r->ends < r->nq)
				PQsetSingleRowMode(c->pq);
			continue;
		}
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			if (r->nq == 0 || r->ends != r->nq ||
			    PQexitPipelineMode(c->pq) != 1) {
				conn_lost(c, COORDINATOR_PG_ECONNLOST,
					  "unexpected end of the pipeline");
				return;
			}
			finish(c);
			return;
		}
		if (!absorb(c, r, res)) {
			conn_lost(c, -ENOTSUP,
				  "COPY is not supported in a branch");
			return;
		}
	}
	rc = PQflush(c->pq);
	if (rc < 0 || watch(c, UV_READABLE | (rc == 1 ? UV_WRITABLE : 0)) < 0)
		conn_lost(c, COORDINATOR_PG_ECONNLOST, PQerrorMessage(c->pq));
}

/* An open connection with nothing running became readable: the server
 * closed it (shutdown, crash) or sent a notice. */
static void idle_step(struct conn *c)
{
	if (PQconsumeInput(c->pq) != 1 || PQstatus(c->pq) != CONNECTION_OK) {
		conn_lost(c, COORDINATOR_PG_ECONNLOST, PQerrorMessage(c->pq));
		return;
	}
	if (watch(c, UV_READABLE) < 0)
		conn_lost(c, COORDINATOR_PG_ECONNLOST,
			  "cannot poll the connection's socket");
}

static void setup_start(struct conn *c)
{
	struct req *r;

	if (PQsetnonblocking(c->pq, 1) != 0) {
		connect_failed(c, COORDINATOR_PG_ECONNECT,
			       PQerrorMessage(c->pq));
		return;
	}
	r = req_new(c->pg, OP_SETUP, NULL, NULL);
	if (r == NULL) {
		connect_failed(c, -ENOMEM, "out of memory");
		return;
	}
	send_req(c, r);
}

static void connect_step(struct conn *c)
{
	PostgresPollingStatusType st;

	/* libpq may close the socket and open another (with the same
	 * number): stop polling first so the fd is re-registered. */
	if (c->poll != NULL) {
		uv_poll_stop(&c->poll->h);
		c->poll_events = 0;
	}
	st = PQconnectPoll(c->pq);
	switch (st) {
	case PGRES_POLLING_READING:
		if (watch(c, UV_READABLE) < 0)
			connect_failed(c, COORDINATOR_PG_ECONNECT,
				       "cannot poll the connection's socket");
		break;
	case PGRES_POLLING_WRITING:
		if (watch(c, UV_WRITABLE) < 0)
			connect_failed(c, COORDINATOR_PG_ECONNECT,
				       "cannot poll the connection's socket");
		break;
	case PGRES_POLLING_OK:
		setup_start(c);
		break;
	default:
		connect_failed(c, COORDINATOR_PG_ECONNECT,
			       PQerrorMessage(c->pq));
		break;
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct pollh *p = h->data;
	struct conn *c = p->c;

	if (c == NULL || c->fail_code != 0)
		return;
	if (status < 0) {
		/* libuv turns POLLERR (a refused connect, a reset) into
		 * UV_EBADF and stops the handle: let libpq read the socket
		 * and tell what really happened. */
		c->poll_events = 0;
		events = UV_READABLE | UV_WRITABLE;
	}
	switch (c->state) {
	case C_CONNECTING:
		connect_step(c);
		break;
	case C_SETUP:
	case C_BUSY:
		io_step(c, events);
		break;
	case C_IDLE:
		idle_step(c);
		break;
	case C_EMPTY:
		break;
	}
}

/* ---- timeouts and cancel ----------------------------------------------- */

struct cancel_work {
	uv_work_t w;
	PGcancel *cancel;
};

static void cancel_run(uv_work_t *w)
{
	struct cancel_work *cw = (struct cancel_work *)w;
	char buf[256];

	PQcancel(cw->cancel, buf, sizeof(buf));
}

static void cancel_done(uv_work_t *w, int status)
{
	struct cancel_work *cw = (struct cancel_work *)w;

	PQfreeCancel(cw->cancel);
	mem_free(cw);
}

/* Asks the server (from a pool thread: PQcancel blocks) to cancel what c
 * runs; best effort. */
static void send_cancel(struct conn *c)
{
	struct cancel_work *cw = mem_calloc(1, sizeof(*cw));

	if (cw == NULL)
		return;
	cw->cancel = PQgetCancel(c->pq);
	if (cw->cancel == NULL ||
	    uv_queue_work(c->pg->loop, &cw->w, cancel_run, cancel_done) < 0) {
		if (cw->cancel != NULL)
			PQfreeCancel(cw->cancel);
		mem_free(cw);
	}
}

static void on_conn_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	struct coordinator_pg *pg = c->pg;
	char m[200];

	switch (c->state) {
	case C_CONNECTING:
	case C_SETUP:
		snprintf(m, sizeof(m), "no connection within %" PRIu64 " ms",
			 pg->connect_timeout_ms);
		if (c->req != NULL)
			req_free(c->req);
		c->req = NULL;
		connect_failed(c, COORDINATOR_PG_ETIMEOUT, m);
		break;
	case C_BUSY:
		pg->stats.timeouts++;
		snprintf(m, sizeof(m),
			 "no answer within %" PRIu64
			 " ms; the statement was cancelled and the "
			 "connection dropped",
			 pg->statement_timeout_ms + pg->grace_ms);
		send_cancel(c);
		conn_lost(c, COORDINATOR_PG_ETIMEOUT, m);
		break;
	default:
		break;
	}
}

/* ---- the pool ---------------------------------------------------------- */

/* Server notices (warnings, a FATAL on shutdown) go to the debug log,
 * never to stderr as libpq's default would. */
static void on_notice(void *arg, const char *message)
{
	struct coordinator_pg *pg = arg;
	char clean[256];

	clean_copy(clean, sizeof(clean), message);
	log_debug(COMP, "notice", "resource=%s message=%s", log_q(pg->name),
		  log_q(clean));
}

static void start_connect(struct conn *c)
{
	struct coordinator_pg *pg = c->pg;

	cork_drop(&c->cork);
	cork_init(&c->cork);
	c->pq = PQconnectStartParams((const char *const *)pg->kw,
				     (const char *const *)pg->val, 0);
	if (c->pq == NULL) {
		connect_failed(c, -ENOMEM, "out of memory");
		return;
	}
	c->state = C_CONNECTING;
	if (PQstatus(c->pq) == CONNECTION_BAD) {
		connect_failed(c, COORDINATOR_PG_ECONNECT,
			       PQerrorMessage(c->pq));
		return;
	}
	PQsetNoticeProcessor(c->pq, on_notice, pg);
	uv_timer_start(&c->timer, on_conn_timer, pg->connect_timeout_ms, 0);
	/* Before the first PQconnectPoll, behave as if it said WRITING. */
	if (watch(c, UV_WRITABLE) < 0)
		connect_failed(c, COORDINATOR_PG_ECONNECT,
			       "cannot poll the connection's socket");
}

static struct conn *empty_slot(struct coordinator_pg *pg)
{
	for (int i = 0; i < pg->pool_size; i++)
		if (pg->conns[i].state == C_EMPTY)
			return &pg->conns[i];
	return NULL;
}

static struct conn *idle_conn(struct coordinator_pg *pg)
{
	for (int i = 0; i < pg->pool_size; i++)
		if (pg->conns[i].state == C_IDLE && pg->conns[i].branch == NULL)
			return &pg->conns[i];
	return NULL;
}

static void on_retry(uv_timer_t *t)
{
	struct coordinator_pg *pg = t->data;
	struct conn *c;

	pg->retry_pending = false;
	if (pg->closing)
		return;
	if (live_count(pg) + connecting_count(pg) == 0 &&
	    (c = empty_slot(pg)) != NULL)
		start_connect(c);
	pump(pg);
}

static void arm_retry(struct coordinator_pg *pg)
{
	if (pg->retry_pending)
		return;
	pg->retry_pending = true;
	uv_timer_start(&pg->retry_timer, on_retry, pg->backoff_ms, 0);
	pg->backoff_ms *= 2;
	if (pg->backoff_ms > pg->backoff_max_ms)
		pg->backoff_ms = pg->backoff_max_ms;
}

static void on_queue_timer(uv_timer_t *t);

static void arm_queue_timer(struct coordinator_pg *pg)
{
	uint64_t now = uv_now(pg->loop), due;

	if (pg->qhead == NULL) {
		uv_timer_stop(&pg->queue_timer);
		return;
	}
	due = pg->qhead->queued_at + pg->queue_timeout_ms;
	uv_timer_start(&pg->queue_timer, on_queue_timer,
		       due > now ? due - now : 0, 0);
}

static void on_queue_timer(uv_timer_t *t)
{
	struct coordinator_pg *pg = t->data;
	uint64_t now = uv_now(pg->loop);
	char m[160];

	snprintf(m, sizeof(m),
		 "no connection became free within %" PRIu64 " ms",
		 pg->queue_timeout_ms);
	while (!pg->closing && pg->qhead != NULL &&
	       pg->qhead->queued_at + pg->queue_timeout_ms <= now) {
		struct req *r = pg->qhead;

		pg->qhead = r->next;
		if (pg->qhead == NULL)
			pg->qtail = NULL;
		pg->qlen--;
		req_fail(r, COORDINATOR_PG_ETIMEOUT, m);
		deliver(r);
	}
	if (!pg->closing)
		arm_queue_timer(pg);
}

/* A begin got connection c: pin it to the branch and answer OK (deferred)
 * without a round trip.  BEGIN itself goes out in one pipeline with the
 * branch's first statement; a branch that ends before running any needs
 * no BEGIN at all. */
static void pin_branch(struct conn *c, struct req *r)
{
	struct coordinator_pg_branch *b = r->branch;

	c->branch = b;
	b->conn = c;
	b->state = B_OPEN;
	b->need_begin = true;
	defer(r);
}

/* Hands queued requests to idle connections and grows the pool for the
 * rest.  Never calls back. */
static void pump(struct coordinator_pg *pg)
{
	struct conn *c;
	int want;

	if (pg->closing)
		return;
	while (pg->qhead != NULL && (c = idle_conn(pg)) != NULL) {
		struct req *r = pg->qhead;

		pg->qhead = r->next;
		if (pg->qhead == NULL)
			pg->qtail = NULL;
		pg->qlen--;
		r->next = NULL;
		if (r->op == OP_BEGIN)
			pin_branch(c, r);
		else
			send_req(c, r);
	}
	/* (Counting walks the pool: not on every request's finish.) */
	want = pg->qlen > 0 ? pg->qlen - connecting_count(pg) : 0;
	while (want-- > 0 && !pg->retry_pending && (c = empty_slot(pg)) != NULL)
		start_connect(c);
	arm_queue_timer(pg);
}

static void on_defer(uv_timer_t *t)
{
	struct coordinator_pg *pg = t->data;

	for (int i = 0; i < pg->pool_size && !pg->closing; i++) {
		struct conn *c = &pg->conns[i];

		if (c->fail_code != 0) {
			int code = c->fail_code;

			c->fail_code = 0;
			conn_lost(c, code, c->fail_msg);
		}
	}
	while (!pg->closing && pg->dhead != NULL) {
		struct req *r = pg->dhead;

		pg->dhead = r->next;
		if (pg->dhead == NULL)
			pg->dtail = NULL;
		deliver(r);
	}
	if (!pg->closing)
		pump(pg);
}

/* Queues r for a connection; 0 or a negative code (then r is not taken). */
static int submit(struct coordinator_pg *pg, struct req *r)
{
	if (!pg->up && pg->retry_pending && live_count(pg) == 0 &&
	    connecting_count(pg) == 0) {
		req_fail(
		    r, pg->last_code ? pg->last_code : COORDINATOR_PG_ECONNECT,
		    pg->last_detail);
		defer(r);
		return 0;
	}
	if (pg->qlen >= pg->queue_limit && idle_conn(pg) == NULL)
		return COORDINATOR_PG_EQUEUE_FULL;
	r->queued_at = uv_now(pg->loop);
	r->next = NULL;
	if (pg->qtail != NULL)
		pg->qtail->next = r;
	else
		pg->qhead = r;
	pg->qtail = r;
	pg->qlen++;
	pump(pg);
	return 0;
}

/* ---- open and close ---------------------------------------------------- */

static void free_params(struct coordinator_pg *pg)
{
	for (int i = 0; pg->kw != NULL && pg->kw[i] != NULL; i++) {
		mem_free(pg->kw[i]);
		if (pg->val[i] != NULL)
			explicit_bzero(pg->val[i], strlen(pg->val[i]));
		mem_free(pg->val[i]);
	}
	mem_free(pg->kw);
	mem_free(pg->val);
	pg->kw = pg->val = NULL;
}

/*
 * Turns the parsed conninfo into PQconnectStartParams arrays and adds the
 * session settings as startup parameters: statement_timeout in "options"
 * (after the user's own options, so ours wins) and application_name as a
 * fallback.  Set this way they are the session's defaults, which RESET ALL
 * and DISCARD ALL return to: the reset between branches keeps them.
 */
static int build_params(struct coordinator_pg *pg, PQconninfoOption *opts)
{
	/* TCP keepalives unless the conninfo sets its own: a pooled
	 * connection to a host that went silent is found dead in about a
	 * minute, not the two hours of the usual system default. */
	static const char *const keepalive[][2] = {
	    {"keepalives_idle", "30"},
	    {"keepalives_interval", "10"},
	    {"keepalives_count", "3"},
	};
	bool has_keepalive[3] = {false, false, false};
	const char *user_options = NULL, *fallback = NULL;
	char options[512];
	int n = 0, k = 0;

	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		for (int i = 0; i < 3; i++)
			if (strcmp(o->keyword, keepalive[i][0]) == 0)
				has_keepalive[i] = true;
		if (strcmp(o->keyword, "options") == 0)
			user_options = o->val;
		else if (strcmp(o->keyword, "fallback_application_name") == 0)
			fallback = o->val;
		else
			n++;
	}
	if (snprintf(options, sizeof(options),
		     "%s%s-c statement_timeout=%" PRIu64,
		     user_options ? user_options : "", user_options ? " " : "",
		     pg->statement_timeout_ms) >= (int)sizeof(options))
		return -EINVAL;
	pg->kw = mem_calloc((size_t)n + 6, sizeof(char *));
	pg->val = mem_calloc((size_t)n + 6, sizeof(char *));
	if (pg->kw == NULL || pg->val == NULL)
		goto err_nomem;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || strcmp(o->keyword, "options") == 0 ||
		    strcmp(o->keyword, "fallback_application_name") == 0)
			continue;
		pg->kw[k] = mem_strdup(o->keyword);
		pg->val[k] = pg->kw[k] ? mem_strdup(o->val) : NULL;
		if (pg->val[k++] == NULL)
			goto err_nomem;
	}
	for (int i = 0; i < 3; i++) {
		if (has_keepalive[i])
			continue;
		pg->kw[k] = mem_strdup(keepalive[i][0]);
		pg->val[k] = pg->kw[k] ? mem_strdup(keepalive[i][1]) : NULL;
		if (pg->val[k++] == NULL)
			goto err_nomem;
	}
	pg->kw[k] = mem_strdup("options");
	pg->val[k] = pg->kw[k] ? mem_strdup(options) : NULL;
	if (pg->val[k++] == NULL)
		goto err_nomem;
	pg->kw[k] = mem_strdup("fallback_application_name");
	pg->val[k] =
	    pg->kw[k] ? mem_strdup(fallback ? fallback : "decree") : NULL;
	if (pg->val[k] == NULL)
		goto err_nomem;
	return 0;

err_nomem:
	free_params(pg);
	return -ENOMEM;
}

/* One handle of pg finished closing; the last one frees pg. */
static void unref(struct coordinator_pg *pg)
{
	void (*cb)(void *);
	void *data;

	if (--pg->handles > 0 || !pg->closing)
		return;
	cb = pg->close_cb;
	data = pg->close_data;
	mem_free(pg->conns);
	mem_free(pg->name);
	free_params(pg);
	mem_free(pg);
	if (cb != NULL)
		cb(data);
}

static void on_handle_closed(uv_handle_t *h)
{
	unref(h->data);
}

static void on_poll_closed(uv_handle_t *h)
{
	struct pollh *p = h->data;
	struct coordinator_pg *pg = p->pg;

	mem_free(p);
	unref(pg);
}

static void set_err(char *errbuf, size_t errlen, const char *fmt,
		    const char *name)
{
	if (errbuf != NULL && errlen > 0)
		snprintf(errbuf, errlen, fmt, name ? name : "(unnamed)");
}

int coordinator_pg_open(uv_loop_t *loop,
			const struct coordinator_pg_config *cfg,
			struct coordinator_pg **out, char *errbuf,
			size_t errlen)
{
	struct coordinator_pg *pg;
	PQconninfoOption *opts;
	char *perr = NULL;
	int rc = -ENOMEM;

	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	if (loop == NULL || cfg == NULL || out == NULL) {
		set_err(errbuf, errlen,
			"postgres resource %s: missing argument", NULL);
		return -EINVAL;
	}
	if (cfg->name == NULL || cfg->name[0] == '\0' ||
	    strlen(cfg->name) > 63) {
		set_err(errbuf, errlen,
			"postgres resource %s: a name of 1 to 63 bytes is "
			"required",
			NULL);
		return -EINVAL;
	}
	if (cfg->conninfo == NULL) {
		set_err(errbuf, errlen, "postgres resource %s: no conninfo",
			cfg->name);
		return -EINVAL;
	}
	if (cfg->pool_size < 0 || cfg->pool_size > 1024 ||
	    cfg->queue_limit < 0) {
		set_err(errbuf, errlen,
			"postgres resource %s: pool_size must be 1..1024 and "
			"queue_limit not negative",
			cfg->name);
		return -EINVAL;
	}
	/* libpq's parse errors may quote a piece of the string, which may be
	 * a piece of a password: say only that it is malformed. */
	opts = PQconninfoParse(cfg->conninfo, &perr);
	if (perr != NULL)
		PQfreemem(perr);
	if (opts == NULL) {
		set_err(errbuf, errlen,
			"postgres resource %s: the conninfo cannot be parsed "
			"(not shown: it may hold a password)",
			cfg->name);
		return -EINVAL;
	}
	pg = mem_calloc(1, sizeof(*pg));
	if (pg == NULL)
		goto err_free_opts;
	pg->loop = loop;
	pg->pool_size = cfg->pool_size ? cfg->pool_size : 4;
	pg->queue_limit = cfg->queue_limit ? cfg->queue_limit : 1024;
	pg->statement_timeout_ms = cfg->statement_timeout_ms;
	pg->grace_ms = cfg->timeout_grace_ms ? cfg->timeout_grace_ms : 1000;
	pg->connect_timeout_ms =
	    cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 5000;
	pg->queue_timeout_ms =
	    cfg->queue_timeout_ms ? cfg->queue_timeout_ms : 10000;
	pg->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 100;
	pg->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 5000;
	if (pg->backoff_max_ms < pg->backoff_min_ms)
		pg->backoff_max_ms = pg->backoff_min_ms;
	pg->backoff_ms = pg->backoff_min_ms;
	pg->row_limit = cfg->row_limit ? cfg->row_limit : 1000;
	pg->keep_session_state = cfg->keep_session_state;
	pg->up = true;
	pg->name = mem_strdup(cfg->name);
	if (pg->name == NULL)
		goto err_free_pg;
	rc = build_params(pg, opts);
	if (rc < 0)
		goto err_free_name;
	PQconninfoFree(opts);
	opts = NULL;
	rc = -ENOMEM;
	pg->conns = mem_calloc((size_t)pg->pool_size, sizeof(struct conn));
	if (pg->conns == NULL)
		goto err_free_params;

	/* From here nothing fails: uv_timer_init cannot on unix. */
	for (int i = 0; i < pg->pool_size; i++) {
		struct conn *c = &pg->conns[i];

		c->pg = pg;
		c->poll_fd = -1;
		uv_timer_init(loop, &c->timer);
		c->timer.data = c;
	}
	uv_timer_init(loop, &pg->retry_timer);
	uv_timer_init(loop, &pg->defer_timer);
	uv_timer_init(loop, &pg->queue_timer);
	pg->retry_timer.data = pg;
	pg->defer_timer.data = pg;
	pg->queue_timer.data = pg;
	cork_batch_init(loop, &pg->corks);
	cork_batch_set_data(&pg->corks, pg);
	pg->handles = pg->pool_size + 4;
	/* First connection in the background: checks the server early. */
	pg->retry_pending = true;
	uv_timer_start(&pg->retry_timer, on_retry, 0, 0);
	*out = pg;
	return 0;

err_free_params:
	free_params(pg);
err_free_name:
	mem_free(pg->name);
err_free_pg:
	mem_free(pg);
err_free_opts:
	if (opts != NULL)
		PQconninfoFree(opts);
	set_err(errbuf, errlen,
		rc == -EINVAL ? "postgres resource %s: the conninfo's options "
				"are too long"
			      : "postgres resource %s: out of memory",
		cfg->name);
	return rc;
}

void coordinator_pg_close(struct coordinator_pg *pg, void (*cb)(void *data),
			  void *data)
{
	if (pg == NULL || pg->closing)
		return;
	pg->closing = true;
	pg->close_cb = cb;
	pg->close_data = data;
	uv_timer_stop(&pg->retry_timer);
	uv_timer_stop(&pg->queue_timer);
	uv_timer_stop(&pg->defer_timer);
	while (pg->qhead != NULL) {
		struct req *r = pg->qhead;

		pg->qhead = r->next;
		pg->qlen--;
		req_fail(r, COORDINATOR_PG_ECLOSED, "the resource was closed");
		deliver(r);
	}
	pg->qtail = NULL;
	while (pg->dhead != NULL) {
		struct req *r = pg->dhead;

		pg->dhead = r->next;
		if (r->op == OP_BEGIN && r->outcome == COORDINATOR_PG_OK) {
			/* Pinned but not yet answered: it fails like any
			 * pending request, and its branch goes with it. */
			if (r->branch->conn != NULL)
				r->branch->conn->branch = NULL;
			r->branch->conn = NULL;
			req_fail(r, COORDINATOR_PG_ECLOSED,
				 "the resource was closed");
		}
		deliver(r);
	}
	pg->dtail = NULL;
	for (int i = 0; i < pg->pool_size; i++) {
		struct conn *c = &pg->conns[i];
		struct req *r = c->req;
		struct coordinator_pg_branch *b = c->branch;

		close_conn(c);
		if (b != NULL)
			b->conn = NULL;
		if (r == NULL)
			continue;
		if (r->op == OP_SETUP) {
			req_free(r);
			continue;
		}
		req_fail(r, COORDINATOR_PG_ECLOSED, "the resource was closed");
		r->in_doubt = r->sent && r->op != OP_EXEC &&
			      r->op != OP_BEGIN && r->op != OP_ROLLBACK &&
			      r->op != OP_LIST && r->op != OP_CHECK;
		deliver(r);
	}
	while (pg->branches != NULL) {
		struct coordinator_pg_branch *b = pg->branches;

		branch_unlink(b);
		mem_free(b);
	}
	for (int i = 0; i < pg->pool_size; i++) {
		pg->conns[i].timer.data = pg;
		uv_close((uv_handle_t *)&pg->conns[i].timer, on_handle_closed);
	}
	uv_close((uv_handle_t *)&pg->retry_timer, on_handle_closed);
	uv_close((uv_handle_t *)&pg->defer_timer, on_handle_closed);
	uv_close((uv_handle_t *)&pg->queue_timer, on_handle_closed);
	cork_batch_close(&pg->corks, on_handle_closed);
}

const char *coordinator_pg_name(const struct coordinator_pg *pg)
{
	return pg->name;
}

bool coordinator_pg_is_up(const struct coordinator_pg *pg)
{
	return pg->up;
}

const char *coordinator_pg_last_error(const struct coordinator_pg *pg)
{
	return pg->last_error;
}

void coordinator_pg_stats_get(const struct coordinator_pg *pg,
			      struct coordinator_pg_stats *out)
{
	*out = pg->stats;
	out->open = live_count(pg);
	out->idle = 0;
	out->pinned = 0;
	for (int i = 0; i < pg->pool_size; i++) {
		const struct conn *c = &pg->conns[i];

		out->pinned += c->branch != NULL;
		out->idle += c->state == C_IDLE && c->branch == NULL;
	}
	out->connecting = connecting_count(pg);
	out->queued = pg->qlen;
	out->corked = (int)cork_batch_held(&pg->corks);
	out->batches = pg->corks.turns;
}

/* ---- operations -------------------------------------------------------- */

static bool gid_ok(const char *gid)
{
	size_t n;

	if (gid == NULL)
		return false;
	n = strlen(gid);
	return n > 0 && n <= COORDINATOR_PG_GID_MAX;
}

int coordinator_pg_check(struct coordinator_pg *pg, coordinator_pg_cb cb,
			 void *data)
{
	struct req *r;
	int rc;

	if (pg == NULL)
		return -EINVAL;
	if (pg->closing)
		return COORDINATOR_PG_ECLOSED;
	r = req_new(pg, OP_CHECK, cb, data);
	if (r == NULL)
		return -ENOMEM;
	rc = submit(pg, r);
	if (rc < 0)
		req_free(r);
	return rc;
}

int coordinator_pg_begin(struct coordinator_pg *pg, coordinator_pg_cb cb,
			 void *data, struct coordinator_pg_branch **out)
{
	struct coordinator_pg_branch *b;
	struct req *r;
	int rc;

	if (pg == NULL || out == NULL)
		return -EINVAL;
	if (pg->closing)
		return COORDINATOR_PG_ECLOSED;
	b = mem_calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	r = req_new(pg, OP_BEGIN, cb, data);
	if (r == NULL) {
		mem_free(b);
		return -ENOMEM;
	}
	b->pg = pg;
	b->state = B_BEGINNING;
	b->busy = true;
	r->branch = b;
	rc = submit(pg, r);
	if (rc < 0) {
		req_free(r);
		mem_free(b);
		return rc;
	}
	b->next = pg->branches;
	if (pg->branches != NULL)
		pg->branches->prev = b;
	pg->branches = b;
	*out = b;
	return 0;
}

/* Skips blanks and SQL comments (-- to the end of the line, nested
 * slash-star ones). */
static const char *skip_blank(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
		       *p == '\f' || *p == '\v')
			p++;
		if (p[0] == '-' && p[1] == '-') {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			int depth = 1;

			for (p += 2; *p != '\0' && depth > 0; p++) {
				if (p[0] == '/' && p[1] == '*')
					depth++, p++;
				else if (p[0] == '*' && p[1] == '/')
					depth--, p++;
			}
		} else {
			return p;
		}
	}
}

/* The next word of p (letters, digits, '_') as *w, length returned; p is
 * advanced past it. */
static size_t next_word(const char **p, const char **w)
{
	const char *q = skip_blank(*p);
	size_t n = 0;

	*w = q;
	while ((q[n] >= 'a' && q[n] <= 'z') || (q[n] >= 'A' && q[n] <= 'Z') ||
	       (q[n] >= '0' && q[n] <= '9') || q[n] == '_')
		n++;
	*p = q + n;
	return n;
}

static bool word_is(const char *w, size_t n, const char *kw)
{
	return n == strlen(kw) && strncasecmp(w, kw, n) == 0;
}

/* True if sql would end the transaction: COMMIT, END, ABORT, ROLLBACK
 * (but not ROLLBACK TO a savepoint), PREPARE TRANSACTION, and COMMIT or
 * ROLLBACK PREPARED.  A statement runs alone (extended protocol), so only
 * its first words matter; procedures and DO blocks cannot end a
 * transaction block they run in.  The check after each statement stays as
 * the backstop. */
static bool ends_transaction(const char *sql)
{
	const char *p = sql, *w;
	size_t n = next_word(&p, &w);

	if (word_is(w, n, "COMMIT") || word_is(w, n, "END") ||
	    word_is(w, n, "ABORT"))
		return true;
	if (word_is(w, n, "PREPARE")) {
		n = next_word(&p, &w);
		return word_is(w, n, "TRANSACTION");
	}
	if (!word_is(w, n, "ROLLBACK"))
		return false;
	n = next_word(&p, &w);
	if (word_is(w, n, "WORK") || word_is(w, n, "TRANSACTION"))
		n = next_word(&p, &w);
	return !word_is(w, n, "TO");
}

/* Ends b's use of its connection after a refusal: b stays (broken) until
 * the caller ends it; the connection goes back (rolled back). */
static void break_branch(struct coordinator_pg_branch *b, int code,
			 const char *why)
{
	struct conn *c = b->conn;

	b->state = B_BROKEN;
	b->broken_code = code;
	str_copy(b->broken_msg, sizeof(b->broken_msg), why);
	b->need_begin = false;
	b->conn = NULL;
	if (c != NULL) {
		c->branch = NULL;
		release(c);
	}
}

/* Starts r on branch b (already checked not busy). */
static int run_on_branch(struct coordinator_pg_branch *b, struct req *r)
{
	r->branch = b;
	b->busy = true;
	if (b->state == B_BROKEN) {
		if (r->op == OP_ROLLBACK) {
			r->outcome = COORDINATOR_PG_OK;
		} else {
			if (r->op == OP_RUN_PREPARE)
				r->fail_stmt = 0; /* nothing could be sent */
			req_fail(r, b->broken_code, b->broken_msg);
		}
		defer(r);
		return 0;
	}
	if (b->need_begin && r->op != OP_EXEC && r->op != OP_RUN_PREPARE) {
		/* Nothing ran, not even BEGIN: there is no transaction to
		 * prepare, commit or roll back.  Like any branch that wrote
		 * nothing, a prepare reports it read-only. */
		struct conn *c = b->conn;

		b->need_begin = false;
		b->conn = NULL;
		c->branch = NULL;
		if (r->op == OP_PREPARE)
			r->outcome = COORDINATOR_PG_READ_ONLY;
		release(c);
		defer(r);
		return 0;
	}
	send_req(b->conn, r);
	return 0;
}

static int branch_usable(const struct coordinator_pg_branch *b)
{
	if (b == NULL)
		return -EINVAL;
	if (b->pg->closing)
		return COORDINATOR_PG_ECLOSED;
	if (b->busy || b->state == B_BEGINNING)
		return -EBUSY;
	return 0;
}

int coordinator_pg_branch_exec(struct coordinator_pg_branch *b, const char *sql,
			       int nparams, const char *const *params,
			       coordinator_pg_cb cb, void *data)
{
	struct req *r;
	int rc = branch_usable(b);

	if (rc < 0)
		return rc;
	if (sql == NULL || nparams < 0 || nparams > 65535 ||
	    (nparams > 0 && params == NULL))
		return -EINVAL;
	r = req_new(b->pg, OP_EXEC, cb, data);
	if (r == NULL)
		return -ENOMEM;
	r->row_limit = b->pg->row_limit;
	if (b->state != B_BROKEN && ends_transaction(sql)) {
		/* Refused before it runs: the transaction stays whole, and
		 * the branch is over (its work is rolled back). */
		static const char why[] =
		    "the statement would end the branch's transaction "
		    "(COMMIT, ROLLBACK and PREPARE TRANSACTION are not "
		    "allowed in a branch)";

		r->branch = b;
		b->busy = true;
		req_fail(r, COORDINATOR_PG_EENDED, why);
		break_branch(b, COORDINATOR_PG_EENDED, why);
		defer(r);
		return 0;
	}
	/* Sent before this returns (or failed at once): no copies. */
	r->sql = sql;
	r->nparams = nparams;
	r->params = params;
	return run_on_branch(b, r);
}

int coordinator_pg_branch_run_prepare(struct coordinator_pg_branch *b,
				      const struct coordinator_pg_stmt *stmts,
				      int n, const char *gid,
				      coordinator_pg_cb each,
				      coordinator_pg_cb cb, void *data)
{
	struct req *r;
	int rc = branch_usable(b);

	if (rc < 0)
		return rc;
	if (n < 0 || (n > 0 && stmts == NULL))
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (stmts[i].sql == NULL || stmts[i].nparams < 0 ||
		    stmts[i].nparams > 65535 ||
		    (stmts[i].nparams > 0 && stmts[i].params == NULL))
			return -EINVAL;
	}
	if (!gid_ok(gid))
		return COORDINATOR_PG_EBAD_GID;
	r = req_new(b->pg, OP_RUN_PREPARE, cb, data);
	if (r == NULL)
		return -ENOMEM;
	r->each = each;
	r->row_limit = b->pg->row_limit;
	r->arg = mem_strdup(gid);
	if (r->arg == NULL) {
		req_free(r);
		return -ENOMEM;
	}
	for (int i = 0; b->state != B_BROKEN && i < n; i++) {
		static const char why[] =
		    "the statement would end the branch's transaction "
		    "(COMMIT, ROLLBACK and PREPARE TRANSACTION are not "
		    "allowed in a branch)";

		if (!ends_transaction(stmts[i].sql))
			continue;
		/* Refused before anything is sent, as in exec. */
		r->branch = b;
		b->busy = true;
		r->fail_stmt = i;
		req_fail(r, COORDINATOR_PG_EENDED, why);
		break_branch(b, COORDINATOR_PG_EENDED, why);
		defer(r);
		return 0;
	}
	/* Sent before this returns (or failed at once): no copies. */
	r->stmts = stmts;
	r->nstmts = n;
	return run_on_branch(b, r);
}

static int branch_end(struct coordinator_pg_branch *b, enum op op,
		      const char *gid, coordinator_pg_cb cb, void *data)
{
	struct req *r;
	int rc = branch_usable(b);

	if (rc < 0)
		return rc;
	if (op == OP_PREPARE && !gid_ok(gid))
		return COORDINATOR_PG_EBAD_GID;
	r = req_new(b->pg, op, cb, data);
	if (r == NULL)
		return -ENOMEM;
	if (gid != NULL) {
		r->arg = mem_strdup(gid);
		if (r->arg == NULL) {
			req_free(r);
			return -ENOMEM;
		}
	}
	/* Preparing a branch that wrote needs no probe: one round trip. */
	r->step = op == OP_PREPARE && b->wrote ? STEP_PREPARE : STEP_XID;
	return run_on_branch(b, r);
}

int coordinator_pg_branch_prepare(struct coordinator_pg_branch *b,
				  const char *gid, coordinator_pg_cb cb,
				  void *data)
{
	return branch_end(b, OP_PREPARE, gid, cb, data);
}

int coordinator_pg_branch_commit(struct coordinator_pg_branch *b,
				 coordinator_pg_cb cb, void *data)
{
	return branch_end(b, OP_COMMIT, NULL, cb, data);
}

int coordinator_pg_branch_rollback(struct coordinator_pg_branch *b,
				   coordinator_pg_cb cb, void *data)
{
	return branch_end(b, OP_ROLLBACK, NULL, cb, data);
}

static int pool_op(struct coordinator_pg *pg, enum op op, char *arg,
		   coordinator_pg_cb cb, void *data)
{
	struct req *r;
	int rc;

	if (arg == NULL)
		return -ENOMEM;
	r = req_new(pg, op, cb, data);
	if (r == NULL) {
		mem_free(arg);
		return -ENOMEM;
	}
	r->arg = arg;
	rc = submit(pg, r);
	if (rc < 0)
		req_free(r);
	return rc;
}

int coordinator_pg_commit_prepared(struct coordinator_pg *pg, const char *gid,
				   coordinator_pg_cb cb, void *data)
{
	if (pg == NULL)
		return -EINVAL;
	if (pg->closing)
		return COORDINATOR_PG_ECLOSED;
	if (!gid_ok(gid))
		return COORDINATOR_PG_EBAD_GID;
	return pool_op(pg, OP_COMMIT_PREPARED, mem_strdup(gid), cb, data);
}

int coordinator_pg_rollback_prepared(struct coordinator_pg *pg, const char *gid,
				     coordinator_pg_cb cb, void *data)
{
	if (pg == NULL)
		return -EINVAL;
	if (pg->closing)
		return COORDINATOR_PG_ECLOSED;
	if (!gid_ok(gid))
		return COORDINATOR_PG_EBAD_GID;
	return pool_op(pg, OP_ROLLBACK_PREPARED, mem_strdup(gid), cb, data);
}

int coordinator_pg_list_prepared(struct coordinator_pg *pg, const char *prefix,
				 coordinator_pg_cb cb, void *data)
{
	char *pat;
	size_t n, o = 0;

	if (pg == NULL || prefix == NULL)
		return -EINVAL;
	if (pg->closing)
		return COORDINATOR_PG_ECLOSED;
	n = strlen(prefix);
	if (n > COORDINATOR_PG_GID_MAX)
		return COORDINATOR_PG_EBAD_GID;
	/* '!' is the ESCAPE character of the query: escape it, '%' and '_'
	 * so the prefix matches only itself, then match any rest. */
	pat = mem_alloc(2 * n + 2);
	if (pat == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (prefix[i] == '!' || prefix[i] == '%' || prefix[i] == '_')
			pat[o++] = '!';
		pat[o++] = prefix[i];
	}
	pat[o++] = '%';
	pat[o] = '\0';
	return pool_op(pg, OP_LIST, pat, cb, data);
}

/*
 * Asks the server to cancel the branch's statement in flight (PQcancel, off
 * the loop).  The statement's callback still fires, with SQLSTATE 57014
 * (query_canceled) or its own result if it finished first; the branch then
 * holds an aborted transaction to roll back.  Used when the coordinator
 * gives up on a branch (abort, timeout) so its locks are freed at once
 * instead of when the statement ends.
 */
int coordinator_pg_branch_cancel(struct coordinator_pg_branch *b)
{
	if (b == NULL || b->conn == NULL)
		return -EINVAL;
	if (!b->busy || b->conn->state != C_BUSY)
		return -EALREADY;
	if (b->conn->req != NULL && b->conn->req->op == OP_RUN_PREPARE) {
		/* Keep the connection until the pipeline answers: only the
		 * answer says whether PREPARE ran (a lost one would leave a
		 * PREPARE that lands after its rollback to the reconciler).
		 * The server skips the rest of the pipeline after the
		 * cancelled statement; the connection is closed afterwards. */
		if (!b->conn->doomed) {
			b->conn->doomed = true;
			send_cancel(b->conn);
		}
		return 0;
	}
	/* Drop the connection too, as the statement timer does: a cancel
	 * still in flight must not hit the pooled connection's next user. */
	send_cancel(b->conn);
	conn_lost(b->conn, COORDINATOR_PG_ECONNLOST,
		  "statement cancelled: the coordinator abandoned the branch");
	return 0;
}
