/*
 * transport.c - carries encoded Raft messages between nodes over TCP on
 * libuv: one outgoing connection per peer, framed with common/frame, with
 * reconnect backoff and a bounded queue per peer.
 *
 * Design notes:
 *   - Direction.  Node A sends to B only on the connection A opened to B;
 *     B answers on its own connection to A.  So each connection carries
 *     bytes one way, and a receiver never writes: bytes arriving on an
 *     outgoing connection are a protocol error and close it.
 *   - Hello.  The first frame A writes is RAFT_FRAME_HELLO, payload
 *     [u8 version 1][u64 from][u64 to] (little endian).  B checks to == its
 *     own id (a wrong address is caught at once) and from != 0, and from
 *     then on accepts only RAFT_FRAME_MSG frames whose message says
 *     from == the hello's from and to == B.
 *   - One connection per sender.  A new hello from node X closes any older
 *     incoming connection from X: X opens one at a time, so the older one
 *     is dead, perhaps without a FIN (a partition), which a receiver that
 *     never writes would not notice.
 *   - At most RAFT_TRANSPORT_MAX_INCOMING incoming connections stay open;
 *     when full, a new one replaces the oldest that has not said hello yet
 *     (or is refused), so idle connections cannot lock the peers out.
 *   - Bad input.  A frame the decoder refuses, a message that does not
 *     decode, a missing or second hello, or an unknown frame type closes
 *     that one incoming connection (counted in bad_conns); the sender
 *     reconnects and goes on.  A message that does not fit in memory is
 *     dropped without closing (the stream is still in sync).
 *   - Queue and loss.  While the connection to a peer is not established,
 *     its messages wait (encoded, as whole frames) in a queue bounded in
 *     messages and bytes; when full, new messages are dropped and counted.
 *     Once connected, messages go straight to the connection, whose write
 *     queue is bounded by the same byte limit; a full write queue also
 *     drops.  Raft retransmits, so loss costs latency, never safety.
 *   - Backoff.  A failed attempt or a lost connection schedules the next
 *     attempt after the current backoff, which then doubles up to the cap.
 *     It goes back to the minimum only when a connection that lived at
 *     least the cap is lost: a peer that accepts and at once closes (say,
 *     it refuses our hello because the address names another node) is
 *     retried ever more slowly, not in a tight loop.  No jitter: each
 *     peer pair has its own connection, so there is no herd to spread.
 *   - Lifetime.  The transport counts what still has to close (listener,
 *     incoming connections, peers); stop closes everything and the last
 *     close callback calls on_stopped and frees the transport.  A peer is
 *     freed once its timer is closed and it has no connection.  Memory is
 *     released only in close callbacks, so callbacks may stop the
 *     transport or remove peers while a caller up the stack still uses it.
 *
 * Outgoing connection of a peer, states and transitions:
 *
 *   IDLE --start_connect--> CONNECTING --on_out_connect(0)--> CONNECTED
 *     ^                         |                                 |
 *     |      on_out_connect(<0) |      on_out_read (EOF, error,   |
 *     +---- on_retry <-- BACKOFF <------- bytes) -> close_out ----+
 *
 *   IDLE -> CONNECTING      [start_connect]   (add_peer, on_retry)
 *   CONNECTING -> CONNECTED [on_out_connect]  hello, then flush the queue
 *   CONNECTING -> BACKOFF   [on_out_connect]  failed: schedule_retry
 *   CONNECTED -> BACKOFF    [on_out_closed]   after close_out
 *   BACKOFF -> CONNECTING   [on_retry]        counts a reconnect
 *   any -> gone             [peer_teardown]   remove_peer, stop
 */
#include "raft/raft.h"

#include "common/common.h"

#include <errno.h>
#include <string.h>

#define HELLO_LEN 17

/* One whole frame waiting for the connection to a peer. */
struct qmsg {
	struct qmsg *next;
	size_t len;
	uint8_t bytes[];
};

