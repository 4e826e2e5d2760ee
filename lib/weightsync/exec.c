/* SPDX-License-Identifier: MIT */
/*
 * The weight-sync executor (see xfer_ws_exec.h). One thread per trainer
 * rank drives the pipeline; the engine's worker does the posting and runs
 * the completion callbacks, which only count.
 *
 * This file is the trainer side; transform.c, staging.c and receive.c hold
 * the rest (exec_internal.h).
 *
 * Everything a step needs is set up once (xfer_ws_trainer_exec_create) and
 * reused by every step, as a training loop syncs the same buffers after each
 * step: the staging ring and the gather pack buffer are allocated,
 * registered and touched there, so no step pays first-touch faults or
 * registration.
 *
 * A chunk whose bytes already lie contiguous in registered memory and need
 * no transform (bf16 or f32 rows of full width, in the shard or in the gather
 * buffer) is written straight from there: staging it would only copy it.
 * The others are copied or quantised into a staging ring inside one
 * registered region; chunks are released in the order they were prepared,
 * once all their writes completed, so the ring never fragments.
 *
 * Gathers do not hold the pipeline back: chunks that need none are prepared
 * and written while gathered rows arrive, and gathered chunks are taken as
 * soon as all of this rank's gathers have landed.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "compiler.h"
#include "exec_internal.h"
#include "futex.h"
#include "struct_copy.h"

_Static_assert(XFER_WS_EXEC_ATTR_SIZE_VER0 == offsetof(struct xfer_ws_exec_attr, watermark),
	       "the exec attr's floor is size and window");
_Static_assert(XFER_WS_TRAINER_IO_SIZE_VER0 ==
	       offsetof(struct xfer_ws_trainer_io, infer_peer) + sizeof(void *), "trainer io floor");

#define DEFAULT_WINDOW 64
#define DEFAULT_WATERMARK (256ull << 20)
#define DEFAULT_TIMEOUT_MS 30000
#define GATHER_POLL_MS 1    /* gathers looked at again while nothing else is to do */
#define NO_PACK UINT64_MAX
#define MAX_THREADS 256

struct chunk_state {
	_Atomic uint32_t left;     /* writes (pieces and scales) not completed */
	uint64_t src_off;          /* direct: offset of its bytes in src_mr or gather_mr */
	struct ws_piece piece[WS_MAX_PIECES];
	uint64_t own_off;          /* a piece from the shard: its offset in src_mr */
	uint32_t npieces;
	uint64_t off, end;         /* staged: its place in the ring */
	uint64_t size;             /* ring bytes charged to it (with a skipped ring end) */
	bool direct, prepared;
};

/* The callback context: which chunk (NULL for gathers), and the executor to wake. */
struct wctx {
	struct xfer_ws_trainer_exec *x;
	struct chunk_state *cs;
};

struct xfer_ws_trainer_exec {
	const struct xfer_ws_schedule *s;
	struct xfer_ws_trainer_io io;
	xfer_engine *e;
	uint32_t window, flags;
	int timeout_ms;
	uint32_t first_chunk, nchunks;
	struct chunk_state *cs;    /* by local chunk index */
	struct wctx *wctx;         /* by local chunk index */
	struct wctx gctx;          /* gathers */
	uint32_t *seq;             /* local chunks in the order this step prepared them */
	uint32_t *plain, nplain;   /* chunks that need no gather, in the schedule's order */
	uint32_t *gath, ngath;     /* chunks that do */
	uint64_t gather_expect;    /* gathers owed to this rank per step */
	struct ws_ring ring;       /* staging */
	/* gather pack buffer: gathers whose rows are not contiguous in the shard */
	uint8_t *pack;
	xfer_mr *pack_mr;
	uint64_t *pack_off;        /* per gather this rank sends: offset in pack, or NO_PACK */
	struct ws_pool *pool;      /* transform threads, when more than one */
	_Atomic uint64_t inflight;
	_Atomic uint32_t wake;     /* futex: bumped on each completion */
	_Atomic uint32_t waiting;  /* the executor sleeps on wake: completions must wake it */
	_Atomic int error;
};

