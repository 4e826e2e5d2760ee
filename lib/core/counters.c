/* SPDX-License-Identifier: MIT */
/*
 * Immediate counters. The receiver counts arrivals per 32-bit immediate in
 * open-addressing tables: the engine's first (XFER_COUNTER_SLOTS), then a
 * chain of tables each twice the size of the one before, added when the
 * newest is 3/4 full, so no immediate is ever refused a counter while memory
 * lasts. Only the worker inserts and counts, any thread may read without a
 * lock (a slot's key is published after its counts are zeroed, a table
 * after it is zeroed); a counter never moves, and tables are freed only
 * with the engine. Out of memory, an arrival is lost loudly: counted in
 * counters_lost, -ENOMEM on the stats page's last_error, and expectations
 * on immediates without a counter fail with -ENOMEM from then on.
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

void *(*xfer_counters_calloc)(size_t n, size_t size) = calloc;

/* fmix32 (a full avalanche): immediates that differ only in high bits
 * (layer << 16 | page, say) still spread over every table size. */
static uint32_t hash_of(uint32_t imm)
{
	uint32_t h = imm;

	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* One table of the chain: the engine's embedded first, or a chained one;
 * link is where the table after it is (or would be) linked. */
struct tab {
	struct xfer_counter *c;
	uint32_t slots;
	uint32_t *used;
	struct xfer_ctable *_Atomic *link;
};

static void tab_first(xfer_engine *e, struct tab *t)
{
	t->c = e->counters;
	t->slots = XFER_COUNTER_SLOTS;
	t->used = &e->counters_used;
	t->link = &e->counters_more;
}

static void tab_set(struct tab *t, struct xfer_ctable *n)
{
	t->c = n->c;
	t->slots = n->slots;
	t->used = &n->used;
	t->link = &n->next;
}

static bool tab_next(struct tab *t)
{
	struct xfer_ctable *n = atomic_load_explicit(t->link, memory_order_acquire);

	if (!n)
		return false;
	tab_set(t, n);
	return true;
}

/* imm's counter in one table, or (with empty) the empty slot where it would go. */
static struct xfer_counter *tab_lookup(const struct tab *t, uint64_t key, uint32_t h,
				       struct xfer_counter **empty)
{
	uint32_t mask = t->slots - 1;

	*empty = NULL;
	for (uint32_t i = 0, s = h & mask; i < t->slots; i++, s = (s + 1) & mask) {
		uint64_t k = atomic_load_explicit(&t->c[s].key, memory_order_acquire);

		if (k == key)
			return &t->c[s];
		if (k == 0) {
			*empty = &t->c[s];
			return NULL;
		}
	}
	return NULL;
}

struct xfer_counter *xfer_counter_find(xfer_engine *e, uint32_t imm)
{
	uint64_t key = (uint64_t)imm + 1;
	uint32_t h = hash_of(imm);
	struct xfer_counter *c, *empty;
	struct tab t;

	tab_first(e, &t);
	do {
		c = tab_lookup(&t, key, h, &empty);
		if (c)
			return c;
	} while (tab_next(&t));
	return NULL;
}

/* Chain a table twice the size of the newest (t); NULL without memory. */
static struct xfer_ctable *tab_grow(const struct tab *t)
{
	uint32_t slots = t->slots * 2;
	struct xfer_ctable *n;

	if (slots < t->slots)   /* 2^31 slots already: 2^32 immediates fit */
		return NULL;
	n = xfer_counters_calloc(1, sizeof(*n) + (size_t)slots * sizeof(n->c[0]));
	if (!n)
		return NULL;
	n->slots = slots;
	/* published whole: zeroed keys and counts before the link */
	atomic_store_explicit(t->link, n, memory_order_release);
	return n;
}

struct xfer_counter *xfer_counter_get(xfer_engine *e, uint32_t imm)
{
	uint64_t key = (uint64_t)imm + 1;
	uint32_t h = hash_of(imm);
	struct xfer_counter *c, *empty = NULL;
	struct tab t;

	tab_first(e, &t);
	for (;;) {
		c = tab_lookup(&t, key, h, &empty);
		if (c)
			return c;
		if (!tab_next(&t))
			break;
	}
	/* New: into the newest table (t) while it is at most 3/4 full, which
	 * keeps probe sequences short; else into a new one. */
	if (!empty || *t.used + 1 > t.slots / 4 * 3) {
		struct xfer_ctable *n = tab_grow(&t);

		if (!n)
			return NULL;
		tab_set(&t, n);
		empty = &n->c[h & (n->slots - 1)];
	}
	c = empty;
	(*t.used)++;
	atomic_store_explicit(&c->arrived, 0, memory_order_relaxed);
	atomic_store_explicit(&c->consumed, 0, memory_order_relaxed);
	c->head = c->tail = NULL;
	atomic_store_explicit(&c->key, key, memory_order_release);
	return c;
}

/* An arrival no table could take: counted as lost, on the stats page. */
static void arrival_lost(xfer_engine *e)
{
	atomic_fetch_add_explicit(&e->counters_lost, 1, memory_order_relaxed);
	if (e->stats)
		__atomic_store_n(&e->stats->last_error, -ENOMEM, __ATOMIC_RELAXED);
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

	if (!c) {
		arrival_lost(e);
		return;
	}
	atomic_fetch_add_explicit(&c->arrived, 1, memory_order_release);
	if (c->head)
		counter_check(c);
}

void xfer_counter_add_expect(xfer_engine *e, uint32_t imm, struct xfer_expect *x)
{
	struct xfer_counter *c = xfer_counter_find(e, imm);

	/* An arrival that could not be counted had no counter (only new
	 * immediates need a slot): once one was lost, an expectation on an
	 * immediate without a counter may wait for it forever. Say so. */
	if (!c && atomic_load_explicit(&e->counters_lost, memory_order_relaxed)) {
		notify(x, -ENOMEM);
		return;
	}
	if (!c)
		c = xfer_counter_get(e, imm);
	if (!c) {
		notify(x, -ENOMEM);
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
	struct tab t;

	tab_first(e, &t);
	do {
		for (uint32_t s = 0; s < t.slots; s++) {
			struct xfer_counter *c = &t.c[s];

			while (c->head) {
				struct xfer_expect *x = c->head;

				c->head = x->next;
				notify(x, -ECANCELED);
			}
			c->tail = NULL;
		}
	} while (tab_next(&t));
}

void xfer_counters_free(xfer_engine *e)
{
	struct xfer_ctable *n = atomic_load(&e->counters_more);

	atomic_store(&e->counters_more, NULL);
	while (n) {
		struct xfer_ctable *next = atomic_load(&n->next);

		free(n);
		n = next;
	}
	e->counters_used = 0;
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
