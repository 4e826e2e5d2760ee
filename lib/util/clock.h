/* SPDX-License-Identifier: MIT */
/* The clocks of the library, the tools and the tests: one of each. */
#ifndef XFER_UTIL_CLOCK_H
#define XFER_UTIL_CLOCK_H

#include <stdint.h>
#include <sys/resource.h>
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

/* CPU time of the whole process (all threads), seconds. */
static inline double xfer_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* User CPU time of the process, seconds: on shared VMs the kernel's share
 * (page faults, steal charged there) swings with the other tenants, the
 * user share does not. */
static inline double xfer_user_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
}

#endif
