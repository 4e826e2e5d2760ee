// SPDX-License-Identifier: MIT
/*
 * xfer-weightsync: plan and simulate RL weight sync (trainers -> inference).
 *
 *   xfer-weightsync [-j|--pretty] [simulate|plan|run|help] [options]
 *
 * simulate (the default) plans and predicts the time on a cluster model;
 * plan prints the schedule's statistics and can write it (-o FILE);
 * run executes it on this machine: trainer and inference processes on a
 * loopback provider, every received tensor checked (run.c).
 * Defaults are the anchor: Kimi-K2, 256 BF16 trainers FSDP/PP/EP = 16/2/8,
 * 128 FP8 inference GPUs EP32 x 4 replicas, 400 Gbit/s per GPU.
 * Text and JSON come out of the same print calls (tools/common/out.c); in
 * JSON mode errors are JSON. Models are found by name (models.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <json-c/json.h>

#include "xfer_weightsync.h"
#include "xfer_ws_exec.h"
#include "args.h"
#include "launch.h"
#include "models.h"
#include "out.h"
#include "clock.h"
#include "run.h"

#define DEFAULT_MODEL "kimi-k2"

/* A library call failed: its detail (xfer_ws_last_error) when it gave one,
 * else the error code's text. */
static int ws_fail(struct out *o, int rc, const char *what)
{
	const char *why = xfer_ws_last_error();

	if (why[0])
		return out_fail(o, 0, "%s: %s", what, why);
	return out_fail(o, rc, "%s", what);
}

struct opts {
	const char *model, *out_file, *in_file;
	char model_path[PATH_MAX];   /* the file --model named */
	struct xfer_ws_trainer_layout t;
	struct xfer_ws_infer_layout l;
	struct xfer_ws_plan_attr pa;
	struct xfer_ws_cluster c;
	uint32_t model_flags;
	int no_validate;
	struct wsrun_opts run;
	struct launch_opts launch;   /* run --rdzv: one rank per process */
};

