/*
 * test_wal_spare.c - spare segments on real files: the preparer thread
 * makes wal.spare (zeroed whole, synced) and rotations use it; a spare is
 * never read as log, whatever state a crash left it in; a spare of the
 * wrong size, or a half-made one, is replaced.  Waits on conditions with a
 * loop timer (bounded), never with a sleep.
 */
#include "common/common.h"
#include "wal/wal.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG (16u * 1024u)
#define DEADLINE_MS 20000

static void rm_dir(const char *dir)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(dir);

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static int64_t file_size(const char *dir, const char *name)
{
	char path[512];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* True if every byte of dir/name from `from` on is zero. */
static bool zero_from(const char *dir, const char *name, size_t from)
{
	char path[512];
	unsigned char buf[4096];
	size_t off = 0;
	ssize_t n;
	bool zero = true;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	while (zero && (n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (off + (size_t)i >= from && buf[i])
				zero = false;
		off += (size_t)n;
	}
	close(fd);
	return zero;
}

static void copy_bytes(const char *dir, const char *from, const char *to,
		       size_t len)
{
	char path[512], *buf = malloc(len);
	int fd;

	ck_assert_ptr_nonnull(buf);
	snprintf(path, sizeof(path), "%s/%s", dir, from);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, 0), (ssize_t)len);
	close(fd);
	snprintf(path, sizeof(path), "%s/%s", dir, to);
	fd = open(path, O_RDWR | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, len, 0), (ssize_t)len);
	close(fd);
	free(buf);
}

/*
 * A threaded run: `count` forced records appended one after another; before
 * each append it waits until a spare is ready, so every rotation has one.
 */
struct run {
	struct wal *w;
	uv_timer_t tick;
	uint64_t count, next, deadline;
	bool wait_spare, timed_out, closed;
	struct wal_stats stats;
};

static void on_closed(void *data)
{
	((struct run *)data)->closed = true;
}

static void on_append(struct wal *w, int64_t result, void *data);

static void finish(struct run *r)
{
	wal_stats_get(r->w, &r->stats);
	uv_close((uv_handle_t *)&r->tick, NULL);
	wal_close(r->w, on_closed, r);
}

static void on_tick(uv_timer_t *t)
{
	struct run *r = t->data;
	struct wal_stats st;
	char buf[64];
	int len;

	if (uv_now(t->loop) > r->deadline) {
		r->timed_out = true;
		finish(r);
		return;
	}
	wal_stats_get(r->w, &st);
	if (r->wait_spare && !st.spare_ready)
		return;
	if (r->next > r->count) {
		finish(r);
		return;
	}
	uv_timer_stop(t);
	len = snprintf(buf, sizeof(buf), "record %" PRIu64, r->next);
	ck_assert_int_eq(wal_append(r->w, 1, buf, (size_t)len, true,
				    on_append, r),
			 0);
}

static void on_append(struct wal *w, int64_t result, void *data)
{
	struct run *r = data;

	(void)w;
	ck_assert_int_eq(result, (int64_t)r->next);
	r->next++;
	uv_timer_start(&r->tick, on_tick, 0, 1);
}

static void run_threaded(const char *dir, uint64_t count, bool wait_spare,
			 struct run *r)
{
	struct wal_config cfg;
	uv_loop_t loop;

