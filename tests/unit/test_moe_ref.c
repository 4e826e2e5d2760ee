// SPDX-License-Identifier: MIT
/*
 * The MoE layout and the C reference kernels (lib/moe/layout.c, ref.c)
 * against computations written here the plain way: layout numbers of the
 * published models, routing positions by sorting, fp8 quantisation by
 * searching the e4m3 codes, bf16 rounding by comparing distances, and the
 * combine by an fmaf loop. Whole layers for R = 1, 2, 4 ranks are simulated
 * in one process (each rank's blocks built in memory, the "writes" are
 * memcpy) and compared with xfer_moe_reference bit for bit. The AVX2 paths
 * and the scalar ones (moe_ref_force_scalar) are both checked.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xfer_moe.h"
#include "moe_internal.h"
#include "bf16.h"

/* ---- inputs ------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static uint32_t bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static float bf(uint16_t b)
{
	return f32((uint32_t)b << 16);
}

/* A bf16 of either sign with exponents over 2^-12 .. 2^12; with `special`,
 * 1 in 64 is one of zero, -0, Inf, -Inf, a bf16 subnormal, the largest
 * finite (NaN only where asked: its payload through fmaf is not the
 * contract). */
static uint16_t rand_bf16(uint64_t *s, int special, int nan)
{
	uint64_t r = rng_next(s);

	if (special && (r & 63) == 0) {
		static const uint16_t sp[] = { 0x0000, 0x8000, 0x7f80, 0xff80, 0x0001, 0x8040,
					       0x7f7f, 0x7fc0, 0xffa1 };
		uint32_t n = nan ? 9 : 7;

		return sp[(r >> 8) % n];
	}
	uint32_t e = 127 - 12 + (uint32_t)((r >> 8) % 25), m = (uint32_t)(r >> 16) & 0x7f;

	return (uint16_t)(((r >> 40) & 1) << 15 | e << 7 | m);
}

/* ---- plain references ----------------------------------------------------- */

/* e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa; no Inf; S.1111.111 is NaN */
static double code_value(int c)
{
	int e = (c >> 3) & 15, m = c & 7;
	double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);

	return (c & 0x80) ? -v : v;
}

/* The nearest code, ties to the even one, saturating; NaN -> 0x7f | sign. */
static uint8_t naive_e4m3(float x)
{
	double a = fabs((double)x), best = INFINITY;
	int bc = 0;

	if (isnan(x))
		return signbit(x) ? 0xff : 0x7f;
	if (a > 448)
		a = 448;
	for (int c = 0; c < 0x7f; c++) {
		double d = fabs(code_value(c) - a);

		if (d < best || (d == best && !(c & 1))) {
			best = d;
			bc = c;
		}
	}
	return (uint8_t)(bc | (signbit(x) ? 0x80 : 0));
}

/* One token to fp8 the plain way: per 128 values, amax over finite ones,
 * scale amax / 448 (1 if 0), the code nearest x / scale. */
static void naive_quant(const uint16_t *x, uint32_t H, uint8_t *q, float *scales)
{
	for (uint32_t b = 0; b < H / 128; b++) {
		float amax = 0;

		for (uint32_t j = 0; j < 128; j++) {
			float v = fabsf(bf(x[b * 128 + j]));

			if (isfinite(v) && v > amax)
				amax = v;
		}
		scales[b] = amax > 0 ? amax / 448.0f : 1.0f;
		for (uint32_t j = 0; j < 128; j++)
			q[b * 128 + j] = naive_e4m3(bf(x[b * 128 + j]) / scales[b]);
	}
}

/* f32 -> bf16 by distance to the two neighbours (ties: the even one); a
 * neighbour past the largest bf16 is Inf, at 2^128 for the distance, as
 * IEEE rounding counts it; NaN -> quiet with its sign and top bits. */
static uint16_t naive_bf16(float f)
{
	uint32_t u = bits(f), mag = u & 0x7fffffff;

	if (mag > 0x7f800000)
		return (uint16_t)((u >> 16) | 0x40);
	if (mag == 0x7f800000)
		return (uint16_t)(u >> 16);

	uint32_t lo = mag & 0xffff0000u, hi = lo + 0x10000u;
	double a = fabs((double)f), dlo = a - fabs((double)f32(lo));
	double vhi = hi >= 0x7f800000u ? ldexp(1.0, 128) : (double)f32(hi), dhi = vhi - a;
	uint32_t r = dlo < dhi ? lo : dhi < dlo ? hi : ((lo >> 16) & 1) ? hi : lo;

	return (uint16_t)((u & 0x80000000u) >> 16 | r >> 16);
}

/* ---- attributes ------------------------------------------------------------ */

static struct xfer_moe_attr attr_of(uint32_t R, uint32_t rank, uint32_t E, uint32_t K, uint32_t H,
				    uint32_t T, uint32_t dtype)
{
	struct xfer_moe_attr a = {
		.size = sizeof(a), .world_size = R, .rank = rank, .num_experts = E, .top_k = K,
		.hidden = H, .max_tokens = T, .dispatch_dtype = dtype, .combine_dtype = XFER_MOE_BF16,
	};
	return a;
}

TEST(layout_deepseek_v3)
{
	struct xfer_moe_attr a = attr_of(8, 3, 256, 8, 7168, 128, XFER_MOE_FP8);
	struct xfer_moe_layout l;

	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(8, l.world_size);
	EXPECT_EQ(3, l.rank);
	EXPECT_EQ(256, l.num_experts);
	EXPECT_EQ(32, l.local_experts);
	EXPECT_EQ(8, l.top_k);
	EXPECT_EQ(7168, l.hidden);
	EXPECT_EQ(128, l.max_tokens);
	EXPECT_EQ(XFER_MOE_FP8, l.dispatch_dtype);
	EXPECT_EQ(56, l.scales);
	EXPECT_EQ(0, l.flags);
	EXPECT_EQ(7168, l.token_bytes);
	EXPECT_EQ(224, l.scale_bytes);
	EXPECT_EQ(7408, l.record_bytes);     /* DeepEP's and pplx's */
	EXPECT_EQ(14336, l.combine_bytes);
	EXPECT_EQ(192, l.block_hdr_bytes);   /* 16 + 4 * 32 = 144, to 64 */
	EXPECT_EQ(1024, l.block_records);    /* 128 * min(8, 32) */
	EXPECT_EQ(192 + 1024 * 7408, l.block_bytes);
	EXPECT_EQ(1024, l.expert_rows);
	EXPECT_STREQ("", xfer_moe_last_error());

	/* bf16 dispatch: the token is 2H, no scales; prefill keeps its flag */
	a.dispatch_dtype = XFER_MOE_BF16;
	a.flags = XFER_MOE_F_PREFILL;
	a.max_tokens = 4096;
	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(0, l.scales);
	EXPECT_EQ(14336, l.token_bytes);
	EXPECT_EQ(0, l.scale_bytes);
	EXPECT_EQ(14352, l.record_bytes);
	EXPECT_EQ(XFER_MOE_F_PREFILL, l.flags);
	EXPECT_EQ(4096 * 8, l.block_records);
	EXPECT_EQ(192 + 4096ull * 8 * 14352, l.block_bytes);
	EXPECT_EQ(8 * 4096, l.expert_rows);
}

