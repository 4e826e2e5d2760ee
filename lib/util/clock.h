/* SPDX-License-Identifier: MIT */
/* The one monotonic clock of the library, the tools and the tests. */
#ifndef XFER_UTIL_CLOCK_H
#define XFER_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t xfer_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double xfer_now_s(void)
{
	return (double)xfer_now_ns() * 1e-9;
}

#endif
