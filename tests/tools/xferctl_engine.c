// SPDX-License-Identifier: MIT
/*
 * A live engine for tests/tools/xferctl.sh: two engines of this process on
 * `local` (no module: their stats pages are "xfer-stats" memfds), the
 * first writing 64 KiB with an immediate into the second every few
 * milliseconds for SECONDS, each write's bytes checked at the target, so
 * that `xferctl stat` sees counters and `xferctl monitor` sees them move.
 *
 *   xferctl_engine SECONDS [RAILS]
 *
 * Prints "ready PID" once both engines are up and "done N writes" at the
 * end; exit 0, or 1 on any failure (a byte that did not arrive, an error).
 * SIGTERM ends the loop early, cleanly.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xfer.h>

#include "xt.h"

#define LEN (64u << 10)
#define IMM 7u

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "xferctl_engine: %s: %s\n", what, err ? strerror(err < 0 ? -err : err) : "");
	return 1;
}

int main(int argc, char **argv)
{
	xfer_engine *a = NULL, *b = NULL;
	xfer_mr *src = NULL, *dst = NULL;
	xfer_rmr *rdst = NULL;
	uint8_t addr[1024], desc[XFER_DESC_MAX];
	size_t alen, dlen = sizeof(desc);
	uint32_t pa, pb, rails = argc > 2 ? (uint32_t)atoi(argv[2]) : 1;
	double secs = argc > 1 ? atof(argv[1]) : 0;
	uint64_t n = 0, end;
	void *sbuf = xt_alloc(LEN), *dbuf = xt_alloc(LEN);
	int ret;

	if (secs <= 0 || rails < 1 || rails > 8) {
		fprintf(stderr, "usage: xferctl_engine SECONDS [RAILS 1..8]\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	if ((ret = xt_engine("local", rails, 5000, &a)) || (ret = xt_engine("local", rails, 5000, &b)))
		return fail("engine", ret);
	alen = sizeof(addr);
	if ((ret = xfer_engine_address(b, addr, &alen)) ||
	    (ret = xfer_engine_add_peer(a, addr, alen, &pb)))
		return fail("add b to a", ret);
	alen = sizeof(addr);
	if ((ret = xfer_engine_address(a, addr, &alen)) ||
	    (ret = xfer_engine_add_peer(b, addr, alen, &pa)))
		return fail("add a to b", ret);
	if ((ret = xfer_mr_reg(a, sbuf, LEN, NULL, 0, &src)) ||
	    (ret = xfer_mr_reg(b, dbuf, LEN, NULL, XFER_MR_REMOTE_WRITE, &dst)) ||
	    (ret = xfer_mr_descriptor(dst, desc, &dlen)) ||
	    (ret = xfer_rmr_import(a, pb, desc, dlen, &rdst)))
		return fail("regions", ret);
	printf("ready %ld\n", (long)getpid());
	fflush(stdout);
	end = xt_now_us() + (uint64_t)(secs * 1e6);
	while (!stop && xt_now_us() < end) {
		xfer_op *op;
		int64_t bad;

		xt_fill(sbuf, LEN, n + 1, 0);
		ret = xfer_write(a, src, 0, rdst, 0, LEN, XFER_OP_IMM, IMM, NULL, &op);
		if (ret)
			return fail("write", ret);
		ret = xfer_op_wait(op, 5000);
		xfer_op_release(op);
		if (ret)
			return fail("write completion", ret);
		ret = xfer_imm_wait(b, IMM, 1, 5000);
		if (ret)
			return fail("immediate", ret);
		bad = xt_verify(dbuf, LEN, n + 1, 0);
		if (bad >= 0) {
			fprintf(stderr, "xferctl_engine: write %llu: byte %lld did not arrive\n",
				(unsigned long long)n, (long long)bad);
			return 1;
		}
		n++;
		/* A few hundred writes a second: counters move, the two shared
		 * cores stay free for everything else. */
		nanosleep(&(struct timespec){ .tv_nsec = 5000000 }, NULL);
	}
	xfer_rmr_free(rdst);
	xfer_mr_dereg(src);
	xfer_mr_dereg(dst);
	xfer_engine_destroy(a);
	xfer_engine_destroy(b);
	free(sbuf);
	free(dbuf);
	printf("done %llu writes\n", (unsigned long long)n);
	return 0;
}
