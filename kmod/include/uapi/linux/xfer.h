/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * /dev/xfer: pinning, sharing and lifetimes of memory registered for RDMA.
 *
 * Every open file is a context owned by the process that opened it.
 * Every ioctl argument starts with its size (__u32) and flags (__u32);
 * the kernel accepts shorter structs down to the first version's size and
 * longer ones whose tail is zero, so old and new userspace both work.
 * Unknown flags, non-zero reserved fields and a non-zero unknown tail give
 * -EINVAL (-E2BIG for the tail); unknown commands give -ENOTTY. Commands
 * that add a handle fail with -EMFILE when the context holds max_handles
 * (module parameter) already.
 *
 * mmap offsets: XFER_MMAP_OFFSET_STATS maps the context's stats page
 * (struct xfer_ctx_stats); a region maps at the mmap_offset returned for
 * its handle (MAP_SHARED only). A host region of shmem maps as the owner's
 * file (NIC registration of the mapping works: XFER_MAP_PAGES), one of
 * anonymous memory as PFNs; a dma-buf region through its exporter's mmap.
 */
#ifndef _UAPI_LINUX_XFER_H
#define _UAPI_LINUX_XFER_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define XFER_ABI_VERSION	1
#define XFER_IOCTL_TYPE		0xB7

enum {
	XFER_CMD_BASE = 0x80,
	XFER_CMD_QUERY = XFER_CMD_BASE,
	XFER_CMD_PIN,
	XFER_CMD_IMPORT_DMABUF,
	XFER_CMD_SHARE,
	XFER_CMD_OPEN_SHARED,
	XFER_CMD_EXPORT_DMABUF,
	XFER_CMD_RELEASE,
	XFER_CMD_PIN_GPU,
};

/* QUERY features */
#define XFER_FEATURE_DMABUF_IMPORT	(1U << 0)
#define XFER_FEATURE_DMABUF_EXPORT	(1U << 1)
#define XFER_FEATURE_NV_P2P		(1U << 2)
/* OPEN_SHARED reports kind and map_flags; host regions of shmem map as
 * the owner's file (XFER_MAP_PAGES); EXPORT_DMABUF takes whole-dma-buf
 * regions. */
#define XFER_FEATURE_PAGE_MAPS		(1U << 3)

/**
 * struct xfer_query - XFER_IOC_QUERY
 * @size: sizeof(struct xfer_query)
 * @flags: must be 0
 * @abi_version: out, XFER_ABI_VERSION
 * @features: out, XFER_FEATURE_* compiled in
 * @page_size: out, alignment of pinned ranges
 * @max_pinned_bytes: out, module-wide limit on pinned host memory
 * @pinned_bytes: out, host memory pinned by all contexts now
 * @memlock_limit: out, the caller's RLIMIT_MEMLOCK (~0 if unlimited)
 * @ctx_pinned_bytes: out, bytes this context pinned
 * @ctx_regions: out, regions this context holds (own and opened)
 * @__reserved: must be 0
 */
struct xfer_query {
	__u32 size;
	__u32 flags;
	__u32 abi_version;
	__u32 features;
	__u64 page_size;
	__u64 max_pinned_bytes;
	__u64 pinned_bytes;
	__u64 memlock_limit;
	__u64 ctx_pinned_bytes;
	__u32 ctx_regions;
	__u32 __reserved;
};
#define XFER_IOC_QUERY		_IO(XFER_IOCTL_TYPE, XFER_CMD_QUERY)

/**
 * struct xfer_pin - XFER_IOC_PIN: long-term pin of the caller's memory
 * @size: sizeof(struct xfer_pin)
 * @flags: must be 0
 * @addr: page-aligned start of the range in the caller's address space
 * @length: page-aligned, non-zero length
 * @handle: out, region handle in this context
 * @mmap_offset: out, offset to mmap the region at
 *
 * Errors: -EINVAL (alignment, zero, overflow, over 1 TiB, kernel range),
 * -ENOMEM (RLIMIT_MEMLOCK without CAP_IPC_LOCK), -ENOSPC (module limit
 * max_pinned_mb), -EFAULT (unmapped or unpinnable memory, e.g. a PFN map).
 */
struct xfer_pin {
	__u32 size;
	__u32 flags;
	__u64 addr;
	__u64 length;
	__u64 handle;
	__u64 mmap_offset;
};
#define XFER_IOC_PIN		_IO(XFER_IOCTL_TYPE, XFER_CMD_PIN)

