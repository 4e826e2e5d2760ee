// SPDX-License-Identifier: MIT
/*
 * Size-first structs (include/xfer.h, "Conventions"): every public struct
 * that starts with its size, through the entry point that reads it, in
 * every shape a caller can hand it over:
 *
 *   exact        size = sizeof: accepted as given;
 *   older        a shorter version (where the struct has fields with
 *                defaults): the fields past size hold values that would
 *                change the outcome if read, and must not be;
 *   newer, zero  size = sizeof + 16, the unknown tail zero: accepted, as exact;
 *   newer, dirty the same with one non-zero tail byte: -E2BIG, nothing done;
 *   below floor  size = _SIZE_VER0 - 1: -EINVAL, nothing done;
 *   zero         size = 0: -EINVAL;
 *   huge         size past XFER_STRUCT_SIZE_MAX, tail zero: -E2BIG.
 *
 * The output struct (xfer_engine_info) is filled as far as its size goes.
 * The helper itself (lib/util/struct_copy.h) is checked on a struct of the
 * test's own. One local engine, its own peer (no NIC, no other process).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "struct_copy.h"
#include "ws_models.h"
#include "xfer.h"
#include "xfer_weightsync.h"
#include "xfer_ws_exec.h"
#include "xt.h"

enum shape { EXACT, OLDER, NEWER_ZERO, NEWER_DIRTY, BELOW_FLOOR, ZERO, HUGE };

static const struct {
	const char *name;
	enum shape shape;
} shapes[] = {
	{ "exact size", EXACT },
	{ "older, shorter version", OLDER },
	{ "newer, zero tail", NEWER_ZERO },
	{ "newer, non-zero tail", NEWER_DIRTY },
	{ "below the floor", BELOW_FLOOR },
	{ "size 0", ZERO },
	{ "size past the maximum", HUGE },
};

#define TAIL 16u
#define BUF_BYTES (XFER_STRUCT_SIZE_MAX + 64)

/* A caller's struct as raw bytes, so its size may exceed the header's. */
static union {
	uint8_t b[BUF_BYTES];
	uint64_t align;
} ubuf;

struct subject {
	const char *name;
	size_t ksize;       /* the library's sizeof */
	size_t floor;       /* its _SIZE_VER0 */
	uint32_t older;     /* a shorter known version; 0 when every field is mandatory */
	/* Build a valid struct in ubuf.b (ksize bytes); for OLDER, with values
	 * in the fields past `older` that change the outcome when read. */
	void (*build)(enum shape sh);
	/* Call the entry point on ubuf.b; check the outcome: want is 0,
	 * -EINVAL or -E2BIG. */
	void (*call)(enum shape sh, int want);
};

static uint32_t shape_size(const struct subject *s, enum shape sh)
{
	switch (sh) {
	case EXACT: return (uint32_t)s->ksize;
	case OLDER: return s->older;
	case NEWER_ZERO:
	case NEWER_DIRTY: return (uint32_t)s->ksize + TAIL;
	case BELOW_FLOOR: return (uint32_t)s->floor - 1;
	case ZERO: return 0;
	case HUGE: return XFER_STRUCT_SIZE_MAX + 8;
	}
	return 0;
}

static int shape_want(enum shape sh)
{
	switch (sh) {
	case EXACT:
	case OLDER:
	case NEWER_ZERO: return 0;
	case NEWER_DIRTY:
	case HUGE: return -E2BIG;
	default: return -EINVAL;
	}
}

/* The caller's bytes: the built struct, its size, and the tail. */
static void shape_apply(const struct subject *s, enum shape sh)
{
	uint32_t size = shape_size(s, sh);

	memset(ubuf.b + s->ksize, 0, sizeof(ubuf.b) - s->ksize);
	if (sh == NEWER_DIRTY)
		ubuf.b[s->ksize + 5] = 0x5a;
	memcpy(ubuf.b, &size, sizeof(size));
}

/* ------------------------------------------------------------------ */
/* The fixture: a local engine that is its own peer.                   */

#define PG 64u
#define NPG 4u

