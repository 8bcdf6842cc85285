/*
 * test_common_metrics.c - the metrics registry: updates, name and label
 * rules, and the exact Prometheus text it renders.
 */
#include "common/common.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *render(const struct metrics_registry *r)
{
	char *out = NULL;
	size_t len = 0;

	ck_assert_int_eq(metrics_registry_render(r, &out, &len), 0);
	ck_assert_uint_eq(strlen(out), len);
	return out;
}

START_TEST(empty_registry_renders_nothing)
{
	struct metrics_registry *r;
	char *out;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	out = render(r);
	ck_assert_str_eq(out, "");
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

START_TEST(counters_and_gauges_render_exactly)
{
	struct metrics_registry *r;
	struct metrics_counter *ca, *cb, *plain;
	struct metrics_gauge *g, *h;
	const char *const la[] = {"resource", "bank_a", "op", "prepare", NULL};
	const char *const lb[] = {"resource", "bank_b", "op", "prepare", NULL};
	char *out;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	ck_assert_int_eq(metrics_counter_new(r, "decree_branch_ops_total",
					     "Branch operations.", la, &ca),
			 0);
	ck_assert_int_eq(metrics_gauge_new(r, "decree_txn_active",
					   "Transactions in flight.", NULL, &g),
			 0);
	ck_assert_int_eq(metrics_counter_new(r, "decree_branch_ops_total",
					     "Branch operations.", lb, &cb),
			 0);
	ck_assert_int_eq(
	    metrics_counter_new(r, "decree_up", NULL, NULL, &plain), 0);
	ck_assert_int_eq(
	    metrics_gauge_new(r, "decree_ratio", "A\\b\nc", NULL, &h), 0);
	metrics_counter_inc(ca);
	metrics_counter_add(ca, 41);
	metrics_counter_inc(cb);
	metrics_gauge_set(g, 10);
	metrics_gauge_inc(g);
	metrics_gauge_dec(g);
	metrics_gauge_dec(g);
	metrics_gauge_set(h, 0.25);
	metrics_gauge_add(h, -1);
	ck_assert_uint_eq(metrics_counter_value(ca), 42);
	ck_assert(metrics_gauge_value(g) == 9);
	out = render(r);
	ck_assert_str_eq(
	    out,
	    "# HELP decree_branch_ops_total Branch operations.\n"
	    "# TYPE decree_branch_ops_total counter\n"
	    "decree_branch_ops_total{op=\"prepare\",resource=\"bank_a\"} 42\n"
	    "decree_branch_ops_total{op=\"prepare\",resource=\"bank_b\"} 1\n"
	    "# HELP decree_txn_active Transactions in flight.\n"
	    "# TYPE decree_txn_active gauge\n"
	    "decree_txn_active 9\n"
	    "# TYPE decree_up counter\n"
	    "decree_up 0\n"
	    "# HELP decree_ratio A\\\\b\\nc\n"
	    "# TYPE decree_ratio gauge\n"
	    "decree_ratio -0.75\n");
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

START_TEST(histogram_renders_cumulative_buckets_sum_and_count)
{
	struct metrics_registry *r;
	struct metrics_histogram *h;
	const double b[] = {0.001, 0.01, 0.1};
	const char *const l[] = {"resource", "a", NULL};
	char *out;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	ck_assert_int_eq(metrics_histogram_new(r, "decree_prepare_seconds",
					       "Prepare latency.", l, b, 3, &h),
			 0);
	metrics_histogram_observe(h, 0.0005);
	metrics_histogram_observe(h, 0.001); /* le is inclusive */
	metrics_histogram_observe(h, 0.05);
	metrics_histogram_observe_ns(h, 2000000000ull); /* 2 s: +Inf only */
	metrics_histogram_observe(h, NAN);		/* ignored */
	ck_assert_uint_eq(metrics_histogram_count(h), 4);
	ck_assert(fabs(metrics_histogram_sum(h) - 2.0515) < 1e-12);
	out = render(r);
	ck_assert_str_eq(
	    out,
	    "# HELP decree_prepare_seconds Prepare latency.\n"
	    "# TYPE decree_prepare_seconds histogram\n"
	    "decree_prepare_seconds_bucket{resource=\"a\",le=\"0.001\"} 2\n"
	    "decree_prepare_seconds_bucket{resource=\"a\",le=\"0.01\"} 2\n"
	    "decree_prepare_seconds_bucket{resource=\"a\",le=\"0.1\"} 3\n"
	    "decree_prepare_seconds_bucket{resource=\"a\",le=\"+Inf\"} 4\n"
	    "decree_prepare_seconds_sum{resource=\"a\"} 2.0515\n"
	    "decree_prepare_seconds_count{resource=\"a\"} 4\n");
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

START_TEST(default_latency_buckets_span_100us_to_10s)
{
	struct metrics_registry *r;
	struct metrics_histogram *h;
	char *out;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	ck_assert_int_eq(
	    metrics_histogram_new(r, "lat_seconds", "L.", NULL, NULL, 0, &h),
	    0);
	metrics_histogram_observe(h, 0.00003);
	out = render(r);
	ck_assert_ptr_nonnull(strstr(out,
				     "lat_seconds_bucket{le=\"0.0001\"} 1\n"
				     "lat_seconds_bucket{le=\"0.00025\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "lat_seconds_bucket{le=\"10\"} 1\n"
					  "lat_seconds_bucket{le=\"+Inf\"} 1\n"
					  "lat_seconds_sum 3e-05\n"
					  "lat_seconds_count 1\n"));
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

START_TEST(label_values_are_escaped_and_order_does_not_matter)
{
	struct metrics_registry *r;
	struct metrics_counter *c, *dup = NULL;
	const char *const l1[] = {"b", "x\"y\\z\nw", "a", "1", NULL};
	const char *const l2[] = {"a", "1", "b", "x\"y\\z\nw", NULL};
	char *out;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	ck_assert_int_eq(metrics_counter_new(r, "c_total", "C.", l1, &c), 0);
	ck_assert_int_eq(metrics_counter_new(r, "c_total", "C.", l2, &dup),
			 -EEXIST);
	ck_assert_ptr_null(dup);
	out = render(r);
	ck_assert_str_eq(out, "# HELP c_total C.\n"
			      "# TYPE c_total counter\n"
			      "c_total{a=\"1\",b=\"x\\\"y\\\\z\\nw\"} 0\n");
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

START_TEST(bad_names_and_conflicts_are_refused)
{
	struct metrics_registry *r;
	struct metrics_counter *c;
	struct metrics_gauge *g;
	struct metrics_histogram *h;
	const char *const le[] = {"le", "1", NULL};
	const char *const reserved[] = {"__x", "1", NULL};
	const char *const badname[] = {"a-b", "1", NULL};
	const char *const twice[] = {"a", "1", "a", "2", NULL};
	const char *const novalue[] = {"a", NULL};
	const double unsorted[] = {0.1, 0.01};
	const double inf[] = {1, INFINITY};
	char *out;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	ck_assert_int_eq(metrics_counter_new(r, "1abc", "x", NULL, &c),
			 -EINVAL);
	ck_assert_int_eq(metrics_counter_new(r, "a b", "x", NULL, &c), -EINVAL);
	ck_assert_int_eq(metrics_counter_new(r, "", "x", NULL, &c), -EINVAL);
	ck_assert_int_eq(metrics_counter_new(r, NULL, "x", NULL, &c), -EINVAL);
	ck_assert_int_eq(metrics_counter_new(r, "ok:name_1", "x", NULL, &c), 0);
	ck_assert_int_eq(metrics_counter_new(r, "x", "x", reserved, &c),
			 -EINVAL);
	ck_assert_int_eq(metrics_counter_new(r, "x", "x", badname, &c),
			 -EINVAL);
	ck_assert_int_eq(metrics_counter_new(r, "x", "x", twice, &c), -EINVAL);
	ck_assert_int_eq(metrics_counter_new(r, "x", "x", novalue, &c),
			 -EINVAL);
	ck_assert_int_eq(metrics_histogram_new(r, "h", "x", le, NULL, 0, &h),
			 -EINVAL);
	ck_assert_int_eq(
	    metrics_histogram_new(r, "h", "x", NULL, unsorted, 2, &h), -EINVAL);
	ck_assert_int_eq(metrics_histogram_new(r, "h", "x", NULL, inf, 2, &h),
			 -EINVAL);
	/* Same name as another type, or with another help: refused. */
	ck_assert_int_eq(metrics_gauge_new(r, "ok:name_1", "x", NULL, &g),
			 -EPROTOTYPE);
	ck_assert_int_eq(metrics_counter_new(r, "ok:name_1", "y", le, &c),
			 -EPROTOTYPE);
	ck_assert_int_eq(metrics_counter_new(r, "ok:name_1", "x", NULL, &c),
			 -EEXIST);
	/* A histogram family keeps one set of buckets. */
	{
		const double b1[] = {1, 2};
		const double b2[] = {1, 3};
		const char *const l1[] = {"k", "1", NULL};
		const char *const l2[] = {"k", "2", NULL};

		ck_assert_int_eq(
		    metrics_histogram_new(r, "hb", "x", l1, b1, 2, &h), 0);
		ck_assert_int_eq(
		    metrics_histogram_new(r, "hb", "x", l2, b2, 2, &h),
		    -EPROTOTYPE);
		ck_assert_int_eq(
		    metrics_histogram_new(r, "hb", "x", l2, b1, 1, &h),
		    -EPROTOTYPE);
		ck_assert_int_eq(
		    metrics_histogram_new(r, "hb", "x", l2, b1, 2, &h), 0);
	}
	ck_assert_str_eq(metrics_strerror(-EEXIST),
			 "a series with this name and these labels already "
			 "exists");
	/* Nothing half-registered shows up. */
	out = render(r);
	ck_assert_str_eq(out, "# HELP ok:name_1 x\n"
			      "# TYPE ok:name_1 counter\n"
			      "ok:name_1 0\n"
			      "# HELP hb x\n"
			      "# TYPE hb histogram\n"
			      "hb_bucket{k=\"1\",le=\"1\"} 0\n"
			      "hb_bucket{k=\"1\",le=\"2\"} 0\n"
			      "hb_bucket{k=\"1\",le=\"+Inf\"} 0\n"
			      "hb_sum{k=\"1\"} 0\n"
			      "hb_count{k=\"1\"} 0\n"
			      "hb_bucket{k=\"2\",le=\"1\"} 0\n"
			      "hb_bucket{k=\"2\",le=\"2\"} 0\n"
			      "hb_bucket{k=\"2\",le=\"+Inf\"} 0\n"
			      "hb_sum{k=\"2\"} 0\n"
			      "hb_count{k=\"2\"} 0\n");
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

START_TEST(special_gauge_values_render_as_prometheus_spells_them)
{
	struct metrics_registry *r;
	struct metrics_gauge *a, *b, *c, *d;
	char *out;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	ck_assert_int_eq(metrics_gauge_new(r, "a", NULL, NULL, &a), 0);
	ck_assert_int_eq(metrics_gauge_new(r, "b", NULL, NULL, &b), 0);
	ck_assert_int_eq(metrics_gauge_new(r, "c", NULL, NULL, &c), 0);
	ck_assert_int_eq(metrics_gauge_new(r, "d", NULL, NULL, &d), 0);
	metrics_gauge_set(a, NAN);
	metrics_gauge_set(b, -INFINITY);
	metrics_gauge_set(c, 0.1);
	metrics_gauge_set(d, 1e20);
	out = render(r);
	ck_assert_str_eq(out, "# TYPE a gauge\na NaN\n"
			      "# TYPE b gauge\nb -Inf\n"
			      "# TYPE c gauge\nc 0.1\n"
			      "# TYPE d gauge\nd 1e+20\n");
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

/* Every allocation in registration and rendering may fail, without leaks. */
START_TEST(allocation_failures_leave_registry_consistent)
{
	const char *const l[] = {"k", "v", NULL};

	for (long n = 1; n < 40; n++) {
		struct metrics_registry *r = NULL;
		struct metrics_counter *c = NULL;
		struct metrics_histogram *h = NULL;
		char *out = NULL;
		int rc;

		mem_fail_after(n);
		rc = metrics_registry_new(&r);
		if (rc == 0)
			rc = metrics_counter_new(r, "c_total", "C.", l, &c);
		if (rc == 0)
			rc = metrics_histogram_new(r, "h_seconds", "H.", l,
						   NULL, 0, &h);
		if (rc == 0)
			rc = metrics_registry_render(r, &out, NULL);
		mem_fail_reset();
		ck_assert_msg(rc == 0 || rc == -ENOMEM, "n=%ld rc=%d", n, rc);
		if (r != NULL) {
			char *again = render(r);

			/* Whatever registered is whole; a failed one is absent.
			 */
			ck_assert(c != NULL ||
				  strstr(again, "c_total") == NULL);
			ck_assert(h != NULL ||
				  strstr(again, "h_seconds") == NULL);
			mem_free(again);
		}
		mem_free(out);
		metrics_registry_free(r);
	}
}
END_TEST

static double queue_depth(void *data)
{
	return (double)*(int *)data;
}

START_TEST(callback_gauge_is_read_at_render_time)
{
	struct metrics_registry *r;
	struct metrics_gauge *g = NULL;
	int depth = 3;
	char *out;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	ck_assert_int_eq(
	    metrics_gauge_fn_new(r, "q", "Queue.", NULL, NULL, NULL, &g),
	    -EINVAL);
	ck_assert_int_eq(metrics_gauge_fn_new(r, "q", "Queue.", NULL,
					      queue_depth, &depth, &g),
			 0);
	depth = 12;
	metrics_gauge_set(g, 99); /* no effect on a callback gauge */
	ck_assert(metrics_gauge_value(g) == 12);
	out = render(r);
	ck_assert_str_eq(out, "# HELP q Queue.\n# TYPE q gauge\nq 12\n");
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

/* Bucket choice matches a linear reference for seeded random values. */
START_TEST(observations_land_in_the_first_bucket_that_holds_them)
{
	static const double b[] = {METRICS_LATENCY_BUCKETS};
	const size_t nb = sizeof(b) / sizeof(b[0]);
	struct metrics_registry *r;
	struct metrics_histogram *h;
	uint64_t want[sizeof(b) / sizeof(b[0]) + 1] = {0};
	uint64_t x = 12345;
	char *out, *p;

	ck_assert_int_eq(metrics_registry_new(&r), 0);
	ck_assert_int_eq(metrics_histogram_new(r, "h", NULL, NULL, NULL, 0, &h),
			 0);
	for (int i = 0; i < 5000; i++) {
		double v;
		size_t k = 0;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* Exact bounds, and log-uniform values from 10 us to 100 s. */
		if (i % 10 == 0)
			v = b[x % nb];
		else
			v = pow(10, -5 + (double)(x % 70000) / 10000.0);
		while (k < nb && b[k] < v)
			k++;
		want[k]++;
		metrics_histogram_observe(h, v);
	}
	out = render(r);
	p = out;
	for (size_t k = 0, cum = 0; k <= nb; k++) {
		unsigned long long got;

		cum += want[k];
		p = strstr(p, "h_bucket{le=");
		ck_assert_ptr_nonnull(p);
		p = strchr(p, '}');
		ck_assert_int_eq(sscanf(p, "} %llu", &got), 1);
		ck_assert_msg(got == cum, "seed 12345 bucket %zu: %llu != %zu",
			      k, got, cum);
	}
	mem_free(out);
	metrics_registry_free(r);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    empty_registry_renders_nothing,
	    counters_and_gauges_render_exactly,
	    histogram_renders_cumulative_buckets_sum_and_count,
	    default_latency_buckets_span_100us_to_10s,
	    label_values_are_escaped_and_order_does_not_matter,
	    bad_names_and_conflicts_are_refused,
	    special_gauge_values_render_as_prometheus_spells_them,
	    allocation_failures_leave_registry_consistent,
	    callback_gauge_is_read_at_render_time,
	    observations_land_in_the_first_bucket_that_holds_them,
	    NULL,
	};

	return suite_main("common_metrics", 0, tests);
}
