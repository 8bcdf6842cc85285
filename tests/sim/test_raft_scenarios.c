/*
 * test_raft_scenarios.c - the Raft paper's scenarios, run on the
 * deterministic cluster harness (every step is also checked for election
 * safety, log matching, leader completeness and state machine safety).
 *
 * RAFT_TRACE=1 prints each scenario's trace.
 */
#include "sim/raft_sim.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct raft_sim *mk_opts(struct raft_sim_options *o)
{
	struct raft_sim *s;

	if (getenv("RAFT_TRACE") != NULL)
		o->trace = stdout;
	s = raft_sim_new(o);
	ck_assert_ptr_nonnull(s);
	return s;
}

static struct raft_sim *mk(unsigned n, uint64_t seed)
{
	struct raft_sim_options o = {
	    .n_nodes = n,
	    .seed = seed,
	    .pre_vote = true,
	    .check_quorum = true,
	};

	return mk_opts(&o);
}

static void no_violation(struct raft_sim *s)
{
	ck_assert_msg(raft_sim_violation(s) == NULL, "violation: %s",
		      raft_sim_violation(s));
}

static uint64_t elect(struct raft_sim *s)
{
	uint64_t l = raft_sim_wait_leader(s, 10000);

	no_violation(s);
	ck_assert_msg(l != 0, "no stable leader");
	return l;
}

static uint64_t put(struct raft_sim *s, uint64_t id, const char *v)
{
	uint64_t idx = 0;

	ck_assert_int_eq(raft_sim_propose(s, id, v, strlen(v), &idx), 0);
	return idx;
}

static void wait_applied(struct raft_sim *s, uint64_t leader, uint64_t index);

/* A leader whose term has started: its first entry committed everywhere. */
static uint64_t elect_and_settle(struct raft_sim *s)
{
	uint64_t l = elect(s);

	wait_applied(s, l, put(s, l, "settle"));
	return l;
}

struct applied_ctx {
	uint64_t leader, index;
};

static bool applied_pred(struct raft_sim *s, void *arg)
{
	struct applied_ctx *a = arg;

	return raft_sim_all_applied(s, a->leader, a->index);
}

static void wait_applied(struct raft_sim *s, uint64_t leader, uint64_t index)
{
	struct applied_ctx a = {leader, index};
	int rc = raft_sim_run_until(s, applied_pred, &a, 10000);

	no_violation(s);
	ck_assert_msg(rc == 1, "index %llu not applied everywhere",
		      (unsigned long long)index);
}

struct alive_ctx {
	uint64_t leader, index;
};

static bool alive_applied(struct raft_sim *s, void *arg)
{
	struct alive_ctx *a = arg;
	struct raft *l = raft_sim_node(s, a->leader);
	const struct raft_conf *c = raft_conf(l);

	for (unsigned i = 0; i < c->n; i++)
		if (raft_sim_is_alive(s, c->members[i].id) &&
		    raft_sim_applied(s, c->members[i].id) < a->index)
			return false;
	return true;
}

/* Like wait_applied, for the members that are up. */
static void wait_applied_alive(struct raft_sim *s, uint64_t leader,
			       uint64_t index)
{
	struct alive_ctx a = {leader, index};

	ck_assert_int_eq(raft_sim_run_until(s, alive_applied, &a, 10000), 1);
	no_violation(s);
}

static void run(struct raft_sim *s, uint64_t ms)
{
	ck_assert_int_eq(raft_sim_run_for(s, ms), 0);
	no_violation(s);
}

/* ---- Figure 7 ------------------------------------------------------------ */

static unsigned f_rejects;

static bool count_f_rejects(void *ctx, const struct raft_msg *m)
{
	(void)ctx;
	if (m->type == RAFT_MSG_APPEND_RESP && m->reject && m->from == 7)
		f_rejects++;
	return false;
}

