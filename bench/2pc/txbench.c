/*
 * txbench.c - load generator for bench/2pc: N concurrent clients doing
 * transfers between two PostgreSQL databases, either through a decree
 * coordinator (mode "decree") or by driving two-phase commit on both
 * databases directly (mode "ceiling": no coordinator, no decision log).
 *
 *   txbench decree  --port P [options]
 *   txbench ceiling --conn0 CONNINFO --conn1 CONNINFO [options]
 *   txbench both    --port P --conn0 CONNINFO --conn1 CONNINFO [options]
 *   options: --clients N (1) --seconds S (8, per mode) --rounds R (4)
 *            --warmup S (1) --accounts A (10000) --seed N
 *            --ceiling-style one|split|decree|pipeline (one)
 *
 * A transfer moves 1 from a random account of database 0 (resource bank_a)
 * to a random account of database 1 (bank_b).  "both" alternates rounds of
 * the two modes (R rounds of S/R seconds each, the order flipping every
 * round) so that both see the same background load.  Prints one line per
 * mode:
 *   RESULT mode=M clients=N commits=C seconds=S rate=R p50_ms=X p99_ms=Y
 *          errors=E [syncs=K decided=D syncs_per_commit=Z]
 *          [pg_cpu_ms_per_commit=P] client_cpu_ms_per_commit=Q
 * where commits, rate and the latencies count the transfers completed in
 * the measured windows (after the warm-up of the first round of each
 * mode); for decree, syncs and decided are the growth of the coordinator's
 * decree_wal_syncs_total and committed decree_txns_total over its rounds
 * (read from /metrics, after the coordinator has finished phase 2 of every
 * transaction).  pg_cpu_ms_per_commit (modes with ceiling connections,
 * which lead to the postmasters) is the CPU the two PostgreSQL servers
 * spent during the mode's rounds (decree's: until its phase 2 finished) per
 * transfer completed in them; client_cpu_ms_per_commit is txbench's own.
 * Exit 0 unless something failed.
 *
 * Design notes
 *  - One thread, one epoll loop for every client of both modes, so both
 *    sides pay the same client cost (the machine has few cores and the
 *    client shares them with the servers).
 *  - decree mode: each client holds one keep-alive HTTP/1.1 connection and
 *    one request in flight: POST /v1/txns, then waits for the whole
 *    response (every response carries Content-Length).  A transfer counts
 *    as committed when the status is 200 and the outcome is "committed"
 *    (decree answers once the commit decision is durable).
 *  - ceiling mode: each client holds one connection per database in
 *    nonblocking libpq mode.  Phase 1 sends "BEGIN; UPDATE ...; PREPARE
 *    TRANSACTION 'gid'" to both databases at once (one round trip each,
 *    in parallel); when both have answered, phase 2 sends COMMIT PREPARED
 *    to both at once; the transfer is done when both have answered.  This
 *    is the least a client can do for an atomic transfer with 2PC.
 *    --ceiling-style split sends BEGIN, the UPDATE (extended protocol, a
 *    parameter) and PREPARE TRANSACTION as three round trips instead, and
 *    "decree" adds the session reset decree's driver sends after a branch:
 *    experiments that show what decree's statement pattern costs on the
 *    databases, without a coordinator.
 *  - The window ends after --seconds; no new transfer starts after it, and
 *    the ones in flight are finished (bounded) so no prepared transaction
 *    is left behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define INBUF	    65536
#define DRAIN_NS    (15ull * 1000000000ull)

enum mode { MODE_DECREE, MODE_CEILING, MODE_BOTH };

/* How the ceiling runs phase 1 on each database. */
enum style {
	STYLE_ONE,     /* BEGIN; UPDATE; PREPARE as one simple query */
	STYLE_SPLIT,   /* three round trips, UPDATE with a parameter */
	STYLE_DECREE,  /* split, then decree's session reset (an experiment) */
	STYLE_PIPELINE /* decree's phase 1: one libpq pipeline per branch */
};

struct opts {
	enum mode mode;
	int port;
	const char *conn[2];
	int clients;
	int rounds;
	double seconds;
	double warmup;
	int accounts;
	uint64_t seed;
	enum style style;
};

