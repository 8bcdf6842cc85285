/*
 * test_raft_codec.c - the byte encoding of Raft messages: round trips of
 * every message type (entries and snapshots included), the exact bytes of
 * one message, and a strict decoder: every truncation, trailing byte,
 * oversized count, bad field and seeded random garbage is an error or a
 * canonical message, never a crash or an overread (run under ASan).
 */
#include "common/common.h"
#include "raft/raft.h"

#include "tests/lib/rng.h"
#include "tests/lib/suite.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building and comparing messages ------------------------------------ */

static uint8_t pool[4096]; /* source bytes for entry and snapshot data */

static void fill_pool(void)
{
	for (size_t i = 0; i < sizeof(pool); i++)
		pool[i] = (uint8_t)rng_next();
}

static struct raft_entry ents[8];
static uint8_t conf_bytes[RAFT_CONF_ENCODED_MAX];

/* A message of type with random fields; APPEND gets n entries. */
static struct raft_msg make_msg(int type, size_t n)
{
	struct raft_msg m;

	memset(&m, 0, sizeof(m));
	m.type = (uint8_t)type;
	m.reject = rng_next() & 1;
	m.transfer = rng_next() & 1;
	m.from = rng_next();
	m.to = rng_next();
	m.term = rng_next();
	m.index = rng_next();
	m.log_term = rng_next();
	m.commit = rng_next();
	m.hint = rng_next();
	m.hint_term = rng_next();
	if (type == RAFT_MSG_APPEND && n > 0) {
		for (size_t i = 0; i < n; i++) {
			ents[i].term = rng_next();
			ents[i].index = rng_next();
			ents[i].type = RAFT_ENTRY_NORMAL;
			ents[i].len = (size_t)(rng_next() % 300);
			ents[i].data = ents[i].len ? pool + i * 300 : NULL;
		}
		/* one empty no-op and one configuration entry */
		ents[0].len = 0;
		ents[0].data = NULL;
		if (n > 1) {
			struct raft_conf c = {.n = 2,
					      .members = {{7, false}, {9, true}}};

			ents[1].type = RAFT_ENTRY_CONF;
			ents[1].len = raft_conf_encode(&c, conf_bytes);
			ents[1].data = conf_bytes;
		}
		m.entries = ents;
		m.n_entries = n;
	}
	if (type == RAFT_MSG_SNAPSHOT) {
		m.snapshot.index = rng_next();
		m.snapshot.term = rng_next();
		m.snapshot.conf.n = 3;
		m.snapshot.conf.members[0].id = 1;
		m.snapshot.conf.members[1].id = 2;
		m.snapshot.conf.members[2].id = 3;
		m.snapshot.conf.members[2].learner = true;
		m.snapshot.len = 1000;
		m.snapshot.data = pool + 2000;
	}
	return m;
}

static void assert_same(const struct raft_msg *a, const struct raft_msg *b)
{
	ck_assert_uint_eq(a->type, b->type);
	ck_assert(a->reject == b->reject);
	ck_assert(a->transfer == b->transfer);
	ck_assert_uint_eq(a->from, b->from);
	ck_assert_uint_eq(a->to, b->to);
	ck_assert_uint_eq(a->term, b->term);
	ck_assert_uint_eq(a->index, b->index);
	ck_assert_uint_eq(a->log_term, b->log_term);
	ck_assert_uint_eq(a->commit, b->commit);
	ck_assert_uint_eq(a->hint, b->hint);
	ck_assert_uint_eq(a->hint_term, b->hint_term);
	ck_assert_uint_eq(a->n_entries, b->n_entries);
	for (size_t i = 0; i < a->n_entries; i++) {
		const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];

		ck_assert_uint_eq(x->term, y->term);
		ck_assert_uint_eq(x->index, y->index);
		ck_assert_uint_eq(x->type, y->type);
		ck_assert_uint_eq(x->len, y->len);
		ck_assert((x->data == NULL) == (y->data == NULL));
		if (x->len > 0)
			ck_assert(memcmp(x->data, y->data, x->len) == 0);
	}
	ck_assert_uint_eq(a->snapshot.index, b->snapshot.index);
	ck_assert_uint_eq(a->snapshot.term, b->snapshot.term);
	ck_assert_uint_eq(a->snapshot.conf.n, b->snapshot.conf.n);
	for (unsigned i = 0; i < a->snapshot.conf.n; i++) {
		ck_assert_uint_eq(a->snapshot.conf.members[i].id,
				  b->snapshot.conf.members[i].id);
		ck_assert(a->snapshot.conf.members[i].learner ==
			  b->snapshot.conf.members[i].learner);
	}
	ck_assert_uint_eq(a->snapshot.len, b->snapshot.len);
	ck_assert((a->snapshot.data == NULL) == (b->snapshot.data == NULL));
	if (a->snapshot.len > 0)
		ck_assert(memcmp(a->snapshot.data, b->snapshot.data,
				 a->snapshot.len) == 0);
}

