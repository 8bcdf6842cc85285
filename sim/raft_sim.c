/*
 * raft_sim.c - deterministic Raft cluster harness: simulated clock, network,
 * disks and crashes around the real raft/ core, with safety checkers.
 *
 * Design notes:
 *   - Time is a virtual millisecond counter.  The next event is always the
 *     earliest of: a message delivery, a node's tick, a node's pending ready
 *     batch.  Ties go ready < message < tick, then by node id / send order,
 *     so a run is a pure function of its seed.
 *   - Each node has a disk (hard state, snapshot, entries).  The core's
 *     ready batch is persisted to it, then (unless the node crashes right
 *     there: crash_in_ready_pm) its messages are sent and its committed
 *     entries applied.  unsafe_send_before_persist reverses the first two
 *     steps, a broken caller that the checkers must catch.  A crash frees the
 * core; only the disk survives, so whatever the core held but had not handed
 * out in a ready is lost.
 *   - The application is a hash chain over applied entries; its snapshot is
 *     (index, hash, count), 24 bytes.
 *   - Checkers after every step (Raft paper, Figure 3):
 *       election safety    at most one leader per term, ever;
 *       log matching       two live logs with an equal (index, term) agree
 *                          on every entry up to there;
 *       leader completeness an entry committed while the cluster was at
 *                          term T is in the log of every leader of a term > T;
 *       state machine safety no two nodes apply different entries (or reach
 *                          different states) at one index.
 *     A committed entry is recorded the first time any node's commit index
 *     covers it, along with that node's term (>= the committing term).
 */
#include "sim/raft_sim.h"

#include "common/common.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct disk {
	struct raft_hard_state hs;
	struct raft_snapshot snap; /* owns data */
	struct raft_entry *e;	   /* owns data; e[0].index == snap.index + 1 */
	size_t n, cap;
};

struct app {
	uint64_t index, hash, count;
};

struct node {
	uint64_t id;
	bool exists, alive;
	struct raft *r;
	struct disk d;
	struct app app;
	uint64_t next_tick;
	bool ready_pending;
	uint64_t ready_at;
	uint64_t checked_commit;
	enum raft_role last_role;
	uint64_t last_term, last_lead;
};

struct flight {
	uint64_t at, seq;
	struct raft_msg m;
};

struct crec {
	uint64_t term, hash, observed_term, app_hash;
	bool set, app_set;
};

struct raft_sim {
	struct raft_sim_options o;
	uint64_t rng, now, seq;
	struct node nodes[RAFT_SIM_MAX_NODES + 1];
	struct flight *fl;
	size_t n_fl, cap_fl;
	bool cut[RAFT_SIM_MAX_NODES + 1][RAFT_SIM_MAX_NODES + 1];
	unsigned loss_pm, dup_pm;
	bool (*filter)(void *ctx, const struct raft_msg *m);
	void *filter_ctx;
	struct crec *c;
	size_t cap_c;
	uint64_t gcommit;
	uint64_t *lot; /* leader of term */
	size_t cap_lot;
	bool violated;
	char violation[512];
	uint64_t delivered[RAFT_MSG_TIMEOUT_NOW + 1];
};

