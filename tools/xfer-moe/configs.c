/* SPDX-License-Identifier: MIT */
/* The named configurations: the anchors' benchmark shapes (issue 13). */
#include <stdio.h>
#include <string.h>

#include "moe.h"

const struct moe_config moe_configs[] = {
	{ "v3-decode", "DeepSeek-V3 decode: DeepEP's and pplx's low-latency benchmark",
	  128, 7168, 256, 8, XFER_MOE_FP8, 0 },
	{ "v3-prefill", "DeepSeek-V3 prefill: count exchange, packed regions",
	  4096, 7168, 256, 8, XFER_MOE_FP8, XFER_MOE_F_PREFILL },
	{ "kimi-k2-decode", "Kimi-K2 decode: DeepSeek-V3's shape with 384 experts",
	  128, 7168, 384, 8, XFER_MOE_FP8, 0 },
	{ "v2-lite", "DeepSeek-V2-Lite decode", 128, 2048, 64, 6, XFER_MOE_FP8, 0 },
};
const unsigned moe_nconfigs = sizeof(moe_configs) / sizeof(moe_configs[0]);

const struct moe_config *moe_config_find(const char *name)
{
	for (unsigned i = 0; i < moe_nconfigs; i++)
		if (!strcmp(name, moe_configs[i].name))
			return &moe_configs[i];
	return NULL;
}

const char *moe_config_names(void)
{
	static char buf[256];
	size_t n = 0;

	if (buf[0])
		return buf;
	for (unsigned i = 0; i < moe_nconfigs && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? ", " : "",
				      moe_configs[i].name);
	return buf;
}

void moe_attr_fill(const struct moe_run_opts *o, uint32_t rank, struct xfer_moe_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->flags = o->cfg->flags;
	a->world_size = o->ep;
	a->rank = rank;
	a->num_experts = o->cfg->experts;
	a->top_k = o->cfg->topk;
	a->hidden = o->cfg->hidden;
	a->max_tokens = o->cfg->tokens;
	a->dispatch_dtype = o->cfg->dispatch_dtype;
	a->combine_dtype = XFER_MOE_BF16;
	a->timeout_ms = o->timeout_ms;
}
