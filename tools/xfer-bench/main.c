/* SPDX-License-Identifier: MIT */
/*
 * xfer-bench: bandwidth, rate and latency of xfer's operations, optionally
 * beside the same measurements posted with plain libfabric (--raw).
 *
 *   xfer-bench                      loopback: forks its own peers, shm
 *   xfer-bench --server [-P port]   wait for a client (two machines)
 *   xfer-bench --client HOST        run the tests against a server
 *
 * The initiator drives everything; the target's only job is to keep its
 * worker polling (manual-progress providers) and to answer pings. xfer
 * operations are resubmitted from completion callbacks on the worker, and
 * the raw loop posts and polls from one thread: both keep the same number
 * of writes in flight.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "xfer.h"
#include "oob.h"
#include "out.h"
#include "raw.h"

#define MAX_SIZES 32
#define MAX_REPS 32
#define MAX_PEERS 8
#define PORT_DEFAULT 18515
#define SINGLE_BUDGET (512ull << 20)   /* bytes moved per single-write size */
#define PAGED_BUDGET 200000            /* pages moved per paged config */

enum { CMD_QUIT = 1, CMD_PONG_XFER, CMD_SERVE_RAW };

struct opts {
	const char *provider;
	uint32_t rails;
	const char *node;
	const char *client;
	bool server, raw, json, pretty;
	uint16_t port;
	uint64_t sizes[MAX_SIZES];
	int nsizes;
	uint64_t iters;          /* 0: from the byte budget */
	uint32_t scatter_peers;
	const char *tests;       /* comma list of single,paged,imm,scatter */
	uint64_t region;
	int reps;                /* interleaved repetitions of each measurement */
};

