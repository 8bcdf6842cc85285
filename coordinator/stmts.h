/*
 * stmts.h - private to coordinator/: a branch's statements and results
 * (the engine's opaque per-branch `stmts`).  See stmts.c.
 */
#ifndef DECREE_COORDINATOR_STMTS_H
#define DECREE_COORDINATOR_STMTS_H

#include "common/jsonr.h"
#include "common/jsonw.h"
#include <stdbool.h>
#include <stddef.h>

struct coordinator_pg_branch;

struct coordinator_stmt {
	char *sql;
	int nparams;
	char **params; /* nparams entries; NULL entries are SQL NULL */
};

struct coordinator_stmts {
	size_t n;
	struct coordinator_stmt *v;
	/* one object per statement run so far, as top-level items of JSON
	 * text (common/jsonw.h) */
	struct jsonw results;
	/* Runtime state of the branch's open local transaction. */
	struct coordinator_pg_branch *pgb; /* pinned session, or NULL */
	bool busy;    /* a driver call on pgb is in flight */
	bool abandon; /* roll back pgb as soon as the call in flight ends */
	size_t next;  /* next statement to run */
	/* The engine asked for the statements and PREPARE in one pipeline
	 * (RUN with prepare); prep_sent once that pipeline went out. */
	bool pipelined;
	bool prep_sent;
	unsigned long long started_ns;
};

/* Parses a branch's "statements" array; where names it in errors
 * ("branches[1]").  *out is the caller's (coordinator_stmts_free). */
int coordinator_stmts_parse(const struct jsonr_node *arr, const char *where,
			    struct coordinator_stmts **out, char *err,
			    size_t errlen);
/* "<base><field>[<i>]" into dst (cut to size): where in a request an
 * error is ("branches[1].statements[0]"); by hand, since every request
 * builds a few. */
void coordinator_where(char *dst, size_t size, const char *base,
		       const char *field, size_t i);
/* Frees a struct coordinator_stmts (the engine's free_stmts). */
void coordinator_stmts_free(void *stmts);

#endif
