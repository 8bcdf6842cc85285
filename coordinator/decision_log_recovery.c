/*
 * decision_log_recovery.c - pure recovery planning from the replayed
 * decision log: the epoch to force next, the decisions to finish, and what
 * to do with each prepared gid a resource reports.
 *
 * Rules (DESIGN.md section 5, "recovery"; section 9):
 *  1. The next epoch is one more than the greatest epoch in the log (epoch
 *     records, and the epochs inside transaction ids, to be safe).
 *  2. A COMMIT decision without END is re-driven: COMMIT PREPARED on every
 *     branch it lists.
 *  3. Under PN, a BEGIN or ABORT without END is finished by ROLLBACK
 *     PREPARED on every branch it lists (no decision means abort).
 *  4. A prepared gid on a resource: not ours (other cluster prefix, or not
 *     a gid at all) -> leave it; current or newer epoch -> leave it (a live
 *     transaction); older epoch with a COMMIT decision in the log -> commit;
 *     older epoch otherwise -> roll back (presumed abort).
 *  5. Raft mode only (aborts are logged too, engine rule 6): an older-epoch
 *     transaction with no decision at all whose every branch k of n is
 *     prepared somewhere -> finish it: force a COMMIT, then commit.
 *
 * Design notes: one entry per transaction id, in first-seen order, indexed
 * by an open-addressing hash so a long log replays in linear time.
 */
#include "common/common.h"
#include "coordinator/coordinator.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct entry {
	char *id;
	char *key;			 /* idempotency key, NULL if none */
	bool committed;			 /* a COMMIT decision was seen */
	bool aborted;			 /* an ABORT decision was seen */
	struct coordinator_record *open; /* BEGIN/COMMIT/ABORT without END */
};

struct coordinator_recovery {
	char cluster[COORDINATOR_CLUSTER_MAX + 1];
	uint64_t last_epoch;
	struct entry *v;
	size_t n, cap;
	size_t *slots; /* index + 1 into v, 0 free */
	size_t nslots;
	/* plan, rebuilt when stale */
	const struct coordinator_record **plan;
	size_t nplan;
	bool stale;
};

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

int coordinator_recovery_new(const char *cluster,
			     struct coordinator_recovery **out)
{
	struct coordinator_recovery *r;

	if (!coordinator_cluster_is_valid(cluster))
		return COORDINATOR_EGID_CLUSTER;
	r = mem_calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->nslots = 64;
	r->slots = mem_calloc(r->nslots, sizeof(*r->slots));
	if (r->slots == NULL) {
		mem_free(r);
		return -ENOMEM;
	}
	str_copy(r->cluster, sizeof(r->cluster), cluster);
	*out = r;
	return 0;
}

void coordinator_recovery_free(struct coordinator_recovery *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		mem_free(r->v[i].id);
		mem_free(r->v[i].key);
		coordinator_record_free(r->v[i].open);
	}
	mem_free(r->v);
	mem_free(r->slots);
	mem_free(r->plan);
	mem_free(r);
}

static struct entry *lookup(const struct coordinator_recovery *r,
			    const char *id)
{
	size_t mask = r->nslots - 1;

	for (size_t s = hash(id) & mask;; s = (s + 1) & mask) {
		size_t k = r->slots[s];

		if (k == 0)
			return NULL;
		if (strcmp(r->v[k - 1].id, id) == 0)
			return &r->v[k - 1];
	}
}

static void place(size_t *slots, size_t nslots, const char *id, size_t k)
{
	size_t mask = nslots - 1;
	size_t s = hash(id) & mask;

	while (slots[s] != 0)
		s = (s + 1) & mask;
	slots[s] = k;
}

static struct entry *get_or_add(struct coordinator_recovery *r, const char *id)
{
	struct entry *e = lookup(r, id);