START_TEST(figure7_divergent_logs_are_reconciled)
{
	static const uint64_t lead[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
	static const uint64_t a[] = {1, 1, 1, 4, 4, 5, 5, 6, 6};
	static const uint64_t b[] = {1, 1, 1, 4};
	static const uint64_t c[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6};
	static const uint64_t d[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7};
	static const uint64_t e[] = {1, 1, 1, 4, 4, 4, 4};
	static const uint64_t f[] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3};
	struct raft_sim_options o = {
	    .n_nodes = 7,
	    .seed = 7,
	    .pre_vote = true,
	    .check_quorum = true,
	    .no_autostart = true,
	};
	struct raft_sim *s = mk_opts(&o);
	struct raft *l;
	uint64_t idx;

	ck_assert_int_eq(raft_sim_set_disk(s, 1, lead, 10, 7, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 2, a, 9, 6, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 3, b, 4, 4, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 4, c, 11, 6, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 5, d, 12, 7, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 6, e, 7, 4, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 7, f, 11, 3, 0), 0);
	for (uint64_t id = 1; id <= 7; id++)
		ck_assert_int_eq(raft_sim_restart(s, id), 0);
	raft_sim_set_filter(s, count_f_rejects, NULL);
	f_rejects = 0;
	ck_assert_int_eq(raft_campaign(raft_sim_node(s, 1)), 0);
	ck_assert_uint_eq(elect(s), 1);
	l = raft_sim_node(s, 1);
	ck_assert_uint_eq(raft_term(l), 8);
	idx = put(s, 1, "after");
	wait_applied(s, 1, idx);
	/* every log now equals the leader's: its entries 1..10, the no-op,
	 * the proposal; the extra entries of c, d and f are gone */
	for (uint64_t id = 1; id <= 7; id++) {
		struct raft *r = raft_sim_node(s, id);

		ck_assert_uint_eq(raft_last_index(r), idx);
		ck_assert_uint_eq(raft_commit_index(r), idx);
		for (uint64_t i = raft_first_index(r); i <= 10; i++)
			ck_assert_uint_eq(raft_log_term(r, i), lead[i - 1]);
		if (raft_first_index(r) <= 11)
			ck_assert_uint_eq(raft_log_term(r, 11), 8);
	}
	/* fast backtracking: f skips its whole terms 2 and 3 at once */
	ck_assert_uint_le(f_rejects, 2);
	ck_assert_uint_ge(f_rejects, 1);
	raft_sim_free(s);
}
END_TEST

/* ---- Figure 8 ------------------------------------------------------------ */

/* hides every acknowledgement of index 3 (the new leader's no-op) */
static bool hide_acks_of_3(void *ctx, const struct raft_msg *m)
{
	(void)ctx;
	return m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index >= 3;
}

START_TEST(figure8_old_term_entry_is_not_committed_by_counting)
{
	static const uint64_t s12[] = {1, 2}, s34[] = {1}, s5[] = {1, 3};
	struct raft_sim_options o = {
	    .n_nodes = 5,
	    .seed = 8,
	    .pre_vote = true,
	    .check_quorum = true,
	    .no_autostart = true,
	    .max_batch_entries = 1,
	};
	struct raft_sim *s = mk_opts(&o);
	struct raft *l;
	uint64_t t = 0;

	/* Figure 8 (c): S1 was leader in term 2 and got index 2 to S2 only;
	 * S5 was leader in term 3 with its own index 2. */
	ck_assert_int_eq(raft_sim_set_disk(s, 1, s12, 2, 3, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 2, s12, 2, 2, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 3, s34, 1, 2, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 4, s34, 1, 2, 0), 0);
	ck_assert_int_eq(raft_sim_set_disk(s, 5, s5, 2, 3, 5), 0);
	for (uint64_t id = 1; id <= 5; id++)
		ck_assert_int_eq(raft_sim_restart(s, id), 0);
	raft_sim_isolate(s, 5);
	raft_sim_set_filter(s, hide_acks_of_3, NULL);
	ck_assert_int_eq(raft_campaign(raft_sim_node(s, 1)), 0);
	run(s, 1000);
	l = raft_sim_node(s, 1);
	ck_assert_int_eq(raft_role(l), RAFT_LEADER);
	ck_assert_uint_eq(raft_term(l), 4);
	/* index 2 (term 2) is stored on S1, S3 and S4 as far as the leader
	 * knows: a majority.  It must still not be committed. */
	ck_assert_uint_ge(raft_match_index(l, 3), 2);
	ck_assert_uint_ge(raft_match_index(l, 4), 2);
	ck_assert_uint_lt(raft_commit_index(l), 2);
	ck_assert(!raft_sim_committed(s, 2, NULL));
	/* once the term-4 entry reaches a majority, both commit */
	raft_sim_set_filter(s, NULL, NULL);
	run(s, 1000);
	ck_assert_uint_ge(raft_commit_index(l), 3);
	ck_assert(raft_sim_committed(s, 2, &t));
	ck_assert_uint_eq(t, 2);
	raft_sim_free(s);
}
END_TEST

