/* SPDX-License-Identifier: MIT */
/*
 * Peers on one host (lib/core/samehost.c), on every transport variant:
 *  - forged addresses: an address whose same-host section names another fd
 *    of the target (an empty memfd, an unsealed memfd of the page's size, an
 *    fd that does not exist) or carries a wrong nonce or start time is
 *    refused by xfer_engine_add_peer with -EPROTO or -ECONNREFUSED, without
 *    a crash (an empty memfd mapped and read would be SIGBUS); the genuine
 *    address is then added and a write through it lands;
 *  - where no NIC checks rkeys (shm, local), the target's region table:
 *    a descriptor grown by 4 KiB, then a 4 KiB write at the old end (and one
 *    straddling it) fails with -EACCES and the guard bytes past the region
 *    stay unchanged; after the target deregisters the region a write through
 *    the stale descriptor fails with -EACCES and nothing lands; both sides
 *    stay up (an immediate still arrives);
 *  - the table's capacity: on shm and local one remote-write region more
 *    than it holds is refused with -ENOSPC, and a deregistration frees a slot.
 * Every byte the target holds is checked by the target itself.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "xt_wire.h"

#define REG (64u << 10)     /* the target's region */
#define GUARD (8u << 10)    /* bytes right after it, never registered */
#define GUARD_BYTE 0xab
#define SEED 5150
#define ADDR_HOST 64        /* the address's same-host section: its last 64 bytes */

/* ---- the target process ------------------------------------------------ */

enum { CMD_CHECK = 1, CMD_DEREG, CMD_IMM, CMD_QUIT };

struct cmd {
	uint32_t kind;
	uint32_t imm;        /* CMD_CHECK: wait for it first (0: none); CMD_IMM: wait for it */
	uint64_t off, len;   /* CMD_CHECK: the written range (len 0: none) */
};

struct target_arg {
	const char *prov;
	uint32_t rails;
};

/* The region holds the pattern in [off, off + len) and zeros elsewhere, and
 * the guard is intact. */
static int check_region(const uint8_t *buf, const struct cmd *c)
{
	for (uint64_t i = 0; i < REG; i++) {
		bool in = i >= c->off && i < c->off + c->len;
		uint8_t want = in ? xt_byte(SEED, i) : 0;

		if (buf[i] != want) {
			fprintf(stderr, "target: region byte %llu is %#x, not %#x\n",
				(unsigned long long)i, buf[i], want);
			return -1;
		}
	}
	for (uint64_t i = REG; i < REG + GUARD; i++) {
		if (buf[i] != GUARD_BYTE) {
			fprintf(stderr, "target: guard byte %llu changed\n",
				(unsigned long long)(i - REG));
			return -1;
		}
	}
	return 0;
}

static int target_main(int fd, void *argp)
{
	struct target_arg *a = argp;
	xfer_engine *e;
	xfer_mr *mr;
	uint32_t peer;
	uint8_t *buf = xt_alloc(REG + GUARD);
	struct cmd c;

	if (!buf || xt_engine(a->prov, a->rails, 3000, &e))
		return 2;
	memset(buf + REG, GUARD_BYTE, GUARD);
	/* fds that are not the same-host page, for forged addresses: an empty
	 * memfd, and an unsealed one of the page's size (sent below) */
	int empty = memfd_create("forged-empty", MFD_CLOEXEC);
	int unsealed = memfd_create("forged-unsealed", MFD_CLOEXEC);

	if (empty < 0 || unsealed < 0)
		return 3;
	if (xt_connect(e, fd, &peer) ||
	    xfer_mr_reg(e, buf, REG, NULL, XFER_MR_REMOTE_WRITE, &mr) || xt_send_mr(fd, mr))
		return 4;
	uint64_t page_size;

	if (xt_recv_u64(fd, &page_size) || ftruncate(unsealed, (off_t)page_size) ||
	    xt_send_u64(fd, (uint64_t)empty) || xt_send_u64(fd, (uint64_t)unsealed))
		return 5;
	for (;;) {
		int32_t verdict = 0;

		if (xt_recv(fd, &c, sizeof(c)) != sizeof(c))
			return 6;
		if (c.kind == CMD_QUIT)
			break;
		if (c.kind == CMD_CHECK) {
			/* a completion at the initiator need not mean the bytes
			 * are here (tcp, shm's inject): its immediate does */
			if (c.imm)
				verdict = xfer_imm_wait(e, c.imm, 1, 5000);
			if (!verdict)
				verdict = check_region(buf, &c);
		}
		else if (c.kind == CMD_DEREG)
			verdict = xfer_mr_dereg(mr);   /* the memory stays, unregistered */
		else if (c.kind == CMD_IMM)
			verdict = xfer_imm_wait(e, c.imm, 1, 5000);
		if (xt_send(fd, &verdict, sizeof(verdict)))
			return 7;
	}
	xfer_engine_destroy(e);
	return 0;
}

