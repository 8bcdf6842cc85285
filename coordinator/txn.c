/*
 * txn.c - the transaction table: gid -> txn, idempotency key -> txn, listing
 * by state, and epoch + sequence allocation.
 *
 * Design notes:
 *  - Two chained hash tables (by id, by key) over the same txns.  Buckets
 *    double when the load passes 1.
 *  - Every txn is on a doubly linked list in creation order (prev/next),
 *    for listing everything, and on one of two more (sprev/snext): the
 *    live txns (not done) in creation order, or the done ones in the
 *    order they finished.  Done txns are kept for minutes (hundreds of
 *    thousands of them at a few thousand per second), so nothing that
 *    runs often may walk them: counts by state are kept as states change
 *    (coordinator_txn_set_state), listings of a live state walk the live
 *    list only, and pruning takes expired txns from the front of the done
 *    list and stops at the first that need not go.  A done txn the reconciler
 *    reopens (a branch it must settle) goes to the end of the live list,
 *    and to the end of the done list when it finishes again.
 *  - Lookup by gid accepts a branch gid too: the branch part is cut off, so
 *    a gid a resource reports finds its transaction.
 *
 * Invariants:
 *  1. No id and no non-empty key appears twice.
 *  2. next_id() hands out nothing until the current epoch's record is
 *     durable (DESIGN.md section 9: "a new epoch is forced to the log before
 *     the first new gid is handed out"), and sequences of one epoch are
 *     1, 2, 3, ... without reuse.
 *  3. A new epoch is always greater than every epoch set before.
 *  4. Every txn is on the creation-order list, and on the done list iff
 *     its state is DONE, else on the live list; count[s] is the number of
 *     txns in state s.
 */
#include "coordinator/txn.h"
#include "common/common.h"
#include "coordinator/coordinator.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct txn_list {
	struct coordinator_txn *head, *tail;
};

struct coordinator_table {
	char cluster[COORDINATOR_CLUSTER_MAX + 1];
	uint64_t epoch;
	bool durable;
	uint64_t seq; /* last handed out in epoch */
	struct coordinator_txn **by_id, **by_key;
	size_t nbuckets, size;
	struct coordinator_txn *head, *tail; /* all, creation order */
	struct txn_list live, done;
	size_t count[COORDINATOR_TXN_NSTATES];
};

static void list_append(struct txn_list *l, struct coordinator_txn *x)
{
	x->snext = NULL;
	x->sprev = l->tail;
	if (l->tail != NULL)
		l->tail->snext = x;
	else
		l->head = x;
	l->tail = x;
}

static void list_unlink(struct txn_list *l, struct coordinator_txn *x)
{
	if (x->sprev != NULL)
		x->sprev->snext = x->snext;
	else
		l->head = x->snext;
	if (x->snext != NULL)
		x->snext->sprev = x->sprev;
	else
		l->tail = x->sprev;
	x->sprev = x->snext = NULL;
}

static struct txn_list *list_of(struct coordinator_table *t,
				enum coordinator_txn_state s)
{
	return s == COORDINATOR_TXN_DONE ? &t->done : &t->live;
}

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

int coordinator_table_new(const char *cluster, struct coordinator_table **out)
{
	struct coordinator_table *t;

	if (!coordinator_cluster_is_valid(cluster))
		return COORDINATOR_EGID_CLUSTER;
	t = mem_calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->nbuckets = 64;
	t->by_id = mem_calloc(t->nbuckets, sizeof(*t->by_id));
	if (t->by_id == NULL)
		goto err_free_t;
	t->by_key = mem_calloc(t->nbuckets, sizeof(*t->by_key));
	if (t->by_key == NULL)
		goto err_free_id;
	str_copy(t->cluster, sizeof(t->cluster), cluster);
	*out = t;
	return 0;

err_free_id:
	mem_free(t->by_id);
err_free_t:
	mem_free(t);
	return -ENOMEM;
}

