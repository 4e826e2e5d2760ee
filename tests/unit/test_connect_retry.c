/* SPDX-License-Identifier: MIT */
/*
 * xfer_engine_connect's handling of refused connections (lib/core/connect.c),
 * which no loopback provider here produces on demand (tcp;ofi_rxm refuses
 * only sometimes, between many processes starting at once): two `local`
 * engines in this process, the initiator's backend table wrapped so that
 * connect probes are refused (-ECONNREFUSED) as many times as a test says,
 * at post or in the completion. Checks: refusals are retried with backoff
 * and connect then succeeds, the peer up and a write landing (every byte
 * checked); refusals that never stop fail the call at its timeout with
 * -ECONNREFUSED, the peer down with that error; any other error fails at
 * once, without retries.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define LEN (64u << 10)

static const struct xfer_backend_ops *real;
static struct xfer_backend_ops fake;
static _Atomic int refuse_post, refuse_done;   /* refusals left (-1: always) */
static _Atomic int fail_post;                  /* an error other than a refusal */
static _Atomic int probe_posts;                /* probes offered to the backend */

static bool is_probe(const struct xfer_wr *w)
{
	return w->ctx && ((const struct xfer_piece *)w->ctx)->probe;
}

static bool take(_Atomic int *left)
{
	int n = atomic_load(left);

	while (n != 0) {
		if (n < 0)
			return true;
		if (atomic_compare_exchange_weak(left, &n, n - 1))
			return true;
	}
	return false;
}

static int fake_post(struct xfer_rail *r, uint32_t peer, const struct xfer_wr *wrs, int n)
{
	if (n == 1 && is_probe(wrs)) {
		atomic_fetch_add(&probe_posts, 1);
		if (atomic_load(&fail_post))
			return atomic_load(&fail_post);
		if (take(&refuse_post))
			return -ECONNREFUSED;
	}
	return real->post_write(r, peer, wrs, n);
}

static int fake_poll(struct xfer_rail *r, struct xfer_cqe *out, int n)
{
	int got = real->poll(r, out, n);

	for (int i = 0; i < got; i++)
		if (out[i].kind == XFER_CQE_LOCAL && out[i].ctx &&
		    ((struct xfer_piece *)out[i].ctx)->probe && !out[i].status && take(&refuse_done))
			out[i].status = -ECONNREFUSED;
	return got;
}

FIXTURE(retry) {
	xfer_engine *a, *b;
	uint32_t peer;
	void *sbuf, *dbuf;
	xfer_mr *src, *dst;
	xfer_rmr *rmr;
};

FIXTURE_SETUP(retry)
{
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);

	if (xt_transport_skip("local"))
		XT_SETUP_SKIP("%s", xt_transport_skip("local"));
	atomic_store(&refuse_post, 0);
	atomic_store(&refuse_done, 0);
	atomic_store(&fail_post, 0);
	atomic_store(&probe_posts, 0);
	XT_ASSERT_OK(xt_engine("local", 1, 1000, &self->a));
	XT_ASSERT_OK(xt_engine("local", 1, 1000, &self->b));
	/* The initiator's table, wrapped before it has peers: its worker only
	 * idles until then. */
	real = self->a->ops;
	fake = *real;
	fake.post_write = fake_post;
	fake.poll = fake_poll;
	__atomic_store_n(&self->a->ops, &fake, __ATOMIC_RELEASE);
	self->sbuf = xt_alloc(LEN);
	self->dbuf = xt_alloc(LEN);
	ASSERT_TRUE(self->sbuf && self->dbuf);
	xt_fill(self->sbuf, LEN, 9, 0);
	XT_ASSERT_OK(xfer_mr_reg(self->a, self->sbuf, LEN, NULL, 0, &self->src));
	XT_ASSERT_OK(xfer_mr_reg(self->b, self->dbuf, LEN, NULL, XFER_MR_REMOTE_WRITE, &self->dst));
	XT_ASSERT_OK(xfer_engine_address(self->b, addr, &alen));
	XT_ASSERT_OK(xfer_engine_add_peer(self->a, addr, alen, &self->peer));
	XT_ASSERT_OK(xfer_mr_descriptor(self->dst, desc, &dlen));
	XT_ASSERT_OK(xfer_rmr_import(self->a, self->peer, desc, dlen, &self->rmr));
}

FIXTURE_TEARDOWN(retry)
{
	xfer_rmr_free(self->rmr);
	if (self->src)
		xfer_mr_dereg(self->src);
	if (self->dst)
		xfer_mr_dereg(self->dst);
	xfer_engine_destroy(self->a);
	xfer_engine_destroy(self->b);
	free(self->sbuf);
	free(self->dbuf);
}

static void write_and_check(struct __test_metadata *_metadata, FIXTURE_DATA(retry) *self)
{
	xfer_op *op = NULL;

	XT_ASSERT_OK(xfer_write(self->a, self->src, 0, self->rmr, 0, LEN, XFER_OP_IMM, 3, NULL,
				&op));
	XT_EXPECT_OK(xfer_op_wait(op, 10000));
	xfer_op_release(op);
	XT_EXPECT_OK(xfer_imm_wait(self->b, 3, 1, 10000));
	EXPECT_EQ(-1, xt_verify(self->dbuf, LEN, 9, 0));
}

TEST_F(retry, refused_at_post_then_accepted)
{
	uint64_t t0 = xt_now_us(), us;

	atomic_store(&refuse_post, 4);
	XT_ASSERT_OK(xfer_engine_connect(self->a, &self->peer, 1, 1000));
	us = xt_now_us() - t0;
	EXPECT_EQ(0, atomic_load(&refuse_post));
	EXPECT_EQ(5, atomic_load(&probe_posts));
	/* backoff 1 + 2 + 4 + 8 ms before the fifth try */
	EXPECT_GE(us, 15000u);
	EXPECT_EQ(0, xfer_peer_status(self->a, self->peer));
	write_and_check(_metadata, self);
}

TEST_F(retry, refused_in_completion_then_accepted)
{
	atomic_store(&refuse_done, 3);
	XT_ASSERT_OK(xfer_engine_connect(self->a, &self->peer, 1, 1000));
	EXPECT_EQ(0, atomic_load(&refuse_done));
	EXPECT_EQ(4, atomic_load(&probe_posts));
	EXPECT_EQ(0, xfer_peer_status(self->a, self->peer));
	write_and_check(_metadata, self);
}

TEST_F(retry, always_refused_fails_at_the_timeout)
{
	uint64_t t0 = xt_now_us(), ms;
	int ret;

	atomic_store(&refuse_post, -1);
	ret = xfer_engine_connect(self->a, &self->peer, 1, 300);
	ms = (xt_now_us() - t0) / 1000;
	EXPECT_EQ(-ECONNREFUSED, ret);
	EXPECT_GE(ms, 300u);
	EXPECT_LT(ms, 2000u);
	EXPECT_GT(atomic_load(&probe_posts), 3);
	EXPECT_EQ(-ECONNREFUSED, xfer_peer_status(self->a, self->peer));
}

TEST_F(retry, other_errors_are_not_retried)
{
	atomic_store(&fail_post, -EHOSTUNREACH);
	EXPECT_EQ(-EHOSTUNREACH, xfer_engine_connect(self->a, &self->peer, 1, 1000));
	EXPECT_EQ(1, atomic_load(&probe_posts));
	EXPECT_EQ(-EHOSTUNREACH, xfer_peer_status(self->a, self->peer));
}

TEST_HARNESS_MAIN
