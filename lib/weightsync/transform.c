/* SPDX-License-Identifier: MIT */
/*
 * A chunk's transform: its rows copied, or quantised to fp8 e4m3 with one
 * scale per 128x128 block, into its staging. A large chunk is cut into
 * parts that the executor's transform threads (pool.c) take as they come
 * free.
 */
#include <string.h>

#include "compiler.h"
#include "exec_internal.h"

/* Source bytes under which a chunk is transformed by one thread: waking
 * helpers costs tens of microseconds, quantising 512 KiB about 300. */
#define SPLIT_MIN_BYTES (512u << 10)
#define PARTS_PER_THREAD 4   /* a split chunk's parts, per transform thread */

/* Rows [r0, r1) of a chunk's transform; for fp8, r0 starts a block. */
static void transform_rows(const struct xfer_ws_schedule *s, const struct xfer_ws_chunk *c,
			   const uint8_t *src, uint64_t ld, uint8_t *out, float *scales,
			   uint64_t r0, uint64_t r1)
{
	const struct xfer_ws_param *p = &s->params[c->param];
	unsigned es = xfer_ws_dtype_size(p->dtype);

	if (c->transform == XFER_WS_XF_FP8) {
		uint64_t scols = (c->cols + XFER_WS_FP8_BLOCK - 1) / XFER_WS_FP8_BLOCK;

		xfer_ws_quant_fp8((const uint16_t *)src + r0 * ld, r1 - r0, c->cols, ld,
				  out + r0 * c->cols, c->cols, scales + r0 / XFER_WS_FP8_BLOCK * scols);
		return;
	}
	for (uint64_t r = r0; r < r1; r++)
		memcpy(out + r * c->cols * es, src + r * ld * es, c->cols * es);
}

XFER_EXPORT void xfer_ws_chunk_transform(const struct xfer_ws_schedule *s,
					 const struct xfer_ws_chunk *c, const void *src,
					 uint64_t ld, void *out, void *scales)
{
	transform_rows(s, c, src, ld, out, scales, 0, c->rows);
}

/* One chunk's transform cut into parts taken by the pool's threads as they
 * come free. fp8: a part is a run of 128x128 blocks in row-major order
 * (whole blocks, so each part owns its scales; a run may end mid block
 * row); copies: a run of rows. More parts than threads, so no thread
 * waits long on another's last part. */
struct xform_job {
	const struct xfer_ws_schedule *s;
	const struct xfer_ws_chunk *c;
	const uint8_t *src;
	uint64_t ld, nunits;        /* fp8: blocks; copy: rows */
	uint8_t *out;
	float *scales;
	uint32_t nparts;
};

static void xform_part(void *ctx, uint32_t i)
{
	const struct xform_job *j = ctx;
	const struct xfer_ws_chunk *c = j->c;
	uint64_t u0 = j->nunits * i / j->nparts, u1 = j->nunits * (i + 1) / j->nparts;
	const uint64_t B = XFER_WS_FP8_BLOCK, bcols = (c->cols + B - 1) / B;

	if (c->transform != XFER_WS_XF_FP8) {
		transform_rows(j->s, c, j->src, j->ld, j->out, j->scales, u0, u1);
		return;
	}
	while (u0 < u1) {   /* the part's blocks, a block row at a time */
		uint64_t br = u0 / bcols, b0 = u0 % bcols;
		uint64_t b1 = u1 - br * bcols < bcols ? u1 - br * bcols : bcols;
		uint64_t r0 = br * B, c0 = b0 * B, c1 = b1 * B < c->cols ? b1 * B : c->cols;
		uint64_t rows = r0 + B < c->rows ? B : c->rows - r0;

		xfer_ws_quant_fp8((const uint16_t *)j->src + r0 * j->ld + c0, rows, c1 - c0, j->ld,
				  j->out + r0 * c->cols + c0, c->cols, j->scales + br * bcols + b0);
		u0 = br * bcols + b1;
	}
}

void ws_transform_chunk(struct ws_pool *pool, const struct xfer_ws_schedule *s,
			const struct xfer_ws_chunk *c, const uint8_t *src, uint64_t ld,
			uint8_t *out, float *scales)
{
	unsigned es = xfer_ws_dtype_size(s->params[c->param].dtype);
	struct xform_job j = {
		.s = s, .c = c, .src = src, .ld = ld, .out = out, .scales = scales,
		.nunits = c->rows, .nparts = 1,
	};

	if (c->transform == XFER_WS_XF_FP8)
		j.nunits = ((c->rows + XFER_WS_FP8_BLOCK - 1) / XFER_WS_FP8_BLOCK) *
			   ((c->cols + XFER_WS_FP8_BLOCK - 1) / XFER_WS_FP8_BLOCK);
	if (pool && c->rows * c->cols * es >= SPLIT_MIN_BYTES) {
		uint64_t want = (uint64_t)ws_pool_threads(pool) * PARTS_PER_THREAD;

		j.nparts = (uint32_t)(j.nunits < want ? j.nunits : want);
	}
	if (pool)
		ws_pool_run(pool, xform_part, &j, j.nparts);
	else
		xform_part(&j, 0);
}
