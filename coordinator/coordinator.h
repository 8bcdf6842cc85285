/*
 * coordinator.h - the public header of coordinator/: global transaction ids
 * (gids), the decision log interface and its record format, the transaction
 * table, the pure 2PC engine and the pure recovery planner.
 *
 * The engine is a state machine (DESIGN.md section 3): the caller feeds it
 * events (a client's begin, a resource's answer, a log write's completion, a
 * timer) together with the current time, and it appends effects (run
 * statements, prepare, commit prepared, write a log record, set a timer,
 * reply to a client, count a metric) to a list the caller then executes.  It
 * does no I/O, reads no clock and draws no random numbers.  docs/protocol.md
 * has the state machine, the record formats and the forced-write table.
 *
 * Ownership, unless a declaration says otherwise: strings passed in are
 * copied; what a function returns through a pointer is the caller's to free
 * with the matching *_free(); pointers into engine or table memory
 * (struct coordinator_txn) stay valid until the next call that may change the
 * table (an engine step, a begin, a prune).
 *
 * Errors are negative: -errno or one of COORDINATOR_E* below; the engine also
 * keeps a message naming the culprit (coordinator_engine_errmsg()).
 */
#ifndef DECREE_COORDINATOR_H
#define DECREE_COORDINATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ errors */

#define COORDINATOR_ERRORS(X)                                                  \
	X(GID_LONG, "gid too long (at most 199 bytes)")                        \
	X(GID_CLUSTER, "gid: bad cluster name (1-64 of A-Z a-z 0-9 -)")        \
	X(GID_EPOCH, "gid: bad epoch (a decimal number from 1, no leading 0)") \
	X(GID_SEQ,                                                             \
	  "gid: bad sequence (a decimal number from 1, no leading 0)")         \
	X(GID_BRANCH,                                                          \
	  "gid: bad branch part (want <k>of<n>, 1 <= k <= n <= 64)")           \
	X(GID_FORMAT, "gid: want <cluster>_<epoch>_<seq>_<k>of<n>")            \
	X(REC_MAGIC, "log record: bad magic")                                  \
	X(REC_VERSION, "log record: unsupported version")                      \
	X(REC_TYPE, "log record: unknown type")                                \
	X(REC_TRUNCATED, "log record: truncated or trailing bytes")            \
	X(REC_FIELD, "log record: bad field")                                  \
	X(NO_BRANCHES, "a transaction needs at least one branch")              \
	X(TOO_MANY_BRANCHES, "too many branches (at most 64)")                 \
	X(BAD_RESOURCE, "bad resource name (1-63 bytes, no control chars)")    \
	X(BAD_PROTOCOL, "unknown protocol")                                    \
	X(BAD_KEY, "bad idempotency key (1-128 bytes)")                        \
	X(NOT_READY, "no epoch yet: the coordinator is starting")              \
	X(LOG_FAILED, "the decision log failed: restart to recover")           \
	X(NOT_FOUND, "no such transaction")                                    \
	X(STALE, "event does not match the transaction's state (ignored)")     \
	X(BAD_EVENT, "malformed event")                                        \
	X(STATEMENT, "statement failed")                                       \
	X(VOTE_NO, "branch voted no at prepare")                               \
	X(PREPARE_LOST, "the answer to PREPARE was lost")                      \
	X(TIMEOUT, "transaction timed out before the decision")                \
	X(COMMIT_FAILED, "one-phase commit failed")                            \
	X(COMMIT_UNKNOWN, "the answer to the one-phase COMMIT was lost")

enum {
	COORDINATOR_EBASE = -3000,
#define COORDINATOR_ENUM(name, text) COORDINATOR_E##name,
	COORDINATOR_ERRORS(COORDINATOR_ENUM)
#undef COORDINATOR_ENUM
	    COORDINATOR_ELAST
};

/* Text for a COORDINATOR_E* code or a -errno value; never NULL. */
const char *coordinator_strerror(int code);

/* -------------------------------------------------------------------- gids */

/*
 * A branch gid is <cluster>_<epoch>_<seq>_<k>of<n>, e.g. bank_3_1042_1of2:
 * cluster 1-64 bytes of [A-Za-z0-9-] (no '_', so the prefix "<cluster>_"
 * names one cluster only), epoch and seq decimal from 1 with no leading
 * zero, 1 <= k <= n <= COORDINATOR_BRANCHES_MAX.  A transaction's id is the
 * gid without the branch part: <cluster>_<epoch>_<seq>.  Either fits in
 * COORDINATOR_GID_SIZE bytes with its NUL (PostgreSQL's GIDSIZE is 200).
 */
#define COORDINATOR_GID_SIZE	 200
#define COORDINATOR_CLUSTER_MAX	 64
#define COORDINATOR_BRANCHES_MAX 64
#define COORDINATOR_RESOURCE_MAX 63
#define COORDINATOR_KEY_MAX	 128
#define COORDINATOR_MSG_SIZE	 256

struct coordinator_gid {
	char cluster[COORDINATOR_CLUSTER_MAX + 1];
	uint64_t epoch;
	uint64_t seq;
	unsigned branch;   /* 1-based; 0 in a transaction id */
	unsigned branches; /* 0 in a transaction id */
};

/* True if name is a valid cluster name. */
bool coordinator_cluster_is_valid(const char *name);
/* Writes the gid (branch part only if g->branches > 0) into buf; -ENOSPC if
 * it does not fit, COORDINATOR_EGID_* if a field is out of range. */
int coordinator_gid_format(const struct coordinator_gid *g, char *buf,
			   size_t len);
/* Strict parse of a branch gid.  A COORDINATOR_EGID_* code says what is
 * wrong; *out is untouched on error. */
int coordinator_gid_parse(const char *s, struct coordinator_gid *out);
/* Strict parse of a transaction id (no branch part). */
int coordinator_txnid_parse(const char *s, struct coordinator_gid *out);
/* Writes "<cluster>_" (the prefix of every gid of the cluster). */
int coordinator_gid_prefix(const char *cluster, char *buf, size_t len);
/* True if the parsed gid belongs to cluster. */
bool coordinator_gid_is_ours(const struct coordinator_gid *g,
			     const char *cluster);
/* True if the parsed gid comes from an epoch before epoch. */
bool coordinator_gid_is_older_epoch(const struct coordinator_gid *g,
				    uint64_t epoch);

/* ---------------------------------------------------------- log records */

enum coordinator_protocol {
	COORDINATOR_PROTO_DEFAULT = 0, /* the engine's configured default */
	COORDINATOR_PROTO_2PC_PA,      /* presumed abort */
	COORDINATOR_PROTO_2PC_PN,      /* presumed nothing */
};
/* "2pc-pa", "2pc-pn" (and "default"); parse returns COORDINATOR_EBAD_PROTOCOL.
 */
const char *coordinator_protocol_name(enum coordinator_protocol p);
int coordinator_protocol_parse(const char *s, enum coordinator_protocol *out);

