/*
 * wal.h - the public header of wal/: decree's forced-write log.
 *
 * A log is a directory of segment files holding records
 * [crc32c | length | lsn | type | payload] (byte layout in wal/format.c and
 * docs/wal.md).  LSNs start at 1 and are dense: every record's LSN is its
 * predecessor's plus one.  Appenders queue records; one writer writes
 * everything queued so far with one write and syncs once (group commit), then
 * completes every waiter.
 *
 * Two ways to drive the writer, chosen by wal_config.loop:
 *
 *   threaded (loop != NULL)  a dedicated writer thread does the I/O; every
 *                            callback fires ON THE LOOP THREAD, once.  No
 *                            wal_* call blocks on a sync (wal_close excepted,
 *                            which waits for the batch in flight).
 *   manual   (loop == NULL)  no thread, no libuv: requests queue until the
 *                            caller runs wal_step(), which performs all the
 *                            queued work synchronously and fires the
 *                            callbacks before returning.  Deterministic; the
 *                            simulator and Raft tests use it with the
 *                            in-memory storage below.
 *
 * In both modes every wal_* function must be called from one thread (the loop
 * thread, or the caller's thread in manual mode).
 *
 * Callback contract (libuv style): a function that takes a callback either
 * returns 0 and then the callback fires exactly once later, or returns a
 * negative code and the callback never fires.  Callbacks fire in request
 * order (appends therefore complete in LSN order).  A callback may call
 * wal_append, wal_sync, wal_truncate_suffix, wal_truncate_prefix or
 * wal_step again, or wal_close.
 *
 * Durability of an append:
 *   forced      the callback fires once the record is on stable storage
 *               (synced under the configured sync mode).
 *   not forced  the callback fires once the record has been written to the
 *               storage (OS page cache for real files); it becomes durable
 *               with the next sync (a later forced record, wal_sync, a
 *               suffix truncation, or segment rotation).  A crash
 *               before that may lose it, but never corrupts it: recovery
 *               keeps a prefix of the log.
 *   result      the callback gets the record's LSN (>= 1) or a negative code.
 *
 * Failures (DESIGN.md section 9): a failed write or sync is NOT retried.
 * The log becomes failed: the request that hit it and every queued request
 * complete with that error (-EIO, -ENOSPC, ...), later appends return
 * -WAL_EFAILED at once, wal_failed() says why.  What was acknowledged stays
 * readable through the iterator; reopen the log to recover and continue.
 *
 * Ownership: the caller owns every pointer it passes in (payloads are copied
 * before wal_append returns) and the storage passed in wal_config; the log
 * owns what wal_open returns until wal_close's callback.  Payload pointers in
 * a wal_entry belong to the iterator and stay valid until its next call.
 *
 * Header history: v1 (first commit).  Changes are additions only and are
 * listed here.
 *   v1.1  WAL_ELOCKED: a writable open locks the directory (flock on
 *         wal.lock); a second writable open fails with -WAL_ELOCKED.
 *   v1.2  wal_storage_ops.zero_from (optional, last member).
 */
#ifndef DECREE_WAL_H
#define DECREE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ------------------------------------------------------------------ errors */

/*
 * WAL-specific error codes; functions return them negated (-WAL_EFAILED).
 * Any other negative value is -errno passed through from the storage.
 */
#define WAL_ERRORS(X)                                                          \
	X(WAL_ETOOBIG, 7001, "record too large for a segment")                 \
	X(WAL_EFAILED, 7002,                                                   \
	  "log failed after a write or sync error; reopen "                    \
	  "it to recover")                                                     \
	X(WAL_ECLOSED, 7003, "log is closing")                                 \
	X(WAL_ECOMPACTED, 7004,                                                \
	  "lsn is before the start of the log "                                \
	  "(prefix truncated)")                                                \
	X(WAL_ERANGE, 7005, "lsn is beyond the end of the log")                \
	X(WAL_EREADONLY, 7006, "log was opened read-only")                     \
	X(WAL_ECORRUPT, 7007, "record failed its check inside the log")        \
	X(WAL_EFORMAT, 7008, "not a decree log file (bad magic or version)")   \
	X(WAL_ESTALE, 7009, "iterator invalidated by a truncation")            \
	X(WAL_EBUSY, 7010, "another operation is in progress")                 \
	X(WAL_ELOCKED, 7011, "log directory is in use by another process")

