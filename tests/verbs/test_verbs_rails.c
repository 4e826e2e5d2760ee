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
 * Skips (77) without two RDMA devices.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "xt.h"
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

struct ctx {
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *dst;
	int fd;
	struct xt_verify_req *req;
	int64_t tx0[2];
	struct xfer_rail_stats st0[2];
};

static void snap(struct ctx *c)
{
	for (int i = 0; i < 2; i++) {
		c->tx0[i] = dev_tx_bytes(dev[i]);
		xfer_engine_stats(c->e, (uint32_t)i, &c->st0[i]);
	}
}

/* Both rails moved at least `min` bytes since snap(). */
static void check_split(struct ctx *c, uint64_t min, const char *what)
{
	for (int i = 0; i < 2; i++) {
		struct xfer_rail_stats st;
		int64_t tx = dev_tx_bytes(dev[i]);

		XT_OK(xfer_engine_stats(c->e, (uint32_t)i, &st));
		uint64_t moved = st.bytes_completed - c->st0[i].bytes_completed;
		XT_CHECK(moved >= min, "%s: engine rail %d (%s) completed %llu bytes, want >= %llu",
			 what, i, dev[i], (unsigned long long)moved, (unsigned long long)min);
		XT_CHECK(tx >= 0 && c->tx0[i] >= 0, "%s: no sysfs counter for %s", what, dev[i]);
		if (tx >= 0 && c->tx0[i] >= 0)
			XT_CHECK((uint64_t)(tx - c->tx0[i]) >= min,
				 "%s: %s sent %lld bytes, want >= %llu", what, dev[i],
				 (long long)(tx - c->tx0[i]), (unsigned long long)min);
		printf("# %s: %s engine %llu bytes, device counter +%lld bytes\n", what, dev[i],
		       (unsigned long long)moved, (long long)(tx - c->tx0[i]));
	}
}

static void test_query(struct ctx *c)
{
	struct xfer_engine_info info = { .size = sizeof(info) };

	XT_OK(xfer_engine_query(c->e, &info));
	XT_CHECK(strcmp(info.provider, "verbs") == 0, "provider %s", info.provider);
	XT_EQ(info.num_rails, 2);
	XT_CHECK(strcmp(info.rail_names[0], dev[0]) == 0 && strcmp(info.rail_names[1], dev[1]) == 0,
		 "rails %s,%s", info.rail_names[0], info.rail_names[1]);
	XT_EQ(info.imm_bits, 32);
}

static void test_striped(struct ctx *c)
{
	const uint64_t len = 8u << 20;
	xfer_op *op;

	snap(c);
	*c->req = (struct xt_verify_req){ .num_segs = 1, .imm = 31, .imm_count = 1 };
	c->req->segs[0] = (struct xt_seg){ 4096, len, 99, 5 };
	XT_OK(xfer_write(c->e, c->src, 5, c->dst, 4096, len, XFER_OP_IMM, 31, NULL, &op));
	XT_EQ(xt_target_verify(c->fd, c->req), 0);
	XT_EQ(xfer_op_wait(op, 30000), 0);
	xfer_op_release(op);
	check_split(c, len / 3, "striped 8 MiB");
}

static void test_paged(struct ctx *c)
{
	enum { NP = 2000, PS = 4096 };
	uint32_t *sp = malloc(NP * sizeof(*sp)), *dp = malloc(NP * sizeof(*dp));
	xfer_op *op;

	snap(c);
	*c->req = (struct xt_verify_req){ .num_segs = NP, .imm = 32, .imm_count = 1 };
	for (uint32_t i = 0; i < NP; i++) {
		sp[i] = (i * 7u) % (REGION / PS);
		dp[i] = NP - 1 - i;   /* reversed: distinct destination pages */
		c->req->segs[i] = (struct xt_seg){ (uint64_t)dp[i] * PS, PS, 99, (uint64_t)sp[i] * PS };
	}
	struct xfer_paged p = {
		.size = sizeof(p), .flags = XFER_OP_IMM, .src = c->src, .dst = c->dst,
		.src_pages = sp, .dst_pages = dp, .num_pages = NP, .imm = 32, .page_size = PS,
	};
	XT_OK(xfer_write_paged(c->e, &p, NULL, &op));
	XT_EQ(xt_target_verify(c->fd, c->req), 0);
	XT_EQ(xfer_op_wait(op, 30000), 0);
	xfer_op_release(op);
	check_split(c, (uint64_t)NP * PS / 3, "2000 paged 4 KiB");
	free(sp);
	free(dp);
}

static void test_dmabuf(struct ctx *c)
{
	int fd = memfd_create("xfer-dmabuf", 0);
	struct xfer_mem m = { .size = sizeof(m), .kind = XFER_MEM_DMABUF, .dmabuf_fd = fd };
	xfer_mr *mr = NULL;
	void *buf = xt_alloc(4096);

	XT_CHECK(fd >= 0 && ftruncate(fd, 4096) == 0, "memfd");
	XT_EQ(xfer_mr_reg(c->e, buf, 4096, &m, XFER_MR_NO_KMOD, &mr), -EOPNOTSUPP);
	XT_CHECK(mr == NULL, "mr set on error");
	close(fd);
	free(buf);
}

static xfer_engine *engine_near_gpu(int gpu, uint32_t rails)
{
	struct xfer_engine_attr a;
	xfer_engine *e = NULL;

	xfer_engine_attr_init(&a);
	a.provider = "verbs";
	a.gpu = gpu;
	a.num_rails = rails;
	a.idle_spin_us = 200;
	XT_OK(xfer_engine_create(&a, &e));
	return e;
}

