/* SPDX-License-Identifier: MIT */
/*
 * Scatter and barrier: one source process and three target processes, on
 * shm and tcp;ofi_rxm with one and two rails. Each target gets its own
 * ranges and offsets (some large enough to be split into pieces over the
 * rails, one with two ranges in one scatter, one with a zero-length entry
 * that carries only the immediate); every target checks every byte and that
 * nothing else in its region changed, and counts its immediates. Then a
 * barrier reaches all three.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "xt.h"
#include "xt_target.h"

#define NT 3
#define SRC_LEN (6u << 20)

static const uint64_t region_len[NT] = { 4u << 20, 1u << 20, 3u << 20 };

struct ctx {
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *dst[NT];
	uint32_t peer[NT];
	struct xt_peer child[NT];
	uint64_t seed;
	struct xt_verify_req *req[NT];
};

static void req_reset(struct ctx *c, uint32_t imm, uint32_t count)
{
	for (int t = 0; t < NT; t++) {
		c->req[t]->num_segs = 0;
		c->req[t]->imm = imm;
		c->req[t]->imm_count = count;
		c->req[t]->quit = 0;
	}
}

/* Add a scatter entry and what target t must then hold. */
static void entry(struct ctx *c, struct xfer_scatter_dst *d, uint32_t *n, int t, uint64_t src_off,
		  uint64_t dst_off, uint64_t len)
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

static void verify_all(struct ctx *c, const char *what)
{
	for (int t = 0; t < NT; t++) {
		int v = xt_target_verify(c->child[t].fd, c->req[t]);

		XT_CHECK(v == 0, "%s: target %d verdict %d", what, t, v);
	}
}

static void scatter_case(struct ctx *c, bool imm)
{
	struct xfer_scatter_dst d[8];
	uint32_t n = 0, imm_val = imm ? 0x5ca77e40u : 0;
	struct cb cb = { 0 };
	xfer_op *op;
	int ret;

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
	ret = xfer_scatter(c->e, c->src, d, n, imm ? XFER_OP_IMM : 0, imm_val,
			   &(struct xfer_done){ on_done, &cb }, &op);
	XT_OK(ret);
	if (ret)
		return;
	if (imm)   /* the immediates tell the targets their data landed */
		verify_all(c, "scatter with imm");
	XT_EQ(xfer_op_wait(op, 20000), 0);
	XT_EQ(atomic_load(&cb.calls), 1);
	XT_EQ(atomic_load(&cb.status), 0);
	if (!imm)
		verify_all(c, "scatter");
	xfer_op_release(op);
}

/* Only zero-length entries: immediates alone to every target. */
static void scatter_imm_only(struct ctx *c)
{
	struct xfer_scatter_dst d[NT];
	uint32_t n = 0;
	xfer_op *op;

	req_reset(c, 0x1111, 1);
	for (int t = 0; t < NT; t++)
		entry(c, d, &n, t, 0, 0, 0);
	XT_OK(xfer_scatter(c->e, c->src, d, n, XFER_OP_IMM, 0x1111, NULL, &op));
	verify_all(c, "scatter of immediates alone");
	XT_EQ(xfer_op_wait(op, 10000), 0);
	xfer_op_release(op);
	/* zero length without an immediate is refused */
	d[0].len = 0;
	XT_EQ(xfer_scatter(c->e, c->src, d, 1, 0, 0, NULL, NULL), -EINVAL);
	/* any entry out of range refuses the whole scatter: nothing lands */
	struct xfer_scatter_dst bad[2] = {
		{ c->dst[0], 0, 0, 4096 },
		{ c->dst[1], 0, region_len[1] - 100, 101 },
	};
	XT_EQ(xfer_scatter(c->e, c->src, bad, 2, 0, 0, NULL, NULL), -ERANGE);
	bad[1] = (struct xfer_scatter_dst){ c->dst[1], SRC_LEN - 1, 0, 2 };
	XT_EQ(xfer_scatter(c->e, c->src, bad, 2, 0, 0, NULL, NULL), -ERANGE);
	req_reset(c, 0, 0);
	verify_all(c, "after refused scatters");   /* every region still zero */
}

static void barrier_case(struct ctx *c)
{
	struct cb cb = { 0 };
	xfer_op *op;

	req_reset(c, 0xba441e4u, 1);
	XT_OK(xfer_barrier(c->e, c->peer, NT, 0xba441e4u, &(struct xfer_done){ on_done, &cb }, &op));
	verify_all(c, "barrier");
	XT_EQ(xfer_op_wait(op, 10000), 0);
	XT_EQ(atomic_load(&cb.calls), 1);
	xfer_op_release(op);
	/* two barriers back to back: each target counts two */
	req_reset(c, 0xba441e5u, 2);
	XT_OK(xfer_barrier(c->e, c->peer, NT, 0xba441e5u, NULL, NULL));
	XT_OK(xfer_barrier(c->e, c->peer, NT, 0xba441e5u, NULL, &op));
	verify_all(c, "two barriers");
	XT_EQ(xfer_op_wait(op, 10000), 0);
	xfer_op_release(op);
	uint32_t bogus[2] = { c->peer[0], 999 };
	XT_EQ(xfer_barrier(c->e, bogus, 2, 1, NULL, NULL), -EINVAL);
	XT_EQ(xfer_barrier(c->e, c->peer, 0, 1, NULL, NULL), -EINVAL);
}

static bool run_config(const char *prov, uint32_t rails)
{
	struct xt_target_arg ta[NT];
	struct ctx c = { 0 };
	int fails0 = xt_failures, spawned = 0;
	void *src = xt_alloc(SRC_LEN);

	c.seed = 777 + rails;
	xt_fill(src, SRC_LEN, c.seed, 0);
	for (int t = 0; t < NT; t++) {
		ta[t] = (struct xt_target_arg){ prov, rails, region_len[t] };
		c.req[t] = malloc(sizeof(*c.req[t]));
		if (xt_spawn(&c.child[t], xt_target_main, &ta[t]) == 0)
			spawned++;
	}
	XT_EQ(spawned, NT);
	XT_OK(xt_engine(prov, rails, 3000, &c.e));
	XT_OK(xfer_mr_reg(c.e, src, SRC_LEN, NULL, 0, &c.src));
	for (int t = 0; t < spawned && c.e; t++) {
		XT_OK(xt_connect(c.e, c.child[t].fd, &c.peer[t]));
		XT_OK(xt_recv_rmr(c.e, c.peer[t], c.child[t].fd, &c.dst[t]));
	}
	if (xt_failures == fails0) {
		scatter_case(&c, false);
		scatter_case(&c, true);
		scatter_imm_only(&c);
		barrier_case(&c);
	}
	for (int t = 0; t < spawned; t++) {
		xt_target_quit(c.child[t].fd);
		XT_EQ(xt_reap(&c.child[t]), 0);
		xfer_rmr_free(c.dst[t]);
	}
	xfer_mr_dereg(c.src);
	xfer_engine_destroy(c.e);
	for (int t = 0; t < NT; t++)
		free(c.req[t]);
	free(src);
	return xt_failures == fails0;
}

int main(void)
{
	return xt_run_configs("scatter+barrier", run_config);
}
