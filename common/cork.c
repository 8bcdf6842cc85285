/*
 * cork.c - send batching with TCP_CORK, released before the loop blocks
 * (cork.h says why and the rules).
 */
#include "common/cork.h"

#include "common/common.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Releasing through io_uring: one io_uring_enter() for all of a turn's
 * sockets instead of one setsockopt() each.  Each release wakes a reader;
 * the kernel switches to it when the call that woke it returns to user
 * space (this kernel preempts only there), so one call per turn means one
 * switch per turn instead of one per socket, and the readers then run
 * together (docs/driver-pg.md, "Send batching").
 *
 * One ring per thread (a loop runs on one), made on first use.  Linux 6.7
 * added setsockopt as an io_uring command; where the ring cannot be made
 * (an older kernel, io_uring turned off by sysctl or seccomp) or the
 * command is refused, releases go back to setsockopt() for good.  A child
 * forked after the ring was made lets go of the parent's and makes its
 * own.  DECREE_IO_URING=0 in the environment keeps io_uring out.
 */
#define RING_ENTRIES		    64
#define SOCKET_URING_OP_SETSOCKOPT_ 3 /* <linux/io_uring.h> of 6.7 */

/* The thread's open batches: the first of their prepare handles to run
 * in a turn releases the sockets of all of them, in one submission. */
static __thread struct cork_batch *batches;

enum { RING_UNTRIED, RING_IN_USE, RING_INHERITED, RING_OFF };

static __thread struct io_uring ring;
static __thread int ring_state; /* RING_* */
static __thread unsigned ring_cmd = SOCKET_URING_OP_SETSOCKOPT_;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In a forked child (its one thread is the forking one): the ring is the
 * parent's, shared with it; the child lets go of its copy and makes its
 * own when it next needs one. */
static void on_fork_child(void)
{
	if (ring_state == RING_IN_USE)
		ring_state = RING_INHERITED;
}

static void register_atfork(void)
{
	(void)pthread_atfork(NULL, NULL, on_fork_child);
}

static void ring_off(void)
{
	if (ring_state == RING_IN_USE || ring_state == RING_INHERITED)
		io_uring_queue_exit(&ring); /* (a child's copy only) */
	ring_state = RING_OFF;
}

static bool ring_ready(void)
{
	const char *env;

	if (ring_state == RING_INHERITED) {
		io_uring_queue_exit(&ring);
		ring_state = RING_UNTRIED;
	}
	if (ring_state != RING_UNTRIED)
		return ring_state == RING_IN_USE;
	ring_state = RING_OFF;
	env = getenv("DECREE_IO_URING");
	if (env != NULL && strcmp(env, "0") == 0)
		return false;
	(void)pthread_once(&atfork_once, register_atfork);
	if (io_uring_queue_init(RING_ENTRIES, &ring, 0) != 0)
		return false;
	ring_state = RING_IN_USE;
	return true;
}

void cork_use_io_uring(bool on)
{
	ring_off();
	if (on)
		ring_state = RING_UNTRIED;
}

void cork_test_ring_command(unsigned op)
{
	ring_cmd = op != 0 ? op : SOCKET_URING_OP_SETSOCKOPT_;
}

static void uncork_call(int fd)
{
	int off = 0;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
}

/* The next held socket of the thread's batches, taken off its batch
 * (marked as in the submission being made), or NULL. */
static struct cork *take(void)
{
	for (struct cork_batch *b = batches; b != NULL; b = b->next_batch) {
		struct cork *k = b->held;

		if (k == NULL)
			continue;
		b->in_submission = true;
		cork_drop(k);
		return k;
	}
	return NULL;
}

static size_t held_all(void)
{
	size_t n = 0;

	for (struct cork_batch *b = batches; b != NULL && n < 2;
	     b = b->next_batch)
		n += cork_batch_held(b);
	return n;
}

/* Uncorks up to RING_ENTRIES held sockets of the thread's batches in one
 * submission; false if the ring is not in use (then nothing was taken). */
