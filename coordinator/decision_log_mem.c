/*
 * decision_log_mem.c - an in-memory decision log for tests and the
 * simulator, with the durability rules of a real forced-write log.
 *
 * Design notes:
 *  - append() stores the record and queues its completion; completions run
 *    only from coordinator_memlog_flush(), so a callback never fires inside
 *    append() (the libuv rule the engines' runtimes rely on).
 *  - Durability: when a forced record's completion succeeds, it and every
 *    record before it become durable.  crash() keeps only durable records,
 *    completes pending appends with -ECANCELED (so callers can free what
 *    they passed), and leaves the log usable, as a restarted process would
 *    find it.
 *  - fail_next(n, err): the next n completions report err and their records
 *    are dropped (a failed write did not happen, as far as replay goes).
 *  - truncate(pos) drops the records before pos at once (the caller only
 *    asks once they are durable) and completes on the next flush.
 */
#include "common/common.h"
#include "coordinator/coordinator.h"

#include <errno.h>
#include <string.h>

struct mrec {
	unsigned char *buf;
	size_t len;
	uint64_t pos; /* position, for truncation */
};

#define NO_RECORD ((size_t)-1) /* a pending truncation, not an append */

struct pending {
	size_t index; /* in recs */
	bool forced;
	coordinator_log_cb cb;
	void *arg;
};

struct memlog {
	struct mrec *recs;
	size_t nrecs, caprecs;
	size_t durable; /* recs[0..durable) survive a crash */
	struct pending *pend;
	size_t npend, cappend;
	int fail_n, fail_err;
	uint64_t next_pos;
	struct coordinator_memlog_stats st;
};

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
	size_t ncap;
	void *p;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	p = mem_realloc(*v, ncap * size);
	if (p == NULL)
		return -ENOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

static int ml_append(void *data, const void *buf, size_t len, bool forced,
		     coordinator_log_cb cb, void *arg)
{
	struct memlog *m = data;
	unsigned char *copy;

	if (grow((void **)&m->recs, &m->caprecs, m->nrecs + 1,
		 sizeof(*m->recs)) < 0 ||
	    grow((void **)&m->pend, &m->cappend, m->npend + 1,
		 sizeof(*m->pend)) < 0)
		return -ENOMEM;
	copy = mem_alloc(len);
	if (copy == NULL)
		return -ENOMEM;
	memcpy(copy, buf, len);
	m->recs[m->nrecs].buf = copy;
	m->recs[m->nrecs].len = len;
	m->recs[m->nrecs].pos = m->next_pos++;
	m->pend[m->npend].index = m->nrecs;
	m->pend[m->npend].forced = forced;
	m->pend[m->npend].cb = cb;
	m->pend[m->npend].arg = arg;
	m->nrecs++;
	m->npend++;
	m->st.appends++;
	if (forced)
		m->st.forced++;
	return 0;
}

/* Removes recs[i] (a failed write), shifting later records and indexes. */
static void drop_rec(struct memlog *m, size_t i)
{
	mem_free(m->recs[i].buf);
	memmove(&m->recs[i], &m->recs[i + 1],
		(m->nrecs - i - 1) * sizeof(*m->recs));
	m->nrecs--;
	for (size_t k = 0; k < m->npend; k++) {
		if (m->pend[k].index != NO_RECORD && m->pend[k].index > i)
			m->pend[k].index--;
	}
}

size_t coordinator_memlog_flush(struct coordinator_log *log, size_t max)
{
	struct memlog *m = log->data;
	size_t done = 0;

	while (m->npend > 0 && (max == 0 || done < max)) {
		struct pending p = m->pend[0];
		int status = 0;

		memmove(&m->pend[0], &m->pend[1],
			(m->npend - 1) * sizeof(*m->pend));
		m->npend--;
		if (p.index == NO_RECORD) {
			/* a truncation: done when called, durable now */
		} else if (m->fail_n > 0) {
			m->fail_n--;
			status = m->fail_err;
			drop_rec(m, p.index);
			m->st.failed++;
		} else if (p.forced && p.index + 1 > m->durable) {
			m->durable = p.index + 1;
		}
		m->st.completed++;
		done++;
		if (p.cb != NULL)
			p.cb(p.arg, status);
	}
	return done;
}

