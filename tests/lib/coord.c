/*
 * coord.c - starts, talks to and ends real `decree coordinator` processes
 * for the integration tests (coord.h), plus blocking libpq helpers.
 *
 * Design notes
 *  1. The child's stdout goes to a file, not a pipe: the test never has to
 *     drain it, and the "listening on ... port P" line is found by polling
 *     the file (bounded) while checking that the child is still alive.
 *  2. The child gets PR_SET_PDEATHSIG=SIGKILL, so a Check test that fails,
 *     times out or crashes takes its coordinator with it.
 *  3. The environment is built before fork() (the tests have threads), so
 *     the child only dup2()s and execs.
 *  4. Allocation uses plain malloc, like tests/lib/pg.c: the fail-the-N-th
 *     hook of common/mem.h is for the code under test, not the harness.
 */
#include "tests/lib/coord.h"

#include "common/common.h"
#include "common/http.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct coord {
	pid_t pid;
	int status; /* once reaped: what coord_wait_exit returns */
	bool reaped;
	char addr[64];
	char err_path[4096];
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A short pause between two looks at a condition (not a wait for it). */
static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void print_tail(const char *path)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "tail -n 15 '%s' >&2", path);
	if (system(cmd) != 0)
		fprintf(stderr, "coord: cannot show %s\n", path);
}

/* Port from the "listening on ... port P" line in the file, or 0. */
static int read_port(const char *path)
{
	char line[512];
	int port = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (port == 0 && fgets(line, sizeof(line), f) != NULL) {
		const char *p = strstr(line, " port ");

		if (strstr(line, "listening on") != NULL && p != NULL)
			port = atoi(p + 6);
	}
	fclose(f);
	return port;
}

static char **make_env(const char *crash_point)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	env = calloc(n + 2, sizeof(*env));
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "DECREE_CRASH_POINT=", 19) != 0)
			env[k++] = environ[i];
	if (crash_point != NULL) {
		size_t len = strlen(crash_point) + 20;

		env[k] = malloc(len);
		if (env[k] == NULL) {
			free(env);
			return NULL;
		}
		snprintf(env[k], len, "DECREE_CRASH_POINT=%s", crash_point);
		k++;
	}
	env[k] = NULL;
	return env;
}

static int reap(struct coord *c, int options)
{
	int st;
	pid_t r;

	if (c->reaped)
		return 1;
	do
		r = waitpid(c->pid, &st, options);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	c->reaped = true;
	if (r < 0)
		c->status = -ECHILD;
	else if (WIFEXITED(st))
		c->status = WEXITSTATUS(st);
	else
		c->status = 128 + WTERMSIG(st);
	return 1;
}

int coord_start(const char *config_path, const char *crash_point,
		struct coord **out)
{
	static unsigned starts;
	const char *bin = getenv("DECREE_BIN");
	char out_path[4096];
	char **env = NULL;
	struct coord *c;
	int fd_out = -1, fd_err = -1, rc = -EIO, port = 0;
	long long deadline;
	pid_t parent = getpid();

