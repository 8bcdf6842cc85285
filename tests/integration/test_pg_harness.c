/*
 * test_pg_harness.c - the PostgreSQL test harness (tests/lib/pg.h): real
 * servers, prepared transactions through libpq, crash and restart, and
 * cleanup (directories, processes, shared memory) after destroy and after
 * the owner is SIGKILLed.
 */
#include "tests/lib/pg.h"

#include <check.h>
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static PGconn *connect_ok(const char *conninfo)
{
	PGconn *c;

	ck_assert_ptr_nonnull(conninfo);
	c = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect %s: %s", conninfo,
		      PQerrorMessage(c));
	return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s",
		      sql, PQerrorMessage(c));
	PQclear(r);
}

/* The single value of a one-row, one-column query, as a malloc'd string. */
static char *query_value(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	char *v;

	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
		      PQerrorMessage(c));
	ck_assert_int_eq(PQntuples(r), 1);
	v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static void expect_value(PGconn *c, const char *sql, const char *want)
{
	char *v = query_value(c, sql);

	ck_assert_str_eq(v, want);
	free(v);
}

static bool dir_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static bool pid_alive(pid_t pid)
{
	char path[64], state = 0;
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	ok = fscanf(f, "%*d (%*[^)]) %c", &state);
	fclose(f);
	return ok == 1 && state != 'Z';
}

/*
 * Most tests share one harness of two servers, started once in the Check
 * runner (an unchecked fixture) and used from each forked test, which is
 * how other suites use it too.  Each test first brings both servers up, so
 * none depends on what an earlier one left; each uses its own names.
 */
static struct pg_harness *shared;

static void shared_start(void)
{
	ck_assert_int_eq(pg_harness_start(2, &shared), 0);
}

static void shared_stop(void)
{
	pg_harness_destroy(shared);
	shared = NULL;
}

static void all_up(void)
{
	int i;

	for (i = 0; i < pg_harness_count(shared); i++)
		if (pg_harness_pid(shared, i) == 0)
			ck_assert_int_eq(pg_harness_start_server(shared, i), 0);
}

START_TEST(prepared_txn_commits_on_two_servers)
{
	PGconn *c[2];
	int i;

	all_up();
	ck_assert_int_eq(pg_harness_count(shared), 2);
	ck_assert_int_ne(pg_harness_port(shared, 0),
			 pg_harness_port(shared, 1));
	for (i = 0; i < 2; i++) {
		c[i] = connect_ok(pg_harness_conninfo(shared, i));
		expect_value(c[i], "show max_prepared_transactions", "100");
		expect_value(c[i], "show fsync", "on");
		exec_ok(c[i], "BEGIN");
		exec_ok(c[i],
			"CREATE TABLE acct (id int primary key, bal int)");
		exec_ok(c[i], i ? "INSERT INTO acct VALUES (1, 50)"
				: "INSERT INTO acct VALUES (1, -50)");
		exec_ok(c[i], "PREPARE TRANSACTION 'x'");
		expect_value(c[i],
			     "select count(*) from pg_prepared_xacts "
			     "where gid = 'x'",
			     "1");
		/* Prepared, not committed: the table is not there yet. */
		expect_value(c[i],
			     "select count(*) from pg_class "
			     "where relname = 'acct'",
			     "0");
	}
	for (i = 0; i < 2; i++) {
		exec_ok(c[i], "COMMIT PREPARED 'x'");
		expect_value(c[i],
			     "select count(*) from pg_prepared_xacts "
			     "where gid = 'x'",
			     "0");
		expect_value(c[i], "select bal from acct where id = 1",
			     i ? "50" : "-50");
		PQfinish(c[i]);
	}
}
END_TEST

START_TEST(unix_socket_reaches_same_server)
{
	PGconn *tcp, *local;
	char *a, *b;

	all_up();
	ck_assert_ptr_nonnull(strstr(pg_harness_conninfo_unix(shared, 1),
				     pg_harness_dir(shared, 1)));
	tcp = connect_ok(pg_harness_conninfo(shared, 1));
	local = connect_ok(pg_harness_conninfo_unix(shared, 1));
	/* Over TCP the client address is loopback; over the socket, none. */
	expect_value(tcp, "select inet_client_addr()", "127.0.0.1");
	expect_value(local, "select coalesce(inet_client_addr()::text, 'unix')",
		     "unix");
	/* Same server: a table made over one is seen over the other. */
	exec_ok(tcp, "CREATE TABLE via_tcp AS SELECT 3 AS v");
	expect_value(local, "select v from via_tcp", "3");
	a = query_value(tcp, "select setting from pg_settings "
			     "where name = 'data_directory'");
	b = query_value(local, "select setting from pg_settings "
			       "where name = 'data_directory'");
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	PQfinish(tcp);
	PQfinish(local);
}
END_TEST

