/*
 * net.c - TCP on libuv for decree: address parsing, a listener, a connector
 * with a timeout, and connections with a bounded copying write queue.
 *
 * Design notes
 *  - A net_conn owns a uv_tcp_t and, for connectors, a uv_timer_t for the
 *    connect timeout.  `handles` counts the handles not yet closed; the
 *    memory is freed only when it reaches zero, after the user's close
 *    callback (libuv's rule: free after the close callback).
 *  - A listener makes its socket itself (socket, bind, listen) before it
 *    touches the loop, so every way binding can fail (bad address, port in
 *    use) returns with nothing left on the loop.
 *  - Writes copy the caller's bytes.  If nothing is queued we first try a
 *    direct uv_try_write(); whatever the kernel does not take is copied into
 *    one request.  `queued` counts bytes accepted and not yet written; a
 *    write that would push it past `limit` fails with -ENOBUFS and queues
 *    nothing, which bounds the memory a slow peer can pin.
 *  - The end of a stream (EOF, a read error, or a failed write) is reported
 *    once through the read callback with n < 0.
 *  - libuv accepts a connection before asking us; if we then cannot
 *    allocate a conn, a spare handle in the listener takes it and closes it
 *    (otherwise libuv would hold it and stop listening).
 *
 * Connection states
 *
 *   CONNECTING --connect ok--> OPEN --shutdown--> SHUT --close--> CLOSING
 *        |                       |                                 |
 *        +--fail/timeout/close---+------------close----------------+--> freed
 *
 * Invariants
 *  1. closing is set exactly once, by net_conn_close() or by an internal
 *     close (failed or timed-out connect); both paths close every handle.
 *  2. The user's connect callback fires exactly once per net_connect() that
 *     returned 0; with status != 0 the conn is never handed out.
 *  3. No callback of a conn fires after its close callback.
 */
#include "common/common.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define READ_BUF       16384
#define LISTEN_BACKLOG 128

struct net_conn {
	uv_tcp_t tcp;
	uv_timer_t timer; /* connect timeout; initialised for connectors */
	uv_connect_t creq;
	uv_shutdown_t sreq;
	uv_loop_t *loop;
	net_read_cb on_read;
	net_connect_cb on_connect;
	net_shutdown_cb on_shutdown;
	net_close_cb on_closed;
	void *data;
	size_t queued;
	size_t limit;
	struct cork_batch *batch; /* writes held to the turn's end, or NULL */
	struct cork cork;
	int handles;	  /* handles still open */
	bool has_timer;	  /* timer was initialised */
	bool connecting;  /* connect request outstanding */
	bool timed_out;	  /* the connect timer closed us */
	bool user_closed; /* net_conn_close() was called */
	bool closing;
	bool shut;  /* shutdown requested: no more writes */
	bool ended; /* n < 0 was reported to on_read */
	bool reading;
	char rbuf[READ_BUF];
};

struct net_listener {
	uv_tcp_t tcp;
	uv_tcp_t reject; /* takes a connection we cannot serve, then closes */
	uv_loop_t *loop;
	net_accept_cb on_conn;
	void (*on_closed)(void *data);
	void *data;
	int port;
	int handles;	     /* open handles: tcp, and reject while in use */
	bool rejecting;	     /* reject is in use (closing) */
	bool reject_pending; /* libuv holds one more connection for us */
	bool closing;
};

struct wreq {
	uv_write_t req;
	struct net_conn *conn;
	size_t len;
	char bytes[];
};

static const struct {
	int code;
	const char *msg;
} net_errors[] = {
#define NET_ERR_ROW(name, msg) {-name, msg},
    NET_ERRORS(NET_ERR_ROW)
#undef NET_ERR_ROW
};

const char *net_strerror(int err)
{
	for (size_t i = 0; i < sizeof(net_errors) / sizeof(net_errors[0]); i++)
		if (net_errors[i].code == err)
			return net_errors[i].msg;
	return uv_strerror(err);
}

