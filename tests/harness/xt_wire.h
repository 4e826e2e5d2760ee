/* SPDX-License-Identifier: MIT */
/*
 * The tests' own view of xfer's wire blobs (descriptors and engine
 * addresses, lib/core/desc.c): little-endian fields, and the CRC32C that
 * seals a blob, computed here independently of the library's, so that a test
 * can mutate a blob and have the mutation reach the decoder's field checks.
 */
#ifndef XT_WIRE_H
#define XT_WIRE_H

#include <stddef.h>
#include <stdint.h>

void xt_put_le(uint8_t *p, uint64_t v, int n);
uint64_t xt_get_le(const uint8_t *p, int n);
/* Recompute the CRC of a blob of len bytes (header: magic 0, version 4,
 * header length 6, total length 8, CRC 12, over the blob with the CRC's 4
 * bytes zero). Blobs shorter than the header are left as they are. */
void xt_wire_reseal(uint8_t *blob, size_t len);

#endif
