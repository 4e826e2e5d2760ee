/* SPDX-License-Identifier: MIT */
/*
 * 8 threads submit writes at once to one target process, on every
 * transport variant (provider x rails). Half of each thread's writes carry
 * a completion callback only (the engine owns the handle), half a handle
 * and a callback; some are large enough to be striped. A small per-rail
 * in-flight bound makes the posting list back up (the EAGAIN path). No
 * completion may be lost or duplicated: every op's callback runs exactly
 * once with status 0 (counted per op and in total, also after the engine
 * is destroyed), every handle completes, and the target waits for one
 * immediate per write and then checks every byte.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "xt_target.h"

#define NTHREADS 8
#define PER_THREAD 160
#define SLOT 8192                       /* destination bytes per op */
#define NOPS (NTHREADS * PER_THREAD)
#define REGION ((uint64_t)NOPS * SLOT + (2u << 20))
#define BIG_OFF ((uint64_t)NOPS * SLOT) /* 2 MiB area for striped writes */
#define SRC_LEN (4u << 20)
#define IMM 0x7777

struct opslot {
	_Atomic int calls;
	_Atomic int status;
};

struct shared {
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *dst;
	uint64_t seed;
	struct opslot slot[NOPS + NTHREADS];
	_Atomic uint64_t total_calls;
	_Atomic int go;
	_Atomic int submit_errors;
	_Atomic int wait_errors;
};

struct targ {
	struct shared *s;
	int id;
	uint64_t src_off[PER_THREAD], len[PER_THREAD];
};

static void on_done(void *ctx, int status)
{
	struct opslot *o = ctx;

	if (status)
		atomic_store(&o->status, status);
	atomic_fetch_add(&o->calls, 1);
}

static struct shared *g;

static void on_done_total(void *ctx, int status)
{
	on_done(ctx, status);
	atomic_fetch_add(&g->total_calls, 1);
}

static void *worker(void *arg)
{
	struct targ *t = arg;
	struct shared *s = t->s;
	xfer_op *ops[PER_THREAD] = { 0 };

	while (!atomic_load(&s->go))
		;
	for (int i = 0; i < PER_THREAD; i++) {
		int k = t->id * PER_THREAD + i;
		struct xfer_done d = { on_done_total, &s->slot[k] };
		int ret;

		ret = xfer_write(s->e, s->src, t->src_off[i], s->dst, (uint64_t)k * SLOT, t->len[i],
				 XFER_OP_IMM, IMM, &d, (i & 1) ? &ops[i] : NULL);
		if (ret) {
			atomic_fetch_add(&s->submit_errors, 1);
			fprintf(stderr, "thread %d op %d: submit %s\n", t->id, i, xfer_strerror(ret));
		}
		if ((i % 16) == 15)
			sched_yield();
	}
	/* one striped write per thread into its own part of the big area */
	xfer_op *big = NULL;
	int k = NOPS + t->id;
	uint64_t blen = (2u << 20) / NTHREADS;
	if (xfer_write(s->e, s->src, 1u << 20, s->dst, BIG_OFF + (uint64_t)t->id * blen, blen,
		       XFER_OP_IMM, IMM, &(struct xfer_done){ on_done_total, &s->slot[k] }, &big))
		atomic_fetch_add(&s->submit_errors, 1);
	for (int i = 0; i < PER_THREAD; i++) {
		if (!ops[i])
			continue;
		int ret = xfer_op_wait(ops[i], 30000);

		if (ret) {
			atomic_fetch_add(&s->wait_errors, 1);
			fprintf(stderr, "thread %d op %d: wait %s\n", t->id, i, xfer_strerror(ret));
		}
		/* the callback ran before the handle completed */
		if (atomic_load(&s->slot[t->id * PER_THREAD + i].calls) != 1)
			atomic_fetch_add(&s->wait_errors, 1);
		xfer_op_release(ops[i]);
	}
	if (big) {
		if (xfer_op_wait(big, 30000))
			atomic_fetch_add(&s->wait_errors, 1);
		xfer_op_release(big);
	}
	return NULL;
}

/* The initiator engine (a small in-flight bound), its target process, and
 * the writes' shared state. */
FIXTURE(threads) {
	struct xt_peer child;
	struct shared *s;
	struct xt_verify_req *req;
	void *srcbuf;
};

FIXTURE_VARIANT(threads) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(threads);

