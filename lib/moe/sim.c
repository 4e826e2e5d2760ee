// SPDX-License-Identifier: MIT
/*
 * The MoE latency model: xfer's dispatch and combine (docs/moe.md) on a
 * cluster of GPUs, from a sampled routing. include/xfer_moe_sim.h states
 * the model and its assumptions; this file is that model and nothing more.
 *
 * A phase is: a send kernel per rank, the worker (the CPU proxy) posting
 * one write per peer, the writes as fluid flows over the ranks' NVLink and
 * NIC links sharing them max-min fairly, the receiving worker counting the
 * arrivals, a flag to the receive kernel. The flows are simulated event by
 * event: the rates are recomputed whenever a write starts or ends, and
 * between two events every flow moves at its rate.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "xfer_moe_sim.h"
#include "moe_internal.h"
#include "sim_internal.h"
#include "struct_copy.h"

_Static_assert(XFER_MOE_CLUSTER_SIZE_VER0 == offsetof(struct xfer_moe_cluster, nic_gbps),
	       "the cluster's floor is size, flags, gpus_per_node and nics_per_gpu");

/*
 * The defaults are one ConnectX-7 per H100/H200-class GPU:
 *  - 400 Gbit/s line rate, of which RDMA writes carry about 97% as payload
 *    (what write benchmarks reach: IB headers are 26 B of a 4 KiB packet,
 *    flow control and gaps take the rest);
 *  - 2 us last byte sent to landed NIC to NIC, through a switch or two;
 *  - 100 M writes/s a NIC starts (ConnectX-7 is specified well above that;
 *    never the limit here, where the worker posts at 2 M writes/s);
 *  - NVLink 4: 450 GB/s per direction per GPU, of which peer copies reach
 *    about 380; 1.5 us for a write to land and be visible;
 *  - the worker: 0.5 us to post one write (the provider's post and xfer's
 *    bookkeeping of an operation), 0.2 us to count an arrival;
 *  - a kernel's store to a host-mapped word is seen by the polling worker
 *    1.5 us later (a PCIe posted write and the poll loop); the worker's
 *    store to a host flag starts the stream waiting on it 2.5 us later
 *    (cuStreamWaitValue64 polling host memory, then the kernel's launch);
 *  - every kernel costs 3 us fixed, and moves its bytes at 2 TB/s (of
 *    HBM3's 3.35).
 * "efa" (AWS p5en): two EFA NICs of 200 Gbit/s per GPU (pplx-garden's
 * benchmark runs 2 NICs per GPU); SRD's latency is several times IB's
 * (10 us taken), and libfabric's efa provider posts and completes at about
 * half ConnectX-7's verbs rate (1 us, 0.4 us taken); 10 M writes/s per NIC.
 */
static const struct xfer_moe_cluster cluster_cx7 = {
	.size = sizeof(struct xfer_moe_cluster),
	.gpus_per_node = 8,
	.nics_per_gpu = 1,
	.nic_gbps = 400,
	.nic_goodput = 0.97,
	.link_us = 2,
	.nic_mpps = 100,
	.nvlink_gbs = 380,
	.nvlink_us = 1.5,
	.post_us = 0.5,
	.cqe_us = 0.2,
	.trigger_us = 1.5,
	.flag_us = 2.5,
	.kernel_us = 3,
	.hbm_gbs = 2000,
};

static const struct xfer_moe_cluster cluster_efa = {
	.size = sizeof(struct xfer_moe_cluster),
	.gpus_per_node = 8,
	.nics_per_gpu = 2,
	.nic_gbps = 400,
	.nic_goodput = 0.97,
	.link_us = 10,
	.nic_mpps = 10,
	.nvlink_gbs = 380,
	.nvlink_us = 1.5,
	.post_us = 1,
	.cqe_us = 0.4,
	.trigger_us = 1.5,
	.flag_us = 2.5,
	.kernel_us = 3,
	.hbm_gbs = 2000,
};

static const struct {
	const char *name;
	const struct xfer_moe_cluster *c;
} presets[] = {
	{ "cx7", &cluster_cx7 },
	{ "efa", &cluster_efa },
};

XFER_EXPORT void xfer_moe_cluster_defaults_size(struct xfer_moe_cluster *c, size_t size)
{
	if (!c)
		return;
	xfer_struct_init(c, size, &cluster_cx7, sizeof(cluster_cx7));
}

