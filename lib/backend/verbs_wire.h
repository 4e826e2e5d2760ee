/* SPDX-License-Identifier: MIT */
/*
 * The verbs backend's two wire formats, kept free of ibverbs so that unit
 * tests run on machines without RDMA:
 *
 *  - the rail address: a static blob published in the engine address before
 *    any peer is known (GID/LID, port MTU, the rail's UD QP number and qkey,
 *    and a random nonce naming this rail instance);
 *  - the connect message, sent over the UD QPs of a rail pair to exchange
 *    the RC QP number and PSN of that pair (see verbs_cm.c).
 *
 * Both are fixed-size, little-endian, versioned and checked field by field:
 * anything malformed is refused with -EINVAL (-EPROTO for a newer version).
 */
#ifndef XFER_VERBS_WIRE_H
#define XFER_VERBS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define VW_ADDR_MAGIC 0x31425658u  /* "XVB1" */
#define VW_MSG_MAGIC  0x31485658u  /* "XVH1" */
#define VW_VERSION 1
#define VW_ADDR_LEN 48
#define VW_MSG_LEN 48

/* Link layers as ibverbs numbers them (IBV_LINK_LAYER_*). */
#define VW_LL_IB 1
#define VW_LL_ETH 2

struct vw_addr {
	uint8_t link_layer;     /* VW_LL_* */
	uint8_t port;           /* 1-based port number */
	uint8_t mtu;            /* enum ibv_mtu of the port (1..5) */
	uint8_t gid_index;      /* informational: the sender's GID index */
	uint16_t lid;           /* IB only */
	uint32_t ud_qpn;        /* 24 bits */
	uint32_t qkey;
	uint8_t gid[16];
	uint64_t nonce;         /* != 0, names this rail instance */
};

#define VW_F_NEED_REPLY 0x01   /* the sender has not yet seen its QPN acknowledged */
#define VW_F_KNOWN (VW_F_NEED_REPLY)

struct vw_msg {
	uint8_t flags;          /* VW_F_* */
	uint8_t mtu;            /* sender's port MTU */
	uint64_t src_nonce;     /* sender's rail nonce (as in its address) */
	uint64_t dst_nonce;     /* receiver's rail nonce (from its address) */
	uint32_t qpn;           /* sender's RC QP for this rail pair */
	uint32_t psn;           /* its initial send PSN, 24 bits */
	uint32_t ack_qpn;       /* receiver's RC QPN the sender has recorded, 0 if none */
};

int vw_addr_encode(const struct vw_addr *a, void *buf, size_t *len);
int vw_addr_decode(const void *buf, size_t len, struct vw_addr *a);
int vw_msg_encode(const struct vw_msg *m, void *buf, size_t len);
int vw_msg_decode(const void *buf, size_t len, struct vw_msg *m);

#endif
