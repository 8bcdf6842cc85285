/*
 * raft.h - the public header of raft/: an embedded Raft library whose core is
 * a pure state machine (DESIGN.md sections 3 and 5).
 *
 * The core does no I/O, reads no clock and draws no randomness of its own:
 * time comes in as raft_tick() calls, randomness from a seed the caller
 * passes in raft_options, messages come in through raft_step(), and every
 * effect goes out through the ready/advance cycle:
 *
 *   while (raft_has_ready(r)) {
 *       struct raft_ready rd;
 *       raft_ready(r, &rd);
 *       1. persist:  if rd.snapshot, replace the stored log by it;
 *                    if rd.n_entries, drop stored entries with index >=
 *                    rd.entries[0].index (suffix truncation), then append;
 *                    if rd.has_hard_state, store rd.hard_state;
 *                    and make all of it durable (fsync).
 *       2. send:     rd.msgs, ONLY after step 1 is durable: a vote or append
 *                    reply promises state that must survive a crash.
 *       3. apply:    rd.snapshot (restore the state machine) and then
 *                    rd.committed in order.
 *       raft_advance(r, &rd);
 *   }
 *
 * Between raft_ready() and raft_advance() no other call may change r (it
 * returns -RAFT_EBUSY); everything rd points to belongs to r and stays valid
 * until raft_advance().
 *
 * Restart: raft_new() takes exactly what was persisted (hard state, latest
 * snapshot and the entries after it).  A brand-new cluster starts from an
 * empty "snapshot" at index 0 whose configuration lists the first voters; a
 * node that will be added later starts with an empty configuration.
 *
 * Ownership: raft_step() and raft_propose() copy what they keep; the caller
 * keeps ownership of what it passes in.  Messages handed out by raft_ready()
 * are owned by r; a transport must copy or encode them before advance.
 */
#ifndef DECREE_RAFT_H
#define DECREE_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes (negative in returns) and their messages. */
#define RAFT_ERRORS(X)                                                         \
	X(RAFT_ENOMEM, 1, "out of memory")                                     \
	X(RAFT_EINVAL, 2, "invalid argument")                                  \
	X(RAFT_ENOTLEADER, 3, "not the leader")                                \
	X(RAFT_EBUSY, 4, "a ready batch is outstanding; call raft_advance")  \
	X(RAFT_ECONFPENDING, 5, "a configuration change is still in progress") \
	X(RAFT_ETRANSFER, 6, "leadership transfer in progress")                \
	X(RAFT_EPROTO, 7, "malformed or impossible message")                   \
	X(RAFT_ECOMPACTED, 8, "index already compacted")                       \
	X(RAFT_EUNAVAILABLE, 9, "index not in the log")                        \
	X(RAFT_ENOTCAUGHTUP, 10, "learner has not caught up yet")              \
	X(RAFT_ETOOMANY, 11, "too many members")                               \
	X(RAFT_ENOTMEMBER, 12, "no such member")

enum raft_error {
#define RAFT_ERR_ENUM(name, num, msg) name = num,
	RAFT_ERRORS(RAFT_ERR_ENUM)
#undef RAFT_ERR_ENUM
};

/* Text for a raft error code (positive or negative); "unknown error" else. */
const char *raft_strerror(int code);

#define RAFT_MAX_MEMBERS 16

enum raft_role { RAFT_FOLLOWER, RAFT_PRECANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };
const char *raft_role_name(enum raft_role role);

/* One member of a configuration.  id 0 is never a valid node id. */
struct raft_member {
	uint64_t id;
	bool learner; /* replicated to, but never votes or counts */
};

struct raft_conf {
	unsigned n;
	struct raft_member members[RAFT_MAX_MEMBERS];
};

/* Configuration helpers (pure). */
bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id);
bool raft_conf_is_member(const struct raft_conf *c, uint64_t id);
unsigned raft_conf_voters(const struct raft_conf *c);

/*
 * A configuration entry's data is the whole new configuration:
 *   [u8 version=1][u8 n] then n times [u64 id little endian][u8 learner 0|1]
 * Encode needs RAFT_CONF_ENCODED_MAX bytes at most and returns the length.
 */
#define RAFT_CONF_ENCODED_MAX (2 + 9 * RAFT_MAX_MEMBERS)
size_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf);
int raft_conf_decode(const void *buf, size_t len, struct raft_conf *out);

enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0, /* application data (may be empty: the no-op) */
	RAFT_ENTRY_CONF = 1,   /* data is an encoded struct raft_conf */
};

struct raft_entry {
	uint64_t term;
	uint64_t index;
	uint8_t type;
	size_t len;
	void *data; /* len bytes; NULL when len is 0 */
};

/* What must be durable before any message that depends on it is sent. */
struct raft_hard_state {
	uint64_t term;
	uint64_t vote;	 /* 0: none */
	uint64_t commit;
};

struct raft_snapshot {
	uint64_t index; /* last log index the snapshot covers */
	uint64_t term;	/* term of that entry */
	struct raft_conf conf; /* configuration as of index */
	size_t len;
	void *data; /* application state, opaque to raft */
};

enum raft_msg_type {
	RAFT_MSG_PREVOTE = 1,
	RAFT_MSG_PREVOTE_RESP,
	RAFT_MSG_VOTE,
	RAFT_MSG_VOTE_RESP,
	RAFT_MSG_APPEND,
	RAFT_MSG_APPEND_RESP,
	RAFT_MSG_HEARTBEAT,
	RAFT_MSG_HEARTBEAT_RESP,
	RAFT_MSG_SNAPSHOT,
	RAFT_MSG_TIMEOUT_NOW,
};
const char *raft_msg_type_name(int type);

