// SPDX-License-Identifier: MIT
/*
 * Simulator sanity: never faster than the bound (busiest NIC bytes / rate),
 * monotone in the NIC rate, network-bound runs scale with it, the pipeline
 * stages show when they are the bottleneck, a tiny watermark still
 * finishes, and the anchor (Kimi-K2 256 BF16 -> 128 FP8, 400 Gbit/s)
 * lands within 1.15x of its bound and under 1.3 s.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xfer_weightsync.h"

#define KIMI_TIMEOUT_S 30   /* 1.6 s here, 4.9 s under ASan+UBSan */

static const char *mid_moe =
	"{\"model_type\":\"qwen3_moe\",\"hidden_size\":1024,\"vocab_size\":32000,\"intermediate_size\":2816,"
	"\"moe_intermediate_size\":512,\"num_hidden_layers\":12,\"num_attention_heads\":16,"
	"\"num_key_value_heads\":4,\"head_dim\":64,\"num_experts\":64,\"tie_word_embeddings\":false}";

static struct xfer_ws_schedule *plan(const char *json, const char *path, const char *t, const char *i)
{
	struct xfer_ws_trainer_layout tl;
	struct xfer_ws_infer_layout il = { .dtype = XFER_WS_DT_FP8E4M3 };
	struct xfer_ws_schedule *s = NULL;
	xfer_ws_model *m;

	if (json ? xfer_ws_model_parse(json, 0, &m) : xfer_ws_model_load(path, 0, &m))
		return NULL;
	if (xfer_ws_trainer_parse(t, &tl) || xfer_ws_infer_parse(i, &il) || xfer_ws_plan(m, &tl, &il, NULL, &s))
		s = NULL;
	xfer_ws_model_free(m);
	return s;
}

static double sim(const struct xfer_ws_schedule *s, double gbps, double xform, uint64_t watermark,
		  struct xfer_ws_sim_result *r)
{
	struct xfer_ws_cluster c;

	xfer_ws_cluster_defaults(&c);
	c.trainer_nic_gbps = c.infer_nic_gbps = gbps;
	if (xform > 0)
		c.xform_gbs = xform;
	if (watermark)
		c.watermark = watermark;
	if (xfer_ws_simulate(s, &c, r))
		return -1;
	return r->predicted_s;
}

/* A 12-layer 64-expert model planned 32 -> 16. */
FIXTURE(mid_moe) {
	struct xfer_ws_schedule *s;
};

FIXTURE_SETUP(mid_moe)
{
	self->s = plan(mid_moe, NULL, "fsdp=8,ep=4", "ep=8,dp=2");
	ASSERT_TRUE(self->s != NULL) TH_LOG("plan a 16-layer 64-expert model 32 -> 16");
}

FIXTURE_TEARDOWN(mid_moe)
{
	xfer_ws_schedule_free(self->s);
}

/* NIC rates 50 to 800 Gbit/s: never faster than the bound, monotone in the
 * rate, and network-bound runs scale with it. */
TEST_F(mid_moe, nic_rate_sweep)
{
	static const double rates[] = { 50, 100, 200, 400, 800 };
	struct xfer_ws_sim_result r;
	double prev = 1e30, p100 = 0, p400 = 0;
	int mono = 1, above = 1;

	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		double p = sim(self->s, rates[i], 0, 0, &r);

		TH_LOG("%5.0f Gbit/s: predicted %.6f s, bound %.6f s, ratio %.3f", rates[i], p, r.bound_s,
		       p / r.bound_s);
		mono &= p > 0 && p <= prev;
		above &= p >= r.bound_s;
		prev = p;
		if (rates[i] == 100)
			p100 = p;
		if (rates[i] == 400)
			p400 = p;
	}
	EXPECT_TRUE(above) TH_LOG("predicted >= bound at every NIC rate");
	EXPECT_TRUE(mono) TH_LOG("predicted time never grows with the NIC rate");
	EXPECT_TRUE(p100 / p400 > 2.5) TH_LOG("network-bound: 4x the rate is >2.5x faster (%.2fx)", p100 / p400);
}

TEST_F(mid_moe, within_1_5x_of_bound_at_400g)
{
	struct xfer_ws_sim_result r;

	sim(self->s, 400, 0, 0, &r);
	EXPECT_TRUE(r.predicted_s <= 1.5 * r.bound_s)
		TH_LOG("mid model at 400 Gbit/s within 1.5x of its bound (%.3f)", r.predicted_s / r.bound_s);
}

