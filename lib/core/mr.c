/* SPDX-License-Identifier: MIT */
/*
 * Memory regions: registration on every rail (through the worker, which owns
 * the rails), descriptors for peers, and import of peers' descriptors.
 * Host memory is pinned and accounted through /dev/xfer when the module is
 * loaded; without it the NIC registration alone pins it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "struct_copy.h"

_Static_assert(XFER_MEM_SIZE_VER0 == offsetof(struct xfer_mem, cuda_device),
	       "xfer_mem's floor is size and kind");

static int mem_kind(const struct xfer_mem *umem, uint32_t *kind, int *fd, uint64_t *off)
{
	/* the defaults of the fields an older caller's struct lacks */
	struct xfer_mem k = { .size = sizeof(k), .kind = XFER_MEM_HOST, .dmabuf_fd = -1 };
	const struct xfer_mem *mem = &k;
	int ret;

	*kind = XFER_MEM_HOST;
	*fd = -1;
	*off = 0;
	if (!umem)
		return 0;
	ret = xfer_struct_copy_in(&k, sizeof(k), umem, XFER_MEM_SIZE_VER0);
	if (ret)
		return ret;
	switch (mem->kind) {
	case XFER_MEM_HOST:
		return 0;
	case XFER_MEM_CUDA:
		*kind = XFER_MEM_CUDA;
		return 0;
	case XFER_MEM_DMABUF:
		if (mem->dmabuf_fd < 0)
			return -EBADF;
		*kind = XFER_MEM_DMABUF;
		*fd = mem->dmabuf_fd;
		*off = mem->dmabuf_offset;
		return 0;
	default:
		return -EINVAL;
	}
}

static int mr_register(xfer_engine *e, struct xfer_mr *mr, int fd, uint64_t off)
{
	struct xfer_cmd c = { .kind = CMD_MR_REG };

	c.u.mr.mr = mr;
	c.u.mr.dmabuf_fd = fd;
	c.u.mr.dmabuf_off = off;
	return xfer_cmd_run(e, &c);
}

XFER_EXPORT int xfer_mr_reg(xfer_engine *e, void *addr, size_t len, const struct xfer_mem *mem,
			    uint32_t flags, xfer_mr **out)
{
	const uint32_t known = XFER_MR_REMOTE_WRITE | XFER_MR_KMOD_PIN | XFER_MR_NO_KMOD;
	struct xfer_mr *mr;
	uint32_t kind;
	uint64_t off;
	int fd, ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!e || !len || (flags & ~known) ||
	    ((flags & XFER_MR_KMOD_PIN) && (flags & XFER_MR_NO_KMOD)))
		return -EINVAL;
	ret = mem_kind(mem, &kind, &fd, &off);
	if (ret)
		return ret;
	if (!addr && kind != XFER_MEM_DMABUF)
		return -EINVAL;
	if ((uintptr_t)addr + len < (uintptr_t)addr)
		return -ERANGE;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	mr->e = e;
	mr->addr = addr;
	mr->len = len;
	mr->flags = flags;
	mr->kind = kind;
	mr->region_id = __atomic_add_fetch(&e->region_seq, 1, __ATOMIC_RELAXED);

	if (kind == XFER_MEM_HOST && !(flags & XFER_MR_NO_KMOD)) {
		ret = xfer_kmod_pin(e->kmod, addr, len, &mr->kmod_handle);
		if (ret == -ENODEV && !(flags & XFER_MR_KMOD_PIN))
			ret = 0;   /* no module: the NIC registration pins it */
		if (ret)
			goto err_free;
	}
	ret = mr_register(e, mr, fd, off);
	if (ret)
		goto err_unpin;
	*out = mr;
	return 0;

err_unpin:
	if (mr->kmod_handle)
		xfer_kmod_release(e->kmod, mr->kmod_handle);
err_free:
	free(mr);
	return ret;
}

XFER_EXPORT int xfer_mr_dereg(xfer_mr *mr)
{
	struct xfer_cmd c = { .kind = CMD_MR_DEREG };
	int ret;

	if (!mr)
		return -EINVAL;
	/* An op or a watch that may still read it: freeing it now would leave
	 * the worker (and the NIC) on freed memory. The caller keeps it. */
	if (atomic_load_explicit(&mr->users, memory_order_acquire))
		return -EBUSY;
	c.u.mr.mr = mr;
	ret = xfer_cmd_run(mr->e, &c);
	if (mr->mapped_shared)
		munmap(mr->addr, mr->len);
	if (mr->kmod_handle)
		xfer_kmod_release(mr->e->kmod, mr->kmod_handle);
	free(mr);
	return ret;
}

XFER_EXPORT void *xfer_mr_addr(const xfer_mr *mr)
{
	return mr ? mr->addr : NULL;
}

XFER_EXPORT size_t xfer_mr_len(const xfer_mr *mr)
{
	return mr ? mr->len : 0;
}

