// SPDX-License-Identifier: MIT
/*
 * The weight-sync planner: maps every parameter, sharded as the trainers hold
 * it, onto the inference ranks' weight buffers.
 *
 *  1. Destination layout: per inference rank, the fused tensors it stores
 *     (its TP slice, its EP experts), laid out in one buffer in model order.
 *  2. Chunks: each destination slice is cut into chunks along trainer shard
 *     boundaries; shards smaller than min_chunk are merged (the owner gathers
 *     the rows it lacks), larger ones split to max_chunk; for fp8 the cuts are
 *     moved to 128-row block boundaries of the destination, so a block never
 *     spans two chunks (the owner gathers the straddling rows).
 *     A chunk is transformed once and written to every replica of its slice.
 *  3. Owners: chunks whose rows one rank holds go to it; the others (merged
 *     shards, HSDP replicas) go to the least loaded candidate, largest first
 *     (LPT), so trainer NIC bytes even out. Inference NIC bytes are fixed by
 *     the inference layout.
 *  4. Order: each trainer interleaves its fan-out chunks (one slice to many
 *     ranks) with its per-replica chunks by byte position, and rotates the
 *     first destination of each chunk, so receivers see several senders at
 *     any time instead of all trainers queueing at the same rank.
 * Everything is a pure function of the inputs: same inputs, same bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "struct_copy.h"
#include "ws_internal.h"

/* The floors of the structs xfer_ws_plan reads: they end where the first
 * published version of each ended, whatever is appended later. */
_Static_assert(XFER_WS_TRAINER_LAYOUT_SIZE_VER0 ==
	       offsetof(struct xfer_ws_trainer_layout, ep) + sizeof(uint32_t), "trainer layout floor");
_Static_assert(XFER_WS_INFER_LAYOUT_SIZE_VER0 ==
	       offsetof(struct xfer_ws_infer_layout, dtype) + sizeof(uint32_t), "infer layout floor");
_Static_assert(XFER_WS_PLAN_ATTR_SIZE_VER0 == offsetof(struct xfer_ws_plan_attr, min_chunk),
	       "plan attr floor");

#define DEF_MIN_CHUNK (16ull << 20)
#define DEF_MAX_CHUNK (64ull << 20)
#define DEF_ALIGN 256u
#define WS_MAX_RANKS 65536u

#define GROW(arr, n, cap) ({ \
	int rc_ = 0; \
	if ((n) == (cap)) { \
		size_t c_ = (cap) ? (cap) * 2 : 256; \
		void *p_ = realloc((arr), c_ * sizeof(*(arr))); \
		if (p_) { (arr) = p_; (cap) = c_; } else rc_ = -ENOMEM; \
	} \
	rc_; })

struct planner {
	const struct xfer_ws_model *m;
	struct xfer_ws_trainer_layout t;
	struct xfer_ws_infer_layout l;
	uint64_t min_chunk, max_chunk;
	uint32_t align;
	struct xfer_ws_schedule *s;
	size_t ccap, wcap;   /* capacities of s->chunks, s->writes */
	/* per chunk, planner only */
	uint32_t *k0, *k1;
	size_t kcap;
	uint64_t *cuts;
	size_t ncuts, cutcap;
	uint32_t *cursor;     /* per inference rank: its next tensor */
	uint64_t *off;        /* per inference rank: end of its buffer so far */
	uint32_t *dst;        /* destination ranks of the current slice */
	uint32_t *dtensor;    /* their tensors */
	uint32_t *gname;      /* per group: name offset in strtab */
};

