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

#include "internal.h"

#define DESC_MAGIC 0x44524658u  /* "XFRD" */
#define ADDR_MAGIC 0x41524658u  /* "XFRA" */
#define WIRE_VERSION 1
#define DESC_HDR 56
#define ADDR_HDR 56
#define ADDR_RAIL_HDR 24

static void put16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = v >> (8 * i); }
static uint16_t get16(const uint8_t *p) { return p[0] | (uint16_t)p[1] << 8; }
static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & -(crc & 1));
	}
	return crc;
}

uint32_t xfer_crc32c(const void *buf, size_t len)
{
	return ~crc32c_update(~0u, buf, len);
}

/* CRC32C of a blob whose crc field (bytes 12..15) counts as zero. */
static uint32_t blob_crc(const uint8_t *p, size_t len)
{
	static const uint8_t zero[4];
	uint32_t c = crc32c_update(~0u, p, 12);

	c = crc32c_update(c, zero, 4);
	return ~crc32c_update(c, p + 16, len - 16);
}

static int check_header(const uint8_t *p, size_t len, uint32_t magic, uint16_t hdr_len)
{
	if (!p || len < hdr_len)
		return -EINVAL;
	if (get32(p) != magic || get16(p + 4) != WIRE_VERSION || get16(p + 6) != hdr_len)
		return -EINVAL;
	if (get32(p + 8) != len)
		return -EINVAL;
	if (get32(p + 12) != blob_crc(p, len))
		return -EINVAL;
	return 0;
}

static void finish_header(uint8_t *p, size_t len, uint32_t magic, uint16_t hdr_len)
{
	put32(p, magic);
	put16(p + 4, WIRE_VERSION);
	put16(p + 6, hdr_len);
	put32(p + 8, (uint32_t)len);
	put32(p + 12, 0);
	put32(p + 12, blob_crc(p, len));
}

int xfer_desc_encode(const struct xfer_desc *d, void *buf, size_t *len)
{
	size_t need;
	uint8_t *p = buf;

	if (!d || !len || d->num_rails == 0 || d->num_rails > XFER_MAX_DOMAINS)
		return -EINVAL;
	need = DESC_HDR + (size_t)d->num_rails * 16;
	if (!buf || *len < need) {
		*len = need;
		return -ENOSPC;
	}
	memset(p, 0, need);
	put64(p + 16, d->owner_id);
	put64(p + 24, d->region_id);
	put64(p + 32, d->base);
	put64(p + 40, d->len);
	put16(p + 48, d->num_rails);
	for (uint32_t i = 0; i < d->num_rails; i++) {
		put64(p + DESC_HDR + 16 * i, d->rail[i].rkey);
		put64(p + DESC_HDR + 16 * i + 8, d->rail[i].raddr);
	}
	finish_header(p, need, DESC_MAGIC, DESC_HDR);
	*len = need;
	return 0;
}

int xfer_desc_decode(const void *buf, size_t len, struct xfer_desc *d)
{
	const uint8_t *p = buf;
	uint32_t n;
	int ret;

	ret = check_header(p, len, DESC_MAGIC, DESC_HDR);
	if (ret)
		return ret;
	n = get16(p + 48);
	if (n == 0 || n > XFER_MAX_DOMAINS || len != DESC_HDR + (size_t)n * 16)
		return -EINVAL;
	if (get16(p + 50) != 0 || get32(p + 52) != 0)   /* flags, reserved */
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->owner_id = get64(p + 16);
	d->region_id = get64(p + 24);
	d->base = get64(p + 32);
	d->len = get64(p + 40);
	d->num_rails = n;
	if (d->len == 0 || d->base + d->len < d->base)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		d->rail[i].rkey = get64(p + DESC_HDR + 16 * i);
		d->rail[i].raddr = get64(p + DESC_HDR + 16 * i + 8);
		if (d->rail[i].raddr + d->len < d->rail[i].raddr)
			return -EINVAL;
	}
	return 0;
}

int xfer_addr_encode(const struct xfer_addr *a, void *buf, size_t *len)
{
	size_t need = ADDR_HDR, off;
	uint8_t *p = buf;

	if (!a || !len || a->num_rails == 0 || a->num_rails > XFER_MAX_DOMAINS)
		return -EINVAL;
	for (uint32_t i = 0; i < a->num_rails; i++) {
		if (a->rail[i].len == 0 || a->rail[i].len > XFER_RAIL_ADDR_MAX)
			return -EINVAL;
		need += ADDR_RAIL_HDR + ((a->rail[i].len + 7u) & ~7u);
	}
	if (!buf || *len < need) {
		*len = need;
		return -ENOSPC;
	}
	memset(p, 0, need);
	put64(p + 16, a->engine_id);
	put32(p + 24, a->backend);
	put32(p + 28, a->num_rails);
	memcpy(p + 32, a->provider, strnlen(a->provider, XFER_PROV_NAME_MAX - 1));
	off = ADDR_HDR;
	for (uint32_t i = 0; i < a->num_rails; i++) {
		put16(p + off, a->rail[i].len);
		put64(p + off + 8, a->rail[i].sink.rkey);
		put64(p + off + 16, a->rail[i].sink.raddr);
		memcpy(p + off + ADDR_RAIL_HDR, a->rail[i].bytes, a->rail[i].len);
		off += ADDR_RAIL_HDR + ((a->rail[i].len + 7u) & ~7u);
	}
	finish_header(p, need, ADDR_MAGIC, ADDR_HDR);
	*len = need;
	return 0;
}

int xfer_addr_decode(const void *buf, size_t len, struct xfer_addr *a)
{
	const uint8_t *p = buf;
	size_t off = ADDR_HDR;
	int ret;

	ret = check_header(p, len, ADDR_MAGIC, ADDR_HDR);
	if (ret)
		return ret;
	memset(a, 0, sizeof(*a));
	a->engine_id = get64(p + 16);
	a->backend = get32(p + 24);
	a->num_rails = get32(p + 28);
	if (a->backend < 1 || a->backend > 3 || a->num_rails == 0 ||
	    a->num_rails > XFER_MAX_DOMAINS)
		return -EINVAL;
	if (memchr(p + 32, 0, XFER_PROV_NAME_MAX) == NULL)
		return -EINVAL;
	memcpy(a->provider, p + 32, XFER_PROV_NAME_MAX);
	for (uint32_t i = 0; i < a->num_rails; i++) {
		uint16_t rl;

		if (len - off < ADDR_RAIL_HDR)
			return -EINVAL;
		rl = get16(p + off);
		if (rl == 0 || rl > XFER_RAIL_ADDR_MAX || get16(p + off + 2) || get32(p + off + 4))
			return -EINVAL;
		if (len - off - ADDR_RAIL_HDR < ((rl + 7u) & ~7u))
			return -EINVAL;
		a->rail[i].len = rl;
		a->rail[i].sink.rkey = get64(p + off + 8);
		a->rail[i].sink.raddr = get64(p + off + 16);
		memcpy(a->rail[i].bytes, p + off + ADDR_RAIL_HDR, rl);
		off += ADDR_RAIL_HDR + ((rl + 7u) & ~7u);
	}
	if (off != len)
		return -EINVAL;
	return 0;
}