/* See net.h: keep a reset peer from killing the process through SIGPIPE. */
static void ignore_sigpipe(void)
{
	static bool done;
	struct sigaction old;

	if (done)
		return;
	done = true;
	if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
}

/* ---- addresses ---------------------------------------------------------- */

static int parse_port(const char *s, int *port)
{
	long v = 0;
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= 5)
			return -EINVAL;
		v = v * 10 + (s[n] - '0');
	}
	if (n == 0 || v > 65535)
		return -EINVAL;
	*port = (int)v;
	return 0;
}

int net_addr_parse(const char *hostport, struct sockaddr_storage *out)
{
	char host[NET_ADDR_STRLEN];
	const char *colon;
	const char *hs;
	size_t hlen;
	int port;
	struct sockaddr_storage ss;

	if (hostport == NULL || out == NULL)
		return -EINVAL;
	memset(&ss, 0, sizeof(ss));
	if (hostport[0] == '[') {
		const char *close = strchr(hostport, ']');

		if (close == NULL || close[1] != ':')
			return -EINVAL;
		hs = hostport + 1;
		hlen = (size_t)(close - hs);
		colon = close + 1;
	} else {
		colon = strrchr(hostport, ':');
		if (colon == NULL)
			return -EINVAL;
		hs = hostport;
		hlen = (size_t)(colon - hostport);
		if (memchr(hs, ':', hlen) != NULL)
			return -EINVAL; /* bare IPv6 needs brackets */
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	if (parse_port(colon + 1, &port) < 0)
		return -EINVAL;
	memcpy(host, hs, hlen);
	host[hlen] = '\0';
	if (hostport[0] == '[') {
		if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
			return -EINVAL;
	} else {
		if (strcmp(host, "localhost") == 0)
			strcpy(host, "127.0.0.1");
		if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0)
			return -EINVAL;
	}
	*out = ss;
	return 0;
}

int net_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[NET_ADDR_STRLEN];
	int port;
	int n;

	if (sa == NULL || buf == NULL)
		return -EINVAL;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		if (uv_ip4_name(in, host, sizeof(host)) != 0)
			return -EINVAL;
		port = ntohs(in->sin_port);
		n = snprintf(buf, len, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *)sa;

		if (uv_ip6_name(in6, host, sizeof(host)) != 0)
			return -EINVAL;
		port = ntohs(in6->sin6_port);
		n = snprintf(buf, len, "[%s]:%d", host, port);
	} else {
		return -EINVAL;
	}
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return 0;
}

/* ---- connections -------------------------------------------------------- */

static struct net_conn *conn_new(uv_loop_t *loop)
{
	struct net_conn *c = mem_calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->limit = NET_WRITE_LIMIT_DEFAULT;
	cork_init(&c->cork);
	c->tcp.data = c;
	c->timer.data = c;
	return c;
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct net_conn *c = h->data;

	if (--c->handles > 0)
		return;
	if (c->on_closed != NULL)
		c->on_closed(c, c->data);
	mem_free(c);
}

/* Closes every open handle of c; the last close callback frees it. */
static void conn_close_handles(struct net_conn *c)
{
	c->closing = true;
	cork_drop(&c->cork);
	if (c->has_timer && !uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void report_end(struct net_conn *c, int status)
{
	if (c->ended || c->closing || c->on_read == NULL)
		return;
	c->ended = true;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	c->on_read(c, NULL, status, c->data);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct net_conn *c = h->data;

	buf->base = c->rbuf;
	buf->len = sizeof(c->rbuf);
}

static void on_uv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct net_conn *c = s->data;

	if (n == 0 || c->closing)
		return;
	if (n < 0) {
		report_end(c, (int)n);
		return;
	}
	c->on_read(c, buf->base, n, c->data);
}

int net_conn_read_start(struct net_conn *c, net_read_cb on_read, void *data)
{
	int rv;

	if (c == NULL || on_read == NULL)
		return -EINVAL;
	if (c->closing || c->connecting)
		return -EPIPE;
	c->on_read = on_read;
	c->data = data;
	if (c->reading || c->ended)
		return 0;
	rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_uv_read);
	if (rv < 0)
		return rv;
	c->reading = true;
	return 0;
}

