/* SPDX-License-Identifier: MIT */
/*
 * The verbs backend's ops table driven directly (no engine), two rails on
 * one rxe device in one process, so that each backend promise is checked
 * exactly:
 *  - the UD handshake connects whichever side is added first (a request
 *    from a peer not yet added is kept and used later), and posts before
 *    that answer -EAGAIN, never an error;
 *  - every wr.ctx gets exactly one XFER_CQE_LOCAL, in order, with selective
 *    signalling (chains of odd lengths, thousands of WRs, every byte checked);
 *  - a write with a bad rkey fails with -EACCES on exactly that WR, the WRs
 *    before it succeed, those after it are flushed, PEER_DOWN is reported
 *    once, and removing the peer completes whatever was still outstanding;
 *  - immediates arrive (value in host order) beyond the SRQ depth;
 *  - dma-buf registration is refused with -EOPNOTSUPP on rxe.
 * Needs an rxe device ($XFER_TEST_DEVICES, first name): skips (77) without.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "xt.h"

#ifndef XFER_HAVE_VERBS
int main(void)
{
	printf("SKIP: built without libibverbs\n");
	return 77;
}
#else
#include "internal.h"

static const struct xfer_backend_ops *ops = &xfer_verbs_ops;

#define LEN (1u << 20)
#define NCTX 4096

struct side {
	struct xfer_rail *r;
	uint8_t *buf;
	struct xfer_rail_mr mr;
	uint8_t addr[XFER_RAIL_ADDR_MAX];
	size_t alen;
	/* what poll() delivered */
	int local_seen[NCTX];
	int local_status[NCTX];
	int order[NCTX], norder;
	uint32_t imms, imm_last;
	int downs, down_status;
};

static uint8_t ctx_base[NCTX];
#define CTX(i) ((void *)&ctx_base[i])
#define IDX(p) ((int)((uint8_t *)(p) - ctx_base))

static void drain(struct side *s)
{
	struct xfer_cqe c[64];
	int n = ops->poll(s->r, c, 64);

	for (int i = 0; i < n; i++) {
		switch (c[i].kind) {
		case XFER_CQE_LOCAL: {
			int k = IDX(c[i].ctx);

			if (k < 0 || k >= NCTX) {
				XT_CHECK(0, "completion with a foreign ctx %p", c[i].ctx);
				break;
			}
			s->local_seen[k]++;
			s->local_status[k] = c[i].status;
			s->order[s->norder++ % NCTX] = k;
			break;
		}
		case XFER_CQE_IMM:
			s->imms++;
			s->imm_last = c[i].imm;
			break;
		case XFER_CQE_PEER_DOWN:
			s->downs++;
			s->down_status = c[i].status;
			XT_EQ(c[i].peer, 0);
			break;
		}
	}
}

static void reset(struct side *s)
{
	memset(s->local_seen, 0, sizeof(s->local_seen));
	memset(s->local_status, 0, sizeof(s->local_status));
	s->norder = 0;
}

static int open_side(struct side *s, const char *dev)
{
	struct xfer_rail_attr a = { .provider = "verbs", .device = dev, .num_rails = 1,
				    .max_inflight = 1024 };
	int ret = ops->rail_open(&a, &s->r);

	if (ret)
		return ret;
	s->buf = xt_alloc(LEN);
	s->alen = sizeof(s->addr);
	ret = ops->rail_addr(s->r, s->addr, &s->alen);
	if (!ret)
		ret = ops->mr_reg(s->r, s->buf, LEN, XFER_MEM_HOST, -1, 0, 1, &s->mr);
	return ret;
}

/* Post until accepted while polling both sides; -EAGAIN means "not yet". */
static int post_all(struct side *a, struct side *b, const struct xfer_wr *w, int n)
{
	uint64_t t0 = xt_now_us();
	int done = 0;

	while (done < n) {
		int got = ops->post_write(a->r, 0, w + done, n - done);

		if (got < 0 && got != -EAGAIN)
			return done ? done : got;
		if (got > 0)
			done += got;
		drain(a);
		drain(b);
		if (xt_now_us() - t0 > 20000000)
			return -ETIMEDOUT;
	}
	return done;
}

