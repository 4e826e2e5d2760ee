/* SPDX-License-Identifier: MIT */
/*
 * Immediate counters and the SM-free words, end to end between processes,
 * on every transport variant (provider x rails).
 *
 * Receiver side (this process counts what a sender process sends on
 * command): xfer_imm_count polling (consumes nothing), xfer_imm_wait that
 * times out consuming nothing and then succeeds, xfer_imm_expect with a
 * callback and with a flag word that another thread waits on, several
 * expectations on one immediate in FIFO order, and data verified once its
 * immediate was counted.
 *
 * Producer side (this process watches a word, a target process counts):
 * a thread bumps the word 1..N, the worker posts the prepared write each
 * time (xfer_watch_fired == N, N callbacks), the target counts N
 * immediates and checks the bytes; a jump of k posts k writes; after
 * xfer_watch_remove bumps post nothing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "xt_target.h"

#define REGION (1u << 20)
#define SRC_LEN (1u << 20)

enum { C_QUIT = 0, C_IMM = 1, C_WRITE = 2 };

struct cmd {
	uint32_t op, imm, count, pad;
	uint64_t src_off, dst_off, len;
};

struct sender_arg {
	const char *prov;
	uint32_t rails;
	uint64_t seed;
};

/* The sender process: does what it is told, answers with the status. */
static int sender_main(int fd, void *argp)
{
	struct sender_arg *a = argp;
	xfer_engine *e = NULL;
	xfer_mr *src = NULL;
	xfer_rmr *dst = NULL;
	uint32_t peer;
	void *buf = xt_alloc(SRC_LEN);
	struct cmd c;

	xt_fill(buf, SRC_LEN, a->seed, 0);
	if (xt_engine(a->prov, a->rails, 3000, &e) || xt_connect(e, fd, &peer) ||
	    xfer_mr_reg(e, buf, SRC_LEN, NULL, 0, &src) || xt_recv_rmr(e, peer, fd, &dst))
		return 2;
	while (xt_recv(fd, &c, sizeof(c)) == sizeof(c) && c.op != C_QUIT) {
		int32_t st = 0;
		xfer_op *op;

		for (uint32_t i = 0; i < c.count && !st; i++) {
			if (c.op == C_IMM)
				st = xfer_imm(e, peer, c.imm, NULL, &op);
			else
				st = xfer_write(e, src, c.src_off, dst, c.dst_off, c.len, XFER_OP_IMM,
						c.imm, NULL, &op);
			if (!st) {
				st = xfer_op_wait(op, 10000);
				xfer_op_release(op);
			}
		}
		if (xt_send(fd, &st, sizeof(st)))
			break;
	}
	xfer_rmr_free(dst);
	xfer_mr_dereg(src);
	xfer_engine_destroy(e);
	free(buf);
	return 0;
}

static int send_cmd(int fd, uint32_t op, uint32_t imm, uint32_t count, uint64_t src_off,
		    uint64_t dst_off, uint64_t len)
{
	struct cmd c = { op, imm, count, 0, src_off, dst_off, len };
	int32_t st = -EIO;

	if (xt_send(fd, &c, sizeof(c)) || xt_recv(fd, &st, sizeof(st)) != sizeof(st))
		return -EIO;
	return st;
}

/* Wait until exactly `want` unconsumed arrivals are counted. */
static bool count_reaches(xfer_engine *e, uint32_t imm, uint64_t want)
{
	uint64_t t0 = xt_now_us();

	while (xfer_imm_count(e, imm) < want && xt_now_us() - t0 < 5000000)
		usleep(200);
	return xfer_imm_count(e, imm) == want;
}

struct rec {
	_Atomic int calls;
	_Atomic int status;
	_Atomic int order;
};
static _Atomic int order_seq;

static void on_notify(void *ctx, int status)
{
	struct rec *r = ctx;

	atomic_store(&r->status, status);
	atomic_store(&r->order, atomic_fetch_add(&order_seq, 1) + 1);
	atomic_fetch_add(&r->calls, 1);
}

static bool calls_reach(struct rec *r, int want)
{
	uint64_t t0 = xt_now_us();

	while (atomic_load(&r->calls) < want && xt_now_us() - t0 < 5000000)
		usleep(200);
	return atomic_load(&r->calls) == want;
}

