/*
 * iter.c - reading the log in LSN order: the iterator used by replay on
 * open (coordinator decision log, Raft storage) and by `decree wal dump`.
 *
 * Design notes:
 *   - The iterator finds the segment holding its next LSN from the segment
 *     list (under w->lock: the writer thread may rotate meanwhile), opens it
 *     and walks records from the segment start; it never returns a record
 *     above wal_written_lsn(), so it only reads bytes whose write finished.
 *   - Reads go through a buffer; a record the buffer shows as invalid is
 *     read again from the file once (the buffer may predate its write)
 *     before the iterator reports -WAL_ECORRUPT.
 *   - A truncation bumps w->generation; an iterator opened before it
 *     returns -WAL_ESTALE rather than read files that may be gone.
 *   - Finding a record scans its segment from the start, except that the
 *     log remembers where the last iterator stopped (w->hint_*, valid for
 *     one generation): an iterator that starts at or after that LSN in the
 *     same segment starts there (Raft reading the entries it just wrote).
 */
#include "common/common.h"
#include "wal/internal.h"

#include <errno.h>
#include <string.h>

struct wal_iter {
	struct wal *w;
	uint64_t generation;
	uint64_t next;	    /* LSN to return next */
	void *f;	    /* open segment, or NULL */
	uint64_t seg_first; /* its first LSN */
	uint64_t off;	    /* offset of the next record to look at */
	uint64_t fsize;	    /* size of the open segment file */
	struct wal__rd rd;
};

int wal_iter_open(struct wal *w, uint64_t from_lsn, struct wal_iter **out)
{
	struct wal_iter *it;

	if (!w || !out)
		return -EINVAL;
	if (from_lsn < w->first_lsn)
		return -WAL_ECOMPACTED;
	if (from_lsn > w->written_lsn + 1)
		return -WAL_ERANGE;
	it = mem_calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->w = w;
	it->generation = w->generation;
	it->next = from_lsn;
	it->rd.st = w->st;
	*out = it;
	return 0;
}

static void iter_close_file(struct wal_iter *it)
{
	if (it->f)
		it->w->st->ops->close(it->w->st->data, it->f);
	it->f = NULL;
	it->rd.f = NULL;
	it->rd.len = 0;
}

/* Opens the segment holding it->next. */
static int iter_seek(struct wal_iter *it)
{
	struct wal *w = it->w;
	char name[WAL__NAME_MAX];
	uint64_t first = 0;
	bool found = false;
	int rc;

	if (w->threaded)
		pthread_mutex_lock(&w->lock);
	for (size_t i = w->nsegs; i > 0; i--) {
		if (w->segs[i - 1].first_lsn <= it->next) {
			first = w->segs[i - 1].first_lsn;
			found = true;
			break;
		}
	}
	if (w->threaded)
		pthread_mutex_unlock(&w->lock);
	if (!found)
		return -WAL_ECORRUPT;
	wal__seg_name(name, first);
	rc = w->st->ops->open(w->st->data, name, WAL_OPEN_RDONLY, &it->f);
	if (rc == -ENOENT)
		return -WAL_ESTALE;
	if (rc < 0)
		return rc;
	rc = w->st->ops->size(w->st->data, it->f, &it->fsize);
	if (rc < 0)
		return rc;
	it->rd.f = it->f;
	it->rd.len = 0;
	it->seg_first = first;
	it->off = WAL_SEGMENT_HEADER_SIZE;
	if (w->hint_gen == w->generation && w->hint_seg == first &&
	    w->hint_lsn > first && w->hint_lsn <= it->next)
		it->off = w->hint_off;
	return 0;
}

/* Reads the record at it->off; 1 ok, 0 no valid record there, <0 error. */
static int read_rec(struct wal_iter *it, bool fresh, const unsigned char **h,
		    struct wal__rec_header *rh)
{
	int rc;

	rc = wal__rd_get(&it->rd, it->off, WAL_RECORD_HEADER_SIZE, fresh, h);
	if (rc <= 0)
		return rc;
	wal__rec_header_decode(*h, rh);
	if (fresh) {
		rc = it->w->st->ops->size(it->w->st->data, it->f, &it->fsize);
		if (rc < 0)
			return rc;
	}
	if (it->off + WAL_RECORD_HEADER_SIZE + (uint64_t)rh->len > it->fsize)
		return 0;
	rc = wal__rd_get(&it->rd, it->off, WAL_RECORD_HEADER_SIZE + rh->len,
			 fresh, h);
	if (rc <= 0)
		return rc;
	return wal__rec_check(*h, *h + WAL_RECORD_HEADER_SIZE, rh->len) ? 1 : 0;
}

int wal_iter_next(struct wal_iter *it, struct wal_entry *e)
{
	struct wal__rec_header rh;
	const unsigned char *h;
	struct wal *w;
	int rc;

	if (!it || !e)
		return -EINVAL;
	w = it->w;
	for (;;) {
		if (it->generation != it->w->generation)
			return -WAL_ESTALE;
		if (it->next > it->w->written_lsn)
			return 0;
		if (!it->f) {
			rc = iter_seek(it);
			if (rc < 0)
				return rc;
		}
		rc = read_rec(it, false, &h, &rh);
		if (rc == 0) /* the buffer may predate the write: read again */
			rc = read_rec(it, true, &h, &rh);
		if (rc < 0)
			return rc;
		if (rc == 1 && rh.lsn > it->next)
			return -WAL_ECORRUPT;
		if (rc == 0) {
			/* a clean end of this segment, or damage */
			rc = wal__rd_get(&it->rd, it->off,
					 WAL_RECORD_HEADER_SIZE, true, &h);
			if (rc < 0)
				return rc;
			if (rc == 1 && !wal__is_zero(h, WAL_RECORD_HEADER_SIZE))
				return -WAL_ECORRUPT;
			iter_close_file(it);
			if (it->seg_first == it->next)
				return -WAL_ECORRUPT;
			rc = iter_seek(it);
			if (rc < 0)
				return rc;
			if (it->seg_first != it->next)
				return -WAL_ECORRUPT;
			continue;
		}
		it->off += WAL_RECORD_HEADER_SIZE + (uint64_t)rh.len;
		if (rh.lsn < it->next)
			continue;
		e->lsn = rh.lsn;
		e->type = rh.type;
		e->len = rh.len;
		e->payload = h + WAL_RECORD_HEADER_SIZE;
		it->next++;
		w->hint_gen = it->generation;
		w->hint_lsn = it->next;
		w->hint_seg = it->seg_first;
		w->hint_off = it->off;
		return 1;
	}
}

void wal_iter_close(struct wal_iter *it)
{
	if (!it)
		return;
	iter_close_file(it);
	wal__rd_free(&it->rd);
	mem_free(it);
}

int wal_replay(struct wal *w, uint64_t from_lsn,
	       int (*fn)(const struct wal_entry *e, void *data), void *data)
{
	struct wal_iter *it;
	struct wal_entry e;
	int rc;

	if (!fn)
		return -EINVAL;
	rc = wal_iter_open(w, from_lsn, &it);
	if (rc < 0)
		return rc;
	while ((rc = wal_iter_next(it, &e)) == 1) {
		rc = fn(&e, data);
		if (rc != 0)
			break;
	}
	wal_iter_close(it);
	return rc;
}
