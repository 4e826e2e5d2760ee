// SPDX-License-Identifier: GPL-2.0
/*
 * Regions: pinned host memory, imported dma-bufs and (optionally) NVIDIA
 * GPU memory. A region is reference-counted; its memory stays pinned or
 * attached while any context handle, share, exported dma-buf or mapping
 * holds it.
 */
#include <linux/ctype.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/fcntl.h>
#include <linux/mm.h>
#include <linux/pid.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/scatterlist.h>
#include <linux/shmem_fs.h>
#include <linux/file.h>
#include <linux/slab.h>

#include "xfer_compat.h"
#include "xfer_priv.h"

static atomic_t xfer_region_ids = ATOMIC_INIT(0);

const char *xfer_region_kind_name(const struct xfer_region *r)
{
	switch (r->kind) {
	case XFER_REGION_HOST:
		return "host";
	case XFER_REGION_DMABUF:
		return "dmabuf";
	case XFER_REGION_NVP2P:
		return "nvp2p";
	}
	return "?";
}

/*
 * The caller's command name for debugfs: tabs and newlines would forge
 * columns or lines there, so anything unprintable becomes '?'.
 */
void xfer_get_comm(char (*comm)[TASK_COMM_LEN])
{
	char *c;

	get_task_comm(*comm, current);
	for (c = *comm; *c; c++)
		if (!isgraph(*c))
			*c = '?';
}

void xfer_region_init_common(struct xfer_region *r,
			     enum xfer_region_kind kind, u64 length)
{
	kref_init(&r->ref);
	r->id = atomic_inc_return(&xfer_region_ids);
	r->kind = kind;
	r->owner_pid = task_tgid_vnr(current);
	xfer_get_comm(&r->owner_comm);
	r->length = length;
	r->npages = length >> PAGE_SHIFT;
	INIT_LIST_HEAD(&r->node);
}

void xfer_region_publish(struct xfer_region *r)
{
	spin_lock(&xfer_regions_lock);
	list_add_tail(&r->node, &xfer_regions);
	spin_unlock(&xfer_regions_lock);
	atomic_inc(&xfer_counters.regions);
}

/*
 * Charge @npages to the caller's RLIMIT_MEMLOCK (as RDMA umem does, in
 * mm->pinned_vm) and to the module-wide limit. Nothing stays charged on
 * failure.
 */
static int xfer_account_pin(struct mm_struct *mm, unsigned long npages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	u64 max_pages = xfer_max_pinned_bytes() >> PAGE_SHIFT;
	s64 pinned;

	pinned = atomic64_add_return(npages, &mm->pinned_vm);
	if (pinned > limit && !capable(CAP_IPC_LOCK)) {
		atomic64_sub(npages, &mm->pinned_vm);
		return -ENOMEM;
	}
	pinned = atomic64_add_return(npages, &xfer_counters.pinned_pages);
	if (pinned > max_pages) {
		atomic64_sub(npages, &xfer_counters.pinned_pages);
		atomic64_sub(npages, &mm->pinned_vm);
		return -ENOSPC;
	}
	return 0;
}

static void xfer_unaccount_pin(struct mm_struct *mm, unsigned long npages)
{
	atomic64_sub(npages, &xfer_counters.pinned_pages);
	atomic64_sub(npages, &mm->pinned_vm);
}

/*
 * The shmem file behind [addr, addr + length) when the range lies in one
 * shared mapping of it (MAP_SHARED | MAP_ANONYMOUS, memfd_create, a
 * /dev/shm or tmpfs file, SysV shm) and the pinned pages are that file's
 * pages at consecutive offsets; with a reference for the region. Such a
 * region maps into other processes as the file itself (see
 * xfer_region_mmap()). NULL for anything else (anonymous memory above all).
 */
static struct file *xfer_shmem_file(struct mm_struct *mm, u64 addr, u64 length,
				    struct page **pages, unsigned long npages,
				    pgoff_t *pgoff)
{
	struct vm_area_struct *vma;
	struct file *file = NULL;
	unsigned long i;
	pgoff_t first = 0;

	mmap_read_lock(mm);
	vma = vma_lookup(mm, addr);
	if (vma && vma->vm_end >= addr + length &&
	    (vma->vm_flags & VM_SHARED) && vma->vm_file &&
	    shmem_file(vma->vm_file)) {
		file = get_file(vma->vm_file);
		first = vma->vm_pgoff + ((addr - vma->vm_start) >> PAGE_SHIFT);
	}
	mmap_read_unlock(mm);
	if (!file)
		return NULL;
	/* A truncation racing the pin: the pages are no longer the file's. */
	for (i = 0; i < npages; i++) {
		struct folio *folio = page_folio(pages[i]);

		if (READ_ONCE(folio->mapping) != file->f_mapping ||
		    folio->index + folio_page_idx(folio, pages[i]) != first + i) {
			fput(file);
			return NULL;
		}
	}
	*pgoff = first;
	return file;
}