/* Encodes m into a fresh buffer (caller finis it). */
static void encode(const struct raft_msg *m, struct frame_buf *b)
{
	frame_buf_init(b);
	ck_assert_int_eq(raft_msg_encode(m, b), 0);
	ck_assert_uint_eq(b->len, raft_msg_encoded_size(m));
}

/* ---- round trips ---------------------------------------------------------- */

START_TEST(every_type_round_trips)
{
	rng_seed(42);
	fill_pool();
	for (int type = RAFT_MSG_PREVOTE; type <= RAFT_MSG_TIMEOUT_NOW;
	     type++) {
		for (size_t n = 0; n <= (type == RAFT_MSG_APPEND ? 8u : 0u);
		     n++) {
			struct raft_msg m = make_msg(type, n), d;
			struct frame_buf b;

			encode(&m, &b);
			memset(&d, 0xa5, sizeof(d));
			ck_assert_int_eq(raft_msg_decode(b.data, b.len, &d), 0);
			assert_same(&m, &d);
			/* decoded data are copies, not pointers into b */
			memset(b.data, 0, b.len);
			assert_same(&m, &d);
			raft_msg_free_decoded(&d);
			ck_assert_ptr_null(d.entries);
			ck_assert_ptr_null(d.snapshot.data);
			frame_buf_fini(&b);
		}
	}
}
END_TEST

START_TEST(empty_snapshot_round_trips)
{
	struct raft_msg m, d;
	struct frame_buf b;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_SNAPSHOT;
	m.from = 1;
	m.to = 2;
	encode(&m, &b);
	ck_assert_uint_eq(b.len, RAFT_MSG_HEADER_SIZE + 21 + 2);
	ck_assert_int_eq(raft_msg_decode(b.data, b.len, &d), 0);
	assert_same(&m, &d);
	ck_assert_ptr_null(d.snapshot.data);
	raft_msg_free_decoded(&d);
	frame_buf_fini(&b);
}
END_TEST

START_TEST(encode_appends_to_buffer)
{
	struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2};
	struct raft_msg d;
	struct frame_buf b;

	frame_buf_init(&b);
	ck_assert_int_eq(frame_encode(5, "xyz", 3, &b), 0);
	ck_assert_int_eq(raft_msg_encode(&m, &b), 0);
	ck_assert_uint_eq(b.len, 9 + RAFT_MSG_HEADER_SIZE);
	ck_assert(memcmp(b.data + 6, "xyz", 3) == 0);
	ck_assert_int_eq(raft_msg_decode(b.data + 9, b.len - 9, &d), 0);
	assert_same(&m, &d);
	raft_msg_free_decoded(&d);
	frame_buf_fini(&b);
}
END_TEST

/* The bytes of one message, as docs/wire.md and codec.c spell them out. */
START_TEST(append_bytes_match_the_spec)
{
	struct raft_entry e = {
		.term = 2, .index = 5, .type = 0, .len = 3, .data = "abc"};
	struct raft_msg m = {.type = RAFT_MSG_APPEND,
			     .reject = false,
			     .transfer = true,
			     .from = 1,
			     .to = 0x0203,
			     .term = 2,
			     .index = 4,
			     .log_term = 1,
			     .commit = 3,
			     .n_entries = 1,
			     .entries = &e};
	static const uint8_t want[] = {
		1, 5, 2,		  /* version, type APPEND, flags */
		1, 0, 0, 0, 0, 0, 0, 0, /* from */
		3, 2, 0, 0, 0, 0, 0, 0, /* to */
		2, 0, 0, 0, 0, 0, 0, 0, /* term */
		4, 0, 0, 0, 0, 0, 0, 0, /* index */
		1, 0, 0, 0, 0, 0, 0, 0, /* log_term */
		3, 0, 0, 0, 0, 0, 0, 0, /* commit */
		0, 0, 0, 0, 0, 0, 0, 0, /* hint */
		0, 0, 0, 0, 0, 0, 0, 0, /* hint_term */
		1, 0, 0, 0,		  /* n_entries */
		2, 0, 0, 0, 0, 0, 0, 0, /* entry term */
		5, 0, 0, 0, 0, 0, 0, 0, /* entry index */
		0,			  /* entry type */
		3, 0, 0, 0,		  /* entry len */
		'a', 'b', 'c'};
	struct frame_buf b;

	encode(&m, &b);
	ck_assert_uint_eq(b.len, sizeof(want));
	ck_assert(memcmp(b.data, want, sizeof(want)) == 0);
	frame_buf_fini(&b);
}
END_TEST

/* ---- a strict decoder ----------------------------------------------------- */

