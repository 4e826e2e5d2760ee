// SPDX-License-Identifier: MIT
/*
 * The trainer executor's API refuses bad input with -EINVAL and hands back
 * nothing: NULL arguments, a short io or attr, a rank outside the schedule,
 * unknown flags, more than 256 transform threads. A well-formed create (one trainer, shards in a registered
 * arena) succeeds, and a trainer without the shards the schedule says it
 * holds is refused. One engine on shm, no peers: nothing is sent.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xfer.h"
#include "xfer_ws_exec.h"
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

TEST_HARNESS_MAIN
