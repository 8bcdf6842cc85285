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
 *            [--sync fdatasync|dsync|none] [--segment-size BYTES]
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

/* Accumulated over the rounds of one configuration. */
struct result {
	uint64_t records;
	uint64_t syncs;
	uint64_t ns; /* time measured */
	uint64_t *lat;
	size_t nlat;
};

struct run {
	struct wal *w;
	struct result *res;
	uint64_t end_ns;
	size_t active;
	uint64_t *t0; /* per appender */
	unsigned char payload[PAYLOAD];
	int err;
	struct wal_stats stats;
	int closed;
	bool warmup;
	uv_loop_t *loop_ref;
	uv_timer_t poll;
	uint64_t warm_until;
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

/* Warm-up: the log's preparer thread makes its first spare segment right
 * after open (zeroing a segment); steady state is measured once it is done. */
static void on_spare_poll(uv_timer_t *t)
{
	struct run *r = t->data;

	wal_stats_get(r->w, &r->stats);
	if (!r->stats.spare_ready && uv_now(t->loop) < r->warm_until)
		return;
	uv_close((uv_handle_t *)t, NULL);
	wal_close(r->w, on_closed, r);
}

static void on_synced(struct wal *w, int64_t result, void *data)
{
	struct run *r = data;

	(void)result;
	wal_stats_get(w, &r->stats);
	if (r->warmup) {
		r->warm_until = uv_now(&r->loop_ref[0]) + 60000;
		uv_timer_init(r->loop_ref, &r->poll);
		r->poll.data = r;
		uv_timer_start(&r->poll, on_spare_poll, 0, 1);
		return;
	}
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

	if (result < 0)
		r->err = (int)result;
	else if (r->res->nlat < MAX_LAT)
		r->res->lat[r->res->nlat++] = now - *slot;
	if (result >= 0 && now < r->end_ns && issue(r, id) == 0)
		return;
	if (--r->active == 0 && wal_sync(w, on_synced, r) < 0)
		wal_close(w, on_closed, r);
}

static uint64_t segment_size; /* 0: the log's default */

/* One slice: a fresh log, `appenders` in flight for `seconds`. */
static int bench_wal(const char *dir, size_t appenders, double seconds,
		     enum wal_sync_mode mode, struct result *res)
{
	struct run r = {0};
	struct wal_config cfg;
	uv_loop_t loop;
	uint64_t start;
	int rc;

