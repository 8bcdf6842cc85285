/*
 * storage.c - durable Raft state on wal/: log entries and hard state are
 * records of one forced-write log, snapshots are CRC-checked files.
 *
 * Design notes
 *
 *  WAL records (type, then payload, little endian):
 *    RS_ENTRY  0x52530001  [u64 term][u64 index][u8 entry type][data ...]
 *    RS_HARD   0x52530002  [u64 term][u64 vote][u64 commit]
 *
 *  Replay rules (the WAL hands records back in LSN order):
 *    R1. The latest RS_HARD record is the hard state.
 *    R2. An RS_ENTRY with index i, while the replayed log holds F..L:
 *        F <= i <= L+1: drop i..L, append (a later record for an index
 *        supersedes the earlier one and everything after it: logical
 *        suffix truncation); otherwise the log restarts at i (after a
 *        received snapshot the log holds entries after the snapshot only).
 *
 *  Snapshot file "raft-snap-<index %016x>", written as "<name>.tmp",
 *  synced, renamed, directory synced (byte layout):
 *     0  8  magic "DCRSNAP\0"        24  8  term
 *     8  4  version (1)               32  8  data length D
 *    12  4  conf length C (<= 146)    40  C  raft_conf_encode()
 *    16  8  index                   40+C  D  application data
 *    40+C+D 4  CRC-32C of every byte before it
 *
 *  Invariants
 *    I1. Within one save, the hard state record precedes the entries, so
 *        no durable entry has a term above the durable hard state's term
 *        except after a received snapshot (see I4).
 *    I2. Suffix truncation is physical (wal_truncate_suffix) only when the
 *        latest hard state record lies below the cut; otherwise it is
 *        logical (R2), so a crash never leaves an older hard state.
 *    I3. Before any prefix cut that would drop the latest hard state
 *        record, a copy of it is appended and forced; the cut then keeps it.
 *    I4. A snapshot file is durable before the log is cut for it.  A crash
 *        between the two leaves the snapshot with the old log and hard
 *        state: open keeps the log's entries after the snapshot only if the
 *        log holds the snapshot's last entry with its term (log matching),
 *        else it returns none and the next save empties the log first; it
 *        raises a hard state term below the snapshot's to it with no vote
 *        (a vote in that term was never durable, so never sent), and lowers
 *        a commit index above the last entry (commit need not be durable).
 *    I5. The log reaches back to the previous snapshot (compaction cuts
 *        only up to it), so a newest snapshot that fails its CRC falls back
 *        to the previous one plus the log, provided the log reaches the
 *        damaged snapshot's index; else open reports corruption.
 *    I6. One save or compaction at a time; any failed WAL request or file
 *        write fails the storage for good (DESIGN.md section 9).
 *
 *  Operations and the WAL requests they queue, in order:
 *    save (no snapshot):  [reset: hard state (forced), prefix cut]
 *                         [suffix cut] [hard state] entries; the last
 *                         request is forced, or a wal_sync if none.
 *    save (snapshot):     file; hard state (forced); prefix cut to it;
 *                         entries (last forced).
 *    compact:             file; [hard state copy (forced)] [prefix cut]
 *                         or a wal_sync to carry the callback.
 */
#include "raft/raft.h"

#include "common/common.h"
#include "wal/wal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RS_ENTRY 0x52530001u
#define RS_HARD	 0x52530002u
#define ENTRY_HDR 17u
#define HARD_LEN  24u

#define SNAP_MAGIC   "DCRSNAP"
#define SNAP_VERSION 1u
#define SNAP_HDR     40u
#define SNAP_PREFIX  "raft-snap-"
#define SNAP_NAME_MAX 48

/* Per stored entry: where it lives. */
struct meta {
	uint64_t lsn;
	uint64_t term;
};

struct confrec {
	uint64_t index;
	struct raft_conf conf;
};

struct snapinfo {
	bool present;
	uint64_t index, term;
	struct raft_conf conf;
};

struct raft_storage {
	struct wal *w;
	struct wal_storage *owned_wal_st; /* made here for cfg->dir */
	struct wal_storage *snap_st;	  /* where snapshot files live */
	struct wal_storage *owned_snap_st;
	bool read_only;

	uint64_t first; /* index of m[0] */
	struct meta *m;
	size_t n, cap;
	struct confrec *confs; /* conf entries above snap[0].index */
	size_t nconfs, capconfs;

	struct raft_hard_state hs;
	uint64_t hs_lsn; /* 0: no record */
	struct snapinfo snap[2]; /* newest, previous */
	bool need_reset;

	int failed;
	bool busy, closing;
	raft_storage_cb cb;
	void *cb_data;
	int op_err;
	unsigned outstanding;

	uint8_t *scratch;
	size_t scratch_cap;

	/* what open returned, freed at the next call */
	struct raft_entry *ps_entries;
	size_t ps_n;
	struct raft_snapshot ps_snap;
	unsigned rejected;