/* Latencies (microseconds) of the transfers completed in the windows. */
struct stats {
	uint32_t *lat;
	size_t n, cap;
	uint64_t errors;
	char first_error[512];
	double seconds; /* measured */
	uint64_t all;	/* transfers completed, warm-up and drain included */
	double pg_ms;	/* CPU of the PostgreSQL servers during the rounds */
	double self_ms; /* CPU of txbench during the rounds */
};

struct client;

/* What an epoll event points at: a client and which of its sockets. */
struct ref {
	struct client *cl;
	int idx;
};

struct client {
	int id;
	enum mode mode;
	uint64_t rng;
	uint64_t t_start;
	uint64_t seq;
	bool active; /* a transfer is in flight */
	/* decree */
	int fd;
	char out[1024];
	size_t outlen, outoff;
	char *in;
	size_t inlen;
	/* ceiling */
	PGconn *pq[2];
	int pending[2]; /* 1 while a query's results are still coming */
	int phase;	/* 1 prepare, 2 commit prepared */
	int step[2];	/* next step of phase 1 per connection */
	int a, b;	/* the accounts of the transfer */
	bool want_out[2];
	char gid[64];
	struct ref ref[2];
};

static struct opts O;
static struct stats S[2]; /* by mode */
static struct stats *cur; /* of the round running */
static int ep = -1;
static int postmaster[2]; /* pids, found through the ceiling's backends */
static uint64_t t_measure0, t_measure1; /* the round's window */
static bool stopping;
static size_t inflight;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "txbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t rnd(struct client *c)
{
	/* xorshift64* */
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return c->rng * 2685821657736338717ull;
}

static int account(struct client *c)
{
	return 1 + (int)(rnd(c) % (uint64_t)O.accounts);
}

static void record_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void record_error(const char *fmt, ...)
{
	va_list ap;

	if (cur->errors++ == 0) {
		va_start(ap, fmt);
		vsnprintf(cur->first_error, sizeof(cur->first_error), fmt, ap);
		va_end(ap);
	}
}

static void record_done(struct client *c)
{
	uint64_t t = now_ns();

	c->active = false;
	inflight--;
	cur->all++;
	if (t < t_measure0 || t > t_measure1)
		return;
	if (cur->n == cur->cap) {
		size_t cap = cur->cap ? cur->cap * 2 : 65536;
		uint32_t *p = realloc(cur->lat, cap * sizeof(*p));

		if (p == NULL)
			die("out of memory");
		cur->lat = p;
		cur->cap = cap;
	}
	cur->lat[cur->n++] = (uint32_t)((t - c->t_start) / 1000);
}

static void ep_set(int fd, void *ptr, bool out, int op)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
				 .data.ptr = ptr};

	if (epoll_ctl(ep, op, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

/* ------------------------------------------------------------- decree */

static void http_connect(struct client *c)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)O.port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect to 127.0.0.1:%d: %s", O.port, strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
		die("fcntl: %s", strerror(errno));
	c->ref[0].cl = c;
	c->ref[0].idx = 0;
	ep_set(c->fd, &c->ref[0], false, EPOLL_CTL_ADD);
	c->inlen = 0;
}

static void http_reconnect(struct client *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	http_connect(c);
}

static void http_flush(struct client *c)
{
	while (c->outoff < c->outlen) {
		ssize_t w =
		    write(c->fd, c->out + c->outoff, c->outlen - c->outoff);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			ep_set(c->fd, &c->ref[0], true, EPOLL_CTL_MOD);
			return;
		}
		if (w < 0)
			die("write to coordinator: %s", strerror(errno));
		c->outoff += (size_t)w;
	}
}

static void decree_start(struct client *c)
{
	char body[512];
	int a = account(c), b = account(c);
	int blen = snprintf(
	    body, sizeof(body),
	    "{\"branches\":[{\"resource\":\"bank_a\",\"statements\":[{"
	    "\"sql\":\"update accounts set balance = balance - $1 where "
	    "id = $2\",\"params\":[1,%d]}]},{\"resource\":\"bank_b\","
	    "\"statements\":[{\"sql\":\"update accounts set balance = "
	    "balance + $1 where id = $2\",\"params\":[1,%d]}]}]}",
	    a, b);

	c->outlen = (size_t)snprintf(
	    c->out, sizeof(c->out),
	    "POST /v1/txns HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
	    O.port, blen, body);
	c->outoff = 0;
	c->inlen = 0;
	c->active = true;
	inflight++;
	c->t_start = now_ns();
	http_flush(c);
}

