// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of /dev/xfer (kmod/), run inside a qemu guest as root by
 * tests/kmod/run.sh (or as the kselftest target "xfer": tests/kmod/Makefile).
 * XFER_KO names the module file for the rmmod test. Fixtures: dev (an open
 * /dev/xfer and a buffer), xfer (none: tests that manage their own
 * processes, limits and the module itself; rmmod stays the last test). Every
 * teardown ends with the leak check (util.h: kt_expect_no_leak).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/udmabuf.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>

#include <linux/xfer.h>

#include "util.h"

/* DRM ABI for vgem dumb buffers (stable uapi; libdrm headers not needed). */
struct t_drm_mode_create_dumb {
	uint32_t height, width, bpp, flags, handle, pitch;
	uint64_t size;
};
struct t_drm_prime_handle {
	uint32_t handle, flags;
	int32_t fd;
};
#define T_DRM_IOCTL_MODE_CREATE_DUMB _IOWR('d', 0xB2, struct t_drm_mode_create_dumb)
#define T_DRM_IOCTL_PRIME_HANDLE_TO_FD _IOWR('d', 0x2D, struct t_drm_prime_handle)

static int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

static int xopen(void)
{
	return open("/dev/xfer", O_RDWR | O_CLOEXEC);
}

static int pin(int fd, void *addr, uint64_t len, uint64_t *handle, uint64_t *off)
{
	struct xfer_pin p = { .size = sizeof(p), .addr = (uintptr_t)addr, .length = len };
	int ret = xioctl(fd, XFER_IOC_PIN, &p);

	if (!ret && handle)
		*handle = p.handle;
	if (!ret && off)
		*off = p.mmap_offset;
	return ret;
}

static int release(int fd, uint64_t handle)
{
	struct xfer_release r = { .size = sizeof(r), .handle = handle };

	return xioctl(fd, XFER_IOC_RELEASE, &r);
}

static int share(int fd, uint64_t handle, uint32_t rule, uint32_t id, uint64_t *sid)
{
	struct xfer_share s = { .size = sizeof(s), .handle = handle, .rule = rule, .id = id };
	int ret = xioctl(fd, XFER_IOC_SHARE, &s);

	if (!ret && sid)
		*sid = s.share_id;
	return ret;
}

static int open_shared(int fd, uint64_t sid, struct xfer_open_shared *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->share_id = sid;
	return xioctl(fd, XFER_IOC_OPEN_SHARED, o);
}

static int export_dmabuf(int fd, uint64_t handle, int *dfd)
{
	struct xfer_export_dmabuf e = { .size = sizeof(e), .handle = handle };
	int ret = xioctl(fd, XFER_IOC_EXPORT_DMABUF, &e);

	if (!ret)
		*dfd = e.fd;
	return ret;
}

static int import_dmabuf(int fd, int dfd, uint64_t off, uint64_t len, uint64_t *handle,
			 uint64_t *moff)
{
	struct xfer_import_dmabuf i = { .size = sizeof(i), .fd = dfd, .offset = off,
					.length = len };
	int ret = xioctl(fd, XFER_IOC_IMPORT_DMABUF, &i);

	if (!ret && handle)
		*handle = i.handle;
	if (!ret && moff)
		*moff = i.mmap_offset;
	return ret;
}

/* Run @fn in a child, return its exit status (or 128 + signal). */
static int in_child(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn(arg));
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int drop_to(uid_t uid, gid_t gid, int ngroups, const gid_t *groups)
{
	if (setgroups(ngroups, groups) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid))
		return -errno;
	return 0;
}

FIXTURE(dev) {
	int fd;
	uint8_t *buf;
	size_t len;
};

FIXTURE_SETUP(dev)
{
	self->fd = xopen();
	if (self->fd < 0)
		XT_SETUP_SKIP("/dev/xfer: %s (module not loaded)", strerror(errno));
	self->len = 16 * PG;
	self->buf = anon(self->len);
	ASSERT_TRUE(self->buf != NULL);
}

FIXTURE_TEARDOWN(dev)
{
	close(self->fd);
	munmap(self->buf, self->len);
	kt_expect_no_leak(_metadata, true);
}

TEST_F(dev, query_reports_abi_features_and_usage)
{
	struct xfer_query q = { .size = sizeof(q) };
	uint64_t h;

	ASSERT_EQ(xioctl(self->fd, XFER_IOC_QUERY, &q), 0);
	EXPECT_EQ(q.abi_version, XFER_ABI_VERSION);
	EXPECT_TRUE(q.features & XFER_FEATURE_DMABUF_IMPORT);
	EXPECT_TRUE(q.features & XFER_FEATURE_DMABUF_EXPORT);
	EXPECT_EQ(q.page_size, PG);
	EXPECT_EQ(q.pinned_bytes, 0);
	EXPECT_EQ(q.ctx_regions, 0);
	EXPECT_TRUE(q.max_pinned_bytes > 0);
	if (!(q.features & XFER_FEATURE_NV_P2P)) {
		struct xfer_pin_gpu g = { .size = sizeof(g), .addr = 1 << 16, .length = 1 << 16 };

		EXPECT_EQ(xioctl(self->fd, XFER_IOC_PIN_GPU, &g), -EOPNOTSUPP);
	}
	ASSERT_EQ(pin(self->fd, self->buf, self->len, &h, NULL), 0);
	ASSERT_EQ(xioctl(self->fd, XFER_IOC_QUERY, &q), 0);
	EXPECT_EQ(q.pinned_bytes, self->len);
	EXPECT_EQ(q.ctx_pinned_bytes, self->len);
	EXPECT_EQ(q.ctx_regions, 1);
	EXPECT_EQ(sysfs("pinned_bytes"), self->len);
	EXPECT_EQ(sysfs("regions"), 1);
	EXPECT_EQ(sysfs("contexts"), 1);
}

TEST_F(dev, pin_mmap_write_read_release)
{
	long long acq = vmstat("nr_foll_pin_acquired");
	uint64_t h, off;
	uint8_t *m;

	fill(self->buf, self->len, 1);
	ASSERT_EQ(pin(self->fd, self->buf, self->len, &h, &off), 0);
	EXPECT_GE(vmstat("nr_foll_pin_acquired") - acq, 16);
	m = mmap(NULL, self->len, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, off);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_TRUE(check(m, self->len, 1));
	fill(m, self->len, 2);
	EXPECT_TRUE(check(self->buf, self->len, 2));
	/* A partial mapping at a page offset sees the same page. */
	uint8_t *m2 = mmap(NULL, PG, PROT_READ, MAP_SHARED, self->fd, off + 3 * PG);
	ASSERT_NE(m2, MAP_FAILED);
	EXPECT_EQ(memcmp(m2, self->buf + 3 * PG, PG), 0);
	munmap(m2, PG);
	ASSERT_EQ(release(self->fd, h), 0);
	/* The mapping holds the region until it goes away. */
	EXPECT_EQ(sysfs("regions"), 1);
	EXPECT_TRUE(check(m, self->len, 2));
	munmap(m, self->len);
	EXPECT_EQ(sysfs("regions"), 0);
	EXPECT_EQ(sysfs("pinned_bytes"), 0);
	EXPECT_TRUE(pins_balanced());
}

TEST_F(dev, release_unknown_and_double_release_enoent)
{
	uint64_t h;

	EXPECT_EQ(release(self->fd, 0), -ENOENT);
	EXPECT_EQ(release(self->fd, 12345), -ENOENT);
	EXPECT_EQ(release(self->fd, ~0ULL), -ENOENT);
	ASSERT_EQ(pin(self->fd, self->buf, PG, &h, NULL), 0);
	EXPECT_EQ(release(self->fd, h), 0);
	EXPECT_EQ(release(self->fd, h), -ENOENT);
}

TEST_F(dev, close_releases_everything)
{
	uint64_t h1, h2, sid;
	int dfd;

	ASSERT_EQ(pin(self->fd, self->buf, 4 * PG, &h1, NULL), 0);
	ASSERT_EQ(pin(self->fd, self->buf + 4 * PG, 4 * PG, &h2, NULL), 0);
	ASSERT_EQ(share(self->fd, h1, XFER_SHARE_OWNER, 0, &sid), 0);
	ASSERT_EQ(export_dmabuf(self->fd, h2, &dfd), 0);
	close(dfd);
	EXPECT_EQ(sysfs("shares"), 1);
	close(self->fd);
	self->fd = -1;
	EXPECT_TRUE(module_idle());
}

