/* SPDX-License-Identifier: MIT */
/*
 * `xfer-moe run`: R rank processes, each with its own engine and one
 * xfer_moe context, and this process as their coordinator (the control
 * plane, as a launcher's rendezvous is): it relays the blobs, starts the
 * layers once every rank is connected, and gathers every rank's times.
 *
 * A rank tells the coordinator everything over its socketpair, one framed
 * message each (tools/common/oob.h): its blob, that it is connected, a
 * heartbeat every second, its times at the end, or the error that stopped
 * it. The coordinator never waits on a rank without a deadline: a rank that
 * dies (EOF on its socket: the signal or status is named), reports an
 * error, or stays silent past the deadline (then it is killed) fails the
 * run with its rank and the reason; the others are given the context's
 * timeout to see their peer gone and report, then killed. No hang.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xfer.h"
#include "clock.h"
#include "launch.h"
#include "oob.h"
#include "provider.h"
#include "moe.h"

enum { M_BLOB = 1, M_READY, M_BEAT, M_RESULT, M_ERROR };
#define CMD_GO 1
#define CMD_END 2
#define BLOB_MAX (1u << 20)
#define ERR_MAX 512

/* The receive timeout the ranks' contexts use (xfer_moe_attr's default). */
static int ctx_timeout_ms(const struct moe_run_opts *o)
{
	return o->timeout_ms > 0 ? o->timeout_ms : 10000;
}

/* ---- a rank ------------------------------------------------------------- */

struct rank {
	const struct moe_run_opts *o;
	uint32_t rank;
	int fd;                    /* to the coordinator (forked mode) */
	struct launch *l;          /* launcher mode: the store instead */
	uint32_t run;              /* launcher mode: this run's number, in its exchanges' names */
	bool lost;                 /* launcher mode: an exchange failed, the run is over */
	double last_beat;
	char err[ERR_MAX];
};

/* Launched: this run's name for an exchange or barrier. */
static const char *run_name(const struct rank *k, const char *what, char *buf, size_t len)
{
	snprintf(buf, len, "%s.%u", what, k->run);
	return buf;
}

static int send_msg(int fd, uint32_t type, const void *p, size_t len)
{
	uint8_t *m = malloc(4 + len);
	int ret;

	if (!m)
		return -ENOMEM;
	memcpy(m, &type, 4);
	if (len)
		memcpy(m + 4, p, len);
	ret = oob_send(fd, m, (uint32_t)(4 + len));
	free(m);
	return ret;
}

static void beat(struct rank *k, uint64_t it)
{
	double now = xfer_now_s();

	if (k->l)   /* launched: nobody watches; the store's leases say who died */
		return;
	if (now - k->last_beat >= 1.0) {
		send_msg(k->fd, M_BEAT, &it, sizeof(it));
		k->last_beat = now;
	}
}

/* A library call failed: what, where, and the context's reason. */
static int fail(struct rank *k, int ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct rank *k, int ret, const char *fmt, ...)
{
	const char *why = xfer_moe_last_error();
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(k->err, sizeof(k->err), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(k->err))
		snprintf(k->err + n, sizeof(k->err) - (size_t)n, ": %s", why && why[0] ? why
						: xfer_strerror(ret));
	return ret ? ret : -EIO;
}

static int engine_open(struct rank *k, xfer_engine **e)
{
	struct xfer_engine_attr a;
	int ret;

	xfer_engine_attr_init(&a);
	a.provider = k->o->provider;
	/* forked: every rank on this host; launched: the address --node settled */
	a.node = k->l ? k->l->node : "127.0.0.1";
	if (k->l)
		a.gpu = k->l->gpu;
	a.peer_timeout_ms = (uint32_t)ctx_timeout_ms(k->o);
	a.idle_spin_us = 200;   /* R processes share the cores */
	ret = xfer_engine_create(&a, e);
	if (ret)
		snprintf(k->err, sizeof(k->err), "opening an engine on '%s': %s", k->o->provider,
			 xfer_strerror(ret));
	return ret;
}