enum wal_error {
#define WAL_ERROR_ENUM(name, value, msg) name = value,
	WAL_ERRORS(WAL_ERROR_ENUM)
#undef WAL_ERROR_ENUM
};

/* Text for a negative WAL code or -errno; never NULL. */
const char *wal_strerror(int code);

/* ---------------------------------------------------------- on-disk sizes */

#define WAL_SEGMENT_HEADER_SIZE	 32u
#define WAL_RECORD_HEADER_SIZE	 24u
#define WAL_DEFAULT_SEGMENT_SIZE (16u * 1024u * 1024u)
#define WAL_MIN_SEGMENT_SIZE	 4096u

/* ----------------------------------------------------------------- storage */

/*
 * A storage backend: a flat namespace of files (the log directory) reached
 * through function pointers.  Names are plain file names, no slashes.
 * Every function returns 0 (read: bytes read, short only at end of file) or
 * -errno.  A backend used in threaded mode is called from the writer thread
 * and the loop thread (reads, iterators) at once and must be thread-safe.
 */
enum wal_open_flags {
	WAL_OPEN_CREATE = 1u << 0, /* create if missing */
	WAL_OPEN_DSYNC = 1u << 1,  /* writes are durable when write returns */
	WAL_OPEN_RDONLY = 1u << 2,
};

struct wal_storage_ops {
	int (*open)(void *data, const char *name, unsigned flags, void **file);
	void (*close)(void *data, void *file);
	int64_t (*read)(void *data, void *file, void *buf, size_t len,
			uint64_t off);
	int (*write)(void *data, void *file, const void *buf, size_t len,
		     uint64_t off);
	/* fdatasync: bytes written to this file so far become durable. */
	int (*sync)(void *data, void *file);
	int (*size)(void *data, void *file, uint64_t *size);
	/* Sets the size; bytes past it are gone.  Durable when it returns. */
	int (*truncate)(void *data, void *file, uint64_t size);
	/* Reserves space up to size (zero-filled); never shrinks. */
	int (*allocate)(void *data, void *file, uint64_t size);
	int (*unlink)(void *data, const char *name);
	/* Atomically replaces to with from. */
	int (*rename)(void *data, const char *from, const char *to);
	/* Names in the directory; *names is an array from mem_alloc of
	 * strings from mem_alloc: free with wal_storage_list_free(). */
	int (*list)(void *data, char ***names, size_t *count);
	/* Makes creations, renames and unlinks durable. */
	int (*sync_dir)(void *data);
	/* Frees data (wal_storage_free calls it). */
	void (*destroy)(void *data);
	/* Optional (may be NULL): an offset past which every byte of the
	 * file reads as zero, so recovery need not read a preallocated tail
	 * to check it.  Added in v1.2. */
	int (*zero_from)(void *data, void *file, uint64_t *off);
	/* Optional (may be NULL): writes zeros over [off, off + len) so that
	 * later writes there are plain overwrites (on real files: no block
	 * allocation or extent conversion for fdatasync to commit).  Durable
	 * after the next sync.  Added in v1.3. */
	int (*zero)(void *data, void *file, uint64_t off, uint64_t len);
};

struct wal_storage {
	const struct wal_storage_ops *ops;
	void *data;
};

void wal_storage_list_free(char **names, size_t count);
/* Calls ops->destroy and frees s.  NULL is fine. */
void wal_storage_free(struct wal_storage *s);

/*
 * Real files in dir (created if missing, with its parents not).  The
 * default when wal_config.storage is NULL.  Takes an exclusive lock on
 * dir/wal.lock (flock) for as long as the storage lives: -WAL_ELOCKED if
 * another process or storage holds it.  Caller frees with
 * wal_storage_free().
 */
