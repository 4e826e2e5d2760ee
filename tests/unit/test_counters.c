/* SPDX-License-Identifier: MIT */
/*
 * Immediate counters (lib/counters.c) driven directly, as the worker drives
 * them: a calloc'd engine, arrivals through xfer_counter_arrival, and
 * expectations through xfer_counter_add_expect / cancel. Checks FIFO order
 * of expectations, consumption, the flag word, callbacks, many distinct and
 * colliding immediates, a full table, cancel and shutdown.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "xt.h"

struct rec {
	int calls;
	int status;
	int order;          /* position among all callbacks */
};
static int seq;

static void on_done(void *ctx, int status)
{
	struct rec *r = ctx;

	r->calls++;
	r->status = status;
	r->order = ++seq;
}

static struct xfer_expect *expect(uint64_t count, struct rec *r, volatile uint64_t *flag,
				  uint64_t value, _Atomic uint32_t *fired)
{
	struct xfer_expect *x = calloc(1, sizeof(*x));

	x->count = count;
	x->n.size = sizeof(x->n);
	x->n.fn = r ? on_done : NULL;
	x->n.ctx = r;
	x->n.flag = flag;
	x->n.flag_value = value;
	x->fired = fired;
	return x;
}

static void arrive(xfer_engine *e, uint32_t imm, int n)
{
	for (int i = 0; i < n; i++)
		xfer_counter_arrival(e, imm);
}

static void test_basic(xfer_engine *e)
{
	/* unknown immediates count 0 and are not created by reading */
	XT_EQ(xfer_imm_count(e, 5), 0);
	XT_CHECK(xfer_counter_find(e, 5) == NULL, "reading created a counter");
	arrive(e, 5, 3);
	XT_EQ(xfer_imm_count(e, 5), 3);
	XT_EQ(xfer_imm_count(e, 5), 3);   /* polling consumes nothing */
	XT_EQ(xfer_imm_count(e, 6), 0);
	/* the extremes of the 32-bit space are distinct counters */
	arrive(e, 0, 1);
	arrive(e, UINT32_MAX, 2);
	XT_EQ(xfer_imm_count(e, 0), 1);
	XT_EQ(xfer_imm_count(e, UINT32_MAX), 2);
	XT_EQ(xfer_imm_count(e, 5), 3);
	XT_EQ(xfer_imm_count(NULL, 5), 0);
}

static void test_fifo(xfer_engine *e)
{
	const uint32_t imm = 1000;
	struct rec a = { 0 }, b = { 0 }, c = { 0 };
	volatile uint64_t flag = 0;
	_Atomic uint32_t fired = 0;

	seq = 0;
	xfer_counter_add_expect(e, imm, expect(2, &a, NULL, 0, NULL));
	xfer_counter_add_expect(e, imm, expect(3, &b, &flag, 0xfeedfacecafeull, NULL));
	xfer_counter_add_expect(e, imm, expect(1, &c, NULL, 0, &fired));
	XT_EQ(xfer_imm_count(e, imm), 0);
	arrive(e, imm, 1);
	XT_EQ(a.calls, 0);
	XT_EQ(xfer_imm_count(e, imm), 1);      /* not consumed yet */
	arrive(e, imm, 1);
	XT_EQ(a.calls, 1);
	XT_EQ(a.status, 0);
	XT_EQ(xfer_imm_count(e, imm), 0);      /* a consumed its 2 */
	XT_EQ(b.calls, 0);
	/* c needs only 1 but waits behind b: FIFO, no overtaking */
	arrive(e, imm, 2);
	XT_EQ(b.calls, 0);
	XT_EQ(c.calls, 0);
	XT_EQ(flag, 0);
	XT_EQ(xfer_imm_count(e, imm), 2);
	/* one more: b (3) and then c (1) are both met by 4 arrivals */
	arrive(e, imm, 2);
	XT_EQ(b.calls, 1);
	XT_EQ(b.status, 0);
	XT_CHECK(flag == 0xfeedfacecafeull, "flag holds %llx", (unsigned long long)flag);
	XT_EQ(c.calls, 1);
	XT_EQ(atomic_load(&fired), 1);
	XT_CHECK(a.order < b.order && b.order < c.order, "order %d %d %d", a.order, b.order, c.order);
	XT_EQ(xfer_imm_count(e, imm), 0);
	arrive(e, imm, 1);   /* nothing waits: it stays counted */
	XT_EQ(xfer_imm_count(e, imm), 1);
	XT_EQ(a.calls + b.calls + c.calls, 3);
}

