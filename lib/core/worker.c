/* SPDX-License-Identifier: MIT */
/*
 * The worker thread: the only thread that touches the NICs. Its loop
 *   1. takes operations and commands from the MPSC queue,
 *   2. expands operations into pieces and posts them in batches, bounded
 *      per rail and, within a rail, per peer (peer_share); when a peer's
 *      share is used up or the provider says EAGAIN, that peer's ops stay
 *      queued (in order) and are retried after the next completion poll,
 *      while ops to other peers behind them go on,
 *   3. polls every rail's completions and counts immediates,
 *   4. checks watched words and per-operation deadlines,
 * and after idle_spin_us without activity sleeps (idle_sleep) in
 * epoll_wait on the rails' completion fds and an eventfd that submitters
 * write to (xfer_engine_kick): up to 50 ms when every rail has an fd, else
 * 1 ms so the rails without one are still polled. Only where the engine
 * has no epoll fd does it sleep on the e->wake futex instead.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"

__thread xfer_engine *xfer_worker_self;

#define POST_BATCH 16
#define POLL_BATCH 64
#define PIECE_SLAB 1024

/* ---- pieces ---------------------------------------------------------- */

static struct xfer_piece *piece_get(xfer_engine *e)
{
	struct xfer_piece *p = e->piece_free;

	if (!p) {
		/* slab[0] links the slabs, the rest are pieces */
		struct xfer_piece *slab = calloc(PIECE_SLAB, sizeof(*slab));

		if (!slab)
			return NULL;
		slab[0].next_free = e->piece_slabs;
		e->piece_slabs = slab;
		for (int i = PIECE_SLAB - 1; i >= 1; i--) {
			slab[i].next_free = e->piece_free;
			e->piece_free = &slab[i];
		}
		p = e->piece_free;
	}
	e->piece_free = p->next_free;
	return p;
}

static void piece_put(xfer_engine *e, struct xfer_piece *p)
{
	p->next_free = e->piece_free;
	e->piece_free = p;
}

/* ---- live operations --------------------------------------------------- */

/* An op with pieces to post joins its peer's queue, or, when it goes to
 * several peers (scatter), the shared list; each is posted in order. */
static void post_list_append(xfer_engine *e, struct xfer_op *op)
{
	struct xfer_op **head = &e->post_head, **tail = &e->post_tail;

	op->next = NULL;
	op->in_post = true;
	if (op->num_targets == 1) {
		uint32_t pi = op->targets[0].peer;
		struct xfer_peer *p = &e->peers[pi];

		head = &p->post_head;
		tail = &p->post_tail;
		if (!p->ready) {
			p->ready = true;
			p->ready_next = 0;
			if (e->ready_tail)
				e->peers[e->ready_tail - 1].ready_next = pi + 1;
			else
				e->ready_head = pi + 1;
			e->ready_tail = pi + 1;
		}
	}
	if (*tail)
		(*tail)->next = op;
	else
		*head = op;
	*tail = op;
}

/* Whether ops wait to be posted (on the shared list or a peer's queue). */
static bool posting_queued(const xfer_engine *e)
{
	return e->post_head || e->ready_head;
}

static bool peer_is_up(xfer_engine *e, uint32_t peer)
{
	return atomic_load_explicit(&e->peers[peer].status, memory_order_relaxed) == 0;
}

static void imm_ready_push(xfer_engine *e, struct xfer_op *op, struct xfer_target *t)
{
	if (e->imm_ready_n == e->imm_ready_cap) {
		uint32_t cap = e->imm_ready_cap ? 2 * e->imm_ready_cap : 64;
		void *a = realloc(e->imm_ready, cap * sizeof(*e->imm_ready));
		void *b = a ? realloc(e->imm_ready_op, cap * sizeof(*e->imm_ready_op)) : NULL;

		if (a)
			e->imm_ready = a;
		if (!b) {
			xfer_op_finish(op, -ENOMEM);
			return;
		}
		e->imm_ready_op = b;
		e->imm_ready_cap = cap;
	}
	t->imm_queued = 1;
	op->pieces_inflight++;     /* the immediate counts as outstanding from now */
	e->imm_ready[e->imm_ready_n] = t;
	e->imm_ready_op[e->imm_ready_n] = op;
	e->imm_ready_n++;
}

/* Called whenever an op may have nothing left: deliver and drop the worker's ref. */
static void op_check_done(xfer_engine *e, struct xfer_op *op)
{
	if (op->pieces_inflight == 0 && (op->status || op->pieces_next == op->pieces_total)) {
		if (!op->finished)
			xfer_op_finish(op, op->status);
		if (!op->in_post)
			xfer_live_drop(e, op);
	}
}

/* ---- pieces in flight, per rail and per peer ----------------------------- */

static void publish_inflight(xfer_engine *e)
{
	__atomic_store_n(&e->stats->ops_inflight, e->inflight_total, __ATOMIC_RELAXED);
}

/* pc was handed to the provider: it counts against its rail and peer. */
static void piece_track(xfer_engine *e, struct xfer_piece *pc)
{
	struct xfer_peer *p = &e->peers[pc->peer];
	struct xfer_rail_state *rs = &e->rail[pc->rail];

	pc->pprev = NULL;
	pc->pnext = p->inflight;
	if (p->inflight)
		p->inflight->pprev = pc;
	p->inflight = pc;
	if (rs->peer_inflight[pc->peer]++ == 0)
		rs->busy_peers++;
	rs->inflight++;
	e->inflight_total++;
	publish_inflight(e);
	xfer_publish_rail_inflight(e, pc->rail);
}