static uint64_t rnd(struct raft_sim *s)
{
	uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

uint64_t raft_sim_rand(struct raft_sim *s)
{
	return rnd(s);
}

static unsigned rnd_below(struct raft_sim *s, unsigned n)
{
	return n == 0 ? 0 : (unsigned)(rnd(s) % n);
}

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t entry_hash(const struct raft_entry *e)
{
	uint64_t h = fnv(0xcbf29ce484222325ull, &e->type, 1);

	return fnv(h, e->data, e->len);
}

void raft_sim_tracef(struct raft_sim *s, const char *fmt, ...)
{
	va_list ap;

	if (s->o.trace == NULL)
		return;
	fprintf(s->o.trace, "[%5llu.%03llus] ",
		(unsigned long long)(s->now / 1000),
		(unsigned long long)(s->now % 1000));
	va_start(ap, fmt);
	vfprintf(s->o.trace, fmt, ap);
	va_end(ap);
	fputc('\n', s->o.trace);
}

static void violate(struct raft_sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void violate(struct raft_sim *s, const char *fmt, ...)
{
	va_list ap;

	if (s->violated)
		return;
	s->violated = true;
	va_start(ap, fmt);
	vsnprintf(s->violation, sizeof(s->violation), fmt, ap);
	va_end(ap);
	raft_sim_tracef(s, "VIOLATION: %s", s->violation);
}

const char *raft_sim_violation(const struct raft_sim *s)
{
	return s->violated ? s->violation : NULL;
}

uint64_t raft_sim_now(const struct raft_sim *s)
{
	return s->now;
}

/* ---- messages ---------------------------------------------------------- */

static int msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
	*dst = *src;
	dst->entries = NULL;
	dst->n_entries = 0;
	dst->snapshot.data = NULL;
	if (src->n_entries > 0) {
		dst->entries =
		    mem_calloc(src->n_entries, sizeof(*dst->entries));
		if (dst->entries == NULL)
			return -1;
		for (size_t i = 0; i < src->n_entries; i++) {
			dst->entries[i] = src->entries[i];
			dst->entries[i].data = NULL;
			if (src->entries[i].len > 0) {
				dst->entries[i].data =
				    mem_alloc(src->entries[i].len);
				if (dst->entries[i].data == NULL)
					return -1;
				memcpy(dst->entries[i].data,
				       src->entries[i].data,
				       src->entries[i].len);
			}
			dst->n_entries = i + 1;
		}
	}
	if (src->snapshot.len > 0) {
		dst->snapshot.data = mem_alloc(src->snapshot.len);
		if (dst->snapshot.data == NULL)
			return -1;
		memcpy(dst->snapshot.data, src->snapshot.data,
		       src->snapshot.len);
	}
	return 0;
}

static void msg_free(struct raft_msg *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		mem_free(m->entries[i].data);
	mem_free(m->entries);
	mem_free(m->snapshot.data);
}

static void msg_describe(const struct raft_msg *m, char *buf, size_t len)
{
	switch (m->type) {
	case RAFT_MSG_APPEND:
		snprintf(buf, len, "prev=%llu/%llu n=%zu commit=%llu",
			 (unsigned long long)m->index,
			 (unsigned long long)m->log_term, m->n_entries,
			 (unsigned long long)m->commit);
		break;
	case RAFT_MSG_APPEND_RESP:
		snprintf(buf, len, "%s index=%llu hint=%llu/%llu",
			 m->reject ? "reject" : "ok",
			 (unsigned long long)m->index,
			 (unsigned long long)m->hint,
			 (unsigned long long)m->hint_term);
		break;
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		snprintf(buf, len, "last=%llu/%llu%s",
			 (unsigned long long)m->index,
			 (unsigned long long)m->log_term,
			 m->transfer ? " transfer" : "");
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		snprintf(buf, len, "%s", m->reject ? "reject" : "grant");
		break;
	case RAFT_MSG_HEARTBEAT:
		snprintf(buf, len, "commit=%llu",
			 (unsigned long long)m->commit);
		break;
	case RAFT_MSG_SNAPSHOT:
		snprintf(buf, len, "snap=%llu/%llu",
			 (unsigned long long)m->snapshot.index,
			 (unsigned long long)m->snapshot.term);
		break;
	default:
		buf[0] = '\0';
	}
}

static bool link_cut(const struct raft_sim *s, uint64_t from, uint64_t to)
{
	if (from > RAFT_SIM_MAX_NODES || to > RAFT_SIM_MAX_NODES)
		return true;
	return s->cut[from][to];
}

static void enqueue(struct raft_sim *s, const struct raft_msg *m)
{
	struct flight *f;
	unsigned span = s->o.latency_max_ms - s->o.latency_min_ms + 1;

	if (s->n_fl == s->cap_fl) {
		size_t cap = s->cap_fl ? s->cap_fl * 2 : 64;
		struct flight *v = mem_realloc(s->fl, cap * sizeof(*v));

		if (v == NULL) {
			violate(s, "harness out of memory");
			return;
		}
		s->fl = v;
		s->cap_fl = cap;
	}
	f = &s->fl[s->n_fl];
	if (msg_copy(&f->m, m) != 0) {
		msg_free(&f->m);
		violate(s, "harness out of memory");
		return;
	}
	f->at = s->now + s->o.latency_min_ms + rnd_below(s, span);
	f->seq = s->seq++;
	s->n_fl++;
}

static void net_send(struct raft_sim *s, const struct raft_msg *m)
{
	char d[128];

	if (s->o.trace) {
		msg_describe(m, d, sizeof(d));
	}
	if (s->filter != NULL && s->filter(s->filter_ctx, m)) {
		raft_sim_tracef(
		    s, "n%llu -> n%llu %s t%llu %s  (dropped by filter)",
		    (unsigned long long)m->from, (unsigned long long)m->to,
		    raft_msg_type_name(m->type), (unsigned long long)m->term,
		    d);
		return;
	}
	if (link_cut(s, m->from, m->to) || rnd_below(s, 1000) < s->loss_pm) {
		raft_sim_tracef(s, "n%llu -> n%llu %s t%llu %s  (lost)",
				(unsigned long long)m->from,
				(unsigned long long)m->to,
				raft_msg_type_name(m->type),
				(unsigned long long)m->term, d);
		return;
	}
	enqueue(s, m);
	if (rnd_below(s, 1000) < s->dup_pm)
		enqueue(s, m);
}

/* ---- disks and application ------------------------------------------- */

static void disk_truncate_from(struct disk *d, uint64_t index)
{
	while (d->n > 0 && d->e[d->n - 1].index >= index) {
		mem_free(d->e[d->n - 1].data);
		d->n--;
	}
}

static void disk_free(struct disk *d)
{
	disk_truncate_from(d, 0);
	mem_free(d->e);
	mem_free(d->snap.data);
	memset(d, 0, sizeof(*d));
}

static int disk_append(struct disk *d, const struct raft_entry *src)
{
	struct raft_entry *e;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct raft_entry *v = mem_realloc(d->e, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		d->e = v;
		d->cap = cap;
	}
	e = &d->e[d->n];
	*e = *src;
	e->data = NULL;
	if (src->len > 0) {
		e->data = mem_alloc(src->len);
		if (e->data == NULL)
			return -1;
		memcpy(e->data, src->data, src->len);
	}
	d->n++;
	return 0;
}

static void disk_set_snapshot(struct disk *d, const struct raft_snapshot *snap)
{
	size_t drop = 0;

	mem_free(d->snap.data);
	d->snap = *snap;
	d->snap.data = NULL;
	if (snap->len > 0) {
		d->snap.data = mem_alloc(snap->len);
		if (d->snap.data != NULL)
			memcpy(d->snap.data, snap->data, snap->len);
		else
			d->snap.len = 0;
	}
	while (drop < d->n && d->e[drop].index <= snap->index) {
		mem_free(d->e[drop].data);
		drop++;
	}
	if (drop > 0) {
		memmove(d->e, d->e + drop, (d->n - drop) * sizeof(*d->e));
		d->n -= drop;
	}
	/* entries that do not continue the snapshot are unusable */
	if (d->n > 0 && d->e[0].index != snap->index + 1)
		disk_truncate_from(d, 0);
}

static struct crec *crec_at(struct raft_sim *s, uint64_t index)
{
	if (index >= s->cap_c) {
		size_t cap = s->cap_c ? s->cap_c : 256;
		struct crec *v;

		while (cap <= index)
			cap *= 2;
		v = mem_realloc(s->c, cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		memset(v + s->cap_c, 0, (cap - s->cap_c) * sizeof(*v));
		s->c = v;
		s->cap_c = cap;
	}
	return &s->c[index];
}

static void app_restore(struct raft_sim *s, struct node *n,
			const struct raft_snapshot *snap)
{
	struct crec *c;

	memset(&n->app, 0, sizeof(n->app));
	if (snap->len == sizeof(n->app))
		memcpy(&n->app, snap->data, sizeof(n->app));
	else if (snap->len != 0 || snap->index != 0)
		violate(s, "n%llu: snapshot at %llu has a bad payload",
			(unsigned long long)n->id,
			(unsigned long long)snap->index);
	if (n->app.index != snap->index)
		violate(s, "n%llu: snapshot payload index %llu != %llu",
			(unsigned long long)n->id,
			(unsigned long long)n->app.index,
			(unsigned long long)snap->index);
	c = crec_at(s, snap->index);
	if (c != NULL && snap->index > 0) {
		if (c->app_set && c->app_hash != n->app.hash)
			violate(s,
				"state machine safety: n%llu restored a "
				"different state at %llu",
				(unsigned long long)n->id,
				(unsigned long long)snap->index);
	}
}

static void app_apply(struct raft_sim *s, struct node *n,
		      const struct raft_entry *e)
{
	struct crec *c = crec_at(s, e->index);
	uint64_t h = entry_hash(e);

	if (c == NULL) {
		violate(s, "harness out of memory");
		return;
	}
	if (e->index != n->app.index + 1) {
		violate(s, "n%llu applies %llu after %llu",
			(unsigned long long)n->id, (unsigned long long)e->index,
			(unsigned long long)n->app.index);
		return;
	}
	if (c->set && (c->term != e->term || c->hash != h))
		violate(s,
			"state machine safety: n%llu applies %llu/t%llu, "
			"committed was t%llu",
			(unsigned long long)n->id, (unsigned long long)e->index,
			(unsigned long long)e->term,
			(unsigned long long)c->term);
	if (!c->set) {
		c->set = true;
		c->term = e->term;
		c->hash = h;
		c->observed_term = raft_term(n->r);
	}
	n->app.hash = fnv(n->app.hash ^ e->index, &h, sizeof(h));
	n->app.index = e->index;
	n->app.count++;
	if (c->app_set && c->app_hash != n->app.hash)
		violate(s, "state machine safety: n%llu state differs at %llu",
			(unsigned long long)n->id,
			(unsigned long long)e->index);
	c->app_set = true;
	c->app_hash = n->app.hash;
}

/* ---- nodes ------------------------------------------------------------ */

static struct node *node_get(struct raft_sim *s, uint64_t id)
{
	if (id == 0 || id > RAFT_SIM_MAX_NODES)
		return NULL;
	return &s->nodes[id];
}

static void node_note_state(struct raft_sim *s, struct node *n)
{
	if (n->r == NULL)
		return;
	if (raft_role(n->r) != n->last_role ||
	    raft_term(n->r) != n->last_term ||
	    raft_leader(n->r) != n->last_lead) {
		n->last_role = raft_role(n->r);
		n->last_term = raft_term(n->r);
		n->last_lead = raft_leader(n->r);
		raft_sim_tracef(s,
				"n%llu is %s at term %llu (leader n%llu, "
				"last %llu, commit %llu)",
				(unsigned long long)n->id,
				raft_role_name(n->last_role),
				(unsigned long long)n->last_term,
				(unsigned long long)n->last_lead,
				(unsigned long long)raft_last_index(n->r),
				(unsigned long long)raft_commit_index(n->r));
	}
}

static void node_schedule_ready(struct raft_sim *s, struct node *n)
{
	if (!n->alive || n->ready_pending || !raft_has_ready(n->r))
		return;
	n->ready_pending = true;
	n->ready_at = s->now + rnd_below(s, s->o.disk_delay_max_ms + 1);
}

static void node_stop(struct raft_sim *s, struct node *n)
{
	raft_free(n->r);
	n->r = NULL;
	n->alive = false;
	n->ready_pending = false;
}

static void maybe_compact(struct raft_sim *s, struct node *n)
{
	const struct raft_snapshot *snap;

	if (s->o.compact_every == 0 ||
	    n->app.index < raft_first_index(n->r) - 1 + s->o.compact_every)
		return;
	if (raft_compact(n->r, n->app.index, &n->app, sizeof(n->app)) != 0) {
		violate(s, "n%llu: compaction failed",
			(unsigned long long)n->id);
		return;
	}
	snap = raft_snapshot(n->r);
	disk_set_snapshot(&n->d, snap);
	raft_sim_tracef(s, "n%llu compacts through %llu",
			(unsigned long long)n->id,
			(unsigned long long)snap->index);
}

/* Step 1 of the ready contract: make the batch durable on the node's disk. */
static void persist_ready(struct raft_sim *s, struct node *n,
			  const struct raft_ready *rd)
{
	if (rd->snapshot != NULL) {
		disk_truncate_from(&n->d, 0);
		disk_set_snapshot(&n->d, rd->snapshot);
	}
	if (rd->n_entries > 0) {
		disk_truncate_from(&n->d, rd->entries[0].index);
		if (n->d.n > 0 &&
		    n->d.e[n->d.n - 1].index + 1 != rd->entries[0].index)
			violate(s, "n%llu: ready entries leave a gap",
				(unsigned long long)n->id);
		if (n->d.n == 0 && n->d.snap.index + 1 != rd->entries[0].index)
			violate(s,
				"n%llu: ready entries do not follow the "
				"snapshot",
				(unsigned long long)n->id);
		for (size_t i = 0; i < rd->n_entries; i++)
			if (disk_append(&n->d, &rd->entries[i]) != 0)
				violate(s, "harness out of memory");
	}
	if (rd->has_hard_state)
		n->d.hs = rd->hard_state;
}

static void node_process_ready(struct raft_sim *s, struct node *n)
{
	n->ready_pending = false;
	while (n->alive && raft_has_ready(n->r)) {
		struct raft_ready rd;

		if (raft_ready(n->r, &rd) != 0) {
			violate(s, "raft_ready failed");
			return;
		}
		if (s->o.unsafe_send_before_persist) {
			for (size_t i = 0; i < rd.n_msgs; i++)
				net_send(s, &rd.msgs[i]);
			if (rnd_below(s, 1000) < s->o.crash_in_ready_pm) {
				raft_sim_tracef(s,
						"n%llu crashes after sending, "
						"before persisting",
						(unsigned long long)n->id);
				node_stop(s, n);
				return;
			}
		}
		persist_ready(s, n, &rd);
		if (!s->o.unsafe_send_before_persist) {
			if (rnd_below(s, 1000) < s->o.crash_in_ready_pm) {
				raft_sim_tracef(
				    s,
				    "n%llu crashes after persisting, "
				    "before sending %zu messages",
				    (unsigned long long)n->id, rd.n_msgs);
				node_stop(s, n);
				return;
			}
			for (size_t i = 0; i < rd.n_msgs; i++)
				net_send(s, &rd.msgs[i]);
		}
		/* 3. apply */
		if (rd.snapshot != NULL) {
			app_restore(s, n, rd.snapshot);
			raft_sim_tracef(s, "n%llu installs snapshot %llu/t%llu",
					(unsigned long long)n->id,
					(unsigned long long)rd.snapshot->index,
					(unsigned long long)rd.snapshot->term);
		}
		for (size_t i = 0; i < rd.n_committed; i++)
			app_apply(s, n, &rd.committed[i]);
		if (raft_advance(n->r, &rd) != 0)
			violate(s, "raft_advance failed");
	}
	if (n->alive)
		maybe_compact(s, n);
}

static int node_start(struct raft_sim *s, struct node *n)
{
	struct raft_options o = {
	    .id = n->id,
	    .election_tick = s->o.election_tick,
	    .heartbeat_tick = s->o.heartbeat_tick,
	    .seed = rnd(s),
	    .pre_vote = s->o.pre_vote,
	    .check_quorum = s->o.check_quorum,
	    .max_inflight = s->o.max_inflight,
	    .max_batch_entries = s->o.max_batch_entries,
	};
	struct raft_persisted ps = {
	    .hard_state = n->d.hs,
	    .snapshot = &n->d.snap,
	    .entries = n->d.e,
	    .n_entries = n->d.n,
	};
	char err[128];
	int rc = raft_new(&o, &ps, &n->r, err, sizeof(err));

	if (rc != 0) {
		violate(s, "n%llu cannot restart: %s (%s)",
			(unsigned long long)n->id, raft_strerror(rc), err);
		return rc;
	}
	n->alive = true;
	n->exists = true;
	n->ready_pending = false;
	n->checked_commit = 0;
	n->last_role = RAFT_FOLLOWER;
	n->last_term = raft_term(n->r);
	n->last_lead = 0;
	n->next_tick = s->now + 1 + rnd_below(s, s->o.tick_ms);
	app_restore(s, n, &n->d.snap);
	node_schedule_ready(s, n);
	return 0;
}

struct raft_sim *raft_sim_new(const struct raft_sim_options *opt)
{
	struct raft_sim *s = mem_calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->o = *opt;
	if (s->o.election_tick == 0)
		s->o.election_tick = 10;
	if (s->o.heartbeat_tick == 0)
		s->o.heartbeat_tick = 2;
	if (s->o.tick_ms == 0)
		s->o.tick_ms = 10;
	if (s->o.latency_max_ms == 0) {
		s->o.latency_min_ms = 1;
		s->o.latency_max_ms = 5;
	}
	if (s->o.latency_min_ms > s->o.latency_max_ms)
		s->o.latency_min_ms = s->o.latency_max_ms;
	if (s->o.n_nodes > RAFT_SIM_MAX_NODES)
		s->o.n_nodes = RAFT_SIM_MAX_NODES;
	s->rng = opt->seed;
	s->loss_pm = s->o.loss_pm;
	s->dup_pm = s->o.dup_pm;
	raft_sim_tracef(s, "seed %llu, %u nodes, pre-vote %s, check-quorum %s",
			(unsigned long long)opt->seed, s->o.n_nodes,
			s->o.pre_vote ? "on" : "off",
			s->o.check_quorum ? "on" : "off");
	for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++)
		s->nodes[id].id = id;
	for (uint64_t id = 1; id <= s->o.n_nodes; id++) {
		struct node *n = &s->nodes[id];

		n->d.snap.conf.n = s->o.n_nodes;
		for (unsigned i = 0; i < s->o.n_nodes; i++)
			n->d.snap.conf.members[i].id = i + 1;
		n->exists = true;
		if (!s->o.no_autostart && node_start(s, n) != 0) {
			raft_sim_free(s);
			return NULL;
		}
	}
	return s;
}

void raft_sim_free(struct raft_sim *s)
{
	if (s == NULL)
		return;
	for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++) {
		raft_free(s->nodes[id].r);
		disk_free(&s->nodes[id].d);
	}
	for (size_t i = 0; i < s->n_fl; i++)
		msg_free(&s->fl[i].m);
	mem_free(s->fl);
	mem_free(s->c);
	mem_free(s->lot);
	mem_free(s);
}