int wal_file_storage_new(const char *dir, struct wal_storage **out);

/*
 * In-memory storage for tests and the simulator.  Each file keeps its
 * current bytes and the bytes that were durable at its last sync.  Metadata
 * operations (create, truncate, allocate, rename, unlink) are durable at
 * once, as on a journaled file system after a directory sync.  Thread-safe.
 * It outlives any log opened on it: crash it, then open the log again.
 */
struct wal_storage *wal_mem_storage_new(void);
/* Same as wal_storage_free. */
void wal_mem_storage_free(struct wal_storage *s);

/* Power loss: every file falls back to its synced bytes. */
void wal_mem_storage_crash(struct wal_storage *s);
/*
 * Power loss that tears the last unsynced write: every file falls back to
 * its synced bytes, then the first keep bytes of the most recent unsynced
 * write (if any) land.  keep >= that write's length keeps all of it.
 */
void wal_mem_storage_crash_torn(struct wal_storage *s, size_t keep);
/* Length of the most recent unsynced write (0 if every write is synced). */
size_t wal_mem_storage_last_write_len(const struct wal_storage *s);

/* Operation kinds, as a mask for wal_mem_storage_fail(). */
enum wal_mem_op {
	WAL_MEM_OP_OPEN = 1u << 0,
	WAL_MEM_OP_READ = 1u << 1,
	WAL_MEM_OP_WRITE = 1u << 2,
	WAL_MEM_OP_SYNC = 1u << 3,
	WAL_MEM_OP_TRUNCATE = 1u << 4,
	WAL_MEM_OP_ALLOCATE = 1u << 5,
	WAL_MEM_OP_UNLINK = 1u << 6,
	WAL_MEM_OP_RENAME = 1u << 7,
	WAL_MEM_OP_LIST = 1u << 8,
	WAL_MEM_OP_SYNC_DIR = 1u << 9,
	WAL_MEM_OP_SIZE = 1u << 10,
	/* every operation that changes the storage */
	WAL_MEM_OP_MUTATING = WAL_MEM_OP_OPEN | WAL_MEM_OP_WRITE |
			      WAL_MEM_OP_SYNC | WAL_MEM_OP_TRUNCATE |
			      WAL_MEM_OP_ALLOCATE | WAL_MEM_OP_UNLINK |
			      WAL_MEM_OP_RENAME | WAL_MEM_OP_SYNC_DIR,
	WAL_MEM_OP_ALL = 0x7ff,
};

/*
 * Fault injection: the nth operation from now (1 = the next) whose kind is
 * in mask fails with err (a negative errno such as -EIO or -ENOSPC) and has
 * no effect.  sticky: that one and every later operation in mask fail too
 * (a crash at that step: follow with wal_mem_storage_crash).  nth <= 0
 * disarms.
 */
void wal_mem_storage_fail(struct wal_storage *s, unsigned mask, long nth,
			  int err, bool sticky);
/* Operations in mask performed (or failed) since the storage was made. */
long wal_mem_storage_count(const struct wal_storage *s, unsigned mask);
/* Flips one bit of a file's current and synced bytes (corruption). */
int wal_mem_storage_flip_bit(struct wal_storage *s, const char *name,
			     uint64_t off, unsigned bit);
/* Current size of a file, or -ENOENT. */
int64_t wal_mem_storage_file_size(const struct wal_storage *s,
				  const char *name);

/* -------------------------------------------------------------------- log */

enum wal_sync_mode {
	WAL_SYNC_FDATASYNC = 0, /* default: write, then fdatasync */
	WAL_SYNC_DSYNC,		/* files opened O_DSYNC; no separate sync */
	WAL_SYNC_NONE,		/* UNSAFE: never syncs; experiments only */
};

/* "fdatasync", "dsync" (or "o_dsync"), "none"; -EINVAL otherwise. */
int wal_sync_mode_parse(const char *name, enum wal_sync_mode *out);
const char *wal_sync_mode_name(enum wal_sync_mode mode);

