// SPDX-License-Identifier: MIT
/*
 * `xfer-moe sim` as a user runs it: -j gives one JSON document with the
 * predicted rows beside the published figures (DeepEP only on CX-7, none
 * for shapes without published figures), the cluster's rates and the
 * assumptions; bad options exit 1 with the reason (JSON in -j mode),
 * never by a signal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <json-c/json.h>

#include "harness.h"

static char tool[512];
static char out[1 << 17];

/* Run the tool with args; its stdout in out; the exit status, or -1 when
 * it did not exit (a signal). */
static int run(const char *args)
{
	return xt_run_tool(tool, args, out, sizeof(out));
}

static json_object *field(json_object *o, const char *key)
{
	json_object *v = NULL;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static double num(json_object *o, const char *key)
{
	json_object *v = field(o, key);

	return v ? json_object_get_double(v) : -1;
}

/* The row of `table` for cluster and ep, or NULL. */
static json_object *row_of(json_object *doc, const char *table, const char *cluster, int ep)
{
	json_object *t = field(doc, table);

	for (size_t i = 0; t && i < json_object_array_length(t); i++) {
		json_object *r = json_object_array_get_idx(t, i);

		if (!strcmp(json_object_get_string(field(r, "cluster")), cluster) &&
		    json_object_get_int(field(r, "ep")) == ep)
			return r;
	}
	return NULL;
}

FIXTURE(tool) {
	char unused;
};

FIXTURE_SETUP(tool)
{
	if (xt_tool_path("xfer-moe", tool, sizeof(tool)))
		XT_SETUP_SKIP("%s not built", tool);
}

FIXTURE_TEARDOWN(tool) {}

TEST_F(tool, json_beside_published)
{
	json_object *doc, *r, *c;
	int rc;

	rc = run("sim -j --ep 8,64");
	doc = json_tokener_parse(out);
	ASSERT_TRUE(rc == 0 && doc) TH_LOG("sim -j: exit %d, one JSON document", rc);
	EXPECT_EQ(4u, json_object_array_length(field(doc, "predicted")));
	EXPECT_GT(json_object_array_length(field(doc, "assumptions")), 3u);
	EXPECT_EQ(7408, num(doc, "record_bytes"));
	/* the rates beside the figures */
	c = json_object_array_get_idx(field(doc, "clusters"), 0);
	EXPECT_STREQ("cx7", json_object_get_string(field(c, "cluster")));
	EXPECT_EQ(400, num(c, "nic_gbps"));
	r = row_of(doc, "predicted", "cx7", 64);
	ASSERT_TRUE(r != NULL);
	EXPECT_TRUE(num(r, "dispatch_us") > num(r, "disp_bound_us") && num(r, "disp_bound_us") > 0);
	EXPECT_TRUE(num(r, "combine_us") > num(r, "comb_bound_us") && num(r, "comb_bound_us") > 0);
	EXPECT_EQ(177.9, num(r, "deepep_disp"));
	EXPECT_EQ(325.0, num(r, "deepep_comb"));
	EXPECT_EQ(187.5, num(r, "pplx_disp"));
	EXPECT_EQ(56, num(r, "nic_peers"));
	/* EFA: pplx's figures, no DeepEP (it needs GPU-initiated RDMA) */
	r = row_of(doc, "predicted", "efa", 64);
	ASSERT_TRUE(r != NULL);
	EXPECT_EQ(266.7, num(r, "pplx_disp"));
	EXPECT_TRUE(field(r, "deepep_disp") == NULL);
	r = row_of(doc, "predicted", "cx7", 8);
	ASSERT_TRUE(r != NULL);
	EXPECT_EQ(0, num(r, "disp_bound_us")) TH_LOG("EP8 is one node: NVLink only");
	EXPECT_TRUE(field(doc, "target_ep64_cx7") && field(doc, "target_ep64_efa"));
	json_object_put(doc);
}

/* Only DeepSeek-V3 decode has published figures; --detail adds the phases. */
TEST_F(tool, other_config_no_published)
{
	json_object *doc, *r;
	int rc;

	rc = run("sim -j --config v2-lite --ep 16 --cluster efa --detail");
	doc = json_tokener_parse(out);
	ASSERT_TRUE(rc == 0 && doc);
	r = row_of(doc, "predicted", "efa", 16);
	ASSERT_TRUE(r != NULL);
	EXPECT_TRUE(field(r, "pplx_disp") == NULL);
	EXPECT_EQ(1u, json_object_array_length(field(doc, "predicted")));
	EXPECT_EQ(2u, json_object_array_length(field(doc, "phases")));
	EXPECT_EQ(2048, num(doc, "hidden"));
	json_object_put(doc);
}

TEST_F(tool, options_reach_the_model)
{
	json_object *doc, *r;
	double slow;

	ASSERT_EQ(0, run("sim -j --ep 16 --cluster cx7 --nic-gbps 100"));
	doc = json_tokener_parse(out);
	r = row_of(doc, "predicted", "cx7", 16);
	ASSERT_TRUE(r != NULL);
	slow = num(r, "dispatch_us");
	EXPECT_EQ(100, num(json_object_array_get_idx(field(doc, "clusters"), 0), "nic_gbps"));
	json_object_put(doc);
	ASSERT_EQ(0, run("sim -j --ep 16 --cluster cx7"));
	doc = json_tokener_parse(out);
	r = row_of(doc, "predicted", "cx7", 16);
	ASSERT_TRUE(r != NULL);
	EXPECT_LT(num(r, "dispatch_us"), slow) TH_LOG("400 Gbit/s faster than 100");
	json_object_put(doc);
}

TEST_F(tool, bad_options_refused)
{
	static const char *const bad[] = {
		"--ep 0", "--ep 3", "--ep 256", "--ep 8,x", "--config nope", "--dtype fp9",
		"--hidden 100", "--topk 300", "--tokens 0", "--goodput 1.5", "--nic-gbps -1",
		"--nic-gbps abc", "--link-us nan", "--nics 0", "--cluster ib", "--seeds 0", "--seeds 100",
		"--seed", "--bogus", "extra", "--experts 100",
	};
	char args[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_object *doc;
		int rc;

		snprintf(args, sizeof(args), "sim -j %s", bad[i]);
		rc = run(args);
		doc = json_tokener_parse(out);
		EXPECT_EQ(1, rc) TH_LOG("'%s': exit 1 (-1: a signal)", bad[i]);
		EXPECT_TRUE(doc && field(doc, "error")) TH_LOG("'%s': a JSON error, got '%s'", bad[i], out);
		json_object_put(doc);
	}
}

TEST_F(tool, help)
{
	EXPECT_EQ(0, run("sim --help"));
	EXPECT_TRUE(strstr(out, "--nic-gbps") && strstr(out, "--seeds")) TH_LOG("%s", out);
}

TEST_HARNESS_MAIN
