/*
 * test_coord_harness.h - helpers shared by the coordinator engine tests:
 * making a ready engine, finding effects, and building events.  Included by
 * tests/unit/test_coord_*.c only (static functions, one copy per program).
 */
#ifndef DECREE_TEST_COORD_HARNESS_H
#define DECREE_TEST_COORD_HARNESS_H

#include "common/common.h"
#include "coordinator/coordinator.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

static const uint64_t test_backoff[] = {10, 20, 40};

/* A new engine (log_aborts: Raft mode; pipeline: pipeline_prepare) whose
 * epoch (1) is durable; fx is cleared. */
static inline struct coordinator_engine *
ready_engine_opts(enum coordinator_protocol proto, bool log_aborts,
		  bool pipeline, struct coordinator_fx *fx)
{
	struct coordinator_engine_config cfg = {
	    .cluster = "bank",
	    .protocol = proto,
	    .timeout_ms = 1000,
	    .backoff_ms = test_backoff,
	    .nbackoff = 3,
	    .log_aborts = log_aborts,
	    .pipeline_prepare = pipeline,
	};
	struct coordinator_recovery *r;
	struct coordinator_engine *e;
	struct coordinator_event ev;

	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	coordinator_fx_init(fx);
	ck_assert_int_eq(coordinator_engine_recover(e, r, 0, fx), 0);
	coordinator_recovery_free(r);
	ck_assert_uint_eq(fx->n, 2); /* epoch record, its metric */
	ck_assert_int_eq(fx->v[0].type, COORDINATOR_FX_LOG);
	ck_assert(fx->v[0].forced);
	ck_assert_int_eq(fx->v[0].rec->type, COORDINATOR_REC_EPOCH);
	ck_assert_uint_eq(fx->v[0].rec->epoch, 1);
	memset(&ev, 0, sizeof(ev));
	ev.type = COORDINATOR_EV_LOG;
	ev.token = fx->v[0].token;
	coordinator_fx_clear(fx);
	ck_assert(!coordinator_table_is_ready(coordinator_engine_table(e)));
	ck_assert_int_eq(coordinator_engine_step(e, &ev, 0, fx), 0);
	ck_assert(coordinator_table_is_ready(coordinator_engine_table(e)));
	coordinator_fx_clear(fx);
	return e;
}

static inline struct coordinator_engine *
ready_engine_mode(enum coordinator_protocol proto, bool log_aborts,
		  struct coordinator_fx *fx)
{
	return ready_engine_opts(proto, log_aborts, false, fx);
}

static inline struct coordinator_engine *
ready_engine(enum coordinator_protocol proto, struct coordinator_fx *fx)
{
	return ready_engine_mode(proto, false, fx);
}

/* The i-th effect of type t (0-based), or NULL. */
static inline struct coordinator_effect *fx_find(struct coordinator_fx *fx,
						 enum coordinator_fx_type t,
						 int branch, size_t nth)
{
	for (size_t i = 0; i < fx->n; i++) {
		if (fx->v[i].type != t)
			continue;
		if (branch != -2 && fx->v[i].branch != branch)
			continue;
		if (nth-- == 0)
			return &fx->v[i];
	}
	return NULL;
}

static inline size_t fx_count_type(struct coordinator_fx *fx,
				   enum coordinator_fx_type t)
{
	return coordinator_fx_count(fx, t, false);
}

static inline struct coordinator_event ev_make(enum coordinator_ev_type type,
					       const char *txn, int branch)
{
	struct coordinator_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	snprintf(ev.txn, sizeof(ev.txn), "%s", txn);
	ev.branch = branch;
	return ev;
}

static inline int feed(struct coordinator_engine *e,
		       struct coordinator_event ev, uint64_t now,
		       struct coordinator_fx *fx)
{
	return coordinator_engine_step(e, &ev, now, fx);
}

static inline int feed_ran(struct coordinator_engine *e, const char *txn, int b,
			   enum coordinator_status st, const char *sqlstate,
			   const char *msg, struct coordinator_fx *fx)
{
	struct coordinator_event ev = ev_make(COORDINATOR_EV_RAN, txn, b);

	ev.status = st;
	snprintf(ev.sqlstate, sizeof(ev.sqlstate), "%s",
		 sqlstate ? sqlstate : "");
	snprintf(ev.message, sizeof(ev.message), "%s", msg ? msg : "");
	return coordinator_engine_step(e, &ev, 10, fx);
}

static inline int feed_vote(struct coordinator_engine *e, const char *txn,
			    int b, enum coordinator_vote v,
			    struct coordinator_fx *fx)
{
	struct coordinator_event ev = ev_make(COORDINATOR_EV_VOTED, txn, b);

	ev.vote = v;
	if (v == COORDINATOR_VOTE_NO) {
		snprintf(ev.sqlstate, sizeof(ev.sqlstate), "40001");
		snprintf(ev.message, sizeof(ev.message),
			 "could not serialize access");
	}
	return coordinator_engine_step(e, &ev, 20, fx);
}

static inline int feed_p2(struct coordinator_engine *e,
			  enum coordinator_ev_type t, const char *txn, int b,
			  enum coordinator_status st, uint64_t now,
			  struct coordinator_fx *fx)
{
	struct coordinator_event ev = ev_make(t, txn, b);

	ev.status = st;
	if (st == COORDINATOR_ST_ERROR) {
		snprintf(ev.sqlstate, sizeof(ev.sqlstate), "08006");
		snprintf(ev.message, sizeof(ev.message), "connection failure");
	}
	return coordinator_engine_step(e, &ev, now, fx);
}

/* Completes the log effect found in fx with status. */
static inline int feed_log(struct coordinator_engine *e,
			   const struct coordinator_effect *f, int status,
			   uint64_t now, struct coordinator_fx *fx)
{
	struct coordinator_event ev = ev_make(COORDINATOR_EV_LOG, f->txn, -1);

	ev.token = f->token;
	ev.log_status = status;
	return coordinator_engine_step(e, &ev, now, fx);
}

static inline int feed_timer(struct coordinator_engine *e,
			     const struct coordinator_effect *f, uint64_t now,
			     struct coordinator_fx *fx)
{
	struct coordinator_event ev =
	    ev_make(COORDINATOR_EV_TIMER, f->txn, f->branch);

	ev.timer_id = f->timer_id;
	return coordinator_engine_step(e, &ev, now, fx);
}

/* Begins a transaction over n branches named r1..rn. */
static inline int begin_n(struct coordinator_engine *e, size_t n,
			  enum coordinator_protocol proto, const char *key,
			  uint64_t client, const enum coordinator_hint *hints,
			  struct coordinator_fx *fx, char *id)
{
	struct coordinator_branch_req br[COORDINATOR_BRANCHES_MAX + 1];
	char names[COORDINATOR_BRANCHES_MAX + 1][8];
	struct coordinator_begin req;

	for (size_t i = 0; i < n && i <= COORDINATOR_BRANCHES_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "r%zu", i + 1);
		br[i].resource = names[i];
		br[i].stmts = NULL;
		br[i].read_only = hints ? hints[i] : COORDINATOR_HINT_UNKNOWN;
	}
	memset(&req, 0, sizeof(req));
	req.client = client;
	req.protocol = proto;
	req.key = key;
	req.nbranches = n;
	req.branches = br;
	return coordinator_engine_begin(e, &req, 0, fx, id,
					COORDINATOR_GID_SIZE);
}

#endif
