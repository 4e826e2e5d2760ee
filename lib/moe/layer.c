/* SPDX-License-Identifier: MIT */
/*
 * One layer of MoE: dispatch and combine, split in four calls.
 *
 * The calling thread plays the GPU: it routes and packs with the C
 * references (ref.c), writes one table row per destination and bumps a
 * watched word; the engine's worker is the proxy that posts the writes
 * (xfer_vscatter_add). Receivers wait for exactly R - 1 arrivals of the
 * slot's immediate (counters) and check that every block is of the layer
 * they expect (sequence numbers in block headers and record headers).
 *
 * Why a slot needs no barrier between layers (docs/moe.md has the long
 * form): rank s writes dispatch(l+1) into rank d's slot only after
 * combine_recv(l), which waits for d's combine(l), which d sends only
 * after its dispatch_recv(l) consumed the slot; the same chain protects
 * combine(l+1) and, in prefill, the count rows.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "ctx.h"

static const char *const phase_name[] = {
	[MOE_IDLE] = "combine_recv", [MOE_SENT] = "dispatch_send",
	[MOE_RECEIVED] = "dispatch_recv", [MOE_RETURNED] = "combine_send",
};

static uint32_t imm_of(const struct xfer_moe *m, uint32_t kind, uint32_t slot)
{
	return m->a.imm_base + kind + slot;
}

/* A destination's row in a scatter's table: rank me + 1 + i is row i
 * (blob.c orders the destinations so). */
static struct xfer_vscatter_row *row_of(const struct xfer_moe *m, struct moe_vs *vs, uint32_t r)
{
	return &vs->rows[(r + m->R - m->me - 1) % m->R];
}

static uint32_t sum(const uint32_t *v, uint32_t n)
{
	uint32_t t = 0;

	for (uint32_t i = 0; i < n; i++)
		t += v[i];
	return t;
}

/* The checks every call starts with. */
static int enter(struct xfer_moe *m, uint32_t slot, enum moe_phase need, const char *call)
{
	moe_error_clear();
	if (!m) {
		moe_error("%s: the context is NULL", call);
		return -EINVAL;
	}
	if (slot >= XFER_MOE_SLOTS) {
		moe_error("%s: slot %u does not exist (0 or 1)", call, slot);
		return -EINVAL;
	}
	if (m->failed) {
		moe_error("%s: the context failed earlier (%s); destroy it", call,
			  xfer_strerror(m->failed));
		return m->failed;
	}
	if (!m->connected) {
		moe_error("%s: the context is not connected (xfer_moe_connect)", call);
		return -ENOTCONN;
	}
	if (m->slot[slot].phase != need) {
		moe_error("%s on slot %u must follow %s; the slot's last call was %s", call, slot,
			  phase_name[need], phase_name[m->slot[slot].phase]);
		return -EINVAL;
	}
	return 0;
}

/* The GPU's cuStreamWriteValue64 on the watched word, done by the thread
 * that plays it here; it can also wake a sleeping worker (a stream cannot:
 * on a GPU machine the worker polls). */
static void vs_post(struct moe_vs *vs)
{
	__atomic_store_n(&vs->word, vs->word + 1, __ATOMIC_SEQ_CST);
	xfer_watch_kick(vs->w);
}

/* Before a table (and the bytes it names) is rewritten, the worker must
 * have finished the previous firing. The chain of layers makes that so
 * already (see the top); this only guards against a worker that is late. */
static int vs_idle(struct xfer_moe *m, struct moe_vs *vs, uint32_t slot, const char *what)
{
	uint64_t deadline = 0;
	int err;

	if (!vs->w)
		return 0;
	while (__atomic_load_n(&vs->done_word, __ATOMIC_ACQUIRE) < vs->word) {
		uint64_t now = xfer_now_ns();

		if (!deadline)
			deadline = now + (uint64_t)m->a.timeout_ms * 1000000ull;
		if (now >= deadline) {
			moe_error("slot %u: the previous %s writes did not finish in %d ms", slot,
				  what, m->a.timeout_ms);
			m->failed = -ETIMEDOUT;
			return -ETIMEDOUT;
		}
		sched_yield();
	}
	err = atomic_load(&vs->err);
	if (err) {
		moe_error("slot %u: the %s writes failed: %s", slot, what, xfer_strerror(err));
		m->failed = err;
	}
	return err;
}

