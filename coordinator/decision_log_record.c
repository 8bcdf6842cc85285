/*
 * decision_log_record.c - the decision log's record format, and the thin
 * wrappers that put records through any decision log implementation.
 *
 * The log itself (WAL, memory, Raft) frames, checksums and orders opaque
 * payloads; this file defines the payload.  All integers are little-endian.
 *
 *   offset  size  field
 *   0       2     magic 0x44 0x4c ("DL")
 *   2       1     version, 1
 *   3       1     type: 1 epoch, 2 begin, 3 commit, 4 abort, 5 end
 *   EPOCH (12 bytes in all):
 *   4       8     epoch, >= 1
 *   BEGIN, COMMIT, ABORT, END:
 *   4       1     protocol: 1 2pc-pa, 2 2pc-pn
 *   5       1     K, length of the idempotency key, 0..128 (0 for END)
 *   6       K     key, no NUL
 *   6+K     1     L, length of the transaction id, 1..199
 *   7+K     L     transaction id <cluster>_<epoch>_<seq>, no NUL
 *   7+K+L   1     N, number of branches, 0..64 (0 for END)
 *   then N times:
 *           1     R, resource name length, 1..63
 *           R     resource name
 *           1     G, branch gid length, 1..199
 *           G     branch gid, which must be of this transaction
 *
 * Decoding is strict: wrong magic or version, an unknown type, a field out
 * of range, a gid that does not parse or belongs to another transaction, or
 * a length that does not match the buffer exactly is an error, never a
 * guess.
 */
#include "common/common.h"
#include "coordinator/coordinator.h"

#include <errno.h>
#include <string.h>

#define REC_MAGIC0  0x44
#define REC_MAGIC1  0x4c
#define REC_VERSION 1

const char *coordinator_rec_type_name(enum coordinator_rec_type t)
{
	switch (t) {
	case COORDINATOR_REC_EPOCH:
		return "epoch";
	case COORDINATOR_REC_BEGIN:
		return "begin";
	case COORDINATOR_REC_COMMIT:
		return "commit";
	case COORDINATOR_REC_ABORT:
		return "abort";
	case COORDINATOR_REC_END:
		return "end";
	}
	return "unknown";
}

static bool resource_ok(const char *s)
{
	size_t len = strnlen(s, COORDINATOR_RESOURCE_MAX + 1);

	if (len == 0 || len > COORDINATOR_RESOURCE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	}
	return true;
}

/* True if gid is a branch gid of transaction id txn. */
static bool gid_of_txn(const char *gid, const char *txn)
{
	struct coordinator_gid g;
	size_t tl = strlen(txn);

	return coordinator_gid_parse(gid, &g) == 0 &&
	       strncmp(gid, txn, tl) == 0 && gid[tl] == '_';
}

static int validate(const struct coordinator_record *rec)
{
	struct coordinator_gid g;

	switch (rec->type) {
	case COORDINATOR_REC_EPOCH:
		return rec->epoch >= 1 ? 0 : COORDINATOR_EREC_FIELD;
	case COORDINATOR_REC_BEGIN:
	case COORDINATOR_REC_COMMIT:
	case COORDINATOR_REC_ABORT:
	case COORDINATOR_REC_END:
		break;
	default:
		return COORDINATOR_EREC_TYPE;
	}
	if (rec->protocol != COORDINATOR_PROTO_2PC_PA &&
	    rec->protocol != COORDINATOR_PROTO_2PC_PN)
		return COORDINATOR_EREC_FIELD;
	if (coordinator_txnid_parse(rec->txn, &g) < 0)
		return COORDINATOR_EREC_FIELD;
	if (strnlen(rec->key, sizeof(rec->key)) > COORDINATOR_KEY_MAX ||
	    (rec->type == COORDINATOR_REC_END && rec->key[0] != '\0'))
		return COORDINATOR_EREC_FIELD;
	if (rec->nbranches > COORDINATOR_BRANCHES_MAX ||
	    (rec->type == COORDINATOR_REC_END && rec->nbranches > 0) ||
	    (rec->nbranches > 0 && rec->branches == NULL))
		return COORDINATOR_EREC_FIELD;
	for (size_t i = 0; i < rec->nbranches; i++) {
		if (!resource_ok(rec->branches[i].resource) ||
		    !gid_of_txn(rec->branches[i].gid, rec->txn))
			return COORDINATOR_EREC_FIELD;
	}
	return 0;
}

/* The encoded size of a record already validated. */
static long size_of(const struct coordinator_record *rec)
{
	long n;

	if (rec->type == COORDINATOR_REC_EPOCH)
		return 12;
	n = 4 + 1 + 1 + (long)strlen(rec->key) + 1 + (long)strlen(rec->txn) + 1;
	for (size_t i = 0; i < rec->nbranches; i++)
		n += 2 + (long)strlen(rec->branches[i].resource) +
		     (long)strlen(rec->branches[i].gid);
	return n;
}

