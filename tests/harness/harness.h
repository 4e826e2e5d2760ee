/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one test harness of xfer: the kernel's own kselftest_harness.h (TEST,
 * FIXTURE, FIXTURE_VARIANT, TEST_F, TEST_F_TIMEOUT, ASSERT_* / EXPECT_*,
 * TH_LOG, SKIP), extracted from Debian's linux-source package at dependency
 * time (scripts/deps.sh kselftest), plus what xfer's tests share (xt.h:
 * engines on loopback providers, peer processes, byte patterns).
 *
 * Every test runs in a child process of its own, under a timeout
 * (TEST_TIMEOUT_DEFAULT, 30 s, or TEST_F_TIMEOUT), and prints one TAP line:
 * "ok N fixture.variant.test", "not ok N ...", or "ok N # SKIP reason".
 * tests/run.sh counts those lines.
 *
 * Tests over the network paths are a fixture with the transport variants
 * (provider x rails) below; a variant whose provider is not tested here
 * (XFER_TEST_PROVIDERS) or does not open skips and says why.
 */
#ifndef XFER_TEST_HARNESS_H
#define XFER_TEST_HARNESS_H

#include <setjmp.h>

#include "kselftest_harness.h"
#include "xt.h"

/*
 * Skip from FIXTURE_SETUP. In the harness of Linux 6.1 (Debian 12's) a SKIP
 * there still runs the test body; jumping back to the harness's setjmp
 * leaves the body and the teardown out, as later kernels do by themselves.
 */
#define XT_SETUP_SKIP(fmt, ...) \
	SKIP(longjmp(_metadata->env, 1), "%s: " fmt, _metadata->name, ##__VA_ARGS__)

/* A plain test with its own timeout (6.1 has TEST_F_TIMEOUT only). */
#define XT_TEST_TIMEOUT(name, seconds) \
	FIXTURE(name) { char unused; }; \
	FIXTURE_SETUP(name) {} \
	FIXTURE_TEARDOWN(name) {} \
	TEST_F_TIMEOUT(name, name, seconds)

/* The fields of a transport variant: FIXTURE_VARIANT(f) { XT_TRANSPORT; }; */
#define XT_TRANSPORT \
	const char *provider; \
	uint32_t rails

/* Every transport a test over the engine runs on. Which of them run is
 * XFER_TEST_PROVIDERS' choice (default shm, tcp;ofi_rxm, local; the verbs
 * guest sets verbs); the others skip. libfabric is initialised once in the
 * harness's process, before it forks the cases (xt_warm_fabric). */
#define XT_TRANSPORT_VARIANTS(f) \
	static void __attribute__((constructor)) xt_warm_##f(void) { xt_warm_fabric(); } \
	FIXTURE_VARIANT_ADD(f, shm_1rail) { .provider = "shm", .rails = 1 }; \
	FIXTURE_VARIANT_ADD(f, shm_2rails) { .provider = "shm", .rails = 2 }; \
	FIXTURE_VARIANT_ADD(f, tcp_1rail) { .provider = "tcp;ofi_rxm", .rails = 1 }; \
	FIXTURE_VARIANT_ADD(f, tcp_2rails) { .provider = "tcp;ofi_rxm", .rails = 2 }; \
	FIXTURE_VARIANT_ADD(f, local_1rail) { .provider = "local", .rails = 1 }; \
	FIXTURE_VARIANT_ADD(f, local_2rails) { .provider = "local", .rails = 2 }; \
	FIXTURE_VARIANT_ADD(f, verbs_1rail) { .provider = "verbs", .rails = 1 }; \
	FIXTURE_VARIANT_ADD(f, verbs_2rails) { .provider = "verbs", .rails = 2 }

/* In FIXTURE_SETUP of a transport fixture: skip unless the variant's
 * provider is one tested here and an engine opens on it. */
#define XT_REQUIRE_TRANSPORT() do { \
	const char *xt_why_ = xt_transport_skip(variant->provider); \
	if (xt_why_) \
		XT_SETUP_SKIP("%s %u rail%s: %s", variant->provider, variant->rails, \
			      variant->rails > 1 ? "s" : "", xt_why_); \
} while (0)

/* Checks that report the call that failed and the library's reason. */
#define XT_ASSERT_OK(expr) do { \
	int xt_r_ = (expr); \
	ASSERT_EQ(0, xt_r_) TH_LOG("%s: %s", #expr, xfer_strerror(xt_r_)); \
} while (0)
#define XT_EXPECT_OK(expr) do { \
	int xt_r_ = (expr); \
	EXPECT_EQ(0, xt_r_) TH_LOG("%s: %s", #expr, xfer_strerror(xt_r_)); \
} while (0)

/* In FIXTURE_SETUP (with xt_target.h): open xt_link l, asserting that every
 * step succeeds; FIXTURE_TEARDOWN EXPECTs xt_link_close(&l) to be 0. */
#define XT_LINK_OPEN(l, ta, timeout_ms, buf, len) do { \
	const char *xt_step_ = "?"; \
	int xt_r_ = xt_link_open((l), (ta), (timeout_ms), (buf), (len), &xt_step_); \
	ASSERT_EQ(0, xt_r_) TH_LOG("%s: %s", xt_step_, xfer_strerror(xt_r_)); \
} while (0)

#endif
