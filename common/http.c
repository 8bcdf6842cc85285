/*
 * http.c - HTTP/1.1 for decree: a server on libuv (through common/net) that
 * parses with Debian's http-parser and lets handlers answer later, and a
 * blocking client that parses responses with the same parser.
 *
 * Design notes (server)
 *  - One request at a time per connection.  When http-parser completes a
 *    message we pause it; the bytes after it stay in `in` (pipelined
 *    requests) until the handler has answered, then parsing resumes.  So
 *    responses go out in request order with no response reordering buffer,
 *    and a connection holds at most one request plus IN_CAP unparsed bytes
 *    (beyond that we stop reading until the handler answers).
 *  - Reading goes on while a request is with the handler, so a client that
 *    resets the connection cancels the request at once.  A plain EOF (the
 *    client may have only half-closed) is remembered: the pending answer is
 *    still written, then the connection is closed.
 *  - Limits are enforced inside the parser callbacks: a callback that sees
 *    too much sets `reject` and returns -1, which stops the parser; the
 *    connection then gets that status and "Connection: close".  A body over
 *    the limit is refused from its Content-Length before any of it is read.
 *  - Closing after a response ("lingering close"): the response is flushed,
 *    FIN is sent, and unread input is drained until the client closes or
 *    LINGER_MS passes, so the client is not sent an RST that could destroy
 *    the response before it reads it (RFC 9112 section 9.6).
 *  - One repeating timer per server sweeps idle and lingering connections.
 *  - The handler never runs inside itself: an answer given from a handler
 *    to another connection's request queues that connection on `deferred`,
 *    and its next request is parsed when the handler returns.
 *
 * Request lifetime (who frees what)
 *   cur (being parsed) -> ready (complete, parser paused) -> inflight (with
 *   the handler).  The connection frees cur and ready.  An inflight request
 *   is freed by http_respond*(); if the connection closes first it only sets
 *   req->conn = NULL (cancelled) and leaves the freeing to that respond.
 *
 * Invariants
 *  1. At most one of ready / inflight is set, and only while parsing is
 *     paused; handler calls never nest (busy guards process()).
 *  2. An hconn is freed only in net's close callback; `closing` is set
 *     first, after which no handler is called for it.
 *  3. The server is freed when stopping and its listener, its timer and all
 *     its connections are closed.
 */
#include "common/common.h"

#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS	  100
#define IN_CAP		  (256u << 10) /* unparsed bytes kept per conn */
#define LINGER_MS	  2000u
#define CONN_WRITE_LIMIT  (64u << 20) /* one response at a time */
#define CLIENT_HEADER_MAX (64u << 10) /* one header name or value */

static const struct {
	int code;
	const char *msg;
} http_errors[] = {
#define HTTP_ERR_ROW(name, msg) {-name, msg},
    HTTP_ERRORS(HTTP_ERR_ROW)
#undef HTTP_ERR_ROW
};

const char *http_strerror(int err)
{
	for (size_t i = 0; i < sizeof(http_errors) / sizeof(http_errors[0]);
	     i++)
		if (http_errors[i].code == err)
			return http_errors[i].msg;
	return net_strerror(err);
}

/* ---- growable NUL-terminated byte buffer -------------------------------- */

struct sbuf {
	char *p;
	size_t len;
	size_t cap;
};

