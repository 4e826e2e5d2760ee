/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "xfer.h"
#include "xfer_ws_exec.h"
#include "clock.h"
#include "launch.h"
#include "oob.h"
#include "provider.h"
#include "rng.h"
#include "run.h"

#define BLOB_MAX 1024

/* What a child reports after each step. */
struct report {
	int32_t status;
	uint32_t pad;
	double seconds, gather_s, prepare_s, wait_s, cpu_s;
	uint64_t bytes, gathered, staged, checked, mismatches;
	uint64_t stray;            /* bytes written outside every write's destination */
};

/* Coordinator -> child, per step: inference ranks get CMD_CLEAR, answer
 * once their buffer is cleared, then everyone gets CMD_GO; CMD_END ends. */
#define CMD_END 0
#define CMD_CLEAR 1
#define CMD_GO 2

/* ---- the seeded pattern --------------------------------------------------- */

/* Finite values of moderate range, every bit of the mantissa in use. */
static uint16_t pattern_bf16(uint64_t seed, uint32_t param, uint64_t row, uint64_t col)
{
	uint64_t h = rng_mix(seed ^ rng_mix(((uint64_t)param << 40) ^ (row << 20) ^ col));
	uint16_t sign = (uint16_t)(h & 1) << 15;
	uint16_t exp = (uint16_t)(112 + (h >> 1) % 24) << 7;   /* 2^-15 .. 2^8 */

	return sign | exp | (uint16_t)((h >> 8) & 0x7f);
}

static uint32_t pattern_f32(uint64_t seed, uint32_t param, uint64_t row, uint64_t col)
{
	uint64_t h = rng_mix(seed ^ rng_mix(((uint64_t)param << 40) ^ (row << 20) ^ col ^ 0x5a5a));

	return (uint32_t)(h & 1) << 31 | (uint32_t)(120 + (h >> 1) % 12) << 23 |
	       (uint32_t)((h >> 8) & 0x7fffff);
}

void wsrun_fill_rows(const struct xfer_ws_param *p, uint32_t param, uint64_t seed, uint64_t row0,
		     uint64_t rows, uint64_t col0, uint64_t cols, void *out)
{
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t c = 0; c < cols; c++) {
			if (p->dtype == XFER_WS_DT_F32)
				((uint32_t *)out)[r * cols + c] = pattern_f32(seed, param, row0 + r, col0 + c);
			else
				((uint16_t *)out)[r * cols + c] = pattern_bf16(seed, param, row0 + r, col0 + c);
		}
}

static float bf16_to_f32(uint16_t v)
{
	uint32_t u = (uint32_t)v << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

/* ---- children --------------------------------------------------------------- */

struct child {
	const struct xfer_ws_schedule *s;
	const struct wsrun_opts *o;
	int fd;                    /* to the coordinator (forked mode) */
	struct launch *l;          /* launcher mode: the store instead */
	struct wsrun_result *res;  /* launcher mode: every rank's reports, summed */
	uint32_t steps;            /* launcher mode: steps to run */
	bool lost;                 /* launcher mode: an exchange failed, the run is over */
	bool trainer;
	uint32_t rank;
	xfer_engine *e;
	double start;              /* launcher mode: when the rank began setting up */
};

static int recv_blobs(int fd, uint8_t (*blobs)[BLOB_MAX], uint32_t *lens, uint32_t n);

struct acc {
	double slowest, tcpu, icpu;
};
static void account(const struct xfer_ws_schedule *s, const struct wsrun_opts *o, uint32_t i,
		    const struct report *rep, uint32_t step, struct wsrun_result *r, struct acc *a);

/* The engine, its address into addr (*len: its size, then the address's). */
static int engine_open(struct child *c, uint8_t *addr, size_t *len)
{
	struct xfer_engine_attr a;
	int ret;

	xfer_engine_attr_init(&a);
	a.provider = c->o->provider;
	a.num_rails = c->o->rails;
	/* forked: every rank on this host; launched: the address --node settled */
	a.node = c->l ? c->l->node : "127.0.0.1";
	if (c->l)
		a.gpu = c->l->gpu;
	a.peer_timeout_ms = (uint32_t)(c->o->timeout_ms > 0 ? c->o->timeout_ms / 2 : 5000);
	a.idle_spin_us = 500;    /* many processes share the cores */
	ret = xfer_engine_create(&a, &c->e);
	if (!ret)
		ret = xfer_engine_address(c->e, addr, len);
	return ret;
}

/* Every rank's blob, rank order (trainers, then inference ranks). Forked:
 * send ours to the coordinator, receive its relay when want; a failure is
 * this process ending, which the coordinator sees. Launched: one exchange
 * through the store, a failure (status) published so the others stop and
 * name this rank. */
static int all_blobs(struct child *c, const char *name, int status, const void *blob, size_t len,
		     uint8_t (*blobs)[BLOB_MAX], uint32_t *lens, bool want)
{
	uint32_t n = c->s->ntrainers + c->s->ninfer;
	const struct xfer_rdzv_blob *all;
	int ret;

	if (!c->l) {
		if (status)
			return status;
		ret = oob_send(c->fd, blob, (uint32_t)len);
		return ret ? ret : want ? recv_blobs(c->fd, blobs, lens, n) : 0;
	}
	ret = launch_exchange(c->l, name, status, xfer_strerror(status), blob, len, &all,
			      c->res->error, sizeof(c->res->error));
	for (uint32_t r = 0; !ret && r < n; r++) {
		if (all[r].len > BLOB_MAX) {
			snprintf(c->res->error, sizeof(c->res->error),
				 "exchange '%s': rank %u's blob is %zu bytes, more than %u", name, r,
				 all[r].len, BLOB_MAX);
			ret = -EBADMSG;
			break;
		}
		memcpy(blobs[r], all[r].data, all[r].len);
		lens[r] = (uint32_t)all[r].len;
	}
	if (ret)
		c->lost = true;
	return ret;
}

/* Launched: the step starts when every rank is there (inference buffers
 * cleared). */
static int step_barrier(struct child *c, uint32_t step)
{
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "go%u", step);
	ret = launch_barrier(c->l, name, c->res->error, sizeof(c->res->error));
	if (ret)
		c->lost = true;
	return ret;
}

