/* SPDX-License-Identifier: MIT */
/*
 * Connection set-up without a daemon or TCP. Every rail has a UD QP whose
 * GID, QPN and qkey are in the rail's static address, so a peer can reach it
 * as soon as it knows the engine address. For each rail pair both sides run
 * the same symmetric exchange:
 *
 *   add_peer: create the RC QP (INIT), send {my nonce, your nonce, my QPN,
 *             my PSN, the QPN of yours I know or 0, NEED_REPLY}; resend with
 *             backoff from poll() until the peer acknowledges our QPN.
 *   receive:  a message is routed by the QPN of ours it acknowledges, else
 *             by the sender's QPN; one from a QP we do not know is paired
 *             with our oldest QP to that rail that has no peer QP yet; then
 *             record the peer's QPN/PSN and move our QP to RTR and RTS,
 *             note whether it acknowledges ours, and answer if it asked.
 *             A message naming a rail nonce we have not been given yet is
 *             kept (the peer was added there first) and used on add_peer.
 *
 * A side posts only once it has the peer's QPN AND the peer has
 * acknowledged ours: the peer's QP then is at RTR already (it moves there
 * before it acknowledges), so the first write is never dropped. A side
 * asks for a reply only while it lacks the acknowledgement, and answers
 * never ask once acknowledged, so the exchange stops. Lost messages are
 * covered by the resends; a peer that never answers is timed out by the
 * engine (peer_timeout_ms), which removes it.
 *
 * Connections are keyed by (nonce, QPN), not by nonce alone: an engine may
 * add the same remote engine again under a new peer index (or add it twice
 * before hearing from it), opening a second RC QP to a rail that already
 * has one. Pairing a new QP with one of ours that has no peer QP yet is
 * decided by the side with the lower rail nonce only (both sides choosing
 * could cross-pair when one side has two such QPs); the higher side waits
 * for the choice, which arrives acknowledging its QPN. A new QP for which
 * the receiving side has no unpaired QP of its own (it added the sender
 * once, and that connection is up) is accepted there as a receive-only
 * connection (struct vb_pconn, kept with the peer for that nonce): an RC QP
 * moved to RTR and RTS before the answer that acknowledges the sender's
 * QPN, so the guarantee above holds for it too. It carries the sender's
 * writes and immediates (the SRQ takes them as from any QP) and is torn
 * down with that peer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "verbs_priv.h"

#define VB_CTL_SEND_TAG 0x10000u
#define VB_CTL_BYTES ((((size_t)(VB_CTL_RECV + VB_CTL_SEND) * VB_CTL_SLOT) + 4095) & ~(size_t)4095)

static uint8_t *recv_slot(struct xfer_rail *r, uint32_t i)
{
	return r->ctl_buf + (size_t)i * VB_CTL_SLOT;
}

static uint8_t *send_slot(struct xfer_rail *r, uint32_t i)
{
	return r->ctl_buf + (size_t)(VB_CTL_RECV + i) * VB_CTL_SLOT;
}

static int post_ctl_recv(struct xfer_rail *r, uint32_t i)
{
	struct ibv_sge sge = {
		.addr = (uint64_t)(uintptr_t)recv_slot(r, i),
		.length = VB_CTL_SLOT,
		.lkey = r->ctl_mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 }, *bad;

	return -ibv_post_recv(r->ud, &wr, &bad);
}

int vb_cm_open(struct xfer_rail *r)
{
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_UD,
		.cap = { .max_send_wr = VB_CTL_SEND, .max_recv_wr = VB_CTL_RECV,
			 .max_send_sge = 1, .max_recv_sge = 1 },
		.sq_sig_all = 1,
	};
	struct ibv_qp_attr at;
	int ret;

	r->ctl_cq = ibv_create_cq(r->ctx, VB_CTL_RECV + VB_CTL_SEND, NULL, r->channel, 0);
	if (!r->ctl_cq)
		return errno ? -errno : -ENOMEM;
	r->ctl_buf = aligned_alloc(4096, VB_CTL_BYTES);   /* C11: size a multiple of the alignment */
	if (!r->ctl_buf)
		return -ENOMEM;
	memset(r->ctl_buf, 0, VB_CTL_BYTES);
	r->ctl_mr = ibv_reg_mr(r->pd, r->ctl_buf, VB_CTL_BYTES, IBV_ACCESS_LOCAL_WRITE);
	if (!r->ctl_mr)
		return errno ? -errno : -ENOMEM;
	qa.send_cq = qa.recv_cq = r->ctl_cq;
	r->ud = ibv_create_qp(r->pd, &qa);
	if (!r->ud)
		return errno ? -errno : -ENOMEM;

	memset(&at, 0, sizeof(at));
	at.qp_state = IBV_QPS_INIT;
	at.pkey_index = 0;
	at.port_num = r->port;
	at.qkey = VB_QKEY;
	ret = ibv_modify_qp(r->ud, &at, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY);
	if (!ret) {
		at.qp_state = IBV_QPS_RTR;
		ret = ibv_modify_qp(r->ud, &at, IBV_QP_STATE);
	}
	if (!ret) {
		at.qp_state = IBV_QPS_RTS;
		at.sq_psn = 0;
		ret = ibv_modify_qp(r->ud, &at, IBV_QP_STATE | IBV_QP_SQ_PSN);
	}
	if (ret)
		return -ret;
	for (uint32_t i = 0; i < VB_CTL_RECV && !ret; i++)
		ret = post_ctl_recv(r, i);
	return ret;
}