TEST_F(dev, pin_of_xfer_mapping_refused)
{
	uint64_t h, off;
	void *m;

	ASSERT_EQ(pin(self->fd, self->buf, 4 * PG, &h, &off), 0);
	m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, off);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_EQ(pin(self->fd, m, 4 * PG, NULL, NULL), -EFAULT);
	munmap(m, 4 * PG);
	EXPECT_EQ(sysfs("regions"), 1);
}

/* Argument-size handling, for every command. */
static const struct {
	const char *name;
	unsigned long cmd;
	uint32_t size;
	uint32_t floor;   /* the first version's size, where it grew since (else size) */
} cmds[] = {
	{ "query", XFER_IOC_QUERY, sizeof(struct xfer_query), 0 },
	{ "pin", XFER_IOC_PIN, sizeof(struct xfer_pin), 0 },
	{ "import_dmabuf", XFER_IOC_IMPORT_DMABUF, sizeof(struct xfer_import_dmabuf), 0 },
	{ "share", XFER_IOC_SHARE, sizeof(struct xfer_share), 0 },
	{ "open_shared", XFER_IOC_OPEN_SHARED, sizeof(struct xfer_open_shared),
	  offsetof(struct xfer_open_shared, kind) },
	{ "export_dmabuf", XFER_IOC_EXPORT_DMABUF, sizeof(struct xfer_export_dmabuf), 0 },
	{ "release", XFER_IOC_RELEASE, sizeof(struct xfer_release), 0 },
	{ "pin_gpu", XFER_IOC_PIN_GPU, sizeof(struct xfer_pin_gpu), 0 },
};

TEST_F(dev, every_command_refuses_bad_sizes)
{
	static uint64_t buf[2048];
	uint32_t *size = (uint32_t *)buf;

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		TH_LOG("command %s", cmds[i].name);
		memset(buf, 0, sizeof(buf));
		*size = 0;
		EXPECT_EQ(xioctl(self->fd, cmds[i].cmd, buf), -EINVAL);
		*size = 4;
		EXPECT_EQ(xioctl(self->fd, cmds[i].cmd, buf), -EINVAL);
		*size = (cmds[i].floor ? cmds[i].floor : cmds[i].size) - 1;
		EXPECT_EQ(xioctl(self->fd, cmds[i].cmd, buf), -EINVAL);
		*size = cmds[i].size + 8;
		((uint8_t *)buf)[cmds[i].size + 3] = 0x5a;
		EXPECT_EQ(xioctl(self->fd, cmds[i].cmd, buf), -E2BIG);
		memset(buf, 0, sizeof(buf));
		*size = 8192;
		EXPECT_EQ(xioctl(self->fd, cmds[i].cmd, buf), -E2BIG);
		*size = 0xffffffffu;
		EXPECT_EQ(xioctl(self->fd, cmds[i].cmd, buf), -E2BIG);
		EXPECT_EQ(xioctl(self->fd, cmds[i].cmd, NULL), -EFAULT);
		EXPECT_EQ(xioctl(self->fd, cmds[i].cmd, (void *)16), -EFAULT);
	}
	EXPECT_TRUE(module_idle() || sysfs("contexts") == 1);
	EXPECT_EQ(sysfs("regions"), 0);
}

TEST_F(dev, longer_struct_with_zero_tail_accepted)
{
	struct { struct xfer_query q; uint64_t tail[4]; } qx = {
		.q.size = sizeof(qx) };
	struct { struct xfer_pin p; uint64_t tail[2]; } px = {
		.p.size = sizeof(px), .p.addr = (uintptr_t)self->buf, .p.length = PG };

	ASSERT_EQ(xioctl(self->fd, XFER_IOC_QUERY, &qx), 0);
	EXPECT_EQ(qx.q.abi_version, XFER_ABI_VERSION);
	EXPECT_EQ(qx.tail[0], 0);
	ASSERT_EQ(xioctl(self->fd, XFER_IOC_PIN, &px), 0);
	EXPECT_NE(px.p.handle, 0);
	EXPECT_EQ(release(self->fd, px.p.handle), 0);
}

TEST_F(dev, every_command_refuses_unknown_flags_and_reserved)
{
	uint64_t h, sid;
	int dfd;

	ASSERT_EQ(pin(self->fd, self->buf, PG, &h, NULL), 0);
	struct xfer_query q = { .size = sizeof(q), .flags = 1 };
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_QUERY, &q), -EINVAL);
	q.flags = 0; q.__reserved = 1;
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_QUERY, &q), -EINVAL);
	struct xfer_pin p = { .size = sizeof(p), .flags = 0x80000000u,
			      .addr = (uintptr_t)self->buf, .length = PG };
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_PIN, &p), -EINVAL);
	ASSERT_EQ(export_dmabuf(self->fd, h, &dfd), 0);
	struct xfer_import_dmabuf im = { .size = sizeof(im), .flags = 2, .fd = dfd, .length = PG };
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_IMPORT_DMABUF, &im), -EINVAL);
	im.flags = 0; im.__reserved = 7;
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_IMPORT_DMABUF, &im), -EINVAL);
	close(dfd);
	struct xfer_share s = { .size = sizeof(s), .flags = 4, .handle = h };
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_SHARE, &s), -EINVAL);
	struct xfer_open_shared o = { .size = sizeof(o), .flags = 1, .share_id = 1 };
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_OPEN_SHARED, &o), -EINVAL);
	struct xfer_export_dmabuf e = { .size = sizeof(e), .flags = 1, .handle = h };
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_EXPORT_DMABUF, &e), -EINVAL);
	e.flags = 0; e.__reserved = 1;
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_EXPORT_DMABUF, &e), -EINVAL);
	struct xfer_release r = { .size = sizeof(r), .flags = 1, .handle = h };
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_RELEASE, &r), -EINVAL);
	struct xfer_pin_gpu g = { .size = sizeof(g), .flags = 1 };
	EXPECT_EQ(xioctl(self->fd, XFER_IOC_PIN_GPU, &g), -EINVAL);
	/* Nothing changed: still one region, no share, no export. */
	EXPECT_EQ(sysfs("regions"), 1);
	EXPECT_EQ(sysfs("shares"), 0);
	EXPECT_EQ(sysfs("exports"), 0);
	EXPECT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &sid), 0);
	EXPECT_EQ(release(self->fd, h), 0);
}

TEST_F(dev, unknown_commands_enotty)
{
	uint64_t buf[64] = { sizeof(buf) };

	EXPECT_EQ(xioctl(self->fd, _IO(XFER_IOCTL_TYPE, 0), buf), -ENOTTY);
	EXPECT_EQ(xioctl(self->fd, _IO(XFER_IOCTL_TYPE, XFER_CMD_BASE - 1), buf), -ENOTTY);
	EXPECT_EQ(xioctl(self->fd, _IO(XFER_IOCTL_TYPE, XFER_CMD_PIN_GPU + 1), buf), -ENOTTY);
	EXPECT_EQ(xioctl(self->fd, _IO(XFER_IOCTL_TYPE, 0xff), buf), -ENOTTY);
	EXPECT_EQ(xioctl(self->fd, _IO('x', XFER_CMD_QUERY), buf), -ENOTTY);
	EXPECT_EQ(xioctl(self->fd, _IOWR(XFER_IOCTL_TYPE, XFER_CMD_QUERY, struct xfer_query), buf),
		  -ENOTTY);
	EXPECT_EQ(xioctl(self->fd, FIONREAD, buf), -ENOTTY);
	EXPECT_EQ(sysfs("regions"), 0);
}

