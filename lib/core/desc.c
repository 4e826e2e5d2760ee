/* SPDX-License-Identifier: MIT */
/*
 * Wire formats exchanged out of band: region descriptors and engine
 * addresses. Little-endian, fixed header with magic, version, header
 * length, total length and a CRC32C over the whole blob. Decoding checks
 * every field before it is used and never reads past `len`: malformed input
 * is -EINVAL, whatever it contains.
 */
#include <errno.h>
#include <string.h>

#include "crc32c.h"
#include "internal.h"
#include "le.h"

#define DESC_MAGIC 0x44524658u  /* "XFRD" */
#define ADDR_MAGIC 0x41524658u  /* "XFRA" */
#define DESC_VERSION 1
#define ADDR_VERSION 2          /* 2: the same-host section */
#define DESC_HDR 56
#define ADDR_HDR 56
#define ADDR_RAIL_HDR 24
#define ADDR_HOST 64            /* the same-host section, after the rails */

_Static_assert(ADDR_HDR + XFER_MAX_RAILS * (ADDR_RAIL_HDR + XFER_RAIL_ADDR_MAX) + ADDR_HOST <=
	       XFER_ADDR_MAX, "the largest address fits XFER_ADDR_MAX");

/* CRC32C of a blob whose crc field (bytes 12..15) counts as zero. */
static uint32_t blob_crc(const uint8_t *p, size_t len)
{
	static const uint8_t zero[4];
	uint32_t c = xfer_crc32c_update(~0u, p, 12);

	c = xfer_crc32c_update(c, zero, 4);
	return ~xfer_crc32c_update(c, p + 16, len - 16);
}

static int check_header(const uint8_t *p, size_t len, uint32_t magic, uint16_t version,
			uint16_t hdr_len)
{
	if (!p || len < hdr_len)
		return -EINVAL;
	if (xfer_get_le32(p) != magic || xfer_get_le16(p + 4) != version ||
	    xfer_get_le16(p + 6) != hdr_len)
		return -EINVAL;
	if (xfer_get_le32(p + 8) != len)
		return -EINVAL;
	if (xfer_get_le32(p + 12) != blob_crc(p, len))
		return -EINVAL;
	return 0;
}

static void finish_header(uint8_t *p, size_t len, uint32_t magic, uint16_t version,
			  uint16_t hdr_len)
{
	xfer_put_le32(p, magic);
	xfer_put_le16(p + 4, version);
	xfer_put_le16(p + 6, hdr_len);
	xfer_put_le32(p + 8, (uint32_t)len);
	xfer_put_le32(p + 12, 0);
	xfer_put_le32(p + 12, blob_crc(p, len));
}

int xfer_desc_encode(const struct xfer_desc *d, void *buf, size_t *len)
{
	size_t need;
	uint8_t *p = buf;

	if (!d || !len || d->num_rails == 0 || d->num_rails > XFER_MAX_RAILS)
		return -EINVAL;
	need = DESC_HDR + (size_t)d->num_rails * 16;
	if (!buf || *len < need) {
		*len = need;
		return -ENOSPC;
	}
	memset(p, 0, need);
	xfer_put_le64(p + 16, d->owner_id);
	xfer_put_le64(p + 24, d->region_id);
	xfer_put_le64(p + 32, d->base);
	xfer_put_le64(p + 40, d->len);
	xfer_put_le16(p + 48, d->num_rails);
	for (uint32_t i = 0; i < d->num_rails; i++) {
		xfer_put_le64(p + DESC_HDR + 16 * i, d->rail[i].rkey);
		xfer_put_le64(p + DESC_HDR + 16 * i + 8, d->rail[i].raddr);
	}
	finish_header(p, need, DESC_MAGIC, DESC_VERSION, DESC_HDR);
	*len = need;
	return 0;
}

int xfer_desc_decode(const void *buf, size_t len, struct xfer_desc *d)
{
	const uint8_t *p = buf;
	uint32_t n;
	int ret;

	ret = check_header(p, len, DESC_MAGIC, DESC_VERSION, DESC_HDR);
	if (ret)
		return ret;
	n = xfer_get_le16(p + 48);
	if (n == 0 || n > XFER_MAX_RAILS || len != DESC_HDR + (size_t)n * 16)
		return -EINVAL;
	if (xfer_get_le16(p + 50) != 0 || xfer_get_le32(p + 52) != 0)   /* flags, reserved */
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->owner_id = xfer_get_le64(p + 16);
	d->region_id = xfer_get_le64(p + 24);
	d->base = xfer_get_le64(p + 32);
	d->len = xfer_get_le64(p + 40);
	d->num_rails = n;
	if (d->len == 0 || d->base + d->len < d->base)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		d->rail[i].rkey = xfer_get_le64(p + DESC_HDR + 16 * i);
		d->rail[i].raddr = xfer_get_le64(p + DESC_HDR + 16 * i + 8);
		if (d->rail[i].raddr + d->len < d->rail[i].raddr)
			return -EINVAL;
	}
	return 0;
}

/* A same-host section names a process and one of its fds: a pid and fd
 * that cannot exist, a zero nonce, or no boot id are malformed. */
