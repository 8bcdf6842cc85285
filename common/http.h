/*
 * http.h - the HTTP/1.1 server decree's API runs on (libuv + http-parser)
 * and a small blocking client for the CLI and tests.
 * (Part of common/; include common/common.h.)
 *
 * Server
 *   http_server_start() listens; the handler gets each complete request and
 *   answers it at once or later (after the coordinator finishes a
 *   transaction) with http_respond() / http_respond_json().  Requests on
 *   one connection are handed to the handler one at a time, in order, so
 *   keep-alive and pipelined requests are answered in order.  Everything
 *   runs on the loop's thread, and the handler is never called from inside
 *   itself (an answer given in the handler to another connection's request
 *   lets that connection's next request in after the handler returns).
 *
 *   The server answers by itself, and closes the connection after: 400 to
 *   a malformed request, 413 to a body over max_body_bytes (as soon as the
 *   headers show it, without reading the body), 414 / 431 to a URL /
 *   headers over max_header_bytes, 505 to an HTTP version other than 1.x.
 *   The method is the handler's business (405 is its choice).
 *
 * Ownership of a request (who frees what)
 *   The server allocates each struct http_request and hands it to the
 *   handler.  The handler must answer it exactly once with http_respond*():
 *   that call frees it, whatever it returns.  If the connection dies first
 *   (client gone, server stopped), the request stays valid and is marked
 *   cancelled (http_request_is_cancelled()); the handler's later respond is
 *   then a no-op that frees it and returns -ECANCELED.  Every pointer inside
 *   the request lives as long as the request.
 *
 * Client
 *   http_client_request() is blocking (poll with one deadline for connect,
 *   send and receive), sends "Connection: close", and parses the response
 *   with http-parser.  It uses no loop and may run in any thread.
 */
#ifndef DECREE_COMMON_HTTP_H
#define DECREE_COMMON_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* Codes http returns itself, with the message http_strerror() gives them. */
#define HTTP_ERRORS(X)                                                         \
	X(EINVAL, "invalid argument (address, method, path or header)")        \
	X(EPROTO, "malformed HTTP response")                                   \
	X(EMSGSIZE, "HTTP response too large")                                 \
	X(ETIMEDOUT, "HTTP request timed out")                                 \
	X(ECONNRESET, "connection closed before a complete response")          \
	X(ECANCELED, "request cancelled: its connection is gone")              \
	X(EALREADY, "server already stopping")                                 \
	X(ENOMEM, "out of memory")

/* Text for a negative code: the list above first, then net_strerror(). */
const char *http_strerror(int err);

#define HTTP_MAX_BODY_DEFAULT	     (1u << 20)	 /* 1 MiB */
#define HTTP_MAX_HEADER_DEFAULT	     (16u << 10) /* 16 KiB */
#define HTTP_IDLE_TIMEOUT_DEFAULT    30000u	 /* ms */
#define HTTP_MAX_CONNECTIONS_DEFAULT 1024u
#define HTTP_CLIENT_MAX_BODY	     (64u << 20) /* 64 MiB */

struct http_server_opts {
	size_t max_body_bytes;	  /* 0: HTTP_MAX_BODY_DEFAULT */
	size_t max_header_bytes;  /* request line + headers; 0: default */
	unsigned idle_timeout_ms; /* a connection with no request in the
				     handler and no traffic for this long is
				     closed; 0: HTTP_IDLE_TIMEOUT_DEFAULT */
	unsigned max_connections; /* more are closed as soon as accepted;
				     0: HTTP_MAX_CONNECTIONS_DEFAULT */
};

/* Read-only for the handler; see the ownership notes above. */
struct http_request {
	const char *method;	     /* "GET", "POST", ... */
	const char *path;	     /* as sent, not decoded; "/" if none */
	const char *query;	     /* as sent, after '?'; "" if none */
	const char *content_type;    /* Content-Type or NULL */
	const char *idempotency_key; /* Idempotency-Key or NULL */
	const char *body;	     /* NUL-terminated; "" if none */
	size_t body_len;
};

