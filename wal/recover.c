/*
 * recover.c - recovery on open: find the segments, verify every record in
 * LSN order, cut the log at the first record that fails its check, and
 * leave the writer positioned at the end.
 *
 * Design notes (see format.c for the layout and invariants):
 *   1. Stray *.tmp files are half-made segments, markers or spares:
 *      deleted.  wal.spare (a zeroed file not yet a segment, write.c) is
 *      not part of the log and is left to wal_open.
 *   2. The start marker (wal.start), if present, gives the first LSN; a
 *      segment whose successor starts at or below it holds only dropped
 *      records and is deleted (a prefix truncation interrupted by a crash
 *      is finished here).
 *   3. Segments are read in LSN order; a segment whose header is bad, or
 *      whose first LSN does not continue the previous one, ends the log.
 *      Inside a segment the scan stops at an all-zero record header (clean
 *      end), at the end of the file, or at the first record that runs past
 *      the file (torn), fails its CRC, or breaks the LSN sequence.
 *   4. Never skip a bad record to read a later good one: everything after
 *      the cut is dropped (the segment is truncated at the cut and
 *      preallocated again so the bytes after the end are zero, later
 *      segments are deleted, highest first, so a crash during recovery
 *      leaves a prefix that the next recovery cuts the same way).
 *   5. Read-only opens do the same scan and report, and change nothing.
 *   6. A clean end (an all-zero record header) followed by non-zero bytes
 *      in the last segment is a crash that lost an earlier unsynced write
 *      but kept a later one (page cache writeback has no order).  Those
 *      bytes may even hold whole records with the right LSNs, which a
 *      later append of the same length would bring back to life: they are
 *      cut like a torn record (reason "torn record").
 */
#include "common/common.h"
#include "wal/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RD_CHUNK (64u * 1024u)

int wal__rd_get(struct wal__rd *rd, uint64_t off, size_t len, bool fresh,
		const unsigned char **p)
{
	size_t want;
	int64_t n;

	if (!fresh && off >= rd->off && off + len <= rd->off + rd->len) {
		*p = rd->buf + (off - rd->off);
		return 1;
	}
	want = len > RD_CHUNK ? len : RD_CHUNK;
	if (want > rd->cap) {
		unsigned char *nb = mem_realloc(rd->buf, want);

		if (!nb)
			return -ENOMEM;
		rd->buf = nb;
		rd->cap = want;
	}
	rd->len = 0;
	n = rd->st->ops->read(rd->st->data, rd->f, rd->buf, want, off);
	if (n < 0)
		return (int)n;
	rd->off = off;
	rd->len = (size_t)n;
	if ((size_t)n < len)
		return 0;
	*p = rd->buf;
	return 1;
}

void wal__rd_free(struct wal__rd *rd)
{
	mem_free(rd->buf);
	rd->buf = NULL;
	rd->cap = rd->len = 0;
}

int wal__seg_scan(struct wal *w, void *f, uint64_t first_lsn, uint64_t stop_lsn,
		  struct wal__scan *sc)
{
	struct wal__rd rd = {.st = w->st, .f = f};
	const unsigned char *h, *pl;
	struct wal__rec_header rh;
	uint64_t fsize;
	int rc;

	rc = w->st->ops->size(w->st->data, f, &fsize);
	if (rc < 0)
		return rc;

