/* SPDX-License-Identifier: MIT */
/*
 * Operation submission (any thread) and handles. Every argument is checked
 * here, before anything reaches the worker: a write that would fall outside
 * its local or remote region is refused with -ERANGE and nothing is posted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "struct_copy.h"

_Static_assert(XFER_PAGED_SIZE_VER0 == offsetof(struct xfer_paged, src_stride),
	       "xfer_paged's floor ends with page_size");

/* ---- lifetime ------------------------------------------------------ */

/* op->state, the handle's futex word */
enum { OP_RUNNING = 0, OP_DONE = 1, OP_WAITED = 2 /* running, a thread sleeps on it */ };

static struct xfer_op *op_new(xfer_engine *e, size_t targets, size_t pages)
{
	size_t sz = sizeof(struct xfer_op);
	size_t toff, roff, poff;
	struct xfer_op *op;

	toff = sz;
	sz += targets * sizeof(struct xfer_target);
	roff = sz;
	sz += targets * sizeof(struct xfer_rmr);
	poff = sz;
	sz += pages * 2 * sizeof(uint32_t);
	op = calloc(1, sz);
	if (!op)
		return NULL;
	op->e = e;
	op->qn.kind = QNODE_OP;
	op->num_targets = (uint32_t)targets;
	op->targets = (struct xfer_target *)((char *)op + toff);
	for (size_t i = 0; i < targets; i++)
		op->targets[i].dst = (struct xfer_rmr *)((char *)op + roff) + i;
	op->pages = pages ? (uint32_t *)((char *)op + poff) : NULL;
	return op;
}

void xfer_op_put(struct xfer_op *op)
{
	if (atomic_fetch_sub_explicit(&op->refs, 1, memory_order_acq_rel) == 1)
		free(op);
}

void xfer_op_finish(struct xfer_op *op, int status)
{
	if (op->finished)
		return;
	op->finished = true;
	op->status = status;
	/* Nothing of it in flight (and, finished, nothing more to post): the
	 * source is free before the caller hears, so that a caller may
	 * deregister it right after the completion. */
	if (op->pieces_inflight == 0)
		xfer_op_unhold(op);
	if (op->done.fn)
		op->done.fn(op->done.ctx, status);
	/* A wake-up is a system call on the worker's path: only when a thread
	 * sleeps on the handle (it set OP_WAITED first). */
	if (atomic_exchange_explicit(&op->state, OP_DONE, memory_order_acq_rel) == OP_WAITED)
		xfer_futex_wake(&op->state);
}

void xfer_live_add(xfer_engine *e, struct xfer_op *op)
{
	op->live = true;
	op->lprev = NULL;
	op->lnext = e->live;
	if (e->live)
		e->live->lprev = op;
	e->live = op;
}

void xfer_op_unhold(struct xfer_op *op)
{
	if (op->src_held) {
		op->src_held = false;
		atomic_fetch_sub_explicit(&((struct xfer_mr *)op->src)->users, 1, memory_order_release);
	}
}

/* The worker lets go of an op only when it is finished and nothing of it is
 * in flight: its source region is free to go from then on. */
void xfer_live_drop(xfer_engine *e, struct xfer_op *op)
{
	if (!op->live)
		return;
	xfer_op_unhold(op);
	op->live = false;
	if (op->lprev)
		op->lprev->lnext = op->lnext;
	else
		e->live = op->lnext;
	if (op->lnext)
		op->lnext->lprev = op->lprev;
	xfer_op_put(op);
}

struct xfer_op *xfer_live_first(xfer_engine *e)
{
	return e->live;
}

struct xfer_op *xfer_live_next(struct xfer_op *op)
{
	return op->lnext;
}

