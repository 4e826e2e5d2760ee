/* SPDX-License-Identifier: MIT */
/*
 * Engine internals shared by the files of lib/core (and the unit tests).
 * Nothing here is public.
 *
 * Threads: API calls run on any thread and only (a) read immutable or
 * atomic state and (b) push nodes onto the engine's MPSC queue. The worker
 * thread owns everything else: rails, the posting list, in-flight pieces,
 * counters' expectations, watches, timeouts.
 */
#ifndef XFER_INTERNAL_H
#define XFER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "xfer.h"
#include "backend.h"
#include "clock.h"
#include "compiler.h"
#include "futex.h"
#include "kmod.h"
#include "queue.h"

#define XFER_SINK_SIZE 64

/* ---- serialised formats (desc.c) ---------------------------------- */

struct xfer_rail_key {
	uint64_t rkey;
	uint64_t raddr;
};

struct xfer_desc {
	uint64_t owner_id;
	uint64_t region_id;
	uint64_t base;
	uint64_t len;
	uint32_t num_rails;
	struct xfer_rail_key rail[XFER_MAX_RAILS];
};

#define XFER_RAIL_ADDR_MAX 96
#define XFER_PROV_NAME_MAX 24

/* Who made an address, for peers on the same host (samehost.c): the host
 * (boot id and pid namespace), the process (pid and its start time, which
 * a reused pid does not share) and its same-host page (memfd number, the
 * nonce the page must hold). */
struct xfer_addr_host {
	uint8_t boot_id[16];
	uint64_t pidns;              /* inode of /proc/self/ns/pid */
	int32_t pid;
	int32_t fd;
	uint64_t start_time;         /* /proc/PID/stat field 22, clock ticks */
	uint64_t nonce;
};

struct xfer_addr {
	uint64_t engine_id;
	uint32_t backend;            /* enum xfer_wire_backend */
	uint32_t num_rails;
	char provider[XFER_PROV_NAME_MAX];
	struct {
		uint16_t len;
		uint8_t bytes[XFER_RAIL_ADDR_MAX];
		struct xfer_rail_key sink;
	} rail[XFER_MAX_RAILS];
	struct xfer_addr_host host;
};

int xfer_desc_encode(const struct xfer_desc *d, void *buf, size_t *len);
int xfer_desc_decode(const void *buf, size_t len, struct xfer_desc *d);
int xfer_addr_encode(const struct xfer_addr *a, void *buf, size_t *len);
int xfer_addr_decode(const void *buf, size_t len, struct xfer_addr *a);

/* ---- regions ------------------------------------------------------- */

struct xfer_mr {
	xfer_engine *e;
	void *addr;
	size_t len;
	uint32_t flags;
	uint32_t kind;
	uint64_t region_id;
	uint64_t kmod_handle;        /* 0: not pinned through /dev/xfer */
	bool mapped_shared;          /* addr is a mapping of another process's share */
	/* Operations and watches that may still read it: xfer_mr_dereg is
	 * -EBUSY until this is 0 (ops.c: taken at submit, dropped when the op
	 * is finished and nothing of it is in flight). */
	_Atomic uint32_t users;
	struct xfer_rail_mr rail[XFER_MAX_RAILS];
};

struct xfer_rmr {
	xfer_engine *e;
	uint32_t peer;
	struct xfer_desc d;
};

/* ---- the engine's queue --------------------------------------------- */

/* What a node on the engine's queue (struct xfer_qnode.kind) is: the
 * worker's drain_queue tells them apart by this alone. */
enum xfer_qnode_kind {
	QNODE_OP = 1,     /* a struct xfer_op to submit (ops.c) */
	QNODE_CMD = 2,    /* a struct xfer_cmd to run (engine.c) */
};

/* ---- operations ---------------------------------------------------- */

enum xfer_op_kind { OP_WRITE = 1, OP_PAGED, OP_SCATTER, OP_IMM };

enum xfer_imm_mode {
	IMM_NONE = 0,
	IMM_ATTACHED,   /* carried by the target's single data piece */
	IMM_AFTER,      /* posted alone once the target's data completed */
};