long coordinator_record_size(const struct coordinator_record *rec)
{
	int rc = validate(rec);

	return rc < 0 ? rc : size_of(rec);
}

/* Encodes a record already validated into buf (size_of() bytes). */
static void encode(const struct coordinator_record *rec, unsigned char *buf);

long coordinator_record_encode(const struct coordinator_record *rec, void *buf,
			       size_t len)
{
	long size = coordinator_record_size(rec);

	if (size < 0)
		return size;
	if ((size_t)size > len)
		return -ENOSPC;
	encode(rec, buf);
	return size;
}

static void encode(const struct coordinator_record *rec, unsigned char *buf)
{
	unsigned char *p = buf;
	size_t l;

	*p++ = REC_MAGIC0;
	*p++ = REC_MAGIC1;
	*p++ = REC_VERSION;
	*p++ = (unsigned char)rec->type;
	if (rec->type == COORDINATOR_REC_EPOCH) {
		for (int i = 0; i < 8; i++)
			*p++ = (unsigned char)(rec->epoch >> (8 * i));
		return;
	}
	*p++ = (unsigned char)rec->protocol;
	l = strlen(rec->key);
	*p++ = (unsigned char)l;
	memcpy(p, rec->key, l);
	p += l;
	l = strlen(rec->txn);
	*p++ = (unsigned char)l;
	memcpy(p, rec->txn, l);
	p += l;
	*p++ = (unsigned char)rec->nbranches;
	for (size_t i = 0; i < rec->nbranches; i++) {
		l = strlen(rec->branches[i].resource);
		*p++ = (unsigned char)l;
		memcpy(p, rec->branches[i].resource, l);
		p += l;
		l = strlen(rec->branches[i].gid);
		*p++ = (unsigned char)l;
		memcpy(p, rec->branches[i].gid, l);
		p += l;
	}
}

/* Reads a length-prefixed string of 1..max bytes into dst (max + 1 bytes). */
static int take_str(const unsigned char **p, const unsigned char *end,
		    char *dst, size_t max)
{
	size_t l;

	if (*p >= end)
		return COORDINATOR_EREC_TRUNCATED;
	l = **p;
	(*p)++;
	if (l == 0 || l > max)
		return COORDINATOR_EREC_FIELD;
	if ((size_t)(end - *p) < l)
		return COORDINATOR_EREC_TRUNCATED;
	memcpy(dst, *p, l);
	dst[l] = '\0';
	if (strlen(dst) != l)
		return COORDINATOR_EREC_FIELD;
	*p += l;
	return 0;
}

int coordinator_record_decode(const void *buf, size_t len,
			      struct coordinator_record **out)
{
	const unsigned char *p = buf, *end = p + len;
	struct coordinator_record *rec;
	int rc;

	if (len < 4)
		return COORDINATOR_EREC_TRUNCATED;
	if (p[0] != REC_MAGIC0 || p[1] != REC_MAGIC1)
		return COORDINATOR_EREC_MAGIC;
	if (p[2] != REC_VERSION)
		return COORDINATOR_EREC_VERSION;
	if (p[3] < COORDINATOR_REC_EPOCH || p[3] > COORDINATOR_REC_END)
		return COORDINATOR_EREC_TYPE;
	rec = mem_calloc(1, sizeof(*rec));
	if (rec == NULL)
		return -ENOMEM;
	rec->type = (enum coordinator_rec_type)p[3];
	p += 4;
	if (rec->type == COORDINATOR_REC_EPOCH) {
		if (len != 12) {
			rc = COORDINATOR_EREC_TRUNCATED;
			goto err_free;
		}
		for (int i = 0; i < 8; i++)
			rec->epoch |= (uint64_t)p[i] << (8 * i);
		p += 8;
	} else {
		size_t n;

		if (end - p < 1) {
			rc = COORDINATOR_EREC_TRUNCATED;
			goto err_free;
		}
		rec->protocol = (enum coordinator_protocol) * p++;
		if (p >= end) {
			rc = COORDINATOR_EREC_TRUNCATED;
			goto err_free;
		}
		if (*p == 0) {
			p++;
		} else {
			rc = take_str(&p, end, rec->key, COORDINATOR_KEY_MAX);
			if (rc < 0)
				goto err_free;
		}
		rc = take_str(&p, end, rec->txn, COORDINATOR_GID_SIZE - 1);
		if (rc < 0)
			goto err_free;
		if (p >= end) {
			rc = COORDINATOR_EREC_TRUNCATED;
			goto err_free;
		}
		n = *p++;
		if (n > COORDINATOR_BRANCHES_MAX) {
			rc = COORDINATOR_EREC_FIELD;
			goto err_free;
		}
		if (n > 0) {
			rec->branches = mem_calloc(n, sizeof(*rec->branches));
			if (rec->branches == NULL) {
				rc = -ENOMEM;
				goto err_free;
			}
		}
		rec->nbranches = n;
		for (size_t i = 0; i < n; i++) {
			rc = take_str(&p, end, rec->branches[i].resource,
				      COORDINATOR_RESOURCE_MAX);
			if (rc < 0)
				goto err_free;
			rc = take_str(&p, end, rec->branches[i].gid,
				      COORDINATOR_GID_SIZE - 1);
			if (rc < 0)
				goto err_free;
		}
		if (p != end) {
			rc = COORDINATOR_EREC_TRUNCATED;
			goto err_free;
		}
	}
	rc = validate(rec);
	if (rc < 0)
		goto err_free;
	*out = rec;
	return 0;

err_free:
	coordinator_record_free(rec);
	return rc;
}