static void wdone(void *ctx, int status)
{
	struct wctx *w = ctx;
	struct xfer_ws_trainer_exec *x = w->x;

	if (status) {
		int zero = 0;

		atomic_compare_exchange_strong(&x->error, &zero, status);
	}
	if (w->cs)
		atomic_fetch_sub(&w->cs->left, 1);
	atomic_fetch_sub(&x->inflight, 1);
	atomic_fetch_add(&x->wake, 1);
	/* a wake-up is a system call per write, costly on a VM: only when the
	 * executor sleeps (it says so before it checks wake; both are seq_cst,
	 * so one of the two sees the other) */
	if (atomic_load(&x->waiting))
		xfer_futex_wake(&x->wake);
}

/* Until a completion after `seen`, or -ETIMEDOUT. A futex wait can return
 * with nothing changed (a stale wake-up at this address): only the clock
 * says the time is up. */
static int wait_progress(struct xfer_ws_trainer_exec *x, uint32_t seen, int timeout_ms)
{
	uint64_t deadline = xfer_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int ret = 0;

	atomic_store(&x->waiting, 1);
	while (atomic_load(&x->wake) == seen) {
		uint64_t now = xfer_now_ns();

		if (now >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		xfer_futex_wait(&x->wake, seen, (int64_t)(deadline - now));
	}
	atomic_store(&x->waiting, 0);
	return ret;
}

static void drain(struct xfer_ws_trainer_exec *x)
{
	while (atomic_load(&x->inflight))   /* never free or reuse memory a write still reads */
		wait_progress(x, atomic_load(&x->wake), 100);
}

/* Release prepared chunks, in preparation order, whose writes all completed;
 * *released counts those released so far this step. */
static void release_done(struct xfer_ws_trainer_exec *x, uint32_t nprepared, uint32_t *released)
{
	while (*released < nprepared && atomic_load(&x->cs[x->seq[*released]].left) == 0) {
		struct chunk_state *cs = &x->cs[x->seq[*released]];

		if (!cs->direct)
			ws_ring_release(&x->ring, cs->size, cs->end);
		(*released)++;
	}
}

/* A chunk's source rows: where they start and their stride in elements. */
static const uint8_t *chunk_source(const struct xfer_ws_trainer_exec *x,
				   const struct xfer_ws_chunk *c, uint64_t *ld)
{
	const struct xfer_ws_param *p = &x->s->params[c->param];
	unsigned es = xfer_ws_dtype_size(p->dtype);
	uint64_t row0, rows;

	if (c->gather_offset != XFER_WS_NO_GATHER) {
		*ld = c->cols;
		return (const uint8_t *)x->io.gather_buf + c->gather_offset;
	}
	xfer_ws_shard_rows(x->s, c->param, x->io.rank, &row0, &rows);
	*ld = p->cols;
	return (const uint8_t *)x->io.shard[c->param] + ((c->row0 - row0) * p->cols + c->col0) * es;
}

/* Offset of [p, p + len) inside mr, or -ERANGE if it is not all in there. */
static int64_t mr_offset(const xfer_mr *mr, const void *p, uint64_t len)
{
	const uint8_t *b = mr ? xfer_mr_addr(mr) : NULL, *q = p;
	uint64_t size = mr ? xfer_mr_len(mr) : 0;

	if (!b || q < b || (uint64_t)(q - b) > size || len > size - (uint64_t)(q - b))
		return -ERANGE;
	return q - b;
}

XFER_EXPORT void xfer_ws_trainer_exec_destroy(xfer_ws_trainer_exec *x)
{
	if (!x)
		return;
	drain(x);
	ws_pool_destroy(x->pool);
	if (x->ring.mr)
		xfer_mr_dereg(x->ring.mr);
	if (x->pack_mr)
		xfer_mr_dereg(x->pack_mr);
	free(x->ring.mem);
	free(x->pack);
	free(x->pack_off);
	free(x->cs);
	free(x->wctx);
	free(x->seq);
	free(x->plain);
	free(x->gath);
	free(x);
}

XFER_EXPORT int xfer_ws_trainer_exec_create(const struct xfer_ws_schedule *s,
					    const struct xfer_ws_trainer_io *uio,
					    const struct xfer_ws_exec_attr *attr,
					    xfer_ws_trainer_exec **out)
{
	/* our copies of the caller's structs (struct_copy.h); attr's defaults are 0 */
	struct xfer_ws_trainer_io iok = { .size = sizeof(iok) };
	const struct xfer_ws_trainer_io *io = &iok;
	struct xfer_ws_exec_attr a = { .size = sizeof(a) };
	const struct xfer_ws_trainer_rank *tr;
	struct xfer_ws_trainer_exec *x;
	uint64_t largest = 0, staged = 0, pack_bytes = 0;
	uint32_t n;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!s || !uio)
		return -EINVAL;
	ret = xfer_struct_copy_in(&iok, sizeof(iok), uio, XFER_WS_TRAINER_IO_SIZE_VER0);
	if (ret)
		return ret;
	if (!io->e || io->rank >= s->ntrainers)
		return -EINVAL;
	if (attr) {
		ret = xfer_struct_copy_in(&a, sizeof(a), attr, XFER_WS_EXEC_ATTR_SIZE_VER0);
		if (ret)
			return ret;
		if ((a.flags & ~XFER_WS_EXEC_STAGE_ALL) || a.threads > MAX_THREADS)
			return -EINVAL;
	}
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	tr = &s->trainers[io->rank];
	x->s = s;
	x->io = *io;
	x->e = io->e;
	x->window = a.window ? a.window : DEFAULT_WINDOW;
	x->flags = a.flags;
	x->timeout_ms = a.timeout_ms ? a.timeout_ms : DEFAULT_TIMEOUT_MS;
	x->first_chunk = tr->first_chunk;
	x->nchunks = tr->nchunks;
	x->gctx = (struct wctx){ x, NULL };
	n = x->nchunks ? x->nchunks : 1;
	x->cs = calloc(n, sizeof(*x->cs));
	x->wctx = calloc(n, sizeof(*x->wctx));
	x->seq = calloc(n, sizeof(*x->seq));
	x->plain = calloc(n, sizeof(*x->plain));
	x->gath = calloc(n, sizeof(*x->gath));
	x->pack_off = calloc(tr->ngathers ? tr->ngathers : 1, sizeof(*x->pack_off));
	if (!x->cs || !x->wctx || !x->seq || !x->plain || !x->gath || !x->pack_off) {
		ret = -ENOMEM;
		goto fail;
	}

	/* Per chunk: written straight from its source, or staged. */
	for (uint32_t k = 0; k < x->nchunks; k++) {
		const struct xfer_ws_chunk *c = &s->chunks[x->first_chunk + k];
		bool gathered = c->gather_offset != XFER_WS_NO_GATHER;
		uint64_t ld;
		const uint8_t *src;
		int64_t off = -ERANGE;

		x->wctx[k] = (struct wctx){ x, &x->cs[k] };
		if (gathered) {
			x->gath[x->ngath++] = k;
			x->gather_expect += c->ngathers;
		} else {
			x->plain[x->nplain++] = k;
		}
		if (!gathered && !io->shard[c->param]) {
			ret = -EINVAL;   /* the schedule says this rank holds its rows */
			goto fail;
		}
		x->cs[k].npieces = ws_chunk_pieces(s, c, x->cs[k].piece);
		/* full-width rows (ld == cols) are contiguous where they lie */
		src = chunk_source(x, c, &ld);
		if (c->transform == XFER_WS_XF_COPY && ld == c->cols && !(x->flags & XFER_WS_EXEC_STAGE_ALL))
			off = mr_offset(gathered ? io->gather_mr : io->src_mr, src, c->out_bytes);
		for (uint32_t i = 0; off >= 0 && i < x->cs[k].npieces; i++) {
			const struct ws_piece *pc = &x->cs[k].piece[i];
			unsigned es = xfer_ws_dtype_size(s->params[c->param].dtype);
			uint64_t row0, rows;
			int64_t o;

			if (!pc->own)
				continue;
			xfer_ws_shard_rows(s, c->param, io->rank, &row0, &rows);
			o = io->shard[c->param]
				? mr_offset(io->src_mr, (const uint8_t *)io->shard[c->param] +
							(c->row0 + pc->row - row0) * c->cols * es,
					    pc->rows * c->cols * es)
				: -EINVAL;
			if (o < 0) {
				ret = (int)o;   /* the schedule says this rank holds these rows */
				goto fail;
			}
			x->cs[k].own_off = (uint64_t)o;
		}
		if (off >= 0) {
			x->cs[k].direct = true;
			x->cs[k].src_off = (uint64_t)off;
			continue;
		}
		staged += ws_chunk_staging_bytes(c);
		if (ws_chunk_staging_bytes(c) > largest)
			largest = ws_chunk_staging_bytes(c);
	}

	/* Gathers this rank sends: rows of full width are contiguous in the
	 * shard and leave from there; the others are packed, once per step, into
	 * a buffer set up here. */
	for (uint32_t i = 0; i < tr->ngathers; i++) {
		const struct xfer_ws_gather *g = &s->gathers[tr->first_gather + i];
		const struct xfer_ws_chunk *c = &s->chunks[g->chunk];

		if (c->cols == s->params[c->param].cols && !(x->flags & XFER_WS_EXEC_STAGE_ALL)) {
			x->pack_off[i] = NO_PACK;
		} else {
			x->pack_off[i] = pack_bytes;
			pack_bytes += (g->bytes + 63) & ~63ull;
		}
	}
	if (pack_bytes) {
		x->pack = xfer_host_alloc(pack_bytes);   /* faulted now, not in a step */
		if (!x->pack) {
			ret = -ENOMEM;
			goto fail;
		}
		ret = xfer_mr_reg(x->e, x->pack, pack_bytes, NULL, 0, &x->pack_mr);
		if (ret)
			goto fail;
	}

	/* The staging ring: preparing at first use needs peak_staging
	 * (planner); releasing in preparation order can hold up to one more
	 * chunk behind a slow one. Never more than all staged chunks. */
	if (staged) {
		struct ws_ring *r = &x->ring;

		r->size = a.watermark ? a.watermark : DEFAULT_WATERMARK;
		if (r->size < tr->peak_staging + largest)
			r->size = tr->peak_staging + largest;
		if (r->size > staged)
			r->size = staged;
		if (r->size < largest)
			r->size = largest;
		r->size = (r->size + 4095) & ~4095ull;
		/* touched now: first-touch faults dominated the pipeline on a VM
		 * (1 GB prepared at 0.7 GB/s instead of memcpy speed) */
		r->mem = xfer_host_alloc(r->size);
		if (!r->mem) {
			ret = -ENOMEM;
			goto fail;
		}
		ret = xfer_mr_reg(x->e, r->mem, r->size, NULL, 0, &r->mr);
		if (ret)
			goto fail;
		if (a.threads > 1) {
			ret = ws_pool_create(a.threads, &x->pool);
			if (ret)
				goto fail;
		}
	}
	*out = x;
	return 0;
fail:
	xfer_ws_trainer_exec_destroy(x);
	return ret;
}

