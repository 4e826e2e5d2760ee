// SPDX-License-Identifier: MIT
/*
 * The schedule run in memory, as an executor would run it (gathers, then per
 * trainer: prepare chunks from its own shard or its gather buffer, transform,
 * write in issue order), with memcpy standing in for RDMA WRITE. Every
 * inference tensor is then compared bit for bit with what it must hold,
 * built here from the full parameters by the inference layout's rules
 * (fusion by name, TP slicing, EP placement, fp8 of each component slice).
 * This checks the mapping itself, which the validator's byte accounting
 * cannot see (a right-sized write of the wrong rows).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "xfer_weightsync.h"
#include "ws_models.h"

#define EXEC_TIMEOUT_S 30   /* largest case: 0.4 s here, 1 s under ASan+UBSan */

struct run {
	const struct xfer_ws_schedule *s;
	uint8_t ***shard;   /* [trainer][param] rows held, or NULL */
	uint8_t **gbuf;     /* [trainer] gather buffer */
	uint8_t **ibuf;     /* [inference rank] weights */
};

static unsigned esz(uint32_t dt)
{
	return xfer_ws_dtype_size(dt);
}

/* Deterministic finite values, different per parameter and element. */
static void value(uint32_t p, uint64_t r, uint64_t c, uint32_t dt, uint8_t *out)
{
	uint32_t h = (uint32_t)(p * 2654435761u) ^ (uint32_t)(r * 40503u) ^ (uint32_t)(c * 2246822519u);
	float f;

	h ^= h >> 15;
	h *= 2246822519u;
	h ^= h >> 13;
	f = ((float)(h % 20001) - 10000.0f) / 1000.0f * (float)(1 << (h >> 29));
	if (dt == XFER_WS_DT_F32) {
		memcpy(out, &f, 4);
	} else {
		uint32_t u;

		memcpy(&u, &f, 4);
		u >>= 16;
		memcpy(out, &u, 2);
	}
}

static void fill(const struct xfer_ws_param *pa, uint32_t p, uint64_t r0, uint64_t rows, uint64_t c0,
		 uint64_t cols, uint8_t *out)
{
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t c = 0; c < cols; c++)
			value(p, r0 + r, c0 + c, pa->dtype, out + (r * cols + c) * esz(pa->dtype));
}

static int setup(struct run *x)
{
	const struct xfer_ws_schedule *s = x->s;

	x->shard = calloc(s->ntrainers, sizeof(*x->shard));
	x->gbuf = calloc(s->ntrainers, sizeof(*x->gbuf));
	x->ibuf = calloc(s->ninfer, sizeof(*x->ibuf));
	for (uint32_t t = 0; t < s->ntrainers; t++) {
		x->shard[t] = calloc(s->nparams, sizeof(**x->shard));
		x->gbuf[t] = calloc(1, s->trainers[t].gather_bytes + 1);
		for (uint32_t p = 0; p < s->nparams; p++) {
			const struct xfer_ws_param *pa = &s->params[p];
			uint64_t r0, n;

			xfer_ws_shard_rows(s, p, t, &r0, &n);
			if (!n)
				continue;
			x->shard[t][p] = malloc(n * pa->cols * esz(pa->dtype));
			fill(pa, p, r0, n, 0, pa->cols, x->shard[t][p]);
		}
	}
	for (uint32_t r = 0; r < s->ninfer; r++)
		x->ibuf[r] = calloc(1, s->infers[r].buf_bytes + 1);
	return 0;
}

static void teardown(struct run *x)
{
	for (uint32_t t = 0; t < x->s->ntrainers; t++) {
		for (uint32_t p = 0; p < x->s->nparams; p++)
			free(x->shard[t][p]);
		free(x->shard[t]);
		free(x->gbuf[t]);
	}
	for (uint32_t r = 0; r < x->s->ninfer; r++)
		free(x->ibuf[r]);
	free(x->shard);
	free(x->gbuf);
	free(x->ibuf);
}

/* Rows [row0, row0+rows), columns of chunk ch, from trainer t's own shard into out (packed). */
static void read_own(struct run *x, uint32_t t, const struct xfer_ws_chunk *ch, uint64_t row0, uint64_t rows,
		     uint8_t *out)
{
	const struct xfer_ws_param *pa = &x->s->params[ch->param];
	uint64_t s0, sn, e = esz(pa->dtype);

	xfer_ws_shard_rows(x->s, ch->param, t, &s0, &sn);
	for (uint64_t r = 0; r < rows; r++)
		memcpy(out + r * ch->cols * e, x->shard[t][ch->param] + ((row0 - s0 + r) * pa->cols + ch->col0) * e,
		       ch->cols * e);
}

