// SPDX-License-Identifier: MIT
/*
 * The C references of the MoE kernels (kernels/moe.cu writes the same
 * bytes from the same inputs): route, pack (bf16 copy or fp8 quantisation
 * with one scale per 128 values), unpack into DeepEP low-latency's rows,
 * the combine's return pack and its weighted reduction, and the
 * communication-free reference of a whole layer.
 *
 * Bits: fp8 follows lib/weightsync/quant.c's policy per 1x128 block (amax
 * over finite values, scale = amax / 448 or 1, q = x / scale rounded to
 * nearest even, saturated); the combine accumulates in fp32 from 0 with
 * fmaf in k order and rounds once to bf16 (lib/util/bf16.h). The only float
 * operations are those divisions and fmaf calls (or their AVX2 lanes, the
 * same IEEE operations): no product or sum the compiler could contract.
 * Pad bytes are written as zeros so that records compare byte for byte.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe_internal.h"
#include "bf16.h"
#include "fp8_e4m3.h"
#include "fp8_e4m3_x8.h"

#define REC_HDR_BYTES sizeof(struct xfer_moe_rec_hdr)

/* ---- checks of what the entry points that return an error get ----------- */

/* The layout is one that xfer_moe_layout_get gives: every size the
 * functions below compute with is then consistent. */
static int layout_check(const struct xfer_moe_layout *l, const char *fn)
{
	struct xfer_moe_attr a = { 0 };
	struct xfer_moe_layout want;

	if (!l) {
		moe_error("%s: layout is NULL", fn);
		return -EINVAL;
	}
	a.size = sizeof(a);
	a.flags = l->flags;
	a.world_size = l->world_size;
	a.rank = l->rank;
	a.num_experts = l->num_experts;
	a.top_k = l->top_k;
	a.hidden = l->hidden;
	a.max_tokens = l->max_tokens;
	a.dispatch_dtype = l->dispatch_dtype;
	a.combine_dtype = XFER_MOE_BF16;
	if (moe_attr_read(&a, &a) || moe_layout_from_attr(&a, &want))
		return -EINVAL; /* moe_error says which field */
	if (memcmp(&want, l, sizeof(want))) {
		moe_error("%s: layout is not one xfer_moe_layout_get gives (a derived field was changed)",
			  fn);
		return -EINVAL;
	}
	return 0;
}

/* num_tokens within T and every expert id -1 .. E-1, before anything is
 * written. */
static int topk_check(const struct xfer_moe_layout *l, const int32_t *topk, uint32_t num_tokens,
		      const char *fn)
{
	uint32_t K = l->top_k;

	if (num_tokens > l->max_tokens) {
		moe_error("%s: num_tokens %u: more than max_tokens %u", fn, num_tokens, l->max_tokens);
		return -EINVAL;
	}
	if (num_tokens && !topk) {
		moe_error("%s: topk is NULL", fn);
		return -EINVAL;
	}
	for (uint64_t i = 0; i < (uint64_t)num_tokens * K; i++)
		if (topk[i] < -1 || topk[i] >= (int64_t)l->num_experts) {
			moe_error("%s: topk[%llu][%llu] = %d: not an expert id (-1, or 0 .. %u)", fn,
				  (unsigned long long)(i / K), (unsigned long long)(i % K), topk[i],
				  l->num_experts - 1);
			return -EINVAL;
		}
	return 0;
}

/* ---- route ------------------------------------------------------------- */

/* counts indexed by d * L + e is counts by global expert id (d * L + e). One
 * pass counts, a prefix sum per rank turns counts into each expert's first
 * position, a second pass hands out positions in (token, k) order -- so
 * within an expert records are sorted by (token, k) -- and leaves each
 * entry at its inclusive prefix, from which the counts are recovered:
 * O(T*K + R*L), no scratch. */
