/* SPDX-License-Identifier: MIT */
/*
 * What the executor's files share (xfer_ws_exec.h is the API):
 *   exec.c       the trainer side: set up once, then per step the pipeline
 *                (send gathers, prepare, issue writes, release, barrier)
 *   transform.c  a chunk's copy or fp8 quantisation, split over the pool
 *   staging.c    the staging ring: room reserved and released in order
 *   receive.c    how a chunk's write is cut into pieces, and the
 *                inference side, which only counts their arrivals
 */
#ifndef XFER_WS_EXEC_INTERNAL_H
#define XFER_WS_EXEC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "pool.h"
#include "ws_internal.h"
#include "xfer_ws_exec.h"

/* ---- receive.c: a write in pieces ---------------------------------------- */

/* A write in pieces. A gathered chunk of full-width rows that needs no
 * transform lies in two places: the rows its owner holds in its shard, the
 * others in its gather buffer. Its writes go out as runs of rows from
 * where they lie (gathered rows before the owner's, the owner's, gathered
 * rows after), each with its immediate, so the owner never copies its own
 * rows into the gather buffer. Every other chunk is one piece. Decided by
 * the schedule alone: receivers count the same pieces. */
#define WS_MAX_PIECES 3

struct ws_piece {
	uint64_t row, rows;        /* rows of the chunk, from its first */
	bool own;                  /* from the owner's shard, not the chunk's source */
};

/* Fills pc[0..n) and returns n (1 to WS_MAX_PIECES). */
uint32_t ws_chunk_pieces(const struct xfer_ws_schedule *s, const struct xfer_ws_chunk *c,
			 struct ws_piece *pc);

/* ---- staging.c: the staging ring ----------------------------------------- */

/* One registered region that staged chunks are prepared into. Room is
 * reserved at the head and given back at the tail, in the order it was
 * reserved, so the ring never fragments. */
struct ws_ring {
	uint8_t *mem;
	xfer_mr *mr;
	uint64_t size;             /* bytes of mem */
	uint64_t head;             /* next reservation starts here (or at 0) */
	uint64_t tail;             /* oldest reservation still held starts here */
	uint64_t used;             /* bytes held, skipped ring ends included */
	uint64_t peak;             /* most bytes held at once since the last reset */
};

/* Where a chunk's fp8 scales lie in its staging, from its first byte. */
uint64_t ws_chunk_scales_offset(const struct xfer_ws_chunk *c);

/* Empty, for a new step (the memory stays). */
void ws_ring_reset(struct ws_ring *r);

/* Room for `size` contiguous bytes: its offset in *off, and the bytes it
 * holds in *charged (size, plus a skipped ring end). false if not now. */
bool ws_ring_reserve(struct ws_ring *r, uint64_t size, uint64_t *off, uint64_t *charged);

/* Give back the oldest reservation still held: `charged` bytes, ending at
 * `end` (its off + size). */
void ws_ring_release(struct ws_ring *r, uint64_t charged, uint64_t end);

/* ---- transform.c ---------------------------------------------------------- */

/* Transform chunk c from src (rows of stride ld elements) into out, and its
 * fp8 scales into scales: on the pool's threads when it is large enough to
 * be worth waking them, else on the caller's. pool may be NULL. */
void ws_transform_chunk(struct ws_pool *pool, const struct xfer_ws_schedule *s,
			const struct xfer_ws_chunk *c, const uint8_t *src, uint64_t ld,
			uint8_t *out, float *scales);

#endif