struct flag_waiter {
	volatile uint64_t *flag;
	uint64_t want;
	_Atomic int saw;      /* 1 when the value was seen, -1 on timeout */
};

static void *flag_wait(void *arg)
{
	struct flag_waiter *w = arg;
	uint64_t t0 = xt_now_us();

	while (__atomic_load_n(w->flag, __ATOMIC_ACQUIRE) != w->want) {
		if (xt_now_us() - t0 > 10000000) {
			atomic_store(&w->saw, -1);
			return NULL;
		}
		sched_yield();
	}
	atomic_store(&w->saw, 1);
	return NULL;
}

/* Receiver side: this process's engine, a registered region, and a sender
 * process that sends on command. */
FIXTURE(recv) {
	struct xt_peer snd;
	struct sender_arg sa;
	xfer_engine *e;
	xfer_mr *mr;
	uint32_t speer;
	int fd;
	uint8_t *region;
};

FIXTURE_VARIANT(recv) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(recv);

FIXTURE_SETUP(recv)
{
	XT_REQUIRE_TRANSPORT();
	self->sa = (struct sender_arg){ variant->provider, variant->rails, 31337 + variant->rails };
	self->region = xt_alloc(REGION);
	ASSERT_TRUE(self->region != NULL);
	XT_ASSERT_OK(xt_spawn(&self->snd, sender_main, &self->sa));
	self->fd = self->snd.fd;
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 3000, &self->e));
	XT_ASSERT_OK(xt_connect(self->e, self->fd, &self->speer));
	XT_ASSERT_OK(xfer_mr_reg(self->e, self->region, REGION, NULL, XFER_MR_REMOTE_WRITE, &self->mr));
	XT_ASSERT_OK(xt_send_mr(self->fd, self->mr));
}

FIXTURE_TEARDOWN(recv)
{
	if (self->snd.pid > 0) {
		send_cmd(self->fd, C_QUIT, 0, 0, 0, 0, 0);
		EXPECT_EQ(0, xt_reap(&self->snd)) TH_LOG("sender process");
	}
	xfer_mr_dereg(self->mr);
	xfer_engine_destroy(self->e);
	free(self->region);
}

/* xfer_imm_count polls without consuming; xfer_imm_wait consumes. */
TEST_F(recv, polling)
{
	xfer_engine *e = self->e;
	int fd = self->fd;

	EXPECT_EQ(0, xfer_imm_count(e, 101));
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 101, 3, 0, 0, 0));
	EXPECT_TRUE(count_reaches(e, 101, 3)) TH_LOG("count of 101 is %llu",
						     (unsigned long long)xfer_imm_count(e, 101));
	usleep(20000);
	EXPECT_EQ(3, xfer_imm_count(e, 101)) TH_LOG("polling consumed something");
	EXPECT_EQ(0, xfer_imm_count(e, 102));
	EXPECT_EQ(0, xfer_imm_wait(e, 101, 3, 1000));
	EXPECT_EQ(0, xfer_imm_count(e, 101)) TH_LOG("the wait did not consume them");
}

/* A wait with a timeout times out consuming nothing, then succeeds. */
TEST_F(recv, timed_wait)
{
	xfer_engine *e = self->e;
	int fd = self->fd;

	XT_ASSERT_OK(send_cmd(fd, C_IMM, 202, 2, 0, 0, 0));
	EXPECT_TRUE(count_reaches(e, 202, 2)) TH_LOG("count of 202");
	uint64_t t0 = xt_now_us();
	EXPECT_EQ(-ETIMEDOUT, xfer_imm_wait(e, 202, 3, 300));
	uint64_t took = xt_now_us() - t0;
	EXPECT_TRUE(took >= 290000 && took < 3000000) TH_LOG("timed wait took %llu us",
							     (unsigned long long)took);
	EXPECT_EQ(2, xfer_imm_count(e, 202));
	EXPECT_EQ(0, xfer_imm_wait(e, 202, 1, 0)) TH_LOG("a zero timeout takes what is there");
	EXPECT_EQ(1, xfer_imm_count(e, 202));
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 202, 2, 0, 0, 0));
	EXPECT_EQ(0, xfer_imm_wait(e, 202, 3, 5000));
	EXPECT_EQ(0, xfer_imm_count(e, 202));
	EXPECT_EQ(-EINVAL, xfer_imm_wait(e, 202, 0, 10));
}

