/* test_wal_chaos.c - seeded random runs of the log on the in-memory
 * storage: appends, syncs, truncations, steps, crashes (clean or torn) and
 * injected I/O errors, checked against a model after every recovery.
 *
 * Invariants checked at each reopen:
 *   1. LSNs are dense from the reported first to the reported last;
 *   2. every record holds the payload of an append of its LSN that may be
 *      there: one made after the last acknowledged suffix truncation below
 *      it (an append that failed, or one cut by a truncation that failed,
 *      may still be there) - never a damaged one;
 *   3. nothing acknowledged as durable is lost (a forced append's or a
 *      sync's callback), except what a suffix truncation asked for since
 *      the last open cut (one that failed may have been carried out);
 *   4. the start is the latest acknowledged prefix truncation, or a later
 *      requested one.
 * A failing seed is printed; rerun it with WAL_CHAOS_SEED=<seed>. */
#include "common/common.h"
#include "wal/wal.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXLSN 4096
#define NVER   8

struct model {
	unsigned seed;
	uint32_t ver[MAXLSN][NVER]; /* versions each LSN may hold */
	uint8_t nver[MAXLSN];
	uint32_t vcount;
	uint64_t durable;     /* highest LSN acknowledged durable */
	uint64_t cut_asked;   /* lowest suffix cut asked since the open */
	uint64_t start_acked; /* start after the last acked prefix cut */
	uint64_t start_asked; /* highest start requested */
};

struct ack {
	struct model *m;
	int kind; /* 0 forced append, 1 sync, 2 suffix, 3 prefix, 4 other */
	uint64_t arg;
	uint32_t vmark; /* suffix: versions up to this one are cut */
};

static void ver_add(struct model *m, uint64_t lsn, uint32_t v)
{
	if (m->nver[lsn] == NVER) {
		memmove(m->ver[lsn], m->ver[lsn] + 1,
			(NVER - 1) * sizeof(uint32_t));
		m->nver[lsn]--;
	}
	m->ver[lsn][m->nver[lsn]++] = v;
}

static bool ver_ok(const struct model *m, uint64_t lsn, const void *p,
		   uint32_t len);

/* Keeps only the versions of lsn newer than mark. */
static void ver_cut(struct model *m, uint64_t lsn, uint32_t mark)
{
	uint8_t k = 0;

	for (uint8_t i = 0; i < m->nver[lsn]; i++)
		if (m->ver[lsn][i] > mark)
			m->ver[lsn][k++] = m->ver[lsn][i];
	m->nver[lsn] = k;
}

static bool trace;

#define TRACE(...)                                                             \
	do {                                                                   \
		if (trace)                                                     \
			fprintf(stderr, __VA_ARGS__);                          \
	} while (0)

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (*s >> 16) & 0x7fff;
}

static size_t payload(uint64_t lsn, uint32_t version, char *buf)
{
	return (size_t)snprintf(buf, 64, "lsn %" PRIu64 " v %" PRIu32 " %.*s",
				lsn, version, (int)(lsn % 23),
				"xxxxxxxxxxxxxxxxxxxxxxx");
}

static void on_ack(struct wal *w, int64_t result, void *data)
{
	struct ack *a = data;
	struct model *m = a->m;

	(void)w;
	TRACE("  ack kind %d arg %" PRIu64 " -> %" PRId64 "\n", a->kind, a->arg,
	      result);
	if (result >= 0) {
		switch (a->kind) {
		case 0:
		case 1:
			if ((uint64_t)result > m->durable)
				m->durable = (uint64_t)result;
			break;
		case 2:
			if (m->durable > a->arg)
				m->durable = a->arg;
			for (uint64_t l = a->arg + 1; l < MAXLSN; l++)
				ver_cut(m, l, a->vmark);
			break;
		case 3:
			if (a->arg > m->start_acked)
				m->start_acked = a->arg;
			break;
		}
	}
	free(a);
}

static struct ack *ack_new(struct model *m, int kind, uint64_t arg)
{
	struct ack *a = malloc(sizeof(*a));

	a->m = m;
	a->kind = kind;
	a->arg = arg;
	a->vmark = m->vcount;
	return a;
}

