/* SPDX-License-Identifier: MIT */
/*
 * The ibverbs backend's private state, shared by its files:
 *   verbs.c       device, PD, CQ, SRQ; memory registration; the ops table
 *   verbs_cm.c    connection set-up over a UD QP per rail (no daemon, no TCP)
 *   verbs_data.c  posting writes on RC QPs, completions, immediates
 *   verbs_wire.c  the rail address and connect message formats
 *
 * Every call on a rail comes from the engine's worker thread: no locks.
 */
#ifndef XFER_VERBS_PRIV_H
#define XFER_VERBS_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include <infiniband/verbs.h>

#include "backend.h"
#include "clock.h"
#include "compiler.h"
#include "verbs_wire.h"

#define VB_SQ_DEPTH 256         /* send queue per RC QP (power of two) */
#define VB_SIGNAL_EVERY 16      /* at most this many WRs between signalled ones */
#define VB_CHAIN_MAX 32         /* WRs per ibv_post_send */
#define VB_QP_MAX_BYTES (8ull << 20)  /* bytes in flight per RC QP: far above any
				       * bandwidth-delay product, and it bounds the work
				       * a soft device (rxe) does in the poster's context */
/* ... and at most this many bytes between signalled WRs: a completion frees
 * room while three quarters of the byte budget is still queued, so large
 * writes (where the budget, not the ring, limits what is in flight) never
 * let the QP run dry waiting for one completion that covers everything. */
#define VB_SIGNAL_BYTES (VB_QP_MAX_BYTES / 4)
#define VB_SRQ_DEPTH 1024       /* zero-length receives for immediates: the SRQ's size */
/* ... of which this many are posted at first: a stopped process's device
 * still takes writes with immediates while it has receives posted, so what
 * is posted bounds the time a stalled target keeps completing writes before
 * RNR leaves them waiting and the engine's peer timeout runs (8 MiB of
 * 64 KiB writes: over a second on a soft device). The level doubles, up to
 * the SRQ's size, when the worker finds half of it consumed at one poll. */
#define VB_SRQ_START 128
#define VB_SRQ_REFILL 32        /* repost once this many were consumed */
#define VB_QKEY 0x58464552u     /* "XFER" */
#define VB_CTL_RECV 32          /* UD receive slots */
#define VB_CTL_SEND 16          /* UD send slots */
#define VB_CTL_SLOT 128         /* GRH (40) + message, rounded */
#define VB_GRH 40
#define VB_PENDING_MAX 64       /* connect requests from peers not yet added */
#define VB_RESEND_MIN_NS 10000000ull    /* 10 ms, doubling ... */
#define VB_RESEND_MAX_NS 500000000ull   /* ... up to 500 ms */

/* Receives on the SRQ have this bit in wr_id; sends carry peer << 32 | seq. */
#define VB_WRID_RECV (1ull << 63)

enum vb_state {
	VB_CONNECTING = 1,      /* QP in INIT, handshake running */
	VB_UP,                  /* both sides have each other's QPN: posts go out */
	VB_ERROR,               /* an error completion: PEER_DOWN reported */
	VB_CLOSED,              /* removed: QP destroyed, completions ignored */
};

struct vb_peer {
	uint32_t index;
	uint8_t state;          /* enum vb_state */
	bool have_remote;       /* remote QPN recorded and our QP at RTS */
	bool acked;             /* the peer has recorded our QPN */
	int down_status;        /* the errno PEER_DOWN reported */
	struct vw_addr addr;    /* its rail address */
	struct ibv_ah *ah;      /* for connect messages to its UD QP */
	struct ibv_qp *qp;
	uint32_t psn;           /* our initial send PSN */
	uint32_t rqpn, rpsn;
	uint64_t next_send_ns, backoff_ns;
	/* In-order ring of posted WRs: seq head..tail-1 are outstanding. */
	struct vb_slot {
		void *ctx;
		uint64_t gseq;  /* the rail's post number of this WR */
		uint64_t len;
	} ring[VB_SQ_DEPTH];
	uint32_t head, tail;
	uint32_t unsignaled;    /* WRs posted since the last signalled one */
	uint64_t unsignaled_bytes;   /* and their payload */
	uint32_t sig_tail;      /* seq after the newest signalled WR */
	bool uncovered;         /* WRs after the newest signalled one are outstanding */
	uint64_t bytes_out;     /* payload of the outstanding WRs */
	/* Connections the peer opened to us beyond this one (it added us again
	 * under another index): accepted here, receive-only (verbs_cm.c). */
	struct vb_pconn {
		struct ibv_qp *qp;
		uint32_t psn, rqpn;
	} *pc;
	uint32_t npc, pc_cap;
};