/* Blob out, everyone's blobs in, connect. Launched, a status != 0 (the
 * set-up failed, k->err says why) is published instead of a blob. */
static int exchange(struct rank *k, xfer_moe *m, int status)
{
	uint32_t R = k->o->ep;
	uint8_t *buf = malloc(BLOB_MAX), **blobs = calloc(R, sizeof(*blobs));
	size_t len = BLOB_MAX, *lens = calloc(R, sizeof(*lens));
	int ret = status ? status : buf && blobs && lens ? 0 : -ENOMEM;

	if (!ret && (ret = xfer_moe_blob(m, buf, &len)))
		fail(k, ret, "xfer_moe_blob");
	if (k->l) {   /* launched: through the store */
		const struct xfer_rdzv_blob *all;
		char name[32];

		if ((ret = launch_exchange(k->l, run_name(k, "blob", name, sizeof(name)), ret, k->err,
					   buf, len, &all, k->err, sizeof(k->err))))
			k->lost = true;
		for (uint32_t r = 0; !ret && r < R; r++) {
			blobs[r] = (uint8_t *)all[r].data;
			lens[r] = all[r].len;
		}
		if (!ret && (ret = xfer_moe_connect(m, (const void *const *)blobs, lens,
						    ctx_timeout_ms(k->o))))
			fail(k, ret, "xfer_moe_connect");
		free(blobs);
		free(lens);
		free(buf);
		return ret;
	}
	if (!ret && (ret = send_msg(k->fd, M_BLOB, buf, len)))
		snprintf(k->err, sizeof(k->err), "sending its blob: %s", strerror(-ret));
	for (uint32_t r = 0; !ret && r < R; r++) {
		int n = oob_recv(k->fd, buf, BLOB_MAX);

		if (n < 0) {
			ret = n;
			snprintf(k->err, sizeof(k->err), "receiving rank %u's blob: %s", r, strerror(-n));
		} else if (!(blobs[r] = malloc(n ? (size_t)n : 1))) {
			ret = -ENOMEM;
		} else {
			memcpy(blobs[r], buf, (size_t)n);
			lens[r] = (size_t)n;
		}
	}
	if (!ret && (ret = xfer_moe_connect(m, (const void *const *)blobs, lens, ctx_timeout_ms(k->o))))
		fail(k, ret, "xfer_moe_connect");
	for (uint32_t r = 0; blobs && r < R; r++)
		free(blobs[r]);
	free(blobs);
	free(lens);
	free(buf);
	return ret;
}

/* The check's expert on every row received: y = f(expert, x). */
static void experts(const struct xfer_moe_layout *l, const struct xfer_moe_recv *rv)
{
	for (uint32_t e = 0; e < rv->local_experts; e++)
		for (uint64_t i = 0; i < rv->count[e]; i++) {
			uint64_t row = rv->offset[e] + i;

			moe_expert((void *)l, l->rank * l->local_experts + e, rv->x + row * l->token_bytes,
				   rv->scales ? rv->scales + row * l->scales : NULL,
				   rv->y + row * l->hidden);
		}
}

struct bufs {
	uint16_t *x, *out, *ref;
	int32_t *topk[XFER_MOE_SLOTS];
	float *weights[XFER_MOE_SLOTS];
};