	rm_dir(dir);
	r.res = res;
	r.t0 = calloc(appenders, sizeof(*r.t0));
	if (!r.t0)
		return -ENOMEM;
	memset(r.payload, 'p', sizeof(r.payload));
	uv_loop_init(&loop);
	wal_config_init(&cfg);
	cfg.dir = dir;
	cfg.loop = &loop;
	cfg.sync_mode = mode;
	cfg.segment_size = segment_size;
	rc = wal_open(&cfg, &r.w, NULL);
	if (rc < 0)
		goto out;
	/* the first write makes the first segment and the preparer thread
	 * its spare: both before the clock starts (on_synced) */
	r.active = 1;
	current = &r;
	r.end_ns = 0;
	r.warmup = true;
	r.loop_ref = &loop;
	rc = issue(&r, 0);
	if (rc == 0)
		uv_run(&loop, UV_RUN_DEFAULT);
	if (rc == 0)
		rc = r.err;
	res->nlat -= res->nlat ? 1 : 0;
	if (rc < 0 || !r.closed)
		goto out_loop;
	r.closed = 0;
	r.warmup = false;
	rc = wal_open(&cfg, &r.w, NULL);
	if (rc < 0)
		goto out_loop;
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
	res->ns += uv_hrtime() - start;
	/* minus the warm-up record and the segment creation's sync */
	res->records += r.stats.records;
	res->syncs += r.stats.syncs;
out_loop:
	uv_loop_close(&loop);
out:
	free(r.t0);
	rm_dir(dir);
	return rc;
}

/*
 * Baseline: write + fdatasync per record, one thread.  The file's blocks are
 * written with zeros and synced before the clock starts, so each fdatasync
 * flushes data only (the fair comparison with the log, which zero-fills
 * ahead of its writes); records wrap around in the first BASE_FILE bytes.
 */
#define BASE_FILE (8u << 20)

static int bench_baseline(const char *dir, double seconds, struct result *res)
{
	static unsigned char zeros[1 << 16];
	char path[5100];
	unsigned char rec[PAYLOAD + WAL_RECORD_HEADER_SIZE];
	uint64_t start, end, off = 0;
	int fd, rc = 0;

	rm_dir(dir);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/baseline", dir);
	memset(rec, 'b', sizeof(rec));
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	for (uint64_t o = 0; o < BASE_FILE && rc == 0; o += sizeof(zeros))
		if (pwrite(fd, zeros, sizeof(zeros), (off_t)o) != sizeof(zeros))
			rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	start = uv_hrtime();
	end = start + (uint64_t)(seconds * 1e9);
	while (rc == 0) {
		uint64_t t0 = uv_hrtime();

		if (t0 >= end)
			break;
		if (pwrite(fd, rec, sizeof(rec), (off_t)off) !=
			(ssize_t)sizeof(rec) ||
		    fdatasync(fd) < 0) {
			rc = -errno;
			break;
		}
		off += sizeof(rec);
		if (off + sizeof(rec) > BASE_FILE)
			off = 0;
		if (res->nlat < MAX_LAT)
			res->lat[res->nlat++] = uv_hrtime() - t0;
		res->records++;
		res->syncs++;
	}
	res->ns += uv_hrtime() - start;
	close(fd);
	rm_dir(dir);
	return rc;
}

static void print_row(const char *name, const char *mode, struct result *r,
		      double base_rps, double base_p50, double base_p99)
{
	double rps = r->ns ? (double)r->records / ((double)r->ns / 1e9) : 0;
	double p50, p99;

	percentiles(r->lat, r->nlat, &p50, &p99);
	printf("| %s | %s | %.0f | %.2f | %.3f | %.0f | %.0f | %.2f | %.2f |\n",
	       name, mode, rps, base_rps > 0 ? rps / base_rps : 1.0,
	       r->records ? (double)r->syncs / (double)r->records : 0, p50, p99,
	       base_p50 > 0 ? p99 / base_p50 : p99 / p50,
	       base_p99 > 0 ? p99 / base_p99 : 1.0);
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *list = "1,8,64,256";
	enum wal_sync_mode mode = WAL_SYNC_FDATASYNC;
	double seconds = 2.0, base_rps, base_p50, p99;
	struct result res[16] = {{0}};
	size_t napp[16], nconf = 0;
	int rounds = 4, rc = 0;
	char sub[5000], name[32], *copy, *tok, *save;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (strcmp(argv[i], "--appenders") == 0 && i + 1 < argc)
			list = argv[++i];
		else if (strcmp(argv[i], "--segment-size") == 0 &&
			 i + 1 < argc)
			segment_size = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--sync") == 0 && i + 1 < argc) {
			if (wal_sync_mode_parse(argv[++i], &mode) < 0) {
				fprintf(stderr, "walbench: bad sync mode\n");
				return 2;
			}
		} else {
			fprintf(stderr,
				"usage: walbench --dir DIR [--seconds S] "
				"[--rounds R] [--appenders 1,8,64,256] "
				"[--sync MODE] [--segment-size BYTES]\n");
			return 2;
		}
	}
	if (!dir || seconds <= 0 || rounds < 1 || strlen(dir) > 4000) {
		fprintf(stderr, "walbench: --dir is required\n");
		return 2;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		perror("walbench: mkdir");
		return 1;
	}
	copy = strdup(list);
	napp[nconf++] = 0; /* the baseline */
	for (tok = strtok_r(copy, ",", &save); tok && nconf < 16;
	     tok = strtok_r(NULL, ",", &save))
		if (atol(tok) > 0)
			napp[nconf++] = (size_t)atol(tok);
	free(copy);
	for (size_t c = 0; c < nconf; c++) {
		res[c].lat = malloc(MAX_LAT * sizeof(uint64_t));
		if (!res[c].lat) {
			fprintf(stderr, "walbench: out of memory\n");
			return 1;
		}
	}
	/* Interleaved rounds, so that the other users of a shared disk weigh
	 * on every configuration alike. */
	for (int round = 0; round < rounds && rc == 0; round++) {
		for (size_t c = 0; c < nconf && rc == 0; c++) {
			snprintf(sub, sizeof(sub), "%s/run-%zu", dir, napp[c]);
			if (napp[c] == 0)
				rc = bench_baseline(sub, seconds / rounds,
						    &res[c]);
			else
				rc = bench_wal(sub, napp[c], seconds / rounds,
					       mode, &res[c]);
			if (rc < 0)
				fprintf(stderr, "walbench: %zu appenders: %s\n",
					napp[c], wal_strerror(rc));
		}
	}
	if (rc < 0)
		return 1;
	base_rps = (double)res[0].records / ((double)res[0].ns / 1e9);
	percentiles(res[0].lat, res[0].nlat, &base_p50, &p99);
	printf("| appenders | mode | records/s | x baseline | syncs/record | "
	       "p50 us | p99 us | p99 / baseline p50 | p99 / baseline p99 |\n"
	       "|---|---|---|---|---|---|---|---|---|\n");
	print_row("baseline: write+fdatasync per record", "1 thread", &res[0],
		  0, 0, 0);
	for (size_t c = 1; c < nconf; c++) {
		snprintf(name, sizeof(name), "%zu", napp[c]);
		print_row(name,
			  mode == WAL_SYNC_FDATASYNC ? "wal fdatasync"
			  : mode == WAL_SYNC_DSYNC   ? "wal dsync"
						     : "wal none (unsafe)",
			  &res[c], base_rps, base_p50, p99);
	}
	for (size_t c = 0; c < nconf; c++)
		free(res[c].lat);
	rmdir(dir);
	return 0;
}
