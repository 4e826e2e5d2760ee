/* SPDX-License-Identifier: MIT */
/*
 * Watched words: the producer side of SM-free signalling. The worker reads
 * each watched 64-bit word once per loop; every increase posts the prepared
 * write once per step. The word is plain memory here; on a GPU machine it is
 * host-mapped memory that a CUDA stream writes with cuStreamWriteValue64.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "struct_copy.h"

_Static_assert(XFER_WATCH_ATTR_SIZE_VER0 == offsetof(struct xfer_watch_attr, done),
	       "xfer_watch_attr's floor ends with reserved");

#define WATCH_MAX_PER_LOOP 64   /* bound the work one loop spends on a watch */

void xfer_watches_poll(xfer_engine *e)
{
	for (struct xfer_watch *w = e->watches; w; w = w->next) {
		uint64_t v;

		if (w->failed)
			continue;
		v = __atomic_load_n(w->a.word, __ATOMIC_ACQUIRE);
		if (v > w->last) {
			/* A jump past the bound is a corrupt or runaway word, not
			 * work: posting it would be a write storm for hours. */
			if (v - w->last > XFER_WATCH_MAX_STEP - w->pending) {
				w->failed = true;
				w->pending = 0;
				if (e->stats)
					__atomic_store_n(&e->stats->last_error, -ERANGE,
							 __ATOMIC_RELAXED);
				if (w->a.done.fn)
					w->a.done.fn(w->a.done.ctx, -ERANGE);
				continue;
			}
			w->pending += v - w->last;
			w->last = v;
		}
		for (int i = 0; i < WATCH_MAX_PER_LOOP && w->pending; i++) {
			int ret = xfer_write(e, w->a.src, w->a.src_off, &w->dst, w->a.dst_off,
					     w->a.len, w->a.flags, w->a.imm, &w->a.done, NULL);

			if (ret && w->a.done.fn)
				w->a.done.fn(w->a.done.ctx, ret);
			w->pending--;
			atomic_fetch_add_explicit(&w->fired, 1, memory_order_release);
		}
	}
}

XFER_EXPORT int xfer_watch_add(xfer_engine *e, const struct xfer_watch_attr *ua, xfer_watch **out)
{
	struct xfer_watch_attr k = { .size = sizeof(k) }, *a = &k;   /* done: none */
	struct xfer_cmd c = { .kind = CMD_WATCH_ADD };
	struct xfer_watch *w;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!e || !ua)
		return -EINVAL;
	ret = xfer_struct_copy_in(&k, sizeof(k), ua, XFER_WATCH_ATTR_SIZE_VER0);
	if (ret)
		return ret;
	if (!a->word || !a->src || !a->dst || a->reserved ||
	    (a->flags & ~XFER_OP_IMM) || a->src->e != e || a->dst->e != e)
		return -EINVAL;
	if (a->src_off > a->src->len || a->len > a->src->len - a->src_off ||
	    a->dst_off > a->dst->d.len || a->len > a->dst->d.len - a->dst_off)
		return -ERANGE;
	if (!a->len && !(a->flags & XFER_OP_IMM))
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->e = e;
	w->a = *a;
	w->dst = *a->dst;
	w->a.dst = &w->dst;
	w->last = __atomic_load_n(a->word, __ATOMIC_ACQUIRE);
	atomic_fetch_add_explicit(&a->src->users, 1, memory_order_relaxed);   /* until removed */
	c.u.watch.w = w;
	xfer_cmd_run(e, &c);
	*out = w;
	return 0;
}

XFER_EXPORT uint64_t xfer_watch_fired(const xfer_watch *w)
{
	return w ? atomic_load_explicit(&((xfer_watch *)w)->fired, memory_order_acquire) : 0;
}

XFER_EXPORT int xfer_watch_remove(xfer_watch *w)
{
	struct xfer_cmd c = { .kind = CMD_WATCH_REMOVE };

	if (!w)
		return -EINVAL;
	c.u.watch.w = w;
	xfer_cmd_run(w->e, &c);
	atomic_fetch_sub_explicit(&w->a.src->users, 1, memory_order_release);
	free(w);
	return 0;
}
