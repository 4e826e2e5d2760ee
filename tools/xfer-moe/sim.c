// SPDX-License-Identifier: MIT
/*
 * xfer-moe sim: what xfer's dispatch and combine would take on a GPU
 * cluster (xfer_moe_simulate, include/xfer_moe_sim.h), for EP8 .. EP64 on
 * the "cx7" and "efa" presets, beside the published figures of pplx-garden
 * and DeepEP (issue 13's table), with the cluster's rates and the model's
 * assumptions printed alongside: a figure without its rates says nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "xfer_moe_sim.h"
#include "args.h"
#include "out.h"
#include "moe.h"
#include "sim.h"

/* Published decode figures, microseconds (issue 13's table: 128 tokens a
 * rank, H 7168, top-8 of 256, fp8 dispatch, bf16 combine). */
static const struct {
	uint32_t ep;
	double pplx_cx7[2], pplx_efa[2], deepep_cx7[2];
} published[] = {
	{ 8, { 50.5, 65.3 }, { 49.7, 64.2 }, { 42.6, 72.0 } },
	{ 16, { 110.2, 185.5 }, { 214.8, 241.5 }, { 123.9, 203.0 } },
	{ 32, { 153.9, 266.3 }, { 229.1, 335.0 }, { 159.1, 285.0 } },
	{ 64, { 187.5, 309.1 }, { 266.7, 391.2 }, { 177.9, 325.0 } },
};

#define MAX_EPS 8
#define MAX_SEEDS 99

/* One line each; the header of include/xfer_moe_sim.h has them in full. */
static const char *const assumptions[] = {
	"routing: every rank has T tokens, each K distinct experts uniform from a seed; the slowest rank of that sample",
	"nodes of gpus_per_node GPUs; peers in the node over NVLink, the others over the NICs (full-bisection fabric)",
	"a phase: send kernel, its store seen by the worker (trigger_us), the worker posts R-1 writes with an immediate serially (post_us)",
	"a write goes whole on one NIC: (src + dst) mod nics; writes in flight share each NIC and NVLink max-min fairly",
	"each arrival counted by the receiver's worker (cqe_us) after its own posting; then the flag (flag_us) and the receive kernel",
	"kernels: kernel_us plus bytes read + written at hbm_gbs; the expert computation between phases is not counted",
	"dispatch writes a block header and its records to every peer (header alone if none); combine returns rows (immediate alone if none)",
	"prefill: count rows (E x 4 B) to every peer first; data once all count rows are in and the pack is done",
	"not modelled: fabric congestion, loss, PCIe below the NIC rate, two micro-batches at once, EFA per-message behaviour beyond nic_mpps",
};

static int sim_fail(struct out *o, int rc, const char *what)
{
	const char *why = xfer_moe_last_error();

	if (why[0])
		return out_fail(o, 0, "%s: %s", what, why);
	return out_fail(o, rc, "%s", what);
}

static void usage(void)
{
	printf("usage: xfer-moe sim [options]\n"
	       "  Predicts dispatch and combine us on a cluster model and prints them beside\n"
	       "  the published figures (pplx-garden CX-7 and EFA, DeepEP low-latency CX-7).\n"
	       "  -j, --json --pretty    JSON output (errors too)\n"
	       "  -c, --config NAME      v3-decode (default), v3-prefill, kimi-k2-decode, v2-lite\n"
	       "  --tokens N --hidden N --experts N --topk N --dtype bf16|fp8 --prefill\n"
	       "                         override the configuration\n"
	       "  --ep LIST              EP sizes (default 8,16,32,64; at most %u)\n"
	       "  --cluster NAME         cx7, efa or all (default all)\n"
	       "  --seed N               routing seed (default 1)\n"
	       "  --seeds N              N routings (seed, seed + 1, ...): the median of their\n"
	       "                         slowest ranks, and the worst (default 1, at most %u)\n"
	       "  cluster fields (applied to every cluster printed; default: the preset's):\n"
	       "  --gpus-per-node N --nics N (per GPU) --nic-gbps X (per GPU, all its NICs)\n"
	       "  --goodput F (0..1] --link-us X --nic-mpps X --nvlink-gbs X --nvlink-us X\n"
	       "  --post-us X --cqe-us X --trigger-us X --flag-us X --kernel-us X --hbm-gbs X\n"
	       "  --nic-only             intra-node peers over the NICs too (xfer as built)\n"
	       "  --rank-order           post in rank order, write i on NIC i mod nics (the\n"
	       "                         scatter rows of lib/moe today)\n"
	       "  --detail               per phase: when the slowest rank's kernel, posting,\n"
	       "                         last landing and counting ended\n",
	       XFER_MOE_SIM_MAX_RANKS, MAX_SEEDS);
}

