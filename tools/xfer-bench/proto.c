/* SPDX-License-Identifier: MIT */
/*
 * Both roles' engines and the out-of-band protocol between the initiator
 * and its targets: a config message, then each side's [engine address]
 * [region descriptor] (and, with --raw, [raw address][raw key]), then
 * commands (enum CMD_*, struct cmd_msg) the target answers until CMD_QUIT.
 * Every region is filled with its process's pattern (pattern_fill), so a
 * target can tell what landed from a writer's bytes (CMD_CHECK).
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"
#include "clock.h"
#include "oob.h"
#include "provider.h"

/* ---- patterns ------------------------------------------------------------- */

static uint64_t pat_word(uint32_t salt, uint64_t w)
{
	uint64_t x = (w + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)salt + 1) * 0xbf58476d1ce4e5b9ull;

	x ^= x >> 29;
	return x * 0x94d049bb133111ebull;
}

uint8_t pattern_byte(uint32_t salt, uint64_t i)
{
	return (uint8_t)(pat_word(salt, i >> 3) >> ((i & 7) * 8));
}

void pattern_fill(void *buf, uint32_t salt, uint64_t off, uint64_t len)
{
	uint8_t *p = (uint8_t *)buf + off;

	for (uint64_t j = 0; j < len;) {
		uint64_t i = off + j, w = pat_word(salt, i >> 3);

		for (unsigned b = i & 7; b < 8 && j < len; b++, j++)
			p[j] = (uint8_t)(w >> (b * 8));
	}
}

uint64_t pattern_check(const uint8_t *dst, uint32_t salt, uint64_t src_off, uint64_t len)
{
	uint64_t bad = 0;

	for (uint64_t j = 0; j < len;) {
		uint64_t i = src_off + j, w = pat_word(salt, i >> 3);

		for (unsigned b = i & 7; b < 8 && j < len; b++, j++)
			bad += dst[j] != (uint8_t)(w >> (b * 8));
	}
	return bad;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

void paged_lists(uint64_t seed, uint32_t np, uint64_t slots, uint32_t *sp, uint32_t *dp)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1, a, b;

	/* k -> a*k + b mod slots is one-to-one when a is coprime to slots */
	x ^= x >> 31;
	a = (x % slots) | 1;
	while (gcd(a, slots) != 1)
		a += 2;
	b = (x >> 17) % slots;
	for (uint32_t k = 0; k < np; k++) {
		if (np <= slots) {
			dp[k] = (uint32_t)((a * k + b) % slots);
		} else {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			dp[k] = (uint32_t)(x % slots);
		}
		sp[k] = (uint32_t)((dp[k] * 7ull + seed) % slots);
	}
}