static int target_cmd(int fd, uint32_t kind, uint64_t off, uint64_t len, uint32_t imm)
{
	struct cmd c = { .kind = kind, .imm = imm, .off = off, .len = len };
	int32_t verdict = -1;

	if (xt_send(fd, &c, sizeof(c)) || xt_recv(fd, &verdict, sizeof(verdict)) != sizeof(verdict))
		return -EIO;
	return verdict;
}

/* ---- the fixture ---------------------------------------------------------- */

FIXTURE(samehost) {
	struct xt_peer t;
	xfer_engine *e;
	uint8_t addr[XFER_ADDR_MAX];     /* the target's genuine address */
	size_t alen;
	uint8_t desc[XFER_DESC_MAX];
	ssize_t dlen;
	int empty_fd, unsealed_fd;
	void *srcbuf;
	xfer_mr *src;
	struct target_arg ta;
};
FIXTURE_VARIANT(samehost) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(samehost);

FIXTURE_SETUP(samehost)
{
	uint8_t mine[XFER_ADDR_MAX];
	size_t mlen = sizeof(mine);
	ssize_t n;
	uint64_t v;

	XT_REQUIRE_TRANSPORT();
	self->t.pid = -1;
	self->ta = (struct target_arg){ variant->provider, variant->rails };
	self->srcbuf = xt_alloc(REG + GUARD);
	ASSERT_TRUE(self->srcbuf != NULL);
	xt_fill(self->srcbuf, REG + GUARD, SEED, 0);
	XT_ASSERT_OK(xt_spawn(&self->t, target_main, &self->ta));
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 1500, &self->e));
	/* the exchange of xt_connect, keeping the target's address to forge */
	XT_ASSERT_OK(xfer_engine_address(self->e, mine, &mlen));
	XT_ASSERT_OK(xt_send(self->t.fd, mine, mlen));
	n = xt_recv(self->t.fd, self->addr, sizeof(self->addr));
	ASSERT_TRUE(n > ADDR_HOST) TH_LOG("no address from the target");
	self->alen = (size_t)n;
	self->dlen = xt_recv(self->t.fd, self->desc, sizeof(self->desc));
	ASSERT_TRUE(self->dlen > 0) TH_LOG("no descriptor from the target");
	/* the size of the target's same-host page, through the fd its address names */
	const uint8_t *h = self->addr + self->alen - ADDR_HOST;
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)xt_get_le(h + 24, 4), (int)xt_get_le(h + 28, 4));
	ASSERT_EQ(0, stat(path, &st)) TH_LOG("%s: %s", path, strerror(errno));
	XT_ASSERT_OK(xt_send_u64(self->t.fd, (uint64_t)st.st_size));
	XT_ASSERT_OK(xt_recv_u64(self->t.fd, &v));
	self->empty_fd = (int)v;
	XT_ASSERT_OK(xt_recv_u64(self->t.fd, &v));
	self->unsealed_fd = (int)v;
	XT_ASSERT_OK(xfer_mr_reg(self->e, self->srcbuf, REG + GUARD, NULL, 0, &self->src));
}

FIXTURE_TEARDOWN(samehost)
{
	if (self->t.pid > 0) {
		struct cmd c = { .kind = CMD_QUIT };

		xt_send(self->t.fd, &c, sizeof(c));
		EXPECT_EQ(0, xt_reap(&self->t)) TH_LOG("target exit status");
	}
	xfer_mr_dereg(self->src);
	xfer_engine_destroy(self->e);
	free(self->srcbuf);
}

/* The genuine address with its same-host section changed by fn, CRC fixed. */
static int add_forged(FIXTURE_DATA(samehost) *self, void (*fn)(uint8_t *h, int v), int v,
		      uint32_t *peer)
{
	uint8_t a[XFER_ADDR_MAX];

	memcpy(a, self->addr, self->alen);
	fn(a + self->alen - ADDR_HOST, v);
	xt_wire_reseal(a, self->alen);
	return xfer_engine_add_peer(self->e, a, self->alen, peer);
}