enum coordinator_rec_type {
	COORDINATOR_REC_EPOCH = 1,  /* a new epoch begins */
	COORDINATOR_REC_BEGIN = 2,  /* PN: transaction with these branches */
	COORDINATOR_REC_COMMIT = 3, /* decision commit; the prepared branches */
	COORDINATOR_REC_ABORT = 4,  /* decision abort (PN only) */
	COORDINATOR_REC_END = 5,    /* phase 2 finished everywhere */
};

struct coordinator_rec_branch {
	char resource[COORDINATOR_RESOURCE_MAX + 1];
	char gid[COORDINATOR_GID_SIZE];
};

/* One decision-log record.  Owned by whoever made it; free with
 * coordinator_record_free() when it came from the heap. */
struct coordinator_record {
	enum coordinator_rec_type type;
	uint64_t epoch;			/* EPOCH only */
	char txn[COORDINATOR_GID_SIZE]; /* others: the transaction id */
	enum coordinator_protocol protocol;
	/* BEGIN/COMMIT/ABORT: the idempotency key, "" if none, so a retried
	 * request finds a committed transaction after a restart too */
	char key[COORDINATOR_KEY_MAX + 1];
	size_t nbranches;
	struct coordinator_rec_branch *branches;
};

const char *coordinator_rec_type_name(enum coordinator_rec_type t);
/* Heap copy of rec (NULL on allocation failure). */
struct coordinator_record *
coordinator_record_dup(const struct coordinator_record *rec);
void coordinator_record_free(struct coordinator_record *rec);
/* Encoded size of rec, or a negative code if rec is invalid. */
long coordinator_record_size(const struct coordinator_record *rec);
/* Encodes rec into buf (len >= coordinator_record_size()); returns the
 * number of bytes written or a negative code. */
long coordinator_record_encode(const struct coordinator_record *rec, void *buf,
			       size_t len);
/* Decodes buf into a new record (*out, the caller frees it); strict: bad
 * magic, version, type, field or length gives a COORDINATOR_EREC_* code. */
int coordinator_record_decode(const void *buf, size_t len,
			      struct coordinator_record **out);

/* ----------------------------------------------------------- decision log */

/* Called once per accepted append, on the caller's loop, never from inside
 * append(): status 0 when the record is durable (forced) or written
 * (unforced), negative otherwise. */
typedef void (*coordinator_log_cb)(void *arg, int status);
/* Called for each record in log order during replay; a negative return
 * stops the replay and is returned by it. */
typedef int (*coordinator_log_replay_cb)(void *arg, const void *buf,
					 size_t len);

/*
 * The decision log: local WAL, in memory (tests) or, later, Raft.  Engines do
 * not know which.  append() copies buf; if it returns a negative code the
 * callback never fires.  A forced record is durable when its callback says
 * 0, and so is every record appended before it.  A failed append means the
 * log is failed for good (DESIGN.md section 9: no retry after a failed
 * fsync): restart and replay.  close() stops the log: pending appends
 * complete with a negative status (at once, or later on the loop for a
 * threaded WAL) and the log must not be used again.
 */
struct coordinator_log_ops {
	int (*append)(void *data, const void *buf, size_t len, bool forced,
		      coordinator_log_cb cb, void *arg);
	int (*replay)(void *data, coordinator_log_replay_cb fn, void *arg);
	void (*close)(void *data);
	/* Optional (NULL: the log never shrinks; a Raft log snapshots
	 * instead).  position(): where the next append goes.  truncate():
	 * drops every record before pos, durably before cb fires; only called
	 * once every record before pos is durable. */
	uint64_t (*position)(void *data);
	int (*truncate)(void *data, uint64_t pos, coordinator_log_cb cb,
			void *arg);
};

struct coordinator_log {
	const struct coordinator_log_ops *ops;
	void *data;
};

/* Encodes rec and appends it. */
int coordinator_log_append(struct coordinator_log *log,
			   const struct coordinator_record *rec, bool forced,
			   coordinator_log_cb cb, void *arg);
/* Replays the log, decoding each record for fn (which does not own it).  A
 * record that fails to decode stops the replay with its code. */
int coordinator_log_replay(struct coordinator_log *log,
			   int (*fn)(void *arg,
				     const struct coordinator_record *rec),
			   void *arg);
void coordinator_log_close(struct coordinator_log *log);
/*
 * Compacts the log: appends recs (the live state, from
 * coordinator_engine_snapshot(), taken in the same loop turn with no
 * append in between), the last one forced, and once that is durable drops
 * every record before the first of them.  cb gets 0 when the log is
 * shorter, or the error.  -ENOTSUP if the log cannot truncate; on any
 * negative return cb never fires (records already appended stay, which is
 * harmless: replay takes duplicates).
 */
int coordinator_log_checkpoint(struct coordinator_log *log,
			       struct coordinator_record *const *recs, size_t n,
			       coordinator_log_cb cb, void *arg);

/*
 * In-memory decision log for tests and the simulator.  Appends are held
 * until coordinator_memlog_flush() completes them (so completions never run
 * inside append).  A forced record, once flushed, makes itself and all
 * before it durable; coordinator_memlog_crash() drops what is not durable,
 * like power loss, after completing pending appends with -ECANCELED.
 */
int coordinator_memlog_open(struct coordinator_log *out);
/* Completes up to max pending appends in order (max 0: all); returns how
 * many completed. */
size_t coordinator_memlog_flush(struct coordinator_log *log, size_t max);
/* The next n appends fail at completion with status err (e.g. -EIO). */
void coordinator_memlog_fail_next(struct coordinator_log *log, int n, int err);
void coordinator_memlog_crash(struct coordinator_log *log);
size_t coordinator_memlog_pending(const struct coordinator_log *log);
struct coordinator_memlog_stats {
	uint64_t appends, forced, completed, failed;
	size_t records, durable; /* records held; how many are durable */
};
void coordinator_memlog_stats_get(const struct coordinator_log *log,
				  struct coordinator_memlog_stats *out);

/*
 * The local decision log on a wal/ log (DESIGN.md section 5): cfg says where
 * (dir or storage), how (sync mode) and on which loop (NULL: manual mode,
 * drive it with wal_step() on coordinator_walog_wal()).  Opening recovers
 * the WAL (report may be NULL).  Every record is one WAL record of type
 * COORDINATOR_WAL_TYPE.
 */
#define COORDINATOR_WAL_TYPE 0x444c /* "DL" */
struct wal;
struct wal_config;
struct wal_recovery_report;
int coordinator_walog_open(const struct wal_config *cfg,
			   struct coordinator_log *out,
			   struct wal_recovery_report *report);
/* The WAL under a log from coordinator_walog_open(), or NULL for another
 * kind of log (for stats, wal_step and wal_failed). */
struct wal *coordinator_walog_wal(struct coordinator_log *log);

/* ------------------------------------------------------ the txn table */

