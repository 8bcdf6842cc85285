/* test_common_log.c - logging lines, levels and quoting; allocation hooks. */
#include "common/common.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <stdlib.h>
#include <string.h>

static char *capture(void (*fn)(void))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	log_set_output(f);
	fn();
	log_set_output(NULL);
	fclose(f);
	return buf;
}

static void emit_info(void)
{
	log_set_level(LOG_INFO);
	log_info("wal", "open", "dir=%s records=%d", log_q("/tmp/a b"), 5);
	log_debug("wal", "hidden", "x=%d", 1);
}

START_TEST(line_has_fields_and_quotes_values)
{
	char *out = capture(emit_info);

	ck_assert_ptr_nonnull(strstr(out, " level=info comp=wal event=open "));
	ck_assert_ptr_nonnull(strstr(out, "dir=\"/tmp/a b\" records=5\n"));
	ck_assert_ptr_null(strstr(out, "hidden"));
	ck_assert_int_eq(strncmp(out, "ts=", 3), 0);
	free(out);
}
END_TEST

START_TEST(quote_escapes_and_cuts)
{
	char big[400];

	ck_assert_str_eq(log_q("plain"), "plain");
	ck_assert_str_eq(log_q(""), "\"\"");
	ck_assert_str_eq(log_q("a\"b"), "\"a\\\"b\"");
	ck_assert_str_eq(log_q("a\nb"), "\"a\\x0ab\"");
	memset(big, 'x', sizeof(big) - 2);
	big[0] = ' ';
	big[sizeof(big) - 1] = '\0';
	ck_assert_ptr_nonnull(strstr(log_q(big), "...\""));
	ck_assert_uint_lt(strlen(log_q(big)), 256);
}
END_TEST

START_TEST(level_parse_rejects_unknown)
{
	enum log_level l;

	ck_assert_int_eq(log_level_parse("warn", &l), 0);
	ck_assert_int_eq(l, LOG_WARN);
	ck_assert_int_lt(log_level_parse("loud", &l), 0);
}
END_TEST

START_TEST(nth_allocation_fails)
{
	void *a, *b, *c;

	mem_fail_after(2);
	a = mem_alloc(8);
	b = mem_alloc(8);
	c = mem_strdup("x");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_null(b);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(mem_alloc_count(), 3);
	mem_fail_reset();
	c = mem_strdup("xyz");
	ck_assert_str_eq(c, "xyz");
	mem_free(a);
	mem_free(c);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    line_has_fields_and_quotes_values,
	    quote_escapes_and_cuts,
	    level_parse_rejects_unknown,
	    nth_allocation_fails,
	    NULL,
	};

	return suite_main("common_log", 0, tests);
}
