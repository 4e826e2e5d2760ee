/* SPDX-License-Identifier: MIT */
/*
 * xfer-moe: MoE dispatch and combine (include/xfer_moe.h) run by R rank
 * processes on this host, on named configurations, with the numbers the
 * issue asks for (docs/moe.md, "xfer-moe"). One file per job:
 *   main.c     options, commands (run, list, sim), output
 *   configs.c  the named configurations
 *   data.c     the seeded routing, weights and tokens, the check's expert
 *   bound.c    the copy rate and the bytes each rank copies (the bound)
 *   run.c      the rank processes and the coordinator that relays their
 *              blobs, watches them and gathers their times
 */
#ifndef XFER_TOOLS_MOE_H
#define XFER_TOOLS_MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xfer_moe.h"

struct moe_config {
	const char *name;
	const char *what;          /* the model and phase it stands for */
	uint32_t tokens, hidden, experts, topk;
	uint32_t dispatch_dtype;   /* XFER_MOE_FP8 or XFER_MOE_BF16 */
	uint32_t flags;            /* XFER_MOE_F_PREFILL */
};

extern const struct moe_config moe_configs[];
extern const unsigned moe_nconfigs;
/* NULL if there is none of that name. */
const struct moe_config *moe_config_find(const char *name);
/* "a, b, c": the names, for messages. */
const char *moe_config_names(void);

#define MOE_MAX_EP 64u             /* ranks the tool forks (the API takes more) */
#define MOE_MAX_ITERS 1000000u

/* One run: a configuration (overrides applied) at one EP size. */
struct moe_run_opts {
	const struct moe_config *cfg;  /* with the overrides applied */
	uint32_t ep;
	const char *provider;
	uint32_t warmup, iters, slots;
	uint64_t seed;
	double none_frac;              /* fraction of (t, k) slots set to -1 */
	bool check;                    /* compare every output with xfer_moe_reference */
	int timeout_ms;                /* the context's receive timeout; 0 = its default */
	int kill_rank;                 /* -1, or a rank that SIGKILLs itself mid-layer */
};

/* The attributes every rank of a run creates its context with. */
void moe_attr_fill(const struct moe_run_opts *o, uint32_t rank, struct xfer_moe_attr *a);

/* ---- data.c: what each rank sends, all from (seed, rank, variant) ---- */
/* Routing: K distinct experts per token, uniform over E, then each slot
 * -1 with probability none_frac; weights in [1/64, 1]. */
void moe_gen_routing(const struct moe_run_opts *o, uint32_t rank, uint64_t variant, int32_t *topk,
		     float *weights);
/* Tokens [T][H] bf16: finite, moderate range, every mantissa bit used. */
void moe_gen_tokens(const struct moe_run_opts *o, uint32_t rank, uint64_t variant, uint16_t *x);
/* The check's expert: y = bf16(v * a(e) + b(e)) per value, v the row as
 * dispatch delivers it (bf16, or e4m3 times its block's scale). ctx is
 * the layout (const struct xfer_moe_layout *). */
void moe_expert(void *ctx, uint32_t expert, const uint8_t *x, const float *scales, uint16_t *y);

/* ---- bound.c --------------------------------------------------------- */
/* Bytes one rank's process copies per layer in the design, from the
 * routing of every rank (topk[r] for r < R): see bound.c. */
struct moe_bytes {
	uint64_t selections;       /* this rank's (t, k) pairs that are not -1 */
	uint64_t received;         /* records it receives, all sources */
	uint64_t pack, dispatch_tx, unpack;     /* dispatch */
	uint64_t combine_pack, combine_tx, reduce;   /* combine (reduce: bytes read) */
};
void moe_count_bytes(const struct xfer_moe_layout *l, const int32_t *const *topk,
		     struct moe_bytes *per_rank);
/* GB/s per process while k processes copy buffers of `bytes` at once
 * (memcpy, each its own), and while they read them (a sum of their
 * words): the best of a few rounds; 0 if it could not measure. */
void moe_rates(uint32_t k, size_t bytes, double *copy_gbs, double *read_gbs);

/* ---- run.c ------------------------------------------------------------ */
struct moe_run_result {
	double *dispatch_us, *combine_us;   /* [ranks][iters], rank-major; freed by moe_run_free */
	double *layer_us;          /* the same: one dispatch_send to the next */
	uint32_t ranks, iters;
	uint64_t rows_checked;     /* outputs compared with the reference, all ranks */
	double setup_s;            /* fork to every rank connected */
	char error[512];           /* which rank failed and why ("" if none) */
};
/* Fork the ranks, run, gather. 0, or non-zero with r->error set. */
int moe_run(const struct moe_run_opts *o, struct moe_run_result *r);
void moe_run_free(struct moe_run_result *r);
/* Launcher mode: this process is rank l->rank of o->ep (l joined); run is
 * this run's number (its exchanges' names). Every rank gets every rank's
 * times: r as moe_run's. */
struct launch;
int moe_run_rank(const struct moe_run_opts *o, struct launch *l, uint32_t run,
		 struct moe_run_result *r);

#endif
