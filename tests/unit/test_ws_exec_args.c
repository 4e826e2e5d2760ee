// SPDX-License-Identifier: MIT
/*
 * The trainer executor's API refuses bad input with -EINVAL and hands back
 * nothing: NULL arguments, a short io or attr, a rank outside the schedule,
 * unknown flags, more than 256 transform threads. A well-formed create (one trainer, shards in a registered
 * arena) succeeds, and a trainer without the shards the schedule says it
 * holds is refused. One engine on shm, no peers: nothing is sent.
 *
 * Then one step for real, on a second engine standing in for the inference
 * rank: staging counted one way. The executor charges its ring
 * ws_chunk_staging_bytes per staged chunk, and the planner's peak_staging
 * counts the same size (each chunk here has one write, so its peak is the
 * largest chunk's), so the peak the schedule promises is what the executor
 * needs. fp8 chunks, whose data and scales are rounded up in staging.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xfer.h"
#include "xfer_ws_exec.h"
#include "ws_internal.h"
#include "ws_models.h"
#include "xt.h"

/* Trainer 0 of a fsdp=1 -> tp=1 fp8 schedule, every chunk staged, with a
 * ring that holds them all: the executor prepares every chunk before its
 * first write completes, so its peak is the sum of their charges. */
static void staging_peak(const xfer_ws_model *m)
{
	struct xfer_ws_trainer_layout tl;
	struct xfer_ws_infer_layout il = { .dtype = XFER_WS_DT_FP8E4M3 };
	/* chunks of at most 16 KiB of source: the largest one's scales need rounding */
	struct xfer_ws_plan_attr pa = { .size = sizeof(pa), .min_chunk = 4096, .max_chunk = 16384 };
	struct xfer_engine_attr ea;
	struct xfer_ws_schedule *s = NULL;
	xfer_engine *te = NULL, *ie = NULL;
	xfer_mr *src_mr = NULL, *dst_mr = NULL;
	xfer_rmr *dst = NULL;
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	uint64_t arena_bytes = 0, off = 0, sum = 0, largest = 0, largest_wire = 0;
	uint32_t ipeer = 0, tpeer = 0;
	uint8_t *arena = NULL, *buf = NULL;
	const void **shard = NULL;
	int fails0 = xt_failures;

	XT_EQ(xfer_ws_trainer_parse("fsdp=1", &tl), 0);
	XT_EQ(xfer_ws_infer_parse("tp=1", &il), 0);
	XT_EQ(xfer_ws_plan(m, &tl, &il, &pa, &s), 0);
	xfer_engine_attr_init(&ea);
	ea.provider = "shm";
	XT_EQ(xfer_engine_create(&ea, &te), 0);
	XT_EQ(xfer_engine_create(&ea, &ie), 0);
	if (!s || !te || !ie)
		goto out;
	XT_EQ(s->ntrainers, 1);
	XT_EQ(s->ninfer, 1);

	shard = calloc(s->nparams, sizeof(*shard));
	for (uint32_t p = 0; p < s->nparams; p++)
		arena_bytes += s->params[p].rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype);
	arena = calloc(1, arena_bytes);
	buf = calloc(1, s->infers[0].buf_bytes);
	for (uint32_t p = 0; p < s->nparams; p++) {
		shard[p] = arena + off;
		off += s->params[p].rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype);
	}
	XT_EQ(xfer_mr_reg(te, arena, arena_bytes, NULL, 0, &src_mr), 0);
	XT_EQ(xfer_mr_reg(ie, buf, s->infers[0].buf_bytes, NULL, XFER_MR_REMOTE_WRITE, &dst_mr), 0);
	XT_EQ(xfer_engine_address(ie, addr, &alen), 0);
	XT_EQ(xfer_engine_add_peer(te, addr, alen, &ipeer), 0);
	alen = sizeof(addr);
	XT_EQ(xfer_engine_address(te, addr, &alen), 0);
	XT_EQ(xfer_engine_add_peer(ie, addr, alen, &tpeer), 0);
	XT_EQ(xfer_mr_descriptor(dst_mr, desc, &dlen), 0);
	XT_EQ(xfer_rmr_import(te, ipeer, desc, dlen, &dst), 0);
	if (xt_failures != fails0)
		goto out;

	const struct xfer_ws_trainer_rank *tr = &s->trainers[0];

	for (uint32_t k = 0; k < tr->nchunks; k++) {
		const struct xfer_ws_chunk *c = &s->chunks[tr->first_chunk + k];
		uint64_t b = ws_chunk_staging_bytes(c);

		XT_EQ(c->nwrites, 1);
		sum += b;
		largest = b > largest ? b : largest;
		if (c->out_bytes + c->scale_bytes > largest_wire)
			largest_wire = c->out_bytes + c->scale_bytes;
	}
	XT_CHECK(largest_wire < largest, "largest chunk's staging %lu not rounded up from %lu: the case tests nothing",
		 (unsigned long)largest, (unsigned long)largest_wire);
	XT_EQ(tr->peak_staging, largest);

	struct xfer_ws_trainer_io io = { .size = sizeof(io), .rank = 0, .e = te, .shard = shard,
					 .src_mr = src_mr, .infer_buf = &dst, .infer_peer = &ipeer };
	struct xfer_ws_exec_attr a = { .size = sizeof(a), .flags = XFER_WS_EXEC_STAGE_ALL,
				       .watermark = 2 * sum };
	struct xfer_ws_exec_stats st;
	xfer_ws_trainer_exec *x = NULL;

	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), 0);
	if (x) {
		XT_EQ(xfer_ws_trainer_exec_step(x, &st), 0);
		XT_EQ(st.peak_staging, sum);
		XT_EQ(st.bytes_staged, sum);
		XT_CHECK(tr->peak_staging <= st.peak_staging, "planner's peak %lu above the executor's %lu",
			 (unsigned long)tr->peak_staging, (unsigned long)st.peak_staging);
		XT_EQ(xfer_ws_exec_receive(s, ie, 0, 10000), 0);
		xfer_ws_trainer_exec_destroy(x);
	}