XFER_EXPORT const char *xfer_moe_cluster_preset_name(unsigned int i)
{
	return i < sizeof(presets) / sizeof(presets[0]) ? presets[i].name : NULL;
}

XFER_EXPORT int xfer_moe_cluster_preset(struct xfer_moe_cluster *c, const char *name)
{
	uint32_t usize;

	if (!c || !name) {
		moe_error("xfer_moe_cluster_preset: %s is NULL", c ? "name" : "c");
		return -EINVAL;
	}
	usize = xfer_struct_size(c);
	if (xfer_struct_size_check(usize, XFER_MOE_CLUSTER_SIZE_VER0)) {
		moe_error("cluster.size %u: not sizeof(struct xfer_moe_cluster) (%u .. %u)", usize,
			  XFER_MOE_CLUSTER_SIZE_VER0, XFER_STRUCT_SIZE_MAX);
		return usize > XFER_STRUCT_SIZE_MAX ? -E2BIG : -EINVAL;
	}
	for (unsigned int i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (!strcmp(name, presets[i].name)) {
			xfer_struct_init(c, usize, presets[i].c, sizeof(*presets[i].c));
			moe_error_clear();
			return 0;
		}
	moe_error("cluster preset '%s': unknown (cx7 or efa)", name);
	return -EINVAL;
}

/* A rate or time field: 0 takes the default; negative, NaN or infinite is
 * refused (a model fed those would print figures that mean nothing). */
static int field(const char *name, double *v, double def, double max)
{
	if (!isfinite(*v) || *v < 0 || *v > max) {
		moe_error("cluster.%s %g: not 0 (the default, %g) or a positive finite value up to %g",
			  name, *v, def, max);
		return -EINVAL;
	}
	if (*v == 0)
		*v = def;
	return 0;
}

/* The caller's struct (or NULL) into *k, every field checked, the zeros
 * given their defaults. */
static int cluster_read(const struct xfer_moe_cluster *uc, struct xfer_moe_cluster *k)
{
	const struct xfer_moe_cluster *d = &cluster_cx7;
	int ret;

	*k = (struct xfer_moe_cluster){ .size = sizeof(*k) };
	if (uc) {
		ret = xfer_struct_copy_in(k, sizeof(*k), uc, XFER_MOE_CLUSTER_SIZE_VER0);
		if (ret) {
			moe_error("cluster.size %u: %s", xfer_struct_size(uc),
				  ret == -E2BIG && xfer_struct_size(uc) <= XFER_STRUCT_SIZE_MAX
				  ? "fields past this library's struct are set"
				  : "not sizeof(struct xfer_moe_cluster)");
			return ret;
		}
	}
	if (k->flags & ~(XFER_MOE_SIM_F_NIC_ONLY | XFER_MOE_SIM_F_RANK_ORDER)) {
		moe_error("cluster.flags 0x%x: unknown bits 0x%x", k->flags,
			  k->flags & ~(XFER_MOE_SIM_F_NIC_ONLY | XFER_MOE_SIM_F_RANK_ORDER));
		return -EINVAL;
	}
	if (k->gpus_per_node > 1024 || k->nics_per_gpu > 64) {
		moe_error("cluster: gpus_per_node %u (at most 1024), nics_per_gpu %u (at most 64)",
			  k->gpus_per_node, k->nics_per_gpu);
		return -EINVAL;
	}
	k->gpus_per_node = k->gpus_per_node ? k->gpus_per_node : d->gpus_per_node;
	k->nics_per_gpu = k->nics_per_gpu ? k->nics_per_gpu : d->nics_per_gpu;
	if ((ret = field("nic_gbps", &k->nic_gbps, d->nic_gbps, 1e6)) ||
	    (ret = field("nic_goodput", &k->nic_goodput, d->nic_goodput, 1)) ||
	    (ret = field("link_us", &k->link_us, d->link_us, 1e6)) ||
	    (ret = field("nic_mpps", &k->nic_mpps, d->nic_mpps, 1e6)) ||
	    (ret = field("nvlink_gbs", &k->nvlink_gbs, d->nvlink_gbs, 1e6)) ||
	    (ret = field("nvlink_us", &k->nvlink_us, d->nvlink_us, 1e6)) ||
	    (ret = field("post_us", &k->post_us, d->post_us, 1e6)) ||
	    (ret = field("cqe_us", &k->cqe_us, d->cqe_us, 1e6)) ||
	    (ret = field("trigger_us", &k->trigger_us, d->trigger_us, 1e6)) ||
	    (ret = field("flag_us", &k->flag_us, d->flag_us, 1e6)) ||
	    (ret = field("kernel_us", &k->kernel_us, d->kernel_us, 1e6)) ||
	    (ret = field("hbm_gbs", &k->hbm_gbs, d->hbm_gbs, 1e6)))
		return ret;
	return 0;
}

XFER_EXPORT int xfer_moe_cluster_resolve(struct xfer_moe_cluster *uc)
{
	struct xfer_moe_cluster k;
	int ret;

	if (!uc) {
		moe_error("xfer_moe_cluster_resolve: c is NULL");
		return -EINVAL;
	}
	ret = cluster_read(uc, &k);
	if (ret)
		return ret;
	xfer_struct_fill(uc, xfer_struct_size(uc), &k, sizeof(k));
	moe_error_clear();
	return 0;
}

/* ---- routing ---------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void moe_sim_route(uint32_t R, uint32_t E, uint32_t K, uint32_t T, uint64_t seed, uint32_t *n)
{
	uint32_t L = E / R, pick[XFER_MOE_MAX_TOPK];

	memset(n, 0, sizeof(*n) * R * R);
	for (uint32_t s = 0; s < R; s++) {
		uint64_t st = seed ^ (0x6a09e667f3bcc909ull * (s + 1));

		for (uint32_t t = 0; t < T; t++) {
			for (uint32_t k = 0; k < K; k++) {
				uint32_t e, dup;

				do {    /* K distinct: draw again on a repeat */
					e = (uint32_t)(((splitmix64(&st) >> 32) * E) >> 32);
					dup = 0;
					for (uint32_t j = 0; j < k; j++)
						dup |= pick[j] == e;
				} while (dup);
				pick[k] = e;
				n[(size_t)s * R + e / L]++;
			}
		}
	}
}

