/* SPDX-License-Identifier: MIT */
/*
 * The executor's transform threads (pool.h). A job is a few parts of a
 * chunk that takes a millisecond or more to transform, so a mutex and two
 * condition variables cost nothing that shows, and keep the hand-over
 * plain: a helper claims a part only under the lock, from the job that is
 * current, and the caller starts no new job before every part of the last
 * one finished.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "pool.h"

struct ws_pool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	pthread_t *helpers;
	uint32_t nhelpers;
	uint64_t gen;              /* bumped for each job */
	void (*fn)(void *, uint32_t);
	void *ctx;
	uint32_t nparts, next, pending;
	bool stop;
};

/* Under the lock: run parts of the current job until none is left. */
static void take_parts(struct ws_pool *p)
{
	while (p->next < p->nparts) {
		uint32_t i = p->next++;

		pthread_mutex_unlock(&p->lock);
		p->fn(p->ctx, i);
		pthread_mutex_lock(&p->lock);
		if (--p->pending == 0)
			pthread_cond_signal(&p->done);
	}
}

static void *helper(void *arg)
{
	struct ws_pool *p = arg;
	uint64_t seen = 0;

	pthread_setname_np(pthread_self(), "xfer-ws-xform");
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->gen == seen)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stop)
			break;
		seen = p->gen;
		take_parts(p);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int ws_pool_create(uint32_t threads, struct ws_pool **out)
{
	struct ws_pool *p;
	int ret = 0;

	*out = NULL;
	if (!threads)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	if (threads > 1) {
		p->helpers = calloc(threads - 1, sizeof(*p->helpers));
		if (!p->helpers) {
			ws_pool_destroy(p);
			return -ENOMEM;
		}
	}
	for (uint32_t i = 0; i + 1 < threads; i++) {
		ret = pthread_create(&p->helpers[i], NULL, helper, p);
		if (ret) {
			ws_pool_destroy(p);
			return -ret;
		}
		p->nhelpers++;
	}
	*out = p;
	return 0;
}

void ws_pool_destroy(struct ws_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (uint32_t i = 0; i < p->nhelpers; i++)
		pthread_join(p->helpers[i], NULL);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p->helpers);
	free(p);
}

uint32_t ws_pool_threads(const struct ws_pool *p)
{
	return p->nhelpers + 1;
}

void ws_pool_run(struct ws_pool *p, void (*fn)(void *ctx, uint32_t part), void *ctx,
		 uint32_t nparts)
{
	if (!p->nhelpers || nparts < 2) {
		for (uint32_t i = 0; i < nparts; i++)
			fn(ctx, i);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->ctx = ctx;
	p->nparts = nparts;
	p->next = 0;
	p->pending = nparts;
	p->gen++;
	pthread_cond_broadcast(&p->work);
	take_parts(p);
	while (p->pending)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}