/* A step's report: forked, to the coordinator; launched, to every rank,
 * each summing all of them into c->res as the coordinator would. Nonzero
 * when the run is to end (a rank failed, or the exchange did). */
static int report_step(struct child *c, uint32_t step, const struct report *rep)
{
	uint32_t n = c->s->ntrainers + c->s->ninfer;
	const struct xfer_rdzv_blob *all;
	struct acc a = { 0 };
	char name[32];
	int ret;

	if (!c->l)
		return oob_send(c->fd, rep, sizeof(*rep));
	snprintf(name, sizeof(name), "rep%u", step);
	ret = launch_exchange(c->l, name, 0, NULL, rep, sizeof(*rep), &all, c->res->error,
			      sizeof(c->res->error));
	if (ret) {
		c->lost = true;
		return ret;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct report r;

		if (all[i].len != sizeof(r)) {
			snprintf(c->res->error, sizeof(c->res->error),
				 "exchange '%s': rank %u's report is %zu bytes, not %zu", name, i,
				 all[i].len, sizeof(r));
			c->lost = true;
			return -EBADMSG;
		}
		memcpy(&r, all[i].data, sizeof(r));
		account(c->s, c->o, i, &r, step, c->res, &a);
	}
	if (c->res->failed_ranks) {
		c->lost = true;
		return -ECONNABORTED;
	}
	c->res->step_s[c->res->steps++] = a.slowest;
	c->res->trainer_cpu_s = a.tcpu;
	c->res->infer_cpu_s = a.icpu;
	return 0;
}

/* Receive the n blobs the coordinator relays: [u32 len][bytes] each. */
static int recv_blobs(int fd, uint8_t (*blobs)[BLOB_MAX], uint32_t *lens, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		int len = oob_recv(fd, blobs[i], BLOB_MAX);

		if (len < 0)
			return len;
		lens[i] = (uint32_t)len;
	}
	return 0;
}

/* What every write of the schedule into this rank must leave there, made
 * once before the first step from the pattern with the reference transform
 * (xfer_ws_chunk_transform, one thread): `exp` mirrors the rank's buffer.
 * Each step then compares what arrived with it, so the time between steps
 * is a compare, not a regeneration of the pattern (seconds per GB): long
 * idle gaps between steps are not what a training loop has. For fp8 each
 * expected value is also checked once to dequantise to within e4m3's
 * rounding of its original (3 mantissa bits: 2^-4 relative, and the
 * subnormal step 2^-9 of the block scale); *bad counts the writes whose
 * reference fails that. -ENOMEM if it cannot. */
static int expect_build(const struct child *c, uint8_t *exp, uint64_t *bad)
{
	const struct xfer_ws_schedule *s = c->s;
	int ret = 0;

	*bad = 0;
	for (uint64_t i = 0; !ret && i < s->nwrites; i++) {
		const struct xfer_ws_write *w = &s->writes[i];
		const struct xfer_ws_chunk *ch = &s->chunks[w->chunk];
		const struct xfer_ws_param *p = &s->params[ch->param];
		unsigned es = xfer_ws_dtype_size(p->dtype);
		void *src;
		bool ok = true;

		if (w->dst_rank != c->rank)
			continue;
		src = malloc(ch->rows * ch->cols * es);
		if (!src) {
			ret = -ENOMEM;
			break;
		}
		wsrun_fill_rows(p, ch->param, c->o->seed, ch->row0, ch->rows, ch->col0, ch->cols, src);
		xfer_ws_chunk_transform(s, ch, src, ch->cols, exp + w->dst_offset,
					ch->scale_bytes ? exp + w->scale_offset : NULL);
		if (ch->transform == XFER_WS_XF_FP8) {
			const float *scales = (const float *)(exp + w->scale_offset);
			uint64_t bc = (ch->cols + 127) / 128;

			for (uint64_t r = 0; r < ch->rows && ok; r++)
				for (uint64_t k = 0; k < ch->cols && ok; k++) {
					float x = bf16_to_f32(((uint16_t *)src)[r * ch->cols + k]);
					float scale = scales[(r / 128) * bc + k / 128];
					float q = xfer_ws_e4m3_to_f32(exp[w->dst_offset + r * ch->cols + k]) * scale;
					float tol = fmaxf(fabsf(x) * 0.0625f, scale * 0.001953125f) * 1.0001f;

					ok = fabsf(q - x) <= tol;
				}
		}
		if (!ok)
			(*bad)++;
		free(src);
	}
	return ret;
}