/* Has rank r's part of this phase arrived? (for naming the missing ones) */
typedef bool (*arrived_fn)(const struct xfer_moe *m, uint32_t slot, uint32_t r);

static bool dispatch_arrived(const struct xfer_moe *m, uint32_t slot, uint32_t r)
{
	const struct xfer_moe_block_hdr *h = (const void *)(m->recv + slot * m->recv_slot +
							    r * m->l.block_bytes);

	return __atomic_load_n(&h->seq, __ATOMIC_RELAXED) == m->slot[slot].seq;
}

static bool combine_arrived(const struct xfer_moe *m, uint32_t slot, uint32_t r)
{
	const struct moe_chdr *h = (const void *)(m->comb + slot * m->back_slot + r * m->cblock);

	return __atomic_load_n(&h->seq, __ATOMIC_RELAXED) == m->slot[slot].seq;
}

static bool counts_arrived(const struct xfer_moe *m, uint32_t slot, uint32_t r)
{
	const struct moe_chdr *h = (const void *)(m->rows + (slot * m->R + r) * m->row_bytes);

	return __atomic_load_n(&h->seq, __ATOMIC_RELAXED) == m->slot[slot].seq;
}

/* Wait for R - 1 arrivals of imm; a peer that goes down ends the wait at
 * once (the engine sees a same-host peer die through its pidfd, a remote
 * one through its connection), the timeout names who is missing. */
static int wait_arrivals(struct xfer_moe *m, uint32_t slot, uint32_t kind, arrived_fn arrived,
			 const char *what)
{
	struct moe_slot *s = &m->slot[slot];
	uint32_t want = m->R - 1, imm = imm_of(m, kind, slot);
	uint64_t deadline = xfer_now_ns() + (uint64_t)m->a.timeout_ms * 1000000ull;

	if (!want)
		return 0;
	for (;;) {
		uint64_t now = xfer_now_ns(), left_ms;
		int ret;

		left_ms = now >= deadline ? 0 : (deadline - now + 999999) / 1000000;
		ret = xfer_imm_wait(m->e, imm, want, (int)(left_ms < 50 ? left_ms : 50));
		if (!ret)
			return 0;
		if (ret != -ETIMEDOUT) {
			moe_error("slot %u layer %llu: waiting for %s: %s", slot,
				  (unsigned long long)s->seq, what, xfer_strerror(ret));
			m->failed = ret;
			return ret;
		}
		for (uint32_t r = 0; r < m->R; r++) {
			int st = r == m->me ? 0 : xfer_peer_status(m->e, m->peer[r]);

			if (st) {
				moe_error("slot %u layer %llu: waiting for %s: rank %u is down (%s)",
					  slot, (unsigned long long)s->seq, what, r,
					  xfer_strerror(st));
				m->failed = -ENOTCONN;
				return -ENOTCONN;
			}
		}
		if (xfer_now_ns() >= deadline) {
			char miss[256] = "";
			size_t at = 0;

			for (uint32_t r = 0; r < m->R && arrived && at < sizeof(miss) - 16; r++)
				if (r != m->me && !arrived(m, slot, r))
					at += (size_t)snprintf(miss + at, sizeof(miss) - at, "%s%u",
							       at ? ", " : "", r);
			/* every header in yet the count short: a block landed and
			 * its immediate did not (its sender stopped in between) */
			moe_error("slot %u layer %llu: %s: %llu of %u arrived in %d ms%s%s", slot,
				  (unsigned long long)s->seq, what,
				  (unsigned long long)xfer_imm_count(m->e, imm), want, m->a.timeout_ms,
				  at ? "; missing ranks " : arrived ? "; every block is in, an immediate "
				  "is late" : "", miss);
			m->failed = -ETIMEDOUT;
			return -ETIMEDOUT;
		}
	}
}

/* A token's K choices name K distinct experts (a top-k does): block sizes
 * and DeepEP's rows per expert rely on it. */
static int check_distinct(const struct xfer_moe *m, const int32_t *topk, uint32_t n)
{
	uint32_t K = m->l.top_k;

	for (uint32_t t = 0; t < n; t++)
		for (uint32_t i = 0; i < K; i++)
			for (uint32_t j = i + 1; j < K && topk[t * K + i] >= 0; j++)
				if (topk[t * K + i] == topk[t * K + j]) {
					moe_error("token %u: expert %d appears twice (k=%u and k=%u)",
						  t, topk[t * K + i], i, j);
					return -EINVAL;
				}
	return 0;
}