enum coordinator_txn_state {
	COORDINATOR_TXN_ACTIVE,	    /* running statements */
	COORDINATOR_TXN_PREPARING,  /* phase 1 */
	COORDINATOR_TXN_COMMITTING, /* commit decided (or 1PC commit sent) */
	COORDINATOR_TXN_ABORTING,   /* abort decided, undoing */
	COORDINATOR_TXN_IN_DOUBT,   /* phase 2 retrying, or decision unknown */
	COORDINATOR_TXN_DONE,
};
#define COORDINATOR_TXN_NSTATES 6
const char *coordinator_txn_state_name(enum coordinator_txn_state s);
/* "active", "preparing", ... "in_doubt", "done". */
int coordinator_txn_state_parse(const char *s, enum coordinator_txn_state *out);

enum coordinator_outcome {
	COORDINATOR_OUTCOME_PENDING,
	COORDINATOR_OUTCOME_COMMITTED,
	COORDINATOR_OUTCOME_ABORTED,
	COORDINATOR_OUTCOME_UNKNOWN, /* an answer or a log write was lost */
};
const char *coordinator_outcome_name(enum coordinator_outcome o);

enum coordinator_hint {
	COORDINATOR_HINT_UNKNOWN = 0,
	COORDINATOR_HINT_READ_ONLY,
	COORDINATOR_HINT_WRITES,
};

enum coordinator_branch_state {
	COORDINATOR_BR_RUNNING,	  /* statements sent */
	COORDINATOR_BR_RAN,	  /* statements ok, local txn open */
	COORDINATOR_BR_FAILED,	  /* a statement failed */
	COORDINATOR_BR_PREPARING, /* PREPARE sent */
	COORDINATOR_BR_PREPARED,  /* voted yes */
	COORDINATOR_BR_READ_ONLY, /* voted read-only: committed locally, left */
	COORDINATOR_BR_VOTED_NO,  /* voted no: rolled back by the resource */
	COORDINATOR_BR_LOST,	  /* PREPARE answer lost: maybe prepared */
	COORDINATOR_BR_COMMITTING, /* COMMIT [PREPARED] sent */
	COORDINATOR_BR_COMMITTED,
	COORDINATOR_BR_ROLLING_BACK, /* ROLLBACK PREPARED sent */
	COORDINATOR_BR_ROLLED_BACK,  /* undone (or local ROLLBACK sent) */
	COORDINATOR_BR_RETRY_WAIT,   /* phase 2 failed, waiting to retry */
	COORDINATOR_BR_UNKNOWN,	     /* 1PC COMMIT answer lost */
};
const char *coordinator_branch_state_name(enum coordinator_branch_state s);

struct coordinator_branch {
	char resource[COORDINATOR_RESOURCE_MAX + 1];
	char gid[COORDINATOR_GID_SIZE];
	void *stmts; /* opaque, see engine config */
	enum coordinator_hint read_only;
	enum coordinator_branch_state state;
	/* Its PREPARE travels with its statements (a RUN with prepare set):
	 * PREPARING from the start, answered by VOTED (or by RAN with an
	 * error when a statement failed and nothing was prepared). */
	bool pipelined;
	unsigned attempts; /* phase-2 attempts that failed */
	uint64_t timer_id; /* retry timer armed, or 0 */
	char sqlstate[6];  /* of the last error, "" if none */
	char message[COORDINATOR_MSG_SIZE];
};

/* A global transaction.  Read-only outside coordinator/. */
struct coordinator_txn {
	char id[COORDINATOR_GID_SIZE]; /* <cluster>_<epoch>_<seq> */
	uint64_t epoch, seq;
	char key[COORDINATOR_KEY_MAX + 1]; /* idempotency key, "" if none */
	enum coordinator_protocol protocol;
	enum coordinator_txn_state state;
	enum coordinator_outcome outcome;
	bool recovered;	      /* adopted from the log or a resource's list */
	bool replied;	      /* the outcome went to the waiting clients */
	bool begin_logged;    /* PN begin record appended */
	bool decision_logged; /* a decision record appended */
	bool one_phase;	      /* single branch: COMMIT without PREPARE */
	/* What was decided (PENDING: nothing yet).  outcome is what clients
	 * may be told: a commit decision is not an outcome until durable. */
	enum coordinator_outcome decision;
	enum coordinator_rec_type awaiting; /* record log_token is for */
	uint64_t log_token;  /* awaited log completion, 0 if none */
	uint64_t prepare_at; /* when PREPAREs went out */
	uint64_t timer_id;   /* phase-1 timer, 0 if none */
	uint64_t timeout_ms;
	uint64_t begun_at, decided_at, done_at;
	int error;	/* COORDINATOR_E* of the abort reason, 0 if none */
	int err_branch; /* branch index the error names, -1 if none */
	char errmsg[2 * COORDINATOR_MSG_SIZE];
	size_t nbranches;
	struct coordinator_branch *branches;
	size_t nwaiters; /* clients waiting for the outcome */
	uint64_t *waiters;
	/* table links (txn.c): hash chains, all txns in creation order,
	 * and the live or the done list */
	struct coordinator_txn *id_next, *key_next, *prev, *next;
	struct coordinator_txn *sprev, *snext;
	struct coordinator_table *table; /* NULL if in none */
};

struct coordinator_table;

int coordinator_table_new(const char *cluster, struct coordinator_table **out);
/* Frees every txn (calling free_stmts on each branch's stmts if not NULL). */
void coordinator_table_free(struct coordinator_table *t,
			    void (*free_stmts)(void *stmts));
const char *coordinator_table_cluster(const struct coordinator_table *t);

/*
 * Epochs and sequences.  coordinator_table_epoch_set() starts a new epoch
 * (it must be greater than the last); no gid is handed out until
 * coordinator_table_epoch_durable() says its record is on stable storage.
 */
int coordinator_table_epoch_set(struct coordinator_table *t, uint64_t epoch);
void coordinator_table_epoch_durable(struct coordinator_table *t);
uint64_t coordinator_table_epoch(const struct coordinator_table *t);
bool coordinator_table_is_ready(const struct coordinator_table *t);
/* Allocates the next sequence of the current epoch and writes the txn id;
 * COORDINATOR_ENOT_READY before the epoch is durable. */
int coordinator_table_next_id(struct coordinator_table *t, char *id, size_t len,
			      uint64_t *seq);
/* Whether g's transaction id was handed out by next_id in the current
 * epoch (its epoch is the current one and its sequence was reached). */
bool coordinator_table_handed_out(const struct coordinator_table *t,
				  const struct coordinator_gid *g);

/* Creates an empty txn with this id (and key, may be NULL) in the table;
 * -EEXIST if the id or key is taken. */
int coordinator_table_add(struct coordinator_table *t, const char *id,
			  const char *key, size_t nbranches,
			  struct coordinator_txn **out);
/* Finds by txn id or by branch gid (the branch part is ignored). */
struct coordinator_txn *
coordinator_table_find(const struct coordinator_table *t, const char *gid);
struct coordinator_txn *
coordinator_table_find_key(const struct coordinator_table *t, const char *key);
/* Calls fn for each txn in state (or every txn if all), oldest first
 * (done ones, listed by state: in the order they finished); fn
 * returning non-zero stops the walk.  Returns how many were visited.
 * Listing a state other than done never walks the done txns. */
