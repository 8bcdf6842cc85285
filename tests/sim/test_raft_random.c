/*
 * test_raft_random.c - randomized Raft safety runs on the deterministic
 * harness: many seeds, each thousands of steps of crashes, partitions,
 * loss, duplication, reordering and membership changes, checked after every
 * step, then healed and checked for liveness.
 *
 *   RAFT_SEEDS=n       number of seeds (default 2000; larger for soak runs)
 *   RAFT_SEED_BASE=b   first seed (default 1)
 *   RAFT_STEPS=n       steps per seed (default 10000)
 *   RAFT_SEED=s        run only seed s and print its trace to stdout
 */
#include "sim/raft_sim.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long env_ull(const char *name, unsigned long long dflt)
{
	const char *v = getenv(name);
	char *end;
	unsigned long long x;

	if (v == NULL || *v == '\0')
		return dflt;
	x = strtoull(v, &end, 10);
	return *end == '\0' ? x : dflt;
}

START_TEST(random_seeds_keep_raft_safe_and_live)
{
	unsigned long long seeds = env_ull("RAFT_SEEDS", 2000);
	unsigned long long base = env_ull("RAFT_SEED_BASE", 1);
	unsigned steps = (unsigned)env_ull("RAFT_STEPS", 10000);
	const char *one = getenv("RAFT_SEED");
	unsigned unsafe = getenv("RAFT_UNSAFE") ? RAFT_SIM_RUN_UNSAFE : 0;
	unsigned failures = 0;
	char msg[640];

	if (one != NULL && *one != '\0') {
		unsigned long long seed = env_ull("RAFT_SEED", 0);

		setvbuf(stdout, NULL, _IOLBF, 0);

		if (raft_sim_random_run(seed, steps, unsafe, stdout, msg,
					sizeof(msg)) != 0)
			ck_abort_msg("%s", msg);
		return;
	}
	for (unsigned long long i = 0; i < seeds; i++) {
		if (raft_sim_random_run(base + i, steps, 0, NULL, msg,
					sizeof(msg)) != 0) {
			failures++;
			printf(
			    "FAIL %s\n  replay: RAFT_SEED=%llu RAFT_STEPS=%u "
			    "%s\n",
			    msg, base + i, steps,
			    "build-*/tests/sim/test_raft_random");
			fflush(stdout);
			if (failures >= 5)
				break;
		}
	}
	ck_assert_msg(failures == 0, "%u seed(s) failed, see above", failures);
}
END_TEST

static char *traced_run(unsigned long long seed, size_t *len)
{
	char *buf = NULL, msg[640];
	FILE *f = open_memstream(&buf, len);

	ck_assert_ptr_nonnull(f);
	ck_assert_msg(raft_sim_random_run(seed, 3000, 0, f, msg, sizeof(msg)) ==
			  0,
		      "%s", msg);
	fclose(f);
	return buf;
}

/* A seed is the whole run: the same seed gives the same trace, byte for
 * byte, and the trace reads as events stamped with simulated time. */
START_TEST(a_seed_replays_exactly_with_a_readable_trace)
{
	size_t la, lb, lc;
	char *a = traced_run(42, &la), *b = traced_run(42, &lb);
	char *c = traced_run(43, &lc);

	ck_assert_uint_gt(la, 1000);
	ck_assert_uint_eq(la, lb);
	ck_assert_int_eq(memcmp(a, b, la), 0);
	ck_assert(la != lc || memcmp(a, c, la) != 0);
	ck_assert_ptr_nonnull(strstr(a, "[    0.000s] seed 42,"));
	ck_assert_ptr_nonnull(strstr(a, "is leader at term"));
	ck_assert_ptr_nonnull(strstr(a, "---- healing ----"));
	free(a);
	free(b);
	free(c);
}
END_TEST

/* The checkers are only worth something if they catch a broken caller: one
 * that sends votes and acknowledgements before persisting what they
 * promise, and crashes in between. */
START_TEST(a_caller_that_acks_before_persisting_is_caught)
{
	char msg[640];
	unsigned long long seed;
	bool caught = false;

	for (seed = 1; seed <= 500 && !caught; seed++)
		if (raft_sim_random_run(seed, 5000, RAFT_SIM_RUN_UNSAFE, NULL,
					msg, sizeof(msg)) != 0)
			caught = strstr(msg, "safety") != NULL ||
				 strstr(msg, "matching") != NULL ||
				 strstr(msg, "completeness") != NULL ||
				 strstr(msg, "committed entry changed") != NULL;
	ck_assert_msg(caught, "no violation found in 500 unsafe seeds");
	printf("caught at seed %llu: %s\n", seed - 1, msg);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    random_seeds_keep_raft_safe_and_live,
	    a_caller_that_acks_before_persisting_is_caught,
	    a_seed_replays_exactly_with_a_readable_trace,
	    NULL,
	};

	return suite_main("raft_random", 900, tests);
}
