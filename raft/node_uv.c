/*
 * node_uv.c - the Raft runtime: one pure struct raft driven on a libuv loop,
 * persisting through raft/storage.c and talking through raft/transport.c.
 *
 * Design notes
 *  - One ready batch at a time.  A uv_check handle ends every loop
 *    iteration with pump(): it feeds what waited (ticks, messages,
 *    proposals) into the core, then takes one ready batch and hands it to
 *    raft_storage_save().  Only in the save's callback (durable) are the
 *    batch's messages sent, its committed entries applied and
 *    raft_advance() called; then pump() runs again at once.  Everything
 *    that arrives during a save waits in the runtime (the core refuses
 *    changes between ready and advance), so one fsync covers every
 *    proposal and message of the time it took: group commit.
 *  - Parallel append (Raft thesis 10.2.1; on unless
 *    cfg->parallel_append is false): a leader sends the APPEND and
 *    HEARTBEAT messages of a batch when the save starts instead of when it
 *    ends, so its own fsync runs in parallel with the followers'.  This is
 *    safe with this core because the leader counts its own entries toward
 *    commitment only at raft_advance(), i.e. once they are durable
 *    (raft/ready.c moves the leader's match to the stable index there),
 *    so an entry still commits only on a durable majority.  They are
 *    held back when the batch changes term or vote (not durable yet); every
 *    reply (vote, append response) still waits for the save, which is
 *    what raft.h's rule protects.
 *  - Incoming messages are valid only during the transport's callback;
 *    they are stepped at once when no batch is out, else deep-copied and
 *    queued.  A copy that cannot be allocated is dropped: Raft tolerates
 *    lost messages.
 *  - Proposals are matched to applied entries by (index, term).  A leader
 *    that steps down fails its waiting proposals with -RAFT_ENOTLEADER
 *    (their outcome is unknown: a later leader may still commit them).
 *  - The state machine is a counter (entries, bytes).  Every compact_every
 *    applied entries it is snapshotted (16 bytes) through
 *    raft_storage_compact() and then raft_compact(), so the log on disk
 *    and in memory stays bounded.  Compaction takes the batch slot like a
 *    save.
 *  - A storage error is fatal (DESIGN.md section 9): the node stops taking
 *    part (no more batches; waiting proposals fail) and raft_node_failed()
 *    says why; the process should exit and restart from disk.
 */
#include "raft/node_uv.h"

#include "common/common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct pending {
	uint64_t index, term;
	raft_node_propose_cb cb;
	void *data;
};

struct qprop {
	struct qprop *next;
	raft_node_propose_cb cb;
	void *data;
	size_t len;
	unsigned char bytes[];
};

struct qmsg {
	struct qmsg *next;
	struct raft_msg m;
};

struct raft_node {
	uv_loop_t *loop;
	struct raft_node_config cfg;
	char *listen, *data_dir;
	struct raft *r;
	struct raft_storage *st;
	struct raft_transport *t;
	uv_timer_t tick;
	uv_check_t check;
	struct raft_ready rd;
	bool busy;	/* a save or compaction is out */
	bool sent_early; /* the batch's appends went out before its save */
	bool was_leader;
	bool stopping;
	int failed;
	unsigned missed_ticks;
	struct qmsg *mhead, *mtail;
	struct qprop *phead, *ptail;
	struct pending *pend;
	size_t pend_off, pend_n, pend_cap;
	uint64_t applied_entries, applied_bytes;
	uint64_t snap_index, compact_index;
	unsigned char compact_data[16];
	uint64_t batches, saves;
	struct raft_hard_state saved_hs; /* term and vote as stored */
	raft_node_apply_cb apply_cb;
	void *apply_data;
	int open_parts; /* transport, timer, check, storage still open */
	void (*stop_cb)(void *data);
	void *stop_data;
};

static void pump(struct raft_node *n);

void raft_node_config_init(struct raft_node_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->sync_mode = WAL_SYNC_FDATASYNC;
	cfg->parallel_append = true;
}

/* ---- proposals waiting for their entry ---------------------------------- */

