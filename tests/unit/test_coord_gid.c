/* test_coord_gid.c - gids and the transaction table: format, strict parse,
 * prefix and epoch tests; lookup by id and key, listing, epochs, pruning. */
#include "common/common.h"
#include "coordinator/coordinator.h"

#include "tests/lib/suite.h"
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

START_TEST(gid_round_trips)
{
	struct coordinator_gid g = {"bank", 3, 1042, 1, 2}, p;
	char buf[COORDINATOR_GID_SIZE];

	ck_assert_int_eq(coordinator_gid_format(&g, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "bank_3_1042_1of2");
	ck_assert_int_eq(coordinator_gid_parse(buf, &p), 0);
	ck_assert_str_eq(p.cluster, "bank");
	ck_assert_uint_eq(p.epoch, 3);
	ck_assert_uint_eq(p.seq, 1042);
	ck_assert_uint_eq(p.branch, 1);
	ck_assert_uint_eq(p.branches, 2);
	g.branch = g.branches = 0;
	ck_assert_int_eq(coordinator_gid_format(&g, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "bank_3_1042");
	ck_assert_int_eq(coordinator_txnid_parse(buf, &p), 0);
	ck_assert_uint_eq(p.branches, 0);
	ck_assert_int_eq(coordinator_gid_format(&g, buf, 5), -ENOSPC);
}
END_TEST

START_TEST(gid_parse_is_strict)
{
	struct coordinator_gid g = {"keep", 9, 9, 9, 9};
	char big[300];

	ck_assert_int_eq(coordinator_gid_parse("bank_3_1042", &g),
			 COORDINATOR_EGID_BRANCH);
	ck_assert_int_eq(coordinator_gid_parse("bank", &g),
			 COORDINATOR_EGID_FORMAT);
	ck_assert_int_eq(coordinator_gid_parse("_3_1_1of2", &g),
			 COORDINATOR_EGID_CLUSTER);
	ck_assert_int_eq(coordinator_gid_parse("ba.nk_3_1_1of2", &g),
			 COORDINATOR_EGID_CLUSTER);
	ck_assert_int_eq(coordinator_gid_parse("bank_03_1_1of2", &g),
			 COORDINATOR_EGID_EPOCH);
	ck_assert_int_eq(coordinator_gid_parse("bank_0_1_1of2", &g),
			 COORDINATOR_EGID_EPOCH);
	ck_assert_int_eq(coordinator_gid_parse("bank_-3_1_1of2", &g),
			 COORDINATOR_EGID_EPOCH);
	ck_assert_int_eq(coordinator_gid_parse("bank_3_x_1of2", &g),
			 COORDINATOR_EGID_SEQ);
	ck_assert_int_eq(coordinator_gid_parse("bank_3_1_9_1of2", &g),
			 COORDINATOR_EGID_SEQ);
	ck_assert_int_eq(
	    coordinator_gid_parse("bank_3_18446744073709551616_1of2", &g),
	    COORDINATOR_EGID_SEQ);
	ck_assert_int_eq(coordinator_gid_parse("bank_3_1_3of2", &g),
			 COORDINATOR_EGID_BRANCH);
	ck_assert_int_eq(coordinator_gid_parse("bank_3_1_0of2", &g),
			 COORDINATOR_EGID_BRANCH);
	ck_assert_int_eq(coordinator_gid_parse("bank_3_1_1of65", &g),
			 COORDINATOR_EGID_BRANCH);
	ck_assert_int_eq(coordinator_gid_parse("bank_3_1_1of2x", &g),
			 COORDINATOR_EGID_BRANCH);
	ck_assert_int_eq(coordinator_gid_parse("bank_3_1_01of2", &g),
			 COORDINATOR_EGID_BRANCH);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(coordinator_gid_parse(big, &g), COORDINATOR_EGID_LONG);
	ck_assert_int_eq(coordinator_gid_parse(NULL, &g),
			 COORDINATOR_EGID_FORMAT);
	/* nothing written on error */
	ck_assert_str_eq(g.cluster, "keep");
	ck_assert_uint_eq(g.epoch, 9);
	ck_assert_str_ne(coordinator_strerror(COORDINATOR_EGID_SEQ),
			 "unknown error");
}
END_TEST

START_TEST(prefix_and_epoch_tests)
{
	struct coordinator_gid g;
	char buf[80];

	ck_assert_int_eq(coordinator_gid_prefix("bank", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "bank_");
	ck_assert_int_lt(coordinator_gid_prefix("ba_nk", buf, sizeof(buf)), 0);
	ck_assert_int_eq(coordinator_gid_parse("bank_3_7_2of2", &g), 0);
	ck_assert(coordinator_gid_is_ours(&g, "bank"));
	ck_assert(!coordinator_gid_is_ours(&g, "bank2"));
	ck_assert(!coordinator_gid_is_ours(&g, "ban"));
	ck_assert(coordinator_gid_is_older_epoch(&g, 4));
	ck_assert(!coordinator_gid_is_older_epoch(&g, 3));
	ck_assert(!coordinator_gid_is_older_epoch(&g, 2));
	ck_assert(!coordinator_cluster_is_valid(""));
	ck_assert(coordinator_cluster_is_valid("a-B-9"));
}
END_TEST

START_TEST(longest_gid_fits)
{
	struct coordinator_gid g, p;
	char buf[COORDINATOR_GID_SIZE];

	memset(&g, 0, sizeof(g));
	memset(g.cluster, 'c', COORDINATOR_CLUSTER_MAX);
	g.epoch = UINT64_MAX;
	g.seq = UINT64_MAX;
	g.branch = g.branches = COORDINATOR_BRANCHES_MAX;
	ck_assert_int_eq(coordinator_gid_format(&g, buf, sizeof(buf)), 0);
	ck_assert_uint_lt(strlen(buf), COORDINATOR_GID_SIZE);
	ck_assert_int_eq(coordinator_gid_parse(buf, &p), 0);
	ck_assert_uint_eq(p.seq, UINT64_MAX);
}
END_TEST

static int collect(void *arg, const struct coordinator_txn *x)
{
	strcat(arg, x->id);
	strcat(arg, ",");
	return 0;
}

START_TEST(table_finds_by_id_branch_gid_and_key)
{
	struct coordinator_table *t;
	struct coordinator_txn *x, *y;
	char id[COORDINATOR_GID_SIZE], ids[4096] = "";
	uint64_t seq;

	ck_assert_int_eq(coordinator_table_new("bank", &t), 0);
	ck_assert_int_eq(coordinator_table_next_id(t, id, sizeof(id), &seq),
			 COORDINATOR_ENOT_READY);
	ck_assert_int_eq(coordinator_table_epoch_set(t, 2), 0);
	ck_assert_int_eq(coordinator_table_next_id(t, id, sizeof(id), &seq),
			 COORDINATOR_ENOT_READY);
	coordinator_table_epoch_durable(t);
	for (int i = 0; i < 200; i++) {
		char key[32];

		ck_assert_int_eq(
		    coordinator_table_next_id(t, id, sizeof(id), &seq), 0);
		ck_assert_uint_eq(seq, (uint64_t)i + 1);
		snprintf(key, sizeof(key), "k%d", i);
		ck_assert_int_eq(coordinator_table_add(t, id, key, 2, &x), 0);
		coordinator_txn_set_state(x,
					  (enum coordinator_txn_state)(i % 3));
	}
	ck_assert_str_eq(id, "bank_2_200");
	x = coordinator_table_find(t, "bank_2_17");
	ck_assert_ptr_nonnull(x);
	ck_assert_ptr_eq(coordinator_table_find(t, "bank_2_17_2of2"), x);
	ck_assert_ptr_eq(coordinator_table_find_key(t, "k16"), x);
	ck_assert_ptr_null(coordinator_table_find(t, "bank_2_201"));
	ck_assert_ptr_null(coordinator_table_find_key(t, "nope"));
	ck_assert_int_eq(coordinator_table_add(t, "bank_2_17", NULL, 1, &y),
			 -EEXIST);
	ck_assert_int_eq(coordinator_table_add(t, "bank_2_999", "k3", 1, &y),
			 -EEXIST);
	ck_assert_int_lt(coordinator_table_add(t, "bank_x_1", NULL, 1, &y), 0);
	ck_assert_uint_eq(coordinator_table_size(t), 200);
	ck_assert_uint_eq(coordinator_table_count(t, COORDINATOR_TXN_PREPARING),
			  67);
	/* a smaller epoch is refused; a new one restarts sequences */
	ck_assert_int_lt(coordinator_table_epoch_set(t, 2), 0);
	ck_assert_int_eq(coordinator_table_epoch_set(t, 3), 0);
	ck_assert(!coordinator_table_is_ready(t));
	coordinator_table_epoch_durable(t);
	ck_assert_int_eq(coordinator_table_next_id(t, id, sizeof(id), &seq), 0);
	ck_assert_str_eq(id, "bank_3_1");
	/* listing is oldest first; pruning drops done txns past their time */
	coordinator_txn_set_state(coordinator_table_find(t, "bank_2_1"),
				  COORDINATOR_TXN_DONE);
	coordinator_txn_set_state(coordinator_table_find(t, "bank_2_2"),
				  COORDINATOR_TXN_DONE);
	coordinator_table_find(t, "bank_2_2")->done_at = 500;
	coordinator_table_list(t, COORDINATOR_TXN_DONE, false, collect, ids);
	ck_assert_str_eq(ids, "bank_2_1,bank_2_2,");
	ck_assert_uint_eq(coordinator_table_prune(t, 1000, 600, 0, NULL), 1);
	ck_assert_ptr_null(coordinator_table_find(t, "bank_2_1"));
	ck_assert_ptr_null(coordinator_table_find_key(t, "k0"));
	ck_assert_ptr_nonnull(coordinator_table_find(t, "bank_2_2"));
	ck_assert_uint_eq(coordinator_table_prune(t, 1100, 600, 0, NULL), 1);
	ck_assert_uint_eq(coordinator_table_size(t), 198);
	coordinator_table_free(t, NULL);
}
END_TEST

/* Adds "bank_1_<i>" for i in 1..n to a ready table. */
static struct coordinator_table *table_of(int n)
{
	struct coordinator_table *t;
	struct coordinator_txn *x;
	char id[COORDINATOR_GID_SIZE];
	uint64_t seq;

	ck_assert_int_eq(coordinator_table_new("bank", &t), 0);
	ck_assert_int_eq(coordinator_table_epoch_set(t, 1), 0);
	coordinator_table_epoch_durable(t);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(
		    coordinator_table_next_id(t, id, sizeof(id), &seq), 0);
		ck_assert_int_eq(coordinator_table_add(t, id, NULL, 1, &x), 0);
	}
	return t;
}

static void finish(struct coordinator_table *t, const char *id, uint64_t at)
{
	struct coordinator_txn *x = coordinator_table_find(t, id);

	ck_assert_ptr_nonnull(x);
	x->done_at = at;
	coordinator_txn_set_state(x, COORDINATOR_TXN_DONE);
}

/* Done txns are listed by state in the order they finished and by
 * everything in creation order; pruning stops at the first done txn that
 * has not expired. */
START_TEST(table_keeps_done_txns_in_finishing_order)
{
	struct coordinator_table *t = table_of(6);
	char ids[4096] = "";

	finish(t, "bank_1_5", 100);
	finish(t, "bank_1_2", 200);
	finish(t, "bank_1_4", 300);
	coordinator_txn_set_state(coordinator_table_find(t, "bank_1_3"),
				  COORDINATOR_TXN_IN_DOUBT);
	coordinator_table_list(t, COORDINATOR_TXN_DONE, false, collect, ids);
	ck_assert_str_eq(ids, "bank_1_5,bank_1_2,bank_1_4,");
	ids[0] = '\0';
	coordinator_table_list(t, 0, true, collect, ids);
	ck_assert_str_eq(ids, "bank_1_1,bank_1_2,bank_1_3,bank_1_4,bank_1_5,"
			      "bank_1_6,");
	ids[0] = '\0';
	coordinator_table_list(t, COORDINATOR_TXN_ACTIVE, false, collect, ids);
	ck_assert_str_eq(ids, "bank_1_1,bank_1_6,");
	ids[0] = '\0';
	ck_assert_uint_eq(coordinator_table_list_live(t, collect, ids), 3);
	ck_assert_str_eq(ids, "bank_1_1,bank_1_3,bank_1_6,");
	ck_assert_uint_eq(coordinator_table_count(t, COORDINATOR_TXN_DONE), 3);
	ck_assert_uint_eq(coordinator_table_count(t, COORDINATOR_TXN_IN_DOUBT),
			  1);
	ck_assert_uint_eq(coordinator_table_count(t, COORDINATOR_TXN_NSTATES),
			  0);

	/* At most 2 done: the oldest to finish goes, though not expired. */
	ck_assert_uint_eq(coordinator_table_prune(t, 150, 1000, 2, NULL), 1);
	ck_assert_ptr_null(coordinator_table_find(t, "bank_1_5"));
	ck_assert_uint_eq(coordinator_table_prune(t, 150, 1000, 2, NULL), 0);
	finish(t, "bank_1_1", 400);
	ck_assert_uint_eq(coordinator_table_prune(t, 300, 100, 0, NULL), 1);
	ck_assert_ptr_null(coordinator_table_find(t, "bank_1_2"));
	ck_assert_ptr_nonnull(coordinator_table_find(t, "bank_1_4"));
	ck_assert_uint_eq(coordinator_table_prune(t, 1000, 100, 0, NULL), 2);
	ck_assert_uint_eq(coordinator_table_count(t, COORDINATOR_TXN_DONE), 0);
	ck_assert_uint_eq(coordinator_table_size(t), 2);
	coordinator_table_free(t, NULL);
}
END_TEST

static int count_state(void *arg, const struct coordinator_txn *x)
{
	((size_t *)arg)[x->state]++;
	return 0;
}

/* Seeded random state changes, drops and prunes: the kept counts always
 * equal a recount, and listing one state finds exactly its count. */
START_TEST(table_counts_follow_every_change)
{
	struct coordinator_table *t = table_of(300);
	unsigned seed = 4242;
	uint64_t now = 0;

	for (int step = 0; step < 3000; step++) {
		size_t recount[COORDINATOR_TXN_NSTATES] = {0};
		size_t total = 0;
		char id[64];
		struct coordinator_txn *x;
		int r = rand_r(&seed);

		snprintf(id, sizeof(id), "bank_1_%d", 1 + r % 300);
		x = coordinator_table_find(t, id);
		now += 1;
		/* Done ones reopen now and then, as the reconciler does. */
		if (x != NULL &&
		    (x->state != COORDINATOR_TXN_DONE || r % 50 == 0)) {
			enum coordinator_txn_state s =
			    (enum coordinator_txn_state)(
				(r / 300) % COORDINATOR_TXN_NSTATES);

			if (s == COORDINATOR_TXN_DONE)
				x->done_at = now;
			coordinator_txn_set_state(x, s);
		}
		if (step % 500 == 499)
			(void)coordinator_table_prune(t, now, 200, 0, NULL);
		coordinator_table_list(t, 0, true, count_state, recount);
		for (int s = 0; s < COORDINATOR_TXN_NSTATES; s++) {
			ck_assert_uint_eq(coordinator_table_count(
					      t, (enum coordinator_txn_state)s),
					  recount[s]);
			ck_assert_uint_eq(
			    coordinator_table_list(
				t, (enum coordinator_txn_state)s, false,
				count_state,
				(size_t[COORDINATOR_TXN_NSTATES]){0}),
			    recount[s]);
			total += recount[s];
		}
		ck_assert_uint_eq(total, coordinator_table_size(t));
	}
	ck_assert_uint_lt(coordinator_table_size(t), 300); /* some pruned */
	coordinator_table_free(t, NULL);
}
END_TEST

START_TEST(table_add_survives_failed_allocations)
{
	struct coordinator_table *t;
	struct coordinator_txn *x;
	int ok = 0;

	ck_assert_int_eq(coordinator_table_new("bank", &t), 0);
	for (long n = 1; n < 8; n++) {
		char id[32];
		int rc;

		snprintf(id, sizeof(id), "bank_1_%ld", n);
		mem_fail_after(n);
		rc = coordinator_table_add(t, id, "key", 3, &x);
		mem_fail_reset();
		if (rc == 0) {
			ok++;
			break;
		}
		ck_assert_int_eq(rc, -ENOMEM);
		ck_assert_ptr_null(coordinator_table_find(t, id));
		ck_assert_ptr_null(coordinator_table_find_key(t, "key"));
	}
	ck_assert_int_eq(ok, 1);
	coordinator_table_free(t, NULL);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    gid_round_trips,
	    gid_parse_is_strict,
	    prefix_and_epoch_tests,
	    longest_gid_fits,
	    table_finds_by_id_branch_gid_and_key,
	    table_add_survives_failed_allocations,
	    table_keeps_done_txns_in_finishing_order,
	    table_counts_follow_every_change,
	    NULL,
	};

	return suite_main("coordinator_gid", 0, tests);
}