/* ---- the fluid network ------------------------------------------------ */

/* Links of a rank: NVLink out and in, then NIC i out and in. */
#define L_NVL_OUT 0u
#define L_NVL_IN  1u
#define L_NIC(i, in) (2u + 2u * (i) + (in))

struct flow {
	double start;   /* the write is posted and its NIC took it */
	double left;    /* bytes still to move */
	double rate;    /* bytes per second now */
	double add;     /* this filling round's increase */
	double end;     /* its last byte left the sender */
	double lat;     /* last byte sent to landed */
	uint32_t out, in;
	uint32_t dst;
};

/* Progressive filling rounds per rate computation at most: what is left unfilled
 * after them is lost (a slightly slower flow); 4 and 64 rounds give the
 * same figures within 0.1% for DeepSeek-V3 decode at EP64; a round costs
 * a pass over the flows still growing. */
#define FILL_ROUNDS 32

struct sim {
	uint32_t R, N, G, LS;    /* ranks, NICs per GPU, GPUs per node, links per rank */
	struct xfer_moe_cluster c;
	double nic_rate, nvl_rate; /* payload bytes per second, per NIC and per GPU's NVLink */
	double *cap, *spare;     /* per link */
	uint32_t *cnt;
	uint64_t *link_bytes;    /* per link, this phase */
	struct flow *f;          /* R * (R - 1) */
	uint32_t *order, *active, *open;
	double *arr;             /* arrivals at one rank */
	uint64_t events;
};

static int node_of(const struct sim *sm, uint32_t r)
{
	return (int)(r / sm->G);
}

static int on_nvlink(const struct sim *sm, uint32_t a, uint32_t b)
{
	return !(sm->c.flags & XFER_MOE_SIM_F_NIC_ONLY) && node_of(sm, a) == node_of(sm, b);
}

static const struct flow *cmp_f;

