/* SPDX-License-Identifier: MIT */
/*
 * The ibverbs backend (ConnectX through mlx5, soft-RoCE rxe in tests): one
 * rail per NIC with its own PD, one CQ for RC sends and immediates, a shared
 * receive queue of zero-length receives for immediates, and an RC QP per
 * peer connected through the rail's UD QP (verbs_cm.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "verbs_priv.h"

static int err_of(int e, int fallback)
{
	return e > 0 ? -e : fallback;
}

/* The named device, or the index-th one (the engine's rail order). */
static struct ibv_context *open_device(const char *name, uint32_t index, char *out, size_t len)
{
	struct ibv_device **list;
	struct ibv_context *ctx = NULL;
	int n = 0;

	list = ibv_get_device_list(&n);
	if (!list)
		return NULL;
	errno = ENODEV;
	for (int i = 0; i < n; i++) {
		const char *dn = ibv_get_device_name(list[i]);

		if (name ? strcmp(dn, name) != 0 : (uint32_t)i != index)
			continue;
		ctx = ibv_open_device(list[i]);
		if (ctx)
			snprintf(out, len, "%s", dn);
		break;
	}
	ibv_free_device_list(list);
	return ctx;
}

static bool gid_is_zero(const union ibv_gid *g)
{
	static const uint8_t zero[16];

	return memcmp(g->raw, zero, 16) == 0;
}

static bool gid_is_v4mapped(const union ibv_gid *g)
{
	static const uint8_t pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(g->raw, pfx, 12) == 0;
}

/* On RoCE prefer a RoCEv2 IPv4-mapped GID (routable, what perftest picks
 * with -x), then any RoCEv2, then any; on IB index 0. */
static int pick_gid(struct xfer_rail *r, const struct ibv_port_attr *pa)
{
	const char *env = getenv("XFER_VERBS_GID_INDEX");
	int best = -1, best_score = -1;

	if (env && *env) {
		r->gid_index = (uint8_t)atoi(env);
		return 0;
	}
	if (r->link_layer == VW_LL_IB) {
		r->gid_index = 0;
		return 0;
	}
	for (int i = 0; i < pa->gid_tbl_len && i < 256; i++) {
		struct ibv_gid_entry ent;
		int score;

		if (ibv_query_gid_ex(r->ctx, r->port, (uint32_t)i, &ent, 0))
			continue;
		if (gid_is_zero(&ent.gid))
			continue;
		score = (ent.gid_type == IBV_GID_TYPE_ROCE_V2 ? 2 : 0) +
			(gid_is_v4mapped(&ent.gid) ? 1 : 0);
		if (score > best_score) {
			best = i;
			best_score = score;
		}
	}
	if (best < 0)
		return -EADDRNOTAVAIL;
	r->gid_index = (uint8_t)best;
	return 0;
}

void vb_fill_ah(struct xfer_rail *r, const struct vw_addr *peer, struct ibv_ah_attr *ah)
{
	memset(ah, 0, sizeof(*ah));
	ah->port_num = r->port;
	ah->dlid = peer->lid;
	if (r->link_layer == VW_LL_ETH) {
		ah->is_global = 1;
		memcpy(ah->grh.dgid.raw, peer->gid, 16);
		ah->grh.sgid_index = r->gid_index;
		ah->grh.hop_limit = 64;
	}
}

static void vb_close(struct xfer_rail *r)
{
	if (!r)
		return;
	/* every QP to the error state first, so none keeps sending while the
	 * others are torn down */
	for (uint32_t i = 0; i < r->peers_hi; i++) {
		struct ibv_qp_attr at = { .qp_state = IBV_QPS_ERR };

		if (r->peers[i] && r->peers[i]->qp)
			ibv_modify_qp(r->peers[i]->qp, &at, IBV_QP_STATE);
	}
	for (uint32_t i = 0; i < r->peers_hi; i++) {
		struct vb_peer *p = r->peers[i];

		if (!p)
			continue;
		vb_cm_drop_pconns(p);
		if (p->qp)
			ibv_destroy_qp(p->qp);
		if (p->ah)
			ibv_destroy_ah(p->ah);
		free(p);
	}
	vb_dead_mrs_reap(r, true);   /* the QPs are gone: nothing reads them now */
	vb_cm_close(r);
	if (r->srq)
		ibv_destroy_srq(r->srq);
	if (r->cq)
		ibv_destroy_cq(r->cq);
	if (r->channel)
		ibv_destroy_comp_channel(r->channel);   /* after its CQs */
	if (r->pd)
		ibv_dealloc_pd(r->pd);   /* EBUSY if a caller leaked an MR: closing cleans up */
	if (r->ctx)
		ibv_close_device(r->ctx);
	free(r->fifo);
	free(r);
}

