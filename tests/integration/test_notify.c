/* SPDX-License-Identifier: MIT */
/*
 * Immediate counters and the SM-free words, end to end between processes,
 * on shm and tcp;ofi_rxm with one and two rails.
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

#include "xt.h"
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

static void receiver_cases(xfer_engine *e, int fd, uint8_t *region, uint64_t seed)
{
	/* polling */
	XT_EQ(xfer_imm_count(e, 101), 0);
	XT_OK(send_cmd(fd, C_IMM, 101, 3, 0, 0, 0));
	XT_CHECK(count_reaches(e, 101, 3), "count of 101 is %llu",
		 (unsigned long long)xfer_imm_count(e, 101));
	usleep(20000);
	XT_EQ(xfer_imm_count(e, 101), 3);                /* polling consumed nothing */
	XT_EQ(xfer_imm_count(e, 102), 0);
	XT_EQ(xfer_imm_wait(e, 101, 3, 1000), 0);
	XT_EQ(xfer_imm_count(e, 101), 0);                /* the wait consumed them */

	/* wait with timeout: times out consuming nothing, then succeeds */
	XT_OK(send_cmd(fd, C_IMM, 202, 2, 0, 0, 0));
	XT_CHECK(count_reaches(e, 202, 2), "count of 202");
	uint64_t t0 = xt_now_us();
	XT_EQ(xfer_imm_wait(e, 202, 3, 300), -ETIMEDOUT);
	uint64_t took = xt_now_us() - t0;
	XT_CHECK(took >= 290000 && took < 3000000, "timed wait took %llu us", (unsigned long long)took);
	XT_EQ(xfer_imm_count(e, 202), 2);
	XT_EQ(xfer_imm_wait(e, 202, 1, 0), 0);           /* a zero timeout takes what is there */
	XT_EQ(xfer_imm_count(e, 202), 1);
	XT_OK(send_cmd(fd, C_IMM, 202, 2, 0, 0, 0));
	XT_EQ(xfer_imm_wait(e, 202, 3, 5000), 0);
	XT_EQ(xfer_imm_count(e, 202), 0);
	XT_EQ(xfer_imm_wait(e, 202, 0, 10), -EINVAL);

	/* expect with a callback */
	struct rec r1 = { 0 };
	struct xfer_notify n = { .size = sizeof(n), .fn = on_notify, .ctx = &r1 };
	XT_OK(xfer_imm_expect(e, 303, 2, &n));
	XT_OK(send_cmd(fd, C_IMM, 303, 1, 0, 0, 0));
	XT_CHECK(count_reaches(e, 303, 1), "count of 303");
	XT_EQ(atomic_load(&r1.calls), 0);
	XT_OK(send_cmd(fd, C_IMM, 303, 1, 0, 0, 0));
	XT_CHECK(calls_reach(&r1, 1), "callback of 303: %d calls", atomic_load(&r1.calls));
	XT_EQ(atomic_load(&r1.status), 0);
	XT_EQ(xfer_imm_count(e, 303), 0);

	/* expect with a flag word, seen by a waiting thread */
	volatile uint64_t flag = 0;
	struct flag_waiter w = { &flag, 0xabcdef0123456789ull, 0 };
	pthread_t th;
	struct xfer_notify nf = { .size = sizeof(nf), .flag = &flag, .flag_value = w.want };
	XT_OK(xfer_imm_expect(e, 404, 4, &nf));
	pthread_create(&th, NULL, flag_wait, &w);
	XT_OK(send_cmd(fd, C_IMM, 404, 3, 0, 0, 0));
	XT_CHECK(count_reaches(e, 404, 3), "count of 404");
	XT_EQ(flag, 0);
	XT_EQ(atomic_load(&w.saw), 0);
	XT_OK(send_cmd(fd, C_IMM, 404, 1, 0, 0, 0));
	pthread_join(th, NULL);
	XT_EQ(atomic_load(&w.saw), 1);
	XT_CHECK(flag == w.want, "flag holds %llx", (unsigned long long)flag);
	XT_EQ(xfer_imm_count(e, 404), 0);

	/* several expectations in FIFO: 2, then 3, then 1 (flag + callback) */
	struct rec a = { 0 }, b = { 0 }, c = { 0 };
	volatile uint64_t cflag = 0;
	struct xfer_notify na = { .size = sizeof(na), .fn = on_notify, .ctx = &a };
	struct xfer_notify nb = { .size = sizeof(nb), .fn = on_notify, .ctx = &b };
	struct xfer_notify nc = { .size = sizeof(nc), .fn = on_notify, .ctx = &c, .flag = &cflag,
				  .flag_value = 5 };
	atomic_store(&order_seq, 0);
	XT_OK(xfer_imm_expect(e, 505, 2, &na));
	XT_OK(xfer_imm_expect(e, 505, 3, &nb));
	XT_OK(xfer_imm_expect(e, 505, 1, &nc));
	XT_OK(send_cmd(fd, C_IMM, 505, 1, 0, 0, 0));
	XT_CHECK(count_reaches(e, 505, 1), "505 first");
	XT_EQ(atomic_load(&a.calls) + atomic_load(&b.calls) + atomic_load(&c.calls), 0);
	XT_OK(send_cmd(fd, C_IMM, 505, 1, 0, 0, 0));
	XT_CHECK(calls_reach(&a, 1), "first expectation");
	XT_EQ(xfer_imm_count(e, 505), 0);
	XT_OK(send_cmd(fd, C_IMM, 505, 2, 0, 0, 0));
	XT_CHECK(count_reaches(e, 505, 2), "505 third");
	XT_EQ(atomic_load(&b.calls) + atomic_load(&c.calls), 0);   /* c does not overtake b */
	XT_EQ(cflag, 0);
	XT_OK(send_cmd(fd, C_IMM, 505, 1, 0, 0, 0));
	XT_CHECK(calls_reach(&b, 1), "second expectation");
	XT_EQ(atomic_load(&c.calls), 0);
	XT_EQ(xfer_imm_count(e, 505), 0);
	XT_OK(send_cmd(fd, C_IMM, 505, 1, 0, 0, 0));
	XT_CHECK(calls_reach(&c, 1), "third expectation");
	XT_EQ(cflag, 5);
	XT_CHECK(atomic_load(&a.order) < atomic_load(&b.order) &&
		 atomic_load(&b.order) < atomic_load(&c.order), "order %d %d %d",
		 atomic_load(&a.order), atomic_load(&b.order), atomic_load(&c.order));
	XT_EQ(atomic_load(&a.calls) + atomic_load(&b.calls) + atomic_load(&c.calls), 3);
	XT_EQ(xfer_imm_count(e, 505), 0);

	/* invalid expectations */
	struct xfer_notify bad = { .size = sizeof(bad) };
	XT_EQ(xfer_imm_expect(e, 1, 1, &bad), -EINVAL);        /* neither fn nor flag */
	XT_EQ(xfer_imm_expect(e, 1, 0, &na), -EINVAL);
	bad = na;
	bad.flags = 1;
	XT_EQ(xfer_imm_expect(e, 1, 1, &bad), -EINVAL);

	/* data is there once its immediate is counted */
	for (int round = 0; round < 3; round++) {
		uint64_t so = 1000 + 77777u * round, doff = 4096u * round + 13, len = 200000;

		XT_OK(send_cmd(fd, C_WRITE, 606, 1, so, doff, len));
		XT_EQ(xfer_imm_wait(e, 606, 1, 5000), 0);
		int64_t bad_at = xt_verify(region + doff, len, seed, so);
		XT_CHECK(bad_at < 0, "round %d: byte %lld differs", round, (long long)bad_at);
		memset(region + doff, 0, len);
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

static void watch_cases(xfer_engine *e, xfer_mr *src, xfer_rmr *dst, int fd, uint64_t seed)
{
	const int N = 40;
	const uint32_t imm = 0x3a7c4;
	volatile uint64_t word = 0;
	struct cbcount cb = { 0 };
	struct xt_verify_req *req = calloc(1, sizeof(*req));
	xfer_watch *w = NULL;
	struct xfer_watch_attr wa = {
		.size = sizeof(wa), .flags = XFER_OP_IMM, .word = &word, .src = src,
		.src_off = 5000, .dst = dst, .dst_off = 123456, .len = 65536 + 3, .imm = imm,
		.done = { on_watch_done, &cb },
	};

	XT_OK(xfer_watch_add(e, &wa, &w));
	if (!w)
		return;
	usleep(20000);
	XT_EQ(xfer_watch_fired(w), 0);              /* nothing before the first bump */
	struct bumper b = { &word, w, N, 0 };
	pthread_t th;
	pthread_create(&th, NULL, bump, &b);
	pthread_join(th, NULL);
	XT_EQ(atomic_load(&b.lagged), 0);
	uint64_t t0 = xt_now_us();
	while ((xfer_watch_fired(w) < (uint64_t)N || atomic_load(&cb.calls) < N) &&
	       xt_now_us() - t0 < 10000000)
		usleep(500);
	XT_EQ(xfer_watch_fired(w), N);
	XT_EQ(atomic_load(&cb.calls), N);
	XT_EQ(atomic_load(&cb.errors), 0);
	/* the target counts N immediates; the data is the prepared range */
	req->imm = imm;
	req->imm_count = (uint32_t)N;
	req->num_segs = 1;
	req->segs[0] = (struct xt_seg){ wa.dst_off, wa.len, seed, wa.src_off };
	XT_EQ(xt_target_verify(fd, req), 0);

	/* a jump by 5 posts the write 5 times */
	__atomic_store_n(&word, (uint64_t)N + 5, __ATOMIC_RELEASE);
	req->imm_count = 5;
	XT_EQ(xt_target_verify(fd, req), 0);
	XT_EQ(xfer_watch_fired(w), N + 5);
	t0 = xt_now_us();
	while (atomic_load(&cb.calls) < N + 5 && xt_now_us() - t0 < 5000000)
		usleep(500);
	XT_EQ(atomic_load(&cb.calls), N + 5);

	/* removed: bumps post nothing more */
	XT_OK(xfer_watch_remove(w));
	__atomic_store_n(&word, (uint64_t)N + 9, __ATOMIC_RELEASE);
	usleep(50000);
	XT_EQ(atomic_load(&cb.calls), N + 5);
	req->imm_count = 0;
	req->num_segs = 0;
	XT_EQ(xt_target_verify(fd, req), 0);        /* the region is all zero again */

	/* bad watches */
	wa.len = 0;
	wa.flags = 0;
	XT_EQ(xfer_watch_add(e, &wa, &w), -EINVAL);
	wa.len = REGION;
	XT_EQ(xfer_watch_add(e, &wa, &w), -ERANGE);
	free(req);
}

static bool run_config(const char *prov, uint32_t rails)
{
	struct sender_arg sa = { prov, rails, 31337 + rails };
	struct xt_target_arg ta = { prov, rails, REGION };
	struct xt_peer snd, tgt;
	xfer_engine *e = NULL;
	xfer_mr *mr = NULL, *src = NULL;
	xfer_rmr *dst = NULL;
	uint32_t speer, tpeer;
	int fails0 = xt_failures;
	uint8_t *region = xt_alloc(REGION), *sbuf = xt_alloc(SRC_LEN);

	xt_fill(sbuf, SRC_LEN, sa.seed, 0);
	if (xt_spawn(&snd, sender_main, &sa) || xt_spawn(&tgt, xt_target_main, &ta))
		return false;
	XT_OK(xt_engine(prov, rails, 3000, &e));
	XT_OK(xt_connect(e, snd.fd, &speer));
	XT_OK(xfer_mr_reg(e, region, REGION, NULL, XFER_MR_REMOTE_WRITE, &mr));
	XT_OK(xt_send_mr(snd.fd, mr));
	XT_OK(xt_connect(e, tgt.fd, &tpeer));
	XT_OK(xfer_mr_reg(e, sbuf, SRC_LEN, NULL, 0, &src));
	XT_OK(xt_recv_rmr(e, tpeer, tgt.fd, &dst));
	if (xt_failures == fails0) {
		receiver_cases(e, snd.fd, region, sa.seed);
		watch_cases(e, src, dst, tgt.fd, sa.seed);
	}
	send_cmd(snd.fd, C_QUIT, 0, 0, 0, 0, 0);
	xt_target_quit(tgt.fd);
	XT_EQ(xt_reap(&snd), 0);
	XT_EQ(xt_reap(&tgt), 0);
	xfer_rmr_free(dst);
	xfer_mr_dereg(src);
	xfer_mr_dereg(mr);
	xfer_engine_destroy(e);
	free(region);
	free(sbuf);
	return xt_failures == fails0;
}

int main(void)
{
	return xt_run_configs("notify", run_config);
}
