/* SPDX-License-Identifier: MIT */
/*
 * The four test families, run by the initiator: single writes (bandwidth
 * per size), paged writes (rate per page size and count), immediate
 * ping-pong (latency) and scatter (one source to every target). xfer
 * operations are resubmitted from completion callbacks on the worker; the
 * raw loop (--raw) posts and polls from one thread: both keep the same
 * number of writes in flight.
 *
 * Each is measured with the target busy (back-to-back runs, nothing
 * waits: the figures these tests always gave) and idle (each repetition a
 * burst of at most IDLE_PIECES writes, an immediate with each operation, sent
 * --idle-gap after the target went quiet, the target blocked in
 * xfer_imm_wait per immediate). After each row the targets check that
 * every byte the row wrote landed (CMD_CHECK).
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "clock.h"
#include "oob.h"

/* ---- initiator: xfer measurements ---------------------------------------- */

struct run {
	struct side *s;
	uint64_t n, size, window;
	atomic_uint_fast64_t submitted, completed;
	_Atomic int error;
	_Atomic uint32_t finished;        /* futex-ish flag, polled by main */
	double t_end;
	/* paged */
	struct xfer_paged paged;
	/* scatter */
	struct xfer_scatter_dst dsts[MAX_PEERS];
	uint32_t ndsts;
	int kind;                         /* 0 single, 1 paged, 2 scatter */
	uint32_t flags, imm;              /* idle runs: an immediate per operation */
};

#define IDLE_PIECES 2048   /* writes per idle burst (-n sets the operations) */
enum { IMM_SINGLE = 20, IMM_PAGED, IMM_SCATTER };

static int run_submit(struct run *r);

static void run_done(void *ctx, int status)
{
	struct run *r = ctx;

	if (status)
		atomic_store(&r->error, status);
	if (atomic_fetch_add(&r->completed, 1) + 1 == r->n) {
		r->t_end = xfer_now_s();
		set_flag(&r->finished);
		return;
	}
	if (atomic_load(&r->submitted) < r->n && !status)
		run_submit(r);
}

static int run_submit(struct run *r)
{
	struct xfer_done d = { run_done, r };
	uint64_t i = atomic_fetch_add(&r->submitted, 1);
	int ret;

	if (i >= r->n)
		return 0;
	switch (r->kind) {
	case 0: {
		/* walk the region so consecutive writes touch different memory */
		uint64_t slots = (xfer_rmr_len(r->s->rmr[0]) / r->size);
		uint64_t off = (i % (slots ? slots : 1)) * r->size;

		ret = xfer_write(r->s->e, r->s->mr, off, r->s->rmr[0], off, r->size, r->flags, r->imm,
				 &d, NULL);
		break;
	}
	case 1: {
		struct xfer_paged p = r->paged;

		p.flags = r->flags;
		p.imm = r->imm;
		ret = xfer_write_paged(r->s->e, &p, &d, NULL);
		break;
	}
	default:
		ret = xfer_scatter(r->s->e, r->s->mr, r->dsts, r->ndsts, XFER_OP_IMM,
				   r->flags ? r->imm : 7, &d, NULL);
	}
	if (ret) {
		atomic_store(&r->error, ret);
		set_flag(&r->finished);
	}
	return ret;
}

/* Run r->n operations with r->window in flight; returns seconds. */
static double run_xfer(struct run *r)
{
	double t0;

	atomic_store(&r->submitted, 0);
	atomic_store(&r->completed, 0);
	atomic_store(&r->finished, 0);
	atomic_store(&r->error, 0);
	t0 = xfer_now_s();
	for (uint64_t i = 0; i < r->window && i < r->n; i++)
		run_submit(r);
	wait_flag(&r->finished);   /* the worker does the work */
	if (atomic_load(&r->error))
		die("operation", atomic_load(&r->error));
	return r->t_end - t0;
}