static xfer_engine *eng;
static uint32_t self;
static uint8_t *sbuf, *dbuf;
static xfer_mr *smr, *dmr;
static xfer_rmr *drmr;
static struct xfer_ws_schedule *sched;
static const void **shard;
static xfer_mr *arena_mr;
static uint8_t *arena;

static int fixture(void)
{
	struct xfer_engine_attr a;
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	int ret;

	xfer_engine_attr_init(&a);
	a.provider = "local";
	if ((ret = xfer_engine_create(&a, &eng)) ||
	    (ret = xfer_engine_address(eng, addr, &alen)) ||
	    (ret = xfer_engine_add_peer(eng, addr, alen, &self)))
		return ret;
	sbuf = xt_alloc(2 * PG * NPG);
	dbuf = xt_alloc(2 * PG * NPG);
	xt_fill(sbuf, 2 * PG * NPG, 7, 0);
	if ((ret = xfer_mr_reg(eng, sbuf, 2 * PG * NPG, NULL, 0, &smr)) ||
	    (ret = xfer_mr_reg(eng, dbuf, 2 * PG * NPG, NULL, XFER_MR_REMOTE_WRITE, &dmr)) ||
	    (ret = xfer_mr_descriptor(dmr, desc, &dlen)) ||
	    (ret = xfer_rmr_import(eng, self, desc, dlen, &drmr)))
		return ret;
	return 0;
}

/* ------------------------------------------------------------------ */
/* xfer_engine_attr -> xfer_engine_create                              */

static void engine_attr_build(enum shape sh)
{
	struct xfer_engine_attr a;

	xfer_engine_attr_init(&a);
	a.provider = "local";
	a.num_rails = 2;
	if (sh == OLDER)
		a.num_rails = XFER_MAX_RAILS + 1;   /* past the older size: -EINVAL if read */
	memcpy(ubuf.b, &a, sizeof(a));
}

static void engine_attr_call(enum shape sh, int want)
{
	struct xfer_engine_info info = { .size = sizeof(info) };
	xfer_engine *e = (xfer_engine *)&e;

	XT_EQ(xfer_engine_create((const struct xfer_engine_attr *)ubuf.b, &e), want);
	if (want) {
		XT_CHECK(e == NULL || e == (xfer_engine *)&e, "engine made on error");
		return;
	}
	XT_OK(xfer_engine_query(e, &info));
	XT_CHECK(!strcmp(info.provider, "local"), "provider %s", info.provider);
	/* older: num_rails lies past its size, so the default (1) */
	XT_EQ(info.num_rails, sh == OLDER ? 1 : 2);
	xfer_engine_destroy(e);
}

/* ------------------------------------------------------------------ */
/* xfer_engine_info <- xfer_engine_query (the library writes it)       */

static void engine_info_build(enum shape sh)
{
	memset(ubuf.b, 0xa5, sizeof(struct xfer_engine_info));
}

static void engine_info_call(enum shape sh, int want)
{
	struct xfer_engine_info *info = (struct xfer_engine_info *)ubuf.b;
	uint32_t usize = info->size;
	size_t n = usize < sizeof(*info) ? usize : sizeof(*info);
	static uint8_t before[BUF_BYTES];

	if (sh == NEWER_DIRTY) {
		/* an output's tail is the library's to fill, not the caller's
		 * request: garbage there is accepted and cleared */
		memset(ubuf.b + sizeof(*info), 0xa5, TAIL);
		want = 0;
	}
	memcpy(before, ubuf.b, sizeof(before));
	XT_EQ(xfer_engine_query(eng, info), want);
	if (want) {
		XT_CHECK(!memcmp(before, ubuf.b, sizeof(before)), "caller's struct written on error");
		return;
	}
	XT_EQ(info->size, n);                  /* what the library filled */
	XT_EQ(info->num_rails, 1);
	if (n >= offsetof(struct xfer_engine_info, rail_names))
		XT_CHECK(!strcmp(info->provider, "local"), "provider %.32s", info->provider);
	if (n == sizeof(*info))
		XT_EQ(info->imm_bits, 32);
	/* past what was filled: the caller's bytes below its size stay, the
	 * bytes past ours are zeroed */
	for (size_t i = n; i < usize && i < sizeof(*info); i++)
		if (ubuf.b[i] != 0xa5) {
			XT_CHECK(0, "byte %zu past the older size written", i);
			break;
		}
	for (size_t i = sizeof(*info); i < usize; i++)
		if (ubuf.b[i]) {
			XT_CHECK(0, "byte %zu of the newer tail not zeroed", i);
			break;
		}
}