static int submit(xfer_engine *e, struct xfer_op *op, const struct xfer_done *done,
		  xfer_op **user)
{
	if (done)
		op->done = *done;
	op->user_handle = user != NULL;
	atomic_store(&op->refs, user ? 2 : 1);
	if (user)
		*user = op;
	/* A use of the source region, so that xfer_mr_dereg refuses while the
	 * worker may still read it or hold its NIC registration in a post. */
	if (op->src) {
		atomic_fetch_add_explicit(&((struct xfer_mr *)op->src)->users, 1,
					  memory_order_relaxed);
		op->src_held = true;
	}
	if (xfer_worker_self == e) {
		xfer_worker_submit(e, op);   /* from a callback: no queue hop */
		return 0;
	}
	if (atomic_load_explicit(&e->stopping, memory_order_relaxed)) {
		if (user)
			*user = NULL;
		xfer_op_unhold(op);
		free(op);
		return -ECANCELED;
	}
	xfer_mpsc_push(&e->q, &op->qn);
	xfer_engine_kick(e);
	return 0;
}

/* ---- checks ---------------------------------------------------------- */

static bool range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

static int check_peer(xfer_engine *e, uint32_t peer)
{
	if (peer >= XFER_MAX_PEERS || !e->peers[peer].used)
		return -EINVAL;
	return atomic_load(&e->peers[peer].status) ? -ENOTCONN : 0;
}

static int check_rmr(xfer_engine *e, const xfer_rmr *r)
{
	if (!r || r->e != e)
		return -EINVAL;
	return check_peer(e, r->peer);
}

/* Pieces and immediate mode for one destination of `len` bytes. */
static void plan_target(xfer_engine *e, struct xfer_target *t, uint64_t len, uint64_t chunk,
			bool imm, uint32_t imm_value)
{
	uint64_t n = len ? (len + chunk - 1) / chunk : 0;

	t->num_pieces = (uint32_t)n;
	t->data_left = (uint32_t)n;
	t->imm = imm_value;
	if (!imm)
		t->imm_mode = IMM_NONE;
	else
		t->imm_mode = n == 1 ? IMM_ATTACHED : IMM_AFTER;
	(void)e;
}

/* ---- operations -------------------------------------------------------- */

XFER_EXPORT int xfer_write(xfer_engine *e, xfer_mr *src, uint64_t src_off, xfer_rmr *dst,
			   uint64_t dst_off, uint64_t len, uint32_t flags, uint32_t imm,
			   const struct xfer_done *done, xfer_op **user)
{
	struct xfer_op *op;
	uint64_t chunk;
	int ret;

	if (user)
		*user = NULL;
	if (!e || !src || src->e != e || (flags & ~XFER_OP_IMM) || (!len && !(flags & XFER_OP_IMM)))
		return -EINVAL;
	ret = check_rmr(e, dst);
	if (ret)
		return ret;
	if (!range_ok(src_off, len, src->len) || !range_ok(dst_off, len, dst->d.len))
		return -ERANGE;
	op = op_new(e, 1, 0);
	if (!op)
		return -ENOMEM;
	op->kind = OP_WRITE;
	op->src = src;
	op->src_off = src_off;
	op->dst_off = dst_off;
	op->len = len;
	op->imm = flags & XFER_OP_IMM;
	/* Striping: one piece per rail for large writes, rounded to 4 KiB. */
	chunk = len;
	if (len >= e->stripe_threshold && e->num_rails > 1)
		chunk = ((len + e->num_rails - 1) / e->num_rails + 4095) & ~4095ull;
	if (chunk > e->max_msg)
		chunk = e->max_msg;
	if (!chunk)
		chunk = 1;
	op->chunk = chunk;
	*(struct xfer_rmr *)op->targets[0].dst = *dst;
	op->targets[0].peer = dst->peer;
	plan_target(e, &op->targets[0], len, chunk, op->imm, imm);
	op->pieces_total = op->targets[0].num_pieces;
	return submit(e, op, done, user);
}

XFER_EXPORT int xfer_imm(xfer_engine *e, uint32_t peer, uint32_t imm, const struct xfer_done *done,
			 xfer_op **user)
{
	return xfer_barrier(e, &peer, 1, imm, done, user);
}

