/* SPDX-License-Identifier: MIT */
/*
 * The weight-sync executor (see xfer_ws_exec.h). One thread per trainer
 * rank drives the pipeline; the engine's worker does the posting and runs
 * the completion callbacks, which only count. Staging is a ring inside one
 * registered region: chunks are prepared in the schedule's preparation
 * order and released in the same order once all their writes completed,
 * so the ring never fragments.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xfer_ws_exec.h"
#include "internal.h"

#define DEFAULT_WINDOW 64
#define DEFAULT_WATERMARK (256ull << 20)
#define DEFAULT_TIMEOUT_MS 30000

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t chunk_staging(const struct xfer_ws_chunk *c)
{
	/* scales behind the data, 64-byte aligned */
	return ((c->out_bytes + 63) & ~63ull) + ((c->scale_bytes + 63) & ~63ull);
}

XFER_EXPORT void xfer_ws_chunk_transform(const struct xfer_ws_schedule *s,
					 const struct xfer_ws_chunk *c, const void *src,
					 uint64_t ld, void *out, void *scales)
{
	const struct xfer_ws_param *p = &s->params[c->param];
	unsigned es = xfer_ws_dtype_size(p->dtype);

	if (c->transform == XFER_WS_XF_FP8) {
		xfer_ws_quant_fp8(src, c->rows, c->cols, ld, out, c->cols, scales);
		return;
	}
	for (uint64_t r = 0; r < c->rows; r++)
		memcpy((uint8_t *)out + r * c->cols * es, (const uint8_t *)src + r * ld * es,
		       c->cols * es);
}

XFER_EXPORT uint64_t xfer_ws_exec_expected(const struct xfer_ws_schedule *s, uint32_t rank)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < s->nwrites; i++) {
		const struct xfer_ws_write *w = &s->writes[i];

		if (w->dst_rank == rank)
			n += s->chunks[w->chunk].scale_bytes ? 2 : 1;
	}
	return n;
}

XFER_EXPORT int xfer_ws_exec_receive(const struct xfer_ws_schedule *s, xfer_engine *e,
				     uint32_t rank, int timeout_ms)
{
	uint64_t n;
	int ret;

	if (!s || !e || rank >= s->ninfer)
		return -EINVAL;
	n = xfer_ws_exec_expected(s, rank);
	if (n) {
		ret = xfer_imm_wait(e, XFER_WS_IMM_DATA, n, timeout_ms);
		if (ret)
			return ret;
	}
	return xfer_imm_wait(e, XFER_WS_IMM_BARRIER, s->ntrainers, timeout_ms);
}

/* ---- trainer ----------------------------------------------------------- */

struct chunk_state {
	_Atomic uint32_t left;     /* writes (data and scales) not completed */
	uint64_t off, end;         /* in the staging ring */
	uint64_t size;             /* bytes charged to it (with a skipped ring end) */
	bool prepared;
};

struct trainer {
	const struct xfer_ws_schedule *s;
	const struct xfer_ws_trainer_io *io;
	xfer_engine *e;
	uint32_t window;
	uint8_t *ring;
	uint64_t ring_size, head, tail, used;   /* head: next free, tail: oldest held */
	xfer_mr *ring_mr;
	struct chunk_state *cs;    /* per chunk of this rank, by local index */
	uint32_t first_chunk, nchunks;
	_Atomic uint64_t inflight;
	_Atomic uint32_t wake;     /* futex: bumped on each completion */
	_Atomic int error;
	uint64_t peak;
};

/* The callback context: which chunk, and the trainer to wake. */
struct wctx {
	struct trainer *t;
	struct chunk_state *cs;
};

static void wdone(void *ctx, int status)
{
	struct wctx *w = ctx;
	struct trainer *t = w->t;

	if (status) {
		int zero = 0;

		atomic_compare_exchange_strong(&t->error, &zero, status);
	}
	if (w->cs)
		atomic_fetch_sub(&w->cs->left, 1);
	atomic_fetch_sub(&t->inflight, 1);
	atomic_fetch_add(&t->wake, 1);
	xfer_futex_wake(&t->wake);
}

static int wait_progress(struct trainer *t, uint32_t seen, int timeout_ms)
{
	if (atomic_load(&t->wake) != seen)
		return 0;
	xfer_futex_wait(&t->wake, seen, (int64_t)timeout_ms * 1000000);
	return atomic_load(&t->wake) != seen ? 0 : -ETIMEDOUT;
}

