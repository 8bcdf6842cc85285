/*
 * test_raft_core.c - the pure Raft core driven message by message: options
 * and input validation, the ready/advance contract, commitment rules, flow
 * control, backtracking hints, compaction, allocation failures.
 */
#include "common/common.h"
#include "raft/raft.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <stdlib.h>
#include <string.h>

static struct raft_snapshot boot(unsigned voters)
{
	struct raft_snapshot s;

	memset(&s, 0, sizeof(s));
	s.conf.n = voters;
	for (unsigned i = 0; i < voters; i++)
		s.conf.members[i].id = i + 1;
	return s;
}

static struct raft *mkr(uint64_t id, unsigned voters, const uint64_t *terms,
			size_t n, uint64_t term, bool pre_vote)
{
	struct raft_snapshot snap = boot(voters);
	struct raft_entry *e = calloc(n ? n : 1, sizeof(*e));
	struct raft_options o = {
	    .id = id,
	    .election_tick = 10,
	    .heartbeat_tick = 1,
	    .seed = 42,
	    .pre_vote = pre_vote,
	    .max_inflight = 2,
	    .max_batch_entries = 1,
	};
	struct raft_persisted ps = {
	    .hard_state = {.term = term},
	    .snapshot = &snap,
	    .entries = e,
	    .n_entries = n,
	};
	struct raft *r = NULL;
	char err[128];

	for (size_t i = 0; i < n; i++) {
		e[i].index = i + 1;
		e[i].term = terms[i];
	}
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), 0);
	free(e);
	return r;
}

/* Runs one ready/advance cycle; returns how many messages of type went to `to`.
 */
static unsigned cycle(struct raft *r, int type, uint64_t to)
{
	struct raft_ready rd;
	unsigned count = 0;

	if (!raft_has_ready(r))
		return 0;
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	for (size_t i = 0; i < rd.n_msgs; i++)
		if (rd.msgs[i].type == type && (to == 0 || rd.msgs[i].to == to))
			count++;
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	return count;
}

static struct raft_msg msg(int type, uint64_t from, uint64_t to, uint64_t term)
{
	struct raft_msg m;

	memset(&m, 0, sizeof(m));
	m.type = (uint8_t)type;
	m.from = from;
	m.to = to;
	m.term = term;
	return m;
}

START_TEST(conf_encoding_round_trips_and_rejects_garbage)
{
	struct raft_conf c = {0}, d;
	uint8_t buf[RAFT_CONF_ENCODED_MAX];
	size_t n;

	c.n = 3;
	c.members[0].id = 1;
	c.members[1].id = 0x1122334455667788ull;
	c.members[2].id = 7;
	c.members[2].learner = true;
	n = raft_conf_encode(&c, buf);
	ck_assert_uint_eq(n, 2 + 27);
	ck_assert_int_eq(raft_conf_decode(buf, n, &d), 0);
	ck_assert_uint_eq(d.n, 3);
	ck_assert_uint_eq(d.members[1].id, 0x1122334455667788ull);
	ck_assert(d.members[2].learner);
	ck_assert_uint_eq(raft_conf_voters(&d), 2);
	ck_assert(raft_conf_is_voter(&d, 1));
	ck_assert(!raft_conf_is_voter(&d, 7));
	ck_assert(raft_conf_is_member(&d, 7));
	ck_assert_int_eq(raft_conf_decode(buf, n - 1, &d), -RAFT_EINVAL);
	buf[0] = 2;
	ck_assert_int_eq(raft_conf_decode(buf, n, &d), -RAFT_EINVAL);
	buf[0] = 1;
	buf[2 + 9 + 8] = 5; /* learner flag out of range */
	ck_assert_int_eq(raft_conf_decode(buf, n, &d), -RAFT_EINVAL);
	buf[2 + 9 + 8] = 0;
	memset(buf + 2 + 9, 0, 8); /* id 0 */
	ck_assert_int_eq(raft_conf_decode(buf, n, &d), -RAFT_EINVAL);
	memcpy(buf + 2 + 9, buf + 2, 8); /* duplicate id */
	ck_assert_int_eq(raft_conf_decode(buf, n, &d), -RAFT_EINVAL);
	ck_assert_int_eq(raft_conf_decode(NULL, 0, &d), -RAFT_EINVAL);
}
END_TEST

