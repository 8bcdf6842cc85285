/*
 * server.c - the coordinator's libuv runtime: it executes the pure engine's
 * effects with real parts (the postgres driver, the WAL decision log, libuv
 * timers, HTTP replies) and feeds what they answer back to the engine.
 *
 * Design notes
 *  - The engine (engine.c) decides; this file only carries out.  Every
 *    engine call appends effects to a list that apply() executes in order
 *    and clears.  Answers come back as events through step().
 *  - Async operations never hold pointers into engine memory across the
 *    loop: an op carries the txn id and branch index and looks the
 *    transaction up again when its answer arrives.  A txn that is gone by
 *    then (pruned) makes the answer stale, and stale answers are dropped.
 *  - A branch's pinned PostgreSQL session lives in its coordinator_stmts
 *    (the engine's opaque per-branch data), with the statement results.
 *  - Clients are HTTP requests; the engine's client id is the request's
 *    address.  The engine replies exactly once per waiting client.
 *  - Crash points (common/crashpoint.h) mark the protocol steps named in
 *    docs/operations.md; a drill arms one and the process dies there.
 *
 * Invariants
 *  1. No client hears "committed" before the commit decision is durable:
 *     the engine emits the REPLY only after the log's completion event.
 *  2. Phase-2 effects are idempotent; a lost answer is reported as LOST and
 *     the engine retries.
 */
#include "coordinator/server.h"
#include "coordinator/coordinator.h"
#include "coordinator/stmts.h"

#include "common/common.h"
#include "common/config.h"
#include "common/http.h"
#include "common/metrics.h"
#include "wal/wal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#define DONE_KEEP_MS (10u * 60u * 1000u) /* done txns stay visible 10 min */
#define PRUNE_EVERY_MS 5000u
#define CHECKPOINT_EVERY_RECORDS 100000u

struct srv_resource {
	const char *name;
	struct coordinator_pg *pg;
};

struct srv_timer {
	uv_timer_t handle;
	struct coordinator_server *srv;
	char txn[COORDINATOR_GID_SIZE];
	int branch;
	uint64_t id;
	struct srv_timer *prev, *next;
};

enum op_kind {
	OP_BEGIN,
	OP_EXEC,
	OP_RUN_PREPARE,
	OP_PREPARE,
	OP_COMMIT_1PC,
	OP_ROLLBACK_LOCAL,
	OP_COMMIT_PREPARED,
	OP_ROLLBACK_PREPARED,
	OP_LOG,
};

struct srv_op {
	struct coordinator_server *srv;
	enum op_kind kind;
	char txn[COORDINATOR_GID_SIZE];
	int branch;
	uint64_t token;			 /* OP_LOG */
	enum coordinator_rec_type rtype; /* OP_LOG */
	/* OP_LOG waiting for the end of the loop turn: its record, and the
	 * next one in line. */
	struct coordinator_record *rec;
	bool forced;
	struct srv_op *next;
};

struct srv_metrics {
	struct metrics_counter *committed, *aborted, *unknown, *begun;
	struct metrics_counter *log_writes, *forced_writes, *phase2_retries;
	struct metrics_counter *in_doubt_enter;
	struct metrics_histogram *total, *prepare, *phase2;
};

struct coordinator_server {
	uv_loop_t *loop;
	const struct config_node *cfg;
	struct coordinator_engine *engine;
	struct coordinator_log log;
	bool log_open;
	struct srv_resource *res;
	size_t nres;
	struct http_server *http;
	struct metrics_registry *reg;
	struct srv_metrics m;
	struct srv_timer *timers;
	uv_timer_t prune;
	bool prune_started;
	/* Log appends of this loop turn, handed to the log together when the
	 * turn's callbacks are done (flush_logs): one writer wake-up and one
	 * sync for every decision the turn made. */
	struct srv_op *logq, *logq_tail;
	uv_prepare_t logq_prepare;
	uv_check_t logq_check;
	bool logq_started;
	/* The memory of the last effect list applied, for the next step's
	 * (coordinator_server_fx_init): a fresh list was a large allocation
	 * and free per step.  Steps nest; only one list is kept. */
	struct coordinator_fx spare_fx;
	struct jsonw answer; /* the memory of the last answer, for the next */
	bool checkpointing;
	uint64_t checkpoint_at; /* WAL records written at the last checkpoint */
	size_t clients; /* requests waiting for an outcome */
	size_t pending_closes;
	void (*on_closed)(void *data);
	void *closed_data;
	bool closing;
	uint64_t started_at;
	char log_dir[4096];
};

static void apply(struct coordinator_server *s, struct coordinator_fx *fx);
#define SPARE_FX_MAX 256 /* effects; a larger list is freed */

/* ------------------------------------------------------------- helpers */

uint64_t coordinator_server_now(const struct coordinator_server *s)
{
	return uv_now(s->loop);
}

uv_loop_t *coordinator_server_loop(struct coordinator_server *s)
{
	return s->loop;
}

struct coordinator_engine *
coordinator_server_engine(struct coordinator_server *s)
{
	return s->engine;
}

struct coordinator_log *coordinator_server_log(struct coordinator_server *s)
{
	return &s->log;
}

const struct config_node *
coordinator_server_config(const struct coordinator_server *s)
{
	return s->cfg;
}

static struct coordinator_pg *resource(struct coordinator_server *s,
				       const char *name)
{
	for (size_t i = 0; i < s->nres; i++)
		if (strcmp(s->res[i].name, name) == 0)
			return s->res[i].pg;
	return NULL;
}

bool coordinator_server_has_resource(struct coordinator_server *s,
				     const char *name)
{
	return resource(s, name) != NULL;
}

static struct coordinator_stmts *branch_stmts(struct coordinator_server *s,
					      const char *txn, int branch,
					      struct coordinator_txn **xout)
{
	struct coordinator_table *t = coordinator_engine_table(s->engine);
	struct coordinator_txn *x = coordinator_table_find(t, txn);

	if (xout != NULL)
		*xout = x;
	if (x == NULL || branch < 0 || (size_t)branch >= x->nbranches)
		return NULL;
	return x->branches[branch].stmts;
}

static struct srv_op *op_new(struct coordinator_server *s, enum op_kind kind,
			     const char *txn, int branch)
{
	struct srv_op *op = mem_calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->srv = s;
	op->kind = kind;
	str_copy(op->txn, sizeof(op->txn), txn);
	op->branch = branch;
	return op;
}

static void event_init(struct coordinator_event *ev,
		       enum coordinator_ev_type type, const char *txn,
		       int branch)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	str_copy(ev->txn, sizeof(ev->txn), txn);
	ev->branch = branch;
}

static void event_error(struct coordinator_event *ev,
			const struct coordinator_pg_result *r)
{
	str_copy(ev->sqlstate, sizeof(ev->sqlstate),
		 r->sqlstate ? r->sqlstate : "");
	str_copy(ev->message, sizeof(ev->message),
		 r->message ? r->message : "");
}