/* Compare every write of the schedule into this rank with what it must
 * have left (exp): counts into rep. */
static void check_step(const struct child *c, uint8_t *buf, const uint8_t *exp, uint64_t len,
		       struct report *rep)
{
	const struct xfer_ws_schedule *s = c->s;

	for (uint64_t i = 0; i < s->nwrites; i++) {
		const struct xfer_ws_write *w = &s->writes[i];
		const struct xfer_ws_chunk *ch = &s->chunks[w->chunk];

		if (w->dst_rank != c->rank)
			continue;
		rep->checked++;
		rep->bytes += ch->out_bytes + ch->scale_bytes;
		if (memcmp(buf + w->dst_offset, exp + w->dst_offset, ch->out_bytes) ||
		    (ch->scale_bytes &&
		     memcmp(buf + w->scale_offset, exp + w->scale_offset, ch->scale_bytes)))
			rep->mismatches++;
	}
	/* No byte outside the destinations: with each write's range copied
	 * from exp (whose other bytes are 0, as buf's were at the step's
	 * start), buf must now equal exp as a whole. buf is cleared before
	 * the next step, so overwriting it here costs nothing. */
	for (uint64_t i = 0; i < s->nwrites; i++) {
		const struct xfer_ws_write *w = &s->writes[i];
		const struct xfer_ws_chunk *ch = &s->chunks[w->chunk];

		if (w->dst_rank != c->rank)
			continue;
		memcpy(buf + w->dst_offset, exp + w->dst_offset, ch->out_bytes);
		if (ch->scale_bytes)
			memcpy(buf + w->scale_offset, exp + w->scale_offset, ch->scale_bytes);
	}
	if (memcmp(buf, exp, len))
		for (uint64_t k = 0; k < len; k++)
			rep->stray += buf[k] != exp[k];
}

static int inference_main(struct child *c)
{
	const struct xfer_ws_schedule *s = c->s;
	const struct xfer_ws_infer_rank *ir = &s->infers[c->rank];
	uint32_t n = s->ntrainers + s->ninfer, peer;
	uint8_t (*blobs)[BLOB_MAX] = calloc(n, BLOB_MAX);
	uint32_t *lens = calloc(n, sizeof(*lens));
	struct report rep = { 0 };
	uint8_t desc[XFER_DESC_MAX], *buf, *exp, addr[XFER_ADDR_MAX];
	size_t dlen = sizeof(desc), alen = sizeof(addr);
	xfer_mr *mr = NULL;
	uint64_t bad = 0;
	int ret;

	buf = xfer_host_alloc(ir->buf_bytes);
	exp = xfer_host_alloc(ir->buf_bytes);
	if (!buf || !exp || !blobs || !lens)
		return 1;
	ret = expect_build(c, exp, &bad);
	if (!ret)
		ret = engine_open(c, addr, &alen);
	/* Receivers connect to the trainers too: RC QPs need both ends, and
	 * shm answers some protocols through the sender's queue. */
	ret = all_blobs(c, "addr", ret, addr, alen, blobs, lens, true);
	for (uint32_t i = 0; !ret && i < s->ntrainers; i++)
		ret = xfer_engine_add_peer(c->e, blobs[i], lens[i], &peer);
	if (!ret)
		ret = xfer_mr_reg(c->e, buf, ir->buf_bytes, NULL, XFER_MR_REMOTE_WRITE, &mr);
	if (!ret)
		ret = xfer_mr_descriptor(mr, desc, &dlen);
	if (!c->lost)
		ret = all_blobs(c, "desc", ret, desc, dlen, blobs, lens, false);

	if (c->l)
		c->res->setup_s = xfer_now_s() - c->start;
	/* One step each: clear, wait for every write and barrier, check. */
	for (uint32_t step = 0; !ret; step++) {
		uint64_t cmd;

		if (c->l) {
			if (step == c->steps)
				break;
		} else {
			ret = oob_recv_u64(c->fd, &cmd);
			if (ret || cmd == CMD_END)
				break;
		}
		memset(buf, 0, ir->buf_bytes);   /* what a step does not write stays 0 */
		if (c->l) {
			ret = step_barrier(c, step);
		} else {
			ret = oob_send_u64(c->fd, 1);
			if (!ret)
				ret = oob_recv_u64(c->fd, &cmd);
		}
		if (ret)
			break;
		double c0 = xfer_cpu_s();   /* all threads: the engine's worker too */

		if (!ret)
			ret = xfer_ws_exec_receive(s, c->e, c->rank,
						   c->o->timeout_ms ? c->o->timeout_ms : 30000);
		memset(&rep, 0, sizeof(rep));
		rep.cpu_s = xfer_cpu_s() - c0;
		if (!ret) {
			check_step(c, buf, exp, ir->buf_bytes, &rep);
			rep.mismatches += bad;   /* a reference outside fp8's rounding */
		}
		rep.status = ret;
		if (report_step(c, step, &rep))
			break;
	}
	if (mr)
		xfer_mr_dereg(mr);
	xfer_engine_destroy(c->e);
	free(buf);
	free(exp);
	free(blobs);
	free(lens);
	return ret ? 1 : 0;
}