START_TEST(new_refuses_bad_options_and_inconsistent_state)
{
	struct raft_snapshot snap = boot(3);
	struct raft_entry e[3] = {
	    {.term = 1, .index = 1},
	    {.term = 2, .index = 2},
	    {.term = 2, .index = 3},
	};
	struct raft_options o = {.id = 1};
	struct raft_persisted ps = {.hard_state = {.term = 2},
				    .snapshot = &snap,
				    .entries = e,
				    .n_entries = 3};
	struct raft *r = NULL;
	char err[128];

	o.id = 0;
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), -RAFT_EINVAL);
	ck_assert_str_eq(err, "node id must be nonzero");
	o.id = 1;
	o.election_tick = 2;
	o.heartbeat_tick = 2;
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), -RAFT_EINVAL);
	o.election_tick = o.heartbeat_tick = 0;
	o.max_inflight = 1000;
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), -RAFT_EINVAL);
	o.max_inflight = 0;
	e[2].index = 4;
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), -RAFT_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "contiguous"));
	e[2].index = 3;
	e[2].term = 1;
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), -RAFT_EINVAL);
	e[2].term = 2;
	ps.hard_state.term = 1;
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), -RAFT_EINVAL);
	ps.hard_state.term = 2;
	ps.hard_state.commit = 4;
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), -RAFT_EINVAL);
	ps.hard_state.commit = 2;
	snap.conf.members[1].id = 1; /* duplicate member */
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), -RAFT_EINVAL);
	snap.conf.members[1].id = 2;
	ck_assert_ptr_null(r);
	ck_assert_int_eq(raft_new(&o, &ps, &r, err, sizeof(err)), 0);
	ck_assert_uint_eq(raft_term(r), 2);
	ck_assert_uint_eq(raft_commit_index(r), 2);
	ck_assert_uint_eq(raft_last_index(r), 3);
	ck_assert_int_eq(raft_role(r), RAFT_FOLLOWER);
	raft_free(r);
}
END_TEST

START_TEST(malformed_messages_are_refused_and_change_nothing)
{
	static const uint64_t terms[] = {1, 1};
	struct raft *r = mkr(1, 3, terms, 2, 1, false);
	struct raft_entry ents[2] = {{.term = 2, .index = 3},
				     {.term = 2, .index = 5}};
	struct raft_msg m;
	uint8_t bad = 9;

	m = msg(RAFT_MSG_VOTE, 2, 9, 5); /* not for us */
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	m = msg(RAFT_MSG_VOTE, 0, 1, 5);
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	m = msg(RAFT_MSG_VOTE, 1, 1, 5); /* from ourselves */
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	m = msg(RAFT_MSG_VOTE, 2, 1, 0);
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	m = msg(99, 2, 1, 5);
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	m = msg(RAFT_MSG_APPEND, 2, 1, 5); /* entries with a gap */
	m.index = 2;
	m.log_term = 1;
	m.entries = ents;
	m.n_entries = 2;
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	ents[1].index = 4;
	ents[1].term = 6; /* entry from a later term than the message */
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	ents[1].term = 2;
	ents[1].type = RAFT_ENTRY_CONF; /* garbage configuration */
	ents[1].data = &bad;
	ents[1].len = 1;
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	m = msg(RAFT_MSG_HEARTBEAT, 2, 1, 5); /* entries on a heartbeat */
	m.entries = ents;
	m.n_entries = 1;
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	m = msg(RAFT_MSG_SNAPSHOT, 2, 1, 5);
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EPROTO);
	ck_assert_int_eq(raft_step(r, NULL), -RAFT_EPROTO);
	/* nothing changed */
	ck_assert_uint_eq(raft_term(r), 1);
	ck_assert_uint_eq(raft_last_index(r), 2);
	ck_assert_uint_eq(raft_leader(r), 0);
	ck_assert(!raft_has_ready(r));
	raft_free(r);
}
END_TEST