static bool ver_ok(const struct model *m, uint64_t lsn, const void *p,
		   uint32_t len)
{
	char buf[64];

	for (uint8_t i = 0; i < m->nver[lsn]; i++) {
		size_t n = payload(lsn, m->ver[lsn][i], buf);

		if (n == len && memcmp(buf, p, n) == 0)
			return true;
	}
	return false;
}

static struct wal *reopen(struct wal_storage *st, struct model *m)
{
	struct wal_recovery_report rep, ro;
	struct wal_config cfg;
	struct wal_iter *it;
	struct wal_entry e;
	struct wal *w;
	uint64_t want;
	char buf[64];
	int rc;

	wal_config_init(&cfg);
	cfg.storage = st;
	cfg.segment_size = 4096;
	/* every third seed runs the O_DSYNC path */
	cfg.sync_mode = m->seed % 3 ? WAL_SYNC_FDATASYNC : WAL_SYNC_DSYNC;
	/* a read-only open (decree wal dump) predicts what recovery does */
	cfg.read_only = true;
	rc = wal_open(&cfg, &w, &ro);
	ck_assert_msg(rc == 0, "seed %u: open ro: %s", m->seed,
		      wal_strerror(rc));
	wal_close(w, NULL, NULL);
	cfg.read_only = false;
	rc = wal_open(&cfg, &w, &rep);
	ck_assert_msg(rc == 0, "seed %u: open: %s", m->seed, wal_strerror(rc));
	ck_assert_msg(
	    ro.first_lsn == rep.first_lsn && ro.last_lsn == rep.last_lsn &&
		ro.reason == rep.reason && ro.bytes_cut == rep.bytes_cut &&
		ro.cut_offset == rep.cut_offset,
	    "seed %u: read-only report differs", m->seed);
	TRACE("open: first %" PRIu64 " last %" PRIu64
	      " reason %s durable %" PRIu64 "\n",
	      rep.first_lsn, rep.last_lsn, wal_cut_reason_name(rep.reason),
	      m->durable);
	/* 3 */
	ck_assert_msg(
	    rep.last_lsn >= m->durable || rep.last_lsn >= m->cut_asked ||
		rep.first_lsn > m->durable,
	    "seed %u: lost durable records: last %" PRIu64 " durable %" PRIu64,
	    m->seed, rep.last_lsn, m->durable);
	/* 4 */
	ck_assert_msg(
	    rep.first_lsn >= m->start_acked &&
		(rep.first_lsn <= m->start_asked || rep.first_lsn == 1),
	    "seed %u: start %" PRIu64 " acked %" PRIu64 " asked %" PRIu64,
	    m->seed, rep.first_lsn, m->start_acked, m->start_asked);
	/* 1, 2 */
	ck_assert_int_eq(wal_iter_open(w, rep.first_lsn, &it), 0);
	want = rep.first_lsn;
	while ((rc = wal_iter_next(it, &e)) == 1) {
		ck_assert_msg(e.lsn == want,
			      "seed %u: lsn %" PRIu64 " want %" PRIu64, m->seed,
			      e.lsn, want);
		ck_assert_msg(ver_ok(m, e.lsn, e.payload, e.len),
			      "seed %u: lsn %" PRIu64 " holds a stale or "
			      "damaged payload: %.*s",
			      m->seed, e.lsn, (int)e.len,
			      (const char *)e.payload);
		want++;
	}
	ck_assert_msg(rc == 0, "seed %u: iterate: %s", m->seed,
		      wal_strerror(rc));
	ck_assert_uint_eq(want, rep.last_lsn + 1);
	wal_iter_close(it);
	/* what lies past the end is gone from both images */
	for (uint64_t l = rep.last_lsn + 1; l < MAXLSN; l++)
		m->nver[l] = 0;
	(void)buf;
	m->durable = rep.last_lsn;
	m->cut_asked = UINT64_MAX;
	m->start_acked = rep.first_lsn;
	m->start_asked = rep.first_lsn;
	return w;
}