FIXTURE_SETUP(threads)
{
	struct xt_target_arg ta = { variant->provider, variant->rails, REGION };
	struct xfer_engine_attr a;
	uint32_t peer;

	XT_REQUIRE_TRANSPORT();
	self->req = malloc(sizeof(*self->req));
	self->s = g = calloc(1, sizeof(*self->s));
	self->srcbuf = xt_alloc(SRC_LEN);
	ASSERT_TRUE(self->req && self->s && self->srcbuf);
	self->s->seed = 99 + variant->rails;
	xt_fill(self->srcbuf, SRC_LEN, self->s->seed, 0);
	XT_ASSERT_OK(xt_spawn(&self->child, xt_target_main, &ta));
	xfer_engine_attr_init(&a);
	a.provider = variant->provider;
	a.num_rails = variant->rails;
	a.peer_timeout_ms = 5000;
	a.node = "127.0.0.1";
	a.idle_spin_us = 200;
	a.max_inflight = 24;           /* back the posting list up */
	a.stripe_threshold = 64 * 1024;
	XT_ASSERT_OK(xfer_engine_create(&a, &self->s->e));
	XT_ASSERT_OK(xt_connect(self->s->e, self->child.fd, &peer));
	XT_ASSERT_OK(xfer_mr_reg(self->s->e, self->srcbuf, SRC_LEN, NULL, 0, &self->s->src));
	XT_ASSERT_OK(xt_recv_rmr(self->s->e, peer, self->child.fd, &self->s->dst));
}

FIXTURE_TEARDOWN(threads)
{
	struct shared *s = self->s;

	/* the target exits 0 only when every request verified */
	EXPECT_EQ(0, xt_target_end(&self->child)) TH_LOG("target process");
	xfer_rmr_free(s->dst);
	xfer_mr_dereg(s->src);
	xfer_engine_destroy(s->e);
	free(self->srcbuf);
	free(self->req);
	free(s);
}

/* 8 threads x 160 writes plus one striped write each: every callback once
 * with status 0 (also after the engine is destroyed), every handle
 * completes, every byte and immediate arrives. */
TEST_F_TIMEOUT(threads, eight_submitters, 60)   /* its waits are bounded at 30 s */
{
	struct shared *s = self->s;
	struct xt_verify_req *req = self->req;
	struct targ *ta_[NTHREADS];
	pthread_t th[NTHREADS];

	req->num_segs = 0;
	req->imm = IMM;
	req->imm_count = NOPS + NTHREADS;
	req->quit = 0;
	srand(7 + variant->rails);
	for (int t = 0; t < NTHREADS; t++) {
		ta_[t] = calloc(1, sizeof(*ta_[t]));
		ta_[t]->s = s;
		ta_[t]->id = t;
		for (int i = 0; i < PER_THREAD; i++) {
			int k = t * PER_THREAD + i;

			ta_[t]->len[i] = 1 + (uint64_t)(rand() % SLOT);
			ta_[t]->src_off[i] = (uint64_t)(rand() % (SRC_LEN - SLOT));
			req->segs[req->num_segs++] =
				(struct xt_seg){ (uint64_t)k * SLOT, ta_[t]->len[i], s->seed, ta_[t]->src_off[i] };
		}
		pthread_create(&th[t], NULL, worker, ta_[t]);
	}
	atomic_store(&s->go, 1);
	for (int t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < NTHREADS; t++)
		free(ta_[t]);
	EXPECT_EQ(0, atomic_load(&s->submit_errors));
	EXPECT_EQ(0, atomic_load(&s->wait_errors));
	/* the callbacks of handle-less ops may still be on their way */
	uint64_t t0 = xt_now_us();
	while (atomic_load(&s->total_calls) < NOPS + NTHREADS && xt_now_us() - t0 < 30000000)
		usleep(1000);
	EXPECT_EQ(NOPS + NTHREADS, atomic_load(&s->total_calls));
	/* every byte, and exactly the expected number of immediates */
	for (int t = 0; t < NTHREADS; t++) {
		uint64_t blen = (2u << 20) / NTHREADS;

		req->segs[req->num_segs++] =
			(struct xt_seg){ BIG_OFF + (uint64_t)t * blen, blen, s->seed, 1u << 20 };
	}
	EXPECT_EQ(0, xt_target_verify(self->child.fd, req));
	EXPECT_EQ(0, xt_target_end(&self->child)) TH_LOG("target process");
	self->child.pid = -1;
	xfer_rmr_free(s->dst);
	s->dst = NULL;
	xfer_mr_dereg(s->src);
	s->src = NULL;
	xfer_engine_destroy(s->e);
	s->e = NULL;
	/* after destroy no callback can come: counts are final */
	int bad = 0;
	for (int k = 0; k < NOPS + NTHREADS; k++)
		bad += atomic_load(&s->slot[k].calls) != 1 || atomic_load(&s->slot[k].status) != 0;
	EXPECT_EQ(0, bad);
	EXPECT_EQ(NOPS + NTHREADS, atomic_load(&s->total_calls));
}

TEST_HARNESS_MAIN
