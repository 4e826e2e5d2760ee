// SPDX-License-Identifier: MIT
/*
 * config.json -> parameter list, and the fused tensors the inference engine
 * stores them in. Families: DeepSeek-V3 (MLA, shared + routed experts, dense
 * first layers; also Kimi-K2), Qwen3-MoE, dense Llama / Qwen2 / Qwen3.
 * Names follow the Hugging Face checkpoints.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "ws_internal.h"

struct cfg {
	const char *type;
	uint64_t H, V, I, moeI, L;
	uint64_t nh, nkv, hd;
	uint64_t q_lora, kv_lora, nope, rope, vdim;
	uint64_t E, nshared, first_dense, moe_freq, sparse_step, mtp;
	int tie, qkv_bias, qk_norm, noaux;
	struct json_object *mlp_only;
};

static int64_t jint(struct json_object *o, const char *key, int64_t def)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return def;
	return json_object_get_int64(v);
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int param(struct xfer_ws_model *m, uint32_t *idx, uint64_t rows, uint64_t cols,
		 uint32_t dtype, int32_t layer, int32_t expert, const char *fmt, ...)
	__attribute__((format(printf, 8, 9)));

static int param(struct xfer_ws_model *m, uint32_t *idx, uint64_t rows, uint64_t cols,
		 uint32_t dtype, int32_t layer, int32_t expert, const char *fmt, ...)
{
	struct xfer_ws_param *p;
	va_list ap;

	if (m->nparams == m->pcap) {
		size_t cap = m->pcap ? m->pcap * 2 : 1024;
		void *n = realloc(m->params, cap * sizeof(*m->params));

		if (!n)
			return -ENOMEM;
		m->params = n;
		m->pcap = cap;
	}
	p = &m->params[m->nparams];
	memset(p, 0, sizeof(*p));
	va_start(ap, fmt);
	vsnprintf(p->name, sizeof(p->name), fmt, ap);
	va_end(ap);
	p->rows = rows;
	p->cols = cols ? cols : 1;
	p->ndim = cols ? 2 : 1;
	p->dtype = dtype;
	p->layer = layer;
	p->expert = expert;
	*idx = (uint32_t)m->nparams++;
	return 0;
}

static int group(struct xfer_ws_model *m, uint32_t role, uint32_t quant, uint32_t ncomp,
		 const uint32_t *comp, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int group(struct xfer_ws_model *m, uint32_t role, uint32_t quant, uint32_t ncomp,
		 const uint32_t *comp, const char *fmt, ...)
{
	struct ws_group *g;
	va_list ap;

	if (m->ngroups == m->gcap) {
		size_t cap = m->gcap ? m->gcap * 2 : 1024;
		void *n = realloc(m->groups, cap * sizeof(*m->groups));

		if (!n)
			return -ENOMEM;
		m->groups = n;
		m->gcap = cap;
	}
	g = &m->groups[m->ngroups++];
	memset(g, 0, sizeof(*g));
	va_start(ap, fmt);
	vsnprintf(g->name, sizeof(g->name), fmt, ap);
	va_end(ap);
	g->role = role;
	g->quant = quant && m->params[comp[0]].ndim == 2;
	g->ncomp = ncomp;
	memcpy(g->comp, comp, ncomp * sizeof(*comp));
	g->layer = m->params[comp[0]].layer;
	g->expert = m->params[comp[0]].expert;
	return 0;
}

/* A parameter that is also its own destination tensor. */
#define SOLO(role, quant, rows, cols, dt, layer, expert, ...) do { \
	uint32_t i_; \
	if ((rc = param(m, &i_, rows, cols, dt, layer, expert, __VA_ARGS__)) || \
	    (rc = group(m, role, quant, 1, &i_, "%s", m->params[i_].name))) \
		return rc; \
} while (0)

#define BF XFER_WS_DT_BF16

