/*
 * storage_file.c - the default storage backend: real files in one
 * directory, reached through a directory descriptor (openat and friends).
 *
 * Design notes: a writable storage holds flock(wal.lock) so two processes
 * never write one log; truncate is followed by fsync so the interface's
 * "durable when it returns" holds; allocate uses posix_fallocate, which extends
 * the file size, so later fdatasyncs need not flush a size change.  Every call
 * returns -errno; EINTR is retried, short reads and writes are continued.
 *
 * Zero-fill ahead (see f_write): a preallocated file that is written gets a
 * zeroer thread that writes zeros up to ZERO_AHEAD bytes ahead of the writes
 * and syncs them, so the log's own writes land on blocks that are already
 * written and its fdatasyncs flush only the records.  Its state (zero_to,
 * the chunk it is writing) is under f->mu; the owner of the file calls the
 * ops from one thread at a time, as before.
 */
#include "common/common.h"
#include "wal/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct fs {
	int dirfd;
	int lockfd; /* holds the flock on wal.lock, -1 if read-only */
};

struct ff {
	int fd;
	uint64_t alloc;	  /* size reserved by allocate, 0 if none */
	uint64_t zero_to; /* bytes below this are data or zeros (under mu) */
	/* zeroer (under mu) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t zt;
	bool zt_started;
	bool zt_failed; /* could not start, or a zero write failed: inline */
	bool stop;
	bool busy;	/* someone writes zeros at zero_to: wait for it */
	uint64_t want;	/* the zeroer works up to here */
};

/* Zero-fill this far ahead of the writes (see f_write), in chunks of
 * ZERO_CHUNK bytes, one write and one fdatasync each. */
#define ZERO_AHEAD (2u << 20)
#define ZERO_CHUNK (1u << 20)

static const unsigned char zeros[64 * 1024];

static int f_open(void *data, const char *name, unsigned flags, void **file)
{
	struct fs *fs = data;
	struct ff *f;
	int oflags = O_CLOEXEC;

	if (flags & WAL_OPEN_RDONLY)
		oflags |= O_RDONLY;
	else
		oflags |= O_RDWR;
	if (flags & WAL_OPEN_CREATE)
		oflags |= O_CREAT;
	if (flags & WAL_OPEN_DSYNC)
		oflags |= O_DSYNC;
	f = mem_calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	do
		f->fd = openat(fs->dirfd, name, oflags, 0644);
	while (f->fd < 0 && errno == EINTR);
	if (f->fd < 0) {
		int err = -errno;

		mem_free(f);
		return err;
	}
	if (!(flags & WAL_OPEN_RDONLY)) {
		struct stat sb;

		/* bytes past the end of the log are zero (format.c
		 * invariant 3), so the zero-fill may start anywhere */
		if (fstat(f->fd, &sb) == 0)
			f->alloc = (uint64_t)sb.st_size;
	}
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	*file = f;
	return 0;
}

static void f_close(void *data, void *file)
{
	struct ff *f = file;

	(void)data;
	if (f->zt_started) {
		pthread_mutex_lock(&f->mu);
		f->stop = true;
		pthread_cond_broadcast(&f->cv);
		pthread_mutex_unlock(&f->mu);
		pthread_join(f->zt, NULL);
	}
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	close(f->fd);
	mem_free(f);
}