TEST(layout_kimi_k2_and_v2_lite)
{
	struct xfer_moe_attr a = attr_of(8, 0, 384, 8, 7168, 128, XFER_MOE_FP8);
	struct xfer_moe_layout l;

	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(48, l.local_experts);
	EXPECT_EQ(7408, l.record_bytes);
	EXPECT_EQ(14336, l.combine_bytes);
	EXPECT_EQ(256, l.block_hdr_bytes);   /* 16 + 4 * 48 = 208, to 64 */
	EXPECT_EQ(256 + 1024 * 7408, l.block_bytes);

	/* DeepSeek-V2-Lite at EP4: H 2048 (16 scales, 64 B), E 64, K 6 */
	a = attr_of(4, 1, 64, 6, 2048, 128, XFER_MOE_FP8);
	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(16, l.local_experts);
	EXPECT_EQ(16, l.scales);
	EXPECT_EQ(64, l.scale_bytes);
	EXPECT_EQ(16 + 2048 + 64, l.record_bytes);
	EXPECT_EQ(4096, l.combine_bytes);
	EXPECT_EQ(128, l.block_hdr_bytes);   /* 16 + 64 = 80, to 64 */
	EXPECT_EQ(128 * 6, l.block_records);
	EXPECT_EQ(128 + 768 * 2128, l.block_bytes);
	EXPECT_EQ(512, l.expert_rows);

	/* L < K (EP64 of 256 experts): a source sends a rank at most L records per token */
	a = attr_of(64, 63, 256, 8, 7168, 128, XFER_MOE_FP8);
	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(4, l.local_experts);
	EXPECT_EQ(512, l.block_records);
	EXPECT_EQ(64, l.block_hdr_bytes);
	EXPECT_EQ(64 + 512 * 7408, l.block_bytes);

	/* a block is rounded up to 64: H 8 bf16, L 1, T 1 -> 64 + 32 */
	a = attr_of(2, 0, 2, 1, 8, 1, XFER_MOE_BF16);
	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(32, l.record_bytes);
	EXPECT_EQ(128, l.block_bytes);
}

TEST(layout_largest_attributes)
{
	/* every limit at once: no product wraps, the block is about 2^42 bytes */
	struct xfer_moe_attr a = attr_of(XFER_MOE_MAX_RANKS, XFER_MOE_MAX_RANKS - 1,
					 XFER_MOE_MAX_EXPERTS, XFER_MOE_MAX_TOPK, XFER_MOE_MAX_HIDDEN,
					 XFER_MOE_MAX_TOKENS, XFER_MOE_BF16);
	struct xfer_moe_layout l;

	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(64, l.local_experts);
	EXPECT_EQ(16 + 2ull * 65536, l.record_bytes);
	EXPECT_EQ((1ull << 20) * 32, l.block_records);
	EXPECT_EQ(320 + (1ull << 25) * (16 + 131072), l.block_bytes);
	EXPECT_EQ(1ull << 30, l.expert_rows);
	a.dispatch_dtype = XFER_MOE_FP8;
	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(512, l.scales);
	EXPECT_EQ(16 + 65536 + 2048, l.record_bytes);
}

/* Past the limits (moe_layout_from_attr does not validate): a product that
 * would wrap is -EOVERFLOW with a reason, not a small size. */
TEST(layout_overflow_refused)
{
	struct xfer_moe_attr a = attr_of(1, 0, 64, 32, 0xffffff80u, 0xffffffffu, XFER_MOE_BF16);
	struct xfer_moe_layout l;

	memset(&l, 0xa5, sizeof(l));
	EXPECT_EQ(-EOVERFLOW, moe_layout_from_attr(&a, &l));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "overflow")) TH_LOG("%s", xfer_moe_last_error());
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, l.block_bytes);
	/* each of the limits alone keeps well inside 64 bits */
	a = attr_of(1, 0, 64, 32, XFER_MOE_MAX_HIDDEN, XFER_MOE_MAX_TOKENS, XFER_MOE_BF16);
	XT_ASSERT_OK(moe_layout_from_attr(&a, &l));
}

TEST(attr_defaults_and_struct_size)
{
	struct xfer_moe_attr a = attr_of(2, 1, 8, 2, 128, 4, XFER_MOE_FP8), r;
	uint8_t big[sizeof(a) + 8] = { 0 };

	XT_ASSERT_OK(moe_attr_read(&a, &r));
	EXPECT_EQ(10000, r.timeout_ms);
	EXPECT_EQ(0x4d6f0000u, r.imm_base);
	EXPECT_EQ(sizeof(r), r.size);
	a.timeout_ms = 5;
	a.imm_base = 0x100;
	XT_ASSERT_OK(moe_attr_read(&a, &r));
	EXPECT_EQ(5, r.timeout_ms);
	EXPECT_EQ(0x100, r.imm_base);

	/* an older caller's struct (through combine_dtype) gets the defaults */
	a.size = XFER_MOE_ATTR_SIZE_VER0;
	XT_ASSERT_OK(moe_attr_read(&a, &r));
	EXPECT_EQ(10000, r.timeout_ms);
	EXPECT_EQ(0x4d6f0000u, r.imm_base);

	/* a newer caller's: zeros past ours are fine, anything else is not */
	a.size = sizeof(big);
	memcpy(big, &a, sizeof(a));
	XT_ASSERT_OK(moe_attr_read((const struct xfer_moe_attr *)(void *)big, &r));
	big[sizeof(a) + 3] = 1;
	EXPECT_EQ(-E2BIG, moe_attr_read((const struct xfer_moe_attr *)(void *)big, &r));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "attr.size"));
}