static void run_seed(unsigned seed)
{
	struct wal_storage *st = wal_mem_storage_new();
	struct model *m = calloc(1, sizeof(*m));
	unsigned s = seed;
	struct wal *w;
	char buf[64];

	m->seed = seed;
	m->start_acked = m->start_asked = 1;
	m->cut_asked = UINT64_MAX;
	w = reopen(st, m);
	for (int op = 0; op < 400; op++) {
		unsigned c = rnd(&s) % 100;
		uint64_t next = wal_next_lsn(w), first = wal_first_lsn(w);

		if (next + 2 >= MAXLSN)
			break;
		if (c < 50) {
			bool forced = rnd(&s) % 3 == 0;
			struct ack *a = forced ? ack_new(m, 0, next) : NULL;
			size_t len;
			int rc;

			len = payload(next, ++m->vcount, buf);
			rc = wal_append(w, 1, buf, len, forced,
					forced ? on_ack : NULL, a);
			TRACE("append %" PRIu64 " forced %d -> %d\n", next,
			      forced, rc);
			if (rc < 0) {
				ck_assert_int_eq(rc, -WAL_EFAILED);
				free(a);
			} else {
				ver_add(m, next, m->vcount);
			}
		} else if (c < 58) {
			struct ack *a = ack_new(m, 1, 0);

			TRACE("sync\n");
			if (wal_sync(w, on_ack, a) < 0)
				free(a);
		} else if (c < 63 && next > first) {
			uint64_t cut = first - 1 + rnd(&s) % (next - first + 1);
			struct ack *a = ack_new(m, 2, cut);

			TRACE("suffix %" PRIu64 "\n", cut);
			if (wal_truncate_suffix(w, cut, on_ack, a) < 0)
				free(a);
			else if (cut < m->cut_asked)
				m->cut_asked = cut;
		} else if (c < 66) {
			uint64_t cut = first + rnd(&s) % (next - first + 8);
			struct ack *a = ack_new(m, 3, cut);

			TRACE("prefix %" PRIu64 "\n", cut);
			if (wal_truncate_prefix(w, cut, on_ack, a) < 0) {
				free(a);
				continue;
			}
			if (cut > m->start_asked)
				m->start_asked = cut;
		} else if (c < 90) {
			TRACE("step\n");
			wal_step(w);
		} else if (c < 93) {
			/* an I/O error somewhere soon */
			unsigned kinds[] = {WAL_MEM_OP_WRITE, WAL_MEM_OP_SYNC,
					    WAL_MEM_OP_ALLOCATE,
					    WAL_MEM_OP_RENAME,
					    WAL_MEM_OP_UNLINK};
			int errs[] = {-EIO, -ENOSPC};

			unsigned k = rnd(&s) % 5, n = 1 + rnd(&s) % 4;
			int e = errs[rnd(&s) % 2];

			TRACE("fail op %#x nth %u err %d\n", kinds[k], n, e);
			wal_mem_storage_fail(st, kinds[k], n, e, false);
		} else {
			/* crash: maybe after a step that was cut short */
			if (rnd(&s) % 2) {
				TRACE("step\n");
				wal_step(w);
			}
			if (rnd(&s) % 2) {
				TRACE("crash\n");
				wal_mem_storage_crash(st);
			} else {
				size_t keep =
				    rnd(&s) %
				    (wal_mem_storage_last_write_len(st) + 1);

				TRACE("crash torn keep %zu of %zu\n", keep,
				      wal_mem_storage_last_write_len(st));
				wal_mem_storage_crash_torn(st, keep);
			}
			wal_mem_storage_fail(st, 0, 0, 0, false);
			wal_close(w, NULL, NULL);
			w = reopen(st, m);
		}
	}
	wal_step(w);
	wal_mem_storage_fail(st, 0, 0, 0, false);
	wal_mem_storage_crash(st);
	wal_close(w, NULL, NULL);
	w = reopen(st, m);
	wal_close(w, NULL, NULL);
	wal_mem_storage_free(st);
	free(m);
}

START_TEST(random_runs_keep_every_invariant)
{
	const char *one = getenv("WAL_CHAOS_SEED");

	trace = getenv("WAL_CHAOS_TRACE") != NULL;
	if (one && *one) {
		run_seed((unsigned)strtoul(one, NULL, 10));
		return;
	}
	for (unsigned seed = 1; seed <= 1500; seed++) {
		TRACE("---- seed %u\n", seed);
		run_seed(seed);
	}
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    random_runs_keep_every_invariant,
	    NULL,
	};

	return suite_main("wal_chaos", 60, tests);
}
