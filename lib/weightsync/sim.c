// SPDX-License-Identifier: MIT
/*
 * Cluster simulator: a time-stepped flow model of running a schedule.
 *
 * Per trainer, three stages as the executor runs them:
 *  - prepare: chunks in the schedule's order, one at a time: wait for the
 *    chunk's gathered rows, copy into staging (copy_gbs, source bytes), for
 *    fp8 quantise (xform_gbs, source bytes), plus chunk_us; a chunk is
 *    admitted only while the staged bytes stay under the watermark (never
 *    under the schedule's peak_staging), and released when its last write
 *    completes;
 *  - send: the first `window` unsent writes (gathers before them) whose
 *    chunk is prepared are in flight at once, each after op_us of posting
 *    latency;
 *  - the network: every trainer NIC (send and receive sides) and every
 *    inference NIC is a link with its rate; in-flight transfers share the
 *    links max-min fairly (progressive filling, recomputed every step), as
 *    RDMA flows under congestion control do. A transfer that ends inside a
 *    step hands the rest of the step to the sender's next write, within
 *    what its receiver has left in that step.
 * No link ever carries more than rate x step, so the prediction can never
 * beat the bound (busiest NIC bytes / rate). The step is the bound / 20000.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "struct_copy.h"
#include "ws_internal.h"

_Static_assert(XFER_WS_CLUSTER_SIZE_VER0 == offsetof(struct xfer_ws_cluster, trainer_nic_gbps),
	       "the cluster's floor is size and window");

#define STEPS 20000.0
#define FILL_ROUNDS 8

struct flow {
	uint32_t item;   /* write index, or gather index | GATHER */
	uint32_t link;   /* receiving link */
	uint32_t sending;/* 0 while the write is still being posted */
	double rate;     /* bytes this step */
};

#define GATHER 0x80000000u

struct trainer {
	uint32_t head, end;      /* unsent writes, issue order from head */
	uint32_t ghead, gend;    /* unsent gathers */
	uint32_t next, cend;     /* chunks still to prepare */
	int32_t cur;             /* chunk being prepared, -1 none */
	double prep_left, prep_t;
	uint64_t staged, watermark;
	uint32_t nflows, open;
	double spare;
};

struct sim {
	const struct xfer_ws_schedule *s;
	struct xfer_ws_cluster c;
	double trate, irate, dt;
	struct trainer *tr;
	struct flow *flows;      /* ntrainers x window */
	uint64_t *wleft, *gleft;
	double *wdelay;          /* posting latency left per write */
	uint32_t *gathers_left, *writes_left;
	uint8_t *prepared;
	uint32_t *active;        /* == stamp: in flight this step */
	uint32_t stamp;
	uint32_t *lflows;        /* per receiving link: flows this step */
	double *lspare, *lcap, *lgrant; /* per receiving link */
	uint64_t done, total;    /* transfers (writes + gathers) */
	double end;
};

static double prep_time(const struct sim *sm, const struct xfer_ws_chunk *ch)
{
	double src = (double)(ch->rows * ch->cols * xfer_ws_dtype_size(sm->s->params[ch->param].dtype));
	double dur = sm->c.chunk_us * 1e-6 + src / (sm->c.copy_gbs * 1e9);

	if (ch->transform == XFER_WS_XF_FP8)
		dur += src / (sm->c.xform_gbs * 1e9);
	return dur;
}

/* Run trainer t's prepare stage for the step [now, now + dt). */
static void prep_step(struct sim *sm, struct trainer *t)
{
	const struct xfer_ws_schedule *s = sm->s;
	double budget = sm->dt;

	while (budget > 0) {
		if (t->cur < 0) {
			const struct xfer_ws_chunk *ch;

			if (t->next == t->cend)
				return;
			ch = &s->chunks[t->next];
			if (sm->gathers_left[t->next] ||
			    (t->staged && t->staged + ws_chunk_staging_bytes(ch) > t->watermark))
				return;
			t->staged += ws_chunk_staging_bytes(ch);
			t->cur = (int32_t)t->next++;
			t->prep_left = prep_time(sm, ch);
			t->prep_t += t->prep_left;
		}
		if (t->prep_left > budget) {
			t->prep_left -= budget;
			return;
		}
		budget -= t->prep_left;
		sm->prepared[t->cur] = 1;
		t->cur = -1;
	}
}

static uint32_t link_of(const struct sim *sm, uint32_t item)
{
	const struct xfer_ws_schedule *s = sm->s;

	if (item & GATHER)
		return s->ninfer + s->chunks[s->gathers[item & ~GATHER].chunk].owner;
	return s->writes[item].dst_rank;
}

static uint64_t *left_of(struct sim *sm, uint32_t item)
{
	return item & GATHER ? &sm->gleft[item & ~GATHER] : &sm->wleft[item];
}

