/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "xfer.h"
#include "xfer_ws_exec.h"
#include "oob.h"
#include "wsrun.h"

#define BLOB_MAX 1024

/* What a child reports at the end. */
struct report {
	int32_t status;
	uint32_t pad;
	double seconds;
	uint64_t bytes, gathered, checked, mismatches;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the seeded pattern --------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* Finite values of moderate range, every bit of the mantissa in use. */
static uint16_t pattern_bf16(uint64_t seed, uint32_t param, uint64_t row, uint64_t col)
{
	uint64_t h = mix(seed ^ mix(((uint64_t)param << 40) ^ (row << 20) ^ col));
	uint16_t sign = (uint16_t)(h & 1) << 15;
	uint16_t exp = (uint16_t)(112 + (h >> 1) % 24) << 7;   /* 2^-15 .. 2^8 */

	return sign | exp | (uint16_t)((h >> 8) & 0x7f);
}

static uint32_t pattern_f32(uint64_t seed, uint32_t param, uint64_t row, uint64_t col)
{
	uint64_t h = mix(seed ^ mix(((uint64_t)param << 40) ^ (row << 20) ^ col ^ 0x5a5a));

	return (uint32_t)(h & 1) << 31 | (uint32_t)(120 + (h >> 1) % 12) << 23 |
	       (uint32_t)((h >> 8) & 0x7fffff);
}

static void fill_rows(const struct xfer_ws_param *p, uint32_t param, uint64_t seed, uint64_t row0,
		      uint64_t rows, uint64_t col0, uint64_t cols, void *out)
{
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t c = 0; c < cols; c++) {
			if (p->dtype == XFER_WS_DT_F32)
				((uint32_t *)out)[r * cols + c] = pattern_f32(seed, param, row0 + r, col0 + c);
			else
				((uint16_t *)out)[r * cols + c] = pattern_bf16(seed, param, row0 + r, col0 + c);
		}
}

static float bf16_to_f32(uint16_t v)
{
	uint32_t u = (uint32_t)v << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

/* ---- children --------------------------------------------------------------- */

struct child {
	const struct xfer_ws_schedule *s;
	const struct wsrun_opts *o;
	int fd;
	bool trainer;
	uint32_t rank;
	xfer_engine *e;
};

static int engine_open(struct child *c)
{
	struct xfer_engine_attr a;
	uint8_t addr[XFER_ADDR_MAX];
	size_t len = sizeof(addr);
	int ret;

	xfer_engine_attr_init(&a);
	a.provider = c->o->provider;
	a.num_domains = c->o->domains;
	a.node = "127.0.0.1";
	a.peer_timeout_ms = (uint32_t)(c->o->timeout_ms > 0 ? c->o->timeout_ms / 2 : 5000);
	a.idle_spin_us = 500;    /* many processes share the cores */
	ret = xfer_engine_create(&a, &c->e);
	if (!ret)
		ret = xfer_engine_address(c->e, addr, &len);
	if (!ret)
		ret = oob_send(c->fd, addr, (uint32_t)len);
	return ret;
}

/* Receive the n blobs the coordinator relays: [u32 len][bytes] each. */
static int recv_blobs(int fd, uint8_t (*blobs)[BLOB_MAX], uint32_t *lens, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		int len = oob_recv(fd, blobs[i], BLOB_MAX);

		if (len < 0)
			return len;
		lens[i] = (uint32_t)len;
	}
	return 0;
}

