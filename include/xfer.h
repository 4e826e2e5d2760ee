/* SPDX-License-Identifier: MIT */
/*
 * xfer: one-sided RDMA transfers for LLM systems (KV-cache pages, weight
 * updates, MoE dispatch/combine).
 *
 * Conventions (after liburing / rdma-core):
 *  - every public name starts with xfer_ / XFER_;
 *  - errors are returned as negative errno values, never through errno;
 *  - structs passed by pointer that may grow start with `uint32_t size`,
 *    which the caller sets to sizeof the struct (its header's version);
 *    each has a floor, XFER_<STRUCT>_SIZE_VER0, the bytes of its fields
 *    that have no default. The library reads such a struct as follows:
 *      size < the floor (or 0): -EINVAL;
 *      size < the library's sizeof (an older caller): the fields past size
 *        are not read and take their documented defaults;
 *      size > the library's sizeof (a newer caller): accepted if every byte
 *        past the library's sizeof is zero, else -E2BIG (a field this
 *        library does not know was set); size > 4096 is -E2BIG;
 *    on an error nothing was done. A struct the library fills
 *    (xfer_engine_query) has the same bounds; the library writes
 *    min(size, its sizeof) bytes, zeroes the caller's bytes past its
 *    sizeof, and sets size to the number of bytes it filled.
 *    The _init / _defaults / _parse calls are macros that pass the
 *    header's sizeof to a _size function: the library fills the caller's
 *    struct only as far as that size and sets size to it, so a newer
 *    library never writes past an older caller's struct;
 *  - API calls never post to the NIC themselves: they hand work to the
 *    engine's worker thread and return; completion arrives through a
 *    callback (run on the worker thread) and/or a handle that can be
 *    polled or waited on.
 */
#ifndef XFER_H
#define XFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XFER_API_VERSION 1

typedef struct xfer_engine xfer_engine;
typedef struct xfer_mr xfer_mr;     /* a local registered region */
typedef struct xfer_rmr xfer_rmr;   /* an imported remote region */
typedef struct xfer_op xfer_op;     /* an operation handle */
typedef struct xfer_watch xfer_watch;

/* ------------------------------------------------------------------ */
/* Engine                                                              */

#define XFER_MAX_RAILS 8
#define XFER_ADDR_MAX 1152   /* upper bound of a serialised engine address */
#define XFER_DESC_MAX 512    /* upper bound of a serialised region descriptor */

struct xfer_engine_attr {
	uint32_t size;            /* sizeof(struct xfer_engine_attr) */
	uint32_t flags;           /* XFER_ENGINE_F_*; unknown bits: -EINVAL */
	/* "auto", "efa", "verbs;ofi_rxm", "shm", "tcp;ofi_rxm", "sockets" (all
	 * through libfabric), "verbs" (the ibverbs backend), or "local"
	 * (processes on one host: process_vm_writev, no library). NULL = auto. */
	const char *provider;
	uint32_t num_rails;     /* NICs per engine; 0 = 1 */
	int32_t gpu;              /* CUDA device index, or -1 for none: with no
				   * devices named, the NICs nearest it are opened.
				   * < -1: -EINVAL; a GPU this machine does not have
				   * (the NVIDIA driver's and hwloc's lists): -ENODEV */
	int32_t worker_cpu;       /* core for the worker, -1 = from topology; a core
				   * outside the calling thread's affinity (or < -1):
				   * -EINVAL */
	uint32_t peer_timeout_ms; /* 0 = default (XFER_DEFAULT_TIMEOUT_MS) */
	const char *node;         /* local address to bind (IP providers), or NULL */
	const char *devices;      /* comma-separated NIC names (verbs / efa), or NULL:
				   * nearest the GPU, else the provider's order */
	uint64_t stripe_threshold;/* single writes >= this are striped; 0 = default */
	uint32_t idle_spin_us;    /* busy-poll this long after activity; 0 = default;
				   * at most XFER_IDLE_SPIN_MAX_US, else -EINVAL */
	uint32_t max_inflight;    /* pieces in flight per rail; 0 = default;
				   * at most XFER_INFLIGHT_MAX, else -EINVAL */
};
#define XFER_IDLE_SPIN_MAX_US 1000000u   /* 1 s: longer only burns a core */
#define XFER_INFLIGHT_MAX 65536u         /* beyond any NIC's queue depth */
/* Every field past flags has a default (xfer_engine_attr_init's). */
#define XFER_ENGINE_ATTR_SIZE_VER0 8u