static void txn_free(struct coordinator_txn *x, void (*free_stmts)(void *))
{
	for (size_t i = 0; i < x->nbranches; i++) {
		if (free_stmts != NULL && x->branches[i].stmts != NULL)
			free_stmts(x->branches[i].stmts);
	}
	mem_free(x->branches);
	mem_free(x->waiters);
	mem_free(x);
}

void coordinator_table_free(struct coordinator_table *t,
			    void (*free_stmts)(void *stmts))
{
	struct coordinator_txn *x, *next;

	if (t == NULL)
		return;
	for (x = t->head; x != NULL; x = next) {
		next = x->next;
		txn_free(x, free_stmts);
	}
	mem_free(t->by_id);
	mem_free(t->by_key);
	mem_free(t);
}

const char *coordinator_table_cluster(const struct coordinator_table *t)
{
	return t->cluster;
}

int coordinator_table_epoch_set(struct coordinator_table *t, uint64_t epoch)
{
	if (epoch == 0 || epoch <= t->epoch)
		return COORDINATOR_EGID_EPOCH;
	t->epoch = epoch;
	t->durable = false;
	t->seq = 0;
	return 0;
}

void coordinator_table_epoch_durable(struct coordinator_table *t)
{
	if (t->epoch > 0)
		t->durable = true;
}

uint64_t coordinator_table_epoch(const struct coordinator_table *t)
{
	return t->epoch;
}

bool coordinator_table_is_ready(const struct coordinator_table *t)
{
	return t->durable;
}

int coordinator_table_next_id(struct coordinator_table *t, char *id, size_t len,
			      uint64_t *seq)
{
	struct coordinator_gid g;
	int rc;

	if (!t->durable)
		return COORDINATOR_ENOT_READY;
	memset(&g, 0, sizeof(g));
	str_copy(g.cluster, sizeof(g.cluster), t->cluster);
	g.epoch = t->epoch;
	g.seq = t->seq + 1;
	rc = coordinator_gid_format(&g, id, len);
	if (rc < 0)
		return rc;
	t->seq++;
	if (seq != NULL)
		*seq = t->seq;
	return 0;
}

bool coordinator_table_handed_out(const struct coordinator_table *t,
				  const struct coordinator_gid *g)
{
	return t->epoch > 0 && g->epoch == t->epoch && g->seq >= 1 &&
	       g->seq <= t->seq;
}

/* Copies the txn id part of gid into id (len COORDINATOR_GID_SIZE). */
static void id_of(const char *gid, char *id)
{
	struct coordinator_gid g;
	const char *last;
	size_t n;

	str_copy(id, COORDINATOR_GID_SIZE, gid);
	if (coordinator_gid_parse(gid, &g) == 0) {
		last = strrchr(gid, '_');
		n = (size_t)(last - gid);
		id[n] = '\0';
	}
}

static int rehash(struct coordinator_table *t)
{
	size_t n = t->nbuckets * 2;
	struct coordinator_txn **ids, **keys, *x;

	ids = mem_calloc(n, sizeof(*ids));
	if (ids == NULL)
		return -ENOMEM;
	keys = mem_calloc(n, sizeof(*keys));
	if (keys == NULL) {
		mem_free(ids);
		return -ENOMEM;
	}
	for (x = t->head; x != NULL; x = x->next) {
		size_t b = hash(x->id) & (n - 1);

		x->id_next = ids[b];
		ids[b] = x;
		if (x->key[0] != '\0') {
			b = hash(x->key) & (n - 1);
			x->key_next = keys[b];
			keys[b] = x;
		}
	}
	mem_free(t->by_id);
	mem_free(t->by_key);
	t->by_id = ids;
	t->by_key = keys;
	t->nbuckets = n;
	return 0;
}

int coordinator_table_add(struct coordinator_table *t, const char *id,
			  const char *key, size_t nbranches,
			  struct coordinator_txn **out)
{
	struct coordinator_gid g;
	struct coordinator_txn *x;
	size_t b;
	int rc;