/**
 * struct xfer_import_dmabuf - XFER_IOC_IMPORT_DMABUF
 * @size: sizeof(struct xfer_import_dmabuf)
 * @flags: must be 0
 * @fd: dma-buf file descriptor (-EBADF if not open, -EINVAL if not a dma-buf)
 * @__reserved: must be 0
 * @offset: page-aligned offset into the dma-buf
 * @length: page-aligned, non-zero, offset + length <= dma-buf size
 * @handle: out
 * @mmap_offset: out, the region maps through the exporter's mmap
 */
struct xfer_import_dmabuf {
	__u32 size;
	__u32 flags;
	__s32 fd;
	__u32 __reserved;
	__u64 offset;
	__u64 length;
	__u64 handle;
	__u64 mmap_offset;
};
#define XFER_IOC_IMPORT_DMABUF	_IO(XFER_IOCTL_TYPE, XFER_CMD_IMPORT_DMABUF)

/* SHARE rules: who may OPEN_SHARED */
#define XFER_SHARE_OWNER	0	/* same effective uid as the owner; id 0 */
#define XFER_SHARE_GROUP	1	/* caller is in group id */
#define XFER_SHARE_UID		2	/* caller's effective uid is id */

/**
 * struct xfer_share - XFER_IOC_SHARE: make a region openable by others
 * @size: sizeof(struct xfer_share)
 * @flags: must be 0
 * @handle: a region this context owns (-EPERM for an opened one)
 * @rule: XFER_SHARE_*
 * @id: gid or uid for the rule, 0 for XFER_SHARE_OWNER
 * @share_id: out, the id other processes open; valid until the owner
 *            releases the region or exits
 */
struct xfer_share {
	__u32 size;
	__u32 flags;
	__u64 handle;
	__u32 rule;
	__u32 id;
	__u64 share_id;
};
#define XFER_IOC_SHARE		_IO(XFER_IOCTL_TYPE, XFER_CMD_SHARE)

/* xfer_open_shared.kind: what the region is (0: a module without
 * XFER_FEATURE_PAGE_MAPS, which does not say) */
#define XFER_KIND_HOST		1	/* pinned host memory */
#define XFER_KIND_DMABUF	2	/* an imported dma-buf */
#define XFER_KIND_GPU		3	/* NVIDIA GPU memory (no mapping) */

/*
 * xfer_open_shared.map_flags
 * XFER_MAP_PAGES: the region's mapping is a shared mapping of the owner's
 * shmem file itself (the owner registered MAP_SHARED | MAP_ANONYMOUS,
 * memfd_create, /dev/shm, tmpfs or SysV shm memory), so get_user_pages,
 * pin_user_pages(FOLL_LONGTERM) and everything built on them (ibv_reg_mr,
 * O_DIRECT, vmsplice, process_vm_readv) accept it. It shows the file's
 * pages: if the owner truncates or punches holes in the file, the opener
 * sees that as the owner does (the region's pins keep the old pages until
 * released). Host regions of anonymous (MAP_PRIVATE, malloc) memory map as
 * PFNs (VM_PFNMAP: CPU access only; another process cannot map anonymous
 * pages as its own); register those through XFER_IOC_EXPORT_DMABUF
 * (ibv_reg_dmabuf_mr).
 */
#define XFER_MAP_PAGES		(1U << 0)

/**
 * struct xfer_open_shared - XFER_IOC_OPEN_SHARED
 * @size: sizeof(struct xfer_open_shared)
 * @flags: must be 0
 * @share_id: from XFER_IOC_SHARE (-ENOENT if gone, -EACCES if denied)
 * @handle: out, a handle in this context holding the region
 * @length: out, the region's length
 * @mmap_offset: out
 * @kind: out, XFER_KIND_* (left 0 by modules without XFER_FEATURE_PAGE_MAPS)
 * @map_flags: out, XFER_MAP_*
 *
 * The struct ended at @mmap_offset before XFER_FEATURE_PAGE_MAPS: callers
 * with that size still work (they get no kind), and longer callers on an
 * older module get its zero tail accepted and @kind left 0.
 */
struct xfer_open_shared {
	__u32 size;
	__u32 flags;
	__u64 share_id;
	__u64 handle;
	__u64 length;
	__u64 mmap_offset;
	__u32 kind;
	__u32 map_flags;
};
#define XFER_IOC_OPEN_SHARED	_IO(XFER_IOCTL_TYPE, XFER_CMD_OPEN_SHARED)

/**
 * struct xfer_export_dmabuf - XFER_IOC_EXPORT_DMABUF
 * @size: sizeof(struct xfer_export_dmabuf)
 * @flags: must be 0
 * @handle: a region of this context, own or opened: host memory (a new
 *          dma-buf of its pages), or a dma-buf region imported whole (a new
 *          fd for that same dma-buf; with XFER_FEATURE_PAGE_MAPS).
 *          -EOPNOTSUPP for a part of a dma-buf and for GPU regions
 * @fd: out, a dma-buf fd (O_RDWR | O_CLOEXEC) holding the region
 * @__reserved: must be 0
 */
