/* SPDX-License-Identifier: MIT */
/* Bitwise CRC32C: the blobs are a few hundred bytes, exchanged once per peer
 * or region, so a table or SSE4.2 would buy nothing. */
#include "crc32c.h"

uint32_t xfer_crc32c_update(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & -(crc & 1));
	}
	return crc;
}

uint32_t xfer_crc32c(const void *buf, size_t len)
{
	return ~xfer_crc32c_update(~0u, buf, len);
}
