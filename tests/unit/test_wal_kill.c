/* test_wal_kill.c - a process appending forced records on real files is
 * killed with SIGKILL at a random moment; every record it was told was
 * durable is there after reopening, the log is intact, and the directory
 * lock died with the process. */
#include "common/common.h"
#include "wal/wal.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define APPENDERS 16

struct child {
	struct wal *w;
	int fd; /* acked LSNs go up this pipe */
};

static void fill(uint64_t lsn, char *buf, size_t *len)
{
	*len = (size_t)snprintf(buf, 96, "record %" PRIu64 " %.*s", lsn,
				(int)(lsn % 40),
				"----------------------------------------");
}

static void child_ack(struct wal *w, int64_t result, void *data)
{
	struct child *c = data;
	char buf[96];
	size_t len;

	if (result < 0)
		_exit(3);
	if (write(c->fd, &result, sizeof(result)) != sizeof(result))
		_exit(4);
	fill(wal_next_lsn(w), buf, &len);
	if (wal_append(w, 1, buf, len, true, child_ack, c) < 0)
		_exit(5);
}

static void child_main(const char *dir, int fd)
{
	struct child c = {.fd = fd};
	struct wal_config cfg;
	uv_loop_t loop;
	char buf[96];
	size_t len;

	uv_loop_init(&loop);
	wal_config_init(&cfg);
	cfg.dir = dir;
	cfg.loop = &loop;
	cfg.segment_size = 16 * 1024; /* rotate often */
	if (wal_open(&cfg, &c.w, NULL) < 0)
		_exit(2);
	for (int i = 0; i < APPENDERS; i++) {
		fill(wal_next_lsn(c.w), buf, &len);
		if (wal_append(c.w, 1, buf, len, true, child_ack, &c) < 0)
			_exit(5);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	_exit(6);
}

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

START_TEST(killed_writer_loses_nothing_acknowledged)
{
	char tmpl[] = "/tmp/decree-wal-kill-XXXXXX";
	char *dir = mkdtemp(tmpl);
	uint64_t acked = 0;
	unsigned seed = (unsigned)time(NULL);

	ck_assert_ptr_nonnull(dir);
	for (int round = 0; round < 3; round++) {
		struct wal_recovery_report rep;
		struct wal_config cfg;
		struct wal_iter *it;
		struct wal_entry e;
		struct timespec ts;
		struct wal *w;
		int p[2], status, rc;
		uint64_t lsn, want;
		char buf[96];
		size_t len;
		pid_t pid;

		ck_assert_int_eq(pipe(p), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(p[0]);
			child_main(dir, p[1]);
		}
		close(p[1]);
		seed = seed * 1103515245u + 12345u;
		ts.tv_sec = 0;
		ts.tv_nsec = 20000000 + (long)(seed % 80) * 1000000;
		/* wait for the child to have made progress, then a random
		 * while more (a deadline, not a condition stand-in) */
		ck_assert_int_eq(read(p[0], &lsn, sizeof(lsn)), sizeof(lsn));
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		while (read(p[0], &lsn, sizeof(lsn)) == sizeof(lsn))
			if (lsn > acked)
				acked = lsn;
		close(p[0]);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFSIGNALED(status),
			      "child exited by itself: %d (seed %u)",
			      WEXITSTATUS(status), seed);

		wal_config_init(&cfg);
		cfg.dir = dir;
		rc = wal_open(&cfg, &w, &rep); /* the lock died with it */
		ck_assert_int_eq(rc, 0);
		ck_assert_msg(rep.last_lsn >= acked,
			      "lost acknowledged records: last %" PRIu64
			      " acked %" PRIu64 " (seed %u)",
			      rep.last_lsn, acked, seed);
		ck_assert_int_eq(wal_iter_open(w, 1, &it), 0);
		want = 1;
		while ((rc = wal_iter_next(it, &e)) == 1) {
			fill(want, buf, &len);
			ck_assert_uint_eq(e.lsn, want);
			ck_assert_uint_eq(e.len, len);
			ck_assert_int_eq(memcmp(e.payload, buf, len), 0);
			want++;
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(want, rep.last_lsn + 1);
		wal_iter_close(it);
		wal_close(w, NULL, NULL);
		acked = rep.last_lsn;
	}
	ck_assert_uint_gt(acked, APPENDERS);
	rm_dir(dir);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    killed_writer_loses_nothing_acknowledged,
	    NULL,
	};

	return suite_main("wal_kill", 60, tests);
}
