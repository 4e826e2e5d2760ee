// SPDX-License-Identifier: MIT
/*
 * The file store: a shared directory (file:///shared/dir) for clusters
 * with a shared filesystem and no etcd. A key is a file under
 * <dir>/<job>/ (key "blob/addrs/3" is <dir>/<job>/blob/addrs/3), holding a
 * 16-byte header (magic, the lease id) and the value. A write goes to a
 * temporary name in the same folder and is renamed into place, so a
 * reader sees a whole value or none; create-if-absent is link(), atomic
 * on NFS too.
 *
 * A lease is the file <dir>/<job>/.leases/<id> holding its TTL; keepalive
 * sets its mtime to now, and a lease whose file is gone or older than its
 * TTL is dead: the keys under it read as absent. Revoking removes the
 * lease file and the keys under it, then every folder left empty, so that
 * the last revoke of a job removes the job's folder. Hosts' clocks must
 * agree to well within the TTL (an NFS server stamps the mtime).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define MAGIC "xfrdzv1\n"
#define HDR 16

struct rdzv_store {
	char *root;      /* <dir>/<job> */
	char *dir;       /* <dir> */
	char *job;
	char err[512];
};

static atomic_uint tmp_seq;

static const char *file_error(const struct rdzv_store *s)
{
	return s->err;
}

static int fail(struct rdzv_store *s, int err, const char *what, const char *path)
{
	snprintf(s->err, sizeof(s->err), "%s %s: %s", what, path, strerror(err));
	return -err;
}

static char *path_of(const struct rdzv_store *s, const char *key)
{
	char *p;

	return asprintf(&p, "%s/%s", s->root, key) < 0 ? NULL : p;
}

/* mkdir -p of path's folder (path itself is a file). */
static int mkdirs_for(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0777) && errno != EEXIST) {
			int e = errno;

			*p = '/';
			return -e;
		}
		*p = '/';
	}
	return 0;
}

/* A fresh name in path's folder for a file that is then renamed or linked. */
static char *tmp_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *t;

	return asprintf(&t, "%.*s/.tmp.%d.%u", (int)(slash - path), path, (int)getpid(),
			atomic_fetch_add(&tmp_seq, 1)) < 0 ? NULL : t;
}

static int write_all(int fd, const void *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p = (const uint8_t *)p + w;
		len -= (size_t)w;
	}
	return 0;
}

/*
 * Create a temporary file beside path, its folders first. A revoke on
 * another rank removes folders it leaves empty (sweep()), which may be
 * the one just made: then again.
 */
static int open_tmp(struct rdzv_store *s, const char *path, char **tmp_out, int *fd_out)
{
	char *dirpath = strdup(path), *tmp;
	int ret = 0, fd = -1;

	if (!dirpath)
		return -ENOMEM;
	tmp = tmp_name(path);
	if (!tmp) {
		free(dirpath);
		return -ENOMEM;
	}
	for (int tries = 0; tries < 16; tries++) {
		ret = mkdirs_for(dirpath);
		if (ret == -ENOENT)
			continue;
		if (ret) {
			fail(s, -ret, "cannot create the folder of", path);
			break;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0)
			break;
		ret = -errno;
		if (ret != -ENOENT) {
			fail(s, -ret, "cannot create", tmp);
			break;
		}
	}
	free(dirpath);
	if (fd < 0) {
		if (ret == -ENOENT)
			fail(s, ENOENT, "cannot create", tmp);
		free(tmp);
		return ret ? ret : -EIO;
	}
	*tmp_out = tmp;
	*fd_out = fd;
	return 0;
}

/* Write header and value to a temporary file beside path; its name. */
static int write_tmp(struct rdzv_store *s, const char *path, const void *val, size_t len,
		     int64_t lease, char **tmp_out)
{
	uint8_t hdr[HDR];
	char *tmp;
	int fd, ret;

	ret = open_tmp(s, path, &tmp, &fd);
	if (ret)
		return ret;
	memcpy(hdr, MAGIC, 8);
	memcpy(hdr + 8, &lease, 8);
	ret = write_all(fd, hdr, HDR);
	if (!ret && len)
		ret = write_all(fd, val, len);
	if (close(fd) && !ret)
		ret = -errno;
	if (ret) {
		unlink(tmp);
		fail(s, -ret, "cannot write", tmp);
		free(tmp);
		return ret;
	}
	*tmp_out = tmp;
	return 0;
}

