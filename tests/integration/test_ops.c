/* SPDX-License-Identifier: MIT */
/*
 * Every single-peer operation type between two processes, on shm and
 * tcp;ofi_rxm, with one and two rails: single writes (small, unaligned,
 * striped), write-with-immediate, immediate alone, paged writes (KV-cache
 * layout with strides and offsets), and out-of-range writes refused. The
 * target checks every byte written and that nothing else changed.
 */
#include <stdlib.h>
#include <string.h>

#include "xt.h"
#include "xt_target.h"

#define REGION (8u << 20)
#define SRC_LEN (8u << 20)

struct ctx {
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *dst;
	int fd;
	uint64_t seed;
	struct xt_verify_req *req;
};

static void req_reset(struct ctx *c, uint32_t imm, uint32_t count)
{
	c->req->num_segs = 0;
	c->req->imm = imm;
	c->req->imm_count = count;
	c->req->quit = 0;
}

static void req_seg(struct ctx *c, uint64_t dst_off, uint64_t len, uint64_t src_off)
{
	c->req->segs[c->req->num_segs++] = (struct xt_seg){ dst_off, len, c->seed, src_off };
}

static bool write_case(struct ctx *c, uint64_t src_off, uint64_t dst_off, uint64_t len, bool imm)
{
	xfer_op *op;
	int ret;

	req_reset(c, 77, imm ? 1 : 0);
	req_seg(c, dst_off, len, src_off);
	ret = xfer_write(c->e, c->src, src_off, c->dst, dst_off, len, imm ? XFER_OP_IMM : 0, 77,
			 NULL, &op);
	XT_OK(ret);
	if (ret)
		return false;
	if (imm) /* verify before our own completion: the immediate orders it */
		XT_EQ(xt_target_verify(c->fd, c->req), 0);
	XT_EQ(xfer_op_wait(op, 10000), 0);
	if (!imm)
		XT_EQ(xt_target_verify(c->fd, c->req), 0);
	xfer_op_release(op);
	return true;
}

static void imm_case(struct ctx *c, uint32_t peer)
{
	xfer_op *ops[5];

	req_reset(c, 0xfeedbeef, 5);
	for (int i = 0; i < 5; i++)
		XT_OK(xfer_imm(c->e, peer, 0xfeedbeef, NULL, &ops[i]));
	XT_EQ(xt_target_verify(c->fd, c->req), 0);
	for (int i = 0; i < 5; i++) {
		XT_EQ(xfer_op_wait(ops[i], 10000), 0);
		xfer_op_release(ops[i]);
	}
}

/* KV-cache shape: random distinct destination pages, strided layout. */
static void paged_case(struct ctx *c, uint32_t npages, uint64_t psize, uint64_t sstride,
		       uint64_t dstride, uint64_t soff, uint64_t doff, bool imm)
{
	uint32_t *sp = malloc(npages * sizeof(*sp)), *dp = malloc(npages * sizeof(*dp));
	uint32_t dslots = (uint32_t)((REGION - doff) / dstride);
	uint32_t sslots = (uint32_t)((SRC_LEN - soff - psize) / sstride);
	uint32_t *perm = malloc(dslots * sizeof(*perm));
	xfer_op *op;

	for (uint32_t i = 0; i < dslots; i++)
		perm[i] = i;
	for (uint32_t i = 0; i < npages; i++) {    /* partial Fisher-Yates */
		uint32_t j = i + (uint32_t)(rand() % (dslots - i));
		uint32_t t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
		dp[i] = perm[i];
		sp[i] = (uint32_t)(rand() % sslots);
	}
	req_reset(c, 4242, imm ? 1 : 0);
	for (uint32_t i = 0; i < npages; i++)
		req_seg(c, doff + dp[i] * dstride, psize, soff + sp[i] * sstride);
	struct xfer_paged p = {
		.size = sizeof(p), .flags = imm ? XFER_OP_IMM : 0, .src = c->src, .dst = c->dst,
		.src_pages = sp, .dst_pages = dp, .num_pages = npages, .imm = 4242,
		.page_size = psize, .src_stride = sstride, .dst_stride = dstride,
		.src_offset = soff, .dst_offset = doff,
	};
	XT_OK(xfer_write_paged(c->e, &p, NULL, &op));
	if (imm)
		XT_EQ(xt_target_verify(c->fd, c->req), 0);
	XT_EQ(xfer_op_wait(op, 10000), 0);
	if (!imm)
		XT_EQ(xt_target_verify(c->fd, c->req), 0);
	xfer_op_release(op);
	free(sp);
	free(dp);
	free(perm);
}