	void (*close_cb)(void *data);
	void *close_data;
	char errmsg[256];
};

/* ------------------------------------------------------------- helpers */

const char *raft_storage_strerror(int code)
{
	int c = code < 0 ? -code : code;

	switch (c) {
#define RAFT_STORAGE_ERR_CASE(name, num, msg)                                  \
	case num:                                                              \
		return msg;
		RAFT_STORAGE_ERRORS(RAFT_STORAGE_ERR_CASE)
#undef RAFT_STORAGE_ERR_CASE
	default:
		break;
	}
	return wal_strerror(-c);
}

static void setmsg(struct raft_storage *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void setmsg(struct raft_storage *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->errmsg, sizeof(st->errmsg), fmt, ap);
	va_end(ap);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static int scratch_reserve(struct raft_storage *st, size_t len)
{
	uint8_t *p;

	if (len <= st->scratch_cap)
		return 0;
	p = mem_realloc(st->scratch, len);
	if (p == NULL)
		return -ENOMEM;
	st->scratch = p;
	st->scratch_cap = len;
	return 0;
}

static uint64_t meta_last(const struct raft_storage *st)
{
	return st->first + st->n - 1;
}

static int meta_push(struct raft_storage *st, uint64_t lsn, uint64_t term)
{
	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 64;
		struct meta *m = mem_realloc(st->m, cap * sizeof(*m));

		if (m == NULL)
			return -ENOMEM;
		st->m = m;
		st->cap = cap;
	}
	st->m[st->n].lsn = lsn;
	st->m[st->n].term = term;
	st->n++;
	return 0;
}

/* Keeps entries <= index. */
static void meta_cut_after(struct raft_storage *st, uint64_t index)
{
	if (index < st->first)
		st->n = 0;
	else if (index - st->first + 1 < st->n)
		st->n = (size_t)(index - st->first + 1);
	while (st->nconfs > 0 && st->confs[st->nconfs - 1].index > index)
		st->nconfs--;
}

/* Drops entries <= index. */
static void meta_cut_upto(struct raft_storage *st, uint64_t index)
{
	size_t k;

	if (index < st->first)
		return;
	if (st->n == 0 || index >= meta_last(st)) {
		st->n = 0;
		st->first = index + 1;
		return;
	}
	k = index + 1 - st->first;
	memmove(st->m, st->m + k, (st->n - k) * sizeof(*st->m));
	st->n -= k;
	st->first = index + 1;
}

static void meta_reset(struct raft_storage *st, uint64_t snap_index)
{
	st->n = 0;
	st->first = snap_index + 1;
	st->nconfs = 0;
}

