/*
 * test_common_frame.c - the frame codec: exact bytes, round trips, every
 * kind of bad frame, and streams cut at every byte boundary.
 */
#include "common/common.h"

#include "tests/lib/rng.h"
#include "tests/lib/suite.h"
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Builds a stream of n frames with seeded types and payload sizes (some
 * empty, some bigger than one network read).
 */
static void make_stream(struct frame_buf *out, int n, uint64_t seed)
{
	uint8_t payload[1200];

	rng_seed(seed);
	for (int i = 0; i < n; i++) {
		size_t len;

		switch (rng_next() % 4) {
		case 0:
			len = 0;
			break;
		case 1:
			len = rng_next() % 8;
			break;
		case 2:
			len = rng_next() % 300;
			break;
		default:
			len = rng_next() % sizeof(payload);
			break;
		}
		for (size_t j = 0; j < len; j++)
			payload[j] = (uint8_t)rng_next();
		ck_assert_int_eq(
		    frame_encode((uint8_t)rng_next(), payload, len, out), 0);
	}
}

/* Takes every frame the decoder has, re-encoding each into got. */
static int drain(struct frame_decoder *d, struct frame_buf *got, int *count)
{
	struct frame f;
	int rc;

	while ((rc = frame_decoder_next(d, &f)) == 1) {
		ck_assert_int_eq(frame_encode(f.type, f.payload, f.len, got),
				 0);
		(*count)++;
	}
	return rc;
}

START_TEST(encoding_is_byte_exact)
{
	static const uint8_t want[] = {0,   0, 0, 5, 1, 7, 'a', 'b',
				       'c', 0, 0, 0, 2, 1, 0xff};
	struct frame_buf b;
	uint8_t hdr[FRAME_HEADER_SIZE];

	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(7, "abc", 3, &b), 0);
	ck_assert_int_eq(frame_encode(0xff, NULL, 0, &b), 0);
	ck_assert_uint_eq(b.len, sizeof(want));
	ck_assert_mem_eq(b.data, want, sizeof(want));
	ck_assert_uint_eq(frame_size(3), 9);
	ck_assert_int_eq(frame_header_write(hdr, 7, 3), 0);
	ck_assert_mem_eq(hdr, want, FRAME_HEADER_SIZE);
	frame_buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	frame_buf_fini(&b);
}
END_TEST

START_TEST(round_trip_keeps_type_payload_and_order)
{
	struct frame_buf b;
	struct frame_decoder d;
	struct frame f;
	char big[70000];

	memset(big, 'z', sizeof(big));
	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(1, "hello", 5, &b), 0);
	ck_assert_int_eq(frame_encode(2, NULL, 0, &b), 0);
	ck_assert_int_eq(frame_encode(3, big, sizeof(big), &b), 0);
	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), 0);

	ck_assert_int_eq(frame_decoder_next(&d, &f), 1);
	ck_assert_uint_eq(f.type, 1);
	ck_assert_uint_eq(f.len, 5);
	ck_assert_mem_eq(f.payload, "hello", 5);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 1);
	ck_assert_uint_eq(f.type, 2);
	ck_assert_uint_eq(f.len, 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 1);
	ck_assert_uint_eq(f.type, 3);
	ck_assert_uint_eq(f.len, sizeof(big));
	ck_assert_mem_eq(f.payload, big, sizeof(big));
	ck_assert_int_eq(frame_decoder_next(&d, &f), 0);
	ck_assert_uint_eq(frame_decoder_buffered(&d), 0);
	frame_decoder_fini(&d);
	frame_buf_fini(&b);
}
END_TEST

START_TEST(truncated_frame_waits_for_more_bytes)
{
	struct frame_buf b;
	struct frame_decoder d;
	struct frame f;

	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(9, "payload", 7, &b), 0);
	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	/* Every proper prefix, including a cut header, yields nothing. */
	for (size_t i = 0; i + 1 < b.len; i++) {
		ck_assert_int_eq(frame_decoder_feed(&d, b.data + i, 1), 0);
		ck_assert_int_eq(frame_decoder_next(&d, &f), 0);
		ck_assert_uint_eq(frame_decoder_buffered(&d), i + 1);
	}
	ck_assert_int_eq(frame_decoder_feed(&d, b.data + b.len - 1, 1), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 1);
	ck_assert_mem_eq(f.payload, "payload", 7);
	frame_decoder_fini(&d);
	frame_buf_fini(&b);
}
END_TEST

START_TEST(oversized_length_fails_before_payload_arrives)
{
	static const uint8_t hdr[] = {0, 0, 0, 101};
	struct frame_decoder d;
	struct frame f;

	ck_assert_int_eq(frame_decoder_init(&d, 100), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, hdr, 3), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, hdr + 3, 1), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EMSGSIZE);
	ck_assert_str_eq(frame_strerror(-EMSGSIZE),
			 "frame larger than the size limit");
	frame_decoder_fini(&d);
}
END_TEST

