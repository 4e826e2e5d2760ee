/* SPDX-License-Identifier: MIT */
/*
 * Many peers, on every transport variant: 16 processes write all-to-all.
 * Each process has a region of 16 slots; process r writes its own pattern
 * (seed r + 1) into slot r of every other process's region with one write
 * carrying an immediate, all at once, so that every connection is set up
 * at the same moment (on tcp;ofi_rxm six or more processes doing so
 * sometimes see a connection refused: the engine retries within the peer
 * timeout). Each process checks that every write it made completed with
 * 0, that 15 immediates arrived, and then every byte of its region: slot j
 * holds j's pattern, its own slot is still zero.
 *
 * The test process only relays addresses and descriptors (the out-of-band
 * exchange) and collects the verdicts.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NPROC 16
#define SLOT (64u << 10)
#define IMM 4242
#define PEER_TIMEOUT_MS 5000
#define WAIT_MS 30000

struct member_arg {
	const char *prov;
	uint32_t rails;
	uint32_t rank;
};

/* Verdict bits a member reports (0: all well). */
enum {
	BAD_SETUP = 1, BAD_EXCHANGE = 2, BAD_SUBMIT = 4, BAD_COMPLETION = 8, BAD_IMM = 16,
	BAD_BYTES = 32,
};

static int member_main(int fd, void *argp)
{
	const struct member_arg *a = argp;
	uint8_t *region = xt_alloc((size_t)NPROC * SLOT), *src = xt_alloc(SLOT);
	uint8_t msg[XFER_ADDR_MAX > XFER_DESC_MAX ? XFER_ADDR_MAX : XFER_DESC_MAX];
	xfer_engine *e = NULL;
	xfer_mr *rmr = NULL, *smr = NULL;
	xfer_rmr *dst[NPROC] = { 0 };
	xfer_op *op[NPROC] = { 0 };
	uint32_t peer[NPROC];
	int32_t verdict = 0;
	size_t len;

	if (!region || !src)
		return 2;
	xt_fill(src, SLOT, a->rank + 1, 0);
	/* the children share two cores: keep idle workers asleep */
	if (xt_engine(a->prov, a->rails, PEER_TIMEOUT_MS, &e) ||
	    xfer_mr_reg(e, region, (size_t)NPROC * SLOT, NULL, XFER_MR_REMOTE_WRITE, &rmr) ||
	    xfer_mr_reg(e, src, SLOT, NULL, 0, &smr)) {
		verdict |= BAD_SETUP;
		goto report;
	}
	len = sizeof(msg);
	if (xfer_engine_address(e, msg, &len) || xt_send(fd, msg, len) || xt_send_mr(fd, rmr)) {
		verdict |= BAD_SETUP;
		goto report;
	}
	/* everyone's address and descriptor, in rank order (our own too) */
	for (uint32_t j = 0; j < NPROC; j++) {
		ssize_t n = xt_recv(fd, msg, sizeof(msg));

		if (n <= 0 || (j != a->rank && xfer_engine_add_peer(e, msg, (size_t)n, &peer[j])))
			verdict |= BAD_EXCHANGE;
		n = xt_recv(fd, msg, sizeof(msg));
		if (n <= 0 ||
		    (j != a->rank && !(verdict & BAD_EXCHANGE) &&
		     xfer_rmr_import(e, peer[j], msg, (size_t)n, &dst[j])))
			verdict |= BAD_EXCHANGE;
	}
	if (verdict)
		goto report;
	/* all writes at once: every connection is set up concurrently */
	for (uint32_t k = 1; k < NPROC; k++) {
		uint32_t j = (a->rank + k) % NPROC;

		if (xfer_write(e, smr, 0, dst[j], (uint64_t)a->rank * SLOT, SLOT, XFER_OP_IMM, IMM,
			       NULL, &op[j]))
			verdict |= BAD_SUBMIT;
	}
	for (uint32_t j = 0; j < NPROC; j++) {
		if (!op[j])
			continue;
		int st = xfer_op_wait(op[j], WAIT_MS);

		if (st) {
			fprintf(stderr, "member %u: write to %u: %s\n", a->rank, j, xfer_strerror(st));
			verdict |= BAD_COMPLETION;
		}
		xfer_op_release(op[j]);
	}
	int ret = xfer_imm_wait(e, IMM, NPROC - 1, WAIT_MS);
	if (ret) {
		fprintf(stderr, "member %u: immediates: %s\n", a->rank, xfer_strerror(ret));
		verdict |= BAD_IMM;
	}
	for (uint32_t j = 0; j < NPROC; j++) {
		const uint8_t *slot = region + (size_t)j * SLOT;
		int64_t bad = -1;

		if (j != a->rank) {
			bad = xt_verify(slot, SLOT, j + 1, 0);
		} else {
			for (uint32_t i = 0; i < SLOT && bad < 0; i++)
				if (slot[i])
					bad = i;
		}
		if (bad >= 0) {
			fprintf(stderr, "member %u: slot %u differs at +%lld\n", a->rank, j,
				(long long)bad);
			verdict |= BAD_BYTES;
		}
	}
report:
	xt_send(fd, &verdict, sizeof(verdict));
	/* stay until everyone is done: others may still need our progress */
	xt_recv(fd, msg, sizeof(msg));
	for (uint32_t j = 0; j < NPROC; j++)
		xfer_rmr_free(dst[j]);
	xfer_mr_dereg(smr);
	xfer_mr_dereg(rmr);
	xfer_engine_destroy(e);
	free(region);
	free(src);
	return verdict ? 1 : 0;
}

