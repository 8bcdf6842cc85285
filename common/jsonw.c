/*
 * jsonw.c - JSON text writer (see jsonw.h).
 */
#include "common/jsonw.h"
#include "common/mem.h"

#include <stdint.h>
#include <string.h>

void jsonw_init(struct jsonw *w)
{
	memset(w, 0, sizeof(*w));
}

void jsonw_free(struct jsonw *w)
{
	mem_free(w->p);
	jsonw_init(w);
}

void jsonw_reset(struct jsonw *w)
{
	char *p = w->p;
	size_t cap = w->cap;

	jsonw_init(w);
	w->p = p;
	w->cap = cap;
	if (p != NULL)
		p[0] = '\0';
}

bool jsonw_ok(const struct jsonw *w)
{
	return !w->failed;
}

bool jsonw_done(const struct jsonw *w)
{
	return !w->failed && w->depth == 0 && w->len > 0;
}

/* Grows w for n more bytes and the NUL. */
static bool grow(struct jsonw *w, size_t n)
{
	size_t cap;
	char *p;

	if (w->failed)
		return false;
	if (n > SIZE_MAX / 4 - w->len) {
		w->failed = true;
		return false;
	}
	cap = w->cap ? w->cap : 256;
	while (cap <= w->len + n)
		cap *= 2;
	p = mem_realloc(w->p, cap);
	if (p == NULL) {
		w->failed = true;
		return false;
	}
	w->p = p;
	w->cap = cap;
	return true;
}

/* Room for n more bytes and the NUL (a failed writer has none). */
static inline bool room(struct jsonw *w, size_t n)
{
	return (n < w->cap - w->len && !w->failed) || grow(w, n);
}

static inline void put(struct jsonw *w, const char *s, size_t n)
{
	if (!room(w, n))
		return;
	memcpy(w->p + w->len, s, n);
	w->len += n;
	w->p[w->len] = '\0';
}

static inline void put_c(struct jsonw *w, char c)
{
	if (!room(w, 1))
		return;
	w->p[w->len++] = c;
	w->p[w->len] = '\0';
}

/* Before a value: the comma, or a refusal where a key is due. */
static bool value_start(struct jsonw *w)
{
	uint64_t bit = (uint64_t)1 << w->depth;

	if (w->failed)
		return false;
	if (w->key_due) {
		w->failed = true; /* a value where a key belongs */
		return false;
	}
	if ((w->object & bit) == 0 && (w->filled & bit) != 0)
		put_c(w, ',');
	w->filled |= bit;
	/* In an object, a key follows this value. */
	w->key_due = (w->object & bit) != 0;
	return !w->failed;
}

static void begin(struct jsonw *w, char open, bool object)
{
	uint64_t bit;

	if (!value_start(w))
		return;
	if (w->depth >= JSONW_DEPTH_MAX) {
		w->failed = true;
		return;
	}
	put_c(w, open);
	w->depth++;
	bit = (uint64_t)1 << w->depth;
	w->filled &= ~bit;
	if (object)
		w->object |= bit;
	else
		w->object &= ~bit;
	w->key_due = object;
}

static void end(struct jsonw *w, char close, bool object)
{
	uint64_t bit = (uint64_t)1 << w->depth;

	if (w->failed)
		return;
	/* Balanced, of the right kind, and not right after a key. */
	if (w->depth == 0 || ((w->object & bit) != 0) != object ||
	    (object && !w->key_due)) {
		w->failed = true;
		return;
	}
	put_c(w, close);
	w->depth--;
	w->key_due = (w->object & ((uint64_t)1 << w->depth)) != 0;
}

void jsonw_begin_object(struct jsonw *w)
{
	begin(w, '{', true);
}

void jsonw_end_object(struct jsonw *w)
{
	end(w, '}', true);
}

void jsonw_begin_array(struct jsonw *w)
{
	begin(w, '[', false);
}

void jsonw_end_array(struct jsonw *w)
{
	end(w, ']', false);
}

size_t jsonw_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t len;

	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/* The string's text with its quotes. */
