// SPDX-License-Identifier: MIT
/*
 * The MoE simulator (lib/moe/sim.c): sanity, not agreement with the
 * published figures (the tool prints those beside its own; no timing here
 * is compared with them):
 *  - the routing gives every rank exactly T*K selections, and a rank's
 *    dispatch bytes are T*K*record_bytes;
 *  - more ranks never put fewer bytes on a NIC, nor take less time;
 *  - a faster NIC is never slower, and no phase beats its NIC bound;
 *  - the defaults are resolved, the presets differ where they should;
 *  - bad attributes and cluster fields are refused with a reason;
 *  - the same seed gives the same figures; prefill adds the count rows.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "sim_internal.h"
#include "xfer_moe_sim.h"

/* DeepSeek-V3 decode at EP R (the published figures' shape). */
static struct xfer_moe_attr v3(uint32_t R)
{
	return (struct xfer_moe_attr){
		.size = sizeof(struct xfer_moe_attr),
		.world_size = R,
		.num_experts = 256,
		.top_k = 8,
		.hidden = 7168,
		.max_tokens = 128,
		.dispatch_dtype = XFER_MOE_FP8,
		.combine_dtype = XFER_MOE_BF16,
	};
}

static const uint64_t RECORD = 7408, COMBINE = 14336;

/* A decode block's header at EP R (xfer_moe_layout_get's). */
static uint64_t hdr_bytes(uint32_t R)
{
	struct xfer_moe_attr a = v3(R);
	struct xfer_moe_layout l;

	return xfer_moe_layout_get(&a, &l) ? 0 : l.block_hdr_bytes;
}

TEST(routing_counts_every_selection)
{
	static const uint32_t Rs[] = { 1, 2, 8, 16, 64 };

	for (size_t i = 0; i < sizeof(Rs) / sizeof(Rs[0]); i++) {
		uint32_t R = Rs[i], *n = calloc((size_t)R * R, sizeof(*n));
		uint64_t all = 0;

		ASSERT_TRUE(n != NULL);
		moe_sim_route(R, 256, 8, 128, 7, n);
		for (uint32_t s = 0; s < R; s++) {
			uint64_t row = 0;

			for (uint32_t d = 0; d < R; d++)
				row += n[s * R + d];
			EXPECT_EQ(128u * 8, row) TH_LOG("R %u rank %u: selections", R, s);
			all += row;
		}
		EXPECT_EQ((uint64_t)R * 128 * 8, all) TH_LOG("R %u", R);
		free(n);
	}
}

/* K = E: every token picks every expert once (distinct draws), so every
 * rank gets exactly T*L records from every rank. */
TEST(routing_distinct_experts)
{
	uint32_t n[4 * 4];

	moe_sim_route(4, 8, 8, 50, 3, n);
	for (uint32_t i = 0; i < 16; i++) {
		EXPECT_EQ(50u * 2, n[i]) TH_LOG("pair %u", i);
	}
}

TEST(byte_accounting)
{
	static const uint32_t Rs[] = { 1, 8, 16, 32 };

	for (size_t i = 0; i < sizeof(Rs) / sizeof(Rs[0]); i++) {
		struct xfer_moe_attr a = v3(Rs[i]);
		struct xfer_moe_sim_result r;
		uint32_t R = Rs[i];

		ASSERT_EQ(0, xfer_moe_simulate(&a, NULL, 1, &r)) TH_LOG("%s", xfer_moe_last_error());
		EXPECT_EQ((uint64_t)R * 128 * 8, r.selections);
		/* every rank dispatches exactly its T*K records */
		EXPECT_EQ(128u * 8 * RECORD, r.dispatch.bytes_max) TH_LOG("R %u", R);
		/* combine returns what a rank received: at least the mean, T*K */
		EXPECT_GE(r.combine.bytes_max, 128u * 8 * COMBINE) TH_LOG("R %u", R);
		/* over the wire: the records for other ranks, plus R-1 block headers */
		EXPECT_LE(r.dispatch.wire_bytes_max, 128u * 8 * RECORD + (R - 1) * hdr_bytes(R)) TH_LOG("R %u", R);
		EXPECT_GE(r.dispatch.wire_bytes_max, (R - 1) * hdr_bytes(R)) TH_LOG("R %u", R);
		EXPECT_EQ((uint64_t)R * (R - 1), r.dispatch.writes);
		EXPECT_EQ((uint64_t)R * (R - 1), r.combine.writes);
		if (R == 1) {
			EXPECT_EQ(0u, r.dispatch.wire_bytes_max);
			EXPECT_EQ(0u, r.dispatch.nic_bytes_max);
		}
		EXPECT_EQ((R + 7) / 8, r.nodes);
		EXPECT_EQ(R > 8 ? R - 8 : 0, r.nic_peers);
	}
}