static int inference_main(struct child *c)
{
	const struct xfer_ws_schedule *s = c->s;
	const struct xfer_ws_infer_rank *ir = &s->infers[c->rank];
	uint32_t n = s->ntrainers + s->ninfer, peer;
	uint8_t (*blobs)[BLOB_MAX] = calloc(n, BLOB_MAX);
	uint32_t *lens = calloc(n, sizeof(*lens));
	struct report rep = { 0 };
	uint8_t desc[XFER_DESC_MAX], *buf;
	size_t dlen = sizeof(desc);
	uint64_t go;
	xfer_mr *mr = NULL;
	int ret;

	buf = aligned_alloc(4096, (ir->buf_bytes + 4095) & ~4095ull);
	if (!buf)
		return -ENOMEM;
	memset(buf, 0, ir->buf_bytes);
	if (!blobs || !lens)
		return -ENOMEM;
	ret = engine_open(c);
	/* Receivers connect to the trainers too: RC QPs need both ends, and
	 * shm answers some protocols through the sender's queue. */
	if (!ret)
		ret = recv_blobs(c->fd, blobs, lens, n);
	for (uint32_t i = 0; !ret && i < s->ntrainers; i++)
		ret = xfer_engine_add_peer(c->e, blobs[i], lens[i], &peer);
	if (!ret)
		ret = xfer_mr_reg(c->e, buf, ir->buf_bytes, NULL, XFER_MR_REMOTE_WRITE, &mr);
	if (!ret)
		ret = xfer_mr_descriptor(mr, desc, &dlen);
	if (!ret)
		ret = oob_send(c->fd, desc, (uint32_t)dlen);
	if (!ret)
		ret = oob_recv_u64(c->fd, &go);
	if (!ret)
		ret = xfer_ws_exec_receive(s, c->e, c->rank, c->o->timeout_ms ? c->o->timeout_ms : 30000);

	/* Check every write into this rank against the pattern, transformed. */
	for (uint64_t i = 0; !ret && i < s->nwrites; i++) {
		const struct xfer_ws_write *w = &s->writes[i];
		const struct xfer_ws_chunk *ch = &s->chunks[w->chunk];
		const struct xfer_ws_param *p = &s->params[ch->param];
		unsigned es = xfer_ws_dtype_size(p->dtype);
		void *src, *out, *sc;

		if (w->dst_rank != c->rank)
			continue;
		src = malloc(ch->rows * ch->cols * es);
		out = malloc(ch->out_bytes);
		sc = malloc(ch->scale_bytes ? ch->scale_bytes : 1);
		if (!src || !out || !sc) {
			ret = -ENOMEM;
		} else {
			fill_rows(p, ch->param, c->o->seed, ch->row0, ch->rows, ch->col0, ch->cols, src);
			xfer_ws_chunk_transform(s, ch, src, ch->cols, out, ch->scale_bytes ? sc : NULL);
			bool ok = memcmp(buf + w->dst_offset, out, ch->out_bytes) == 0 &&
				  (!ch->scale_bytes ||
				   memcmp(buf + w->scale_offset, sc, ch->scale_bytes) == 0);
			/* fp8: the received values also dequantise to within e4m3's
			 * rounding of the originals (3 mantissa bits: 2^-4 relative,
			 * and the subnormal step 2^-9 of the block scale). */
			if (ok && ch->transform == XFER_WS_XF_FP8) {
				const float *scales = (const float *)(buf + w->scale_offset);
				uint64_t bc = (ch->cols + 127) / 128;

				for (uint64_t r = 0; r < ch->rows && ok; r++)
					for (uint64_t k = 0; k < ch->cols && ok; k++) {
						float x = bf16_to_f32(((uint16_t *)src)[r * ch->cols + k]);
						float scale = scales[(r / 128) * bc + k / 128];
						float q = xfer_ws_e4m3_to_f32(buf[w->dst_offset + r * ch->cols + k]) * scale;
						float tol = fmaxf(fabsf(x) * 0.0625f, scale * 0.001953125f) * 1.0001f;

						ok = fabsf(q - x) <= tol;
					}
			}
			rep.checked++;
			rep.bytes += ch->out_bytes + ch->scale_bytes;
			if (!ok)
				rep.mismatches++;
		}
		free(src);
		free(out);
		free(sc);
	}
	rep.status = ret;
	oob_send(c->fd, &rep, sizeof(rep));
	if (mr)
		xfer_mr_dereg(mr);
	xfer_engine_destroy(c->e);
	free(buf);
	free(blobs);
	free(lens);
	return ret ? 1 : 0;
}