struct config_msg {
	char provider[32];
	uint32_t rails;
	uint32_t raw;
	uint64_t region;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The main thread blocks while the worker runs a measurement: a thread
 * waking up now and then would steal one of two cores from the pollers. */
static void wait_flag(_Atomic uint32_t *flag)
{
	while (!atomic_load(flag))
		syscall(SYS_futex, (uint32_t *)flag, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void set_flag(_Atomic uint32_t *flag)
{
	atomic_store(flag, 1);
	syscall(SYS_futex, (uint32_t *)flag, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void die(const char *what, int err)
{
	fprintf(stderr, "xfer-bench: %s: %s\n", what, xfer_strerror(err < 0 ? err : -err));
	exit(1);
}

/* ---- both sides: engines, regions, raw endpoints ------------------------ */

struct side {
	xfer_engine *e;
	void *buf;
	xfer_mr *mr;
	uint32_t peer[MAX_PEERS];
	xfer_rmr *rmr[MAX_PEERS];
	int npeers;
	bool raw;
	struct rawfab rf;
	struct raw_mr rmr_local;
	struct raw_rmr rrmr[MAX_PEERS];
};

/* This host's NIC choice (--devices, --gpu): local, so a server keeps its
 * own whatever the client asks, and loopback peers share the initiator's. */
static const char *opt_devices;
static int opt_gpu = -1;

static void side_open(struct side *s, const char *prov, uint32_t rails, const char *node,
		      uint64_t region, bool raw)
{
	struct xfer_engine_attr a;
	int ret;

	memset(s, 0, sizeof(*s));
	xfer_engine_attr_init(&a);
	a.provider = prov;
	a.num_rails = rails;
	a.node = node;
	a.devices = opt_devices;
	a.gpu = opt_gpu;
	ret = xfer_engine_create(&a, &s->e);
	if (ret)
		die("engine", ret);
	if (posix_memalign(&s->buf, 4096, region))
		die("memory", -ENOMEM);
	memset(s->buf, 0x5a, region);
	ret = xfer_mr_reg(s->e, s->buf, region, NULL, XFER_MR_REMOTE_WRITE, &s->mr);
	if (ret)
		die("register", ret);
	s->raw = raw;
	if (raw) {
		ret = raw_open(&s->rf, prov, (int)rails, node);
		if (ret)
			die("raw libfabric endpoint", ret);
		ret = raw_reg(&s->rf, s->buf, region, &s->rmr_local);
		if (ret)
			die("raw register", ret);
	}
}

static void side_close(struct side *s)
{
	for (int i = 0; i < s->npeers; i++)
		xfer_rmr_free(s->rmr[i]);
	if (s->raw) {
		raw_dereg(&s->rf, &s->rmr_local);
		raw_close(&s->rf);
	}
	xfer_mr_dereg(s->mr);
	xfer_engine_destroy(s->e);
	free(s->buf);
}

/* Exchange with one peer: [engine address][descriptor][raw addrs][raw key]. */
static void side_exchange(struct side *s, int fd)
{
	uint8_t buf[4096];
	size_t len = sizeof(buf);
	int n, ret, k = s->npeers;

	if ((ret = xfer_engine_address(s->e, buf, &len)) || (ret = oob_send(fd, buf, (uint32_t)len)))
		die("send address", ret);
	len = sizeof(buf);
	if ((ret = xfer_mr_descriptor(s->mr, buf, &len)) || (ret = oob_send(fd, buf, (uint32_t)len)))
		die("send descriptor", ret);
	if ((n = oob_recv(fd, buf, sizeof(buf))) < 0 ||
	    (ret = xfer_engine_add_peer(s->e, buf, (size_t)n, &s->peer[k])))
		die("peer address", n < 0 ? n : ret);
	if ((n = oob_recv(fd, buf, sizeof(buf))) < 0 ||
	    (ret = xfer_rmr_import(s->e, s->peer[k], buf, (size_t)n, &s->rmr[k])))
		die("peer descriptor", n < 0 ? n : ret);
	if (s->raw) {
		struct raw_rmr mine;

		len = sizeof(buf);
		raw_rmr_of(&s->rf, &s->rmr_local, &mine);
		if ((ret = raw_addr(&s->rf, buf, &len)) || (ret = oob_send(fd, buf, (uint32_t)len)) ||
		    (ret = oob_send(fd, &mine, sizeof(mine))))
			die("send raw address", ret);
		if ((n = oob_recv(fd, buf, sizeof(buf))) < 0 ||
		    (ret = raw_add_peer(&s->rf, buf, (size_t)n)) != k)
			die("raw peer", n < 0 ? n : ret);
		if (oob_recv(fd, &s->rrmr[k], sizeof(s->rrmr[k])) != sizeof(s->rrmr[k]))
			die("raw peer key", -EPROTO);
	}
	s->npeers++;
}

/* ---- target --------------------------------------------------------------- */

struct pong {
	struct side *s;
	uint32_t imm_in, imm_out;
	atomic_uint_fast64_t left;
};

static void pong_arm(struct pong *p);

static void pong_fire(void *ctx, int status)
{
	struct pong *p = ctx;

	if (status)
		return;
	xfer_write(p->s->e, p->s->mr, 0, p->s->rmr[0], 0, 8, XFER_OP_IMM, p->imm_out, NULL, NULL);
	if (atomic_fetch_sub(&p->left, 1) > 1)
		pong_arm(p);
}

static void pong_arm(struct pong *p)
{
	struct xfer_notify n = { .size = sizeof(n), .fn = pong_fire, .ctx = p };

	xfer_imm_expect(p->s->e, p->imm_in, 1, &n);
}

/* Poll the raw endpoint until the initiator says stop; answer pings. */
static void serve_raw(struct side *s, int fd, bool pong)
{
	uint64_t imm = 0, seen = 0;
	uint32_t data = 0;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	for (uint64_t spin = 0;; spin++) {
		if (raw_poll(&s->rf, &imm, &data) < 0)
			break;
		if (pong && imm > seen) {
			seen = imm;
			while (raw_write(&s->rf, 0, 0, &s->rmr_local, 0, &s->rrmr[0], 0, 8, 2) == -EAGAIN)
				raw_poll(&s->rf, &imm, &data);
		}
		if ((spin & 1023) == 0 && poll(&pfd, 1, 0) > 0)
			break;
	}
}

static int target_main(int fd)
{
	struct config_msg cfg;
	struct side s;
	uint64_t cmd[2];

	if (oob_recv(fd, &cfg, sizeof(cfg)) != sizeof(cfg))
		return 1;
	cfg.provider[sizeof(cfg.provider) - 1] = 0;
	side_open(&s, cfg.provider, cfg.rails, "127.0.0.1", cfg.region, cfg.raw);
	side_exchange(&s, fd);
	for (;;) {
		if (oob_recv(fd, cmd, sizeof(cmd)) != sizeof(cmd) || cmd[0] == CMD_QUIT)
			break;
		if (cmd[0] == CMD_PONG_XFER) {
			struct pong *p = calloc(1, sizeof(*p));

			p->s = &s;
			p->imm_in = 1;
			p->imm_out = 2;
			atomic_store(&p->left, cmd[1]);
			pong_arm(p);
			oob_send_u64(fd, 0);              /* ready */
			oob_recv_u64(fd, &cmd[1]);        /* done */
			/* the last expectation fired before "done": nothing refers to p */
			free(p);
			oob_send_u64(fd, 0);
		} else if (cmd[0] == CMD_SERVE_RAW) {
			oob_send_u64(fd, 0);
			serve_raw(&s, fd, cmd[1] != 0);
			oob_recv_u64(fd, &cmd[1]);
			oob_send_u64(fd, 0);
		}
	}
	side_close(&s);
	return 0;
}

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
};

static int run_submit(struct run *r);

static void run_done(void *ctx, int status)
{
	struct run *r = ctx;

	if (status)
		atomic_store(&r->error, status);
	if (atomic_fetch_add(&r->completed, 1) + 1 == r->n) {
		r->t_end = now_s();
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

		ret = xfer_write(r->s->e, r->s->mr, off, r->s->rmr[0], off, r->size, 0, 0, &d, NULL);
		break;
	}
	case 1:
		ret = xfer_write_paged(r->s->e, &r->paged, &d, NULL);
		break;
	default:
		ret = xfer_scatter(r->s->e, r->s->mr, r->dsts, r->ndsts, XFER_OP_IMM, 7, &d, NULL);
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
	t0 = now_s();
	for (uint64_t i = 0; i < r->window && i < r->n; i++)
		run_submit(r);
	wait_flag(&r->finished);   /* the worker does the work */
	if (atomic_load(&r->error))
		die("operation", atomic_load(&r->error));
	return r->t_end - t0;
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
	double t0 = now_s();
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
	return now_s() - t0;
}

static void raw_cmd(int fd, uint64_t cmd, uint64_t arg)
{
	uint64_t m[2] = { cmd, arg }, ack;

	if (oob_send(fd, m, sizeof(m)) || oob_recv_u64(fd, &ack))
		die("peer", -EPROTO);
}

static void raw_cmd_end(int fd)
{
	uint64_t ack;

	if (oob_send_u64(fd, 0) || oob_recv_u64(fd, &ack))
		die("peer", -EPROTO);
}

/* ---- the tests ------------------------------------------------------------- */

struct bench {
	struct opts *o;
	struct side s;
	int fds[MAX_PEERS];
	int nfds;
	struct out out;
};

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

static int cmp_double(const void *a, const void *b);

/* Repetitions of one measurement, xfer and raw interleaved so the machine's
 * drift falls on both alike. */
struct reps {
	double x[MAX_REPS], raw[MAX_REPS];
	int n;
};

static double median_of(const double *v, int n)
{
	double tmp[MAX_REPS];

	memcpy(tmp, v, (size_t)n * sizeof(double));
	qsort(tmp, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static json_object *range_of(const double *v, int n)
{
	double lo = v[0], hi = v[0];
	json_object *a = json_object_new_array();

	for (int i = 1; i < n; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	json_object_array_add(a, json_object_new_double(lo));
	json_object_array_add(a, json_object_new_double(hi));
	return a;
}

/* key: median of xfer; raw: median of raw; ratio: median of the paired
 * ratios (each xfer rep over the raw rep beside it); ranges beside. */
static double add_figures(json_object *row, const char *key, const struct reps *r, bool have_raw)
{
	char k[64];
	double med = median_of(r->x, r->n);

	json_object_object_add(row, key, json_object_new_double(med));
	snprintf(k, sizeof(k), "%s_range", key);
	json_object_object_add(row, k, range_of(r->x, r->n));
	if (have_raw) {
		double ratios[MAX_REPS];

		for (int i = 0; i < r->n; i++)
			ratios[i] = r->raw[i] > 0 ? r->x[i] / r->raw[i] : 0;
		json_object_object_add(row, "raw", json_object_new_double(median_of(r->raw, r->n)));
		json_object_object_add(row, "raw_range", range_of(r->raw, r->n));
		json_object_object_add(row, "ratio", json_object_new_double(median_of(ratios, r->n)));
		json_object_object_add(row, "ratio_range", range_of(ratios, r->n));
	} else {
		json_object_object_add(row, "raw", NULL);
		json_object_object_add(row, "ratio", NULL);
	}
	json_object_object_add(row, "reps", json_object_new_int(r->n));
	return med;
}

static json_object *row_base(struct bench *b, const char *test, uint64_t size)
{
	json_object *row = json_object_new_object();

	json_object_object_add(row, "test", json_object_new_string(test));
	json_object_object_add(row, "size", json_object_new_int64((int64_t)size));
	json_object_object_add(row, "provider", json_object_new_string(b->o->provider));
	json_object_object_add(row, "rails", json_object_new_int((int)b->o->rails));
	return row;
}

static void test_single(struct bench *b)
{
	static const char *const cols[] = { "size", "GBps", "Gbps", "raw", "ratio" };
	struct opts *o = b->o;

	out_table(&b->out, "single", cols, 5);
	for (int i = 0; i < o->nsizes; i++) {
		uint64_t size = o->sizes[i];
		struct run r = { .s = &b->s, .size = size, .kind = 0 };
		struct reps rp = { .n = o->reps };
		double t;

		if (size > o->region)
			continue;
		r.n = iters_for(o, SINGLE_BUDGET, size, 16, 200000);
		r.window = size <= 65536 ? 64 : (size <= (1u << 20) ? 16 : 4);
		run_xfer(&r);                            /* warm up: registration, connection */
		for (int k = 0; k < rp.n; k++) {
			t = run_xfer(&r);
			rp.x[k] = (double)size * (double)r.n / t / 1e9;
			if (!o->raw)
				continue;
			struct single_gen g = { size, o->region / size, XFER_DEFAULT_STRIPE_THRESHOLD,
						(int)o->rails };
			uint64_t parts = size >= g.threshold ? o->rails : 1;

			raw_cmd(b->fds[0], CMD_SERVE_RAW, 0);
			if (k == 0)
				run_raw(&b->s, r.n * parts, r.window * parts, single_piece, &g);
			t = run_raw(&b->s, r.n * parts, r.window * parts, single_piece, &g);
			raw_cmd_end(b->fds[0]);
			rp.raw[k] = (double)size * (double)r.n / t / 1e9;
		}
		json_object *row = row_base(b, "single", size);
		double gbs = add_figures(row, "GBps", &rp, o->raw);

		json_object_object_add(row, "Gbps", json_object_new_double(gbs * 8));
		out_row(&b->out, row);
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

static void test_paged(struct bench *b)
{
	static const char *const cols[] = { "size", "pages", "Mops", "GBps", "raw", "ratio" };
	static const uint64_t psizes[] = { 1024, 4096, 16384, 65536 };
	static const uint32_t counts[] = { 100, 1000, 10000 };
	struct opts *o = b->o;

	out_table(&b->out, "paged", cols, 6);
	for (size_t pi = 0; pi < 4; pi++) {
		for (size_t ci = 0; ci < 3; ci++) {
			uint64_t psize = psizes[pi];
			uint32_t np = counts[ci];
			uint64_t slots = o->region / psize;
			uint32_t *sp = malloc(np * sizeof(*sp)), *dp = malloc(np * sizeof(*dp));
			struct run r = { .s = &b->s, .kind = 1 };
			struct reps rp = { .n = o->reps };
			double t;

			for (uint32_t k = 0; k < np; k++) {
				sp[k] = (uint32_t)(((uint64_t)rand() << 16 ^ (uint64_t)rand()) % slots);
				dp[k] = (uint32_t)(((uint64_t)rand() << 16 ^ (uint64_t)rand()) % slots);
			}
			r.paged = (struct xfer_paged){ .size = sizeof(r.paged), .src = b->s.mr,
						       .dst = b->s.rmr[0], .src_pages = sp,
						       .dst_pages = dp, .num_pages = np,
						       .page_size = psize };
			r.n = iters_for(o, PAGED_BUDGET, np, 4, 100000);
			/* as many pages queued as raw keeps in flight (1024 a rail),
			 * and one op more so the worker never waits for the next */
			r.window = (1024ull * o->rails + np - 1) / np + 1;
			run_xfer(&r);
			for (int k = 0; k < rp.n; k++) {
				t = run_xfer(&r);
				rp.x[k] = (double)np * (double)r.n / t / 1e6;
				if (!o->raw)
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
			json_object *row = row_base(b, "paged", psize);

			json_object_object_add(row, "pages", json_object_new_int((int)np));
			double mops = add_figures(row, "Mops", &rp, o->raw);

			json_object_object_add(row, "GBps", json_object_new_double(mops * (double)psize / 1e3));
			out_row(&b->out, row);
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
	p->samples[p->i++] = (now_s() - p->t_sent) / 2 * 1e6;
	if (p->i == p->n)
		set_flag(&p->finished);
	else
		ping_send(p);
}

static void ping_send(struct ping *p)
{
	struct xfer_notify n = { .size = sizeof(n), .fn = ping_back, .ctx = p };

	xfer_imm_expect(p->s->e, 2, 1, &n);
	p->t_sent = now_s();
	xfer_write(p->s->e, p->s->mr, 0, p->s->rmr[0], 0, 8, XFER_OP_IMM, 1, NULL, NULL);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, uint64_t n, double q)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(uint64_t)(q * (double)(n - 1))];
}

/* One ping-pong series through xfer: one-way latencies into v. */
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
		double t0 = now_s();

		while (raw_write(&b->s.rf, 0, 0, &b->s.rmr_local, 0, &b->s.rrmr[0], 0, 8, 1) == -EAGAIN)
			raw_poll(&b->s.rf, &imm, &data);
		while (imm == seen)
			if (raw_poll(&b->s.rf, &imm, &data) < 0)
				die("raw ping", -EIO);
		seen = imm;
		v[i] = (now_s() - t0) / 2 * 1e6;
	}
	raw_cmd_end(b->fds[0]);
}

static void test_imm(struct bench *b)
{
	static const char *const cols[] = { "size", "p50_us", "p99_us", "raw_p50_us", "raw_p99_us",
					    "ratio" };
	struct opts *o = b->o;
	uint64_t n = o->iters ? o->iters : 20000, warm = n / 10 + 1;
	double *v = calloc(n + warm, sizeof(double));
	struct reps p50 = { .n = o->reps }, p99 = { .n = o->reps };

	for (int k = 0; k < o->reps; k++) {
		imm_xfer_series(b, v, n + warm);
		p50.x[k] = pct(v + warm, n, 0.5);
		p99.x[k] = pct(v + warm, n, 0.99);
		if (!o->raw)
			continue;
		imm_raw_series(b, v, n + warm);
		p50.raw[k] = pct(v + warm, n, 0.5);
		p99.raw[k] = pct(v + warm, n, 0.99);
	}
	json_object *row = row_base(b, "imm", 8);

	/* ratio: p50 over raw p50, the median of the paired repetitions */
	add_figures(row, "p50_us", &p50, o->raw);
	json_object_object_add(row, "raw_p50_us", o->raw ? json_object_new_double(
				       median_of(p50.raw, p50.n)) : NULL);
	json_object_object_add(row, "p99_us", json_object_new_double(median_of(p99.x, p99.n)));
	json_object_object_add(row, "raw_p99_us", o->raw ? json_object_new_double(
				       median_of(p99.raw, p99.n)) : NULL);
	out_table(&b->out, "imm", cols, 6);
	out_row(&b->out, row);
	free(v);
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

static void test_scatter(struct bench *b)
{
	static const char *const cols[] = { "size", "peers", "GBps", "raw", "ratio" };
	static const uint64_t sizes[] = { 4096, 65536, 1u << 20 };
	struct opts *o = b->o;
	int peers = b->s.npeers;

	out_table(&b->out, "scatter", cols, 5);
	for (size_t si = 0; si < 3; si++) {
		uint64_t size = sizes[si];
		struct run r = { .s = &b->s, .kind = 2, .ndsts = (uint32_t)peers };
		struct reps rp = { .n = o->reps };
		double t;

		if (size * (uint64_t)peers > o->region)
			continue;
		for (int k = 0; k < peers; k++)
			r.dsts[k] = (struct xfer_scatter_dst){ b->s.rmr[k], (uint64_t)k * size, 0, size };
		r.n = iters_for(o, SINGLE_BUDGET / 2, size * (uint64_t)peers, 16, 50000);
		r.window = 8;
		run_xfer(&r);
		for (int k = 0; k < rp.n; k++) {
			t = run_xfer(&r);
			rp.x[k] = (double)size * (double)peers * (double)r.n / t / 1e9;
			if (!o->raw)
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
		json_object *row = row_base(b, "scatter", size);

		json_object_object_add(row, "peers", json_object_new_int(peers));
		add_figures(row, "GBps", &rp, o->raw);
		out_row(&b->out, row);
	}
}

static bool want(const struct opts *o, const char *t)
{
	if (!o->tests)
		return true;
	char buf[128], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", o->tests);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (strcmp(tok, t) == 0)
			return true;
	return false;
}

static void initiator(struct opts *o, int *fds, int nfds)
{
	struct bench b = { .o = o, .nfds = nfds };
	struct config_msg cfg = { .rails = o->rails, .raw = o->raw, .region = o->region };
	uint64_t quit[2] = { CMD_QUIT, 0 };
	time_t now = time(NULL);
	char date[32];

	memcpy(b.fds, fds, (size_t)nfds * sizeof(int));
	snprintf(cfg.provider, sizeof(cfg.provider), "%s", o->provider);
	out_init(&b.out, o->json, o->pretty);
	side_open(&b.s, o->provider, o->rails, o->node, o->region, o->raw);
	for (int k = 0; k < nfds; k++) {
		if (oob_send(fds[k], &cfg, sizeof(cfg)))
			die("peer", -EPROTO);
		side_exchange(&b.s, fds[k]);
	}
	struct xfer_engine_info info = { .size = sizeof(info) };

	xfer_engine_query(b.s.e, &info);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	out_set(&b.out, "provider", json_object_new_string(info.provider));
	out_set(&b.out, "rails", json_object_new_int((int)info.num_rails));
	json_object *names = json_object_new_array();

	for (uint32_t i = 0; i < info.num_rails; i++)
		json_object_array_add(names, json_object_new_string(info.rail_names[i]));
	out_set(&b.out, "devices", names);
	out_set(&b.out, "date", json_object_new_string(date));
	o->provider = strdup(info.provider);
	if (want(o, "single"))
		test_single(&b);
	if (want(o, "paged"))
		test_paged(&b);
	if (want(o, "imm"))
		test_imm(&b);
	if (want(o, "scatter"))
		test_scatter(&b);
	for (int k = 0; k < nfds; k++)
		oob_send(fds[k], quit, sizeof(quit));
	side_close(&b.s);
	out_finish(&b.out);
}

/* ---- command line --------------------------------------------------------- */

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'k': case 'K': return v << 10;
	case 'm': case 'M': return v << 20;
	case 'g': case 'G': return v << 30;
	default: return v;
	}
}

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: xfer-bench [options]                 loopback (forks its peers)\n"
		"       xfer-bench --server [options]        wait for a client\n"
		"       xfer-bench --client HOST [options]   run against a server\n"
		"  -p, --provider P     shm (default loopback), tcp;ofi_rxm, efa, verbs;ofi_rxm, verbs,\n"
		"                       local (xfer's own, processes on one host)\n"
		"  -d, --rails N      NICs per engine (default 1)\n"
		"      --devices LIST   NIC names, one per rail, e.g. mlx5_0,mlx5_1\n"
		"      --gpu N          CUDA device index: with no --devices, the NICs nearest it\n"
		"  -s, --sizes LIST     single-write sizes, e.g. 4K,1M,64M (default 1K..64M)\n"
		"  -n, --iters N        operations per measurement (default: from a byte budget)\n"
		"  -t, --tests LIST     single,paged,imm,scatter (default all)\n"
		"  -r, --reps N         repetitions, xfer and raw interleaved: medians, ranges,\n"
		"                       and the median of the paired ratios (default 1)\n"
		"      --peers N        scatter peers in loopback (default 3)\n"
		"      --raw            also measure plain libfabric and print xfer/raw ratios\n"
		"      --node ADDR      local address for IP providers (default 127.0.0.1)\n"
		"  -P, --port N         out-of-band TCP port (default %d)\n"
		"  -j, --json           one JSON document;  --pretty  indented\n",
		PORT_DEFAULT);
	exit(code);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "provider", 1, 0, 'p' }, { "rails", 1, 0, 'd' }, { "sizes", 1, 0, 's' },
		{ "iters", 1, 0, 'n' }, { "tests", 1, 0, 't' }, { "peers", 1, 0, 1 },
		{ "raw", 0, 0, 2 }, { "node", 1, 0, 3 }, { "port", 1, 0, 'P' },
		{ "json", 0, 0, 'j' }, { "pretty", 0, 0, 4 }, { "server", 0, 0, 5 },
		{ "client", 1, 0, 6 }, { "reps", 1, 0, 'r' }, { "help", 0, 0, 'h' },
		{ "devices", 1, 0, 7 }, { "gpu", 1, 0, 8 }, { 0 },
	};
	struct opts o = { .provider = "shm", .rails = 1, .node = "127.0.0.1", .port = PORT_DEFAULT,
			  .scatter_peers = 3, .region = 64ull << 20, .reps = 1 };
	int c;

	while ((c = getopt_long(argc, argv, "p:d:s:n:t:P:r:jh", lo, NULL)) != -1) {
		switch (c) {
		case 'p': o.provider = optarg; break;
		case 'd': o.rails = (uint32_t)atoi(optarg); break;
		case 's': {
			char *save = NULL, *buf = strdup(optarg);

			for (char *t = strtok_r(buf, ",", &save); t && o.nsizes < MAX_SIZES;
			     t = strtok_r(NULL, ",", &save))
				o.sizes[o.nsizes++] = parse_size(t);
			break;
		}
		case 'n': o.iters = strtoull(optarg, NULL, 0); break;
		case 'r': o.reps = atoi(optarg); break;
		case 't': o.tests = optarg; break;
		case 1: o.scatter_peers = (uint32_t)atoi(optarg); break;
		case 2: o.raw = true; break;
		case 3: o.node = optarg; break;
		case 'P': o.port = (uint16_t)atoi(optarg); break;
		case 'j': o.json = true; break;
		case 4: o.json = o.pretty = true; break;
		case 5: o.server = true; break;
		case 6: o.client = optarg; break;
		case 7: opt_devices = optarg; break;
		case 8: opt_gpu = atoi(optarg); break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind < argc || o.rails < 1 || o.rails > XFER_MAX_RAILS ||
	    o.scatter_peers < 1 || o.scatter_peers > MAX_PEERS || o.reps < 1 || o.reps > MAX_REPS)
		usage(2);
	if (!o.nsizes)
		for (uint64_t s = 1024; s <= (64u << 20); s *= 4)
			o.sizes[o.nsizes++] = s;
	if (o.raw && (strcmp(o.provider, "verbs") == 0 || strcmp(o.provider, "local") == 0)) {
		fprintf(stderr, "xfer-bench: --raw compares with libfabric; %s has no libfabric "
				"counterpart (verbs: use perftest)\n", o.provider);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	if (o.server) {
		int lfd = oob_listen(o.port), fd;

		if (lfd < 0)
			die("listen", lfd);
		fd = oob_accept(lfd);
		if (fd < 0)
			die("accept", fd);
		close(lfd);
		return target_main(fd);
	}
	if (o.client) {
		int fd = oob_connect(o.client, o.port, 10000);

		if (fd < 0)
			die("connect", fd);
		o.scatter_peers = 1;
		initiator(&o, &fd, 1);
		return 0;
	}

	/* Loopback: fork the targets (scatter uses them all, the rest the first). */
	int fds[MAX_PEERS];
	pid_t pids[MAX_PEERS];
	int n = want(&o, "scatter") ? (int)o.scatter_peers : 1, status = 0;

	for (int k = 0; k < n; k++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			die("socketpair", -errno);
		fflush(NULL);
		pids[k] = fork();
		if (pids[k] == 0) {
			for (int j = 0; j < k; j++)
				close(fds[j]);
			close(sv[0]);
			_exit(target_main(sv[1]));
		}
		close(sv[1]);
		fds[k] = sv[0];
	}
	initiator(&o, fds, n);
	for (int k = 0; k < n; k++) {
		int st;

		close(fds[k]);
		waitpid(pids[k], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			status = 1;
	}
	return status;
}
