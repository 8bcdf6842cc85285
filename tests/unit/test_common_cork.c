/*
 * test_common_cork.c - send batching: a held socket's bytes stay in the
 * kernel until the loop turn ends and reach the peer then; a socket held
 * twice is held once; a dropped one is left alone; a socket that cannot
 * cork (Unix-domain) is written at once; closing the batch releases what
 * it holds.  Real loopback TCP sockets; the peer reads with MSG_DONTWAIT,
 * so "nothing yet" is checked, never waited for.
 */
#include "common/common.h"

#include "tests/lib/suite.h"
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

/* A connected loopback TCP pair: fds[0] writes, fds[1] reads. */
static void tcp_pair(int fds[2])
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;

	ck_assert_int_ge(l, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fds[0], 0);
	ck_assert_int_eq(connect(fds[0], (struct sockaddr *)&a, sizeof(a)),
			 0);
	fds[1] = accept(l, NULL, NULL);
	ck_assert_int_ge(fds[1], 0);
	close(l);
	/* As libpq and libuv set it: no Nagle delay once uncorked. */
	ck_assert_int_eq(setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one,
				    sizeof(one)),
			 0);
}

/* uv_run() only turns while a referenced handle is active; the batch's
 * own handle is not (it must not keep a loop alive).  Real loops have
 * their sockets; a test has this timer. */
static uv_timer_t keep;

static void on_keep(uv_timer_t *t)
{
	(void)t;
	ck_abort_msg("a test ran for an hour");
}

static void loop_open(uv_loop_t *loop)
{
	ck_assert_int_eq(uv_loop_init(loop), 0);
	ck_assert_int_eq(uv_timer_init(loop, &keep), 0);
	ck_assert_int_eq(uv_timer_start(&keep, on_keep, 3600000, 0), 0);
}

static void loop_close(uv_loop_t *loop)
{
	uv_close((uv_handle_t *)&keep, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(loop), 0);
}

static int corked(int fd)
{
	int v = -1;
	socklen_t len = sizeof(v);

	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, &len), 0);
	return v;
}

/* Bytes waiting at the peer now (0 if none), without waiting. */
static ssize_t peek(int fd)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0) {
		ck_assert_int_eq(errno, EAGAIN);
		return 0;
	}
	return n;
}

