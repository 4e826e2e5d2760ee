/* SPDX-License-Identifier: MIT */
/* MoE internals shared by the files of lib/moe (the context, the layout,
 * the C reference kernels). The layer sees include/ and lib/util/ only:
 * it uses the engine through the public API. */
#ifndef XFER_MOE_INTERNAL_H
#define XFER_MOE_INTERNAL_H

#include <stdint.h>

#include "xfer_moe.h"

#include "compiler.h"

#define MOE_DEFAULT_TIMEOUT_MS 10000
#define MOE_DEFAULT_IMM_BASE   0x4d6f0000u
/* imm_base + 0 .. MOE_IMMS - 1 are the context's immediates. */
#define MOE_IMMS               16u

/* error.c: sets this thread's xfer_moe_last_error() text (printf format;
 * truncated to fit). Say what was wrong and where: the argument or field,
 * its value, the rank, slot and layer where they matter. */
void moe_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Empties it: a call that succeeds leaves "" behind. */
void moe_error_clear(void);

/* layout.c: the caller's attributes (struct-size rule of xfer.h:
 * lib/util/struct_copy.h) into *out, defaults applied (timeout_ms 0 ->
 * 10000, imm_base 0 -> 0x4d6f0000) and every field validated. 0, or
 * -EINVAL / -E2BIG with moe_error naming the field and its value; *out
 * then holds nothing useful. */
int moe_attr_read(const struct xfer_moe_attr *ua, struct xfer_moe_attr *out);
/* The layout of validated attributes (what xfer_moe_layout_get returns
 * after moe_attr_read). 0 or -EOVERFLOW with moe_error's reason. */
int moe_layout_from_attr(const struct xfer_moe_attr *a, struct xfer_moe_layout *out);

/* ref.c: 1 makes the references take their scalar paths even where the CPU
 * has AVX2 / FMA, so that the tests compare both (not exported: the unit
 * tests link the static library). Not thread-safe: set before use. */
void moe_ref_force_scalar(int on);

static inline uint64_t moe_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

#endif