/* Release prepared chunks at the ring's tail whose writes all completed. */
static void ring_release(struct trainer *t, uint32_t *rel)
{
	while (*rel < t->nchunks && t->cs[*rel].prepared && atomic_load(&t->cs[*rel].left) == 0) {
		t->used -= t->cs[*rel].size;
		t->tail = t->cs[*rel].end;
		(*rel)++;
	}
}

/* Room for `size` contiguous bytes at the head. When the end of the ring is
 * too short the chunk starts again at 0 and the skipped end is charged to it
 * (*charged), so releasing chunks in order gives it all back. */
static bool ring_alloc(struct trainer *t, uint64_t size, uint64_t *off, uint64_t *charged)
{
	if (t->used == 0)
		t->head = t->tail = 0;
	if (t->used + size > t->ring_size)
		return false;
	*charged = size;
	if (t->head >= t->tail) {        /* free: [head, end) and [0, tail) */
		if (t->head + size <= t->ring_size) {
			*off = t->head;
		} else if (size <= t->tail) {
			*charged += t->ring_size - t->head;
			*off = 0;
		} else {
			return false;
		}
	} else {                         /* free: [head, tail) */
		if (t->head + size > t->tail)
			return false;
		*off = t->head;
	}
	t->head = *off + size;
	t->used += *charged;
	if (t->used > t->peak)
		t->peak = t->used;
	return true;
}

static const void *chunk_source(struct trainer *t, const struct xfer_ws_chunk *c, uint64_t *ld)
{
	const struct xfer_ws_param *p = &t->s->params[c->param];
	unsigned es = xfer_ws_dtype_size(p->dtype);
	uint64_t row0, rows;

	if (c->gather_offset != XFER_WS_NO_GATHER) {
		*ld = c->cols;
		return (const uint8_t *)t->io->gather_buf + c->gather_offset;
	}
	xfer_ws_shard_rows(t->s, c->param, t->io->rank, &row0, &rows);
	*ld = p->cols;
	return (const uint8_t *)t->io->shard[c->param] + ((c->row0 - row0) * p->cols + c->col0) * es;
}

/* Gathers: rows this rank holds for chunks other ranks own; then wait for
 * the ones owed to it and copy its own rows of its gathered chunks. */
static int run_gathers(struct trainer *t, int timeout_ms, uint64_t *bytes)
{
	const struct xfer_ws_schedule *s = t->s;
	const struct xfer_ws_trainer_rank *tr = &s->trainers[t->io->rank];
	uint64_t pack_bytes = 0, expect = 0, pos = 0;
	uint8_t *pack = NULL;
	xfer_mr *pack_mr = NULL;
	struct wctx w = { t, NULL };
	int ret = 0;

	for (uint32_t i = 0; i < tr->ngathers; i++)
		pack_bytes += s->gathers[tr->first_gather + i].bytes;
	if (pack_bytes) {
		pack = aligned_alloc(4096, (pack_bytes + 4095) & ~4095ull);
		if (!pack)
			return -ENOMEM;
		memset(pack, 0, pack_bytes);   /* faults now, not per row below */
		ret = xfer_mr_reg(t->e, pack, pack_bytes, NULL, 0, &pack_mr);
		if (ret)
			goto out;
	}
	for (uint32_t i = 0; i < tr->ngathers; i++) {
		const struct xfer_ws_gather *g = &s->gathers[tr->first_gather + i];
		const struct xfer_ws_chunk *c = &s->chunks[g->chunk];
		const struct xfer_ws_param *p = &s->params[c->param];
		unsigned es = xfer_ws_dtype_size(p->dtype);
		uint64_t row0, rows;
		const uint8_t *src;

		xfer_ws_shard_rows(s, c->param, t->io->rank, &row0, &rows);
		src = (const uint8_t *)t->io->shard[c->param] + ((g->row0 - row0) * p->cols + c->col0) * es;
		for (uint64_t r = 0; r < g->rows; r++)   /* pack the chunk's columns */
			memcpy(pack + pos + r * c->cols * es, src + r * p->cols * es, c->cols * es);
		atomic_fetch_add(&t->inflight, 1);
		struct xfer_done d = { wdone, &w };
		ret = xfer_write(t->e, pack_mr, pos, t->io->trainer_gather[c->owner], g->dst_offset,
				 g->bytes, XFER_OP_IMM, XFER_WS_IMM_GATHER, &d, NULL);
		if (ret) {
			atomic_fetch_sub(&t->inflight, 1);
			goto out;
		}
		pos += g->bytes;
		*bytes += g->bytes;
	}
	/* Own rows of chunks this rank owns and gathers. */
	for (uint32_t k = 0; k < t->nchunks; k++) {
		const struct xfer_ws_chunk *c = &s->chunks[t->first_chunk + k];
		const struct xfer_ws_param *p;
		uint64_t row0, rows, lo, hi;
		unsigned es;

		if (c->gather_offset == XFER_WS_NO_GATHER)
			continue;
		expect += c->ngathers;
		p = &s->params[c->param];
		es = xfer_ws_dtype_size(p->dtype);
		xfer_ws_shard_rows(s, c->param, t->io->rank, &row0, &rows);
		lo = c->row0 > row0 ? c->row0 : row0;
		hi = c->row0 + c->rows < row0 + rows ? c->row0 + c->rows : row0 + rows;
		for (uint64_t r = lo; r < hi; r++)
			memcpy((uint8_t *)t->io->gather_buf + c->gather_offset + (r - c->row0) * c->cols * es,
			       (const uint8_t *)t->io->shard[c->param] + ((r - row0) * p->cols + c->col0) * es,
			       c->cols * es);
	}
	if (expect)
		ret = xfer_imm_wait(t->e, XFER_WS_IMM_GATHER, expect, timeout_ms);
	/* our own gathers must have left before the pack buffer goes */
	while (!ret && atomic_load(&t->inflight)) {
		uint32_t seen = atomic_load(&t->wake);

		if (atomic_load(&t->inflight))
			ret = wait_progress(t, seen, timeout_ms);
	}
	if (!ret)
		ret = atomic_load(&t->error);
out:
	while (atomic_load(&t->inflight))   /* never free memory a write still reads */
		wait_progress(t, atomic_load(&t->wake), 100);
	if (pack_mr)
		xfer_mr_dereg(pack_mr);
	free(pack);
	return ret;
}