/* Post this rank's gathers and copy its own rows of the chunks it gathers. */
static int send_gathers(struct xfer_ws_trainer_exec *x, uint64_t *bytes)
{
	const struct xfer_ws_schedule *s = x->s;
	const struct xfer_ws_trainer_rank *tr = &s->trainers[x->io.rank];
	struct xfer_done d = { wdone, &x->gctx };

	for (uint32_t i = 0; i < tr->ngathers; i++) {
		const struct xfer_ws_gather *g = &s->gathers[tr->first_gather + i];
		const struct xfer_ws_chunk *c = &s->chunks[g->chunk];
		const struct xfer_ws_param *p = &s->params[c->param];
		unsigned es = xfer_ws_dtype_size(p->dtype);
		uint64_t row0, rows, off;
		const uint8_t *src;
		xfer_mr *mr;
		int ret;

		xfer_ws_shard_rows(s, c->param, x->io.rank, &row0, &rows);
		src = (const uint8_t *)x->io.shard[c->param] + ((g->row0 - row0) * p->cols + c->col0) * es;
		if (x->pack_off[i] == NO_PACK) {
			int64_t o = mr_offset(x->io.src_mr, src, g->bytes);

			if (o < 0)
				return (int)o;
			mr = x->io.src_mr;
			off = (uint64_t)o;
		} else {
			for (uint64_t r = 0; r < g->rows; r++)   /* pack the chunk's columns */
				memcpy(x->pack + x->pack_off[i] + r * c->cols * es,
				       src + r * p->cols * es, c->cols * es);
			mr = x->pack_mr;
			off = x->pack_off[i];
		}
		atomic_fetch_add(&x->inflight, 1);
		ret = xfer_write(x->e, mr, off, x->io.trainer_gather[c->owner], g->dst_offset,
				 g->bytes, XFER_OP_IMM, XFER_WS_IMM_GATHER, &d, NULL);
		if (ret) {
			atomic_fetch_sub(&x->inflight, 1);
			return ret;
		}
		*bytes += g->bytes;
	}
	/* Own rows of chunks this rank owns and gathers, where the chunk is
	 * prepared (or written) from the gather buffer as a whole. */
	for (uint32_t j = 0; j < x->ngath; j++) {
		const struct xfer_ws_chunk *c = &s->chunks[x->first_chunk + x->gath[j]];
		const struct xfer_ws_param *p = &s->params[c->param];
		unsigned es = xfer_ws_dtype_size(p->dtype);
		uint64_t row0, rows, lo, hi;

		if (x->cs[x->gath[j]].direct && x->cs[x->gath[j]].npieces > 1)
			continue;   /* its own rows leave from the shard */

		xfer_ws_shard_rows(s, c->param, x->io.rank, &row0, &rows);
		lo = c->row0 > row0 ? c->row0 : row0;
		hi = c->row0 + c->rows < row0 + rows ? c->row0 + c->rows : row0 + rows;
		for (uint64_t r = lo; r < hi; r++)
			memcpy((uint8_t *)x->io.gather_buf + c->gather_offset + (r - c->row0) * c->cols * es,
			       (const uint8_t *)x->io.shard[c->param] + ((r - row0) * p->cols + c->col0) * es,
			       c->cols * es);
	}
	return 0;
}

