/*
 * wake.h - a cross-thread wake-up for a libuv loop: any thread calls
 * loop_wake_send(), the loop thread runs the callback.  (Part of common/;
 * include common/common.h.)
 *
 * Why not uv_async_t: on the 2-core VM decree is developed on (libuv 1.44,
 * kernel 6.18, guest vCPUs that halt when idle) uv_async_send() measured
 * 25-30 us per wake-up of a sleeping loop, a raw eventfd write 8 us; the
 * wal's writer thread wakes the loop once per group commit, so the
 * difference was a fifth of a 4 KiB fdatasync.  This is the same mechanism
 * (an eventfd, a pipe where there is none, watched with uv_poll) without
 * uv_async's hand-shake.
 *
 * Rules:
 *   - Sends coalesce: any number of loop_wake_send() calls before the
 *     callback runs make one call.  Everything a thread published before its
 *     send is visible to the callback that follows it.
 *   - The callback never runs after loop_wake_close(); the caller's memory
 *     holding the struct may be freed in close_cb.
 */
#ifndef DECREE_COMMON_WAKE_H
#define DECREE_COMMON_WAKE_H

#include <stdatomic.h>
#include <uv.h>

struct loop_wake;
typedef void (*loop_wake_cb)(struct loop_wake *wk);

struct loop_wake {
	void *data; /* the caller's */
	/* private */
	uv_poll_t poll;
	int rfd, wfd; /* the same eventfd twice, or a pipe's two ends */
	atomic_int pending;
	loop_wake_cb cb;
	loop_wake_cb close_cb;
};

/* Sets wk up on loop (loop thread).  0 or a negative errno. */
int loop_wake_init(uv_loop_t *loop, struct loop_wake *wk, loop_wake_cb cb);
/* Any thread: makes the callback run soon on the loop thread. */
void loop_wake_send(struct loop_wake *wk);
/* Loop thread: stops the callbacks; close_cb (may be NULL) runs once the
 * handle is closed and the descriptors released. */
void loop_wake_close(struct loop_wake *wk, loop_wake_cb close_cb);

#endif
