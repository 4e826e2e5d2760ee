/* SPDX-License-Identifier: MIT */
/*
 * xfer weight sync: model parameter lists, trainer / inference layouts, the
 * static transfer schedule (planner, validator, file format), the cluster
 * simulator and the fp8 block quantisation reference.
 *
 * The flow: xfer_ws_model_load() reads a Hugging Face config.json and
 * derives every parameter; xfer_ws_plan() maps the parameters, sharded as
 * the trainer holds them, onto the inference ranks' weight buffers and
 * returns a schedule; xfer_ws_simulate() predicts its time on a cluster
 * model; an executor runs it with the engine (xfer.h).
 *
 * Errors are negative errno values. Attribute structs start with their size
 * (set it to sizeof the struct) and are read by the rule of xfer.h: below
 * the struct's _SIZE_VER0 -EINVAL, fields past an older caller's size take
 * their defaults, a newer caller's tail past the library's sizeof must be
 * zero (else -E2BIG).
 */
#ifndef XFER_WEIGHTSYNC_H
#define XFER_WEIGHTSYNC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Data types                                                          */

#define XFER_WS_DT_BF16    1u
#define XFER_WS_DT_F32     2u
#define XFER_WS_DT_FP8E4M3 3u   /* with float32 scales per 128x128 block */

#define XFER_WS_FP8_BLOCK  128u /* quantisation block edge (rows and cols) */
#define XFER_WS_FP8_MAX    448.0f

/* Bytes per element of a dtype, 0 if unknown. */
unsigned xfer_ws_dtype_size(uint32_t dtype);
const char *xfer_ws_dtype_name(uint32_t dtype);

/* ------------------------------------------------------------------ */
/* Model: config.json -> parameter list                                */

typedef struct xfer_ws_model xfer_ws_model;

#define XFER_WS_NAME_MAX 96

/* One trained parameter as the trainer holds it. 1-D tensors have cols = 1. */
struct xfer_ws_param {
	char name[XFER_WS_NAME_MAX]; /* Hugging Face name */
	uint64_t rows, cols;         /* shape [rows, cols] (cols 1 for vectors) */
	uint32_t ndim;               /* 1 or 2 */
	uint32_t dtype;              /* XFER_WS_DT_BF16 or _F32 */
	int32_t layer;               /* decoder layer; -1: embeddings; >= num_hidden_layers:
	                              * final norm, lm_head, MTP layers (the last stage) */
	int32_t expert;              /* routed expert index, -1 otherwise */
};

/* Load flags */
#define XFER_WS_MODEL_MTP (1u << 0) /* include DeepSeek's multi-token-prediction layers */

int xfer_ws_model_load(const char *config_path, uint32_t flags, xfer_ws_model **out);
/* Why the calling thread's last failed xfer_ws_model_load/_parse,
 * xfer_ws_trainer_parse/xfer_ws_infer_parse, xfer_ws_plan or
 * xfer_ws_schedule_load failed, naming the key or value at fault ("" when
 * the error code says all). Those calls return negative errno values as
 * always; this is the detail beside -EINVAL. Valid until the thread's
 * next such call. */
const char *xfer_ws_last_error(void);
int xfer_ws_model_parse(const char *json_text, uint32_t flags, xfer_ws_model **out);
void xfer_ws_model_free(xfer_ws_model *m);
/* The parameter array, valid while m lives. */
const struct xfer_ws_param *xfer_ws_model_params(const xfer_ws_model *m, size_t *count);
uint64_t xfer_ws_model_numel(const xfer_ws_model *m);
/* "deepseek_v3", "kimi_k2", "qwen3_moe", "qwen2", "llama", ... */
const char *xfer_ws_model_type(const xfer_ws_model *m);

/* ------------------------------------------------------------------ */
/* Layouts                                                             */