static int conf_note(struct raft_storage *st, uint64_t index, uint8_t type,
		     const void *data, size_t len)
{
	struct raft_conf c;

	if (type != RAFT_ENTRY_CONF || raft_conf_decode(data, len, &c) != 0)
		return 0;
	if (st->nconfs == st->capconfs) {
		size_t cap = st->capconfs ? st->capconfs * 2 : 4;
		struct confrec *p = mem_realloc(st->confs, cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		st->confs = p;
		st->capconfs = cap;
	}
	st->confs[st->nconfs].index = index;
	st->confs[st->nconfs].conf = c;
	st->nconfs++;
	return 0;
}

static void ps_free(struct raft_storage *st)
{
	for (size_t i = 0; i < st->ps_n; i++)
		mem_free(st->ps_entries[i].data);
	mem_free(st->ps_entries);
	st->ps_entries = NULL;
	st->ps_n = 0;
	mem_free(st->ps_snap.data);
	memset(&st->ps_snap, 0, sizeof(st->ps_snap));
}

/* ----------------------------------------------------- snapshot files */

static void snap_name(char *buf, uint64_t index, bool tmp)
{
	snprintf(buf, SNAP_NAME_MAX, SNAP_PREFIX "%016" PRIx64 "%s", index,
		 tmp ? ".tmp" : "");
}

/* 1 and *index for a snapshot file name, 2 for its temp file, 0 else. */
static int snap_name_parse(const char *name, uint64_t *index)
{
	size_t pl = strlen(SNAP_PREFIX);
	uint64_t v = 0;
	const char *p;

	if (strncmp(name, SNAP_PREFIX, pl) != 0)
		return 0;
	p = name + pl;
	for (int i = 0; i < 16; i++, p++) {
		int d;

		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else
			return 0;
		v = (v << 4) | (uint64_t)d;
	}
	*index = v;
	if (*p == '\0')
		return 1;
	if (strcmp(p, ".tmp") == 0)
		return 2;
	return 0;
}

static int snap_write(struct raft_storage *st, const struct raft_snapshot *s)
{
	const struct wal_storage_ops *ops = st->snap_st->ops;
	void *sd = st->snap_st->data;
	char tmp[SNAP_NAME_MAX], name[SNAP_NAME_MAX];
	uint8_t conf[RAFT_CONF_ENCODED_MAX];
	size_t clen = raft_conf_encode(&s->conf, conf);
	size_t total = SNAP_HDR + clen + s->len + 4;
	uint8_t *buf = mem_alloc(total);
	void *f = NULL;
	int rc;

	if (buf == NULL)
		return -ENOMEM;
	memset(buf, 0, SNAP_HDR);
	memcpy(buf, SNAP_MAGIC, 8);
	put32(buf + 8, SNAP_VERSION);
	put32(buf + 12, (uint32_t)clen);
	put64(buf + 16, s->index);
	put64(buf + 24, s->term);
	put64(buf + 32, (uint64_t)s->len);
	memcpy(buf + SNAP_HDR, conf, clen);
	if (s->len > 0)
		memcpy(buf + SNAP_HDR + clen, s->data, s->len);
	put32(buf + total - 4, wal_crc32c(0, buf, total - 4));

	snap_name(tmp, s->index, true);
	snap_name(name, s->index, false);
	rc = ops->open(sd, tmp, WAL_OPEN_CREATE, &f);
	if (rc < 0) {
		setmsg(st, "cannot create snapshot file %s: %s", tmp,
		       wal_strerror(rc));
		goto err_free;
	}
	rc = ops->truncate(sd, f, 0);
	if (rc == 0)
		rc = ops->write(sd, f, buf, total, 0);
	if (rc == 0)
		rc = ops->sync(sd, f);
	ops->close(sd, f);
	if (rc < 0) {
		setmsg(st, "cannot write snapshot file %s: %s", tmp,
		       wal_strerror(rc));
		goto err_unlink;
	}
	rc = ops->rename(sd, tmp, name);
	if (rc < 0) {
		setmsg(st, "cannot rename snapshot file %s: %s", tmp,
		       wal_strerror(rc));
		goto err_unlink;
	}
	rc = ops->sync_dir(sd);
	if (rc < 0)
		setmsg(st, "cannot sync the snapshot directory: %s",
		       wal_strerror(rc));
	mem_free(buf);
	return rc;

err_unlink:
	ops->unlink(sd, tmp);
err_free:
	mem_free(buf);
	return rc;
}

/*
 * Reads and checks snapshot file index: 0 and *out filled (out->data from
 * mem_alloc), -RAFT_STORAGE_ECORRUPT (detail in errmsg) or -errno.
 */
static int snap_read(struct raft_storage *st, uint64_t index,
		     struct raft_snapshot *out)
{
	const struct wal_storage_ops *ops = st->snap_st->ops;
	void *sd = st->snap_st->data;
	char name[SNAP_NAME_MAX];
	uint8_t *buf = NULL;
	uint64_t size, dlen;
	uint32_t clen;
	void *f = NULL;
	int64_t got;
	int rc;

	snap_name(name, index, false);
	rc = ops->open(sd, name, WAL_OPEN_RDONLY, &f);
	if (rc < 0) {
		setmsg(st, "cannot open snapshot %s: %s", name,
		       wal_strerror(rc));
		return rc;
	}
	rc = ops->size(sd, f, &size);
	if (rc < 0)
		goto err_close;
	rc = -RAFT_STORAGE_ECORRUPT;
	if (size < SNAP_HDR + 4 || size > SIZE_MAX / 2) {
		setmsg(st, "snapshot %s: file too short", name);
		goto err_close;
	}
	buf = mem_alloc((size_t)size);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto err_close;
	}
	got = ops->read(sd, f, buf, (size_t)size, 0);
	if (got < 0) {
		rc = (int)got;
		goto err_close;
	}
	rc = -RAFT_STORAGE_ECORRUPT;
	if ((uint64_t)got != size) {
		setmsg(st, "snapshot %s: short read", name);
		goto err_close;
	}
	if (memcmp(buf, SNAP_MAGIC, 8) != 0 || get32(buf + 8) != SNAP_VERSION) {
		setmsg(st, "snapshot %s: bad magic or version", name);
		goto err_close;
	}
	if (wal_crc32c(0, buf, (size_t)size - 4) !=
	    get32(buf + (size_t)size - 4)) {
		setmsg(st, "snapshot %s: CRC mismatch", name);
		goto err_close;
	}
	clen = get32(buf + 12);
	dlen = get64(buf + 32);
	if (clen > RAFT_CONF_ENCODED_MAX ||
	    dlen != size - SNAP_HDR - 4 - clen || get64(buf + 16) != index ||
	    raft_conf_decode(buf + SNAP_HDR, clen, &out->conf) != 0) {
		setmsg(st, "snapshot %s: inconsistent header", name);
		goto err_close;
	}
	out->index = index;
	out->term = get64(buf + 24);
	out->len = (size_t)dlen;
	out->data = NULL;
	if (dlen > 0) {
		out->data = mem_alloc((size_t)dlen);
		if (out->data == NULL) {
			rc = -ENOMEM;
			goto err_close;
		}
		memcpy(out->data, buf + SNAP_HDR + clen, (size_t)dlen);
	}
	rc = 0;
err_close:
	mem_free(buf);
	ops->close(sd, f);
	return rc;
}