START_TEST(every_truncation_is_an_error)
{
	rng_seed(7);
	fill_pool();
	for (int type = RAFT_MSG_PREVOTE; type <= RAFT_MSG_TIMEOUT_NOW;
	     type++) {
		struct raft_msg m = make_msg(type, 4), d;
		struct frame_buf b;
		uint8_t *copy;

		encode(&m, &b);
		for (size_t len = 0; len < b.len; len++) {
			/* an exact-size copy, so ASan catches any overread */
			copy = malloc(len ? len : 1);
			memcpy(copy, b.data, len);
			ck_assert_int_eq(raft_msg_decode(copy, len, &d),
					 -RAFT_EPROTO);
			free(copy);
		}
		/* and one byte too many */
		copy = malloc(b.len + 1);
		memcpy(copy, b.data, b.len);
		copy[b.len] = 0;
		ck_assert_int_eq(raft_msg_decode(copy, b.len + 1, &d),
				 -RAFT_EPROTO);
		free(copy);
		frame_buf_fini(&b);
	}
}
END_TEST

/* Decodes a hand-patched copy of a valid message; returns the result. */
static int decode_patched(const struct raft_msg *m, size_t off, uint8_t val)
{
	struct frame_buf b;
	struct raft_msg d;
	int rv;

	encode(m, &b);
	ck_assert_uint_lt(off, b.len);
	b.data[off] = val;
	rv = raft_msg_decode(b.data, b.len, &d);
	if (rv == 0)
		raft_msg_free_decoded(&d);
	frame_buf_fini(&b);
	return rv;
}

START_TEST(bad_header_fields_are_errors)
{
	struct raft_msg m = {.type = RAFT_MSG_VOTE, .from = 1, .to = 2};

	ck_assert_int_eq(decode_patched(&m, 0, 0), -RAFT_EPROTO);   /* version */
	ck_assert_int_eq(decode_patched(&m, 0, 2), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&m, 1, 0), -RAFT_EPROTO);   /* type */
	ck_assert_int_eq(decode_patched(&m, 1, 11), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&m, 2, 4), -RAFT_EPROTO);   /* flags */
	ck_assert_int_eq(decode_patched(&m, 2, 0x80), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&m, 2, 3), 0);		    /* both flags */
	/* entries on a message other than APPEND */
	ck_assert_int_eq(decode_patched(&m, 67, 1), -RAFT_EPROTO);
}
END_TEST

START_TEST(oversized_counts_are_errors_without_allocating)
{
	struct raft_entry e = {.term = 1, .index = 1, .len = 4, .data = "abcd"};
	struct raft_msg m = {.type = RAFT_MSG_APPEND,
			     .from = 1,
			     .to = 2,
			     .n_entries = 1,
			     .entries = &e};
	struct raft_msg s = {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2};
	size_t snap_len_off;

	/* n_entries = 0xffffffff, 2, and just above the limit */
	for (size_t i = 67; i < 71; i++)
		ck_assert_int_eq(decode_patched(&m, i, 0xff), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&m, 67, 2), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&m, 69, 1), -RAFT_EPROTO);
	/* entry len: huge, one more, one less than present */
	ck_assert_int_eq(decode_patched(&m, 71 + 17 + 3, 0xff), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&m, 71 + 17, 5), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&m, 71 + 17, 3), -RAFT_EPROTO);
	/* entry type */
	ck_assert_int_eq(decode_patched(&m, 71 + 16, 2), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&m, 71 + 16, 1), 0);
	/* snapshot: conf_len, conf version, conf n, data len */
	ck_assert_int_eq(decode_patched(&s, 71 + 16, 0xff), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&s, 71 + 16, 0), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&s, 71 + 17, 2), -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&s, 71 + 18, 1), -RAFT_EPROTO);
	snap_len_off = 71 + 17 + 2;
	ck_assert_int_eq(decode_patched(&s, snap_len_off + 3, 0x80),
			 -RAFT_EPROTO);
	ck_assert_int_eq(decode_patched(&s, snap_len_off, 1), -RAFT_EPROTO);
}
END_TEST

