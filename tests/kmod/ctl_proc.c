// SPDX-License-Identifier: GPL-2.0
/*
 * The live processes xferctl is tested against in the qemu guest
 * (tests/kmod/xferctl-guest.sh): each holds engines on the `local`
 * provider, with regions pinned through /dev/xfer, and prints what it holds
 * as "KNOWN key=value ..." lines into its status file, so that the host can
 * compare xferctl's view with the truth (tests/kmod/xferctl-guest.py).
 *
 *   ctl_proc owner FILE GID      two engines (src, dst) in one process:
 *        regions of OWNER_A (shared with group GID) and OWNER_B bytes on
 *        src, OWNER_C bytes on dst; on SIGUSR1 WRITES writes of WRITE_LEN
 *        bytes with an immediate each, src to dst, every byte checked.
 *   ctl_proc victim FILE UID     one engine, a region of VICTIM bytes shared
 *        with uid UID (the test SIGKILLs it while the opener holds it).
 *   ctl_proc opener FILE SHARE...  one engine, a region of OPENER bytes of
 *        its own, each share opened and registered; SIGUSR2 releases the
 *        last one opened.
 *   ctl_proc runas UID GID PROG ARGS...   PROG as uid UID, with GID as its
 *        only group (busybox has no su that works without PAM files).
 *
 * Every role prints "ready" once set up, and ends cleanly on SIGTERM
 * (regions deregistered, engines destroyed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "xfer.h"

#define OWNER_A (1u << 20)
#define OWNER_B (192u << 10)
#define OWNER_C (640u << 10)   /* sizes differ: the test tells regions apart by them */
#define VICTIM (320u << 10)
#define OPENER (128u << 10)
#define WRITES 8
#define WRITE_LEN (64u << 10)
#define IMM 0x0c7100u

static FILE *status;
static volatile sig_atomic_t got_usr1, got_usr2, got_term;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1++;
	else if (sig == SIGUSR2)
		got_usr2 = 1;
	else
		got_term = 1;
}

static void __attribute__((format(printf, 1, 2))) report(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(status, fmt, ap);
	va_end(ap);
	fputc('\n', status);
	fflush(status);
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fputs("failed ", status);
	va_start(ap, fmt);
	vfprintf(status, fmt, ap);
	va_end(ap);
	fputc('\n', status);
	fflush(status);
	exit(1);
}

static void *buffer(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap %zu: %s", len, strerror(errno));
	memset(p, 0, len);
	return p;
}

/* comm names the role in the module's tables: set before the engine opens
 * /dev/xfer (the context's comm) and before its pins (the regions' owner). */
static xfer_engine *engine(void)
{
	struct xfer_engine_attr a;
	xfer_engine *e;
	int ret;

	xfer_engine_attr_init(&a);
	a.provider = "local";
	ret = xfer_engine_create(&a, &e);
	if (ret)
		die("engine: %s", xfer_strerror(ret));
	return e;
}

static xfer_mr *reg(xfer_engine *e, void *buf, size_t len, uint32_t flags)
{
	xfer_mr *mr;
	int ret;

	/* CTL_PROC_NO_MODULE=1: a dry run on a host without the module */
	if (!getenv("CTL_PROC_NO_MODULE"))
		flags |= XFER_MR_KMOD_PIN;
	ret = xfer_mr_reg(e, buf, len, NULL, flags, &mr);

	if (ret)
		die("register %zu bytes through the module: %s", len, xfer_strerror(ret));
	return mr;
}

static int share(xfer_mr *mr, uint32_t rule, uint32_t id, uint64_t *sid)
{
	*sid = 0;
	return getenv("CTL_PROC_NO_MODULE") ? 0 : xfer_mr_share(mr, rule, id, sid);
}

static void wait_signals(void)
{
	sigset_t none;

	sigemptyset(&none);
	while (!got_term && !got_usr1 && !got_usr2)
		sigsuspend(&none);
}

static void block_signals(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGUSR2);
	sigaddset(&s, SIGTERM);
	sigprocmask(SIG_BLOCK, &s, NULL);
}

