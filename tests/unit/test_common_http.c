/*
 * test_common_http.c - the HTTP/1.1 server and the blocking client on real
 * loopback sockets: GET/POST, keep-alive, pipelining, requests split byte by
 * byte, the server's own 400/413/431/505 answers, async answers, clients
 * that leave before the answer, stopping with requests pending, idle
 * timeouts, and the blocking client against a server loop in a thread.
 *
 * No sleeps: the loop runs until a condition holds, with a uv timer as a
 * safety limit.  The raw test client is a net_conn on the same loop whose
 * bytes are parsed with http-parser.
 */
#include "common/common.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the server under test ---------------------------------------------- */

struct later {
	uv_timer_t timer;
	struct http_request *req;
	struct world *w;
};

#define MAX_RESP 8

struct resp {
	int status;
	char body[4096];
	size_t body_len;
	char connection[32];
	char location[128];
};

struct world {
	uv_loop_t loop;
	struct http_server *srv;
	struct http_server_opts opts;
	int handled;
	int depth; /* handler calls on the stack */
	int late_rv;
	bool late_done;
	bool stopped;
	struct http_request *held;
	int hdr_rv[4];
	/* raw client */
	struct net_conn *cli;
	bool connected;
	bool eof;
	http_parser rp;
	struct resp resp[MAX_RESP + 1]; /* the last one is scratch */
	int nresp;
	int n404;
	char field[64];
	/* thread mode */
	pthread_t thread;
	uv_async_t stop_async;
	int port;
};

static void on_late(uv_timer_t *t)
{
	struct later *l = t->data;

	l->w->late_rv = http_respond(l->req, 200, "text/plain", "late", 4);
	l->w->late_done = true;
	uv_close((uv_handle_t *)&l->timer, (uv_close_cb)free);
}

static void handler(struct http_request *req, void *data)
{
	struct world *w = data;

	w->handled++;
	w->depth++;
	ck_assert_int_eq(w->depth, 1); /* never called from inside itself */
	if (strcmp(req->path, "/release") == 0) {
		/* Answers another connection's request, then this one. */
		ck_assert_ptr_nonnull(w->held);
		ck_assert_int_eq(http_respond(w->held, 200, NULL, NULL, 0), 0);
		w->held = NULL;
		http_respond(req, 200, "text/plain", "released", 8);
	} else if (strcmp(req->path, "/echo") == 0) {
		json_t *j = json_pack(
		    "{s:s, s:s, s:s, s:s%, s:s?, s:s?, s:s?, s:s?, s:s?}",
		    "method", req->method, "path", req->path, "query",
		    req->query, "body", req->body, req->body_len, "ctype",
		    req->content_type, "idem", req->idempotency_key, "a",
		    http_request_param(req, "a"), "b",
		    http_request_param(req, "b"), "x",
		    http_request_header(req, "x-test"));

		ck_assert_int_eq(http_respond_json(req, 200, j), 0);
	} else if (strcmp(req->path, "/async") == 0) {
		struct later *l = calloc(1, sizeof(*l));
		const char *ms = http_request_param(req, "ms");

		l->req = req;
		l->w = w;
		l->timer.data = l;
		uv_timer_init(&w->loop, &l->timer);
		uv_timer_start(&l->timer, on_late, ms ? atoi(ms) : 10, 0);
	} else if (strcmp(req->path, "/nulljson") == 0) {
		w->hdr_rv[0] = http_respond_json(req, 200, NULL);
	} else if (strcmp(req->path, "/hold") == 0) {
		w->held = req;
	} else if (strcmp(req->path, "/redirect") == 0) {
		w->hdr_rv[0] = http_respond_header(req, "Location",
						   "http://127.0.0.1:1/there");
		w->hdr_rv[1] = http_respond_header(req, "X-Bad", "a\r\nb: c");
		w->hdr_rv[2] = http_respond_header(req, "Bad Name", "v");
		w->hdr_rv[3] = http_respond_header(req, "Content-Length", "1");
		http_respond(req, 307, NULL, NULL, 0);
	} else {
		http_respond(req, 404, "text/plain", "no\n", 3);
	}
	w->depth--;
}