size_t coordinator_table_list(
    const struct coordinator_table *t, enum coordinator_txn_state state,
    bool all, int (*fn)(void *arg, const struct coordinator_txn *x), void *arg);
/* Calls fn for each txn not done (any live state); fn returning non-zero
 * stops the walk.  Returns how many were visited. */
size_t coordinator_table_list_live(const struct coordinator_table *t,
				   int (*fn)(void *arg,
					     const struct coordinator_txn *x),
				   void *arg);
size_t coordinator_table_count(const struct coordinator_table *t,
			       enum coordinator_txn_state state);
size_t coordinator_table_size(const struct coordinator_table *t);
/* Removes and frees done txns whose done_at + keep_ms <= now, and the
 * oldest beyond max_done (0: no limit), oldest first (costs what it
 * removes); returns how many went. */
size_t coordinator_table_prune(struct coordinator_table *t, uint64_t now,
			       uint64_t keep_ms, size_t max_done,
			       void (*free_stmts)(void *));
/* Changes x's state; the only way to, for a txn in a table, which keeps
 * its counts and lists by state (coordinator_table_count is O(1)). */
void coordinator_txn_set_state(struct coordinator_txn *x,
			       enum coordinator_txn_state s);
/* Grows a txn's branch array (recovery adds branches one by one). */
int coordinator_txn_branch_add(struct coordinator_txn *x, const char *resource,
			       const char *gid,
			       struct coordinator_branch **out);
/* Adds a client waiting for the outcome. */
int coordinator_txn_waiter_add(struct coordinator_txn *x, uint64_t client);

/* -------------------------------------------------------------- engine */

enum coordinator_vote {
	COORDINATOR_VOTE_YES,
	COORDINATOR_VOTE_NO,
	COORDINATOR_VOTE_READ_ONLY,
	COORDINATOR_VOTE_LOST, /* no answer: may be prepared */
};

enum coordinator_fx_type {
	COORDINATOR_FX_RUN,		 /* begin a local txn, run stmts */
	COORDINATOR_FX_PREPARE,		 /* PREPARE TRANSACTION gid (or RO) */
	COORDINATOR_FX_COMMIT_ONE_PHASE, /* COMMIT the open local txn */
	COORDINATOR_FX_ROLLBACK_LOCAL, /* ROLLBACK the open local txn; no answer
					*/
	COORDINATOR_FX_COMMIT_PREPARED,
	COORDINATOR_FX_ROLLBACK_PREPARED,
	COORDINATOR_FX_LOG,	  /* append rec (forced or not) */
	COORDINATOR_FX_SET_TIMER, /* fire (txn, branch, timer_id) at `at` */
	COORDINATOR_FX_CANCEL_TIMER,
	COORDINATOR_FX_REPLY, /* tell client the outcome */
	COORDINATOR_FX_METRIC,
	/* Stop a pipelined RUN still in flight (the transaction aborted):
	 * cancel its statement so its locks go now.  Its answer still comes
	 * (RAN with the cancelled statement's error, or VOTED if it finished
	 * first) and the engine undoes whatever it says. */
	COORDINATOR_FX_CANCEL_RUN,
};
const char *coordinator_fx_name(enum coordinator_fx_type t);

enum coordinator_metric {
	COORDINATOR_M_TXN_BEGUN,
	COORDINATOR_M_TXN_COMMITTED, /* value: ms from begin to decision */
	COORDINATOR_M_TXN_ABORTED,
	COORDINATOR_M_TXN_UNKNOWN,
	/* phase 1: last statement ok -> votes (pipelined: begin -> votes) */
	COORDINATOR_M_PREPARE_MS,
	COORDINATOR_M_PHASE2_MS, /* decision -> done */
	COORDINATOR_M_LOG_WRITE, /* value 1 if forced */
	COORDINATOR_M_PHASE2_RETRY,
	COORDINATOR_M_IN_DOUBT_ENTER,
	COORDINATOR_M_IN_DOUBT_LEAVE,
};
const char *coordinator_metric_name(enum coordinator_metric m);

struct coordinator_branch_status {
	char resource[COORDINATOR_RESOURCE_MAX + 1];
	char gid[COORDINATOR_GID_SIZE];
	enum coordinator_branch_state state;
	char sqlstate[6];
	char message[COORDINATOR_MSG_SIZE];
};

/* What a client is told, or a status snapshot. */
struct coordinator_reply {
	uint64_t client;
	char txn[COORDINATOR_GID_SIZE];
	enum coordinator_protocol protocol;
	enum coordinator_txn_state state;
	enum coordinator_outcome outcome;
	int error;			       /* COORDINATOR_E* or 0 */
	int err_branch;			       /* -1 if none */
	char sqlstate[6];		       /* of err_branch, "" if none */
	char errmsg[2 * COORDINATOR_MSG_SIZE]; /* "branch 2 (bank_b): ..." */
	uint64_t begun_at, decided_at, done_at;
	size_t nbranches;
	struct coordinator_branch_status *branches;
};
/* Snapshot of x for client (status lookups).  NULL on allocation failure. */
struct coordinator_reply *coordinator_reply_new(const struct coordinator_txn *x,
						uint64_t client);
void coordinator_reply_free(struct coordinator_reply *r);

struct coordinator_effect {
	enum coordinator_fx_type type;
	char txn[COORDINATOR_GID_SIZE]; /* txn id ("" for the epoch record) */
	int branch;			/* index, -1 for the whole txn */
	char gid[COORDINATOR_GID_SIZE]; /* branch gid (branch effects) */
	char resource[COORDINATOR_RESOURCE_MAX + 1];
	void *stmts; /* RUN: the branch's statements */
	/* RUN: send PREPARE TRANSACTION gid in the same pipeline as BEGIN
	 * and the statements (docs/protocol.md section 2).  The answer is
	 * then VOTED: YES once prepared, NO if PREPARE failed, LOST if the
	 * pipeline went out and its answer was lost (may be prepared); or
	 * RAN with an error status when a statement failed or nothing could
	 * be sent: then nothing was prepared and the local transaction is
	 * already rolled back (the runtime ends the branch itself). */
	bool prepare;
	enum coordinator_hint read_only; /* RUN, PREPARE */
	struct coordinator_record *rec;	 /* LOG; owned by the list */
	bool forced;			 /* LOG */
	uint64_t token;			 /* LOG: echo in COORDINATOR_EV_LOG */
	uint64_t timer_id; /* timers: echo in COORDINATOR_EV_TIMER */
	uint64_t at;	   /* SET_TIMER: absolute ms */
	struct coordinator_reply *reply; /* REPLY; owned by the list */
	enum coordinator_metric metric;	 /* METRIC */
	uint64_t value;
};