static int by_start(const void *a, const void *b)
{
	double x = cmp_f[*(const uint32_t *)a].start, y = cmp_f[*(const uint32_t *)b].start;

	return x < y ? -1 : x > y;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Max-min fair rates of the active flows by progressive filling: each
 * round every flow not yet stopped by a full link gets the smaller of its
 * two links' equal splits of what they have left; a flow stops growing
 * once one of its links is full. */
static void rates(struct sim *sm, uint32_t na)
{
	uint32_t nl = sm->R * sm->LS, *open = sm->open, no = na;

	for (uint32_t l = 0; l < nl; l++)
		sm->spare[l] = sm->cap[l];
	memset(sm->cnt, 0, sizeof(*sm->cnt) * nl);
	for (uint32_t i = 0; i < na; i++) {
		struct flow *f = &sm->f[sm->active[i]];

		f->rate = 0;
		sm->cnt[f->out]++;
		sm->cnt[f->in]++;
		open[i] = sm->active[i];
	}
	/* open[0 .. no): the flows still growing; cnt: those on each link */
	for (int round = 0; round < FILL_ROUNDS && no; round++) {
		for (uint32_t i = 0; i < no; i++) {
			struct flow *f = &sm->f[open[i]];
			double a = sm->spare[f->out] / sm->cnt[f->out];
			double b = sm->spare[f->in] / sm->cnt[f->in];

			f->add = a < b ? a : b;
		}
		for (uint32_t i = 0; i < no; i++) {
			struct flow *f = &sm->f[open[i]];

			f->rate += f->add;
			sm->spare[f->out] -= f->add;
			sm->spare[f->in] -= f->add;
		}
		for (uint32_t i = 0; i < no;) {
			struct flow *f = &sm->f[open[i]];

			if (sm->spare[f->out] <= 1e-9 * sm->cap[f->out] ||
			    sm->spare[f->in] <= 1e-9 * sm->cap[f->in]) {
				sm->cnt[f->out]--;
				sm->cnt[f->in]--;
				open[i] = open[--no];
			} else {
				i++;
			}
		}
	}
}

/* Move flows f[0 .. nf) from their start times to their ends. */
static void fluid(struct sim *sm, uint32_t nf)
{
	/* starts this close are one event; flows this close to their end are
	 * ended together, each at its own time, the capacity it would have
	 * left to the others in between unused (a few ns: slightly slow) */
	const double teps = 1e-10, tend = 2e-8;
	uint32_t next = 0, na = 0;
	double t = 0;

	for (uint32_t i = 0; i < nf; i++)
		sm->order[i] = i;
	cmp_f = sm->f;
	qsort(sm->order, nf, sizeof(*sm->order), by_start);
	while (next < nf || na) {
		double dt = INFINITY;

		if (!na)
			t = t > sm->f[sm->order[next]].start ? t : sm->f[sm->order[next]].start;
		while (next < nf && sm->f[sm->order[next]].start <= t + teps) {
			struct flow *f = &sm->f[sm->order[next]];

			if (f->left <= 0)
				f->end = f->start;   /* an immediate alone: no bytes to move */
			else
				sm->active[na++] = sm->order[next];
			next++;
		}
		if (!na)
			continue;
		rates(sm, na);
		sm->events++;
		for (uint32_t i = 0; i < na; i++) {
			const struct flow *f = &sm->f[sm->active[i]];

			if (f->rate > 0 && f->left / f->rate < dt)
				dt = f->left / f->rate;
		}
		if (next < nf && sm->f[sm->order[next]].start - t < dt)
			dt = sm->f[sm->order[next]].start - t;
		t += dt;
		for (uint32_t i = 0; i < na;) {
			struct flow *f = &sm->f[sm->active[i]];

			f->left -= f->rate * dt;
			if (f->left <= f->rate * tend || f->left < 1e-6) {
				f->end = t + (f->rate > 0 ? f->left / f->rate : 0);
				f->left = 0;
				sm->active[i] = sm->active[--na];
			} else {
				i++;
			}
		}
	}
}

/*
 * One exchange: every rank s's worker, from ready[s], posts a write of
 * bytes[s * R + d] to every peer d (0: an immediate alone), inter-node
 * peers first, each group from rank s + 1 up (XFER_MOE_SIM_F_RANK_ORDER:
 * rank 0 first, in rank order). Out: per rank, when its
 * worker had posted the last write, when its last arrival landed and when
 * it had counted them all. Link bytes are added to sm->link_bytes.
 */
static void exchange(struct sim *sm, const double *ready, const uint64_t *bytes, double *posted,
		     double *landed, double *counted)
{
	uint32_t R = sm->R, nf = 0;
	double slot = 1e-6 / sm->c.nic_mpps;
	int rank_order = !!(sm->c.flags & XFER_MOE_SIM_F_RANK_ORDER);

	for (uint32_t s = 0; s < R; s++) {
		double t = ready[s], nic_free[64];

		for (uint32_t i = 0; i < sm->N; i++)
			nic_free[i] = 0;
		for (int pass = 0; pass < 2; pass++) {
			for (uint32_t j = 1; j < R; j++) {
				uint32_t d = rank_order ? j - (j <= s) : (s + j) % R;
				int nvl = on_nvlink(sm, s, d);
				struct flow *f;

				/* rank order: one pass, every row where it lies */
				if (rank_order ? pass : nvl != pass)
					continue;
				f = &sm->f[nf++];
				t += sm->c.post_us * 1e-6;
				f->dst = d;
				f->left = (double)bytes[(size_t)s * R + d];
				if (nvl) {
					f->out = s * sm->LS + L_NVL_OUT;
					f->in = d * sm->LS + L_NVL_IN;
					f->lat = sm->c.nvlink_us * 1e-6;
					f->start = t;
				} else {
					/* rank order: row d - (d > s) on rail row mod rails */
					uint32_t nic = rank_order ? (d - (d > s)) % sm->N : (s + d) % sm->N;

					f->out = s * sm->LS + L_NIC(nic, 0);
					f->in = d * sm->LS + L_NIC(nic, 1);
					f->lat = sm->c.link_us * 1e-6;
					f->start = t > nic_free[nic] ? t : nic_free[nic];
					nic_free[nic] = f->start + slot;
				}
				sm->link_bytes[f->out] += bytes[(size_t)s * R + d];
				sm->link_bytes[f->in] += bytes[(size_t)s * R + d];
			}
		}
		posted[s] = t;
	}
	fluid(sm, nf);
	/* each rank's worker counts its arrivals in order, after its posting */
	for (uint32_t d = 0; d < R; d++) {
		uint32_t na = 0;
		double w = posted[d];

		for (uint32_t i = 0; i < nf; i++)
			if (sm->f[i].dst == d)
				sm->arr[na++] = sm->f[i].end + sm->f[i].lat;
		qsort(sm->arr, na, sizeof(*sm->arr), by_value);
		landed[d] = na ? sm->arr[na - 1] : ready[d];
		for (uint32_t i = 0; i < na; i++)
			w = (w > sm->arr[i] ? w : sm->arr[i]) + sm->c.cqe_us * 1e-6;
		counted[d] = w;
	}
}

/* The phase's figures from per-rank times (seconds) and the link bytes. */
static void phase_stats(struct sim *sm, struct xfer_moe_sim_phase *p, const double *send_k,
			const double *posted, const double *landed, const double *counted,
			const double *recv_k, const uint64_t *bytes, const uint64_t *rec_bytes)
{
	uint32_t R = sm->R, slow = 0;
	double sum = 0, done_max = -1, nic_sum = 0;
	uint64_t nics = 0;

	for (uint32_t r = 0; r < R; r++) {
		double done = counted[r] + sm->c.flag_us * 1e-6 + recv_k[r];
		uint64_t wire = 0;

		sum += done;
		if (done > done_max) {
			done_max = done;
			slow = r;
		}
		for (uint32_t d = 0; d < R; d++)
			if (d != r)
				wire += bytes[(size_t)r * R + d];
		p->wire_bytes_max = wire > p->wire_bytes_max ? wire : p->wire_bytes_max;
		p->bytes_max = rec_bytes[r] > p->bytes_max ? rec_bytes[r] : p->bytes_max;
		for (uint32_t i = 0; i < sm->N; i++) {
			uint64_t o = sm->link_bytes[r * sm->LS + L_NIC(i, 0)];
			uint64_t in = sm->link_bytes[r * sm->LS + L_NIC(i, 1)];
			uint64_t m = o > in ? o : in;

			p->nic_bytes_max = m > p->nic_bytes_max ? m : p->nic_bytes_max;
			nic_sum += (double)m;
			nics++;
		}
	}
	p->us = done_max * 1e6;
	p->mean_us = sum / R * 1e6;
	p->send_kernel_us = send_k[slow] * 1e6;
	p->posted_us = posted[slow] * 1e6;
	p->landed_us = landed[slow] * 1e6;
	p->counted_us = counted[slow] * 1e6;
	p->recv_kernel_us = recv_k[slow] * 1e6;
	p->nic_bytes_mean = nics ? nic_sum / (double)nics : 0;
	p->nic_bound_us = (double)p->nic_bytes_max / sm->nic_rate * 1e6;
}

XFER_EXPORT int xfer_moe_simulate(const struct xfer_moe_attr *attr, const struct xfer_moe_cluster *uc,
				  uint64_t seed, struct xfer_moe_sim_result *r)
{
	struct xfer_moe_attr a;
	struct xfer_moe_layout l;
	struct sim sm = { 0 };
	uint32_t R, T, K, *n = NULL;
	uint64_t *bytes = NULL, *cbytes = NULL, *rec = NULL, *recv = NULL;
	double *t = NULL;
	double *ready, *ready2, *send_k, *recv_k, *posted, *landed, *counted;
	int fp = 0, ret;

	if (!r) {
		moe_error("xfer_moe_simulate: r is NULL");
		return -EINVAL;
	}
	ret = moe_attr_read(attr, &a);
	if (ret)
		return ret;
	ret = moe_layout_from_attr(&a, &l);
	if (ret)
		return ret;
	if (a.world_size > XFER_MOE_SIM_MAX_RANKS) {
		moe_error("attr.world_size %u: the simulator takes at most %u ranks", a.world_size,
			  XFER_MOE_SIM_MAX_RANKS);
		return -EINVAL;
	}
	ret = cluster_read(uc, &sm.c);
	if (ret)
		return ret;
	memset(r, 0, sizeof(*r));
	R = sm.R = a.world_size;
	T = a.max_tokens;
	K = a.top_k;
	sm.N = sm.c.nics_per_gpu;
	sm.G = sm.c.gpus_per_node;
	sm.LS = 2 + 2 * sm.N;
	sm.nic_rate = sm.c.nic_gbps / sm.N * 1e9 / 8 * sm.c.nic_goodput;
	sm.nvl_rate = sm.c.nvlink_gbs * 1e9;
	fp = !!(a.flags & XFER_MOE_F_PREFILL);

	ret = -ENOMEM;
	n = calloc((size_t)R * R, sizeof(*n));
	bytes = calloc((size_t)R * R, sizeof(*bytes));
	cbytes = calloc((size_t)R * R, sizeof(*cbytes));
	rec = calloc(R, sizeof(*rec));
	recv = calloc(R, sizeof(*recv));
	t = calloc((size_t)R * 8, sizeof(*t));
	sm.cap = calloc((size_t)R * sm.LS, sizeof(*sm.cap));
	sm.spare = calloc((size_t)R * sm.LS, sizeof(*sm.spare));
	sm.cnt = calloc((size_t)R * sm.LS, sizeof(*sm.cnt));
	sm.link_bytes = calloc((size_t)R * sm.LS, sizeof(*sm.link_bytes));
	sm.f = calloc((size_t)R * R + 1, sizeof(*sm.f));
	sm.order = calloc((size_t)R * R + 1, sizeof(*sm.order));
	sm.active = calloc((size_t)R * R + 1, sizeof(*sm.active));
	sm.open = calloc((size_t)R * R + 1, sizeof(*sm.open));
	sm.arr = calloc(R + 1, sizeof(*sm.arr));
	if (!n || !bytes || !cbytes || !rec || !recv || !t || !sm.cap || !sm.spare || !sm.cnt ||
	    !sm.link_bytes || !sm.f || !sm.order || !sm.active || !sm.open || !sm.arr) {
		moe_error("xfer_moe_simulate: out of memory for %u ranks", R);
		goto out;
	}
	ready = t;
	ready2 = t + R;
	send_k = t + 2 * R;
	recv_k = t + 3 * R;
	posted = t + 4 * R;
	landed = t + 5 * R;
	counted = t + 6 * R;
	for (uint32_t x = 0; x < R; x++) {
		sm.cap[x * sm.LS + L_NVL_OUT] = sm.nvl_rate;
		sm.cap[x * sm.LS + L_NVL_IN] = sm.nvl_rate;
		for (uint32_t i = 0; i < sm.N; i++) {
			sm.cap[x * sm.LS + L_NIC(i, 0)] = sm.nic_rate;
			sm.cap[x * sm.LS + L_NIC(i, 1)] = sm.nic_rate;
		}
	}
	r->nodes = (R + sm.G - 1) / sm.G;
	/* the most peers any rank reaches over its NICs (a rank of a last,
	 * partly filled node has fewer NVLink peers) */
	for (uint32_t x = 0; x < R; x++) {
		uint32_t np = 0;

		for (uint32_t d = 0; d < R; d++)
			np += d != x && !on_nvlink(&sm, x, d);
		r->nic_peers = np > r->nic_peers ? np : r->nic_peers;
	}
	r->selections = (uint64_t)R * T * K;

	moe_sim_route(R, a.num_experts, K, T, seed, n);
	for (uint32_t s = 0; s < R; s++)
		for (uint32_t d = 0; d < R; d++) {
			uint64_t c = n[(size_t)s * R + d];

			rec[s] += c * l.record_bytes;
			recv[d] += c;
			if (d == s)
				continue;   /* the rank's own records do not travel */
			bytes[(size_t)s * R + d] = c * l.record_bytes + (fp ? 0 : l.block_hdr_bytes);
			/* combine: d returns to s the rows it got from s */
			cbytes[(size_t)d * R + s] = c * l.combine_bytes;
		}

	/* ---- dispatch ---- */
	for (uint32_t s = 0; s < R; s++) {
		double in = 2.0 * T * a.hidden, out = (double)rec[s];

		send_k[s] = (sm.c.kernel_us + (in + out) / (sm.c.hbm_gbs * 1e3)) * 1e-6;
		recv_k[s] = (sm.c.kernel_us + 2.0 * (double)recv[s] * (double)l.record_bytes /
					      (sm.c.hbm_gbs * 1e3)) * 1e-6;
	}
	if (fp) {
		/* count rows first (after a route kernel), data once every row is in */
		uint64_t *cnt_bytes = cbytes;   /* reused below for combine: refilled */
		uint64_t row = 4ull * a.num_experts;

		for (uint32_t s = 0; s < R; s++) {
			ready2[s] = (sm.c.kernel_us + sm.c.trigger_us) * 1e-6;
			send_k[s] += sm.c.kernel_us * 1e-6;
		}
		for (size_t i = 0; i < (size_t)R * R; i++)
			cnt_bytes[i] = i / R == i % R ? 0 : row;
		exchange(&sm, ready2, cnt_bytes, posted, landed, counted);
		for (uint32_t s = 0; s < R; s++) {
			double packed = send_k[s] + sm.c.trigger_us * 1e-6;

			ready[s] = counted[s] > packed ? counted[s] : packed;
		}
		for (uint32_t s = 0; s < R; s++)
			for (uint32_t d = 0; d < R; d++)
				cbytes[(size_t)d * R + s] =
					d == s ? 0 : n[(size_t)s * R + d] * l.combine_bytes;
		r->dispatch.writes = (uint64_t)R * (R - 1);
	} else {
		for (uint32_t s = 0; s < R; s++)
			ready[s] = send_k[s] + sm.c.trigger_us * 1e-6;
	}
	exchange(&sm, ready, bytes, posted, landed, counted);
	r->dispatch.writes += (uint64_t)R * (R - 1);
	phase_stats(&sm, &r->dispatch, send_k, posted, landed, counted, recv_k, bytes, rec);

	/* ---- combine ---- */
	memset(sm.link_bytes, 0, sizeof(*sm.link_bytes) * R * sm.LS);
	for (uint32_t x = 0; x < R; x++) {
		double rows = (double)recv[x] * (double)l.combine_bytes;

		rec[x] = recv[x] * l.combine_bytes;
		send_k[x] = (sm.c.kernel_us + 2 * rows / (sm.c.hbm_gbs * 1e3)) * 1e-6;
		ready[x] = send_k[x] + sm.c.trigger_us * 1e-6;
		recv_k[x] = (sm.c.kernel_us + ((double)T * K * (double)l.combine_bytes + 2.0 * T * a.hidden) /
					      (sm.c.hbm_gbs * 1e3)) * 1e-6;
	}
	exchange(&sm, ready, cbytes, posted, landed, counted);
	r->combine.writes = (uint64_t)R * (R - 1);
	phase_stats(&sm, &r->combine, send_k, posted, landed, counted, recv_k, cbytes, rec);
	r->events = sm.events;
	moe_error_clear();
	ret = 0;
out:
	free(n);
	free(bytes);
	free(cbytes);
	free(rec);
	free(recv);
	free(t);
	free(sm.cap);
	free(sm.spare);
	free(sm.cnt);
	free(sm.link_bytes);
	free(sm.f);
	free(sm.order);
	free(sm.active);
	free(sm.open);
	free(sm.arr);
	return ret;
}
