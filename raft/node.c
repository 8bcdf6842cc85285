/*
 * node.c - the Raft node: creation, roles and elections, terms, the step
 * dispatcher, ticks, proposals, membership changes and leadership transfer.
 *
 * Roles (Raft paper 5.2, with pre-vote from Ongaro's thesis 9.6):
 *
 *   FOLLOWER --timeout--> PRECANDIDATE --pre-votes from a quorum--> CANDIDATE
 *   CANDIDATE --votes from a quorum--> LEADER
 *   any --message with a higher term--> FOLLOWER
 *   PRECANDIDATE/CANDIDATE --append/heartbeat/snapshot of the term--> FOLLOWER
 *   LEADER --no quorum heard for an election timeout (check-quorum)--> FOLLOWER
 *   LEADER --own removal committed--> FOLLOWER
 *   FOLLOWER --TimeoutNow from the leader--> CANDIDATE (no pre-vote)
 *
 * Invariants:
 *   1. term never decreases; vote is reset only when term increases.
 *   2. A node grants at most one vote per term (vote is part of the hard
 *      state handed out by raft_ready and must be durable before the grant
 *      is sent).
 *   3. Only voters of the node's own configuration campaign.
 *   4. With check-quorum, a node that heard from a leader within the last
 *      election timeout ignores (pre-)vote requests (leader lease), unless
 *      the campaign was started by TimeoutNow.
 * After -RAFT_ENOMEM from any call the node's memory may be half-updated:
 * the caller treats it as a crash and recreates it from storage.
 */
#include "raft/core.h"

#include "common/common.h"

#include <stdio.h>
#include <string.h>

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void reset_timeout(struct raft *r)
{
	r->randomized_timeout =
	    r->opt.election_tick +
	    (unsigned)(rng_next(&r->rng) % r->opt.election_tick);
}

static bool promotable(const struct raft *r)
{
	return raft_conf_is_voter(&r->conf, r->id);
}

uint64_t raft__quorum(const struct raft *r)
{
	return raft_conf_voters(&r->conf) / 2 + 1;
}

void raft__msg_free(struct raft_msg *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		raft__entry_free(&m->entries[i]);
	mem_free(m->entries);
	mem_free(m->snapshot.data);
	m->entries = NULL;
	m->n_entries = 0;
	m->snapshot.data = NULL;
}

int raft__send(struct raft *r, struct raft_msg *m)
{
	m->from = r->id;
	if (m->term == 0)
		m->term = r->term;
	if (r->n_msgs == r->cap_msgs) {
		size_t cap = r->cap_msgs ? r->cap_msgs * 2 : 16;
		struct raft_msg *v = mem_realloc(r->msgs, cap * sizeof(*v));

		if (v == NULL) {
			raft__msg_free(m);
			return -RAFT_ENOMEM;
		}
		r->msgs = v;
		r->cap_msgs = cap;
	}
	r->msgs[r->n_msgs++] = *m;
	return 0;
}

static void reset(struct raft *r, uint64_t term)
{
	if (term != r->term) {
		r->term = term;
		r->vote = 0;
	}
	r->lead = 0;
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	reset_timeout(r);
	r->transferee = 0;
	r->n_votes = 0;
}

void raft__become_follower(struct raft *r, uint64_t term, uint64_t lead)
{
	reset(r, term);
	r->role = RAFT_FOLLOWER;
	r->lead = lead;
}

static int become_leader(struct raft *r)
{
	r->role = RAFT_LEADER;
	r->lead = r->id;
	r->n_votes = 0;
	r->heartbeat_elapsed = 0;
	r->election_elapsed = 0;
	r->transferee = 0;
	raft__progress_reset_all(r);
	r->term_start = raft__last_index(&r->log) + 1;
	/* Raft paper 8: a no-op entry at the start of the term lets the
	 * leader commit (and so learn) everything before it. */
	int rc = raft__append_local(r, RAFT_ENTRY_NORMAL, NULL, 0, NULL);

	if (rc != 0)
		return rc;
	return raft__bcast_append(r);
}