/* ------------------------------------------------------------------ */
/* xfer_mem -> xfer_mr_reg                                             */

static void mem_build(enum shape sh)
{
	struct xfer_mem m = { .size = sizeof(m), .kind = XFER_MEM_HOST, .dmabuf_fd = -1 };

	if (sh == OLDER) {
		/* a dma-buf with its fd past the older size: the default fd (-1)
		 * makes it -EBADF; reading fd 1 would reach the backend instead */
		m.kind = XFER_MEM_DMABUF;
		m.dmabuf_fd = 1;
	}
	memcpy(ubuf.b, &m, sizeof(m));
}

static void mem_call(enum shape sh, int want)
{
	static uint8_t mem[4096] __attribute__((aligned(4096)));
	xfer_mr *mr = (xfer_mr *)&mr;

	if (sh == OLDER)
		want = -EBADF;
	XT_EQ(xfer_mr_reg(eng, mem, sizeof(mem), (const struct xfer_mem *)ubuf.b, 0, &mr), want);
	if (want) {
		XT_CHECK(mr == NULL || mr == (xfer_mr *)&mr, "region made on error");
		return;
	}
	XT_CHECK(xfer_mr_addr(mr) == mem, "wrong region");
	XT_OK(xfer_mr_dereg(mr));
}

/* ------------------------------------------------------------------ */
/* xfer_paged -> xfer_write_paged                                      */

static const uint32_t src_pages[NPG] = { 0, 2, 1, 3 };
static const uint32_t dst_pages[NPG] = { 3, 0, 2, 1 };

static void paged_build(enum shape sh)
{
	struct xfer_paged p = {
		.size = sizeof(p), .src = smr, .dst = drmr, .src_pages = src_pages,
		.dst_pages = dst_pages, .num_pages = NPG, .page_size = PG,
		.src_stride = 2 * PG, .dst_stride = PG + 8, .src_offset = 16, .dst_offset = 24,
	};

	if (sh == OLDER) {
		/* strides and offsets lie past the older size: read, they are out of range */
		p.src_stride = p.dst_stride = 1ull << 40;
		p.src_offset = p.dst_offset = 1ull << 41;
	}
	memcpy(ubuf.b, &p, sizeof(p));
}

static void paged_call(enum shape sh, int want)
{
	uint64_t sstride = 2 * PG, dstride = PG + 8, soff = 16, doff = 24;
	static uint8_t expect[2 * PG * NPG];
	xfer_op *op = (xfer_op *)&op;

	memset(dbuf, 0, 2 * PG * NPG);
	memset(expect, 0, sizeof(expect));
	XT_EQ(xfer_write_paged(eng, (const struct xfer_paged *)ubuf.b, NULL, &op), want);
	if (want) {
		XT_CHECK(op == NULL, "handle set on error");
		usleep(20000);   /* anything posted by mistake would land by now */
		XT_CHECK(!memcmp(dbuf, expect, sizeof(expect)), "data written on error");
		return;
	}
	if (!op)
		return;
	XT_OK(xfer_op_wait(op, 5000));
	xfer_op_release(op);
	if (sh == OLDER) {   /* the defaults: strides page_size, offsets 0 */
		sstride = dstride = PG;
		soff = doff = 0;
	}
	for (uint32_t i = 0; i < NPG; i++)
		memcpy(expect + doff + dst_pages[i] * dstride, sbuf + soff + src_pages[i] * sstride, PG);
	XT_CHECK(!memcmp(dbuf, expect, sizeof(expect)), "pages not where the %s layout puts them",
		 sh == OLDER ? "default" : "given");
}

