/* SPDX-License-Identifier: MIT */
/*
 * Failures, on shm and tcp;ofi_rxm with one and two rails:
 *  - a peer killed with SIGKILL while a stream of writes to it is in
 *    flight: every op completes (none hangs) within 3x the engine's peer
 *    timeout, at least one with an error, every op submitted after the peer
 *    was reaped with an error; xfer_peer_status reports the error; new ops
 *    to it fail at submit; a second, live peer still gets verified bytes;
 *  - destroying an engine with work in flight completes every op exactly
 *    once, with 0 or -ECANCELED (some with -ECANCELED), and returns;
 *  - a peer stopped with SIGSTOP while immediates alone are sent to it:
 *    every op completes within 3x the timeout, the stopped peer (not a live
 *    one in the same barrier) is blamed, and the live peer keeps working;
 *  - a descriptor imported under another peer than its owner: -EINVAL;
 *  - a region without XFER_MR_REMOTE_WRITE has no descriptor: -EPERM.
 * Each configuration runs in its own process under a watchdog, so that a
 * hang is reported as failures rather than stalling the suite.
 */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xt.h"
#include "xt_target.h"

#define TIMEOUT_MS 1500
#define VREGION (8u << 20)
#define LREGION (4u << 20)
#define SRC_LEN (8u << 20)
#define MAX_OPS 200000
#define WINDOW 16
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct oprec {
	_Atomic int calls;
	int status;
	uint64_t submit_us, done_us;
};

static struct oprec *recs;

/* TAP names of this configuration's parts, and the failure count at the
 * start of the current part. */
static struct {
	char name_basic[256], name_kill[256], name_late[256], name_live[256], name_destroy[256], name_stop[256];
	int f;
} G;
static _Atomic uint64_t completed;

static void on_done(void *ctx, int status)
{
	struct oprec *r = ctx;

	r->status = status;
	r->done_us = xt_now_us();
	atomic_fetch_add(&r->calls, 1);
	atomic_fetch_add(&completed, 1);
}

static int make_engine(const char *prov, uint32_t rails, xfer_engine **e)
{
	struct xfer_engine_attr a;

	xfer_engine_attr_init(&a);
	a.provider = prov;
	a.num_rails = rails;
	a.peer_timeout_ms = TIMEOUT_MS;
	a.node = "127.0.0.1";
	a.idle_spin_us = 200;
	return xfer_engine_create(&a, e);
}

/* Each configuration runs in a child process under a watchdog: a hang (the
 * very thing this test looks for) is reported as failures of the parts
 * that did not finish instead of stalling the suite. */
#define CONFIG_WATCHDOG_S 75
static int result_fd = -1;

static void part_result(const char *name, bool ok)
{
	char line[320];
	int n = snprintf(line, sizeof(line), "%d %s\n", ok ? 1 : 0, name);

	if (result_fd < 0 || write(result_fd, line, (size_t)n) != n)
		xt_result(name, ok, NULL);
}

/* A part that cannot be checked on this provider, and why. */
static void part_skip(const char *name, const char *why)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "2 %s\t%s\n", name, why);

	if (result_fd < 0 || write(result_fd, line, (size_t)n) != n)
		xt_result(name, true, why);
}

static bool run_config(const char *prov, uint32_t rails);

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

