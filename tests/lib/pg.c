/*
 * pg.c - the C face of the PostgreSQL test harness: runs the engine
 * tests/lib/pgharness.sh and talks to it line by line.
 *
 * Design notes
 *  1. One implementation.  Everything about servers - users, directories,
 *     ports, initdb, waiting, stopping, cleaning up - lives in the engine
 *     script, which shell tests use too.  This file only starts it and
 *     speaks its protocol (described at the top of pgharness.sh).
 *  2. The watchdog is a socket.  The engine's stdin and stdout are one end
 *     of a socketpair; this process holds the other end, close-on-exec, so
 *     programs a test runs do not inherit it.  When this process dies, even
 *     by SIGKILL, the engine reads end of file and removes everything.  A
 *     socket rather than a pipe lets us send with MSG_NOSIGNAL: a dead
 *     engine gives -EPIPE, not a SIGPIPE that would kill the test.
 *  3. The engine runs in a session of its own (setsid), so a signal to the
 *     test's process group does not take the watchdog down with it, and
 *     starts with every descriptor above stderr closed, so it holds no
 *     socket or pipe of the test.  Its stderr is the test's stderr: its
 *     diagnostics land in the test log.
 *  4. Answers are read one byte at a time with a deadline.  Nothing is
 *     buffered between requests, so a harness started before Check forks a
 *     test can be used from the forked child.  Each request carries a tag
 *     (pid and sequence number) that its answer repeats: an answer left
 *     unread by a child that crashed is skipped, not taken for the next.
 *  5. Allocation uses plain malloc, not common/mem.h, on purpose: a test
 *     that makes the N-th allocation fail aims at the code under test, not
 *     at its harness.
 */
#include "tests/lib/pg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG_MAX_SERVERS 16
#define ENGINE_PATH    "tests/lib/pgharness.sh"
/* Bounds on one answer: startup of 16 servers (each bounded by the engine's
 * own 60 s) and a shutdown (bounded by 30 s + 10 s). */
#define START_TIMEOUT_MS (16 * 90 * 1000)
#define CMD_TIMEOUT_MS	 (180 * 1000)
#define LINE_MAX_LEN	 4096

struct pg_server {
	int port;
	char *dir;
	char *conninfo;
	char *conninfo_unix;
};

struct pg_harness {
	int n;
	int fd;	      /* our end of the socketpair to the engine */
	pid_t engine; /* the engine's pid (our child) */
	pid_t owner;  /* the process that started it */
	char *script; /* path of pgharness.sh */
	struct pg_server srv[PG_MAX_SERVERS];
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static char *dup_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0)
		return NULL;
	s = malloc((size_t)len + 1);
	if (!s)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)len + 1, fmt, ap);
	va_end(ap);
	return s;
}

static bool readable(const char *path)
{
	return access(path, R_OK) == 0;
}

/* The engine script: $DECREE_PGHARNESS, ./tests/lib/pgharness.sh, or the
 * same below an ancestor of the directory of /proc/self/exe.  Returns a
 * malloc'd path or NULL. */
static char *find_engine(void)
{
	const char *env = getenv("DECREE_PGHARNESS");
	char exe[PATH_MAX];
	char *cand, *slash;
	ssize_t len;
	int up;

	if (env && *env)
		return readable(env) ? strdup(env) : NULL;
	if (readable(ENGINE_PATH))
		return realpath(ENGINE_PATH, NULL);
	len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len <= 0)
		return NULL;
	exe[len] = '\0';
	for (up = 0; up < 8; up++) {
		slash = strrchr(exe, '/');
		if (!slash || slash == exe)
			return NULL;
		*slash = '\0';
		cand = dup_printf("%s/%s", exe, ENGINE_PATH);
		if (!cand)
			return NULL;
		if (readable(cand))
			return cand;
		free(cand);
	}
	return NULL;
}

/* Reads one line (without its newline) into buf.  0, -EPIPE at end of file,
 * -ETIMEDOUT, -EMSGSIZE or another negative errno. */
static int read_line(int fd, char *buf, size_t size, int timeout_ms)
{
	long deadline = now_ms() + timeout_ms;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	size_t len = 0;
	ssize_t r;
	long left;
	char c;
	int rc;

	for (;;) {
		left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		r = read(fd, &c, 1);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		if (c == '\n') {
			buf[len] = '\0';
			return 0;
		}
		if (len + 1 >= size)
			return -EMSGSIZE;
		buf[len++] = c;
	}
}

static int send_line(int fd, const char *line)
{
	size_t len = strlen(line), off = 0;
	ssize_t w;

	while (off < len) {
		w = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		off += (size_t)w;
	}
	return 0;
}

/* In the child between fork and exec: become the engine.  Only system
 * calls from here on (the test may have threads); argv is built before the
 * fork. */
