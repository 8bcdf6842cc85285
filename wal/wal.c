/*
 * wal.c - the log object: open and close, the request queue, the two
 * drivers of the writer core (a writer thread with completions sent back to
 * the libuv loop, or wal_step in manual mode), queries and errors.
 *
 * Design notes:
 *   - wal_append encodes the record (CRC included) on the caller's thread
 *     and gives it its LSN at once, so the writer only copies bytes.
 *   - Threaded hand-off: the loop pushes requests on w->pending under
 *     w->lock and signals the condition variable only if the writer sleeps.
 *     The writer takes the whole queue, performs it (write.c), pushes the
 *     requests on w->done, wakes the loop (loop_wake_send), and goes
 *     straight back for whatever queued meanwhile: appends that arrive
 *     while it syncs wait for that sync to end and then share the next
 *     write and sync.
 *   - Callbacks fire from one place (fire()), in queue order, on the loop
 *     thread; a callback may append, sync, truncate or close.
 *   - Threaded mode also runs a preparer thread that makes wal.spare, the
 *     next segment zeroed ahead of time (write.c, wal__make_spare): it
 *     sleeps on w->prep_cond until the writer, having used a spare (or
 *     made a segment without one), sets spare_wanted.  Both threads stop
 *     at wal_close; a spare cut short is deleted and made again later.
 *
 * Request lifecycle:
 *   queued (w->pending) -> taken by the writer -> done (w->done)
 *     -> fired (callback, freed)                 [on_wake / wal_step]
 *   queued -> cancelled with -WAL_ECLOSED -> fired            [wal_close]
 */
#include "common/common.h"
#include "wal/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const wal_messages[] = {
#define WAL_ERROR_MSG(name, value, msg) [value - 7000] = msg,
    WAL_ERRORS(WAL_ERROR_MSG)
#undef WAL_ERROR_MSG
};

const char *wal_strerror(int code)
{
	int c = code < 0 ? -code : code;

	if (c > 7000 &&
	    c - 7000 < (int)(sizeof(wal_messages) / sizeof(wal_messages[0])) &&
	    wal_messages[c - 7000])
		return wal_messages[c - 7000];
	if (code == 0)
		return "success";
	return strerror(c);
}

int wal_sync_mode_parse(const char *name, enum wal_sync_mode *out)
{
	if (!name || !out)
		return -EINVAL;
	if (strcmp(name, "fdatasync") == 0)
		*out = WAL_SYNC_FDATASYNC;
	else if (strcmp(name, "dsync") == 0 || strcmp(name, "o_dsync") == 0 ||
		 strcmp(name, "O_DSYNC") == 0)
		*out = WAL_SYNC_DSYNC;
	else if (strcmp(name, "none") == 0)
		*out = WAL_SYNC_NONE;
	else
		return -EINVAL;
	return 0;
}

const char *wal_sync_mode_name(enum wal_sync_mode mode)
{
	switch (mode) {
	case WAL_SYNC_FDATASYNC:
		return "fdatasync";
	case WAL_SYNC_DSYNC:
		return "dsync";
	case WAL_SYNC_NONE:
		return "none";
	}
	return "unknown";
}

const char *wal_cut_reason_name(enum wal_cut_reason reason)
{
	switch (reason) {
	case WAL_CUT_NONE:
		return "clean";
	case WAL_CUT_TORN:
		return "torn record";
	case WAL_CUT_CRC:
		return "checksum mismatch";
	case WAL_CUT_LSN:
		return "lsn out of sequence";
	case WAL_CUT_HEADER:
		return "bad segment header";
	case WAL_CUT_GAP:
		return "segment does not continue the lsns";
	}
	return "unknown";
}

void wal_config_init(struct wal_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->sync_mode = WAL_SYNC_FDATASYNC;
	cfg->segment_size = WAL_DEFAULT_SEGMENT_SIZE;
}

/* ---- request lists */

