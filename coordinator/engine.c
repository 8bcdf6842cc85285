/*
 * engine.c - the coordinator's pure 2PC engine: presumed abort (default),
 * presumed nothing, one-phase commit for a single branch, read-only
 * branches leaving after phase 1, prepare timeouts, and phase 2 retried
 * with backoff until it is done.
 *
 * Design notes:
 *  - Pure (DESIGN.md section 3): every call takes the time as an argument
 *    and appends effects to a list; nothing here reads a clock, a socket, a
 *    file or a random source.  Timers and log writes are identified by
 *    tokens the runtime echoes back; an echo that no longer matches (a late
 *    answer, a duplicated message, a cancelled timer) is ignored with
 *    COORDINATOR_ESTALE.
 *  - Effect slots are reserved before a call changes anything, so a failed
 *    allocation leaves the engine as it was.  Records and replies are
 *    allocated while effects are made; if that fails the engine stops
 *    (coordinator_engine_is_failed()) like on a log failure: the process
 *    restarts and recovers from the log, which is always safe.
 *  - Forced writes are exactly DESIGN.md section 6's table:
 *      2PC-PA commit: COMMIT decision forced, END unforced.
 *      2PC-PA abort: no log write at all (the client may hear "aborted"
 *        before anything is written: absence of a decision means abort).
 *      2PC-PN: BEGIN forced before the first PREPARE, then the decision
 *        (COMMIT or ABORT) forced, then END unforced.  PN writes BEGIN
 *        unless every branch was hinted read-only; an abort before BEGIN
 *        was written writes nothing.
 *      One-phase (single branch) and PA all-read-only: no log write.
 *      Raft mode (log_aborts): aborts after PREPARE forced too (rule 6).
 *  - Recovery is split: coordinator_engine_recover() forces the new epoch
 *    and re-drives the log's open decisions; reconcile/resolve settle the
 *    prepared gids the resources report.  coordinator_engine_snapshot()
 *    lists what a compacted log must keep (docs/protocol.md section 7).
 *
 * Rules (Gray & Reuter, "Transaction Processing", 10.3; Mohan, Lindsay,
 * Obermarck, "Transaction management in the R* distributed DBMS", 1986):
 *  1. Commit is decided only when every branch voted yes or read-only.
 *  2. A client hears "committed" only after the commit decision is durable.
 *  3. After a commit decision, every yes branch is committed, retrying
 *     forever; 42704 ("no such prepared transaction") means already done.
 *  4. On abort, every branch that may be prepared (voted yes, or whose
 *     PREPARE answer was lost) gets ROLLBACK PREPARED; 42704 means nothing
 *     to undo.  A branch whose PREPARE is still outstanding is rolled back
 *     when its answer arrives (or when the phase timer gives up on it).
 *  5. END is written only after phase 2 finished on every branch, and only
 *     when a BEGIN or decision record was written.
 *  6. Raft mode (log_aborts; Gray & Lamport, "Consensus on Transaction
 *     Commit", 2006): an abort decided after PREPAREs went out is forced
 *     before any rollback or reply.  A successor may then commit an
 *     older-epoch transaction that has no decision and every branch
 *     prepared, because no one can have been told it aborted.  If that
 *     ABORT (or any decision) cannot be made durable the transaction is
 *     frozen: in doubt, nothing done to its branches, restart decides.
 *
 * Transaction states (see docs/protocol.md for the full diagram):
 *
 *   ACTIVE -> PREPARING -> COMMITTING -> DONE
 *      |          |   \         ^  \
 *      |          |    \        |   -> IN_DOUBT (phase 2 retrying)
 *      v          v     \       |        |
 *   ABORTING <----+      -> (all read-only) DONE
 *      |   \
 *      v    -> IN_DOUBT (rollback retrying)
 *     DONE
 *
 *   ACTIVE -> ABORTING      [abort]  statement error, timeout
 *   ACTIVE -> PREPARING     [after_run]  all statements ok, >1 branch
 *   ACTIVE -> COMMITTING    [after_run]  single branch: COMMIT (1PC)
 *   PREPARING -> ABORTING   [abort]  vote no, lost answer, timeout
 *   PREPARING -> COMMITTING [decide_commit]  all votes yes/read-only
 *   PREPARING -> DONE       [decide_commit]  all read-only under PA
 *   COMMITTING -> IN_DOUBT  [retry]  COMMIT PREPARED failed
 *   COMMITTING -> IN_DOUBT  [on_log]  commit decision write failed
 *   IN_DOUBT -> COMMITTING/ABORTING [phase2_settled]  retries succeeded
 *   COMMITTING/ABORTING -> DONE [check_finish]  phase 2 done everywhere
 */
#include "common/common.h"
#include "coordinator/coordinator.h"
#include "coordinator/txn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Effects one call may make per branch, and per transaction. */
#define FX_PER_BRANCH 4
#define FX_PER_TXN    16

struct coordinator_engine {
	char cluster[COORDINATOR_CLUSTER_MAX + 1];
	enum coordinator_protocol protocol;
	uint64_t timeout_ms;
	bool log_aborts;
	bool pipeline_prepare;
	uint64_t *backoff;
	size_t nbackoff;
	void (*free_stmts)(void *);
	struct coordinator_table *t;
	uint64_t last_token, last_timer;
	uint64_t epoch_token; /* awaited epoch record, 0 if none */
	bool failed;
	char errmsg[COORDINATOR_MSG_SIZE * 2];
};

static const uint64_t default_backoff[] = {100,	 200,  400, 800,
					   1600, 3200, 5000};

static void set_err(struct coordinator_engine *e, const char *fmt, ...)
    LOG_PRINTF(2, 3);

static void set_err(struct coordinator_engine *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->errmsg, sizeof(e->errmsg), fmt, ap);
	va_end(ap);
}

int coordinator_engine_new(const struct coordinator_engine_config *cfg,
			   struct coordinator_engine **out)
{
	struct coordinator_engine *e;
	const uint64_t *bo = cfg->backoff_ms;
	size_t nbo = cfg->nbackoff;
	int rc;