/* pc is no longer in flight (completed, failed or reclaimed). */
static void piece_untrack(xfer_engine *e, struct xfer_piece *pc)
{
	struct xfer_peer *p = &e->peers[pc->peer];
	struct xfer_rail_state *rs = &e->rail[pc->rail];

	if (pc->pprev)
		pc->pprev->pnext = pc->pnext;
	else
		p->inflight = pc->pnext;
	if (pc->pnext)
		pc->pnext->pprev = pc->pprev;
	pc->pprev = pc->pnext = NULL;
	if (--rs->peer_inflight[pc->peer] == 0)
		rs->busy_peers--;
	rs->inflight--;
	e->inflight_total--;
	publish_inflight(e);
	xfer_publish_rail_inflight(e, pc->rail);
}

/* The most pieces `peer` may have in flight on a rail: three quarters of
 * the budget, shared among the peers with pieces there. A quarter thus
 * always stays free for a peer that has none, so a stalled peer (whose
 * pieces do not come back until it is declared down) cannot hold back the
 * others; at least 8, so that many peers each keep a pipeline. */
static uint32_t peer_share(const struct xfer_rail_state *rs, uint32_t peer)
{
	uint32_t others = rs->busy_peers - (rs->peer_inflight[peer] ? 1 : 0);
	uint32_t share = (rs->max_inflight - rs->max_inflight / 4) / (others + 1);
	uint32_t least = rs->max_inflight < 8 ? rs->max_inflight : 8;

	return share > least ? share : least;
}

/* Whether one more piece to `peer` fits on the rail, n already batched. */
static bool rail_room(const struct xfer_rail_state *rs, uint32_t peer, uint32_t n)
{
	return rs->inflight + n < rs->max_inflight && rs->peer_inflight[peer] + n < peer_share(rs, peer);
}

/* Hand back at once what a downed peer held: its pieces in flight count as
 * failed now, return their share of the rail budget and release their ops.
 * The provider may still hold them (tcp;ofi_rxm completes writes to a
 * removed address late, or never): they stay allocated, detached (op NULL),
 * until it gives them back (complete_piece), so a late completion touches
 * nothing that was freed. */
static void reclaim_peer(xfer_engine *e, uint32_t peer)
{
	struct xfer_piece *pc;

	while ((pc = e->peers[peer].inflight)) {
		struct xfer_op *op = pc->op;
		struct xfer_ctx_stats_rail *st = e->rail[pc->rail].st;

		piece_untrack(e, pc);
		__atomic_store_n(&st->ops_failed, st->ops_failed + 1, __ATOMIC_RELAXED);
		pc->op = NULL;
		if (pc->is_imm)
			op->targets[pc->target].imm_queued = 0;
		op->pieces_inflight--;
		/* op stays alive while pieces_inflight > 0: only the last of
		 * its pieces here can drop it, and then none of it is left on
		 * this list */
		op_check_done(e, op);
	}
}

/* Fail every unfinished op that involves `peer` and take back its pieces. */
static void peer_down(xfer_engine *e, uint32_t peer, int status)
{
	int expected = 0;

	if (!atomic_compare_exchange_strong(&e->peers[peer].status, &expected, status))
		return;
	/* up and down on the stats page; the worker is their only writer */
	if (e->peers[peer].used && e->stats->peers_up)
		__atomic_store_n(&e->stats->peers_up, e->stats->peers_up - 1, __ATOMIC_RELAXED);
	__atomic_store_n(&e->stats->peers_down, e->stats->peers_down + 1, __ATOMIC_RELAXED);
	xfer_sh_peer_down(e, peer);
	for (uint32_t k = 0; k < e->num_rails; k++)
		e->ops->rail_remove_peer(e->rail[k].r, peer);
	xfer_fail_peer_ops(e, peer, status);
	reclaim_peer(e, peer);
}

/* tcp;ofi_rxm sometimes refuses a connection while many processes set up
 * theirs at once (-ECONNREFUSED). Within the peer timeout of the first
 * refusal that is not a dead peer: whether to wait and post again. */
static bool refused_retry_ok(xfer_engine *e, uint32_t peer)
{
	struct xfer_peer *p = &e->peers[peer];

	if (!peer_is_up(e, peer))
		return false;
	if (!p->refused_since)
		p->refused_since = e->now_ns ? e->now_ns : 1;
	return e->now_ns - p->refused_since < e->timeout_ns;
}

void xfer_peer_down(xfer_engine *e, uint32_t peer, int status)
{
	peer_down(e, peer, status);
}

/* Same-host peers whose process exited (samehost.c's pidfds): down now, so
 * that nothing more is posted into a dead process's memory. */
static void reap_dead_peers(xfer_engine *e)
{
	uint32_t dead[16];
	int n = xfer_sh_reap_dead(e, dead, 16);

	for (int i = 0; i < n; i++)
		peer_down(e, dead[i], -ECONNRESET);
}

/* ---- expansion: piece k of an op -------------------------------------- */

struct gen {
	uint32_t rail, peer, target;
	struct xfer_wr wr;
};

