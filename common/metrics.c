/*
 * metrics.c - counters, gauges and histograms kept in a registry and
 * rendered as Prometheus text.
 *
 * Design notes
 *  - A family is one metric name with its type, help and (for histograms)
 *    bucket bounds; it holds a list of series, one per label set.  Families
 *    and series are singly linked lists kept in registration order, which is
 *    the order of the output, so /metrics is stable from scrape to scrape.
 *  - Each series stores its labels already rendered (`a="x",b="y"`, names
 *    sorted, values escaped).  Rendering the page then copies strings, and
 *    two registrations of the same label set in any order compare equal.
 *  - Updates touch only the series' own numbers: counters are u64, gauges
 *    and sums are doubles; histogram buckets hold per-bucket counts and
 *    become cumulative only when rendered, so an observation increments one
 *    bucket, found by binary search over at most METRICS_MAX_BUCKETS bounds.
 *  - Numbers are printed in the shortest form that reads back exactly:
 *    integral values without a fraction, others with %.*g at the lowest
 *    precision that round-trips, and NaN, +Inf, -Inf as Prometheus spells
 *    them.
 *
 * Output for one histogram series with a label (le bounds from the family):
 *
 *   # HELP decree_prepare_seconds Time to prepare one branch.
 *   # TYPE decree_prepare_seconds histogram
 *   decree_prepare_seconds_bucket{resource="a",le="0.001"} 1
 *   ...
 *   decree_prepare_seconds_bucket{resource="a",le="+Inf"} 2
 *   decree_prepare_seconds_sum{resource="a"} 0.0105
 *   decree_prepare_seconds_count{resource="a"} 2
 */
#include "common/common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABEL_PAIRS 16

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

struct family;

struct series {
	struct series *next;
	struct family *fam;
	char *labels; /* rendered, "" when there are none */
};

struct metrics_counter {
	struct series s;
	uint64_t value;
};

struct metrics_gauge {
	struct series s;
	double value;
	metrics_gauge_fn fn; /* if set, the value is fn(fn_data) */
	void *fn_data;
};

struct metrics_histogram {
	struct series s;
	const double *bounds; /* the family's */
	size_t nbounds;
	uint64_t count;
	double sum;
	uint64_t counts[]; /* per bucket, not cumulative; nbounds entries */
};

struct family {
	struct family *next;
	enum kind kind;
	char *name;
	char *help; /* NULL: no # HELP line */
	double *bounds;
	size_t nbounds;
	struct series *first;
	struct series **tail;
};

struct metrics_registry {
	struct family *first;
	struct family **tail;
};

static const struct {
	int code;
	const char *msg;
} metrics_errors[] = {
#define METRICS_ERR_ROW(name, msg) {-name, msg},
    METRICS_ERRORS(METRICS_ERR_ROW)
#undef METRICS_ERR_ROW
};

const char *metrics_strerror(int err)
{
	for (size_t i = 0;
	     i < sizeof(metrics_errors) / sizeof(metrics_errors[0]); i++)
		if (metrics_errors[i].code == err)
			return metrics_errors[i].msg;
	return "unknown metrics error";
}

/* ---- a growable string -------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len;
	size_t cap;
	int err;
};

static void sb_reserve(struct sbuf *b, size_t more)
{
	size_t ncap;
	char *p;

	if (b->err != 0 || b->cap - b->len > more)
		return;
	ncap = b->cap ? b->cap : 256;
	while (ncap - b->len <= more) {
		if (ncap > SIZE_MAX / 2) {
			b->err = -ENOMEM;
			return;
		}
		ncap *= 2;
	}
	p = mem_realloc(b->p, ncap);
	if (p == NULL) {
		b->err = -ENOMEM;
		return;
	}
	b->p = p;
	b->cap = ncap;
}

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	if (b->err != 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
	sb_putn(b, &c, 1);
}

/* Appends s with \\, \n and (if quote) \" escaped. */
static void sb_escaped(struct sbuf *b, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			sb_puts(b, "\\\\");
		else if (*s == '\n')
			sb_puts(b, "\\n");
		else if (quote && *s == '"')
			sb_puts(b, "\\\"");
		else
			sb_putc(b, *s);
	}
}

