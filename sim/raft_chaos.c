/*
 * raft_chaos.c - one randomized Raft safety run: a seeded fault schedule
 * (crashes, restarts, partitions, loss, duplication, membership changes,
 * leadership transfers, client proposals) on the deterministic harness,
 * then healing and a liveness check.
 *
 * Design notes:
 *   - The seed picks the cluster shape and fault rates too (3 or 5 voters,
 *     pre-vote and check-quorum mostly on, latency, loss, batch sizes,
 *     compaction interval), so many seeds cover many configurations.
 *   - A removed member is shut down (as an operator would) and is only
 *     restarted at healing if the removal never committed.  Node ids are
 *     never reused: a wiped node coming back under an old id would be a
 *     voter that lost its disk in the eyes of nodes with stale
 *     configurations, which Raft does not survive (nor claims to).
 *   - Liveness after healing: every crashed member restarts, the network
 *     is perfect again; after one second to settle, within 60 simulated
 *     seconds a stable leader must commit an entry of its term, and the
 *     five proposals it then accepts must all commit and be applied by
 *     every member.
 */
#include "sim/raft_sim.h"

#include <stdio.h>
#include <string.h>

#define MAX_ID RAFT_SIM_MAX_NODES

struct chaos {
	struct raft_sim *s;
	bool retired[MAX_ID + 1];
	uint64_t
	    next_new; /* ids are never reused: a fresh node gets a new one */
	uint64_t counter;
};

static uint64_t pick_alive(struct chaos *c, bool alive)
{
	uint64_t ids[MAX_ID];
	unsigned n = 0;

	for (uint64_t id = 1; id <= MAX_ID; id++) {
		if (c->retired[id])
			continue;
		if (raft_sim_exists(c->s, id) &&
		    raft_sim_is_alive(c->s, id) == alive)
			ids[n++] = id;
	}
	if (n == 0)
		return 0;
	return ids[raft_sim_rand(c->s) % n];
}

static void conf_change(struct chaos *c)
{
	uint64_t l = raft_sim_leader(c->s), id;
	struct raft *r;
	const struct raft_conf *conf;
	unsigned voters, op = (unsigned)(raft_sim_rand(c->s) % 4);
	int rc;

	if (l == 0)
		return;
	r = raft_sim_node(c->s, l);
	conf = raft_conf(r);
	voters = raft_conf_voters(conf);
	id = 1 + raft_sim_rand(c->s) % MAX_ID;
	switch (op) {
	case 0: /* add a learner */
	case 3: /* add a voter directly */
		id = c->next_new;
		if (id > MAX_ID || (op == 3 && voters >= 5))
			return;
		rc = raft_propose_conf_change(
		    r, op == 0 ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER,
		    id, NULL);
		raft_sim_tracef(
		    c->s, "n%llu: add %s n%llu: %s", (unsigned long long)l,
		    op == 0 ? "learner" : "voter", (unsigned long long)id,
		    rc ? raft_strerror(rc) : "proposed");
		if (rc == 0) {
			c->next_new++;
			raft_sim_add_node(c->s, id);
		}
		break;
	case 1: /* promote */
		if (!raft_conf_is_member(conf, id) ||
		    raft_conf_is_voter(conf, id) || voters >= 5)
			return;
		rc = raft_propose_conf_change(r, RAFT_CONF_PROMOTE, id, NULL);
		raft_sim_tracef(c->s, "n%llu: promote n%llu: %s",
				(unsigned long long)l, (unsigned long long)id,
				rc ? raft_strerror(rc) : "proposed");
		break;
	case 2: /* remove */
		if (!raft_conf_is_member(conf, id) ||
		    (raft_conf_is_voter(conf, id) && voters <= 3))
			return;
		rc = raft_propose_conf_change(r, RAFT_CONF_REMOVE, id, NULL);
		raft_sim_tracef(c->s, "n%llu: remove n%llu: %s",
				(unsigned long long)l, (unsigned long long)id,
				rc ? raft_strerror(rc) : "proposed");
		if (rc == 0) {
			c->retired[id] = true;
			raft_sim_crash(c->s, id);
		}
		break;
	}
}

static void propose(struct chaos *c)
{
	uint64_t ids[MAX_ID];
	unsigned n = 0;
	char buf[32];

	for (uint64_t id = 1; id <= MAX_ID; id++) {
		struct raft *r = raft_sim_node(c->s, id);

		if (r != NULL && raft_role(r) == RAFT_LEADER)
			ids[n++] = id;
	}
	if (n == 0)
		return;
	snprintf(buf, sizeof(buf), "v%llu", (unsigned long long)++c->counter);
	(void)raft_sim_propose(c->s, ids[raft_sim_rand(c->s) % n], buf,
			       strlen(buf), NULL);
}

