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
 * The scalar code above rounds with branches on each value; these are the
 * same integer steps as selects on 8 lanes. _mm256_div_ps is an IEEE
 * division per lane (what XFER_FP8_DIV and the kernel's __fdiv_rn give).
 * test_ws_quant checks xfer_ws_e4m3_x8 against xfer_fp8_e4m3_from_f32 for
 * every float, and the quantisation against its own reference. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WS_HAVE_X8 1

__attribute__((target("avx2"))) static __m256i e4m3_x8(__m256 x)
{
	const __m256i one = _mm256_set1_epi32(1);
	__m256i u = _mm256_castps_si256(x);
	__m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
	__m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
	__m256i e = _mm256_srli_epi32(a, 23);
	__m256i normal = _mm256_cmpgt_epi32(e, _mm256_set1_epi32(120));   /* |x| >= 2^-6 */
	/* normal: keep 3 mantissa bits, ties to even, rebias 127 -> 7, cap 0x7e */
	__m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, 20), one);
	__m256i rn = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(0x7ffff)), odd), 20);

	rn = _mm256_min_epu32(_mm256_sub_epi32(rn, _mm256_set1_epi32(120 << 3)), _mm256_set1_epi32(0x7e));
	/* subnormal: m >> s in units of 2^-9, ties to even; s capped at 31 */
	__m256i s = _mm256_min_epu32(_mm256_sub_epi32(_mm256_set1_epi32(141), e), _mm256_set1_epi32(31));

	s = _mm256_blendv_epi8(s, _mm256_set1_epi32(21), normal);
	__m256i m = _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x7fffff)),
				    _mm256_set1_epi32(0x800000));
	__m256i q = _mm256_srlv_epi32(m, s);
	__m256i rem = _mm256_and_si256(m, _mm256_sub_epi32(_mm256_sllv_epi32(one, s), one));
	__m256i half = _mm256_sllv_epi32(one, _mm256_sub_epi32(s, one));
	__m256i up = _mm256_or_si256(_mm256_cmpgt_epi32(rem, half),
				     _mm256_and_si256(_mm256_cmpeq_epi32(rem, half),
						      _mm256_cmpeq_epi32(_mm256_and_si256(q, one), one)));

	q = _mm256_sub_epi32(q, up);   /* up is -1 where rounding up */
	__m256i r = _mm256_blendv_epi8(q, rn, normal);

	r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7e),
			       _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x43dfffff)));   /* >= 448 */
	r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7f),
			       _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000)));   /* NaN */
	return _mm256_or_si256(r, sign);
}

/* Eight 32-bit lanes (each < 256) to eight bytes. */
__attribute__((target("avx2"))) static void store8(uint8_t *out, __m256i v)
{
	__m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
	__m128i w = _mm_packus_epi32(lo, hi);                 /* 8 x u16 */

	_mm_storel_epi64((__m128i *)(void *)out, _mm_packus_epi16(w, w));
}

__attribute__((target("avx2"))) static __m256 bf16_x8(const uint16_t *in)
{
	__m128i h = _mm_loadu_si128((const __m128i *)(const void *)in);

	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2"))) void xfer_ws_e4m3_x8(const float *in, uint8_t *out)
{
	store8(out, e4m3_x8(_mm256_loadu_ps(in)));
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
			__m256i a = _mm256_and_si256(_mm256_castps_si256(bf16_x8(in + j)), absm);

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
			store8(out + j, e4m3_x8(_mm256_div_ps(bf16_x8(in + j), vs)));
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