START_TEST(held_bytes_leave_when_the_turn_ends)
{
	uv_loop_t loop;
	struct cork_batch b;
	struct cork k;
	int p[2];

	loop_open(&loop);
	cork_batch_init(&loop, &b);
	cork_init(&k);
	tcp_pair(p);

	cork_hold(&b, &k, p[0]);
	cork_hold(&b, &k, p[0]); /* a second write in the same turn */
	ck_assert_uint_eq(cork_batch_held(&b), 1);
	ck_assert_int_eq(corked(p[0]), 1);
	ck_assert_int_eq(write(p[0], "query", 5), 5);
	ck_assert_int_eq(peek(p[1]), 0); /* still in the writer's kernel */

	uv_run(&loop, UV_RUN_NOWAIT); /* the turn ends */
	ck_assert_uint_eq(cork_batch_held(&b), 0);
	ck_assert_uint_eq(b.turns, 1);
	ck_assert_int_eq(corked(p[0]), 0);
	ck_assert_int_eq(peek(p[1]), 5);

	uv_run(&loop, UV_RUN_NOWAIT); /* an empty turn counts nothing */
	ck_assert_uint_eq(b.turns, 1);

	cork_batch_close(&b, NULL);
	loop_close(&loop);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(dropped_sockets_are_left_alone)
{
	uv_loop_t loop;
	struct cork_batch b;
	struct cork k[3];
	int p[3][2];

	loop_open(&loop);
	cork_batch_init(&loop, &b);
	for (int i = 0; i < 3; i++) {
		cork_init(&k[i]);
		tcp_pair(p[i]);
		cork_hold(&b, &k[i], p[i][0]);
	}
	ck_assert_uint_eq(cork_batch_held(&b), 3);
	/* Off the list from the middle, the head and the tail. */
	cork_drop(&k[1]);
	ck_assert_uint_eq(cork_batch_held(&b), 2);
	cork_drop(&k[1]); /* twice is harmless */
	cork_drop(&k[2]);
	ck_assert_uint_eq(cork_batch_held(&b), 1);
	uv_run(&loop, UV_RUN_NOWAIT);
	ck_assert_uint_eq(cork_batch_held(&b), 0);
	ck_assert_int_eq(corked(p[0][0]), 0);
	/* Dropped: the batch never touched them. */
	ck_assert_int_eq(corked(p[1][0]), 1);
	ck_assert_int_eq(corked(p[2][0]), 1);

	cork_batch_close(&b, NULL);
	loop_close(&loop);
	for (int i = 0; i < 3; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
}
END_TEST

START_TEST(a_socket_without_a_cork_writes_at_once)
{
	uv_loop_t loop;
	struct cork_batch b;
	struct cork k;
	int u[2];

	loop_open(&loop);
	cork_batch_init(&loop, &b);
	cork_init(&k);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, u), 0);
	cork_hold(&b, &k, u[0]);
	ck_assert_uint_eq(cork_batch_held(&b), 0);
	ck_assert_int_eq(write(u[0], "now", 3), 3);
	ck_assert_int_eq(peek(u[1]), 3);
	cork_hold(&b, &k, u[0]); /* refused once: not tried again */
	ck_assert_uint_eq(cork_batch_held(&b), 0);
	cork_hold(NULL, &k, u[0]); /* no batch: nothing */

	cork_batch_close(&b, NULL);
	loop_close(&loop);
	close(u[0]);
	close(u[1]);
}
END_TEST