enum poll_result { POLL_PENDING, POLL_WON, POLL_LOST };

static enum poll_result poll(struct raft *r, uint64_t id, bool granted)
{
	unsigned yes = 0, no = 0, q = (unsigned)raft__quorum(r);
	unsigned i;

	for (i = 0; i < r->n_votes; i++)
		if (r->vote_from[i] == id)
			break;
	if (i == r->n_votes && r->n_votes < RAFT_MAX_MEMBERS) {
		r->vote_from[i] = id;
		r->vote_granted[i] = granted;
		r->n_votes++;
	}
	for (i = 0; i < r->n_votes; i++) {
		if (!raft_conf_is_voter(&r->conf, r->vote_from[i]))
			continue;
		if (r->vote_granted[i])
			yes++;
		else
			no++;
	}
	if (yes >= q)
		return POLL_WON;
	if (no > raft_conf_voters(&r->conf) - q)
		return POLL_LOST;
	return POLL_PENDING;
}

static int campaign(struct raft *r, bool pre, bool transfer)
{
	uint64_t term, last = raft__last_index(&r->log);
	uint8_t type;
	enum poll_result res;
	int rc;

	if (!promotable(r))
		return 0;
	if (pre) {
		reset(r, r->term);
		r->role = RAFT_PRECANDIDATE;
		term = r->term + 1;
		type = RAFT_MSG_PREVOTE;
	} else {
		reset(r, r->term + 1);
		r->vote = r->id;
		r->role = RAFT_CANDIDATE;
		term = r->term;
		type = RAFT_MSG_VOTE;
	}
	res = poll(r, r->id, true);
	if (res == POLL_WON)
		return pre ? campaign(r, false, transfer) : become_leader(r);
	for (unsigned i = 0; i < r->conf.n; i++) {
		struct raft_msg m = {0};

		if (r->conf.members[i].id == r->id ||
		    r->conf.members[i].learner)
			continue;
		m.type = type;
		m.to = r->conf.members[i].id;
		m.term = term;
		m.index = last;
		m.log_term = raft__term_or0(&r->log, last);
		m.transfer = transfer;
		rc = raft__send(r, &m);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int reply(struct raft *r, const struct raft_msg *to, uint8_t type,
		 uint64_t term, bool reject)
{
	struct raft_msg m = {0};

	m.type = type;
	m.to = to->from;
	m.term = term;
	m.reject = reject;
	return raft__send(r, &m);
}

/* Raft paper 5.2 and 5.4.1; thesis 9.6 for pre-votes. */
static int handle_vote(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	uint8_t rt = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
	bool can_vote = r->vote == m->from || (r->vote == 0 && r->lead == 0) ||
			(pre && m->term > r->term);

	if (can_vote && raft__is_up_to_date(&r->log, m->index, m->log_term)) {
		if (!pre) {
			r->vote = m->from;
			r->election_elapsed = 0;
		}
		return reply(r, m, rt, m->term, false);
	}
	return reply(r, m, rt, r->term, true);
}

static int handle_vote_resp(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
	enum poll_result res;

	if (pre ? r->role != RAFT_PRECANDIDATE : r->role != RAFT_CANDIDATE)
		return 0;
	res = poll(r, m->from, !m->reject);
	if (res == POLL_WON)
		return pre ? campaign(r, false, false) : become_leader(r);
	if (res == POLL_LOST)
		raft__become_follower(r, r->term, 0);
	return 0;
}

static int send_timeout_now(struct raft *r, uint64_t to)
{
	struct raft_msg m = {0};

	m.type = RAFT_MSG_TIMEOUT_NOW;
	m.to = to;
	return raft__send(r, &m);
}

static bool valid_msg(const struct raft *r, const struct raft_msg *m)
{
	if (m == NULL || m->to != r->id || m->from == 0 || m->from == r->id ||
	    m->type < RAFT_MSG_PREVOTE || m->type > RAFT_MSG_TIMEOUT_NOW ||
	    m->term == 0)
		return false;
	if (m->n_entries > 0 &&
	    (m->type != RAFT_MSG_APPEND || m->entries == NULL))
		return false;
	if (m->type == RAFT_MSG_APPEND) {
		uint64_t prev_term = m->log_term;

		if (m->log_term > m->term || m->index + m->n_entries < m->index)
			return false;
		for (size_t i = 0; i < m->n_entries; i++) {
			const struct raft_entry *e = &m->entries[i];

			if (e->index != m->index + 1 + i ||
			    e->term < prev_term || e->term > m->term ||
			    e->term == 0 || (e->len > 0 && e->data == NULL) ||
			    e->type > RAFT_ENTRY_CONF)
				return false;
			if (e->type == RAFT_ENTRY_CONF) {
				struct raft_conf c;

				if (raft_conf_decode(e->data, e->len, &c) != 0)
					return false;
			}
			prev_term = e->term;
		}
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		const struct raft_snapshot *s = &m->snapshot;
		struct raft_conf tmp;
		uint8_t buf[RAFT_CONF_ENCODED_MAX];

		if (s->index == 0 || s->term == 0 || s->term > m->term ||
		    (s->len > 0 && s->data == NULL) ||
		    s->conf.n > RAFT_MAX_MEMBERS ||
		    raft_conf_decode(buf, raft_conf_encode(&s->conf, buf),
				     &tmp) != 0)
			return false;
	}
	return true;
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
	if (r->ready_out)
		return -RAFT_EBUSY;
	if (!valid_msg(r, m))
		return -RAFT_EPROTO;

	if (m->term > r->term) {
		if (m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE) {
			bool in_lease =
			    r->opt.check_quorum && r->lead != 0 &&
			    r->election_elapsed < r->opt.election_tick;

			if (in_lease && !m->transfer)
				return 0;
		}
		if (m->type == RAFT_MSG_PREVOTE ||
		    (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)) {
			/* pre-votes never change terms */
		} else {
			bool from_leader = m->type == RAFT_MSG_APPEND ||
					   m->type == RAFT_MSG_HEARTBEAT ||
					   m->type == RAFT_MSG_SNAPSHOT;

			raft__become_follower(r, m->term,
					      from_leader ? m->from : 0);
		}
	} else if (m->term < r->term) {
		/* A stale leader learns of the newer term (thesis 9.6: needed
		 * with pre-vote and check-quorum, where terms can diverge). */
		if ((r->opt.check_quorum || r->opt.pre_vote) &&
		    (m->type == RAFT_MSG_APPEND ||
		     m->type == RAFT_MSG_HEARTBEAT))
			return reply(r, m, RAFT_MSG_APPEND_RESP, r->term,
				     false);
		if (m->type == RAFT_MSG_PREVOTE)
			return reply(r, m, RAFT_MSG_PREVOTE_RESP, r->term,
				     true);
		return 0;
	}

	switch (m->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		return handle_vote(r, m);
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		return handle_vote_resp(r, m);
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAPSHOT:
		if (r->role == RAFT_LEADER)
			return -RAFT_EPROTO; /* two leaders in one term */
		if (r->role != RAFT_FOLLOWER)
			raft__become_follower(r, m->term, m->from);
		r->lead = m->from;
		r->election_elapsed = 0;
		if (m->type == RAFT_MSG_APPEND)
			return raft__handle_append(r, m);
		if (m->type == RAFT_MSG_HEARTBEAT)
			return raft__handle_heartbeat(r, m);
		return raft__handle_snapshot(r, m);
	case RAFT_MSG_APPEND_RESP:
		if (r->role != RAFT_LEADER)
			return 0;
		{
			int rc = raft__handle_append_resp(r, m);
			struct raft_progress *pr = raft__progress(r, m->from);

			if (rc == 0 && pr != NULL && r->role == RAFT_LEADER &&
			    m->from == r->transferee &&
			    pr->match == raft__last_index(&r->log))
				rc = send_timeout_now(r, m->from);
			return rc;
		}
	case RAFT_MSG_HEARTBEAT_RESP:
		if (r->role != RAFT_LEADER)
			return 0;
		return raft__handle_heartbeat_resp(r, m);
	case RAFT_MSG_TIMEOUT_NOW:
		if (r->role != RAFT_FOLLOWER || m->from != r->lead)
			return 0;
		return campaign(r, false, true);
	}
	return 0;
}

static bool quorum_active(struct raft *r)
{
	unsigned active = 0;

	for (unsigned i = 0; i < r->n_prs; i++) {
		struct raft_progress *pr = &r->prs[i];

		if (!raft_conf_is_voter(&r->conf, pr->id))
			continue;
		if (pr->id == r->id || pr->recent_active)
			active++;
		pr->recent_active = pr->id == r->id;
	}
	return active >= raft__quorum(r);
}

int raft_tick(struct raft *r)
{
	if (r->ready_out)
		return -RAFT_EBUSY;
	if (r->role != RAFT_LEADER) {
		r->election_elapsed++;
		if (promotable(r) &&
		    r->election_elapsed >= r->randomized_timeout) {
			r->election_elapsed = 0;
			return campaign(r, r->opt.pre_vote, false);
		}
		return 0;
	}

	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->election_elapsed >= r->opt.election_tick) {
		r->election_elapsed = 0;
		if (r->opt.check_quorum && !quorum_active(r)) {
			raft__become_follower(r, r->term, 0);
			return 0;
		}
		r->transferee = 0; /* a transfer that took this long failed */
	}
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct raft_progress *pr = &r->prs[i];

		if (pr->state == PR_SNAPSHOT &&
		    ++pr->snapshot_elapsed >= r->opt.election_tick)
			raft__progress_become_probe(pr); /* resend */
	}
	if (r->heartbeat_elapsed >= r->opt.heartbeat_tick) {
		r->heartbeat_elapsed = 0;
		return raft__bcast_heartbeat(r);
	}
	return 0;
}