/* ------------------------------------------------------------------ */
/* xfer_notify -> xfer_imm_expect                                      */

struct rec {
	_Atomic int calls;
};

static void on_done(void *ctx, int status)
{
	struct rec *r = ctx;

	if (!status)
		atomic_fetch_add(&r->calls, 1);
}

static struct rec nrec;
static volatile uint64_t nflag;
static uint32_t nimm = 0x5e000000u;

static void notify_build(enum shape sh)
{
	/* both a callback and a flag; an older caller's flag lies past its
	 * size and must not be stored to */
	struct xfer_notify n = { .size = sizeof(n), .fn = on_done, .ctx = &nrec,
				 .flag = &nflag, .flag_value = 7 };

	memcpy(ubuf.b, &n, sizeof(n));
}

static bool wait_calls(struct rec *r, int n)
{
	for (int i = 0; i < 5000 && atomic_load(&r->calls) < n; i++)
		usleep(1000);
	return atomic_load(&r->calls) >= n;
}

static void notify_call(enum shape sh, int want)
{
	uint32_t imm = ++nimm;

	atomic_store(&nrec.calls, 0);
	nflag = 0;
	XT_EQ(xfer_imm_expect(eng, imm, 1, (const struct xfer_notify *)ubuf.b), want);
	XT_OK(xfer_imm(eng, self, imm, NULL, NULL));
	if (want) {
		/* nothing expects imm: the arrival stays to be consumed here */
		XT_OK(xfer_imm_wait(eng, imm, 1, 5000));
		XT_EQ(atomic_load(&nrec.calls), 0);
		XT_EQ(nflag, 0);
		return;
	}
	XT_CHECK(wait_calls(&nrec, 1), "callback not called");
	XT_EQ(nflag, sh == OLDER ? 0 : 7);   /* the flag is stored before the callback */
	XT_EQ(xfer_imm_count(eng, imm), 0);
}

/* ------------------------------------------------------------------ */
/* xfer_watch_attr -> xfer_watch_add                                   */

static struct rec wrec;
static volatile uint64_t wword;

static void watch_build(enum shape sh)
{
	/* an older caller's done lies past its size: never called */
	struct xfer_watch_attr a = { .size = sizeof(a), .word = &wword, .src = smr,
				     .dst = drmr, .len = PG, .done = { on_done, &wrec } };

	memcpy(ubuf.b, &a, sizeof(a));
}

static void watch_call(enum shape sh, int want)
{
	xfer_watch *w = (xfer_watch *)&w;
	uint64_t fired = 0;

	atomic_store(&wrec.calls, 0);
	wword = 0;
	XT_EQ(xfer_watch_add(eng, (const struct xfer_watch_attr *)ubuf.b, &w), want);
	if (want) {
		XT_CHECK(w == NULL, "handle set on error");
		return;
	}
	if (!w)
		return;
	__atomic_store_n(&wword, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 5000 && (fired = xfer_watch_fired(w)) < 1; i++)
		usleep(1000);
	XT_EQ(fired, 1);
	/* done runs before the count goes up */
	XT_EQ(atomic_load(&wrec.calls), sh == OLDER ? 0 : 1);
	XT_OK(xfer_watch_remove(w));
}

/* ------------------------------------------------------------------ */
/* Weight sync: layouts and attrs -> xfer_ws_plan, cluster -> simulate  */

static xfer_ws_model *model;
static struct xfer_ws_trainer_layout tl;
static struct xfer_ws_infer_layout il;

static void tl_build(enum shape sh)
{
	struct xfer_ws_trainer_layout t = { .size = sizeof(t), .dp = 1, .pp = 1, .fsdp = 2, .ep = 1 };

	memcpy(ubuf.b, &t, sizeof(t));
}

static void il_build(enum shape sh)
{
	struct xfer_ws_infer_layout l = { .size = sizeof(l), .dp = 1, .ep = 1, .tp = 2,
					  .dtype = XFER_WS_DT_BF16 };

	memcpy(ubuf.b, &l, sizeof(l));
}

