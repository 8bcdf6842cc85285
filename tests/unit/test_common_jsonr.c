/*
 * test_common_jsonr.c - the JSON reader: exact trees, every kind of bad
 * input with its position, and seeded differential runs against jansson
 * (random documents, then random byte mutations of them): both must accept
 * and reject the same texts and read the same values.
 */
#include "common/common.h"

#include "tests/lib/rng.h"
#include "tests/lib/suite.h"
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned rnd(unsigned n)
{
	return (unsigned)(rng_next() % n);
}

static int parse(struct jsonr_doc *d, const char *text, struct jsonr_error *e)
{
	return jsonr_parse(d, text, strlen(text), e);
}

START_TEST(reads_a_request_shaped_document)
{
	static const char text[] =
	    " {\"branches\": [{\"resource\": \"bank_a\", \"statements\": "
	    "[{\"sql\": \"UPDATE t SET v = v - $1\", \"params\": [1, -2.5, "
	    "null, true, false, \"x\"]}]}], \"timeout_ms\": 5000, "
	    "\"empty\": {}, \"none\": []}\n";
	struct jsonr_doc d;
	struct jsonr_error e;
	const struct jsonr_node *root, *b, *st, *p, *c;
	size_t i;
	enum jsonr_type want[] = {JSONR_INT,  JSONR_REAL,  JSONR_NULL,
				  JSONR_TRUE, JSONR_FALSE, JSONR_STRING};

	ck_assert_int_eq(parse(&d, text, &e), 0);
	root = jsonr_root(&d);
	ck_assert(jsonr_is(root, JSONR_OBJECT));
	ck_assert_uint_eq(jsonr_size(root), 4);
	ck_assert_uint_eq(root->span, d.n);
	b = jsonr_get(root, "branches");
	ck_assert(jsonr_is(b, JSONR_ARRAY));
	ck_assert_uint_eq(jsonr_size(b), 1);
	ck_assert_str_eq(jsonr_get(b + 1, "resource")->v.s, "bank_a");
	st = jsonr_get(b + 1, "statements");
	ck_assert_str_eq(jsonr_get(st + 1, "sql")->v.s,
			 "UPDATE t SET v = v - $1");
	p = jsonr_get(st + 1, "params");
	ck_assert_uint_eq(jsonr_size(p), 6);
	jsonr_foreach(p, i, c) ck_assert_int_eq(c->type, want[i]);
	ck_assert_int_eq((p + 1)->v.i, 1);
	ck_assert(fabs((p + 2)->v.d + 2.5) < 1e-12);
	ck_assert_int_eq(jsonr_get(root, "timeout_ms")->v.i, 5000);
	ck_assert_uint_eq(jsonr_size(jsonr_get(root, "empty")), 0);
	ck_assert(jsonr_is(jsonr_get(root, "none"), JSONR_ARRAY));
	ck_assert_ptr_null(jsonr_get(root, "missing"));
	ck_assert_ptr_null(jsonr_get(b, "branches")); /* not an object */
	jsonr_free(&d);
}
END_TEST

START_TEST(decodes_escapes_and_unicode)
{
	struct jsonr_doc d;
	struct jsonr_error e;
	const struct jsonr_node *s;

	ck_assert_int_eq(
	    parse(
		&d,
		"[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00"
		"caf\xc3\xa9\"]",
		&e),
	    0);
	s = jsonr_root(&d) + 1;
	ck_assert_str_eq(s->v.s, "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac"
				 "\xf0\x9f\x98\x80"
				 "caf\xc3\xa9");
	ck_assert_uint_eq(s->count, strlen(s->v.s));
	jsonr_free(&d);
}
END_TEST

START_TEST(integers_at_the_limits)
{
	struct jsonr_doc d;
	struct jsonr_error e;

	ck_assert_int_eq(
	    parse(&d, "[-9223372036854775808, 9223372036854775807, -0, 0]", &e),
	    0);
	ck_assert(jsonr_root(&d)[1].v.i == LLONG_MIN);
	ck_assert(jsonr_root(&d)[2].v.i == LLONG_MAX);
	ck_assert(jsonr_root(&d)[3].v.i == 0);
	jsonr_free(&d);
	ck_assert_int_eq(parse(&d, "[9223372036854775808]", &e), -EINVAL);
	ck_assert_str_eq(e.text, "too big integer");
	jsonr_free(&d);
	ck_assert_int_eq(parse(&d, "[-9223372036854775809]", &e), -EINVAL);
	jsonr_free(&d);
	ck_assert_int_eq(parse(&d, "[1e400]", &e), -EINVAL);
	ck_assert_str_eq(e.text, "real number overflow");
	jsonr_free(&d);
}
END_TEST

