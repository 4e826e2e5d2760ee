/* SPDX-License-Identifier: MIT */
/*
 * A small benchmark of the verbs backend through the public API, shaped like
 * perftest's ib_write_bw so that the two can be compared in the same guest:
 * two processes (this one and a forked target), one rail on the first of
 * $XFER_TEST_DEVICES, `--window` writes in flight (ib_write_bw's default
 * TX depth is 128), each resubmitted from its completion callback.
 *
 *   bench_verbs --test single --size BYTES --iters N [--window W] [--span BYTES] [--spin US]
 *   bench_verbs --test paged  --size PAGE  --iters PAGES [--batch P] [--window W]
 *
 * Single writes cycle through --span bytes on both sides (default: one
 * message, the same buffer every time, as ib_write_bw does); paged writes
 * scatter over the whole 32 MiB region. Engine defaults otherwise: --spin
 * sets the initiator's idle_spin_us (0 = the engine's default, which measured
 * best here: a worker spinning longer takes host CPU from the emulated
 * rxe; see docs/verbs-benchmarks.md). A 60 s peer timeout: under software
 * emulation a window of 128 large writes takes longer than the default.
 *
 * Prints one line: "RESULT <test> size=S iters=N secs=T MiBps=X Mops=Y"
 * (MiB = 2^20 bytes, as perftest's MB/sec). Exit 77 without a device.
 */
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xt.h"

#define REGION (32u << 20)

struct bench {
	xfer_engine *e;
	xfer_mr *src;
	xfer_rmr *dst;
	uint64_t size, iters, batch;
	uint64_t span;            /* single: bytes cycled through on both sides */
	uint32_t spin_us;         /* initiator worker's idle_spin_us */
	bool paged;
	uint32_t *pages;          /* paged: src then dst indices, per slot */
	_Atomic uint64_t submitted, completed;
	_Atomic int error;
};

static int target(int fd, void *arg)
{
	xfer_engine *e;
	xfer_mr *mr;
	uint32_t peer;
	uint64_t v;
	void *buf = xt_alloc(REGION);

	struct xfer_engine_attr ea;

	(void)arg;
	xfer_engine_attr_init(&ea);
	ea.provider = "verbs";
	ea.devices = getenv("XFER_TEST_DEVICES");
	ea.peer_timeout_ms = 60000;
	if (getenv("XFER_BENCH_TARGET_CPU"))
		ea.worker_cpu = atoi(getenv("XFER_BENCH_TARGET_CPU"));
	if (!buf || xfer_engine_create(&ea, &e))
		return 2;
	if (xt_connect(e, fd, &peer) || xfer_mr_reg(e, buf, REGION, NULL, XFER_MR_REMOTE_WRITE, &mr) ||
	    xt_send_mr(fd, mr))
		return 3;
	xt_recv_u64(fd, &v);   /* until the initiator is done */
	xfer_mr_dereg(mr);
	xfer_engine_destroy(e);
	return 0;
}

static void done_cb(void *ctx, int status);

static int submit_one(struct bench *b, uint64_t k)
{
	struct xfer_done d = { done_cb, b };

	if (!b->paged) {
		uint64_t slots = b->span / b->size;
		uint64_t off = (k % slots) * b->size;

		return xfer_write(b->e, b->src, off, b->dst, off, b->size, 0, 0, &d, NULL);
	}
	uint32_t nslot = (uint32_t)(REGION / b->size / b->batch);
	uint32_t *sp = b->pages + (k % nslot) * b->batch * 2;
	struct xfer_paged p = {
		.size = sizeof(p), .src = b->src, .dst = b->dst, .src_pages = sp,
		.dst_pages = sp + b->batch, .num_pages = (uint32_t)b->batch, .page_size = b->size,
	};
	return xfer_write_paged(b->e, &p, &d, NULL);
}

static void done_cb(void *ctx, int status)
{
	struct bench *b = ctx;

	if (status)
		atomic_store(&b->error, status);
	atomic_fetch_add(&b->completed, 1);
	uint64_t k = atomic_fetch_add(&b->submitted, 1);
	if (k < b->iters && !status) {
		int ret = submit_one(b, k);

		if (ret)
			atomic_store(&b->error, ret);
	} else {
		atomic_fetch_sub(&b->submitted, 1);
	}
}