static int pend_push(struct raft_node *n, uint64_t index, uint64_t term,
		     raft_node_propose_cb cb, void *data)
{
	if (n->pend_off > 0 && n->pend_off + n->pend_n == n->pend_cap) {
		memmove(n->pend, n->pend + n->pend_off,
			n->pend_n * sizeof(*n->pend));
		n->pend_off = 0;
	}
	if (n->pend_off + n->pend_n == n->pend_cap) {
		size_t cap = n->pend_cap ? n->pend_cap * 2 : 256;
		struct pending *p = mem_realloc(n->pend, cap * sizeof(*p));
		if (!p)
			return -RAFT_ENOMEM;
		n->pend = p;
		n->pend_cap = cap;
	}
	n->pend[n->pend_off + n->pend_n++] =
		(struct pending){index, term, cb, data};
	return 0;
}

static void pend_fail_all(struct raft_node *n, int status)
{
	while (n->pend_n > 0) {
		struct pending p = n->pend[n->pend_off++];
		n->pend_n--;
		p.cb(n, status, p.index, p.data);
	}
	n->pend_off = 0;
}

/* Completes the proposals up to entry e (applied). */
static void pend_applied(struct raft_node *n, const struct raft_entry *e)
{
	while (n->pend_n > 0 && n->pend[n->pend_off].index <= e->index) {
		struct pending p = n->pend[n->pend_off++];
		n->pend_n--;
		bool ok = p.index == e->index && p.term == e->term;
		p.cb(n, ok ? 0 : -RAFT_ENOTLEADER, p.index, p.data);
	}
	if (n->pend_n == 0)
		n->pend_off = 0;
}

static void qprops_fail(struct raft_node *n, int status)
{
	while (n->phead) {
		struct qprop *q = n->phead;
		n->phead = q->next;
		q->cb(n, status, 0, q->data);
		mem_free(q);
	}
	n->ptail = NULL;
}

/* ---- messages ----------------------------------------------------------- */

static void qmsg_free(struct qmsg *q)
{
	for (size_t i = 0; i < q->m.n_entries; i++)
		mem_free(q->m.entries[i].data);
	mem_free(q->m.entries);
	mem_free(q->m.snapshot.data);
	mem_free(q);
}

static struct qmsg *qmsg_copy(const struct raft_msg *m)
{
	struct qmsg *q = mem_calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->m = *m;
	q->m.entries = NULL;
	q->m.n_entries = 0;
	q->m.snapshot.data = NULL;
	q->m.snapshot.len = 0;
	if (m->n_entries > 0) {
		q->m.entries = mem_calloc(m->n_entries, sizeof(*m->entries));
		if (!q->m.entries)
			goto fail;
		for (size_t i = 0; i < m->n_entries; i++) {
			struct raft_entry *e = &q->m.entries[i];
			*e = m->entries[i];
			e->data = NULL;
			q->m.n_entries = i + 1;
			if (m->entries[i].len > 0) {
				e->data = mem_alloc(m->entries[i].len);
				if (!e->data) {
					e->len = 0;
					goto fail;
				}
				memcpy(e->data, m->entries[i].data, e->len);
			}
		}
	}
	if (m->snapshot.len > 0) {
		q->m.snapshot.data = mem_alloc(m->snapshot.len);
		if (!q->m.snapshot.data)
			goto fail;
		memcpy(q->m.snapshot.data, m->snapshot.data, m->snapshot.len);
		q->m.snapshot.len = m->snapshot.len;
	}
	return q;
fail:
	qmsg_free(q);
	return NULL;
}

static void on_message(const struct raft_msg *m, void *data)
{
	struct raft_node *n = data;
	if (n->stopping || n->failed || !n->r)
		return;
	if (!n->busy) {
		raft_step(n->r, m); /* a bad message changes nothing */
		return;
	}
	struct qmsg *q = qmsg_copy(m);
	if (!q)
		return;
	if (n->mtail)
		n->mtail->next = q;
	else
		n->mhead = q;
	n->mtail = q;
}

/* ---- the batch cycle ---------------------------------------------------- */

static void node_fail(struct raft_node *n, int code, const char *what)
{
	if (n->failed)
		return;
	n->failed = code;
	log_error("raft", "node_failed", "id=%" PRIu64 " during=%s err=%s",
		  n->cfg.id, what, log_q(raft_storage_strerror(code)));
	pend_fail_all(n, -RAFT_EUNAVAILABLE);
	qprops_fail(n, -RAFT_EUNAVAILABLE);
}