static void test_already_met(xfer_engine *e)
{
	const uint32_t imm = 2000;
	struct rec a = { 0 }, b = { 0 };
	volatile uint64_t flag = 7;

	arrive(e, imm, 5);
	/* met at once when added */
	xfer_counter_add_expect(e, imm, expect(4, &a, &flag, 0, NULL));
	XT_EQ(a.calls, 1);
	XT_EQ(flag, 0);   /* flag_value 0 is written too */
	XT_EQ(xfer_imm_count(e, imm), 1);
	/* a flag-only expectation */
	volatile uint64_t f2 = 0;
	xfer_counter_add_expect(e, imm, expect(2, NULL, &f2, 42, NULL));
	XT_EQ(f2, 0);
	arrive(e, imm, 1);
	XT_EQ(f2, 42);
	XT_EQ(xfer_imm_count(e, imm), 0);
	XT_EQ(b.calls, 0);
}

static void test_cancel(xfer_engine *e)
{
	const uint32_t imm = 3000;
	struct rec a = { 0 }, b = { 0 }, c = { 0 };
	struct xfer_expect *xa = expect(2, &a, NULL, 0, NULL);
	struct xfer_expect *xb = expect(2, &b, NULL, 0, NULL);
	struct xfer_expect *xc = expect(1, &c, NULL, 0, NULL);
	struct xfer_expect stranger = { 0 };

	/* nothing to cancel for an immediate never seen */
	XT_CHECK(!xfer_counter_cancel_expect(e, 3001, &stranger), "cancel on an unknown imm");
	xfer_counter_add_expect(e, imm, xa);
	xfer_counter_add_expect(e, imm, xb);
	xfer_counter_add_expect(e, imm, xc);
	XT_CHECK(!xfer_counter_cancel_expect(e, imm, &stranger), "cancelled a stranger");
	/* cancel the middle, then the head, leaving c alone */
	XT_CHECK(xfer_counter_cancel_expect(e, imm, xb), "middle not cancelled");
	XT_CHECK(xfer_counter_cancel_expect(e, imm, xa), "head not cancelled");
	arrive(e, imm, 1);
	XT_EQ(a.calls, 0);
	XT_EQ(b.calls, 0);
	XT_EQ(c.calls, 1);
	XT_EQ(xfer_imm_count(e, imm), 0);
	/* the tail was fixed up: new expectations still queue and fire */
	struct rec d = { 0 }, f = { 0 };
	struct xfer_expect *xd = expect(1, &d, NULL, 0, NULL);
	xfer_counter_add_expect(e, imm, xd);
	xfer_counter_add_expect(e, imm, expect(1, &f, NULL, 0, NULL));
	XT_CHECK(xfer_counter_cancel_expect(e, imm, xd), "d not cancelled");
	struct rec g = { 0 };
	xfer_counter_add_expect(e, imm, expect(2, &g, NULL, 0, NULL));
	arrive(e, imm, 1);
	XT_EQ(d.calls, 0);
	XT_EQ(f.calls, 1);
	XT_EQ(g.calls, 0);
	arrive(e, imm, 2);
	XT_EQ(g.calls, 1);
	XT_EQ(xfer_imm_count(e, imm), 0);
}

/* Immediates that share a home slot, and many distinct ones. */
static void test_many(xfer_engine *e)
{
	const uint32_t n = 1500;
	uint32_t bad = 0;

	for (uint32_t k = 0; k < 40; k++)   /* k * 4096 all hash to slot 0 */
		arrive(e, 0x10000000u + k * XFER_COUNTER_SLOTS, (int)(k % 5) + 1);
	for (uint32_t k = 0; k < 40; k++)
		bad += xfer_imm_count(e, 0x10000000u + k * XFER_COUNTER_SLOTS) != k % 5 + 1;
	XT_EQ(bad, 0);
	for (uint32_t i = 0; i < n; i++)
		arrive(e, 0x20000000u + i * 7919u, (int)(i % 3) + 1);
	bad = 0;
	for (uint32_t i = 0; i < n; i++)
		bad += xfer_imm_count(e, 0x20000000u + i * 7919u) != i % 3 + 1;
	XT_EQ(bad, 0);
	/* expectations on colliding immediates fire independently */
	struct rec r[4] = { 0 };
	for (int k = 0; k < 4; k++)
		xfer_counter_add_expect(e, 0x30000000u + k * XFER_COUNTER_SLOTS,
					expect(2, &r[k], NULL, 0, NULL));
	arrive(e, 0x30000000u + 2 * XFER_COUNTER_SLOTS, 2);
	XT_EQ(r[0].calls + r[1].calls + r[3].calls, 0);
	XT_EQ(r[2].calls, 1);
	for (int k = 0; k < 4; k++)
		if (k != 2)
			arrive(e, 0x30000000u + k * XFER_COUNTER_SLOTS, 2);
	XT_EQ(r[0].calls + r[1].calls + r[2].calls + r[3].calls, 4);
}

