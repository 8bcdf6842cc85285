/*
 * storage_file.c - the default storage backend: real files in one
 * directory, reached through a directory descriptor (openat and friends).
 *
 * Design notes: a writable storage holds flock(wal.lock) so two processes
 * never write one log; truncate is followed by fsync so the interface's
 * "durable when it returns" holds; allocate uses posix_fallocate, which extends
 * the file size, so later fdatasyncs need not flush a size change.  Every call
 * returns -errno; EINTR is retried, short reads and writes are continued.
 */
#include "common/common.h"
#include "wal/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
	uint64_t zero_to; /* bytes below this were written (data or zeros) */
};

/* Zero-fill this far ahead of the writes (see f_write). */
#define ZERO_AHEAD (1u << 20)

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
		 * invariant 3), so the zero-fill may start anywhere; it
		 * starts at the first hole (unwritten extents count as
		 * holes), so a segment written whole when it was made
		 * (f_zero) is never filled again */
		if (fstat(f->fd, &sb) == 0) {
			off_t hole = lseek(f->fd, 0, SEEK_HOLE);

			f->alloc = (uint64_t)sb.st_size;
			f->zero_to = hole > 0 ? (uint64_t)hole : 0;
		}
	}
	*file = f;
	return 0;
}

static void f_close(void *data, void *file)
{
	struct ff *f = file;

	(void)data;
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

static int write_zeros(int fd, uint64_t from, uint64_t to)
{
	static const unsigned char zeros[64 * 1024];
	int rc;

	while (from < to) {
		size_t n = to - from < sizeof(zeros) ? (size_t)(to - from)
						     : sizeof(zeros);

		rc = write_all(fd, zeros, n, from);
		if (rc < 0)
			return rc;
		from += n;
	}
	return 0;
}

/*
 * posix_fallocate leaves unwritten extents: the first write into each block
 * makes the next fdatasync commit an extent conversion to the journal, which
 * costs several times a plain data sync.  New segments are therefore
 * written whole with zeros when they are made (f_zero, write.c), and this
 * fallback only covers the rest: a segment cut by a suffix truncation and
 * preallocated again, or one made by an older version.  There the zeros are
 * written ZERO_AHEAD bytes at a time in the same write path as the records:
 * one conversion per megabyte instead of one per 4 KiB block.
 */
static int f_write(void *data, void *file, const void *buf, size_t len,
		   uint64_t off)
{
	struct ff *f = file;
	uint64_t end = off + len, zfrom, zto;
	int rc;

	(void)data;
	rc = write_all(f->fd, buf, len, off);
	if (rc < 0 || !f->alloc || end <= f->zero_to)
		return rc;
	zfrom = end > f->zero_to ? end : f->zero_to;
	zto = (end + ZERO_AHEAD) & ~(uint64_t)(ZERO_AHEAD - 1);
	if (zto > f->alloc)
		zto = f->alloc;
	rc = write_zeros(f->fd, zfrom, zto);
	if (rc < 0)
		return rc;
	f->zero_to = zto > end ? zto : end;
	return 0;
}

static int f_zero(void *data, void *file, uint64_t off, uint64_t len)
{
	struct ff *f = file;
	int rc;

	(void)data;
	rc = write_zeros(f->fd, off, off + len);
	if (rc < 0)
		return rc;
	if (off <= f->zero_to && off + len > f->zero_to)
		f->zero_to = off + len;
	return 0;
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

	(void)data;
	if (ftruncate(f->fd, (off_t)size) < 0)
		return -errno;
	if (f->zero_to > size)
		f->zero_to = size;
	if (f->alloc > size)
		f->alloc = size;
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
	if (size > f->alloc)
		f->alloc = size;
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
    .zero = f_zero,
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