XFER_EXPORT int xfer_ws_exec_trainer(const struct xfer_ws_schedule *s,
				     const struct xfer_ws_trainer_io *io,
				     const struct xfer_ws_exec_attr *attr,
				     struct xfer_ws_exec_stats *st)
{
	struct xfer_ws_exec_attr a = { .size = sizeof(a) };
	struct trainer t = { 0 };
	const struct xfer_ws_trainer_rank *tr;
	struct wctx *wctx = NULL;
	uint64_t largest = 0, issued = 0, rel_target;
	uint32_t prep = 0, rel = 0;
	double t0;
	int ret = 0;

	if (!s || !io || io->size < sizeof(*io) || !io->e || io->rank >= s->ntrainers || !st)
		return -EINVAL;
	if (attr) {
		if (attr->size < sizeof(a))
			return -EINVAL;
		a = *attr;
	}
	memset(st, 0, sizeof(*st));
	tr = &s->trainers[io->rank];
	t.s = s;
	t.io = io;
	t.e = io->e;
	t.window = a.window ? a.window : DEFAULT_WINDOW;
	t.first_chunk = tr->first_chunk;
	t.nchunks = tr->nchunks;
	int timeout_ms = a.timeout_ms ? a.timeout_ms : DEFAULT_TIMEOUT_MS;

	for (uint32_t k = 0; k < t.nchunks; k++) {
		uint64_t sz = chunk_staging(&s->chunks[t.first_chunk + k]);

		if (sz > largest)
			largest = sz;
	}
	/* Preparing at first use needs peak_staging (planner); releasing in
	 * preparation order can hold up to one more chunk behind a slow one. */
	t.ring_size = a.watermark ? a.watermark : DEFAULT_WATERMARK;
	if (t.ring_size < tr->peak_staging + largest)
		t.ring_size = tr->peak_staging + largest;
	t.ring_size = (t.ring_size + 4095) & ~4095ull;
	t.cs = calloc(t.nchunks ? t.nchunks : 1, sizeof(*t.cs));
	wctx = calloc(t.nchunks ? t.nchunks : 1, sizeof(*wctx));
	t.ring = aligned_alloc(4096, t.ring_size);
	if (!t.cs || !wctx || !t.ring) {
		ret = -ENOMEM;
		goto out;
	}
	/* Staging is set up once and reused every step: touch it now, so that
	 * the pipeline does not pay first-touch page faults (they dominated it
	 * on a VM: 1 GB prepared at 0.7 GB/s instead of memcpy speed). */
	memset(t.ring, 0, t.ring_size);
	ret = xfer_mr_reg(t.e, t.ring, t.ring_size, NULL, 0, &t.ring_mr);
	if (ret)
		goto out;

