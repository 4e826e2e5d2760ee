/* SPDX-License-Identifier: MIT */
/*
 * xfer-moe: MoE dispatch and combine through xfer, R rank processes on
 * this host (docs/moe.md, "xfer-moe").
 *
 *   xfer-moe [-j|--pretty] [run] [options]   run configurations (default)
 *   xfer-moe list                            the named configurations
 *   xfer-moe sim [options]                   the cluster simulator (sim.c)
 *
 * With no arguments: v3-decode at EP4 on `local`, 20 warm-up layers and
 * 200 timed ones. Every value is checked before anything is forked; a
 * refusal names the option. Text and JSON come from the same rows
 * (tools/common/out.c).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "xfer.h"
#include "args.h"
#include "launch.h"
#include "out.h"
#include "provider.h"
#include "moe.h"
#include "sim.h"

#define MAX_LIST 16

struct opts {
	const struct moe_config *cfgs[MAX_LIST];
	unsigned ncfgs;
	uint32_t eps[MAX_LIST];
	unsigned neps;
	/* overrides: 0 (or -1 for bools) when not given */
	uint32_t tokens, hidden, experts, topk, dtype;
	int prefill;
	struct moe_run_opts run;   /* cfg and ep filled per run */
	bool no_bound;
	uint64_t copy_bytes;       /* the calibration's buffer per process */
	bool ep_given;
	struct launch_opts launch; /* run --rdzv: one rank per process */
	struct launch l;           /* ... joined */
	uint32_t runs;             /* ... runs so far (each exchange name once) */
};

static void usage(void)
{
	printf("usage: xfer-moe [-j|--pretty] [run|list|sim|help] [options]\n"
	       "  run (the default): R rank processes on this host, each an engine and one\n"
	       "  xfer_moe context; per configuration and EP a row of dispatch and combine\n"
	       "  p50/p99 us (over layers and ranks), logical GB/s (DeepEP's accounting) and\n"
	       "  the ratio to this machine's loopback bound\n"
	       "  -c, --config NAME[,NAME..]|all  %s (default v3-decode)\n"
	       "  --ep R[,R..]          ranks (default 4; 2, 4, 8 here, up to %u)\n"
	       "  -p, --provider P      local (default), shm, 'tcp;ofi_rxm'\n"
	       "  -w, --warmup N        layers before timing (20)\n"
	       "  -i, --iters N         timed layers (200)\n"
	       "  --slots 1|2           alternate both slots (2) or use slot 0 only\n"
	       "  --tokens T --hidden H --experts E --topk K --dtype bf16|fp8 --prefill\n"
	       "                        override the configuration's shape\n"
	       "  --seed N              routing, weights and tokens (1)\n"
	       "  --none-frac F         fraction of routing slots that are -1 (0)\n"
	       "  --check               new tokens and routing every layer, the experts a\n"
	       "                        function of row and expert, every output compared bit\n"
	       "                        for bit with xfer_moe_reference (exit 1 on a mismatch)\n"
	       "  --timeout-ms N        the contexts' receive timeout (10000; prefill 60000)\n"
	       "  --kill-rank R         failure drill: rank R dies by SIGKILL mid-layer\n"
	       "  --no-bound            skip measuring the copy and read rates (no bound, no ratios)\n"
	       "  --copy-size N[K|M|G]  the buffer each process copies to measure them (64M)\n"
	       "  launcher mode, one rank per process (README, \"Launchers\"):\n"
	       "  --rdzv URL            etcd://host:port[,host:port] or file:///shared/dir: the\n"
	       "                        ranks meet there; the world size is the EP size\n"
	       "  --job ID              the job (default $XFER_JOB, else the launcher's job id)\n"
	       "  --rank N --world-size N --local-rank N   without a launcher's variables\n"
	       "  --node ADDR|IFACE     the address the engine binds and publishes (default:\n"
	       "                        the first up non-loopback interface's)\n"
	       "  --rdzv-lease-s N      a dead rank's keys vanish this long after it (10)\n"
	       "  -j, --json  --pretty  JSON (one object per row in \"moe\"; errors too)\n"
	       "  list: the configurations; sim: see `xfer-moe sim --help`\n",
	       moe_config_names(), MOE_MAX_EP);
}