struct http_server;

typedef void (*http_handler)(struct http_request *req, void *data);

/*
 * Listens on addr ("127.0.0.1:7400"; port 0 picks one) and calls handler
 * with data for every request.  opts may be NULL (defaults).  On failure
 * *out is untouched and nothing is left on the loop.
 */
int http_server_start(uv_loop_t *loop, const char *addr,
		      const struct http_server_opts *opts, http_handler handler,
		      void *data, struct http_server **out);
/* The bound port. */
int http_server_port(const struct http_server *srv);
/* Open connections (for tests and metrics). */
size_t http_server_connections(const struct http_server *srv);
/*
 * Stops listening and closes every connection at once (requests still with
 * the handler become cancelled).  on_closed (may be NULL) gets the
 * handler's data when every handle is closed; then srv is freed.
 */
int http_server_stop(struct http_server *srv, void (*on_closed)(void *data));

/* A request header by name (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *req,
				const char *name);
/*
 * A query parameter by name, percent- and '+'-decoded, or NULL.  "?flag"
 * gives "" for flag.  The first of several with one name wins.
 */
const char *http_request_param(const struct http_request *req,
			       const char *name);
/* True once the request's connection is gone (answering is a no-op). */
bool http_request_is_cancelled(const struct http_request *req);

/*
 * Adds a header to the response-to-be (e.g. Location).  -EINVAL if the name
 * is not a token or the value holds CR, LF or NUL (nothing is added).
 * Content-Type, Content-Length, Connection and Transfer-Encoding are the
 * server's.
 */
int http_respond_header(struct http_request *req, const char *name,
			const char *value);
/*
 * Answers req and frees it.  content_type may be NULL (no header); body is
 * copied.  Returns 0, -ECANCELED if the connection is gone, -EINVAL for a
 * status outside 100..999, or an error from the socket (the connection is
 * then closed).
 */
int http_respond(struct http_request *req, int status, const char *content_type,
		 const void *body, size_t len);
/*
 * http_respond() with application/json; steals the reference to json.  A
 * NULL json (or one that cannot be encoded) is answered with 500 and
 * -EINVAL.
 */
int http_respond_json(struct http_request *req, int status, json_t *json);
struct jsonw;
/* The same for text a JSON writer made (common/jsonw.h); w stays the
 * caller's.  A writer that failed gets a 500 answer. */
int http_respond_jsonw(struct http_request *req, int status, struct jsonw *w);

/* "Not Found" for 404 and so on; "Unknown" for codes it does not know. */
const char *http_status_reason(int status);
/*
 * Percent-decodes in[0..len) into out (at least len + 1 bytes), '+' as a
 * space when plus_is_space; NUL-terminates; -EINVAL on a bad %xx or a NUL.
 */
int http_url_decode(const char *in, size_t len, bool plus_is_space, char *out,
		    size_t *out_len);

/* A response, owned by the caller: free with http_response_free(). */
struct http_response {
	int status;
	char *body; /* NUL-terminated; "" if none */
	size_t body_len;
	char *content_type; /* or NULL */
	char *location;	    /* Location header or NULL */
};

/*
 * Sends one request to hostport ("127.0.0.1:7400") and waits for the whole
 * response, at most timeout_ms (<= 0: no limit).  content_type and body may
 * be NULL.  Returns 0 with *out filled (any status, 4xx/5xx included), or
 * a negative code (-ECONNREFUSED, -ETIMEDOUT, -EPROTO, -EMSGSIZE, -EINVAL,
 * -ECONNRESET, ...) with *out zeroed.
 */
int http_client_request(const char *hostport, const char *method,
			const char *path, const char *content_type,
			const char *body, size_t len, int timeout_ms,
			struct http_response *out);
void http_response_free(struct http_response *r);

#endif