struct wal_config {
	const char *dir;	     /* log directory; used when storage NULL */
	struct wal_storage *storage; /* NULL: real files in dir */
	uv_loop_t *loop;	     /* NULL: manual mode, see wal_step() */
	enum wal_sync_mode sync_mode;
	uint64_t segment_size; /* max bytes per segment file, 0: default */
	bool read_only;	       /* recover without cutting; no writes */
};

/* Fills cfg with defaults (everything zero/NULL, fdatasync, 16 MiB). */
void wal_config_init(struct wal_config *cfg);

enum wal_cut_reason {
	WAL_CUT_NONE = 0, /* clean: the log ends at a clean end */
	WAL_CUT_TORN,	  /* record runs past the end of what was written */
	WAL_CUT_CRC,	  /* record checksum mismatch */
	WAL_CUT_LSN,	  /* record LSN breaks the sequence */
	WAL_CUT_HEADER,	  /* segment header unreadable, bad magic or crc */
	WAL_CUT_GAP,	  /* next segment does not continue the LSNs */
};
const char *wal_cut_reason_name(enum wal_cut_reason reason);

/* What recovery on open found and did. */
struct wal_recovery_report {
	uint64_t first_lsn;	    /* first LSN readable (start of log) */
	uint64_t last_lsn;	    /* last LSN kept; first_lsn - 1 if empty */
	uint64_t records;	    /* records kept */
	uint32_t segments;	    /* segments kept */
	uint32_t segments_removed;  /* whole segments deleted past the cut or
				       below the prefix marker, plus stray
				       temporary files */
	enum wal_cut_reason reason; /* WAL_CUT_NONE: nothing was cut */
	char segment[64];	    /* segment holding the cut ("" if none) */
	uint64_t cut_offset;	    /* byte offset of the cut in segment */
	uint64_t cut_lsn;	    /* LSN the bad record should have had */
	uint64_t bytes_cut;	    /* non-zero bytes dropped at and after it */
};

struct wal;

typedef void (*wal_cb)(struct wal *w, int64_t result, void *data);
typedef void (*wal_close_cb)(void *data);

/*
 * Opens (creating if needed) the log, recovers it (scan, verify, cut the
 * tail at the first bad record; see the report) and returns it in *out.
 * Synchronous, usable before the loop runs.  report may be NULL.
 * Read-only: nothing is cut or deleted, the report says what would be.
 */
int wal_open(const struct wal_config *cfg, struct wal **out,
	     struct wal_recovery_report *report);

/*
 * Queues a record; the payload is copied.  len may be 0.  The LSN it will
 * get is wal_next_lsn() before the call.  Returns 0 (cb fires once with the
 * LSN or an error), or -EINVAL, -WAL_ETOOBIG, -WAL_EFAILED, -WAL_ECLOSED,
 * -WAL_EREADONLY, -ENOMEM (cb never fires).  cb may be NULL.
 */
int wal_append(struct wal *w, uint32_t type, const void *payload, size_t len,
	       bool forced, wal_cb cb, void *data);

/*
 * Makes every record appended before this call durable; cb gets the LSN of
 * the last record written before it (wal_next_lsn() - 1 at the call; 0 for
 * a log that never had a record) or an error.
 */
int wal_sync(struct wal *w, wal_cb cb, void *data);

/*
 * Drops every record with LSN > lsn.  first_lsn - 1 <= lsn <= last LSN.
 * Records appended before the call are written first, then cut.  The next
 * append gets lsn + 1 (immediately: wal_next_lsn() changes at the call).
 * The cut is durable before cb fires (result 0 or an error); a crash at any
 * step leaves either the old log or the cut one (the old one only if cb did
 * not fire yet; a torn attempt is finished by recovery's normal rules: it
 * never shows records above lsn mixed with records appended after).
 * Open iterators return -WAL_ESTALE.
 */
int wal_truncate_suffix(struct wal *w, uint64_t lsn, wal_cb cb, void *data);