static void range_case(struct ctx *c)
{
	xfer_op *op = (xfer_op *)1;
	uint32_t sp[2] = { 0, 1 }, dp[2] = { 3, (uint32_t)(REGION / 4096) };

	XT_EQ(xfer_write(c->e, c->src, SRC_LEN - 10, c->dst, 0, 11, 0, 0, NULL, &op), -ERANGE);
	XT_CHECK(op == NULL, "handle not cleared on error");
	XT_EQ(xfer_write(c->e, c->src, 0, c->dst, REGION - 10, 11, 0, 0, NULL, NULL), -ERANGE);
	XT_EQ(xfer_write(c->e, c->src, 0, c->dst, UINT64_MAX - 5, 10, 0, 0, NULL, NULL), -ERANGE);
	XT_EQ(xfer_write(c->e, c->src, UINT64_MAX, c->dst, 0, 2, 0, 0, NULL, NULL), -ERANGE);
	XT_EQ(xfer_write(c->e, c->src, 0, c->dst, 0, 0, 0, 0, NULL, NULL), -EINVAL);
	XT_EQ(xfer_write(c->e, c->src, 0, c->dst, 0, 8, 0x80, 0, NULL, NULL), -EINVAL);
	struct xfer_paged p = {
		.size = sizeof(p), .src = c->src, .dst = c->dst, .src_pages = sp, .dst_pages = dp,
		.num_pages = 2, .page_size = 4096,
	};
	XT_EQ(xfer_write_paged(c->e, &p, NULL, NULL), -ERANGE);   /* dst page past the end */
	dp[1] = 4;
	p.dst_stride = UINT64_MAX / 2;
	XT_EQ(xfer_write_paged(c->e, &p, NULL, NULL), -ERANGE);   /* offset overflows */
	p.dst_stride = 0;
	p.page_size = 0;
	XT_EQ(xfer_write_paged(c->e, &p, NULL, NULL), -EINVAL);
	/* nothing landed: the whole region is still zero */
	req_reset(c, 0, 0);
	XT_EQ(xt_target_verify(c->fd, c->req), 0);
}

static bool run_config(const char *prov, uint32_t rails)
{
	struct xt_target_arg ta = { prov, rails, REGION };
	struct xt_peer child;
	struct ctx c = { 0 };
	uint32_t peer;
	int fails0 = xt_failures;

	c.req = malloc(sizeof(*c.req));
	c.seed = 1234 + rails;
	if (xt_spawn(&child, xt_target_main, &ta))
		return false;
	c.fd = child.fd;
	XT_OK(xt_engine(prov, rails, 3000, &c.e));
	void *src = xt_alloc(SRC_LEN);
	xt_fill(src, SRC_LEN, c.seed, 0);
	XT_OK(xt_connect(c.e, c.fd, &peer));
	XT_OK(xfer_mr_reg(c.e, src, SRC_LEN, NULL, 0, &c.src));
	XT_OK(xt_recv_rmr(c.e, peer, c.fd, &c.dst));
	if (xt_failures == fails0) {
		write_case(&c, 0, 0, 4096, false);
		write_case(&c, 13, 1000001, 100, true);          /* unaligned, imm attached */
		write_case(&c, 4096, 8192, 3u << 20, true);      /* striped over rails */
		write_case(&c, 7, 3, (3u << 20) + 5, false);
		write_case(&c, 0, REGION - 1, 1, false);         /* last byte */
		imm_case(&c, peer);
		paged_case(&c, 300, 4096, 4096, 4096, 0, 0, true);
		paged_case(&c, 100, 1000, 3000, 5000, 17, 64, false);
		paged_case(&c, 1, 65536, 65536, 65536, 0, 0, true);
		range_case(&c);
	}
	xt_target_quit(c.fd);
	XT_EQ(xt_reap(&child), 0);
	xfer_rmr_free(c.dst);
	xfer_mr_dereg(c.src);
	xfer_engine_destroy(c.e);
	free(src);
	free(c.req);
	return xt_failures == fails0;
}

int main(void)
{
	srand(42);
	return xt_run_configs("ops", run_config);
}
