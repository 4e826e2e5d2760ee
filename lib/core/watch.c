/* SPDX-License-Identifier: MIT */
/*
 * Watched words: the producer side of SM-free signalling. The worker reads
 * each watched 64-bit word once per loop; every increase posts the prepared
 * write once per step. The word is plain memory here; on a GPU machine it is
 * host-mapped memory that a CUDA stream writes with cuStreamWriteValue64.
 *
 * A watch of a second kind (xfer_vscatter_add) posts a scatter whose rows
 * it reads from a ring of tables at each firing: the CPU proxy for a GPU
 * kernel that decides at run time how much goes where.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "struct_copy.h"

_Static_assert(XFER_WATCH_ATTR_SIZE_VER0 == offsetof(struct xfer_watch_attr, done),
	       "xfer_watch_attr's floor ends with reserved");
_Static_assert(XFER_VSCATTER_ATTR_SIZE_VER0 == offsetof(struct xfer_vscatter_attr, done_word),
	       "xfer_vscatter_attr's floor ends with tables");

#define WATCH_MAX_PER_LOOP 64   /* bound the work one loop spends on a watch */
/* ... and the rows a variable-length scatter copies in one loop (at least
 * one firing's, whatever its size) */
#define VSCATTER_MAX_ROWS_PER_LOOP 16384u
/* Firings of one variable-length scatter in flight at most: each has a slot
 * for its completion, preallocated at add. A producer that respects the
 * ring never has more than num_tables in flight anyway. */
#define VSCATTER_MAX_SLOTS 1024u

/* One firing in flight: the context its scatter's completion comes back with. */
struct vs_slot {
	struct xfer_watch *w;
	bool finished;               /* done ran; waits for the earlier ones */
};

struct xfer_vscatter {
	uint32_t num_dsts, num_tables, num_slots;
	const volatile struct xfer_vscatter_row *tables;
	volatile uint64_t *done_word;
	struct xfer_rmr *dsts;       /* copies of the destinations */
	/* what one firing needs, reused by the next (worker only) */
	struct xfer_vscatter_row *rows;
	struct xfer_scatter_dst *sd;
	uint32_t *flags, *imms;
	struct vs_slot *slots;       /* firing n's is slots[n % num_slots] */
	uint64_t taken;              /* firings taken from pending (worker) */
	uint64_t finished;           /* firings finished in order (worker) */
	/* firings taken and not yet finished: xfer_watch_remove waits for 0,
	 * woken when it says so in `removing` */
	_Atomic uint32_t busy;
	_Atomic bool removing;
	/* removed from a callback on the worker: it stays on the list, firing
	 * no more, and xfer_watches_poll frees it once busy is 0 */
	bool orphan;
};

static void vs_free(struct xfer_watch *w)
{
	struct xfer_vscatter *vs = w->vs;

	atomic_fetch_sub_explicit(&w->a.src->users, 1, memory_order_release);
	if (vs) {
		free(vs->dsts);
		free(vs->rows);
		free(vs->sd);
		free(vs->flags);
		free(vs->imms);
		free(vs->slots);
		free(vs);
	}
	free(w);
}

/* Firing `slot` is finished with `status`: run done, then publish how many
 * firings are finished in order, so that *done_word = n says firings
 * 0 .. n-1 are all finished (a scatter to a slow peer may finish after a
 * later one: its table must not be rewritten before). */
static void vs_finish(struct vs_slot *slot, int status)
{
	struct xfer_watch *w = slot->w;
	struct xfer_vscatter *vs = w->vs;
	uint64_t before = vs->finished;

	if (status && w->e->stats)
		__atomic_store_n(&w->e->stats->last_error, status, __ATOMIC_RELAXED);
	if (w->a.done.fn)
		w->a.done.fn(w->a.done.ctx, status);
	slot->finished = true;
	while (vs->finished < vs->taken && vs->slots[vs->finished % vs->num_slots].finished) {
		vs->slots[vs->finished % vs->num_slots].finished = false;
		vs->finished++;
	}
	if (vs->done_word && vs->finished != before)
		__atomic_store_n(vs->done_word, vs->finished, __ATOMIC_RELEASE);
	/* A remover that sees 0 frees w only after a command has passed the
	 * worker, i.e. after this returned: w may still be read here. Both
	 * sides use sequentially consistent order, so either it reads busy
	 * after this decrement or this reads `removing` set (no lost wake-up);
	 * the system call only while someone waits. */
	if (atomic_fetch_sub(&vs->busy, 1) == 1 && atomic_load(&vs->removing))
		xfer_futex_wake(&vs->busy);
}

static void vs_done(void *ctx, int status)
{
	vs_finish(ctx, status);
}

