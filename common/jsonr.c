/*
 * jsonr.c - JSON reader (see jsonr.h): recursive descent over the bytes,
 * nodes appended to one growing array, strings decoded into one buffer as
 * large as the input (a decoded string never outgrows its text, so the
 * buffer never moves and node pointers into it stay valid).
 */
#include "common/jsonr.h"
#include "common/jsonw.h"
#include "common/mem.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	const char *buf, *p, *end;
	struct jsonr_doc *d;
	char *t; /* next free byte of d->text */
	int depth;
	struct jsonr_error *e;
	int rc;
};

/* Records the first error, at position at; always -1. */
static int fail(struct parser *ps, const char *at, const char *what)
{
	if (ps->rc == 0) {
		int line = 1;
		const char *bol = ps->buf;

		for (const char *q = ps->buf; q < at; q++)
			if (*q == '\n') {
				line++;
				bol = q + 1;
			}
		ps->e->line = line;
		ps->e->column = (int)(at - bol) + 1;
		str_copy(ps->e->text, sizeof(ps->e->text), what);
		ps->rc = -EINVAL;
	}
	return -1;
}

static int fail_nomem(struct parser *ps)
{
	if (ps->rc == 0) {
		ps->e->line = ps->e->column = 0;
		str_copy(ps->e->text, sizeof(ps->e->text), "out of memory");
		ps->rc = -ENOMEM;
	}
	return -1;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' ||
				   *ps->p == '\t' || *ps->p == '\r'))
		ps->p++;
}

/* Appends a node; its index, or -1. */
static long add_node(struct parser *ps, enum jsonr_type type, const char *key,
		     size_t keylen)
{
	struct jsonr_doc *d = ps->d;
	struct jsonr_node *n;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 32;

		if (cap > UINT32_MAX)
			return fail(ps, ps->p, "document too large");
		n = mem_realloc(d->nodes, cap * sizeof(*n));
		if (n == NULL)
			return fail_nomem(ps);
		d->nodes = n;
		d->cap = cap;
	}
	n = &d->nodes[d->n];
	memset(n, 0, sizeof(*n));
	n->type = type;
	n->span = 1;
	n->key = key;
	n->keylen = (uint32_t)keylen;
	return (long)d->n++;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* One \u escape of four hex digits (two for a surrogate pair) at ps->p (on the
 * 'u'), written as UTF-8. */
static int unicode_escape(struct parser *ps)
{
	const char *at = ps->p - 1;
	unsigned cp, lo;

	if (ps->end - ps->p < 5 || hex4(ps->p + 1, &cp) < 0)
		return fail(ps, at, "invalid \\u escape");
	ps->p += 5;
	if (cp >= 0xDC00 && cp <= 0xDFFF)
		return fail(ps, at, "invalid Unicode: a lone low surrogate");
	if (cp >= 0xD800 && cp <= 0xDBFF) {
		if (ps->end - ps->p < 6 || ps->p[0] != '\\' ||
		    ps->p[1] != 'u' || hex4(ps->p + 2, &lo) < 0 ||
		    lo < 0xDC00 || lo > 0xDFFF)
			return fail(ps, at,
				    "invalid Unicode: a lone high surrogate");
		ps->p += 6;
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
	}
	if (cp == 0)
		return fail(ps, at, "\\u0000 is not allowed");
	if (cp < 0x80) {
		*ps->t++ = (char)cp;
	} else if (cp < 0x800) {
		*ps->t++ = (char)(0xC0 | (cp >> 6));
		*ps->t++ = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*ps->t++ = (char)(0xE0 | (cp >> 12));
		*ps->t++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*ps->t++ = (char)(0x80 | (cp & 0x3F));
	} else {
		*ps->t++ = (char)(0xF0 | (cp >> 18));
		*ps->t++ = (char)(0x80 | ((cp >> 12) & 0x3F));
		*ps->t++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*ps->t++ = (char)(0x80 | (cp & 0x3F));
	}
	return 0;
}

/* A string at ps->p (on its opening quote), decoded into the text buffer;
 * *out and *len give it. */