/*
 * Trainer: world = dp * pp * fsdp * ep ranks, rank = ((d * pp + s) * ep + g) * fsdp + f.
 * Decoder layers are split into pp contiguous stages (embeddings on the first,
 * final norm and lm_head on the last). Non-expert parameters of a stage are
 * sharded on dim 0 over its fsdp * ep ranks (torch.chunk sizes, FSDP2 Shard(0));
 * routed experts are split over the ep groups in contiguous blocks, and inside
 * a group over its fsdp ranks by whole experts when they divide evenly (the
 * stacked-expert Shard(0) of torchtitan), else each expert on dim 0.
 * dp is a plain replication (HSDP replicas); it gives the planner a choice
 * of sources.
 */
struct xfer_ws_trainer_layout {
	uint32_t size;
	uint32_t dp, pp, fsdp, ep;
};
#define XFER_WS_TRAINER_LAYOUT_SIZE_VER0 20u   /* all of it: no defaults */

/*
 * Inference: world = dp * ep * tp ranks, rank = (d * ep + e) * tp + t.
 * Each of the dp replicas has ep * tp ranks; routed experts are split over
 * ep in contiguous blocks and each expert over tp (w13 by rows, w2 by
 * columns). Non-expert weights are split over tp (column-parallel by rows,
 * row-parallel by columns, embeddings and lm_head by vocabulary rows, the
 * rest replicated) and replicated over ep (attention data parallel).
 * Projections are fused as the inference engines store them: q/k/v ->
 * qkv_proj, gate/up -> gate_up_proj (experts: w13), MLA q_a/kv_a ->
 * fused_qkv_a_proj_with_mqa.
 * dtype: XFER_WS_DT_BF16, or XFER_WS_DT_FP8E4M3 for every 2-D projection
 * (embeddings, lm_head, router, norms and biases stay in their dtype).
 */
struct xfer_ws_infer_layout {
	uint32_t size;
	uint32_t dp, ep, tp;
	uint32_t dtype;
};
#define XFER_WS_INFER_LAYOUT_SIZE_VER0 20u     /* all of it: no defaults */

static inline uint32_t xfer_ws_trainer_world(const struct xfer_ws_trainer_layout *t)
{
	return t->dp * t->pp * t->fsdp * t->ep;
}

static inline uint32_t xfer_ws_infer_world(const struct xfer_ws_infer_layout *l)
{
	return l->dp * l->ep * l->tp;
}

/* Parse "fsdp=16,pp=2,ep=8[,dp=1]" / "tp=1,ep=32,dp=4"; missing keys are 1,
 * unknown keys and zero values -EINVAL; an inference dtype of 0 becomes fp8. */
int xfer_ws_trainer_parse_size(const char *s, struct xfer_ws_trainer_layout *t, size_t size);
int xfer_ws_infer_parse_size(const char *s, struct xfer_ws_infer_layout *l, size_t size);
/* Macros so that the size is this header's sizeof (see xfer_engine_attr_init). */
#define xfer_ws_trainer_parse(s, t) xfer_ws_trainer_parse_size((s), (t), sizeof(*(t)))
#define xfer_ws_infer_parse(s, l) xfer_ws_infer_parse_size((s), (l), sizeof(*(l)))

/* ------------------------------------------------------------------ */
/* Schedule                                                            */