static int ml_replay(void *data, coordinator_log_replay_cb fn, void *arg)
{
	struct memlog *m = data;

	for (size_t i = 0; i < m->nrecs; i++) {
		int rc = fn(arg, m->recs[i].buf, m->recs[i].len);

		if (rc < 0)
			return rc;
	}
	return 0;
}

static void ml_close(void *data)
{
	struct memlog *m = data;

	while (m->npend > 0) {
		struct pending p = m->pend[--m->npend];

		if (p.cb != NULL)
			p.cb(p.arg, -ECANCELED);
	}
	for (size_t i = 0; i < m->nrecs; i++)
		mem_free(m->recs[i].buf);
	mem_free(m->recs);
	mem_free(m->pend);
	mem_free(m);
}

static uint64_t ml_position(void *data)
{
	struct memlog *m = data;

	return m->next_pos;
}

/* Drops the records before pos at once; the completion is queued like an
 * append's so it never fires inside this call. */
static int ml_truncate(void *data, uint64_t pos, coordinator_log_cb cb,
		       void *arg)
{
	struct memlog *m = data;
	size_t k = 0;

	if (grow((void **)&m->pend, &m->cappend, m->npend + 1,
		 sizeof(*m->pend)) < 0)
		return -ENOMEM;
	while (k < m->nrecs && m->recs[k].pos < pos)
		mem_free(m->recs[k++].buf);
	memmove(&m->recs[0], &m->recs[k], (m->nrecs - k) * sizeof(*m->recs));
	m->nrecs -= k;
	m->durable = m->durable > k ? m->durable - k : 0;
	for (size_t i = 0; i < m->npend; i++) {
		if (m->pend[i].index != NO_RECORD)
			m->pend[i].index = m->pend[i].index >= k
					       ? m->pend[i].index - k
					       : NO_RECORD;
	}
	m->pend[m->npend].index = NO_RECORD;
	m->pend[m->npend].forced = false;
	m->pend[m->npend].cb = cb;
	m->pend[m->npend].arg = arg;
	m->npend++;
	return 0;
}

static const struct coordinator_log_ops memlog_ops = {
    .append = ml_append,
    .replay = ml_replay,
    .close = ml_close,
    .position = ml_position,
    .truncate = ml_truncate,
};

int coordinator_memlog_open(struct coordinator_log *out)
{
	struct memlog *m = mem_calloc(1, sizeof(*m));

	if (m == NULL)
		return -ENOMEM;
	out->ops = &memlog_ops;
	out->data = m;
	return 0;
}

void coordinator_memlog_fail_next(struct coordinator_log *log, int n, int err)
{
	struct memlog *m = log->data;

	m->fail_n = n;
	m->fail_err = err < 0 ? err : -EIO;
}

void coordinator_memlog_crash(struct coordinator_log *log)
{
	struct memlog *m = log->data;

	while (m->npend > 0) {
		struct pending p = m->pend[0];

		memmove(&m->pend[0], &m->pend[1],
			(m->npend - 1) * sizeof(*m->pend));
		m->npend--;
		if (p.cb != NULL)
			p.cb(p.arg, -ECANCELED);
	}
	for (size_t i = m->durable; i < m->nrecs; i++)
		mem_free(m->recs[i].buf);
	m->nrecs = m->durable;
	m->npend = 0;
	m->fail_n = 0;
}

size_t coordinator_memlog_pending(const struct coordinator_log *log)
{
	const struct memlog *m = log->data;

	return m->npend;
}

void coordinator_memlog_stats_get(const struct coordinator_log *log,
				  struct coordinator_memlog_stats *out)
{
	const struct memlog *m = log->data;

	*out = m->st;
	out->records = m->nrecs;
	out->durable = m->durable;
}