int xfer_region_pin(u64 addr, u64 length, struct xfer_region **out)
{
	struct mm_struct *mm = current->mm;
	unsigned long pinned = 0;
	struct xfer_region *r;
	int ret;

	if (!length || !PAGE_ALIGNED(addr) || !PAGE_ALIGNED(length) ||
	    length > XFER_REGION_MAX_BYTES || addr + length < addr ||
	    addr + length > TASK_SIZE)
		return -EINVAL;
	if (!mm)
		return -EFAULT;

	r = kzalloc(sizeof(*r), GFP_KERNEL_ACCOUNT);
	if (!r)
		return -ENOMEM;
	xfer_region_init_common(r, XFER_REGION_HOST, length);

	ret = xfer_account_pin(mm, r->npages);
	if (ret)
		goto err_free;

	r->pages = kvmalloc_array(r->npages, sizeof(*r->pages),
				  GFP_KERNEL_ACCOUNT);
	if (!r->pages) {
		ret = -ENOMEM;
		goto err_unaccount;
	}

	while (pinned < r->npages) {
		unsigned long chunk = min_t(unsigned long, r->npages - pinned,
					    SZ_1M);

		ret = pin_user_pages_fast(addr + (pinned << PAGE_SHIFT), chunk,
					  FOLL_WRITE | FOLL_LONGTERM,
					  r->pages + pinned);
		if (ret <= 0) {
			ret = ret ? ret : -EFAULT;
			goto err_unpin;
		}
		pinned += ret;
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			goto err_unpin;
		}
	}

	r->file = xfer_shmem_file(mm, addr, length, r->pages, r->npages,
				  &r->file_pgoff);
	mmgrab(mm);
	r->mm = mm;
	xfer_region_publish(r);
	atomic64_inc(&xfer_counters.pins_total);
	*out = r;
	return 0;

err_unpin:
	unpin_user_pages(r->pages, pinned);
	kvfree(r->pages);
err_unaccount:
	xfer_unaccount_pin(mm, r->npages);
err_free:
	kfree(r);
	atomic64_inc(&xfer_counters.pins_failed);
	return ret;
}

int xfer_region_import(int fd, u64 offset, u64 length,
		       struct xfer_region **out)
{
	struct xfer_region *r;
	struct dma_buf *dmabuf;
	int ret;

	if (!length || !PAGE_ALIGNED(offset) || !PAGE_ALIGNED(length) ||
	    length > XFER_REGION_MAX_BYTES || offset + length < offset)
		return -EINVAL;

	dmabuf = dma_buf_get(fd);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);
	if (offset + length > dmabuf->size) {
		ret = -EINVAL;
		goto err_put;
	}

	r = kzalloc(sizeof(*r), GFP_KERNEL_ACCOUNT);
	if (!r) {
		ret = -ENOMEM;
		goto err_put;
	}
	xfer_region_init_common(r, XFER_REGION_DMABUF, length);
	r->dmabuf_offset = offset;

	r->attach = dma_buf_attach(dmabuf, xfer_dma_dev);
	if (IS_ERR(r->attach)) {
		ret = PTR_ERR(r->attach);
		goto err_free;
	}
	r->sgt = dma_buf_map_attachment_unlocked(r->attach, DMA_BIDIRECTIONAL);
	if (IS_ERR(r->sgt)) {
		ret = PTR_ERR(r->sgt);
		goto err_detach;
	}

	/* The region owns the dma-buf reference from here on. */
	r->dmabuf = dmabuf;
	atomic64_add(length, &xfer_counters.imported_bytes);
	xfer_region_publish(r);
	*out = r;
	return 0;

err_detach:
	dma_buf_detach(dmabuf, r->attach);
err_free:
	kfree(r);
err_put:
	dma_buf_put(dmabuf);
	return ret;
}

static void xfer_region_release(struct kref *kref)
{
	struct xfer_region *r = container_of(kref, struct xfer_region, ref);

	spin_lock(&xfer_regions_lock);
	list_del(&r->node);
	spin_unlock(&xfer_regions_lock);
	atomic_dec(&xfer_counters.regions);

	switch (r->kind) {
	case XFER_REGION_HOST:
		unpin_user_pages_dirty_lock(r->pages, r->npages, true);
		if (r->file)
			fput(r->file);
		xfer_unaccount_pin(r->mm, r->npages);
		mmdrop(r->mm);
		kvfree(r->pages);
		break;
	case XFER_REGION_DMABUF:
		dma_buf_unmap_attachment_unlocked(r->attach, r->sgt,
						  DMA_BIDIRECTIONAL);
		dma_buf_detach(r->dmabuf, r->attach);
		dma_buf_put(r->dmabuf);
		atomic64_sub(r->length, &xfer_counters.imported_bytes);
		break;
	case XFER_REGION_NVP2P:
		xfer_nvp2p_release(r);
		break;
	}
	kfree(r);
}

