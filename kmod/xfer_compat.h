/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels xfer.ko builds against (Debian 6.1 and
 * 6.12, and newer): every version test lives here, none in function bodies.
 */
#ifndef _XFER_COMPAT_H
#define _XFER_COMPAT_H

#include <linux/mm.h>
#include <linux/module.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
static inline void xfer_vm_flags_set(struct vm_area_struct *vma,
				     vm_flags_t flags)
{
	vma->vm_flags |= flags;
}
#else
#define xfer_vm_flags_set(vma, flags) vm_flags_set(vma, flags)
#endif

/* The namespace became a string literal in 6.13. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
#define XFER_IMPORT_NS_DMA_BUF() MODULE_IMPORT_NS("DMA_BUF")
#else
#define XFER_IMPORT_NS_DMA_BUF() MODULE_IMPORT_NS(DMA_BUF)
#endif

#endif /* _XFER_COMPAT_H */
