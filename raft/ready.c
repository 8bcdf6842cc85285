/*
 * ready.c - the ready/advance cycle that hands the core's effects to the
 * caller, and log compaction.
 *
 * A ready batch is everything that happened since the last advance:
 *   - snapshot:  a snapshot received from the leader, not yet persisted;
 *   - entries:   log entries after log.stable (they may start at or below
 *                the caller's last stored index: suffix truncation);
 *   - hard state: (term, vote, commit) when it differs from the persisted one;
 *   - msgs:      to send once the above is durable;
 *   - committed: entries applied+1 .. commit, to apply after persisting.
 * raft_advance() records all of it as done: stable := last handed-out entry,
 * applied := last handed-out committed entry, messages freed.  Only then does
 * the leader count its own copy of new entries toward commitment.
 */
#include "raft/core.h"

#include "common/common.h"

#include <string.h>

static struct raft_hard_state hard_state(const struct raft *r)
{
	struct raft_hard_state hs = {
	    .term = r->term,
	    .vote = r->vote,
	    .commit = r->log.commit,
	};
	return hs;
}

static bool hs_equal(const struct raft_hard_state *a,
		     const struct raft_hard_state *b)
{
	return a->term == b->term && a->vote == b->vote &&
	       a->commit == b->commit;
}

bool raft_has_ready(const struct raft *r)
{
	struct raft_hard_state hs = hard_state(r);

	if (r->ready_out)
		return false;
	return r->log.snap_unstable ||
	       r->log.stable < raft__last_index(&r->log) ||
	       !hs_equal(&hs, &r->persisted_hs) || r->n_msgs > 0 ||
	       r->log.commit > r->log.applied;
}

int raft_ready(struct raft *r, struct raft_ready *rd)
{
	struct raft_log *l = &r->log;
	uint64_t last = raft__last_index(l);

	if (r->ready_out)
		return -RAFT_EBUSY;
	memset(rd, 0, sizeof(*rd));
	rd->hard_state = hard_state(r);
	rd->has_hard_state = !hs_equal(&rd->hard_state, &r->persisted_hs);
	rd->snapshot = l->snap_unstable ? &l->snap : NULL;
	if (l->stable < last) {
		rd->entries = raft__entry(l, l->stable + 1);
		rd->n_entries = last - l->stable;
	}
	rd->msgs = r->msgs;
	rd->n_msgs = r->n_msgs;
	if (l->commit > l->applied) {
		rd->committed = raft__entry(l, l->applied + 1);
		rd->n_committed = l->commit - l->applied;
	}
	r->ready_out = true;
	r->ready_last = last;
	r->ready_applied_to = l->commit;
	r->ready_snap = l->snap_unstable;
	return 0;
}

int raft_advance(struct raft *r, const struct raft_ready *rd)
{
	struct raft_log *l = &r->log;
	struct raft_progress *self;

	if (!r->ready_out || rd == NULL)
		return -RAFT_EINVAL;
	r->persisted_hs = rd->hard_state;
	l->stable = r->ready_last;
	l->applied = r->ready_applied_to;
	if (r->ready_snap)
		l->snap_unstable = false;
	for (size_t i = 0; i < r->n_msgs; i++)
		raft__msg_free(&r->msgs[i]);
	r->n_msgs = 0;
	r->ready_out = false;

	if (r->role != RAFT_LEADER)
		return 0;
	self = raft__progress(r, r->id);
	if (self == NULL || self->match >= l->stable)
		return 0;
	self->match = l->stable;
	self->next = l->stable + 1;
	if (raft__maybe_commit(r) && r->role == RAFT_LEADER)
		return raft__bcast_append(r);
	return 0;
}

int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len)
{
	struct raft_log *l = &r->log;
	struct raft_conf conf = l->snap.conf;
	void *copy = NULL;

	if (r->ready_out)
		return -RAFT_EBUSY;
	if (index > l->applied || (len > 0 && data == NULL))
		return -RAFT_EINVAL;
	if (index <= l->snap.index)
		return 0;
	for (uint64_t i = index; i > l->snap.index; i--) {
		const struct raft_entry *e = raft__entry(l, i);

		if (e->type == RAFT_ENTRY_CONF &&
		    raft_conf_decode(e->data, e->len, &conf) == 0)
			break;
	}
	if (len > 0) {
		copy = mem_alloc(len);
		if (copy == NULL)
			return -RAFT_ENOMEM;
		memcpy(copy, data, len);
	}
	raft__log_compact(l, index);
	mem_free(l->snap.data);
	l->snap.data = copy;
	l->snap.len = len;
	l->snap.conf = conf;
	return 0;
}
