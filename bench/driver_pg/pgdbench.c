/*
 * pgdbench.c - what the postgres driver costs over raw libpq: one branch
 * cycle (BEGIN; UPDATE one row; PREPARE TRANSACTION; COMMIT PREPARED), run
 * by N concurrent clients for a fixed time, two ways:
 *
 *   libpq   N threads, each with its own blocking connection (the ceiling:
 *           no loop, no pool, no queue);
 *   driver  N clients on one libuv loop sharing a pool of N + 4
 *           connections through coordinator_pg_*() (a branch holds one from
 *           BEGIN to PREPARE; COMMIT PREPARED and the session reset take
 *           any free one), with the session reset on (the default) and off
 *           (keep_session_state).  The driver sends BEGIN with the UPDATE
 *           in one round trip (3 round trips per cycle against the
 *           baseline's 4) and skips the reset after plain DML, so since
 *           then both driver columns send the same statements.
 *
 * Each client updates its own row, so no client waits for another's lock.
 * Every run warms up for a fraction of a second (connections open) before
 * it measures.  Output: one markdown table on stdout.
 *
 *   pgdbench --conninfo STR [--seconds S] [--clients 1,16,64]
 */
#include "coordinator/coordinator.h"

#include "common/common.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define MAX_CLIENTS 80 /* the harness server allows 100 connections */
#define WARMUP_NS   300000000ull

struct lat {
	uint64_t *v;
	size_t n, cap;
};

static void lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4096;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_ms(struct lat *l, double p)
{
	size_t i;

	if (l->n == 0)
		return 0;
	qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
	i = (size_t)(p * (double)(l->n - 1));
	return (double)l->v[i] / 1e6;
}

struct figures {
	double per_sec, p50, p99;
	/* client CPU per measured cycle (the warm-up included, so an upper
	 * bound): the loop thread for the driver, all threads for libpq */
	double cpu;
	int errors;
};

