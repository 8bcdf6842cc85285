/*
 * net.h - libuv TCP helpers: "host:port" addresses, a listener, a connector
 * with a timeout, and a connection object with a bounded, copying write
 * queue and a clean close.  (Part of common/; include common/common.h.)
 *
 * Rules, as in libuv:
 *   - Every call returns 0 or a negative errno (libuv's UV_E* on Unix are the
 *     same numbers); net_strerror() turns one into text.
 *   - If a function that takes a callback fails, that callback never fires.
 *   - net owns struct net_conn and struct net_listener.  Their memory is
 *     freed by net right after the close callback returns; do not touch the
 *     object after that.  A failed net_connect() never hands out a conn.
 *   - Closing every listener and connection and running the loop until it
 *     stops leaves uv_loop_close() returning 0.
 *
 * SIGPIPE: libuv writes with write(2), which raises SIGPIPE on a peer that
 * reset the connection and would kill the process.  The first net_listen() or
 * net_connect() therefore sets SIGPIPE to SIG_IGN if it was still SIG_DFL;
 * write errors then arrive as -EPIPE / -ECONNRESET through the read callback.
 */
#ifndef DECREE_COMMON_NET_H
#define DECREE_COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

/* Codes net returns itself, with the message net_strerror() gives them. */
#define NET_ERRORS(X)                                                          \
	X(EINVAL, "bad address: expected IPv4:port, [IPv6]:port or "           \
		  "localhost:port")                                            \
	X(ENOBUFS, "outgoing queue full")                                      \
	X(ETIMEDOUT, "connect timed out")                                      \
	X(ECANCELED, "closed before the connect completed")                    \
	X(EPIPE, "connection is closing or shut down")                         \
	X(EALREADY, "already closing")                                         \
	X(ENOMEM, "out of memory")

/* Text for a negative code: the list above first, then libuv's text. */
const char *net_strerror(int err);

#define NET_CONNECT_TIMEOUT_MS	5000u	   /* net_connect()'s default */
#define NET_WRITE_LIMIT_DEFAULT (4u << 20) /* bytes queued per connection */
#define NET_ADDR_STRLEN		64	   /* enough for "[v6%scope]:65535" */

struct net_conn;
struct net_listener;

/*
 * Bytes in: n > 0 bytes at buf (valid only during the call).  n < 0: the
 * stream ended, UV_EOF for an orderly end from the peer or a negative errno
 * (a read or write error); no more reads follow, and the owner should close.
 * The callback may call net_conn_close().
 */
typedef void (*net_read_cb)(struct net_conn *c, const char *buf, ssize_t n,
			    void *data);
/* A new accepted connection, owned by the callee, who must close it. */
typedef void (*net_accept_cb)(struct net_listener *l, struct net_conn *c,
			      void *data);
/*
 * Connect result.  status 0: c is connected and owned by the callee.
 * status < 0 (-ECONNREFUSED, -ETIMEDOUT, -ECANCELED, ...): c is NULL.
 */
typedef void (*net_connect_cb)(struct net_conn *c, int status, void *data);
/* The connection is closed; its memory is freed when this returns. */
typedef void (*net_close_cb)(struct net_conn *c, void *data);
/* A shutdown finished (status 0) or failed / was cancelled by a close. */
typedef void (*net_shutdown_cb)(struct net_conn *c, int status, void *data);

/*
 * Parses "127.0.0.1:7400", "[::1]:7400" or "localhost:7400" (= 127.0.0.1).
 * The port is decimal 0..65535.  -EINVAL on anything else; out untouched.
 */
int net_addr_parse(const char *hostport, struct sockaddr_storage *out);
/* Writes "a.b.c.d:port" or "[v6]:port" into buf; -EINVAL / -ENOSPC. */
int net_addr_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * Binds and listens on addr (port 0 picks a free port).  on_conn gets each
 * accepted connection (TCP_NODELAY set, not yet reading).  On failure
 * nothing is left on the loop and *out is untouched.
 */
int net_listen(uv_loop_t *loop, const char *addr, net_accept_cb on_conn,
	       void *data, struct net_listener **out);
/* The bound port. */
int net_listener_port(const struct net_listener *l);
/*
 * Stops accepting and closes the listening socket; connections already
 * accepted are not touched.  on_closed (may be NULL) gets the listener's
 * data once the handle is closed; the listener is freed after it returns.
 */
int net_listener_close(struct net_listener *l, void (*on_closed)(void *data));

/* net_connect_timeout() with NET_CONNECT_TIMEOUT_MS. */
int net_connect(uv_loop_t *loop, const char *addr, net_connect_cb cb,
		void *data);
/*
 * Connects to addr; cb fires exactly once with the result, -ETIMEDOUT if
 * timeout_ms (> 0) passes first.  If connp is not NULL it receives the
 * connection at once, so that net_conn_close() can cancel the attempt (cb
 * then gets -ECANCELED, and the close callback fires after it).
 */
int net_connect_timeout(uv_loop_t *loop, const char *addr, unsigned timeout_ms,
			net_connect_cb cb, void *data, struct net_conn **connp);

/* Starts delivering bytes to on_read (again, after a stop). */
int net_conn_read_start(struct net_conn *c, net_read_cb on_read, void *data);
/* Stops reading (back-pressure); net_conn_read_start() resumes. */
int net_conn_read_stop(struct net_conn *c);
/*
 * Copies len bytes and queues them.  -ENOBUFS if the bytes queued and not
 * yet written would exceed the write limit (nothing is queued then),
 * -EPIPE after a shutdown or close, or an error from the socket.  A later
 * write error is reported through the read callback.
 */
int net_conn_write(struct net_conn *c, const void *buf, size_t len);
/* Bytes accepted by net_conn_write() and not yet handed to the kernel. */
size_t net_conn_queued(const struct net_conn *c);
/* Sets the write limit (bytes); 0 restores NET_WRITE_LIMIT_DEFAULT. */
void net_conn_set_write_limit(struct net_conn *c, size_t limit);
/* Holds c's writes until the end of the loop turn in b (common/cork.h);
 * NULL (the default) writes at once.  b must outlive c's writes. */
struct cork_batch;
void net_conn_set_batch(struct net_conn *c, struct cork_batch *b);
/*
 * Sends FIN after every queued write is out; reading goes on.  cb (may be
 * NULL) fires when that is done or failed (-ECANCELED if closed first).
 */
int net_conn_shutdown(struct net_conn *c, net_shutdown_cb cb);
/*
 * Closes now: queued writes are dropped, a pending connect is cancelled.
 * on_closed (may be NULL) fires once the handles are closed, then the conn
 * is freed.  -EALREADY if it is already closing (nothing changes).
 */
int net_conn_close(struct net_conn *c, net_close_cb on_closed);
bool net_conn_is_closing(const struct net_conn *c);
/* The peer's address as "host:port", or -ENOTCONN. */
int net_conn_peer(const struct net_conn *c, char *buf, size_t len);
uv_loop_t *net_conn_loop(const struct net_conn *c);
/* The user pointer handed to callbacks; set by read_start or this. */
void net_conn_set_data(struct net_conn *c, void *data);
void *net_conn_data(const struct net_conn *c);

#endif