	t0 = now_s();
	ret = run_gathers(&t, timeout_ms, &st->bytes_gathered);
	if (ret)
		goto out;

	/* The pipeline: prepare ahead while the ring has room, issue in order. */
	while (issued < tr->nwrites || rel < t.nchunks) {
		uint32_t seen = atomic_load(&t.wake);
		bool progress = false;

		ring_release(&t, &rel);
		while (prep < t.nchunks) {
			const struct xfer_ws_chunk *c = &s->chunks[t.first_chunk + prep];
			struct chunk_state *cs = &t.cs[prep];
			const void *src;
			uint64_t ld;

			if (!ring_alloc(&t, chunk_staging(c), &cs->off, &cs->size))
				break;
			cs->end = cs->off + chunk_staging(c);
			src = chunk_source(&t, c, &ld);
			xfer_ws_chunk_transform(s, c, src, ld, t.ring + cs->off,
						c->scale_bytes ? t.ring + cs->off +
						((c->out_bytes + 63) & ~63ull) : NULL);
			atomic_store(&cs->left, c->nwrites * (c->scale_bytes ? 2u : 1u));
			cs->prepared = true;
			wctx[prep] = (struct wctx){ &t, cs };
			prep++;
			progress = true;
		}
		while (issued < tr->nwrites && atomic_load(&t.inflight) < t.window) {
			const struct xfer_ws_write *w = &s->writes[tr->first_write + issued];
			const struct xfer_ws_chunk *c = &s->chunks[w->chunk];
			uint32_t k = w->chunk - t.first_chunk;
			struct xfer_done d = { wdone, &wctx[k] };

			if (k >= prep)
				break;   /* its chunk waits for staging */
			atomic_fetch_add(&t.inflight, 1);
			ret = xfer_write(t.e, t.ring_mr, t.cs[k].off, io->infer_buf[w->dst_rank],
					 w->dst_offset, c->out_bytes, XFER_OP_IMM, XFER_WS_IMM_DATA,
					 &d, NULL);
			if (!ret && c->scale_bytes) {
				atomic_fetch_add(&t.inflight, 1);
				ret = xfer_write(t.e, t.ring_mr,
						 t.cs[k].off + ((c->out_bytes + 63) & ~63ull),
						 io->infer_buf[w->dst_rank], w->scale_offset,
						 c->scale_bytes, XFER_OP_IMM, XFER_WS_IMM_DATA, &d, NULL);
				if (ret)
					atomic_fetch_sub(&t.inflight, 1);
			}
			if (ret) {
				atomic_fetch_sub(&t.inflight, 1);
				goto drain;
			}
			st->bytes_written += c->out_bytes + c->scale_bytes;
			st->writes++;
			issued++;
			progress = true;
		}
		if ((ret = atomic_load(&t.error)))
			goto drain;
		rel_target = rel;
		ring_release(&t, &rel);
		if (!progress && rel == rel_target && (issued < tr->nwrites || rel < t.nchunks)) {
			if (!atomic_load(&t.inflight)) {
				/* nothing in flight to free staging: the next write's
				 * chunk can never fit under this watermark */
				ret = -ENOSPC;
				goto drain;
			}
			ret = wait_progress(&t, seen, timeout_ms);
			if (ret)
				goto drain;
		}
	}
	/* Every write completed: tell every inference rank this trainer is done. */
	if (s->ninfer) {
		xfer_op *op;

		ret = xfer_barrier(t.e, io->infer_peer, s->ninfer, XFER_WS_IMM_BARRIER, NULL, &op);
		if (!ret) {
			ret = xfer_op_wait(op, timeout_ms);
			xfer_op_release(op);
		}
	}
	st->seconds = now_s() - t0;
	st->peak_staging = t.peak;
drain:
	while (atomic_load(&t.inflight))   /* never free staging a write still reads */
		wait_progress(&t, atomic_load(&t.wake), 100);
out:
	if (t.ring_mr)
		xfer_mr_dereg(t.ring_mr);
	free(t.ring);
	free(t.cs);
	free(wctx);
	return ret;
}