START_TEST(closing_the_batch_releases_what_it_holds)
{
	uv_loop_t loop;
	struct cork_batch b;
	struct cork k, k2;
	int p[2];

	loop_open(&loop);
	cork_batch_init(&loop, &b);
	cork_init(&k);
	cork_init(&k2);
	tcp_pair(p);
	cork_hold(&b, &k, p[0]);
	ck_assert_int_eq(write(p[0], "last", 4), 4);
	ck_assert_int_eq(peek(p[1]), 0);
	cork_batch_close(&b, NULL); /* within the turn */
	ck_assert_int_eq(peek(p[1]), 4);
	ck_assert_int_eq(corked(p[0]), 0);
	cork_hold(&b, &k2, p[0]); /* closed: writes go at once */
	ck_assert_int_eq(corked(p[0]), 0);
	loop_close(&loop);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* True if this kernel can uncork through io_uring: Linux 6.7 or later
 * with io_uring enabled.  Then the batch must use it. */
static bool ring_expected(void)
{
	struct utsname u;
	int major = 0, minor = 0, off = 0;
	FILE *f;

	ck_assert_int_eq(uname(&u), 0);
	if (sscanf(u.release, "%d.%d", &major, &minor) != 2 || major < 6 ||
	    (major == 6 && minor < 7))
		return false;
	f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
	if (f != NULL) {
		if (fscanf(f, "%d", &off) != 1)
			off = 0;
		fclose(f);
	}
	return off == 0 && getenv("DECREE_IO_URING") == NULL;
}

/* More sockets than one submission holds (64), in two batches of one
 * loop: every one is uncorked and its bytes arrive when the turn ends,
 * with io_uring on and off; one release serves both batches. */
static void many_sockets(bool ring)
{
	enum { N = 150 };
	uv_loop_t loop;
	struct cork_batch b[2];
	static struct cork k[N];
	static int p[N][2];

	cork_use_io_uring(ring);
	loop_open(&loop);
	cork_batch_init(&loop, &b[0]);
	cork_batch_init(&loop, &b[1]);
	for (int i = 0; i < N; i++) {
		cork_init(&k[i]);
		tcp_pair(p[i]);
		cork_hold(&b[i % 2], &k[i], p[i][0]);
		ck_assert_int_eq(write(p[i][0], "abc", 3), 3);
	}
	ck_assert_uint_eq(cork_batch_held(&b[0]) + cork_batch_held(&b[1]), N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(peek(p[i][1]), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	for (int j = 0; j < 2; j++) {
		ck_assert_uint_eq(cork_batch_held(&b[j]), 0);
		ck_assert_uint_eq(b[j].turns, 1);
		if (!ring)
			ck_assert_uint_eq(b[j].ring_releases, 0);
		else if (ring_expected())
			ck_assert(b[j].ring_releases >= 1 &&
				  b[j].ring_releases <= 3);
	}
	/* 150 sockets: three submissions in all (64 + 64 + 22), each
	 * counted by the batches it served. */
	if (ring && ring_expected())
		ck_assert_uint_eq(b[0].ring_releases + b[1].ring_releases, 4);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(corked(p[i][0]), 0);
		ck_assert_int_eq(peek(p[i][1]), 3);
	}
	cork_batch_close(&b[0], NULL);
	cork_batch_close(&b[1], NULL);
	loop_close(&loop);
	for (int i = 0; i < N; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	cork_use_io_uring(true);
}

START_TEST(many_sockets_leave_together_through_io_uring)
{
	many_sockets(true);
}
END_TEST

START_TEST(many_sockets_leave_one_by_one_without_io_uring)
{
	many_sockets(false);
}
END_TEST

/* A child forked after its parent's ring was made makes its own: both
 * release their sockets. */
START_TEST(a_forked_child_makes_its_own_ring)
{
	many_sockets(true); /* the ring exists now */
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		many_sockets(true);
		_exit(0);
	}
	{
		int st = 0;

		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	many_sockets(true);
}
END_TEST

/* A kernel that refuses the command (as before Linux 6.7): the sockets
 * of that submission are uncorked by hand at once, and later turns do
 * without the ring. */
START_TEST(a_refused_ring_command_falls_back_to_setsockopt)
{
	uv_loop_t loop;
	struct cork_batch b;
	struct cork k[3];
	int p[3][2];

	if (!ring_expected())
		return; /* no ring here: the plain path is tested above */
	cork_use_io_uring(true);
	cork_test_ring_command(0xfff0); /* no such socket command */
	loop_open(&loop);
	cork_batch_init(&loop, &b);
	for (int turn = 1; turn <= 2; turn++) {
		for (int i = 0; i < 3; i++) {
			if (turn == 1) {
				cork_init(&k[i]);
				tcp_pair(p[i]);
			}
			cork_hold(&b, &k[i], p[i][0]);
			ck_assert_int_eq(write(p[i][0], "xy", 2), 2);
			ck_assert_int_eq(peek(p[i][1]), 0);
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		for (int i = 0; i < 3; i++) {
			ck_assert_int_eq(corked(p[i][0]), 0);
			ck_assert_int_eq(peek(p[i][1]), 2);
		}
		/* Tried once, refused, not tried again. */
		ck_assert_uint_eq(b.ring_releases, 1);
		ck_assert_uint_eq(b.turns, (uint64_t)turn);
	}
	cork_batch_close(&b, NULL);
	loop_close(&loop);
	for (int i = 0; i < 3; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	cork_test_ring_command(0);
	cork_use_io_uring(true);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    held_bytes_leave_when_the_turn_ends,
	    dropped_sockets_are_left_alone,
	    a_socket_without_a_cork_writes_at_once,
	    closing_the_batch_releases_what_it_holds,
	    many_sockets_leave_together_through_io_uring,
	    many_sockets_leave_one_by_one_without_io_uring,
	    a_forked_child_makes_its_own_ring,
	    a_refused_ring_command_falls_back_to_setsockopt,
	    NULL,
	};

	return suite_main("common_cork", 30, tests);
}
