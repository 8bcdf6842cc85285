/*
 * test_coord_crash.c - the engine under a seeded simulation: fake
 * PostgreSQL resources (open / prepared / committed / rolled back per
 * branch), lost answers, transient phase-2 errors, timeouts, and a
 * coordinator crash at every step of the run (engine state dropped,
 * unforced log records lost, in-flight operations landing or not), then
 * replay of the decision log, the recovery plan, reconcile, and a run to
 * quiescence.  Checked after each run:
 *   atomicity   no transaction has one branch committed and another rolled
 *               back (read-only branches excepted);
 *   durability  every transaction a client was told "committed" is
 *               committed on every branch that wrote;
 *   validity    a transaction a client was told "aborted" committed nowhere;
 *   cleanup     no prepared transaction is left anywhere, and every
 *               transaction in the recovered engine is done;
 *   idempotency clients that did not hear an outcome (replies are lost
 *               too) retry with their key after the restart; one key never
 *               commits two multi-branch transactions.
 * A failure prints the seed and crash step; both replay exactly.
 */
#include "test_coord_harness.h"
#include "tests/lib/suite.h"

#include <errno.h>
#include <stdlib.h>

enum bst { B_NONE, B_OPEN, B_PREPARED, B_COMMITTED, B_ROLLED_BACK, B_RO_DONE };

struct sbranch {
	char gid[COORDINATOR_GID_SIZE];
	char resource[16];
	enum bst st;
	bool ro, stmt_fail, vote_no;
};

struct stxn {
	char id[COORDINATOR_GID_SIZE];
	int nb;
	int first; /* index of its first branch in sim.br */
	enum coordinator_outcome told;
	int replies;
	int key;    /* idempotency key k<key>; retries share it */
	bool heard; /* the reply reached the client (it may be lost) */
};

struct op {
	enum coordinator_fx_type type;
	char txn[COORDINATOR_GID_SIZE];
	int branch;
	char gid[COORDINATOR_GID_SIZE];
};

struct timer {
	char txn[COORDINATOR_GID_SIZE];
	int branch;
	uint64_t id, at;
};

#define MAXB   64
#define MAXT   16
#define MAXOPS 512

struct sim {
	uint64_t rng;
	unsigned seed;
	long crash_at;
	struct coordinator_engine *e;
	struct coordinator_log log;
	uint64_t now;
	bool crashing;
	struct sbranch br[MAXB];
	int nbr;
	struct stxn tx[MAXT];
	int ntx, max_tx;
	struct op ops[MAXOPS];
	int nops;
	struct timer timers[MAXOPS];
	int ntimers;
	long steps;
	int forced;
	bool log_aborts; /* Raft mode: aborts logged, prepared orphans finished
			  */
};

struct logarg {
	struct sim *s;
	char txn[COORDINATOR_GID_SIZE];
	uint64_t token;
};

/* What the runs covered, so a test can insist the interesting paths ran. */
static struct {
	long runs, crashes, told_committed, told_aborted, told_unknown;
	long redriven_commits, recovered_rollbacks, in_doubt_at_crash;
	long retries_new, retries_existing, finished, duplicates, checkpoints;
} cov;

