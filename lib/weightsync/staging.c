/* SPDX-License-Identifier: MIT */
/*
 * Staging: the bytes a chunk holds while its writes are out, and the ring
 * the executor holds them in. The planner's peak (plan.c), the simulator's
 * watermark (sim.c) and the executor's ring all count a chunk with
 * ws_chunk_staging_bytes, so the peak the schedule reports is what the
 * executor charges.
 */
#include "exec_internal.h"

#define STAGING_ALIGN 64ull   /* a cache line: data and scales each start on one */

static uint64_t align_staging(uint64_t v)
{
	return (v + STAGING_ALIGN - 1) & ~(STAGING_ALIGN - 1);
}

uint64_t ws_chunk_staging_bytes(const struct xfer_ws_chunk *c)
{
	/* the scales behind the data */
	return align_staging(c->out_bytes) + align_staging(c->scale_bytes);
}

uint64_t ws_chunk_scales_offset(const struct xfer_ws_chunk *c)
{
	return align_staging(c->out_bytes);
}

void ws_ring_reset(struct ws_ring *r)
{
	r->head = r->tail = r->used = r->peak = 0;
}

/* When the end of the ring is too short the chunk starts again at 0 and the
 * skipped end is charged to it, so releasing in order gives it all back. */
bool ws_ring_reserve(struct ws_ring *r, uint64_t size, uint64_t *off, uint64_t *charged)
{
	if (r->used == 0)
		r->head = r->tail = 0;
	if (r->used + size > r->size)
		return false;
	*charged = size;
	if (r->head >= r->tail) {        /* free: [head, end) and [0, tail) */
		if (r->head + size <= r->size) {
			*off = r->head;
		} else if (size <= r->tail) {
			*charged += r->size - r->head;
			*off = 0;
		} else {
			return false;
		}
	} else {                         /* free: [head, tail) */
		if (r->head + size > r->tail)
			return false;
		*off = r->head;
	}
	r->head = *off + size;
	r->used += *charged;
	if (r->used > r->peak)
		r->peak = r->used;
	return true;
}

void ws_ring_release(struct ws_ring *r, uint64_t charged, uint64_t end)
{
	r->used -= charged;
	r->tail = end;
}