#define XFER_DEFAULT_TIMEOUT_MS 5000
#define XFER_DEFAULT_STRIPE_THRESHOLD (256u * 1024)

/* Fill attr with defaults (provider auto, 1 rail, no GPU, auto CPU). */
void xfer_engine_attr_init_size(struct xfer_engine_attr *attr, size_t size);
/* A macro so that the size is this header's sizeof: a newer library never
 * writes past the end of an older caller's struct. */
#define xfer_engine_attr_init(attr) xfer_engine_attr_init_size((attr), sizeof(*(attr)))
int xfer_engine_create(const struct xfer_engine_attr *attr, xfer_engine **out);
/* Work still in flight completes with -ECANCELED before this returns.
 * Called from a callback (on the engine's own worker thread), it cannot wait
 * for the worker: it only stops the engine and returns; the worker frees the
 * engine once the callback has returned, after the cancellations, with
 * nobody waiting. Either way the engine must not be used after the call. */
void xfer_engine_destroy(xfer_engine *e);

/* The engine's address, to be given to peers out of band. *len is the
 * buffer size on entry and the address length on return (-ENOSPC if small). */
int xfer_engine_address(xfer_engine *e, void *buf, size_t *len);
/* Add a peer from its address; *peer receives a small index to name it by. */
int xfer_engine_add_peer(xfer_engine *e, const void *addr, size_t len, uint32_t *peer);
/* 0 while the peer is usable, else the error that took it down. */
int xfer_peer_status(xfer_engine *e, uint32_t peer);
/* Connect ahead of time: set up now what the backend would set up on the
 * first transfer to each of the num_peers peers (indices from
 * xfer_engine_add_peer): connections, address handles, queue pairs, on
 * every rail; wait until all are ready, so that a first write pays no
 * set-up. Refused connections are retried until timeout_ms (<= 0: the
 * engine's peer timeout). Returns 0 when every peer is ready; -EINVAL for
 * a NULL list, num_peers 0 or a peer index never added; -EDEADLK from a
 * completion callback; else the error of the first peer in the list that
 * could not be reached (-ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, ...),
 * after every peer was tried (-ECANCELED if the engine is destroyed
 * meanwhile). Such a peer is down with its error: to learn
 * which peers failed, call xfer_peer_status on each (the others stay up).
 * A peer already ready costs one round trip. Blocks the caller (never the
 * worker); may be called from several threads at once. */
int xfer_engine_connect(xfer_engine *e, const uint32_t *peers, uint32_t num_peers, int timeout_ms);

struct xfer_engine_info {
	uint32_t size;
	uint32_t num_rails;
	char provider[32];        /* the provider actually opened */
	char rail_names[XFER_MAX_RAILS][64];
	int32_t worker_cpu;
	uint32_t imm_bits;        /* 32 */
	uint64_t max_msg_size;
};
/* Filled as far as info->size reaches (at least size and num_rails). */
#define XFER_ENGINE_INFO_SIZE_VER0 8u
int xfer_engine_query(xfer_engine *e, struct xfer_engine_info *info);

/* Per-rail counters, as published to the kernel module's stats page. */
struct xfer_rail_stats {
	uint64_t bytes_posted, bytes_completed;
	uint64_t ops_posted, ops_completed, ops_failed;
	uint64_t imm_received;
};
int xfer_engine_stats(xfer_engine *e, uint32_t rail, struct xfer_rail_stats *st);

/* ------------------------------------------------------------------ */
/* Memory                                                              */

enum {
	XFER_MEM_HOST = 0,   /* ordinary host memory */
	XFER_MEM_CUDA = 1,   /* a CUDA device pointer (cuda_device names the GPU) */
	XFER_MEM_DMABUF = 2, /* a dma-buf fd, offset; addr is the process VA if any */
};

#define XFER_MR_REMOTE_WRITE (1u << 0) /* peers may write into it */
#define XFER_MR_KMOD_PIN     (1u << 1) /* pin through /dev/xfer (default when present) */
#define XFER_MR_NO_KMOD      (1u << 2) /* never use /dev/xfer for this region */

struct xfer_mem {
	uint32_t size;       /* sizeof(struct xfer_mem) */
	uint32_t kind;       /* XFER_MEM_* */
	int32_t cuda_device; /* default 0 */
	int32_t dmabuf_fd;   /* default -1 (none) */
	uint64_t dmabuf_offset; /* default 0 */
};
/* size and kind; the rest have the defaults above. */
#define XFER_MEM_SIZE_VER0 8u