int raft__append_local(struct raft *r, uint8_t type, const void *data,
		       size_t len, uint64_t *index)
{
	int rc = raft__log_append(&r->log, r->term, type, data, len);

	if (rc != 0)
		return rc;
	if (index != NULL)
		*index = raft__last_index(&r->log);
	if (type == RAFT_ENTRY_CONF)
		return raft__conf_recompute(r);
	return 0;
}

int raft_propose(struct raft *r, const void *data, size_t len, uint64_t *index)
{
	int rc;

	if (r->ready_out)
		return -RAFT_EBUSY;
	if (len > 0 && data == NULL)
		return -RAFT_EINVAL;
	if (r->role != RAFT_LEADER)
		return -RAFT_ENOTLEADER;
	if (r->transferee != 0)
		return -RAFT_ETRANSFER;
	rc = raft__append_local(r, RAFT_ENTRY_NORMAL, data, len, index);
	if (rc != 0)
		return rc;
	return raft__bcast_append(r);
}

int raft_propose_conf_change(struct raft *r, enum raft_conf_op op, uint64_t id,
			     uint64_t *index)
{
	struct raft_conf c = r->conf;
	struct raft_progress *pr;
	uint8_t buf[RAFT_CONF_ENCODED_MAX];
	unsigned i;
	int rc;

	if (r->ready_out)
		return -RAFT_EBUSY;
	if (id == 0)
		return -RAFT_EINVAL;
	if (r->role != RAFT_LEADER)
		return -RAFT_ENOTLEADER;
	if (r->transferee != 0)
		return -RAFT_ETRANSFER;
	/* One change at a time, and not before this term's no-op commits
	 * (Ongaro, raft-dev 2015: single-server changes need it). */
	if (r->conf_index > r->log.commit || r->log.commit < r->term_start)
		return -RAFT_ECONFPENDING;
	for (i = 0; i < c.n; i++)
		if (c.members[i].id == id)
			break;
	switch (op) {
	case RAFT_CONF_ADD_VOTER:
	case RAFT_CONF_ADD_LEARNER:
		if (i < c.n)
			return -RAFT_EINVAL;
		if (c.n == RAFT_MAX_MEMBERS)
			return -RAFT_ETOOMANY;
		c.members[c.n].id = id;
		c.members[c.n].learner = op == RAFT_CONF_ADD_LEARNER;
		c.n++;
		break;
	case RAFT_CONF_PROMOTE:
		if (i == c.n)
			return -RAFT_ENOTMEMBER;
		if (!c.members[i].learner)
			return -RAFT_EINVAL;
		pr = raft__progress(r, id);
		if (pr == NULL || pr->match < r->log.commit)
			return -RAFT_ENOTCAUGHTUP;
		c.members[i].learner = false;
		break;
	case RAFT_CONF_REMOVE:
		if (i == c.n)
			return -RAFT_ENOTMEMBER;
		if (!c.members[i].learner && raft_conf_voters(&c) == 1)
			return -RAFT_EINVAL;
		c.members[i] = c.members[c.n - 1];
		c.n--;
		break;
	default:
		return -RAFT_EINVAL;
	}
	rc = raft__append_local(r, RAFT_ENTRY_CONF, buf,
				raft_conf_encode(&c, buf), index);
	if (rc != 0)
		return rc;
	return raft__bcast_append(r);
}

