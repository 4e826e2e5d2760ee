/* SPDX-License-Identifier: MIT */
/*
 * The application's cases (issue 12), run by the initiator:
 *
 *   kv     a paged KV cache, layer by layer: one xfer_write_paged and one
 *          immediate per layer (--kv L,P,S), the target waiting for the
 *          layers in order; the time until the sender's last completion
 *          and until the target has seen every layer;
 *   peers  one writer to N targets, and N writers to one target (the
 *          loopback's N forked processes, --peers): throughput and each
 *          write's latency, every byte checked where it landed;
 *   first  the first write to a peer never met (a target's fresh engine):
 *          cold, after xfer_engine_connect, and steady, as ratios.
 *
 * kv and peers run with the target busy (spinning on its counters, no gap)
 * and idle (--idle-gap of quiet first, then blocked in xfer_imm_wait); first
 * with each timed write sent at once (busy) or after the gap (idle).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "clock.h"
#include "oob.h"

enum { IMM_KV = 1000, IMM_PEERS = 100 };   /* kv: IMM_KV + layer; peers: + writer */

static const char *mode_name(uint32_t m)
{
	return m == TGT_IDLE ? "idle" : "busy";
}

static void recv_status(struct bench *b, int k, const char *what)
{
	uint64_t st;

	if (oob_recv_u64(b->fds[k], &st))
		die("peer", -EPROTO);
	if (st)
		die(what, (int)(int64_t)st);
}

/* ---- kv ---------------------------------------------------------------------- */

struct kv_run {
	atomic_uint_fast64_t done;
	uint64_t n;
	_Atomic int err;
	_Atomic uint32_t fin;
	double t_end;
};

static void kv_done(void *ctx, int status)
{
	struct kv_run *k = ctx;

	if (status)
		atomic_store(&k->err, status);
	if (atomic_fetch_add(&k->done, 1) + 1 == k->n) {
		k->t_end = xfer_now_s();
		set_flag(&k->fin);
	}
}

void test_kv(struct bench *b)
{
	static const char *const cols[] = { "size", "layers", "pages", "target", "ms", "land_ms",
					    "GBps" };
	struct opts *o = b->o;
	uint32_t layers = (uint32_t)o->kv[0], np = (uint32_t)o->kv[1];
	uint64_t psize = o->kv[2], slots = o->region / psize, total = (uint64_t)layers * np;
	uint32_t *sp = malloc(total * sizeof(*sp)), *dp = malloc(total * sizeof(*dp));

	if (!sp || !dp)
		die("memory", -ENOMEM);
	/* every page of every layer lies apart, as in a KV cache */
	paged_lists(77, (uint32_t)total, slots, sp, dp);
	out_table(b->out, "kv", cols, 7);
	for (uint32_t mode = TGT_BUSY; mode <= TGT_IDLE; mode <<= 1) {
		double ms[MAX_REPS], land[MAX_REPS];

		if (!(o->target & mode))
			continue;
		for (uint32_t rep = 0; rep < o->reps; rep++) {
			struct kv_run k = { .n = layers };
			uint64_t a[4] = { IMM_KV, layers, 1, mode == TGT_IDLE }, ack, bad;
			double t0;

			if (cmd_send(b->fds[0], CMD_EXPECT, a, 4) || oob_recv_u64(b->fds[0], &ack))
				die("peer", -EPROTO);
			if (mode == TGT_IDLE)
				idle_gap(o);
			t0 = xfer_now_s();
			for (uint32_t l = 0; l < layers; l++) {
				struct xfer_paged p = {
					.size = sizeof(p), .flags = XFER_OP_IMM, .src = b->s.mr,
					.dst = b->s.rmr[0], .src_pages = sp + (uint64_t)l * np,
					.dst_pages = dp + (uint64_t)l * np, .num_pages = np,
					.imm = IMM_KV + l, .page_size = psize,
				};
				struct xfer_done d = { kv_done, &k };
				int ret = xfer_write_paged(b->s.e, &p, &d, NULL);

				if (ret)
					die("paged write", ret);
			}
			wait_flag(&k.fin);
			if (atomic_load(&k.err))
				die("paged write", atomic_load(&k.err));
			recv_status(b, 0, "the target's wait for its layers");
			land[rep] = (xfer_now_s() - t0) * 1e3;
			ms[rep] = (k.t_end - t0) * 1e3;
			uint64_t c[5] = { 77, total, psize, slots, b->salt };

			if (cmd_send(b->fds[0], CMD_CHECK_PAGED, c, 5) || oob_recv_u64(b->fds[0], &bad))
				die("peer", -EPROTO);
			if (bad) {
				out_fail(b->out, 0, "kv: %lld bytes did not land as sent",
					 (long long)(int64_t)bad);
				exit(1);
			}
		}
		json_object *row = row_base(b, "kv", psize, mode_name(mode));
		double med = median_of(ms, (int)o->reps);

		json_object_object_add(row, "layers", json_object_new_int((int)layers));
		json_object_object_add(row, "pages", json_object_new_int((int)np));
		json_object_object_add(row, "ms", json_object_new_double(med));
		json_object_object_add(row, "ms_range", range_of(ms, (int)o->reps));
		json_object_object_add(row, "land_ms",
				       json_object_new_double(median_of(land, (int)o->reps)));
		json_object_object_add(row, "land_ms_range", range_of(land, (int)o->reps));
		json_object_object_add(row, "GBps",
				       json_object_new_double((double)(total * psize) / med / 1e6));
		json_object_object_add(row, "reps", json_object_new_int((int)o->reps));
		out_row(b->out, row);
	}
	free(sp);
	free(dp);
}

