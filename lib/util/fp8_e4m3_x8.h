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

/* The scalar code rounds with branches on each value; these are the same
 * integer steps as selects on 8 lanes. */
XFER_X8_FN __m256i xfer_e4m3_x8(__m256 x)
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