XFER_EXPORT int xfer_barrier(xfer_engine *e, const uint32_t *peers, uint32_t num_peers,
			     uint32_t imm, const struct xfer_done *done, xfer_op **user)
{
	struct xfer_op *op;
	int ret;

	if (user)
		*user = NULL;
	if (!e || !peers || !num_peers || num_peers > XFER_MAX_PEERS)
		return -EINVAL;
	for (uint32_t i = 0; i < num_peers; i++) {
		ret = check_peer(e, peers[i]);
		if (ret)
			return ret;
	}
	op = op_new(e, num_peers, 0);
	if (!op)
		return -ENOMEM;
	op->kind = OP_IMM;
	op->imm = true;
	for (uint32_t i = 0; i < num_peers; i++) {
		op->targets[i].peer = peers[i];
		op->targets[i].imm = imm;
		op->targets[i].imm_mode = IMM_AFTER;   /* no data: due at once */
	}
	return submit(e, op, done, user);
}

XFER_EXPORT int xfer_write_paged(xfer_engine *e, const struct xfer_paged *pin,
				 const struct xfer_done *done, xfer_op **user)
{
	struct xfer_paged p = { .size = sizeof(p) };   /* strides, offsets: 0 */
	struct xfer_op *op;
	int ret;

	if (user)
		*user = NULL;
	if (!e || !pin)
		return -EINVAL;
	ret = xfer_struct_copy_in(&p, sizeof(p), pin, XFER_PAGED_SIZE_VER0);
	if (ret)
		return ret;
	if (!p.src || p.src->e != e || (p.flags & ~XFER_OP_IMM) || !p.num_pages ||
	    !p.src_pages || !p.dst_pages || !p.page_size)
		return -EINVAL;
	ret = check_rmr(e, p.dst);
	if (ret)
		return ret;
	if (!p.src_stride)
		p.src_stride = p.page_size;
	if (!p.dst_stride)
		p.dst_stride = p.page_size;
	if (p.page_size > e->max_msg)
		return -EINVAL;
	for (uint32_t i = 0; i < p.num_pages; i++) {
		uint64_t so, doff;

		if (__builtin_mul_overflow((uint64_t)p.src_pages[i], p.src_stride, &so) ||
		    __builtin_add_overflow(so, p.src_offset, &so) ||
		    __builtin_mul_overflow((uint64_t)p.dst_pages[i], p.dst_stride, &doff) ||
		    __builtin_add_overflow(doff, p.dst_offset, &doff) ||
		    !range_ok(so, p.page_size, p.src->len) || !range_ok(doff, p.page_size, p.dst->d.len))
			return -ERANGE;
	}
	op = op_new(e, 1, p.num_pages);
	if (!op)
		return -ENOMEM;
	op->kind = OP_PAGED;
	op->src = p.src;
	op->imm = p.flags & XFER_OP_IMM;
	memcpy(op->pages, p.src_pages, p.num_pages * sizeof(uint32_t));
	memcpy(op->pages + p.num_pages, p.dst_pages, p.num_pages * sizeof(uint32_t));
	p.src_pages = p.dst_pages = NULL;
	op->paged = p;
	*(struct xfer_rmr *)op->targets[0].dst = *p.dst;
	op->paged.dst = NULL;
	op->targets[0].peer = p.dst->peer;
	plan_target(e, &op->targets[0], (uint64_t)p.num_pages, 1, op->imm, p.imm);
	op->pieces_total = p.num_pages;
	return submit(e, op, done, user);
}

/* A scatter; each destination's flags and immediate are flags[i] and
 * imms[i] when the arrays are given, else `flag` and `imm` for all. */
