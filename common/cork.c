/*
 * cork.c - send batching with TCP_CORK, released before the loop blocks
 * (cork.h says why and the rules).
 */
#include "common/cork.h"

#include "common/common.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

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

static void release(struct cork_batch *b)
{
	if (b->held != NULL)
		b->turns++;
	while (b->held != NULL) {
		struct cork *k = b->held;
		int off = 0;

		cork_drop(k);
		(void)setsockopt(k->fd, IPPROTO_TCP, TCP_CORK, &off,
				 sizeof(off));
	}
}

static void on_prepare(uv_prepare_t *h)
{
	release((struct cork_batch *)((char *)h -
				      offsetof(struct cork_batch, prepare)));
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
}

void cork_batch_set_data(struct cork_batch *b, void *data)
{
	b->prepare.data = data;
}

void cork_batch_close(struct cork_batch *b, uv_close_cb cb)
{
	release(b);
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