static int trainer_main(struct child *c)
{
	const struct xfer_ws_schedule *s = c->s;
	uint32_t n = s->ntrainers + s->ninfer;
	uint8_t (*blobs)[BLOB_MAX] = calloc(n, BLOB_MAX);
	uint32_t *lens = calloc(n, sizeof(*lens)), *peer = calloc(n, sizeof(*peer));
	const void **shard = calloc(s->nparams, sizeof(*shard));
	xfer_rmr **infer = calloc(s->ninfer + 1, sizeof(*infer));
	xfer_rmr **tgather = calloc(s->ntrainers, sizeof(*tgather));
	uint64_t arena_bytes = 0, off = 0, gbytes = s->trainers[c->rank].gather_bytes;
	uint8_t *arena = NULL, *gather = NULL, desc[XFER_DESC_MAX], addr[XFER_ADDR_MAX];
	size_t dlen = sizeof(desc), alen = sizeof(addr);
	xfer_mr *arena_mr = NULL, *gather_mr = NULL;
	struct report rep = { 0 };
	struct xfer_ws_exec_stats st;
	xfer_ws_trainer_exec *x = NULL;
	uint64_t cmd;
	int ret;

	if (!blobs || !lens || !peer || !shard || !infer || !tgather)
		return 1;
	/* Its shards, in one registered arena, filled with the pattern. */
	for (uint32_t p = 0; p < s->nparams; p++) {
		uint64_t row0, rows;

		xfer_ws_shard_rows(s, p, c->rank, &row0, &rows);
		arena_bytes += (rows * s->params[p].cols * xfer_ws_dtype_size(s->params[p].dtype) + 63) & ~63ull;
	}
	arena = xfer_host_alloc(arena_bytes);
	gather = gbytes ? xfer_host_alloc(gbytes) : NULL;
	if (!arena || (gbytes && !gather))
		return 1;
	for (uint32_t p = 0; p < s->nparams; p++) {
		const struct xfer_ws_param *pp = &s->params[p];
		uint64_t row0, rows;

		xfer_ws_shard_rows(s, p, c->rank, &row0, &rows);
		if (!rows)
			continue;
		shard[p] = arena + off;
		wsrun_fill_rows(pp, p, c->o->seed, row0, rows, 0, pp->cols, arena + off);
		off += (rows * pp->cols * xfer_ws_dtype_size(pp->dtype) + 63) & ~63ull;
	}

	ret = engine_open(c, addr, &alen);
	if (!ret)
		ret = xfer_mr_reg(c->e, arena, arena_bytes ? arena_bytes : 1, NULL, 0, &arena_mr);
	if (!ret && gbytes)
		ret = xfer_mr_reg(c->e, gather, gbytes, NULL, XFER_MR_REMOTE_WRITE, &gather_mr);
	/* addresses of everyone: trainers first, then inference ranks */
	ret = all_blobs(c, "addr", ret, addr, alen, blobs, lens, true);
	for (uint32_t i = 0; !ret && i < n; i++)
		if (i != c->rank)
			ret = xfer_engine_add_peer(c->e, blobs[i], lens[i], &peer[i]);
	/* our gather buffer's descriptor (empty if none), then everyone's */
	if (!ret) {
		if (gather_mr)
			ret = xfer_mr_descriptor(gather_mr, desc, &dlen);
		else
			dlen = 0;
	}
	if (!c->lost)
		ret = all_blobs(c, "desc", ret, desc, dlen, blobs, lens, true);
	for (uint32_t i = 0; !ret && i < n; i++) {
		if (i == c->rank || !lens[i])
			continue;
		if (i < s->ntrainers)
			ret = xfer_rmr_import(c->e, peer[i], blobs[i], lens[i], &tgather[i]);
		else
			ret = xfer_rmr_import(c->e, peer[i], blobs[i], lens[i], &infer[i - s->ntrainers]);
	}
	if (!ret) {
		struct xfer_ws_trainer_io io = {
			.size = sizeof(io), .rank = c->rank, .e = c->e, .shard = shard,
			.src_mr = arena_mr, .gather_buf = gather, .gather_mr = gather_mr,
			.infer_buf = infer, .trainer_gather = tgather, .infer_peer = peer + s->ntrainers,
		};
		struct xfer_ws_exec_attr a = { .size = sizeof(a), .window = c->o->window,
					       .watermark = c->o->watermark,
					       .timeout_ms = c->o->timeout_ms,
					       .flags = c->o->exec_flags, .threads = c->o->threads };

		ret = xfer_ws_trainer_exec_create(s, &io, &a, &x);
	}
	if (c->l)
		c->res->setup_s = xfer_now_s() - c->start;
	/* One step per CMD_GO; a set-up error is reported at the first. */
	for (uint32_t step = 0; !c->lost; step++) {
		if (c->l ? step == c->steps || step_barrier(c, step)
			 : oob_recv_u64(c->fd, &cmd) || cmd != CMD_GO)
			break;
		memset(&rep, 0, sizeof(rep));
		double c0 = xfer_cpu_s();

		if (!ret)
			ret = xfer_ws_trainer_exec_step(x, &st);
		rep.cpu_s = xfer_cpu_s() - c0;
		if (!ret) {
			rep.seconds = st.seconds;
			rep.gather_s = st.gather_s;
			rep.prepare_s = st.prepare_s;
			rep.wait_s = st.wait_s;
			rep.bytes = st.bytes_written;
			rep.gathered = st.bytes_gathered;
			rep.staged = st.bytes_staged;
		}
		rep.status = ret;
		if (report_step(c, step, &rep) || ret)
			break;
	}
	xfer_ws_trainer_exec_destroy(x);
	for (uint32_t i = 0; i < s->ninfer; i++)
		xfer_rmr_free(infer[i]);
	for (uint32_t i = 0; i < s->ntrainers; i++)
		xfer_rmr_free(tgather[i]);
	if (gather_mr)
		xfer_mr_dereg(gather_mr);
	if (arena_mr)
		xfer_mr_dereg(arena_mr);
	xfer_engine_destroy(c->e);
	free(arena);
	free(gather);
	free(blobs);
	free(lens);
	free(peer);
	free(shard);
	free(infer);
	free(tgather);
	return ret ? 1 : 0;
}

