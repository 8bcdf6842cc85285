/*
 * write.c - the writer core: turns a queue of requests into writes, syncs,
 * segment rotations and truncations.  Both drivers (the writer thread and
 * wal_step in manual mode) call wal__process on the requests they took.
 *
 * Design notes:
 *   - A run of consecutive appends and sync requests is one batch: the
 *     encoded records are copied into one buffer and written with one
 *     write per segment touched, then synced once if any record in the run
 *     is forced or a sync was requested (group commit).  A run with only
 *     non-forced records is written and not synced.
 *   - Rotation: a record that does not fit in the rest of the tail segment
 *     starts a new one.  The old tail is synced first (format.c invariant
 *     2).  The new segment is wal.spare if the preparer thread has one
 *     ready (a file of the segment size, zeroed whole and synced: header,
 *     sync, rename), else it is made here as <name>.tmp (header,
 *     preallocate, zero whole, sync, rename).  Then the directory is
 *     synced, so a file with a segment name always has a valid header, and
 *     the preparer is asked for the next spare.  Zeroing whole keeps block
 *     allocation and extent conversion out of the records' fdatasyncs;
 *     doing it ahead, in another file, keeps it out of their latency.
 *   - Failure: the first failed write, sync or file operation fails the
 *     writer for good (DESIGN.md section 9: never retry a failed sync).
 *     That request and every later one complete with the error.
 *
 * Suffix truncation, steps (a crash after any step leaves a prefix of the
 * old log that holds at least every record up to lsn):
 *   1. delete the segments that start after lsn + 1, highest first;
 *   2. if a segment starts exactly at lsn + 1, delete it too and make the
 *      previous segment the tail; otherwise truncate the segment holding
 *      lsn + 1 at that record (durable) and preallocate it again;
 *   3. sync the directory.
 * Prefix truncation, steps (a crash after any step leaves the old start or
 * the new one; recovery finishes an interrupted one, recover.c note 2):
 *   1. write wal.start.tmp with the new start, sync it, rename it to
 *      wal.start, sync the directory;
 *   2. delete, oldest first, every segment whose successor starts at or
 *      below the new start, and the tail too if all its records are below;
 *   3. sync the directory.
 */
#include "common/common.h"
#include "wal/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void wal__fail_writer(struct wal *w, int err, const char *what)
{
	if (w->wfail)
		return;
	w->wfail = err;
	snprintf(w->wmsg, sizeof(w->wmsg), "%s: %s", what, wal_strerror(err));
}

void wal__publish(struct wal *w)
{
	w->stats = w->wstats;
	w->wfail_shared = w->wfail;
}