	if (e != NULL)
		return e;
	if ((r->n + 1) * 2 > r->nslots) {
		size_t n = r->nslots * 2;
		size_t *slots = mem_calloc(n, sizeof(*slots));

		if (slots == NULL)
			return NULL;
		for (size_t i = 0; i < r->n; i++)
			place(slots, n, r->v[i].id, i + 1);
		mem_free(r->slots);
		r->slots = slots;
		r->nslots = n;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct entry *v = mem_realloc(r->v, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		r->v = v;
		r->cap = cap;
	}
	e = &r->v[r->n];
	memset(e, 0, sizeof(*e));
	e->id = mem_strdup(id);
	if (e->id == NULL)
		return NULL;
	r->n++;
	place(r->slots, r->nslots, id, r->n);
	return e;
}

int coordinator_recovery_add(struct coordinator_recovery *r,
			     const struct coordinator_record *rec)
{
	struct coordinator_gid g;
	struct coordinator_record *copy = NULL;
	struct entry *e;
	int rc;

	if (rec->type == COORDINATOR_REC_EPOCH) {
		if (rec->epoch == 0)
			return COORDINATOR_EREC_FIELD;
		if (rec->epoch > r->last_epoch)
			r->last_epoch = rec->epoch;
		return 0;
	}
	rc = coordinator_txnid_parse(rec->txn, &g);
	if (rc < 0)
		return COORDINATOR_EREC_FIELD;
	if (!coordinator_gid_is_ours(&g, r->cluster))
		return 0; /* not ours to finish; nothing in it binds us */
	if (g.epoch > r->last_epoch)
		r->last_epoch = g.epoch;
	if (rec->type != COORDINATOR_REC_END) {
		copy = coordinator_record_dup(rec);
		if (copy == NULL)
			return -ENOMEM;
	}
	e = get_or_add(r, rec->txn);
	if (e == NULL) {
		coordinator_record_free(copy);
		return -ENOMEM;
	}
	r->stale = true;
	if (rec->key[0] != '\0' && e->key == NULL) {
		e->key = mem_strdup(rec->key);
		if (e->key == NULL) {
			coordinator_record_free(copy);
			return -ENOMEM;
		}
	}
	switch (rec->type) {
	case COORDINATOR_REC_BEGIN:
	case COORDINATOR_REC_ABORT:
		if (rec->type == COORDINATOR_REC_ABORT && !e->committed)
			e->aborted = true;
		if (e->committed) {
			/* A commit decision is final whatever follows. */
			coordinator_record_free(copy);
			return 0;
		}
		break;
	case COORDINATOR_REC_COMMIT:
		e->committed = true;
		break;
	case COORDINATOR_REC_END:
		break;
	default:
		coordinator_record_free(copy);
		return COORDINATOR_EREC_TYPE;
	}
	coordinator_record_free(e->open);
	e->open = copy;
	return 0;
}

static int replay_add(void *arg, const struct coordinator_record *rec)
{
	return coordinator_recovery_add(arg, rec);
}

int coordinator_recovery_replay(struct coordinator_recovery *r,
				struct coordinator_log *log)
{
	return coordinator_log_replay(log, replay_add, r);
}

uint64_t coordinator_recovery_last_epoch(const struct coordinator_recovery *r)
{
	return r->last_epoch;
}

uint64_t coordinator_recovery_next_epoch(const struct coordinator_recovery *r)
{
	return r->last_epoch + 1;
}

/* Rebuilds the plan: open commits first, then open PN begins/aborts.  The
 * plan is a cache of r's contents, so the const functions may refresh it. */
static void build_plan(const struct coordinator_recovery *cr)
{
	struct coordinator_recovery *r = (struct coordinator_recovery *)cr;
	size_t k = 0;

	if (!r->stale && (r->plan != NULL || r->n == 0))
		return;
	mem_free(r->plan);
	r->nplan = 0;
	r->plan = mem_calloc(r->n ? r->n : 1, sizeof(*r->plan));
	if (r->plan == NULL)
		return; /* counted as empty; recovery_count reports 0 */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < r->n; i++) {
			const struct coordinator_record *o = r->v[i].open;

			if (o == NULL)
				continue;
			if ((pass == 0) == (o->type == COORDINATOR_REC_COMMIT))
				r->plan[k++] = o;
		}
	}
	r->nplan = k;
	r->stale = false;
}