/* Every value checked; a refusal names the option and the value. */
static int parse_opts(int argc, char **argv, struct opts *op, struct out *o, bool *help)
{
	enum { O_PROVIDER = 1001, O_RAILS, O_SEED, O_TIMEOUT, O_KILL, O_KILL_AFTER, O_STEPS,
	       O_STAGE_ALL, O_NO_BOUND, O_THREADS, O_PRETTY };
	static const struct option lo[] = {
		{ "model", required_argument, 0, 'm' },
		{ "trainer", required_argument, 0, 't' },
		{ "inference", required_argument, 0, 'i' },
		{ "dtype", required_argument, 0, 'd' },
		{ "nic-gbps", required_argument, 0, 'n' },
		{ "infer-nic-gbps", required_argument, 0, 'N' },
		{ "copy-gbs", required_argument, 0, 'C' },
		{ "xform-gbs", required_argument, 0, 'X' },
		{ "op-us", required_argument, 0, 'O' },
		{ "chunk-us", required_argument, 0, 'U' },
		{ "watermark-mib", required_argument, 0, 'W' },
		{ "window", required_argument, 0, 'w' },
		{ "min-chunk-mib", required_argument, 0, 'a' },
		{ "max-chunk-mib", required_argument, 0, 'b' },
		{ "mtp", no_argument, 0, 'M' },
		{ "no-validate", no_argument, 0, 'V' },
		{ "schedule", required_argument, 0, 's' },
		{ "json", no_argument, 0, 'j' },
		{ "pretty", no_argument, 0, O_PRETTY },
		{ "help", no_argument, 0, 'h' },
		{ "provider", required_argument, 0, 'p' },
		{ "rails", required_argument, 0, O_RAILS },
		{ "seed", required_argument, 0, O_SEED },
		{ "timeout-ms", required_argument, 0, O_TIMEOUT },
		{ "kill-trainer", required_argument, 0, O_KILL },
		{ "kill-after-ms", required_argument, 0, O_KILL_AFTER },
		{ "steps", required_argument, 0, O_STEPS },
		{ "stage-all", no_argument, 0, O_STAGE_ALL },
		{ "no-bound", no_argument, 0, O_NO_BOUND },
		{ "threads", required_argument, 0, O_THREADS },
		LAUNCH_LONGOPTS,
		{ 0, 0, 0, 0 },
	};
	char name[32];
	int c, li = 0, rc = 0;
	double v;

	optind = 1;
	opterr = 0;   /* getopt's own messages are not JSON: say it here */
	while (!rc && (c = getopt_long(argc, argv, ":jhp:o:", lo, &li)) != -1) {
		switch (c) {
		case 'm': op->model = optarg; break;
		case 't':
		case 'i':
			rc = c == 't' ? xfer_ws_trainer_parse(optarg, &op->t)
				      : xfer_ws_infer_parse(optarg, &op->l);
			if (rc)
				out_error(o, "%s: '%s': %s", c == 't' ? "--trainer" : "--inference", optarg,
					  xfer_ws_last_error());
			break;
		case 'd':
			if (!strcmp(optarg, "fp8"))
				op->l.dtype = XFER_WS_DT_FP8E4M3;
			else if (!strcmp(optarg, "bf16"))
				op->l.dtype = XFER_WS_DT_BF16;
			else
				out_error(o, "--dtype: '%s': one of fp8, bf16", optarg), rc = -EINVAL;
			break;
		case 'M': op->model_flags |= XFER_WS_MODEL_MTP; break;
		case 'V': op->no_validate = 1; break;
		case 'o': op->out_file = optarg; break;
		case 's': op->in_file = optarg; break;
		case 'j': o->json = true; break;
		case O_PRETTY: o->json = o->pretty = true; break;
		case 'h': *help = true; break;
		case 'p': op->run.provider = optarg; break;
		case O_RAILS:
			rc = arg_u32(o, "--rails", optarg, 1, XFER_MAX_RAILS, &op->run.rails);
			break;
		case O_SEED: rc = arg_u64(o, "--seed", optarg, 0, UINT64_MAX, &op->run.seed); break;
		/* the run's deadline is 4 timeouts: keep that within an int of ms */
		case O_TIMEOUT:
			rc = arg_int(o, "--timeout-ms", optarg, 1, 3600000, &op->run.timeout_ms);
			break;
		case O_KILL:
			rc = arg_int(o, "--kill-trainer", optarg, 0, 65535, &op->run.kill_trainer);
			break;
		case O_KILL_AFTER:
			rc = arg_int(o, "--kill-after-ms", optarg, 0, 3600000, &op->run.kill_after_ms);
			break;
		case O_STAGE_ALL: op->run.exec_flags |= XFER_WS_EXEC_STAGE_ALL; break;
		case O_NO_BOUND: op->run.no_bound = true; break;
		case O_THREADS: rc = arg_u32(o, "--threads", optarg, 1, 256, &op->run.threads); break;
		case O_STEPS:
			rc = arg_u32(o, "--steps", optarg, 1, WSRUN_MAX_STEPS, &op->run.steps);
			break;
		case 'w': rc = arg_u32(o, "--window", optarg, 1, 65536, &op->c.window); break;
		case 'n': case 'N': case 'C': case 'X': case 'O': case 'U':
		case 'W': case 'a': case 'b':
			/* long-only options: li names the one matched */
			snprintf(name, sizeof(name), "--%s", lo[li].name);
			if ((rc = arg_pos_double(o, name, optarg, 1e9, &v)))
				break;
			switch (c) {
			case 'n': op->c.trainer_nic_gbps = v; break;
			case 'N': op->c.infer_nic_gbps = v; break;
			case 'C': op->c.copy_gbs = v; break;
			case 'X': op->c.xform_gbs = v; break;
			case 'O': op->c.op_us = v; break;
			case 'U': op->c.chunk_us = v; break;
			case 'W': op->c.watermark = (uint64_t)(v * (1 << 20)); break;
			case 'a': op->pa.min_chunk = (uint64_t)(v * (1 << 20)); break;
			case 'b': op->pa.max_chunk = (uint64_t)(v * (1 << 20)); break;
			}
			break;
		default:
			rc = launch_opt(o, c, optarg, &op->launch);
			if (rc == 1)
				rc = args_getopt_error(o, c, argv, "see --help");
		}
	}
	if (!rc)
		rc = args_leftover(o, argc, argv, "see --help");
	if (!rc && launch_stray(&op->launch)) {
		out_error(o, "%s is for launcher mode: give --rdzv URL too", launch_stray(&op->launch));
		rc = -EINVAL;
	}
	if (rc)
		out_finish(o);
	return rc ? 1 : 0;
}

