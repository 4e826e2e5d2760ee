/* SPDX-License-Identifier: MIT */
/*
 * Both roles' engines and the out-of-band protocol between the initiator
 * and its targets: a config message, then each side's [engine address]
 * [region descriptor] (and, with --raw, [raw address][raw key]), then
 * commands (enum CMD_*) the target answers until CMD_QUIT.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"
#include "oob.h"
#include "provider.h"

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
	       const char *node, uint64_t region, bool raw)
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

/* Exchange with one peer: [engine address][descriptor][raw addrs][raw key]. */
void side_exchange(struct side *s, int fd)
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

int target_main(const struct opts *o, int fd)
{
	struct config_msg cfg;
	struct side s;
	uint64_t cmd[2];

	if (oob_recv(fd, &cfg, sizeof(cfg)) != sizeof(cfg))
		return 1;
	cfg.provider[sizeof(cfg.provider) - 1] = 0;
	side_open(&s, o, cfg.provider, cfg.rails, "127.0.0.1", cfg.region, cfg.raw);
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


void raw_cmd(int fd, uint64_t cmd, uint64_t arg)
{
	uint64_t m[2] = { cmd, arg }, ack;

	if (oob_send(fd, m, sizeof(m)) || oob_recv_u64(fd, &ack))
		die("peer", -EPROTO);
}

void raw_cmd_end(int fd)
{
	uint64_t ack;

	if (oob_send_u64(fd, 0) || oob_recv_u64(fd, &ack))
		die("peer", -EPROTO);
}

