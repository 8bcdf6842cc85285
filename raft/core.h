/*
 * core.h - private to raft/: the node structure shared by the core's files
 * (log.c, conf.c, node.c, replicate.c, ready.c).
 */
#ifndef DECREE_RAFT_CORE_H
#define DECREE_RAFT_CORE_H

#include "raft/raft.h"

#define RAFT_MAX_INFLIGHT 256

enum progress_state { PR_PROBE, PR_REPLICATE, PR_SNAPSHOT };

/* The leader's view of one member (Raft paper, Figure 2: nextIndex etc.). */
struct raft_progress {
	uint64_t id;
	uint64_t match, next;
	enum progress_state state;
	bool probe_sent;    /* PROBE: one append out, wait for an answer */
	bool recent_active; /* heard from since the last check-quorum round */
	uint64_t pending_snapshot;
	unsigned snapshot_elapsed;
	/* REPLICATE: ring of the last index of each append in flight */
	unsigned inflight_start, inflight_count;
	uint64_t inflight[RAFT_MAX_INFLIGHT];
};

/* In-memory log: the snapshot's position plus entries after it. */
struct raft_log {
	struct raft_snapshot snap; /* owns snap.data */
	bool snap_unstable;	   /* received, not yet persisted */
	struct raft_entry *e;	   /* e[0] has index snap.index + 1 */
	size_t n, cap;
	uint64_t stable; /* entries <= stable are persisted */
	uint64_t commit;
	uint64_t applied;
};

struct raft {
	struct raft_options opt;
	uint64_t id;

	/* persistent */
	uint64_t term, vote;
	struct raft_log log;
	struct raft_hard_state persisted_hs;

	/* volatile */
	enum raft_role role;
	uint64_t lead;
	struct raft_conf conf;
	uint64_t conf_index; /* log index of the entry defining conf */
	unsigned election_elapsed, heartbeat_elapsed;
	unsigned randomized_timeout;
	uint64_t rng;

	/* candidate */
	unsigned n_votes;
	uint64_t vote_from[RAFT_MAX_MEMBERS];
	bool vote_granted[RAFT_MAX_MEMBERS];

	/* leader */
	struct raft_progress prs[RAFT_MAX_MEMBERS];
	unsigned n_prs;
	uint64_t term_start; /* index of this leader's no-op */
	uint64_t transferee;
	unsigned transfer_elapsed;

	/* outgoing messages, owned, freed on advance */
	struct raft_msg *msgs;
	size_t n_msgs, cap_msgs;

	/* ready bookkeeping */
	bool ready_out;
	uint64_t ready_last; /* last entry index handed out to persist */
	uint64_t ready_applied_to;
	bool ready_snap;
};

/* log.c */
uint64_t raft__last_index(const struct raft_log *l);
uint64_t raft__first_index(const struct raft_log *l);
/* 0 and *term set, or -RAFT_ECOMPACTED / -RAFT_EUNAVAILABLE */
int raft__term(const struct raft_log *l, uint64_t index, uint64_t *term);
uint64_t raft__term_or0(const struct raft_log *l, uint64_t index);
struct raft_entry *raft__entry(const struct raft_log *l, uint64_t index);
/* Copies the entry (data included) and appends it at last + 1. */
int raft__log_append(struct raft_log *l, uint64_t term, uint8_t type,
		     const void *data, size_t len);
/* Drops entries with index >= from. */
void raft__log_truncate(struct raft_log *l, uint64_t from);
/* Drops entries <= index, which becomes the snapshot's position. */
void raft__log_compact(struct raft_log *l, uint64_t index);
void raft__log_free(struct raft_log *l);
int raft__entry_copy(struct raft_entry *dst, const struct raft_entry *src);
void raft__entry_free(struct raft_entry *e);
/* Largest index <= index whose term <= term (etcd's findConflictByTerm). */
uint64_t raft__find_conflict_by_term(const struct raft_log *l, uint64_t index,
				     uint64_t term);
bool raft__is_up_to_date(const struct raft_log *l, uint64_t last,
			 uint64_t term);
int raft__snapshot_copy(struct raft_snapshot *dst,
			const struct raft_snapshot *src);

/* conf.c */
int raft__conf_recompute(struct raft *r);
void raft__progress_reset_all(struct raft *r);
struct raft_progress *raft__progress(struct raft *r, uint64_t id);

/* node.c */
int raft__send(struct raft *r, struct raft_msg *m); /* takes m's buffers */
void raft__become_follower(struct raft *r, uint64_t term, uint64_t lead);
void raft__msg_free(struct raft_msg *m);
uint64_t raft__quorum(const struct raft *r);

/* replicate.c */
int raft__send_append(struct raft *r, struct raft_progress *pr,
		      bool allow_empty);
int raft__bcast_append(struct raft *r);
int raft__bcast_heartbeat(struct raft *r);
bool raft__maybe_commit(struct raft *r);
int raft__handle_append(struct raft *r, const struct raft_msg *m);
int raft__handle_append_resp(struct raft *r, const struct raft_msg *m);
int raft__handle_heartbeat(struct raft *r, const struct raft_msg *m);
int raft__handle_heartbeat_resp(struct raft *r, const struct raft_msg *m);
int raft__handle_snapshot(struct raft *r, const struct raft_msg *m);
void raft__progress_become_probe(struct raft_progress *pr);
void raft__commit_to(struct raft *r, uint64_t index);
int raft__append_local(struct raft *r, uint8_t type, const void *data,
		       size_t len, uint64_t *index);

#endif
