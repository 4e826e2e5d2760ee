/* SPDX-License-Identifier: MIT */
/*
 * GPU bf16 -> fp8 e4m3 block quantisation (kernels/quant_fp8.cu). Same
 * buffers and the same bits as the C reference xfer_ws_quant_fp8()
 * (lib/weightsync/quant.c): src rows x cols bf16 with row stride src_ld,
 * dst rows x cols e4m3 with row stride dst_ld, scales ceil(rows/128) x
 * ceil(cols/128) float32 row-major. All pointers are device memory.
 * Returns 0 once the kernel is queued on stream, or -(cudaError_t).
 */
#ifndef XFER_QUANT_FP8_H
#define XFER_QUANT_FP8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int xfer_ws_quant_fp8_cuda(const uint16_t *src, size_t rows, size_t cols, size_t src_ld,
			   uint8_t *dst, size_t dst_ld, float *scales, void *stream);

#ifdef __cplusplus
}
#endif
#endif