START_TEST(single_voter_commits_only_what_it_persisted)
{
	struct raft *r = mkr(1, 1, NULL, 0, 0, true);
	struct raft_ready rd;
	uint64_t idx = 0;

	ck_assert_int_eq(raft_propose(r, "a", 1, NULL), -RAFT_ENOTLEADER);
	ck_assert_int_eq(raft_campaign(r), 0);
	ck_assert_int_eq(raft_role(r), RAFT_LEADER);
	ck_assert_uint_eq(raft_term(r), 1);
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	ck_assert(rd.has_hard_state);
	ck_assert_uint_eq(rd.hard_state.term, 1);
	ck_assert_uint_eq(rd.hard_state.vote, 1);
	ck_assert_uint_eq(rd.hard_state.commit, 0); /* not persisted yet */
	ck_assert_uint_eq(rd.n_entries, 1);	    /* the no-op */
	ck_assert_uint_eq(rd.entries[0].len, 0);
	ck_assert_uint_eq(rd.n_committed, 0);
	/* nothing else may run while a ready is out */
	ck_assert_int_eq(raft_propose(r, "a", 1, NULL), -RAFT_EBUSY);
	ck_assert_int_eq(raft_tick(r), -RAFT_EBUSY);
	ck_assert_int_eq(raft_ready(r, &rd), -RAFT_EBUSY);
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	ck_assert_int_eq(raft_advance(r, &rd), -RAFT_EINVAL);
	ck_assert_uint_eq(raft_commit_index(r), 1);
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	ck_assert_uint_eq(rd.n_committed, 1);
	ck_assert_uint_eq(rd.hard_state.commit, 1);
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	ck_assert_int_eq(raft_propose(r, "hello", 5, &idx), 0);
	ck_assert_uint_eq(idx, 2);
	ck_assert_uint_eq(raft_commit_index(r), 1);
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	ck_assert_uint_eq(rd.n_entries, 1);
	ck_assert_mem_eq(rd.entries[0].data, "hello", 5);
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	ck_assert_uint_eq(raft_commit_index(r), 2);
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	ck_assert_uint_eq(rd.n_committed, 1);
	ck_assert_uint_eq(rd.committed[0].index, 2);
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	ck_assert_uint_eq(raft_applied_index(r), 2);
	ck_assert(!raft_has_ready(r));
	raft_free(r);
}
END_TEST

START_TEST(vote_grant_travels_with_the_hard_state_it_depends_on)
{
	static const uint64_t terms[] = {1};
	struct raft *r = mkr(1, 3, terms, 1, 1, false);
	struct raft_ready rd;
	struct raft_msg m = msg(RAFT_MSG_VOTE, 2, 1, 5);
	bool granted = false;

	m.index = 1;
	m.log_term = 1;
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	ck_assert(rd.has_hard_state);
	ck_assert_uint_eq(rd.hard_state.term, 5);
	ck_assert_uint_eq(rd.hard_state.vote, 2);
	for (size_t i = 0; i < rd.n_msgs; i++)
		if (rd.msgs[i].type == RAFT_MSG_VOTE_RESP &&
		    rd.msgs[i].to == 2 && !rd.msgs[i].reject)
			granted = true;
	ck_assert(granted);
	ck_assert_int_eq(raft_step(r, &m), -RAFT_EBUSY);
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	/* one vote per term: n3 is refused */
	m = msg(RAFT_MSG_VOTE, 3, 1, 5);
	m.index = 1;
	m.log_term = 1;
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	ck_assert(!rd.has_hard_state);
	ck_assert_uint_eq(rd.n_msgs, 1);
	ck_assert(rd.msgs[0].reject);
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	ck_assert_uint_eq(raft_vote(r), 2);
	/* a candidate with a shorter log is refused in a new term too */
	m = msg(RAFT_MSG_VOTE, 3, 1, 6);
	m.index = 0;
	m.log_term = 0;
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_uint_eq(raft_term(r), 6);
	ck_assert_uint_eq(raft_vote(r), 0);
	raft_free(r);
}
END_TEST