static void execute(struct run *x)
{
	const struct xfer_ws_schedule *s = x->s;

	/* phase 1: gathers */
	for (uint64_t g = 0; g < s->ngathers; g++) {
		const struct xfer_ws_gather *gt = &s->gathers[g];
		const struct xfer_ws_chunk *ch = &s->chunks[gt->chunk];

		read_own(x, gt->src_rank, ch, gt->row0, gt->rows, x->gbuf[ch->owner] + gt->dst_offset);
	}
	/* phase 2: per trainer, chunks at first use, writes in issue order */
	for (uint32_t t = 0; t < s->ntrainers; t++) {
		const struct xfer_ws_trainer_rank *tr = &s->trainers[t];
		uint8_t **staged = calloc(s->nchunks, sizeof(*staged));
		float **scales = calloc(s->nchunks, sizeof(*scales));

		for (uint32_t w = tr->first_write; w < tr->first_write + tr->nwrites; w++) {
			const struct xfer_ws_write *wr = &s->writes[w];
			const struct xfer_ws_chunk *ch = &s->chunks[wr->chunk];
			uint64_t e = esz(s->params[ch->param].dtype);

			if (!staged[wr->chunk]) {
				uint8_t *src;
				uint64_t s0, sn, lo, hi;

				if (ch->gather_offset == XFER_WS_NO_GATHER) {
					src = malloc(ch->rows * ch->cols * e);
					read_own(x, t, ch, ch->row0, ch->rows, src);
				} else {
					src = x->gbuf[t] + ch->gather_offset;
					xfer_ws_shard_rows(s, ch->param, t, &s0, &sn);
					lo = s0 > ch->row0 ? s0 : ch->row0;
					hi = s0 + sn < ch->row0 + ch->rows ? s0 + sn : ch->row0 + ch->rows;
					if (hi > lo)
						read_own(x, t, ch, lo, hi - lo, src + (lo - ch->row0) * ch->cols * e);
				}
				staged[wr->chunk] = malloc(ch->out_bytes + 1);
				if (ch->transform == XFER_WS_XF_FP8) {
					scales[wr->chunk] = malloc(ch->scale_bytes + 4);
					xfer_ws_quant_fp8((const uint16_t *)src, ch->rows, ch->cols, ch->cols,
							  staged[wr->chunk], ch->cols, scales[wr->chunk]);
				} else {
					memcpy(staged[wr->chunk], src, ch->out_bytes);
				}
				if (ch->gather_offset == XFER_WS_NO_GATHER)
					free(src);
			}
			memcpy(x->ibuf[wr->dst_rank] + wr->dst_offset, staged[wr->chunk], ch->out_bytes);
			if (ch->scale_bytes)
				memcpy(x->ibuf[wr->dst_rank] + wr->scale_offset, scales[wr->chunk], ch->scale_bytes);
		}
		for (uint64_t c = 0; c < s->nchunks; c++) {
			free(staged[c]);
			free(scales[c]);
		}
		free(staged);
		free(scales);
	}
}

static int find_param(const struct xfer_ws_schedule *s, const char *name)
{
	for (uint32_t p = 0; p < s->nparams; p++)
		if (!strcmp(s->params[p].name, name))
			return (int)p;
	return -1;
}

/* The components of a destination tensor, from the inference engine's names. */
static int components(const struct xfer_ws_schedule *s, const char *name, int *comp)
{
	static const struct { const char *fused, *parts[3]; } rules[] = {
		{ "qkv_proj.weight", { "q_proj.weight", "k_proj.weight", "v_proj.weight" } },
		{ "qkv_proj.bias", { "q_proj.bias", "k_proj.bias", "v_proj.bias" } },
		{ "fused_qkv_a_proj_with_mqa.weight", { "q_a_proj.weight", "kv_a_proj_with_mqa.weight", NULL } },
		{ "gate_up_proj.weight", { "gate_proj.weight", "up_proj.weight", NULL } },
		{ "w13_weight", { "gate_proj.weight", "up_proj.weight", NULL } },
		{ "w2_weight", { "down_proj.weight", NULL, NULL } },
	};
	char buf[256];
	size_t n = strlen(name);

	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		size_t fl = strlen(rules[i].fused);
		int k = 0;

		if (n < fl || strcmp(name + n - fl, rules[i].fused))
			continue;
		for (; k < 3 && rules[i].parts[k]; k++) {
			snprintf(buf, sizeof(buf), "%.*s%s", (int)(n - fl), name, rules[i].parts[k]);
			comp[k] = find_param(s, buf);
		}
		return k;
	}
	comp[0] = find_param(s, name);
	return 1;
}