/* Prepare local chunk k: staged (copy or quantise into the ring) or direct.
 * false if the ring has no room for it now. */
static bool prepare(struct xfer_ws_trainer_exec *x, uint32_t k, struct xfer_ws_exec_stats *st)
{
	const struct xfer_ws_chunk *c = &x->s->chunks[x->first_chunk + k];
	struct chunk_state *cs = &x->cs[k];

	if (!cs->direct) {
		uint64_t size = ws_chunk_staging_bytes(c), ld;
		const uint8_t *src;
		uint8_t *out;
		double t0;

		if (!ws_ring_reserve(&x->ring, size, &cs->off, &cs->size))
			return false;
		cs->end = cs->off + size;
		src = chunk_source(x, c, &ld);
		out = x->ring.mem + cs->off;
		t0 = xfer_now_s();
		ws_transform_chunk(x->pool, x->s, c, src, ld, out,
				   c->scale_bytes ? (float *)(out + ws_chunk_scales_offset(c)) : NULL);
		st->prepare_s += xfer_now_s() - t0;
		st->bytes_staged += size;
	}
	atomic_store(&cs->left, c->nwrites * (cs->npieces + (c->scale_bytes ? 1u : 0u)));
	cs->prepared = true;
	return true;
}

/* Post write j (0-based, in issue order) of local chunk k: its pieces,
 * then its scales. */
