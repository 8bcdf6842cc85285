/*
 * test_cmd_txn.c - `decree txn run|status|list` against a fake coordinator:
 * a common/http server in a thread of this process answering canned JSON
 * shaped like coordinator/api.c's answers.  Each test runs the real decree
 * binary (posix_spawn, stdout and stderr to files) and checks its exit
 * status, what it printed, and the request the fake received.
 *
 * The binary is $DECREE_BIN (set by tests/run), else <build>/decree next to
 * this program's <build>/tests/unit/.  No sleeps: the one timeout test has
 * the fake hold the request and the client give up after 300 ms.
 */
#include "common/common.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- the fake coordinator ----------------------------------------------- */

#define MAX_ROUTES 4
#define HOLD	   0 /* a route status: never answer (until the fake stops) */

struct route {
	char method[8];
	char path[128];
	int status;
	char body[4096];
	char location[256];
};

struct seen {
	char method[8];
	char path[256];
	char query[256];
	char content_type[64];
	char body[4096];
};

struct fake {
	uv_loop_t loop;
	uv_async_t stop_async;
	pthread_t thread;
	struct http_server *srv;
	pthread_mutex_t mu;
	struct route routes[MAX_ROUTES];
	int nroutes;
	struct seen last;
	int nseen;
	struct http_request *held[4];
	int nheld;
	char addr[64];
	int port;
};

static void handler(struct http_request *req, void *data)
{
	struct fake *f = data;
	struct route *r = NULL;

	pthread_mutex_lock(&f->mu);
	f->nseen++;
	snprintf(f->last.method, sizeof(f->last.method), "%s", req->method);
	snprintf(f->last.path, sizeof(f->last.path), "%s", req->path);
	snprintf(f->last.query, sizeof(f->last.query), "%s", req->query);
	snprintf(f->last.content_type, sizeof(f->last.content_type), "%s",
		 req->content_type ? req->content_type : "");
	snprintf(f->last.body, sizeof(f->last.body), "%s", req->body);
	for (int i = 0; i < f->nroutes && r == NULL; i++)
		if (strcmp(f->routes[i].method, req->method) == 0 &&
		    strcmp(f->routes[i].path, req->path) == 0)
			r = &f->routes[i];
	pthread_mutex_unlock(&f->mu);
	if (r == NULL) {
		static const char nf[] = "{\"error\":{\"code\":\"not_found\","
					 "\"message\":\"no such endpoint\"}}";

		http_respond(req, 404, "application/json", nf, strlen(nf));
		return;
	}
	if (r->status == HOLD && f->nheld < 4) {
		f->held[f->nheld++] = req;
		return;
	}
	if (r->location[0] != '\0')
		http_respond_header(req, "Location", r->location);
	http_respond(req, r->status, "application/json", r->body,
		     strlen(r->body));
}

