/* SPDX-License-Identifier: MIT */
/*
 * The inference side of the executor, and what it shares with the trainer
 * side: how a chunk's write is cut into pieces. Receivers do nothing but
 * count immediates, one per piece and one per scale write, then one
 * barrier per trainer.
 */
#include <errno.h>

#include "compiler.h"
#include "exec_internal.h"

uint32_t ws_chunk_pieces(const struct xfer_ws_schedule *s, const struct xfer_ws_chunk *c,
			 struct ws_piece *pc)
{
	uint64_t row0, rows, lo, hi;

	pc[0] = (struct ws_piece){ 0, c->rows, false };
	if (c->gather_offset == XFER_WS_NO_GATHER || c->transform != XFER_WS_XF_COPY ||
	    c->cols != s->params[c->param].cols)
		return 1;
	xfer_ws_shard_rows(s, c->param, c->owner, &row0, &rows);
	lo = row0 > c->row0 ? row0 : c->row0;
	hi = row0 + rows < c->row0 + c->rows ? row0 + rows : c->row0 + c->rows;
	if (hi <= lo)
		return 1;  /* it holds none of them: all gathered */
	uint32_t n = 0;

	if (lo > c->row0)
		pc[n++] = (struct ws_piece){ 0, lo - c->row0, false };
	pc[n++] = (struct ws_piece){ lo - c->row0, hi - lo, true };
	if (hi < c->row0 + c->rows)
		pc[n++] = (struct ws_piece){ hi - c->row0, c->row0 + c->rows - hi, false };
	return n;
}

XFER_EXPORT uint64_t xfer_ws_exec_expected(const struct xfer_ws_schedule *s, uint32_t rank)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < s->nwrites; i++) {
		const struct xfer_ws_write *w = &s->writes[i];

		if (w->dst_rank == rank) {
			const struct xfer_ws_chunk *c = &s->chunks[w->chunk];
			struct ws_piece pc[WS_MAX_PIECES];

			n += ws_chunk_pieces(s, c, pc) + (c->scale_bytes ? 1 : 0);
		}
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
