/* SPDX-License-Identifier: MIT */
/*
 * MoE dispatch/combine kernels (kernels/moe.cu): the GPU twins of the C
 * references at the end of include/xfer_moe.h (lib/moe/ref.c), with the
 * same arguments and the same output bytes. tests/gpu/test_moe.cu compares
 * them bit for bit.
 *
 * l is a host pointer (read when the kernel is queued); every other pointer
 * is device memory, arrays of offsets and of source pointers included.
 * Each call returns 0 once its kernels are queued on stream (a cudaStream_t;
 * NULL is the default stream), or -(cudaError_t): -cudaErrorInvalidValue
 * for a layout whose sizes disagree (E != R * L, H not whole scale groups)
 * or num_tokens over max_tokens, where the reference says -EINVAL.
 */
#ifndef XFER_MOE_KERNELS_H
#define XFER_MOE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "xfer_moe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* xfer_moe_route. counts[R * L] and pos[num_tokens * K] as the reference
 * writes them. A kernel cannot return -EINVAL, so an expert id outside
 * -1 .. E-1 is reported through bad (a device word, may be NULL): the
 * lowest t * K + k holding one, UINT32_MAX if there is none. When bad is
 * not UINT32_MAX, counts and pos are not to be used (the reference refuses
 * such a routing and sends nothing). */
int xfer_moe_route_cuda(const struct xfer_moe_layout *l, const int32_t *topk,
			uint32_t num_tokens, uint32_t *counts, uint32_t *pos, uint32_t *bad,
			void *stream);

/* xfer_moe_pack. dest_off[R]: byte offset of each destination's records in
 * send. Any alignment works; records 16-byte aligned and x rows 16-byte
 * aligned (bf16) or 8-byte aligned (fp8) take the wide loads and stores. */
int xfer_moe_pack_cuda(const struct xfer_moe_layout *l, uint32_t seq, const uint16_t *x,
		       size_t x_stride, uint32_t num_tokens, const int32_t *topk,
		       const uint32_t *pos, uint8_t *send, const uint64_t *dest_off, void *stream);

/* xfer_moe_unpack. src_recs[R]: device array of device pointers. */
int xfer_moe_unpack_cuda(const struct xfer_moe_layout *l, const uint8_t *const *src_recs,
			 const uint32_t *counts, const uint64_t *offset, uint8_t *x, float *scales,
			 struct xfer_moe_rec_hdr *hdrs, void *stream);

/* xfer_moe_combine_pack. */
int xfer_moe_combine_pack_cuda(const struct xfer_moe_layout *l, const uint16_t *y,
			       const uint32_t *counts, const uint64_t *offset, uint8_t *dst,
			       const uint64_t *dst_off, void *stream);

/* xfer_moe_combine_reduce. */
int xfer_moe_combine_reduce_cuda(const struct xfer_moe_layout *l, const uint8_t *back,
				 const uint64_t *back_off, uint32_t num_tokens,
				 const int32_t *topk, const uint32_t *pos, const float *weights,
				 uint16_t *out, size_t out_stride, void *stream);

#ifdef __cplusplus
}
#endif
#endif