void wait_flag(_Atomic uint32_t *flag)
{
	while (!atomic_load(flag))
		syscall(SYS_futex, (uint32_t *)flag, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

void set_flag(_Atomic uint32_t *flag)
{
	atomic_store(flag, 1);
	syscall(SYS_futex, (uint32_t *)flag, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}


/* ---- both sides: engines, regions, raw endpoints ------------------------ */
void side_open(struct side *s, const struct opts *o, const char *prov, uint32_t rails,
	       const char *node, uint64_t region, bool raw, uint32_t salt)
{
	struct xfer_engine_attr a;
	int ret;

	memset(s, 0, sizeof(*s));
	xfer_engine_attr_init(&a);
	a.provider = prov;
	a.num_rails = rails;
	a.node = node;
	a.devices = o->devices;
	a.gpu = o->gpu;
	ret = xfer_engine_create(&a, &s->e);
	if (ret) {
		char why[1024];

		provider_explain(prov, ret, why, sizeof(why));
		out_fail(&bench_out, 0, "engine on %u rail(s)%s%s: %s", rails,
			 o->devices ? ", devices " : "", o->devices ? o->devices : "", why);
		exit(1);
	}
	if (posix_memalign(&s->buf, 4096, region))
		die("memory", -ENOMEM);
	pattern_fill(s->buf, salt, 0, region);
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

void side_close(struct side *s)
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

void exchange_one(xfer_engine *e, xfer_mr *mr, int fd, uint32_t *peer, xfer_rmr **rmr,
		  uint8_t *peer_addr, size_t *peer_len)
{
	uint8_t buf[4096];
	size_t len = sizeof(buf);
	int n, ret;

	if ((ret = xfer_engine_address(e, buf, &len)) || (ret = oob_send(fd, buf, (uint32_t)len)))
		die("send address", ret);
	len = sizeof(buf);
	if ((ret = xfer_mr_descriptor(mr, buf, &len)) || (ret = oob_send(fd, buf, (uint32_t)len)))
		die("send descriptor", ret);
	if ((n = oob_recv(fd, buf, sizeof(buf))) < 0 ||
	    (ret = xfer_engine_add_peer(e, buf, (size_t)n, peer)))
		die("peer address", n < 0 ? n : ret);
	if (peer_addr && (size_t)n <= *peer_len) {
		memcpy(peer_addr, buf, (size_t)n);
		*peer_len = (size_t)n;
	}
	if ((n = oob_recv(fd, buf, sizeof(buf))) < 0 ||
	    (ret = xfer_rmr_import(e, *peer, buf, (size_t)n, rmr)))
		die("peer descriptor", n < 0 ? n : ret);
}

/* Exchange with one peer: [engine address][descriptor][raw addrs][raw key]. */
void side_exchange(struct side *s, int fd)
{
	uint8_t buf[4096];
	size_t len;
	int n, ret, k = s->npeers;

	s->peer_len = sizeof(s->peer_addr);
	exchange_one(s->e, s->mr, fd, &s->peer[k], &s->rmr[k], k ? NULL : s->peer_addr,
		     &s->peer_len);
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

/* ---- writes with per-write latency (peers: both directions) --------------- */

struct wop {
	struct wrun *r;
	int d;
	double t;
};

struct wrun {
	xfer_engine *e;
	xfer_mr *mr;
	xfer_rmr *const *dst;
	const uint64_t *soff, *doff;
	uint64_t size, per_dst, slots, total;
	uint32_t imm;
	atomic_uint_fast64_t next[MAX_PEERS], completed, nlat;
	double *lat, t_end;
	_Atomic int err;
	_Atomic uint32_t fin;
};

static void wop_post(struct wop *o);

static void wop_done(void *ctx, int status)
{
	struct wop *o = ctx;
	struct wrun *r = o->r;

	r->lat[atomic_fetch_add(&r->nlat, 1)] = (xfer_now_s() - o->t) * 1e6;
	if (status) {
		atomic_store(&r->err, status);
		set_flag(&r->fin);
		return;
	}
	if (atomic_fetch_add(&r->completed, 1) + 1 == r->total) {
		r->t_end = xfer_now_s();
		set_flag(&r->fin);
		return;
	}
	wop_post(o);
}

static void wop_post(struct wop *o)
{
	struct wrun *r = o->r;
	uint64_t i = atomic_fetch_add(&r->next[o->d], 1), off = (i % r->slots) * r->size;
	struct xfer_done d = { wop_done, o };
	int ret;

	if (i >= r->per_dst)
		return;
	o->t = xfer_now_s();
	ret = xfer_write(r->e, r->mr, r->soff[o->d] + off, r->dst[o->d], r->doff[o->d] + off,
			 r->size, XFER_OP_IMM, r->imm, &d, NULL);
	if (ret) {
		atomic_store(&r->err, ret);
		set_flag(&r->fin);
	}
}

int lat_writes(xfer_engine *e, xfer_mr *mr, xfer_rmr *const *dst, int ndst,
	       const uint64_t *soff, const uint64_t *doff, uint64_t span, uint64_t size,
	       uint64_t per_dst, uint32_t window, uint32_t imm, struct wres *res)
{
	struct wrun *r = calloc(1, sizeof(*r));
	struct wop *ops = calloc((size_t)ndst * window, sizeof(*ops));
	double t0;
	int err;

	r->e = e;
	r->mr = mr;
	r->dst = dst;
	r->soff = soff;
	r->doff = doff;
	r->size = size;
	r->per_dst = per_dst;
	r->slots = span / size ? span / size : 1;
	r->total = per_dst * (uint64_t)ndst;
	r->imm = imm;
	r->lat = calloc(r->total, sizeof(double));
	t0 = xfer_now_s();
	for (int d = 0; d < ndst; d++)
		for (uint32_t w = 0; w < window; w++) {
			ops[d * (int)window + (int)w] = (struct wop){ .r = r, .d = d };
			wop_post(&ops[d * (int)window + (int)w]);
		}
	wait_flag(&r->fin);
	err = atomic_load(&r->err);
	res->status = err;
	res->secs = r->t_end - t0;
	res->bytes = r->total * size;
	res->p50_us = err ? 0 : pct(r->lat, r->total, 0.5);
	res->p99_us = err ? 0 : pct(r->lat, r->total, 0.99);
	/* an error leaves writes in flight whose callbacks use r: keep it */
	if (!err) {
		free(r->lat);
		free(r);
		free(ops);
	}
	return err;
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

#define WAIT_MS 20000   /* one arrival, at most: far above any run's gap */

/* One arrival of imm, consumed: busy spins on the counter first (a
 * receiver that burns its core), idle blocks in xfer_imm_wait at once. */
static int take_one(xfer_engine *e, uint32_t imm, bool idle)
{
	if (!idle) {
		double end = xfer_now_s() + WAIT_MS / 1e3;

		/* spinning, yet yielding: on a machine with fewer cores than
		 * busy threads a pure spin would starve the workers it waits on */
		while (xfer_imm_count(e, imm) < 1) {
			if (xfer_now_s() > end)
				return -ETIMEDOUT;
			sched_yield();
		}
	}
	return xfer_imm_wait(e, imm, 1, WAIT_MS);
}

/* A write's completion means "landed" on some providers and only "sent" on
 * others (tcp;ofi_rxm): writes without an immediate may still be on their
 * way when the check arrives over the out-of-band socket. So a check that
 * fails looks again, for up to LAND_MS, before it reports what is missing. */
#define LAND_MS 5000

static void nap_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000000 };

	nanosleep(&ts, NULL);
}

static int64_t do_check(struct side *s, uint32_t own, const uint64_t *a)
{
	uint64_t dst = a[0], src = a[1], len = a[2];
	uint64_t bad;

	if (dst > xfer_mr_len(s->mr) || len > xfer_mr_len(s->mr) - dst)
		return -ERANGE;
	for (int waited = 0;; waited++) {
		bad = pattern_check((uint8_t *)s->buf + dst, (uint32_t)a[3], src, len);
		if (!bad || waited >= LAND_MS)
			break;
		nap_ms(1);
	}
	/* our own pattern again, which no writer's matches: the next check
	 * passes only if its own writes landed, and the range is a source of
	 * ours again (CMD_WRITE) */
	pattern_fill(s->buf, own, dst, len);
	return (int64_t)bad;
}

static int64_t do_check_paged(struct side *s, uint32_t own, const uint64_t *a)
{
	uint64_t seed = a[0], psize = a[2], slots = a[3], bad = 0;
	uint32_t np = (uint32_t)a[1], salt = (uint32_t)a[4];
	uint32_t *sp, *dp;

	if (!psize || !slots || slots * psize > xfer_mr_len(s->mr))
		return -ERANGE;
	sp = malloc(np * sizeof(*sp));
	dp = malloc(np * sizeof(*dp));
	if (!sp || !dp) {
		free(sp);
		free(dp);
		return -ENOMEM;
	}
	paged_lists(seed, np, slots, sp, dp);
	for (int waited = 0;; waited++) {
		bad = 0;
		for (uint32_t k = 0; k < np; k++)
			bad += pattern_check((uint8_t *)s->buf + dp[k] * psize, salt, sp[k] * psize,
					     psize);
		if (!bad || waited >= LAND_MS / 10)
			break;
		nap_ms(10);
	}
	for (uint32_t k = 0; k < np; k++)
		pattern_fill(s->buf, own, dp[k] * psize, psize);
	free(sp);
	free(dp);
	return (int64_t)bad;
}

int target_main(const struct opts *o, int fd, int salt, const char *node)
{
	struct config_msg cfg;
	struct side main_side, fresh = { 0 }, *s = &main_side;
	struct cmd_msg m;
	uint64_t ack;
	int n;

	if (oob_recv(fd, &cfg, sizeof(cfg)) != sizeof(cfg))
		return 1;
	cfg.provider[sizeof(cfg.provider) - 1] = 0;
	side_open(s, o, cfg.provider, cfg.rails, node, cfg.region, cfg.raw, (uint32_t)salt);
	side_exchange(s, fd);
	if (o->verbose) {
		uint8_t addr[XFER_ADDR_MAX];
		size_t len = sizeof(addr);

		/* what this side published, as the peer will read it */
		if (xfer_engine_address(s->e, addr, &len) == 0) {
			json_object *a = addr_describe(cfg.provider, node, addr, len);

			fprintf(stderr, "xfer-bench: target %d published %s\n", salt,
				json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
			json_object_put(a);
		}
	}
	for (;;) {
		memset(&m, 0, sizeof(m));
		n = oob_recv(fd, &m, sizeof(m));
		if (n < 16 || m.cmd == CMD_QUIT)
			break;
		switch (m.cmd) {
		case CMD_PONG_XFER: {
			struct pong *p = calloc(1, sizeof(*p));

			p->s = s;
			p->imm_in = 1;
			p->imm_out = 2;
			atomic_store(&p->left, m.a[0]);
			pong_arm(p);
			oob_send_u64(fd, 0);              /* ready */
			oob_recv_u64(fd, &ack);           /* done */
			/* the last expectation fired before "done": nothing refers to p */
			free(p);
			oob_send_u64(fd, 0);
			break;
		}
		case CMD_SERVE_RAW:
			oob_send_u64(fd, 0);
			serve_raw(s, fd, m.a[0] != 0);
			oob_recv_u64(fd, &ack);
			oob_send_u64(fd, 0);
			break;
		case CMD_EXPECT: {
			int st = 0;

			oob_send_u64(fd, 0);              /* armed */
			for (uint64_t i = 0; i < m.a[1] && !st; i++)
				st = take_one(s->e, (uint32_t)(m.a[0] + (m.a[2] ? i : 0)), m.a[3] != 0);
			oob_send_u64(fd, (uint64_t)(int64_t)st);
			break;
		}
		case CMD_PONG_IDLE: {
			int st = 0;

			oob_send_u64(fd, 0);
			for (uint64_t i = 0; i < m.a[0] && !st; i++) {
				st = xfer_imm_wait(s->e, 1, 1, WAIT_MS);
				if (!st)
					st = xfer_write(s->e, s->mr, 0, s->rmr[0], 0, 8, XFER_OP_IMM, 2,
							NULL, NULL);
			}
			oob_send_u64(fd, (uint64_t)(int64_t)st);
			break;
		}
		case CMD_CHECK:
			oob_send_u64(fd, (uint64_t)do_check(s, (uint32_t)salt, m.a));
			break;
		case CMD_CHECK_PAGED:
			oob_send_u64(fd, (uint64_t)do_check_paged(s, (uint32_t)salt, m.a));
			break;
		case CMD_WRITE: {
			/* a0 size, a1 count, a2 offset (source and destination), a3
			 * window, a4 imm, a5 span: into peer 0's region */
			struct wres r = { 0 };
			uint64_t off = m.a[2];

			/* our source: what others wrote here was checked, and our
			 * pattern put back (do_check) */
			if (off > xfer_mr_len(s->mr) || m.a[5] > xfer_mr_len(s->mr) - off)
				return 1;
			lat_writes(s->e, s->mr, &s->rmr[0], 1, &off, &off, m.a[5], m.a[0], m.a[1],
				   (uint32_t)m.a[3], (uint32_t)m.a[4], &r);
			oob_send(fd, &r, sizeof(r));
			if (r.status)
				return 1;   /* writes still in flight: do not close the engine */
			break;
		}
		case CMD_FRESH: {
			uint32_t peer;

			/* a new engine and region: a peer the initiator never met */
			if (fresh.e)
				side_close(&fresh);
			side_open(&fresh, o, cfg.provider, cfg.rails, node, cfg.region, false,
				  (uint32_t)salt);
			exchange_one(fresh.e, fresh.mr, fd, &peer, &fresh.rmr[0], NULL, NULL);
			fresh.npeers = 1;
			s = &fresh;
			break;
		}
		default:
			fprintf(stderr, "xfer-bench: target: unknown command %llu\n",
				(unsigned long long)m.cmd);
			return 1;
		}
	}
	if (fresh.e)
		side_close(&fresh);
	side_close(&main_side);
	return 0;
}

int cmd_send(int fd, uint64_t cmd, const uint64_t *args, int nargs)
{
	struct cmd_msg m = { .cmd = cmd };

	for (int i = 0; i < nargs && i < 7; i++)
		m.a[i] = args[i];
	return oob_send(fd, &m, sizeof(m));
}

void raw_cmd(int fd, uint64_t cmd, uint64_t arg)
{
	uint64_t ack;

	if (cmd_send(fd, cmd, &arg, 1) || oob_recv_u64(fd, &ack))
		die("peer", -EPROTO);
}

void raw_cmd_end(int fd)
{
	uint64_t ack;

	if (oob_send_u64(fd, 0) || oob_recv_u64(fd, &ack))
		die("peer", -EPROTO);
}
