// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of lib/kmod/kmod.c (the library's side of /dev/xfer) against the
 * real module, run inside the qemu guest next to xfer_test. Fixtures: nodev
 * (the library without a device), lib (an open xfer_kmod and a buffer); each
 * teardown ends with the leak check (util.h: kt_expect_no_leak).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>

#include <linux/xfer.h>

#include "kmod.h"
#include "util.h"

/* The library where the device is missing: no fixture state. */
FIXTURE(nodev) {
	int unused;
};

FIXTURE_SETUP(nodev)
{
}

FIXTURE_TEARDOWN(nodev)
{
	kt_expect_no_leak(_metadata, false);
}

TEST_F(nodev, lib_returns_enodev)
{
	struct xfer_kmod *k = (void *)1;
	uint64_t h, sid;
	void *addr;
	size_t len;
	int fd;

	setenv("XFER_KMOD_DEV", "/dev/no-such-xfer", 1);
	EXPECT_EQ(xfer_kmod_open(&k), -ENODEV);
	EXPECT_TRUE(k == NULL);
	EXPECT_EQ(xfer_kmod_pin(NULL, &h, PG, &h), -ENODEV);
	EXPECT_EQ(xfer_kmod_release(NULL, 1), -ENODEV);
	EXPECT_EQ(xfer_kmod_share(NULL, 1, 0, 0, &sid), -ENODEV);
	EXPECT_EQ(xfer_kmod_open_shared(NULL, 1, &h, &addr, &len, NULL, NULL), -ENODEV);
	EXPECT_EQ(xfer_kmod_export_dmabuf(NULL, 1, &fd), -ENODEV);
	EXPECT_TRUE(xfer_kmod_stats(NULL) == NULL);
	xfer_kmod_close(NULL);
}

FIXTURE(lib) {
	struct xfer_kmod *k;
	uint8_t *buf;
};

FIXTURE_SETUP(lib)
{
	int ret = xfer_kmod_open(&self->k);

	if (ret == -ENODEV)
		XT_SETUP_SKIP("/dev/xfer missing: module not loaded");
	ASSERT_EQ(ret, 0);
	self->buf = anon(16 * PG);
	ASSERT_TRUE(self->buf != NULL);
}

FIXTURE_TEARDOWN(lib)
{
	xfer_kmod_close(self->k);
	EXPECT_EQ(sysfs("contexts"), 0);
	kt_expect_no_leak(_metadata, false);
}

TEST_F(lib, pin_rounds_out_to_pages_and_release)
{
	uint64_t h;

	ASSERT_EQ(xfer_kmod_pin(self->k, self->buf + 100, 5000, &h), 0);
	EXPECT_EQ(sysfs("pinned_bytes"), 2 * PG);
	EXPECT_EQ(xfer_kmod_release(self->k, h), 0);
	EXPECT_EQ(sysfs("pinned_bytes"), 0);
	EXPECT_EQ(xfer_kmod_release(self->k, h), -ENOENT);
	EXPECT_EQ(xfer_kmod_pin(self->k, self->buf, 0, &h), -EINVAL);
	EXPECT_EQ(xfer_kmod_pin(self->k, (void *)(uintptr_t)-PG, 2 * PG, &h), -ERANGE);
}

TEST_F(lib, share_opened_by_other_process_sees_same_pages)
{
	uint64_t h, sid;
	pid_t pid;
	int status;

	fill(self->buf, 4 * PG, 17);
	ASSERT_EQ(xfer_kmod_pin(self->k, self->buf, 4 * PG, &h), 0);
	ASSERT_EQ(xfer_kmod_share(self->k, h, XFER_SHARE_OWNER, 0, &sid), 0);
	pid = fork();
	if (pid == 0) {
		struct xfer_kmod *k2;
		uint64_t h2;
		void *addr;
		size_t len;

		uint32_t kind = 0, map_flags = ~0u;

		if (xfer_kmod_open(&k2) ||
		    xfer_kmod_open_shared(k2, sid, &h2, &addr, &len, &kind, &map_flags))
			_exit(1);
		/* anonymous memory: a PFN map, not pages */
		if (kind != XFER_KIND_HOST || map_flags != 0)
			_exit(4);
		if (len != 4 * PG || !check(addr, len, 17))
			_exit(2);
		fill(addr, len, 18);
		munmap(addr, len);
		if (xfer_kmod_release(k2, h2))
			_exit(3);
		xfer_kmod_close(k2);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_TRUE(check(self->buf, 4 * PG, 18));
	EXPECT_EQ(xfer_kmod_release(self->k, h), 0);
}

TEST_F(lib, stats_page_published_to_debugfs)
{
	struct xfer_ctx_stats *st = xfer_kmod_stats(self->k);
	char *s, *l, line[64], path[96];

	ASSERT_TRUE(st != NULL);
	EXPECT_EQ(st->version, XFER_CTX_STATS_VERSION);
	st->num_rails = 1;
	st->rail[0].ops_posted = 42;
	st->rail[0].bytes_completed = 4096;
	st->last_error = -5;
	s = slurp("/sys/kernel/debug/xfer/contexts");
	snprintf(line, sizeof(line), "\t%d\tlib_test\t", getpid());
	ASSERT_TRUE(strstr(s, line) != NULL);
	l = strstr(s, line);
	while (l > s && l[-1] != '\n')
		l--;
	snprintf(path, sizeof(path), "/sys/kernel/debug/xfer/ctx-%d/stats", atoi(l));
	s = slurp(path);
	EXPECT_TRUE(strstr(s, "num_rails 1\n") != NULL);
	EXPECT_TRUE(strstr(s, "last_error -5\n") != NULL);
	EXPECT_TRUE(strstr(s, "\n0\t0\t4096\t42\t0\t0\t0\n") != NULL);
}

TEST_F(lib, export_and_import_dmabuf)
{
	uint64_t h, h2;
	int fd;

	ASSERT_EQ(xfer_kmod_pin(self->k, self->buf, 4 * PG, &h), 0);
	ASSERT_EQ(xfer_kmod_export_dmabuf(self->k, h, &fd), 0);
	ASSERT_EQ(xfer_kmod_import_dmabuf(self->k, fd, 0, 4 * PG, &h2), 0);
	close(fd);
	EXPECT_EQ(sysfs("imported_bytes"), 4 * PG);
	EXPECT_EQ(xfer_kmod_release(self->k, h2), 0);
	EXPECT_EQ(xfer_kmod_release(self->k, h), 0);
}

#define main kt_harness_main
TEST_HARNESS_MAIN
#undef main
KT_MAIN
