// SPDX-License-Identifier: GPL-2.0
/*
 * xfer: pinning, sharing and lifetimes of memory registered for RDMA.
 *
 * /dev/xfer is a misc device; every open file is a context owned by the
 * process that opened it and holds region handles in an xarray. Commands
 * follow the iommufd model: every argument struct starts with its size and
 * is read with copy_struct_from_user(); dispatch goes through xfer_ioctl_ops.
 */
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "xfer_compat.h"
#include "xfer_priv.h"

static unsigned int max_pinned_mb;
module_param(max_pinned_mb, uint, 0644);
MODULE_PARM_DESC(max_pinned_mb,
		 "Limit on host memory pinned by all contexts, in MiB (0: half of RAM)");

static unsigned int max_handles = 65536;
module_param(max_handles, uint, 0644);
MODULE_PARM_DESC(max_handles, "Limit on region handles per context");

/* What each lock protects, and their order, is in xfer_priv.h. */
DEFINE_MUTEX(xfer_lock);
DEFINE_XARRAY_ALLOC(xfer_shares);
LIST_HEAD(xfer_contexts);
DEFINE_SPINLOCK(xfer_regions_lock);
LIST_HEAD(xfer_regions);
struct xfer_counters xfer_counters;
struct device *xfer_dma_dev;

static struct platform_device *xfer_pdev;
static atomic_t xfer_ctx_ids = ATOMIC_INIT(0);

u64 xfer_max_pinned_bytes(void)
{
	unsigned int mb = READ_ONCE(max_pinned_mb);

	if (!mb)
		return ((u64)totalram_pages() << PAGE_SHIFT) / 2;
	return (u64)mb << 20;
}

struct xfer_ucmd {
	struct xfer_ctx *ctx;
	void __user *ubuffer;
	u32 user_size;
	void *cmd;
};

/* Copy the command's output back: as much as the caller's struct holds. */
static int xfer_ucmd_respond(struct xfer_ucmd *ucmd, size_t cmd_len)
{
	if (copy_to_user(ucmd->ubuffer, ucmd->cmd,
			 min_t(size_t, ucmd->user_size, cmd_len)))
		return -EFAULT;
	return 0;
}

static int xfer_ctx_add_region(struct xfer_ctx *ctx, struct xfer_region *r,
			       bool owned, u32 *handle)
{
	int ret;

	lockdep_assert_held(&ctx->lock);

	if (ctx->nr_regions >= READ_ONCE(max_handles))
		return -EMFILE;
	/* Cyclic: a stale handle (or mmap offset) never names a newer region. */
	ret = xa_alloc_cyclic(&ctx->handles, handle, r,
			      XA_LIMIT(1, XFER_MAX_HANDLE), &ctx->next_handle,
			      GFP_KERNEL);
	if (ret < 0)
		return ret == -EBUSY ? -ENOSPC : ret;
	if (owned) {
		xa_set_mark(&ctx->handles, *handle, XFER_HANDLE_OWNED);
		if (r->kind == XFER_REGION_HOST)
			ctx->pinned_bytes += r->length;
	}
	atomic_inc(&r->nr_holders);
	ctx->nr_regions++;
	return 0;
}

/*
 * Remove @handle from @ctx and return the reference it held, for the caller
 * to drop. An owner's removal ends the region's shares.
 */
static struct xfer_region *xfer_ctx_take_region(struct xfer_ctx *ctx,
						unsigned long handle)
{
	struct xfer_region *r;
	bool owned;

	lockdep_assert_held(&ctx->lock);

	owned = xa_get_mark(&ctx->handles, handle, XFER_HANDLE_OWNED);
	r = xa_erase(&ctx->handles, handle);
	if (!r)
		return NULL;
	if (owned) {
		if (r->kind == XFER_REGION_HOST)
			ctx->pinned_bytes -= r->length;
		mutex_lock(&xfer_lock);
		xfer_share_remove_region(r);
		mutex_unlock(&xfer_lock);
	}
	atomic_dec(&r->nr_holders);
	ctx->nr_regions--;
	return r;
}