/* The effects of one or more engine calls, in order. */
struct coordinator_fx {
	struct coordinator_effect *v;
	size_t n, cap;
};
void coordinator_fx_init(struct coordinator_fx *fx);
/* Frees the records and replies the effects own and empties the list. */
void coordinator_fx_clear(struct coordinator_fx *fx);
/* The same, keeping the list's memory for more effects. */
void coordinator_fx_reset(struct coordinator_fx *fx);
/* Number of effects of type t (and forced, for LOG, if only_forced). */
size_t coordinator_fx_count(const struct coordinator_fx *fx,
			    enum coordinator_fx_type t, bool only_forced);

enum coordinator_ev_type {
	COORDINATOR_EV_RAN,   /* statements of a branch done (ok/err) */
	COORDINATOR_EV_VOTED, /* PREPARE answer */
	COORDINATOR_EV_COMMITTED_ONE_PHASE,
	COORDINATOR_EV_COMMITTED_PREPARED,
	COORDINATOR_EV_ROLLED_BACK_PREPARED,
	COORDINATOR_EV_LOG, /* log append completed */
	COORDINATOR_EV_TIMER,
};

/* Result status of a resource operation. */
enum coordinator_status {
	COORDINATOR_ST_OK,
	COORDINATOR_ST_ERROR,	  /* failed; sqlstate/message say why */
	COORDINATOR_ST_NOT_FOUND, /* phase 2: 42704, no such prepared txn */
	COORDINATOR_ST_LOST,	  /* the answer was lost: may have happened */
};

struct coordinator_event {
	enum coordinator_ev_type type;
	char txn[COORDINATOR_GID_SIZE]; /* from the effect */
	int branch;
	enum coordinator_status status; /* RAN, *_DONE */
	enum coordinator_vote vote;	/* VOTED */
	char sqlstate[6];
	char message[COORDINATOR_MSG_SIZE];
	uint64_t token;	   /* LOG */
	int log_status;	   /* LOG: 0 or negative */
	uint64_t timer_id; /* TIMER */
};

struct coordinator_engine_config {
	const char *cluster;		    /* required */
	enum coordinator_protocol protocol; /* default: 2PC_PA */
	uint64_t timeout_ms;		    /* phase-1 timeout; 0: 30000 */
	/* phase-2 retry delays, each >= 1: attempt k waits
	 * backoff_ms[min(k, n) - 1]; NULL/0: 100, 200, 400, ..., 5000 */
	const uint64_t *backoff_ms;
	size_t nbackoff;
	/* frees a branch's stmts when its txn leaves the table; may be NULL */
	void (*free_stmts)(void *stmts);
	/*
	 * Raft mode (DESIGN.md section 5, "no work lost to failover"): every
	 * abort decided after PREPAREs went out is forced (an ABORT record)
	 * before any rollback or reply, as commits are.  That makes it safe
	 * for a successor to finish an older-epoch transaction whose every
	 * branch is prepared and that has no decision
	 * (coordinator_engine_resolve() with finish_prepared).
	 */
	bool log_aborts;
	/*
	 * Pipelined phase 1: under presumed abort, a transaction of two or
	 * more branches asks for each branch's statements and its PREPARE
	 * TRANSACTION in one RUN effect (prepare set), so the runtime sends
	 * BEGIN, the statements and PREPARE in one round trip.  Not for
	 * branches hinted read-only (they keep RUN, then PREPARE with its
	 * read-only probe), presumed nothing (its BEGIN record must be
	 * durable before any PREPARE goes out), one-phase commit, or Raft
	 * mode (an abort after a PREPARE went out must be forced there, so
	 * a statement error would cost a forced write the two-step path
	 * does not pay).  A pipelined branch that wrote nothing still
	 * prepares: correct, one COMMIT PREPARED more than a read-only vote.
	 */
	bool pipeline_prepare;
};

struct coordinator_branch_req {
	const char *resource;
	void *stmts; /* opaque; the engine takes it */
	enum coordinator_hint read_only;
};

struct coordinator_begin {
	uint64_t client; /* who waits; 0: nobody */
	enum coordinator_protocol protocol;
	uint64_t timeout_ms; /* 0: the config's */
	const char *key;     /* idempotency key, NULL or "" none */
	size_t nbranches;
	const struct coordinator_branch_req *branches;
};

struct coordinator_engine;

int coordinator_engine_new(const struct coordinator_engine_config *cfg,
			   struct coordinator_engine **out);
void coordinator_engine_free(struct coordinator_engine *e);
struct coordinator_table *
coordinator_engine_table(struct coordinator_engine *e);
/* The message of the last failed call ("" if none). */
const char *coordinator_engine_errmsg(const struct coordinator_engine *e);
/* True once the decision log failed: the process must restart. */
bool coordinator_engine_is_failed(const struct coordinator_engine *e);
/*
 * The records a compacted decision log must hold to recover the engine's
 * present state: the current EPOCH; for each unfinished transaction its
 * BEGIN or decision (listing the branches that may still be prepared);
 * for each finished one with an idempotency key (or, in Raft mode, any
 * finished one with a logged decision) its decision and END, so keys and
 * decisions outlive the compaction while the txn stays in the table.
 * *recs is an array of heap records: free with coordinator_records_free().
 */
int coordinator_engine_snapshot(const struct coordinator_engine *e,
				struct coordinator_record ***recs, size_t *n);
void coordinator_records_free(struct coordinator_record **recs, size_t n);
/* Forgets done transactions older than keep_ms, and the oldest beyond
 * max_done (0: no limit); their stmts are freed.  Returns how many went.
 * A late PREPARE of a forgotten one is the reconciler's (docs/protocol.md
 * section 6). */
size_t coordinator_engine_prune(struct coordinator_engine *e, uint64_t now,
				uint64_t keep_ms, size_t max_done);
/* Age in ms of the oldest branch that is (or may be) prepared and not yet
 * finished, 0 if none: for the "oldest prepared branch" metric. */
uint64_t
coordinator_engine_oldest_prepared_ms(const struct coordinator_engine *e,
				      uint64_t now);

/*
 * Starts a transaction.  Returns 0 and the txn id in id (the engine owns
 * every branch's stmts from now on), or COORDINATOR_BEGIN_EXISTING if key
 * names a transaction already (client now waits for it too, or is answered
 * at once if it is done; the caller keeps its stmts), or a negative code
 * with nothing changed (bad input, not ready, log failed).
 */
#define COORDINATOR_BEGIN_EXISTING 1
int coordinator_engine_begin(struct coordinator_engine *e,
			     const struct coordinator_begin *req, uint64_t now,
			     struct coordinator_fx *fx, char *id, size_t idlen);

/* Feeds one event.  0, or COORDINATOR_ESTALE for an event that no longer
 * matches (a late or duplicated answer, a cancelled timer: nothing
 * changes), or another negative code for a malformed event. */
int coordinator_engine_step(struct coordinator_engine *e,
			    const struct coordinator_event *ev, uint64_t now,
			    struct coordinator_fx *fx);

