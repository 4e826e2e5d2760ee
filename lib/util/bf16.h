/* SPDX-License-Identifier: MIT */
/*
 * bfloat16 <-> float32 shared by the C references (lib/moe/ref.c) and the
 * CUDA kernels (kernels/moe.cu), so that both give the same bits: integer
 * rounding only, independent of the FPU's rounding mode.
 */
#ifndef XFER_BF16_H
#define XFER_BF16_H

#include <stdint.h>

#ifdef __CUDACC__
#define XFER_BF16_FN static __host__ __device__ __forceinline__
#else
#define XFER_BF16_FN static inline
#endif

XFER_BF16_FN float xfer_bf16_to_f32(uint16_t b)
{
	union { float f; uint32_t u; } v;

	v.u = (uint32_t)b << 16;
	return v.f;
}

/* Round to nearest, ties to even; +-Inf stay, finite values past bf16's
 * largest become +-Inf (as IEEE rounding does); NaN keeps its sign and top
 * payload bits and is made quiet (a payload only in the low 16 bits would
 * otherwise round to Inf). */
XFER_BF16_FN uint16_t xfer_bf16_from_f32(float f)
{
	union { float f; uint32_t u; } v;

	v.f = f;
	if ((v.u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((v.u >> 16) | 0x0040u);
	return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

#endif