static void fault(struct chaos *c)
{
	unsigned a = (unsigned)(raft_sim_rand(c->s) % 1000);
	uint64_t id;

	if (a < 2) {
		if ((id = pick_alive(c, true)) != 0)
			raft_sim_crash(c->s, id);
	} else if (a < 6) {
		if ((id = pick_alive(c, false)) != 0)
			raft_sim_restart(c->s, id);
	} else if (a < 8) {
		raft_sim_partition(c->s,
				   (uint32_t)(raft_sim_rand(c->s) & 0xfe));
	} else if (a < 10) {
		raft_sim_partition(c->s, 0);
	} else if (a < 11) {
		raft_sim_set_faults(c->s, (unsigned)(raft_sim_rand(c->s) % 150),
				    (unsigned)(raft_sim_rand(c->s) % 60));
	} else if (a < 80) {
		propose(c);
	} else if (a < 82) {
		conf_change(c);
	} else if (a < 83) {
		uint64_t l = raft_sim_leader(c->s);

		id = 1 + raft_sim_rand(c->s) % MAX_ID;
		if (l != 0) {
			int rc =
			    raft_transfer_leader(raft_sim_node(c->s, l), id);

			raft_sim_tracef(
			    c->s, "n%llu: transfer leadership to n%llu: %s",
			    (unsigned long long)l, (unsigned long long)id,
			    rc ? raft_strerror(rc) : "started");
		}
	}
}

static int fail(char *msg, size_t len, uint64_t seed, const char *what,
		struct raft_sim *s)
{
	snprintf(msg, len, "seed %llu at %llums: %s", (unsigned long long)seed,
		 (unsigned long long)raft_sim_now(s), what);
	return -1;
}

struct applied_ctx {
	uint64_t leader, index;
};

/* Done: every member applied index.  Or give up: the leader changed. */
static bool applied_or_deposed(struct raft_sim *s, void *arg)
{
	struct applied_ctx *a = arg;
	struct raft *r = raft_sim_node(s, a->leader);

	if (r == NULL || raft_role(r) != RAFT_LEADER)
		return true;
	return raft_sim_all_applied(s, a->leader, a->index);
}

/* A stable leader that has committed an entry of its own term. */
static bool settled(struct raft_sim *s, void *arg)
{
	uint64_t l = raft_sim_stable_leader(s);
	struct raft *r;

	(void)arg;
	if (l == 0)
		return false;
	r = raft_sim_node(s, l);
	return raft_log_term(r, raft_commit_index(r)) == raft_term(r);
}

/* The config of the most up-to-date live log: what any future leader's
 * configuration starts from (it holds every committed entry). */
static const struct raft_conf *freshest_conf(struct raft_sim *s)
{
	struct raft *best = NULL;

	for (uint64_t id = 1; id <= MAX_ID; id++) {
		struct raft *r = raft_sim_node(s, id);
		uint64_t lt, bt;

		if (r == NULL)
			continue;
		if (best == NULL) {
			best = r;
			continue;
		}
		lt = raft_log_term(r, raft_last_index(r));
		bt = raft_log_term(best, raft_last_index(best));
		if (lt > bt ||
		    (lt == bt && raft_last_index(r) > raft_last_index(best)))
			best = r;
	}
	return best ? raft_conf(best) : NULL;
}

/*
 * Liveness after healing: one second after the heal, and then within 60
 * simulated seconds, a stable leader
 * commits an entry of its own term, and the five proposals it then accepts
 * all commit and are applied by every member.  A proposal the leader
 * refuses (a transfer still under way) is offered again; one it accepted
 * and that is then lost is a failure.  Whether it was lost is decided, not
 * guessed: once a later leader has committed an entry of its own term,
 * every index below that entry is final.
 */