/* Deletes snapshot files other than the two kept (best effort). */
static void snap_prune(struct raft_storage *st)
{
	const struct wal_storage_ops *ops = st->snap_st->ops;
	char **names = NULL;
	size_t count = 0;
	uint64_t idx;

	if (ops->list(st->snap_st->data, &names, &count) != 0)
		return;
	for (size_t i = 0; i < count; i++) {
		int kind = snap_name_parse(names[i], &idx);

		if (kind == 0)
			continue;
		if (kind == 1 && ((st->snap[0].present && idx == st->snap[0].index) ||
				  (st->snap[1].present && idx == st->snap[1].index)))
			continue;
		ops->unlink(st->snap_st->data, names[i]);
	}
	wal_storage_list_free(names, count);
	ops->sync_dir(st->snap_st->data);
}

static void snap_push(struct raft_storage *st, const struct raft_snapshot *s)
{
	if (!st->snap[0].present || st->snap[0].index != s->index)
		st->snap[1] = st->snap[0];
	st->snap[0].present = true;
	st->snap[0].index = s->index;
	st->snap[0].term = s->term;
	st->snap[0].conf = s->conf;
}

/* ------------------------------------------------- WAL request plumbing */

static void op_done(struct raft_storage *st)
{
	raft_storage_cb cb = st->cb;
	void *data = st->cb_data;
	int err = st->op_err;

	if (err != 0 && st->failed == 0) {
		st->failed = err;
		setmsg(st, "raft storage write failed: %s", wal_strerror(err));
	}
	st->busy = false;
	st->cb = NULL;
	if (cb != NULL)
		cb(st, err, data);
}

static void on_req(struct wal *w, int64_t result, void *data)
{
	struct raft_storage *st = data;

	(void)w;
	if (result < 0 && st->op_err == 0)
		st->op_err = (int)result;
	if (--st->outstanding == 0)
		op_done(st);
}

/* Records the operation's first error; returns rc. */
static int note(struct raft_storage *st, int rc)
{
	if (rc < 0 && st->op_err == 0)
		st->op_err = rc;
	return rc;
}

/* Counts a queued request, or records a synchronous failure. */
static int track(struct raft_storage *st, int rc)
{
	if (rc < 0)
		return note(st, rc);
	st->outstanding++;
	return 0;
}

static int q_hard(struct raft_storage *st, const struct raft_hard_state *hs,
		  bool forced)
{
	uint8_t buf[HARD_LEN];
	uint64_t lsn = wal_next_lsn(st->w);
	int rc;

	put64(buf, hs->term);
	put64(buf + 8, hs->vote);
	put64(buf + 16, hs->commit);
	rc = track(st, wal_append(st->w, RS_HARD, buf, sizeof(buf), forced,
				  on_req, st));
	if (rc == 0) {
		st->hs = *hs;
		st->hs_lsn = lsn;
	}
	return rc;
}

static int q_entry(struct raft_storage *st, const struct raft_entry *e,
		   bool forced)
{
	uint64_t lsn = wal_next_lsn(st->w);
	int rc;

	rc = scratch_reserve(st, ENTRY_HDR + e->len);
	if (rc < 0)
		return note(st, rc);
	put64(st->scratch, e->term);
	put64(st->scratch + 8, e->index);
	st->scratch[16] = e->type;
	if (e->len > 0)
		memcpy(st->scratch + ENTRY_HDR, e->data, e->len);
	rc = track(st, wal_append(st->w, RS_ENTRY, st->scratch,
				  ENTRY_HDR + e->len, forced, on_req, st));
	if (rc < 0)
		return rc;
	meta_cut_after(st, e->index - 1);
	if (st->n == 0)
		st->first = e->index;
	rc = meta_push(st, lsn, e->term);
	if (rc == 0)
		rc = conf_note(st, e->index, e->type, e->data, e->len);
	return note(st, rc);
}

/*
 * Cuts the log below lsn p, rewriting the hard state first when its record
 * would be dropped (I3).  p == 0: cut everything except that copy.
 */
static int q_prefix(struct raft_storage *st, uint64_t p)
{
	int rc;

	if (st->hs_lsn != 0 && (p == 0 || st->hs_lsn < p)) {
		struct raft_hard_state hs = st->hs;

		rc = q_hard(st, &hs, true);
		if (rc < 0)
			return rc;
		if (p == 0)
			p = st->hs_lsn;
	}
	if (p == 0)
		p = wal_next_lsn(st->w);
	if (p <= wal_first_lsn(st->w))
		return 0;
	return track(st, wal_truncate_prefix(st->w, p, on_req, st));
}