static int issue(struct xfer_ws_trainer_exec *x, uint32_t k, uint32_t j, struct xfer_ws_exec_stats *st)
{
	const struct xfer_ws_schedule *s = x->s;
	const struct xfer_ws_chunk *c = &s->chunks[x->first_chunk + k];
	const struct xfer_ws_write *w = &s->writes[s->writes_by_chunk[c->first_write + j]];
	struct chunk_state *cs = &x->cs[k];
	struct xfer_done d = { wdone, &x->wctx[k] };
	xfer_rmr *dst = x->io.infer_buf[w->dst_rank];
	uint64_t row_bytes = c->out_bytes / (c->rows ? c->rows : 1);
	xfer_mr *mr = x->ring.mr;
	uint64_t off = cs->off;
	uint32_t posted = 0, total = cs->npieces + (c->scale_bytes ? 1u : 0u);
	int ret = 0;

	if (cs->direct) {
		mr = c->gather_offset != XFER_WS_NO_GATHER ? x->io.gather_mr : x->io.src_mr;
		off = cs->src_off;
	}
	for (; posted < total; posted++) {
		xfer_mr *m = mr;
		uint64_t from, to, len;

		if (posted < cs->npieces) {
			const struct ws_piece *pc = &cs->piece[posted];
			uint64_t at = pc->row * row_bytes;

			len = pc->rows * row_bytes;
			from = off + at;
			to = w->dst_offset + at;
			if (pc->own && cs->direct) {
				m = x->io.src_mr;
				from = cs->own_off;
			}
		} else {   /* fp8 scales: fp8 chunks are always staged */
			m = x->ring.mr;
			from = cs->off + ws_chunk_scales_offset(c);
			to = w->scale_offset;
			len = c->scale_bytes;
		}
		atomic_fetch_add(&x->inflight, 1);
		ret = xfer_write(x->e, m, from, dst, to, len, XFER_OP_IMM, XFER_WS_IMM_DATA, &d, NULL);
		if (ret) {
			atomic_fetch_sub(&x->inflight, 1);
			break;
		}
	}
	if (ret) {
		/* what is out completes through its callbacks; the rest never will */
		atomic_fetch_sub(&cs->left, total - posted);
		return ret;
	}
	st->bytes_written += c->out_bytes + c->scale_bytes;
	st->writes++;
	return 0;
}