static void on_safety(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Runs the loop until cond(w) or 5 s; returns cond(w). */
static bool run_until(struct world *w, bool (*cond)(struct world *))
{
	uv_timer_t t;
	bool expired = false;

	uv_timer_init(&w->loop, &t);
	t.data = &expired;
	uv_timer_start(&t, on_safety, 5000, 0);
	while (!cond(w) && !expired)
		uv_run(&w->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&w->loop, UV_RUN_NOWAIT);
	return cond(w);
}

static bool is_connected(struct world *w)
{
	return w->connected;
}

static bool is_eof(struct world *w)
{
	return w->eof;
}

static bool is_stopped(struct world *w)
{
	return w->stopped;
}

static bool no_connections(struct world *w)
{
	return http_server_connections(w->srv) == 0;
}

static bool late_and_no_connections(struct world *w)
{
	return w->late_done && no_connections(w);
}

static bool was_handled(struct world *w)
{
	return w->handled > 0;
}

static int want_resp;
static bool has_responses(struct world *w)
{
	return w->nresp >= want_resp || w->eof;
}

/* ---- the raw client ----------------------------------------------------- */

static struct resp *cur_resp(struct world *w)
{
	return &w->resp[w->nresp < MAX_RESP ? w->nresp : MAX_RESP];
}

static int rp_begin(http_parser *p)
{
	struct world *w = p->data;

	memset(cur_resp(w), 0, sizeof(w->resp[0]));
	return 0;
}

static int rp_field(http_parser *p, const char *at, size_t len)
{
	struct world *w = p->data;

	snprintf(w->field, sizeof(w->field), "%.*s", (int)len, at);
	return 0;
}

static int rp_value(http_parser *p, const char *at, size_t len)
{
	struct world *w = p->data;
	struct resp *r = cur_resp(w);

	if (strcasecmp(w->field, "Connection") == 0)
		snprintf(r->connection, sizeof(r->connection), "%.*s", (int)len,
			 at);
	if (strcasecmp(w->field, "Location") == 0)
		snprintf(r->location, sizeof(r->location), "%.*s", (int)len,
			 at);
	return 0;
}

static int rp_body(http_parser *p, const char *at, size_t len)
{
	struct world *w = p->data;
	struct resp *r = cur_resp(w);

	ck_assert_uint_lt(r->body_len + len, sizeof(r->body));
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	return 0;
}

static int rp_complete(http_parser *p)
{
	struct world *w = p->data;

	cur_resp(w)->status = (int)p->status_code;
	if (p->status_code == 404)
		w->n404++;
	w->nresp++;
	return 0;
}

static const http_parser_settings rp_settings = {
    .on_message_begin = rp_begin,
    .on_header_field = rp_field,
    .on_header_value = rp_value,
    .on_body = rp_body,
    .on_message_complete = rp_complete,
};

static void cli_read(struct net_conn *c, const char *buf, ssize_t n, void *data)
{
	struct world *w = data;

	if (n < 0) {
		w->eof = true;
		net_conn_close(c, NULL);
		w->cli = NULL;
		return;
	}
	ck_assert_uint_eq(
	    http_parser_execute(&w->rp, &rp_settings, buf, (size_t)n),
	    (size_t)n);
}

static void on_connected(struct net_conn *c, int status, void *data)
{
	struct world *w = data;

	ck_assert_int_eq(status, 0);
	w->cli = c;
	w->connected = true;
	ck_assert_int_eq(net_conn_read_start(c, cli_read, w), 0);
}

static void start(struct world *w, const struct http_server_opts *opts)
{
	memset(w, 0, sizeof(*w));
	ck_assert_int_eq(uv_loop_init(&w->loop), 0);
	ck_assert_int_eq(http_server_start(&w->loop, "127.0.0.1:0", opts,
					   handler, w, &w->srv),
			 0);
	w->port = http_server_port(w->srv);
	ck_assert_int_gt(w->port, 0);
}

static void raw_open(struct world *w)
{
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", w->port);
	w->connected = w->eof = false;
	w->nresp = 0;
	http_parser_init(&w->rp, HTTP_RESPONSE);
	w->rp.data = w;
	ck_assert_int_eq(net_connect(&w->loop, addr, on_connected, w), 0);
	ck_assert(run_until(w, is_connected));
}

static void raw_send(struct world *w, const char *s)
{
	ck_assert_int_eq(net_conn_write(w->cli, s, strlen(s)), 0);
}

static void wait_responses(struct world *w, int n)
{
	want_resp = n;
	ck_assert(run_until(w, has_responses));
	ck_assert_int_eq(w->nresp, n);
}

static void on_stopped(void *data)
{
	((struct world *)data)->stopped = true;
}

/* Stops everything and checks the loop has no handle left. */
static void finish(struct world *w)
{
	if (w->cli != NULL)
		net_conn_close(w->cli, NULL);
	ck_assert_int_eq(http_server_stop(w->srv, on_stopped), 0);
	ck_assert(run_until(w, is_stopped));
	if (w->held != NULL) {
		ck_assert(http_request_is_cancelled(w->held));
		ck_assert_int_eq(http_respond(w->held, 200, NULL, NULL, 0),
				 -ECANCELED);
	}
	for (int i = 0; i < 100 && uv_run(&w->loop, UV_RUN_NOWAIT); i++)
		;
	ck_assert_int_eq(uv_loop_close(&w->loop), 0);
}

static json_t *body_json(const struct resp *r)
{
	json_error_t err;
	json_t *j = json_loadb(r->body, r->body_len, 0, &err);

	ck_assert_msg(j != NULL, "bad json: %.*s", (int)r->body_len, r->body);
	return j;
}

static const char *jstr(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- tests: server ------------------------------------------------------ */

START_TEST(get_and_post_with_body)
{
	struct world w;
	json_t *j;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "GET /echo?a=hello%20w+x&b&z=1 HTTP/1.1\r\nHost: t\r\n"
		     "X-Test:  v1  \r\n\r\n");
	wait_responses(&w, 1);
	ck_assert_int_eq(w.resp[0].status, 200);
	j = body_json(&w.resp[0]);
	ck_assert_str_eq(jstr(j, "method"), "GET");
	ck_assert_str_eq(jstr(j, "path"), "/echo");
	ck_assert_str_eq(jstr(j, "query"), "a=hello%20w+x&b&z=1");
	ck_assert_str_eq(jstr(j, "a"), "hello w x");
	ck_assert_str_eq(jstr(j, "b"), "");
	ck_assert_str_eq(jstr(j, "x"), "v1");
	ck_assert_str_eq(jstr(j, "body"), "");
	ck_assert_ptr_null(jstr(j, "ctype"));
	json_decref(j);

	raw_send(&w, "POST /echo HTTP/1.1\r\nHost: t\r\n"
		     "Content-Type: application/json\r\n"
		     "Idempotency-Key: k-1\r\nContent-Length: 9\r\n\r\n"
		     "{\"n\": 1}\n");
	wait_responses(&w, 2);
	ck_assert_int_eq(w.resp[1].status, 200);
	j = body_json(&w.resp[1]);
	ck_assert_str_eq(jstr(j, "method"), "POST");
	ck_assert_str_eq(jstr(j, "body"), "{\"n\": 1}\n");
	ck_assert_str_eq(jstr(j, "ctype"), "application/json");
	ck_assert_str_eq(jstr(j, "idem"), "k-1");
	ck_assert_ptr_null(jstr(j, "a"));
	json_decref(j);
	finish(&w);
}
END_TEST

START_TEST(keep_alive_serves_two_requests_on_one_connection)
{
	struct world w;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "GET /echo?a=1 HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&w, 1);
	ck_assert(!w.eof);
	ck_assert_str_eq(w.resp[0].connection, "");
	raw_send(&w, "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&w, 2);
	ck_assert_int_eq(w.resp[1].status, 404);
	ck_assert(!w.eof);
	ck_assert_uint_eq(http_server_connections(w.srv), 1);
	ck_assert_int_eq(w.handled, 2);
	finish(&w);
}
END_TEST

START_TEST(pipelined_requests_are_answered_in_order)
{
	struct world w;
	json_t *j;

	start(&w, NULL);
	raw_open(&w);
	/* The first is answered later by a timer, the second at once. */
	raw_send(&w, "GET /async?ms=30 HTTP/1.1\r\nHost: t\r\n\r\n"
		     "GET /echo?a=second HTTP/1.1\r\nHost: t\r\n\r\n"
		     "POST /echo?a=third HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
		     "abc");
	wait_responses(&w, 3);
	ck_assert_int_eq(w.resp[0].status, 200);
	ck_assert_int_eq(memcmp(w.resp[0].body, "late", 4), 0);
	j = body_json(&w.resp[1]);
	ck_assert_str_eq(jstr(j, "a"), "second");
	json_decref(j);
	j = body_json(&w.resp[2]);
	ck_assert_str_eq(jstr(j, "a"), "third");
	ck_assert_str_eq(jstr(j, "body"), "abc");
	json_decref(j);
	ck_assert_int_eq(w.late_rv, 0);
	finish(&w);
}
END_TEST

START_TEST(request_split_byte_by_byte)
{
	static const char req[] = "POST /echo?a=split HTTP/1.1\r\nHost: t\r\n"
				  "Content-Type: text/plain\r\nX-Test: yes\r\n"
				  "Transfer-Encoding: chunked\r\n\r\n"
				  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
	struct world w;
	json_t *j;

	start(&w, NULL);
	raw_open(&w);
	for (size_t i = 0; i < sizeof(req) - 1; i++) {
		ck_assert_int_eq(w.handled,
				 0); /* not complete before the end */
		ck_assert_int_eq(net_conn_write(w.cli, req + i, 1), 0);
		uv_run(&w.loop, UV_RUN_NOWAIT);
		uv_run(&w.loop, UV_RUN_NOWAIT);
	}
	wait_responses(&w, 1);
	j = body_json(&w.resp[0]);
	ck_assert_str_eq(jstr(j, "body"), "hello world");
	ck_assert_str_eq(jstr(j, "a"), "split");
	ck_assert_str_eq(jstr(j, "x"), "yes");
	ck_assert_str_eq(jstr(j, "ctype"), "text/plain");
	json_decref(j);
	finish(&w);
}
END_TEST

START_TEST(bad_requests_get_the_server_own_answer_and_close)
{
	static const struct {
		const char *req;
		int status;
	} cases[] = {
	    {"GARBAGE\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400},
	    {"GET /echo?a=%zz HTTP/1.1\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400},
	    {"GET / HTTP/2.0\r\n\r\n", 505},
	};
	struct world w;

	start(&w, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		raw_open(&w);
		raw_send(&w, cases[i].req);
		ck_assert(run_until(&w, is_eof));
		ck_assert_int_eq(w.nresp, 1);
		ck_assert_msg(w.resp[0].status == cases[i].status, "%s: got %d",
			      cases[i].req, w.resp[0].status);
		ck_assert_str_eq(w.resp[0].connection, "close");
	}
	ck_assert_int_eq(w.handled, 0);
	finish(&w);
}
END_TEST

START_TEST(body_over_limit_gets_413_without_reading_it)
{
	struct http_server_opts o = {.max_body_bytes = 1024};
	char chunk[200];
	struct world w;

	start(&w, &o);
	raw_open(&w);
	memset(chunk, 'z', sizeof(chunk) - 1);
	chunk[sizeof(chunk) - 1] = '\0';
	raw_send(&w,
		 "POST /echo HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n");
	raw_send(&w, chunk);
	ck_assert(run_until(&w, is_eof));
	ck_assert_int_eq(w.nresp, 1);
	ck_assert_int_eq(w.resp[0].status, 413);

	/* Chunked, so the size shows only while reading: cut at the limit. */
	raw_open(&w);
	raw_send(&w,
		 "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 6; i++) {
		raw_send(&w, "c7\r\n");
		raw_send(&w, chunk);
		raw_send(&w, "\r\n");
	}
	ck_assert(run_until(&w, is_eof));
	ck_assert_int_eq(w.nresp, 1);
	ck_assert_int_eq(w.resp[0].status, 413);

	/* Exactly at the limit is fine. */
	raw_open(&w);
	raw_send(&w, "POST /nothing HTTP/1.1\r\nContent-Length: 1024\r\n\r\n");
	for (int i = 0; i < 1024 / 8; i++)
		raw_send(&w, "01234567");
	wait_responses(&w, 1);
	ck_assert_int_eq(w.resp[0].status, 404);
	ck_assert_int_eq(w.handled, 1);
	finish(&w);
}
END_TEST

START_TEST(headers_over_limit_get_431)
{
	struct http_server_opts o = {.max_header_bytes = 256};
	char big[600];
	struct world w;

	start(&w, &o);
	raw_open(&w);
	memset(big, 'h', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	raw_send(&w, "GET / HTTP/1.1\r\nX-Big: ");
	raw_send(&w, big);
	raw_send(&w, "\r\n\r\n");
	ck_assert(run_until(&w, is_eof));
	ck_assert_int_eq(w.nresp, 1);
	ck_assert_int_eq(w.resp[0].status, 431);

	raw_open(&w);
	raw_send(&w, "GET /");
	raw_send(&w, big);
	raw_send(&w, " HTTP/1.1\r\n\r\n");
	ck_assert(run_until(&w, is_eof));
	ck_assert_int_eq(w.resp[0].status, 414);
	ck_assert_int_eq(w.handled, 0);
	finish(&w);
}
END_TEST

START_TEST(async_response_after_a_timer)
{
	struct world w;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "GET /async?ms=20 HTTP/1.1\r\nHost: t\r\n\r\n");
	ck_assert(run_until(&w, was_handled));
	ck_assert_int_eq(w.nresp, 0);
	wait_responses(&w, 1);
	ck_assert(w.late_done);
	ck_assert_int_eq(w.late_rv, 0);
	ck_assert_int_eq(w.resp[0].status, 200);
	ck_assert_uint_eq(w.resp[0].body_len, 4);
	finish(&w);
}
END_TEST

START_TEST(client_leaving_before_async_answer_is_safe)
{
	struct world w;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "GET /async?ms=40 HTTP/1.1\r\nHost: t\r\n\r\n");
	ck_assert(run_until(&w, was_handled));
	net_conn_close(w.cli, NULL);
	w.cli = NULL;
	/* The answer goes nowhere; the server then drops the connection. */
	ck_assert(run_until(&w, late_and_no_connections));
	ck_assert(w.late_rv == 0 || w.late_rv == -ECANCELED);
	finish(&w);
}
END_TEST

START_TEST(stopping_with_a_request_pending_cancels_it)
{
	struct world w;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
	ck_assert(run_until(&w, was_handled));
	ck_assert_ptr_nonnull(w.held);
	ck_assert(!http_request_is_cancelled(w.held));
	ck_assert_str_eq(w.held->method, "GET");
	finish(&w); /* checks cancelled, -ECANCELED and uv_loop_close() */
}
END_TEST

static bool held_cancelled(struct world *w)
{
	return w->held != NULL && http_request_is_cancelled(w->held) &&
	       no_connections(w);
}

/* A reset (not a FIN) while the handler works cancels the request at once. */
START_TEST(client_reset_cancels_pending_request)
{
	static const char req[] = "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n";
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct sockaddr_storage ss;
	struct world w;
	char addr[64];
	int fd;

	start(&w, NULL);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", w.port);
	ck_assert_int_eq(net_addr_parse(addr, &ss), 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(
	    connect(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
	ck_assert_int_eq(send(fd, req, sizeof(req) - 1, 0),
			 (ssize_t)sizeof(req) - 1);
	ck_assert(run_until(&w, was_handled));
	ck_assert(!http_request_is_cancelled(w.held));
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
			 0);
	close(fd);
	ck_assert(run_until(&w, held_cancelled));
	finish(&w); /* the late answer is -ECANCELED and frees it */
}
END_TEST

static bool a_done(struct world *w)
{
	return w->nresp >= 2 && w->handled >= 3;
}

/*
 * A handler that answers another connection's request does not get called
 * again from inside itself for that connection's next (pipelined) request.
 */
START_TEST(answering_another_connection_does_not_nest_the_handler)
{
	static const char req[] =
	    "GET /release HTTP/1.1\r\nConnection: close\r\n\r\n";
	struct sockaddr_storage ss;
	struct world w;
	char addr[64];
	char buf[512];
	ssize_t n;
	int fd;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "GET /hold HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
	ck_assert(run_until(&w, was_handled));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", w.port);
	ck_assert_int_eq(net_addr_parse(addr, &ss), 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(
	    connect(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
	ck_assert_int_eq(send(fd, req, sizeof(req) - 1, 0),
			 (ssize_t)sizeof(req) - 1);
	ck_assert(run_until(&w, a_done));
	ck_assert_int_eq(w.resp[0].status, 200);
	ck_assert_int_eq(w.resp[1].status, 404);
	for (int i = 0; i < 10; i++)
		uv_run(&w.loop, UV_RUN_NOWAIT);
	n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "HTTP/1.1 200 OK\r\n"));
	ck_assert_ptr_nonnull(strstr(buf, "\r\n\r\nreleased"));
	close(fd);
	finish(&w);
}
END_TEST

static int want_404;
static bool has_404s(struct world *w)
{
	return w->n404 >= want_404 || w->eof;
}

static void on_release(uv_timer_t *t)
{
	struct world *w = t->data;

	ck_assert_int_eq(http_respond(w->held, 200, NULL, NULL, 0), 0);
	w->held = NULL;
	uv_close((uv_handle_t *)t, NULL);
}

/*
 * While the handler holds a request, a flood of pipelined requests fills the
 * server's buffer; it stops reading, then serves them all, in order.
 */
START_TEST(pipelined_flood_is_buffered_and_served)
{
	static const char one[] = "GET /nothing HTTP/1.1\r\n\r\n";
	enum { N = 20000 };
	struct world w;
	uv_timer_t release;
	char *flood = malloc(N * (sizeof(one) - 1) + 1);

	for (int i = 0; i < N; i++)
		memcpy(flood + i * (sizeof(one) - 1), one, sizeof(one) - 1);
	flood[N * (sizeof(one) - 1)] = '\0';
	start(&w, NULL);
	raw_open(&w);
	net_conn_set_write_limit(w.cli, 2u << 20);
	raw_send(&w, "GET /hold HTTP/1.1\r\n\r\n");
	raw_send(&w, flood);
	free(flood);
	ck_assert(run_until(&w, was_handled));
	ck_assert_int_eq(w.handled, 1);
	uv_timer_init(&w.loop, &release);
	release.data = &w;
	uv_timer_start(&release, on_release, 50, 0);
	want_404 = N;
	ck_assert(run_until(&w, has_404s));
	ck_assert_int_eq(w.resp[0].status, 200);
	ck_assert_int_eq(w.n404, N);
	ck_assert_int_eq(w.handled, N + 1);
	ck_assert(!w.eof);
	finish(&w);
}
END_TEST

START_TEST(connections_over_the_limit_are_closed)
{
	struct http_server_opts o = {.max_connections = 1};
	struct sockaddr_storage ss;
	struct world w;
	char addr[64];
	char c;
	ssize_t n = -1;
	int fd;

	start(&w, &o);
	raw_open(&w);
	raw_send(&w, "GET /nothing HTTP/1.1\r\n\r\n");
	wait_responses(&w, 1);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", w.port);
	ck_assert_int_eq(net_addr_parse(addr, &ss), 0);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	connect(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in));
	for (int i = 0; i < 500; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		uv_run(&w.loop, UV_RUN_NOWAIT);
		if (poll(&p, 1, 10) == 1) {
			n = recv(fd, &c, 1, 0);
			if (n >= 0 || errno != EAGAIN)
				break;
		}
	}
	ck_assert_int_le(n, 0); /* EOF or reset, never an answer */
	close(fd);
	ck_assert_uint_eq(http_server_connections(w.srv), 1);
	raw_send(&w, "GET /nothing HTTP/1.1\r\n\r\n");
	wait_responses(&w, 2);
	finish(&w);
}
END_TEST

START_TEST(idle_connection_is_closed)
{
	struct http_server_opts o = {.idle_timeout_ms = 40};
	struct world w;

	start(&w, &o);
	raw_open(&w);
	ck_assert(run_until(&w, is_eof));
	ck_assert_int_eq(w.nresp, 0);
	ck_assert(run_until(&w, no_connections));
	finish(&w);
}
END_TEST

START_TEST(http10_and_connection_close_end_the_connection)
{
	struct world w;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "GET /nothing HTTP/1.0\r\n\r\n");
	ck_assert(run_until(&w, is_eof));
	ck_assert_int_eq(w.nresp, 1);
	ck_assert_int_eq(w.resp[0].status, 404);

	raw_open(&w);
	raw_send(&w, "GET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n"
		     "GET /nothing HTTP/1.1\r\n\r\n");
	ck_assert(run_until(&w, is_eof));
	ck_assert_int_eq(w.nresp, 1);
	ck_assert_str_eq(w.resp[0].connection, "close");
	ck_assert_int_eq(w.handled, 2);

	/* We speak no other protocol: an Upgrade is answered, then closed. */
	raw_open(&w);
	raw_send(&w, "GET /nothing HTTP/1.1\r\nConnection: Upgrade\r\n"
		     "Upgrade: h2c\r\n\r\nPRI * HTTP/2.0\r\n\r\n");
	ck_assert(run_until(&w, is_eof));
	ck_assert_int_eq(w.nresp, 1);
	ck_assert_int_eq(w.resp[0].status, 404);
	ck_assert_str_eq(w.resp[0].connection, "close");
	ck_assert_int_eq(w.handled, 3);
	finish(&w);
}
END_TEST

START_TEST(expect_continue_gets_100_first)
{
	struct world w;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n"
		     "Expect: 100-continue\r\n\r\n");
	wait_responses(&w, 1);
	ck_assert_int_eq(w.resp[0].status, 100);
	raw_send(&w, "ok");
	wait_responses(&w, 2);
	ck_assert_int_eq(w.resp[1].status, 200);
	finish(&w);
}
END_TEST

START_TEST(response_headers_are_checked)
{
	struct world w;

	start(&w, NULL);
	raw_open(&w);
	raw_send(&w, "GET /redirect HTTP/1.1\r\n\r\n");
	wait_responses(&w, 1);
	ck_assert_int_eq(w.resp[0].status, 307);
	ck_assert_str_eq(w.resp[0].location, "http://127.0.0.1:1/there");
	ck_assert_int_eq(w.hdr_rv[0], 0);
	ck_assert_int_eq(w.hdr_rv[1], -EINVAL);
	ck_assert_int_eq(w.hdr_rv[2], -EINVAL);
	ck_assert_int_eq(w.hdr_rv[3], -EINVAL);

	/* A handler bug (no JSON) still answers the request: 500. */
	raw_send(&w, "GET /nulljson HTTP/1.1\r\n\r\n");
	wait_responses(&w, 2);
	ck_assert_int_eq(w.resp[1].status, 500);
	ck_assert_int_eq(w.hdr_rv[0], -EINVAL);
	finish(&w);
}
END_TEST

/* Every allocation failure along a request is survived: an answer (maybe
 * 503) or a closed connection, never a crash or a leak. */
START_TEST(allocation_failures_are_survived)
{
	for (long n = 1; n < 40; n++) {
		struct world w;

		start(&w, NULL);
		raw_open(&w);
		mem_fail_after(n);
		raw_send(&w, "POST /nothing?a=b HTTP/1.1\r\nX-A: 1\r\n"
			     "Content-Length: 3\r\n\r\nabc");
		want_resp = 1;
		run_until(&w, has_responses);
		mem_fail_reset();
		ck_assert(w.nresp == 1 || w.eof);
		if (w.nresp == 1)
			ck_assert(w.resp[0].status == 404 ||
				  w.resp[0].status == 503);
		finish(&w);
	}
}
END_TEST

START_TEST(url_decode_rules)
{
	char out[32];
	size_t n;

	ck_assert_int_eq(http_url_decode("a%20b+c%2B", 10, true, out, &n), 0);
	ck_assert_str_eq(out, "a b c+");
	ck_assert_uint_eq(n, 6);
	ck_assert_int_eq(http_url_decode("a+b", 3, false, out, &n), 0);
	ck_assert_str_eq(out, "a+b");
	ck_assert_int_eq(http_url_decode("%zz", 3, true, out, &n), -EINVAL);
	ck_assert_int_eq(http_url_decode("%2", 2, true, out, &n), -EINVAL);
	ck_assert_int_eq(http_url_decode("%", 1, true, out, &n), -EINVAL);
	ck_assert_int_eq(http_url_decode("%00", 3, true, out, &n), -EINVAL);
	ck_assert_str_eq(http_status_reason(413), "Content Too Large");
	ck_assert_str_eq(http_strerror(-EPROTO), "malformed HTTP response");
}
END_TEST

/* ---- tests: blocking client against a server loop in a thread ----------- */

static void on_stop_async(uv_async_t *a)
{
	struct world *w = a->data;

	http_server_stop(w->srv, on_stopped);
	uv_close((uv_handle_t *)a, NULL);
}

static void *loop_thread(void *arg)
{
	struct world *w = arg;

	uv_run(&w->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void thread_start(struct world *w)
{
	start(w, NULL);
	w->stop_async.data = w;
	ck_assert_int_eq(uv_async_init(&w->loop, &w->stop_async, on_stop_async),
			 0);
	ck_assert_int_eq(pthread_create(&w->thread, NULL, loop_thread, w), 0);
}

static void thread_finish(struct world *w)
{
	uv_async_send(&w->stop_async);
	pthread_join(w->thread, NULL);
	ck_assert(w->stopped);
	if (w->held != NULL)
		ck_assert_int_eq(http_respond(w->held, 200, NULL, NULL, 0),
				 -ECANCELED);
	ck_assert_int_eq(uv_loop_close(&w->loop), 0);
}

START_TEST(blocking_client_against_threaded_server)
{
	struct world w;
	struct http_response r;
	char addr[64];
	json_t *j;
	json_error_t err;

	thread_start(&w);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", w.port);

	ck_assert_int_eq(http_client_request(addr, "POST", "/echo?a=1",
					     "application/json", "{\"x\":2}", 7,
					     5000, &r),
			 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.content_type, "application/json");
	ck_assert_ptr_null(r.location);
	j = json_loadb(r.body, r.body_len, 0, &err);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(jstr(j, "body"), "{\"x\":2}");
	ck_assert_str_eq(jstr(j, "ctype"), "application/json");
	ck_assert_str_eq(jstr(j, "a"), "1");
	json_decref(j);
	http_response_free(&r);

	ck_assert_int_eq(http_client_request(addr, "GET", "/redirect", NULL,
					     NULL, 0, 5000, &r),
			 0);
	ck_assert_int_eq(r.status, 307);
	ck_assert_str_eq(r.location, "http://127.0.0.1:1/there");
	ck_assert_str_eq(r.body, "");
	http_response_free(&r);

	ck_assert_int_eq(
	    http_client_request(addr, "HEAD", "/echo", NULL, NULL, 0, 5000, &r),
	    0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body_len, 0);
	http_response_free(&r);

	ck_assert_int_eq(http_client_request(addr, "DELETE", "/gone", NULL,
					     NULL, 0, 5000, &r),
			 0);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(r.body, "no\n");
	http_response_free(&r);

	/* A handler that never answers: the client's deadline ends it. */
	ck_assert_int_eq(
	    http_client_request(addr, "GET", "/hold", NULL, NULL, 0, 150, &r),
	    -ETIMEDOUT);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_null(r.body);
	thread_finish(&w);
}
END_TEST

START_TEST(blocking_client_reports_errors)
{
	struct world w;
	struct http_response r;
	char addr[64];
	int port;

	/* A port nobody listens on any more. */
	memset(&w, 0, sizeof(w));
	start(&w, NULL);
	port = w.port;
	finish(&w);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	ck_assert_int_eq(
	    http_client_request(addr, "GET", "/", NULL, NULL, 0, 2000, &r),
	    -ECONNREFUSED);
	ck_assert_int_eq(
	    http_client_request("nope", "GET", "/", NULL, NULL, 0, 2000, &r),
	    -EINVAL);
	ck_assert_int_eq(
	    http_client_request(addr, "G T", "/", NULL, NULL, 0, 2000, &r),
	    -EINVAL);
	ck_assert_int_eq(
	    http_client_request(addr, "GET", "x y", NULL, NULL, 0, 2000, &r),
	    -EINVAL);
	ck_assert_int_eq(
	    http_client_request(addr, "GET", "/", "a\r\nb", NULL, 0, 2000, &r),
	    -EINVAL);

	/* A body over the server's limit: the client still reads the 413. */
	thread_start(&w);
	{
		size_t big = 2u << 20;
		char *body = malloc(big);

		memset(body, 'q', big);
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", w.port);
		ck_assert_int_eq(http_client_request(addr, "POST", "/echo",
						     "text/plain", body, big,
						     5000, &r),
				 0);
		ck_assert_int_eq(r.status, 413);
		http_response_free(&r);
		free(body);
	}
	thread_finish(&w);
}
END_TEST

/* ---- the blocking client against canned answers ------------------------ */

struct canned {
	int lfd;
	int port;
	const char *answers[8];
	bool byte_by_byte[8];
	int n;
	int served; /* accepted so far (atomic) */
	pthread_t thread;
};

/* Serves one connection per answer: reads the request head, writes the
 * answer, closes. */
static void *canned_thread(void *arg)
{
	struct canned *c = arg;

	for (int i = 0; i < c->n; i++) {
		char buf[4096];
		size_t got = 0;
		int fd = accept(c->lfd, NULL, NULL);
		const char *a = c->answers[i];

		if (fd < 0)
			break;
		__atomic_add_fetch(&c->served, 1, __ATOMIC_SEQ_CST);
		while (got < sizeof(buf) - 1) {
			ssize_t n =
			    recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

			if (n <= 0)
				break;
			got += (size_t)n;
			buf[got] = '\0';
			if (strstr(buf, "\r\n\r\n") != NULL)
				break;
		}
		if (c->byte_by_byte[i]) {
			for (size_t k = 0; a[k] != '\0'; k++)
				send(fd, a + k, 1, MSG_NOSIGNAL);
		} else {
			send(fd, a, strlen(a), MSG_NOSIGNAL);
		}
		close(fd);
	}
	return NULL;
}

static void canned_start(struct canned *c)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(c->lfd, 0);
	ck_assert_int_eq(bind(c->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(c->lfd, 8), 0);
	ck_assert_int_eq(getsockname(c->lfd, (struct sockaddr *)&sin, &len), 0);
	c->port = ntohs(sin.sin_port);
	ck_assert_int_eq(pthread_create(&c->thread, NULL, canned_thread, c), 0);
}

START_TEST(blocking_client_parses_odd_answers)
{
	struct canned c = {.n = 6};
	struct http_response r;
	char addr[64];

	/* Body until close, no Content-Length. */
	c.answers[0] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
		       "until the end";
	/* An interim 100, then the answer, one byte at a time. */
	c.answers[1] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
		       "location: /v1/txn/7\r\nTransfer-Encoding: chunked\r\n"
		       "\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
	c.byte_by_byte[1] = true;
	c.answers[2] = "SMTP ready\r\n"; /* not HTTP */
	c.answers[3] = "";		 /* just closes */
	c.answers[4] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
	c.answers[5] = "HTTP/1.1 204 No Content\r\n\r\n";
	canned_start(&c);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", c.port);

	ck_assert_int_eq(
	    http_client_request(addr, "GET", "/", NULL, NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "until the end");
	ck_assert_str_eq(r.content_type, "text/plain");
	http_response_free(&r);

	ck_assert_int_eq(http_client_request(addr, "POST", "/v1/txn", NULL,
					     "{}", 2, 5000, &r),
			 0);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(r.body, "abcde");
	ck_assert_str_eq(r.location, "/v1/txn/7");
	http_response_free(&r);

	ck_assert_int_eq(
	    http_client_request(addr, "GET", "/", NULL, NULL, 0, 5000, &r),
	    -EPROTO);
	ck_assert_ptr_null(r.body);
	ck_assert_int_eq(
	    http_client_request(addr, "GET", "/", NULL, NULL, 0, 5000, &r),
	    -ECONNRESET);
	ck_assert_int_eq(
	    http_client_request(addr, "GET", "/", NULL, NULL, 0, 5000, &r),
	    -ECONNRESET);
	ck_assert_int_eq(
	    http_client_request(addr, "GET", "/", NULL, NULL, 0, 5000, &r), 0);
	ck_assert_int_eq(r.status, 204);
	ck_assert_str_eq(r.body, "");
	http_response_free(&r);
	pthread_join(c.thread, NULL);
	close(c.lfd);
}
END_TEST

/* Every allocation failure in the client is an error return, never a leak. */
START_TEST(blocking_client_survives_allocation_failures)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n"
				 "Location: /x\r\nContent-Length: 2\r\n\r\nok";
	struct canned c = {.n = 8};
	struct http_response r;
	char addr[64];
	int fails = 0;

	for (int i = 0; i < c.n; i++)
		c.answers[i] = ok;
	canned_start(&c);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", c.port);
	for (long n = 1; __atomic_load_n(&c.served, __ATOMIC_SEQ_CST) < c.n;
	     n++) {
		int rv;

		mem_fail_after(n);
		rv = http_client_request(addr, "PUT", "/p", "a/b", "xy", 2,
					 5000, &r);
		mem_fail_reset();
		if (rv == 0) {
			ck_assert_int_eq(r.status, 200);
			ck_assert_str_eq(r.body, "ok");
			ck_assert_str_eq(r.location, "/x");
			http_response_free(&r);
		} else {
			ck_assert_int_eq(rv, -ENOMEM);
			ck_assert_ptr_null(r.body);
			fails++;
		}
	}
	ck_assert_int_gt(fails, 0);
	pthread_join(c.thread, NULL);
	close(c.lfd);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    get_and_post_with_body,
	    keep_alive_serves_two_requests_on_one_connection,
	    pipelined_requests_are_answered_in_order,
	    request_split_byte_by_byte,
	    bad_requests_get_the_server_own_answer_and_close,
	    body_over_limit_gets_413_without_reading_it,
	    headers_over_limit_get_431,
	    async_response_after_a_timer,
	    client_leaving_before_async_answer_is_safe,
	    stopping_with_a_request_pending_cancels_it,
	    client_reset_cancels_pending_request,
	    pipelined_flood_is_buffered_and_served,
	    answering_another_connection_does_not_nest_the_handler,
	    connections_over_the_limit_are_closed,
	    idle_connection_is_closed,
	    http10_and_connection_close_end_the_connection,
	    expect_continue_gets_100_first,
	    response_headers_are_checked,
	    allocation_failures_are_survived,
	    url_decode_rules,
	    blocking_client_against_threaded_server,
	    blocking_client_reports_errors,
	    blocking_client_parses_odd_answers,
	    blocking_client_survives_allocation_failures,
	    NULL,
	};

	return suite_main("common_http", 15, tests);
}