static int op_begin(struct raft_storage *st, raft_storage_cb cb, void *data)
{
	if (st->closing)
		return -RAFT_STORAGE_ECLOSED;
	if (st->failed != 0)
		return -RAFT_STORAGE_EFAILED;
	if (st->busy)
		return -RAFT_STORAGE_EBUSY;
	if (st->read_only)
		return -WAL_EREADONLY;
	ps_free(st);
	st->busy = true;
	st->cb = cb;
	st->cb_data = data;
	st->op_err = 0;
	st->outstanding = 0;
	return 0;
}

/* Ends queueing: with nothing queued, fails or fires nothing (returns rc). */
static int op_end(struct raft_storage *st)
{
	int rc = st->op_err;

	if (st->outstanding == 0 && rc == 0)
		rc = track(st, wal_sync(st->w, on_req, st));
	if (st->outstanding > 0)
		return 0; /* the callback reports any error */
	st->busy = false;
	st->cb = NULL;
	if (st->failed == 0) {
		st->failed = rc;
		setmsg(st, "raft storage write failed: %s", wal_strerror(rc));
	}
	return rc;
}

/* ------------------------------------------------------------------ save */

static int check_ready(const struct raft_storage *st,
		       const struct raft_ready *rd)
{
	uint64_t last, floor;

	if (rd->snapshot != NULL) {
		const struct raft_snapshot *s = rd->snapshot;

		if ((s->len > 0 && s->data == NULL) ||
		    (st->snap[0].present && s->index < st->snap[0].index))
			return -EINVAL;
		last = floor = s->index;
	} else {
		last = meta_last(st);
		floor = st->snap[0].present ? st->snap[0].index : 0;
	}
	if (rd->n_entries == 0)
		return 0;
	if (rd->entries == NULL || rd->entries[0].index <= floor ||
	    rd->entries[0].index > last + 1)
		return -EINVAL;
	for (size_t i = 0; i < rd->n_entries; i++) {
		const struct raft_entry *e = &rd->entries[i];

		if (e->index != rd->entries[0].index + i || e->term == 0 ||
		    (e->len > 0 && e->data == NULL) ||
		    e->len > UINT32_MAX - ENTRY_HDR - WAL_RECORD_HEADER_SIZE)
			return -EINVAL;
	}
	return 0;
}

int raft_storage_save(struct raft_storage *st, const struct raft_ready *rd,
		      raft_storage_cb cb, void *cb_data)
{
	bool hs_written = false;
	int rc;

	if (rd == NULL)
		return -EINVAL;
	if (st->closing)
		return -RAFT_STORAGE_ECLOSED;
	if (st->failed == 0 && !st->busy) {
		rc = check_ready(st, rd);
		if (rc < 0)
			return rc;
	}
	rc = op_begin(st, cb, cb_data);
	if (rc < 0)
		return rc;

	if (rd->snapshot != NULL) {
		const struct raft_hard_state *hs =
			rd->has_hard_state ? &rd->hard_state : &st->hs;
		struct raft_hard_state copy = *hs;

		rc = snap_write(st, rd->snapshot);
		if (rc < 0) {
			st->op_err = rc;
			return op_end(st);
		}
		snap_push(st, rd->snapshot);
		snap_prune(st);
		meta_reset(st, rd->snapshot->index);
		st->need_reset = false;
		if (q_hard(st, &copy, true) < 0)
			return op_end(st);
		hs_written = true;
		if (track(st, wal_truncate_prefix(st->w, st->hs_lsn, on_req,
						  st)) < 0)
			return op_end(st);
	} else if (st->need_reset) {
		if (q_prefix(st, 0) < 0)
			return op_end(st);
		st->need_reset = false;
	}

	if (rd->n_entries > 0) {
		uint64_t i = rd->entries[0].index;

		if (st->n > 0 && i >= st->first && i <= meta_last(st)) {
			uint64_t lsn = st->m[i - st->first].lsn;

			/* I2: physical only when the hard state survives */
			if (st->hs_lsn < lsn &&
			    track(st, wal_truncate_suffix(st->w, lsn - 1, on_req,
							  st)) < 0)
				return op_end(st);
			meta_cut_after(st, i - 1);
		}
	}
	if (rd->has_hard_state && !hs_written &&
	    q_hard(st, &rd->hard_state, rd->n_entries == 0) < 0)
		return op_end(st);
	for (size_t k = 0; k < rd->n_entries; k++) {
		if (q_entry(st, &rd->entries[k], k + 1 == rd->n_entries) < 0)
			return op_end(st);
	}
	return op_end(st);
}

/* --------------------------------------------------------------- compact */

