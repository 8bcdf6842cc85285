/*
 * walbench.c - group commit benchmark of wal/: 100-byte forced records from
 * 1, 8, 64 and 256 concurrent appenders on the libuv loop, against the
 * baseline "write + fdatasync per record" from one thread, in one run.
 *
 * Each appender keeps one record in flight: it appends, and appends again
 * from the completion callback.  Prints records/s, syncs per record and
 * p50/p99 completion latency, and each figure's ratio to the baseline.
 *
 *   walbench --dir DIR [--seconds S] [--appenders 1,8,64,256]
 *            [--sync fdatasync|dsync|none]
 *
 * DIR must be on a real file system (not tmpfs) for the figures to mean
 * anything; it is created and its contents removed afterwards.
 */
#include "common/common.h"
#include "wal/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define PAYLOAD 100
#define MAX_LAT (4u << 20)

struct result {
	double rps;
	double syncs_per_rec;
	double p50_us, p99_us;
	uint64_t records;
};

struct run {
	struct wal *w;
	uint64_t *lat;
	size_t nlat;
	uint64_t end_ns;
	size_t active;
	uint64_t *t0; /* per appender */
	unsigned char payload[PAYLOAD];
	int err;
	struct wal_stats stats;
	int closed;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void percentiles(uint64_t *lat, size_t n, double *p50, double *p99)
{
	if (!n) {
		*p50 = *p99 = 0;
		return;
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	*p50 = (double)lat[n / 2] / 1000.0;
	*p99 = (double)lat[(size_t)((double)n * 0.99)] / 1000.0;
}

static void rm_dir(const char *dir)
{
	char path[5100];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static void on_closed(void *data)
{
	((struct run *)data)->closed = 1;
}

static void on_synced(struct wal *w, int64_t result, void *data)
{
	struct run *r = data;

	wal_stats_get(w, &r->stats);
	wal_close(w, on_closed, r);
}

static void on_append(struct wal *w, int64_t result, void *data);

static int issue(struct run *r, size_t id)
{
	r->t0[id] = uv_hrtime();
	return wal_append(r->w, 1, r->payload, PAYLOAD, true, on_append,
			  r->t0 + id);
}

/* data points at the appender's t0 slot; its index is the offset. */
static struct run *current;

static void on_append(struct wal *w, int64_t result, void *data)
{
	struct run *r = current;
	uint64_t *slot = data, now = uv_hrtime();
	size_t id = (size_t)(slot - r->t0);

	if (result < 0) {
		r->err = (int)result;
	} else if (r->nlat < MAX_LAT) {
		r->lat[r->nlat++] = now - *slot;
	}
	if (result >= 0 && now < r->end_ns && issue(r, id) == 0)
		return;
	if (--r->active == 0 && wal_sync(w, on_synced, r) < 0)
		wal_close(w, on_closed, r);
}

static int bench_wal(const char *dir, size_t appenders, double seconds,
		     enum wal_sync_mode mode, struct result *res)
{
	struct run r = {0};
	struct wal_config cfg;
	uv_loop_t loop;
	uint64_t start;
	int rc;

	rm_dir(dir);
	r.lat = malloc(MAX_LAT * sizeof(*r.lat));
	r.t0 = calloc(appenders, sizeof(*r.t0));
	if (!r.lat || !r.t0)
		return -ENOMEM;
	memset(r.payload, 'p', sizeof(r.payload));
	uv_loop_init(&loop);
	wal_config_init(&cfg);
	cfg.dir = dir;
	cfg.loop = &loop;
	cfg.sync_mode = mode;
	rc = wal_open(&cfg, &r.w, NULL);
	if (rc < 0)
		goto out;
	current = &r;
	start = uv_hrtime();
	r.end_ns = start + (uint64_t)(seconds * 1e9);
	r.active = appenders;
	for (size_t i = 0; i < appenders; i++) {
		rc = issue(&r, i);
		if (rc < 0) {
			r.active = i;
			break;
		}
	}
	if (r.active == 0)
		wal_close(r.w, on_closed, &r);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (rc == 0)
		rc = r.err;
	res->records = r.stats.records;
	res->rps = (double)r.stats.records / ((double)(uv_hrtime() - start) / 1e9);
	res->syncs_per_rec = r.stats.records ? (double)r.stats.syncs /
						       (double)r.stats.records
					     : 0;
	percentiles(r.lat, r.nlat, &res->p50_us, &res->p99_us);
	uv_loop_close(&loop);
out:
	free(r.lat);
	free(r.t0);
	rm_dir(dir);
	return rc;
}

/* write + fdatasync per record, one thread, same preallocated file size */
static int bench_baseline(const char *dir, double seconds, struct result *res)
{
	char path[5100];
	unsigned char rec[PAYLOAD + WAL_RECORD_HEADER_SIZE];
	uint64_t *lat = malloc(MAX_LAT * sizeof(*lat));
	uint64_t start, end, off = 0, n = 0;
	int fd, rc = 0;

	if (!lat)
		return -ENOMEM;
	rm_dir(dir);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/baseline", dir);
	memset(rec, 'b', sizeof(rec));
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		free(lat);
		return -errno;
	}
	rc = -posix_fallocate(fd, 0, WAL_DEFAULT_SEGMENT_SIZE);
	fsync(fd);
	start = uv_hrtime();
	end = start + (uint64_t)(seconds * 1e9);
	while (rc == 0) {
		uint64_t t0 = uv_hrtime();

		if (t0 >= end)
			break;
		if (pwrite(fd, rec, sizeof(rec), (off_t)off) != (ssize_t)sizeof(rec) ||
		    fdatasync(fd) < 0) {
			rc = -errno;
			break;
		}
		off += sizeof(rec);
		if (n < MAX_LAT)
			lat[n] = uv_hrtime() - t0;
		n++;
	}
	res->records = n;
	res->rps = (double)n / ((double)(uv_hrtime() - start) / 1e9);
	res->syncs_per_rec = 1.0;
	percentiles(lat, n < MAX_LAT ? n : MAX_LAT, &res->p50_us, &res->p99_us);
	close(fd);
	free(lat);
	rm_dir(dir);
	return rc;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *list = "1,8,64,256";
	enum wal_sync_mode mode = WAL_SYNC_FDATASYNC;
	double seconds = 2.0;
	struct result base, res;
	char sub[5000], *copy, *tok, *save;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--appenders") == 0 && i + 1 < argc)
			list = argv[++i];
		else if (strcmp(argv[i], "--sync") == 0 && i + 1 < argc) {
			if (wal_sync_mode_parse(argv[++i], &mode) < 0) {
				fprintf(stderr, "walbench: bad sync mode\n");
				return 2;
			}
		} else {
			fprintf(stderr,
				"usage: walbench --dir DIR [--seconds S] "
				"[--appenders 1,8,64,256] [--sync MODE]\n");
			return 2;
		}
	}
	if (!dir || seconds <= 0 || strlen(dir) > 4000) {
		fprintf(stderr, "walbench: --dir is required\n");
		return 2;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		perror("walbench: mkdir");
		return 1;
	}
	snprintf(sub, sizeof(sub), "%s/baseline", dir);
	rc = bench_baseline(sub, seconds, &base);
	if (rc < 0) {
		fprintf(stderr, "walbench: baseline: %s\n", strerror(-rc));
		return 1;
	}
	printf("| appenders | mode | records/s | x baseline | syncs/record | "
	       "p50 us | p99 us | p99 / baseline p50 |\n"
	       "|---|---|---|---|---|---|---|---|\n");
	printf("| baseline: write+fdatasync per record | 1 thread | %.0f | 1.00 "
	       "| 1.000 | %.0f | %.0f | %.2f |\n",
	       base.rps, base.p50_us, base.p99_us, base.p99_us / base.p50_us);
	fflush(stdout);
	copy = strdup(list);
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		size_t n = (size_t)atol(tok);

		if (!n)
			continue;
		snprintf(sub, sizeof(sub), "%s/wal-%zu", dir, n);
		rc = bench_wal(sub, n, seconds, mode, &res);
		if (rc < 0) {
			fprintf(stderr, "walbench: %zu appenders: %s\n", n,
				wal_strerror(rc));
			free(copy);
			return 1;
		}
		printf("| %zu | wal %s | %.0f | %.2f | %.3f | %.0f | %.0f | %.2f |\n",
		       n, wal_sync_mode_name(mode), res.rps, res.rps / base.rps,
		       res.syncs_per_rec, res.p50_us, res.p99_us,
		       res.p99_us / base.p50_us);
		fflush(stdout);
	}
	free(copy);
	rmdir(dir);
	return 0;
}
