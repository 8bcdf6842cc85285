/* test_wal_dump.c - `decree wal dump DIR`: records as JSON or hex, the
 * recovery verdict, exit status, and that dumping changes nothing. */
#include "common/common.h"
#include "wal/wal.h"

#include <check.h>
#include "tests/lib/suite.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];
static char seg[128];

static const char *decree_bin(void)
{
	const char *b = getenv("DECREE_BIN");

	return b && *b ? b : "build/decree";
}

/* Runs decree wal dump on dir; returns its output, *status its exit code. */
static char *run_dump(int *status)
{
	char cmd[512], *out = NULL;
	size_t len = 0, n;
	char buf[4096];
	FILE *p;
	int rc;

	ck_assert_msg(access(decree_bin(), X_OK) == 0,
		      "decree binary %s not found (set DECREE_BIN)",
		      decree_bin());
	snprintf(cmd, sizeof(cmd), "%s wal dump %s 2>&1", decree_bin(), dir);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
		out = realloc(out, len + n + 1);
		memcpy(out + len, buf, n);
		len += n;
	}
	rc = pclose(p);
	*status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
	if (!out)
		out = calloc(1, 1);
	out[len] = '\0';
	return out;
}

static void make_log(void)
{
	struct wal_config cfg;
	struct wal *w;
	const char *j1 = "{\"gid\":\"t1\", \"decision\": \"commit\"}";
	const unsigned char bin[4] = {0xde, 0xad, 0xbe, 0xef};

	snprintf(dir, sizeof(dir), "/tmp/decree-waldump-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(seg, sizeof(seg), "%s/%016x.wal", dir, 1);
	wal_config_init(&cfg);
	cfg.dir = dir;
	cfg.segment_size = 64 * 1024;
	ck_assert_int_eq(wal_open(&cfg, &w, NULL), 0);
	ck_assert_int_eq(wal_append(w, 3, j1, strlen(j1), true, NULL, NULL), 0);
	ck_assert_int_eq(wal_append(w, 1, bin, sizeof(bin), true, NULL, NULL),
			 0);
	ck_assert_int_eq(wal_append(w, 2, "[1,2]", 5, true, NULL, NULL), 0);
	ck_assert_int_eq(wal_append(w, 2, "", 0, true, NULL, NULL), 0);
	ck_assert_int_eq(wal_step(w), 4);
	wal_close(w, NULL, NULL);
}

static void remove_log(void)
{
	char path[160];

	unlink(seg);
	snprintf(path, sizeof(path), "%s/wal.start", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/wal.lock", dir);
	unlink(path);
	ck_assert_int_eq(rmdir(dir), 0);
}

START_TEST(dump_prints_json_hex_and_clean_verdict)
{
	char *out;
	int status;

	make_log();
	out = run_dump(&status);
	ck_assert_int_eq(status, 0);
	ck_assert_ptr_nonnull(
	    strstr(out, "lsn=1 type=3 len=34 "
			"payload={\"gid\":\"t1\",\"decision\":\"commit\"}\n"));
	ck_assert_ptr_nonnull(strstr(out, "lsn=2 type=1 len=4 hex=deadbeef\n"));
	ck_assert_ptr_nonnull(
	    strstr(out, "lsn=3 type=2 len=5 payload=[1,2]\n"));
	ck_assert_ptr_nonnull(strstr(out, "lsn=4 type=2 len=0 hex=\n"));
	ck_assert_ptr_nonnull(
	    strstr(out, "verdict: clean, 4 records, lsn 1..4, 1 segment\n"));
	free(out);
	remove_log();
}
END_TEST

START_TEST(dump_reports_cut_and_changes_nothing)
{
	struct stat before, after;
	unsigned char b;
	char *out;
	int status, fd;
	/* a payload byte of record 3: header 32, rec1 24+34, rec2 24+4 */
	off_t pos = 32 + 24 + 34 + 24 + 4 + 24 + 2;

	make_log();
	fd = open(seg, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, pos), 1);
	b ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &b, 1, pos), 1);
	close(fd);
	ck_assert_int_eq(stat(seg, &before), 0);
	out = run_dump(&status);
	ck_assert_int_eq(status, 1);
	ck_assert_ptr_nonnull(strstr(out, "lsn=2 type=1"));
	ck_assert_ptr_null(strstr(out, "lsn=3 "));
	ck_assert_ptr_nonnull(strstr(out,
				     "verdict: cut in 0000000000000001.wal "
				     "at offset 118 (lsn 3): checksum "
				     "mismatch"));
	ck_assert_int_eq(stat(seg, &after), 0);
	ck_assert_int_eq(before.st_size, after.st_size);
	ck_assert_int_eq(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
	ck_assert_int_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
	free(out);
	remove_log();
}
END_TEST

START_TEST(dump_usage_and_missing_dir)
{
	char cmd[512];
	int rc;

	snprintf(cmd, sizeof(cmd), "%s wal >/dev/null 2>&1", decree_bin());
	rc = system(cmd);
	ck_assert_int_eq(WEXITSTATUS(rc), 2);
	snprintf(cmd, sizeof(cmd),
		 "%s wal dump /tmp/decree-waldump-missing-dir >/dev/null 2>&1",
		 decree_bin());
	rc = system(cmd);
	ck_assert_int_eq(WEXITSTATUS(rc), 1);
	ck_assert_int_ne(access("/tmp/decree-waldump-missing-dir", F_OK), 0);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    dump_prints_json_hex_and_clean_verdict,
	    dump_reports_cut_and_changes_nothing,
	    dump_usage_and_missing_dir,
	    NULL,
	};

	return suite_main("wal_dump", 0, tests);
}