static int trainer_main(struct child *c)
{
	const struct xfer_ws_schedule *s = c->s;
	uint32_t n = s->ntrainers + s->ninfer;
	uint8_t (*blobs)[BLOB_MAX] = calloc(n, BLOB_MAX);
	uint32_t *lens = calloc(n, sizeof(*lens)), *peer = calloc(n, sizeof(*peer));
	const void **shard = calloc(s->nparams, sizeof(*shard));
	xfer_rmr **infer = calloc(s->ninfer + 1, sizeof(*infer));
	xfer_rmr **tgather = calloc(s->ntrainers, sizeof(*tgather));
	uint64_t arena_bytes = 0, off = 0, gbytes = s->trainers[c->rank].gather_bytes, go;
	uint8_t *arena = NULL, *gather = NULL, desc[XFER_DESC_MAX];
	size_t dlen = sizeof(desc);
	xfer_mr *arena_mr = NULL, *gather_mr = NULL;
	struct report rep = { 0 };
	struct xfer_ws_exec_stats st;
	int ret;

	if (!blobs || !lens || !peer || !shard || !infer || !tgather)
		return 1;
	/* Its shards, in one registered arena, filled with the pattern. */
	for (uint32_t p = 0; p < s->nparams; p++) {
		uint64_t row0, rows;

		xfer_ws_shard_rows(s, p, c->rank, &row0, &rows);
		arena_bytes += (rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype) + 63) & ~63ull;
	}
	arena = aligned_alloc(4096, (arena_bytes + 4095) & ~4095ull);
	gather = gbytes ? aligned_alloc(4096, (gbytes + 4095) & ~4095ull) : NULL;
	if (!arena || (gbytes && !gather))
		return 1;
	for (uint32_t p = 0; p < s->nparams; p++) {
		const struct xfer_ws_param *pp = &s->params[p];
		uint64_t row0, rows;

		xfer_ws_shard_rows(s, p, c->rank, &row0, &rows);
		if (!rows)
			continue;
		shard[p] = arena + off;
		fill_rows(pp, p, c->o->seed, row0, rows, 0, pp->cols, arena + off);
		off += (rows * pp->cols * xfer_ws_dtype_size(pp->dtype) + 63) & ~63ull;
	}

	ret = engine_open(c);
	if (!ret)
		ret = xfer_mr_reg(c->e, arena, arena_bytes ? arena_bytes : 1, NULL, 0, &arena_mr);
	if (!ret && gbytes)
		ret = xfer_mr_reg(c->e, gather, gbytes, NULL, XFER_MR_REMOTE_WRITE, &gather_mr);
	/* addresses of everyone: trainers first, then inference ranks */
	if (!ret)
		ret = recv_blobs(c->fd, blobs, lens, n);
	for (uint32_t i = 0; !ret && i < n; i++)
		if (i != c->rank)
			ret = xfer_engine_add_peer(c->e, blobs[i], lens[i], &peer[i]);
	/* our gather buffer's descriptor (empty if none), then everyone's */
	if (!ret) {
		if (gather_mr)
			ret = xfer_mr_descriptor(gather_mr, desc, &dlen);
		else
			dlen = 0;
		if (!ret)
			ret = oob_send(c->fd, desc, (uint32_t)dlen);
	}
	if (!ret)
		ret = recv_blobs(c->fd, blobs, lens, n);
	for (uint32_t i = 0; !ret && i < n; i++) {
		if (i == c->rank || !lens[i])
			continue;
		if (i < s->ntrainers)
			ret = xfer_rmr_import(c->e, peer[i], blobs[i], lens[i], &tgather[i]);
		else
			ret = xfer_rmr_import(c->e, peer[i], blobs[i], lens[i], &infer[i - s->ntrainers]);
	}
	if (!ret)
		ret = oob_recv_u64(c->fd, &go);
	if (!ret) {
		struct xfer_ws_trainer_io io = {
			.size = sizeof(io), .rank = c->rank, .e = c->e, .shard = shard,
			.src_mr = arena_mr, .gather_buf = gather, .gather_mr = gather_mr,
			.infer_buf = infer, .trainer_gather = tgather, .infer_peer = peer + s->ntrainers,
		};
		struct xfer_ws_exec_attr a = { .size = sizeof(a), .window = c->o->window,
					       .watermark = c->o->watermark,
					       .timeout_ms = c->o->timeout_ms };

		ret = xfer_ws_exec_trainer(s, &io, &a, &st);
		rep.seconds = st.seconds;
		rep.bytes = st.bytes_written;
		rep.gathered = st.bytes_gathered;
	}
	rep.status = ret;
	oob_send(c->fd, &rep, sizeof(rep));
	for (uint32_t i = 0; i < s->ninfer; i++)
		xfer_rmr_free(infer[i]);
	for (uint32_t i = 0; i < s->ntrainers; i++)
		xfer_rmr_free(tgather[i]);
	if (gather_mr)
		xfer_mr_dereg(gather_mr);
	if (arena_mr)
		xfer_mr_dereg(arena_mr);
	xfer_engine_destroy(c->e);
	free(arena);
	free(gather);
	free(blobs);
	free(lens);
	free(peer);
	free(shard);
	free(infer);
	free(tgather);
	return ret ? 1 : 0;
}

/* ---- the coordinator ---------------------------------------------------------- */