/* Value of header NAME in the head [h, h+n), or NULL. */
static const char *header(const char *h, size_t n, const char *name)
{
	size_t nl = strlen(name);
	const char *p = h, *end = h + n;

	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nl && p[nl] == ':' &&
		    strncasecmp(p, name, nl) == 0) {
			p += nl + 1;
			while (*p == ' ')
				p++;
			return p;
		}
		p = eol + 2;
	}
	return NULL;
}

static void decree_readable(struct client *c)
{
	const char *hend, *v;
	size_t hlen, clen;
	int status;
	bool close_after;

	for (;;) {
		ssize_t r = read(c->fd, c->in + c->inlen, INBUF - 1 - c->inlen);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			break;
		if (r < 0)
			die("read from coordinator: %s", strerror(errno));
		if (r == 0) {
			if (c->active) {
				record_error("coordinator closed the "
					     "connection mid-request");
				c->active = false;
				inflight--;
			}
			http_reconnect(c);
			return;
		}
		c->inlen += (size_t)r;
		if (c->inlen >= INBUF - 1)
			die("response larger than %d bytes", INBUF);
	}
	c->in[c->inlen] = '\0';
	hend = strstr(c->in, "\r\n\r\n");
	if (hend == NULL)
		return;
	hlen = (size_t)(hend - c->in) + 4;
	v = header(c->in, hlen, "Content-Length");
	if (v == NULL)
		die("response without Content-Length");
	clen = strtoul(v, NULL, 10);
	if (c->inlen < hlen + clen)
		return;
	if (!c->active)
		die("response without a request");
	if (sscanf(c->in, "HTTP/1.%*d %d", &status) != 1)
		die("bad status line");
	v = header(c->in, hlen, "Connection");
	close_after = v != NULL && strncasecmp(v, "close", 5) == 0;
	if (status == 200 &&
	    strstr(c->in + hlen, "\"outcome\":\"committed\"") != NULL) {
		record_done(c);
	} else {
		record_error("status %d: %.300s", status, c->in + hlen);
		c->active = false;
		inflight--;
	}
	c->inlen = 0;
	if (close_after)
		http_reconnect(c);
	if (!stopping)
		decree_start(c);
}

/* ------------------------------------------------------------ ceiling */

static void pq_flush(struct client *c, int i)
{
	int r = PQflush(c->pq[i]);

	if (r < 0)
		die("PQflush: %s", PQerrorMessage(c->pq[i]));
	if ((r == 1) != c->want_out[i]) {
		c->want_out[i] = r == 1;
		ep_set(PQsocket(c->pq[i]), &c->ref[i], c->want_out[i],
		       EPOLL_CTL_MOD);
	}
}

/* Sends SQL on connection i: a simple query when param is 0, else the
 * extended protocol with $1 = param (as decree's driver does). */
static void pq_send(struct client *c, int i, const char *sql, int param)
{
	char v[16];
	const char *vals[1] = {v};
	int ok;

	if (param == 0) {
		ok = PQsendQuery(c->pq[i], sql);
	} else {
		snprintf(v, sizeof(v), "%d", param);
		ok = PQsendQueryParams(c->pq[i], sql, 1, NULL, vals, NULL, NULL,
				       0);
	}
	if (!ok)
		die("send: %s", PQerrorMessage(c->pq[i]));
	c->pending[i] = 1;
	pq_flush(c, i);
}

/* What decree's driver sends after a branch's PREPARE on a connection
 * that ran user statements (coordinator/driver_pg.c, OP_RESET). */
#define RESET_SQL "DISCARD ALL"

/* Sends step c->step[i] of phase 1 on connection i; false when the phase
 * has no more steps there. */
