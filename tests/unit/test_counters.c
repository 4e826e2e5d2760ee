/* SPDX-License-Identifier: MIT */
/*
 * Immediate counters (lib/core/counters.c) driven directly, as the worker drives
 * them: a calloc'd engine, arrivals through xfer_counter_arrival, and
 * expectations through xfer_counter_add_expect / cancel. Checks FIFO order
 * of expectations, consumption, the flag word, callbacks, many distinct and
 * colliding immediates, tables that grow past the first (and an allocation
 * that fails: loud, not silent), cancel and shutdown.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

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

/* A calloc'd engine, as the worker's counters see it. */
FIXTURE(counters) {
	xfer_engine *e;
};

FIXTURE_SETUP(counters)
{
	self->e = calloc(1, sizeof(*self->e));
	ASSERT_NE(NULL, self->e);
}

FIXTURE_TEARDOWN(counters)
{
	xfer_counters_shutdown(self->e);
	xfer_counters_free(self->e);
	free(self->e);
}

/* Counting and polling. */
TEST_F(counters, counting_and_polling)
{
	xfer_engine *e = self->e;

	/* unknown immediates count 0 and are not created by reading */
	EXPECT_EQ(0, xfer_imm_count(e, 5));
	EXPECT_TRUE(xfer_counter_find(e, 5) == NULL) TH_LOG("reading created a counter");
	arrive(e, 5, 3);
	EXPECT_EQ(3, xfer_imm_count(e, 5));
	EXPECT_EQ(3, xfer_imm_count(e, 5));   /* polling consumes nothing */
	EXPECT_EQ(0, xfer_imm_count(e, 6));
	/* the extremes of the 32-bit space are distinct counters */
	arrive(e, 0, 1);
	arrive(e, UINT32_MAX, 2);
	EXPECT_EQ(1, xfer_imm_count(e, 0));
	EXPECT_EQ(2, xfer_imm_count(e, UINT32_MAX));
	EXPECT_EQ(3, xfer_imm_count(e, 5));
	EXPECT_EQ(0, xfer_imm_count(NULL, 5));
}

/* Expectations in FIFO order, consumption, the flag word, callbacks. */
TEST_F(counters, expectations_fifo_consume_flag_callback)
{
	xfer_engine *e = self->e;
	const uint32_t imm = 1000;
	struct rec a = { 0 }, b = { 0 }, c = { 0 };
	volatile uint64_t flag = 0;
	_Atomic uint32_t fired = 0;

	seq = 0;
	xfer_counter_add_expect(e, imm, expect(2, &a, NULL, 0, NULL));
	xfer_counter_add_expect(e, imm, expect(3, &b, &flag, 0xfeedfacecafeull, NULL));
	xfer_counter_add_expect(e, imm, expect(1, &c, NULL, 0, &fired));
	EXPECT_EQ(0, xfer_imm_count(e, imm));
	arrive(e, imm, 1);
	EXPECT_EQ(0, a.calls);
	EXPECT_EQ(1, xfer_imm_count(e, imm));      /* not consumed yet */
	arrive(e, imm, 1);
	EXPECT_EQ(1, a.calls);
	EXPECT_EQ(0, a.status);
	EXPECT_EQ(0, xfer_imm_count(e, imm));      /* a consumed its 2 */
	EXPECT_EQ(0, b.calls);
	/* c needs only 1 but waits behind b: FIFO, no overtaking */
	arrive(e, imm, 2);
	EXPECT_EQ(0, b.calls);
	EXPECT_EQ(0, c.calls);
	EXPECT_EQ(0, flag);
	EXPECT_EQ(2, xfer_imm_count(e, imm));
	/* one more: b (3) and then c (1) are both met by 4 arrivals */
	arrive(e, imm, 2);
	EXPECT_EQ(1, b.calls);
	EXPECT_EQ(0, b.status);
	EXPECT_TRUE(flag == 0xfeedfacecafeull) TH_LOG("flag holds %llx", (unsigned long long)flag);
	EXPECT_EQ(1, c.calls);
	EXPECT_EQ(1, atomic_load(&fired));
	EXPECT_TRUE(a.order < b.order && b.order < c.order) TH_LOG("order %d %d %d", a.order, b.order, c.order);
	EXPECT_EQ(0, xfer_imm_count(e, imm));
	arrive(e, imm, 1);   /* nothing waits: it stays counted */
	EXPECT_EQ(1, xfer_imm_count(e, imm));
	EXPECT_EQ(3, a.calls + b.calls + c.calls);
}

/* An expectation already met when added; a flag-only expectation. */
TEST_F(counters, expectation_already_met_and_flag_only)
{
	xfer_engine *e = self->e;
	const uint32_t imm = 2000;
	struct rec a = { 0 }, b = { 0 };
	volatile uint64_t flag = 7;

	arrive(e, imm, 5);
	/* met at once when added */
	xfer_counter_add_expect(e, imm, expect(4, &a, &flag, 0, NULL));
	EXPECT_EQ(1, a.calls);
	EXPECT_EQ(0, flag);   /* flag_value 0 is written too */
	EXPECT_EQ(1, xfer_imm_count(e, imm));
	/* a flag-only expectation */
	volatile uint64_t f2 = 0;
	xfer_counter_add_expect(e, imm, expect(2, NULL, &f2, 42, NULL));
	EXPECT_EQ(0, f2);
	arrive(e, imm, 1);
	EXPECT_EQ(42, f2);
	EXPECT_EQ(0, xfer_imm_count(e, imm));
	EXPECT_EQ(0, b.calls);
}