/* ---- checkers ----------------------------------------------------------- */

static void check_leader_term(struct raft_sim *s, struct node *n)
{
	uint64_t t = raft_term(n->r);

	if (t >= s->cap_lot) {
		size_t cap = s->cap_lot ? s->cap_lot : 64;
		uint64_t *v;

		while (cap <= t)
			cap *= 2;
		v = mem_realloc(s->lot, cap * sizeof(*v));
		if (v == NULL) {
			violate(s, "harness out of memory");
			return;
		}
		memset(v + s->cap_lot, 0, (cap - s->cap_lot) * sizeof(*v));
		s->lot = v;
		s->cap_lot = cap;
	}
	if (s->lot[t] != 0 && s->lot[t] != n->id)
		violate(s,
			"election safety: n%llu and n%llu both led term %llu",
			(unsigned long long)s->lot[t],
			(unsigned long long)n->id, (unsigned long long)t);
	s->lot[t] = n->id;
}

static void check_commits(struct raft_sim *s, struct node *n)
{
	uint64_t commit = raft_commit_index(n->r);
	uint64_t i = n->checked_commit + 1;

	if (i < raft_first_index(n->r))
		i = raft_first_index(n->r);
	for (; i <= commit; i++) {
		const struct raft_entry *e = raft_log_entry(n->r, i);
		struct crec *c = crec_at(s, i);

		if (e == NULL || c == NULL)
			continue;
		if (!c->set) {
			c->set = true;
			c->term = e->term;
			c->hash = entry_hash(e);
			c->observed_term = raft_term(n->r);
		} else if (c->term != e->term || c->hash != entry_hash(e)) {
			violate(
			    s,
			    "committed entry changed: n%llu has %llu/t%llu, "
			    "committed t%llu",
			    (unsigned long long)n->id, (unsigned long long)i,
			    (unsigned long long)e->term,
			    (unsigned long long)c->term);
		}
	}
	if (commit > n->checked_commit)
		n->checked_commit = commit;
	if (commit > s->gcommit)
		s->gcommit = commit;
}

