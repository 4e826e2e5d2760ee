/* SPDX-License-Identifier: MIT */
/*
 * A latency model of xfer's MoE dispatch and combine (include/xfer_moe.h)
 * on a GPU cluster, for EP sizes this machine cannot run (EP8 .. EP64 and
 * beyond): what the design in docs/moe.md would take, phase by phase, on a
 * cluster described by a handful of rates. `xfer-moe sim` prints it beside
 * the published figures of pplx-garden and DeepEP.
 *
 * The model (lib/moe/sim.c), for one layer of one configuration:
 *  - Routing: every rank has T tokens (max_tokens, all of them present),
 *    each with K distinct experts drawn uniformly from E by a seeded
 *    generator (no -1 slots). Records per (source, destination) are
 *    counted from that sample: the figures are for that routing, the
 *    slowest rank of it, not an average.
 *  - Topology: ranks fill nodes of gpus_per_node GPUs in order. A rank
 *    reaches the ranks of its own node over NVLink (nvlink_gbs per GPU and
 *    direction, nvlink_us latency), the others over its NICs: nics_per_gpu
 *    NICs sharing nic_gbps (each nic_gbps / nics_per_gpu), of which a
 *    write's payload gets the fraction nic_goodput, link_us from the last
 *    byte sent to the last byte landed, and at most nic_mpps million writes
 *    started per second per NIC. A write goes whole on one NIC (xfer's
 *    scatter does not stripe a destination's range): rank s's write to
 *    rank d on NIC (s + d) mod nics_per_gpu, landing on d's NIC of the
 *    same index, so that both the writes a rank sends and those it gets
 *    spread evenly over its NICs. (xfer's scatter puts row i on rail
 *    i mod rails, so the context's row order decides this: rows in rank
 *    order bring a receiver's writes to one or two of its NICs, rows
 *    rotated by rank (rank + 1 first) spread them as modelled here.) The
 *    fabric between NICs is not a bottleneck (full bisection, no
 *    congestion beyond the NICs).
 *  - Sharing: writes in flight share every link (a rank's NVLink or NIC,
 *    out and in) max-min fairly, recomputed whenever a write starts or
 *    ends (a fluid model, as RDMA flows under congestion control share).
 *  - A phase at each rank, all ranks starting together at 0:
 *    1. the send kernel (dispatch: route and pack/quantise T tokens into
 *       T*K records; combine: copy the rows of y into one block per
 *       source): kernel_us plus the bytes it reads and writes at hbm_gbs;
 *    2. the kernel's store to the watched word reaches the engine's worker,
 *       the CPU proxy: trigger_us;
 *    3. the worker posts R - 1 writes, one per peer, each with an
 *       immediate, one after another, post_us each: the inter-node peers
 *       first, then the NVLink ones, each group from the next rank up
 *       (rank + 1, rank + 2, ...), so that ranks do not all start on the
 *       same receiver. Dispatch writes a block header (block_hdr_bytes)
 *       and its records (record_bytes each) to every peer, the header
 *       alone to a peer it has nothing for; combine writes the rows it got
 *       from a source back to it (combine_bytes each; an immediate alone
 *       for none). The rank's records for itself do not travel;
 *    4. arrivals are counted by the receiving rank's worker, cqe_us each,
 *       one after another and after its own posting; when the R - 1st is
 *       counted the worker stores the flag word and the receive kernel's
 *       stream starts flag_us later;
 *    5. the receive kernel (dispatch: unpack every record received into
 *       the [L][R*T] rows; combine: read T*K combine rows and write T
 *       bf16 outputs): kernel_us plus its bytes at hbm_gbs.
 *    A phase's time is that of its slowest rank: send kernel start to
 *    receive kernel end (as the published figures time send + receive).
 *  - Prefill (XFER_MOE_F_PREFILL): dispatch first exchanges count rows
 *    (E counts of 4 bytes to every peer: steps 2-4, triggered after a
 *    route kernel of kernel_us), and a worker posts its data writes only
 *    once it has every count row and its pack kernel is done. Blocks carry
 *    no header.
 *  - Not modelled: the expert computation between the phases (excluded,
 *    as the published figures exclude it); contention of the two phases
 *    of two micro-batches; the worker's own posting being delayed by
 *    arrivals (posts go first); PCIe between GPU and NIC (assumed at least
 *    the NIC's rate); packet loss and retransmission; congestion inside
 *    the fabric; anything EFA's SRD does per message beyond nic_mpps.
 *
 * Every figure comes from the rates of the cluster struct, which the tool
 * prints beside them; the defaults are the "cx7" preset.
 */
#ifndef XFER_MOE_SIM_H
#define XFER_MOE_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "xfer_moe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Intra-node peers over the NICs as well (xfer as built today: it has no
 * NVLink path; the write loops back through the NIC). */
#define XFER_MOE_SIM_F_NIC_ONLY (1u << 0)
/* The worker posts its writes in rank order (0, 1, ..., itself skipped)
 * and the i-th goes on NIC i mod nics_per_gpu, as a scatter whose rows are
 * in rank order does (lib/moe's today), instead of the order and NICs
 * described above. */