struct peer {
	struct raft_transport *t;
	struct peer *next; /* in t->peers while not removed */
	uint64_t id;
	char addr[NET_ADDR_STRLEN];
	struct net_conn *conn; /* connecting or connected; NULL else */
	bool connected;
	bool close_pending; /* net_conn_close() accepted: on_out_closed comes */
	bool removed;
	bool failed_before; /* the next attempt is a reconnect */
	uv_timer_t timer;
	bool timer_closed;
	unsigned backoff_ms; /* delay before the next attempt after a failure */
	uint64_t connected_at; /* uv_now() when the connection came up */
	struct qmsg *qhead, *qtail;
	unsigned qn;
	size_t qbytes;
	struct raft_transport_stats st;
};

struct in_conn {
	struct raft_transport *t;
	struct in_conn *next, *prev;
	struct net_conn *conn;
	struct frame_decoder dec;
	uint64_t from; /* from the hello; 0 before it */
	bool closing;
};

struct raft_transport {
	uv_loop_t *loop;
	uint64_t self;
	raft_transport_message_cb on_message;
	void *data;
	struct net_listener *listener;
	int port;
	struct peer *peers;
	struct in_conn *ins; /* newest first */
	unsigned n_ins;	     /* incoming connections not closing */
	unsigned queue_msgs;
	size_t queue_bytes;
	unsigned backoff_min, backoff_max;
	struct raft_transport_stats total;
	struct frame_buf scratch; /* one frame being encoded */
	unsigned pending;	  /* listener + incoming conns + peers */
	bool stopping;
	void (*on_stopped)(void *data);
};

/* Counts an event for a peer and in the totals. */
#define COUNT(p, field)                                                        \
	do {                                                                   \
		(p)->st.field++;                                               \
		(p)->t->total.field++;                                         \
	} while (0)

static void maybe_finish(struct raft_transport *t)
{
	void (*cb)(void *data) = t->on_stopped;
	void *data = t->data;

	if (!t->stopping || t->pending > 0)
		return;
	frame_buf_fini(&t->scratch);
	mem_free(t);
	if (cb != NULL)
		cb(data);
}

