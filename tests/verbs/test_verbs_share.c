/* SPDX-License-Identifier: MIT */
/*
 * A region shared through the kernel module (/dev/xfer), opened and
 * registered by another process's verbs engine (rxe), in the verbs guest:
 *  - process A registers 1 MiB of shmem (MAP_SHARED | MAP_ANONYMOUS) with
 *    its own verbs engine and shares it; B opens it with
 *    xfer_mr_open_shared on a verbs engine: the module maps the pages
 *    themselves, so ibv_reg_mr takes the mapping;
 *  - B's engine writes from A's region into a peer engine C, and C writes
 *    into A's region through B's registration: every byte checked, A's
 *    checked by A in its own memory;
 *  - A is SIGKILLed while B holds the region: the share goes, the region
 *    and its pins stay, and both directions still work, byte-exact;
 *  - regions of anonymous memory (mapped as PFNs) and of a dma-buf (udmabuf)
 *    go through the module's dma-buf export and ibv_reg_dmabuf_mr, which
 *    rxe lacks: xfer_mr_open_shared says -EOPNOTSUPP and leaves nothing
 *    behind (no handle, export or context of B's in the module);
 *  - after B's dereg and engine teardown the module holds nothing
 *    (sysfs regions, pinned_bytes, ... 0) and every page pin taken in the
 *    guest (the module's and rxe's) was released.
 * The module: /dev/xfer, or XFER_KO (tests/verbs/run.sh builds it for the
 * guest's kernel), loaded here and unloaded at the end so that the other
 * programs in the guest run without it. Skips without either, or without
 * a verbs device ($XFER_TEST_DEVICES, first name).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/udmabuf.h>
#include <linux/xfer.h>

#include "harness.h"

#define LEN (1u << 20)
#define SMALL (16u * 4096)
#define SEED_A 1

static char dev0[64];

static long long ksys(const char *name)
{
	char path[128], buf[64] = "";
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/misc/xfer/%s", name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f))
		v = atoll(buf);
	fclose(f);
	return v;
}

/* Exact values: fold the per-cpu counter deltas first (root only). */
static long long vmstat(const char *key)
{
	char line[256];
	size_t kl = strlen(key);
	long long v = -1;
	FILE *f = fopen("/proc/sys/vm/stat_refresh", "w");

	if (f) {
		fputs("1", f);
		fclose(f);
	}
	f = fopen("/proc/vmstat", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ' ')
			v = atoll(line + kl + 1);
	fclose(f);
	return v;
}

static int verbs_engine(xfer_engine **e)
{
	struct xfer_engine_attr a;

	xfer_engine_attr_init(&a);
	a.provider = "verbs";
	a.devices = dev0;
	a.num_rails = 1;
	a.idle_spin_us = 200;
	return xfer_engine_create(&a, e);
}

/* A whole udmabuf of len bytes (6.12 has it built in), or -errno. */
static int make_udmabuf(size_t len)
{
	int dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC), memfd, fd;
	struct udmabuf_create c = { .size = len };

	if (dev < 0)
		return -errno;
	memfd = memfd_create("xfer-vshare", MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, len) || fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK)) {
		close(dev);
		return -errno;
	}
	c.memfd = memfd;
	fd = ioctl(dev, UDMABUF_CREATE, &c);
	fd = fd < 0 ? -errno : fd;
	close(memfd);
	close(dev);
	return fd;
}

/*
 * Process A: registers and shares a shmem region and an anonymous one
 * through its verbs engine, and a whole udmabuf through the module's
 * ioctls (the library shares host memory only); sends the three share ids
 * (0: no udmabuf here), then answers each seed it is sent with the first
 * offset of its shmem region that does not hold that pattern (-1: all
 * do), until it is killed.
 */