static void apply_state(struct raft_node *n, const struct raft_snapshot *s)
{
	const unsigned char *d = s->data;
	uint64_t e = 0, b = 0;
	if (s->len >= 16) {
		for (int i = 7; i >= 0; i--) {
			e = e << 8 | d[i];
			b = b << 8 | d[8 + i];
		}
	}
	n->applied_entries = e;
	n->applied_bytes = b;
}

static void encode_state(const struct raft_node *n, unsigned char out[16])
{
	for (int i = 0; i < 8; i++) {
		out[i] = (unsigned char)(n->applied_entries >> (8 * i));
		out[8 + i] = (unsigned char)(n->applied_bytes >> (8 * i));
	}
}

static void finish_stop(struct raft_node *n);

static void part_closed(struct raft_node *n)
{
	if (--n->open_parts == 0)
		finish_stop(n);
}

static void on_storage_closed(void *data)
{
	part_closed(data);
}

static void after_batch(struct raft_node *n)
{
	n->busy = false;
	if (n->stopping) {
		struct raft_storage *st = n->st;
		n->st = NULL;
		raft_storage_close(st, on_storage_closed, n);
		return;
	}
	pump(n);
}

static void on_compacted(struct raft_storage *st, int status, void *data)
{
	struct raft_node *n = data;
	(void)st;
	if (status != 0) {
		node_fail(n, status, "compact");
	} else {
		int rc = raft_compact(n->r, n->compact_index, n->compact_data,
				      sizeof(n->compact_data));
		if (rc == 0)
			n->snap_index = n->compact_index;
		else
			log_warn("raft", "compact", "id=%" PRIu64 " err=%s",
				 n->cfg.id, log_q(raft_strerror(rc)));
	}
	after_batch(n);
}

/* Messages a leader may send before its own batch is durable. */
static bool is_leader_send(const struct raft_msg *m)
{
	return m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT;
}

/* Step 2 and 3 of the cycle, and the advance: rd is durable. */
static void batch_durable(struct raft_node *n)
{
	const struct raft_ready *rd = &n->rd;
	for (size_t i = 0; i < rd->n_msgs; i++)
		if (!(n->sent_early && is_leader_send(&rd->msgs[i])))
			raft_transport_send(n->t, &rd->msgs[i]); /* may drop */
	n->sent_early = false;
	if (rd->snapshot) {
		apply_state(n, rd->snapshot);
		n->snap_index = rd->snapshot->index;
	}
	for (size_t i = 0; i < rd->n_committed; i++) {
		const struct raft_entry *e = &rd->committed[i];
		if (e->type == RAFT_ENTRY_NORMAL && e->len > 0) {
			n->applied_entries++;
			n->applied_bytes += e->len;
			if (n->apply_cb)
				n->apply_cb(n, e, n->apply_data);
		}
		pend_applied(n, e);
	}
	int rc = raft_advance(n->r, rd);
	if (rc != 0)
		node_fail(n, rc, "advance");
	n->batches++;
}

static void on_saved(struct raft_storage *st, int status, void *data)
{
	struct raft_node *n = data;
	(void)st;
	if (status != 0)
		node_fail(n, status, "save");
	else
		batch_durable(n);
	after_batch(n);
}

/*
 * True if rd holds something to persist.  The commit index need not be
 * durable (the core re-learns it), so a hard state that differs from the
 * stored one only in commit, like a batch of messages or committed
 * entries alone, needs no save: everything those messages promise was
 * made durable by an earlier batch.
 */
static bool needs_save(struct raft_node *n, const struct raft_ready *rd)
{
	if (rd->snapshot || rd->n_entries > 0)
		return true;
	return rd->has_hard_state && (rd->hard_state.term != n->saved_hs.term ||
				      rd->hard_state.vote != n->saved_hs.vote);
}

static void check_leadership(struct raft_node *n)
{
	bool lead = raft_role(n->r) == RAFT_LEADER;
	if (n->was_leader && !lead)
		pend_fail_all(n, -RAFT_ENOTLEADER);
	n->was_leader = lead;
}