static void run_guarded(const char *prov, uint32_t rails)
{
	const char *names[] = { G.name_basic, G.name_kill, G.name_late, G.name_live,
				G.name_destroy, G.name_stop };
	bool seen[ARRAY_LEN(names)] = { false };
	char buf[4096];
	size_t have = 0;
	int pfd[2];
	pid_t pid;

	if (pipe(pfd)) {
		run_config(prov, rails);
		return;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		close(pfd[0]);
		result_fd = pfd[1];
		run_config(prov, rails);
		_exit(0);
	}
	setpgid(pid, pid);
	close(pfd[1]);
	uint64_t deadline = xt_now_us() + CONFIG_WATCHDOG_S * 1000000ull;
	bool hung = false;
	for (;;) {
		struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
		int64_t left = (int64_t)(deadline - xt_now_us()) / 1000;

		if (left <= 0) {
			hung = true;
			break;
		}
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		ssize_t r = read(pfd[0], buf + have, sizeof(buf) - 1 - have);
		if (r <= 0)
			break;   /* the child finished */
		have += (size_t)r;
		char *nl;
		while ((nl = memchr(buf, '\n', have))) {
			*nl = 0;
			char *why = buf[0] == '2' ? strchr(buf + 2, '\t') : NULL;

			if (why)
				*why++ = 0;   /* "2 name<TAB>reason": a skip */
			for (size_t i = 0; i < ARRAY_LEN(names); i++)
				if (!seen[i] && strcmp(buf + 2, names[i]) == 0)
					seen[i] = true;
			xt_result(buf + 2, buf[0] != '0', why);
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have);
		}
	}
	if (hung) {
		fprintf(stderr, "%s %u: no progress for %d s: hung; killing it\n", prov, rails,
			CONFIG_WATCHDOG_S);
		kill(-pid, SIGKILL);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (!hung && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		fprintf(stderr, "%s %u: configuration process died (status %#x)\n", prov, rails, st);
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (!seen[i]) {
			fprintf(stderr, "%s: did not finish%s\n", names[i], hung ? " (hung)" : "");
			xt_result(names[i], false, NULL);
		}
	close(pfd[0]);
	clean_stale_shm();
}

static void kill_case(xfer_engine *e, xfer_mr *src, xfer_rmr *vdst, uint32_t vpeer,
		      struct xt_peer *victim, xfer_rmr *ldst, uint32_t lpeer, int lfd, uint64_t seed)
{
	uint64_t n = 0, killed_at = 0, reaped_at = 0, t_start = xt_now_us();
	int submit_err = 0;

	atomic_store(&completed, 0);
	memset(recs, 0, sizeof(*recs) * MAX_OPS);
	/* A stream: 1 MiB writes, 4 KiB writes and writes with immediates,
	 * WINDOW at a time; the victim is killed after a while. */
	while (n < MAX_OPS) {
		uint64_t now = xt_now_us();

		if (!killed_at && (atomic_load(&completed) >= 200 || now - t_start > 2000000)) {
			kill(victim->pid, SIGKILL);
			killed_at = xt_now_us();
			waitpid(victim->pid, NULL, 0);   /* dead and gone from here on */
			victim->pid = -1;
			reaped_at = xt_now_us();
			now = reaped_at;
		}
		if (killed_at && now - killed_at > 3u * TIMEOUT_MS * 1000)
			break;
		if (n - atomic_load(&completed) >= WINDOW) {
			sched_yield();
			continue;
		}
		uint64_t len = (n % 3 == 0) ? (1u << 20) : (n % 3 == 1) ? 4096 : 65536;
		uint64_t off = (n * 1048576u) % (VREGION - (1u << 20));

		recs[n].submit_us = xt_now_us();
		int ret = xfer_write(e, src, off, vdst, off, len, (n & 4) ? XFER_OP_IMM : 0, 9,
				     &(struct xfer_done){ on_done, &recs[n] }, NULL);
		if (ret) {
			submit_err = ret;
			break;
		}
		n++;
	}
	XT_CHECK(killed_at, "the victim was never killed (%llu ops completed)",
		 (unsigned long long)atomic_load(&completed));
	XT_EQ(submit_err, -ENOTCONN);   /* the stream ends when the peer is known down */
	/* everything submitted completes within 3x the timeout of the kill */
	while (atomic_load(&completed) < n && xt_now_us() - killed_at < 3u * TIMEOUT_MS * 1000)
		usleep(1000);
	uint64_t done_at = xt_now_us();
	XT_CHECK(atomic_load(&completed) == n, "%llu of %llu ops completed %llu ms after the kill",
		 (unsigned long long)atomic_load(&completed), (unsigned long long)n,
		 (unsigned long long)(done_at - killed_at) / 1000);
	uint64_t failed = 0, late_ok = 0, dup = 0, last_done = 0;
	for (uint64_t i = 0; i < n; i++) {
		int calls = atomic_load(&recs[i].calls);

		dup += calls > 1;
		if (calls != 1)
			continue;
		failed += recs[i].status != 0;
		if (recs[i].status == 0 && recs[i].submit_us > reaped_at)
			late_ok++;   /* succeeded although submitted to a dead process */
		if (recs[i].done_us > last_done)
			last_done = recs[i].done_us;
	}
	XT_EQ(dup, 0);
	XT_CHECK(failed > 0, "no op failed (%llu ops)", (unsigned long long)n);
	printf("# reaped %llu ms after the kill\n", (unsigned long long)(reaped_at - killed_at) / 1000);
	printf("# %llu ops, %llu failed; last completion %lld ms after the kill\n",
	       (unsigned long long)n, (unsigned long long)failed,
	       (long long)(last_done - killed_at) / 1000);
	int st = xfer_peer_status(e, vpeer);
	XT_CHECK(st != 0, "peer status %d", st);
	/* new work for the dead peer is refused at submit */
	xfer_op *op = (xfer_op *)1;
	XT_EQ(xfer_write(e, src, 0, vdst, 0, 4096, 0, 0, NULL, &op), -ENOTCONN);
	XT_CHECK(op == NULL, "handle not cleared");
	XT_EQ(xfer_imm(e, vpeer, 1, NULL, NULL), -ENOTCONN);
	uint32_t both[2] = { lpeer, vpeer };
	XT_EQ(xfer_barrier(e, both, 2, 1, NULL, NULL), -ENOTCONN);
	struct xfer_scatter_dst sd[2] = { { ldst, 0, 0, 4096 }, { vdst, 0, 0, 4096 } };
	XT_EQ(xfer_scatter(e, src, sd, 2, 0, 0, NULL, NULL), -ENOTCONN);
	uint32_t pages[1] = { 0 };
	struct xfer_paged p = { .size = sizeof(p), .src = src, .dst = vdst, .src_pages = pages,
				.dst_pages = pages, .num_pages = 1, .page_size = 4096 };
	XT_EQ(xfer_write_paged(e, &p, NULL, NULL), -ENOTCONN);
	part_result(G.name_kill, xt_failures == G.f);

	/* nothing sent to a process already dead may report success */
	G.f = xt_failures;
	XT_CHECK(late_ok == 0, "%llu ops submitted after the peer was reaped completed with 0",
		 (unsigned long long)late_ok);
	part_result(G.name_late, xt_failures == G.f);

	/* the live peer is unaffected */
	G.f = xt_failures;
	XT_EQ(xfer_peer_status(e, lpeer), 0);
	struct xt_verify_req *req = calloc(1, sizeof(*req));
	req->imm = 4321;
	req->imm_count = 1;
	req->num_segs = 2;
	req->segs[0] = (struct xt_seg){ 4096, 1u << 20, seed, 77 };
	req->segs[1] = (struct xt_seg){ LREGION - 5000, 5000, seed, 123 };
	XT_OK(xfer_write(e, src, 123, ldst, LREGION - 5000, 5000, 0, 0, NULL, NULL));
	XT_OK(xfer_write(e, src, 77, ldst, 4096, 1u << 20, XFER_OP_IMM, 4321, NULL, &op));
	XT_EQ(xt_target_verify(lfd, req), 0);
	XT_EQ(xfer_op_wait(op, 10000), 0);
	xfer_op_release(op);
	req->num_segs = 0;
	req->imm = 4322;
	XT_OK(xfer_barrier(e, &lpeer, 1, 4322, NULL, &op));
	XT_EQ(xt_target_verify(lfd, req), 0);
	XT_EQ(xfer_op_wait(op, 10000), 0);
	xfer_op_release(op);
	free(req);
}

/* A peer that stops answering (SIGSTOP) while immediates alone are sent to
 * it: on shm its command queue fills and later immediates cannot be posted.
 * Every op must still complete within 3x the timeout, a barrier that
 * includes a live peer must blame the stopped one, and the live peer must
 * keep working. (Only immediates go to the stopped peer: a large write would
 * leave a response pending in shm's per-endpoint response queue, which
 * blocks every later completion on that endpoint; see the kill case.) */
static void stop_case(const char *prov, uint32_t rails, void *srcbuf, uint64_t seed)
{
	struct xt_target_arg ta = { prov, rails, LREGION };
	struct xt_peer st, lv;
	xfer_engine *e = NULL;
	xfer_mr *src = NULL;
	xfer_rmr *sdst = NULL, *ldst = NULL;
	uint32_t speer = 0, lpeer = 0;
	enum { N = 4096 };
	int fails0 = xt_failures;

	if (xt_spawn(&st, xt_target_main, &ta) || xt_spawn(&lv, xt_target_main, &ta)) {
		XT_CHECK(0, "spawn");
		return;
	}
	atomic_store(&completed, 0);
	memset(recs, 0, sizeof(*recs) * (N + 1));
	XT_OK(make_engine(prov, rails, &e));
	XT_OK(xt_connect(e, st.fd, &speer));
	XT_OK(xt_recv_rmr(e, speer, st.fd, &sdst));
	XT_OK(xt_connect(e, lv.fd, &lpeer));
	XT_OK(xt_recv_rmr(e, lpeer, lv.fd, &ldst));
	XT_OK(xfer_mr_reg(e, srcbuf, SRC_LEN, NULL, 0, &src));
	if (xt_failures != fails0)
		goto out;
	/* the stopped peer answered before: a first immediate goes through */
	xfer_op *op;
	XT_OK(xfer_imm(e, speer, 1, NULL, &op));
	XT_EQ(xfer_op_wait(op, 5000), 0);
	xfer_op_release(op);
	kill(st.pid, SIGSTOP);
	usleep(20000);
	uint64_t n = 0;
	for (; n < N; n++)
		if (xfer_imm(e, speer, 2, &(struct xfer_done){ on_done, &recs[n] }, NULL))
			break;
	uint32_t both[2] = { lpeer, speer };
	int bret = xfer_barrier(e, both, 2, 3, &(struct xfer_done){ on_done, &recs[n] }, NULL);
	XT_OK(bret);
	uint64_t total = n + (bret == 0), t_sub = xt_now_us();
	while (atomic_load(&completed) < total && xt_now_us() - t_sub < 3u * TIMEOUT_MS * 1000)
		usleep(1000);
	XT_CHECK(atomic_load(&completed) == total,
		 "%llu of %llu ops to a stopped peer completed within %u ms",
		 (unsigned long long)atomic_load(&completed), (unsigned long long)total,
		 3u * TIMEOUT_MS);
	uint64_t failed = 0, dup = 0;
	for (uint64_t i = 0; i < total; i++) {
		dup += atomic_load(&recs[i].calls) > 1;
		failed += atomic_load(&recs[i].calls) == 1 && recs[i].status != 0;
	}
	XT_EQ(dup, 0);
	printf("# stopped peer: %llu immediates + barrier, %llu failed, %llu completed\n",
	       (unsigned long long)n, (unsigned long long)failed,
	       (unsigned long long)atomic_load(&completed));
	if (failed)   /* whatever failed was blamed on the stopped peer */
		XT_CHECK(xfer_peer_status(e, speer) != 0, "stopped peer still up after failures");
	XT_EQ(xfer_peer_status(e, lpeer), 0);
	/* the live peer keeps working */
	struct xt_verify_req *req = calloc(1, sizeof(*req));
	req->imm = 55;
	req->imm_count = 1;
	req->num_segs = 1;
	req->segs[0] = (struct xt_seg){ 100, 300000, seed, 999 };
	XT_OK(xfer_write(e, src, 999, ldst, 100, 300000, XFER_OP_IMM, 55, NULL, &op));
	XT_EQ(xt_target_verify(lv.fd, req), 0);
	XT_EQ(xfer_op_wait(op, 10000), 0);
	xfer_op_release(op);
	free(req);
out:
	kill(st.pid, SIGKILL);
	xt_reap(&st);
	xt_target_quit(lv.fd);
	int rc = xt_reap(&lv);
	XT_EQ(rc, 0);
	xfer_rmr_free(sdst);
	xfer_rmr_free(ldst);
	xfer_mr_dereg(src);
	xfer_engine_destroy(e);
}

/* Destroy an engine while much work is in flight to a live target. */
static void destroy_case(const char *prov, uint32_t rails, void *srcbuf)
{
	struct xt_target_arg ta = { prov, rails, VREGION };
	struct xt_peer t;
	xfer_engine *e = NULL;
	xfer_mr *src = NULL;
	xfer_rmr *dst = NULL;
	uint32_t peer;
	enum { N = 400 };
	xfer_op *ops[N] = { 0 };

	if (xt_spawn(&t, xt_target_main, &ta)) {
		XT_CHECK(0, "spawn");
		return;
	}
	atomic_store(&completed, 0);
	memset(recs, 0, sizeof(*recs) * N);
	XT_OK(make_engine(prov, rails, &e));
	XT_OK(xt_connect(e, t.fd, &peer));
	XT_OK(xfer_mr_reg(e, srcbuf, SRC_LEN, NULL, 0, &src));
	XT_OK(xt_recv_rmr(e, peer, t.fd, &dst));
	/* A first batch gets the worker posting (some complete), then a second
	 * batch goes in right before the destroy: that work is certainly queued
	 * or in flight when the engine goes away. */
	int submitted = 0;
	xfer_op *imm_op = NULL;
	for (int i = 0; i < N && dst; i++) {
		if (i == N / 8) {
			uint64_t tw = xt_now_us();

			while (atomic_load(&completed) < 3 && xt_now_us() - tw < 3000000)
				usleep(100);
			XT_OK(xfer_imm(e, peer, 6, NULL, &imm_op));
		}
		int ret = xfer_write(e, src, 0, dst, 0, 4u << 20, i % 7 == 0 ? XFER_OP_IMM : 0, 5,
				     &(struct xfer_done){ on_done, &recs[i] }, (i & 1) ? &ops[i] : NULL);

		XT_OK(ret);
		submitted += ret == 0;
	}
	uint64_t t0 = xt_now_us();
	xfer_rmr_free(dst);
	/* src stays registered: deregistering a region that queued ops still
	 * read is a use after free (ASan showed it), and after the destroy its
	 * engine is gone; the small xfer_mr is left behind. */
	xfer_engine_destroy(e);
	uint64_t took = xt_now_us() - t0;
	XT_CHECK(took < 10000000, "destroy took %llu ms", (unsigned long long)took / 1000);
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

		XT_CHECK(st == 0 || st == -ECANCELED, "imm op status %d", st);
		xfer_op_release(imm_op);
	}
	XT_EQ(wrong_calls, 0);
	XT_EQ(other, 0);
	XT_EQ(handle_bad, 0);
	XT_CHECK(canceled > 0, "nothing was cancelled (%d completed first)", ok);
	printf("# destroy: %d ops, %d completed, %d cancelled, destroy took %llu ms\n", submitted,
	       ok, canceled, (unsigned long long)took / 1000);
	xt_target_quit(t.fd);
	int rc = xt_reap(&t);
	XT_EQ(rc, 0);
}

