/*
 * log.c - the core's in-memory Raft log: the latest snapshot's position
 * followed by the entries after it.
 *
 * Invariants:
 *   1. e[i].index == snap.index + 1 + i (entries are contiguous).
 *   2. terms never decrease along the log; e[0].term >= snap.term.
 *   3. applied <= commit <= last index; stable <= last index.
 *   4. Everything up to applied stays in memory until the application
 *      compacts it (raft_compact), so committed entries can be handed out.
 * The log owns every entry's data and the snapshot's data.
 */
#include "raft/core.h"

#include "common/common.h"

#include <string.h>

uint64_t raft__first_index(const struct raft_log *l)
{
	return l->snap.index + 1;
}

uint64_t raft__last_index(const struct raft_log *l)
{
	return l->snap.index + l->n;
}

int raft__term(const struct raft_log *l, uint64_t index, uint64_t *term)
{
	if (index == l->snap.index) {
		*term = l->snap.term;
		return 0;
	}
	if (index < l->snap.index)
		return -RAFT_ECOMPACTED;
	if (index > raft__last_index(l))
		return -RAFT_EUNAVAILABLE;
	*term = l->e[index - l->snap.index - 1].term;
	return 0;
}

uint64_t raft__term_or0(const struct raft_log *l, uint64_t index)
{
	uint64_t t = 0;

	if (raft__term(l, index, &t) != 0)
		return 0;
	return t;
}

struct raft_entry *raft__entry(const struct raft_log *l, uint64_t index)
{
	if (index <= l->snap.index || index > raft__last_index(l))
		return NULL;
	return &l->e[index - l->snap.index - 1];
}

int raft__entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
	*dst = *src;
	dst->data = NULL;
	if (src->len > 0) {
		dst->data = mem_alloc(src->len);
		if (dst->data == NULL)
			return -RAFT_ENOMEM;
		memcpy(dst->data, src->data, src->len);
	}
	return 0;
}

void raft__entry_free(struct raft_entry *e)
{
	mem_free(e->data);
	e->data = NULL;
	e->len = 0;
}

int raft__log_append(struct raft_log *l, uint64_t term, uint8_t type,
		     const void *data, size_t len)
{
	struct raft_entry src = {
	    .term = term,
	    .index = raft__last_index(l) + 1,
	    .type = type,
	    .len = len,
	    .data = (void *)data,
	};

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct raft_entry *e = mem_realloc(l->e, cap * sizeof(*e));

		if (e == NULL)
			return -RAFT_ENOMEM;
		l->e = e;
		l->cap = cap;
	}
	if (raft__entry_copy(&l->e[l->n], &src) != 0)
		return -RAFT_ENOMEM;
	l->n++;
	return 0;
}

void raft__log_truncate(struct raft_log *l, uint64_t from)
{
	while (l->n > 0 && raft__last_index(l) >= from) {
		raft__entry_free(&l->e[l->n - 1]);
		l->n--;
	}
	if (l->stable >= from)
		l->stable = from - 1;
}

void raft__log_compact(struct raft_log *l, uint64_t index)
{
	size_t drop;

	if (index <= l->snap.index)
		return;
	if (index > raft__last_index(l)) {
		for (size_t i = 0; i < l->n; i++)
			raft__entry_free(&l->e[i]);
		l->n = 0;
		l->snap.index = index;
		return;
	}
	drop = index - l->snap.index;
	l->snap.term = l->e[drop - 1].term;
	for (size_t i = 0; i < drop; i++)
		raft__entry_free(&l->e[i]);
	memmove(l->e, l->e + drop, (l->n - drop) * sizeof(*l->e));
	l->n -= drop;
	l->snap.index = index;
}

void raft__log_free(struct raft_log *l)
{
	for (size_t i = 0; i < l->n; i++)
		raft__entry_free(&l->e[i]);
	mem_free(l->e);
	mem_free(l->snap.data);
	memset(l, 0, sizeof(*l));
}

uint64_t raft__find_conflict_by_term(const struct raft_log *l, uint64_t index,
				     uint64_t term)
{
	uint64_t t;

	if (index > raft__last_index(l))
		index = raft__last_index(l);
	for (; index > 0; index--) {
		if (raft__term(l, index, &t) != 0)
			break; /* compacted: committed, so it matches */
		if (t <= term)
			break;
	}
	return index;
}

/* Raft paper 5.4.1: compare last terms, then lengths. */
bool raft__is_up_to_date(const struct raft_log *l, uint64_t last, uint64_t term)
{
	uint64_t my_last = raft__last_index(l);
	uint64_t my_term = raft__term_or0(l, my_last);

	return term > my_term || (term == my_term && last >= my_last);
}

int raft__snapshot_copy(struct raft_snapshot *dst,
			const struct raft_snapshot *src)
{
	*dst = *src;
	dst->data = NULL;
	if (src->len > 0) {
		dst->data = mem_alloc(src->len);
		if (dst->data == NULL)
			return -RAFT_ENOMEM;
		memcpy(dst->data, src->data, src->len);
	}
	return 0;
}
