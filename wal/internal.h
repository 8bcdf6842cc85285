/*
 * internal.h - private to wal/: the log object shared by its files, the
 * on-disk encoders (format.c), the writer core (write.c), recovery
 * (recover.c) and the request queue.  Nothing outside wal/ includes it.
 *
 * Threads (threaded mode): "loop" fields are touched only by the loop
 * thread, "writer" fields only by the writer thread (or by the loop thread
 * before the writer starts and after it is joined), "locked" fields only
 * under w->lock.  In manual mode one thread does everything.
 */
#ifndef DECREE_WAL_INTERNAL_H
#define DECREE_WAL_INTERNAL_H

#include "common/wake.h"
#include "wal/wal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define WAL__SEG_MAGIC	 0x4C415744u /* "DWAL" little-endian */
#define WAL__START_MAGIC 0x54535744u /* "DWST" little-endian */
#define WAL__VERSION	 1u
#define WAL__START_SIZE	 24u
#define WAL__START_NAME	 "wal.start"
#define WAL__START_TMP	 "wal.start.tmp"
#define WAL__NAME_MAX	 40
#define WAL__SPARE_NAME	 "wal.spare"
#define WAL__SPARE_TMP	 "wal.spare.tmp"

uint32_t wal__crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* ---- format.c: byte layouts (documented there) */
struct wal__seg_header {
	uint64_t first_lsn;
	uint64_t segment_size;
};
struct wal__rec_header {
	uint32_t crc;
	uint32_t len;
	uint64_t lsn;
	uint32_t type;
	uint32_t reserved;
};
void wal__put16(unsigned char *p, uint16_t v);
void wal__put32(unsigned char *p, uint32_t v);
void wal__put64(unsigned char *p, uint64_t v);
uint16_t wal__get16(const unsigned char *p);
uint32_t wal__get32(const unsigned char *p);
uint64_t wal__get64(const unsigned char *p);
void wal__seg_header_encode(unsigned char out[WAL_SEGMENT_HEADER_SIZE],
			    const struct wal__seg_header *h);
/* 0, or -WAL_EFORMAT (magic, version, size or crc wrong). */
int wal__seg_header_decode(const unsigned char in[WAL_SEGMENT_HEADER_SIZE],
			   struct wal__seg_header *h);
/* Encodes header + payload into out (WAL_RECORD_HEADER_SIZE + len). */
void wal__rec_encode(unsigned char *out, uint64_t lsn, uint32_t type,
		     const void *payload, uint32_t len);
void wal__rec_header_decode(const unsigned char in[WAL_RECORD_HEADER_SIZE],
			    struct wal__rec_header *h);
/* True if the crc in h matches the header bytes and payload. */
bool wal__rec_check(const unsigned char hdr[WAL_RECORD_HEADER_SIZE],
		    const void *payload, uint32_t len);
bool wal__is_zero(const void *buf, size_t len);
void wal__start_encode(unsigned char out[WAL__START_SIZE], uint64_t first);
int wal__start_decode(const unsigned char in[WAL__START_SIZE], uint64_t *first);
/* "%016llx.wal" */
void wal__seg_name(char out[WAL__NAME_MAX], uint64_t first_lsn);
/* True and *first set if name is a segment name. */
bool wal__seg_name_parse(const char *name, uint64_t *first_lsn);

/* storage_file.c: create false fails with -ENOENT if dir is missing */
int wal__file_storage_open(const char *dir, bool create,
			   struct wal_storage **out);

/* ---- requests */
enum wal__req_kind {
	WAL__REQ_APPEND,
	WAL__REQ_SYNC,
	WAL__REQ_TRUNC_SUFFIX,
	WAL__REQ_TRUNC_PREFIX,
};

struct wal__req {
	struct wal__req *next;
	enum wal__req_kind kind;
	bool forced;
	uint64_t lsn; /* append: its LSN; truncations: the argument */
	int64_t result;
	wal_cb cb;
	void *data;
	uint32_t size;	     /* encoded record bytes (appends) */
	unsigned char rec[]; /* encoded record (appends) */
};

struct wal__req_list {
	struct wal__req *head;
	struct wal__req *tail;
	size_t count;
};

/* ---- segments */
struct wal__seg {
	uint64_t first_lsn;
};

struct wal {
	struct wal_storage *st;
	struct wal_storage *own_st; /* made by wal_open (file backend) */
	enum wal_sync_mode sync_mode;
	uint64_t seg_size;
	bool read_only;
	uv_loop_t *loop;