void wal__list_push(struct wal__req_list *l, struct wal__req *r)
{
	r->next = NULL;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->count++;
}

void wal__list_splice(struct wal__req_list *dst, struct wal__req_list *src)
{
	if (!src->head)
		return;
	if (dst->tail)
		dst->tail->next = src->head;
	else
		dst->head = src->head;
	dst->tail = src->tail;
	dst->count += src->count;
	src->head = src->tail = NULL;
	src->count = 0;
}

static struct wal__req *list_pop(struct wal__req_list *l)
{
	struct wal__req *r = l->head;

	if (!r)
		return NULL;
	l->head = r->next;
	if (!l->head)
		l->tail = NULL;
	l->count--;
	r->next = NULL;
	return r;
}

/* ---- teardown */

static void wal_free(struct wal *w)
{
	if (w->tail)
		w->st->ops->close(w->st->data, w->tail);
	wal_storage_free(w->own_st);
	mem_free(w->segs);
	mem_free(w->buf);
	mem_free(w->cuts);
	pthread_cond_destroy(&w->cond);
	pthread_cond_destroy(&w->prep_cond);
	pthread_mutex_destroy(&w->lock);
	mem_free(w);
}

static void on_closed(struct loop_wake *wk)
{
	struct wal *w = wk->data;
	wal_close_cb cb = w->close_cb;
	void *data = w->close_data;

	wal_free(w);
	if (cb)
		cb(data);
}

static void finish_close(struct wal *w)
{
	wal_close_cb cb = w->close_cb;
	void *data = w->close_data;

	if (w->close_started)
		return;
	w->close_started = true;
	if (w->threaded) {
		loop_wake_close(&w->wake, on_closed);
		return;
	}
	wal_free(w);
	if (cb)
		cb(data);
}

/* ---- completions */

static void kick_writer(struct wal *w)
{
	bool wake;

	if (!w->kick || !w->threaded)
		return;
	w->kick = false;
	pthread_mutex_lock(&w->lock);
	wake = w->writer_idle && w->pending.head;
	pthread_mutex_unlock(&w->lock);
	if (wake)
		pthread_cond_signal(&w->cond);
}

static void fire(struct wal *w, struct wal__req_list *l)
{
	struct wal__req *r;

	wal__list_splice(&w->fireq, l);
	if (w->firing)
		return;
	w->firing = true;
	while ((r = list_pop(&w->fireq))) {
		w->outstanding--;
		/* The suffix truncations still queued were all requested
		 * after this request: an append they cut does not become
		 * readable (written_lsn stays at or below their cut). */
		if (r->kind == WAL__REQ_TRUNC_SUFFIX) {
			memmove(w->cuts, w->cuts + 1,
				(w->ncuts - 1) * sizeof(*w->cuts));
			w->ncuts--;
		}
		if (r->result >= 0 && r->kind == WAL__REQ_APPEND) {
			uint64_t top = r->lsn;

			for (size_t i = 0; i < w->ncuts; i++)
				if (w->cuts[i] < top)
					top = w->cuts[i];
			if (top > w->written_lsn)
				w->written_lsn = top;
		}
		if (r->cb)
			r->cb(w, r->result, r->data);
		mem_free(r);
	}
	w->firing = false;
	kick_writer(w);
	if (w->close_pending)
		finish_close(w);
}

/* Takes the writer's failure into the loop's view. */
static void note_failure(struct wal *w, int fail, const char *msg)
{
	if (fail && !w->failed) {
		w->failed = fail;
		snprintf(w->errmsg, sizeof(w->errmsg), "%s", msg);
	}
}

static void on_wake(struct loop_wake *wk)
{
	struct wal *w = wk->data;
	struct wal__req_list l = {0};
	char msg[sizeof(w->wmsg)];
	int fail;

	pthread_mutex_lock(&w->lock);
	wal__list_splice(&l, &w->done);
	fail = w->wfail_shared;
	if (fail) /* wmsg is final once wfail_shared is set */
		memcpy(msg, w->wmsg, sizeof(msg));
	pthread_mutex_unlock(&w->lock);
	note_failure(w, fail, msg);
	fire(w, &l);
}