int raft_storage_compact(struct raft_storage *st, uint64_t index,
			 const void *data, size_t len, raft_storage_cb cb,
			 void *cb_data)
{
	struct raft_snapshot s;
	uint64_t keep_from, p = 0;
	int rc;

	if (len > 0 && data == NULL)
		return -EINVAL;
	if (!st->closing && st->failed == 0 && !st->busy) {
		if (st->snap[0].present && index <= st->snap[0].index)
			return -RAFT_STORAGE_ECOMPACTED;
		if (index == 0 || st->n == 0 || index < st->first ||
		    index > meta_last(st))
			return -RAFT_STORAGE_ERANGE;
	}
	rc = op_begin(st, cb, cb_data);
	if (rc < 0)
		return rc;

	memset(&s, 0, sizeof(s));
	s.index = index;
	s.term = st->m[index - st->first].term;
	s.conf = st->snap[0].conf;
	for (size_t k = 0; k < st->nconfs; k++) {
		if (st->confs[k].index <= index)
			s.conf = st->confs[k].conf;
	}
	s.len = len;
	s.data = (void *)(uintptr_t)data;
	rc = snap_write(st, &s);
	if (rc < 0) {
		st->op_err = rc;
		return op_end(st);
	}
	snap_push(st, &s);
	snap_prune(st);
	{
		size_t k = 0;

		while (k < st->nconfs && st->confs[k].index <= index)
			k++;
		if (k > 0) {
			memmove(st->confs, st->confs + k,
				(st->nconfs - k) * sizeof(*st->confs));
			st->nconfs -= k;
		}
	}

	/* I5: the log keeps reaching back to the previous snapshot */
	keep_from = st->snap[1].present ? st->snap[1].index + 1 : 1;
	if (keep_from > st->first) {
		if (st->n > 0 && keep_from <= meta_last(st))
			p = st->m[keep_from - st->first].lsn;
		meta_cut_upto(st, keep_from - 1);
		if (q_prefix(st, p) < 0)
			return op_end(st);
	}
	return op_end(st);
}

/* ------------------------------------------------------------------ open */

struct replay {
	struct raft_storage *st;
	struct raft_entry *e; /* the replayed log, indexes F .. F+n-1 */
	uint64_t *lsn;
	size_t n, cap;
	int err;
};

static void replay_drop(struct replay *r, size_t keep)
{
	for (size_t i = keep; i < r->n; i++)
		mem_free(r->e[i].data);
	r->n = keep;
}