void xfer_region_get(struct xfer_region *r)
{
	kref_get(&r->ref);
}

void xfer_region_put(struct xfer_region *r)
{
	kref_put(&r->ref, xfer_region_release);
}

/*
 * Mappings of host regions.
 *
 * A region of shmem (r->file) maps as the owner's file itself: the vma
 * becomes a shared mapping of that file at the region's offset, as
 * dma_buf_mmap() hands a vma to the exporter's file. Its ptes are the
 * file's pages, so get_user_pages takes them and the opener can register
 * the mapping with a NIC (ibv_reg_mr: pin_user_pages(FOLL_LONGTERM |
 * FOLL_WRITE) in ib_umem_get), read into it with O_DIRECT, vmsplice or
 * process_vm_readv it. The long-term pin passes mm/gup.c's checks as the
 * owner's own XFER_IOC_PIN did on the same file: check_vma_flags() (no
 * VM_IO or VM_PFNMAP, not DAX or secretmem), writable_file_mapping_allowed()
 * (6.5+: vma_needs_dirty_tracking() is false for shmem: no page_mkwrite,
 * and tmpfs's backing device has no BDI_CAP_WRITEBACK), gup-fast's
 * gup_fast_folio_allowed() (6.12: shmem folios pass), and the movable-zone
 * migration (the owner's long-term pin moved the pages out already).
 * Mapping the pages under another file (vm_insert_page into this vma)
 * would not do: the file's truncation and hole punching (ftruncate,
 * fallocate, MADV_REMOVE, the file's last close at the owner's death) walk
 * the file's own mappings only, and would find pages still mapped here
 * ("BUG: Bad page cache"). As the file's mapping, this vma is unmapped by
 * them like any other, and holds the file (vm_file) for as long as it
 * lives.
 *
 * Lifetimes: such a vma holds no region reference (it is the file's): the
 * region's pins stay while its holders do (the owner's handle, shares,
 * opened handles, exported dma-bufs), and the file while the region or any
 * mapping of it does. A NIC registration in the opener pins the pages
 * again (its own FOLL_PIN references, dropped at dereg), independently of
 * the module. The owner's death (its context closes, its mm goes) frees
 * nothing the opener maps or registered; the opener's dereg, munmap and
 * release drop the last references (pinned_bytes back to 0).
 *
 * Other host regions (anonymous memory: another process cannot map
 * anonymous pages as its own) map as PFNs, VM_PFNMAP | VM_IO: CPU access
 * only. Each such vma holds a region reference (open/close), so the pins
 * outlive every mapping of the pages. Their openers register them through
 * a dma-buf export.
 */
static void xfer_vma_open(struct vm_area_struct *vma)
{
	struct xfer_region *r = vma->vm_private_data;

	xfer_region_get(r);
	atomic_inc(&r->nr_maps);
}

static void xfer_vma_close(struct vm_area_struct *vma)
{
	struct xfer_region *r = vma->vm_private_data;

	atomic_dec(&r->nr_maps);
	xfer_region_put(r);
}

static vm_fault_t xfer_vma_fault(struct vm_fault *vmf)
{
	struct xfer_region *r = vmf->vma->vm_private_data;
	unsigned long idx = vmf->pgoff &
		((1UL << (XFER_MMAP_REGION_SHIFT - PAGE_SHIFT)) - 1);

	if (WARN_ON_ONCE(idx >= r->npages))
		return VM_FAULT_SIGBUS;
	return vmf_insert_pfn(vmf->vma, vmf->address,
			      page_to_pfn(r->pages[idx]));
}

static const struct vm_operations_struct xfer_vm_ops = {
	.open = xfer_vma_open,
	.close = xfer_vma_close,
	.fault = xfer_vma_fault,
};

