/* SPDX-License-Identifier: MIT */
#ifndef XFER_TEST_WS_MODELS_H
#define XFER_TEST_WS_MODELS_H

#include <stdint.h>

#include "xfer_weightsync.h"

extern const char *const tiny_mla;       /* DeepSeek-V3 family: MLA, shared + routed experts */
extern const char *const tiny_qwen3moe;  /* Qwen3-MoE: GQA, mlp_only_layers */
extern const char *const tiny_qwen2;     /* dense Qwen2, tied embeddings */

/* The inference layout's rules as the tests state them, from the engines'
 * tensor names and not from the planner's tables: the tests' oracle. */
int ws_rule_has(const char *s, const char *sub);
int ws_rule_replicated(const struct xfer_ws_param *p);             /* whole on every TP rank */
int ws_rule_quantised(const struct xfer_ws_param *p, uint32_t dtype); /* fp8 in the engine */

#endif
