/*
 * wake.c - the cross-thread loop wake-up of wake.h: an eventfd on Linux, a
 * non-blocking pipe elsewhere, watched by a uv_poll_t.
 *
 * Design notes: `pending` is set by the first send, which alone writes the
 * descriptor.  The loop drains the descriptor, then clears `pending`, then
 * runs the callback: a send after the clear writes again and a later turn
 * of the loop sees it; a send before the clear (it wrote nothing) is covered
 * by the callback about to run.  Clearing before the drain would lose a
 * wake-up: a write between the two is drained while `pending` stays set,
 * and every later send is skipped.  Both are sequentially consistent atomics, so whatever the sender
 * published before its send is visible to that callback.
 */
#include "common/common.h"
#include "common/wake.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

static void on_readable(uv_poll_t *p, int status, int events)
{
	struct loop_wake *wk = p->data;
	unsigned char buf[64];
	ssize_t n;

	(void)status;
	(void)events;
	do
		n = read(wk->rfd, buf, sizeof(buf));
	while (n > 0 || (n < 0 && errno == EINTR));
	atomic_store(&wk->pending, 0);
	wk->cb(wk);
}

int loop_wake_init(uv_loop_t *loop, struct loop_wake *wk, loop_wake_cb cb)
{
	int rc;

	wk->cb = cb;
	wk->close_cb = NULL;
	atomic_init(&wk->pending, 0);
#ifdef __linux__
	wk->rfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (wk->rfd < 0)
		return -errno;
	wk->wfd = wk->rfd;
#else
	{
		int fds[2];

		if (pipe(fds) < 0)
			return -errno;
		for (int i = 0; i < 2; i++) {
			fcntl(fds[i], F_SETFD, FD_CLOEXEC);
			fcntl(fds[i], F_SETFL, O_NONBLOCK);
		}
		wk->rfd = fds[0];
		wk->wfd = fds[1];
	}
#endif
	rc = uv_poll_init(loop, &wk->poll, wk->rfd);
	if (rc == 0) {
		wk->poll.data = wk;
		rc = uv_poll_start(&wk->poll, UV_READABLE, on_readable);
		if (rc < 0)
			uv_close((uv_handle_t *)&wk->poll, NULL);
	}
	if (rc < 0) {
		if (wk->wfd != wk->rfd)
			close(wk->wfd);
		close(wk->rfd);
	}
	return rc;
}

void loop_wake_send(struct loop_wake *wk)
{
	uint64_t one = 1;
	ssize_t n;

	if (atomic_exchange(&wk->pending, 1))
		return;
	/* a full pipe (or eventfd counter) means a wake-up is already there */
	do
		n = write(wk->wfd, &one, wk->wfd == wk->rfd ? sizeof(one) : 1);
	while (n < 0 && errno == EINTR);
}

static void on_closed(uv_handle_t *h)
{
	struct loop_wake *wk = h->data;

	if (wk->wfd != wk->rfd)
		close(wk->wfd);
	close(wk->rfd);
	if (wk->close_cb)
		wk->close_cb(wk);
}

void loop_wake_close(struct loop_wake *wk, loop_wake_cb close_cb)
{
	wk->close_cb = close_cb;
	uv_poll_stop(&wk->poll);
	uv_close((uv_handle_t *)&wk->poll, on_closed);
}
