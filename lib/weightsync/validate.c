// SPDX-License-Identifier: MIT
/*
 * Schedule validator: the structure is checked before any index is followed
 * (it also guards schedules read from files), then every destination byte
 * must be written exactly once and every source row held or gathered once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ws_internal.h"

struct ival {
	uint64_t off, len;
	uint32_t key, pad;
};

static int cmp_ival(const void *a, const void *b)
{
	const struct ival *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return 0;
}

#define FAIL(...) do { ws_err(err, errlen, __VA_ARGS__); rc = -EINVAL; goto out; } while (0)

static int check_structure(const struct xfer_ws_schedule *s, char *err, size_t errlen)
{
	uint64_t next;
	int rc = 0;

	if (s->version != XFER_WS_SCHEDULE_VERSION)
		FAIL("version %u", s->version);
	if (s->ntrainers != xfer_ws_trainer_world(&s->trainer) || s->ninfer != xfer_ws_infer_world(&s->infer) ||
	    !s->ntrainers || !s->ninfer)
		FAIL("rank counts do not match the layouts");
	if (!s->align || (s->align & (s->align - 1)))
		FAIL("alignment %u", s->align);
	next = 0;
	for (uint32_t t = 0; t < s->ntrainers; t++) {
		const struct xfer_ws_trainer_rank *tr = &s->trainers[t];

		if (tr->first_chunk != next || (uint64_t)tr->first_chunk + tr->nchunks > s->nchunks)
			FAIL("trainer %u: chunk range", t);
		next += tr->nchunks;
		for (uint32_t c = tr->first_chunk; c < tr->first_chunk + tr->nchunks; c++)
			if (s->chunks[c].owner != t)
				FAIL("chunk %u: owner %u listed under trainer %u", c, s->chunks[c].owner, t);
	}
	if (next != s->nchunks)
		FAIL("chunks not covered by trainers");
	next = 0;
	for (uint32_t t = 0; t < s->ntrainers; t++) {
		const struct xfer_ws_trainer_rank *tr = &s->trainers[t];

		if (tr->first_gather != next || (uint64_t)tr->first_gather + tr->ngathers > s->ngathers)
			FAIL("trainer %u: gather range", t);
		next += tr->ngathers;
		for (uint32_t g = tr->first_gather; g < tr->first_gather + tr->ngathers; g++)
			if (s->gathers[g].src_rank != t || s->gathers[g].chunk >= s->nchunks)
				FAIL("gather %u: sender or chunk", g);
	}
	if (next != s->ngathers)
		FAIL("gathers not covered by trainers");
	next = 0;
	for (uint32_t t = 0; t < s->ntrainers; t++) {
		const struct xfer_ws_trainer_rank *tr = &s->trainers[t];
		uint64_t prep = tr->first_chunk;

		if (tr->first_write != next || (uint64_t)tr->first_write + tr->nwrites > s->nwrites)
			FAIL("trainer %u: write range", t);
		next += tr->nwrites;
		for (uint32_t w = tr->first_write; w < tr->first_write + tr->nwrites; w++) {
			uint32_t c = s->writes[w].chunk;

			if (c >= s->nchunks || s->chunks[c].owner != t || s->writes[w].dst_rank >= s->ninfer)
				FAIL("write %u: chunk, owner or rank", w);
			/* chunks are prepared in order of first use */
			if (c == prep)
				prep++;
			else if (c > prep)
				FAIL("trainer %u: chunk %u used before chunk %lu", t, c, (unsigned long)prep);
		}
		if (prep != (uint64_t)tr->first_chunk + tr->nchunks)
			FAIL("trainer %u: chunks without writes", t);
	}
	if (next != s->nwrites)
		FAIL("writes not covered by trainers");
	next = 0;
	for (uint64_t c = 0; c < s->nchunks; c++) {
		const struct xfer_ws_chunk *ch = &s->chunks[c];

		if (ch->first_write != next || (uint64_t)ch->first_write + ch->nwrites > s->nwrites ||
		    !ch->nwrites)
			FAIL("chunk %lu: write range", (unsigned long)c);
		next += ch->nwrites;
		if (ch->param >= s->nparams || ch->transform > XFER_WS_XF_FP8 || ch->tensor >= s->ntensors)
			FAIL("chunk %lu: param, transform or tensor", (unsigned long)c);
		if ((uint64_t)ch->first_gather + ch->ngathers > s->ngathers)
			FAIL("chunk %lu: gather range", (unsigned long)c);
		for (uint32_t i = ch->first_gather; i < ch->first_gather + ch->ngathers; i++)
			if (s->gathers_by_chunk[i] >= s->ngathers ||
			    s->gathers[s->gathers_by_chunk[i]].chunk != c)
				FAIL("chunk %lu: gather index", (unsigned long)c);
		/* each write listed once, under its own chunk (ascending: no repeats) */
		for (uint32_t i = ch->first_write; i < ch->first_write + ch->nwrites; i++)
			if (s->writes_by_chunk[i] >= s->nwrites || s->writes[s->writes_by_chunk[i]].chunk != c ||
			    (i > ch->first_write && s->writes_by_chunk[i] <= s->writes_by_chunk[i - 1]))
				FAIL("chunk %lu: write index", (unsigned long)c);
	}
	if (next != s->nwrites)
		FAIL("writes not covered by chunks");
	next = 0;
	for (uint32_t r = 0; r < s->ninfer; r++) {
		const struct xfer_ws_infer_rank *ir = &s->infers[r];

		if (ir->first_tensor != next || (uint64_t)ir->first_tensor + ir->ntensors > s->ntensors)
			FAIL("inference rank %u: tensor range", r);
		next += ir->ntensors;
	}
	if (next != s->ntensors)
		FAIL("tensors not covered by inference ranks");
	for (uint64_t p = 0; p < s->nparams; p++) {
		const struct xfer_ws_param *pa = &s->params[p];

		if (!xfer_ws_dtype_size(pa->dtype) || pa->dtype == XFER_WS_DT_FP8E4M3 ||
		    !pa->rows || !pa->cols || !memchr(pa->name, 0, sizeof(pa->name)))
			FAIL("param %lu: shape, dtype or name", (unsigned long)p);
	}
