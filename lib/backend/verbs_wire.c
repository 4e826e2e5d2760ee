/* SPDX-License-Identifier: MIT */
/* Encoding and validation of the verbs backend's rail address and connect message. */
#include <errno.h>
#include <string.h>

#include "crc32c.h"
#include "le.h"
#include "verbs_wire.h"

/* Both layouts end in the crc32c of their first 44 bytes. */
#define VW_CRC_AT 44

/* Layout (little-endian):
 *  0 magic  4 version  5 link_layer  6 port  7 mtu  8 gid_index  9 zero
 * 10 lid   12 ud_qpn  16 qkey  20 gid[16]  36 nonce  44 crc32c of bytes 0..43 */
int vw_addr_encode(const struct vw_addr *a, void *buf, size_t *len)
{
	uint8_t *p = buf;

	if (*len < VW_ADDR_LEN)
		return -ENOSPC;
	memset(p, 0, VW_ADDR_LEN);
	xfer_put_le32(p, VW_ADDR_MAGIC);
	p[4] = VW_VERSION;
	p[5] = a->link_layer;
	p[6] = a->port;
	p[7] = a->mtu;
	p[8] = a->gid_index;
	xfer_put_le16(p + 10, a->lid);
	xfer_put_le32(p + 12, a->ud_qpn);
	xfer_put_le32(p + 16, a->qkey);
	memcpy(p + 20, a->gid, 16);
	xfer_put_le64(p + 36, a->nonce);
	xfer_put_le32(p + VW_CRC_AT, xfer_crc32c(p, VW_CRC_AT));
	*len = VW_ADDR_LEN;
	return 0;
}

/* What both decoders check first: length, magic, version (-EPROTO when
 * only that differs: a peer of another build), then the crc. */
static int frame_check(const uint8_t *p, size_t len, size_t want, uint32_t magic)
{
	if (!p || len != want || xfer_get_le32(p) != magic)
		return -EINVAL;
	if (p[4] != VW_VERSION)
		return -EPROTO;
	if (xfer_get_le32(p + VW_CRC_AT) != xfer_crc32c(p, VW_CRC_AT))
		return -EINVAL;
	return 0;
}

static int mtu_ok(uint8_t mtu)
{
	return mtu >= 1 && mtu <= 5;   /* IBV_MTU_256 .. IBV_MTU_4096 */
}

int vw_addr_decode(const void *buf, size_t len, struct vw_addr *a)
{
	const uint8_t *p = buf;
	int ret = frame_check(p, len, VW_ADDR_LEN, VW_ADDR_MAGIC);

	if (ret)
		return ret;
	if (p[9])
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->link_layer = p[5];
	a->port = p[6];
	a->mtu = p[7];
	a->gid_index = p[8];
	a->lid = xfer_get_le16(p + 10);
	a->ud_qpn = xfer_get_le32(p + 12);
	a->qkey = xfer_get_le32(p + 16);
	memcpy(a->gid, p + 20, 16);
	a->nonce = xfer_get_le64(p + 36);
	if ((a->link_layer != VW_LL_IB && a->link_layer != VW_LL_ETH) || a->port == 0 ||
	    !mtu_ok(a->mtu) || a->ud_qpn == 0 || a->ud_qpn > 0xffffff || a->nonce == 0)
		return -EINVAL;
	return 0;
}

/* Layout (little-endian):
 *  0 magic  4 version  5 flags  6 mtu  7 zero  8 src_nonce  16 dst_nonce
 * 24 qpn  28 psn  32 ack_qpn  36 eight zero bytes  44 crc32c of bytes 0..43 */
int vw_msg_encode(const struct vw_msg *m, void *buf, size_t len)
{
	uint8_t *p = buf;

	if (len < VW_MSG_LEN)
		return -ENOSPC;
	memset(p, 0, VW_MSG_LEN);
	xfer_put_le32(p, VW_MSG_MAGIC);
	p[4] = VW_VERSION;
	p[5] = m->flags;
	p[6] = m->mtu;
	xfer_put_le64(p + 8, m->src_nonce);
	xfer_put_le64(p + 16, m->dst_nonce);
	xfer_put_le32(p + 24, m->qpn);
	xfer_put_le32(p + 28, m->psn);
	xfer_put_le32(p + 32, m->ack_qpn);
	xfer_put_le32(p + VW_CRC_AT, xfer_crc32c(p, VW_CRC_AT));
	return VW_MSG_LEN;
}

int vw_msg_decode(const void *buf, size_t len, struct vw_msg *m)
{
	const uint8_t *p = buf;
	int ret = frame_check(p, len, VW_MSG_LEN, VW_MSG_MAGIC);

	if (ret)
		return ret;
	if (p[7] || xfer_get_le64(p + 36))
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	m->flags = p[5];
	m->mtu = p[6];
	m->src_nonce = xfer_get_le64(p + 8);
	m->dst_nonce = xfer_get_le64(p + 16);
	m->qpn = xfer_get_le32(p + 24);
	m->psn = xfer_get_le32(p + 28);
	m->ack_qpn = xfer_get_le32(p + 32);
	if ((m->flags & ~VW_F_KNOWN) || !mtu_ok(m->mtu) || !m->src_nonce || !m->dst_nonce ||
	    !m->qpn || m->qpn > 0xffffff || m->psn > 0xffffff || m->ack_qpn > 0xffffff)
		return -EINVAL;
	return 0;
}