/* One field changed from a valid attribute set, what must be refused, and
 * the text that must name it. */
#define BAD_LIST(X) \
	X(k_over_e, (a->num_experts = 4, a->world_size = 1, a->rank = 0, a->top_k = 8), "attr.top_k") \
	X(e_not_multiple_of_r, a->num_experts = 250, "attr.num_experts") \
	X(h_fp8_not_128, a->hidden = 7000, "attr.hidden") \
	X(h_bf16_not_8, (a->dispatch_dtype = XFER_MOE_BF16, a->hidden = 7172), "attr.hidden") \
	X(rank_ge_r, a->rank = 8, "attr.rank") \
	X(zero_r, a->world_size = 0, "attr.world_size") \
	X(zero_e, a->num_experts = 0, "attr.num_experts") \
	X(zero_k, a->top_k = 0, "attr.top_k") \
	X(zero_h, a->hidden = 0, "attr.hidden") \
	X(zero_t, a->max_tokens = 0, "attr.max_tokens") \
	X(r_over_max, (a->world_size = XFER_MOE_MAX_RANKS + 1, a->num_experts = 2 * (XFER_MOE_MAX_RANKS + 1)), "attr.world_size") \
	X(e_over_max, (a->world_size = 1, a->rank = 0, a->num_experts = XFER_MOE_MAX_EXPERTS + 1), "attr.num_experts") \
	X(k_over_max, a->top_k = XFER_MOE_MAX_TOPK + 1, "attr.top_k") \
	X(h_over_max, a->hidden = XFER_MOE_MAX_HIDDEN + 128, "attr.hidden") \
	X(t_over_max, a->max_tokens = XFER_MOE_MAX_TOKENS + 1, "attr.max_tokens") \
	X(combine_fp8, a->combine_dtype = XFER_MOE_FP8, "attr.combine_dtype") \
	X(dispatch_unknown, a->dispatch_dtype = 3, "attr.dispatch_dtype") \
	X(dispatch_zero, a->dispatch_dtype = 0, "attr.dispatch_dtype") \
	X(flags_unknown, a->flags = 2, "attr.flags") \
	X(timeout_negative, a->timeout_ms = -1, "attr.timeout_ms") \
	X(imm_base_wraps, a->imm_base = 0xfffffff8u, "attr.imm_base") \
	X(size_zero, a->size = 0, "attr.size") \
	X(size_short, a->size = XFER_MOE_ATTR_SIZE_VER0 - 4, "attr.size") \
	X(size_huge, a->size = 1u << 20, "attr.size")
#define X_FN(name, stmt, field) static void set_##name(struct xfer_moe_attr *a) { stmt; }
#define X_ROW(name, stmt, field) { #name, set_##name, field },
BAD_LIST(X_FN)

TEST(bad_attrs_refused_naming_the_field)
{
	static const struct { const char *name; void (*set)(struct xfer_moe_attr *); const char *field; } bad[] = {
		BAD_LIST(X_ROW)
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct xfer_moe_attr a = attr_of(8, 3, 256, 8, 7168, 128, XFER_MOE_FP8);
		struct xfer_moe_layout l;
		int ret;

		memset(&l, 0xa5, sizeof(l));
		bad[i].set(&a);
		ret = xfer_moe_layout_get(&a, &l);
		EXPECT_TRUE(ret == -EINVAL || ret == -E2BIG) TH_LOG("%s: %d", bad[i].name, ret);
		EXPECT_NE(NULL, strstr(xfer_moe_last_error(), bad[i].field))
			TH_LOG("%s: '%s' does not name %s", bad[i].name, xfer_moe_last_error(), bad[i].field);
		/* nothing written on a refusal */
		EXPECT_EQ(0xa5a5a5a5u, l.world_size) TH_LOG("%s", bad[i].name);
		EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, l.block_bytes) TH_LOG("%s", bad[i].name);
	}
	EXPECT_EQ(-EINVAL, xfer_moe_layout_get(NULL, &(struct xfer_moe_layout){ 0 }));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "attr"));
}

/* ---- a layer simulated for R ranks in one process -------------------------- */

struct rank_sim {
	struct xfer_moe_layout l;
	uint32_t n;               /* tokens */
	size_t xs;                /* x's row stride, elements */
	uint16_t *x;
	int32_t *topk;
	float *w;
	uint32_t *counts, *pos;
	uint8_t *send;            /* R blocks of records (no block header here) */
	uint64_t *dest_off;
	/* receive side */
	uint32_t *rcounts;        /* [s * L + e]: from source s */
	uint64_t *offset;
	uint8_t *rx;
	float *rscales;
	struct xfer_moe_rec_hdr *rhdr;
	uint16_t *y;
	uint8_t *csend, *back;    /* combine: per-source outputs here, returned ones there */
	uint64_t *cdst_off, *back_off;
	uint16_t *out, *ref_out;
	size_t os;
};

enum topk_kind { TK_UNIFORM, TK_ONE_EXPERT, TK_FIRST_RANK, TK_NONE };

struct sim_cfg {
	uint32_t R, E, K, H, T, dtype;
	int packed;               /* prefill rows (packed offsets) instead of decode's e * R * T */
	enum topk_kind kind;
	int empty_rank;           /* rank 1 has no tokens (when R > 1) */
	int specials;             /* special values in x */
	uint64_t seed;
};

/* K distinct uniform experts per token, 1 in 8 slots -1; or every choice
 * on expert E-1 (k = 0 only, so (t, k) still name one record), or only
 * experts of rank 0 (every other rank receives nothing). */
static void gen_topk(const struct sim_cfg *c, uint64_t *s, int32_t *topk, uint32_t n)
{
	uint32_t L = c->E / c->R;

	for (uint32_t t = 0; t < n; t++)
		for (uint32_t k = 0; k < c->K; k++) {
			int32_t *p = &topk[t * c->K + k], v;
			int again;

			switch (c->kind) {
			case TK_ONE_EXPERT:
				*p = k == 0 ? (int32_t)c->E - 1 : -1;
				continue;
			case TK_NONE:
				*p = -1;
				continue;
			default:
				break;
			}
			if (rng_next(s) % 8 == 0) {
				*p = -1;
				continue;
			}
			do {
				v = (int32_t)(rng_next(s) % (c->kind == TK_FIRST_RANK ? L : c->E));
				again = 0;
				for (uint32_t j = 0; j < k; j++)
					again |= topk[t * c->K + j] == v;
			} while (again && k < (c->kind == TK_FIRST_RANK ? L : c->E));
			*p = v;
		}
}

