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

/* ---- message codec (raft/codec.c; format in docs/wire.md) -------------- */

struct frame_buf; /* common/frame.h */

#define RAFT_MSG_CODEC_VERSION 1
#define RAFT_MSG_HEADER_SIZE   71	     /* fixed part of every message */
#define RAFT_MSG_MAX_ENTRIES   65536u /* entries in one encoded message */

/*
 * Bytes raft_msg_encode() appends for m, or 0 if m cannot be encoded: an
 * unknown type, entries on a message other than APPEND, more than
 * RAFT_MSG_MAX_ENTRIES entries, an unknown entry type, a length above
 * UINT32_MAX, data NULL with a nonzero length, or a snapshot
 * configuration with more than RAFT_MAX_MEMBERS members.
 */
size_t raft_msg_encoded_size(const struct raft_msg *m);
/*
 * Appends the encoding of m to out (growing it through common/mem.h).
 * Returns 0, -RAFT_EINVAL (see raft_msg_encoded_size()) or -RAFT_ENOMEM;
 * out is unchanged on error.  m is only read.
 */
int raft_msg_encode(const struct raft_msg *m, struct frame_buf *out);
/*
 * Decodes exactly len bytes into *out.  Returns 0, -RAFT_EPROTO for
 * anything truncated, oversized, trailing or malformed, -RAFT_ENOMEM, or
 * -RAFT_EINVAL for NULL arguments; *out is untouched on error.  On success
 * *out owns its entries and snapshot data (copies, nothing points into
 * buf): release them with raft_msg_free_decoded().
 */
int raft_msg_decode(const void *buf, size_t len, struct raft_msg *out);
/* Frees what raft_msg_decode() allocated in m; m may be NULL. */
void raft_msg_free_decoded(struct raft_msg *m);

/* ---- TCP transport on libuv (raft/transport.c) ------------------------- */

/*
 * One outgoing connection per peer carries this node's messages to it; the
 * peer's own messages come back on the connection it opens to us.  The
 * first frame on a connection is a hello naming both ends; every later
 * frame carries one encoded message.  A peer that cannot be reached is
 * retried with exponential backoff; messages for it wait in a bounded queue
 * and are dropped (and counted) when it is full: Raft tolerates loss.  A
 * bad frame closes the connection it arrived on and nothing else.
 *
 * Ownership: the transport owns itself and its connections; it is freed
 * right after the stop callback returns.  Messages given to
 * raft_transport_send() are encoded at once, so the caller may call
 * raft_advance() right after.  A message handed to on_message is valid
 * only during the call.  Callbacks may call any transport function,
 * raft_transport_stop() included.
 *
 * Errors: -RAFT_EINVAL, -RAFT_ENOMEM, -RAFT_ENOTMEMBER (no such peer),
 * -RAFT_EBUSY (stopping), or a negative errno from the socket layer (only
 * raft_transport_start(), e.g. -EADDRINUSE; net_strerror() has its text).
 */
#define RAFT_FRAME_HELLO 0x20 /* frame type: [u8 1][u64 from][u64 to] LE */
#define RAFT_FRAME_MSG	 0x21 /* frame type: one raft_msg_encode()d message */

#define RAFT_TRANSPORT_QUEUE_MSGS    1024u	/* per peer, default */
#define RAFT_TRANSPORT_QUEUE_BYTES   (8u << 20) /* per peer, default */
#define RAFT_TRANSPORT_BACKOFF_MIN   50u	/* ms, default */
#define RAFT_TRANSPORT_BACKOFF_MAX   2000u	/* ms, default */
#define RAFT_TRANSPORT_CONNECT_TIMEOUT 2000u	/* ms */
#define RAFT_TRANSPORT_MAX_INCOMING    64u	/* connections accepted */

struct uv_loop_s; /* uv_loop_t */
struct raft_transport;

/* A message from a peer; m->from is the peer that said hello. */
typedef void (*raft_transport_message_cb)(const struct raft_msg *m,
					  void *data);

