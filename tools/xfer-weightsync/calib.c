/* SPDX-License-Identifier: MIT */
/*
 * The rates the loopback bound of `xfer-weightsync run` is made of,
 * measured on this machine just before a run: copying from one process
 * into another as the run's writes do (one stream, and several at once),
 * and quantising the run's own matrices (one thread, and several at once).
 * See docs/weightsync.md ("The loopback bound").
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xfer.h"
#include "clock.h"
#include "oob.h"
#include "run.h"

#define CAL_PASSES 8   /* measured passes of each calibration, after a warm-up */

/* The engine one calibration process opens. */
static int calib_engine(const struct wsrun_opts *o, xfer_engine **e, int fd, uint32_t *peer)
{
	struct xfer_engine_attr a;
	uint8_t addr[XFER_ADDR_MAX], theirs[XFER_ADDR_MAX];
	size_t alen = sizeof(addr);
	int len, ret;

	xfer_engine_attr_init(&a);
	a.provider = o->provider;
	a.num_rails = o->rails;
	a.node = "127.0.0.1";
	ret = xfer_engine_create(&a, e);
	if (!ret)
		ret = xfer_engine_address(*e, addr, &alen);
	if (!ret)
		ret = oob_send(fd, addr, (uint32_t)alen);
	if (!ret && (len = oob_recv(fd, theirs, sizeof(theirs))) < 0)
		ret = len;
	if (!ret)
		ret = xfer_engine_add_peer(*e, theirs, (size_t)len, peer);
	return ret;
}

/* Single-stream rate from one process into another, as the run's writes
 * go (GB/s), for the loopback bound: this process writes 16 MiB pieces,
 * 4 in flight, across 256 MiB of a target process it forks: more memory
 * than caches hold, as a run's weights are. A first pass warms the pages
 * (the kernel's first cross-process access to a page costs several times a
 * later one on this VM) and is not counted; of CAL_PASSES more, the fastest
 * gives the rate (a bound takes the best this machine showed: on a shared
 * host a few passes can all fall in a slow moment). Several
 * streams measured at once start together: after its set-up each says so
 * on `ready` and waits for a byte on `gate` (both -1 for one stream). */
