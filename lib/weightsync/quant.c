// SPDX-License-Identifier: MIT
/*
 * bf16 -> fp8 e4m3 with one float32 scale per 128x128 block: the C reference
 * of kernels/quant_fp8.cu (same buffers, same bits). Policy: the block's
 * amax is taken over finite values (Inf and NaN excluded; an all-zero or
 * all-non-finite block gets scale 1), scale = amax / 448, q = x / scale
 * rounded to nearest even and saturated to +-448 (Inf too); NaN stays NaN.
 */
#include <math.h>

#include "ws_internal.h"
#include "fp8_e4m3.h"

XFER_EXPORT uint8_t xfer_ws_f32_to_e4m3(float x)
{
	return xfer_fp8_e4m3_from_f32(x);
}

XFER_EXPORT float xfer_ws_e4m3_to_f32(uint8_t v)
{
	return xfer_fp8_e4m3_to_f32(v);
}

/* ---- AVX2: 8 values at a time, the same bits ------------------------------
 *
 * lib/util/fp8_e4m3_x8.h has the lanes' conversions. _mm256_div_ps is an IEEE
 * division per lane (what XFER_FP8_DIV and the kernel's __fdiv_rn give).
 * test_ws_quant checks xfer_ws_e4m3_x8 against xfer_fp8_e4m3_from_f32 for
 * every float, and the quantisation against its own reference. */
#include "fp8_e4m3_x8.h"
#ifdef XFER_HAVE_X8
#define WS_HAVE_X8 1

__attribute__((target("avx2"))) void xfer_ws_e4m3_x8(const float *in, uint8_t *out)
{
	xfer_store8_x8(out, xfer_e4m3_x8(_mm256_loadu_ps(in)));
}

/* One block (rows bi..ri, columns bj..cj): amax, scale, codes. */
__attribute__((target("avx2"))) static float block_x8(const uint16_t *src, size_t src_ld,
						     uint8_t *dst, size_t dst_ld, size_t bi,
						     size_t ri, size_t bj, size_t cj)
{
	const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
	size_t w = cj - bj, w8 = w & ~(size_t)7;
	__m256i vmax = _mm256_setzero_si256();
	uint32_t smax = 0;

	/* |x| as bits orders like |x|; non-finite ones (>= Inf) count as 0 */
	for (size_t i = bi; i < ri; i++) {
		const uint16_t *in = src + i * src_ld + bj;
		size_t j = 0;

		for (; j < w8; j += 8) {
			__m256i a = _mm256_and_si256(_mm256_castps_si256(xfer_bf16_x8(in + j)), absm);

			a = _mm256_andnot_si256(_mm256_cmpgt_epi32(a, _mm256_sub_epi32(inf, _mm256_set1_epi32(1))), a);
			vmax = _mm256_max_epu32(vmax, a);
		}
		for (; j < w; j++) {
			uint32_t a = ((uint32_t)in[j] << 16) & 0x7fffffffu;

			if (a < 0x7f800000u && a > smax)
				smax = a;
		}
	}
	uint32_t lanes[8];

	_mm256_storeu_si256((__m256i *)(void *)lanes, vmax);
	for (int k = 0; k < 8; k++)
		smax = lanes[k] > smax ? lanes[k] : smax;
	float amax = xfer_fp8_bits_f32(smax), scale = xfer_fp8_block_scale(amax);
	__m256 vs = _mm256_set1_ps(scale);

	for (size_t i = bi; i < ri; i++) {
		const uint16_t *in = src + i * src_ld + bj;
		uint8_t *out = dst + i * dst_ld + bj;
		size_t j = 0;

		for (; j < w8; j += 8)
			xfer_store8_x8(out + j, xfer_e4m3_x8(_mm256_div_ps(xfer_bf16_x8(in + j), vs)));
		for (; j < w; j++)
			out[j] = xfer_fp8_e4m3_from_f32(XFER_FP8_DIV(xfer_fp8_bf16_to_f32(in[j]), scale));
	}
	return scale;
}
#endif

XFER_EXPORT void xfer_ws_quant_fp8(const uint16_t *src, size_t rows, size_t cols, size_t src_ld,
				   uint8_t *dst, size_t dst_ld, float *scales)
{
#ifdef WS_HAVE_X8
	if (__builtin_cpu_supports("avx2")) {
		size_t B = XFER_WS_FP8_BLOCK, scols = (cols + B - 1) / B;

		for (size_t bi = 0; bi < rows; bi += B)
			for (size_t bj = 0; bj < cols; bj += B)
				scales[(bi / B) * scols + bj / B] =
					block_x8(src, src_ld, dst, dst_ld, bi, bi + B < rows ? bi + B : rows,
						 bj, bj + B < cols ? bj + B : cols);
		return;
	}
#endif
	xfer_ws_quant_fp8_scalar(src, rows, cols, src_ld, dst, dst_ld, scales);
}

/* Value by value: the reference the AVX2 path is checked against. */
void xfer_ws_quant_fp8_scalar(const uint16_t *src, size_t rows, size_t cols, size_t src_ld,
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
