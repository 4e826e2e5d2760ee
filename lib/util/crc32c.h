/* SPDX-License-Identifier: MIT */
/* CRC32C (Castagnoli), the checksum of every blob xfer sends out of band. */
#ifndef XFER_UTIL_CRC32C_H
#define XFER_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC over len more bytes: start with ~0u, finish with ~crc. */
uint32_t xfer_crc32c_update(uint32_t crc, const void *buf, size_t len);
uint32_t xfer_crc32c(const void *buf, size_t len);

#endif