XFER_EXPORT int xfer_moe_route(const struct xfer_moe_layout *l, const int32_t *topk,
			       uint32_t num_tokens, uint32_t *counts, uint32_t *pos)
{
	int ret = layout_check(l, "xfer_moe_route");

	if (ret)
		return ret;
	ret = topk_check(l, topk, num_tokens, "xfer_moe_route");
	if (ret)
		return ret;
	if (!counts || (num_tokens && !pos)) {
		moe_error("xfer_moe_route: %s is NULL", counts ? "pos" : "counts");
		return -EINVAL;
	}

	uint32_t R = l->world_size, L = l->local_experts;
	uint64_t n = (uint64_t)num_tokens * l->top_k;

	memset(counts, 0, (size_t)l->num_experts * sizeof(*counts));
	for (uint64_t i = 0; i < n; i++)
		if (topk[i] >= 0)
			counts[topk[i]]++;
	for (uint32_t d = 0; d < R; d++) {
		uint32_t *c = counts + (size_t)d * L, sum = 0;

		for (uint32_t e = 0; e < L; e++) {
			uint32_t v = c[e];

			c[e] = sum;
			sum += v;
		}
	}
	for (uint64_t i = 0; i < n; i++)
		pos[i] = topk[i] >= 0 ? counts[topk[i]]++ : UINT32_MAX;
	for (uint32_t d = 0; d < R; d++) {
		uint32_t *c = counts + (size_t)d * L;

		for (uint32_t e = L - 1; e > 0; e--)
			c[e] -= c[e - 1];
	}
	moe_error_clear();
	return 0;
}

/* ---- pack ------------------------------------------------------------- */

/* One token to fp8: q (H bytes) and S scales, stored unaligned (a record
 * may start anywhere) into sc. */
static void quant_token_scalar(const uint16_t *x, uint32_t H, uint8_t *q, uint8_t *sc)
{
	for (uint32_t b = 0; b < H; b += 128) {
		uint32_t amax_bits = 0;
		float scale;

		for (uint32_t j = b; j < b + 128; j++) {
			uint32_t a = ((uint32_t)x[j] << 16) & 0x7fffffffu;

			if (a < 0x7f800000u && a > amax_bits)
				amax_bits = a;
		}
		scale = xfer_fp8_block_scale(xfer_fp8_bits_f32(amax_bits));
		memcpy(sc + b / 128 * sizeof(float), &scale, sizeof(scale));
		for (uint32_t j = b; j < b + 128; j++)
			q[j] = xfer_fp8_e4m3_from_f32(XFER_FP8_DIV(xfer_fp8_bf16_to_f32(x[j]), scale));
	}
}

#ifdef XFER_HAVE_X8
__attribute__((target("avx2"))) static void quant_token_x8(const uint16_t *x, uint32_t H,
							   uint8_t *q, uint8_t *sc)
{
	for (uint32_t b = 0; b < H; b += 128) {
		__m256i vmax = _mm256_setzero_si256();
		uint32_t lanes[8], amax_bits = 0;
		float scale;

		for (uint32_t j = b; j < b + 128; j += 8)
			vmax = _mm256_max_epu32(vmax, xfer_abs_finite_x8(xfer_bf16_x8(x + j)));
		_mm256_storeu_si256((__m256i *)(void *)lanes, vmax);
		for (int i = 0; i < 8; i++)
			amax_bits = lanes[i] > amax_bits ? lanes[i] : amax_bits;
		scale = xfer_fp8_block_scale(xfer_fp8_bits_f32(amax_bits));
		memcpy(sc + b / 128 * sizeof(float), &scale, sizeof(scale));

		__m256 vs = _mm256_set1_ps(scale);

		for (uint32_t j = b; j < b + 128; j += 8)
			xfer_store8_x8(q + j, xfer_e4m3_x8(_mm256_div_ps(xfer_bf16_x8(x + j), vs)));
	}
}
#endif

static int force_scalar;

void moe_ref_force_scalar(int on)
{
	force_scalar = on;
}

/* 1 when the CPU runs the AVX2 (and, for the combine, FMA) paths. */
static int have_avx2(void)
{
#ifdef XFER_HAVE_X8
	return !force_scalar && __builtin_cpu_supports("avx2");
#else
	return 0;
#endif
}

static int have_avx2_fma(void)
{
#ifdef XFER_HAVE_X8
	return have_avx2() && __builtin_cpu_supports("fma");
#else
	return 0;
#endif
}