TEST_F(counters, cancel)
{
	xfer_engine *e = self->e;
	const uint32_t imm = 3000;
	struct rec a = { 0 }, b = { 0 }, c = { 0 };
	struct xfer_expect *xa = expect(2, &a, NULL, 0, NULL);
	struct xfer_expect *xb = expect(2, &b, NULL, 0, NULL);
	struct xfer_expect *xc = expect(1, &c, NULL, 0, NULL);
	struct xfer_expect stranger = { 0 };

	/* nothing to cancel for an immediate never seen */
	EXPECT_TRUE(!xfer_counter_cancel_expect(e, 3001, &stranger)) TH_LOG("cancel on an unknown imm");
	xfer_counter_add_expect(e, imm, xa);
	xfer_counter_add_expect(e, imm, xb);
	xfer_counter_add_expect(e, imm, xc);
	EXPECT_TRUE(!xfer_counter_cancel_expect(e, imm, &stranger)) TH_LOG("cancelled a stranger");
	/* cancel the middle, then the head, leaving c alone */
	EXPECT_TRUE(xfer_counter_cancel_expect(e, imm, xb)) TH_LOG("middle not cancelled");
	EXPECT_TRUE(xfer_counter_cancel_expect(e, imm, xa)) TH_LOG("head not cancelled");
	arrive(e, imm, 1);
	EXPECT_EQ(0, a.calls);
	EXPECT_EQ(0, b.calls);
	EXPECT_EQ(1, c.calls);
	EXPECT_EQ(0, xfer_imm_count(e, imm));
	/* the tail was fixed up: new expectations still queue and fire */
	struct rec d = { 0 }, f = { 0 };
	struct xfer_expect *xd = expect(1, &d, NULL, 0, NULL);
	xfer_counter_add_expect(e, imm, xd);
	xfer_counter_add_expect(e, imm, expect(1, &f, NULL, 0, NULL));
	EXPECT_TRUE(xfer_counter_cancel_expect(e, imm, xd)) TH_LOG("d not cancelled");
	struct rec g = { 0 };
	xfer_counter_add_expect(e, imm, expect(2, &g, NULL, 0, NULL));
	arrive(e, imm, 1);
	EXPECT_EQ(0, d.calls);
	EXPECT_EQ(1, f.calls);
	EXPECT_EQ(0, g.calls);
	arrive(e, imm, 2);
	EXPECT_EQ(1, g.calls);
	EXPECT_EQ(0, xfer_imm_count(e, imm));
}

/* Immediates that share a home slot, and many distinct ones. */
TEST_F(counters, many_and_colliding_immediates)
{
	xfer_engine *e = self->e;
	const uint32_t n = 1500;
	uint32_t bad = 0;

	for (uint32_t k = 0; k < 40; k++)   /* equal low bits: one slot under a weak hash */
		arrive(e, 0x10000000u + k * XFER_COUNTER_SLOTS, (int)(k % 5) + 1);
	for (uint32_t k = 0; k < 40; k++)
		bad += xfer_imm_count(e, 0x10000000u + k * XFER_COUNTER_SLOTS) != k % 5 + 1;
	EXPECT_EQ(0, bad);
	for (uint32_t i = 0; i < n; i++)
		arrive(e, 0x20000000u + i * 7919u, (int)(i % 3) + 1);
	bad = 0;
	for (uint32_t i = 0; i < n; i++)
		bad += xfer_imm_count(e, 0x20000000u + i * 7919u) != i % 3 + 1;
	EXPECT_EQ(0, bad);
	/* expectations on colliding immediates fire independently */
	struct rec r[4] = { 0 };
	for (int k = 0; k < 4; k++)
		xfer_counter_add_expect(e, 0x30000000u + k * XFER_COUNTER_SLOTS,
					expect(2, &r[k], NULL, 0, NULL));
	arrive(e, 0x30000000u + 2 * XFER_COUNTER_SLOTS, 2);
	EXPECT_EQ(0, r[0].calls + r[1].calls + r[3].calls);
	EXPECT_EQ(1, r[2].calls);
	for (int k = 0; k < 4; k++)
		if (k != 2)
			arrive(e, 0x30000000u + k * XFER_COUNTER_SLOTS, 2);
	EXPECT_EQ(4, r[0].calls + r[1].calls + r[2].calls + r[3].calls);
}

/* Distinct immediates that differ mostly in their high bits (layer << 16). */
static uint32_t imm_of(uint32_t i)
{
	return i << 16 | i >> 16;
}

/* Past the first table: 100,000 distinct immediates, every one counted,
 * readable and consumable by an expectation; the older counters keep
 * counting after the tables grew. */
