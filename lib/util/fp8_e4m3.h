/* SPDX-License-Identifier: MIT */
/*
 * fp8 e4m3 (the "fn" variant: no infinities, 0x7f/0xff are NaN, max 448)
 * conversions shared by the C reference (lib/weightsync/quant.c) and the
 * CUDA kernel (kernels/quant_fp8.cu), so that both give the same bits.
 * Integer rounding only: no dependence on the FPU's rounding mode or on
 * the compiler contracting float operations.
 */
#ifndef XFER_FP8_E4M3_H
#define XFER_FP8_E4M3_H

#include <stdint.h>

#ifdef __CUDACC__
#define XFER_FP8_FN static __host__ __device__ __forceinline__
#else
#define XFER_FP8_FN static inline
#endif

/* IEEE division rounded to nearest on both sides (device code could otherwise
 * be built with approximate division). */
#if defined(__CUDA_ARCH__)
#define XFER_FP8_DIV(a, b) __fdiv_rn((a), (b))
#else
#define XFER_FP8_DIV(a, b) ((a) / (b))
#endif

XFER_FP8_FN uint32_t xfer_fp8_f32_bits(float x)
{
	union { float f; uint32_t u; } v;

	v.f = x;
	return v.u;
}

XFER_FP8_FN float xfer_fp8_bits_f32(uint32_t u)
{
	union { float f; uint32_t u; } v;

	v.u = u;
	return v.f;
}

XFER_FP8_FN float xfer_fp8_bf16_to_f32(uint16_t b)
{
	return xfer_fp8_bits_f32((uint32_t)b << 16);
}

/* float -> e4m3, round to nearest even, saturating to +-448; NaN -> 0x7f | sign. */
XFER_FP8_FN uint8_t xfer_fp8_e4m3_from_f32(float x)
{
	uint32_t u = xfer_fp8_f32_bits(x);
	uint32_t sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu, e = a >> 23;

	if (a > 0x7f800000u)
		return (uint8_t)(sign | 0x7fu);
	if (a >= 0x43e00000u) /* >= 448, Inf included */
		return (uint8_t)(sign | 0x7eu);
	if (e >= 121u) { /* >= 2^-6: normal in e4m3; keep 3 of 23 mantissa bits */
		uint32_t r = (a + 0x7ffffu + ((a >> 20) & 1u)) >> 20;

		r -= 120u << 3; /* exponent bias 127 -> 7 */
		return (uint8_t)(sign | (r > 0x7eu ? 0x7eu : r));
	}
	/* subnormal in e4m3: units of 2^-9; value = M * 2^(e - 150) */
	{
		uint32_t s = 141u - e, m, q, rem, half;

		if (e == 0 || s >= 25u)
			return (uint8_t)sign;
		m = (a & 0x7fffffu) | 0x800000u;
		q = m >> s;
		rem = m & ((1u << s) - 1u);
		half = 1u << (s - 1u);
		if (rem > half || (rem == half && (q & 1u)))
			q++;
		return (uint8_t)(sign | q);
	}
}

XFER_FP8_FN float xfer_fp8_e4m3_to_f32(uint8_t v)
{
	uint32_t sign = (uint32_t)(v & 0x80u) << 24, exp = (v >> 3) & 0xfu, m = v & 7u;

	if (exp == 15u && m == 7u)
		return xfer_fp8_bits_f32(sign | 0x7fc00000u);
	if (exp == 0u) /* m * 2^-9, exact in float */
		return xfer_fp8_bits_f32(sign | xfer_fp8_f32_bits((float)m * (1.0f / 512.0f)));
	return xfer_fp8_bits_f32(sign | ((exp + 120u) << 23) | (m << 20));
}

/* amax over the finite values of a block -> scale (dequantised = q * scale). */
XFER_FP8_FN float xfer_fp8_block_scale(float amax)
{
	return amax > 0.0f ? XFER_FP8_DIV(amax, 448.0f) : 1.0f;
}

#endif