/* A token's payload as a record carries it: token_bytes, then (fp8)
 * scale_bytes with the scales' padding zeroed. */
static void token_payload(const struct xfer_moe_layout *l, const uint16_t *x, uint8_t *p, int x8)
{
	if (l->dispatch_dtype != XFER_MOE_FP8) {
		memcpy(p, x, l->token_bytes);
		return;
	}
	uint8_t *sc = p + l->token_bytes;

#ifdef XFER_HAVE_X8
	if (x8)
		quant_token_x8(x, l->hidden, p, sc);
	else
#endif
		quant_token_scalar(x, l->hidden, p, sc);
	/* token_bytes is H here (H is a multiple of 128): only scales pad */
	memset(sc + (size_t)l->scales * sizeof(float), 0, l->scale_bytes - (size_t)l->scales * sizeof(float));
}

/* A token is quantised once, into its first record; its other records
 * copy that payload. */
XFER_EXPORT void xfer_moe_pack(const struct xfer_moe_layout *l, uint32_t seq, const uint16_t *x,
			       size_t x_stride, uint32_t num_tokens, const int32_t *topk,
			       const uint32_t *pos, uint8_t *send, const uint64_t *dest_off)
{
	uint32_t K = l->top_k, L = l->local_experts;
	size_t payload = l->record_bytes - REC_HDR_BYTES;
	int x8 = have_avx2();

	if (!x_stride)
		x_stride = l->hidden;
	for (uint32_t t = 0; t < num_tokens; t++) {
		const uint8_t *first = NULL;

		for (uint32_t k = 0; k < K; k++) {
			int32_t id = topk[(size_t)t * K + k];

			if (id < 0)
				continue;

			uint32_t d = (uint32_t)id / L;
			uint8_t *rec = send + dest_off[d] + (uint64_t)pos[(size_t)t * K + k] * l->record_bytes;
			struct xfer_moe_rec_hdr h = {
				.token = t, .src_rank = l->rank, .k = (uint16_t)k,
				.expert = (uint16_t)((uint32_t)id % L), .seq = seq,
			};

			memcpy(rec, &h, sizeof(h));
			if (first)
				memcpy(rec + REC_HDR_BYTES, first, payload);
			else
				token_payload(l, x + (size_t)t * x_stride, rec + REC_HDR_BYTES, x8);
			first = rec + REC_HDR_BYTES;
		}
	}
}

/* ---- unpack and the combine's pack ------------------------------------- */

/* Both walk (expert, source): the rows of expert e from source s are one
 * run in x / y, and one run in s's records (records are sorted by expert,
 * so run[s] is where s's next expert starts). Unpack skips hdrs, and fp8
 * scales, when NULL (a caller that keeps neither). */
XFER_EXPORT void xfer_moe_unpack(const struct xfer_moe_layout *l, const uint8_t *const *src_recs,
				 const uint32_t *counts, const uint64_t *offset, uint8_t *x,
				 float *scales, struct xfer_moe_rec_hdr *hdrs)
{
	uint32_t R = l->world_size, L = l->local_experts, S = l->scales;
	uint64_t run[XFER_MOE_MAX_RANKS] = { 0 }, tb = l->token_bytes, rb = l->record_bytes;
	int fp8 = l->dispatch_dtype == XFER_MOE_FP8 && scales;

	for (uint32_t e = 0; e < L; e++) {
		uint64_t row = offset[e];

		for (uint32_t s = 0; s < R; s++) {
			uint32_t n = counts[(size_t)s * L + e];
			const uint8_t *rec = n ? src_recs[s] + run[s] * rb : NULL;

			for (uint32_t i = 0; i < n; i++, row++, rec += rb) {
				if (hdrs)
					memcpy(&hdrs[row], rec, REC_HDR_BYTES);
				memcpy(x + row * tb, rec + REC_HDR_BYTES, tb);
				if (fp8)
					memcpy(scales + row * S, rec + REC_HDR_BYTES + tb, (size_t)S * sizeof(float));
			}
			run[s] += n;
		}
	}
}

