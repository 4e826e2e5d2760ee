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

#include "harness.h"
#include "xfer.h"
#include "xfer_ws_exec.h"
#include "ws_internal.h"
#include "ws_models.h"

/* One trainer (fsdp=1 -> tp=1, bf16) of tiny_qwen2, its shards in one
 * arena registered on an shm engine. */
FIXTURE(exec_args) {
	struct xfer_ws_schedule *s;
	xfer_ws_model *m;
	xfer_engine *e;
	xfer_mr *mr;
	uint8_t *arena;
	const void **shard;
	struct xfer_ws_trainer_io io;
	struct xfer_ws_exec_attr a;
};

FIXTURE_SETUP(exec_args)
{
	struct xfer_ws_trainer_layout tl;
	struct xfer_ws_infer_layout il;
	struct xfer_ws_plan_attr pa = { .size = sizeof(pa) };
	struct xfer_engine_attr ea;
	uint64_t arena_bytes = 0, off = 0;

	ASSERT_EQ(0, xfer_ws_model_parse(tiny_qwen2, 0, &self->m));
	ASSERT_EQ(0, xfer_ws_trainer_parse("fsdp=1", &tl));
	memset(&il, 0, sizeof(il));
	il.dtype = XFER_WS_DT_BF16;
	ASSERT_EQ(0, xfer_ws_infer_parse("tp=1", &il));
	ASSERT_EQ(0, xfer_ws_plan(self->m, &tl, &il, &pa, &self->s));
	xfer_engine_attr_init(&ea);
	ea.provider = "shm";
	ASSERT_EQ(0, xfer_engine_create(&ea, &self->e));

	const struct xfer_ws_schedule *s = self->s;

	self->shard = calloc(s->nparams, sizeof(*self->shard));
	for (uint32_t p = 0; p < s->nparams; p++)
		arena_bytes += s->params[p].rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype);
	self->arena = calloc(1, arena_bytes);
	for (uint32_t p = 0; p < s->nparams; p++) {
		self->shard[p] = self->arena + off;
		off += s->params[p].rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype);
	}
	ASSERT_EQ(0, xfer_mr_reg(self->e, self->arena, arena_bytes, NULL, 0, &self->mr));
	self->io = (struct xfer_ws_trainer_io){ .size = sizeof(self->io), .rank = 0, .e = self->e,
						.shard = self->shard, .src_mr = self->mr };
	self->a = (struct xfer_ws_exec_attr){ .size = sizeof(self->a) };
}

FIXTURE_TEARDOWN(exec_args)
{
	xfer_mr_dereg(self->mr);
	xfer_engine_destroy(self->e);
	free(self->arena);
	free(self->shard);
	xfer_ws_schedule_free(self->s);
	xfer_ws_model_free(self->m);
}

/* Bad arguments: -EINVAL, no handle. */
TEST_F(exec_args, bad_arguments_refused_no_handle)
{
	struct xfer_ws_schedule *s = self->s;
	struct xfer_ws_trainer_io io = self->io;
	struct xfer_ws_exec_attr a = self->a;
	xfer_ws_trainer_exec *x = (xfer_ws_trainer_exec *)&x;   /* must come back NULL */

	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(s, &io, &a, NULL));
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(NULL, &io, &a, &x));
	EXPECT_TRUE(x == NULL) TH_LOG("handle not cleared on error");
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(s, NULL, &a, &x));
	io.size = 4;
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	io.size = sizeof(io);
	io.rank = 1;   /* one trainer in this schedule */
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	io.rank = 0;
	a.size = 4;
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	a.size = sizeof(a);
	a.flags = 0x80;
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	EXPECT_TRUE(x == NULL) TH_LOG("handle set on error");
	a.flags = 0;
	a.threads = 257;   /* more transform threads than the executor takes */
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	EXPECT_TRUE(x == NULL) TH_LOG("handle set on error");
	a.threads = 0;
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_step(NULL, NULL));
}

/* A trainer without the shards the schedule says it holds: -EINVAL. */
TEST_F(exec_args, missing_shard_refused)
{
	xfer_ws_trainer_exec *x = NULL;

	self->shard[0] = NULL;   /* the schedule says rank 0 holds every row */
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(self->s, &self->io, &self->a, &x));
	self->shard[0] = self->arena;
}

