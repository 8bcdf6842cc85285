/*
 * test_common_net.c - libuv TCP helpers on real loopback sockets: address
 * parsing, echo through a listener and a connector, refused and timed-out
 * connects, the bounded write queue, and clean close (uv_loop_close() == 0).
 *
 * No sleeps: each test drives the loop until its condition holds, with a uv
 * timer as a safety limit.
 */
#include "common/common.h"

#include "tests/lib/suite.h"
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- loop driving ------------------------------------------------------- */

static void on_safety(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Runs loop until *flag or ms pass; returns *flag. */
static bool run_until(uv_loop_t *loop, const bool *flag, unsigned ms)
{
	uv_timer_t t;
	bool expired = false;

	uv_timer_init(loop, &t);
	t.data = &expired;
	uv_timer_start(&t, on_safety, ms, 0);
	while (!*flag && !expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return *flag;
}

/* Runs the loop dry and closes it: 0 means every handle was closed. */
static int finish_loop(uv_loop_t *loop)
{
	for (int i = 0; i < 1000 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
		;
	return uv_loop_close(loop);
}

/* ---- an echo server and a client --------------------------------------- */

struct world {
	uv_loop_t loop;
	struct net_listener *l;
	struct net_conn *srv_conn; /* last accepted */
	struct net_conn *cli;
	int accepted;
	int connect_status;
	bool connected;
	bool connect_done;
	bool echo; /* server echoes */
	char got[4096];
	size_t got_len;
	bool cli_ended;
	int closed;
	bool listener_closed;
};

static void srv_read(struct net_conn *c, const char *buf, ssize_t n, void *data)
{
	struct world *w = data;

	if (n < 0) {
		net_conn_close(c, NULL);
		if (w->srv_conn == c)
			w->srv_conn = NULL;
		return;
	}
	if (w->echo)
		ck_assert_int_eq(net_conn_write(c, buf, (size_t)n), 0);
}

static void on_accept(struct net_listener *l, struct net_conn *c, void *data)
{
	struct world *w = data;

	w->accepted++;
	w->srv_conn = c;
	ck_assert_int_eq(net_conn_read_start(c, srv_read, w), 0);
}

static void cli_read(struct net_conn *c, const char *buf, ssize_t n, void *data)
{
	struct world *w = data;

	if (n < 0) {
		w->cli_ended = true;
		return;
	}
	ck_assert_uint_le(w->got_len + (size_t)n, sizeof(w->got));
	memcpy(w->got + w->got_len, buf, (size_t)n);
	w->got_len += (size_t)n;
}

static void on_connected(struct net_conn *c, int status, void *data)
{
	struct world *w = data;

	w->connect_done = true;
	w->connect_status = status;
	w->cli = c;
	w->connected = status == 0;
	if (status == 0)
		ck_assert_int_eq(net_conn_read_start(c, cli_read, w), 0);
	else
		ck_assert_ptr_null(c);
}

static void count_closed(struct net_conn *c, void *data)
{
	((struct world *)data)->closed++;
}

static void on_listener_closed(void *data)
{
	((struct world *)data)->listener_closed = true;
}

static void world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	ck_assert_int_eq(uv_loop_init(&w->loop), 0);
	w->echo = true;
}

static char *listen_addr(struct world *w, char *buf, size_t len)
{
	snprintf(buf, len, "127.0.0.1:%d", net_listener_port(w->l));
	return buf;
}

/* Listens on a free loopback port and connects a client to it. */
static void listen_and_connect(struct world *w)
{
	char addr[64];

	ck_assert_int_eq(
	    net_listen(&w->loop, "127.0.0.1:0", on_accept, w, &w->l), 0);
	ck_assert_int_gt(net_listener_port(w->l), 0);
	ck_assert_int_eq(net_connect(&w->loop,
				     listen_addr(w, addr, sizeof(addr)),
				     on_connected, w),
			 0);
	ck_assert(run_until(&w->loop, &w->connect_done, 5000));
	ck_assert_int_eq(w->connect_status, 0);
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(addr_parse_accepts_literals_and_rejects_garbage)
{
	struct sockaddr_storage ss;
	char buf[NET_ADDR_STRLEN];
	static const char *const bad[] = {
	    "",		 "127.0.0.1",	  "127.0.0.1:",	    ":80",
	    "1.2.3.4:x", "1.2.3.4:65536", "::1:80",	    "[::1]80",
	    "[::1]:",	 "host:80",	  "1.2.3.4:123456", "[zz]:1",
	    "1.2.3:80",	 "1.2.3.4:-1",	  "1.2.3.4:+1",
	};

	ck_assert_int_eq(net_addr_parse("127.0.0.1:7400", &ss), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_int_eq(
	    net_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "127.0.0.1:7400");
	ck_assert_int_eq(net_addr_parse("[::1]:0", &ss), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_int_eq(
	    net_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "[::1]:0");
	ck_assert_int_eq(net_addr_parse("localhost:65535", &ss), 0);
	ck_assert_int_eq(net_addr_format((struct sockaddr *)&ss, buf, 5),
			 -ENOSPC);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&ss, 0x5a, sizeof(ss));
		ck_assert_msg(net_addr_parse(bad[i], &ss) == -EINVAL, "%s",
			      bad[i]);
		ck_assert_int_eq(((unsigned char *)&ss)[0], 0x5a);
	}
	ck_assert_int_eq(net_addr_parse(NULL, &ss), -EINVAL);
	ck_assert_str_eq(net_strerror(-ENOBUFS), "outgoing queue full");
}
END_TEST

START_TEST(echo_through_listener_and_connector)
{
	struct world w;
	char addr[64];

	world_init(&w);
	listen_and_connect(&w);
	ck_assert_int_eq(net_conn_write(w.cli, "hello ", 6), 0);
	ck_assert_int_eq(net_conn_write(w.cli, "world", 5), 0);
	for (int i = 0; i < 200 && w.got_len < 11; i++)
		uv_run(&w.loop, UV_RUN_ONCE);
	ck_assert_uint_eq(w.got_len, 11);
	ck_assert_int_eq(memcmp(w.got, "hello world", 11), 0);
	ck_assert_int_eq(net_conn_peer(w.cli, addr, sizeof(addr)), 0);
	ck_assert_int_eq(strncmp(addr, "127.0.0.1:", 10), 0);

	/* The client leaves; the server sees EOF and closes its end. */
	ck_assert_int_eq(net_conn_close(w.cli, count_closed), 0);
	ck_assert_int_eq(net_conn_close(w.cli, count_closed), -EALREADY);
	net_listener_close(w.l, on_listener_closed);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
	ck_assert_int_eq(w.closed, 1);
	ck_assert(w.listener_closed);
	ck_assert_ptr_null(w.srv_conn);
	ck_assert_int_eq(w.accepted, 1);
}
END_TEST

/* Writes on a connection with a batch are held to the end of the loop
 * turn (common/cork.h), then arrive; closing drops the connection from
 * the batch at once. */
START_TEST(batched_writes_leave_when_the_turn_ends)
{
	struct world w;
	struct cork_batch b;

	world_init(&w);
	cork_batch_init(&w.loop, &b);
	listen_and_connect(&w);
	net_conn_set_batch(w.cli, &b);
	ck_assert_int_eq(net_conn_write(w.cli, "ping ", 5), 0);
	ck_assert_int_eq(net_conn_write(w.cli, "pong", 4), 0);
	ck_assert_uint_eq(cork_batch_held(&b), 1);
	ck_assert_uint_eq(b.turns, 0);
	for (int i = 0; i < 200 && w.got_len < 9; i++)
		uv_run(&w.loop, UV_RUN_ONCE);
	ck_assert_uint_eq(w.got_len, 9);
	ck_assert_int_eq(memcmp(w.got, "ping pong", 9), 0);
	ck_assert_uint_eq(cork_batch_held(&b), 0);
	ck_assert_uint_ge(b.turns, 1);

	ck_assert_int_eq(net_conn_write(w.cli, "bye", 3), 0);
	ck_assert_uint_eq(cork_batch_held(&b), 1);
	ck_assert_int_eq(net_conn_close(w.cli, count_closed), 0);
	ck_assert_uint_eq(cork_batch_held(&b), 0);
	cork_batch_close(&b, NULL);
	net_listener_close(w.l, on_listener_closed);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
	ck_assert_int_eq(w.closed, 1);
}
END_TEST

START_TEST(echo_over_ipv6_loopback)
{
	struct world w;
	char addr[64];
	int rv;

	world_init(&w);
	rv = net_listen(&w.loop, "[::1]:0", on_accept, &w, &w.l);
	if (rv == -EADDRNOTAVAIL || rv == -EAFNOSUPPORT) {
		/* No IPv6 loopback here: nothing to test, nothing left. */
		ck_assert_int_eq(uv_loop_close(&w.loop), 0);
		return;
	}
	ck_assert_int_eq(rv, 0);
	snprintf(addr, sizeof(addr), "[::1]:%d", net_listener_port(w.l));
	ck_assert_int_eq(net_connect(&w.loop, addr, on_connected, &w), 0);
	ck_assert(run_until(&w.loop, &w.connect_done, 5000));
	ck_assert_int_eq(w.connect_status, 0);
	ck_assert_int_eq(net_conn_write(w.cli, "six", 3), 0);
	for (int i = 0; i < 200 && w.got_len < 3; i++)
		uv_run(&w.loop, UV_RUN_ONCE);
	ck_assert_int_eq(memcmp(w.got, "six", 3), 0);
	net_conn_close(w.cli, NULL);
	net_listener_close(w.l, NULL);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
}
END_TEST

START_TEST(bad_or_busy_address_leaves_nothing_on_the_loop)
{
	struct world w;
	struct net_listener *other = NULL;
	char addr[64];

	world_init(&w);
	ck_assert_int_eq(net_listen(&w.loop, "nonsense", on_accept, &w, &w.l),
			 -EINVAL);
	ck_assert_int_eq(net_connect(&w.loop, "1.2.3.4", on_connected, &w),
			 -EINVAL);
	ck_assert_int_eq(
	    net_listen(&w.loop, "127.0.0.1:0", on_accept, &w, &w.l), 0);
	ck_assert_int_eq(net_listen(&w.loop,
				    listen_addr(&w, addr, sizeof(addr)),
				    on_accept, &w, &other),
			 -EADDRINUSE);
	ck_assert_ptr_null(other);
	ck_assert_int_eq(net_listener_close(w.l, NULL), 0);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
	ck_assert(!w.connect_done);
}
END_TEST

START_TEST(failed_allocation_leaves_nothing_on_the_loop)
{
	struct world w;

	world_init(&w);
	mem_fail_after(1);
	ck_assert_int_eq(
	    net_listen(&w.loop, "127.0.0.1:0", on_accept, &w, &w.l), -ENOMEM);
	ck_assert_int_eq(net_connect(&w.loop, "127.0.0.1:1", on_connected, &w),
			 -ENOMEM);
	mem_fail_reset();
	ck_assert_int_eq(uv_loop_close(&w.loop), 0);
	ck_assert(!w.connect_done);
}
END_TEST

struct dropped {
	struct world *w;
	struct net_conn *c[4];
	int nconn;
	int ended;
};

static void count_end(struct net_conn *c, const char *buf, ssize_t n,
		      void *data)
{
	struct dropped *d = data;

	if (n < 0)
		d->ended++;
}

static void on_connected_keep(struct net_conn *c, int status, void *data)
{
	struct dropped *d = data;

	ck_assert_int_eq(status, 0);
	d->c[d->nconn++] = c;
	ck_assert_int_eq(net_conn_read_start(c, count_end, d), 0);
}

/*
 * A connection we have no memory for is dropped, also several at once
 * (the listener's spare handle is busy closing the first); listening goes
 * on afterwards.
 */
START_TEST(accept_without_memory_drops_and_keeps_listening)
{
	struct world w;
	char addr[64];

	world_init(&w);
	log_set_level(LOG_OFF);
	ck_assert_int_eq(
	    net_listen(&w.loop, "127.0.0.1:0", on_accept, &w, &w.l), 0);
	listen_addr(&w, addr, sizeof(addr));
	for (int n = 1; n <= 3; n++) {
		struct dropped d = {.w = &w};

		for (int i = 0; i < n; i++)
			ck_assert_int_eq(
			    net_connect(&w.loop, addr, on_connected_keep, &d),
			    0);
		mem_fail_after(1); /* the server side cannot allocate */
		for (int i = 0; i < 500 && d.ended < n && w.accepted == 0; i++)
			uv_run(&w.loop, UV_RUN_ONCE);
		mem_fail_reset();
		ck_assert_int_eq(d.ended, n);
		ck_assert_int_eq(w.accepted, 0);
		for (int i = 0; i < n; i++)
			net_conn_close(d.c[i], NULL);
	}
	ck_assert_int_eq(net_connect(&w.loop, addr, on_connected, &w), 0);
	ck_assert(run_until(&w.loop, &w.connect_done, 5000));
	for (int i = 0; i < 200 && w.accepted == 0; i++)
		uv_run(&w.loop, UV_RUN_ONCE);
	ck_assert_int_eq(w.accepted, 1);
	net_conn_close(w.cli, NULL);
	net_listener_close(w.l, NULL);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
}
END_TEST

START_TEST(connect_to_closed_port_is_refused)
{
	struct world w;
	char addr[64];

	world_init(&w);
	ck_assert_int_eq(
	    net_listen(&w.loop, "127.0.0.1:0", on_accept, &w, &w.l), 0);
	listen_addr(&w, addr, sizeof(addr));
	net_listener_close(w.l, on_listener_closed);
	ck_assert(run_until(&w.loop, &w.listener_closed, 5000));
	ck_assert_int_eq(net_connect(&w.loop, addr, on_connected, &w), 0);
	ck_assert(run_until(&w.loop, &w.connect_done, 5000));
	ck_assert_int_eq(w.connect_status, -ECONNREFUSED);
	ck_assert_ptr_null(w.cli);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
}
END_TEST

/*
 * A listening socket with a full accept queue drops SYNs, so a connect to
 * it hangs until our timer fires.
 */
START_TEST(connect_times_out)
{
	struct world w;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	int lfd, fillers[8];
	char addr[64];

	world_init(&w);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(lfd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(lfd, 0), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sin, &slen), 0);
	for (int i = 0; i < 8; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
	ck_assert_int_eq(
	    net_connect_timeout(&w.loop, addr, 100, on_connected, &w, NULL), 0);
	ck_assert(run_until(&w.loop, &w.connect_done, 5000));
	ck_assert_int_eq(w.connect_status, -ETIMEDOUT);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
	for (int i = 0; i < 8; i++)
		close(fillers[i]);
	close(lfd);
}
END_TEST

START_TEST(close_while_connecting_cancels)
{
	struct world w;
	struct net_conn *c = NULL;
	char addr[64];

	world_init(&w);
	ck_assert_int_eq(
	    net_listen(&w.loop, "127.0.0.1:0", on_accept, &w, &w.l), 0);
	ck_assert_int_eq(
	    net_connect_timeout(&w.loop, listen_addr(&w, addr, sizeof(addr)),
				1000, on_connected, &w, &c),
	    0);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(net_conn_write(c, "x", 1), -EPIPE);
	ck_assert_int_eq(net_conn_close(c, count_closed), 0);
	net_listener_close(w.l, NULL);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
	ck_assert(w.connect_done);
	ck_assert_int_eq(w.connect_status, -ECANCELED);
	ck_assert_int_eq(w.closed, 1);
}
END_TEST

START_TEST(write_queue_is_bounded)
{
	struct world w;
	char chunk[4096];
	char big[8192];
	int rv = 0;
	int i;

	world_init(&w);
	w.echo = false;
	memset(chunk, 'a', sizeof(chunk));
	memset(big, 'b', sizeof(big));
	listen_and_connect(&w);
	for (i = 0; i < 200 && w.accepted == 0; i++)
		uv_run(&w.loop, UV_RUN_ONCE);
	ck_assert_ptr_nonnull(w.srv_conn);
	/* The server stops reading, so the kernel buffers fill up. */
	net_conn_read_stop(w.srv_conn);
	net_conn_set_write_limit(w.cli, 4 * sizeof(chunk));

	/* One write over the limit is refused whole. */
	ck_assert_int_eq(net_conn_write(w.cli, big, 4 * sizeof(chunk) + 1),
			 -ENOBUFS);
	ck_assert_uint_eq(net_conn_queued(w.cli), 0);

	for (i = 0; i < 100000; i++) {
		rv = net_conn_write(w.cli, chunk, sizeof(chunk));
		if (rv != 0)
			break;
	}
	ck_assert_int_eq(rv, -ENOBUFS);
	ck_assert_uint_le(net_conn_queued(w.cli), 4 * sizeof(chunk));
	ck_assert_uint_gt(net_conn_queued(w.cli), 3 * sizeof(chunk));

	/* Closing with writes still queued drops them and leaks nothing. */
	ck_assert_int_eq(net_conn_close(w.cli, count_closed), 0);
	ck_assert_int_eq(net_conn_close(w.srv_conn, count_closed), 0);
	net_listener_close(w.l, NULL);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
	ck_assert_int_eq(w.closed, 2);
}
END_TEST

static void on_shut(struct net_conn *c, int status, void *data)
{
	*(int *)net_conn_data(c) = status == 0 ? 1 : -1;
}

static void half_read(struct net_conn *c, const char *buf, ssize_t n,
		      void *data)
{
	struct world *w = data;

	if (n == UV_EOF) {
		w->cli_ended = true;
		net_conn_close(c, NULL);
		w->srv_conn = NULL;
	}
}

static void on_accept_half(struct net_listener *l, struct net_conn *c,
			   void *data)
{
	struct world *w = data;

	w->accepted++;
	w->srv_conn = c;
	net_conn_read_start(c, half_read, w);
}

START_TEST(shutdown_flushes_then_sends_eof)
{
	struct world w;
	char addr[64];
	int shut = 0;

	world_init(&w);
	ck_assert_int_eq(
	    net_listen(&w.loop, "127.0.0.1:0", on_accept_half, &w, &w.l), 0);
	ck_assert_int_eq(net_connect(&w.loop,
				     listen_addr(&w, addr, sizeof(addr)),
				     on_connected, &w),
			 0);
	ck_assert(run_until(&w.loop, &w.connect_done, 5000));
	net_conn_read_stop(w.cli);
	ck_assert_int_eq(net_conn_write(w.cli, "bye", 3), 0);
	ck_assert_int_eq(net_conn_shutdown(w.cli, on_shut), 0);
	net_conn_set_data(w.cli, &shut);
	ck_assert_int_eq(net_conn_write(w.cli, "more", 4), -EPIPE);
	ck_assert_int_eq(net_conn_shutdown(w.cli, on_shut), -EPIPE);
	ck_assert(run_until(&w.loop, &w.cli_ended, 5000));
	ck_assert_int_eq(shut, 1);
	net_conn_close(w.cli, NULL);
	net_listener_close(w.l, NULL);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
}
END_TEST

START_TEST(closing_everything_leaves_no_handles)
{
	struct world w;
	struct net_conn *clis[4];
	char addr[64];

	world_init(&w);
	ck_assert_int_eq(
	    net_listen(&w.loop, "127.0.0.1:0", on_accept, &w, &w.l), 0);
	listen_addr(&w, addr, sizeof(addr));
	for (int i = 0; i < 4; i++) {
		w.connect_done = false;
		ck_assert_int_eq(net_connect(&w.loop, addr, on_connected, &w),
				 0);
		ck_assert(run_until(&w.loop, &w.connect_done, 5000));
		ck_assert_int_eq(w.connect_status, 0);
		clis[i] = w.cli;
	}
	for (int i = 0; i < 200 && w.accepted < 4; i++)
		uv_run(&w.loop, UV_RUN_ONCE);
	ck_assert_int_eq(w.accepted, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(net_conn_close(clis[i], count_closed), 0);
	ck_assert_int_eq(net_listener_close(w.l, on_listener_closed), 0);
	ck_assert_int_eq(net_listener_close(w.l, NULL), -EALREADY);
	ck_assert_int_eq(finish_loop(&w.loop), 0);
	ck_assert_int_eq(w.closed, 4);
	ck_assert(w.listener_closed);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    addr_parse_accepts_literals_and_rejects_garbage,
	    echo_through_listener_and_connector,
	    batched_writes_leave_when_the_turn_ends,
	    echo_over_ipv6_loopback,
	    bad_or_busy_address_leaves_nothing_on_the_loop,
	    failed_allocation_leaves_nothing_on_the_loop,
	    accept_without_memory_drops_and_keeps_listening,
	    connect_to_closed_port_is_refused,
	    connect_times_out,
	    close_while_connecting_cancels,
	    write_queue_is_bounded,
	    shutdown_flushes_then_sends_eof,
	    closing_everything_leaves_no_handles,
	    NULL,
	};

	return suite_main("common_net", 10, tests);
}
