// SPDX-License-Identifier: MIT
/*
 * fp8 e4m3 block quantisation against a straightforward reference written
 * here: the value of every e4m3 code from its bit fields, and rounding as
 * "the nearest representable value, ties to the even code", searched over
 * all codes. Policy under test (xfer_weightsync.h): scale = amax / 448 over
 * the block's finite values (1 when amax is 0), saturation to +-448 (Inf
 * included), NaN -> 0x7f with its sign.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xfer_weightsync.h"
#include "ws_internal.h"

#define X8_TIMEOUT_S 90   /* all 2^32 floats: 22 s here; every 17th under ASan: 3 s */

/* e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa; no Inf; S.1111.111 is NaN */
static double code_value(int c)
{
	int e = (c >> 3) & 15, m = c & 7;
	double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);

	return (c & 0x80) ? -v : v;
}

static uint8_t ref_encode(float x)
{
	double a = fabs((double)x), best = INFINITY;
	int bc = 0;

	if (isnan(x))
		return signbit(x) ? 0xff : 0x7f;
	if (a > 448)
		a = 448; /* saturating */
	for (int c = 0; c < 0x7f; c++) { /* non-negative finite codes */
		double d = fabs(code_value(c) - a);

		if (d < best || (d == best && !(c & 1))) {
			best = d;
			bc = c;
		}
	}
	return (uint8_t)(bc | (signbit(x) ? 0x80 : 0));
}

static float bf16(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static uint16_t to_bf16(float f) /* truncation is fine for building inputs */
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return (uint16_t)(u >> 16);
}

/* The reference block quantiser: same policy, written the plain way. */
static void ref_quant(const uint16_t *src, size_t rows, size_t cols, size_t ld, uint8_t *dst, float *scales)
{
	size_t sc = (cols + 127) / 128;

	for (size_t bi = 0; bi * 128 < rows; bi++)
		for (size_t bj = 0; bj * 128 < cols; bj++) {
			float amax = 0, scale;

			for (size_t i = bi * 128; i < rows && i < bi * 128 + 128; i++)
				for (size_t j = bj * 128; j < cols && j < bj * 128 + 128; j++) {
					float v = fabsf(bf16(src[i * ld + j]));

					if (isfinite(v) && v > amax)
						amax = v;
				}
			scale = amax == 0 ? 1.0f : amax / 448.0f;
			scales[bi * sc + bj] = scale;
			for (size_t i = bi * 128; i < rows && i < bi * 128 + 128; i++)
				for (size_t j = bj * 128; j < cols && j < bj * 128 + 128; j++)
					dst[i * cols + j] = ref_encode(bf16(src[i * ld + j]) / scale);
		}
}

/* The library's quantiser (AVX2 where the CPU has it) and its value-by-value
 * path both give the reference's bits and scales. */
static int quant_matches(const uint16_t *src, size_t rows, size_t cols, size_t ld, size_t *bad)
{
	size_t n = rows * cols, ns = ((rows + 127) / 128) * ((cols + 127) / 128);
	uint8_t *a = malloc(n + 1), *b = malloc(n + 1), *c = malloc(n + 1);
	float *sa = malloc(ns * 4 + 4), *sb = malloc(ns * 4 + 4), *scs = malloc(ns * 4 + 4);
	int ok;

	xfer_ws_quant_fp8(src, rows, cols, ld, a, cols, sa);
	xfer_ws_quant_fp8_scalar(src, rows, cols, ld, c, cols, scs);
	ref_quant(src, rows, cols, ld, b, sb);
	*bad = 0;
	for (size_t i = 0; i < n; i++)
		*bad += (a[i] != b[i]) + (c[i] != b[i]);
	ok = !*bad && !memcmp(sa, sb, ns * 4) && !memcmp(scs, sb, ns * 4);
	free(a);
	free(b);
	free(c);
	free(sa);
	free(sb);
	free(scs);
	return ok;
}

/* The AVX2 rounding of 8 lanes against the scalar one, for every float
 * (every 17th under the sanitizers, which make the loop slow). Returns the
 * number of floats that differ, or -1 where this CPU cannot run it. */
static uint64_t x8_checked;