/* A comma list of words or numbers into *n entries. */
static int parse_configs(struct out *o, const char *s, struct opts *op)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	op->ncfgs = 0;
	if (!strcmp(s, "all")) {
		for (unsigned i = 0; i < moe_nconfigs && i < MAX_LIST; i++)
			op->cfgs[op->ncfgs++] = &moe_configs[i];
		return 0;
	}
	for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		const struct moe_config *c = moe_config_find(w);

		if (!c || op->ncfgs == MAX_LIST) {
			out_error(o, "-c: '%s': %s (%s, or all)", w,
				  c ? "too many configurations" : "no such configuration", moe_config_names());
			return -EINVAL;
		}
		op->cfgs[op->ncfgs++] = c;
	}
	if (!op->ncfgs) {
		out_error(o, "-c: '%s': no configuration named (%s, or all)", s, moe_config_names());
		return -EINVAL;
	}
	return 0;
}

static int parse_eps(struct out *o, const char *s, struct opts *op)
{
	char buf[256], *save = NULL;
	int rc;

	snprintf(buf, sizeof(buf), "%s", s);
	op->neps = 0;
	for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (op->neps == MAX_LIST) {
			out_error(o, "--ep: '%s': at most %d sizes", s, MAX_LIST);
			return -EINVAL;
		}
		if ((rc = arg_u32(o, "--ep", w, 1, MOE_MAX_EP, &op->eps[op->neps])))
			return rc;
		op->neps++;
	}
	if (!op->neps) {
		out_error(o, "--ep: '%s': no rank count", s);
		return -EINVAL;
	}
	return 0;
}