static bool ceiling_step(struct client *c, int i)
{
	char sql[256];
	int acct = i == 0 ? c->a : c->b;
	const char *op = i == 0 ? "-" : "+";
	int step = c->step[i]++;

	if (O.style == STYLE_PIPELINE) {
		char v[16];
		const char *vals[1] = {v};
		PGconn *pq = c->pq[i];

		if (step > 0)
			return false;
		/* What coordinator/driver_pg.c's run_prepare sends: BEGIN,
		 * the statement by name (prepared at connect), PREPARE
		 * TRANSACTION, one Sync. */
		snprintf(v, sizeof(v), "%d", acct);
		snprintf(sql, sizeof(sql), "PREPARE TRANSACTION '%s'", c->gid);
		if (!PQenterPipelineMode(pq) ||
		    !PQsendQueryParams(pq, "BEGIN", 0, NULL, NULL, NULL, NULL,
				       0) ||
		    !PQsendQueryPrepared(pq, i == 0 ? "debit" : "credit", 1,
					 vals, NULL, NULL, 0) ||
		    !PQsendQueryParams(pq, sql, 0, NULL, NULL, NULL, NULL, 0) ||
		    !PQpipelineSync(pq))
			die("pipeline: %s", PQerrorMessage(pq));
		c->pending[i] = 1;
		pq_flush(c, i);
		return true;
	}
	if (O.style == STYLE_ONE) {
		if (step > 0)
			return false;
		snprintf(sql, sizeof(sql),
			 "BEGIN; UPDATE accounts SET balance = balance %s 1 "
			 "WHERE id = %d; PREPARE TRANSACTION '%s'",
			 op, acct, c->gid);
		pq_send(c, i, sql, 0);
		return true;
	}
	switch (step) {
	case 0:
		pq_send(c, i, "BEGIN", 0);
		return true;
	case 1:
		snprintf(sql, sizeof(sql),
			 "update accounts set balance = balance %s 1 where "
			 "id = $1",
			 op);
		pq_send(c, i, sql, acct);
		return true;
	case 2:
		snprintf(sql, sizeof(sql), "PREPARE TRANSACTION '%s'", c->gid);
		pq_send(c, i, sql, 0);
		return true;
	case 3:
		if (O.style != STYLE_DECREE)
			return false;
		pq_send(c, i, RESET_SQL, 0);
		return true;
	default:
		return false;
	}
}

static void ceiling_start(struct client *c)
{
	c->seq++;
	snprintf(c->gid, sizeof(c->gid), "ceil_%d_%d_%" PRIu64, (int)getpid(),
		 c->id, c->seq);
	c->active = true;
	inflight++;
	c->phase = 1;
	c->a = account(c);
	c->b = account(c);
	c->step[0] = c->step[1] = 0;
	c->t_start = now_ns();
	ceiling_step(c, 0);
	ceiling_step(c, 1);
}

static void ceiling_event(struct client *c, int i, uint32_t events)
{
	PGconn *pq = c->pq[i];
	PGresult *res;
	char sql[128];

	if (events & EPOLLOUT)
		pq_flush(c, i);
	if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		return;
	if (!PQconsumeInput(pq))
		die("database %d: %s", i, PQerrorMessage(pq));
	while (c->pending[i] && !PQisBusy(pq)) {
		ExecStatusType st;

		res = PQgetResult(pq);
		if (res == NULL && PQpipelineStatus(pq) == PQ_PIPELINE_ON)
			continue; /* the next query of the pipeline */
		if (res != NULL && PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			if (!PQexitPipelineMode(pq))
				die("exit pipeline: %s", PQerrorMessage(pq));
			res = NULL;
		}
		if (res == NULL) {
			c->pending[i] = 0;
			if (c->phase == 1)
				ceiling_step(c, i);
			break;
		}
		st = PQresultStatus(res);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			die("database %d, transfer %s phase %d: %s", i, c->gid,
			    c->phase, PQresultErrorMessage(res));
		if (strncmp(PQcmdStatus(res), "UPDATE", 6) == 0 &&
		    strcmp(PQcmdTuples(res), "1") != 0)
			die("database %d: UPDATE touched %s rows", i,
			    PQcmdTuples(res));
		PQclear(res);
	}
	if (c->pending[0] || c->pending[1])
		return;
	if (c->phase == 1) {
		c->phase = 2;
		snprintf(sql, sizeof(sql), "COMMIT PREPARED '%s'", c->gid);
		pq_send(c, 0, sql, 0);
		pq_send(c, 1, sql, 0);
		return;
	}
	record_done(c);
	if (!stopping)
		ceiling_start(c);
}