static int replay_fn(const struct wal_entry *we, void *data)
{
	struct replay *r = data;
	const uint8_t *p = we->payload;
	struct raft_entry e;

	if (we->type == RS_HARD && we->len == HARD_LEN) {
		r->st->hs.term = get64(p);
		r->st->hs.vote = get64(p + 8);
		r->st->hs.commit = get64(p + 16);
		r->st->hs_lsn = we->lsn;
		return 0;
	}
	if (we->type != RS_ENTRY || we->len < ENTRY_HDR) {
		setmsg(r->st, "log record %" PRIu64 ": not a raft record",
		       we->lsn);
		return -RAFT_STORAGE_ECORRUPT;
	}
	memset(&e, 0, sizeof(e));
	e.term = get64(p);
	e.index = get64(p + 8);
	e.type = p[16];
	e.len = we->len - ENTRY_HDR;
	if (e.index == 0 || e.term == 0) {
		setmsg(r->st, "log record %" PRIu64 ": bad entry header",
		       we->lsn);
		return -RAFT_STORAGE_ECORRUPT;
	}
	if (r->n > 0 && e.index >= r->e[0].index &&
	    e.index <= r->e[0].index + r->n)
		replay_drop(r, (size_t)(e.index - r->e[0].index));
	else
		replay_drop(r, 0); /* R2: the log restarts here */
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct raft_entry *ne = mem_realloc(r->e, cap * sizeof(*ne));
		uint64_t *nl;

		if (ne == NULL)
			return -ENOMEM;
		r->e = ne;
		nl = mem_realloc(r->lsn, cap * sizeof(*nl));
		if (nl == NULL)
			return -ENOMEM;
		r->lsn = nl;
		r->cap = cap;
	}
	if (e.len > 0) {
		e.data = mem_alloc(e.len);
		if (e.data == NULL)
			return -ENOMEM;
		memcpy(e.data, p + ENTRY_HDR, e.len);
	}
	r->e[r->n] = e;
	r->lsn[r->n] = we->lsn;
	r->n++;
	return 0;
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* Lists snapshot indexes, newest first; removes temp files. */
static int snap_list(struct raft_storage *st, uint64_t **out, size_t *count)
{
	const struct wal_storage_ops *ops = st->snap_st->ops;
	char **names = NULL;
	size_t n = 0, k = 0;
	uint64_t *v, idx;
	int rc;

	rc = ops->list(st->snap_st->data, &names, &n);
	if (rc < 0)
		return rc;
	v = mem_calloc(n ? n : 1, sizeof(*v));
	if (v == NULL) {
		wal_storage_list_free(names, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		int kind = snap_name_parse(names[i], &idx);

		if (kind == 1)
			v[k++] = idx;
		else if (kind == 2 && !st->read_only)
			ops->unlink(st->snap_st->data, names[i]);
	}
	wal_storage_list_free(names, n);
	qsort(v, k, sizeof(*v), cmp_desc);
	*out = v;
	*count = k;
	return 0;
}

/*
 * Picks the snapshot and the entries after it (I4, I5).  Fills st->ps_snap
 * (index 0 and no data when there is none) and sets *from to the position
 * in r of the first entry to return (r->n: none).
 */
static int choose(struct raft_storage *st, struct replay *r,
		  const uint64_t *snaps, size_t nsnaps, bool *have,
		  size_t *from)
{
	uint64_t F = r->n ? r->e[0].index : 0;
	uint64_t L = r->n ? r->e[0].index + r->n - 1 : 0;
	uint64_t need = 0; /* a rejected snapshot's index the log must reach */
	char first_err[200] = "";
	int rc;

	for (size_t i = 0; i <= nsnaps; i++) {
		struct raft_snapshot s;
		uint64_t S;

		memset(&s, 0, sizeof(s));
		if (i < nsnaps) {
			rc = snap_read(st, snaps[i], &s);
			if (rc == -ENOMEM)
				return rc;
			if (rc < 0) {
				if (first_err[0] == '\0')
					snprintf(first_err, sizeof(first_err), "%.150s",
						 st->errmsg);
				st->rejected++;
				if (need == 0)
					need = snaps[i];
				continue;
			}
		} else if (nsnaps > 0 && (r->n == 0 || F != 1)) {
			break; /* no snapshot left, and the log does not start at 1 */
		}
		S = s.index;
		if (need > 0 && (r->n == 0 || L < need || F > S + 1)) {
			mem_free(s.data);
			break;
		}
		if (r->n > 0 && F > S + 1) {
			setmsg(st, "log starts at index %" PRIu64
			       " after snapshot %" PRIu64 ": entries missing",
			       F, S);
			mem_free(s.data);
			return -RAFT_STORAGE_ECORRUPT;
		}
		*have = i < nsnaps;
		st->ps_snap = s;
		if (r->n == 0 || L <= S) {
			*from = r->n;
		} else if (F == S + 1 || r->e[S - F].term == s.term) {
			*from = (size_t)(S + 1 - F);
		} else {
			*from = r->n; /* I4: a divergent log after the snapshot */
			st->need_reset = true;
		}
		if (first_err[0] != '\0')
			setmsg(st, "%.150s; using snapshot %" PRIu64 " instead",
			       first_err, S);
		return 0;
	}
	setmsg(st, "%.150s; no older snapshot with a log that reaches it",
	       first_err[0] ? first_err : "snapshot unusable");
	return -RAFT_STORAGE_ECORRUPT;
}

static int load(struct raft_storage *st, struct raft_persisted *ps)
{
	struct replay r = { .st = st };
	uint64_t *snaps = NULL;
	size_t nsnaps = 0, from = 0;
	bool have = false;
	uint64_t S, last;
	int rc;

	rc = wal_replay(st->w, wal_first_lsn(st->w), replay_fn, &r);
	if (rc != 0) {
		if (rc != -RAFT_STORAGE_ECORRUPT)
			setmsg(st, "cannot read the log: %s",
			       raft_storage_strerror(rc));
		goto out;
	}
	rc = snap_list(st, &snaps, &nsnaps);
	if (rc < 0) {
		setmsg(st, "cannot list snapshots: %s", wal_strerror(rc));
		goto out;
	}
	rc = choose(st, &r, snaps, nsnaps, &have, &from);
	if (rc < 0)
		goto out;
	S = st->ps_snap.index;
	if (have) {
		st->snap[0].present = true;
		st->snap[0].index = S;
		st->snap[0].term = st->ps_snap.term;
		st->snap[0].conf = st->ps_snap.conf;
		for (size_t i = 0; i < nsnaps; i++) {
			if (snaps[i] < S) {
				st->snap[1].present = true;
				st->snap[1].index = snaps[i];
				break;
			}
		}
	}

	/* the storage's own view: the replayed log, unless reset */
	if (st->need_reset || r.n == 0 || r.e[0].index + r.n - 1 <= S) {
		meta_reset(st, S);
	} else {
		st->first = r.e[0].index;
		for (size_t i = 0; i < r.n && rc == 0; i++)
			rc = meta_push(st, r.lsn[i], r.e[i].term);
		for (size_t i = from; i < r.n && rc == 0; i++)
			rc = conf_note(st, r.e[i].index, r.e[i].type,
				       r.e[i].data, r.e[i].len);
		if (rc < 0)
			goto out;
	}

	/* hand out entries from..n; the rest are freed */
	st->ps_n = r.n - from;
	if (st->ps_n > 0) {
		st->ps_entries = mem_alloc(st->ps_n * sizeof(*st->ps_entries));
		if (st->ps_entries == NULL) {
			st->ps_n = 0;
			rc = -ENOMEM;
			goto out;
		}
		memcpy(st->ps_entries, r.e + from,
		       st->ps_n * sizeof(*st->ps_entries));
		r.n = from;
	}

	/* I4: a hard state older than the snapshot, a commit past the log */
	if (st->hs.term < st->ps_snap.term) {
		st->hs.term = st->ps_snap.term;
		st->hs.vote = 0;
	}
	last = S + st->ps_n;
	if (st->hs.commit > last)
		st->hs.commit = last;

	memset(ps, 0, sizeof(*ps));
	ps->hard_state = st->hs;
	ps->snapshot = have ? &st->ps_snap : NULL;
	ps->entries = st->ps_entries;
	ps->n_entries = st->ps_n;
out:
	replay_drop(&r, 0);
	mem_free(r.e);
	mem_free(r.lsn);
	mem_free(snaps);
	return rc;
}

static void free_st(struct raft_storage *st)
{
	ps_free(st);
	wal_storage_free(st->owned_snap_st);
	wal_storage_free(st->owned_wal_st);
	mem_free(st->m);
	mem_free(st->confs);
	mem_free(st->scratch);
	mem_free(st);
}

static void on_open_failed(void *data)
{
	free_st(data);
}

int raft_storage_open(const struct wal_config *cfg, const char *snapshot_dir,
		      struct raft_storage **out, struct raft_persisted *ps,
		      char *err, size_t errlen)
{
	struct raft_storage *st;
	struct wal_config wc;
	int rc;

	if (cfg == NULL || out == NULL || ps == NULL ||
	    (cfg->storage == NULL && cfg->dir == NULL)) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "no log directory or storage");
		return -EINVAL;
	}
	st = mem_calloc(1, sizeof(*st));
	if (st == NULL)
		return -ENOMEM;
	st->first = 1;
	st->read_only = cfg->read_only;
	wc = *cfg;
	if (wc.storage == NULL) {
		rc = wal_file_storage_new(cfg->dir, &st->owned_wal_st);
		if (rc < 0) {
			setmsg(st, "cannot open log directory %s: %s",
			       cfg->dir, wal_strerror(rc));
			goto err_free;
		}
		wc.storage = st->owned_wal_st;
	}
	st->snap_st = wc.storage;
	if (snapshot_dir != NULL &&
	    !(cfg->storage == NULL && strcmp(snapshot_dir, cfg->dir) == 0)) {
		rc = wal_file_storage_new(snapshot_dir, &st->owned_snap_st);
		if (rc < 0) {
			setmsg(st, "cannot open snapshot directory %s: %s",
			       snapshot_dir, wal_strerror(rc));
			goto err_free;
		}
		st->snap_st = st->owned_snap_st;
	}
	rc = wal_open(&wc, &st->w, NULL);
	if (rc < 0) {
		setmsg(st, "cannot open the log: %s", wal_strerror(rc));
		goto err_free;
	}
	rc = load(st, ps);
	if (rc < 0)
		goto err_close;
	*out = st;
	return 0;