static struct peer *peer_find(const struct raft_transport *t, uint64_t id)
{
	for (struct peer *p = t->peers; p != NULL; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* ---- outgoing connections ------------------------------------------------ */

static void start_connect(struct peer *p);
static void close_out(struct peer *p);

static void queue_drop_all(struct peer *p)
{
	while (p->qhead != NULL) {
		struct qmsg *q = p->qhead;

		p->qhead = q->next;
		mem_free(q);
		COUNT(p, dropped);
	}
	p->qtail = NULL;
	p->qn = 0;
	p->qbytes = 0;
}

static void peer_maybe_free(struct peer *p)
{
	struct raft_transport *t = p->t;

	if (!p->removed || !p->timer_closed || p->conn != NULL)
		return;
	mem_free(p);
	t->pending--;
	maybe_finish(t);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct peer *p = h->data;

	p->timer_closed = true;
	peer_maybe_free(p);
}

static void on_retry(uv_timer_t *timer)
{
	start_connect(timer->data);
}

static void schedule_retry(struct peer *p)
{
	struct raft_transport *t = p->t;

	if (p->removed || t->stopping)
		return;
	p->failed_before = true;
	uv_timer_start(&p->timer, on_retry, p->backoff_ms, 0);
	if (p->backoff_ms > t->backoff_max / 2)
		p->backoff_ms = t->backoff_max;
	else
		p->backoff_ms *= 2;
}

/* Writes one frame to the connected peer; a full write queue drops it. */
static void write_frame(struct peer *p, const void *bytes, size_t len)
{
	int rv = net_conn_write(p->conn, bytes, len);

	if (rv == 0) {
		COUNT(p, sent);
		return;
	}
	COUNT(p, dropped);
	/* A full queue or no memory loses this frame only; else the stream
	 * is broken and the connection must go. */
	if (rv != -ENOBUFS && rv != -ENOMEM)
		close_out(p);
}

static void flush_queue(struct peer *p)
{
	while (p->qhead != NULL && p->connected) {
		struct qmsg *q = p->qhead;

		p->qhead = q->next;
		if (p->qhead == NULL)
			p->qtail = NULL;
		p->qn--;
		p->qbytes -= q->len;
		write_frame(p, q->bytes, q->len);
		mem_free(q);
	}
}

static void on_out_closed(struct net_conn *c, void *data)
{
	struct peer *p = data;
	struct raft_transport *t = p->t;

	p->conn = NULL;
	p->connected = false;
	p->close_pending = false;
	if (p->removed) {
		peer_maybe_free(p);
		return;
	}
	if (uv_now(t->loop) - p->connected_at >= t->backoff_max)
		p->backoff_ms = t->backoff_min;
	schedule_retry(p);
}

/* Closes the outgoing connection (if any); the peer then reconnects. */
static void close_out(struct peer *p)
{
	if (p->conn == NULL || p->close_pending)
		return;
	p->connected = false;
	if (net_conn_close(p->conn, on_out_closed) == 0)
		p->close_pending = true;
	/* else a failed connect is already closing: on_out_connect reports. */
}

static void on_out_read(struct net_conn *c, const char *buf, ssize_t n,
			void *data)
{
	/* EOF, an error, or bytes a receiver must never send. */
	close_out(data);
}

static void on_out_connect(struct net_conn *c, int status, void *data)
{
	struct peer *p = data;
	struct raft_transport *t = p->t;
	uint8_t hello[FRAME_HEADER_SIZE + HELLO_LEN];

	if (status < 0) {
		if (p->close_pending)
			return; /* we closed it: on_out_closed follows */
		p->conn = NULL;
		p->connected = false;
		if (p->removed)
			peer_maybe_free(p);
		else
			schedule_retry(p);
		return;
	}
	p->conn = c;
	p->connected = true;
	p->connected_at = uv_now(t->loop);
	COUNT(p, connects);
	net_conn_set_write_limit(c, t->queue_bytes);
	if (net_conn_read_start(c, on_out_read, p) < 0) {
		close_out(p);
		return;
	}
	frame_header_write(hello, RAFT_FRAME_HELLO, HELLO_LEN);
	hello[FRAME_HEADER_SIZE] = 1;
	for (int b = 0; b < 8; b++) {
		hello[FRAME_HEADER_SIZE + 1 + b] = (uint8_t)(t->self >> (8 * b));
		hello[FRAME_HEADER_SIZE + 9 + b] = (uint8_t)(p->id >> (8 * b));
	}
	if (net_conn_write(c, hello, sizeof(hello)) < 0) {
		close_out(p);
		return;
	}
	flush_queue(p);
}

static void start_connect(struct peer *p)
{
	struct raft_transport *t = p->t;
	int rv;

	if (p->removed || t->stopping || p->conn != NULL)
		return;
	if (p->failed_before)
		COUNT(p, reconnects);
	rv = net_connect_timeout(t->loop, p->addr,
				 RAFT_TRANSPORT_CONNECT_TIMEOUT, on_out_connect,
				 p, &p->conn);
	if (rv < 0) {
		p->conn = NULL;
		schedule_retry(p);
	}
}

/* Starts closing everything a peer holds; it is freed once all closed. */
static void peer_teardown(struct peer *p)
{
	p->removed = true;
	queue_drop_all(p);
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, on_timer_closed);
	close_out(p);
}

/* ---- incoming connections ------------------------------------------------ */

static void on_in_closed(struct net_conn *c, void *data)
{
	struct in_conn *ic = data;
	struct raft_transport *t = ic->t;

	if (ic->prev != NULL)
		ic->prev->next = ic->next;
	else
		t->ins = ic->next;
	if (ic->next != NULL)
		ic->next->prev = ic->prev;
	frame_decoder_fini(&ic->dec);
	mem_free(ic);
	t->pending--;
	maybe_finish(t);
}

static void close_in(struct in_conn *ic)
{
	if (ic->closing)
		return;
	ic->closing = true;
	ic->t->n_ins--;
	net_conn_close(ic->conn, on_in_closed);
}

static uint64_t get_u64le(const uint8_t *p)
{
	uint64_t v = 0;

	for (int b = 0; b < 8; b++)
		v |= (uint64_t)p[b] << (8 * b);
	return v;
}

/* Handles one frame; false means the connection is bad. */
static bool handle_frame(struct in_conn *ic, const struct frame *f)
{
	struct raft_transport *t = ic->t;
	struct raft_msg m;
	struct peer *p;
	int rv;

	if (ic->from == 0) {
		if (f->type != RAFT_FRAME_HELLO || f->len != HELLO_LEN ||
		    f->payload[0] != 1)
			return false;
		ic->from = get_u64le(f->payload + 1);
		if (ic->from == 0 || get_u64le(f->payload + 9) != t->self)
			return false;
		/* A peer keeps one connection to us: an older one from the
		 * same node is dead or dying (it may never see a FIN across
		 * a partition, and we never write to find out). */
		for (struct in_conn *o = t->ins; o != NULL; o = o->next)
			if (o != ic && o->from == ic->from)
				close_in(o);
		return true;
	}
	if (f->type != RAFT_FRAME_MSG)
		return false;
	rv = raft_msg_decode(f->payload, f->len, &m);
	if (rv == -RAFT_ENOMEM)
		return true; /* lost, but the stream is intact */
	if (rv < 0)
		return false;
	if (m.from != ic->from || m.to != t->self) {
		raft_msg_free_decoded(&m);
		return false;
	}
	p = peer_find(t, m.from);
	if (p != NULL)
		p->st.received++;
	t->total.received++;
	t->on_message(&m, t->data);
	raft_msg_free_decoded(&m);
	return true;
}

static void on_in_read(struct net_conn *c, const char *buf, ssize_t n,
		       void *data)
{
	struct in_conn *ic = data;
	struct raft_transport *t = ic->t;
	struct frame f;
	int rv;

	if (ic->closing)
		return;
	if (n < 0) {
		close_in(ic);
		return;
	}
	rv = frame_decoder_feed(&ic->dec, buf, (size_t)n);
	while (rv == 0 && !ic->closing && !t->stopping) {
		rv = frame_decoder_next(&ic->dec, &f);
		if (rv <= 0)
			break;
		rv = handle_frame(ic, &f) ? 0 : -EBADMSG;
	}
	if (rv < 0 && !ic->closing) {
		if (rv != -ENOMEM)
			t->total.bad_conns++;
		close_in(ic);
	}
}

static void on_accept(struct net_listener *l, struct net_conn *c, void *data)
{
	struct raft_transport *t = data;
	struct in_conn *ic;

	if (t->stopping)
		goto err_close;
	if (t->n_ins >= RAFT_TRANSPORT_MAX_INCOMING) {
		struct in_conn *old = NULL;

		/* Make room by closing the oldest that has not said hello. */
		for (ic = t->ins; ic != NULL; ic = ic->next)
			if (ic->from == 0 && !ic->closing)
				old = ic;
		if (old == NULL)
			goto err_close;
		close_in(old);
	}
	ic = mem_calloc(1, sizeof(*ic));
	if (ic == NULL)
		goto err_close;
	if (frame_decoder_init(&ic->dec, 0) < 0) {
		mem_free(ic);
		goto err_close;
	}
	ic->t = t;
	ic->conn = c;
	ic->next = t->ins;
	if (t->ins != NULL)
		t->ins->prev = ic;
	t->ins = ic;
	t->n_ins++;
	t->pending++;
	if (net_conn_read_start(c, on_in_read, ic) < 0)
		close_in(ic);
	return;

err_close:
	net_conn_close(c, NULL);
}

static void on_listener_closed(void *data)
{
	struct raft_transport *t = data;

	t->pending--;
	maybe_finish(t);
}

/* ---- public API ---------------------------------------------------------- */

int raft_transport_start(struct uv_loop_s *loop, uint64_t self_id,
			 const char *listen_addr,
			 raft_transport_message_cb on_message, void *data,
			 struct raft_transport **out)
{
	struct raft_transport *t;
	int rv;