	sc->off = WAL_SEGMENT_HEADER_SIZE;
	sc->last = first_lsn - 1;
	sc->records = 0;
	sc->reason = WAL_CUT_NONE;
	for (;;) {
		rc = wal__rd_get(&rd, sc->off, WAL_RECORD_HEADER_SIZE, false,
				 &h);
		if (rc < 0)
			goto out;
		if (rc == 0) {
			/* fewer than a header's bytes left: torn if any are
			 * non-zero */
			if (rd.len && rd.off == sc->off &&
			    !wal__is_zero(rd.buf, rd.len))
				sc->reason = WAL_CUT_TORN;
			break;
		}
		if (wal__is_zero(h, WAL_RECORD_HEADER_SIZE))
			break;
		wal__rec_header_decode(h, &rh);
		if (sc->off + WAL_RECORD_HEADER_SIZE + (uint64_t)rh.len >
		    fsize) {
			sc->reason = WAL_CUT_TORN;
			break;
		}
		rc = wal__rd_get(&rd, sc->off,
				 WAL_RECORD_HEADER_SIZE + (size_t)rh.len, false,
				 &h);
		if (rc < 0)
			goto out;
		if (rc == 0) {
			sc->reason = WAL_CUT_TORN;
			break;
		}
		pl = h + WAL_RECORD_HEADER_SIZE;
		if (!wal__rec_check(h, pl, rh.len)) {
			sc->reason = WAL_CUT_CRC;
			break;
		}
		if (rh.lsn != sc->last + 1) {
			sc->reason = WAL_CUT_LSN;
			break;
		}
		if (stop_lsn && rh.lsn == stop_lsn)
			break;
		sc->last = rh.lsn;
		sc->records++;
		sc->off += WAL_RECORD_HEADER_SIZE + (uint64_t)rh.len;
	}
	rc = 0;
out:
	wal__rd_free(&rd);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Bytes from `from` up to and including the last non-zero byte. */
static uint64_t nonzero_extent(struct wal *w, void *f, uint64_t from)
{
	static _Thread_local unsigned char buf[64 * 1024];
	uint64_t off = from, end = from, limit = UINT64_MAX;
	int64_t n;

	if (w->st->ops->zero_from &&
	    w->st->ops->zero_from(w->st->data, f, &limit) < 0)
		limit = UINT64_MAX;
	while (off < limit) {
		size_t want = sizeof(buf);

		if (limit - off < want)
			want = (size_t)(limit - off);
		n = w->st->ops->read(w->st->data, f, buf, want, off);
		if (n <= 0)
			break;
		for (int64_t i = n - 1; i >= 0; i--) {
			if (buf[i]) {
				end = off + (uint64_t)i + 1;
				break;
			}
		}
		off += (uint64_t)n;
	}
	return end - from;
}

static bool has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && strcmp(s + a - b, suf) == 0;
}

static int read_marker(struct wal *w, uint64_t *start, bool *have)
{
	unsigned char buf[WAL__START_SIZE];
	void *f;
	int64_t n;
	int rc;

	*have = false;
	rc =
	    w->st->ops->open(w->st->data, WAL__START_NAME, WAL_OPEN_RDONLY, &f);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		snprintf(w->errmsg, sizeof(w->errmsg),
			 "cannot open start marker %s: %s", WAL__START_NAME,
			 wal_strerror(rc));
		return rc;
	}
	n = w->st->ops->read(w->st->data, f, buf, sizeof(buf), 0);
	w->st->ops->close(w->st->data, f);
	if (n < 0) {
		snprintf(w->errmsg, sizeof(w->errmsg),
			 "cannot read start marker %s: %s", WAL__START_NAME,
			 wal_strerror((int)n));
		return (int)n;
	}
	if (n != (int64_t)sizeof(buf) || wal__start_decode(buf, start) < 0) {
		snprintf(w->errmsg, sizeof(w->errmsg),
			 "start marker %s is damaged (bad size, magic, "
			 "version or crc)",
			 WAL__START_NAME);
		return -WAL_EFORMAT;
	}
	*have = true;
	return 0;
}

static int remove_seg(struct wal *w, uint64_t first)
{
	char name[WAL__NAME_MAX];
	int rc;

	wal__seg_name(name, first);
	rc = w->st->ops->unlink(w->st->data, name);
	return rc == -ENOENT ? 0 : rc;
}

