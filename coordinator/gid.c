/*
 * gid.c - global transaction ids: formatting, strict parsing, the cluster
 * prefix and the epoch test that recovery uses to tell dead from live.
 *
 * Format (DESIGN.md section 5, "gids"):
 *
 *     <cluster>_<epoch>_<seq>_<k>of<n>        branch gid, e.g. bank_3_1042_1of2
 *     <cluster>_<epoch>_<seq>                 transaction id
 *
 * Invariants the parser enforces, so a gid has exactly one spelling:
 *  1. cluster is 1..64 bytes of [A-Za-z0-9-]; it holds no '_', so the prefix
 *     "<cluster>_" matches that cluster's gids and no other cluster's.
 *  2. epoch and seq are decimal, >= 1, without sign or leading zero, and fit
 *     in 64 bits.
 *  3. 1 <= k <= n <= COORDINATOR_BRANCHES_MAX, both without leading zero.
 *  4. The whole gid is at most COORDINATOR_GID_SIZE - 1 bytes (PostgreSQL's
 *     GIDSIZE, 200, counts the NUL).
 */
#include "coordinator/coordinator.h"

#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool cluster_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-';
}

bool coordinator_cluster_is_valid(const char *name)
{
	size_t i;

	if (name == NULL)
		return false;
	for (i = 0; name[i] != '\0'; i++) {
		if (i >= COORDINATOR_CLUSTER_MAX || !cluster_char(name[i]))
			return false;
	}
	return i > 0;
}

/* Parses a decimal number from s[0..len) strictly; false if not one. */
static bool parse_num(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20 || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* Parses "<cluster>_<epoch>_<seq>" in s[0..len). */
static int parse_id(const char *s, size_t len, struct coordinator_gid *g)
{
	const char *u1, *u2, *end = s + len;
	size_t clen;

	u1 = memchr(s, '_', len);
	if (u1 == NULL)
		return COORDINATOR_EGID_FORMAT;
	clen = (size_t)(u1 - s);
	if (clen == 0 || clen > COORDINATOR_CLUSTER_MAX)
		return COORDINATOR_EGID_CLUSTER;
	for (size_t i = 0; i < clen; i++) {
		if (!cluster_char(s[i]))
			return COORDINATOR_EGID_CLUSTER;
	}
	u2 = memchr(u1 + 1, '_', (size_t)(end - u1 - 1));
	if (u2 == NULL)
		return COORDINATOR_EGID_FORMAT;
	if (!parse_num(u1 + 1, (size_t)(u2 - u1 - 1), &g->epoch) ||
	    g->epoch == 0)
		return COORDINATOR_EGID_EPOCH;
	if (!parse_num(u2 + 1, (size_t)(end - u2 - 1), &g->seq) || g->seq == 0)
		return COORDINATOR_EGID_SEQ;
	memcpy(g->cluster, s, clen);
	g->cluster[clen] = '\0';
	return 0;
}

/* The length of s if under COORDINATOR_GID_SIZE, and its last '_' (NULL
 * if none), in one pass; -1 if too long. */
static long scan(const char *s, const char **last)
{
	long i;

	*last = NULL;
	for (i = 0; i < COORDINATOR_GID_SIZE && s[i] != '\0'; i++)
		if (s[i] == '_')
			*last = s + i;
	return i < COORDINATOR_GID_SIZE ? i : -1;
}

int coordinator_txnid_parse(const char *s, struct coordinator_gid *out)
{
	struct coordinator_gid g;
	const char *last;
	long len;
	int rc;

	if (s == NULL)
		return COORDINATOR_EGID_FORMAT;
	len = scan(s, &last);
	if (len < 0)
		return COORDINATOR_EGID_LONG;
	rc = parse_id(s, (size_t)len, &g);
	if (rc < 0)
		return rc;
	g.branch = g.branches = 0;
	*out = g;
	return 0;
}

int coordinator_gid_parse(const char *s, struct coordinator_gid *out)
{
	struct coordinator_gid g;
	const char *last, *p, *end;
	uint64_t k, n;
	long len;
	int rc;

	if (s == NULL)
		return COORDINATOR_EGID_FORMAT;
	len = scan(s, &last);
	if (len < 0)
		return COORDINATOR_EGID_LONG;
	if (last == NULL)
		return COORDINATOR_EGID_FORMAT;
	/* "<k>of<n>" after the last '_' */
	end = s + len;
	for (p = last + 1; p < end && *p >= '0' && *p <= '9'; p++)
		;
	if (end - p < 3 || p[0] != 'o' || p[1] != 'f' ||
	    !parse_num(last + 1, (size_t)(p - last - 1), &k) ||
	    !parse_num(p + 2, (size_t)(end - p - 2), &n) || k < 1 || n < 1 ||
	    k > n || n > COORDINATOR_BRANCHES_MAX)
		return COORDINATOR_EGID_BRANCH;
	rc = parse_id(s, (size_t)(last - s), &g);
	if (rc < 0)
		return rc;
	g.branch = (unsigned)k;
	g.branches = (unsigned)n;
	*out = g;
	return 0;
}

int coordinator_gid_format(const struct coordinator_gid *g, char *buf,
			   size_t len)
{
	/* cluster, four numbers, separators: formatted by hand, since a gid
	 * is made for every branch of every transaction. */
	char t[COORDINATOR_CLUSTER_MAX + 4 * 20 + 8];
	size_t n;

	if (!coordinator_cluster_is_valid(g->cluster))
		return COORDINATOR_EGID_CLUSTER;
	if (g->epoch == 0)
		return COORDINATOR_EGID_EPOCH;
	if (g->seq == 0)
		return COORDINATOR_EGID_SEQ;
	if ((g->branches != 0 || g->branch != 0) &&
	    (g->branch < 1 || g->branch > g->branches ||
	     g->branches > COORDINATOR_BRANCHES_MAX))
		return COORDINATOR_EGID_BRANCH;
	n = str_copy(t, sizeof(t), g->cluster);
	t[n++] = '_';
	n += str_u64(t + n, g->epoch);
	t[n++] = '_';
	n += str_u64(t + n, g->seq);
	if (g->branches != 0) {
		t[n++] = '_';
		n += str_u64(t + n, g->branch);
		t[n++] = 'o';
		t[n++] = 'f';
		n += str_u64(t + n, g->branches);
	}
	if (n >= len)
		return -ENOSPC;
	memcpy(buf, t, n);
	buf[n] = '\0';
	return 0;
}

int coordinator_gid_prefix(const char *cluster, char *buf, size_t len)
{
	int n;

	if (!coordinator_cluster_is_valid(cluster))
		return COORDINATOR_EGID_CLUSTER;
	n = snprintf(buf, len, "%s_", cluster);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return 0;
}

bool coordinator_gid_is_ours(const struct coordinator_gid *g,
			     const char *cluster)
{
	return cluster != NULL && strcmp(g->cluster, cluster) == 0;
}

bool coordinator_gid_is_older_epoch(const struct coordinator_gid *g,
				    uint64_t epoch)
{
	return g->epoch < epoch;
}