TEST_F(dev, pin_refuses_bad_ranges)
{
	uint8_t *gone = anon(4 * PG), *half = anon(2 * PG);
	struct xfer_query q = { .size = sizeof(q) };

	munmap(gone, 4 * PG);
	munmap(half + PG, PG);
	EXPECT_EQ(pin(self->fd, self->buf, 0, NULL, NULL), -EINVAL);
	EXPECT_EQ(pin(self->fd, self->buf + 1, PG, NULL, NULL), -EINVAL);
	EXPECT_EQ(pin(self->fd, self->buf, PG + 7, NULL, NULL), -EINVAL);
	EXPECT_EQ(pin(self->fd, (void *)(uintptr_t)(~0ULL - PG + 1), 2 * PG, NULL, NULL), -EINVAL);
	EXPECT_EQ(pin(self->fd, self->buf, 1ULL << 50, NULL, NULL), -EINVAL);
	EXPECT_EQ(pin(self->fd, self->buf, ~0ULL & ~(PG - 1), NULL, NULL), -EINVAL);
	EXPECT_EQ(pin(self->fd, (void *)0xffff888000000000ULL, PG, NULL, NULL), -EINVAL);
	/* Larger than the module limit (half of RAM by default). */
	EXPECT_EQ(pin(self->fd, self->buf, 64ULL << 30, NULL, NULL), -ENOSPC);
	EXPECT_EQ(pin(self->fd, gone, 4 * PG, NULL, NULL), -EFAULT);
	EXPECT_EQ(pin(self->fd, NULL, PG, NULL, NULL), -EFAULT);
	/* Partly mapped: the pinned part is unpinned again. */
	EXPECT_EQ(pin(self->fd, half, 2 * PG, NULL, NULL), -EFAULT);
	ASSERT_EQ(xioctl(self->fd, XFER_IOC_QUERY, &q), 0);
	EXPECT_EQ(q.ctx_regions, 0);
	EXPECT_EQ(q.pinned_bytes, 0);
	EXPECT_EQ(sysfs("regions"), 0);
	EXPECT_TRUE(sysfs("pins_failed") >= 1);
	EXPECT_TRUE(pins_balanced());
}

TEST_F(dev, import_refuses_bad_fds_and_ranges)
{
	uint64_t h;
	int dfd, nul = open("/dev/null", O_RDWR);

	EXPECT_EQ(import_dmabuf(self->fd, -1, 0, PG, NULL, NULL), -EBADF);
	EXPECT_EQ(import_dmabuf(self->fd, 999, 0, PG, NULL, NULL), -EBADF);
	EXPECT_EQ(import_dmabuf(self->fd, nul, 0, PG, NULL, NULL), -EINVAL);
	EXPECT_EQ(import_dmabuf(self->fd, self->fd, 0, PG, NULL, NULL), -EINVAL);
	close(nul);
	ASSERT_EQ(pin(self->fd, self->buf, 4 * PG, &h, NULL), 0);
	ASSERT_EQ(export_dmabuf(self->fd, h, &dfd), 0);
	EXPECT_EQ(import_dmabuf(self->fd, dfd, 0, 0, NULL, NULL), -EINVAL);
	EXPECT_EQ(import_dmabuf(self->fd, dfd, 1, PG, NULL, NULL), -EINVAL);
	EXPECT_EQ(import_dmabuf(self->fd, dfd, 0, PG + 1, NULL, NULL), -EINVAL);
	EXPECT_EQ(import_dmabuf(self->fd, dfd, 0, 5 * PG, NULL, NULL), -EINVAL);
	EXPECT_EQ(import_dmabuf(self->fd, dfd, 4 * PG, PG, NULL, NULL), -EINVAL);
	EXPECT_EQ(import_dmabuf(self->fd, dfd, ~0ULL & ~(PG - 1), 2 * PG, NULL, NULL), -EINVAL);
	EXPECT_EQ(import_dmabuf(self->fd, dfd, 0, 1ULL << 50, NULL, NULL), -EINVAL);
	EXPECT_EQ(sysfs("regions"), 1);
	EXPECT_EQ(sysfs("imported_bytes"), 0);
	close(dfd);
}

TEST_F(dev, share_export_and_mmap_refuse_bad_arguments)
{
	struct xfer_open_shared o;
	uint64_t h, h2, sid, off;
	int dfd;
	void *m;

	ASSERT_EQ(pin(self->fd, self->buf, 4 * PG, &h, &off), 0);
	EXPECT_EQ(share(self->fd, h, 3, 0, NULL), -EINVAL);
	EXPECT_EQ(share(self->fd, h, 0xffffffffu, 0, NULL), -EINVAL);
	EXPECT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 5, NULL), -EINVAL);
	EXPECT_EQ(share(self->fd, h, XFER_SHARE_UID, 0xffffffffu, NULL), -EINVAL);
	EXPECT_EQ(share(self->fd, h + 1, XFER_SHARE_OWNER, 0, NULL), -ENOENT);
	EXPECT_EQ(share(self->fd, ~0ULL, XFER_SHARE_OWNER, 0, NULL), -ENOENT);
	EXPECT_EQ(sysfs("shares"), 0);
	EXPECT_EQ(open_shared(self->fd, 0, &o), -ENOENT);
	EXPECT_EQ(open_shared(self->fd, 77777, &o), -ENOENT);
	EXPECT_EQ(open_shared(self->fd, ~0ULL, &o), -ENOENT);
	EXPECT_EQ(export_dmabuf(self->fd, h + 1, &dfd), -ENOENT);
	EXPECT_EQ(export_dmabuf(self->fd, ~0ULL, &dfd), -ENOENT);
	/* An opened (not owned) region cannot be shared again. */
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &sid), 0);
	ASSERT_EQ(open_shared(self->fd, sid, &o), 0);
	h2 = o.handle;
	EXPECT_EQ(o.length, 4 * PG);
	EXPECT_EQ(share(self->fd, h2, XFER_SHARE_OWNER, 0, NULL), -EPERM);
	/* mmap: unknown handle, private, too long, beyond the end, stats size */
	m = mmap(NULL, PG, PROT_READ, MAP_SHARED, self->fd, (off_t)(h2 + 5) << XFER_MMAP_REGION_SHIFT);
	EXPECT_EQ(m == MAP_FAILED ? errno : 0, ENOENT);
	m = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, self->fd, off);
	EXPECT_EQ(m == MAP_FAILED ? errno : 0, EINVAL);
	m = mmap(NULL, 5 * PG, PROT_READ, MAP_SHARED, self->fd, off);
	EXPECT_EQ(m == MAP_FAILED ? errno : 0, EINVAL);
	m = mmap(NULL, PG, PROT_READ, MAP_SHARED, self->fd, off + 4 * PG);
	EXPECT_EQ(m == MAP_FAILED ? errno : 0, EINVAL);
	m = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, self->fd, 0);
	EXPECT_EQ(m == MAP_FAILED ? errno : 0, EINVAL);
	m = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, self->fd, 0);
	EXPECT_EQ(m == MAP_FAILED ? errno : 0, EINVAL);
	EXPECT_EQ(sysfs("regions"), 1);
	EXPECT_EQ(sysfs("shares"), 1);
}

struct share_arg {
	uint64_t sid;
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[2];
	uint32_t seed;
	size_t len;
};

/* Child: drop to the given credentials, open the share and use the pages. */
static int opener(void *p)
{
	struct share_arg *a = p;
	struct xfer_open_shared o;
	int fd = xopen(), ret;
	uint8_t *m;

	if (fd < 0)
		return 10;
	if (drop_to(a->uid, a->gid, a->ngroups, a->groups))
		return 11;
	ret = open_shared(fd, a->sid, &o);
	if (ret)
		return ret == -EACCES ? 13 : ret == -ENOENT ? 2 : 12;
	if (o.length != a->len)
		return 14;
	m = mmap(NULL, o.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, o.mmap_offset);
	if (m == MAP_FAILED)
		return 15;
	if (!check(m, o.length, a->seed))
		return 16;
	fill(m, o.length, a->seed + 1);
	munmap(m, o.length);
	close(fd);
	return 0;
}