static int64_t f_read(void *data, void *file, void *buf, size_t len,
		      uint64_t off)
{
	struct ff *f = file;
	size_t done = 0;

	(void)data;
	while (done < len) {
		ssize_t n = pread(f->fd, (char *)buf + done, len - done,
				  (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int64_t)done;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Buffered zeros over [from, to). */
static int zero_buffered(int fd, uint64_t from, uint64_t to)
{
	while (from < to) {
		size_t n = to - from < sizeof(zeros) ? (size_t)(to - from)
						     : sizeof(zeros);
		int rc = write_all(fd, zeros, n, from);

		if (rc < 0)
			return rc;
		from += n;
	}
	return 0;
}

/* The zeroer: keeps the zeros ZERO_AHEAD bytes ahead of the writes, one
 * chunk at a time, each written and synced before zero_to moves past it. */
static void *zeroer_main(void *arg)
{
	struct ff *f = arg;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		uint64_t z, ze, lim;
		int rc;

		lim = f->want < f->alloc ? f->want : f->alloc;
		while (!f->stop && (f->busy || f->zt_failed || f->zero_to >= lim)) {
			pthread_cond_wait(&f->cv, &f->mu);
			lim = f->want < f->alloc ? f->want : f->alloc;
		}
		if (f->stop)
			break;
		z = f->zero_to;
		ze = (z / ZERO_CHUNK + 1) * ZERO_CHUNK;
		if (ze > f->alloc)
			ze = f->alloc;
		f->busy = true;
		pthread_mutex_unlock(&f->mu);
		rc = zero_buffered(f->fd, z, ze);
		if (rc == 0 && fdatasync(f->fd) < 0)
			rc = -errno;
		pthread_mutex_lock(&f->mu);
		f->busy = false;
		/* on failure the writes zero inline again, and report it */
		if (rc < 0)
			f->zt_failed = true;
		else if (ze > f->zero_to)
			f->zero_to = ze;
		pthread_cond_broadcast(&f->cv);
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* Waits for the zeroer to leave zero_to alone (under mu). */
static void zero_wait(struct ff *f)
{
	while (f->busy)
		pthread_cond_wait(&f->cv, &f->mu);
}

/*
 * posix_fallocate leaves unwritten extents: the first write into each block
 * makes the next fdatasync commit an extent conversion to the journal, which
 * costs several times a plain data sync.  So the zeros are written for
 * real.  The zeroer thread does it ahead of the writes (buffered writes,
 * then its own fdatasync), off the log's commit path.  (O_DIRECT zeros were
 * tried and measured worse: a direct write into unwritten extents holds the
 * inode lock for the whole write, stalling the records' pwrite behind it.)  A write that reaches bytes the
 * zeroer has not done yet (the first write after open, or the zeroer fell
 * behind or failed) zero-fills up to the next chunk boundary itself, in the
 * same write path as the records: one conversion per chunk, not per block.
 * The zeros only ever go past the end of the log, over bytes that read as
 * zero already (format.c invariant 3): a crash at any point changes nothing.
 */
static int f_write(void *data, void *file, const void *buf, size_t len,
		   uint64_t off)
{
	struct ff *f = file;
	uint64_t end = off + len, zfrom, zto;
	int rc;

	(void)data;
	pthread_mutex_lock(&f->mu);
	if (!f->alloc) {
		pthread_mutex_unlock(&f->mu);
		return write_all(f->fd, buf, len, off);
	}
	if (end > f->zero_to)
		zero_wait(f);
	if (end <= f->zero_to) {
		pthread_mutex_unlock(&f->mu);
		rc = write_all(f->fd, buf, len, off);
		pthread_mutex_lock(&f->mu);
	} else {
		/* inline: this thread owns zero_to while busy */
		zfrom = end > f->zero_to ? end : f->zero_to;
		zto = (end + ZERO_CHUNK - 1) & ~(uint64_t)(ZERO_CHUNK - 1);
		if (zto > f->alloc)
			zto = f->alloc;
		f->busy = true;
		pthread_mutex_unlock(&f->mu);
		rc = write_all(f->fd, buf, len, off);
		if (rc == 0 && zfrom < zto)
			rc = zero_buffered(f->fd, zfrom, zto);
		pthread_mutex_lock(&f->mu);
		f->busy = false;
		if (rc == 0)
			f->zero_to = zto > end ? zto : end;
		pthread_cond_broadcast(&f->cv);
	}
	if (rc == 0 && end + ZERO_AHEAD > f->want) {
		f->want = end + ZERO_AHEAD;
		if (!f->zt_started && !f->zt_failed) {
			if (pthread_create(&f->zt, NULL, zeroer_main, f) == 0)
				f->zt_started = true;
			else
				f->zt_failed = true;
		} else if (f->zero_to < f->alloc) {
			pthread_cond_broadcast(&f->cv);
		}
	}
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static int f_sync(void *data, void *file)
{
	struct ff *f = file;

	(void)data;
	return fdatasync(f->fd) < 0 ? -errno : 0;
}

static int f_size(void *data, void *file, uint64_t *size)
{
	struct ff *f = file;
	struct stat sb;

	(void)data;
	if (fstat(f->fd, &sb) < 0)
		return -errno;
	*size = (uint64_t)sb.st_size;
	return 0;
}

static int f_truncate(void *data, void *file, uint64_t size)
{
	struct ff *f = file;

	int rc = 0;

	(void)data;
	pthread_mutex_lock(&f->mu);
	zero_wait(f);
	if (ftruncate(f->fd, (off_t)size) < 0)
		rc = -errno;
	if (f->zero_to > size)
		f->zero_to = size;
	if (f->alloc > size)
		f->alloc = size;
	if (f->want > size)
		f->want = size;
	pthread_mutex_unlock(&f->mu);
	if (rc < 0)
		return rc;
	return fsync(f->fd) < 0 ? -errno : 0;
}

static int f_allocate(void *data, void *file, uint64_t size)
{
	struct ff *f = file;
	int rc;

	(void)data;
	rc = posix_fallocate(f->fd, 0, (off_t)size);
	if (rc)
		return -rc;
	pthread_mutex_lock(&f->mu);
	if (size > f->alloc)
		f->alloc = size;
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static int f_unlink(void *data, const char *name)
{
	struct fs *fs = data;

	return unlinkat(fs->dirfd, name, 0) < 0 ? -errno : 0;
}

static int f_rename(void *data, const char *from, const char *to)
{
	struct fs *fs = data;

	return renameat(fs->dirfd, from, fs->dirfd, to) < 0 ? -errno : 0;
}

static int f_list(void *data, char ***names, size_t *count)
{
	struct fs *fs = data;
	char **v = NULL, **nv;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd, err;

	fd = openat(fs->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		err = -errno;
		close(fd);
		return err;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			nv = mem_realloc(v, cap * sizeof(*v));
			if (!nv)
				goto err_nomem;
			v = nv;
		}
		v[n] = mem_strdup(de->d_name);
		if (!v[n])
			goto err_nomem;
		n++;
	}
	closedir(d);
	*names = v;
	*count = n;
	return 0;

err_nomem:
	closedir(d);
	wal_storage_list_free(v, n);
	return -ENOMEM;
}

static int f_sync_dir(void *data)
{
	struct fs *fs = data;

	return fsync(fs->dirfd) < 0 ? -errno : 0;
}

static void f_destroy(void *data)
{
	struct fs *fs = data;

	if (fs->lockfd >= 0)
		close(fs->lockfd);
	close(fs->dirfd);
	mem_free(fs);
}

static const struct wal_storage_ops file_ops = {
    .open = f_open,
    .close = f_close,
    .read = f_read,
    .write = f_write,
    .sync = f_sync,
    .size = f_size,
    .truncate = f_truncate,
    .allocate = f_allocate,
    .unlink = f_unlink,
    .rename = f_rename,
    .list = f_list,
    .sync_dir = f_sync_dir,
    .destroy = f_destroy,
};

int wal_file_storage_new(const char *dir, struct wal_storage **out)
{
	return wal__file_storage_open(dir, true, out);
}

int wal__file_storage_open(const char *dir, bool create,
			   struct wal_storage **out)
{
	struct wal_storage *s;
	struct fs *fs;
	int err;

	if (!dir || !*dir || !out)
		return -EINVAL;
	if (create && mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	s = mem_alloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	fs = mem_alloc(sizeof(*fs));
	if (!fs) {
		err = -ENOMEM;
		goto err_free_s;
	}
	fs->lockfd = -1;
	fs->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->dirfd < 0) {
		err = -errno;
		goto err_free_fs;
	}
	if (create) {
		fs->lockfd = openat(fs->dirfd, "wal.lock",
				    O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fs->lockfd < 0) {
			err = -errno;
			goto err_close_dir;
		}
		if (flock(fs->lockfd, LOCK_EX | LOCK_NB) < 0) {
			err = errno == EWOULDBLOCK ? -WAL_ELOCKED : -errno;
			goto err_close_lock;
		}
	}
	s->ops = &file_ops;
	s->data = fs;
	*out = s;
	return 0;

err_close_lock:
	close(fs->lockfd);
err_close_dir:
	close(fs->dirfd);
err_free_fs:
	mem_free(fs);
err_free_s:
	mem_free(s);
	return err;
}

void wal_storage_list_free(char **names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		mem_free(names[i]);
	mem_free(names);
}

void wal_storage_free(struct wal_storage *s)
{
	if (!s)
		return;
	if (s->ops && s->ops->destroy)
		s->ops->destroy(s->data);
	mem_free(s);
}
