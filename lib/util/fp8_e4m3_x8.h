/* SPDX-License-Identifier: MIT */
/*
 * AVX2 twins of fp8_e4m3.h's conversions and of bf16.h's rounding, 8 values
 * at a time with the same bits, for the C references on x86-64
 * (lib/weightsync/quant.c, lib/moe/ref.c). Callers are compiled with
 * __attribute__((target("avx2"))) and dispatch at run time
 * (__builtin_cpu_supports), so the library still runs on CPUs without AVX2.
 * XFER_HAVE_X8 is defined where these exist.
 */
#ifndef XFER_FP8_E4M3_X8_H
#define XFER_FP8_E4M3_X8_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#include <immintrin.h>
#include <stdint.h>

#define XFER_HAVE_X8 1
#define XFER_X8_FN static inline __attribute__((target("avx2"), always_inline))

/* xfer_fp8_e4m3_from_f32 on 8 lanes, the same bits (test_ws_quant checks
 * every float). Normal results: the scalar code's integer rounding to 3
 * mantissa bits. Subnormal ones: the code is |x| in units of 2^-9 rounded
 * to nearest even, which |x| * 512 (exact: a power of two) rounded by
 * _mm256_round_ps with an explicit mode (the FPU's mode does not matter)
 * gives; 8 there is 2^-6's code, as the scalar code's carry gives too.
 * Saturation (>= 448, Inf) and NaN are selects over both. */
XFER_X8_FN __m256i xfer_e4m3_x8(__m256 x)
{
	__m256i u = _mm256_castps_si256(x);
	__m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
	__m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
	__m256i normal = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x3c7fffff));   /* |x| >= 2^-6 */
	/* normal: keep 3 mantissa bits, ties to even, rebias 127 -> 7 (a
	 * result past 0x7e needs |x| >= 448, saturated below) */
	__m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
	__m256i rn = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(0x7ffff)), odd), 20);

	rn = _mm256_sub_epi32(rn, _mm256_set1_epi32(120 << 3));
	__m256 sub = _mm256_round_ps(_mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(512.0f)),
				     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256i r = _mm256_blendv_epi8(_mm256_cvttps_epi32(sub), rn, normal);

	r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7e),
			       _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x43dfffff)));   /* >= 448 */
	r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7f),
			       _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000)));   /* NaN */
	return _mm256_or_si256(r, sign);
}

/* Eight 32-bit lanes (each < 256) to eight bytes. */
XFER_X8_FN void xfer_store8_x8(uint8_t *out, __m256i v)
{
	__m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
	__m128i w = _mm_packus_epi32(lo, hi);                 /* 8 x u16 */

	_mm_storel_epi64((__m128i *)(void *)out, _mm_packus_epi16(w, w));
}

/* Eight bf16 (unaligned) to floats. */
XFER_X8_FN __m256 xfer_bf16_x8(const void *in)
{
	__m128i h = _mm_loadu_si128((const __m128i *)in);

	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* |x| as bits, non-finite lanes as 0: bits of non-negative floats order as
 * the floats do, so an unsigned max of these is the block's finite amax. */
XFER_X8_FN __m256i xfer_abs_finite_x8(__m256 x)
{
	__m256i a = _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7fffffff));

	return _mm256_andnot_si256(_mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f7fffff)), a);
}

/* Eight floats to bf16 (xfer_bf16_from_f32 per lane) stored unaligned. */
XFER_X8_FN void xfer_bf16_store_x8(void *out, __m256 x)
{
	__m256i u = _mm256_castps_si256(x);
	__m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
	__m256i rn = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
	__m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
					 _mm256_set1_epi32(0x7f800000));
	__m256i r = _mm256_blendv_epi8(rn, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)), nan);
	__m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);

	_mm_storeu_si128((__m128i *)out, _mm_packus_epi32(lo, hi));
}
#endif

#endif