int wal__segs_push(struct wal *w, uint64_t first_lsn)
{
	if (w->nsegs == w->segs_cap) {
		size_t cap = w->segs_cap ? w->segs_cap * 2 : 8;
		struct wal__seg *ns = mem_realloc(w->segs, cap * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		w->segs = ns;
		w->segs_cap = cap;
	}
	w->segs[w->nsegs++].first_lsn = first_lsn;
	return 0;
}

static void segs_pop_back(struct wal *w)
{
	if (w->threaded)
		pthread_mutex_lock(&w->lock);
	w->nsegs--;
	if (w->threaded)
		pthread_mutex_unlock(&w->lock);
}

static void segs_pop_front(struct wal *w)
{
	if (w->threaded)
		pthread_mutex_lock(&w->lock);
	memmove(w->segs, w->segs + 1, (w->nsegs - 1) * sizeof(*w->segs));
	w->nsegs--;
	if (w->threaded)
		pthread_mutex_unlock(&w->lock);
}

static unsigned open_flags(const struct wal *w)
{
	return w->sync_mode == WAL_SYNC_DSYNC ? WAL_OPEN_DSYNC : 0;
}

static int sync_file(struct wal *w, void *f)
{
	int rc;

	if (w->sync_mode != WAL_SYNC_FDATASYNC)
		return 0;
	rc = w->st->ops->sync(w->st->data, f);
	if (rc == 0)
		w->wstats.syncs++;
	return rc;
}

static int sync_dir(struct wal *w)
{
	if (w->sync_mode == WAL_SYNC_NONE)
		return 0;
	return w->st->ops->sync_dir(w->st->data);
}

static void close_tail(struct wal *w)
{
	if (w->tail)
		w->st->ops->close(w->st->data, w->tail);
	w->tail = NULL;
	w->dirty = false;
}

/* Syncs the tail if it has unsynced writes. */
static int flush_tail(struct wal *w)
{
	int rc;

	if (!w->tail || !w->dirty)
		return 0;
	rc = sync_file(w, w->tail);
	if (rc < 0) {
		wal__fail_writer(w, rc, "sync failed");
		return rc;
	}
	w->dirty = false;
	return 0;
}

/* Takes wal.spare if the preparer finished one. */
static bool take_spare(struct wal *w)
{
	bool ready;

	if (!w->threaded)
		return false;
	pthread_mutex_lock(&w->lock);
	ready = w->spare_ready;
	w->spare_ready = false;
	pthread_mutex_unlock(&w->lock);
	return ready;
}

static void want_spare(struct wal *w)
{
	if (!w->threaded)
		return;
	pthread_mutex_lock(&w->lock);
	if (!w->spare_ready && !w->stop) {
		w->spare_wanted = true;
		pthread_cond_signal(&w->prep_cond);
	}
	pthread_mutex_unlock(&w->lock);
}

/*
 * Makes the segment from wal.spare: header, sync, rename.  *f stays NULL
 * (and the spare is dropped) if the spare cannot be opened or has the wrong
 * size, so the caller makes the segment the long way.
 */
static int seg_from_spare(struct wal *w, const unsigned char *hb,
			  const char *name, void **f, const char **what)
{
	uint64_t size = 0;
	int rc;

	*f = NULL;
	if (w->st->ops->open(w->st->data, WAL__SPARE_NAME, open_flags(w), f) <
	    0) {
		*f = NULL;
		return 0;
	}
	if (w->st->ops->size(w->st->data, *f, &size) < 0 ||
	    size != w->seg_size) {
		w->st->ops->close(w->st->data, *f);
		*f = NULL;
		w->st->ops->unlink(w->st->data, WAL__SPARE_NAME);
		return 0;
	}
	*what = "cannot write segment header";
	rc = w->st->ops->write(w->st->data, *f, hb, WAL_SEGMENT_HEADER_SIZE, 0);
	if (rc < 0)
		return rc;
	*what = "cannot sync new segment";
	if (w->sync_mode != WAL_SYNC_NONE) {
		rc = w->st->ops->sync(w->st->data, *f);
		if (rc < 0)
			return rc;
	}
	*what = "cannot rename spare into a segment";
	return w->st->ops->rename(w->st->data, WAL__SPARE_NAME, name);
}

/* Makes the segment from scratch as <name>.tmp, zeroed whole. */
static int seg_fresh(struct wal *w, const unsigned char *hb, const char *name,
		     void **f, const char **what)
{
	char tmp[WAL__NAME_MAX + 4];
	int rc;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	*what = "cannot create segment";
	rc = w->st->ops->open(w->st->data, tmp, WAL_OPEN_CREATE | open_flags(w),
			      f);
	if (rc < 0) {
		*f = NULL;
		return rc;
	}
	*what = "cannot write segment header";
	rc = w->st->ops->truncate(w->st->data, *f, 0);
	if (rc == 0)
		rc = w->st->ops->write(w->st->data, *f, hb,
				       WAL_SEGMENT_HEADER_SIZE, 0);
	if (rc < 0)
		return rc;
	*what = "cannot preallocate segment";
	rc = w->st->ops->allocate(w->st->data, *f, w->seg_size);
	if (rc == 0 && w->st->ops->zero)
		rc = w->st->ops->zero(w->st->data, *f, WAL_SEGMENT_HEADER_SIZE,
				      w->seg_size - WAL_SEGMENT_HEADER_SIZE);
	if (rc < 0)
		return rc;
	*what = "cannot sync new segment";
	if (w->sync_mode != WAL_SYNC_NONE) {
		rc = w->st->ops->sync(w->st->data, *f);
		if (rc < 0)
			return rc;
	}
	*what = "cannot rename new segment";
	return w->st->ops->rename(w->st->data, tmp, name);
}

static int seg_create(struct wal *w, uint64_t first_lsn)
{
	char name[WAL__NAME_MAX];
	unsigned char hb[WAL_SEGMENT_HEADER_SIZE];
	struct wal__seg_header sh = {first_lsn, w->seg_size};
	const char *what = "cannot create segment";
	void *f = NULL;
	int rc;

	rc = flush_tail(w);
	if (rc < 0)
		return rc;
	close_tail(w);
	wal__seg_name(name, first_lsn);
	wal__seg_header_encode(hb, &sh);
	rc = 0;
	if (take_spare(w)) {
		rc = seg_from_spare(w, hb, name, &f, &what);
		if (f)
			w->wstats.rotations_spare++;
	}
	if (rc == 0 && !f)
		rc = seg_fresh(w, hb, name, &f, &what);
	if (rc < 0)
		goto err_close;
	what = "cannot sync log directory";
	rc = sync_dir(w);
	if (rc < 0)
		goto err_close;
	if (w->threaded)
		pthread_mutex_lock(&w->lock);
	rc = wal__segs_push(w, first_lsn);
	if (w->threaded)
		pthread_mutex_unlock(&w->lock);
	what = "out of memory";
	if (rc < 0)
		goto err_close;
	w->tail = f;
	w->tail_off = WAL_SEGMENT_HEADER_SIZE;
	w->tail_size = w->seg_size;
	w->wstats.rotations++;
	w->wstats.bytes += sizeof(hb);
	want_spare(w);
	return 0;

err_close:
	if (f)
		w->st->ops->close(w->st->data, f);
	wal__fail_writer(w, rc, what);
	return rc;
}

/*
 * The spare is zeroed SPARE_CHUNK at a time, each chunk synced before the
 * next is written, so that the flush the writer's fdatasync may queue
 * behind is one chunk, never the whole file.
 */
#define SPARE_CHUNK (256u * 1024u)

static bool stopping(struct wal *w)
{
	bool stop;

	pthread_mutex_lock(&w->lock);
	stop = w->stop;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

int wal__make_spare(struct wal *w)
{
	const struct wal_storage_ops *ops = w->st->ops;
	bool sync = w->sync_mode != WAL_SYNC_NONE;
	void *f;
	int rc;

	rc = ops->open(w->st->data, WAL__SPARE_TMP, WAL_OPEN_CREATE, &f);
	if (rc < 0)
		return rc;
	rc = ops->truncate(w->st->data, f, 0);
	if (rc == 0)
		rc = ops->allocate(w->st->data, f, w->seg_size);
	for (uint64_t off = 0; rc == 0 && ops->zero && off < w->seg_size;
	     off += SPARE_CHUNK) {
		uint64_t n = w->seg_size - off < SPARE_CHUNK ? w->seg_size - off
							     : SPARE_CHUNK;

		if (stopping(w))
			rc = -ECANCELED;
		if (rc == 0)
			rc = ops->zero(w->st->data, f, off, n);
		if (rc == 0 && sync)
			rc = ops->sync(w->st->data, f);
	}
	if (rc == 0 && sync && !ops->zero)
		rc = ops->sync(w->st->data, f);
	ops->close(w->st->data, f);
	/* no directory sync: a spare lost in a crash is made again */
	if (rc == 0)
		rc = ops->rename(w->st->data, WAL__SPARE_TMP, WAL__SPARE_NAME);
	if (rc < 0)
		ops->unlink(w->st->data, WAL__SPARE_TMP);
	return rc;
}

static int write_buf(struct wal *w, size_t len)
{
	int rc;

	if (!len)
		return 0;
	rc = w->st->ops->write(w->st->data, w->tail, w->buf, len, w->tail_off);
	if (rc < 0) {
		wal__fail_writer(w, rc, "write failed");
		return rc;
	}
	w->tail_off += len;
	w->wstats.writes++;
	w->wstats.bytes += len;
	if (w->sync_mode == WAL_SYNC_DSYNC)
		w->wstats.syncs++;
	else
		w->dirty = true;
	return 0;
}

/* Writes the run [from, to) of appends and syncs; returns 0 or the error. */
static int write_run(struct wal *w, struct wal__req *from, struct wal__req *to)
{
	bool need_sync = false;
	uint64_t nrec = 0;
	size_t blen = 0;
	int rc;

	for (struct wal__req *q = from; q != to; q = q->next) {
		if (q->kind == WAL__REQ_SYNC) {
			need_sync = true;
			continue;
		}
		need_sync |= q->forced;
		if (!w->tail || q->lsn != w->wlast_lsn + 1 ||
		    w->tail_off + blen + q->size > w->tail_size) {
			rc = write_buf(w, blen);
			if (rc < 0)
				return rc;
			blen = 0;
			rc = seg_create(w, q->lsn);
			if (rc < 0)
				return rc;
		}
		if (blen + q->size > w->buf_cap) {
			size_t cap = w->buf_cap ? w->buf_cap : 64 * 1024;
			unsigned char *nb;

			while (cap < blen + q->size)
				cap *= 2;
			nb = mem_realloc(w->buf, cap);
			if (!nb) {
				wal__fail_writer(w, -ENOMEM, "batch buffer");
				return -ENOMEM;
			}
			w->buf = nb;
			w->buf_cap = cap;
		}
		memcpy(w->buf + blen, q->rec, q->size);
		blen += q->size;
		w->wlast_lsn = q->lsn;
		nrec++;
	}
	rc = write_buf(w, blen);
	if (rc < 0)
		return rc;
	if (nrec) {
		w->wstats.records += nrec;
		w->wstats.batches++;
	}
	if (need_sync)
		return flush_tail(w);
	return 0;
}

static int trunc_suffix(struct wal *w, uint64_t lsn)
{
	char name[WAL__NAME_MAX];
	unsigned char hb[WAL_SEGMENT_HEADER_SIZE];
	struct wal__seg_header sh;
	struct wal__scan sc;
	const char *what = "suffix truncation";
	void *f = NULL;
	int rc = 0;

	if (lsn >= w->wlast_lsn)
		return flush_tail(w);
	/* steps 1 and 2: segments that start above lsn, highest first */
	while (w->nsegs > 0 && w->segs[w->nsegs - 1].first_lsn > lsn) {
		if (w->tail)
			close_tail(w);
		wal__seg_name(name, w->segs[w->nsegs - 1].first_lsn);
		rc = w->st->ops->unlink(w->st->data, name);
		if (rc < 0 && rc != -ENOENT) {
			what = "cannot delete segment";
			goto err;
		}
		segs_pop_back(w);
	}
	rc = 0;
	if (w->nsegs > 0) {
		uint64_t first = w->segs[w->nsegs - 1].first_lsn;

		wal__seg_name(name, first);
		if (!w->tail) {
			what = "cannot open segment";
			rc = w->st->ops->open(w->st->data, name, open_flags(w),
					      &f);
			if (rc < 0)
				goto err;
			what = "cannot read segment header";
			rc = (int)w->st->ops->read(w->st->data, f, hb,
						   sizeof(hb), 0);
			if (rc >= 0 && (rc != (int)sizeof(hb) ||
					wal__seg_header_decode(hb, &sh) < 0))
				rc = -WAL_ECORRUPT;
			if (rc < 0)
				goto err_close;
			w->tail = f;
			w->tail_size = sh.segment_size;
			f = NULL;
		}
		what = "cannot scan segment";
		rc = wal__seg_scan(w, w->tail, first, lsn + 1, &sc);
		if (rc == 0 && sc.last != lsn)
			rc = -WAL_ECORRUPT;
		if (rc < 0)
			goto err;
		what = "cannot truncate segment";
		rc = w->st->ops->truncate(w->st->data, w->tail, sc.off);
		if (rc == 0)
			rc = w->st->ops->allocate(w->st->data, w->tail,
						  w->tail_size);
		if (rc < 0)
			goto err;
		w->tail_off = sc.off;
		w->dirty = false;
	}
	what = "cannot sync log directory";
	rc = sync_dir(w);
	if (rc < 0)
		goto err;
	w->wlast_lsn = lsn;
	return 0;

err_close:
	w->st->ops->close(w->st->data, f);
err:
	wal__fail_writer(w, rc, what);
	return rc;
}

static int trunc_prefix(struct wal *w, uint64_t lsn)
{
	char name[WAL__NAME_MAX];
	unsigned char mb[WAL__START_SIZE];
	const char *what;
	void *f;
	int rc;

	if (lsn <= w->wstart_lsn)
		return 0;
	/* step 1 */
	wal__start_encode(mb, lsn);
	what = "cannot write start marker";
	rc = w->st->ops->open(w->st->data, WAL__START_TMP, WAL_OPEN_CREATE, &f);
	if (rc < 0)
		goto err;
	rc = w->st->ops->truncate(w->st->data, f, 0);
	if (rc == 0)
		rc = w->st->ops->write(w->st->data, f, mb, sizeof(mb), 0);
	if (rc == 0)
		rc = w->st->ops->sync(w->st->data, f);
	w->st->ops->close(w->st->data, f);
	if (rc < 0)
		goto err;
	rc = w->st->ops->rename(w->st->data, WAL__START_TMP, WAL__START_NAME);
	if (rc == 0)
		rc = w->st->ops->sync_dir(w->st->data);
	if (rc < 0)
		goto err;
	w->wstart_lsn = lsn;
	/* step 2 */
	what = "cannot delete segment";
	while (w->nsegs > 1 && w->segs[1].first_lsn <= lsn) {
		wal__seg_name(name, w->segs[0].first_lsn);
		rc = w->st->ops->unlink(w->st->data, name);
		if (rc < 0 && rc != -ENOENT)
			goto err;
		segs_pop_front(w);
	}
	if (w->nsegs == 1 && w->wlast_lsn < lsn) {
		rc = flush_tail(w);
		if (rc < 0)
			return rc;
		close_tail(w);
		wal__seg_name(name, w->segs[0].first_lsn);
		rc = w->st->ops->unlink(w->st->data, name);
		if (rc < 0 && rc != -ENOENT)
			goto err;
		segs_pop_front(w);
	}
	if (w->wlast_lsn + 1 < lsn)
		w->wlast_lsn = lsn - 1;
	/* step 3 */
	what = "cannot sync log directory";
	rc = w->st->ops->sync_dir(w->st->data);
	if (rc < 0)
		goto err;
	return 0;

err:
	wal__fail_writer(w, rc, what);
	return rc;
}

void wal__process(struct wal *w, struct wal__req_list *list)
{
	struct wal__req *r = list->head, *end;
	int rc;

	while (r) {
		if (w->wfail) {
			for (; r; r = r->next)
				r->result = w->wfail;
			break;
		}
		switch (r->kind) {
		case WAL__REQ_APPEND:
		case WAL__REQ_SYNC:
			for (end = r; end && (end->kind == WAL__REQ_APPEND ||
					      end->kind == WAL__REQ_SYNC);
			     end = end->next)
				;
			rc = write_run(w, r, end);
			for (; r != end; r = r->next) {
				if (rc < 0)
					r->result = rc;
				else if (r->kind == WAL__REQ_APPEND)
					r->result = (int64_t)r->lsn;
				else
					r->result = (int64_t)w->wlast_lsn;
			}
			break;
		case WAL__REQ_TRUNC_SUFFIX:
			r->result = trunc_suffix(w, r->lsn);
			r = r->next;
			break;
		case WAL__REQ_TRUNC_PREFIX:
			r->result = trunc_prefix(w, r->lsn);
			r = r->next;
			break;
		}
	}
}