/* Feeds one event to the engine and carries out what it says. */
static void step(struct coordinator_server *s,
		 const struct coordinator_event *ev)
{
	struct coordinator_fx fx;
	int rc;

	coordinator_server_fx_init(s, &fx);
	rc = coordinator_engine_step(s->engine, ev, uv_now(s->loop), &fx);
	if (rc < 0 && rc != COORDINATOR_ESTALE)
		log_warn("coordinator", "event_rejected",
			 "txn=%s branch=%d type=%d error=%s", log_q(ev->txn),
			 ev->branch, (int)ev->type, log_q(coordinator_strerror(rc)));
	apply(s, &fx);
}

/* Maps a driver result of a phase-2 or 1PC operation to an event status. */
static enum coordinator_status status_of(const struct coordinator_pg_result *r)
{
	switch (r->outcome) {
	case COORDINATOR_PG_OK:
	case COORDINATOR_PG_READ_ONLY:
		return COORDINATOR_ST_OK;
	case COORDINATOR_PG_NOT_FOUND:
		return COORDINATOR_ST_NOT_FOUND;
	default:
		return r->in_doubt || r->code == COORDINATOR_PG_ECONNLOST ||
				       r->code == COORDINATOR_PG_ETIMEOUT ||
				       r->code == COORDINATOR_PG_ECONNECT ||
				       r->code == COORDINATOR_PG_ECLOSED
			       ? COORDINATOR_ST_LOST
			       : COORDINATOR_ST_ERROR;
	}
}

/* ------------------------------------------------ statements (RUN effect) */

/* Appends one statement's result to the branch's results (docs/api.md). */
static void result_write(struct coordinator_stmts *st,
			 const struct coordinator_pg_result *r)
{
	struct jsonw *w = &st->results;

	jsonw_begin_object(w);
	jsonw_kv_int(w, "rows_affected",
		     r->rows_affected < 0 ? 0 : r->rows_affected);
	if (r->ncols > 0) {
		jsonw_key(w, "columns");
		jsonw_begin_array(w);
		for (int c = 0; c < r->ncols; c++)
			jsonw_string(w, r->colnames[c]);
		jsonw_end_array(w);
		jsonw_key(w, "rows");
		jsonw_begin_array(w);
		for (int i = 0; i < r->nrows; i++) {
			jsonw_begin_array(w);
			for (int c = 0; c < r->ncols; c++)
				jsonw_string(
				    w, coordinator_pg_result_value(r, i, c));
			jsonw_end_array(w);
		}
		jsonw_end_array(w);
		if (r->truncated) {
			jsonw_key(w, "truncated");
			jsonw_bool(w, true);
		}
	}
	jsonw_end_object(w);
}

static void run_next(struct coordinator_server *s, struct srv_op *op,
		     struct coordinator_stmts *st);

static void ran(struct coordinator_server *s, struct srv_op *op,
		enum coordinator_status status,
		const struct coordinator_pg_result *r)
{
	struct coordinator_event ev;

	event_init(&ev, COORDINATOR_EV_RAN, op->txn, op->branch);
	ev.status = status;
	if (r != NULL)
		event_error(&ev, r);
	mem_free(op);
	step(s, &ev);
}

static void rollback_done(const struct coordinator_pg_result *r, void *data)
{
	mem_free(data);
}

/* The engine gave up on the branch while a call was in flight. */
static bool abandoned(struct coordinator_server *s, struct srv_op *op,
		      struct coordinator_stmts *st)
{
	struct srv_op *rb;

	if (st != NULL && !st->abandon)
		return false;
	if (st != NULL && st->pgb != NULL) {
		rb = op_new(s, OP_ROLLBACK_LOCAL, op->txn, op->branch);
		if (rb == NULL ||
		    coordinator_pg_branch_rollback(st->pgb, rollback_done,
						   rb) < 0)
			mem_free(rb);
		st->pgb = NULL;
	}
	mem_free(op);
	return true;
}

static void exec_done(const struct coordinator_pg_result *r, void *data)
{
	struct srv_op *op = data;
	struct coordinator_server *s = op->srv;
	struct coordinator_stmts *st = branch_stmts(s, op->txn, op->branch, NULL);

	if (st != NULL)
		st->busy = false;
	if (st == NULL || abandoned(s, op, st)) {
		if (st == NULL)
			mem_free(op);
		return;
	}
	if (r->outcome != COORDINATOR_PG_OK) {
		if (r->code == COORDINATOR_PG_ECONNLOST ||
		    r->code == COORDINATOR_PG_EENDED) {
			/* The session is unusable: end the branch now (the
			 * driver answers OK at once) so it frees its slot. */
			struct srv_op *rb = op_new(s, OP_ROLLBACK_LOCAL,
						   op->txn, op->branch);

			if (rb == NULL ||
			    coordinator_pg_branch_rollback(st->pgb,
							   rollback_done, rb) < 0)
				mem_free(rb);
			st->pgb = NULL;
		}
		ran(s, op, COORDINATOR_ST_ERROR, r);
		return;
	}
	result_write(st, r);
	st->next++;
	run_next(s, op, st);
}

static void run_next(struct coordinator_server *s, struct srv_op *op,
		     struct coordinator_stmts *st)
{
	const struct coordinator_stmt *q;
	struct coordinator_pg_result fake;
	int rc;

	if (st->next >= st->n) {
		ran(s, op, COORDINATOR_ST_OK, NULL);
		return;
	}
	q = &st->v[st->next];
	rc = coordinator_pg_branch_exec(st->pgb, q->sql, q->nparams,
					(const char *const *)q->params,
					exec_done, op);
	if (rc < 0) {
		memset(&fake, 0, sizeof(fake));
		fake.message = coordinator_pg_strerror(rc);
		fake.sqlstate = "";
		ran(s, op, COORDINATOR_ST_ERROR, &fake);
		return;
	}
	st->busy = true;
}

/* ------------------------------ pipelined phase 1 (RUN with prepare) */

/* True once a pipeline with PREPARE went out for some branch of x. */
static bool pipelines_sent(const struct coordinator_txn *x)
{
	for (size_t i = 0; x != NULL && i < x->nbranches; i++) {
		const struct coordinator_stmts *st = x->branches[i].stmts;

		if (st != NULL && st->prep_sent)
			return true;
	}
	return false;
}

/* True once every pipelined branch of x sent its pipeline. */
static bool pipelines_all_sent(const struct coordinator_txn *x)
{
	for (size_t i = 0; i < x->nbranches; i++) {
		const struct coordinator_stmts *st = x->branches[i].stmts;

		if (st != NULL && st->pipelined && !st->prep_sent)
			return false;
	}
	return true;
}

static void run_prepare_each(const struct coordinator_pg_result *r,
			     void *data)
{
	struct srv_op *op = data;
	struct coordinator_stmts *st =
		branch_stmts(op->srv, op->txn, op->branch, NULL);

	if (st != NULL)
		result_write(st, r);
}

