// SPDX-License-Identifier: MIT
/*
 * bf16 -> fp8 e4m3 with one float32 scale per 128x128 block: one CUDA block
 * per quantisation block, 256 threads. A max-reduction over the finite |x|
 * (exact and order-free, so it equals the C reference's), then each thread
 * encodes its elements with the shared integer-rounding encoder
 * (kernels/fp8_e4m3.h).
 *
 * Two kernels. The vector one, for the usual case (columns, strides and
 * pointers multiples of 8 elements), has each thread load 8 bf16 at once
 * (16 bytes) from 8 rows, keep all 64 values in registers across the
 * reduction and store 8 codes at once: the block is read once, with wide
 * coalesced loads, and memory, not instruction issue, sets the pace. The
 * scalar one (one column per thread, every other row, the block read twice)
 * takes any shape and stride.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "fp8_e4m3.h"
#include "quant_fp8.h"

#define BLK 128
#define THREADS 256

__global__ void xfer_quant_fp8_kernel(const uint16_t *__restrict__ src, size_t rows, size_t cols,
				      size_t ld, uint8_t *__restrict__ dst, size_t dld,
				      float *__restrict__ scales, size_t scols)
{
	__shared__ float red[THREADS];
	const unsigned tx = threadIdx.x;
	const size_t r0 = (size_t)blockIdx.y * BLK, col = (size_t)blockIdx.x * BLK + (tx & (BLK - 1));
	const size_t rend = r0 + BLK < rows ? r0 + BLK : rows;
	float amax = 0.0f, scale;

	if (col < cols)
		for (size_t r = r0 + (tx / BLK); r < rend; r += THREADS / BLK) {
			float f = fabsf(xfer_fp8_bf16_to_f32(src[r * ld + col]));

			if (isfinite(f) && f > amax)
				amax = f;
		}
	red[tx] = amax;
	__syncthreads();
	for (unsigned s = THREADS / 2; s > 0; s >>= 1) {
		if (tx < s)
			red[tx] = fmaxf(red[tx], red[tx + s]);
		__syncthreads();
	}
	scale = xfer_fp8_block_scale(red[0]);
	if (tx == 0)
		scales[(size_t)blockIdx.y * scols + blockIdx.x] = scale;
	if (col >= cols)
		return;
	for (size_t r = r0 + (tx / BLK); r < rend; r += THREADS / BLK)
		dst[r * dld + col] = xfer_fp8_e4m3_from_f32(XFER_FP8_DIV(xfer_fp8_bf16_to_f32(src[r * ld + col]), scale));
}

/* Thread tx owns the 8 columns starting at (tx % 16) * 8 in rows tx / 16 + 16 * i. */
#define VEC 8
#define VROWS (THREADS * VEC / BLK) /* rows one pass of the block covers: 16 */

__global__ void xfer_quant_fp8_vec_kernel(const uint16_t *__restrict__ src, size_t rows, size_t cols,
					  size_t ld, uint8_t *__restrict__ dst, size_t dld,
					  float *__restrict__ scales, size_t scols)
{
	__shared__ float red[THREADS / 32];
	const unsigned tx = threadIdx.x;
	const size_t r0 = (size_t)blockIdx.y * BLK + tx / (BLK / VEC);
	const size_t col = (size_t)blockIdx.x * BLK + (tx % (BLK / VEC)) * VEC;
	uint4 v[BLK / VROWS];
	float amax = 0.0f, scale;

#pragma unroll
	for (int i = 0; i < BLK / VROWS; i++) {
		size_t r = r0 + (size_t)i * VROWS;

		v[i] = make_uint4(0, 0, 0, 0);
		if (col < cols && r < rows)
			v[i] = __ldg((const uint4 *)(src + r * ld + col));
	}
#pragma unroll
	for (int i = 0; i < BLK / VROWS; i++) {
		const uint32_t w[4] = { v[i].x, v[i].y, v[i].z, v[i].w };

#pragma unroll
		for (int k = 0; k < 8; k++) {
			float f = fabsf(xfer_fp8_bf16_to_f32((uint16_t)(w[k / 2] >> (16 * (k & 1)))));

			if (isfinite(f) && f > amax)
				amax = f;
		}
	}
	for (int off = 16; off > 0; off >>= 1)
		amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
	if (tx % 32 == 0)
		red[tx / 32] = amax;
	__syncthreads();
	amax = red[0];
#pragma unroll
	for (int i = 1; i < THREADS / 32; i++)
		amax = fmaxf(amax, red[i]);
	scale = xfer_fp8_block_scale(amax);
	if (tx == 0)
		scales[(size_t)blockIdx.y * scols + blockIdx.x] = scale;
	if (col >= cols)
		return;
#pragma unroll
	for (int i = 0; i < BLK / VROWS; i++) {
		const uint32_t w[4] = { v[i].x, v[i].y, v[i].z, v[i].w };
		size_t r = r0 + (size_t)i * VROWS;
		uint32_t q[2] = { 0, 0 };

		if (r >= rows)
			break;
#pragma unroll
		for (int k = 0; k < 8; k++) {
			float f = xfer_fp8_bf16_to_f32((uint16_t)(w[k / 2] >> (16 * (k & 1))));

			q[k / 4] |= (uint32_t)xfer_fp8_e4m3_from_f32(XFER_FP8_DIV(f, scale)) << (8 * (k & 3));
		}
		*(uint2 *)(dst + r * dld + col) = make_uint2(q[0], q[1]);
	}
}

extern "C" int xfer_ws_quant_fp8_cuda(const uint16_t *src, size_t rows, size_t cols, size_t src_ld,
				      uint8_t *dst, size_t dst_ld, float *scales, void *stream)
{
	size_t scols = (cols + BLK - 1) / BLK, srows = (rows + BLK - 1) / BLK;
	cudaError_t e;

	if (!rows || !cols)
		return 0;
	if (srows > 65535 || scols > 0x7fffffff)
		return -(int)cudaErrorInvalidValue;
	/* whole 8-element vectors, 16-byte aligned loads and 8-byte aligned stores */
	if (cols % VEC == 0 && src_ld % VEC == 0 && dst_ld % VEC == 0 && (uintptr_t)src % 16 == 0 &&
	    (uintptr_t)dst % 8 == 0)
		xfer_quant_fp8_vec_kernel<<<dim3((unsigned)scols, (unsigned)srows), THREADS, 0,
					    (cudaStream_t)stream>>>(src, rows, cols, src_ld, dst, dst_ld, scales, scols);
	else
		xfer_quant_fp8_kernel<<<dim3((unsigned)scols, (unsigned)srows), THREADS, 0,
					(cudaStream_t)stream>>>(src, rows, cols, src_ld, dst, dst_ld, scales, scols);
	e = cudaGetLastError();
	return e == cudaSuccess ? 0 : -(int)e;
}