START_TEST(prepared_txn_survives_kill_and_restart)
{
	PGconn *c;
	pid_t old;
	int port;

	all_up();
	port = pg_harness_port(shared, 0);
	old = pg_harness_pid(shared, 0);
	ck_assert_int_gt(old, 0);
	c = connect_ok(pg_harness_conninfo(shared, 0));
	exec_ok(c, "CREATE TABLE t_kill (v int)");
	exec_ok(c, "BEGIN");
	exec_ok(c, "INSERT INTO t_kill VALUES (42)");
	exec_ok(c, "PREPARE TRANSACTION 'pending'");
	PQfinish(c);

	ck_assert_int_eq(pg_harness_kill_server(shared, 0), 0);
	ck_assert(!pid_alive(old));
	ck_assert_int_eq(pg_harness_pid(shared, 0), 0);
	c = PQconnectdb(pg_harness_conninfo(shared, 0));
	ck_assert_int_eq(PQstatus(c), CONNECTION_BAD);
	PQfinish(c);

	ck_assert_int_eq(pg_harness_start_server(shared, 0), 0);
	ck_assert_int_eq(pg_harness_port(shared, 0), port);
	ck_assert_int_gt(pg_harness_pid(shared, 0), 0);
	ck_assert_int_ne(pg_harness_pid(shared, 0), old);
	c = connect_ok(pg_harness_conninfo(shared, 0));
	expect_value(c,
		     "select count(*) from pg_prepared_xacts "
		     "where gid = 'pending'",
		     "1");
	expect_value(c, "select count(*) from t_kill", "0");
	exec_ok(c, "COMMIT PREPARED 'pending'");
	expect_value(c,
		     "select count(*) from pg_prepared_xacts "
		     "where gid = 'pending'",
		     "0");
	expect_value(c, "select v from t_kill", "42");
	PQfinish(c);
}
END_TEST

START_TEST(stop_is_clean_and_restart_keeps_data)
{
	PGconn *c;
	pid_t old;

	all_up();
	old = pg_harness_pid(shared, 1);
	c = connect_ok(pg_harness_conninfo(shared, 1));
	exec_ok(c, "CREATE TABLE t_stop AS SELECT 7 AS v");
	PQfinish(c);
	ck_assert_int_eq(pg_harness_stop_server(shared, 1), 0);
	ck_assert(!pid_alive(old));
	ck_assert_int_eq(pg_harness_pid(shared, 1), 0);
	/* Stopping a stopped server is not an error. */
	ck_assert_int_eq(pg_harness_stop_server(shared, 1), 0);
	ck_assert_int_eq(pg_harness_start_server(shared, 1), 0);
	ck_assert_int_eq(pg_harness_start_server(shared, 1), -EBUSY);
	c = connect_ok(pg_harness_conninfo_unix(shared, 1));
	expect_value(c, "select v from t_stop", "7");
	PQfinish(c);
}
END_TEST

/* Waits (bounded) until process pid has exited: a pidfd becomes readable
 * then.  0, or -1 on timeout. */
static int wait_exit(pid_t pid, int timeout_ms)
{
	struct pollfd pfd;
	int fd = (int)syscall(SYS_pidfd_open, pid, 0), rc;

	if (fd < 0)
		return errno == ESRCH ? 0 : -1;
	pfd.fd = fd;
	pfd.events = POLLIN;
	rc = poll(&pfd, 1, timeout_ms);
	close(fd);
	return rc == 1 ? 0 : -1;
}

/* A postmaster that dies behind the harness's back (here: SIGKILLed by the
 * test) is reported stopped and can be started again; its orphaned
 * backends do not block the restart. */
