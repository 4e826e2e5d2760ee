// SPDX-License-Identifier: MIT
/*
 * bf16 -> fp8 e4m3 with one float32 scale per 128x128 block: one CUDA block
 * per quantisation block, 256 threads. Each thread owns one column and every
 * other row of the block: a max-reduction over the finite |x| (exact and
 * order-free, so it equals the C reference's), then each thread encodes its
 * elements with the shared integer-rounding encoder (kernels/fp8_e4m3.h).
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

extern "C" int xfer_ws_quant_fp8_cuda(const uint16_t *src, size_t rows, size_t cols, size_t src_ld,
				      uint8_t *dst, size_t dst_ld, float *scales, void *stream)
{
	size_t scols = (cols + BLK - 1) / BLK, srows = (rows + BLK - 1) / BLK;
	cudaError_t e;

	if (!rows || !cols)
		return 0;
	if (srows > 65535 || scols > 0x7fffffff)
		return -(int)cudaErrorInvalidValue;
	xfer_quant_fp8_kernel<<<dim3((unsigned)scols, (unsigned)srows), THREADS, 0, (cudaStream_t)stream>>>(
		src, rows, cols, src_ld, dst, dst_ld, scales, scols);
	e = cudaGetLastError();
	return e == cudaSuccess ? 0 : -(int)e;
}
