/* SPDX-License-Identifier: MIT */
/*
 * Failures, on every transport variant (provider x rails), one test per
 * behaviour:
 *  - a peer killed with SIGKILL while a stream of writes to it is in
 *    flight: every op completes (none hangs) within 3x the engine's peer
 *    timeout, those in flight at the death with an error, every op
 *    submitted after the peer was reaped with an error; xfer_peer_status reports the error; new ops
 *    to it fail at submit; a second, live peer still gets verified bytes;
 *  - destroying an engine with work in flight completes every op exactly
 *    once, with 0 or -ECANCELED (some with -ECANCELED), and returns;
 *  - a peer stopped with SIGSTOP while immediates alone are sent to it:
 *    every op completes within 3x the timeout, the stopped peer (not a live
 *    one in the same barrier) is blamed, and the live peer keeps working;
 *  - a descriptor imported under another peer than its owner: -EINVAL;
 *  - a region without XFER_MR_REMOTE_WRITE has no descriptor: -EPERM.
 * Each test runs in its own process under the harness's timeout, so that a
 * hang is reported as a failure rather than stalling the suite.
 */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "xt_target.h"

#define TIMEOUT_MS 1500
#define VREGION (8u << 20)
#define LREGION (4u << 20)
#define SRC_LEN (8u << 20)
#define MAX_OPS 200000
#define WINDOW 16

struct oprec {
	_Atomic int calls;
	int status;
	uint64_t submit_us, done_us;
};

static struct oprec *recs;   /* MAX_OPS: >= 4097 for the stop test */
static _Atomic uint64_t completed;

static void on_done(void *ctx, int status)
{
	struct oprec *r = ctx;

	r->status = status;
	r->done_us = xt_now_us();
	atomic_fetch_add(&r->calls, 1);
	atomic_fetch_add(&completed, 1);
}

/* shm regions are files /dev/shm/<pid>:...; a process killed with SIGKILL
 * cannot unlink its own, and a later process that gets the same pid then
 * fails to open shm (-EBUSY). Remove those whose process is gone. */
static void clean_stale_shm(void)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (end == de->d_name || *end != ':' || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		char path[512];

		snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
		unlink(path);
	}
	closedir(d);
}

/* Every test starts from a clean /dev/shm, its own op records and a source
 * buffer with the pattern. */
static void *common_setup(struct __test_metadata *_metadata, uint64_t seed)
{
	void *srcbuf = xt_alloc(SRC_LEN);

	clean_stale_shm();   /* leftovers of earlier runs and tests */
	recs = calloc(MAX_OPS, sizeof(*recs));
	ASSERT_TRUE(recs && srcbuf);
	atomic_store(&completed, 0);
	xt_fill(srcbuf, SRC_LEN, seed, 0);
	return srcbuf;
}

static void common_teardown(void *srcbuf)
{
	free(recs);
	recs = NULL;
	free(srcbuf);
	clean_stale_shm();
}

/* ---- a victim and a live target ---------------------------------------- */

/* One engine with two target processes: the victim (a vregion-byte region)
 * and a live one (LREGION); their descriptors received, not yet imported. */
struct pair {
	struct xt_peer victim, live;
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *vdst, *ldst;
	uint32_t vpeer, lpeer;
	uint8_t vdesc[XFER_DESC_MAX], ldesc[XFER_DESC_MAX];
	ssize_t vlen, llen;
	uint64_t seed;
	void *srcbuf;
};

