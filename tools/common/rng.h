/* SPDX-License-Identifier: MIT */
/* Seeded data for the tools: the same bits from the same seed everywhere. */
#ifndef XFER_TOOLS_RNG_H
#define XFER_TOOLS_RNG_H

#include <stdint.h>

/* MurmurHash3's 64-bit finaliser: every input bit flips about half the
 * output bits, so a hash of (seed, coordinates) is a value the tools can
 * regenerate at the receiver to check every byte without storing it. */
static inline uint64_t rng_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

#endif