/* Plan (or load) the schedule the options describe. */
static int get_schedule(struct opts *op, struct out *o, struct xfer_ws_schedule **s)
{
	char buf[PATH_MAX], err[256];
	xfer_ws_model *m;
	double t0, c0, u0;
	int rc;

	if (op->in_file) {
		FILE *f = fopen(op->in_file, "rb");

		if (!f)
			return out_fail(o, errno, "--schedule: %s", op->in_file);
		t0 = xfer_now_s();
		rc = xfer_ws_schedule_load(f, s);
		fclose(f);
		if (rc) {
			snprintf(buf, sizeof(buf), "%s: not a valid schedule", op->in_file);
			return ws_fail(o, rc, buf);
		}
		out_str(o, "schedule", op->in_file);
		out_f64(o, "load_ms", (xfer_now_s() - t0) * 1e3);
		return 0;
	}
	if ((rc = model_find(op->model, buf, sizeof(buf), err, sizeof(err))))
		return out_fail(o, rc, "--model %s: %s", op->model, err);
	snprintf(op->model_path, sizeof(op->model_path), "%s", buf);
	op->model = op->model_path;
	if ((rc = xfer_ws_model_load(op->model, op->model_flags, &m))) {
		snprintf(err, sizeof(err), "model %s", op->model);
		return ws_fail(o, rc, err);
	}
	out_str(o, "model", op->model);
	out_str(o, "model_type", xfer_ws_model_type(m));
	out_u64(o, "params", xfer_ws_model_numel(m));
	t0 = xfer_now_s();
	c0 = xfer_cpu_s();
	u0 = xfer_user_s();
	rc = xfer_ws_plan(m, &op->t, &op->l, &op->pa, s);
	out_f64(o, "plan_ms", (xfer_now_s() - t0) * 1e3);
	out_f64(o, "plan_cpu_ms", (xfer_cpu_s() - c0) * 1e3);
	out_f64(o, "plan_user_ms", (xfer_user_s() - u0) * 1e3);
	xfer_ws_model_free(m);
	if (rc)
		return ws_fail(o, rc, "planning failed");
	if (!op->no_validate) {
		t0 = xfer_now_s();
		rc = xfer_ws_schedule_validate(*s, err, sizeof(err));
		out_f64(o, "validate_ms", (xfer_now_s() - t0) * 1e3);
		out_str(o, "valid", rc ? err : "yes");
		if (rc) {
			xfer_ws_schedule_free(*s);
			return out_fail(o, 0, "invalid schedule: %s", err);
		}
	}
	return 0;
}

static void print_layout(struct out *o, const struct xfer_ws_schedule *s)
{
	char b[128];

	snprintf(b, sizeof(b), "fsdp=%u,pp=%u,ep=%u,dp=%u", s->trainer.fsdp, s->trainer.pp,
		 s->trainer.ep, s->trainer.dp);
	out_str(o, "trainer", b);
	snprintf(b, sizeof(b), "tp=%u,ep=%u,dp=%u", s->infer.tp, s->infer.ep, s->infer.dp);
	out_str(o, "inference", b);
	out_str(o, "dtype", xfer_ws_dtype_name(s->infer.dtype));
	out_u64(o, "trainer_ranks", s->ntrainers);
	out_u64(o, "inference_ranks", s->ninfer);
}

static int cmd_plan(struct opts *op, struct out *o)
{
	struct xfer_ws_schedule *s;
	struct xfer_ws_stats st;

	if (get_schedule(op, o, &s))
		return 1;
	xfer_ws_schedule_stats(s, &st);
	print_layout(o, s);
	out_u64(o, "tensors", s->ntensors);
	out_u64(o, "chunks", s->nchunks);
	out_u64(o, "writes", s->nwrites);
	out_u64(o, "gathers", s->ngathers);
	out_u64(o, "total_bytes", st.total_bytes);
	out_u64(o, "gather_bytes", st.gather_bytes);
	out_u64(o, "max_trainer_tx_bytes", st.max_trainer_tx);
	out_u64(o, "min_trainer_tx_bytes", st.min_trainer_tx);
	out_f64(o, "trainer_imbalance", st.trainer_imbalance);
	out_u64(o, "max_infer_rx_bytes", st.max_infer_rx);
	out_u64(o, "min_infer_rx_bytes", st.min_infer_rx);
	out_f64(o, "infer_imbalance", st.infer_imbalance);
	if (op->out_file) {
		FILE *f = fopen(op->out_file, "wb");
		int rc = f ? xfer_ws_schedule_save(s, f) : -errno;

		if (f && fclose(f) && !rc)
			rc = -EIO;
		if (rc) {
			xfer_ws_schedule_free(s);
			return out_fail(o, rc, "-o %s", op->out_file);
		}
		out_str(o, "written", op->out_file);
	}
	xfer_ws_schedule_free(s);
	out_finish(o);
	return 0;
}