/* ---- leader crashes --------------------------------------------------------
 */

START_TEST(leader_crash_after_commit_keeps_the_entry)
{
	struct raft_sim *s = mk(3, 11);
	uint64_t l = elect(s), l2, idx, idx2;
	uint64_t t = 0;

	idx = put(s, l, "x");
	wait_applied(s, l, idx);
	ck_assert(raft_sim_committed_is(s, idx, "x", 1));
	raft_sim_crash(s, l);
	l2 = elect(s);
	ck_assert_uint_ne(l2, l);
	ck_assert(raft_sim_committed(s, idx, &t));
	ck_assert_uint_eq(raft_log_term(raft_sim_node(s, l2), idx), t);
	idx2 = put(s, l2, "y");
	ck_assert_int_eq(raft_sim_restart(s, l), 0);
	wait_applied(s, l2, idx2);
	ck_assert(raft_sim_committed_is(s, idx, "x", 1));
	ck_assert(raft_sim_committed_is(s, idx2, "y", 1));
	ck_assert_uint_ge(raft_sim_applied(s, l), idx2);
	raft_sim_free(s);
}
END_TEST

START_TEST(leader_crash_before_commit_loses_only_uncommitted_entry)
{
	struct raft_sim *s = mk(3, 12);
	uint64_t l = elect(s), l2, idx, idx2;

	raft_sim_isolate(s, l);
	idx = put(s, l, "lost");
	run(s, 50);
	ck_assert(!raft_sim_committed(s, idx, NULL));
	raft_sim_crash(s, l);
	raft_sim_heal(s);
	l2 = elect(s);
	ck_assert_uint_ne(l2, l);
	idx2 = put(s, l2, "kept");
	ck_assert_int_eq(raft_sim_restart(s, l), 0);
	wait_applied(s, l2, idx2);
	/* the old leader's uncommitted entry was replaced */
	ck_assert(!raft_sim_committed_is(s, idx, "lost", 4));
	ck_assert_uint_eq(raft_log_term(raft_sim_node(s, l), idx),
			  raft_log_term(raft_sim_node(s, l2), idx));
	ck_assert(raft_sim_committed_is(s, idx2, "kept", 4));
	raft_sim_free(s);
}
END_TEST

/* ---- split votes ------------------------------------------------------------
 */

static bool split_filter(void *ctx, const struct raft_msg *m)
{
	(void)ctx;
	/* n3 only hears n1's request, n4 only n2's */
	return m->type == RAFT_MSG_VOTE && m->term == 1 &&
	       ((m->from == 1 && m->to == 4) || (m->from == 2 && m->to == 3) ||
		(m->from == 1 && m->to == 2) || (m->from == 2 && m->to == 1));
}

START_TEST(split_votes_are_resolved_by_a_later_election)
{
	struct raft_sim_options o = {.n_nodes = 4, .seed = 13};
	struct raft_sim *s = mk_opts(&o);
	uint64_t l;

	raft_sim_set_filter(s, split_filter, NULL);
	ck_assert_int_eq(raft_campaign(raft_sim_node(s, 1)), 0);
	ck_assert_int_eq(raft_campaign(raft_sim_node(s, 2)), 0);
	run(s, 50);
	/* two votes each out of four: nobody wins term 1 */
	ck_assert_int_eq(raft_role(raft_sim_node(s, 1)), RAFT_CANDIDATE);
	ck_assert_int_eq(raft_role(raft_sim_node(s, 2)), RAFT_CANDIDATE);
	ck_assert_uint_eq(raft_sim_leader(s), 0);
	ck_assert_uint_eq(raft_vote(raft_sim_node(s, 3)), 1);
	ck_assert_uint_eq(raft_vote(raft_sim_node(s, 4)), 2);
	l = elect(s);
	ck_assert_uint_ge(raft_term(raft_sim_node(s, l)), 2);
	raft_sim_free(s);
}
END_TEST