static void plan_attr_build(enum shape sh)
{
	/* older: align past the size, so the default 256 */
	struct xfer_ws_plan_attr a = { .size = sizeof(a), .align = 1024 };

	memcpy(ubuf.b, &a, sizeof(a));
}

/* Plan with one of the three from ubuf (which), the others valid. */
static void plan_call(int which, enum shape sh, int want)
{
	struct xfer_ws_schedule *s = (struct xfer_ws_schedule *)&s;
	struct xfer_ws_plan_attr pa = { .size = sizeof(pa), .align = 1024 };
	const void *u = ubuf.b;

	XT_EQ(xfer_ws_plan(model, which == 0 ? u : &tl, which == 1 ? u : &il,
			   which == 2 ? u : &pa, &s), want);
	if (want) {
		XT_CHECK(s == NULL || s == (struct xfer_ws_schedule *)&s, "schedule made on error");
		return;
	}
	XT_EQ(s->ntrainers, 2);
	XT_EQ(s->ninfer, 2);
	XT_EQ(s->align, which == 2 && sh == OLDER ? 256 : 1024);
	XT_EQ(s->trainer.size, sizeof(s->trainer));
	XT_EQ(s->infer.size, sizeof(s->infer));
	xfer_ws_schedule_free(s);
}

static void tl_call(enum shape sh, int want) { plan_call(0, sh, want); }
static void il_call(enum shape sh, int want) { plan_call(1, sh, want); }
static void plan_attr_call(enum shape sh, int want) { plan_call(2, sh, want); }

static void cluster_build(enum shape sh)
{
	struct xfer_ws_cluster c = { .size = sizeof(c), .window = 4, .trainer_nic_gbps = 1 };

	memcpy(ubuf.b, &c, sizeof(c));
}

static void cluster_call(enum shape sh, int want)
{
	struct xfer_ws_sim_result def, r = { .predicted_s = -1 };

	XT_OK(xfer_ws_simulate(sched, NULL, &def));
	XT_EQ(xfer_ws_simulate(sched, (const struct xfer_ws_cluster *)ubuf.b, &r), want);
	if (want) {
		XT_CHECK(r.predicted_s == -1, "result written on error");
		return;
	}
	/* 1 Gbit/s instead of 400 is seen, unless it lay past the older size */
	if (sh == OLDER)
		XT_CHECK(r.bound_s == def.bound_s, "bound %g, default %g", r.bound_s, def.bound_s);
	else
		XT_CHECK(r.bound_s > 100 * def.bound_s, "bound %g, default %g", r.bound_s, def.bound_s);
}

/* xfer_ws_exec_attr, xfer_ws_trainer_io -> xfer_ws_trainer_exec_create */

static int exec_fixture(void)
{
	struct xfer_ws_trainer_layout t1 = { .size = sizeof(t1), .dp = 1, .pp = 1, .fsdp = 1, .ep = 1 };
	uint64_t bytes = 0, off = 0;
	int ret;

	if ((ret = xfer_ws_plan(model, &t1, &il, NULL, &sched)))
		return ret;
	for (uint32_t p = 0; p < sched->nparams; p++)
		bytes += sched->params[p].rows * sched->params[p].cols *
			 xfer_ws_dtype_size(sched->params[p].dtype);
	shard = calloc(sched->nparams, sizeof(*shard));
	arena = calloc(1, bytes);
	if (!shard || !arena)
		return -ENOMEM;
	for (uint32_t p = 0; p < sched->nparams; p++) {
		shard[p] = arena + off;
		off += sched->params[p].rows * sched->params[p].cols *
		       xfer_ws_dtype_size(sched->params[p].dtype);
	}
	return xfer_mr_reg(eng, arena, bytes, NULL, 0, &arena_mr);
}

static void exec_attr_build(enum shape sh)
{
	struct xfer_ws_exec_attr a = { .size = sizeof(a), .window = 8, .flags = XFER_WS_EXEC_STAGE_ALL };

	if (sh == OLDER) {   /* past the older size; read, either is -EINVAL */
		a.flags = 0x80;
		a.threads = 100000;
	}
	memcpy(ubuf.b, &a, sizeof(a));
}