struct coordinator_record *
coordinator_record_dup(const struct coordinator_record *rec)
{
	struct coordinator_record *c = mem_alloc(sizeof(*c));

	if (c == NULL)
		return NULL;
	*c = *rec;
	c->branches = NULL;
	if (rec->nbranches > 0) {
		c->branches = mem_alloc(rec->nbranches * sizeof(*c->branches));
		if (c->branches == NULL) {
			mem_free(c);
			return NULL;
		}
		memcpy(c->branches, rec->branches,
		       rec->nbranches * sizeof(*c->branches));
	}
	return c;
}

void coordinator_record_free(struct coordinator_record *rec)
{
	if (rec == NULL)
		return;
	mem_free(rec->branches);
	mem_free(rec);
}

int coordinator_log_append(struct coordinator_log *log,
			   const struct coordinator_record *rec, bool forced,
			   coordinator_log_cb cb, void *arg)
{
	unsigned char small[512];
	unsigned char *buf = small;
	long size = coordinator_record_size(rec);
	int rc;

	if (size < 0)
		return (int)size;
	if ((size_t)size > sizeof(small)) {
		buf = mem_alloc((size_t)size);
		if (buf == NULL)
			return -ENOMEM;
	}
	encode(rec, buf); /* validated by coordinator_record_size */
	rc = log->ops->append(log->data, buf, (size_t)size, forced, cb, arg);
	if (buf != small)
		mem_free(buf);
	return rc;
}

struct replay_ctx {
	int (*fn)(void *arg, const struct coordinator_record *rec);
	void *arg;
};

static int replay_one(void *arg, const void *buf, size_t len)
{
	struct replay_ctx *ctx = arg;
	struct coordinator_record *rec;
	int rc = coordinator_record_decode(buf, len, &rec);

	if (rc < 0)
		return rc;
	rc = ctx->fn(ctx->arg, rec);
	coordinator_record_free(rec);
	return rc;
}

int coordinator_log_replay(struct coordinator_log *log,
			   int (*fn)(void *arg,
				     const struct coordinator_record *rec),
			   void *arg)
{
	struct replay_ctx ctx = {fn, arg};

	return log->ops->replay(log->data, replay_one, &ctx);
}

void coordinator_log_close(struct coordinator_log *log)
{
	if (log->ops != NULL)
		log->ops->close(log->data);
	log->ops = NULL;
	log->data = NULL;
}

/* A compaction in flight: truncate once the checkpoint is durable. */
struct ckpt {
	const struct coordinator_log_ops *ops;
	void *data;
	uint64_t pos;
	coordinator_log_cb cb;
	void *arg;
};

static void ckpt_finish(struct ckpt *c, int status)
{
	coordinator_log_cb cb = c->cb;
	void *arg = c->arg;

	mem_free(c);
	if (cb != NULL)
		cb(arg, status);
}

static void ckpt_truncated(void *arg, int status)
{
	ckpt_finish(arg, status);
}

static void ckpt_durable(void *arg, int status)
{
	struct ckpt *c = arg;

	if (status == 0) {
		status = c->ops->truncate(c->data, c->pos, ckpt_truncated, c);
		if (status == 0)
			return;
	}
	ckpt_finish(c, status);
}

int coordinator_log_checkpoint(struct coordinator_log *log,
			       struct coordinator_record *const *recs, size_t n,
			       coordinator_log_cb cb, void *arg)
{
	struct ckpt *c;
	int rc;

	if (log->ops->position == NULL || log->ops->truncate == NULL)
		return -ENOTSUP;
	if (n == 0)
		return -EINVAL;
	c = mem_calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->ops = log->ops;
	c->data = log->data;
	c->pos = log->ops->position(log->data);
	c->cb = cb;
	c->arg = arg;
	for (size_t i = 0; i + 1 < n; i++) {
		rc = coordinator_log_append(log, recs[i], false, NULL, NULL);
		if (rc < 0)
			goto err_free;
	}
	rc = coordinator_log_append(log, recs[n - 1], true, ckpt_durable, c);
	if (rc < 0)
		goto err_free;
	return 0;

err_free:
	mem_free(c);
	return rc;
}