static int cmd_simulate(struct opts *op, struct out *o)
{
	struct xfer_ws_schedule *s;
	struct xfer_ws_sim_result r;
	struct xfer_ws_cluster c;
	double t0;
	int rc;

	if (get_schedule(op, o, &s))
		return 1;
	print_layout(o, s);
	t0 = xfer_now_s();
	rc = xfer_ws_simulate(s, &op->c, &r);
	xfer_ws_schedule_free(s);
	if (rc)
		return out_fail(o, rc, "simulation failed");
	/* the rates used, defaults filled in, beside the figure */
	c = op->c;
	xfer_ws_cluster_resolve(&c);
	out_f64(o, "nic_gbps", c.trainer_nic_gbps);
	out_f64(o, "infer_nic_gbps", c.infer_nic_gbps);
	out_f64(o, "copy_gbs", c.copy_gbs);
	out_f64(o, "xform_gbs", c.xform_gbs);
	out_f64(o, "op_us", c.op_us);
	out_f64(o, "chunk_us", c.chunk_us);
	out_u64(o, "watermark_bytes", c.watermark);
	out_f64(o, "sim_ms", (xfer_now_s() - t0) * 1e3);
	out_u64(o, "steps", r.events);
	out_u64(o, "window", c.window);
	out_f64(o, "prep_s", r.prep_s);
	out_f64(o, "trainer_bound_s", r.trainer_bound_s);
	out_f64(o, "infer_bound_s", r.infer_bound_s);
	out_f64(o, "bound_s", r.bound_s);
	out_f64(o, "predicted_s", r.predicted_s);
	out_f64(o, "ratio", r.bound_s > 0 ? r.predicted_s / r.bound_s : 0);
	out_finish(o);
	return 0;
}

/* run --rdzv: this process is one rank; the world must be the layout's
 * ranks, trainers first. 1 (printed) when refused before the run, else
 * wsrun_rank's result. */
static int run_launched(struct opts *op, struct out *o, const struct xfer_ws_schedule *s,
			struct wsrun_result *r)
{
	static struct launch l;
	uint32_t want = s->ntrainers + s->ninfer;
	char err[512];
	int rc;

	memset(r, 0, sizeof(*r));
	if (op->run.kill_trainer >= 0)
		return out_fail(o, 0, "--kill-trainer: the forked mode's drill (here kill the rank's "
				"process instead)");
	if ((rc = launch_settle(&op->launch, &l, err, sizeof(err))))
		return out_fail(o, 0, "%s", err);
	if (l.world != want)
		return out_fail(o, 0, "world size %u (%s) does not fit the layout: %u trainers + %u "
				"inference ranks = %u ranks, trainers first", l.world, l.source,
				s->ntrainers, s->ninfer, want);
	out_u64(o, "rank", l.rank);
	out_u64(o, "world_size", l.world);
	out_str(o, "role", l.rank < s->ntrainers ? "trainer" : "inference");
	out_str(o, "launcher", l.source);
	out_str(o, "job", l.job);
	out_str(o, "node", l.node);
	/* generous: ranks started by hand or by a slow launcher arrive late */
	double t0 = xfer_now_s();

	rc = launch_join(&op->launch, (uint32_t)(op->run.timeout_ms > 0 ? op->run.timeout_ms : 30000) + 30000,
			 &l, err, sizeof(err));
	out_f64(o, "join_s", xfer_now_s() - t0);
	if (rc) {
		return out_fail(o, 0, "%s", err);
	}
	out_u64(o, "local_rank", l.local);
	out_set(o, "gpu", json_object_new_int(l.gpu));
	return wsrun_rank(s, &op->run, &l, r);
}