TEST(tables_grow)
{
	xfer_engine *e = calloc(1, sizeof(*e));
	const uint32_t n = 100000;
	uint32_t bad = 0, fired = 0;
	struct rec *r = calloc(n, sizeof(*r));

	ASSERT_TRUE(e && r);
	for (uint32_t i = 0; i < n; i++)
		arrive(e, imm_of(i), 1);
	EXPECT_TRUE(atomic_load(&e->counters_more) != NULL) TH_LOG("no table past the first");
	EXPECT_EQ(0, atomic_load(&e->counters_lost));
	for (uint32_t i = 0; i < n; i++)
		bad += xfer_imm_count(e, imm_of(i)) != 1;
	EXPECT_EQ(0, bad);
	arrive(e, imm_of(0), 2);   /* the first counter, in the first table */
	EXPECT_EQ(3, xfer_imm_count(e, imm_of(0)));
	for (uint32_t i = 0; i < n; i++)
		xfer_counter_add_expect(e, imm_of(i), expect(1, &r[i], NULL, 0, NULL));
	for (uint32_t i = 0; i < n; i++)
		fired += r[i].calls == 1 && r[i].status == 0;
	EXPECT_EQ(n, fired);
	EXPECT_EQ(2, xfer_imm_count(e, imm_of(0)));
	EXPECT_EQ(0, xfer_imm_count(e, imm_of(n - 1)));
	xfer_counters_shutdown(e);
	xfer_counters_free(e);
	free(e);
	free(r);
}

static void *no_memory(size_t nmemb, size_t size)
{
	(void)nmemb;
	(void)size;
	return NULL;
}

/* Out of memory for a new table: the arrival is lost loudly (counted,
 * -ENOMEM on the stats page), an expectation on an immediate that has no
 * counter fails with -ENOMEM instead of waiting forever, and the existing
 * counters keep working. */
TEST(table_allocation_fails_loudly)
{
	xfer_engine *e = calloc(1, sizeof(*e));
	struct xfer_ctx_stats stats = { 0 };
	const uint32_t first = XFER_COUNTER_SLOTS / 4 * 3;   /* what the first table takes */
	uint32_t bad = 0;

	ASSERT_NE(NULL, e);
	e->stats = &stats;
	for (uint32_t i = 0; i < first; i++)
		arrive(e, i * 3u + 1, 1);
	EXPECT_TRUE(atomic_load(&e->counters_more) == NULL) TH_LOG("grew before 3/4 full");
	xfer_counters_calloc = no_memory;
	arrive(e, 999999999u, 1);
	EXPECT_EQ(1, atomic_load(&e->counters_lost));
	EXPECT_EQ(-ENOMEM, stats.last_error);
	EXPECT_EQ(0, xfer_imm_count(e, 999999999u));
	struct rec r = { 0 };
	volatile uint64_t flag = 0;
	xfer_counter_add_expect(e, 999999999u, expect(1, &r, &flag, 9, NULL));
	EXPECT_EQ(1, r.calls);
	EXPECT_EQ(-ENOMEM, r.status);
	EXPECT_EQ(0, flag);   /* the flag is for success only */
	/* an expectation on an existing counter still works */
	struct rec s2 = { 0 };
	xfer_counter_add_expect(e, 4, expect(2, &s2, NULL, 0, NULL));
	EXPECT_EQ(0, s2.calls);
	arrive(e, 4, 1);
	EXPECT_EQ(1, s2.calls);
	EXPECT_EQ(0, s2.status);
	for (uint32_t i = 0; i < first; i++)
		bad += xfer_imm_count(e, i * 3u + 1) != (i == 1 ? 0u : 1u);   /* 4 = 1*3+1 consumed */
	EXPECT_EQ(0, bad);
	/* memory back: new immediates are counted again */
	xfer_counters_calloc = calloc;
	arrive(e, 888888888u, 1);
	EXPECT_EQ(1, xfer_imm_count(e, 888888888u));
	xfer_counters_shutdown(e);
	xfer_counters_free(e);
	free(e);
}

/* Shutdown cancels the expectations. */
TEST_F(counters, shutdown_cancels_expectations)
{
	xfer_engine *e = self->e;
	struct rec a = { 0 }, b = { 0 };
	volatile uint64_t flag = 0;
	_Atomic uint32_t fired = 0;

	xfer_counter_add_expect(e, 4000, expect(5, &a, &flag, 1, NULL));
	xfer_counter_add_expect(e, 4000, expect(1, &b, NULL, 0, &fired));
	arrive(e, 4000, 1);
	EXPECT_EQ(0, a.calls + b.calls);
	xfer_counters_shutdown(e);
	EXPECT_EQ(1, a.calls);
	EXPECT_EQ(-ECANCELED, a.status);
	EXPECT_EQ(1, b.calls);
	EXPECT_EQ(-ECANCELED, b.status);
	EXPECT_EQ(2, atomic_load(&fired));   /* internal waiters see the failure */
	EXPECT_EQ(0, flag);
	/* shut down twice: nothing left to notify */
	xfer_counters_shutdown(e);
	EXPECT_EQ(2, a.calls + b.calls);
}

TEST_HARNESS_MAIN