TEST_F(dev, share_second_process_uses_same_pages)
{
	struct share_arg a = { .len = 8 * PG, .seed = 40 };
	uint64_t h;

	fill(self->buf, a.len, a.seed);
	ASSERT_EQ(pin(self->fd, self->buf, a.len, &h, NULL), 0);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &a.sid), 0);
	EXPECT_EQ(in_child(opener, &a), 0);
	/* The child's writes landed in the owner's memory. */
	EXPECT_TRUE(check(self->buf, a.len, a.seed + 1));
	EXPECT_EQ(sysfs("regions"), 1);
}

TEST_F(dev, open_shared_owner_rule_denies_other_uid)
{
	struct share_arg a = { .len = PG, .uid = 1000, .gid = 1000 };
	uint64_t h;

	fill(self->buf, PG, 0);
	ASSERT_EQ(pin(self->fd, self->buf, PG, &h, NULL), 0);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &a.sid), 0);
	EXPECT_EQ(in_child(opener, &a), 13);
	a.uid = 0; a.gid = 0;
	EXPECT_EQ(in_child(opener, &a), 0);
}

TEST_F(dev, open_shared_uid_rule)
{
	struct share_arg a = { .len = PG, .uid = 1000, .gid = 1000, .seed = 5 };
	uint64_t h;

	fill(self->buf, PG, 5);
	ASSERT_EQ(pin(self->fd, self->buf, PG, &h, NULL), 0);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_UID, 1000, &a.sid), 0);
	EXPECT_EQ(in_child(opener, &a), 0);
	a.uid = 1001; a.seed = 6;
	EXPECT_EQ(in_child(opener, &a), 13);
	/* root is not the rule's uid either */
	a.uid = 0;
	EXPECT_EQ(in_child(opener, &a), 13);
}

TEST_F(dev, open_shared_group_rule)
{
	struct share_arg a = { .len = PG, .uid = 1000, .gid = 3000, .seed = 9,
			       .ngroups = 1, .groups = { 2000 } };
	uint64_t h;

	fill(self->buf, PG, 9);
	ASSERT_EQ(pin(self->fd, self->buf, PG, &h, NULL), 0);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_GROUP, 2000, &a.sid), 0);
	EXPECT_EQ(in_child(opener, &a), 0);       /* supplementary group */
	a.ngroups = 0; a.gid = 2000; a.seed = 10;
	EXPECT_EQ(in_child(opener, &a), 0);       /* primary group */
	a.gid = 3000; a.seed = 11;
	EXPECT_EQ(in_child(opener, &a), 13);      /* not in the group */
	a.ngroups = 2; a.groups[0] = 1; a.groups[1] = 4000;
	EXPECT_EQ(in_child(opener, &a), 13);
}

TEST_F(dev, share_gone_after_owner_release_opener_keeps_pages)
{
	struct xfer_open_shared o;
	uint64_t h, sid;
	uint8_t *m;
	int fd2 = xopen();

	ASSERT_GE(fd2, 0);
	fill(self->buf, 4 * PG, 77);
	ASSERT_EQ(pin(self->fd, self->buf, 4 * PG, &h, NULL), 0);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &sid), 0);
	ASSERT_EQ(open_shared(fd2, sid, &o), 0);
	m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, o.mmap_offset);
	ASSERT_NE(m, MAP_FAILED);
	ASSERT_EQ(release(self->fd, h), 0);
	EXPECT_EQ(sysfs("shares"), 0);
	EXPECT_EQ(open_shared(fd2, sid, &o), -ENOENT);
	EXPECT_TRUE(strstr(slurp("/sys/kernel/debug/xfer/regions"), "orphaned") != NULL);
	EXPECT_TRUE(check(m, 4 * PG, 77));
	EXPECT_EQ(sysfs("pinned_bytes"), 4 * PG);
	munmap(m, 4 * PG);
	close(fd2);
	EXPECT_TRUE(module_idle() || sysfs("contexts") == 1);
	EXPECT_EQ(sysfs("regions"), 0);
}

/* Shared memory (a shmem file): what XFER_MAP_PAGES needs. */
static void *shmem(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * An opened shmem region maps as the owner's file: the opener's long-term
 * writable pin of its mapping (XFER_IOC_PIN: pin_user_pages(FOLL_LONGTERM |
 * FOLL_WRITE), what ib_umem_get does for ibv_reg_mr) and process_vm_readv
 * (plain gup) both take it and see the owner's bytes; the owner's SIGKILL
 * (its context and the last other reference to its shmem file go) frees
 * nothing the opener maps or pinned, and leaves a clean kernel log; a
 * zapped pte faults back in to the same page.
 */
TEST_F(dev, shmem_share_maps_pages_that_gup_takes)
{
	struct xfer_query q = { .size = sizeof(q) };
	struct xfer_open_shared o;
	size_t len = 8 * PG;
	uint8_t *m, got[64];
	uint64_t sid = 0, h2;
	struct iovec lio = { got, sizeof(got) }, rio;
	int fd2 = xopen(), ready[2], status;
	pid_t owner;

	ASSERT_GE(fd2, 0);
	ASSERT_EQ(xioctl(self->fd, XFER_IOC_QUERY, &q), 0);
	EXPECT_TRUE(q.features & XFER_FEATURE_PAGE_MAPS);
	ASSERT_EQ(pipe(ready), 0);
	owner = fork();
	if (owner == 0) {
		uint8_t *buf = shmem(len);
		int fd = xopen();
		uint64_t h;

		if (!buf || fd < 0)
			_exit(1);
		fill(buf, len, 300);
		if (pin(fd, buf, len, &h, NULL) || share(fd, h, XFER_SHARE_OWNER, 0, &sid) ||
		    write(ready[1], &sid, sizeof(sid)) != sizeof(sid))
			_exit(1);
		pause();
		_exit(0);
	}
	ASSERT_EQ(read(ready[0], &sid, sizeof(sid)), sizeof(sid));
	ASSERT_EQ(open_shared(fd2, sid, &o), 0);
	EXPECT_EQ(o.kind, XFER_KIND_HOST);
	EXPECT_EQ(o.map_flags, XFER_MAP_PAGES);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, o.mmap_offset);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_TRUE(check(m, len, 300));
	/* The NIC's pin. */
	ASSERT_EQ(pin(fd2, m, len, &h2, NULL), 0);
	EXPECT_EQ(sysfs("regions"), 2);
	EXPECT_EQ(sysfs("pinned_bytes"), 2 * len);
	/* The owner dies: its share goes, the pages stay. */
	kill(owner, SIGKILL);
	waitpid(owner, &status, 0);
	EXPECT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(sysfs("shares"), 0);
	EXPECT_EQ(sysfs("regions"), 2);
	EXPECT_EQ(sysfs("pinned_bytes"), 2 * len);
	EXPECT_TRUE(check(m, len, 300));
	/* Plain gup of the mapping, through the kernel's own copy. */
	fill(m, len, 301);
	rio.iov_base = m + 3 * PG;
	rio.iov_len = sizeof(got);
	EXPECT_EQ(process_vm_readv(getpid(), &lio, 1, &rio, 1, 0), (ssize_t)sizeof(got));
	EXPECT_EQ(memcmp(got, m + 3 * PG, sizeof(got)), 0);
	/* A zapped pte comes back from the file, same bytes. */
	EXPECT_EQ(madvise(m, len, MADV_DONTNEED), 0);
	EXPECT_TRUE(check(m, len, 301));
	EXPECT_EQ(release(fd2, h2), 0);
	munmap(m, len);
	EXPECT_EQ(sysfs("regions"), 1);   /* the opened handle still holds it */
	close(fd2);
	EXPECT_EQ(sysfs("regions"), 0);
	EXPECT_EQ(sysfs("pinned_bytes"), 0);
}

/*
 * The owner punches a hole in, seals and truncates its memfd while an
 * opener maps part of it: the opener's mapping is the file's, so it is
 * unmapped like the owner's and sees the hole (zeros), the kernel log stays
 * clean (no "Bad page cache"), the region's pins hold the old pages until
 * released; the opener cannot grow its mapping into the rest of the file
 * (mremap) nor map it writable once the owner sealed it against writes
 * (F_SEAL_FUTURE_WRITE; F_SEAL_WRITE is refused while the pages are pinned).
 */