static void pair_setup(struct __test_metadata *_metadata, struct pair *c, const char *prov,
		       uint32_t rails, uint64_t vregion)
{
	struct xt_target_arg va = { prov, rails, vregion }, la = { prov, rails, LREGION };

	c->victim.pid = c->live.pid = -1;
	c->seed = 4040 + rails;
	c->srcbuf = common_setup(_metadata, c->seed);
	XT_ASSERT_OK(xt_spawn(&c->victim, xt_target_main, &va));
	XT_ASSERT_OK(xt_spawn(&c->live, xt_target_main, &la));
	XT_ASSERT_OK(xt_engine(prov, rails, TIMEOUT_MS, &c->e));
	XT_ASSERT_OK(xt_connect(c->e, c->victim.fd, &c->vpeer));
	c->vlen = xt_recv(c->victim.fd, c->vdesc, sizeof(c->vdesc));
	XT_ASSERT_OK(xt_connect(c->e, c->live.fd, &c->lpeer));
	c->llen = xt_recv(c->live.fd, c->ldesc, sizeof(c->ldesc));
	ASSERT_TRUE(c->vlen > 0 && c->llen > 0) TH_LOG("descriptors not received");
	XT_ASSERT_OK(xfer_mr_reg(c->e, c->srcbuf, SRC_LEN, NULL, 0, &c->src));
}

static void pair_import(struct __test_metadata *_metadata, struct pair *c)
{
	XT_ASSERT_OK(xfer_rmr_import(c->e, c->vpeer, c->vdesc, (size_t)c->vlen, &c->vdst));
	XT_ASSERT_OK(xfer_rmr_import(c->e, c->lpeer, c->ldesc, (size_t)c->llen, &c->ldst));
}

/* Once submitting op to the live target returned ret: the target verifies
 * req and op completes. req is freed here when the submit failed (the test
 * ends there). */
static void live_verified(struct __test_metadata *_metadata, struct pair *c, int ret, xfer_op *op,
			  struct xt_verify_req *req, const char *what)
{
	if (ret)
		free(req);
	XT_ASSERT_OK(ret);
	EXPECT_EQ(0, xt_target_verify(c->live.fd, req)) TH_LOG("%s", what);
	EXPECT_EQ(0, xfer_op_wait(op, 10000));
	xfer_op_release(op);
}

/* The live target quits cleanly (every request it got verified), and the
 * engine's destroy returns although a peer may be dead. */
static void pair_teardown(struct __test_metadata *_metadata, struct pair *c)
{
	if (c->victim.pid > 0) {
		kill(c->victim.pid, SIGKILL);
		xt_reap(&c->victim);
	} else if (c->victim.fd > 0) {
		close(c->victim.fd);
	}
	EXPECT_EQ(0, xt_target_end(&c->live)) TH_LOG("the live target did not verify everything");
	xfer_rmr_free(c->vdst);
	xfer_rmr_free(c->ldst);
	xfer_mr_dereg(c->src);
	uint64_t t0 = xt_now_us();
	xfer_engine_destroy(c->e);   /* with a dead peer: returns */
	EXPECT_TRUE(xt_now_us() - t0 < 5000000) TH_LOG("destroy with a dead peer took long");
	common_teardown(c->srcbuf);
}

FIXTURE(descriptors) { struct pair c; };
FIXTURE_VARIANT(descriptors) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(descriptors);

FIXTURE_SETUP(descriptors)
{
	XT_REQUIRE_TRANSPORT();
	pair_setup(_metadata, &self->c, variant->provider, variant->rails, VREGION);
}

FIXTURE_TEARDOWN(descriptors)
{
	pair_teardown(_metadata, &self->c);
}

/* A descriptor imported under another peer than its owner: -EINVAL; a
 * region without XFER_MR_REMOTE_WRITE has no descriptor: -EPERM. */