/*
 * The pipeline's answer, as the engine wants it: VOTED yes once prepared;
 * RAN with an error when a statement failed or nothing was sent (nothing
 * prepared, the driver rolled back); VOTED lost when the answer was lost
 * after sending (it may be prepared); VOTED no when PREPARE failed.
 */
static void run_prepare_done(const struct coordinator_pg_result *r,
			     void *data)
{
	struct srv_op *op = data;
	struct coordinator_server *s = op->srv;
	struct coordinator_stmts *st =
		branch_stmts(s, op->txn, op->branch, NULL);
	struct coordinator_event ev;

	if (st != NULL) {
		st->busy = false;
		st->pgb = NULL; /* the operation ended the branch */
	}
	if (r->outcome == COORDINATOR_PG_OK) {
		event_init(&ev, COORDINATOR_EV_VOTED, op->txn, op->branch);
		ev.vote = COORDINATOR_VOTE_YES;
	} else if (r->stmt >= 0) {
		event_init(&ev, COORDINATOR_EV_RAN, op->txn, op->branch);
		ev.status = COORDINATOR_ST_ERROR;
		event_error(&ev, r);
	} else {
		event_init(&ev, COORDINATOR_EV_VOTED, op->txn, op->branch);
		ev.vote = r->in_doubt ? COORDINATOR_VOTE_LOST
				      : COORDINATOR_VOTE_NO;
		event_error(&ev, r);
	}
	mem_free(op);
	step(s, &ev);
}

/* The pinned session is there: BEGIN, the statements and PREPARE go out
 * in one pipeline. */
static void run_pipeline(struct coordinator_server *s, struct srv_op *op,
			 struct coordinator_stmts *st)
{
	struct coordinator_pg_stmt small[16], *v = small;
	struct coordinator_pg_result fake;
	struct coordinator_txn *x;
	const char *why = NULL;
	int rc = -ENOMEM;

	branch_stmts(s, op->txn, op->branch, &x);
	if (st->n > sizeof(small) / sizeof(small[0]))
		v = mem_calloc(st->n, sizeof(*v));
	if (v != NULL) {
		for (size_t i = 0; i < st->n; i++) {
			v[i].sql = st->v[i].sql;
			v[i].nparams = st->v[i].nparams;
			v[i].params = (const char *const *)st->v[i].params;
		}
		/* Before the first PREPARE of the txn leaves. */
		if (!pipelines_sent(x))
			crashpoint_hit("coordinator.before_prepare");
		op->kind = OP_RUN_PREPARE;
		st->busy = true;
		rc = coordinator_pg_branch_run_prepare(
			st->pgb, v, (int)st->n, x->branches[op->branch].gid,
			run_prepare_each, run_prepare_done, op);
	}
	if (v != small)
		mem_free(v);
	if (rc == 0) {
		st->prep_sent = true;
		if (pipelines_all_sent(x))
			crashpoint_hit("coordinator.after_prepare_sent");
		return;
	}
	/* Nothing sent: end the session, the statement "failed". */
	st->busy = false;
	why = coordinator_pg_strerror(rc);
	{
		struct srv_op *rb =
			op_new(s, OP_ROLLBACK_LOCAL, op->txn, op->branch);

		if (rb == NULL ||
		    coordinator_pg_branch_rollback(st->pgb, rollback_done,
						   rb) < 0)
			mem_free(rb);
		st->pgb = NULL;
	}
	memset(&fake, 0, sizeof(fake));
	fake.message = why;
	fake.sqlstate = "";
	ran(s, op, COORDINATOR_ST_ERROR, &fake);
}

static void begin_done(const struct coordinator_pg_result *r, void *data)
{
	struct srv_op *op = data;
	struct coordinator_server *s = op->srv;
	struct coordinator_stmts *st = branch_stmts(s, op->txn, op->branch, NULL);

	if (st != NULL)
		st->busy = false;
	if (r->outcome != COORDINATOR_PG_OK) {
		if (st != NULL)
			st->pgb = NULL;
		/* A pipelined branch is answered even when abandoned: the
		 * engine waits for every PREPARE it asked for. */
		if (st == NULL || (st->abandon && !st->pipelined)) {
			mem_free(op);
			return;
		}
		ran(s, op, COORDINATOR_ST_ERROR, r);
		return;
	}
	if (st == NULL) {
		/* The txn is gone: end the session we just got. */
		struct coordinator_pg_branch *b = r->branch;

		op->kind = OP_ROLLBACK_LOCAL;
		if (coordinator_pg_branch_rollback(b, rollback_done, op) < 0)
			mem_free(op);
		return;
	}
	st->pgb = r->branch;
	if (st->pipelined && st->abandon) {
		/* Aborted while waiting for a connection: send nothing, and
		 * tell the engine nothing was prepared. */
		struct coordinator_pg_result fake;
		struct srv_op *rb =
			op_new(s, OP_ROLLBACK_LOCAL, op->txn, op->branch);

		if (rb == NULL ||
		    coordinator_pg_branch_rollback(st->pgb, rollback_done,
						   rb) < 0)
			mem_free(rb);
		st->pgb = NULL;
		memset(&fake, 0, sizeof(fake));
		fake.message = "not run: the transaction was aborted first";
		fake.sqlstate = "";
		ran(s, op, COORDINATOR_ST_ERROR, &fake);
		return;
	}
	if (st->pipelined) {
		run_pipeline(s, op, st);
		return;
	}
	if (abandoned(s, op, st))
		return;
	op->kind = OP_EXEC;
	run_next(s, op, st);
}

static void fx_run(struct coordinator_server *s,
		   const struct coordinator_effect *f)
{
	struct coordinator_pg *pg = resource(s, f->resource);
	struct coordinator_stmts *st = f->stmts;
	struct coordinator_pg_branch *b = NULL;
	struct coordinator_pg_result fake;
	struct srv_op *op = op_new(s, OP_BEGIN, f->txn, f->branch);
	int rc = -ENOMEM;

	if (op != NULL && pg != NULL && st != NULL) {
		st->next = 0;
		st->busy = true;
		st->pipelined = f->prepare;
		rc = coordinator_pg_begin(pg, begin_done, op, &b);
	} else if (pg == NULL || st == NULL) {
		rc = -EINVAL;
	}
	if (rc == 0)
		return;
	if (st != NULL)
		st->busy = false;
	memset(&fake, 0, sizeof(fake));
	fake.message = pg == NULL ? "unknown resource" : coordinator_pg_strerror(rc);
	fake.sqlstate = "";
	if (op == NULL) {
		struct coordinator_event ev;

		event_init(&ev, COORDINATOR_EV_RAN, f->txn, f->branch);
		ev.status = COORDINATOR_ST_ERROR;
		snprintf(ev.message, sizeof(ev.message), "out of memory");
		step(s, &ev);
		return;
	}
	ran(s, op, COORDINATOR_ST_ERROR, &fake);
}