/* One destination of an operation. */
struct xfer_target {
	uint32_t peer;
	uint32_t data_left;      /* data pieces not yet completed */
	uint8_t imm_mode;
	uint8_t imm_queued;          /* its immediate is due (queued or in flight) */
	uint8_t imm_posted;          /* ... and was handed to the NIC */
	uint8_t pad;
	uint32_t imm;                /* its immediate (imm_mode != IMM_NONE) */
	/* this destination's region (a copy owned by the op) and range */
	const struct xfer_rmr *dst;
	uint64_t src_off, dst_off, len;
	uint32_t first_piece;    /* index of its first piece */
	uint32_t num_pieces;
};

struct xfer_op {
	struct xfer_qnode qn;        /* submission queue link */
	struct xfer_op *next;        /* worker's posting list */
	struct xfer_op *lprev, *lnext; /* worker's live list (holds its ref) */
	xfer_engine *e;
	uint8_t kind;
	bool imm;                    /* XFER_OP_IMM */
	bool user_handle;            /* caller holds a handle */
	bool finished;               /* worker: status delivered */
	bool in_post;                /* worker: in the posting list */
	bool live;                   /* worker: in the live list */
	bool src_held;               /* holds a use of src (src->users) */
	uint32_t rail0;              /* first rail of an unstriped op */
	_Atomic uint32_t state;      /* 0 running, 1 done, 2 running and waited on (futex word) */
	_Atomic int refs;            /* worker's + caller's */
	int status;
	struct xfer_done done;

	/* expansion (worker) */
	uint64_t pieces_total;       /* data pieces */
	uint64_t pieces_next;        /* next data piece to post */
	uint64_t pieces_inflight;    /* posted, not completed (data + imm) */
	uint64_t deadline_ns;

	/* the operation */
	const struct xfer_mr *src;
	uint64_t src_off, dst_off, len;  /* OP_WRITE */
	uint64_t chunk;                  /* OP_WRITE: bytes per piece */
	struct xfer_paged paged;         /* OP_PAGED (pages point into `pages`) */
	uint32_t *pages;                 /* OP_PAGED: src then dst indices */
	uint32_t num_targets;
	struct xfer_target *targets;     /* allocated behind the op, with their rmr copies */
};

/* ---- immediate counters (counters.c) ------------------------------- */

struct xfer_expect {
	struct xfer_expect *next;
	uint64_t count;
	struct xfer_notify n;
	_Atomic uint32_t *fired;     /* internal waiters: set to 1 when met */
};

struct xfer_counter {
	_Atomic uint64_t key;        /* imm + 1; 0 = empty slot */
	_Atomic uint64_t arrived;
	_Atomic uint64_t consumed;
	struct xfer_expect *head, *tail;  /* worker only */
};

#define XFER_COUNTER_SLOTS 4096   /* the engine's first table; later ones double */

/* A further table of counters: the engine's first is embedded; when the
 * newest is 3/4 full the worker chains one twice its size. Readers on any
 * thread walk the chain (a table is published whole, by a release store of
 * the link to it); tables live until the engine is freed. */
struct xfer_ctable {
	struct xfer_ctable *_Atomic next;
	uint32_t slots;              /* a power of two */
	uint32_t used;               /* worker only */
	struct xfer_counter c[];
};

/* Test hook: how counters.c allocates a table (calloc by default). */
extern void *(*xfer_counters_calloc)(size_t n, size_t size);

struct xfer_counter *xfer_counter_find(xfer_engine *e, uint32_t imm);
struct xfer_counter *xfer_counter_get(xfer_engine *e, uint32_t imm); /* worker: find or insert */
void xfer_counter_arrival(xfer_engine *e, uint32_t imm);              /* worker */
void xfer_counter_add_expect(xfer_engine *e, uint32_t imm, struct xfer_expect *x);
bool xfer_counter_cancel_expect(xfer_engine *e, uint32_t imm, struct xfer_expect *x);
void xfer_counters_shutdown(xfer_engine *e);
void xfer_counters_free(xfer_engine *e);   /* the chained tables, with the engine */

/* ---- watches (watch.c) --------------------------------------------- */

struct xfer_watch {
	struct xfer_watch *next;
	xfer_engine *e;
	struct xfer_watch_attr a;
	struct xfer_rmr dst;
	uint64_t last;               /* last value of *word acted on */
	_Atomic uint64_t fired;
	uint64_t pending;            /* writes owed but not yet submitted */
	bool failed;                 /* jumped past XFER_WATCH_MAX_STEP: stopped */
	bool kicked;                 /* the producer kicks (XFER_VSCATTER_F_KICK): no polling while idle */
	struct xfer_vscatter *vs;    /* xfer_vscatter_add's state (watch.c); NULL: a write */
};