static int string(struct parser *ps, const char **out, size_t *len)
{
	char *start = ps->t;
	const char *open = ps->p;

	ps->p++;
	for (;;) {
		const char *run = ps->p;
		unsigned char c;
		size_t n;

		while (run < ps->end && (unsigned char)*run >= 0x20 &&
		       (unsigned char)*run < 0x80 && *run != '"' &&
		       *run != '\\')
			run++;
		if (run > ps->p) {
			memcpy(ps->t, ps->p, (size_t)(run - ps->p));
			ps->t += run - ps->p;
			ps->p = run;
		}
		if (ps->p >= ps->end)
			return fail(ps, open, "unterminated string");
		c = (unsigned char)*ps->p;
		if (c == '"') {
			ps->p++;
			break;
		}
		if (c < 0x20)
			return fail(ps, ps->p, "control character in a string");
		if (c >= 0x80) {
			n = jsonw_utf8_len((const unsigned char *)ps->p,
					   (size_t)(ps->end - ps->p));
			if (n == 0)
				return fail(ps, ps->p, "invalid UTF-8");
			memcpy(ps->t, ps->p, n);
			ps->t += n;
			ps->p += n;
			continue;
		}
		/* a backslash */
		if (ps->p + 1 >= ps->end)
			return fail(ps, open, "unterminated string");
		ps->p++;
		switch (*ps->p) {
		case '"':
		case '\\':
		case '/':
			*ps->t++ = *ps->p++;
			break;
		case 'b':
			*ps->t++ = '\b';
			ps->p++;
			break;
		case 'f':
			*ps->t++ = '\f';
			ps->p++;
			break;
		case 'n':
			*ps->t++ = '\n';
			ps->p++;
			break;
		case 'r':
			*ps->t++ = '\r';
			ps->p++;
			break;
		case 't':
			*ps->t++ = '\t';
			ps->p++;
			break;
		case 'u':
			if (unicode_escape(ps) < 0)
				return -1;
			break;
		default:
			return fail(ps, ps->p - 1, "invalid escape");
		}
	}
	*len = (size_t)(ps->t - start);
	*ps->t++ = '\0';
	*out = start;
	return 0;
}

static int number(struct parser *ps, long idx)
{
	const char *s = ps->p, *p = ps->p;
	bool neg = false, real = false;
	unsigned long long v = 0, limit;
	char small[64], *copy;
	double dv;

	if (p < ps->end && *p == '-') {
		neg = true;
		p++;
	}
	if (p >= ps->end || *p < '0' || *p > '9')
		return fail(ps, s, "invalid number");
	if (*p == '0') {
		p++;
	} else {
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < ps->end && *p == '.') {
		real = true;
		p++;
		if (p >= ps->end || *p < '0' || *p > '9')
			return fail(ps, s, "invalid number");
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E')) {
		real = true;
		p++;
		if (p < ps->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= ps->end || *p < '0' || *p > '9')
			return fail(ps, s, "invalid number");
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	ps->p = p;
	if (!real) {
		limit = neg ? (unsigned long long)LLONG_MAX + 1
			    : (unsigned long long)LLONG_MAX;
		for (const char *q = s + neg; q < p; q++) {
			unsigned digit = (unsigned)(*q - '0');

			if (v > (limit - digit) / 10)
				return fail(ps, s, "too big integer");
			v = v * 10 + digit;
		}
		ps->d->nodes[idx].type = JSONR_INT;
		ps->d->nodes[idx].v.i =
		    neg ? (long long)(0ULL - v) : (long long)v;
		return 0;
	}
	/* strtod needs a terminated copy. */
	copy = (size_t)(p - s) < sizeof(small) ? small
					       : mem_alloc((size_t)(p - s) + 1);
	if (copy == NULL)
		return fail_nomem(ps);
	memcpy(copy, s, (size_t)(p - s));
	copy[p - s] = '\0';
	dv = strtod(copy, NULL);
	if (copy != small)
		mem_free(copy);
	if (isinf(dv))
		return fail(ps, s, "real number overflow");
	ps->d->nodes[idx].type = JSONR_REAL;
	ps->d->nodes[idx].v.d = dv;
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	const struct jsonr_node *x = *(const struct jsonr_node *const *)a;
	const struct jsonr_node *y = *(const struct jsonr_node *const *)b;
	size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
	int c = memcmp(x->key, y->key, n);

	if (c != 0)
		return c;
	return x->keylen < y->keylen ? -1 : x->keylen > y->keylen;
}

static bool same_key(const struct jsonr_node *x, const struct jsonr_node *y)
{
	return x->keylen == y->keylen && memcmp(x->key, y->key, x->keylen) == 0;
}

/* A key the object at idx (complete) repeats, or NULL: pairwise when
 * small, sorted when large, so a body of many keys costs n log n.  *nomem
 * is set if the sort could not get its memory. */
static const struct jsonr_node *duplicate(const struct jsonr_node *o,
					  bool *nomem)
{
	const struct jsonr_node *a, *b, *dup = NULL;
	const struct jsonr_node **v;
	size_t i, j, n = o->count;

	if (n <= 16) {
		jsonr_foreach(o, i, a)
		{
			for (j = i + 1, b = a + a->span; j < n;
			     j++, b += b->span)
				if (same_key(a, b))
					return a;
		}
		return NULL;
	}
	v = mem_alloc(n * sizeof(*v));
	if (v == NULL) {
		*nomem = true;
		return NULL;
	}
	jsonr_foreach(o, i, a) v[i] = a;
	qsort(v, n, sizeof(*v), key_cmp);
	for (i = 1; i < n && dup == NULL; i++)
		if (same_key(v[i - 1], v[i]))
			dup = v[i];
	mem_free(v);
	return dup;
}

static int value(struct parser *ps, const char *key, size_t keylen);

static int container(struct parser *ps, long idx, bool object)
{
	const char *open = ps->p;
	char close = object ? '}' : ']';
	uint32_t count = 0;
	const struct jsonr_node *dup;
	bool nomem = false;

	if (++ps->depth > JSONR_DEPTH_MAX)
		return fail(ps, ps->p, "maximum nesting depth reached");
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return 0;
	}
	for (;;) {
		const char *key = NULL;
		size_t keylen = 0;

		skip_ws(ps);
		if (object) {
			if (ps->p >= ps->end || *ps->p != '"')
				return fail(ps, ps->p,
					    "string or '}' expected");
			if (string(ps, &key, &keylen) < 0)
				return -1;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':')
				return fail(ps, ps->p, "':' expected");
			ps->p++;
			skip_ws(ps);
		}
		if (value(ps, key, keylen) < 0)
			return -1;
		count++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			break;
		}
		return fail(ps, ps->p < ps->end ? ps->p : open,
			    object ? "',' or '}' expected"
				   : "',' or ']' expected");
	}
	ps->depth--;
	ps->d->nodes[idx].count = count;
	ps->d->nodes[idx].span = (uint32_t)(ps->d->n - (size_t)idx);
	if (!object)
		return 0;
	dup = duplicate(&ps->d->nodes[idx], &nomem);
	if (nomem)
		return fail_nomem(ps);
	if (dup != NULL) {
		char m[80];

		snprintf(m, sizeof(m), "duplicate object key \"%.40s\"",
			 dup->key);
		return fail(ps, open, m);
	}
	return 0;
}

