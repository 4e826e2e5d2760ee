/* SPDX-License-Identifier: MIT */
/*
 * MoE expert parallelism: dispatch (tokens to the ranks of their experts)
 * and combine (expert outputs back, weighted, to the tokens' ranks) over
 * the transfer engine, for one EP group of R ranks.
 *
 * Notation: R ranks, E experts, L = E / R local experts (expert x lives on
 * rank x / L as its local expert x % L), T the most tokens a rank sends per
 * layer, K top-k, H hidden size, S = H / 128 fp8 scales per token.
 *
 * Per layer, four calls that can be split for overlap (as DeepEP's and
 * pplx's low-latency kernels are): dispatch_send, dispatch_recv,
 * combine_send, combine_recv, on one of two slots so that two micro-batches
 * can be in flight. Every dispatch on a slot is followed by a combine on
 * that slot (that ordering is what lets a slot be reused without barriers:
 * docs/moe.md).
 *
 * How bytes move (docs/moe.md has the whole story):
 *  - dispatch_send routes and packs the tokens into per-destination blocks
 *    (the C reference below; a CUDA kernel on a GPU machine), writes the
 *    lengths into a table and bumps a watched word: the engine's worker,
 *    the CPU proxy, posts one write with an immediate to every peer
 *    (xfer_vscatter_add). A block is a header (layer sequence number,
 *    per-local-expert counts) and the records; a peer that gets nothing
 *    gets the header alone.
 *  - dispatch_recv waits for exactly R - 1 arrivals of the slot's dispatch
 *    immediate and unpacks the blocks into DeepEP low-latency's shape
 *    (x[L][rows][H], counts per local expert) -- "decode" mode, fixed
 *    slots of T * min(K, L) records per source;
 *  - in "prefill" mode (XFER_MOE_F_PREFILL) fixed slots would be hundreds
 *    of MB per source, so dispatch_send first sends its count row (E
 *    counts) to every peer, dispatch_recv waits for all count rows, then
 *    every rank writes its records to exact offsets in packed regions;
 *  - combine_send returns y, the expert outputs (bf16, rows in x's order),
 *    one write with an immediate per source; combine_recv waits for R - 1
 *    arrivals and computes out[t] = sum over k of w[t][k] * y(t, k) in fp32
 *    in k order (fmaf), rounded once to bf16. Weights never leave the
 *    origin.
 *
 * Records (laid out as DeepEP's and pplx's, so that byte counts compare):
 *  - dispatch record: a 16-byte header (struct xfer_moe_rec_hdr), then the
 *    token: bf16 (2H bytes), or fp8 e4m3 (H bytes rounded up to 16) and S
 *    float32 scales (4S bytes rounded up to 16) -- 7,408 B for H = 7168;
 *  - combine record: 2H bytes of bf16.
 *
 * Errors are negative errno values; the text of the last one on this
 * thread, saying what was wrong and where (which argument, which rank,
 * which slot and layer), is xfer_moe_last_error().
 */
#ifndef XFER_MOE_H
#define XFER_MOE_H

#include <stddef.h>
#include <stdint.h>

#include "xfer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xfer_moe xfer_moe;

enum {
	XFER_MOE_BF16 = 1,   /* bfloat16 */
	XFER_MOE_FP8 = 2,    /* fp8 e4m3 (fn) with one float32 scale per 128 values */
};

#define XFER_MOE_F_PREFILL (1u << 0) /* count exchange + packed regions (large T) */

#define XFER_MOE_MAX_RANKS   1024u
#define XFER_MOE_MAX_TOPK    32u
#define XFER_MOE_MAX_EXPERTS 65536u
#define XFER_MOE_MAX_HIDDEN  65536u
#define XFER_MOE_MAX_TOKENS  (1u << 20)
#define XFER_MOE_SLOTS       2u

struct xfer_moe_attr {
	uint32_t size;           /* sizeof(struct xfer_moe_attr) */
	uint32_t flags;          /* XFER_MOE_F_*; unknown bits: -EINVAL */
	uint32_t world_size;     /* R: 1 .. XFER_MOE_MAX_RANKS */
	uint32_t rank;           /* < R */
	uint32_t num_experts;    /* E: a multiple of R, <= XFER_MOE_MAX_EXPERTS */
	uint32_t top_k;          /* K: 1 .. min(E, XFER_MOE_MAX_TOPK) */
	uint32_t hidden;         /* H: a multiple of 128 for fp8, of 8 for bf16 */
	uint32_t max_tokens;     /* T: 1 .. XFER_MOE_MAX_TOKENS */
	uint32_t dispatch_dtype; /* XFER_MOE_BF16 or XFER_MOE_FP8 */
	uint32_t combine_dtype;  /* XFER_MOE_BF16 (the only one) */
	int32_t timeout_ms;      /* receive waits; 0 = 10000; < 0: -EINVAL */
	uint32_t imm_base;       /* immediates used: imm_base + 0 .. 15; 0 = 0x4d6f0000.
				  * Contexts on one engine need disjoint ranges: a
				  * shared range mixes their arrivals (-EPROTO) */
};
/* Through combine_dtype; timeout_ms and imm_base default as noted. */
#define XFER_MOE_ATTR_SIZE_VER0 40u