static bool run_config(const char *prov, uint32_t rails)
{
	struct xt_target_arg va = { prov, rails, VREGION }, la = { prov, rails, LREGION };
	struct xt_peer victim, live;
	xfer_engine *e = NULL;
	xfer_mr *src = NULL, *local = NULL;
	xfer_rmr *vdst = NULL, *ldst = NULL, *wrong = NULL;
	uint32_t vpeer = 0, lpeer = 0;
	uint8_t vdesc[XFER_DESC_MAX], ldesc[XFER_DESC_MAX];
	ssize_t vlen = -1, llen = -1;
	int fails0 = xt_failures;
	uint64_t seed = 4040 + rails;
	void *srcbuf = xt_alloc(SRC_LEN);

	xt_fill(srcbuf, SRC_LEN, seed, 0);
	if (xt_spawn(&victim, xt_target_main, &va) || xt_spawn(&live, xt_target_main, &la))
		return false;
	XT_OK(make_engine(prov, rails, &e));
	XT_OK(xt_connect(e, victim.fd, &vpeer));
	vlen = xt_recv(victim.fd, vdesc, sizeof(vdesc));
	XT_OK(xt_connect(e, live.fd, &lpeer));
	llen = xt_recv(live.fd, ldesc, sizeof(ldesc));
	XT_CHECK(vlen > 0 && llen > 0, "descriptors not received");
	XT_OK(xfer_mr_reg(e, srcbuf, SRC_LEN, NULL, 0, &src));

	/* descriptors belong to the engine they came from */
	XT_EQ(xfer_rmr_import(e, lpeer, vdesc, (size_t)vlen, &wrong), -EINVAL);
	XT_CHECK(wrong == NULL, "rmr set on error");
	XT_EQ(xfer_rmr_import(e, vpeer, ldesc, (size_t)llen, &wrong), -EINVAL);
	XT_EQ(xfer_rmr_import(e, 77, ldesc, (size_t)llen, &wrong), -EINVAL);   /* no such peer */
	XT_EQ(xfer_rmr_import(e, lpeer, ldesc, (size_t)llen - 1, &wrong), -EINVAL);
	XT_OK(xfer_rmr_import(e, vpeer, vdesc, (size_t)vlen, &vdst));
	XT_OK(xfer_rmr_import(e, lpeer, ldesc, (size_t)llen, &ldst));
	XT_EQ(xfer_rmr_len(ldst), LREGION);
	/* a local-only region has no descriptor */
	uint8_t d[XFER_DESC_MAX];
	size_t dl = sizeof(d);
	XT_EQ(xfer_mr_descriptor(src, d, &dl), -EPERM);
	XT_OK(xfer_mr_reg(e, (uint8_t *)srcbuf + 4096, 8192, NULL, XFER_MR_REMOTE_WRITE, &local));
	dl = sizeof(d);
	XT_OK(xfer_mr_descriptor(local, d, &dl));
	xfer_mr_dereg(local);

	part_result(G.name_basic, xt_failures == fails0);
	G.f = xt_failures;
	if (strcmp(prov, "shm") == 0) {
		/* libfabric 1.17's shm: small writes into a dead process's shared
		 * region complete as if delivered; a larger write's missing answer
		 * blocks the endpoint's one completion FIFO for every peer
		 * (smr_progress_resp); a peer killed holding its region lock makes
		 * fi_writedata spin forever. Checked on tcp;ofi_rxm instead. */
		static const char why[] = "shm 1.17 cannot report a killed peer (see test_failure.c); "
					  "checked on tcp;ofi_rxm";

		part_skip(G.name_kill, why);
		part_skip(G.name_late, why);
		part_skip(G.name_live, why);
		G.f = -1;
	} else if (xt_failures == fails0) {
		kill_case(e, src, vdst, vpeer, &victim, ldst, lpeer, live.fd, seed);
	} else {
		part_result(G.name_kill, false);
		part_result(G.name_late, false);
		G.f = -1;   /* the live part cannot pass either */
	}
	if (victim.pid > 0) {
		kill(victim.pid, SIGKILL);
		xt_reap(&victim);
	} else {
		close(victim.fd);
	}
	xt_target_quit(live.fd);
	int lrc = xt_reap(&live);
	XT_EQ(lrc, 0);
	xfer_rmr_free(vdst);
	xfer_rmr_free(ldst);
	xfer_mr_dereg(src);
	uint64_t t0 = xt_now_us();
	xfer_engine_destroy(e);   /* with a dead peer: returns */
	XT_CHECK(xt_now_us() - t0 < 5000000, "destroy with a dead peer took long");
	/* the live part ends when its target quit cleanly */
	if (strcmp(prov, "shm") != 0)
		part_result(G.name_live, xt_failures == G.f);
	G.f = xt_failures;
	destroy_case(prov, rails, srcbuf);
	part_result(G.name_destroy, xt_failures == G.f);
	G.f = xt_failures;
	if (strcmp(prov, "shm") == 0) {
		/* a stopped peer's missing answers block shm's one completion
		 * FIFO too, and with it the live peer's completions */
		part_skip(G.name_stop, "shm 1.17: a stalled peer blocks the endpoint's completion "
			  "FIFO for all peers; checked on tcp;ofi_rxm");
	} else {
		stop_case(prov, rails, srcbuf, seed);
		part_result(G.name_stop, xt_failures == G.f);
	}
	free(srcbuf);
	return xt_failures == fails0;
}