void xfer_watches_poll(xfer_engine *e);
/* A kicked watch's word moved, or firings are owed: not a time to sleep. */
bool xfer_watches_moved(const xfer_engine *e);

/* ---- control commands to the worker -------------------------------- */

enum xfer_cmd_kind {
	CMD_ADD_PEER = 1, CMD_MR_REG, CMD_MR_DEREG, CMD_EXPECT, CMD_CANCEL_EXPECT,
	CMD_WATCH_ADD, CMD_WATCH_REMOVE, CMD_STOP,
	CMD_CONNECT,      /* connect.c: start a connect request; it finishes later */
};

struct xfer_connect_req;

struct xfer_cmd {
	struct xfer_qnode qn;
	uint32_t kind;
	int result;
	_Atomic uint32_t done;       /* futex: 1 when the worker finished it */
	bool async;                  /* worker frees it (CMD_EXPECT) */
	union {
		struct { uint32_t peer; const struct xfer_addr *addr; } add_peer;
		struct { struct xfer_mr *mr; int dmabuf_fd; uint64_t dmabuf_off; } mr;
		struct { uint32_t imm; struct xfer_expect *x; } expect;
		struct { struct xfer_watch *w; } watch;
		struct { struct xfer_connect_req *req; } connect;
	} u;
};

/* engine.c: run a command on the worker and wait for it (or queue it, if
 * async); the worker runs it in xfer_worker_exec_cmd (worker.c). */
int xfer_cmd_run(xfer_engine *e, struct xfer_cmd *c);

/* ---- the engine ---------------------------------------------------- */

struct xfer_peer {
	_Atomic int status;          /* 0 up, -errno down */
	bool used;
	uint64_t engine_id;
	uint32_t num_rails;
	struct xfer_rail_key sink[XFER_MAX_RAILS];
	uint64_t last_done_ns;       /* worker: its last successful completion */
	/* worker: its pieces handed to the provider and not yet completed, so
	 * that a peer going down returns them at once (reclaim) */
	struct xfer_piece *inflight;
	/* worker: connection set-up refused since (0: not now; retry_refused) */
	uint64_t refused_since;
	/* worker: its queue of single-destination ops with pieces left to
	 * post, and its link in the engine's list of peers that have one */
	struct xfer_op *post_head, *post_tail;
	uint32_t ready_next;         /* index + 1 of the next such peer; 0: none */
	bool ready;
};

struct xfer_rail_state {
	struct xfer_rail *r;
	uint32_t inflight;
	uint32_t max_inflight;
	/* Peers the provider said EAGAIN for this round. Per peer, not per
	 * rail: on verbs a stalled peer fills only its own QP, and must not
	 * hold back the others (libfabric's EAGAIN is rail-wide; then every
	 * peer simply gets its own EAGAIN). */
	uint64_t blocked[XFER_MAX_PEERS / 64];
	/* Each peer's pieces in flight here, and how many peers have some: a
	 * peer gets a share of max_inflight (peer_share in worker.c), so a
	 * stalled peer cannot fill the rail for the others. */
	uint32_t busy_peers;
	uint32_t peer_inflight[XFER_MAX_PEERS];
	struct xfer_ctx_stats_rail *st;
};

/* A posted piece: what a completion refers back to. While posted it is on
 * its peer's in-flight list (pprev/pnext). A piece of a peer that went down
 * is detached (op NULL): already counted as failed, it only waits for the
 * provider to give its context back (or never, then it stays allocated). */
struct xfer_piece {
	struct xfer_piece *next_free;   /* free list; retry list while retrying */
	struct xfer_op *op;             /* NULL: detached */
	struct xfer_piece *pprev, *pnext;
	uint32_t target;
	uint32_t peer;
	uint16_t rail;
	uint8_t is_imm;
	uint8_t probe;                  /* a connect probe (connect.c): op is NULL */
	uint8_t retrying;               /* waits in e->retry for a re-post */
	uint8_t retries;                /* re-posts so far (its back-off) */
	uint64_t len;
	uint64_t retry_at;
	struct xfer_wr wr;              /* as posted: a retry posts it again */
};

