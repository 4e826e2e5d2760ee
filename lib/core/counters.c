/* SPDX-License-Identifier: MIT */
/*
 * Immediate counters. The receiver counts arrivals per 32-bit immediate in
 * an open-addressing table: only the worker inserts and counts, any thread
 * may read (a slot's key is published after its counts are zeroed).
 * Expectations ("call me / set this flag when N arrivals of imm are there")
 * queue per counter in FIFO order and consume what they wait for.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "struct_copy.h"

_Static_assert(XFER_NOTIFY_SIZE_VER0 == offsetof(struct xfer_notify, flag),
	       "xfer_notify's floor ends with ctx");

static uint32_t slot_of(uint32_t imm)
{
	return (imm * 2654435761u) % XFER_COUNTER_SLOTS;
}

struct xfer_counter *xfer_counter_find(xfer_engine *e, uint32_t imm)
{
	uint64_t key = (uint64_t)imm + 1;

	for (uint32_t i = 0, s = slot_of(imm); i < XFER_COUNTER_SLOTS;
	     i++, s = (s + 1) % XFER_COUNTER_SLOTS) {
		uint64_t k = atomic_load_explicit(&e->counters[s].key, memory_order_acquire);

		if (k == key)
			return &e->counters[s];
		if (k == 0)
			return NULL;
	}
	return NULL;
}

struct xfer_counter *xfer_counter_get(xfer_engine *e, uint32_t imm)
{
	uint64_t key = (uint64_t)imm + 1;

	for (uint32_t i = 0, s = slot_of(imm); i < XFER_COUNTER_SLOTS;
	     i++, s = (s + 1) % XFER_COUNTER_SLOTS) {
		struct xfer_counter *c = &e->counters[s];
		uint64_t k = atomic_load_explicit(&c->key, memory_order_relaxed);

		if (k == key)
			return c;
		if (k == 0) {
			atomic_store_explicit(&c->arrived, 0, memory_order_relaxed);
			atomic_store_explicit(&c->consumed, 0, memory_order_relaxed);
			c->head = c->tail = NULL;
			atomic_store_explicit(&c->key, key, memory_order_release);
			return c;
		}
	}
	return NULL;   /* table full */
}

static void notify(struct xfer_expect *x, int status)
{
	if (!status && x->n.flag)
		__atomic_store_n(x->n.flag, x->n.flag_value, __ATOMIC_RELEASE);
	if (x->n.fn)
		x->n.fn(x->n.ctx, status);
	if (x->fired) {
		atomic_store_explicit(x->fired, status ? 2 : 1, memory_order_release);
		xfer_futex_wake(x->fired);
	}
	free(x);
}

/* Fire the expectations at the head of c's queue that are now met. */
static void counter_check(struct xfer_counter *c)
{
	while (c->head) {
		struct xfer_expect *x = c->head;
		uint64_t have = atomic_load_explicit(&c->arrived, memory_order_relaxed) -
				atomic_load_explicit(&c->consumed, memory_order_relaxed);

		if (have < x->count)
			return;
		atomic_fetch_add_explicit(&c->consumed, x->count, memory_order_release);
		c->head = x->next;
		if (!c->head)
			c->tail = NULL;
		notify(x, 0);
	}
}

void xfer_counter_arrival(xfer_engine *e, uint32_t imm)
{
	struct xfer_counter *c = xfer_counter_get(e, imm);

	if (!c)
		return;
	atomic_fetch_add_explicit(&c->arrived, 1, memory_order_release);
	if (c->head)
		counter_check(c);
}

void xfer_counter_add_expect(xfer_engine *e, uint32_t imm, struct xfer_expect *x)
{
	struct xfer_counter *c = xfer_counter_get(e, imm);

	if (!c) {
		notify(x, -ENOSPC);
		return;
	}
	x->next = NULL;
	if (c->tail)
		c->tail->next = x;
	else
		c->head = x;
	c->tail = x;
	counter_check(c);
}