/* ---------------------------------------------------- phase 1 and 1PC */

static void prepare_done(const struct coordinator_pg_result *r, void *data)
{
	struct srv_op *op = data;
	struct coordinator_event ev;

	event_init(&ev, COORDINATOR_EV_VOTED, op->txn, op->branch);
	switch (r->outcome) {
	case COORDINATOR_PG_OK:
		ev.vote = COORDINATOR_VOTE_YES;
		break;
	case COORDINATOR_PG_READ_ONLY:
		ev.vote = COORDINATOR_VOTE_READ_ONLY;
		break;
	default:
		ev.vote = r->in_doubt ? COORDINATOR_VOTE_LOST
				      : COORDINATOR_VOTE_NO;
		event_error(&ev, r);
		break;
	}
	struct coordinator_server *s = op->srv;
	mem_free(op);
	step(s, &ev);
}

static void one_phase_done(const struct coordinator_pg_result *r, void *data)
{
	struct srv_op *op = data;
	struct coordinator_server *s = op->srv;
	struct coordinator_event ev;

	event_init(&ev, COORDINATOR_EV_COMMITTED_ONE_PHASE, op->txn,
		   op->branch);
	ev.status = status_of(r);
	if (ev.status != COORDINATOR_ST_OK)
		event_error(&ev, r);
	mem_free(op);
	step(s, &ev);
}

/* PREPARE, 1PC COMMIT and local ROLLBACK all end the pinned session. */
static void fx_end_branch(struct coordinator_server *s,
			  const struct coordinator_effect *f)
{
	struct coordinator_stmts *st =
		branch_stmts(s, f->txn, f->branch, NULL);
	struct coordinator_pg_branch *b = st ? st->pgb : NULL;
	struct srv_op *op;
	int rc = -ENOMEM;

	if (f->type == COORDINATOR_FX_ROLLBACK_LOCAL) {
		if (st == NULL)
			return;
		if (st->busy) {
			/* Rolled back when the call ends; cancel the statement
			 * so its locks go now, not when it finishes. */
			st->abandon = true;
			if (st->pgb != NULL)
				coordinator_pg_branch_cancel(st->pgb);
			return;
		}
		st->abandon = true;
		st->pgb = NULL;
		op = b ? op_new(s, OP_ROLLBACK_LOCAL, f->txn, f->branch) : NULL;
		if (op != NULL &&
		    coordinator_pg_branch_rollback(b, rollback_done, op) < 0)
			mem_free(op);
		return;
	}
	op = op_new(s,
		    f->type == COORDINATOR_FX_PREPARE ? OP_PREPARE
						      : OP_COMMIT_1PC,
		    f->txn, f->branch);
	if (op != NULL && b != NULL && !st->busy) {
		st->pgb = NULL; /* prepare and commit end the branch */
		if (f->type == COORDINATOR_FX_PREPARE) {
			rc = coordinator_pg_branch_prepare(b, f->gid,
							   prepare_done, op);
		} else {
			rc = coordinator_pg_branch_commit(b, one_phase_done,
							  op);
		}
		if (rc == 0)
			return;
	} else if (op != NULL) {
		rc = -ENOTCONN;
	}
	/* Not sent: the branch cannot have prepared or committed. */
	struct coordinator_pg_result fake;

	memset(&fake, 0, sizeof(fake));
	fake.outcome = COORDINATOR_PG_FAILED;
	fake.code = rc;
	fake.message = rc == -ENOTCONN ? "the branch has no open session"
				       : coordinator_pg_strerror(rc);
	fake.sqlstate = "";
	if (op == NULL)
		return; /* out of memory: the phase-1 timer aborts the txn */
	if (f->type == COORDINATOR_FX_PREPARE)
		prepare_done(&fake, op);
	else
		one_phase_done(&fake, op);
}

/* A pipelined RUN the engine gave up on (the txn aborted): cancel what
 * runs so its locks go now.  Its answer still reaches the engine (the
 * driver keeps the connection until it is in): the cancelled statement's
 * error, or the vote if the pipeline finished first. */
static void fx_cancel_run(struct coordinator_server *s,
			  const struct coordinator_effect *f)
{
	struct coordinator_stmts *st =
		branch_stmts(s, f->txn, f->branch, NULL);

	if (st == NULL || !st->busy)
		return;
	st->abandon = true; /* still waiting for a connection: send nothing */
	if (st->pgb != NULL)
		coordinator_pg_branch_cancel(st->pgb);
}

/* ------------------------------------------------------------ phase 2 */

static void phase2_done(const struct coordinator_pg_result *r, void *data)
{
	struct srv_op *op = data;
	struct coordinator_server *s = op->srv;
	struct coordinator_event ev;

	event_init(&ev,
		   op->kind == OP_COMMIT_PREPARED
			   ? COORDINATOR_EV_COMMITTED_PREPARED
			   : COORDINATOR_EV_ROLLED_BACK_PREPARED,
		   op->txn, op->branch);
	ev.status = status_of(r);
	if (ev.status != COORDINATOR_ST_OK &&
	    ev.status != COORDINATOR_ST_NOT_FOUND)
		event_error(&ev, r);
	mem_free(op);
	step(s, &ev);
}

static void fx_phase2(struct coordinator_server *s,
		      const struct coordinator_effect *f)
{
	bool commit = f->type == COORDINATOR_FX_COMMIT_PREPARED;
	struct coordinator_pg *pg = resource(s, f->resource);
	struct coordinator_pg_result fake;
	struct srv_op *op;
	int rc = -ENOMEM;

	op = op_new(s, commit ? OP_COMMIT_PREPARED : OP_ROLLBACK_PREPARED,
		    f->txn, f->branch);
	if (op != NULL && pg != NULL) {
		rc = commit ? coordinator_pg_commit_prepared(pg, f->gid,
							     phase2_done, op)
			    : coordinator_pg_rollback_prepared(pg, f->gid,
							       phase2_done, op);
		if (rc == 0) {
			if (commit)
				crashpoint_hit(
					"coordinator.after_first_commit_sent");
			return;
		}
	} else if (pg == NULL) {
		rc = -ENODEV;
	}
	if (op == NULL)
		return; /* the engine's retry timer tries again */
	memset(&fake, 0, sizeof(fake));
	fake.outcome = COORDINATOR_PG_FAILED;
	fake.code = rc;
	fake.message = pg == NULL ? "resource is not configured"
				  : coordinator_pg_strerror(rc);
	fake.sqlstate = "";
	phase2_done(&fake, op);
}

/* ---------------------------------------------------------------- log */

