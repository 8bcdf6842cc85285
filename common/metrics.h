/*
 * metrics.h - a registry of counters, gauges and latency histograms that
 * renders the Prometheus text exposition format (version 0.0.4) for
 * GET /metrics.  (Part of common/; include common/common.h.)
 *
 * Use: register each series once at start-up, keep the pointer, and update
 * through it; an update is a few instructions with no lookup.  Single
 * threaded: register, update and render on the event loop only.
 *
 *   struct metrics_counter *commits;
 *   const char *const lbl[] = {"protocol", "2pc", NULL};
 *   metrics_counter_new(reg, "decree_txn_committed_total",
 *                       "Transactions committed.", lbl, &commits);
 *   metrics_counter_inc(commits);
 *
 * Names: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* and may not start with "__"; histograms may not use
 * the label "le".  Label values are any UTF-8 text (escaped on output).
 * Registering a name again with other labels adds a series to the same
 * family (one # HELP / # TYPE); the type and help must then be the same.
 *
 * Ownership: the registry owns every metric; pointers from *_new() are
 * valid until metrics_registry_free().  Names, help and labels are copied.
 */
#ifndef DECREE_COMMON_METRICS_H
#define DECREE_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Codes metrics returns, with the message metrics_strerror() gives them. */
#define METRICS_ERRORS(X)                                                      \
	X(EINVAL, "invalid metric name, label name or bucket list")            \
	X(EEXIST, "a series with this name and these labels already exists")   \
	X(EPROTOTYPE, "metric name already registered with another type, "     \
		      "help text or buckets")                                  \
	X(ENOMEM, "out of memory")

/* Text for a negative code from this module; "unknown metrics error" else. */
const char *metrics_strerror(int err);

struct metrics_registry;
struct metrics_counter;
struct metrics_gauge;
struct metrics_histogram;

/*
 * The default latency buckets, in seconds: 100 us to 10 s.  Observations
 * above the last bucket land only in +Inf.
 */
#define METRICS_LATENCY_BUCKETS                                                \
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, \
	    0.25, 0.5, 1, 2.5, 5, 10
#define METRICS_MAX_BUCKETS 64

int metrics_registry_new(struct metrics_registry **out);
/* Frees the registry and every metric in it.  NULL is ignored. */
void metrics_registry_free(struct metrics_registry *r);

/*
 * labels: NULL, or a NULL-terminated list of name, value pairs
 * ({"resource", "bank_a", "op", "prepare", NULL}).  On error *out is
 * untouched and nothing is registered.
 */
int metrics_counter_new(struct metrics_registry *r, const char *name,
			const char *help, const char *const *labels,
			struct metrics_counter **out);
int metrics_gauge_new(struct metrics_registry *r, const char *name,
		      const char *help, const char *const *labels,
		      struct metrics_gauge **out);
/*
 * A gauge whose value is computed when it is read or rendered: fn(data)
 * (queue depths, table sizes).  fn runs on the loop during rendering and
 * must not touch the registry.  out may be NULL; metrics_gauge_set() and
 * friends have no effect on it.
 */
typedef double (*metrics_gauge_fn)(void *data);
int metrics_gauge_fn_new(struct metrics_registry *r, const char *name,
			 const char *help, const char *const *labels,
			 metrics_gauge_fn fn, void *data,
			 struct metrics_gauge **out);
/*
 * buckets: nbuckets strictly increasing finite upper bounds (seconds), at
 * most METRICS_MAX_BUCKETS; buckets NULL means METRICS_LATENCY_BUCKETS.
 * All series of one histogram family must use the same buckets.
 */
int metrics_histogram_new(struct metrics_registry *r, const char *name,
			  const char *help, const char *const *labels,
			  const double *buckets, size_t nbuckets,
			  struct metrics_histogram **out);

void metrics_counter_inc(struct metrics_counter *c);
void metrics_counter_add(struct metrics_counter *c, uint64_t n);
uint64_t metrics_counter_value(const struct metrics_counter *c);

void metrics_gauge_set(struct metrics_gauge *g, double v);
void metrics_gauge_add(struct metrics_gauge *g, double delta);
void metrics_gauge_inc(struct metrics_gauge *g);
void metrics_gauge_dec(struct metrics_gauge *g);
double metrics_gauge_value(const struct metrics_gauge *g);

/* Records one observation in seconds (NaN is ignored). */
void metrics_histogram_observe(struct metrics_histogram *h, double seconds);
/* The same from a duration in nanoseconds (as from uv_hrtime() deltas). */
void metrics_histogram_observe_ns(struct metrics_histogram *h, uint64_t ns);
uint64_t metrics_histogram_count(const struct metrics_histogram *h);
double metrics_histogram_sum(const struct metrics_histogram *h);

/*
 * Renders every family in registration order, its series in registration
 * order, as Prometheus text.  *out is NUL-terminated, allocated with
 * mem_alloc(), and freed by the caller with mem_free(); *len (may be NULL)
 * gets its length.  -ENOMEM leaves *out untouched.
 */
int metrics_registry_render(const struct metrics_registry *r, char **out,
			    size_t *len);

#endif