/*
 * A schedule is computed once and is then read-only. Arrays and their
 * meaning (all indices are into the arrays of the same schedule):
 *
 *  params[]     the source tensors (copied from the model).
 *  tensors[]    every destination tensor on every inference rank, grouped by
 *               rank (ranks[r].first_tensor, .ntensors), in buffer order.
 *               A rank's weights live in ONE buffer of ranks[r].buf_bytes;
 *               fp8 tensors have a float32 scale grid beside their data.
 *  chunks[]     a unit of work on one trainer: rows [row0, row0+rows) x cols
 *               [col0, col0+cols) of param, transformed once (copy or fp8),
 *               then written to nwrites destinations. Chunks are grouped by
 *               owner in preparation order: trainer t prepares
 *               chunks[trainers[t].first_chunk .. + nchunks] in that order,
 *               which is the order of their first write in t's issue order.
 *  writes[]     one destination of a chunk: out_bytes to dst_offset and, for
 *               fp8, scale_bytes to scale_offset of rank dst_rank's buffer.
 *               Grouped by trainer in ISSUE order: trainer t posts
 *               writes[trainers[t].first_write .. + nwrites] in that order
 *               (each once its chunk is prepared). A chunk's writes are
 *               writes_by_chunk[chunk.first_write .. + nwrites] (indices).
 *               The order paces every inference NIC evenly over the run:
 *               a write's position is the time its receiver is planned to
 *               take it.
 *  gathers[]    rows of a chunk that the owner does not hold: before the
 *               pipeline starts, src_rank writes its rows [row0, row0+rows)
 *               (columns of the chunk, packed bf16/f32 row-major) to offset
 *               dst_offset of the owner's gather buffer (trainers[owner].
 *               gather_bytes). Grouped by src_rank (trainers[t].first_gather,
 *               .ngathers). A chunk with gather_offset != XFER_WS_NO_GATHER
 *               reads its whole source rows x cols from the gather buffer at
 *               gather_offset, where the owner also copies the rows it holds
 *               (an executor may instead write rows it holds from its shard:
 *               xfer_ws_exec.h).
 *  Staging: a chunk's output (out_bytes, then scale_bytes, each rounded
 *               up to 64 bytes) is held from its preparation until its last
 *               write completes; preparing at first use needs
 *               trainers[t].peak_staging bytes at most.
 *
 * Source data of a chunk: param rows/cols in the trainer's bf16 (or f32)
 * shard, row-major; the trainer's shard of param starts at row
 * xfer_ws_shard_rows(). Output layout in the destination: rows x cols
 * row-major in the tensor's dtype; for fp8 the scale rows of the chunk
 * (ceil(rows/128) x ceil(cols/128) float32, blocks counted from the chunk's
 * first row, which the planner puts on a block boundary of the destination).
 */
#define XFER_WS_XF_COPY 0u /* bytes as they are (bf16 or f32) */
#define XFER_WS_XF_FP8  1u /* bf16 -> fp8 e4m3 + float32 128x128 block scales */

#define XFER_WS_NO_GATHER UINT64_MAX

struct xfer_ws_tensor {
	uint64_t offset, bytes;             /* data in the rank's buffer */
	uint64_t scale_offset, scale_bytes; /* fp8 scales; 0, 0 if none */
	uint64_t rows, cols;                /* local (fused, sliced) shape */
	uint32_t rank;                      /* inference rank */
	uint32_t dtype;
	uint32_t name;                      /* offset into strtab */
	uint32_t pad;
};

struct xfer_ws_chunk {
	uint64_t out_bytes;       /* bytes of each write's data */
	uint64_t scale_bytes;     /* bytes of each write's scales (fp8), else 0 */
	uint64_t gather_offset;   /* XFER_WS_NO_GATHER or offset in the owner's gather buffer */
	uint64_t row0, rows;      /* source rows of param */
	uint64_t col0, cols;      /* source columns of param */
	uint32_t owner;           /* trainer rank */
	uint32_t param;
	uint32_t transform;       /* XFER_WS_XF_* */
	uint32_t tensor;          /* one destination tensor of this slice (on its first rank): names, diagnostics */
	uint32_t first_write, nwrites;   /* its writes: an index range into writes_by_chunk[] */
	uint32_t first_gather, ngathers; /* its gathers: an index range into gathers_by_chunk[] */
};

struct xfer_ws_write {
	uint64_t dst_offset;
	uint64_t scale_offset;    /* valid when the chunk's scale_bytes != 0 */
	uint32_t chunk;
	uint32_t dst_rank;        /* inference rank */
};