static void *fake_thread(void *arg)
{
	struct fake *f = arg;

	uv_run(&f->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void on_stop(uv_async_t *a)
{
	struct fake *f = a->data;

	http_server_stop(f->srv, NULL);
	for (int i = 0; i < f->nheld; i++)
		http_respond(f->held[i], 500, NULL, NULL, 0); /* frees it */
	f->nheld = 0;
	uv_close((uv_handle_t *)a, NULL);
}

static void fake_start(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	ck_assert_int_eq(uv_loop_init(&f->loop), 0);
	ck_assert_int_eq(http_server_start(&f->loop, "127.0.0.1:0", NULL,
					   handler, f, &f->srv),
			 0);
	f->port = http_server_port(f->srv);
	snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%d", f->port);
	f->stop_async.data = f;
	ck_assert_int_eq(uv_async_init(&f->loop, &f->stop_async, on_stop), 0);
	ck_assert_int_eq(pthread_create(&f->thread, NULL, fake_thread, f), 0);
}

static void fake_stop(struct fake *f)
{
	uv_async_send(&f->stop_async);
	pthread_join(f->thread, NULL);
	ck_assert_int_eq(uv_loop_close(&f->loop), 0);
	pthread_mutex_destroy(&f->mu);
}

static void fake_route(struct fake *f, const char *method, const char *path,
		       int status, const char *body, const char *location)
{
	struct route *r;

	pthread_mutex_lock(&f->mu);
	ck_assert_int_lt(f->nroutes, MAX_ROUTES);
	r = &f->routes[f->nroutes++];
	snprintf(r->method, sizeof(r->method), "%s", method);
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->status = status;
	snprintf(r->body, sizeof(r->body), "%s", body ? body : "");
	snprintf(r->location, sizeof(r->location), "%s",
		 location ? location : "");
	pthread_mutex_unlock(&f->mu);
}

static struct seen fake_last(struct fake *f, int *nseen)
{
	struct seen s;

	pthread_mutex_lock(&f->mu);
	s = f->last;
	*nseen = f->nseen;
	pthread_mutex_unlock(&f->mu);
	return s;
}

/* ---- running the binary ------------------------------------------------- */

struct run {
	int status; /* exit status, or -1 if it did not exit normally */
	char out[16384];
	char err[4096];
};

static const char *decree_bin(void)
{
	static char path[PATH_MAX];
	char self[PATH_MAX];
	ssize_t n;

	if (getenv("DECREE_BIN") != NULL && getenv("DECREE_BIN")[0] != '\0')
		return getenv("DECREE_BIN");
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	/* <build>/tests/unit/test_cmd_txn -> <build>/decree */
	snprintf(path, sizeof(path), "%s/../../decree", dirname(self));
	return path;
}

static void slurp(const char *file, char *buf, size_t len)
{
	FILE *f = fopen(file, "rb");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(file);
}

/*
 * Runs decree with the NULL-terminated arguments, stdin from stdin_file
 * (NULL: /dev/null) and env_coordinator as $DECREE_COORDINATOR (NULL:
 * unset).
 */
static void run_decree_argv(struct run *r, const char *stdin_file,
			    const char *env_coordinator,
			    const char *const *args)
{
	char outf[] = "/tmp/decree-txn-out-XXXXXX";
	char errf[] = "/tmp/decree-txn-err-XXXXXX";
	const char *argv[32];
	char *envp[64], envbuf[300];
	int argc = 0, nenv = 0, ofd, efd, wstatus;
	posix_spawn_file_actions_t fa;
	pid_t pid;

	argv[argc++] = decree_bin();
	for (; *args != NULL; args++) {
		ck_assert_int_lt(argc, 31);
		argv[argc++] = *args;
	}
	argv[argc] = NULL;
	for (char **e = environ; *e != NULL && nenv < 62; e++)
		if (strncmp(*e, "DECREE_COORDINATOR=", 19) != 0)
			envp[nenv++] = *e;
	if (env_coordinator != NULL) {
		snprintf(envbuf, sizeof(envbuf), "DECREE_COORDINATOR=%s",
			 env_coordinator);
		envp[nenv++] = envbuf;
	}
	envp[nenv] = NULL;
	ofd = mkstemp(outf);
	efd = mkstemp(errf);
	ck_assert(ofd >= 0 && efd >= 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(
	    &fa, 0, stdin_file ? stdin_file : "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, ofd, 1);
	posix_spawn_file_actions_adddup2(&fa, efd, 2);
	ck_assert_msg(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv,
				  envp) == 0,
		      "cannot run %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	close(ofd);
	close(efd);
	ck_assert_int_eq(waitpid(pid, &wstatus, 0), pid);
	r->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
	slurp(outf, r->out, sizeof(r->out));
	slurp(errf, r->err, sizeof(r->err));
}

static void run_decree(struct run *r, const char *stdin_file,
		       const char *env_coordinator, ...)
{
	const char *args[32];
	int n = 0;
	va_list ap;

	va_start(ap, env_coordinator);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
		ck_assert_int_lt(n, 31);
		args[n++] = a;
	}
	va_end(ap);
	args[n] = NULL;
	run_decree_argv(r, stdin_file, env_coordinator, args);
}

/* A file holding text; the name is written into name (>= 32 bytes). */
static void write_file(char *name, const char *text)
{
	int fd;

	strcpy(name, "/tmp/decree-txn-spec-XXXXXX");
	fd = mkstemp(name);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

#define ck_has(hay, needle)                                                    \
	ck_assert_msg(strstr((hay), (needle)) != NULL,                         \
		      "expected \"%s\" in:\n%s", (needle), (hay))
#define ck_lacks(hay, needle)                                                  \
	ck_assert_msg(strstr((hay), (needle)) == NULL,                         \
		      "did not expect \"%s\" in:\n%s", (needle), (hay))

/* ---- canned answers (as coordinator/api.c writes them) ------------------ */

static const char SPEC[] =
    "{\"branches\": [\n"
    "  {\"resource\": \"bank_a\", \"statements\": [\n"
    "     \"UPDATE acct SET bal = bal - 10 WHERE id = 1\",\n"
    "     {\"sql\": \"SELECT id, name FROM acct WHERE id > $1\", "
    "\"params\": [0]}]},\n"
    "  {\"resource\": \"bank_b\", \"statements\": [\"INSERT INTO t "
    "VALUES (1)\"]}],\n"
    " \"timeout_ms\": 2000}\n";

static const char COMMITTED[] =
    "{\"gid\":\"demo_1_7\",\"state\":\"done\",\"outcome\":\"committed\","
    "\"protocol\":\"2pc-pa\",\"idempotency_key\":\"k1\",\"branches\":["
    "{\"resource\":\"bank_a\",\"gid\":\"demo_1_7_1of2\",\"state\":"
    "\"committed\",\"results\":[{\"rows_affected\":1},{\"rows_affected\":"
    "2,\"columns\":[\"id\",\"name\"],\"rows\":[[\"1\",\"alice\"],[\"22\","
    "null],[\"3\",\"line\\nbreak\"]]}]},"
    "{\"resource\":\"bank_b\",\"gid\":\"demo_1_7_2of2\",\"state\":"
    "\"committed\",\"results\":[{\"rows_affected\":1},{\"rows_affected\":"
    "10,\"columns\":[\"g\"],\"rows\":[[\"1\"],[\"2\"]],\"truncated\":"
    "true}]}],"
    "\"timings\":{\"decided_ms\":12,\"done_ms\":15,\"age_ms\":15}}";

static const char ABORTED[] =
    "{\"gid\":\"demo_1_8\",\"state\":\"done\",\"outcome\":\"aborted\","
    "\"protocol\":\"2pc-pa\",\"branches\":["
    "{\"resource\":\"bank_a\",\"gid\":\"demo_1_8_1of2\",\"state\":"
    "\"rolled_back\",\"results\":[{\"rows_affected\":1}]},"
    "{\"resource\":\"bank_b\",\"gid\":\"demo_1_8_2of2\",\"state\":"
    "\"rolled_back\",\"results\":[{\"rows_affected\":1}],\"sqlstate\":"
    "\"23505\",\"message\":"
    "\"duplicate key value violates unique constraint \\\"t_pkey\\\"\"}],"
    "\"error\":{\"code\":\"statement_failed\",\"reason\":\"statement failed\",\"message\":\"branch 2 "
    "(bank_b): statement failed: 23505 duplicate key value violates "
    "unique constraint \\\"t_pkey\\\"\",\"branch\":1,\"resource\":"
    "\"bank_b\",\"sqlstate\":\"23505\"},"
    "\"timings\":{\"decided_ms\":3,\"done_ms\":4,\"age_ms\":5}}";

static const char UNKNOWN[] =
    "{\"gid\":\"demo_1_9\",\"state\":\"in_doubt\",\"outcome\":\"unknown\","
    "\"protocol\":\"2pc-pa\",\"branches\":["
    "{\"resource\":\"bank_a\",\"gid\":\"demo_1_9_1of1\",\"state\":"
    "\"unknown\",\"message\":\"connection lost\"}],"
    "\"error\":{\"code\":\"the answer to the one-phase COMMIT was lost\","
    "\"message\":\"branch 1 (bank_a): the answer to the one-phase COMMIT "
    "was lost: connection lost\",\"branch\":0,\"resource\":\"bank_a\"},"
    "\"timings\":{\"age_ms\":5}}";

static const char LIST[] =
    "{\"txns\":[{\"gid\":\"demo_1_7\",\"state\":\"done\",\"outcome\":"
    "\"committed\",\"protocol\":\"2pc-pa\",\"branches\":[{},{}],"
    "\"timings\":{\"age_ms\":1500}},{\"gid\":\"demo_1_10\",\"state\":"
    "\"done\",\"outcome\":\"aborted\",\"protocol\":\"2pc-pn\",\"branches\":"
    "[{}],\"timings\":{\"age_ms\":65000}}],\"count\":2}";

/* ---- tests: run --------------------------------------------------------- */

START_TEST(run_committed_prints_outcome_branches_rows_and_exits_0)
{
	struct fake f;
	struct run r;
	struct seen s;
	char spec[64];
	json_t *sent, *want;
	int n;

	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", 200, COMMITTED, NULL);
	write_file(spec, SPEC);
	run_decree(&r, NULL, NULL, "txn", "run", "--coordinator", f.addr, spec,
		   NULL);
	s = fake_last(&f, &n);
	fake_stop(&f);
	unlink(spec);
	ck_assert_msg(r.status == 0, "exit %d, stderr: %s", r.status, r.err);
	ck_has(r.out, "txn demo_1_7: committed\n");
	ck_has(r.out, "  state done, protocol 2pc-pa, decided in 12 ms, done "
		      "in 15 ms\n");
	ck_has(r.out, "  idempotency key: k1\n");
	ck_has(r.out, "branch 1 of 2: bank_a demo_1_7_1of2 committed\n");
	ck_has(r.out, "  statement 1: 1 row affected\n");
	ck_has(r.out, "  statement 2: 3 rows\n"
		      "    id | name\n"
		      "    ---+------------\n"
		      "    1  | alice\n"
		      "    22 | NULL\n"
		      "    3  | line\\nbreak\n");
	ck_has(r.out, "branch 2 of 2: bank_b demo_1_7_2of2 committed\n"
		      "  statement 1: 1 row affected\n"
		      "  statement 2: 10 rows, the first 2 shown "
		      "(limits.max_rows)\n"
		      "    g\n"
		      "    -\n"
		      "    1\n"
		      "    2\n");
	ck_assert_str_eq(r.err, "");
	/* What went out: the spec, as JSON, to POST /v1/txns. */
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(s.method, "POST");
	ck_assert_str_eq(s.path, "/v1/txns");
	ck_assert_str_eq(s.content_type, "application/json");
	sent = json_loads(s.body, 0, NULL);
	want = json_loads(SPEC, 0, NULL);
	ck_assert_ptr_nonnull(sent);
	ck_assert(json_equal(sent, want));
	json_decref(sent);
	json_decref(want);
}
END_TEST

START_TEST(run_aborted_names_branch_sqlstate_and_message_and_exits_1)
{
	struct fake f;
	struct run r;
	char spec[64];

	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", 409, ABORTED, NULL);
	write_file(spec, SPEC);
	run_decree(&r, NULL, NULL, "txn", "run", spec, "--coordinator", f.addr,
		   NULL);
	fake_stop(&f);
	unlink(spec);
	ck_assert_int_eq(r.status, 1);
	ck_has(r.out, "txn demo_1_8: aborted\n");
	ck_has(r.out, "  error: statement failed on branch 2 (bank_b)\n"
		      "    SQLSTATE 23505: duplicate key value violates unique "
		      "constraint \"t_pkey\"\n");
	ck_has(r.out, "branch 1 of 2: bank_a demo_1_8_1of2 rolled_back\n");
	/* The branch the abort names is rolled back by then; its error
	 * belongs to the statement after its last result. */
	ck_has(r.out, "branch 2 of 2: bank_b demo_1_8_2of2 rolled_back\n"
		      "  statement 1: 1 row affected\n"
		      "  statement 2 failed: SQLSTATE 23505: duplicate key");
}
END_TEST

START_TEST(run_unknown_outcome_exits_3_and_says_how_to_look_it_up)
{
	struct fake f;
	struct run r;
	char spec[64];

	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", 503, UNKNOWN, NULL);
	write_file(spec, SPEC);
	run_decree(&r, NULL, NULL, "txn", "run", "--coordinator", f.addr, spec,
		   NULL);
	fake_stop(&f);
	unlink(spec);
	ck_assert_int_eq(r.status, 3);
	ck_has(r.out, "txn demo_1_9: unknown\n");
	ck_has(r.out, "  error: the answer to the one-phase COMMIT was lost "
		      "on branch 1 (bank_a)\n"
		      "    branch 1 (bank_a): the answer");
	ck_has(r.out, "branch 1 of 1: bank_a demo_1_9_1of1 unknown\n"
		      "  connection lost\n");
	ck_has(r.err, "decree txn status demo_1_9");
}
END_TEST

START_TEST(run_json_prints_the_answer_as_it_came)
{
	struct fake f;
	struct run r;
	char spec[64];

	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", 409, ABORTED, NULL);
	write_file(spec, SPEC);
	run_decree(&r, NULL, NULL, "txn", "run", "--json", "--coordinator",
		   f.addr, spec, NULL);
	fake_stop(&f);
	unlink(spec);
	ck_assert_int_eq(r.status, 1);
	ck_assert_uint_eq(strlen(r.out), strlen(ABORTED) + 1);
	ck_assert(strncmp(r.out, ABORTED, strlen(ABORTED)) == 0);
}
END_TEST

START_TEST(run_reads_stdin_and_sets_key_and_protocol)
{
	struct fake f;
	struct run r;
	struct seen s;
	char spec[64];
	json_t *sent;
	int n;

	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", 200, COMMITTED, NULL);
	write_file(spec, SPEC);
	run_decree(&r, spec, NULL, "txn", "run", "-", "--coordinator", f.addr,
		   "--idempotency-key=k1", "--protocol", "2pc-pn", NULL);
	s = fake_last(&f, &n);
	fake_stop(&f);
	unlink(spec);
	ck_assert_msg(r.status == 0, "exit %d, stderr: %s", r.status, r.err);
	ck_assert_int_eq(n, 1);
	sent = json_loads(s.body, 0, NULL);
	ck_assert_ptr_nonnull(sent);
	ck_assert_str_eq(
	    json_string_value(json_object_get(sent, "idempotency_key")), "k1");
	ck_assert_str_eq(json_string_value(json_object_get(sent, "protocol")),
			 "2pc-pn");
	ck_assert_uint_eq(json_array_size(json_object_get(sent, "branches")),
			  2);
	json_decref(sent);
}
END_TEST

START_TEST(run_bad_spec_is_reported_with_its_place_and_nothing_is_sent)
{
	struct fake f;
	struct run r;
	char spec[64];
	int n;

	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", 200, COMMITTED, NULL);
	write_file(spec, "{\"branches\": [\n  {\"resource\": \"a\",}]}\n");
	run_decree(&r, NULL, NULL, "txn", "run", "--coordinator", f.addr, spec,
		   NULL);
	ck_assert_int_eq(r.status, 2);
	ck_has(r.err, "line 2 column");
	unlink(spec);
	write_file(spec, "[1, 2]");
	run_decree(&r, NULL, NULL, "txn", "run", "--coordinator", f.addr, spec,
		   NULL);
	ck_assert_int_eq(r.status, 2);
	ck_has(r.err, "must be a JSON object");
	unlink(spec);
	/* The key option must not contradict the spec's key. */
	write_file(spec, "{\"branches\": [], \"idempotency_key\": \"a\"}");
	run_decree(&r, NULL, NULL, "txn", "run", "--coordinator", f.addr,
		   "--idempotency-key", "b", spec, NULL);
	ck_assert_int_eq(r.status, 2);
	ck_has(r.err, "differs");
	unlink(spec);
	run_decree(&r, NULL, NULL, "txn", "run", "--coordinator", f.addr,
		   "/nonexistent/spec.json", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_has(r.err, "cannot open /nonexistent/spec.json: No such file");
	fake_last(&f, &n);
	fake_stop(&f);
	ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(run_rejected_request_exits_2_with_the_coordinator_message)
{
	struct fake f;
	struct run r;
	char spec[64];

	fake_start(&f);
	fake_route(
	    &f, "POST", "/v1/txns", 400,
	    "{\"error\":{\"code\":\"unknown_resource\",\"message\":"
	    "\"branches[1].resource: unknown resource \\\"bank_c\\\"\"}}",
	    NULL);
	write_file(spec, SPEC);
	run_decree(&r, NULL, NULL, "txn", "run", "--coordinator", f.addr, spec,
		   NULL);
	fake_stop(&f);
	unlink(spec);
	ck_assert_int_eq(r.status, 2);
	ck_assert_str_eq(r.out, "");
	ck_has(r.err, "answered 400 Bad Request: unknown_resource: "
		      "branches[1].resource: unknown resource \"bank_c\"");
}
END_TEST

START_TEST(run_plain_answers_decide_between_rejected_and_unknown)
{
	struct fake f;
	struct run r;
	char spec[64];

	/* The HTTP server's own 413 (text, not JSON): nothing ran. */
	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", 413, "Content Too Large\n", NULL);
	write_file(spec, SPEC);
	run_decree(&r, NULL, f.addr, "txn", "run", spec, NULL);
	fake_stop(&f);
	ck_assert_int_eq(r.status, 2);
	ck_has(r.err, "answered 413 Content Too Large: Content Too Large\n");
	ck_lacks(r.err, "unknown");
	/* A bare 500 may come after the decision: unknown. */
	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", 500, "out of memory\n", NULL);
	run_decree(&r, NULL, f.addr, "txn", "run", spec, NULL);
	fake_stop(&f);
	unlink(spec);
	ck_assert_int_eq(r.status, 3);
	ck_has(r.err, "answered 500 Internal Server Error: out of memory\n");
	ck_has(r.err, "the outcome is unknown");
}
END_TEST

START_TEST(run_unreachable_coordinator_exits_2_connection_refused)
{
	struct fake f;
	struct run r;
	char spec[64], addr[64];

	fake_start(&f);
	snprintf(addr, sizeof(addr), "%s", f.addr);
	fake_stop(&f); /* nothing listens there now */
	write_file(spec, SPEC);
	run_decree(&r, NULL, addr, "txn", "run", spec, NULL);
	unlink(spec);
	ck_assert_int_eq(r.status, 2);
	ck_has(r.err, "cannot reach coordinator at ");
	ck_has(r.err, addr);
	ck_has(r.err, ": connection refused\n");
}
END_TEST

START_TEST(run_timeout_after_sending_is_outcome_unknown)
{
	struct fake f;
	struct run r;
	char spec[64];
	int n;

	fake_start(&f);
	fake_route(&f, "POST", "/v1/txns", HOLD, NULL, NULL);
	write_file(spec, SPEC);
	run_decree(&r, NULL, NULL, "txn", "run", "--timeout-ms", "300",
		   "--coordinator", f.addr, spec, NULL);
	fake_last(&f, &n);
	fake_stop(&f);
	unlink(spec);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(r.status, 3);
	ck_has(r.err, "timed out");
	ck_has(r.err, "the outcome is unknown");
}
END_TEST

START_TEST(redirect_to_the_leader_is_followed_once_with_the_body)
{
	struct fake follower, leader;
	struct run r;
	struct seen s;
	char spec[64], loc[128];
	int n;

	fake_start(&follower);
	fake_start(&leader);
	snprintf(loc, sizeof(loc), "http://%s/v1/txns", leader.addr);
	fake_route(&follower, "POST", "/v1/txns", 307, "", loc);
	fake_route(&leader, "POST", "/v1/txns", 200, COMMITTED, NULL);
	write_file(spec, SPEC);
	run_decree(&r, NULL, follower.addr, "txn", "run", spec, NULL);
	s = fake_last(&leader, &n);
	fake_stop(&follower);
	fake_stop(&leader);
	unlink(spec);
	ck_assert_msg(r.status == 0, "exit %d, stderr: %s", r.status, r.err);
	ck_has(r.out, "txn demo_1_7: committed\n");
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(s.method, "POST");
	ck_has(s.body, "\"branches\"");
}
END_TEST

START_TEST(second_redirect_is_an_error)
{
	struct fake a, b;
	struct run r;
	char loc_a[128], loc_b[128];

	fake_start(&a);
	fake_start(&b);
	snprintf(loc_a, sizeof(loc_a), "http://%s/v1/txns/demo_1_7", b.addr);
	snprintf(loc_b, sizeof(loc_b), "http://%s/v1/txns/demo_1_7", a.addr);
	fake_route(&a, "GET", "/v1/txns/demo_1_7", 307, "", loc_a);
	fake_route(&b, "GET", "/v1/txns/demo_1_7", 307, "", loc_b);
	run_decree(&r, NULL, NULL, "txn", "status", "demo_1_7", "--coordinator",
		   a.addr, NULL);
	fake_stop(&a);
	fake_stop(&b);
	ck_assert_int_eq(r.status, 2);
	ck_has(r.err, "redirected twice");
}
END_TEST

/* ---- tests: status and list --------------------------------------------- */

START_TEST(status_by_gid_and_by_key)
{
	struct fake f;
	struct run r;
	struct seen s;
	int n;

	fake_start(&f);
	fake_route(&f, "GET", "/v1/txns/demo_1_8_2of2", 200, ABORTED, NULL);
	fake_route(&f, "GET", "/v1/txns", 200, COMMITTED, NULL);
	run_decree(&r, NULL, f.addr, "txn", "status", "demo_1_8_2of2", NULL);
	ck_assert_int_eq(r.status, 0); /* found, whatever its outcome */
	ck_has(r.out, "txn demo_1_8: aborted\n");
	run_decree(&r, NULL, f.addr, "txn", "status", "--key", "a b/c&d", NULL);
	s = fake_last(&f, &n);
	ck_assert_int_eq(r.status, 0);
	ck_has(r.out, "txn demo_1_7: committed\n");
	ck_assert_str_eq(s.method, "GET");
	ck_assert_str_eq(s.query, "idempotency_key=a%20b%2Fc%26d");
	run_decree(&r, NULL, f.addr, "txn", "status", "demo_1_7", "--json",
		   NULL);
	fake_stop(&f);
	ck_assert_int_eq(r.status, 1);
	ck_has(r.out, "\"not_found\"");
	ck_has(r.err, "answered 404 Not Found: not_found: no such endpoint");
}
END_TEST

START_TEST(list_sends_state_and_limit_and_prints_a_table)
{
	struct fake f;
	struct run r;
	struct seen s;
	int n;

	fake_start(&f);
	fake_route(&f, "GET", "/v1/txns", 200, LIST, NULL);
	run_decree(&r, NULL, f.addr, "txn", "list", "--state", "done",
		   "--limit=2", NULL);
	s = fake_last(&f, &n);
	ck_assert_msg(r.status == 0, "exit %d, stderr: %s", r.status, r.err);
	ck_assert_str_eq(s.path, "/v1/txns");
	ck_assert_str_eq(s.query, "state=done&limit=2");
	ck_has(r.out, "GID        STATE       OUTCOME    PROTOCOL  BRANCHES"
		      "        AGE\n");
	ck_has(r.out, "demo_1_7   done        committed  2pc-pa           2"
		      "     1500ms\n");
	ck_has(r.out, "demo_1_10  done        aborted    2pc-pn           1"
		      "        65s\n");
	ck_has(r.out, "2 transactions (the limit; --limit N shows more)\n");
	run_decree(&r, NULL, f.addr, "txn", "list", NULL);
	s = fake_last(&f, &n);
	fake_stop(&f);
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(s.query, "");
	ck_has(r.out, "2 transactions\n");
	ck_lacks(r.out, "the limit");
}
END_TEST

START_TEST(list_bad_state_answer_exits_2)
{
	struct fake f;
	struct run r;

	fake_start(&f);
	fake_route(&f, "GET", "/v1/txns", 400,
		   "{\"error\":{\"code\":\"bad_request\",\"message\":\"state: "
		   "must be one of active, preparing, committing, aborting, "
		   "in_doubt, done\"}}",
		   NULL);
	run_decree(&r, NULL, f.addr, "txn", "list", "--state", "nope", NULL);
	fake_stop(&f);
	ck_assert_int_eq(r.status, 2);
	ck_has(r.err, "400 Bad Request: bad_request: state: must be one of");
}
END_TEST

/* ---- tests: arguments and help ------------------------------------------ */

START_TEST(usage_errors_exit_2_and_say_why)
{
	static const struct {
		const char *args[6];
		const char *why;
	} cases[] = {
	    {{"txn", NULL}, "usage: decree txn"},
	    {{"txn", "frobnicate", NULL}, "unknown subcommand"},
	    {{"txn", "run", NULL}, "want one FILE"},
	    {{"txn", "run", "a", "b", NULL}, "want one FILE"},
	    {{"txn", "status", NULL}, "want one GID"},
	    {{"txn", "list", "--limit", "0", NULL}, "--limit: want"},
	    {{"txn", "list", "--bogus", NULL}, "unknown option \"--bogus\""},
	    {{"txn", "list", "--timeout-ms", NULL}, "needs a value"},
	    {{"txn", "status", "x", "--state", "done", NULL}, "are for"},
	    {{"txn", "list", "--coordinator", "nowhere", NULL},
	     "bad coordinator address \"nowhere\""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run r;

		run_decree_argv(&r, NULL, NULL, cases[i].args);
		ck_assert_msg(r.status == 2, "case %zu: exit %d", i, r.status);
		ck_has(r.err, cases[i].why);
		ck_assert_str_eq(r.out, "");
	}
}
END_TEST

START_TEST(help_describes_every_subcommand_and_option)
{
	struct run r;

	run_decree(&r, NULL, NULL, "txn", "--help", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_has(r.out, "decree txn run FILE|-");
	ck_has(r.out, "--coordinator HOST:PORT");
	ck_has(r.out, "--timeout-ms N");
	ck_has(r.out, "--json");
	ck_has(r.out, "$DECREE_COORDINATOR");
	ck_has(r.out, "307");
	run_decree(&r, NULL, NULL, "txn", "run", "--help", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_has(r.out, "usage: decree txn run");
	ck_has(r.out, "--idempotency-key KEY");
	ck_has(r.out, "3 outcome unknown");
	run_decree(&r, NULL, NULL, "txn", "help", "list", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_has(r.out, "--state S");
	run_decree(&r, NULL, NULL, "txn", "status", "-h", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_has(r.out, "--key KEY");
	run_decree(&r, NULL, NULL, "--help", NULL);
	ck_has(r.out, "txn ");
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    run_committed_prints_outcome_branches_rows_and_exits_0,
	    run_aborted_names_branch_sqlstate_and_message_and_exits_1,
	    run_unknown_outcome_exits_3_and_says_how_to_look_it_up,
	    run_json_prints_the_answer_as_it_came,
	    run_reads_stdin_and_sets_key_and_protocol,
	    run_bad_spec_is_reported_with_its_place_and_nothing_is_sent,
	    run_rejected_request_exits_2_with_the_coordinator_message,
	    run_plain_answers_decide_between_rejected_and_unknown,
	    run_unreachable_coordinator_exits_2_connection_refused,
	    run_timeout_after_sending_is_outcome_unknown,
	    redirect_to_the_leader_is_followed_once_with_the_body,
	    second_redirect_is_an_error,
	    status_by_gid_and_by_key,
	    list_sends_state_and_limit_and_prints_a_table,
	    list_bad_state_answer_exits_2,
	    usage_errors_exit_2_and_say_why,
	    help_describes_every_subcommand_and_option,
	    NULL,
	};

	return suite_main("cmd_txn", 20, tests);
}
