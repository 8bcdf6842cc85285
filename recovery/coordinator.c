/*
 * coordinator.c - coordinator recovery at start and the periodic reconciler
 * (recovery.h has the steps).  The decisions are the engine's
 * (coordinator_engine_recover / _reconcile, pure); this file runs them on
 * the loop against the real resources.
 *
 * State per resource: LISTING (a list request in flight), WAIT (retry timer
 * armed after a failure), RESOLVED (first pass done).  The recovery plan
 * (the replayed log) is kept until every resource is RESOLVED; after that
 * the engine's table alone answers the reconciler.
 */
#include "recovery/recovery.h"

#include "common/common.h"
#include "common/config.h"
#include "coordinator/coordinator.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

enum res_state { RES_IDLE, RES_LISTING, RES_WAIT, RES_RESOLVED };

struct rc_resource {
	struct recovery_coordinator *rc;
	const char *name;
	enum res_state state;
	bool listing; /* a list request is in flight */
	uint64_t backoff;
	uv_timer_t retry;
};

struct recovery_coordinator {
	struct coordinator_server *srv;
	struct recovery_options o;
	struct coordinator_recovery *plan; /* NULL once all resolved */
	struct rc_resource *res;
	size_t nres;
	uv_timer_t tick;
	struct recovery_stats st;
	bool stopping;
	size_t pending_closes;
	void (*on_stopped)(void *data);
	void *stopped_data;
};

static void list_now(struct rc_resource *r);

static void maybe_drop_plan(struct recovery_coordinator *rc)
{
	if (rc->plan == NULL || rc->st.resources_pending > 0)
		return;
	coordinator_recovery_free(rc->plan);
	rc->plan = NULL;
	log_info("recovery", "resolved",
		 "resources=%zu redriven=%llu committed=%llu rolled_back=%llu",
		 rc->nres, (unsigned long long)rc->st.redriven,
		 (unsigned long long)rc->st.committed,
		 (unsigned long long)rc->st.rolled_back);
}

static void retry_fired(uv_timer_t *t)
{
	list_now(t->data);
}

static void listed(const char *resource, const char *const *gids, size_t n,
		   const char *err, void *data)
{
	struct rc_resource *r = data;
	struct recovery_coordinator *rc = r->rc;
	struct coordinator_fx fx;
	size_t commits = 0;
	long issued;

	r->listing = false;
	if (rc->stopping)
		return;
	if (err != NULL) {
		log_warn("recovery", "resource_unreachable",
			 "resource=%s error=%s retry_ms=%llu", log_q(resource),
			 log_q(err), (unsigned long long)r->backoff);
		if (r->state != RES_RESOLVED) {
			r->state = RES_WAIT;
			uv_timer_start(&r->retry, retry_fired, r->backoff, 0);
			r->backoff = r->backoff * 2 > rc->o.retry_max_ms
					     ? rc->o.retry_max_ms
					     : r->backoff * 2;
		}
		return;
	}
	if (rc->plan != NULL) {
		for (size_t i = 0; i < n; i++)
			if (coordinator_recovery_classify(rc->plan, gids[i]) ==
			    COORDINATOR_ACT_COMMIT)
				commits++;
	}
	coordinator_fx_init(&fx);
	issued = coordinator_engine_reconcile(
		coordinator_server_engine(rc->srv),
		r->state == RES_RESOLVED ? NULL : rc->plan, resource, gids, n,
		coordinator_server_now(rc->srv), &fx);
	if (issued > 0) {
		size_t c = commits < (size_t)issued ? commits : (size_t)issued;

		rc->st.committed += c;
		rc->st.rolled_back += (uint64_t)issued - c;
		log_info("recovery", "resource_resolving",
			 "resource=%s prepared=%zu commit=%zu rollback=%zu "
			 "pass=%s",
			 log_q(resource), n, c, (size_t)issued - c,
			 r->state == RES_RESOLVED ? "reconcile" : "start");
	} else if (issued < 0) {
		log_warn("recovery", "reconcile_failed",
			 "resource=%s error=%s", log_q(resource),
			 log_q(coordinator_strerror((int)issued)));
	}
	coordinator_server_apply(rc->srv, &fx);
	if (r->state != RES_RESOLVED && issued >= 0) {
		r->state = RES_RESOLVED;
		rc->st.resources_pending--;
		maybe_drop_plan(rc);
	}
}

static void list_now(struct rc_resource *r)
{
	struct recovery_coordinator *rc = r->rc;
	int err;

	if (r->listing || rc->stopping)
		return;
	err = coordinator_server_list_prepared(rc->srv, r->name, listed, r);
	if (err < 0) {
		listed(r->name, NULL, 0, coordinator_pg_strerror(err), r);
		return;
	}
	r->listing = true;
	if (r->state != RES_RESOLVED)
		r->state = RES_LISTING;
}

