/* SPDX-License-Identifier: MIT */
/*
 * The MoE context's state, shared by ctx.c (buffers, lifetime), blob.c
 * (the out-of-band blob, connecting) and layer.c (dispatch and combine).
 *
 * Buffers, each mapped lazily (MAP_NORESERVE: worst-case sizes cost address
 * space, not memory) and holding both slots, slot 1 after slot 0:
 *   send   records to send, per destination              source region
 *   recv   records received, per source                  remote-writable
 *   comb   [ back | out ]: combine records that came back, per destination
 *          (remote-writable), then the combine records to return, per source
 *          (source region): one mapping, so that the reduction finds this
 *          rank's own outputs (in `out`) at an offset from `back`
 *   rows   (prefill) count rows: [ in | own ]: every source's row, then this
 *          rank's (remote-writable, source)
 * plus unregistered x, scales, hdrs and y rows that dispatch_recv fills.
 */
#ifndef XFER_MOE_CTX_H
#define XFER_MOE_CTX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "moe_internal.h"
#include "xfer_moe.h"

/* The immediates a context uses, added to imm_base. */
enum {
	MOE_IMM_DISPATCH = 0,   /* + slot */
	MOE_IMM_COMBINE = 2,    /* + slot */
	MOE_IMM_COUNTS = 4,     /* + slot */
};

/* A decode combine block's header (64 bytes before its records), and a
 * prefill count row's (before its E counts). */
#define MOE_CHDR_BYTES 64u
struct moe_chdr {
	uint64_t seq;
	uint32_t records;
	uint32_t src_rank;
};

enum moe_phase {
	MOE_IDLE = 0,        /* ready for dispatch_send */
	MOE_SENT,            /* dispatch_send done */
	MOE_RECEIVED,        /* dispatch_recv done */
	MOE_RETURNED,        /* combine_send done */
};

/* A variable-length scatter to every other rank, and its table. */
struct moe_vs {
	xfer_watch *w;
	volatile uint64_t word;         /* firings asked for */
	volatile uint64_t done_word;    /* firings finished (the worker stores it) */
	struct xfer_vscatter_row *rows; /* R - 1 rows: rank me + 1 + i is row i */
	_Atomic int err;                /* first failed firing's status */
};

struct moe_slot {
	enum moe_phase phase;
	uint64_t seq;                   /* layers dispatched on this slot, from 1 */
	uint32_t num_tokens;
	int32_t *topk;                  /* [T][K], kept for combine */
	uint32_t *pos;                  /* [T][K] */
	uint32_t *sent;                 /* [R][L] records this rank sent rank d's experts */
	uint32_t *got;                  /* [R][L] records source s sent this rank's experts */
	uint64_t *send_off;             /* [R] records before destination d's in send */
	uint64_t *recv_off;             /* [R] records before source s's in recv */
	uint64_t *back_at;              /* [R] prefill: records before this rank's in
					 * source s's send layout (where combine returns) */
	uint32_t *rows_all;             /* [R][E] prefill: every rank's count row */
	uint32_t *count;                /* [L] */
	uint64_t *offset;               /* [L] */
	uint32_t total;
	struct moe_vs dispatch, combine, counts;
};

struct xfer_moe {
	xfer_engine *e;
	struct xfer_moe_attr a;
	struct xfer_moe_layout l;
	uint32_t R, L, me;
	bool prefill, connected;
	int failed;                     /* an error that ended the context */

	/* per-slot sizes (bytes) of each buffer, and the mappings */
	uint64_t send_slot, recv_slot, back_slot, out_slot, rows_slot;
	uint64_t cblock;                /* decode: one combine block */
	uint64_t row_bytes;             /* prefill: one count row */
	uint64_t xrows;                 /* rows of x / y per slot */
	uint8_t *send, *recv, *comb, *rows;
	size_t send_map, recv_map, comb_map, rows_map;
	uint8_t *x;                     /* [2][xrows][token_bytes] */
	float *scales;                  /* [2][xrows][S] */
	struct xfer_moe_rec_hdr *hdrs;  /* [2][xrows] */
	uint16_t *y;                    /* [2][xrows][H] */
	size_t x_map, scales_map, hdrs_map, y_map;

	xfer_mr *mr_send, *mr_recv, *mr_back, *mr_out, *mr_rows_in, *mr_rows_own;
	uint32_t *peer;                 /* [R] engine peer index (own: unused) */
	xfer_rmr **rmr_recv, **rmr_back, **rmr_rows;   /* [R], own NULL */
	struct moe_slot slot[XFER_MOE_SLOTS];
};

/* ctx.c */
void *moe_map(size_t bytes, size_t *mapped);
/* blob.c: none beyond the public calls. layer.c: */
void moe_slot_free(struct moe_slot *s);

#endif