static int row_parallel(const char *name)
{
	return ws_rule_has(name, "o_proj") || ws_rule_has(name, "down_proj") || ws_rule_has(name, "w2_weight");
}

/* Compare rank r's tensors with their expected content; returns mismatches. */
static int verify(struct run *x, char *why, size_t len)
{
	const struct xfer_ws_schedule *s = x->s;
	uint32_t tp = s->infer.tp, ep = s->infer.ep;
	uint32_t per_ep = s->nexperts ? (s->nexperts + ep - 1) / ep : 1;
	int bad = 0;

	for (uint64_t i = 0; i < s->ntensors; i++) {
		const struct xfer_ws_tensor *tt = &s->tensors[i];
		const char *name = s->strtab + tt->name;
		uint32_t t = tt->rank % tp, e = (tt->rank / tp) % ep;
		int comp[3], nc = components(s, name, comp);
		uint64_t drow = 0, srow = 0, scols = 0;

		for (int k = 0; k < nc; k++) {
			const struct xfer_ws_param *pa;
			uint64_t r0, r1, c0, c1, rows, cols, e8;
			uint8_t *want, *wq;
			float *ws;

			if (comp[k] < 0) {
				snprintf(why, len, "%s: unknown component", name);
				return bad + 1;
			}
			pa = &s->params[comp[k]];
			if (pa->expert >= 0 && (uint32_t)pa->expert / per_ep != e) {
				snprintf(why, len, "%s on rank %u: expert of another EP rank", name, tt->rank);
				return bad + 1;
			}
			r0 = 0, r1 = pa->rows, c0 = 0, c1 = pa->cols;
			if (!ws_rule_replicated(pa)) {
				if (row_parallel(name))
					c0 = pa->cols * t / tp, c1 = pa->cols * (t + 1) / tp;
				else
					r0 = pa->rows * t / tp, r1 = pa->rows * (t + 1) / tp;
			}
			rows = r1 - r0, cols = c1 - c0;
			if (!rows)
				continue;
			want = malloc(rows * cols * esz(pa->dtype));
			fill(pa, (uint32_t)comp[k], r0, rows, c0, cols, want);
			if (ws_rule_quantised(pa, s->infer.dtype)) {
				e8 = (rows + 127) / 128 * ((cols + 127) / 128);
				scols = (cols + 127) / 128;
				wq = malloc(rows * cols);
				ws = malloc(e8 * 4);
				xfer_ws_quant_fp8((const uint16_t *)want, rows, cols, cols, wq, cols, ws);
				if (tt->dtype != XFER_WS_DT_FP8E4M3 ||
				    memcmp(x->ibuf[tt->rank] + tt->offset + drow * cols, wq, rows * cols) ||
				    memcmp(x->ibuf[tt->rank] + tt->scale_offset + srow * scols * 4, ws, e8 * 4)) {
					snprintf(why, len, "%s on rank %u: fp8 component %d differs", name, tt->rank, k);
					bad++;
				}
				free(wq);
				free(ws);
				srow += (rows + 127) / 128;
			} else if (tt->dtype != pa->dtype ||
				   memcmp(x->ibuf[tt->rank] + tt->offset + drow * cols * esz(pa->dtype), want,
					  rows * cols * esz(pa->dtype))) {
				snprintf(why, len, "%s on rank %u: component %d differs", name, tt->rank, k);
				bad++;
			}
			drow += rows;
			free(want);
		}
	}
	return bad;
}

struct ecase {
	const char *what, *trainer, *infer;
	uint32_t dtype;
	uint64_t min_chunk, max_chunk;
};

static const struct ecase cases[] = {
	{ "Qwen2-style dense, tied", "fsdp=3", "dp=2", XFER_WS_DT_BF16, 0, 0 },
	{ "Qwen2-style dense, tied", "fsdp=4", "tp=2", XFER_WS_DT_FP8E4M3, 2048, 8192 },
	{ "Qwen2-style dense, tied", "fsdp=3,pp=2,dp=2", "tp=5,dp=2", XFER_WS_DT_FP8E4M3, 4096, 32768 },
	{ "MLA MoE", "fsdp=3,ep=3,pp=2", "ep=4,tp=2,dp=2", XFER_WS_DT_FP8E4M3, 4096, 16384 },
	{ "MLA MoE", "fsdp=2,ep=5", "ep=5", XFER_WS_DT_FP8E4M3, 0, 0 },
	{ "MLA MoE", "fsdp=7", "tp=3,ep=2", XFER_WS_DT_BF16, 1024, 4096 },
	{ "Qwen3 MoE", "fsdp=4,ep=2,dp=2", "tp=4,ep=3", XFER_WS_DT_FP8E4M3, 0, 0 },
	{ "Qwen3 MoE", "fsdp=5,ep=3", "tp=2,ep=6,dp=2", XFER_WS_DT_FP8E4M3, 8192, 65536 },
};