/* ------------------------------------------------------------ recovery */

/*
 * What the replayed decision log says.  Fill with coordinator_recovery_add()
 * for each record in log order (or coordinator_recovery_replay()).
 */
struct coordinator_recovery;

int coordinator_recovery_new(const char *cluster,
			     struct coordinator_recovery **out);
void coordinator_recovery_free(struct coordinator_recovery *r);
int coordinator_recovery_add(struct coordinator_recovery *r,
			     const struct coordinator_record *rec);
int coordinator_recovery_replay(struct coordinator_recovery *r,
				struct coordinator_log *log);
/* The last epoch in the log (0 if none) and the one to force next. */
uint64_t coordinator_recovery_last_epoch(const struct coordinator_recovery *r);
uint64_t coordinator_recovery_next_epoch(const struct coordinator_recovery *r);
/* Transactions to finish: commit decisions without an end record (re-drive
 * COMMIT PREPARED), then PN begin/abort without end (roll back). */
size_t coordinator_recovery_count(const struct coordinator_recovery *r);
const struct coordinator_record *
coordinator_recovery_get(const struct coordinator_recovery *r, size_t i);
/* True if the log holds a commit decision for this txn id. */
bool coordinator_recovery_is_committed(const struct coordinator_recovery *r,
				       const char *txn);
/* Calls fn for each transaction the log names with an idempotency key, in
 * log order: committed (a COMMIT was seen) and open (no END yet).  fn
 * returning non-zero stops the walk.  Returns how many were visited. */
size_t coordinator_recovery_keys(const struct coordinator_recovery *r,
				 int (*fn)(void *arg, const char *txn,
					   const char *key, bool committed,
					   bool open),
				 void *arg);

/* True if the log holds a decision (commit or abort) for this txn id. */
bool coordinator_recovery_is_decided(const struct coordinator_recovery *r,
				     const char *txn);

enum coordinator_action {
	COORDINATOR_ACT_NONE,	  /* not ours, current epoch, or unparsable */
	COORDINATOR_ACT_COMMIT,	  /* older epoch, commit decision */
	COORDINATOR_ACT_ROLLBACK, /* older epoch, no commit decision */
	COORDINATOR_ACT_FINISH,	  /* Raft mode: older epoch, no decision, every
				   * branch prepared: force COMMIT, commit */
};
/* What to do with a prepared gid found on a resource. */
enum coordinator_action
coordinator_recovery_classify(const struct coordinator_recovery *r,
			      const char *gid);

/* A prepared transaction some resource reported. */
struct coordinator_prepared {
	const char *resource;
	const char *gid;
};
/*
 * Plans every resource's prepared gids at once: out[i] is the action for
 * items[i] (classify's, or FINISH when finish_prepared is set, the log has
 * no decision for the txn and items hold all n of its branches).  Only for
 * Raft mode (log_aborts), where no client can have heard "aborted" for a
 * transaction without an ABORT record.  Pure; returns 0.
 */
int coordinator_recovery_plan(const struct coordinator_recovery *r,
			      const struct coordinator_prepared *items,
			      size_t n, bool finish_prepared,
			      enum coordinator_action *out);

/*
 * Hands the recovery to the engine: forces the next epoch (no begin is
 * accepted until that record is durable) and re-drives every unfinished
 * decision.  In Raft mode (log_aborts) a BEGIN without a decision is
 * adopted as undecided (in_doubt; a retry with its key waits for it) until
 * coordinator_engine_resolve() settles it: call that next, with every
 * resource's prepared list.  r is not kept.
 */
int coordinator_engine_recover(struct coordinator_engine *e,
			       const struct coordinator_recovery *r,
			       uint64_t now, struct coordinator_fx *fx);
/*
 * Resolves one resource's prepared gids (with our prefix): older epochs by
 * the recovery's decisions (r, may be NULL after the first pass: then by
 * the table), and current-epoch gids only when their txn is in the table
 * and aborted.  Issues COMMIT/ROLLBACK PREPARED for those not already being
 * handled (in Raft mode an older-epoch orphan's ABORT is forced first, and
 * the rollback follows its completion).  Returns how many operations it
 * issued, or a negative code (-ENOMEM).
 */
long coordinator_engine_reconcile(struct coordinator_engine *e,
				  const struct coordinator_recovery *r,
				  const char *resource, const char *const *gids,
				  size_t ngids, uint64_t now,
				  struct coordinator_fx *fx);
/*
 * The same over every resource's list at once (after a restart or a new
 * leader's first entry commits).  With the engine in Raft mode
 * (log_aborts), an older-epoch transaction with no decision whose every
 * branch is prepared is finished (COMMIT forced, then COMMIT PREPARED)
 * instead of rolled back; otherwise this is reconcile per item.  Returns
 * how many operations or decisions it issued.
 */
long coordinator_engine_resolve(struct coordinator_engine *e,
				const struct coordinator_recovery *r,
				const struct coordinator_prepared *items,
				size_t n, uint64_t now,
				struct coordinator_fx *fx);

/* ------------------------------------------------- postgres driver (pgd) */

/*
 * The `postgres` resource driver (coordinator/driver_pg.c, docs/driver-pg.md):
 * libpq in nonblocking mode on the libuv loop, one bounded connection pool
 * per resource, branch sessions pinned to a connection, and the two-phase
 * operations (prepare, commit/rollback prepared, list prepared by prefix).
 *
 * Calling conventions (libuv style):
 *  - Every operation is asynchronous and completes by calling its callback on
 *    the loop, never from inside the call that started it.
 *  - A function that takes a callback and returns a negative code failed
 *    synchronously: nothing changed and the callback never fires.
 *  - The result passed to a callback, and every pointer inside it, is owned
 *    by the driver and valid only during the callback: copy what you keep.
 *  - Strings passed in (SQL, parameters, gids, prefixes, the config) are
 *    copied; the caller keeps ownership of its own.
 *  - Error codes are negative: -errno, or one of COORDINATOR_PG_E* below.
 */
struct uv_loop_s; /* uv_loop_t */

/* The driver's own error codes (negative, apart from -errno values). */
#define COORDINATOR_PG_ERRORS(X)                                               \
	X(SQL, "the server reported an error")                                 \
	X(CONNECT, "cannot connect to the server")                             \
	X(CONNLOST, "connection to the server lost")                           \
	X(TIMEOUT, "the server did not answer in time")                        \
	X(QUEUE_FULL, "too many requests waiting for a connection")            \
	X(REFUSED, "max_prepared_transactions is 0 on the server")             \
	X(ROLLED_BACK, "the transaction was rolled back by the server")        \
	X(BAD_GID, "invalid transaction id")                                   \
	X(ENDED, "a statement ended the branch's transaction")                 \
	X(CLOSED, "the resource is closed")

enum {
	COORDINATOR_PG_EBASE = -2000,
#define COORDINATOR_PG_ENUM(name, text) COORDINATOR_PG_E##name,
	COORDINATOR_PG_ERRORS(COORDINATOR_PG_ENUM)
#undef COORDINATOR_PG_ENUM
	    COORDINATOR_PG_ELAST
};

