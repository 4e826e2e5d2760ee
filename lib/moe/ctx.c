/* SPDX-License-Identifier: MIT */
/*
 * The MoE context: its buffers, their registration with the engine, and
 * its end. The layout of the buffers is in ctx.h; what moves through them,
 * in layer.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "ctx.h"

#define MOE_MAP_MAX (1ull << 46)   /* 64 TiB: far past any sane context */

static uint64_t round64(uint64_t v)
{
	return (v + 63) & ~63ull;
}

/* Anonymous memory, reserved but not committed: decode buffers are sized
 * for the worst case (every token to one rank), and only the pages records
 * touch ever become resident. */
void *moe_map(size_t bytes, size_t *mapped)
{
	size_t pg = 4096, len = (bytes + pg - 1) & ~(pg - 1);
	void *p;

	if (!len)
		len = pg;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*mapped = len;
	return p;
}

static void unmap(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

/* a * b (+ c), or false when it passes MOE_MAP_MAX. */
static bool size_of(uint64_t a, uint64_t b, uint64_t c, uint64_t *out)
{
	uint64_t v;

	if (__builtin_mul_overflow(a, b, &v) || __builtin_add_overflow(v, c, &v) || v > MOE_MAP_MAX)
		return false;
	*out = v;
	return true;
}

static int sizes(struct xfer_moe *m)
{
	const struct xfer_moe_layout *l = &m->l;
	uint64_t R = m->R, per_rank = l->block_records, tk = 0, cb = 0;
	bool ok = true;

	ok &= size_of(l->max_tokens, l->top_k, 0, &tk);
	if (!m->prefill) {
		ok &= size_of(R, l->block_bytes, 0, &m->send_slot);
		m->recv_slot = m->send_slot;
		ok &= size_of(per_rank, l->combine_bytes, MOE_CHDR_BYTES, &cb);
		m->cblock = round64(cb);
		ok &= size_of(R, m->cblock, 0, &m->back_slot);
		m->out_slot = m->back_slot;
		ok &= size_of(l->local_experts, l->expert_rows, 0, &m->xrows);
	} else {
		ok &= size_of(tk, l->record_bytes, 0, &m->send_slot);
		ok &= size_of(R * per_rank, l->record_bytes, 0, &m->recv_slot);
		ok &= size_of(tk, l->combine_bytes, 0, &m->back_slot);
		ok &= size_of(R * per_rank, l->combine_bytes, 0, &m->out_slot);
		m->row_bytes = round64(MOE_CHDR_BYTES + 4ull * l->num_experts);
		m->rows_slot = (R + 1) * m->row_bytes;
		m->xrows = R * per_rank;
	}
	m->send_slot = round64(m->send_slot);
	m->recv_slot = round64(m->recv_slot);
	m->back_slot = round64(m->back_slot);
	m->out_slot = round64(m->out_slot);
	ok &= size_of(m->xrows, l->token_bytes + 2ull * l->hidden + 4ull * l->scales + 16, 0, &cb);
	if (!ok) {
		moe_error("buffers for R=%u, T=%u, K=%u, H=%u would pass %llu bytes", m->R,
			  l->max_tokens, l->top_k, l->hidden, (unsigned long long)MOE_MAP_MAX);
		return -ENOMEM;
	}
	return 0;
}

static int reg(struct xfer_moe *m, void *p, size_t len, uint32_t flags, xfer_mr **out,
	       const char *what)
{
	int ret = xfer_mr_reg(m->e, p, len, NULL, flags, out);

	if (ret)
		moe_error("registering the %s buffer (%zu bytes): %s", what, len, xfer_strerror(ret));
	return ret;
}

static int slot_alloc(struct xfer_moe *m, struct moe_slot *s)
{
	uint64_t R = m->R, L = m->L, tk = (uint64_t)m->l.max_tokens * m->l.top_k;

	s->topk = calloc(tk, sizeof(*s->topk));
	s->pos = calloc(tk, sizeof(*s->pos));
	s->sent = calloc(R * L, sizeof(*s->sent));
	s->got = calloc(R * L, sizeof(*s->got));
	s->send_off = calloc(R, sizeof(*s->send_off));
	s->recv_off = calloc(R, sizeof(*s->recv_off));
	s->back_at = calloc(R, sizeof(*s->back_at));
	s->rows_all = m->prefill ? calloc(R * m->l.num_experts, sizeof(*s->rows_all)) : NULL;
	s->count = calloc(L, sizeof(*s->count));
	s->offset = calloc(L, sizeof(*s->offset));
	s->dispatch.rows = calloc(R, sizeof(*s->dispatch.rows));
	s->combine.rows = calloc(R, sizeof(*s->combine.rows));
	s->counts.rows = m->prefill ? calloc(R, sizeof(*s->counts.rows)) : NULL;
	if (!s->topk || !s->pos || !s->sent || !s->got || !s->send_off || !s->recv_off ||
	    !s->back_at || (m->prefill && (!s->rows_all || !s->counts.rows)) || !s->count ||
	    !s->offset || !s->dispatch.rows || !s->combine.rows) {
		moe_error("out of memory for a slot's tables (T=%u, K=%u, R=%u)", m->l.max_tokens,
			  m->l.top_k, m->R);
		return -ENOMEM;
	}
	/* Decode rows of expert e start at e * R * T (DeepEP's shape). */
	if (!m->prefill)
		for (uint32_t e = 0; e < L; e++)
			s->offset[e] = (uint64_t)e * m->l.expert_rows;
	return 0;
}

void moe_slot_free(struct moe_slot *s)
{
	free(s->topk);
	free(s->pos);
	free(s->sent);
	free(s->got);
	free(s->send_off);
	free(s->recv_off);
	free(s->back_at);
	free(s->rows_all);
	free(s->count);
	free(s->offset);
	free(s->dispatch.rows);
	free(s->combine.rows);
	free(s->counts.rows);
}

XFER_EXPORT int xfer_moe_create(xfer_engine *e, const struct xfer_moe_attr *ua, xfer_moe **out)
{
	struct xfer_moe *m;
	int ret;

	moe_error_clear();
	if (!out) {
		moe_error("out is NULL");
		return -EINVAL;
	}
	*out = NULL;
	if (!e) {
		moe_error("engine is NULL");
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		moe_error("out of memory");
		return -ENOMEM;
	}
	m->e = e;
	ret = moe_attr_read(ua, &m->a);
	if (!ret)
		ret = xfer_moe_layout_get(&m->a, &m->l);
	if (ret)
		goto fail;
	m->R = m->l.world_size;
	m->L = m->l.local_experts;
	m->me = m->l.rank;
	m->prefill = m->a.flags & XFER_MOE_F_PREFILL;
	ret = sizes(m);
	if (ret)
		goto fail;

	ret = -ENOMEM;
	m->send = moe_map(2 * m->send_slot, &m->send_map);
	m->recv = moe_map(2 * m->recv_slot, &m->recv_map);
	m->comb = moe_map(2 * (m->back_slot + m->out_slot), &m->comb_map);
	m->x = moe_map(2 * m->xrows * m->l.token_bytes, &m->x_map);
	m->hdrs = moe_map(2 * m->xrows * sizeof(*m->hdrs), &m->hdrs_map);
	m->y = moe_map(2 * m->xrows * 2ull * m->l.hidden, &m->y_map);
	if (m->l.scales)
		m->scales = moe_map(2 * m->xrows * 4ull * m->l.scales, &m->scales_map);
	if (m->prefill)
		m->rows = moe_map(2 * m->rows_slot, &m->rows_map);
	if (!m->send || !m->recv || !m->comb || !m->x || !m->hdrs || !m->y ||
	    (m->l.scales && !m->scales) || (m->prefill && !m->rows)) {
		moe_error("cannot map the context's buffers (address space)");
		goto fail;
	}
	m->peer = calloc(m->R, sizeof(*m->peer));
	m->rmr_recv = calloc(m->R, sizeof(*m->rmr_recv));
	m->rmr_back = calloc(m->R, sizeof(*m->rmr_back));
	m->rmr_rows = calloc(m->R, sizeof(*m->rmr_rows));
	if (!m->peer || !m->rmr_recv || !m->rmr_back || !m->rmr_rows) {
		moe_error("out of memory");
		goto fail;
	}
	for (uint32_t i = 0; i < XFER_MOE_SLOTS; i++) {
		ret = slot_alloc(m, &m->slot[i]);
		if (ret)
			goto fail;
	}

	ret = reg(m, m->send, 2 * m->send_slot, 0, &m->mr_send, "send");
	if (!ret)
		ret = reg(m, m->recv, 2 * m->recv_slot, XFER_MR_REMOTE_WRITE, &m->mr_recv, "receive");
	if (!ret)
		ret = reg(m, m->comb, 2 * m->back_slot, XFER_MR_REMOTE_WRITE, &m->mr_back,
			  "combine receive");
	if (!ret)
		ret = reg(m, m->comb + 2 * m->back_slot, 2 * m->out_slot, 0, &m->mr_out,
			  "combine send");
	if (!ret && m->prefill)
		ret = reg(m, m->rows, 2 * m->R * m->row_bytes, XFER_MR_REMOTE_WRITE, &m->mr_rows_in,
			  "count rows");
	if (!ret && m->prefill)
		ret = reg(m, m->rows + 2 * m->R * m->row_bytes, 2 * m->row_bytes, 0,
			  &m->mr_rows_own, "own count row");
	if (ret)
		goto fail;
	*out = m;
	return 0;
fail:
	xfer_moe_destroy(m);
	return ret;
}

/* An operation may still hold a region for a moment after the last
 * completion we saw (a failed one's pieces to a dead peer): retry. */
static void dereg(xfer_mr *mr)
{
	for (int i = 0; mr && i < 2000; i++) {
		if (xfer_mr_dereg(mr) != -EBUSY)
			return;
		nanosleep(&(struct timespec){ .tv_nsec = 5000000 }, NULL);
	}
}

XFER_EXPORT void xfer_moe_destroy(xfer_moe *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < XFER_MOE_SLOTS; i++) {
		struct moe_slot *s = &m->slot[i];

		if (s->dispatch.w)
			xfer_watch_remove(s->dispatch.w);
		if (s->combine.w)
			xfer_watch_remove(s->combine.w);
		if (s->counts.w)
			xfer_watch_remove(s->counts.w);
		moe_slot_free(s);
	}
	for (uint32_t r = 0; r < m->R && m->rmr_recv; r++) {
		xfer_rmr_free(m->rmr_recv[r]);
		xfer_rmr_free(m->rmr_back[r]);
		xfer_rmr_free(m->rmr_rows[r]);
	}
	dereg(m->mr_send);
	dereg(m->mr_recv);
	dereg(m->mr_back);
	dereg(m->mr_out);
	dereg(m->mr_rows_in);
	dereg(m->mr_rows_own);
	unmap(m->send, m->send_map);
	unmap(m->recv, m->recv_map);
	unmap(m->comb, m->comb_map);
	unmap(m->rows, m->rows_map);
	unmap(m->x, m->x_map);
	unmap(m->hdrs, m->hdrs_map);
	unmap(m->y, m->y_map);
	unmap(m->scales, m->scales_map);
	free(m->peer);
	free(m->rmr_recv);
	free(m->rmr_back);
	free(m->rmr_rows);
	free(m);
}

XFER_EXPORT int xfer_moe_layout_of(const xfer_moe *m, struct xfer_moe_layout *out)
{
	if (!m || !out) {
		moe_error("%s is NULL", m ? "out" : "the context");
		return -EINVAL;
	}
	*out = m->l;
	return 0;
}