/* The next unsent, not yet active, sendable transfer of trainer t in window order. */
static int next_item(struct sim *sm, struct trainer *t, uint32_t *item, uint32_t *seen)
{
	const struct xfer_ws_schedule *s = sm->s;

	for (uint32_t i = t->ghead; i < t->gend && *seen < sm->c.window; i++) {
		if (!sm->gleft[i])
			continue;
		++*seen;
		if (sm->active[s->nwrites + i] != sm->stamp) {
			*item = i | GATHER;
			return 1;
		}
	}
	for (uint32_t i = t->head; i < t->end && *seen < sm->c.window; i++) {
		if (!sm->wleft[i])
			continue;
		++*seen;
		if (sm->active[i] != sm->stamp && sm->prepared[s->writes[i].chunk]) {
			*item = i;
			return 1;
		}
	}
	return 0;
}

static void finish(struct sim *sm, uint32_t item, double at)
{
	const struct xfer_ws_schedule *s = sm->s;

	sm->done++;
	sm->end = at > sm->end ? at : sm->end;
	if (item & GATHER) {
		sm->gathers_left[s->gathers[item & ~GATHER].chunk]--;
	} else {
		uint32_t c = s->writes[item].chunk;

		if (--sm->writes_left[c] == 0)
			sm->tr[s->chunks[c].owner].staged -= ws_chunk_staging_bytes(&s->chunks[c]);
	}
}

static int step(struct sim *sm, double now)
{
	const struct xfer_ws_schedule *s = sm->s;
	uint32_t W = sm->c.window, nl = s->ninfer + s->ntrainers;

	sm->stamp++;

	/* in-flight set: the first window sendable transfers of each trainer */
	for (uint32_t l = 0; l < nl; l++)
		sm->lspare[l] = sm->lcap[l] * sm->dt;
	for (uint32_t i = 0; i < s->ntrainers; i++) {
		struct trainer *t = &sm->tr[i];
		uint32_t seen = 0, item;

		prep_step(sm, t);
		while (t->ghead < t->gend && !sm->gleft[t->ghead])
			t->ghead++;
		while (t->head < t->end && !sm->wleft[t->head])
			t->head++;
		t->nflows = 0;
		while (t->nflows < W && next_item(sm, t, &item, &seen)) {
			struct flow *f = &sm->flows[(size_t)i * W + t->nflows++];

			f->item = item;
			f->link = link_of(sm, item);
			f->rate = 0;
			f->sending = (item & GATHER) || sm->wdelay[item] <= 0;
			sm->active[item & GATHER ? s->nwrites + (item & ~GATHER) : item] = sm->stamp;
		}
		t->spare = sm->trate * sm->dt;
	}
	/* max-min fair shares by progressive filling: each round, every flow not
	 * yet stopped by a full link gets the smaller of its sender's and its
	 * receiver's equal split of what is left */
	for (int round = 0; round < FILL_ROUNDS; round++) {
		double eps = 1e-9 * sm->trate * sm->dt;
		int grew = 0;

		for (uint32_t l = 0; l < nl; l++)
			sm->lflows[l] = 0;
		for (uint32_t i = 0; i < s->ntrainers; i++) {
			struct trainer *t = &sm->tr[i];

			t->open = 0;
			for (uint32_t k = 0; k < t->nflows; k++) {
				const struct flow *f = &sm->flows[(size_t)i * W + k];

				if (!f->sending || sm->lspare[f->link] <= eps)
					continue;
				t->open++;
				if (t->spare > eps)
					sm->lflows[f->link]++;
			}
		}
		for (uint32_t l = 0; l < nl; l++)
			sm->lgrant[l] = 0;
		for (uint32_t i = 0; i < s->ntrainers; i++) {
			struct trainer *t = &sm->tr[i];
			double granted = 0;

			if (!t->open || t->spare <= eps)
				continue;
			for (uint32_t k = 0; k < t->nflows; k++) {
				struct flow *f = &sm->flows[(size_t)i * W + k];
				double add, share = t->spare / t->open;

				if (!f->sending || sm->lspare[f->link] <= eps)
					continue;
				add = sm->lspare[f->link] / sm->lflows[f->link];
				add = add < share ? add : share;
				f->rate += add;
				granted += add;
				sm->lgrant[f->link] += add;
			}
			t->spare -= granted;
			grew |= granted > eps;
		}
		for (uint32_t l = 0; l < nl; l++)
			sm->lspare[l] -= sm->lgrant[l];
		if (!grew)
			break;
	}
	/* move the bytes */
	for (uint32_t i = 0; i < s->ntrainers; i++) {
		struct trainer *t = &sm->tr[i];

		for (uint32_t k = 0; k < t->nflows; k++) {
			struct flow *f = &sm->flows[(size_t)i * W + k];
			uint32_t item = f->item, seen = 0;
			double rate = f->rate, tleft = sm->dt;

			if (!f->sending) {
				sm->wdelay[item] -= sm->dt;
				continue;
			}
			/* the flow's bytes this step: rate; a finished transfer passes the rest on */
			for (;;) {
				uint64_t *left = left_of(sm, item);
				double can = rate * (tleft / sm->dt);

				if ((double)*left > can) {
					*left -= (uint64_t)can;
					break;
				}
				tleft -= (double)*left / rate * sm->dt;
				*left = 0;
				finish(sm, item, now + (sm->dt - tleft));
				if (tleft <= 0 || !next_item(sm, t, &item, &seen))
					break;
				sm->active[item & GATHER ? s->nwrites + (item & ~GATHER) : item] = sm->stamp;
				if (!(item & GATHER) && sm->wdelay[item] > 0)
					break;
				{
					uint32_t l = link_of(sm, item);
					/* within what the new receiver has left this step */
					double r = sm->lspare[l] / tleft * sm->dt;
					rate = rate < r ? rate : r;
					if (rate <= 0)
						break;
					sm->lspare[l] -= rate * tleft / sm->dt;
				}
			}
		}
	}
	return 0;
}