static void exec_engine(int sock, char **argv)
{
	struct sigaction dfl;
	sigset_t none;
	long fd, max;

	setsid();
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &dfl, NULL);
	sigaction(SIGPIPE, &dfl, NULL);
	sigaction(SIGINT, &dfl, NULL);
	sigaction(SIGTERM, &dfl, NULL);
	sigaction(SIGHUP, &dfl, NULL);
	sigaction(SIGQUIT, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* If the test had closed stdin or stdout, the socket may sit on 0 or
	 * 1 already; dup2 onto itself would keep its close-on-exec flag. */
	if (sock < 3)
		sock = fcntl(sock, F_DUPFD, 3);
	if (sock < 0 || dup2(sock, 0) < 0 || dup2(sock, 1) < 0)
		_exit(127);
	/* Everything else of the test's (sockets, pipes) stays behind. */
	if (close_range(3, ~0U, 0) < 0) {
		max = sysconf(_SC_OPEN_MAX);
		for (fd = 3; fd < (max > 0 ? max : 1024); fd++)
			close((int)fd);
	}
	execvp("bash", argv);
	_exit(127);
}

/* Runs "bash pgharness.sh sweep": removes what an engine that was
 * SIGKILLed left behind. */
static void run_sweep(const char *script)
{
	char *argv[] = {"bash", (char *)script, "sweep", NULL};
	pid_t pid = fork();
	int null;

	if (pid == 0) {
		null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		execvp("bash", argv);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static void free_harness(struct pg_harness *h)
{
	int i;

	for (i = 0; i < PG_MAX_SERVERS; i++) {
		free(h->srv[i].dir);
		free(h->srv[i].conninfo);
		free(h->srv[i].conninfo_unix);
	}
	free(h->script);
	free(h);
}

/* Parses "server I PORT DIR PID" into h. */
static int take_server_line(struct pg_harness *h, const char *line)
{
	struct pg_server *s;
	char dir[LINE_MAX_LEN];
	int i, port, pid;

	if (sscanf(line, "server %d %d %4095s %d", &i, &port, dir, &pid) != 4 ||
	    i < 0 || i >= h->n || port <= 0 || port > 65535 || pid <= 0)
		return -EPROTO;
	s = &h->srv[i];
	free(s->dir);
	free(s->conninfo);
	free(s->conninfo_unix);
	s->port = port;
	s->dir = strdup(dir);
	s->conninfo = dup_printf("host=127.0.0.1 port=%d dbname=postgres "
				 "user=postgres connect_timeout=5",
				 port);
	s->conninfo_unix = dup_printf("host=%s port=%d dbname=postgres "
				      "user=postgres connect_timeout=5",
				      dir, port);
	if (!s->dir || !s->conninfo || !s->conninfo_unix)
		return -ENOMEM;
	return 0;
}

int pg_harness_start(int n, struct pg_harness **out)
{
	char line[LINE_MAX_LEN], count[16];
	struct pg_harness *h;
	char *engine, *argv[5];
	int sv[2], rc, got = 0;
	pid_t pid;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (n < 1 || n > PG_MAX_SERVERS) {
		fprintf(stderr, "pg_harness: cannot start %d servers (1..%d)\n",
			n, PG_MAX_SERVERS);
		return -EINVAL;
	}
	engine = find_engine();
	if (!engine) {
		fprintf(stderr,
			"pg_harness: cannot find %s (set "
			"DECREE_PGHARNESS or run from the repository)\n",
			ENGINE_PATH);
		return -ENOENT;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		rc = -ENOMEM;
		goto err_free_engine;
	}
	h->n = n;
	h->owner = getpid();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		rc = -errno;
		fprintf(stderr, "pg_harness: socketpair: %s\n", strerror(-rc));
		goto err_free_harness;
	}
	snprintf(count, sizeof(count), "%d", n);
	argv[0] = "bash";
	argv[1] = engine;
	argv[2] = "serve";
	argv[3] = count;
	argv[4] = NULL;
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		fprintf(stderr, "pg_harness: fork: %s\n", strerror(-rc));
		goto err_close_sockets;
	}
	if (pid == 0)
		exec_engine(sv[1], argv);
	close(sv[1]);
	h->fd = sv[0];
	h->engine = pid;
	for (;;) {
		rc = read_line(h->fd, line, sizeof(line), START_TIMEOUT_MS);
		if (rc < 0) {
			fprintf(stderr,
				"pg_harness: engine %s gave no answer: "
				"%s\n",
				engine, strerror(-rc));
			goto err_stop_engine;
		}
		if (strncmp(line, "server ", 7) == 0) {
			rc = take_server_line(h, line);
			if (rc < 0) {
				fprintf(stderr,
					"pg_harness: bad engine line "
					"'%s'\n",
					line);
				goto err_stop_engine;
			}
			got++;
		} else if (strcmp(line, "ready") == 0 && got == n) {
			break;
		} else {
			fprintf(stderr,
				"pg_harness: cannot start %d server(s): "
				"%s\n",
				n,
				strncmp(line, "error ", 6) ? line : line + 6);
			rc = -EIO;
			goto err_stop_engine;
		}
	}
	h->script = engine;
	*out = h;
	return 0;

err_stop_engine:
	/* End of file makes the engine remove whatever it made. */
	close(h->fd);
	reap(h->engine);
	goto err_free_harness;
err_close_sockets:
	close(sv[0]);
	close(sv[1]);
err_free_harness:
	free_harness(h);
err_free_engine:
	free(engine);
	return rc;
}

