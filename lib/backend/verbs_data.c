/* SPDX-License-Identifier: MIT */
/*
 * The data path: RDMA WRITE / WRITE_WITH_IMM on the RC QP of a peer, chains
 * of WRs per ibv_post_send, selective signalling, immediates through the
 * shared receive queue, and errors mapped onto exactly the pieces they
 * belong to.
 *
 * Selective signalling keeps the engine's rule that every wr.ctx gets one
 * XFER_CQE_LOCAL: each QP keeps its posted contexts in an in-order ring;
 * at most VB_SIGNAL_EVERY WRs go unsignalled. RC completes a QP's WRs in
 * order, so a signalled completion completes every older entry of the
 * ring. The last WR of a chain is signalled only when no signalled WR is
 * outstanding on the QP: otherwise that one's completion comes anyway, the
 * engine's callbacks post more behind it (the next chain then carries the
 * signal), and only if none came does the next poll post a zero-length
 * signalled write to cover the tail (vb_cover_tails). So a stream of single
 * writes makes one completion per VB_SIGNAL_EVERY, as perftest's CQ
 * moderation does, and a lone write still completes at once. An error completion names its own WR (flushes name every WR,
 * signalled or not); older entries before the first error succeeded. When
 * the engine removes the peer (after PEER_DOWN) whatever the ring still
 * holds completes with the peer's error, so nothing waits forever.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "verbs_priv.h"

int vb_wc_errno(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS: return 0;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR: return -ETIMEDOUT;
	case IBV_WC_REM_ACCESS_ERR: return -EACCES;
	case IBV_WC_LOC_PROT_ERR: return -EFAULT;
	case IBV_WC_LOC_LEN_ERR:
	case IBV_WC_REM_INV_REQ_ERR: return -EINVAL;
	case IBV_WC_REM_OP_ERR: return -EREMOTEIO;
	case IBV_WC_WR_FLUSH_ERR: return -ECONNRESET;
	default: return -EIO;
	}
}

/* ---- completions waiting for room in poll()'s output ------------------ */