static bool wait_for(struct side *a, struct side *b, bool (*cond)(struct side *, void *),
		     void *arg, uint32_t ms)
{
	uint64_t t0 = xt_now_us();

	while (!cond(a, arg)) {
		drain(a);
		drain(b);
		if (xt_now_us() - t0 > (uint64_t)ms * 1000)
			return false;
	}
	return true;
}

static bool all_seen(struct side *s, void *arg)
{
	int n = *(int *)arg;

	for (int i = 0; i < n; i++)
		if (!s->local_seen[i])
			return false;
	return true;
}

static struct xfer_wr wr_of(struct side *src, struct side *dst, uint64_t soff, uint64_t doff,
			    uint64_t len, int ctx)
{
	return (struct xfer_wr){
		.laddr = src->buf + soff, .ldesc = src->mr.desc, .len = len,
		.raddr = dst->mr.raddr + doff, .rkey = dst->mr.rkey, .ctx = CTX(ctx),
	};
}

static struct side A, B;

/* B is added 200 ms after A: A's request waits in B's stash. */
static void test_handshake(void)
{
	struct xfer_wr w;
	uint64_t t0;
	int n = 1;

	XT_OK(ops->rail_add_peer(A.r, 0, B.addr, B.alen));
	XT_EQ(ops->post_write(A.r, 0, (w = wr_of(&A, &B, 0, 0, 8, 0), &w), 1), -EAGAIN);
	t0 = xt_now_us();
	while (xt_now_us() - t0 < 200000) {
		drain(&A);
		drain(&B);
	}
	XT_OK(ops->rail_add_peer(B.r, 0, A.addr, A.alen));
	XT_EQ(ops->rail_add_peer(B.r, 0, A.addr, A.alen), -EEXIST);
	uint8_t bad[XFER_RAIL_ADDR_MAX];
	memcpy(bad, A.addr, A.alen);
	bad[20] ^= 1;
	XT_EQ(ops->rail_add_peer(B.r, 1, bad, A.alen), -EINVAL);
	xt_fill(A.buf, LEN, 7, 0);
	XT_EQ(post_all(&A, &B, &w, 1), 1);
	XT_CHECK(wait_for(&A, &B, all_seen, &n, 5000), "first write did not complete");
	XT_EQ(A.local_status[0], 0);
	XT_EQ(xt_verify(B.buf, 8, 7, 0), -1);
	reset(&A);
}

/* Thousands of WRs in chains of odd lengths: each ctx exactly once, in
 * posting order, every byte where it belongs. */
static void test_exactly_once(void)
{
	static struct xfer_wr w[NCTX];
	int n = 3000, posted = 0;

	memset(B.buf, 0, LEN);
	for (int i = 0; i < n; i++)   /* 300-byte pieces, reversed placement */
		w[i] = wr_of(&A, &B, (uint64_t)i * 300, (uint64_t)(n - 1 - i) * 300, 300, i);
	for (int chain = 1; posted < n; chain = chain % 13 + 2) {
		int k = n - posted < chain ? n - posted : chain;
		int got = post_all(&A, &B, w + posted, k);

		XT_EQ(got, k);
		if (got <= 0)
			break;
		posted += got;
	}
	XT_CHECK(wait_for(&A, &B, all_seen, &n, 20000), "not every WR completed");
	int dup = 0, bad = 0, out_of_order = 0;
	for (int i = 0; i < n; i++) {
		dup += A.local_seen[i] != 1;
		bad += A.local_status[i] != 0;
		out_of_order += A.order[i] != i;
		if (xt_verify(B.buf + (uint64_t)(n - 1 - i) * 300, 300, 7, (uint64_t)i * 300) != -1)
			bad++;
	}
	XT_EQ(dup, 0);
	XT_EQ(bad, 0);
	XT_EQ(out_of_order, 0);
	reset(&A);
}