static uint64_t rnd(struct sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

static bool chance(struct sim *s, int pct)
{
	return (int)(rnd(s) % 100) < pct;
}

static struct sbranch *branch_of(struct sim *s, const char *gid)
{
	for (int i = 0; i < s->nbr; i++) {
		if (strcmp(s->br[i].gid, gid) == 0)
			return &s->br[i];
	}
	return NULL;
}

static void process(struct sim *s, struct coordinator_fx *fx);
static long reconcile_all(struct sim *s, const struct coordinator_recovery *r);
static long resolve_all(struct sim *s, const struct coordinator_recovery *r);

static void step_event(struct sim *s, struct coordinator_event *ev)
{
	struct coordinator_fx fx;
	int rc;

	coordinator_fx_init(&fx);
	rc = coordinator_engine_step(s->e, ev, s->now, &fx);
	if (getenv("COORD_TRACE"))
		fprintf(stderr,
			"t=%llu ev %d %s b%d st=%d vote=%d tok=%llu timer=%llu "
			"-> rc %d\n",
			(unsigned long long)s->now, ev->type, ev->txn,
			ev->branch, ev->status, ev->vote,
			(unsigned long long)ev->token,
			(unsigned long long)ev->timer_id, rc);
	ck_assert_msg(rc == 0 || rc == COORDINATOR_ESTALE,
		      "seed %u crash %ld: step failed: %s", s->seed,
		      s->crash_at, coordinator_strerror(rc));
	process(s, &fx);
	coordinator_fx_clear(&fx);
}

static void on_log(void *arg, int status)
{
	struct logarg *a = arg;
	struct sim *s = a->s;
	struct coordinator_event ev;

	if (!s->crashing) {
		ev = ev_make(COORDINATOR_EV_LOG, a->txn, -1);
		ev.token = a->token;
		ev.log_status = status;
		step_event(s, &ev);
	}
	free(a);
}

static void process(struct sim *s, struct coordinator_fx *fx)
{
	for (size_t i = 0; i < fx->n; i++) {
		struct coordinator_effect *f = &fx->v[i];
		struct logarg *a;
		struct stxn *t;

		if (getenv("COORD_TRACE") && f->type != COORDINATOR_FX_METRIC)
			fprintf(stderr, "   fx %s %s b%d %s%s\n",
				coordinator_fx_name(f->type), f->txn, f->branch,
				f->rec ? coordinator_rec_type_name(f->rec->type)
				       : "",
				f->reply ? coordinator_outcome_name(
					       f->reply->outcome)
					 : "");

		switch (f->type) {
		case COORDINATOR_FX_LOG:
			a = calloc(1, sizeof(*a));
			a->s = s;
			memcpy(a->txn, f->txn, sizeof(a->txn));
			a->token = f->token;
			s->forced += f->forced;
			ck_assert_int_eq(coordinator_log_append(&s->log, f->rec,
								f->forced,
								on_log, a),
					 0);
			break;
		case COORDINATOR_FX_SET_TIMER:
			ck_assert_int_lt(s->ntimers, MAXOPS);
			memcpy(s->timers[s->ntimers].txn, f->txn,
			       sizeof(f->txn));
			s->timers[s->ntimers].branch = f->branch;
			s->timers[s->ntimers].id = f->timer_id;
			s->timers[s->ntimers].at = f->at;
			s->ntimers++;
			break;
		case COORDINATOR_FX_CANCEL_TIMER:
			for (int k = 0; k < s->ntimers; k++) {
				if (s->timers[k].id == f->timer_id) {
					s->timers[k] = s->timers[--s->ntimers];
					break;
				}
			}
			break;
		case COORDINATOR_FX_REPLY:
			if (f->reply->client >= 1000)
				break; /* a retry told about an existing txn */
			ck_assert_uint_ge(f->reply->client, 1);
			ck_assert_uint_le(f->reply->client, (uint64_t)s->ntx);
			t = &s->tx[f->reply->client - 1];
			ck_assert_str_eq(t->id, f->reply->txn);
			t->replies++;
			ck_assert_msg(t->replies == 1, "seed %u: %s told twice",
				      s->seed, t->id);
			t->told = f->reply->outcome;
			t->heard = !chance(s, 20);
			break;
		case COORDINATOR_FX_METRIC:
			break;
		default:
			ck_assert_int_lt(s->nops, MAXOPS);
			s->ops[s->nops].type = f->type;
			memcpy(s->ops[s->nops].txn, f->txn, sizeof(f->txn));
			s->ops[s->nops].branch = f->branch;
			memcpy(s->ops[s->nops].gid, f->gid, sizeof(f->gid));
			s->nops++;
			break;
		}
	}
}

/* Begins a txn of nb branches under idempotency key k<key>; a retry of a
 * key the engine knows creates nothing. */
static void begin_keyed(struct sim *s, int key, int nb, uint64_t client)
{
	struct coordinator_fx fx;
	enum coordinator_hint hints[3];
	enum coordinator_protocol p =
	    chance(s, 50) ? COORDINATOR_PROTO_2PC_PA : COORDINATOR_PROTO_2PC_PN;
	struct stxn *t = &s->tx[s->ntx];
	bool all_ro = true;
	char kname[16], id[COORDINATOR_GID_SIZE];
	int rc;

	coordinator_fx_init(&fx);
	for (int i = 0; i < nb; i++) {
		struct sbranch *b = &s->br[s->nbr + i];

		memset(b, 0, sizeof(*b));
		b->ro = chance(s, 25);
		b->stmt_fail = chance(s, 8);
		b->vote_no = !b->ro && chance(s, 8);
		all_ro = all_ro && b->ro;
		hints[i] = b->ro && chance(s, 50) ? COORDINATOR_HINT_READ_ONLY
						  : COORDINATOR_HINT_UNKNOWN;
	}
	(void)all_ro;
	ck_assert_int_lt(s->ntx, MAXT);
	ck_assert_int_le(s->nbr + nb, MAXB);
	snprintf(kname, sizeof(kname), "k%d", key);
	rc = begin_n(s->e, (size_t)nb, p, kname,
		     client ? client : (uint64_t)s->ntx + 1, hints, &fx, id);
	if (client >= 1000)
		*(rc == COORDINATOR_BEGIN_EXISTING ? &cov.retries_existing
						   : &cov.retries_new) += 1;
	if (rc == COORDINATOR_BEGIN_EXISTING) {
		process(s, &fx);
		coordinator_fx_clear(&fx);
		return;
	}
	ck_assert_int_eq(rc, 0);
	memset(t, 0, sizeof(*t));
	memcpy(t->id, id, sizeof(t->id));
	t->key = key;
	t->nb = nb;
	t->first = s->nbr;
	for (int i = 0; i < nb; i++) {
		struct sbranch *b = &s->br[s->nbr + i];
		struct coordinator_txn *x = coordinator_table_find(
		    coordinator_engine_table(s->e), t->id);

		memcpy(b->gid, x->branches[i].gid, sizeof(b->gid));
		snprintf(b->resource, sizeof(b->resource), "r%d", i + 1);
	}
	s->nbr += nb;
	s->ntx++;
	process(s, &fx);
	coordinator_fx_clear(&fx);
}

static void begin_one(struct sim *s)
{
	int nb = 1 + (int)(rnd(s) % 3);

	begin_keyed(s, s->ntx, nb, 0);
}

/* After a restart, clients that heard nothing (or "unknown") retry with
 * their key: a txn whose commit is durable must not run again. */
static void retry_untold(struct sim *s)
{
	int n = s->ntx;

	for (int t = 0; t < n; t++) {
		struct stxn *x = &s->tx[t];
		bool newest = true;

		for (int u = t + 1; u < s->ntx; u++)
			newest = newest && s->tx[u].key != x->key;
		if (!newest ||
		    (x->heard && x->told != COORDINATOR_OUTCOME_UNKNOWN))
			continue;
		if (s->ntx < MAXT && s->nbr + x->nb <= MAXB)
			begin_keyed(s, x->key, x->nb,
				    1000 + (uint64_t)s->steps);
	}
}

/* Makes a result status, sometimes lost. */
static void answer(struct sim *s, struct op *o, enum coordinator_ev_type t,
		   enum coordinator_status st, enum coordinator_vote v)
{
	struct coordinator_event ev = ev_make(t, o->txn, o->branch);

	ev.status = st;
	ev.vote = v;
	if (st == COORDINATOR_ST_ERROR) {
		snprintf(ev.sqlstate, sizeof(ev.sqlstate), "XX000");
		snprintf(ev.message, sizeof(ev.message), "simulated");
	}
	step_event(s, &ev);
	if (chance(s, 5)) {
		cov.duplicates++;
		step_event(s, &ev); /* a duplicated answer */
	}
}

static void deliver(struct sim *s, int k)
{
	struct op o = s->ops[k];
	struct sbranch *b = branch_of(s, o.gid);
	bool lost = chance(s, 5);

	s->ops[k] = s->ops[--s->nops];
	ck_assert_ptr_nonnull(b);
	switch (o.type) {
	case COORDINATOR_FX_RUN:
		if (b->st != B_NONE)
			break;
		b->st = B_OPEN;
		if (lost) {
			b->st = B_ROLLED_BACK; /* connection died */
			answer(s, &o, COORDINATOR_EV_RAN, COORDINATOR_ST_LOST,
			       0);
		} else {
			answer(s, &o, COORDINATOR_EV_RAN,
			       b->stmt_fail ? COORDINATOR_ST_ERROR
					    : COORDINATOR_ST_OK,
			       0);
		}
		break;
	case COORDINATOR_FX_ROLLBACK_LOCAL:
		if (b->st == B_OPEN || b->st == B_NONE)
			b->st = B_ROLLED_BACK;
		break;
	case COORDINATOR_FX_PREPARE: {
		enum coordinator_vote v = COORDINATOR_VOTE_NO;

		if (b->st == B_OPEN && !b->stmt_fail) {
			if (b->ro) {
				b->st = B_RO_DONE;
				v = COORDINATOR_VOTE_READ_ONLY;
			} else if (b->vote_no) {
				b->st = B_ROLLED_BACK;
			} else {
				b->st = B_PREPARED;
				v = COORDINATOR_VOTE_YES;
			}
		} else if (b->st == B_OPEN) {
			b->st = B_ROLLED_BACK;
		}
		answer(s, &o, COORDINATOR_EV_VOTED, 0,
		       lost ? COORDINATOR_VOTE_LOST : v);
		break;
	}
	case COORDINATOR_FX_COMMIT_ONE_PHASE:
		if (b->st == B_OPEN)
			b->st = b->ro ? B_RO_DONE : B_COMMITTED;
		answer(s, &o, COORDINATOR_EV_COMMITTED_ONE_PHASE,
		       lost ? COORDINATOR_ST_LOST : COORDINATOR_ST_OK, 0);
		break;
	case COORDINATOR_FX_COMMIT_PREPARED:
	case COORDINATOR_FX_ROLLBACK_PREPARED: {
		bool commit = o.type == COORDINATOR_FX_COMMIT_PREPARED;
		enum coordinator_ev_type t =
		    commit ? COORDINATOR_EV_COMMITTED_PREPARED
			   : COORDINATOR_EV_ROLLED_BACK_PREPARED;
		enum coordinator_status st = COORDINATOR_ST_NOT_FOUND;

		if (chance(s, 15)) {
			answer(s, &o, t, COORDINATOR_ST_ERROR, 0);
			break;
		}
		if (b->st == B_PREPARED) {
			b->st = commit ? B_COMMITTED : B_ROLLED_BACK;
			st = COORDINATOR_ST_OK;
		}
		answer(s, &o, t, lost ? COORDINATOR_ST_LOST : st, 0);
		break;
	}
	default:
		ck_abort_msg("unexpected op %d", o.type);
	}
}

static void fire_timer(struct sim *s)
{
	int k = 0;
	struct timer t;
	struct coordinator_event ev;

	for (int i = 1; i < s->ntimers; i++) {
		if (s->timers[i].at < s->timers[k].at)
			k = i;
	}
	t = s->timers[k];
	s->timers[k] = s->timers[--s->ntimers];
	if (t.at > s->now)
		s->now = t.at;
	ev = ev_make(COORDINATOR_EV_TIMER, t.txn, t.branch);
	ev.timer_id = t.id;
	step_event(s, &ev);
	if (chance(s, 5))
		step_event(s, &ev); /* a timer that fires twice */
}

/* One step; false when nothing is left to do. */
/* Compacts the decision log to the engine's snapshot. */
static void checkpoint(struct sim *s)
{
	struct coordinator_record **recs;
	size_t n;

	if (coordinator_engine_is_failed(s->e) ||
	    coordinator_engine_snapshot(s->e, &recs, &n) < 0)
		return;
	ck_assert_int_eq(
	    coordinator_log_checkpoint(&s->log, recs, n, NULL, NULL), 0);
	coordinator_records_free(recs, n);
	cov.checkpoints++;
}

static bool sim_step(struct sim *s, bool may_begin)
{
	bool can_log;
	uint64_t r;

	if ((s->nops > 0 || s->ntimers > 0) && chance(s, 4))
		checkpoint(s);
	can_log = coordinator_memlog_pending(&s->log) > 0;
	r = rnd(s) % 100;
	s->now++;
	s->steps++;
	if (may_begin && s->ntx < s->max_tx &&
	    (r < 15 || (!s->nops && !can_log))) {
		begin_one(s);
		return true;
	}
	if (s->nops > 0 && (r < 75 || !can_log)) {
		deliver(s, (int)(rnd(s) % (uint64_t)s->nops));
		return true;
	}
	if (can_log && (r < 97 || s->ntimers == 0)) {
		coordinator_memlog_flush(&s->log, 1);
		return true;
	}
	if (s->ntimers > 0) {
		fire_timer(s);
		return true;
	}
	return false;
}

static struct coordinator_engine *new_engine(bool log_aborts)
{
	static const uint64_t bo[] = {5, 10, 20};
	struct coordinator_engine_config cfg = {
	    .cluster = "bank",
	    .timeout_ms = 200,
	    .backoff_ms = bo,
	    .nbackoff = 3,
	    .log_aborts = log_aborts,
	};
	struct coordinator_engine *e;

	ck_assert_int_eq(coordinator_engine_new(&cfg, &e), 0);
	return e;
}

/* Power loss at the coordinator, then a restart that recovers. */
static void crash_and_recover(struct sim *s)
{
	struct coordinator_recovery *r;
	struct coordinator_fx fx;

	/* in-flight operations land or not; unprepared work dies with the
	 * connections */
	for (int k = 0; k < s->nops; k++) {
		struct sbranch *b = branch_of(s, s->ops[k].gid);

		if (!chance(s, 50))
			continue;
		switch (s->ops[k].type) {
		case COORDINATOR_FX_PREPARE:
			if (b->st == B_OPEN && !b->stmt_fail)
				b->st = b->ro	     ? B_RO_DONE
					: b->vote_no ? B_ROLLED_BACK
						     : B_PREPARED;
			break;
		case COORDINATOR_FX_COMMIT_ONE_PHASE:
			if (b->st == B_OPEN)
				b->st = b->ro ? B_RO_DONE : B_COMMITTED;
			break;
		case COORDINATOR_FX_COMMIT_PREPARED:
			if (b->st == B_PREPARED)
				b->st = B_COMMITTED;
			break;
		case COORDINATOR_FX_ROLLBACK_PREPARED:
			if (b->st == B_PREPARED)
				b->st = B_ROLLED_BACK;
			break;
		default:
			break;
		}
	}
	for (int i = 0; i < s->nbr; i++) {
		if (s->br[i].st == B_OPEN)
			s->br[i].st = B_ROLLED_BACK;
	}
	s->nops = 0;
	s->ntimers = 0;
	s->crashing = true;
	coordinator_memlog_crash(&s->log);
	s->crashing = false;
	coordinator_engine_free(s->e);

	s->e = new_engine(s->log_aborts);
	ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
	ck_assert_int_eq(coordinator_recovery_replay(r, &s->log), 0);
	coordinator_fx_init(&fx);
	ck_assert_int_eq(coordinator_engine_recover(s->e, r, s->now, &fx), 0);
	cov.crashes++;
	cov.redriven_commits += (long)coordinator_fx_count(
	    &fx, COORDINATOR_FX_COMMIT_PREPARED, false);
	process(s, &fx);
	coordinator_fx_clear(&fx);
	/* the epoch record becomes durable; clients retry, before or after
	 * the resources' prepared lists are resolved */
	coordinator_memlog_flush(&s->log, 1);
	ck_assert(coordinator_table_is_ready(coordinator_engine_table(s->e)));
	if (chance(s, 50)) {
		retry_untold(s);
		cov.recovered_rollbacks += resolve_all(s, r);
	} else {
		cov.recovered_rollbacks += resolve_all(s, r);
		retry_untold(s);
	}
	coordinator_recovery_free(r);
}

static int not_done(void *arg, const struct coordinator_txn *x)
{
	(*(int *)arg) += x->state != COORDINATOR_TXN_DONE;
	return 0;
}

static void check(struct sim *s)
{
	int open = 0;

	for (int i = 0; i < s->nbr; i++)
		ck_assert_msg(s->br[i].st != B_PREPARED,
			      "seed %u crash %ld: %s left prepared", s->seed,
			      s->crash_at, s->br[i].gid);
	for (int t = 0; t < s->ntx; t++) {
		struct stxn *x = &s->tx[t];
		int committed = 0, rolled = 0, writers = 0;

		for (int i = x->first; i < x->first + x->nb; i++) {
			enum bst st = s->br[i].st;

			committed += st == B_COMMITTED;
			rolled += st == B_ROLLED_BACK;
			writers += !s->br[i].ro;
		}
		ck_assert_msg(committed == 0 || rolled == 0,
			      "seed %u crash %ld: %s not atomic (%d committed, "
			      "%d rolled back)",
			      s->seed, s->crash_at, x->id, committed, rolled);
		if (x->told == COORDINATOR_OUTCOME_COMMITTED)
			ck_assert_msg(committed == writers,
				      "seed %u crash %ld: %s told committed, "
				      "%d/%d committed",
				      s->seed, s->crash_at, x->id, committed,
				      writers);
		if (x->told == COORDINATOR_OUTCOME_ABORTED)
			ck_assert_msg(
			    committed == 0,
			    "seed %u crash %ld: %s told aborted, committed",
			    s->seed, s->crash_at, x->id);
	}
	/* idempotency: one key, at most one committed transaction (1PC has no
	 * record to remember its key by; see docs/protocol.md) */
	for (int t = 0; t < s->ntx; t++) {
		int commits = 0;

		for (int u = 0; u < s->ntx; u++) {
			bool c = false;

			if (s->tx[u].key != s->tx[t].key || s->tx[u].nb < 2)
				continue;
			for (int i = s->tx[u].first;
			     i < s->tx[u].first + s->tx[u].nb; i++)
				c = c || s->br[i].st == B_COMMITTED;
			commits += c;
		}
		ck_assert_msg(commits <= 1,
			      "seed %u crash %ld: key k%d committed %d times",
			      s->seed, s->crash_at, s->tx[t].key, commits);
	}
	coordinator_table_list(coordinator_engine_table(s->e), 0, true,
			       not_done, &open);
	ck_assert_msg(open == 0, "seed %u crash %ld: %d txns not done", s->seed,
		      s->crash_at, open);
}

/* Asks every resource for its prepared gids and reconciles them. */
static long reconcile_all(struct sim *s, const struct coordinator_recovery *r)
{
	struct coordinator_fx fx;
	long issued = 0;

	coordinator_fx_init(&fx);
	for (int res = 1; res <= 3; res++) {
		const char *gids[MAXB];
		char name[16];
		size_t n = 0;
		long k;

		snprintf(name, sizeof(name), "r%d", res);
		for (int i = 0; i < s->nbr; i++) {
			if (s->br[i].st == B_PREPARED &&
			    strcmp(s->br[i].resource, name) == 0)
				gids[n++] = s->br[i].gid;
		}
		k = coordinator_engine_reconcile(s->e, r, name, gids, n, s->now,
						 &fx);
		ck_assert_int_ge(k, 0);
		issued += k;
		process(s, &fx);
		coordinator_fx_clear(&fx);
	}
	return issued;
}

/* Every resource's prepared list at once, as after a restart. */
static long resolve_all(struct sim *s, const struct coordinator_recovery *r)
{
	struct coordinator_prepared items[MAXB];
	struct coordinator_fx fx;
	size_t n = 0;
	long k;

	for (int i = 0; i < s->nbr; i++) {
		if (s->br[i].st == B_PREPARED) {
			items[n].resource = s->br[i].resource;
			items[n].gid = s->br[i].gid;
			n++;
		}
	}
	coordinator_fx_init(&fx);
	k = coordinator_engine_resolve(s->e, r, items, n, s->now, &fx);
	ck_assert_int_ge(k, 0);
	for (size_t i = 0; i < fx.n; i++) {
		if (fx.v[i].type == COORDINATOR_FX_LOG &&
		    fx.v[i].rec->type == COORDINATOR_REC_COMMIT) {
			ck_assert(s->log_aborts);
			cov.finished++;
		}
	}
	process(s, &fx);
	coordinator_fx_clear(&fx);
	return k;
}

/* Runs until nothing is left, with the periodic reconciler at each lull
 * (DESIGN.md section 9: a PREPARE may land after its rollback). */
static void settle(struct sim *s, bool may_begin)
{
	for (int round = 0; round < 50; round++) {
		for (long guard = 0; guard < 100000 && sim_step(s, may_begin);
		     guard++)
			;
		if (reconcile_all(s, NULL) == 0)
			return;
	}
}

/* Runs seed with a crash after crash_at steps (-1: none); returns steps. */
static long run(unsigned seed, long crash_at, long crash2_at)
{
	struct sim *s = calloc(1, sizeof(*s));
	struct coordinator_fx fx;
	long steps;
	bool more = true;

	s->seed = seed;
	s->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed * 0x100000001b3ull);
	s->crash_at = crash_at;
	s->max_tx = 4;
	s->log_aborts = seed % 2 == 0;
	ck_assert_int_eq(coordinator_memlog_open(&s->log), 0);
	/* first start: empty log, epoch 1 */
	s->e = new_engine(s->log_aborts);
	{
		struct coordinator_recovery *r;

		ck_assert_int_eq(coordinator_recovery_new("bank", &r), 0);
		coordinator_fx_init(&fx);
		ck_assert_int_eq(coordinator_engine_recover(s->e, r, 0, &fx),
				 0);
		process(s, &fx);
		coordinator_fx_clear(&fx);
		coordinator_recovery_free(r);
		coordinator_memlog_flush(&s->log, 0);
	}
	while (more && (crash_at < 0 || s->steps < crash_at))
		more = sim_step(s, true);
	if (crash_at >= 0 && more) {
		crash_and_recover(s);
		if (crash2_at > 0) {
			long stop = s->steps + crash2_at;

			while (s->steps < stop && sim_step(s, false))
				;
			crash_and_recover(s);
		}
	}
	settle(s, crash_at < 0);
	ck_assert_msg(!sim_step(s, false), "seed %u crash %ld: no quiescence",
		      seed, crash_at);
	check(s);
	cov.runs++;
	for (int t = 0; t < s->ntx; t++) {
		cov.told_committed +=
		    s->tx[t].told == COORDINATOR_OUTCOME_COMMITTED;
		cov.told_aborted +=
		    s->tx[t].told == COORDINATOR_OUTCOME_ABORTED;
		cov.told_unknown +=
		    s->tx[t].told == COORDINATOR_OUTCOME_UNKNOWN;
	}
	if (crash_at < 0) {
		for (int t = 0; t < s->ntx; t++)
			ck_assert_msg(s->tx[t].replies == 1,
				      "seed %u: %s never answered", seed,
				      s->tx[t].id);
	}
	steps = s->steps;
	coordinator_engine_free(s->e);
	coordinator_log_close(&s->log);
	free(s);
	return steps;
}

