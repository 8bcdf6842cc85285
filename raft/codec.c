/*
 * codec.c - the byte encoding of struct raft_msg, the payload of a
 * RAFT_FRAME_MSG frame between Raft peers (docs/wire.md, "Raft messages").
 *
 * Design notes:
 *   - The format is self-contained (it does not rely on the frame for its
 *     length): a decoder is handed exactly the bytes of one message and
 *     refuses anything shorter, longer or malformed.
 *   - All integers are little endian, as in the configuration encoding of
 *     raft.h; lengths are u32, so one entry or snapshot is under 4 GiB (the
 *     frame limit, 16 MiB by default, is far below that anyway).
 *   - The decoder is strict and bounded: it checks every count against the
 *     bytes that remain before it allocates or reads, so truncated, oversized
 *     or random input is an error (-RAFT_EPROTO), never an overread or a huge
 *     allocation.  It checks the format only; whether a message makes sense
 *     (terms, indexes, ids) is raft_step()'s business.
 *   - A decoded message owns its memory: the entries array and all entry
 *     bytes are one allocation (entries first, data after), the snapshot
 *     data another; raft_msg_free_decoded() releases both.
 *
 * Format, version 1 (offsets in bytes):
 *
 *   offset  size  field
 *   0       1     version: RAFT_MSG_CODEC_VERSION (1)
 *   1       1     type: enum raft_msg_type, 1..10
 *   2       1     flags: bit 0 reject, bit 1 transfer; other bits zero
 *   3       8     from
 *   11      8     to
 *   19      8     term
 *   27      8     index
 *   35      8     log_term
 *   43      8     commit
 *   51      8     hint
 *   59      8     hint_term
 *   67      4     n_entries: u32, <= RAFT_MSG_MAX_ENTRIES; nonzero only in
 *                 RAFT_MSG_APPEND
 *   71      ...   n_entries times an entry:
 *                   8  term
 *                   8  index
 *                   1  type: 0 normal, 1 configuration
 *                   4  len: u32
 *                   len bytes of data
 *   then, in RAFT_MSG_SNAPSHOT only, the snapshot:
 *                   8  index
 *                   8  term
 *                   1  conf_len: <= RAFT_CONF_ENCODED_MAX
 *                   conf_len bytes: the configuration as raft_conf_encode()
 *                      writes it (version 1, n, n x [id, learner])
 *                   4  len: u32
 *                   len bytes of application snapshot data
 *   end: no byte may follow.
 *
 * Invariants the decoder guarantees for a message it returns:
 *   1. type is a known message type and only flag bits 0-1 were set;
 *   2. entries != NULL iff n_entries > 0, and only for RAFT_MSG_APPEND;
 *      every entry has a known type and data == NULL iff len == 0;
 *   3. snapshot is all zero unless type is RAFT_MSG_SNAPSHOT, whose conf
 *      passed raft_conf_decode() and whose data == NULL iff len == 0.
 */
#include "raft/raft.h"

#include "common/common.h"

#include <assert.h>
#include <string.h>

#define FLAG_REJECT   0x01u
#define FLAG_TRANSFER 0x02u
#define ENTRY_HEADER  21u /* term + index + type + len */
#define SNAP_FIXED    21u /* index + term + conf_len + len */

static bool type_is_known(unsigned type)
{
	return type >= RAFT_MSG_PREVOTE && type <= RAFT_MSG_TIMEOUT_NOW;
}

static bool entry_type_is_known(unsigned type)
{
	return type == RAFT_ENTRY_NORMAL || type == RAFT_ENTRY_CONF;
}

size_t raft_msg_encoded_size(const struct raft_msg *m)
{
	size_t size = RAFT_MSG_HEADER_SIZE;

	if (m == NULL || !type_is_known(m->type))
		return 0;
	if (m->n_entries > 0 &&
	    (m->type != RAFT_MSG_APPEND || m->entries == NULL ||
	     m->n_entries > RAFT_MSG_MAX_ENTRIES))
		return 0;
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];

		if (!entry_type_is_known(e->type) || e->len > UINT32_MAX ||
		    (e->len > 0 && e->data == NULL))
			return 0;
		if (SIZE_MAX - size < ENTRY_HEADER + e->len)
			return 0;
		size += ENTRY_HEADER + e->len;
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		const struct raft_snapshot *s = &m->snapshot;

		if (s->conf.n > RAFT_MAX_MEMBERS || s->len > UINT32_MAX ||
		    (s->len > 0 && s->data == NULL))
			return 0;
		if (SIZE_MAX - size < SNAP_FIXED + 2 + 9 * s->conf.n + s->len)
			return 0;
		size += SNAP_FIXED + 2 + 9 * (size_t)s->conf.n + s->len;
	}
	return size;
}