/* xfer_imm_expect with a callback: called once the count is reached. */
TEST_F(recv, expect_callback)
{
	xfer_engine *e = self->e;
	int fd = self->fd;
	struct rec r1 = { 0 };
	struct xfer_notify n = { .size = sizeof(n), .fn = on_notify, .ctx = &r1 };

	XT_ASSERT_OK(xfer_imm_expect(e, 303, 2, &n));
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 303, 1, 0, 0, 0));
	EXPECT_TRUE(count_reaches(e, 303, 1)) TH_LOG("count of 303");
	EXPECT_EQ(0, atomic_load(&r1.calls));
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 303, 1, 0, 0, 0));
	EXPECT_TRUE(calls_reach(&r1, 1)) TH_LOG("callback of 303: %d calls", atomic_load(&r1.calls));
	EXPECT_EQ(0, atomic_load(&r1.status));
	EXPECT_EQ(0, xfer_imm_count(e, 303));
}

/* xfer_imm_expect with a flag word, seen by a waiting thread. */
TEST_F(recv, expect_flag)
{
	xfer_engine *e = self->e;
	int fd = self->fd;
	volatile uint64_t flag = 0;
	struct flag_waiter w = { &flag, 0xabcdef0123456789ull, 0 };
	pthread_t th;
	struct xfer_notify nf = { .size = sizeof(nf), .flag = &flag, .flag_value = w.want };

	XT_ASSERT_OK(xfer_imm_expect(e, 404, 4, &nf));
	pthread_create(&th, NULL, flag_wait, &w);
	XT_EXPECT_OK(send_cmd(fd, C_IMM, 404, 3, 0, 0, 0));
	EXPECT_TRUE(count_reaches(e, 404, 3)) TH_LOG("count of 404");
	EXPECT_EQ(0, flag);
	EXPECT_EQ(0, atomic_load(&w.saw));
	XT_EXPECT_OK(send_cmd(fd, C_IMM, 404, 1, 0, 0, 0));
	pthread_join(th, NULL);
	EXPECT_EQ(1, atomic_load(&w.saw));
	EXPECT_TRUE(flag == w.want) TH_LOG("flag holds %llx", (unsigned long long)flag);
	EXPECT_EQ(0, xfer_imm_count(e, 404));
}

/* Several expectations on one immediate in FIFO: 2, then 3, then 1 (flag +
 * callback); a later one does not overtake an earlier one. */
TEST_F(recv, expect_fifo)
{
	xfer_engine *e = self->e;
	int fd = self->fd;
	struct rec a = { 0 }, b = { 0 }, c = { 0 };
	volatile uint64_t cflag = 0;
	struct xfer_notify na = { .size = sizeof(na), .fn = on_notify, .ctx = &a };
	struct xfer_notify nb = { .size = sizeof(nb), .fn = on_notify, .ctx = &b };
	struct xfer_notify nc = { .size = sizeof(nc), .fn = on_notify, .ctx = &c, .flag = &cflag,
				  .flag_value = 5 };

	atomic_store(&order_seq, 0);
	XT_ASSERT_OK(xfer_imm_expect(e, 505, 2, &na));
	XT_ASSERT_OK(xfer_imm_expect(e, 505, 3, &nb));
	XT_ASSERT_OK(xfer_imm_expect(e, 505, 1, &nc));
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 505, 1, 0, 0, 0));
	EXPECT_TRUE(count_reaches(e, 505, 1)) TH_LOG("505 first");
	EXPECT_EQ(0, atomic_load(&a.calls) + atomic_load(&b.calls) + atomic_load(&c.calls));
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 505, 1, 0, 0, 0));
	EXPECT_TRUE(calls_reach(&a, 1)) TH_LOG("first expectation");
	EXPECT_EQ(0, xfer_imm_count(e, 505));
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 505, 2, 0, 0, 0));
	EXPECT_TRUE(count_reaches(e, 505, 2)) TH_LOG("505 third");
	EXPECT_EQ(0, atomic_load(&b.calls) + atomic_load(&c.calls)) TH_LOG("c overtook b");
	EXPECT_EQ(0, cflag);
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 505, 1, 0, 0, 0));
	EXPECT_TRUE(calls_reach(&b, 1)) TH_LOG("second expectation");
	EXPECT_EQ(0, atomic_load(&c.calls));
	EXPECT_EQ(0, xfer_imm_count(e, 505));
	XT_ASSERT_OK(send_cmd(fd, C_IMM, 505, 1, 0, 0, 0));
	EXPECT_TRUE(calls_reach(&c, 1)) TH_LOG("third expectation");
	EXPECT_EQ(5, cflag);
	EXPECT_TRUE(atomic_load(&a.order) < atomic_load(&b.order) &&
		    atomic_load(&b.order) < atomic_load(&c.order))
		TH_LOG("order %d %d %d", atomic_load(&a.order), atomic_load(&b.order),
		       atomic_load(&c.order));
	EXPECT_EQ(3, atomic_load(&a.calls) + atomic_load(&b.calls) + atomic_load(&c.calls));
	EXPECT_EQ(0, xfer_imm_count(e, 505));
}