/* ---- leases ------------------------------------------------------------ */

static char *lease_path(const struct rdzv_store *s, int64_t lease)
{
	char *p;

	return asprintf(&p, "%s/.leases/%016" PRIx64, s->root, (uint64_t)lease) < 0 ? NULL : p;
}

/* 1 alive, 0 dead or gone. */
static int lease_alive(const struct rdzv_store *s, int64_t lease)
{
	char *p, buf[16] = "";
	struct stat st;
	struct timespec now;
	unsigned long ttl;
	int fd, alive = 0;
	ssize_t n;

	if (lease == 0)
		return 1;
	p = lease_path(s, lease);
	if (!p)
		return 1;   /* cannot tell: do not drop a key for want of memory */
	fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0 && fstat(fd, &st) == 0) {
		ttl = strtoul(buf, NULL, 10);
		clock_gettime(CLOCK_REALTIME, &now);
		alive = st.st_mtim.tv_sec + (time_t)ttl >= now.tv_sec;
	}
	close(fd);
	return alive;
}

static int file_grant(struct rdzv_store *s, uint32_t *ttl_s, uint64_t deadline, int64_t *lease)
{
	for (int tries = 0; tries < 8; tries++) {
		uint64_t id = 0;
		char *p, *tmp, txt[16];
		int ret;

		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			return fail(s, errno, "getrandom for a lease of", s->root);
		id &= INT64_MAX;
		if (!id)
			continue;
		p = lease_path(s, (int64_t)id);
		if (!p)
			return -ENOMEM;
		snprintf(txt, sizeof(txt), "%u\n", *ttl_s);
		/* the lease file's value is its TTL in text; no header */
		int fd;

		ret = open_tmp(s, p, &tmp, &fd);
		if (ret) {
			free(p);
			return ret;
		}
		ret = write_all(fd, txt, strlen(txt));
		if (close(fd) && !ret)
			ret = -errno;
		if (ret) {
			fail(s, -ret, "cannot write", tmp);
			unlink(tmp);
			free(tmp);
			free(p);
			return ret;
		}
		ret = link(tmp, p) ? -errno : 0;
		unlink(tmp);
		free(tmp);
		if (ret == -EEXIST) {
			free(p);
			continue;
		}
		if (ret) {
			ret = fail(s, -ret, "cannot create", p);
			free(p);
			return ret;
		}
		free(p);
		*lease = (int64_t)id;
		return 0;
	}
	snprintf(s->err, sizeof(s->err), "no free lease id under %s/.leases", s->root);
	return -EIO;
}

static int file_keepalive(struct rdzv_store *s, int64_t lease, uint64_t deadline)
{
	char *p = lease_path(s, lease);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	if (!lease_alive(s, lease)) {
		snprintf(s->err, sizeof(s->err), "lease %s is gone (expired or revoked)", p);
		ret = -ENOENT;
	} else if (utimensat(AT_FDCWD, p, NULL, 0)) {
		ret = fail(s, errno, "cannot refresh", p);
	}
	free(p);
	return ret;
}

/* The header's lease of the file at path; -1 when it is not a key file,
 * -2 when there is no file. */
static int64_t file_lease_of(const char *path)
{
	uint8_t hdr[HDR];
	int64_t lease = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? -2 : -1;
	if (read(fd, hdr, HDR) == HDR && !memcmp(hdr, MAGIC, 8))
		memcpy(&lease, hdr + 8, 8);
	close(fd);
	return lease;
}

/* Remove the keys under lease in folder path (recursively), then the
 * folders left empty. */
static void sweep(const char *path, int64_t lease)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char *p;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (asprintf(&p, "%s/%s", path, e->d_name) < 0)
			continue;
		if (e->d_type == DT_DIR) {
			sweep(p, lease);
			rmdir(p);   /* fails while it holds anything */
		} else if (e->d_name[0] != '.' && file_lease_of(p) == lease) {
			unlink(p);
		}
		free(p);
	}
	closedir(d);
}