out:
	xt_result("staging: the executor charges ws_chunk_staging_bytes, the planner's peak counts the same",
		  xt_failures == fails0, NULL);
	if (dst)
		xfer_rmr_free(dst);
	if (src_mr)
		xfer_mr_dereg(src_mr);
	if (dst_mr)
		xfer_mr_dereg(dst_mr);
	xfer_engine_destroy(te);
	xfer_engine_destroy(ie);
	free(arena);
	free(buf);
	free(shard);
	xfer_ws_schedule_free(s);
}

int main(void)
{
	struct xfer_ws_trainer_layout tl;
	struct xfer_ws_infer_layout il;
	struct xfer_ws_schedule *s = NULL;
	struct xfer_engine_attr ea;
	xfer_ws_model *m = NULL;
	xfer_engine *e = NULL;
	xfer_mr *mr = NULL;
	xfer_ws_trainer_exec *x = (xfer_ws_trainer_exec *)&x;   /* must come back NULL */
	uint64_t arena_bytes = 0, off = 0;
	uint8_t *arena;
	const void **shard;
	int fails0;

	xt_plan();
	XT_EQ(xfer_ws_model_parse(tiny_qwen2, 0, &m), 0);
	XT_EQ(xfer_ws_trainer_parse("fsdp=1", &tl), 0);
	memset(&il, 0, sizeof(il));
	il.dtype = XFER_WS_DT_BF16;
	XT_EQ(xfer_ws_infer_parse("tp=1", &il), 0);
	struct xfer_ws_plan_attr pa = { .size = sizeof(pa) };

	XT_EQ(xfer_ws_plan(m, &tl, &il, &pa, &s), 0);
	xfer_engine_attr_init(&ea);
	ea.provider = "shm";
	XT_EQ(xfer_engine_create(&ea, &e), 0);
	if (!s || !e)
		return xt_done();

	shard = calloc(s->nparams, sizeof(*shard));
	for (uint32_t p = 0; p < s->nparams; p++)
		arena_bytes += s->params[p].rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype);
	arena = calloc(1, arena_bytes);
	for (uint32_t p = 0; p < s->nparams; p++) {
		shard[p] = arena + off;
		off += s->params[p].rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype);
	}
	XT_EQ(xfer_mr_reg(e, arena, arena_bytes, NULL, 0, &mr), 0);

	struct xfer_ws_trainer_io io = { .size = sizeof(io), .rank = 0, .e = e, .shard = shard,
					 .src_mr = mr };
	struct xfer_ws_exec_attr a = { .size = sizeof(a) };

	fails0 = xt_failures;
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, NULL), -EINVAL);
	XT_EQ(xfer_ws_trainer_exec_create(NULL, &io, &a, &x), -EINVAL);
	XT_CHECK(x == NULL, "handle not cleared on error");
	XT_EQ(xfer_ws_trainer_exec_create(s, NULL, &a, &x), -EINVAL);
	io.size = 4;
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), -EINVAL);
	io.size = sizeof(io);
	io.rank = 1;   /* one trainer in this schedule */
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), -EINVAL);
	io.rank = 0;
	a.size = 4;
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), -EINVAL);
	a.size = sizeof(a);
	a.flags = 0x80;
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), -EINVAL);
	XT_CHECK(x == NULL, "handle set on error");
	a.flags = 0;
	a.threads = 257;   /* more transform threads than the executor takes */
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), -EINVAL);
	XT_CHECK(x == NULL, "handle set on error");
	a.threads = 0;
	XT_EQ(xfer_ws_trainer_exec_step(NULL, NULL), -EINVAL);
	xt_result("bad arguments: -EINVAL, no handle", xt_failures == fails0, NULL);

	fails0 = xt_failures;
	shard[0] = NULL;   /* the schedule says rank 0 holds every row */
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), -EINVAL);
	shard[0] = arena;
	xt_result("missing shard: -EINVAL", xt_failures == fails0, NULL);

	fails0 = xt_failures;
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), 0);
	XT_CHECK(x != NULL, "no handle");
	xfer_ws_trainer_exec_destroy(x);
	a.flags = XFER_WS_EXEC_STAGE_ALL;
	x = NULL;
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), 0);
	xfer_ws_trainer_exec_destroy(x);
	a.threads = 4;   /* with transform threads (started and joined) */
	x = NULL;
	XT_EQ(xfer_ws_trainer_exec_create(s, &io, &a, &x), 0);
	XT_CHECK(x != NULL, "no handle");
	xfer_ws_trainer_exec_destroy(x);
	xfer_ws_trainer_exec_destroy(NULL);
	xt_result("well-formed create and destroy, with and without --stage-all, 4 threads",
		  xt_failures == fails0, NULL);

	xfer_mr_dereg(mr);
	xfer_engine_destroy(e);
	staging_peak(m);
	free(arena);
	free(shard);
	xfer_ws_schedule_free(s);
	xfer_ws_model_free(m);
	return xt_done();
}