static void stats_line(const char *who, xfer_engine *e)
{
	struct xfer_rail_stats st;

	if (xfer_engine_stats(e, 0, &st))
		die("xfer_engine_stats %s", who);
	report("KNOWN stats engine=%s bytes_posted=%llu bytes_completed=%llu ops_posted=%llu ops_completed=%llu ops_failed=%llu imm_received=%llu",
	       who, (unsigned long long)st.bytes_posted, (unsigned long long)st.bytes_completed,
	       (unsigned long long)st.ops_posted, (unsigned long long)st.ops_completed,
	       (unsigned long long)st.ops_failed, (unsigned long long)st.imm_received);
}

static int owner(gid_t gid)
{
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	uint8_t *a = buffer(OWNER_A), *b = buffer(OWNER_B), *c = buffer(OWNER_C);
	xfer_engine *src, *dst;
	xfer_mr *ma, *mb, *mc;
	xfer_rmr *rmr;
	uint32_t peer, back;
	uint64_t sid;
	int ret, rounds = 0;

	prctl(PR_SET_NAME, "ctl-owner");
	src = engine();
	dst = engine();
	ma = reg(src, a, OWNER_A, 0);
	mb = reg(src, b, OWNER_B, 0);
	mc = reg(dst, c, OWNER_C, XFER_MR_REMOTE_WRITE);
	ret = share(ma, XFER_SHARE_GROUP, gid, &sid);
	if (ret)
		die("share with group %u: %s", (unsigned)gid, xfer_strerror(ret));
	ret = xfer_engine_address(dst, addr, &alen);
	if (!ret)
		ret = xfer_engine_add_peer(src, addr, alen, &peer);
	alen = sizeof(addr);
	if (!ret)
		ret = xfer_engine_address(src, addr, &alen);
	if (!ret)
		ret = xfer_engine_add_peer(dst, addr, alen, &back);
	if (!ret)
		ret = xfer_mr_descriptor(mc, desc, &dlen);
	if (!ret)
		ret = xfer_rmr_import(src, peer, desc, dlen, &rmr);
	/* pay the connection's set-up now: the counters then move only by
	 * the writes asked for */
	if (!ret)
		ret = xfer_engine_connect(src, &peer, 1, 10000);
	if (ret)
		die("pairing the engines: %s", xfer_strerror(ret));
	for (uint32_t i = 0; i < OWNER_A; i++)
		a[i] = (uint8_t)(i * 7 + 1);
	report("KNOWN role=owner pid=%d uid=%d comm=ctl-owner share=%llu share_rule=group share_id=%u regions=%u,%u,%u write_len=%u writes=%u",
	       (int)getpid(), (int)getuid(), (unsigned long long)sid, (unsigned)gid, OWNER_A,
	       OWNER_B, OWNER_C, WRITE_LEN, WRITES);
	stats_line("src", src);
	stats_line("dst", dst);
	report("share %llu", (unsigned long long)sid);
	report("ready");
	while (!got_term) {
		wait_signals();
		if (got_term)
			break;
		got_usr2 = 0;
		if (!got_usr1)
			continue;
		got_usr1 = 0;
		rounds++;
		for (uint32_t w = 0; w < WRITES; w++) {
			uint64_t off = (uint64_t)w * WRITE_LEN;
			xfer_op *op;

			for (uint32_t i = 0; i < WRITE_LEN; i++)
				a[off + i] = (uint8_t)(i * 13 + w + rounds);
			ret = xfer_write(src, ma, off, rmr, off, WRITE_LEN, XFER_OP_IMM, IMM, NULL, &op);
			if (!ret) {
				ret = xfer_op_wait(op, 10000);
				xfer_op_release(op);
			}
			if (!ret)
				ret = xfer_imm_wait(dst, IMM, 1, 10000);
			if (ret)
				die("write %u: %s", w, xfer_strerror(ret));
			if (memcmp(c + off, a + off, WRITE_LEN))
				die("write %u: the target's bytes differ", w);
		}
		stats_line("src", src);
		stats_line("dst", dst);
		report("writes %d done", rounds);
	}
	xfer_rmr_free(rmr);
	xfer_mr_dereg(ma);
	xfer_mr_dereg(mb);
	xfer_mr_dereg(mc);
	xfer_engine_destroy(src);
	xfer_engine_destroy(dst);
	report("stopped");
	return 0;
}

