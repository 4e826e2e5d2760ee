/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the module's guest test programs (xfer_test, lib_test,
 * engine_test): memory patterns, sysfs, debugfs and /proc/vmstat readers,
 * and their glue to the kernel's kselftest_harness.h (through
 * tests/harness/harness.h): the leak check every fixture's teardown ends
 * with (kt_expect_no_leak), a multi-line log (kt_log_block) and a main()
 * that takes a test-name filter (KT_MAIN).
 */
#ifndef XFER_TEST_UTIL_H
#define XFER_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

#define PG 4096UL

static inline void *anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0, len);
	return p;
}

static inline void fill(void *p, size_t len, uint32_t seed)
{
	uint32_t *w = p;

	for (size_t i = 0; i < len / 4; i++)
		w[i] = seed + (uint32_t)i * 2654435761u;
}

static inline int check(const void *p, size_t len, uint32_t seed)
{
	const uint32_t *w = p;

	for (size_t i = 0; i < len / 4; i++)
		if (w[i] != seed + (uint32_t)i * 2654435761u)
			return 0;
	return 1;
}

static inline long long read_ll(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return atoll(buf);
}

static inline long long sysfs(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/class/misc/xfer/%s", name);
	return read_ll(path);
}

static inline int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n < 0 ? -errno : 0;
}

static inline char *slurp(const char *path)
{
	static char buf[65536];
	int fd = open(path, O_RDONLY);
	size_t len = 0;
	ssize_t n;

	buf[0] = 0;
	if (fd < 0)
		return buf;
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += n;
	buf[len] = 0;
	close(fd);
	return buf;
}

/* Exact values: fold the per-cpu counter deltas first (root only). */
static inline long long vmstat(const char *key)
{
	char *s, *p;
	size_t kl = strlen(key);

	write_str("/proc/sys/vm/stat_refresh", "1");
	s = slurp("/proc/vmstat");

	for (p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, key, kl) && p[kl] == ' ')
			return atoll(p + kl + 1);
	return -1;
}

/* Everything the module holds is gone. */
static inline int module_idle(void)
{
	return sysfs("regions") == 0 && sysfs("contexts") == 0 && sysfs("shares") == 0 &&
	       sysfs("exports") == 0 && sysfs("pinned_bytes") == 0 &&
	       sysfs("imported_bytes") == 0;
}

static inline int pins_balanced(void)
{
	return vmstat("nr_foll_pin_acquired") == vmstat("nr_foll_pin_released");
}

/* Diagnostics of several lines: each one a TAP comment, where TH_LOG writes. */
static inline void kt_log_block(const char *title, const char *text)
{
	fprintf(TH_LOG_STREAM, "# %s:\n", title);
	while (*text) {
		const char *nl = strchr(text, '\n');
		int n = nl ? (int)(nl - text) : (int)strlen(text);

		fprintf(TH_LOG_STREAM, "#   %.*s\n", n, text);
		text += n + (nl ? 1 : 0);
	}
	fflush(TH_LOG_STREAM);
}

/*
 * The end of every fixture's FIXTURE_TEARDOWN: once the test and its
 * teardown have closed and unmapped what they hold, the module holds
 * nothing (no region, context, share, export, pinned or imported byte) and,
 * with @pins, every page pin taken was released. It runs in the test's own
 * process, so a test must give back what it took (process exit is the same
 * release path: close and munmap). A leak fails the test, a skipped one too
 * (kselftest would otherwise report the SKIP). Without /dev/xfer (the rmmod
 * test's reload failed, or no module) there is nothing to check.
 */
static inline void kt_expect_no_leak(struct __test_metadata *_metadata, bool pins)
{
	bool clean;

	if (access("/dev/xfer", F_OK))
		return;
	clean = module_idle() && (!pins || pins_balanced());
	if (pins) {
		EXPECT_TRUE(clean)
			TH_LOG("left state: regions %lld contexts %lld shares %lld exports %lld pinned %lld imported %lld pins %lld/%lld",
			       sysfs("regions"), sysfs("contexts"), sysfs("shares"),
			       sysfs("exports"), sysfs("pinned_bytes"), sysfs("imported_bytes"),
			       vmstat("nr_foll_pin_acquired"), vmstat("nr_foll_pin_released"));
	} else {
		EXPECT_TRUE(clean) TH_LOG("left module state behind");
	}
	if (!clean)
		_metadata->skip = 0;
}

/* What a test left out by the name filter runs instead of its body. */
static inline void kt_not_selected(struct __test_metadata *_metadata,
				   struct __fixture_variant_metadata *variant __attribute__((unused)))
{
	SKIP(return, "%s: not selected", _metadata->name);
}

/*
 * "prog [FILTER]": run only the tests whose "fixture.test" name has FILTER;
 * the others report "ok N # SKIP <test>: not selected". Arguments that start
 * with '-' go to the harness (a newer kernel's harness has -t, -f, -l ...).
 */
static inline int kt_main(int argc, char **argv, int (*harness_main)(int, char **))
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && argv[1][0] != '-') {
		for (struct __fixture_metadata *f = __fixture_list; f; f = f->next)
			for (struct __test_metadata *t = f->tests; t; t = t->next) {
				char name[256];

				snprintf(name, sizeof(name), "%s.%s", f->name, t->name);
				if (!strstr(name, argv[1]))
					t->fn = kt_not_selected;
			}
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	return harness_main(argc, argv);
}

/*
 * The end of each test program: the harness's own main (TEST_HARNESS_MAIN,
 * whatever it holds in this kernel's version), renamed, under kt_main:
 *
 *	#define main kt_harness_main
 *	TEST_HARNESS_MAIN
 *	#undef main
 *	KT_MAIN
 */
int kt_harness_main(int argc, char **argv);
#define KT_MAIN \
	int main(int argc, char **argv) \
	{ \
		return kt_main(argc, argv, kt_harness_main); \
	}

#endif