/* Firing n: copy its table (the producer may write the next one meanwhile),
 * check every row, then post one scatter of the rows with something to send. */
static void vs_fire(xfer_engine *e, struct xfer_watch *w, uint64_t n)
{
	struct xfer_vscatter *vs = w->vs;
	const volatile struct xfer_vscatter_row *t = vs->tables + (n % vs->num_tables) * vs->num_dsts;
	struct vs_slot *slot = &vs->slots[n % vs->num_slots];
	struct xfer_done done = { .fn = vs_done, .ctx = slot };
	uint32_t m = 0;
	int ret = 0;

	for (uint32_t i = 0; i < vs->num_dsts; i++) {
		vs->rows[i].src_off = t[i].src_off;
		vs->rows[i].dst_off = t[i].dst_off;
		vs->rows[i].len = t[i].len;
		vs->rows[i].imm = t[i].imm;
		vs->rows[i].flags = t[i].flags;
	}
	for (uint32_t i = 0; i < vs->num_dsts && !ret; i++) {
		const struct xfer_vscatter_row *r = &vs->rows[i];

		if (r->flags & ~XFER_OP_IMM)
			ret = -EINVAL;
		else if (r->src_off > w->a.src->len || r->len > w->a.src->len - r->src_off ||
			 r->dst_off > vs->dsts[i].d.len || r->len > vs->dsts[i].d.len - r->dst_off)
			ret = -ERANGE;
	}
	for (uint32_t i = 0; i < vs->num_dsts && !ret; i++) {
		const struct xfer_vscatter_row *r = &vs->rows[i];

		if (!r->len && !(r->flags & XFER_OP_IMM))
			continue;   /* nothing for dsts[i] this time */
		vs->sd[m] = (struct xfer_scatter_dst){ .dst = &vs->dsts[i], .src_off = r->src_off,
						       .dst_off = r->dst_off, .len = r->len };
		vs->flags[m] = r->flags;
		vs->imms[m] = r->imm;
		m++;
	}
	slot->w = w;
	slot->finished = false;
	atomic_fetch_add_explicit(&vs->busy, 1, memory_order_relaxed);
	if (!ret && m)
		/* on the worker: submitted at once, its completion comes later
		 * (or at once, through done, on an error of the worker's) */
		ret = xfer_scatter_each(e, w->a.src, vs->sd, m, vs->flags, vs->imms, &done, NULL);
	if (ret || !m)
		vs_finish(slot, ret);
}

/* Fire what is owed, as far as slots are free and the per-loop bounds allow. */
static void vs_poll(xfer_engine *e, struct xfer_watch *w)
{
	struct xfer_vscatter *vs = w->vs;
	uint32_t rows = 0;

	for (int i = 0; i < WATCH_MAX_PER_LOOP && w->pending && !vs->orphan; i++) {
		if (vs->taken - vs->finished >= vs->num_slots ||
		    (rows && rows + vs->num_dsts > VSCATTER_MAX_ROWS_PER_LOOP))
			break;
		w->pending--;
		vs_fire(e, w, vs->taken++);
		rows += vs->num_dsts;
		atomic_fetch_add_explicit(&w->fired, 1, memory_order_release);
	}
}

bool xfer_watches_moved(const xfer_engine *e)
{
	for (const struct xfer_watch *w = e->watches; w; w = w->next)
		if (w->pending || (!w->failed && __atomic_load_n(w->a.word, __ATOMIC_SEQ_CST) != w->last))
			return true;
	return false;
}

XFER_EXPORT int xfer_watch_kick(xfer_watch *w)
{
	if (!w)
		return -EINVAL;
	atomic_thread_fence(memory_order_seq_cst);   /* the word's store before reading `sleeping` */
	xfer_engine_kick(w->e);
	return 0;
}