/* The test's expert: a function of the expert id and the row as dispatch
 * delivers it (dequantised with its scale for fp8), y = bf16(v * m + b);
 * the same function gives the plain reference its y. */
struct expert_ctx {
	const struct xfer_moe_layout *l;
	uint32_t calls;
};

static void expert_fn(void *vctx, uint32_t expert, const uint8_t *x, const float *scales, uint16_t *y)
{
	struct expert_ctx *c = vctx;
	float m = 1.0f + (float)(expert % 7) * 0.25f, b = (float)expert * 0.0625f;

	c->calls++;
	for (uint32_t h = 0; h < c->l->hidden; h++) {
		float v;

		if (scales) {
			v = (float)code_value(x[h]) * scales[h / 128];
		} else {
			uint16_t u;

			memcpy(&u, x + 2 * h, 2);
			v = bf(u);
		}
		float p = v * m;

		y[h] = naive_bf16(p + b);
	}
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (!p)
		abort();
	return p;
}

static void sim_free(struct rank_sim *r, uint32_t R)
{
	for (uint32_t i = 0; i < R; i++) {
		free(r[i].x); free(r[i].topk); free(r[i].w); free(r[i].counts); free(r[i].pos);
		free(r[i].send); free(r[i].dest_off); free(r[i].rcounts); free(r[i].offset);
		free(r[i].rx); free(r[i].rscales); free(r[i].rhdr); free(r[i].y); free(r[i].csend);
		free(r[i].back); free(r[i].cdst_off); free(r[i].back_off); free(r[i].out);
		free(r[i].ref_out);
	}
	free(r);
}

/* Records of source s for rank d, in the order route gives: (local expert,
 * token, k). Calls fn for each with its index. */
#define FOR_RECORDS(c, sim, s, d, L, e, t, k, idx) \
	for (uint32_t e = 0, idx = 0; e < (L); e++) \
		for (uint32_t t = 0; t < (sim)[s].n; t++) \
			for (uint32_t k = 0; k < (c)->K; k++) \
				if ((sim)[s].topk[t * (c)->K + k] == (int32_t)((d) * (L) + e) && ++idx)

/* The payload a record of token x must carry, the plain way. */
static void want_payload(const struct xfer_moe_layout *l, const uint16_t *x, uint8_t *p)
{
	memset(p, 0, l->record_bytes - 16);
	if (l->dispatch_dtype == XFER_MOE_BF16) {
		memcpy(p, x, 2 * l->hidden);
		return;
	}
	float sc[XFER_MOE_MAX_HIDDEN / 128];

	naive_quant(x, l->hidden, p, sc);
	memcpy(p + l->token_bytes, sc, 4 * l->scales);
}

/* One layer through route, pack, unpack, the experts, combine_pack and
 * combine_reduce for every rank, checking each stage against the plain
 * computation; then the outputs against xfer_moe_reference. */