static void tick(uv_timer_t *t)
{
	struct recovery_coordinator *rc = t->data;

	rc->st.reconcile_passes++;
	for (size_t i = 0; i < rc->nres; i++)
		if (rc->res[i].state == RES_RESOLVED)
			list_now(&rc->res[i]);
}

int recovery_coordinator_start(struct coordinator_server *srv,
			       const struct recovery_options *opts,
			       struct recovery_coordinator **out, char *err,
			       size_t errlen)
{
	const struct config_node *cfg = coordinator_server_config(srv);
	struct recovery_coordinator *rc;
	struct coordinator_fx fx;
	uv_loop_t *loop;
	int rc_err;

	rc = mem_calloc(1, sizeof(*rc));
	if (rc == NULL)
		return -ENOMEM;
	rc->srv = srv;
	if (opts != NULL)
		rc->o = *opts;
	if (rc->o.reconcile_every_ms == 0)
		rc->o.reconcile_every_ms = 10000;
	if (rc->o.retry_initial_ms == 0)
		rc->o.retry_initial_ms = 100;
	if (rc->o.retry_max_ms == 0)
		rc->o.retry_max_ms = 5000;
	rc_err = coordinator_recovery_new(cfg->cluster_id, &rc->plan);
	if (rc_err < 0)
		goto err_free;
	rc_err = coordinator_recovery_replay(rc->plan,
					     coordinator_server_log(srv));
	if (rc_err < 0) {
		snprintf(err, errlen, "cannot replay the decision log: %s",
			 coordinator_strerror(rc_err));
		goto err_free;
	}
	rc->st.last_epoch = coordinator_recovery_last_epoch(rc->plan);
	rc->st.redriven = coordinator_recovery_count(rc->plan);
	rc->nres = coordinator_server_resources(srv);
	rc->res = mem_calloc(rc->nres ? rc->nres : 1, sizeof(*rc->res));
	if (rc->res == NULL) {
		rc_err = -ENOMEM;
		goto err_free;
	}
	coordinator_fx_init(&fx);
	rc_err = coordinator_engine_recover(coordinator_server_engine(srv),
					    rc->plan,
					    coordinator_server_now(srv), &fx);
	if (rc_err < 0) {
		coordinator_fx_clear(&fx);
		snprintf(err, errlen, "cannot recover: %s",
			 coordinator_strerror(rc_err));
		goto err_free;
	}
	log_info("recovery", "replayed",
		 "last_epoch=%llu next_epoch=%llu unfinished=%llu",
		 (unsigned long long)rc->st.last_epoch,
		 (unsigned long long)coordinator_recovery_next_epoch(rc->plan),
		 (unsigned long long)rc->st.redriven);
	coordinator_server_apply(srv, &fx);

	/* From here on nothing fails: handles start. */
	loop = coordinator_server_loop(srv);
	rc->st.resources_pending = rc->nres;
	for (size_t i = 0; i < rc->nres; i++) {
		struct rc_resource *r = &rc->res[i];

		r->rc = rc;
		r->name = coordinator_server_resource_name(srv, i);
		r->backoff = rc->o.retry_initial_ms;
		uv_timer_init(loop, &r->retry);
		r->retry.data = r;
	}
	uv_timer_init(loop, &rc->tick);
	rc->tick.data = rc;
	uv_timer_start(&rc->tick, tick, rc->o.reconcile_every_ms,
		       rc->o.reconcile_every_ms);
	for (size_t i = 0; i < rc->nres; i++)
		list_now(&rc->res[i]);
	maybe_drop_plan(rc);
	*out = rc;
	return 0;
err_free:
	if (rc_err == -ENOMEM && err != NULL)
		snprintf(err, errlen, "out of memory");
	coordinator_recovery_free(rc->plan);
	mem_free(rc->res);
	mem_free(rc);
	return rc_err;
}

void recovery_coordinator_stats(const struct recovery_coordinator *rc,
				struct recovery_stats *out)
{
	*out = rc->st;
}

bool recovery_coordinator_is_done(const struct recovery_coordinator *rc)
{
	return rc->st.resources_pending == 0;
}

static void closed(uv_handle_t *h)
{
	struct recovery_coordinator *rc = h->data;

	if (--rc->pending_closes == 0 && rc->on_stopped != NULL)
		rc->on_stopped(rc->stopped_data);
}

void recovery_coordinator_stop(struct recovery_coordinator *rc,
			       void (*cb)(void *data), void *data)
{
	rc->stopping = true;
	rc->on_stopped = cb;
	rc->stopped_data = data;
	rc->pending_closes = rc->nres + 1;
	for (size_t i = 0; i < rc->nres; i++) {
		rc->res[i].retry.data = rc;
		uv_close((uv_handle_t *)&rc->res[i].retry, closed);
	}
	uv_close((uv_handle_t *)&rc->tick, closed);
}

void recovery_coordinator_free(struct recovery_coordinator *rc)
{
	if (rc == NULL)
		return;
	coordinator_recovery_free(rc->plan);
	mem_free(rc->res);
	mem_free(rc);
}
