// SPDX-License-Identifier: MIT
/*
 * MoE dispatch/combine kernels: route, pack, unpack, combine_pack and
 * combine_reduce, writing the bytes that the C references in lib/moe/ref.c
 * write (the layouts are in include/xfer_moe.h). Bit-exactness is by
 * construction, not by tolerance:
 *  - route sorts records by (local expert, token, k) with no atomics in the
 *    positions: one block per expert scans the (t, k) slots in order with a
 *    block-wide prefix sum; only the counts use atomics, and integer sums
 *    do not depend on order;
 *  - fp8 quantisation uses the encoder shared with the references
 *    (lib/util/fp8_e4m3.h); the per-128 amax is a max, which is exact in
 *    any order;
 *  - combine accumulates in k order with __fmaf_rn from 0 (what fmaf does
 *    on the CPU) and rounds once to bf16 with the shared helper
 *    (lib/util/bf16.h).
 * Every float operation is an explicit intrinsic, so nvcc's contraction of
 * a * b + c cannot change a result.
 *
 * Records and rows are copied by whole warps with 16-byte accesses when
 * both sides and the length allow it (the usual case: records are multiples
 * of 16 bytes), else 4- or 1-byte ones, so any offset the caller picks works.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "bf16.h"
#include "fp8_e4m3.h"
#include "moe.h"

#define THREADS 256
#define WARPS (THREADS / 32)
#define ROUTE_THREADS 512
#define FULL 0xffffffffu
#define NONE 0xffffffffu

/* What the kernels need of a layout, passed by value. */
struct dims {
	uint32_t R, L, E, K, H, S, rank;
	uint64_t token_bytes, scale_bytes, record_bytes, combine_bytes;
};

static int dims_of(const struct xfer_moe_layout *l, struct dims *d)
{
	if (!l || !l->world_size || !l->local_experts || !l->top_k || !l->hidden ||
	    l->num_experts != l->world_size * l->local_experts)
		return -(int)cudaErrorInvalidValue;
	d->R = l->world_size;
	d->L = l->local_experts;
	d->E = l->num_experts;
	d->K = l->top_k;
	d->H = l->hidden;
	d->S = l->dispatch_dtype == XFER_MOE_FP8 ? l->scales : 0;
	d->rank = l->rank;
	d->token_bytes = l->token_bytes;
	d->scale_bytes = l->scale_bytes;
	d->record_bytes = l->record_bytes;
	d->combine_bytes = l->combine_bytes;
	if (l->dispatch_dtype == XFER_MOE_FP8 ? d->S * 128u != d->H : d->H % 8u)
		return -(int)cudaErrorInvalidValue;
	return 0;
}

/* dims_of for an entry point that takes num_tokens rows: also refuses more
 * than the layout was sized for (which keeps t * K + k within 32 bits). */
static int token_dims(const struct xfer_moe_layout *l, uint32_t num_tokens, struct dims *d)
{
	int rc = dims_of(l, d);

	if (rc)
		return rc;
	if (num_tokens > l->max_tokens)
		return -(int)cudaErrorInvalidValue;
	return 0;
}

static int launched(void)
{
	cudaError_t e = cudaGetLastError();

	return e == cudaSuccess ? 0 : -(int)e;
}

/* ---- Small device helpers -------------------------------------------- */

/* A sum over the block; every thread gets it. All threads must call it. */
__device__ static uint64_t block_sum(uint64_t v)
{
	__shared__ uint64_t part[32];
	const unsigned lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;

	for (int off = 16; off > 0; off >>= 1)
		v += __shfl_xor_sync(FULL, v, off);
	__syncthreads(); /* part may still be read by a previous call */
	if (lane == 0)
		part[w] = v;
	__syncthreads();
	v = 0;
	for (unsigned i = 0; i < nw; i++)
		v += part[i];
	return v;
}