/* Thesis 3.10: bring the target up to date, then tell it to time out. */
int raft_transfer_leader(struct raft *r, uint64_t target)
{
	struct raft_progress *pr;

	if (r->ready_out)
		return -RAFT_EBUSY;
	if (r->role != RAFT_LEADER)
		return -RAFT_ENOTLEADER;
	if (target == r->id)
		return 0;
	if (!raft_conf_is_voter(&r->conf, target))
		return -RAFT_ENOTMEMBER;
	pr = raft__progress(r, target);
	if (pr == NULL)
		return -RAFT_ENOTMEMBER;
	if (r->transferee == target)
		return 0;
	r->transferee = target;
	r->election_elapsed = 0;
	if (pr->match == raft__last_index(&r->log))
		return send_timeout_now(r, target);
	return raft__send_append(r, pr, true);
}

int raft_campaign(struct raft *r)
{
	if (r->ready_out)
		return -RAFT_EBUSY;
	if (r->role == RAFT_LEADER)
		return 0;
	return campaign(r, r->opt.pre_vote, false);
}

static int fail(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
	return -RAFT_EINVAL;
}

static int check_conf(const struct raft_conf *c)
{
	uint8_t buf[RAFT_CONF_ENCODED_MAX];
	struct raft_conf tmp;

	if (c->n > RAFT_MAX_MEMBERS)
		return -RAFT_EINVAL;
	return raft_conf_decode(buf, raft_conf_encode(c, buf), &tmp);
}