int net_conn_read_stop(struct net_conn *c)
{
	if (c == NULL)
		return -EINVAL;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	return 0;
}

static void on_written(uv_write_t *req, int status)
{
	struct wreq *w = req->data;
	struct net_conn *c = w->conn;

	c->queued -= w->len;
	mem_free(w);
	if (status < 0 && status != UV_ECANCELED)
		report_end(c, status);
}

int net_conn_write(struct net_conn *c, const void *buf, size_t len)
{
	uv_buf_t b;
	struct wreq *w;
	size_t off = 0;
	int rv;

	if (c == NULL || (buf == NULL && len > 0))
		return -EINVAL;
	if (c->closing || c->shut || c->connecting)
		return -EPIPE;
	if (len == 0)
		return 0;
	if (len > c->limit || c->queued > c->limit - len)
		return -ENOBUFS;
	if (c->batch != NULL) {
		uv_os_fd_t fd;

		if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0)
			cork_hold(c->batch, &c->cork, fd);
	}
	if (c->queued == 0) {
		b = uv_buf_init((char *)buf, (unsigned)len);
		rv = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (rv >= 0)
			off = (size_t)rv;
		else if (rv != UV_EAGAIN)
			return rv;
		if (off == len)
			return 0;
	}
	w = mem_alloc(sizeof(*w) + (len - off));
	if (w == NULL) {
		/* Some bytes may be out already: the stream is broken. */
		if (off > 0) {
			report_end(c, -ENOMEM);
			return 0;
		}
		return -ENOMEM;
	}
	w->conn = c;
	w->len = len - off;
	w->req.data = w;
	memcpy(w->bytes, (const char *)buf + off, w->len);
	b = uv_buf_init(w->bytes, (unsigned)w->len);
	rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
	if (rv < 0) {
		mem_free(w);
		return rv;
	}
	c->queued += w->len;
	return 0;
}

size_t net_conn_queued(const struct net_conn *c)
{
	return c->queued;
}

void net_conn_set_write_limit(struct net_conn *c, size_t limit)
{
	c->limit = limit ? limit : NET_WRITE_LIMIT_DEFAULT;
}

void net_conn_set_batch(struct net_conn *c, struct cork_batch *b)
{
	if (b == NULL)
		cork_drop(&c->cork);
	c->batch = b;
}

static void on_uv_shutdown(uv_shutdown_t *req, int status)
{
	struct net_conn *c = req->data;

	if (c->on_shutdown != NULL)
		c->on_shutdown(c, status, c->data);
}

int net_conn_shutdown(struct net_conn *c, net_shutdown_cb cb)
{
	int rv;

	if (c == NULL)
		return -EINVAL;
	if (c->closing || c->shut || c->connecting)
		return -EPIPE;
	c->sreq.data = c;
	rv = uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_uv_shutdown);
	if (rv < 0)
		return rv;
	c->shut = true;
	c->on_shutdown = cb;
	return 0;
}

int net_conn_close(struct net_conn *c, net_close_cb on_closed)
{
	if (c == NULL)
		return -EINVAL;
	if (c->closing)
		return -EALREADY;
	c->user_closed = true;
	c->on_closed = on_closed;
	conn_close_handles(c);
	return 0;
}

bool net_conn_is_closing(const struct net_conn *c)
{
	return c->closing;
}

int net_conn_peer(const struct net_conn *c, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	int n = sizeof(ss);

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &n) != 0)
		return -ENOTCONN;
	return net_addr_format((struct sockaddr *)&ss, buf, len);
}