struct xfer_ws_gather {
	uint64_t row0, rows;      /* source rows (the chunk's columns) */
	uint64_t dst_offset;      /* in the owner's gather buffer */
	uint64_t bytes;
	uint32_t src_rank;        /* trainer that holds the rows */
	uint32_t chunk;           /* owner = chunks[chunk].owner */
};

struct xfer_ws_trainer_rank {
	uint32_t first_chunk, nchunks;   /* preparation order */
	uint32_t first_write, nwrites;   /* issue order */
	uint32_t first_gather, ngathers; /* gathers this rank sends */
	uint64_t peak_staging;           /* staging needed when chunks are prepared at first use */
	uint64_t gather_bytes;           /* size of its gather buffer */
	uint64_t tx_bytes;               /* writes + gathers sent */
	uint64_t rx_bytes;               /* gathers received */
};

struct xfer_ws_infer_rank {
	uint32_t first_tensor, ntensors;
	uint64_t buf_bytes;              /* size of its weight buffer */
	uint64_t rx_bytes;               /* bytes written into it (= data + scales) */
};

#define XFER_WS_SCHEDULE_VERSION 1u

struct xfer_ws_schedule {
	uint32_t version;
	uint32_t align;                  /* tensor alignment in the buffers */
	struct xfer_ws_trainer_layout trainer;
	struct xfer_ws_infer_layout infer;
	uint32_t ntrainers, ninfer;
	uint32_t nlayers;                /* decoder layers (num_hidden_layers) */
	uint32_t nexperts;               /* routed experts per layer, 0 if dense */
	uint64_t nparams, ntensors, nchunks, nwrites, ngathers;
	uint64_t strtab_len;
	struct xfer_ws_param *params;
	struct xfer_ws_tensor *tensors;
	struct xfer_ws_chunk *chunks;
	struct xfer_ws_write *writes;            /* grouped by trainer, issue order */
	uint32_t *writes_by_chunk;               /* indices into writes[], grouped by chunk */
	struct xfer_ws_gather *gathers;          /* grouped by src_rank */
	uint32_t *gathers_by_chunk;              /* indices into gathers[], grouped by chunk */
	struct xfer_ws_trainer_rank *trainers;   /* [ntrainers] */
	struct xfer_ws_infer_rank *infers;       /* [ninfer] */
	char *strtab;
};

struct xfer_ws_plan_attr {
	uint32_t size;
	uint32_t flags;           /* must be 0 */
	uint64_t min_chunk;       /* source bytes; shards smaller than this are merged (gathered); 0 = 16 MiB */
	uint64_t max_chunk;       /* source bytes; larger pieces are split; 0 = 64 MiB */
	uint32_t align;           /* destination tensor alignment; 0 = 256 */
	uint32_t reserved;        /* must be 0 */
};
/* size and flags; the rest default to 0 (the defaults noted). */
#define XFER_WS_PLAN_ATTR_SIZE_VER0 8u

int xfer_ws_plan(const xfer_ws_model *m, const struct xfer_ws_trainer_layout *t,
		 const struct xfer_ws_infer_layout *l, const struct xfer_ws_plan_attr *attr,
		 struct xfer_ws_schedule **out);
void xfer_ws_schedule_free(struct xfer_ws_schedule *s);

/* First row (of param) held by trainer rank, and the row count (0: none). */
int xfer_ws_shard_rows(const struct xfer_ws_schedule *s, uint32_t param, uint32_t trainer,
		       uint64_t *row0, uint64_t *rows);

/*
 * Check a schedule: every byte of every destination tensor (data and scales)
 * written exactly once and nothing else; tensors inside their rank's buffer
 * and not overlapping; each chunk's source rows held by its owner or
 * gathered exactly once; each parameter tiled exactly once by its chunks;
 * chunks prepared in order of first use; sizes consistent with dtypes.
 * 0 or -EINVAL with a
 * reason in err (if errlen > 0).
 */
int xfer_ws_schedule_validate(const struct xfer_ws_schedule *s, char *err, size_t errlen);