/* Hand a new region to the caller, or undo everything if we cannot. */
static int xfer_ucmd_new_region(struct xfer_ucmd *ucmd, struct xfer_region *r,
				bool owned, u64 *handle_out, u64 *offset_out,
				size_t cmd_len)
{
	struct xfer_ctx *ctx = ucmd->ctx;
	u32 handle;
	int ret;

	ret = xfer_ctx_add_region(ctx, r, owned, &handle);
	if (ret) {
		xfer_region_put(r);
		return ret;
	}
	*handle_out = handle;
	*offset_out = (u64)handle << XFER_MMAP_REGION_SHIFT;
	ret = xfer_ucmd_respond(ucmd, cmd_len);
	if (ret)
		xfer_region_put(xfer_ctx_take_region(ctx, handle));
	return ret;
}

static int xfer_cmd_query(struct xfer_ucmd *ucmd)
{
	struct xfer_query *cmd = ucmd->cmd;
	unsigned long memlock = rlimit(RLIMIT_MEMLOCK);

	if (cmd->flags || cmd->__reserved)
		return -EINVAL;
	cmd->abi_version = XFER_ABI_VERSION;
	cmd->features = XFER_FEATURE_DMABUF_IMPORT | XFER_FEATURE_DMABUF_EXPORT |
			XFER_FEATURE_PAGE_MAPS;
	if (IS_ENABLED(CONFIG_XFER_NV_P2P))
		cmd->features |= XFER_FEATURE_NV_P2P;
	cmd->page_size = PAGE_SIZE;
	cmd->max_pinned_bytes = xfer_max_pinned_bytes();
	cmd->pinned_bytes =
		(u64)atomic64_read(&xfer_counters.pinned_pages) << PAGE_SHIFT;
	cmd->memlock_limit = memlock == RLIM_INFINITY ? ~0ULL : memlock;
	cmd->ctx_pinned_bytes = ucmd->ctx->pinned_bytes;
	cmd->ctx_regions = ucmd->ctx->nr_regions;
	return xfer_ucmd_respond(ucmd, sizeof(*cmd));
}

static int xfer_cmd_pin(struct xfer_ucmd *ucmd)
{
	struct xfer_pin *cmd = ucmd->cmd;
	struct xfer_region *r;
	int ret;

	if (cmd->flags)
		return -EINVAL;
	ret = xfer_region_pin(cmd->addr, cmd->length, &r);
	if (ret)
		return ret;
	return xfer_ucmd_new_region(ucmd, r, true, &cmd->handle,
				    &cmd->mmap_offset, sizeof(*cmd));
}

static int xfer_cmd_import_dmabuf(struct xfer_ucmd *ucmd)
{
	struct xfer_import_dmabuf *cmd = ucmd->cmd;
	struct xfer_region *r;
	int ret;

	if (cmd->flags || cmd->__reserved)
		return -EINVAL;
	ret = xfer_region_import(cmd->fd, cmd->offset, cmd->length, &r);
	if (ret)
		return ret;
	return xfer_ucmd_new_region(ucmd, r, true, &cmd->handle,
				    &cmd->mmap_offset, sizeof(*cmd));
}

static int xfer_cmd_pin_gpu(struct xfer_ucmd *ucmd)
{
	struct xfer_pin_gpu *cmd = ucmd->cmd;
	struct xfer_region *r;
	u64 unused;
	int ret;

	if (cmd->flags)
		return -EINVAL;
	ret = xfer_region_pin_gpu(cmd->addr, cmd->length, &r);
	if (ret)
		return ret;
	return xfer_ucmd_new_region(ucmd, r, true, &cmd->handle, &unused,
				    sizeof(*cmd));
}

