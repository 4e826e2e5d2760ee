/* SPDX-License-Identifier: MIT */
/*
 * The stats page without the module (lib/core/engine.c): a one-page memfd
 * named "xfer-stats" that another process finds through /proc/PID/fd, read
 * here the way xferctl reads it (the link's name, then pread), holding
 * version 2 of struct xfer_ctx_stats: the writer's size, pid and engine
 * id, the provider and rail names, peers up (after add_peer) and down
 * (after the peer process died), counters that match the writes done
 * (every byte checked at the target), nothing in flight once they
 * completed; and the fd closed with the engine.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/xfer.h>

#include "harness.h"
#include "internal.h"

#define LEN (64u << 10)

/* The page as a reader in another process sees it: the fd must be the
 * memfd xferctl looks for. */
static int read_page(int fd, struct xfer_ctx_stats *st)
{
	char path[64], link[128];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -1;
	link[n] = 0;
	if (strcmp(link, "/memfd:xfer-stats (deleted)"))
		return -2;
	memset(st, 0, sizeof(*st));
	return pread(fd, st, sizeof(*st), 0) == (ssize_t)sizeof(*st) ? 0 : -3;
}

static uint64_t sum(const struct xfer_ctx_stats *st, size_t off)
{
	uint64_t s = 0;

	for (uint32_t r = 0; r < st->num_rails; r++)
		s += *(const uint64_t *)((const char *)&st->rail[r] + off);
	return s;
}
#define SUM(st, field) sum(st, offsetof(struct xfer_ctx_stats_rail, field))

FIXTURE(page) {
	xfer_engine *a, *b;
};

FIXTURE_SETUP(page)
{
	XT_ASSERT_OK(xt_engine("local", 2, 2000, &self->a));
	self->b = NULL;
}

FIXTURE_TEARDOWN(page)
{
	xfer_engine_destroy(self->b);
	xfer_engine_destroy(self->a);
}

TEST_F_TIMEOUT(page, memfd_page_holds_version_2_and_counts_writes, 60)
{
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	void *sbuf = xt_alloc(LEN), *dbuf = xt_alloc(LEN);
	struct xfer_ctx_stats st, sb;
	xfer_mr *src, *dst;
	xfer_rmr *rmr;
	xfer_op *op;
	uint32_t pb, pa;
	int fd;

	if (self->a->kmod)
		SKIP(return, "the module is loaded here: the page is its context's, not a memfd");
	ASSERT_TRUE(sbuf && dbuf);
	XT_ASSERT_OK(xt_engine("local", 2, 2000, &self->b));
	ASSERT_GE(self->a->stats_fd, 0);
	ASSERT_EQ(0, read_page(self->a->stats_fd, &st));
	EXPECT_EQ(2u, st.version);
	EXPECT_EQ((uint32_t)XFER_CTX_STATS_SIZE_V2, st.size);
	EXPECT_EQ((uint32_t)getpid(), st.pid);
	EXPECT_EQ(self->a->id, st.engine_id);
	EXPECT_EQ(2u, st.num_rails);
	EXPECT_STREQ(self->a->provider, st.provider);
	EXPECT_STREQ("local", st.provider);
	EXPECT_STRNE("", st.rail_name[0]);
	EXPECT_EQ(0u, st.peers_up);

	XT_ASSERT_OK(xfer_engine_address(self->b, addr, &alen));
	XT_ASSERT_OK(xfer_engine_add_peer(self->a, addr, alen, &pb));
	alen = sizeof(addr);
	XT_ASSERT_OK(xfer_engine_address(self->a, addr, &alen));
	XT_ASSERT_OK(xfer_engine_add_peer(self->b, addr, alen, &pa));
	ASSERT_EQ(0, read_page(self->a->stats_fd, &st));
	EXPECT_EQ(1u, st.peers_up);
	EXPECT_EQ(0u, st.peers_down);

	xt_fill(sbuf, LEN, 11, 0);
	XT_ASSERT_OK(xfer_mr_reg(self->a, sbuf, LEN, NULL, 0, &src));
	XT_ASSERT_OK(xfer_mr_reg(self->b, dbuf, LEN, NULL, XFER_MR_REMOTE_WRITE, &dst));
	XT_ASSERT_OK(xfer_mr_descriptor(dst, desc, &dlen));
	XT_ASSERT_OK(xfer_rmr_import(self->a, pb, desc, dlen, &rmr));
	for (int i = 0; i < 3; i++) {
		XT_ASSERT_OK(xfer_write(self->a, src, 0, rmr, 0, LEN, XFER_OP_IMM, 9, NULL, &op));
		XT_ASSERT_OK(xfer_op_wait(op, 5000));
		xfer_op_release(op);
		XT_ASSERT_OK(xfer_imm_wait(self->b, 9, 1, 5000));
	}
	EXPECT_EQ(-1, xt_verify(dbuf, LEN, 11, 0));
	ASSERT_EQ(0, read_page(self->a->stats_fd, &st));
	EXPECT_EQ(3u, SUM(&st, ops_completed));
	EXPECT_EQ(3ull * LEN, SUM(&st, bytes_completed));
	EXPECT_EQ(0u, SUM(&st, ops_failed));
	EXPECT_EQ(0u, st.ops_inflight);
	EXPECT_EQ(0u, st.rail_ops_inflight[0] + st.rail_ops_inflight[1]);
	ASSERT_EQ(0, read_page(self->b->stats_fd, &sb));
	EXPECT_EQ(3u, SUM(&sb, imm_received));
	EXPECT_NE(st.engine_id, sb.engine_id);

	xfer_rmr_free(rmr);
	xfer_mr_dereg(src);
	xfer_mr_dereg(dst);
	fd = self->b->stats_fd;
	xfer_engine_destroy(self->b);
	self->b = NULL;
	/* The fd went with the engine (a number reused since is not the page). */
	EXPECT_NE(0, read_page(fd, &sb));
	free(sbuf);
	free(dbuf);
}