XFER_EXPORT void xfer_ws_cluster_defaults_size(struct xfer_ws_cluster *c, size_t size)
{
	const struct xfer_ws_cluster def = {
		.size = sizeof(def),
		.trainer_nic_gbps = 400,
		.infer_nic_gbps = 400,
		.copy_gbs = 1000,
		.xform_gbs = 400,
		.op_us = 2,
		.chunk_us = 10,
		.barrier_us = 20,
		.watermark = 2ull << 30,
		.window = 16,
	};

	if (!c)
		return;
	xfer_struct_init(c, size, &def, sizeof(def));
}

/* Fields left at 0 take their defaults; the inference NICs default to the
 * trainers' rate as resolved. */
static void cluster_resolve(struct xfer_ws_cluster *c)
{
	struct xfer_ws_cluster def;

	xfer_ws_cluster_defaults(&def);
	c->trainer_nic_gbps = c->trainer_nic_gbps > 0 ? c->trainer_nic_gbps : def.trainer_nic_gbps;
	c->infer_nic_gbps = c->infer_nic_gbps > 0 ? c->infer_nic_gbps : c->trainer_nic_gbps;
	c->copy_gbs = c->copy_gbs > 0 ? c->copy_gbs : def.copy_gbs;
	c->xform_gbs = c->xform_gbs > 0 ? c->xform_gbs : def.xform_gbs;
	c->op_us = c->op_us > 0 ? c->op_us : def.op_us;
	c->chunk_us = c->chunk_us > 0 ? c->chunk_us : def.chunk_us;
	c->barrier_us = c->barrier_us > 0 ? c->barrier_us : def.barrier_us;
	c->watermark = c->watermark ? c->watermark : def.watermark;
	c->window = c->window ? c->window : def.window;
}

XFER_EXPORT int xfer_ws_cluster_resolve(struct xfer_ws_cluster *uc)
{
	struct xfer_ws_cluster k = { .size = sizeof(k) };
	int ret;

	if (!uc)
		return -EINVAL;
	ret = xfer_struct_copy_in(&k, sizeof(k), uc, XFER_WS_CLUSTER_SIZE_VER0);
	if (ret)
		return ret;
	cluster_resolve(&k);
	xfer_struct_fill(uc, xfer_struct_size(uc), &k, sizeof(k));
	return 0;
}

