/* SPDX-License-Identifier: MIT */
/*
 * xfer_engine_connect: pay a peer's set-up before the first transfer.
 *
 * What a first contact sets up differs per backend, and most set it up
 * only when something is sent: libfabric's rxm (tcp;ofi_rxm,
 * verbs;ofi_rxm) opens its connection on the first transfer to a peer,
 * EFA its queue-pair handshake, shm maps the peer's region; the verbs
 * backend runs its QP handshake from add_peer on and refuses posts until
 * it is done; local maps the peer's ring at add_peer and finds a dead peer
 * only by writing to it. So connecting is the same everywhere: a probe, an
 * 8-byte write from our immediate sink (e->sink) into the peer's sink (the
 * 64 bytes every engine registers for immediates; nothing reads its
 * bytes), on every rail, with delivery-complete so that it completes only
 * once the peer's side has placed it. When every rail's probe to a peer
 * has completed, the next write to it pays no set-up.
 *
 * The worker drives it without blocking: the API thread queues a request
 * (CMD_CONNECT) and sleeps on it; each loop the worker (re)posts the probes
 * that are due, and probe completions come back through complete_piece
 * (struct xfer_piece.probe). A refused connection (-ECONNREFUSED: tcp
 * between many processes starting at once, a listener not yet up) is
 * retried with backoff until the request's deadline; any other error, or
 * the deadline, takes the peer down with that error (the last refusal, or
 * -ETIMEDOUT when nothing came back), which xfer_peer_status then reports.
 *
 * Per peer there is one round of probes at a time, shared by every request
 * that waits for that peer. The probe records live as long as the engine:
 * a probe that completes after its request gave up (a peer that answers
 * late, or never: its record is then simply never reused) still finds one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PROBE_LEN 8
#define BACKOFF_FIRST_NS 1000000ull     /* 1 ms after the first refusal */
#define BACKOFF_MAX_NS 100000000ull     /* doubling up to 100 ms */
/* The worker keeps polling while a round's set-up runs (posts refused for
 * now, probes in flight) for this long; after that (a peer that does not
 * answer) it may sleep between polls as when idle, instead of burning a
 * core until the deadline. */
#define SPIN_NS 100000000ull

struct conn_probe {
	struct xfer_piece pc;        /* what the completion hands back (first) */
	uint64_t round;              /* the round it was posted in */
	bool posted;                 /* in flight */
	bool ok;                     /* completed in `round` */
};

struct conn_peer {
	struct conn_probe probe[XFER_MAX_RAILS];
	uint64_t round;              /* the current or last round (0: none yet) */
	uint64_t start_ns;           /* when it started */
	uint64_t done_round;         /* the last finished round */
	int done_status;             /* ... and how it finished */
	bool active;                 /* a round is running */
	uint32_t refusals;           /* in this round, for the backoff */
	uint64_t next_ns;            /* no (re)post before this (backoff) */
	int last_err;                /* the last error of this round */
};

struct xfer_connect_state {
	struct xfer_connect_req *reqs;          /* requests not yet finished */
	struct conn_peer *peer[XFER_MAX_PEERS]; /* made on a peer's first connect */
};

struct conn_ent {
	uint32_t peer;
	int status;
	bool done;
	uint64_t round;              /* the round of its peer it waits for */
};

struct xfer_connect_req {
	struct xfer_connect_req *next;
	uint64_t timeout_ns;
	uint64_t deadline_ns;        /* worker: from when it took the request */
	int result;
	_Atomic uint32_t finished;   /* futex: 1 when result is final */
	uint32_t n;
	struct conn_ent ent[];
};

/* ---- worker side ------------------------------------------------------- */

static void req_finish(struct xfer_connect_req *req, int result)
{
	req->result = result;
	atomic_store_explicit(&req->finished, 1, memory_order_release);
	xfer_futex_wake(&req->finished);
}

static void round_end(struct conn_peer *cp, int status)
{
	cp->active = false;
	cp->done_round = cp->round;
	cp->done_status = status;
}

/* A round failed for good: the peer goes down with the error, so that its
 * operations fail and xfer_peer_status names it. */
static void round_fail(xfer_engine *e, uint32_t peer, struct conn_peer *cp, int err)
{
	round_end(cp, err);
	xfer_peer_down(e, peer, err);
}

