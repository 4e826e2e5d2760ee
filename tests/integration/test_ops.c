/* SPDX-License-Identifier: MIT */
/*
 * Every single-peer operation type between two processes, on every
 * transport variant (provider x rails): single writes (small, unaligned,
 * striped), write-with-immediate, immediate alone, paged writes (KV-cache
 * layout with strides and offsets), and out-of-range writes refused. The
 * target checks every byte written and that nothing else changed.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xt_target.h"

#define REGION (8u << 20)
#define SRC_LEN (8u << 20)

/* One initiator engine and one target process with a REGION-byte region. */
FIXTURE(ops) {
	struct xt_link l;
	uint64_t seed;
	void *srcbuf;
	struct xt_verify_req *req;
};

FIXTURE_VARIANT(ops) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(ops);

FIXTURE_SETUP(ops)
{
	struct xt_target_arg ta = { variant->provider, variant->rails, REGION };

	XT_REQUIRE_TRANSPORT();
	srand(42);
	self->l.t.pid = -1;
	self->req = malloc(sizeof(*self->req));
	self->seed = 1234 + variant->rails;
	self->srcbuf = xt_alloc(SRC_LEN);
	ASSERT_TRUE(self->req && self->srcbuf);
	xt_fill(self->srcbuf, SRC_LEN, self->seed, 0);
	XT_LINK_OPEN(&self->l, &ta, 3000, self->srcbuf, SRC_LEN);
}

FIXTURE_TEARDOWN(ops)
{
	/* the target exits 0 only when every request verified */
	EXPECT_EQ(0, xt_link_close(&self->l)) TH_LOG("target process");
	free(self->srcbuf);
	free(self->req);
}

static void req_reset(FIXTURE_DATA(ops) *c, uint32_t imm, uint32_t count)
{
	c->req->num_segs = 0;
	c->req->imm = imm;
	c->req->imm_count = count;
	c->req->quit = 0;
}

static void req_seg(FIXTURE_DATA(ops) *c, uint64_t dst_off, uint64_t len, uint64_t src_off)
{
	c->req->segs[c->req->num_segs++] = (struct xt_seg){ dst_off, len, c->seed, src_off };
}

/* The target checks every byte of the request; with an immediate it does so
 * before our own completion (the immediate orders it), without one after. */
static void complete_verified(struct __test_metadata *_metadata, FIXTURE_DATA(ops) *c,
			      xfer_op *op, bool imm)
{
	if (imm)
		EXPECT_EQ(0, xt_target_verify(c->l.t.fd, c->req));
	EXPECT_EQ(0, xfer_op_wait(op, 10000));
	if (!imm)
		EXPECT_EQ(0, xt_target_verify(c->l.t.fd, c->req));
	xfer_op_release(op);
}

static void write_case(struct __test_metadata *_metadata, FIXTURE_DATA(ops) *c, uint64_t src_off,
		       uint64_t dst_off, uint64_t len, bool imm)
{
	xfer_op *op;

	TH_LOG("write %llu bytes %llu -> %llu%s", (unsigned long long)len,
	       (unsigned long long)src_off, (unsigned long long)dst_off, imm ? " with imm" : "");
	req_reset(c, 77, imm ? 1 : 0);
	req_seg(c, dst_off, len, src_off);
	XT_ASSERT_OK(xfer_write(c->l.e, c->l.src, src_off, c->l.dst, dst_off, len, imm ? XFER_OP_IMM : 0,
				77, NULL, &op));
	complete_verified(_metadata, c, op, imm);
}

/* Single writes: small, unaligned with an immediate, striped over rails,
 * odd lengths, the region's last byte. */
TEST_F(ops, writes)
{
	write_case(_metadata, self, 0, 0, 4096, false);
	write_case(_metadata, self, 13, 1000001, 100, true);          /* unaligned, imm attached */
	write_case(_metadata, self, 4096, 8192, 3u << 20, true);      /* striped over rails */
	write_case(_metadata, self, 7, 3, (3u << 20) + 5, false);
	write_case(_metadata, self, 0, REGION - 1, 1, false);         /* last byte */
}

/* Five immediates alone, counted by the target. */
TEST_F(ops, immediates)
{
	xfer_op *ops[5];

	req_reset(self, 0xfeedbeef, 5);
	for (int i = 0; i < 5; i++)
		XT_ASSERT_OK(xfer_imm(self->l.e, self->l.peer, 0xfeedbeef, NULL, &ops[i]));
	EXPECT_EQ(0, xt_target_verify(self->l.t.fd, self->req));
	for (int i = 0; i < 5; i++) {
		EXPECT_EQ(0, xfer_op_wait(ops[i], 10000));
		xfer_op_release(ops[i]);
	}
}

