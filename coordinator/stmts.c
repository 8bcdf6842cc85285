/*
 * stmts.c - a branch's work as the runtime sees it: the user's statements
 * with their text parameters, and what running them produced.
 *
 * The engine treats this as the opaque `stmts` of a branch: it owns it from
 * coordinator_engine_begin() on and frees it (coordinator_stmts_free) when
 * the transaction leaves the table.  The runtime keeps the per-statement
 * results here too, so a status lookup or a retried request with the same
 * idempotency key can show them for as long as the transaction is kept.
 *
 * Request form (docs/api.md):
 *   "statements": [ "SQL", {"sql": "SQL", "params": [1, "x", null, true]} ]
 * Parameters may be strings, numbers, booleans or null; they reach
 * PostgreSQL as text parameters ($1..$n), never spliced into the SQL.
 */
#include "coordinator/stmts.h"

#include "common/common.h"

#include <stdio.h>
#include <string.h>

#define STMTS_MAX 1000
#define PARAMS_MAX 1000

/*
 * The first keyword of sql after blanks and comments, upper-cased into kw
 * (empty if none); *rest points after it.
 */
static void first_word(const char *sql, char *kw, size_t len, const char **rest)
{
	const char *p = sql;
	size_t n = 0;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
		       *p == '\f' || *p == '(')
			p++;
		if (p[0] == '-' && p[1] == '-') {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *end = strstr(p + 2, "*/");

			p = end ? end + 2 : p + strlen(p);
		} else {
			break;
		}
	}
	while (((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		*p == '_') &&
	       n + 1 < len) {
		kw[n++] = (char)(*p >= 'a' ? *p - 'a' + 'A' : *p);
		p++;
	}
	kw[n] = '\0';
	*rest = p;
}

/*
 * True if sql would end or nest the branch's transaction: the coordinator
 * owns BEGIN, COMMIT, ROLLBACK and PREPARE TRANSACTION of every branch, and
 * one of them inside a branch would commit or prepare work behind its back
 * (COMMIT cannot be undone).  SAVEPOINT, RELEASE and ROLLBACK TO are fine.
 */
static bool ends_transaction(const char *sql)
{
	static const char *const always[] = {"BEGIN", "START", "COMMIT",
					     "END", "ABORT", NULL};
	char kw[16], kw2[16];
	const char *rest, *rest2;

	first_word(sql, kw, sizeof(kw), &rest);
	for (size_t i = 0; always[i] != NULL; i++)
		if (strcmp(kw, always[i]) == 0)
			return true;
	first_word(rest, kw2, sizeof(kw2), &rest2);
	if (strcmp(kw, "ROLLBACK") == 0) {
		if (strcmp(kw2, "WORK") == 0 || strcmp(kw2, "TRANSACTION") == 0)
			first_word(rest2, kw2, sizeof(kw2), &rest2);
		return strcmp(kw2, "TO") != 0;
	}
	if (strcmp(kw, "PREPARE") == 0)
		return strcmp(kw2, "TRANSACTION") == 0;
	return false;
}

void coordinator_where(char *dst, size_t size, const char *base,
		       const char *field, size_t i)
{
	char t[160];
	size_t n = str_copy(t, sizeof(t) - 24, base);

	n += str_copy(t + n, sizeof(t) - 24 - n, field);
	t[n++] = '[';
	n += str_u64(t + n, i);
	t[n++] = ']';
	t[n] = '\0';
	str_copy(dst, size, t);
}

static void stmt_clear(struct coordinator_stmt *s)
{
	for (int i = 0; i < s->nparams; i++)
		mem_free(s->params[i]);
	mem_free(s->params);
	mem_free(s->sql);
}

void coordinator_stmts_free(void *p)
{
	struct coordinator_stmts *st = p;

	if (st == NULL)
		return;
	for (size_t i = 0; i < st->n; i++)
		stmt_clear(&st->v[i]);
	mem_free(st->v);
	jsonw_free(&st->results);
	mem_free(st);
}

/* A JSON scalar as a text parameter: *out NULL for null.  (Strings hold
 * no NUL: the reader refuses \u0000.) */