static void probe_error(xfer_engine *e, uint32_t peer, struct conn_peer *cp, int err)
{
	cp->last_err = err;
	if (err == -ECONNREFUSED) {
		uint64_t wait = BACKOFF_FIRST_NS << (cp->refusals < 7 ? cp->refusals : 7);

		cp->refusals++;
		cp->next_ns = e->now_ns + (wait < BACKOFF_MAX_NS ? wait : BACKOFF_MAX_NS);
		return;
	}
	round_fail(e, peer, cp, err);
}

static void account(xfer_engine *e, uint32_t rail, int what, int status)
{
	struct xfer_ctx_stats_rail *st = e->rail[rail].st;

	xfer_publish_rail_inflight(e, rail);   /* the caller just changed it */
	/* Probes are writes on the rail like any other: counted, so that
	 * posted = completed + failed + in flight holds. */
	if (what == 0) {
		__atomic_store_n(&st->ops_posted, st->ops_posted + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&st->bytes_posted, st->bytes_posted + PROBE_LEN, __ATOMIC_RELAXED);
	} else if (status) {
		__atomic_store_n(&st->ops_failed, st->ops_failed + 1, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&st->ops_completed, st->ops_completed + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&st->bytes_completed, st->bytes_completed + PROBE_LEN,
				 __ATOMIC_RELAXED);
	}
}

/* Post what is due of peer's round; the round ends here when every rail's
 * probe completed. Returns 1 when the worker should keep polling (a post
 * was taken, or refused for now: set-up under way). */
static int drive(xfer_engine *e, uint32_t peer, struct conn_peer *cp)
{
	const struct xfer_peer *p = &e->peers[peer];
	uint32_t ok = 0;
	int act = 0, busy = e->now_ns - cp->start_ns < SPIN_NS;

	for (uint32_t k = 0; k < e->num_rails && cp->active; k++) {
		struct conn_probe *pr = &cp->probe[k];
		struct xfer_rail_state *rs = &e->rail[k];
		uint32_t pk = k % p->num_rails;

		if (pr->posted) {
			act |= busy;   /* its completion needs polling */
			continue;
		}
		if (pr->ok && pr->round == cp->round) {
			ok++;
			continue;
		}
		if (e->now_ns < cp->next_ns)
			continue;   /* backing off after a refusal */
		if (rs->inflight >= rs->max_inflight) {
			act |= busy;
			continue;
		}
		struct xfer_wr wr = {
			.laddr = e->sink_buf,
			.ldesc = e->sink->rail[k].desc,
			.len = PROBE_LEN,
			.raddr = p->sink[pk].raddr,
			.rkey = p->sink[pk].rkey,
			.delivery = 1,
			.ctx = &pr->pc,
		};
		pr->pc.op = NULL;
		pr->pc.target = peer;
		pr->pc.rail = (uint16_t)k;
		pr->pc.is_imm = 0;
		pr->pc.probe = 1;
		pr->pc.len = PROBE_LEN;
		int got = e->ops->post_write(rs->r, peer, &wr, 1);

		if (got == 1) {
			xfer_sh_ring(e, peer, &wr, 1);   /* an idle target must progress it */
			pr->posted = true;
			pr->ok = false;
			pr->round = cp->round;
			rs->inflight++;
			account(e, k, 0, 0);
			act = 1;
		} else if (got == 0 || got == -EAGAIN) {
			act |= busy;   /* queue full or set-up running: again next loop */
		} else {
			probe_error(e, peer, cp, got);
		}
	}
	if (cp->active && ok == e->num_rails)
		round_end(cp, 0);
	return act;
}

void xfer_connect_probe_done(xfer_engine *e, struct xfer_piece *pc, int status)
{
	struct conn_probe *pr = (struct conn_probe *)pc;
	uint32_t peer = pc->target;
	struct conn_peer *cp = e->conn->peer[peer];

	e->rail[pc->rail].inflight--;
	account(e, pc->rail, 1, status);
	pr->posted = false;
	if (!cp->active || pr->round != cp->round)
		return;   /* a round that already ended */
	if (!status)
		pr->ok = true;
	else
		probe_error(e, peer, cp, status);
}