struct xfer_engine {
	struct xfer_engine_attr attr;
	const struct xfer_backend_ops *ops;
	uint64_t id;
	uint32_t num_rails;
	uint32_t timeout_ms;
	uint64_t stripe_threshold;
	uint64_t max_msg;
	char provider[32];
	char rail_names[XFER_MAX_RAILS][64];
	struct xfer_rail_state rail[XFER_MAX_RAILS];
	struct xfer_mr *sink;        /* target of immediates alone */
	void *sink_buf;

	struct xfer_addr self;

	pthread_mutex_t peer_lock;   /* protects peer allocation (num_peers, free_peers) */
	uint32_t num_peers;
	uint32_t num_free_peers;     /* slots of failed adds, taken again first */
	uint32_t free_peers[XFER_MAX_PEERS];
	struct xfer_peer peers[XFER_MAX_PEERS];

	struct xfer_mpsc q;          /* API -> worker */
	_Atomic uint32_t wake;       /* futex: bumped to wake a sleeping worker */
	int epfd;                    /* epoll over the rails' wait fds and evfd, or -1 */
	int evfd;                    /* eventfd that wakes the worker out of epoll */
	bool all_rails_wait;         /* every rail has a wait fd: sleep until events */
	_Atomic uint32_t sleeping;
	pthread_t worker;
	int worker_cpu;
	_Atomic bool stopping;
	bool on_worker_init;
	bool destroy_deferred;       /* destroyed from a callback: the worker frees it */

	/* worker-only state */
	/* ops with pieces left to post: those to one peer on its queue
	 * (struct xfer_peer), those to several here */
	struct xfer_op *post_head, *post_tail;
	uint32_t ready_head, ready_tail;        /* peers with a queue: index + 1 */
	struct xfer_op *live;                   /* every op the worker holds */
	uint32_t rr;                            /* round robin over rails */
	struct xfer_piece *piece_free;
	struct xfer_piece *piece_slabs;
	struct xfer_piece *retry;               /* refused pieces to post again */
	uint64_t inflight_total;                /* pieces in flight, all rails */
	struct xfer_target **imm_ready;         /* targets whose IMM_AFTER is due */
	struct xfer_op **imm_ready_op;
	uint32_t imm_ready_n, imm_ready_cap;
	struct xfer_watch *watches;
	uint32_t watches_polled;                /* of them, not kicked: the worker never sleeps */
	uint64_t next_timeout_scan;
	uint64_t now_ns;                        /* clock at the top of this loop */
	uint64_t timeout_ns;
	uint64_t region_seq;
	struct xfer_connect_state *conn;        /* connect.c, made on first use */

	struct xfer_counter counters[XFER_COUNTER_SLOTS];
	uint32_t counters_used;                 /* worker: slots taken in `counters` */
	struct xfer_ctable *_Atomic counters_more;   /* the chain beyond `counters` */
	_Atomic uint64_t counters_lost;         /* arrivals no table could take */

	struct xfer_samehost *sh;              /* samehost.c: our page, same-host peers */

	struct xfer_kmod *kmod;
	struct xfer_ctx_stats *stats;          /* kmod page, a memfd's, or stats_local */
	struct xfer_ctx_stats stats_local;
	int stats_fd;                          /* the "xfer-stats" memfd, or -1 */
	size_t stats_len;                      /* its mapping */
};

/* A rail's pieces in flight onto the stats page (worker only): one relaxed
 * store where the count changes. */
static inline void xfer_publish_rail_inflight(xfer_engine *e, uint32_t rail)
{
	__atomic_store_n(&e->stats->rail_ops_inflight[rail], (uint64_t)e->rail[rail].inflight,
			 __ATOMIC_RELAXED);
}

extern __thread xfer_engine *xfer_worker_self;

/* worker.c */
void *xfer_worker_main(void *arg);
void xfer_worker_submit(xfer_engine *e, struct xfer_op *op);   /* worker thread only */
void xfer_engine_kick(xfer_engine *e);
void xfer_fail_peer_ops(xfer_engine *e, uint32_t peer, int status);
int xfer_worker_exec_cmd(xfer_engine *e, struct xfer_cmd *c);

void xfer_peer_down(xfer_engine *e, uint32_t peer, int status);

/* engine.c */
void xfer_engine_free(xfer_engine *e);   /* after the worker stopped */
int xfer_worker_add_peer(xfer_engine *e, uint32_t peer, const struct xfer_addr *a);