/* Bytes each write of the chunk puts on the wire (data and scales). */
static uint64_t wire_bytes(const struct xfer_ws_chunk *ch)
{
	return ch->out_bytes + ch->scale_bytes;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static int push_cut(struct planner *p, uint64_t c)
{
	int rc = GROW(p->cuts, p->ncuts, p->cutcap);

	if (!rc)
		p->cuts[p->ncuts++] = c;
	return rc;
}

/* Cut rows [r0, r1) of a parameter into chunks (see 2. above). */
static int cut_rows(struct planner *p, const struct ws_shard_info *si, uint64_t r0, uint64_t r1,
		    uint64_t rowbytes, int quant)
{
	uint64_t cs = si->nshards > 1 ? si->shard_rows : UINT64_MAX, cur = r0;
	size_t n = 0;
	int rc;

	p->ncuts = 0;
	if ((rc = push_cut(p, r0)))
		return rc;
	while (cur < r1) {
		uint64_t nb = cs == UINT64_MAX ? r1 : (cur / cs + 1) * cs;

		if (nb > r1)
			nb = r1;
		if ((nb - cur) * rowbytes >= p->min_chunk) {
			uint64_t parts = ws_div_up((nb - cur) * rowbytes, p->max_chunk);

			for (uint64_t i = 1; i <= parts; i++)
				if ((rc = push_cut(p, cur + (nb - cur) * i / parts)))
					return rc;
			cur = nb;
			continue;
		}
		while (nb < r1 && (nb - cur) * rowbytes < p->min_chunk) {
			uint64_t nx = (nb / cs + 1) * cs;

			if (nx > r1)
				nx = r1;
			if ((nx - cur) * rowbytes > p->max_chunk)
				break;
			nb = nx;
		}
		if ((rc = push_cut(p, nb)))
			return rc;
		cur = nb;
	}
	/* fp8: cuts on block boundaries of the destination slice; drop repeats */
	for (size_t i = 1; i < p->ncuts; i++) {
		uint64_t c = p->cuts[i];

		if (quant && c != r1) {
			c = r0 + (c - r0 + XFER_WS_FP8_BLOCK / 2) / XFER_WS_FP8_BLOCK * XFER_WS_FP8_BLOCK;
			if (c > r1)
				c = r1;
		}
		if (c > p->cuts[n])
			p->cuts[++n] = c;
	}
	p->ncuts = n + 1;
	return 0;
}

struct slice {
	uint64_t r0, r1, c0, c1;
};

/* k0/k1 (the shard range of each chunk) follow the chunk array's capacity. */
static int grow_shard_ranges(struct planner *p)
{
	uint32_t *a, *b;

	if (p->kcap >= p->ccap)
		return 0;
	a = realloc(p->k0, p->ccap * sizeof(*a));
	if (!a)
		return -ENOMEM;
	p->k0 = a;
	b = realloc(p->k1, p->ccap * sizeof(*b));
	if (!b)
		return -ENOMEM;
	p->k1 = b;
	p->kcap = p->ccap;
	return 0;
}

static void region(const struct ws_group *g, const struct xfer_ws_param *pa, uint32_t tp,
		   uint32_t t, struct slice *sl)
{
	sl->r0 = 0, sl->r1 = pa->rows, sl->c0 = 0, sl->c1 = pa->cols;
	if (g->role == WS_COL || g->role == WS_VOCAB) {
		sl->r0 = ws_split_at(pa->rows, tp, t);
		sl->r1 = ws_split_at(pa->rows, tp, t + 1);
	} else if (g->role == WS_ROW) {
		sl->c0 = ws_split_at(pa->cols, tp, t);
		sl->c1 = ws_split_at(pa->cols, tp, t + 1);
	}
}

/* One destination slice (group g, TP slice t) on ndst ranks. */
static int plan_slice(struct planner *p, uint32_t gi, uint32_t t, uint32_t ndst)
{
	const struct ws_group *g = &p->m->groups[gi];
	struct xfer_ws_schedule *s = p->s;
	int quant = p->l.dtype == XFER_WS_DT_FP8E4M3 && g->quant;
	uint32_t dt = quant ? XFER_WS_DT_FP8E4M3 : p->m->params[g->comp[0]].dtype;
	uint64_t esz = xfer_ws_dtype_size(dt), rows = 0, srows = 0, cols = 0;
	struct slice sl[WS_MAX_COMP];
	int rc;

	for (uint32_t c = 0; c < g->ncomp; c++) {
		region(g, &p->m->params[g->comp[c]], p->l.tp, t, &sl[c]);
		rows += sl[c].r1 - sl[c].r0;
		srows += ws_div_up(sl[c].r1 - sl[c].r0, XFER_WS_FP8_BLOCK);
		cols = sl[c].c1 - sl[c].c0;
	}
	/* the tensor on every destination rank */
	for (uint32_t i = 0; i < ndst; i++) {
		uint32_t r = p->dst[i];
		struct xfer_ws_tensor *tt = &s->tensors[p->cursor[r]];

		p->dtensor[i] = p->cursor[r]++;
		memset(tt, 0, sizeof(*tt));
		tt->rank = r;
		tt->dtype = dt;
		tt->name = p->gname[gi];
		tt->rows = rows;
		tt->cols = cols;
		tt->bytes = rows * cols * esz;
		tt->offset = align_up(p->off[r], p->align);
		p->off[r] = tt->offset + tt->bytes;
		if (quant) {
			tt->scale_bytes = srows * ws_div_up(cols, XFER_WS_FP8_BLOCK) * 4;
			tt->scale_offset = align_up(p->off[r], p->align);
			p->off[r] = tt->scale_offset + tt->scale_bytes;
		}
	}
	/* the chunks of each component */
	rows = srows = 0;
	for (uint32_t c = 0; c < g->ncomp; c++) {
		const struct xfer_ws_param *pa = &p->m->params[g->comp[c]];
		uint64_t ncols = sl[c].c1 - sl[c].c0, scols = ws_div_up(ncols, XFER_WS_FP8_BLOCK);
		struct ws_shard_info si;

		ws_shard_info(&p->t, p->m->nlayers, p->m->nexperts, pa, &si);
		if ((rc = cut_rows(p, &si, sl[c].r0, sl[c].r1, ncols * xfer_ws_dtype_size(pa->dtype), quant)))
			return rc;
		for (size_t k = 0; k + 1 < p->ncuts; k++) {
			uint64_t a = p->cuts[k], b = p->cuts[k + 1];
			struct xfer_ws_chunk *ch;

			if ((rc = GROW(s->chunks, s->nchunks, p->ccap)))
				return rc;
			if ((rc = grow_shard_ranges(p)))
				return rc;
			ch = &s->chunks[s->nchunks];
			memset(ch, 0, sizeof(*ch));
			ch->param = g->comp[c];
			ch->row0 = a, ch->rows = b - a;
			ch->col0 = sl[c].c0, ch->cols = ncols;
			ch->transform = quant ? XFER_WS_XF_FP8 : XFER_WS_XF_COPY;
			ch->out_bytes = (b - a) * ncols * esz;
			ch->scale_bytes = quant ? ws_div_up(b - a, XFER_WS_FP8_BLOCK) * scols * 4 : 0;
			ch->gather_offset = XFER_WS_NO_GATHER;
			ch->tensor = p->dtensor[0];
			ch->first_write = (uint32_t)s->nwrites;
			ch->nwrites = ndst;
			p->k0[s->nchunks] = si.nshards > 1 ? (uint32_t)(a / si.shard_rows) : 0;
			p->k1[s->nchunks] = si.nshards > 1 ? (uint32_t)((b - 1) / si.shard_rows) : 0;
			for (uint32_t i = 0; i < ndst; i++) {
				const struct xfer_ws_tensor *tt = &s->tensors[p->dtensor[i]];
				struct xfer_ws_write *w;

				if ((rc = GROW(s->writes, s->nwrites, p->wcap)))
					return rc;
				w = &s->writes[s->nwrites++];
				w->chunk = (uint32_t)s->nchunks;
				w->dst_rank = tt->rank;
				w->dst_offset = tt->offset + (rows + a - sl[c].r0) * ncols * esz;
				w->scale_offset = quant ? tt->scale_offset +
					(srows + (a - sl[c].r0) / XFER_WS_FP8_BLOCK) * scols * 4 : 0;
			}
			s->nchunks++;
		}
		rows += sl[c].r1 - sl[c].r0;
		srows += ws_div_up(sl[c].r1 - sl[c].r0, XFER_WS_FP8_BLOCK);
	}
	return 0;
}

static int plan_layout(struct planner *p)
{
	const struct xfer_ws_model *m = p->m;
	struct xfer_ws_schedule *s = p->s;
	uint32_t E = m->nexperts, ep = p->l.ep, tp = p->l.tp, dp = p->l.dp;
	uint32_t per_ep = E ? (uint32_t)ws_div_up(E, ep) : 1;
	uint64_t dense = 0, *cnt_e = calloc(ep, sizeof(*cnt_e)), total = 0;
	int rc = 0;

	if (!cnt_e)
		return -ENOMEM;
	for (size_t gi = 0; gi < m->ngroups; gi++) {
		if (m->groups[gi].expert < 0)
			dense++;
		else
			cnt_e[(uint32_t)m->groups[gi].expert / per_ep]++;
	}
	for (uint32_t r = 0; r < s->ninfer; r++) {
		s->infers[r].first_tensor = (uint32_t)total;
		s->infers[r].ntensors = (uint32_t)(dense + cnt_e[(r / tp) % ep]);
		p->cursor[r] = (uint32_t)total;
		total += s->infers[r].ntensors;
	}
	free(cnt_e);
	if (total > UINT32_MAX)
		return -E2BIG;
	s->ntensors = total;
	s->tensors = calloc(total ? total : 1, sizeof(*s->tensors));
	if (!s->tensors)
		return -ENOMEM;
	for (size_t gi = 0; gi < m->ngroups && !rc; gi++) {
		const struct ws_group *g = &m->groups[gi];
		int repl = g->role == WS_REPL;

		for (uint32_t t = 0; t < (repl ? 1 : tp) && !rc; t++) {
			uint32_t n = 0;

			for (uint32_t d = 0; d < dp; d++)
				for (uint32_t e = 0; e < ep; e++) {
					if (g->expert >= 0 && (uint32_t)g->expert / per_ep != e)
						continue;
					for (uint32_t tt = repl ? 0 : t; tt < (repl ? tp : t + 1); tt++)
						p->dst[n++] = (d * ep + e) * tp + tt;
				}
			rc = plan_slice(p, (uint32_t)gi, t, n);
		}
	}
	for (uint32_t r = 0; r < s->ninfer; r++)
		s->infers[r].buf_bytes = align_up(p->off[r], p->align);
	return rc;
}

/* Owner candidate j of chunk c: (dp replica, shard) pairs, replica-major. */
static uint32_t cand_rank(const struct ws_shard_info *si, uint32_t k0, uint32_t nk, uint32_t j)
{
	return ws_shard_rank(si, j / nk, k0 + j % nk);
}

static uint64_t held_rows(const struct ws_shard_info *si, const struct xfer_ws_chunk *c, uint32_t k)
{
	uint64_t lo = (uint64_t)k * si->shard_rows, hi = lo + si->shard_rows;

	if (si->nshards == 1)
		return c->rows;
	if (lo < c->row0)
		lo = c->row0;
	if (hi > c->row0 + c->rows)
		hi = c->row0 + c->rows;
	return hi > lo ? hi - lo : 0;
}

static int cmp_cost_desc(const void *a, const void *b, void *arg)
{
	const uint64_t *cmp_cost = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	if (cmp_cost[x] != cmp_cost[y])
		return cmp_cost[x] > cmp_cost[y] ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int assign_owners(struct planner *p, uint64_t *tx, uint64_t *rx)
{
	struct xfer_ws_schedule *s = p->s;
	size_t nflex = 0, ngcap = 0;
	uint32_t *flex = malloc((s->nchunks ? s->nchunks : 1) * sizeof(*flex));
	uint64_t *cost = malloc((s->nchunks ? s->nchunks : 1) * sizeof(*cost));
	int rc = 0;

	if (!flex || !cost) {
		free(flex);
		free(cost);
		return -ENOMEM;
	}
	for (size_t c = 0; c < s->nchunks; c++) {
		struct xfer_ws_chunk *ch = &s->chunks[c];
		struct ws_shard_info si;

		cost[c] = (ch->out_bytes + ch->scale_bytes) * ch->nwrites;
		ws_shard_info(&p->t, p->m->nlayers, p->m->nexperts, &s->params[ch->param], &si);
		if (p->t.dp == 1 && p->k0[c] == p->k1[c]) {
			ch->owner = ws_shard_rank(&si, 0, p->k0[c]);
			tx[ch->owner] += cost[c];
		} else {
			flex[nflex++] = (uint32_t)c;
		}
	}
	qsort_r(flex, nflex, sizeof(*flex), cmp_cost_desc, cost);
	for (size_t i = 0; i < nflex && !rc; i++) {
		uint32_t c = flex[i], k0 = p->k0[c], nk = p->k1[c] - k0 + 1, best = 0;
		struct xfer_ws_chunk *ch = &s->chunks[c];
		uint64_t esz = xfer_ws_dtype_size(s->params[ch->param].dtype), best_held = 0;
		struct ws_shard_info si;

		ws_shard_info(&p->t, p->m->nlayers, p->m->nexperts, &s->params[ch->param], &si);
		for (uint32_t j = 0; j < nk * p->t.dp; j++) {
			uint32_t r = cand_rank(&si, k0, nk, j);
			uint64_t h = held_rows(&si, ch, k0 + j % nk);

			if (j == 0 || tx[r] < tx[cand_rank(&si, k0, nk, best)] ||
			    (tx[r] == tx[cand_rank(&si, k0, nk, best)] && h > best_held)) {
				best = j;
				best_held = h;
			}
		}
		ch->owner = cand_rank(&si, k0, nk, best);
		tx[ch->owner] += cost[c];
		if (nk == 1)
			continue;
		/* rows the owner lacks come from the shard holders of its replica */
		ch->gather_offset = align_up(s->trainers[ch->owner].gather_bytes, p->align);
		s->trainers[ch->owner].gather_bytes = ch->gather_offset + ch->rows * ch->cols * esz;
		for (uint32_t k = k0; k < k0 + nk; k++) {
			uint64_t h = held_rows(&si, ch, k), lo;
			struct xfer_ws_gather *gt;

			if (k == k0 + best % nk || !h)
				continue;
			if ((rc = GROW(s->gathers, s->ngathers, ngcap)))
				break;
			lo = (uint64_t)k * si.shard_rows > ch->row0 ? (uint64_t)k * si.shard_rows : ch->row0;
			gt = &s->gathers[s->ngathers++];
			gt->src_rank = ws_shard_rank(&si, best / nk, k);
			gt->chunk = c;
			gt->row0 = lo;
			gt->rows = h;
			gt->bytes = h * ch->cols * esz;
			gt->dst_offset = ch->gather_offset + (lo - ch->row0) * ch->cols * esz;
			tx[gt->src_rank] += gt->bytes;
			rx[ch->owner] += gt->bytes;
		}
	}
	free(flex);
	free(cost);
	return rc;
}

struct kv {
	double k;
	uint32_t i, pad;
};

static int cmp_kv(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;

	if (x->k != y->k)
		return x->k < y->k ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Counting sort of n items by bucket, then each bucket sorted by key (ties: index). */
static void bucket_sort(uint32_t *idx, const uint32_t *bucket, size_t n, uint32_t nb,
			uint32_t *start, const double *key, struct kv *tmp)
{
	memset(start, 0, (nb + 1) * sizeof(*start));
	for (size_t i = 0; i < n; i++)
		start[bucket[i] + 1]++;
	for (uint32_t b = 0; b < nb; b++)
		start[b + 1] += start[b];
	for (size_t i = 0; i < n; i++)
		tmp[start[bucket[i]]++] = (struct kv){ key[i], (uint32_t)i, 0 };
	for (uint32_t b = nb; b > 0; b--)
		start[b] = start[b - 1];
	start[0] = 0;
	for (uint32_t b = 0; b < nb; b++)
		qsort(tmp + start[b], start[b + 1] - start[b], sizeof(*tmp), cmp_kv);
	for (size_t i = 0; i < n; i++)
		idx[i] = tmp[i].i;
}

/*
 * Issue order (see 4. above): a write's key is its byte position in its
 * sender's list (chunks by class fraction, writes rotated); each receiver
 * takes its writes in key order and gives each the time its NIC would start
 * it; each sender then issues by those times. Chunks are prepared in order
 * of first use.
 */
static int order(struct planner *p)
{
	struct xfer_ws_schedule *s = p->s;
	size_t nc = s->nchunks + 1, nw = s->nwrites + 1, ng = s->ngathers + 1;
	uint32_t nt = s->ntrainers, nb = (nt > s->ninfer ? nt : s->ninfer) + 1;
	uint32_t *idx = malloc(nw * sizeof(*idx)), *bucket = malloc(nw * sizeof(*bucket));
	uint32_t *start = malloc((nb + 1) * sizeof(*start)), *newpos = malloc(nc * sizeof(*newpos));
	uint32_t *cidx = malloc(nc * sizeof(*cidx)), *wbc = malloc(nw * sizeof(*wbc));
	double *key = malloc((nw > nc ? nw : nc) * sizeof(*key)), *wkey;
	uint64_t *tot = calloc(2 * (size_t)nt + 2, sizeof(*tot)), *cum = calloc(2 * (size_t)nt + 2, sizeof(*cum));
	struct xfer_ws_chunk *chunks = malloc(nc * sizeof(*chunks));
	struct xfer_ws_write *writes = malloc(nw * sizeof(*writes));
	struct xfer_ws_gather *gathers = malloc(ng * sizeof(*gathers));
	uint32_t *byc = malloc(ng * sizeof(*byc)), *gpos = calloc(nc + 1, sizeof(*gpos));
	uint64_t *sent = calloc(nb, sizeof(*sent)), *stot = calloc(nb, sizeof(*stot));
	struct kv *tmp = malloc(nw * sizeof(*tmp));
	int rc = -ENOMEM;

	if (!idx || !bucket || !start || !newpos || !cidx || !wbc || !key || !tot || !cum ||
	    !chunks || !writes || !gathers || !byc || !gpos || !sent || !stot || !tmp)
		goto out;
	/* 1. per sender: chunks merged by class fraction, writes rotated -> byte position */
	for (size_t c = 0; c < s->nchunks; c++) {
		const struct xfer_ws_chunk *ch = &s->chunks[c];

		tot[2 * ch->owner + (ch->nwrites > p->l.dp)] += wire_bytes(ch) * ch->nwrites + 1;
		stot[ch->owner] += wire_bytes(ch) * ch->nwrites;
		bucket[c] = ch->owner;
	}
	for (size_t c = 0; c < s->nchunks; c++) {
		const struct xfer_ws_chunk *ch = &s->chunks[c];
		size_t cl = 2 * ch->owner + (ch->nwrites > p->l.dp);
		uint64_t b = wire_bytes(ch) * ch->nwrites + 1;

		key[c] = ((double)cum[cl] + b / 2.0) / (double)tot[cl];
		cum[cl] += b;
	}
	bucket_sort(cidx, bucket, s->nchunks, nt, start, key, tmp);
	/* key is free again: it holds the writes' sender positions (wkey), then, once
	 * those are copied into tmp by the next sort, the receiver positions */
	wkey = key;
	for (size_t i = 0; i < s->nchunks; i++) {
		const struct xfer_ws_chunk *ch = &s->chunks[cidx[i]];
		uint32_t seq = (uint32_t)(i - start[ch->owner]);
		uint32_t rot = (ch->owner + seq) % ch->nwrites;

		for (uint32_t k = 0; k < ch->nwrites; k++) {
			uint32_t w = ch->first_write + (k + rot) % ch->nwrites;

			wkey[w] = ((double)sent[ch->owner] + wire_bytes(ch) / 2.0) / (double)(stot[ch->owner] + 1);
			sent[ch->owner] += wire_bytes(ch);
		}
	}
	/* 2. per receiver: in key order, the byte position its NIC reaches each write */
	for (size_t w = 0; w < s->nwrites; w++)
		bucket[w] = s->writes[w].dst_rank;
	bucket_sort(idx, bucket, s->nwrites, s->ninfer, start, wkey, tmp);
	memset(sent, 0, nb * sizeof(*sent));
	for (size_t i = 0; i < s->nwrites; i++) {
		const struct xfer_ws_write *wr = &s->writes[idx[i]];
		uint64_t b = wire_bytes(&s->chunks[wr->chunk]);

		key[idx[i]] = (double)sent[wr->dst_rank] + b / 2.0;
		sent[wr->dst_rank] += b;
	}
	/* 3. per sender: issue in that order */
	for (size_t w = 0; w < s->nwrites; w++)
		bucket[w] = s->chunks[s->writes[w].chunk].owner;
	bucket_sort(idx, bucket, s->nwrites, nt, start, key, tmp);
	for (uint32_t t = 0; t < nt; t++) {
		s->trainers[t].first_write = start[t];
		s->trainers[t].nwrites = start[t + 1] - start[t];
	}
	/* 4. chunks in order of first use, grouped by owner */
	for (size_t c = 0; c < s->nchunks; c++)
		newpos[c] = UINT32_MAX;
	{
		uint32_t n = 0;

		for (size_t i = 0; i < s->nwrites; i++) {
			uint32_t c = s->writes[idx[i]].chunk;

			if (newpos[c] == UINT32_MAX) {
				newpos[c] = n;
				chunks[n++] = s->chunks[c];
			}
		}
	}
	for (uint32_t t = 0, first = 0; t < nt; t++) {
		s->trainers[t].first_chunk = first;
		s->trainers[t].nchunks = 0;
		while (first < s->nchunks && chunks[first].owner == t) {
			first++;
			s->trainers[t].nchunks++;
		}
	}
	/* writes in issue order; each chunk's writes listed in that order too */
	for (size_t c = 0; c < s->nchunks; c++)
		gpos[c + 1] = chunks[c].nwrites;
	for (size_t c = 0; c < s->nchunks; c++) {
		gpos[c + 1] += gpos[c];
		chunks[c].first_write = gpos[c];
		chunks[c].nwrites = 0;
	}
	for (size_t i = 0; i < s->nwrites; i++) {
		struct xfer_ws_chunk *ch;

		writes[i] = s->writes[idx[i]];
		writes[i].chunk = newpos[writes[i].chunk];
		ch = &chunks[writes[i].chunk];
		wbc[ch->first_write + ch->nwrites++] = (uint32_t)i;
	}
	/* the reordered arrays replace the planning ones (no copy back) */
	free(s->chunks);
	s->chunks = chunks;
	chunks = NULL;
	free(s->writes);
	s->writes = writes;
	writes = NULL;
	s->writes_by_chunk = wbc;
	wbc = NULL;
	/* peak staging when each chunk is prepared at its first write, freed after its last */
	for (uint32_t t = 0; t < nt; t++) {
		const struct xfer_ws_trainer_rank *tr = &s->trainers[t];
		uint64_t cur = 0, peak = 0;

		for (uint32_t i = tr->first_write; i < tr->first_write + tr->nwrites; i++) {
			const struct xfer_ws_chunk *ch = &s->chunks[s->writes[i].chunk];

			if (s->writes_by_chunk[ch->first_write] == i)
				cur += ws_chunk_staging_bytes(ch);
			peak = cur > peak ? cur : peak;
			if (s->writes_by_chunk[ch->first_write + ch->nwrites - 1] == i)
				cur -= ws_chunk_staging_bytes(ch);
		}
		s->trainers[t].peak_staging = peak;
	}
	/* gathers grouped by sender (stable), and indexed by chunk */
	memset(gpos, 0, (nc + 1) * sizeof(*gpos));
	for (size_t g = 0; g < s->ngathers; g++) {
		s->gathers[g].chunk = newpos[s->gathers[g].chunk];
		s->trainers[s->gathers[g].src_rank].ngathers++;
		gpos[s->gathers[g].chunk + 1]++;
	}
	for (uint32_t t = 0, first = 0; t < nt; t++) {
		s->trainers[t].first_gather = first;
		first += s->trainers[t].ngathers;
		s->trainers[t].ngathers = 0;
	}
	for (size_t g = 0; g < s->ngathers; g++) {
		struct xfer_ws_trainer_rank *tr = &s->trainers[s->gathers[g].src_rank];

		gathers[tr->first_gather + tr->ngathers++] = s->gathers[g];
	}
	free(s->gathers);
	s->gathers = gathers;
	gathers = NULL;
	for (size_t c = 0; c < s->nchunks; c++) {
		s->chunks[c].first_gather = gpos[c];
		s->chunks[c].ngathers = 0;
		gpos[c + 1] += gpos[c];
	}
	for (size_t g = 0; g < s->ngathers; g++) {
		struct xfer_ws_chunk *ch = &s->chunks[s->gathers[g].chunk];

		byc[ch->first_gather + ch->ngathers++] = (uint32_t)g;
	}
	s->gathers_by_chunk = byc;
	byc = NULL;
	rc = 0;
out:
	free(idx);
	free(bucket);
	free(start);
	free(newpos);
	free(cidx);
	free(wbc);
	free(key);
	free(tot);
	free(cum);
	free(chunks);
	free(writes);
	free(gathers);
	free(byc);
	free(gpos);
	free(sent);
	free(stot);
	free(tmp);
	return rc;
}

static int build_strtab(struct planner *p)
{
	const struct xfer_ws_model *m = p->m;
	struct xfer_ws_schedule *s = p->s;
	size_t len = 0;

	for (size_t g = 0; g < m->ngroups; g++)
		len += strlen(m->groups[g].name) + 1;
	s->strtab = malloc(len ? len : 1);
	if (!s->strtab)
		return -ENOMEM;
	s->strtab_len = len;
	p->gname = malloc((m->ngroups ? m->ngroups : 1) * sizeof(*p->gname));
	if (!p->gname)
		return -ENOMEM;
	len = 0;
	for (size_t g = 0; g < m->ngroups; g++) {
		size_t n = strlen(m->groups[g].name) + 1;

		p->gname[g] = (uint32_t)len;
		memcpy(s->strtab + len, m->groups[g].name, n);
		len += n;
	}
	return 0;
}

static int check_layouts(const xfer_ws_model *m, const struct xfer_ws_trainer_layout *t,
			 const struct xfer_ws_infer_layout *l)
{
	if (!t->dp || !t->pp || !t->fsdp || !t->ep || !l->dp || !l->ep || !l->tp) {
		ws_last_error("a layout dimension is 0");
		return -EINVAL;
	}
	if ((uint64_t)t->dp * t->pp * t->fsdp * t->ep > WS_MAX_RANKS ||
	    (uint64_t)l->dp * l->ep * l->tp > WS_MAX_RANKS) {
		ws_last_error("%s: more than %u ranks",
			      (uint64_t)t->dp * t->pp * t->fsdp * t->ep > WS_MAX_RANKS ? "trainer"
											 : "inference",
			      (unsigned)WS_MAX_RANKS);
		return -EINVAL;
	}
	if (l->dtype != XFER_WS_DT_BF16 && l->dtype != XFER_WS_DT_FP8E4M3) {
		ws_last_error("inference dtype %u: neither bf16 nor fp8", l->dtype);
		return -EINVAL;
	}
	if (t->pp > m->nlayers) {
		ws_last_error("trainer pp=%u: more stages than the model's %u layers", t->pp,
			      m->nlayers);
		return -EINVAL;
	}
	if (m->nexperts && (t->ep > m->nexperts || l->ep > m->nexperts)) {
		ws_last_error("%s ep=%u: more than the model's %u routed experts",
			      t->ep > m->nexperts ? "trainer" : "inference",
			      t->ep > m->nexperts ? t->ep : l->ep, m->nexperts);
		return -EINVAL;
	}
	/* Each tensor-parallel rank holds whole attention heads (as inference
	 * engines require); more ranks than heads would leave some with empty
	 * slices, which no engine runs and the schedule cannot describe. */
	if (m->nheads && l->tp > m->nheads) {
		ws_last_error("inference tp=%u: more than the model's %u attention heads", l->tp,
			      m->nheads);
		return -EINVAL;
	}
	return 0;
}

XFER_EXPORT int xfer_ws_plan(const xfer_ws_model *m, const struct xfer_ws_trainer_layout *ut,
			     const struct xfer_ws_infer_layout *ul,
			     const struct xfer_ws_plan_attr *uattr, struct xfer_ws_schedule **out)
{
	/* our copies of the caller's structs (struct_copy.h); attr's defaults are 0 */
	struct xfer_ws_trainer_layout tk = { .size = sizeof(tk) };
	struct xfer_ws_infer_layout lk = { .size = sizeof(lk) };
	struct xfer_ws_plan_attr ak = { .size = sizeof(ak) };
	const struct xfer_ws_trainer_layout *t = &tk;
	const struct xfer_ws_infer_layout *l = &lk;
	const struct xfer_ws_plan_attr *attr = uattr ? &ak : NULL;
	struct planner p = { .m = m };
	struct xfer_ws_schedule *s;
	uint64_t *tx = NULL, *rx = NULL;
	int rc;

	ws_last_error(NULL);
	if (!m || !out || !ut || !ul)
		return -EINVAL;
	if ((rc = xfer_struct_copy_in(&tk, sizeof(tk), ut, XFER_WS_TRAINER_LAYOUT_SIZE_VER0)) ||
	    (rc = xfer_struct_copy_in(&lk, sizeof(lk), ul, XFER_WS_INFER_LAYOUT_SIZE_VER0)) ||
	    (uattr && (rc = xfer_struct_copy_in(&ak, sizeof(ak), uattr, XFER_WS_PLAN_ATTR_SIZE_VER0)))) {
		ws_last_error("a layout or plan attr of a size this library cannot take");
		return rc;
	}
	if ((rc = check_layouts(m, t, l)))
		return rc;
	if (attr && (attr->flags || attr->reserved))
		return -EINVAL;
	p.t = *t;
	p.l = *l;
	p.min_chunk = attr && attr->min_chunk ? attr->min_chunk : DEF_MIN_CHUNK;
	p.max_chunk = attr && attr->max_chunk ? attr->max_chunk : DEF_MAX_CHUNK;
	p.align = attr && attr->align ? attr->align : DEF_ALIGN;
	if (p.max_chunk < p.min_chunk || (p.align & (p.align - 1)) || p.align < 16) {
		ws_last_error(p.max_chunk < p.min_chunk ? "max chunk %llu below min chunk %llu"
			      : "align %llu: not a power of two of at least 16",
			      (unsigned long long)(p.max_chunk < p.min_chunk ? p.max_chunk : p.align),
			      (unsigned long long)p.min_chunk);
		return -EINVAL;
	}
	s = p.s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->version = XFER_WS_SCHEDULE_VERSION;
	s->align = p.align;
	s->trainer = *t;
	s->infer = *l;
	s->ntrainers = xfer_ws_trainer_world(t);
	s->ninfer = xfer_ws_infer_world(l);
	s->nlayers = m->nlayers;
	s->nexperts = m->nexperts;
	s->nparams = m->nparams;
	s->params = malloc((m->nparams ? m->nparams : 1) * sizeof(*s->params));
	s->trainers = calloc(s->ntrainers, sizeof(*s->trainers));
	s->infers = calloc(s->ninfer, sizeof(*s->infers));
	p.cursor = calloc(s->ninfer, sizeof(*p.cursor));
	p.off = calloc(s->ninfer, sizeof(*p.off));
	p.dst = calloc(s->ninfer, sizeof(*p.dst));
	p.dtensor = calloc(s->ninfer, sizeof(*p.dtensor));
	tx = calloc(s->ntrainers, sizeof(*tx));
	rx = calloc(s->ntrainers, sizeof(*rx));
	rc = -ENOMEM;
	if (!s->params || !s->trainers || !s->infers || !p.cursor || !p.off || !p.dst ||
	    !p.dtensor || !tx || !rx)
		goto out;
	memcpy(s->params, m->params, m->nparams * sizeof(*s->params));
	if ((rc = build_strtab(&p)) || (rc = plan_layout(&p)))
		goto out;
	if (s->nchunks > UINT32_MAX || s->nwrites > UINT32_MAX) {
		rc = -E2BIG;
		goto out;
	}
	if ((rc = assign_owners(&p, tx, rx)) || (rc = order(&p)))
		goto out;
	for (uint32_t i = 0; i < s->ntrainers; i++) {
		s->trainers[i].tx_bytes = tx[i];
		s->trainers[i].rx_bytes = rx[i];
	}
	for (size_t w = 0; w < s->nwrites; w++) {
		const struct xfer_ws_chunk *ch = &s->chunks[s->writes[w].chunk];

		s->infers[s->writes[w].dst_rank].rx_bytes += ch->out_bytes + ch->scale_bytes;
	}
	rc = 0;
out:
	free(p.k0);
	free(p.k1);
	free(p.cuts);
	free(p.cursor);
	free(p.off);
	free(p.dst);
	free(p.dtensor);
	free(p.gname);
	free(tx);
	free(rx);
	if (rc) {
		xfer_ws_schedule_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

XFER_EXPORT void xfer_ws_schedule_free(struct xfer_ws_schedule *s)
{
	if (!s)
		return;
	free(s->params);
	free(s->tensors);
	free(s->chunks);
	free(s->writes);
	free(s->writes_by_chunk);
	free(s->gathers);
	free(s->gathers_by_chunk);
	free(s->trainers);
	free(s->infers);
	free(s->strtab);
	free(s);
}

XFER_EXPORT int xfer_ws_shard_rows(const struct xfer_ws_schedule *s, uint32_t param,
				   uint32_t trainer, uint64_t *row0, uint64_t *rows)
{
	struct ws_shard_info si;

	if (!s || param >= s->nparams || trainer >= s->ntrainers)
		return -EINVAL;
	ws_shard_info(&s->trainer, s->nlayers, s->nexperts, &s->params[param], &si);
	*row0 = 0;
	*rows = 0;
	for (uint32_t d = 0; d < s->trainer.dp; d++)
		for (uint32_t k = 0; k < si.nshards; k++) {
			uint64_t lo = (uint64_t)k * si.shard_rows;

			if (ws_shard_rank(&si, d, k) != trainer || lo >= s->params[param].rows)
				continue;
			*row0 = lo;
			*rows = s->params[param].rows - lo < si.shard_rows ? s->params[param].rows - lo
									  : si.shard_rows;
			return 0;
		}
	return 0;
}