/* Single-stream rate between two engines of this process: what one writer
 * can move here (GB/s), for the loopback bound. */
static double calibrate(const struct wsrun_opts *o)
{
	struct xfer_engine_attr a;
	xfer_engine *e1 = NULL, *e2 = NULL;
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	const uint64_t sz = 16ull << 20, n = 32;
	uint8_t *b1 = aligned_alloc(4096, sz), *b2 = aligned_alloc(4096, sz);
	xfer_mr *m1 = NULL, *m2 = NULL;
	xfer_rmr *r = NULL;
	uint32_t peer;
	double gbs = 0;

	xfer_engine_attr_init(&a);
	a.provider = o->provider;
	a.num_domains = o->domains;
	a.node = "127.0.0.1";
	if (!b1 || !b2 || xfer_engine_create(&a, &e1) || xfer_engine_create(&a, &e2))
		goto out;
	memset(b1, 1, sz);
	memset(b2, 0, sz);
	if (xfer_mr_reg(e1, b1, sz, NULL, 0, &m1) ||
	    xfer_mr_reg(e2, b2, sz, NULL, XFER_MR_REMOTE_WRITE, &m2) ||
	    xfer_engine_address(e2, addr, &alen) || xfer_engine_add_peer(e1, addr, alen, &peer) ||
	    xfer_mr_descriptor(m2, desc, &dlen) || xfer_rmr_import(e1, peer, desc, dlen, &r))
		goto out;
	for (int pass = 0; pass < 2; pass++) {   /* the first warms up */
		xfer_op *ops[4] = { 0 };
		double t0 = now_s();

		for (uint64_t i = 0; i < n; i++) {
			if (ops[i % 4]) {
				xfer_op_wait(ops[i % 4], -1);
				xfer_op_release(ops[i % 4]);
			}
			if (xfer_write(e1, m1, 0, r, 0, sz, 0, 0, NULL, &ops[i % 4]))
				goto out;
		}
		for (int k = 0; k < 4; k++)
			if (ops[k]) {
				xfer_op_wait(ops[k], -1);
				xfer_op_release(ops[k]);
			}
		gbs = (double)(sz * n) / (now_s() - t0) / 1e9;
	}
out:
	xfer_rmr_free(r);
	if (m1)
		xfer_mr_dereg(m1);
	if (m2)
		xfer_mr_dereg(m2);
	xfer_engine_destroy(e1);
	xfer_engine_destroy(e2);
	free(b1);
	free(b2);
	return gbs;
}

/* libfabric is not fork-safe once initialised (shm names its regions from
 * state cached at start-up): the coordinator opens no endpoint itself and
 * calibrates in a child of its own. */
