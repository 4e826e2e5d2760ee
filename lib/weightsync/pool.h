/* SPDX-License-Identifier: MIT */
/*
 * A fixed set of threads that split one job into parts: the executor's
 * transform stage (quantising or copying a chunk) on more than one core.
 * The calling thread works too, so a pool of N runs N parts at once.
 */
#ifndef XFER_WS_POOL_H
#define XFER_WS_POOL_H

#include <stdint.h>

struct ws_pool;

/* threads >= 1: starts threads - 1 helpers. -ENOMEM, or a pthread error. */
int ws_pool_create(uint32_t threads, struct ws_pool **out);
void ws_pool_destroy(struct ws_pool *p);
uint32_t ws_pool_threads(const struct ws_pool *p);

/* fn(ctx, i) for every i in [0, nparts), by the caller and the helpers;
 * returns when all parts are done. One job at a time (one caller). */
void ws_pool_run(struct ws_pool *p, void (*fn)(void *ctx, uint32_t part), void *ctx,
		 uint32_t nparts);

#endif