int raft_new(const struct raft_options *opt, const struct raft_persisted *ps,
	     struct raft **out, char *err, size_t errlen)
{
	struct raft *r;
	struct raft_options o = *opt;
	uint64_t prev_term, last;
	int rc;

	if (o.election_tick == 0)
		o.election_tick = 10;
	if (o.heartbeat_tick == 0)
		o.heartbeat_tick = 1;
	if (o.max_inflight == 0)
		o.max_inflight = 64;
	if (o.max_batch_entries == 0)
		o.max_batch_entries = 64;
	if (o.max_batch_bytes == 0)
		o.max_batch_bytes = 1 << 20;
	if (o.id == 0)
		return fail(err, errlen, "node id must be nonzero");
	if (o.heartbeat_tick >= o.election_tick)
		return fail(
		    err, errlen,
		    "heartbeat_tick must be smaller than election_tick");
	if (o.max_inflight > RAFT_MAX_INFLIGHT)
		return fail(err, errlen, "max_inflight is above 256");
	if (ps->snapshot != NULL && check_conf(&ps->snapshot->conf) != 0)
		return fail(err, errlen, "snapshot configuration is malformed");
	if (ps->snapshot != NULL && ps->snapshot->len > 0 &&
	    ps->snapshot->data == NULL)
		return fail(err, errlen, "snapshot data is missing");
	prev_term = ps->snapshot ? ps->snapshot->term : 0;
	last = ps->snapshot ? ps->snapshot->index : 0;
	if (ps->n_entries > 0 && ps->entries == NULL)
		return fail(err, errlen, "entries are missing");
	for (size_t i = 0; i < ps->n_entries; i++) {
		const struct raft_entry *e = &ps->entries[i];

		if (e->index != last + 1)
			return fail(err, errlen,
				    "entries are not contiguous "
				    "after the snapshot");
		if (e->term < prev_term || e->term == 0)
			return fail(err, errlen, "entry terms go backwards");
		if (e->len > 0 && e->data == NULL)
			return fail(err, errlen, "entry data is missing");
		prev_term = e->term;
		last = e->index;
	}
	if (ps->hard_state.term < prev_term)
		return fail(err, errlen,
			    "hard state term is older than the log");
	if (ps->hard_state.commit > last)
		return fail(err, errlen, "commit index is beyond the log");