uv_loop_t *net_conn_loop(const struct net_conn *c)
{
	return c->loop;
}

void net_conn_set_data(struct net_conn *c, void *data)
{
	c->data = data;
}

void *net_conn_data(const struct net_conn *c)
{
	return c->data;
}

/* ---- connector ---------------------------------------------------------- */

static void on_uv_connect(uv_connect_t *req, int status)
{
	struct net_conn *c = req->data;
	net_connect_cb cb = c->on_connect;
	void *data = c->data;

	c->connecting = false;
	if (c->has_timer)
		uv_timer_stop(&c->timer);
	if (status == 0 && !c->closing) {
		uv_tcp_nodelay(&c->tcp, 1);
		cb(c, 0, data);
		return;
	}
	if (c->timed_out)
		status = -ETIMEDOUT;
	else if (c->user_closed || status == 0)
		status = -ECANCELED;
	if (!c->closing)
		conn_close_handles(c); /* nobody else will: no on_closed */
	cb(NULL, status, data);
}

static void on_connect_timeout(uv_timer_t *t)
{
	struct net_conn *c = t->data;

	if (!c->connecting || c->closing)
		return;
	c->timed_out = true;
	conn_close_handles(c); /* on_uv_connect then sees UV_ECANCELED */
}

int net_connect(uv_loop_t *loop, const char *addr, net_connect_cb cb,
		void *data)
{
	return net_connect_timeout(loop, addr, NET_CONNECT_TIMEOUT_MS, cb, data,
				   NULL);
}

int net_connect_timeout(uv_loop_t *loop, const char *addr, unsigned timeout_ms,
			net_connect_cb cb, void *data, struct net_conn **connp)
{
	struct sockaddr_storage ss;
	struct net_conn *c;
	int rv;

	if (loop == NULL || cb == NULL)
		return -EINVAL;
	rv = net_addr_parse(addr, &ss);
	if (rv < 0)
		return rv;
	ignore_sigpipe();
	c = conn_new(loop);
	if (c == NULL)
		return -ENOMEM;
	c->on_connect = cb;
	c->data = data;
	c->creq.data = c;
	rv = uv_tcp_init_ex(loop, &c->tcp, ss.ss_family);
	if (rv < 0)
		goto err_free;
	c->handles = 1;
	rv = uv_timer_init(loop, &c->timer);
	if (rv < 0)
		goto err_close;
	c->has_timer = true;
	c->handles++;
	rv = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&ss,
			    on_uv_connect);
	if (rv < 0)
		goto err_close;
	c->connecting = true;
	if (timeout_ms > 0)
		uv_timer_start(&c->timer, on_connect_timeout, timeout_ms, 0);
	if (connp != NULL)
		*connp = c;
	return 0;

err_close:
	/* The handles are on the loop: they free c once closed, silently. */
	conn_close_handles(c);
	return rv;
err_free:
	mem_free(c);
	return rv;
}

/* ---- listener ----------------------------------------------------------- */

static void listener_handle_closed(uv_handle_t *h)
{
	struct net_listener *l = h->data;

	if (--l->handles > 0)
		return;
	if (l->on_closed != NULL)
		l->on_closed(l->data);
	mem_free(l);
}

static void reject_one(struct net_listener *l);

static void reject_closed(uv_handle_t *h)
{
	struct net_listener *l = h->data;

	l->rejecting = false;
	if (l->reject_pending && !l->closing) {
		l->reject_pending = false;
		reject_one(l);
	}
	listener_handle_closed(h);
}

/*
 * libuv has accepted a connection we have no memory for.  Until someone
 * calls uv_accept() it holds the fd and stops listening, so take it with
 * the listener's own spare handle and close it.  If the spare is still
 * closing, do it when the spare's close completes.
 */