/* A full table: existing counters keep counting, new immediates are not
 * counted, and expecting one is refused with -ENOSPC (not a hang). */
static void test_full(void)
{
	xfer_engine *e = calloc(1, sizeof(*e));
	uint32_t bad = 0;

	for (uint32_t i = 0; i < XFER_COUNTER_SLOTS; i++)
		arrive(e, i * 3u + 1, 1);
	for (uint32_t i = 0; i < XFER_COUNTER_SLOTS; i++)
		bad += xfer_imm_count(e, i * 3u + 1) != 1;
	XT_EQ(bad, 0);
	XT_CHECK(xfer_counter_get(e, 999999999u) == NULL, "insert into a full table");
	arrive(e, 999999999u, 1);
	XT_EQ(xfer_imm_count(e, 999999999u), 0);
	arrive(e, 1, 2);
	XT_EQ(xfer_imm_count(e, 1), 3);
	struct rec r = { 0 };
	volatile uint64_t flag = 0;
	xfer_counter_add_expect(e, 999999999u, expect(1, &r, &flag, 9, NULL));
	XT_EQ(r.calls, 1);
	XT_EQ(r.status, -ENOSPC);
	XT_EQ(flag, 0);   /* the flag is for success only */
	/* an expectation on an existing counter still works in a full table */
	struct rec s = { 0 };
	xfer_counter_add_expect(e, 4, expect(2, &s, NULL, 0, NULL));
	XT_EQ(s.calls, 0);
	arrive(e, 4, 1);
	XT_EQ(s.calls, 1);
	XT_EQ(s.status, 0);
	XT_EQ(xfer_imm_count(e, 4), 0);
	xfer_counters_shutdown(e);
	free(e);
}

static void test_shutdown(xfer_engine *e)
{
	struct rec a = { 0 }, b = { 0 };
	volatile uint64_t flag = 0;
	_Atomic uint32_t fired = 0;

	xfer_counter_add_expect(e, 4000, expect(5, &a, &flag, 1, NULL));
	xfer_counter_add_expect(e, 4000, expect(1, &b, NULL, 0, &fired));
	arrive(e, 4000, 1);
	XT_EQ(a.calls + b.calls, 0);
	xfer_counters_shutdown(e);
	XT_EQ(a.calls, 1);
	XT_EQ(a.status, -ECANCELED);
	XT_EQ(b.calls, 1);
	XT_EQ(b.status, -ECANCELED);
	XT_EQ(atomic_load(&fired), 2);   /* internal waiters see the failure */
	XT_EQ(flag, 0);
	/* shut down twice: nothing left to notify */
	xfer_counters_shutdown(e);
	XT_EQ(a.calls + b.calls, 2);
}

int main(void)
{
	xfer_engine *e = calloc(1, sizeof(*e));
	int f;

	xt_plan();
	f = xt_failures;
	test_basic(e);
	xt_result("counting and polling", xt_failures == f, NULL);
	f = xt_failures;
	test_fifo(e);
	xt_result("expectations in FIFO, consumption, flag, callbacks", xt_failures == f, NULL);
	f = xt_failures;
	test_already_met(e);
	xt_result("expectation already met; flag only", xt_failures == f, NULL);
	f = xt_failures;
	test_cancel(e);
	xt_result("cancel", xt_failures == f, NULL);
	f = xt_failures;
	test_many(e);
	xt_result("many and colliding immediates", xt_failures == f, NULL);
	f = xt_failures;
	test_shutdown(e);
	xt_result("shutdown cancels expectations", xt_failures == f, NULL);
	f = xt_failures;
	test_full();
	xt_result("full table", xt_failures == f, NULL);
	xfer_counters_shutdown(e);
	free(e);
	return xt_done();
}
