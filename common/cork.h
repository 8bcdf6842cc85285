/*
 * cork.h - send batching for a libuv loop's TCP sockets.  (Part of common/;
 * include common/common.h.)
 *
 * A socket written during a loop turn is corked (TCP_CORK) and uncorked
 * when the turn's callbacks are done, by a uv_prepare handle that libuv
 * runs just before the loop blocks for I/O.  The turn's writes then leave
 * together, after the loop has done its work, instead of one at a time in
 * the middle of it: each write on loopback wakes its reader at once, and
 * the reader preempts the writer while it still has the turn's other
 * messages to produce (docs/driver-pg.md, "Send batching").
 *
 * Rules:
 *   - Nothing stays corked while the loop waits: no write is delayed past
 *     the end of the turn it was made in.  libuv runs prepare handles
 *     newest-started first, so a batch set up when its owner starts runs
 *     after prepare handles started later (the coordinator's log-queue
 *     flush, whose steps may write); a write made after the batch's handle
 *     has run waits at most for the kernel's cork limit (200 ms).
 *   - A socket that refuses the cork (not TCP: a Unix-domain socket) is
 *     written at once from then on.
 *   - A held socket about to be closed must be dropped first
 *     (cork_drop): closing flushes what it holds.
 *   - The batches of one thread are released together: the first of
 *     their handles to run in a turn uncorks what all of them hold (a
 *     loop's driver pools and HTTP server each have one).
 *   - Two or more sockets are uncorked with one io_uring submission where
 *     the kernel can (Linux 6.7 and later), else one setsockopt() each;
 *     DECREE_IO_URING=0 in the environment keeps io_uring out (cork.c
 *     says why it matters).
 */
#ifndef DECREE_COMMON_CORK_H
#define DECREE_COMMON_CORK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* One socket's place in a batch; embed it next to the socket. */
struct cork {
	/* private */
	struct cork *next, **pprev; /* on the batch's list while held */
	int fd;
	bool refused; /* setsockopt failed: never cork this socket again */
};

struct cork_batch {
	/* private */
	uv_prepare_t prepare;
	struct cork *held;
	bool open;
	bool in_submission;	       /* during a release: has sockets in it */
	struct cork_batch *next_batch; /* the thread's open batches */
	/* read-only: the turns that released at least one socket, and the
	 * io_uring submissions that released two or more at once */
	uint64_t turns;
	uint64_t ring_releases;
};

/* For a new socket (or a new connection in the same place). */
void cork_init(struct cork *k);

/* Starts b on loop; it does not keep the loop alive.  Cannot fail
 * (uv_prepare_init always succeeds). */
void cork_batch_init(uv_loop_t *loop, struct cork_batch *b);

/* Uncorks everything held and closes b's handle; cb (may be NULL) gets
 * the handle, whose data field is the owner's (cork_batch_set_data). */
void cork_batch_close(struct cork_batch *b, uv_close_cb cb);
void cork_batch_set_data(struct cork_batch *b, void *data);

/* Sockets held now: 0 whenever the loop waits. */
size_t cork_batch_held(const struct cork_batch *b);

/* Corks fd until the end of the turn, before a write to it.  Does nothing
 * if k is already held, if fd refused before, or if b is closed or NULL. */
void cork_hold(struct cork_batch *b, struct cork *k, int fd);

/* Takes k off its batch without touching the socket (it is closing). */
void cork_drop(struct cork *k);

/* Whether this thread's releases may use io_uring (true: try it again,
 * false: setsockopt() only).  For tests of both paths; DECREE_IO_URING=0
 * is the operator's switch. */
void cork_use_io_uring(bool on);
/* Test hook: the io_uring socket command releases use (0: the real one);
 * another makes the kernel refuse it, as a kernel before 6.7 does. */
void cork_test_ring_command(unsigned op);

#endif