static double calibrate_in_child(const struct wsrun_opts *o)
{
	int p[2];
	double gbs = 0;
	pid_t pid;

	if (pipe(p))
		return 0;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		gbs = calibrate(o);
		_exit(write(p[1], &gbs, sizeof(gbs)) == sizeof(gbs) ? 0 : 1);
	}
	close(p[1]);
	if (pid < 0 || read(p[0], &gbs, sizeof(gbs)) != sizeof(gbs))
		gbs = 0;
	close(p[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return gbs;
}

static int relay(int *fds, uint32_t from, uint32_t n, uint32_t to_n, uint8_t (*blobs)[BLOB_MAX],
		 uint32_t *lens)
{
	for (uint32_t i = 0; i < n; i++) {
		int len = oob_recv(fds[i], blobs[i], BLOB_MAX);

		if (len < 0)
			return len;
		lens[i] = (uint32_t)len;
	}
	for (uint32_t k = from; k < from + to_n; k++)
		for (uint32_t i = 0; i < n; i++)
			if (oob_send(fds[k], blobs[i], lens[i]))
				return -EPIPE;
	return 0;
}

int wsrun(const struct xfer_ws_schedule *s, const struct wsrun_opts *o, struct wsrun_result *r)
{
	uint32_t n = s->ntrainers + s->ninfer;
	int *fds = calloc(n, sizeof(int));
	pid_t *pids = calloc(n, sizeof(pid_t));
	uint8_t (*blobs)[BLOB_MAX] = calloc(n, BLOB_MAX);
	uint32_t *lens = calloc(n, sizeof(uint32_t));
	struct xfer_ws_stats stats;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	if (!fds || !pids || !blobs || !lens)
		return -ENOMEM;
	r->loopback_gbs = calibrate_in_child(o);
	for (uint32_t i = 0; i < n; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			return -errno;
		fflush(NULL);
		pids[i] = fork();
		if (pids[i] == 0) {
			struct child c = { .s = s, .o = o, .fd = sv[1], .trainer = i < s->ntrainers,
					   .rank = i < s->ntrainers ? i : i - s->ntrainers };

			close(sv[0]);
			for (uint32_t k = 0; k < i; k++)
				close(fds[k]);
			signal(SIGPIPE, SIG_IGN);
			_exit(c.trainer ? trainer_main(&c) : inference_main(&c));
		}
		close(sv[1]);
		fds[i] = sv[0];
	}
	/* Addresses of all to all. */
	ret = relay(fds, 0, n, n, blobs, lens);
	/* Descriptors: trainers' gather buffers and inference buffers, to trainers. */
	if (!ret)
		ret = relay(fds, 0, n, s->ntrainers, blobs, lens);
	if (ret) {
		snprintf(r->error, sizeof(r->error), "set-up failed: %s", xfer_strerror(ret));
		goto reap;
	}
	for (uint32_t i = 0; i < n; i++)
		oob_send_u64(fds[i], 1);   /* go */
	if (o->kill_trainer >= 0 && (uint32_t)o->kill_trainer < s->ntrainers) {
		struct timespec ts = { o->kill_after_ms / 1000, (o->kill_after_ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
		kill(pids[o->kill_trainer], SIGKILL);
	}
	/* Every rank reports within a deadline, whatever the provider does with
	 * a dead peer (libfabric 1.17's shm can spin forever writing to a
	 * process that died holding its region's lock): then it is killed and
	 * named, so a run ends with an error, never a hang. */
	int limit_ms = 4 * (o->timeout_ms > 0 ? o->timeout_ms : 30000) + 30000;
	double deadline = now_s() + limit_ms / 1000.0;

	for (uint32_t i = 0; i < n; i++) {
		struct pollfd pfd = { .fd = fds[i], .events = POLLIN };
		int left = (int)((deadline - now_s()) * 1000);
		struct report rep;

		if (poll(&pfd, 1, left > 0 ? left : 0) <= 0) {
			r->failed_ranks++;
			kill(pids[i], SIGKILL);
			if (!r->error[0])
				snprintf(r->error, sizeof(r->error), "%s rank %u did not finish within %d s",
					 i < s->ntrainers ? "trainer" : "inference",
					 i < s->ntrainers ? i : i - s->ntrainers, limit_ms / 1000);
			continue;
		}
		if (oob_recv(fds[i], &rep, sizeof(rep)) != sizeof(rep)) {
			r->failed_ranks++;
			if (!r->error[0])
				snprintf(r->error, sizeof(r->error), "%s rank %u died",
					 i < s->ntrainers ? "trainer" : "inference",
					 i < s->ntrainers ? i : i - s->ntrainers);
			continue;
		}
		if (rep.status) {
			r->failed_ranks++;
			if (!r->error[0])
				snprintf(r->error, sizeof(r->error), "%s rank %u: %s",
					 i < s->ntrainers ? "trainer" : "inference",
					 i < s->ntrainers ? i : i - s->ntrainers,
					 xfer_strerror(rep.status));
		}
		if (i < s->ntrainers) {
			if (rep.seconds > r->seconds)
				r->seconds = rep.seconds;
			r->gathered += rep.gathered;
		} else {
			r->bytes += rep.bytes;
			r->tensors_checked += rep.checked;
			r->mismatches += rep.mismatches;
		}
	}
reap:
	for (uint32_t i = 0; i < n; i++) {
		close(fds[i]);
		waitpid(pids[i], NULL, 0);
	}
	/* The loopback bound: every byte crosses this machine's memory through
	 * the providers' copies, so the machine moves at most one stream's rate
	 * per core: max(busiest trainer / rate, all bytes / (rate x cores)). */
	xfer_ws_schedule_stats(s, &stats);
	if (r->loopback_gbs > 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		double rate = r->loopback_gbs * 1e9;
		double busiest = (double)stats.max_trainer_tx / rate;
		double all = (double)(stats.total_bytes + stats.gather_bytes) /
			     (rate * (double)(cores < (long)s->ntrainers ? cores : (long)s->ntrainers));

		r->bound_s = busiest > all ? busiest : all;
	}
	if (!ret && (r->failed_ranks || r->mismatches))
		ret = r->mismatches ? -EIO : -ECONNABORTED;
	free(fds);
	free(pids);
	free(blobs);
	free(lens);
	return ret;
}