static int file_revoke(struct rdzv_store *s, int64_t lease, uint64_t deadline)
{
	char *p;
	int ret = 0;

	if (lease <= 0)
		return -ENOENT;   /* no lease: the keys without one are not its */
	p = lease_path(s, lease);
	if (!p)
		return -ENOMEM;
	if (unlink(p)) {
		ret = errno == ENOENT ? -ENOENT : -errno;
		fail(s, -ret, "cannot remove lease", p);
	}
	free(p);
	if (ret == 0 || ret == -ENOENT) {
		sweep(s->root, lease);
		rmdir(s->root);   /* the job's folder, when this was the last */
	}
	return ret;
}

/* ---- keys -------------------------------------------------------------- */

static int file_put(struct rdzv_store *s, const char *key, const void *val, size_t len,
		    int64_t lease, uint64_t deadline)
{
	char *path = path_of(s, key), *tmp = NULL;
	int ret;

	if (!path)
		return -ENOMEM;
	ret = write_tmp(s, path, val, len, lease, &tmp);
	if (!ret && rename(tmp, path)) {
		ret = fail(s, errno, "cannot rename into", path);
		unlink(tmp);
	}
	free(tmp);
	free(path);
	return ret;
}

/*
 * link() the new file into place. A key already there under a dead lease
 * (a run of this job that died) is moved aside to a unique name first and
 * checked there: when it turns out live (another rank took the name in
 * between) it is linked back and this is -EEXIST.
 */
static int file_create(struct rdzv_store *s, const char *key, const void *val, size_t len,
		       int64_t lease, uint64_t deadline)
{
	char *path = path_of(s, key), *tmp = NULL;
	int ret;

	if (!path)
		return -ENOMEM;
	ret = write_tmp(s, path, val, len, lease, &tmp);
	for (int tries = 0; !ret; tries++) {
		int64_t old;
		char *grave;

		if (tries == 8) {
			ret = -EEXIST;   /* others kept taking it */
			break;
		}
		if (link(tmp, path) == 0)
			break;
		if (errno != EEXIST) {
			ret = fail(s, errno, "cannot link into", path);
			break;
		}
		old = file_lease_of(path);
		if (old == -2)
			continue;   /* moved aside by another rank just now */
		if (old == lease && lease) {
			break;   /* ours, from an earlier try */
		}
		if (old < 0 || lease_alive(s, old)) {
			ret = -EEXIST;
			break;
		}
		grave = tmp_name(path);
		if (!grave) {
			ret = -ENOMEM;
			break;
		}
		if (rename(path, grave) == 0) {
			old = file_lease_of(grave);
			if (old >= 0 && lease_alive(s, old)) {
				if (link(grave, path) == 0)
					ret = -EEXIST;
			}
			unlink(grave);
		}
		free(grave);
	}
	if (ret == -EEXIST)
		snprintf(s->err, sizeof(s->err), "key %s exists", path);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(path);
	return ret;
}

/* Read one key file: value and lease; -ENOENT when absent or its lease is
 * dead. */
static int read_key(const char *path, struct rdzv_kv *kv, bool keys_only,
		    const struct rdzv_store *s)
{
	uint8_t hdr[HDR];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < HDR ||
	    read(fd, hdr, HDR) != HDR || memcmp(hdr, MAGIC, 8)) {
		close(fd);
		return -EBADMSG;
	}
	memcpy(&kv->lease, hdr + 8, 8);
	if (!lease_alive(s, kv->lease)) {
		close(fd);
		return -ENOENT;
	}
	if (!keys_only) {
		size_t len = (size_t)st.st_size - HDR, got = 0;

		kv->val = malloc(len + 1);
		if (!kv->val) {
			close(fd);
			return -ENOMEM;
		}
		while (got < len) {
			ssize_t r = read(fd, kv->val + got, len - got);

			if (r <= 0) {
				ret = r < 0 ? -errno : -EBADMSG;
				break;
			}
			got += (size_t)r;
		}
		kv->len = got;
	}
	close(fd);
	return ret;
}

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const struct rdzv_kv *)a)->key, ((const struct rdzv_kv *)b)->key);
}