void vb_cm_close(struct xfer_rail *r)
{
	if (r->ud)
		ibv_destroy_qp(r->ud);
	if (r->ctl_mr)
		ibv_dereg_mr(r->ctl_mr);
	if (r->ctl_cq)
		ibv_destroy_cq(r->ctl_cq);
	free(r->ctl_buf);
	r->ud = NULL;
	r->ctl_mr = NULL;
	r->ctl_cq = NULL;
	r->ctl_buf = NULL;
}

static int send_raw(struct xfer_rail *r, struct ibv_ah *ah, const struct vw_addr *to,
		    uint32_t flags, uint32_t qpn, uint32_t psn, uint32_t ack_qpn)
{
	struct vw_msg m = {
		.flags = flags,
		.mtu = r->self.mtu,
		.src_nonce = r->self.nonce,
		.dst_nonce = to->nonce,
		.qpn = qpn,
		.psn = psn,
		.ack_qpn = ack_qpn,
	};
	uint32_t slot;
	int ret;

	if (r->ctl_send_tail - r->ctl_send_head >= VB_CTL_SEND)
		return -EAGAIN;   /* the resend timer tries again */
	slot = r->ctl_send_tail % VB_CTL_SEND;
	vw_msg_encode(&m, send_slot(r, slot), VB_CTL_SLOT);

	struct ibv_sge sge = {
		.addr = (uint64_t)(uintptr_t)send_slot(r, slot),
		.length = VW_MSG_LEN,
		.lkey = r->ctl_mr->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = VB_CTL_SEND_TAG | slot,
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = IBV_WR_SEND,
		.send_flags = IBV_SEND_SIGNALED,
	}, *bad;

	wr.wr.ud.ah = ah;
	wr.wr.ud.remote_qpn = to->ud_qpn;
	wr.wr.ud.remote_qkey = to->qkey;
	ret = ibv_post_send(r->ud, &wr, &bad);
	if (ret)
		return -ret;
	r->ctl_send_tail++;
	return 0;
}

static int send_msg(struct xfer_rail *r, struct vb_peer *p)
{
	return send_raw(r, p->ah, &p->addr, p->acked ? 0 : VW_F_NEED_REPLY, p->qp->qp_num,
			p->psn, p->have_remote ? p->rqpn : 0);
}

/* INIT -> RTR -> RTS once the peer's QPN and PSN are known. */
static int connect_qp(struct xfer_rail *r, struct ibv_qp *qp, const struct vw_addr *to,
		      uint32_t rqpn, uint32_t rpsn, uint32_t psn, uint8_t peer_mtu)
{
	struct ibv_qp_attr at;
	int ret;

	memset(&at, 0, sizeof(at));
	at.qp_state = IBV_QPS_RTR;
	at.path_mtu = (enum ibv_mtu)(peer_mtu < r->self.mtu ? peer_mtu : r->self.mtu);
	at.dest_qp_num = rqpn;
	at.rq_psn = rpsn;
	at.max_dest_rd_atomic = 1;
	at.min_rnr_timer = 12;            /* 0.64 ms */
	vb_fill_ah(r, to, &at.ah_attr);
	ret = ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			    IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
			    IBV_QP_MIN_RNR_TIMER);
	if (ret)
		return -ret;
	memset(&at, 0, sizeof(at));
	at.qp_state = IBV_QPS_RTS;
	at.timeout = 14;                  /* 4.096 us * 2^14 = 67 ms per try */
	at.retry_cnt = 7;
	at.rnr_retry = 7;                 /* receiver short of receives: wait */
	at.sq_psn = psn;
	at.max_rd_atomic = 1;
	ret = ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			    IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
	return -ret;
}