/* The buffer layout a context uses, from its attributes alone: what a GPU
 * kernel needs to write the same bytes as the C reference. */
struct xfer_moe_layout {
	uint32_t world_size, rank, num_experts, local_experts, top_k, hidden, max_tokens;
	uint32_t dispatch_dtype;
	uint32_t scales;          /* S = H / 128 with fp8, else 0 */
	uint32_t flags;           /* the attribute flags */
	uint64_t token_bytes;     /* a token's payload in a record: 2H (bf16) or round_up(H, 16) */
	uint64_t scale_bytes;     /* round_up(4S, 16), 0 for bf16 */
	uint64_t record_bytes;    /* 16 + token_bytes + scale_bytes */
	uint64_t combine_bytes;   /* 2H: one combine record */
	uint64_t block_hdr_bytes; /* round_up(16 + 4L, 64): a decode block's header */
	uint64_t block_records;   /* T * min(K, L): the most records one source sends one rank */
	uint64_t block_bytes;     /* decode: block_hdr_bytes + block_records * record_bytes,
				   * rounded up to 64 */
	uint64_t expert_rows;     /* decode: rows per local expert in x and y (R * T) */
};
/* -EINVAL (with xfer_moe_last_error's reason) if attr is not valid. */
int xfer_moe_layout_get(const struct xfer_moe_attr *attr, struct xfer_moe_layout *out);

/* A dispatch record's header. */
struct xfer_moe_rec_hdr {
	uint32_t token;           /* index at the source rank */
	uint32_t src_rank;
	uint16_t k;               /* which of the token's K choices */
	uint16_t expert;          /* local expert at the destination */
	uint32_t seq;             /* low 32 bits of the slot's layer number */
};

/* A decode block's header (block_hdr_bytes long, counts follow it). */
struct xfer_moe_block_hdr {
	uint64_t seq;             /* the slot's layer number, from 1 */
	uint32_t records;         /* records in the block */
	uint32_t src_rank;
	/* uint32_t count[L] follows: records per local expert, in that order */
};

/* ---- The context ---------------------------------------------------- */

/* Validates attr (-EINVAL with the reason), allocates and registers the
 * buffers of both slots on e. Decode buffers are sized for the worst case
 * but mapped lazily: only the pages that records touch become resident. */
int xfer_moe_create(xfer_engine *e, const struct xfer_moe_attr *attr, xfer_moe **out);
/* Ends the context: no call on it may be running. Safe with NULL. */
void xfer_moe_destroy(xfer_moe *m);
int xfer_moe_layout_of(const xfer_moe *m, struct xfer_moe_layout *out);

/* This rank's blob for the out-of-band exchange: the engine address, the
 * descriptors of its receive regions, and the attributes, so that ranks
 * built with different attributes refuse each other. *len: capacity in,
 * length out (-ENOSPC, with the length needed, if short). */
int xfer_moe_blob(xfer_moe *m, void *buf, size_t *len);
/* Every rank's blob (blobs[r], lens[r] for r < R; this rank's own is
 * checked too): adds the peers, imports their regions, prepares the
 * variable-length scatters and connects (xfer_engine_connect). -EINVAL
 * naming the rank whose blob is malformed or disagrees (attributes, rank
 * number); the connect's error naming the rank that cannot be reached. */
int xfer_moe_connect(xfer_moe *m, const void *const *blobs, const size_t *lens, int timeout_ms);

/* ---- Per layer ------------------------------------------------------ */

/* Dispatch num_tokens (<= T) tokens: x is [num_tokens][H] bf16 (as
 * uint16_t bits, rows x_stride elements apart, 0 = H), topk is
 * [num_tokens][K] expert ids, -1 for none (any other value outside 0..E-1,
 * or an expert twice in one token: -EINVAL naming the token and k; nothing
 * sent). With num_tokens 0, x and topk may be NULL. x and topk may be reused
 * when the call returns; topk is kept until combine_recv. Returns once the
 * blocks are handed to the proxy. */
int xfer_moe_dispatch_send(xfer_moe *m, uint32_t slot, const uint16_t *x, size_t x_stride,
			   uint32_t num_tokens, const int32_t *topk);

/* What a rank received for its local experts. Pointers into the slot's
 * buffers, valid until the slot's next dispatch_send. Rows of local
 * expert e are offset[e] .. offset[e] + count[e] - 1 of x, scales, src and
 * y: decode gives offset[e] = e * R * T (DeepEP's [L][R*T] shape), prefill
 * packs them. Within an expert, rows come by source rank, then by token. */