static void *writer_main(void *arg)
{
	struct wal *w = arg;
	struct wal__req_list batch = {0};

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->pending.head && !w->stop) {
			w->writer_idle = true;
			pthread_cond_wait(&w->cond, &w->lock);
			w->writer_idle = false;
		}
		if (!w->pending.head)
			break;
		wal__list_splice(&batch, &w->pending);
		pthread_mutex_unlock(&w->lock);
		wal__process(w, &batch);
		pthread_mutex_lock(&w->lock);
		wal__publish(w);
		wal__list_splice(&w->done, &batch);
		/* wake the loop outside the lock, which its handler takes;
		 * then straight back for what queued meanwhile */
		pthread_mutex_unlock(&w->lock);
		loop_wake_send(&w->wake);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* The preparer: makes wal.spare whenever the writer asks for one. */
static void *preparer_main(void *arg)
{
	struct wal *w = arg;
	int rc;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		/* asked for while one was being made: that one will do */
		while ((!w->spare_wanted || w->spare_ready) && !w->stop)
			pthread_cond_wait(&w->prep_cond, &w->lock);
		if (w->stop)
			break;
		w->spare_wanted = false;
		pthread_mutex_unlock(&w->lock);
		/* a failure (say ENOSPC) only means the next rotation makes
		 * its segment itself, and reports the error if it fails too */
		rc = wal__make_spare(w);
		pthread_mutex_lock(&w->lock);
		if (rc == 0) {
			w->spare_ready = true;
			w->spares_made++;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* A spare left by an earlier run is used if it has the segment size. */
static void adopt_spare(struct wal *w)
{
	uint64_t size = 0;
	void *f;

	if (w->st->ops->open(w->st->data, WAL__SPARE_NAME, 0, &f) < 0) {
		w->spare_wanted = true;
		return;
	}
	if (w->st->ops->size(w->st->data, f, &size) == 0 &&
	    size == w->seg_size)
		w->spare_ready = true;
	w->st->ops->close(w->st->data, f);
	if (!w->spare_ready) {
		w->st->ops->unlink(w->st->data, WAL__SPARE_NAME);
		w->spare_wanted = true;
	}
}

static void submit(struct wal *w, struct wal__req *r)
{
	bool wake;

	w->outstanding++;
	if (!w->threaded) {
		wal__list_push(&w->pending, r);
		return;
	}
	pthread_mutex_lock(&w->lock);
	wal__list_push(&w->pending, r);
	/* While callbacks fire, hold the wake-up until the last of them has
	 * run (kick_writer): the appends they make then go in one batch
	 * instead of the first one alone.  The sleeping writer is signalled
	 * after the unlock, so that it does not wake only to block on the
	 * lock the loop still holds. */
	if (w->firing) {
		w->kick = true;
		pthread_mutex_unlock(&w->lock);
		return;
	}
	wake = w->writer_idle;
	pthread_mutex_unlock(&w->lock);
	if (wake)
		pthread_cond_signal(&w->cond);
}

static struct wal__req *req_new(enum wal__req_kind kind, size_t extra,
				wal_cb cb, void *data)
{
	struct wal__req *r = mem_alloc(sizeof(*r) + extra);

	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->cb = cb;
	r->data = data;
	return r;
}

static int can_write(const struct wal *w)
{
	if (w->closing)
		return -WAL_ECLOSED;
	if (w->read_only)
		return -WAL_EREADONLY;
	if (w->failed)
		return -WAL_EFAILED;
	return 0;
}

/* ---- API */

int wal_open(const struct wal_config *cfg, struct wal **out,
	     struct wal_recovery_report *report)
{
	struct wal_recovery_report rep_local;
	struct wal *w;
	int rc;

	if (!cfg || !out || (!cfg->storage && (!cfg->dir || !*cfg->dir)))
		return -EINVAL;
	if (cfg->sync_mode != WAL_SYNC_FDATASYNC &&
	    cfg->sync_mode != WAL_SYNC_DSYNC && cfg->sync_mode != WAL_SYNC_NONE)
		return -EINVAL;
	if (cfg->segment_size && (cfg->segment_size < WAL_MIN_SEGMENT_SIZE ||
				  cfg->segment_size > (1ull << 40)))
		return -EINVAL;
	if (!report)
		report = &rep_local;
	w = mem_calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	pthread_cond_init(&w->prep_cond, NULL);
	w->sync_mode = cfg->sync_mode;
	w->seg_size =
	    cfg->segment_size ? cfg->segment_size : WAL_DEFAULT_SEGMENT_SIZE;
	w->read_only = cfg->read_only;
	w->loop = cfg->loop;
	w->st = cfg->storage;
	if (!w->st) {
		rc = wal__file_storage_open(cfg->dir, !cfg->read_only,
					    &w->own_st);
		if (rc < 0)
			goto err_free;
		w->st = w->own_st;
	}
	rc = wal__recover(w, report);
	if (rc < 0)
		goto err_free;
	if (w->loop && !w->read_only) {
		w->wake.data = w;
		rc = loop_wake_init(w->loop, &w->wake, on_wake);
		if (rc < 0)
			goto err_free;
		w->threaded = true;
		rc = -pthread_create(&w->thread, NULL, writer_main, w);
		if (rc < 0) {
			/* the handle must be closed through the loop */
			w->close_pending = true;
			finish_close(w);
			return rc;
		}
		w->thread_started = true;
		adopt_spare(w);
		if (pthread_create(&w->prep_thread, NULL, preparer_main, w) ==
		    0)
			w->prep_started = true;
	}
	*out = w;
	return 0;

err_free:
	wal_free(w);
	return rc;
}

int wal_append(struct wal *w, uint32_t type, const void *payload, size_t len,
	       bool forced, wal_cb cb, void *data)
{
	struct wal__req *r;
	int rc;

	if (!w || (len && !payload))
		return -EINVAL;
	rc = can_write(w);
	if (rc < 0)
		return rc;
	if (len > w->seg_size - WAL_SEGMENT_HEADER_SIZE -
		      WAL_RECORD_HEADER_SIZE ||
	    len > UINT32_MAX)
		return -WAL_ETOOBIG;
	r = req_new(WAL__REQ_APPEND, WAL_RECORD_HEADER_SIZE + len, cb, data);
	if (!r)
		return -ENOMEM;
	r->forced = forced;
	r->lsn = w->next_lsn++;
	r->size = (uint32_t)(WAL_RECORD_HEADER_SIZE + len);
	wal__rec_encode(r->rec, r->lsn, type, payload, (uint32_t)len);
	submit(w, r);
	return 0;
}

int wal_sync(struct wal *w, wal_cb cb, void *data)
{
	struct wal__req *r;
	int rc;

	if (!w)
		return -EINVAL;
	rc = can_write(w);
	if (rc < 0)
		return rc;
	r = req_new(WAL__REQ_SYNC, 0, cb, data);
	if (!r)
		return -ENOMEM;
	submit(w, r);
	return 0;
}

int wal_truncate_suffix(struct wal *w, uint64_t lsn, wal_cb cb, void *data)
{
	struct wal__req *r;
	int rc;

	if (!w)
		return -EINVAL;
	rc = can_write(w);
	if (rc < 0)
		return rc;
	if (lsn + 1 < w->first_lsn)
		return -WAL_ECOMPACTED;
	if (lsn >= w->next_lsn)
		return -WAL_ERANGE;
	r = req_new(WAL__REQ_TRUNC_SUFFIX, 0, cb, data);
	if (!r)
		return -ENOMEM;
	if (w->ncuts == w->cuts_cap) {
		size_t cap = w->cuts_cap ? w->cuts_cap * 2 : 4;
		uint64_t *nc = mem_realloc(w->cuts, cap * sizeof(*nc));

		if (!nc) {
			mem_free(r);
			return -ENOMEM;
		}
		w->cuts = nc;
		w->cuts_cap = cap;
	}
	w->cuts[w->ncuts++] = lsn;
	r->lsn = lsn;
	w->next_lsn = lsn + 1;
	w->generation++;
	if (w->written_lsn > lsn)
		w->written_lsn = lsn;
	submit(w, r);
	return 0;
}

int wal_truncate_prefix(struct wal *w, uint64_t lsn, wal_cb cb, void *data)
{
	struct wal__req *r;
	int rc;

	if (!w || lsn == 0 || lsn == UINT64_MAX)
		return -EINVAL;
	rc = can_write(w);
	if (rc < 0)
		return rc;
	r = req_new(WAL__REQ_TRUNC_PREFIX, 0, cb, data);
	if (!r)
		return -ENOMEM;
	r->lsn = lsn;
	if (lsn > w->first_lsn) {
		w->first_lsn = lsn;
		w->generation++;
	}
	if (lsn > w->next_lsn)
		w->next_lsn = lsn;
	if (w->written_lsn + 1 < lsn)
		w->written_lsn = lsn - 1;
	submit(w, r);
	return 0;
}

int wal_step(struct wal *w)
{
	struct wal__req_list l = {0};
	int n;

	if (!w || w->threaded)
		return -EINVAL;
	if (w->closing)
		return 0;
	wal__list_splice(&l, &w->pending);
	n = (int)l.count;
	if (!n)
		return 0;
	wal__process(w, &l);
	wal__publish(w);
	note_failure(w, w->wfail, w->wmsg);
	fire(w, &l);
	return n;
}

size_t wal_pending(const struct wal *w)
{
	return w ? w->outstanding : 0;
}

void wal_close(struct wal *w, wal_close_cb cb, void *data)
{
	struct wal__req_list done = {0}, cancelled = {0};

	if (!w || w->closing)
		return;
	w->closing = true;
	w->close_cb = cb;
	w->close_data = data;
	if (w->threaded) {
		pthread_mutex_lock(&w->lock);
		wal__list_splice(&cancelled, &w->pending);
		w->stop = true;
		pthread_cond_signal(&w->cond);
		pthread_cond_signal(&w->prep_cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
		w->thread_started = false;
		if (w->prep_started)
			pthread_join(w->prep_thread, NULL);
		w->prep_started = false;
		wal__list_splice(&done, &w->done);
		note_failure(w, w->wfail_shared, w->wmsg);
	} else {
		wal__list_splice(&cancelled, &w->pending);
	}
	for (struct wal__req *r = cancelled.head; r; r = r->next)
		r->result = -WAL_ECLOSED;
	wal__list_splice(&done, &cancelled);
	w->close_pending = true;
	fire(w, &done);
}

uint64_t wal_first_lsn(const struct wal *w)
{
	return w->first_lsn;
}

uint64_t wal_next_lsn(const struct wal *w)
{
	return w->next_lsn;
}

uint64_t wal_written_lsn(const struct wal *w)
{
	return w->written_lsn;
}

int wal_failed(const struct wal *w)
{
	return w->failed;
}

const char *wal_errmsg(const struct wal *w)
{
	return w->errmsg;
}

void wal_stats_get(const struct wal *w, struct wal_stats *out)
{
	struct wal *mw = (struct wal *)w;

	pthread_mutex_lock(&mw->lock);
	*out = w->threaded ? w->stats : w->wstats;
	out->spares_made = w->spares_made;
	out->spare_ready = w->spare_ready;
	pthread_mutex_unlock(&mw->lock);
}