static void do_propose(struct raft_node *n, const void *data, size_t len,
		       raft_node_propose_cb cb, void *cb_data)
{
	uint64_t index = 0;
	int rc = raft_propose(n->r, data, len, &index);
	if (rc == 0)
		rc = pend_push(n, index, raft_term(n->r), cb, cb_data);
	if (rc != 0)
		cb(n, rc, 0, cb_data);
}

static void pump(struct raft_node *n)
{
	if (n->busy || n->stopping || n->failed || !n->r)
		return;
	for (; n->missed_ticks > 0; n->missed_ticks--)
		raft_tick(n->r);
	while (n->mhead) {
		struct qmsg *q = n->mhead;
		n->mhead = q->next;
		raft_step(n->r, &q->m);
		qmsg_free(q);
	}
	n->mtail = NULL;
	check_leadership(n);
	while (n->phead) {
		struct qprop *q = n->phead;
		n->phead = q->next;
		do_propose(n, q->bytes, q->len, q->cb, q->data);
		mem_free(q);
	}
	n->ptail = NULL;
	while (!n->stopping && !n->failed && raft_has_ready(n->r)) {
		int rc = raft_ready(n->r, &n->rd);
		if (rc == 0 && !needs_save(n, &n->rd)) {
			batch_durable(n);
			check_leadership(n);
			continue;
		}
		if (rc == 0)
			rc = raft_storage_save(n->st, &n->rd, on_saved, n);
		if (rc != 0) {
			node_fail(n, rc, "save");
			return;
		}
		bool hs_durable = !n->rd.has_hard_state ||
				  (n->rd.hard_state.term == n->saved_hs.term &&
				   n->rd.hard_state.vote == n->saved_hs.vote);
		if (n->rd.has_hard_state)
			n->saved_hs = n->rd.hard_state;
		n->saves++;
		n->busy = true;
		if (n->cfg.parallel_append && hs_durable &&
		    raft_role(n->r) == RAFT_LEADER) {
			for (size_t i = 0; i < n->rd.n_msgs; i++)
				if (is_leader_send(&n->rd.msgs[i]))
					raft_transport_send(n->t,
							    &n->rd.msgs[i]);
			n->sent_early = true;
		}
		return;
	}
	if (n->failed || n->stopping)
		return;
	uint64_t applied = raft_applied_index(n->r);
	if (applied >= n->snap_index + n->cfg.compact_every) {
		n->compact_index = applied;
		encode_state(n, n->compact_data);
		int rc = raft_storage_compact(n->st, applied, n->compact_data,
					      sizeof(n->compact_data),
					      on_compacted, n);
		if (rc != 0) {
			log_warn("raft", "compact", "id=%" PRIu64 " err=%s",
				 n->cfg.id, log_q(raft_storage_strerror(rc)));
			n->snap_index = applied; /* try again later */
			return;
		}
		n->busy = true;
	}
}

static void on_check(uv_check_t *h)
{
	pump(h->data);
}

static void on_tick(uv_timer_t *h)
{
	struct raft_node *n = h->data;
	if (n->stopping || n->failed || !n->r)
		return;
	if (n->busy) {
		if (n->missed_ticks < n->cfg.election_tick)
			n->missed_ticks++;
		return;
	}
	raft_tick(n->r);
}

int raft_node_propose(struct raft_node *n, const void *data, size_t len,
		      raft_node_propose_cb cb, void *cb_data)
{
	if (!n || !cb || (len > 0 && !data))
		return -RAFT_EINVAL;
	if (n->stopping || n->failed || !n->r)
		return -RAFT_EUNAVAILABLE;
	if (!n->busy) {
		do_propose(n, data, len, cb, cb_data);
		return 0;
	}
	if (raft_role(n->r) != RAFT_LEADER) {
		cb(n, -RAFT_ENOTLEADER, 0, cb_data);
		return 0;
	}
	struct qprop *q = mem_alloc(sizeof(*q) + len);
	if (!q)
		return -RAFT_ENOMEM;
	q->next = NULL;
	q->cb = cb;
	q->data = cb_data;
	q->len = len;
	if (len > 0)
		memcpy(q->bytes, data, len);
	if (n->ptail)
		n->ptail->next = q;
	else
		n->phead = q;
	n->ptail = q;
	return 0;
}

/* ---- start and stop ----------------------------------------------------- */