static double run(struct bench *b, uint64_t iters, uint64_t window)
{
	uint64_t t0 = xt_now_us();

	b->iters = iters;
	atomic_store(&b->submitted, 0);
	atomic_store(&b->completed, 0);
	for (uint64_t i = 0; i < window && i < iters; i++) {
		uint64_t k = atomic_fetch_add(&b->submitted, 1);
		int ret = submit_one(b, k);

		if (ret) {
			atomic_store(&b->error, ret);
			break;
		}
	}
	while (atomic_load(&b->completed) < iters && !atomic_load(&b->error))
		usleep(5000);
	while (atomic_load(&b->completed) < atomic_load(&b->submitted))
		usleep(500);   /* an error: let what is in flight finish */
	return (double)(xt_now_us() - t0) / 1e6;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "test", 1, 0, 't' }, { "size", 1, 0, 's' }, { "iters", 1, 0, 'n' },
		{ "window", 1, 0, 'w' }, { "batch", 1, 0, 'b' }, { "span", 1, 0, 'S' },
		{ "spin", 1, 0, 'P' }, { 0 },
	};
	struct bench b = { .size = 65536, .iters = 1000, .batch = 64, .spin_us = 0 };
	uint64_t window = 128, units;
	struct xt_peer child;
	uint32_t peer;
	int c;

	while ((c = getopt_long(argc, argv, "t:s:n:w:b:S:P:", lo, NULL)) != -1) {
		switch (c) {
		case 't': b.paged = strcmp(optarg, "paged") == 0; break;
		case 's': b.size = strtoull(optarg, NULL, 0); break;
		case 'n': b.iters = strtoull(optarg, NULL, 0); break;
		case 'w': window = strtoull(optarg, NULL, 0); break;
		case 'b': b.batch = strtoull(optarg, NULL, 0); break;
		case 'S': b.span = strtoull(optarg, NULL, 0); break;
		case 'P': b.spin_us = (uint32_t)strtoul(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: bench_verbs --test single|paged --size S --iters N "
					"[--window W] [--batch P]\n");
			return 2;
		}
	}
	if (!b.span)   /* like ib_write_bw: the same buffer every time */
		b.span = b.size;
	if (b.span > REGION)
		b.span = REGION;
	if (!b.size || b.size > b.span || !b.iters || !window || !b.batch ||
	    (b.paged && b.size * b.batch > REGION))
		return 2;
	if (!xt_provider_available("verbs")) {
		printf("SKIP: no RDMA device for the verbs backend\n");
		return 77;
	}
	units = b.iters;
	if (b.paged) {   /* iters counts pages; windows of whole batches */
		uint32_t slots = (uint32_t)(REGION / b.size);
		uint32_t nslot = slots / (uint32_t)b.batch;

		b.iters = (units + b.batch - 1) / b.batch;
		units = b.iters * b.batch;
		window = (window + b.batch - 1) / b.batch;
		b.pages = malloc(sizeof(uint32_t) * 2 * b.batch * nslot);
		for (uint32_t s = 0; s < nslot; s++) {   /* scattered pages */
			uint32_t *sp = b.pages + (uint64_t)s * b.batch * 2, *dp = sp + b.batch;

			for (uint32_t i = 0; i < b.batch; i++) {
				sp[i] = (uint32_t)rand() % slots;
				dp[i] = (s * (uint32_t)b.batch + i * 7919u) % slots;
			}
		}
	}
	if (xt_spawn(&child, target, NULL))
		return 1;
	void *src = xt_alloc(REGION);
	struct xfer_engine_attr ea;

	xfer_engine_attr_init(&ea);
	ea.provider = "verbs";
	ea.devices = getenv("XFER_TEST_DEVICES");
	ea.peer_timeout_ms = 60000;
	ea.idle_spin_us = b.spin_us;
	if (getenv("XFER_BENCH_CPU"))   /* worker placement experiments */
		ea.worker_cpu = atoi(getenv("XFER_BENCH_CPU"));
	int ret = xfer_engine_create(&ea, &b.e);

	if (!ret)
		ret = xt_connect(b.e, child.fd, &peer);
	if (!ret)
		ret = xfer_mr_reg(b.e, src, REGION, NULL, 0, &b.src);
	if (!ret)
		ret = xt_recv_rmr(b.e, peer, child.fd, &b.dst);
	if (ret) {
		fprintf(stderr, "bench_verbs: set-up: %s\n", xfer_strerror(ret));
		return 1;
	}
	uint64_t iters = b.iters;
	run(&b, iters / 10 + 1, window);   /* warm up: connection, caches */
	/* diagnosis: the target's worker (which polls every <= 1 ms while idle)
	 * stopped during the measurement; plain writes need nothing from it */
	bool stop_target = getenv("XFER_BENCH_STOP_TARGET") && !b.paged;
	if (stop_target)
		kill(child.pid, SIGSTOP);
	double secs = run(&b, iters, window);
	if (stop_target)
		kill(child.pid, SIGCONT);

	if (atomic_load(&b.error)) {
		fprintf(stderr, "bench_verbs: %s\n", xfer_strerror(atomic_load(&b.error)));
		return 1;
	}
	struct xfer_engine_info info = { .size = sizeof(info) };

	xfer_engine_query(b.e, &info);
	printf("# initiator worker cpu %d\n", info.worker_cpu);
	printf("RESULT %s size=%llu iters=%llu secs=%.3f MiBps=%.2f Mops=%.6f\n",
	       b.paged ? "paged" : "single", (unsigned long long)b.size, (unsigned long long)units,
	       secs, (double)units * (double)b.size / secs / 1048576.0, (double)units / secs / 1e6);
	xt_send_u64(child.fd, 1);
	xt_reap(&child);
	xfer_rmr_free(b.dst);
	xfer_mr_dereg(b.src);
	xfer_engine_destroy(b.e);
	free(src);
	free(b.pages);
	return 0;
}
