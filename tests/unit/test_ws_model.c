// SPDX-License-Identifier: MIT
/*
 * config.json -> parameter list: totals of the shipped models against a
 * closed-form count written out here from each architecture, and against
 * the published sizes:
 *   DeepSeek-V3       671B main model (paper); 685B on Hugging Face, which
 *                     counts the multi-token-prediction layer (--mtp here)
 *   Kimi-K2           1.04T in the tech report / "1.03T" on Hugging Face
 *   Qwen3-235B-A22B   235B
 *   Qwen2.5-0.5B      0.49B (494,032,768, tied embeddings counted once)
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xfer_weightsync.h"

struct mla {
	uint64_t V, H, I, mI, L, nh, qlora, kvlora, nope, rope, vd, E, ns, first_dense, mtp;
};

static uint64_t mla_layer(const struct mla *m, int moe)
{
	uint64_t attn = m->H * m->qlora + m->qlora + m->nh * (m->nope + m->rope) * m->qlora +
			m->H * (m->kvlora + m->rope) + m->kvlora + m->nh * (m->nope + m->vd) * m->kvlora +
			m->nh * m->vd * m->H;
	uint64_t ffn = moe ? (m->E + m->ns) * 3 * m->H * m->mI + m->E * m->H + m->E : 3 * m->H * m->I;

	return attn + 2 * m->H + ffn;
}

static uint64_t mla_total(const struct mla *m, int with_mtp)
{
	uint64_t n = 2 * m->V * m->H + m->H;

	for (uint64_t l = 0; l < m->L; l++)
		n += mla_layer(m, l >= m->first_dense);
	if (with_mtp) /* embed copy, enorm, hnorm, eh_proj, layer, shared_head norm + head */
		n += m->mtp * (m->V * m->H + 2 * m->H + 2 * m->H * m->H + mla_layer(m, 1) + m->H + m->V * m->H);
	return n;
}

static uint64_t count(const char *path, uint32_t flags, int *rc)
{
	xfer_ws_model *m = NULL;
	uint64_t n;

	*rc = xfer_ws_model_load(path, flags, &m);
	if (*rc)
		return 0;
	n = xfer_ws_model_numel(m);
	xfer_ws_model_free(m);
	return n;
}

/* The model at path (loaded with flags) counts the closed form's want
 * parameters; the count. */
static uint64_t count_is(struct __test_metadata *_metadata, const char *what, const char *path,
			 uint32_t flags, uint64_t want)
{
	int rc;
	uint64_t n = count(path, flags, &rc);

	EXPECT_TRUE(rc == 0 && n == want) TH_LOG("%s: %lu parameters, closed form %lu", what,
						 (unsigned long)n, (unsigned long)want);
	return n;
}

static const struct xfer_ws_param *find(const xfer_ws_model *m, const char *name)
{
	size_t n;
	const struct xfer_ws_param *p = xfer_ws_model_params(m, &n);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(p[i].name, name))
			return &p[i];
	return NULL;
}

static const struct mla ds = { 129280, 7168, 18432, 2048, 61, 128, 1536, 512, 128, 64, 128, 256, 1, 3, 1 };
static const struct mla kimi = { 163840, 7168, 18432, 2048, 61, 64, 1536, 512, 128, 64, 128, 384, 1, 1, 0 };

/* DeepSeek-V3 against the closed form and the published 671B / 685B (with MTP). */
TEST(deepseek_v3_parameter_count)
{
	uint64_t n;

	n = count_is(_metadata, "DeepSeek-V3", "models/deepseek-v3.json", 0, mla_total(&ds, 0));
	EXPECT_TRUE(fabs(n / 1e9 - 671) < 0.5) TH_LOG("DeepSeek-V3 main model is the published 671B (%.2fB)", n / 1e9);
	n = count_is(_metadata, "DeepSeek-V3 with MTP", "models/deepseek-v3.json", XFER_WS_MODEL_MTP,
		     mla_total(&ds, 1));
	EXPECT_TRUE(fabs(n / 1e9 - 685) < 0.6) TH_LOG("DeepSeek-V3 with MTP is Hugging Face's 685B (%.2fB)", n / 1e9);
}

/* Kimi-K2 against the closed form and the published ~1.03T; no MTP layer. */
TEST(kimi_k2_parameter_count)
{
	uint64_t n, want = mla_total(&kimi, 0);

	n = count_is(_metadata, "Kimi-K2", "models/kimi-k2.json", 0, want);
	EXPECT_TRUE(fabs(n / 1e12 - 1.03) < 0.011) TH_LOG("Kimi-K2 is the published ~1.03-1.04T (%.4fT)", n / 1e12);
	/* no MTP layer: --mtp changes nothing */
	count_is(_metadata, "Kimi-K2 with --mtp (it has no MTP layer)", "models/kimi-k2.json",
		 XFER_WS_MODEL_MTP, want);
}