/* mem may be NULL for host memory. */
int xfer_mr_reg(xfer_engine *e, void *addr, size_t len, const struct xfer_mem *mem,
		uint32_t flags, xfer_mr **out);
/* A region must outlive every operation that reads from it: while an
 * operation from it is not finished or has pieces still in flight (a failed
 * operation's pieces to a dead peer may come back later), or a watch uses
 * it, this is -EBUSY and the region stays registered; deregister after the
 * completions and xfer_watch_remove. */
int xfer_mr_dereg(xfer_mr *mr);
void *xfer_mr_addr(const xfer_mr *mr);
size_t xfer_mr_len(const xfer_mr *mr);
/* Host memory for long-lived registered buffers (weights, staging): 2 MiB
 * aligned, on transparent huge pages where the kernel offers them, zeroed
 * and faulted in now, so that first-touch faults are paid here and not in
 * the data path. NULL if out of memory (or bytes is within 2 MiB of
 * SIZE_MAX); free with free(). */
void *xfer_host_alloc(size_t bytes);

/* The region's descriptor: a versioned binary blob for peers. */
int xfer_mr_descriptor(const xfer_mr *mr, void *buf, size_t *len);
/* Import a peer's descriptor. Every field is validated (-EINVAL on any
 * inconsistency, never an over-read); the descriptor must have been made
 * by the engine that was added as `peer`. */
int xfer_rmr_import(xfer_engine *e, uint32_t peer, const void *desc, size_t len,
		    xfer_rmr **out);
void xfer_rmr_free(xfer_rmr *rmr);
uint64_t xfer_rmr_len(const xfer_rmr *rmr);

/* ------------------------------------------------------------------ */
/* Operations                                                          */

/* Completion callback: runs on the worker thread; it must not block, but may
 * submit further operations (they are posted without a queue hop). */
typedef void (*xfer_done_fn)(void *ctx, int status);

struct xfer_done {
	xfer_done_fn fn;
	void *ctx;
};

/* Flags for operations. */
#define XFER_OP_IMM (1u << 0) /* deliver `imm` to the target once all data landed */

/* Every submit function takes an optional completion `done` and an optional
 * handle `op`. If `op` is non-NULL the caller owns a handle that must be
 * released with xfer_op_release(); otherwise the engine frees it itself. On
 * a submit error nothing was posted, no callback will run and *op is NULL. */

/* One write: len bytes from src+src_off into dst+dst_off. Large writes are
 * striped across rails. With XFER_OP_IMM the target counts one arrival
 * of imm after the whole payload has landed. */
int xfer_write(xfer_engine *e, xfer_mr *src, uint64_t src_off, xfer_rmr *dst,
	       uint64_t dst_off, uint64_t len, uint32_t flags, uint32_t imm,
	       const struct xfer_done *done, xfer_op **op);

/* An immediate alone (zero-byte write with immediate) to a peer. */
int xfer_imm(xfer_engine *e, uint32_t peer, uint32_t imm, const struct xfer_done *done,
	     xfer_op **op);

/* Paged writes, the KV-cache case: page i goes from
 *   src + src_offset + src_pages[i] * src_stride
 * to
 *   dst + dst_offset + dst_pages[i] * dst_stride, page_size bytes each.
 * Index arrays are copied; pages are spread over the rails. */
struct xfer_paged {
	uint32_t size;         /* sizeof(struct xfer_paged) */
	uint32_t flags;        /* XFER_OP_IMM */
	xfer_mr *src;
	xfer_rmr *dst;
	const uint32_t *src_pages;
	const uint32_t *dst_pages;
	uint32_t num_pages;
	uint32_t imm;
	uint64_t page_size;
	uint64_t src_stride;   /* 0 = page_size */
	uint64_t dst_stride;   /* 0 = page_size */
	uint64_t src_offset;   /* default 0 */
	uint64_t dst_offset;   /* default 0 */
};
/* Through page_size; strides and offsets default to 0. */
#define XFER_PAGED_SIZE_VER0 56u
int xfer_write_paged(xfer_engine *e, const struct xfer_paged *p, const struct xfer_done *done,
		     xfer_op **op);

/* Scatter: one source region to many peers, each with its own range. */
struct xfer_scatter_dst {
	xfer_rmr *dst;
	uint64_t src_off;
	uint64_t dst_off;
	uint64_t len;          /* may be 0 with XFER_OP_IMM: an immediate alone */
};
int xfer_scatter(xfer_engine *e, xfer_mr *src, const struct xfer_scatter_dst *dsts,
		 uint32_t num_dsts, uint32_t flags, uint32_t imm,
		 const struct xfer_done *done, xfer_op **op);