static int layers(struct rank *k, xfer_moe *m, const struct xfer_moe_layout *l, struct bufs *b,
		  double *times, uint64_t *checked)
{
	const struct moe_run_opts *o = k->o;
	uint32_t T = l->max_tokens, H = l->hidden, total = o->warmup + o->iters;
	uint64_t cmd, prev = 0;
	int ret;

	/* start together: every rank is connected */
	if (k->l) {
		char name[32];

		if ((ret = launch_barrier(k->l, run_name(k, "go", name, sizeof(name)), k->err,
					  sizeof(k->err)))) {
			k->lost = true;
			return ret;
		}
	} else if ((ret = send_msg(k->fd, M_READY, NULL, 0)) || (ret = oob_recv_u64(k->fd, &cmd)) ||
		   cmd != CMD_GO) {
		snprintf(k->err, sizeof(k->err), "waiting for the start: %s",
			 strerror(ret ? -ret : EPROTO));
		return ret ? ret : -EPROTO;
	}
	k->last_beat = xfer_now_s();
	for (uint32_t it = 0; it < total; it++) {
		uint32_t slot = o->slots == 2 ? it % 2 : 0;
		struct xfer_moe_recv rv;
		uint64_t t0, t1, t2, t3;

		if (o->check) {   /* new tokens and routing each layer: a stale slot shows */
			moe_gen_tokens(o, l->rank, it, b->x);
			moe_gen_routing(o, l->rank, it, b->topk[slot], b->weights[slot]);
		}
		t0 = xfer_now_ns();
		if ((ret = xfer_moe_dispatch_send(m, slot, b->x, 0, T, b->topk[slot])))
			return fail(k, ret, "xfer_moe_dispatch_send (layer %u, slot %u)", it, slot);
		if (o->kill_rank == (int)l->rank && it == o->warmup + o->iters / 2)
			raise(SIGKILL);   /* the failure drill: dead with its blocks in flight */
		if ((ret = xfer_moe_dispatch_recv(m, slot, &rv)))
			return fail(k, ret, "xfer_moe_dispatch_recv (layer %u, slot %u)", it, slot);
		t1 = xfer_now_ns();
		if (o->check)
			experts(l, &rv);
		t2 = xfer_now_ns();
		if ((ret = xfer_moe_combine_send(m, slot)))
			return fail(k, ret, "xfer_moe_combine_send (layer %u, slot %u)", it, slot);
		if ((ret = xfer_moe_combine_recv(m, slot, b->weights[slot], b->out, 0)))
			return fail(k, ret, "xfer_moe_combine_recv (layer %u, slot %u)", it, slot);
		t3 = xfer_now_ns();
		if (o->check) {
			if ((ret = xfer_moe_reference(l, b->x, 0, T, b->topk[slot], b->weights[slot],
						      moe_expert, (void *)l, b->ref, 0)))
				return fail(k, ret, "xfer_moe_reference (layer %u)", it);
			for (uint64_t i = 0; i < (uint64_t)T * H; i++)
				if (b->out[i] != b->ref[i]) {
					snprintf(k->err, sizeof(k->err),
						 "output differs from the reference at token %llu, h %llu "
						 "(layer %u, slot %u): 0x%04x, expected 0x%04x",
						 (unsigned long long)(i / H), (unsigned long long)(i % H),
						 it, slot, b->out[i], b->ref[i]);
					return -EIO;
				}
			*checked += T;
		}
		if (it >= o->warmup) {
			times[it - o->warmup] = (double)(t1 - t0) / 1e3;
			times[o->iters + it - o->warmup] = (double)(t3 - t2) / 1e3;
		}
		/* the layer: from one dispatch_send to the next (the last: to
		 * its combine's end), whichever rank waited in which phase */
		if (it > o->warmup)
			times[2 * o->iters + it - 1 - o->warmup] = (double)(t0 - prev) / 1e3;
		if (it + 1 == total)
			times[3 * o->iters - 1] = (double)(t3 - t0) / 1e3;
		prev = t0;
		beat(k, it);
	}
	return 0;
}

static int launched_result(struct rank *k, int ret, const uint8_t *res, size_t rlen,
			   struct moe_run_result *r);

/* A rank: forked (fd to the coordinator; l NULL), or launched (l, the
 * run's number, its result into r). */