/* Each bad text fails with its message at its line and column. */
START_TEST(bad_input_names_what_and_where)
{
	static const struct {
		const char *text;
		int line, column;
		const char *what;
	} cases[] = {
	    {"", 1, 1, "'[' or '{' expected"},
	    {"\"just a string\"", 1, 1, "'[' or '{' expected"},
	    {"{\"a\": 1,\n \"a\": 2}", 1, 1, "duplicate object key \"a\""},
	    {"{\"a\" 1}", 1, 6, "':' expected"},
	    {"{\"a\": 1 \"b\": 2}", 1, 9, "',' or '}' expected"},
	    {"[1, 2", 1, 1, "',' or ']' expected"},
	    {"[1,]", 1, 4, "unexpected token"},
	    {"{,}", 1, 2, "string or '}' expected"},
	    {"[01]", 1, 3, "',' or ']' expected"},
	    {"[1.]", 1, 2, "invalid number"},
	    {"[-]", 1, 2, "invalid number"},
	    {"[1e]", 1, 2, "invalid number"},
	    {"[tru]", 1, 2, "unexpected token"},
	    {"[\"abc]", 1, 2, "unterminated string"},
	    {"[\"a\tb\"]", 1, 4, "control character in a string"},
	    {"[\"\\x\"]", 1, 3, "invalid escape"},
	    {"[\"\\u12g4\"]", 1, 3, "invalid \\u escape"},
	    {"[\"\\u0000\"]", 1, 3, "\\u0000 is not allowed"},
	    {"[\"\\ud800\"]", 1, 3, "invalid Unicode: a lone high surrogate"},
	    {"[\"\\udc00\"]", 1, 3, "invalid Unicode: a lone low surrogate"},
	    {"[\"\xff\"]", 1, 3, "invalid UTF-8"},
	    {"[\"\xed\xa0\x80\"]", 1, 3, "invalid UTF-8"},
	    {"[1] x", 1, 5, "end of file expected"},
	    {"\n\n  [1,\n   x]", 4, 4, "unexpected token"},
	};
	struct jsonr_doc d;
	struct jsonr_error e;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse(&d, cases[i].text, &e);

		ck_assert_msg(rc == -EINVAL, "case %zu accepted", i);
		ck_assert_msg(
		    strcmp(e.text, cases[i].what) == 0 &&
			e.line == cases[i].line && e.column == cases[i].column,
		    "case %zu: %d:%d %s", i, e.line, e.column, e.text);
		jsonr_free(&d);
	}
}
END_TEST

START_TEST(nesting_is_bounded)
{
	char deep[2 * JSONR_DEPTH_MAX + 8];
	struct jsonr_doc d;
	struct jsonr_error e;
	size_t n = 0;

	for (int i = 0; i < JSONR_DEPTH_MAX; i++)
		deep[n++] = '[';
	for (int i = 0; i < JSONR_DEPTH_MAX; i++)
		deep[n++] = ']';
	ck_assert_int_eq(jsonr_parse(&d, deep, n, &e), 0);
	ck_assert_uint_eq(d.n, JSONR_DEPTH_MAX);
	jsonr_free(&d);
	memmove(deep + 1, deep, n);
	deep[0] = '[';
	deep[n + 1] = ']';
	ck_assert_int_eq(jsonr_parse(&d, deep, n + 2, &e), -EINVAL);
	ck_assert_str_eq(e.text, "maximum nesting depth reached");
	jsonr_free(&d);
}
END_TEST

/* An object with many keys is checked for duplicates in n log n (by
 * sorting); a repeat among them is still found. */
START_TEST(many_keys_are_checked_for_duplicates)
{
	size_t cap = 20000 * 16, n = 0;
	char *text = malloc(cap);
	struct jsonr_doc d;
	struct jsonr_error e;

	ck_assert_ptr_nonnull(text);
	text[n++] = '{';
	for (int i = 0; i < 20000; i++)
		n += (size_t)snprintf(text + n, cap - n, "%s\"k%d\":%d",
				      i ? "," : "", i, i);
	text[n++] = '}';
	ck_assert_int_eq(jsonr_parse(&d, text, n, &e), 0);
	ck_assert_int_eq(jsonr_get(jsonr_root(&d), "k19999")->v.i, 19999);
	jsonr_free(&d);
	memcpy(text + n - 1, ",\"k7\":0}", 8); /* k7 again */
	ck_assert_int_eq(jsonr_parse(&d, text, n + 7, &e), -EINVAL);
	ck_assert_str_eq(e.text, "duplicate object key \"k7\"");
	jsonr_free(&d);
	free(text);
}
END_TEST