/* A chain posted while another's signalled WR is outstanding leaves its
 * last WR unsignalled; with nothing posted after it, polling alone must
 * complete it (the backend covers it with a signalled zero-length write),
 * each WR exactly once, the cover reporting nothing of its own. */
static void test_covered_tail(void)
{
	static struct xfer_wr w[4];
	int n = 4, dup = 0, bad = 0;

	memset(B.buf, 0, LEN);
	for (int i = 0; i < n; i++)
		w[i] = wr_of(&A, &B, (uint64_t)i * 300, (uint64_t)i * 300, 300, i);
	XT_EQ(ops->post_write(A.r, 0, w, 1), 1);       /* signalled: none pending */
	XT_EQ(ops->post_write(A.r, 0, w + 1, 3), 3);   /* behind it: tail unsignalled */
	XT_CHECK(wait_for(&A, &B, all_seen, &n, 5000), "WRs behind a signalled one never completed");
	for (int i = 0; i < n; i++) {
		dup += A.local_seen[i] != 1;
		bad += A.local_status[i] != 0;
		if (xt_verify(B.buf + (uint64_t)i * 300, 300, 7, (uint64_t)i * 300) != -1)
			bad++;
	}
	XT_EQ(dup, 0);
	XT_EQ(bad, 0);
	reset(&A);
}

static bool imms_are(struct side *s, void *arg)
{
	return s->imms >= *(uint32_t *)arg;
}

/* Immediates alone and with data, more than the SRQ holds. */
static void test_immediates(void)
{
	static struct xfer_wr w[NCTX];
	uint32_t want = 2500;
	int n = (int)want;

	B.imms = 0;
	for (int i = 0; i < n; i++) {
		w[i] = wr_of(&A, &B, 0, 4096, i % 2 ? 64 : 0, i);
		if (!w[i].len)
			w[i].ldesc = NULL;
		w[i].has_imm = 1;
		w[i].imm = 0xdead0000u + (uint32_t)i;
	}
	XT_EQ(post_all(&A, &B, w, n), n);
	XT_CHECK(wait_for(&B, &A, imms_are, &want, 20000), "%u of %u immediates", B.imms, want);
	XT_EQ(B.imm_last, 0xdead0000u + want - 1);
	XT_CHECK(wait_for(&A, &B, all_seen, &n, 5000), "sender completions missing");
	reset(&A);
}

static bool down_seen(struct side *s, void *arg)
{
	(void)arg;
	return s->downs > 0;
}

/* A bad rkey in the middle of a chain. */
static void test_error_mapping(void)
{
	struct xfer_wr w[5];
	int n = 3;

	for (int i = 0; i < 5; i++)
		w[i] = wr_of(&A, &B, 0, (uint64_t)i * 64, 64, i);
	w[1].rkey ^= 0x5a5a00;
	XT_EQ(post_all(&A, &B, w, 3), 3);
	XT_CHECK(wait_for(&A, &B, all_seen, &n, 10000), "error chain did not complete");
	XT_EQ(A.local_status[0], 0);
	XT_EQ(A.local_status[1], -EACCES);
	XT_EQ(A.local_status[2], -ECONNRESET);
	XT_CHECK(wait_for(&A, &B, down_seen, NULL, 2000), "no PEER_DOWN");
	XT_EQ(A.downs, 1);
	XT_EQ(A.down_status, -ECONNRESET);
	for (int i = 0; i < 3; i++)
		XT_EQ(A.local_seen[i], 1);
	/* the QP is gone: posting answers the peer's error, never EAGAIN */
	XT_EQ(ops->post_write(A.r, 0, &w[3], 1), -ECONNRESET);
	ops->rail_remove_peer(A.r, 0);
	XT_EQ(ops->post_write(A.r, 0, &w[3], 1), -ENOTCONN);
	for (int i = 0; i < 50; i++)
		drain(&A);
	XT_EQ(A.downs, 1);
	for (int i = 0; i < 3; i++)
		XT_EQ(A.local_seen[i], 1);
	reset(&A);
}