	r = mem_calloc(1, sizeof(*r));
	if (r == NULL)
		return -RAFT_ENOMEM;
	r->opt = o;
	r->id = o.id;
	r->rng = o.seed ^ (o.id * 0x9E3779B97F4A7C15ull);
	if (ps->snapshot != NULL) {
		rc = raft__snapshot_copy(&r->log.snap, ps->snapshot);
		if (rc != 0)
			goto err_free;
	}
	for (size_t i = 0; i < ps->n_entries; i++) {
		const struct raft_entry *e = &ps->entries[i];

		rc = raft__log_append(&r->log, e->term, e->type, e->data,
				      e->len);
		if (rc != 0)
			goto err_free;
	}
	r->log.stable = raft__last_index(&r->log);
	r->log.commit = ps->hard_state.commit;
	if (r->log.commit < r->log.snap.index)
		r->log.commit = r->log.snap.index;
	r->log.applied = r->log.snap.index;
	r->term = ps->hard_state.term;
	r->vote = ps->hard_state.vote;
	r->persisted_hs = ps->hard_state;
	raft__conf_recompute(r);
	raft__become_follower(r, r->term, 0);
	*out = r;
	return 0;

err_free:
	raft_free(r);
	return rc;
}

void raft_free(struct raft *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_msgs; i++)
		raft__msg_free(&r->msgs[i]);
	mem_free(r->msgs);
	raft__log_free(&r->log);
	mem_free(r);
}

uint64_t raft_id(const struct raft *r)
{
	return r->id;
}

enum raft_role raft_role(const struct raft *r)
{
	return r->role;
}

uint64_t raft_term(const struct raft *r)
{
	return r->term;
}

uint64_t raft_vote(const struct raft *r)
{
	return r->vote;
}

uint64_t raft_leader(const struct raft *r)
{
	return r->lead;
}

uint64_t raft_commit_index(const struct raft *r)
{
	return r->log.commit;
}

uint64_t raft_applied_index(const struct raft *r)
{
	return r->log.applied;
}

uint64_t raft_first_index(const struct raft *r)
{
	return raft__first_index(&r->log);
}

uint64_t raft_last_index(const struct raft *r)
{
	return raft__last_index(&r->log);
}

uint64_t raft_log_term(const struct raft *r, uint64_t index)
{
	return raft__term_or0(&r->log, index);
}

const struct raft_entry *raft_log_entry(const struct raft *r, uint64_t index)
{
	return raft__entry(&r->log, index);
}

const struct raft_conf *raft_conf(const struct raft *r)
{
	return &r->conf;
}

const struct raft_snapshot *raft_snapshot(const struct raft *r)
{
	return &r->log.snap;
}

uint64_t raft_match_index(const struct raft *r, uint64_t id)
{
	if (r->role != RAFT_LEADER)
		return 0;
	for (unsigned i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return r->prs[i].match;
	return 0;
}