/* Quantisation as the bottleneck: the prediction follows the transform stage. */
TEST_F(mid_moe, transform_stage_bounds_when_slow)
{
	struct xfer_ws_sim_result r, r2;

	sim(self->s, 400, 0, 0, &r);
	sim(self->s, 400, 1.0, 0, &r2);
	EXPECT_TRUE(r2.predicted_s >= r2.prep_s && r2.predicted_s > 2 * r.predicted_s)
		TH_LOG("at 1 GB/s quantisation the transform bounds the time (%.4f s >= prep %.4f s)",
		       r2.predicted_s, r2.prep_s);
}

/* Staging watermark below any chunk: the floor (peak_staging) keeps it running. */
TEST_F(mid_moe, one_byte_watermark_completes)
{
	struct xfer_ws_sim_result r, r2;

	sim(self->s, 400, 0, 0, &r);
	EXPECT_TRUE(sim(self->s, 400, 0, 1, &r2) > 0 && r2.predicted_s >= r.predicted_s * 0.999 &&
		    r2.predicted_s >= r2.bound_s)
		TH_LOG("a 1-byte watermark still completes (%.4f s vs %.4f s)", r2.predicted_s, r.predicted_s);
}

/* The rates a simulation uses: 0 fields resolved to the defaults (the
 * inference NICs to the trainers' rate), set fields kept, and a simulation
 * with the resolved struct predicts what one with the original does. */
TEST_F(mid_moe, cluster_resolved_as_simulated)
{
	struct xfer_ws_cluster def, c = { .size = sizeof(c), .trainer_nic_gbps = 100, .window = 3 };
	struct xfer_ws_cluster given = c;
	struct xfer_ws_sim_result r, r2;

	xfer_ws_cluster_defaults(&def);
	XT_ASSERT_OK(xfer_ws_cluster_resolve(&c));
	EXPECT_EQ(sizeof(c), c.size);
	EXPECT_EQ(100, c.trainer_nic_gbps);
	EXPECT_EQ(100, c.infer_nic_gbps) TH_LOG("inference NICs do not follow the trainers' rate");
	EXPECT_EQ(def.copy_gbs, c.copy_gbs);
	EXPECT_EQ(def.xform_gbs, c.xform_gbs);
	EXPECT_EQ(def.op_us, c.op_us);
	EXPECT_EQ(def.chunk_us, c.chunk_us);
	EXPECT_EQ(def.barrier_us, c.barrier_us);
	EXPECT_EQ(def.watermark, c.watermark);
	EXPECT_EQ(3, c.window);
	XT_ASSERT_OK(xfer_ws_simulate(self->s, &given, &r));
	XT_ASSERT_OK(xfer_ws_simulate(self->s, &c, &r2));
	EXPECT_EQ(r.predicted_s, r2.predicted_s);
	EXPECT_EQ(-EINVAL, xfer_ws_cluster_resolve(NULL));
	c.size = 4;
	EXPECT_EQ(-EINVAL, xfer_ws_cluster_resolve(&c));
}

/* Uneven small layout: trainers 3 -> inference 2. */
TEST(qwen2_5_uneven_above_bound)
{
	struct xfer_ws_schedule *s = plan(NULL, "models/qwen2.5-0.5b.json", "fsdp=3", "dp=2");
	struct xfer_ws_sim_result r;

	EXPECT_TRUE(s && sim(s, 400, 0, 0, &r) >= r.bound_s && r.bound_s > 0)
		TH_LOG("Qwen2.5-0.5B 3 -> 2: predicted %.5f >= bound %.5f", s ? r.predicted_s : 0,
		       s ? r.bound_s : 0);
	xfer_ws_schedule_free(s);
}

/* The anchor: Kimi-K2 256 BF16 -> 128 FP8 at 400 Gbit/s. */
XT_TEST_TIMEOUT(kimi_k2_anchor, KIMI_TIMEOUT_S)
{
	struct xfer_ws_schedule *s = plan(NULL, "models/kimi-k2.json", "fsdp=16,pp=2,ep=8", "tp=1,ep=32,dp=4");
	struct xfer_ws_sim_result r;

	ASSERT_TRUE(s != NULL) TH_LOG("plan Kimi-K2 256 -> 128");

	double p = sim(s, 400, 0, 0, &r);

	TH_LOG("Kimi-K2: predicted %.4f s, bound %.4f s (trainer %.4f, inference %.4f), ratio %.4f",
	       p, r.bound_s, r.trainer_bound_s, r.infer_bound_s, p / r.bound_s);
	EXPECT_TRUE(p >= r.bound_s && p <= 1.15 * r.bound_s) TH_LOG("Kimi-K2 within 1.15x of the bound (%.4f)", p / r.bound_s);
	EXPECT_TRUE(p < 1.3) TH_LOG("Kimi-K2 under the anchor's 1.3 s (%.4f s)", p);
	xfer_ws_schedule_free(s);
}

TEST_HARNESS_MAIN