/* ---- peers ------------------------------------------------------------------- */

#define PEERS_SIZE_DEFAULT 65536
#define PEERS_WINDOW 16

/* Each target's (or writer's) share of a region: whole writes. */
static uint64_t slice_of(const struct opts *o, uint64_t size, int n)
{
	return o->region / (uint64_t)n / size * size;
}

/* A peers row's figures: medians over the repetitions (none for the
 * warm-up, which has no row). */
static void peers_row(json_object *row, const double *gbps, const double *p50, const double *p99,
		      uint32_t reps)
{
	if (!row)
		return;
	json_object_object_add(row, "GBps", json_object_new_double(median_of(gbps, (int)reps)));
	json_object_object_add(row, "GBps_range", range_of(gbps, (int)reps));
	json_object_object_add(row, "p50_us", json_object_new_double(median_of(p50, (int)reps)));
	json_object_object_add(row, "p99_us", json_object_new_double(median_of(p99, (int)reps)));
}

static void one_to_n(struct bench *b, uint64_t size, uint64_t count, uint32_t mode,
		     uint32_t reps, json_object *row)
{
	struct opts *o = b->o;
	int n = b->s.npeers;
	uint64_t slice = slice_of(o, size, n), soff[MAX_PEERS], doff[MAX_PEERS] = { 0 };
	double gbps[MAX_REPS], p50[MAX_REPS], p99[MAX_REPS];

	for (int k = 0; k < n; k++)
		soff[k] = (uint64_t)k * slice;      /* each target gets bytes of its own */
	for (uint32_t rep = 0; rep < reps; rep++) {
		uint64_t a[4] = { IMM_PEERS, count, 0, mode == TGT_IDLE }, ack;
		struct wres r;
		int ret;

		for (int k = 0; k < n; k++)
			if (cmd_send(b->fds[k], CMD_EXPECT, a, 4) || oob_recv_u64(b->fds[k], &ack))
				die("peer", -EPROTO);
		if (mode == TGT_IDLE)
			idle_gap(o);
		ret = lat_writes(b->s.e, b->s.mr, b->s.rmr, n, soff, doff, slice, size, count,
				 PEERS_WINDOW, IMM_PEERS, &r);
		if (ret)
			die("one to many writes", ret);
		for (int k = 0; k < n; k++)
			recv_status(b, k, "a target's wait for its immediates");
		gbps[rep] = (double)r.bytes / r.secs / 1e9;
		p50[rep] = r.p50_us;
		p99[rep] = r.p99_us;
	}
	for (int k = 0; k < n; k++) {
		uint64_t span = (count < slice / size ? count : slice / size) * size;

		check_landed(b, k, 0, soff[k], span);
	}
	peers_row(row, gbps, p50, p99, reps);
}