static int heal_and_check(struct chaos *c, uint64_t seed, char *msg, size_t len)
{
	struct raft_sim *s = c->s;
	uint64_t idx[5] = {0}, deadline, l = 0, last = 0;
	char data[5][32];
	const struct raft_conf *fc;
	int rc, rounds = 0;

	raft_sim_tracef(s, "---- healing ----");
	raft_sim_heal(s);
	for (uint64_t id = 1; id <= MAX_ID; id++)
		if (!c->retired[id] && !raft_sim_is_alive(s, id))
			raft_sim_restart(s, id);
	/* a removal that did not commit: its node is still a member */
	fc = freshest_conf(s);
	for (unsigned i = 0; fc != NULL && i < fc->n; i++)
		if (!raft_sim_is_alive(s, fc->members[i].id))
			raft_sim_restart(s, fc->members[i].id);
	for (int k = 0; k < 5; k++)
		snprintf(data[k], sizeof(data[k]), "live%d", k);
	/* Let the dust settle for a second: a node cut off before the heal
	 * may already have timed out, and without pre-vote its higher term
	 * legitimately deposes the leader when it rejoins (thesis 9.6). */
	if (raft_sim_run_for(s, 1000) != 0)
		return fail(msg, len, seed, raft_sim_violation(s), s);
	deadline = raft_sim_now(s) + 60000;
	for (;;) {
		bool all = true;
		struct applied_ctx a;

		if (raft_sim_now(s) >= deadline)
			return fail(msg, len, seed,
				    "proposals made after healing "
				    "did not all commit within "
				    "60s",
				    s);
		rc = raft_sim_run_until(s, settled, NULL,
					deadline - raft_sim_now(s));
		if (rc < 0)
			return fail(msg, len, seed, raft_sim_violation(s), s);
		if (rc == 0)
			return fail(
			    msg, len, seed,
			    rounds == 0
				? "no stable leader after healing"
				: "no stable leader after a leader change "
				  "following healing",
			    s);
		l = raft_sim_stable_leader(s);
		rounds++;
		last = 0;
		/* a member whose removal never committed comes back */
		{
			const struct raft_conf *lc =
			    raft_conf(raft_sim_node(s, l));
			bool restarted = false;

			for (unsigned i = 0; i < lc->n; i++)
				if (!raft_sim_is_alive(s, lc->members[i].id) &&
				    raft_sim_restart(s, lc->members[i].id) ==
					0) {
					c->retired[lc->members[i].id] = false;
					restarted = true;
				}
			if (restarted)
				continue;
		}
		/* the operator shuts down servers that are no longer members
		 * (thesis 4.2.3: a removed server that still thinks it is a
		 * voter disrupts a cluster without pre-vote/check-quorum) */
		for (uint64_t id = 1; id <= MAX_ID; id++) {
			if (!raft_sim_is_alive(s, id) ||
			    raft_conf_is_member(raft_conf(raft_sim_node(s, l)),
						id))
				continue;
			raft_sim_tracef(s, "n%llu is not a member: shut down",
					(unsigned long long)id);
			raft_sim_crash(s, id);
			c->retired[id] = true;
		}
		for (int k = 0; k < 5; k++) {
			if (idx[k] != 0 &&
			    raft_sim_committed_is(s, idx[k], data[k],
						  strlen(data[k])))
				continue;
			all = false;
			if (idx[k] != 0) {
				/* accepted by a settled leader of a healed
				 * cluster, then lost: a liveness failure */
				return fail(msg, len, seed,
					    "a proposal made after healing was "
					    "lost to a leader change",
					    s);
			}
			rc = raft_sim_propose(s, l, data[k], strlen(data[k]),
					      &idx[k]);
			if (rc != 0)
				idx[k] = 0;
			else if (idx[k] > last)
				last = idx[k];
		}
		if (all) {
			for (int k = 0; k < 5; k++)
				if (idx[k] > last)
					last = idx[k];
			break;
		}
		/* always let time pass: a refused proposal (transfer under
		 * way) must not spin without simulated time moving */
		if (raft_sim_run_for(s, 20) != 0)
			return fail(msg, len, seed, raft_sim_violation(s), s);
		a.leader = l;
		a.index = last;
		rc = raft_sim_run_until(s, applied_or_deposed, &a,
					deadline - raft_sim_now(s));
		if (rc < 0)
			return fail(msg, len, seed, raft_sim_violation(s), s);
	}
	{
		struct applied_ctx a = {l, last};

		rc = raft_sim_run_until(s, applied_or_deposed, &a,
					deadline - raft_sim_now(s));
		if (rc < 0)
			return fail(msg, len, seed, raft_sim_violation(s), s);
		if (!raft_sim_all_applied(s, l, last))
			return fail(msg, len, seed,
				    "committed proposals were "
				    "not applied by every member",
				    s);
	}
	return 0;
}

int raft_sim_random_run(uint64_t seed, unsigned steps, unsigned flags,
			FILE *trace, char *msg, size_t msglen)
{
	struct raft_sim_options o = {0};
	struct chaos c;
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
	int rc = 0;

	x ^= x >> 29;
	o.seed = seed;
	o.n_nodes = (x % 3 == 0) ? 5 : 3;
	o.pre_vote = (x >> 4) % 5 != 0;
	o.check_quorum = (x >> 8) % 5 != 0;
	o.latency_min_ms = 1;
	o.latency_max_ms = 2 + (unsigned)((x >> 12) % 20);
	o.loss_pm = (unsigned)((x >> 17) % 100);
	o.dup_pm = (unsigned)((x >> 24) % 50);
	o.disk_delay_max_ms = (unsigned)((x >> 30) % 4);
	o.crash_in_ready_pm = (unsigned)((x >> 33) % 3);
	o.compact_every = 5 + (unsigned)((x >> 36) % 30);
	o.max_inflight = 1 + (unsigned)((x >> 42) % 8);
	o.max_batch_entries = 1 + (unsigned)((x >> 46) % 8);
	o.trace = trace;
	if (flags & RAFT_SIM_RUN_UNSAFE) {
		o.unsafe_send_before_persist = true;
		o.crash_in_ready_pm = 50;
	}
	memset(&c, 0, sizeof(c));
	c.next_new = o.n_nodes + 1;
	c.s = raft_sim_new(&o);
	if (c.s == NULL) {
		snprintf(msg, msglen, "seed %llu: out of memory",
			 (unsigned long long)seed);
		return -1;
	}
	for (unsigned i = 0; i < steps; i++) {
		fault(&c);
		if (raft_sim_step(c.s) != 0) {
			rc = fail(msg, msglen, seed, raft_sim_violation(c.s),
				  c.s);
			goto out;
		}
	}
	rc = heal_and_check(&c, seed, msg, msglen);
out:
	raft_sim_free(c.s);
	return rc;
}