XFER_EXPORT void xfer_moe_combine_pack(const struct xfer_moe_layout *l, const uint16_t *y,
				       const uint32_t *counts, const uint64_t *offset, uint8_t *dst,
				       const uint64_t *dst_off)
{
	uint32_t R = l->world_size, L = l->local_experts, H = l->hidden;
	uint64_t run[XFER_MOE_MAX_RANKS] = { 0 }, cb = l->combine_bytes;

	for (uint32_t e = 0; e < L; e++) {
		uint64_t row = offset[e];

		for (uint32_t s = 0; s < R; s++) {
			uint32_t n = counts[(size_t)s * L + e];

			if (n)
				memcpy(dst + dst_off[s] + run[s] * cb, y + row * H, n * cb);
			run[s] += n;
			row += n;
		}
	}
}

/* ---- the weighted combine --------------------------------------------- */

static uint16_t ld16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* One token: n outputs y[j] (bf16 rows, unaligned) weighted w[j], into out. */
static void reduce_row_scalar(uint32_t H, uint32_t n, const uint8_t *const *y, const float *w,
			      uint16_t *out)
{
	for (uint32_t h = 0; h < H; h++) {
		float acc = 0.0f;

		for (uint32_t j = 0; j < n; j++)
			acc = fmaf(w[j], xfer_bf16_to_f32(ld16(y[j] + 2 * (size_t)h)), acc);
		out[h] = xfer_bf16_from_f32(acc);
	}
}

#ifdef XFER_HAVE_X8
/* The same per lane: _mm256_fmadd_ps is fmaf, in the same k order. H is a
 * multiple of 8 (the attributes ask it). */
__attribute__((target("avx2,fma"))) static void reduce_row_x8(uint32_t H, uint32_t n,
							     const uint8_t *const *y,
							     const float *w, uint16_t *out)
{
	uint32_t h = 0;

	for (; h + 32 <= H; h += 32) {
		__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;

		for (uint32_t j = 0; j < n; j++) {
			const uint8_t *p = y[j] + 2 * (size_t)h;
			__m256 wj = _mm256_set1_ps(w[j]);

			a0 = _mm256_fmadd_ps(wj, xfer_bf16_x8(p), a0);
			a1 = _mm256_fmadd_ps(wj, xfer_bf16_x8(p + 16), a1);
			a2 = _mm256_fmadd_ps(wj, xfer_bf16_x8(p + 32), a2);
			a3 = _mm256_fmadd_ps(wj, xfer_bf16_x8(p + 48), a3);
		}
		xfer_bf16_store_x8(out + h, a0);
		xfer_bf16_store_x8(out + h + 8, a1);
		xfer_bf16_store_x8(out + h + 16, a2);
		xfer_bf16_store_x8(out + h + 24, a3);
	}
	for (; h < H; h += 8) {
		__m256 a0 = _mm256_setzero_ps();

		for (uint32_t j = 0; j < n; j++)
			a0 = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), xfer_bf16_x8(y[j] + 2 * (size_t)h), a0);
		xfer_bf16_store_x8(out + h, a0);
	}
}
#endif

XFER_EXPORT void xfer_moe_combine_reduce(const struct xfer_moe_layout *l, const uint8_t *back,
					 const uint64_t *back_off, uint32_t num_tokens,
					 const int32_t *topk, const uint32_t *pos,
					 const float *weights, uint16_t *out, size_t out_stride)
{
	uint32_t K = l->top_k, L = l->local_experts, H = l->hidden;
	const uint8_t *y[XFER_MOE_MAX_TOPK];
	float w[XFER_MOE_MAX_TOPK];
	int x8 = have_avx2_fma();

	(void)x8; /* without AVX2 in the build */
	if (!out_stride)
		out_stride = H;
	for (uint32_t t = 0; t < num_tokens; t++) {
		uint32_t n = 0;

		for (uint32_t k = 0; k < K; k++) {
			size_t i = (size_t)t * K + k;

			if (topk[i] < 0)
				continue;
			y[n] = back + back_off[(uint32_t)topk[i] / L] + (uint64_t)pos[i] * l->combine_bytes;
			w[n++] = weights[i];
		}
#ifdef XFER_HAVE_X8
		if (x8)
			reduce_row_x8(H, n, y, w, out + t * out_stride);
		else
#endif
			reduce_row_scalar(H, n, y, w, out + t * out_stride);
	}
}