static void log_done(void *arg, int status)
{
	struct srv_op *op = arg;
	struct coordinator_server *s = op->srv;
	struct coordinator_event ev;

	if (status == 0 && op->rtype == COORDINATOR_REC_COMMIT)
		crashpoint_hit("coordinator.after_decision_forced");
	event_init(&ev, COORDINATOR_EV_LOG, op->txn, op->branch);
	ev.token = op->token;
	ev.log_status = status;
	mem_free(op);
	if (status < 0)
		log_error("coordinator", "log_write_failed", "txn=%s error=%s",
			  log_q(ev.txn), log_q(wal_strerror(status)));
	if (s->closing && status == -ECANCELED)
		return;
	step(s, &ev);
}

/* Appends op's record (op is the append's callback argument); a refused
 * append is the engine's log failure at once. */
static void log_append(struct coordinator_server *s, struct srv_op *op)
{
	struct coordinator_event ev;
	int rc;

	rc = coordinator_log_append(&s->log, op->rec, op->forced, log_done,
				    op);
	coordinator_record_free(op->rec);
	op->rec = NULL;
	if (rc == 0)
		return;
	event_init(&ev, COORDINATOR_EV_LOG, op->txn, op->branch);
	ev.token = op->token;
	ev.log_status = rc;
	mem_free(op);
	step(s, &ev);
}

/*
 * Hands the turn's queued records to the log, in order.  Runs when the
 * loop turn's callbacks are done (check: after the I/O callbacks; prepare:
 * before the loop blocks, for appends made by timers), so the decisions of
 * every answer that arrived together reach the WAL writer in one wake-up
 * and share one sync, instead of the first going alone while the others
 * wait for the next sync.  Nothing waits longer than the turn.  Steps
 * made here (a refused append) may queue more: they go too.
 */
static void flush_logs(struct coordinator_server *s)
{
	while (s->logq != NULL) {
		struct srv_op *op = s->logq;

		s->logq = op->next;
		if (s->logq == NULL)
			s->logq_tail = NULL;
		op->next = NULL;
		log_append(s, op);
	}
	if (s->logq_started) {
		uv_prepare_stop(&s->logq_prepare);
		uv_check_stop(&s->logq_check);
	}
}

static void on_logq_prepare(uv_prepare_t *h)
{
	flush_logs(h->data);
}

static void on_logq_check(uv_check_t *h)
{
	flush_logs(h->data);
}

static void fx_log(struct coordinator_server *s, struct coordinator_effect *f)
{
	struct srv_op *op = op_new(s, OP_LOG, f->txn, f->branch);
	struct coordinator_event ev;

	if (f->rec->type == COORDINATOR_REC_END)
		crashpoint_hit("coordinator.before_end");
	metrics_counter_inc(s->m.log_writes);
	if (f->forced)
		metrics_counter_inc(s->m.forced_writes);
	if (op == NULL) {
		event_init(&ev, COORDINATOR_EV_LOG, f->txn, f->branch);
		ev.token = f->token;
		ev.log_status = -ENOMEM;
		step(s, &ev);
		return;
	}
	op->token = f->token;
	op->rtype = f->rec->type;
	op->forced = f->forced;
	op->rec = f->rec; /* taken from the effect list */
	f->rec = NULL;
	if (!s->logq_started || s->closing) {
		log_append(s, op);
		return;
	}
	if (s->logq == NULL) {
		uv_prepare_start(&s->logq_prepare, on_logq_prepare);
		uv_check_start(&s->logq_check, on_logq_check);
	}
	if (s->logq_tail != NULL)
		s->logq_tail->next = op;
	else
		s->logq = op;
	s->logq_tail = op;
}

/* ------------------------------------------------------------- timers */

static void timer_closed(uv_handle_t *h)
{
	struct srv_timer *t = h->data;
	struct coordinator_server *s = t->srv;

	mem_free(t);
	if (--s->pending_closes == 0 && s->closing && s->on_closed != NULL)
		s->on_closed(s->closed_data);
}