static long x8_differs(uint32_t *stepp)
{
#if defined(__x86_64__) && defined(__GNUC__)
	uint32_t step = 1;
	long bad = 0;

#if defined(__SANITIZE_ADDRESS__)
	step = 17;
#endif
	*stepp = step;
	if (!__builtin_cpu_supports("avx2"))
		return -1;
	for (uint64_t base = 0; base < (1ull << 32); base += 8ull * step) {
		float in[8];
		uint8_t out[8];

		for (int k = 0; k < 8; k++) {
			uint32_t u = (uint32_t)(base + (uint64_t)k * step);

			memcpy(&in[k], &u, 4);
		}
		xfer_ws_e4m3_x8(in, out);
		for (int k = 0; k < 8; k++)
			bad += out[k] != xfer_ws_f32_to_e4m3(in[k]);
		x8_checked += 8;
	}
	return bad;
#else
	return -1;
#endif
}

/* Every code decodes to its value. */
TEST(all_codes_decode)
{
	size_t bad = 0;

	for (int c = 0; c < 256; c++) {
		float v = xfer_ws_e4m3_to_f32((uint8_t)c);

		if ((c & 0x7f) == 0x7f ? !isnan(v) : v != (float)code_value(c))
			bad++;
	}
	EXPECT_TRUE(!bad) TH_LOG("all 256 codes decode to their value (0x7f/0xff NaN)");
}

/* Every bf16 value encodes as the reference does. */
TEST(all_bf16_inputs_round_like_reference)
{
	size_t bad = 0;

	for (uint32_t b = 0; b < 65536; b++)
		bad += xfer_ws_f32_to_e4m3(bf16((uint16_t)b)) != ref_encode(bf16((uint16_t)b));
	EXPECT_TRUE(!bad) TH_LOG("all 65536 bf16 inputs round like the reference (%zu differ)", bad);
}

/* The halfway points between codes and their neighbours. */
TEST(ties_to_even_code)
{
	size_t bad = 0;

	for (int c = 0; c < 0x7e; c++) {
		float mid = (float)((code_value(c) + code_value(c + 1)) / 2);
		float up = nextafterf(mid, INFINITY), dn = nextafterf(mid, 0);

		bad += xfer_ws_f32_to_e4m3(mid) != ref_encode(mid);
		bad += xfer_ws_f32_to_e4m3(up) != ref_encode(up) || xfer_ws_f32_to_e4m3(dn) != ref_encode(dn);
		bad += xfer_ws_f32_to_e4m3(-mid) != ref_encode(-mid);
	}
	EXPECT_TRUE(!bad) TH_LOG("ties between neighbouring codes go to the even code, neighbours of ties round away");
}

TEST(saturation_nan_subnormals)
{
	EXPECT_TRUE(xfer_ws_f32_to_e4m3(448.0f) == 0x7e && xfer_ws_f32_to_e4m3(1e30f) == 0x7e &&
		    xfer_ws_f32_to_e4m3(-INFINITY) == 0xfe && xfer_ws_f32_to_e4m3(463.99f) == 0x7e)
		TH_LOG("saturates to +-448 (0x7e/0xfe), Inf included");
	EXPECT_TRUE(xfer_ws_f32_to_e4m3(NAN) == 0x7f && xfer_ws_f32_to_e4m3(-NAN) == 0xff) TH_LOG("NaN keeps sign");
	EXPECT_TRUE(xfer_ws_f32_to_e4m3(ldexpf(1, -9)) == 0x01 && xfer_ws_f32_to_e4m3(ldexpf(1, -10)) == 0x00 &&
		    xfer_ws_f32_to_e4m3(ldexpf(3, -10)) == 0x02 && xfer_ws_f32_to_e4m3(1e-30f) == 0 &&
		    xfer_ws_f32_to_e4m3(-0.0f) == 0x80)
		TH_LOG("subnormals: 2^-9 is 0x01, half of it ties to 0, 1.5 units ties to 2, tiny -> 0");
}

/* The AVX2 rounding of 8 floats = the scalar one for every float (every
 * 17th under ASan). */
