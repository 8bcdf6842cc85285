/*
 * raft_sim.h - a deterministic cluster harness for the Raft core: real
 * raft/ cores on a simulated clock, an in-memory network (latency, loss,
 * duplication, reordering, partitions) and per-node disks that lose whatever
 * was not persisted when a node crashes.
 *
 * Everything is driven by one seeded PRNG owned by the harness, so a seed
 * replays exactly.  After every step the harness checks the Raft safety
 * properties (paper Figure 3): election safety, log matching, leader
 * completeness and state machine safety; the first violation stops the run
 * and is described by raft_sim_violation().
 *
 * Ownership: the harness owns its nodes, their cores and every message in
 * flight.  raft_sim_node() returns a borrowed pointer valid until the node
 * crashes or the harness is freed.
 */
#ifndef DECREE_SIM_RAFT_SIM_H
#define DECREE_SIM_RAFT_SIM_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define RAFT_SIM_MAX_NODES 16

struct raft_sim_options {
	unsigned n_nodes; /* initial voters, ids 1..n_nodes */
	uint64_t seed;
	unsigned election_tick;	 /* default 10 */
	unsigned heartbeat_tick; /* default 2 */
	unsigned tick_ms;	 /* simulated ms per tick, default 10 */
	unsigned latency_min_ms, latency_max_ms; /* default 1..5 */
	unsigned loss_pm, dup_pm;   /* per mille of messages lost/duplicated */
	unsigned disk_delay_max_ms; /* ready processed 0..this ms later */
	unsigned
	    crash_in_ready_pm; /* per mille: crash after persist, before send */
	unsigned compact_every; /* compact when this many applied; 0 never */
	bool pre_vote, check_quorum;
	unsigned max_inflight, max_batch_entries;
	bool no_autostart; /* create the nodes' disks but do not start them */
	/* A deliberately broken caller, to show the checkers catch it: send
	 * each ready's messages BEFORE persisting it (and crash in between). */
	bool unsafe_send_before_persist;
	FILE *trace; /* readable trace, or NULL */
};

struct raft_sim;

/* Returns NULL when out of memory. */
struct raft_sim *raft_sim_new(const struct raft_sim_options *opt);
void raft_sim_free(struct raft_sim *s);

/* Draws from the harness's PRNG (for fault schedules driven by a seed). */
uint64_t raft_sim_rand(struct raft_sim *s);
/* Simulated time in ms. */
uint64_t raft_sim_now(const struct raft_sim *s);
/* Processes the next event; returns 0, or -1 after a safety violation. */
int raft_sim_step(struct raft_sim *s);
/* Runs for ms of simulated time; 0 or -1 (violation). */
int raft_sim_run_for(struct raft_sim *s, uint64_t ms);
/* Runs until pred is true (checked after each step) or ms pass.
 * Returns 1 when pred became true, 0 on timeout, -1 on a violation. */
int raft_sim_run_until(struct raft_sim *s,
		       bool (*pred)(struct raft_sim *, void *), void *ctx,
		       uint64_t ms);
const char *raft_sim_violation(const struct raft_sim *s);
void raft_sim_tracef(struct raft_sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Nodes. */
struct raft *raft_sim_node(struct raft_sim *s, uint64_t id); /* NULL if down */
bool raft_sim_is_alive(const struct raft_sim *s, uint64_t id);
bool raft_sim_exists(const struct raft_sim *s, uint64_t id); /* has a disk */
void raft_sim_crash(struct raft_sim *s, uint64_t id);
int raft_sim_restart(struct raft_sim *s, uint64_t id);
/* Creates and starts a new empty node (no configuration) with id. */
int raft_sim_add_node(struct raft_sim *s, uint64_t id);
/*
 * Replaces a crashed (or never started) node's disk by the given log and
 * hard state; terms[i] is the term of entry i+1, data "t<term>i<index>".
 */
int raft_sim_set_disk(struct raft_sim *s, uint64_t id, const uint64_t *terms,
		      size_t n, uint64_t term, uint64_t vote);
/* Application state of a node: how many entries it applied. */
uint64_t raft_sim_applied(const struct raft_sim *s, uint64_t id);

/* Network. */
void raft_sim_cut(struct raft_sim *s, uint64_t from, uint64_t to, bool cut);
void raft_sim_isolate(struct raft_sim *s, uint64_t id);
/* Splits the nodes: those in mask (bit id) against all others. */
void raft_sim_partition(struct raft_sim *s, uint32_t mask);
void raft_sim_heal(struct raft_sim *s); /* no cuts, loss, dups, crashes */
void raft_sim_set_faults(struct raft_sim *s, unsigned loss_pm, unsigned dup_pm);
/* Drops every message for which fn returns true (NULL removes it). */
void raft_sim_set_filter(struct raft_sim *s,
			 bool (*fn)(void *ctx, const struct raft_msg *m),
			 void *ctx);
/* Messages delivered so far, by type (index RAFT_MSG_*). */
uint64_t raft_sim_delivered(const struct raft_sim *s, int type);

/* Client side. */
int raft_sim_propose(struct raft_sim *s, uint64_t id, const void *data,
		     size_t len, uint64_t *index);
/* The leader of the highest term among live nodes, 0 if none. */
uint64_t raft_sim_leader(const struct raft_sim *s);
/*
 * A stable leader: alive, and every live member of its configuration is at
 * its term and names it as leader.
 */
uint64_t raft_sim_stable_leader(const struct raft_sim *s);
/* Waits for a stable leader; returns its id or 0 (timeout/violation). */
uint64_t raft_sim_wait_leader(struct raft_sim *s, uint64_t ms);
/* True when every live member of id's configuration applied index. */
bool raft_sim_all_applied(struct raft_sim *s, uint64_t id, uint64_t index);
/* Whether the checker recorded index as committed (and its term). */
bool raft_sim_committed(const struct raft_sim *s, uint64_t index,
			uint64_t *term);
/* Whether the entry committed at index is a normal entry holding data. */
bool raft_sim_committed_is(const struct raft_sim *s, uint64_t index,
			   const void *data, size_t len);

/*
 * One randomized safety run (used by the tests and by soak runs): faults
 * for `steps` steps (crashes, restarts, partitions, loss, duplication,
 * membership changes, transfers), then heal and check liveness.  Returns 0
 * or -1 with the reason in msg (msglen bytes).
 */
#define RAFT_SIM_RUN_UNSAFE 1u /* unsafe_send_before_persist, more crashes */
int raft_sim_random_run(uint64_t seed, unsigned steps, unsigned flags,
			FILE *trace, char *msg, size_t msglen);

#endif
