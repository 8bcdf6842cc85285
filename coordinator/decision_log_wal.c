/*
 * decision_log_wal.c - the local decision log: the coordinator_log
 * interface on one wal/ forced-write log (single-node mode).
 *
 * Design notes:
 *  - Each decision record (format in decision_log_record.c) is one WAL
 *    record of type COORDINATOR_WAL_TYPE; forced maps to a forced append,
 *    so group commit batches the decisions of concurrent transactions into
 *    one sync (the bench target is < 0.25 syncs per commit at 64 clients).
 *  - A WAL failure (failed write or sync) is final for the log: the WAL
 *    completes the failed and queued appends with the error and refuses new
 *    ones; the engine then stops and the process restarts and replays.
 *  - Replay walks the whole log from its first LSN; a record of another type
 *    stops it with COORDINATOR_EREC_TYPE (this log holds decisions only).
 *  - Compaction (coordinator_log_checkpoint) maps to wal_truncate_prefix()
 *    at the LSN the checkpoint's first record took; the WAL persists the new
 *    start, so a crash at any step leaves the old log or the shorter one.
 *  - close() is wal_close(): queued appends complete with -WAL_ECLOSED
 *    (later, on the loop, in threaded mode); the memory goes in its close
 *    callback.
 */
#include "common/common.h"
#include "coordinator/coordinator.h"
#include "wal/wal.h"

#include <errno.h>

struct walog {
	struct wal *w;
};

struct req {
	coordinator_log_cb cb;
	void *arg;
};

static void on_appended(struct wal *w, int64_t result, void *data)
{
	struct req *r = data;
	coordinator_log_cb cb = r->cb;
	void *arg = r->arg;

	(void)w;
	mem_free(r);
	if (cb != NULL)
		cb(arg, result < 0 ? (int)result : 0);
}

static int wl_append(void *data, const void *buf, size_t len, bool forced,
		     coordinator_log_cb cb, void *arg)
{
	struct walog *l = data;
	struct req *r = mem_alloc(sizeof(*r));
	int rc;

	if (r == NULL)
		return -ENOMEM;
	r->cb = cb;
	r->arg = arg;
	rc = wal_append(l->w, COORDINATOR_WAL_TYPE, buf, len, forced,
			on_appended, r);
	if (rc < 0)
		mem_free(r);
	return rc;
}

struct replay_ctx {
	coordinator_log_replay_cb fn;
	void *arg;
};

static int replay_entry(const struct wal_entry *e, void *data)
{
	struct replay_ctx *ctx = data;

	if (e->type != COORDINATOR_WAL_TYPE)
		return COORDINATOR_EREC_TYPE;
	return ctx->fn(ctx->arg, e->payload, e->len);
}

static int wl_replay(void *data, coordinator_log_replay_cb fn, void *arg)
{
	struct walog *l = data;
	struct replay_ctx ctx = {fn, arg};

	return wal_replay(l->w, wal_first_lsn(l->w), replay_entry, &ctx);
}

static void on_closed(void *data)
{
	mem_free(data);
}

static void wl_close(void *data)
{
	struct walog *l = data;

	wal_close(l->w, on_closed, l);
}

static uint64_t wl_position(void *data)
{
	struct walog *l = data;

	return wal_next_lsn(l->w);
}

static void on_truncated(struct wal *w, int64_t result, void *data)
{
	on_appended(w, result, data);
}

static int wl_truncate(void *data, uint64_t pos, coordinator_log_cb cb,
		       void *arg)
{
	struct walog *l = data;
	struct req *r = mem_alloc(sizeof(*r));
	int rc;

	if (r == NULL)
		return -ENOMEM;
	r->cb = cb;
	r->arg = arg;
	rc = wal_truncate_prefix(l->w, pos, on_truncated, r);
	if (rc < 0)
		mem_free(r);
	return rc;
}

static const struct coordinator_log_ops walog_ops = {
    .append = wl_append,
    .replay = wl_replay,
    .close = wl_close,
    .position = wl_position,
    .truncate = wl_truncate,
};

int coordinator_walog_open(const struct wal_config *cfg,
			   struct coordinator_log *out,
			   struct wal_recovery_report *report)
{
	struct walog *l = mem_calloc(1, sizeof(*l));
	int rc;

	if (l == NULL)
		return -ENOMEM;
	rc = wal_open(cfg, &l->w, report);
	if (rc < 0) {
		mem_free(l);
		return rc;
	}
	out->ops = &walog_ops;
	out->data = l;
	return 0;
}

struct wal *coordinator_walog_wal(struct coordinator_log *log)
{
	if (log->ops != &walog_ops)
		return NULL;
	return ((struct walog *)log->data)->w;
}