XFER_EXPORT int xfer_moe_dispatch_send(xfer_moe *m, uint32_t slot, const uint16_t *x,
				       size_t x_stride, uint32_t num_tokens, const int32_t *topk)
{
	const struct xfer_moe_layout *l;
	uint64_t dest_off[XFER_MOE_MAX_RANKS], base;
	uint32_t R, L, K, imm;
	struct moe_slot *s;
	int ret = enter(m, slot, MOE_IDLE, "dispatch_send");

	if (ret)
		return ret;
	l = &m->l;
	s = &m->slot[slot];
	R = m->R, L = m->L, K = l->top_k;
	if (num_tokens > l->max_tokens) {
		moe_error("dispatch_send: num_tokens %u is over max_tokens %u", num_tokens,
			  l->max_tokens);
		return -EINVAL;
	}
	if (num_tokens && (!x || !topk)) {
		moe_error("dispatch_send: %s is NULL with %u tokens", !x ? "x" : "topk", num_tokens);
		return -EINVAL;
	}
	if (x_stride && x_stride < l->hidden) {
		moe_error("dispatch_send: x_stride %zu is under the hidden size %u", x_stride,
			  l->hidden);
		return -EINVAL;
	}
	ret = check_distinct(m, topk, num_tokens);
	if (!ret)
		ret = xfer_moe_route(l, topk, num_tokens, s->sent, s->pos);
	if (ret)
		return ret;   /* nothing sent: the message names the token */
	ret = vs_idle(m, &s->dispatch, slot, "dispatch");
	if (!ret && m->prefill)
		ret = vs_idle(m, &s->counts, slot, "count row");
	if (ret)
		return ret;
	if (num_tokens)
		memcpy(s->topk, topk, (size_t)num_tokens * K * sizeof(*topk));
	s->num_tokens = num_tokens;
	s->seq++;
	base = slot * m->send_slot;

	if (!m->prefill) {
		imm = imm_of(m, MOE_IMM_DISPATCH, slot);
		for (uint32_t d = 0; d < R; d++)
			dest_off[d] = base + d * l->block_bytes + l->block_hdr_bytes;
		xfer_moe_pack(l, (uint32_t)s->seq, x, x_stride ? x_stride : l->hidden, num_tokens,
			      topk, s->pos, m->send, dest_off);
		for (uint32_t d = 0; d < R; d++) {
			struct xfer_moe_block_hdr *h = (void *)(m->send + base + d * l->block_bytes);
			uint32_t n = sum(&s->sent[d * L], L);

			if (d == m->me)
				continue;
			h->seq = s->seq;
			h->records = n;
			h->src_rank = m->me;
			memcpy(h + 1, &s->sent[d * L], L * sizeof(uint32_t));
			*row_of(m, &s->dispatch, d) = (struct xfer_vscatter_row){
				.src_off = base + d * l->block_bytes,
				.dst_off = slot * m->recv_slot + m->me * l->block_bytes,
				.len = l->block_hdr_bytes + (uint64_t)n * l->record_bytes,
				.imm = imm, .flags = XFER_OP_IMM,
			};
		}
		if (R > 1)
			vs_post(&s->dispatch);
	} else {
		uint8_t *own = m->rows + (2 * R + slot) * m->row_bytes;
		struct moe_chdr *h = (void *)own;
		uint64_t at = 0;

		/* The count row first, so that it travels while we pack. */
		h->seq = s->seq;
		h->records = sum(s->sent, R * L);
		h->src_rank = m->me;
		memcpy(own + MOE_CHDR_BYTES, s->sent, (size_t)R * L * sizeof(uint32_t));
		memcpy(&s->rows_all[(size_t)m->me * R * L], s->sent, (size_t)R * L * sizeof(uint32_t));
		imm = imm_of(m, MOE_IMM_COUNTS, slot);
		for (uint32_t d = 0; d < R; d++)
			if (d != m->me)
				*row_of(m, &s->counts, d) = (struct xfer_vscatter_row){
					.src_off = slot * m->row_bytes,
					.dst_off = (slot * R + m->me) * m->row_bytes,
					.len = m->row_bytes, .imm = imm, .flags = XFER_OP_IMM,
				};
		if (R > 1)
			vs_post(&s->counts);
		for (uint32_t d = 0; d < R; d++) {
			s->send_off[d] = at;
			dest_off[d] = base + at * l->record_bytes;
			at += sum(&s->sent[d * L], L);
		}
		xfer_moe_pack(l, (uint32_t)s->seq, x, x_stride ? x_stride : l->hidden, num_tokens,
			      topk, s->pos, m->send, dest_off);
	}
	s->phase = MOE_SENT;
	return 0;
}