	rc = coordinator_txnid_parse(id, &g);
	if (rc < 0)
		return rc;
	if (key != NULL && key[0] == '\0')
		key = NULL;
	if (key != NULL && strlen(key) > COORDINATOR_KEY_MAX)
		return COORDINATOR_EBAD_KEY;
	if (nbranches > COORDINATOR_BRANCHES_MAX)
		return COORDINATOR_ETOO_MANY_BRANCHES;
	if (coordinator_table_find(t, id) != NULL ||
	    (key != NULL && coordinator_table_find_key(t, key) != NULL))
		return -EEXIST;
	if (t->size + 1 > t->nbuckets)
		(void)rehash(t); /* a full table still works, only slower */
	x = mem_calloc(1, sizeof(*x));
	if (x == NULL)
		return -ENOMEM;
	if (nbranches > 0) {
		x->branches = mem_calloc(nbranches, sizeof(*x->branches));
		if (x->branches == NULL) {
			mem_free(x);
			return -ENOMEM;
		}
	}
	x->nbranches = nbranches;
	str_copy(x->id, sizeof(x->id), id);
	x->epoch = g.epoch;
	x->seq = g.seq;
	if (key != NULL)
		str_copy(x->key, sizeof(x->key), key);
	x->err_branch = -1;
	b = hash(x->id) & (t->nbuckets - 1);
	x->id_next = t->by_id[b];
	t->by_id[b] = x;
	if (key != NULL) {
		b = hash(x->key) & (t->nbuckets - 1);
		x->key_next = t->by_key[b];
		t->by_key[b] = x;
	}
	x->table = t;
	x->state = COORDINATOR_TXN_ACTIVE;
	x->prev = t->tail;
	if (t->tail != NULL)
		t->tail->next = x;
	else
		t->head = x;
	t->tail = x;
	list_append(&t->live, x);
	t->count[x->state]++;
	t->size++;
	*out = x;
	return 0;
}

struct coordinator_txn *
coordinator_table_find(const struct coordinator_table *t, const char *gid)
{
	char id[COORDINATOR_GID_SIZE];
	struct coordinator_txn *x;

	if (gid == NULL ||
	    strnlen(gid, COORDINATOR_GID_SIZE) >= COORDINATOR_GID_SIZE)
		return NULL;
	/* Most lookups name the transaction itself: try that first.  A
	 * branch gid never equals a transaction id (its last part holds
	 * "of"), so a hit is the transaction meant. */
	for (x = t->by_id[hash(gid) & (t->nbuckets - 1)]; x; x = x->id_next) {
		if (strcmp(x->id, gid) == 0)
			return x;
	}
	id_of(gid, id);
	if (strcmp(id, gid) == 0)
		return NULL;
	for (x = t->by_id[hash(id) & (t->nbuckets - 1)]; x; x = x->id_next) {
		if (strcmp(x->id, id) == 0)
			return x;
	}
	return NULL;
}

struct coordinator_txn *
coordinator_table_find_key(const struct coordinator_table *t, const char *key)
{
	struct coordinator_txn *x;

	if (key == NULL || key[0] == '\0')
		return NULL;
	for (x = t->by_key[hash(key) & (t->nbuckets - 1)]; x; x = x->key_next) {
		if (strcmp(x->key, key) == 0)
			return x;
	}
	return NULL;
}

size_t coordinator_table_list(
    const struct coordinator_table *t, enum coordinator_txn_state state,
    bool all, int (*fn)(void *arg, const struct coordinator_txn *x), void *arg)
{
	const struct coordinator_txn *x;
	size_t n = 0;

	if (all) {
		for (x = t->head; x != NULL; x = x->next) {
			n++;
			if (fn != NULL && fn(arg, x) != 0)
				break;
		}
		return n;
	}
	if ((unsigned)state >= COORDINATOR_TXN_NSTATES)
		return 0;
	if (fn == NULL)
		return t->count[state];
	x = state == COORDINATOR_TXN_DONE ? t->done.head : t->live.head;
	for (; x != NULL; x = x->snext) {
		if (x->state != state)
			continue;
		n++;
		if (fn(arg, x) != 0)
			break;
	}
	return n;
}