static void check_leader_completeness(struct raft_sim *s, struct node *n)
{
	uint64_t t = raft_term(n->r);

	for (uint64_t i = raft_first_index(n->r); i <= s->gcommit; i++) {
		const struct raft_entry *e;
		struct crec *c = i < s->cap_c ? &s->c[i] : NULL;

		if (c == NULL || !c->set || c->observed_term >= t)
			continue;
		e = raft_log_entry(n->r, i);
		if (e == NULL || e->term != c->term ||
		    entry_hash(e) != c->hash) {
			violate(
			    s,
			    "leader completeness: leader n%llu of term %llu "
			    "lacks committed entry %llu/t%llu",
			    (unsigned long long)n->id, (unsigned long long)t,
			    (unsigned long long)i, (unsigned long long)c->term);
			return;
		}
	}
}

static void check_log_matching(struct raft_sim *s, struct node *a,
			       struct node *b)
{
	uint64_t lo = raft_first_index(a->r), hi = raft_last_index(a->r);
	uint64_t i;

	if (raft_first_index(b->r) > lo)
		lo = raft_first_index(b->r);
	if (raft_last_index(b->r) < hi)
		hi = raft_last_index(b->r);
	for (i = hi; i >= lo && i > 0; i--)
		if (raft_log_term(a->r, i) == raft_log_term(b->r, i))
			break;
	for (; i >= lo && i > 0; i--) {
		const struct raft_entry *x = raft_log_entry(a->r, i);
		const struct raft_entry *y = raft_log_entry(b->r, i);

		if (x->term != y->term || x->type != y->type ||
		    x->len != y->len ||
		    (x->len > 0 && memcmp(x->data, y->data, x->len) != 0)) {
			violate(s,
				"log matching: n%llu and n%llu differ at %llu "
				"below a common entry",
				(unsigned long long)a->id,
				(unsigned long long)b->id,
				(unsigned long long)i);
			return;
		}
	}
}