START_TEST(allocation_failure_is_reported)
{
	struct jsonr_doc d;
	struct jsonr_error e;
	int rc;

	for (long k = 1; k <= 3; k++) {
		mem_fail_after(k);
		rc = parse(&d, "[1, 2, 3]", &e);
		mem_fail_reset();
		ck_assert(rc == -ENOMEM || (rc == 0 && k > 2));
		jsonr_free(&d);
	}
	mem_fail_after(1);
	rc = parse(&d, "[1]", &e);
	mem_fail_reset();
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_str_eq(e.text, "out of memory");
	jsonr_free(&d);
}
END_TEST

/* ------------------------------------------------ differential testing */

struct gen {
	char *p;
	size_t len, cap;
};

static void emit(struct gen *g, const char *s, size_t n)
{
	if (g->len + n + 1 > g->cap) {
		g->cap = (g->len + n + 1) * 2;
		g->p = realloc(g->p, g->cap);
		ck_assert_ptr_nonnull(g->p);
	}
	memcpy(g->p + g->len, s, n);
	g->len += n;
	g->p[g->len] = '\0';
}

static void emits(struct gen *g, const char *s)
{
	emit(g, s, strlen(s));
}

static void ws(struct gen *g)
{
	static const char *const w[] = {"", "", "", " ", "\n", "\t ", "\r\n"};

	emits(g, w[rnd(7)]);
}

static void gen_string(struct gen *g)
{
	static const char *const parts[] = {"a",
					    "Z",
					    "0",
					    " ",
					    "\\\"",
					    "\\\\",
					    "\\/",
					    "\\n",
					    "\\t",
					    "\\b",
					    "\\f",
					    "\\r",
					    "\\u00e9",
					    "\\u20AC",
					    "\\ud83d\\ude00",
					    "\xc3\xa9",
					    "\xe2\x82\xac",
					    "\xf0\x9f\x98\x80",
					    "key",
					    "sql",
					    "k1",
					    "k2"};
	unsigned n = rnd(6);

	emits(g, "\"");
	for (unsigned i = 0; i < n; i++)
		emits(g, parts[rnd(sizeof(parts) / sizeof(parts[0]))]);
	emits(g, "\"");
}

static void gen_number(struct gen *g)
{
	static const char *const nums[] = {"0",
					   "-0",
					   "7",
					   "-12",
					   "123456789",
					   "1.5",
					   "-0.25",
					   "1e3",
					   "2E-2",
					   "6.02e+23",
					   "9223372036854775807",
					   "-9223372036854775808",
					   "1e308",
					   "0.1"};
	char buf[32];

	if (rnd(2)) {
		snprintf(buf, sizeof(buf), "%lld",
			 (long long)(rng_next() >> rnd(64)) *
			     (rnd(2) ? 1 : -1));
		emits(g, buf);
	} else {
		emits(g, nums[rnd(sizeof(nums) / sizeof(nums[0]))]);
	}
}

static void gen_value(struct gen *g, int depth)
{
	unsigned kind = depth > 4 ? rnd(5) : rnd(7);

	switch (kind) {
	case 0:
		gen_string(g);
		break;
	case 1:
		gen_number(g);
		break;
	case 2:
		emits(g, rnd(2) ? "true" : "false");
		break;
	case 3:
		emits(g, "null");
		break;
	case 4:
		gen_string(g);
		break;
	case 5: {
		unsigned n = rnd(5);

		emits(g, "[");
		for (unsigned i = 0; i < n; i++) {
			if (i)
				emits(g, ",");
			ws(g);
			gen_value(g, depth + 1);
			ws(g);
		}
		emits(g, "]");
		break;
	}
	default: {
		unsigned n = rnd(5);

		emits(g, "{");
		for (unsigned i = 0; i < n; i++) {
			if (i)
				emits(g, ",");
			ws(g);
			gen_string(g); /* keys repeat sometimes */
			ws(g);
			emits(g, ":");
			ws(g);
			gen_value(g, depth + 1);
		}
		ws(g);
		emits(g, "}");
		break;
	}
	}
}

/* Compares a jsonr subtree with a jansson value; false at the first
 * difference. */