struct raft_transport_stats {
	uint64_t sent;	     /* messages handed to a connection */
	uint64_t dropped;    /* messages lost: queue full or connection lost */
	uint64_t received;   /* messages delivered to on_message */
	uint64_t reconnects; /* connect attempts after a failure or a loss */
	uint64_t connects;   /* outgoing connections established */
	uint64_t bad_conns;  /* incoming connections closed for a bad frame */
	unsigned backoff_ms; /* a peer's next retry delay (0 in the totals) */
};

/*
 * Listens on listen_addr ("host:port"; port 0 picks a free one, see
 * raft_transport_port()) as node self_id (nonzero).  On failure nothing
 * is left on the loop and *out is untouched.
 */
int raft_transport_start(struct uv_loop_s *loop, uint64_t self_id,
			 const char *listen_addr,
			 raft_transport_message_cb on_message, void *data,
			 struct raft_transport **out);
/* The bound port. */
int raft_transport_port(const struct raft_transport *t);
/*
 * Limits: queue_msgs messages and queue_bytes bytes (encoded) waiting per
 * peer (0 keeps the current value); the byte limit also bounds the write
 * queue of an established connection.  Backoff from min_ms doubling up to
 * max_ms between connect attempts, back to min_ms once a connection that
 * lived max_ms or more is lost.  Both apply from the next send/attempt.
 */
int raft_transport_set_queue(struct raft_transport *t, unsigned queue_msgs,
			     size_t queue_bytes);
int raft_transport_set_backoff(struct raft_transport *t, unsigned min_ms,
			       unsigned max_ms);
/* Adds peer id at "host:port" and starts connecting to it. */
int raft_transport_add_peer(struct raft_transport *t, uint64_t id,
			    const char *addr);
/* Forgets peer id: its connection closes and queued messages are dropped. */
int raft_transport_remove_peer(struct raft_transport *t, uint64_t id);
/*
 * Encodes m and sends it to peer m->to (queued while not connected).
 * Returns 0 when queued or when dropped because the queue is full (counted
 * in the peer's dropped), -RAFT_ENOTMEMBER for an unknown peer, -RAFT_EINVAL
 * for a message that cannot be encoded or exceeds the frame limit.
 */
int raft_transport_send(struct raft_transport *t, const struct raft_msg *m);
/* Statistics of peer id (-RAFT_ENOTMEMBER), or of all peers with id 0. */
int raft_transport_stats(const struct raft_transport *t, uint64_t id,
			 struct raft_transport_stats *out);
/* True while an outgoing connection to peer id is established. */
bool raft_transport_is_connected(const struct raft_transport *t, uint64_t id);
/*
 * Closes the listener and every connection, drops what is queued, and calls
 * on_stopped(data) (may be NULL) once everything is closed; the transport
 * is freed when it returns.  No on_message call follows this call.
 * -RAFT_EBUSY if already stopping.
 */
int raft_transport_stop(struct raft_transport *t, void (*on_stopped)(void *data));

/* ----------------------------------------------------- storage on wal/ */

/*
 * Durable storage for one node (raft/storage.c; formats in docs/raft.md):
 * log entries and hard state are records of one wal/ log, snapshots are
 * files "raft-snap-<index as 16 hex digits>" with a magic, a version and a
 * CRC-32C.  It performs step 1 of the ready cycle:
 *
 *   raft_storage_save(st, &rd, cb, data);   cb(st, 0, data) once durable,
 *   then send rd.msgs, apply, raft_advance().
 *
 * Callbacks follow wal/: a function that takes a callback returns 0 and the
 * callback fires exactly once later (on the loop in threaded mode, from
 * wal_step()/raft_storage_step() in manual mode), or returns a negative code
 * and the callback never fires.  One save or compaction at a time
 * (-RAFT_STORAGE_EBUSY otherwise).  A failed write or sync is fatal
 * (DESIGN.md section 9): the operation reports the error and every later
 * save or compaction returns -RAFT_STORAGE_EFAILED; reopen to recover.
 * Snapshot files are written synchronously by the calling thread.
 *
 * Errors: the codes below, wal codes and -errno (-EINVAL for bad
 * arguments), all negative; raft_storage_strerror() names any of them.
 */