static int mlp(struct xfer_ws_model *m, int l, int e, uint64_t H, uint64_t I, const char *pre,
	       const char *fused_gu, const char *fused_down)
{
	uint32_t c[2], d;
	int rc;

	if ((rc = param(m, &c[0], I, H, BF, l, e, "%sgate_proj.weight", pre)) ||
	    (rc = param(m, &c[1], I, H, BF, l, e, "%sup_proj.weight", pre)) ||
	    (rc = param(m, &d, H, I, BF, l, e, "%sdown_proj.weight", pre)))
		return rc;
	if ((rc = group(m, WS_COL, 1, 2, c, "%s", fused_gu)) ||
	    (rc = group(m, WS_ROW, 1, 1, &d, "%s", fused_down)))
		return rc;
	return 0;
}

static int is_moe_layer(const struct cfg *c, uint64_t l)
{
	if (!c->E)
		return 0;
	if (c->mlp_only) {
		for (size_t i = 0; i < json_object_array_length(c->mlp_only); i++)
			if ((uint64_t)json_object_get_int64(json_object_array_get_idx(c->mlp_only, i)) == l)
				return 0;
	}
	if (c->q_lora || c->kv_lora) /* DeepSeek family */
		return l >= c->first_dense && (l % c->moe_freq) == 0;
	return ((l + 1) % c->sparse_step) == 0;
}

static int ffn(struct xfer_ws_model *m, const struct cfg *c, int l)
{
	char pre[64], a[XFER_WS_NAME_MAX], b[XFER_WS_NAME_MAX];
	int rc;

	if (!is_moe_layer(c, (uint64_t)l)) {
		snprintf(pre, sizeof(pre), "model.layers.%d.mlp.", l);
		snprintf(a, sizeof(a), "%sgate_up_proj.weight", pre);
		snprintf(b, sizeof(b), "%sdown_proj.weight", pre);
		return mlp(m, l, -1, c->H, c->I, pre, a, b);
	}
	SOLO(WS_REPL, 0, c->E, c->H, BF, l, -1, "model.layers.%d.mlp.gate.weight", l);
	if (c->noaux)
		SOLO(WS_REPL, 0, c->E, 0, XFER_WS_DT_F32, l, -1,
		     "model.layers.%d.mlp.gate.e_score_correction_bias", l);
	for (uint64_t e = 0; e < c->E; e++) {
		snprintf(pre, sizeof(pre), "model.layers.%d.mlp.experts.%d.", l, (int)e);
		snprintf(a, sizeof(a), "%sw13_weight", pre);
		snprintf(b, sizeof(b), "%sw2_weight", pre);
		if ((rc = mlp(m, l, (int)e, c->H, c->moeI, pre, a, b)))
			return rc;
	}
	if (c->nshared) {
		snprintf(pre, sizeof(pre), "model.layers.%d.mlp.shared_experts.", l);
		snprintf(a, sizeof(a), "%sgate_up_proj.weight", pre);
		snprintf(b, sizeof(b), "%sdown_proj.weight", pre);
		if ((rc = mlp(m, l, -1, c->H, c->moeI * c->nshared, pre, a, b)))
			return rc;
	}
	return 0;
}

