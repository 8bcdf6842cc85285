/*
 * wal.c - `decree wal dump DIR`: prints every record of a log directory and
 * what recovery would do to it, without changing anything (the log is
 * opened read-only).
 *
 * Output, one line per record, then the verdict:
 *   lsn=12 type=3 len=41 payload={"gid":"x","decision":"commit"}
 *   lsn=13 type=1 len=4 hex=deadbeef
 *   verdict: clean, 13 records, lsn 1..13, 1 segment
 *   verdict: cut in 0000000000000001.wal at offset 4096 (lsn 14): checksum
 *            mismatch, 120 bytes dropped, 0 later segments dropped
 * Exit status: 0 clean, 1 if the tail would be cut or the log cannot be
 * read, 2 on a usage error.
 */
#include "wal/wal.h"
#include "cmd/cmd.h"
#include "common/common.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
	fprintf(out, "usage: decree wal dump DIR\n\n"
		     "Prints each record of the write-ahead log in DIR (lsn, "
		     "type, length, payload as\nJSON when it is JSON, hex "
		     "otherwise) and the recovery verdict: clean, or where\n"
		     "and why the tail would be cut.  Read-only.\n");
}

static void print_payload(const struct wal_entry *e)
{
	json_error_t jerr;
	json_t *j = NULL;

	if (e->len)
		j = json_loadb(e->payload, e->len, JSON_DECODE_ANY, &jerr);
	if (j) {
		char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

		json_decref(j);
		if (s) {
			printf(" payload=%s\n", s);
			free(s);
			return;
		}
	}
	printf(" hex=");
	for (uint32_t i = 0; i < e->len; i++)
		printf("%02x", ((const unsigned char *)e->payload)[i]);
	printf("\n");
}

static int dump(const char *dir)
{
	struct wal_recovery_report rep;
	struct wal_config cfg;
	struct wal_iter *it;
	struct wal_entry e;
	struct wal *w;
	int rc, status = 0;

	wal_config_init(&cfg);
	cfg.dir = dir;
	cfg.read_only = true;
	rc = wal_open(&cfg, &w, &rep);
	if (rc < 0) {
		fprintf(stderr, "decree wal dump: cannot open log %s: %s\n",
			dir, wal_strerror(rc));
		return 1;
	}
	rc = wal_iter_open(w, wal_first_lsn(w), &it);
	if (rc == 0) {
		while ((rc = wal_iter_next(it, &e)) == 1) {
			printf("lsn=%" PRIu64 " type=%" PRIu32 " len=%" PRIu32,
			       e.lsn, e.type, e.len);
			print_payload(&e);
		}
		wal_iter_close(it);
	}
	if (rc < 0) {
		fprintf(stderr, "decree wal dump: cannot read %s: %s\n", dir,
			wal_strerror(rc));
		status = 1;
	}
	if (rep.reason == WAL_CUT_NONE) {
		printf("verdict: clean, %" PRIu64 " records, lsn %" PRIu64
		       "..%" PRIu64 ", %" PRIu32 " segment%s\n",
		       rep.records, rep.first_lsn, rep.last_lsn, rep.segments,
		       rep.segments == 1 ? "" : "s");
	} else {
		printf("verdict: cut in %s at offset %" PRIu64 " (lsn %" PRIu64
		       "): %s, %" PRIu64 " bytes dropped, %" PRIu32
		       " other files dropped; %" PRIu64
		       " records kept, lsn %" PRIu64 "..%" PRIu64 "\n",
		       rep.segment, rep.cut_offset, rep.cut_lsn,
		       wal_cut_reason_name(rep.reason), rep.bytes_cut,
		       rep.segments_removed, rep.records, rep.first_lsn,
		       rep.last_lsn);
		status = 1;
	}
	wal_close(w, NULL, NULL);
	return status;
}

int cmd_wal(int argc, char **argv)
{
	if (cmd_wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "dump") != 0) {
		usage(stderr);
		return 2;
	}
	return dump(argv[2]);
}