TEST_F(descriptors, foreign_and_local_only)
{
	struct pair *c = &self->c;
	xfer_rmr *wrong = NULL;
	xfer_mr *local = NULL;

	/* descriptors belong to the engine they came from */
	EXPECT_EQ(-EINVAL, xfer_rmr_import(c->e, c->lpeer, c->vdesc, (size_t)c->vlen, &wrong));
	EXPECT_TRUE(wrong == NULL) TH_LOG("rmr set on error");
	EXPECT_EQ(-EINVAL, xfer_rmr_import(c->e, c->vpeer, c->ldesc, (size_t)c->llen, &wrong));
	EXPECT_EQ(-EINVAL, xfer_rmr_import(c->e, 77, c->ldesc, (size_t)c->llen, &wrong))
		TH_LOG("no such peer");
	EXPECT_EQ(-EINVAL, xfer_rmr_import(c->e, c->lpeer, c->ldesc, (size_t)c->llen - 1, &wrong));
	pair_import(_metadata, c);
	EXPECT_EQ(LREGION, xfer_rmr_len(c->ldst));
	/* a local-only region has no descriptor */
	uint8_t d[XFER_DESC_MAX];
	size_t dl = sizeof(d);
	EXPECT_EQ(-EPERM, xfer_mr_descriptor(c->src, d, &dl));
	XT_ASSERT_OK(xfer_mr_reg(c->e, (uint8_t *)c->srcbuf + 4096, 8192, NULL, XFER_MR_REMOTE_WRITE,
				 &local));
	dl = sizeof(d);
	XT_EXPECT_OK(xfer_mr_descriptor(local, d, &dl));
	xfer_mr_dereg(local);
}

/* libfabric 1.17's shm cannot report a killed peer; the engine learns it
 * from the peer's pidfd (samehost.c) and fails its ops at once. What it
 * cannot undo: a write of more than 4 KiB (shm's iov protocol) leaves a
 * response slot in the initiator's own response queue that only the target
 * fills, and smr_progress_resp stops at the first unfilled slot. A target
 * killed before it answered such a write blocks every later completion on
 * that rail, the live peer's too (about 4 runs in 10 here). So on shm the
 * live peer is not checked after a kill. */
#define SHM_KILL_SKIP "shm 1.17: a target killed owing a response to a write > 4 KiB blocks the " \
		      "rail's response queue (smr_progress_resp) for every peer; checked on " \
		      "tcp;ofi_rxm and local"

FIXTURE(killed) { struct pair c; };
FIXTURE_VARIANT(killed) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(killed);

FIXTURE_SETUP(killed)
{
	XT_REQUIRE_TRANSPORT();
	if (strcmp(variant->provider, "shm") == 0 && strcmp(_metadata->name, "live_peer_works") == 0)
		XT_SETUP_SKIP(SHM_KILL_SKIP);
	pair_setup(_metadata, &self->c, variant->provider, variant->rails, VREGION);
	pair_import(_metadata, &self->c);
}

FIXTURE_TEARDOWN(killed)
{
	pair_teardown(_metadata, &self->c);
}

/* What the stream to the victim left behind. */
struct stream {
	uint64_t n, killed_at, reaped_at, failed, late_ok, dup, last_done;
	int submit_err;
};

/* A stream: 1 MiB writes, 4 KiB writes and writes with immediates, WINDOW
 * at a time, to the victim; the victim is killed with SIGKILL (and reaped)
 * after a while; the stream ends when submitting fails or 3x the timeout
 * after the kill. Then waits up to 3x the timeout after the kill for every
 * op to complete and counts what completed how. */