START_TEST(runs_without_crash_are_atomic_and_answered)
{
	unsigned only =
	    getenv("COORD_SEED") ? (unsigned)atoi(getenv("COORD_SEED")) : 0;

	for (unsigned seed = 1; seed <= 200; seed++)
		if (!only || seed == only)
			run(seed, -1, 0);
}
END_TEST

START_TEST(crash_at_every_step_recovers_atomically)
{
	for (unsigned seed = 1; seed <= 100; seed++) {
		long total = run(seed, -1, 0);

		for (long k = 0; k <= total; k++)
			run(seed, k, 0);
	}
	if (getenv("COORD_TRACE_COV"))
		fprintf(stderr,
			"runs %ld crashes %ld committed %ld aborted %ld "
			"unknown %ld redriven %ld rolled back %ld retries new "
			"%ld existing %ld\n",
			cov.runs, cov.crashes, cov.told_committed,
			cov.told_aborted, cov.told_unknown,
			cov.redriven_commits, cov.recovered_rollbacks,
			cov.retries_new, cov.retries_existing);
	if (getenv("COORD_TRACE_COV"))
		fprintf(stderr, "finished (raft mode) %ld checkpoints %ld\n",
			cov.finished, cov.checkpoints);
	/* the runs reached the paths that matter */
	ck_assert_int_gt(cov.crashes, 1000);
	ck_assert_int_gt(cov.told_committed, 500);
	ck_assert_int_gt(cov.told_aborted, 100);
	ck_assert_int_gt(cov.redriven_commits, 50);
	ck_assert_int_gt(cov.recovered_rollbacks, 50);
	ck_assert_int_gt(cov.retries_existing, 50);
	ck_assert_int_gt(cov.retries_new, 50);
	ck_assert_int_gt(cov.finished, 20);
	ck_assert_int_gt(cov.duplicates, 100);
	ck_assert_int_gt(cov.checkpoints, 1000);
}
END_TEST

START_TEST(crash_during_recovery_recovers_atomically)
{
	if (getenv("COORD_ONLY")) {
		unsigned seed;
		long k, k2;

		if (sscanf(getenv("COORD_ONLY"), "%u,%ld,%ld", &seed, &k,
			   &k2) == 3) {
			run(seed, k, k2);
			return;
		}
	}
	for (unsigned seed = 100; seed <= 130; seed++) {
		long total = run(seed, -1, 0);

		for (long k = 0; k <= total; k += 3)
			for (long k2 = 1; k2 < 12; k2 += 4)
				run(seed, k, k2);
	}
	ck_assert_int_gt(cov.crashes, 500);
	ck_assert_int_gt(cov.redriven_commits, 20);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    runs_without_crash_are_atomic_and_answered,
	    crash_at_every_step_recovers_atomically,
	    crash_during_recovery_recovers_atomically,
	    NULL,
	};

	return suite_main("coordinator_crash", 60, tests);
}