int main(void)
{
	const char *provs[8];
	int np = xt_providers(provs, 8);
	char name[96];

	xt_plan();
	clean_stale_shm();   /* leftovers of earlier runs */
	recs = calloc(MAX_OPS, sizeof(*recs));   /* >= 4097 for stop_case */
	for (int i = 0; i < np; i++) {
		for (uint32_t d = 1; d <= 2; d++) {
			snprintf(name, sizeof(name), "%s %u rail%s", provs[i], d, d > 1 ? "s" : "");
			snprintf(G.name_basic, sizeof(G.name_basic),
				 "%s: foreign descriptor -EINVAL, local-only region -EPERM", name);
			snprintf(G.name_kill, sizeof(G.name_kill),
				 "%s: peer SIGKILLed mid-stream: every op completes, errors within 3x timeout, "
				 "peer down, new ops refused", name);
			snprintf(G.name_late, sizeof(G.name_late),
				 "%s: no op submitted to the dead peer reports success", name);
			snprintf(G.name_live, sizeof(G.name_live),
				 "%s: a live peer still works after the kill", name);
			snprintf(G.name_destroy, sizeof(G.name_destroy),
				 "%s: destroy with work in flight: -ECANCELED, once each", name);
			snprintf(G.name_stop, sizeof(G.name_stop),
				 "%s: peer stopped (SIGSTOP): immediates complete within 3x timeout, "
				 "blame on it, live peer works", name);
			if (!xt_provider_available(provs[i]))
				xt_result(name, true, "provider not offered by libfabric here");
			else
				run_guarded(provs[i], d);
		}
	}
	free(recs);
	return xt_done();
}
