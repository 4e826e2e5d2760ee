/* SPDX-License-Identifier: MIT */
/*
 * The MPSC submission queue (lib/queue.c): the empty/busy protocol driven
 * step by step, then 8 producer threads x 200k nodes against one consumer:
 * every node is popped exactly once and each producer's nodes come out in
 * the order it pushed them.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "xt.h"

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

static void test_steps(void)
{
	struct node a = { 0 }, b = { 0 }, c = { 0 };
	struct xfer_qnode *prev;
	bool busy = true;

	xfer_mpsc_init(&q);
	XT_CHECK(xfer_mpsc_empty(&q), "new queue not empty");
	XT_CHECK(xfer_mpsc_pop(&q, &busy) == NULL, "pop from an empty queue");
	XT_CHECK(!busy, "empty queue reported busy");

	xfer_mpsc_push(&q, &a.qn);
	XT_CHECK(!xfer_mpsc_empty(&q), "queue with one node empty");
	/* A producer stopped between its exchange and its link: b is in head
	 * but not reachable from a. The consumer must not lose it or take it
	 * early; it reports busy instead of "empty". */
	atomic_store(&b.qn.next, NULL);
	prev = atomic_exchange(&q.head, &b.qn);
	XT_CHECK(prev == &a.qn, "exchange did not return the last node");
	XT_CHECK(xfer_mpsc_pop(&q, &busy) == NULL && busy, "half-linked queue: busy not reported");
	XT_CHECK(!xfer_mpsc_empty(&q), "half-linked queue reported empty");
	XT_CHECK(xfer_mpsc_pop(&q, &busy) == NULL && busy, "busy not reported again");
	atomic_store(&prev->next, &b.qn);   /* the producer finishes */
	XT_CHECK(xfer_mpsc_pop(&q, &busy) == &a.qn && !busy, "a not popped first");
	xfer_mpsc_push(&q, &c.qn);
	XT_CHECK(xfer_mpsc_pop(&q, &busy) == &b.qn, "b not popped second");
	XT_CHECK(xfer_mpsc_pop(&q, &busy) == &c.qn, "c not popped third");
	XT_CHECK(xfer_mpsc_pop(&q, &busy) == NULL && !busy, "drained queue not empty");
	XT_CHECK(xfer_mpsc_empty(&q), "drained queue: empty() false");
	/* the sentinel cycles through: reuse works the same way */
	for (int round = 0; round < 3; round++) {
		xfer_mpsc_push(&q, &a.qn);
		XT_CHECK(xfer_mpsc_pop(&q, &busy) == &a.qn, "round %d: single node", round);
		XT_CHECK(xfer_mpsc_pop(&q, &busy) == NULL && !busy, "round %d: not empty", round);
		XT_CHECK(xfer_mpsc_empty(&q), "round %d: empty() false", round);
	}
}

static void test_concurrent(void)
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
				XT_CHECK(0, "consumer stalled at %llu nodes", (unsigned long long)total);
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
	XT_CHECK(xfer_mpsc_pop(&q, &busy) == NULL && !busy, "nodes left after all were counted");
	XT_CHECK(xfer_mpsc_empty(&q), "queue not empty at the end");
	XT_EQ(foreign, 0);
	XT_EQ(dup, 0);
	XT_EQ(order_err, 0);
	XT_EQ(total, (uint64_t)PRODUCERS * PER_PRODUCER);
	uint64_t missing = 0;
	for (int p = 0; p < PRODUCERS; p++) {
		XT_EQ(next[p], PER_PRODUCER);
		for (uint32_t i = 0; i < PER_PRODUCER; i++)
			missing += atomic_load(&nodes[p][i].seen) != 1;
		free(nodes[p]);
	}
	XT_EQ(missing, 0);
	printf("# %d x %d nodes in %.2f s, consumer saw 'busy' %llu times\n", PRODUCERS,
	       PER_PRODUCER, (xt_now_us() - t0) / 1e6, (unsigned long long)busy_seen);
}

int main(void)
{
	int f;

	xt_plan();
	f = xt_failures;
	test_steps();
	xt_result("queue steps: empty, busy, order", xt_failures == f, NULL);
	f = xt_failures;
	test_concurrent();
	xt_result("8 producers x 200k nodes, one consumer", xt_failures == f, NULL);
	return xt_done();
}