static void on_boot_saved(struct raft_storage *st, int status, void *data)
{
	struct raft_node *n = data;
	(void)st;
	if (status != 0)
		node_fail(n, status, "boot");
	after_batch(n);
}

static void free_node(struct raft_node *n)
{
	struct qmsg *q = n->mhead;
	while (q) {
		struct qmsg *next = q->next;
		qmsg_free(q);
		q = next;
	}
	if (n->r)
		raft_free(n->r);
	mem_free(n->pend);
	mem_free(n->listen);
	mem_free(n->data_dir);
	mem_free(n);
}

static void finish_stop(struct raft_node *n)
{
	void (*cb)(void *) = n->stop_cb;
	void *data = n->stop_data;
	free_node(n);
	if (cb)
		cb(data);
}

static void on_handle_closed(uv_handle_t *h)
{
	part_closed(h->data);
}

static void on_transport_stopped(void *data)
{
	part_closed(data);
}

void raft_node_stop(struct raft_node *n, void (*cb)(void *data), void *data)
{
	if (!n || n->stopping)
		return;
	n->stopping = true;
	n->stop_cb = cb;
	n->stop_data = data;
	pend_fail_all(n, -RAFT_EUNAVAILABLE);
	qprops_fail(n, -RAFT_EUNAVAILABLE);
	n->open_parts = 4;
	if (raft_transport_stop(n->t, on_transport_stopped) != 0)
		n->open_parts--;
	uv_close((uv_handle_t *)&n->tick, on_handle_closed);
	uv_close((uv_handle_t *)&n->check, on_handle_closed);
	if (!n->busy) {
		struct raft_storage *st = n->st;
		n->st = NULL;
		raft_storage_close(st, on_storage_closed, n);
	}
}

int raft_node_start(uv_loop_t *loop, const struct raft_node_config *cfg,
		    struct raft_node **out, char *err, size_t errlen)
{
	int rc;
	struct raft_node *n = NULL;
	struct raft_persisted ps;
	struct raft_snapshot boot;
	bool fresh;

	if (!loop || !cfg || !out || cfg->id == 0 || !cfg->listen ||
	    !cfg->data_dir || cfg->n_peers > RAFT_NODE_MAX_PEERS) {
		snprintf(err, errlen, "invalid configuration");
		return -RAFT_EINVAL;
	}
	n = mem_calloc(1, sizeof(*n));
	if (!n)
		goto nomem;
	n->loop = loop;
	n->cfg = *cfg;
	n->listen = mem_strdup(cfg->listen);
	n->data_dir = mem_strdup(cfg->data_dir);
	if (!n->listen || !n->data_dir)
		goto nomem;
	n->cfg.listen = n->listen;
	n->cfg.data_dir = n->data_dir;
	if (!n->cfg.tick_ms)
		n->cfg.tick_ms = 15;
	if (!n->cfg.election_tick)
		n->cfg.election_tick = 10;
	if (!n->cfg.heartbeat_tick)
		n->cfg.heartbeat_tick = 3;
	if (!n->cfg.compact_every)
		n->cfg.compact_every = 10000;
	if (!n->cfg.seed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		n->cfg.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^
			      cfg->id * 0x9e3779b97f4a7c15ull;
	}