struct sim_opts {
	const struct moe_config *cfg;   /* one of moe_configs (configs.c) */
	struct xfer_moe_attr attr;
	uint32_t eps[MAX_EPS];
	int neps;
	uint32_t clusters;   /* bit 0 cx7, bit 1 efa */
	uint64_t seed;
	uint32_t seeds;      /* routings simulated: seed, seed + 1, ... */
	bool detail, help;
	/* overrides: set fields are non-zero (0 is "the preset's") */
	struct xfer_moe_cluster over;
	bool nic_only, rank_order;
};

static int parse(int argc, char **argv, struct sim_opts *op, struct out *o)
{
	enum { O_TOKENS = 1000, O_HIDDEN, O_EXPERTS, O_TOPK, O_DTYPE, O_PREFILL, O_EP, O_CLUSTER,
	       O_SEED, O_SEEDS, O_GPN, O_NICS, O_NIC_GBPS, O_GOODPUT, O_LINK_US, O_MPPS, O_NVL_GBS, O_NVL_US,
	       O_POST_US, O_CQE_US, O_TRIG_US, O_FLAG_US, O_KERN_US, O_HBM_GBS, O_NIC_ONLY, O_RANK_ORDER, O_DETAIL,
	       O_PRETTY };
	static const struct option lo[] = {
		{ "json", no_argument, 0, 'j' },
		{ "pretty", no_argument, 0, O_PRETTY },
		{ "help", no_argument, 0, 'h' },
		{ "config", required_argument, 0, 'c' },
		{ "tokens", required_argument, 0, O_TOKENS },
		{ "hidden", required_argument, 0, O_HIDDEN },
		{ "experts", required_argument, 0, O_EXPERTS },
		{ "topk", required_argument, 0, O_TOPK },
		{ "dtype", required_argument, 0, O_DTYPE },
		{ "prefill", no_argument, 0, O_PREFILL },
		{ "ep", required_argument, 0, O_EP },
		{ "cluster", required_argument, 0, O_CLUSTER },
		{ "seed", required_argument, 0, O_SEED },
		{ "seeds", required_argument, 0, O_SEEDS },
		{ "gpus-per-node", required_argument, 0, O_GPN },
		{ "nics", required_argument, 0, O_NICS },
		{ "nic-gbps", required_argument, 0, O_NIC_GBPS },
		{ "goodput", required_argument, 0, O_GOODPUT },
		{ "link-us", required_argument, 0, O_LINK_US },
		{ "nic-mpps", required_argument, 0, O_MPPS },
		{ "nvlink-gbs", required_argument, 0, O_NVL_GBS },
		{ "nvlink-us", required_argument, 0, O_NVL_US },
		{ "post-us", required_argument, 0, O_POST_US },
		{ "cqe-us", required_argument, 0, O_CQE_US },
		{ "trigger-us", required_argument, 0, O_TRIG_US },
		{ "flag-us", required_argument, 0, O_FLAG_US },
		{ "kernel-us", required_argument, 0, O_KERN_US },
		{ "hbm-gbs", required_argument, 0, O_HBM_GBS },
		{ "nic-only", no_argument, 0, O_NIC_ONLY },
		{ "rank-order", no_argument, 0, O_RANK_ORDER },
		{ "detail", no_argument, 0, O_DETAIL },
		{ 0, 0, 0, 0 },
	};
	static const char *const cluster_names[] = { "cx7", "efa", "all", NULL };
	struct xfer_moe_attr *a = &op->attr;
	const double big = 1e6;
	int c, li = 0, rc = 0;
	uint64_t eps[MAX_EPS];

	optind = 1;
	opterr = 0;   /* getopt's own messages are not JSON: say it here */
	while (!rc && (c = getopt_long(argc, argv, ":jhc:", lo, &li)) != -1) {
		switch (c) {
		case 'j': o->json = true; break;
		case O_PRETTY: o->json = o->pretty = true; break;
		case 'h': op->help = true; break;
		case 'c':
			op->cfg = moe_config_find(optarg);
			if (!op->cfg) {
				out_error(o, "--config: '%s': unknown (%s)", optarg, moe_config_names());
				rc = -EINVAL;
				break;
			}
			a->max_tokens = op->cfg->tokens;
			a->hidden = op->cfg->hidden;
			a->num_experts = op->cfg->experts;
			a->top_k = op->cfg->topk;
			a->dispatch_dtype = op->cfg->dispatch_dtype;
			a->flags = op->cfg->flags;
			break;
		case O_TOKENS: rc = arg_u32(o, "--tokens", optarg, 1, XFER_MOE_MAX_TOKENS, &a->max_tokens); break;
		case O_HIDDEN: rc = arg_u32(o, "--hidden", optarg, 1, XFER_MOE_MAX_HIDDEN, &a->hidden); break;
		case O_EXPERTS: rc = arg_u32(o, "--experts", optarg, 1, XFER_MOE_MAX_EXPERTS, &a->num_experts); break;
		case O_TOPK: rc = arg_u32(o, "--topk", optarg, 1, XFER_MOE_MAX_TOPK, &a->top_k); break;
		case O_DTYPE:
			if (!strcmp(optarg, "fp8")) {
				a->dispatch_dtype = XFER_MOE_FP8;
			} else if (!strcmp(optarg, "bf16")) {
				a->dispatch_dtype = XFER_MOE_BF16;
			} else {
				out_error(o, "--dtype: '%s': not bf16 or fp8", optarg);
				rc = -EINVAL;
			}
			break;
		case O_PREFILL: a->flags |= XFER_MOE_F_PREFILL; break;
		case O_EP:
			rc = arg_size_list(o, "--ep", optarg, 1, XFER_MOE_SIM_MAX_RANKS, eps, MAX_EPS, &op->neps);
			for (int i = 0; !rc && i < op->neps; i++)
				op->eps[i] = (uint32_t)eps[i];
			break;
		case O_CLUSTER: {
			uint32_t m;

			rc = arg_word_list(o, "--cluster", optarg, cluster_names, &m);
			if (!rc)
				op->clusters = (m & 1) | (m & 2) | (m & 4 ? 3 : 0);
			break;
		}
		case O_SEED: rc = arg_u64(o, "--seed", optarg, 0, UINT64_MAX, &op->seed); break;
		case O_SEEDS: rc = arg_u32(o, "--seeds", optarg, 1, MAX_SEEDS, &op->seeds); break;
		case O_GPN: rc = arg_u32(o, "--gpus-per-node", optarg, 1, 1024, &op->over.gpus_per_node); break;
		case O_NICS: rc = arg_u32(o, "--nics", optarg, 1, 64, &op->over.nics_per_gpu); break;
		case O_NIC_GBPS: rc = arg_pos_double(o, "--nic-gbps", optarg, big, &op->over.nic_gbps); break;
		case O_GOODPUT: rc = arg_pos_double(o, "--goodput", optarg, 1, &op->over.nic_goodput); break;
		case O_LINK_US: rc = arg_pos_double(o, "--link-us", optarg, big, &op->over.link_us); break;
		case O_MPPS: rc = arg_pos_double(o, "--nic-mpps", optarg, big, &op->over.nic_mpps); break;
		case O_NVL_GBS: rc = arg_pos_double(o, "--nvlink-gbs", optarg, big, &op->over.nvlink_gbs); break;
		case O_NVL_US: rc = arg_pos_double(o, "--nvlink-us", optarg, big, &op->over.nvlink_us); break;
		case O_POST_US: rc = arg_pos_double(o, "--post-us", optarg, big, &op->over.post_us); break;
		case O_CQE_US: rc = arg_pos_double(o, "--cqe-us", optarg, big, &op->over.cqe_us); break;
		case O_TRIG_US: rc = arg_pos_double(o, "--trigger-us", optarg, big, &op->over.trigger_us); break;
		case O_FLAG_US: rc = arg_pos_double(o, "--flag-us", optarg, big, &op->over.flag_us); break;
		case O_KERN_US: rc = arg_pos_double(o, "--kernel-us", optarg, big, &op->over.kernel_us); break;
		case O_HBM_GBS: rc = arg_pos_double(o, "--hbm-gbs", optarg, big, &op->over.hbm_gbs); break;
		case O_NIC_ONLY: op->nic_only = true; break;
		case O_RANK_ORDER: op->rank_order = true; break;
		case O_DETAIL: op->detail = true; break;
		default: rc = args_getopt_error(o, c, argv, "xfer-moe sim --help");
		}
	}
	/* argv[0] is the command word; anything left over is a mistake */
	if (!rc)
		rc = args_leftover(o, argc, argv, "xfer-moe sim --help");
	return rc;
}

