/* SPDX-License-Identifier: MIT */
/* Little-endian stores and loads, byte by byte: the wire formats (region
 * descriptors, engine addresses, verbs connection messages) are defined
 * in bytes, whatever the host's order or alignment. */
#ifndef XFER_UTIL_LE_H
#define XFER_UTIL_LE_H

#include <stdint.h>

static inline void xfer_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void xfer_put_le32(uint8_t *p, uint32_t v)
{
	xfer_put_le16(p, (uint16_t)v);
	xfer_put_le16(p + 2, (uint16_t)(v >> 16));
}

static inline void xfer_put_le64(uint8_t *p, uint64_t v)
{
	xfer_put_le32(p, (uint32_t)v);
	xfer_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t xfer_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t xfer_get_le32(const uint8_t *p)
{
	return xfer_get_le16(p) | (uint32_t)xfer_get_le16(p + 2) << 16;
}

static inline uint64_t xfer_get_le64(const uint8_t *p)
{
	return xfer_get_le32(p) | (uint64_t)xfer_get_le32(p + 4) << 32;
}

#endif
