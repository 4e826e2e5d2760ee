/* SPDX-License-Identifier: MIT */
/*
 * Scatter and barrier: one source process and three target processes, on
 * every transport variant (provider x rails). Each target gets its own
 * ranges and offsets (some large enough to be split into pieces over the
 * rails, one with two ranges in one scatter, one with a zero-length entry
 * that carries only the immediate); every target checks every byte and that
 * nothing else in its region changed, and counts its immediates. Then a
 * barrier reaches all three.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xt_target.h"

#define NT 3
#define SRC_LEN (6u << 20)

static const uint64_t region_len[NT] = { 4u << 20, 1u << 20, 3u << 20 };

/* One source engine, NT target processes connected and imported. */
FIXTURE(scatter) {
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *dst[NT];
	uint32_t peer[NT];
	struct xt_peer child[NT];
	int spawned;
	uint64_t seed;
	void *srcbuf;
	struct xt_verify_req *req[NT];
};

FIXTURE_VARIANT(scatter) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(scatter);

FIXTURE_SETUP(scatter)
{
	struct xt_target_arg ta[NT];

	XT_REQUIRE_TRANSPORT();
	self->seed = 777 + variant->rails;
	self->srcbuf = xt_alloc(SRC_LEN);
	ASSERT_TRUE(self->srcbuf != NULL);
	xt_fill(self->srcbuf, SRC_LEN, self->seed, 0);
	for (int t = 0; t < NT; t++) {
		ta[t] = (struct xt_target_arg){ variant->provider, variant->rails, region_len[t] };
		self->req[t] = malloc(sizeof(*self->req[t]));
		ASSERT_TRUE(self->req[t] != NULL);
		XT_ASSERT_OK(xt_spawn(&self->child[t], xt_target_main, &ta[t]));
		self->spawned++;
	}
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 3000, &self->e));
	XT_ASSERT_OK(xfer_mr_reg(self->e, self->srcbuf, SRC_LEN, NULL, 0, &self->src));
	for (int t = 0; t < NT; t++) {
		XT_ASSERT_OK(xt_connect(self->e, self->child[t].fd, &self->peer[t]));
		XT_ASSERT_OK(xt_recv_rmr(self->e, self->peer[t], self->child[t].fd, &self->dst[t]));
	}
}

FIXTURE_TEARDOWN(scatter)
{
	for (int t = 0; t < self->spawned; t++) {
		/* a target exits 0 only when every request verified */
		EXPECT_EQ(0, xt_target_end(&self->child[t])) TH_LOG("target %d", t);
		xfer_rmr_free(self->dst[t]);
	}
	xfer_mr_dereg(self->src);
	xfer_engine_destroy(self->e);
	for (int t = 0; t < NT; t++)
		free(self->req[t]);
	free(self->srcbuf);
}

static void req_reset(FIXTURE_DATA(scatter) *c, uint32_t imm, uint32_t count)
{
	for (int t = 0; t < NT; t++) {
		c->req[t]->num_segs = 0;
		c->req[t]->imm = imm;
		c->req[t]->imm_count = count;
		c->req[t]->quit = 0;
	}
}

/* Add a scatter entry and what target t must then hold. */
static void entry(FIXTURE_DATA(scatter) *c, struct xfer_scatter_dst *d, uint32_t *n, int t,
		  uint64_t src_off, uint64_t dst_off, uint64_t len)
{
	d[*n] = (struct xfer_scatter_dst){ c->dst[t], src_off, dst_off, len };
	(*n)++;
	if (len)
		c->req[t]->segs[c->req[t]->num_segs++] = (struct xt_seg){ dst_off, len, c->seed, src_off };
}

struct cb {
	_Atomic int calls;
	_Atomic int status;
};

static void on_done(void *ctx, int status)
{
	struct cb *b = ctx;

	atomic_store(&b->status, status);
	atomic_fetch_add(&b->calls, 1);
}

static void verify_all(struct __test_metadata *_metadata, FIXTURE_DATA(scatter) *c,
		       const char *what)
{
	for (int t = 0; t < NT; t++) {
		int v = xt_target_verify(c->child[t].fd, c->req[t]);

		EXPECT_EQ(0, v) TH_LOG("%s: target %d verdict %d", what, t, v);
	}
}