XT_TEST_TIMEOUT(avx2_x8_matches_scalar, X8_TIMEOUT_S)
{
	uint32_t step = 1;
	long d = x8_differs(&step);

	if (d < 0)
		SKIP(return, "no AVX2 here");
	EXPECT_TRUE(d == 0) TH_LOG("AVX2 rounding of 8 floats = the scalar one (%llu floats: all 2^32 "
				   "without sanitizers; %ld differ)", (unsigned long long)x8_checked, d);
	/* every float the loop was meant to see was checked */
	EXPECT_EQ(((1ull << 32) + 8ull * step - 1) / (8ull * step) * 8, x8_checked);
}

/* Blocks: random data, odd shapes and a row stride. */
TEST(random_blocks_match_reference)
{
	size_t bad = 0, rows = 300, cols = 257;
	uint16_t *src = malloc(rows * (cols + 5) * sizeof(*src));
	uint32_t seed = 12345;

	for (size_t i = 0; i < rows * (cols + 5); i++) {
		seed = seed * 1103515245u + 12345u;
		src[i] = to_bf16(ldexpf((float)((int)(seed >> 8) % 2000 - 1000) / 1000.0f, (int)(seed >> 28) - 8));
	}
	EXPECT_TRUE(quant_matches(src, rows, cols, cols + 5, &bad))
		TH_LOG("random 300x257 (partial blocks, strided): bits and scales match (%zu differ)", bad);
	free(src);
}

/* Edge blocks: zeros, subnormal-range values, max bf16, NaN and Inf mixed in;
 * quantised by the library into q and sc. */
FIXTURE(edge_blocks) {
	uint16_t src[4 * 128 * 128];
	uint8_t q[4 * 128 * 128];
	float sc[4];
};

FIXTURE_SETUP(edge_blocks)
{
	uint16_t *src = self->src;

	for (size_t i = 0; i < 4 * 128 * 128; i++)
		src[i] = 0;
	for (size_t j = 0; j < 128; j++) {
		src[128 * 128 + j] = to_bf16(ldexpf(1.0f, -130)); /* bf16 subnormal */
		src[2 * 128 * 128 + j] = (uint16_t)(j & 1 ? 0x7f7f : 0xff7f); /* +-max bf16 */
	}
	src[3 * 128 * 128 + 5] = 0x7fc0; /* NaN */
	src[3 * 128 * 128 + 6] = 0xff80; /* -Inf */
	src[3 * 128 * 128 + 7] = to_bf16(3.0f);
	xfer_ws_quant_fp8(src, 4 * 128, 128, 128, self->q, 128, self->sc);
}

FIXTURE_TEARDOWN(edge_blocks) {}

TEST_F(edge_blocks, match_reference)
{
	size_t bad = 0;

	EXPECT_TRUE(quant_matches(self->src, 4 * 128, 128, 128, &bad))
		TH_LOG("zeros, subnormals, +-max, NaN/Inf blocks match (%zu differ)", bad);
}

TEST_F(edge_blocks, zero_block_scale_1)
{
	EXPECT_TRUE(self->sc[0] == 1.0f && self->q[0] == 0 && self->q[128 * 128 - 1] == 0)
		TH_LOG("all-zero block: scale 1, codes 0");
}

TEST_F(edge_blocks, nan_inf_in_block)
{
	const uint8_t *q = self->q;

	EXPECT_TRUE(q[3 * 128 * 128 + 5] == 0x7f && q[3 * 128 * 128 + 6] == 0xfe && q[3 * 128 * 128 + 7] == 0x7e &&
		    self->sc[3] == 3.0f / 448.0f)
		TH_LOG("NaN stays NaN, -Inf saturates, amax ignores non-finite values");
}

TEST_F(edge_blocks, block_max_maps_to_448)
{
	EXPECT_TRUE(self->q[2 * 128 * 128] == 0xfe && self->q[2 * 128 * 128 + 1] == 0x7e)
		TH_LOG("block max maps to +-448");
}

/* Dequantised values are within half a step of the input. */
TEST_F(edge_blocks, subnormal_block_round_trip)
{
	size_t bad = 0;

	for (size_t i = 0; i < 128; i++) {
		float x = bf16(self->src[128 * 128 + i]), d = xfer_ws_e4m3_to_f32(self->q[128 * 128 + i]) * self->sc[1];

		bad += fabsf(d - x) > fabsf(x) * 0.0625f;
	}
	EXPECT_TRUE(!bad) TH_LOG("a block of bf16 subnormals scales up into range and dequantises back");
}

TEST_HARNESS_MAIN