int vb_fifo_push(struct xfer_rail *r, const struct xfer_cqe *c)
{
	if (r->fifo_n == r->fifo_cap) {
		uint32_t cap = r->fifo_cap * 2;
		struct xfer_cqe *f = malloc(cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		for (uint32_t i = 0; i < r->fifo_n; i++)
			f[i] = r->fifo[(r->fifo_head + i) % r->fifo_cap];
		free(r->fifo);
		r->fifo = f;
		r->fifo_cap = cap;
		r->fifo_head = 0;
	}
	r->fifo[(r->fifo_head + r->fifo_n) % r->fifo_cap] = *c;
	r->fifo_n++;
	return 0;
}

static int fifo_drain(struct xfer_rail *r, struct xfer_cqe *out, int n)
{
	int got = 0;

	while (got < n && r->fifo_n) {
		out[got++] = r->fifo[r->fifo_head];
		r->fifo_head = (r->fifo_head + 1) % r->fifo_cap;
		r->fifo_n--;
	}
	return got;
}

/* The ring entry at p->head completed with `status`. */
static void pop_done(struct xfer_rail *r, struct vb_peer *p, int status)
{
	struct vb_slot *sl = &p->ring[p->head % VB_SQ_DEPTH];
	struct xfer_cqe c = { .kind = XFER_CQE_LOCAL, .status = status, .ctx = sl->ctx };

	p->bytes_out -= sl->len;
	p->head++;
	r->outstanding--;
	if (c.ctx)   /* NULL: a cover write of our own (vb_cover_tails) */
		vb_fifo_push(r, &c);
}

static void vb_cover_tails(struct xfer_rail *r);

/* A signalled WR is outstanding: its completion is still to come. */
static bool signal_pending(const struct vb_peer *p)
{
	return (uint32_t)(p->sig_tail - p->head) - 1u < (uint32_t)(p->tail - p->head);
}

/* ---- deregistration that waits for the WRs that may still read the MR ---- */

/* The engine may deregister a source region while writes from it are in
 * flight (destroy, or a caller releasing early); ibv_dereg_mr then would
 * turn those writes into protection errors and the QP into the error state.
 * So an MR is released only once every WR posted before the call completed. */
void vb_mr_release(struct xfer_rail *r, struct ibv_mr *mr)
{
	struct vb_dead_mr *d;

	if (!r->outstanding || !(d = malloc(sizeof(*d)))) {
		ibv_dereg_mr(mr);
		return;
	}
	d->mr = mr;
	d->gseq = r->post_seq;
	d->next = r->dead_mrs;
	r->dead_mrs = d;
}

void vb_dead_mrs_reap(struct xfer_rail *r, bool all)
{
	uint64_t oldest = UINT64_MAX;   /* post number of the oldest outstanding WR */

	if (!all && r->outstanding) {
		for (uint32_t i = 0; i < r->peers_hi; i++) {
			struct vb_peer *p = r->peers[i];

			if (p && p->head != p->tail && p->ring[p->head % VB_SQ_DEPTH].gseq < oldest)
				oldest = p->ring[p->head % VB_SQ_DEPTH].gseq;
		}
	}
	for (struct vb_dead_mr **pp = &r->dead_mrs, *d; (d = *pp);) {
		if (all || d->gseq <= oldest) {
			*pp = d->next;
			ibv_dereg_mr(d->mr);
			free(d);
		} else {
			pp = &d->next;
		}
	}
}

/* ---- peers going down ----------------------------------------------------- */

/* First error on a peer's QP: report it once; the engine then removes the
 * peer (vb_peer_drop) on every rail. */
void vb_peer_fail(struct xfer_rail *r, struct vb_peer *p, int status)
{
	struct xfer_cqe c = { .kind = XFER_CQE_PEER_DOWN, .peer = p->index };

	if (p->state == VB_ERROR || p->state == VB_CLOSED)
		return;
	if (p->state == VB_CONNECTING)
		r->connecting--;
	/* the engine's peer errors: retry exceeded is a timeout, the rest a reset */
	p->down_status = status == -ETIMEDOUT ? -ETIMEDOUT : -ECONNRESET;
	p->state = VB_ERROR;
	c.status = p->down_status;
	vb_fifo_push(r, &c);
}

/* Error state first: the requester stops sending what is queued (rxe on 6.1
 * otherwise finishes every queued message before destroy returns). */
void vb_qp_destroy(struct ibv_qp *qp)
{
	struct ibv_qp_attr at = { .qp_state = IBV_QPS_ERR };

	ibv_modify_qp(qp, &at, IBV_QP_STATE);
	ibv_destroy_qp(qp);
}

/* Tear the QP down; what it still held completes with the peer's error.
 * The struct stays (peer indexes are not reused) so that completions of the
 * destroyed QP still in the CQ are recognised and dropped. */
void vb_peer_drop(struct xfer_rail *r, struct vb_peer *p)
{
	int status = p->down_status ? p->down_status : -ECONNRESET;

	if (p->state == VB_CLOSED)
		return;
	if (p->state == VB_CONNECTING)
		r->connecting--;
	while (p->head != p->tail)
		pop_done(r, p, status);
	if (p->qp)
		vb_qp_destroy(p->qp);
	vb_cm_drop_pconns(p);
	if (p->ah)
		ibv_destroy_ah(p->ah);
	p->qp = NULL;
	p->ah = NULL;
	p->state = VB_CLOSED;
}

/* ---- immediates ------------------------------------------------------------ */

int vb_srq_fill(struct xfer_rail *r, uint32_t n)
{
	struct ibv_recv_wr wr[VB_SRQ_REFILL], *bad;

	while (n) {
		uint32_t k = n < VB_SRQ_REFILL ? n : VB_SRQ_REFILL;
		int ret;

		for (uint32_t i = 0; i < k; i++)   /* zero-length: immediates only */
			wr[i] = (struct ibv_recv_wr){ .wr_id = VB_WRID_RECV,
						      .next = i + 1 < k ? &wr[i + 1] : NULL };
		ret = ibv_post_srq_recv(r->srq, wr, &bad);
		if (ret)
			return -ret;   /* retried on a later poll; a short SRQ only slows arrivals */
		n -= k;
	}
	return 0;
}

/* ---- posting ----------------------------------------------------------------- */

int vb_post_write(struct xfer_rail *r, uint32_t peer, const struct xfer_wr *wrs, int n)
{
	struct ibv_send_wr swr[VB_CHAIN_MAX], *bad = NULL;
	struct ibv_sge sge[VB_CHAIN_MAX];
	struct vb_peer *p = peer < XFER_MAX_PEERS ? r->peers[peer] : NULL;
	uint32_t room;
	int m, ret;

	if (!p || p->state == VB_CLOSED)
		return -ENOTCONN;
	if (p->state == VB_ERROR)
		return p->down_status;
	if (p->state != VB_UP)
		return -EAGAIN;   /* handshake still running: the engine retries */
	room = VB_SQ_DEPTH - (p->tail - p->head);
	m = n < (int)room ? n : (int)room;
	if (m > VB_CHAIN_MAX)
		m = VB_CHAIN_MAX;
	if (m <= 0)
		return -EAGAIN;
	uint64_t bytes = p->bytes_out;

	for (int i = 0; i < m; i++) {
		if (wrs[i].len && !wrs[i].ldesc) {   /* a source without registration */
			if (!i)
				return -EINVAL;
			m = i;   /* post the valid ones; the engine sees the rest refused next */
			break;
		}
		/* a byte budget per QP; one WR always goes when none is out */
		if (bytes && bytes + wrs[i].len > VB_QP_MAX_BYTES) {
			if (!i)
				return -EAGAIN;
			m = i;
			break;
		}
		bytes += wrs[i].len;
	}
	bool chain_signalled = false;
	uint32_t sig_seq = 0;

	for (int i = 0; i < m; i++) {
		const struct xfer_wr *w = &wrs[i];
		uint32_t seq = p->tail + (uint32_t)i;
		struct ibv_send_wr *s = &swr[i];

		memset(s, 0, sizeof(*s));
		s->wr_id = (uint64_t)peer << 32 | seq;
		s->next = i + 1 < m ? &swr[i + 1] : NULL;
		if (w->len) {
			sge[i].addr = (uint64_t)(uintptr_t)w->laddr;
			sge[i].length = (uint32_t)w->len;
			sge[i].lkey = ((struct ibv_mr *)w->ldesc)->lkey;
			s->sg_list = &sge[i];
			s->num_sge = 1;
		}
		if (w->has_imm) {
			s->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
			s->imm_data = htonl(w->imm);
		} else {
			s->opcode = IBV_WR_RDMA_WRITE;
		}
		s->wr.rdma.remote_addr = w->raddr;
		s->wr.rdma.rkey = (uint32_t)w->rkey;
		p->unsignaled_bytes += w->len;
		if (++p->unsignaled >= VB_SIGNAL_EVERY || p->unsignaled_bytes >= VB_SIGNAL_BYTES ||
		    (i + 1 == m && !signal_pending(p) && !chain_signalled)) {
			s->send_flags = IBV_SEND_SIGNALED;
			p->unsignaled = 0;
			p->unsignaled_bytes = 0;
			chain_signalled = true;
			sig_seq = seq + 1;
		}
		p->ring[seq % VB_SQ_DEPTH].ctx = w->ctx;
		p->ring[seq % VB_SQ_DEPTH].gseq = r->post_seq + (uint64_t)i;
		p->ring[seq % VB_SQ_DEPTH].len = w->len;
	}
	ret = ibv_post_send(p->qp, swr, &bad);
	if (ret) {
		/* Only the WRs before `bad` were taken. The QP is in error if the
		 * queue we sized ourselves refused them: flushes complete the
		 * taken ones, signalled or not. */
		int taken = (int)(bad - swr);

		if (taken < 0 || taken > m)
			taken = 0;
		p->tail += (uint32_t)taken;
		for (int i = 0; i < taken; i++)
			p->bytes_out += wrs[i].len;
		r->post_seq += (uint64_t)taken;
		r->outstanding += (uint64_t)taken;
		if (taken)
			return taken;
		return ret == ENOMEM ? -EAGAIN : -ret;
	}
	p->tail += (uint32_t)m;
	p->bytes_out = bytes;
	r->post_seq += (uint64_t)m;
	r->outstanding += (uint64_t)m;
	if (chain_signalled)
		p->sig_tail = sig_seq;
	if (p->sig_tail != p->tail && !p->uncovered) {
		if (r->nuncovered == XFER_MAX_PEERS)
			vb_cover_tails(r);   /* drops the indices of removed peers */
		p->uncovered = true;
		r->uncovered[r->nuncovered++] = p->index;
	}
	return m;
}

/* Outstanding WRs behind the newest signalled one, and that one completed:
 * nothing else will complete them, so post a zero-length signalled write
 * (C9-88: no address or key is checked for zero bytes) behind them. */
static void cover_tail(struct xfer_rail *r, struct vb_peer *p)
{
	struct ibv_send_wr wr = { 0 }, *bad = NULL;
	uint32_t seq = p->tail;

	if (p->state != VB_UP || p->tail - p->head >= VB_SQ_DEPTH)
		return;   /* in error (flushes complete them) or full (a later poll) */
	wr.wr_id = (uint64_t)p->index << 32 | seq;
	wr.opcode = IBV_WR_RDMA_WRITE;
	wr.send_flags = IBV_SEND_SIGNALED;
	p->ring[seq % VB_SQ_DEPTH] = (struct vb_slot){ .ctx = NULL, .gseq = r->post_seq, .len = 0 };
	if (ibv_post_send(p->qp, &wr, &bad))
		return;   /* the QP is failing: its flush completes everything */
	p->tail++;
	p->sig_tail = p->tail;
	p->unsignaled = 0;
	p->unsignaled_bytes = 0;
	p->uncovered = false;
	r->post_seq++;
	r->outstanding++;
}

static void vb_cover_tails(struct xfer_rail *r)
{
	uint32_t kept = 0;

	/* Each listed peer once (a removed peer's index may be listed again by
	 * its successor): flags are cleared here and set again for the kept. */
	for (uint32_t i = 0; i < r->nuncovered; i++) {
		struct vb_peer *p = r->peers[r->uncovered[i]];

		if (!p || !p->uncovered)
			continue;
		p->uncovered = false;
		if (p->sig_tail == p->tail || p->head == p->tail)
			continue;
		if (!signal_pending(p))
			cover_tail(r, p);
		if (p->sig_tail != p->tail)
			r->uncovered[kept++] = p->index;
	}
	r->nuncovered = kept;
	for (uint32_t i = 0; i < kept; i++)
		r->peers[r->uncovered[i]]->uncovered = true;
}

/* ---- completions --------------------------------------------------------------- */

static void send_wc(struct xfer_rail *r, const struct ibv_wc *wc)
{
	uint32_t peer = (uint32_t)(wc->wr_id >> 32) & 0x7fffffff;
	uint32_t seq = (uint32_t)wc->wr_id;
	struct vb_peer *p = peer < XFER_MAX_PEERS ? r->peers[peer] : NULL;
	int status = vb_wc_errno(wc->status);

	if (!p || p->state == VB_CLOSED)
		return;   /* a QP already torn down: its pieces were completed then */
	if (seq - p->head >= p->tail - p->head)
		return;   /* not outstanding (cannot happen on a sane device) */
	/* older entries: done before this one, or flushed after an error */
	while (p->head != seq)
		pop_done(r, p, p->state == VB_ERROR ? p->down_status : 0);
	pop_done(r, p, status);
	if (status)
		vb_peer_fail(r, p, status);
}

static void recv_wc(struct xfer_rail *r, const struct ibv_wc *wc)
{
	r->srq_missing++;
	if (wc->status != IBV_WC_SUCCESS || wc->opcode != IBV_WC_RECV_RDMA_WITH_IMM)
		return;   /* an aborted arrival: nothing of ours to complete */
	struct xfer_cqe c = {
		.kind = XFER_CQE_IMM,
		.imm = ntohl(wc->imm_data),
		.len = wc->byte_len,
	};
	vb_fifo_push(r, &c);
}

/* Translate what the CQ holds into the FIFO; returns how many it took. */
static int cq_take(struct xfer_rail *r)
{
	struct ibv_wc wc[32];
	int k = ibv_poll_cq(r->cq, (int)ARRAY_SIZE(wc), wc);

	for (int i = 0; i < k; i++) {
		if (wc[i].wr_id & VB_WRID_RECV)
			recv_wc(r, &wc[i]);
		else
			send_wc(r, &wc[i]);
	}
	return k > 0 ? k : 0;
}

int vb_wait_fd(struct xfer_rail *r)
{
	return r->channel ? r->channel->fd : -1;
}

/* Safe to sleep on the channel: events acknowledged, both CQs armed, and
 * nothing that arrived before arming (which raises no event) left unseen. */
int vb_trywait(struct xfer_rail *r)
{
	struct ibv_cq *cq;
	void *cq_ctx;

	if (!r->channel)
		return -EAGAIN;
	while (ibv_get_cq_event(r->channel, &cq, &cq_ctx) == 0)
		ibv_ack_cq_events(cq, 1);
	if (ibv_req_notify_cq(r->cq, 0) || ibv_req_notify_cq(r->ctl_cq, 0))
		return -EAGAIN;
	while (cq_take(r) > 0)
		;
	if (r->nuncovered)   /* nothing may sleep on WRs no completion will cover */
		vb_cover_tails(r);
	vb_cm_progress(r);
	return r->fifo_n ? -EAGAIN : 0;
}

int vb_poll(struct xfer_rail *r, struct xfer_cqe *out, int n)
{
	struct ibv_wc wc[32];
	int got;

	/* Connection set-up shares the worker's loop: every call while
	 * handshakes run, otherwise now and then for late requests. */
	if (r->connecting || (r->poll_calls++ & 15) == 0)
		vb_cm_progress(r);
	if (r->nuncovered)   /* before polling: the engine has posted what it had */
		vb_cover_tails(r);
	got = fifo_drain(r, out, n);
	while (got < n) {
		int k = ibv_poll_cq(r->cq, (int)ARRAY_SIZE(wc), wc);

		if (k <= 0)
			break;
		for (int i = 0; i < k; i++) {
			if (wc[i].wr_id & VB_WRID_RECV)
				recv_wc(r, &wc[i]);
			else
				send_wc(r, &wc[i]);
		}
		got += fifo_drain(r, out + got, n - got);
		if (k < (int)ARRAY_SIZE(wc))
			break;
	}
	if (r->dead_mrs)
		vb_dead_mrs_reap(r, false);
	if (r->srq_missing >= VB_SRQ_REFILL) {
		uint32_t want = r->srq_missing, grow = 0;

		/* half the posted receives consumed between two refills: the
		 * arrival rate outruns the level, post more */
		if (r->srq_missing >= r->srq_level / 2 && r->srq_level < r->srq_max)
			grow = r->srq_level < r->srq_max - r->srq_level ? r->srq_level
									 : r->srq_max - r->srq_level;
		if (vb_srq_fill(r, want + grow) == 0) {
			r->srq_missing = 0;
			r->srq_level += grow;
		}
	}
	return got;
}