static void set_fd(uint8_t *h, int v) { xt_put_le(h + 28, (uint32_t)v, 4); }
static void flip_nonce(uint8_t *h, int v) { h[40] ^= (uint8_t)v; }
static void bump_start(uint8_t *h, int v) { xt_put_le(h + 32, xt_get_le(h + 32, 8) + (uint64_t)v, 8); }

/* Forged same-host sections are refused cleanly; the genuine address works. */
TEST_F(samehost, forged_addresses_refused)
{
	uint32_t peer = 0;
	xfer_rmr *dst = NULL;
	xfer_op *op;
	int ret;

	ret = add_forged(self, set_fd, self->empty_fd, &peer);
	EXPECT_TRUE(ret == -EPROTO) TH_LOG("an empty memfd as the page: %d", ret);
	ret = add_forged(self, set_fd, self->unsealed_fd, &peer);
	EXPECT_TRUE(ret == -EPROTO) TH_LOG("an unsealed memfd as the page: %d", ret);
	ret = add_forged(self, set_fd, 9999, &peer);
	EXPECT_TRUE(ret == -ECONNREFUSED) TH_LOG("an fd that does not exist: %d", ret);
	ret = add_forged(self, flip_nonce, 1, &peer);
	EXPECT_TRUE(ret == -ECONNREFUSED) TH_LOG("another nonce: %d", ret);
	ret = add_forged(self, bump_start, 1, &peer);
	EXPECT_TRUE(ret == -ECONNREFUSED) TH_LOG("another start time (a reused pid): %d", ret);
	/* the genuine one, and a write through it that the target verifies */
	XT_ASSERT_OK(xfer_engine_add_peer(self->e, self->addr, self->alen, &peer));
	XT_ASSERT_OK(xfer_rmr_import(self->e, peer, self->desc, (size_t)self->dlen, &dst));
	XT_ASSERT_OK(xfer_write(self->e, self->src, 4096, dst, 4096, 8192, XFER_OP_IMM, 31, NULL, &op));
	EXPECT_EQ(0, xfer_op_wait(op, 10000));
	xfer_op_release(op);
	EXPECT_EQ(0, target_cmd(self->t.fd, CMD_CHECK, 4096, 8192, 31));
	xfer_rmr_free(dst);
}

/* A write's status (0 or -errno) once it completed. */
static int write_status(xfer_engine *e, xfer_mr *src, xfer_rmr *dst, uint64_t off, uint64_t len,
			uint32_t flags, uint32_t imm)
{
	xfer_op *op;
	int ret = xfer_write(e, src, off, dst, off, len, flags, imm, NULL, &op);

	if (ret)
		return ret;
	ret = xfer_op_wait(op, 10000);
	xfer_op_release(op);
	return ret;
}

/* Where no NIC checks rkeys: grown and stale descriptors are refused by
 * the target's region table, nothing lands, both sides live. */