static int rank_main(const struct moe_run_opts *o, uint32_t rank, int fd, struct launch *lh,
		     uint32_t run, struct moe_run_result *r)
{
	struct rank k = { .o = o, .rank = rank, .fd = fd, .l = lh, .run = run };
	struct xfer_moe_attr a;
	struct xfer_moe_layout l;
	struct bufs b = { 0 };
	xfer_engine *e = NULL;
	xfer_moe *m = NULL;
	uint64_t checked = 0, cmd, T, H, K;
	size_t rlen = 8 + 3 * sizeof(double) * o->iters;
	uint8_t *res = calloc(1, rlen);
	int ret;

	moe_attr_fill(o, rank, &a);
	T = a.max_tokens, H = a.hidden, K = a.top_k;
	b.x = xfer_host_alloc(T * H * 2);
	b.out = xfer_host_alloc(T * H * 2);
	b.ref = o->check ? xfer_host_alloc(T * H * 2) : NULL;
	for (uint32_t s = 0; s < XFER_MOE_SLOTS; s++) {
		b.topk[s] = malloc(T * K * sizeof(int32_t));
		b.weights[s] = malloc(T * K * sizeof(float));
		if (!b.topk[s] || !b.weights[s])
			b.x = NULL;
	}
	ret = res && b.x && b.out && (b.ref || !o->check) ? 0 : -ENOMEM;
	if (ret)
		snprintf(k.err, sizeof(k.err), "out of memory for its tokens and outputs");
	if (!ret && !o->check) {   /* one set of tokens and routing, as the bound counts */
		moe_gen_tokens(o, rank, 0, b.x);
		for (uint32_t s = 0; s < XFER_MOE_SLOTS; s++)
			moe_gen_routing(o, rank, 0, b.topk[s], b.weights[s]);
	}
	if (!ret)
		ret = engine_open(&k, &e);
	if (!ret && (ret = xfer_moe_create(e, &a, &m)))
		fail(&k, ret, "xfer_moe_create");
	if (!ret && (ret = xfer_moe_layout_of(m, &l)))
		fail(&k, ret, "xfer_moe_layout_of");
	if (!ret)
		ret = exchange(&k, m, 0);
	else if (k.l)   /* its failure published where the others wait for its blob */
		ret = exchange(&k, NULL, ret);
	if (k.l && ret && !k.lost) {
		/* connected everywhere but here: still at the start, so nobody
		 * waits there for this rank; its error comes with the results */
		char name[32], e2[ERR_MAX];

		if (launch_barrier(k.l, run_name(&k, "go", name, sizeof(name)), e2, sizeof(e2)))
			k.lost = true;
	}
	if (!ret)
		ret = layers(&k, m, &l, &b, (double *)(res + 8), &checked);
	if (k.l) {
		if (res)
			memcpy(res, &checked, 8);
		ret = launched_result(&k, ret, res, rlen, r);
	} else if (!ret) {
		memcpy(res, &checked, 8);
		ret = send_msg(fd, M_RESULT, res, rlen);
		/* stay until every rank is done: this rank's last combine
		 * records may still be on their way out of its engine */
		if (!ret)
			ret = oob_recv_u64(fd, &cmd);
	} else {
		if (!k.err[0])
			snprintf(k.err, sizeof(k.err), "%s", xfer_strerror(ret));
		size_t n = strlen(k.err) + 1;
		uint8_t msg[4 + ERR_MAX];
		int32_t st = ret;

		memcpy(msg, &st, 4);
		memcpy(msg + 4, k.err, n);
		send_msg(fd, M_ERROR, msg, 4 + n);
	}
	xfer_moe_destroy(m);
	if (e)
		xfer_engine_destroy(e);
	/* launched, the process goes on to print: give back what it took
	 * (xfer_host_alloc's memory is free()d) */
	free(b.x);
	free(b.out);
	free(b.ref);
	for (uint32_t s = 0; s < XFER_MOE_SLOTS; s++) {
		free(b.topk[s]);
		free(b.weights[s]);
	}
	free(res);
	return ret ? 1 : 0;
}

/* ---- the coordinator -------------------------------------------------------- */

struct coord {
	const struct moe_run_opts *o;
	uint32_t R;
	int *fds;
	pid_t *pids;
	double *deadline;          /* per rank: silent past this, it is killed */
	bool *failed, *got;        /* got: delivered what the current phase waits for */
	char (*why)[ERR_MAX];      /* per failed rank */
	int first;                 /* the rank whose failure came first, -1 */
	int first_class;           /* 0 died, 1 an error, 2 silent, 3 a timeout of its own */
	double grace;              /* after a failure: when the rest are killed */
	double grace_s;            /* how long after: what the ranks wait on in this phase */
	struct moe_run_result *r;
	uint8_t *msg;
	size_t msg_cap;
};