struct vb_req {                 /* a connect message from a peer not yet added */
	struct vw_msg m;
	bool used;
	uint64_t when_ns;
};

/* An MR deregistered while WRs posted before it may still read it. */
struct vb_dead_mr {
	struct vb_dead_mr *next;
	struct ibv_mr *mr;
	uint64_t gseq;          /* the rail's post number at deregistration */
};

struct xfer_rail {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;      /* RC sends and SRQ receives */
	struct ibv_comp_channel *channel; /* events of cq and ctl_cq: the idle worker's wake-up */
	struct ibv_srq *srq;
	char dev_name[64];
	uint8_t port;
	uint8_t gid_index;
	uint8_t link_layer;     /* VW_LL_* */
	bool relaxed_ok;        /* IBV_ACCESS_RELAXED_ORDERING accepted */
	uint64_t max_msg;
	uint32_t cq_depth;
	uint32_t srq_missing;   /* receives consumed, not yet reposted */
	uint32_t srq_level;     /* receives kept posted (VB_SRQ_START doubling) */
	uint32_t srq_max;       /* the SRQ's size */
	struct vw_addr self;

	/* connection set-up (verbs_cm.c) */
	struct ibv_cq *ctl_cq;
	struct ibv_qp *ud;
	struct ibv_mr *ctl_mr;
	uint8_t *ctl_buf;       /* VB_CTL_RECV receive slots, then VB_CTL_SEND send slots */
	uint32_t ctl_send_head, ctl_send_tail;
	uint32_t connecting;    /* peers in VB_CONNECTING */
	uint32_t poll_calls;
	struct vb_req reqs[VB_PENDING_MAX];

	uint32_t peers_hi;      /* 1 + highest peer index added */
	struct vb_peer *peers[XFER_MAX_PEERS];

	uint64_t post_seq;      /* WRs ever posted on this rail */
	uint64_t outstanding;   /* WRs posted and not yet completed */
	uint32_t nuncovered;    /* peers whose newest WRs wait for a signalled one, */
	uint32_t uncovered[XFER_MAX_PEERS];   /* by index */
	struct vb_dead_mr *dead_mrs;

	/* completions waiting for room in poll()'s output (FIFO ring) */
	struct xfer_cqe *fifo;
	uint32_t fifo_cap, fifo_head, fifo_n;
};

/* verbs.c */
void vb_fill_ah(struct xfer_rail *r, const struct vw_addr *peer, struct ibv_ah_attr *ah);

/* verbs_cm.c */
int vb_cm_open(struct xfer_rail *r);
void vb_cm_close(struct xfer_rail *r);
int vb_cm_add_peer(struct xfer_rail *r, uint32_t peer, const struct vw_addr *a);
void vb_cm_progress(struct xfer_rail *r);
void vb_cm_drop_pconns(struct vb_peer *p);

/* verbs_data.c */
int vb_fifo_push(struct xfer_rail *r, const struct xfer_cqe *c);
int vb_wait_fd(struct xfer_rail *r);
int vb_trywait(struct xfer_rail *r);
void vb_peer_fail(struct xfer_rail *r, struct vb_peer *p, int status);
void vb_peer_drop(struct xfer_rail *r, struct vb_peer *p);
void vb_qp_destroy(struct ibv_qp *qp);
int vb_srq_fill(struct xfer_rail *r, uint32_t n);
int vb_post_write(struct xfer_rail *r, uint32_t peer, const struct xfer_wr *wrs, int n);
int vb_poll(struct xfer_rail *r, struct xfer_cqe *out, int n);
int vb_wc_errno(enum ibv_wc_status s);
void vb_mr_release(struct xfer_rail *r, struct ibv_mr *mr);
void vb_dead_mrs_reap(struct xfer_rail *r, bool all);

#endif