/* Text for a driver code or a -errno value; never NULL. */
const char *coordinator_pg_strerror(int code);

/* gids are at most this many bytes (PostgreSQL's GIDSIZE less the NUL). */
#define COORDINATOR_PG_GID_MAX 199

struct coordinator_pg_config {
	const char *name;     /* resource name, used in every message */
	const char *conninfo; /* libpq conninfo; never logged or shown */
	int pool_size;	      /* connections, 1..1024; 0 means 4 */
	int queue_limit;      /* requests waiting for a connection; 0: 1024 */
	/* SET statement_timeout on each connection; 0 disables.  The client
	 * gives the server this long plus timeout_grace_ms to answer before it
	 * cancels the statement and drops the connection. */
	uint64_t statement_timeout_ms;
	uint64_t timeout_grace_ms;   /* 0 means 1000 */
	uint64_t connect_timeout_ms; /* 0 means 5000 */
	uint64_t queue_timeout_ms; /* longest wait for a connection; 0: 10000 */
	uint64_t backoff_min_ms;   /* first reconnect delay; 0 means 100 */
	uint64_t backoff_max_ms;   /* reconnect delay cap; 0 means 5000 */
	size_t row_limit;	   /* rows kept per statement; 0 means 1000 */
	/* After a branch that ran anything but successful plain DML
	 * (INSERT/UPDATE/DELETE/MERGE), its connection gets DISCARD ALL so
	 * no SET, advisory lock, temp table or prepared statement leaks into
	 * the next branch (statement_timeout and application_name are
	 * startup settings and survive it).  true skips that round trip
	 * always, for statements known not to change the session. */
	bool keep_session_state;
};

/* What an operation came to. */
enum coordinator_pg_outcome {
	COORDINATOR_PG_OK,	  /* done (prepare: voted yes, now prepared) */
	COORDINATOR_PG_READ_ONLY, /* prepare: no xid assigned, committed */
	COORDINATOR_PG_NOT_FOUND, /* commit/rollback prepared: 42704 */
	COORDINATOR_PG_FAILED	  /* see code, message, sqlstate */
};

struct coordinator_pg_branch;

struct coordinator_pg_result {
	enum coordinator_pg_outcome outcome;
	int code;	      /* 0, or why it failed (see above) */
	const char *message;  /* "" on success; else names the resource:
			       * "cannot prepare branch on bank_b: ..." */
	const char *sqlstate; /* "" unless the server sent one */
	const char *detail;   /* NULL unless the server sent one */
	const char *hint;     /* NULL unless the server sent one */
	/* The request reached the server but its answer was lost (connection
	 * lost or timed out after sending): a PREPARE or COMMIT may or may not
	 * have happened. */
	bool in_doubt;
	long long rows_affected; /* from the command tag; -1 if none */
	int ncols;
	const char *const *colnames; /* ncols names */
	int nrows;		     /* rows kept, at most row_limit */
	bool truncated;		     /* more rows came than were kept */
	/* nrows * ncols values, row-major; NULL for SQL NULL. */
	const char *const *values;
	/* begin: the branch (also returned by coordinator_pg_begin). */
	struct coordinator_pg_branch *branch;
	/* run_prepare: the index of the statement that failed or could not
	 * be sent (a failed BEGIN counts as statement 0's failure): nothing
	 * was prepared.  -1 otherwise, and for every other operation. */
	int stmt;
};

/* values[row * ncols + col], or NULL if out of range or SQL NULL. */
const char *coordinator_pg_result_value(const struct coordinator_pg_result *r,
					int row, int col);

typedef void (*coordinator_pg_cb)(const struct coordinator_pg_result *res,
				  void *data);

struct coordinator_pg;

/*
 * Creates the resource and starts its first connection in the background
 * (which checks max_prepared_transactions).  Fails with -EINVAL on a bad
 * config or conninfo (the reason, never a password, goes to errbuf when it
 * is not NULL) or -ENOMEM.  *out is owned by the caller until
 * coordinator_pg_close().
 */
int coordinator_pg_open(struct uv_loop_s *loop,
			const struct coordinator_pg_config *cfg,
			struct coordinator_pg **out, char *errbuf,
			size_t errlen);

/*
 * Closes the resource: every pending request completes with
 * COORDINATOR_PG_ECLOSED before this returns, every branch ends (the server
 * rolls back unprepared work) and its pointer becomes invalid; connections
 * close, and cb (may be NULL) fires once every handle is closed, after
 * which the memory is gone.
 */
void coordinator_pg_close(struct coordinator_pg *pg, void (*cb)(void *data),
			  void *data);

const char *coordinator_pg_name(const struct coordinator_pg *pg);
/* True while the last connection attempt succeeded (or none failed yet). */
bool coordinator_pg_is_up(const struct coordinator_pg *pg);
/* The last connect error ("" if none); it names the resource. */
const char *coordinator_pg_last_error(const struct coordinator_pg *pg);

struct coordinator_pg_stats {
	int open;   /* connections established (idle + busy + pinned) */
	int idle;   /* established and free */
	int pinned; /* held by a branch */
	int connecting;
	int queued;	   /* requests waiting for a connection */
	uint64_t connects; /* successful connection setups */
	uint64_t connect_failures;
	uint64_t timeouts; /* statements cancelled by the client timer */
	uint64_t lost;	   /* connections lost while open */
	uint64_t queries;  /* queries sent (round trips) */
	uint64_t resets;   /* DISCARD ALL session resets between branches */
	/* Send batching: connections whose queries wait for the end of the
	 * loop turn (0 whenever the loop is about to block), and the turns
	 * that released such a batch. */
	int corked;
	uint64_t batches;
};
void coordinator_pg_stats_get(const struct coordinator_pg *pg,
			      struct coordinator_pg_stats *out);

/* Gets a connection (connecting if need be) and gives it back: OK means the
 * resource is reachable and accepts prepared transactions. */
int coordinator_pg_check(struct coordinator_pg *pg, coordinator_pg_cb cb,
			 void *data);

/*
 * Starts a branch: takes a pooled connection (or waits in the queue) and
 * pins it to the branch until prepare, commit or rollback ends it.  BEGIN
 * goes out in one round trip with the branch's first statement (a failed
 * BEGIN fails that statement and breaks the branch).  *out is valid from
 * now on; if the callback reports a failure the branch is already gone
 * when the callback returns.
 */
int coordinator_pg_begin(struct coordinator_pg *pg, coordinator_pg_cb cb,
			 void *data, struct coordinator_pg_branch **out);

/*
 * Runs one statement of the user's with text parameters ($1..$n) on the
 * branch.  The result has rows affected and up to row_limit returned rows,
 * or the server's error (SQLSTATE, message, detail, hint), after which the
 * server's transaction is aborted: roll the branch back.  No exec result
 * ends the branch, not even a lost connection (ECONNLOST, ETIMEOUT) or a
 * statement that ended the transaction (EENDED): the branch object lives
 * until prepare, commit or rollback ends it, and on a broken branch those
 * complete at once (rollback with OK).  -EBUSY if an operation of the
 * branch is still running, -EINVAL on a NULL statement.
 */