	if (mkdir(n->data_dir, 0755) != 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", n->data_dir, strerror(errno));
		goto fail;
	}
	struct wal_config wc;
	wal_config_init(&wc);
	wc.dir = n->data_dir;
	wc.loop = loop;
	wc.sync_mode = cfg->sync_mode;
	rc = raft_storage_open(&wc, NULL, &n->st, &ps, err, errlen);
	if (rc != 0)
		goto fail;
	fresh = !ps.snapshot && ps.n_entries == 0 && ps.hard_state.term == 0;
	if (fresh) {
		memset(&boot, 0, sizeof(boot));
		boot.conf.members[boot.conf.n++].id = cfg->id;
		for (unsigned i = 0; i < cfg->n_peers; i++)
			boot.conf.members[boot.conf.n++].id = cfg->peers[i].id;
		ps.snapshot = &boot;
	}
	n->saved_hs = ps.hard_state;
	if (ps.snapshot) {
		apply_state(n, ps.snapshot);
		n->snap_index = ps.snapshot->index;
	}
	struct raft_options opt = {
		.id = cfg->id,
		.election_tick = n->cfg.election_tick,
		.heartbeat_tick = n->cfg.heartbeat_tick,
		.seed = n->cfg.seed,
		.pre_vote = true,
		.check_quorum = true,
		.max_inflight = 256,
		.max_batch_entries = 1024,
		.max_batch_bytes = 1u << 20,
	};
	rc = raft_new(&opt, &ps, &n->r, err, errlen);
	if (rc != 0)
		goto fail;
	/* Entries recovered from disk count as applied up to the snapshot
	 * only; the core hands the rest out as committed again. */
	if (fresh) {
		struct raft_ready brd;
		memset(&brd, 0, sizeof(brd));
		brd.snapshot = &boot;
		rc = raft_storage_save(n->st, &brd, on_boot_saved, n);
		if (rc != 0) {
			snprintf(err, errlen, "boot: %s",
				 raft_storage_strerror(rc));
			goto fail;
		}
		n->busy = true;
	}
	rc = raft_transport_start(loop, cfg->id, n->listen, on_message, n,
				  &n->t);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s: %s", n->listen,
			 rc < 0 && rc > -1000 ? net_strerror(rc)
					      : raft_strerror(rc));
		goto fail_busy;
	}
	/* Reconnect within an election timeout: the transport's default cap
	 * (2 s) would let a peer that restarted stay unreachable for several
	 * election timeouts, and an election waits for it. */
	raft_transport_set_backoff(n->t, 10,
				   n->cfg.tick_ms * n->cfg.election_tick);
	for (unsigned i = 0; i < cfg->n_peers; i++) {
		rc = raft_transport_add_peer(n->t, cfg->peers[i].id,
					     cfg->peers[i].addr);
		if (rc != 0) {
			snprintf(err, errlen, "peer %" PRIu64 " at %s: %s",
				 cfg->peers[i].id, cfg->peers[i].addr,
				 raft_strerror(rc));
			raft_transport_stop(n->t, NULL);
			goto fail_busy;
		}
	}
	uv_timer_init(loop, &n->tick);
	n->tick.data = n;
	uv_check_init(loop, &n->check);
	n->check.data = n;
	uv_timer_start(&n->tick, on_tick, n->cfg.tick_ms, n->cfg.tick_ms);
	uv_check_start(&n->check, on_check);
	*out = n;
	return 0;

nomem:
	rc = -RAFT_ENOMEM;
	snprintf(err, errlen, "out of memory");
fail:
	if (n && n->st) {
		raft_storage_close(n->st, NULL, NULL);
		n->st = NULL;
	}
	if (n)
		free_node(n);
	return rc;
fail_busy:
	/* The boot save may still be out: let it finish on the loop. */
	n->stopping = true;
	n->open_parts = 1;
	n->stop_cb = NULL;
	if (!n->busy) {
		struct raft_storage *st = n->st;
		n->st = NULL;
		raft_storage_close(st, on_storage_closed, n);
	}
	return rc;
}

void raft_node_set_apply(struct raft_node *n, raft_node_apply_cb cb,
			 void *data)
{
	n->apply_cb = cb;
	n->apply_data = data;
}

uint64_t raft_node_id(const struct raft_node *n)
{
	return n->cfg.id;
}

uint64_t raft_node_leader(const struct raft_node *n)
{
	return n->r ? raft_leader(n->r) : 0;
}

const char *raft_node_peer_addr(const struct raft_node *n, uint64_t id)
{
	if (id == n->cfg.id)
		return n->listen;
	for (unsigned i = 0; i < n->cfg.n_peers; i++)
		if (n->cfg.peers[i].id == id)
			return n->cfg.peers[i].addr;
	return NULL;
}

const struct raft *raft_node_raft(const struct raft_node *n)
{
	return n->r;
}

int raft_node_failed(const struct raft_node *n)
{
	return n->failed;
}

uint64_t raft_node_batches(const struct raft_node *n)
{
	return n->batches;
}

unsigned raft_node_peers_connected(const struct raft_node *n)
{
	unsigned c = 0;
	for (unsigned i = 0; i < n->cfg.n_peers; i++)
		c += raft_transport_is_connected(n->t, n->cfg.peers[i].id);
	return c;
}

uint64_t raft_node_saves(const struct raft_node *n)
{
	return n->saves;
}
