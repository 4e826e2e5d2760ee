/* SPDX-License-Identifier: MIT */
/*
 * The weight-sync executor: runs a schedule (xfer_weightsync.h) with the
 * transfer engine (xfer.h).
 *
 * A trainer rank, each step, (1) sends its gathers, (2) copies the rows of
 * the chunks it owns into a registered staging ring and transforms them
 * (copy, or bf16 -> fp8 e4m3 with block scales; a large chunk split by
 * rows over attr.threads threads) -- except chunks already
 * contiguous in registered memory that need no transform, which are written
 * from where they lie --, (3) posts each chunk's RDMA writes in the
 * schedule's issue order with a bounded number in flight, releasing staging
 * as writes complete, under a watermark of staging bytes, and (4) sends a
 * barrier immediate to every inference rank. Chunks that need no gather go
 * first; gathered ones follow as soon as the gathers have landed.
 *
 * Set up once (create), run once per training step (step): staging and
 * pack buffers are allocated, registered and touched at create. Steps of
 * different ranks must not overlap: the caller starts a step on every rank
 * only after the previous one ended on all of them (its step barrier), since
 * a step's gathers overwrite gather buffers the previous step read.
 *
 * A gathered chunk of full-width rows that needs no transform is written
 * in up to three pieces from where its rows lie (gathered rows from the
 * gather buffer, the owner's own from its shard), so the owner does not
 * copy its own rows into the gather buffer.
 *
 * Receivers do nothing but wait: every data write (each piece) carries an
 * immediate, so an inference rank knows from the schedule exactly how many
 * arrivals to expect (xfer_ws_exec_expected), plus one barrier per trainer.
 */
#ifndef XFER_WS_EXEC_H
#define XFER_WS_EXEC_H

#include <stdint.h>

#include "xfer.h"
#include "xfer_weightsync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Immediates used by the executor. */
#define XFER_WS_IMM_DATA    0x57530001u  /* a write into an inference buffer landed */
#define XFER_WS_IMM_BARRIER 0x57530002u  /* a trainer finished */
#define XFER_WS_IMM_GATHER  0x57530003u  /* a gather into a trainer's gather buffer landed */

struct xfer_ws_exec_attr {
	uint32_t size;
	uint32_t window;          /* writes in flight; 0 = 64 */
	uint64_t watermark;       /* staging bytes in flight; 0 = 256 MiB (at least the largest chunk) */
	int32_t timeout_ms;       /* waiting for peers (gathers, completions); 0 = 30000 */
	uint32_t flags;           /* XFER_WS_EXEC_*; others -EINVAL */
	uint32_t threads;         /* threads that transform (copy, quantise) staged
				   * chunks, the executor's own included; 0 = 1 */
};
/* size and window; the rest default to 0 (the defaults noted). */
#define XFER_WS_EXEC_ATTR_SIZE_VER0 8u

/* Stage every chunk, also those that could be written from where they lie:
 * for trainers that change their weights while a step's writes are out. */
#define XFER_WS_EXEC_STAGE_ALL 1u

/* What a trainer rank brings. All arrays are indexed as in the schedule. */
struct xfer_ws_trainer_io {
	uint32_t size;
	uint32_t rank;
	xfer_engine *e;
	/* Its shards: shard[param] points at rows [xfer_ws_shard_rows()] of
	 * param, row-major in the param's dtype (NULL where it holds none), all
	 * inside the registered region src_mr. */
	const void *const *shard;
	xfer_mr *src_mr;
	/* Its gather buffer (trainers[rank].gather_bytes, REMOTE_WRITE), or NULL. */
	void *gather_buf;
	xfer_mr *gather_mr;
	xfer_rmr *const *infer_buf;      /* [ninfer] each inference rank's weight buffer */
	xfer_rmr *const *trainer_gather; /* [ntrainers] each trainer's gather buffer (or NULL) */
	const uint32_t *infer_peer;      /* [ninfer] peer index of each inference engine */
};
#define XFER_WS_TRAINER_IO_SIZE_VER0 72u      /* all of it: no defaults */

struct xfer_ws_exec_stats {
	double seconds;           /* from the first gather to the last barrier */
	uint64_t bytes_written;   /* data + scales */
	uint64_t bytes_gathered;
	uint64_t writes;
	uint64_t peak_staging;
	uint64_t bytes_staged;    /* copied or quantised into staging (the rest went direct) */
	/* where the trainer's time went (seconds, wall clock of its thread) */
	double gather_s;          /* from the step's start until all gathers owed to it landed */
	double prepare_s;         /* copying and transforming chunks into staging */
	double wait_s;            /* blocked: window or staging full, gathers, last writes, barrier */
};

typedef struct xfer_ws_trainer_exec xfer_ws_trainer_exec;

/* A trainer rank's executor for this schedule: io's pointers and handles
 * must stay valid until destroy. -EINVAL for bad arguments or flags. */
int xfer_ws_trainer_exec_create(const struct xfer_ws_schedule *s,
				const struct xfer_ws_trainer_io *io,
				const struct xfer_ws_exec_attr *attr, xfer_ws_trainer_exec **x);
/* One step: returns once every write of this rank completed and its
 * barrier went out; an error (-ETIMEDOUT, a peer's failure, -ENOSPC for a
 * watermark no chunk fits under) leaves nothing in flight. */
int xfer_ws_trainer_exec_step(xfer_ws_trainer_exec *x, struct xfer_ws_exec_stats *st);
void xfer_ws_trainer_exec_destroy(xfer_ws_trainer_exec *x);

/* create + one step + destroy. */
int xfer_ws_exec_trainer(const struct xfer_ws_schedule *s, const struct xfer_ws_trainer_io *io,
			 const struct xfer_ws_exec_attr *attr, struct xfer_ws_exec_stats *st);

/* Arrivals an inference rank waits for: data writes (pieces) and scale writes. */
uint64_t xfer_ws_exec_expected(const struct xfer_ws_schedule *s, uint32_t infer_rank);

/* Inference rank: wait until every write of the schedule into this rank and
 * every trainer's barrier have arrived; -ETIMEDOUT if not within timeout_ms. */
int xfer_ws_exec_receive(const struct xfer_ws_schedule *s, xfer_engine *e, uint32_t infer_rank,
			 int timeout_ms);

/* The bytes a chunk produces from its source rows (what its writes carry):
 * out (out_bytes) and, for fp8, scales (scale_bytes). src points at the
 * chunk's first source row and first column, with a row stride of ld
 * elements. Used by the executor and by receivers that verify. */
void xfer_ws_chunk_transform(const struct xfer_ws_schedule *s, const struct xfer_ws_chunk *c,
			     const void *src, uint64_t ld, void *out, void *scales);

#ifdef __cplusplus
}
#endif
#endif