static void n_to_one(struct bench *b, uint64_t size, uint64_t count, uint32_t mode,
		     uint32_t reps, json_object *row)
{
	struct opts *o = b->o;
	int n = b->s.npeers;
	uint64_t slice = slice_of(o, size, n), span = (count < slice / size ? count : slice / size) * size;
	double gbps[MAX_REPS], p50[MAX_REPS], p99[MAX_REPS];

	for (uint32_t rep = 0; rep < reps; rep++) {
		double t0, lat50[MAX_PEERS], worst = 0;

		if (mode == TGT_IDLE)
			idle_gap(o);
		t0 = xfer_now_s();
		for (int k = 0; k < n; k++) {
			uint64_t a[6] = { size, count, (uint64_t)k * slice, PEERS_WINDOW,
					  IMM_PEERS + (uint64_t)k, slice };

			if (cmd_send(b->fds[k], CMD_WRITE, a, 6))
				die("peer", -EPROTO);
		}
		/* this process is the target: it waits as an application would,
		 * one immediate at a time, the writers in turn */
		for (uint64_t i = 0; i < count; i++)
			for (int k = 0; k < n; k++) {
				uint32_t imm = IMM_PEERS + (uint32_t)k;
				int ret;

				if (mode == TGT_BUSY) {
					double end = xfer_now_s() + 20;

					while (xfer_imm_count(b->s.e, imm) < 1 && xfer_now_s() < end)
						sched_yield();
				}
				ret = xfer_imm_wait(b->s.e, imm, 1, 20000);
				if (ret)
					die("waiting for the writers' immediates", ret);
			}
		gbps[rep] = (double)(count * size * (uint64_t)n) / (xfer_now_s() - t0) / 1e9;
		for (int k = 0; k < n; k++) {
			struct wres r;

			if (oob_recv(b->fds[k], &r, sizeof(r)) != sizeof(r))
				die("peer", -EPROTO);
			if (r.status)
				die("a writer's writes", (int)r.status);
			lat50[k] = r.p50_us;
			worst = r.p99_us > worst ? r.p99_us : worst;
		}
		p50[rep] = median_of(lat50, n);
		p99[rep] = worst;
	}
	/* each writer's slice holds its pattern: checked, then ours again */
	for (int k = 0; k < n; k++) {
		uint64_t off = (uint64_t)k * slice;
		uint64_t bad = pattern_check((uint8_t *)b->s.buf + off, (uint32_t)k + 1, off, span);

		if (bad) {
			out_fail(b->out, 0, "peers: %llu bytes from writer %d did not land as sent",
				 (unsigned long long)bad, k);
			exit(1);
		}
		pattern_fill(b->s.buf, b->salt, off, span);
	}
	peers_row(row, gbps, p50, p99, reps);
}

void test_peers(struct bench *b)
{
	static const char *const cols[] = { "size", "peers", "direction", "target", "writes",
					    "GBps", "p50_us", "p99_us" };
	struct opts *o = b->o;
	uint64_t size = o->sizes_given ? o->sizes[0] : PEERS_SIZE_DEFAULT;
	int n = b->s.npeers;

	out_table(b->out, "peers", cols, 8);
	if (slice_of(o, size, n) == 0) {
		out_fail(b->out, 0, "peers: %llu bytes to each of %d peers exceed the region",
			 (unsigned long long)size, n);
		exit(1);
	}
	/* writes per writer (or per target): the byte budget, at least 64 */
	uint64_t count = o->iters ? o->iters : SINGLE_BUDGET / 4 / size / (uint64_t)n;

	count = count < 64 ? 64 : (count > 20000 ? 20000 : count);
	for (int dir = 0; dir < 2; dir++) {
		/* connections set up, untimed: first contact is -t first's */
		if (dir)
			n_to_one(b, size, 4, TGT_BUSY, 1, NULL);
		else
			one_to_n(b, size, 4, TGT_BUSY, 1, NULL);
		for (uint32_t mode = TGT_BUSY; mode <= TGT_IDLE; mode <<= 1) {
			if (!(o->target & mode))
				continue;
			json_object *row = row_base(b, "peers", size, mode_name(mode));

			json_object_object_add(row, "peers", json_object_new_int(n));
			json_object_object_add(row, "direction",
					       json_object_new_string(dir ? "n_to_1" : "1_to_n"));
			json_object_object_add(row, "writes", json_object_new_int64((int64_t)count));
			if (dir)
				n_to_one(b, size, count, mode, o->reps, row);
			else
				one_to_n(b, size, count, mode, o->reps, row);
			json_object_object_add(row, "reps", json_object_new_int((int)o->reps));
			out_row(b->out, row);
		}
	}
}

/* ---- first contact --------------------------------------------------------------- */