	memset(r, 0, sizeof(*r));
	r->count = count;
	r->wait_spare = wait_spare;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	wal_config_init(&cfg);
	cfg.dir = dir;
	cfg.loop = &loop;
	cfg.segment_size = SEG;
	ck_assert_int_eq(wal_open(&cfg, &r->w, NULL), 0);
	r->next = wal_next_lsn(r->w);
	r->count += r->next - 1;
	r->deadline = uv_now(&loop) + DEADLINE_MS;
	uv_timer_init(&loop, &r->tick);
	r->tick.data = r;
	uv_timer_start(&r->tick, on_tick, 0, 1);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert(r->closed);
	ck_assert(!r->timed_out);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* Opens read-write without a loop and checks records first..last. */
static void check_log(const char *dir, uint64_t first, uint64_t last)
{
	struct wal_recovery_report rep;
	struct wal_config cfg;
	struct wal_iter *it;
	struct wal_entry e;
	struct wal *w;
	uint64_t want = first;
	char buf[64];
	int rc;

	wal_config_init(&cfg);
	cfg.dir = dir;
	cfg.segment_size = SEG;
	ck_assert_int_eq(wal_open(&cfg, &w, &rep), 0);
	ck_assert_int_eq(rep.reason, WAL_CUT_NONE);
	ck_assert_uint_eq(rep.last_lsn, last);
	ck_assert_int_eq(wal_iter_open(w, first, &it), 0);
	while ((rc = wal_iter_next(it, &e)) == 1) {
		int len = snprintf(buf, sizeof(buf), "record %" PRIu64, want);

		ck_assert_uint_eq(e.lsn, want);
		ck_assert_uint_eq(e.len, (uint32_t)len);
		ck_assert_int_eq(memcmp(e.payload, buf, (size_t)len), 0);
		want++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(want, last + 1);
	wal_iter_close(it);
	wal_close(w, NULL, NULL);
}

START_TEST(rotations_use_the_spare_and_it_is_kept_for_the_next_run)
{
	char tmpl[] = "/tmp/decree-wal-spare-XXXXXX";
	char *dir = mkdtemp(tmpl);
	struct run r;

	ck_assert_ptr_nonnull(dir);
	run_threaded(dir, 2000, true, &r);
	/* 2000 records of ~35 bytes in 16 KiB segments: several rotations,
	 * each made from a spare the preparer had ready */
	ck_assert_uint_ge(r.stats.rotations, 3);
	ck_assert_uint_eq(r.stats.rotations_spare, r.stats.rotations);
	ck_assert_uint_ge(r.stats.spares_made, r.stats.rotations);
	/* the spare for the next rotation is left behind, zeroed whole */
	ck_assert_int_eq(file_size(dir, "wal.spare"), SEG);
	ck_assert(zero_from(dir, "wal.spare", 0));
	ck_assert_int_eq(file_size(dir, "wal.spare.tmp"), -1);
	check_log(dir, 1, 2000);

	/* the next run adopts it: ready at once, and used */
	run_threaded(dir, 600, false, &r);
	ck_assert_uint_ge(r.stats.rotations_spare, 1);
	check_log(dir, 1, 2600);
	rm_dir(dir);
}
END_TEST

START_TEST(a_spare_left_by_a_crash_is_never_read_as_log)
{
	char tmpl[] = "/tmp/decree-wal-spare-XXXXXX";
	char *dir = mkdtemp(tmpl);
	char seg[64];
	struct run r;

	ck_assert_ptr_nonnull(dir);
	run_threaded(dir, 100, true, &r);
	check_log(dir, 1, 100);
	/* a crash between the header write into the spare and its rename:
	 * wal.spare holds a valid segment header (here, the first
	 * segment's, LSN 1) and zeros */
	snprintf(seg, sizeof(seg), "%016" PRIx64 ".wal", (uint64_t)1);
	copy_bytes(dir, seg, "wal.spare", WAL_SEGMENT_HEADER_SIZE);
	ck_assert_int_eq(file_size(dir, "wal.spare"), SEG);
	/* and a half-made one */
	copy_bytes(dir, seg, "wal.spare.tmp", 100);
	check_log(dir, 1, 100);
	ck_assert_int_eq(file_size(dir, "wal.spare.tmp"), -1);

	/* the next rotation overwrites the stale header; nothing is lost */
	run_threaded(dir, 600, false, &r);
	ck_assert_uint_ge(r.stats.rotations_spare, 1);
	check_log(dir, 1, 700);
	rm_dir(dir);
}
END_TEST

START_TEST(a_spare_of_the_wrong_size_is_replaced)
{
	char tmpl[] = "/tmp/decree-wal-spare-XXXXXX";
	char *dir = mkdtemp(tmpl);
	char seg[64], path[512];
	struct run r;

	ck_assert_ptr_nonnull(dir);
	run_threaded(dir, 50, true, &r);
	/* a spare made for another segment size, with junk in it */
	snprintf(seg, sizeof(seg), "%016" PRIx64 ".wal", (uint64_t)1);
	snprintf(path, sizeof(path), "%s/wal.spare", dir);
	ck_assert_int_eq(unlink(path), 0);
	copy_bytes(dir, seg, "wal.spare", 1000);
	ck_assert_int_eq(file_size(dir, "wal.spare"), 1000);
	run_threaded(dir, 10, true, &r);
	ck_assert_uint_ge(r.stats.spares_made, 1);
	ck_assert_int_eq(file_size(dir, "wal.spare"), SEG);
	ck_assert(zero_from(dir, "wal.spare", 0));
	check_log(dir, 1, 60);
	rm_dir(dir);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    rotations_use_the_spare_and_it_is_kept_for_the_next_run,
	    a_spare_left_by_a_crash_is_never_read_as_log,
	    a_spare_of_the_wrong_size_is_replaced,
	    NULL,
	};

	return suite_main("wal_spare", 60, tests);
}