TEST_F(dev, memfd_hole_punch_seal_and_truncate_while_opened)
{
	struct xfer_open_shared o;
	size_t len = 4 * PG;
	int mfd = memfd_create("xfer-test", MFD_ALLOW_SEALING);
	uint64_t h, sid;
	uint8_t *buf, *m, copy[4 * PG];
	void *m2;

	ASSERT_GE(mfd, 0);
	ASSERT_EQ(ftruncate(mfd, 2 * len), 0);
	buf = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ASSERT_NE(buf, MAP_FAILED);
	fill(buf, 2 * len, 500);
	/* The second half of the file is the region. */
	ASSERT_EQ(pin(self->fd, buf + len, len, &h, NULL), 0);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &sid), 0);
	ASSERT_EQ(open_shared(self->fd, sid, &o), 0);
	EXPECT_EQ(o.map_flags, XFER_MAP_PAGES);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, o.mmap_offset);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_EQ(memcmp(m, buf + len, len), 0);
	memcpy(copy, m, len);
	m2 = mremap(m, len, 2 * len, MREMAP_MAYMOVE);
	EXPECT_EQ(m2 == MAP_FAILED ? errno : 0, EFAULT);
	ASSERT_EQ(fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, len + PG, PG), 0);
	EXPECT_EQ(m[PG], 0);
	EXPECT_EQ(m[2 * PG - 1], 0);
	EXPECT_EQ(memcmp(m, buf + len, len), 0);
	EXPECT_EQ(sysfs("pinned_bytes"), len);
	/* Sealed against writes: F_SEAL_WRITE waits for pins (the region's)
	 * and gives up; F_SEAL_FUTURE_WRITE leaves the opener read-only. */
	munmap(m, len);
	munmap(buf, 2 * len);
	EXPECT_EQ(fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE), -1);
	EXPECT_EQ(errno, EBUSY);
	ASSERT_EQ(fcntl(mfd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), 0);
	m2 = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, o.mmap_offset);
	EXPECT_EQ(m2 == MAP_FAILED ? errno : 0, EPERM);
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, self->fd, o.mmap_offset);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_EQ(m[PG], 0);
	EXPECT_EQ(memcmp(m + 2 * PG, copy + 2 * PG, 2 * PG), 0);
	/* Truncated under the opener: unmapped cleanly (the bytes are gone). */
	EXPECT_EQ(ftruncate(mfd, 0), 0);
	munmap(m, len);
	close(mfd);
	EXPECT_EQ(release(self->fd, o.handle), 0);
	EXPECT_EQ(release(self->fd, h), 0);
	EXPECT_EQ(sysfs("pinned_bytes"), 0);
}

/* Anonymous memory keeps a PFN map: no XFER_MAP_PAGES, and gup refuses it. */
TEST_F(dev, anon_share_maps_pfns_that_gup_refuses)
{
	struct xfer_open_shared o;
	uint64_t h, sid;
	void *m;

	ASSERT_EQ(pin(self->fd, self->buf, 4 * PG, &h, NULL), 0);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &sid), 0);
	ASSERT_EQ(open_shared(self->fd, sid, &o), 0);
	EXPECT_EQ(o.kind, XFER_KIND_HOST);
	EXPECT_EQ(o.map_flags, 0);
	m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, o.mmap_offset);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_EQ(pin(self->fd, m, 4 * PG, NULL, NULL), -EFAULT);
	munmap(m, 4 * PG);
}

/* A caller built before kind/map_flags (the struct ending at mmap_offset). */
TEST_F(dev, open_shared_old_struct_size_still_works)
{
	struct xfer_open_shared o;
	uint64_t h, sid;

	ASSERT_EQ(pin(self->fd, self->buf, PG, &h, NULL), 0);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &sid), 0);
	memset(&o, 0xab, sizeof(o));
	o.size = offsetof(struct xfer_open_shared, mmap_offset) + sizeof(o.mmap_offset);
	o.flags = 0;
	o.share_id = sid;
	ASSERT_EQ(xioctl(self->fd, XFER_IOC_OPEN_SHARED, &o), 0);
	EXPECT_EQ(o.length, PG);
	/* nothing written past the caller's size */
	EXPECT_EQ(o.kind, 0xababababu);
	EXPECT_EQ(o.map_flags, 0xababababu);
}

/* Tests that set up on their own: no open device, the leak check still. */
FIXTURE(xfer) {
	int unused;
};

FIXTURE_SETUP(xfer)
{
}

FIXTURE_TEARDOWN(xfer)
{
	kt_expect_no_leak(_metadata, true);
}