static bool uncork_ring(void)
{
	static const int off = 0;
	struct io_uring_cqe *cqe;
	int fds[RING_ENTRIES];
	unsigned n = 0;
	bool refused = false;
	struct cork *k;
	int ret;

	if (!ring_ready())
		return false;
	for (struct cork_batch *b = batches; b != NULL; b = b->next_batch)
		b->in_submission = false;
	while (n < RING_ENTRIES && (k = take()) != NULL) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		if (sqe == NULL) {
			/* (Cannot happen: the ring is empty between
			 * submissions.)  All by hand, and no more ring. */
			uncork_call(k->fd);
			for (unsigned i = 0; i < n; i++)
				uncork_call(fds[i]);
			ring_off();
			return true;
		}
		fds[n] = k->fd;
		/* IORING_OP_URING_CMD, SOCKET_URING_OP_SETSOCKOPT: level
		 * and optname share addr, optval is addr3 and optlen
		 * file_index (the layout of Linux 6.7's header, which
		 * older headers name this way). */
		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = IORING_OP_URING_CMD;
		sqe->fd = k->fd;
		sqe->cmd_op = ring_cmd;
		sqe->addr = (uint64_t)IPPROTO_TCP | ((uint64_t)TCP_CORK << 32);
		sqe->addr3 = (uint64_t)(uintptr_t)&off;
		sqe->file_index = sizeof(off);
		sqe->user_data = (uint64_t)k->fd;
		n++;
	}
	if (n == 0)
		return ring_state == RING_IN_USE;
	ret = io_uring_submit_and_wait(&ring, n);
	for (int i = 0; i < ret; i++) {
		if (io_uring_wait_cqe(&ring, &cqe) != 0)
			break;
		if (cqe->res < 0) {
			/* Refused (a kernel without the command): by hand,
			 * now and from now on. */
			uncork_call((int)cqe->user_data);
			if (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP)
				refused = true;
		}
		io_uring_cqe_seen(&ring, cqe);
	}
	if (ret != (int)n) {
		/* Not all went in: do them all by hand (uncorking twice is
		 * harmless) and leave the ring alone from now on. */
		for (unsigned i = 0; i < n; i++)
			uncork_call(fds[i]);
		ring_off();
		return true;
	}
	for (struct cork_batch *b = batches; b != NULL; b = b->next_batch)
		if (b->in_submission)
			b->ring_releases++;
	if (refused)
		ring_off();
	return true;
}

void cork_init(struct cork *k)
{
	k->next = NULL;
	k->pprev = NULL;
	k->fd = -1;
	k->refused = false;
}

void cork_drop(struct cork *k)
{
	if (k->pprev == NULL)
		return;
	*k->pprev = k->next;
	if (k->next != NULL)
		k->next->pprev = k->pprev;
	k->next = NULL;
	k->pprev = NULL;
}

/* Releases every socket the thread's batches hold: two or more through
 * the ring while it serves, else one setsockopt() each. */
static void release_all(void)
{
	struct cork *k;

	for (struct cork_batch *b = batches; b != NULL; b = b->next_batch)
		if (b->held != NULL)
			b->turns++;
	while (held_all() >= 2 && uncork_ring())
		;
	while ((k = take()) != NULL)
		uncork_call(k->fd);
}

static void on_prepare(uv_prepare_t *h)
{
	(void)h;
	release_all();
}

size_t cork_batch_held(const struct cork_batch *b)
{
	size_t n = 0;

	for (const struct cork *k = b->held; k != NULL; k = k->next)
		n++;
	return n;
}

void cork_batch_init(uv_loop_t *loop, struct cork_batch *b)
{
	memset(b, 0, sizeof(*b));
	(void)uv_prepare_init(loop, &b->prepare);
	(void)uv_prepare_start(&b->prepare, on_prepare);
	uv_unref((uv_handle_t *)&b->prepare);
	b->open = true;
	b->next_batch = batches;
	batches = b;
}

void cork_batch_set_data(struct cork_batch *b, void *data)
{
	b->prepare.data = data;
}

void cork_batch_close(struct cork_batch *b, uv_close_cb cb)
{
	struct cork_batch **pp;

	/* Its sockets leave now, with whatever the others hold. */
	release_all();
	for (pp = &batches; *pp != NULL; pp = &(*pp)->next_batch)
		if (*pp == b) {
			*pp = b->next_batch;
			break;
		}
	b->open = false;
	uv_close((uv_handle_t *)&b->prepare, cb);
}

void cork_hold(struct cork_batch *b, struct cork *k, int fd)
{
	int on = 1;

	if (b == NULL || !b->open || k->pprev != NULL || k->refused ||
	    fd < 0)
		return;
	if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) != 0) {
		k->refused = true;
		return;
	}
	k->fd = fd;
	k->next = b->held;
	if (b->held != NULL)
		b->held->pprev = &k->next;
	k->pprev = &b->held;
	b->held = k;
}