/* How long a rank may go without a word: its calls wait at most the
 * context's timeout, set-up (engine, connect) a few times that. */
static double silence_s(const struct coord *c)
{
	return 3.0 * ctx_timeout_ms(c->o) / 1000.0 + 10.0;
}

static void rank_failed(struct coord *c, uint32_t r, int cls, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void rank_failed(struct coord *c, uint32_t r, int cls, const char *fmt, ...)
{
	va_list ap;

	if (c->failed[r])
		return;
	c->failed[r] = true;
	va_start(ap, fmt);
	vsnprintf(c->why[r], ERR_MAX, fmt, ap);
	va_end(ap);
	/* a rank that timed out waiting for its peers is a consequence of
	 * another's failure when there is one: name the cause first */
	if (c->first < 0 || cls < c->first_class) {
		c->first = (int)r;
		c->first_class = cls;
	}
	if (c->grace == 0)
		c->grace = xfer_now_s() + c->grace_s;
}

/* EOF from rank r: how it ended. */
static void rank_gone(struct coord *c, uint32_t r)
{
	int st = 0;
	pid_t p = 0;

	/* the socket closes as the process exits: give the kernel a moment */
	for (int i = 0; i < 200 && (p = waitpid(c->pids[r], &st, WNOHANG)) == 0; i++)
		usleep(5000);
	if (p == c->pids[r]) {
		c->pids[r] = -1;
		if (WIFSIGNALED(st))
			rank_failed(c, r, 0, "killed by signal %d (%s)", WTERMSIG(st),
				    strsignal(WTERMSIG(st)));
		else
			rank_failed(c, r, 0, "exited with status %d without a word",
				    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	} else {
		rank_failed(c, r, 0, "closed its socket without a word");
	}
}

/* Read one message of rank r and act on it. */
static void on_message(struct coord *c, uint32_t r, int want, uint8_t **blobs, uint32_t *lens)
{
	int n = oob_recv(c->fds[r], c->msg, (uint32_t)c->msg_cap);
	uint32_t type;

	if (n < 4) {
		rank_gone(c, r);
		return;
	}
	memcpy(&type, c->msg, 4);
	c->deadline[r] = xfer_now_s() + silence_s(c);
	if (type == M_BEAT)
		return;
	if (type == M_ERROR && n > 8) {
		int32_t st;

		memcpy(&st, c->msg + 4, 4);
		c->msg[n - 1] = 0;
		/* its wait timing out, or its peer found down, is what another
		 * rank's failure looks like: a cause, if there is one, is named first */
		rank_failed(c, r, st == -ETIMEDOUT || st == -ENOTCONN || st == -ECONNRESET ? 3 : 1,
			    "%s", (char *)c->msg + 8);
		return;
	}
	if ((int)type != want) {
		rank_failed(c, r, 1, "sent message %u where %d was expected", type, want);
		return;
	}
	c->got[r] = true;
	if (type == M_BLOB) {
		blobs[r] = malloc((size_t)n - 4);
		if (blobs[r])
			memcpy(blobs[r], c->msg + 4, (size_t)n - 4);
		lens[r] = (uint32_t)n - 4;
	} else if (type == M_RESULT && (size_t)n == 4 + 8 + 3 * sizeof(double) * c->o->iters) {
		uint64_t checked;

		memcpy(&checked, c->msg + 4, 8);
		c->r->rows_checked += checked;
		memcpy(c->r->dispatch_us + (size_t)r * c->o->iters, c->msg + 12,
		       sizeof(double) * c->o->iters);
		memcpy(c->r->combine_us + (size_t)r * c->o->iters,
		       c->msg + 12 + sizeof(double) * c->o->iters, sizeof(double) * c->o->iters);
		memcpy(c->r->layer_us + (size_t)r * c->o->iters,
		       c->msg + 12 + 2 * sizeof(double) * c->o->iters, sizeof(double) * c->o->iters);
	} else if (type == M_RESULT) {
		c->got[r] = false;
		rank_failed(c, r, 1, "sent results of %d bytes", n);
	}
}

/* Wait until every rank delivered a message of type want, or failed.
 * 0 if all delivered. */
static int collect(struct coord *c, int want, uint8_t **blobs, uint32_t *lens)
{
	struct pollfd *p = calloc(c->R, sizeof(*p));
	uint32_t *idx = calloc(c->R, sizeof(*idx));
	bool any_failed = false;

	if (!p || !idx) {
		free(p);
		free(idx);
		return -ENOMEM;
	}
	for (uint32_t r = 0; r < c->R; r++)
		c->got[r] = false;
	for (;;) {
		double now = xfer_now_s(), next = now + 1.0;
		uint32_t n = 0;

		for (uint32_t r = 0; r < c->R; r++) {
			if (c->failed[r] || c->got[r])
				continue;
			if (now > c->deadline[r]) {
				kill(c->pids[r], SIGKILL);
				rank_failed(c, r, 2, "no word from it for %.0f s: killed", silence_s(c));
				continue;
			}
			if (c->grace > 0 && now > c->grace) {
				kill(c->pids[r], SIGKILL);
				if (c->grace_s > 0)
					rank_failed(c, r, 3, "still running %.0f s after rank %d failed: "
						    "killed", c->grace_s, c->first);
				else
					rank_failed(c, r, 3, "stopped: rank %d failed in set-up", c->first);
				continue;
			}
			if (c->deadline[r] < next)
				next = c->deadline[r];
			p[n] = (struct pollfd){ .fd = c->fds[r], .events = POLLIN };
			idx[n++] = r;
		}
		if (!n)
			break;
		if (c->grace > 0 && c->grace < next)
			next = c->grace;
		if (poll(p, n, (int)((next - now) * 1000) + 1) < 0 && errno != EINTR)
			break;
		for (uint32_t i = 0; i < n; i++)
			if (p[i].revents)
				on_message(c, idx[i], want, blobs, lens);
	}
	for (uint32_t r = 0; r < c->R; r++)
		any_failed |= c->failed[r];
	free(p);
	free(idx);
	return any_failed ? -ECONNABORTED : 0;
}

/* The run's error: the first cause, then who else failed. */
static void compose_error(struct coord *c)
{
	char *e = c->r->error;
	size_t len = sizeof(c->r->error), n;
	uint32_t others = 0;

	if (c->first < 0)
		return;
	n = (size_t)snprintf(e, len, "rank %d of %u: %s", c->first, c->R, c->why[c->first]);
	for (uint32_t r = 0; r < c->R; r++)
		others += c->failed[r] && (int)r != c->first;
	if (others && n < len)
		n += (size_t)snprintf(e + n, len - n, "; then %u other rank%s failed", others,
				      others > 1 ? "s" : "");
	for (uint32_t r = 0, shown = 0; r < c->R && n < len; r++) {
		if (!c->failed[r] || (int)r == c->first)
			continue;
		if (shown++ == 3) {
			n += (size_t)snprintf(e + n, len - n, "; ...");
			break;
		}
		n += (size_t)snprintf(e + n, len - n, "%s rank %u: %s", shown > 1 ? ";" : ":", r,
				      c->why[r]);
	}
}

int moe_run(const struct moe_run_opts *o, struct moe_run_result *r)
{
	uint32_t R = o->ep;
	struct coord c = { .o = o, .R = R, .first = -1, .r = r };
	uint8_t **blobs = calloc(R, sizeof(*blobs));
	uint32_t *lens = calloc(R, sizeof(*lens));
	double t0 = xfer_now_s();
	int ret = 0;

	memset(r, 0, sizeof(*r));
	r->ranks = R;
	r->iters = o->iters;
	r->dispatch_us = calloc((size_t)R * o->iters, sizeof(double));
	r->combine_us = calloc((size_t)R * o->iters, sizeof(double));
	r->layer_us = calloc((size_t)R * o->iters, sizeof(double));
	c.fds = calloc(R, sizeof(int));
	c.pids = calloc(R, sizeof(pid_t));
	c.deadline = calloc(R, sizeof(double));
	c.failed = calloc(R, sizeof(bool));
	c.got = calloc(R, sizeof(bool));
	c.why = calloc(R, ERR_MAX);
	c.msg_cap = 4 + 8 + 3 * sizeof(double) * o->iters + BLOB_MAX;
	c.msg = malloc(c.msg_cap);
	if (!blobs || !lens || !r->dispatch_us || !r->combine_us || !r->layer_us || !c.fds || !c.pids ||
	    !c.deadline || !c.failed || !c.got || !c.why || !c.msg) {
		snprintf(r->error, sizeof(r->error), "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < R; i++) {
		int sv[2];

		c.pids[i] = -1;
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
			ret = -errno;
			snprintf(r->error, sizeof(r->error), "socketpair: %s", strerror(errno));
			R = c.R = i;
			goto out;
		}
		fflush(NULL);
		c.pids[i] = fork();
		if (c.pids[i] == 0) {
			close(sv[0]);
			for (uint32_t k = 0; k < i; k++)
				close(c.fds[k]);
			prctl(PR_SET_PDEATHSIG, SIGKILL);   /* no orphan if the tool dies */
			signal(SIGPIPE, SIG_IGN);
			_exit(rank_main(o, i, sv[1], NULL, 0, NULL));
		}
		close(sv[1]);
		c.fds[i] = sv[0];
		c.deadline[i] = xfer_now_s() + silence_s(&c);
		if (c.pids[i] < 0) {
			ret = -errno;
			snprintf(r->error, sizeof(r->error), "fork: %s", strerror(errno));
			R = c.R = i + 1;
			goto out;
		}
	}
	/* while blobs are gathered the ranks wait on us alone: one that fails
	 * leaves the others nothing to notice, they are stopped at once */
	c.grace_s = 0;
	ret = collect(&c, M_BLOB, blobs, lens);
	/* from here on they wait in the library, which sees a peer go */
	c.grace_s = ctx_timeout_ms(o) / 1000.0 + 3.0;
	for (uint32_t k = 0; !ret && k < R; k++)
		for (uint32_t i = 0; i < R && !ret; i++)
			if (oob_send(c.fds[k], blobs[i], lens[i]))
				rank_gone(&c, k), ret = -EPIPE;
	if (!ret)
		ret = collect(&c, M_READY, NULL, NULL);
	r->setup_s = xfer_now_s() - t0;
	for (uint32_t k = 0; !ret && k < R; k++)
		if (oob_send_u64(c.fds[k], CMD_GO))
			rank_gone(&c, k), ret = -EPIPE;
	if (!ret)
		ret = collect(&c, M_RESULT, NULL, NULL);
	for (uint32_t k = 0; k < R; k++)
		oob_send_u64(c.fds[k], CMD_END);
out:
	if (ret && c.failed)
		compose_error(&c);
	/* the run is over: a rank still waiting for the next step of a run
	 * that failed has nothing left to do */
	for (uint32_t k = 0; ret && c.pids && k < R; k++)
		if (c.pids[k] > 0)
			kill(c.pids[k], SIGKILL);
	for (uint32_t k = 0; k < R; k++) {
		if (c.fds && c.fds[k] > 0)
			close(c.fds[k]);
		if (c.pids && c.pids[k] > 0) {
			/* every rank answered END or failed: it is on its way out;
			 * a rank that does not go within the timeout is killed */
			double until = xfer_now_s() + ctx_timeout_ms(o) / 1000.0 + 3.0;
			int st;

			while (waitpid(c.pids[k], &st, WNOHANG) == 0) {
				if (xfer_now_s() > until) {
					kill(c.pids[k], SIGKILL);
					waitpid(c.pids[k], &st, 0);
					break;
				}
				usleep(2000);
			}
		}
	}
	if (ret && !r->error[0])
		snprintf(r->error, sizeof(r->error), "%s", xfer_strerror(ret));
	for (uint32_t k = 0; blobs && k < o->ep; k++)
		free(blobs[k]);
	free(blobs);
	free(lens);
	free(c.fds);
	free(c.pids);
	free(c.deadline);
	free(c.failed);
	free(c.got);
	free(c.why);
	free(c.msg);
	return ret;
}

void moe_run_free(struct moe_run_result *r)
{
	free(r->dispatch_us);
	free(r->combine_us);
	free(r->layer_us);
	r->dispatch_us = r->combine_us = r->layer_us = NULL;
}

/* Launched: every rank's result (checked rows and times, or its failure)
 * to every rank, r the whole run's as the coordinator gathers it. This
 * exchange is also the end: no rank leaves while another's last combine
 * records may still be on their way out of its engine. */
static int launched_result(struct rank *k, int ret, const uint8_t *res, size_t rlen,
			   struct moe_run_result *r)
{
	const struct xfer_rdzv_blob *all;
	uint32_t R = k->o->ep, it = k->o->iters;
	char name[32], why[ERR_MAX];

	if (k->lost) {   /* the store named who is missing, or who failed */
		snprintf(r->error, sizeof(r->error), "rank %u: %.480s", k->rank, k->err);
		return ret ? ret : -ECONNABORTED;
	}
	if (ret && !k->err[0])
		snprintf(k->err, sizeof(k->err), "%s", xfer_strerror(ret));
	snprintf(why, sizeof(why), "%s", k->err);
	int st = ret;

	ret = launch_exchange(k->l, run_name(k, "result", name, sizeof(name)), st, why, res, rlen,
			      &all, k->err, sizeof(k->err));
	if (ret) {
		/* its own failure, and what the store said when that is more
		 * (a rank that died is named there) */
		if (st && ret == st)
			snprintf(r->error, sizeof(r->error), "rank %u: %.480s", k->rank, why);
		else if (st)
			snprintf(r->error, sizeof(r->error), "rank %u: %.240s; %.240s", k->rank, why, k->err);
		else
			snprintf(r->error, sizeof(r->error), "rank %u: %.480s", k->rank, k->err);
		return ret;
	}
	for (uint32_t i = 0; i < R; i++) {
		uint64_t checked;

		if (all[i].len != rlen) {
			snprintf(r->error, sizeof(r->error), "rank %u's result is %zu bytes, not %zu", i,
				 all[i].len, rlen);
			return -EBADMSG;
		}
		memcpy(&checked, all[i].data, 8);
		r->rows_checked += checked;
		const double *t = (const double *)((const uint8_t *)all[i].data + 8);

		memcpy(r->dispatch_us + (size_t)i * it, t, it * sizeof(double));
		memcpy(r->combine_us + (size_t)i * it, t + it, it * sizeof(double));
		memcpy(r->layer_us + (size_t)i * it, t + 2 * it, it * sizeof(double));
	}
	return 0;
}

int moe_run_rank(const struct moe_run_opts *o, struct launch *l, uint32_t run,
		 struct moe_run_result *r)
{
	double t0 = xfer_now_s();
	int ret;

	memset(r, 0, sizeof(*r));
	r->ranks = o->ep;
	r->iters = o->iters;
	r->dispatch_us = calloc((size_t)o->ep * o->iters, sizeof(double));
	r->combine_us = calloc((size_t)o->ep * o->iters, sizeof(double));
	r->layer_us = calloc((size_t)o->ep * o->iters, sizeof(double));
	if (!r->dispatch_us || !r->combine_us || !r->layer_us) {
		snprintf(r->error, sizeof(r->error), "out of memory");
		return -ENOMEM;
	}
	ret = rank_main(o, l->rank, -1, l, run, r) ? -ECONNABORTED : 0;
	/* the whole run here (no separate set-up figure across processes) */
	r->setup_s = xfer_now_s() - t0;
	if (ret && !r->error[0])
		snprintf(r->error, sizeof(r->error), "rank %u failed", l->rank);
	return ret;
}