static void check_all(struct raft_sim *s)
{
	for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++) {
		struct node *n = &s->nodes[id];

		if (!n->alive)
			continue;
		check_commits(s, n);
		if (raft_role(n->r) == RAFT_LEADER)
			check_leader_term(s, n);
	}
	for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++) {
		struct node *n = &s->nodes[id];

		if (!n->alive)
			continue;
		if (raft_role(n->r) == RAFT_LEADER)
			check_leader_completeness(s, n);
		for (uint64_t j = id + 1; j <= RAFT_SIM_MAX_NODES; j++)
			if (s->nodes[j].alive)
				check_log_matching(s, n, &s->nodes[j]);
	}
}

/* ---- the event loop ----------------------------------------------------- */

int raft_sim_step(struct raft_sim *s)
{
	enum { EV_NONE, EV_READY, EV_MSG, EV_TICK } kind = EV_NONE;
	uint64_t best = UINT64_MAX, best_seq = UINT64_MAX;
	struct node *target = NULL;
	size_t fi = 0;

	if (s->violated)
		return -1;
	for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++) {
		struct node *n = &s->nodes[id];

		if (n->alive && n->ready_pending && n->ready_at < best) {
			best = n->ready_at;
			kind = EV_READY;
			target = n;
		}
	}
	for (size_t i = 0; i < s->n_fl; i++) {
		struct flight *f = &s->fl[i];

		if (f->at < best ||
		    (f->at == best && kind == EV_MSG && f->seq < best_seq)) {
			best = f->at;
			best_seq = f->seq;
			kind = EV_MSG;
			fi = i;
		}
	}
	for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++) {
		struct node *n = &s->nodes[id];

		if (n->alive && n->next_tick < best) {
			best = n->next_tick;
			kind = EV_TICK;
			target = n;
		}
	}
	if (kind == EV_NONE)
		return 0; /* nothing alive, nothing in flight */
	if (best > s->now)
		s->now = best;

	switch (kind) {
	case EV_READY:
		node_process_ready(s, target);
		break;
	case EV_MSG: {
		struct raft_msg m = s->fl[fi].m;
		struct node *n = node_get(s, m.to);

		s->fl[fi] = s->fl[--s->n_fl];
		if (n == NULL || !n->alive || link_cut(s, m.from, m.to)) {
			msg_free(&m);
			break;
		}
		if (m.type <= RAFT_MSG_TIMEOUT_NOW)
			s->delivered[m.type]++;
		if (s->o.trace) {
			char d[128];

			msg_describe(&m, d, sizeof(d));
			raft_sim_tracef(s, "n%llu <- n%llu %s t%llu %s",
					(unsigned long long)m.to,
					(unsigned long long)m.from,
					raft_msg_type_name(m.type),
					(unsigned long long)m.term, d);
		}
		{
			int rc = raft_step(n->r, &m);

			if (rc != 0)
				violate(s,
					"n%llu: raft_step(%s from n%llu) "
					"failed: %s",
					(unsigned long long)n->id,
					raft_msg_type_name(m.type),
					(unsigned long long)m.from,
					raft_strerror(rc));
		}
		msg_free(&m);
		target = n;
		break;
	}
	case EV_TICK:
		target->next_tick += s->o.tick_ms;
		if (raft_tick(target->r) != 0)
			violate(s, "raft_tick failed");
		break;
	case EV_NONE:
		break;
	}
	if (target != NULL && target->alive) {
		node_note_state(s, target);
		node_schedule_ready(s, target);
	}
	check_all(s);
	return s->violated ? -1 : 0;
}