/* prefix is a folder ("blob/addrs/"): its files, not its subfolders. */
static int file_range(struct rdzv_store *s, const char *prefix, bool keys_only,
		      struct rdzv_kv **out, size_t *n_out, uint64_t deadline)
{
	char *dpath = path_of(s, prefix);
	struct rdzv_kv *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	DIR *d;
	int ret = 0;

	if (!dpath)
		return -ENOMEM;
	d = opendir(dpath);
	if (!d) {
		ret = errno == ENOENT ? 0 : fail(s, errno, "cannot read", dpath);
		free(dpath);
		*out = NULL;
		*n_out = 0;
		return ret;
	}
	while ((e = readdir(d))) {
		struct rdzv_kv kv = { 0 };
		char *p;
		int r;

		if (e->d_name[0] == '.' || e->d_type == DT_DIR)
			continue;
		if (asprintf(&p, "%s%s", dpath, e->d_name) < 0) {
			ret = -ENOMEM;
			break;
		}
		r = read_key(p, &kv, keys_only, s);
		if (r == -ENOENT) {
			free(p);
			continue;
		}
		if (r == -EBADMSG) {
			snprintf(s->err, sizeof(s->err), "%s is not a key file of xfer's file store", p);
			free(p);
			free(kv.val);
			ret = r;
			break;
		}
		if (r) {
			fail(s, -r, "cannot read", p);
			free(p);
			free(kv.val);
			ret = r;
			break;
		}
		free(p);
		if (asprintf(&kv.key, "%s%s", prefix, e->d_name) < 0) {
			free(kv.val);
			ret = -ENOMEM;
			break;
		}
		if (n == cap) {
			struct rdzv_kv *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				free(kv.key);
				free(kv.val);
				ret = -ENOMEM;
				break;
			}
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		v[n++] = kv;
	}
	closedir(d);
	free(dpath);
	if (ret) {
		rdzv_kv_free(v, n);
		return ret;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_kv);
	*out = v;
	*n_out = n;
	return 0;
}

static int file_count(struct rdzv_store *s, const char *prefix, size_t *n, uint64_t deadline)
{
	struct rdzv_kv *kvs = NULL;
	int ret = file_range(s, prefix, true, &kvs, n, deadline);

	if (!ret)
		rdzv_kv_free(kvs, *n);
	return ret;
}

static void file_close(struct rdzv_store *s)
{
	if (!s)
		return;
	free(s->root);
	free(s->dir);
	free(s->job);
	free(s);
}

static int file_new(const char *dir, const char *job, struct rdzv_store **out)
{
	struct rdzv_store *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->dir = strdup(dir);
	s->job = strdup(job);
	if (!s->dir || !s->job || asprintf(&s->root, "%s/%s", dir, job) < 0) {
		s->root = NULL;
		file_close(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

/* where: "/shared/dir" (file:///shared/dir); it must exist. */
static int file_open(const char *where, const char *job, uint64_t deadline,
		     struct rdzv_store **out, char *err, size_t errlen)
{
	struct stat st;
	char dir[PATH_MAX];
	size_t len = strlen(where);

	if (where[0] != '/' || len == 0 || len >= sizeof(dir)) {
		snprintf(err, errlen, "file store URL file://%s: the path must be absolute "
			 "(file:///shared/dir)", where);
		return -EINVAL;
	}
	memcpy(dir, where, len + 1);
	while (len > 1 && dir[len - 1] == '/')
		dir[--len] = '\0';
	if (stat(dir, &st)) {
		int e = errno;

		snprintf(err, errlen, "file store %s: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "file store %s: not a directory", dir);
		return -ENOTDIR;
	}
	return file_new(dir, job, out);
}

static int file_clone(struct rdzv_store *s, struct rdzv_store **out)
{
	return file_new(s->dir, s->job, out);
}

const struct rdzv_store_ops rdzv_file_ops = {
	.scheme = "file://",
	.open = file_open,
	.clone = file_clone,
	.close = file_close,
	.grant = file_grant,
	.keepalive = file_keepalive,
	.revoke = file_revoke,
	.create = file_create,
	.put = file_put,
	.range = file_range,
	.count = file_count,
	.error = file_error,
};
