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
 *     restarted at healing if the removal never committed.
 *   - Liveness after healing: every crashed member restarts, the network
 *     is perfect again; within 20 simulated seconds a stable leader must
 *     exist and five new proposals must be applied by every member.
 */
#include "sim/raft_sim.h"

#include <stdio.h>
#include <string.h>

#define MAX_ID 7

struct chaos {
	struct raft_sim *s;
	bool retired[MAX_ID + 1];
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
		if (raft_conf_is_member(conf, id) || (op == 3 && voters >= 5))
			return;
		if (raft_sim_add_node(c->s, id) != 0)
			return;
		c->retired[id] = false;
		rc = raft_propose_conf_change(r, op == 0 ? RAFT_CONF_ADD_LEARNER
							 : RAFT_CONF_ADD_VOTER,
					      id, NULL);
		raft_sim_tracef(c->s, "n%llu: add %s n%llu: %s",
				(unsigned long long)l, op == 0 ? "learner" : "voter",
				(unsigned long long)id,
				rc ? raft_strerror(rc) : "proposed");
		break;
	case 1: /* promote */
		if (!raft_conf_is_member(conf, id) || raft_conf_is_voter(conf, id) ||
		    voters >= 5)
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
		raft_sim_partition(c->s, (uint32_t)(raft_sim_rand(c->s) & 0xfe));
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
			int rc = raft_transfer_leader(raft_sim_node(c->s, l), id);

			raft_sim_tracef(c->s, "n%llu: transfer leadership to n%llu: %s",
					(unsigned long long)l,
					(unsigned long long)id,
					rc ? raft_strerror(rc) : "started");
		}
	}
}

static int fail(char *msg, size_t len, uint64_t seed, const char *what,
		struct raft_sim *s)
{
	snprintf(msg, len, "seed %llu at %llums: %s",
		 (unsigned long long)seed,
		 (unsigned long long)raft_sim_now(s), what);
	return -1;
}

struct applied_ctx {
	uint64_t leader, index;
};

static bool all_applied(struct raft_sim *s, void *arg)
{
	struct applied_ctx *a = arg;

	return raft_sim_all_applied(s, a->leader, a->index);
}

static int heal_and_check(struct chaos *c, uint64_t seed, char *msg,
			  size_t len)
{
	struct raft_sim *s = c->s;
	uint64_t idx[5], l;
	char data[5][32];
	struct applied_ctx a;
	int rc;

	raft_sim_tracef(s, "---- healing ----");
	raft_sim_heal(s);
	for (uint64_t id = 1; id <= MAX_ID; id++)
		if (!c->retired[id] && !raft_sim_is_alive(s, id))
			raft_sim_restart(s, id);
	/* a removal that may not have committed: bring its node back */
	for (uint64_t id = 1; id <= MAX_ID; id++) {
		struct raft *r = raft_sim_node(s, id);

		if (r == NULL)
			continue;
		for (unsigned i = 0; i < raft_conf(r)->n; i++) {
			uint64_t m = raft_conf(r)->members[i].id;

			if (!raft_sim_is_alive(s, m))
				raft_sim_restart(s, m);
		}
	}
	l = raft_sim_wait_leader(s, 20000);
	if (l == 0)
		return fail(msg, len, seed, raft_sim_violation(s) ?
			    raft_sim_violation(s) : "no stable leader 20s after "
						   "healing", s);
	{
		const struct raft_conf *conf = raft_conf(raft_sim_node(s, l));
		bool again = false;

		for (unsigned i = 0; i < conf->n; i++)
			if (!raft_sim_is_alive(s, conf->members[i].id)) {
				raft_sim_restart(s, conf->members[i].id);
				again = true;
			}
		if (again && (l = raft_sim_wait_leader(s, 20000)) == 0)
			return fail(msg, len, seed, "no stable leader after "
						    "restarting members", s);
	}
	for (int k = 0; k < 5; k++) {
		int tries;

		snprintf(data[k], sizeof(data[k]), "live%d", k);
		for (tries = 0; tries < 20; tries++) {
			rc = raft_sim_propose(s, l, data[k], strlen(data[k]), &idx[k]);
			if (rc == 0)
				break;
			if (raft_sim_run_for(s, 200) != 0)
				return fail(msg, len, seed, raft_sim_violation(s), s);
			l = raft_sim_wait_leader(s, 20000);
			if (l == 0)
				return fail(msg, len, seed, "leader lost after "
							    "healing", s);
		}
		if (tries == 20)
			return fail(msg, len, seed, "no leader accepts proposals "
						    "after healing", s);
	}
	a.leader = l;
	a.index = idx[4];
	rc = raft_sim_run_until(s, all_applied, &a, 20000);
	if (rc < 0)
		return fail(msg, len, seed, raft_sim_violation(s), s);
	if (rc == 0)
		return fail(msg, len, seed, "proposals made after healing were "
					    "not applied by every member "
					    "within 20s", s);
	for (int k = 0; k < 5; k++)
		if (!raft_sim_committed_is(s, idx[k], data[k], strlen(data[k])))
			return fail(msg, len, seed, "a proposal made after "
						    "healing was lost", s);
	return 0;
}

int raft_sim_random_run(uint64_t seed, unsigned steps, unsigned flags,
			FILE *trace, char *msg, size_t msglen)
{
	struct raft_sim_options o = { 0 };
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
	c.s = raft_sim_new(&o);
	if (c.s == NULL) {
		snprintf(msg, msglen, "seed %llu: out of memory",
			 (unsigned long long)seed);
		return -1;
	}
	for (unsigned i = 0; i < steps; i++) {
		fault(&c);
		if (raft_sim_step(c.s) != 0) {
			rc = fail(msg, msglen, seed, raft_sim_violation(c.s), c.s);
			goto out;
		}
	}
	rc = heal_and_check(&c, seed, msg, msglen);
out:
	raft_sim_free(c.s);
	return rc;
}