START_TEST(server_that_died_by_itself_restarts)
{
	PGconn *c, *idle;
	pid_t old;

	all_up();
	old = pg_harness_pid(shared, 1);
	ck_assert_int_gt(old, 0);
	idle = connect_ok(pg_harness_conninfo(shared, 1)); /* a backend */
	ck_assert_int_eq(kill(old, SIGKILL), 0);
	ck_assert_int_eq(wait_exit(old, 30000), 0);
	ck_assert_int_eq(pg_harness_pid(shared, 1), 0);
	ck_assert_int_eq(pg_harness_start_server(shared, 1), 0);
	ck_assert_int_ne(pg_harness_pid(shared, 1), old);
	c = connect_ok(pg_harness_conninfo(shared, 1));
	expect_value(c, "select 1", "1");
	PQfinish(c);
	PQfinish(idle);
}
END_TEST

/* Each test is already a child of the process that started the harness;
 * here a grandchild crashes a server and this process sees it and restarts
 * it. */
START_TEST(harness_works_from_forked_child)
{
	PGconn *c;
	pid_t child, old;
	int status;

	all_up();
	old = pg_harness_pid(shared, 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0)
		_exit(pg_harness_kill_server(shared, 0) == 0 ? 0 : 1);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert(!pid_alive(old));
	ck_assert_int_eq(pg_harness_pid(shared, 0), 0);
	ck_assert_int_eq(pg_harness_start_server(shared, 0), 0);
	c = connect_ok(pg_harness_conninfo(shared, 0));
	expect_value(c, "select 1", "1");
	PQfinish(c);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
	struct pg_harness *h = (struct pg_harness *)1;
	pid_t pid[2];

	all_up();
	pid[0] = pg_harness_pid(shared, 0);
	pid[1] = pg_harness_pid(shared, 1);
	ck_assert_int_eq(pg_harness_start(0, &h), -EINVAL);
	ck_assert_ptr_null(h);
	ck_assert_int_eq(pg_harness_start(17, &h), -EINVAL);
	ck_assert_int_eq(pg_harness_start(1, NULL), -EINVAL);
	ck_assert_int_eq(pg_harness_port(shared, 2), -EINVAL);
	ck_assert_int_eq(pg_harness_port(shared, -1), -EINVAL);
	ck_assert_int_eq(pg_harness_pid(shared, 2), -EINVAL);
	ck_assert_ptr_null(pg_harness_conninfo(shared, 2));
	ck_assert_ptr_null(pg_harness_conninfo_unix(shared, -1));
	ck_assert_ptr_null(pg_harness_dir(shared, 2));
	ck_assert_int_eq(pg_harness_stop_server(shared, 2), -EINVAL);
	ck_assert_int_eq(pg_harness_kill_server(shared, 5), -EINVAL);
	ck_assert_int_eq(pg_harness_start_server(shared, -1), -EINVAL);
	ck_assert_int_eq(pg_harness_count(NULL), 0);
	ck_assert_ptr_null(pg_harness_conninfo(NULL, 0));
	/* The refused calls changed nothing. */
	ck_assert_int_eq(pg_harness_pid(shared, 0), pid[0]);
	ck_assert_int_eq(pg_harness_pid(shared, 1), pid[1]);
	ck_assert(pid_alive(pid[0]) && pid_alive(pid[1]));
	pg_harness_destroy(NULL);
}
END_TEST

/* The System V segment id (and key) in a running server's postmaster.pid,
 * or -1. */
static int read_shm(const char *dir, key_t *key)
{
	char path[4200], line[256];
	long k = 0;
	int id = -1, n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/data/postmaster.pid", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (++n == 7 && sscanf(line, "%ld %d", &k, &id) != 2)
			id = -1;
	fclose(f);
	*key = (key_t)k;
	return id;
}

START_TEST(destroy_removes_dirs_and_stops_servers)
{
	struct pg_harness *h;
	char *dir[3];
	pid_t pid[3];
	key_t shmkey = 0;
	int i, shmid;

	ck_assert_int_eq(pg_harness_start(3, &h), 0);
	for (i = 0; i < 3; i++) {
		dir[i] = strdup(pg_harness_dir(h, i));
		pid[i] = pg_harness_pid(h, i);
		ck_assert(dir_exists(dir[i]));
		ck_assert_ptr_nonnull(strstr(dir[i], "/decree-pg-"));
		ck_assert(pid_alive(pid[i]));
	}
	shmid = read_shm(dir[1], &shmkey);
	ck_assert_int_ge(shmid, 0);
	ck_assert_int_eq(pg_harness_kill_server(h, 1), 0);
	pg_harness_destroy(h);
	/* The System V segment of the crashed server went with it. */
	if (shmid >= 0) {
		struct shmid_ds ds;

		ck_assert_msg(shmctl(shmid, IPC_STAT, &ds) < 0 ||
				  ds.shm_perm.__key != shmkey,
			      "shared memory %d of a killed server left",
			      shmid);
	}
	for (i = 0; i < 3; i++) {
		ck_assert_msg(!dir_exists(dir[i]), "%s is still there", dir[i]);
		ck_assert_msg(!pid_alive(pid[i]), "postmaster %d still runs",
			      (int)pid[i]);
		free(dir[i]);
	}
}
END_TEST