/* ---- the coordinator ---------------------------------------------------------- */

static int relay(int *fds, uint32_t from, uint32_t n, uint32_t to_n, uint8_t (*blobs)[BLOB_MAX],
		 uint32_t *lens)
{
	for (uint32_t i = 0; i < n; i++) {
		int len = oob_recv(fds[i], blobs[i], BLOB_MAX);

		if (len < 0)
			return len;
		lens[i] = (uint32_t)len;
	}
	for (uint32_t k = from; k < from + to_n; k++)
		for (uint32_t i = 0; i < n; i++)
			if (oob_send(fds[k], blobs[i], lens[i]))
				return -EPIPE;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Whether a rank process has exited, looked at without reaping it (the
 * end of the run waits for every one). */
static bool a_rank_exited(const pid_t *pids, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		siginfo_t si = { 0 };

		if (pids[i] > 0 && waitid(P_PID, (id_t)pids[i], &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    si.si_pid == pids[i])
			return true;
	}
	return false;
}

/* A run's time: the median of its warm steps (all but the first), or the
 * one step there was. */
static double warm_median(const struct wsrun_result *r)
{
	double w[WSRUN_MAX_STEPS];
	uint32_t nw = r->steps - 1;

	if (r->steps <= 1)
		return r->step_s[0];
	memcpy(w, r->step_s + 1, nw * sizeof(*w));
	qsort(w, nw, sizeof(*w), cmp_double);
	return nw % 2 ? w[nw / 2] : (w[nw / 2 - 1] + w[nw / 2]) / 2;
}

/* Receive len bytes from child i before *deadline (seconds, xfer_now_s());
 * on silence or death the child is killed, counted and named in r->error.
 * Once any rank has failed or exited, the others' engines see it within
 * their peer timeout and report: *deadline comes down to now + after_ms,
 * so that a rank stuck on the dead one (shm's spin) is named then, not at
 * the end of the step's whole deadline. */
static int recv_within(const struct xfer_ws_schedule *s, int *fds, pid_t *pids, uint32_t i,
		       double *deadline, int after_ms, void *buf, int len, struct wsrun_result *r)
{
	struct pollfd pfd = { .fd = fds[i], .events = POLLIN };
	bool trainer = i < s->ntrainers;
	uint32_t rank = trainer ? i : i - s->ntrainers;
	double start = xfer_now_s();
	int got;

	for (;;) {
		double now = xfer_now_s();
		int left = (int)((*deadline - now) * 1000);

		if ((r->failed_ranks || a_rank_exited(pids, s->ntrainers + s->ninfer)) &&
		    now + after_ms / 1000.0 < *deadline)
			*deadline = now + after_ms / 1000.0;
		got = poll(&pfd, 1, left <= 0 ? 0 : left < 200 ? left : 200);
		if (got != 0 || xfer_now_s() >= *deadline)
			break;
	}
	if (got <= 0) {
		r->failed_ranks++;
		kill(pids[i], SIGKILL);
		if (!r->error[0])
			snprintf(r->error, sizeof(r->error), "%s rank %u did not finish within %.0f s",
				 trainer ? "trainer" : "inference", rank, xfer_now_s() - start);
		return -ETIMEDOUT;
	}
	if (oob_recv(fds[i], buf, (uint32_t)len) != len) {
		r->failed_ranks++;
		if (!r->error[0])
			snprintf(r->error, sizeof(r->error), "%s rank %u died",
				 trainer ? "trainer" : "inference", rank);
		return -EPIPE;
	}
	return 0;
}

/* Rank i's report of a step, into r (a: the step's slowest trainer, CPU
 * sums): what the coordinator does with each report, and in launcher mode
 * every rank with every rank's. */
static void account(const struct xfer_ws_schedule *s, const struct wsrun_opts *o, uint32_t i,
		    const struct report *rep, uint32_t step, struct wsrun_result *r, struct acc *a)
{
	if (rep->status) {
		r->failed_ranks++;
		/* a timeout's text is neutral: say what was waited for, how long */
		if (!r->error[0] && rep->status == -ETIMEDOUT)
			snprintf(r->error, sizeof(r->error),
				 "%s rank %u: timed out waiting for its peers' writes and "
				 "notifications (--timeout-ms %d)",
				 i < s->ntrainers ? "trainer" : "inference",
				 i < s->ntrainers ? i : i - s->ntrainers,
				 o->timeout_ms > 0 ? o->timeout_ms : 30000);
		else if (!r->error[0])
			snprintf(r->error, sizeof(r->error), "%s rank %u: %s",
				 i < s->ntrainers ? "trainer" : "inference",
				 i < s->ntrainers ? i : i - s->ntrainers,
				 xfer_strerror(rep->status));
	}
	if (i < s->ntrainers)
		a->tcpu += rep->cpu_s;
	else
		a->icpu += rep->cpu_s;
	if (i < s->ntrainers) {
		if (rep->seconds > a->slowest) {   /* the slowest trainer and its phases */
			a->slowest = rep->seconds;
			r->gather_s = rep->gather_s;
			r->prepare_s = rep->prepare_s;
			r->wait_s = rep->wait_s;
		}
		if (step == 0) {
			r->gathered += rep->gathered;
			r->staged += rep->staged;
		}
	} else {
		if (step == 0)
			r->bytes += rep->bytes;
		r->tensors_checked += rep->checked;
		r->mismatches += rep->mismatches;
		r->stray += rep->stray;
	}
}

/* One step: inference ranks clear their buffers, everyone goes, every rank
 * reports. Failures are counted in r (and end the run). */
static void run_step(const struct xfer_ws_schedule *s, const struct wsrun_opts *o, int *fds,
		     pid_t *pids, uint32_t step, struct wsrun_result *r)
{
	uint32_t n = s->ntrainers + s->ninfer;
	/* Every rank reports within a deadline, whatever the provider does with
	 * a dead peer (libfabric 1.17's shm can spin forever writing to a
	 * process that died holding its region's lock): then it is killed and
	 * named, so a run ends with an error, never a hang. */
	int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
	int limit_ms = 4 * timeout_ms + 30000, after_ms = timeout_ms + 5000;
	double deadline = xfer_now_s() + limit_ms / 1000.0;
	struct acc a = { 0 };
	uint64_t ack;

	for (uint32_t i = s->ntrainers; i < n; i++)
		oob_send_u64(fds[i], CMD_CLEAR);
	for (uint32_t i = s->ntrainers; i < n; i++)
		if (recv_within(s, fds, pids, i, &deadline, after_ms, &ack, sizeof(ack), r))
			return;
	for (uint32_t i = 0; i < n; i++)
		oob_send_u64(fds[i], CMD_GO);
	if (step == 0 && o->kill_trainer >= 0 && (uint32_t)o->kill_trainer < s->ntrainers) {
		struct timespec ts = { o->kill_after_ms / 1000, (o->kill_after_ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
		kill(pids[o->kill_trainer], SIGKILL);
	}
	for (uint32_t i = 0; i < n; i++) {
		struct report rep;

		if (!recv_within(s, fds, pids, i, &deadline, after_ms, &rep, sizeof(rep), r))
			account(s, o, i, &rep, step, r, &a);
	}
	if (!r->failed_ranks) {
		r->step_s[r->steps++] = a.slowest;
		r->trainer_cpu_s = a.tcpu;
		r->infer_cpu_s = a.icpu;
	}
}

int wsrun(const struct xfer_ws_schedule *s, const struct wsrun_opts *o, struct wsrun_result *r)
{
	uint32_t n = s->ntrainers + s->ninfer;
	int *fds = calloc(n, sizeof(int));
	pid_t *pids = calloc(n, sizeof(pid_t));
	uint8_t (*blobs)[BLOB_MAX] = calloc(n, BLOB_MAX);
	uint32_t *lens = calloc(n, sizeof(uint32_t));
	struct xfer_ws_stats stats;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	if (!fds || !pids || !blobs || !lens)
		return -ENOMEM;
	long ncores = sysconf(_SC_NPROCESSORS_ONLN);
	struct wsrun_opts eff = *o;

	if ((ret = provider_probe(o->provider, o->rails, r->error, sizeof(r->error)))) {
		free(fds);
		free(pids);
		free(blobs);
		free(lens);
		return ret;
	}

	/* By default the trainers share the cores for transforming. */
	if (!eff.threads)
		eff.threads = ncores > (long)s->ntrainers ? (uint32_t)(ncores / s->ntrainers) : 1;
	o = &eff;
	r->threads = eff.threads;
	/* bf16 bytes each trainer quantises per step */
	uint64_t q_max = 0;

	for (uint32_t t = 0; t < s->ntrainers; t++) {
		uint64_t q = 0;

		for (uint32_t k = 0; k < s->trainers[t].nchunks; k++) {
			const struct xfer_ws_chunk *c = &s->chunks[s->trainers[t].first_chunk + k];

			if (c->transform == XFER_WS_XF_FP8)
				q += c->rows * c->cols * sizeof(uint16_t);
		}
		r->transformed += q;
		if (q > q_max)
			q_max = q;
	}
	/* threads that can work at once: a copying worker per process and
	 * the trainers' transform threads, at most one per core */
	uint64_t busy = n + (r->transformed ? (uint64_t)s->ntrainers * (eff.threads - 1) : 0);
	uint32_t ncopy = (uint32_t)(ncores < (long)busy ? ncores : (long)busy);

	if (!o->no_bound && r->transformed) {
		r->transform_gbs = wsrun_transform_rate(s, 1);
		r->transform_gbs_concurrent = ncopy > 1 ? wsrun_transform_rate(s, ncopy) : r->transform_gbs;
	}
	if (!o->no_bound) {
		r->loopback_gbs = wsrun_copy_rate(o, 1);
		/* as many streams as can copy at once: the rate per core the
		 * machine's memory gives when they all copy (it need not scale
		 * with cores) */
		r->loopback_gbs_concurrent = ncores > 1 && n > 1
			? wsrun_copy_rate(o, (uint32_t)(ncores < (long)n ? ncores : (long)n))
			: r->loopback_gbs;
	}
	for (uint32_t i = 0; i < n; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			return -errno;
		fflush(NULL);
		pids[i] = fork();
		if (pids[i] == 0) {
			struct child c = { .s = s, .o = o, .fd = sv[1], .trainer = i < s->ntrainers,
					   .rank = i < s->ntrainers ? i : i - s->ntrainers };

			close(sv[0]);
			for (uint32_t k = 0; k < i; k++)
				close(fds[k]);
			signal(SIGPIPE, SIG_IGN);
			_exit(c.trainer ? trainer_main(&c) : inference_main(&c));
		}
		close(sv[1]);
		fds[i] = sv[0];
	}
	/* Addresses of all to all. */
	ret = relay(fds, 0, n, n, blobs, lens);
	/* Descriptors: trainers' gather buffers and inference buffers, to trainers. */
	if (!ret)
		ret = relay(fds, 0, n, s->ntrainers, blobs, lens);
	if (ret) {
		snprintf(r->error, sizeof(r->error), "set-up failed: %s", xfer_strerror(ret));
		goto reap;
	}
	uint32_t steps = o->steps ? o->steps : 1;

	if (steps > WSRUN_MAX_STEPS)
		steps = WSRUN_MAX_STEPS;
	for (uint32_t step = 0; step < steps && !r->failed_ranks; step++)
		run_step(s, o, fds, pids, step, r);
	r->seconds = warm_median(r);
	for (uint32_t i = 0; i < n; i++)
		oob_send_u64(fds[i], CMD_END);
reap:
	for (uint32_t i = 0; i < n; i++) {
		close(fds[i]);
		waitpid(pids[i], NULL, 0);
	}
	/* The loopback bound: the least time this machine's cores need for the
	 * step's work, copies and quantisation.
	 * - Copies: every byte is copied once, at up to one stream's rate, by
	 *   one thread of a process. On shm the receiving process copies (CMA:
	 *   it reads the sender's pages), with "local" the sending one
	 *   (process_vm_writev). So no step beats the busiest copying process
	 *   -- on shm the busiest sender or receiver (inference buffer or
	 *   gather buffer), with local the busiest sender (writes and gathers).
	 * - Quantisation: no step beats the trainer with the most to quantise
	 *   over its transform threads (each at most one core's rate).
	 * - All of it: the copies at the rate measured with one stream per
	 *   core, plus the quantisation at the per-thread rate with one thread
	 *   per core, spread over the threads that can run at once (ncopy). */
	xfer_ws_schedule_stats(s, &stats);
	if (r->loopback_gbs > 0) {
		double rate = r->loopback_gbs * 1e9;
		bool receivers_copy = strcmp(o->provider, "local") != 0;
		uint64_t busiest = stats.max_trainer_tx;

		if (receivers_copy && stats.max_infer_rx > busiest)
			busiest = stats.max_infer_rx;
		for (uint32_t i = 0; i < s->ntrainers && receivers_copy; i++)
			if (s->trainers[i].rx_bytes > busiest)
				busiest = s->trainers[i].rx_bytes;
		double crate = (r->loopback_gbs_concurrent > 0 ? r->loopback_gbs_concurrent
							       : r->loopback_gbs) * 1e9;
		double work = (double)(stats.total_bytes + stats.gather_bytes) / crate;

		r->bound_s = (double)busiest / rate;
		if (r->transform_gbs > 0) {
			double trate = r->transform_gbs * 1e9;
			double tcrate = (r->transform_gbs_concurrent > 0 ? r->transform_gbs_concurrent
									: r->transform_gbs) * 1e9;
			uint32_t tt = eff.threads < (uint32_t)ncores ? eff.threads : (uint32_t)ncores;
			double q = (double)q_max / (trate * tt);

			work += (double)r->transformed / tcrate;
			if (q > r->bound_s)
				r->bound_s = q;
		}
		if (work / ncopy > r->bound_s)
			r->bound_s = work / ncopy;
	}
	if (!ret && (r->failed_ranks || r->mismatches || r->stray))
		ret = r->mismatches || r->stray ? -EIO : -ECONNABORTED;
	free(fds);
	free(pids);
	free(blobs);
	free(lens);
	return ret;
}

/*
 * Launcher mode: this process is rank l->rank of the world, a trainer
 * (ranks 0 .. ntrainers-1) or an inference rank (the next ninfer). Every
 * rank exchanges every step's report, so each ends with the whole run's
 * figures and the same verdict (its exit status says whether the run
 * passed, not only its own part). No loopback bound: the ranks may be on
 * other hosts (bound_s 0).
 */
int wsrun_rank(const struct xfer_ws_schedule *s, const struct wsrun_opts *o, struct launch *l,
	       struct wsrun_result *r)
{
	struct wsrun_opts eff = *o;
	long ncores = sysconf(_SC_NPROCESSORS_ONLN);
	struct child c = { .s = s, .o = &eff, .fd = -1, .l = l, .res = r,
			   .steps = o->steps ? o->steps : 1, .trainer = l->rank < s->ntrainers,
			   .rank = l->rank < s->ntrainers ? l->rank : l->rank - s->ntrainers,
			   .start = xfer_now_s() };
	int ret;

	memset(r, 0, sizeof(*r));
	if (c.steps > WSRUN_MAX_STEPS)
		c.steps = WSRUN_MAX_STEPS;
	/* the host's cores, shared by the trainers as in the forked mode (the
	 * launcher may put them all on one host) */
	if (!eff.threads)
		eff.threads = ncores > (long)s->ntrainers ? (uint32_t)(ncores / s->ntrainers) : 1;
	r->threads = eff.threads;
	for (uint32_t t = 0; t < s->ntrainers; t++)
		for (uint32_t k = 0; k < s->trainers[t].nchunks; k++) {
			const struct xfer_ws_chunk *ch = &s->chunks[s->trainers[t].first_chunk + k];

			if (ch->transform == XFER_WS_XF_FP8)
				r->transformed += ch->rows * ch->cols * sizeof(uint16_t);
		}
	ret = c.trainer ? trainer_main(&c) : inference_main(&c);
	r->seconds = warm_median(r);
	/* the end barrier: a rank that failed alone is still there to be named */
	if (!c.lost) {
		char err[256];
		int cr = launch_close(l, err, sizeof(err));

		if (cr && !r->error[0])
			snprintf(r->error, sizeof(r->error), "%s", err);
		if (cr && !ret)
			ret = cr;
	}
	if (r->failed_ranks || r->mismatches || r->stray)
		return (r->mismatches || r->stray) && !r->failed_ranks ? -EIO : -ECONNABORTED;
	if (ret && !r->error[0])
		snprintf(r->error, sizeof(r->error), "%s rank %u: set-up failed",
			 c.trainer ? "trainer" : "inference", c.rank);
	return ret ? (ret < 0 ? ret : -ECONNABORTED) : (r->steps == c.steps ? 0 : -ECONNABORTED);
}