/* Shortest text that reads back as v; buf needs 32 bytes. */
static void fmt_double(char *buf, size_t len, double v)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == 0)
		v = 0; /* no "-0" */
	if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(buf, len, "%.0f", v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static void sb_double(struct sbuf *b, double v)
{
	char num[40];

	fmt_double(num, sizeof(num), v);
	sb_puts(b, num);
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
	sb_puts(b, num);
}

/* ---- names and labels --------------------------------------------------- */

static bool is_alpha_(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool metric_name_ok(const char *s)
{
	if (s == NULL || !(is_alpha_(*s) || *s == ':'))
		return false;
	for (s++; *s; s++)
		if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
			return false;
	return true;
}

static bool label_name_ok(const char *s)
{
	if (s == NULL || !is_alpha_(*s) || strncmp(s, "__", 2) == 0)
		return false;
	for (s++; *s; s++)
		if (!(is_alpha_(*s) || is_digit(*s)))
			return false;
	return true;
}

/*
 * Renders labels (name, value pairs, NULL-terminated) sorted by name into
 * *out (mem_alloc'd).  -EINVAL on a bad or repeated name, a missing value,
 * "le" on a histogram, or too many pairs.
 */
static int render_labels(const char *const *labels, enum kind kind, char **out)
{
	size_t order[MAX_LABEL_PAIRS];
	size_t n = 0;
	struct sbuf b = {0};

	for (; labels != NULL && labels[2 * n] != NULL; n++) {
		const char *name = labels[2 * n];

		if (n == MAX_LABEL_PAIRS || labels[2 * n + 1] == NULL ||
		    !label_name_ok(name) ||
		    (kind == KIND_HISTOGRAM && strcmp(name, "le") == 0))
			return -EINVAL;
		/* Insertion sort by name; equal names are an error. */
		size_t i = n;

		while (i > 0) {
			int c = strcmp(labels[2 * order[i - 1]], name);

			if (c == 0)
				return -EINVAL;
			if (c < 0)
				break;
			order[i] = order[i - 1];
			i--;
		}
		order[i] = n;
	}
	sb_reserve(&b, 0);
	if (b.err == 0)
		b.p[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			sb_putc(&b, ',');
		sb_puts(&b, labels[2 * order[i]]);
		sb_puts(&b, "=\"");
		sb_escaped(&b, labels[2 * order[i] + 1], true);
		sb_putc(&b, '"');
	}
	if (b.err != 0) {
		mem_free(b.p);
		return b.err;
	}
	*out = b.p;
	return 0;
}

/* ---- registry ----------------------------------------------------------- */

int metrics_registry_new(struct metrics_registry **out)
{
	struct metrics_registry *r = mem_calloc(1, sizeof(*r));

	if (r == NULL)
		return -ENOMEM;
	r->tail = &r->first;
	*out = r;
	return 0;
}

static void family_free(struct family *f)
{
	struct series *s = f->first;

	while (s != NULL) {
		struct series *next = s->next;

		mem_free(s->labels);
		mem_free(s);
		s = next;
	}
	mem_free(f->name);
	mem_free(f->help);
	mem_free(f->bounds);
	mem_free(f);
}

void metrics_registry_free(struct metrics_registry *r)
{
	struct family *f;

	if (r == NULL)
		return;
	f = r->first;
	while (f != NULL) {
		struct family *next = f->next;

		family_free(f);
		f = next;
	}
	mem_free(r);
}

static struct family *family_find(const struct metrics_registry *r,
				  const char *name)
{
	for (struct family *f = r->first; f != NULL; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static bool same_help(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool bounds_ok(const double *bounds, size_t n)
{
	if (n == 0 || n > METRICS_MAX_BUCKETS)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(bounds[i]))
			return false;
		if (i > 0 && !(bounds[i] > bounds[i - 1]))
			return false;
	}
	return true;
}

/*
 * The one registration path.  series_size is the size of the metric struct;
 * the new series is returned zeroed with s.labels and s.fam set.
 */
static int series_add(struct metrics_registry *r, enum kind kind,
		      const char *name, const char *help,
		      const char *const *labels, const double *bounds,
		      size_t nbounds, size_t series_size, struct series **out)
{
	struct family *fam;
	struct family *newfam = NULL;
	struct series *s;
	char *rendered = NULL;
	int rc;

	if (r == NULL || out == NULL || !metric_name_ok(name))
		return -EINVAL;
	if (help != NULL && help[0] == '\0')
		help = NULL;
	fam = family_find(r, name);
	if (fam != NULL) {
		if (fam->kind != kind || !same_help(fam->help, help))
			return -EPROTOTYPE;
		if (kind == KIND_HISTOGRAM &&
		    (fam->nbounds != nbounds ||
		     memcmp(fam->bounds, bounds, nbounds * sizeof(*bounds)) !=
			 0))
			return -EPROTOTYPE;
	}
	rc = render_labels(labels, kind, &rendered);
	if (rc < 0)
		return rc;
	if (fam != NULL) {
		for (s = fam->first; s != NULL; s = s->next) {
			if (strcmp(s->labels, rendered) == 0) {
				rc = -EEXIST;
				goto err_free_labels;
			}
		}
	} else {
		rc = -ENOMEM;
		newfam = mem_calloc(1, sizeof(*newfam));
		if (newfam == NULL)
			goto err_free_labels;
		newfam->kind = kind;
		newfam->tail = &newfam->first;
		newfam->name = mem_strdup(name);
		if (newfam->name == NULL)
			goto err_free_family;
		if (help != NULL) {
			newfam->help = mem_strdup(help);
			if (newfam->help == NULL)
				goto err_free_family;
		}
		if (kind == KIND_HISTOGRAM) {
			newfam->bounds = mem_calloc(nbounds, sizeof(*bounds));
			if (newfam->bounds == NULL)
				goto err_free_family;
			memcpy(newfam->bounds, bounds,
			       nbounds * sizeof(*bounds));
			newfam->nbounds = nbounds;
		}
		fam = newfam;
	}
	s = mem_calloc(1, series_size);
	if (s == NULL) {
		rc = -ENOMEM;
		goto err_free_family;
	}
	s->fam = fam;
	s->labels = rendered;
	*fam->tail = s;
	fam->tail = &s->next;
	if (newfam != NULL) {
		*r->tail = newfam;
		r->tail = &newfam->next;
	}
	*out = s;
	return 0;

err_free_family:
	if (newfam != NULL)
		family_free(newfam);
err_free_labels:
	mem_free(rendered);
	return rc;
}

int metrics_counter_new(struct metrics_registry *r, const char *name,
			const char *help, const char *const *labels,
			struct metrics_counter **out)
{
	struct series *s;
	int rc = series_add(r, KIND_COUNTER, name, help, labels, NULL, 0,
			    sizeof(struct metrics_counter), &s);

	if (rc == 0)
		*out = (struct metrics_counter *)s;
	return rc;
}

int metrics_gauge_new(struct metrics_registry *r, const char *name,
		      const char *help, const char *const *labels,
		      struct metrics_gauge **out)
{
	struct series *s;
	int rc = series_add(r, KIND_GAUGE, name, help, labels, NULL, 0,
			    sizeof(struct metrics_gauge), &s);

	if (rc == 0)
		*out = (struct metrics_gauge *)s;
	return rc;
}

int metrics_gauge_fn_new(struct metrics_registry *r, const char *name,
			 const char *help, const char *const *labels,
			 metrics_gauge_fn fn, void *data,
			 struct metrics_gauge **out)
{
	struct metrics_gauge *g = NULL;
	int rc;

	if (fn == NULL)
		return -EINVAL;
	rc = metrics_gauge_new(r, name, help, labels, &g);
	if (rc < 0)
		return rc;
	g->fn = fn;
	g->fn_data = data;
	if (out != NULL)
		*out = g;
	return 0;
}

int metrics_histogram_new(struct metrics_registry *r, const char *name,
			  const char *help, const char *const *labels,
			  const double *buckets, size_t nbuckets,
			  struct metrics_histogram **out)
{
	static const double latency[] = {METRICS_LATENCY_BUCKETS};
	struct metrics_histogram *h;
	struct series *s;
	int rc;

	if (buckets == NULL) {
		buckets = latency;
		nbuckets = sizeof(latency) / sizeof(latency[0]);
	}
	if (!bounds_ok(buckets, nbuckets))
		return -EINVAL;
	rc = series_add(
	    r, KIND_HISTOGRAM, name, help, labels, buckets, nbuckets,
	    sizeof(struct metrics_histogram) + nbuckets * sizeof(uint64_t), &s);
	if (rc < 0)
		return rc;
	h = (struct metrics_histogram *)s;
	h->bounds = s->fam->bounds;
	h->nbounds = s->fam->nbounds;
	*out = h;
	return 0;
}

/* ---- updates ------------------------------------------------------------ */

void metrics_counter_inc(struct metrics_counter *c)
{
	c->value++;
}

void metrics_counter_add(struct metrics_counter *c, uint64_t n)
{
	c->value += n;
}

uint64_t metrics_counter_value(const struct metrics_counter *c)
{
	return c->value;
}

void metrics_gauge_set(struct metrics_gauge *g, double v)
{
	g->value = v;
}

void metrics_gauge_add(struct metrics_gauge *g, double delta)
{
	g->value += delta;
}

void metrics_gauge_inc(struct metrics_gauge *g)
{
	g->value += 1;
}

void metrics_gauge_dec(struct metrics_gauge *g)
{
	g->value -= 1;
}

double metrics_gauge_value(const struct metrics_gauge *g)
{
	return g->fn != NULL ? g->fn(g->fn_data) : g->value;
}

void metrics_histogram_observe(struct metrics_histogram *h, double seconds)
{
	size_t lo = 0, hi = h->nbounds;

	if (isnan(seconds))
		return;
	/* First bound >= seconds (le is "less or equal"); nbounds: +Inf. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (h->bounds[mid] < seconds)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < h->nbounds)
		h->counts[lo]++;
	h->count++;
	h->sum += seconds;
}

void metrics_histogram_observe_ns(struct metrics_histogram *h, uint64_t ns)
{
	metrics_histogram_observe(h, (double)ns / 1e9);
}

uint64_t metrics_histogram_count(const struct metrics_histogram *h)
{
	return h->count;
}

double metrics_histogram_sum(const struct metrics_histogram *h)
{
	return h->sum;
}

/* ---- rendering ---------------------------------------------------------- */

/* name + suffix + {labels[,extra]} */
static void sb_series_name(struct sbuf *b, const struct series *s,
			   const char *suffix, const char *extra)
{
	bool has_labels = s->labels[0] != '\0';

	sb_puts(b, s->fam->name);
	sb_puts(b, suffix);
	if (!has_labels && extra == NULL)
		return;
	sb_putc(b, '{');
	sb_puts(b, s->labels);
	if (extra != NULL) {
		if (has_labels)
			sb_putc(b, ',');
		sb_puts(b, extra);
	}
	sb_putc(b, '}');
}

static void render_histogram(struct sbuf *b, const struct metrics_histogram *h)
{
	uint64_t cum = 0;
	char le[48];
	char num[40];

	for (size_t i = 0; i < h->nbounds; i++) {
		cum += h->counts[i];
		fmt_double(num, sizeof(num), h->bounds[i]);
		snprintf(le, sizeof(le), "le=\"%s\"", num);
		sb_series_name(b, &h->s, "_bucket", le);
		sb_putc(b, ' ');
		sb_u64(b, cum);
		sb_putc(b, '\n');
	}
	sb_series_name(b, &h->s, "_bucket", "le=\"+Inf\"");
	sb_putc(b, ' ');
	sb_u64(b, h->count);
	sb_putc(b, '\n');
	sb_series_name(b, &h->s, "_sum", NULL);
	sb_putc(b, ' ');
	sb_double(b, h->sum);
	sb_putc(b, '\n');
	sb_series_name(b, &h->s, "_count", NULL);
	sb_putc(b, ' ');
	sb_u64(b, h->count);
	sb_putc(b, '\n');
}

int metrics_registry_render(const struct metrics_registry *r, char **out,
			    size_t *len)
{
	struct sbuf b = {0};

	if (r == NULL || out == NULL)
		return -EINVAL;
	sb_reserve(&b, 0);
	if (b.err == 0)
		b.p[0] = '\0';
	for (const struct family *f = r->first; f != NULL; f = f->next) {
		if (f->help != NULL) {
			sb_puts(&b, "# HELP ");
			sb_puts(&b, f->name);
			sb_putc(&b, ' ');
			sb_escaped(&b, f->help, false);
			sb_putc(&b, '\n');
		}
		sb_puts(&b, "# TYPE ");
		sb_puts(&b, f->name);
		sb_putc(&b, ' ');
		sb_puts(&b, kind_names[f->kind]);
		sb_putc(&b, '\n');
		for (const struct series *s = f->first; s != NULL;
		     s = s->next) {
			switch (f->kind) {
			case KIND_COUNTER:
				sb_series_name(&b, s, "", NULL);
				sb_putc(&b, ' ');
				sb_u64(
				    &b,
				    ((const struct metrics_counter *)s)->value);
				sb_putc(&b, '\n');
				break;
			case KIND_GAUGE:
				sb_series_name(&b, s, "", NULL);
				sb_putc(&b, ' ');
				sb_double(&b,
					  metrics_gauge_value(
					      (const struct metrics_gauge *)s));
				sb_putc(&b, '\n');
				break;
			case KIND_HISTOGRAM:
				render_histogram(
				    &b, (const struct metrics_histogram *)s);
				break;
			}
		}
	}
	if (b.err != 0) {
		mem_free(b.p);
		return b.err;
	}
	*out = b.p;
	if (len != NULL)
		*len = b.len;
	return 0;
}