/* Qwen3-MoE: GQA with q/k norms, 128 experts in every layer, untied head */
TEST(qwen3_235b_a22b_parameter_count)
{
	uint64_t V = 151936, H = 4096, L = 94, nh = 64, nkv = 4, hd = 128, E = 128, mI = 1536;
	uint64_t layer = H * nh * hd + 2 * H * nkv * hd + nh * hd * H + 2 * hd + 2 * H +
			 E * 3 * H * mI + E * H;
	uint64_t n;

	n = count_is(_metadata, "Qwen3-235B-A22B", "models/qwen3-235b-a22b.json", 0, 2 * V * H + H + L * layer);
	EXPECT_TRUE(fabs(n / 1e9 - 235) < 0.5) TH_LOG("Qwen3-235B-A22B is the published 235B (%.2fB)", n / 1e9);
}

/* Qwen2: q/k/v biases, tied embeddings */
TEST(qwen2_5_0_5b_parameter_count)
{
	uint64_t V = 151936, H = 896, L = 24, nh = 14, nkv = 2, hd = 64, I = 4864;
	uint64_t layer = H * nh * hd + nh * hd + 2 * (H * nkv * hd + nkv * hd) + nh * hd * H +
			 3 * H * I + 2 * H;
	uint64_t n;

	n = count_is(_metadata, "Qwen2.5-0.5B", "models/qwen2.5-0.5b.json", 0, V * H + H + L * layer);
	EXPECT_TRUE(n == 494032768ull) TH_LOG("Qwen2.5-0.5B is the published 494,032,768 (0.49B)");
}

/* Names and shapes as the checkpoints have them. */
TEST(kimi_k2_names_and_shapes)
{
	xfer_ws_model *m;
	int rc;

	rc = xfer_ws_model_load("models/kimi-k2.json", 0, &m);
	ASSERT_TRUE(rc == 0) TH_LOG("load Kimi-K2");

	const struct xfer_ws_param *p = find(m, "model.layers.5.self_attn.q_b_proj.weight");
	const struct xfer_ws_param *e = find(m, "model.layers.60.mlp.experts.383.down_proj.weight");
	const struct xfer_ws_param *b = find(m, "model.layers.1.mlp.gate.e_score_correction_bias");

	EXPECT_TRUE(p && p->rows == 64 * 192 && p->cols == 1536 && p->dtype == XFER_WS_DT_BF16)
		TH_LOG("q_b_proj is [heads*(nope+rope), q_lora_rank]");
	EXPECT_TRUE(e && e->rows == 7168 && e->cols == 2048 && e->expert == 383 && e->layer == 60)
		TH_LOG("last expert's down_proj is [hidden, moe_intermediate]");
	EXPECT_TRUE(b && b->dtype == XFER_WS_DT_F32 && b->ndim == 1 && b->rows == 384)
		TH_LOG("router bias is f32 [n_routed_experts]");
	EXPECT_TRUE(!find(m, "model.layers.0.mlp.experts.0.up_proj.weight") &&
		    find(m, "model.layers.0.mlp.up_proj.weight"))
		TH_LOG("first_k_dense_replace=1: layer 0 is dense");
	EXPECT_TRUE(!strcmp(xfer_ws_model_type(m), "kimi_k2")) TH_LOG("model type");
	xfer_ws_model_free(m);
}

/* Configs that must be refused. */
TEST(bad_configs_refused)
{
	xfer_ws_model *m;

	EXPECT_TRUE(xfer_ws_model_parse("{", 0, &m) == -EINVAL) TH_LOG("truncated JSON refused");
	EXPECT_TRUE(xfer_ws_model_parse("[1,2]", 0, &m) == -EINVAL) TH_LOG("non-object JSON refused");
	EXPECT_TRUE(xfer_ws_model_parse("{\"hidden_size\": 64, \"vocab_size\": 100}", 0, &m) == -EINVAL)
		TH_LOG("config without layers or heads refused");
	EXPECT_TRUE(xfer_ws_model_parse("{\"hidden_size\":64,\"vocab_size\":100,\"num_hidden_layers\":2,"
				"\"num_attention_heads\":4,\"intermediate_size\":128,\"num_experts\":8}",
				0, &m) == -EINVAL)
		TH_LOG("experts without moe_intermediate_size refused");
	EXPECT_TRUE(xfer_ws_model_parse("{}", 0x80, &m) == -EINVAL) TH_LOG("unknown load flag refused");
	EXPECT_TRUE(xfer_ws_model_load("models/does-not-exist.json", 0, &m) == -ENOENT) TH_LOG("missing file: -ENOENT");
}

TEST_HARNESS_MAIN
