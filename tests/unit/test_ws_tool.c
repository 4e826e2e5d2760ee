// SPDX-License-Identifier: MIT
/*
 * xfer-weightsync as a user runs it: JSON output with predicted_s and
 * bound_s, plan -o FILE then simulate --schedule FILE gives the same figure,
 * unknown commands and options exit non-zero, and errors in JSON mode are JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <json-c/json.h>

#include "harness.h"

static char tool[512];

/* Run the tool with args; its stdout in out (NUL-terminated); the exit status. */
static int run(const char *args, char *out, size_t len)
{
	return xt_run_tool(tool, args, out, len);
}

static double num(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : -1;
}

static const char *small = "--model models/qwen2.5-0.5b.json --trainer fsdp=3 --inference dp=2";
static char out[1 << 16], args[1024];

/* The tool of the build under test ($XFER_BUILD, default build): skip when it is not built. */
FIXTURE(tool) {
	char unused;
};

FIXTURE_SETUP(tool)
{
	if (xt_tool_path("xfer-weightsync", tool, sizeof(tool)))
		XT_SETUP_SKIP("%s not built", tool);
}

FIXTURE_TEARDOWN(tool) {}

/* simulate -j: one JSON object with predicted_s >= bound_s, the ratio and the default rate. */
TEST_F(tool, simulate_json)
{
	struct json_object *o;
	int rc;

	snprintf(args, sizeof(args), "-j simulate %s", small);
	rc = run(args, out, sizeof(out));
	o = json_tokener_parse(out);
	EXPECT_TRUE(rc == 0 && o) TH_LOG("simulate -j prints one JSON object");
	EXPECT_TRUE(num(o, "predicted_s") >= num(o, "bound_s") && num(o, "bound_s") > 0)
		TH_LOG("predicted_s %.6f >= bound_s %.6f > 0", num(o, "predicted_s"), num(o, "bound_s"));
	EXPECT_TRUE(num(o, "ratio") >= 1.0 && num(o, "nic_gbps") == 400)
		TH_LOG("ratio and the default 400 Gbit/s are reported");
	json_object_put(o);
}

/* plan -o FILE, then simulate --schedule FILE gives the same figure. */
TEST_F(tool, plan_saved_then_simulated_same)
{
	char path[] = "/tmp/test_ws_tool.XXXXXX";
	struct json_object *o, *o2;
	int rc, fd;

	snprintf(args, sizeof(args), "-j simulate %s", small);
	rc = run(args, out, sizeof(out));
	o = json_tokener_parse(out);
	ASSERT_TRUE(rc == 0 && o) TH_LOG("simulate -j prints one JSON object");

	fd = mkstemp(path);
	if (fd >= 0)
		close(fd);
	snprintf(args, sizeof(args), "-j plan %s -o %s", small, path);
	rc = run(args, out, sizeof(out));
	o2 = json_tokener_parse(out);
	EXPECT_TRUE(rc == 0 && num(o2, "writes") > 0 && num(o2, "chunks") > 0) TH_LOG("plan -o writes the schedule");
	json_object_put(o2);
	snprintf(args, sizeof(args), "-j simulate --schedule %s", path);
	rc = run(args, out, sizeof(out));
	o2 = json_tokener_parse(out);
	EXPECT_TRUE(rc == 0 && num(o2, "predicted_s") == num(o, "predicted_s"))
		TH_LOG("simulating the saved schedule gives the same prediction");
	json_object_put(o2);
	unlink(path);
	json_object_put(o);
}

TEST_F(tool, plan_text_output)
{
	int rc;

	snprintf(args, sizeof(args), "plan %s", small);
	rc = run(args, out, sizeof(out));
	EXPECT_TRUE(rc == 0 && strstr(out, "valid") && strstr(out, "yes") && strstr(out, "trainer_imbalance"))
		TH_LOG("plan text output: validated, balance shown");
}

TEST_F(tool, unknown_command_fails)
{
	EXPECT_TRUE(run("frobnicate", out, sizeof(out)) != 0) TH_LOG("unknown command exits non-zero");
}

TEST_F(tool, unknown_command_json_error)
{
	struct json_object *o;
	int rc;

	rc = run("-j frobnicate", out, sizeof(out));
	o = json_tokener_parse(out);
	EXPECT_TRUE(rc != 0 && o && json_object_object_get_ex(o, "error", NULL))
		TH_LOG("unknown command in JSON mode: a JSON error");
	json_object_put(o);
}

TEST_F(tool, missing_model_json_errno)
{
	struct json_object *o;
	int rc;

	rc = run("-j plan --model models/does-not-exist.json", out, sizeof(out));
	o = json_tokener_parse(out);
	EXPECT_TRUE(rc != 0 && o && num(o, "errno") == 2) TH_LOG("missing model in JSON mode: JSON error with errno 2");
	json_object_put(o);
}

TEST_F(tool, bad_layout_fails)
{
	EXPECT_TRUE(run("plan --trainer fsdp=0", out, sizeof(out)) != 0) TH_LOG("bad layout exits non-zero");
}

TEST_F(tool, unknown_option_fails)
{
	EXPECT_TRUE(run("plan --no-such-option", out, sizeof(out)) != 0) TH_LOG("unknown option exits non-zero");
}

TEST_HARNESS_MAIN