size_t coordinator_table_list_live(const struct coordinator_table *t,
				   int (*fn)(void *arg,
					     const struct coordinator_txn *x),
				   void *arg)
{
	size_t n = 0;

	for (const struct coordinator_txn *x = t->live.head; x != NULL;
	     x = x->snext) {
		n++;
		if (fn(arg, x) != 0)
			break;
	}
	return n;
}

size_t coordinator_table_count(const struct coordinator_table *t,
			       enum coordinator_txn_state state)
{
	if ((unsigned)state >= COORDINATOR_TXN_NSTATES)
		return 0;
	return t->count[state];
}

void coordinator_txn_set_state(struct coordinator_txn *x,
			       enum coordinator_txn_state s)
{
	struct coordinator_table *t = x->table;

	if (x->state == s)
		return;
	if (t != NULL) {
		struct txn_list *from = list_of(t, x->state);
		struct txn_list *to = list_of(t, s);

		t->count[x->state]--;
		t->count[s]++;
		if (from != to) {
			list_unlink(from, x);
			list_append(to, x);
		}
	}
	x->state = s;
}

size_t coordinator_table_size(const struct coordinator_table *t)
{
	return t->size;
}

static void unlink_chain(struct coordinator_txn **head,
			 struct coordinator_txn *x, bool by_key)
{
	struct coordinator_txn **pp = head;

	while (*pp != NULL && *pp != x)
		pp = by_key ? &(*pp)->key_next : &(*pp)->id_next;
	if (*pp == x)
		*pp = by_key ? x->key_next : x->id_next;
}

static void table_remove(struct coordinator_table *t, struct coordinator_txn *x)
{
	unlink_chain(&t->by_id[hash(x->id) & (t->nbuckets - 1)], x, false);
	if (x->key[0] != '\0')
		unlink_chain(&t->by_key[hash(x->key) & (t->nbuckets - 1)], x,
			     true);
	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		t->head = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
	else
		t->tail = x->prev;
	list_unlink(list_of(t, x->state), x);
	t->count[x->state]--;
	t->size--;
}

void coordinator__table_drop(struct coordinator_table *t,
			     struct coordinator_txn *x,
			     void (*free_stmts)(void *))
{
	table_remove(t, x);
	txn_free(x, free_stmts);
}

size_t coordinator_table_prune(struct coordinator_table *t, uint64_t now,
			       uint64_t keep_ms, size_t max_done,
			       void (*free_stmts)(void *))
{
	struct coordinator_txn *x;
	size_t n = 0;

	/* Finishing order is done_at order: the first one not expired ends
	 * the walk (once no more than max_done are left), so a prune costs
	 * what it removes. */
	while ((x = t->done.head) != NULL &&
	       (x->done_at + keep_ms <= now ||
		(max_done > 0 && t->count[COORDINATOR_TXN_DONE] > max_done))) {
		table_remove(t, x);
		txn_free(x, free_stmts);
		n++;
	}
	return n;
}

int coordinator_txn_branch_add(struct coordinator_txn *x, const char *resource,
			       const char *gid, struct coordinator_branch **out)
{
	struct coordinator_branch *v;

	if (x->nbranches >= COORDINATOR_BRANCHES_MAX)
		return COORDINATOR_ETOO_MANY_BRANCHES;
	v = mem_realloc(x->branches, (x->nbranches + 1) * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	x->branches = v;
	v = &x->branches[x->nbranches];
	memset(v, 0, sizeof(*v));
	str_copy(v->resource, sizeof(v->resource), resource);
	str_copy(v->gid, sizeof(v->gid), gid);
	x->nbranches++;
	if (out != NULL)
		*out = v;
	return 0;
}

int coordinator_txn_waiter_add(struct coordinator_txn *x, uint64_t client)
{
	uint64_t *v;

	if (client == 0)
		return 0;
	v = mem_realloc(x->waiters, (x->nwaiters + 1) * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	x->waiters = v;
	x->waiters[x->nwaiters++] = client;
	return 0;
}
