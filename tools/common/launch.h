/* SPDX-License-Identifier: MIT */
/*
 * Launcher mode, shared by the tools that run ranks (xfer-weightsync run,
 * xfer-moe run, xfer-bench): one rank per process, started by torchrun,
 * srun or mpirun (or by hand with --rank/--world-size), the ranks finding
 * each other through the rendezvous store (xfer_rdzv.h) named by --rdzv.
 *
 * Options (LAUNCH_LONGOPTS, parsed by launch_opt):
 *   --rdzv URL        etcd://host:port[,host:port] or file:///shared/dir
 *   --job ID          the job id (default: $XFER_JOB, else the launcher's
 *                     job id: $TORCHELASTIC_RUN_ID, $SLURM_JOB_ID, ...)
 *   --rank N --world-size N --local-rank N   when no launcher sets them;
 *                     with a launcher, flags that disagree are refused
 *   --node ADDR|IFACE the address the engine binds and publishes (an IPv4
 *                     address or an interface name); default: the first
 *                     up, non-loopback IPv4 interface, else 127.0.0.1
 *   --rdzv-lease-s N  how soon a dead rank's keys vanish (default 10)
 *
 * The local rank picks the GPU (and through the engine's gpu attribute the
 * NICs nearest it) on a host with NVIDIA GPUs; on a host without, gpu is
 * -1: host memory and the provider's NIC order.
 */
#ifndef XFER_TOOLS_LAUNCH_H
#define XFER_TOOLS_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xfer_rdzv.h"

struct out;

enum { LO_RDZV = 3000, LO_JOB, LO_RANK, LO_WORLD, LO_LOCAL, LO_NODE, LO_LEASE };

/* xfer-bench has its own --node (the same meaning): it takes the first. */
#define LAUNCH_LONGOPTS_NO_NODE                                                             \
	{ "rdzv", 1, 0, LO_RDZV }, { "job", 1, 0, LO_JOB }, { "rank", 1, 0, LO_RANK },     \
	{ "world-size", 1, 0, LO_WORLD }, { "local-rank", 1, 0, LO_LOCAL },                \
	{ "rdzv-lease-s", 1, 0, LO_LEASE }
#define LAUNCH_LONGOPTS LAUNCH_LONGOPTS_NO_NODE, { "node", 1, 0, LO_NODE }

struct launch_opts {
	const char *url;        /* NULL: not in launcher mode */
	const char *job;
	const char *node;
	int64_t rank, world, local;   /* -1: not given */
	uint32_t lease_s;       /* 0: the store's default */
};

/* What launch_open settled. */
struct launch {
	xfer_rdzv *r;
	uint32_t rank, world, local;
	int gpu;                /* local rank on a host with GPUs, else -1 */
	const char *source;     /* "torchrun", "openmpi", "slurm" or "flags" */
	char job[XFER_RDZV_MAX_JOB + 1];
	char node[64];          /* the IPv4 address the engine is to bind */
	char host[64];          /* this host's name */
	uint32_t timeout_ms;
	int64_t given_local;    /* the launcher's or --local-rank; -1: none */
	struct xfer_rdzv_blob *views[160];   /* launch_exchange's, freed by launch_close */
};

void launch_opts_init(struct launch_opts *lo);
/* One option of LAUNCH_LONGOPTS: 0 (parsed), -EINVAL (refused, printed),
 * or 1 when c is not one of them. */
int launch_opt(struct out *o, int c, const char *arg, struct launch_opts *lo);
/* A launcher option given without --rdzv, or --rdzv on a line that cannot
 * use it: the option's name, else NULL. */
const char *launch_stray(const struct launch_opts *lo);

/*
 * Settle rank, world size and local rank (launcher variables and flags,
 * refused when they disagree), the engine's address and the GPU; open the
 * store and exchange a hello (host, address, local rank) in which every
 * rank checks the world: no two ranks of one host with one local rank, no
 * rank binding loopback when the world spans hosts. err gets why (naming
 * the variable, the flag, the rank, the URL). 0 or -errno.
 */
int launch_open(const struct launch_opts *lo, uint32_t timeout_ms, struct launch *l, char *err,
		size_t errlen);
/* launch_open in two: settle (rank, world, job, address; no store), so a
 * tool can refuse a world size before joining, then join. */
int launch_settle(const struct launch_opts *lo, struct launch *l, char *err, size_t errlen);
int launch_join(const struct launch_opts *lo, uint32_t timeout_ms, struct launch *l, char *err,
		size_t errlen);

/*
 * Exchange a blob; status != 0 publishes a failure instead (with text
 * why), so that the others stop at once and name this rank rather than
 * wait for it. On success *all[r] points to rank r's blob (data, len).
 * Fails with the first failed rank's status and "rank R: why" in err, or
 * the store's error (a rank missing or dead, named).
 */
int launch_exchange(struct launch *l, const char *name, int status, const char *why,
		    const void *blob, size_t len, const struct xfer_rdzv_blob **all, char *err,
		    size_t errlen);
int launch_barrier(struct launch *l, const char *name, char *err, size_t errlen);
/* The end barrier and the keys removed; frees l->r. Only when every rank
 * is still there to reach it: after a failed join or exchange a tool just
 * exits, and its keys expire with its lease (--rdzv-lease-s). */
int launch_close(struct launch *l, char *err, size_t errlen);

#endif