/* Barrier: an immediate to each of the given peers. */
int xfer_barrier(xfer_engine *e, const uint32_t *peers, uint32_t num_peers, uint32_t imm,
		 const struct xfer_done *done, xfer_op **op);

/* Handles. */
int xfer_op_test(xfer_op *op);                 /* -EINPROGRESS or final status */
int xfer_op_wait(xfer_op *op, int timeout_ms); /* final status, or -ETIMEDOUT (op continues) */
void xfer_op_release(xfer_op *op);

/* ------------------------------------------------------------------ */
/* Immediate counters (receiver side)                                  */

/* Arrivals of imm not yet consumed. */
uint64_t xfer_imm_count(xfer_engine *e, uint32_t imm);
/* Wait until `count` unconsumed arrivals of imm exist, then consume them.
 * -ETIMEDOUT (consuming nothing) if they do not come within timeout_ms
 * (negative: wait forever). Any number of distinct immediates is counted
 * (the tables grow); if memory for a new one ran out, that arrival is lost,
 * the stats page's last_error says -ENOMEM, and from then on a wait or
 * expectation on an immediate not yet counted fails with -ENOMEM. */
int xfer_imm_wait(xfer_engine *e, uint32_t imm, uint64_t count, int timeout_ms);

/* How to tell that an expectation was met. Any combination. The flag is
 * the SM-free path: the worker stores flag_value into *flag (release order)
 * and a CUDA stream can wait on it (cuStreamWaitValue64 on host-mapped memory). */
struct xfer_notify {
	uint32_t size;          /* sizeof(struct xfer_notify) */
	uint32_t flags;         /* 0 */
	xfer_done_fn fn;        /* called with status 0 (or an error on shutdown) */
	void *ctx;
	volatile uint64_t *flag;    /* default NULL */
	uint64_t flag_value;        /* default 0 */
};
/* Through ctx: a callback alone; flag and flag_value default to none. */
#define XFER_NOTIFY_SIZE_VER0 24u
/* When `count` unconsumed arrivals of imm exist, consume them and notify. */
int xfer_imm_expect(xfer_engine *e, uint32_t imm, uint64_t count, const struct xfer_notify *n);

/* ------------------------------------------------------------------ */
/* Watched words (SM-free trigger, producer side)                      */

/* A prepared write that the worker posts each time *word is increased.
 * The producer (a thread here, a CUDA stream with cuStreamWriteValue64
 * on host-mapped memory on a GPU machine) stores successive values
 * 1, 2, 3, ...; each increase by k posts the write k times. `done` runs
 * once per posted write. An increase that would leave more than
 * XFER_WATCH_MAX_STEP writes owed (a corrupt or runaway word) stops the
 * watch instead: `done` runs once with -ERANGE, nothing more is posted
 * (remove it as usual). The source region stays in use (xfer_mr_dereg:
 * -EBUSY) until xfer_watch_remove. */
#define XFER_WATCH_MAX_STEP 65536u
struct xfer_watch_attr {
	uint32_t size;          /* sizeof(struct xfer_watch_attr) */
	uint32_t flags;         /* XFER_OP_IMM */
	const volatile uint64_t *word;
	xfer_mr *src;
	uint64_t src_off;
	xfer_rmr *dst;
	uint64_t dst_off;
	uint64_t len;
	uint32_t imm;
	uint32_t reserved;      /* 0 */
	struct xfer_done done;  /* default none */
};
/* Through reserved; done defaults to no callback. */
#define XFER_WATCH_ATTR_SIZE_VER0 64u
int xfer_watch_add(xfer_engine *e, const struct xfer_watch_attr *attr, xfer_watch **out);
/* Number of writes the watch has posted so far. */
uint64_t xfer_watch_fired(const xfer_watch *w);
int xfer_watch_remove(xfer_watch *w);

/* A variable-length scatter triggered by a watched word: the primitive a
 * CPU proxy needs when a GPU kernel decides how much goes where (MoE
 * dispatch and combine). The destinations are prepared once; the lengths,
 * offsets and immediates are read from a table in memory each time the
 * producer (a thread, or a CUDA stream with cuStreamWriteValue64 on
 * host-mapped memory) increases *word by one: the n-th firing (n = 0, 1,
 * ...) reads table n % num_tables, whose row i says what goes to dsts[i],
 * and posts one scatter of those rows. The producer writes a table before
 * the increase that fires it (the worker loads the word with acquire
 * order), and must not rewrite it before that firing is finished
 * (*done_word, done). Firing n goes only once firing n - num_tables (or
 * n - 1024, the most in flight) is finished. */