XFER_EXPORT int xfer_ws_simulate(const struct xfer_ws_schedule *s,
				 const struct xfer_ws_cluster *ucl, struct xfer_ws_sim_result *r)
{
	struct sim sm = { .s = s };
	double tx_max = 0, rx_max = 0, irx_max = 0, now = 0;
	uint32_t nl;
	int rc = -ENOMEM;

	if (!s || !r)
		return -EINVAL;
	/* our copy of the caller's struct (struct_copy.h): the fields an older
	 * caller lacks are 0, which means "the default" */
	sm.c = (struct xfer_ws_cluster){ .size = sizeof(sm.c) };
	if (ucl) {
		int ret = xfer_struct_copy_in(&sm.c, sizeof(sm.c), ucl, XFER_WS_CLUSTER_SIZE_VER0);

		if (ret)
			return ret;
	}
	cluster_resolve(&sm.c);
	memset(r, 0, sizeof(*r));
	sm.trate = sm.c.trainer_nic_gbps * 1e9 / 8;
	sm.irate = sm.c.infer_nic_gbps * 1e9 / 8;
	for (uint32_t i = 0; i < s->ntrainers; i++) {
		double tx = (double)s->trainers[i].tx_bytes / sm.trate;
		double rx = (double)s->trainers[i].rx_bytes / sm.trate;

		tx_max = tx > tx_max ? tx : tx_max;
		rx_max = rx > rx_max ? rx : rx_max;
	}
	for (uint32_t i = 0; i < s->ninfer; i++) {
		double rx = (double)s->infers[i].rx_bytes / sm.irate;

		irx_max = rx > irx_max ? rx : irx_max;
	}
	r->trainer_bound_s = tx_max > rx_max ? tx_max : rx_max;
	r->infer_bound_s = irx_max;
	r->bound_s = r->trainer_bound_s > irx_max ? r->trainer_bound_s : irx_max;
	sm.dt = r->bound_s / STEPS > 1e-7 ? r->bound_s / STEPS : 1e-7;

	nl = s->ninfer + s->ntrainers;
	sm.tr = calloc(s->ntrainers, sizeof(*sm.tr));
	sm.flows = calloc((size_t)s->ntrainers * sm.c.window, sizeof(*sm.flows));
	sm.gathers_left = calloc(s->nchunks + 1, sizeof(*sm.gathers_left));
	sm.writes_left = calloc(s->nchunks + 1, sizeof(*sm.writes_left));
	sm.prepared = calloc(s->nchunks + 1, sizeof(*sm.prepared));
	sm.active = calloc(s->nwrites + s->ngathers + 1, sizeof(*sm.active));
	sm.wleft = calloc(s->nwrites + 1, sizeof(*sm.wleft));
	sm.wdelay = calloc(s->nwrites + 1, sizeof(*sm.wdelay));
	sm.gleft = calloc(s->ngathers + 1, sizeof(*sm.gleft));
	sm.lflows = calloc(nl, sizeof(*sm.lflows));
	sm.lspare = calloc(nl, sizeof(*sm.lspare));
	sm.lcap = calloc(nl, sizeof(*sm.lcap));
	sm.lgrant = calloc(nl, sizeof(*sm.lgrant));
	if (!sm.tr || !sm.flows || !sm.gathers_left || !sm.writes_left || !sm.prepared || !sm.active ||
	    !sm.wleft || !sm.wdelay || !sm.gleft || !sm.lflows || !sm.lspare || !sm.lcap || !sm.lgrant)
		goto out;
	for (uint32_t l = 0; l < nl; l++)
		sm.lcap[l] = l < s->ninfer ? sm.irate : sm.trate;
	for (uint64_t c = 0; c < s->nchunks; c++) {
		sm.gathers_left[c] = s->chunks[c].ngathers;
		sm.writes_left[c] = s->chunks[c].nwrites;
	}
	for (uint64_t w = 0; w < s->nwrites; w++) {
		const struct xfer_ws_chunk *ch = &s->chunks[s->writes[w].chunk];

		sm.wleft[w] = ch->out_bytes + ch->scale_bytes;   /* bytes on the wire */
		sm.wdelay[w] = sm.c.op_us * 1e-6;
	}
	for (uint64_t g = 0; g < s->ngathers; g++)
		sm.gleft[g] = s->gathers[g].bytes;
	sm.total = s->nwrites + s->ngathers;
	for (uint32_t i = 0; i < s->ntrainers; i++) {
		const struct xfer_ws_trainer_rank *tr = &s->trainers[i];
		struct trainer *t = &sm.tr[i];

		t->next = tr->first_chunk;
		t->cend = tr->first_chunk + tr->nchunks;
		t->head = tr->first_write;
		t->end = tr->first_write + tr->nwrites;
		t->ghead = tr->first_gather;
		t->gend = tr->first_gather + tr->ngathers;
		t->cur = -1;
		/* preparing at first use needs peak_staging; never allow less */
		t->watermark = sm.c.watermark > tr->peak_staging ? sm.c.watermark : tr->peak_staging;
	}
	rc = 0;
	while (sm.done < sm.total) {
		uint64_t before = sm.done;

		step(&sm, now);
		now += sm.dt;
		r->events++;
		/* nothing moves for 100x the bound: the schedule cannot finish */
		if (before == sm.done && now > 100 * r->bound_s + 1) {
			rc = -EDEADLK;
			break;
		}
	}
	for (uint32_t i = 0; i < s->ntrainers; i++)
		r->prep_s = sm.tr[i].prep_t > r->prep_s ? sm.tr[i].prep_t : r->prep_s;
	r->predicted_s = sm.end + sm.c.barrier_us * 1e-6;
out:
	free(sm.tr);
	free(sm.flows);
	free(sm.gathers_left);
	free(sm.writes_left);
	free(sm.prepared);
	free(sm.active);
	free(sm.wleft);
	free(sm.wdelay);
	free(sm.gleft);
	free(sm.lflows);
	free(sm.lspare);
	free(sm.lcap);
	free(sm.lgrant);
	return rc;
}
