/* SPDX-License-Identifier: MIT */
/*
 * Two rxe devices on two dummy netdevs standing for two NICs, through the
 * public API with provider "verbs" and devices "rxe0,rxe1":
 *  - the engine reports the verbs provider and one rail per named device;
 *  - a striped 8 MiB write and a 2000-page paged write land byte-exact, and
 *    both devices carried their share: the engine's per-rail byte counters
 *    and the kernel's per-device counters (ports/1/counters/port_xmit_data,
 *    or hw_counters/sent_pkts where rxe has no PMA counters) both grow on
 *    rxe0 AND rxe1 by at least a third of the payload each;
 *  - dma-buf memory is refused with -EOPNOTSUPP (rxe has no dma-buf MRs);
 *  - with a GPU given and no devices named, the engine opens the NICs nearest
 *    that GPU in a described PCIe tree (tests/common/xt_topo.h, through
 *    HWLOC_XMLFILE): GPU 0 gets rxe1 (its switch), GPU 1 rxe0, two rails for
 *    GPU 0 rxe1 then rxe0; a 1 MiB write between two GPU-0 engines lands
 *    byte-exact and leaves through rxe1 (rxe on dummy netdevs reaches only
 *    its own device: the guest routes a packet for another one to lo).
 * Skips without two RDMA devices.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "harness.h"
#include "xt_target.h"
#include "xt_topo.h"

#define REGION (16u << 20)

static char dev[2][64];

/* Bytes the device sent so far, from sysfs; -1 when it shows no counter. */
static int64_t dev_tx_bytes(const char *name)
{
	char path[256];
	unsigned long long v;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/counters/port_xmit_data", name);
	if ((f = fopen(path, "r"))) {
		int ok = fscanf(f, "%llu", &v) == 1;

		fclose(f);
		if (ok)
			return (int64_t)v * 4;   /* PMA counts 4-byte words */
	}
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/hw_counters/sent_pkts", name);
	if ((f = fopen(path, "r"))) {
		int ok = fscanf(f, "%llu", &v) == 1;

		fclose(f);
		if (ok)
			return (int64_t)v * 1024;   /* packets of one path MTU (1024 on dummy netdevs) */
	}
	return -1;
}

/* An engine on both devices and a target process with a REGION. */
FIXTURE(rails) {
	struct xt_link l;
	void *srcbuf;
	struct xt_verify_req *req;
	int64_t tx0[2];
	struct xfer_rail_stats st0[2];
};

static const char *two_devices_skip(void)
{
	const char *devs = getenv("XFER_TEST_DEVICES");

	if (!devs || sscanf(devs, "%63[^,],%63s", dev[0], dev[1]) != 2 || !xt_provider_available("verbs"))
		return "needs XFER_TEST_DEVICES=dev0,dev1 with verbs devices";
	return NULL;
}

FIXTURE_SETUP(rails)
{
	struct xt_target_arg ta = { "verbs", 2, REGION };
	const char *why = two_devices_skip();

	if (why)
		XT_SETUP_SKIP("%s", why);
	self->req = calloc(1, sizeof(*self->req));
	self->srcbuf = xt_alloc(REGION);
	ASSERT_TRUE(self->req && self->srcbuf);
	xt_fill(self->srcbuf, REGION, 99, 0);
	XT_LINK_OPEN(&self->l, &ta, 10000, self->srcbuf, REGION);
}

FIXTURE_TEARDOWN(rails)
{
	/* the target exits 0 only when every request verified */
	EXPECT_EQ(0, xt_link_close(&self->l)) TH_LOG("target process");
	free(self->srcbuf);
	free(self->req);
}

static void snap(FIXTURE_DATA(rails) *c)
{
	for (int i = 0; i < 2; i++) {
		c->tx0[i] = dev_tx_bytes(dev[i]);
		xfer_engine_stats(c->l.e, (uint32_t)i, &c->st0[i]);
	}
}

/* Both rails moved at least `min` bytes since snap(). */
static void check_split(struct __test_metadata *_metadata, FIXTURE_DATA(rails) *c, uint64_t min,
			const char *what)
{
	for (int i = 0; i < 2; i++) {
		struct xfer_rail_stats st;
		int64_t tx = dev_tx_bytes(dev[i]);

		XT_EXPECT_OK(xfer_engine_stats(c->l.e, (uint32_t)i, &st));
		uint64_t moved = st.bytes_completed - c->st0[i].bytes_completed;
		EXPECT_TRUE(moved >= min) TH_LOG("%s: engine rail %d (%s) completed %llu bytes, want >= %llu",
						 what, i, dev[i], (unsigned long long)moved,
						 (unsigned long long)min);
		EXPECT_TRUE(tx >= 0 && c->tx0[i] >= 0) TH_LOG("%s: no sysfs counter for %s", what, dev[i]);
		if (tx >= 0 && c->tx0[i] >= 0)
			EXPECT_TRUE((uint64_t)(tx - c->tx0[i]) >= min)
				TH_LOG("%s: %s sent %lld bytes, want >= %llu", what, dev[i],
				       (long long)(tx - c->tx0[i]), (unsigned long long)min);
		TH_LOG("%s: %s engine %llu bytes, device counter +%lld bytes", what, dev[i],
		       (unsigned long long)moved, (long long)(tx - c->tx0[i]));
	}
}