	*out = NULL;
	if (bin == NULL || bin[0] == '\0')
		bin = "build/decree";
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	snprintf(out_path, sizeof(out_path), "%s.out.%d.%u", config_path,
		 (int)parent, starts++);
	snprintf(c->err_path, sizeof(c->err_path), "%s.err", config_path);
	fd_out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	fd_err =
	    open(c->err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	env = make_env(crash_point);
	if (fd_out < 0 || fd_err < 0 || env == NULL) {
		rc = env == NULL ? -ENOMEM : -errno;
		fprintf(stderr, "coord: cannot open %s or %s\n", out_path,
			c->err_path);
		goto fail;
	}
	c->pid = fork();
	if (c->pid < 0) {
		rc = -errno;
		goto fail;
	}
	if (c->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(fd_out, STDOUT_FILENO);
		dup2(fd_err, STDERR_FILENO);
		execle(bin, bin, "coordinator", "--config", config_path,
		       (char *)NULL, env);
		_exit(127);
	}
	deadline = now_ms() + 30000;
	while (port == 0) {
		port = read_port(out_path);
		if (port != 0)
			break;
		if (reap(c, WNOHANG)) {
			fprintf(stderr,
				"coord: %s coordinator exited (%d) before "
				"listening; its stderr:\n",
				bin, c->status);
			print_tail(c->err_path);
			goto fail;
		}
		if (now_ms() > deadline) {
			fprintf(stderr, "coord: no 'listening' line in 30 s\n");
			print_tail(c->err_path);
			goto fail;
		}
		pause_ms(5);
	}
	snprintf(c->addr, sizeof(c->addr), "127.0.0.1:%d", port);
	/* Listening comes before the new epoch is durable: wait for ready. */
	while (coord_request(c, "GET", "/healthz", NULL, 5000, NULL) != 200) {
		if (reap(c, WNOHANG) || now_ms() > deadline) {
			fprintf(stderr, "coord: never ready (exit %d)\n",
				c->reaped ? c->status : -1);
			print_tail(c->err_path);
			goto fail;
		}
		pause_ms(5);
	}
	rc = 0;
	*out = c;
	c = NULL;
fail:
	if (env != NULL) {
		for (size_t i = 0; env[i] != NULL; i++)
			if (strncmp(env[i], "DECREE_CRASH_POINT=", 19) == 0 &&
			    crash_point != NULL)
				free(env[i]);
		free(env);
	}
	if (fd_out >= 0)
		close(fd_out);
	if (fd_err >= 0)
		close(fd_err);
	if (c != NULL)
		coord_free(c);
	return rc;
}

const char *coord_addr(const struct coord *c)
{
	return c->addr;
}

pid_t coord_pid(const struct coord *c)
{
	return c->pid;
}

int coord_request_at(const char *addr, const char *method, const char *path,
		     const char *body, int timeout_ms, json_t **json)
{
	struct http_response r;
	int rc;

	if (json != NULL)
		*json = NULL;
	rc = http_client_request(addr, method, path,
				 body ? "application/json" : NULL, body,
				 body ? strlen(body) : 0, timeout_ms, &r);
	if (rc < 0)
		return rc;
	if (json != NULL)
		*json = json_loadb(r.body, r.body_len, 0, NULL);
	rc = r.status;
	http_response_free(&r);
	return rc;
}

int coord_request(const struct coord *c, const char *method, const char *path,
		  const char *body, int timeout_ms, json_t **json)
{
	return coord_request_at(c->addr, method, path, body, timeout_ms, json);
}

int coord_metric(const struct coord *c, const char *name, double *out)
{
	struct http_response r;
	size_t len = strlen(name);
	const char *p;
	int rc;

	rc = http_client_request(c->addr, "GET", "/metrics", NULL, NULL, 0,
				 5000, &r);
	if (rc < 0)
		return rc;
	rc = -ENOENT;
	for (p = r.body; r.status == 200 && p != NULL && *p != '\0';) {
		if (strncmp(p, name, len) == 0 && p[len] == ' ') {
			*out = strtod(p + len + 1, NULL);
			rc = 0;
			break;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	if (r.status != 200)
		rc = -EPROTO;
	http_response_free(&r);
	return rc;
}

int coord_wait_txn_state(const struct coord *c, const char *gid,
			 const char *state, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	char path[256], last[1024] = "";

	snprintf(path, sizeof(path), "/v1/txns/%s", gid);
	for (;;) {
		json_t *j = NULL;
		int st = coord_request(c, "GET", path, NULL, 5000, &j);
		const char *s = json_string_value(json_object_get(j, "state"));
		bool ok = st == 200 && s != NULL && strcmp(s, state) == 0;

		if (!ok) {
			char *d = j ? json_dumps(j, JSON_COMPACT) : NULL;

			snprintf(last, sizeof(last), "status %d %s", st,
				 d ? d : "");
			free(d);
		}
		json_decref(j);
		if (ok)
			return 0;
		if (now_ms() > deadline) {
			fprintf(stderr,
				"coord: %s never reached state %s: %s\n", gid,
				state, last);
			return -ETIMEDOUT;
		}
		pause_ms(10);
	}
}

int coord_wait_exit(struct coord *c, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	while (!reap(c, WNOHANG)) {
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		pause_ms(5);
	}
	return c->status;
}

int coord_kill(struct coord *c)
{
	if (!c->reaped) {
		kill(c->pid, SIGKILL);
		reap(c, 0);
	}
	return 0;
}

int coord_stop(struct coord *c)
{
	int rc;

	if (!c->reaped)
		kill(c->pid, SIGTERM);
	rc = coord_wait_exit(c, 15000);
	if (rc == -ETIMEDOUT) {
		fprintf(stderr, "coord: pid %d ignored SIGTERM for 15 s\n",
			(int)c->pid);
		coord_kill(c);
	}
	return rc;
}

void coord_free(struct coord *c)
{
	if (c == NULL)
		return;
	if (c->pid > 0)
		coord_kill(c);
	free(c);
}

int coord_tmpdir_make(char *path, size_t size)
{
	const char *t = getenv("TMPDIR");

	if (t == NULL || t[0] == '\0' || strlen(t) > 200)
		t = "/tmp";
	if (snprintf(path, size, "%s/decree-it-XXXXXX", t) >= (int)size)
		return -ENAMETOOLONG;
	return mkdtemp(path) != NULL ? 0 : -errno;
}

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p) < 0 ? -1 : 0;
}

int coord_tmpdir_remove(const char *path)
{
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -errno;
}

static PGconn *connect_quiet(const char *conninfo, bool report)
{
	PGconn *db = PQconnectdb(conninfo);

	if (db != NULL && PQstatus(db) == CONNECTION_OK)
		return db;
	if (report)
		fprintf(stderr, "coord: cannot connect (%s): %s\n", conninfo,
			db ? PQerrorMessage(db) : "out of memory");
	PQfinish(db);
	return NULL;
}

int coord_pg_exec(const char *conninfo, const char *sql)
{
	PGconn *db = connect_quiet(conninfo, true);
	PGresult *r;
	int rc = -EIO;

	if (db == NULL)
		return -EIO;
	r = PQexec(db, sql);
	if (PQresultStatus(r) == PGRES_COMMAND_OK ||
	    PQresultStatus(r) == PGRES_TUPLES_OK)
		rc = 0;
	else
		fprintf(stderr, "coord: %s: %s\n", sql, PQerrorMessage(db));
	PQclear(r);
	PQfinish(db);
	return rc;
}

static int pg_int(const char *conninfo, const char *sql, long long *out,
		  bool report)
{
	PGconn *db = connect_quiet(conninfo, report);
	PGresult *r;
	int rc = -EIO;

	if (db == NULL)
		return -EIO;
	r = PQexec(db, sql);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) >= 1 &&
	    PQnfields(r) >= 1) {
		*out = PQgetisnull(r, 0, 0)
			   ? 0
			   : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		rc = 0;
	} else if (report) {
		fprintf(stderr, "coord: %s: %s\n", sql, PQerrorMessage(db));
	}
	PQclear(r);
	PQfinish(db);
	return rc;
}

