/*
 * api.c - the coordinator's HTTP/1.1 JSON API (docs/api.md).
 *
 *   POST /v1/txns              create and run a transaction
 *   GET  /v1/txns/{id}         one transaction (txn id or branch gid)
 *   GET  /v1/txns?state=S      list (active, preparing, committing,
 *                              aborting, in_doubt, done; none: all)
 *   GET  /v1/txns?idempotency_key=K
 *   GET  /metrics              Prometheus text
 *   GET  /healthz              liveness and readiness
 *
 * Every request is checked in full before anything changes: a bad request
 * gets a 4xx with {"error": {"code": ..., "message": ...}} and the engine
 * never sees it.
 */
#include "coordinator/coordinator.h"
#include "coordinator/server.h"
#include "coordinator/stmts.h"

#include "common/common.h"
#include "common/config.h"
#include "common/http.h"
#include "common/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 10000

static void respond_error(struct http_request *req, int status,
			  const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void respond_error(struct http_request *req, int status,
			  const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_respond_json(req, status,
			  json_pack("{s:{s:s,s:s}}", "error", "code", code,
				    "message", msg));
}

/* ------------------------------------------------------------ replies */

/* A stable token for why a transaction aborted or is unknown: clients match
 * on it ("reason" carries the readable text). */
static const char *error_token(int code)
{
	switch (code) {
	case COORDINATOR_ESTATEMENT:
		return "statement_failed";
	case COORDINATOR_EVOTE_NO:
		return "vote_no";
	case COORDINATOR_EPREPARE_LOST:
		return "prepare_lost";
	case COORDINATOR_ETIMEOUT:
		return "timeout";
	case COORDINATOR_ECOMMIT_FAILED:
		return "commit_failed";
	case COORDINATOR_ECOMMIT_UNKNOWN:
		return "commit_unknown";
	case COORDINATOR_ELOG_FAILED:
		return "log_failed";
	case -ENOMEM:
		return "internal";
	default:
		return "aborted";
	}
}

static void branch_write(struct jsonw *w,
			 const struct coordinator_branch_status *b,
			 const struct coordinator_stmts *st)
{
	jsonw_begin_object(w);
	jsonw_kv_string(w, "resource", b->resource);
	jsonw_kv_string(w, "gid", b->gid);
	jsonw_kv_string(w, "state", coordinator_branch_state_name(b->state));
	if (st != NULL) {
		/* (Results that ran out of memory are left out.) */
		jsonw_key(w, "results");
		jsonw_begin_array(w);
		if (jsonw_ok(&st->results))
			jsonw_items(w, st->results.p, st->results.len);
		jsonw_end_array(w);
	}
	if (b->sqlstate[0] != '\0')
		jsonw_kv_string(w, "sqlstate", b->sqlstate);
	if (b->message[0] != '\0')
		jsonw_kv_string(w, "message", b->message);
	jsonw_end_object(w);
}

void coordinator_server_reply_write(struct coordinator_server *s,
				    const struct coordinator_reply *r,
				    struct jsonw *w)
{
	struct coordinator_txn *x = coordinator_table_find(
		coordinator_engine_table(coordinator_server_engine(s)), r->txn);

	jsonw_begin_object(w);
	jsonw_kv_string(w, "gid", r->txn);
	jsonw_kv_string(w, "state", coordinator_txn_state_name(r->state));
	jsonw_kv_string(w, "outcome", coordinator_outcome_name(r->outcome));
	jsonw_kv_string(w, "protocol", coordinator_protocol_name(r->protocol));
	if (x != NULL && x->key[0] != '\0')
		jsonw_kv_string(w, "idempotency_key", x->key);
	if (x != NULL && x->recovered) {
		jsonw_key(w, "recovered");
		jsonw_bool(w, true);
	}
	jsonw_key(w, "branches");
	jsonw_begin_array(w);
	for (size_t i = 0; i < r->nbranches; i++)
		branch_write(w, &r->branches[i],
			     x != NULL && i < x->nbranches
				 ? x->branches[i].stmts
				 : NULL);
	jsonw_end_array(w);
	if (r->error != 0) {
		jsonw_key(w, "error");
		jsonw_begin_object(w);
		jsonw_kv_string(w, "code", error_token(r->error));
		jsonw_kv_string(w, "reason", coordinator_strerror(r->error));
		jsonw_kv_string(w, "message", r->errmsg);
		if (r->err_branch >= 0 &&
		    (size_t)r->err_branch < r->nbranches) {
			jsonw_kv_int(w, "branch", r->err_branch);
			jsonw_kv_string(w, "resource",
					r->branches[r->err_branch].resource);
		}
		if (r->sqlstate[0] != '\0')
			jsonw_kv_string(w, "sqlstate", r->sqlstate);
		jsonw_end_object(w);
	}
	jsonw_key(w, "timings");
	jsonw_begin_object(w);
	if (r->decided_at >= r->begun_at && r->decided_at != 0)
		jsonw_kv_int(w, "decided_ms",
			     (long long)(r->decided_at - r->begun_at));
	if (r->done_at >= r->begun_at && r->done_at != 0)
		jsonw_kv_int(w, "done_ms",
			     (long long)(r->done_at - r->begun_at));
	jsonw_kv_int(w, "age_ms",
		     (long long)(coordinator_server_now(s) - r->begun_at));
	jsonw_end_object(w);
	jsonw_end_object(w);
}

static void respond_txn(struct coordinator_server *s, struct http_request *req,
			const struct coordinator_txn *x)
{
	struct coordinator_reply *r = coordinator_reply_new(x, 0);
	struct jsonw w;

	if (r == NULL) {
		respond_error(req, 500, "internal", "out of memory");
		return;
	}
	jsonw_init(&w);
	coordinator_server_reply_write(s, r, &w);
	coordinator_reply_free(r);
	http_respond_jsonw(req, 200, &w);
	jsonw_free(&w);
}

/* ------------------------------------------------------ POST /v1/txns */

struct parsed_txn {
	struct coordinator_branch_req br[COORDINATOR_BRANCHES_MAX];
	struct coordinator_stmts *st[COORDINATOR_BRANCHES_MAX];
	size_t n;
	struct coordinator_begin begin;
	char key[COORDINATOR_KEY_MAX + 1];
};

static void parsed_free(struct parsed_txn *p)
{
	for (size_t i = 0; i < p->n; i++)
		coordinator_stmts_free(p->st[i]);
	p->n = 0;
}

static bool only_keys(const struct jsonr_node *o, const char *const *keys,
		      char *err, size_t errlen, const char *where)
{
	const struct jsonr_node *v;
	size_t n;

	jsonr_foreach(o, n, v)
	{
		bool ok = false;

		for (size_t i = 0; keys[i] != NULL; i++)
			ok = ok || strcmp(v->key, keys[i]) == 0;
		if (!ok) {
			snprintf(err, errlen, "%s%sunknown key \"%s\"", where,
				 where[0] != '\0' ? ": " : "", v->key);
			return false;
		}
	}
	return true;
}

static int parse_branch(struct coordinator_server *s,
			const struct jsonr_node *b, size_t i,
			struct parsed_txn *p, char *err, size_t errlen)
{
	static const char *const keys[] = {"resource", "statements",
					   "read_only", NULL};
	char where[32];
	const struct jsonr_node *res, *ro;
	int rc;

	coordinator_where(where, sizeof(where), "", "branches", i);
	if (!jsonr_is(b, JSONR_OBJECT)) {
		snprintf(err, errlen, "%s: must be an object", where);
		return -EINVAL;
	}
	if (!only_keys(b, keys, err, errlen, where))
		return -EINVAL;
	res = jsonr_get(b, "resource");
	if (!jsonr_is(res, JSONR_STRING)) {
		snprintf(err, errlen, "%s.resource: must be a string", where);
		return -EINVAL;
	}
	if (!coordinator_server_has_resource(s, res->v.s)) {
		snprintf(err, errlen, "%s.resource: unknown resource \"%.64s\"",
			 where, res->v.s);
		return -ENODEV;
	}
	ro = jsonr_get(b, "read_only");
	if (ro != NULL && !jsonr_is_bool(ro)) {
		snprintf(err, errlen, "%s.read_only: must be a boolean", where);
		return -EINVAL;
	}
	/* Checked before the statements are parsed: p->n does not count
	 * this branch yet, so its statements would leak on this error. */
	for (size_t j = 0; j < i; j++) {
		if (strcmp(p->br[j].resource, res->v.s) == 0) {
			/* Both branches would wait on one pool and on each
			 * other's locks: one branch per resource. */
			snprintf(
			    err, errlen,
			    "%s.resource: \"%.64s\" is already branch %zu; "
			    "put all of a resource's statements in one branch",
			    where, res->v.s, j);
			return -EINVAL;
		}
	}
	rc = coordinator_stmts_parse(jsonr_get(b, "statements"), where,
				     &p->st[i], err, errlen);
	if (rc < 0)
		return rc;
	p->br[i].resource = res->v.s;
	p->br[i].stmts = p->st[i];
	p->br[i].read_only = ro == NULL ? COORDINATOR_HINT_UNKNOWN
			     : jsonr_is(ro, JSONR_TRUE)
				 ? COORDINATOR_HINT_READ_ONLY
				 : COORDINATOR_HINT_WRITES;
	p->n = i + 1;
	return 0;
}

static int parse_txn(struct coordinator_server *s,
		     const struct jsonr_node *root, const char *header_key,
		     struct parsed_txn *p, char *err, size_t errlen)
{
	static const char *const keys[] = {"branches", "protocol", "timeout_ms",
					   "idempotency_key", NULL};
	const struct config_node *cfg = coordinator_server_config(s);
	const struct jsonr_node *branches, *proto, *tmo, *key, *b;
	size_t i;
	const char *k = header_key;
	int rc;

	/* (Not all of *p: the branches it fills are set in full.) */
	p->n = 0;
	memset(&p->begin, 0, sizeof(p->begin));
	p->key[0] = '\0';
	if (!jsonr_is(root, JSONR_OBJECT)) {
		snprintf(err, errlen, "the body must be a JSON object");
		return -EINVAL;
	}
	if (!only_keys(root, keys, err, errlen, ""))
		return -EINVAL;
	branches = jsonr_get(root, "branches");
	if (!jsonr_is(branches, JSONR_ARRAY) || jsonr_size(branches) == 0) {
		snprintf(err, errlen, "branches: must be a non-empty array");
		return -EINVAL;
	}
	if (jsonr_size(branches) > cfg->limits.max_branches ||
	    jsonr_size(branches) > COORDINATOR_BRANCHES_MAX) {
		snprintf(err, errlen, "branches: at most %u branches",
			 cfg->limits.max_branches < COORDINATOR_BRANCHES_MAX
				 ? cfg->limits.max_branches
				 : COORDINATOR_BRANCHES_MAX);
		return -E2BIG;
	}
	proto = jsonr_get(root, "protocol");
	if (proto != NULL &&
	    (!jsonr_is(proto, JSONR_STRING) ||
	     coordinator_protocol_parse(proto->v.s, &p->begin.protocol) < 0)) {
		snprintf(err, errlen,
			 "protocol: must be \"2pc-pa\" or \"2pc-pn\"");
		return -EINVAL;
	}
	tmo = jsonr_get(root, "timeout_ms");
	if (tmo != NULL &&
	    (!jsonr_is(tmo, JSONR_INT) || tmo->v.i < 1 || tmo->v.i > 3600000)) {
		snprintf(err, errlen,
			 "timeout_ms: must be an integer from 1 to 3600000");
		return -EINVAL;
	}
	key = jsonr_get(root, "idempotency_key");
	if (key != NULL && !jsonr_is(key, JSONR_STRING)) {
		snprintf(err, errlen, "idempotency_key: must be a string");
		return -EINVAL;
	}
	if (key != NULL) {
		if (k != NULL && strcmp(k, key->v.s) != 0) {
			snprintf(err, errlen,
				 "idempotency_key: differs from the "
				 "Idempotency-Key header");
			return -EINVAL;
		}
		k = key->v.s;
	}
	if (k != NULL && (strlen(k) == 0 || strlen(k) > COORDINATOR_KEY_MAX)) {
		snprintf(err, errlen, "idempotency_key: 1 to %d bytes",
			 COORDINATOR_KEY_MAX);
		return -EINVAL;
	}
	if (k != NULL)
		str_copy(p->key, sizeof(p->key), k);
	jsonr_foreach(branches, i, b)
	{
		rc = parse_branch(s, b, i, p, err, errlen);
		if (rc < 0) {
			parsed_free(p);
			return rc;
		}
	}
	p->begin.timeout_ms = tmo ? (uint64_t)tmo->v.i : 0;
	p->begin.key = p->key[0] ? p->key : NULL;
	p->begin.nbranches = p->n;
	p->begin.branches = p->br;
	return 0;
}

static void post_txn(struct coordinator_server *s, struct http_request *req)
{
	const struct config_node *cfg = coordinator_server_config(s);
	struct coordinator_engine *e = coordinator_server_engine(s);
	struct parsed_txn parsed, *p = &parsed;
	struct coordinator_fx fx;
	struct jsonr_error jerr;
	struct jsonr_doc doc;
	char err[512], id[COORDINATOR_GID_SIZE];
	int rc;

	/* Any Content-Type is taken (curl -d sends a form type): the body
	 * itself must be JSON, which is checked next. */
	rc = jsonr_parse(&doc, req->body, req->body_len, &jerr);
	if (rc < 0) {
		jsonr_free(&doc);
		if (rc == -ENOMEM)
			respond_error(req, 500, "internal", "out of memory");
		else
			respond_error(req, 400, "bad_json",
				      "malformed JSON at line %d column %d: %s",
				      jerr.line, jerr.column, jerr.text);
		return;
	}
	rc = parse_txn(s, jsonr_root(&doc), req->idempotency_key, p, err,
		       sizeof(err));
	if (rc < 0) {
		jsonr_free(&doc);
		if (rc == -ENOMEM)
			respond_error(req, 500, "internal", "out of memory");
		else
			respond_error(req, rc == -E2BIG ? 413 : 400,
				      rc == -ENODEV ? "unknown_resource"
				      : rc == -E2BIG ? "too_many_branches"
						     : "bad_request",
				      "%s", err);
		return;
	}
	if (coordinator_server_clients(s) >= cfg->limits.max_concurrency) {
		parsed_free(p);
		jsonr_free(&doc);
		http_respond_header(req, "Retry-After", "1");
		respond_error(req, 429, "too_busy",
			      "at most %u transactions may wait at once",
			      cfg->limits.max_concurrency);
		return;
	}
	p->begin.client = (uint64_t)(uintptr_t)req;
	coordinator_server_fx_init(s, &fx);
	rc = coordinator_engine_begin(e, &p->begin,
				      coordinator_server_now(s), &fx, id,
				      sizeof(id));
	jsonr_free(&doc); /* resource names were copied by the engine */
	if (rc == 0)
		p->n = 0; /* the engine owns the statements now */
	parsed_free(p);
	if (rc < 0) {
		coordinator_fx_clear(&fx);
		if (rc == COORDINATOR_ENOT_READY ||
		    rc == COORDINATOR_ELOG_FAILED) {
			http_respond_header(req, "Retry-After", "1");
			respond_error(req, 503, "unavailable", "%s",
				      coordinator_strerror(rc));
		} else {
			respond_error(req, rc == -ENOMEM ? 500 : 400,
				      rc == -ENOMEM ? "internal" : "bad_request",
				      "%s",
				      coordinator_engine_errmsg(e)[0]
					      ? coordinator_engine_errmsg(e)
					      : coordinator_strerror(rc));
		}
		return;
	}
	coordinator_server_client_waiting(s);
	coordinator_server_apply(s, &fx);
}

/* ---------------------------------------------------------- GET lists */

struct list_ctx {
	struct coordinator_server *s;
	struct jsonw w;
	size_t count;
	size_t limit;
};

static int list_visit(void *arg, const struct coordinator_txn *x)
{
	struct list_ctx *c = arg;
	struct coordinator_reply *r;

	if (c->count >= c->limit)
		return 1;
	r = coordinator_reply_new(x, 0);
	if (r == NULL)
		return 1;
	coordinator_server_reply_write(c->s, r, &c->w);
	coordinator_reply_free(r);
	c->count++;
	return 0;
}

static void get_list(struct coordinator_server *s, struct http_request *req)
{
	struct coordinator_table *t =
		coordinator_engine_table(coordinator_server_engine(s));
	const char *state = http_request_param(req, "state");
	const char *key = http_request_param(req, "idempotency_key");
	const char *limit = http_request_param(req, "limit");
	enum coordinator_txn_state st = COORDINATOR_TXN_ACTIVE;
	struct list_ctx c = {.s = s, .limit = LIST_LIMIT_DEFAULT};
	struct jsonw w;

	if (key != NULL) {
		struct coordinator_txn *x = coordinator_table_find_key(t, key);

		if (x == NULL)
			respond_error(req, 404, "not_found",
				      "no transaction with idempotency key "
				      "\"%.128s\"",
				      key);
		else
			respond_txn(s, req, x);
		return;
	}
	if (state != NULL && coordinator_txn_state_parse(state, &st) < 0) {
		respond_error(req, 400, "bad_request",
			      "state: must be one of active, preparing, "
			      "committing, aborting, in_doubt, done");
		return;
	}
	if (limit != NULL) {
		char *end;
		long v = strtol(limit, &end, 10);

		if (*limit == '\0' || *end != '\0' || v < 1 ||
		    v > LIST_LIMIT_MAX) {
			respond_error(req, 400, "bad_request",
				      "limit: an integer from 1 to %d",
				      LIST_LIMIT_MAX);
			return;
		}
		c.limit = (size_t)v;
	}
	/* The listed transactions as top-level items, then the answer
	 * around them. */
	jsonw_init(&c.w);
	coordinator_table_list(t, st, state == NULL, list_visit, &c);
	if (!jsonw_ok(&c.w)) {
		jsonw_free(&c.w);
		respond_error(req, 500, "internal", "out of memory");
		return;
	}
	jsonw_init(&w);
	jsonw_begin_object(&w);
	jsonw_key(&w, "txns");
	jsonw_begin_array(&w);
	jsonw_items(&w, c.w.p, c.w.len);
	jsonw_end_array(&w);
	jsonw_kv_int(&w, "count", (long long)c.count);
	jsonw_end_object(&w);
	http_respond_jsonw(req, 200, &w);
	jsonw_free(&w);
	jsonw_free(&c.w);
}

static void get_one(struct coordinator_server *s, struct http_request *req,
		    const char *id)
{
	struct coordinator_table *t =
		coordinator_engine_table(coordinator_server_engine(s));
	struct coordinator_gid g;
	struct coordinator_txn *x;
	char dec[COORDINATOR_GID_SIZE];
	size_t n;

	if (strlen(id) >= sizeof(dec) ||
	    http_url_decode(id, strlen(id), false, dec, &n) < 0 ||
	    (coordinator_txnid_parse(dec, &g) < 0 &&
	     coordinator_gid_parse(dec, &g) < 0)) {
		respond_error(req, 400, "bad_request",
			      "not a transaction id or gid: want "
			      "<cluster>_<epoch>_<seq>[_<k>of<n>]");
		return;
	}
	x = coordinator_table_find(t, dec);
	if (x == NULL) {
		respond_error(
		    req, 404, "not_found",
		    "no transaction %s is known here (finished ones "
		    "are kept for 10 minutes, at most %u of them)",
		    dec, coordinator_server_config(s)->limits.max_finished);
		return;
	}
	respond_txn(s, req, x);
}

/* ------------------------------------------------- metrics and health */

static void get_metrics(struct coordinator_server *s, struct http_request *req)
{
	char *text;
	size_t len;

	if (metrics_registry_render(coordinator_server_metrics(s), &text,
				    &len) < 0) {
		respond_error(req, 500, "internal", "out of memory");
		return;
	}
	http_respond(req, 200, "text/plain; version=0.0.4", text, len);
	mem_free(text);
}

static void get_health(struct coordinator_server *s, struct http_request *req)
{
	struct coordinator_engine *e = coordinator_server_engine(s);
	struct coordinator_table *t = coordinator_engine_table(e);
	bool failed = coordinator_engine_is_failed(e);
	bool ready = coordinator_table_is_ready(t);
	json_t *o;

	o = json_pack("{s:s,s:b,s:s,s:s,s:I}", "status",
		      failed ? "failed" : ready ? "ok" : "starting", "ready",
		      ready && !failed, "node",
		      coordinator_server_config(s)->node_id, "cluster",
		      coordinator_server_config(s)->cluster_id, "epoch",
		      (json_int_t)coordinator_table_epoch(t));
	http_respond_json(req, failed || !ready ? 503 : 200, o);
}

/* ------------------------------------------------------------- router */

void coordinator_server_http_handler(struct http_request *req, void *data)
{
	struct coordinator_server *s = data;
	const char *path = req->path;
	bool get = strcmp(req->method, "GET") == 0;
	bool post = strcmp(req->method, "POST") == 0;

	if (strcmp(path, "/v1/txns") == 0) {
		if (post)
			post_txn(s, req);
		else if (get)
			get_list(s, req);
		else
			goto not_allowed;
	} else if (strncmp(path, "/v1/txns/", 9) == 0 && path[9] != '\0') {
		if (!get)
			goto not_allowed;
		get_one(s, req, path + 9);
	} else if (strcmp(path, "/metrics") == 0) {
		if (!get)
			goto not_allowed;
		get_metrics(s, req);
	} else if (strcmp(path, "/healthz") == 0) {
		if (!get)
			goto not_allowed;
		get_health(s, req);
	} else {
		respond_error(req, 404, "not_found", "no such endpoint: %.100s",
			      path);
	}
	return;
not_allowed:
	http_respond_header(req, "Allow",
			    strcmp(path, "/v1/txns") == 0 ? "GET, POST" : "GET");
	respond_error(req, 405, "method_not_allowed",
		      "%.16s is not allowed on %.100s", req->method, path);
}
