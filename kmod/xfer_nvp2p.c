// SPDX-License-Identifier: GPL-2.0
/*
 * GPU memory through nvidia-p2p. Built only when Kbuild finds the NVIDIA
 * driver's nv-p2p.h (CONFIG_XFER_NV_P2P); QUERY reports
 * XFER_FEATURE_NV_P2P then. Everywhere else GPU memory comes in as a
 * dma-buf (cuMemGetHandleForAddressRange).
 *
 * The driver may revoke the pages at any time (the CUDA allocation is
 * freed, the context dies): its free callback marks the region invalid, so
 * holders get -ENODEV instead of stale memory, and frees the page table.
 * Whoever takes r->nv_table first (callback or release) frees it.
 */
#include <linux/slab.h>

#include <nv-p2p.h>

#include "xfer_priv.h"

#define XFER_GPU_PAGE_SIZE	(64ULL << 10)

static void xfer_nvp2p_free_cb(void *data)
{
	struct xfer_region *r = data;
	struct nvidia_p2p_page_table *pt;

	WRITE_ONCE(r->invalid, true);
	pt = xchg(&r->nv_table, NULL);
	if (pt)
		nvidia_p2p_free_page_table(pt);
	pr_info_ratelimited("xfer: GPU region %u revoked by the NVIDIA driver\n",
			    r->id);
}

int xfer_region_pin_gpu(u64 addr, u64 length, struct xfer_region **out)
{
	struct nvidia_p2p_page_table *pt;
	struct xfer_region *r;
	int ret;

	if (!length || !IS_ALIGNED(addr, XFER_GPU_PAGE_SIZE) ||
	    !IS_ALIGNED(length, XFER_GPU_PAGE_SIZE) ||
	    length > XFER_REGION_MAX_BYTES || addr + length < addr)
		return -EINVAL;

	r = kzalloc(sizeof(*r), GFP_KERNEL_ACCOUNT);
	if (!r)
		return -ENOMEM;
	xfer_region_init_common(r, XFER_REGION_NVP2P, length);
	r->nv_addr = addr;

	ret = nvidia_p2p_get_pages(0, 0, addr, length, &pt, xfer_nvp2p_free_cb, r);
	if (ret)
		goto err_free;
	/* The callback may run from here on; it only touches the table. */
	WRITE_ONCE(r->nv_table, pt);

	xfer_region_publish(r);
	*out = r;
	return 0;

err_free:
	kfree(r);
	return ret;
}

/*
 * Last reference gone. nvidia_p2p_put_pages() unregisters the callback and
 * waits for one in progress, so @r outlives any callback.
 */
void xfer_nvp2p_release(struct xfer_region *r)
{
	struct nvidia_p2p_page_table *pt = xchg(&r->nv_table, NULL);

	if (pt)
		nvidia_p2p_put_pages(0, 0, r->nv_addr, pt);
}