XFER_EXPORT int xfer_mr_descriptor(const xfer_mr *mr, void *buf, size_t *len)
{
	struct xfer_desc d = { 0 };

	if (!mr || !len)
		return -EINVAL;
	if (!(mr->flags & XFER_MR_REMOTE_WRITE))
		return -EPERM;   /* a local-only region has nothing to give peers */
	d.owner_id = mr->e->id;
	d.region_id = mr->region_id;
	d.base = (uint64_t)(uintptr_t)mr->addr;
	d.len = mr->len;
	d.num_rails = mr->e->num_rails;
	for (uint32_t i = 0; i < d.num_rails; i++) {
		d.rail[i].rkey = mr->rail[i].rkey;
		d.rail[i].raddr = mr->rail[i].raddr;
	}
	return xfer_desc_encode(&d, buf, len);
}

XFER_EXPORT int xfer_rmr_import(xfer_engine *e, uint32_t peer, const void *desc, size_t len,
				xfer_rmr **out)
{
	struct xfer_rmr *r;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!e || peer >= XFER_MAX_PEERS || !e->peers[peer].used)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	ret = xfer_desc_decode(desc, len, &r->d);
	/* The region must belong to the engine added as `peer`, and name one
	 * key per rail of that engine. */
	if (!ret && (r->d.owner_id != e->peers[peer].engine_id ||
		     r->d.num_rails != e->peers[peer].num_rails))
		ret = -EINVAL;
	if (ret) {
		free(r);
		return ret;
	}
	r->e = e;
	r->peer = peer;
	*out = r;
	return 0;
}

XFER_EXPORT void xfer_rmr_free(xfer_rmr *rmr)
{
	free(rmr);
}

XFER_EXPORT uint64_t xfer_rmr_len(const xfer_rmr *rmr)
{
	return rmr ? rmr->d.len : 0;
}

XFER_EXPORT int xfer_mr_share(xfer_mr *mr, uint32_t rule, uint32_t id, uint64_t *share_id)
{
	if (!mr || !share_id || rule > XFER_SHARE_UID)
		return -EINVAL;
	if (!mr->e->kmod)
		return -ENODEV;
	if (!mr->kmod_handle)
		return -EINVAL;   /* registered with XFER_MR_NO_KMOD, or not host memory */
	return xfer_kmod_share(mr->e->kmod, mr->kmod_handle, rule, id, share_id);
}

/*
 * How this engine's NICs register an opened region (mr->kind and a dma-buf
 * fd, or -1 for the mapping itself). The verbs backend registers with the
 * HCA, which must pin the pages: the mapping works when it is the owner's
 * shmem file (XFER_MAP_PAGES); otherwise (host memory of anonymous pages,
 * mapped as PFNs; a dma-buf region, mapped by its exporter) the region
 * goes through a dma-buf from the module and ibv_reg_dmabuf_mr:
 * -EOPNOTSUPP where the device has none (rxe). The other backends only
 * need the CPU mapping.
 */
static int shared_reg_path(xfer_engine *e, struct xfer_mr *mr, uint32_t kind, uint32_t map_flags,
			   int *fd)
{
	*fd = -1;
	mr->kind = XFER_MEM_HOST;
	if (e->ops->wire_id != XFER_WIRE_VERBS ||
	    (kind == XFER_KIND_HOST && (map_flags & XFER_MAP_PAGES)))
		return 0;
	/* An older module (kind 0) has no page maps; its host regions and
	 * whole dma-buf regions export, the rest says -EOPNOTSUPP here. */
	mr->kind = XFER_MEM_DMABUF;
	return xfer_kmod_export_dmabuf(e->kmod, mr->kmod_handle, fd);
}

XFER_EXPORT int xfer_mr_open_shared(xfer_engine *e, uint64_t share_id, uint32_t flags,
				    xfer_mr **out)
{
	uint32_t kind = 0, map_flags = 0;
	struct xfer_mr *mr;
	int fd, ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!e || (flags & ~XFER_MR_REMOTE_WRITE))
		return -EINVAL;
	if (!e->kmod)
		return -ENODEV;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	ret = xfer_kmod_open_shared(e->kmod, share_id, &mr->kmod_handle, &mr->addr, &mr->len,
				    &kind, &map_flags);
	if (ret) {
		free(mr);
		return ret;
	}
	mr->e = e;
	mr->flags = flags;
	mr->mapped_shared = true;
	mr->region_id = __atomic_add_fetch(&e->region_seq, 1, __ATOMIC_RELAXED);
	ret = shared_reg_path(e, mr, kind, map_flags, &fd);
	if (!ret)
		ret = mr_register(e, mr, fd, 0);
	/* The NIC's registration holds the dma-buf itself. */
	if (fd >= 0)
		close(fd);
	if (ret) {
		munmap(mr->addr, mr->len);
		xfer_kmod_release(e->kmod, mr->kmod_handle);
		free(mr);
		return ret;
	}
	*out = mr;
	return 0;
}