struct xfer_export_dmabuf {
	__u32 size;
	__u32 flags;
	__u64 handle;
	__s32 fd;
	__u32 __reserved;
};
#define XFER_IOC_EXPORT_DMABUF	_IO(XFER_IOCTL_TYPE, XFER_CMD_EXPORT_DMABUF)

/**
 * struct xfer_release - XFER_IOC_RELEASE: drop this context's handle
 * @size: sizeof(struct xfer_release)
 * @flags: must be 0
 * @handle: the region handle; pages stay pinned while others hold it
 */
struct xfer_release {
	__u32 size;
	__u32 flags;
	__u64 handle;
};
#define XFER_IOC_RELEASE	_IO(XFER_IOCTL_TYPE, XFER_CMD_RELEASE)

/**
 * struct xfer_pin_gpu - XFER_IOC_PIN_GPU (only with XFER_FEATURE_NV_P2P)
 * @size: sizeof(struct xfer_pin_gpu)
 * @flags: must be 0
 * @addr: 64 KiB-aligned CUDA device address
 * @length: 64 KiB-aligned length
 * @handle: out; if the driver revokes the memory the region is marked
 *          invalid and further use returns -ENODEV
 */
struct xfer_pin_gpu {
	__u32 size;
	__u32 flags;
	__u64 addr;
	__u64 length;
	__u64 handle;
};
#define XFER_IOC_PIN_GPU	_IO(XFER_IOCTL_TYPE, XFER_CMD_PIN_GPU)

#define XFER_MMAP_OFFSET_STATS	0ULL
#define XFER_MMAP_REGION_SHIFT	40	/* region mmap_offset = handle << 40 */

/*
 * The per-context stats page, written by the library (no syscall on the
 * data path: relaxed stores of its own counters) and shown by the module
 * in debugfs. The library (lib/kmod) uses this struct as it is; without
 * the module it writes the same struct into a memfd named "xfer-stats"
 * that xferctl reads through /proc/PID/fd.
 *
 * Compatibility: fields are only ever appended. Version 1 ends after
 * rail[]; version 2 appends the tail below. A reader accepts any
 * version >= 1 it does not know the end of, reads the version-1 part
 * always, and the tail only when version >= 2 (and, from version 2 on,
 * only as far as @size reaches). Every field is written by an unprivileged
 * process: readers (the module included) treat each as untrusted and
 * clamp num_rails to XFER_CTX_STATS_MAX_RAILS.
 *
 * Version 1:
 * @version: XFER_CTX_STATS_VERSION of the writer
 * @num_rails: rails of the engine (entries of rail[] in use)
 * @ops_inflight: pieces posted and not completed, all rails
 * @last_error: the last failure seen (negative errno), 0 if none
 * @rail: per rail, cumulative counters
 * Version 2:
 * @size: sizeof(struct xfer_ctx_stats) of the writer
 * @pid: the writing process (in its own pid namespace)
 * @peers_up: peers added and not down
 * @peers_down: peers that went down (they stay down)
 * @engine_id: random per engine; tells a restarted engine from the last
 * @rail_ops_inflight: pieces in flight per rail
 * @provider: the engine's provider, NUL-terminated
 * @rail_name: each rail's device, NUL-terminated
 */
#define XFER_CTX_STATS_VERSION	2
#define XFER_CTX_STATS_MAX_RAILS	8
#define XFER_CTX_STATS_NAME_LEN	32

struct xfer_ctx_stats_rail {
	__u64 bytes_posted;
	__u64 bytes_completed;
	__u64 ops_posted;
	__u64 ops_completed;
	__u64 ops_failed;
	__u64 imm_received;
};

struct xfer_ctx_stats {
	__u32 version;
	__u32 num_rails;
	__u64 ops_inflight;
	__s64 last_error;
	struct xfer_ctx_stats_rail rail[XFER_CTX_STATS_MAX_RAILS];
	/* version 2 */
	__u32 size;
	__u32 pid;
	__u32 peers_up;
	__u32 peers_down;
	__u64 engine_id;
	__u64 rail_ops_inflight[XFER_CTX_STATS_MAX_RAILS];
	char provider[XFER_CTX_STATS_NAME_LEN];
	char rail_name[XFER_CTX_STATS_MAX_RAILS][XFER_CTX_STATS_NAME_LEN];
};

/* Where version 1 ends (the least a reader needs), and version 2. */
#define XFER_CTX_STATS_SIZE_V1	408
#define XFER_CTX_STATS_SIZE_V2	784

#endif /* _UAPI_LINUX_XFER_H */