static int parse_frac(struct out *o, const char *s, double *v)
{
	char *end;

	errno = 0;
	*v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(*v) || *v < 0 || *v > 1) {
		out_error(o, "--none-frac: '%s': a fraction from 0 to 1", s);
		return -EINVAL;
	}
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *op, struct out *o, bool *help)
{
	enum { O_EP = 1001, O_SLOTS, O_TOKENS, O_HIDDEN, O_EXPERTS, O_TOPK, O_DTYPE, O_PREFILL,
	       O_SEED, O_NONE, O_CHECK, O_TIMEOUT, O_KILL, O_NO_BOUND, O_COPY, O_PRETTY };
	static const struct option lo[] = {
		{ "config", required_argument, 0, 'c' },
		{ "ep", required_argument, 0, O_EP },
		{ "provider", required_argument, 0, 'p' },
		{ "warmup", required_argument, 0, 'w' },
		{ "iters", required_argument, 0, 'i' },
		{ "slots", required_argument, 0, O_SLOTS },
		{ "tokens", required_argument, 0, O_TOKENS },
		{ "hidden", required_argument, 0, O_HIDDEN },
		{ "experts", required_argument, 0, O_EXPERTS },
		{ "topk", required_argument, 0, O_TOPK },
		{ "dtype", required_argument, 0, O_DTYPE },
		{ "prefill", no_argument, 0, O_PREFILL },
		{ "seed", required_argument, 0, O_SEED },
		{ "none-frac", required_argument, 0, O_NONE },
		{ "check", no_argument, 0, O_CHECK },
		{ "timeout-ms", required_argument, 0, O_TIMEOUT },
		{ "kill-rank", required_argument, 0, O_KILL },
		{ "no-bound", no_argument, 0, O_NO_BOUND },
		{ "copy-size", required_argument, 0, O_COPY },
		{ "json", no_argument, 0, 'j' },
		{ "pretty", no_argument, 0, O_PRETTY },
		{ "help", no_argument, 0, 'h' },
		LAUNCH_LONGOPTS,
		{ 0, 0, 0, 0 },
	};
	int c, li = 0, rc = 0;

	optind = 1;
	opterr = 0;   /* getopt's own messages are not JSON: say it here */
	while (!rc && (c = getopt_long(argc, argv, ":c:p:w:i:jh", lo, &li)) != -1) {
		switch (c) {
		case 'c': rc = parse_configs(o, optarg, op); break;
		case O_EP: rc = parse_eps(o, optarg, op), op->ep_given = true; break;
		case 'p':
			if (!optarg[0])
				out_error(o, "-p: an empty provider name"), rc = -EINVAL;
			op->run.provider = optarg;
			break;
		case 'w': rc = arg_u32(o, "--warmup", optarg, 0, MOE_MAX_ITERS, &op->run.warmup); break;
		case 'i': rc = arg_u32(o, "--iters", optarg, 1, MOE_MAX_ITERS, &op->run.iters); break;
		case O_SLOTS: rc = arg_u32(o, "--slots", optarg, 1, XFER_MOE_SLOTS, &op->run.slots); break;
		case O_TOKENS:
			rc = arg_u32(o, "--tokens", optarg, 1, XFER_MOE_MAX_TOKENS, &op->tokens);
			break;
		case O_HIDDEN:
			rc = arg_u32(o, "--hidden", optarg, 1, XFER_MOE_MAX_HIDDEN, &op->hidden);
			break;
		case O_EXPERTS:
			rc = arg_u32(o, "--experts", optarg, 1, XFER_MOE_MAX_EXPERTS, &op->experts);
			break;
		case O_TOPK: rc = arg_u32(o, "--topk", optarg, 1, XFER_MOE_MAX_TOPK, &op->topk); break;
		case O_DTYPE:
			if (!strcmp(optarg, "fp8"))
				op->dtype = XFER_MOE_FP8;
			else if (!strcmp(optarg, "bf16"))
				op->dtype = XFER_MOE_BF16;
			else
				out_error(o, "--dtype: '%s': one of fp8, bf16", optarg), rc = -EINVAL;
			break;
		case O_PREFILL: op->prefill = 1; break;
		case O_SEED: rc = arg_u64(o, "--seed", optarg, 0, UINT64_MAX, &op->run.seed); break;
		case O_NONE: rc = parse_frac(o, optarg, &op->run.none_frac); break;
		case O_CHECK: op->run.check = true; break;
		/* a rank may be silent 3 timeouts: keep that within an int of ms */
		case O_TIMEOUT:
			rc = arg_int(o, "--timeout-ms", optarg, 1, 600000, &op->run.timeout_ms);
			break;
		case O_KILL:
			rc = arg_int(o, "--kill-rank", optarg, 0, MOE_MAX_EP - 1, &op->run.kill_rank);
			break;
		case O_NO_BOUND: op->no_bound = true; break;
		case O_COPY:
			rc = arg_size(o, "--copy-size", optarg, 64 << 10, 1ull << 30, &op->copy_bytes);
			break;
		case 'j': o->json = true; break;
		case O_PRETTY: o->json = o->pretty = true; break;
		case 'h': *help = true; break;
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
	return rc;
}

/* The configuration with the overrides applied, checked against each EP
 * size; the refusal names the option that makes it impossible. */
static int resolve(struct out *o, const struct opts *op, const struct moe_config *base,
		   struct moe_config *c)
{
	const char *dt;

	*c = *base;
	if (op->tokens)
		c->tokens = op->tokens;
	if (op->hidden)
		c->hidden = op->hidden;
	if (op->experts)
		c->experts = op->experts;
	if (op->topk)
		c->topk = op->topk;
	if (op->dtype)
		c->dispatch_dtype = op->dtype;
	if (op->prefill)
		c->flags |= XFER_MOE_F_PREFILL;
	dt = c->dispatch_dtype == XFER_MOE_FP8 ? "fp8" : "bf16";
	if (c->topk > c->experts) {
		out_error(o, "--topk: %u: more than the %u experts of %s%s", c->topk, c->experts, c->name,
			  op->experts ? " with --experts" : "");
		return -EINVAL;
	}
	if (c->hidden % (c->dispatch_dtype == XFER_MOE_FP8 ? 128 : 8)) {
		out_error(o, "--hidden: %u: %s dispatch needs a multiple of %u (%s)", c->hidden, dt,
			  c->dispatch_dtype == XFER_MOE_FP8 ? 128 : 8,
			  c->dispatch_dtype == XFER_MOE_FP8 ? "one float32 scale per 128 values"
							   : "16-byte rows");
		return -EINVAL;
	}
	for (unsigned i = 0; i < op->neps; i++) {
		struct moe_run_opts ro = op->run;
		struct xfer_moe_attr a;
		struct xfer_moe_layout l;
		int rc;

		if (c->experts % op->eps[i]) {
			out_error(o, "--ep: %u: the %u experts of %s are not a multiple of it", op->eps[i],
				  c->experts, c->name);
			return -EINVAL;
		}
		if (op->run.kill_rank >= (int)op->eps[i]) {
			out_error(o, "--kill-rank: %d: there are only %u ranks (--ep %u)",
				  op->run.kill_rank, op->eps[i], op->eps[i]);
			return -EINVAL;
		}
		ro.cfg = c;
		ro.ep = op->eps[i];
		moe_attr_fill(&ro, 0, &a);
		if ((rc = xfer_moe_layout_get(&a, &l))) {
			out_error(o, "%s at --ep %u: %s", c->name, ro.ep, xfer_moe_last_error());
			return rc;
		}
	}
	return 0;
}

/* MemAvailable of /proc/meminfo in bytes, 0 if unknown. */
static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long kb = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb * 1024;
}

/* What a rank holds resident, roughly: its tokens and outputs, and per
 * slot it uses the pages records reach (the context maps its worst-case
 * buffers lazily): records packed and received, the rows unpacked, y, the
 * combine records sent and those that came back. */
static uint64_t resident_bytes(const struct xfer_moe_layout *l, const struct moe_bytes *b,
			       uint32_t slots, bool check)
{
	uint64_t tokens = (uint64_t)l->max_tokens * l->hidden * 2;
	uint64_t row = l->token_bytes + 4ull * l->scales + sizeof(struct xfer_moe_rec_hdr);
	uint64_t slot = b->selections * (l->record_bytes + l->combine_bytes) +
			b->received * (l->record_bytes + row + 2 * l->combine_bytes);

	return (check ? 3 : 2) * tokens + slots * slot;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* q-quantile of sorted v[n], linear between neighbours. */
static double quantile(const double *v, size_t n, double q)
{
	double pos = q * (double)(n - 1);
	size_t i = (size_t)pos;

	if (!n)
		return 0;
	if (i + 1 >= n)
		return v[n - 1];
	return v[i] + (v[i + 1] - v[i]) * (pos - (double)i);
}

static const char *const text_cols[] = {
	"config", "ep", "dispatch_p50_us", "dispatch_p99_us", "combine_p50_us", "combine_p99_us",
	"dispatch_gbs", "combine_gbs", "bound_us", "ratio_dispatch", "ratio_combine", "ratio",
};

/* One configuration at one EP size: run it and print its row. */
static int run_one(struct out *o, struct opts *op, const struct moe_config *c, uint32_t ep,
		   double copy_gbs, double read_gbs)
{
	struct moe_run_opts ro = op->run;
	struct moe_run_result r;
	struct xfer_moe_attr a;
	struct xfer_moe_layout l;
	struct moe_bytes *b = calloc(ep, sizeof(*b));
	int32_t **topk = calloc(ep, sizeof(*topk));
	float *w = NULL;
	uint64_t sel = 0, sumd = 0, sumc = 0, sumx = 0;
	/* us per byte copied and per byte read; 0 without the rates */
	double cpb = copy_gbs > 0 && read_gbs > 0 ? 1e-3 / copy_gbs : 0;
	double rpb = copy_gbs > 0 && read_gbs > 0 ? 1e-3 / read_gbs : 0;
	double bd = 0, bc = 0, bx = 0, maxd = 0, maxc = 0, maxt = 0;
	double *d, *cb, *tot, *lay;
	size_t n;
	int rc;

	ro.cfg = c;
	ro.ep = ep;
	moe_attr_fill(&ro, 0, &a);
	if (!b || !topk || xfer_moe_layout_get(&a, &l)) {
		free(b);
		free(topk);
		return out_fail(o, -ENOMEM, "%s at EP %u", c->name, ep);
	}
	/* the routing the ranks run (the first layer's, with --check), its bytes */
	w = malloc((size_t)c->tokens * c->topk * sizeof(float));
	for (uint32_t k = 0; k < ep && w; k++) {
		topk[k] = malloc((size_t)c->tokens * c->topk * sizeof(int32_t));
		if (!topk[k])
			break;
		moe_gen_routing(&ro, k, 0, topk[k], w);
	}
	if (!w || !topk[ep - 1]) {
		for (uint32_t k = 0; k < ep; k++)
			free(topk[k]);
		free(topk);
		free(w);
		free(b);
		return out_fail(o, -ENOMEM, "%s at EP %u: the routing", c->name, ep);
	}
	moe_count_bytes(&l, (const int32_t *const *)topk, b);
	/* refuse what this host cannot hold rather than meet its OOM killer
	 * (which may pick any process on the host) */
	uint64_t need = 0, avail = mem_available();

	/* launched, the ranks may be on other hosts: this one's own */
	for (uint32_t k = 0; k < ep; k++)
		if (!op->launch.url || k == op->l.rank)
			need += resident_bytes(&l, &b[k], ro.slots, ro.check);
	if (avail && need > avail) {
		for (uint32_t k = 0; k < ep; k++)
			free(topk[k]);
		free(topk);
		free(w);
		free(b);
		return out_fail(o, 0, "%s at --ep %u: the ranks would hold about %.1f GB resident, "
				"this host has %.1f GB available (use --slots 1, fewer --tokens or a "
				"smaller --ep)", c->name, ep, need / 1e9, avail / 1e9);
	}
	/* per rank: its bytes over the rates (bound.c); the bound is the mean rank's */
	for (uint32_t k = 0; k < ep; k++) {
		uint64_t disp = b[k].pack + b[k].dispatch_tx + b[k].unpack;
		uint64_t comb = b[k].combine_pack + b[k].combine_tx + b[k].reduce;
		double dus = (double)disp * cpb;
		double cus = (double)(b[k].combine_pack + b[k].combine_tx) * cpb + (double)b[k].reduce * rpb;

		sel += b[k].selections;
		sumd += disp;
		sumc += comb;
		sumx += b[k].dispatch_tx + b[k].combine_tx;
		bd += dus / ep;
		bc += cus / ep;
		bx += (double)(b[k].dispatch_tx + b[k].combine_tx) * cpb / ep;
		maxd = dus > maxd ? dus : maxd;
		maxc = cus > maxc ? cus : maxc;
		maxt = dus + cus > maxt ? dus + cus : maxt;
		free(topk[k]);
	}
	free(topk);
	free(w);
	free(b);

	/* a prefill layer moves a few GB per rank: seconds on a shared host */
	if (!ro.timeout_ms && (c->flags & XFER_MOE_F_PREFILL))
		ro.timeout_ms = 60000;
	rc = op->launch.url ? moe_run_rank(&ro, &op->l, op->runs++, &r)
			    : moe_run(&ro, &r);
	if (rc) {
		moe_run_free(&r);
		return out_fail(o, 0, "%s at EP %u on %s: %s", c->name, ep, ro.provider, r.error);
	}
	n = (size_t)r.ranks * r.iters;
	d = r.dispatch_us;
	cb = r.combine_us;
	lay = r.layer_us;
	tot = malloc(n * sizeof(double));
	if (!tot) {
		moe_run_free(&r);
		return out_fail(o, -ENOMEM, "%s at EP %u", c->name, ep);
	}
	for (size_t i = 0; i < n; i++)
		tot[i] = d[i] + cb[i];
	qsort(d, n, sizeof(double), cmp_double);
	qsort(cb, n, sizeof(double), cmp_double);
	qsort(tot, n, sizeof(double), cmp_double);
	qsort(lay, n, sizeof(double), cmp_double);

	double dp50 = quantile(d, n, 0.5), cp50 = quantile(cb, n, 0.5), tp50 = quantile(tot, n, 0.5);
	double per_rank_sel = (double)sel / ep;
	double bt = bd + bc;
	json_object *row = json_object_new_object();

#define F(k, v) json_object_object_add(row, k, json_object_new_double(v))
#define U(k, v) json_object_object_add(row, k, json_object_new_int64((int64_t)(v)))
#define S(k, v) json_object_object_add(row, k, json_object_new_string(v))
	S("config", c->name);
	U("ep", ep);
	S("provider", ro.provider);
	S("mode", c->flags & XFER_MOE_F_PREFILL ? "prefill" : "decode");
	U("tokens", c->tokens);
	U("hidden", c->hidden);
	U("experts", c->experts);
	U("topk", c->topk);
	S("dispatch_dtype", c->dispatch_dtype == XFER_MOE_FP8 ? "fp8" : "bf16");
	U("slots", ro.slots);
	U("warmup", ro.warmup);
	U("iters", ro.iters);
	U("selections_per_rank", (uint64_t)llround(per_rank_sel));
	U("record_bytes", l.record_bytes);
	U("combine_bytes", l.combine_bytes);
	F("dispatch_p50_us", dp50);
	F("dispatch_p99_us", quantile(d, n, 0.99));
	F("combine_p50_us", cp50);
	F("combine_p99_us", quantile(cb, n, 0.99));
	F("total_p50_us", tp50);
	F("total_p99_us", quantile(tot, n, 0.99));
	F("layer_p50_us", quantile(lay, n, 0.5));
	F("layer_p99_us", quantile(lay, n, 0.99));
	/* DeepEP's accounting: a rank's selections times a record, over its time */
	F("dispatch_gbs", dp50 > 0 ? per_rank_sel * (double)l.record_bytes / dp50 / 1e3 : 0);
	F("combine_gbs", cp50 > 0 ? per_rank_sel * (double)l.combine_bytes / cp50 / 1e3 : 0);
	F("copy_gbs", copy_gbs);
	F("read_gbs", read_gbs);
	/* per rank per layer, the mean over ranks */
	U("dispatch_copy_bytes", sumd / ep);
	U("combine_copy_bytes", sumc / ep);   /* the reduce's reads included */
	U("transfer_bytes", sumx / ep);
	if (cpb > 0) {
		F("bound_dispatch_us", bd);
		F("bound_combine_us", bc);
		F("bound_us", bt);
		F("bound_transfer_us", bx);
		F("bound_busiest_dispatch_us", maxd);
		F("bound_busiest_combine_us", maxc);
		F("bound_busiest_us", maxt);
		F("ratio_dispatch", dp50 / bd);
		F("ratio_combine", cp50 / bc);
		F("ratio", tp50 / bt);
		F("ratio_transfer", tp50 / bx);
		F("ratio_layer", quantile(lay, n, 0.5) / bt);
	} else {   /* --no-bound, or the rate could not be measured */
		json_object_object_add(row, "bound_us", NULL);
		json_object_object_add(row, "ratio_dispatch", NULL);
		json_object_object_add(row, "ratio_combine", NULL);
		json_object_object_add(row, "ratio", NULL);
	}
	U("timeout_ms", ro.timeout_ms ? ro.timeout_ms : 10000);
	U("rows_checked", r.rows_checked);
	F("setup_s", r.setup_s);
#undef F
#undef U
#undef S
	out_row(o, row);
	free(tot);
	moe_run_free(&r);
	return 0;
}

static int cmd_run(struct opts *op, struct out *o)
{
	struct moe_config cfgs[MAX_LIST];
	double copy[MAX_LIST] = { 0 }, rd[MAX_LIST] = { 0 };
	char err[1024], date[32];
	time_t now = time(NULL);
	int rc;

	for (unsigned i = 0; i < op->ncfgs; i++)
		if (resolve(o, op, op->cfgs[i], &cfgs[i])) {
			out_finish(o);
			return 1;
		}
	if (op->launch.url) {
		/* one rank per process: the world is the EP size; no loopback
		 * bound (the ranks may be on other hosts); each rank opens its
		 * engine itself and a failure is published to the others */
		if ((rc = launch_settle(&op->launch, &op->l, err, sizeof(err))))
			return out_fail(o, 0, "%s", err);
		if (op->ep_given && (op->neps != 1 || op->eps[0] != op->l.world))
			return out_fail(o, 0, "world size %u (%s) does not fit --ep: launched, the EP "
					"size is the world size (one --ep of %u, or none)", op->l.world,
					op->l.source, op->l.world);
		if (op->l.world > MOE_MAX_EP)
			return out_fail(o, 0, "world size %u (%s): at most %u ranks", op->l.world,
					op->l.source, MOE_MAX_EP);
		op->eps[0] = op->l.world;
		op->neps = 1;
		op->no_bound = true;
		for (unsigned i = 0; i < op->ncfgs; i++)
			if (cfgs[i].experts % op->l.world)
				return out_fail(o, 0, "world size %u (%s): the %u experts of %s are not a "
						"multiple of it", op->l.world, op->l.source,
						cfgs[i].experts, cfgs[i].name);
		if (op->run.kill_rank >= (int)op->l.world)
			return out_fail(o, 0, "--kill-rank %d: not a rank of world size %u",
					op->run.kill_rank, op->l.world);
		out_u64(o, "rank", op->l.rank);
		out_u64(o, "world_size", op->l.world);
		out_str(o, "launcher", op->l.source);
		out_str(o, "job", op->l.job);
		out_str(o, "node", op->l.node);
		if ((rc = launch_join(&op->launch, (uint32_t)(op->run.timeout_ms > 0 ? op->run.timeout_ms
							     : 10000) * 3 + 30000, &op->l, err, sizeof(err)))) {
			return out_fail(o, 0, "%s", err);
		}
	} else if ((rc = provider_probe(op->run.provider, 0, err, sizeof(err)))) {
		return out_fail(o, 0, "-p: %s", err);
	}
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	out_str(o, "date", date);
	out_str(o, "provider", op->run.provider);
	out_u64(o, "cores", (uint64_t)sysconf(_SC_NPROCESSORS_ONLN));
	if (!op->no_bound)
		out_u64(o, "copy_size", op->copy_bytes);
	/* the rates once per EP size, before any run: R copying (reading) at once */
	for (unsigned i = 0; i < op->neps && !op->no_bound; i++) {
		char key[32];

		moe_rates(op->eps[i], op->copy_bytes, &copy[i], &rd[i]);
		snprintf(key, sizeof(key), "copy_gbs_%u", op->eps[i]);
		out_f64(o, key, copy[i]);
		snprintf(key, sizeof(key), "read_gbs_%u", op->eps[i]);
		out_f64(o, key, rd[i]);
	}
	out_table(o, "moe", text_cols, (int)(sizeof(text_cols) / sizeof(text_cols[0])));
	for (unsigned i = 0; i < op->ncfgs; i++)
		for (unsigned k = 0; k < op->neps; k++)
			if (run_one(o, op, &cfgs[i], op->eps[k], copy[k], rd[k]))
				return 1;   /* launched: the keys go with this rank's lease */
	if (op->launch.url && (rc = launch_close(&op->l, err, sizeof(err))))
		return out_fail(o, 0, "%s", err);
	out_finish(o);
	return 0;
}

static int cmd_list(struct opts *op, struct out *o)
{
	static const char *const cols[] = { "name", "tokens", "hidden", "experts", "topk", "dispatch",
					    "mode", "record_bytes", "combine_bytes" };

	(void)op;
	out_table(o, "configs", cols, (int)(sizeof(cols) / sizeof(cols[0])));
	for (unsigned i = 0; i < moe_nconfigs; i++) {
		const struct moe_config *c = &moe_configs[i];
		struct moe_run_opts ro = { .cfg = c, .ep = 1 };
		struct xfer_moe_attr a;
		struct xfer_moe_layout l;
		json_object *row = json_object_new_object();

		moe_attr_fill(&ro, 0, &a);
		memset(&l, 0, sizeof(l));
		xfer_moe_layout_get(&a, &l);
		json_object_object_add(row, "name", json_object_new_string(c->name));
		json_object_object_add(row, "tokens", json_object_new_int64(c->tokens));
		json_object_object_add(row, "hidden", json_object_new_int64(c->hidden));
		json_object_object_add(row, "experts", json_object_new_int64(c->experts));
		json_object_object_add(row, "topk", json_object_new_int64(c->topk));
		json_object_object_add(row, "dispatch", json_object_new_string(
			c->dispatch_dtype == XFER_MOE_FP8 ? "fp8" : "bf16"));
		json_object_object_add(row, "mode", json_object_new_string(
			c->flags & XFER_MOE_F_PREFILL ? "prefill" : "decode"));
		json_object_object_add(row, "record_bytes", json_object_new_int64((int64_t)l.record_bytes));
		json_object_object_add(row, "combine_bytes", json_object_new_int64((int64_t)l.combine_bytes));
		json_object_object_add(row, "what", json_object_new_string(c->what));
		out_row(o, row);
	}
	out_finish(o);
	return 0;
}

int main(int argc, char **argv)
{
	struct out o;
	struct opts op = { .run = { .provider = "local", .warmup = 20, .iters = 200, .slots = 2,
				    .seed = 1, .kill_rank = -1 }, .copy_bytes = 64ull << 20 };
	int first = 1, rc;
	bool help = false;
	const char *cmd = "run";

	out_init(&o, "xfer-moe");
	launch_opts_init(&op.launch);
	/* -j anywhere makes every message JSON, those about the command too */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-j") || !strcmp(argv[i], "--json") || !strcmp(argv[i], "--pretty"))
			o.json = true;
	while (first < argc && argv[first][0] == '-' &&
	       (!strcmp(argv[first], "-j") || !strcmp(argv[first], "--json") ||
		!strcmp(argv[first], "--pretty")))
		first++;
	if (first < argc && argv[first][0] != '-') {
		cmd = argv[first];
		if (!strcmp(cmd, "sim")) {
			/* the simulator parses its own options; global flags go along */
			char **av = calloc((size_t)argc + 1, sizeof(*av));
			int ac = 0;

			if (!av)
				return out_fail(&o, -ENOMEM, "sim");
			av[ac++] = argv[first];
			for (int i = 1; i < first; i++)
				av[ac++] = argv[i];
			for (int i = first + 1; i < argc; i++)
				av[ac++] = argv[i];
			json_object_put(o.doc);   /* the simulator prints its own document */
			o.doc = NULL;
			rc = moe_cmd_sim(ac, av);
			free(av);
			return rc;
		}
		if (strcmp(cmd, "run") && strcmp(cmd, "list") && strcmp(cmd, "help"))
			return out_fail(&o, 0, "unknown command '%s' (run, list, sim or help)", cmd);
		first++;
	}
	op.cfgs[op.ncfgs++] = moe_config_find("v3-decode");
	op.eps[op.neps++] = 4;
	if (parse_opts(argc - first + 1, argv + first - 1, &op, &o, &help)) {
		out_finish(&o);
		return 1;
	}
	if (help || !strcmp(cmd, "help")) {
		usage();
		o.json = false;   /* the usage is all there is to print */
		out_finish(&o);
		return 0;
	}
	/* a rank that dies makes a write to its socket fail with EPIPE */
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(cmd, "list"))
		return cmd_list(&op, &o);
	return cmd_run(&op, &o);
}