int coord_pg_int(const char *conninfo, const char *sql, long long *out)
{
	return pg_int(conninfo, sql, out, true);
}

int coord_pg_wait_int(const char *conninfo, const char *sql, long long want,
		      int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms, v = 0;
	int rc;

	for (;;) {
		rc = pg_int(conninfo, sql, &v, false);
		if (rc == 0 && v == want)
			return 0;
		if (now_ms() > deadline) {
			fprintf(
			    stderr,
			    "coord: '%s' stayed %lld (rc %d), wanted %lld\n",
			    sql, v, rc, want);
			return -ETIMEDOUT;
		}
		pause_ms(10);
	}
}

int coord_config_write(const char *path, const char *cluster,
		       const char *data_dir, const char *const *conninfos,
		       int n, const char *extra)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (f == NULL)
		return -errno;
	fprintf(f,
		"{\"node_id\":\"c1\",\"cluster_id\":\"%s\","
		"\"listen\":{\"http\":\"127.0.0.1:0\"},\"data_dir\":\"%s\","
		"\"resources\":[",
		cluster, data_dir);
	for (int i = 0; i < n; i++)
		fprintf(f,
			"%s{\"name\":\"bank_%c\",\"driver\":\"postgres\","
			"\"conninfo\":\"%s\"}",
			i ? "," : "", 'a' + i, conninfos[i]);
	fprintf(f, "]%s%s}\n", extra ? "," : "", extra ? extra : "");
	rc = ferror(f) ? -EIO : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

int coord_bank_create(const char *conninfo, int accounts, int balance)
{
	PGconn *db = connect_quiet(conninfo, true);
	PGresult *r;
	char sql[512];
	int rc = -EIO;

	if (db == NULL)
		return -EIO;
	r = PQexec(db, "select gid from pg_prepared_xacts");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		goto out;
	for (int i = 0; i < PQntuples(r); i++) {
		char *lit = PQescapeLiteral(db, PQgetvalue(r, i, 0),
					    strlen(PQgetvalue(r, i, 0)));
		PGresult *r2;

		if (lit == NULL)
			goto out;
		snprintf(sql, sizeof(sql), "rollback prepared %s", lit);
		PQfreemem(lit);
		r2 = PQexec(db, sql);
		PQclear(r2);
	}
	PQclear(r);
	snprintf(sql, sizeof(sql),
		 "set lock_timeout = '10s'; set client_min_messages = warning;"
		 "drop table if exists accounts;"
		 "create table accounts(id int primary key, balance int not "
		 "null check (balance >= 0));"
		 "insert into accounts select g, %d from generate_series(1, "
		 "%d) g",
		 balance, accounts);
	r = PQexec(db, sql);
	if (PQresultStatus(r) == PGRES_COMMAND_OK)
		rc = 0;
out:
	if (rc < 0)
		fprintf(stderr, "coord: bank on %s: %s\n", conninfo,
			PQerrorMessage(db));
	PQclear(r);
	PQfinish(db);
	return rc;
}