static uint32_t target_of_piece(struct xfer_op *op, uint64_t k)
{
	uint32_t lo = 0, hi = op->num_targets;

	while (hi - lo > 1) {   /* last target whose first_piece <= k */
		uint32_t mid = (lo + hi) / 2;

		if (op->targets[mid].first_piece <= k)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static void op_piece(xfer_engine *e, struct xfer_op *op, uint64_t k, struct gen *g)
{
	const struct xfer_mr *src = op->src;
	const struct xfer_rmr *dst;
	struct xfer_target *t;
	uint64_t soff, doff, len;
	uint32_t rail;

	memset(&g->wr, 0, sizeof(g->wr));
	switch (op->kind) {
	case OP_WRITE:
		t = &op->targets[0];
		dst = t->dst;
		soff = op->src_off + k * op->chunk;
		doff = op->dst_off + k * op->chunk;
		len = op->len - k * op->chunk < op->chunk ? op->len - k * op->chunk : op->chunk;
		rail = (uint32_t)((op->rail0 + k) % e->num_rails);
		g->target = 0;
		break;
	case OP_PAGED: {
		const struct xfer_paged *p = &op->paged;

		t = &op->targets[0];
		dst = t->dst;
		soff = p->src_offset + (uint64_t)op->pages[k] * p->src_stride;
		doff = p->dst_offset + (uint64_t)op->pages[p->num_pages + k] * p->dst_stride;
		len = p->page_size;
		rail = (uint32_t)(k % e->num_rails);
		g->target = 0;
		break;
	}
	default: { /* OP_SCATTER */
		uint32_t ti = target_of_piece(op, k);
		uint64_t sub = k - op->targets[ti].first_piece;

		t = &op->targets[ti];
		dst = t->dst;
		soff = t->src_off + sub * e->max_msg;
		doff = t->dst_off + sub * e->max_msg;
		len = t->len - sub * e->max_msg < e->max_msg ? t->len - sub * e->max_msg : e->max_msg;
		rail = (ti + (uint32_t)sub) % e->num_rails;
		g->target = ti;
		break;
	}
	}
	uint32_t prail = rail % dst->d.num_rails;

	g->rail = rail;
	g->peer = t->peer;
	g->wr.laddr = (const uint8_t *)src->addr + soff;
	g->wr.ldesc = src->rail[rail].desc;
	g->wr.len = len;
	g->wr.raddr = dst->d.rail[prail].raddr + doff;
	g->wr.rkey = dst->d.rail[prail].rkey;
	/* A receiver counts the immediate as "the data is here": its write
	 * must complete only once placed there (a write completed on transmit
	 * would report success for bytes a stopped or dead peer never got). */
	if (t->imm_mode == IMM_ATTACHED) {
		g->wr.has_imm = 1;
		g->wr.imm = t->imm;
		g->wr.delivery = 1;
	} else if (t->imm_mode == IMM_AFTER) {
		g->wr.delivery = 1;
	}
}

/* ---- posting ------------------------------------------------------------ */

static void account_post(xfer_engine *e, uint32_t rail, uint64_t bytes)
{
	struct xfer_ctx_stats_rail *st = e->rail[rail].st;

	__atomic_store_n(&st->bytes_posted, st->bytes_posted + bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&st->ops_posted, st->ops_posted + 1, __ATOMIC_RELAXED);
}

static void complete_piece(xfer_engine *e, struct xfer_piece *pc, int status);

static bool rail_blocked(const struct xfer_rail_state *rs, uint32_t peer)
{
	return rs->blocked[peer / 64] & (1ull << (peer % 64));
}

/* Post a batch of pieces already generated (each pcs[i]->wr is wrs[i]);
 * returns how many were taken. */
static int post_batch(xfer_engine *e, uint32_t rail, uint32_t peer, struct xfer_wr *wrs,
		      struct xfer_piece **pcs, int n, int *err)
{
	struct xfer_rail_state *rs = &e->rail[rail];
	int got = e->ops->post_write(rs->r, peer, wrs, n);

	*err = 0;
	if (got < 0) {
		/* a refused connection set-up is retried like a full queue */
		if (got != -EAGAIN && !(got == -ECONNREFUSED && refused_retry_ok(e, peer)))
			*err = got;
		got = 0;
	}
	if (got < n)
		rs->blocked[peer / 64] |= 1ull << (peer % 64);
	if (got > 0)
		xfer_sh_ring(e, peer, wrs, got);
	for (int i = 0; i < got; i++) {
		account_post(e, rail, wrs[i].len);
		piece_track(e, pcs[i]);
	}
	for (int i = got; i < n; i++)
		piece_put(e, pcs[i]);
	return got;
}

/* Post again the pieces whose connection set-up was refused, once their
 * back-off has passed. They stay in flight meanwhile: posted once, they
 * complete or fail once. */
static int post_retries(xfer_engine *e)
{
	struct xfer_piece **pp = &e->retry, *pc;
	int activity = 0;

	while ((pc = *pp)) {
		struct xfer_rail_state *rs = &e->rail[pc->rail];
		int got;

		if (!pc->op) {   /* its peer went down meanwhile: reclaimed */
			*pp = pc->next_free;
			piece_put(e, pc);
			continue;
		}
		if (e->now_ns < pc->retry_at || rail_blocked(rs, pc->peer)) {
			pp = &pc->next_free;
			continue;
		}
		got = e->ops->post_write(rs->r, pc->peer, &pc->wr, 1);
		if (got == 0 || got == -EAGAIN) {
			rs->blocked[pc->peer / 64] |= 1ull << (pc->peer % 64);
			pp = &pc->next_free;
			continue;
		}
		*pp = pc->next_free;
		pc->retrying = 0;
		activity = 1;
		if (got < 0)
			complete_piece(e, pc, got);   /* may queue it again */
	}
	return activity;
}

/* The peer the next piece of op goes to. */
static uint32_t next_peer(struct xfer_op *op)
{
	if (op->kind != OP_SCATTER)
		return op->targets[0].peer;
	return op->targets[target_of_piece(op, op->pieces_next)].peer;
}

static bool is_held(const uint64_t *held, uint32_t peer)
{
	return held[peer / 64] & (1ull << (peer % 64));
}

static void hold(uint64_t *held, uint32_t peer)
{
	held[peer / 64] |= 1ull << (peer % 64);
}

/* Expand and post what fits of op now. Returns true when op is done with
 * posting (fully posted, or failed); false when its next piece cannot go
 * out: then its peer is held for the rest of the round. */
static bool post_op(xfer_engine *e, struct xfer_op *op, uint64_t *held, int *activity)
{
	struct xfer_wr wrs[POST_BATCH];
	struct xfer_piece *pcs[POST_BATCH];
	bool stop = false;

	if (!op->deadline_ns)
		op->deadline_ns = e->now_ns + e->timeout_ns;
	while (!op->status && op->pieces_next < op->pieces_total && !stop) {
		uint32_t brail = 0, bpeer = 0;
		int n = 0, err = 0, got;
		uint64_t first = op->pieces_next;

		/* one batch: consecutive pieces on the same rail and peer */
		while (n < POST_BATCH && op->pieces_next + n < op->pieces_total) {
			struct gen g;
			struct xfer_rail_state *rs;

			op_piece(e, op, op->pieces_next + n, &g);
			rs = &e->rail[g.rail];
			if (n && (g.rail != brail || g.peer != bpeer))
				break;
			if (is_held(held, g.peer) || rail_blocked(rs, g.peer) ||
			    !rail_room(rs, g.peer, n)) {
				/* A full rail is not this peer's doing: its op's
				 * clock restarts. Its own share used up or EAGAIN
				 * is: that runs on. */
				if (rs->inflight + n >= rs->max_inflight)
					op->deadline_ns = e->now_ns + e->timeout_ns;
				hold(held, g.peer);
				stop = true;
				break;
			}
			if (!peer_is_up(e, g.peer)) {
				op->status = atomic_load(&e->peers[g.peer].status);
				stop = true;
				break;
			}
			int denied = xfer_sh_piece_ok(e, g.peer, op->targets[g.target].dst, &g.wr);
			if (denied) {
				op->status = denied;
				stop = true;
				break;
			}
			struct xfer_piece *pc = piece_get(e);
			if (!pc) {
				op->status = -ENOMEM;
				stop = true;
				break;
			}
			pc->op = op;
			pc->target = g.target;
			pc->peer = g.peer;
			pc->rail = (uint16_t)g.rail;
			pc->is_imm = 0;
			pc->retrying = 0;
			pc->retries = 0;
			pc->len = g.wr.len;
			g.wr.ctx = pc;
			pc->wr = g.wr;
			wrs[n] = g.wr;
			pcs[n] = pc;
			brail = g.rail;
			bpeer = g.peer;
			n++;
		}
		if (!n)
			break;
		got = post_batch(e, brail, bpeer, wrs, pcs, n, &err);
		op->pieces_next = first + got;
		op->pieces_inflight += got;
		if (got)
			*activity = 1;
		if (err) {
			op->status = err;
			if (err == -ENOTCONN || err == -ECONNRESET || err == -EHOSTUNREACH)
				peer_down(e, bpeer, err);
		} else if (got < n) {
			hold(held, bpeer);
		}
		if (got < n)
			stop = true;
	}
	return op->status || op->pieces_next == op->pieces_total;
}

/* op left its posting queue (already unlinked). */
static void post_leave(xfer_engine *e, struct xfer_op *op)
{
	op->next = NULL;
	op->in_post = false;
	op_check_done(e, op);
}

/* Post the ops waiting to be posted. Per peer they go in submission order:
 * an op whose next piece cannot go out (its peer's share of a rail is used
 * up, the provider said EAGAIN, the rail is full) holds back the later ops
 * to the same peer, never those to other peers. Ops to one peer wait on
 * that peer's queue, so a stalled peer's backlog costs nothing to pass
 * over; ops to several peers (scatter) share one list, scanned past the
 * ones that are held. */
static int post_pending(xfer_engine *e)
{
	uint64_t held[XFER_MAX_PEERS / 64] = { 0 };
	struct xfer_op **pp = &e->post_head, *prev = NULL;
	uint32_t *rp = &e->ready_head, rprev = 0;
	int activity = 0;

	/* Nothing queued: skip clearing the blocked bits, a memset per rail on
	 * every turn of the idle spin (it showed in profiles of immediate
	 * latency). Bits left set can only hold a new immediate back for one
	 * turn: the next turn with one queued clears them here. */
	if (!posting_queued(e) && !e->imm_ready_n)
		return 0;
	for (uint32_t r = 0; r < e->num_rails; r++)
		memset(e->rail[r].blocked, 0, sizeof(e->rail[r].blocked));

	while (*pp) {
		struct xfer_op *op = *pp;

		if (!op->status && op->pieces_next < op->pieces_total && is_held(held, next_peer(op))) {
			prev = op;   /* behind an earlier op to the same peer */
			pp = &op->next;
			continue;
		}
		if (post_op(e, op, held, &activity)) {
			*pp = op->next;
			if (e->post_tail == op)
				e->post_tail = prev;
			post_leave(e, op);
			continue;
		}
		prev = op;
		pp = &op->next;
	}

	while (*rp) {
		uint32_t pi = *rp - 1;
		struct xfer_peer *p = &e->peers[pi];
		struct xfer_op *op;

		while ((op = p->post_head) && !is_held(held, pi)) {
			if (!post_op(e, op, held, &activity))
				break;
			p->post_head = op->next;
			if (!p->post_head)
				p->post_tail = NULL;
			post_leave(e, op);   /* its callback may queue more */
		}
		if (p->post_head) {
			rprev = pi + 1;
			rp = &p->ready_next;
			continue;
		}
		/* nothing left to post for this peer: off the list */
		*rp = p->ready_next;
		if (e->ready_tail == pi + 1)
			e->ready_tail = rprev;
		p->ready = false;
		p->ready_next = 0;
	}
	/* the next round starts with another peer: none always goes first */
	if (e->ready_head && e->ready_head != e->ready_tail) {
		uint32_t first = e->ready_head;

		e->ready_head = e->peers[first - 1].ready_next;
		e->peers[first - 1].ready_next = 0;
		e->peers[e->ready_tail - 1].ready_next = first;
		e->ready_tail = first;
	}
	return activity;
}

/* Immediates that follow their targets' data. */
static int post_imm_ready(xfer_engine *e)
{
	uint32_t kept = 0;
	int activity = 0;

	for (uint32_t i = 0; i < e->imm_ready_n; i++) {
		struct xfer_target *t = e->imm_ready[i];
		struct xfer_op *op = e->imm_ready_op[i];
		struct xfer_peer *p = &e->peers[t->peer];
		uint32_t rail = t->peer % e->num_rails;
		struct xfer_rail_state *rs = &e->rail[rail];
		struct xfer_piece *pc;
		struct xfer_wr wr = { 0 };
		int err, got;

		if (op->finished || !peer_is_up(e, t->peer)) {
			if (!op->status)
				op->status = op->finished ? op->status : atomic_load(&p->status);
			op->pieces_inflight--;
			op_check_done(e, op);
			continue;
		}
		if (rail_blocked(rs, t->peer) || !rail_room(rs, t->peer, 0) ||
		    !(pc = piece_get(e))) {
			e->imm_ready[kept] = t;
			e->imm_ready_op[kept++] = op;
			continue;
		}
		pc->op = op;
		pc->target = (uint32_t)(t - op->targets);
		pc->peer = t->peer;
		pc->rail = (uint16_t)rail;
		pc->is_imm = 1;
		pc->retrying = 0;
		pc->retries = 0;
		pc->len = 0;
		wr.has_imm = 1;
		wr.delivery = 1;   /* counted by the receiver: see op_piece */
		wr.imm = t->imm;
		wr.rkey = p->sink[rail % p->num_rails].rkey;
		wr.raddr = p->sink[rail % p->num_rails].raddr;
		wr.ctx = pc;
		pc->wr = wr;
		got = post_batch(e, rail, t->peer, &wr, &pc, 1, &err);
		if (got == 1) {
			t->imm_posted = 1;
			activity = 1;
			continue;
		}
		if (err) {
			op->status = err;
			op->pieces_inflight--;
			op_check_done(e, op);
			continue;
		}
		e->imm_ready[kept] = t;
		e->imm_ready_op[kept++] = op;
	}
	e->imm_ready_n = kept;
	return activity;
}

/* ---- completions -------------------------------------------------------- */

static bool is_peer_error(int status)
{
	return status == -ECONNRESET || status == -ECONNREFUSED || status == -EHOSTUNREACH ||
	       status == -ENOTCONN || status == -EPIPE || status == -ETIMEDOUT ||
	       status == -ESHUTDOWN || status == -ECONNABORTED;
}

/* A refused piece waits for a re-post (post_retries) instead of failing,
 * within the peer timeout of the first refusal; back-off 1 ms doubling to
 * 64 ms. */
static bool retry_refused(xfer_engine *e, struct xfer_piece *pc)
{
	if (pc->op->finished || !refused_retry_ok(e, pc->peer))
		return false;
	pc->retrying = 1;
	pc->retry_at = e->now_ns + (1000000ull << (pc->retries < 6 ? pc->retries : 6));
	pc->retries++;
	pc->next_free = e->retry;
	e->retry = pc;
	return true;
}

static void complete_piece(xfer_engine *e, struct xfer_piece *pc, int status)
{
	struct xfer_op *op = pc->op;
	struct xfer_ctx_stats_rail *st = e->rail[pc->rail].st;
	struct xfer_target *t;

	if (pc->probe) {
		/* a connect probe (connect.c) keeps its own books */
		xfer_connect_probe_done(e, pc, status);
		return;
	}
	if (!op) {
		/* detached when its peer went down (reclaim_peer): counted as
		 * failed then; the provider is done with it only now */
		piece_put(e, pc);
		return;
	}
	if (status == -ECONNREFUSED && retry_refused(e, pc))
		return;
	t = &op->targets[pc->target];
	piece_untrack(e, pc);
	if (status) {
		__atomic_store_n(&st->ops_failed, st->ops_failed + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&e->stats->last_error, status, __ATOMIC_RELAXED);
		if (!op->status)
			op->status = status;
		/* pc still counts in op->pieces_inflight: op outlives this */
		if (is_peer_error(status))
			peer_down(e, pc->peer, status);
	} else {
		struct xfer_peer *p = &e->peers[pc->peer];

		p->last_done_ns = e->now_ns;   /* it answers: see check_timeouts */
		p->refused_since = 0;
		__atomic_store_n(&st->ops_completed, st->ops_completed + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&st->bytes_completed, st->bytes_completed + pc->len,
				 __ATOMIC_RELAXED);
	}
	if (!op->finished)
		op->deadline_ns = e->now_ns + e->timeout_ns;
	/* The immediate is no longer outstanding: check_timeouts must not blame
	 * this target for a barrier whose other targets stopped answering. */
	if (pc->is_imm)
		t->imm_queued = 0;
	if (!pc->is_imm && --t->data_left == 0 && t->imm_mode == IMM_AFTER && !op->status &&
	    !op->finished && !t->imm_queued)
		imm_ready_push(e, op, t);
	op->pieces_inflight--;
	piece_put(e, pc);
	op_check_done(e, op);
}

static int poll_rails(xfer_engine *e)
{
	struct xfer_cqe cqe[POLL_BATCH];
	int activity = 0;

	for (uint32_t r = 0; r < e->num_rails; r++) {
		int n = e->ops->poll(e->rail[r].r, cqe, POLL_BATCH);

		for (int i = 0; i < n; i++) {
			switch (cqe[i].kind) {
			case XFER_CQE_LOCAL:
				if (cqe[i].ctx)
					complete_piece(e, cqe[i].ctx, cqe[i].status);
				break;
			case XFER_CQE_IMM: {
				struct xfer_ctx_stats_rail *st = e->rail[r].st;

				__atomic_store_n(&st->imm_received, st->imm_received + 1,
						 __ATOMIC_RELAXED);
				xfer_counter_arrival(e, cqe[i].imm);
				break;
			}
			case XFER_CQE_PEER_DOWN:
				if (cqe[i].peer < XFER_MAX_PEERS)
					peer_down(e, cqe[i].peer, cqe[i].status ? cqe[i].status
										: -ECONNRESET);
				break;
			}
		}
		if (n > 0)
			activity = 1;
	}
	return activity;
}

/* ---- timeouts ---------------------------------------------------------- */

/* Every op the worker holds is on the live list (ops.c) until it is
 * finished and nothing of it is in flight. */
void xfer_fail_peer_ops(xfer_engine *e, uint32_t peer, int status)
{
	for (struct xfer_op *op = xfer_live_first(e), *nx; op; op = nx) {
		nx = xfer_live_next(op);
		if (op->finished)
			continue;
		for (uint32_t i = 0; i < op->num_targets; i++) {
			if (op->targets[i].peer == peer) {
				if (!op->status)
					op->status = status;
				/* Pieces may never come back from a dead peer: the
				 * caller hears now; reclaim_peer then takes them
				 * back, and the op is released with its last. */
				xfer_op_finish(op, op->status);
				break;
			}
		}
	}
}

static void check_timeouts(xfer_engine *e, uint64_t now)
{
	for (struct xfer_op *op = xfer_live_first(e), *nx; op; op = nx) {
		nx = xfer_live_next(op);
		/* An op without a deadline has not been tried yet: it waits
		 * behind earlier ops to the same peer (post_pending). */
		if (op->finished || !op->deadline_ns || now < op->deadline_ns)
			continue;
		/* Blame a target with work on the wire that did not come back,
		 * then one with data outstanding, then one whose immediate could
		 * not even be posted (its queue is full: the peer stalls). */
		uint32_t peer = op->targets[0].peer;
		int best = 4;

		for (uint32_t i = 0; i < op->num_targets && best > 1; i++) {
			const struct xfer_target *t = &op->targets[i];
			int rank = t->imm_posted && t->imm_queued ? 1 : t->data_left ? 2 :
				   t->imm_queued ? 3 : 4;

			if (rank < best) {
				best = rank;
				peer = t->peer;
			}
		}
		/* A peer that completed other work within the timeout is answering:
		 * this op only waits behind that work (a deep queue at low bandwidth,
		 * e.g. many large writes posted at once). Failing it would declare a
		 * live peer down. */
		uint64_t last = e->peers[peer].last_done_ns;

		if (last && now - last < e->timeout_ns) {
			op->deadline_ns = last + e->timeout_ns;
			continue;
		}
		if (!op->status)
			op->status = -ETIMEDOUT;
		/* The peer is down before anyone hears of the failure, so that
		 * xfer_peer_status agrees with the status. peer_down finishes
		 * op (it involves the peer) and may release it and others
		 * (reclaim_peer): op and nx may be gone after it. Start over;
		 * what is finished is passed over, each peer goes down once. */
		if (!peer_is_up(e, peer)) {
			xfer_op_finish(op, op->status);
			continue;
		}
		peer_down(e, peer, -ETIMEDOUT);
		nx = xfer_live_first(e);
	}
}

/* ---- queue and commands -------------------------------------------------- */

void xfer_worker_submit(xfer_engine *e, struct xfer_op *op)
{
	xfer_live_add(e, op);
	op->rail0 = e->rr++ % e->num_rails;
	/* Immediates with no data ahead of them are due at once. */
	for (uint32_t i = 0; i < op->num_targets; i++) {
		struct xfer_target *t = &op->targets[i];

		if (t->imm_mode == IMM_AFTER && t->data_left == 0)
			imm_ready_push(e, op, t);
	}
	if (op->pieces_total > 0) {
		post_list_append(e, op);
	} else {
		/* Immediates alone never pass through post_pending, which is where
		 * an op's deadline is first set: without one here, an immediate to
		 * a peer that stops answering (never posted after EAGAIN, or never
		 * completed) would wait forever instead of failing by timeout. */
		op->deadline_ns = e->now_ns + e->timeout_ns;
		op_check_done(e, op);
	}
}

static void cancel_op(xfer_engine *e, struct xfer_op *op)
{
	op->status = -ECANCELED;
	xfer_op_finish(op, -ECANCELED);
	xfer_op_unhold(op);
	xfer_op_put(op);
}

int xfer_worker_exec_cmd(xfer_engine *e, struct xfer_cmd *c)
{
	int ret = 0;

	switch (c->kind) {
	case CMD_ADD_PEER:
		ret = xfer_worker_add_peer(e, c->u.add_peer.peer, c->u.add_peer.addr);
		break;
	case CMD_MR_REG: {
		struct xfer_mr *mr = c->u.mr.mr;
		uint32_t i;

		for (i = 0; i < e->num_rails && !ret; i++)
			ret = e->ops->mr_reg(e->rail[i].r, mr->addr, mr->len, mr->kind,
					     c->u.mr.dmabuf_fd, c->u.mr.dmabuf_off,
					     !!(mr->flags & XFER_MR_REMOTE_WRITE), &mr->rail[i]);
		if (!ret)
			ret = xfer_sh_region_add(e, mr);   /* same-host peers check it */
		if (ret)
			while (i-- > 0)
				if (mr->rail[i].handle)
					e->ops->mr_dereg(e->rail[i].r, &mr->rail[i]);
		break;
	}
	case CMD_MR_DEREG:
		xfer_sh_region_del(e, c->u.mr.mr);   /* revoked before the memory can go */
		for (uint32_t i = 0; i < e->num_rails; i++)
			if (c->u.mr.mr->rail[i].handle)
				e->ops->mr_dereg(e->rail[i].r, &c->u.mr.mr->rail[i]);
		break;
	case CMD_EXPECT:
		xfer_counter_add_expect(e, c->u.expect.imm, c->u.expect.x);
		break;
	case CMD_CANCEL_EXPECT:
		ret = xfer_counter_cancel_expect(e, c->u.expect.imm, c->u.expect.x) ? 0 : -EALREADY;
		break;
	case CMD_WATCH_ADD:
		c->u.watch.w->next = e->watches;
		e->watches = c->u.watch.w;
		e->watches_polled += !c->u.watch.w->kicked;
		break;
	case CMD_WATCH_REMOVE:
		for (struct xfer_watch **pp = &e->watches; *pp; pp = &(*pp)->next) {
			if (*pp == c->u.watch.w) {
				*pp = c->u.watch.w->next;
				e->watches_polled -= !c->u.watch.w->kicked;
				break;
			}
		}
		break;
	case CMD_STOP:
		atomic_store(&e->stopping, true);
		break;
	case CMD_CONNECT:
		xfer_connect_begin(e, c->u.connect.req);
		break;
	default:
		ret = -EINVAL;
	}
	c->result = ret;
	if (c->async) {
		free(c);
	} else {
		atomic_store_explicit(&c->done, 1, memory_order_release);
		xfer_futex_wake(&c->done);
	}
	return ret;
}

static int drain_queue(xfer_engine *e)
{
	struct xfer_qnode *n;
	bool busy;
	int activity = 0;

	while ((n = xfer_mpsc_pop(&e->q, &busy))) {
		activity = 1;
		if (n->kind == QNODE_OP) {
			struct xfer_op *op = (struct xfer_op *)n;

			if (atomic_load(&e->stopping))
				cancel_op(e, op);
			else
				xfer_worker_submit(e, op);
		} else {
			xfer_worker_exec_cmd(e, (struct xfer_cmd *)n);
		}
	}
	return activity || busy;
}

void xfer_engine_kick(xfer_engine *e)
{
	if (atomic_load(&e->sleeping)) {
		if (e->evfd >= 0) {
			uint64_t one = 1;

			if (write(e->evfd, &one, sizeof(one)) < 0)
				(void)0;   /* already signalled: the counter is non-zero */
		} else if (xfer_sh_uses_bell(e)) {
			xfer_sh_wake(e);
		} else {
			atomic_fetch_add(&e->wake, 1);
			xfer_futex_wake(&e->wake);
		}
	}
}

/* Writes posted and not yet completed on some rail. */
static bool rails_busy(const xfer_engine *e)
{
	for (uint32_t i = 0; i < e->num_rails; i++)
		if (e->rail[i].inflight)
			return true;
	return false;
}

/* Sleep until traffic or a submission arrives (epoll), or a while.
 * Returns true when a rail woke us: traffic is flowing, even where it makes
 * no completion here (plain RMA writes into us), so keep polling. */
static bool idle_sleep(xfer_engine *e, uint64_t sleep_ns)
{
	bool traffic = false, bell = xfer_sh_uses_bell(e);
	uint32_t seen = bell ? xfer_sh_sleep_begin(e) : atomic_load(&e->wake);

	atomic_store(&e->sleeping, 1);
	/* A kicker stores its word, then reads `sleeping` (both sequentially
	 * consistent): it wakes us, or we see its word here. */
	if (!xfer_mpsc_empty(&e->q) || (e->watches && xfer_watches_moved(e))) {
		/* a submission or an increase raced with going to sleep */
		if (bell)
			xfer_sh_sleep(e, seen, 0);   /* only clears the flag */
	} else if (bell) {
		/* On our doorbell: peers ring it when they posted work that needs
		 * us (shm's small messages, local's immediates). A ring that
		 * raced with our last poll is caught by the timeout. */
		traffic = xfer_sh_sleep(e, seen, sleep_ns);
	} else if (e->epfd >= 0) {
		struct epoll_event ev[8];
		bool can = true;
		uint64_t drain;

		for (uint32_t i = 0; i < e->num_rails && can; i++)
			can = e->ops->trywait(e->rail[i].r) == 0 ||
			      e->ops->wait_fd(e->rail[i].r) < 0;
		/* With every rail behind an fd, events wake us: the timeout only
		 * paces deadline checks. Otherwise poll the others every 1 ms. */
		int n = can ? epoll_wait(e->epfd, ev, 8, e->all_rails_wait ? 50 : 1) : 0;

		for (int i = 0; i < n; i++)
			traffic |= ev[i].data.fd != e->evfd;
		if (read(e->evfd, &drain, sizeof(drain)) < 0)
			(void)0;   /* nothing was signalled */
	} else {
		xfer_futex_wait(&e->wake, seen, (int64_t)sleep_ns);
	}
	atomic_store(&e->sleeping, 0);
	return traffic;
}

static void shutdown_all(xfer_engine *e)
{
	/* Everything still in flight hears -ECANCELED. */
	for (struct xfer_op *op = xfer_live_first(e), *nx; op; op = nx) {
		nx = xfer_live_next(op);
		if (!op->finished) {
			op->status = -ECANCELED;
			xfer_op_finish(op, -ECANCELED);
		}
	}
	/* Drop the worker's references: the rails close after this thread. */
	while (xfer_live_first(e))
		xfer_live_drop(e, xfer_live_first(e));
	e->post_head = e->post_tail = NULL;
	for (uint32_t i = 0; i < XFER_MAX_PEERS; i++) {
		e->peers[i].post_head = e->peers[i].post_tail = NULL;
		e->peers[i].ready = false;
		e->peers[i].ready_next = 0;
	}
	e->ready_head = e->ready_tail = 0;
	e->imm_ready_n = 0;
	xfer_counters_shutdown(e);
	/* commands that raced with the stop */
	drain_queue(e);
	xfer_connect_shutdown(e);
}

void *xfer_worker_main(void *arg)
{
	xfer_engine *e = arg;
	uint64_t last_activity = xfer_now_ns();
	uint64_t idle_ns = (uint64_t)e->attr.idle_spin_us * 1000;
	uint64_t sleep_ns = 50000;
	uint32_t idle_loops = 0;

	xfer_worker_self = e;
	e->now_ns = last_activity;
	pthread_setname_np(pthread_self(), "xfer-worker");   /* for top -H, perf, gdb */
	if (e->worker_cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(e->worker_cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	while (!atomic_load_explicit(&e->stopping, memory_order_relaxed)) {
		int act;
		uint64_t now;

		/* One clock read per loop: deadlines need no better precision.
		 * Spinning idle, one every 8 turns (the read was a fifth of an
		 * idle turn in profiles of immediate latency); idle_loops is 0
		 * after activity, a sleep or a yield, so each is followed by one. */
		if ((idle_loops & 7) == 0)
			e->now_ns = xfer_now_ns();
		act = drain_queue(e);
		/* Once per drained batch (what was just submitted may target a
		 * peer that died: nothing may land in its memory or report
		 * success) and every timeout scan (1 ms). */
		if (act || e->now_ns >= e->next_timeout_scan)
			reap_dead_peers(e);

		act |= poll_rails(e);
		if (e->retry)
			act |= post_retries(e);
		act |= post_imm_ready(e);
		act |= post_pending(e);
		if (e->conn)
			act |= xfer_connect_progress(e);
		if (e->watches)
			xfer_watches_poll(e);
		now = e->now_ns;
		if (now >= e->next_timeout_scan) {
			check_timeouts(e, now);
			e->next_timeout_scan = now + 1000000;
		}
		if (act) {
			last_activity = now;
			sleep_ns = 50000;
			idle_loops = 0;
			continue;
		}
		/* Polling with nothing to do: let other threads have the core now
		 * and then (many engines on few cores, as in loopback runs). Not
		 * held back after activity: with two workers on one core, the
		 * peer whose answer we wait for may be the thread we keep out
		 * (a 20 us grace made immediates 23 us under load). */
		if ((++idle_loops & 31) == 0)
			sched_yield();
		if (now - last_activity < idle_ns || posting_queued(e) || e->imm_ready_n ||
		    (e->ops->hw_progress && rails_busy(e)))
			continue;
		/* Idle: sleep, but wake for submissions and arrivals (progress is
		 * manual on shm and tcp). Watched words are plain memory: no event
		 * tells us they changed, so with watches we only yield, unless
		 * every producer kicks us (xfer_watch_kick). */
		if (e->watches_polled)
			sched_yield();
		else if (idle_sleep(e, sleep_ns))
			last_activity = xfer_now_ns();
		if (sleep_ns < 1000000)
			sleep_ns *= 2;
		idle_loops = 0;   /* read the clock after the sleep */
	}
	shutdown_all(e);
	xfer_worker_self = NULL;
	if (e->destroy_deferred) {
		/* xfer_engine_destroy ran in a callback: nobody joins us. */
		pthread_detach(pthread_self());
		xfer_engine_free(e);
	}
	return NULL;
}
