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
	free(arena);
	free(shard);
	xfer_ws_schedule_free(s);
	xfer_ws_model_free(m);
	return xt_done();
}