/* n bytes from src to dst by one warp, as wide as alignment allows. */
__device__ static void warp_copy(uint8_t *__restrict__ dst, const uint8_t *__restrict__ src,
				 uint64_t n, unsigned lane)
{
	const uintptr_t mis = (uintptr_t)dst | (uintptr_t)src | (uintptr_t)n;

	if (!(mis & 15)) {
		uint64_t i = (uint64_t)lane * 16;

		/* four loads in flight per lane before the stores */
		for (; i + 3 * 512 < n; i += 4 * 512) {
			uint4 a = *(const uint4 *)(src + i), b = *(const uint4 *)(src + i + 512);
			uint4 c = *(const uint4 *)(src + i + 1024), e = *(const uint4 *)(src + i + 1536);

			*(uint4 *)(dst + i) = a;
			*(uint4 *)(dst + i + 512) = b;
			*(uint4 *)(dst + i + 1024) = c;
			*(uint4 *)(dst + i + 1536) = e;
		}
		for (; i < n; i += 512)
			*(uint4 *)(dst + i) = *(const uint4 *)(src + i);
	} else if (!(mis & 3)) {
		for (uint64_t i = (uint64_t)lane * 4; i < n; i += 128)
			*(uint32_t *)(dst + i) = *(const uint32_t *)(src + i);
	} else {
		for (uint64_t i = lane; i < n; i += 32)
			dst[i] = src[i];
	}
}

__device__ static void store_u32(uint8_t *p, uint32_t v)
{
	if (!((uintptr_t)p & 3)) {
		*(uint32_t *)p = v;
		return;
	}
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The record of (t, k), or NULL for a -1 slot (or an id route refused). */
__device__ static uint8_t *record_of(const struct dims &d, uint8_t *send, const uint64_t *dest_off,
				     const int32_t *topk, const uint32_t *pos, uint32_t t, uint32_t k)
{
	const int32_t e = topk[(size_t)t * d.K + k];
	const uint32_t p = pos[(size_t)t * d.K + k];

	if (e < 0 || (uint32_t)e >= d.E || p == NONE)
		return NULL;
	return send + dest_off[(uint32_t)e / d.L] + (uint64_t)p * d.record_bytes;
}

/* Block (t, 0) of a pack writes the 16-byte headers of token t's records
 * and zeroes their pads (token bytes past the payload, scale bytes past the
 * S floats), so that whole records compare. */
__device__ static void pack_headers(const struct dims &d, uint32_t seq, const int32_t *topk,
				    const uint32_t *pos, uint8_t *send, const uint64_t *dest_off,
				    uint32_t t)
{
	const uint64_t payload = d.S ? d.H : 2ull * d.H;

	if (blockIdx.y != 0)
		return;
	for (uint32_t i = threadIdx.x; i < d.K * 4; i += blockDim.x) {
		const uint32_t k = i / 4, word = i % 4;
		uint8_t *rec = record_of(d, send, dest_off, topk, pos, t, k);
		uint32_t v;

		if (!rec)
			continue;
		switch (word) {
		case 0: v = t; break;
		case 1: v = d.rank; break;
		case 2: v = k | (((uint32_t)topk[(size_t)t * d.K + k] % d.L) << 16); break;
		default: v = seq; break;
		}
		store_u32(rec + 4 * word, v);
	}
	for (uint32_t k = threadIdx.x; k < d.K; k += blockDim.x) {
		uint8_t *rec = record_of(d, send, dest_off, topk, pos, t, k);

		if (!rec)
			continue;
		for (uint64_t b = 16 + payload; b < 16 + d.token_bytes; b++)
			rec[b] = 0;
		for (uint64_t b = 16 + d.token_bytes + 4ull * d.S; b < d.record_bytes; b++)
			rec[b] = 0;
	}
}

/* ---- route ------------------------------------------------------------ */

/* Counts per global expert (counts[d * L + e] is expert d * L + e's), -1
 * slots and refused ids marked in pos. */
__global__ void moe_route_count(const int32_t *__restrict__ topk, uint32_t n, uint32_t E,
				uint32_t *__restrict__ counts, uint32_t *__restrict__ pos,
				uint32_t *__restrict__ bad)
{
	for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		const int32_t v = topk[i];

		if (v >= 0 && (uint32_t)v < E) {
			atomicAdd(&counts[v], 1u);
			continue;
		}
		pos[i] = NONE;
		if (v != -1 && bad)
			atomicMin(bad, i);
	}
}

/* Block x: the positions of expert x's records among its destination's,
 * after the records of the destination's earlier local experts; within x,
 * slots in (t, k) order, which is the order of the flat index t * K + k. */