/* Binary file format (little-endian, versioned). */
int xfer_ws_schedule_save(const struct xfer_ws_schedule *s, FILE *f);
int xfer_ws_schedule_load(FILE *f, struct xfer_ws_schedule **out);

struct xfer_ws_stats {
	uint64_t total_bytes;        /* written into inference buffers */
	uint64_t gather_bytes;
	uint64_t max_trainer_tx, min_trainer_tx;
	uint64_t max_infer_rx, min_infer_rx;
	double trainer_imbalance;    /* max / mean trainer tx */
	double infer_imbalance;      /* max / mean inference rx */
};
void xfer_ws_schedule_stats(const struct xfer_ws_schedule *s, struct xfer_ws_stats *st);

/* ------------------------------------------------------------------ */
/* Simulator                                                           */

/*
 * The simulator (lib/weightsync/sim.c) steps time (bound / 20000 per step):
 * per trainer a prepare stage (gathers in, copy to staging, quantise) in
 * schedule order under the watermark, `window` writes in flight, and every
 * NIC a link whose rate the in-flight transfers share max-min fairly.
 */
struct xfer_ws_cluster {
	uint32_t size;
	uint32_t window;          /* writes in flight per trainer NIC; 0 = 16 */
	double trainer_nic_gbps;  /* per trainer GPU, Gbit/s; 0 = 400 */
	double infer_nic_gbps;    /* per inference GPU; 0 = the trainer's */
	double copy_gbs;          /* GB/s into staging (source bytes); 0 = 1000 */
	double xform_gbs;         /* GB/s of source bytes through fp8 quantisation; 0 = 400 */
	double op_us;             /* posting latency per RDMA write; 0 = 2 */
	double chunk_us;          /* fixed cost per chunk prepared (launches); 0 = 10 */
	double barrier_us;        /* final barrier; 0 = 20 */
	uint64_t watermark;       /* staging bytes per trainer; 0 = 2 GiB (never below peak_staging) */
};
/* size and window; the rest default to 0 (the defaults noted). */
#define XFER_WS_CLUSTER_SIZE_VER0 8u

struct xfer_ws_sim_result {
	double predicted_s;
	double bound_s;           /* busiest NIC's bytes / its rate */
	double trainer_bound_s, infer_bound_s;
	double prep_s;            /* busiest trainer's copy + transform time */
	uint64_t events;          /* time steps simulated */
};

void xfer_ws_cluster_defaults_size(struct xfer_ws_cluster *c, size_t size);
#define xfer_ws_cluster_defaults(c) xfer_ws_cluster_defaults_size((c), sizeof(*(c)))
int xfer_ws_simulate(const struct xfer_ws_schedule *s, const struct xfer_ws_cluster *c,
		     struct xfer_ws_sim_result *r);
/* The rates a simulation with c uses: the fields of c left at 0 are set to
 * their defaults (c->size must be set, as for xfer_ws_simulate). */
int xfer_ws_cluster_resolve(struct xfer_ws_cluster *c);

/* ------------------------------------------------------------------ */
/* fp8 e4m3 block quantisation (C reference; kernels/quant_fp8.cu is the GPU twin) */

/*
 * src: rows x cols bf16 (as uint16_t), row stride src_ld elements.
 * dst: rows x cols e4m3 bytes, row stride dst_ld. scales: ceil(rows/128) x
 * ceil(cols/128) float32 row-major (dequantised value = e4m3 * scale).
 * Per block: scale = amax / 448 (amax over finite values; 1 if amax is 0),
 * q = RNE(x / scale) saturated to +-448; NaN -> 0x7f (sign kept), +-Inf -> +-448.
 */
void xfer_ws_quant_fp8(const uint16_t *src, size_t rows, size_t cols, size_t src_ld,
		       uint8_t *dst, size_t dst_ld, float *scales);
uint8_t xfer_ws_f32_to_e4m3(float x);
float xfer_ws_e4m3_to_f32(uint8_t v);

#ifdef __cplusplus
}
#endif
#endif