static void sim_layer(struct __test_metadata *_metadata, const struct sim_cfg *c, int combine)
{
	uint32_t R = c->R, L = c->E / c->R, K = c->K, H = c->H, T = c->T;
	uint64_t seed = c->seed, seq = 0x100000007ull;
	struct rank_sim *sim = xcalloc(R, sizeof(*sim));
	struct expert_ctx ectx = { 0 };
	uint8_t *want = NULL;

	/* ---- each source: inputs, route, pack ---- */
	for (uint32_t s = 0; s < R; s++) {
		struct rank_sim *r = &sim[s];
		struct xfer_moe_attr a = attr_of(R, s, c->E, K, H, T, c->dtype);

		if (c->packed)
			a.flags = XFER_MOE_F_PREFILL;
		XT_ASSERT_OK(xfer_moe_layout_get(&a, &r->l));
		r->n = c->empty_rank && R > 1 && s == 1 ? 0 : T - (uint32_t)(rng_next(&seed) % 2);
		r->xs = H + 8 * (s % 2);           /* odd ranks: rows apart from H */
		r->os = H + 16 * (s % 2);
		r->x = xcalloc((size_t)T * r->xs, 2);
		r->topk = xcalloc((size_t)T * K, 4);
		r->w = xcalloc((size_t)T * K, 4);
		for (size_t i = 0; i < (size_t)r->n * r->xs; i++)
			r->x[i] = rand_bf16(&seed, c->specials, c->specials > 1);
		gen_topk(c, &seed, r->topk, r->n);
		for (size_t i = 0; i < (size_t)r->n * K; i++)
			r->w[i] = (float)(int)(rng_next(&seed) % 2001 - 1000) / 997.0f;
		r->counts = xcalloc(c->E, 4);
		r->pos = xcalloc((size_t)T * K, 4);
		XT_ASSERT_OK(xfer_moe_route(&r->l, r->topk, r->n, r->counts, r->pos));
		/* destinations in reverse order: pack must use dest_off */
		uint64_t area = r->l.block_records * r->l.record_bytes;

		r->send = xcalloc(R, area);
		memset(r->send, 0xee, R * area);
		r->dest_off = xcalloc(R, 8);
		for (uint32_t d = 0; d < R; d++)
			r->dest_off[d] = (R - 1 - d) * area;
		xfer_moe_pack(&r->l, (uint32_t)seq, r->x, r->xs, r->n, r->topk, r->pos, r->send, r->dest_off);
	}

	/* ---- the records in the send areas, byte for byte ---- */
	want = xcalloc(1, sim[0].l.record_bytes);
	for (uint32_t s = 0; s < R; s++)
		for (uint32_t d = 0; d < R; d++) {
			const struct rank_sim *r = &sim[s];
			uint32_t n = 0;

			FOR_RECORDS(c, sim, s, d, L, e, t, k, idx) {
				const uint8_t *rec = r->send + r->dest_off[d] + (uint64_t)(idx - 1) * r->l.record_bytes;
				struct xfer_moe_rec_hdr h;

				n++;
				ASSERT_EQ(idx - 1, r->pos[t * K + k]) TH_LOG("source %u token %u k %u", s, t, k);
				memcpy(&h, rec, 16);
				ASSERT_EQ(t, h.token);
				ASSERT_EQ(s, h.src_rank);
				ASSERT_EQ(k, h.k);
				ASSERT_EQ(e, h.expert);
				ASSERT_EQ((uint32_t)seq, h.seq);
				want_payload(&r->l, r->x + t * r->xs, want);
				ASSERT_EQ(0, memcmp(want, rec + 16, r->l.record_bytes - 16))
					TH_LOG("source %u to %u token %u k %u: payload differs", s, d, t, k);
			}
			for (uint32_t e = 0; e < L; e++)
				n -= r->counts[d * L + e];
			ASSERT_EQ(0, n) TH_LOG("source %u: counts for rank %u", s, d);
		}

	/* ---- each destination: unpack ---- */
	for (uint32_t d = 0; d < R; d++) {
		struct rank_sim *r = &sim[d];
		const uint8_t **src = xcalloc(R, sizeof(*src));
		uint64_t rows = 0, total = 0;

		r->rcounts = xcalloc((size_t)R * L, 4);
		r->offset = xcalloc(L, 8);
		for (uint32_t s = 0; s < R; s++) {
			src[s] = sim[s].send + sim[s].dest_off[d];
			for (uint32_t e = 0; e < L; e++)
				r->rcounts[s * L + e] = sim[s].counts[d * L + e];
		}
		for (uint32_t e = 0; e < L; e++) {
			uint64_t ne = 0;

			for (uint32_t s = 0; s < R; s++)
				ne += r->rcounts[s * L + e];
			r->offset[e] = c->packed ? total : (uint64_t)e * R * T;
			total += ne;
		}
		rows = c->packed ? total : (uint64_t)L * R * T;
		r->rx = xcalloc(rows + 1, r->l.token_bytes);
		r->rscales = xcalloc((rows + 1) * (r->l.scales + 1), 4);
		r->rhdr = xcalloc(rows + 1, sizeof(*r->rhdr));
		r->y = xcalloc(rows + 1, 2ull * H);
		memset(r->rx, 0xcd, (rows + 1) * r->l.token_bytes);
		xfer_moe_unpack(&r->l, src, r->rcounts, r->offset, r->rx,
				c->dtype == XFER_MOE_FP8 ? r->rscales : NULL, r->rhdr);
		free(src);

		/* rows by expert, then source, then (token, k) */
		for (uint32_t e = 0; e < L; e++) {
			uint64_t row = r->offset[e];

			for (uint32_t s = 0; s < R; s++)
				for (uint32_t t = 0; t < sim[s].n; t++)
					for (uint32_t k = 0; k < K; k++) {
						if (sim[s].topk[t * K + k] != (int32_t)(d * L + e))
							continue;
						ASSERT_EQ(t, r->rhdr[row].token) TH_LOG("rank %u expert %u row %llu", d, e, (unsigned long long)row);
						ASSERT_EQ(s, r->rhdr[row].src_rank);
						ASSERT_EQ(k, r->rhdr[row].k);
						ASSERT_EQ(e, r->rhdr[row].expert);
						ASSERT_EQ((uint32_t)seq, r->rhdr[row].seq);
						want_payload(&r->l, sim[s].x + t * sim[s].xs, want);
						ASSERT_EQ(0, memcmp(want, r->rx + row * r->l.token_bytes, r->l.token_bytes))
							TH_LOG("rank %u expert %u row %llu: x differs", d, e, (unsigned long long)row);
						if (c->dtype == XFER_MOE_FP8) {
							ASSERT_EQ(0, memcmp(want + r->l.token_bytes, r->rscales + row * r->l.scales,
									    4 * r->l.scales));
						}
						row++;
					}
			/* nothing written past the expert's rows (decode) */
			if (!c->packed && row < (uint64_t)(e + 1) * R * T) {
				ASSERT_EQ(0xcd, r->rx[row * r->l.token_bytes]);
			}
		}

		/* ---- the experts, row by row ---- */
		ectx.l = &r->l;
		for (uint32_t e = 0; e < L; e++) {
			uint64_t ne = 0;

			for (uint32_t s = 0; s < R; s++)
				ne += r->rcounts[s * L + e];
			for (uint64_t row = r->offset[e]; row < r->offset[e] + ne; row++)
				expert_fn(&ectx, d * L + e, r->rx + row * r->l.token_bytes,
					  c->dtype == XFER_MOE_FP8 ? r->rscales + row * r->l.scales : NULL,
					  r->y + row * H);
		}
	}
	if (!combine)
		goto out;

	/* ---- combine: each destination packs per source, the "writes" ---- */
	for (uint32_t d = 0; d < R; d++) {
		struct rank_sim *r = &sim[d];
		uint64_t area = r->l.block_records * r->l.combine_bytes;

		r->csend = xcalloc(R, area);
		r->cdst_off = xcalloc(R, 8);
		for (uint32_t s = 0; s < R; s++)
			r->cdst_off[s] = s * area;
		xfer_moe_combine_pack(&r->l, r->y, r->rcounts, r->offset, r->csend, r->cdst_off);
	}
	for (uint32_t s = 0; s < R; s++) {
		struct rank_sim *r = &sim[s];
		uint64_t area = r->l.block_records * r->l.combine_bytes;

		r->back = xcalloc(R, area);
		r->back_off = xcalloc(R, 8);
		for (uint32_t d = 0; d < R; d++) {
			uint64_t n = 0;

			r->back_off[d] = (R - 1 - d) * area;
			for (uint32_t e = 0; e < L; e++)
				n += r->counts[d * L + e];
			memcpy(r->back + r->back_off[d], sim[d].csend + sim[d].cdst_off[s], n * r->l.combine_bytes);
		}
		r->out = xcalloc((size_t)T * r->os, 2);
		r->ref_out = xcalloc((size_t)T * r->os, 2);
		memset(r->out, 0xff, (size_t)T * r->os * 2);
		memset(r->ref_out, 0xff, (size_t)T * r->os * 2);
		xfer_moe_combine_reduce(&r->l, r->back, r->back_off, r->n, r->topk, r->pos, r->w, r->out,
					r->os);

		/* the plain combine: this rank's tokens through the experts */
		uint16_t *yy = xcalloc((size_t)K * H, 2);
		float *sc = xcalloc(H / 128 + 1, 4);
		uint8_t *tok = xcalloc(r->l.record_bytes, 1);

		ectx.l = &r->l;
		for (uint32_t t = 0; t < r->n; t++) {
			want_payload(&r->l, r->x + t * r->xs, tok);
			memcpy(sc, tok + r->l.token_bytes, 4 * r->l.scales);
			for (uint32_t k = 0; k < K; k++)
				if (r->topk[t * K + k] >= 0)
					expert_fn(&ectx, (uint32_t)r->topk[t * K + k], tok,
						  r->l.scales ? sc : NULL, yy + (size_t)k * H);
			for (uint32_t h = 0; h < H; h++) {
				float acc = 0.0f;

				for (uint32_t k = 0; k < K; k++)
					if (r->topk[t * K + k] >= 0)
						acc = fmaf(r->w[t * K + k], bf(yy[(size_t)k * H + h]), acc);
				ASSERT_EQ(naive_bf16(acc), r->out[t * r->os + h])
					TH_LOG("rank %u token %u h %u: %08x", s, t, h, bits(acc));
			}
		}
		free(yy);
		free(sc);
		free(tok);

		/* the communication-free reference, bit for bit; stride pads untouched */
		XT_ASSERT_OK(xfer_moe_reference(&r->l, r->x, r->xs, r->n, r->topk, r->w, expert_fn, &ectx,
						r->ref_out, r->os));
		ASSERT_EQ(0, memcmp(r->out, r->ref_out, (size_t)T * r->os * 2)) TH_LOG("rank %u", s);
		for (uint32_t t = 0; t < T; t++)
			for (size_t h = H; h < r->os; h++) {
				ASSERT_EQ(0xffff, r->out[t * r->os + h]);
			}
		for (uint32_t t = r->n; t < T; t++) {
			ASSERT_EQ(0xffff, r->out[t * r->os]);
		}
	}
out:
	free(want);
	sim_free(sim, R);
}