/* Execute the schedule on this machine and check what every receiver got. */
static int cmd_run(struct opts *op, struct out *o)
{
	struct xfer_ws_schedule *s;
	struct xfer_ws_stats st;
	struct wsrun_result r;
	int rc;

	if (get_schedule(op, o, &s))
		return 1;
	print_layout(o, s);
	xfer_ws_schedule_stats(s, &st);
	out_u64(o, "writes", s->nwrites);
	out_u64(o, "total_bytes", st.total_bytes);
	op->run.watermark = op->c.watermark;
	op->run.window = op->c.window;
	/* local by default: on libfabric 1.17 (Debian 12) shm's receiver
	 * copies every queued write while holding the lock its senders spin
	 * on, so with more processes than cores they take the cores it needs
	 * (docs/weightsync.md, "Loopback providers") */
	if (!op->run.provider)
		op->run.provider = "local";
	if (!op->run.rails)
		op->run.rails = 1;
	out_str(o, "provider", op->run.provider);
	if (op->launch.url) {
		rc = run_launched(op, o, s, &r);
		if (rc > 0) {
			xfer_ws_schedule_free(s);
			return rc;
		}
	} else {
		rc = wsrun(s, &op->run, &r);
	}
	xfer_ws_schedule_free(s);
	out_u64(o, "steps", r.steps);
	if (op->launch.url)
		out_f64(o, "setup_s", r.setup_s);
	out_f64(o, "first_step_s", r.step_s[0]);
	if (o->json) {
		json_object *a = json_object_new_array();

		for (uint32_t i = 0; i < r.steps; i++)
			json_object_array_add(a, json_object_new_double(r.step_s[i]));
		out_set(o, "step_s", a);
	}
	out_f64(o, "seconds", r.seconds);
	out_u64(o, "staged_bytes", r.staged);
	out_f64(o, "gather_s", r.gather_s);
	out_f64(o, "prepare_s", r.prepare_s);
	out_f64(o, "wait_s", r.wait_s);
	out_f64(o, "trainer_cpu_s", r.trainer_cpu_s);
	out_f64(o, "infer_cpu_s", r.infer_cpu_s);
	out_f64(o, "bound_s", r.bound_s);
	out_f64(o, "ratio", r.bound_s > 0 ? r.seconds / r.bound_s : 0);
	out_f64(o, "loopback_gbs", r.loopback_gbs);
	out_f64(o, "loopback_gbs_concurrent", r.loopback_gbs_concurrent);
	out_u64(o, "threads", r.threads);
	out_u64(o, "transformed", r.transformed);
	out_f64(o, "transform_gbs", r.transform_gbs);
	out_f64(o, "transform_gbs_concurrent", r.transform_gbs_concurrent);
	out_u64(o, "bytes", r.bytes);
	out_u64(o, "gathered", r.gathered);
	out_u64(o, "tensors_checked", r.tensors_checked);
	out_u64(o, "mismatches", r.mismatches);
	out_u64(o, "stray_bytes", r.stray);
	out_u64(o, "failed_ranks", r.failed_ranks);
	if (rc) {
		/* keep the figures beside the error: they say who failed */
		return out_fail(o, 0, "run failed: %s", r.error[0] ? r.error : "received data differs");
	}
	out_finish(o);
	return 0;
}

