// SPDX-License-Identifier: GPL-2.0
/*
 * The engine with the module present, in the qemu guest: host memory
 * registered through the engine is pinned and accounted by /dev/xfer, a
 * region shared by one process is opened and registered by another, and
 * the engine's counters reach debugfs through the stats page. Fixture
 * engine: /dev/xfer and an engine on the shm provider (a test that destroys
 * it clears self->e); its teardown ends with the leak check (util.h:
 * kt_expect_no_leak). An engine starts in seconds under TCG: 60 s each.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>

#include "xfer.h"
#include "util.h"

static int engine(xfer_engine **e)
{
	struct xfer_engine_attr attr;

	*e = NULL;
	xfer_engine_attr_init(&attr);
	attr.provider = "shm";
	attr.worker_cpu = -1;
	return xfer_engine_create(&attr, e);
}

FIXTURE(engine) {
	xfer_engine *e;
};

FIXTURE_SETUP(engine)
{
	int ret;

	if (access("/dev/xfer", F_OK))
		XT_SETUP_SKIP("/dev/xfer missing");
	ret = engine(&self->e);
	if (ret)
		XT_SETUP_SKIP("no shm engine in this guest: %s", strerror(-ret));
}

FIXTURE_TEARDOWN(engine)
{
	if (self->e)
		xfer_engine_destroy(self->e);
	kt_expect_no_leak(_metadata, false);
}

/* The debugfs stats of this process's context. */
static char *ctx_stats(void)
{
	char *s = slurp("/sys/kernel/debug/xfer/contexts"), *l, line[48], path[96];

	snprintf(line, sizeof(line), "\t%d\t", getpid());
	l = strstr(s, line);
	if (!l)
		return NULL;
	while (l > s && l[-1] != '\n')
		l--;
	snprintf(path, sizeof(path), "/sys/kernel/debug/xfer/ctx-%d/stats", atoi(l));
	return slurp(path);
}

TEST_F_TIMEOUT(engine, pins_host_memory_through_module, 60)
{
	size_t len = 1 << 20;
	uint8_t *buf = anon(len);
	xfer_engine *e = self->e;
	xfer_mr *mr;

	EXPECT_EQ(sysfs("contexts"), 1);
	ASSERT_EQ(xfer_mr_reg(e, buf, len, NULL, XFER_MR_KMOD_PIN | XFER_MR_REMOTE_WRITE, &mr), 0);
	EXPECT_EQ(sysfs("pinned_bytes"), len);
	EXPECT_EQ(sysfs("regions"), 1);
	ASSERT_EQ(xfer_mr_dereg(mr), 0);
	EXPECT_EQ(sysfs("pinned_bytes"), 0);
	ASSERT_EQ(xfer_mr_reg(e, buf, len, NULL, XFER_MR_NO_KMOD, &mr), 0);
	EXPECT_EQ(sysfs("regions"), 0);
	ASSERT_EQ(xfer_mr_dereg(mr), 0);
	xfer_engine_destroy(e);
	self->e = NULL;
}

TEST_F_TIMEOUT(engine, share_opened_and_registered_by_other_process, 60)
{
	size_t len = 64 * PG;
	uint8_t *buf = anon(len);
	xfer_engine *e = self->e;
	uint64_t sid;
	xfer_mr *mr;
	int status;
	pid_t pid;

	fill(buf, len, 3);
	ASSERT_EQ(xfer_mr_reg(e, buf, len, NULL, XFER_MR_REMOTE_WRITE, &mr), 0);
	ASSERT_EQ(xfer_mr_share(mr, XFER_SHARE_OWNER, 0, &sid), 0);
	pid = fork();
	if (pid == 0) {
		xfer_engine *e2;
		xfer_mr *m2;
		int rc = 0;

		if (engine(&e2))
			_exit(4); /* the old harness's SKIP status: fails here too */
		if (xfer_mr_open_shared(e2, sid, XFER_MR_REMOTE_WRITE, &m2))
			_exit(1);
		if (xfer_mr_len(m2) != len || !check(xfer_mr_addr(m2), len, 3))
			rc = 2;
		fill(xfer_mr_addr(m2), len, 4);
		if (xfer_mr_dereg(m2))
			rc = 3;
		xfer_engine_destroy(e2);
		_exit(rc);
	}
	waitpid(pid, &status, 0);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_TRUE(check(buf, len, 4));
	ASSERT_EQ(xfer_mr_dereg(mr), 0);
	xfer_engine_destroy(e);
	self->e = NULL;
}

TEST_F_TIMEOUT(engine, counters_reach_debugfs, 60)
{
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc), len = 16 * PG;
	uint8_t *src = anon(len), *dst = anon(len);
	xfer_mr *ms, *md;
	xfer_rmr *rmr;
	xfer_engine *e = self->e;
	uint32_t peer;
	xfer_op *op;
	char *s;
	int ret;

	s = ctx_stats();
	ASSERT_TRUE(s != NULL);
	EXPECT_TRUE(strstr(s, "version 2\nnum_rails 1\n") != NULL);
	EXPECT_TRUE(strstr(s, "peers_up 0\npeers_down 0\n") != NULL);
	ASSERT_EQ(xfer_engine_address(e, addr, &alen), 0);
	ret = xfer_engine_add_peer(e, addr, alen, &peer);
	if (ret)
		SKIP(return, "the shm engine cannot add itself as a peer: %s", strerror(-ret));
	fill(src, len, 8);
	ASSERT_EQ(xfer_mr_reg(e, src, len, NULL, 0, &ms), 0);
	ASSERT_EQ(xfer_mr_reg(e, dst, len, NULL, XFER_MR_REMOTE_WRITE, &md), 0);
	ASSERT_EQ(xfer_mr_descriptor(md, desc, &dlen), 0);
	ASSERT_EQ(xfer_rmr_import(e, peer, desc, dlen, &rmr), 0);
	ASSERT_EQ(xfer_write(e, ms, 0, rmr, 0, len, 0, 0, NULL, &op), 0);
	ASSERT_EQ(xfer_op_wait(op, 10000), 0);
	xfer_op_release(op);
	EXPECT_TRUE(check(dst, len, 8));
	s = ctx_stats();
	kt_log_block("engine stats in debugfs", s);
	EXPECT_TRUE(strstr(s, "\n0\t65536\t65536\t1\t1\t0\t") != NULL);
	/* version 2's tail: the peer added, nothing left in flight on the rail */
	EXPECT_TRUE(strstr(s, "peers_up 1\npeers_down 0\n") != NULL);
	EXPECT_TRUE(strstr(s, "imm_received\tops_inflight\tname\n") != NULL);
	EXPECT_TRUE(strstr(s, "\n0\t65536\t65536\t1\t1\t0\t0\t0\t") != NULL);
	xfer_rmr_free(rmr);
	xfer_mr_dereg(ms);
	xfer_mr_dereg(md);
	xfer_engine_destroy(e);
	self->e = NULL;
}

#define main kt_harness_main
TEST_HARNESS_MAIN
#undef main
KT_MAIN
