/* SPDX-License-Identifier: MIT */
/*
 * The library's side of /dev/xfer (kmod/): one context per engine. Regions
 * are pinned and accounted by the module; shares are opened by id; the
 * engine's counters live in the context's stats page, mapped once, so the
 * data path never makes a syscall for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kmod.h"

struct xfer_kmod {
	int fd;
	size_t page_size;
	struct xfer_ctx_stats *stats;
};

static int kmod_ioctl(struct xfer_kmod *k, unsigned long cmd, void *arg)
{
	return ioctl(k->fd, cmd, arg) ? -errno : 0;
}

int xfer_kmod_open(struct xfer_kmod **out)
{
	const char *path = getenv("XFER_KMOD_DEV");
	struct xfer_query q = { .size = sizeof(q) };
	struct xfer_kmod *k;
	void *stats;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->fd = open(path ? path : "/dev/xfer", O_RDWR | O_CLOEXEC);
	if (k->fd < 0) {
		ret = errno == ENOENT || errno == ENXIO ? -ENODEV : -errno;
		goto err_free;
	}
	ret = kmod_ioctl(k, XFER_IOC_QUERY, &q);
	if (ret)
		goto err_close;
	if (q.abi_version != XFER_ABI_VERSION) {
		ret = -EPROTONOSUPPORT;
		goto err_close;
	}
	k->page_size = q.page_size;
	stats = mmap(NULL, k->page_size, PROT_READ | PROT_WRITE, MAP_SHARED, k->fd,
		     XFER_MMAP_OFFSET_STATS);
	if (stats == MAP_FAILED) {
		ret = -errno;
		goto err_close;
	}
	k->stats = stats;
	*out = k;
	return 0;

err_close:
	close(k->fd);
err_free:
	free(k);
	return ret;
}

void xfer_kmod_close(struct xfer_kmod *k)
{
	if (!k)
		return;
	munmap(k->stats, k->page_size);
	close(k->fd);   /* releases every region this context still holds */
	free(k);
}

int xfer_kmod_pin(struct xfer_kmod *k, void *addr, size_t len, uint64_t *handle)
{
	uintptr_t start, end;
	struct xfer_pin p = { .size = sizeof(p) };
	int ret;

	if (!k)
		return -ENODEV;
	if (!addr || !len || !handle)
		return -EINVAL;
	/* The module pins whole pages: round the range out. */
	start = (uintptr_t)addr & ~(uintptr_t)(k->page_size - 1);
	if ((uintptr_t)addr + len < (uintptr_t)addr ||
	    (uintptr_t)addr + len + k->page_size - 1 < (uintptr_t)addr + len)
		return -ERANGE;
	end = ((uintptr_t)addr + len + k->page_size - 1) & ~(uintptr_t)(k->page_size - 1);
	p.addr = start;
	p.length = end - start;
	ret = kmod_ioctl(k, XFER_IOC_PIN, &p);
	if (ret)
		return ret;
	*handle = p.handle;
	return 0;
}

int xfer_kmod_release(struct xfer_kmod *k, uint64_t handle)
{
	struct xfer_release r = { .size = sizeof(r), .handle = handle };

	if (!k)
		return -ENODEV;
	return kmod_ioctl(k, XFER_IOC_RELEASE, &r);
}

int xfer_kmod_share(struct xfer_kmod *k, uint64_t handle, uint32_t rule, uint32_t id,
		    uint64_t *share_id)
{
	struct xfer_share s = { .size = sizeof(s), .handle = handle, .rule = rule, .id = id };
	int ret;

	if (!k)
		return -ENODEV;
	if (!share_id)
		return -EINVAL;
	ret = kmod_ioctl(k, XFER_IOC_SHARE, &s);
	if (ret)
		return ret;
	*share_id = s.share_id;
	return 0;
}

int xfer_kmod_open_shared(struct xfer_kmod *k, uint64_t share_id, uint64_t *handle,
			  void **addr, size_t *len, uint32_t *kind, uint32_t *map_flags)
{
	struct xfer_open_shared o = { .size = sizeof(o), .share_id = share_id };
	void *m;
	int ret;

	if (!k)
		return -ENODEV;
	if (!handle || !addr || !len)
		return -EINVAL;
	ret = kmod_ioctl(k, XFER_IOC_OPEN_SHARED, &o);
	if (ret)
		return ret;
	m = mmap(NULL, o.length, PROT_READ | PROT_WRITE, MAP_SHARED, k->fd,
		 (off_t)o.mmap_offset);
	if (m == MAP_FAILED) {
		ret = -errno;
		xfer_kmod_release(k, o.handle);
		return ret;
	}
	*handle = o.handle;
	*addr = m;
	*len = o.length;
	if (kind)
		*kind = o.kind;
	if (map_flags)
		*map_flags = o.map_flags;
	return 0;
}

struct xfer_ctx_stats *xfer_kmod_stats(struct xfer_kmod *k)
{
	return k ? k->stats : NULL;
}

int xfer_kmod_export_dmabuf(struct xfer_kmod *k, uint64_t handle, int *fd)
{
	struct xfer_export_dmabuf e = { .size = sizeof(e), .handle = handle };
	int ret;

	if (!k)
		return -ENODEV;
	if (!fd)
		return -EINVAL;
	ret = kmod_ioctl(k, XFER_IOC_EXPORT_DMABUF, &e);
	if (ret)
		return ret;
	*fd = e.fd;
	return 0;
}

int xfer_kmod_import_dmabuf(struct xfer_kmod *k, int fd, uint64_t offset, uint64_t len,
			    uint64_t *handle)
{
	struct xfer_import_dmabuf i = { .size = sizeof(i), .fd = fd, .offset = offset,
					.length = len };
	int ret;

	if (!k)
		return -ENODEV;
	if (!handle)
		return -EINVAL;
	ret = kmod_ioctl(k, XFER_IOC_IMPORT_DMABUF, &i);
	if (ret)
		return ret;
	*handle = i.handle;
	return 0;
}