static int sbuf_grow(struct sbuf *b, size_t more)
{
	size_t need, cap;
	char *p;

	if (more > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	need = b->len + more + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	p = mem_realloc(b->p, cap);
	if (p == NULL)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int sbuf_add(struct sbuf *b, const void *d, size_t n)
{
	if (sbuf_grow(b, n) < 0)
		return -ENOMEM;
	if (n > 0)
		memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int sbuf_adds(struct sbuf *b, const char *s)
{
	return sbuf_add(b, s, strlen(s));
}

/* Appends one NUL that counts as content (a separator). */
static int sbuf_sep(struct sbuf *b)
{
	if (sbuf_add(b, "", 0) < 0 || sbuf_grow(b, 1) < 0)
		return -ENOMEM;
	b->len++;
	b->p[b->len] = '\0';
	return 0;
}

static int sbuf_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sbuf_grow(b, (size_t)n) < 0)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

static void sbuf_free(struct sbuf *b)
{
	mem_free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- small shared helpers ----------------------------------------------- */

static const struct {
	int status;
	const char *reason;
} reasons[] = {
    {100, "Continue"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http_status_reason(int status)
{
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Unknown";
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int http_url_decode(const char *in, size_t len, bool plus_is_space, char *out,
		    size_t *out_len)
{
	size_t o = 0;

	if ((in == NULL && len > 0) || out == NULL)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -EINVAL;
			hi = hexval(in[i + 1]);
			lo = hexval(in[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		} else if (c == '\0') {
			return -EINVAL;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	if (out_len != NULL)
		*out_len = o;
	return 0;
}

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
		if (!is_tchar(*s))
			return false;
	return true;
}

/* A header value: no CR, LF, NUL or other control but HT. */
static bool is_field_value(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

/* ---- server: types ------------------------------------------------------ */

struct hdr {
	size_t name;  /* offsets into hreq.hb */
	size_t value; /* SIZE_MAX: empty value */
};

enum hstate { H_NONE, H_FIELD, H_VALUE };

struct hconn;

struct hreq {
	struct http_request pub; /* first: the handler's pointer is ours */
	struct hconn *conn;	 /* NULL once the connection is gone */
	unsigned method;	 /* enum http_method */
	bool keep_alive;
	struct sbuf url;
	struct sbuf hb; /* header names and values, NUL-separated */
	struct hdr *hdrs;
	size_t nhdrs, hcap;
	enum hstate hstate;
	struct sbuf body;
	struct sbuf misc; /* path, query, decoded params, NUL-separated */
	size_t *params;	  /* name, value offsets into misc */
	size_t nparams, pcap;
	struct sbuf extra; /* extra response header lines */
};

struct http_server {
	uv_loop_t *loop;
	struct net_listener *listener;
	uv_timer_t sweep;
	/* Answers written in a loop turn leave together at its end
	 * (common/cork.h): the clients they wake no longer preempt the loop
	 * while it still has the turn's other answers to write. */
	struct cork_batch corks;
	struct http_server_opts opts;
	http_handler handler;
	void *data;
	struct hconn *conns;
	size_t nconns;
	int dispatching;	/* handler calls on the stack */
	struct hconn *deferred; /* answered while dispatching: parse on */
	int open;		/* listener + timer while stopping */
	bool stopping;
	void (*on_closed)(void *data);
};

struct hconn {
	struct http_server *srv;
	struct net_conn *nc;
	struct hconn *prev, *next;
	http_parser parser;
	struct hreq *cur, *ready, *inflight;
	struct sbuf in; /* received, parsed up to in_off */
	size_t in_off;
	size_t hbytes; /* request line + header bytes of cur */
	int reject;    /* status when a callback stopped the parser */
	uint64_t last_active;
	uint64_t linger_until;
	struct hconn *defer_next;
	bool reading, eof, closing, lingering, shut_done, busy, deferred;
};

static void process(struct hconn *hc);
static void conn_close(struct hconn *hc);
static int resume_reading(struct hconn *hc);

/* ---- requests ----------------------------------------------------------- */

static void req_free(struct hreq *r)
{
	if (r == NULL)
		return;
	sbuf_free(&r->url);
	sbuf_free(&r->hb);
	sbuf_free(&r->body);
	sbuf_free(&r->misc);
	sbuf_free(&r->extra);
	mem_free(r->hdrs);
	mem_free(r->params);
	mem_free(r);
}

const char *http_request_header(const struct http_request *req,
				const char *name)
{
	const struct hreq *r = (const struct hreq *)req;

	if (req == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < r->nhdrs; i++) {
		if (strcasecmp(r->hb.p + r->hdrs[i].name, name) != 0)
			continue;
		return r->hdrs[i].value == SIZE_MAX
			   ? ""
			   : r->hb.p + r->hdrs[i].value;
	}
	return NULL;
}

const char *http_request_param(const struct http_request *req, const char *name)
{
	const struct hreq *r = (const struct hreq *)req;

	if (req == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < r->nparams; i++)
		if (strcmp(r->misc.p + r->params[2 * i], name) == 0)
			return r->misc.p + r->params[2 * i + 1];
	return NULL;
}

bool http_request_is_cancelled(const struct http_request *req)
{
	return ((const struct hreq *)req)->conn == NULL;
}

/* Decodes in[0..len) onto the end of misc as a NUL-terminated string. */
static int misc_add_decoded(struct hreq *r, const char *in, size_t len,
			    size_t *off)
{
	size_t n;

	if (sbuf_grow(&r->misc, len + 1) < 0)
		return 503;
	if (http_url_decode(in, len, true, r->misc.p + r->misc.len, &n) < 0)
		return 400;
	*off = r->misc.len;
	r->misc.len += n + 1;
	r->misc.p[r->misc.len] = '\0';
	return 0;
}

static int parse_params(struct hreq *r, const char *q, size_t qlen)
{
	size_t i = 0;

	while (i < qlen) {
		size_t end = i, eq;
		size_t koff, voff;
		int rv;

		while (end < qlen && q[end] != '&')
			end++;
		if (end == i) {
			i++;
			continue;
		}
		for (eq = i; eq < end && q[eq] != '='; eq++)
			;
		if (r->nparams == r->pcap) {
			size_t cap = r->pcap ? r->pcap * 2 : 8;
			size_t *p =
			    mem_realloc(r->params, 2 * cap * sizeof(*p));

			if (p == NULL)
				return 503;
			r->params = p;
			r->pcap = cap;
		}
		rv = misc_add_decoded(r, q + i, eq - i, &koff);
		if (rv == 0)
			rv = misc_add_decoded(r, q + eq + (eq < end),
					      end - eq - (eq < end), &voff);
		if (rv != 0)
			return rv;
		r->params[2 * r->nparams] = koff;
		r->params[2 * r->nparams + 1] = voff;
		r->nparams++;
		i = end + 1;
	}
	return 0;
}

/* Splits the URL, decodes the query, points pub at it all.  0 or a status. */
static int req_finalize(struct hreq *r)
{
	struct http_parser_url u;
	const char *path = "/", *query = "";
	size_t plen = 1, qlen = 0, path_off, query_off;
	int rv;

	if (r->url.len == 0)
		return 400;
	if (r->url.len == 1 && r->url.p[0] == '*') {
		path = "*";
	} else {
		http_parser_url_init(&u);
		if (http_parser_parse_url(r->url.p, r->url.len,
					  r->method == HTTP_CONNECT, &u) != 0)
			return 400;
		if (u.field_set & (1 << UF_PATH)) {
			path = r->url.p + u.field_data[UF_PATH].off;
			plen = u.field_data[UF_PATH].len;
		}
		if (u.field_set & (1 << UF_QUERY)) {
			query = r->url.p + u.field_data[UF_QUERY].off;
			qlen = u.field_data[UF_QUERY].len;
		}
	}
	path_off = r->misc.len;
	if (sbuf_add(&r->misc, path, plen) < 0 || sbuf_sep(&r->misc) < 0)
		return 503;
	query_off = r->misc.len;
	if (sbuf_add(&r->misc, query, qlen) < 0 || sbuf_sep(&r->misc) < 0)
		return 503;
	rv = parse_params(r, query, qlen);
	if (rv != 0)
		return rv;
	/* Trailing whitespace of header values is not part of them. */
	for (size_t i = 0; i < r->nhdrs; i++) {
		char *v, *e;

		if (r->hdrs[i].value == SIZE_MAX)
			continue;
		v = r->hb.p + r->hdrs[i].value;
		e = v + strlen(v);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
	}
	r->pub.method = http_method_str((enum http_method)r->method);
	r->pub.path = r->misc.p + path_off;
	r->pub.query = r->misc.p + query_off;
	r->pub.body = r->body.p != NULL ? r->body.p : "";
	r->pub.body_len = r->body.len;
	r->pub.content_type = http_request_header(&r->pub, "Content-Type");
	r->pub.idempotency_key =
	    http_request_header(&r->pub, "Idempotency-Key");
	return 0;
}

/* ---- server: parser callbacks ------------------------------------------- */

static int stop_parser(struct hconn *hc, int status)
{
	hc->reject = status;
	return -1;
}

static int count_header_bytes(struct hconn *hc, size_t n, int status)
{
	hc->hbytes += n;
	if (hc->hbytes > hc->srv->opts.max_header_bytes)
		return stop_parser(hc, status);
	return 0;
}

static int on_begin(http_parser *p)
{
	struct hconn *hc = p->data;

	hc->cur = mem_calloc(1, sizeof(*hc->cur));
	if (hc->cur == NULL)
		return stop_parser(hc, 503);
	hc->hbytes = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct hconn *hc = p->data;

	if (count_header_bytes(hc, len, 414) < 0)
		return -1;
	if (sbuf_add(&hc->cur->url, at, len) < 0)
		return stop_parser(hc, 503);
	return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
	struct hconn *hc = p->data;
	struct hreq *r = hc->cur;

	if (count_header_bytes(hc, len, 431) < 0)
		return -1;
	if (r->hstate != H_FIELD) {
		if (r->nhdrs == MAX_HEADERS)
			return stop_parser(hc, 431);
		if (r->nhdrs == r->hcap) {
			size_t cap = r->hcap ? r->hcap * 2 : 16;
			struct hdr *h = mem_realloc(r->hdrs, cap * sizeof(*h));

			if (h == NULL)
				return stop_parser(hc, 503);
			r->hdrs = h;
			r->hcap = cap;
		}
		if (r->hstate == H_VALUE && sbuf_sep(&r->hb) < 0)
			return stop_parser(hc, 503);
		r->hdrs[r->nhdrs].name = r->hb.len;
		r->hdrs[r->nhdrs].value = SIZE_MAX;
		r->nhdrs++;
		r->hstate = H_FIELD;
	}
	if (sbuf_add(&r->hb, at, len) < 0)
		return stop_parser(hc, 503);
	return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
	struct hconn *hc = p->data;
	struct hreq *r = hc->cur;

	if (count_header_bytes(hc, len, 431) < 0)
		return -1;
	if (r->hstate != H_VALUE) {
		if (r->nhdrs == 0)
			return stop_parser(hc, 400);
		if (sbuf_sep(&r->hb) < 0)
			return stop_parser(hc, 503);
		r->hdrs[r->nhdrs - 1].value = r->hb.len;
		r->hstate = H_VALUE;
	}
	if (sbuf_add(&r->hb, at, len) < 0)
		return stop_parser(hc, 503);
	return 0;
}

#define BODY_RESERVE_MAX (64u << 10)

static int on_headers_complete(http_parser *p)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct hconn *hc = p->data;
	struct hreq *r = hc->cur;
	const char *expect;

	if (p->http_major != 1)
		return stop_parser(hc, 505);
	r->method = p->method;
	r->keep_alive = http_should_keep_alive(p) != 0;
	if ((p->flags & F_CONTENTLENGTH) &&
	    p->content_length > hc->srv->opts.max_body_bytes)
		return stop_parser(hc, 413);
	/* The body's room at once, not doubling up to it; a large one only
	 * as its bytes arrive, so a header alone cannot claim much. */
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > 0 &&
	    sbuf_grow(&r->body, p->content_length < BODY_RESERVE_MAX
				    ? (size_t)p->content_length
				    : BODY_RESERVE_MAX) < 0)
		return stop_parser(hc, 503);
	expect = http_request_header(&r->pub, "Expect");
	if (expect != NULL && strncasecmp(expect, "100-continue", 12) == 0 &&
	    p->http_minor >= 1 &&
	    net_conn_write(hc->nc, cont, sizeof(cont) - 1) < 0)
		return stop_parser(hc, 503);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct hconn *hc = p->data;
	struct hreq *r = hc->cur;

	if (len > hc->srv->opts.max_body_bytes - r->body.len)
		return stop_parser(hc, 413);
	if (sbuf_add(&r->body, at, len) < 0)
		return stop_parser(hc, 503);
	return 0;
}

static int on_complete(http_parser *p)
{
	struct hconn *hc = p->data;
	struct hreq *r = hc->cur;
	int rv = req_finalize(r);

	if (rv != 0)
		return stop_parser(hc, rv);
	if (p->upgrade)
		r->keep_alive = false; /* we speak no other protocol */
	hc->ready = r;
	hc->cur = NULL;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_begin,
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

/* ---- server: connections ------------------------------------------------ */

static void maybe_stopped(struct http_server *srv)
{
	void (*cb)(void *data) = srv->on_closed;
	void *data = srv->data;

	if (!srv->stopping || srv->open > 0 || srv->nconns > 0)
		return;
	mem_free(srv);
	if (cb != NULL)
		cb(data);
}

static void on_conn_closed(struct net_conn *nc, void *data)
{
	struct hconn *hc = data;
	struct http_server *srv = hc->srv;

	if (hc->prev != NULL)
		hc->prev->next = hc->next;
	else
		srv->conns = hc->next;
	if (hc->next != NULL)
		hc->next->prev = hc->prev;
	srv->nconns--;
	sbuf_free(&hc->in);
	mem_free(hc);
	maybe_stopped(srv);
}

/* Closes now.  An inflight request becomes cancelled, not freed. */
static void conn_close(struct hconn *hc)
{
	if (hc->closing)
		return;
	hc->closing = true;
	if (hc->inflight != NULL) {
		hc->inflight->conn = NULL;
		hc->inflight = NULL;
	}
	req_free(hc->cur);
	req_free(hc->ready);
	hc->cur = hc->ready = NULL;
	net_conn_close(hc->nc, on_conn_closed);
}

static void on_shutdown(struct net_conn *nc, int status, void *data)
{
	struct hconn *hc = data;

	if (hc->closing)
		return;
	hc->shut_done = true;
	if (status < 0 || hc->eof)
		conn_close(hc);
}

/* Flush, send FIN, drain until the client closes (see the notes). */
static void linger_close(struct hconn *hc)
{
	unsigned ms = hc->srv->opts.idle_timeout_ms;

	if (hc->lingering || hc->closing)
		return;
	hc->lingering = true;
	hc->linger_until =
	    uv_now(hc->srv->loop) + (ms < LINGER_MS ? ms : LINGER_MS);
	if (net_conn_shutdown(hc->nc, on_shutdown) < 0) {
		conn_close(hc);
		return;
	}
	if (!hc->reading && !hc->eof && resume_reading(hc) < 0)
		conn_close(hc);
}

static int write_response(struct hconn *hc, int status, const char *ctype,
			  const char *extra, const void *body, size_t len,
			  bool keep_alive, bool head)
{
	struct sbuf out = {0};
	bool bodyless = status == 204 || status == 304;
	char num[24];
	int rv;

	/* Put together by hand, room reserved once: every answer of every
	 * transaction goes through here. */
	rv = sbuf_grow(&out, 160 + (extra != NULL ? strlen(extra) : 0) +
				 (ctype != NULL ? strlen(ctype) : 0) + len);
	if (rv == 0)
		rv = sbuf_adds(&out, "HTTP/1.1 ");
	if (rv == 0)
		rv = sbuf_add(&out, num,
			      str_u64(num, (unsigned long long)status));
	if (rv == 0)
		rv = sbuf_adds(&out, " ");
	if (rv == 0)
		rv = sbuf_adds(&out, http_status_reason(status));
	if (rv == 0)
		rv = sbuf_adds(&out, "\r\n");
	if (rv == 0 && ctype != NULL) {
		rv = sbuf_adds(&out, "Content-Type: ");
		if (rv == 0)
			rv = sbuf_adds(&out, ctype);
		if (rv == 0)
			rv = sbuf_adds(&out, "\r\n");
	}
	if (rv == 0 && !bodyless) {
		rv = sbuf_adds(&out, "Content-Length: ");
		if (rv == 0)
			rv = sbuf_add(&out, num, str_u64(num, len));
		if (rv == 0)
			rv = sbuf_adds(&out, "\r\n");
	}
	if (rv == 0 && !keep_alive)
		rv = sbuf_adds(&out, "Connection: close\r\n");
	if (rv == 0 && extra != NULL)
		rv = sbuf_adds(&out, extra);
	if (rv == 0)
		rv = sbuf_adds(&out, "\r\n");
	if (rv == 0 && !bodyless && !head)
		rv = sbuf_add(&out, body, len);
	if (rv == 0)
		rv = net_conn_write(hc->nc, out.p, out.len);
	sbuf_free(&out);
	return rv;
}

/* The server's own answer to a request it will not hand on; then close. */
static void reject(struct hconn *hc, int status)
{
	char body[64];
	int n =
	    snprintf(body, sizeof(body), "%s\n", http_status_reason(status));

	log_debug("http", "request_rejected", "status=%d", status);
	req_free(hc->cur);
	hc->cur = NULL;
	if (write_response(hc, status, "text/plain", NULL, body, (size_t)n,
			   false, false) < 0) {
		conn_close(hc);
		return;
	}
	linger_close(hc);
}

/*
 * Calls the handler.  An answer given meanwhile to a request of another
 * connection does not parse that connection's next request at once (that
 * would call the handler from inside itself); it is queued on `deferred`
 * and parsed here, after the handler returns.
 */
static void dispatch(struct hconn *hc)
{
	struct http_server *srv = hc->srv;
	struct hreq *r = hc->ready;

	hc->ready = NULL;
	hc->inflight = r;
	r->conn = hc;
	srv->dispatching++;
	srv->handler(&r->pub, srv->data);
	srv->dispatching--;
	while (srv->dispatching == 0 && srv->deferred != NULL) {
		struct hconn *d = srv->deferred;

		srv->deferred = d->defer_next;
		d->deferred = false;
		process(d);
	}
}

/* Parses on after an answer, now or once the current handler returns. */
static void process_after_answer(struct hconn *hc)
{
	struct http_server *srv = hc->srv;

	if (srv->dispatching == 0 || hc->busy) {
		process(hc);
		return;
	}
	if (!hc->deferred) {
		hc->deferred = true;
		hc->defer_next = srv->deferred;
		srv->deferred = hc;
	}
}

/* Parses what is buffered and dispatches; see the notes at the top. */
static void process(struct hconn *hc)
{
	if (hc->busy)
		return;
	hc->busy = true;
	while (!hc->closing && !hc->lingering && hc->inflight == NULL) {
		if (hc->in_off < hc->in.len) {
			size_t avail = hc->in.len - hc->in_off;
			size_t n =
			    http_parser_execute(&hc->parser, &parser_settings,
						hc->in.p + hc->in_off, avail);
			enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);

			hc->in_off += n;
			if (e == HPE_PAUSED) {
				http_parser_pause(&hc->parser, 0);
				dispatch(hc);
				continue;
			}
			if (e != HPE_OK) {
				reject(hc, hc->reject ? hc->reject
					   : e == HPE_HEADER_OVERFLOW ? 431
								      : 400);
				break;
			}
			if (n < avail)
				hc->in_off = hc->in.len; /* after an upgrade */
			continue;
		}
		hc->in.len = hc->in_off = 0;
		if (hc->eof) {
			if (hc->cur != NULL)
				conn_close(hc); /* half a request, then gone */
			else
				linger_close(hc);
			break;
		}
		if (!hc->reading && resume_reading(hc) < 0)
			conn_close(hc);
		break;
	}
	hc->busy = false;
}

static void conn_read(struct net_conn *nc, const char *buf, ssize_t n,
		      void *data)
{
	struct hconn *hc = data;

	if (hc->closing)
		return;
	if (n < 0) {
		hc->eof = true;
		hc->reading = false;
		if (n != UV_EOF)
			conn_close(hc); /* reset: cancels an inflight request */
		else if (hc->lingering) {
			if (hc->shut_done)
				conn_close(hc);
		} else if (hc->inflight == NULL) {
			process(hc);
		}
		return;
	}
	hc->last_active = uv_now(hc->srv->loop);
	if (hc->lingering)
		return; /* draining */
	if (hc->in_off > 0) {
		memmove(hc->in.p, hc->in.p + hc->in_off,
			hc->in.len - hc->in_off);
		hc->in.len -= hc->in_off;
		hc->in_off = 0;
	}
	if (sbuf_add(&hc->in, buf, (size_t)n) < 0) {
		conn_close(hc);
		return;
	}
	if (hc->inflight != NULL && hc->in.len > IN_CAP) {
		net_conn_read_stop(nc);
		hc->reading = false;
	}
	process(hc);
}

static int resume_reading(struct hconn *hc)
{
	int rv = net_conn_read_start(hc->nc, conn_read, hc);

	if (rv == 0)
		hc->reading = true;
	return rv;
}

static void on_accept(struct net_listener *l, struct net_conn *nc, void *data)
{
	struct http_server *srv = data;
	struct hconn *hc;

	if (srv->stopping || srv->nconns >= srv->opts.max_connections) {
		log_debug("http", "connection_refused", "open=%zu",
			  srv->nconns);
		net_conn_close(nc, NULL);
		return;
	}
	hc = mem_calloc(1, sizeof(*hc));
	if (hc == NULL) {
		net_conn_close(nc, NULL);
		return;
	}
	hc->srv = srv;
	hc->nc = nc;
	http_parser_init(&hc->parser, HTTP_REQUEST);
	hc->parser.data = hc;
	net_conn_set_write_limit(nc, CONN_WRITE_LIMIT);
	net_conn_set_batch(nc, &srv->corks);
	if (resume_reading(hc) < 0) {
		mem_free(hc);
		net_conn_close(nc, NULL);
		return;
	}
	hc->last_active = uv_now(srv->loop);
	hc->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = hc;
	srv->conns = hc;
	srv->nconns++;
}

static void on_sweep(uv_timer_t *t)
{
	struct http_server *srv = t->data;
	uint64_t now = uv_now(srv->loop);

	for (struct hconn *hc = srv->conns; hc != NULL; hc = hc->next) {
		if (hc->closing)
			continue;
		if (hc->lingering) {
			if (now >= hc->linger_until)
				conn_close(hc);
		} else if (hc->inflight == NULL &&
			   now - hc->last_active >= srv->opts.idle_timeout_ms) {
			conn_close(hc);
		}
	}
}

/* ---- server: public ----------------------------------------------------- */

int http_server_start(uv_loop_t *loop, const char *addr,
		      const struct http_server_opts *opts, http_handler handler,
		      void *data, struct http_server **out)
{
	struct http_server *srv;
	uint64_t every;
	int rv;

	if (loop == NULL || handler == NULL || out == NULL)
		return -EINVAL;
	srv = mem_calloc(1, sizeof(*srv));
	if (srv == NULL)
		return -ENOMEM;
	if (opts != NULL)
		srv->opts = *opts;
	if (srv->opts.max_body_bytes == 0)
		srv->opts.max_body_bytes = HTTP_MAX_BODY_DEFAULT;
	if (srv->opts.max_header_bytes == 0)
		srv->opts.max_header_bytes = HTTP_MAX_HEADER_DEFAULT;
	if (srv->opts.idle_timeout_ms == 0)
		srv->opts.idle_timeout_ms = HTTP_IDLE_TIMEOUT_DEFAULT;
	if (srv->opts.max_connections == 0)
		srv->opts.max_connections = HTTP_MAX_CONNECTIONS_DEFAULT;
	srv->loop = loop;
	srv->handler = handler;
	srv->data = data;
	srv->sweep.data = srv;
	rv = net_listen(loop, addr, on_accept, srv, &srv->listener);
	if (rv < 0)
		goto err_free;
	rv = uv_timer_init(loop, &srv->sweep);
	if (rv < 0)
		goto err_close_listener;
	cork_batch_init(loop, &srv->corks);
	cork_batch_set_data(&srv->corks, srv);
	every = srv->opts.idle_timeout_ms / 4;
	every = every < 10 ? 10 : every > 1000 ? 1000 : every;
	uv_timer_start(&srv->sweep, on_sweep, every, every);
	*out = srv;
	return 0;

err_close_listener:
	/* The listener frees itself when closed and never looks at srv. */
	net_listener_close(srv->listener, NULL);
err_free:
	mem_free(srv);
	return rv;
}

int http_server_port(const struct http_server *srv)
{
	return net_listener_port(srv->listener);
}

size_t http_server_connections(const struct http_server *srv)
{
	return srv->nconns;
}

static void on_part_closed(void *data)
{
	struct http_server *srv = data;

	srv->open--;
	maybe_stopped(srv);
}

static void on_timer_closed(uv_handle_t *h)
{
	on_part_closed(h->data);
}

int http_server_stop(struct http_server *srv, void (*on_closed)(void *data))
{
	if (srv == NULL)
		return -EINVAL;
	if (srv->stopping)
		return -EALREADY;
	srv->stopping = true;
	srv->on_closed = on_closed;
	srv->open = 3;
	net_listener_close(srv->listener, on_part_closed);
	uv_close((uv_handle_t *)&srv->sweep, on_timer_closed);
	for (struct hconn *hc = srv->conns; hc != NULL; hc = hc->next)
		conn_close(hc);
	/* After the connections' last writes: what they hold goes now. */
	cork_batch_close(&srv->corks, on_timer_closed);
	return 0;
}

int http_respond_header(struct http_request *req, const char *name,
			const char *value)
{
	static const char *const reserved[] = {"Content-Type", "Content-Length",
					       "Connection",
					       "Transfer-Encoding"};
	struct hreq *r = (struct hreq *)req;
	size_t before;

	if (req == NULL || !is_token(name) || value == NULL ||
	    !is_field_value(value))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return -EINVAL;
	before = r->extra.len;
	if (sbuf_printf(&r->extra, "%s: %s\r\n", name, value) < 0) {
		r->extra.len = before;
		if (r->extra.p != NULL)
			r->extra.p[before] = '\0';
		return -ENOMEM;
	}
	return 0;
}

int http_respond(struct http_request *req, int status, const char *content_type,
		 const void *body, size_t len)
{
	static const char oops[] = "Internal Server Error\n";
	struct hreq *r = (struct hreq *)req;
	struct hconn *hc;
	bool keep_alive, head;
	int bad = 0;
	int rv;

	if (req == NULL)
		return -EINVAL;
	hc = r->conn;
	if (hc == NULL) {
		req_free(r);
		return -ECANCELED;
	}
	if (status < 200 || status > 599 || (body == NULL && len > 0) ||
	    (content_type != NULL && !is_field_value(content_type)))
		bad = -EINVAL;
	hc->inflight = NULL;
	r->conn = NULL;
	keep_alive = r->keep_alive && bad == 0;
	head = r->method == HTTP_HEAD;
	if (bad == 0)
		rv = write_response(hc, status, content_type, r->extra.p, body,
				    len, keep_alive, head);
	else
		rv = write_response(hc, 500, "text/plain", NULL, oops,
				    sizeof(oops) - 1, false, head);
	log_debug("http", "request", "method=%s path=%s status=%d len=%zu",
		  r->pub.method, log_q(r->pub.path), bad ? 500 : status, len);
	req_free(r);
	if (rv < 0) {
		conn_close(hc);
		return rv;
	}
	hc->last_active = uv_now(hc->srv->loop);
	if (!keep_alive)
		linger_close(hc);
	else
		process_after_answer(hc);
	return bad;
}

int http_respond_json(struct http_request *req, int status, json_t *json)
{
	static const char oops[] = "{\"error\":\"cannot encode response\"}\n";
	json_malloc_t jmalloc;
	json_free_t jfree;
	struct sbuf b = {0};
	char *s;
	int rv;

	if (req == NULL) {
		json_decref(json);
		return -EINVAL;
	}
	s = json != NULL ? json_dumps(json, JSON_COMPACT) : NULL;
	json_decref(json);
	if (s == NULL) {
		/* No JSON, or jansson ran out of memory: still answer once. */
		rv = http_respond(req, 500, "application/json", oops,
				  sizeof(oops) - 1);
		return rv < 0 ? rv : -EINVAL;
	}
	rv = sbuf_adds(&b, s);
	json_get_alloc_funcs(&jmalloc, &jfree);
	jfree(s);
	if (rv == 0)
		rv = sbuf_adds(&b, "\n");
	if (rv < 0) {
		sbuf_free(&b);
		http_respond(req, 500, "application/json", oops,
			     sizeof(oops) - 1);
		return -ENOMEM;
	}
	rv = http_respond(req, status, "application/json", b.p, b.len);
	sbuf_free(&b);
	return rv;
}

int http_respond_jsonw(struct http_request *req, int status, struct jsonw *w)
{
	static const char oops[] = "{\"error\":\"cannot encode response\"}\n";
	int rv;

	if (jsonw_done(w))
		jsonw_raw(w, "\n", 1);
	if (!jsonw_done(w)) {
		rv = http_respond(req, 500, "application/json", oops,
				  sizeof(oops) - 1);
		return rv < 0 ? rv : -ENOMEM;
	}
	return http_respond(req, status, "application/json", w->p, w->len);
}

/* ---- client ------------------------------------------------------------- */

struct cstate {
	struct http_response *out;
	const char *method;
	struct sbuf body;
	struct sbuf field;
	struct sbuf value;
	enum hstate hstate;
	int err; /* why a callback stopped the parser */
	bool done;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline (< 0: forever). */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	for (;;) {
		int ms = -1;
		int n;

		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			ms = left > INT32_MAX ? INT32_MAX : (int)left;
		}
		n = poll(&pfd, 1, ms);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int cli_header_done(struct cstate *cs)
{
	char **slot = NULL;

	if (cs->hstate != H_VALUE)
		return 0;
	if (strcasecmp(cs->field.p, "Location") == 0)
		slot = &cs->out->location;
	else if (strcasecmp(cs->field.p, "Content-Type") == 0)
		slot = &cs->out->content_type;
	if (slot != NULL && *slot == NULL) {
		*slot = mem_strdup(cs->value.p ? cs->value.p : "");
		if (*slot == NULL)
			return -ENOMEM;
	}
	cs->field.len = cs->value.len = 0;
	if (cs->field.p != NULL)
		cs->field.p[0] = '\0';
	if (cs->value.p != NULL)
		cs->value.p[0] = '\0';
	cs->hstate = H_NONE;
	return 0;
}

static int cli_stop(struct cstate *cs, int err)
{
	cs->err = err;
	return -1;
}

static int cli_field(http_parser *p, const char *at, size_t len)
{
	struct cstate *cs = p->data;

	if (cs->hstate == H_VALUE && cli_header_done(cs) < 0)
		return cli_stop(cs, -ENOMEM);
	cs->hstate = H_FIELD;
	if (cs->field.len + len > CLIENT_HEADER_MAX)
		return cli_stop(cs, -EMSGSIZE);
	if (sbuf_add(&cs->field, at, len) < 0)
		return cli_stop(cs, -ENOMEM);
	return 0;
}

static int cli_value(http_parser *p, const char *at, size_t len)
{
	struct cstate *cs = p->data;

	cs->hstate = H_VALUE;
	if (cs->value.len + len > CLIENT_HEADER_MAX)
		return cli_stop(cs, -EMSGSIZE);
	if (sbuf_add(&cs->value, at, len) < 0)
		return cli_stop(cs, -ENOMEM);
	return 0;
}

static int cli_headers_complete(http_parser *p)
{
	struct cstate *cs = p->data;

	if (cli_header_done(cs) < 0)
		return cli_stop(cs, -ENOMEM);
	/* 1: a response to HEAD has no body, whatever Content-Length says. */
	return strcmp(cs->method, "HEAD") == 0 ? 1 : 0;
}

static int cli_body(http_parser *p, const char *at, size_t len)
{
	struct cstate *cs = p->data;

	if (len > HTTP_CLIENT_MAX_BODY - cs->body.len)
		return cli_stop(cs, -EMSGSIZE);
	if (sbuf_add(&cs->body, at, len) < 0)
		return cli_stop(cs, -ENOMEM);
	return 0;
}

static int cli_complete(http_parser *p)
{
	struct cstate *cs = p->data;

	if (p->status_code >= 100 && p->status_code < 200) {
		/* An interim response (100 Continue): the real one follows. */
		mem_free(cs->out->location);
		mem_free(cs->out->content_type);
		cs->out->location = cs->out->content_type = NULL;
		cs->body.len = 0;
		return 0;
	}
	cs->out->status = (int)p->status_code;
	cs->done = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings client_settings = {
    .on_header_field = cli_field,
    .on_header_value = cli_value,
    .on_headers_complete = cli_headers_complete,
    .on_body = cli_body,
    .on_message_complete = cli_complete,
};

static int client_connect(const struct sockaddr_storage *ss, int64_t deadline,
			  int *fdp)
{
	socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						  : sizeof(struct sockaddr_in);
	int one = 1;
	int err = 0;
	socklen_t elen = sizeof(err);
	int fd, rv;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)ss, len) < 0) {
		if (errno != EINPROGRESS) {
			rv = -errno;
			goto err_close;
		}
		rv = wait_fd(fd, POLLOUT, deadline);
		if (rv < 0)
			goto err_close;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
			rv = -errno;
			goto err_close;
		}
		if (err != 0) {
			rv = -err;
			goto err_close;
		}
	}
	*fdp = fd;
	return 0;

err_close:
	close(fd);
	return rv;
}

static int build_request(struct sbuf *req, const char *hostport,
			 const char *method, const char *path,
			 const char *content_type, const char *body, size_t len)
{
	bool with_length =
	    len > 0 || body != NULL ||
	    (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
	     strcmp(method, "DELETE") != 0);
	int rv;

	rv = sbuf_printf(req,
			 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: decree\r\n"
			 "Accept: */*\r\nConnection: close\r\n",
			 method, path, hostport);
	if (rv == 0 && content_type != NULL)
		rv = sbuf_printf(req, "Content-Type: %s\r\n", content_type);
	if (rv == 0 && with_length)
		rv = sbuf_printf(req, "Content-Length: %zu\r\n", len);
	if (rv == 0)
		rv = sbuf_adds(req, "\r\n");
	if (rv == 0)
		rv = sbuf_add(req, body, len);
	return rv;
}

static bool is_request_target(const char *path)
{
	if (path == NULL || path[0] != '/')
		return false;
	for (; *path; path++) {
		unsigned char c = (unsigned char)*path;

		if (c <= 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* Sends everything; a peer that stops reading may still have answered. */
static int send_all(int fd, const char *p, size_t len, int64_t deadline)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, p + off, len - off, MSG_NOSIGNAL);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		n = wait_fd(fd, POLLOUT, deadline);
		if (n < 0)
			return (int)n;
	}
	return 0;
}

static int receive(int fd, http_parser *parser, struct cstate *cs,
		   int64_t deadline)
{
	char buf[16384];

	while (!cs->done) {
		ssize_t n;
		size_t used;
		int rv = wait_fd(fd, POLLIN, deadline);

		if (rv < 0)
			return rv;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		used = http_parser_execute(parser, &client_settings, buf,
					   (size_t)n);
		if (cs->done)
			break;
		if (cs->err)
			return cs->err;
		/* EOF: a body read until close ended above; else it is cut. */
		if (n == 0 ||
		    HTTP_PARSER_ERRNO(parser) == HPE_INVALID_EOF_STATE)
			return -ECONNRESET;
		if (HTTP_PARSER_ERRNO(parser) != HPE_OK)
			return -EPROTO;
		if (used != (size_t)n)
			return -EPROTO;
	}
	return 0;
}

int http_client_request(const char *hostport, const char *method,
			const char *path, const char *content_type,
			const char *body, size_t len, int timeout_ms,
			struct http_response *out)
{
	struct sockaddr_storage ss;
	struct sbuf req = {0};
	struct cstate cs;
	http_parser parser;
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
	int fd = -1;
	int rv, srv;

	if (out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!is_token(method) || !is_request_target(path) ||
	    (body == NULL && len > 0) ||
	    (content_type != NULL && !is_field_value(content_type)))
		return -EINVAL;
	rv = net_addr_parse(hostport, &ss);
	if (rv < 0)
		return rv;
	rv = build_request(&req, hostport, method, path, content_type, body,
			   len);
	if (rv < 0)
		goto err_free_req;
	rv = client_connect(&ss, deadline, &fd);
	if (rv < 0)
		goto err_free_req;
	memset(&cs, 0, sizeof(cs));
	cs.out = out;
	cs.method = method;
	http_parser_init(&parser, HTTP_RESPONSE);
	parser.data = &cs;
	srv = send_all(fd, req.p, req.len, deadline);
	if (srv == -ETIMEDOUT) {
		rv = srv;
		goto err_free_state;
	}
	/* Even if sending failed the server may have answered (413...). */
	rv = receive(fd, &parser, &cs, deadline);
	if (rv < 0) {
		if (srv < 0 && rv != -ETIMEDOUT)
			rv = srv;
		goto err_free_state;
	}
	out->body = cs.body.p != NULL ? cs.body.p : mem_strdup("");
	out->body_len = cs.body.len;
	cs.body.p = NULL;
	if (out->body == NULL) {
		rv = -ENOMEM;
		goto err_free_state;
	}
	sbuf_free(&cs.field);
	sbuf_free(&cs.value);
	close(fd);
	sbuf_free(&req);
	return 0;

err_free_state:
	sbuf_free(&cs.body);
	sbuf_free(&cs.field);
	sbuf_free(&cs.value);
	close(fd);
	http_response_free(out);
err_free_req:
	sbuf_free(&req);
	return rv;
}

void http_response_free(struct http_response *r)
{
	if (r == NULL)
		return;
	mem_free(r->body);
	mem_free(r->content_type);
	mem_free(r->location);
	memset(r, 0, sizeof(*r));
}