struct xfer_vscatter_row {
	uint64_t src_off;       /* in the source region */
	uint64_t dst_off;       /* in dsts[i] */
	uint64_t len;           /* 0 with XFER_OP_IMM: the immediate alone;
				 * 0 without: nothing goes to dsts[i] */
	uint32_t imm;           /* with XFER_OP_IMM: counted at dsts[i]'s engine once
				 * this row's bytes landed there */
	uint32_t flags;         /* XFER_OP_IMM, or 0 */
};
/* The producer is a thread that calls xfer_watch_kick after each increase:
 * the worker may then sleep while idle instead of polling the word (a GPU
 * stream cannot kick: without this flag the worker polls, as for every
 * watch, and spends its core on it). */
#define XFER_VSCATTER_F_KICK (1u << 0)
struct xfer_vscatter_attr {
	uint32_t size;          /* sizeof(struct xfer_vscatter_attr) */
	uint32_t flags;         /* XFER_VSCATTER_F_*; unknown bits: -EINVAL */
	const volatile uint64_t *word;
	xfer_mr *src;
	xfer_rmr *const *dsts;  /* num_dsts imported regions (copied at add) */
	uint32_t num_dsts;      /* 1 .. XFER_VSCATTER_MAX_DSTS */
	uint32_t num_tables;    /* tables in the ring; 0 = 1 */
	const volatile struct xfer_vscatter_row *tables; /* num_tables x num_dsts rows */
	/* default NULL: the worker stores the number of finished firings here
	 * (release order), so a stream can wait before rewriting a table; in
	 * order: n says firings 0 .. n-1 are all finished */
	volatile uint64_t *done_word;
	struct xfer_done done;  /* default none: runs once per firing, with the
				 * scatter's status */
};
/* Through tables; done_word and done default to none. */
#define XFER_VSCATTER_ATTR_SIZE_VER0 48u
#define XFER_VSCATTER_MAX_DSTS 4096u
/* Checks the attributes (-EINVAL: a NULL word, src, dsts or tables, a
 * region of another engine, num_dsts out of bounds; -ENOMEM) and returns a
 * watch: xfer_watch_fired counts firings taken (refused ones too),
 * xfer_watch_remove ends it once the firings taken are finished (called in
 * a callback on the worker it cannot wait: they finish after it returned).
 * A firing whose table is bad (a row past its region: -ERANGE; unknown row
 * flags: -EINVAL) posts nothing, runs done with the error, counts as
 * finished in *done_word, sets the stats page's last_error and leaves the
 * watch armed for the next firing. A table with nothing to send (every
 * row len 0 without XFER_OP_IMM) finishes at once with status 0. An increase of more than
 * XFER_WATCH_MAX_STEP stops the watch as for xfer_watch_add. */
int xfer_vscatter_add(xfer_engine *e, const struct xfer_vscatter_attr *attr, xfer_watch **out);
/* After increasing the word of a watch added with XFER_VSCATTER_F_KICK:
 * wakes the worker if it sleeps (else one load). -EINVAL for NULL. */
int xfer_watch_kick(xfer_watch *w);

/* ------------------------------------------------------------------ */
/* Sharing through the kernel module (/dev/xfer). -ENODEV without it.  */

#define XFER_SHARE_OWNER 0     /* only the owner's uid */
#define XFER_SHARE_GROUP 1     /* members of gid */
#define XFER_SHARE_UID   2     /* one explicit uid */

int xfer_mr_share(xfer_mr *mr, uint32_t rule, uint32_t id, uint64_t *share_id);
/* Open a region shared by another local process and register it with this
 * engine's NICs; the mapping is released with xfer_mr_dereg(). A verbs
 * engine registers the mapping itself when the owner's memory was shared
 * memory (MAP_SHARED | MAP_ANONYMOUS, memfd, /dev/shm), else a dma-buf of
 * the region (ibv_reg_dmabuf_mr): -EOPNOTSUPP where the device has none
 * (rxe), with nothing left held. */
int xfer_mr_open_shared(xfer_engine *e, uint64_t share_id, uint32_t flags, xfer_mr **out);

/* Status strings for the errors this library returns (any int, INT_MIN
 * included). */
const char *xfer_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* XFER_H */