static double cpu_us(int who)
{
	struct rusage ru;

	getrusage(who, &ru);
	return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

static const char *conninfo;

/* ---- libpq, blocking, one thread per client ---------------------------- */

struct thr {
	int id;
	uint64_t start, end; /* measuring window (uv_hrtime) */
	struct lat lat;
	int errors;
};

static bool ok(PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	PQclear(r);
	return good;
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	PGconn *c = PQconnectdb(conninfo);
	char id[16], gid[64], sql[128];
	const char *p[1] = {id};
	uint64_t seq = 0;

	snprintf(id, sizeof(id), "%d", t->id + 1);
	if (PQstatus(c) != CONNECTION_OK) {
		t->errors++;
		PQfinish(c);
		return NULL;
	}
	for (;;) {
		uint64_t t0 = uv_hrtime();
		bool good;

		if (t0 >= t->end)
			break;
		snprintf(gid, sizeof(gid), "pgdbench_l_%d_%" PRIu64, t->id,
			 seq++);
		good = ok(PQexec(c, "BEGIN")) &&
		       ok(PQexecParams(c,
				       "UPDATE pgdbench_accounts SET balance = "
				       "balance + 1 WHERE id = $1",
				       1, NULL, p, NULL, NULL, 0));
		snprintf(sql, sizeof(sql), "PREPARE TRANSACTION '%s'", gid);
		good = good && ok(PQexec(c, sql));
		snprintf(sql, sizeof(sql), "COMMIT PREPARED '%s'", gid);
		good = good && ok(PQexec(c, sql));
		if (!good) {
			t->errors++;
			ok(PQexec(c, "ROLLBACK"));
			continue;
		}
		if (t0 >= t->start)
			lat_add(&t->lat, uv_hrtime() - t0);
	}
	PQfinish(c);
	return NULL;
}

static struct figures run_libpq(int n, double seconds)
{
	pthread_t tid[MAX_CLIENTS];
	struct thr t[MAX_CLIENTS];
	struct lat all = {0};
	struct figures f = {0};
	double cpu0 = cpu_us(RUSAGE_SELF);
	uint64_t start = uv_hrtime() + WARMUP_NS;
	uint64_t end = start + (uint64_t)(seconds * 1e9);

	for (int i = 0; i < n; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].id = i;
		t[i].start = start;
		t[i].end = end;
		pthread_create(&tid[i], NULL, thr_main, &t[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(tid[i], NULL);
		for (size_t k = 0; k < t[i].lat.n; k++)
			lat_add(&all, t[i].lat.v[k]);
		f.errors += t[i].errors;
		free(t[i].lat.v);
	}
	f.per_sec = (double)all.n / seconds;
	f.cpu = all.n ? (cpu_us(RUSAGE_SELF) - cpu0) / (double)all.n : 0;
	f.p50 = pct_ms(&all, 0.50);
	f.p99 = pct_ms(&all, 0.99);
	free(all.v);
	return f;
}

/* ---- the driver, one loop ---------------------------------------------- */

struct drv;

struct client {
	struct drv *d;
	int id;
	uint64_t seq, t0;
	char id_s[16];
	char gid[64];
	struct coordinator_pg_branch *b;
};

struct drv {
	uv_loop_t loop;
	struct coordinator_pg *pg;
	uint64_t start, end;
	struct lat lat;
	int errors;
	int running;
	struct client c[MAX_CLIENTS];
};

static void cycle(struct client *c);

static void on_committed(const struct coordinator_pg_result *r, void *data)
{
	struct client *c = data;
	struct drv *d = c->d;

	if (r->outcome != COORDINATOR_PG_OK)
		d->errors++;
	else if (c->t0 >= d->start)
		lat_add(&d->lat, uv_hrtime() - c->t0);
	cycle(c);
}

static void on_prepared(const struct coordinator_pg_result *r, void *data)
{
	struct client *c = data;

	if (r->outcome != COORDINATOR_PG_OK ||
	    coordinator_pg_commit_prepared(c->d->pg, c->gid, on_committed, c) <
		0) {
		c->d->errors++;
		cycle(c);
	}
}

static void on_rolled_back(const struct coordinator_pg_result *r, void *data)
{
	cycle(data);
}

static void on_updated(const struct coordinator_pg_result *r, void *data)
{
	struct client *c = data;
	int rc;

	if (r->outcome != COORDINATOR_PG_OK) {
		c->d->errors++;
		rc = coordinator_pg_branch_rollback(c->b, on_rolled_back, c);
	} else {
		rc =
		    coordinator_pg_branch_prepare(c->b, c->gid, on_prepared, c);
	}
	if (rc < 0) {
		c->d->errors++;
		cycle(c);
	}
}

static void on_begun(const struct coordinator_pg_result *r, void *data)
{
	struct client *c = data;
	const char *p[1] = {c->id_s};

	if (r->outcome != COORDINATOR_PG_OK) {
		c->d->errors++;
		cycle(c);
		return;
	}
	if (coordinator_pg_branch_exec(c->b,
				       "UPDATE pgdbench_accounts SET balance "
				       "= balance + 1 WHERE id = $1",
				       1, p, on_updated, c) < 0) {
		c->d->errors++;
		if (coordinator_pg_branch_rollback(c->b, on_rolled_back, c) < 0)
			cycle(c);
	}
}

/* Starts the client's next cycle, or retires it when time is up. */
static void cycle(struct client *c)
{
	struct drv *d = c->d;

	c->t0 = uv_hrtime();
	if (c->t0 >= d->end) {
		if (--d->running == 0)
			coordinator_pg_close(d->pg, NULL, NULL);
		return;
	}
	snprintf(c->gid, sizeof(c->gid), "pgdbench_d_%d_%" PRIu64, c->id,
		 c->seq++);
	if (coordinator_pg_begin(d->pg, on_begun, c, &c->b) < 0) {
		d->errors++;
		if (--d->running == 0)
			coordinator_pg_close(d->pg, NULL, NULL);
	}
}

static struct figures run_driver(int n, double seconds, bool keep)
{
	struct coordinator_pg_config cfg = {0};
	struct drv *d = calloc(1, sizeof(*d));
	struct figures f = {0};
	char err[256];
	double cpu0;

	if (d == NULL) {
		f.errors = 1;
		return f;
	}
	uv_loop_init(&d->loop);
	cfg.name = "bench";
	cfg.conninfo = conninfo;
	cfg.pool_size = n + 4;
	cfg.statement_timeout_ms = 10000;
	cfg.keep_session_state = keep;
	if (coordinator_pg_open(&d->loop, &cfg, &d->pg, err, sizeof(err)) < 0) {
		fprintf(stderr, "pgdbench: %s\n", err);
		f.errors = 1;
		free(d);
		return f;
	}
	d->start = uv_hrtime() + WARMUP_NS;
	d->end = d->start + (uint64_t)(seconds * 1e9);
	d->running = n;
	for (int i = 0; i < n; i++) {
		struct client *c = &d->c[i];

		c->d = d;
		c->id = i;
		snprintf(c->id_s, sizeof(c->id_s), "%d", i + 1);
		cycle(c);
	}
	cpu0 = cpu_us(RUSAGE_THREAD);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	uv_loop_close(&d->loop);
	/* Includes the warm-up: an upper bound per measured cycle. */
	f.cpu =
	    d->lat.n ? (cpu_us(RUSAGE_THREAD) - cpu0) / (double)d->lat.n : 0;
	f.per_sec = (double)d->lat.n / seconds;
	f.p50 = pct_ms(&d->lat, 0.50);
	f.p99 = pct_ms(&d->lat, 0.99);
	f.errors = d->errors;
	free(d->lat.v);
	free(d);
	return f;
}

/* ---- main -------------------------------------------------------------- */

static int setup(void)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *r;
	int rc = 0;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pgdbench: cannot connect: %s",
			PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	if (!ok(PQexec(c, "CREATE TABLE IF NOT EXISTS pgdbench_accounts "
			  "(id int PRIMARY KEY, balance bigint NOT NULL)")) ||
	    !ok(PQexec(c, "INSERT INTO pgdbench_accounts SELECT g, 0 FROM "
			  "generate_series(1, 100) g ON CONFLICT DO NOTHING")))
		rc = -1;
	/* Leftovers of an interrupted run hold row locks: undo them. */
	r = PQexec(c, "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE "
		      "'pgdbench!_%' ESCAPE '!'");
	for (int i = 0;
	     PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
		char sql[128];

		snprintf(sql, sizeof(sql), "ROLLBACK PREPARED '%s'",
			 PQgetvalue(r, i, 0));
		ok(PQexec(c, sql));
	}
	PQclear(r);
	PQfinish(c);
	return rc;
}

int main(int argc, char **argv)
{
	double seconds = 2;
	const char *clients = "1,16,64";
	char *list, *tok, *save = NULL;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--conninfo") == 0)
			conninfo = argv[i + 1];
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--clients") == 0)
			clients = argv[i + 1];
	}
	if (conninfo == NULL || seconds <= 0) {
		fprintf(stderr, "usage: pgdbench --conninfo STR [--seconds S] "
				"[--clients 1,16,64]\n");
		return 2;
	}
	log_set_level(LOG_ERROR);
	if (setup() < 0)
		return 1;
	printf("| clients | libpq cycles/s | p50 ms | p99 ms | driver "
	       "cycles/s | p50 ms | p99 ms | driver/libpq | driver, "
	       "keep_session_state cycles/s | p50 ms | p99 ms | client CPU "
	       "us/cycle: libpq, driver | errors |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	list = strdup(clients);
	for (tok = strtok_r(list, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		int n = atoi(tok);
		struct figures l, d, k;

		if (n < 1 || n > MAX_CLIENTS) {
			fprintf(stderr, "pgdbench: clients must be 1..%d\n",
				MAX_CLIENTS);
			free(list);
			return 2;
		}
		l = run_libpq(n, seconds);
		d = run_driver(n, seconds, false);
		k = run_driver(n, seconds, true);
		printf("| %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f "
		       "| %.0f | %.2f | %.2f | %.0f, %.0f | %d |\n",
		       n, l.per_sec, l.p50, l.p99, d.per_sec, d.p50, d.p99,
		       l.per_sec > 0 ? d.per_sec / l.per_sec : 0, k.per_sec,
		       k.p50, k.p99, l.cpu, d.cpu,
		       l.errors + d.errors + k.errors);
		fflush(stdout);
	}
	free(list);
	return 0;
}