static void timer_unlink(struct srv_timer *t)
{
	struct coordinator_server *s = t->srv;

	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		s->timers = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	s->pending_closes++;
	uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static void timer_fired(uv_timer_t *h)
{
	struct srv_timer *t = h->data;
	struct coordinator_server *s = t->srv;
	struct coordinator_event ev;

	event_init(&ev, COORDINATOR_EV_TIMER, t->txn, t->branch);
	ev.timer_id = t->id;
	timer_unlink(t);
	step(s, &ev);
}

static void fx_timer(struct coordinator_server *s,
		     const struct coordinator_effect *f)
{
	struct srv_timer *t;
	uint64_t now = uv_now(s->loop);

	if (f->type == COORDINATOR_FX_CANCEL_TIMER) {
		for (t = s->timers; t != NULL; t = t->next) {
			if (t->id == f->timer_id) {
				timer_unlink(t);
				return;
			}
		}
		return;
	}
	t = mem_calloc(1, sizeof(*t));
	if (t == NULL) {
		log_error("coordinator", "timer_lost", "txn=%s reason=%s",
			  log_q(f->txn), "out of memory");
		return;
	}
	t->srv = s;
	t->id = f->timer_id;
	t->branch = f->branch;
	str_copy(t->txn, sizeof(t->txn), f->txn);
	uv_timer_init(s->loop, &t->handle);
	t->handle.data = t;
	t->next = s->timers;
	if (s->timers != NULL)
		s->timers->prev = t;
	s->timers = t;
	uv_timer_start(&t->handle, timer_fired, f->at > now ? f->at - now : 0,
		       0);
}

/* ------------------------------------------------------------- replies */

void coordinator_server_client_answered(struct coordinator_server *s);

#define ANSWER_KEEP_MAX (64u << 10)

static void fx_reply(struct coordinator_server *s,
		     const struct coordinator_effect *f)
{
	struct http_request *req =
	    (struct http_request *)(uintptr_t)f->reply->client;
	int status;

	if (req == NULL)
		return;
	switch (f->reply->outcome) {
	case COORDINATOR_OUTCOME_COMMITTED:
		status = 200;
		break;
	case COORDINATOR_OUTCOME_ABORTED:
		status = 409;
		break;
	default:
		status = 503; /* outcome unknown: look it up later */
		break;
	}
	/* One writer's memory serves every answer (but a large one's is
	 * not kept). */
	jsonw_reset(&s->answer);
	coordinator_server_reply_write(s, f->reply, &s->answer);
	http_respond_jsonw(req, status, &s->answer);
	if (s->answer.len > ANSWER_KEEP_MAX)
		jsonw_free(&s->answer);
	coordinator_server_client_answered(s);
}

static void fx_metric(struct coordinator_server *s,
		      const struct coordinator_effect *f)
{
	double secs = (double)f->value / 1000.0;

	switch (f->metric) {
	case COORDINATOR_M_TXN_BEGUN:
		metrics_counter_inc(s->m.begun);
		break;
	case COORDINATOR_M_TXN_COMMITTED:
		metrics_counter_inc(s->m.committed);
		metrics_histogram_observe(s->m.total, secs);
		break;
	case COORDINATOR_M_TXN_ABORTED:
		metrics_counter_inc(s->m.aborted);
		break;
	case COORDINATOR_M_TXN_UNKNOWN:
		metrics_counter_inc(s->m.unknown);
		break;
	case COORDINATOR_M_PREPARE_MS:
		metrics_histogram_observe(s->m.prepare, secs);
		break;
	case COORDINATOR_M_PHASE2_MS:
		metrics_histogram_observe(s->m.phase2, secs);
		break;
	case COORDINATOR_M_PHASE2_RETRY:
		metrics_counter_inc(s->m.phase2_retries);
		break;
	case COORDINATOR_M_IN_DOUBT_ENTER:
		metrics_counter_inc(s->m.in_doubt_enter);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------- apply */

/*
 * Executes fx in order and clears it.  Effects may complete synchronously
 * with an error and step the engine again; that nested call gets its own
 * list, so this list is never modified while we walk it.
 */
static void apply(struct coordinator_server *s, struct coordinator_fx *fx)
{
	bool prepared_sent = false;

	for (size_t i = 0; i < fx->n; i++) {
		struct coordinator_effect *f = &fx->v[i];

		switch (f->type) {
		case COORDINATOR_FX_RUN:
			fx_run(s, f);
			break;
		case COORDINATOR_FX_PREPARE:
			/* (A read-only-hinted branch of a pipelined txn
			 * prepares after the pipelines went out.) */
			if (!prepared_sent &&
			    !pipelines_sent(coordinator_table_find(
				coordinator_engine_table(s->engine), f->txn)))
				crashpoint_hit("coordinator.before_prepare");
			fx_end_branch(s, f);
			prepared_sent = true;
			break;
		case COORDINATOR_FX_COMMIT_ONE_PHASE:
		case COORDINATOR_FX_ROLLBACK_LOCAL:
			fx_end_branch(s, f);
			break;
		case COORDINATOR_FX_COMMIT_PREPARED:
		case COORDINATOR_FX_ROLLBACK_PREPARED:
			fx_phase2(s, f);
			break;
		case COORDINATOR_FX_LOG:
			fx_log(s, f);
			break;
		case COORDINATOR_FX_SET_TIMER:
		case COORDINATOR_FX_CANCEL_TIMER:
			fx_timer(s, f);
			break;
		case COORDINATOR_FX_REPLY:
			fx_reply(s, f);
			break;
		case COORDINATOR_FX_METRIC:
			fx_metric(s, f);
			break;
		case COORDINATOR_FX_CANCEL_RUN:
			fx_cancel_run(s, f);
			break;
		}
	}
	if (prepared_sent)
		crashpoint_hit("coordinator.after_prepare_sent");
	coordinator_fx_reset(fx);
	if (s->spare_fx.v == NULL && fx->cap <= SPARE_FX_MAX) {
		s->spare_fx = *fx;
		coordinator_fx_init(fx);
	} else {
		coordinator_fx_clear(fx);
	}
}

void coordinator_server_fx_init(struct coordinator_server *s,
				struct coordinator_fx *fx)
{
	*fx = s->spare_fx;
	coordinator_fx_init(&s->spare_fx);
}

void coordinator_server_apply(struct coordinator_server *s,
			      struct coordinator_fx *fx)
{
	apply(s, fx);
}

/* ----------------------------------------------------- listing prepared */

struct list_op {
	struct coordinator_server *srv;
	coordinator_server_list_cb cb;
	void *data;
	char resource[COORDINATOR_RESOURCE_MAX + 1];
};

static void list_done(const struct coordinator_pg_result *r, void *data)
{
	struct list_op *lo = data;
	const char **gids = NULL; /* borrowed from r */
	int n = r->outcome == COORDINATOR_PG_OK ? r->nrows : 0;

	if (n > 0)
		gids = mem_calloc((size_t)n, sizeof(*gids));
	if (n > 0 && gids == NULL) {
		lo->cb(lo->resource, NULL, 0, "out of memory", lo->data);
		mem_free(lo);
		return;
	}
	for (int i = 0; i < n; i++)
		gids[i] = coordinator_pg_result_value(r, i, 0);
	lo->cb(lo->resource, (const char *const *)gids, (size_t)n,
	       r->outcome == COORDINATOR_PG_OK ? NULL : r->message, lo->data);
	mem_free(gids);
	mem_free(lo);
}

int coordinator_server_list_prepared(struct coordinator_server *s,
				     const char *res,
				     coordinator_server_list_cb cb, void *data)
{
	struct coordinator_pg *pg = resource(s, res);
	char prefix[COORDINATOR_CLUSTER_MAX + 2];
	struct list_op *lo;
	int rc;

	if (pg == NULL)
		return -ENODEV;
	rc = coordinator_gid_prefix(s->cfg->cluster_id, prefix, sizeof(prefix));
	if (rc < 0)
		return rc;
	lo = mem_calloc(1, sizeof(*lo));
	if (lo == NULL)
		return -ENOMEM;
	lo->srv = s;
	lo->cb = cb;
	lo->data = data;
	str_copy(lo->resource, sizeof(lo->resource), res);
	rc = coordinator_pg_list_prepared(pg, prefix, list_done, lo);
	if (rc < 0)
		mem_free(lo);
	return rc;
}

size_t coordinator_server_resources(const struct coordinator_server *s)
{
	return s->nres;
}

const char *coordinator_server_resource_name(const struct coordinator_server *s,
					     size_t i)
{
	return i < s->nres ? s->res[i].name : NULL;
}

/* -------------------------------------------------------- lifecycle */

static void checkpoint_done(void *arg, int status)
{
	struct coordinator_server *s = arg;

	s->checkpointing = false;
	if (status < 0 && !s->closing)
		log_warn("coordinator", "checkpoint_failed", "error=%s",
			 log_q(coordinator_strerror(status)));
}

/*
 * Keeps the decision log short: once enough records were appended since the
 * last checkpoint, write the live state (the engine's snapshot) and drop
 * everything before it, so a restart replays little.
 */
static void maybe_checkpoint(struct coordinator_server *s)
{
	struct wal *w = coordinator_walog_wal(&s->log);
	struct coordinator_record **recs = NULL;
	struct wal_stats st;
	size_t n = 0;
	int rc;

	if (w == NULL || s->checkpointing || s->closing)
		return;
	wal_stats_get(w, &st);
	if (st.records < s->checkpoint_at + CHECKPOINT_EVERY_RECORDS)
		return;
	/* The snapshot must follow every append made so far. */
	flush_logs(s);
	rc = coordinator_engine_snapshot(s->engine, &recs, &n);
	if (rc < 0)
		return;
	rc = coordinator_log_checkpoint(&s->log, recs, n, checkpoint_done, s);
	coordinator_records_free(recs, n);
	if (rc < 0) {
		log_warn("coordinator", "checkpoint_failed", "error=%s",
			 log_q(coordinator_strerror(rc)));
		return;
	}
	s->checkpointing = true;
	s->checkpoint_at = st.records;
}

static void prune_tick(uv_timer_t *h)
{
	struct coordinator_server *s = h->data;

	coordinator_engine_prune(s->engine, uv_now(s->loop), DONE_KEEP_MS,
				 s->cfg->limits.max_finished);
	maybe_checkpoint(s);
}

static double gauge_in_doubt(void *data)
{
	struct coordinator_server *s = data;

	return (double)coordinator_table_count(
		coordinator_engine_table(s->engine), COORDINATOR_TXN_IN_DOUBT);
}

static double gauge_oldest_prepared(void *data)
{
	struct coordinator_server *s = data;

	return (double)coordinator_engine_oldest_prepared_ms(s->engine,
							     uv_now(s->loop)) /
	       1000.0;
}

static double gauge_active(void *data)
{
	struct coordinator_server *s = data;
	struct coordinator_table *t = coordinator_engine_table(s->engine);

	return (double)(coordinator_table_size(t) -
			coordinator_table_count(t, COORDINATOR_TXN_DONE));
}

static double wal_stat(struct coordinator_server *s, int which)
{
	struct wal *w = coordinator_walog_wal(&s->log);
	struct wal_stats st;

	if (w == NULL)
		return 0;
	wal_stats_get(w, &st);
	return (double)(which == 0 ? st.syncs : st.batches);
}

static double gauge_wal_syncs(void *data)
{
	return wal_stat(data, 0);
}

static double gauge_wal_batches(void *data)
{
	return wal_stat(data, 1);
}

static int metrics_setup(struct coordinator_server *s)
{
	static const char *const out_c[] = {"outcome", "committed", NULL};
	static const char *const out_a[] = {"outcome", "aborted", NULL};
	static const char *const out_u[] = {"outcome", "unknown", NULL};
	static const char *const ph_p[] = {"phase", "prepare", NULL};
	static const char *const ph_2[] = {"phase", "commit", NULL};
	static const char *const ph_t[] = {"phase", "total", NULL};
	struct metrics_registry *r;
	int rc = 0;

	rc = metrics_registry_new(&s->reg);
	if (rc < 0)
		return rc;
	r = s->reg;
	const char *txns = "decree_txns_total";
	const char *txns_help = "Transactions finished, by outcome.";
	rc |= metrics_counter_new(r, "decree_txns_begun_total",
				  "Transactions begun.", NULL, &s->m.begun);
	rc |= metrics_counter_new(r, txns, txns_help, out_c, &s->m.committed);
	rc |= metrics_counter_new(r, txns, txns_help, out_a, &s->m.aborted);
	rc |= metrics_counter_new(r, txns, txns_help, out_u, &s->m.unknown);
	rc |= metrics_counter_new(r, "decree_log_writes_total",
				  "Decision-log records appended.", NULL,
				  &s->m.log_writes);
	rc |= metrics_counter_new(r, "decree_log_forced_writes_total",
				  "Decision-log records forced to stable "
				  "storage.",
				  NULL, &s->m.forced_writes);
	rc |= metrics_counter_new(r, "decree_phase2_retries_total",
				  "Phase-2 operations retried after an error.",
				  NULL, &s->m.phase2_retries);
	rc |= metrics_counter_new(r, "decree_in_doubt_entered_total",
				  "Transactions that went in doubt.", NULL,
				  &s->m.in_doubt_enter);
	const char *lat = "decree_txn_phase_seconds";
	const char *lat_help = "Latency of the protocol phases.";
	rc |= metrics_histogram_new(r, lat, lat_help, ph_p, NULL, 0,
				    &s->m.prepare);
	rc |= metrics_histogram_new(r, lat, lat_help, ph_2, NULL, 0,
				    &s->m.phase2);
	rc |= metrics_histogram_new(r, lat, lat_help, ph_t, NULL, 0,
				    &s->m.total);
	rc |= metrics_gauge_fn_new(r, "decree_txns_in_doubt",
				   "Transactions in doubt now.", NULL,
				   gauge_in_doubt, s, NULL);
	rc |= metrics_gauge_fn_new(r, "decree_txns_active",
				   "Transactions not yet done.", NULL,
				   gauge_active, s, NULL);
	rc |= metrics_gauge_fn_new(r, "decree_oldest_prepared_seconds",
				   "Age of the oldest branch that may be "
				   "prepared and is not finished.",
				   NULL, gauge_oldest_prepared, s, NULL);
	rc |= metrics_gauge_fn_new(r, "decree_wal_syncs_total",
				   "Syncs of the decision log (group commit: "
				   "one per batch of forced records).",
				   NULL, gauge_wal_syncs, s, NULL);
	rc |= metrics_gauge_fn_new(r, "decree_wal_batches_total",
				   "Write batches of the decision log.", NULL,
				   gauge_wal_batches, s, NULL);
	return rc < 0 ? -ENOMEM : 0;
}

struct metrics_registry *coordinator_server_metrics(struct coordinator_server *s)
{
	return s->reg;
}

static int open_log(struct coordinator_server *s, char *err, size_t errlen)
{
	struct wal_config wc;
	struct wal_recovery_report rep;
	int rc;

	if (mkdir(s->cfg->data_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create data_dir %s: %s",
			 s->cfg->data_dir, strerror(errno));
		return -errno;
	}
	snprintf(s->log_dir, sizeof(s->log_dir), "%s/decision-log",
		 s->cfg->data_dir);
	wal_config_init(&wc);
	wc.dir = s->log_dir;
	wc.loop = s->loop;
	switch (s->cfg->sync_mode) {
	case CONFIG_SYNC_DSYNC:
		wc.sync_mode = WAL_SYNC_DSYNC;
		break;
	case CONFIG_SYNC_NONE:
		wc.sync_mode = WAL_SYNC_NONE;
		break;
	default:
		wc.sync_mode = WAL_SYNC_FDATASYNC;
		break;
	}
	rc = coordinator_walog_open(&wc, &s->log, &rep);
	if (rc < 0) {
		snprintf(err, errlen, "cannot open decision log %s: %s",
			 s->log_dir, wal_strerror(rc));
		return rc;
	}
	s->log_open = true;
	log_info("coordinator", "decision_log_open",
		 "dir=%s records=%llu last_lsn=%llu cut=%s bytes_cut=%llu",
		 log_q(s->log_dir), (unsigned long long)rep.records,
		 (unsigned long long)rep.last_lsn,
		 wal_cut_reason_name(rep.reason),
		 (unsigned long long)rep.bytes_cut);
	if (s->cfg->sync_mode == CONFIG_SYNC_NONE)
		log_warn("coordinator", "unsafe_sync_mode",
			 "sync_mode=none detail=%s",
			 log_q("decisions are not forced: a crash may lose "
			       "acknowledged commits"));
	return 0;
}

static int open_resources(struct coordinator_server *s, char *err,
			  size_t errlen)
{
	s->res = mem_calloc(s->cfg->nresources, sizeof(*s->res));
	if (s->res == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < s->cfg->nresources; i++) {
		const struct config_resource *cr = &s->cfg->resources[i];
		struct coordinator_pg_config pc;
		char why[256] = "";
		int rc;

		if (cr->driver != CONFIG_DRIVER_POSTGRES) {
			snprintf(err, errlen,
				 "resource %s: driver \"%s\" is not supported "
				 "by this coordinator yet (use \"postgres\")",
				 cr->name, config_driver_names[cr->driver]);
			return -ENOTSUP;
		}
		memset(&pc, 0, sizeof(pc));
		pc.name = cr->name;
		pc.conninfo = cr->conninfo;
		pc.pool_size = (int)cr->pool_size;
		pc.statement_timeout_ms = s->cfg->timeouts.statement_ms;
		pc.backoff_min_ms = s->cfg->timeouts.retry_initial_ms;
		pc.backoff_max_ms = s->cfg->timeouts.retry_max_ms;
		pc.row_limit = s->cfg->limits.max_rows;
		rc = coordinator_pg_open(s->loop, &pc, &s->res[i].pg, why,
					 sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "resource %s: %s", cr->name,
				 why[0] ? why : coordinator_pg_strerror(rc));
			return rc;
		}
		s->res[i].name = cr->name;
		s->nres = i + 1;
	}
	return 0;
}

int coordinator_server_new(struct uv_loop_s *loop,
			   const struct config_node *cfg,
			   struct coordinator_server **out, char *err,
			   size_t errlen)
{
	struct coordinator_server *s;
	struct coordinator_engine_config ec;
	uint64_t backoff[8];
	size_t nb = 0;
	int rc;

	s = mem_calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->cfg = cfg;
	s->started_at = uv_now(loop);
	for (uint64_t d = cfg->timeouts.retry_initial_ms;
	     nb < 8 && d < cfg->timeouts.retry_max_ms; d *= 2)
		backoff[nb++] = d ? d : 1;
	if (nb < 8)
		backoff[nb++] = cfg->timeouts.retry_max_ms;
	memset(&ec, 0, sizeof(ec));
	ec.cluster = cfg->cluster_id;
	ec.protocol = COORDINATOR_PROTO_2PC_PA;
	ec.timeout_ms = cfg->timeouts.prepare_ms;
	ec.backoff_ms = backoff;
	ec.nbackoff = nb;
	ec.free_stmts = coordinator_stmts_free;
	ec.pipeline_prepare = true; /* one round trip for phase 1 */
	rc = coordinator_engine_new(&ec, &s->engine);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create engine: %s",
			 coordinator_strerror(rc));
		goto err_free;
	}
	rc = metrics_setup(s);
	if (rc < 0) {
		snprintf(err, errlen, "cannot register metrics: out of memory");
		goto err_free;
	}
	rc = open_log(s, err, errlen);
	if (rc < 0)
		goto err_free;
	rc = open_resources(s, err, errlen);
	if (rc < 0)
		goto err_free;
	uv_timer_init(loop, &s->prune);
	s->prune.data = s;
	uv_timer_start(&s->prune, prune_tick, PRUNE_EVERY_MS, PRUNE_EVERY_MS);
	s->prune_started = true;
	uv_prepare_init(loop, &s->logq_prepare);
	uv_check_init(loop, &s->logq_check);
	s->logq_prepare.data = s;
	s->logq_check.data = s;
	s->logq_started = true;
	*out = s;
	return 0;
err_free:
	/* Nothing async has started yet except resources' first connects,
	 * which coordinator_pg_close cancels. */
	for (size_t i = 0; i < s->nres; i++)
		coordinator_pg_close(s->res[i].pg, NULL, NULL);
	mem_free(s->res);
	if (s->log_open)
		coordinator_log_close(&s->log);
	metrics_registry_free(s->reg);
	coordinator_engine_free(s->engine);
	coordinator_fx_clear(&s->spare_fx);
	jsonw_free(&s->answer);
	mem_free(s);
	return rc;
}

