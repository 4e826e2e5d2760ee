/* SPDX-License-Identifier: MIT */
/*
 * An idle receiver, as in disaggregated inference: a prefill process (this
 * one) writes a paged KV cache, LAYERS x PAGES pages, into a decode process
 * (a child) that sleeps in xfer_imm_wait layer by layer, as an application
 * does: no busy polling, its engine's worker idle when the writes start.
 * Each layer is one xfer_write_paged with XFER_OP_IMM and its own immediate
 * value, its pages scattered over the target region (a permutation), on
 * every transport variant, with 4 KiB and 16 KiB pages.
 *
 * The decode process checks, when each layer's wait returns, that every
 * byte of that layer is there; at the end, that every immediate was counted
 * exactly once (none left over after a settling pause). The elapsed times
 * (first and last layer's wait returning, after the first submission) are
 * logged per variant, not asserted: they depend on the machine's load. The
 * layers whose immediate had already arrived when layer 0's wait returned
 * are logged too: a receiver that progresses only when it polls sees them
 * bunched at the end.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define LAYERS 32
#define PAGES 64                       /* per layer */
#define NPAGES (LAYERS * PAGES)        /* a power of two: see dst_page */
#define IMM_BASE 0x1d1e0000u           /* layer k's immediate: IMM_BASE + k */
#define SEED 0x5eed1d1eull
#define WAIT_MS 60000                  /* per layer: bounds a hang, no timing */

struct idle_arg {
	const char *prov;
	uint32_t rails;
	uint64_t page_size;
};

/* What the decode process reports. */
struct idle_report {
	int32_t status;         /* 0, or the first failing call's error */
	int32_t bad_layer;      /* first layer with a wrong byte or failed wait, or -1 */
	uint32_t dup_layers;    /* layers with arrivals left over after their wait */
	uint32_t ahead_at_first; /* later layers already counted when layer 0 returned */
	uint64_t done_ns[LAYERS]; /* when each layer's wait returned (CLOCK_MONOTONIC) */
};

/* Page j of the cache (layer j / PAGES) goes to this page of the target:
 * an odd multiplier modulo a power of two is a permutation. */
static uint32_t dst_page(uint32_t j)
{
	return (j * 37u + 11u) & (NPAGES - 1);
}

/* The decode process: register the cache, then wait for each layer. */
static int decode(int fd, void *argp)
{
	const struct idle_arg *a = argp;
	uint64_t ps = a->page_size, len = NPAGES * ps;
	struct idle_report rep = { .bad_layer = -1 };
	uint8_t *buf = xt_alloc(len), *want = xt_alloc(len);
	xfer_engine *e = NULL;
	xfer_mr *mr = NULL;
	uint32_t peer;
	uint64_t ack;
	int ret;

	if (!buf || !want)
		return 1;
	/* The expected image, ready before any byte comes: the checks after
	 * each wait are memcmp, fast beside the transfer they check. */
	xt_fill(want, len, SEED, 0);
	ret = xt_engine(a->prov, a->rails, 30000, &e);
	if (!ret)
		ret = xt_connect(e, fd, &peer);
	if (!ret)
		ret = xfer_mr_reg(e, buf, len, NULL, XFER_MR_REMOTE_WRITE, &mr);
	if (!ret)
		ret = xt_send_mr(fd, mr);
	for (uint32_t k = 0; k < LAYERS && !ret; k++) {
		ret = xfer_imm_wait(e, IMM_BASE + k, 1, WAIT_MS);
		rep.done_ns[k] = xfer_now_ns();
		if (ret) {
			rep.bad_layer = (int32_t)k;
			break;
		}
		if (k == 0)
			for (uint32_t m = 1; m < LAYERS; m++)
				rep.ahead_at_first += xfer_imm_count(e, IMM_BASE + m) > 0;
		for (uint32_t i = 0; i < PAGES && rep.bad_layer < 0; i++) {
			uint32_t j = k * PAGES + i;

			if (memcmp(buf + dst_page(j) * ps, want + j * ps, ps) != 0)
				rep.bad_layer = (int32_t)k;
		}
	}
	/* A duplicate arrival would show up as a count left over. */
	usleep(100000);
	for (uint32_t k = 0; k < LAYERS && e; k++)
		rep.dup_layers += xfer_imm_count(e, IMM_BASE + k) != 0;
	rep.status = ret;
	xt_send(fd, &rep, sizeof(rep));
	xt_recv_u64(fd, &ack);   /* the sender is done with our region */
	if (mr)
		xfer_mr_dereg(mr);
	xfer_engine_destroy(e);
	free(buf);
	free(want);
	return ret || rep.bad_layer >= 0 || rep.dup_layers ? 2 : 0;
}

