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
#include <linux/mm.h>
#include <linux/pid.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/scatterlist.h>
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
 * Whether every pinned page may be mapped into another process as itself
 * (vm_insert_page), which is what lets that process's get_user_pages (and
 * so ibv_reg_mr) take them. Page-cache pages qualify: shmem (MAP_SHARED |
 * MAP_ANONYMOUS, memfd, /dev/shm), tmpfs and ramfs files. Anonymous pages
 * do not: their reverse map is the owner's anon_vma, which dies with the
 * owner while another process's page table would still map them, and
 * vm_insert_page() refuses them for that reason. Neither do hugetlb and
 * ZONE_DEVICE pages, nor typed pages (which vm_insert_page also refuses).
 * Such regions keep PFN maps: usable by the CPU, not by get_user_pages.
 */
static bool xfer_pages_mappable(struct page **pages, unsigned long npages)
{
	unsigned long i;

	for (i = 0; i < npages; i++) {
		struct page *p = pages[i];

		if (PageAnon(p) || PageHuge(p) || page_has_type(p) ||
		    is_zone_device_page(p))
			return false;
	}
	return true;
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

	r->page_maps = xfer_pages_mappable(r->pages, r->npages);
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
 * Mappings of host regions. Each vma holds a region reference (open/close),
 * so the module's pins outlive every mapping of the pages.
 *
 * Regions whose pages are all page-cache pages (r->page_maps) map the
 * pages themselves: VM_MIXEDMAP with normal (not special) ptes made by
 * vm_insert_page(s), each pte holding a page reference and a mapcount of
 * its own. get_user_pages follows such ptes (vm_normal_page() returns the
 * page), so the opener can register the mapping with a NIC (ibv_reg_mr:
 * pin_user_pages(FOLL_LONGTERM | FOLL_WRITE) in ib_umem_get), read into it
 * with O_DIRECT, splice it, or process_vm_readv it. FOLL_LONGTERM passes
 * the vma checks of mm/gup.c on the kernels here:
 *  - check_vma_flags(): neither VM_IO nor VM_PFNMAP is set, the vma is not
 *    DAX or secretmem;
 *  - 6.5+: writable_file_mapping_allowed() -> vma_needs_dirty_tracking():
 *    the vma is VM_SHARED and writable, but our vm_ops have neither
 *    page_mkwrite nor pfn_mkwrite, and vma_fs_can_writeback() is false:
 *    the file is /dev/xfer (or our dma-buf), whose mapping's backing device
 *    (devtmpfs, the dma-buf pseudo fs) has no BDI_CAP_WRITEBACK. Nothing
 *    is written back from these pages through this mapping, so a long-term
 *    writable pin does not race a filesystem's writeback;
 *  - gup-fast's folio check (6.12: gup_fast_folio_allowed()) lets shmem
 *    folios through; for other page-cache folios gup falls back to the
 *    slow path, which applies the vma checks above;
 *  - check_and_migrate_movable_pages(): the pages were pinned long-term by
 *    the owner's XFER_IOC_PIN already, so none lies in ZONE_MOVABLE or CMA.
 *
 * Lifetimes: a NIC registration in the opener pins the pages again (its
 * own FOLL_PIN references) and drops them on dereg, independently of the
 * module. The module's pins go only when the last holder of the region
 * goes: the owner's handle, shares, opened handles, exported dma-bufs and
 * every vma (close runs at munmap and at the opener's exit). So the
 * owner's death (its context closes) never frees pages another process
 * maps or registered; the opener's dereg, munmap and close release the
 * last reference and unpin (pinned_bytes back to 0).
 *
 * Other host regions (anonymous memory: its pages cannot be mapped into
 * another mm, see xfer_pages_mappable()) keep PFN maps: VM_PFNMAP | VM_IO,
 * CPU access only; their openers register them through a dma-buf export.
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
	struct vm_area_struct *vma = vmf->vma;
	struct xfer_region *r = vma->vm_private_data;
	unsigned long idx = vmf->pgoff &
		((1UL << (XFER_MMAP_REGION_SHIFT - PAGE_SHIFT)) - 1);
	int ret;

	if (WARN_ON_ONCE(idx >= r->npages))
		return VM_FAULT_SIGBUS;
	if (!(vma->vm_flags & VM_MIXEDMAP))
		return vmf_insert_pfn(vma, vmf->address,
				      page_to_pfn(r->pages[idx]));
	/*
	 * Page maps are made whole at mmap; a fault means the pte was zapped
	 * since (madvise(MADV_DONTNEED)). -EBUSY: another thread put it back.
	 */
	ret = vm_insert_page(vma, vmf->address, r->pages[idx]);
	if (ret && ret != -EBUSY)
		return vmf_error(ret);
	return VM_FAULT_NOPAGE;
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

	if (r->page_maps) {
		unsigned long num = vma_pages(vma);
		int ret;

		xfer_vm_flags_set(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP);
		/*
		 * All ptes now, so that gup-fast finds them. On failure the
		 * caller unmaps what was inserted; no reference is taken yet
		 * (mmap's error path does not call ->close).
		 */
		ret = vm_insert_pages(vma, vma->vm_start, r->pages + idx, &num);
		if (ret)
			return ret;
	} else {
		xfer_vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND |
				  VM_DONTDUMP);
	}
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