/* Every layer twice: the AVX2 paths (where the CPU has them) and the
 * scalar ones must both match the plain computation. */
static void sim_both(struct __test_metadata *_metadata, struct sim_cfg c, int combine)
{
	for (int scalar = 0; scalar < 2; scalar++) {
		moe_ref_force_scalar(scalar);
		sim_layer(_metadata, &c, combine);
		if (!_metadata->passed) {
			TH_LOG("failed with the %s paths", scalar ? "scalar" : "AVX2");
			break;
		}
	}
	moe_ref_force_scalar(0);
}

#define LAYER_TEST(name, ...) \
	TEST(layer_##name) \
	{ \
		sim_both(_metadata, (struct sim_cfg){ __VA_ARGS__ }, 1); \
	}

/* R = 1, 2, 4; bf16 and fp8; decode rows and prefill's packed rows */
LAYER_TEST(r1_bf16, .R = 1, .E = 8, .K = 4, .H = 256, .T = 12, .dtype = XFER_MOE_BF16, .specials = 1, .seed = 1)
LAYER_TEST(r2_bf16, .R = 2, .E = 8, .K = 3, .H = 136, .T = 12, .dtype = XFER_MOE_BF16, .specials = 1, .seed = 2)
LAYER_TEST(r4_bf16, .R = 4, .E = 16, .K = 4, .H = 264, .T = 16, .dtype = XFER_MOE_BF16, .specials = 1, .seed = 3)
LAYER_TEST(r1_fp8, .R = 1, .E = 8, .K = 4, .H = 256, .T = 12, .dtype = XFER_MOE_FP8, .specials = 1, .seed = 4)
LAYER_TEST(r2_fp8, .R = 2, .E = 8, .K = 3, .H = 384, .T = 12, .dtype = XFER_MOE_FP8, .specials = 1, .seed = 5)
LAYER_TEST(r4_fp8, .R = 4, .E = 16, .K = 4, .H = 256, .T = 16, .dtype = XFER_MOE_FP8, .specials = 1, .seed = 6)
LAYER_TEST(r4_fp8_prefill, .R = 4, .E = 16, .K = 4, .H = 256, .T = 40, .dtype = XFER_MOE_FP8, .packed = 1, .seed = 7)
LAYER_TEST(r4_bf16_prefill, .R = 4, .E = 32, .K = 6, .H = 128, .T = 40, .dtype = XFER_MOE_BF16, .packed = 1, .seed = 8)
/* K > L: a token sends a rank several records */
LAYER_TEST(r4_fp8_k_over_l, .R = 4, .E = 8, .K = 6, .H = 128, .T = 10, .dtype = XFER_MOE_FP8, .seed = 9)
/* uneven routing */
LAYER_TEST(r4_fp8_one_expert, .R = 4, .E = 16, .K = 4, .H = 128, .T = 16, .dtype = XFER_MOE_FP8, .kind = TK_ONE_EXPERT, .seed = 10)
LAYER_TEST(r4_bf16_ranks_receive_nothing, .R = 4, .E = 16, .K = 3, .H = 128, .T = 16, .dtype = XFER_MOE_BF16, .kind = TK_FIRST_RANK, .seed = 11)
LAYER_TEST(r4_fp8_rank_without_tokens, .R = 4, .E = 16, .K = 4, .H = 128, .T = 16, .dtype = XFER_MOE_FP8, .empty_rank = 1, .seed = 12)
LAYER_TEST(r2_fp8_no_experts, .R = 2, .E = 4, .K = 2, .H = 128, .T = 8, .dtype = XFER_MOE_FP8, .kind = TK_NONE, .seed = 13)

/* NaN in the tokens: pack and unpack keep the bytes (NaN codes in fp8);
 * the combine is left out (a NaN's payload through fmaf is no contract). */
TEST(pack_unpack_with_nan)
{
	sim_both(_metadata, (struct sim_cfg){ .R = 2, .E = 8, .K = 4, .H = 512, .T = 16,
		 .dtype = XFER_MOE_FP8, .specials = 2, .seed = 14 }, 0);
	sim_both(_metadata, (struct sim_cfg){ .R = 2, .E = 8, .K = 4, .H = 512, .T = 16,
		 .dtype = XFER_MOE_BF16, .specials = 2, .seed = 15 }, 0);
}

/* The combine's order and fusing show in bf16 only where they change a
 * sum by more than bf16's precision: crafted so that they do. Token 0:
 * 2^30 - 2^30 + 1 is 1 in k order, 0 in reverse; token 1: the exact product
 * (1 + 2^-7)(1 + 2^-23) less its rounding is 2^-30 with fmaf, 0 with a
 * rounded product; token 2 has no expert. H 40 runs the AVX2 path's
 * 32-wide loop and its 8-wide tail. */
TEST(combine_keeps_k_order_and_fmaf)
{
	struct xfer_moe_attr a = attr_of(1, 0, 4, 4, 40, 3, XFER_MOE_BF16);
	struct xfer_moe_layout l;
	int32_t topk[12] = { 0, 1, 2, -1, 3, 0, -1, -1, -1, -1, -1, -1 };
	float w[12] = { 1, 1, 1, 5, f32(0x3f810001), f32(0x34000000) + 1.0f, 0, 0, 9, 9, 9, 9 };
	static const uint16_t y[5] = { 0x4e80 /* 2^30 */, 0xce80, 0x3f80, 0xbf80, 0x3f81 };
	uint32_t counts[4], pos[12];
	uint8_t back[5 * 80];
	uint64_t back_off[1] = { 0 };
	uint16_t out[3 * 40];

	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	XT_ASSERT_OK(xfer_moe_route(&l, topk, 3, counts, pos));
	/* the outputs in record order: expert 0 (t0 k0, t1 k1), 1, 2, 3 */
	static const int rec_y[5] = { 0, 4, 1, 2, 3 };

	for (int r = 0; r < 5; r++)
		for (int h = 0; h < 40; h++)
			memcpy(back + r * 80 + 2 * h, &y[rec_y[r]], 2);
	ASSERT_EQ(1, pos[5]);   /* t1 k1 is expert 0's second record */
	ASSERT_EQ(4, pos[4]);
	for (int scalar = 0; scalar < 2; scalar++) {
		moe_ref_force_scalar(scalar);
		memset(out, 0x77, sizeof(out));
		xfer_moe_combine_reduce(&l, back, back_off, 3, topk, pos, w, out, 0);
		for (int h = 0; h < 40; h++) {
			ASSERT_EQ(0x3f80, out[h]) TH_LOG("%s h %d", scalar ? "scalar" : "AVX2", h);
			ASSERT_EQ(0x3080, out[40 + h]) TH_LOG("%s h %d", scalar ? "scalar" : "AVX2", h);
			ASSERT_EQ(0, out[80 + h]);
		}
	}
	moe_ref_force_scalar(0);
}

/* The same sums through xfer_moe_reference: the expert's output is a table
 * by (token, expert), the token named by its first value. */
static const uint16_t order_y[3][4] = {
	{ 0x4e80, 0xce80, 0x3f80, 0 },   /* t0: 2^30, -2^30, 1 */
	{ 0x3f81, 0, 0, 0xbf80 },        /* t1: k1 on expert 0, k0 on expert 3 */
	{ 0 },
};

static void order_expert(void *ctx, uint32_t expert, const uint8_t *x, const float *scales,
			 uint16_t *y)
{
	uint16_t t;

	memcpy(&t, x, 2);
	for (int h = 0; h < 40; h++)
		y[h] = order_y[(int)bf(t)][expert];
}

TEST(reference_keeps_k_order_and_fmaf)
{
	struct xfer_moe_attr a = attr_of(1, 0, 4, 4, 40, 3, XFER_MOE_BF16);
	struct xfer_moe_layout l;
	int32_t topk[12] = { 0, 1, 2, -1, 3, 0, -1, -1, -1, -1, -1, -1 };
	float w[12] = { 1, 1, 1, 5, f32(0x3f810001), f32(0x34000000) + 1.0f, 0, 0, 9, 9, 9, 9 };
	uint16_t x[3 * 40] = { 0 }, out[3 * 40];

	x[40] = 0x3f80;   /* token 1 */
	x[80] = 0x4000;   /* token 2 */
	memset(out, 0x77, sizeof(out));
	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	XT_ASSERT_OK(xfer_moe_reference(&l, x, 0, 3, topk, w, order_expert, NULL, out, 0));
	for (int h = 0; h < 40; h++) {
		ASSERT_EQ(0x3f80, out[h]) TH_LOG("h %d", h);
		ASSERT_EQ(0x3080, out[40 + h]) TH_LOG("h %d", h);
		ASSERT_EQ(0, out[80 + h]);
	}
}

/* ---- route on its own ------------------------------------------------------- */

struct rec_key {
	uint32_t e, t, k;
};

static int key_cmp(const void *a, const void *b)
{
	const struct rec_key *x = a, *y = b;

	if (x->e != y->e)
		return x->e < y->e ? -1 : 1;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return x->k < y->k ? -1 : x->k > y->k;
}

TEST(route_positions_sorted_by_expert_token_k)
{
	static const struct sim_cfg cfgs[] = {
		{ .R = 1, .E = 8, .K = 8, .T = 64, .seed = 21 },
		{ .R = 4, .E = 256, .K = 8, .T = 128, .seed = 22 },
		{ .R = 8, .E = 16, .K = 6, .T = 100, .seed = 23 },
		{ .R = 4, .E = 16, .K = 4, .T = 50, .kind = TK_ONE_EXPERT, .seed = 24 },
		{ .R = 4, .E = 16, .K = 4, .T = 50, .kind = TK_FIRST_RANK, .seed = 25 },
		{ .R = 2, .E = 4, .K = 2, .T = 9, .kind = TK_NONE, .seed = 26 },
	};

	for (size_t ci = 0; ci < ARRAY_SIZE(cfgs); ci++) {
		const struct sim_cfg *c = &cfgs[ci];
		struct xfer_moe_attr a = attr_of(c->R, 0, c->E, c->K, 128, c->T, XFER_MOE_BF16);
		struct xfer_moe_layout l;
		uint64_t seed = c->seed;
		uint32_t L = c->E / c->R, n = c->T;
		int32_t *topk = xcalloc((size_t)n * c->K, 4);
		uint32_t *counts = xcalloc(c->E, 4), *pos = xcalloc((size_t)n * c->K, 4);
		struct rec_key *keys = xcalloc((size_t)n * c->K, sizeof(*keys));

		XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
		gen_topk(c, &seed, topk, n);
		/* duplicates of one expert in a token are allowed: make one */
		if (c->kind == TK_UNIFORM && c->K > 1)
			topk[c->K + 1] = topk[c->K];
		XT_ASSERT_OK(xfer_moe_route(&l, topk, n, counts, pos));
		for (uint32_t d = 0; d < c->R; d++) {
			size_t m = 0;

			for (uint32_t t = 0; t < n; t++)
				for (uint32_t k = 0; k < c->K; k++)
					if (topk[t * c->K + k] >= 0 && (uint32_t)topk[t * c->K + k] / L == d)
						keys[m++] = (struct rec_key){ (uint32_t)topk[t * c->K + k] % L, t, k };
			qsort(keys, m, sizeof(*keys), key_cmp);
			for (size_t i = 0; i < m; i++) {
				ASSERT_EQ(i, pos[keys[i].t * c->K + keys[i].k]) TH_LOG("cfg %zu rank %u", ci, d);
			}
			for (uint32_t e = 0; e < L; e++) {
				uint32_t want = 0;

				for (size_t i = 0; i < m; i++)
					want += keys[i].e == e;
				ASSERT_EQ(want, counts[d * L + e]) TH_LOG("cfg %zu rank %u expert %u", ci, d, e);
			}
		}
		for (size_t i = 0; i < (size_t)n * c->K; i++)
			if (topk[i] < 0) {
				ASSERT_EQ(UINT32_MAX, pos[i]);
			}
		free(topk);
		free(counts);
		free(pos);
		free(keys);
	}
}

TEST(route_refuses_bad_ids_writing_nothing)
{
	struct xfer_moe_attr a = attr_of(2, 0, 8, 2, 128, 4, XFER_MOE_FP8);
	struct xfer_moe_layout l;
	static const int32_t bad[] = { 8, -2, INT32_MIN, INT32_MAX };
	int32_t topk[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	uint32_t counts[8], pos[8];

	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		topk[5] = bad[i];
		memset(counts, 0x5a, sizeof(counts));
		memset(pos, 0x5a, sizeof(pos));
		EXPECT_EQ(-EINVAL, xfer_moe_route(&l, topk, 4, counts, pos));
		EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "topk[2][1]")) TH_LOG("%s", xfer_moe_last_error());
		EXPECT_EQ(0x5a5a5a5au, counts[0]);
		EXPECT_EQ(0x5a5a5a5au, pos[0]);
		EXPECT_EQ(-EINVAL, xfer_moe_reference(&l, (uint16_t[512]){ 0 }, 0, 4, topk,
						      (float[8]){ 0 }, expert_fn, NULL,
						      (uint16_t[512]){ 0 }, 0));
		EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "topk[2][1]"));
	}
	topk[5] = 5;
	/* more tokens than T */
	EXPECT_EQ(-EINVAL, xfer_moe_route(&l, topk, 5, counts, pos));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "num_tokens 5"));
	/* a layout that xfer_moe_layout_get did not give */
	l.record_bytes += 16;
	EXPECT_EQ(-EINVAL, xfer_moe_route(&l, topk, 4, counts, pos));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "layout"));
	l.record_bytes -= 16;
	l.top_k = 40;
	EXPECT_EQ(-EINVAL, xfer_moe_route(&l, topk, 4, counts, pos));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "top_k"));
	l.top_k = 2;
	XT_ASSERT_OK(xfer_moe_route(&l, topk, 4, counts, pos));
	EXPECT_STREQ("", xfer_moe_last_error());
	EXPECT_EQ(0, pos[0]);
	EXPECT_EQ(1, counts[5]);
	EXPECT_EQ(-EINVAL, xfer_moe_route(NULL, topk, 4, counts, pos));
	EXPECT_EQ(-EINVAL, xfer_moe_route(&l, NULL, 4, counts, pos));
	EXPECT_EQ(-EINVAL, xfer_moe_route(&l, topk, 4, NULL, pos));
}