/* ---- pre-vote
 * ---------------------------------------------------------------- */

static void partitioned_node_rejoins(bool pre_vote, bool *disrupted)
{
	struct raft_sim_options o = {
	    .n_nodes = 3,
	    .seed = 14,
	    .pre_vote = pre_vote,
	    .check_quorum = false,
	};
	struct raft_sim *s = mk_opts(&o);
	uint64_t l = elect(s), f = l == 1 ? 2 : 1, term;

	term = raft_term(raft_sim_node(s, l));
	raft_sim_isolate(s, f);
	run(s, 2000);
	raft_sim_heal(s);
	run(s, 1000);
	ck_assert_uint_ne(raft_sim_leader(s), 0);
	*disrupted = raft_sim_leader(s) != l ||
		     raft_term(raft_sim_node(s, raft_sim_leader(s))) != term;
	ck_assert_uint_eq(elect(s), raft_sim_leader(s));
	raft_sim_free(s);
}

START_TEST(pre_vote_lets_a_partitioned_node_rejoin_without_disruption)
{
	bool disrupted = true;

	partitioned_node_rejoins(true, &disrupted);
	ck_assert_msg(!disrupted, "leader or term changed despite pre-vote");
	/* the control experiment: without pre-vote it does disrupt */
	partitioned_node_rejoins(false, &disrupted);
	ck_assert_msg(disrupted, "without pre-vote the rejoin should disrupt");
}
END_TEST

/* ---- check-quorum
 * ------------------------------------------------------------ */

START_TEST(check_quorum_makes_a_minority_leader_step_down)
{
	struct raft_sim *s = mk(5, 15);
	uint64_t l = elect(s), other = l == 1 ? 2 : 1, l2, idx;
	uint32_t mask = (1u << l) | (1u << other);

	raft_sim_partition(s, mask);
	idx = put(s, l, "minority");
	run(s, 1000);
	ck_assert_int_ne(raft_role(raft_sim_node(s, l)), RAFT_LEADER);
	l2 = raft_sim_leader(s);
	ck_assert_uint_ne(l2, 0);
	ck_assert(((mask >> l2) & 1) == 0);
	ck_assert(!raft_sim_committed_is(s, idx, "minority", 8));
	raft_sim_heal(s);
	l2 = elect(s);
	idx = put(s, l2, "majority");
	wait_applied(s, l2, idx);
	raft_sim_free(s);
}
END_TEST

START_TEST(without_check_quorum_a_minority_leader_stays)
{
	struct raft_sim_options o = {
	    .n_nodes = 5,
	    .seed = 15,
	    .pre_vote = true,
	    .check_quorum = false,
	};
	struct raft_sim *s = mk_opts(&o);
	uint64_t l = elect(s), other = l == 1 ? 2 : 1;

	raft_sim_partition(s, (1u << l) | (1u << other));
	run(s, 1000);
	ck_assert_int_eq(raft_role(raft_sim_node(s, l)), RAFT_LEADER);
	raft_sim_free(s);
}
END_TEST

/* ---- snapshots --------------------------------------------------------------
 */