static bool same(const struct jsonr_node *n, json_t *j)
{
	const struct jsonr_node *c;
	size_t i;

	switch (json_typeof(j)) {
	case JSON_NULL:
		return n->type == JSONR_NULL;
	case JSON_TRUE:
		return n->type == JSONR_TRUE;
	case JSON_FALSE:
		return n->type == JSONR_FALSE;
	case JSON_INTEGER:
		return n->type == JSONR_INT && n->v.i == json_integer_value(j);
	case JSON_REAL:
		return n->type == JSONR_REAL && n->v.d == json_real_value(j);
	case JSON_STRING:
		return n->type == JSONR_STRING &&
		       n->count == json_string_length(j) &&
		       memcmp(n->v.s, json_string_value(j), n->count) == 0;
	case JSON_ARRAY:
		if (n->type != JSONR_ARRAY || n->count != json_array_size(j))
			return false;
		jsonr_foreach(n, i, c)
		{
			if (!same(c, json_array_get(j, i)))
				return false;
		}
		return true;
	case JSON_OBJECT:
		if (n->type != JSONR_OBJECT || n->count != json_object_size(j))
			return false;
		jsonr_foreach(n, i, c)
		{
			json_t *v = json_object_getn(j, c->key, c->keylen);

			if (v == NULL || !same(c, v))
				return false;
		}
		return true;
	}
	return false;
}

/* Both parsers on one text: the same verdict and, if accepted, the same
 * tree.  Returns whether it was accepted. */
static bool agree(const char *text, size_t len, int round)
{
	struct jsonr_doc d;
	struct jsonr_error e;
	json_error_t je;
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	int rc = jsonr_parse(&d, text, len, &e);

	ck_assert_msg((rc == 0) == (j != NULL),
		      "round %d: jsonr %s, jansson %s: %.*s", round,
		      rc == 0 ? "accepts" : e.text,
		      j != NULL ? "accepts" : je.text, (int)len, text);
	if (j != NULL)
		ck_assert_msg(same(jsonr_root(&d), j),
			      "round %d: trees differ: %.*s", round, (int)len,
			      text);
	json_decref(j);
	jsonr_free(&d);
	return rc == 0;
}

START_TEST(agrees_with_jansson_on_random_documents)
{
	struct gen g = {0};
	int accepted = 0;

	rng_seed(0x5eed0002);
	for (int round = 0; round < 4000; round++) {
		g.len = 0;
		ws(&g);
		if (rnd(2)) {
			emits(&g, "{");
			gen_string(&g);
			emits(&g, ":");
			gen_value(&g, 1);
			emits(&g, "}");
		} else {
			emits(&g, "[");
			gen_value(&g, 1);
			emits(&g, "]");
		}
		ws(&g);
		accepted += agree(g.p, g.len, round);
	}
	/* Most generated documents are valid (duplicate keys are not). */
	ck_assert_int_gt(accepted, 3000);
	free(g.p);
}
END_TEST

START_TEST(agrees_with_jansson_on_mutated_documents)
{
	static const char bytes[] = "{}[]\",:\\/ \n\t0123456789.eE+-tfnu\xc3"
				    "\xa9\xff\x80\x01";
	struct gen g = {0};
	int accepted = 0, rejected = 0;

	rng_seed(0x5eed0003);
	for (int round = 0; round < 20000; round++) {
		size_t at;

		g.len = 0;
		emits(&g, "{");
		gen_string(&g);
		emits(&g, ":");
		gen_value(&g, 1);
		emits(&g, "}");
		for (unsigned m = 1 + rnd(2); m > 0; m--) {
			at = rnd((unsigned)g.len);
			switch (rnd(3)) {
			case 0: /* replace */
				g.p[at] = bytes[rnd(sizeof(bytes) - 1)];
				break;
			case 1: /* delete */
				memmove(g.p + at, g.p + at + 1, g.len - at);
				g.len--;
				break;
			default: /* insert */
				emit(&g, "x", 1);
				memmove(g.p + at + 1, g.p + at, g.len - at - 1);
				g.p[at] = bytes[rnd(sizeof(bytes) - 1)];
				break;
			}
		}
		if (agree(g.p, g.len, round))
			accepted++;
		else
			rejected++;
	}
	/* Both verdicts were exercised. */
	ck_assert_int_gt(accepted, 500);
	ck_assert_int_gt(rejected, 5000);
	free(g.p);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    reads_a_request_shaped_document,
	    decodes_escapes_and_unicode,
	    integers_at_the_limits,
	    bad_input_names_what_and_where,
	    nesting_is_bounded,
	    many_keys_are_checked_for_duplicates,
	    allocation_failure_is_reported,
	    agrees_with_jansson_on_random_documents,
	    agrees_with_jansson_on_mutated_documents,
	    NULL,
	};

	return suite_main("common_jsonr", 60, tests);
}