/* The preset with the command line's fields laid over it. */
static int cluster_of(const char *name, const struct sim_opts *op, struct xfer_moe_cluster *c)
{
	const struct xfer_moe_cluster *v = &op->over;
	int ret;

	c->size = sizeof(*c);
	ret = xfer_moe_cluster_preset(c, name);
	if (ret)
		return ret;
#define OVER(f) do { if (v->f) c->f = v->f; } while (0)
	OVER(gpus_per_node);
	OVER(nics_per_gpu);
	OVER(nic_gbps);
	OVER(nic_goodput);
	OVER(link_us);
	OVER(nic_mpps);
	OVER(nvlink_gbs);
	OVER(nvlink_us);
	OVER(post_us);
	OVER(cqe_us);
	OVER(trigger_us);
	OVER(flag_us);
	OVER(kernel_us);
	OVER(hbm_gbs);
#undef OVER
	if (op->nic_only)
		c->flags |= XFER_MOE_SIM_F_NIC_ONLY;
	if (op->rank_order)
		c->flags |= XFER_MOE_SIM_F_RANK_ORDER;
	return xfer_moe_cluster_resolve(c);
}

/* The published figures apply to DeepSeek-V3 decode's shape only. */
static bool published_shape(const struct xfer_moe_attr *a)
{
	return a->max_tokens == 128 && a->hidden == 7168 && a->num_experts == 256 && a->top_k == 8 &&
	       a->dispatch_dtype == XFER_MOE_FP8 && !(a->flags & XFER_MOE_F_PREFILL);
}