/* An RC QP of this rail in INIT, writable by the peer. */
static struct ibv_qp *create_qp(struct xfer_rail *r, int *err)
{
	struct ibv_qp_init_attr qa = {
		.send_cq = r->cq,
		.recv_cq = r->cq,
		.srq = r->srq,
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = VB_SQ_DEPTH, .max_send_sge = 1 },
	};
	struct ibv_qp_attr at;
	struct ibv_qp *qp = ibv_create_qp(r->pd, &qa);

	if (!qp) {
		*err = errno ? -errno : -ENOMEM;
		return NULL;
	}
	memset(&at, 0, sizeof(at));
	at.qp_state = IBV_QPS_INIT;
	at.pkey_index = 0;
	at.port_num = r->port;
	at.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
	*err = -ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			      IBV_QP_ACCESS_FLAGS);
	if (*err) {
		ibv_destroy_qp(qp);
		return NULL;
	}
	return qp;
}

static uint32_t new_psn(void)
{
	uint32_t psn;

	if (getrandom(&psn, sizeof(psn), 0) != sizeof(psn))
		psn = (uint32_t)xfer_now_ns();
	return psn & 0xffffff;
}

static void handle_msg(struct xfer_rail *r, struct vb_peer *p, const struct vw_msg *m)
{
	int ret;

	if (p->state != VB_CONNECTING && p->state != VB_UP)
		return;
	if (!p->have_remote) {
		p->rqpn = m->qpn;
		p->rpsn = m->psn;
		ret = connect_qp(r, p->qp, &p->addr, p->rqpn, p->rpsn, p->psn, m->mtu);
		if (ret) {
			vb_peer_fail(r, p, ret);
			return;
		}
		p->have_remote = true;
	} else if (m->qpn != p->rqpn) {
		return;   /* not the QP we connected to: a stray */
	}
	if (m->ack_qpn == p->qp->qp_num)
		p->acked = true;
	if (p->state == VB_CONNECTING && p->acked) {
		p->state = VB_UP;
		r->connecting--;
	}
	if (m->flags & VW_F_NEED_REPLY)
		send_msg(r, p);
}

static bool is_live(const struct vb_peer *p, uint64_t nonce)
{
	return p && p->addr.nonce == nonce && p->state != VB_CLOSED && p->qp;
}

/* Keep a request from a rail we were not given yet (latest per nonce). */
static void stash_req(struct xfer_rail *r, const struct vw_msg *m)
{
	struct vb_req *slot = NULL;

	for (uint32_t i = 0; i < VB_PENDING_MAX; i++) {
		struct vb_req *q = &r->reqs[i];

		if (q->used && q->m.src_nonce == m->src_nonce) {
			slot = q;
			break;
		}
		if (!slot || (slot->used && (!q->used || q->when_ns < slot->when_ns)))
			slot = q;   /* a free slot, else the oldest */
	}
	slot->m = *m;
	slot->used = true;
	slot->when_ns = xfer_now_ns();
}

/* A new QP of the peer's, and we have no QP of ours waiting for one: accept
 * it as a receive-only connection kept with owner (a peer of that nonce). */
static void accept_pconn(struct xfer_rail *r, struct vb_peer *owner, const struct vw_msg *m)
{
	struct vb_pconn c = { .psn = new_psn(), .rqpn = m->qpn };
	int err;

	if (owner->npc == owner->pc_cap) {
		uint32_t cap = owner->pc_cap ? owner->pc_cap * 2 : 2;
		struct vb_pconn *n = realloc(owner->pc, cap * sizeof(*n));

		if (!n)
			return;   /* the peer resends: tried again then */
		owner->pc = n;
		owner->pc_cap = cap;
	}
	c.qp = create_qp(r, &err);
	if (!c.qp)
		return;
	if (connect_qp(r, c.qp, &owner->addr, m->qpn, m->psn, c.psn, m->mtu)) {
		ibv_destroy_qp(c.qp);
		return;
	}
	owner->pc[owner->npc++] = c;
	send_raw(r, owner->ah, &owner->addr, 0, c.qp->qp_num, c.psn, m->qpn);
}