#define XFER_MOE_SIM_F_RANK_ORDER (1u << 1)

/* The most ranks a simulation takes (R * (R - 1) writes a phase: EP64
 * takes about a second, EP128 about fifteen). */
#define XFER_MOE_SIM_MAX_RANKS 128u

struct xfer_moe_cluster {
	uint32_t size;           /* sizeof(struct xfer_moe_cluster) */
	uint32_t flags;          /* XFER_MOE_SIM_F_*; unknown bits: -EINVAL */
	uint32_t gpus_per_node;  /* 0 = 8 */
	uint32_t nics_per_gpu;   /* 0 = 1 */
	double nic_gbps;         /* per GPU, its NICs together, Gbit/s line rate; 0 = 400 */
	double nic_goodput;      /* fraction of the line rate a write's payload gets
				  * (headers, flow control); 0 = 0.97, at most 1 */
	double link_us;          /* last byte sent to landed, NIC to NIC; 0 = 2 */
	double nic_mpps;         /* million writes started per second per NIC; 0 = 50 */
	double nvlink_gbs;       /* per GPU and direction, GB/s; 0 = 380 */
	double nvlink_us;        /* an NVLink write's last byte to landed; 0 = 1.5 */
	double post_us;          /* the worker's time to post one write; 0 = 0.5 */
	double cqe_us;           /* the worker's time to count one arrival; 0 = 0.2 */
	double trigger_us;       /* a kernel's store to the watched word, seen by the worker; 0 = 1.5 */
	double flag_us;          /* the worker's flag store to the waiting stream's next kernel; 0 = 2.5 */
	double kernel_us;        /* fixed cost of each kernel (launch, first wave, tail); 0 = 3 */
	double hbm_gbs;          /* a kernel's bytes read + written per second, GB/s; 0 = 2000 */
};
/* Through nics_per_gpu; the rest default when 0 (the values noted). */
#define XFER_MOE_CLUSTER_SIZE_VER0 16u

/* The defaults (the "cx7" preset), as far as size bytes. */
void xfer_moe_cluster_defaults_size(struct xfer_moe_cluster *c, size_t size);
#define xfer_moe_cluster_defaults(c) xfer_moe_cluster_defaults_size((c), sizeof(*(c)))
/* A named cluster, as far as c->size (which must be set): "cx7" (one
 * ConnectX-7 at 400 Gbit/s per GPU) or "efa" (AWS p5en: two EFA NICs of
 * 200 Gbit/s per GPU, longer latency, dearer posting). -EINVAL for
 * another name; xfer_moe_cluster_preset_name(i) lists them (NULL past
 * the last). */
int xfer_moe_cluster_preset(struct xfer_moe_cluster *c, const char *name);
const char *xfer_moe_cluster_preset_name(unsigned int i);
/* The fields of c left at 0 set to their defaults; -EINVAL (with
 * xfer_moe_last_error's reason) for a bad field or size. */
int xfer_moe_cluster_resolve(struct xfer_moe_cluster *c);

struct xfer_moe_sim_phase {
	double us;               /* the slowest rank: send kernel start to receive kernel end */
	double mean_us;          /* the same, mean over ranks */
	double send_kernel_us;   /* the slowest rank's send kernel */
	double posted_us;        /* when its worker had posted its last write */
	double landed_us;        /* when its last arrival landed */
	double counted_us;       /* when its worker had counted every arrival */
	double recv_kernel_us;   /* its receive kernel */
	double nic_bound_us;     /* the busiest NIC's bytes (in or out) at its payload rate */
	uint64_t bytes_max;      /* record bytes a rank sends in the phase (its own
				  * included, headers not): T*K*record_bytes for dispatch,
				  * the rows it received times combine_bytes for combine;
				  * max over ranks */
	uint64_t wire_bytes_max; /* bytes one rank writes to other ranks, headers
				  * included; max over ranks */
	uint64_t nic_bytes_max;  /* the busiest NIC, out or in (0 when every peer is on NVLink) */
	double nic_bytes_mean;   /* mean over every NIC of max(out, in) */
	uint64_t writes;         /* writes posted, all ranks (prefill dispatch: count rows too) */
};

struct xfer_moe_sim_result {
	struct xfer_moe_sim_phase dispatch, combine;
	uint32_t nodes;
	uint32_t nic_peers;      /* peers a rank reaches over its NICs */
	uint64_t selections;     /* (token, expert) pairs sampled, all ranks: R*T*K */
	uint64_t events;         /* rate recomputations of the fluid model */
};

/* Simulate one layer of the configuration attr describes (world_size R
 * at most XFER_MOE_SIM_MAX_RANKS; rank, timeout_ms and imm_base are not
 * used) on cluster c (NULL: the defaults), routing drawn from seed.
 * -EINVAL / -E2BIG with xfer_moe_last_error's reason; -ENOMEM. */
int xfer_moe_simulate(const struct xfer_moe_attr *attr, const struct xfer_moe_cluster *c,
		      uint64_t seed, struct xfer_moe_sim_result *r);

#ifdef __cplusplus
}
#endif
#endif /* XFER_MOE_SIM_H */