/* Raft paper Figure 8 at the level of one leader. */
START_TEST(leader_commits_by_counting_only_current_term_entries)
{
	static const uint64_t terms[] = {1, 1};
	struct raft *r = mkr(1, 3, terms, 2, 1, false);
	struct raft_msg m;

	ck_assert_int_eq(raft_campaign(r), 0);
	ck_assert_uint_eq(cycle(r, RAFT_MSG_VOTE, 0), 2);
	m = msg(RAFT_MSG_VOTE_RESP, 2, 1, 2);
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_int_eq(raft_role(r), RAFT_LEADER);
	ck_assert_uint_eq(raft_last_index(r), 3); /* the no-op */
	cycle(r, 0, 0);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 2);
	m.index = 2; /* n2 holds entries 1-2 (term 1): a majority with us */
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_uint_eq(raft_match_index(r, 2), 2);
	ck_assert_uint_eq(raft_commit_index(r), 0);
	m.index = 3; /* now the term-2 no-op: it and everything before commit */
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_uint_eq(raft_commit_index(r), 3);
	raft_free(r);
}
END_TEST

START_TEST(flow_control_caps_appends_in_flight)
{
	struct raft *r = mkr(1, 2, NULL, 0, 0, false);
	struct raft_msg m;
	unsigned sent = 0;

	ck_assert_int_eq(raft_campaign(r), 0);
	cycle(r, 0, 0);
	m = msg(RAFT_MSG_VOTE_RESP, 2, 1, 1);
	ck_assert_int_eq(raft_step(r, &m), 0);
	cycle(r, 0, 0);
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, 1);
	m.index = 1;
	ck_assert_int_eq(raft_step(r, &m), 0); /* probe -> replicate */
	cycle(r, 0, 0);
	for (int i = 0; i < 6; i++) {
		ck_assert_int_eq(raft_propose(r, "x", 1, NULL), 0);
		sent += cycle(r, RAFT_MSG_APPEND, 2);
	}
	ck_assert_uint_eq(sent, 2); /* max_inflight = 2, batch = 1 */
	m.index = 3;		    /* both acknowledged: two more go out */
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_uint_eq(cycle(r, RAFT_MSG_APPEND, 2), 2);
	raft_free(r);
}
END_TEST

START_TEST(rejection_hint_skips_whole_conflicting_terms)
{
	static const uint64_t terms[] = {1, 3, 3, 3, 3};
	struct raft *r = mkr(2, 3, terms, 5, 3, false);
	struct raft_msg m = msg(RAFT_MSG_APPEND, 1, 2, 4);
	struct raft_ready rd;

	m.index = 5;
	m.log_term = 2; /* the leader has term 2 at index 5 */
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_uint_eq(raft_leader(r), 1);
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	ck_assert_uint_eq(rd.n_msgs, 1);
	ck_assert(rd.msgs[0].reject);
	ck_assert_uint_eq(rd.msgs[0].index, 5);
	ck_assert_uint_eq(rd.msgs[0].hint, 1); /* all of term 3 skipped */
	ck_assert_uint_eq(rd.msgs[0].hint_term, 1);
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	raft_free(r);
}
END_TEST

START_TEST(append_truncates_a_conflicting_suffix_for_the_caller)
{
	static const uint64_t terms[] = {1, 1, 2, 2};
	struct raft *r = mkr(2, 3, terms, 4, 2, false);
	struct raft_entry e[2] = {{.term = 3, .index = 3},
				  {.term = 3, .index = 4}};
	struct raft_msg m = msg(RAFT_MSG_APPEND, 1, 2, 3);
	struct raft_ready rd;

	m.index = 2;
	m.log_term = 1;
	m.commit = 3;
	m.entries = e;
	m.n_entries = 2;
	ck_assert_int_eq(raft_step(r, &m), 0);
	ck_assert_int_eq(raft_ready(r, &rd), 0);
	/* the caller is told to rewrite from index 3 on */
	ck_assert_uint_eq(rd.n_entries, 2);
	ck_assert_uint_eq(rd.entries[0].index, 3);
	ck_assert_uint_eq(rd.entries[0].term, 3);
	ck_assert_uint_eq(rd.hard_state.commit, 3);
	ck_assert_uint_eq(rd.n_committed, 3);
	ck_assert_uint_eq(rd.msgs[0].type, RAFT_MSG_APPEND_RESP);
	ck_assert(!rd.msgs[0].reject);
	ck_assert_uint_eq(rd.msgs[0].index, 4);
	ck_assert_int_eq(raft_advance(r, &rd), 0);
	raft_free(r);
}
END_TEST

