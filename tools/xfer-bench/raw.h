/* SPDX-License-Identifier: MIT */
/*
 * Plain libfabric, no xfer layer: what xfer-bench --raw measures against.
 * One RDM endpoint per rail, opened with the same hints as xfer's fabric
 * backend, driven by one thread that posts and polls itself.
 */
#ifndef XFER_TOOLS_RAWFAB_H
#define XFER_TOOLS_RAWFAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAW_MAX_RAILS 8
#define RAW_MAX_PEERS 16

struct raw_rail;

struct rawfab {
	int nrails;
	struct raw_rail *r[RAW_MAX_RAILS];
	int npeers;
};

/* A registered buffer: per rail, what peers need to write into it. */
struct raw_mr {
	void *addr;
	size_t len;
	void *mr[RAW_MAX_RAILS];
	void *desc[RAW_MAX_RAILS];
	uint64_t key[RAW_MAX_RAILS];
	uint64_t raddr[RAW_MAX_RAILS];   /* address of byte 0 as peers name it */
};

/* A peer's buffer, as received. */
struct raw_rmr {
	uint64_t len;
	uint64_t key[RAW_MAX_RAILS];
	uint64_t raddr[RAW_MAX_RAILS];
};

int raw_open(struct rawfab *f, const char *prov, int nrails, const char *node);
void raw_close(struct rawfab *f);
/* Serialised addresses of all rails. */
int raw_addr(struct rawfab *f, void *buf, size_t *len);
int raw_add_peer(struct rawfab *f, const void *buf, size_t len);  /* returns peer index */
int raw_reg(struct rawfab *f, void *addr, size_t len, struct raw_mr *mr);
void raw_dereg(struct rawfab *f, struct raw_mr *mr);
void raw_rmr_of(const struct rawfab *f, const struct raw_mr *mr, struct raw_rmr *out);

/* Post one write (data != 0 carries it as an immediate); -EAGAIN when full. */
int raw_write(struct rawfab *f, int rail, int peer, const struct raw_mr *src, uint64_t soff,
	      const struct raw_rmr *dst, uint64_t doff, uint64_t len, uint32_t data);
/* Poll every rail: returns local completions; arrivals counted in *imm and
 * their last value in *last_data. Negative on an error completion. */
int raw_poll(struct rawfab *f, uint64_t *imm, uint32_t *last_data);

#endif