TEST_F(samehost, region_table)
{
	uint32_t peer;
	xfer_rmr *grown = NULL, *dst = NULL;
	uint8_t d[XFER_DESC_MAX];

	if (strcmp(variant->provider, "shm") != 0 && strcmp(variant->provider, "local") != 0)
		SKIP(return, "%s checks rkeys itself: the region table is for shm and local",
		     variant->provider);
	XT_ASSERT_OK(xfer_engine_add_peer(self->e, self->addr, self->alen, &peer));
	XT_ASSERT_OK(xfer_rmr_import(self->e, peer, self->desc, (size_t)self->dlen, &dst));
	/* grown by 4 KiB (the length at bytes 40..47), CRC fixed: it imports */
	memcpy(d, self->desc, (size_t)self->dlen);
	ASSERT_EQ(REG, xt_get_le(d + 40, 8));
	xt_put_le(d + 40, REG + 4096, 8);
	xt_wire_reseal(d, (size_t)self->dlen);
	XT_ASSERT_OK(xfer_rmr_import(self->e, peer, d, (size_t)self->dlen, &grown));
	EXPECT_EQ(REG + 4096, xfer_rmr_len(grown));

	/* inside the region: fine through either */
	EXPECT_EQ(0, write_status(self->e, self->src, grown, 0, 4096, XFER_OP_IMM, 32));
	EXPECT_EQ(0, target_cmd(self->t.fd, CMD_CHECK, 0, 4096, 32));
	/* at the old end, and straddling it (with an immediate): refused whole */
	EXPECT_EQ(-EACCES, write_status(self->e, self->src, grown, REG, 4096, 0, 0));
	EXPECT_EQ(-EACCES, write_status(self->e, self->src, grown, REG - 2048, 4096, XFER_OP_IMM, 9));
	EXPECT_EQ(0, target_cmd(self->t.fd, CMD_CHECK, 0, 4096, 0))
		TH_LOG("a refused write landed, in the region or its guard");
	EXPECT_EQ(0, xfer_peer_status(self->e, peer)) TH_LOG("a refused write took the peer down");

	/* stale: the target deregisters; its memory stays and must not change */
	EXPECT_EQ(0, target_cmd(self->t.fd, CMD_DEREG, 0, 0, 0));
	EXPECT_EQ(-EACCES, write_status(self->e, self->src, dst, 0, 4096, 0, 0));
	EXPECT_EQ(-EACCES, write_status(self->e, self->src, dst, 8192, 8192, XFER_OP_IMM, 10));
	EXPECT_EQ(0, target_cmd(self->t.fd, CMD_CHECK, 0, 4096, 0))
		TH_LOG("a write through a stale descriptor landed");

	/* both sides live: an immediate alone still arrives */
	EXPECT_EQ(0, xfer_peer_status(self->e, peer));
	XT_EXPECT_OK(xfer_imm(self->e, peer, 77, NULL, NULL));
	EXPECT_EQ(0, target_cmd(self->t.fd, CMD_IMM, 0, 0, 77)) TH_LOG("the immediate did not arrive");
	/* and nothing of the refused writes arrived meanwhile */
	EXPECT_EQ(0, target_cmd(self->t.fd, CMD_CHECK, 0, 4096, 0));
	xfer_rmr_free(grown);
	xfer_rmr_free(dst);
}

/* ---- the table's capacity ---------------------------------------------------- */

#define TABLE_REGIONS 2048   /* samehost.c's SH_REGIONS */

FIXTURE(capacity) {
	xfer_engine *e;
	uint8_t *buf;
	xfer_mr *mr[TABLE_REGIONS + 1];
};
FIXTURE_VARIANT(capacity) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(capacity);

FIXTURE_SETUP(capacity)
{
	XT_REQUIRE_TRANSPORT();
	self->buf = xt_alloc((TABLE_REGIONS + 1) * 4096ul);
	ASSERT_TRUE(self->buf != NULL);
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 1500, &self->e));
}

FIXTURE_TEARDOWN(capacity)
{
	for (int i = 0; i <= TABLE_REGIONS; i++)
		if (self->mr[i])
			xfer_mr_dereg(self->mr[i]);
	xfer_engine_destroy(self->e);
	free(self->buf);
}

/* Where peers check the table (shm, local), one remote-write region more
 * than it holds is refused loudly (-ENOSPC), a local-only one is not, and a
 * deregistration frees a slot; elsewhere there is no such limit. */
TEST_F(capacity, full_table_refuses_loudly)
{
	bool checked = strcmp(variant->provider, "shm") == 0 ||
		       strcmp(variant->provider, "local") == 0;
	xfer_mr *extra = NULL, *local_only = NULL;
	int ret;

	for (int i = 0; i < TABLE_REGIONS; i++)
		XT_ASSERT_OK(xfer_mr_reg(self->e, self->buf + i * 4096ul, 4096, NULL,
					 XFER_MR_REMOTE_WRITE, &self->mr[i]));
	ret = xfer_mr_reg(self->e, self->buf + TABLE_REGIONS * 4096ul, 4096, NULL,
			  XFER_MR_REMOTE_WRITE, &extra);
	if (checked) {
		EXPECT_EQ(-ENOSPC, ret) TH_LOG("region %d of a full table", TABLE_REGIONS + 1);
		EXPECT_TRUE(extra == NULL);
	} else {
		XT_EXPECT_OK(ret);
	}
	xfer_mr_dereg(extra);
	XT_EXPECT_OK(xfer_mr_reg(self->e, self->buf + TABLE_REGIONS * 4096ul, 4096, NULL, 0,
				 &local_only));
	xfer_mr_dereg(local_only);
	xfer_mr_dereg(self->mr[7]);
	self->mr[7] = NULL;
	XT_EXPECT_OK(xfer_mr_reg(self->e, self->buf + TABLE_REGIONS * 4096ul, 4096, NULL,
				 XFER_MR_REMOTE_WRITE, &self->mr[TABLE_REGIONS]));
}

TEST_HARNESS_MAIN