static void io_build(enum shape sh)
{
	struct xfer_ws_trainer_io io = { .size = sizeof(io), .rank = 0, .e = eng, .shard = shard,
					 .src_mr = arena_mr };

	memcpy(ubuf.b, &io, sizeof(io));
}

static void exec_call(int which, enum shape sh, int want)
{
	struct xfer_ws_trainer_io io = { .size = sizeof(io), .rank = 0, .e = eng, .shard = shard,
					 .src_mr = arena_mr };
	struct xfer_ws_exec_attr a = { .size = sizeof(a) };
	xfer_ws_trainer_exec *x = (xfer_ws_trainer_exec *)&x;

	XT_EQ(xfer_ws_trainer_exec_create(sched, which == 0 ? (const void *)ubuf.b : &io,
					  which == 1 ? (const void *)ubuf.b : &a, &x), want);
	if (want) {
		XT_CHECK(x == NULL, "handle set on error");
		return;
	}
	xfer_ws_trainer_exec_destroy(x);
}

static void io_call(enum shape sh, int want) { exec_call(0, sh, want); }
static void exec_attr_call(enum shape sh, int want) { exec_call(1, sh, want); }

/* ------------------------------------------------------------------ */

static const struct subject subjects[] = {
	{ "xfer_engine_attr (xfer_engine_create)", sizeof(struct xfer_engine_attr),
	  XFER_ENGINE_ATTR_SIZE_VER0, offsetof(struct xfer_engine_attr, num_rails),
	  engine_attr_build, engine_attr_call },
	{ "xfer_engine_info (xfer_engine_query)", sizeof(struct xfer_engine_info),
	  XFER_ENGINE_INFO_SIZE_VER0, XFER_ENGINE_INFO_SIZE_VER0, engine_info_build, engine_info_call },
	{ "xfer_mem (xfer_mr_reg)", sizeof(struct xfer_mem), XFER_MEM_SIZE_VER0,
	  XFER_MEM_SIZE_VER0, mem_build, mem_call },
	{ "xfer_paged (xfer_write_paged)", sizeof(struct xfer_paged), XFER_PAGED_SIZE_VER0,
	  XFER_PAGED_SIZE_VER0, paged_build, paged_call },
	{ "xfer_notify (xfer_imm_expect)", sizeof(struct xfer_notify), XFER_NOTIFY_SIZE_VER0,
	  XFER_NOTIFY_SIZE_VER0, notify_build, notify_call },
	{ "xfer_watch_attr (xfer_watch_add)", sizeof(struct xfer_watch_attr),
	  XFER_WATCH_ATTR_SIZE_VER0, XFER_WATCH_ATTR_SIZE_VER0, watch_build, watch_call },
	{ "xfer_ws_trainer_layout (xfer_ws_plan)", sizeof(struct xfer_ws_trainer_layout),
	  XFER_WS_TRAINER_LAYOUT_SIZE_VER0, 0, tl_build, tl_call },
	{ "xfer_ws_infer_layout (xfer_ws_plan)", sizeof(struct xfer_ws_infer_layout),
	  XFER_WS_INFER_LAYOUT_SIZE_VER0, 0, il_build, il_call },
	{ "xfer_ws_plan_attr (xfer_ws_plan)", sizeof(struct xfer_ws_plan_attr),
	  XFER_WS_PLAN_ATTR_SIZE_VER0, XFER_WS_PLAN_ATTR_SIZE_VER0, plan_attr_build, plan_attr_call },
	{ "xfer_ws_cluster (xfer_ws_simulate)", sizeof(struct xfer_ws_cluster),
	  XFER_WS_CLUSTER_SIZE_VER0, XFER_WS_CLUSTER_SIZE_VER0, cluster_build, cluster_call },
	{ "xfer_ws_trainer_io (xfer_ws_trainer_exec_create)", sizeof(struct xfer_ws_trainer_io),
	  XFER_WS_TRAINER_IO_SIZE_VER0, 0, io_build, io_call },
	{ "xfer_ws_exec_attr (xfer_ws_trainer_exec_create)", sizeof(struct xfer_ws_exec_attr),
	  XFER_WS_EXEC_ATTR_SIZE_VER0, XFER_WS_EXEC_ATTR_SIZE_VER0, exec_attr_build, exec_attr_call },
};

