/*
 * test_common_wake.c - the cross-thread loop wake-up: nothing a sender
 * published is ever missed (the lost wake-up an early clear of `pending`
 * causes hangs the ping-pong here), sends coalesce, and close stops the
 * callbacks.  A hang fails through a loop timer, never a sleep.
 */
#include "common/common.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define DEADLINE_MS 20000

struct pingpong {
	struct loop_wake wk;
	uv_timer_t deadline;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned rounds, sent, seen; /* under lock */
	unsigned callbacks;
	bool timed_out, closed;
};

static void on_pp_closed(struct loop_wake *wk)
{
	((struct pingpong *)wk->data)->closed = true;
}

static void stop(struct pingpong *p)
{
	loop_wake_close(&p->wk, on_pp_closed);
	uv_close((uv_handle_t *)&p->deadline, NULL);
}

/* The loop acknowledges every round the thread published. */
static void on_pp_wake(struct loop_wake *wk)
{
	struct pingpong *p = wk->data;
	bool done;

	p->callbacks++;
	pthread_mutex_lock(&p->lock);
	p->seen = p->sent;
	done = p->seen == p->rounds;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (done)
		stop(p);
}

static void on_deadline(uv_timer_t *t)
{
	struct pingpong *p = t->data;

	p->timed_out = true;
	pthread_mutex_lock(&p->lock);
	p->seen = p->rounds; /* release the thread */
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	stop(p);
}

/* Publishes round i, wakes the loop, waits for the acknowledgement. */
static void *pp_thread(void *arg)
{
	struct pingpong *p = arg;

	for (unsigned i = 1; i <= p->rounds; i++) {
		pthread_mutex_lock(&p->lock);
		if (p->seen >= p->rounds) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		p->sent = i;
		pthread_mutex_unlock(&p->lock);
		loop_wake_send(&p->wk);
		pthread_mutex_lock(&p->lock);
		while (p->seen < i)
			pthread_cond_wait(&p->cond, &p->lock);
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

static void pingpong_run(unsigned rounds, struct pingpong *p)
{
	uv_loop_t loop;
	pthread_t th;

	memset(p, 0, sizeof(*p));
	p->rounds = rounds;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	p->wk.data = p;
	ck_assert_int_eq(loop_wake_init(&loop, &p->wk, on_pp_wake), 0);
	uv_timer_init(&loop, &p->deadline);
	p->deadline.data = p;
	uv_timer_start(&p->deadline, on_deadline, DEADLINE_MS, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, pp_thread, p), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
}

START_TEST(every_send_is_seen_in_a_long_ping_pong)
{
	struct pingpong p;

	pingpong_run(20000, &p);
	ck_assert_msg(!p.timed_out, "lost wake-up: the loop saw %u of %u",
		      p.seen, p.rounds);
	ck_assert_uint_eq(p.seen, 20000);
	ck_assert(p.closed);
}
END_TEST

/* Many threads, many sends, no waiting: every published count arrives and
 * the sends coalesce into fewer callbacks than sends. */
#define NTHREADS 4
#define PER_THREAD 50000

struct flood {
	struct loop_wake wk;
	uv_timer_t deadline;
	atomic_uint published;
	unsigned seen, callbacks;
	bool timed_out, closed;
};

static void on_flood_closed(struct loop_wake *wk)
{
	((struct flood *)wk->data)->closed = true;
}

static void flood_stop(struct flood *f)
{
	loop_wake_close(&f->wk, on_flood_closed);
	uv_close((uv_handle_t *)&f->deadline, NULL);
}

static void on_flood_wake(struct loop_wake *wk)
{
	struct flood *f = wk->data;

	f->callbacks++;
	f->seen = atomic_load(&f->published);
	if (f->seen == NTHREADS * PER_THREAD)
		flood_stop(f);
}

static void on_flood_deadline(uv_timer_t *t)
{
	struct flood *f = t->data;

	f->timed_out = true;
	flood_stop(f);
}

static void *flood_thread(void *arg)
{
	struct flood *f = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		atomic_fetch_add(&f->published, 1);
		loop_wake_send(&f->wk);
	}
	return NULL;
}

START_TEST(concurrent_senders_coalesce_and_lose_nothing)
{
	struct flood f;
	pthread_t th[NTHREADS];
	uv_loop_t loop;

	memset(&f, 0, sizeof(f));
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	f.wk.data = &f;
	ck_assert_int_eq(loop_wake_init(&loop, &f.wk, on_flood_wake), 0);
	uv_timer_init(&loop, &f.deadline);
	f.deadline.data = &f;
	uv_timer_start(&f.deadline, on_flood_deadline, DEADLINE_MS, 0);
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, flood_thread, &f),
				 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	ck_assert_msg(!f.timed_out, "the loop saw %u of %u", f.seen,
		      NTHREADS * PER_THREAD);
	ck_assert_uint_eq(f.seen, NTHREADS * PER_THREAD);
	ck_assert_uint_lt(f.callbacks, NTHREADS * PER_THREAD);
	ck_assert(f.closed);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* A send that is pending when the wake-up is closed never runs the
 * callback, and the close callback runs once. */
static unsigned late_callbacks, late_closes;

static void on_late_wake(struct loop_wake *wk)
{
	(void)wk;
	late_callbacks++;
}

static void on_late_closed(struct loop_wake *wk)
{
	(void)wk;
	late_closes++;
}

START_TEST(close_stops_callbacks)
{
	struct loop_wake wk;
	uv_loop_t loop;

	late_callbacks = late_closes = 0;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(loop_wake_init(&loop, &wk, on_late_wake), 0);
	loop_wake_send(&wk);
	loop_wake_send(&wk);
	loop_wake_close(&wk, on_late_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_uint_eq(late_callbacks, 0);
	ck_assert_uint_eq(late_closes, 1);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(one_send_runs_the_callback_once)
{
	struct loop_wake wk;
	uv_loop_t loop;

	late_callbacks = 0;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(loop_wake_init(&loop, &wk, on_late_wake), 0);
	loop_wake_send(&wk);
	loop_wake_send(&wk);
	uv_run(&loop, UV_RUN_NOWAIT);
	ck_assert_uint_eq(late_callbacks, 1);
	uv_run(&loop, UV_RUN_NOWAIT);
	ck_assert_uint_eq(late_callbacks, 1);
	loop_wake_send(&wk);
	uv_run(&loop, UV_RUN_NOWAIT);
	ck_assert_uint_eq(late_callbacks, 2);
	loop_wake_close(&wk, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    every_send_is_seen_in_a_long_ping_pong,
	    concurrent_senders_coalesce_and_lose_nothing,
	    close_stops_callbacks,
	    one_send_runs_the_callback_once,
	    NULL,
	};

	return suite_main("common_wake", 60, tests);
}