START_TEST(lagging_follower_receives_a_snapshot)
{
	struct raft_sim_options o = {
	    .n_nodes = 3,
	    .seed = 16,
	    .pre_vote = true,
	    .check_quorum = true,
	    .compact_every = 10,
	};
	struct raft_sim *s = mk_opts(&o);
	uint64_t l = elect(s), f = l == 3 ? 2 : 3, idx = 0;
	char buf[16];

	raft_sim_crash(s, f);
	for (int i = 0; i < 50; i++) {
		snprintf(buf, sizeof(buf), "v%d", i);
		idx = put(s, l, buf);
		run(s, 5);
	}
	run(s, 200);
	ck_assert_uint_gt(raft_first_index(raft_sim_node(s, l)), 20);
	ck_assert_uint_eq(raft_sim_delivered(s, RAFT_MSG_SNAPSHOT), 0);
	ck_assert_int_eq(raft_sim_restart(s, f), 0);
	wait_applied(s, l, idx);
	ck_assert_uint_ge(raft_sim_delivered(s, RAFT_MSG_SNAPSHOT), 1);
	ck_assert_uint_gt(raft_first_index(raft_sim_node(s, f)), 1);
	ck_assert_uint_eq(raft_last_index(raft_sim_node(s, f)), idx);
	/* and it restarts from its installed snapshot */
	raft_sim_crash(s, f);
	ck_assert_int_eq(raft_sim_restart(s, f), 0);
	idx = put(s, l, "after");
	wait_applied(s, l, idx);
	raft_sim_free(s);
}
END_TEST

/* ---- membership
 * ---------------------------------------------------------------- */

struct conf_ctx {
	uint64_t id;
	unsigned voters;
};

static bool all_see_voters(struct raft_sim *s, void *arg)
{
	struct conf_ctx *c = arg;

	for (uint64_t id = 1; id <= 5; id++) {
		struct raft *r = raft_sim_node(s, id);

		if (r == NULL || !raft_conf_is_member(raft_conf(r), id))
			continue;
		if (raft_conf_voters(raft_conf(r)) != c->voters)
			return false;
	}
	return true;
}

START_TEST(members_are_added_and_removed_one_at_a_time)
{
	struct raft_sim *s = mk(3, 17);
	uint64_t l = elect_and_settle(s), idx = 0;
	struct raft *r = raft_sim_node(s, l);
	struct conf_ctx cc = {0, 4};

	ck_assert_int_eq(raft_sim_add_node(s, 4), 0);
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_ADD_VOTER, 4, &idx), 0);
	/* only one change at a time */
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_ADD_VOTER, 5, NULL),
	    -RAFT_ECONFPENDING);
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_ADD_VOTER, 4, NULL),
	    -RAFT_ECONFPENDING);
	/* the new configuration is in effect on the leader at once */
	ck_assert(raft_conf_is_voter(raft_conf(r), 4));
	wait_applied(s, l, idx);
	ck_assert_int_eq(raft_sim_run_until(s, all_see_voters, &cc, 2000), 1);
	ck_assert(raft_conf_is_voter(raft_conf(raft_sim_node(s, 4)), 4));
	/* bad changes are refused and change nothing */
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_ADD_VOTER, 4, NULL),
	    -RAFT_EINVAL);
	ck_assert_int_eq(raft_propose_conf_change(r, RAFT_CONF_REMOVE, 9, NULL),
			 -RAFT_ENOTMEMBER);
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_PROMOTE, 4, NULL),
	    -RAFT_EINVAL);
	ck_assert_int_eq(raft_conf(r)->n, 4);

	/* remove the leader itself: it steps down once that commits */
	ck_assert_int_eq(raft_propose_conf_change(r, RAFT_CONF_REMOVE, l, &idx),
			 0);
	run(s, 1000);
	ck_assert_int_ne(raft_role(r), RAFT_LEADER);
	raft_sim_crash(s, l);
	{
		uint64_t l2 = elect(s);

		ck_assert_uint_ne(l2, l);
		ck_assert(
		    !raft_conf_is_member(raft_conf(raft_sim_node(s, l2)), l));
		ck_assert_uint_eq(
		    raft_conf_voters(raft_conf(raft_sim_node(s, l2))), 3);
		idx = put(s, l2, "three");
		wait_applied(s, l2, idx);
	}
	raft_sim_free(s);
}
END_TEST

/* ---- leadership transfer
 * ------------------------------------------------------ */