__global__ void __launch_bounds__(ROUTE_THREADS)
moe_route_rank(const int32_t *__restrict__ topk, uint32_t n, uint32_t L,
	       const uint32_t *__restrict__ counts, uint32_t *__restrict__ pos)
{
	__shared__ uint32_t wsum[ROUTE_THREADS / 32];
	const uint32_t x = blockIdx.x, first = x - x % L, total = counts[x];
	const unsigned lane = threadIdx.x & 31, w = threadIdx.x >> 5;
	uint64_t part = 0;
	uint32_t running, end;

	if (!total)
		return;
	for (uint32_t e = first + threadIdx.x; e < x; e += blockDim.x)
		part += counts[e];
	running = (uint32_t)block_sum(part);
	end = running + total;
	/* running is the same in every thread, so all leave the loop together */
	for (uint32_t c = 0; c < n && running < end; c += blockDim.x) {
		const uint32_t i = c + threadIdx.x;
		const bool hit = i < n && topk[i] == (int32_t)x;
		const unsigned m = __ballot_sync(FULL, hit);
		uint32_t before = 0, all = 0;

		if (lane == 0)
			wsum[w] = __popc(m);
		__syncthreads();
		for (unsigned j = 0; j < ROUTE_THREADS / 32; j++) {
			before += j < w ? wsum[j] : 0;
			all += wsum[j];
		}
		if (hit)
			pos[i] = running + before + __popc(m & ((1u << lane) - 1u));
		running += all;
		__syncthreads(); /* wsum is rewritten by the next chunk */
	}
}

extern "C" int xfer_moe_route_cuda(const struct xfer_moe_layout *l, const int32_t *topk,
				   uint32_t num_tokens, uint32_t *counts, uint32_t *pos,
				   uint32_t *bad, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;
	struct dims d;
	cudaError_t e;
	uint32_t n, blocks;
	int rc = token_dims(l, num_tokens, &d);

	if (rc)
		return rc;
	n = num_tokens * d.K;
	if ((e = cudaMemsetAsync(counts, 0, (size_t)d.E * 4, s)) != cudaSuccess ||
	    (bad && (e = cudaMemsetAsync(bad, 0xff, 4, s)) != cudaSuccess))
		return -(int)e;
	if (!n)
		return 0;
	blocks = (n + THREADS - 1) / THREADS;
	moe_route_count<<<blocks < 4096 ? blocks : 4096, THREADS, 0, s>>>(topk, n, d.E, counts, pos, bad);
	if ((rc = launched()))
		return rc;
	moe_route_rank<<<d.E, ROUTE_THREADS, 0, s>>>(topk, n, d.L, counts, pos);
	return launched();
}

/* ---- pack ------------------------------------------------------------- */

/* Grid (token, groups of WARPS scale groups): warp g quantises values
 * g * 128 .. + 127 of token t once (4 per lane) and stores the codes and
 * the scale into each of the token's K records. */
template <bool VEC>
__global__ void __launch_bounds__(THREADS)
moe_pack_fp8(struct dims d, uint32_t seq, const uint16_t *__restrict__ x, size_t ld,
	     const int32_t *__restrict__ topk, const uint32_t *__restrict__ pos,
	     uint8_t *__restrict__ send, const uint64_t *__restrict__ dest_off)
{
	const uint32_t t = blockIdx.x, lane = threadIdx.x & 31;
	const uint32_t g = blockIdx.y * WARPS + (threadIdx.x >> 5);
	const uint16_t *src = x + (size_t)t * ld + (size_t)g * 128 + lane * 4;
	uint16_t v[4];
	float amax = 0.0f, scale;
	uint32_t q = 0;

	pack_headers(d, seq, topk, pos, send, dest_off, t);
	if (g >= d.S)
		return;
	if (VEC) {
		const uint2 w = *(const uint2 *)src;

		v[0] = (uint16_t)w.x, v[1] = (uint16_t)(w.x >> 16);
		v[2] = (uint16_t)w.y, v[3] = (uint16_t)(w.y >> 16);
	} else {
		for (int i = 0; i < 4; i++)
			v[i] = src[i];
	}
	for (int i = 0; i < 4; i++) {
		const float f = fabsf(xfer_fp8_bf16_to_f32(v[i]));

		if (isfinite(f) && f > amax)
			amax = f;
	}
	for (int off = 16; off > 0; off >>= 1)
		amax = fmaxf(amax, __shfl_xor_sync(FULL, amax, off));
	scale = xfer_fp8_block_scale(amax);
	for (int i = 0; i < 4; i++) {
		const float f = xfer_fp8_bf16_to_f32(v[i]);

		/* A NaN is encoded from itself: the GPU's division would
		 * return the canonical (positive) NaN, the CPU's keeps the
		 * sign, and the code carries the sign. */
		q |= (uint32_t)xfer_fp8_e4m3_from_f32(isnan(f) ? f : XFER_FP8_DIV(f, scale)) << (8 * i);
	}
	for (uint32_t k = 0; k < d.K; k++) {
		uint8_t *rec = record_of(d, send, dest_off, topk, pos, t, k);

		if (!rec)
			continue;
		store_u32(rec + 16 + (size_t)g * 128 + lane * 4, q);
		if (lane == 0)
			store_u32(rec + 16 + d.token_bytes + (size_t)g * 4, xfer_fp8_f32_bits(scale));
	}
}