static void kill_stream(struct __test_metadata *_metadata, struct pair *c, struct stream *s)
{
	uint64_t t_start = xt_now_us();

	memset(s, 0, sizeof(*s));
	while (s->n < MAX_OPS) {
		uint64_t now = xt_now_us(), n = s->n;

		if (!s->killed_at && (atomic_load(&completed) >= 200 || now - t_start > 2000000)) {
			kill(c->victim.pid, SIGKILL);
			s->killed_at = xt_now_us();
			waitpid(c->victim.pid, NULL, 0);   /* dead and gone from here on */
			c->victim.pid = -1;
			s->reaped_at = xt_now_us();
			now = s->reaped_at;
		}
		if (s->killed_at && now - s->killed_at > 3u * TIMEOUT_MS * 1000)
			break;
		if (n - atomic_load(&completed) >= WINDOW) {
			sched_yield();
			continue;
		}
		uint64_t len = (n % 3 == 0) ? (1u << 20) : (n % 3 == 1) ? 4096 : 65536;
		uint64_t off = (n * 1048576u) % (VREGION - (1u << 20));

		recs[n].submit_us = xt_now_us();
		int ret = xfer_write(c->e, c->src, off, c->vdst, off, len, (n & 4) ? XFER_OP_IMM : 0, 9,
				     &(struct xfer_done){ on_done, &recs[n] }, NULL);
		if (ret) {
			s->submit_err = ret;
			break;
		}
		s->n++;
	}
	ASSERT_TRUE(s->killed_at) TH_LOG("the victim was never killed (%llu ops completed)",
					 (unsigned long long)atomic_load(&completed));
	/* everything submitted completes within 3x the timeout of the kill */
	while (atomic_load(&completed) < s->n && xt_now_us() - s->killed_at < 3u * TIMEOUT_MS * 1000)
		usleep(1000);
	for (uint64_t i = 0; i < s->n; i++) {
		int calls = atomic_load(&recs[i].calls);

		s->dup += calls > 1;
		if (calls != 1)
			continue;
		s->failed += recs[i].status != 0;
		if (recs[i].status == 0 && recs[i].submit_us > s->reaped_at)
			s->late_ok++;   /* succeeded although submitted to a dead process */
		if (recs[i].done_us > s->last_done)
			s->last_done = recs[i].done_us;
	}
	TH_LOG("reaped %llu ms after the kill; %llu ops, %llu failed; last completion %lld ms after the kill",
	       (unsigned long long)(s->reaped_at - s->killed_at) / 1000, (unsigned long long)s->n,
	       (unsigned long long)s->failed, (long long)(s->last_done - s->killed_at) / 1000);
}

/* Peer SIGKILLed mid-stream: every op completes, errors within 3x timeout,
 * peer down, new ops refused. */
TEST_F(killed, every_op_completes)
{
	struct pair *c = &self->c;
	struct stream s;

	kill_stream(_metadata, c, &s);
	EXPECT_EQ(-ENOTCONN, s.submit_err) TH_LOG("the stream ends when the peer is known down");
	EXPECT_TRUE(atomic_load(&completed) == s.n)
		TH_LOG("%llu of %llu ops completed within %u ms of the kill",
		       (unsigned long long)atomic_load(&completed), (unsigned long long)s.n,
		       3u * TIMEOUT_MS);
	EXPECT_EQ(0, s.dup);
	/* An op fails unless none was in flight when the peer died: a peer on
	 * this host is known dead from its pidfd (samehost.c) as it exits, and
	 * then what follows is refused at submit (below). */
	if (!s.failed)
		TH_LOG("no op failed (%llu ops): the death was noticed with none in flight",
		       (unsigned long long)s.n);
	int st = xfer_peer_status(c->e, c->vpeer);
	EXPECT_TRUE(st != 0) TH_LOG("peer status %d", st);
	/* new work for the dead peer is refused at submit */
	xfer_op *op = (xfer_op *)1;
	EXPECT_EQ(-ENOTCONN, xfer_write(c->e, c->src, 0, c->vdst, 0, 4096, 0, 0, NULL, &op));
	EXPECT_TRUE(op == NULL) TH_LOG("handle not cleared");
	EXPECT_EQ(-ENOTCONN, xfer_imm(c->e, c->vpeer, 1, NULL, NULL));
	uint32_t both[2] = { c->lpeer, c->vpeer };
	EXPECT_EQ(-ENOTCONN, xfer_barrier(c->e, both, 2, 1, NULL, NULL));
	struct xfer_scatter_dst sd[2] = { { c->ldst, 0, 0, 4096 }, { c->vdst, 0, 0, 4096 } };
	EXPECT_EQ(-ENOTCONN, xfer_scatter(c->e, c->src, sd, 2, 0, 0, NULL, NULL));
	uint32_t pages[1] = { 0 };
	struct xfer_paged p = { .size = sizeof(p), .src = c->src, .dst = c->vdst, .src_pages = pages,
				.dst_pages = pages, .num_pages = 1, .page_size = 4096 };
	EXPECT_EQ(-ENOTCONN, xfer_write_paged(c->e, &p, NULL, NULL));
}

