/*
 * engine_fx.c - the engine's effect list, client replies, and the names of
 * everything the coordinator's public header enumerates (errors, states,
 * protocols, effects, metrics).
 */
#include "common/common.h"
#include "coordinator/coordinator.h"
#include "wal/wal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const error_text[] = {
#define COORDINATOR_TEXT(name, text) text,
    COORDINATOR_ERRORS(COORDINATOR_TEXT)
#undef COORDINATOR_TEXT
};

const char *coordinator_strerror(int code)
{
	if (code == 0)
		return "success";
	if (code > COORDINATOR_EBASE && code < COORDINATOR_ELAST)
		return error_text[code - COORDINATOR_EBASE - 1];
	if (code <= -7001 && code >= -7099)
		return wal_strerror(code);
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

const char *coordinator_protocol_name(enum coordinator_protocol p)
{
	switch (p) {
	case COORDINATOR_PROTO_DEFAULT:
		return "default";
	case COORDINATOR_PROTO_2PC_PA:
		return "2pc-pa";
	case COORDINATOR_PROTO_2PC_PN:
		return "2pc-pn";
	}
	return "unknown";
}

int coordinator_protocol_parse(const char *s, enum coordinator_protocol *out)
{
	if (s == NULL)
		return COORDINATOR_EBAD_PROTOCOL;
	if (strcmp(s, "2pc-pa") == 0 || strcmp(s, "2pc") == 0)
		*out = COORDINATOR_PROTO_2PC_PA;
	else if (strcmp(s, "2pc-pn") == 0)
		*out = COORDINATOR_PROTO_2PC_PN;
	else if (strcmp(s, "default") == 0)
		*out = COORDINATOR_PROTO_DEFAULT;
	else
		return COORDINATOR_EBAD_PROTOCOL;
	return 0;
}

static const char *const txn_state_names[COORDINATOR_TXN_NSTATES] = {
    "active", "preparing", "committing", "aborting", "in_doubt", "done",
};

const char *coordinator_txn_state_name(enum coordinator_txn_state s)
{
	if ((unsigned)s >= COORDINATOR_TXN_NSTATES)
		return "unknown";
	return txn_state_names[s];
}

int coordinator_txn_state_parse(const char *s, enum coordinator_txn_state *out)
{
	for (int i = 0; s != NULL && i < COORDINATOR_TXN_NSTATES; i++) {
		if (strcmp(s, txn_state_names[i]) == 0) {
			*out = (enum coordinator_txn_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *coordinator_outcome_name(enum coordinator_outcome o)
{
	switch (o) {
	case COORDINATOR_OUTCOME_PENDING:
		return "pending";
	case COORDINATOR_OUTCOME_COMMITTED:
		return "committed";
	case COORDINATOR_OUTCOME_ABORTED:
		return "aborted";
	case COORDINATOR_OUTCOME_UNKNOWN:
		return "unknown";
	}
	return "unknown";
}

const char *coordinator_branch_state_name(enum coordinator_branch_state s)
{
	static const char *const names[] = {
	    "running",	  "ran",       "failed",       "preparing",
	    "prepared",	  "read_only", "voted_no",     "lost",
	    "committing", "committed", "rolling_back", "rolled_back",
	    "retry_wait", "unknown",
	};

	if ((unsigned)s >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[s];
}

const char *coordinator_fx_name(enum coordinator_fx_type t)
{
	static const char *const names[] = {
	    "run",
	    "prepare",
	    "commit_one_phase",
	    "rollback_local",
	    "commit_prepared",
	    "rollback_prepared",
	    "log",
	    "set_timer",
	    "cancel_timer",
	    "reply",
	    "metric",
	    "cancel_run",
	};

	if ((unsigned)t >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[t];
}

const char *coordinator_metric_name(enum coordinator_metric m)
{
	static const char *const names[] = {
	    "txn_begun",      "txn_committed",	"txn_aborted", "txn_unknown",
	    "prepare_ms",     "phase2_ms",	"log_write",   "phase2_retry",
	    "in_doubt_enter", "in_doubt_leave",
	};

	if ((unsigned)m >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[m];
}

void coordinator_fx_init(struct coordinator_fx *fx)
{
	memset(fx, 0, sizeof(*fx));
}

void coordinator_fx_reset(struct coordinator_fx *fx)
{
	for (size_t i = 0; i < fx->n; i++) {
		coordinator_record_free(fx->v[i].rec);
		coordinator_reply_free(fx->v[i].reply);
	}
	fx->n = 0;
}

void coordinator_fx_clear(struct coordinator_fx *fx)
{
	coordinator_fx_reset(fx);
	mem_free(fx->v);
	memset(fx, 0, sizeof(*fx));
}

size_t coordinator_fx_count(const struct coordinator_fx *fx,
			    enum coordinator_fx_type t, bool only_forced)
{
	size_t n = 0;

	for (size_t i = 0; i < fx->n; i++) {
		if (fx->v[i].type == t && (!only_forced || fx->v[i].forced))
			n++;
	}
	return n;
}

struct coordinator_reply *coordinator_reply_new(const struct coordinator_txn *x,
						uint64_t client)
{
	struct coordinator_reply *r = mem_calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	if (x->nbranches > 0) {
		r->branches = mem_calloc(x->nbranches, sizeof(*r->branches));
		if (r->branches == NULL) {
			mem_free(r);
			return NULL;
		}
	}
	r->client = client;
	str_copy(r->txn, sizeof(r->txn), x->id);
	r->protocol = x->protocol;
	r->state = x->state;
	r->outcome = x->outcome;
	r->error = x->error;
	r->err_branch = x->err_branch;
	if (x->err_branch >= 0 && (size_t)x->err_branch < x->nbranches)
		str_copy(r->sqlstate, sizeof(r->sqlstate),
			 x->branches[x->err_branch].sqlstate);
	str_copy(r->errmsg, sizeof(r->errmsg), x->errmsg);
	r->begun_at = x->begun_at;
	r->decided_at = x->decided_at;
	r->done_at = x->done_at;
	r->nbranches = x->nbranches;
	for (size_t i = 0; i < x->nbranches; i++) {
		const struct coordinator_branch *b = &x->branches[i];
		struct coordinator_branch_status *s = &r->branches[i];

		str_copy(s->resource, sizeof(s->resource), b->resource);
		str_copy(s->gid, sizeof(s->gid), b->gid);
		s->state = b->state;
		str_copy(s->sqlstate, sizeof(s->sqlstate), b->sqlstate);
		str_copy(s->message, sizeof(s->message), b->message);
	}
	return r;
}

void coordinator_reply_free(struct coordinator_reply *r)
{
	if (r == NULL)
		return;
	mem_free(r->branches);
	mem_free(r);
}