static void ceiling_connect(struct client *c)
{
	for (int i = 0; i < 2; i++) {
		c->pq[i] = PQconnectdb(O.conn[i]);
		if (PQstatus(c->pq[i]) != CONNECTION_OK)
			die("connect to database %d: %s", i,
			    PQerrorMessage(c->pq[i]));
		if (O.style == STYLE_PIPELINE) {
			PGresult *r = PQprepare(
			    c->pq[i], i == 0 ? "debit" : "credit",
			    i == 0 ? "update accounts set balance = balance - "
				     "1 where id = $1"
				   : "update accounts set balance = balance + "
				     "1 where id = $1",
			    1, NULL);

			if (PQresultStatus(r) != PGRES_COMMAND_OK)
				die("prepare: %s", PQerrorMessage(c->pq[i]));
			PQclear(r);
		}
		if (PQsetnonblocking(c->pq[i], 1) != 0)
			die("PQsetnonblocking failed");
		c->ref[i].cl = c;
		c->ref[i].idx = i;
		ep_set(PQsocket(c->pq[i]), &c->ref[i], false, EPOLL_CTL_ADD);
	}
}

/* --------------------------------------------------------------- main */

/* Value of metric NAME (the whole first field, labels included) in the
 * coordinator's /metrics, read over a connection of its own. */
static double metric(const char *name)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)O.port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static char buf[1 << 20];
	const char *req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			  "Connection: close\r\n\r\n";
	size_t len = 0, nl = strlen(name);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	const char *p;

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("metrics: cannot connect: %s", strerror(errno));
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		die("metrics: write failed");
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("metrics: read: %s", strerror(errno));
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == sizeof(buf) - 1)
			die("metrics: answer too large");
	}
	close(fd);
	buf[len] = '\0';
	for (p = buf; (p = strstr(p, name)) != NULL; p += nl) {
		if ((p == buf || p[-1] == '\n') && p[nl] == ' ')
			return strtod(p + nl + 1, NULL);
	}
	die("metrics: no %s", name);
}

/* Waits (bounded) until the coordinator has finished phase 2 of every
 * transaction, so its work does not spill into the next round. */
static void settle(void)
{
	uint64_t end = now_ns() + DRAIN_NS;

	while (metric("decree_txns_active") != 0) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		if (now_ns() > end)
			die("the coordinator still has active transactions "
			    "%.0f s after a round",
			    DRAIN_NS / 1e9);
		nanosleep(&ts, NULL);
	}
}

/* Parent pid of process pid from /proc/PID/stat, or -1. */
static int parent_of(int pid)
{
	char path[64], buf[512];
	const char *p;
	FILE *f;
	size_t n;
	int ppid = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold anything */
	if (p != NULL && sscanf(p + 1, " %*c %d", &ppid) != 1)
		ppid = -1;
	return ppid;
}

/* CPU time (ms) so far of both PostgreSQL servers: the postmasters and
 * their children (backends, walwriter, checkpointer, ...), from
 * /proc/PID/schedstat.  A process that exits between two readings loses
 * its share; the connections here and the coordinator's pool live through
 * the rounds.  0 when the postmasters are unknown. */
static double pg_cpu_ms(void)
{
	DIR *d;
	struct dirent *e;
	double ns = 0;

	if (postmaster[0] <= 0)
		return 0;
	d = opendir("/proc");
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char path[64];
		unsigned long long run;
		FILE *f;
		int pid = atoi(e->d_name), pp;

		if (pid <= 0)
			continue;
		pp = pid == postmaster[0] || pid == postmaster[1]
			 ? pid
			 : parent_of(pid);
		if (pp != postmaster[0] && pp != postmaster[1])
			continue;
		snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fscanf(f, "%llu", &run) == 1)
			ns += (double)run;
		fclose(f);
	}
	closedir(d);
	return ns / 1e6;
}