/* No op submitted to the dead peer reports success. */
TEST_F(killed, no_success_after_death)
{
	struct stream s;

	kill_stream(_metadata, &self->c, &s);
	EXPECT_TRUE(s.late_ok == 0) TH_LOG("%llu ops submitted after the peer was reaped completed with 0",
					   (unsigned long long)s.late_ok);
}

/* A live peer still works after the kill (and quits cleanly: teardown). */
TEST_F(killed, live_peer_works)
{
	struct pair *c = &self->c;
	struct stream s;
	xfer_op *op;

	kill_stream(_metadata, c, &s);
	EXPECT_EQ(0, xfer_peer_status(c->e, c->lpeer));
	struct xt_verify_req *req = calloc(1, sizeof(*req));
	ASSERT_TRUE(req != NULL);
	req->imm = 4321;
	req->imm_count = 1;
	req->num_segs = 2;
	req->segs[0] = (struct xt_seg){ 4096, 1u << 20, c->seed, 77 };
	req->segs[1] = (struct xt_seg){ LREGION - 5000, 5000, c->seed, 123 };
	XT_EXPECT_OK(xfer_write(c->e, c->src, 123, c->ldst, LREGION - 5000, 5000, 0, 0, NULL, NULL));
	int ret = xfer_write(c->e, c->src, 77, c->ldst, 4096, 1u << 20, XFER_OP_IMM, 4321, NULL, &op);
	live_verified(_metadata, c, ret, op, req, "write + write with imm");
	req->num_segs = 0;
	req->imm = 4322;
	ret = xfer_barrier(c->e, &c->lpeer, 1, 4322, NULL, &op);
	live_verified(_metadata, c, ret, op, req, "barrier");
	free(req);
}

/* ---- destroy with work in flight --------------------------------------- */

FIXTURE(destroy) {
	struct xt_link l;
	void *srcbuf;
};
FIXTURE_VARIANT(destroy) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(destroy);

FIXTURE_SETUP(destroy)
{
	struct xt_target_arg ta = { variant->provider, variant->rails, VREGION };

	XT_REQUIRE_TRANSPORT();
	self->l.t.pid = -1;
	self->srcbuf = common_setup(_metadata, 4040 + variant->rails);
	XT_LINK_OPEN(&self->l, &ta, TIMEOUT_MS, self->srcbuf, SRC_LEN);
}

FIXTURE_TEARDOWN(destroy)
{
	/* With the engine destroyed by the test (l.e NULL) src stays
	 * registered: deregistering a region that queued ops still read is a
	 * use after free (ASan showed it), and after the destroy its engine is
	 * gone; the small xfer_mr is left behind. */
	EXPECT_EQ(0, xt_link_close(&self->l)) TH_LOG("target process");
	common_teardown(self->srcbuf);
}

/* Destroying an engine with work in flight completes every op exactly
 * once, with 0 or -ECANCELED (some with -ECANCELED), and returns. */