/* Well-formed create and destroy, with and without --stage-all, 4 threads. */
TEST_F(exec_args, well_formed_create_destroy)
{
	struct xfer_ws_schedule *s = self->s;
	struct xfer_ws_trainer_io io = self->io;
	struct xfer_ws_exec_attr a = self->a;
	xfer_ws_trainer_exec *x = NULL;

	EXPECT_EQ(0, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	EXPECT_TRUE(x != NULL) TH_LOG("no handle");
	xfer_ws_trainer_exec_destroy(x);
	a.flags = XFER_WS_EXEC_STAGE_ALL;
	x = NULL;
	EXPECT_EQ(0, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	xfer_ws_trainer_exec_destroy(x);
	a.threads = 4;   /* with transform threads (started and joined) */
	x = NULL;
	EXPECT_EQ(0, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	EXPECT_TRUE(x != NULL) TH_LOG("no handle");
	xfer_ws_trainer_exec_destroy(x);
	xfer_ws_trainer_exec_destroy(NULL);
}

/* Staging counted one way: trainer 0 of a fsdp=1 -> tp=1 fp8 schedule, every chunk staged, with a
 * ring that holds them all: the executor prepares every chunk before its
 * first write completes, so its peak is the sum of their charges. */
TEST(staging_counted_one_way)
{
	xfer_ws_model *m = NULL;
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

	ASSERT_EQ(0, xfer_ws_model_parse(tiny_qwen2, 0, &m));
	EXPECT_EQ(0, xfer_ws_trainer_parse("fsdp=1", &tl));
	EXPECT_EQ(0, xfer_ws_infer_parse("tp=1", &il));
	EXPECT_EQ(0, xfer_ws_plan(m, &tl, &il, &pa, &s));
	xfer_engine_attr_init(&ea);
	ea.provider = "shm";
	EXPECT_EQ(0, xfer_engine_create(&ea, &te));
	EXPECT_EQ(0, xfer_engine_create(&ea, &ie));
	if (!s || !te || !ie)
		goto out;
	EXPECT_EQ(1, s->ntrainers);
	EXPECT_EQ(1, s->ninfer);

	shard = calloc(s->nparams, sizeof(*shard));
	for (uint32_t p = 0; p < s->nparams; p++)
		arena_bytes += s->params[p].rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype);
	arena = calloc(1, arena_bytes);
	buf = calloc(1, s->infers[0].buf_bytes);
	for (uint32_t p = 0; p < s->nparams; p++) {
		shard[p] = arena + off;
		off += s->params[p].rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype);
	}
	EXPECT_EQ(0, xfer_mr_reg(te, arena, arena_bytes, NULL, 0, &src_mr));
	EXPECT_EQ(0, xfer_mr_reg(ie, buf, s->infers[0].buf_bytes, NULL, XFER_MR_REMOTE_WRITE, &dst_mr));
	EXPECT_EQ(0, xfer_engine_address(ie, addr, &alen));
	EXPECT_EQ(0, xfer_engine_add_peer(te, addr, alen, &ipeer));
	alen = sizeof(addr);
	EXPECT_EQ(0, xfer_engine_address(te, addr, &alen));
	EXPECT_EQ(0, xfer_engine_add_peer(ie, addr, alen, &tpeer));
	EXPECT_EQ(0, xfer_mr_descriptor(dst_mr, desc, &dlen));
	EXPECT_EQ(0, xfer_rmr_import(te, ipeer, desc, dlen, &dst));
	if (!dst)
		goto out;

	const struct xfer_ws_trainer_rank *tr = &s->trainers[0];

	for (uint32_t k = 0; k < tr->nchunks; k++) {
		const struct xfer_ws_chunk *c = &s->chunks[tr->first_chunk + k];
		uint64_t b = ws_chunk_staging_bytes(c);

		EXPECT_EQ(1, c->nwrites);
		sum += b;
		largest = b > largest ? b : largest;
		if (c->out_bytes + c->scale_bytes > largest_wire)
			largest_wire = c->out_bytes + c->scale_bytes;
	}
	EXPECT_LT(largest_wire, largest)
		TH_LOG("largest chunk's staging %lu not rounded up from %lu: the case tests nothing",
		       (unsigned long)largest, (unsigned long)largest_wire);
	EXPECT_EQ(largest, tr->peak_staging);

	struct xfer_ws_trainer_io io = { .size = sizeof(io), .rank = 0, .e = te, .shard = shard,
					 .src_mr = src_mr, .infer_buf = &dst, .infer_peer = &ipeer };
	struct xfer_ws_exec_attr a = { .size = sizeof(a), .flags = XFER_WS_EXEC_STAGE_ALL,
				       .watermark = 2 * sum };
	struct xfer_ws_exec_stats st;
	xfer_ws_trainer_exec *x = NULL;

	EXPECT_EQ(0, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	if (x) {
		EXPECT_EQ(0, xfer_ws_trainer_exec_step(x, &st));
		EXPECT_EQ(sum, st.peak_staging);
		EXPECT_EQ(sum, st.bytes_staged);
		EXPECT_LE(tr->peak_staging, st.peak_staging)
			TH_LOG("planner's peak %lu above the executor's %lu",
			       (unsigned long)tr->peak_staging, (unsigned long)st.peak_staging);
		EXPECT_EQ(0, xfer_ws_exec_receive(s, ie, 0, 10000));
		xfer_ws_trainer_exec_destroy(x);
	}
out:
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
	xfer_ws_model_free(m);
}

TEST_HARNESS_MAIN
