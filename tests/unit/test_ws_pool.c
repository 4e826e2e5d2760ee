/* SPDX-License-Identifier: MIT */
/*
 * The executor's transform threads (lib/weightsync/pool.c):
 *  - every part of every job runs exactly once, for pools of 1 to 8
 *    threads and jobs of 0 to 40 parts, a thousand jobs in a row (a helper
 *    late for one job must not run a part of the next);
 *  - the parts really run on several threads at once: with 3 threads, 3
 *    parts that each wait until all 3 have started finish;
 *  - ws_pool_create refuses 0 threads and leaves no pool.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "pool.h"

#define MAX_PARTS 40

struct count_job {
	uint32_t gen;
	_Atomic uint32_t runs[MAX_PARTS];
	_Atomic uint32_t wrong_gen;
	const uint32_t *expect_gen;
};

static void count_part(void *ctx, uint32_t i)
{
	struct count_job *j = ctx;

	if (*j->expect_gen != j->gen)
		atomic_fetch_add(&j->wrong_gen, 1);
	atomic_fetch_add(&j->runs[i], 1);
}

/* Part i waits (up to 5 s) until all parts have started. */
struct meet_job {
	_Atomic uint32_t started;
	uint32_t n;
	_Atomic uint32_t met;
};

static void meet_part(void *ctx, uint32_t i)
{
	struct meet_job *j = ctx;
	uint64_t end = xfer_now_ns() + 5000000000ull;

	(void)i;
	atomic_fetch_add(&j->started, 1);
	while (atomic_load(&j->started) < j->n && xfer_now_ns() < end)
		;
	if (atomic_load(&j->started) >= j->n)
		atomic_fetch_add(&j->met, 1);
}

/* Every part of 1000 jobs runs exactly once, pools of 1 to 8 threads. */
TEST(every_part_runs_once)
{
	for (uint32_t threads = 1; threads <= 8; threads++) {
		struct ws_pool *p = NULL;
		uint32_t current = 0, bad = 0;

		ASSERT_EQ(0, ws_pool_create(threads, &p));
		EXPECT_EQ(threads, ws_pool_threads(p));
		for (uint32_t job = 0; job < 1000; job++) {
			struct count_job j = { .gen = job, .expect_gen = &current };
			uint32_t nparts = (job * 7 + threads) % (MAX_PARTS + 1);

			current = job;
			ws_pool_run(p, count_part, &j, nparts);
			for (uint32_t i = 0; i < MAX_PARTS; i++)
				if (atomic_load(&j.runs[i]) != (i < nparts ? 1u : 0u))
					bad++;
			bad += atomic_load(&j.wrong_gen);
		}
		EXPECT_TRUE(bad == 0) TH_LOG("%u threads: %u parts run other than once", threads, bad);
		ws_pool_destroy(p);
	}
}

/* 3 threads run 3 parts at once. */
TEST(three_threads_run_three_parts_at_once)
{
	struct ws_pool *p = NULL;
	struct meet_job m = { .n = 3 };

	ASSERT_EQ(0, ws_pool_create(3, &p));
	ws_pool_run(p, meet_part, &m, 3);
	EXPECT_EQ(3, atomic_load(&m.met));
	ws_pool_destroy(p);
}

/* 0 threads: -EINVAL, no pool. */
TEST(zero_threads_refused)
{
	struct meet_job m = { .n = 3 };
	struct ws_pool *p = (struct ws_pool *)&m;

	EXPECT_EQ(-EINVAL, ws_pool_create(0, &p));
	EXPECT_TRUE(p == NULL) TH_LOG("pool left set");
	ws_pool_destroy(NULL);
}

TEST_HARNESS_MAIN
