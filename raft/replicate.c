/*
 * replicate.c - log replication: the leader's per-follower flow control,
 * appends, heartbeats, snapshots for lagging followers, commitment, and the
 * follower's side of all three.
 *
 * Per-follower progress (as in etcd):
 *
 *   PROBE --append accepted--> REPLICATE --append rejected--> PROBE
 *   PROBE/REPLICATE --next entry compacted away--> SNAPSHOT
 *   SNAPSHOT --match reaches the snapshot, or no answer for an election
 *              timeout--> PROBE
 *
 *   PROBE:     one append in flight; wait for its answer (or a heartbeat
 *              answer) before the next.
 *   REPLICATE: pipelining: next is advanced optimistically and up to
 *              max_inflight appends are outstanding (flow control).
 *   SNAPSHOT:  paused until the follower installs the snapshot.
 *
 * Fast backtracking (thesis 5.3, etcd's findConflictByTerm): a follower that
 * rejects an append answers with the largest index whose term is <= the
 * leader's prev term; the leader skips back to the largest index of its own
 * log whose term is <= the follower's term there.  Each round trip skips at
 * least one whole term of conflicting entries.
 *
 * Commitment (Raft paper 5.4.2, Figure 8): the leader advances commit to the
 * largest index stored on a quorum of voters ONLY if that entry is of the
 * leader's current term; earlier entries commit indirectly.  The leader's
 * own copy counts only once it is persisted (log.stable).
 */
#include "raft/core.h"

#include "common/common.h"

#include <stdlib.h>

static bool inflight_full(const struct raft *r, const struct raft_progress *pr)
{
	return pr->inflight_count >= r->opt.max_inflight;
}

static void inflight_add(const struct raft *r, struct raft_progress *pr,
			 uint64_t index)
{
	if (inflight_full(r, pr))
		return;
	pr->inflight[(pr->inflight_start + pr->inflight_count) %
		     r->opt.max_inflight] = index;
	pr->inflight_count++;
}

static void inflight_reset(struct raft_progress *pr)
{
	pr->inflight_count = 0;
	pr->inflight_start = 0;
}

static void inflight_free_upto(const struct raft *r, struct raft_progress *pr,
			       uint64_t index)
{
	while (pr->inflight_count > 0 &&
	       pr->inflight[pr->inflight_start] <= index) {
		pr->inflight_start =
		    (pr->inflight_start + 1) % r->opt.max_inflight;
		pr->inflight_count--;
	}
}

void raft__progress_become_probe(struct raft_progress *pr)
{
	if (pr->state == PR_SNAPSHOT) {
		uint64_t n = pr->pending_snapshot + 1;

		pr->next = pr->match + 1 > n ? pr->match + 1 : n;
		pr->pending_snapshot = 0;
	} else {
		pr->next = pr->match + 1;
	}
	pr->state = PR_PROBE;
	pr->probe_sent = false;
	pr->snapshot_elapsed = 0;
	inflight_reset(pr);
}

static void become_replicate(struct raft_progress *pr)
{
	pr->state = PR_REPLICATE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	inflight_reset(pr);
}

static bool paused(const struct raft *r, const struct raft_progress *pr)
{
	switch (pr->state) {
	case PR_PROBE:
		return pr->probe_sent;
	case PR_REPLICATE:
		return inflight_full(r, pr);
	case PR_SNAPSHOT:
		return true;
	}
	return true;
}

static int send_snapshot(struct raft *r, struct raft_progress *pr)
{
	struct raft_msg m = {0};
	int rc;

	m.type = RAFT_MSG_SNAPSHOT;
	m.to = pr->id;
	rc = raft__snapshot_copy(&m.snapshot, &r->log.snap);
	if (rc != 0)
		return rc;
	pr->state = PR_SNAPSHOT;
	pr->pending_snapshot = r->log.snap.index;
	pr->snapshot_elapsed = 0;
	return raft__send(r, &m);
}

/*
 * Sends the follower the entries from its next index on (at most one batch),
 * or the snapshot if they were compacted.  With allow_empty an append with
 * no entries still goes out (to carry commit or probe).  Returns 1 when a
 * message was sent, 0 when not, negative on error.
 */
