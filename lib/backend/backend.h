/* SPDX-License-Identifier: MIT */
/*
 * The backend ops table: what a NIC backend (libfabric, ibverbs) must do.
 * Everything above this table (queueing, striping, counters, timeouts) is
 * shared. A backend opens one rail per NIC; all calls on a rail
 * come from the engine's worker thread, so backends need no locking.
 *
 * Like libfabric's ops tables the struct starts with its size: a backend
 * built against an older table leaves newer entries NULL and the engine
 * answers -EOPNOTSUPP for them.
 */
#ifndef XFER_BACKEND_H
#define XFER_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xfer.h"

#define XFER_MAX_PEERS 1024

/* Which backend made an engine address (its wire id): peers of different
 * backends cannot talk. */
enum xfer_wire_backend {
	XFER_WIRE_FABRIC = 1,
	XFER_WIRE_VERBS = 2,
	XFER_WIRE_LOCAL = 3,
	XFER_WIRE_MAX = XFER_WIRE_LOCAL,
};

struct xfer_rail;          /* backend-private, one per NIC */
struct xfer_engine;

struct xfer_rail_attr {
	const char *provider;   /* as given in the engine attr ("auto" resolved by the backend) */
	const char *node;       /* local bind address, or NULL */
	const char *device;     /* NIC name for this rail, or NULL: pick the index-th */
	uint32_t index;         /* rail number within the engine */
	uint32_t num_rails;
	uint32_t max_inflight;  /* pieces in flight the engine will allow */
};

/* What a registration yields for the descriptor. */
struct xfer_rail_mr {
	void *handle;           /* backend's registration (fid_mr, ibv_mr) */
	void *desc;             /* local descriptor passed back to post_write */
	uint64_t rkey;          /* remote key */
	uint64_t raddr;         /* remote address of the region's first byte */
};

/* One write work request. len 0 with has_imm is an immediate alone. */
struct xfer_wr {
	const void *laddr;
	void *ldesc;            /* xfer_rail_mr.desc of the source, NULL if len 0 */
	uint64_t len;
	uint64_t raddr;
	uint64_t rkey;
	uint32_t imm;
	uint8_t has_imm;
	uint8_t delivery;       /* complete only once the data is placed at the
				 * target (an immediate follows it) */
	uint8_t pad[2];
	void *ctx;              /* returned in the completion */
};

enum xfer_cqe_kind {
	XFER_CQE_LOCAL = 1,     /* a posted write completed (status says how) */
	XFER_CQE_IMM = 2,       /* a remote write-with-immediate arrived */
	XFER_CQE_PEER_DOWN = 3, /* a connection to `peer` failed (status) */
};

struct xfer_cqe {
	uint32_t kind;
	int32_t status;         /* 0 or -errno */
	void *ctx;              /* LOCAL: the wr's ctx */
	uint32_t imm;           /* IMM */
	uint32_t peer;          /* PEER_DOWN */
	uint64_t len;           /* IMM: bytes that came with it, when known */
};

struct xfer_backend_ops {
	size_t size;            /* sizeof(struct xfer_backend_ops) */
	const char *name;
	/* The provider string that selects this backend; NULL: every name no
	 * other backend claims (libfabric's providers). */
	const char *provider;
	uint32_t wire_id;       /* enum xfer_wire_backend */
	/* Optional: whether the opened provider only reaches this host (shm,
	 * tcp on loopback, local): then the worker is not placed near a NIC. */
	bool (*loopback)(const char *provider);
	/* The NIC moves posted work by itself (no progress calls needed), so
	 * the worker polls while writes are in flight, as a NIC's completion
	 * ring is meant to be polled; manual-progress providers sharing cores
	 * with their peers (shm, tcp) instead sleep between polls. */
	bool hw_progress;

	/* Open rail `attr->index`. On success *out is the rail. */
	int (*rail_open)(const struct xfer_rail_attr *attr, struct xfer_rail **out);
	void (*rail_close)(struct xfer_rail *r);
	/* Provider / device name and limits, for xfer_engine_query. */
	void (*rail_info)(struct xfer_rail *r, char *prov, size_t prov_len,
			  char *dev, size_t dev_len, uint64_t *max_msg);

	/* The rail's address for peers; *len in: room, out: used. */
	int (*rail_addr)(struct xfer_rail *r, void *buf, size_t *len);
	/* Connect to (or just remember) a peer's rail address under index `peer`.
	 * May finish asynchronously: posts to a peer not yet ready return -EAGAIN. */
	int (*rail_add_peer)(struct xfer_rail *r, uint32_t peer, const void *addr, size_t len);
	void (*rail_remove_peer)(struct xfer_rail *r, uint32_t peer);

	int (*mr_reg)(struct xfer_rail *r, void *addr, size_t len, uint32_t mem_kind,
		      int dmabuf_fd, uint64_t dmabuf_off, int remote_write,
		      struct xfer_rail_mr *out);
	void (*mr_dereg)(struct xfer_rail *r, struct xfer_rail_mr *mr);

	/* Post up to n writes to `peer`; returns how many were accepted (>= 0),
	 * or -errno if the first one failed for good. Fewer than n (or -EAGAIN)
	 * means "queue is full, try again after polling". */
	int (*post_write)(struct xfer_rail *r, uint32_t peer, const struct xfer_wr *wrs, int n);

	/* Reap up to n completions; returns the number written to out. */
	int (*poll)(struct xfer_rail *r, struct xfer_cqe *out, int n);

	/* Optional: a file descriptor that becomes readable when the rail has
	 * something to progress (completions, or bytes a manual-progress
	 * provider must drain), or -1. With it the idle worker sleeps in epoll
	 * instead of waking up to poll. */
	int (*wait_fd)(struct xfer_rail *r);
	/* Optional: 0 when it is safe to sleep on wait_fd now, -EAGAIN when
	 * there is work to poll first (fi_trywait). */
	int (*trywait)(struct xfer_rail *r);
	/* Optional: whether a NIC (or the provider) refuses a write outside the
	 * region an rkey names. Where not (shm, local; absent = not), the
	 * engine checks each piece against a same-host peer's region table. */
	bool (*checks_rkeys)(const char *provider);
};

/* Whether a backend's table has an entry (it may predate it). */
#define XFER_BACKEND_HAS(ops, field) \
	((ops)->size >= offsetof(struct xfer_backend_ops, field) + sizeof((ops)->field) && \
	 (ops)->field != NULL)

extern const struct xfer_backend_ops xfer_fabric_ops;

extern const struct xfer_backend_ops xfer_verbs_ops; /* built with rdma-core only */
extern const struct xfer_backend_ops xfer_local_ops; /* processes on one host (local.c) */

/* registry.c: the ops for a provider string ("verbs" -> ibverbs, "local" ->
 * local, the rest -> fabric), or NULL for a backend not built here. */
const struct xfer_backend_ops *xfer_backend_for(const char *provider);

#endif