TEST_F(xfer, owner_sigkill_while_opener_uses_pages)
{
	int ready[2], go[2], done[2], fd2;
	struct xfer_open_shared o2;
	uint64_t sid = 0;
	pid_t owner, user;
	int status;
	char c;

	if (access("/dev/xfer", F_OK))
		SKIP(return, "/dev/xfer missing");
	ASSERT_EQ(pipe(ready), 0);
	ASSERT_EQ(pipe(go), 0);
	ASSERT_EQ(pipe(done), 0);
	owner = fork();
	if (owner == 0) {
		int fd = xopen();
		uint8_t *buf = anon(32 * PG);
		uint64_t h;

		fill(buf, 32 * PG, 1234);
		if (fd < 0 || pin(fd, buf, 32 * PG, &h, NULL) ||
		    share(fd, h, XFER_SHARE_OWNER, 0, &sid))
			_exit(1);
		if (write(ready[1], &sid, sizeof(sid)) != sizeof(sid))
			_exit(1);
		pause();
		_exit(0);
	}
	ASSERT_EQ(read(ready[0], &sid, sizeof(sid)), sizeof(sid));
	user = fork();
	if (user == 0) {
		struct xfer_open_shared o;
		int fd = xopen(), rc = 0;
		uint8_t *m;

		if (fd < 0 || open_shared(fd, sid, &o))
			_exit(1);
		m = mmap(NULL, o.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, o.mmap_offset);
		if (m == MAP_FAILED)
			_exit(2);
		close(fd); /* the mapping alone keeps the region */
		if (write(done[1], "o", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		/* The owner is dead now: the pages are still there and ours. */
		if (!check(m, o.length, 1234))
			rc = 4;
		for (int round = 0; round < 20; round++) {
			fill(m, o.length, round);
			if (!check(m, o.length, round))
				rc = 5;
		}
		_exit(rc);
	}
	ASSERT_EQ(read(done[0], &c, 1), 1);
	kill(owner, SIGKILL);
	waitpid(owner, &status, 0);
	EXPECT_TRUE(WIFSIGNALED(status));
	/* The share died with its owner; the region lives on for the user. */
	EXPECT_EQ(sysfs("shares"), 0);
	EXPECT_EQ(sysfs("regions"), 1);
	EXPECT_EQ(sysfs("contexts"), 1); /* the user's, held by its mapping */
	EXPECT_EQ(sysfs("pinned_bytes"), 32 * PG);
	EXPECT_TRUE(strstr(slurp("/sys/kernel/debug/xfer/regions"), "orphaned") != NULL);
	fd2 = xopen();
	EXPECT_EQ(open_shared(fd2, sid, &o2), -ENOENT);
	close(fd2);
	ASSERT_EQ(write(go[1], "g", 1), 1);
	waitpid(user, &status, 0);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_EQ(vmstat("nr_foll_pin_acquired"), vmstat("nr_foll_pin_released"));
	EXPECT_TRUE(module_idle());
}

static int memlock_child(void *unused __attribute__((unused)))
{
	struct rlimit rl = { 16 * PG, 16 * PG };
	struct xfer_query q = { .size = sizeof(q) };
	uint8_t *buf = anon(32 * PG);
	uint64_t h, h2;
	int fd = xopen();

	if (fd < 0 || !buf)
		return 10;
	if (setrlimit(RLIMIT_MEMLOCK, &rl) || drop_to(1000, 1000, 0, NULL))
		return 11;
	if (xioctl(fd, XFER_IOC_QUERY, &q) || q.memlock_limit != 16 * PG)
		return 12;
	if (pin(fd, buf, 16 * PG, &h, NULL))
		return 13;
	if (pin(fd, buf + 16 * PG, PG, NULL, NULL) != -ENOMEM)
		return 14;
	if (sysfs("pinned_bytes") != (long long)(16 * PG))
		return 15;
	if (release(fd, h) || pin(fd, buf, 8 * PG, &h, NULL) ||
	    pin(fd, buf + 8 * PG, 8 * PG, &h2, NULL))
		return 16;
	if (pin(fd, buf + 16 * PG, 16 * PG, NULL, NULL) != -ENOMEM)
		return 17;
	return 0;
}

TEST_F(xfer, rlimit_memlock_enforced)
{
	if (access("/dev/xfer", F_OK))
		SKIP(return, "/dev/xfer missing");
	EXPECT_EQ(in_child(memlock_child, NULL), 0);
	/* CAP_IPC_LOCK (root) is not limited. */
	struct rlimit rl = { PG, PG };
	uint8_t *buf = anon(8 * PG);
	int fd = xopen();
	uint64_t h;

	ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	EXPECT_EQ(pin(fd, buf, 8 * PG, &h, NULL), 0);
	close(fd);
}

TEST_F(xfer, module_limit_enforced)
{
	const char *param = "/sys/module/xfer/parameters/max_pinned_mb";
	struct xfer_query q = { .size = sizeof(q) };
	uint8_t *buf = anon(2 << 20);
	uint64_t h;
	long long failed;
	int fd = xopen();

	if (fd < 0)
		SKIP(return, "/dev/xfer missing");
	ASSERT_EQ(write_str(param, "1"), 0);
	ASSERT_EQ(xioctl(fd, XFER_IOC_QUERY, &q), 0);
	EXPECT_EQ(q.max_pinned_bytes, 1 << 20);
	EXPECT_EQ(sysfs("max_pinned_bytes"), 1 << 20);
	EXPECT_EQ(pin(fd, buf, 1 << 20, &h, NULL), 0);
	failed = sysfs("pins_failed");
	EXPECT_EQ(pin(fd, buf + (1 << 20), PG, NULL, NULL), -ENOSPC);
	EXPECT_EQ(sysfs("pins_failed"), failed + 1);
	EXPECT_EQ(sysfs("pinned_bytes"), 1 << 20);
	EXPECT_EQ(release(fd, h), 0);
	EXPECT_EQ(pin(fd, buf + (1 << 20), PG, &h, NULL), 0);
	ASSERT_EQ(write_str(param, "0"), 0);
	EXPECT_TRUE(sysfs("max_pinned_bytes") > (1 << 20));
	close(fd);
}

TEST_F(dev, handle_limit_enforced)
{
	const char *param = "/sys/module/xfer/parameters/max_handles";
	struct xfer_open_shared o;
	uint64_t h1, h2, sid;

	ASSERT_EQ(write_str(param, "2"), 0);
	ASSERT_EQ(pin(self->fd, self->buf, PG, &h1, NULL), 0);
	ASSERT_EQ(pin(self->fd, self->buf + PG, PG, &h2, NULL), 0);
	EXPECT_EQ(pin(self->fd, self->buf + 2 * PG, PG, NULL, NULL), -EMFILE);
	ASSERT_EQ(share(self->fd, h1, XFER_SHARE_OWNER, 0, &sid), 0);
	EXPECT_EQ(open_shared(self->fd, sid, &o), -EMFILE);
	EXPECT_EQ(sysfs("pinned_bytes"), 2 * PG);
	EXPECT_EQ(sysfs("regions"), 2);
	ASSERT_EQ(write_str(param, "65536"), 0);
	EXPECT_EQ(open_shared(self->fd, sid, &o), 0);
}

/* A dma-buf from the guest kernel: udmabuf (6.12) or a vgem dumb buffer (6.1). */
static int make_dmabuf(size_t len, const char **how)
{
	int dev = open("/dev/udmabuf", O_RDWR);

	if (dev >= 0) {
		int memfd = memfd_create("xfer-test", MFD_ALLOW_SEALING);
		struct udmabuf_create c = { .memfd = memfd, .size = len };
		int fd;

		if (memfd < 0 || ftruncate(memfd, len) ||
		    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK))
			return -errno;
		fd = ioctl(dev, UDMABUF_CREATE, &c);
		close(memfd);
		close(dev);
		*how = "udmabuf";
		return fd < 0 ? -errno : fd;
	}
	for (int i = 0; i < 4; i++) {
		char path[32];
		struct t_drm_mode_create_dumb d = { .height = len / 4096, .width = 1024, .bpp = 32 };
		struct t_drm_prime_handle ph = { 0 };

		snprintf(path, sizeof(path), "/dev/dri/card%d", i);
		dev = open(path, O_RDWR);
		if (dev < 0)
			continue;
		if (ioctl(dev, T_DRM_IOCTL_MODE_CREATE_DUMB, &d)) {
			close(dev);
			continue;
		}
		ph.handle = d.handle;
		ph.flags = O_RDWR | O_CLOEXEC;
		if (ioctl(dev, T_DRM_IOCTL_PRIME_HANDLE_TO_FD, &ph)) {
			close(dev);
			continue;
		}
		close(dev);
		*how = "vgem";
		return ph.fd;
	}
	return -ENODEV;
}

TEST_F(dev, dmabuf_import_from_guest_exporter)
{
	const char *how = "";
	uint64_t h, h2, off;
	uint8_t *src, *m;
	size_t len = 8 * PG;
	int dfd = make_dmabuf(len, &how);

	if (dfd < 0)
		SKIP(return, "no udmabuf or vgem in this kernel (%s)", strerror(-dfd));
	TH_LOG("dma-buf from %s", how);
	src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
	ASSERT_NE(src, MAP_FAILED);
	fill(src, len, 99);
	/* At an offset (not mapped: 6.1's shmem helper ignores mmap offsets). */
	ASSERT_EQ(import_dmabuf(self->fd, dfd, PG, 4 * PG, &h2, NULL), 0);
	EXPECT_TRUE(strstr(slurp("/sys/kernel/debug/xfer/regions"), "\tdmabuf\t16384\t") != NULL);
	ASSERT_EQ(import_dmabuf(self->fd, dfd, 0, 4 * PG, &h, &off), 0);
	EXPECT_EQ(sysfs("imported_bytes"), 8 * PG);
	EXPECT_EQ(sysfs("pinned_bytes"), 0);
	/* The region maps through the exporter. */
	m = mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, self->fd, off);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_EQ(memcmp(m, src, 4 * PG), 0);
	munmap(m, 4 * PG);
	EXPECT_EQ(release(self->fd, h2), 0);
	/* The region holds the dma-buf after its fd is closed. */
	close(dfd);
	EXPECT_EQ(sysfs("regions"), 1);
	/* Exporting an imported region is not supported. */
	EXPECT_EQ(export_dmabuf(self->fd, h, &dfd), -EOPNOTSUPP);
	EXPECT_EQ(release(self->fd, h), 0);
	EXPECT_EQ(sysfs("imported_bytes"), 0);
	munmap(src, len);
}

/*
 * A region of a whole dma-buf: opened, it says XFER_KIND_DMABUF; exported,
 * it is the same dma-buf again (a new fd, the exporter's pages), not one
 * of the module's (exports stays 0).
 */
TEST_F(dev, dmabuf_whole_region_opens_as_dmabuf_and_exports_itself)
{
	struct xfer_open_shared o;
	const char *how = "";
	size_t len = 4 * PG;
	int dfd = make_dmabuf(len, &how), dfd2;
	uint64_t h, sid;
	uint8_t *src, *m;

	if (dfd < 0)
		SKIP(return, "no udmabuf or vgem in this kernel (%s)", strerror(-dfd));
	src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
	ASSERT_NE(src, MAP_FAILED);
	fill(src, len, 444);
	ASSERT_EQ(import_dmabuf(self->fd, dfd, 0, len, &h, NULL), 0);
	close(dfd);
	ASSERT_EQ(share(self->fd, h, XFER_SHARE_OWNER, 0, &sid), 0);
	ASSERT_EQ(open_shared(self->fd, sid, &o), 0);
	EXPECT_EQ(o.kind, XFER_KIND_DMABUF);
	EXPECT_EQ(o.map_flags, 0);
	ASSERT_EQ(export_dmabuf(self->fd, o.handle, &dfd2), 0);
	EXPECT_EQ(sysfs("exports"), 0);
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, dfd2, 0);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_TRUE(check(m, len, 444));
	munmap(m, len);
	/* The fd holds the dma-buf, not the region. */
	EXPECT_EQ(release(self->fd, o.handle), 0);
	EXPECT_EQ(release(self->fd, h), 0);
	EXPECT_EQ(sysfs("regions"), 0);
	close(dfd2);
	munmap(src, len);
}