/* Case idx planned, its buffers filled and the schedule executed. */
FIXTURE(exec) {
	xfer_ws_model *m;
	struct xfer_ws_schedule *s;
	struct run x;
};

FIXTURE_VARIANT(exec) {
	int idx;   /* into cases[] */
};

FIXTURE_VARIANT_ADD(exec, qwen2_fsdp3_dp2_bf16) { .idx = 0 };
FIXTURE_VARIANT_ADD(exec, qwen2_fsdp4_tp2_fp8_chunks) { .idx = 1 };
FIXTURE_VARIANT_ADD(exec, qwen2_fsdp3_pp2_dp2_tp5_dp2_fp8_chunks) { .idx = 2 };
FIXTURE_VARIANT_ADD(exec, mla_fsdp3_ep3_pp2_ep4_tp2_dp2_fp8_chunks) { .idx = 3 };
FIXTURE_VARIANT_ADD(exec, mla_fsdp2_ep5_ep5_fp8) { .idx = 4 };
FIXTURE_VARIANT_ADD(exec, mla_fsdp7_tp3_ep2_bf16_chunks) { .idx = 5 };
FIXTURE_VARIANT_ADD(exec, qwen3moe_fsdp4_ep2_dp2_tp4_ep3_fp8) { .idx = 6 };
FIXTURE_VARIANT_ADD(exec, qwen3moe_fsdp5_ep3_tp2_ep6_dp2_fp8_chunks) { .idx = 7 };

/* Plan case idx, fill the buffers and run the schedule. */
static void prepare(struct __test_metadata *_metadata, FIXTURE_DATA(exec) *self, int idx)
{
	const struct ecase *c = &cases[idx];
	const char *json = idx < 3 ? tiny_qwen2 : idx < 6 ? tiny_mla : tiny_qwen3moe;
	struct xfer_ws_trainer_layout t;
	struct xfer_ws_infer_layout l = { .dtype = c->dtype };
	struct xfer_ws_plan_attr a = { sizeof(a), 0, c->min_chunk, c->max_chunk, 0, 0 };

	ASSERT_FALSE(xfer_ws_model_parse(json, 0, &self->m) || xfer_ws_trainer_parse(c->trainer, &t) ||
		     xfer_ws_infer_parse(c->infer, &l) || xfer_ws_plan(self->m, &t, &l, &a, &self->s))
		TH_LOG("%s %s -> %s: plan", c->what, c->trainer, c->infer);
	self->x.s = self->s;
	setup(&self->x);
	execute(&self->x);
}

static void release(FIXTURE_DATA(exec) *self)
{
	if (self->x.s)
		teardown(&self->x);
	xfer_ws_schedule_free(self->s);
	xfer_ws_model_free(self->m);
}

FIXTURE_SETUP(exec)
{
	prepare(_metadata, self, variant->idx);
}

FIXTURE_TEARDOWN(exec)
{
	release(self);
}

TEST_F_TIMEOUT(exec, every_tensor_bit_exact, EXEC_TIMEOUT_S)
{
	const struct ecase *c = &cases[variant->idx];
	char why[256] = "ok";
	int bad = verify(&self->x, why, sizeof(why));

	EXPECT_TRUE(bad == 0) TH_LOG("%s %s -> %s (%s, %lu gathers): every tensor bit-exact (%s)", c->what, c->trainer,
				     c->infer, xfer_ws_dtype_name(c->dtype), (unsigned long)self->s->ngathers, why);
}

/* The check itself must see a single wrong byte (on case 3). */
XT_TEST_TIMEOUT(one_flipped_byte_is_found, EXEC_TIMEOUT_S)
{
	FIXTURE_DATA(exec) d = { 0 };
	char why[256] = "ok";

	prepare(_metadata, &d, 3);

	const struct xfer_ws_tensor *tt = &d.s->tensors[d.s->ntensors / 2];

	d.x.ibuf[tt->rank][tt->offset + tt->bytes / 2] ^= 0x10;
	EXPECT_TRUE(verify(&d.x, why, sizeof(why)) == 1) TH_LOG("one flipped byte is found (%s)", why);
	release(&d);
}

TEST_HARNESS_MAIN
