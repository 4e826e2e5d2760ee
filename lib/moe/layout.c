// SPDX-License-Identifier: MIT
/*
 * The attributes of an MoE context and the buffer layout they give: what a
 * GPU kernel needs to write the same bytes as the C reference (ref.c), and
 * what the context (ctx.c) sizes its regions by. Every check names the
 * field and its value, so that a rank refusing its attributes says why.
 */
#include <errno.h>

#include "moe_internal.h"
#include "struct_copy.h"

int moe_attr_read(const struct xfer_moe_attr *ua, struct xfer_moe_attr *out)
{
	struct xfer_moe_attr a = { .size = sizeof(a) };
	int ret;

	if (!ua || !out) {
		moe_error("attr: %s is NULL", ua ? "out" : "attr");
		return -EINVAL;
	}
	ret = xfer_struct_copy_in(&a, sizeof(a), ua, XFER_MOE_ATTR_SIZE_VER0);
	if (ret) {
		uint32_t usize = xfer_struct_size(ua);

		if (ret == -E2BIG && usize <= XFER_STRUCT_SIZE_MAX)
			moe_error("attr.size %u: fields past this library's %zu bytes are set "
				  "(a newer header's options this library cannot honour)",
				  usize, sizeof(a));
		else
			moe_error("attr.size %u: not sizeof(struct xfer_moe_attr) (%u .. %u)", usize,
				  XFER_MOE_ATTR_SIZE_VER0, XFER_STRUCT_SIZE_MAX);
		return ret;
	}
	if (a.flags & ~XFER_MOE_F_PREFILL) {
		moe_error("attr.flags 0x%x: unknown bits 0x%x", a.flags, a.flags & ~XFER_MOE_F_PREFILL);
		return -EINVAL;
	}
	if (a.world_size == 0 || a.world_size > XFER_MOE_MAX_RANKS) {
		moe_error("attr.world_size %u: not in 1 .. %u", a.world_size, XFER_MOE_MAX_RANKS);
		return -EINVAL;
	}
	if (a.rank >= a.world_size) {
		moe_error("attr.rank %u: not below world_size %u", a.rank, a.world_size);
		return -EINVAL;
	}
	if (a.num_experts == 0 || a.num_experts > XFER_MOE_MAX_EXPERTS) {
		moe_error("attr.num_experts %u: not in 1 .. %u", a.num_experts, XFER_MOE_MAX_EXPERTS);
		return -EINVAL;
	}
	if (a.num_experts % a.world_size) {
		moe_error("attr.num_experts %u: not a multiple of world_size %u", a.num_experts,
			  a.world_size);
		return -EINVAL;
	}
	if (a.top_k == 0 || a.top_k > XFER_MOE_MAX_TOPK) {
		moe_error("attr.top_k %u: not in 1 .. %u", a.top_k, XFER_MOE_MAX_TOPK);
		return -EINVAL;
	}
	if (a.top_k > a.num_experts) {
		moe_error("attr.top_k %u: more than num_experts %u", a.top_k, a.num_experts);
		return -EINVAL;
	}
	if (a.dispatch_dtype != XFER_MOE_BF16 && a.dispatch_dtype != XFER_MOE_FP8) {
		moe_error("attr.dispatch_dtype %u: not XFER_MOE_BF16 (%u) or XFER_MOE_FP8 (%u)",
			  a.dispatch_dtype, XFER_MOE_BF16, XFER_MOE_FP8);
		return -EINVAL;
	}
	if (a.hidden == 0 || a.hidden > XFER_MOE_MAX_HIDDEN) {
		moe_error("attr.hidden %u: not in 1 .. %u", a.hidden, XFER_MOE_MAX_HIDDEN);
		return -EINVAL;
	}
	/* fp8: one scale per 128 values, so a token is whole blocks; bf16: rows
	 * of 16 bytes keep every record and row 16-byte aligned */
	if (a.dispatch_dtype == XFER_MOE_FP8 && a.hidden % 128) {
		moe_error("attr.hidden %u: not a multiple of 128 (fp8 dispatch has one scale per 128 values)",
			  a.hidden);
		return -EINVAL;
	}
	if (a.dispatch_dtype == XFER_MOE_BF16 && a.hidden % 8) {
		moe_error("attr.hidden %u: not a multiple of 8 (bf16 dispatch)", a.hidden);
		return -EINVAL;
	}
	if (a.max_tokens == 0 || a.max_tokens > XFER_MOE_MAX_TOKENS) {
		moe_error("attr.max_tokens %u: not in 1 .. %u", a.max_tokens, XFER_MOE_MAX_TOKENS);
		return -EINVAL;
	}
	if (a.combine_dtype != XFER_MOE_BF16) {
		moe_error("attr.combine_dtype %u: only XFER_MOE_BF16 (%u) is supported", a.combine_dtype,
			  XFER_MOE_BF16);
		return -EINVAL;
	}
	if (a.timeout_ms < 0) {
		moe_error("attr.timeout_ms %d: negative (0 is the default, %d ms)", a.timeout_ms,
			  MOE_DEFAULT_TIMEOUT_MS);
		return -EINVAL;
	}
	if (a.timeout_ms == 0)
		a.timeout_ms = MOE_DEFAULT_TIMEOUT_MS;
	if (a.imm_base == 0)
		a.imm_base = MOE_DEFAULT_IMM_BASE;
	if (a.imm_base > UINT32_MAX - (MOE_IMMS - 1)) {
		moe_error("attr.imm_base 0x%x: the %u immediates from it would wrap past 0xffffffff",
			  a.imm_base, MOE_IMMS);
		return -EINVAL;
	}
	*out = a;
	return 0;
}