/* EP8 -> EP64 on 8-GPU nodes: the share of a rank's records that leaves
 * its node grows, so no NIC carries less, and no phase gets faster. */
TEST(more_ranks_more_nic_bytes)
{
	static const uint32_t Rs[] = { 8, 16, 32, 64 };
	struct xfer_moe_sim_result prev = { 0 };

	for (size_t i = 0; i < sizeof(Rs) / sizeof(Rs[0]); i++) {
		struct xfer_moe_attr a = v3(Rs[i]);
		struct xfer_moe_sim_result r;

		ASSERT_EQ(0, xfer_moe_simulate(&a, NULL, 1, &r)) TH_LOG("%s", xfer_moe_last_error());
		if (Rs[i] == 8) {
			EXPECT_EQ(0u, r.dispatch.nic_bytes_max) TH_LOG("EP8 is one node: NVLink only");
		} else {
			EXPECT_GE(r.dispatch.nic_bytes_max, prev.dispatch.nic_bytes_max) TH_LOG("EP%u", Rs[i]);
			EXPECT_GE(r.combine.nic_bytes_max, prev.combine.nic_bytes_max) TH_LOG("EP%u", Rs[i]);
			EXPECT_GT(r.dispatch.nic_bytes_mean, prev.dispatch.nic_bytes_mean) TH_LOG("EP%u", Rs[i]);
			EXPECT_GT(r.combine.nic_bytes_mean, prev.combine.nic_bytes_mean) TH_LOG("EP%u", Rs[i]);
			EXPECT_GE(r.dispatch.us, prev.dispatch.us) TH_LOG("EP%u", Rs[i]);
			EXPECT_GE(r.combine.us, prev.combine.us) TH_LOG("EP%u", Rs[i]);
		}
		TH_LOG("EP%u: dispatch %.1f us, combine %.1f us", Rs[i], r.dispatch.us, r.combine.us);
		prev = r;
	}
}

/* 100 .. 800 Gbit/s per GPU at EP32 on both presets: never slower with a
 * faster NIC, never under the busiest NIC's bytes at its rate, and the
 * slowest rank is never faster than the mean. */
TEST(faster_nic_never_slower)
{
	static const double gbps[] = { 100, 200, 400, 800 };
	static const char *const presets[] = { "cx7", "efa" };

	for (int p = 0; p < 2; p++) {
		double pd = INFINITY, pc = INFINITY;

		for (size_t i = 0; i < sizeof(gbps) / sizeof(gbps[0]); i++) {
			struct xfer_moe_attr a = v3(32);
			struct xfer_moe_cluster c = { .size = sizeof(c) };
			struct xfer_moe_sim_result r;

			ASSERT_EQ(0, xfer_moe_cluster_preset(&c, presets[p]));
			c.nic_gbps = gbps[i];
			ASSERT_EQ(0, xfer_moe_simulate(&a, &c, 1, &r)) TH_LOG("%s", xfer_moe_last_error());
			EXPECT_LE(r.dispatch.us, pd) TH_LOG("%s %g Gbit/s", presets[p], gbps[i]);
			EXPECT_LE(r.combine.us, pc) TH_LOG("%s %g Gbit/s", presets[p], gbps[i]);
			EXPECT_GT(r.dispatch.us, r.dispatch.nic_bound_us);
			EXPECT_GT(r.combine.us, r.combine.nic_bound_us);
			EXPECT_GE(r.dispatch.us, r.dispatch.mean_us);
			EXPECT_GT(r.dispatch.nic_bound_us, 0);
			pd = r.dispatch.us;
			pc = r.combine.us;
		}
	}
}

