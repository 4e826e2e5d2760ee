/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _XFER_PRIV_H
#define _XFER_PRIV_H

#include <linux/atomic.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/uidgid.h>
#include <linux/xarray.h>

#include <uapi/linux/xfer.h>

struct dentry;
struct device;
struct dma_buf;
struct dma_buf_attachment;
struct sg_table;
struct vm_area_struct;

/* Largest region: one mmap_offset slot (XFER_MMAP_REGION_SHIFT). */
#define XFER_REGION_MAX_BYTES	(1ULL << XFER_MMAP_REGION_SHIFT)
#define XFER_MAX_HANDLE		((1U << (63 - XFER_MMAP_REGION_SHIFT)) - 1)
/* xarray mark on a context's handle: this context owns the region. */
#define XFER_HANDLE_OWNED	XA_MARK_1

enum xfer_region_kind {
	XFER_REGION_HOST,
	XFER_REGION_DMABUF,
	XFER_REGION_NVP2P,
};

struct xfer_region {
	struct kref ref;
	u32 id;
	enum xfer_region_kind kind;
	pid_t owner_pid;
	char owner_comm[TASK_COMM_LEN];
	u64 length;
	unsigned long npages;

	/* XFER_REGION_HOST: pinned pages, accounted to @mm->pinned_vm */
	struct page **pages;
	struct mm_struct *mm;
	/* The owner's shmem file when the range is a shared mapping of one
	 * (a reference held); mappings of the region are mappings of this
	 * file from @file_pgoff (XFER_MAP_PAGES). NULL: PFN maps. */
	struct file *file;
	pgoff_t file_pgoff;

	/* XFER_REGION_DMABUF */
	struct dma_buf *dmabuf;
	struct dma_buf_attachment *attach;
	struct sg_table *sgt;
	u64 dmabuf_offset;

	/* XFER_REGION_NVP2P: page table, taken by whoever frees it first */
	void *nv_table;
	u64 nv_addr;

	atomic_t nr_holders;	/* contexts with a handle on it */
	atomic_t nr_shares;
	atomic_t nr_exports;	/* live exported dma-bufs */
	atomic_t nr_maps;	/* live PFN-map vmas (a shmem region's are the file's) */
	bool owner_gone;	/* written under xfer_lock */
	bool invalid;		/* NVIDIA driver revoked the memory */

	struct list_head node;	/* xfer_regions, under xfer_regions_lock */
};

struct xfer_ctx {
	u32 id;
	pid_t pid;
	char comm[TASK_COMM_LEN];

	/* Serialises this context's commands; protects @handles and totals. */
	struct mutex lock;
	struct xarray handles;
	u32 next_handle;
	u64 pinned_bytes;
	unsigned int nr_regions;

	struct page *stats;	/* struct xfer_ctx_stats, mapped by the library */
	struct dentry *dir;
	struct list_head node;	/* xfer_contexts, under xfer_lock */
};

struct xfer_share_entry {
	u32 id;
	u32 rule;
	kuid_t uid;
	kgid_t gid;
	pid_t owner_pid;
	atomic_t opens;
	struct xfer_region *region;	/* holds a reference */
};

/*
 * Lock order: ctx->lock, then xfer_lock, then xfer_regions_lock. mmap
 * (under mmap_lock) takes none of the first two: PIN holds ctx->lock
 * while pinning, which takes mmap_lock.
 *
 * xfer_lock protects xfer_shares, xfer_contexts and region->owner_gone.
 */
extern struct mutex xfer_lock;
extern struct xarray xfer_shares;
extern struct list_head xfer_contexts;
/* Protects xfer_regions (taken from region release, any context). */
extern spinlock_t xfer_regions_lock;
extern struct list_head xfer_regions;

struct xfer_counters {
	atomic64_t pinned_pages;
	atomic64_t imported_bytes;
	atomic_t regions;
	atomic_t contexts;
	atomic_t shares;
	atomic_t exports;
	atomic64_t pins_total;
	atomic64_t pins_failed;
};
extern struct xfer_counters xfer_counters;
extern struct device *xfer_dma_dev;

u64 xfer_max_pinned_bytes(void);

/* xfer_region.c */
void xfer_get_comm(char (*comm)[TASK_COMM_LEN]);
int xfer_region_pin(u64 addr, u64 length, struct xfer_region **out);
int xfer_region_import(int fd, u64 offset, u64 length,
		       struct xfer_region **out);
int xfer_region_export(struct xfer_region *r, struct dma_buf **out);
int xfer_region_mmap(struct xfer_region *r, struct vm_area_struct *vma);
void xfer_region_publish(struct xfer_region *r);
void xfer_region_get(struct xfer_region *r);
void xfer_region_put(struct xfer_region *r);
void xfer_region_init_common(struct xfer_region *r,
			     enum xfer_region_kind kind, u64 length);
const char *xfer_region_kind_name(const struct xfer_region *r);

/* xfer_share.c */
int xfer_share_create(struct xfer_region *r, u32 rule, u32 id, u32 *share_id);
struct xfer_region *xfer_share_open(u32 share_id);
void xfer_share_remove_region(struct xfer_region *r);
void xfer_share_destroy(u32 share_id);

/* xfer_state.c: debugfs and sysfs */
extern const struct attribute_group *xfer_sysfs_groups[];
void xfer_debugfs_init(void);
void xfer_debugfs_exit(void);
void xfer_debugfs_ctx_add(struct xfer_ctx *ctx);
void xfer_debugfs_ctx_remove(struct xfer_ctx *ctx);

/* xfer_nvp2p.c, built only where nv-p2p.h is found */
#ifdef CONFIG_XFER_NV_P2P
int xfer_region_pin_gpu(u64 addr, u64 length, struct xfer_region **out);
void xfer_nvp2p_release(struct xfer_region *r);
#else
static inline int xfer_region_pin_gpu(u64 addr, u64 length,
				      struct xfer_region **out)
{
	return -EOPNOTSUPP;
}

static inline void xfer_nvp2p_release(struct xfer_region *r)
{
}
#endif

#endif /* _XFER_PRIV_H */