TEST_F(dev, dmabuf_export_then_reimport)
{
	uint64_t h, h2, off2;
	uint8_t *m, *m2;
	int dfd;

	fill(self->buf, 8 * PG, 31);
	ASSERT_EQ(pin(self->fd, self->buf, 8 * PG, &h, NULL), 0);
	ASSERT_EQ(export_dmabuf(self->fd, h, &dfd), 0);
	EXPECT_TRUE(fcntl(dfd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(sysfs("exports"), 1);
	m = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
	ASSERT_NE(m, MAP_FAILED);
	EXPECT_TRUE(check(m, 8 * PG, 31));
	ASSERT_EQ(import_dmabuf(self->fd, dfd, 2 * PG, 4 * PG, &h2, &off2), 0);
	EXPECT_EQ(sysfs("imported_bytes"), 4 * PG);
	m2 = mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, self->fd, off2);
	ASSERT_NE(m2, MAP_FAILED);
	EXPECT_EQ(memcmp(m2, self->buf + 2 * PG, 4 * PG), 0);
	/* The exported dma-buf keeps the pages after the owner's release. */
	ASSERT_EQ(release(self->fd, h), 0);
	close(dfd);
	EXPECT_EQ(sysfs("regions"), 2);
	EXPECT_EQ(sysfs("pinned_bytes"), 8 * PG);
	fill(m, 8 * PG, 32);
	EXPECT_TRUE(check(self->buf, 8 * PG, 32));
	munmap(m, 8 * PG);
	munmap(m2, 4 * PG);
	ASSERT_EQ(release(self->fd, h2), 0);
	EXPECT_EQ(sysfs("regions"), 0);
	EXPECT_EQ(sysfs("exports"), 0);
}

static int import_child(void *p)
{
	int dfd = *(int *)p, fd = xopen();
	uint64_t h, off;
	uint8_t *m;

	if (fd < 0 || import_dmabuf(fd, dfd, 0, 2 * PG, &h, &off))
		return 1;
	m = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, off);
	if (m == MAP_FAILED)
		return 2;
	return check(m, 2 * PG, 55) ? 0 : 3;
}

TEST_F(dev, dmabuf_export_imported_by_other_process)
{
	uint64_t h;
	int dfd;

	fill(self->buf, 2 * PG, 55);
	ASSERT_EQ(pin(self->fd, self->buf, 2 * PG, &h, NULL), 0);
	ASSERT_EQ(export_dmabuf(self->fd, h, &dfd), 0);
	EXPECT_EQ(in_child(import_child, &dfd), 0);
	close(dfd);
}

TEST_F(dev, debugfs_and_sysfs_show_what_was_created)
{
	static const char *const attrs[] = { "abi_version", "pinned_bytes",
		"max_pinned_bytes", "imported_bytes", "regions", "contexts", "shares",
		"exports", "pins_total", "pins_failed" };
	struct xfer_ctx_stats *st;
	uint64_t h1, h2, sid;
	char line[256], path[128], all[1024] = "", *s, *l;
	int ctx_id = -1, dfd;

	if (access("/sys/kernel/debug/xfer/regions", R_OK))
		SKIP(return, "debugfs not mounted");
	ASSERT_EQ(pin(self->fd, self->buf, 2 * PG, &h1, NULL), 0);
	ASSERT_EQ(pin(self->fd, self->buf + 4 * PG, 4 * PG, &h2, NULL), 0);
	ASSERT_EQ(share(self->fd, h2, XFER_SHARE_GROUP, 2000, &sid), 0);
	ASSERT_EQ(export_dmabuf(self->fd, h1, &dfd), 0);

	EXPECT_EQ(sysfs("abi_version"), XFER_ABI_VERSION);
	EXPECT_EQ(sysfs("regions"), 2);
	EXPECT_EQ(sysfs("contexts"), 1);
	EXPECT_EQ(sysfs("shares"), 1);
	EXPECT_EQ(sysfs("exports"), 1);
	EXPECT_EQ(sysfs("pinned_bytes"), 6 * PG);
	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		EXPECT_GE(sysfs(attrs[i]), 0);
		snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s %lld\n",
			 attrs[i], sysfs(attrs[i]));
	}
	kt_log_block("/sys/class/misc/xfer", all);

	s = slurp("/sys/kernel/debug/xfer/regions");
	kt_log_block("regions", s);
	EXPECT_TRUE(!strncmp(s, "id\towner_pid\towner\tkind\tbytes\trefs", 34));
	snprintf(line, sizeof(line), "\t%d\txfer_test\thost\t8192\t2\t1\t0\t1\t0\tactive\n", getpid());
	EXPECT_TRUE(strstr(s, line) != NULL);
	snprintf(line, sizeof(line), "\t%d\txfer_test\thost\t16384\t2\t1\t1\t0\t0\tactive\n", getpid());
	EXPECT_TRUE(strstr(s, line) != NULL);

	s = slurp("/sys/kernel/debug/xfer/shares");
	kt_log_block("shares", s);
	snprintf(line, sizeof(line), "%llu\t", (unsigned long long)sid);
	EXPECT_TRUE(strstr(s, line) != NULL);
	snprintf(line, sizeof(line), "\t%d\tgroup\t2000\t0\n", getpid());
	EXPECT_TRUE(strstr(s, line) != NULL);

	s = slurp("/sys/kernel/debug/xfer/contexts");
	kt_log_block("contexts", s);
	snprintf(line, sizeof(line), "\t%d\txfer_test\t2\t24576\n", getpid());
	ASSERT_TRUE(strstr(s, line) != NULL);
	l = strstr(s, line);
	while (l > s && l[-1] != '\n')
		l--;
	ctx_id = atoi(l);

	/* The stats page: what the library writes is what debugfs shows. */
	st = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, XFER_MMAP_OFFSET_STATS);
	ASSERT_NE(st, MAP_FAILED);
	EXPECT_EQ(st->version, XFER_CTX_STATS_VERSION);
	st->num_rails = 2;
	st->ops_inflight = 3;
	st->last_error = -110;
	st->rail[1].bytes_posted = 12345;
	st->rail[1].ops_completed = 6;
	snprintf(path, sizeof(path), "/sys/kernel/debug/xfer/ctx-%d/stats", ctx_id);
	s = slurp(path);
	kt_log_block(path, s);
	/* The module's page says version 2 but no size yet: the version-1 layout. */
	EXPECT_TRUE(strstr(s, "version 2\nnum_rails 2\nops_inflight 3\nlast_error -110\nrail\t") != NULL);
	EXPECT_TRUE(strstr(s, "\n1\t12345\t0\t0\t6\t0\t0\n") != NULL);
	EXPECT_TRUE(strstr(s, "\n0\t0\t0\t0\t0\t0\t0\n") != NULL);
	/* Version 2's tail once the size covers it; names from userspace as
	 * one printable word; num_rails clamped to the page. */
	st->size = XFER_CTX_STATS_SIZE_V2;
	st->peers_up = 4;
	st->peers_down = 1;
	st->engine_id = 77;
	snprintf(st->provider, sizeof(st->provider), "tcp;ofi_rxm");
	snprintf(st->rail_name[1], sizeof(st->rail_name[1]), "a\tb c");
	st->rail_ops_inflight[1] = 2;
	s = slurp(path);
	kt_log_block(path, s);
	EXPECT_TRUE(strstr(s, "last_error -110\npeers_up 4\npeers_down 1\nengine_id 77\nprovider tcp;ofi_rxm\n") != NULL);
	EXPECT_TRUE(strstr(s, "imm_received\tops_inflight\tname\n") != NULL);
	EXPECT_TRUE(strstr(s, "\n1\t12345\t0\t0\t6\t0\t0\t2\ta?b?c\n") != NULL);
	EXPECT_TRUE(strstr(s, "\n0\t0\t0\t0\t0\t0\t0\t0\t-\n") != NULL);
	st->num_rails = 99;
	s = slurp(path);
	EXPECT_TRUE(strstr(s, "num_rails 99\n") != NULL);
	EXPECT_TRUE(strstr(s, "\n7\t") != NULL);
	EXPECT_TRUE(strstr(s, "\n8\t") == NULL);
	munmap(st, PG);

	/* No kernel addresses anywhere. */
	EXPECT_TRUE(strstr(slurp("/sys/kernel/debug/xfer/regions"), "ffff") == NULL);
	EXPECT_TRUE(strstr(slurp("/sys/kernel/debug/xfer/shares"), "ffff") == NULL);
	EXPECT_TRUE(strstr(slurp("/sys/kernel/debug/xfer/contexts"), "ffff") == NULL);

	close(dfd);
	close(self->fd);
	self->fd = -1;
	EXPECT_TRUE(access(path, F_OK) != 0);
	EXPECT_TRUE(!strncmp(slurp("/sys/kernel/debug/xfer/regions"), "id\t", 3) &&
		    !strchr(strchr(slurp("/sys/kernel/debug/xfer/regions"), '\n') + 1, '\t'));
}