FIXTURE(peers) {
	struct xt_peer m[NPROC];
	struct member_arg arg[NPROC];
};
FIXTURE_VARIANT(peers) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(peers);

FIXTURE_SETUP(peers)
{
	for (int i = 0; i < NPROC; i++)
		self->m[i].pid = -1;
	XT_REQUIRE_TRANSPORT();
}

FIXTURE_TEARDOWN(peers)
{
	for (int i = 0; i < NPROC; i++) {
		if (self->m[i].pid > 0) {
			kill(self->m[i].pid, SIGKILL);
			xt_reap(&self->m[i]);
		}
	}
}

TEST_F_TIMEOUT(peers, all_to_all_16, 180)
{
	static uint8_t addr[NPROC][XFER_ADDR_MAX], desc[NPROC][XFER_DESC_MAX];
	ssize_t alen[NPROC], dlen[NPROC];
	uint64_t t0 = xt_now_us();

	for (uint32_t i = 0; i < NPROC; i++) {
		self->arg[i] = (struct member_arg){ variant->provider, variant->rails, i };
		XT_ASSERT_OK(xt_spawn(&self->m[i], member_main, &self->arg[i]));
	}
	for (uint32_t i = 0; i < NPROC; i++) {
		alen[i] = xt_recv(self->m[i].fd, addr[i], sizeof(addr[i]));
		dlen[i] = xt_recv(self->m[i].fd, desc[i], sizeof(desc[i]));
		ASSERT_TRUE(alen[i] > 0 && dlen[i] > 0) TH_LOG("member %u did not start", i);
	}
	for (uint32_t i = 0; i < NPROC; i++) {
		for (uint32_t j = 0; j < NPROC; j++) {
			ASSERT_EQ(0, xt_send(self->m[i].fd, addr[j], (size_t)alen[j]));
			ASSERT_EQ(0, xt_send(self->m[i].fd, desc[j], (size_t)dlen[j]));
		}
	}
	int bad = 0;
	for (uint32_t i = 0; i < NPROC; i++) {
		int32_t v = -1;

		EXPECT_EQ((ssize_t)sizeof(v), xt_recv(self->m[i].fd, &v, sizeof(v)))
			TH_LOG("member %u gave no verdict", i);
		EXPECT_EQ(0, v) TH_LOG("member %u: verdict 0x%x", i, v);
		bad += v != 0;
	}
	uint64_t took = xt_now_us() - t0;
	for (uint32_t i = 0; i < NPROC; i++) {
		uint8_t quit = 1;

		xt_send(self->m[i].fd, &quit, 1);
	}
	for (uint32_t i = 0; i < NPROC; i++) {
		EXPECT_EQ(0, xt_reap(&self->m[i])) TH_LOG("member %u", i);
		self->m[i].pid = -1;
	}
	TH_LOG("%u processes all-to-all, %u writes of %u KiB with immediates: %d bad, %llu ms", NPROC,
	       NPROC * (NPROC - 1), SLOT >> 10, bad, (unsigned long long)took / 1000);
}

/* ---- a refused connection is retried until the peer timeout ------------ */