static int maybe_send_append(struct raft *r, struct raft_progress *pr,
			     bool allow_empty)
{
	struct raft_msg m = {0};
	uint64_t prev, prev_term, last = raft__last_index(&r->log);
	size_t n = 0, bytes = 0;
	int rc;

	if (pr->id == r->id || paused(r, pr))
		return 0;
	if (pr->next > last + 1)
		pr->next = last + 1;
	if (pr->next < 1)
		pr->next = 1;
	prev = pr->next - 1;
	if (raft__term(&r->log, prev, &prev_term) != 0) {
		rc = send_snapshot(r, pr);
		return rc < 0 ? rc : 1;
	}
	while (pr->next + n <= last && n < r->opt.max_batch_entries) {
		const struct raft_entry *e = raft__entry(&r->log, pr->next + n);

		if (n > 0 && bytes + e->len > r->opt.max_batch_bytes)
			break;
		bytes += e->len;
		n++;
	}
	if (n == 0 && !allow_empty)
		return 0;
	m.type = RAFT_MSG_APPEND;
	m.to = pr->id;
	m.index = prev;
	m.log_term = prev_term;
	m.commit = r->log.commit;
	if (n > 0) {
		m.entries = mem_calloc(n, sizeof(*m.entries));
		if (m.entries == NULL)
			return -RAFT_ENOMEM;
		for (size_t i = 0; i < n; i++) {
			rc = raft__entry_copy(
			    &m.entries[i], raft__entry(&r->log, pr->next + i));
			if (rc != 0) {
				m.n_entries = i;
				raft__msg_free(&m);
				return rc;
			}
		}
		m.n_entries = n;
	}
	if (pr->state == PR_REPLICATE && n > 0) {
		pr->next += n;
		inflight_add(r, pr, pr->next - 1);
	} else if (pr->state == PR_PROBE) {
		pr->probe_sent = true;
	}
	rc = raft__send(r, &m);
	return rc < 0 ? rc : 1;
}

int raft__send_append(struct raft *r, struct raft_progress *pr,
		      bool allow_empty)
{
	int rc = maybe_send_append(r, pr, allow_empty);

	return rc < 0 ? rc : 0;
}

int raft__bcast_append(struct raft *r)
{
	for (unsigned i = 0; i < r->n_prs; i++) {
		int rc = maybe_send_append(r, &r->prs[i], true);

		if (rc < 0)
			return rc;
	}
	return 0;
}

int raft__bcast_heartbeat(struct raft *r)
{
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct raft_progress *pr = &r->prs[i];
		struct raft_msg m = {0};
		int rc;

		if (pr->id == r->id)
			continue;
		m.type = RAFT_MSG_HEARTBEAT;
		m.to = pr->id;
		/* never beyond what the follower is known to hold */
		m.commit =
		    pr->match < r->log.commit ? pr->match : r->log.commit;
		rc = raft__send(r, &m);
		if (rc != 0)
			return rc;
	}
	return 0;
}

void raft__commit_to(struct raft *r, uint64_t index)
{
	uint64_t last = raft__last_index(&r->log);

	if (index > last)
		index = last;
	if (index > r->log.commit)
		r->log.commit = index;
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* Raft paper 5.3/5.4.2: commit by counting replicas of current-term entries. */
bool raft__maybe_commit(struct raft *r)
{
	uint64_t match[RAFT_MAX_MEMBERS];
	unsigned n = 0;
	uint64_t q = raft__quorum(r), idx, term = 0;

	for (unsigned i = 0; i < r->n_prs; i++)
		if (raft_conf_is_voter(&r->conf, r->prs[i].id))
			match[n++] = r->prs[i].match;
	if (n == 0 || n < q)
		return false;
	qsort(match, n, sizeof(match[0]), cmp_desc);
	idx = match[q - 1];
	if (idx <= r->log.commit || raft__term(&r->log, idx, &term) != 0 ||
	    term != r->term)
		return false;
	raft__commit_to(r, idx);
	/* Thesis 4.2.2: a leader removed from the configuration steps down
	 * once the configuration without it is committed. */
	if (r->conf_index <= r->log.commit &&
	    !raft_conf_is_voter(&r->conf, r->id))
		raft__become_follower(r, r->term, 0);
	return true;
}

static int reply_append(struct raft *r, uint64_t to, uint64_t index,
			bool reject, uint64_t hint, uint64_t hint_term)
{
	struct raft_msg m = {0};

	m.type = RAFT_MSG_APPEND_RESP;
	m.to = to;
	m.index = index;
	m.reject = reject;
	m.hint = hint;
	m.hint_term = hint_term;
	return raft__send(r, &m);
}

/* Raft paper Figure 2, AppendEntries receiver implementation. */
int raft__handle_append(struct raft *r, const struct raft_msg *m)
{
	struct raft_log *l = &r->log;
	uint64_t prev_term, last_new = m->index + m->n_entries;
	size_t i;
	bool conf_changed = false;
	int rc;

	if (m->index < l->commit)
		return reply_append(r, m->from, l->commit, false, 0, 0);
	if (raft__term(l, m->index, &prev_term) != 0 ||
	    prev_term != m->log_term) {
		uint64_t hint = m->index < raft__last_index(l)
				    ? m->index
				    : raft__last_index(l);

		hint = raft__find_conflict_by_term(l, hint, m->log_term);
		return reply_append(r, m->from, m->index, true, hint,
				    raft__term_or0(l, hint));
	}
	/* skip entries we already have; cut at the first conflict */
	for (i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		uint64_t t;

		if (e->index > raft__last_index(l))
			break;
		if (raft__term(l, e->index, &t) != 0)
			continue; /* compacted, hence committed, hence equal */
		if (t != e->term) {
			if (e->index <= l->commit)
				return -RAFT_EPROTO; /* would undo a commit */
			if (r->conf_index >= e->index)
				conf_changed = true;
			raft__log_truncate(l, e->index);
			break;
		}
	}
	for (; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];

		rc = raft__log_append(l, e->term, e->type, e->data, e->len);
		if (rc != 0)
			return rc;
		if (e->type == RAFT_ENTRY_CONF)
			conf_changed = true;
	}
	if (conf_changed)
		raft__conf_recompute(r);
	raft__commit_to(r, m->commit < last_new ? m->commit : last_new);
	return reply_append(r, m->from, last_new, false, 0, 0);
}

