/* SPDX-License-Identifier: MIT */
/* Minimal TAP output for the weight-sync tests. */
#ifndef TEST_WS_TAP_H
#define TEST_WS_TAP_H

#include <stdio.h>
#include <time.h>
#include <sys/resource.h>

static int tap_n, tap_failed;

#define OK(cond, ...) do { \
	int ok_ = !!(cond); \
	printf("%sok %d - ", ok_ ? "" : "not ", ++tap_n); \
	printf(__VA_ARGS__); \
	printf("\n"); \
	if (!ok_) { \
		tap_failed++; \
		printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	} \
	fflush(stdout); \
} while (0)

#define SKIP(why, ...) do { \
	printf("ok %d - ", ++tap_n); \
	printf(__VA_ARGS__); \
	printf(" # SKIP %s\n", why); \
} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

static inline double tap_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* User CPU time only: on the shared 2-core VMs the kernel's page-fault time
 * swings with the other tenants (steal is charged there), the user part does not. */
static inline double tap_user_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6;
}

#if defined(__SANITIZE_ADDRESS__)
#define TAP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAP_SANITIZED 1
#endif
#endif
#ifndef TAP_SANITIZED
#define TAP_SANITIZED 0
#endif

#endif