TEST_F(destroy, work_in_flight)
{
	enum { N = 400 };
	xfer_op *ops[N] = { 0 };
	xfer_engine *e = self->l.e;

	/* A first batch gets the worker posting (some complete), then a second
	 * batch goes in right before the destroy: that work is certainly queued
	 * or in flight when the engine goes away. */
	int submitted = 0;
	xfer_op *imm_op = NULL;
	for (int i = 0; i < N; i++) {
		if (i == N / 8) {
			uint64_t tw = xt_now_us();

			while (atomic_load(&completed) < 3 && xt_now_us() - tw < 3000000)
				usleep(100);
			XT_EXPECT_OK(xfer_imm(e, self->l.peer, 6, NULL, &imm_op));
		}
		int ret = xfer_write(e, self->l.src, 0, self->l.dst, 0, 4u << 20, i % 7 == 0 ? XFER_OP_IMM : 0,
				     5, &(struct xfer_done){ on_done, &recs[i] }, (i & 1) ? &ops[i] : NULL);

		XT_EXPECT_OK(ret);
		submitted += ret == 0;
	}
	uint64_t t0 = xt_now_us();
	xfer_rmr_free(self->l.dst);
	self->l.dst = NULL;
	xfer_engine_destroy(e);
	self->l.e = NULL;
	uint64_t took = xt_now_us() - t0;
	EXPECT_TRUE(took < 10000000) TH_LOG("destroy took %llu ms", (unsigned long long)took / 1000);
	int canceled = 0, ok = 0, other = 0, wrong_calls = 0, handle_bad = 0;
	for (int i = 0; i < submitted; i++) {
		if (atomic_load(&recs[i].calls) != 1) {
			wrong_calls++;
			continue;
		}
		if (recs[i].status == -ECANCELED)
			canceled++;
		else if (recs[i].status == 0)
			ok++;
		else
			other++;
		if (ops[i]) {
			/* the handle outlives the engine and holds the final status */
			handle_bad += xfer_op_test(ops[i]) != recs[i].status;
			xfer_op_release(ops[i]);
		}
	}
	if (imm_op) {
		int st = xfer_op_test(imm_op);

		EXPECT_TRUE(st == 0 || st == -ECANCELED) TH_LOG("imm op status %d", st);
		xfer_op_release(imm_op);
	}
	EXPECT_EQ(0, wrong_calls);
	EXPECT_EQ(0, other);
	EXPECT_EQ(0, handle_bad);
	EXPECT_TRUE(canceled > 0) TH_LOG("nothing was cancelled (%d completed first)", ok);
	TH_LOG("destroy: %d ops, %d completed, %d cancelled, destroy took %llu ms", submitted, ok,
	       canceled, (unsigned long long)took / 1000);
}

/* ---- a stopped peer ---------------------------------------------------- */

/* A peer that stops answering (SIGSTOP) while immediates alone are sent to
 * it: on shm its command queue fills and later immediates cannot be posted.
 * Every op must still complete within 3x the timeout, a barrier that
 * includes a live peer must blame the stopped one, and the live peer must
 * keep working. (Only immediates go to the stopped peer: a large write would
 * leave a response pending in shm's per-endpoint response queue, which
 * blocks every later completion on that endpoint; see the kill tests.) */
FIXTURE(stopped) { struct pair c; };   /* the victim is the stopped peer */
FIXTURE_VARIANT(stopped) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(stopped);

FIXTURE_SETUP(stopped)
{
	XT_REQUIRE_TRANSPORT();
	/* Stopped while its worker holds its own region's lock (shm's progress
	 * takes it), the victim makes our next fi_writedata to it spin inside
	 * libfabric: our worker stops, the live peer's ops with it (1 run in
	 * ~60 here). docs/concepts.md, "What shm does not protect against";
	 * test_moe skips its stopped rank on shm for the same reason. */
	if (strcmp(variant->provider, "shm") == 0)
		XT_SETUP_SKIP("shm 1.17: a peer stopped holding its region lock makes fi_writedata to it "
			      "spin; see docs/concepts.md; checked on tcp;ofi_rxm, local and verbs");
	pair_setup(_metadata, &self->c, variant->provider, variant->rails, LREGION);
	pair_import(_metadata, &self->c);
}

FIXTURE_TEARDOWN(stopped)
{
	pair_teardown(_metadata, &self->c);
}

/* Peer stopped (SIGSTOP): immediates complete within 3x timeout, blame on
 * it, live peer works. */