int raft__handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg resp = {0};

	raft__commit_to(r, m->commit);
	resp.type = RAFT_MSG_HEARTBEAT_RESP;
	resp.to = m->from;
	return raft__send(r, &resp);
}

/* Raft paper 7, InstallSnapshot receiver. */
int raft__handle_snapshot(struct raft *r, const struct raft_msg *m)
{
	const struct raft_snapshot *s = &m->snapshot;
	struct raft_log *l = &r->log;
	struct raft_snapshot copy;
	uint64_t t;
	int rc;

	if (s->index <= l->commit)
		return reply_append(r, m->from, l->commit, false, 0, 0);
	if (raft__term(l, s->index, &t) == 0 && t == s->term) {
		/* we have the entry: the snapshot only tells us it committed */
		raft__commit_to(r, s->index);
		return reply_append(r, m->from, l->commit, false, 0, 0);
	}
	rc = raft__snapshot_copy(&copy, s);
	if (rc != 0)
		return rc;
	raft__log_truncate(l, l->snap.index + 1);
	mem_free(l->snap.data);
	l->snap = copy;
	l->snap_unstable = true;
	l->stable = s->index;
	l->commit = s->index;
	l->applied = s->index;
	raft__conf_recompute(r);
	return reply_append(r, m->from, s->index, false, 0, 0);
}

/*
 * A rejection of the append after `rejected`: move next back, using the
 * follower's hint.  Stale rejections (for appends already superseded) are
 * ignored.  Returns true when next moved.
 */
static bool maybe_decr_to(struct raft_progress *pr, uint64_t rejected,
			  uint64_t probe)
{
	if (pr->state == PR_REPLICATE) {
		if (rejected <= pr->match)
			return false;
		pr->next = pr->match + 1;
		return true;
	}
	if (pr->next - 1 != rejected)
		return false;
	pr->next = rejected < probe + 1 ? rejected : probe + 1;
	if (pr->next < pr->match + 1)
		pr->next = pr->match + 1;
	if (pr->next < 1)
		pr->next = 1;
	pr->probe_sent = false;
	return true;
}

int raft__handle_append_resp(struct raft *r, const struct raft_msg *m)
{
	struct raft_progress *pr = raft__progress(r, m->from);
	int rc;

	if (pr == NULL)
		return 0;
	pr->recent_active = true;
	if (m->reject) {
		uint64_t probe = m->hint;

		if (m->hint_term > 0)
			probe = raft__find_conflict_by_term(&r->log, m->hint,
							    m->hint_term);
		if (maybe_decr_to(pr, m->index, probe)) {
			if (pr->state == PR_REPLICATE)
				raft__progress_become_probe(pr);
			return raft__send_append(r, pr, true);
		}
		return 0;
	}
	if (m->index > raft__last_index(&r->log))
		return -RAFT_EPROTO; /* acknowledges entries we never had */
	if (m->index <= pr->match) {
		if (pr->state == PR_PROBE && m->index == pr->next - 1)
			pr->probe_sent = false;
		return 0;
	}
	pr->match = m->index;
	if (pr->next < m->index + 1)
		pr->next = m->index + 1;
	switch (pr->state) {
	case PR_PROBE:
		become_replicate(pr);
		break;
	case PR_SNAPSHOT:
		if (pr->match >= pr->pending_snapshot)
			raft__progress_become_probe(pr);
		break;
	case PR_REPLICATE:
		inflight_free_upto(r, pr, m->index);
		break;
	}
	if (raft__maybe_commit(r)) {
		if (r->role != RAFT_LEADER)
			return 0;
		rc = raft__bcast_append(r); /* tells everyone the new commit */
		if (rc != 0)
			return rc;
	}
	/* keep the pipeline full */
	while ((rc = maybe_send_append(r, pr, false)) > 0)
		;
	return rc;
}

int raft__handle_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
	struct raft_progress *pr = raft__progress(r, m->from);

	if (pr == NULL)
		return 0;
	pr->recent_active = true;
	pr->probe_sent = false;
	/* a lost append would otherwise hold a slot forever */
	if (pr->state == PR_REPLICATE && inflight_full(r, pr)) {
		pr->inflight_start =
		    (pr->inflight_start + 1) % r->opt.max_inflight;
		pr->inflight_count--;
	}
	if (pr->match < raft__last_index(&r->log))
		return raft__send_append(r, pr, true);
	return 0;
}
