/*
 * storage_mem.c - an in-memory storage backend that can lose power: each
 * file keeps its current bytes and the bytes that were durable at its last
 * sync, so a crash can drop (or tear) whatever was not synced; and any
 * operation can be made to fail with a chosen errno at the N-th call.
 *
 * Design notes:
 *   - Files are sparse: a file has a logical length and a buffer that may be
 *     shorter; bytes past the buffer read as zero.  Preallocating a 64 MiB
 *     segment therefore costs nothing.  Invariant: buffer bytes in
 *     [len, cap) are zero.
 *   - Sync copies only the range written since the last sync (dirty range)
 *     from the current to the synced image.
 *   - Metadata changes (create, truncate, allocate, rename, unlink) are
 *     durable at once (they apply to both images); see wal.h.
 *   - The most recent unsynced write is remembered (file, offset, bytes) so
 *     wal_mem_storage_crash_torn can land a prefix of it.
 *   - One mutex guards everything: the log's writer thread and loop thread
 *     may call in at once.
 */
#include "common/common.h"
#include "wal/internal.h"

#include <errno.h>
#include <string.h>

struct mbuf {
	unsigned char *p;
	size_t cap;
	uint64_t len;
};

struct mfile {
	struct mfile *next;
	char *name;
	bool linked;
	int refs;
	struct mbuf cur, syn;
	bool has_dirty;
	uint64_t dirty_lo, dirty_hi;
};

struct mhandle {
	struct mfile *f;
	bool dsync;
};

struct mstore {
	pthread_mutex_t lock;
	struct mfile *files;
	long counts[11];
	unsigned fail_mask;
	long fail_nth;
	int fail_err;
	bool fail_sticky;
	bool fail_tripped;
	struct mfile *lw_file;
	uint64_t lw_off;
	unsigned char *lw_data;
	size_t lw_len;
};

/* ---- buffers */

static int mbuf_reserve(struct mbuf *b, uint64_t n)
{
	unsigned char *np;
	size_t cap;

	if (n <= b->cap)
		return 0;
	if (n > SIZE_MAX / 2)
		return -ENOSPC;
	cap = b->cap ? b->cap : 256;
	while (cap < n)
		cap *= 2;
	np = mem_realloc(b->p, cap);
	if (!np)
		return -ENOMEM;
	memset(np + b->cap, 0, cap - b->cap);
	b->p = np;
	b->cap = cap;
	return 0;
}

static int mbuf_write(struct mbuf *b, uint64_t off, const void *src, size_t len)
{
	int err = mbuf_reserve(b, off + len);

	if (err)
		return err;
	memcpy(b->p + off, src, len);
	if (off + len > b->len)
		b->len = off + len;
	return 0;
}

static void mbuf_truncate(struct mbuf *b, uint64_t size)
{
	if (size < b->len && size < b->cap) {
		uint64_t end = b->len < b->cap ? b->len : b->cap;

		memset(b->p + size, 0, end - size);
	}
	b->len = size;
}

static size_t mbuf_read(const struct mbuf *b, void *dst, size_t len,
			uint64_t off)
{
	size_t n, have;

	if (off >= b->len)
		return 0;
	n = b->len - off < len ? (size_t)(b->len - off) : len;
	have = off < b->cap ? b->cap - off : 0;
	if (have > n)
		have = n;
	if (have)
		memcpy(dst, b->p + off, have);
	memset((char *)dst + have, 0, n - have);
	return n;
}

/* dst becomes a copy of src. */
static int mbuf_copy(struct mbuf *dst, const struct mbuf *src)
{
	size_t used = src->len < src->cap ? (size_t)src->len : src->cap;
	int err;

	mbuf_truncate(dst, 0);
	err = mbuf_reserve(dst, used);
	if (err)
		return err;
	if (used)
		memcpy(dst->p, src->p, used);
	dst->len = src->len;
	return 0;
}

/* ---- files */