void coordinator_server_http_handler(struct http_request *req, void *data);

int coordinator_server_listen(struct coordinator_server *s, char *err,
			      size_t errlen)
{
	struct http_server_opts o;
	int rc;

	memset(&o, 0, sizeof(o));
	o.max_body_bytes = s->cfg->limits.max_body_bytes;
	rc = http_server_start(s->loop, s->cfg->listen_http, &o,
			       coordinator_server_http_handler, s, &s->http);
	if (rc < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s",
			 s->cfg->listen_http, http_strerror(rc));
		return rc;
	}
	log_info("coordinator", "listening", "http=%s port=%d",
		 log_q(s->cfg->listen_http), http_server_port(s->http));
	return 0;
}

int coordinator_server_port(const struct coordinator_server *s)
{
	return s->http ? http_server_port(s->http) : -1;
}

size_t coordinator_server_clients(const struct coordinator_server *s)
{
	return s->clients;
}

void coordinator_server_client_waiting(struct coordinator_server *s)
{
	s->clients++;
}

void coordinator_server_client_answered(struct coordinator_server *s)
{
	if (s->clients > 0)
		s->clients--;
}

static void close_step(void *data)
{
	struct coordinator_server *s = data;

	if (--s->pending_closes == 0 && s->on_closed != NULL)
		s->on_closed(s->closed_data);
}