static int xfer_cmd_share(struct xfer_ucmd *ucmd)
{
	struct xfer_share *cmd = ucmd->cmd;
	struct xfer_ctx *ctx = ucmd->ctx;
	struct xfer_region *r;
	u32 share_id;
	int ret;

	if (cmd->flags)
		return -EINVAL;
	if (cmd->handle > XFER_MAX_HANDLE)
		return -ENOENT;
	r = xa_load(&ctx->handles, cmd->handle);
	if (!r)
		return -ENOENT;
	if (!xa_get_mark(&ctx->handles, cmd->handle, XFER_HANDLE_OWNED))
		return -EPERM;
	ret = xfer_share_create(r, cmd->rule, cmd->id, &share_id);
	if (ret)
		return ret;
	cmd->share_id = share_id;
	ret = xfer_ucmd_respond(ucmd, sizeof(*cmd));
	if (ret)
		xfer_share_destroy(share_id);
	return ret;
}

static int xfer_cmd_open_shared(struct xfer_ucmd *ucmd)
{
	struct xfer_open_shared *cmd = ucmd->cmd;
	struct xfer_region *r;

	if (cmd->flags)
		return -EINVAL;
	if (!cmd->share_id || cmd->share_id > INT_MAX)
		return -ENOENT;
	r = xfer_share_open(cmd->share_id);
	if (IS_ERR(r))
		return PTR_ERR(r);
	cmd->length = r->length;
	switch (r->kind) {
	case XFER_REGION_HOST:
		cmd->kind = XFER_KIND_HOST;
		break;
	case XFER_REGION_DMABUF:
		cmd->kind = XFER_KIND_DMABUF;
		break;
	case XFER_REGION_NVP2P:
		cmd->kind = XFER_KIND_GPU;
		break;
	}
	cmd->map_flags = r->file ? XFER_MAP_PAGES : 0;
	return xfer_ucmd_new_region(ucmd, r, false, &cmd->handle,
				    &cmd->mmap_offset, sizeof(*cmd));
}

static int xfer_cmd_export_dmabuf(struct xfer_ucmd *ucmd)
{
	struct xfer_export_dmabuf *cmd = ucmd->cmd;
	struct xfer_region *r;
	struct dma_buf *dmabuf;
	int fd, ret;

	if (cmd->flags || cmd->__reserved)
		return -EINVAL;
	if (cmd->handle > XFER_MAX_HANDLE)
		return -ENOENT;
	r = xa_load(&ucmd->ctx->handles, cmd->handle);
	if (!r)
		return -ENOENT;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0)
		return fd;
	ret = xfer_region_export(r, &dmabuf);
	if (ret)
		goto err_put_fd;
	cmd->fd = fd;
	ret = xfer_ucmd_respond(ucmd, sizeof(*cmd));
	if (ret)
		goto err_put_dmabuf;
	/* The fd owns the dma-buf from here on. */
	fd_install(fd, dmabuf->file);
	return 0;

err_put_dmabuf:
	dma_buf_put(dmabuf);
err_put_fd:
	put_unused_fd(fd);
	return ret;
}

static int xfer_cmd_release(struct xfer_ucmd *ucmd)
{
	struct xfer_release *cmd = ucmd->cmd;
	struct xfer_region *r;

	if (cmd->flags)
		return -EINVAL;
	if (cmd->handle > XFER_MAX_HANDLE)
		return -ENOENT;
	r = xfer_ctx_take_region(ucmd->ctx, cmd->handle);
	if (!r)
		return -ENOENT;
	xfer_region_put(r);
	return 0;
}

union xfer_ucmd_buffer {
	struct xfer_query query;
	struct xfer_pin pin;
	struct xfer_import_dmabuf import_dmabuf;
	struct xfer_share share;
	struct xfer_open_shared open_shared;
	struct xfer_export_dmabuf export_dmabuf;
	struct xfer_release release;
	struct xfer_pin_gpu pin_gpu;
};

struct xfer_ioctl_op {
	unsigned int size;
	unsigned int min_size;
	unsigned int ioctl_num;
	int (*execute)(struct xfer_ucmd *ucmd);
};

