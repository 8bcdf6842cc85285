/*
 * conf.c - cluster configurations: membership queries, the encoding of
 * configuration entries, and the leader's per-member progress set.
 *
 * Single-server changes (Ongaro's thesis, 4.1): a configuration takes effect
 * on a node as soon as its entry is in that node's log, committed or not.
 * So the effective configuration is always "the last configuration entry in
 * the log, else the snapshot's", and raft__conf_recompute() re-derives it
 * whenever the log's tail changes under it (truncation, snapshot restore).
 *
 * Encoding of a configuration entry (little endian):
 *   byte 0      version, 1
 *   byte 1      n, number of members (<= RAFT_MAX_MEMBERS)
 *   then n x    u64 id (nonzero, distinct), u8 learner (0 or 1)
 */
#include "raft/core.h"

#include "common/common.h"

#include <string.h>

const char *raft_strerror(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
#define RAFT_ERR_CASE(name, num, msg)                                          \
	case num:                                                              \
		return msg;
		RAFT_ERRORS(RAFT_ERR_CASE)
#undef RAFT_ERR_CASE
	}
	return "unknown error";
}

const char *raft_role_name(enum raft_role role)
{
	switch (role) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_PRECANDIDATE:
		return "pre-candidate";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	}
	return "?";
}

const char *raft_msg_type_name(int type)
{
	static const char *names[] = {
	    "?",	   "PREVOTE",	  "PREVOTE_RESP",
	    "VOTE",	   "VOTE_RESP",	  "APPEND",
	    "APPEND_RESP", "HEARTBEAT",	  "HEARTBEAT_RESP",
	    "SNAPSHOT",	   "TIMEOUT_NOW",
	};

	if (type < 1 || type > RAFT_MSG_TIMEOUT_NOW)
		return "?";
	return names[type];
}

static const struct raft_member *find(const struct raft_conf *c, uint64_t id)
{
	for (unsigned i = 0; i < c->n; i++)
		if (c->members[i].id == id)
			return &c->members[i];
	return NULL;
}

bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id)
{
	const struct raft_member *m = find(c, id);

	return m != NULL && !m->learner;
}

bool raft_conf_is_member(const struct raft_conf *c, uint64_t id)
{
	return find(c, id) != NULL;
}

unsigned raft_conf_voters(const struct raft_conf *c)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->n; i++)
		n += !c->members[i].learner;
	return n;
}

size_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf)
{
	size_t off = 2;

	buf[0] = 1;
	buf[1] = (uint8_t)c->n;
	for (unsigned i = 0; i < c->n; i++) {
		for (int b = 0; b < 8; b++)
			buf[off + b] = (uint8_t)(c->members[i].id >> (8 * b));
		buf[off + 8] = c->members[i].learner ? 1 : 0;
		off += 9;
	}
	return off;
}

int raft_conf_decode(const void *data, size_t len, struct raft_conf *out)
{
	const uint8_t *buf = data;
	struct raft_conf c;
	size_t off = 2;

	if (buf == NULL || len < 2 || buf[0] != 1 ||
	    buf[1] > RAFT_MAX_MEMBERS || len != 2 + 9 * (size_t)buf[1])
		return -RAFT_EINVAL;
	memset(&c, 0, sizeof(c));
	c.n = buf[1];
	for (unsigned i = 0; i < c.n; i++) {
		uint64_t id = 0;

		for (int b = 0; b < 8; b++)
			id |= (uint64_t)buf[off + b] << (8 * b);
		if (id == 0 || buf[off + 8] > 1)
			return -RAFT_EINVAL;
		for (unsigned j = 0; j < i; j++)
			if (c.members[j].id == id)
				return -RAFT_EINVAL;
		c.members[i].id = id;
		c.members[i].learner = buf[off + 8] == 1;
		off += 9;
	}
	*out = c;
	return 0;
}

struct raft_progress *raft__progress(struct raft *r, uint64_t id)
{
	for (unsigned i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

static void progress_init(struct raft *r, struct raft_progress *pr, uint64_t id)
{
	memset(pr, 0, sizeof(*pr));
	pr->id = id;
	pr->next = raft__last_index(&r->log) + 1;
	pr->state = PR_PROBE;
	pr->recent_active = true;
	if (id == r->id)
		pr->match = r->log.stable;
}

/* Leader: fresh progress for every member (on election). */
void raft__progress_reset_all(struct raft *r)
{
	r->n_prs = r->conf.n;
	for (unsigned i = 0; i < r->conf.n; i++)
		progress_init(r, &r->prs[i], r->conf.members[i].id);
}

/* Keeps the progress of members that stay, adds fresh ones for new ones. */
static void progress_sync(struct raft *r)
{
	struct raft_progress old[RAFT_MAX_MEMBERS];
	unsigned n_old = r->n_prs;

	memcpy(old, r->prs, sizeof(old));
	for (unsigned i = 0; i < r->conf.n; i++) {
		uint64_t id = r->conf.members[i].id;
		unsigned j;

		for (j = 0; j < n_old; j++)
			if (old[j].id == id)
				break;
		if (j < n_old)
			r->prs[i] = old[j];
		else
			progress_init(r, &r->prs[i], id);
	}
	r->n_prs = r->conf.n;
}

/*
 * Re-derives the configuration from the log (last CONF entry) or the
 * snapshot, and resyncs the leader's progress set.
 */
int raft__conf_recompute(struct raft *r)
{
	struct raft_log *l = &r->log;
	struct raft_conf c = l->snap.conf;
	uint64_t at = l->snap.index;

	for (size_t i = l->n; i > 0; i--) {
		struct raft_entry *e = &l->e[i - 1];

		if (e->type == RAFT_ENTRY_CONF &&
		    raft_conf_decode(e->data, e->len, &c) == 0) {
			at = e->index;
			break;
		}
	}
	r->conf = c;
	r->conf_index = at;
	if (r->role == RAFT_LEADER)
		progress_sync(r);
	return 0;
}