struct xfer_moe_recv {
	uint32_t local_experts;   /* L */
	uint32_t total;           /* rows received, all experts */
	const uint32_t *count;    /* [L] */
	const uint64_t *offset;   /* [L] first row of each expert */
	const uint8_t *x;         /* rows of token_bytes: bf16 or fp8 */
	const float *scales;      /* fp8: rows of S floats; NULL for bf16 */
	const struct xfer_moe_rec_hdr *src; /* per row: its source, token and k */
	uint16_t *y;              /* bf16 rows of H: the caller's expert outputs go
				   * here before combine_send, row for row with x */
};
/* Waits (up to the context's timeout) for every rank's block of this
 * slot's layer, and unpacks. -ETIMEDOUT, or -ENOTCONN when a peer is down,
 * naming the ranks missing; -EPROTO if a block is not of this layer. */
int xfer_moe_dispatch_recv(xfer_moe *m, uint32_t slot, struct xfer_moe_recv *out);

/* Send the rows of recv.y back to their sources (one write per source). */
int xfer_moe_combine_send(xfer_moe *m, uint32_t slot);

/* Wait for every rank's outputs for this slot's tokens (weights and out
 * may be NULL when the dispatch had no tokens), then
 * out[t][h] = bf16(sum over k (in order, skipping -1) of
 * weights[t][k] * y(t, k)[h]), accumulated in fp32 with fmaf from 0.
 * weights is [num_tokens][K] float (num_tokens of the dispatch); out is
 * [num_tokens][H] bf16, rows out_stride elements apart (0 = H); a token
 * with no expert gets zeros. Errors as dispatch_recv's. */
int xfer_moe_combine_recv(xfer_moe *m, uint32_t slot, const float *weights, uint16_t *out,
			  size_t out_stride);

/* The text of the last error on this thread ("" if none). */
const char *xfer_moe_last_error(void);

/* ---- C references of the kernels (what runs on this machine) --------
 *
 * The CUDA kernels in kernels/moe.cu write the same bytes from the same
 * inputs; tests/gpu compares them bit for bit. Records of one destination
 * are sorted by (local expert, token, k). */

/* counts[d * L + e]: records from these tokens for rank d's local expert
 * e; pos[t * K + k]: the record's index among those for rank topk / L, or
 * UINT32_MAX for -1. -EINVAL for an expert id outside -1 .. E-1. */
int xfer_moe_route(const struct xfer_moe_layout *l, const int32_t *topk, uint32_t num_tokens,
		   uint32_t *counts, uint32_t *pos);
/* Write each (t, k)'s record (header, then bf16 copy or fp8 quantisation
 * with per-128 scales) at send + dest_off[d] + pos[t*K+k] * record_bytes. */
void xfer_moe_pack(const struct xfer_moe_layout *l, uint32_t seq, const uint16_t *x,
		   size_t x_stride, uint32_t num_tokens, const int32_t *topk, const uint32_t *pos,
		   uint8_t *send, const uint64_t *dest_off);
/* Split the records of every source into rows: src_recs[s] points at
 * source s's records for this rank (counts[s * L + e] for each local
 * expert e, sorted by expert); rows of expert e start at offset[e], by
 * source. Writes x, scales (fp8) and hdrs rows. */
void xfer_moe_unpack(const struct xfer_moe_layout *l, const uint8_t *const *src_recs,
		     const uint32_t *counts, const uint64_t *offset, uint8_t *x, float *scales,
		     struct xfer_moe_rec_hdr *hdrs);
/* The inverse for combine: y's rows (bf16, H) of source s's records, in
 * that source's record order, to dst + dst_off[s] (combine_bytes each). */
void xfer_moe_combine_pack(const struct xfer_moe_layout *l, const uint16_t *y,
			   const uint32_t *counts, const uint64_t *offset, uint8_t *dst,
			   const uint64_t *dst_off);
/* out[t] from the combine records that came back: the output of (t, k)
 * is at back + back_off[topk / L] + pos[t*K+k] * combine_bytes. */
void xfer_moe_combine_reduce(const struct xfer_moe_layout *l, const uint8_t *back,
			     const uint64_t *back_off, uint32_t num_tokens, const int32_t *topk,
			     const uint32_t *pos, const float *weights, uint16_t *out,
			     size_t out_stride);

/* The communication-free reference of a whole layer, for checks: what
 * dispatch, the experts and combine give this rank's tokens. fn is the
 * expert: the output y (H bf16) of global expert `expert` for one row as
 * dispatch delivers it (x: token_bytes; scales: S floats with fp8, else
 * NULL). The rank's own tokens are quantised exactly as xfer_moe_pack
 * does, so that a run through the engine must match this bit for bit. */
typedef void (*xfer_moe_expert_fn)(void *ctx, uint32_t expert, const uint8_t *x,
				   const float *scales, uint16_t *y);
int xfer_moe_reference(const struct xfer_moe_layout *l, const uint16_t *x, size_t x_stride,
		       uint32_t num_tokens, const int32_t *topk, const float *weights,
		       xfer_moe_expert_fn fn, void *ctx, uint16_t *out, size_t out_stride);

#ifdef __cplusplus
}
#endif
#endif /* XFER_MOE_H */