static void run_subjects(void)
{
	char name[160];

	for (size_t i = 0; i < ARRAY_SIZE(subjects); i++) {
		const struct subject *s = &subjects[i];

		for (size_t k = 0; k < ARRAY_SIZE(shapes); k++) {
			enum shape sh = shapes[k].shape;
			int fails0 = xt_failures;

			if (sh == OLDER && !s->older)
				continue;   /* every field mandatory: no shorter version */
			s->build(sh);
			shape_apply(s, sh);
			s->call(sh, shape_want(sh));
			snprintf(name, sizeof(name), "%s: %s", s->name, shapes[k].name);
			xt_result(name, xt_failures == fails0, NULL);
		}
	}
}

/* ------------------------------------------------------------------ */
/* The helper on a struct of our own                                   */

struct demo {
	uint32_t size;
	uint32_t a;          /* the floor ends here */
	uint64_t b;          /* default 22 */
	uint64_t c;          /* default 33 */
};
#define DEMO_VER0 8u
#define DEMO_V1 16u      /* size, a, b */

static const struct demo demo_def = { .size = 0, .a = 0, .b = 22, .c = 33 };

static void helper_in(void)
{
	static const struct {
		const char *name;
		uint32_t size;
		int dirty;      /* offset past sizeof of a non-zero byte, or -1 */
		int want;
		uint64_t b, c;  /* expected after the copy */
	} cases[] = {
		{ "helper in: exact", sizeof(struct demo), -1, 0, 2, 3 },
		{ "helper in: older, b but not c", DEMO_V1, -1, 0, 2, 33 },
		{ "helper in: the floor, defaults for b and c", DEMO_VER0, -1, 0, 22, 33 },
		{ "helper in: newer, zero tail", sizeof(struct demo) + 40, -1, 0, 2, 3 },
		{ "helper in: newer, last tail byte set", sizeof(struct demo) + 40, 39, -E2BIG, 22, 33 },
		{ "helper in: newer, first tail byte set", sizeof(struct demo) + 40, 0, -E2BIG, 22, 33 },
		{ "helper in: below the floor", DEMO_VER0 - 1, -1, -EINVAL, 22, 33 },
		{ "helper in: size 0", 0, -1, -EINVAL, 22, 33 },
		{ "helper in: the maximum", XFER_STRUCT_SIZE_MAX, -1, 0, 2, 3 },
		{ "helper in: past the maximum", XFER_STRUCT_SIZE_MAX + 1, -1, -E2BIG, 22, 33 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct demo u = { .size = cases[i].size, .a = 1, .b = 2, .c = 3 };
		struct demo k = demo_def;
		int fails0 = xt_failures;

		memset(ubuf.b, 0, sizeof(ubuf.b));
		memcpy(ubuf.b, &u, sizeof(u));
		if (cases[i].size < sizeof(u))   /* what an older caller does not have */
			memset(ubuf.b + cases[i].size, 0xee, sizeof(u) - cases[i].size);
		memcpy(ubuf.b, &cases[i].size, sizeof(cases[i].size));
		if (cases[i].dirty >= 0)
			ubuf.b[sizeof(u) + cases[i].dirty] = 1;
		XT_EQ(xfer_struct_copy_in(&k, sizeof(k), ubuf.b, DEMO_VER0), cases[i].want);
		XT_EQ(k.size, cases[i].want ? 0 : sizeof(k));
		XT_EQ(k.a, cases[i].want ? 0 : 1);
		XT_EQ(k.b, cases[i].b);
		XT_EQ(k.c, cases[i].c);
		xt_result(cases[i].name, xt_failures == fails0, NULL);
	}
}

static void helper_out(void)
{
	static const struct {
		const char *name;
		uint32_t size;
		int want;
		uint32_t written;   /* the size field after */
	} cases[] = {
		{ "helper out: exact", sizeof(struct demo), 0, sizeof(struct demo) },
		{ "helper out: older", DEMO_V1, 0, DEMO_V1 },
		{ "helper out: the floor", DEMO_VER0, 0, DEMO_VER0 },
		{ "helper out: newer, its tail zeroed", sizeof(struct demo) + 40, 0, sizeof(struct demo) },
		{ "helper out: below the floor", DEMO_VER0 - 1, -EINVAL, DEMO_VER0 - 1 },
		{ "helper out: size 0", 0, -EINVAL, 0 },
		{ "helper out: past the maximum", XFER_STRUCT_SIZE_MAX + 1, -E2BIG,
		  XFER_STRUCT_SIZE_MAX + 1 },
	};
	const struct demo k = { .size = sizeof(k), .a = 1, .b = 2, .c = 3 };

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint32_t size = cases[i].size, filled = cases[i].want ? 0 : cases[i].written;
		int fails0 = xt_failures;
		size_t bad = 0;

		memset(ubuf.b, 0xee, sizeof(ubuf.b));
		memcpy(ubuf.b, &size, sizeof(size));
		XT_EQ(xfer_struct_copy_out(ubuf.b, &k, sizeof(k), DEMO_VER0), cases[i].want);
		XT_EQ(xfer_struct_size(ubuf.b), cases[i].written);
		/* the library's bytes up to what it filled, zero to the caller's
		 * size past ours, the caller's own bytes everywhere else */
		for (size_t b = sizeof(size); b < sizeof(ubuf.b); b++) {
			uint8_t want = 0xee;

			if (b < filled)
				want = ((const uint8_t *)&k)[b];
			else if (!cases[i].want && b >= sizeof(k) && b < size)
				want = 0;
			bad += ubuf.b[b] != want;
		}
		XT_EQ(bad, 0);
		xt_result(cases[i].name, xt_failures == fails0, NULL);
	}
}