static int owner(int fd, void *arg)
{
	uint8_t *shm = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint8_t *anon = mmap(NULL, SMALL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t sid[3] = { 0 }, seed;
	xfer_engine *e;
	xfer_mr *ms, *ma;
	int kfd, dfd;

	(void)arg;
	if (shm == MAP_FAILED || anon == MAP_FAILED || verbs_engine(&e))
		return 10;
	xt_fill(shm, LEN, SEED_A, 0);
	memset(anon, 7, SMALL);
	if (xfer_mr_reg(e, shm, LEN, NULL, XFER_MR_KMOD_PIN | XFER_MR_REMOTE_WRITE, &ms) ||
	    xfer_mr_share(ms, XFER_SHARE_OWNER, 0, &sid[0]))
		return 11;
	if (xfer_mr_reg(e, anon, SMALL, NULL, XFER_MR_KMOD_PIN, &ma) ||
	    xfer_mr_share(ma, XFER_SHARE_OWNER, 0, &sid[1]))
		return 12;
	dfd = make_udmabuf(SMALL);
	if (dfd >= 0) {
		struct xfer_import_dmabuf im = { .size = sizeof(im), .fd = dfd, .length = SMALL };
		struct xfer_share sh = { .size = sizeof(sh), .rule = XFER_SHARE_OWNER };

		kfd = open("/dev/xfer", O_RDWR | O_CLOEXEC);
		if (kfd < 0 || ioctl(kfd, XFER_IOC_IMPORT_DMABUF, &im))
			return 13;
		sh.handle = im.handle;
		if (ioctl(kfd, XFER_IOC_SHARE, &sh))
			return 14;
		sid[2] = sh.share_id;
		close(dfd);   /* the region holds the dma-buf */
	}
	if (xt_send(fd, sid, sizeof(sid)))
		return 15;
	while (!xt_recv_u64(fd, &seed))
		if (xt_send_u64(fd, (uint64_t)xt_verify(shm, LEN, seed, 0)))
			return 16;
	return 0;   /* the test kills A before it gets here */
}

FIXTURE(share) {
	bool loaded;
	struct xt_peer a;
	bool a_alive;
	uint64_t sid[3];
	xfer_engine *b, *c;
	uint32_t peer_c, peer_b;   /* C as B's peer, B as C's */
	uint8_t *cbuf;
	xfer_mr *m, *mc;
	xfer_rmr *to_c, *to_m;
};

static const char *module_skip(bool *loaded)
{
	const char *ko = getenv("XFER_KO");
	int fd;

	*loaded = false;
	if (!access("/dev/xfer", F_OK))
		return NULL;
	if (!ko || access(ko, R_OK))
		return "no /dev/xfer and no XFER_KO module file to load";
	fd = open(ko, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || syscall(SYS_finit_module, fd, "", 0)) {
		if (fd >= 0)
			close(fd);
		return "the module does not load in this kernel";
	}
	close(fd);
	*loaded = true;
	for (int i = 0; i < 200 && access("/dev/xfer", F_OK); i++)
		usleep(10000);   /* devtmpfs makes the node asynchronously */
	return access("/dev/xfer", F_OK) ? "module loaded, /dev/xfer did not appear" : NULL;
}

FIXTURE_SETUP(share)
{
	const char *devs = getenv("XFER_TEST_DEVICES"), *why;
	uint8_t ab[XFER_ADDR_MAX], ac[XFER_ADDR_MAX], d[XFER_DESC_MAX];
	size_t lb = sizeof(ab), lc = sizeof(ac), dl = sizeof(d);

	if (!devs || sscanf(devs, "%63[^,]", dev0) != 1 || !xt_provider_available("verbs"))
		XT_SETUP_SKIP("needs XFER_TEST_DEVICES with a verbs device");
	why = module_skip(&self->loaded);
	if (why)
		XT_SETUP_SKIP("%s", why);
	ASSERT_EQ(ksys("regions"), 0);
	/* A first: no verbs context of ours exists when it forks. */
	ASSERT_EQ(xt_spawn(&self->a, owner, NULL), 0);
	self->a_alive = true;
	ASSERT_EQ(xt_recv(self->a.fd, self->sid, sizeof(self->sid)), (ssize_t)sizeof(self->sid))
		TH_LOG("process A failed to register or share (exit %d)", xt_reap(&self->a));

	ASSERT_EQ(verbs_engine(&self->b), 0);
	ASSERT_EQ(verbs_engine(&self->c), 0);
	ASSERT_EQ(xfer_engine_address(self->b, ab, &lb), 0);
	ASSERT_EQ(xfer_engine_address(self->c, ac, &lc), 0);
	ASSERT_EQ(xfer_engine_add_peer(self->b, ac, lc, &self->peer_c), 0);
	ASSERT_EQ(xfer_engine_add_peer(self->c, ab, lb, &self->peer_b), 0);
	ASSERT_EQ(xfer_engine_connect(self->b, &self->peer_c, 1, 30000), 0);
	ASSERT_EQ(xfer_engine_connect(self->c, &self->peer_b, 1, 30000), 0);
	/* C's buffer stays out of the module, so that its counters show A's
	 * regions alone. */
	self->cbuf = xt_alloc(LEN);
	ASSERT_TRUE(self->cbuf != NULL);
	ASSERT_EQ(xfer_mr_reg(self->c, self->cbuf, LEN, NULL,
			      XFER_MR_NO_KMOD | XFER_MR_REMOTE_WRITE, &self->mc), 0);
	ASSERT_EQ(xfer_mr_descriptor(self->mc, d, &dl), 0);
	ASSERT_EQ(xfer_rmr_import(self->b, self->peer_c, d, dl, &self->to_c), 0);
}

FIXTURE_TEARDOWN(share)
{
	if (self->a_alive) {
		kill(self->a.pid, SIGKILL);
		xt_reap(&self->a);
	}
	xfer_rmr_free(self->to_m);
	xfer_rmr_free(self->to_c);
	if (self->m)
		EXPECT_EQ(xfer_mr_dereg(self->m), 0);
	if (self->mc)
		EXPECT_EQ(xfer_mr_dereg(self->mc), 0);
	if (self->b)
		xfer_engine_destroy(self->b);
	if (self->c)
		xfer_engine_destroy(self->c);
	if (access("/dev/xfer", F_OK))
		return;
	/* Everything released: the module's pins and rxe's. */
	EXPECT_EQ(ksys("regions"), 0);
	EXPECT_EQ(ksys("pinned_bytes"), 0);
	EXPECT_EQ(ksys("contexts"), 0);
	EXPECT_EQ(ksys("shares"), 0);
	EXPECT_EQ(ksys("exports"), 0);
	EXPECT_EQ(vmstat("nr_foll_pin_acquired"), vmstat("nr_foll_pin_released"));
	if (self->loaded)
		EXPECT_EQ(syscall(SYS_delete_module, "xfer", O_NONBLOCK), 0);
}

static int write_wait(xfer_engine *e, xfer_mr *src, xfer_rmr *dst)
{
	xfer_op *op;
	int ret = xfer_write(e, src, 0, dst, 0, LEN, 0, 0, NULL, &op);

	if (ret)
		return ret;
	ret = xfer_op_wait(op, 60000);
	xfer_op_release(op);
	return ret;
}

/* What A finds in its own memory: -1 when all of it holds seed. */
static int64_t ask_a(struct xt_peer *a, uint64_t seed)
{
	uint64_t r;

	if (xt_send_u64(a->fd, seed) || xt_recv_u64(a->fd, &r))
		return -2;
	return (int64_t)r;
}

TEST_F_TIMEOUT(share, verbs_engine_registers_opened_region_and_outlives_owner, 240)
{
	uint8_t d[XFER_DESC_MAX];
	size_t dl = sizeof(d);
	long long regions, pinned;
	xfer_mr *x;
	int ret;

	regions = ksys("regions");
	pinned = ksys("pinned_bytes");
	EXPECT_EQ(regions, self->sid[2] ? 3 : 2);
	EXPECT_EQ(pinned, LEN + SMALL);

	ret = xfer_mr_open_shared(self->b, self->sid[0], XFER_MR_REMOTE_WRITE, &self->m);
	ASSERT_EQ(ret, 0) TH_LOG("open_shared on verbs: %s", xfer_strerror(ret));
	ASSERT_EQ(xfer_mr_len(self->m), LEN);
	EXPECT_EQ(xt_verify(xfer_mr_addr(self->m), LEN, SEED_A, 0), -1);
	ASSERT_EQ(xfer_mr_descriptor(self->m, d, &dl), 0);
	ASSERT_EQ(xfer_rmr_import(self->c, self->peer_b, d, dl, &self->to_m), 0);

	/* B: from A's region into C. */
	ASSERT_EQ(write_wait(self->b, self->m, self->to_c), 0);
	EXPECT_EQ(xt_verify(self->cbuf, LEN, SEED_A, 0), -1);
	/* C: into A's region through B's registration; A sees it. */
	xt_fill(self->cbuf, LEN, 2, 0);
	ASSERT_EQ(write_wait(self->c, self->mc, self->to_m), 0);
	EXPECT_EQ(ask_a(&self->a, 2), -1);
	EXPECT_EQ(xt_verify(xfer_mr_addr(self->m), LEN, 2, 0), -1);

	/* Anonymous memory and a dma-buf need ibv_reg_dmabuf_mr: rxe has none. */
	for (int i = 1; i < 3; i++) {
		if (!self->sid[i]) {
			TH_LOG("no udmabuf in this kernel: dma-buf region not tried");
			continue;
		}
		ret = xfer_mr_open_shared(self->b, self->sid[i], XFER_MR_REMOTE_WRITE, &x);
		TH_LOG("%s region on %s: %s", i == 1 ? "anonymous" : "dma-buf", dev0,
		       xfer_strerror(ret));
		EXPECT_EQ(ret, -EOPNOTSUPP);
		EXPECT_TRUE(x == NULL);
		EXPECT_EQ(ksys("regions"), regions);
		EXPECT_EQ(ksys("exports"), 0);
		EXPECT_EQ(ksys("pinned_bytes"), pinned);
	}

	/* A dies while B holds its region. */
	ASSERT_EQ(kill(self->a.pid, SIGKILL), 0);
	EXPECT_EQ(xt_reap(&self->a), 128 + SIGKILL);
	self->a_alive = false;
	EXPECT_EQ(ksys("shares"), 0);
	EXPECT_EQ(ksys("regions"), 1);
	EXPECT_EQ(ksys("pinned_bytes"), LEN);

	xt_fill(xfer_mr_addr(self->m), LEN, 3, 0);
	ASSERT_EQ(write_wait(self->b, self->m, self->to_c), 0);
	EXPECT_EQ(xt_verify(self->cbuf, LEN, 3, 0), -1);
	xt_fill(self->cbuf, LEN, 4, 0);
	ASSERT_EQ(write_wait(self->c, self->mc, self->to_m), 0);
	EXPECT_EQ(xt_verify(xfer_mr_addr(self->m), LEN, 4, 0), -1);

	/* B lets go: the region and its pins with it. */
	xfer_rmr_free(self->to_m);
	self->to_m = NULL;
	ASSERT_EQ(xfer_mr_dereg(self->m), 0);
	self->m = NULL;
	EXPECT_EQ(ksys("regions"), 0);
	EXPECT_EQ(ksys("pinned_bytes"), 0);
}

TEST_HARNESS_MAIN