	if (!coordinator_cluster_is_valid(cfg->cluster))
		return COORDINATOR_EGID_CLUSTER;
	if (cfg->protocol != COORDINATOR_PROTO_DEFAULT &&
	    cfg->protocol != COORDINATOR_PROTO_2PC_PA &&
	    cfg->protocol != COORDINATOR_PROTO_2PC_PN)
		return COORDINATOR_EBAD_PROTOCOL;
	if (bo == NULL || nbo == 0) {
		bo = default_backoff;
		nbo = sizeof(default_backoff) / sizeof(default_backoff[0]);
	}
	for (size_t i = 0; i < nbo; i++) {
		if (bo[i] == 0)
			return -EINVAL; /* a retry loop with no pause */
	}
	e = mem_calloc(1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	e->backoff = mem_alloc(nbo * sizeof(*e->backoff));
	if (e->backoff == NULL) {
		rc = -ENOMEM;
		goto err_free_e;
	}
	memcpy(e->backoff, bo, nbo * sizeof(*e->backoff));
	e->nbackoff = nbo;
	rc = coordinator_table_new(cfg->cluster, &e->t);
	if (rc < 0)
		goto err_free_backoff;
	str_copy(e->cluster, sizeof(e->cluster), cfg->cluster);
	e->protocol = cfg->protocol == COORDINATOR_PROTO_DEFAULT
			  ? COORDINATOR_PROTO_2PC_PA
			  : cfg->protocol;
	e->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 30000;
	e->free_stmts = cfg->free_stmts;
	e->log_aborts = cfg->log_aborts;
	e->pipeline_prepare = cfg->pipeline_prepare;
	*out = e;
	return 0;

err_free_backoff:
	mem_free(e->backoff);
err_free_e:
	mem_free(e);
	return rc;
}

void coordinator_engine_free(struct coordinator_engine *e)
{
	if (e == NULL)
		return;
	coordinator_table_free(e->t, e->free_stmts);
	mem_free(e->backoff);
	mem_free(e);
}

struct coordinator_table *coordinator_engine_table(struct coordinator_engine *e)
{
	return e->t;
}

const char *coordinator_engine_errmsg(const struct coordinator_engine *e)
{
	return e->errmsg;
}

bool coordinator_engine_is_failed(const struct coordinator_engine *e)
{
	return e->failed;
}

size_t coordinator_engine_prune(struct coordinator_engine *e, uint64_t now,
				uint64_t keep_ms, size_t max_done)
{
	return coordinator_table_prune(e->t, now, keep_ms, max_done,
				       e->free_stmts);
}

struct oldest {
	uint64_t now, age;
};

static int oldest_prepared(void *arg, const struct coordinator_txn *x)
{
	struct oldest *o = arg;
	uint64_t since = x->prepare_at ? x->prepare_at : x->decided_at;

	if (x->state == COORDINATOR_TXN_DONE ||
	    x->state == COORDINATOR_TXN_ACTIVE)
		return 0;
	for (size_t i = 0; i < x->nbranches; i++) {
		switch (x->branches[i].state) {
		case COORDINATOR_BR_PREPARING:
		case COORDINATOR_BR_PREPARED:
		case COORDINATOR_BR_LOST:
		case COORDINATOR_BR_COMMITTING:
		case COORDINATOR_BR_ROLLING_BACK:
		case COORDINATOR_BR_RETRY_WAIT:
			if (o->now > since && o->now - since > o->age)
				o->age = o->now - since;
			return 0;
		default:
			break;
		}
	}
	return 0;
}

uint64_t
coordinator_engine_oldest_prepared_ms(const struct coordinator_engine *e,
				      uint64_t now)
{
	struct oldest o = {now, 0};

	/* Scraped often: the live txns only, never the finished ones. */
	coordinator_table_list_live(e->t, oldest_prepared, &o);
	return o.age;
}

/* ------------------------------------------------------------- effects */

static int fx_reserve(struct coordinator_fx *fx, size_t more)
{
	size_t cap = fx->cap ? fx->cap : 32;
	struct coordinator_effect *v;

	if (fx->n + more <= fx->cap)
		return 0;
	while (cap < fx->n + more)
		cap *= 2;
	v = mem_realloc(fx->v, cap * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	fx->v = v;
	fx->cap = cap;
	return 0;
}

static size_t fx_need(size_t nbranches)
{
	return FX_PER_TXN + FX_PER_BRANCH * nbranches;
}

/* Appends an effect; slots were reserved by the caller. */
static struct coordinator_effect *fx_push(struct coordinator_fx *fx,
					  enum coordinator_fx_type type,
					  const struct coordinator_txn *x,
					  int branch)
{
	struct coordinator_effect *f;

	if (fx->n >= fx->cap && fx_reserve(fx, 1) < 0)
		return NULL;
	f = &fx->v[fx->n++];
	memset(f, 0, sizeof(*f));
	f->type = type;
	f->branch = branch;
	if (x != NULL) {
		memcpy(f->txn, x->id, sizeof(f->txn));
		if (branch >= 0) {
			const struct coordinator_branch *b =
			    &x->branches[branch];

			memcpy(f->gid, b->gid, sizeof(f->gid));
			memcpy(f->resource, b->resource, sizeof(f->resource));
			f->read_only = b->read_only;
		}
	}
	return f;
}

static void oom(struct coordinator_engine *e)
{
	e->failed = true;
	set_err(e, "out of memory inside the engine: restart to recover");
}

static void metric(struct coordinator_fx *fx, const struct coordinator_txn *x,
		   enum coordinator_metric m, uint64_t value)
{
	struct coordinator_effect *f =
	    fx_push(fx, COORDINATOR_FX_METRIC, x, -1);

	if (f != NULL) {
		f->metric = m;
		f->value = value;
	}
}

static void branch_op(struct coordinator_fx *fx, struct coordinator_txn *x,
		      size_t i, enum coordinator_fx_type type)
{
	struct coordinator_effect *f = fx_push(fx, type, x, (int)i);

	if (f != NULL && type == COORDINATOR_FX_RUN) {
		f->stmts = x->branches[i].stmts;
		f->prepare = x->branches[i].pipelined;
	}
}

static uint64_t set_timer(struct coordinator_engine *e,
			  struct coordinator_fx *fx,
			  const struct coordinator_txn *x, int branch,
			  uint64_t at)
{
	struct coordinator_effect *f;

	f = fx_push(fx, COORDINATOR_FX_SET_TIMER, x, branch);
	if (f == NULL)
		return 0;
	f->timer_id = ++e->last_timer;
	f->at = at;
	return f->timer_id;
}

static void cancel_timer(struct coordinator_fx *fx,
			 const struct coordinator_txn *x, int branch,
			 uint64_t *id)
{
	struct coordinator_effect *f;

	if (*id == 0)
		return;
	f = fx_push(fx, COORDINATOR_FX_CANCEL_TIMER, x, branch);
	if (f != NULL)
		f->timer_id = *id;
	*id = 0;
}

static bool may_be_prepared(enum coordinator_branch_state s)
{
	return s == COORDINATOR_BR_PREPARED || s == COORDINATOR_BR_LOST;
}

/*
 * Appends a record of type for x.  COMMIT lists the prepared branches,
 * BEGIN and ABORT every branch that has or may get a gid; END none.
 * Returns the token, 0 if allocation failed (the engine is then failed).
 */
static uint64_t log_rec(struct coordinator_engine *e, struct coordinator_fx *fx,
			struct coordinator_txn *x,
			enum coordinator_rec_type type, bool forced)
{
	struct coordinator_rec_branch br[COORDINATOR_BRANCHES_MAX];
	struct coordinator_record rec;
	struct coordinator_effect *f;

	memset(&rec, 0, sizeof(rec));
	rec.type = type;
	memcpy(rec.txn, x->id, sizeof(rec.txn));
	if (type != COORDINATOR_REC_END)
		memcpy(rec.key, x->key, sizeof(rec.key));
	rec.protocol = x->protocol;
	rec.branches = br;
	for (size_t i = 0; type != COORDINATOR_REC_END && i < x->nbranches;
	     i++) {
		const struct coordinator_branch *b = &x->branches[i];

		if (type == COORDINATOR_REC_COMMIT &&
		    b->state != COORDINATOR_BR_PREPARED)
			continue;
		memcpy(br[rec.nbranches].resource, b->resource,
		       sizeof(br[0].resource));
		memcpy(br[rec.nbranches].gid, b->gid, sizeof(br[0].gid));
		rec.nbranches++;
	}
	f = fx_push(fx, COORDINATOR_FX_LOG, x, -1);
	if (f == NULL) {
		oom(e);
		return 0;
	}
	f->rec = coordinator_record_dup(&rec);
	if (f->rec == NULL) {
		fx->n--;
		oom(e);
		return 0;
	}
	f->forced = forced;
	f->token = ++e->last_token;
	metric(fx, x, COORDINATOR_M_LOG_WRITE, forced ? 1 : 0);
	return f->token;
}

/* Tells every waiting client the outcome, once. */
static void reply_all(struct coordinator_engine *e, struct coordinator_fx *fx,
		      struct coordinator_txn *x, uint64_t now)
{
	enum coordinator_metric m;

	if (x->replied)
		return;
	x->replied = true;
	for (size_t i = 0; i < x->nwaiters; i++) {
		struct coordinator_effect *f;

		f = fx_push(fx, COORDINATOR_FX_REPLY, x, -1);
		if (f == NULL)
			break;
		f->reply = coordinator_reply_new(x, x->waiters[i]);
		if (f->reply == NULL) {
			fx->n--;
			oom(e);
			break;
		}
	}
	mem_free(x->waiters);
	x->waiters = NULL;
	x->nwaiters = 0;
	if (x->recovered)
		return;
	m = x->outcome == COORDINATOR_OUTCOME_COMMITTED
		? COORDINATOR_M_TXN_COMMITTED
	    : x->outcome == COORDINATOR_OUTCOME_ABORTED
		? COORDINATOR_M_TXN_ABORTED
		: COORDINATOR_M_TXN_UNKNOWN;
	metric(fx, x, m, now - x->begun_at);
}

/* Records why x failed, naming branch i (or none if i < 0). */
static void txn_error(struct coordinator_txn *x, int code, int i,
		      const char *what)
{
	const struct coordinator_branch *b;

	x->error = code;
	x->err_branch = i;
	if (i < 0) {
		str_copy(x->errmsg, sizeof(x->errmsg), what);
		return;
	}
	b = &x->branches[i];
	if (b->sqlstate[0] != '\0')
		snprintf(x->errmsg, sizeof(x->errmsg),
			 "branch %d (%s): %s: %s %s", i + 1, b->resource, what,
			 b->sqlstate, b->message);
	else if (b->message[0] != '\0')
		snprintf(x->errmsg, sizeof(x->errmsg), "branch %d (%s): %s: %s",
			 i + 1, b->resource, what, b->message);
	else
		snprintf(x->errmsg, sizeof(x->errmsg), "branch %d (%s): %s",
			 i + 1, b->resource, what);
}

static void copy_result(struct coordinator_branch *b,
			const struct coordinator_event *ev)
{
	snprintf(b->sqlstate, sizeof(b->sqlstate), "%.5s", ev->sqlstate);
	str_copy(b->message, sizeof(b->message), ev->message);
}

/* ------------------------------------------------------- state machine */

static bool branch_is_final(enum coordinator_branch_state s)
{
	switch (s) {
	case COORDINATOR_BR_COMMITTED:
	case COORDINATOR_BR_ROLLED_BACK:
	case COORDINATOR_BR_READ_ONLY:
	case COORDINATOR_BR_VOTED_NO:
	case COORDINATOR_BR_UNKNOWN:
		return true;
	default:
		return false;
	}
}

static void set_state(struct coordinator_fx *fx, struct coordinator_txn *x,
		      enum coordinator_txn_state s)
{
	if (x->state == s)
		return;
	if (s == COORDINATOR_TXN_IN_DOUBT)
		metric(fx, x, COORDINATOR_M_IN_DOUBT_ENTER, 1);
	else if (x->state == COORDINATOR_TXN_IN_DOUBT)
		metric(fx, x, COORDINATOR_M_IN_DOUBT_LEAVE, 1);
	coordinator_txn_set_state(x, s);
}

/* Rule 5: done when every branch is final and no log write is awaited. */
static void check_finish(struct coordinator_engine *e,
			 struct coordinator_fx *fx, struct coordinator_txn *x,
			 uint64_t now)
{
	if (x->state == COORDINATOR_TXN_DONE ||
	    x->decision == COORDINATOR_OUTCOME_PENDING || x->log_token != 0)
		return;
	for (size_t i = 0; i < x->nbranches; i++) {
		if (!branch_is_final(x->branches[i].state))
			return;
	}
	cancel_timer(fx, x, -1, &x->timer_id);
	if ((x->begin_logged || x->decision_logged) && !e->failed)
		log_rec(e, fx, x, COORDINATOR_REC_END, false);
	if (x->decided_at > 0 || x->one_phase)
		metric(fx, x, COORDINATOR_M_PHASE2_MS, now - x->decided_at);
	x->done_at = now;
	set_state(fx, x, COORDINATOR_TXN_DONE);
	x->outcome = x->outcome == COORDINATOR_OUTCOME_PENDING ? x->decision
							       : x->outcome;
	reply_all(e, fx, x, now);
}

/* IN_DOUBT while some branch is still being retried; back otherwise. */
static void phase2_settled(struct coordinator_fx *fx, struct coordinator_txn *x)
{
	bool retrying = false;

	if (x->state == COORDINATOR_TXN_DONE)
		return;
	for (size_t i = 0; i < x->nbranches; i++) {
		const struct coordinator_branch *b = &x->branches[i];

		if (b->attempts > 0 && !branch_is_final(b->state))
			retrying = true;
	}
	if (retrying)
		set_state(fx, x, COORDINATOR_TXN_IN_DOUBT);
	else if (x->decision == COORDINATOR_OUTCOME_COMMITTED)
		set_state(fx, x, COORDINATOR_TXN_COMMITTING);
	else if (x->decision == COORDINATOR_OUTCOME_ABORTED)
		set_state(fx, x, COORDINATOR_TXN_ABORTING);
}

/* A decision whose record could not be made durable: nothing may be
 * done to the prepared branches until a restart reads the log. */
static bool frozen(const struct coordinator_txn *x)
{
	return x->outcome == COORDINATOR_OUTCOME_UNKNOWN && !x->one_phase &&
	       x->decision != COORDINATOR_OUTCOME_PENDING;
}

static void freeze(struct coordinator_engine *e, struct coordinator_fx *fx,
		   struct coordinator_txn *x, const char *what, uint64_t now)
{
	x->outcome = COORDINATOR_OUTCOME_UNKNOWN;
	txn_error(x, COORDINATOR_ELOG_FAILED, -1, what);
	set_state(fx, x, COORDINATOR_TXN_IN_DOUBT);
	reply_all(e, fx, x, now);
}

/* True once PREPAREs went out (some branch may be prepared). */
static bool prepares_sent(const struct coordinator_txn *x)
{
	for (size_t i = 0; i < x->nbranches; i++) {
		switch (x->branches[i].state) {
		case COORDINATOR_BR_PREPARING:
		case COORDINATOR_BR_PREPARED:
		case COORDINATOR_BR_LOST:
		case COORDINATOR_BR_VOTED_NO:
		case COORDINATOR_BR_READ_ONLY:
			return true;
		default:
			break;
		}
	}
	return false;
}

static void issue_phase2(struct coordinator_fx *fx, struct coordinator_txn *x,
			 size_t i)
{
	struct coordinator_branch *b = &x->branches[i];

	if (frozen(x))
		return;

	if (x->decision == COORDINATOR_OUTCOME_COMMITTED) {
		b->state = COORDINATOR_BR_COMMITTING;
		branch_op(fx, x, i, COORDINATOR_FX_COMMIT_PREPARED);
	} else {
		b->state = COORDINATOR_BR_ROLLING_BACK;
		branch_op(fx, x, i, COORDINATOR_FX_ROLLBACK_PREPARED);
	}
}

/* Rule 4: roll back every branch that may be prepared. */
static void issue_rollbacks(struct coordinator_fx *fx,
			    struct coordinator_txn *x)
{
	for (size_t i = 0; i < x->nbranches; i++) {
		if (may_be_prepared(x->branches[i].state))
			issue_phase2(fx, x, i);
	}
}

static bool any_preparing(const struct coordinator_txn *x)
{
	for (size_t i = 0; i < x->nbranches; i++) {
		if (x->branches[i].state == COORDINATOR_BR_PREPARING)
			return true;
	}
	return false;
}

/* Rule 1's precondition: every branch answered its PREPARE with yes or
 * read-only (in a pipelined txn a read-only-hinted branch may still be
 * running its statements while the others already voted). */
static bool all_voted(const struct coordinator_txn *x)
{
	for (size_t i = 0; i < x->nbranches; i++) {
		if (x->branches[i].state != COORDINATOR_BR_PREPARED &&
		    x->branches[i].state != COORDINATOR_BR_READ_ONLY)
			return false;
	}
	return true;
}

/*
 * Decides abort.  Precondition: no decision yet.  With a BEGIN record (PN,
 * or a keyed txn in Raft mode), or in Raft mode once PREPAREs went out
 * (rule 6), the ABORT decision is forced before anything is undone or
 * told; otherwise (PA) the client hears at once and nothing is written.
 */
static void abort_txn(struct coordinator_engine *e, struct coordinator_fx *fx,
		      struct coordinator_txn *x, int code, int i,
		      const char *what, bool timed_out, uint64_t now)
{
	bool raft_rule;

	if (x->decision != COORDINATOR_OUTCOME_PENDING)
		return;
	x->decision = COORDINATOR_OUTCOME_ABORTED;
	x->decided_at = now;
	txn_error(x, code, i, what);
	for (size_t k = 0; k < x->nbranches; k++) {
		struct coordinator_branch *b = &x->branches[k];

		switch (b->state) {
		case COORDINATOR_BR_RUNNING:
		case COORDINATOR_BR_RAN:
		case COORDINATOR_BR_FAILED:
			branch_op(fx, x, k, COORDINATOR_FX_ROLLBACK_LOCAL);
			b->state = COORDINATOR_BR_ROLLED_BACK;
			break;
		case COORDINATOR_BR_PREPARING:
			/* A pipelined branch may still be running statements
			 * that hold locks: stop them.  Its answer still comes
			 * and says what to undo. */
			if (b->pipelined)
				branch_op(fx, x, k, COORDINATOR_FX_CANCEL_RUN);
			if (timed_out)
				b->state = COORDINATOR_BR_LOST;
			break;
		default:
			break;
		}
	}
	set_state(fx, x, COORDINATOR_TXN_ABORTING);
	if (any_preparing(x)) {
		if (x->timer_id == 0)
			x->timer_id =
			    set_timer(e, fx, x, -1, now + x->timeout_ms);
	} else {
		cancel_timer(fx, x, -1, &x->timer_id);
	}
	raft_rule = e->log_aborts && (prepares_sent(x) || x->begin_logged);
	if ((x->begin_logged || raft_rule) && !e->failed) {
		x->log_token = log_rec(e, fx, x, COORDINATOR_REC_ABORT, true);
		if (x->log_token != 0) {
			x->awaiting = COORDINATOR_REC_ABORT;
			x->decision_logged = true;
			return;
		}
	}
	if (raft_rule) {
		/* Rule 6: an abort that is not durable may yet be overruled
		 * by a successor that finds every branch prepared. */
		freeze(e, fx, x,
		       "the abort decision could not be made durable; "
		       "the outcome is settled when the coordinator "
		       "restarts",
		       now);
		return;
	}
	x->outcome = COORDINATOR_OUTCOME_ABORTED;
	reply_all(e, fx, x, now);
	issue_rollbacks(fx, x);
	check_finish(e, fx, x, now);
}

/* PREPARE for every branch whose statements ran (pipelined branches sent
 * theirs with the statements). */
static void send_prepares(struct coordinator_fx *fx, struct coordinator_txn *x)
{
	for (size_t i = 0; i < x->nbranches; i++) {
		if (x->branches[i].state != COORDINATOR_BR_RAN)
			continue;
		x->branches[i].state = COORDINATOR_BR_PREPARING;
		branch_op(fx, x, i, COORDINATOR_FX_PREPARE);
	}
}

/* Every statement ran: one-phase commit, or phase 1. */
static void after_run(struct coordinator_engine *e, struct coordinator_fx *fx,
		      struct coordinator_txn *x, uint64_t now)
{
	bool all_ro = true;

	if (x->nbranches == 1) {
		x->one_phase = true;
		cancel_timer(fx, x, -1, &x->timer_id);
		x->branches[0].state = COORDINATOR_BR_COMMITTING;
		set_state(fx, x, COORDINATOR_TXN_COMMITTING);
		branch_op(fx, x, 0, COORDINATOR_FX_COMMIT_ONE_PHASE);
		return;
	}
	if (x->state != COORDINATOR_TXN_PREPARING)
		x->prepare_at =
		    now; /* a pipelined txn's phase 1 began with it */
	set_state(fx, x, COORDINATOR_TXN_PREPARING);
	for (size_t i = 0; i < x->nbranches; i++) {
		if (x->branches[i].read_only != COORDINATOR_HINT_READ_ONLY)
			all_ro = false;
	}
	/* PN logs BEGIN unless every branch is hinted read-only; Raft mode
	 * logs it for every keyed txn (hints can be wrong), so that a
	 * successor that finishes it knows its key (rule 6). */
	if ((x->protocol == COORDINATOR_PROTO_2PC_PN && !all_ro) ||
	    (e->log_aborts && x->key[0] != '\0')) {
		x->log_token = log_rec(e, fx, x, COORDINATOR_REC_BEGIN, true);
		if (x->log_token == 0) {
			abort_txn(e, fx, x, COORDINATOR_ELOG_FAILED, -1,
				  "cannot write the begin record", false, now);
			return;
		}
		x->awaiting = COORDINATOR_REC_BEGIN;
		x->begin_logged = true;
		return;
	}
	send_prepares(fx, x);
}

/* Rule 1: every branch voted yes or read-only. */
static void decide_commit(struct coordinator_engine *e,
			  struct coordinator_fx *fx, struct coordinator_txn *x,
			  uint64_t now)
{
	size_t yes = 0;

	for (size_t i = 0; i < x->nbranches; i++) {
		if (x->branches[i].state == COORDINATOR_BR_PREPARED)
			yes++;
	}
	if (e->failed && (yes > 0 || x->begin_logged)) {
		/* The decision cannot be made durable: abort, which needs no
		 * write under PA and is what PN presumes without a decision. */
		abort_txn(e, fx, x, COORDINATOR_ELOG_FAILED, -1,
			  "the decision log failed before the commit decision",
			  false, now);
		return;
	}
	cancel_timer(fx, x, -1, &x->timer_id);
	metric(fx, x, COORDINATOR_M_PREPARE_MS, now - x->prepare_at);
	x->decision = COORDINATOR_OUTCOME_COMMITTED;
	x->decided_at = now;
	set_state(fx, x, COORDINATOR_TXN_COMMITTING);
	if (yes == 0 && !x->begin_logged) {
		x->outcome = COORDINATOR_OUTCOME_COMMITTED;
		reply_all(e, fx, x, now);
		check_finish(e, fx, x, now);
		return;
	}
	x->log_token = log_rec(e, fx, x, COORDINATOR_REC_COMMIT, true);
	if (x->log_token == 0) {
		/* Never appended, so surely not durable: not a decision. */
		x->decision = COORDINATOR_OUTCOME_PENDING;
		abort_txn(e, fx, x, COORDINATOR_ELOG_FAILED, -1,
			  "cannot write the commit decision", false, now);
		return;
	}
	x->awaiting = COORDINATOR_REC_COMMIT;
	x->decision_logged = true;
}

/* Phase 2 failed on branch i: wait and retry (rule 3 / rule 4). */
static void retry(struct coordinator_engine *e, struct coordinator_fx *fx,
		  struct coordinator_txn *x, size_t i,
		  const struct coordinator_event *ev, uint64_t now)
{
	struct coordinator_branch *b = &x->branches[i];
	size_t k;

	copy_result(b, ev);
	if (ev->status == COORDINATOR_ST_LOST && b->message[0] == '\0')
		snprintf(b->message, sizeof(b->message), "answer lost");
	b->attempts++;
	k = b->attempts < e->nbackoff ? b->attempts : e->nbackoff;
	b->state = COORDINATOR_BR_RETRY_WAIT;
	b->timer_id = set_timer(e, fx, x, (int)i, now + e->backoff[k - 1]);
	metric(fx, x, COORDINATOR_M_PHASE2_RETRY, b->attempts);
}

/* ------------------------------------------------------------- begin */

static int check_begin(struct coordinator_engine *e,
		       const struct coordinator_begin *req)
{
	if (req->nbranches == 0 || req->branches == NULL) {
		set_err(e, "%s",
			coordinator_strerror(COORDINATOR_ENO_BRANCHES));
		return COORDINATOR_ENO_BRANCHES;
	}
	if (req->nbranches > COORDINATOR_BRANCHES_MAX) {
		set_err(e, "%zu branches: at most %d", req->nbranches,
			COORDINATOR_BRANCHES_MAX);
		return COORDINATOR_ETOO_MANY_BRANCHES;
	}
	for (size_t i = 0; i < req->nbranches; i++) {
		const char *r = req->branches[i].resource;
		size_t len = r ? strnlen(r, COORDINATOR_RESOURCE_MAX + 1) : 0;
		bool ok = len > 0 && len <= COORDINATOR_RESOURCE_MAX;

		for (size_t k = 0; ok && k < len; k++) {
			if ((unsigned char)r[k] < 0x20 || r[k] == 0x7f)
				ok = false;
		}
		if (!ok) {
			set_err(
			    e, "branch %zu: %s", i + 1,
			    coordinator_strerror(COORDINATOR_EBAD_RESOURCE));
			return COORDINATOR_EBAD_RESOURCE;
		}
		if (req->branches[i].read_only > COORDINATOR_HINT_WRITES) {
			set_err(e, "branch %zu: bad read-only hint", i + 1);
			return COORDINATOR_EBAD_EVENT;
		}
	}
	if (req->protocol != COORDINATOR_PROTO_DEFAULT &&
	    req->protocol != COORDINATOR_PROTO_2PC_PA &&
	    req->protocol != COORDINATOR_PROTO_2PC_PN) {
		set_err(e, "%s",
			coordinator_strerror(COORDINATOR_EBAD_PROTOCOL));
		return COORDINATOR_EBAD_PROTOCOL;
	}
	if (req->key != NULL && strlen(req->key) > COORDINATOR_KEY_MAX) {
		set_err(e, "%s", coordinator_strerror(COORDINATOR_EBAD_KEY));
		return COORDINATOR_EBAD_KEY;
	}
	return 0;
}

/*
 * True if x's branches not hinted read-only send PREPARE with their
 * statements (coordinator_engine_config.pipeline_prepare says when).  The
 * conditions are those under which after_run() would send the PREPAREs at
 * once, with no record forced first: presumed abort, two or more branches,
 * not Raft mode.
 */
static bool pipelines(const struct coordinator_engine *e,
		      const struct coordinator_txn *x)
{
	return e->pipeline_prepare && !e->log_aborts &&
	       x->protocol == COORDINATOR_PROTO_2PC_PA && x->nbranches >= 2;
}

/* The same idempotency key again: answer with the same transaction. */
static int begin_existing(struct coordinator_engine *e,
			  struct coordinator_txn *x, uint64_t client,
			  struct coordinator_fx *fx, char *id, size_t idlen)
{
	struct coordinator_effect *f;

	if (fx_reserve(fx, 1) < 0)
		return -ENOMEM;
	if (!x->replied) {
		if (coordinator_txn_waiter_add(x, client) < 0)
			return -ENOMEM;
	} else if (client != 0) {
		f = fx_push(fx, COORDINATOR_FX_REPLY, x, -1);
		f->reply = coordinator_reply_new(x, client);
		if (f->reply == NULL) {
			fx->n--;
			return -ENOMEM;
		}
	}
	str_copy(id, idlen, x->id);
	(void)e;
	return COORDINATOR_BEGIN_EXISTING;
}

int coordinator_engine_begin(struct coordinator_engine *e,
			     const struct coordinator_begin *req, uint64_t now,
			     struct coordinator_fx *fx, char *id, size_t idlen)
{
	char txid[COORDINATOR_GID_SIZE];
	struct coordinator_txn *x;
	uint64_t seq;
	int rc;

	e->errmsg[0] = '\0';
	rc = check_begin(e, req);
	if (rc < 0)
		return rc;
	if (idlen < COORDINATOR_GID_SIZE) {
		set_err(e, "id buffer too small");
		return -ENOSPC;
	}
	x = coordinator_table_find_key(e->t, req->key);
	if (x != NULL)
		return begin_existing(e, x, req->client, fx, id, idlen);
	if (e->failed) {
		set_err(e, "%s", coordinator_strerror(COORDINATOR_ELOG_FAILED));
		return COORDINATOR_ELOG_FAILED;
	}
	if (fx_reserve(fx, fx_need(req->nbranches)) < 0)
		return -ENOMEM;
	rc = coordinator_table_next_id(e->t, txid, sizeof(txid), &seq);
	if (rc < 0) {
		set_err(e, "%s", coordinator_strerror(rc));
		return rc;
	}
	rc = coordinator_table_add(e->t, txid, req->key, req->nbranches, &x);
	if (rc < 0)
		return rc;
	if (coordinator_txn_waiter_add(x, req->client) < 0) {
		coordinator__table_drop(e->t, x, NULL);
		return -ENOMEM;
	}
	for (size_t i = 0; i < req->nbranches; i++) {
		struct coordinator_branch *b = &x->branches[i];
		struct coordinator_gid g;

		coordinator_txnid_parse(txid, &g);
		g.branch = (unsigned)i + 1;
		g.branches = (unsigned)req->nbranches;
		coordinator_gid_format(&g, b->gid, sizeof(b->gid));
		str_copy(b->resource, sizeof(b->resource),
			 req->branches[i].resource);
		b->stmts = req->branches[i].stmts;
		b->read_only = req->branches[i].read_only;
		b->state = COORDINATOR_BR_RUNNING;
	}
	x->protocol = req->protocol == COORDINATOR_PROTO_DEFAULT
			  ? e->protocol
			  : req->protocol;
	x->timeout_ms = req->timeout_ms ? req->timeout_ms : e->timeout_ms;
	coordinator_txn_set_state(x, COORDINATOR_TXN_ACTIVE);
	x->begun_at = now;
	if (pipelines(e, x)) {
		/* Phase 1 starts now: these PREPAREs go out with the
		 * statements, so the txn is PREPARING from the start. */
		for (size_t i = 0; i < x->nbranches; i++) {
			struct coordinator_branch *b = &x->branches[i];

			if (b->read_only == COORDINATOR_HINT_READ_ONLY)
				continue;
			b->pipelined = true;
			b->state = COORDINATOR_BR_PREPARING;
			coordinator_txn_set_state(x, COORDINATOR_TXN_PREPARING);
		}
		x->prepare_at = now;
	}
	metric(fx, x, COORDINATOR_M_TXN_BEGUN, 1);
	x->timer_id = set_timer(e, fx, x, -1, now + x->timeout_ms);
	for (size_t i = 0; i < x->nbranches; i++)
		branch_op(fx, x, i, COORDINATOR_FX_RUN);
	str_copy(id, idlen, txid);
	return 0;
}

/* -------------------------------------------------------------- events */

/*
 * RAN for a pipelined branch: only a failure (success answers with
 * VOTED).  A statement failed or the pipeline never went out, so nothing
 * was prepared and the runtime already ended the local transaction: the
 * branch is rolled back, and the transaction aborts naming it, unless it
 * was aborted already.
 */
static int on_pipeline_failed(struct coordinator_engine *e,
			      struct coordinator_fx *fx,
			      struct coordinator_txn *x, size_t i,
			      const struct coordinator_event *ev, uint64_t now)
{
	struct coordinator_branch *b = &x->branches[i];

	if (ev->status == COORDINATOR_ST_OK)
		return COORDINATOR_EBAD_EVENT;
	if (b->state != COORDINATOR_BR_PREPARING)
		return COORDINATOR_ESTALE;
	copy_result(b, ev);
	if (ev->status == COORDINATOR_ST_LOST && b->message[0] == '\0')
		snprintf(b->message, sizeof(b->message), "connection lost");
	b->state = COORDINATOR_BR_ROLLED_BACK;
	if (x->decision == COORDINATOR_OUTCOME_ABORTED) {
		if (!any_preparing(x))
			cancel_timer(fx, x, -1, &x->timer_id);
		check_finish(e, fx, x, now);
		return 0;
	}
	abort_txn(e, fx, x, COORDINATOR_ESTATEMENT, (int)i, "statement failed",
		  false, now);
	return 0;
}

static int on_ran(struct coordinator_engine *e, struct coordinator_fx *fx,
		  struct coordinator_txn *x, size_t i,
		  const struct coordinator_event *ev, uint64_t now)
{
	struct coordinator_branch *b = &x->branches[i];

	if (b->pipelined)
		return on_pipeline_failed(e, fx, x, i, ev, now);
	if (b->state != COORDINATOR_BR_RUNNING ||
	    (x->state != COORDINATOR_TXN_ACTIVE &&
	     x->state != COORDINATOR_TXN_PREPARING))
		return COORDINATOR_ESTALE;
	if (ev->status != COORDINATOR_ST_OK) {
		copy_result(b, ev);
		if (ev->status == COORDINATOR_ST_LOST && b->message[0] == '\0')
			snprintf(b->message, sizeof(b->message),
				 "connection lost");
		b->state = COORDINATOR_BR_FAILED;
		abort_txn(e, fx, x, COORDINATOR_ESTATEMENT, (int)i,
			  "statement failed", false, now);
		return 0;
	}
	b->state = COORDINATOR_BR_RAN;
	for (size_t k = 0; k < x->nbranches; k++) {
		/* Pipelined branches are in phase 1 already. */
		if (x->branches[k].state != COORDINATOR_BR_RAN &&
		    !x->branches[k].pipelined)
			return 0;
	}
	after_run(e, fx, x, now);
	return 0;
}

static int on_voted(struct coordinator_engine *e, struct coordinator_fx *fx,
		    struct coordinator_txn *x, size_t i,
		    const struct coordinator_event *ev, uint64_t now)
{
	struct coordinator_branch *b = &x->branches[i];

	if (b->state == COORDINATOR_BR_ROLLED_BACK &&
	    x->decision == COORDINATOR_OUTCOME_ABORTED && x->log_token == 0 &&
	    (ev->vote == COORDINATOR_VOTE_YES ||
	     ev->vote == COORDINATOR_VOTE_LOST)) {
		/* Rule 4, late: the PREPARE landed after its rollback found
		 * nothing (42704).  Undo it now rather than wait for the
		 * reconciler. */
		if (x->state == COORDINATOR_TXN_DONE)
			set_state(fx, x, COORDINATOR_TXN_ABORTING);
		issue_phase2(fx, x, i);
		return 0;
	}
	if (b->state != COORDINATOR_BR_PREPARING)
		return COORDINATOR_ESTALE;
	switch (ev->vote) {
	case COORDINATOR_VOTE_YES:
		b->state = COORDINATOR_BR_PREPARED;
		break;
	case COORDINATOR_VOTE_NO:
		copy_result(b, ev);
		b->state = COORDINATOR_BR_VOTED_NO;
		break;
	case COORDINATOR_VOTE_READ_ONLY:
		b->state = COORDINATOR_BR_READ_ONLY;
		break;
	case COORDINATOR_VOTE_LOST:
		copy_result(b, ev);
		if (b->message[0] == '\0')
			snprintf(b->message, sizeof(b->message), "no answer");
		b->state = COORDINATOR_BR_LOST;
		break;
	default:
		return COORDINATOR_EBAD_EVENT;
	}
	if (x->decision == COORDINATOR_OUTCOME_ABORTED) {
		/* Rule 4: a late yes (or lost) answer after the abort. */
		if (may_be_prepared(b->state) && x->log_token == 0)
			issue_phase2(fx, x, i);
		if (!any_preparing(x))
			cancel_timer(fx, x, -1, &x->timer_id);
		check_finish(e, fx, x, now);
		return 0;
	}
	if (b->state == COORDINATOR_BR_VOTED_NO) {
		abort_txn(e, fx, x, COORDINATOR_EVOTE_NO, (int)i,
			  "voted no at prepare", false, now);
		return 0;
	}
	if (b->state == COORDINATOR_BR_LOST) {
		abort_txn(e, fx, x, COORDINATOR_EPREPARE_LOST, (int)i,
			  "the answer to PREPARE was lost", false, now);
		return 0;
	}
	if (all_voted(x))
		decide_commit(e, fx, x, now);
	return 0;
}

static int on_one_phase(struct coordinator_engine *e, struct coordinator_fx *fx,
			struct coordinator_txn *x, size_t i,
			const struct coordinator_event *ev, uint64_t now)
{
	struct coordinator_branch *b = &x->branches[i];

	if (!x->one_phase || b->state != COORDINATOR_BR_COMMITTING)
		return COORDINATOR_ESTALE;
	x->decided_at = now;
	switch (ev->status) {
	case COORDINATOR_ST_OK:
		b->state = COORDINATOR_BR_COMMITTED;
		x->decision = COORDINATOR_OUTCOME_COMMITTED;
		break;
	case COORDINATOR_ST_LOST:
		copy_result(b, ev);
		b->state = COORDINATOR_BR_UNKNOWN;
		x->decision = COORDINATOR_OUTCOME_UNKNOWN;
		txn_error(x, COORDINATOR_ECOMMIT_UNKNOWN, (int)i,
			  "the answer to COMMIT was lost");
		break;
	default:
		copy_result(b, ev);
		b->state = COORDINATOR_BR_ROLLED_BACK;
		x->decision = COORDINATOR_OUTCOME_ABORTED;
		txn_error(x, COORDINATOR_ECOMMIT_FAILED, (int)i,
			  "commit failed");
		break;
	}
	x->outcome = x->decision;
	check_finish(e, fx, x, now);
	return 0;
}

static int on_phase2(struct coordinator_engine *e, struct coordinator_fx *fx,
		     struct coordinator_txn *x, size_t i,
		     const struct coordinator_event *ev, uint64_t now)
{
	struct coordinator_branch *b = &x->branches[i];
	bool commit = ev->type == COORDINATOR_EV_COMMITTED_PREPARED;

	if (b->state != (commit ? COORDINATOR_BR_COMMITTING
				: COORDINATOR_BR_ROLLING_BACK) ||
	    x->one_phase)
		return COORDINATOR_ESTALE;
	if (ev->status == COORDINATOR_ST_OK ||
	    ev->status == COORDINATOR_ST_NOT_FOUND ||
	    (ev->status == COORDINATOR_ST_ERROR &&
	     strcmp(ev->sqlstate, "42704") == 0))
		b->state = commit ? COORDINATOR_BR_COMMITTED
				  : COORDINATOR_BR_ROLLED_BACK;
	else
		retry(e, fx, x, i, ev, now);
	phase2_settled(fx, x);
	check_finish(e, fx, x, now);
	return 0;
}

static int on_log(struct coordinator_engine *e, struct coordinator_fx *fx,
		  const struct coordinator_event *ev, uint64_t now)
{
	struct coordinator_txn *x;

	if (ev->log_status < 0 && !e->failed) {
		e->failed = true;
		set_err(e, "decision log write failed: %s",
			coordinator_strerror(ev->log_status));
	}
	if (ev->txn[0] == '\0') {
		if (ev->token == 0 || ev->token != e->epoch_token)
			return COORDINATOR_ESTALE;
		e->epoch_token = 0;
		if (ev->log_status == 0)
			coordinator_table_epoch_durable(e->t);
		return 0;
	}
	x = coordinator_table_find(e->t, ev->txn);
	if (x == NULL || ev->token == 0 || ev->token != x->log_token)
		return COORDINATOR_ESTALE;
	x->log_token = 0;
	switch (x->awaiting) {
	case COORDINATOR_REC_BEGIN:
		if (ev->log_status < 0) {
			abort_txn(e, fx, x, COORDINATOR_ELOG_FAILED, -1,
				  "cannot write the begin record", false, now);
			break;
		}
		send_prepares(fx, x);
		break;
	case COORDINATOR_REC_COMMIT:
		if (ev->log_status < 0) {
			/* Rule 2: not durable, so not committed; and maybe
			 * durable, so not abortable either.  Recovery knows. */
			freeze(e, fx, x,
			       "the commit decision could not be made "
			       "durable; the outcome is settled when "
			       "the coordinator restarts",
			       now);
			break;
		}
		x->outcome = COORDINATOR_OUTCOME_COMMITTED;
		reply_all(e, fx, x, now);
		for (size_t i = 0; i < x->nbranches; i++) {
			if (x->branches[i].state == COORDINATOR_BR_PREPARED)
				issue_phase2(fx, x, i);
		}
		check_finish(e, fx, x, now);
		break;
	case COORDINATOR_REC_ABORT:
		if (ev->log_status < 0 && e->log_aborts) {
			freeze(e, fx, x,
			       "the abort decision could not be made "
			       "durable; the outcome is settled when "
			       "the coordinator restarts",
			       now);
			break;
		}
		/* PN: abort is safe whether or not the record made it (no
		 * decision means abort). */
		x->outcome = COORDINATOR_OUTCOME_ABORTED;
		reply_all(e, fx, x, now);
		issue_rollbacks(fx, x);
		check_finish(e, fx, x, now);
		break;
	default:
		return COORDINATOR_ESTALE;
	}
	return 0;
}

static int on_timer(struct coordinator_engine *e, struct coordinator_fx *fx,
		    struct coordinator_txn *x, int i,
		    const struct coordinator_event *ev, uint64_t now)
{
	if (i >= 0) {
		struct coordinator_branch *b = &x->branches[i];

		if (ev->timer_id == 0 || b->timer_id != ev->timer_id ||
		    b->state != COORDINATOR_BR_RETRY_WAIT)
			return COORDINATOR_ESTALE;
		b->timer_id = 0;
		issue_phase2(fx, x, (size_t)i);
		return 0;
	}
	if (ev->timer_id == 0 || x->timer_id != ev->timer_id)
		return COORDINATOR_ESTALE;
	x->timer_id = 0;
	if (x->decision == COORDINATOR_OUTCOME_PENDING) {
		int culprit = -1;

		if (x->log_token != 0 && x->awaiting == COORDINATOR_REC_COMMIT)
			return 0;
		for (size_t k = 0; k < x->nbranches && culprit < 0; k++) {
			enum coordinator_branch_state s = x->branches[k].state;

			if (s == COORDINATOR_BR_RUNNING ||
			    s == COORDINATOR_BR_PREPARING)
				culprit = (int)k;
		}
		abort_txn(e, fx, x, COORDINATOR_ETIMEOUT, culprit,
			  "timed out before the decision", true, now);
		return 0;
	}
	if (x->decision == COORDINATOR_OUTCOME_ABORTED) {
		/* Rule 4: give up waiting for PREPARE answers. */
		for (size_t k = 0; k < x->nbranches; k++) {
			struct coordinator_branch *b = &x->branches[k];

			if (b->state != COORDINATOR_BR_PREPARING)
				continue;
			b->state = COORDINATOR_BR_LOST;
			if (x->log_token == 0)
				issue_phase2(fx, x, k);
		}
		check_finish(e, fx, x, now);
	}
	return 0;
}

int coordinator_engine_step(struct coordinator_engine *e,
			    const struct coordinator_event *ev, uint64_t now,
			    struct coordinator_fx *fx)
{
	struct coordinator_txn *x;
	size_t need;

	if (strnlen(ev->txn, sizeof(ev->txn)) >= sizeof(ev->txn))
		return COORDINATOR_EBAD_EVENT;
	x = ev->txn[0] ? coordinator_table_find(e->t, ev->txn) : NULL;
	need = fx_need(x ? x->nbranches : 0);
	if (fx_reserve(fx, need) < 0)
		return -ENOMEM;
	if (ev->type == COORDINATOR_EV_LOG)
		return on_log(e, fx, ev, now);
	if (x == NULL)
		return COORDINATOR_ESTALE;
	if (ev->branch < -1 || ev->branch >= (int)x->nbranches ||
	    (ev->branch < 0 && ev->type != COORDINATOR_EV_TIMER))
		return COORDINATOR_EBAD_EVENT;
	switch (ev->type) {
	case COORDINATOR_EV_RAN:
		return on_ran(e, fx, x, (size_t)ev->branch, ev, now);
	case COORDINATOR_EV_VOTED:
		return on_voted(e, fx, x, (size_t)ev->branch, ev, now);
	case COORDINATOR_EV_COMMITTED_ONE_PHASE:
		return on_one_phase(e, fx, x, (size_t)ev->branch, ev, now);
	case COORDINATOR_EV_COMMITTED_PREPARED:
	case COORDINATOR_EV_ROLLED_BACK_PREPARED:
		return on_phase2(e, fx, x, (size_t)ev->branch, ev, now);
	case COORDINATOR_EV_TIMER:
		return on_timer(e, fx, x, ev->branch, ev, now);
	default:
		return COORDINATOR_EBAD_EVENT;
	}
}

/* ------------------------------------------------------------ recovery */

/* Makes (or finds) a txn adopted from the log or a resource's list. */
static int adopt(struct coordinator_engine *e, const char *id, const char *key,
		 enum coordinator_protocol proto,
		 enum coordinator_outcome decision,
		 struct coordinator_txn **out)
{
	struct coordinator_txn *x = coordinator_table_find(e->t, id);
	int rc;

	if (x == NULL) {
		/* A key taken by another txn (an aborted try, then a
		 * committed retry): the first one adopted keeps it, and
		 * committed ones are adopted first. */
		if (key != NULL &&
		    coordinator_table_find_key(e->t, key) != NULL)
			key = NULL;
		rc = coordinator_table_add(e->t, id, key, 0, &x);
		if (rc < 0)
			return rc;
		x->recovered = true;
		x->replied = true;
		x->protocol = proto;
		x->decision = decision;
		x->outcome = decision;
		coordinator_txn_set_state(
		    x, decision == COORDINATOR_OUTCOME_COMMITTED
			   ? COORDINATOR_TXN_COMMITTING
			   : COORDINATOR_TXN_ABORTING);
	}
	*out = x;
	return 0;
}

static int find_branch(const struct coordinator_txn *x, const char *gid)
{
	for (size_t i = 0; i < x->nbranches; i++) {
		if (strcmp(x->branches[i].gid, gid) == 0)
			return (int)i;
	}
	return -1;
}

static bool undecided(const struct coordinator_txn *x)
{
	return x->recovered && x->decision == COORDINATOR_OUTCOME_PENDING;
}

static int adopt_undecided(struct coordinator_engine *e,
			   const struct coordinator_record *rec)
{
	struct coordinator_txn *x;
	int rc;

	rc = adopt(e, rec->txn, rec->key, rec->protocol,
		   COORDINATOR_OUTCOME_PENDING, &x);
	if (rc < 0)
		return rc;
	x->replied = false;
	x->begin_logged = true;
	coordinator_txn_set_state(x, COORDINATOR_TXN_IN_DOUBT);
	for (size_t i = 0; i < rec->nbranches; i++) {
		struct coordinator_branch *b;

		rc = coordinator_txn_branch_add(x, rec->branches[i].resource,
						rec->branches[i].gid, &b);
		if (rc < 0)
			return rc;
		b->state = COORDINATOR_BR_LOST; /* may be prepared */
	}
	return 0;
}

/* Forces the decision record of a recovered txn; phase 2 follows its
 * completion (on_log).  false if it could not be appended. */
static bool log_decision(struct coordinator_engine *e,
			 struct coordinator_fx *fx, struct coordinator_txn *x,
			 enum coordinator_outcome decision, uint64_t now)
{
	if (fx_reserve(fx, fx_need(x->nbranches)) < 0 || e->failed)
		return false;
	x->decision = decision;
	x->decided_at = now;
	coordinator_txn_set_state(x, decision == COORDINATOR_OUTCOME_COMMITTED
					 ? COORDINATOR_TXN_COMMITTING
					 : COORDINATOR_TXN_ABORTING);
	x->log_token = log_rec(e, fx, x,
			       decision == COORDINATOR_OUTCOME_COMMITTED
				   ? COORDINATOR_REC_COMMIT
				   : COORDINATOR_REC_ABORT,
			       true);
	if (x->log_token == 0)
		return false;
	x->awaiting = decision == COORDINATOR_OUTCOME_COMMITTED
			  ? COORDINATOR_REC_COMMIT
			  : COORDINATOR_REC_ABORT;
	x->decision_logged = true;
	return true;
}

struct keyed {
	struct coordinator_engine *e;
	uint64_t now;
	int rc;
};

static int keyed_done(void *arg, const char *txn, const char *key,
		      bool committed, bool open)
{
	struct keyed *k = arg;
	struct coordinator_txn *x;

	if (!committed || open || coordinator_table_find(k->e->t, txn) != NULL)
		return 0;
	k->rc = adopt(k->e, txn, key, COORDINATOR_PROTO_2PC_PA,
		      COORDINATOR_OUTCOME_COMMITTED, &x);
	if (k->rc < 0)
		return 1;
	coordinator_txn_set_state(x, COORDINATOR_TXN_DONE);
	x->decision_logged = true; /* a snapshot must carry it on */
	x->decided_at = x->done_at = k->now;
	return 0;
}

int coordinator_engine_recover(struct coordinator_engine *e,
			       const struct coordinator_recovery *r,
			       uint64_t now, struct coordinator_fx *fx)
{
	struct coordinator_record erec;
	struct coordinator_effect *f;
	size_t n = coordinator_recovery_count(r);
	int rc;

	e->errmsg[0] = '\0';
	if (fx_reserve(fx, FX_PER_TXN) < 0)
		return -ENOMEM;
	rc = coordinator_table_epoch_set(e->t,
					 coordinator_recovery_next_epoch(r));
	if (rc < 0) {
		set_err(e, "epoch %llu is not after %llu",
			(unsigned long long)coordinator_recovery_next_epoch(r),
			(unsigned long long)coordinator_table_epoch(e->t));
		return rc;
	}
	memset(&erec, 0, sizeof(erec));
	erec.type = COORDINATOR_REC_EPOCH;
	erec.epoch = coordinator_table_epoch(e->t);
	f = fx_push(fx, COORDINATOR_FX_LOG, NULL, -1);
	f->rec = coordinator_record_dup(&erec);
	if (f->rec == NULL) {
		fx->n--;
		return -ENOMEM;
	}
	f->forced = true;
	f->token = e->epoch_token = ++e->last_token;
	metric(fx, NULL, COORDINATOR_M_LOG_WRITE, 1);
	/* Finished commits with a key stay answerable: a retried request
	 * with that key gets "committed" and runs nothing. */
	struct keyed kc = {e, now, 0};

	coordinator_recovery_keys(r, keyed_done, &kc);
	if (kc.rc < 0)
		return kc.rc;
	for (size_t k = 0; k < n; k++) {
		const struct coordinator_record *rec =
		    coordinator_recovery_get(r, k);
		bool commit = rec->type == COORDINATOR_REC_COMMIT;
		struct coordinator_txn *x;

		if (coordinator_table_find(e->t, rec->txn) != NULL)
			continue;
		if (fx_reserve(fx, fx_need(rec->nbranches)) < 0)
			return -ENOMEM;
		if (rec->type == COORDINATOR_REC_BEGIN && e->log_aborts) {
			/* Rule 6: undecided; coordinator_engine_resolve()
			 * finishes it or aborts it.  Until then a retry with
			 * its key waits for it. */
			rc = adopt_undecided(e, rec);
			if (rc < 0)
				return rc;
			continue;
		}
		rc = adopt(e, rec->txn, rec->key, rec->protocol,
			   commit ? COORDINATOR_OUTCOME_COMMITTED
				  : COORDINATOR_OUTCOME_ABORTED,
			   &x);
		if (rc < 0)
			return rc;
		/* The log holds the decision (or PN's begin), so END closes
		 * it once phase 2 is done. */
		x->decision_logged = true;
		x->decided_at = now;
		for (size_t i = 0; i < rec->nbranches; i++) {
			rc = coordinator_txn_branch_add(
			    x, rec->branches[i].resource, rec->branches[i].gid,
			    NULL);
			if (rc < 0)
				return rc;
			issue_phase2(fx, x, x->nbranches - 1);
		}
		check_finish(e, fx, x, now);
	}
	return 0;
}

/* Reconciles one prepared gid; 1 if an operation went out, 0 if not. */
static int reconcile_one(struct coordinator_engine *e,
			 const struct coordinator_recovery *r,
			 const char *resource, const char *gid, uint64_t now,
			 struct coordinator_fx *fx)
{
	struct coordinator_gid g;
	struct coordinator_txn *x;
	enum coordinator_outcome want;
	char id[COORDINATOR_GID_SIZE];
	int i, rc;

	if (gid == NULL || coordinator_gid_parse(gid, &g) < 0 ||
	    !coordinator_gid_is_ours(&g, e->cluster))
		return 0;
	if (fx_reserve(fx, FX_PER_TXN) < 0)
		return -ENOMEM;
	x = coordinator_table_find(e->t, gid);
	if (x != NULL && x->recovered && x->log_token != 0 &&
	    find_branch(x, gid) < 0) {
		/* Its decision is being forced: the branch joins, and phase 2
		 * reaches it with the others when the record is durable. */
		struct coordinator_branch *b;

		rc = coordinator_txn_branch_add(x, resource, gid, &b);
		if (rc < 0)
			return rc;
		b->state = COORDINATOR_BR_PREPARED;
		return 0;
	}
	if (x != NULL) {
		/* A live transaction is left alone; a decided one gets its
		 * decision, also on a branch it did not know. */
		want = x->decision;
		if (want != COORDINATOR_OUTCOME_COMMITTED &&
		    want != COORDINATOR_OUTCOME_ABORTED)
			return 0;
		/* Not before the decision is durable (rule 2); never after
		 * its write failed: restart settles that one. */
		if (x->log_token != 0 || x->one_phase || x->outcome != want)
			return 0;
	} else {
		/* No transaction here: one of an older epoch (recovery's
		 * case), or one of this epoch that finished and was pruned.
		 * A finished one had every branch settled, and a committed
		 * one had every PREPARE answered and committed, so a branch
		 * of it still prepared can only be a PREPARE that landed
		 * after its transaction aborted: it is rolled back like an
		 * older epoch's.  A gid of this epoch not handed out yet is
		 * not ours to judge. */
		if (!coordinator_gid_is_older_epoch(
			&g, coordinator_table_epoch(e->t)) &&
		    !coordinator_table_handed_out(e->t, &g))
			return 0;
		want = r != NULL && coordinator_recovery_classify(r, gid) ==
					COORDINATOR_ACT_COMMIT
			   ? COORDINATOR_OUTCOME_COMMITTED
			   : COORDINATOR_OUTCOME_ABORTED;
		str_copy(id, sizeof(id), gid);
		*strrchr(id, '_') = '\0';
		if (want == COORDINATOR_OUTCOME_ABORTED && e->log_aborts &&
		    (r == NULL || !coordinator_recovery_is_decided(r, id))) {
			/* Rule 6: a successor may only undo what it decided,
			 * so the abort is forced first; the rollback follows
			 * its completion. */
			struct coordinator_branch *b;

			rc = adopt(e, id, NULL, COORDINATOR_PROTO_2PC_PA,
				   COORDINATOR_OUTCOME_PENDING, &x);
			if (rc < 0)
				return rc;
			rc = coordinator_txn_branch_add(x, resource, gid, &b);
			if (rc < 0)
				return rc;
			b->state = COORDINATOR_BR_PREPARED;
			if (!log_decision(e, fx, x, COORDINATOR_OUTCOME_ABORTED,
					  now))
				return -ENOMEM;
			return 1;
		}
		rc = adopt(e, id, NULL, COORDINATOR_PROTO_2PC_PA, want, &x);
		if (rc < 0)
			return rc;
		x->decided_at = now;
	}
	i = find_branch(x, gid);
	if (i < 0) {
		rc = coordinator_txn_branch_add(x, resource, gid, NULL);
		if (rc < 0)
			return rc;
		i = (int)x->nbranches - 1;
	} else {
		enum coordinator_branch_state st = x->branches[i].state;

		if (st == COORDINATOR_BR_COMMITTING ||
		    st == COORDINATOR_BR_ROLLING_BACK ||
		    st == COORDINATOR_BR_RETRY_WAIT ||
		    st == COORDINATOR_BR_PREPARING)
			return 0;
		if (st == COORDINATOR_BR_PREPARED &&
		    want == COORDINATOR_OUTCOME_COMMITTED)
			return 0; /* its COMMIT PREPARED comes next */
	}
	if (x->state == COORDINATOR_TXN_DONE)
		coordinator_txn_set_state(x,
					  want == COORDINATOR_OUTCOME_COMMITTED
					      ? COORDINATOR_TXN_COMMITTING
					      : COORDINATOR_TXN_ABORTING);
	issue_phase2(fx, x, (size_t)i);
	return 1;
}

long coordinator_engine_reconcile(struct coordinator_engine *e,
				  const struct coordinator_recovery *r,
				  const char *resource, const char *const *gids,
				  size_t ngids, uint64_t now,
				  struct coordinator_fx *fx)
{
	long issued = 0;

	for (size_t k = 0; k < ngids; k++) {
		int rc = reconcile_one(e, r, resource, gids[k], now, fx);

		if (rc < 0)
			return rc;
		issued += rc;
	}
	return issued;
}

static int collect_undecided(void *arg, const struct coordinator_txn *x)
{
	struct coordinator_txn ***pp = arg;

	if (undecided(x))
		*(*pp)++ = (struct coordinator_txn *)x;
	return 0;
}

long coordinator_engine_resolve(struct coordinator_engine *e,
				const struct coordinator_recovery *r,
				const struct coordinator_prepared *items,
				size_t n, uint64_t now,
				struct coordinator_fx *fx)
{
	size_t size = coordinator_table_size(e->t);
	enum coordinator_action *act;
	struct coordinator_txn **made, **und, **end;
	size_t nmade = 0;
	long issued = 0;
	int rc = 0;

	act = mem_calloc(n ? n : 1, sizeof(*act));
	made = mem_calloc(n ? n : 1, sizeof(*made));
	und = mem_calloc(size ? size : 1, sizeof(*und));
	if (act == NULL || made == NULL || und == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (r != NULL)
		coordinator_recovery_plan(r, items, n, e->log_aborts, act);
	for (size_t k = 0; k < n && rc >= 0; k++) {
		struct coordinator_txn *x;
		struct coordinator_branch *b;
		char id[COORDINATOR_GID_SIZE];
		bool mine = false;
		int i;

		if (act[k] != COORDINATOR_ACT_FINISH) {
			rc = reconcile_one(e, r, items[k].resource,
					   items[k].gid, now, fx);
			issued += rc > 0 ? rc : 0;
			continue;
		}
		str_copy(id, sizeof(id), items[k].gid);
		*strrchr(id, '_') = '\0';
		x = coordinator_table_find(e->t, id);
		for (size_t m = 0; m < nmade; m++)
			mine = mine || made[m] == x;
		if (x != NULL && !mine && !undecided(x)) {
			rc = reconcile_one(e, r, items[k].resource,
					   items[k].gid, now, fx);
			issued += rc > 0 ? rc : 0;
			continue;
		}
		if (x == NULL) {
			/* Rule 6: no decision, every branch prepared. */
			rc = adopt(e, id, NULL, COORDINATOR_PROTO_2PC_PA,
				   COORDINATOR_OUTCOME_PENDING, &x);
			if (rc < 0)
				break;
		}
		if (!mine)
			made[nmade++] = x;
		i = find_branch(x, items[k].gid);
		if (i < 0) {
			rc = coordinator_txn_branch_add(x, items[k].resource,
							items[k].gid, &b);
			if (rc < 0)
				break;
		} else {
			b = &x->branches[i];
		}
		b->state = COORDINATOR_BR_PREPARED;
	}
	for (size_t m = 0; m < nmade && rc >= 0; m++) {
		if (!log_decision(e, fx, made[m], COORDINATOR_OUTCOME_COMMITTED,
				  now))
			rc = -ENOMEM;
		else
			issued++;
	}
	/* Rule 6: what was not finished is aborted, durably, before any of
	 * its branches is undone. */
	end = und;
	if (rc >= 0)
		coordinator_table_list(e->t, COORDINATOR_TXN_ACTIVE, true,
				       collect_undecided, &end);
	for (struct coordinator_txn **p = und; p < end && rc >= 0; p++) {
		if (!log_decision(e, fx, *p, COORDINATOR_OUTCOME_ABORTED, now))
			rc = -ENOMEM;
		else
			issued++;
	}
out:
	mem_free(act);
	mem_free(made);
	mem_free(und);
	return rc < 0 ? rc : issued;
}

/* ------------------------------------------------------------ snapshot */

struct snap {
	const struct coordinator_engine *e;
	struct coordinator_record **v;
	size_t n, cap;
	int rc;
};

/* Which branches a snapshot record lists: those that may still be
 * prepared under the decision (COMMIT: also those already committed, which
 * a re-drive answers with 42704). */
static bool snap_lists(enum coordinator_rec_type type,
		       enum coordinator_branch_state s)
{
	switch (s) {
	case COORDINATOR_BR_PREPARED:
	case COORDINATOR_BR_RETRY_WAIT:
		return true;
	case COORDINATOR_BR_COMMITTING:
	case COORDINATOR_BR_COMMITTED:
		return type == COORDINATOR_REC_COMMIT;
	case COORDINATOR_BR_PREPARING:
	case COORDINATOR_BR_LOST:
	case COORDINATOR_BR_ROLLING_BACK:
		return type != COORDINATOR_REC_COMMIT;
	default:
		return type == COORDINATOR_REC_BEGIN;
	}
}

static void snap_add(struct snap *sn, const struct coordinator_txn *x,
		     enum coordinator_rec_type type, bool branches)
{
	struct coordinator_rec_branch br[COORDINATOR_BRANCHES_MAX];
	struct coordinator_record rec, *c;

	if (sn->rc < 0)
		return;
	if (sn->n == sn->cap) {
		size_t cap = sn->cap ? sn->cap * 2 : 16;
		struct coordinator_record **v =
		    mem_realloc(sn->v, cap * sizeof(*v));

		if (v == NULL) {
			sn->rc = -ENOMEM;
			return;
		}
		sn->v = v;
		sn->cap = cap;
	}
	memset(&rec, 0, sizeof(rec));
	rec.type = type;
	rec.branches = br;
	if (x == NULL) {
		rec.epoch = coordinator_table_epoch(sn->e->t);
	} else {
		memcpy(rec.txn, x->id, sizeof(rec.txn));
		rec.protocol = x->protocol;
		if (type != COORDINATOR_REC_END)
			memcpy(rec.key, x->key, sizeof(rec.key));
		for (size_t i = 0; branches && i < x->nbranches; i++) {
			const struct coordinator_branch *b = &x->branches[i];

			if (!snap_lists(type, b->state))
				continue;
			memcpy(br[rec.nbranches].resource, b->resource,
			       sizeof(br[0].resource));
			memcpy(br[rec.nbranches].gid, b->gid,
			       sizeof(br[0].gid));
			rec.nbranches++;
		}
	}
	c = coordinator_record_dup(&rec);
	if (c == NULL) {
		sn->rc = -ENOMEM;
		return;
	}
	sn->v[sn->n++] = c;
}

static int snap_txn(void *arg, const struct coordinator_txn *x)
{
	struct snap *sn = arg;
	bool done = x->state == COORDINATOR_TXN_DONE;
	enum coordinator_rec_type d =
	    x->decision == COORDINATOR_OUTCOME_COMMITTED
		? COORDINATOR_REC_COMMIT
		: COORDINATOR_REC_ABORT;

	if (frozen(x))
		return 0; /* the log failed: there is no compacting it */
	if (x->decision == COORDINATOR_OUTCOME_PENDING) {
		if (x->begin_logged)
			snap_add(sn, x, COORDINATOR_REC_BEGIN, true);
		return sn->rc < 0;
	}
	if (!x->decision_logged || x->one_phase)
		return 0;
	if (!done) {
		snap_add(sn, x, d, true);
		return sn->rc < 0;
	}
	/* finished: keep what answers a retried key, and in Raft mode the
	 * decision itself (rule 6: a decided txn is never finished anew) */
	if (x->key[0] != '\0' || sn->e->log_aborts) {
		snap_add(sn, x, d, false);
		snap_add(sn, x, COORDINATOR_REC_END, false);
	}
	return sn->rc < 0;
}

int coordinator_engine_snapshot(const struct coordinator_engine *e,
				struct coordinator_record ***recs, size_t *n)
{
	struct snap sn = {e, NULL, 0, 0, 0};

	if (coordinator_table_epoch(e->t) == 0)
		return COORDINATOR_ENOT_READY;
	snap_add(&sn, NULL, COORDINATOR_REC_EPOCH, false);
	coordinator_table_list(e->t, COORDINATOR_TXN_ACTIVE, true, snap_txn,
			       &sn);
	if (sn.rc < 0) {
		coordinator_records_free(sn.v, sn.n);
		return sn.rc;
	}
	*recs = sn.v;
	*n = sn.n;
	return 0;
}

void coordinator_records_free(struct coordinator_record **recs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		coordinator_record_free(recs[i]);
	mem_free(recs);
}