static bool host_valid(const struct xfer_addr_host *h)
{
	uint8_t any = 0;

	for (size_t i = 0; i < sizeof(h->boot_id); i++)
		any |= h->boot_id[i];
	return any && h->pidns && h->pid > 0 && h->fd >= 0 && h->start_time && h->nonce;
}

int xfer_addr_encode(const struct xfer_addr *a, void *buf, size_t *len)
{
	size_t need = ADDR_HDR, off;
	uint8_t *p = buf;

	if (!a || !len || a->num_rails == 0 || a->num_rails > XFER_MAX_RAILS)
		return -EINVAL;
	for (uint32_t i = 0; i < a->num_rails; i++) {
		if (a->rail[i].len == 0 || a->rail[i].len > XFER_RAIL_ADDR_MAX)
			return -EINVAL;
		need += ADDR_RAIL_HDR + ((a->rail[i].len + 7u) & ~7u);
	}
	if (!host_valid(&a->host))
		return -EINVAL;
	need += ADDR_HOST;
	if (!buf || *len < need) {
		*len = need;
		return -ENOSPC;
	}
	memset(p, 0, need);
	xfer_put_le64(p + 16, a->engine_id);
	xfer_put_le32(p + 24, a->backend);
	xfer_put_le32(p + 28, a->num_rails);
	memcpy(p + 32, a->provider, strnlen(a->provider, XFER_PROV_NAME_MAX - 1));
	off = ADDR_HDR;
	for (uint32_t i = 0; i < a->num_rails; i++) {
		xfer_put_le16(p + off, a->rail[i].len);
		xfer_put_le64(p + off + 8, a->rail[i].sink.rkey);
		xfer_put_le64(p + off + 16, a->rail[i].sink.raddr);
		memcpy(p + off + ADDR_RAIL_HDR, a->rail[i].bytes, a->rail[i].len);
		off += ADDR_RAIL_HDR + ((a->rail[i].len + 7u) & ~7u);
	}
	memcpy(p + off, a->host.boot_id, sizeof(a->host.boot_id));
	xfer_put_le64(p + off + 16, a->host.pidns);
	xfer_put_le32(p + off + 24, (uint32_t)a->host.pid);
	xfer_put_le32(p + off + 28, (uint32_t)a->host.fd);
	xfer_put_le64(p + off + 32, a->host.start_time);
	xfer_put_le64(p + off + 40, a->host.nonce);
	finish_header(p, need, ADDR_MAGIC, ADDR_VERSION, ADDR_HDR);
	*len = need;
	return 0;
}

int xfer_addr_decode(const void *buf, size_t len, struct xfer_addr *a)
{
	const uint8_t *p = buf;
	size_t off = ADDR_HDR;
	int ret;

	ret = check_header(p, len, ADDR_MAGIC, ADDR_VERSION, ADDR_HDR);
	if (ret)
		return ret;
	memset(a, 0, sizeof(*a));
	a->engine_id = xfer_get_le64(p + 16);
	a->backend = xfer_get_le32(p + 24);
	a->num_rails = xfer_get_le32(p + 28);
	if (a->backend < 1 || a->backend > XFER_WIRE_MAX || a->num_rails == 0 ||
	    a->num_rails > XFER_MAX_RAILS)
		return -EINVAL;
	if (memchr(p + 32, 0, XFER_PROV_NAME_MAX) == NULL)
		return -EINVAL;
	memcpy(a->provider, p + 32, XFER_PROV_NAME_MAX);
	for (uint32_t i = 0; i < a->num_rails; i++) {
		uint16_t rl;

		if (len - off < ADDR_RAIL_HDR)
			return -EINVAL;
		rl = xfer_get_le16(p + off);
		if (rl == 0 || rl > XFER_RAIL_ADDR_MAX || xfer_get_le16(p + off + 2) ||
		    xfer_get_le32(p + off + 4))
			return -EINVAL;
		if (len - off - ADDR_RAIL_HDR < ((rl + 7u) & ~7u))
			return -EINVAL;
		a->rail[i].len = rl;
		a->rail[i].sink.rkey = xfer_get_le64(p + off + 8);
		a->rail[i].sink.raddr = xfer_get_le64(p + off + 16);
		memcpy(a->rail[i].bytes, p + off + ADDR_RAIL_HDR, rl);
		off += ADDR_RAIL_HDR + ((rl + 7u) & ~7u);
	}
	if (len - off != ADDR_HOST)
		return -EINVAL;
	for (size_t k = 48; k < ADDR_HOST; k++)   /* reserved */
		if (p[off + k])
			return -EINVAL;
	memcpy(a->host.boot_id, p + off, sizeof(a->host.boot_id));
	a->host.pidns = xfer_get_le64(p + off + 16);
	a->host.pid = (int32_t)xfer_get_le32(p + off + 24);
	a->host.fd = (int32_t)xfer_get_le32(p + off + 28);
	a->host.start_time = xfer_get_le64(p + off + 32);
	a->host.nonce = xfer_get_le64(p + off + 40);
	if (!host_valid(&a->host))
		return -EINVAL;
	return 0;
}