	if (loop == NULL || self_id == 0 || listen_addr == NULL ||
	    on_message == NULL || out == NULL)
		return -RAFT_EINVAL;
	t = mem_calloc(1, sizeof(*t));
	if (t == NULL)
		return -RAFT_ENOMEM;
	t->loop = loop;
	t->self = self_id;
	t->on_message = on_message;
	t->data = data;
	t->queue_msgs = RAFT_TRANSPORT_QUEUE_MSGS;
	t->queue_bytes = RAFT_TRANSPORT_QUEUE_BYTES;
	t->backoff_min = RAFT_TRANSPORT_BACKOFF_MIN;
	t->backoff_max = RAFT_TRANSPORT_BACKOFF_MAX;
	frame_buf_init(&t->scratch);
	rv = net_listen(loop, listen_addr, on_accept, t, &t->listener);
	if (rv < 0)
		goto err_free;
	t->port = net_listener_port(t->listener);
	t->pending = 1;
	*out = t;
	return 0;

err_free:
	mem_free(t);
	if (rv == -EINVAL)
		return -RAFT_EINVAL;
	if (rv == -ENOMEM)
		return -RAFT_ENOMEM;
	return rv;
}

int raft_transport_port(const struct raft_transport *t)
{
	return t->port;
}

int raft_transport_set_queue(struct raft_transport *t, unsigned queue_msgs,
			     size_t queue_bytes)
{
	if (t == NULL)
		return -RAFT_EINVAL;
	if (queue_msgs > 0)
		t->queue_msgs = queue_msgs;
	if (queue_bytes > 0)
		t->queue_bytes = queue_bytes;
	for (struct peer *p = t->peers; p != NULL; p = p->next)
		if (p->connected)
			net_conn_set_write_limit(p->conn, t->queue_bytes);
	return 0;
}

int raft_transport_set_backoff(struct raft_transport *t, unsigned min_ms,
			       unsigned max_ms)
{
	if (t == NULL || min_ms == 0 || max_ms < min_ms)
		return -RAFT_EINVAL;
	t->backoff_min = min_ms;
	t->backoff_max = max_ms;
	for (struct peer *p = t->peers; p != NULL; p = p->next)
		if (p->backoff_ms < min_ms || p->backoff_ms > max_ms)
			p->backoff_ms = min_ms;
	return 0;
}

int raft_transport_add_peer(struct raft_transport *t, uint64_t id,
			    const char *addr)
{
	struct sockaddr_storage ss;
	struct peer *p;

	if (t == NULL || id == 0 || id == t->self || addr == NULL ||
	    strlen(addr) >= NET_ADDR_STRLEN || net_addr_parse(addr, &ss) < 0)
		return -RAFT_EINVAL;
	if (t->stopping)
		return -RAFT_EBUSY;
	if (peer_find(t, id) != NULL)
		return -RAFT_EINVAL;
	p = mem_calloc(1, sizeof(*p));
	if (p == NULL)
		return -RAFT_ENOMEM;
	p->t = t;
	p->id = id;
	strcpy(p->addr, addr);
	p->backoff_ms = t->backoff_min;
	uv_timer_init(t->loop, &p->timer); /* cannot fail on Unix */
	p->timer.data = p;
	p->next = t->peers;
	t->peers = p;
	t->pending++;
	start_connect(p);
	return 0;
}

int raft_transport_remove_peer(struct raft_transport *t, uint64_t id)
{
	struct peer **pp;

	if (t == NULL)
		return -RAFT_EINVAL;
	if (t->stopping)
		return -RAFT_EBUSY;
	for (pp = &t->peers; *pp != NULL; pp = &(*pp)->next) {
		struct peer *p = *pp;

		if (p->id == id) {
			*pp = p->next;
			p->next = NULL;
			peer_teardown(p);
			return 0;
		}
	}
	return -RAFT_ENOTMEMBER;
}

int raft_transport_send(struct raft_transport *t, const struct raft_msg *m)
{
	struct frame_buf *b;
	struct peer *p;
	size_t size;
	int rv;

	if (t == NULL || m == NULL)
		return -RAFT_EINVAL;
	if (t->stopping)
		return -RAFT_EBUSY;
	p = peer_find(t, m->to);
	if (p == NULL)
		return -RAFT_ENOTMEMBER;
	size = raft_msg_encoded_size(m);
	if (m->from != t->self || size == 0 || size > FRAME_MAX_DEFAULT - 2)
		return -RAFT_EINVAL;
	if (!p->connected &&
	    (p->qn >= t->queue_msgs ||
	     p->qbytes + FRAME_HEADER_SIZE + size > t->queue_bytes)) {
		COUNT(p, dropped);
		return 0;
	}
	b = &t->scratch;
	frame_buf_reset(b);
	rv = frame_encode(RAFT_FRAME_MSG, NULL, 0, b);
	if (rv == 0)
		rv = raft_msg_encode(m, b);
	if (rv == -ENOMEM)
		rv = -RAFT_ENOMEM;
	if (rv < 0)
		return rv;
	frame_header_write(b->data, RAFT_FRAME_MSG, b->len - FRAME_HEADER_SIZE);
	if (p->connected) {
		write_frame(p, b->data, b->len);
	} else {
		struct qmsg *q = mem_alloc(sizeof(*q) + b->len);

		if (q == NULL)
			return -RAFT_ENOMEM;
		q->next = NULL;
		q->len = b->len;
		memcpy(q->bytes, b->data, b->len);
		if (p->qtail != NULL)
			p->qtail->next = q;
		else
			p->qhead = q;
		p->qtail = q;
		p->qn++;
		p->qbytes += q->len;
	}
	if (b->cap > 1u << 20) /* do not keep a huge snapshot's buffer */
		frame_buf_fini(b);
	return 0;
}

int raft_transport_stats(const struct raft_transport *t, uint64_t id,
			 struct raft_transport_stats *out)
{
	const struct peer *p;

	if (t == NULL || out == NULL)
		return -RAFT_EINVAL;
	if (id == 0) {
		*out = t->total;
		return 0;
	}
	p = peer_find(t, id);
	if (p == NULL)
		return -RAFT_ENOTMEMBER;
	*out = p->st;
	out->backoff_ms = p->backoff_ms;
	return 0;
}

bool raft_transport_is_connected(const struct raft_transport *t, uint64_t id)
{
	const struct peer *p = t != NULL ? peer_find(t, id) : NULL;

	return p != NULL && p->connected;
}

int raft_transport_stop(struct raft_transport *t, void (*on_stopped)(void *data))
{
	if (t == NULL)
		return -RAFT_EINVAL;
	if (t->stopping)
		return -RAFT_EBUSY;
	t->stopping = true;
	t->on_stopped = on_stopped;
	while (t->peers != NULL) {
		struct peer *p = t->peers;

		t->peers = p->next;
		p->next = NULL;
		peer_teardown(p);
	}
	for (struct in_conn *ic = t->ins; ic != NULL; ic = ic->next)
		close_in(ic);
	net_listener_close(t->listener, on_listener_closed);
	return 0;
}