/* Intra-node peers over the NICs (xfer without an NVLink path) cannot be
 * faster than over NVLink, and puts EP8's bytes on the NICs. */
TEST(nic_only)
{
	struct xfer_moe_attr a = v3(8);
	struct xfer_moe_cluster c;
	struct xfer_moe_sim_result nvl, nic;

	xfer_moe_cluster_defaults(&c);
	ASSERT_EQ(0, xfer_moe_simulate(&a, &c, 1, &nvl));
	c.flags = XFER_MOE_SIM_F_NIC_ONLY;
	ASSERT_EQ(0, xfer_moe_simulate(&a, &c, 1, &nic));
	EXPECT_EQ(0u, nvl.dispatch.nic_bytes_max);
	EXPECT_GT(nic.dispatch.nic_bytes_max, 0u);
	EXPECT_EQ(7u, nic.nic_peers);
	EXPECT_GT(nic.dispatch.us, nvl.dispatch.us);
	EXPECT_GT(nic.combine.us, nvl.combine.us);
}

/* Scatter rows in rank order put row i on NIC i mod nics at every rank:
 * every rank's write to rank 0 goes on NIC 0, so rank 0's NIC 0 takes all
 * it gets from the other node (2 NICs, EP16: twice the busiest NIC's
 * bytes of the spread (s + d) mod nics), and the phase is slower. */
TEST(rank_order_unbalances_nics)
{
	struct xfer_moe_attr a = v3(16);
	struct xfer_moe_cluster c = { .size = sizeof(c) };
	struct xfer_moe_sim_result spread, ranked;

	ASSERT_EQ(0, xfer_moe_cluster_preset(&c, "efa"));
	ASSERT_EQ(2u, c.nics_per_gpu);
	ASSERT_EQ(0, xfer_moe_simulate(&a, &c, 1, &spread));
	c.flags = XFER_MOE_SIM_F_RANK_ORDER;
	ASSERT_EQ(0, xfer_moe_simulate(&a, &c, 1, &ranked));
	EXPECT_GT(ranked.dispatch.nic_bytes_max, spread.dispatch.nic_bytes_max * 3 / 2);
	EXPECT_GT(ranked.combine.nic_bytes_max, spread.combine.nic_bytes_max * 3 / 2);
	EXPECT_GT(ranked.dispatch.us, spread.dispatch.us);
	EXPECT_GT(ranked.combine.us, spread.combine.us);
	/* the same bytes leave every rank, whatever the order */
	EXPECT_EQ(spread.dispatch.wire_bytes_max, ranked.dispatch.wire_bytes_max);
	EXPECT_EQ(spread.combine.wire_bytes_max, ranked.combine.wire_bytes_max);
}

TEST(same_seed_same_figures)
{
	struct xfer_moe_attr a = v3(16);
	struct xfer_moe_sim_result x, y;
	uint32_t n1[16 * 16], n2[16 * 16];

	ASSERT_EQ(0, xfer_moe_simulate(&a, NULL, 42, &x));
	ASSERT_EQ(0, xfer_moe_simulate(&a, NULL, 42, &y));
	EXPECT_EQ(0, memcmp(&x, &y, sizeof(x)));
	moe_sim_route(16, 256, 8, 128, 42, n1);
	moe_sim_route(16, 256, 8, 128, 43, n2);
	EXPECT_NE(0, memcmp(n1, n2, sizeof(n1))) TH_LOG("another seed, another routing");
}

/* Prefill: a count row to every peer before the data, no block headers. */
TEST(prefill)
{
	struct xfer_moe_attr a = v3(16), d = v3(16);
	struct xfer_moe_sim_result r, dr;

	a.flags = XFER_MOE_F_PREFILL;
	ASSERT_EQ(0, xfer_moe_simulate(&a, NULL, 1, &r)) TH_LOG("%s", xfer_moe_last_error());
	ASSERT_EQ(0, xfer_moe_simulate(&d, NULL, 1, &dr));
	EXPECT_EQ(2u * 16 * 15, r.dispatch.writes);
	EXPECT_EQ(16u * 15, r.combine.writes);
	/* the same routing: the same records, without the decode headers */
	ASSERT_GT(hdr_bytes(16), 0u);
	EXPECT_EQ(dr.dispatch.wire_bytes_max - 15 * hdr_bytes(16), r.dispatch.wire_bytes_max);
	/* a round trip of count rows first */
	EXPECT_GT(r.dispatch.us, dr.dispatch.us);
	EXPECT_EQ(dr.combine.us, r.combine.us);
}