TEST(reference_refuses_bad_strides)
{
	struct xfer_moe_attr a = attr_of(1, 0, 4, 2, 128, 2, XFER_MOE_BF16);
	struct xfer_moe_layout l;
	int32_t topk[4] = { 0, 1, 2, 3 };
	uint16_t x[256] = { 0 }, out[256];
	float w[4] = { 1, 1, 1, 1 };
	struct expert_ctx ectx = { .l = &l };

	XT_ASSERT_OK(xfer_moe_layout_get(&a, &l));
	EXPECT_EQ(-EINVAL, xfer_moe_reference(&l, x, 100, 2, topk, w, expert_fn, &ectx, out, 0));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "x_stride 100"));
	EXPECT_EQ(-EINVAL, xfer_moe_reference(&l, x, 0, 2, topk, w, expert_fn, &ectx, out, 127));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "out_stride 127"));
	EXPECT_EQ(-EINVAL, xfer_moe_reference(&l, x, 0, 2, topk, w, NULL, &ectx, out, 0));
	EXPECT_NE(NULL, strstr(xfer_moe_last_error(), "fn"));
	EXPECT_EQ(0, ectx.calls);
	XT_ASSERT_OK(xfer_moe_reference(&l, x, 0, 2, topk, w, expert_fn, &ectx, out, 0));
	EXPECT_EQ(4, ectx.calls);
}