/* A process that publishes an engine address and its region's descriptor,
 * then closes the engine and waits: connecting to it is refused. */
static int gone_main(int fd, void *argp)
{
	const struct member_arg *a = argp;
	uint8_t *region = xt_alloc(SLOT), byte;
	xfer_engine *e = NULL;
	xfer_mr *mr = NULL;
	uint32_t peer;

	if (!region || xt_engine(a->prov, a->rails, PEER_TIMEOUT_MS, &e) || xt_connect(e, fd, &peer) ||
	    xfer_mr_reg(e, region, SLOT, NULL, XFER_MR_REMOTE_WRITE, &mr) || xt_send_mr(fd, mr))
		return 2;
	/* closed only once the test added us: its add_peer opens our same-host
	 * page, which is gone after destroy (-ECONNREFUSED at add_peer, a race
	 * seen on a loaded machine) */
	if (xt_recv(fd, &byte, 1) != 1)
		return 3;
	xfer_mr_dereg(mr);
	xfer_engine_destroy(e);
	xt_send(fd, "x", 1);     /* closed: connections are refused from here */
	xt_recv(fd, &byte, 1);   /* stay alive (no pid reuse) until told */
	free(region);
	return 0;
}

FIXTURE(refused) { struct xt_peer t; struct member_arg arg; };
FIXTURE_VARIANT(refused) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(refused);

FIXTURE_SETUP(refused)
{
	self->t.pid = -1;
	XT_REQUIRE_TRANSPORT();
	if (strncmp(variant->provider, "tcp", 3) != 0)
		XT_SETUP_SKIP("only tcp;ofi_rxm sets up connections that can be refused");
}

FIXTURE_TEARDOWN(refused)
{
	if (self->t.pid > 0) {
		xt_send(self->t.fd, "q", 1);
		EXPECT_EQ(0, xt_reap(&self->t));
	}
}

/* A write to an address nobody listens on any more. tcp;ofi_rxm answers
 * each connection attempt there with a refusal and the post with EAGAIN
 * (the refusal itself reaches the engine as a write's completion only in
 * races of simultaneous set-up); either way the engine keeps trying until
 * the peer timeout: the write fails (and the peer goes down) only after
 * about the peer timeout, not at the first refusal, and not much later. */
TEST_F_TIMEOUT(refused, retried_within_timeout, 60)
{
	enum { TIMEOUT = 1500 };
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *dst;
	xfer_op *op;
	uint32_t peer;
	uint8_t *buf = xt_alloc(SLOT), byte;

	self->arg = (struct member_arg){ variant->provider, variant->rails, 0 };
	XT_ASSERT_OK(xt_spawn(&self->t, gone_main, &self->arg));
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, TIMEOUT, &e));
	XT_ASSERT_OK(xt_connect(e, self->t.fd, &peer));
	XT_ASSERT_OK(xt_recv_rmr(e, peer, self->t.fd, &dst));
	XT_ASSERT_OK(xt_send(self->t.fd, "a", 1));   /* added: it may close now */
	ASSERT_EQ(1, xt_recv(self->t.fd, &byte, 1));
	XT_ASSERT_OK(xfer_mr_reg(e, buf, SLOT, NULL, 0, &src));
	uint64_t t0 = xt_now_us();
	XT_ASSERT_OK(xfer_write(e, src, 0, dst, 0, SLOT, XFER_OP_IMM, 1, NULL, &op));
	int st = xfer_op_wait(op, 4 * TIMEOUT);
	uint64_t took = xt_now_us() - t0;
	TH_LOG("write to a closed address: %s after %llu ms (peer timeout %u ms)", xfer_strerror(st),
	       (unsigned long long)took / 1000, TIMEOUT);
	EXPECT_TRUE(st != 0) TH_LOG("a write to a closed address succeeded");
	EXPECT_TRUE(took >= TIMEOUT * 1000ull / 2) TH_LOG("gave up before retrying for the timeout");
	EXPECT_TRUE(took <= 3 * TIMEOUT * 1000ull) TH_LOG("not down within 3x the peer timeout");
	EXPECT_TRUE(xfer_peer_status(e, peer) != 0);
	xfer_op_release(op);
	xfer_rmr_free(dst);
	xfer_mr_dereg(src);
	xfer_engine_destroy(e);
	free(buf);
}

TEST_HARNESS_MAIN
