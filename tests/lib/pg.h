/*
 * pg.h - throwaway PostgreSQL 15 servers for integration tests.
 *
 * pg_harness_start(n) starts n servers, each in its own temporary directory
 * ($TMPDIR or /tmp, name prefix "decree-pg-") on a free port of 127.0.0.1,
 * with its unix socket inside that directory, max_prepared_transactions=100,
 * fsync=on and trust authentication for local and loopback connections only
 * (superuser "postgres", database "postgres").  Run as root, the servers run
 * as an unprivileged user.
 *
 * The work is done by one engine, tests/lib/pgharness.sh, which shell tests
 * use too (docs/testing.md).  It is also the watchdog: when the process that
 * called pg_harness_start() dies, even by SIGKILL, the engine stops the
 * servers and removes their directories.  pg_harness_destroy() does the same
 * and returns when it is done.
 *
 * The engine script is found through $DECREE_PGHARNESS, else
 * tests/lib/pgharness.sh below the working directory, else below an
 * ancestor of the test binary's directory.
 *
 * Errors are 0 or a negative errno; a message goes to stderr (this is test
 * code: it prints, it never exits).  Server indices run from 0 to count-1.
 *
 * Ownership: the harness owns every string it returns; they live until
 * pg_harness_destroy().  A harness may be used in a process forked after it
 * was started (Check's forked tests); the process that started it must
 * destroy it.
 */
#ifndef DECREE_TESTS_PG_H
#define DECREE_TESTS_PG_H

#include <sys/types.h>

struct pg_harness;

/*
 * Starts n servers (1..16) and waits until each accepts connections.  0 or a
 * negative errno; on failure nothing is left behind and *out is NULL; a
 * message goes to stderr.
 */
int pg_harness_start(int n, struct pg_harness **out);
int pg_harness_count(const struct pg_harness *h);

/*
 * libpq conninfo of server i over TCP: "host=127.0.0.1 port=P
 * dbname=postgres user=postgres connect_timeout=5".  Owned by h; NULL if i
 * is out of range.
 */
const char *pg_harness_conninfo(const struct pg_harness *h, int i);
/* Same server over its unix socket (host=<its dir>).  Owned by h. */
const char *pg_harness_conninfo_unix(const struct pg_harness *h, int i);
/* The server's TCP port, or -EINVAL. */
int pg_harness_port(const struct pg_harness *h, int i);

/* Clean (fast) shutdown; keeps data and port.  Stopping a stopped server is
 * not an error. */
int pg_harness_stop_server(struct pg_harness *h, int i);
/* SIGKILLs the postmaster and its backends (a crash); keeps data and port. */
int pg_harness_kill_server(struct pg_harness *h, int i);
/* Starts server i again on the same directory and port; waits until it
 * accepts connections (after crash recovery).  -EBUSY if it is running. */
int pg_harness_start_server(struct pg_harness *h, int i);

/* Stops all servers, removes every directory, frees h.  NULL is a no-op. */
void pg_harness_destroy(struct pg_harness *h);

/* Additions beyond the original interface, for tests of the harness itself
 * and for debugging. */

/* Server i's own temporary directory (data in <dir>/data, server log in
 * <dir>/log).  Owned by h; NULL if i is out of range. */
const char *pg_harness_dir(const struct pg_harness *h, int i);
/* The postmaster's pid (asked of the engine, so it is current even in a
 * forked test), 0 while the server is stopped, or a negative errno. */
pid_t pg_harness_pid(const struct pg_harness *h, int i);

#endif