/* Grid (token, chunks of THREADS * 8 values): 8 bf16 per thread, read once,
 * stored into each of the token's K records. */
template <bool VEC>
__global__ void __launch_bounds__(THREADS)
moe_pack_bf16(struct dims d, uint32_t seq, const uint16_t *__restrict__ x, size_t ld,
	      const int32_t *__restrict__ topk, const uint32_t *__restrict__ pos,
	      uint8_t *__restrict__ send, const uint64_t *__restrict__ dest_off)
{
	const uint32_t t = blockIdx.x, c = blockIdx.y * THREADS + threadIdx.x;
	const uint16_t *src = x + (size_t)t * ld + (size_t)c * 8;
	uint4 v;

	pack_headers(d, seq, topk, pos, send, dest_off, t);
	if ((size_t)c * 8 >= d.H)
		return;
	if (VEC) {
		v = *(const uint4 *)src;
	} else {
		uint32_t w[4];

		for (int i = 0; i < 4; i++)
			w[i] = src[2 * i] | ((uint32_t)src[2 * i + 1] << 16);
		v = make_uint4(w[0], w[1], w[2], w[3]);
	}
	for (uint32_t k = 0; k < d.K; k++) {
		uint8_t *rec = record_of(d, send, dest_off, topk, pos, t, k);
		uint8_t *dst;

		if (!rec)
			continue;
		dst = rec + 16 + (size_t)c * 16;
		if (!((uintptr_t)dst & 15)) {
			*(uint4 *)dst = v;
		} else {
			store_u32(dst, v.x);
			store_u32(dst + 4, v.y);
			store_u32(dst + 8, v.z);
			store_u32(dst + 12, v.w);
		}
	}
}

extern "C" int xfer_moe_pack_cuda(const struct xfer_moe_layout *l, uint32_t seq, const uint16_t *x,
				  size_t x_stride, uint32_t num_tokens, const int32_t *topk,
				  const uint32_t *pos, uint8_t *send, const uint64_t *dest_off,
				  void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;
	struct dims d;
	int rc = token_dims(l, num_tokens, &d);
	bool vec;

	if (rc)
		return rc;
	if (!num_tokens)
		return 0;
	if (!x_stride)
		x_stride = d.H;
	if (d.S) {
		dim3 grid(num_tokens, (d.S + WARPS - 1) / WARPS);

		vec = (uintptr_t)x % 8 == 0 && x_stride % 4 == 0;
		if (vec)
			moe_pack_fp8<true><<<grid, THREADS, 0, s>>>(d, seq, x, x_stride, topk, pos, send, dest_off);
		else
			moe_pack_fp8<false><<<grid, THREADS, 0, s>>>(d, seq, x, x_stride, topk, pos, send, dest_off);
	} else {
		dim3 grid(num_tokens, (d.H / 8 + THREADS - 1) / THREADS);

		vec = (uintptr_t)x % 16 == 0 && x_stride % 8 == 0;
		if (vec)
			moe_pack_bf16<true><<<grid, THREADS, 0, s>>>(d, seq, x, x_stride, topk, pos, send, dest_off);
		else
			moe_pack_bf16<false><<<grid, THREADS, 0, s>>>(d, seq, x, x_stride, topk, pos, send, dest_off);
	}
	return launched();
}

