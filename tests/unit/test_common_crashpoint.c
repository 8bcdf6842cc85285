/* test_common_crashpoint.c - arming, parsing and dying at named crash points. */
#include "common/common.h"

#include <check.h>
#include <stdlib.h>

START_TEST(bad_specs_are_rejected_and_disarm)
{
	ck_assert_int_eq(crashpoint_arm("coordinator.after_decision_forced"), 0);
	ck_assert_str_eq(crashpoint_armed(), "coordinator.after_decision_forced");
	ck_assert_int_lt(crashpoint_arm("x:0"), 0);
	ck_assert_int_lt(crashpoint_arm("x:"), 0);
	ck_assert_int_lt(crashpoint_arm(":3"), 0);
	ck_assert_int_lt(crashpoint_arm("Bad Name"), 0);
	ck_assert_int_lt(crashpoint_arm("x:2y"), 0);
	ck_assert_ptr_null(crashpoint_armed());
	ck_assert_int_eq(crashpoint_arm(""), 0);
	ck_assert_ptr_null(crashpoint_armed());
}
END_TEST

START_TEST(other_names_pass_through)
{
	ck_assert_int_eq(crashpoint_arm("a.b"), 0);
	crashpoint_hit("a.c");
	crashpoint_hit("a");
	ck_assert_str_eq(crashpoint_armed(), "a.b");
}
END_TEST

/* Exit tests: Check asserts the forked child's exit status. */
START_TEST(armed_point_exits_with_crash_status)
{
	ck_assert_int_eq(crashpoint_arm("coordinator.before_end"), 0);
	crashpoint_hit("coordinator.before_end");
	exit(0); /* not reached when the crash point works */
}
END_TEST

START_TEST(counted_point_dies_on_nth_pass)
{
	ck_assert_int_eq(crashpoint_arm("p:3"), 0);
	crashpoint_hit("p");
	crashpoint_hit("p");
	if (crashpoint_armed() == NULL)
		exit(1);
	crashpoint_hit("p");
	exit(0);
}
END_TEST

START_TEST(env_arms_the_point)
{
	setenv("DECREE_CRASH_POINT", "drill.x:1", 1);
	ck_assert_int_eq(crashpoint_arm_from_env(), 0);
	crashpoint_hit("drill.x");
	exit(0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("common_crashpoint");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, bad_specs_are_rejected_and_disarm);
	tcase_add_test(tc, other_names_pass_through);
	tcase_add_exit_test(tc, armed_point_exits_with_crash_status,
			    CRASHPOINT_EXIT);
	tcase_add_exit_test(tc, counted_point_dies_on_nth_pass, CRASHPOINT_EXIT);
	tcase_add_exit_test(tc, env_arms_the_point, CRASHPOINT_EXIT);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