/*
 * A message is plain data.  Field use by type:
 *   PREVOTE/VOTE:     index, log_term = candidate's last log index and term;
 *                     transfer = campaign started by TimeoutNow.
 *   *_RESP (votes):   reject.
 *   APPEND:           index, log_term = entry preceding entries; commit.
 *   APPEND_RESP:      index = last index now matching (accept) or the
 *                     rejected prev index; on reject, hint and hint_term say
 *                     where the follower's log may match (fast backtracking).
 *   HEARTBEAT:        commit.
 *   SNAPSHOT:         snapshot (answered with APPEND_RESP).
 */
struct raft_msg {
	uint8_t type;
	bool reject;
	bool transfer;
	uint64_t from, to, term;
	uint64_t index, log_term, commit;
	uint64_t hint, hint_term;
	size_t n_entries;
	struct raft_entry *entries;
	struct raft_snapshot snapshot;
};

struct raft_options {
	uint64_t id;		   /* this node, nonzero */
	unsigned election_tick;	   /* election timeout in ticks (>= 2*heartbeat) */
	unsigned heartbeat_tick;   /* leader heartbeat interval in ticks */
	uint64_t seed;		   /* seeds the election-timeout PRNG */
	bool pre_vote;		   /* campaign with a pre-vote round first */
	bool check_quorum;	   /* leader steps down without a live majority */
	unsigned max_inflight;	   /* appends in flight per follower (>= 1) */
	unsigned max_batch_entries; /* entries per append message (>= 1) */
	size_t max_batch_bytes;	   /* payload bytes per append (soft limit) */
};

/* What the caller persisted; all of it may be empty/zero for a new node. */
struct raft_persisted {
	struct raft_hard_state hard_state;
	const struct raft_snapshot *snapshot; /* NULL = index 0, no members */
	const struct raft_entry *entries;     /* snapshot->index+1 ... */
	size_t n_entries;
};

struct raft_ready {
	bool has_hard_state;
	struct raft_hard_state hard_state;
	const struct raft_snapshot *snapshot; /* received; persist + restore */
	const struct raft_entry *entries;     /* to persist */
	size_t n_entries;
	const struct raft_msg *msgs; /* to send after persisting */
	size_t n_msgs;
	const struct raft_entry *committed; /* to apply, in order */
	size_t n_committed;
};

struct raft;

/*
 * Creates a node from its options and persisted state.  Returns 0 and sets
 * *out, or -RAFT_EINVAL (bad options or inconsistent persisted state; the
 * message is written to err when err is non-NULL, errlen bytes at most) or
 * -RAFT_ENOMEM.
 */
int raft_new(const struct raft_options *opt, const struct raft_persisted *ps,
	     struct raft **out, char *err, size_t errlen);
void raft_free(struct raft *r);

/* Advances logical time by one tick. */
int raft_tick(struct raft *r);
/* Feeds one message addressed to this node; bad messages change nothing. */
int raft_step(struct raft *r, const struct raft_msg *m);
/*
 * Appends data as a new entry if this node is the leader; *index (may be
 * NULL) gets its log index.  -RAFT_ENOTLEADER: ask raft_leader() where to
 * redirect.  -RAFT_ETRANSFER while a leadership transfer runs.
 */
int raft_propose(struct raft *r, const void *data, size_t len,
		 uint64_t *index);

enum raft_conf_op {
	RAFT_CONF_ADD_VOTER,
	RAFT_CONF_ADD_LEARNER,
	RAFT_CONF_PROMOTE, /* learner -> voter, once it has caught up */
	RAFT_CONF_REMOVE,
};
/*
 * Proposes one single-server membership change.  Only one may be in flight:
 * -RAFT_ECONFPENDING until the previous one commits (and until this
 * leader's first entry of its term commits).  The new configuration takes
 * effect on every node as soon as the entry is in its log.
 */
int raft_propose_conf_change(struct raft *r, enum raft_conf_op op,
			     uint64_t id, uint64_t *index);
/* Starts leadership transfer to target (a voter); leader only. */
int raft_transfer_leader(struct raft *r, uint64_t target);
/* Starts an election now (skipping the timeout); no-op for non-voters. */
int raft_campaign(struct raft *r);

/*
 * Log compaction: the application has a snapshot of its state through index
 * (<= applied) and has stored it durably; raft keeps a copy of data to send
 * to lagging followers and forgets entries up to index.  The caller's
 * storage drops those entries too.
 */
int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len);

bool raft_has_ready(const struct raft *r);
int raft_ready(struct raft *r, struct raft_ready *rd);
int raft_advance(struct raft *r, const struct raft_ready *rd);

/* Inspection. */
uint64_t raft_id(const struct raft *r);
enum raft_role raft_role(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint64_t raft_vote(const struct raft *r);
uint64_t raft_leader(const struct raft *r); /* 0: unknown */
uint64_t raft_commit_index(const struct raft *r);
uint64_t raft_applied_index(const struct raft *r);
uint64_t raft_first_index(const struct raft *r); /* snapshot index + 1 */
uint64_t raft_last_index(const struct raft *r);
/* Term of entry index (or of the snapshot's last entry); 0 if unknown. */
uint64_t raft_log_term(const struct raft *r, uint64_t index);
/* The entry at index, or NULL if compacted or beyond the end. */
const struct raft_entry *raft_log_entry(const struct raft *r, uint64_t index);
const struct raft_conf *raft_conf(const struct raft *r);
const struct raft_snapshot *raft_snapshot(const struct raft *r);
/* Leader's view of a follower: match index, 0 when unknown. */
uint64_t raft_match_index(const struct raft *r, uint64_t id);

#endif
