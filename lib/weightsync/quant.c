// SPDX-License-Identifier: MIT
/*
 * bf16 -> fp8 e4m3 with one float32 scale per 128x128 block: the C reference
 * of kernels/quant_fp8.cu (same buffers, same bits). Policy: the block's
 * amax is taken over finite values (Inf and NaN excluded; an all-zero or
 * all-non-finite block gets scale 1), scale = amax / 448, q = x / scale
 * rounded to nearest even and saturated to +-448 (Inf too); NaN stays NaN.
 */
#include <math.h>

#include "weightsync/ws_internal.h"
#include "fp8_e4m3.h"

WS_API uint8_t xfer_ws_f32_to_e4m3(float x)
{
	return xfer_fp8_e4m3_from_f32(x);
}

WS_API float xfer_ws_e4m3_to_f32(uint8_t v)
{
	return xfer_fp8_e4m3_to_f32(v);
}

WS_API void xfer_ws_quant_fp8(const uint16_t *src, size_t rows, size_t cols, size_t src_ld,
			      uint8_t *dst, size_t dst_ld, float *scales)
{
	size_t B = XFER_WS_FP8_BLOCK, scols = (cols + B - 1) / B;

	for (size_t bi = 0; bi < rows; bi += B)
		for (size_t bj = 0; bj < cols; bj += B) {
			size_t ri = bi + B < rows ? bi + B : rows, cj = bj + B < cols ? bj + B : cols;
			float amax = 0.0f, scale;

			for (size_t i = bi; i < ri; i++)
				for (size_t j = bj; j < cj; j++) {
					float f = fabsf(xfer_fp8_bf16_to_f32(src[i * src_ld + j]));

					if (isfinite(f) && f > amax)
						amax = f;
				}
			scale = xfer_fp8_block_scale(amax);
			scales[(bi / B) * scols + bj / B] = scale;
			for (size_t i = bi; i < ri; i++)
				for (size_t j = bj; j < cj; j++)
					dst[i * dst_ld + j] =
						xfer_fp8_e4m3_from_f32(XFER_FP8_DIV(xfer_fp8_bf16_to_f32(src[i * src_ld + j]), scale));
		}
}