static void scatter_case(struct __test_metadata *_metadata, FIXTURE_DATA(scatter) *c, bool imm)
{
	struct xfer_scatter_dst d[8];
	uint32_t n = 0, imm_val = imm ? 0x5ca77e40u : 0;
	struct cb cb = { 0 };
	xfer_op *op;

	/* target 0: two ranges, one large (several pieces when max_msg is small,
	 * split over rails) and one unaligned small one */
	req_reset(c, imm_val, 0);
	entry(c, d, &n, 0, 4096, 0, (2u << 20) + 4096);
	entry(c, d, &n, 0, 3, (3u << 20) + 17, 999);
	/* target 1: one unaligned range ending at the region's last byte */
	entry(c, d, &n, 1, 1234567, region_len[1] - 70001, 70001);
	/* target 2: a mid-sized range at an offset */
	entry(c, d, &n, 2, SRC_LEN - 300000, 1u << 20, 300000);
	if (imm) {
		/* target 1 also gets a zero-length entry: an immediate alone */
		entry(c, d, &n, 1, 0, 0, 0);
		c->req[0]->imm_count = 2;
		c->req[1]->imm_count = 2;
		c->req[2]->imm_count = 1;
	}
	XT_ASSERT_OK(xfer_scatter(c->e, c->src, d, n, imm ? XFER_OP_IMM : 0, imm_val,
				  &(struct xfer_done){ on_done, &cb }, &op));
	if (imm)   /* the immediates tell the targets their data landed */
		verify_all(_metadata, c, "scatter with imm");
	EXPECT_EQ(0, xfer_op_wait(op, 20000));
	EXPECT_EQ(1, atomic_load(&cb.calls));
	EXPECT_EQ(0, atomic_load(&cb.status));
	if (!imm)
		verify_all(_metadata, c, "scatter");
	xfer_op_release(op);
}

/* Ranges to three targets, two of them to one target, every byte checked. */
TEST_F(scatter, ranges)
{
	scatter_case(_metadata, self, false);
}

/* The same with immediates, and a zero-length entry carrying one alone. */
TEST_F(scatter, ranges_with_imm)
{
	scatter_case(_metadata, self, true);
}

/* Only zero-length entries: immediates alone to every target; malformed
 * and out-of-range scatters refused whole. */
TEST_F(scatter, imm_only_and_refused)
{
	struct xfer_scatter_dst d[NT];
	uint32_t n = 0;
	xfer_op *op;

	req_reset(self, 0x1111, 1);
	for (int t = 0; t < NT; t++)
		entry(self, d, &n, t, 0, 0, 0);
	XT_ASSERT_OK(xfer_scatter(self->e, self->src, d, n, XFER_OP_IMM, 0x1111, NULL, &op));
	verify_all(_metadata, self, "scatter of immediates alone");
	EXPECT_EQ(0, xfer_op_wait(op, 10000));
	xfer_op_release(op);
	/* zero length without an immediate is refused */
	d[0].len = 0;
	EXPECT_EQ(-EINVAL, xfer_scatter(self->e, self->src, d, 1, 0, 0, NULL, NULL));
	/* any entry out of range refuses the whole scatter: nothing lands */
	struct xfer_scatter_dst bad[2] = {
		{ self->dst[0], 0, 0, 4096 },
		{ self->dst[1], 0, region_len[1] - 100, 101 },
	};
	EXPECT_EQ(-ERANGE, xfer_scatter(self->e, self->src, bad, 2, 0, 0, NULL, NULL));
	bad[1] = (struct xfer_scatter_dst){ self->dst[1], SRC_LEN - 1, 0, 2 };
	EXPECT_EQ(-ERANGE, xfer_scatter(self->e, self->src, bad, 2, 0, 0, NULL, NULL));
	req_reset(self, 0, 0);
	verify_all(_metadata, self, "after refused scatters");   /* every region still zero */
}

/* A barrier reaches all three; two back to back count two; bad lists refused. */
TEST_F(scatter, barrier)
{
	struct cb cb = { 0 };
	xfer_op *op;

	req_reset(self, 0xba441e4u, 1);
	XT_ASSERT_OK(xfer_barrier(self->e, self->peer, NT, 0xba441e4u,
				  &(struct xfer_done){ on_done, &cb }, &op));
	verify_all(_metadata, self, "barrier");
	EXPECT_EQ(0, xfer_op_wait(op, 10000));
	EXPECT_EQ(1, atomic_load(&cb.calls));
	xfer_op_release(op);
	/* two barriers back to back: each target counts two */
	req_reset(self, 0xba441e5u, 2);
	XT_EXPECT_OK(xfer_barrier(self->e, self->peer, NT, 0xba441e5u, NULL, NULL));
	XT_ASSERT_OK(xfer_barrier(self->e, self->peer, NT, 0xba441e5u, NULL, &op));
	verify_all(_metadata, self, "two barriers");
	EXPECT_EQ(0, xfer_op_wait(op, 10000));
	xfer_op_release(op);
	uint32_t bogus[2] = { self->peer[0], 999 };
	EXPECT_EQ(-EINVAL, xfer_barrier(self->e, bogus, 2, 1, NULL, NULL));
	EXPECT_EQ(-EINVAL, xfer_barrier(self->e, self->peer, 0, 1, NULL, NULL));
}

TEST_HARNESS_MAIN