static int vb_open(const struct xfer_rail_attr *a, struct xfer_rail **out)
{
	struct ibv_device_attr da;
	struct ibv_port_attr pa;
	struct xfer_rail *r;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->ctx = open_device(a->device, a->index, r->dev_name, sizeof(r->dev_name));
	if (!r->ctx) {
		ret = err_of(errno, -ENODEV);
		goto err;
	}
	if (ibv_query_device(r->ctx, &da)) {
		ret = err_of(errno, -EIO);
		goto err;
	}
	/* the first active port */
	ret = -ENETDOWN;
	for (uint8_t port = 1; port <= da.phys_port_cnt; port++) {
		if (ibv_query_port(r->ctx, port, &pa) == 0 && pa.state == IBV_PORT_ACTIVE) {
			r->port = port;
			ret = 0;
			break;
		}
	}
	if (ret)
		goto err;
	r->link_layer = pa.link_layer == IBV_LINK_LAYER_INFINIBAND ? VW_LL_IB : VW_LL_ETH;
	r->max_msg = pa.max_msg_sz;
	ret = pick_gid(r, &pa);
	if (ret)
		goto err;

	r->pd = ibv_alloc_pd(r->ctx);
	if (!r->pd) {
		ret = err_of(errno, -ENOMEM);
		goto err;
	}
	/* Every posted WR can complete (flushes complete unsignalled ones too),
	 * the engine keeps at most max_inflight per rail, and a torn-down QP's
	 * flushes may still sit in the CQ after its pieces were given back:
	 * room for two generations of sends plus every receive. */
	r->cq_depth = 2 * a->max_inflight + VB_SRQ_DEPTH + 256;
	if (da.max_cqe > 0 && r->cq_depth > (uint32_t)da.max_cqe)
		r->cq_depth = (uint32_t)da.max_cqe;
	/* A completion channel lets the idle worker sleep in epoll until a
	 * completion or a handshake message arrives; without one it polls. */
	r->channel = ibv_create_comp_channel(r->ctx);
	if (r->channel)
		fcntl(r->channel->fd, F_SETFL, fcntl(r->channel->fd, F_GETFL) | O_NONBLOCK);
	r->cq = ibv_create_cq(r->ctx, (int)r->cq_depth, NULL, r->channel, 0);
	if (!r->cq) {
		ret = err_of(errno, -ENOMEM);
		goto err;
	}
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = VB_SRQ_DEPTH, .max_sge = 1 } };
	if (da.max_srq_wr > 0 && sa.attr.max_wr > (uint32_t)da.max_srq_wr)
		sa.attr.max_wr = (uint32_t)da.max_srq_wr;
	r->srq = ibv_create_srq(r->pd, &sa);
	if (!r->srq) {
		ret = err_of(errno, -ENOMEM);
		goto err;
	}
	r->srq_max = sa.attr.max_wr;
	r->srq_level = VB_SRQ_START < r->srq_max ? VB_SRQ_START : r->srq_max;
	ret = vb_srq_fill(r, r->srq_level);
	if (ret)
		goto err;
	r->fifo_cap = a->max_inflight + 256;
	r->fifo = calloc(r->fifo_cap, sizeof(*r->fifo));
	if (!r->fifo) {
		ret = -ENOMEM;
		goto err;
	}
	r->relaxed_ok = true;   /* until a registration refuses it */
	ret = vb_cm_open(r);
	if (ret)
		goto err;

	union ibv_gid gid;
	if (ibv_query_gid(r->ctx, r->port, r->gid_index, &gid)) {
		ret = err_of(errno, -EIO);
		goto err;
	}
	r->self.link_layer = r->link_layer;
	r->self.port = r->port;
	r->self.mtu = (uint8_t)pa.active_mtu;
	r->self.gid_index = r->gid_index;
	r->self.lid = pa.lid;
	r->self.ud_qpn = r->ud->qp_num;
	r->self.qkey = VB_QKEY;
	memcpy(r->self.gid, gid.raw, 16);
	while (!r->self.nonce)
		if (getrandom(&r->self.nonce, sizeof(r->self.nonce), 0) != sizeof(r->self.nonce))
			r->self.nonce = xfer_now_ns() ^ (uint64_t)(uintptr_t)r;
	*out = r;
	return 0;