static void prune_closed(uv_handle_t *h)
{
	close_step(h->data);
}

void coordinator_server_close(struct coordinator_server *s,
			      void (*cb)(void *data), void *data)
{
	flush_logs(s); /* from now on appends go straight to the log */
	s->closing = true;
	s->on_closed = cb;
	s->closed_data = data;
	s->pending_closes = 1; /* held until this function ends */
	while (s->timers != NULL)
		timer_unlink(s->timers);
	if (s->logq_started) {
		s->pending_closes += 2;
		uv_close((uv_handle_t *)&s->logq_prepare, prune_closed);
		uv_close((uv_handle_t *)&s->logq_check, prune_closed);
	}
	if (s->prune_started) {
		s->pending_closes++;
		uv_close((uv_handle_t *)&s->prune, prune_closed);
	}
	if (s->http != NULL) {
		s->pending_closes++;
		http_server_stop(s->http, close_step);
		s->http = NULL;
	}
	for (size_t i = 0; i < s->nres; i++) {
		s->pending_closes++;
		coordinator_pg_close(s->res[i].pg, close_step, s);
	}
	close_step(s);
}

void coordinator_server_free(struct coordinator_server *s)
{
	if (s == NULL)
		return;
	if (s->log_open)
		coordinator_log_close(&s->log);
	coordinator_engine_free(s->engine);
	metrics_registry_free(s->reg);
	coordinator_fx_clear(&s->spare_fx);
	jsonw_free(&s->answer);
	mem_free(s->res);
	mem_free(s);
}