static bool leader_is(struct raft_sim *s, void *arg)
{
	return raft_sim_stable_leader(s) == *(uint64_t *)arg;
}

START_TEST(leadership_transfers_to_the_chosen_voter)
{
	struct raft_sim *s = mk(3, 18);
	uint64_t l = elect(s), target = l == 3 ? 1 : l + 1, term, idx;
	struct raft *r = raft_sim_node(s, l);

	idx = put(s, l, "before");
	wait_applied(s, l, idx);
	term = raft_term(r);
	ck_assert_int_eq(raft_transfer_leader(r, 99), -RAFT_ENOTMEMBER);
	ck_assert_int_eq(raft_transfer_leader(r, target), 0);
	ck_assert_int_eq(raft_propose(r, "x", 1, NULL), -RAFT_ETRANSFER);
	ck_assert_int_eq(raft_sim_run_until(s, leader_is, &target, 2000), 1);
	ck_assert_uint_eq(raft_term(raft_sim_node(s, target)), term + 1);
	ck_assert_uint_ge(raft_sim_delivered(s, RAFT_MSG_TIMEOUT_NOW), 1);
	idx = put(s, target, "after");
	wait_applied(s, target, idx);
	raft_sim_free(s);
}
END_TEST

START_TEST(transfer_to_a_lagging_voter_catches_it_up_first)
{
	struct raft_sim *s = mk(3, 21);
	uint64_t l = elect_and_settle(s), target = l == 3 ? 1 : l + 1, idx = 0;
	struct raft *r = raft_sim_node(s, l);
	char buf[16];

	raft_sim_crash(s, target);
	for (int i = 0; i < 10; i++) {
		snprintf(buf, sizeof(buf), "v%d", i);
		idx = put(s, l, buf);
	}
	run(s, 100);
	ck_assert_int_eq(raft_sim_restart(s, target), 0);
	ck_assert_uint_lt(raft_match_index(r, target), idx);
	ck_assert_int_eq(raft_transfer_leader(r, target), 0);
	ck_assert_int_eq(raft_sim_run_until(s, leader_is, &target, 2000), 1);
	/* it could only win with every entry the old leader had */
	ck_assert_uint_ge(raft_last_index(raft_sim_node(s, target)), idx);
	ck_assert(raft_sim_committed_is(s, idx, "v9", 2));
	raft_sim_free(s);
}
END_TEST

START_TEST(transfer_to_a_dead_voter_is_abandoned)
{
	struct raft_sim *s = mk(3, 22);
	uint64_t l = elect_and_settle(s), target = l == 3 ? 1 : l + 1, term;
	struct raft *r = raft_sim_node(s, l);

	term = raft_term(r);
	raft_sim_crash(s, target);
	ck_assert_int_eq(raft_transfer_leader(r, target), 0);
	ck_assert_int_eq(raft_propose(r, "x", 1, NULL), -RAFT_ETRANSFER);
	run(s, 300); /* more than an election timeout */
	ck_assert_int_eq(raft_role(r), RAFT_LEADER);
	ck_assert_uint_eq(raft_term(r), term);
	wait_applied_alive(s, l, put(s, l, "after"));
	raft_sim_free(s);
}
END_TEST

START_TEST(removed_server_does_not_disrupt_with_pre_vote_and_check_quorum)
{
	struct raft_sim *s = mk(3, 23);
	uint64_t l = elect_and_settle(s), gone = l == 3 ? 1 : l + 1, idx, term;
	struct raft *r = raft_sim_node(s, l);

	/* gone never hears of its removal */
	raft_sim_isolate(s, gone);
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_REMOVE, gone, &idx), 0);
	run(s, 500);
	ck_assert_uint_ge(raft_commit_index(r), idx);
	ck_assert(raft_conf_is_voter(raft_conf(raft_sim_node(s, gone)), gone));
	term = raft_term(r);
	raft_sim_heal(s);
	{
		uint64_t asked = raft_sim_delivered(s, RAFT_MSG_PREVOTE);

		run(s, 2000); /* it keeps timing out and asking for votes */
		ck_assert_uint_gt(raft_sim_delivered(s, RAFT_MSG_PREVOTE),
				  asked);
	}
	ck_assert_int_eq(raft_role(r), RAFT_LEADER);
	ck_assert_uint_eq(raft_term(r), term);
	ck_assert_int_ne(raft_role(raft_sim_node(s, gone)), RAFT_LEADER);
	raft_sim_free(s);
}
END_TEST