static bool literal(struct parser *ps, const char *word, size_t n)
{
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return false;
	ps->p += n;
	return true;
}

static int value(struct parser *ps, const char *key, size_t keylen)
{
	long idx = add_node(ps, JSONR_NULL, key, keylen);
	const char *s;
	size_t n;

	if (idx < 0)
		return -1;
	if (ps->p >= ps->end)
		return fail(ps, ps->p, "unexpected end of input");
	switch (*ps->p) {
	case '{':
		ps->d->nodes[idx].type = JSONR_OBJECT;
		return container(ps, idx, true);
	case '[':
		ps->d->nodes[idx].type = JSONR_ARRAY;
		return container(ps, idx, false);
	case '"':
		if (string(ps, &s, &n) < 0)
			return -1;
		ps->d->nodes[idx].type = JSONR_STRING;
		ps->d->nodes[idx].v.s = s;
		ps->d->nodes[idx].count = (uint32_t)n;
		return 0;
	case 't':
		if (!literal(ps, "true", 4))
			break;
		ps->d->nodes[idx].type = JSONR_TRUE;
		return 0;
	case 'f':
		if (!literal(ps, "false", 5))
			break;
		ps->d->nodes[idx].type = JSONR_FALSE;
		return 0;
	case 'n':
		if (!literal(ps, "null", 4))
			break;
		return 0;
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return number(ps, idx);
		break;
	}
	return fail(ps, ps->p, "unexpected token");
}

int jsonr_parse(struct jsonr_doc *d, const char *buf, size_t len,
		struct jsonr_error *e)
{
	struct parser ps = {
	    .buf = buf, .p = buf, .end = buf + len, .d = d, .e = e};

	memset(d, 0, sizeof(*d));
	memset(e, 0, sizeof(*e));
	if (len > UINT32_MAX) {
		fail(&ps, buf, "document too large");
		return ps.rc;
	}
	/* Decoded strings with their NULs fit in the text's length. */
	d->text = mem_alloc(len + 1);
	if (d->text == NULL) {
		fail_nomem(&ps);
		return ps.rc;
	}
	ps.t = d->text;
	skip_ws(&ps);
	if (ps.p >= ps.end || (*ps.p != '{' && *ps.p != '['))
		fail(&ps, ps.p, "'[' or '{' expected");
	else if (value(&ps, NULL, 0) == 0) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			fail(&ps, ps.p, "end of file expected");
	}
	return ps.rc;
}

void jsonr_free(struct jsonr_doc *d)
{
	mem_free(d->nodes);
	mem_free(d->text);
	memset(d, 0, sizeof(*d));
}

const struct jsonr_node *jsonr_root(const struct jsonr_doc *d)
{
	return d->n > 0 ? &d->nodes[0] : NULL;
}

const struct jsonr_node *jsonr_get(const struct jsonr_node *o, const char *key)
{
	const struct jsonr_node *c;
	size_t i, n;

	if (!jsonr_is(o, JSONR_OBJECT) || key == NULL)
		return NULL;
	n = strlen(key);
	jsonr_foreach(o, i, c)
	{
		if (c->keylen == n && memcmp(c->key, key, n) == 0)
			return c;
	}
	return NULL;
}