/* Prefill: every rank's count row is here; check them, then write our
 * records to the exact offsets each destination will read them at. */
static int prefill_post(struct xfer_moe *m, uint32_t slot)
{
	const struct xfer_moe_layout *l = &m->l;
	struct moe_slot *s = &m->slot[slot];
	uint32_t R = m->R, L = m->L, E = l->num_experts, imm = imm_of(m, MOE_IMM_DISPATCH, slot);

	for (uint32_t r = 0; r < R; r++) {
		const struct moe_chdr *h = (const void *)(m->rows + (slot * R + r) * m->row_bytes);
		const uint32_t *row = (const uint32_t *)((const uint8_t *)h + MOE_CHDR_BYTES);
		uint64_t total = 0;

		if (r == m->me)
			continue;
		if (h->seq != s->seq || h->src_rank != r) {
			moe_error("slot %u layer %llu: rank %u's count row is of layer %llu from rank %u",
				  slot, (unsigned long long)s->seq, r, (unsigned long long)h->seq,
				  h->src_rank);
			m->failed = -EPROTO;
			return -EPROTO;
		}
		for (uint32_t d = 0; d < R; d++) {
			uint32_t n = sum(&row[d * L], L);

			if (n > l->block_records) {
				moe_error("slot %u: rank %u's count row sends %u records to rank %u "
					  "(at most %llu)", slot, r, n, d,
					  (unsigned long long)l->block_records);
				m->failed = -EPROTO;
				return -EPROTO;
			}
			total += n;
		}
		if (total != h->records) {
			moe_error("slot %u: rank %u's count row adds up to %llu, its header says %u",
				  slot, r, (unsigned long long)total, h->records);
			m->failed = -EPROTO;
			return -EPROTO;
		}
		memcpy(&s->rows_all[(size_t)r * E], row, (size_t)E * sizeof(uint32_t));
	}
	/* n(a -> b) = sum of rank a's row over rank b's experts */
#define N(a, b) sum(&s->rows_all[(size_t)(a) * E + (size_t)(b) * L], L)
	for (uint32_t r = 0; r < R; r++) {
		uint64_t in = 0, back = 0;

		for (uint32_t q = 0; q < r; q++)
			in += N(q, m->me);
		for (uint32_t q = 0; q < m->me; q++)
			back += N(r, q);
		s->recv_off[r] = in;       /* where source r's records sit here */
		s->back_at[r] = back;      /* where ours sit in r's send layout */
		for (uint32_t e = 0; e < L; e++)
			s->got[r * L + e] = s->rows_all[(size_t)r * E + m->me * L + e];
		if (r == m->me)
			continue;
		{
			uint64_t at = 0;

			for (uint32_t q = 0; q < m->me; q++)
				at += N(q, r);
			*row_of(m, &s->dispatch, r) = (struct xfer_vscatter_row){
				.src_off = slot * m->send_slot + s->send_off[r] * l->record_bytes,
				.dst_off = slot * m->recv_slot + at * l->record_bytes,
				.len = (uint64_t)N(m->me, r) * l->record_bytes,
				.imm = imm, .flags = XFER_OP_IMM,
			};
		}
	}
#undef N
	if (R > 1)
		vs_post(&s->dispatch);
	return 0;
}