err:
	vb_close(r);
	return ret;
}

static void vb_info(struct xfer_rail *r, char *prov, size_t plen, char *dev, size_t dlen,
		    uint64_t *max_msg)
{
	snprintf(prov, plen, "verbs");
	snprintf(dev, dlen, "%s", r->dev_name);
	*max_msg = r->max_msg;
}

static int vb_addr(struct xfer_rail *r, void *buf, size_t *len)
{
	return vw_addr_encode(&r->self, buf, len);
}

static int vb_add_peer(struct xfer_rail *r, uint32_t peer, const void *addr, size_t len)
{
	struct vw_addr a;
	int ret;

	if (peer >= XFER_MAX_PEERS)
		return -EINVAL;
	ret = vw_addr_decode(addr, len, &a);
	if (ret)
		return ret;
	if (a.link_layer != r->link_layer)
		return -EPROTO;
	if (r->peers[peer])
		return -EEXIST;
	return vb_cm_add_peer(r, peer, &a);
}

static void vb_remove_peer(struct xfer_rail *r, uint32_t peer)
{
	if (peer < XFER_MAX_PEERS && r->peers[peer])
		vb_peer_drop(r, r->peers[peer]);
}

static int vb_mr_reg(struct xfer_rail *r, void *addr, size_t len, uint32_t kind, int dmabuf_fd,
		     uint64_t dmabuf_off, int remote_write, struct xfer_rail_mr *out)
{
	int access = IBV_ACCESS_LOCAL_WRITE | (remote_write ? IBV_ACCESS_REMOTE_WRITE : 0);
	struct ibv_mr *mr;
	uint64_t iova = (uint64_t)(uintptr_t)addr;

	if (kind == XFER_MEM_DMABUF) {
		if (!addr)
			iova = dmabuf_off;
		mr = ibv_reg_dmabuf_mr(r->pd, dmabuf_off, len, iova, dmabuf_fd,
				       access | (r->relaxed_ok ? IBV_ACCESS_RELAXED_ORDERING : 0));
		if (!mr && r->relaxed_ok && errno == EINVAL)
			mr = ibv_reg_dmabuf_mr(r->pd, dmabuf_off, len, iova, dmabuf_fd, access);
		if (!mr) {
			/* rxe and older kernels have no dma-buf registration */
			if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EPROTONOSUPPORT ||
			    errno == ENOTSUP || errno == 0)
				return -EOPNOTSUPP;
			return err_of(errno, -EIO);
		}
	} else {
		/* XFER_MEM_CUDA goes through ibv_reg_mr too: it works where
		 * nvidia-peermem is loaded, and fails clearly where not. */
		mr = NULL;
		if (r->relaxed_ok) {
			mr = ibv_reg_mr(r->pd, addr, len, access | IBV_ACCESS_RELAXED_ORDERING);
			if (!mr && errno == EINVAL)
				r->relaxed_ok = false;
		}
		if (!mr && !r->relaxed_ok)
			mr = ibv_reg_mr(r->pd, addr, len, access);
		if (!mr)
			return err_of(errno, -EIO);
	}
	out->handle = mr;
	out->desc = mr;
	out->rkey = mr->rkey;
	out->raddr = iova;
	return 0;
}

static void vb_mr_dereg(struct xfer_rail *r, struct xfer_rail_mr *mr)
{
	if (mr->handle)
		vb_mr_release(r, mr->handle);
	mr->handle = NULL;
	mr->desc = NULL;
}

/* The HCA checks every rkey and range. */
static bool vb_checks_rkeys(const char *prov)
{
	(void)prov;
	return true;
}

const struct xfer_backend_ops xfer_verbs_ops = {
	.size = sizeof(struct xfer_backend_ops),
	.name = "verbs",
	.provider = "verbs",
	.wire_id = XFER_WIRE_VERBS,
	.hw_progress = true,
	.rail_open = vb_open,
	.rail_close = vb_close,
	.rail_info = vb_info,
	.rail_addr = vb_addr,
	.rail_add_peer = vb_add_peer,
	.rail_remove_peer = vb_remove_peer,
	.mr_reg = vb_mr_reg,
	.mr_dereg = vb_mr_dereg,
	.post_write = vb_post_write,
	.poll = vb_poll,
	.wait_fd = vb_wait_fd,
	.trywait = vb_trywait,
	.checks_rkeys = vb_checks_rkeys,
};