static double self_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void run_round(struct client *cl, enum mode m, double warmup,
		      double seconds)
{
	struct epoll_event evs[256];
	uint64_t t0, drain_end = 0;

	cur = &S[m];
	stopping = false;
	t0 = now_ns();
	t_measure0 = t0 + (uint64_t)(warmup * 1e9);
	t_measure1 = t_measure0 + (uint64_t)(seconds * 1e9);
	for (int i = 0; i < O.clients; i++) {
		if (m == MODE_DECREE)
			decree_start(&cl[i]);
		else
			ceiling_start(&cl[i]);
	}
	for (;;) {
		uint64_t t = now_ns();
		int n;

		if (!stopping && t > t_measure1) {
			stopping = true;
			drain_end = t + DRAIN_NS;
		}
		if (stopping && inflight == 0)
			break;
		if (stopping && t > drain_end)
			die("%zu transfers still in flight %.0f s after the "
			    "end",
			    inflight, DRAIN_NS / 1e9);
		n = epoll_wait(ep, evs, 256, 100);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait: %s", strerror(errno));
		for (int k = 0; k < n; k++) {
			struct ref *r = evs[k].data.ptr;
			struct client *c = r->cl;

			if (c->mode == MODE_CEILING) {
				ceiling_event(c, r->idx, evs[k].events);
				continue;
			}
			if (evs[k].events & EPOLLOUT) {
				http_flush(c);
				if (c->outoff == c->outlen)
					ep_set(c->fd, r, false, EPOLL_CTL_MOD);
			}
			if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				decree_readable(c);
		}
	}
	cur->seconds += seconds;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_ms(const struct stats *st, double p)
{
	size_t k;

	if (st->n == 0)
		return 0;
	k = (size_t)(p * (double)(st->n - 1) + 0.5);
	return st->lat[k] / 1000.0;
}

static void report(enum mode m, double syncs, double decided)
{
	struct stats *st = &S[m];

	qsort(st->lat, st->n, sizeof(*st->lat), cmp_u32);
	printf("RESULT mode=%s clients=%d commits=%zu seconds=%.3f "
	       "rate=%.1f p50_ms=%.3f p99_ms=%.3f errors=%" PRIu64,
	       m == MODE_DECREE ? "decree" : "ceiling", O.clients, st->n,
	       st->seconds, (double)st->n / st->seconds, pct_ms(st, 0.50),
	       pct_ms(st, 0.99), st->errors);
	if (m == MODE_DECREE)
		printf(" syncs=%.0f decided=%.0f syncs_per_commit=%.4f", syncs,
		       decided, decided > 0 ? syncs / decided : 0);
	if (postmaster[0] > 0 && st->all > 0)
		printf(" pg_cpu_ms_per_commit=%.3f",
		       st->pg_ms / (double)st->all);
	if (st->all > 0)
		printf(" client_cpu_ms_per_commit=%.3f",
		       st->self_ms / (double)st->all);
	printf("\n");
	if (st->errors)
		fprintf(stderr, "txbench: %s: %" PRIu64 " errors; first: %s\n",
			m == MODE_DECREE ? "decree" : "ceiling", st->errors,
			st->first_error);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: txbench decree --port P [options]\n"
		"       txbench ceiling --conn0 CONNINFO --conn1 CONNINFO "
		"[options]\n"
		"       txbench both --port P --conn0 CONNINFO --conn1 "
		"CONNINFO [options]\n"
		"options: --clients N --seconds S --rounds R --warmup S "
		"--accounts A --seed N\n"
		"         --ceiling-style one|split|decree|pipeline\n");
	exit(2);
}

static void parse(int argc, char **argv)
{
	O.clients = 1;
	O.rounds = 4;
	O.seconds = 8;
	O.warmup = 1;
	O.accounts = 10000;
	O.seed = 1;
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "decree") == 0)
		O.mode = MODE_DECREE;
	else if (strcmp(argv[1], "ceiling") == 0)
		O.mode = MODE_CEILING;
	else if (strcmp(argv[1], "both") == 0)
		O.mode = MODE_BOTH;
	else
		usage();
	for (int i = 2; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		i++;
		if (strcmp(k, "--port") == 0)
			O.port = atoi(v);
		else if (strcmp(k, "--conn0") == 0)
			O.conn[0] = v;
		else if (strcmp(k, "--conn1") == 0)
			O.conn[1] = v;
		else if (strcmp(k, "--clients") == 0)
			O.clients = atoi(v);
		else if (strcmp(k, "--rounds") == 0)
			O.rounds = atoi(v);
		else if (strcmp(k, "--seconds") == 0)
			O.seconds = atof(v);
		else if (strcmp(k, "--warmup") == 0)
			O.warmup = atof(v);
		else if (strcmp(k, "--accounts") == 0)
			O.accounts = atoi(v);
		else if (strcmp(k, "--seed") == 0)
			O.seed = strtoull(v, NULL, 10);
		else if (strcmp(k, "--ceiling-style") == 0 &&
			 strcmp(v, "one") == 0)
			O.style = STYLE_ONE;
		else if (strcmp(k, "--ceiling-style") == 0 &&
			 strcmp(v, "split") == 0)
			O.style = STYLE_SPLIT;
		else if (strcmp(k, "--ceiling-style") == 0 &&
			 strcmp(v, "pipeline") == 0)
			O.style = STYLE_PIPELINE;
		else if (strcmp(k, "--ceiling-style") == 0 &&
			 strcmp(v, "decree") == 0)
			O.style = STYLE_DECREE;
		else
			usage();
	}
	if (O.clients < 1 || O.clients > MAX_CLIENTS || O.seconds <= 0 ||
	    O.rounds < 1 || O.rounds > 1000 || O.warmup < 0 || O.accounts < 1)
		usage();
	if (O.mode != MODE_CEILING && (O.port <= 0 || O.port > 65535))
		usage();
	if (O.mode != MODE_DECREE && (O.conn[0] == NULL || O.conn[1] == NULL))
		usage();
}