static int attn_mla(struct xfer_ws_model *m, const struct cfg *c, int l)
{
	uint64_t qk = c->nope + c->rope;
	uint32_t qa[2], qb;
	int rc;

	if (c->q_lora) {
		if ((rc = param(m, &qa[0], c->q_lora, c->H, BF, l, -1,
				"model.layers.%d.self_attn.q_a_proj.weight", l)))
			return rc;
		SOLO(WS_REPL, 0, c->q_lora, 0, BF, l, -1,
		     "model.layers.%d.self_attn.q_a_layernorm.weight", l);
		if ((rc = param(m, &qb, c->nh * qk, c->q_lora, BF, l, -1,
				"model.layers.%d.self_attn.q_b_proj.weight", l)))
			return rc;
	} else {
		if ((rc = param(m, &qb, c->nh * qk, c->H, BF, l, -1,
				"model.layers.%d.self_attn.q_proj.weight", l)))
			return rc;
	}
	if ((rc = param(m, &qa[c->q_lora ? 1 : 0], c->kv_lora + c->rope, c->H, BF, l, -1,
			"model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l)))
		return rc;
	if ((rc = group(m, WS_REPL, 1, c->q_lora ? 2 : 1, qa,
			"model.layers.%d.self_attn.%s.weight", l,
			c->q_lora ? "fused_qkv_a_proj_with_mqa" : "kv_a_proj_with_mqa")))
		return rc;
	if ((rc = group(m, WS_COL, 1, 1, &qb, "%s", m->params[qb].name)))
		return rc;
	SOLO(WS_REPL, 0, c->kv_lora, 0, BF, l, -1, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
	SOLO(WS_COL, 1, c->nh * (c->nope + c->vdim), c->kv_lora, BF, l, -1,
	     "model.layers.%d.self_attn.kv_b_proj.weight", l);
	SOLO(WS_ROW, 1, c->H, c->nh * c->vdim, BF, l, -1, "model.layers.%d.self_attn.o_proj.weight", l);
	return 0;
}

static int attn_gqa(struct xfer_ws_model *m, const struct cfg *c, int l)
{
	uint32_t q[3], qb[3];
	int rc;

	if ((rc = param(m, &q[0], c->nh * c->hd, c->H, BF, l, -1, "model.layers.%d.self_attn.q_proj.weight", l)) ||
	    (rc = param(m, &q[1], c->nkv * c->hd, c->H, BF, l, -1, "model.layers.%d.self_attn.k_proj.weight", l)) ||
	    (rc = param(m, &q[2], c->nkv * c->hd, c->H, BF, l, -1, "model.layers.%d.self_attn.v_proj.weight", l)) ||
	    (rc = group(m, WS_COL, 1, 3, q, "model.layers.%d.self_attn.qkv_proj.weight", l)))
		return rc;
	if (c->qkv_bias) {
		if ((rc = param(m, &qb[0], c->nh * c->hd, 0, BF, l, -1, "model.layers.%d.self_attn.q_proj.bias", l)) ||
		    (rc = param(m, &qb[1], c->nkv * c->hd, 0, BF, l, -1, "model.layers.%d.self_attn.k_proj.bias", l)) ||
		    (rc = param(m, &qb[2], c->nkv * c->hd, 0, BF, l, -1, "model.layers.%d.self_attn.v_proj.bias", l)) ||
		    (rc = group(m, WS_COL, 0, 3, qb, "model.layers.%d.self_attn.qkv_proj.bias", l)))
			return rc;
	}
	SOLO(WS_ROW, 1, c->H, c->nh * c->hd, BF, l, -1, "model.layers.%d.self_attn.o_proj.weight", l);
	if (c->qk_norm) {
		SOLO(WS_REPL, 0, c->hd, 0, BF, l, -1, "model.layers.%d.self_attn.q_norm.weight", l);
		SOLO(WS_REPL, 0, c->hd, 0, BF, l, -1, "model.layers.%d.self_attn.k_norm.weight", l);
	}
	return 0;
}

static int layer(struct xfer_ws_model *m, const struct cfg *c, int l)
{
	int mla = c->kv_lora != 0, rc;

	SOLO(WS_REPL, 0, c->H, 0, BF, l, -1, "model.layers.%d.input_layernorm.weight", l);
	if ((rc = mla ? attn_mla(m, c, l) : attn_gqa(m, c, l)))
		return rc;
	SOLO(WS_REPL, 0, c->H, 0, BF, l, -1, "model.layers.%d.post_attention_layernorm.weight", l);
	return ffn(m, c, l);
}

static int build(struct xfer_ws_model *m, const struct cfg *c, uint32_t flags)
{
	int L = (int)c->L, rc;

	SOLO(WS_VOCAB, 0, c->V, c->H, BF, -1, -1, "model.embed_tokens.weight");
	for (int l = 0; l < L; l++)
		if ((rc = layer(m, c, l)))
			return rc;
	SOLO(WS_REPL, 0, c->H, 0, BF, L, -1, "model.norm.weight");
	if (!c->tie)
		SOLO(WS_VOCAB, 0, c->V, c->H, BF, L, -1, "lm_head.weight");
	if (!(flags & XFER_WS_MODEL_MTP))
		return 0;
	/* DeepSeek multi-token prediction: a full decoder layer after the last,
	 * with its own embedding copy and head as the HF checkpoint stores them. */
	for (int l = L; l < L + (int)c->mtp; l++) {
		SOLO(WS_VOCAB, 0, c->V, c->H, BF, l, -1, "model.layers.%d.embed_tokens.weight", l);
		SOLO(WS_REPL, 0, c->H, 0, BF, l, -1, "model.layers.%d.enorm.weight", l);
		SOLO(WS_REPL, 0, c->H, 0, BF, l, -1, "model.layers.%d.hnorm.weight", l);
		SOLO(WS_REPL, 0, c->H, 2 * c->H, BF, l, -1, "model.layers.%d.eh_proj.weight", l);
		if ((rc = layer(m, c, l)))
			return rc;
		SOLO(WS_REPL, 0, c->H, 0, BF, l, -1, "model.layers.%d.shared_head.norm.weight", l);
		SOLO(WS_VOCAB, 0, c->V, c->H, BF, l, -1, "model.layers.%d.shared_head.head.weight", l);
	}
	return 0;
}

static int read_cfg(struct json_object *o, struct cfg *c)
{
	const char *t = jstr(o, "model_type");

	memset(c, 0, sizeof(*c));
	c->type = t ? t : "llama";
	c->H = (uint64_t)jint(o, "hidden_size", 0);
	c->V = (uint64_t)jint(o, "vocab_size", 0);
	c->I = (uint64_t)jint(o, "intermediate_size", 0);
	c->L = (uint64_t)jint(o, "num_hidden_layers", 0);
	c->nh = (uint64_t)jint(o, "num_attention_heads", 0);
	c->nkv = (uint64_t)jint(o, "num_key_value_heads", (int64_t)c->nh);
	c->hd = (uint64_t)jint(o, "head_dim", c->nh ? (int64_t)(c->H / c->nh) : 0);
	c->q_lora = (uint64_t)jint(o, "q_lora_rank", 0);
	c->kv_lora = (uint64_t)jint(o, "kv_lora_rank", 0);
	c->nope = (uint64_t)jint(o, "qk_nope_head_dim", 0);
	c->rope = (uint64_t)jint(o, "qk_rope_head_dim", 0);
	c->vdim = (uint64_t)jint(o, "v_head_dim", 0);
	c->E = (uint64_t)jint(o, "n_routed_experts", jint(o, "num_experts", 0));
	c->moeI = (uint64_t)jint(o, "moe_intermediate_size", 0);
	c->nshared = (uint64_t)jint(o, "n_shared_experts", 0);
	c->first_dense = (uint64_t)jint(o, "first_k_dense_replace", 0);
	c->moe_freq = (uint64_t)jint(o, "moe_layer_freq", 1);
	c->sparse_step = (uint64_t)jint(o, "decoder_sparse_step", 1);
	c->mtp = (uint64_t)jint(o, "num_nextn_predict_layers", 0);
	c->tie = jint(o, "tie_word_embeddings", 0) != 0;
	{
		struct json_object *v;

		if (json_object_object_get_ex(o, "tie_word_embeddings", &v))
			c->tie = json_object_get_boolean(v);
		if (json_object_object_get_ex(o, "attention_bias", &v))
			c->qkv_bias = json_object_get_boolean(v);
		else
			c->qkv_bias = !strcmp(c->type, "qwen2") || !strcmp(c->type, "qwen2_moe");
		if (json_object_object_get_ex(o, "mlp_only_layers", &v) &&
		    json_object_is_type(v, json_type_array))
			c->mlp_only = v;
	}
	c->qk_norm = !strncmp(c->type, "qwen3", 5);
	t = jstr(o, "topk_method");
	c->noaux = t && !strcmp(t, "noaux_tc");
	/* name the first key at fault: a config is edited by hand */
	const struct { const char *key; const uint64_t *val; } need[] = {
		{ "hidden_size", &c->H },
		{ "vocab_size", &c->V },
		{ "num_hidden_layers", &c->L },
		{ "num_attention_heads", &c->nh },
		{ "moe_layer_freq", &c->moe_freq },
		{ "decoder_sparse_step", &c->sparse_step },
	};
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!*need[i].val) {
			ws_last_error("\"%s\": missing or not a positive integer", need[i].key);
			return -EINVAL;
		}
	if (c->kv_lora && (!c->rope || !c->nope || !c->vdim)) {
		ws_last_error("\"kv_lora_rank\" (MLA) needs positive \"qk_rope_head_dim\", "
			      "\"qk_nope_head_dim\" and \"v_head_dim\"");
		return -EINVAL;
	}
	if (!c->kv_lora && !c->hd) {
		ws_last_error("\"head_dim\": missing, and hidden_size / num_attention_heads is 0");
		return -EINVAL;
	}
	if (c->E && !c->moeI) {
		ws_last_error("\"moe_intermediate_size\": missing, needed with routed experts");
		return -EINVAL;
	}
	if (c->L > 100000 || c->E > 100000 || c->nh > 1000000) {
		ws_last_error("\"%s\": more than this planner takes",
			      c->L > 100000 ? "num_hidden_layers" : c->E > 100000 ? "n_routed_experts"
										     : "num_attention_heads");
		return -EINVAL;
	}
	return 0;
}

XFER_EXPORT int xfer_ws_model_parse(const char *text, uint32_t flags, xfer_ws_model **out)
{
	struct json_object *o;
	struct xfer_ws_model *m;
	struct cfg c;
	int rc;

	ws_last_error(NULL);
	if (!text || !out || (flags & ~XFER_WS_MODEL_MTP))
		return -EINVAL;
	o = json_tokener_parse(text);
	if (!o || !json_object_is_type(o, json_type_object)) {
		ws_last_error(o ? "not a JSON object" : "not valid JSON");
		json_object_put(o);
		return -EINVAL;
	}
	rc = read_cfg(o, &c);
	m = calloc(1, sizeof(*m));
	if (!rc && !m)
		rc = -ENOMEM;
	if (!rc) {
		snprintf(m->type, sizeof(m->type), "%s", c.type);
		m->nlayers = (uint32_t)c.L;
		m->nexperts = (uint32_t)c.E;
		m->nheads = (uint32_t)c.nh;
		rc = build(m, &c, flags);
	}
	json_object_put(o);
	if (rc) {
		xfer_ws_model_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

XFER_EXPORT int xfer_ws_model_load(const char *path, uint32_t flags, xfer_ws_model **out)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;
	int rc;

	ws_last_error(NULL);
	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > (16 << 20) || fseek(f, 0, SEEK_SET)) {
		ws_last_error("not a readable file of at most 16 MiB");
		fclose(f);
		return -EINVAL;
	}
	buf = malloc((size_t)n + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	buf[n] = 0;
	rc = xfer_ws_model_parse(buf, flags, out);
	free(buf);
	return rc;
}

XFER_EXPORT void xfer_ws_model_free(xfer_ws_model *m)
{
	if (!m)
		return;
	free(m->params);
	free(m->groups);
	free(m);
}

XFER_EXPORT const struct xfer_ws_param *xfer_ws_model_params(const xfer_ws_model *m, size_t *count)
{
	*count = m->nparams;
	return m->params;
}

XFER_EXPORT uint64_t xfer_ws_model_numel(const xfer_ws_model *m)
{
	uint64_t n = 0;

	for (size_t i = 0; i < m->nparams; i++)
		n += m->params[i].rows * m->params[i].cols;
	return n;
}

XFER_EXPORT const char *xfer_ws_model_type(const xfer_ws_model *m)
{
	return m->type;
}

XFER_EXPORT unsigned xfer_ws_dtype_size(uint32_t dtype)
{
	switch (dtype) {
	case XFER_WS_DT_BF16: return 2;
	case XFER_WS_DT_F32: return 4;
	case XFER_WS_DT_FP8E4M3: return 1;
	default: return 0;
	}
}

XFER_EXPORT const char *xfer_ws_dtype_name(uint32_t dtype)
{
	switch (dtype) {
	case XFER_WS_DT_BF16: return "bf16";
	case XFER_WS_DT_F32: return "f32";
	case XFER_WS_DT_FP8E4M3: return "fp8_e4m3";
	default: return "?";
	}
}

/* Per thread: two threads planning at once each see their own reason. */
static __thread char last_error[256];

void ws_last_error(const char *fmt, ...)
{
	va_list ap;

	last_error[0] = 0;
	if (!fmt)
		return;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

XFER_EXPORT const char *xfer_ws_last_error(void)
{
	return last_error;
}

void ws_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}