/* ---- bf16 rounding ---------------------------------------------------------- */

TEST(bf16_rounding_matches_distances)
{
	uint64_t seed = 31;
	/* ties both ways, the edge to Inf, subnormals, NaN with a low payload */
	static const uint32_t edge[] = {
		0x3f808000, 0x3f818000, 0x3f80ffff, 0x3f807fff, 0x7f7f8000, 0x7f7f7fff, 0xff7f8000,
		0x7f7fffff, 0x00008000, 0x00018000, 0x80000001, 0x7f800001, 0xff800001, 0x7fc00000,
		0x7f800000, 0xff800000, 0, 0x80000000,
	};

	for (size_t i = 0; i < ARRAY_SIZE(edge); i++) {
		ASSERT_EQ(naive_bf16(f32(edge[i])), xfer_bf16_from_f32(f32(edge[i]))) TH_LOG("%08x", edge[i]);
	}
	EXPECT_EQ(0x7fc0, xfer_bf16_from_f32(f32(0x7f800001)));
	EXPECT_EQ(0x7f80, xfer_bf16_from_f32(f32(0x7f7f8000)));   /* the tie past the largest: Inf */
	EXPECT_EQ(0x3f80, xfer_bf16_from_f32(f32(0x3f808000)));   /* tie to even */
	EXPECT_EQ(0x3f82, xfer_bf16_from_f32(f32(0x3f818000)));
	for (int n = 0; n < 1 << 21; n++) {
		uint32_t u = (uint32_t)rng_next(&seed);

		ASSERT_EQ(naive_bf16(f32(u)), xfer_bf16_from_f32(f32(u))) TH_LOG("%08x", u);
	}
}

TEST_HARNESS_MAIN