void xfer_watches_poll(xfer_engine *e)
{
	struct xfer_watch **pp = &e->watches, *w;

	for (; (w = *pp); pp = w ? &w->next : pp) {
		uint64_t v;

		if (w->vs && w->vs->orphan) {
			/* removed from a callback: gone once nothing of it is in flight */
			if (!atomic_load_explicit(&w->vs->busy, memory_order_acquire)) {
				*pp = w->next;
				e->watches_polled -= !w->kicked;
				vs_free(w);
				w = NULL;
			}
			continue;
		}
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
		if (w->vs) {
			vs_poll(e, w);
			continue;
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

/* The opening both adds share: *out cleared before anything can fail, so a
 * refusal leaves no stale handle, then the caller's attr copied in at the
 * size it was built with. */
static int add_begin(xfer_engine *e, const void *ua, void *k, size_t ksize, size_t ver0,
		     xfer_watch **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!e || !ua)
		return -EINVAL;
	return xfer_struct_copy_in(k, ksize, ua, ver0);
}

/* Hand a built watch to the worker, which polls it from here on: counting
 * starts from the word's value now. */
static int add_finish(xfer_engine *e, struct xfer_watch *w, xfer_watch **out)
{
	struct xfer_cmd c = { .kind = CMD_WATCH_ADD };

	w->last = __atomic_load_n(w->a.word, __ATOMIC_ACQUIRE);
	c.u.watch.w = w;
	xfer_cmd_run(e, &c);
	*out = w;
	return 0;
}

XFER_EXPORT int xfer_watch_add(xfer_engine *e, const struct xfer_watch_attr *ua, xfer_watch **out)
{
	struct xfer_watch_attr k = { .size = sizeof(k) }, *a = &k;   /* done: none */
	struct xfer_watch *w;
	int ret;

	ret = add_begin(e, ua, &k, sizeof(k), XFER_WATCH_ATTR_SIZE_VER0, out);
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
	atomic_fetch_add_explicit(&a->src->users, 1, memory_order_relaxed);   /* until removed */
	return add_finish(e, w, out);
}

XFER_EXPORT int xfer_vscatter_add(xfer_engine *e, const struct xfer_vscatter_attr *ua,
				  xfer_watch **out)
{
	struct xfer_vscatter_attr a = { .size = sizeof(a) };   /* done_word, done: none */
	struct xfer_vscatter *vs;
	struct xfer_watch *w;
	int ret;

	ret = add_begin(e, ua, &a, sizeof(a), XFER_VSCATTER_ATTR_SIZE_VER0, out);
	if (ret)
		return ret;
	if (!a.word || !a.src || !a.dsts || !a.tables || (a.flags & ~XFER_VSCATTER_F_KICK) ||
	    a.src->e != e ||
	    !a.num_dsts || a.num_dsts > XFER_VSCATTER_MAX_DSTS)
		return -EINVAL;
	for (uint32_t i = 0; i < a.num_dsts; i++)
		if (!a.dsts[i] || a.dsts[i]->e != e)
			return -EINVAL;
	if (!a.num_tables)
		a.num_tables = 1;
	w = calloc(1, sizeof(*w));
	vs = calloc(1, sizeof(*vs));
	if (!w || !vs) {
		free(w);
		free(vs);
		return -ENOMEM;
	}
	w->vs = vs;
	vs->num_dsts = a.num_dsts;
	vs->num_tables = a.num_tables;
	vs->num_slots = a.num_tables < VSCATTER_MAX_SLOTS ? a.num_tables : VSCATTER_MAX_SLOTS;
	vs->tables = a.tables;
	vs->done_word = a.done_word;
	vs->dsts = calloc(a.num_dsts, sizeof(*vs->dsts));
	vs->rows = calloc(a.num_dsts, sizeof(*vs->rows));
	vs->sd = calloc(a.num_dsts, sizeof(*vs->sd));
	vs->flags = calloc(a.num_dsts, sizeof(*vs->flags));
	vs->imms = calloc(a.num_dsts, sizeof(*vs->imms));
	vs->slots = calloc(vs->num_slots, sizeof(*vs->slots));
	/* the watch's own fields that the shared code reads */
	w->e = e;
	w->a.size = sizeof(w->a);
	w->a.word = a.word;
	w->a.src = a.src;
	w->a.done = a.done;
	w->kicked = a.flags & XFER_VSCATTER_F_KICK;
	atomic_fetch_add_explicit(&a.src->users, 1, memory_order_relaxed);   /* until removed */
	if (!vs->dsts || !vs->rows || !vs->sd || !vs->flags || !vs->imms || !vs->slots) {
		vs_free(w);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < a.num_dsts; i++)
		vs->dsts[i] = *a.dsts[i];
	return add_finish(e, w, out);
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
	if (w->vs && xfer_worker_self == w->e) {
		/* From a callback (perhaps this watch's own, inside the loop
		 * that fires it): fire no more; xfer_watches_poll frees it once
		 * its firings in flight are finished. */
		w->vs->orphan = true;
		return 0;
	}
	c.u.watch.w = w;
	xfer_cmd_run(w->e, &c);
	if (w->vs) {
		/* Its firings in flight still use the slots, tables and
		 * done_word: wait for them (each finishes, at worst, within the
		 * peer timeout, or at once when the engine stops) ... */
		uint32_t b;

		atomic_store(&w->vs->removing, true);
		while ((b = atomic_load(&w->vs->busy)))
			xfer_futex_wait(&w->vs->busy, b, 10000000);
		/* ... and until the worker has left the last one's callback:
		 * a command runs only between callbacks. */
		c.u.watch.w = w;   /* off the list already: nothing to do */
		xfer_cmd_run(w->e, &c);
	}
	vs_free(w);
	return 0;
}
