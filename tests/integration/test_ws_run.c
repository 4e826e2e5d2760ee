/* SPDX-License-Identifier: MIT */
/*
 * `xfer-weightsync run` end to end: trainer and inference processes on
 * loopback (xfer's local backend, the tool's default, and libfabric's shm),
 * every received tensor checked by its receiver. Small
 * models are written here as config.json files (the parser derives their
 * parameters as it does for the shipped ones): a dense Qwen2-style model
 * and a DeepSeek-V3-style MoE (MLA, shared + routed experts), in bf16 and
 * fp8, with 4 -> 2 and uneven 3 -> 2 layouts, each run for several steps
 * (the receivers clear their buffers before each and check every tensor
 * after each); bf16 chunks of full rows go straight from the trainers'
 * registered shards unless --stage-all; then a trainer killed mid-run must
 * give an error, not a hang.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xt.h"

static const char *dense_cfg =
	"{\"model_type\":\"qwen2\",\"hidden_size\":256,\"intermediate_size\":640,"
	"\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
	"\"vocab_size\":1000,\"tie_word_embeddings\":false}";

static const char *moe_cfg =
	"{\"model_type\":\"deepseek_v3\",\"hidden_size\":256,\"intermediate_size\":512,"
	"\"moe_intermediate_size\":128,\"num_hidden_layers\":3,\"first_k_dense_replace\":1,"
	"\"num_attention_heads\":4,\"num_key_value_heads\":4,\"q_lora_rank\":128,"
	"\"kv_lora_rank\":64,\"qk_nope_head_dim\":32,\"qk_rope_head_dim\":16,\"v_head_dim\":32,"
	"\"n_routed_experts\":8,\"n_shared_experts\":1,\"num_experts_per_tok\":2,"
	"\"vocab_size\":1000,\"tie_word_embeddings\":false}";

/* Tensors of 512 KiB and more, which the executor splits over its
 * transform threads, with edges that are not multiples of 128 (partial
 * fp8 blocks at the ends of the parts). */
static const char *mid_cfg =
	"{\"model_type\":\"qwen2\",\"hidden_size\":576,\"intermediate_size\":1600,"
	"\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
	"\"vocab_size\":2000,\"tie_word_embeddings\":false}";

/* Big enough that a run lasts well past the moment a trainer is killed. */
static const char *big_cfg =
	"{\"model_type\":\"qwen2\",\"hidden_size\":1024,\"intermediate_size\":4096,"
	"\"num_hidden_layers\":8,\"num_attention_heads\":8,\"num_key_value_heads\":8,"
	"\"vocab_size\":32000,\"tie_word_embeddings\":false}";

static char tool[256];

static void write_cfg(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
}

/* Run the tool with -j; returns its exit status, *doc its JSON (or NULL). */
static int run_tool(const char *args, json_object **doc, double *secs)
{
	char cmd[1024], *buf = malloc(1 << 20);
	size_t n = 0;
	uint64_t t0 = xt_now_us();
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "%s run -j %s", tool, args);
	p = popen(cmd, "r");
	while (p && n < (1 << 20) - 1) {
		size_t k = fread(buf + n, 1, (1 << 20) - 1 - n, p);

		if (!k)
			break;
		n += k;
	}
	buf[n] = 0;
	st = p ? pclose(p) : -1;
	*secs = (double)(xt_now_us() - t0) / 1e6;
	*doc = json_tokener_parse(buf);
	if (!*doc)
		fprintf(stderr, "not JSON: %s\n", buf);
	free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool measure_bound;   /* runs calibrate only where the bound is checked */

static double jnum(json_object *d, const char *k)
{
	json_object *v = NULL;

	return d && json_object_object_get_ex(d, k, &v) ? json_object_get_double(v) : -1;
}

static int64_t jint(json_object *d, const char *k)
{
	json_object *v;

	return d && json_object_object_get_ex(d, k, &v) ? json_object_get_int64(v) : -1;
}

