/* SPDX-License-Identifier: MIT */
/*
 * The library's side of the kernel module (/dev/xfer): pinning and
 * accounting of registered host memory, sharing regions between local
 * processes by handle, and the stats page the engine publishes its
 * counters into (no syscall on the data path). Every call returns
 * -ENODEV when the module is not loaded; the engine then works without it.
 */
#ifndef XFER_KMOD_H
#define XFER_KMOD_H

#include <stddef.h>
#include <stdint.h>

/* The stats page is the module's struct xfer_ctx_stats: one layout. */
#include <linux/xfer.h>

struct xfer_kmod;

int xfer_kmod_open(struct xfer_kmod **out);            /* -ENODEV without /dev/xfer */
void xfer_kmod_close(struct xfer_kmod *k);
/* Pin [addr, addr+len) of this process; *handle names the region. */
int xfer_kmod_pin(struct xfer_kmod *k, void *addr, size_t len, uint64_t *handle);
int xfer_kmod_release(struct xfer_kmod *k, uint64_t handle);
int xfer_kmod_share(struct xfer_kmod *k, uint64_t handle, uint32_t rule, uint32_t id,
		    uint64_t *share_id);
/* Open a share and mmap it: *handle, *addr, *len describe the mapping;
 * *kind (XFER_KIND_*, 0 from a module that does not say) and *map_flags
 * (XFER_MAP_PAGES: NICs can register the mapping itself) when not NULL. */
int xfer_kmod_open_shared(struct xfer_kmod *k, uint64_t share_id, uint64_t *handle,
			  void **addr, size_t *len, uint32_t *kind, uint32_t *map_flags);
/* The mapped stats page of this context, or NULL. */
struct xfer_ctx_stats *xfer_kmod_stats(struct xfer_kmod *k);
/* A dma-buf fd (O_CLOEXEC) for a region, for ibv_reg_dmabuf_mr / libfabric;
 * the pages stay pinned while the fd (or anything attached to it) lives. */
int xfer_kmod_export_dmabuf(struct xfer_kmod *k, uint64_t handle, int *fd);
/* Take [offset, offset+len) of a dma-buf (e.g. CUDA memory) as a region. */
int xfer_kmod_import_dmabuf(struct xfer_kmod *k, int fd, uint64_t offset, uint64_t len,
			    uint64_t *handle);

#endif