static void put_string(struct jsonw *w, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	/* Most strings are plain ASCII: one reservation, one copy. */
	while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' &&
	       s[i] != '\\')
		i++;
	if (i == n) {
		if (!room(w, n + 2))
			return;
		w->p[w->len] = '"';
		memcpy(w->p + w->len + 1, str, n);
		w->p[w->len + 1 + n] = '"';
		w->len += n + 2;
		w->p[w->len] = '\0';
		return;
	}
	i = 0;
	put_c(w, '"');
	while (i < n && !w->failed) {
		size_t run = i, len;
		unsigned char c;

		/* Plain ASCII goes out in one copy. */
		while (run < n && s[run] >= 0x20 && s[run] < 0x80 &&
		       s[run] != '"' && s[run] != '\\')
			run++;
		if (run > i) {
			put(w, str + i, run - i);
			i = run;
			continue;
		}
		c = s[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};

			put(w, e, 2);
			i++;
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u',		'0',
				     '0',  hex[c >> 4], hex[c & 15]};

			if (c == '\n')
				put(w, "\\n", 2);
			else if (c == '\t')
				put(w, "\\t", 2);
			else if (c == '\r')
				put(w, "\\r", 2);
			else
				put(w, e, 6);
			i++;
		} else if ((len = jsonw_utf8_len(s + i, n - i)) > 0) {
			put(w, str + i, len);
			i += len;
		} else {
			put(w, "\xEF\xBF\xBD", 3); /* U+FFFD */
			i++;
		}
	}
	put_c(w, '"');
}

void jsonw_key(struct jsonw *w, const char *key)
{
	uint64_t bit = (uint64_t)1 << w->depth;

	if (w->failed)
		return;
	if (!w->key_due || key == NULL) {
		w->failed = true;
		return;
	}
	if ((w->filled & bit) != 0)
		put_c(w, ',');
	w->filled |= bit;
	put_string(w, key, strlen(key));
	put_c(w, ':');
	w->key_due = false;
}

void jsonw_stringn(struct jsonw *w, const char *s, size_t n)
{
	if (s == NULL) {
		jsonw_null(w);
		return;
	}
	if (value_start(w))
		put_string(w, s, n);
}

void jsonw_string(struct jsonw *w, const char *s)
{
	jsonw_stringn(w, s, s != NULL ? strlen(s) : 0);
}

void jsonw_int(struct jsonw *w, long long v)
{
	char buf[24];
	size_t i = sizeof(buf);
	/* The magnitude as unsigned: -LLONG_MIN overflows a long long. */
	unsigned long long m =
	    v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	if (!value_start(w))
		return;
	do {
		buf[--i] = (char)('0' + m % 10);
		m /= 10;
	} while (m != 0);
	if (v < 0)
		buf[--i] = '-';
	put(w, buf + i, sizeof(buf) - i);
}

void jsonw_bool(struct jsonw *w, bool v)
{
	if (value_start(w))
		put(w, v ? "true" : "false", v ? 4 : 5);
}

void jsonw_null(struct jsonw *w)
{
	if (value_start(w))
		put(w, "null", 4);
}

void jsonw_items(struct jsonw *w, const char *items, size_t n)
{
	uint64_t bit = (uint64_t)1 << w->depth;

	if (w->failed)
		return;
	if (w->depth == 0 || (w->object & bit) != 0) {
		w->failed = true; /* items go into an open array only */
		return;
	}
	if (n == 0)
		return;
	if ((w->filled & bit) != 0)
		put_c(w, ',');
	w->filled |= bit;
	put(w, items, n);
}

void jsonw_raw(struct jsonw *w, const char *s, size_t n)
{
	put(w, s, n);
}

void jsonw_kv_string(struct jsonw *w, const char *key, const char *s)
{
	jsonw_key(w, key);
	jsonw_string(w, s);
}

void jsonw_kv_int(struct jsonw *w, const char *key, long long v)
{
	jsonw_key(w, key);
	jsonw_int(w, v);
}