#define XFER_IOCTL_OP(_ioctl, _fn, _struct, _last)			\
	[_IOC_NR(_ioctl) - XFER_CMD_BASE] = {				\
		.size = sizeof(_struct) +				\
			BUILD_BUG_ON_ZERO(sizeof(union xfer_ucmd_buffer) < \
					  sizeof(_struct)),		\
		.min_size = offsetofend(_struct, _last),		\
		.ioctl_num = _ioctl,					\
		.execute = _fn,						\
	}

static const struct xfer_ioctl_op xfer_ioctl_ops[] = {
	XFER_IOCTL_OP(XFER_IOC_QUERY, xfer_cmd_query, struct xfer_query,
		      __reserved),
	XFER_IOCTL_OP(XFER_IOC_PIN, xfer_cmd_pin, struct xfer_pin, mmap_offset),
	XFER_IOCTL_OP(XFER_IOC_IMPORT_DMABUF, xfer_cmd_import_dmabuf,
		      struct xfer_import_dmabuf, mmap_offset),
	XFER_IOCTL_OP(XFER_IOC_SHARE, xfer_cmd_share, struct xfer_share,
		      share_id),
	XFER_IOCTL_OP(XFER_IOC_OPEN_SHARED, xfer_cmd_open_shared,
		      struct xfer_open_shared, mmap_offset),
	XFER_IOCTL_OP(XFER_IOC_EXPORT_DMABUF, xfer_cmd_export_dmabuf,
		      struct xfer_export_dmabuf, __reserved),
	XFER_IOCTL_OP(XFER_IOC_RELEASE, xfer_cmd_release, struct xfer_release,
		      handle),
	XFER_IOCTL_OP(XFER_IOC_PIN_GPU, xfer_cmd_pin_gpu, struct xfer_pin_gpu,
		      handle),
};

static long xfer_fops_ioctl(struct file *filp, unsigned int cmd,
			    unsigned long arg)
{
	struct xfer_ctx *ctx = filp->private_data;
	const struct xfer_ioctl_op *op;
	union xfer_ucmd_buffer buf;
	struct xfer_ucmd ucmd = {};
	unsigned int nr = _IOC_NR(cmd);
	int ret;

	if (nr < XFER_CMD_BASE ||
	    nr - XFER_CMD_BASE >= ARRAY_SIZE(xfer_ioctl_ops))
		return -ENOTTY;
	op = &xfer_ioctl_ops[nr - XFER_CMD_BASE];
	if (op->ioctl_num != cmd)
		return -ENOTTY;

	ucmd.ctx = ctx;
	ucmd.ubuffer = (void __user *)arg;
	ret = get_user(ucmd.user_size, (u32 __user *)ucmd.ubuffer);
	if (ret)
		return ret;
	if (ucmd.user_size < op->min_size)
		return -EINVAL;
	if (ucmd.user_size > PAGE_SIZE)
		return -E2BIG;
	ret = copy_struct_from_user(&buf, op->size, ucmd.ubuffer,
				    ucmd.user_size);
	if (ret)
		return ret;
	ucmd.cmd = &buf;

	if (mutex_lock_interruptible(&ctx->lock))
		return -EINTR;
	ret = op->execute(&ucmd);
	mutex_unlock(&ctx->lock);
	return ret;
}

static int xfer_fops_open(struct inode *inode, struct file *filp)
{
	struct xfer_ctx *ctx;
	struct xfer_ctx_stats *stats;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;
	ctx->stats = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!ctx->stats) {
		kfree(ctx);
		return -ENOMEM;
	}
	stats = page_address(ctx->stats);
	stats->version = XFER_CTX_STATS_VERSION;

	ctx->id = atomic_inc_return(&xfer_ctx_ids);
	ctx->pid = task_tgid_vnr(current);
	xfer_get_comm(&ctx->comm);
	mutex_init(&ctx->lock);
	xa_init_flags(&ctx->handles, XA_FLAGS_ALLOC1);

	mutex_lock(&xfer_lock);
	list_add_tail(&ctx->node, &xfer_contexts);
	mutex_unlock(&xfer_lock);
	atomic_inc(&xfer_counters.contexts);
	xfer_debugfs_ctx_add(ctx);

	filp->private_data = ctx;
	return 0;
}

