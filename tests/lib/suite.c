/*
 * suite.c - the shared main() of the Check test programs (suite.h).
 */
#include "tests/lib/suite.h"

int suite_main(const char *name, int timeout_s, const TTest *const *tests)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	if (timeout_s > 0)
		tcase_set_timeout(tc, timeout_s);
	for (; *tests; tests++)
		tcase_add_test(tc, *tests);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