static uint8_t *put_u8(uint8_t *p, unsigned v)
{
	*p = (uint8_t)v;
	return p + 1;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
	for (int b = 0; b < 4; b++)
		p[b] = (uint8_t)(v >> (8 * b));
	return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
	for (int b = 0; b < 8; b++)
		p[b] = (uint8_t)(v >> (8 * b));
	return p + 8;
}

static uint8_t *put_bytes(uint8_t *p, const void *src, size_t n)
{
	if (n > 0)
		memcpy(p, src, n);
	return p + n;
}

int raft_msg_encode(const struct raft_msg *m, struct frame_buf *out)
{
	size_t size = raft_msg_encoded_size(m);
	uint8_t *p;

	if (size == 0 || out == NULL || out->len > SIZE_MAX - size)
		return -RAFT_EINVAL;
	if (out->cap - out->len < size) {
		size_t cap = out->cap > 0 ? out->cap : 64;
		uint8_t *data;

		while (cap - out->len < size)
			cap = cap > SIZE_MAX / 2 ? out->len + size : cap * 2;
		data = mem_realloc(out->data, cap);
		if (data == NULL)
			return -RAFT_ENOMEM;
		out->data = data;
		out->cap = cap;
	}
	p = out->data + out->len;
	p = put_u8(p, RAFT_MSG_CODEC_VERSION);
	p = put_u8(p, m->type);
	p = put_u8(p, (m->reject ? FLAG_REJECT : 0) |
			      (m->transfer ? FLAG_TRANSFER : 0));
	p = put_u64(p, m->from);
	p = put_u64(p, m->to);
	p = put_u64(p, m->term);
	p = put_u64(p, m->index);
	p = put_u64(p, m->log_term);
	p = put_u64(p, m->commit);
	p = put_u64(p, m->hint);
	p = put_u64(p, m->hint_term);
	p = put_u32(p, (uint32_t)m->n_entries);
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];

		p = put_u64(p, e->term);
		p = put_u64(p, e->index);
		p = put_u8(p, e->type);
		p = put_u32(p, (uint32_t)e->len);
		p = put_bytes(p, e->data, e->len);
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		const struct raft_snapshot *s = &m->snapshot;
		uint8_t conf[RAFT_CONF_ENCODED_MAX];
		size_t conf_len = raft_conf_encode(&s->conf, conf);

		p = put_u64(p, s->index);
		p = put_u64(p, s->term);
		p = put_u8(p, (unsigned)conf_len);
		p = put_bytes(p, conf, conf_len);
		p = put_u32(p, (uint32_t)s->len);
		p = put_bytes(p, s->data, s->len);
	}
	out->len += size;
	assert(p == out->data + out->len);
	return 0;
}

/* A bounded reader: every get fails once the bytes run out. */
struct reader {
	const uint8_t *p;
	size_t left;
};

static bool get_u8(struct reader *r, unsigned *v)
{
	if (r->left < 1)
		return false;
	*v = r->p[0];
	r->p++;
	r->left--;
	return true;
}

static bool get_u32(struct reader *r, uint32_t *v)
{
	uint32_t x = 0;

	if (r->left < 4)
		return false;
	for (int b = 0; b < 4; b++)
		x |= (uint32_t)r->p[b] << (8 * b);
	*v = x;
	r->p += 4;
	r->left -= 4;
	return true;
}

static bool get_u64(struct reader *r, uint64_t *v)
{
	uint64_t x = 0;

	if (r->left < 8)
		return false;
	for (int b = 0; b < 8; b++)
		x |= (uint64_t)r->p[b] << (8 * b);
	*v = x;
	r->p += 8;
	r->left -= 8;
	return true;
}

/* Points *at to the next n bytes and skips them. */
static bool get_span(struct reader *r, size_t n, const uint8_t **at)
{
	if (r->left < n)
		return false;
	*at = r->p;
	r->p += n;
	r->left -= n;
	return true;
}

/*
 * First pass over the entries: checks their headers and lengths against the
 * bytes left and sums the data bytes, without allocating.
 */