static int xfer_fops_release(struct inode *inode, struct file *filp)
{
	struct xfer_ctx *ctx = filp->private_data;
	struct xfer_region *r;
	unsigned long handle;

	/* No debugfs reader can see the context after this. */
	xfer_debugfs_ctx_remove(ctx);

	mutex_lock(&ctx->lock);
	xa_for_each(&ctx->handles, handle, r) {
		r = xfer_ctx_take_region(ctx, handle);
		xfer_region_put(r);
	}
	mutex_unlock(&ctx->lock);
	xa_destroy(&ctx->handles);

	mutex_lock(&xfer_lock);
	list_del(&ctx->node);
	mutex_unlock(&xfer_lock);
	atomic_dec(&xfer_counters.contexts);

	/* Mappings of the stats page hold their own page references. */
	__free_page(ctx->stats);
	mutex_destroy(&ctx->lock);
	kfree(ctx);
	return 0;
}

static int xfer_fops_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct xfer_ctx *ctx = filp->private_data;
	unsigned long handle;
	struct xfer_region *r;
	int ret;

	if (vma->vm_pgoff == XFER_MMAP_OFFSET_STATS) {
		if (vma_pages(vma) != 1 || !(vma->vm_flags & VM_SHARED))
			return -EINVAL;
		xfer_vm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
		return vm_insert_page(vma, vma->vm_start, ctx->stats);
	}

	/*
	 * Not under ctx->lock: commands hold it while pinning, which takes
	 * mmap_lock. The xarray's lock keeps the entry's reference alive.
	 */
	handle = vma->vm_pgoff >> (XFER_MMAP_REGION_SHIFT - PAGE_SHIFT);
	xa_lock(&ctx->handles);
	r = xa_load(&ctx->handles, handle);
	if (r)
		xfer_region_get(r);
	xa_unlock(&ctx->handles);
	if (!r)
		return -ENOENT;
	ret = xfer_region_mmap(r, vma);
	xfer_region_put(r);
	return ret;
}

static const struct file_operations xfer_fops = {
	.owner = THIS_MODULE,
	.open = xfer_fops_open,
	.release = xfer_fops_release,
	.unlocked_ioctl = xfer_fops_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = xfer_fops_mmap,
	.llseek = noop_llseek,
};

static struct miscdevice xfer_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "xfer",
	.fops = &xfer_fops,
	.mode = 0660,
};

static int __init xfer_init(void)
{
	int ret;

	/* A misc device has no DMA mask; dma-buf attachments need one. */
	xfer_pdev = platform_device_register_simple("xfer-dma", -1, NULL, 0);
	if (IS_ERR(xfer_pdev))
		return PTR_ERR(xfer_pdev);
	ret = dma_coerce_mask_and_coherent(&xfer_pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		goto err_unregister_pdev;
	xfer_dma_dev = &xfer_pdev->dev;

	xfer_misc.groups = xfer_sysfs_groups;
	ret = misc_register(&xfer_misc);
	if (ret)
		goto err_unregister_pdev;
	xfer_debugfs_init();
	return 0;

err_unregister_pdev:
	platform_device_unregister(xfer_pdev);
	return ret;
}

static void __exit xfer_exit(void)
{
	xfer_debugfs_exit();
	misc_deregister(&xfer_misc);
	platform_device_unregister(xfer_pdev);
	WARN_ON_ONCE(!list_empty(&xfer_regions));
	WARN_ON_ONCE(!xa_empty(&xfer_shares));
}

module_init(xfer_init);
module_exit(xfer_exit);

MODULE_DESCRIPTION("xfer: pinning and sharing of memory registered for RDMA");
MODULE_LICENSE("GPL");
XFER_IMPORT_NS_DMA_BUF();
