/* SPDX-License-Identifier: MIT */
/*
 * What the local backend (lib/backend/local.c) refuses, beyond the engine
 * suite it also runs (ops, scatter, notify, threads, failures):
 *  - the address of a process that has exited: -ECONNREFUSED at add_peer,
 *    and the engine keeps working with a live peer afterwards;
 *  - GPU and dma-buf memory: -EOPNOTSUPP (not in the peer's address space);
 *  - an address from another provider: -EPROTO;
 *  - more immediates than the target's ring holds while it is stopped: the
 *    writes wait (no loss), and all arrive, each counted once, once it runs;
 *  - forged addresses naming a file descriptor of the target that is not its
 *    ring (an empty memfd, a short one, one of the ring's size unsealed or
 *    sealed but zero, a pipe, no fd at all) or carrying a wrong nonce:
 *    -ECONNREFUSED at add_peer, no signal, and the real address still works;
 *  - registrations a NIC would refuse: an unmapped range or one running past
 *    the end of a mapping (-EFAULT), a read-only or PROT_NONE range for
 *    remote write (-EACCES); a read-only source and a range over two
 *    adjacent mappings are fine.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

/* The engine address format (lib/core/desc.c), as far as forging needs it:
 * a 56-byte header with a CRC32C at 12..15 (computed with that field zero),
 * then per rail a 24-byte header and the rail's bytes: for local, magic,
 * version, pid, fd, nonce (lib/backend/local.c's struct lc_addr). */
#define ADDR_HDR 56
#define RAIL_HDR 24
#define LC_FD_OFF (ADDR_HDR + RAIL_HDR + 12)
#define LC_NONCE_OFF (ADDR_HDR + RAIL_HDR + 16)

/* CRC32C (Castagnoli, reflected polynomial 0x82f63b78), bit by bit. */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return crc;
}

/* Forge: set the rail's fd (or xor its nonce) and fix the checksum. */
static void forge(uint8_t *a, size_t len, int32_t fd, uint64_t nonce_xor)
{
	uint64_t nonce;
	uint32_t c;

	memcpy(a + LC_FD_OFF, &fd, sizeof(fd));
	memcpy(&nonce, a + LC_NONCE_OFF, sizeof(nonce));
	nonce ^= nonce_xor;
	memcpy(a + LC_NONCE_OFF, &nonce, sizeof(nonce));
	memset(a + 12, 0, 4);
	c = ~crc32c(~0u, a, len);
	memcpy(a + 12, &c, 4);   /* little-endian hosts only, as is local */
}

enum { F_EMPTY, F_SHORT, F_UNSEALED, F_ZERO, F_PIPE, F_NUM };
static const char *const forged_name[F_NUM] = {
	"an empty memfd", "a 100-byte memfd", "a ring-sized unsealed memfd",
	"a ring-sized sealed memfd of zeros", "a pipe",
};
#define FORGE_IMM 0xf0f6eu

/* A target that also holds files that are not its ring: it sends its
 * address, then the fd numbers, waits for one immediate (sent once the
 * forgeries were refused) and reports it. */