static void reject_one(struct net_listener *l)
{
	if (l->rejecting) {
		l->reject_pending = true;
		return;
	}
	if (uv_tcp_init(l->loop, &l->reject) < 0)
		return; /* cannot happen: uv_tcp_init fails only on bad flags */
	l->reject.data = l;
	l->rejecting = true;
	l->handles++;
	uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&l->reject);
	uv_close((uv_handle_t *)&l->reject, reject_closed);
	log_warn("net", "connection_dropped", "port=%d err=%s", l->port,
		 log_q("out of memory"));
}

static void on_uv_connection(uv_stream_t *server, int status)
{
	struct net_listener *l = server->data;
	struct net_conn *c;

	if (status < 0) {
		log_warn("net", "accept_failed", "port=%d err=%s", l->port,
			 log_q(uv_strerror(status)));
		return;
	}
	c = conn_new(l->loop);
	if (c == NULL) {
		reject_one(l);
		return;
	}
	if (uv_tcp_init(l->loop, &c->tcp) < 0) {
		mem_free(c);
		reject_one(l);
		return;
	}
	c->handles = 1;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		conn_close_handles(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	l->on_conn(l, c, l->data);
}

/* socket + bind + listen, before anything touches the loop. */
static int bind_socket(const struct sockaddr_storage *ss, int *fdp)
{
	socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						  : sizeof(struct sockaddr_in);
	int one = 1;
	int fd;
	int rv;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto err_close;
	if (ss->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto err_close;
	if (bind(fd, (const struct sockaddr *)ss, len) < 0)
		goto err_close;
	if (listen(fd, LISTEN_BACKLOG) < 0)
		goto err_close;
	*fdp = fd;
	return 0;

err_close:
	rv = -errno;
	close(fd);
	return rv;
}

int net_listen(uv_loop_t *loop, const char *addr, net_accept_cb on_conn,
	       void *data, struct net_listener **out)
{
	struct sockaddr_storage ss;
	struct net_listener *l;
	int n = sizeof(ss);
	int fd = -1;
	int rv;

	if (loop == NULL || on_conn == NULL || out == NULL)
		return -EINVAL;
	rv = net_addr_parse(addr, &ss);
	if (rv < 0)
		return rv;
	ignore_sigpipe();
	l = mem_calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	rv = bind_socket(&ss, &fd);
	if (rv < 0)
		goto err_free;
	if (getsockname(fd, (struct sockaddr *)&ss, (socklen_t *)&n) < 0) {
		rv = -errno;
		goto err_close_fd;
	}
	l->port = ntohs(ss.ss_family == AF_INET6
			    ? ((struct sockaddr_in6 *)&ss)->sin6_port
			    : ((struct sockaddr_in *)&ss)->sin_port);
	l->loop = loop;
	l->on_conn = on_conn;
	l->data = data;
	l->tcp.data = l;
	rv = uv_tcp_init(loop, &l->tcp);
	if (rv < 0)
		goto err_close_fd;
	l->handles = 1;
	rv = uv_tcp_open(&l->tcp, fd);
	if (rv < 0) {
		close(fd);
		goto err_close_handle;
	}
	rv =
	    uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_uv_connection);
	if (rv < 0)
		goto err_close_handle;
	*out = l;
	return 0;

err_close_handle:
	/* Rare (the socket already listens): freed when the loop next runs. */
	uv_close((uv_handle_t *)&l->tcp, listener_handle_closed);
	return rv;
err_close_fd:
	close(fd);
err_free:
	mem_free(l);
	return rv;
}

int net_listener_port(const struct net_listener *l)
{
	return l->port;
}

int net_listener_close(struct net_listener *l, void (*on_closed)(void *data))
{
	if (l == NULL)
		return -EINVAL;
	if (l->closing)
		return -EALREADY;
	l->closing = true;
	l->on_closed = on_closed;
	uv_close((uv_handle_t *)&l->tcp, listener_handle_closed);
	return 0;
}