int coordinator_pg_branch_exec(struct coordinator_pg_branch *b, const char *sql,
			       int nparams, const char *const *params,
			       coordinator_pg_cb cb, void *data);

/*
 * Phase 1: READ_ONLY if the branch was assigned no transaction id (it is
 * committed locally), OK once PREPARE TRANSACTION gid succeeded, FAILED
 * (vote no; the server rolled the branch back) otherwise.  A FAILED result
 * with in_doubt set may still have prepared.  Ends the branch.
 * COORDINATOR_PG_EBAD_GID for an empty or too long gid.
 */
int coordinator_pg_branch_prepare(struct coordinator_pg_branch *b,
				  const char *gid, coordinator_pg_cb cb,
				  void *data);
/* One statement of coordinator_pg_branch_run_prepare(). */
struct coordinator_pg_stmt {
	const char *sql;
	int nparams;
	const char *const *params; /* text values, NULL for SQL NULL */
};

/*
 * Phase 1 in one round trip: BEGIN (unless a statement already ran on the
 * branch), the n statements and PREPARE TRANSACTION gid go out in one
 * libpq pipeline with one Sync.  In a pipeline the server skips
 * everything after an error up to the Sync, so PREPARE never runs after a
 * failed statement.  Ends the branch; its connection goes back to the
 * pool rolled back if the transaction was left open.
 *
 * each (may be NULL) is called for every statement that succeeded, in
 * order, with its result, right before cb.  cb gets OK once prepared
 * (there is no read-only probe: a branch that wrote nothing prepares
 * too), or FAILED with, in the result's stmt, the statement that failed
 * (nothing prepared; SQLSTATE and message are the statement's); with stmt
 * -1 either PREPARE itself failed (vote no; the server rolled back) or,
 * with in_doubt set, the answer was lost after the pipeline went out (it
 * may be prepared).  A statement that would end the transaction fails
 * with EENDED before anything is sent.  The statements and parameters are
 * only read during the call.  COORDINATOR_PG_EBAD_GID for a bad gid,
 * -EINVAL for bad statements, -EBUSY if an operation of the branch runs.
 */
int coordinator_pg_branch_run_prepare(struct coordinator_pg_branch *b,
				      const struct coordinator_pg_stmt *stmts,
				      int n, const char *gid,
				      coordinator_pg_cb each,
				      coordinator_pg_cb cb, void *data);
/* One-phase commit (COMMIT); ends the branch.  FAILED with ROLLED_BACK if
 * the server rolled back instead. */
int coordinator_pg_branch_commit(struct coordinator_pg_branch *b,
				 coordinator_pg_cb cb, void *data);
/* Cancels the branch's statement in flight, if any, and drops the
 * connection (so the cancel cannot hit its next user): the callback
 * reports ECONNLOST.  The branch stays open (roll it back).  For a
 * run_prepare in flight the connection stays until the pipeline answers,
 * since only the answer says whether PREPARE ran: SQLSTATE 57014 for the
 * cancelled statement (nothing prepared), or what it came to if it
 * finished first; the connection is closed then, not pooled.  -EALREADY
 * if nothing runs. */
int coordinator_pg_branch_cancel(struct coordinator_pg_branch *b);
/* ROLLBACK of an unprepared branch; ends the branch.  OK also when the
 * connection was already lost (the server dropped the work). */
int coordinator_pg_branch_rollback(struct coordinator_pg_branch *b,
				   coordinator_pg_cb cb, void *data);

/* Phase 2 on any pooled connection: OK, NOT_FOUND (SQLSTATE 42704: no such
 * prepared transaction) or FAILED. */
int coordinator_pg_commit_prepared(struct coordinator_pg *pg, const char *gid,
				   coordinator_pg_cb cb, void *data);
int coordinator_pg_rollback_prepared(struct coordinator_pg *pg, const char *gid,
				     coordinator_pg_cb cb, void *data);

/* The gids of this database's prepared transactions that start with prefix
 * (taken literally: '%' and '_' match only themselves), sorted, one column
 * "gid", no row limit. */
int coordinator_pg_list_prepared(struct coordinator_pg *pg, const char *prefix,
				 coordinator_pg_cb cb, void *data);

/* ------------------------------------------- the server (libuv runtime) */

/*
 * The coordinator process's runtime (coordinator/server.c, api.c): it runs
 * the engine on a libuv loop with the postgres driver, the local WAL
 * decision log (<data_dir>/decision-log) and the HTTP API (docs/api.md).
 * recovery/ drives its start-up through the accessors below.
 *
 * Ownership: cfg must outlive the server.  coordinator_server_close() stops
 * serving and closes every handle; its callback fires when the loop holds
 * nothing of the server's, and then coordinator_server_free() releases it.
 */
struct config_node;
struct coordinator_server;

int coordinator_server_new(struct uv_loop_s *loop,
			   const struct config_node *cfg,
			   struct coordinator_server **out, char *err,
			   size_t errlen);
/* Starts the HTTP API on cfg->listen_http. */
int coordinator_server_listen(struct coordinator_server *s, char *err,
			      size_t errlen);
/* The bound HTTP port, or -1 before listen. */
int coordinator_server_port(const struct coordinator_server *s);
void coordinator_server_close(struct coordinator_server *s,
			      void (*cb)(void *data), void *data);
void coordinator_server_free(struct coordinator_server *s);

struct coordinator_engine *
coordinator_server_engine(struct coordinator_server *s);
struct coordinator_log *coordinator_server_log(struct coordinator_server *s);
const struct config_node *
coordinator_server_config(const struct coordinator_server *s);
struct uv_loop_s *coordinator_server_loop(struct coordinator_server *s);
/* The loop's clock in ms: the engine's `now`. */
uint64_t coordinator_server_now(const struct coordinator_server *s);
/* Executes the effects in fx (and clears it). */
void coordinator_server_apply(struct coordinator_server *s,
			      struct coordinator_fx *fx);
/* An empty effect list for the engine, on the memory the last applied
 * list left behind when it is free (coordinator_fx_init otherwise). */
void coordinator_server_fx_init(struct coordinator_server *s,
				struct coordinator_fx *fx);
size_t coordinator_server_resources(const struct coordinator_server *s);
const char *coordinator_server_resource_name(const struct coordinator_server *s,
					     size_t i);
/*
 * Lists the prepared gids with this cluster's prefix on a resource.  cb gets
 * them (valid during the call) or, if the resource could not answer, err.
 */
typedef void (*coordinator_server_list_cb)(const char *resource,
					   const char *const *gids, size_t n,
					   const char *err, void *data);
int coordinator_server_list_prepared(struct coordinator_server *s,
				     const char *resource,
				     coordinator_server_list_cb cb, void *data);

#endif
