/* SPDX-License-Identifier: MIT */
#include "xt_wire.h"

void xt_put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t xt_get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* CRC32C (Castagnoli, reflected 0x82f63b78), bitwise: no table to trust. */
static uint32_t crc32c_skipping_crc(const uint8_t *p, size_t len)
{
	uint32_t c = ~0u;

	for (size_t i = 0; i < len; i++) {
		c ^= (i >= 12 && i < 16) ? 0 : p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & -(c & 1));
	}
	return ~c;
}

void xt_wire_reseal(uint8_t *blob, size_t len)
{
	if (len < 16)
		return;
	xt_put_le(blob + 12, crc32c_skipping_crc(blob, len), 4);
}