/* @vma->vm_pgoff's low bits are the page index inside the region. */
int xfer_region_mmap(struct xfer_region *r, struct vm_area_struct *vma)
{
	unsigned long idx = vma->vm_pgoff &
		((1UL << (XFER_MMAP_REGION_SHIFT - PAGE_SHIFT)) - 1);

	if (READ_ONCE(r->invalid))
		return -ENODEV;
	if (idx >= r->npages || vma_pages(vma) > r->npages - idx)
		return -EINVAL;

	switch (r->kind) {
	case XFER_REGION_HOST:
		break;
	case XFER_REGION_DMABUF:
		return dma_buf_mmap(r->dmabuf, vma,
				    (r->dmabuf_offset >> PAGE_SHIFT) + idx);
	default:
		return -EOPNOTSUPP;
	}
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;

	if (r->file) {
		int ret;

		/*
		 * Write seals: mmap_region() checks F_SEAL_WRITE (through
		 * i_mmap_writable) on /dev/xfer, not on this file, so refuse
		 * here. It cannot be added while the region pins the pages
		 * (memfd waits for pins, then -EBUSY); F_SEAL_FUTURE_WRITE,
		 * added after the owner's writable mapping, can, and shmem's
		 * mmap also takes VM_MAYWRITE away from a read-only mapping.
		 */
		if ((vma->vm_flags & VM_WRITE) &&
		    (SHMEM_I(file_inode(r->file))->seals &
		     (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
			return -EPERM;
		vma_set_file(vma, r->file);
		vma->vm_pgoff = r->file_pgoff + idx;
		ret = r->file->f_op->mmap(r->file, vma);
		/* No mremap() growth into the rest of the file: that was not shared. */
		if (!ret)
			xfer_vm_flags_set(vma, VM_DONTEXPAND);
		return ret;
	}
	xfer_vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_private_data = r;
	vma->vm_ops = &xfer_vm_ops;
	xfer_vma_open(vma);
	return 0;
}

/* Exported dma-bufs: each holds a region reference until released. */
static struct sg_table *xfer_dmabuf_map(struct dma_buf_attachment *attach,
					enum dma_data_direction dir)
{
	struct xfer_region *r = attach->dmabuf->priv;
	struct sg_table *sgt;
	int ret;

	sgt = kzalloc(sizeof(*sgt), GFP_KERNEL);
	if (!sgt)
		return ERR_PTR(-ENOMEM);
	ret = sg_alloc_table_from_pages(sgt, r->pages, r->npages, 0, r->length,
					GFP_KERNEL);
	if (ret)
		goto err_free;
	ret = dma_map_sgtable(attach->dev, sgt, dir, 0);
	if (ret)
		goto err_free_table;
	return sgt;

err_free_table:
	sg_free_table(sgt);
err_free:
	kfree(sgt);
	return ERR_PTR(ret);
}

static void xfer_dmabuf_unmap(struct dma_buf_attachment *attach,
			      struct sg_table *sgt,
			      enum dma_data_direction dir)
{
	dma_unmap_sgtable(attach->dev, sgt, dir, 0);
	sg_free_table(sgt);
	kfree(sgt);
}

static int xfer_dmabuf_mmap(struct dma_buf *dmabuf, struct vm_area_struct *vma)
{
	return xfer_region_mmap(dmabuf->priv, vma);
}

static void xfer_dmabuf_release(struct dma_buf *dmabuf)
{
	struct xfer_region *r = dmabuf->priv;

	atomic_dec(&r->nr_exports);
	atomic_dec(&xfer_counters.exports);
	xfer_region_put(r);
}

static const struct dma_buf_ops xfer_dmabuf_ops = {
	.map_dma_buf = xfer_dmabuf_map,
	.unmap_dma_buf = xfer_dmabuf_unmap,
	.mmap = xfer_dmabuf_mmap,
	.release = xfer_dmabuf_release,
};

int xfer_region_export(struct xfer_region *r, struct dma_buf **out)
{
	DEFINE_DMA_BUF_EXPORT_INFO(exp_info);
	struct dma_buf *dmabuf;

	/*
	 * A region imported from a whole dma-buf: that dma-buf itself, so an
	 * opener's NIC attaches to the exporter (the GPU's, for device
	 * memory) as the owner's would. A part of a dma-buf is refused: the
	 * fd would reach the bytes around it, which the share does not give.
	 */
	if (r->kind == XFER_REGION_DMABUF) {
		if (r->dmabuf_offset || r->length != r->dmabuf->size)
			return -EOPNOTSUPP;
		get_dma_buf(r->dmabuf);
		*out = r->dmabuf;
		return 0;
	}
	if (r->kind != XFER_REGION_HOST)
		return -EOPNOTSUPP;

	exp_info.ops = &xfer_dmabuf_ops;
	exp_info.size = r->length;
	exp_info.flags = O_RDWR;
	exp_info.priv = r;

	xfer_region_get(r);
	dmabuf = dma_buf_export(&exp_info);
	if (IS_ERR(dmabuf)) {
		xfer_region_put(r);
		return PTR_ERR(dmabuf);
	}
	/* From here the dma-buf's release drops that reference. */
	atomic_inc(&r->nr_exports);
	atomic_inc(&xfer_counters.exports);
	*out = dmabuf;
	return 0;
}