	/* loop */
	uint64_t next_lsn;
	uint64_t first_lsn;
	uint64_t written_lsn;
	int failed;
	bool closing;
	uint64_t generation; /* bumped by truncations: stales iterators */
	uint64_t *cuts;	     /* lsn of each queued suffix truncation, FIFO */
	size_t ncuts, cuts_cap;
	/* where the last iterator stopped (iter.c): lets the next one that
	 * starts at or after it skip the scan from the segment start */
	uint64_t hint_gen, hint_lsn, hint_seg, hint_off;
	wal_close_cb close_cb;
	void *close_data;
	char errmsg[256];
	size_t outstanding;	    /* requests queued and not yet completed */
	struct wal__req_list fireq; /* completions waiting for their callback */
	bool firing;		    /* fireq is being drained */
	bool kick;		    /* appended while firing: wake the writer */
	bool close_pending;	    /* free once fireq is drained */
	bool close_started;	    /* uv_close called */

	/* locked */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct wal__req_list pending;
	struct wal__req_list done;
	bool writer_idle;
	bool stop;
	struct wal__seg *segs; /* segment list, ascending */
	size_t nsegs, segs_cap;
	struct wal_stats stats;
	bool spare_ready;	 /* wal.spare is complete: the next segment */
	bool spare_wanted;	 /* the preparer should make one */
	uint64_t spares_made;
	pthread_cond_t prep_cond; /* wakes the preparer */
	int wfail_shared; /* writer failure, for the loop */
	char wmsg[256];	  /* writer failure message */

	/* writer */
	void *tail;	     /* open last segment, or NULL if none */
	uint64_t tail_off;   /* next write offset in tail */
	uint64_t tail_size;  /* the tail's maximum size (its header) */
	uint64_t wlast_lsn;  /* last LSN written */
	uint64_t wstart_lsn; /* start of log as the writer knows it */
	bool dirty;	     /* writes not yet synced */
	int wfail;	     /* error that failed the writer, 0 if none */
	unsigned char *buf;  /* batch buffer */
	size_t buf_cap;
	struct wal_stats wstats;

	/* threaded mode */
	bool threaded;
	bool thread_started;
	pthread_t thread;
	bool prep_started;
	pthread_t prep_thread; /* makes wal.spare ahead of rotations */
	struct loop_wake wake;
};

/* ---- write.c: the writer core, used by both drivers */
/* Performs every request of list in order, setting each result. */
void wal__process(struct wal *w, struct wal__req_list *list);
/* Copies writer stats and failure to the locked fields (under lock). */
void wal__publish(struct wal *w);
void wal__fail_writer(struct wal *w, int err, const char *what);
/* The preparer's job: makes wal.spare (zeroed whole, synced). */
int wal__make_spare(struct wal *w);

/* ---- recover.c */
/* Scans and repairs the log (see recover.c); fills the writer/loop state. */
int wal__recover(struct wal *w, struct wal_recovery_report *rep);
/* Finds the end of segment file f: offset after its last valid record with
 * LSNs continuing from first_lsn; *last = LSN of that record (first-1 if
 * none). */
struct wal__scan {
	uint64_t off;	  /* end of the last good record (or of stop) */
	uint64_t last;	  /* LSN of the last good record, first - 1 if none */
	uint64_t records; /* good records seen */
	enum wal_cut_reason reason; /* why the scan stopped, NONE: clean end */
};
/* Scans segment file f from its first record.  Stops before the record
 * with LSN stop_lsn (0: never), at a clean end, or at a bad record. */
int wal__seg_scan(struct wal *w, void *f, uint64_t first_lsn, uint64_t stop_lsn,
		  struct wal__scan *sc);

/* ---- buffered reader over one file (recover.c) */
struct wal__rd {
	struct wal_storage *st;
	void *f;
	unsigned char *buf;
	size_t cap;
	uint64_t off; /* file offset of buf[0] */
	size_t len;   /* valid bytes in buf */
};
/* Points *p at len bytes at off.  Returns 1, 0 if the file ends before
 * off + len, or a negative code.  The pointer is valid until the next call.
 * fresh: read from the file even if the bytes are buffered. */
int wal__rd_get(struct wal__rd *rd, uint64_t off, size_t len, bool fresh,
		const unsigned char **p);
void wal__rd_free(struct wal__rd *rd);

/* ---- list helpers */
void wal__list_push(struct wal__req_list *l, struct wal__req *r);
void wal__list_splice(struct wal__req_list *dst, struct wal__req_list *src);

/* segment list (caller holds w->lock when threads run) */
int wal__segs_push(struct wal *w, uint64_t first_lsn);

#endif