START_TEST(limit_is_inclusive)
{
	struct frame_buf b;
	struct frame_decoder d;
	struct frame f;
	char p[98] = {0};

	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(1, p, sizeof(p), &b), 0); /* length 100 */
	ck_assert_int_eq(frame_decoder_init(&d, 100), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 1);
	ck_assert_uint_eq(f.len, 98);
	frame_decoder_fini(&d);
	frame_buf_fini(&b);
}
END_TEST

START_TEST(default_limit_refuses_a_huge_length)
{
	static const uint8_t hdr[] = {0xff, 0xff, 0xff, 0xff, 1, 1};
	static const uint8_t just_over[] = {0x01, 0x00, 0x00, 0x01, 1, 1};
	struct frame_decoder d;
	struct frame f;

	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, hdr, sizeof(hdr)), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EMSGSIZE);
	frame_decoder_fini(&d);

	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, just_over, sizeof(just_over)),
			 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EMSGSIZE);
	frame_decoder_fini(&d);
}
END_TEST

START_TEST(zero_and_one_lengths_are_bad_frames)
{
	static const uint8_t zero[] = {0, 0, 0, 0};
	static const uint8_t one[] = {0, 0, 0, 1, 1};
	struct frame_decoder d;
	struct frame f;

	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, zero, sizeof(zero)), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EBADMSG);
	frame_decoder_fini(&d);

	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, one, sizeof(one)), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EBADMSG);
	frame_decoder_fini(&d);
}
END_TEST

START_TEST(bad_version_fails_on_its_byte)
{
	static const uint8_t v2[] = {0, 0, 0, 3, 2, 1, 'x'};
	struct frame_decoder d;
	struct frame f;

	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, v2, 4), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, v2 + 4, 1), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EPROTONOSUPPORT);
	frame_decoder_fini(&d);
}
END_TEST

START_TEST(error_is_sticky_and_good_frames_before_it_arrive)
{
	static const uint8_t bad[] = {0, 0, 0, 0};
	struct frame_buf b;
	struct frame_decoder d;
	struct frame f;

	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(4, "ok", 2, &b), 0);
	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, bad, sizeof(bad)), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 1);
	ck_assert_mem_eq(f.payload, "ok", 2);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EBADMSG);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EBADMSG);
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), -EBADMSG);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -EBADMSG);
	frame_decoder_fini(&d);
	frame_buf_fini(&b);
}
END_TEST

/*
 * Random bytes: the decoder must never crash or read outside what it was
 * given (ASan checks that), and every frame it yields must lie inside the
 * bytes fed.  Seeded; the seed is in the failure message.
 */
START_TEST(garbage_never_crashes)
{
	uint8_t junk[600];

	for (uint64_t seed = 1; seed <= 400; seed++) {
		struct frame_decoder d;
		struct frame f;
		size_t fed = 0, taken = 0;
		int rc = 0;

		rng_seed(seed);
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)rng_next();
		/* Half the runs start with a plausible header to go deeper. */
		if (seed % 2 == 0) {
			junk[0] = 0;
			junk[1] = 0;
			junk[2] = 0;
			junk[4] = 1;
		}
		ck_assert_int_eq(frame_decoder_init(&d, 1000), 0);
		while (fed < sizeof(junk) && rc >= 0) {
			size_t n = 1 + rng_next() % 64;

			if (n > sizeof(junk) - fed)
				n = sizeof(junk) - fed;
			rc = frame_decoder_feed(&d, junk + fed, n);
			fed += n;
			while (rc >= 0 &&
			       (rc = frame_decoder_next(&d, &f)) == 1) {
				taken += frame_size(f.len);
				ck_assert_msg(taken <= fed, "seed %llu",
					      (unsigned long long)seed);
			}
		}
		ck_assert_msg(rc == 0 || rc == -EMSGSIZE || rc == -EBADMSG ||
				  rc == -EPROTONOSUPPORT,
			      "seed %llu: rc %d", (unsigned long long)seed, rc);
		frame_decoder_fini(&d);
	}
}
END_TEST

START_TEST(stream_split_at_every_byte_decodes_identically)
{
	struct frame_buf stream, got;
	const uint64_t seed = 42;

	frame_buf_init(&stream);
	frame_buf_init(&got);
	make_stream(&stream, 40, seed);
	for (size_t cut = 0; cut <= stream.len; cut++) {
		struct frame_decoder d;
		int count = 0;

		frame_buf_reset(&got);
		ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
		ck_assert_int_eq(frame_decoder_feed(&d, stream.data, cut), 0);
		ck_assert_int_eq(drain(&d, &got, &count), 0);
		ck_assert_int_eq(
		    frame_decoder_feed(&d, stream.data + cut, stream.len - cut),
		    0);
		ck_assert_int_eq(drain(&d, &got, &count), 0);
		ck_assert_msg(count == 40, "seed %llu cut %zu: %d frames",
			      (unsigned long long)seed, cut, count);
		ck_assert_msg(got.len == stream.len &&
				  memcmp(got.data, stream.data, got.len) == 0,
			      "seed %llu cut %zu: frames differ",
			      (unsigned long long)seed, cut);
		ck_assert_uint_eq(frame_decoder_buffered(&d), 0);
		frame_decoder_fini(&d);
	}
	frame_buf_fini(&got);
	frame_buf_fini(&stream);
}
END_TEST