static void usage(void)
{
	printf("usage: xfer-weightsync [-j|--pretty] [simulate|plan|run|help] [options]\n"
	       "  -j, --json            one JSON document (errors too: {\"error\": ...})\n"
	       "      --pretty          indented JSON (implies -j)\n"
	       "  -h, --help            this text\n"
	       "  --model NAME|PATH     a config.json: a path with a slash as given, else a name\n"
	       "                        (kimi-k2, deepseek-v3, ...; .json optional) looked up in\n"
	       "                        $XFER_DATADIR/models, <bin>/../share/xfer/models,\n"
	       "                        <bin>/../../models (default %s)\n"
	       "  --trainer SPEC        fsdp=16,pp=2,ep=8[,dp=1] (default)\n"
	       "  --inference SPEC      tp=1,ep=32,dp=4 (default); tp at most the model's heads\n"
	       "  --dtype fp8|bf16      inference weights (default fp8)\n"
	       "  --mtp                 include DeepSeek MTP layers\n"
	       "  --min-chunk-mib N --max-chunk-mib N   planner chunking (4, 32)\n"
	       "  --nic-gbps N [--infer-nic-gbps N] --copy-gbs N --xform-gbs N\n"
	       "  --op-us N --chunk-us N --watermark-mib N --window N (writes in flight per NIC)\n"
	       "  plan: -o FILE writes the schedule; --schedule FILE reads one instead of planning\n"
	       "  --no-validate         skip the validator\n"
	       "  run: -p, --provider P (local: xfer's own process_vm_writev backend, no locks\n"
	       "       shared between processes; shm: libfabric's) --rails N --seed N\n"
	       "       --timeout-ms N\n"
	       "       --kill-trainer R --kill-after-ms N (failure drill: SIGKILL a trainer)\n"
	       "       --steps N (3): weight updates in a row; `seconds` is the median of\n"
	       "       those after the first, which pays first-use costs (first_step_s)\n"
	       "       --stage-all: copy every chunk into staging, also those that could\n"
	       "       be written from where they lie\n"
	       "       --threads N: threads per trainer that quantise (default cores /\n"
	       "       trainers, at least 1)\n"
	       "       --no-bound: skip measuring the loopback rates (bound_s 0)\n"
	       "  run, launcher mode: one rank per process (README, \"Launchers\"), ranks 0 ..\n"
	       "       T-1 the trainers, then the inference ranks; every rank prints the run\n"
	       "       --rdzv URL: etcd://host:port[,host:port] or file:///shared/dir\n"
	       "       --job ID (default $XFER_JOB, else the launcher's job id)\n"
	       "       --rank N --world-size N --local-rank N: without a launcher's variables\n"
	       "       --node ADDR|IFACE: the address the engine binds and publishes\n"
	       "       (default: the first up non-loopback interface's)\n"
	       "       --rdzv-lease-s N: a dead rank's keys vanish this long after it (10)\n",
	       DEFAULT_MODEL);
}

static int cmd_help(struct opts *op, struct out *o)
{
	(void)op;
	usage();
	o->json = false;   /* the usage is all there is to print */
	out_finish(o);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(struct opts *, struct out *);
} cmds[] = {
	{ "simulate", cmd_simulate }, /* first: what runs without a command */
	{ "plan", cmd_plan },
	{ "run", cmd_run },
	{ "help", cmd_help },
};

int main(int argc, char **argv)
{
	struct out o;
	struct opts op = { .model = DEFAULT_MODEL, .run = { .kill_trainer = -1, .seed = 1, .steps = 3 } };
	int first = 1, ci = 0;
	bool help = false;

	out_init(&o, "xfer-weightsync");
	launch_opts_init(&op.launch);
	/* -j anywhere makes every message JSON, those about the command too */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-j") || !strcmp(argv[i], "--json") || !strcmp(argv[i], "--pretty"))
			o.json = true;
	/* global flags before the command */
	while (first < argc && argv[first][0] == '-') {
		if (!strcmp(argv[first], "-j") || !strcmp(argv[first], "--json"))
			o.json = true;
		else if (!strcmp(argv[first], "--pretty"))
			o.json = o.pretty = true;
		else if (!strcmp(argv[first], "-h") || !strcmp(argv[first], "--help"))
			help = true;
		else
			break;
		first++;
	}
	if (first < argc && argv[first][0] != '-') {
		for (ci = 0; ci < (int)(sizeof(cmds) / sizeof(cmds[0])); ci++)
			if (!strcmp(argv[first], cmds[ci].name))
				break;
		if (ci == (int)(sizeof(cmds) / sizeof(cmds[0])))
			return out_fail(&o, 0, "unknown command '%s' (simulate, plan, run or help)",
					argv[first]);
		first++;
	}
	xfer_ws_trainer_parse("fsdp=16,pp=2,ep=8", &op.t);
	op.l.dtype = XFER_WS_DT_FP8E4M3;
	xfer_ws_infer_parse("tp=1,ep=32,dp=4", &op.l);
	op.pa.size = sizeof(op.pa);
	op.c.size = sizeof(op.c);
	if (parse_opts(argc - first + 1, argv + first - 1, &op, &o, &help))
		return 1;
	if (help)
		return cmd_help(&op, &o);
	/* a child that dies makes a write fail with EPIPE, which run.c reports */
	signal(SIGPIPE, SIG_IGN);
	return cmds[ci].fn(&op, &o);
}