START_TEST(unencodable_messages_are_refused)
{
	struct raft_entry e = {.term = 1, .index = 1, .len = 0};
	struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2};
	struct frame_buf b;

	frame_buf_init(&b);
	m.type = 0;
	ck_assert_int_eq(raft_msg_encode(&m, &b), -RAFT_EINVAL);
	m.type = RAFT_MSG_TIMEOUT_NOW + 1;
	ck_assert_int_eq(raft_msg_encode(&m, &b), -RAFT_EINVAL);
	m.type = RAFT_MSG_VOTE; /* entries on a vote */
	m.entries = &e;
	m.n_entries = 1;
	ck_assert_int_eq(raft_msg_encode(&m, &b), -RAFT_EINVAL);
	m.type = RAFT_MSG_APPEND;
	e.type = 9;
	ck_assert_int_eq(raft_msg_encode(&m, &b), -RAFT_EINVAL);
	e.type = 0;
	e.len = 3; /* data NULL with a length */
	ck_assert_int_eq(raft_msg_encode(&m, &b), -RAFT_EINVAL);
	e.len = 0;
	m.n_entries = RAFT_MSG_MAX_ENTRIES + 1;
	ck_assert_uint_eq(raft_msg_encoded_size(&m), 0);
	m.n_entries = 0;
	m.type = RAFT_MSG_SNAPSHOT;
	m.entries = NULL;
	m.snapshot.conf.n = RAFT_MAX_MEMBERS + 1;
	ck_assert_int_eq(raft_msg_encode(&m, &b), -RAFT_EINVAL);
	ck_assert_int_eq(raft_msg_encode(NULL, &b), -RAFT_EINVAL);
	ck_assert_uint_eq(b.len, 0); /* nothing appended */
	frame_buf_fini(&b);
}
END_TEST

START_TEST(random_garbage_is_refused_or_canonical)
{
	uint64_t seed = 0x5eed;
	int accepted = 0;

	rng_seed(seed);
	fill_pool();
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)(rng_next() % 400);
		uint8_t *buf = malloc(len ? len : 1);
		struct raft_msg d;
		int rv;

		if (i % 2 == 0) {
			/* pure noise */
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rng_next();
		} else {
			/* a valid message with a few bytes changed */
			struct raft_msg m = make_msg(
				1 + (int)(rng_next() % 10), rng_next() % 3);
			struct frame_buf b;

			encode(&m, &b);
			free(buf);
			len = b.len;
			buf = malloc(len);
			memcpy(buf, b.data, len);
			frame_buf_fini(&b);
			for (int k = 0; k < 1 + (int)(rng_next() % 3); k++)
				buf[rng_next() % len] = (uint8_t)rng_next();
		}
		rv = raft_msg_decode(buf, len, &d);
		if (rv != 0 && rv != -RAFT_EPROTO)
			ck_abort_msg("seed %llu iteration %d: rv %d",
				     (unsigned long long)seed, i, rv);
		if (rv == 0) {
			struct frame_buf b;

			/* what decodes re-encodes to the same bytes */
			accepted++;
			encode(&d, &b);
			if (b.len != len || memcmp(b.data, buf, len) != 0)
				ck_abort_msg("seed %llu iteration %d: not "
					     "canonical",
					     (unsigned long long)seed, i);
			frame_buf_fini(&b);
			raft_msg_free_decoded(&d);
		}
		free(buf);
	}
	/* the mutation half must sometimes survive (bytes in data fields) */
	ck_assert_int_gt(accepted, 100);
}
END_TEST

START_TEST(out_of_memory_is_reported_and_leaks_nothing)
{
	struct raft_msg m, d;
	struct frame_buf b;
	int rv = -RAFT_ENOMEM;

	rng_seed(3);
	fill_pool();
	m = make_msg(RAFT_MSG_APPEND, 3);
	encode(&m, &b);
	mem_fail_after(1);
	ck_assert_int_eq(raft_msg_decode(b.data, b.len, &d), -RAFT_ENOMEM);
	mem_fail_reset();
	frame_buf_fini(&b);

	m = make_msg(RAFT_MSG_SNAPSHOT, 0);
	encode(&m, &b);
	mem_fail_after(1);
	ck_assert_int_eq(raft_msg_decode(b.data, b.len, &d), -RAFT_ENOMEM);
	mem_fail_reset();
	frame_buf_fini(&b);

	/* encode into a buffer that cannot grow: unchanged */
	frame_buf_init(&b);
	mem_fail_after(1);
	rv = raft_msg_encode(&m, &b);
	mem_fail_reset();
	ck_assert_int_eq(rv, -RAFT_ENOMEM);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(null_arguments_are_invalid)
{
	struct raft_msg d;

	ck_assert_int_eq(raft_msg_decode(NULL, 0, &d), -RAFT_EINVAL);
	ck_assert_int_eq(raft_msg_decode("", 0, NULL), -RAFT_EINVAL);
	raft_msg_free_decoded(NULL);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    every_type_round_trips,
	    empty_snapshot_round_trips,
	    encode_appends_to_buffer,
	    append_bytes_match_the_spec,
	    every_truncation_is_an_error,
	    bad_header_fields_are_errors,
	    oversized_counts_are_errors_without_allocating,
	    unencodable_messages_are_refused,
	    random_garbage_is_refused_or_canonical,
	    out_of_memory_is_reported_and_leaks_nothing,
	    null_arguments_are_invalid,
	    NULL,
	};

	return suite_main("raft_codec", 30, tests);
}
