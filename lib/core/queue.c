/* SPDX-License-Identifier: MIT */
#include "queue.h"

void xfer_mpsc_init(struct xfer_mpsc *q)
{
	atomic_store_explicit(&q->sentinel.next, NULL, memory_order_relaxed);
	atomic_store_explicit(&q->head, &q->sentinel, memory_order_relaxed);
	q->tail = &q->sentinel;
}

void xfer_mpsc_push(struct xfer_mpsc *q, struct xfer_qnode *n)
{
	struct xfer_qnode *prev;

	atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
	prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
	/* Between the exchange and this store the list is cut: pop sees it. */
	atomic_store_explicit(&prev->next, n, memory_order_release);
}

struct xfer_qnode *xfer_mpsc_pop(struct xfer_mpsc *q, bool *busy)
{
	struct xfer_qnode *tail = q->tail;
	struct xfer_qnode *next = atomic_load_explicit(&tail->next, memory_order_acquire);

	*busy = false;
	if (tail == &q->sentinel) {
		if (!next)
			return NULL;
		q->tail = next;
		tail = next;
		next = atomic_load_explicit(&tail->next, memory_order_acquire);
	}
	if (next) {
		q->tail = next;
		return tail;
	}
	if (tail != atomic_load_explicit(&q->head, memory_order_acquire)) {
		*busy = true;   /* a producer is between its two steps */
		return NULL;
	}
	/* tail is the last node: put the sentinel behind it so it can be taken. */
	xfer_mpsc_push(q, &q->sentinel);
	next = atomic_load_explicit(&tail->next, memory_order_acquire);
	if (next) {
		q->tail = next;
		return tail;
	}
	*busy = true;
	return NULL;
}

bool xfer_mpsc_empty(struct xfer_mpsc *q)
{
	return q->tail == &q->sentinel &&
	       atomic_load_explicit(&q->sentinel.next, memory_order_acquire) == NULL &&
	       atomic_load_explicit(&q->head, memory_order_acquire) == &q->sentinel;
}