static void check_rails(xfer_engine *e, const char *want0, const char *want1)
{
	struct xfer_engine_info info = { .size = sizeof(info) };

	XT_OK(xfer_engine_query(e, &info));
	XT_CHECK(strcmp(info.rail_names[0], want0) == 0, "rail 0 on %s, want %s",
		 info.rail_names[0], want0);
	if (want1)
		XT_CHECK(info.num_rails == 2 && strcmp(info.rail_names[1], want1) == 0,
			 "rail 1 on %s, want %s", info.rail_names[1], want1);
}

static void test_topology(struct ctx *c)
{
	const size_t len = 1u << 20;
	char path[32];
	xfer_engine *a = NULL, *a2 = NULL, *b = NULL, *two = NULL;

	(void)c;
	XT_OK(xt_topo_install(path));
	a = engine_near_gpu(0, 1);
	a2 = engine_near_gpu(0, 1);
	b = engine_near_gpu(1, 1);
	two = engine_near_gpu(0, 2);
	xt_topo_remove(path);
	if (!a || !a2 || !b || !two)
		goto out;
	check_rails(a, "rxe1", NULL);
	check_rails(a2, "rxe1", NULL);
	check_rails(b, "rxe0", NULL);
	check_rails(two, "rxe1", "rxe0");

	/* the chosen NIC carries traffic: a -> a2, both on rxe1 */
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	uint32_t pa, pb;
	uint8_t *src = xt_alloc(len), *dst = xt_alloc(len);
	xfer_mr *smr = NULL, *dmr = NULL;
	xfer_rmr *rmr = NULL;
	xfer_op *op = NULL;
	int64_t tx0 = dev_tx_bytes("rxe1");

	xt_fill(src, len, 7, 0);
	XT_OK(xfer_engine_address(a2, addr, &alen));
	XT_OK(xfer_engine_add_peer(a, addr, alen, &pb));
	alen = sizeof(addr);
	XT_OK(xfer_engine_address(a, addr, &alen));
	XT_OK(xfer_engine_add_peer(a2, addr, alen, &pa));
	XT_OK(xfer_mr_reg(a, src, len, NULL, 0, &smr));
	XT_OK(xfer_mr_reg(a2, dst, len, NULL, XFER_MR_REMOTE_WRITE, &dmr));
	XT_OK(xfer_mr_descriptor(dmr, desc, &dlen));
	XT_OK(xfer_rmr_import(a, pb, desc, dlen, &rmr));
	if (smr && rmr) {
		XT_OK(xfer_write(a, smr, 0, rmr, 0, len, 0, 0, NULL, &op));
		if (op) {
			XT_EQ(xfer_op_wait(op, 30000), 0);
			xfer_op_release(op);
		}
		XT_CHECK(memcmp(src, dst, len) == 0, "1 MiB over the topology's rails differs");
		int64_t tx = dev_tx_bytes("rxe1");

		XT_CHECK(tx >= 0 && tx0 >= 0 && (uint64_t)(tx - tx0) >= len,
			 "rxe1 sent %lld bytes, want >= %zu", (long long)(tx - tx0), len);
	}
	xfer_rmr_free(rmr);
	xfer_mr_dereg(smr);
	xfer_mr_dereg(dmr);
	free(src);
	free(dst);
out:
	xfer_engine_destroy(two);
	xfer_engine_destroy(b);
	xfer_engine_destroy(a2);
	xfer_engine_destroy(a);
}

int main(void)
{
	const char *devs = getenv("XFER_TEST_DEVICES");
	struct xt_target_arg ta = { "verbs", 2, REGION };
	struct { const char *name; void (*fn)(struct ctx *); } tests[] = {
		{ "engine reports provider verbs and one rail per device", test_query },
		{ "striped 8 MiB write: both devices carry >= 1/3, bytes exact", test_striped },
		{ "2000 paged 4 KiB writes: both devices carry >= 1/3, bytes exact", test_paged },
		{ "dma-buf memory refused with -EOPNOTSUPP", test_dmabuf },
		{ "no devices named: the NICs nearest the GPU, and they carry the write", test_topology },
	};
	struct ctx c = { 0 };
	struct xt_peer child;
	uint32_t peer;

	xt_plan();
	if (!devs || sscanf(devs, "%63[^,],%63s", dev[0], dev[1]) != 2 || !xt_provider_available("verbs")) {
		xt_result("two rails on two RDMA devices", true, "needs XFER_TEST_DEVICES=dev0,dev1 with verbs devices");
		return xt_done();
	}
	c.req = calloc(1, sizeof(*c.req));
	void *src = xt_alloc(REGION);
	xt_fill(src, REGION, 99, 0);
	if (xt_spawn(&child, xt_target_main, &ta))
		return 1;
	c.fd = child.fd;
	XT_OK(xt_engine("verbs", 2, 10000, &c.e));
	XT_OK(xt_connect(c.e, c.fd, &peer));
	XT_OK(xfer_mr_reg(c.e, src, REGION, NULL, 0, &c.src));
	XT_OK(xt_recv_rmr(c.e, peer, c.fd, &c.dst));
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int before = xt_failures;

		tests[i].fn(&c);
		xt_result(tests[i].name, xt_failures == before, NULL);
	}
	xt_target_quit(c.fd);
	XT_EQ(xt_reap(&child), 0);
	xfer_rmr_free(c.dst);
	xfer_mr_dereg(c.src);
	xfer_engine_destroy(c.e);
	free(src);
	free(c.req);
	return xt_done();
}