/* The engine reports provider verbs and one rail per device. */
TEST_F(rails, query)
{
	struct xfer_engine_info info = { .size = sizeof(info) };

	XT_ASSERT_OK(xfer_engine_query(self->l.e, &info));
	EXPECT_STREQ("verbs", info.provider);
	EXPECT_EQ(2, info.num_rails);
	EXPECT_TRUE(strcmp(info.rail_names[0], dev[0]) == 0 && strcmp(info.rail_names[1], dev[1]) == 0)
		TH_LOG("rails %s,%s", info.rail_names[0], info.rail_names[1]);
	EXPECT_EQ(32, info.imm_bits);
}

/* A striped 8 MiB write: both devices carry >= 1/3, bytes exact. */
TEST_F_TIMEOUT(rails, striped, 60)   /* its op wait is bounded at 30 s */
{
	const uint64_t len = 8u << 20;
	xfer_op *op;

	snap(self);
	*self->req = (struct xt_verify_req){ .num_segs = 1, .imm = 31, .imm_count = 1 };
	self->req->segs[0] = (struct xt_seg){ 4096, len, 99, 5 };
	XT_ASSERT_OK(xfer_write(self->l.e, self->l.src, 5, self->l.dst, 4096, len, XFER_OP_IMM, 31, NULL, &op));
	EXPECT_EQ(0, xt_target_verify(self->l.t.fd, self->req));
	EXPECT_EQ(0, xfer_op_wait(op, 30000));
	xfer_op_release(op);
	check_split(_metadata, self, len / 3, "striped 8 MiB");
}

/* 2000 paged 4 KiB writes: both devices carry >= 1/3, bytes exact. */
TEST_F_TIMEOUT(rails, paged, 60)   /* its op wait is bounded at 30 s */
{
	enum { NP = 2000, PS = 4096 };
	uint32_t *sp = malloc(NP * sizeof(*sp)), *dp = malloc(NP * sizeof(*dp));
	xfer_op *op;

	ASSERT_TRUE(sp && dp);
	snap(self);
	*self->req = (struct xt_verify_req){ .num_segs = NP, .imm = 32, .imm_count = 1 };
	for (uint32_t i = 0; i < NP; i++) {
		sp[i] = (i * 7u) % (REGION / PS);
		dp[i] = NP - 1 - i;   /* reversed: distinct destination pages */
		self->req->segs[i] = (struct xt_seg){ (uint64_t)dp[i] * PS, PS, 99, (uint64_t)sp[i] * PS };
	}
	struct xfer_paged p = {
		.size = sizeof(p), .flags = XFER_OP_IMM, .src = self->l.src, .dst = self->l.dst,
		.src_pages = sp, .dst_pages = dp, .num_pages = NP, .imm = 32, .page_size = PS,
	};
	int ret = xfer_write_paged(self->l.e, &p, NULL, &op);

	free(sp);
	free(dp);
	XT_ASSERT_OK(ret);
	EXPECT_EQ(0, xt_target_verify(self->l.t.fd, self->req));
	EXPECT_EQ(0, xfer_op_wait(op, 30000));
	xfer_op_release(op);
	check_split(_metadata, self, (uint64_t)NP * PS / 3, "2000 paged 4 KiB");
}

/* dma-buf memory is refused with -EOPNOTSUPP. */
TEST_F(rails, dmabuf)
{
	int fd = memfd_create("xfer-dmabuf", 0);
	struct xfer_mem m = { .size = sizeof(m), .kind = XFER_MEM_DMABUF, .dmabuf_fd = fd };
	xfer_mr *mr = NULL;
	void *buf = xt_alloc(4096);

	EXPECT_TRUE(fd >= 0 && ftruncate(fd, 4096) == 0) TH_LOG("memfd");
	EXPECT_EQ(-EOPNOTSUPP, xfer_mr_reg(self->l.e, buf, 4096, &m, XFER_MR_NO_KMOD, &mr));
	EXPECT_TRUE(mr == NULL) TH_LOG("mr set on error");
	close(fd);
	free(buf);
}

static int engine_near_gpu(int gpu, uint32_t rails, xfer_engine **e)
{
	struct xfer_engine_attr a;

	xfer_engine_attr_init(&a);
	a.provider = "verbs";
	a.gpu = gpu;
	a.num_rails = rails;
	a.idle_spin_us = 200;
	return xfer_engine_create(&a, e);
}

