/* SPDX-License-Identifier: MIT */
#ifndef XFER_TEST_WS_MODELS_H
#define XFER_TEST_WS_MODELS_H

extern const char *const tiny_mla;       /* DeepSeek-V3 family: MLA, shared + routed experts */
extern const char *const tiny_qwen3moe;  /* Qwen3-MoE: GQA, mlp_only_layers */
extern const char *const tiny_qwen2;     /* dense Qwen2, tied embeddings */

#endif