/* Expectations without fn or flag, with a zero count, or with unknown
 * flags are refused. */
TEST_F(recv, invalid_expectations)
{
	xfer_engine *e = self->e;
	struct rec a = { 0 };
	struct xfer_notify na = { .size = sizeof(na), .fn = on_notify, .ctx = &a };
	struct xfer_notify bad = { .size = sizeof(bad) };

	EXPECT_EQ(-EINVAL, xfer_imm_expect(e, 1, 1, &bad)) TH_LOG("neither fn nor flag");
	EXPECT_EQ(-EINVAL, xfer_imm_expect(e, 1, 0, &na));
	bad = na;
	bad.flags = 1;
	EXPECT_EQ(-EINVAL, xfer_imm_expect(e, 1, 1, &bad));
}

/* The data is there once its immediate is counted. */
TEST_F(recv, data_before_imm)
{
	for (int round = 0; round < 3; round++) {
		uint64_t so = 1000 + 77777u * round, doff = 4096u * round + 13, len = 200000;

		XT_EXPECT_OK(send_cmd(self->fd, C_WRITE, 606, 1, so, doff, len));
		EXPECT_EQ(0, xfer_imm_wait(self->e, 606, 1, 5000));
		int64_t bad_at = xt_verify(self->region + doff, len, self->sa.seed, so);
		EXPECT_TRUE(bad_at < 0) TH_LOG("round %d: byte %lld differs", round, (long long)bad_at);
		memset(self->region + doff, 0, len);
	}
}

/* ---- watch ------------------------------------------------------------- */

struct bumper {
	volatile uint64_t *word;
	xfer_watch *w;
	int n;
	_Atomic int lagged;
};

static void *bump(void *arg)
{
	struct bumper *b = arg;

	for (int i = 1; i <= b->n; i++) {
		__atomic_store_n(b->word, (uint64_t)i, __ATOMIC_RELEASE);
		if (i % 4 == 0) {   /* now and then let the worker catch up */
			uint64_t t0 = xt_now_us();

			while (xfer_watch_fired(b->w) < (uint64_t)i && xt_now_us() - t0 < 5000000)
				usleep(100);
			if (xfer_watch_fired(b->w) < (uint64_t)i)
				atomic_store(&b->lagged, 1);
		}
	}
	return NULL;
}

struct cbcount {
	_Atomic int calls, errors;
};

static void on_watch_done(void *ctx, int status)
{
	struct cbcount *c = ctx;

	if (status)
		atomic_fetch_add(&c->errors, 1);
	atomic_fetch_add(&c->calls, 1);
}

/* Producer side: this process watches a word; a target process counts
 * the immediates and checks the bytes. */
FIXTURE(watch) {
	struct xt_link l;
	uint64_t seed;
	uint8_t *sbuf;
	struct xt_verify_req *req;
};

FIXTURE_VARIANT(watch) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(watch);

FIXTURE_SETUP(watch)
{
	struct xt_target_arg ta = { variant->provider, variant->rails, REGION };

	XT_REQUIRE_TRANSPORT();
	self->seed = 31337 + variant->rails;
	self->sbuf = xt_alloc(SRC_LEN);
	self->req = calloc(1, sizeof(*self->req));
	ASSERT_TRUE(self->sbuf && self->req);
	xt_fill(self->sbuf, SRC_LEN, self->seed, 0);
	XT_LINK_OPEN(&self->l, &ta, 3000, self->sbuf, SRC_LEN);
}