int raft_sim_run_for(struct raft_sim *s, uint64_t ms)
{
	uint64_t end = s->now + ms;

	while (s->now < end) {
		bool any = s->n_fl > 0;

		for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES && !any; id++)
			any = s->nodes[id].alive;
		if (!any) {
			s->now = end;
			break;
		}
		if (raft_sim_step(s) != 0)
			return -1;
	}
	return 0;
}

int raft_sim_run_until(struct raft_sim *s,
		       bool (*pred)(struct raft_sim *, void *), void *ctx,
		       uint64_t ms)
{
	uint64_t end = s->now + ms;

	while (!pred(s, ctx)) {
		if (s->now >= end)
			return 0;
		if (raft_sim_step(s) != 0)
			return -1;
		if (s->n_fl == 0) {
			bool any = false;

			for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++)
				any = any || s->nodes[id].alive;
			if (!any)
				return 0;
		}
	}
	return 1;
}

/* ---- node control ---------------------------------------------------------
 */

struct raft *raft_sim_node(struct raft_sim *s, uint64_t id)
{
	struct node *n = node_get(s, id);

	return n != NULL && n->alive ? n->r : NULL;
}

bool raft_sim_is_alive(const struct raft_sim *s, uint64_t id)
{
	return id > 0 && id <= RAFT_SIM_MAX_NODES && s->nodes[id].alive;
}

