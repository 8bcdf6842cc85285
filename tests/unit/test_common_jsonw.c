/*
 * test_common_jsonw.c - the JSON writer: exact text, escaping, UTF-8 repair,
 * seeded round trips through jansson's parser, misuse and allocation
 * failure.
 */
#include "common/common.h"

#include "tests/lib/rng.h"
#include "tests/lib/suite.h"
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

START_TEST(writes_nested_values_with_commas_and_colons)
{
	struct jsonw w;

	jsonw_init(&w);
	jsonw_begin_object(&w);
	jsonw_kv_string(&w, "gid", "g-1");
	jsonw_key(&w, "n");
	jsonw_begin_array(&w);
	jsonw_int(&w, 1);
	jsonw_int(&w, -2);
	jsonw_null(&w);
	jsonw_bool(&w, true);
	jsonw_begin_object(&w);
	jsonw_end_object(&w);
	jsonw_begin_array(&w);
	jsonw_end_array(&w);
	jsonw_end_array(&w);
	jsonw_kv_int(&w, "z", 0);
	jsonw_key(&w, "s");
	jsonw_string(&w, NULL);
	jsonw_end_object(&w);
	ck_assert(jsonw_ok(&w));
	ck_assert_str_eq(
	    w.p, "{\"gid\":\"g-1\",\"n\":[1,-2,null,true,{},[]],\"z\":0,"
		 "\"s\":null}");
	ck_assert_uint_eq(w.len, strlen(w.p));
	jsonw_free(&w);
}
END_TEST

START_TEST(integers_at_the_limits)
{
	struct jsonw w;

	jsonw_init(&w);
	jsonw_begin_array(&w);
	jsonw_int(&w, LLONG_MIN);
	jsonw_int(&w, LLONG_MAX);
	jsonw_int(&w, 0);
	jsonw_int(&w, -1);
	jsonw_end_array(&w);
	ck_assert(jsonw_ok(&w));
	ck_assert_str_eq(w.p,
			 "[-9223372036854775808,9223372036854775807,0,-1]");
	jsonw_free(&w);
}
END_TEST

START_TEST(escapes_quotes_backslashes_and_control_characters)
{
	struct jsonw w;
	const char in[] = "a\"b\\c\n\t\r\x01\x1f/\x7f";

	jsonw_init(&w);
	jsonw_stringn(&w, in, sizeof(in) - 1);
	ck_assert(jsonw_ok(&w));
	ck_assert_str_eq(w.p, "\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f/\x7f\"");
	jsonw_reset(&w);
	/* A NUL inside a counted string is escaped, not an end. */
	jsonw_stringn(&w, "x\0y", 3);
	ck_assert_str_eq(w.p, "\"x\\u0000y\"");
	jsonw_free(&w);
}
END_TEST

START_TEST(invalid_utf8_becomes_replacement_characters)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
	    {"caf\xc3\xa9", "\"caf\xc3\xa9\""},		  /* valid 2-byte */
	    {"\xe2\x82\xac", "\"\xe2\x82\xac\""},	  /* valid 3-byte */
	    {"\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""}, /* valid 4-byte */
	    {"a\xff"
	     "b",
	     "\"a\xef\xbf\xbd"
	     "b\""},					  /* never valid */
	    {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""}, /* overlong */
	    {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    /* a surrogate */
	    {"\xe2\x82", "\"\xef\xbf\xbd\xef\xbf\xbd\""}, /* cut short */
	    {"\xf4\x90\x80\x80",
	     "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    /* above U+10FFFF */
	};
	struct jsonw w;

	jsonw_init(&w);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		jsonw_reset(&w);
		jsonw_string(&w, cases[i].in);
		ck_assert(jsonw_ok(&w));
		ck_assert_msg(strcmp(w.p, cases[i].out) == 0, "case %zu: %s", i,
			      w.p);
	}
	jsonw_free(&w);
}
END_TEST

/* Random bytes (often invalid UTF-8, control characters, quotes) always
 * give text jansson parses; valid UTF-8 comes back unchanged. */
START_TEST(random_strings_round_trip_through_jansson)
{
	struct jsonw w;
	char in[64];

	rng_seed(0x5eed0001);
	jsonw_init(&w);
	for (int round = 0; round < 5000; round++) {
		size_t n = rng_next() % sizeof(in);
		bool ascii = round % 2 == 0;
		json_error_t err;
		json_t *j;

		for (size_t i = 0; i < n; i++) {
			unsigned v = (unsigned)(rng_next() & 0xff);

			in[i] = (char)(ascii ? v & 0x7f : v);
			if (in[i] == '\0')
				in[i] = '"';
		}
		jsonw_reset(&w);
		jsonw_begin_array(&w);
		jsonw_stringn(&w, in, n);
		jsonw_end_array(&w);
		ck_assert(jsonw_ok(&w));
		j = json_loadb(w.p, w.len, 0, &err);
		ck_assert_msg(j != NULL, "round %d: %s", round, err.text);
		ck_assert(json_is_string(json_array_get(j, 0)));
		if (ascii) {
			ck_assert_uint_eq(
			    json_string_length(json_array_get(j, 0)), n);
			ck_assert(
			    memcmp(json_string_value(json_array_get(j, 0)), in,
				   n) == 0);
		}
		json_decref(j);
	}
	jsonw_free(&w);
}
END_TEST

