/* SPDX-License-Identifier: MIT */
/*
 * What the local backend (lib/backend/local.c) refuses, beyond the engine
 * suite it also runs (ops, scatter, notify, threads, failures):
 *  - the address of a process that has exited: -ECONNREFUSED at add_peer,
 *    and the engine keeps working with a live peer afterwards;
 *  - GPU and dma-buf memory: -EOPNOTSUPP (not in the peer's address space);
 *  - an address from another provider: -EPROTO;
 *  - more immediates than the target's ring holds while it is stopped: the
 *    writes wait (no loss), and all arrive, each counted once, once it runs.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define IMM 0x10ca1u
#define NIMM 6000   /* above the 4096 slots of a target's ring */

/* A child that creates an engine, sends its address and exits. */
static int short_lived(int fd, void *arg)
{
	xfer_engine *e = NULL;
	uint8_t a[XFER_ADDR_MAX];
	size_t len = sizeof(a);

	(void)arg;
	if (xt_engine("local", 1, 2000, &e) || xfer_engine_address(e, a, &len) || xt_send(fd, a, len))
		return 1;
	xfer_engine_destroy(e);
	return 0;
}

/* A child that waits for NIMM immediates, then reports how many came. */
static int counter(int fd, void *arg)
{
	xfer_engine *e = NULL;
	uint32_t peer;
	uint64_t v;

	(void)arg;
	if (xt_engine("local", 1, 30000, &e) || xt_connect(e, fd, &peer))
		return 1;
	int ret = xfer_imm_wait(e, IMM, NIMM, 60000);   /* consumes them */

	usleep(100000);   /* a duplicate would show up as one more arrival */
	xt_send_u64(fd, ret ? 0 : NIMM + xfer_imm_count(e, IMM));
	xt_recv_u64(fd, &v);
	xfer_engine_destroy(e);
	return ret ? 2 : 0;
}

/* Only where local is among the providers tested (not in the verbs guest's
 * run). Each test forks its children before it opens its own engine: a
 * child forked while an engine's worker thread runs may inherit a lock that
 * thread held (seen under ASan) and hang. */
FIXTURE(local) {
	struct xt_peer child;
	xfer_engine *e, *s;
	xfer_op **ops;
	void *buf;
};

FIXTURE_SETUP(local)
{
	const char *provs[8];
	int np = xt_providers(provs, 8), want = 0;

	for (int i = 0; i < np; i++)
		want |= strcmp(provs[i], "local") == 0;
	if (!want)   /* another suite's run (the verbs guest): not ours */
		XT_SETUP_SKIP("provider local not in XFER_TEST_PROVIDERS");
	self->child.pid = -1;
}

FIXTURE_TEARDOWN(local)
{
	if (self->child.pid > 0) {   /* a test that stopped early */
		kill(self->child.pid, SIGKILL);
		xt_reap(&self->child);
	}
	xfer_engine_destroy(self->s);
	xfer_engine_destroy(self->e);
	free(self->ops);
	free(self->buf);
}

/* The address of a process that has exited: -ECONNREFUSED at add_peer. */
TEST_F(local, exited_peer)
{
	uint8_t a[XFER_ADDR_MAX];
	ssize_t n;
	uint32_t peer;

	XT_ASSERT_OK(xt_spawn(&self->child, short_lived, NULL));
	n = xt_recv(self->child.fd, a, sizeof(a));
	EXPECT_TRUE(n > 0) TH_LOG("no address from the child");
	EXPECT_EQ(0, xt_reap(&self->child));
	self->child.pid = -1;
	XT_ASSERT_OK(xt_engine("local", 1, 30000, &self->e));
	ASSERT_TRUE(n > 0);
	EXPECT_EQ(-ECONNREFUSED, xfer_engine_add_peer(self->e, a, (size_t)n, &peer));
}

/* GPU and dma-buf memory: -EOPNOTSUPP (not in the peer's address space). */
TEST_F(local, gpu_and_dmabuf_memory)
{
	struct xfer_mem gpu = { .size = sizeof(gpu), .kind = XFER_MEM_CUDA, .cuda_device = 0 };
	struct xfer_mem dmabuf = { .size = sizeof(dmabuf), .kind = XFER_MEM_DMABUF, .dmabuf_fd = 0 };
	xfer_mr *mr = NULL;

	self->buf = xt_alloc(4096);
	XT_ASSERT_OK(xt_engine("local", 1, 30000, &self->e));
	EXPECT_EQ(-EOPNOTSUPP, xfer_mr_reg(self->e, self->buf, 4096, &gpu, XFER_MR_NO_KMOD, &mr));
	EXPECT_EQ(-EOPNOTSUPP, xfer_mr_reg(self->e, self->buf, 4096, &dmabuf, XFER_MR_NO_KMOD, &mr));
	EXPECT_TRUE(mr == NULL) TH_LOG("mr set on error");
}

/* An address from another provider: -EPROTO. */
TEST_F(local, other_provider_address)
{
	uint8_t a[XFER_ADDR_MAX];
	size_t len = sizeof(a);
	uint32_t peer;

	XT_ASSERT_OK(xt_engine("local", 1, 30000, &self->e));
	if (xt_engine("shm", 1, 2000, &self->s) != 0)
		SKIP(return, "without shm: nothing to compare");
	XT_EXPECT_OK(xfer_engine_address(self->s, a, &len));
	EXPECT_EQ(-EPROTO, xfer_engine_add_peer(self->e, a, len, &peer));
}

/* 6000 immediates to a stopped peer (ring 4096): the writes wait (no loss)
 * and all arrive, each counted once, once it runs. */
TEST_F_TIMEOUT(local, ring_full, 90)   /* its waits are bounded at 60 s */
{
	uint32_t peer;
	uint64_t got = 0;
	int st = 0;

	self->ops = calloc(NIMM, sizeof(*self->ops));
	ASSERT_TRUE(self->ops != NULL);
	XT_ASSERT_OK(xt_spawn(&self->child, counter, NULL));
	XT_ASSERT_OK(xt_engine("local", 1, 30000, &self->e));
	XT_EXPECT_OK(xt_connect(self->e, self->child.fd, &peer));

	kill(self->child.pid, SIGSTOP);   /* nobody drains its ring now ... */
	EXPECT_TRUE(waitpid(self->child.pid, &st, WUNTRACED) == self->child.pid && WIFSTOPPED(st))
		TH_LOG("the child did not stop");   /* ... once it has stopped */
	for (int i = 0; i < NIMM; i++)
		XT_EXPECT_OK(xfer_imm(self->e, peer, IMM, NULL, &self->ops[i]));
	usleep(200000);
	/* the ring held what it could; the rest wait for room, not lost */
	int waiting = 0;

	for (int i = 0; i < NIMM; i++)
		waiting += self->ops[i] && xfer_op_test(self->ops[i]) == -EINPROGRESS;
	EXPECT_TRUE(waiting >= NIMM - 4096) TH_LOG("only %d of %d immediates wait for a stopped peer",
						   waiting, NIMM);
	kill(self->child.pid, SIGCONT);
	for (int i = 0; i < NIMM; i++) {
		if (self->ops[i]) {
			EXPECT_EQ(0, xfer_op_wait(self->ops[i], 60000));
			xfer_op_release(self->ops[i]);
			self->ops[i] = NULL;
		}
	}
	EXPECT_EQ(0, xt_recv_u64(self->child.fd, &got));
	EXPECT_EQ(NIMM, got);
	xt_send_u64(self->child.fd, 1);
	EXPECT_EQ(0, xt_reap(&self->child));
	self->child.pid = -1;
}

TEST_HARNESS_MAIN