bool xfer_counter_cancel_expect(xfer_engine *e, uint32_t imm, struct xfer_expect *x)
{
	struct xfer_counter *c = xfer_counter_find(e, imm);
	struct xfer_expect *prev = NULL;

	if (!c)
		return false;
	for (struct xfer_expect *it = c->head; it; prev = it, it = it->next) {
		if (it != x)
			continue;
		if (prev)
			prev->next = it->next;
		else
			c->head = it->next;
		if (c->tail == it)
			c->tail = prev;
		free(it);
		return true;
	}
	return false;
}

void xfer_counters_shutdown(xfer_engine *e)
{
	for (uint32_t s = 0; s < XFER_COUNTER_SLOTS; s++) {
		struct xfer_counter *c = &e->counters[s];

		while (c->head) {
			struct xfer_expect *x = c->head;

			c->head = x->next;
			notify(x, -ECANCELED);
		}
		c->tail = NULL;
	}
}

XFER_EXPORT uint64_t xfer_imm_count(xfer_engine *e, uint32_t imm)
{
	struct xfer_counter *c = e ? xfer_counter_find(e, imm) : NULL;

	if (!c)
		return 0;
	/* consumed first: a concurrent consume can only make the answer low */
	uint64_t consumed = atomic_load_explicit(&c->consumed, memory_order_acquire);

	return atomic_load_explicit(&c->arrived, memory_order_acquire) - consumed;
}

static int expect_submit(xfer_engine *e, uint32_t imm, struct xfer_expect *x)
{
	struct xfer_cmd *c;

	if (xfer_worker_self == e) {
		/* re-armed from a callback (ping-pong, pipelines): no command */
		xfer_counter_add_expect(e, imm, x);
		return 0;
	}
	c = calloc(1, sizeof(*c));

	if (!c) {
		free(x);
		return -ENOMEM;
	}
	c->kind = CMD_EXPECT;
	c->async = true;
	c->u.expect.imm = imm;
	c->u.expect.x = x;
	return xfer_cmd_run(e, c);
}

XFER_EXPORT int xfer_imm_expect(xfer_engine *e, uint32_t imm, uint64_t count,
				const struct xfer_notify *un)
{
	const struct xfer_notify *n;
	struct xfer_notify k = { .size = sizeof(k) };   /* flag, flag_value: none */
	struct xfer_expect *x;
	int ret;

	if (!e || !un)
		return -EINVAL;
	ret = xfer_struct_copy_in(&k, sizeof(k), un, XFER_NOTIFY_SIZE_VER0);
	if (ret)
		return ret;
	n = &k;
	if (n->flags || !count || (!n->fn && !n->flag))
		return -EINVAL;
	if (atomic_load(&e->stopping))
		return -ECANCELED;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->count = count;
	x->n = *n;
	return expect_submit(e, imm, x);
}

XFER_EXPORT int xfer_imm_wait(xfer_engine *e, uint32_t imm, uint64_t count, int timeout_ms)
{
	_Atomic uint32_t fired = 0;
	struct xfer_expect *x;
	uint64_t deadline = 0;
	int ret;

	if (!e || !count)
		return -EINVAL;
	if (xfer_worker_self == e)
		return -EDEADLK;   /* the worker would wait for itself */
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->count = count;
	x->fired = &fired;
	ret = expect_submit(e, imm, x);
	if (ret)
		return ret;
	if (timeout_ms >= 0)
		deadline = xfer_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (!atomic_load_explicit(&fired, memory_order_acquire)) {
		int64_t left = -1;

		if (timeout_ms >= 0) {
			uint64_t now = xfer_now_ns();

			if (now >= deadline) {
				struct xfer_cmd c = { .kind = CMD_CANCEL_EXPECT };

				c.u.expect.imm = imm;
				c.u.expect.x = x;
				if (xfer_cmd_run(e, &c) == 0)
					return -ETIMEDOUT;   /* removed: nothing consumed */
				/* it fired meanwhile: wait for the notification */
				while (!atomic_load_explicit(&fired, memory_order_acquire))
					xfer_futex_wait(&fired, 0, 1000000);
				break;
			}
			left = (int64_t)(deadline - now);
		}
		xfer_futex_wait(&fired, 0, left);
	}
	return atomic_load(&fired) == 1 ? 0 : -ECANCELED;
}
