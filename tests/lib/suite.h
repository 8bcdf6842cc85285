/*
 * suite.h - the main() of a Check test program: one suite, one test case,
 * the tests in order, an optional timeout.
 */
#ifndef DECREE_TESTS_SUITE_H
#define DECREE_TESTS_SUITE_H

#include <check.h>

/* Runs tests (NULL-terminated) as suite `name`; timeout_s 0 keeps Check's
 * default.  Returns main()'s exit status: 0 if every test passed. */
int suite_main(const char *name, int timeout_s, const TTest *const *tests);

#endif
