/* SPDX-License-Identifier: MIT */
/*
 * An intrusive multi-producer single-consumer queue (Vyukov's design):
 * producers do one atomic exchange and one store, the consumer never
 * blocks producers. A producer preempted between its two steps makes the
 * consumer see the queue as momentarily empty (xfer_mpsc_pop returns NULL
 * and sets *busy); it simply tries again on its next loop.
 */
#ifndef XFER_QUEUE_H
#define XFER_QUEUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct xfer_qnode {
	_Atomic(struct xfer_qnode *) next;
	unsigned kind;               /* what the node is, for the consumer (the engine's
	                              * enum xfer_qnode_kind, internal.h) */
};

struct xfer_mpsc {
	_Atomic(struct xfer_qnode *) head;   /* producers push here */
	struct xfer_qnode *tail;             /* consumer pops here */
	struct xfer_qnode sentinel;
};

void xfer_mpsc_init(struct xfer_mpsc *q);
void xfer_mpsc_push(struct xfer_mpsc *q, struct xfer_qnode *n);
struct xfer_qnode *xfer_mpsc_pop(struct xfer_mpsc *q, bool *busy);
bool xfer_mpsc_empty(struct xfer_mpsc *q);

#endif