static void recv_msg(struct xfer_rail *r, const uint8_t *buf, uint32_t len)
{
	struct vb_peer *owner = NULL, *fresh = NULL;
	struct vw_msg m;

	if (len < VB_GRH || vw_msg_decode(buf + VB_GRH, len - VB_GRH, &m) != 0)
		return;   /* malformed: dropped */
	if (m.dst_nonce != r->self.nonce)
		return;   /* for an earlier incarnation of this UD QPN */
	for (uint32_t i = 0; i < r->peers_hi; i++) {
		struct vb_peer *p = r->peers[i];

		if (!is_live(p, m.src_nonce))
			continue;
		/* one of our QPs it names (acknowledges), or the QP it comes
		 * from is one we connected to */
		if (m.ack_qpn ? p->qp->qp_num == m.ack_qpn : p->have_remote && p->rqpn == m.qpn) {
			handle_msg(r, p, &m);   /* drops it if it does not match */
			return;
		}
		for (uint32_t k = 0; k < p->npc; k++) {
			struct vb_pconn *c = &p->pc[k];

			if (m.ack_qpn ? c->qp->qp_num == m.ack_qpn : c->rqpn == m.qpn) {
				if (c->rqpn == m.qpn && (m.flags & VW_F_NEED_REPLY))
					send_raw(r, p->ah, &p->addr, 0, c->qp->qp_num, c->psn,
						 c->rqpn);
				return;
			}
		}
		if (!owner)
			owner = p;
		if (!fresh && p->state == VB_CONNECTING && !p->have_remote)
			fresh = p;
	}
	if (m.ack_qpn)
		return;   /* names a QP of ours that is gone: a stray */
	if (!owner) {
		stash_req(r, &m);   /* not added here yet */
		return;
	}
	if (fresh) {
		/* the lower nonce pairs; the higher one's QP waits for that */
		if (r->self.nonce <= m.src_nonce)
			handle_msg(r, fresh, &m);
		return;
	}
	accept_pconn(r, owner, &m);
}

/* The receive-only connections kept with p (peer removal, rail close). */
void vb_cm_drop_pconns(struct vb_peer *p)
{
	for (uint32_t k = 0; k < p->npc; k++)
		vb_qp_destroy(p->pc[k].qp);
	free(p->pc);
	p->pc = NULL;
	p->npc = p->pc_cap = 0;
}

int vb_cm_add_peer(struct xfer_rail *r, uint32_t peer, const struct vw_addr *a)
{
	struct ibv_ah_attr aha;
	struct vb_peer *p;
	int ret;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->index = peer;
	p->addr = *a;
	vb_fill_ah(r, a, &aha);
	p->ah = ibv_create_ah(r->pd, &aha);
	if (!p->ah) {
		ret = errno ? -errno : -EHOSTUNREACH;
		goto err;
	}
	p->qp = create_qp(r, &ret);
	if (!p->qp)
		goto err;
	p->psn = new_psn();
	p->state = VB_CONNECTING;
	p->backoff_ns = VB_RESEND_MIN_NS;
	p->next_send_ns = xfer_now_ns() + p->backoff_ns;
	r->peers[peer] = p;
	if (peer >= r->peers_hi)
		r->peers_hi = peer + 1;
	r->connecting++;

	/* The peer may have added us first: its request pairs with this QP
	 * where we choose (the lower nonce); otherwise its side pairs when
	 * our request arrives. */
	for (uint32_t i = 0; i < VB_PENDING_MAX; i++) {
		struct vb_req *q = &r->reqs[i];

		if (q->used && q->m.src_nonce == a->nonce) {
			q->used = false;
			if (r->self.nonce <= a->nonce && !q->m.ack_qpn)
				handle_msg(r, p, &q->m);
		}
	}
	if (p->state == VB_CONNECTING)
		send_msg(r, p);
	return 0;
err:
	if (p->qp)
		ibv_destroy_qp(p->qp);
	if (p->ah)
		ibv_destroy_ah(p->ah);
	free(p);
	return ret;
}

/* Receive connect messages, reap UD sends, resend what is unanswered. */
void vb_cm_progress(struct xfer_rail *r)
{
	struct ibv_wc wc[8];
	int n;

	while ((n = ibv_poll_cq(r->ctl_cq, (int)ARRAY_SIZE(wc), wc)) > 0) {
		for (int i = 0; i < n; i++) {
			/* by wr_id: the opcode of an error completion is undefined */
			if (!(wc[i].wr_id & VB_CTL_SEND_TAG)) {
				uint32_t slot = (uint32_t)wc[i].wr_id;

				if (wc[i].status == IBV_WC_SUCCESS)
					recv_msg(r, recv_slot(r, slot), wc[i].byte_len);
				post_ctl_recv(r, slot);
			} else {
				r->ctl_send_head++;   /* UD sends complete in order */
			}
		}
	}
	if (!r->connecting)
		return;
	uint64_t now = xfer_now_ns();

	for (uint32_t i = 0; i < r->peers_hi; i++) {
		struct vb_peer *p = r->peers[i];

		if (!p || p->state != VB_CONNECTING || now < p->next_send_ns)
			continue;
		send_msg(r, p);
		p->backoff_ns = p->backoff_ns * 2 > VB_RESEND_MAX_NS ? VB_RESEND_MAX_NS
								       : p->backoff_ns * 2;
		p->next_send_ns = now + p->backoff_ns;
	}
}
