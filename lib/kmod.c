/* SPDX-License-Identifier: MIT */
/* Placeholder until the kernel module's library side lands: no module. */
#include <errno.h>
#include "kmod.h"

int xfer_kmod_open(struct xfer_kmod **out) { *out = NULL; return -ENODEV; }
void xfer_kmod_close(struct xfer_kmod *k) { (void)k; }
int xfer_kmod_pin(struct xfer_kmod *k, void *a, size_t l, uint64_t *h) { return -ENODEV; }
int xfer_kmod_release(struct xfer_kmod *k, uint64_t h) { return -ENODEV; }
int xfer_kmod_share(struct xfer_kmod *k, uint64_t h, uint32_t r, uint32_t i, uint64_t *s) { return -ENODEV; }
int xfer_kmod_open_shared(struct xfer_kmod *k, uint64_t s, uint64_t *h, void **a, size_t *l) { return -ENODEV; }
struct xfer_stats_page *xfer_kmod_stats(struct xfer_kmod *k) { return NULL; }