/* KV-cache shape: random distinct destination pages, strided layout. */
static void paged_case(struct __test_metadata *_metadata, FIXTURE_DATA(ops) *c, uint32_t npages,
		       uint64_t psize, uint64_t sstride, uint64_t dstride, uint64_t soff,
		       uint64_t doff, bool imm)
{
	uint32_t *sp = malloc(npages * sizeof(*sp)), *dp = malloc(npages * sizeof(*dp));
	uint32_t dslots = (uint32_t)((REGION - doff) / dstride);
	uint32_t sslots = (uint32_t)((SRC_LEN - soff - psize) / sstride);
	uint32_t *perm = malloc(dslots * sizeof(*perm));
	xfer_op *op;
	int ret;

	TH_LOG("%u pages of %llu, strides %llu/%llu, offsets %llu/%llu%s", npages,
	       (unsigned long long)psize, (unsigned long long)sstride, (unsigned long long)dstride,
	       (unsigned long long)soff, (unsigned long long)doff, imm ? ", imm" : "");
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
		.size = sizeof(p), .flags = imm ? XFER_OP_IMM : 0, .src = c->l.src, .dst = c->l.dst,
		.src_pages = sp, .dst_pages = dp, .num_pages = npages, .imm = 4242,
		.page_size = psize, .src_stride = sstride, .dst_stride = dstride,
		.src_offset = soff, .dst_offset = doff,
	};
	ret = xfer_write_paged(c->l.e, &p, NULL, &op);
	free(sp);
	free(dp);
	free(perm);
	XT_ASSERT_OK(ret);
	complete_verified(_metadata, c, op, imm);
}

/* Paged writes: 300 4 KiB pages, 100 strided 1000-byte pages at offsets,
 * one 64 KiB page. */
TEST_F(ops, paged)
{
	paged_case(_metadata, self, 300, 4096, 4096, 4096, 0, 0, true);
	paged_case(_metadata, self, 100, 1000, 3000, 5000, 17, 64, false);
	paged_case(_metadata, self, 1, 65536, 65536, 65536, 0, 0, true);
}

/* Out-of-range and malformed writes are refused and nothing lands. */
TEST_F(ops, out_of_range)
{
	xfer_op *op = (xfer_op *)1;
	uint32_t sp[2] = { 0, 1 }, dp[2] = { 3, (uint32_t)(REGION / 4096) };

	EXPECT_EQ(-ERANGE, xfer_write(self->l.e, self->l.src, SRC_LEN - 10, self->l.dst, 0, 11, 0, 0, NULL, &op));
	EXPECT_TRUE(op == NULL) TH_LOG("handle not cleared on error");
	EXPECT_EQ(-ERANGE, xfer_write(self->l.e, self->l.src, 0, self->l.dst, REGION - 10, 11, 0, 0, NULL, NULL));
	EXPECT_EQ(-ERANGE, xfer_write(self->l.e, self->l.src, 0, self->l.dst, UINT64_MAX - 5, 10, 0, 0, NULL, NULL));
	EXPECT_EQ(-ERANGE, xfer_write(self->l.e, self->l.src, UINT64_MAX, self->l.dst, 0, 2, 0, 0, NULL, NULL));
	EXPECT_EQ(-EINVAL, xfer_write(self->l.e, self->l.src, 0, self->l.dst, 0, 0, 0, 0, NULL, NULL));
	EXPECT_EQ(-EINVAL, xfer_write(self->l.e, self->l.src, 0, self->l.dst, 0, 8, 0x80, 0, NULL, NULL));
	struct xfer_paged p = {
		.size = sizeof(p), .src = self->l.src, .dst = self->l.dst, .src_pages = sp,
		.dst_pages = dp, .num_pages = 2, .page_size = 4096,
	};
	EXPECT_EQ(-ERANGE, xfer_write_paged(self->l.e, &p, NULL, NULL)) TH_LOG("dst page past the end");
	dp[1] = 4;
	p.dst_stride = UINT64_MAX / 2;
	EXPECT_EQ(-ERANGE, xfer_write_paged(self->l.e, &p, NULL, NULL)) TH_LOG("offset overflows");
	p.dst_stride = 0;
	p.page_size = 0;
	EXPECT_EQ(-EINVAL, xfer_write_paged(self->l.e, &p, NULL, NULL));
	/* nothing landed: the whole region is still zero */
	req_reset(self, 0, 0);
	EXPECT_EQ(0, xt_target_verify(self->l.t.fd, self->req)) TH_LOG("region not all zero");
}

TEST_HARNESS_MAIN