out:
	return rc;
}

/* Tensor of rank r whose data region holds off (tensors are in offset order). */
static const struct xfer_ws_tensor *find_tensor(const struct xfer_ws_schedule *s, uint32_t r, uint64_t off)
{
	const struct xfer_ws_infer_rank *ir = &s->infers[r];
	uint32_t lo = 0, hi = ir->ntensors;

	while (lo < hi) { /* first tensor with offset > off */
		uint32_t mid = lo + (hi - lo) / 2;

		if (s->tensors[ir->first_tensor + mid].offset > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	/* zero-byte tensors may share an offset: walk back to one that holds off */
	while (lo > 0) {
		const struct xfer_ws_tensor *t = &s->tensors[ir->first_tensor + lo - 1];

		if (off < t->offset + t->bytes)
			return t;
		if (t->bytes)
			return NULL;
		lo--;
	}
	return NULL;
}

static int check_tensors(const struct xfer_ws_schedule *s, char *err, size_t errlen)
{
	int rc = 0;

	for (uint32_t r = 0; r < s->ninfer; r++) {
		const struct xfer_ws_infer_rank *ir = &s->infers[r];
		uint64_t end = 0;

		for (uint32_t i = ir->first_tensor; i < ir->first_tensor + ir->ntensors; i++) {
			const struct xfer_ws_tensor *t = &s->tensors[i];
			unsigned esz = xfer_ws_dtype_size(t->dtype);
			uint64_t scols = ws_div_up(t->cols, XFER_WS_FP8_BLOCK);

			if (t->rank != r || !esz || t->name >= s->strtab_len)
				FAIL("tensor %u: rank, dtype or name", i);
			if (t->bytes != t->rows * t->cols * esz)
				FAIL("tensor %u (%s): %lu bytes for %lux%lu", i, s->strtab + t->name,
				     (unsigned long)t->bytes, (unsigned long)t->rows, (unsigned long)t->cols);
			if (t->dtype == XFER_WS_DT_FP8E4M3) {
				uint64_t srows = t->scale_bytes / (scols * 4);

				if (t->scale_bytes % (scols * 4) ||
				    srows < ws_div_up(t->rows, XFER_WS_FP8_BLOCK) ||
				    srows > ws_div_up(t->rows, XFER_WS_FP8_BLOCK) + WS_MAX_COMP)
					FAIL("tensor %u (%s): scale size", i, s->strtab + t->name);
			} else if (t->scale_bytes) {
				FAIL("tensor %u: scales on a non-fp8 tensor", i);
			}
			if (t->offset < end || t->offset % s->align)
				FAIL("tensor %u: offset out of order or unaligned", i);
			end = t->offset + t->bytes;
			if (t->scale_bytes) {
				if (t->scale_offset < end || t->scale_offset % s->align)
					FAIL("tensor %u: scale offset", i);
				end = t->scale_offset + t->scale_bytes;
			}
		}
		if (end > ir->buf_bytes)
			FAIL("inference rank %u: tensors end at %lu past the buffer (%lu)", r,
			     (unsigned long)end, (unsigned long)ir->buf_bytes);
	}
out:
	return rc;
}

static int check_writes(const struct xfer_ws_schedule *s, char *err, size_t errlen)
{
	size_t n = 0, cap = 2 * s->nwrites + 1;
	struct ival *iv = malloc(cap * sizeof(*iv));
	uint64_t *want = calloc(s->ninfer, sizeof(*want)), *got = calloc(s->ninfer, sizeof(*got));
	int rc = -ENOMEM;

	if (!iv || !want || !got)
		goto out;
	rc = 0;
	for (uint64_t i = 0; i < s->ntensors; i++)
		want[s->tensors[i].rank] += s->tensors[i].bytes + s->tensors[i].scale_bytes;
	for (uint64_t w = 0; w < s->nwrites; w++) {
		const struct xfer_ws_write *wr = &s->writes[w];
		const struct xfer_ws_chunk *ch = &s->chunks[wr->chunk];
		const struct xfer_ws_param *pa = &s->params[ch->param];
		const struct xfer_ws_tensor *t = find_tensor(s, wr->dst_rank, wr->dst_offset);
		uint32_t dt = ch->transform == XFER_WS_XF_FP8 ? XFER_WS_DT_FP8E4M3 : pa->dtype;
		uint64_t rowb, scols;

		if (!t || wr->dst_offset + ch->out_bytes > t->offset + t->bytes)
			FAIL("write %lu (%s): outside any tensor of rank %u", (unsigned long)w,
			     pa->name, wr->dst_rank);
		if (t->dtype != dt || ch->cols != t->cols)
			FAIL("write %lu (%s -> %s): dtype or width mismatch", (unsigned long)w, pa->name,
			     s->strtab + t->name);
		if (ch->transform == XFER_WS_XF_FP8 && pa->dtype != XFER_WS_DT_BF16)
			FAIL("chunk %u: fp8 from a non-bf16 source", wr->chunk);
		rowb = t->cols * xfer_ws_dtype_size(dt);
		if (ch->out_bytes != ch->rows * rowb || (wr->dst_offset - t->offset) % rowb)
			FAIL("write %lu (%s): size or row alignment", (unsigned long)w, pa->name);
		iv[n++] = (struct ival){ wr->dst_offset, ch->out_bytes, wr->dst_rank, 0 };
		got[wr->dst_rank] += ch->out_bytes;
		if (dt != XFER_WS_DT_FP8E4M3) {
			if (ch->scale_bytes)
				FAIL("chunk %u: scales without fp8", wr->chunk);
			continue;
		}
		scols = ws_div_up(t->cols, XFER_WS_FP8_BLOCK) * 4;
		if (ch->scale_bytes != ws_div_up(ch->rows, XFER_WS_FP8_BLOCK) * scols ||
		    wr->scale_offset < t->scale_offset ||
		    wr->scale_offset + ch->scale_bytes > t->scale_offset + t->scale_bytes ||
		    (wr->scale_offset - t->scale_offset) % scols)
			FAIL("write %lu (%s): scales outside the tensor's grid", (unsigned long)w, pa->name);
		iv[n++] = (struct ival){ wr->scale_offset, ch->scale_bytes, wr->dst_rank, 0 };
		got[wr->dst_rank] += ch->scale_bytes;
	}
	qsort(iv, n, sizeof(*iv), cmp_ival);
	for (size_t i = 1; i < n; i++)
		if (iv[i].key == iv[i - 1].key && iv[i].off < iv[i - 1].off + iv[i - 1].len)
			FAIL("inference rank %u: bytes %lu..%lu written twice", iv[i].key,
			     (unsigned long)iv[i].off, (unsigned long)(iv[i - 1].off + iv[i - 1].len));
	for (uint32_t r = 0; r < s->ninfer; r++)
		if (got[r] != want[r])
			FAIL("inference rank %u: %lu of %lu bytes written", r, (unsigned long)got[r],
			     (unsigned long)want[r]);
out:
	free(iv);
	free(want);
	free(got);
	return rc;
}

static int check_sources(const struct xfer_ws_schedule *s, char *err, size_t errlen)
{
	struct ival *rows = NULL, *gb = malloc((s->nchunks + 1) * sizeof(*gb));
	size_t cap = 0, ngb = 0;
	int rc = gb ? 0 : -ENOMEM;

	for (uint64_t c = 0; c < s->nchunks && !rc; c++) {
		const struct xfer_ws_chunk *ch = &s->chunks[c];
		const struct xfer_ws_param *pa = &s->params[ch->param];
		uint64_t o0, on, esz = xfer_ws_dtype_size(pa->dtype), lo, hi, at;
		size_t n = 0;

		if (!ch->rows || !ch->cols || ch->row0 + ch->rows > pa->rows || ch->col0 + ch->cols > pa->cols)
			FAIL("chunk %lu (%s): source outside the parameter", (unsigned long)c, pa->name);
		xfer_ws_shard_rows(s, ch->param, ch->owner, &o0, &on);
		if (ch->gather_offset == XFER_WS_NO_GATHER) {
			if (ch->ngathers || ch->row0 < o0 || ch->row0 + ch->rows > o0 + on)
				FAIL("chunk %lu (%s): owner %u lacks rows %lu..%lu", (unsigned long)c,
				     pa->name, ch->owner, (unsigned long)ch->row0,
				     (unsigned long)(ch->row0 + ch->rows));
			continue;
		}
		if (ch->gather_offset + ch->rows * ch->cols * esz > s->trainers[ch->owner].gather_bytes)
			FAIL("chunk %lu: gather region past the buffer", (unsigned long)c);
		gb[ngb++] = (struct ival){ ch->gather_offset, ch->rows * ch->cols * esz, ch->owner, 0 };
		if (cap < ch->ngathers + 1u) {
			free(rows);
			cap = ch->ngathers + 1u;
			if (!(rows = malloc(cap * sizeof(*rows)))) {
				rc = -ENOMEM;
				break;
			}
		}
		lo = o0 > ch->row0 ? o0 : ch->row0;
		hi = o0 + on < ch->row0 + ch->rows ? o0 + on : ch->row0 + ch->rows;
		if (hi > lo)
			rows[n++] = (struct ival){ lo, hi - lo, 0, 0 };
		for (uint32_t i = ch->first_gather; i < ch->first_gather + ch->ngathers; i++) {
			const struct xfer_ws_gather *g = &s->gathers[s->gathers_by_chunk[i]];
			uint64_t g0, gn;

			xfer_ws_shard_rows(s, ch->param, g->src_rank, &g0, &gn);
			if (g->row0 < g0 || g->row0 + g->rows > g0 + gn || !g->rows)
				FAIL("gather %u: trainer %u does not hold rows %lu..%lu", s->gathers_by_chunk[i],
				     g->src_rank, (unsigned long)g->row0, (unsigned long)(g->row0 + g->rows));
			if (g->row0 < ch->row0 || g->bytes != g->rows * ch->cols * esz ||
			    g->dst_offset != ch->gather_offset + (g->row0 - ch->row0) * ch->cols * esz)
				FAIL("gather %u: size or offset", s->gathers_by_chunk[i]);
			rows[n++] = (struct ival){ g->row0, g->rows, 0, 0 };
		}
		qsort(rows, n, sizeof(*rows), cmp_ival);
		at = ch->row0;
		for (size_t i = 0; i < n; i++) {
			if (rows[i].off != at)
				FAIL("chunk %lu (%s): source rows %lu.. missing or twice", (unsigned long)c,
				     pa->name, (unsigned long)at);
			at += rows[i].len;
		}
		if (at != ch->row0 + ch->rows)
			FAIL("chunk %lu (%s): source rows short", (unsigned long)c, pa->name);
	}
	if (!rc) {
		qsort(gb, ngb, sizeof(*gb), cmp_ival);
		for (size_t i = 1; i < ngb; i++)
			if (gb[i].key == gb[i - 1].key && gb[i].off < gb[i - 1].off + gb[i - 1].len)
				FAIL("trainer %u: gather regions overlap", gb[i].key);
	}
out:
	free(rows);
	free(gb);
	return rc;
}

struct rect {
	uint64_t col0, row0, rows, cols;
};

static int cmp_rect(const void *a, const void *b)
{
	const struct rect *x = a, *y = b;

	if (x->col0 != y->col0)
		return x->col0 < y->col0 ? -1 : 1;
	return x->row0 < y->row0 ? -1 : x->row0 > y->row0;
}

/*
 * The chunks of each parameter tile it exactly once: every inference slicing
 * (rows, columns, or whole) partitions a parameter, and each slice is cut
 * into chunks once and written to all its copies. A chunk that reads the
 * wrong rows breaks the tiling even when its destination is right.
 */
static int check_tiling(const struct xfer_ws_schedule *s, char *err, size_t errlen)
{
	uint32_t *start = calloc(s->nparams + 1, sizeof(*start));
	struct rect *r = malloc((s->nchunks + 1) * sizeof(*r));
	int rc = (start && r) ? 0 : -ENOMEM;

	if (rc)
		goto out;
	for (uint64_t c = 0; c < s->nchunks; c++)
		start[s->chunks[c].param + 1]++;
	for (uint64_t p = 0; p < s->nparams; p++)
		start[p + 1] += start[p];
	for (uint64_t c = 0; c < s->nchunks; c++) {
		const struct xfer_ws_chunk *ch = &s->chunks[c];

		r[start[ch->param]++] = (struct rect){ ch->col0, ch->row0, ch->rows, ch->cols };
	}
	for (uint64_t p = s->nparams; p > 0; p--)
		start[p] = start[p - 1];
	start[0] = 0;
	for (uint64_t p = 0; p < s->nparams; p++) {
		const struct xfer_ws_param *pa = &s->params[p];
		struct rect *q = r + start[p];
		uint32_t n = start[p + 1] - start[p];
		uint64_t col = 0, row = 0, cols = 0;

		qsort(q, n, sizeof(*q), cmp_rect);
		for (uint32_t i = 0; i < n; i++) {
			if (row == 0) { /* a new column band */
				if (q[i].col0 != col)
					FAIL("%s: columns %lu.. not covered once", pa->name, (unsigned long)col);
				cols = q[i].cols;
			}
			if (q[i].col0 != col || q[i].cols != cols || q[i].row0 != row)
				FAIL("%s: rows %lu.. (columns %lu..) not covered once", pa->name,
				     (unsigned long)row, (unsigned long)col);
			row += q[i].rows;
			if (row == pa->rows) {
				row = 0;
				col += cols;
			}
		}
		if (row != 0 || col != pa->cols)
			FAIL("%s: not covered (%lu of %lu columns)", pa->name, (unsigned long)col,
			     (unsigned long)pa->cols);
	}
out:
	free(start);
	free(r);
	return rc;
}

XFER_EXPORT int xfer_ws_schedule_validate(const struct xfer_ws_schedule *s, char *err,
					  size_t errlen)
{
	int rc;

	if (!s)
		return -EINVAL;
	ws_err(err, errlen, "ok");
	if ((rc = check_structure(s, err, errlen)) || (rc = check_tensors(s, err, errlen)) || (rc = check_writes(s, err, errlen)) || (rc = check_sources(s, err, errlen)) ||
	    (rc = check_tiling(s, err, errlen)))
		return rc;
	return 0;
}

XFER_EXPORT void xfer_ws_schedule_stats(const struct xfer_ws_schedule *s, struct xfer_ws_stats *st)
{
	uint64_t sum_tx = 0;

	memset(st, 0, sizeof(*st));
	st->min_trainer_tx = st->min_infer_rx = UINT64_MAX;
	for (uint32_t t = 0; t < s->ntrainers; t++) {
		uint64_t b = s->trainers[t].tx_bytes;

		sum_tx += b;
		st->max_trainer_tx = b > st->max_trainer_tx ? b : st->max_trainer_tx;
		st->min_trainer_tx = b < st->min_trainer_tx ? b : st->min_trainer_tx;
	}
	for (uint32_t r = 0; r < s->ninfer; r++) {
		uint64_t b = s->infers[r].rx_bytes;

		st->total_bytes += b;
		st->max_infer_rx = b > st->max_infer_rx ? b : st->max_infer_rx;
		st->min_infer_rx = b < st->min_infer_rx ? b : st->min_infer_rx;
	}
	for (uint64_t g = 0; g < s->ngathers; g++)
		st->gather_bytes += s->gathers[g].bytes;
	st->trainer_imbalance = sum_tx ? (double)st->max_trainer_tx * s->ntrainers / (double)sum_tx : 1.0;
	st->infer_imbalance = st->total_bytes ?
		(double)st->max_infer_rx * s->ninfer / (double)st->total_bytes : 1.0;
}