FIXTURE_TEARDOWN(watch)
{
	/* the target exits 0 only when every request verified */
	EXPECT_EQ(0, xt_link_close(&self->l)) TH_LOG("target process");
	free(self->sbuf);
	free(self->req);
}

/* A thread bumps the word 1..N: N writes posted, N callbacks, N immediates
 * and the bytes at the target; a jump of 5 posts 5; after
 * xfer_watch_remove bumps post nothing. */
TEST_F(watch, bumps)
{
	const int N = 40;
	const uint32_t imm = 0x3a7c4;
	volatile uint64_t word = 0;
	struct cbcount cb = { 0 };
	struct xt_verify_req *req = self->req;
	int fd = self->l.t.fd;
	xfer_watch *w = NULL;
	struct xfer_watch_attr wa = {
		.size = sizeof(wa), .flags = XFER_OP_IMM, .word = &word, .src = self->l.src,
		.src_off = 5000, .dst = self->l.dst, .dst_off = 123456, .len = 65536 + 3, .imm = imm,
		.done = { on_watch_done, &cb },
	};

	XT_ASSERT_OK(xfer_watch_add(self->l.e, &wa, &w));
	ASSERT_TRUE(w != NULL);
	usleep(20000);
	EXPECT_EQ(0, xfer_watch_fired(w)) TH_LOG("fired before the first bump");
	struct bumper b = { &word, w, N, 0 };
	pthread_t th;
	pthread_create(&th, NULL, bump, &b);
	pthread_join(th, NULL);
	EXPECT_EQ(0, atomic_load(&b.lagged));
	uint64_t t0 = xt_now_us();
	while ((xfer_watch_fired(w) < (uint64_t)N || atomic_load(&cb.calls) < N) &&
	       xt_now_us() - t0 < 10000000)
		usleep(500);
	EXPECT_EQ(N, xfer_watch_fired(w));
	EXPECT_EQ(N, atomic_load(&cb.calls));
	EXPECT_EQ(0, atomic_load(&cb.errors));
	/* the target counts N immediates; the data is the prepared range */
	req->imm = imm;
	req->imm_count = (uint32_t)N;
	req->num_segs = 1;
	req->segs[0] = (struct xt_seg){ wa.dst_off, wa.len, self->seed, wa.src_off };
	EXPECT_EQ(0, xt_target_verify(fd, req)) TH_LOG("%d bumps", N);

	TH_LOG("a jump by 5 posts the write 5 times");
	__atomic_store_n(&word, (uint64_t)N + 5, __ATOMIC_RELEASE);
	req->imm_count = 5;
	EXPECT_EQ(0, xt_target_verify(fd, req));
	EXPECT_EQ(N + 5, xfer_watch_fired(w));
	t0 = xt_now_us();
	while (atomic_load(&cb.calls) < N + 5 && xt_now_us() - t0 < 5000000)
		usleep(500);
	EXPECT_EQ(N + 5, atomic_load(&cb.calls));

	TH_LOG("removed: bumps post nothing more");
	XT_EXPECT_OK(xfer_watch_remove(w));
	__atomic_store_n(&word, (uint64_t)N + 9, __ATOMIC_RELEASE);
	usleep(50000);
	EXPECT_EQ(N + 5, atomic_load(&cb.calls));
	req->imm_count = 0;
	req->num_segs = 0;
	EXPECT_EQ(0, xt_target_verify(fd, req)) TH_LOG("the region is not all zero again");
}

/* Watches of zero length or out of range are refused. */
TEST_F(watch, bad_watches)
{
	volatile uint64_t word = 0;
	struct cbcount cb = { 0 };
	xfer_watch *w = NULL;
	struct xfer_watch_attr wa = {
		.size = sizeof(wa), .flags = XFER_OP_IMM, .word = &word, .src = self->l.src,
		.src_off = 5000, .dst = self->l.dst, .dst_off = 123456, .len = 65536 + 3, .imm = 0x3a7c4,
		.done = { on_watch_done, &cb },
	};

	wa.len = 0;
	wa.flags = 0;
	EXPECT_EQ(-EINVAL, xfer_watch_add(self->l.e, &wa, &w));
	wa.len = REGION;
	EXPECT_EQ(-ERANGE, xfer_watch_add(self->l.e, &wa, &w));
}

TEST_HARNESS_MAIN