XFER_EXPORT int xfer_moe_dispatch_recv(xfer_moe *m, uint32_t slot, struct xfer_moe_recv *out)
{
	const uint8_t *src_recs[XFER_MOE_MAX_RANKS];
	const struct xfer_moe_layout *l;
	struct moe_slot *s;
	uint32_t R, L;
	uint64_t rows = 0;
	int ret = enter(m, slot, MOE_SENT, "dispatch_recv");

	if (ret)
		return ret;
	if (!out) {
		moe_error("dispatch_recv: out is NULL");
		return -EINVAL;
	}
	l = &m->l;
	s = &m->slot[slot];
	R = m->R, L = m->L;
	if (m->prefill) {
		ret = wait_arrivals(m, slot, MOE_IMM_COUNTS, counts_arrived, "count rows");
		if (!ret)
			ret = prefill_post(m, slot);
		if (ret)
			return ret;
	}
	ret = wait_arrivals(m, slot, MOE_IMM_DISPATCH, m->prefill ? NULL : dispatch_arrived,
			    "dispatch blocks");
	if (ret)
		return ret;
	for (uint32_t r = 0; r < R; r++) {
		if (m->prefill) {
			src_recs[r] = r == m->me ?
				m->send + slot * m->send_slot + s->send_off[r] * l->record_bytes :
				m->recv + slot * m->recv_slot + s->recv_off[r] * l->record_bytes;
			continue;
		}
		if (r == m->me) {
			memcpy(&s->got[r * L], &s->sent[r * L], L * sizeof(uint32_t));
			src_recs[r] = m->send + slot * m->send_slot + r * l->block_bytes +
				      l->block_hdr_bytes;
			continue;
		}
		{
			const uint8_t *b = m->recv + slot * m->recv_slot + r * l->block_bytes;
			const struct xfer_moe_block_hdr *h = (const void *)b;

			if (h->seq != s->seq || h->src_rank != r || h->records > l->block_records ||
			    sum((const uint32_t *)(h + 1), L) != h->records) {
				moe_error("slot %u layer %llu: rank %u's dispatch block is bad (layer "
					  "%llu, from rank %u, %u records)", slot,
					  (unsigned long long)s->seq, r, (unsigned long long)h->seq,
					  h->src_rank, h->records);
				m->failed = -EPROTO;
				return -EPROTO;
			}
			memcpy(&s->got[r * L], h + 1, L * sizeof(uint32_t));
			src_recs[r] = b + l->block_hdr_bytes;
		}
	}
	for (uint32_t e = 0; e < L; e++) {
		s->count[e] = 0;
		for (uint32_t r = 0; r < R; r++)
			s->count[e] += s->got[r * L + e];
		if (m->prefill)
			s->offset[e] = rows;
		rows += s->count[e];
	}
	s->total = (uint32_t)rows;
	{
		uint8_t *x = m->x + slot * m->xrows * l->token_bytes;
		float *sc = m->scales ? m->scales + slot * m->xrows * l->scales : NULL;
		struct xfer_moe_rec_hdr *hd = m->hdrs + slot * m->xrows;

		xfer_moe_unpack(l, src_recs, s->got, s->offset, x, sc, hd);
		/* Every record must be of this layer: a stale one means a slot
		 * was reused too early, which the design says cannot happen. */
		for (uint32_t e = 0; e < L; e++)
			for (uint64_t i = s->offset[e]; i < s->offset[e] + s->count[e]; i++)
				if (hd[i].seq != (uint32_t)s->seq || hd[i].expert != e ||
				    hd[i].src_rank >= R) {
					moe_error("slot %u layer %llu: row %llu (expert %u) holds a "
						  "record of layer %u, expert %u, from rank %u", slot,
						  (unsigned long long)s->seq, (unsigned long long)i, e,
						  hd[i].seq, hd[i].expert, hd[i].src_rank);
					m->failed = -EPROTO;
					return -EPROTO;
				}
		*out = (struct xfer_moe_recv){
			.local_experts = L, .total = s->total, .count = s->count, .offset = s->offset,
			.x = x, .scales = sc, .src = hd,
			.y = m->y + slot * m->xrows * l->hidden,
		};
	}
	s->phase = MOE_RECEIVED;
	return 0;
}