static json_object *num_or_null(bool have, double v)
{
	return have ? json_object_new_double(v) : NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* of sorted v[0 .. n) */
static double median(const double *v, uint32_t n)
{
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void add(json_object *row, const char *k, json_object *v)
{
	json_object_object_add(row, k, v);
}

int moe_cmd_sim(int argc, char **argv)
{
	static const char *const cnames[] = { "cx7", "efa" };
	static const char *const ccols[] = {
		"cluster", "gpus_node", "nics", "nic_gbps", "goodput", "link_us", "nic_mpps",
		"nvlink_gbs", "nvlink_us", "post_us", "cqe_us", "trigger_us", "flag_us", "kernel_us",
		"hbm_gbs", "nic_only", "rank_order",
	};
	static const char *const scols[] = {
		"cluster", "ep", "nodes", "nic_peers", "dispatch_us", "combine_us", "disp_worst",
		"comb_worst", "disp_bound_us", "comb_bound_us", "pplx_disp", "pplx_comb", "deepep_disp",
		"deepep_comb",
	};
	static const char *const dcols[] = {
		"cluster", "ep", "phase", "us", "mean_us", "send_kernel", "posted", "landed", "counted",
		"recv_kernel", "nic_bound", "wire_mb", "nic_mb_max", "writes",
	};
	struct sim_opts op = { .seed = 1, .seeds = 1, .clusters = 3 };
	struct xfer_moe_cluster cl[2];
	struct xfer_moe_sim_result res[2][MAX_EPS];
	double med[2][MAX_EPS][2];
	struct xfer_moe_layout l;
	struct out o;
	bool pub;
	int rc;

	out_init(&o, "xfer-moe sim");
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-j") || !strcmp(argv[i], "--json") || !strcmp(argv[i], "--pretty"))
			o.json = true;
	op.cfg = &moe_configs[0];
	op.attr = (struct xfer_moe_attr){
		.size = sizeof(op.attr),
		.world_size = 8,
		.max_tokens = op.cfg->tokens,
		.hidden = op.cfg->hidden,
		.num_experts = op.cfg->experts,
		.top_k = op.cfg->topk,
		.dispatch_dtype = op.cfg->dispatch_dtype,
		.combine_dtype = XFER_MOE_BF16,
		.flags = op.cfg->flags,
	};
	if (parse(argc, argv, &op, &o)) {
		out_finish(&o);
		return 1;
	}
	if (op.help) {
		usage();
		o.json = false;
		out_finish(&o);
		return 0;
	}
	if (!op.neps) {
		static const uint32_t def[] = { 8, 16, 32, 64 };

		for (int i = 0; i < 4; i++)
			op.eps[op.neps++] = def[i];
	}
	/* every cluster and configuration checked before anything is printed */
	for (int k = 0; k < 2; k++)
		if ((op.clusters >> k & 1) && cluster_of(cnames[k], &op, &cl[k]))
			return sim_fail(&o, -EINVAL, "cluster");
	for (int i = 0; i < op.neps; i++) {
		char what[64];

		op.attr.world_size = op.eps[i];
		snprintf(what, sizeof(what), "configuration %s at EP%u", op.cfg->name, op.eps[i]);
		if (xfer_moe_layout_get(&op.attr, &l))
			return sim_fail(&o, -EINVAL, what);
	}
	pub = published_shape(&op.attr);

	out_str(&o, "config", op.cfg->name);
	out_u64(&o, "tokens", op.attr.max_tokens);
	out_u64(&o, "hidden", op.attr.hidden);
	out_u64(&o, "experts", op.attr.num_experts);
	out_u64(&o, "topk", op.attr.top_k);
	out_str(&o, "dispatch_dtype", op.attr.dispatch_dtype == XFER_MOE_FP8 ? "fp8" : "bf16");
	out_str(&o, "mode", op.attr.flags & XFER_MOE_F_PREFILL ? "prefill" : "decode");
	out_u64(&o, "record_bytes", l.record_bytes);
	out_u64(&o, "combine_bytes", l.combine_bytes);
	out_u64(&o, "seed", op.seed);
	out_u64(&o, "seeds", op.seeds);
	out_str(&o, "published", pub ? "pplx-garden and DeepEP decode (issue 13's table)"
				     : "none for this shape (only DeepSeek-V3 decode has them)");

	out_table(&o, "assumptions", (const char *const[]){ "assumption" }, 1);
	for (size_t i = 0; i < sizeof(assumptions) / sizeof(assumptions[0]); i++) {
		json_object *row = json_object_new_object();

		add(row, "assumption", json_object_new_string(assumptions[i]));
		out_row(&o, row);
	}

	out_table(&o, "clusters", ccols, (int)(sizeof(ccols) / sizeof(ccols[0])));
	for (int k = 0; k < 2; k++) {
		const struct xfer_moe_cluster *c = &cl[k];
		json_object *row;

		if (!(op.clusters >> k & 1))
			continue;
		row = json_object_new_object();
		add(row, "cluster", json_object_new_string(cnames[k]));
		add(row, "gpus_node", json_object_new_int64(c->gpus_per_node));
		add(row, "nics", json_object_new_int64(c->nics_per_gpu));
		add(row, "nic_gbps", json_object_new_double(c->nic_gbps));
		add(row, "goodput", json_object_new_double(c->nic_goodput));
		add(row, "link_us", json_object_new_double(c->link_us));
		add(row, "nic_mpps", json_object_new_double(c->nic_mpps));
		add(row, "nvlink_gbs", json_object_new_double(c->nvlink_gbs));
		add(row, "nvlink_us", json_object_new_double(c->nvlink_us));
		add(row, "post_us", json_object_new_double(c->post_us));
		add(row, "cqe_us", json_object_new_double(c->cqe_us));
		add(row, "trigger_us", json_object_new_double(c->trigger_us));
		add(row, "flag_us", json_object_new_double(c->flag_us));
		add(row, "kernel_us", json_object_new_double(c->kernel_us));
		add(row, "hbm_gbs", json_object_new_double(c->hbm_gbs));
		add(row, "nic_only", json_object_new_boolean(!!(c->flags & XFER_MOE_SIM_F_NIC_ONLY)));
		add(row, "rank_order", json_object_new_boolean(!!(c->flags & XFER_MOE_SIM_F_RANK_ORDER)));
		out_row(&o, row);
	}

	out_table(&o, "predicted", scols, (int)(sizeof(scols) / sizeof(scols[0])));
	for (int k = 0; k < 2; k++) {
		if (!(op.clusters >> k & 1))
			continue;
		for (int i = 0; i < op.neps; i++) {
			struct xfer_moe_sim_result *r = &res[k][i];
			json_object *row;
			int p = -1;

			double d[MAX_SEEDS], c[MAX_SEEDS];

			op.attr.world_size = op.eps[i];
			/* the first routing's figures in full; the others' times */
			for (uint32_t si = 0; si < op.seeds; si++) {
				struct xfer_moe_sim_result x;

				rc = xfer_moe_simulate(&op.attr, &cl[k], op.seed + si, si ? &x : r);
				if (rc)
					return sim_fail(&o, rc, "simulation");
				d[si] = si ? x.dispatch.us : r->dispatch.us;
				c[si] = si ? x.combine.us : r->combine.us;
			}
			qsort(d, op.seeds, sizeof(d[0]), cmp_double);
			qsort(c, op.seeds, sizeof(c[0]), cmp_double);
			for (size_t j = 0; pub && j < sizeof(published) / sizeof(published[0]); j++)
				if (published[j].ep == op.eps[i])
					p = (int)j;
			row = json_object_new_object();
			add(row, "cluster", json_object_new_string(cnames[k]));
			add(row, "ep", json_object_new_int64(op.eps[i]));
			add(row, "nodes", json_object_new_int64(r->nodes));
			add(row, "nic_peers", json_object_new_int64(r->nic_peers));
			add(row, "dispatch_us", json_object_new_double(median(d, op.seeds)));
			add(row, "combine_us", json_object_new_double(median(c, op.seeds)));
			add(row, "disp_worst", json_object_new_double(d[op.seeds - 1]));
			add(row, "comb_worst", json_object_new_double(c[op.seeds - 1]));
			med[k][i][0] = median(d, op.seeds);
			med[k][i][1] = median(c, op.seeds);
			add(row, "disp_bound_us", json_object_new_double(r->dispatch.nic_bound_us));
			add(row, "comb_bound_us", json_object_new_double(r->combine.nic_bound_us));
			add(row, "pplx_disp", num_or_null(p >= 0, p < 0 ? 0 : k ? published[p].pplx_efa[0]
										  : published[p].pplx_cx7[0]));
			add(row, "pplx_comb", num_or_null(p >= 0, p < 0 ? 0 : k ? published[p].pplx_efa[1]
										  : published[p].pplx_cx7[1]));
			/* DeepEP needs GPU-initiated RDMA (IBGDA): no EFA figures */
			add(row, "deepep_disp", num_or_null(p >= 0 && !k, p < 0 ? 0 : published[p].deepep_cx7[0]));
			add(row, "deepep_comb", num_or_null(p >= 0 && !k, p < 0 ? 0 : published[p].deepep_cx7[1]));
			out_row(&o, row);
		}
	}

	if (op.detail) {
		out_table(&o, "phases", dcols, (int)(sizeof(dcols) / sizeof(dcols[0])));
		for (int k = 0; k < 2; k++) {
			if (!(op.clusters >> k & 1))
				continue;
			for (int i = 0; i < op.neps; i++) {
				for (int ph = 0; ph < 2; ph++) {
					const struct xfer_moe_sim_phase *p = ph ? &res[k][i].combine
										: &res[k][i].dispatch;
					json_object *row = json_object_new_object();

					add(row, "cluster", json_object_new_string(cnames[k]));
					add(row, "ep", json_object_new_int64(op.eps[i]));
					add(row, "phase", json_object_new_string(ph ? "combine" : "dispatch"));
					add(row, "us", json_object_new_double(p->us));
					add(row, "mean_us", json_object_new_double(p->mean_us));
					add(row, "send_kernel", json_object_new_double(p->send_kernel_us));
					add(row, "posted", json_object_new_double(p->posted_us));
					add(row, "landed", json_object_new_double(p->landed_us));
					add(row, "counted", json_object_new_double(p->counted_us));
					add(row, "recv_kernel", json_object_new_double(p->recv_kernel_us));
					add(row, "nic_bound", json_object_new_double(p->nic_bound_us));
					add(row, "wire_mb", json_object_new_double((double)p->wire_bytes_max / 1e6));
					add(row, "nic_mb_max", json_object_new_double((double)p->nic_bytes_max / 1e6));
					add(row, "writes", json_object_new_int64((int64_t)p->writes));
					out_row(&o, row);
				}
			}
		}
	}

	/* issue 13's target, stated where the figures allow it */
	for (int i = 0; pub && i < op.neps; i++) {
		char line[256];

		if (op.eps[i] != 64)
			continue;
		if (op.clusters & 1) {
			double rd = med[0][i][0], rc2 = med[0][i][1];

			snprintf(line, sizeof(line),
				 "dispatch %.1f %s 177.9, combine %.1f %s 325.0 (DeepEP LL on CX-7): %s",
				 rd, rd <= 177.9 ? "<=" : ">", rc2,
				 rc2 <= 325.0 ? "<=" : ">",
				 rd <= 177.9 && rc2 <= 325.0 ? "met" : "missed");
			out_str(&o, "target_ep64_cx7", line);
		}
		if (op.clusters & 2) {
			double rd = med[1][i][0], rc2 = med[1][i][1];

			snprintf(line, sizeof(line),
				 "dispatch %.1f %s 266.7, combine %.1f %s 391.2 (pplx on EFA): %s",
				 rd, rd < 266.7 ? "<" : ">=", rc2,
				 rc2 < 391.2 ? "<" : ">=",
				 rd < 266.7 && rc2 < 391.2 ? "met" : "missed");
			out_str(&o, "target_ep64_efa", line);
		}
	}
	out_finish(&o);
	return 0;
}