/* A verified run; returns its JSON (caller puts it) or NULL on failure. */
static json_object *verified_run(const char *cfg, const char *trainer, const char *infer,
				 const char *dtype, const char *extra)
{
	char args[512];
	json_object *d;
	double secs;
	int fails0 = xt_failures, rc;
	int64_t steps;

	/* the loopback bound (seconds of calibration) only where it is checked */
	snprintf(args, sizeof(args), "--model %s --trainer %s --inference %s --dtype %s %s%s", cfg,
		 trainer, infer, dtype, extra, measure_bound ? "" : " --no-bound");
	rc = run_tool(args, &d, &secs);
	XT_EQ(rc, 0);
	XT_CHECK(d != NULL, "no JSON");
	XT_EQ(jint(d, "mismatches"), 0);
	XT_EQ(jint(d, "failed_ranks"), 0);
	steps = jint(d, "steps");
	XT_CHECK(steps >= 1, "no step completed");
	XT_CHECK(jint(d, "tensors_checked") > 0, "nothing checked");
	/* every write of the schedule was checked in every step, every byte counted */
	XT_EQ(jint(d, "tensors_checked"), jint(d, "writes") * steps);
	XT_EQ(jint(d, "bytes"), jint(d, "total_bytes"));
	if (d && xt_failures != fails0)
		fprintf(stderr, "%s\n", json_object_to_json_string(d));
	if (xt_failures != fails0) {
		json_object_put(d);
		return NULL;
	}
	return d;
}

static bool ok_run(json_object *d)
{
	json_object_put(d);
	return d != NULL;
}

/* Records a case that ran `d` and checked it since `fails0`; the count
 * the next case starts from. */
static int case_done(const char *name, json_object *d, int fails0)
{
	json_object_put(d);
	xt_result(name, d && xt_failures == fails0, NULL);
	return xt_failures;
}

