/*
 * jsonr.h - reads JSON text into a flat, read-only tree.  (Part of common/;
 * include common/common.h.)
 *
 * For the body of every POST /v1/txns: jansson's parser cost about a third
 * of the coordinator's instructions per transaction (one allocation per
 * value, a copy per character; docs/bench-2pc.md, "Requests and answers
 * without jansson").  This one makes two allocations per document and
 * copies runs of plain text at once.  jansson still reads the config, the
 * CLI's files and everything else.
 *
 * What it accepts is RFC 8259 JSON with jansson's default strictness, so
 * the API takes exactly what it took before:
 *   - the top level is an object or an array;
 *   - strings are valid UTF-8; \u escapes pair surrogates; \u0000 is
 *     refused (a NUL cannot reach a C string or PostgreSQL);
 *   - an integer that does not fit a long long is an error, as is a real
 *     that overflows a double;
 *   - a key repeated in one object is an error (JSON_REJECT_DUPLICATES);
 *   - nesting is at most JSONR_DEPTH_MAX deep; nothing but whitespace may
 *     follow the value.
 * An error gives its line and column (1-based, columns in bytes) and a
 * short text.
 *
 * The tree: nodes in one array, each followed by its children (pre-order);
 * `span` is the number of nodes in a node's subtree, itself included, so a
 * node's next sibling is node + node->span.  Strings and keys are decoded,
 * NUL-terminated, and live as long as the document.
 *
 *   struct jsonr_doc d;
 *   struct jsonr_error e;
 *   if (jsonr_parse(&d, text, len, &e) < 0) ... e.line, e.column, e.text
 *   const struct jsonr_node *root = jsonr_root(&d), *v, *c;
 *   v = jsonr_get(root, "branches");
 *   size_t i;
 *   jsonr_foreach(v, i, c) { ... }
 *   jsonr_free(&d);
 */
#ifndef DECREE_COMMON_JSONR_H
#define DECREE_COMMON_JSONR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSONR_DEPTH_MAX 512

enum jsonr_type {
	JSONR_NULL,
	JSONR_FALSE,
	JSONR_TRUE,
	JSONR_INT,
	JSONR_REAL,
	JSONR_STRING,
	JSONR_ARRAY,
	JSONR_OBJECT
};

struct jsonr_node {
	enum jsonr_type type;
	uint32_t span;	/* nodes in this subtree, this one included */
	uint32_t count; /* arrays and objects: members; strings: bytes */
	uint32_t keylen;
	const char *key; /* members of an object: the key; else NULL */
	union {
		long long i;   /* JSONR_INT */
		double d;      /* JSONR_REAL */
		const char *s; /* JSONR_STRING */
	} v;
};

struct jsonr_doc {
	struct jsonr_node *nodes;
	size_t n;
	/* private */
	size_t cap;
	char *text; /* decoded strings */
};

struct jsonr_error {
	int line;
	int column;
	char text[96];
};

/* Parses len bytes at buf into d (which the caller frees with
 * jsonr_free(), also after an error).  0, or -EINVAL with e filled in, or
 * -ENOMEM. */
int jsonr_parse(struct jsonr_doc *d, const char *buf, size_t len,
		struct jsonr_error *e);
void jsonr_free(struct jsonr_doc *d);

/* The document's value; NULL if there is none. */
const struct jsonr_node *jsonr_root(const struct jsonr_doc *d);
/* The member of object o named key; NULL if o is not an object (or NULL)
 * or has no such member. */
const struct jsonr_node *jsonr_get(const struct jsonr_node *o, const char *key);

/* Each member c of an array or object n (none if n is NULL or neither),
 * counting with i (size_t). */
#define jsonr_foreach(n, i, c)                                                 \
	for ((i) = 0, (c) = (n) != NULL ? (n) + 1 : NULL;                      \
	     (n) != NULL &&                                                    \
	     ((n)->type == JSONR_ARRAY || (n)->type == JSONR_OBJECT) &&        \
	     (i) < (n)->count;                                                 \
	     (i)++, (c) += (c)->span)

static inline bool jsonr_is(const struct jsonr_node *n, enum jsonr_type t)
{
	return n != NULL && n->type == t;
}

static inline bool jsonr_is_bool(const struct jsonr_node *n)
{
	return jsonr_is(n, JSONR_TRUE) || jsonr_is(n, JSONR_FALSE);
}

static inline size_t jsonr_size(const struct jsonr_node *n)
{
	return jsonr_is(n, JSONR_ARRAY) || jsonr_is(n, JSONR_OBJECT) ? n->count
								     : 0;
}

#endif
