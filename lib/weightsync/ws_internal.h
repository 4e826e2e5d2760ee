/* SPDX-License-Identifier: MIT */
/* Weight sync internals shared by the files of lib/weightsync (the
 * executor's own are in exec_internal.h). */
#ifndef XFER_WS_INTERNAL_H
#define XFER_WS_INTERNAL_H

#include "xfer_weightsync.h"

#include "compiler.h"

/* quant.c: xfer_ws_quant_fp8 without its AVX2 path, and that path's
 * rounding of 8 floats (x86-64 with AVX2 only), for the tests. Not
 * exported: the unit tests link the static library. */
void xfer_ws_quant_fp8_scalar(const uint16_t *src, size_t rows, size_t cols, size_t src_ld,
			      uint8_t *dst, size_t dst_ld, float *scales);
void xfer_ws_e4m3_x8(const float *in, uint8_t *out);

/* How a destination tensor is split over the inference TP ranks. */
enum ws_role {
	WS_REPL = 0,  /* whole on every rank */
	WS_COL = 1,   /* column-parallel: rows split (each fused component separately) */
	WS_ROW = 2,   /* row-parallel: columns split */
	WS_VOCAB = 3, /* vocabulary-parallel: rows split */
};

#define WS_MAX_COMP 3

/* A destination tensor as the inference engine names it: up to three
 * source parameters concatenated on dim 0 (projection fusion). */
struct ws_group {
	char name[XFER_WS_NAME_MAX];
	uint32_t role;
	uint32_t quant;           /* may be stored as fp8 */
	uint32_t ncomp;
	uint32_t comp[WS_MAX_COMP];
	int32_t layer, expert;
};

struct xfer_ws_model {
	char type[32];
	uint32_t nlayers;         /* num_hidden_layers */
	uint32_t nexperts;        /* routed experts, 0 if dense */
	uint32_t nheads;          /* num_attention_heads: the most inference tp can split */
	struct xfer_ws_param *params;
	size_t nparams, pcap;
	struct ws_group *groups;
	size_t ngroups, gcap;
};

static inline uint64_t ws_div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

/* Part i of n split into parts pieces as evenly as possible (floor bounds). */
static inline uint64_t ws_split_at(uint64_t n, uint32_t parts, uint32_t i)
{
	return n * i / parts;
}

/* Trainer placement of a parameter. */
struct ws_shard_info {
	uint32_t stage;
	uint32_t nshards;         /* row shards (1: whole on one rank) */
	uint64_t shard_rows;      /* torch.chunk size: ceil(rows / nshards) */
	uint32_t base;            /* rank of shard 0 in dp replica 0 */
	uint32_t stride;          /* rank distance between consecutive shards */
	uint32_t dp_stride;       /* rank distance between dp replicas */
};

void ws_shard_info(const struct xfer_ws_trainer_layout *t, uint32_t nlayers, uint32_t nexperts,
		   const struct xfer_ws_param *p, struct ws_shard_info *si);

static inline uint32_t ws_shard_rank(const struct ws_shard_info *si, uint32_t d, uint32_t k)
{
	return si->base + d * si->dp_stride + k * si->stride;
}

/* staging.c: the bytes chunk c holds in staging while its writes are out,
 * as the executor charges its ring; the planner's peak_staging and the
 * simulator's watermark count the same. */
uint64_t ws_chunk_staging_bytes(const struct xfer_ws_chunk *c);

void ws_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Set (or, with NULL, clear) the detail xfer_ws_last_error() returns. */
void ws_last_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