#define RAFT_STORAGE_ERRORS(X)                                                 \
	X(RAFT_STORAGE_ECORRUPT, 7201,                                         \
	  "stored raft state is corrupt or inconsistent")                      \
	X(RAFT_STORAGE_EFAILED, 7202,                                          \
	  "raft storage failed after a write or sync error; reopen it")        \
	X(RAFT_STORAGE_EBUSY, 7203, "a save or compaction is in progress")     \
	X(RAFT_STORAGE_ECLOSED, 7204, "raft storage is closing")             \
	X(RAFT_STORAGE_ECOMPACTED, 7205,                                       \
	  "index is at or below the stored snapshot")                          \
	X(RAFT_STORAGE_ERANGE, 7206, "index is not in the stored log")

enum raft_storage_error {
#define RAFT_STORAGE_ERR_ENUM(name, num, msg) name = num,
	RAFT_STORAGE_ERRORS(RAFT_STORAGE_ERR_ENUM)
#undef RAFT_STORAGE_ERR_ENUM
};

/* Text for any code a raft_storage_* function returns; never NULL. */
const char *raft_storage_strerror(int code);

struct raft_storage;
struct wal_config;
struct wal;

typedef void (*raft_storage_cb)(struct raft_storage *st, int status,
				void *data);

/*
 * Opens the log described by cfg (real files in cfg->dir or cfg->storage;
 * threaded when cfg->loop is set, else manual) and the snapshots (in
 * snapshot_dir, or next to the log when NULL), recovers them and fills *ps
 * with what was persisted: hard state, latest valid snapshot (NULL if none)
 * and the entries after it.  *ps points into st and stays valid until the
 * next save, compaction or close.  cfg->storage (if set) is the caller's
 * and must outlive st.  A snapshot that fails its check is
 * skipped for the previous one when the log still reaches back to it
 * (raft_storage_snapshots_rejected() counts them); otherwise
 * -RAFT_STORAGE_ECORRUPT.
 * On error the message goes to err (errlen bytes, may be NULL); in
 * threaded mode the memory is released on the loop.
 */
int raft_storage_open(const struct wal_config *cfg, const char *snapshot_dir,
		      struct raft_storage **out, struct raft_persisted *ps,
		      char *err, size_t errlen);

/*
 * Persists rd: its snapshot (if any, replacing the log), its entries (a
 * first index <= the last stored one replaces the stored suffix from
 * there) and its hard state; cb gets 0 once all of it is durable, or an
 * error.  rd may be freed once this returns.  A brand-new cluster persists
 * its boot snapshot (index 0, first voters) as rd.snapshot of a first save.
 * -EINVAL (entries not contiguous, a gap after the stored log, ...)
 * changes nothing.
 */
int raft_storage_save(struct raft_storage *st, const struct raft_ready *rd,
		      raft_storage_cb cb, void *cb_data);

/*
 * Stores a snapshot of the application state through index (a stored
 * entry above the current snapshot: else -RAFT_STORAGE_ECOMPACTED or
 * -RAFT_STORAGE_ERANGE) with len bytes of data, and drops log entries up to
 * the previous snapshot (the log keeps reaching back to it so that a
 * damaged newest snapshot can be replaced by the previous one and the
 * log).  Restart returns the new snapshot and the entries after it.  The
 * hard state survives: it is rewritten before a prefix cut that drops it.
 */
int raft_storage_compact(struct raft_storage *st, uint64_t index,
			 const void *data, size_t len, raft_storage_cb cb,
			 void *cb_data);

/* Manual mode: runs queued work (wal_step); returns how many completed. */
int raft_storage_step(struct raft_storage *st);
/* Requests queued and not yet completed. */
size_t raft_storage_pending(const struct raft_storage *st);
/* The underlying log (inspection only). */
struct wal *raft_storage_wal(struct raft_storage *st);
/* 0, or the error that failed the storage. */
int raft_storage_failed(const struct raft_storage *st);
/* Context for the last error or recovery notice ("" if none). */
const char *raft_storage_errmsg(const struct raft_storage *st);
/* Snapshot files skipped on open because they failed their check. */
unsigned raft_storage_snapshots_rejected(const struct raft_storage *st);

/*
 * Closes: queued work completes with an error (close from a save's callback
 * for a clean stop), then cb (may be NULL) fires, on the loop in threaded
 * mode or at once in manual mode, and st is freed.
 */
void raft_storage_close(struct raft_storage *st, void (*cb)(void *data),
			void *data);

#endif
