/*
 * jsonw.h - writes JSON text straight into a growing buffer.  (Part of
 * common/; include common/common.h.)
 *
 * For the answers the coordinator sends on every transaction: building a
 * jansson tree and dumping it cost more than everything else the loop did
 * for a transaction (docs/bench-2pc.md, "Answers written directly").
 * jansson still parses requests and builds the rare answers.
 *
 *   struct jsonw w;
 *   jsonw_init(&w);
 *   jsonw_begin_object(&w);
 *   jsonw_key(&w, "gid");
 *   jsonw_string(&w, gid);
 *   jsonw_end_object(&w);
 *   if (!jsonw_ok(&w)) ... out of memory or misuse ...
 *   send(w.p, w.len); jsonw_free(&w);
 *
 * Rules:
 *   - Commas and the colon after a key are the writer's: call key, value,
 *     key, value.  Values written at the top level are separated by commas
 *     too: a list of items that jsonw_items() splices into an array later.
 *   - Strings come out as valid UTF-8: a byte that does not start or
 *     continue a well-formed UTF-8 sequence becomes U+FFFD, so text from a
 *     database in another encoding cannot make the answer invalid.  Control
 *     characters, quotes and backslashes are escaped.
 *   - Errors are sticky: after an allocation failure or a misuse (a value
 *     where a key is due, an unbalanced end, nesting deeper than
 *     JSONW_DEPTH_MAX) every call does nothing and jsonw_ok() is false.
 *   - w.p is always NUL-terminated (once anything was written) and w.len
 *     excludes the NUL.
 */
#ifndef DECREE_COMMON_JSONW_H
#define DECREE_COMMON_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSONW_DEPTH_MAX 63

struct jsonw {
	char *p;    /* the text; NULL until something is written */
	size_t len; /* bytes of text */
	/* private */
	size_t cap;
	int depth;	 /* open objects and arrays */
	uint64_t filled; /* bit d: level d holds a value already */
	uint64_t object; /* bit d: level d is an object */
	bool key_due;	 /* in an object, a key comes next */
	bool failed;
};

void jsonw_init(struct jsonw *w);
void jsonw_free(struct jsonw *w);
/* Empties w for reuse, keeping its memory. */
void jsonw_reset(struct jsonw *w);
/* True if everything written so far went in. */
bool jsonw_ok(const struct jsonw *w);
/* True if w is ok and holds complete text: something written, nothing
 * left open. */
bool jsonw_done(const struct jsonw *w);

void jsonw_begin_object(struct jsonw *w);
void jsonw_end_object(struct jsonw *w);
void jsonw_begin_array(struct jsonw *w);
void jsonw_end_array(struct jsonw *w);
void jsonw_key(struct jsonw *w, const char *key);

/* A string; NULL writes null. */
void jsonw_string(struct jsonw *w, const char *s);
void jsonw_stringn(struct jsonw *w, const char *s, size_t n);
void jsonw_int(struct jsonw *w, long long v);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_null(struct jsonw *w);
/* Splices n bytes of items (values separated by commas, as another
 * writer's top level holds them) into the array open in w. */
void jsonw_items(struct jsonw *w, const char *items, size_t n);

/* Appends s as it is, outside the rules: whitespace between values (the
 * newline after an answer). */
void jsonw_raw(struct jsonw *w, const char *s, size_t n);

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), 0 if
 * there is none (Unicode 15, table 3-7).  Also jsonr.c's check. */
size_t jsonw_utf8_len(const unsigned char *s, size_t n);

/* key and value in one call */
void jsonw_kv_string(struct jsonw *w, const char *key, const char *s);
void jsonw_kv_int(struct jsonw *w, const char *key, long long v);

#endif
