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
 * Needs an rxe device ($XFER_TEST_DEVICES, first name): skips without.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "harness.h"

#ifndef XFER_HAVE_VERBS
TEST(verbs_backend)
{
	SKIP(return, "built without libibverbs");
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
	/* what poll() delivered that it must not: checked in the teardown */
	int foreign_ctx, down_wrong_peer;
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

			if (k < 0 || k >= NCTX) {   /* a completion with a foreign ctx */
				s->foreign_ctx++;
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
			s->down_wrong_peer += c[i].peer != 0;
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

/* Two rails on the first device: A (initiator) and B, a REMOTE_WRITE
 * region each, A's holding pattern 7; not yet peers. */
FIXTURE(backend) {
	struct side A, B;
	char dev0[64];
};

FIXTURE_SETUP(backend)
{
	const char *devs = getenv("XFER_TEST_DEVICES");

	snprintf(self->dev0, sizeof(self->dev0), "%s", devs && *devs ? devs : "rxe0");
	self->dev0[strcspn(self->dev0, ",")] = 0;
	if (open_side(&self->A, self->dev0) || open_side(&self->B, self->dev0))
		XT_SETUP_SKIP("no usable RDMA device");
	xt_fill(self->A.buf, LEN, 7, 0);
}

static void close_side(struct side *s)
{
	if (s->r) {
		ops->mr_dereg(s->r, &s->mr);
		ops->rail_close(s->r);
	}
	free(s->buf);
}

FIXTURE_TEARDOWN(backend)
{
	EXPECT_EQ(0, self->A.foreign_ctx + self->B.foreign_ctx) TH_LOG("completion with a foreign ctx");
	EXPECT_EQ(0, self->A.down_wrong_peer + self->B.down_wrong_peer) TH_LOG("PEER_DOWN for another peer");
	close_side(&self->A);
	close_side(&self->B);
}

/* The state after the handshake test: peers both ways, a first 8-byte
 * write completed (the connection is up). */
static void connect_ab(struct __test_metadata *_metadata, struct side *A, struct side *B)
{
	struct xfer_wr w = wr_of(A, B, 0, 0, 8, 0);
	int n = 1;

	XT_ASSERT_OK(ops->rail_add_peer(A->r, 0, B->addr, B->alen));
	XT_ASSERT_OK(ops->rail_add_peer(B->r, 0, A->addr, A->alen));
	ASSERT_EQ(1, post_all(A, B, &w, 1));
	ASSERT_TRUE(wait_for(A, B, all_seen, &n, 5000)) TH_LOG("first write did not complete");
	ASSERT_EQ(0, A->local_status[0]);
	reset(A);
}

/* B is added 200 ms after A: A's request waits in B's stash. */
TEST_F(backend, handshake)
{
	struct xfer_wr w;
	uint64_t t0;
	int n = 1;

	XT_EXPECT_OK(ops->rail_add_peer(self->A.r, 0, self->B.addr, self->B.alen));
	EXPECT_EQ(-EAGAIN, ops->post_write(self->A.r, 0, (w = wr_of(&self->A, &self->B, 0, 0, 8, 0), &w), 1));
	t0 = xt_now_us();
	while (xt_now_us() - t0 < 200000) {
		drain(&self->A);
		drain(&self->B);
	}
	XT_EXPECT_OK(ops->rail_add_peer(self->B.r, 0, self->A.addr, self->A.alen));
	EXPECT_EQ(-EEXIST, ops->rail_add_peer(self->B.r, 0, self->A.addr, self->A.alen));
	uint8_t bad[XFER_RAIL_ADDR_MAX];
	memcpy(bad, self->A.addr, self->A.alen);
	bad[20] ^= 1;
	EXPECT_EQ(-EINVAL, ops->rail_add_peer(self->B.r, 1, bad, self->A.alen));
	xt_fill(self->A.buf, LEN, 7, 0);
	EXPECT_EQ(1, post_all(&self->A, &self->B, &w, 1));
	EXPECT_TRUE(wait_for(&self->A, &self->B, all_seen, &n, 5000)) TH_LOG("first write did not complete");
	EXPECT_EQ(0, self->A.local_status[0]);
	EXPECT_EQ(-1, xt_verify(self->B.buf, 8, 7, 0));
	reset(&self->A);
}

/* Thousands of WRs in chains of odd lengths: each ctx exactly once, in
 * posting order, every byte where it belongs. */
TEST_F_TIMEOUT(backend, exactly_once, 60)   /* waits bounded at 20 s */
{
	connect_ab(_metadata, &self->A, &self->B);
	static struct xfer_wr w[NCTX];
	int n = 3000, posted = 0;

	memset(self->B.buf, 0, LEN);
	for (int i = 0; i < n; i++)   /* 300-byte pieces, reversed placement */
		w[i] = wr_of(&self->A, &self->B, (uint64_t)i * 300, (uint64_t)(n - 1 - i) * 300, 300, i);
	for (int chain = 1; posted < n; chain = chain % 13 + 2) {
		int k = n - posted < chain ? n - posted : chain;
		int got = post_all(&self->A, &self->B, w + posted, k);

		EXPECT_EQ(k, got);
		if (got <= 0)
			break;
		posted += got;
	}
	EXPECT_TRUE(wait_for(&self->A, &self->B, all_seen, &n, 20000)) TH_LOG("not every WR completed");
	int dup = 0, bad = 0, out_of_order = 0;
	for (int i = 0; i < n; i++) {
		dup += self->A.local_seen[i] != 1;
		bad += self->A.local_status[i] != 0;
		out_of_order += self->A.order[i] != i;
		if (xt_verify(self->B.buf + (uint64_t)(n - 1 - i) * 300, 300, 7, (uint64_t)i * 300) != -1)
			bad++;
	}
	EXPECT_EQ(0, dup);
	EXPECT_EQ(0, bad);
	EXPECT_EQ(0, out_of_order);
	reset(&self->A);
}

/* A chain posted while another's signalled WR is outstanding leaves its
 * last WR unsignalled; with nothing posted after it, polling alone must
 * complete it (the backend covers it with a signalled zero-length write),
 * each WR exactly once, the cover reporting nothing of its own. */
TEST_F(backend, covered_tail)
{
	connect_ab(_metadata, &self->A, &self->B);
	static struct xfer_wr w[4];
	int n = 4, dup = 0, bad = 0;

	memset(self->B.buf, 0, LEN);
	for (int i = 0; i < n; i++)
		w[i] = wr_of(&self->A, &self->B, (uint64_t)i * 300, (uint64_t)i * 300, 300, i);
	EXPECT_EQ(1, ops->post_write(self->A.r, 0, w, 1));       /* signalled: none pending */
	EXPECT_EQ(3, ops->post_write(self->A.r, 0, w + 1, 3));   /* behind it: tail unsignalled */
	EXPECT_TRUE(wait_for(&self->A, &self->B, all_seen, &n, 5000)) TH_LOG("WRs behind a signalled one never completed");
	for (int i = 0; i < n; i++) {
		dup += self->A.local_seen[i] != 1;
		bad += self->A.local_status[i] != 0;
		if (xt_verify(self->B.buf + (uint64_t)i * 300, 300, 7, (uint64_t)i * 300) != -1)
			bad++;
	}
	EXPECT_EQ(0, dup);
	EXPECT_EQ(0, bad);
	reset(&self->A);
}

static bool imms_are(struct side *s, void *arg)
{
	return s->imms >= *(uint32_t *)arg;
}

/* Immediates alone and with data, more than the SRQ holds. */
TEST_F_TIMEOUT(backend, immediates, 60)   /* waits bounded at 20 s */
{
	connect_ab(_metadata, &self->A, &self->B);
	static struct xfer_wr w[NCTX];
	uint32_t want = 2500;
	int n = (int)want;

	self->B.imms = 0;
	for (int i = 0; i < n; i++) {
		w[i] = wr_of(&self->A, &self->B, 0, 4096, i % 2 ? 64 : 0, i);
		if (!w[i].len)
			w[i].ldesc = NULL;
		w[i].has_imm = 1;
		w[i].imm = 0xdead0000u + (uint32_t)i;
	}
	EXPECT_EQ(n, post_all(&self->A, &self->B, w, n));
	EXPECT_TRUE(wait_for(&self->B, &self->A, imms_are, &want, 20000)) TH_LOG("%u of %u immediates", self->B.imms, want);
	EXPECT_EQ(0xdead0000u + want - 1, self->B.imm_last);
	EXPECT_TRUE(wait_for(&self->A, &self->B, all_seen, &n, 5000)) TH_LOG("sender completions missing");
	reset(&self->A);
}

static bool down_seen(struct side *s, void *arg)
{
	(void)arg;
	return s->downs > 0;
}

/* A bad rkey in the middle of a chain. */
TEST_F(backend, error_mapping)
{
	connect_ab(_metadata, &self->A, &self->B);
	struct xfer_wr w[5];
	int n = 3;

	for (int i = 0; i < 5; i++)
		w[i] = wr_of(&self->A, &self->B, 0, (uint64_t)i * 64, 64, i);
	w[1].rkey ^= 0x5a5a00;
	EXPECT_EQ(3, post_all(&self->A, &self->B, w, 3));
	EXPECT_TRUE(wait_for(&self->A, &self->B, all_seen, &n, 10000)) TH_LOG("error chain did not complete");
	EXPECT_EQ(0, self->A.local_status[0]);
	EXPECT_EQ(-EACCES, self->A.local_status[1]);
	EXPECT_EQ(-ECONNRESET, self->A.local_status[2]);
	EXPECT_TRUE(wait_for(&self->A, &self->B, down_seen, NULL, 2000)) TH_LOG("no PEER_DOWN");
	EXPECT_EQ(1, self->A.downs);
	EXPECT_EQ(-ECONNRESET, self->A.down_status);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(1, self->A.local_seen[i]);
	/* the QP is gone: posting answers the peer's error, never EAGAIN */
	EXPECT_EQ(-ECONNRESET, ops->post_write(self->A.r, 0, &w[3], 1));
	ops->rail_remove_peer(self->A.r, 0);
	EXPECT_EQ(-ENOTCONN, ops->post_write(self->A.r, 0, &w[3], 1));
	for (int i = 0; i < 50; i++)
		drain(&self->A);
	EXPECT_EQ(1, self->A.downs);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(1, self->A.local_seen[i]);
	reset(&self->A);
}

/* Removing a healthy peer with WRs outstanding completes each of them once. */
TEST_F(backend, remove_outstanding)
{
	struct side C = { 0 }, D = { 0 };
	static struct xfer_wr w[200];
	int n = 200;

	if (open_side(&C, self->dev0) || open_side(&D, self->dev0)) {
		close_side(&C);
		close_side(&D);
		ASSERT_TRUE(0) TH_LOG("second pair of rails");
	}
	XT_EXPECT_OK(ops->rail_add_peer(C.r, 0, D.addr, D.alen));
	XT_EXPECT_OK(ops->rail_add_peer(D.r, 0, C.addr, C.alen));
	for (int i = 0; i < n; i++)
		w[i] = wr_of(&C, &D, (uint64_t)i * 4096, (uint64_t)i * 4096, 4096, i);
	EXPECT_EQ(n, post_all(&C, &D, w, n));
	ops->rail_remove_peer(C.r, 0);
	EXPECT_TRUE(wait_for(&C, &D, all_seen, &n, 5000)) TH_LOG("outstanding WRs lost on remove");
	int dup = 0;
	for (int i = 0; i < n; i++)
		dup += C.local_seen[i] != 1;
	EXPECT_EQ(0, dup);
	for (int i = 0; i < 100; i++)
		drain(&C);   /* late completions of the destroyed QP are dropped */
	dup = 0;
	for (int i = 0; i < n; i++)
		dup += C.local_seen[i] != 1;
	EXPECT_EQ(0, dup);
	EXPECT_EQ(0, C.foreign_ctx + D.foreign_ctx) TH_LOG("completion with a foreign ctx");
	EXPECT_EQ(0, C.down_wrong_peer + D.down_wrong_peer) TH_LOG("PEER_DOWN for another peer");
	close_side(&C);
	close_side(&D);
}

TEST_F(backend, dmabuf)
{
	struct xfer_rail_mr mr;
	int fd = memfd_create("xfer-dmabuf", 0);

	EXPECT_TRUE(fd >= 0) TH_LOG("memfd");
	if (fd < 0)
		return;
	EXPECT_EQ(0, ftruncate(fd, 4096));
	EXPECT_EQ(-EOPNOTSUPP, ops->mr_reg(self->A.r, NULL, 4096, XFER_MEM_DMABUF, fd, 0, 1, &mr));
	close(fd);
}

TEST_HARNESS_MAIN
#endif