static int victim(uid_t uid)
{
	uint8_t *v = buffer(VICTIM);
	xfer_engine *e;
	xfer_mr *mv;
	uint64_t sid;
	int ret;

	prctl(PR_SET_NAME, "ctl-victim");
	e = engine();
	mv = reg(e, v, VICTIM, 0);
	ret = share(mv, XFER_SHARE_UID, uid, &sid);
	if (ret)
		die("share with uid %u: %s", (unsigned)uid, xfer_strerror(ret));
	report("KNOWN role=victim pid=%d uid=%d comm=ctl-victim share=%llu share_rule=uid share_id=%u regions=%u",
	       (int)getpid(), (int)getuid(), (unsigned long long)sid, (unsigned)uid, VICTIM);
	report("share %llu", (unsigned long long)sid);
	report("ready");
	while (!got_term)
		wait_signals();
	xfer_mr_dereg(mv);
	xfer_engine_destroy(e);
	report("stopped");
	return 0;
}

static int opener(int n, char **shares)
{
	uint8_t *o = buffer(OPENER);
	xfer_mr *mo, *opened[8];
	xfer_engine *e;
	int nopen = 0, ret;

	if (n > 8)
		die("at most 8 shares");
	prctl(PR_SET_NAME, "ctl-opener");
	e = engine();
	mo = reg(e, o, OPENER, 0);
	for (int i = 0; i < n; i++) {
		uint64_t sid = strtoull(shares[i], NULL, 10);

		ret = xfer_mr_open_shared(e, sid, 0, &opened[i]);
		if (ret)
			die("open share %llu: %s", (unsigned long long)sid, xfer_strerror(ret));
		nopen++;
		report("KNOWN role=opener opened=%llu bytes=%zu", (unsigned long long)sid,
		       xfer_mr_len(opened[i]));
	}
	/* the owner's bytes, through the opened mapping */
	if (n > 0) {
		const uint8_t *p = xfer_mr_addr(opened[0]);

		for (uint32_t i = 0; i < OWNER_A && xfer_mr_len(opened[0]) == OWNER_A; i++)
			if (p[i] != (uint8_t)(i * 7 + 1))
				die("byte %u of the first opened region differs", i);
	}
	report("KNOWN role=opener pid=%d uid=%d comm=ctl-opener regions=%u", (int)getpid(),
	       (int)getuid(), OPENER);
	report("ready");
	while (!got_term) {
		wait_signals();
		got_usr1 = 0;
		if (got_usr2 && nopen > 0) {
			got_usr2 = 0;
			ret = xfer_mr_dereg(opened[--nopen]);
			if (ret)
				die("release: %s", xfer_strerror(ret));
			report("released %d", nopen);
		}
	}
	while (nopen > 0)
		xfer_mr_dereg(opened[--nopen]);
	xfer_mr_dereg(mo);
	xfer_engine_destroy(e);
	report("stopped");
	return 0;
}

static int runas(uid_t uid, gid_t gid, char **argv)
{
	if (setgroups(1, &gid) || setgid(gid) || setuid(uid)) {
		fprintf(stderr, "ctl_proc runas: %s\n", strerror(errno));
		return 126;
	}
	execvp(argv[0], argv);
	fprintf(stderr, "ctl_proc runas: %s: %s\n", argv[0], strerror(errno));
	return 127;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };

	if (argc >= 5 && !strcmp(argv[1], "runas"))
		return runas((uid_t)atoi(argv[2]), (gid_t)atoi(argv[3]), argv + 4);
	if (argc < 3) {
		fprintf(stderr, "usage: ctl_proc owner|victim|opener FILE ARGS, or runas UID GID PROG...\n");
		return 2;
	}
	status = fopen(argv[2], "a");
	if (!status) {
		perror(argv[2]);
		return 2;
	}
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* wait_signals unblocks them in sigsuspend: none is lost between
	 * a test and the wait */
	block_signals();
	if (!strcmp(argv[1], "owner") && argc == 4)
		return owner((gid_t)atoi(argv[3]));
	if (!strcmp(argv[1], "victim") && argc == 4)
		return victim((uid_t)atoi(argv[3]));
	if (!strcmp(argv[1], "opener"))
		return opener(argc - 3, argv + 3);
	fprintf(stderr, "ctl_proc: unknown role or arguments\n");
	return 2;
}