bool raft_sim_exists(const struct raft_sim *s, uint64_t id)
{
	return id > 0 && id <= RAFT_SIM_MAX_NODES && s->nodes[id].exists;
}

uint64_t raft_sim_applied(const struct raft_sim *s, uint64_t id)
{
	if (id == 0 || id > RAFT_SIM_MAX_NODES)
		return 0;
	return s->nodes[id].app.index;
}

void raft_sim_crash(struct raft_sim *s, uint64_t id)
{
	struct node *n = node_get(s, id);

	if (n == NULL || !n->alive)
		return;
	raft_sim_tracef(s, "n%llu crashes", (unsigned long long)id);
	node_stop(s, n);
}

int raft_sim_restart(struct raft_sim *s, uint64_t id)
{
	struct node *n = node_get(s, id);

	if (n == NULL || !n->exists)
		return -1;
	if (n->alive)
		return 0;
	raft_sim_tracef(s,
			"n%llu restarts (term %llu, vote n%llu, %zu entries "
			"after snapshot %llu)",
			(unsigned long long)id,
			(unsigned long long)n->d.hs.term,
			(unsigned long long)n->d.hs.vote, n->d.n,
			(unsigned long long)n->d.snap.index);
	return node_start(s, n) == 0 ? 0 : -1;
}

int raft_sim_add_node(struct raft_sim *s, uint64_t id)
{
	struct node *n = node_get(s, id);

	if (n == NULL)
		return -1;
	if (n->alive)
		node_stop(s, n);
	disk_free(&n->d);
	raft_sim_tracef(s, "n%llu starts empty", (unsigned long long)id);
	return node_start(s, n) == 0 ? 0 : -1;
}

int raft_sim_set_disk(struct raft_sim *s, uint64_t id, const uint64_t *terms,
		      size_t count, uint64_t term, uint64_t vote)
{
	struct node *n = node_get(s, id);

	if (n == NULL || n->alive)
		return -1;
	disk_truncate_from(&n->d, 0);
	for (size_t i = 0; i < count; i++) {
		char buf[48];
		struct raft_entry e = {.term = terms[i], .index = i + 1};

		snprintf(buf, sizeof(buf), "t%llui%zu",
			 (unsigned long long)terms[i], i + 1);
		e.data = buf;
		e.len = strlen(buf);
		if (disk_append(&n->d, &e) != 0)
			return -1;
	}
	n->d.hs.term = term;
	n->d.hs.vote = vote;
	n->d.hs.commit = 0;
	n->exists = true;
	return 0;
}

/* ---- network control -------------------------------------------------------
 */

void raft_sim_cut(struct raft_sim *s, uint64_t from, uint64_t to, bool cut)
{
	if (from > RAFT_SIM_MAX_NODES || to > RAFT_SIM_MAX_NODES)
		return;
	s->cut[from][to] = cut;
}