int wal__recover(struct wal *w, struct wal_recovery_report *rep)
{
	char **names = NULL, name[WAL__NAME_MAX];
	size_t nnames = 0, nf = 0, i0 = 0, i, cut_from;
	uint64_t *firsts = NULL, start = 1, expected, last;
	unsigned oflags = w->read_only ? WAL_OPEN_RDONLY : 0;
	void *tail = NULL, *f;
	bool have_marker, dirty_dir = false;
	struct wal__seg_header sh;
	struct wal__scan sc;
	unsigned char hb[WAL_SEGMENT_HEADER_SIZE];
	int rc;

	memset(rep, 0, sizeof(*rep));
	if (w->sync_mode == WAL_SYNC_DSYNC && !w->read_only)
		oflags |= WAL_OPEN_DSYNC;
	rc = w->st->ops->list(w->st->data, &names, &nnames);
	if (rc < 0) {
		snprintf(w->errmsg, sizeof(w->errmsg),
			 "cannot list log directory: %s", wal_strerror(rc));
		return rc;
	}
	firsts = mem_calloc(nnames ? nnames : 1, sizeof(*firsts));
	if (!firsts) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < nnames; k++) {
		uint64_t v;

		if (strcmp(names[k], WAL__SPARE_TMP) == 0) {
			/* a half-made spare: not part of the log */
			if (!w->read_only) {
				rc = w->st->ops->unlink(w->st->data, names[k]);
				if (rc < 0 && rc != -ENOENT)
					goto err_io;
			}
		} else if (has_suffix(names[k], ".tmp")) {
			if (!w->read_only) {
				rc = w->st->ops->unlink(w->st->data, names[k]);
				if (rc < 0 && rc != -ENOENT)
					goto err_io;
				dirty_dir = true;
			}
			rep->segments_removed++;
		} else if (wal__seg_name_parse(names[k], &v)) {
			firsts[nf++] = v;
		}
	}
	qsort(firsts, nf, sizeof(*firsts), cmp_u64);

	rc = read_marker(w, &start, &have_marker);
	if (rc < 0)
		goto out;
	if (!have_marker)
		start = nf ? firsts[0] : 1;
	/* note 2: segments holding only records below the start */
	while (i0 + 1 < nf && firsts[i0 + 1] <= start) {
		if (!w->read_only) {
			rc = remove_seg(w, firsts[i0]);
			if (rc < 0)
				goto err_io;
			dirty_dir = true;
		}
		rep->segments_removed++;
		i0++;
	}
	if (i0 < nf && firsts[i0] > start)
		start = firsts[i0];

	expected = i0 < nf ? firsts[i0] : start;
	last = expected - 1;
	cut_from = nf;
	for (i = i0; i < nf; i++) {
		wal__seg_name(name, firsts[i]);
		if (firsts[i] != expected) {
			rep->reason = WAL_CUT_GAP;
			snprintf(rep->segment, sizeof(rep->segment), "%s",
				 name);
			rep->cut_lsn = expected;
			cut_from = i;
			break;
		}
		rc = w->st->ops->open(w->st->data, name, oflags, &f);
		if (rc < 0)
			goto err_io;
		rc = (int)w->st->ops->read(w->st->data, f, hb, sizeof(hb), 0);
		if (rc < 0) {
			w->st->ops->close(w->st->data, f);
			goto err_io;
		}
		if (rc != (int)sizeof(hb) ||
		    wal__seg_header_decode(hb, &sh) < 0 ||
		    sh.first_lsn != firsts[i]) {
			rep->reason = WAL_CUT_HEADER;
			snprintf(rep->segment, sizeof(rep->segment), "%s",
				 name);
			rep->cut_lsn = expected;
			rep->bytes_cut = nonzero_extent(w, f, 0);
			w->st->ops->close(w->st->data, f);
			cut_from = i;
			break;
		}
		rc = wal__seg_scan(w, f, firsts[i], 0, &sc);
		if (rc < 0) {
			w->st->ops->close(w->st->data, f);
			goto err_io;
		}
		if (sc.reason != WAL_CUT_NONE) {
			rep->reason = sc.reason;
			snprintf(rep->segment, sizeof(rep->segment), "%s",
				 name);
			rep->cut_offset = sc.off;
			rep->cut_lsn = sc.last + 1;
			rep->bytes_cut = nonzero_extent(w, f, sc.off);
			if (!w->read_only) {
				rc = w->st->ops->truncate(w->st->data, f,
							  sc.off);
				if (rc == 0)
					rc = w->st->ops->allocate(
					    w->st->data, f, sh.segment_size);
				if (rc < 0) {
					w->st->ops->close(w->st->data, f);
					goto err_io;
				}
			}
		}
		rc = wal__segs_push(w, firsts[i]);
		if (rc < 0) {
			w->st->ops->close(w->st->data, f);
			goto out;
		}
		if (tail)
			w->st->ops->close(w->st->data, tail);
		tail = f;
		w->tail_off = sc.off;
		w->tail_size = sh.segment_size;
		last = sc.last;
		expected = last + 1;
		if (sc.reason != WAL_CUT_NONE) {
			cut_from = i + 1;
			break;
		}
	}
	/* note 4: drop what follows the cut, highest first */
	for (size_t k = nf; k > cut_from; k--) {
		if (!w->read_only) {
			rc = remove_seg(w, firsts[k - 1]);
			if (rc < 0)
				goto err_io;
			dirty_dir = true;
		}
		rep->segments_removed++;
	}
	/* note 6: nothing but zeros may follow the end of the log */
	if (tail && rep->reason == WAL_CUT_NONE) {
		uint64_t extra = nonzero_extent(w, tail, w->tail_off);

		if (extra) {
			rep->reason = WAL_CUT_TORN;
			wal__seg_name(rep->segment,
				      w->segs[w->nsegs - 1].first_lsn);
			rep->cut_offset = w->tail_off;
			rep->cut_lsn = last + 1;
			rep->bytes_cut = extra;
			if (!w->read_only) {
				rc = w->st->ops->truncate(w->st->data, tail,
							  w->tail_off);
				if (rc == 0)
					rc = w->st->ops->allocate(
					    w->st->data, tail, w->tail_size);
				if (rc < 0)
					goto err_io;
			}
		}
	}
	/* every kept record is below the start: the log is empty */
	if (w->nsegs && last < start) {
		if (tail)
			w->st->ops->close(w->st->data, tail);
		tail = NULL;
		for (size_t k = 0; k < w->nsegs; k++) {
			if (!w->read_only) {
				rc = remove_seg(w, w->segs[k].first_lsn);
				if (rc < 0)
					goto err_io;
				dirty_dir = true;
			}
			rep->segments_removed++;
		}
		w->nsegs = 0;
	}
	if (dirty_dir && !w->read_only) {
		rc = w->st->ops->sync_dir(w->st->data);
		if (rc < 0)
			goto err_io;
	}
	if (w->read_only && tail) {
		w->st->ops->close(w->st->data, tail);
		tail = NULL;
	}
	w->tail = tail;
	tail = NULL;
	w->first_lsn = start;
	w->next_lsn = last + 1 > start ? last + 1 : start;
	w->wlast_lsn = w->next_lsn - 1;
	w->wstart_lsn = start;
	w->written_lsn = w->wlast_lsn;
	rep->first_lsn = start;
	rep->last_lsn = w->next_lsn - 1;
	rep->records = rep->last_lsn >= start ? rep->last_lsn - start + 1 : 0;
	rep->segments = (uint32_t)w->nsegs;
	rc = 0;
	goto out;

err_io:
	snprintf(w->errmsg, sizeof(w->errmsg), "recovery failed: %s",
		 wal_strerror(rc));
out:
	if (tail)
		w->st->ops->close(w->st->data, tail);
	mem_free(firsts);
	wal_storage_list_free(names, nnames);
	return rc;
}
