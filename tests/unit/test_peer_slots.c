/* SPDX-License-Identifier: MIT */
/*
 * Failed xfer_engine_add_peer calls give their slot back, on every
 * transport variant: 2,000 adds of an address whose last rail the backend
 * refuses (its bytes zeroed, the address re-encoded so that it decodes;
 * with several rails the first ones were taken and must be undone), then
 * the live engine's real address gets the first slot, connects, and a
 * write with an immediate lands with every byte checked. (On tcp;ofi_rxm
 * this also checks that a malformed address never reaches the AV:
 * libfabric 1.17 refuses every insert after a zeroed one.) On fabric and
 * verbs an unreachable address is not refused at add (nothing is contacted
 * then), so a malformed one is what fails there; test_connect covers the
 * dead peer's address on local.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define LEN (256u << 10)
#define ADDS 2000

FIXTURE(slots) {
	xfer_engine *a, *b;
	void *sbuf, *dbuf;
	xfer_mr *src, *dst;
};

FIXTURE_VARIANT(slots) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(slots);

FIXTURE_SETUP(slots)
{
	XT_REQUIRE_TRANSPORT();
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 2000, &self->a));
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 2000, &self->b));
	self->sbuf = xt_alloc(LEN);
	self->dbuf = xt_alloc(LEN);
	ASSERT_TRUE(self->sbuf && self->dbuf);
	xt_fill(self->sbuf, LEN, 5, 0);
	XT_ASSERT_OK(xfer_mr_reg(self->a, self->sbuf, LEN, NULL, 0, &self->src));
	XT_ASSERT_OK(xfer_mr_reg(self->b, self->dbuf, LEN, NULL, XFER_MR_REMOTE_WRITE, &self->dst));
}

FIXTURE_TEARDOWN(slots)
{
	if (self->src)
		xfer_mr_dereg(self->src);
	if (self->dst)
		xfer_mr_dereg(self->dst);
	xfer_engine_destroy(self->a);
	xfer_engine_destroy(self->b);
	free(self->sbuf);
	free(self->dbuf);
}

TEST_F_TIMEOUT(slots, failed_adds_give_back_their_slot, 120)
{
	uint8_t good[XFER_ADDR_MAX], bad[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t glen = sizeof(good), blen = sizeof(bad), dlen = sizeof(desc);
	struct xfer_addr ad;
	uint32_t peer = UINT32_MAX;
	xfer_rmr *rmr = NULL;
	xfer_op *op = NULL;
	int fails = 0, first = 0;

	XT_ASSERT_OK(xfer_engine_address(self->b, good, &glen));
	XT_ASSERT_OK(xfer_addr_decode(good, glen, &ad));
	memset(ad.rail[ad.num_rails - 1].bytes, 0, ad.rail[ad.num_rails - 1].len);
	XT_ASSERT_OK(xfer_addr_encode(&ad, bad, &blen));

	for (int i = 0; i < ADDS; i++) {
		int ret = xfer_engine_add_peer(self->a, bad, blen, &peer);

		if (ret && !first)
			first = ret;
		fails += ret != 0;
	}
	if (fails == 0)
		SKIP(return, "%s accepts a zeroed rail address: nothing to give back",
		     variant->provider);
	ASSERT_EQ(ADDS, fails) TH_LOG("%d of %d adds failed (%s)", fails, ADDS,
				      xfer_strerror(first));
	ASSERT_NE(-ENOSPC, first);

	/* The live address gets a slot that failed adds gave back. */
	XT_ASSERT_OK(xfer_engine_add_peer(self->a, good, glen, &peer));
	EXPECT_EQ(0u, peer);
	EXPECT_EQ(0, xfer_peer_status(self->a, peer));
	XT_ASSERT_OK(xfer_engine_connect(self->a, &peer, 1, -1));
	XT_ASSERT_OK(xfer_mr_descriptor(self->dst, desc, &dlen));
	XT_ASSERT_OK(xfer_rmr_import(self->a, peer, desc, dlen, &rmr));
	XT_ASSERT_OK(xfer_write(self->a, self->src, 0, rmr, 0, LEN, XFER_OP_IMM, 7, NULL, &op));
	XT_EXPECT_OK(xfer_op_wait(op, 10000));
	xfer_op_release(op);
	XT_EXPECT_OK(xfer_imm_wait(self->b, 7, 1, 10000));
	EXPECT_EQ(-1, xt_verify(self->dbuf, LEN, 5, 0));
	xfer_rmr_free(rmr);
}

TEST_HARNESS_MAIN