static void check_rails(struct __test_metadata *_metadata, xfer_engine *e, const char *want0,
			const char *want1)
{
	struct xfer_engine_info info = { .size = sizeof(info) };

	XT_EXPECT_OK(xfer_engine_query(e, &info));
	EXPECT_TRUE(strcmp(info.rail_names[0], want0) == 0) TH_LOG("rail 0 on %s, want %s",
								     info.rail_names[0], want0);
	if (want1)
		EXPECT_TRUE(info.num_rails == 2 && strcmp(info.rail_names[1], want1) == 0)
			TH_LOG("rail 1 on %s, want %s", info.rail_names[1], want1);
}

/* No devices named: the NICs nearest the GPU in a described PCIe tree. */
FIXTURE(topology) {
	char path[32];
	xfer_engine *a, *a2, *b, *two;
	uint8_t *src, *dst;
	xfer_mr *smr, *dmr;
	xfer_rmr *rmr;
};

FIXTURE_SETUP(topology)
{
	const char *why = two_devices_skip();

	if (why)
		XT_SETUP_SKIP("%s", why);
}

FIXTURE_TEARDOWN(topology)
{
	if (self->path[0])
		xt_topo_remove(self->path);
	xfer_rmr_free(self->rmr);
	xfer_mr_dereg(self->smr);
	xfer_mr_dereg(self->dmr);
	xfer_engine_destroy(self->two);
	xfer_engine_destroy(self->b);
	xfer_engine_destroy(self->a2);
	xfer_engine_destroy(self->a);
	free(self->src);
	free(self->dst);
}

/* GPU 0 gets rxe1 (its switch), GPU 1 rxe0, two rails for GPU 0 rxe1 then
 * rxe0; a 1 MiB write between two GPU-0 engines lands byte-exact and
 * leaves through rxe1. */
TEST_F_TIMEOUT(topology, nearest_nics_carry_the_write, 60)   /* op wait: 30 s */
{
	const size_t len = 1u << 20;
	xfer_op *op = NULL;

	XT_ASSERT_OK(xt_topo_install(self->path));
	XT_EXPECT_OK(engine_near_gpu(0, 1, &self->a));
	XT_EXPECT_OK(engine_near_gpu(0, 1, &self->a2));
	XT_EXPECT_OK(engine_near_gpu(1, 1, &self->b));
	XT_EXPECT_OK(engine_near_gpu(0, 2, &self->two));
	xt_topo_remove(self->path);
	self->path[0] = 0;
	ASSERT_TRUE(self->a && self->a2 && self->b && self->two);
	check_rails(_metadata, self->a, "rxe1", NULL);
	check_rails(_metadata, self->a2, "rxe1", NULL);
	check_rails(_metadata, self->b, "rxe0", NULL);
	check_rails(_metadata, self->two, "rxe1", "rxe0");

	/* the chosen NIC carries traffic: a -> a2, both on rxe1 */
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	uint32_t pa, pb;
	int64_t tx0 = dev_tx_bytes("rxe1");

	self->src = xt_alloc(len);
	self->dst = xt_alloc(len);
	ASSERT_TRUE(self->src && self->dst);
	xt_fill(self->src, len, 7, 0);
	XT_ASSERT_OK(xfer_engine_address(self->a2, addr, &alen));
	XT_ASSERT_OK(xfer_engine_add_peer(self->a, addr, alen, &pb));
	alen = sizeof(addr);
	XT_ASSERT_OK(xfer_engine_address(self->a, addr, &alen));
	XT_ASSERT_OK(xfer_engine_add_peer(self->a2, addr, alen, &pa));
	XT_ASSERT_OK(xfer_mr_reg(self->a, self->src, len, NULL, 0, &self->smr));
	XT_ASSERT_OK(xfer_mr_reg(self->a2, self->dst, len, NULL, XFER_MR_REMOTE_WRITE, &self->dmr));
	XT_ASSERT_OK(xfer_mr_descriptor(self->dmr, desc, &dlen));
	XT_ASSERT_OK(xfer_rmr_import(self->a, pb, desc, dlen, &self->rmr));
	XT_ASSERT_OK(xfer_write(self->a, self->smr, 0, self->rmr, 0, len, 0, 0, NULL, &op));
	EXPECT_EQ(0, xfer_op_wait(op, 30000));
	xfer_op_release(op);
	EXPECT_TRUE(memcmp(self->src, self->dst, len) == 0) TH_LOG("1 MiB over the topology's rails differs");
	int64_t tx = dev_tx_bytes("rxe1");

	EXPECT_TRUE(tx >= 0 && tx0 >= 0 && (uint64_t)(tx - tx0) >= len)
		TH_LOG("rxe1 sent %lld bytes, want >= %zu", (long long)(tx - tx0), len);
}

TEST_HARNESS_MAIN