static bool scan_entries(struct reader r, uint32_t n, size_t *data_bytes)
{
	size_t total = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t term, index;
		unsigned type;
		uint32_t len;
		const uint8_t *data;

		if (!get_u64(&r, &term) || !get_u64(&r, &index) ||
		    !get_u8(&r, &type) || !get_u32(&r, &len) ||
		    !entry_type_is_known(type) || !get_span(&r, len, &data))
			return false;
		total += len; /* bounded by the input length */
	}
	*data_bytes = total;
	return true;
}

int raft_msg_decode(const void *buf, size_t len, struct raft_msg *out)
{
	struct reader r = {.p = buf, .left = len};
	struct raft_msg m;
	unsigned version, type, flags;
	uint32_t n;
	size_t data_bytes = 0;
	uint8_t *blob = NULL;
	int rv = -RAFT_EPROTO;

	if (buf == NULL || out == NULL)
		return -RAFT_EINVAL;
	memset(&m, 0, sizeof(m));
	if (!get_u8(&r, &version) || version != RAFT_MSG_CODEC_VERSION ||
	    !get_u8(&r, &type) || !type_is_known(type) ||
	    !get_u8(&r, &flags) || (flags & ~(FLAG_REJECT | FLAG_TRANSFER)) ||
	    !get_u64(&r, &m.from) || !get_u64(&r, &m.to) ||
	    !get_u64(&r, &m.term) || !get_u64(&r, &m.index) ||
	    !get_u64(&r, &m.log_term) || !get_u64(&r, &m.commit) ||
	    !get_u64(&r, &m.hint) || !get_u64(&r, &m.hint_term) ||
	    !get_u32(&r, &n))
		return -RAFT_EPROTO;
	m.type = (uint8_t)type;
	m.reject = (flags & FLAG_REJECT) != 0;
	m.transfer = (flags & FLAG_TRANSFER) != 0;
	if (n > 0) {
		if (type != RAFT_MSG_APPEND || n > RAFT_MSG_MAX_ENTRIES ||
		    r.left / ENTRY_HEADER < n || !scan_entries(r, n, &data_bytes))
			return -RAFT_EPROTO;
		blob = mem_alloc(n * sizeof(struct raft_entry) + data_bytes);
		if (blob == NULL)
			return -RAFT_ENOMEM;
		m.entries = (struct raft_entry *)(void *)blob;
		m.n_entries = n;
		uint8_t *dst = blob + n * sizeof(struct raft_entry);

		for (uint32_t i = 0; i < n; i++) {
			struct raft_entry *e = &m.entries[i];
			unsigned etype = 0;
			uint32_t elen = 0;
			const uint8_t *src = NULL;

			/* scan_entries() proved that these all succeed. */
			get_u64(&r, &e->term);
			get_u64(&r, &e->index);
			get_u8(&r, &etype);
			get_u32(&r, &elen);
			get_span(&r, elen, &src);
			e->type = (uint8_t)etype;
			e->len = elen;
			e->data = NULL;
			if (elen > 0) {
				memcpy(dst, src, elen);
				e->data = dst;
				dst += elen;
			}
		}
	}
	if (type == RAFT_MSG_SNAPSHOT) {
		struct raft_snapshot *s = &m.snapshot;
		unsigned conf_len;
		uint32_t slen;
		const uint8_t *conf, *data;

		if (!get_u64(&r, &s->index) || !get_u64(&r, &s->term) ||
		    !get_u8(&r, &conf_len) ||
		    !get_span(&r, conf_len, &conf) ||
		    raft_conf_decode(conf, conf_len, &s->conf) != 0 ||
		    !get_u32(&r, &slen) || !get_span(&r, slen, &data))
			goto err_free_entries;
		s->len = slen;
		if (slen > 0) {
			s->data = mem_alloc(slen);
			if (s->data == NULL) {
				rv = -RAFT_ENOMEM;
				goto err_free_entries;
			}
			memcpy(s->data, data, slen);
		}
	}
	if (r.left != 0)
		goto err_free_snapshot;
	*out = m;
	return 0;

err_free_snapshot:
	mem_free(m.snapshot.data);
err_free_entries:
	mem_free(blob);
	return rv;
}

void raft_msg_free_decoded(struct raft_msg *m)
{
	if (m == NULL)
		return;
	mem_free(m->entries);
	mem_free(m->snapshot.data);
	m->entries = NULL;
	m->n_entries = 0;
	m->snapshot.data = NULL;
	m->snapshot.len = 0;
}
