/* SPDX-License-Identifier: MIT */
/*
 * What the ranks send, from the seed alone, so that the coordinator can
 * count the bytes of the same routing the ranks run and a check can be
 * repeated: routing, weights and tokens are functions of (seed, rank,
 * variant, token). The check's expert is cheap and deterministic: a
 * different affine map per expert, so that a row delivered to the wrong
 * expert, or not at all, changes the output.
 */
#include <string.h>

#include "bf16.h"
#include "fp8_e4m3.h"
#include "moe.h"
#include "rng.h"

/* splitmix64 */
static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t stream(const struct moe_run_opts *o, uint32_t rank, uint64_t variant, uint64_t what,
		       uint64_t t)
{
	return rng_mix(o->seed ^ rng_mix(((uint64_t)rank << 48) ^ (what << 40) ^ rng_mix(variant) ^ t));
}

void moe_gen_routing(const struct moe_run_opts *o, uint32_t rank, uint64_t variant, int32_t *topk,
		     float *weights)
{
	const struct moe_config *c = o->cfg;
	uint32_t K = c->topk, E = c->experts;
	/* a slot is -1 when a draw is below this (none_frac of 2^64) */
	uint64_t none = o->none_frac >= 1.0 ? UINT64_MAX
			: (uint64_t)(o->none_frac * 18446744073709551616.0);

	for (uint32_t t = 0; t < c->tokens; t++) {
		uint64_t s = stream(o, rank, variant, 1, t);
		int32_t *row = topk + (uint64_t)t * K;
		uint32_t n = 0;

		/* Floyd's sampling: K distinct of E, each set equally likely */
		for (uint32_t j = E - K; j < E; j++) {
			uint32_t r = (uint32_t)(next(&s) % (j + 1ull));
			bool seen = false;

			for (uint32_t i = 0; i < n && !seen; i++)
				seen = row[i] == (int32_t)r;
			row[n++] = (int32_t)(seen ? j : r);
		}
		/* then in a uniform order (Floyd's favours late j at the end) */
		for (uint32_t i = K - 1; i > 0; i--) {
			uint32_t k = (uint32_t)(next(&s) % (i + 1ull));
			int32_t tmp = row[i];

			row[i] = row[k];
			row[k] = tmp;
		}
		for (uint32_t k = 0; k < K; k++) {
			if (o->none_frac > 0 && next(&s) < none)
				row[k] = -1;
			weights[(uint64_t)t * K + k] = (float)(1 + next(&s) % 64) / 64.0f;
		}
	}
}

void moe_gen_tokens(const struct moe_run_opts *o, uint32_t rank, uint64_t variant, uint16_t *x)
{
	const struct moe_config *c = o->cfg;

	for (uint32_t t = 0; t < c->tokens; t++) {
		uint64_t s = stream(o, rank, variant, 2, t);
		uint16_t *row = x + (uint64_t)t * c->hidden;

		for (uint32_t h = 0; h < c->hidden; h += 4) {
			uint64_t v = next(&s);

			/* 16 bits each: sign, exponent 2^-8 .. 2^7, 7 mantissa bits */
			for (uint32_t i = 0; i < 4 && h + i < c->hidden; i++, v >>= 16)
				row[h + i] = (uint16_t)((v & 0x8000) | ((119 + (v >> 7) % 16) << 7) |
							(v & 0x7f));
		}
	}
}

void moe_expert(void *ctx, uint32_t expert, const uint8_t *x, const float *scales, uint16_t *y)
{
	const struct xfer_moe_layout *l = ctx;
	float a = 1.0f + (float)(expert % 8) * 0.125f, b = (float)((int)(expert % 5) - 2) * 0.0625f;

	for (uint32_t h = 0; h < l->hidden; h++) {
		float v;

		if (l->dispatch_dtype == XFER_MOE_FP8) {
			v = xfer_fp8_e4m3_to_f32(x[h]) * scales[h / 128];
		} else {
			uint16_t bits;

			memcpy(&bits, x + 2ull * h, 2);
			v = xfer_bf16_to_f32(bits);
		}
		y[h] = xfer_bf16_from_f32(v * a + b);
	}
}