FIXTURE(idle) {
	struct xt_peer child;
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *dst;
	void *buf;
};

FIXTURE_VARIANT(idle) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(idle);

FIXTURE_SETUP(idle)
{
	XT_REQUIRE_TRANSPORT();
	self->child.pid = -1;
}

FIXTURE_TEARDOWN(idle)
{
	if (self->child.pid > 0) {   /* a test that stopped early */
		kill(self->child.pid, SIGKILL);
		xt_reap(&self->child);
	}
	xfer_rmr_free(self->dst);
	if (self->src)
		xfer_mr_dereg(self->src);
	xfer_engine_destroy(self->e);
	free(self->buf);
}

static void kv_cache(struct __test_metadata *_metadata, FIXTURE_DATA(idle) *self,
		     const FIXTURE_VARIANT(idle) *variant, uint64_t ps)
{
	struct idle_arg arg = { variant->provider, variant->rails, ps };
	uint32_t src_pages[PAGES], dst_pages[PAGES];
	xfer_op *ops[LAYERS] = { 0 };
	struct idle_report rep;
	uint32_t peer;
	uint64_t t0, sent;

	/* the child first: see test_local.c on forking beside a worker thread */
	XT_ASSERT_OK(xt_spawn(&self->child, decode, &arg));
	self->buf = xt_alloc(NPAGES * ps);
	ASSERT_TRUE(self->buf != NULL);
	xt_fill(self->buf, NPAGES * ps, SEED, 0);
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 30000, &self->e));
	XT_ASSERT_OK(xt_connect(self->e, self->child.fd, &peer));
	XT_ASSERT_OK(xfer_mr_reg(self->e, self->buf, NPAGES * ps, NULL, 0, &self->src));
	XT_ASSERT_OK(xt_recv_rmr(self->e, peer, self->child.fd, &self->dst));
	/* Let the decode process settle in its first wait: its worker stops
	 * spinning (idle_spin_us) and sleeps, the case under test. */
	usleep(50000);

	t0 = xfer_now_ns();
	for (uint32_t k = 0; k < LAYERS; k++) {
		struct xfer_paged p = {
			.size = sizeof(p), .flags = XFER_OP_IMM, .src = self->src, .dst = self->dst,
			.src_pages = src_pages, .dst_pages = dst_pages, .num_pages = PAGES,
			.imm = IMM_BASE + k, .page_size = ps,
		};

		for (uint32_t i = 0; i < PAGES; i++) {
			src_pages[i] = k * PAGES + i;
			dst_pages[i] = dst_page(k * PAGES + i);
		}
		XT_EXPECT_OK(xfer_write_paged(self->e, &p, NULL, &ops[k]));
	}
	for (uint32_t k = 0; k < LAYERS; k++) {
		if (!ops[k])
			continue;
		XT_EXPECT_OK(xfer_op_wait(ops[k], WAIT_MS));
		xfer_op_release(ops[k]);
	}
	sent = xfer_now_ns();

	ASSERT_EQ((ssize_t)sizeof(rep), xt_recv(self->child.fd, &rep, sizeof(rep)))
		TH_LOG("no report from the decode process");
	EXPECT_EQ(0, rep.status) TH_LOG("decode process: %s", xfer_strerror(rep.status));
	EXPECT_EQ(-1, rep.bad_layer) TH_LOG("layer %d incomplete when its wait returned",
					     rep.bad_layer);
	EXPECT_EQ(0u, rep.dup_layers) TH_LOG("layers whose immediate was counted twice");
	if (!rep.status && rep.bad_layer < 0)
		TH_LOG("%s %u rail%s, %u x %u pages of %llu B: layer 0 after %.1f ms, last "
		       "layer after %.1f ms (sender done after %.1f ms); %u of %u later layers "
		       "already there when layer 0 returned", variant->provider, variant->rails,
		       variant->rails > 1 ? "s" : "", LAYERS, PAGES, (unsigned long long)ps,
		       (double)(rep.done_ns[0] - t0) / 1e6,
		       (double)(rep.done_ns[LAYERS - 1] - t0) / 1e6, (double)(sent - t0) / 1e6,
		       rep.ahead_at_first, LAYERS - 1);
	xt_send_u64(self->child.fd, 1);
	EXPECT_EQ(0, xt_reap(&self->child)) TH_LOG("decode process exit status");
	self->child.pid = -1;
}

/* 8 MiB: the case of issue 12, 3 s on shm before its receiver got a doorbell. */
TEST_F_TIMEOUT(idle, pages_4k, 180)
{
	kv_cache(_metadata, self, variant, 4096);
}

TEST_F_TIMEOUT(idle, pages_16k, 180)
{
	kv_cache(_metadata, self, variant, 16384);
}

TEST_HARNESS_MAIN
