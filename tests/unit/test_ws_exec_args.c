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

#include "xfer.h"
#include "xfer_ws_exec.h"
#include "ws_models.h"
#include "xt.h"

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
	EXPECT_EQ(0, xfer_ws_model_parse(tiny_qwen2, 0, &m));
	EXPECT_EQ(0, xfer_ws_trainer_parse("fsdp=1", &tl));
	memset(&il, 0, sizeof(il));
	il.dtype = XFER_WS_DT_BF16;
	EXPECT_EQ(0, xfer_ws_infer_parse("tp=1", &il));
	struct xfer_ws_plan_attr pa = { .size = sizeof(pa) };

	EXPECT_EQ(0, xfer_ws_plan(m, &tl, &il, &pa, &s));
	xfer_engine_attr_init(&ea);
	ea.provider = "shm";
	EXPECT_EQ(0, xfer_engine_create(&ea, &e));
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
	EXPECT_EQ(0, xfer_mr_reg(e, arena, arena_bytes, NULL, 0, &mr));

	struct xfer_ws_trainer_io io = { .size = sizeof(io), .rank = 0, .e = e, .shard = shard,
					 .src_mr = mr };
	struct xfer_ws_exec_attr a = { .size = sizeof(a) };

	fails0 = xt_failures;
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
	xt_result("bad arguments: -EINVAL, no handle", xt_failures == fails0, NULL);

	fails0 = xt_failures;
	shard[0] = NULL;   /* the schedule says rank 0 holds every row */
	EXPECT_EQ(-EINVAL, xfer_ws_trainer_exec_create(s, &io, &a, &x));
	shard[0] = arena;
	xt_result("missing shard: -EINVAL", xt_failures == fails0, NULL);

	fails0 = xt_failures;
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
	xt_result("well-formed create and destroy, with and without --stage-all, 4 threads",
		  xt_failures == fails0, NULL);

	xfer_mr_dereg(mr);
	xfer_engine_destroy(e);
	free(arena);
	free(shard);
	xfer_ws_schedule_free(s);
	xfer_ws_model_free(m);
	return xt_done();
}