/*
 * Declares every record with LSN < lsn dropped (after a checkpoint or
 * snapshot).  wal_first_lsn() becomes lsn at once; whole segments holding
 * only such records are deleted (records below lsn that share a segment with
 * later ones stay on disk but are never returned).  lsn may exceed
 * wal_next_lsn(): the log becomes empty and the next append gets lsn (Raft
 * after installing a snapshot).  A persisted marker makes the new start
 * survive a crash at any step; cb gets 0 or an error.  lsn < wal_first_lsn()
 * is a no-op that succeeds.
 */
int wal_truncate_prefix(struct wal *w, uint64_t lsn, wal_cb cb, void *data);

/*
 * Manual mode only: performs every queued request (one write and at most
 * one sync per run of appends, as the writer thread would) and fires their
 * callbacks before returning.  Returns how many requests completed, or
 * -EINVAL in threaded mode.
 */
int wal_step(struct wal *w);
/* Requests queued and not yet completed. */
size_t wal_pending(const struct wal *w);

/*
 * Stops the log.  Requests not yet picked up by the writer complete with
 * -WAL_ECLOSED (so call wal_sync first and close from its callback for a
 * clean shutdown); a batch in flight finishes.  Then, on the loop (after
 * uv_close) or at once in manual mode, cb fires and w is freed.  cb may be
 * NULL.  Never fails.
 */
void wal_close(struct wal *w, wal_close_cb cb, void *data);

/* Start of the log: lowest LSN an iterator may start from. */
uint64_t wal_first_lsn(const struct wal *w);
/* LSN the next append will get. */
uint64_t wal_next_lsn(const struct wal *w);
/* Highest LSN whose append callback has fired successfully (or that was
 * recovered on open); what iterators can see.  wal_truncate_suffix(lsn)
 * lowers it to lsn at once, and appends it cuts never raise it. */
uint64_t wal_written_lsn(const struct wal *w);
/* 0, or the negative error that failed the log. */
int wal_failed(const struct wal *w);
/* Human-readable context for the last failure ("" if none). */
const char *wal_errmsg(const struct wal *w);

struct wal_stats {
	uint64_t records;   /* records written */
	uint64_t bytes;	    /* bytes written (records and segment headers) */
	uint64_t writes;    /* write calls */
	uint64_t syncs;	    /* data syncs (sync calls, or DSYNC batches) */
	uint64_t batches;   /* writer runs that wrote at least one record */
	uint64_t rotations; /* segments created */
	uint64_t rotations_spare; /* of which made from a ready spare */
	uint64_t spares_made;	  /* spares the preparer thread finished */
	bool spare_ready;	  /* the next rotation finds its file ready */
};
void wal_stats_get(const struct wal *w, struct wal_stats *out);

/* ---------------------------------------------------------------- reading */

struct wal_entry {
	uint64_t lsn;
	uint32_t type;
	uint32_t len;
	const void *payload; /* owned by the iterator, valid until next call */
};

struct wal_iter;

/*
 * Reads records in LSN order from from_lsn up to wal_written_lsn() (checked
 * at each step, so records written later are seen).  from_lsn may be
 * wal_written_lsn() + 1 (nothing to read yet).  Errors: -WAL_ECOMPACTED
 * (from_lsn < wal_first_lsn()), -WAL_ERANGE (beyond), -ENOMEM.
 */
int wal_iter_open(struct wal *w, uint64_t from_lsn, struct wal_iter **out);
/* 1 and *e filled; 0 at the end; or a negative code (-WAL_ECORRUPT,
 * -WAL_ESTALE, -errno). */
int wal_iter_next(struct wal_iter *it, struct wal_entry *e);
void wal_iter_close(struct wal_iter *it);

/* Convenience: calls fn for each record from from_lsn; stops and returns
 * fn's value if it returns non-zero.  Synchronous. */
int wal_replay(struct wal *w, uint64_t from_lsn,
	       int (*fn)(const struct wal_entry *e, void *data), void *data);

/* ------------------------------------------------------------------ utils */

/* CRC-32C (Castagnoli) of buf, continuing from crc (start with 0). */
uint32_t wal_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