/* Writes an executable script. */
static void write_script(const char *dir, const char *name, const char *body)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(body, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, 0755), 0);
}

/*
 * A server that cannot start: initdb "works" (it only makes the data
 * directory and records its path), postgres exits at once.  The start
 * fails, *out stays NULL, and every directory the engine made is gone.
 */
START_TEST(failed_start_leaves_nothing_behind)
{
	char fake[] = "/tmp/decree-pgfake-XXXXXX", rec[4200], line[4200];
	char script[8600];
	struct pg_harness *h = (struct pg_harness *)1;
	FILE *f;
	int dirs = 0;

	ck_assert_ptr_nonnull(mkdtemp(fake));
	/* The fakes may run as the unprivileged server user. */
	ck_assert_int_eq(chmod(fake, 0777), 0);
	snprintf(rec, sizeof(rec), "%s/dirs", fake);
	snprintf(script, sizeof(script),
		 "#!/bin/sh\nmkdir -p \"$2\" && touch \"$2/postgresql.conf\" "
		 "&& echo \"$2\" >>%s\n",
		 rec);
	write_script(fake, "initdb", script);
	write_script(fake, "postgres",
		     "#!/bin/sh\necho 'FATAL: fake server' >&2\nexit 1\n");
	write_script(fake, "pg_isready", "#!/bin/sh\nexit 2\n");
	f = fopen(rec, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(chmod(rec, 0666), 0);
	ck_assert_int_eq(setenv("DECREE_PG_BINDIR", fake, 1), 0);

	ck_assert_int_eq(pg_harness_start(2, &h), -EIO);
	ck_assert_ptr_null(h);

	f = fopen(rec, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		/* line is <server dir>/data; the server dir must be gone. */
		ck_assert_ptr_nonnull(strstr(line, "/decree-pg-"));
		*strrchr(line, '/') = '\0';
		ck_assert_msg(!dir_exists(line), "%s left behind", line);
		dirs++;
	}
	fclose(f);
	ck_assert_int_eq(dirs, 1); /* initdb runs once; the rest are copies */
	snprintf(script, sizeof(script), "rm -rf '%s'", fake);
	ck_assert_int_eq(system(script), 0);
	unsetenv("DECREE_PG_BINDIR");
}
END_TEST

/* As root the servers run as $DECREE_PG_USER when it is set; a user that
 * does not exist is a clear error, not a crash or a root server. */
START_TEST(unknown_server_user_is_an_error)
{
	struct pg_harness *h = (struct pg_harness *)1;

	if (geteuid() != 0)
		return;
	ck_assert_int_eq(setenv("DECREE_PG_USER", "decree-no-such-user", 1), 0);
	ck_assert_int_eq(pg_harness_start(1, &h), -EIO);
	ck_assert_ptr_null(h);
	unsetenv("DECREE_PG_USER");
}
END_TEST

/* The engine itself SIGKILLed (it cannot clean up): destroy still removes
 * the directories and stops the servers, by sweeping. */
START_TEST(destroy_after_engine_was_killed_sweeps)
{
	struct pg_harness *h;
	char *dir;
	pid_t pid, engine;
	char path[64], buf[128];
	ssize_t len;

	ck_assert_int_eq(pg_harness_start(1, &h), 0);
	dir = strdup(pg_harness_dir(h, 0));
	pid = pg_harness_pid(h, 0);
	ck_assert_int_gt(pid, 0);
	/* The engine is the postmaster's parent. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	{
		FILE *f = fopen(path, "r");
		int ppid = 0;

		ck_assert_ptr_nonnull(f);
		ck_assert_int_eq(fscanf(f, "%*d (%*[^)]) %*c %d", &ppid), 1);
		fclose(f);
		engine = ppid;
	}
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)engine);
	{
		FILE *f = fopen(path, "r");

		ck_assert_ptr_nonnull(f);
		len = (ssize_t)fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		ck_assert_int_gt(len, 0);
		buf[len] = '\0';
		ck_assert_str_eq(buf, "bash");
	}
	ck_assert_int_eq(kill(engine, SIGKILL), 0);
	ck_assert_int_eq(waitpid(engine, NULL, 0), engine);
	ck_assert(dir_exists(dir));
	pg_harness_destroy(h);
	ck_assert_msg(!dir_exists(dir), "%s is still there", dir);
	ck_assert_msg(!pid_alive(pid), "postmaster %d still runs", (int)pid);
	free(dir);
}
END_TEST

/*
 * The owner is a forked child whose stdout and stderr are one pipe.  The
 * engine inherits the child's stderr, the servers do not (their output goes
 * to their logs), so end of file on the pipe means the child and the engine
 * are both gone: that is the condition to wait for after the SIGKILL.
 */
START_TEST(sigkill_of_owner_cleans_up)
{
	char buf[8192], *line, *save;
	size_t len = 0;
	struct pollfd pfd;
	char *dir[2] = {NULL, NULL};
	pid_t pid[2] = {0, 0}, child;
	int fds[2], i, n = 0, rc;
	ssize_t r;

	ck_assert_int_eq(pipe(fds), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		struct pg_harness *h;

		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		if (pg_harness_start(2, &h) != 0)
			_exit(1);
		for (i = 0; i < 2; i++)
			printf("srv %d %s\n", (int)pg_harness_pid(h, i),
			       pg_harness_dir(h, i));
		printf("up\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	close(fds[1]);
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	/* Read until "up", then kill; then read to end of file. */
	for (;;) {
		rc = poll(&pfd, 1, 60000);
		ck_assert_msg(rc == 1, "no output from the owner within 60 s");
		r = read(fds[0], buf + len, sizeof(buf) - 1 - len);
		ck_assert_int_gt(r, 0);
		len += (size_t)r;
		buf[len] = '\0';
		if (strstr(buf, "up\n"))
			break;
	}
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		int p;
		char d[4096];

		if (n < 2 && sscanf(line, "srv %d %4095s", &p, d) == 2) {
			pid[n] = p;
			dir[n] = strdup(d);
			n++;
		}
	}
	ck_assert_int_eq(n, 2);
	for (i = 0; i < 2; i++) {
		ck_assert(dir_exists(dir[i]));
		ck_assert(pid_alive(pid[i]));
	}
	ck_assert_int_eq(kill(child, SIGKILL), 0);
	ck_assert_int_eq(waitpid(child, NULL, 0), child);
	for (;;) {
		rc = poll(&pfd, 1, 30000);
		ck_assert_msg(rc == 1,
			      "engine still alive 30 s after the kill");
		r = read(fds[0], buf, sizeof(buf));
		if (r == 0)
			break;
		ck_assert_int_gt(r, 0);
	}
	close(fds[0]);
	for (i = 0; i < 2; i++) {
		ck_assert_msg(!dir_exists(dir[i]), "%s is still there", dir[i]);
		ck_assert_msg(!pid_alive(pid[i]), "postmaster %d still runs",
			      (int)pid[i]);
		free(dir[i]);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pg_harness");
	TCase *tc = tcase_create("shared");
	TCase *own = tcase_create("own");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, shared_start, shared_stop);
	tcase_add_test(tc, prepared_txn_commits_on_two_servers);
	tcase_add_test(tc, unix_socket_reaches_same_server);
	tcase_add_test(tc, prepared_txn_survives_kill_and_restart);
	tcase_add_test(tc, stop_is_clean_and_restart_keeps_data);
	tcase_add_test(tc, harness_works_from_forked_child);
	tcase_add_test(tc, server_that_died_by_itself_restarts);
	tcase_add_test(tc, bad_arguments_are_refused);
	suite_add_tcase(s, tc);
	tcase_set_timeout(own, 120);
	tcase_add_test(own, destroy_removes_dirs_and_stops_servers);
	tcase_add_test(own, sigkill_of_owner_cleans_up);
	tcase_add_test(own, destroy_after_engine_was_killed_sweeps);
	tcase_add_test(own, failed_start_leaves_nothing_behind);
	tcase_add_test(own, unknown_server_user_is_an_error);
	suite_add_tcase(s, own);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