/* ---- learners
 * -------------------------------------------------------------------- */

START_TEST(learner_catches_up_before_promotion)
{
	struct raft_sim *s = mk(3, 19);
	uint64_t l = elect_and_settle(s), idx = 0;
	struct raft *r = raft_sim_node(s, l);
	char buf[16];

	ck_assert_int_eq(raft_sim_add_node(s, 4), 0);
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_ADD_LEARNER, 4, &idx), 0);
	wait_applied(s, l, idx);
	ck_assert(raft_conf_is_member(raft_conf(r), 4));
	ck_assert(!raft_conf_is_voter(raft_conf(r), 4));
	ck_assert_uint_eq(raft_conf_voters(raft_conf(r)), 3);
	/* a learner never campaigns, even when cut off */
	raft_sim_isolate(s, 4);
	for (int i = 0; i < 20; i++) {
		snprintf(buf, sizeof(buf), "w%d", i);
		idx = put(s, l, buf);
	}
	run(s, 2000);
	ck_assert_int_eq(raft_role(raft_sim_node(s, 4)), RAFT_FOLLOWER);
	ck_assert_uint_eq(raft_term(raft_sim_node(s, 4)), raft_term(r));
	/* commits proceed without it; it is not caught up yet */
	ck_assert_uint_ge(raft_commit_index(r), idx);
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_PROMOTE, 4, NULL),
	    -RAFT_ENOTCAUGHTUP);
	raft_sim_heal(s);
	wait_applied(s, l, idx);
	run(s, 100); /* its acknowledgements reach the leader */
	ck_assert_uint_ge(raft_match_index(r, 4), idx);
	ck_assert_int_eq(
	    raft_propose_conf_change(r, RAFT_CONF_PROMOTE, 4, &idx), 0);
	wait_applied(s, l, idx);
	ck_assert(raft_conf_is_voter(raft_conf(r), 4));
	ck_assert(raft_conf_is_voter(raft_conf(raft_sim_node(s, 4)), 4));
	ck_assert_uint_eq(raft_conf_voters(raft_conf(r)), 4);
	raft_sim_free(s);
}
END_TEST

/* ---- redirects
 * ------------------------------------------------------------------ */

START_TEST(followers_name_the_leader_for_redirects)
{
	struct raft_sim *s = mk(3, 20);
	uint64_t l = elect(s);

	for (uint64_t id = 1; id <= 3; id++) {
		struct raft *r = raft_sim_node(s, id);

		ck_assert_uint_eq(raft_leader(r), l);
		if (id != l)
			ck_assert_int_eq(raft_propose(r, "x", 1, NULL),
					 -RAFT_ENOTLEADER);
	}
	raft_sim_free(s);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    figure7_divergent_logs_are_reconciled,
	    figure8_old_term_entry_is_not_committed_by_counting,
	    leader_crash_after_commit_keeps_the_entry,
	    leader_crash_before_commit_loses_only_uncommitted_entry,
	    split_votes_are_resolved_by_a_later_election,
	    pre_vote_lets_a_partitioned_node_rejoin_without_disruption,
	    check_quorum_makes_a_minority_leader_step_down,
	    without_check_quorum_a_minority_leader_stays,
	    lagging_follower_receives_a_snapshot,
	    members_are_added_and_removed_one_at_a_time,
	    leadership_transfers_to_the_chosen_voter,
	    transfer_to_a_lagging_voter_catches_it_up_first,
	    transfer_to_a_dead_voter_is_abandoned,
	    removed_server_does_not_disrupt_with_pre_vote_and_check_quorum,
	    learner_catches_up_before_promotion,
	    followers_name_the_leader_for_redirects,
	    NULL,
	};

	return suite_main("raft_scenarios", 60, tests);
}