int pg_harness_count(const struct pg_harness *h)
{
	return h ? h->n : 0;
}

static bool valid(const struct pg_harness *h, int i)
{
	return h && i >= 0 && i < h->n;
}

const char *pg_harness_conninfo(const struct pg_harness *h, int i)
{
	return valid(h, i) ? h->srv[i].conninfo : NULL;
}

const char *pg_harness_conninfo_unix(const struct pg_harness *h, int i)
{
	return valid(h, i) ? h->srv[i].conninfo_unix : NULL;
}

int pg_harness_port(const struct pg_harness *h, int i)
{
	return valid(h, i) ? h->srv[i].port : -EINVAL;
}

const char *pg_harness_dir(const struct pg_harness *h, int i)
{
	return valid(h, i) ? h->srv[i].dir : NULL;
}

/*
 * Sends "@TAG <cmd>" and reads answers until the one that carries TAG,
 * skipping an answer left over from a request whose process died before it
 * read it (a forked test that crashed).  Returns 0 with the answer (tag
 * removed) in line, or a negative errno.
 */
static int request(const struct pg_harness *h, const char *cmd, char *line,
		   size_t size)
{
	static unsigned long seq;
	char tag[64], req[256];
	size_t taglen;
	int rc;

	snprintf(tag, sizeof(tag), "@%ld.%lu", (long)getpid(), ++seq);
	taglen = strlen(tag);
	snprintf(req, sizeof(req), "%s %s\n", tag, cmd);
	rc = send_line(h->fd, req);
	while (rc == 0) {
		rc = read_line(h->fd, line, size, CMD_TIMEOUT_MS);
		if (rc == 0 && strncmp(line, tag, taglen) == 0 &&
		    line[taglen] == ' ') {
			memmove(line, line + taglen + 1,
				strlen(line + taglen + 1) + 1);
			return 0;
		}
	}
	return rc;
}

/* Sends "<cmd> <i>" and reads the answer; on "ok N" stores N in *num. */
static int ask(const struct pg_harness *h, const char *cmd, int i, long *num)
{
	char line[LINE_MAX_LEN], req[64];
	int rc;

	if (!valid(h, i))
		return -EINVAL;
	snprintf(req, sizeof(req), "%s %d", cmd, i);
	rc = request(h, req, line, sizeof(line));
	if (rc < 0) {
		fprintf(stderr, "pg_harness: %s server %d: engine: %s\n", cmd,
			i, strerror(-rc));
		return rc;
	}
	if (strncmp(line, "ok", 2) != 0) {
		fprintf(stderr, "pg_harness: %s server %d: %s\n", cmd, i,
			strncmp(line, "error ", 6) ? line : line + 6);
		return strstr(line, "is running") ? -EBUSY : -EIO;
	}
	if (num && (sscanf(line, "ok %ld", num) != 1 || *num < 0))
		return -EPROTO;
	return 0;
}

/* Asks the engine rather than trusting h: a forked test may have stopped or
 * restarted the server since h was copied into this process. */
pid_t pg_harness_pid(const struct pg_harness *h, int i)
{
	long pid;
	int rc = ask(h, "pid", i, &pid);

	return rc < 0 ? rc : (pid_t)pid;
}

int pg_harness_stop_server(struct pg_harness *h, int i)
{
	return ask(h, "stop", i, NULL);
}

int pg_harness_kill_server(struct pg_harness *h, int i)
{
	return ask(h, "kill", i, NULL);
}

int pg_harness_start_server(struct pg_harness *h, int i)
{
	long pid;
	int rc = ask(h, "start", i, &pid);

	return rc == 0 && pid <= 0 ? -EPROTO : rc;
}

void pg_harness_destroy(struct pg_harness *h)
{
	char line[LINE_MAX_LEN];

	if (!h)
		return;
	/* The answer to quit comes after the cleanup: when we return, the
	 * servers are gone and so are their directories. */
	if (request(h, "quit", line, sizeof(line)) < 0)
		run_sweep(h->script);
	close(h->fd);
	if (getpid() == h->owner)
		reap(h->engine);
	free_harness(h);
}