static int scatter(xfer_engine *e, xfer_mr *src, const struct xfer_scatter_dst *dsts,
		   uint32_t num_dsts, uint32_t flag, uint32_t imm, const uint32_t *flags,
		   const uint32_t *imms, const struct xfer_done *done, xfer_op **user)
{
	struct xfer_op *op;
	uint64_t total = 0;
	uint32_t any = 0;
	int ret;

	if (user)
		*user = NULL;
	if (!e || !src || src->e != e || !dsts || !num_dsts || num_dsts > (1u << 20) ||
	    (!flags && (flag & ~XFER_OP_IMM)))
		return -EINVAL;
	for (uint32_t i = 0; i < num_dsts; i++) {
		uint32_t f = flags ? flags[i] : flag;

		if (f & ~XFER_OP_IMM)
			return -EINVAL;
		any |= f;
		ret = check_rmr(e, dsts[i].dst);
		if (ret)
			return ret;
		if (!dsts[i].len && !(f & XFER_OP_IMM))
			return -EINVAL;
		if (!range_ok(dsts[i].src_off, dsts[i].len, src->len) ||
		    !range_ok(dsts[i].dst_off, dsts[i].len, dsts[i].dst->d.len))
			return -ERANGE;
	}
	op = op_new(e, num_dsts, 0);
	if (!op)
		return -ENOMEM;
	op->kind = OP_SCATTER;
	op->src = src;
	op->imm = any & XFER_OP_IMM;
	for (uint32_t i = 0; i < num_dsts; i++) {
		struct xfer_target *t = &op->targets[i];

		*(struct xfer_rmr *)t->dst = *dsts[i].dst;
		t->peer = dsts[i].dst->peer;
		t->src_off = dsts[i].src_off;
		t->dst_off = dsts[i].dst_off;
		t->len = dsts[i].len;
		t->first_piece = (uint32_t)total;
		plan_target(e, t, t->len, e->max_msg, (flags ? flags[i] : flag) & XFER_OP_IMM,
			    imms ? imms[i] : imm);
		total += t->num_pieces;
	}
	op->pieces_total = total;
	return submit(e, op, done, user);
}

XFER_EXPORT int xfer_scatter(xfer_engine *e, xfer_mr *src, const struct xfer_scatter_dst *dsts,
			     uint32_t num_dsts, uint32_t flags, uint32_t imm,
			     const struct xfer_done *done, xfer_op **user)
{
	return scatter(e, src, dsts, num_dsts, flags, imm, NULL, NULL, done, user);
}

int xfer_scatter_each(xfer_engine *e, xfer_mr *src, const struct xfer_scatter_dst *dsts,
		      uint32_t num_dsts, const uint32_t *flags, const uint32_t *imms,
		      const struct xfer_done *done, xfer_op **user)
{
	if (!flags || !imms) {
		if (user)
			*user = NULL;
		return -EINVAL;
	}
	return scatter(e, src, dsts, num_dsts, 0, 0, flags, imms, done, user);
}

/* ---- handles ------------------------------------------------------------ */

XFER_EXPORT int xfer_op_test(xfer_op *op)
{
	if (!op)
		return -EINVAL;
	if (atomic_load_explicit(&op->state, memory_order_acquire) != OP_DONE)
		return -EINPROGRESS;
	return op->status;
}

XFER_EXPORT int xfer_op_wait(xfer_op *op, int timeout_ms)
{
	uint64_t deadline = 0;

	if (!op)
		return -EINVAL;
	if (timeout_ms >= 0)
		deadline = xfer_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		uint32_t st = atomic_load_explicit(&op->state, memory_order_acquire);
		int64_t left = -1;

		if (st == OP_DONE)
			break;
		if (timeout_ms >= 0) {
			uint64_t now = xfer_now_ns();

			if (now >= deadline)
				return -ETIMEDOUT;
			left = (int64_t)(deadline - now);
		}
		/* Say that someone sleeps here before sleeping: the finisher
		 * wakes only then. A lost race re-reads the state. */
		if (st == OP_RUNNING &&
		    !atomic_compare_exchange_strong_explicit(&op->state, &st, OP_WAITED,
							     memory_order_acq_rel,
							     memory_order_acquire))
			continue;
		xfer_futex_wait(&op->state, OP_WAITED, left);
	}
	return op->status;
}

XFER_EXPORT void xfer_op_release(xfer_op *op)
{
	if (op)
		xfer_op_put(op);
}