XFER_EXPORT int xfer_moe_combine_send(xfer_moe *m, uint32_t slot)
{
	uint64_t dst_off[XFER_MOE_MAX_RANKS];
	const struct xfer_moe_layout *l;
	struct moe_slot *s;
	uint8_t *out_area;
	uint32_t R, L, imm;
	int ret = enter(m, slot, MOE_RECEIVED, "combine_send");

	if (ret)
		return ret;
	l = &m->l;
	s = &m->slot[slot];
	R = m->R, L = m->L;
	imm = imm_of(m, MOE_IMM_COMBINE, slot);
	ret = vs_idle(m, &s->combine, slot, "combine");
	if (ret)
		return ret;
	out_area = m->comb + 2 * m->back_slot;
	for (uint32_t r = 0; r < R; r++)
		dst_off[r] = m->prefill ? slot * m->out_slot + s->recv_off[r] * l->combine_bytes :
			     slot * m->out_slot + r * m->cblock + MOE_CHDR_BYTES;
	xfer_moe_combine_pack(l, m->y + slot * m->xrows * l->hidden, s->got, s->offset, out_area,
			      dst_off);
	for (uint32_t r = 0; r < R; r++) {
		uint32_t n = sum(&s->got[r * L], L);

		if (r == m->me)
			continue;
		if (!m->prefill) {
			struct moe_chdr *h = (void *)(out_area + dst_off[r] - MOE_CHDR_BYTES);

			h->seq = s->seq;
			h->records = n;
			h->src_rank = m->me;
			*row_of(m, &s->combine, r) = (struct xfer_vscatter_row){
				.src_off = dst_off[r] - MOE_CHDR_BYTES,
				.dst_off = slot * m->back_slot + m->me * m->cblock,
				.len = MOE_CHDR_BYTES + (uint64_t)n * l->combine_bytes,
				.imm = imm, .flags = XFER_OP_IMM,
			};
		} else {
			*row_of(m, &s->combine, r) = (struct xfer_vscatter_row){
				.src_off = dst_off[r],
				.dst_off = slot * m->back_slot + s->back_at[r] * l->combine_bytes,
				.len = (uint64_t)n * l->combine_bytes,
				.imm = imm, .flags = XFER_OP_IMM,
			};
		}
	}
	if (R > 1)
		vs_post(&s->combine);
	s->phase = MOE_RETURNED;
	return 0;
}

XFER_EXPORT int xfer_moe_combine_recv(xfer_moe *m, uint32_t slot, const float *weights,
				      uint16_t *out, size_t out_stride)
{
	uint64_t back_off[XFER_MOE_MAX_RANKS];
	const struct xfer_moe_layout *l;
	struct moe_slot *s;
	uint32_t R, L;
	int ret = enter(m, slot, MOE_RETURNED, "combine_recv");

	if (ret)
		return ret;
	l = &m->l;
	s = &m->slot[slot];
	R = m->R, L = m->L;
	if (s->num_tokens && (!weights || !out)) {
		moe_error("combine_recv: %s is NULL with %u tokens", !weights ? "weights" : "out",
			  s->num_tokens);
		return -EINVAL;
	}
	if (out_stride && out_stride < l->hidden) {
		moe_error("combine_recv: out_stride %zu is under the hidden size %u", out_stride,
			  l->hidden);
		return -EINVAL;
	}
	ret = wait_arrivals(m, slot, MOE_IMM_COMBINE, m->prefill ? NULL : combine_arrived,
			    "combine blocks");
	if (ret)
		return ret;
	for (uint32_t r = 0; r < R; r++) {
		uint32_t n = sum(&s->sent[r * L], L);

		if (r == m->me) {
			/* our own outputs never left: combine_send packed them
			 * into the send half of the same mapping */
			back_off[r] = 2 * m->back_slot + slot * m->out_slot +
				      (m->prefill ? s->recv_off[r] * l->combine_bytes :
				       r * m->cblock + MOE_CHDR_BYTES);
			continue;
		}
		if (m->prefill) {
			back_off[r] = slot * m->back_slot + s->send_off[r] * l->combine_bytes;
			continue;
		}
		{
			const struct moe_chdr *h = (const void *)(m->comb + slot * m->back_slot +
								  r * m->cblock);

			if (h->seq != s->seq || h->src_rank != r || h->records != n) {
				moe_error("slot %u layer %llu: rank %u's combine block is bad (layer "
					  "%llu, from rank %u, %u records; %u were sent)", slot,
					  (unsigned long long)s->seq, r, (unsigned long long)h->seq,
					  h->src_rank, h->records, n);
				m->failed = -EPROTO;
				return -EPROTO;
			}
			back_off[r] = slot * m->back_slot + r * m->cblock + MOE_CHDR_BYTES;
		}
	}
	xfer_moe_combine_reduce(l, m->comb, back_off, s->num_tokens, s->topk, s->pos, weights, out,
				out_stride ? out_stride : l->hidden);
	s->phase = MOE_IDLE;
	return 0;
}