/* ---- a whole layer without communication ------------------------------- */

/* acc[h] = fmaf(w, y[h], acc[h]) for h < H: the reference's step, k by k. */
static void axpy_scalar(float *acc, float w, const uint16_t *y, uint32_t H)
{
	for (uint32_t h = 0; h < H; h++)
		acc[h] = fmaf(w, xfer_bf16_to_f32(y[h]), acc[h]);
}

#ifdef XFER_HAVE_X8
__attribute__((target("avx2,fma"))) static void axpy_x8(float *acc, float w, const uint16_t *y,
						       uint32_t H)
{
	__m256 vw = _mm256_set1_ps(w);

	for (uint32_t h = 0; h < H; h += 8)
		_mm256_storeu_ps(acc + h, _mm256_fmadd_ps(vw, xfer_bf16_x8(y + h),
							   _mm256_loadu_ps(acc + h)));
}
#endif

XFER_EXPORT int xfer_moe_reference(const struct xfer_moe_layout *l, const uint16_t *x,
				   size_t x_stride, uint32_t num_tokens, const int32_t *topk,
				   const float *weights, xfer_moe_expert_fn fn, void *ctx,
				   uint16_t *out, size_t out_stride)
{
	int ret = layout_check(l, "xfer_moe_reference");

	if (ret)
		return ret;
	ret = topk_check(l, topk, num_tokens, "xfer_moe_reference");
	if (ret)
		return ret;

	uint32_t H = l->hidden, K = l->top_k;

	if (num_tokens && (!x || !weights || !fn || !out)) {
		moe_error("xfer_moe_reference: %s is NULL",
			  !x ? "x" : !weights ? "weights" : !fn ? "fn" : "out");
		return -EINVAL;
	}
	if ((x_stride && x_stride < H) || (out_stride && out_stride < H)) {
		moe_error("xfer_moe_reference: %s %zu: less than hidden %u", x_stride && x_stride < H ?
			  "x_stride" : "out_stride", x_stride && x_stride < H ? x_stride : out_stride, H);
		return -EINVAL;
	}
	if (!x_stride)
		x_stride = H;
	if (!out_stride)
		out_stride = H;

	/* payload as a record holds it (token, then padded scales), the
	 * scales as dispatch delivers them (S floats, aligned), y, the sums */
	size_t payload = l->record_bytes - REC_HDR_BYTES;
	uint8_t *tok = malloc(payload);
	float *sc = malloc((l->scales ? l->scales : 1) * sizeof(float));
	uint16_t *yrow = malloc((size_t)H * sizeof(*yrow));
	float *acc = malloc((size_t)H * sizeof(*acc));
	int x8 = have_avx2(), fma8 = have_avx2_fma();

	(void)fma8; /* without AVX2 in the build */
	if (!tok || !sc || !yrow || !acc) {
		moe_error("xfer_moe_reference: out of memory for hidden %u", H);
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t t = 0; t < num_tokens; t++) {
		int packed = 0;

		for (uint32_t h = 0; h < H; h++)
			acc[h] = 0.0f;
		for (uint32_t k = 0; k < K; k++) {
			size_t i = (size_t)t * K + k;

			if (topk[i] < 0)
				continue;
			if (!packed) {
				token_payload(l, x + t * x_stride, tok, x8);
				memcpy(sc, tok + l->token_bytes, (size_t)l->scales * sizeof(float));
				packed = 1;
			}
			fn(ctx, (uint32_t)topk[i], tok, l->scales ? sc : NULL, yrow);
#ifdef XFER_HAVE_X8
			if (fma8)
				axpy_x8(acc, weights[i], yrow, H);
			else
#endif
				axpy_scalar(acc, weights[i], yrow, H);
		}
		for (uint32_t h = 0; h < H; h++)
			out[t * out_stride + h] = xfer_bf16_from_f32(acc[h]);
	}
	moe_error_clear();
out:
	free(tok);
	free(sc);
	free(yrow);
	free(acc);
	return ret;
}