size_t coordinator_recovery_count(const struct coordinator_recovery *r)
{
	build_plan(r);
	return r->nplan;
}

const struct coordinator_record *
coordinator_recovery_get(const struct coordinator_recovery *r, size_t i)
{
	build_plan(r);
	return i < r->nplan ? r->plan[i] : NULL;
}

bool coordinator_recovery_is_committed(const struct coordinator_recovery *r,
				       const char *txn)
{
	const struct entry *e = lookup(r, txn);

	return e != NULL && e->committed;
}

enum coordinator_action
coordinator_recovery_classify(const struct coordinator_recovery *r,
			      const char *gid)
{
	struct coordinator_gid g;
	char id[COORDINATOR_GID_SIZE];

	if (coordinator_gid_parse(gid, &g) < 0 ||
	    !coordinator_gid_is_ours(&g, r->cluster) ||
	    !coordinator_gid_is_older_epoch(&g,
					    coordinator_recovery_next_epoch(r)))
		return COORDINATOR_ACT_NONE;
	str_copy(id, sizeof(id), gid);
	*strrchr(id, '_') = '\0';
	return coordinator_recovery_is_committed(r, id)
		   ? COORDINATOR_ACT_COMMIT
		   : COORDINATOR_ACT_ROLLBACK;
}

size_t coordinator_recovery_keys(const struct coordinator_recovery *r,
				 int (*fn)(void *arg, const char *txn,
					   const char *key, bool committed,
					   bool open),
				 void *arg)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++) {
		const struct entry *e = &r->v[i];

		if (e->key == NULL)
			continue;
		n++;
		if (fn(arg, e->id, e->key, e->committed, e->open != NULL) != 0)
			break;
	}
	return n;
}

bool coordinator_recovery_is_decided(const struct coordinator_recovery *r,
				     const char *txn)
{
	const struct entry *e = lookup(r, txn);

	return e != NULL && (e->committed || e->aborted);
}

/* Txn id of a branch gid into id (COORDINATOR_GID_SIZE bytes). */
static void txn_of_gid(const char *gid, char *id)
{
	str_copy(id, COORDINATOR_GID_SIZE, gid);
	*strrchr(id, '_') = '\0';
}

int coordinator_recovery_plan(const struct coordinator_recovery *r,
			      const struct coordinator_prepared *items,
			      size_t n, bool finish_prepared,
			      enum coordinator_action *out)
{
	for (size_t i = 0; i < n; i++) {
		struct coordinator_gid g;
		char id[COORDINATOR_GID_SIZE];
		uint64_t seen = 0; /* bit k-1: branch k is prepared */

		out[i] = coordinator_recovery_classify(r, items[i].gid);
		if (out[i] != COORDINATOR_ACT_ROLLBACK || !finish_prepared)
			continue;
		txn_of_gid(items[i].gid, id);
		if (coordinator_recovery_is_decided(r, id))
			continue;
		coordinator_gid_parse(items[i].gid, &g);
		for (size_t k = 0; k < n; k++) {
			struct coordinator_gid h;
			char hid[COORDINATOR_GID_SIZE];

			if (coordinator_gid_parse(items[k].gid, &h) < 0 ||
			    h.branches != g.branches)
				continue;
			txn_of_gid(items[k].gid, hid);
			if (strcmp(hid, id) == 0)
				seen |= 1ull << (h.branch - 1);
		}
		if (g.branches == 64 ? seen == UINT64_MAX
				     : seen == (1ull << g.branches) - 1)
			out[i] = COORDINATOR_ACT_FINISH;
	}
	return 0;
}