TEST(defaults_resolved)
{
	struct xfer_moe_cluster d, z = { .size = sizeof(z) }, e = { .size = sizeof(e) };
	unsigned int n = 0;

	xfer_moe_cluster_defaults(&d);
	EXPECT_EQ(sizeof(d), d.size);
	EXPECT_EQ(8u, d.gpus_per_node);
	EXPECT_EQ(1u, d.nics_per_gpu);
	EXPECT_EQ(400, d.nic_gbps);
	EXPECT_TRUE(d.nic_goodput > 0 && d.nic_goodput <= 1);
	EXPECT_TRUE(d.link_us > 0 && d.nic_mpps > 0 && d.nvlink_gbs > 0 && d.nvlink_us > 0 &&
		    d.post_us > 0 && d.cqe_us > 0 && d.trigger_us > 0 && d.flag_us > 0 &&
		    d.kernel_us > 0 && d.hbm_gbs > 0);
	/* all zeros resolve to the defaults, field for field */
	ASSERT_EQ(0, xfer_moe_cluster_resolve(&z));
	EXPECT_EQ(0, memcmp(&z, &d, sizeof(d)));
	/* a set field is kept */
	z = (struct xfer_moe_cluster){ .size = sizeof(z), .nic_gbps = 123 };
	ASSERT_EQ(0, xfer_moe_cluster_resolve(&z));
	EXPECT_EQ(123, z.nic_gbps);
	EXPECT_EQ(d.link_us, z.link_us);
	/* the presets: cx7 is the defaults; efa has several NICs and a longer link */
	ASSERT_EQ(0, xfer_moe_cluster_preset(&e, "cx7"));
	EXPECT_EQ(0, memcmp(&e, &d, sizeof(d)));
	ASSERT_EQ(0, xfer_moe_cluster_preset(&e, "efa"));
	EXPECT_GT(e.nics_per_gpu, 1u);
	EXPECT_EQ(400, e.nic_gbps);
	EXPECT_GT(e.link_us, d.link_us);
	while (xfer_moe_cluster_preset_name(n))
		n++;
	EXPECT_EQ(2u, n);
	EXPECT_STREQ("cx7", xfer_moe_cluster_preset_name(0));
	EXPECT_EQ(-EINVAL, xfer_moe_cluster_preset(&e, "ib"));
	EXPECT_TRUE(strstr(xfer_moe_last_error(), "'ib'") != NULL) TH_LOG("%s", xfer_moe_last_error());
	/* NULL cluster: the defaults */
	{
		struct xfer_moe_attr a = v3(16);
		struct xfer_moe_sim_result x, y;

		ASSERT_EQ(0, xfer_moe_simulate(&a, NULL, 5, &x));
		ASSERT_EQ(0, xfer_moe_simulate(&a, &d, 5, &y));
		EXPECT_EQ(x.dispatch.us, y.dispatch.us);
		EXPECT_EQ(x.combine.us, y.combine.us);
	}
}

