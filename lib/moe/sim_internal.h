/* SPDX-License-Identifier: MIT */
/* What the simulator (sim.c) shares with its unit test. */
#ifndef XFER_MOE_SIM_INTERNAL_H
#define XFER_MOE_SIM_INTERNAL_H

#include <stdint.h>

/* The routing the simulator uses: every one of R ranks has T tokens, each
 * with K distinct experts of E drawn uniformly (a splitmix64 stream per
 * rank from seed); n[s * R + d] += 1 for each of rank s's selections of
 * an expert on rank d (experts d*E/R .. (d+1)*E/R - 1). n has R*R entries,
 * zeroed here. K <= E and R divides E are the caller's to check. */
void moe_sim_route(uint32_t R, uint32_t E, uint32_t K, uint32_t T, uint64_t seed, uint32_t *n);

#endif