XFER_EXPORT int xfer_ws_trainer_exec_step(xfer_ws_trainer_exec *x, struct xfer_ws_exec_stats *st)
{
	const struct xfer_ws_schedule *s;
	/* Cursors of the pipeline, each over this rank's chunks. Preparing
	 * takes from two lists, merged: */
	uint32_t next_plain = 0;    /* x->plain[]: next chunk needing no gather to prepare */
	uint32_t next_gathered = 0; /* x->gath[]: next gathered chunk to prepare */
	/* and appends to x->seq[], which issuing and releasing follow: */
	uint32_t nprepared = 0;     /* chunks prepared: x->seq[0 .. nprepared) */
	uint32_t nreleased = 0;     /* of those, released (all writes completed) */
	uint32_t issuing = 0;       /* x->seq[issuing]: the chunk whose writes are being posted */
	uint32_t nissued = 0;       /* writes of that chunk posted so far */
	bool gathers_in;
	double t0;
	int ret;

	if (!x || !st)
		return -EINVAL;
	s = x->s;
	memset(st, 0, sizeof(*st));
	ws_ring_reset(&x->ring);
	atomic_store(&x->error, 0);
	for (uint32_t k = 0; k < x->nchunks; k++) {
		x->cs[k].prepared = false;
		atomic_store(&x->cs[k].left, 0);
	}
	gathers_in = x->gather_expect == 0;

	t0 = xfer_now_s();
	ret = send_gathers(x, &st->bytes_gathered);
	if (ret)
		goto drain;

	/* The pipeline: prepare ahead while the ring has room (chunks that need
	 * no gather first, until the gathers are in), issue in preparation order. */
	while (issuing < x->nchunks || nreleased < x->nchunks) {
		uint32_t seen = atomic_load(&x->wake);
		bool progress = false, want_gathers = false;

		if (!gathers_in && xfer_imm_count(x->e, XFER_WS_IMM_GATHER) >= x->gather_expect) {
			/* all here: consume them (returns at once) */
			ret = xfer_imm_wait(x->e, XFER_WS_IMM_GATHER, x->gather_expect, x->timeout_ms);
			if (ret)
				goto drain;
			gathers_in = true;
			st->gather_s = xfer_now_s() - t0;
		}
		release_done(x, nprepared, &nreleased);
		while (nprepared < x->nchunks) {
			uint32_t k;
			bool take_g = next_gathered < x->ngath && gathers_in &&
				      (next_plain == x->nplain || x->gath[next_gathered] < x->plain[next_plain]);

			if (take_g)
				k = x->gath[next_gathered];
			else if (next_plain < x->nplain)
				k = x->plain[next_plain];
			else {
				want_gathers = true;   /* only gathered chunks are left */
				break;
			}
			if (!prepare(x, k, st))
				break;
			x->seq[nprepared++] = k;
			if (take_g)
				next_gathered++;
			else
				next_plain++;
			progress = true;
		}
		while (issuing < nprepared && atomic_load(&x->inflight) < x->window) {
			const struct xfer_ws_chunk *c = &s->chunks[x->first_chunk + x->seq[issuing]];

			if (nissued < c->nwrites) {
				ret = issue(x, x->seq[issuing], nissued, st);
				if (ret)
					goto drain;
				nissued++;
				progress = true;
			}
			if (nissued == c->nwrites) {
				issuing++;
				nissued = 0;
			}
		}
		if ((ret = atomic_load(&x->error)))
			goto drain;
		/* read before releasing: a write completing between a release
		 * that found nothing and a later look at inflight would leave
		 * staging held with nothing in flight (a false -ENOSPC below) */
		uint64_t inflight = atomic_load(&x->inflight);
		uint32_t nreleased0 = nreleased;

		release_done(x, nprepared, &nreleased);
		if (progress || nreleased != nreleased0 || (issuing == x->nchunks && nreleased == x->nchunks))
			continue;
		double tw = xfer_now_s();

		if (want_gathers && !gathers_in) {
			/* all that is left waits for the gathers: block on them, or
			 * look again shortly while this rank's writes complete */
			if (!inflight) {
				ret = xfer_imm_wait(x->e, XFER_WS_IMM_GATHER, x->gather_expect,
						    x->timeout_ms);
				if (!ret) {
					gathers_in = true;
					st->gather_s = xfer_now_s() - t0;
				}
			} else {
				wait_progress(x, seen, GATHER_POLL_MS);
			}
		} else if (!inflight) {
			/* nothing was in flight, and releasing freed nothing: the
			 * next chunk can never fit under this watermark */
			ret = -ENOSPC;
		} else {
			ret = wait_progress(x, seen, x->timeout_ms);
		}
		st->wait_s += xfer_now_s() - tw;
		if (ret)
			goto drain;
	}
	/* Every write completed: tell every inference rank this trainer is done. */
	if (s->ninfer) {
		xfer_op *op;

		ret = xfer_barrier(x->e, x->io.infer_peer, s->ninfer, XFER_WS_IMM_BARRIER, NULL, &op);
		if (!ret) {
			double tw = xfer_now_s();

			ret = xfer_op_wait(op, x->timeout_ms);
			st->wait_s += xfer_now_s() - tw;
			xfer_op_release(op);
		}
	}
	st->seconds = xfer_now_s() - t0;
	st->peak_staging = x->ring.peak;
drain:
	drain(x);
	if (!ret)
		ret = atomic_load(&x->error);
	return ret;
}

XFER_EXPORT int xfer_ws_exec_trainer(const struct xfer_ws_schedule *s,
				     const struct xfer_ws_trainer_io *io,
				     const struct xfer_ws_exec_attr *attr,
				     struct xfer_ws_exec_stats *st)
{
	xfer_ws_trainer_exec *x;
	int ret;

	if (!st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	ret = xfer_ws_trainer_exec_create(s, io, attr, &x);
	if (ret)
		return ret;
	ret = xfer_ws_trainer_exec_step(x, st);
	xfer_ws_trainer_exec_destroy(x);
	return ret;
}