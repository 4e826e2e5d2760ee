/* SPDX-License-Identifier: MIT */
/* Small shared helpers: time, futexes, staging memory, error strings,
 * backend selection. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

uint64_t xfer_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void xfer_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns)
{
	struct timespec ts, *tp = NULL;

	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tp = &ts;
	}
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, tp, NULL, 0);
}

void xfer_futex_wake(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

#define HUGE_2M (2ull << 20)

/* Huge pages: fewer faults, and fewer pages for a provider's CMA copies to
 * pin (1.5x their rate on the project's VM). */
XFER_EXPORT void *xfer_host_alloc(size_t bytes)
{
	uint64_t sz = bytes ? (bytes + HUGE_2M - 1) & ~(HUGE_2M - 1) : HUGE_2M;
	void *p = aligned_alloc(HUGE_2M, sz);

	if (p) {
		madvise(p, sz, MADV_HUGEPAGE);   /* advice: ignored where unsupported */
		memset(p, 0, sz);
	}
	return p;
}

XFER_EXPORT const char *xfer_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case -ERANGE: return "range outside the registered region";
	case -ETIMEDOUT: return "peer did not answer within the timeout";
	case -ECANCELED: return "engine destroyed with the operation in flight";
	case -ENOTCONN: return "peer is down or was never added";
	case -EPROTO: return "peer address is for another provider";
	case -ENODEV: return "no such device (kernel module not loaded?)";
	case -EOPNOTSUPP: return "not supported by this backend or provider";
	default: return strerror(err < 0 ? -err : err);
	}
}

const struct xfer_backend_ops *xfer_backend_for(const char *provider)
{
	if (provider && strcmp(provider, "verbs") == 0) {
#ifdef XFER_HAVE_VERBS
		return &xfer_verbs_ops;
#else
		return NULL;
#endif
	}
	if (provider && strcmp(provider, "local") == 0)
		return &xfer_local_ops;
	return &xfer_fabric_ops;
}