/* The engine attr's floor through the helper: attr_copy's defaults are
 * xfer_engine_attr_init's, so a floor-sized attr leaves every one of them. */
static void helper_engine_floor(void)
{
	const uint32_t floor_head[2] = { XFER_ENGINE_ATTR_SIZE_VER0, 0 };   /* size, flags */
	struct xfer_engine_attr k, def;
	int fails0 = xt_failures;

	memset(ubuf.b, 0xee, sizeof(ubuf.b));   /* what such a caller does not have */
	memcpy(ubuf.b, floor_head, sizeof(floor_head));
	xfer_engine_attr_init(&k);
	xfer_engine_attr_init(&def);
	XT_OK(xfer_struct_copy_in(&k, sizeof(k), ubuf.b, XFER_ENGINE_ATTR_SIZE_VER0));
	XT_CHECK(!memcmp(&k, &def, sizeof(k)), "a floor-sized attr changed a default");
	xt_result("helper in: xfer_engine_attr at its floor keeps xfer_engine_attr_init's defaults",
		  xt_failures == fails0, NULL);
}

int main(void)
{
	int ret;

	xt_plan();
	helper_in();
	helper_out();
	helper_engine_floor();

	ret = fixture();
	if (!ret)
		ret = xfer_ws_model_parse(tiny_qwen2, 0, &model);
	if (!ret) {
		tl_build(EXACT);
		memcpy(&tl, ubuf.b, sizeof(tl));
		il_build(EXACT);
		memcpy(&il, ubuf.b, sizeof(il));
		ret = exec_fixture();
	}
	XT_CHECK(ret == 0, "fixture: %s", xfer_strerror(ret));
	xt_result("fixture: a local engine that is its own peer, a schedule", ret == 0, NULL);
	if (ret)
		return xt_done();
	run_subjects();

	xfer_mr_dereg(arena_mr);
	xfer_ws_schedule_free(sched);
	xfer_ws_model_free(model);
	xfer_rmr_free(drmr);
	xfer_mr_dereg(smr);
	xfer_mr_dereg(dmr);
	xfer_engine_destroy(eng);
	free(shard);
	free(arena);
	free(sbuf);
	free(dbuf);
	return xt_done();
}