err_close:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", st->errmsg);
	/* the storages must outlive the log: freed in its close callback
	 * (at once in manual mode, on the loop in threaded mode) */
	wal_close(st->w, on_open_failed, st);
	return rc;
err_free:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", st->errmsg);
	free_st(st);
	return rc;
}

/* ---------------------------------------------------------------- misc */

int raft_storage_step(struct raft_storage *st)
{
	return wal_step(st->w);
}

size_t raft_storage_pending(const struct raft_storage *st)
{
	return wal_pending(st->w);
}

struct wal *raft_storage_wal(struct raft_storage *st)
{
	return st->w;
}

int raft_storage_failed(const struct raft_storage *st)
{
	return st->failed;
}

const char *raft_storage_errmsg(const struct raft_storage *st)
{
	return st->errmsg;
}

unsigned raft_storage_snapshots_rejected(const struct raft_storage *st)
{
	return st->rejected;
}

static void on_closed(void *data)
{
	struct raft_storage *st = data;
	void (*cb)(void *) = st->close_cb;
	void *cb_data = st->close_data;

	free_st(st);
	if (cb != NULL)
		cb(cb_data);
}

void raft_storage_close(struct raft_storage *st, void (*cb)(void *data),
			void *data)
{
	if (st == NULL) {
		if (cb != NULL)
			cb(data);
		return;
	}
	st->closing = true;
	st->close_cb = cb;
	st->close_data = data;
	wal_close(st->w, on_closed, st);
}