/* Removing a healthy peer with WRs outstanding completes each of them once. */
static void test_remove_outstanding(void)
{
	struct side C = { 0 }, D = { 0 };
	static struct xfer_wr w[200];
	int n = 200;

	if (open_side(&C, getenv("XT_DEV0")) || open_side(&D, getenv("XT_DEV0"))) {
		XT_CHECK(0, "second pair of rails");
		return;
	}
	XT_OK(ops->rail_add_peer(C.r, 0, D.addr, D.alen));
	XT_OK(ops->rail_add_peer(D.r, 0, C.addr, C.alen));
	for (int i = 0; i < n; i++)
		w[i] = wr_of(&C, &D, (uint64_t)i * 4096, (uint64_t)i * 4096, 4096, i);
	XT_EQ(post_all(&C, &D, w, n), n);
	ops->rail_remove_peer(C.r, 0);
	XT_CHECK(wait_for(&C, &D, all_seen, &n, 5000), "outstanding WRs lost on remove");
	int dup = 0;
	for (int i = 0; i < n; i++)
		dup += C.local_seen[i] != 1;
	XT_EQ(dup, 0);
	for (int i = 0; i < 100; i++)
		drain(&C);   /* late completions of the destroyed QP are dropped */
	dup = 0;
	for (int i = 0; i < n; i++)
		dup += C.local_seen[i] != 1;
	XT_EQ(dup, 0);
	ops->mr_dereg(C.r, &C.mr);
	ops->mr_dereg(D.r, &D.mr);
	ops->rail_close(C.r);
	ops->rail_close(D.r);
	free(C.buf);
	free(D.buf);
}

static void test_dmabuf(void)
{
	struct xfer_rail_mr mr;
	int fd = memfd_create("xfer-dmabuf", 0);

	XT_CHECK(fd >= 0, "memfd");
	if (fd < 0)
		return;
	XT_EQ(ftruncate(fd, 4096), 0);
	XT_EQ(ops->mr_reg(A.r, NULL, 4096, XFER_MEM_DMABUF, fd, 0, 1, &mr), -EOPNOTSUPP);
	close(fd);
}

int main(void)
{
	static char dev0[64];
	const char *devs = getenv("XFER_TEST_DEVICES");
	struct { const char *name; void (*fn)(void); } tests[] = {
		{ "handshake: late add, -EAGAIN until connected, bad address refused", test_handshake },
		{ "3000 WRs in odd chains: one completion each, in order, bytes placed", test_exactly_once },
		{ "a chain behind a pending signal, then nothing: covered, each WR once", test_covered_tail },
		{ "2500 immediates (beyond the SRQ depth), alone and with data", test_immediates },
		{ "bad rkey: -EACCES on that WR only, before ok, after flushed, one PEER_DOWN", test_error_mapping },
		{ "remove with 200 WRs outstanding: each completed once", test_remove_outstanding },
		{ "dma-buf registration refused with -EOPNOTSUPP on rxe", test_dmabuf },
	};

	xt_plan();
	snprintf(dev0, sizeof(dev0), "%s", devs && *devs ? devs : "rxe0");
	dev0[strcspn(dev0, ",")] = 0;
	setenv("XT_DEV0", dev0, 1);
	if (open_side(&A, dev0) || open_side(&B, dev0)) {
		xt_result("verbs backend on an rxe device", true, "no usable RDMA device");
		return xt_done();
	}
	for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
		int before = xt_failures;

		tests[i].fn();
		xt_result(tests[i].name, xt_failures == before, NULL);
	}
	ops->mr_dereg(A.r, &A.mr);
	ops->mr_dereg(B.r, &B.mr);
	ops->rail_close(A.r);
	ops->rail_close(B.r);
	return xt_done();
}
#endif