/* The peer: an engine in a child that connects, then waits to be killed. */
static int peer_main(int fd, void *arg)
{
	xfer_engine *e;
	uint32_t peer;
	char c;

	(void)arg;
	if (xt_engine("local", 2, 2000, &e) || xt_connect(e, fd, &peer))
		return 1;
	xt_send_u64(fd, 1);
	(void)!read(fd, &c, 1);   /* until killed */
	return 0;
}

TEST_F_TIMEOUT(page, peer_down_moves_from_up_to_down, 60)
{
	struct xt_peer p;
	struct xfer_ctx_stats st;
	uint32_t peer;
	uint64_t one, t0;
	xfer_op *op;

	if (self->a->kmod)
		SKIP(return, "the module is loaded here: the page is its context's, not a memfd");
	XT_ASSERT_OK(xt_spawn(&p, peer_main, NULL));
	XT_ASSERT_OK(xt_connect(self->a, p.fd, &peer));
	XT_ASSERT_OK(xt_recv_u64(p.fd, &one));
	ASSERT_EQ(0, read_page(self->a->stats_fd, &st));
	EXPECT_EQ(1u, st.peers_up);
	EXPECT_EQ(0u, st.peers_down);
	kill(p.pid, SIGKILL);
	xt_reap(&p);
	/* An immediate to the dead process fails, and the peer goes down
	 * (the engine's pidfd of it, or the failed post; within the timeout). */
	t0 = xt_now_us();
	while (xfer_peer_status(self->a, peer) == 0 && xt_now_us() - t0 < 20000000) {
		if (xfer_imm(self->a, peer, 3, NULL, &op) == 0) {
			xfer_op_wait(op, 5000);
			xfer_op_release(op);
		}
		usleep(10000);
	}
	ASSERT_NE(0, xfer_peer_status(self->a, peer));
	ASSERT_EQ(0, read_page(self->a->stats_fd, &st));
	EXPECT_EQ(0u, st.peers_up);
	EXPECT_EQ(1u, st.peers_down);
	EXPECT_EQ(0u, st.ops_inflight);
	close(p.fd);
}

TEST_HARNESS_MAIN