TEST_F(stopped, immediates_complete_live_peer_works)
{
	enum { N = 4096 };
	struct pair *c = &self->c;
	xfer_engine *e = c->e;
	xfer_op *op;

	/* the stopped peer answered before: a first immediate goes through */
	XT_ASSERT_OK(xfer_imm(e, c->vpeer, 1, NULL, &op));
	EXPECT_EQ(0, xfer_op_wait(op, 5000));
	xfer_op_release(op);
	kill(c->victim.pid, SIGSTOP);
	usleep(20000);
	uint64_t n = 0;
	for (; n < N; n++)
		if (xfer_imm(e, c->vpeer, 2, &(struct xfer_done){ on_done, &recs[n] }, NULL))
			break;
	uint32_t both[2] = { c->lpeer, c->vpeer };
	int bret = xfer_barrier(e, both, 2, 3, &(struct xfer_done){ on_done, &recs[n] }, NULL);
	XT_EXPECT_OK(bret);
	uint64_t total = n + (bret == 0), t_sub = xt_now_us();
	while (atomic_load(&completed) < total && xt_now_us() - t_sub < 3u * TIMEOUT_MS * 1000)
		usleep(1000);
	EXPECT_TRUE(atomic_load(&completed) == total)
		TH_LOG("%llu of %llu ops to a stopped peer completed within %u ms",
		       (unsigned long long)atomic_load(&completed), (unsigned long long)total,
		       3u * TIMEOUT_MS);
	uint64_t failed = 0, dup = 0;
	for (uint64_t i = 0; i < total; i++) {
		dup += atomic_load(&recs[i].calls) > 1;
		failed += atomic_load(&recs[i].calls) == 1 && recs[i].status != 0;
	}
	EXPECT_EQ(0, dup);
	TH_LOG("stopped peer: %llu immediates + barrier, %llu failed, %llu completed",
	       (unsigned long long)n, (unsigned long long)failed,
	       (unsigned long long)atomic_load(&completed));
	if (failed)   /* whatever failed was blamed on the stopped peer */
		EXPECT_TRUE(xfer_peer_status(e, c->vpeer) != 0)
			TH_LOG("stopped peer still up after failures");
	EXPECT_EQ(0, xfer_peer_status(e, c->lpeer));
	/* the live peer keeps working */
	struct xt_verify_req *req = calloc(1, sizeof(*req));
	ASSERT_TRUE(req != NULL);
	req->imm = 55;
	req->imm_count = 1;
	req->num_segs = 1;
	req->segs[0] = (struct xt_seg){ 100, 300000, c->seed, 999 };
	int ret = xfer_write(e, c->src, 999, c->ldst, 100, 300000, XFER_OP_IMM, 55, NULL, &op);
	live_verified(_metadata, c, ret, op, req, "live peer's write");
	free(req);
}

/* ---- a dead process's shm files ----------------------------------------- */

/* shm 1.17 names a process's first endpoint /dev/shm/<pid>:0:0 and a process
 * killed with SIGKILL leaves it behind; a later process with the same pid
 * must still create an engine (the suite's many killed peers made this a
 * flake: -EBUSY). The file is forged here for this process's own pid. */
TEST(stale_shm_file_of_our_pid)
{
	struct xfer_engine_attr a;
	xfer_engine *e = NULL;
	char path[64];
	int fd;

	if (xt_transport_skip("shm"))
		SKIP(return, "%s", xt_transport_skip("shm"));
	snprintf(path, sizeof(path), "/dev/shm/%d:0:0", (int)getpid());
	fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	ASSERT_LE(0, fd) TH_LOG("%s exists already", path);
	ASSERT_EQ(0, ftruncate(fd, 4096));
	close(fd);
	xfer_engine_attr_init(&a);
	a.provider = "shm";
	EXPECT_EQ(0, xfer_engine_create(&a, &e));
	xfer_engine_destroy(e);
	unlink(path);   /* gone already, if the engine took its place */
}

TEST_HARNESS_MAIN
