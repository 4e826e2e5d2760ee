/* SPDX-License-Identifier: MIT */
/*
 * Rendezvous: N processes started by a launcher (Slurm, torchrun, mpirun)
 * on any number of hosts find each other through a store, etcd or a shared
 * directory, and exchange opaque blobs (engine addresses, region
 * descriptors) and barriers. docs/rendezvous.md has the key layout and the
 * lease protocol.
 *
 *   struct xfer_launch l = { .size = sizeof(l) };
 *   xfer_launch_from_env(&l);                        // rank, world, local rank
 *   struct xfer_rdzv_attr a = { .size = sizeof(a), .url = "etcd://10.0.0.1:2379",
 *                               .job = "run42", .rank = l.rank,
 *                               .world_size = l.world_size };
 *   xfer_rdzv *r;
 *   xfer_rdzv_open(&a, &r);
 *   const struct xfer_rdzv_blob *all;
 *   xfer_rdzv_exchange(r, "addrs", addr, addr_len, &all);   // all[0..world-1]
 *   ...
 *   xfer_rdzv_close(r);                              // end barrier, keys removed
 *
 * Errors are negative errno values; xfer_rdzv_last_error() says what was
 * wrong and where (which ranks, which URL, which key). A handle is used by
 * one thread at a time.
 */
#ifndef XFER_RDZV_H
#define XFER_RDZV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xfer_rdzv xfer_rdzv;

#define XFER_RDZV_MAX_BLOB  (1u << 20)   /* largest blob a rank may publish */
#define XFER_RDZV_MAX_RANKS 65536u
#define XFER_RDZV_MAX_NAME  64u          /* exchange and barrier names */
#define XFER_RDZV_MAX_JOB   128u

struct xfer_rdzv_attr {
	uint32_t size;           /* sizeof(struct xfer_rdzv_attr), for growth */
	const char *url;         /* "etcd://host:port[,host:port...]" or "file:///shared/dir" */
	const char *job;         /* job id: [A-Za-z0-9._-], every key under /xfer/<job>/ */
	uint32_t rank;           /* < world_size */
	uint32_t world_size;     /* 1 .. XFER_RDZV_MAX_RANKS */
	uint32_t timeout_ms;     /* per call (open, exchange, barrier, close); 0: 60 s */
	uint32_t lease_ttl_s;    /* 0: 10 s: a dead rank's keys vanish this long after it */
};

/* One rank's blob as xfer_rdzv_exchange returns it. */
struct xfer_rdzv_blob {
	const void *data;
	size_t len;
};

/*
 * Connect to the store and register this rank (key ranks/<rank>, under a
 * lease this handle keeps alive from a thread of its own). -EEXIST when
 * the rank is registered already (another process of the job, or one that
 * died less than lease_ttl_s ago); -EINVAL for bad attributes; -ETIMEDOUT
 * (or the last network error) when the store does not answer within the
 * timeout.
 */
int xfer_rdzv_open(const struct xfer_rdzv_attr *attr, xfer_rdzv **out);

/*
 * Publish this rank's blob (1 .. XFER_RDZV_MAX_BLOB bytes) under name and
 * wait until every rank has published under that name; *all then points to
 * world_size blobs, indexed by rank (this rank's included), valid until
 * xfer_rdzv_close. Several names per job; each name once per handle.
 * -ETIMEDOUT names the ranks that never arrived; -ENOTCONN the ranks that
 * left or died (their lease expired); -EBADMSG a blob that fails
 * validation (empty, too large, a key that names no rank).
 */
int xfer_rdzv_exchange(xfer_rdzv *r, const char *name, const void *blob, size_t len,
		       const struct xfer_rdzv_blob **all);

/* Wait until every rank has reached the barrier `name` (each name once per
 * handle). Errors as xfer_rdzv_exchange's. */
int xfer_rdzv_barrier(xfer_rdzv *r, const char *name);

/*
 * A last barrier (every rank done with every exchange), then this rank's
 * keys are removed; the last rank to leave removes the job's. Frees r in
 * every case; the barrier's error if it failed (the keys then expire with
 * their leases), whose text is then xfer_rdzv_last_error(NULL).
 */
int xfer_rdzv_close(xfer_rdzv *r);

/* The text of r's last error, or with r NULL the calling thread's last
 * error (what a failed xfer_rdzv_open or xfer_launch_from_env left). */
const char *xfer_rdzv_last_error(const xfer_rdzv *r);

/* Where a launcher put this process. */
struct xfer_launch {
	uint32_t size;           /* sizeof(struct xfer_launch) */
	uint32_t rank;
	uint32_t world_size;
	uint32_t local_rank;     /* among the ranks of this host: picks the GPU and its NICs */
	const char *source;      /* "torchrun", "openmpi" or "slurm" (static) */
};

/*
 * Fill *out from the environment: torchrun's RANK, WORLD_SIZE, LOCAL_RANK;
 * else Open MPI's OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK; else Slurm's
 * SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (in that order: torchrun and
 * mpirun run under Slurm, and then theirs are the process's ranks).
 * -ENOENT when no launcher's variables are set; -EINVAL, naming the
 * variable, when one is missing, not a number, or the rank is not below
 * the size.
 */
int xfer_launch_from_env(struct xfer_launch *out);

#ifdef __cplusplus
}
#endif

#endif