START_TEST(compaction_forgets_applied_entries_only)
{
	struct raft *r = mkr(1, 1, NULL, 0, 0, false);
	const struct raft_snapshot *snap;

	ck_assert_int_eq(raft_campaign(r), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(raft_propose(r, "x", 1, NULL), 0);
	while (raft_has_ready(r))
		cycle(r, 0, 0);
	ck_assert_uint_eq(raft_applied_index(r), 6);
	ck_assert_int_eq(raft_compact(r, 7, "s", 1), -RAFT_EINVAL);
	ck_assert_int_eq(raft_compact(r, 4, NULL, 3), -RAFT_EINVAL);
	ck_assert_int_eq(raft_compact(r, 4, "snap", 4), 0);
	ck_assert_uint_eq(raft_first_index(r), 5);
	ck_assert_ptr_null(raft_log_entry(r, 4));
	ck_assert_ptr_nonnull(raft_log_entry(r, 5));
	ck_assert_uint_eq(raft_log_term(r, 4), 1);
	snap = raft_snapshot(r);
	ck_assert_uint_eq(snap->index, 4);
	ck_assert_uint_eq(snap->conf.n, 1);
	ck_assert_mem_eq(snap->data, "snap", 4);
	ck_assert_int_eq(raft_compact(r, 3, "old", 3), 0); /* already covered */
	ck_assert_uint_eq(raft_first_index(r), 5);
	raft_free(r);
}
END_TEST

START_TEST(restart_recovers_what_was_persisted)
{
	struct raft *r = mkr(1, 1, NULL, 0, 0, false);
	struct raft_ready rd;
	struct raft_hard_state hs = {0};
	struct raft_entry saved[8];
	size_t n = 0;
	struct raft_snapshot snap = boot(1);
	struct raft_options o = {.id = 1};
	struct raft_persisted ps;
	struct raft *r2 = NULL;

	ck_assert_int_eq(raft_campaign(r), 0);
	ck_assert_int_eq(raft_propose(r, "ab", 2, NULL), 0);
	while (raft_has_ready(r)) {
		ck_assert_int_eq(raft_ready(r, &rd), 0);
		for (size_t i = 0; i < rd.n_entries; i++) {
			saved[n] = rd.entries[i];
			saved[n].data = rd.entries[i].len ? strdup("ab") : NULL;
			n++;
		}
		if (rd.has_hard_state)
			hs = rd.hard_state;
		ck_assert_int_eq(raft_advance(r, &rd), 0);
	}
	ck_assert_int_eq(raft_propose(r, "lost", 4, NULL),
			 0); /* never persisted */
	raft_free(r);
	ps = (struct raft_persisted){hs, &snap, saved, n};
	ck_assert_int_eq(raft_new(&o, &ps, &r2, NULL, 0), 0);
	ck_assert_uint_eq(raft_term(r2), 1);
	ck_assert_uint_eq(raft_vote(r2), 1);
	ck_assert_uint_eq(raft_commit_index(r2), 2);
	ck_assert_uint_eq(raft_last_index(r2), 2);
	ck_assert_int_eq(raft_role(r2), RAFT_FOLLOWER);
	ck_assert_mem_eq(raft_log_entry(r2, 2)->data, "ab", 2);
	/* it hands the committed entries out again for the state machine */
	ck_assert_int_eq(raft_ready(r2, &rd), 0);
	ck_assert_uint_eq(rd.n_committed, 2);
	ck_assert(!rd.has_hard_state);
	ck_assert_int_eq(raft_advance(r2, &rd), 0);
	for (size_t i = 0; i < n; i++)
		free(saved[i].data);
	raft_free(r2);
}
END_TEST

START_TEST(allocation_failures_are_reported_and_leak_nothing)
{
	static const uint64_t terms[] = {1, 1, 1};
	int failures = 0;

	for (long k = 1; k < 50; k++) {
		struct raft_snapshot snap = boot(3);
		struct raft_entry e[3] = {
		    {.term = 1, .index = 1, .len = 1, .data = "a"},
		    {.term = 1, .index = 2, .len = 1, .data = "b"},
		    {.term = 1, .index = 3, .len = 1, .data = "c"}};
		struct raft_options o = {.id = 1};
		struct raft_persisted ps = {{1, 0, 0}, &snap, e, 3};
		struct raft *r = NULL;
		int rc;

		(void)terms;
		snap.len = 2;
		snap.data = "zz";
		mem_fail_after(k);
		rc = raft_new(&o, &ps, &r, NULL, 0);
		mem_fail_reset();
		if (rc == 0) {
			raft_free(r);
			break;
		}
		ck_assert_int_eq(rc, -RAFT_ENOMEM);
		failures++;
	}
	ck_assert_int_gt(failures, 2);
	{
		struct raft *r = mkr(1, 1, NULL, 0, 0, false);

		ck_assert_int_eq(raft_campaign(r), 0);
		cycle(r, 0, 0);
		mem_fail_after(1);
		ck_assert_int_eq(raft_propose(r, "x", 1, NULL), -RAFT_ENOMEM);
		mem_fail_reset();
		raft_free(r);
	}
}
END_TEST

START_TEST(error_codes_have_messages)
{
	ck_assert_str_eq(raft_strerror(-RAFT_ENOTLEADER), "not the leader");
	ck_assert_str_eq(raft_strerror(RAFT_EBUSY),
			 "a ready batch is outstanding; call raft_advance");
	ck_assert_str_eq(raft_strerror(-999), "unknown error");
	ck_assert_str_eq(raft_role_name(RAFT_PRECANDIDATE), "pre-candidate");
	ck_assert_str_eq(raft_msg_type_name(RAFT_MSG_TIMEOUT_NOW),
			 "TIMEOUT_NOW");
	ck_assert_str_eq(raft_msg_type_name(0), "?");
}
END_TEST

START_TEST(election_timeout_is_randomized_from_the_seed)
{
	unsigned first[2] = {0, 0};

	for (int run = 0; run < 2; run++) {
		for (uint64_t seed = 1; seed <= 8; seed++) {
			struct raft_snapshot snap = boot(3);
			struct raft_options o = {
			    .id = 1, .election_tick = 10, .seed = seed};
			struct raft_persisted ps = {.snapshot = &snap};
			struct raft *r = NULL;
			unsigned ticks = 0;

			ck_assert_int_eq(raft_new(&o, &ps, &r, NULL, 0), 0);
			while (raft_role(r) == RAFT_FOLLOWER && ticks < 100) {
				ck_assert_int_eq(raft_tick(r), 0);
				ticks++;
			}
			ck_assert_uint_ge(ticks, 10);
			ck_assert_uint_lt(ticks, 20);
			first[run] = first[run] * 31 + ticks;
			raft_free(r);
		}
	}
	/* same seeds, same timeouts: replays exactly */
	ck_assert_uint_eq(first[0], first[1]);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    conf_encoding_round_trips_and_rejects_garbage,
	    new_refuses_bad_options_and_inconsistent_state,
	    malformed_messages_are_refused_and_change_nothing,
	    single_voter_commits_only_what_it_persisted,
	    vote_grant_travels_with_the_hard_state_it_depends_on,
	    leader_commits_by_counting_only_current_term_entries,
	    flow_control_caps_appends_in_flight,
	    rejection_hint_skips_whole_conflicting_terms,
	    append_truncates_a_conflicting_suffix_for_the_caller,
	    compaction_forgets_applied_entries_only,
	    restart_recovers_what_was_persisted,
	    allocation_failures_are_reported_and_leak_nothing,
	    error_codes_have_messages,
	    election_timeout_is_randomized_from_the_seed,
	    NULL,
	};

	return suite_main("raft", 0, tests);
}