static int forgery_target(int fd, void *arg)
{
	xfer_engine *e = NULL;
	uint8_t a[XFER_ADDR_MAX];
	size_t len = sizeof(a);
	int32_t fds[F_NUM];
	int pipefd[2];
	struct stat st;
	uint64_t ack;

	(void)arg;
	if (xt_engine("local", 1, 30000, &e) || xfer_engine_address(e, a, &len) || pipe(pipefd))
		return 1;
	int32_t ring_fd;

	memcpy(&ring_fd, a + LC_FD_OFF, sizeof(ring_fd));
	if (fstat(ring_fd, &st))
		return 1;
	fds[F_EMPTY] = memfd_create("forged-empty", 0);
	fds[F_SHORT] = memfd_create("forged-short", 0);
	fds[F_UNSEALED] = memfd_create("forged-unsealed", 0);
	fds[F_ZERO] = memfd_create("forged-zero", MFD_ALLOW_SEALING);
	fds[F_PIPE] = pipefd[0];
	if (fds[F_EMPTY] < 0 || fds[F_SHORT] < 0 || fds[F_UNSEALED] < 0 || fds[F_ZERO] < 0 ||
	    ftruncate(fds[F_SHORT], 100) || ftruncate(fds[F_UNSEALED], st.st_size) ||
	    ftruncate(fds[F_ZERO], st.st_size) ||
	    fcntl(fds[F_ZERO], F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		return 1;
	if (xt_send(fd, a, len) || xt_send(fd, fds, sizeof(fds)))
		return 1;
	int ret = xfer_imm_wait(e, FORGE_IMM, 1, 20000);

	xt_send_u64(fd, (uint64_t)ret);
	xt_recv_u64(fd, &ack);
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

/* Forged addresses: a clear -ECONNREFUSED and no signal (an empty memfd
 * mapped as a ring was a SIGBUS at the first access), and the target's
 * real address works afterwards. */
TEST_F(local, forged_address)
{
	uint8_t real[XFER_ADDR_MAX], a[XFER_ADDR_MAX];
	int32_t fds[F_NUM];
	uint64_t got = 1;
	uint32_t peer;
	ssize_t n;

	XT_ASSERT_OK(xt_spawn(&self->child, forgery_target, NULL));
	n = xt_recv(self->child.fd, real, sizeof(real));
	ASSERT_TRUE(n > LC_NONCE_OFF) TH_LOG("no address from the child");
	ASSERT_EQ((ssize_t)sizeof(fds), xt_recv(self->child.fd, fds, sizeof(fds)));
	XT_ASSERT_OK(xt_engine("local", 1, 30000, &self->e));

	for (int k = 0; k < F_NUM; k++) {
		memcpy(a, real, (size_t)n);
		forge(a, (size_t)n, fds[k], 0);
		EXPECT_EQ(-ECONNREFUSED, xfer_engine_add_peer(self->e, a, (size_t)n, &peer))
			TH_LOG("%s named as the ring", forged_name[k]);
	}
	memcpy(a, real, (size_t)n);
	forge(a, (size_t)n, 100000, 0);   /* no such fd */
	EXPECT_EQ(-ECONNREFUSED, xfer_engine_add_peer(self->e, a, (size_t)n, &peer));
	memcpy(a, real, (size_t)n);
	int32_t ring_fd;

	memcpy(&ring_fd, real + LC_FD_OFF, sizeof(ring_fd));
	forge(a, (size_t)n, ring_fd, 1);   /* the ring, with a wrong nonce */
	EXPECT_EQ(-ECONNREFUSED, xfer_engine_add_peer(self->e, a, (size_t)n, &peer))
		TH_LOG("a wrong nonce");

	/* the real one: an immediate arrives, counted at the target */
	XT_ASSERT_OK(xfer_engine_add_peer(self->e, real, (size_t)n, &peer));
	XT_EXPECT_OK(xfer_imm(self->e, peer, FORGE_IMM, NULL, NULL));
	EXPECT_EQ(0, xt_recv_u64(self->child.fd, &got));
	EXPECT_EQ(0u, got) TH_LOG("the target's wait: %s", xfer_strerror((int)got));
	xt_send_u64(self->child.fd, 1);
	EXPECT_EQ(0, xt_reap(&self->child));
	self->child.pid = -1;
}

/* len bytes mapped at a low address (512 MiB and up) where nothing else in
 * the process maps: the kernel hands out mappings from the top down, so a
 * hole punched here stays a hole while the test runs (one beside a mapping
 * of its choosing was filled again at once under ASan). */
static uint8_t *map_low(size_t len, int prot)
{
	for (uintptr_t a = 0x20000000; a < 0x60000000; a += 0x1000000) {
		void *p = mmap((void *)a, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			       -1, 0);

		if (p == (void *)a)
			return p;
		if (p != MAP_FAILED)
			munmap(p, len);   /* a kernel that took the address as a hint */
	}
	return NULL;
}

/* Registrations a NIC would refuse are refused at registration. */
TEST_F(local, registration_checks)
{
	const long pg = sysconf(_SC_PAGESIZE);
	const uint32_t rw = XFER_MR_REMOTE_WRITE | XFER_MR_NO_KMOD;
	uint8_t *m;
	xfer_mr *mr = NULL;

	XT_ASSERT_OK(xt_engine("local", 1, 30000, &self->e));
	/* 4 pages: [0] rw, [1] rw in a mapping of its own, [2] read-only,
	 * [3] unmapped; and a PROT_NONE page elsewhere */
	m = map_low(4 * pg, PROT_READ | PROT_WRITE);
	if (!m)
		SKIP(return, "no free low address to punch a lasting hole at");
	ASSERT_TRUE(mmap(m + pg, pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
			 -1, 0) == m + pg);
	ASSERT_EQ(0, mprotect(m + 2 * pg, pg, PROT_READ));
	ASSERT_EQ(0, munmap(m + 3 * pg, pg));

	/* fine: two adjacent rw mappings; a read-only source */
	XT_EXPECT_OK(xfer_mr_reg(self->e, m, 2 * pg, NULL, rw, &mr));
	xfer_mr_dereg(mr);
	mr = NULL;
	XT_EXPECT_OK(xfer_mr_reg(self->e, m + 2 * pg, pg, NULL, XFER_MR_NO_KMOD, &mr));
	xfer_mr_dereg(mr);
	mr = NULL;

	/* read-only for remote write: -EACCES */
	EXPECT_EQ(-EACCES, xfer_mr_reg(self->e, m + 2 * pg, pg, NULL, rw, &mr));
	EXPECT_EQ(-EACCES, xfer_mr_reg(self->e, m, 3 * pg, NULL, rw, &mr));
	/* unmapped, and past the end of a mapping: -EFAULT, with or without
	 * remote write */
	EXPECT_EQ(-EFAULT, xfer_mr_reg(self->e, m + 3 * pg, pg, NULL, rw, &mr));
	EXPECT_EQ(-EFAULT, xfer_mr_reg(self->e, m + 3 * pg, pg, NULL, XFER_MR_NO_KMOD, &mr));
	EXPECT_EQ(-EFAULT, xfer_mr_reg(self->e, m + 2 * pg, 2 * pg, NULL, XFER_MR_NO_KMOD, &mr));
	EXPECT_EQ(-EFAULT, xfer_mr_reg(self->e, m + pg + 1, 3 * pg, NULL, XFER_MR_NO_KMOD, &mr));
	EXPECT_TRUE(mr == NULL) TH_LOG("mr set on error");
	munmap(m, 3 * pg);

	/* a PROT_NONE guard page: nothing can be read or written there */
	m = mmap(NULL, pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(m != MAP_FAILED);
	EXPECT_EQ(-EACCES, xfer_mr_reg(self->e, m, pg, NULL, rw, &mr));
	EXPECT_EQ(-EACCES, xfer_mr_reg(self->e, m, pg, NULL, XFER_MR_NO_KMOD, &mr));
	munmap(m, pg);
}

TEST_HARNESS_MAIN