void raft_sim_isolate(struct raft_sim *s, uint64_t id)
{
	raft_sim_tracef(s, "n%llu is isolated", (unsigned long long)id);
	for (uint64_t j = 1; j <= RAFT_SIM_MAX_NODES; j++) {
		if (j == id)
			continue;
		raft_sim_cut(s, id, j, true);
		raft_sim_cut(s, j, id, true);
	}
}

void raft_sim_partition(struct raft_sim *s, uint32_t mask)
{
	raft_sim_tracef(s, "partition: mask 0x%x against the rest", mask);
	for (uint64_t i = 1; i <= RAFT_SIM_MAX_NODES; i++)
		for (uint64_t j = 1; j <= RAFT_SIM_MAX_NODES; j++)
			s->cut[i][j] = ((mask >> i) & 1) != ((mask >> j) & 1);
}

void raft_sim_heal(struct raft_sim *s)
{
	raft_sim_tracef(s, "network heals");
	memset(s->cut, 0, sizeof(s->cut));
	s->loss_pm = 0;
	s->dup_pm = 0;
	s->o.crash_in_ready_pm = 0;
}

void raft_sim_set_faults(struct raft_sim *s, unsigned loss_pm, unsigned dup_pm)
{
	raft_sim_tracef(s, "faults: loss %u/1000, dup %u/1000", loss_pm,
			dup_pm);
	s->loss_pm = loss_pm;
	s->dup_pm = dup_pm;
}

void raft_sim_set_filter(struct raft_sim *s,
			 bool (*fn)(void *ctx, const struct raft_msg *m),
			 void *ctx)
{
	s->filter = fn;
	s->filter_ctx = ctx;
}

uint64_t raft_sim_delivered(const struct raft_sim *s, int type)
{
	if (type < 0 || type > RAFT_MSG_TIMEOUT_NOW)
		return 0;
	return s->delivered[type];
}

/* ---- clients ------------------------------------------------------------- */

int raft_sim_propose(struct raft_sim *s, uint64_t id, const void *data,
		     size_t len, uint64_t *index)
{
	struct node *n = node_get(s, id);
	uint64_t idx = 0;
	int rc;

	if (n == NULL || !n->alive)
		return -RAFT_ENOTLEADER;
	rc = raft_propose(n->r, data, len, &idx);
	if (rc == 0) {
		raft_sim_tracef(s, "n%llu accepts proposal at %llu",
				(unsigned long long)id,
				(unsigned long long)idx);
		node_schedule_ready(s, n);
		if (index != NULL)
			*index = idx;
	}
	return rc;
}

uint64_t raft_sim_leader(const struct raft_sim *s)
{
	uint64_t best = 0, best_term = 0;

	for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++) {
		const struct node *n = &s->nodes[id];

		if (n->alive && raft_role(n->r) == RAFT_LEADER &&
		    raft_term(n->r) >= best_term) {
			best = id;
			best_term = raft_term(n->r);
		}
	}
	return best;
}

uint64_t raft_sim_stable_leader(const struct raft_sim *s)
{
	uint64_t l = raft_sim_leader(s), t;
	const struct raft_conf *c;

	if (l == 0)
		return 0;
	c = raft_conf(s->nodes[l].r);
	t = raft_term(s->nodes[l].r);
	for (uint64_t id = 1; id <= RAFT_SIM_MAX_NODES; id++) {
		const struct node *n = &s->nodes[id];

		if (!n->alive)
			continue;
		if (!raft_conf_is_member(c, id))
			continue;
		if (raft_term(n->r) != t || raft_leader(n->r) != l)
			return 0;
	}
	return l;
}

static bool has_stable_leader(struct raft_sim *s, void *ctx)
{
	(void)ctx;
	return raft_sim_stable_leader(s) != 0;
}

uint64_t raft_sim_wait_leader(struct raft_sim *s, uint64_t ms)
{
	if (raft_sim_run_until(s, has_stable_leader, NULL, ms) != 1)
		return 0;
	return raft_sim_stable_leader(s);
}

bool raft_sim_all_applied(struct raft_sim *s, uint64_t id, uint64_t index)
{
	struct node *l = node_get(s, id);
	const struct raft_conf *c;

	if (l == NULL || !l->alive)
		return false;
	c = raft_conf(l->r);
	for (unsigned i = 0; i < c->n; i++) {
		struct node *n = node_get(s, c->members[i].id);

		if (n == NULL || !n->alive || n->app.index < index)
			return false;
	}
	return true;
}

bool raft_sim_committed(const struct raft_sim *s, uint64_t index,
			uint64_t *term)
{
	if (index >= s->cap_c || !s->c[index].set)
		return false;
	if (term != NULL)
		*term = s->c[index].term;
	return true;
}

bool raft_sim_committed_is(const struct raft_sim *s, uint64_t index,
			   const void *data, size_t len)
{
	struct raft_entry e = {
	    .type = RAFT_ENTRY_NORMAL, .len = len, .data = (void *)data};

	return index < s->cap_c && s->c[index].set &&
	       s->c[index].hash == entry_hash(&e);
}
