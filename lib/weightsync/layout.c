// SPDX-License-Identifier: MIT
/* Trainer and inference layouts: parsing, and where a parameter lives on the trainers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "struct_copy.h"
#include "ws_internal.h"

#define WS_MAX_DIM 65536u

/* "a=1,b=2": each key named in keys[] stores into vals[]; others are
 * refused, with the reason in xfer_ws_last_error(). */
static int parse_kv(const char *s, const char *const *keys, uint32_t **vals, unsigned nkeys)
{
	const char *p = s;

	ws_last_error(NULL);
	if (!s)
		return -EINVAL;
	for (unsigned i = 0; i < nkeys; i++)
		*vals[i] = 1;
	while (*p) {
		const char *eq = strchr(p, '='), *end;
		unsigned i;
		unsigned long v;
		char *num_end;

		if (!eq) {
			ws_last_error("'%s': expected KEY=N", p);
			return -EINVAL;
		}
		for (i = 0; i < nkeys; i++)
			if (strlen(keys[i]) == (size_t)(eq - p) && !strncmp(p, keys[i], (size_t)(eq - p)))
				break;
		if (i == nkeys) {
			char known[64] = "";

			for (unsigned k = 0; k < nkeys; k++)
				snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
					 k ? ", " : "", keys[k]);
			ws_last_error("'%.*s': unknown key (one of %s)", (int)(eq - p), p, known);
			return -EINVAL;
		}
		v = eq[1] >= '0' && eq[1] <= '9' ? strtoul(eq + 1, &num_end, 10) : 0;
		end = v ? num_end : eq + 1;
		if (end == eq + 1 || v == 0 || v > WS_MAX_DIM || (*end && *end != ',')) {
			ws_last_error("%.*s: '%.*s' is not an integer in 1..%u", (int)(eq - p), p,
				      (int)strcspn(eq + 1, ","), eq + 1, WS_MAX_DIM);
			return -EINVAL;
		}
		*vals[i] = (uint32_t)v;
		p = *end ? end + 1 : end;
	}
	return 0;
}

/* The parsers fill the caller's struct as far as its header's size goes
 * (struct_copy.h); fields they do not parse keep what the caller set. */
XFER_EXPORT int xfer_ws_trainer_parse_size(const char *s, struct xfer_ws_trainer_layout *ut,
					   size_t size)
{
	static const char *const keys[] = { "fsdp", "pp", "ep", "dp" };
	struct xfer_ws_trainer_layout t = { 0 };
	uint32_t *vals[] = { &t.fsdp, &t.pp, &t.ep, &t.dp };
	int ret;

	if (!ut || size < sizeof(uint32_t))
		return -EINVAL;
	memcpy(&t, ut, size < sizeof(t) ? size : sizeof(t));
	ret = parse_kv(s, keys, vals, 4);
	xfer_struct_fill(ut, size, &t, sizeof(t));
	return ret;
}

XFER_EXPORT int xfer_ws_infer_parse_size(const char *s, struct xfer_ws_infer_layout *ul,
					 size_t size)
{
	static const char *const keys[] = { "tp", "ep", "dp" };
	struct xfer_ws_infer_layout l = { 0 };
	uint32_t *vals[] = { &l.tp, &l.ep, &l.dp };
	int ret;

	if (!ul || size < sizeof(uint32_t))
		return -EINVAL;
	memcpy(&l, ul, size < sizeof(l) ? size : sizeof(l));
	if (!l.dtype)
		l.dtype = XFER_WS_DT_FP8E4M3;
	ret = parse_kv(s, keys, vals, 3);
	xfer_struct_fill(ul, size, &l, sizeof(l));
	return ret;
}

static uint32_t stage_of(int32_t layer, uint32_t nlayers, uint32_t pp)
{
	uint32_t s;

	if (layer < 0)
		return 0;
	if ((uint32_t)layer >= nlayers)
		return pp - 1;
	for (s = pp - 1; s > 0; s--)
		if (ws_split_at(nlayers, pp, s) <= (uint64_t)layer)
			break;
	return s;
}

void ws_shard_info(const struct xfer_ws_trainer_layout *t, uint32_t nlayers, uint32_t nexperts,
		   const struct xfer_ws_param *p, struct ws_shard_info *si)
{
	uint32_t stage_ranks = t->fsdp * t->ep;

	si->stage = stage_of(p->layer, nlayers, t->pp);
	si->dp_stride = t->pp * stage_ranks;
	si->base = si->stage * stage_ranks;
	if (p->expert < 0 || !nexperts) {
		si->nshards = stage_ranks;
		si->stride = 1;
	} else {
		uint32_t per_group = (uint32_t)ws_div_up(nexperts, t->ep);
		uint32_t g = (uint32_t)p->expert / per_group;
		uint32_t first = g * per_group;
		uint32_t ng = nexperts - first < per_group ? nexperts - first : per_group;

		si->base += g * t->fsdp;
		if (ng % t->fsdp == 0) {
			/* stacked experts sharded on the expert dimension: whole experts */
			si->base += ((uint32_t)p->expert - first) / (ng / t->fsdp);
			si->nshards = 1;
		} else {
			si->nshards = t->fsdp;
		}
		si->stride = 1;
	}
	si->shard_rows = ws_div_up(p->rows, si->nshards);
}