START_TEST(top_level_items_splice_into_an_array)
{
	struct jsonw items, w;

	jsonw_init(&items);
	jsonw_init(&w);
	jsonw_begin_object(&items);
	jsonw_kv_int(&items, "rows_affected", 1);
	jsonw_end_object(&items);
	jsonw_begin_object(&items);
	jsonw_kv_int(&items, "rows_affected", 2);
	jsonw_end_object(&items);
	ck_assert_str_eq(items.p,
			 "{\"rows_affected\":1},{\"rows_affected\":2}");

	jsonw_begin_array(&w);
	jsonw_int(&w, 0);
	jsonw_items(&w, items.p, items.len);
	jsonw_items(&w, "", 0); /* nothing: no stray comma */
	jsonw_int(&w, 3);
	jsonw_end_array(&w);
	ck_assert(jsonw_ok(&w));
	ck_assert_str_eq(w.p,
			 "[0,{\"rows_affected\":1},{\"rows_affected\":2},3]");

	jsonw_reset(&w);
	jsonw_begin_array(&w);
	jsonw_items(&w, "", 0);
	jsonw_end_array(&w);
	ck_assert_str_eq(w.p, "[]");
	jsonw_free(&items);
	jsonw_free(&w);
}
END_TEST

START_TEST(misuse_fails_and_stays_failed)
{
	struct jsonw w;

	/* a value where a key is due */
	jsonw_init(&w);
	jsonw_begin_object(&w);
	jsonw_int(&w, 1);
	ck_assert(!jsonw_ok(&w));
	jsonw_end_object(&w);
	jsonw_kv_int(&w, "a", 1);
	ck_assert(!jsonw_ok(&w));
	jsonw_free(&w);

	/* a key in an array, an end with nothing open, the wrong end, an
	 * object closed right after a key, items outside an array */
	jsonw_init(&w);
	jsonw_begin_array(&w);
	jsonw_key(&w, "k");
	ck_assert(!jsonw_ok(&w));
	jsonw_free(&w);

	jsonw_init(&w);
	jsonw_end_array(&w);
	ck_assert(!jsonw_ok(&w));
	jsonw_free(&w);

	jsonw_init(&w);
	jsonw_begin_array(&w);
	jsonw_end_object(&w);
	ck_assert(!jsonw_ok(&w));
	jsonw_free(&w);

	jsonw_init(&w);
	jsonw_begin_object(&w);
	jsonw_key(&w, "k");
	jsonw_end_object(&w);
	ck_assert(!jsonw_ok(&w));
	jsonw_free(&w);

	jsonw_init(&w);
	jsonw_begin_object(&w);
	jsonw_items(&w, "1", 1);
	ck_assert(!jsonw_ok(&w));
	jsonw_free(&w);

	/* too deep */
	jsonw_init(&w);
	for (int i = 0; i < JSONW_DEPTH_MAX; i++)
		jsonw_begin_array(&w);
	ck_assert(jsonw_ok(&w));
	jsonw_begin_array(&w);
	ck_assert(!jsonw_ok(&w));
	jsonw_free(&w);
}
END_TEST

START_TEST(allocation_failure_is_reported_and_reset_clears_it)
{
	struct jsonw w;
	char big[1000];

	memset(big, 'x', sizeof(big));
	jsonw_init(&w);
	mem_fail_after(1);
	jsonw_stringn(&w, big, sizeof(big));
	mem_fail_reset();
	ck_assert(!jsonw_ok(&w));
	jsonw_int(&w, 1);
	ck_assert(!jsonw_ok(&w));
	jsonw_reset(&w);
	ck_assert(jsonw_ok(&w));
	jsonw_stringn(&w, big, sizeof(big));
	ck_assert(jsonw_ok(&w));
	ck_assert_uint_eq(w.len, sizeof(big) + 2);
	/* growing past the first buffer keeps what was there */
	ck_assert(w.p[0] == '"' && w.p[w.len - 1] == '"');
	jsonw_free(&w);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    writes_nested_values_with_commas_and_colons,
	    integers_at_the_limits,
	    escapes_quotes_backslashes_and_control_characters,
	    invalid_utf8_becomes_replacement_characters,
	    random_strings_round_trip_through_jansson,
	    top_level_items_splice_into_an_array,
	    misuse_fails_and_stays_failed,
	    allocation_failure_is_reported_and_reset_clears_it,
	    NULL,
	};

	return suite_main("common_jsonw", 0, tests);
}