static struct client *clients_new(enum mode m)
{
	struct client *cl = calloc((size_t)O.clients, sizeof(*cl));

	if (cl == NULL)
		die("out of memory");
	for (int i = 0; i < O.clients; i++) {
		struct client *c = &cl[i];

		c->id = i;
		c->mode = m;
		c->rng = (O.seed * 0x9e3779b97f4a7c15ull) ^
			 (uint64_t)(i + 1 + 1000 * m) * 0xbf58476d1ce4e5b9ull;
		if (c->rng == 0)
			c->rng = 1;
		if (m == MODE_DECREE) {
			c->in = malloc(INBUF);
			if (c->in == NULL)
				die("out of memory");
			http_connect(c);
		} else {
			ceiling_connect(c);
		}
	}
	return cl;
}

static void clients_free(struct client *cl)
{
	if (cl == NULL)
		return;
	for (int i = 0; i < O.clients; i++) {
		if (cl[i].mode == MODE_DECREE) {
			close(cl[i].fd);
			free(cl[i].in);
		} else {
			PQfinish(cl[i].pq[0]);
			PQfinish(cl[i].pq[1]);
		}
	}
	free(cl);
}

int main(int argc, char **argv)
{
	struct client *cl[2] = {NULL, NULL};
	bool use[2];
	double per, syncs = 0, decided = 0;
	const char *committed = "decree_txns_total{outcome=\"committed\"}";

	parse(argc, argv);
	use[MODE_DECREE] = O.mode != MODE_CEILING;
	use[MODE_CEILING] = O.mode != MODE_DECREE;
	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
	for (int m = 0; m < 2; m++)
		if (use[m])
			cl[m] = clients_new((enum mode)m);
	if (use[MODE_CEILING])
		for (int i = 0; i < 2; i++)
			postmaster[i] =
			    parent_of(PQbackendPID(cl[MODE_CEILING][0].pq[i]));
	per = O.seconds / O.rounds;
	for (int r = 0; r < O.rounds; r++) {
		for (int k = 0; k < 2; k++) {
			/* Even rounds run the ceiling first, odd ones decree.
			 */
			enum mode m = (enum mode)(r % 2 ? k : 1 - k);
			double s0 = 0, d0 = 0, pg0, me0;

			if (!use[m])
				continue;
			if (m == MODE_DECREE) {
				settle();
				s0 = metric("decree_wal_syncs_total");
				d0 = metric(committed);
			}
			pg0 = pg_cpu_ms();
			me0 = self_cpu_ms();
			run_round(cl[m], m, r == 0 ? O.warmup : 0, per);
			S[m].self_ms += self_cpu_ms() - me0;
			if (m == MODE_DECREE) {
				/* After phase 2, whose work counts too. */
				settle();
				syncs += metric("decree_wal_syncs_total") - s0;
				decided += metric(committed) - d0;
			}
			S[m].pg_ms += pg_cpu_ms() - pg0;
		}
	}
	for (int m = 0; m < 2; m++) {
		if (use[m])
			report((enum mode)m, syncs, decided);
		clients_free(cl[m]);
		free(S[m].lat);
	}
	close(ep);
	return 0;
}