/* Start (or join) a round of probes for every peer of req. */
void xfer_connect_begin(xfer_engine *e, struct xfer_connect_req *req)
{
	if (atomic_load(&e->stopping)) {
		req_finish(req, -ECANCELED);
		return;
	}
	if (!e->conn && !(e->conn = calloc(1, sizeof(*e->conn)))) {
		req_finish(req, -ENOMEM);
		return;
	}
	e->now_ns = xfer_now_ns();
	req->deadline_ns = e->now_ns + req->timeout_ns;
	for (uint32_t i = 0; i < req->n; i++) {
		struct conn_ent *en = &req->ent[i];
		struct conn_peer **cpp = &e->conn->peer[en->peer];

		if (!*cpp && !(*cpp = calloc(1, sizeof(**cpp)))) {
			en->status = -ENOMEM;
			en->done = true;
			continue;
		}
		struct conn_peer *cp = *cpp;

		if (!cp->active) {
			cp->round++;
			cp->start_ns = e->now_ns;
			cp->active = true;
			cp->refusals = 0;
			cp->next_ns = 0;
			cp->last_err = 0;
		}
		en->round = cp->round;
	}
	req->next = e->conn->reqs;
	e->conn->reqs = req;
}

int xfer_connect_progress(xfer_engine *e)
{
	struct xfer_connect_req **pp = &e->conn->reqs;
	int act = 0;

	while (*pp) {
		struct xfer_connect_req *req = *pp;
		bool all = true;

		for (uint32_t i = 0; i < req->n; i++) {
			struct conn_ent *en = &req->ent[i];
			struct conn_peer *cp = e->conn->peer[en->peer];
			int st;

			if (en->done)
				continue;
			st = atomic_load_explicit(&e->peers[en->peer].status, memory_order_relaxed);
			if (!st && cp->done_round < en->round) {
				if (e->now_ns >= req->deadline_ns)
					round_fail(e, en->peer, cp,
						   cp->last_err ? cp->last_err : -ETIMEDOUT);
				else
					act |= drive(e, en->peer, cp);
				st = atomic_load_explicit(&e->peers[en->peer].status,
							  memory_order_relaxed);
			}
			if (st) {
				/* down (by us or otherwise): this round is over */
				if (cp->active)
					round_end(cp, st);
				en->status = st;
				en->done = true;
			} else if (cp->done_round >= en->round) {
				en->status = cp->done_status;
				en->done = true;
			} else {
				all = false;
			}
		}
		if (!all) {
			pp = &req->next;
			continue;
		}
		int result = 0;

		for (uint32_t i = 0; i < req->n && !result; i++)
			result = req->ent[i].status;
		*pp = req->next;
		req_finish(req, result);   /* the caller owns req from here */
	}
	return act;
}

/* The worker stops: waiting callers hear -ECANCELED; the rails close after
 * this thread, so no probe completes later and the records can go. */
void xfer_connect_shutdown(xfer_engine *e)
{
	if (!e->conn)
		return;
	while (e->conn->reqs) {
		struct xfer_connect_req *req = e->conn->reqs;

		e->conn->reqs = req->next;
		req_finish(req, -ECANCELED);
	}
	for (uint32_t i = 0; i < XFER_MAX_PEERS; i++)
		free(e->conn->peer[i]);
	free(e->conn);
	e->conn = NULL;
}

/* ---- API --------------------------------------------------------------- */

XFER_EXPORT int xfer_engine_connect(xfer_engine *e, const uint32_t *peers, uint32_t num_peers,
				    int timeout_ms)
{
	struct xfer_cmd c = { .kind = CMD_CONNECT };
	struct xfer_connect_req *req;
	int ret;

	if (!e || !peers || !num_peers || num_peers > XFER_MAX_PEERS)
		return -EINVAL;
	for (uint32_t i = 0; i < num_peers; i++)
		if (peers[i] >= XFER_MAX_PEERS || !e->peers[peers[i]].used)
			return -EINVAL;
	/* From a completion callback the worker would wait for itself. */
	if (xfer_worker_self == e)
		return -EDEADLK;
	req = calloc(1, sizeof(*req) + num_peers * sizeof(req->ent[0]));
	if (!req)
		return -ENOMEM;
	req->n = num_peers;
	req->timeout_ns = (uint64_t)(timeout_ms > 0 ? (uint32_t)timeout_ms : e->timeout_ms) *
			  1000000ull;
	for (uint32_t i = 0; i < num_peers; i++)
		req->ent[i].peer = peers[i];
	c.u.connect.req = req;
	xfer_cmd_run(e, &c);   /* the worker took it; it finishes by its deadline */
	while (!atomic_load_explicit(&req->finished, memory_order_acquire))
		xfer_futex_wait(&req->finished, 0, -1);
	ret = req->result;
	free(req);
	return ret;
}