/* Every refusal says why, and leaves the result as it was. */
TEST(bad_inputs_refused)
{
	struct xfer_moe_sim_result r, keep;
	struct xfer_moe_attr a;
	struct xfer_moe_cluster c;
	static const struct {
		const char *what;
		size_t off;
		double v;
	} bad_fields[] = {
		{ "nic_gbps", offsetof(struct xfer_moe_cluster, nic_gbps), -1 },
		{ "nic_goodput", offsetof(struct xfer_moe_cluster, nic_goodput), 1.5 },
		{ "link_us", offsetof(struct xfer_moe_cluster, link_us), NAN },
		{ "post_us", offsetof(struct xfer_moe_cluster, post_us), INFINITY },
		{ "hbm_gbs", offsetof(struct xfer_moe_cluster, hbm_gbs), -0.5 },
	};

	memset(&keep, 0x5a, sizeof(keep));
	r = keep;
	a = v3(16);
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, NULL, 1, NULL));
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(NULL, NULL, 1, &r));
	a.world_size = 256;
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, NULL, 1, &r));
	EXPECT_TRUE(strstr(xfer_moe_last_error(), "world_size 256") != NULL) TH_LOG("%s", xfer_moe_last_error());
	a = v3(3);   /* 256 experts over 3 ranks */
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, NULL, 1, &r));
	EXPECT_TRUE(strstr(xfer_moe_last_error(), "num_experts") != NULL) TH_LOG("%s", xfer_moe_last_error());
	a = v3(16);
	a.top_k = 300;
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, NULL, 1, &r));
	a = v3(16);
	a.hidden = 100;   /* fp8: a multiple of 128 */
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, NULL, 1, &r));
	a = v3(16);
	for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++) {
		xfer_moe_cluster_defaults(&c);
		memcpy((char *)&c + bad_fields[i].off, &bad_fields[i].v, sizeof(double));
		EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, &c, 1, &r)) TH_LOG("%s", bad_fields[i].what);
		EXPECT_TRUE(strstr(xfer_moe_last_error(), bad_fields[i].what) != NULL)
			TH_LOG("%s: %s", bad_fields[i].what, xfer_moe_last_error());
		EXPECT_EQ(-EINVAL, xfer_moe_cluster_resolve(&c)) TH_LOG("%s", bad_fields[i].what);
	}
	xfer_moe_cluster_defaults(&c);
	c.flags = 0x80;
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, &c, 1, &r));
	EXPECT_TRUE(strstr(xfer_moe_last_error(), "flags") != NULL) TH_LOG("%s", xfer_moe_last_error());
	xfer_moe_cluster_defaults(&c);
	c.nics_per_gpu = 65;
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, &c, 1, &r));
	xfer_moe_cluster_defaults(&c);
	c.size = 0;
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, &c, 1, &r));
	c.size = XFER_MOE_CLUSTER_SIZE_VER0 - 1;
	EXPECT_EQ(-EINVAL, xfer_moe_simulate(&a, &c, 1, &r));
	EXPECT_EQ(-EINVAL, xfer_moe_cluster_preset(&c, "cx7"));
	EXPECT_EQ(-EINVAL, xfer_moe_cluster_resolve(NULL));
	EXPECT_EQ(-EINVAL, xfer_moe_cluster_preset(NULL, "cx7"));
	EXPECT_EQ(0, memcmp(&r, &keep, sizeof(r))) TH_LOG("a refused call wrote the result");
	/* a newer caller's struct: a zero tail is accepted, a set byte there
	 * (a field this library does not know) is -E2BIG, and so is a size
	 * past the maximum */
	{
		static union {
			struct xfer_moe_cluster c;
			uint8_t b[sizeof(struct xfer_moe_cluster) + 16];
		} u;

		xfer_moe_cluster_defaults(&u.c);
		u.c.size = sizeof(u);
		EXPECT_EQ(0, xfer_moe_simulate(&a, &u.c, 1, &r)) TH_LOG("%s", xfer_moe_last_error());
		u.b[sizeof(u) - 1] = 1;
		EXPECT_EQ(-E2BIG, xfer_moe_simulate(&a, &u.c, 1, &r));
		EXPECT_EQ(-E2BIG, xfer_moe_cluster_resolve(&u.c));
		u.c.size = 1u << 20;
		EXPECT_EQ(-E2BIG, xfer_moe_cluster_preset(&u.c, "cx7"));
	}
	/* an older caller's struct (the floor only) takes the defaults */
	c = (struct xfer_moe_cluster){ .size = XFER_MOE_CLUSTER_SIZE_VER0, .nic_gbps = -1 };
	EXPECT_EQ(0, xfer_moe_simulate(&a, &c, 1, &r)) TH_LOG("%s", xfer_moe_last_error());
}

TEST_HARNESS_MAIN