START_TEST(stream_fed_one_byte_at_a_time_decodes_identically)
{
	struct frame_buf stream, got;
	struct frame_decoder d;
	int count = 0;

	frame_buf_init(&stream);
	frame_buf_init(&got);
	make_stream(&stream, 200, 7);
	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	for (size_t i = 0; i < stream.len; i++) {
		ck_assert_int_eq(frame_decoder_feed(&d, stream.data + i, 1), 0);
		ck_assert_int_eq(drain(&d, &got, &count), 0);
	}
	ck_assert_int_eq(count, 200);
	ck_assert_uint_eq(got.len, stream.len);
	ck_assert_mem_eq(got.data, stream.data, stream.len);
	frame_decoder_fini(&d);
	frame_buf_fini(&got);
	frame_buf_fini(&stream);
}
END_TEST

START_TEST(encoder_refuses_what_the_length_cannot_hold)
{
	struct frame_buf b;
	uint8_t hdr[FRAME_HEADER_SIZE];
	char c = 0;

	frame_buf_init(&b);
	ck_assert_int_eq(
	    frame_header_write(hdr, 1, (size_t)FRAME_MAX_LIMIT + 1), -EMSGSIZE);
	ck_assert_int_eq(frame_encode(1, &c, (size_t)FRAME_MAX_LIMIT + 1, &b),
			 -EMSGSIZE);
	ck_assert_int_eq(frame_encode(1, NULL, 3, &b), -EINVAL);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(decoder_limit_must_be_sane)
{
	struct frame_decoder d;

	ck_assert_int_eq(frame_decoder_init(&d, 1), -EINVAL);
	ck_assert_int_eq(frame_decoder_init(&d, (size_t)UINT32_MAX + 1),
			 -EINVAL);
	ck_assert_int_eq(frame_decoder_init(&d, UINT32_MAX), 0);
	frame_decoder_fini(&d);
}
END_TEST

START_TEST(allocation_failure_is_reported_and_final)
{
	struct frame_buf b;
	struct frame_decoder d;
	struct frame f;

	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(1, "a", 1, &b), 0);
	mem_fail_after(1);
	/* Growing the buffer fails: out is unchanged. */
	{
		char big[1000] = {0};

		ck_assert_int_eq(frame_encode(1, big, sizeof(big), &b),
				 -ENOMEM);
	}
	ck_assert_uint_eq(b.len, 7);
	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), -ENOMEM);
	mem_fail_reset();
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), -ENOMEM);
	ck_assert_int_eq(frame_decoder_next(&d, &f), -ENOMEM);
	ck_assert_str_eq(frame_strerror(-ENOMEM), "out of memory");
	frame_decoder_fini(&d);
	frame_buf_fini(&b);
}
END_TEST

START_TEST(big_frame_buffer_is_released_once_consumed)
{
	struct frame_buf b;
	struct frame_decoder d;
	struct frame f;
	char *big = calloc(1, 1 << 20);

	ck_assert_ptr_nonnull(big);
	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(1, big, 1 << 20, &b), 0);
	ck_assert_int_eq(frame_decoder_init(&d, 0), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), 0);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 1);
	ck_assert_uint_eq(f.len, 1 << 20);
	ck_assert_uint_ge(d.cap, 1 << 20);
	frame_buf_reset(&b);
	ck_assert_int_eq(frame_encode(2, "x", 1, &b), 0);
	ck_assert_int_eq(frame_decoder_feed(&d, b.data, b.len), 0);
	ck_assert_uint_lt(d.cap, 1 << 20);
	ck_assert_int_eq(frame_decoder_next(&d, &f), 1);
	ck_assert_uint_eq(f.type, 2);
	frame_decoder_fini(&d);
	frame_buf_fini(&b);
	free(big);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    encoding_is_byte_exact,
	    round_trip_keeps_type_payload_and_order,
	    truncated_frame_waits_for_more_bytes,
	    oversized_length_fails_before_payload_arrives,
	    limit_is_inclusive,
	    default_limit_refuses_a_huge_length,
	    zero_and_one_lengths_are_bad_frames,
	    bad_version_fails_on_its_byte,
	    error_is_sticky_and_good_frames_before_it_arrive,
	    garbage_never_crashes,
	    stream_split_at_every_byte_decodes_identically,
	    stream_fed_one_byte_at_a_time_decodes_identically,
	    encoder_refuses_what_the_length_cannot_hold,
	    decoder_limit_must_be_sane,
	    allocation_failure_is_reported_and_final,
	    big_frame_buffer_is_released_once_consumed,
	    NULL,
	};

	return suite_main("common_frame", 0, tests);
}