void idle_gap(const struct opts *o)
{
	struct timespec ts = { o->idle_gap_ms / 1000, (long)(o->idle_gap_ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Tell targets [0, nt) to expect count arrivals of imm (idle: blocked). */
static void expect_all(struct bench *b, int nt, uint32_t imm, uint64_t count, bool distinct,
		       bool idle)
{
	uint64_t a[4] = { imm, count, distinct, idle }, ack;

	for (int k = 0; k < nt; k++)
		if (cmd_send(b->fds[k], CMD_EXPECT, a, 4) || oob_recv_u64(b->fds[k], &ack))
			die("peer", -EPROTO);
}

/* The targets' answers to expect_all: every arrival came. */
static void expected_all(struct bench *b, int nt)
{
	for (int k = 0; k < nt; k++) {
		uint64_t st;

		if (oob_recv_u64(b->fds[k], &st))
			die("peer", -EPROTO);
		if (st)
			die("the target's wait for its immediates", (int)(int64_t)st);
	}
}

/* One idle repetition: the targets wait (blocked) for one immediate per
 * operation; the burst goes out once they have been quiet for the gap. */
static double run_idle(struct bench *b, struct run *r, int nt, uint32_t imm)
{
	double t;

	r->flags = XFER_OP_IMM;
	r->imm = imm;
	expect_all(b, nt, imm, r->n, false, true);
	idle_gap(b->o);
	t = run_xfer(r);
	expected_all(b, nt);
	r->flags = 0;
	return t;
}

void check_landed(struct bench *b, int k, uint64_t dst_off, uint64_t src_off, uint64_t len)
{
	uint64_t a[4] = { dst_off, src_off, len, b->salt }, bad;

	if (cmd_send(b->fds[k], CMD_CHECK, a, 4) || oob_recv_u64(b->fds[k], &bad))
		die("peer", -EPROTO);
	if (bad) {
		out_fail(b->out, 0, "target %d: %lld of %llu bytes written at offset %llu did not "
			 "land as sent", k, (long long)(int64_t)bad, (unsigned long long)len,
			 (unsigned long long)dst_off);
		exit(1);
	}
}

/* An idle burst: at most IDLE_PIECES writes (pages, scatter pieces) in all,
 * at least one operation; -n sets the number of operations itself. */
static uint64_t idle_ops(const struct opts *o, uint64_t n, uint64_t pieces_per_op)
{
	uint64_t cap = o->iters ? o->iters : IDLE_PIECES / pieces_per_op;

	cap = cap ? cap : 1;
	return n < cap ? n : cap;
}

static const char *mode_name(uint32_t m)
{
	return m == TGT_IDLE ? "idle" : "busy";
}

/* ---- initiator: raw measurements ------------------------------------------ */

struct raw_piece {
	int rail, peer;
	uint64_t soff, doff, len;
	uint32_t data;
};

/* Post pieces produced by gen() keeping at most `window` in flight. */
static double run_raw(struct side *s, uint64_t total, uint64_t window,
		      void (*gen)(void *arg, uint64_t i, struct raw_piece *p), void *arg)
{
	uint64_t posted = 0, done = 0, imm = 0;
	uint32_t data;
	double t0 = xfer_now_s();
	struct raw_piece p;
	bool have = false;

	while (done < total) {
		while (posted < total && posted - done < window) {
			if (!have)
				gen(arg, posted, &p);
			have = true;
			int ret = raw_write(&s->rf, p.rail, p.peer, &s->rmr_local, p.soff,
					    &s->rrmr[p.peer], p.doff, p.len, p.data);
			if (ret == -EAGAIN)
				break;
			if (ret)
				die("raw write", ret);
			have = false;
			posted++;
		}
		int n = raw_poll(&s->rf, &imm, &data);

		if (n < 0)
			die("raw completion", n);
		done += (uint64_t)n;
	}
	return xfer_now_s() - t0;
}


/* ---- the tests ------------------------------------------------------------- */


static uint64_t iters_for(const struct opts *o, uint64_t budget, uint64_t unit, uint64_t min,
			  uint64_t max)
{
	uint64_t n = o->iters ? o->iters : budget / (unit ? unit : 1);

	if (!o->iters) {
		if (n < min)
			n = min;
		if (n > max)
			n = max;
	}
	return n;
}

struct single_gen {
	uint64_t size, slots, threshold;
	int rails;
};

static void single_piece(void *arg, uint64_t i, struct raw_piece *p)
{
	struct single_gen *g = arg;
	uint64_t op = i, part = 0, len = g->size;
	int parts = g->size >= g->threshold ? g->rails : 1;

	/* mirror xfer's striping: `parts` pieces of an op, one per rail */
	if (parts > 1) {
		op = i / (uint64_t)parts;
		part = i % (uint64_t)parts;
		len = ((g->size + (uint64_t)parts - 1) / (uint64_t)parts + 4095) & ~4095ull;
	}
	uint64_t off = (op % g->slots) * g->size + part * len;

	if (part * len + len > g->size)
		len = g->size - part * len;
	*p = (struct raw_piece){ .rail = (int)((op + part) % (uint64_t)g->rails), .peer = 0,
				 .soff = off, .doff = off, .len = len };
}

json_object *row_base(struct bench *b, const char *test, uint64_t size, const char *target)
{
	json_object *row = json_object_new_object();

	json_object_object_add(row, "test", json_object_new_string(test));
	json_object_object_add(row, "size", json_object_new_int64((int64_t)size));
	json_object_object_add(row, "target", json_object_new_string(target));
	json_object_object_add(row, "provider", json_object_new_string(b->o->provider));
	json_object_object_add(row, "rails", json_object_new_int((int)b->o->rails));
	return row;
}

void test_single(struct bench *b)
{
	static const char *const cols[] = { "size", "target", "ops", "GBps", "Gbps", "raw", "ratio" };
	struct opts *o = b->o;

	out_table(b->out, "single", cols, 7);
	for (int i = 0; i < o->nsizes; i++) {
		uint64_t size = o->sizes[i];

		if (size > o->region)
			continue;
		for (uint32_t mode = TGT_BUSY; mode <= TGT_IDLE; mode <<= 1) {
			struct run r = { .s = &b->s, .size = size, .kind = 0 };
			struct reps rp = { .n = o->reps };
			bool raw = o->raw && mode == TGT_BUSY;
			double t;

			if (!(o->target & mode))
				continue;
			r.n = iters_for(o, SINGLE_BUDGET, size, 16, 200000);
			r.window = size <= 65536 ? 64 : (size <= (1u << 20) ? 16 : 4);
			if (mode == TGT_IDLE)
				r.n = idle_ops(o, r.n, 1);
			else
				run_xfer(&r);                    /* warm up: registration, connection */
			for (int k = 0; k < rp.n; k++) {
				t = mode == TGT_IDLE ? run_idle(b, &r, 1, IMM_SINGLE) : run_xfer(&r);
				rp.x[k] = (double)size * (double)r.n / t / 1e9;
				if (!raw)
					continue;
				struct single_gen g = { size, o->region / size,
							XFER_DEFAULT_STRIPE_THRESHOLD, (int)o->rails };
				uint64_t parts = size >= g.threshold ? o->rails : 1;

				raw_cmd(b->fds[0], CMD_SERVE_RAW, 0);
				if (k == 0)
					run_raw(&b->s, r.n * parts, r.window * parts, single_piece, &g);
				t = run_raw(&b->s, r.n * parts, r.window * parts, single_piece, &g);
				raw_cmd_end(b->fds[0]);
				rp.raw[k] = (double)size * (double)r.n / t / 1e9;
			}
			/* the writes walk the region from 0: every slot they reached */
			uint64_t slots = xfer_rmr_len(b->s.rmr[0]) / size;

			check_landed(b, 0, 0, 0, (r.n < slots ? r.n : slots) * size);
			json_object *row = row_base(b, "single", size, mode_name(mode));

			json_object_object_add(row, "ops", json_object_new_int64((int64_t)r.n));
			double gbs = add_figures(row, "GBps", &rp, raw);

			json_object_object_add(row, "Gbps", json_object_new_double(gbs * 8));
			out_row(b->out, row);
		}
	}
}

struct paged_gen {
	const uint32_t *sp, *dp;
	uint32_t npages;
	uint64_t psize;
	int rails;
};

static void paged_piece(void *arg, uint64_t i, struct raw_piece *p)
{
	struct paged_gen *g = arg;
	uint32_t k = (uint32_t)(i % g->npages);

	*p = (struct raw_piece){ .rail = (int)(k % (uint32_t)g->rails), .peer = 0,
				 .soff = g->sp[k] * g->psize, .doff = g->dp[k] * g->psize,
				 .len = g->psize };
}

void test_paged(struct bench *b)
{
	static const char *const cols[] = { "size", "pages", "target", "ops", "Mops", "GBps", "raw",
					    "ratio" };
	struct opts *o = b->o;
	uint64_t seed = 0;

	out_table(b->out, "paged", cols, 8);
	for (int pi = 0; pi < o->npage_sizes; pi++) {
		for (int ci = 0; ci < o->npage_counts; ci++) {
			uint64_t psize = o->page_sizes[pi];
			uint32_t np = (uint32_t)o->page_counts[ci];
			uint64_t slots = o->region / psize;
			uint32_t *sp = malloc(np * sizeof(*sp)), *dp = malloc(np * sizeof(*dp));

			if (!sp || !dp)
				die("memory", -ENOMEM);
			/* the source page follows from the destination page: a page
			 * written twice holds the same bytes, and the target can check */
			paged_lists(++seed, np, slots, sp, dp);
			for (uint32_t mode = TGT_BUSY; mode <= TGT_IDLE; mode <<= 1) {
				struct run r = { .s = &b->s, .kind = 1 };
				struct reps rp = { .n = o->reps };
				bool raw = o->raw && mode == TGT_BUSY;
				double t;

				if (!(o->target & mode))
					continue;
				r.paged = (struct xfer_paged){ .size = sizeof(r.paged), .src = b->s.mr,
							       .dst = b->s.rmr[0], .src_pages = sp,
							       .dst_pages = dp, .num_pages = np,
							       .page_size = psize };
				r.n = iters_for(o, PAGED_BUDGET, np, 4, 100000);
				/* as many pages queued as raw keeps in flight (1024 a rail),
				 * and one op more so the worker never waits for the next */
				r.window = (1024ull * o->rails + np - 1) / np + 1;
				if (mode == TGT_IDLE)
					r.n = idle_ops(o, r.n, np);
				else
					run_xfer(&r);
				for (int k = 0; k < rp.n; k++) {
					t = mode == TGT_IDLE ? run_idle(b, &r, 1, IMM_PAGED) : run_xfer(&r);
					rp.x[k] = (double)np * (double)r.n / t / 1e6;
					if (!raw)
						continue;
					struct paged_gen g = { sp, dp, np, psize, (int)o->rails };
					uint64_t window = 1024ull * o->rails;

					raw_cmd(b->fds[0], CMD_SERVE_RAW, 0);
					if (k == 0)
						run_raw(&b->s, np * r.n, window, paged_piece, &g);
					t = run_raw(&b->s, np * r.n, window, paged_piece, &g);
					raw_cmd_end(b->fds[0]);
					rp.raw[k] = (double)np * (double)r.n / t / 1e6;
				}
				uint64_t a[5] = { seed, np, psize, slots, b->salt }, bad;

				if (cmd_send(b->fds[0], CMD_CHECK_PAGED, a, 5) ||
				    oob_recv_u64(b->fds[0], &bad))
					die("peer", -EPROTO);
				if (bad) {
					out_fail(b->out, 0, "paged %llu x %u: %lld bytes did not land as sent",
						 (unsigned long long)psize, np, (long long)(int64_t)bad);
					exit(1);
				}
				json_object *row = row_base(b, "paged", psize, mode_name(mode));

				json_object_object_add(row, "pages", json_object_new_int((int)np));
				json_object_object_add(row, "ops", json_object_new_int64((int64_t)r.n));
				double mops = add_figures(row, "Mops", &rp, raw);

				json_object_object_add(row, "GBps",
						       json_object_new_double(mops * (double)psize / 1e3));
				out_row(b->out, row);
			}
			free(sp);
			free(dp);
		}
	}
}

/* Ping-pong latency: one way = round trip / 2. */
struct ping {
	struct side *s;
	uint64_t n, i;
	double *samples;
	double t_sent;
	_Atomic uint32_t finished;
};

static void ping_send(struct ping *p);

static void ping_back(void *ctx, int status)
{
	struct ping *p = ctx;

	if (status) {
		set_flag(&p->finished);
		return;
	}
	p->samples[p->i++] = (xfer_now_s() - p->t_sent) / 2 * 1e6;
	if (p->i == p->n)
		set_flag(&p->finished);
	else
		ping_send(p);
}

static void ping_send(struct ping *p)
{
	struct xfer_notify n = { .size = sizeof(n), .fn = ping_back, .ctx = p };

	xfer_imm_expect(p->s->e, 2, 1, &n);
	p->t_sent = xfer_now_s();
	xfer_write(p->s->e, p->s->mr, 0, p->s->rmr[0], 0, 8, XFER_OP_IMM, 1, NULL, NULL);
}

static void imm_xfer_series(struct bench *b, double *v, uint64_t n)
{
	struct ping p = { .s = &b->s, .n = n, .samples = v };
	uint64_t m[2] = { CMD_PONG_XFER, n }, ack;

	if (oob_send(b->fds[0], m, sizeof(m)) || oob_recv_u64(b->fds[0], &ack))
		die("peer", -EPROTO);
	ping_send(&p);
	wait_flag(&p.finished);
	if (p.i != p.n)
		die("latency run", -EIO);
	oob_send_u64(b->fds[0], 0);
	oob_recv_u64(b->fds[0], &ack);
}

/* The same with plain libfabric: post, poll until the answer arrives. */
static void imm_raw_series(struct bench *b, double *v, uint64_t n)
{
	uint64_t imm = 0, seen = 0;
	uint32_t data;

	raw_cmd(b->fds[0], CMD_SERVE_RAW, 1);
	for (uint64_t i = 0; i < n; i++) {
		double t0 = xfer_now_s();

		while (raw_write(&b->s.rf, 0, 0, &b->s.rmr_local, 0, &b->s.rrmr[0], 0, 8, 1) == -EAGAIN)
			raw_poll(&b->s.rf, &imm, &data);
		while (imm == seen)
			if (raw_poll(&b->s.rf, &imm, &data) < 0)
				die("raw ping", -EIO);
		seen = imm;
		v[i] = (xfer_now_s() - t0) / 2 * 1e6;
	}
	raw_cmd_end(b->fds[0]);
}

/* Idle: each ping after the gap, both sides blocked in xfer_imm_wait as
 * applications are; the answer is a write back with an immediate. */
static void imm_idle_series(struct bench *b, double *v, uint64_t n)
{
	uint64_t a = n, st;

	if (cmd_send(b->fds[0], CMD_PONG_IDLE, &a, 1) || oob_recv_u64(b->fds[0], &st))
		die("peer", -EPROTO);
	for (uint64_t i = 0; i < n; i++) {
		double t0;
		int ret;

		idle_gap(b->o);
		t0 = xfer_now_s();
		ret = xfer_write(b->s.e, b->s.mr, 0, b->s.rmr[0], 0, 8, XFER_OP_IMM, 1, NULL, NULL);
		if (!ret)
			ret = xfer_imm_wait(b->s.e, 2, 1, 20000);
		if (ret)
			die("idle ping", ret);
		v[i] = (xfer_now_s() - t0) / 2 * 1e6;
	}
	if (oob_recv_u64(b->fds[0], &st) || st)
		die("the target's idle pongs", st ? (int)(int64_t)st : -EPROTO);
}

void test_imm(struct bench *b)
{
	static const char *const cols[] = { "size", "target", "samples", "p50_us", "p99_us",
					    "raw_p50_us", "raw_p99_us", "ratio" };
	struct opts *o = b->o;

	out_table(b->out, "imm", cols, 8);
	for (uint32_t mode = TGT_BUSY; mode <= TGT_IDLE; mode <<= 1) {
		/* idle: each sample waits out the gap, so fewer of them */
		uint64_t n = o->iters ? o->iters : 20000, warm = n / 10 + 1;
		bool raw = o->raw && mode == TGT_BUSY;
		struct reps p50 = { .n = o->reps }, p99 = { .n = o->reps };

		if (!(o->target & mode))
			continue;
		if (mode == TGT_IDLE) {
			n = o->iters ? (o->iters < 1000 ? o->iters : 1000) : 100;
			warm = 0;
		}
		double *v = calloc(n + warm, sizeof(double));

		for (int k = 0; k < p50.n; k++) {
			if (mode == TGT_IDLE)
				imm_idle_series(b, v, n);
			else
				imm_xfer_series(b, v, n + warm);
			p50.x[k] = pct(v + warm, n, 0.5);
			p99.x[k] = pct(v + warm, n, 0.99);
			if (!raw)
				continue;
			imm_raw_series(b, v, n + warm);
			p50.raw[k] = pct(v + warm, n, 0.5);
			p99.raw[k] = pct(v + warm, n, 0.99);
		}
		json_object *row = row_base(b, "imm", 8, mode_name(mode));

		json_object_object_add(row, "samples", json_object_new_int64((int64_t)n));
		/* ratio: p50 over raw p50, the median of the paired repetitions */
		add_figures(row, "p50_us", &p50, raw);
		json_object_object_add(row, "raw_p50_us", raw ? json_object_new_double(
					       median_of(p50.raw, p50.n)) : NULL);
		json_object_object_add(row, "p99_us", json_object_new_double(median_of(p99.x, p99.n)));
		json_object_object_add(row, "raw_p99_us", raw ? json_object_new_double(
					       median_of(p99.raw, p99.n)) : NULL);
		out_row(b->out, row);
		free(v);
	}
	/* the pongs wrote the target's first bytes over ours: our source again */
	pattern_fill(b->s.buf, b->salt, 0, 8);
}

struct scatter_gen {
	uint64_t size;
	int peers, rails;
};

static void scatter_piece(void *arg, uint64_t i, struct raw_piece *p)
{
	struct scatter_gen *g = arg;
	int peer = (int)(i % (uint64_t)g->peers);

	*p = (struct raw_piece){ .rail = (int)((i / (uint64_t)g->peers + (uint64_t)peer) %
					       (uint64_t)g->rails),
				 .peer = peer, .soff = (uint64_t)peer * g->size, .doff = 0,
				 .len = g->size, .data = 7 };
}

void test_scatter(struct bench *b)
{
	static const char *const cols[] = { "size", "peers", "target", "ops", "GBps", "raw", "ratio" };
	static const uint64_t defaults[] = { 4096, 65536, 1u << 20 };
	struct opts *o = b->o;
	/* -s sets the scatter sizes too (per peer); the region holds them all */
	const uint64_t *sizes = o->sizes_given ? o->sizes : defaults;
	int nsizes = o->sizes_given ? o->nsizes : 3;
	int peers = b->s.npeers;

	out_table(b->out, "scatter", cols, 7);
	for (int si = 0; si < nsizes; si++) {
		uint64_t size = sizes[si];

		if (size * (uint64_t)peers > o->region)
			continue;
		for (uint32_t mode = TGT_BUSY; mode <= TGT_IDLE; mode <<= 1) {
			struct run r = { .s = &b->s, .kind = 2, .ndsts = (uint32_t)peers };
			struct reps rp = { .n = o->reps };
			bool raw = o->raw && mode == TGT_BUSY;
			double t;

			if (!(o->target & mode))
				continue;
			for (int k = 0; k < peers; k++)
				r.dsts[k] = (struct xfer_scatter_dst){ b->s.rmr[k], (uint64_t)k * size, 0,
								       size };
			r.n = iters_for(o, SINGLE_BUDGET / 2, size * (uint64_t)peers, 16, 50000);
			r.window = 8;
			if (mode == TGT_IDLE)
				r.n = idle_ops(o, r.n, (uint64_t)peers);
			else
				run_xfer(&r);
			for (int k = 0; k < rp.n; k++) {
				t = mode == TGT_IDLE ? run_idle(b, &r, peers, IMM_SCATTER) : run_xfer(&r);
				rp.x[k] = (double)size * (double)peers * (double)r.n / t / 1e9;
				if (!raw)
					continue;
				struct scatter_gen g = { size, peers, (int)o->rails };
				uint64_t n = r.n * (uint64_t)peers, w = 8ull * (uint64_t)peers;

				for (int f = 0; f < b->nfds; f++)
					raw_cmd(b->fds[f], CMD_SERVE_RAW, 0);
				if (k == 0)
					run_raw(&b->s, n, w, scatter_piece, &g);
				t = run_raw(&b->s, n, w, scatter_piece, &g);
				for (int f = 0; f < b->nfds; f++)
					raw_cmd_end(b->fds[f]);
				rp.raw[k] = (double)size * (double)peers * (double)r.n / t / 1e9;
			}
			for (int k = 0; k < peers; k++)
				check_landed(b, k, 0, (uint64_t)k * size, size);
			json_object *row = row_base(b, "scatter", size, mode_name(mode));

			json_object_object_add(row, "peers", json_object_new_int(peers));
			json_object_object_add(row, "ops", json_object_new_int64((int64_t)r.n));
			add_figures(row, "GBps", &rp, raw);
			out_row(b->out, row);
		}
	}
}