static void mfile_free(struct mstore *m, struct mfile *f)
{
	struct mfile **pp;

	for (pp = &m->files; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	if (m->lw_file == f)
		m->lw_file = NULL;
	mem_free(f->name);
	mem_free(f->cur.p);
	mem_free(f->syn.p);
	mem_free(f);
}

static struct mfile *mfind(struct mstore *m, const char *name)
{
	for (struct mfile *f = m->files; f; f = f->next)
		if (f->linked && strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void munlink(struct mstore *m, struct mfile *f)
{
	f->linked = false;
	if (f->refs == 0)
		mfile_free(m, f);
}

static int op_index(unsigned kind)
{
	return __builtin_ctz(kind);
}

/* Counts an operation; returns the injected error if it must fail. */
static int op_begin(struct mstore *m, unsigned kind)
{
	m->counts[op_index(kind)]++;
	if (!(m->fail_mask & kind))
		return 0;
	if (m->fail_tripped)
		return m->fail_sticky ? m->fail_err : 0;
	if (m->fail_nth <= 0)
		return 0;
	if (--m->fail_nth == 0) {
		m->fail_tripped = true;
		return m->fail_err;
	}
	return 0;
}

/* ---- ops */

static int m_open(void *data, const char *name, unsigned flags, void **file)
{
	struct mstore *m = data;
	struct mhandle *h;
	struct mfile *f;
	int err;

	h = mem_alloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_OPEN);
	if (err)
		goto err_unlock;
	f = mfind(m, name);
	if (!f) {
		if (!(flags & WAL_OPEN_CREATE) || (flags & WAL_OPEN_RDONLY)) {
			err = -ENOENT;
			goto err_unlock;
		}
		f = mem_calloc(1, sizeof(*f));
		if (!f) {
			err = -ENOMEM;
			goto err_unlock;
		}
		f->name = mem_strdup(name);
		if (!f->name) {
			mem_free(f);
			err = -ENOMEM;
			goto err_unlock;
		}
		f->linked = true;
		f->next = m->files;
		m->files = f;
	}
	f->refs++;
	h->f = f;
	h->dsync = (flags & WAL_OPEN_DSYNC) != 0;
	pthread_mutex_unlock(&m->lock);
	*file = h;
	return 0;

err_unlock:
	pthread_mutex_unlock(&m->lock);
	mem_free(h);
	return err;
}

static void m_close(void *data, void *file)
{
	struct mstore *m = data;
	struct mhandle *h = file;

	pthread_mutex_lock(&m->lock);
	if (--h->f->refs == 0 && !h->f->linked)
		mfile_free(m, h->f);
	pthread_mutex_unlock(&m->lock);
	mem_free(h);
}

static int64_t m_read(void *data, void *file, void *buf, size_t len,
		      uint64_t off)
{
	struct mstore *m = data;
	struct mhandle *h = file;
	int64_t rc;

	pthread_mutex_lock(&m->lock);
	rc = op_begin(m, WAL_MEM_OP_READ);
	if (!rc)
		rc = (int64_t)mbuf_read(&h->f->cur, buf, len, off);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static void mark_dirty(struct mfile *f, uint64_t lo, uint64_t hi)
{
	if (!f->has_dirty) {
		f->has_dirty = true;
		f->dirty_lo = lo;
		f->dirty_hi = hi;
		return;
	}
	if (lo < f->dirty_lo)
		f->dirty_lo = lo;
	if (hi > f->dirty_hi)
		f->dirty_hi = hi;
}

static int sync_file(struct mfile *f)
{
	int err = 0;

	if (f->has_dirty) {
		uint64_t lo = f->dirty_lo, hi = f->dirty_hi;

		if (hi > f->cur.len)
			hi = f->cur.len;
		if (lo < hi) {
			err = mbuf_reserve(&f->syn, hi);
			if (err)
				return err;
			mbuf_read(&f->cur, f->syn.p + lo, (size_t)(hi - lo),
				  lo);
		}
		f->has_dirty = false;
	}
	if (f->syn.len != f->cur.len) {
		if (f->cur.len < f->syn.len)
			mbuf_truncate(&f->syn, f->cur.len);
		else
			f->syn.len = f->cur.len;
	}
	return err;
}

static int m_write(void *data, void *file, const void *buf, size_t len,
		   uint64_t off)
{
	struct mstore *m = data;
	struct mhandle *h = file;
	struct mfile *f = h->f;
	unsigned char *copy = NULL;
	int err;

	if (!h->dsync && len) {
		copy = mem_alloc(len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, buf, len);
	}
	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_WRITE);
	if (err)
		goto out;
	err = mbuf_write(&f->cur, off, buf, len);
	if (err)
		goto out;
	mark_dirty(f, off, off + len);
	if (h->dsync) {
		err = sync_file(f);
		goto out;
	}
	mem_free(m->lw_data);
	m->lw_data = copy;
	copy = NULL;
	m->lw_file = f;
	m->lw_off = off;
	m->lw_len = len;
out:
	pthread_mutex_unlock(&m->lock);
	mem_free(copy);
	return err;
}

static int m_sync(void *data, void *file)
{
	struct mstore *m = data;
	struct mhandle *h = file;
	int err;

	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_SYNC);
	if (!err)
		err = sync_file(h->f);
	if (!err && m->lw_file == h->f)
		m->lw_file = NULL;
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int m_size(void *data, void *file, uint64_t *size)
{
	struct mstore *m = data;
	struct mhandle *h = file;
	int err;

	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_SIZE);
	if (!err)
		*size = h->f->cur.len;
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int m_truncate(void *data, void *file, uint64_t size)
{
	struct mstore *m = data;
	struct mhandle *h = file;
	struct mfile *f = h->f;
	int err;

	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_TRUNCATE);
	if (!err) {
		/* durable at once: whatever survives is the current image */
		err = sync_file(f);
		if (!err) {
			mbuf_truncate(&f->cur, size);
			mbuf_truncate(&f->syn, size);
			if (m->lw_file == f)
				m->lw_file = NULL;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int m_allocate(void *data, void *file, uint64_t size)
{
	struct mstore *m = data;
	struct mhandle *h = file;
	int err;

	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_ALLOCATE);
	if (!err) {
		if (h->f->cur.len < size)
			h->f->cur.len = size;
		if (h->f->syn.len < size)
			h->f->syn.len = size;
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int m_unlink(void *data, const char *name)
{
	struct mstore *m = data;
	struct mfile *f;
	int err;

	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_UNLINK);
	if (!err) {
		f = mfind(m, name);
		if (f)
			munlink(m, f);
		else
			err = -ENOENT;
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int m_rename(void *data, const char *from, const char *to)
{
	struct mstore *m = data;
	struct mfile *f, *old;
	char *nn;
	int err;

	nn = mem_strdup(to);
	if (!nn)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_RENAME);
	if (err)
		goto out;
	f = mfind(m, from);
	if (!f) {
		err = -ENOENT;
		goto out;
	}
	old = mfind(m, to);
	if (old && old != f)
		munlink(m, old);
	mem_free(f->name);
	f->name = nn;
	nn = NULL;
out:
	pthread_mutex_unlock(&m->lock);
	mem_free(nn);
	return err;
}

static int m_list(void *data, char ***names, size_t *count)
{
	struct mstore *m = data;
	char **v = NULL;
	size_t n = 0, i = 0;
	int err;

	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_LIST);
	if (err)
		goto out;
	for (struct mfile *f = m->files; f; f = f->next)
		n += f->linked;
	v = mem_calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		err = -ENOMEM;
		goto out;
	}
	for (struct mfile *f = m->files; f; f = f->next) {
		if (!f->linked)
			continue;
		v[i] = mem_strdup(f->name);
		if (!v[i]) {
			wal_storage_list_free(v, i);
			v = NULL;
			err = -ENOMEM;
			goto out;
		}
		i++;
	}
	*names = v;
	*count = n;
out:
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int m_sync_dir(void *data)
{
	struct mstore *m = data;
	int err;

	pthread_mutex_lock(&m->lock);
	err = op_begin(m, WAL_MEM_OP_SYNC_DIR);
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int m_zero_from(void *data, void *file, uint64_t *off)
{
	struct mstore *m = data;
	struct mhandle *h = file;

	pthread_mutex_lock(&m->lock);
	/* bytes past the buffer read as zero (sparse file) */
	*off = h->f->cur.len < h->f->cur.cap ? h->f->cur.len : h->f->cur.cap;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void m_destroy(void *data)
{
	struct mstore *m = data;

	while (m->files)
		mfile_free(m, m->files);
	mem_free(m->lw_data);
	pthread_mutex_destroy(&m->lock);
	mem_free(m);
}

static const struct wal_storage_ops mem_ops = {
    .open = m_open,
    .close = m_close,
    .read = m_read,
    .write = m_write,
    .sync = m_sync,
    .size = m_size,
    .truncate = m_truncate,
    .allocate = m_allocate,
    .unlink = m_unlink,
    .rename = m_rename,
    .list = m_list,
    .sync_dir = m_sync_dir,
    .destroy = m_destroy,
    .zero_from = m_zero_from,
};

/* ---- public */

struct wal_storage *wal_mem_storage_new(void)
{
	struct wal_storage *s = mem_alloc(sizeof(*s));
	struct mstore *m;

	if (!s)
		return NULL;
	m = mem_calloc(1, sizeof(*m));
	if (!m) {
		mem_free(s);
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	s->ops = &mem_ops;
	s->data = m;
	return s;
}

void wal_mem_storage_free(struct wal_storage *s)
{
	wal_storage_free(s);
}

static struct mstore *mem_of(const struct wal_storage *s)
{
	return s && s->ops == &mem_ops ? s->data : NULL;
}

static void crash_locked(struct mstore *m)
{
	for (struct mfile *f = m->files; f; f = f->next) {
		/* If the copy cannot be made the current image stays, which
		 * is also a state a disk may keep. */
		if (mbuf_copy(&f->cur, &f->syn) == 0)
			f->has_dirty = false;
	}
}

void wal_mem_storage_crash(struct wal_storage *s)
{
	struct mstore *m = mem_of(s);

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	crash_locked(m);
	m->lw_file = NULL;
	pthread_mutex_unlock(&m->lock);
}

void wal_mem_storage_crash_torn(struct wal_storage *s, size_t keep)
{
	struct mstore *m = mem_of(s);
	struct mfile *f;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	crash_locked(m);
	f = m->lw_file;
	if (f && f->linked) {
		size_t n = keep < m->lw_len ? keep : m->lw_len;

		if (n && mbuf_write(&f->cur, m->lw_off, m->lw_data, n) == 0)
			mbuf_write(&f->syn, m->lw_off, m->lw_data, n);
	}
	m->lw_file = NULL;
	pthread_mutex_unlock(&m->lock);
}

size_t wal_mem_storage_last_write_len(const struct wal_storage *s)
{
	struct mstore *m = mem_of(s);
	size_t n = 0;

	if (!m)
		return 0;
	pthread_mutex_lock(&m->lock);
	if (m->lw_file)
		n = m->lw_len;
	pthread_mutex_unlock(&m->lock);
	return n;
}

void wal_mem_storage_fail(struct wal_storage *s, unsigned mask, long nth,
			  int err, bool sticky)
{
	struct mstore *m = mem_of(s);

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->fail_mask = nth > 0 ? mask : 0;
	m->fail_nth = nth;
	m->fail_err = err < 0 ? err : -EIO;
	m->fail_sticky = sticky;
	m->fail_tripped = false;
	pthread_mutex_unlock(&m->lock);
}

long wal_mem_storage_count(const struct wal_storage *s, unsigned mask)
{
	struct mstore *m = mem_of(s);
	long n = 0;

	if (!m)
		return 0;
	pthread_mutex_lock(&m->lock);
	for (int i = 0; i < 11; i++)
		if (mask & (1u << i))
			n += m->counts[i];
	pthread_mutex_unlock(&m->lock);
	return n;
}

int wal_mem_storage_flip_bit(struct wal_storage *s, const char *name,
			     uint64_t off, unsigned bit)
{
	struct mstore *m = mem_of(s);
	struct mfile *f;
	int err = 0;

	if (!m || !name || bit > 7)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	f = mfind(m, name);
	if (!f || off >= f->cur.len) {
		err = f ? -EINVAL : -ENOENT;
		goto out;
	}
	err = mbuf_reserve(&f->cur, off + 1);
	if (!err)
		err = mbuf_reserve(&f->syn, off + 1);
	if (err)
		goto out;
	f->cur.p[off] ^= (unsigned char)(1u << bit);
	if (off < f->syn.len)
		f->syn.p[off] ^= (unsigned char)(1u << bit);
out:
	pthread_mutex_unlock(&m->lock);
	return err;
}

int64_t wal_mem_storage_file_size(const struct wal_storage *s, const char *name)
{
	struct mstore *m = mem_of(s);
	struct mfile *f;
	int64_t n;

	if (!m || !name)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	f = mfind(m, name);
	n = f ? (int64_t)f->cur.len : -ENOENT;
	pthread_mutex_unlock(&m->lock);
	return n;
}
