/*
 * test_raft_transport.c - the Raft TCP transport on real loopback sockets:
 * three nodes exchange every message type, a peer that is down is reached
 * once it comes up (backoff, capped), a full queue drops and counts, bad
 * input closes only its own connection, and every stop leaves
 * uv_loop_close() == 0.
 *
 * No sleeps: each test drives the loop until its condition holds, with a uv
 * timer as a safety limit.
 */
#include "common/common.h"
#include "raft/raft.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loop driving --------------------------------------------------------- */

static void on_safety(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Runs loop until cond(arg) holds or ms pass; returns cond(arg). */
static bool run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg,
		      unsigned ms)
{
	uv_timer_t t;
	bool expired = false;

	uv_timer_init(loop, &t);
	t.data = &expired;
	uv_timer_start(&t, on_safety, ms, 0);
	while (!cond(arg) && !expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return cond(arg);
}

/* Runs the loop dry and closes it: 0 means every handle was closed. */
static int finish_loop(uv_loop_t *loop)
{
	for (int i = 0; i < 1000 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
		;
	return uv_loop_close(loop);
}

/* ---- test messages -------------------------------------------------------- */

static uint8_t big[256 << 10]; /* snapshot data: many reads on the way */
static const char *entry_text[3] = {"", "first entry", "second entry!"};

/* A message fully determined by (from, to, type, k); k goes in index. */
static struct raft_msg make_msg(uint64_t from, uint64_t to, int type,
				uint64_t k, struct raft_entry ents[3])
{
	struct raft_msg m;

	memset(&m, 0, sizeof(m));
	m.type = (uint8_t)type;
	m.from = from;
	m.to = to;
	m.term = from * 100 + to;
	m.index = k;
	m.log_term = k * 3 + (uint64_t)type;
	m.commit = k + 1;
	m.reject = (k + (uint64_t)type) % 2;
	m.transfer = type == RAFT_MSG_VOTE;
	m.hint = type == RAFT_MSG_APPEND_RESP ? k + 7 : 0;
	if (type == RAFT_MSG_APPEND) {
		for (int i = 0; i < 3; i++) {
			ents[i].term = m.term;
			ents[i].index = k + (uint64_t)i + 1;
			ents[i].type = RAFT_ENTRY_NORMAL;
			ents[i].len = strlen(entry_text[i]);
			ents[i].data = ents[i].len ? (void *)entry_text[i] : NULL;
		}
		m.entries = ents;
		m.n_entries = 3;
	}
	if (type == RAFT_MSG_SNAPSHOT) {
		m.snapshot.index = k + 50;
		m.snapshot.term = m.term;
		m.snapshot.conf.n = 3;
		for (unsigned i = 0; i < 3; i++)
			m.snapshot.conf.members[i].id = i + 1;
		m.snapshot.len = sizeof(big);
		m.snapshot.data = big;
	}
	return m;
}

/* True if m has exactly the bytes make_msg() gives for its key. */
static bool msg_is_expected(const struct raft_msg *m)
{
	struct raft_entry ents[3];
	struct raft_msg want = make_msg(m->from, m->to, m->type, m->index, ents);
	struct frame_buf a, b;
	bool same;

	frame_buf_init(&a);
	frame_buf_init(&b);
	ck_assert_int_eq(raft_msg_encode(m, &a), 0);
	ck_assert_int_eq(raft_msg_encode(&want, &b), 0);
	same = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
	frame_buf_fini(&a);
	frame_buf_fini(&b);
	return same;
}

/* ---- nodes ---------------------------------------------------------------- */

#define MAX_RX 256

struct node {
	uv_loop_t *loop;
	struct raft_transport *t;
	uint64_t id;
	int port;
	bool running;
	int received;
	int unexpected;
	int by_type[RAFT_MSG_TIMEOUT_NOW + 1];
	uint64_t keys[MAX_RX]; /* index of each message, in arrival order */
	bool stop_on_message;
};

static void on_stopped(void *data)
{
	struct node *n = data;

	n->running = false;
	n->t = NULL;
}

static void on_msg(const struct raft_msg *m, void *data)
{
	struct node *n = data;

	ck_assert(n->running);
	if (m->to != n->id || !msg_is_expected(m))
		n->unexpected++;
	if (n->received < MAX_RX)
		n->keys[n->received] = m->index;
	n->received++;
	if (m->type <= RAFT_MSG_TIMEOUT_NOW)
		n->by_type[m->type]++;
	if (n->stop_on_message && n->t != NULL && n->received == 1)
		ck_assert_int_eq(raft_transport_stop(n->t, on_stopped), 0);
}

static void node_start(uv_loop_t *loop, struct node *n, uint64_t id, int port)
{
	char addr[64];

	memset(n, 0, sizeof(*n));
	n->loop = loop;
	n->id = id;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	ck_assert_int_eq(raft_transport_start(loop, id, addr, on_msg, n, &n->t),
			 0);
	n->port = raft_transport_port(n->t);
	ck_assert_int_gt(n->port, 0);
	n->running = true;
}

static void add_peer(struct node *n, uint64_t id, int port)
{
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	ck_assert_int_eq(raft_transport_add_peer(n->t, id, addr), 0);
}

static bool is_stopped(void *arg)
{
	return !((struct node *)arg)->running;
}

static void node_stop(struct node *n)
{
	if (n->running && n->t != NULL)
		ck_assert_int_eq(raft_transport_stop(n->t, on_stopped), 0);
	ck_assert(run_until(n->loop, is_stopped, n, 5000));
}

static void send_msg(struct node *n, uint64_t to, int type, uint64_t k)
{
	struct raft_entry ents[3];
	struct raft_msg m = make_msg(n->id, to, type, k, ents);

	ck_assert_int_eq(raft_transport_send(n->t, &m), 0);
}

static struct raft_transport_stats stats(struct node *n, uint64_t id)
{
	struct raft_transport_stats s;

	ck_assert_int_eq(raft_transport_stats(n->t, id, &s), 0);
	return s;
}

struct want_rx {
	struct node *n;
	int count;
};

static bool has_received(void *arg)
{
	struct want_rx *w = arg;

	return w->n->received >= w->count;
}

static void wait_received(struct node *n, int count)
{
	struct want_rx w = {n, count};

	ck_assert_msg(run_until(n->loop, has_received, &w, 5000),
		      "node %llu received %d of %d", (unsigned long long)n->id,
		      n->received, count);
}

/* ---- tests ---------------------------------------------------------------- */

static bool all_received(void *arg)
{
	struct node *nodes = arg;

	for (int i = 0; i < 3; i++)
		if (nodes[i].received < 2 * RAFT_MSG_TIMEOUT_NOW)
			return false;
	return true;
}

START_TEST(three_nodes_exchange_every_message_type)
{
	uv_loop_t loop;
	struct node nodes[3];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31 + 7);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	for (int i = 0; i < 3; i++)
		node_start(&loop, &nodes[i], (uint64_t)i + 1, 0);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				add_peer(&nodes[i], nodes[j].id, nodes[j].port);
	/* sent at once: these wait in the queues until the connections are up */
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			for (int type = RAFT_MSG_PREVOTE;
			     i != j && type <= RAFT_MSG_TIMEOUT_NOW; type++)
				send_msg(&nodes[i], nodes[j].id, type, 10);
	ck_assert(run_until(&loop, all_received, nodes, 10000));
	for (int i = 0; i < 3; i++) {
		struct node *n = &nodes[i];

		ck_assert_int_eq(n->received, 2 * RAFT_MSG_TIMEOUT_NOW);
		ck_assert_int_eq(n->unexpected, 0);
		for (int type = RAFT_MSG_PREVOTE; type <= RAFT_MSG_TIMEOUT_NOW;
		     type++)
			ck_assert_int_eq(n->by_type[type], 2);
		for (int j = 0; j < 3; j++) {
			struct raft_transport_stats s;

			if (i == j)
				continue;
			s = stats(n, nodes[j].id);
			ck_assert_uint_eq(s.sent, RAFT_MSG_TIMEOUT_NOW);
			ck_assert_uint_eq(s.received, RAFT_MSG_TIMEOUT_NOW);
			ck_assert_uint_eq(s.dropped, 0);
			ck_assert_uint_eq(s.connects, 1);
			ck_assert(raft_transport_is_connected(n->t,
							      nodes[j].id));
		}
		ck_assert_uint_eq(stats(n, 0).received,
				  2 * RAFT_MSG_TIMEOUT_NOW);
		ck_assert_uint_eq(stats(n, 0).bad_conns, 0);
	}
	/* connected now: a second round goes straight out */
	send_msg(&nodes[0], 2, RAFT_MSG_APPEND, 11);
	send_msg(&nodes[2], 2, RAFT_MSG_HEARTBEAT, 12);
	wait_received(&nodes[1], 2 * RAFT_MSG_TIMEOUT_NOW + 2);
	ck_assert_int_eq(nodes[1].unexpected, 0);
	for (int i = 0; i < 3; i++)
		node_stop(&nodes[i]);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

struct want_reconnects {
	struct node *n;
	uint64_t peer;
	uint64_t count;
};

static bool has_reconnects(void *arg)
{
	struct want_reconnects *w = arg;

	return stats(w->n, w->peer).reconnects >= w->count;
}

START_TEST(down_peer_is_reached_when_it_comes_up)
{
	uv_loop_t loop;
	struct node a, b;
	struct want_reconnects w = {&a, 2, 10};
	uint64_t t0, elapsed;
	int port;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	/* learn a free port, then close it: b is down */
	node_start(&loop, &b, 2, 0);
	port = b.port;
	node_stop(&b);
	node_start(&loop, &a, 1, 0);
	ck_assert_int_eq(raft_transport_set_backoff(a.t, 5, 10), 0);
	add_peer(&a, 2, port);
	send_msg(&a, 2, RAFT_MSG_VOTE, 1);
	send_msg(&a, 2, RAFT_MSG_APPEND, 2);
	/*
	 * Ten refused attempts take about 5 + 9 * 10 ms with the backoff
	 * capped at 10 ms; doubling without a cap would need over 5 s.
	 */
	uv_update_time(&loop);
	t0 = uv_now(&loop);
	ck_assert(run_until(&loop, has_reconnects, &w, 4000));
	elapsed = uv_now(&loop) - t0;
	ck_assert_msg(elapsed < 2000, "10 reconnects took %llu ms",
		      (unsigned long long)elapsed);
	ck_assert(!raft_transport_is_connected(a.t, 2));
	ck_assert_uint_eq(stats(&a, 2).backoff_ms, 10);
	ck_assert_uint_eq(stats(&a, 2).connects, 0);
	ck_assert_uint_eq(stats(&a, 2).sent, 0);
	/* b comes up on the same port and gets what was queued, in order */
	node_start(&loop, &b, 2, port);
	wait_received(&b, 2);
	ck_assert_int_eq(b.unexpected, 0);
	ck_assert_uint_eq(b.keys[0], 1);
	ck_assert_uint_eq(b.keys[1], 2);
	ck_assert_uint_eq(stats(&a, 2).connects, 1);
	ck_assert_uint_eq(stats(&a, 2).sent, 2);
	ck_assert_uint_eq(stats(&a, 2).dropped, 0);
	/* b goes away and comes back: a reconnects and goes on */
	node_stop(&b);
	node_start(&loop, &b, 2, port);
	w.count = stats(&a, 2).reconnects + 1;
	ck_assert(run_until(&loop, has_reconnects, &w, 4000));
	/* the first send may hit the dead connection; keep sending */
	for (uint64_t k = 3; b.received == 0 && k < 200; k++) {
		struct want_rx rx = {&b, 1};

		send_msg(&a, 2, RAFT_MSG_HEARTBEAT, k);
		run_until(&loop, has_received, &rx, 50);
	}
	ck_assert_int_gt(b.received, 0);
	ck_assert_int_eq(b.unexpected, 0);
	ck_assert_uint_ge(stats(&a, 2).connects, 2);
	node_stop(&a);
	node_stop(&b);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

START_TEST(peer_that_refuses_hello_is_retried_ever_more_slowly)
{
	uv_loop_t loop;
	struct node a, b;
	struct want_reconnects w = {&a, 3, 5};

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	node_start(&loop, &a, 1, 0);
	node_start(&loop, &b, 2, 0);
	ck_assert_int_eq(raft_transport_set_backoff(a.t, 2, 64), 0);
	/* a thinks node 3 lives at b's address; b refuses the hello */
	add_peer(&a, 3, b.port);
	ck_assert(run_until(&loop, has_reconnects, &w, 5000));
	ck_assert_uint_ge(stats(&a, 3).connects, 3);
	ck_assert_uint_ge(stats(&b, 0).bad_conns, 3);
	/* 2, 4, 8, 16, 32, then 64: the cap, not reset by short connections */
	ck_assert_uint_eq(stats(&a, 3).backoff_ms, 64);
	ck_assert_uint_eq(stats(&a, 3).sent, 0);
	node_stop(&a);
	node_stop(&b);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

START_TEST(full_queue_drops_and_counts)
{
	uv_loop_t loop;
	struct node a, b, c;
	struct raft_transport_stats s;
	int port, port3;
	size_t frame_bytes;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	node_start(&loop, &b, 2, 0);
	node_start(&loop, &c, 3, 0);
	port = b.port;
	port3 = c.port; /* stays down */
	node_stop(&b);
	node_stop(&c);
	node_start(&loop, &a, 1, 0);
	ck_assert_int_eq(raft_transport_set_backoff(a.t, 5, 10), 0);
	/* four messages fit */
	ck_assert_int_eq(raft_transport_set_queue(a.t, 4, 0), 0);
	add_peer(&a, 2, port);
	for (uint64_t k = 1; k <= 10; k++)
		send_msg(&a, 2, RAFT_MSG_HEARTBEAT, k);
	s = stats(&a, 2);
	ck_assert_uint_eq(s.dropped, 6);
	ck_assert_uint_eq(s.sent, 0);
	ck_assert_uint_eq(stats(&a, 0).dropped, 6);
	/* a byte limit of three heartbeat frames: the fourth is dropped too */
	{
		struct raft_entry ents[3];
		struct raft_msg hb = make_msg(1, 3, RAFT_MSG_HEARTBEAT, 1, ents);

		frame_bytes = FRAME_HEADER_SIZE + raft_msg_encoded_size(&hb);
	}
	ck_assert_int_eq(raft_transport_set_queue(a.t, 100, 3 * frame_bytes),
			 0);
	add_peer(&a, 3, port3);
	for (uint64_t k = 1; k <= 4; k++)
		send_msg(&a, 3, RAFT_MSG_HEARTBEAT, k);
	ck_assert_uint_eq(stats(&a, 3).dropped, 1);
	ck_assert_uint_eq(stats(&a, 0).dropped, 7);
	/* b comes up: exactly the first four arrive, in order */
	node_start(&loop, &b, 2, port);
	wait_received(&b, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(b.keys[i], (uint64_t)i + 1);
	ck_assert_uint_eq(stats(&a, 2).sent, 4);
	ck_assert_uint_eq(stats(&a, 2).dropped, 6);
	/* removing a peer drops what waits for it and forgets it */
	ck_assert_int_eq(raft_transport_remove_peer(a.t, 3), 0);
	ck_assert_uint_eq(stats(&a, 0).dropped, 10);
	ck_assert_int_eq(raft_transport_stats(a.t, 3, &s), -RAFT_ENOTMEMBER);
	{
		struct raft_entry ents[3];
		struct raft_msg m = make_msg(1, 3, RAFT_MSG_VOTE, 1, ents);

		ck_assert_int_eq(raft_transport_send(a.t, &m),
				 -RAFT_ENOTMEMBER);
	}
	ck_assert_int_eq(raft_transport_remove_peer(a.t, 3), -RAFT_ENOTMEMBER);
	node_stop(&a);
	node_stop(&b);
	ck_assert_int_eq(finish_loop(&loop), 0);
	ck_assert_int_eq(b.received, 4);
}
END_TEST

/* ---- raw clients that misbehave ------------------------------------------- */

struct raw {
	struct net_conn *c;
	int status;
	bool connected;
	bool ended;
	bool closed;
};

static void raw_closed(struct net_conn *c, void *data)
{
	((struct raw *)data)->closed = true;
}

static void raw_read(struct net_conn *c, const char *buf, ssize_t n,
		     void *data)
{
	struct raw *r = data;

	if (n < 0) {
		r->ended = true;
		net_conn_close(c, raw_closed);
	}
}

static void raw_connect(struct net_conn *c, int status, void *data)
{
	struct raw *r = data;

	r->status = status;
	r->connected = true;
	r->c = c;
	if (status == 0)
		ck_assert_int_eq(net_conn_read_start(c, raw_read, r), 0);
}

static bool raw_is_connected(void *arg)
{
	return ((struct raw *)arg)->connected;
}

static bool raw_is_closed(void *arg)
{
	return ((struct raw *)arg)->closed;
}

static void raw_open(uv_loop_t *loop, struct raw *r, int port)
{
	char addr[64];

	memset(r, 0, sizeof(*r));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	ck_assert_int_eq(net_connect(loop, addr, raw_connect, r), 0);
	ck_assert(run_until(loop, raw_is_connected, r, 5000));
	ck_assert_int_eq(r->status, 0);
}

static void raw_frame(struct raw *r, uint8_t type, const void *p, size_t len)
{
	struct frame_buf b;

	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(type, p, len, &b), 0);
	ck_assert_int_eq(net_conn_write(r->c, b.data, b.len), 0);
	frame_buf_fini(&b);
}

static void raw_hello(struct raw *r, uint64_t from, uint64_t to)
{
	uint8_t h[17];

	h[0] = 1;
	for (int i = 0; i < 8; i++) {
		h[1 + i] = (uint8_t)(from >> (8 * i));
		h[9 + i] = (uint8_t)(to >> (8 * i));
	}
	raw_frame(r, RAFT_FRAME_HELLO, h, sizeof(h));
}

START_TEST(bad_input_closes_only_its_connection)
{
	uv_loop_t loop;
	struct node a, b;
	struct raw r[7];
	struct frame_buf enc;
	struct raft_entry ents[3];
	struct raft_msg m = make_msg(5, 2, RAFT_MSG_VOTE, 1, ents);
	const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	node_start(&loop, &a, 1, 0);
	node_start(&loop, &b, 2, 0);
	add_peer(&a, 2, b.port);
	send_msg(&a, 2, RAFT_MSG_HEARTBEAT, 1);
	wait_received(&b, 1);

	frame_buf_init(&enc);
	ck_assert_int_eq(raft_msg_encode(&m, &enc), 0);
	for (int i = 0; i < 7; i++)
		raw_open(&loop, &r[i], b.port);
	/* not a frame at all (length field far beyond the limit) */
	ck_assert_int_eq(net_conn_write(r[0].c, http, strlen(http)), 0);
	/* a message without a hello */
	raw_frame(&r[1], RAFT_FRAME_MSG, enc.data, enc.len);
	/* a hello for somebody else */
	raw_hello(&r[2], 5, 3);
	/* a hello, then a truncated message */
	raw_hello(&r[3], 5, 2);
	raw_frame(&r[3], RAFT_FRAME_MSG, enc.data, enc.len - 1);
	/* a hello, then a message that claims another sender */
	raw_hello(&r[4], 6, 2);
	raw_frame(&r[4], RAFT_FRAME_MSG, enc.data, enc.len);
	/* a hello, a good message, then an unknown frame type */
	raw_hello(&r[5], 5, 2);
	raw_frame(&r[5], RAFT_FRAME_MSG, enc.data, enc.len);
	raw_frame(&r[5], 0x7f, "x", 1);
	/* a second hello */
	raw_hello(&r[6], 5, 2);
	raw_hello(&r[6], 5, 2);
	for (int i = 0; i < 7; i++)
		ck_assert_msg(run_until(&loop, raw_is_closed, &r[i], 5000),
			      "raw client %d not closed", i);
	frame_buf_fini(&enc);
	/* each was closed by b, for a bad frame; the good message got in */
	ck_assert_uint_eq(stats(&b, 0).bad_conns, 7);
	ck_assert_int_eq(b.received, 2);
	ck_assert_int_eq(b.unexpected, 0);
	/* a's connection to b was never touched */
	send_msg(&a, 2, RAFT_MSG_APPEND, 2);
	wait_received(&b, 3);
	ck_assert_int_eq(b.unexpected, 0);
	ck_assert_uint_eq(stats(&a, 2).connects, 1);
	ck_assert_uint_eq(stats(&a, 2).reconnects, 0);
	node_stop(&a);
	node_stop(&b);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

START_TEST(new_hello_replaces_an_older_connection)
{
	uv_loop_t loop;
	struct node b;
	struct raw r1, r2;
	struct frame_buf enc;
	struct raft_entry ents[3];
	struct raft_msg m = make_msg(5, 2, RAFT_MSG_VOTE, 1, ents);

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	node_start(&loop, &b, 2, 0);
	frame_buf_init(&enc);
	ck_assert_int_eq(raft_msg_encode(&m, &enc), 0);
	raw_open(&loop, &r1, b.port);
	raw_hello(&r1, 5, 2);
	raw_frame(&r1, RAFT_FRAME_MSG, enc.data, enc.len);
	wait_received(&b, 1);
	raw_open(&loop, &r2, b.port);
	raw_hello(&r2, 5, 2);
	ck_assert(run_until(&loop, raw_is_closed, &r1, 5000));
	raw_frame(&r2, RAFT_FRAME_MSG, enc.data, enc.len);
	wait_received(&b, 2);
	ck_assert(!r2.ended);
	ck_assert_uint_eq(stats(&b, 0).bad_conns, 0);
	frame_buf_fini(&enc);
	net_conn_close(r2.c, raw_closed);
	ck_assert(run_until(&loop, raw_is_closed, &r2, 5000));
	node_stop(&b);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

START_TEST(idle_connections_cannot_lock_peers_out)
{
	uv_loop_t loop;
	struct node a, b;
	struct raw *r = calloc(RAFT_TRANSPORT_MAX_INCOMING + 1, sizeof(*r));
	struct raw *last = &r[RAFT_TRANSPORT_MAX_INCOMING];
	struct frame_buf enc;
	struct raft_entry ents[3];
	struct raft_msg m = make_msg(5, 2, RAFT_MSG_VOTE, 1, ents);

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	node_start(&loop, &b, 2, 0);
	/* fill every slot with a connection that never says hello */
	for (unsigned i = 0; i < RAFT_TRANSPORT_MAX_INCOMING; i++)
		raw_open(&loop, &r[i], b.port);
	/* one more that does: it gets in, the oldest idle one goes */
	frame_buf_init(&enc);
	ck_assert_int_eq(raft_msg_encode(&m, &enc), 0);
	raw_open(&loop, last, b.port);
	raw_hello(last, 5, 2);
	raw_frame(last, RAFT_FRAME_MSG, enc.data, enc.len);
	wait_received(&b, 1);
	ck_assert(run_until(&loop, raw_is_closed, &r[0], 5000));
	ck_assert(!r[1].ended);
	/* and a real peer too */
	node_start(&loop, &a, 1, 0);
	add_peer(&a, 2, b.port);
	send_msg(&a, 2, RAFT_MSG_HEARTBEAT, 1);
	wait_received(&b, 2);
	ck_assert(run_until(&loop, raw_is_closed, &r[1], 5000));
	ck_assert_int_eq(b.unexpected, 0);
	frame_buf_fini(&enc);
	for (unsigned i = 0; i <= RAFT_TRANSPORT_MAX_INCOMING; i++) {
		if (!r[i].closed && !r[i].ended)
			net_conn_close(r[i].c, raw_closed);
		ck_assert(run_until(&loop, raw_is_closed, &r[i], 5000));
	}
	free(r);
	node_stop(&a);
	node_stop(&b);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

START_TEST(connected_write_limit_drops_big_messages)
{
	uv_loop_t loop;
	struct node a, b;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	node_start(&loop, &a, 1, 0);
	node_start(&loop, &b, 2, 0);
	add_peer(&a, 2, b.port);
	send_msg(&a, 2, RAFT_MSG_HEARTBEAT, 1);
	wait_received(&b, 1);
	/* the 256 KiB snapshot exceeds a 64 KiB limit: dropped, counted */
	ck_assert_int_eq(raft_transport_set_queue(a.t, 0, 64 << 10), 0);
	send_msg(&a, 2, RAFT_MSG_SNAPSHOT, 2);
	ck_assert_uint_eq(stats(&a, 2).dropped, 1);
	/* the connection is fine: the next message arrives */
	send_msg(&a, 2, RAFT_MSG_HEARTBEAT, 3);
	wait_received(&b, 2);
	ck_assert_uint_eq(b.keys[1], 3);
	ck_assert_uint_eq(stats(&a, 2).sent, 2);
	ck_assert_uint_eq(stats(&a, 2).connects, 1);
	node_stop(&a);
	node_stop(&b);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

START_TEST(out_of_memory_costs_messages_not_the_transport)
{
	uv_loop_t loop;
	struct node a, b;
	struct want_reconnects w = {&a, 2, 3};
	struct raft_entry ents[3];
	struct raft_msg m;
	int port, rv;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	node_start(&loop, &b, 2, 0);
	port = b.port;
	node_stop(&b);
	node_start(&loop, &a, 1, 0);
	ck_assert_int_eq(raft_transport_set_backoff(a.t, 5, 10), 0);
	add_peer(&a, 2, port);
	/* a send that cannot allocate fails and queues nothing */
	m = make_msg(1, 2, RAFT_MSG_APPEND, 1, ents);
	mem_fail_after(1);
	rv = raft_transport_send(a.t, &m);
	mem_fail_reset();
	ck_assert_int_eq(rv, -RAFT_ENOMEM);
	ck_assert_uint_eq(stats(&a, 2).dropped, 0);
	send_msg(&a, 2, RAFT_MSG_APPEND, 2);
	/* connect attempts that cannot allocate are retried */
	mem_fail_after(1);
	ck_assert(run_until(&loop, has_reconnects, &w, 4000));
	mem_fail_reset();
	node_start(&loop, &b, 2, port);
	wait_received(&b, 1);
	ck_assert_uint_eq(b.keys[0], 2);
	ck_assert_int_eq(b.unexpected, 0);
	node_stop(&a);
	node_stop(&b);
	ck_assert_int_eq(finish_loop(&loop), 0);
	ck_assert_int_eq(b.received, 1);
}
END_TEST

START_TEST(stop_from_a_callback_is_clean)
{
	uv_loop_t loop;
	struct node a, b;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	node_start(&loop, &a, 1, 0);
	node_start(&loop, &b, 2, 0);
	b.stop_on_message = true;
	add_peer(&a, 2, b.port);
	add_peer(&b, 1, a.port);
	/* several messages in one read: b stops at the first */
	for (uint64_t k = 1; k <= 5; k++)
		send_msg(&a, 2, RAFT_MSG_HEARTBEAT, k);
	ck_assert(run_until(&loop, is_stopped, &b, 5000));
	ck_assert_int_eq(b.received, 1);
	node_stop(&a);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
	uv_loop_t loop;
	struct node a;
	struct raft_transport *t = NULL;
	struct raft_entry ents[3];
	struct raft_msg m;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(raft_transport_start(&loop, 0, "127.0.0.1:0", on_msg,
					      NULL, &t),
			 -RAFT_EINVAL);
	ck_assert_int_eq(raft_transport_start(&loop, 1, "nowhere", on_msg,
					      NULL, &t),
			 -RAFT_EINVAL);
	ck_assert_ptr_null(t);
	node_start(&loop, &a, 1, 0);
	/* the port is taken */
	{
		char addr[64];

		snprintf(addr, sizeof(addr), "127.0.0.1:%d", a.port);
		ck_assert_int_lt(raft_transport_start(&loop, 9, addr, on_msg,
						      NULL, &t),
				 0);
	}
	ck_assert_int_eq(raft_transport_add_peer(a.t, 1, "127.0.0.1:1"),
			 -RAFT_EINVAL); /* itself */
	ck_assert_int_eq(raft_transport_add_peer(a.t, 0, "127.0.0.1:1"),
			 -RAFT_EINVAL);
	ck_assert_int_eq(raft_transport_add_peer(a.t, 2, "bad address"),
			 -RAFT_EINVAL);
	add_peer(&a, 2, 1);
	ck_assert_int_eq(raft_transport_add_peer(a.t, 2, "127.0.0.1:1"),
			 -RAFT_EINVAL); /* twice */
	ck_assert_int_eq(raft_transport_set_backoff(a.t, 0, 10), -RAFT_EINVAL);
	ck_assert_int_eq(raft_transport_set_backoff(a.t, 20, 10), -RAFT_EINVAL);
	m = make_msg(1, 2, RAFT_MSG_VOTE, 1, ents);
	m.type = 0; /* cannot be encoded */
	ck_assert_int_eq(raft_transport_send(a.t, &m), -RAFT_EINVAL);
	m = make_msg(3, 2, RAFT_MSG_VOTE, 1, ents); /* not from a */
	ck_assert_int_eq(raft_transport_send(a.t, &m), -RAFT_EINVAL);
	ck_assert_int_eq(raft_transport_stop(a.t, on_stopped), 0);
	ck_assert_int_eq(raft_transport_stop(a.t, on_stopped), -RAFT_EBUSY);
	m = make_msg(1, 2, RAFT_MSG_VOTE, 1, ents);
	ck_assert_int_eq(raft_transport_send(a.t, &m), -RAFT_EBUSY);
	ck_assert(run_until(&loop, is_stopped, &a, 5000));
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

/* ---- the real core over the transport ------------------------------------- */

struct cnode {
	struct raft *r;
	struct raft_transport *t;
	int port;
	bool running;
	int applied; /* committed entries with data */
	char last[32];
};

static struct cnode cluster[3];

static void drain(struct cnode *c)
{
	struct raft_ready rd;

	while (raft_has_ready(c->r)) {
		ck_assert_int_eq(raft_ready(c->r, &rd), 0);
		/* nothing to persist: this cluster lives in memory */
		for (size_t i = 0; i < rd.n_msgs; i++)
			raft_transport_send(c->t, &rd.msgs[i]);
		for (size_t i = 0; i < rd.n_committed; i++) {
			const struct raft_entry *e = &rd.committed[i];

			if (e->type == RAFT_ENTRY_NORMAL && e->len > 0 &&
			    e->len < sizeof(c->last)) {
				memcpy(c->last, e->data, e->len);
				c->last[e->len] = '\0';
				c->applied++;
			}
		}
		ck_assert_int_eq(raft_advance(c->r, &rd), 0);
	}
}

static void on_raft_msg(const struct raft_msg *m, void *data)
{
	struct cnode *c = data;

	raft_step(c->r, m); /* the core judges what it gets */
	drain(c);
}

static void on_tick(uv_timer_t *timer)
{
	for (int i = 0; i < 3; i++) {
		raft_tick(cluster[i].r);
		drain(&cluster[i]);
	}
}

static void on_cnode_stopped(void *data)
{
	((struct cnode *)data)->running = false;
}

static int leader_index(void)
{
	for (int i = 0; i < 3; i++)
		if (raft_role(cluster[i].r) == RAFT_LEADER)
			return i;
	return -1;
}

static bool has_leader(void *arg)
{
	return leader_index() >= 0;
}

static bool all_applied(void *arg)
{
	for (int i = 0; i < 3; i++)
		if (cluster[i].applied < *(int *)arg)
			return false;
	return true;
}

static bool cluster_stopped(void *arg)
{
	for (int i = 0; i < 3; i++)
		if (cluster[i].running)
			return false;
	return true;
}

START_TEST(raft_cluster_elects_and_commits_over_tcp)
{
	uv_loop_t loop;
	uv_timer_t tick;
	struct raft_snapshot boot;
	int want = 1, l;

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	memset(&boot, 0, sizeof(boot));
	boot.conf.n = 3;
	for (unsigned i = 0; i < 3; i++)
		boot.conf.members[i].id = i + 1;
	for (int i = 0; i < 3; i++) {
		struct raft_options o = {
			.id = (uint64_t)i + 1,
			.election_tick = 10,
			.heartbeat_tick = 1,
			.seed = (uint64_t)i + 1,
			.pre_vote = true,
			.check_quorum = true,
			.max_inflight = 4,
			.max_batch_entries = 16,
			.max_batch_bytes = 1 << 20,
		};
		struct raft_persisted ps = {.snapshot = &boot};
		char err[128];

		memset(&cluster[i], 0, sizeof(cluster[i]));
		ck_assert_int_eq(raft_new(&o, &ps, &cluster[i].r, err,
					  sizeof(err)),
				 0);
		ck_assert_int_eq(raft_transport_start(&loop, o.id,
						      "127.0.0.1:0", on_raft_msg,
						      &cluster[i],
						      &cluster[i].t),
				 0);
		cluster[i].port = raft_transport_port(cluster[i].t);
		cluster[i].running = true;
	}
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			char addr[64];

			if (i == j)
				continue;
			snprintf(addr, sizeof(addr), "127.0.0.1:%d",
				 cluster[j].port);
			ck_assert_int_eq(raft_transport_add_peer(cluster[i].t,
								 (uint64_t)j + 1,
								 addr),
					 0);
		}
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 5, 5);
	ck_assert(run_until(&loop, has_leader, NULL, 5000));
	l = leader_index();
	ck_assert_int_eq(raft_propose(cluster[l].r, "decided", 7, NULL), 0);
	drain(&cluster[l]);
	ck_assert(run_until(&loop, all_applied, &want, 5000));
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(cluster[i].last, "decided");
		ck_assert_uint_eq(raft_leader(cluster[i].r),
				  raft_id(cluster[l].r));
	}
	uv_close((uv_handle_t *)&tick, NULL);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(raft_transport_stop(cluster[i].t,
						     on_cnode_stopped),
				 0);
	ck_assert(run_until(&loop, cluster_stopped, NULL, 5000));
	for (int i = 0; i < 3; i++)
		raft_free(cluster[i].r);
	ck_assert_int_eq(finish_loop(&loop), 0);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    three_nodes_exchange_every_message_type,
	    down_peer_is_reached_when_it_comes_up,
	    peer_that_refuses_hello_is_retried_ever_more_slowly,
	    full_queue_drops_and_counts,
	    bad_input_closes_only_its_connection,
	    new_hello_replaces_an_older_connection,
	    idle_connections_cannot_lock_peers_out,
	    connected_write_limit_drops_big_messages,
	    out_of_memory_costs_messages_not_the_transport,
	    stop_from_a_callback_is_clean,
	    bad_arguments_are_refused,
	    raft_cluster_elects_and_commits_over_tcp,
	    NULL,
	};

	return suite_main("raft_transport", 30, tests);
}