static int param_text(const struct jsonr_node *v, char **out, char *err,
		      size_t errlen, const char *where)
{
	char buf[64];

	*out = NULL;
	switch (v->type) {
	case JSONR_NULL:
		return 0;
	case JSONR_STRING:
		*out = mem_strndup(v->v.s, v->count);
		break;
	case JSONR_INT: {
		/* (By hand: most parameters are integers.) */
		size_t n = 0;

		if (v->v.i < 0)
			buf[n++] = '-';
		n += str_u64(buf + n, v->v.i < 0
					  ? 0ULL - (unsigned long long)v->v.i
					  : (unsigned long long)v->v.i);
		*out = mem_strndup(buf, n);
		break;
	}
	case JSONR_REAL:
		snprintf(buf, sizeof(buf), "%.17g", v->v.d);
		*out = mem_strdup(buf);
		break;
	case JSONR_TRUE:
	case JSONR_FALSE:
		*out = mem_strdup(v->type == JSONR_TRUE ? "true" : "false");
		break;
	default:
		snprintf(err, errlen,
			 "%s: a parameter must be a string, number, boolean "
			 "or null",
			 where);
		return -EINVAL;
	}
	if (*out == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int stmt_parse(const struct jsonr_node *j, struct coordinator_stmt *s,
		      char *err, size_t errlen, const char *where)
{
	const struct jsonr_node *sql = j, *params = NULL, *c;
	char pwhere[200];
	size_t i;
	int rc;

	memset(s, 0, sizeof(*s));
	if (jsonr_is(j, JSONR_OBJECT)) {
		jsonr_foreach(j, i, c)
		{
			if (strcmp(c->key, "sql") != 0 &&
			    strcmp(c->key, "params") != 0) {
				snprintf(err, errlen, "%s: unknown key \"%s\"",
					 where, c->key);
				return -EINVAL;
			}
		}
		sql = jsonr_get(j, "sql");
		params = jsonr_get(j, "params");
		if (sql == NULL) {
			snprintf(err, errlen, "%s: missing key \"sql\"", where);
			return -EINVAL;
		}
	}
	if (!jsonr_is(sql, JSONR_STRING) || sql->count == 0) {
		snprintf(err, errlen, "%s: \"sql\" must be a non-empty string",
			 where);
		return -EINVAL;
	}
	if (ends_transaction(sql->v.s)) {
		snprintf(err, errlen,
			 "%s: transaction control (BEGIN, COMMIT, ROLLBACK, "
			 "PREPARE TRANSACTION, ...) is the coordinator's: a "
			 "branch may not end its own transaction",
			 where);
		return -EINVAL;
	}
	if (params != NULL && !jsonr_is(params, JSONR_ARRAY)) {
		snprintf(err, errlen, "%s: \"params\" must be an array", where);
		return -EINVAL;
	}
	if (jsonr_size(params) > PARAMS_MAX) {
		snprintf(err, errlen, "%s: at most %d parameters", where,
			 PARAMS_MAX);
		return -EINVAL;
	}
	s->sql = mem_strndup(sql->v.s, sql->count);
	if (s->sql == NULL)
		goto err_nomem;
	if (jsonr_size(params) == 0)
		return 0;
	s->params = mem_calloc(jsonr_size(params), sizeof(char *));
	if (s->params == NULL)
		goto err_nomem;
	jsonr_foreach(params, i, c)
	{
		coordinator_where(pwhere, sizeof(pwhere), where, ".params", i);
		rc = param_text(c, &s->params[i], err, errlen, pwhere);
		if (rc < 0) {
			s->nparams = (int)i;
			stmt_clear(s);
			return rc;
		}
		s->nparams = (int)i + 1;
	}
	return 0;
err_nomem:
	stmt_clear(s);
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

int coordinator_stmts_parse(const struct jsonr_node *arr, const char *where,
			    struct coordinator_stmts **out, char *err,
			    size_t errlen)
{
	struct coordinator_stmts *st;
	const struct jsonr_node *c;
	char swhere[160];
	size_t i;
	int rc;

	if (!jsonr_is(arr, JSONR_ARRAY) || jsonr_size(arr) == 0) {
		snprintf(err, errlen, "%s.statements: must be a non-empty array",
			 where);
		return -EINVAL;
	}
	if (jsonr_size(arr) > STMTS_MAX) {
		snprintf(err, errlen, "%s.statements: at most %d statements",
			 where, STMTS_MAX);
		return -EINVAL;
	}
	st = mem_calloc(1, sizeof(*st));
	if (st == NULL)
		goto err_nomem;
	st->v = mem_calloc(jsonr_size(arr), sizeof(*st->v));
	if (st->v == NULL)
		goto err_free;
	jsonr_foreach(arr, i, c)
	{
		coordinator_where(swhere, sizeof(swhere), where, ".statements",
				  i);
		rc = stmt_parse(c, &st->v[i], err, errlen, swhere);
		if (rc < 0) {
			coordinator_stmts_free(st);
			return rc;
		}
		st->n = i + 1;
	}
	*out = st;
	return 0;
err_free:
	coordinator_stmts_free(st);
err_nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}
