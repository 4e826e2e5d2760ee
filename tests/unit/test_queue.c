/* SPDX-License-Identifier: MIT */
/*
 * The MPSC submission queue (lib/core/queue.c): the empty/busy protocol driven
 * step by step, then 8 producer threads x 200k nodes against one consumer:
 * every node is popped exactly once and each producer's nodes come out in
 * the order it pushed them.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define PRODUCERS 8
#define PER_PRODUCER 200000

struct node {
	struct xfer_qnode qn;   /* first: pop returns &qn */
	uint32_t producer;
	uint32_t seq;
	_Atomic uint32_t seen;
};

static struct xfer_mpsc q;
static struct node *nodes[PRODUCERS];
static _Atomic int go;

static void *producer(void *arg)
{
	uint32_t p = (uint32_t)(uintptr_t)arg;

	while (!atomic_load(&go))
		;
	for (uint32_t i = 0; i < PER_PRODUCER; i++) {
		nodes[p][i].producer = p;
		nodes[p][i].seq = i;
		xfer_mpsc_push(&q, &nodes[p][i].qn);
		if ((i & 1023) == 0)
			sched_yield();   /* let others interleave on few cores */
	}
	return NULL;
}

/* The empty/busy protocol, step by step. */
TEST(steps)
{
	struct node a = { 0 }, b = { 0 }, c = { 0 };
	struct xfer_qnode *prev;
	bool busy = true;

	xfer_mpsc_init(&q);
	EXPECT_TRUE(xfer_mpsc_empty(&q)) TH_LOG("new queue not empty");
	EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == NULL) TH_LOG("pop from an empty queue");
	EXPECT_TRUE(!busy) TH_LOG("empty queue reported busy");

	xfer_mpsc_push(&q, &a.qn);
	EXPECT_TRUE(!xfer_mpsc_empty(&q)) TH_LOG("queue with one node empty");
	/* A producer stopped between its exchange and its link: b is in head
	 * but not reachable from a. The consumer must not lose it or take it
	 * early; it reports busy instead of "empty". */
	atomic_store(&b.qn.next, NULL);
	prev = atomic_exchange(&q.head, &b.qn);
	EXPECT_TRUE(prev == &a.qn) TH_LOG("exchange did not return the last node");
	EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == NULL && busy) TH_LOG("half-linked queue: busy not reported");
	EXPECT_TRUE(!xfer_mpsc_empty(&q)) TH_LOG("half-linked queue reported empty");
	EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == NULL && busy) TH_LOG("busy not reported again");
	atomic_store(&prev->next, &b.qn);   /* the producer finishes */
	EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == &a.qn && !busy) TH_LOG("a not popped first");
	xfer_mpsc_push(&q, &c.qn);
	EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == &b.qn) TH_LOG("b not popped second");
	EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == &c.qn) TH_LOG("c not popped third");
	EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == NULL && !busy) TH_LOG("drained queue not empty");
	EXPECT_TRUE(xfer_mpsc_empty(&q)) TH_LOG("drained queue: empty() false");
	/* the sentinel cycles through: reuse works the same way */
	for (int round = 0; round < 3; round++) {
		xfer_mpsc_push(&q, &a.qn);
		EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == &a.qn) TH_LOG("round %d: single node", round);
		EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == NULL && !busy) TH_LOG("round %d: not empty", round);
		EXPECT_TRUE(xfer_mpsc_empty(&q)) TH_LOG("round %d: empty() false", round);
	}
}

/* 8 producers x 200k nodes, one consumer. */
XT_TEST_TIMEOUT(concurrent, 120)
{
	pthread_t th[PRODUCERS];
	uint32_t next[PRODUCERS] = { 0 };
	uint64_t total = 0, busy_seen = 0, order_err = 0, dup = 0, foreign = 0;
	uint64_t t0;

	xfer_mpsc_init(&q);
	for (int p = 0; p < PRODUCERS; p++)
		nodes[p] = calloc(PER_PRODUCER, sizeof(struct node));
	for (int p = 0; p < PRODUCERS; p++)
		pthread_create(&th[p], NULL, producer, (void *)(uintptr_t)p);
	atomic_store(&go, 1);
	t0 = xt_now_us();
	while (total < (uint64_t)PRODUCERS * PER_PRODUCER) {
		bool busy;
		struct xfer_qnode *n = xfer_mpsc_pop(&q, &busy);

		if (!n) {
			busy_seen += busy;
			if (xt_now_us() - t0 > 60000000) {
				EXPECT_TRUE(0) TH_LOG("consumer stalled at %llu nodes", (unsigned long long)total);
				break;
			}
			continue;
		}
		struct node *nd = (struct node *)n;

		if (nd->producer >= PRODUCERS || nd < nodes[nd->producer] ||
		    nd >= nodes[nd->producer] + PER_PRODUCER) {
			foreign++;
			continue;
		}
		if (atomic_fetch_add(&nd->seen, 1))
			dup++;
		if (nd->seq != next[nd->producer])
			order_err++;
		next[nd->producer] = nd->seq + 1;
		total++;
	}
	for (int p = 0; p < PRODUCERS; p++)
		pthread_join(th[p], NULL);
	bool busy;
	EXPECT_TRUE(xfer_mpsc_pop(&q, &busy) == NULL && !busy) TH_LOG("nodes left after all were counted");
	EXPECT_TRUE(xfer_mpsc_empty(&q)) TH_LOG("queue not empty at the end");
	EXPECT_EQ(0, foreign);
	EXPECT_EQ(0, dup);
	EXPECT_EQ(0, order_err);
	EXPECT_EQ((uint64_t)PRODUCERS * PER_PRODUCER, total);
	uint64_t missing = 0;
	for (int p = 0; p < PRODUCERS; p++) {
		EXPECT_EQ(PER_PRODUCER, next[p]);
		for (uint32_t i = 0; i < PER_PRODUCER; i++)
			missing += atomic_load(&nodes[p][i].seen) != 1;
		free(nodes[p]);
	}
	EXPECT_EQ(0, missing);
	TH_LOG("%d x %d nodes in %.2f s, consumer saw 'busy' %llu times", PRODUCERS,
	       PER_PRODUCER, (xt_now_us() - t0) / 1e6, (unsigned long long)busy_seen);
}

TEST_HARNESS_MAIN