/* ---- unpack and combine_pack -------------------------------------------- */

/* Both walk the same correspondence: record j of source s for local expert
 * e is record first + j of that source (first: its records of earlier
 * experts) and row offset[e] + (rows of e from earlier sources) + j.
 * Grid (R * L, spread): block (s * L + e, y) takes records y * WARPS + w,
 * then every spread * WARPS; a warp copies one record at a time. */
struct span {
	uint64_t first, row;
	uint32_t n, s;
};

/* All threads must call it; n == 0 when the block has nothing to do. */
__device__ static struct span span_of(const struct dims &d, const uint32_t *counts,
				      const uint64_t *offset)
{
	const uint32_t p = blockIdx.x, s = p / d.L, e = p % d.L;
	struct span sp;
	uint64_t a = 0, b = 0;

	sp.n = counts[p];
	sp.s = s;
	if (!sp.n) /* the same in the whole block: no thread reaches block_sum */
		return sp;
	for (uint32_t i = threadIdx.x; i < e; i += blockDim.x)
		a += counts[(size_t)s * d.L + i];
	for (uint32_t i = threadIdx.x; i < s; i += blockDim.x)
		b += counts[(size_t)i * d.L + e];
	sp.first = block_sum(a);
	sp.row = offset[e] + block_sum(b);
	return sp;
}

__global__ void __launch_bounds__(THREADS)
moe_unpack(struct dims d, const uint8_t *const *__restrict__ src_recs,
	   const uint32_t *__restrict__ counts, const uint64_t *__restrict__ offset,
	   uint8_t *__restrict__ x, float *__restrict__ scales, struct xfer_moe_rec_hdr *__restrict__ hdrs)
{
	const struct span sp = span_of(d, counts, offset);
	const unsigned lane = threadIdx.x & 31;

	if (!sp.n)
		return;
	for (uint32_t j = blockIdx.y * WARPS + (threadIdx.x >> 5); j < sp.n; j += gridDim.y * WARPS) {
		const uint8_t *rec = src_recs[sp.s] + (sp.first + j) * d.record_bytes;
		const uint64_t row = sp.row + j;

		if (hdrs)
			warp_copy((uint8_t *)(hdrs + row), rec, 16, lane);
		warp_copy(x + row * d.token_bytes, rec + 16, d.token_bytes, lane);
		if (d.S && scales)
			warp_copy((uint8_t *)(scales + row * d.S), rec + 16 + d.token_bytes, 4ull * d.S, lane);
	}
}

__global__ void __launch_bounds__(THREADS)
moe_combine_pack(struct dims d, const uint16_t *__restrict__ y, const uint32_t *__restrict__ counts,
		 const uint64_t *__restrict__ offset, uint8_t *__restrict__ dst,
		 const uint64_t *__restrict__ dst_off)
{
	const struct span sp = span_of(d, counts, offset);
	const unsigned lane = threadIdx.x & 31;

	if (!sp.n)
		return;
	for (uint32_t j = blockIdx.y * WARPS + (threadIdx.x >> 5); j < sp.n; j += gridDim.y * WARPS)
		warp_copy(dst + dst_off[sp.s] + (sp.first + j) * d.combine_bytes,
			  (const uint8_t *)(y + (sp.row + j) * d.H), 2ull * d.H, lane);
}

/* Blocks per (source, expert): enough warps for a skewed routing (every
 * record in one pair), few enough that the empty pairs of a uniform one
 * cost little. */
static dim3 span_grid(const struct dims &d)
{
	uint32_t spread = 1024 / d.E;

	return dim3(d.E, spread < 1 ? 1 : spread > 32 ? 32 : spread);
}

extern "C" int xfer_moe_unpack_cuda(const struct xfer_moe_layout *l, const uint8_t *const *src_recs,
				    const uint32_t *counts, const uint64_t *offset, uint8_t *x,
				    float *scales, struct xfer_moe_rec_hdr *hdrs, void *stream)
{
	struct dims d;
	int rc = dims_of(l, &d);

	if (rc)
		return rc;
	moe_unpack<<<span_grid(d), THREADS, 0, (cudaStream_t)stream>>>(d, src_recs, counts, offset, x,
								       scales, hdrs);
	return launched();
}