static double calibrate(const struct wsrun_opts *o, int ready, int gate)
{
	const uint64_t piece = 16ull << 20, sz = 256ull << 20, n = sz / piece;
	xfer_engine *e = NULL;
	uint8_t desc[XFER_DESC_MAX], *b = xfer_host_alloc(sz);
	size_t dlen = sizeof(desc);
	xfer_mr *m = NULL;
	xfer_rmr *r = NULL;
	uint32_t peer;
	double gbs = 0;
	int sv[2], len;
	pid_t pid;

	if (!b || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 0;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {   /* the target */
		uint64_t end;

		close(sv[0]);
		if (calib_engine(o, &e, sv[1], &peer) ||
		    xfer_mr_reg(e, b, sz, NULL, XFER_MR_REMOTE_WRITE, &m) ||
		    xfer_mr_descriptor(m, desc, &dlen) || oob_send(sv[1], desc, (uint32_t)dlen))
			_exit(1);
		oob_recv_u64(sv[1], &end);
		xfer_mr_dereg(m);
		xfer_engine_destroy(e);
		_exit(0);
	}
	close(sv[1]);
	if (pid < 0)
		goto out;
	memset(b, 1, sz);
	if (calib_engine(o, &e, sv[0], &peer) || xfer_mr_reg(e, b, sz, NULL, 0, &m) ||
	    (len = oob_recv(sv[0], desc, sizeof(desc))) < 0 ||
	    xfer_rmr_import(e, peer, desc, (size_t)len, &r))
		goto out;
	if (gate >= 0) {
		char go;

		if (write(ready, "r", 1) != 1 || read(gate, &go, 1) != 1)
			goto out;
	}
	for (int pass = 0; pass <= CAL_PASSES; pass++) {   /* a warm-up, then the best */
		xfer_op *ops[4] = { 0 };
		double t0 = xfer_now_s(), rate;

		for (uint64_t i = 0; i < n; i++) {
			if (ops[i % 4]) {
				xfer_op_wait(ops[i % 4], -1);
				xfer_op_release(ops[i % 4]);
			}
			if (xfer_write(e, m, i * piece, r, i * piece, piece, 0, 0, NULL, &ops[i % 4]))
				goto out;
		}
		for (int k = 0; k < 4; k++)
			if (ops[k]) {
				xfer_op_wait(ops[k], -1);
				xfer_op_release(ops[k]);
			}
		rate = (double)sz / (xfer_now_s() - t0) / 1e9;
		if (pass && rate > gbs)
			gbs = rate;
	}
out:
	oob_send_u64(sv[0], 1);
	close(sv[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	xfer_rmr_free(r);
	if (m)
		xfer_mr_dereg(m);
	xfer_engine_destroy(e);
	free(b);
	return gbs;
}

/* libfabric is not fork-safe once initialised (shm names its regions from
 * state cached at start-up): the coordinator opens no endpoint itself and
 * calibrates in children of its own: k streams at once, each in its own
 * child, released together once all are set up. Returns the mean of their
 * rates (GB/s per stream while k copy at once; 0 if one failed). */
double wsrun_copy_rate(const struct wsrun_opts *o, uint32_t k)
{
	int res[2], gate[2], ready[2];
	double sum = 0;
	uint32_t started = 0, got = 0;
	pid_t pids[WSRUN_MAX_CALIB];

	if (k > WSRUN_MAX_CALIB)
		k = WSRUN_MAX_CALIB;
	if (pipe(res))
		return 0;
	if (pipe(gate)) {
		close(res[0]);
		close(res[1]);
		return 0;
	}
	if (pipe(ready)) {
		close(res[0]);
		close(res[1]);
		close(gate[0]);
		close(gate[1]);
		return 0;
	}
	fflush(NULL);
	for (; started < k; started++) {
		pids[started] = fork();
		if (pids[started] == 0) {
			close(res[0]);
			close(gate[1]);
			close(ready[0]);
			double gbs = k > 1 ? calibrate(o, ready[1], gate[0]) : calibrate(o, -1, -1);

			_exit(write(res[1], &gbs, sizeof(gbs)) == sizeof(gbs) ? 0 : 1);
		}
		if (pids[started] < 0)
			break;
	}
	close(res[1]);
	close(gate[0]);
	close(ready[1]);
	/* every stream set up (a failed one closes its end: read sees EOF
	 * once all have), then one byte each */
	char rb;
	uint32_t nready = 0;

	while (k > 1 && nready < started && read(ready[0], &rb, 1) == 1)
		nready++;
	close(ready[0]);
	for (uint32_t i = 0; i < started; i++)
		if (write(gate[1], "g", 1) != 1)
			break;
	close(gate[1]);
	for (double gbs; got < started && read(res[0], &gbs, sizeof(gbs)) == sizeof(gbs); got++)
		sum += gbs > 0 ? gbs : 0;
	close(res[0]);
	for (uint32_t i = 0; i < started; i++)
		waitpid(pids[i], NULL, 0);
	return got == k && started == k ? sum / k : 0;
}

/* The quantiser's rate (bf16 GB/s per thread), for the bound's transform
 * terms, on this run's own matrices: the rate depends on their shapes (a
 * block's 128 rows are 128 strides apart). Each of k threads quantises its
 * own copy of the schedule's first fp8 chunks, up to TCAL_BYTES of bf16
 * (more than caches hold); all are released together once set up; a
 * warm-up, then the best of CAL_PASSES passes each. Threads, not processes:
 * quantising opens no endpoint, and they are joined before any fork. */
#define TCAL_BYTES (192ull << 20)

struct tcal_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t ready;
	bool go;
};

struct tcal {
	const struct xfer_ws_schedule *s;
	struct tcal_gate *g;
	double gbs;
};

static void *tcal_thread(void *arg)
{
	struct tcal *t = arg;
	const struct xfer_ws_schedule *s = t->s;
	uint64_t nc = 0, bytes = 0, out = 0, sc = 0;
	uint8_t *src = NULL, *dst = NULL;
	float *scales = NULL;
	bool ok;

	/* the chunks it quantises, and room for all of them */
	for (; nc < s->nchunks && bytes < TCAL_BYTES; nc++) {
		const struct xfer_ws_chunk *c = &s->chunks[nc];

		if (c->transform != XFER_WS_XF_FP8)
			continue;
		bytes += c->rows * c->cols * sizeof(uint16_t);
		out += c->out_bytes;
		sc += c->scale_bytes;
	}
	src = malloc(bytes ? bytes : 1);
	dst = malloc(out ? out : 1);
	scales = malloc(sc ? sc : 1);
	ok = src && dst && scales && bytes;
	for (uint64_t i = 0, off = 0; ok && i < nc; i++) {
		const struct xfer_ws_chunk *c = &s->chunks[i];

		if (c->transform != XFER_WS_XF_FP8)
			continue;
		wsrun_fill_rows(&s->params[c->param], c->param, 7, c->row0, c->rows, c->col0, c->cols, src + off);
		off += c->rows * c->cols * sizeof(uint16_t);
	}
	if (ok)
		memset(dst, 0, out);
	pthread_mutex_lock(&t->g->lock);
	t->g->ready++;
	pthread_cond_broadcast(&t->g->cond);
	while (!t->g->go)
		pthread_cond_wait(&t->g->cond, &t->g->lock);
	pthread_mutex_unlock(&t->g->lock);
	for (int pass = 0; ok && pass <= CAL_PASSES; pass++) {
		uint64_t si = 0, di = 0, ci = 0;
		double t0 = xfer_now_s(), gbs;

		for (uint64_t i = 0; i < nc; i++) {
			const struct xfer_ws_chunk *c = &s->chunks[i];

			if (c->transform != XFER_WS_XF_FP8)
				continue;
			xfer_ws_quant_fp8((const uint16_t *)(src + si), c->rows, c->cols, c->cols,
					  dst + di, c->cols, (float *)((uint8_t *)scales + ci));
			si += c->rows * c->cols * sizeof(uint16_t);
			di += c->out_bytes;
			ci += c->scale_bytes;
		}
		gbs = (double)bytes / (xfer_now_s() - t0) / 1e9;
		if (pass && gbs > t->gbs)
			t->gbs = gbs;
	}
	free(src);
	free(dst);
	free(scales);
	return NULL;
}

double wsrun_transform_rate(const struct xfer_ws_schedule *s, uint32_t k)
{
	struct tcal_gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false };
	pthread_t th[WSRUN_MAX_CALIB];
	struct tcal t[WSRUN_MAX_CALIB];
	uint32_t started = 0;
	double sum = 0;

	if (k > WSRUN_MAX_CALIB)
		k = WSRUN_MAX_CALIB;
	for (; started < k; started++) {
		t[started] = (struct tcal){ s, &g, 0 };
		if (pthread_create(&th[started], NULL, tcal_thread, &t[started]))
			break;
	}
	pthread_mutex_lock(&g.lock);
	while (g.ready < started)
		pthread_cond_wait(&g.cond, &g.lock);
	g.go = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	for (uint32_t i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		sum += t[i].gbs;
	}
	return started == k ? sum / k : 0;
}