int main(void)
{
	const char *b = getenv("XFER_BUILD");
	char dense[64], moe[64], big[64], mid[64];
	json_object *d;
	double secs;
	int rc;

	xt_plan();
	snprintf(tool, sizeof(tool), "%s/bin/xfer-weightsync", b ? b : "build");
	if (access(tool, X_OK) != 0) {
		printf("SKIP: %s not built\n", tool);
		return 77;
	}
	snprintf(dense, sizeof(dense), "/tmp/xfer-ws-dense-%d.json", (int)getpid());
	snprintf(moe, sizeof(moe), "/tmp/xfer-ws-moe-%d.json", (int)getpid());
	snprintf(big, sizeof(big), "/tmp/xfer-ws-big-%d.json", (int)getpid());
	snprintf(mid, sizeof(mid), "/tmp/xfer-ws-mid-%d.json", (int)getpid());
	write_cfg(dense, dense_cfg);
	write_cfg(moe, moe_cfg);
	write_cfg(big, big_cfg);
	write_cfg(mid, mid_cfg);

	/* three steps (the tool's default), bf16 rows straight from the shards */
	int fails0 = xt_failures;

	d = verified_run(dense, "fsdp=4", "tp=1,dp=2", "bf16", "");
	XT_EQ(jint(d, "steps"), 3);
	XT_EQ(jint(d, "staged_bytes"), 0);
	fails0 = case_done("dense bf16 4 -> 2, 3 steps, nothing staged", d, fails0);
	measure_bound = true;
	d = verified_run(dense, "fsdp=4", "tp=1,dp=2", "bf16", "--steps 2");
	measure_bound = false;
	XT_CHECK(jnum(d, "bound_s") > 0 && jnum(d, "loopback_gbs") > 0 &&
		 jnum(d, "loopback_gbs_concurrent") > 0 && jnum(d, "ratio") > 0,
		 "bound %.4f s, rates %.2f / %.2f GB/s", jnum(d, "bound_s"), jnum(d, "loopback_gbs"),
		 jnum(d, "loopback_gbs_concurrent"));
	fails0 = case_done("dense bf16 4 -> 2: loopback bound measured (one and two streams)", d,
			   fails0);
	d = verified_run(dense, "fsdp=4", "tp=1,dp=2", "bf16", "--stage-all --steps 2");
	XT_EQ(jint(d, "steps"), 2);
	/* each chunk is staged once and written to both replicas (dp=2) */
	XT_CHECK(jint(d, "staged_bytes") >= jint(d, "total_bytes") / 2, "staged %lld of %lld",
		 (long long)jint(d, "staged_bytes"), (long long)jint(d, "total_bytes"));
	fails0 = case_done("dense bf16 4 -> 2, --stage-all: every chunk staged", d, fails0);
	xt_result("dense fp8 3 -> 2 (uneven)", ok_run(verified_run(dense, "fsdp=3", "tp=2", "fp8", "")),
		  NULL);
	xt_result("dense bf16 3 -> 2 (tp=2: column slices staged), 1 step",
		  ok_run(verified_run(dense, "fsdp=3", "tp=2", "bf16", "--steps 1")), NULL);
	xt_result("moe fp8 4 -> 2 (ep)", ok_run(verified_run(moe, "fsdp=2,ep=2", "ep=2", "fp8", "")),
		  NULL);
	xt_result("moe bf16 3 -> 2, small watermark",
		  ok_run(verified_run(moe, "fsdp=3", "tp=1,dp=2", "bf16", "--watermark-mib 1 --window 4")),
		  NULL);

	/* the same over libfabric's shm */
	xt_result("dense bf16 4 -> 2 over --provider shm",
		  ok_run(verified_run(dense, "fsdp=4", "tp=1,dp=2", "bf16", "--provider shm")), NULL);
	xt_result("dense fp8 3 -> 2 (uneven) over --provider shm",
		  ok_run(verified_run(dense, "fsdp=3", "tp=2", "fp8", "--provider shm")), NULL);
	xt_result("moe fp8 4 -> 2 (ep) over --provider shm",
		  ok_run(verified_run(moe, "fsdp=2,ep=2", "ep=2", "fp8", "--provider shm")), NULL);

	/* Transform threads: large chunks quantised (or copied) in parts by 3
	 * threads, every byte still what one thread makes of it; the bound
	 * counts the quantisation, at no more than 3 threads' measured rate. */
	fails0 = xt_failures;
	measure_bound = true;
	d = verified_run(mid, "fsdp=1", "tp=1", "fp8", "--threads 3 --steps 2");
	measure_bound = false;
	XT_EQ(jint(d, "threads"), 3);
	XT_CHECK(jint(d, "transformed") > 0 && jnum(d, "transform_gbs") > 0 &&
		 jnum(d, "transform_gbs_concurrent") > 0, "transformed %lld bytes at %.2f / %.2f GB/s",
		 (long long)jint(d, "transformed"), jnum(d, "transform_gbs"),
		 jnum(d, "transform_gbs_concurrent"));
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	double tt = cores < 3 ? (double)cores : 3.0;

	XT_CHECK(jnum(d, "bound_s") * jnum(d, "transform_gbs") * 1e9 * tt >=
		 (double)jint(d, "transformed") * 0.999999,
		 "bound %.4f s under the quantisation's %.4f s", jnum(d, "bound_s"),
		 (double)jint(d, "transformed") / (jnum(d, "transform_gbs") * 1e9 * tt));
	fails0 = case_done("dense fp8 1 -> 1, 3 transform threads; bound counts quantising", d,
			   fails0);
	d = verified_run(mid, "fsdp=1", "tp=2", "bf16", "--provider shm --threads 3 --steps 2");
	XT_EQ(jint(d, "threads"), 3);
	XT_CHECK(jint(d, "staged_bytes") > 0, "nothing staged");
	case_done("dense bf16 1 -> 2 over shm (tp=2: column slices copied by 3 threads)", d, fails0);

	/* A trainer killed mid-run: an error, within the timeout, not a hang. */
	static const char *const kill_provs[] = { "shm", "local" };

	for (int k = 0; k < 2; k++) {
		char args[256], name[96];
		json_object *err = NULL;

		fails0 = xt_failures;
		snprintf(args, sizeof(args),
			 "--model %s --trainer fsdp=4 --inference tp=1,dp=2 --dtype bf16 --provider %s "
			 "--timeout-ms 3000 --kill-trainer 1 --kill-after-ms 5 --no-bound", big, kill_provs[k]);
		rc = run_tool(args, &d, &secs);
		XT_CHECK(rc != 0, "run with a killed trainer exited 0 (%s)", kill_provs[k]);
		XT_CHECK(d && jint(d, "failed_ranks") > 0, "no failed rank reported (%s)", kill_provs[k]);
		XT_CHECK(d && json_object_object_get_ex(d, "error", &err), "no error in the JSON (%s)",
			 kill_provs[k]);
		XT_CHECK(secs < 60, "took %.1f s (%s)", secs, kill_provs[k]);
		json_object_put(d);
		snprintf(name, sizeof(name), "trainer killed mid-run (%s): error, no hang", kill_provs[k]);
		xt_result(name, xt_failures == fails0, NULL);
	}

	unlink(dense);
	unlink(moe);
	unlink(big);
	unlink(mid);
	return xt_done();
}