/* connect.c (worker side of xfer_engine_connect) */
void xfer_connect_begin(xfer_engine *e, struct xfer_connect_req *req);
int xfer_connect_progress(xfer_engine *e);       /* each loop while e->conn */
void xfer_connect_probe_done(xfer_engine *e, struct xfer_piece *pc, int status);
void xfer_connect_shutdown(xfer_engine *e);      /* the worker stops */

/* ops.c */
void xfer_op_finish(struct xfer_op *op, int status);  /* worker: deliver completion */
void xfer_op_put(struct xfer_op *op);
void xfer_live_add(xfer_engine *e, struct xfer_op *op);
void xfer_live_drop(xfer_engine *e, struct xfer_op *op);
void xfer_op_unhold(struct xfer_op *op);   /* drop its use of src, once */
/* xfer_scatter whose destinations each carry their own immediate or none
 * (flags[i] & XFER_OP_IMM, imms[i]): the variable-length scatter's firings */
int xfer_scatter_each(xfer_engine *e, xfer_mr *src, const struct xfer_scatter_dst *dsts,
		      uint32_t num_dsts, const uint32_t *flags, const uint32_t *imms,
		      const struct xfer_done *done, xfer_op **user);
struct xfer_op *xfer_live_first(xfer_engine *e);
struct xfer_op *xfer_live_next(struct xfer_op *op);

/* samehost.c: peers on this host (identity, liveness, doorbell, region
 * table). All but xfer_sh_create/destroy and xfer_sh_wake run on the worker. */
struct xfer_samehost;
int xfer_sh_create(xfer_engine *e);          /* fills e->self.host */
void xfer_sh_destroy(xfer_engine *e);
/* 0 also for a peer on another host; -ECONNREFUSED / -EPROTO for a page
 * that fails validation. */
int xfer_sh_add_peer(xfer_engine *e, uint32_t peer, const struct xfer_addr_host *h);
void xfer_sh_remove_peer(xfer_engine *e, uint32_t peer);
void xfer_sh_peer_down(xfer_engine *e, uint32_t peer);
/* Same-host peers that died since the last call (their pidfds), at most max. */
int xfer_sh_reap_dead(xfer_engine *e, uint32_t *dead, int max);
/* After posting n wrs to peer: wake it if it sleeps and needs to progress them. */
void xfer_sh_ring(xfer_engine *e, uint32_t peer, const struct xfer_wr *wrs, int n);
bool xfer_sh_uses_bell(const xfer_engine *e);
uint32_t xfer_sh_sleep_begin(xfer_engine *e);
bool xfer_sh_sleep(xfer_engine *e, uint32_t seen, uint64_t ns);   /* true: rung */
void xfer_sh_wake(xfer_engine *e);                                /* any thread */
int xfer_sh_region_add(xfer_engine *e, const struct xfer_mr *mr);
void xfer_sh_region_del(xfer_engine *e, const struct xfer_mr *mr);
/* 0, or -EACCES when wr's target range is not inside the peer's live region
 * dst names (checked only where no NIC checks rkeys). */
int xfer_sh_piece_ok(xfer_engine *e, uint32_t peer, const struct xfer_rmr *dst,
		     const struct xfer_wr *wr);

/* topo.c: placement from hwloc. Each call takes a cache the topology is
 * loaded into on first need (a load walks sysfs: tens of ms on a GPU node),
 * so one engine creation loads it at most once; free it with
 * xfer_topo_free (NULL is fine). */
struct xfer_topo;
void xfer_topo_free(struct xfer_topo *cache);
int xfer_topo_worker_cpu(struct xfer_topo **cache, int gpu, const char *nic);
/* 1 when CUDA device gpu exists (the NVIDIA driver's list, or hwloc's PCI
 * devices), 0 when it does not, -1 when that cannot be told here. */
int xfer_topo_gpu_exists(struct xfer_topo **cache, int gpu);
#define XFER_TOPO_NAME 64
/* The RDMA NICs (ibverbs names) nearest CUDA device `gpu` in the PCIe tree,
 * nearest first, at most max; 0 without a GPU or topology. */
int xfer_topo_nics_near_gpu(struct xfer_topo **cache, int gpu, char names[][XFER_TOPO_NAME],
			    int max);

#endif