/* Random valid and invalid calls; dies at a random point. */
static void stress_worker(int fd, unsigned int seed, uint64_t *sids, int nsids, int ops)
{
	uint8_t *buf = anon(64 * PG);
	uint64_t handles[32] = { 0 };
	int fds[4] = { -1, -1, -1, -1 };
	int die_at = rand_r(&seed) % (ops + ops / 4);

	if (fd < 0 || !buf)
		_exit(1);
	/* Reopening fails once privileges are dropped: calls then get EBADF. */
	for (int i = 0; i < ops; i++) {
		int op = rand_r(&seed) % 12, slot = rand_r(&seed) % 32;
		uint64_t h = handles[slot], off;
		struct xfer_open_shared o;
		uint64_t junk[8];

		if (i == die_at)
			kill(getpid(), SIGKILL);
		switch (op) {
		case 0: case 1: {
			size_t first = rand_r(&seed) % 60, n = 1 + rand_r(&seed) % 4;

			if (!h && !pin(fd, buf + first * PG, n * PG, &h, NULL))
				handles[slot] = h;
			break;
		}
		case 2:
			if (release(fd, h) == 0)
				handles[slot] = 0;
			break;
		case 3:
			share(fd, h, rand_r(&seed) % 4, rand_r(&seed) % 2 ? 0 : 2000,
			      &sids[rand_r(&seed) % nsids]);
			break;
		case 4:
			if (!open_shared(fd, sids[rand_r(&seed) % nsids], &o) && !handles[slot])
				handles[slot] = o.handle;
			break;
		case 5: {
			int dfd, s = rand_r(&seed) % 4;

			if (!export_dmabuf(fd, h, &dfd)) {
				if (fds[s] >= 0)
					close(fds[s]);
				fds[s] = dfd;
				if (rand_r(&seed) % 2)
					import_dmabuf(fd, dfd, 0, PG, NULL, NULL);
			}
			break;
		}
		case 6: {
			void *m = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
				       (off_t)h << XFER_MMAP_REGION_SHIFT);

			if (m != MAP_FAILED) {
				*(volatile uint8_t *)m = (uint8_t)i;
				if (rand_r(&seed) % 4)
					munmap(m, PG);
			}
			break;
		}
		case 7:
			memset(junk, 0, sizeof(junk));
			for (int k = 0; k < 8; k++)
				junk[k] = rand_r(&seed) % 3 ? (uint64_t)(rand_r(&seed) % 64) : (uint64_t)rand_r(&seed) << 32;
			junk[0] = (junk[0] & ~0xffffffffULL) | (rand_r(&seed) % 80);
			ioctl(fd, _IO(XFER_IOCTL_TYPE, XFER_CMD_BASE + rand_r(&seed) % 10), junk);
			break;
		case 8:
			pin(fd, buf + (rand_r(&seed) % 64) * PG + (rand_r(&seed) % 2),
			    (uint64_t)rand_r(&seed) << (rand_r(&seed) % 30), NULL, NULL);
			break;
		case 9:
			if (rand_r(&seed) % 8 == 0) {
				close(fd);
				fd = xopen();
				memset(handles, 0, sizeof(handles));
			}
			break;
		case 10: {
			int dfd = fds[rand_r(&seed) % 4];

			if (dfd >= 0)
				import_dmabuf(fd, dfd, 0, PG * (1 + rand_r(&seed) % 2), &off, NULL);
			break;
		}
		default: {
			struct xfer_query q = { .size = sizeof(q) };

			xioctl(fd, XFER_IOC_QUERY, &q);
			break;
		}
		}
	}
	_exit(0);
}

TEST_F(xfer, random_multiprocess_stress_returns_to_zero)
{
	const int nproc = 4, rounds = 3, ops = 1500;
	uint64_t *sids = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned int seed = (unsigned int)time(NULL);

	if (access("/dev/xfer", F_OK))
		SKIP(return, "/dev/xfer missing");
	TH_LOG("seed %u", seed);
	for (int r = 0; r < rounds; r++) {
		pid_t pids[8];

		for (int p = 0; p < nproc; p++) {
			pids[p] = fork();
			if (pids[p] == 0) {
				int fd = xopen();

				if (p % 2 && drop_to(1000 + p % 3, 2000, 0, NULL))
					_exit(1);
				stress_worker(fd, seed + r * 100 + p, sids, 16, ops);
			}
		}
		usleep(1000 * (rand_r(&seed) % 300));
		kill(pids[rand_r(&seed) % nproc], SIGKILL);
		for (int p = 0; p < nproc; p++) {
			int status;

			waitpid(pids[p], &status, 0);
			EXPECT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
				TH_LOG("worker %d: status %#x", p, status);
		}
		EXPECT_TRUE(module_idle());
		EXPECT_TRUE(pins_balanced());
	}
	TH_LOG("pins_total %lld pins_failed %lld", sysfs("pins_total"), sysfs("pins_failed"));
}

/* Keep this last: it unloads and reloads the module. */
TEST_F(xfer, rmmod_refused_while_held_then_clean)
{
	const char *ko = getenv("XFER_KO");
	uint8_t *buf = anon(4 * PG);
	uint64_t h;
	int fd, dfd, mfd;

	if (!ko || access(ko, R_OK))
		SKIP(return, "XFER_KO not set to the module file");
	fd = xopen();
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pin(fd, buf, 4 * PG, &h, NULL), 0);
	ASSERT_EQ(export_dmabuf(fd, h, &dfd), 0);
	EXPECT_NE(syscall(SYS_delete_module, "xfer", O_NONBLOCK), 0);
	EXPECT_TRUE(errno == EWOULDBLOCK || errno == EBUSY);
	close(fd);
	/* The exported dma-buf alone still holds the module. */
	EXPECT_NE(syscall(SYS_delete_module, "xfer", O_NONBLOCK), 0);
	EXPECT_TRUE(errno == EWOULDBLOCK || errno == EBUSY);
	EXPECT_EQ(sysfs("regions"), 1);
	close(dfd);
	ASSERT_EQ(syscall(SYS_delete_module, "xfer", O_NONBLOCK), 0);
	EXPECT_TRUE(access("/dev/xfer", F_OK) != 0);
	EXPECT_TRUE(pins_balanced());
	mfd = open(ko, O_RDONLY | O_CLOEXEC);
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(syscall(SYS_finit_module, mfd, "", 0), 0);
	close(mfd);
	for (int i = 0; i < 100 && access("/dev/xfer", F_OK); i++)
		usleep(10000);
	EXPECT_EQ(access("/dev/xfer", F_OK), 0);
	EXPECT_TRUE(module_idle());
}

#define main kt_harness_main
TEST_HARNESS_MAIN
#undef main
KT_MAIN
