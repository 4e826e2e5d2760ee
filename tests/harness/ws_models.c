/* SPDX-License-Identifier: MIT */
/* Small config.json texts the weight-sync tests plan and run on: one of each
 * family the model parser knows, small enough for exhaustive checks. */
#include <string.h>

#include "ws_models.h"

const char *const tiny_mla =
	"{\"model_type\":\"deepseek_v3\",\"hidden_size\":200,\"vocab_size\":1000,"
	"\"intermediate_size\":384,\"moe_intermediate_size\":136,\"num_hidden_layers\":5,"
	"\"num_attention_heads\":3,\"q_lora_rank\":96,\"kv_lora_rank\":64,\"qk_nope_head_dim\":32,"
	"\"qk_rope_head_dim\":16,\"v_head_dim\":32,\"n_routed_experts\":10,\"n_shared_experts\":1,"
	"\"first_k_dense_replace\":1,\"topk_method\":\"noaux_tc\",\"tie_word_embeddings\":false}";
const char *const tiny_qwen3moe =
	"{\"model_type\":\"qwen3_moe\",\"hidden_size\":256,\"vocab_size\":3000,\"intermediate_size\":512,"
	"\"moe_intermediate_size\":192,\"num_hidden_layers\":4,\"num_attention_heads\":8,"
	"\"num_key_value_heads\":2,\"head_dim\":64,\"num_experts\":12,\"decoder_sparse_step\":1,"
	"\"mlp_only_layers\":[0],\"tie_word_embeddings\":false}";
const char *const tiny_qwen2 =
	"{\"model_type\":\"qwen2\",\"hidden_size\":320,\"vocab_size\":2000,\"intermediate_size\":640,"
	"\"num_hidden_layers\":3,\"num_attention_heads\":5,\"num_key_value_heads\":1,"
	"\"tie_word_embeddings\":true}";

int ws_rule_has(const char *s, const char *sub)
{
	return strstr(s, sub) != NULL;
}

int ws_rule_replicated(const struct xfer_ws_param *p)
{
	return (p->ndim == 1 && !ws_rule_has(p->name, "bias")) ||
	       ws_rule_has(p->name, "e_score_correction_bias") ||
	       ws_rule_has(p->name, "mlp.gate.weight") || ws_rule_has(p->name, "q_a_proj") ||
	       ws_rule_has(p->name, "kv_a_proj_with_mqa") || ws_rule_has(p->name, "eh_proj");
}

int ws_rule_quantised(const struct xfer_ws_param *p, uint32_t dtype)
{
	return dtype == XFER_WS_DT_FP8E4M3 && p->ndim == 2 && !ws_rule_has(p->name, "embed") &&
	       !ws_rule_has(p->name, "lm_head") && !ws_rule_has(p->name, "mlp.gate.weight") &&
	       !ws_rule_has(p->name, "eh_proj") && !ws_rule_has(p->name, "head.weight");
}