/* a * b, or false when it does not fit 64 bits. */
static int mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
	return !__builtin_mul_overflow(a, b, r);
}

static int add_ok(uint64_t a, uint64_t b, uint64_t *r)
{
	return !__builtin_add_overflow(a, b, r);
}

int moe_layout_from_attr(const struct xfer_moe_attr *a, struct xfer_moe_layout *out)
{
	struct xfer_moe_layout l = { 0 };
	uint64_t v, per_src, all_rows;
	uint32_t fp8 = a->dispatch_dtype == XFER_MOE_FP8;

	l.world_size = a->world_size;
	l.rank = a->rank;
	l.num_experts = a->num_experts;
	l.local_experts = a->num_experts / a->world_size;
	l.top_k = a->top_k;
	l.hidden = a->hidden;
	l.max_tokens = a->max_tokens;
	l.dispatch_dtype = a->dispatch_dtype;
	l.scales = fp8 ? a->hidden / 128 : 0;
	l.flags = a->flags;
	l.token_bytes = fp8 ? moe_round_up(a->hidden, 16) : 2ull * a->hidden;
	l.scale_bytes = fp8 ? moe_round_up(4ull * l.scales, 16) : 0;
	l.record_bytes = sizeof(struct xfer_moe_rec_hdr) + l.token_bytes + l.scale_bytes;
	l.combine_bytes = 2ull * a->hidden;
	l.block_hdr_bytes = moe_round_up(sizeof(struct xfer_moe_block_hdr) + 4ull * l.local_experts, 64);
	l.block_records = (uint64_t)a->max_tokens * (a->top_k < l.local_experts ? a->top_k : l.local_experts);
	l.expert_rows = (uint64_t)a->world_size * a->max_tokens;
	/* The attribute limits keep every product far below 2^64 (the largest
	 * block is about 2^42 bytes); checked anyway, and with the totals a
	 * context derives from these (R blocks; L * R * T rows of x and y), so
	 * that a limit raised later fails here instead of wrapping there. */
	if (!mul_ok(l.block_records, l.record_bytes, &v) || !add_ok(v, l.block_hdr_bytes + 63, &v) ||
	    !mul_ok(v / 64 * 64, a->world_size, &per_src) ||
	    !mul_ok(l.expert_rows, l.local_experts, &all_rows) ||
	    !mul_ok(all_rows, l.token_bytes > l.combine_bytes ? l.token_bytes : l.combine_bytes, &v)) {
		moe_error("attr: the buffers of world_size %u, num_experts %u, top_k %u, hidden %u, "
			  "max_tokens %u overflow 64 bits", a->world_size, a->num_experts, a->top_k,
			  a->hidden, a->max_tokens);
		return -EOVERFLOW;
	}
	l.block_bytes = moe_round_up(l.block_hdr_bytes + l.block_records * l.record_bytes, 64);
	*out = l;
	return 0;
}

XFER_EXPORT int xfer_moe_layout_get(const struct xfer_moe_attr *attr, struct xfer_moe_layout *out)
{
	struct xfer_moe_attr a;
	int ret;

	if (!out) {
		moe_error("xfer_moe_layout_get: out is NULL");
		return -EINVAL;
	}
	ret = moe_attr_read(attr, &a);
	if (ret)
		return ret;
	ret = moe_layout_from_attr(&a, out);
	if (!ret)
		moe_error_clear();
	return ret;
}