extern "C" int xfer_moe_combine_pack_cuda(const struct xfer_moe_layout *l, const uint16_t *y,
					  const uint32_t *counts, const uint64_t *offset,
					  uint8_t *dst, const uint64_t *dst_off, void *stream)
{
	struct dims d;
	int rc = dims_of(l, &d);

	if (rc)
		return rc;
	moe_combine_pack<<<span_grid(d), THREADS, 0, (cudaStream_t)stream>>>(d, y, counts, offset, dst,
									     dst_off);
	return launched();
}

/* ---- combine_reduce ------------------------------------------------------ */

/* Grid (token, chunks of THREADS * 8 values): thread c sums values
 * c * 8 .. + 7 of token t over its K outputs, in k order. */
template <bool VEC>
__global__ void __launch_bounds__(THREADS)
moe_combine_reduce(struct dims d, const uint8_t *__restrict__ back,
		   const uint64_t *__restrict__ back_off, const int32_t *__restrict__ topk,
		   const uint32_t *__restrict__ pos, const float *__restrict__ weights,
		   uint16_t *__restrict__ out, size_t ld)
{
	const uint32_t t = blockIdx.x, c = blockIdx.y * THREADS + threadIdx.x;
	uint16_t *o = out + (size_t)t * ld + (size_t)c * 8;
	float acc[8];
	uint16_t r[8];

	if ((size_t)c * 8 >= d.H)
		return;
	for (int j = 0; j < 8; j++)
		acc[j] = 0.0f;
	for (uint32_t k = 0; k < d.K; k++) {
		const int32_t e = topk[(size_t)t * d.K + k];
		const uint32_t p = pos[(size_t)t * d.K + k];
		const uint8_t *src;
		uint16_t v[8];
		float w;

		if (e < 0 || (uint32_t)e >= d.E || p == NONE)
			continue;
		src = back + back_off[(uint32_t)e / d.L] + (uint64_t)p * d.combine_bytes + (size_t)c * 16;
		if (!((uintptr_t)src & 15)) {
			const uint4 u = *(const uint4 *)src;
			const uint32_t ws[4] = { u.x, u.y, u.z, u.w };

			for (int j = 0; j < 8; j++)
				v[j] = (uint16_t)(ws[j / 2] >> (16 * (j & 1)));
		} else {
			for (int j = 0; j < 8; j++)
				v[j] = (uint16_t)(src[2 * j] | (src[2 * j + 1] << 8));
		}
		w = weights[(size_t)t * d.K + k];
		for (int j = 0; j < 8; j++)
			acc[j] = __fmaf_rn(w, xfer_bf16_to_f32(v[j]), acc[j]);
	}
	for (int j = 0; j < 8; j++)
		r[j] = xfer_bf16_from_f32(acc[j]);
	if (VEC) {
		*(uint4 *)o = make_uint4(r[0] | ((uint32_t)r[1] << 16), r[2] | ((uint32_t)r[3] << 16),
					 r[4] | ((uint32_t)r[5] << 16), r[6] | ((uint32_t)r[7] << 16));
	} else {
		for (int j = 0; j < 8; j++)
			o[j] = r[j];
	}
}

extern "C" int xfer_moe_combine_reduce_cuda(const struct xfer_moe_layout *l, const uint8_t *back,
					    const uint64_t *back_off, uint32_t num_tokens,
					    const int32_t *topk, const uint32_t *pos,
					    const float *weights, uint16_t *out, size_t out_stride,
					    void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;
	struct dims d;
	int rc = token_dims(l, num_tokens, &d);
	dim3 grid;

	if (rc)
		return rc;
	if (!num_tokens)
		return 0;
	if (!out_stride)
		out_stride = d.H;
	grid = dim3(num_tokens, (d.H / 8 + THREADS - 1) / THREADS);
	if ((uintptr_t)out % 16 == 0 && out_stride % 8 == 0)
		moe_combine_reduce<true><<<grid, THREADS, 0, s>>>(d, back, back_off, topk, pos, weights, out,
								   out_stride);
	else
		moe_combine_reduce<false><<<grid, THREADS, 0, s>>>(d, back, back_off, topk, pos, weights, out,
								    out_stride);
	return launched();
}