#define FIRST_SIZE_DEFAULT 65536
#define FIRST_STEADY 20

/* One write, waited for on its handle as an application would: seconds. */
static double timed_write(struct bench *b, xfer_rmr *dst, uint64_t size)
{
	xfer_op *op;
	double t0 = xfer_now_s();
	int ret = xfer_write(b->s.e, b->s.mr, 0, dst, 0, size, 0, 0, NULL, &op);

	if (ret)
		die("first-contact write", ret);
	ret = xfer_op_wait(op, 60000);
	xfer_op_release(op);
	if (ret)
		die("first-contact write", ret);
	return xfer_now_s() - t0;
}

/* A peer never met: target 0 opens a fresh engine and both sides exchange. */
static void fresh_peer(struct bench *b, uint32_t *peer, xfer_rmr **rmr)
{
	if (cmd_send(b->fds[0], CMD_FRESH, NULL, 0))
		die("peer", -EPROTO);
	exchange_one(b->s.e, b->s.mr, b->fds[0], peer, rmr, NULL, NULL);
}

void test_first(struct bench *b)
{
	static const char *const cols[] = { "size", "target", "cold_ms", "connect_ms",
					    "after_connect_ms", "steady_ms", "cold_ratio",
					    "connect_ratio" };
	struct opts *o = b->o;
	uint64_t size = o->sizes_given ? o->sizes[0] : FIRST_SIZE_DEFAULT;
	int n = (int)o->reps;

	out_table(b->out, "first", cols, 8);
	for (uint32_t mode = TGT_BUSY; mode <= TGT_IDLE; mode <<= 1) {
		double cold[MAX_REPS], steady[MAX_REPS], conn[MAX_REPS], after[MAX_REPS];
		bool have_connect = true;

		if (!(o->target & mode))
			continue;
		for (int rep = 0; rep < n; rep++) {
			double v[FIRST_STEADY];
			uint32_t peer;
			xfer_rmr *rmr;
			int ret;

			fresh_peer(b, &peer, &rmr);
			if (mode == TGT_IDLE)
				idle_gap(o);
			cold[rep] = timed_write(b, rmr, size) * 1e3;
			/* steady: the same peer, connected; idle, each write after the
			 * gap too, so that the ratios compare like with like */
			for (int i = 0; i < FIRST_STEADY; i++) {
				if (mode == TGT_IDLE)
					idle_gap(o);
				v[i] = timed_write(b, rmr, size) * 1e3;
			}
			steady[rep] = pct(v, FIRST_STEADY, 0.5);
			check_landed(b, 0, 0, 0, size);
			xfer_rmr_free(rmr);

			/* the same with a connect first: what a prefill node does
			 * when it learns of a decode node ahead of its first request */
			fresh_peer(b, &peer, &rmr);
			if (mode == TGT_IDLE)
				idle_gap(o);
			double t0 = xfer_now_s();

			ret = xfer_engine_connect(b->s.e, &peer, 1, -1);
			conn[rep] = (xfer_now_s() - t0) * 1e3;
			if (ret == -EOPNOTSUPP) {
				have_connect = false;   /* this library does not connect yet */
			} else if (ret) {
				die("xfer_engine_connect", ret);
			}
			if (mode == TGT_IDLE)
				idle_gap(o);
			after[rep] = timed_write(b, rmr, size) * 1e3;
			check_landed(b, 0, 0, 0, size);
			xfer_rmr_free(rmr);
		}
		json_object *row = row_base(b, "first", size, mode_name(mode));
		double c = median_of(cold, n), s = median_of(steady, n), a = median_of(after, n);

		json_object_object_add(row, "cold_ms", json_object_new_double(c));
		json_object_object_add(row, "cold_ms_range", range_of(cold, n));
		json_object_object_add(row, "steady_ms", json_object_new_double(s));
		json_object_object_add(row, "steady_ms_range", range_of(steady, n));
		json_object_object_add(row, "connect_ms", have_connect ?
				       json_object_new_double(median_of(conn, n)) : NULL);
		json_object_object_add(row, "after_connect_ms", have_connect ?
				       json_object_new_double(a) : NULL);
		json_object_object_add(row, "cold_ratio", json_object_new_double(c / s));
		json_object_object_add(row, "connect_ratio", have_connect ?
				       json_object_new_double(a / s) : NULL);
		json_object_object_add(row, "reps", json_object_new_int(n));
		out_row(b->out, row);
	}
}
