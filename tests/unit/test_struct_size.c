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
 * test's own. One local engine, its own peer (no NIC, no other process),
 * set up afresh for each subject: a TEST_F per struct runs its every shape.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "struct_copy.h"
#include "ws_models.h"
#include "xfer.h"
#include "xfer_weightsync.h"
#include "xfer_ws_exec.h"

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

/* ------------------------------------------------------------------ */
/* The fixture: a local engine that is its own peer, a schedule.        */

#define PG 64u
#define NPG 4u

FIXTURE(structs) {
	xfer_engine *eng;
	uint32_t peer;           /* the engine itself, as its own peer */
	uint8_t *sbuf, *dbuf;
	xfer_mr *smr, *dmr;
	xfer_rmr *drmr;
	xfer_ws_model *model;
	struct xfer_ws_trainer_layout tl;
	struct xfer_ws_infer_layout il;
	struct xfer_ws_schedule *sched;
	const void **shard;
	uint8_t *arena;
	xfer_mr *arena_mr;
};

typedef FIXTURE_DATA(structs) fix_t;

struct subject {
	const char *name;
	size_t ksize;       /* the library's sizeof */
	size_t floor;       /* its _SIZE_VER0 */
	uint32_t older;     /* a shorter known version; 0 when every field is mandatory */
	/* Build a valid struct in ubuf.b (ksize bytes); for OLDER, with values
	 * in the fields past `older` that change the outcome when read. */
	void (*build)(fix_t *f, enum shape sh);
	/* Call the entry point on ubuf.b; check the outcome: want is 0,
	 * -EINVAL or -E2BIG. `what` names subject and shape in the logs. */
	void (*call)(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
		     const char *what);
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


static void tl_build(fix_t *f, enum shape sh);
static void il_build(fix_t *f, enum shape sh);

/* Every step checked: a fixture that does not come up fails the test. */
FIXTURE_SETUP(structs)
{
	struct xfer_engine_attr a;
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	struct xfer_ws_trainer_layout t1 = { .size = sizeof(t1), .dp = 1, .pp = 1, .fsdp = 1, .ep = 1 };
	uint64_t bytes = 0, off = 0;

	xfer_engine_attr_init(&a);
	a.provider = "local";
	XT_ASSERT_OK(xfer_engine_create(&a, &self->eng));
	XT_ASSERT_OK(xfer_engine_address(self->eng, addr, &alen));
	XT_ASSERT_OK(xfer_engine_add_peer(self->eng, addr, alen, &self->peer));
	self->sbuf = xt_alloc(2 * PG * NPG);
	self->dbuf = xt_alloc(2 * PG * NPG);
	ASSERT_TRUE(self->sbuf && self->dbuf) TH_LOG("fixture: buffers not allocated");
	xt_fill(self->sbuf, 2 * PG * NPG, 7, 0);
	XT_ASSERT_OK(xfer_mr_reg(self->eng, self->sbuf, 2 * PG * NPG, NULL, 0, &self->smr));
	XT_ASSERT_OK(xfer_mr_reg(self->eng, self->dbuf, 2 * PG * NPG, NULL, XFER_MR_REMOTE_WRITE,
				 &self->dmr));
	XT_ASSERT_OK(xfer_mr_descriptor(self->dmr, desc, &dlen));
	XT_ASSERT_OK(xfer_rmr_import(self->eng, self->peer, desc, dlen, &self->drmr));

	XT_ASSERT_OK(xfer_ws_model_parse(tiny_qwen2, 0, &self->model));
	tl_build(self, EXACT);
	memcpy(&self->tl, ubuf.b, sizeof(self->tl));
	il_build(self, EXACT);
	memcpy(&self->il, ubuf.b, sizeof(self->il));

	/* the schedule the exec structs are handed with, its shard and arena */
	XT_ASSERT_OK(xfer_ws_plan(self->model, &t1, &self->il, NULL, &self->sched));
	for (uint32_t p = 0; p < self->sched->nparams; p++)
		bytes += self->sched->params[p].rows * self->sched->params[p].cols *
			 xfer_ws_dtype_size(self->sched->params[p].dtype);
	self->shard = calloc(self->sched->nparams, sizeof(*self->shard));
	self->arena = calloc(1, bytes);
	ASSERT_TRUE(self->shard && self->arena) TH_LOG("fixture: %s", xfer_strerror(-ENOMEM));
	for (uint32_t p = 0; p < self->sched->nparams; p++) {
		self->shard[p] = self->arena + off;
		off += self->sched->params[p].rows * self->sched->params[p].cols *
		       xfer_ws_dtype_size(self->sched->params[p].dtype);
	}
	XT_ASSERT_OK(xfer_mr_reg(self->eng, self->arena, bytes, NULL, 0, &self->arena_mr));
}

FIXTURE_TEARDOWN(structs)
{
	if (self->arena_mr)
		xfer_mr_dereg(self->arena_mr);
	if (self->sched)
		xfer_ws_schedule_free(self->sched);
	if (self->model)
		xfer_ws_model_free(self->model);
	if (self->drmr)
		xfer_rmr_free(self->drmr);
	if (self->smr)
		xfer_mr_dereg(self->smr);
	if (self->dmr)
		xfer_mr_dereg(self->dmr);
	if (self->eng)
		xfer_engine_destroy(self->eng);
	free(self->shard);
	free(self->arena);
	free(self->sbuf);
	free(self->dbuf);
}

/* ------------------------------------------------------------------ */
/* xfer_engine_attr -> xfer_engine_create                              */

static void engine_attr_build(fix_t *f, enum shape sh)
{
	struct xfer_engine_attr a;

	xfer_engine_attr_init(&a);
	a.provider = "local";
	a.num_rails = 2;
	if (sh == OLDER)
		a.num_rails = XFER_MAX_RAILS + 1;   /* past the older size: -EINVAL if read */
	memcpy(ubuf.b, &a, sizeof(a));
}

static void engine_attr_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh,
			     int want, const char *what)
{
	struct xfer_engine_info info = { .size = sizeof(info) };
	xfer_engine *e = (xfer_engine *)&e;
	int r;

	r = xfer_engine_create((const struct xfer_engine_attr *)ubuf.b, &e);
	EXPECT_EQ(want, r) TH_LOG("%s: xfer_engine_create", what);
	if (want) {
		EXPECT_TRUE(e == NULL || e == (xfer_engine *)&e)
			TH_LOG("%s: engine made on error", what);
		return;
	}
	if (r)
		return;   /* failed above; no engine to look at */
	r = xfer_engine_query(e, &info);
	EXPECT_EQ(0, r) TH_LOG("%s: xfer_engine_query: %s", what, xfer_strerror(r));
	EXPECT_STREQ("local", info.provider) TH_LOG("%s: provider %s", what, info.provider);
	/* older: num_rails lies past its size, so the default (1) */
	EXPECT_EQ(sh == OLDER ? 1 : 2, info.num_rails) TH_LOG("%s", what);
	xfer_engine_destroy(e);
}

/* ------------------------------------------------------------------ */
/* xfer_engine_info <- xfer_engine_query (the library writes it)       */

static void engine_info_build(fix_t *f, enum shape sh)
{
	memset(ubuf.b, 0xa5, sizeof(struct xfer_engine_info));
}

static void engine_info_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh,
			     int want, const char *what)
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
	EXPECT_EQ(want, xfer_engine_query(f->eng, info)) TH_LOG("%s: xfer_engine_query", what);
	if (want) {
		EXPECT_TRUE(!memcmp(before, ubuf.b, sizeof(before)))
			TH_LOG("%s: caller's struct written on error", what);
		return;
	}
	EXPECT_EQ(n, info->size) TH_LOG("%s: what the library filled", what);
	EXPECT_EQ(1, info->num_rails) TH_LOG("%s", what);
	if (n >= offsetof(struct xfer_engine_info, rail_names)) {
		EXPECT_TRUE(!strcmp(info->provider, "local"))
			TH_LOG("%s: provider %.32s", what, info->provider);
	}
	if (n == sizeof(*info)) {
		EXPECT_EQ(32, info->imm_bits) TH_LOG("%s", what);
	}
	/* past what was filled: the caller's bytes below its size stay, the
	 * bytes past ours are zeroed */
	for (size_t i = n; i < usize && i < sizeof(*info); i++)
		if (ubuf.b[i] != 0xa5) {
			EXPECT_TRUE(0) TH_LOG("%s: byte %zu past the older size written", what, i);
			break;
		}
	for (size_t i = sizeof(*info); i < usize; i++)
		if (ubuf.b[i]) {
			EXPECT_TRUE(0) TH_LOG("%s: byte %zu of the newer tail not zeroed", what, i);
			break;
		}
}

/* ------------------------------------------------------------------ */
/* xfer_mem -> xfer_mr_reg                                             */

static void mem_build(fix_t *f, enum shape sh)
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

static void mem_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
		     const char *what)
{
	static uint8_t mem[4096] __attribute__((aligned(4096)));
	xfer_mr *mr = (xfer_mr *)&mr;
	int r;

	if (sh == OLDER)
		want = -EBADF;
	r = xfer_mr_reg(f->eng, mem, sizeof(mem), (const struct xfer_mem *)ubuf.b, 0, &mr);
	EXPECT_EQ(want, r) TH_LOG("%s: xfer_mr_reg", what);
	if (want) {
		EXPECT_TRUE(mr == NULL || mr == (xfer_mr *)&mr) TH_LOG("%s: region made on error", what);
		return;
	}
	if (r)
		return;   /* failed above; no region to look at */
	EXPECT_TRUE(xfer_mr_addr(mr) == mem) TH_LOG("%s: wrong region", what);
	r = xfer_mr_dereg(mr);
	EXPECT_EQ(0, r) TH_LOG("%s: xfer_mr_dereg: %s", what, xfer_strerror(r));
}

/* ------------------------------------------------------------------ */
/* xfer_paged -> xfer_write_paged                                      */

static const uint32_t src_pages[NPG] = { 0, 2, 1, 3 };
static const uint32_t dst_pages[NPG] = { 3, 0, 2, 1 };

static void paged_build(fix_t *f, enum shape sh)
{
	struct xfer_paged p = {
		.size = sizeof(p), .src = f->smr, .dst = f->drmr, .src_pages = src_pages,
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

static void paged_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
		       const char *what)
{
	uint64_t sstride = 2 * PG, dstride = PG + 8, soff = 16, doff = 24;
	static uint8_t expect[2 * PG * NPG];
	xfer_op *op = (xfer_op *)&op;
	int r;

	memset(f->dbuf, 0, 2 * PG * NPG);
	memset(expect, 0, sizeof(expect));
	EXPECT_EQ(want, xfer_write_paged(f->eng, (const struct xfer_paged *)ubuf.b, NULL, &op))
		TH_LOG("%s: xfer_write_paged", what);
	if (want) {
		EXPECT_TRUE(op == NULL) TH_LOG("%s: handle set on error", what);
		usleep(20000);   /* anything posted by mistake would land by now */
		EXPECT_TRUE(!memcmp(f->dbuf, expect, sizeof(expect)))
			TH_LOG("%s: data written on error", what);
		return;
	}
	if (!op)
		return;
	r = xfer_op_wait(op, 5000);
	EXPECT_EQ(0, r) TH_LOG("%s: xfer_op_wait: %s", what, xfer_strerror(r));
	xfer_op_release(op);
	if (sh == OLDER) {   /* the defaults: strides page_size, offsets 0 */
		sstride = dstride = PG;
		soff = doff = 0;
	}
	for (uint32_t i = 0; i < NPG; i++)
		memcpy(expect + doff + dst_pages[i] * dstride, f->sbuf + soff + src_pages[i] * sstride, PG);
	EXPECT_TRUE(!memcmp(f->dbuf, expect, sizeof(expect)))
		TH_LOG("%s: pages not where the %s layout puts them", what,
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

static void notify_build(fix_t *f, enum shape sh)
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

static void notify_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
			const char *what)
{
	uint32_t imm = ++nimm;
	int r;

	atomic_store(&nrec.calls, 0);
	nflag = 0;
	EXPECT_EQ(want, xfer_imm_expect(f->eng, imm, 1, (const struct xfer_notify *)ubuf.b))
		TH_LOG("%s: xfer_imm_expect", what);
	r = xfer_imm(f->eng, f->peer, imm, NULL, NULL);
	EXPECT_EQ(0, r) TH_LOG("%s: xfer_imm: %s", what, xfer_strerror(r));
	if (want) {
		/* nothing expects imm: the arrival stays to be consumed here */
		r = xfer_imm_wait(f->eng, imm, 1, 5000);
		EXPECT_EQ(0, r) TH_LOG("%s: xfer_imm_wait: %s", what, xfer_strerror(r));
		EXPECT_EQ(0, atomic_load(&nrec.calls)) TH_LOG("%s: callback called", what);
		EXPECT_EQ(0, nflag) TH_LOG("%s: flag stored", what);
		return;
	}
	EXPECT_TRUE(wait_calls(&nrec, 1)) TH_LOG("%s: callback not called", what);
	/* the flag is stored before the callback */
	EXPECT_EQ(sh == OLDER ? 0 : 7, nflag) TH_LOG("%s: flag", what);
	EXPECT_EQ(0, xfer_imm_count(f->eng, imm)) TH_LOG("%s: arrival left to count", what);
}

/* ------------------------------------------------------------------ */
/* xfer_watch_attr -> xfer_watch_add                                   */

static struct rec wrec;
static volatile uint64_t wword;

static void watch_build(fix_t *f, enum shape sh)
{
	/* an older caller's done lies past its size: never called */
	struct xfer_watch_attr a = { .size = sizeof(a), .word = &wword, .src = f->smr,
				     .dst = f->drmr, .len = PG, .done = { on_done, &wrec } };

	memcpy(ubuf.b, &a, sizeof(a));
}

static void watch_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
		       const char *what)
{
	xfer_watch *w = (xfer_watch *)&w;
	uint64_t fired = 0;
	int r;

	atomic_store(&wrec.calls, 0);
	wword = 0;
	EXPECT_EQ(want, xfer_watch_add(f->eng, (const struct xfer_watch_attr *)ubuf.b, &w))
		TH_LOG("%s: xfer_watch_add", what);
	if (want) {
		EXPECT_TRUE(w == NULL) TH_LOG("%s: handle set on error", what);
		return;
	}
	if (!w)
		return;
	__atomic_store_n(&wword, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 5000 && (fired = xfer_watch_fired(w)) < 1; i++)
		usleep(1000);
	EXPECT_EQ(1, fired) TH_LOG("%s: watch fired", what);
	/* done runs before the count goes up */
	EXPECT_EQ(sh == OLDER ? 0 : 1, atomic_load(&wrec.calls)) TH_LOG("%s: done called", what);
	r = xfer_watch_remove(w);
	EXPECT_EQ(0, r) TH_LOG("%s: xfer_watch_remove: %s", what, xfer_strerror(r));
}

/* ------------------------------------------------------------------ */
/* xfer_vscatter_attr -> xfer_vscatter_add                             */

static struct rec vrec;
static volatile uint64_t vword, vdone;
static struct xfer_vscatter_row vrow;

static void vscatter_build(fix_t *f, enum shape sh)
{
	/* an older caller's done_word and done lie past its size: never used */
	static xfer_rmr *dsts[1];
	struct xfer_vscatter_attr a = { .size = sizeof(a), .word = &vword, .src = f->smr,
					.dsts = dsts, .num_dsts = 1, .tables = &vrow,
					.done_word = &vdone, .done = { on_done, &vrec } };

	dsts[0] = f->drmr;
	vrow = (struct xfer_vscatter_row){ .len = PG };
	memcpy(ubuf.b, &a, sizeof(a));
}

static void vscatter_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
			  const char *what)
{
	xfer_watch *w = (xfer_watch *)&w;
	uint64_t fired = 0;
	int r;

	atomic_store(&vrec.calls, 0);
	vword = vdone = 0;
	EXPECT_EQ(want, xfer_vscatter_add(f->eng, (const struct xfer_vscatter_attr *)ubuf.b, &w))
		TH_LOG("%s: xfer_vscatter_add", what);
	if (want) {
		EXPECT_TRUE(w == NULL) TH_LOG("%s: handle set on error", what);
		return;
	}
	if (!w)
		return;
	__atomic_store_n(&vword, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 5000 && (fired = xfer_watch_fired(w)) < 1; i++)
		usleep(1000);
	EXPECT_EQ(1, fired) TH_LOG("%s: fired", what);
	/* the removal waits for the firing: done and done_word are final */
	r = xfer_watch_remove(w);
	EXPECT_EQ(0, r) TH_LOG("%s: xfer_watch_remove: %s", what, xfer_strerror(r));
	EXPECT_EQ(sh == OLDER ? 0 : 1, atomic_load(&vrec.calls)) TH_LOG("%s: done called", what);
	EXPECT_EQ(sh == OLDER ? 0 : 1, vdone) TH_LOG("%s: done_word", what);
}

/* ------------------------------------------------------------------ */
/* Weight sync: layouts and attrs -> xfer_ws_plan, cluster -> simulate  */

static void tl_build(fix_t *f, enum shape sh)
{
	struct xfer_ws_trainer_layout t = { .size = sizeof(t), .dp = 1, .pp = 1, .fsdp = 2, .ep = 1 };

	memcpy(ubuf.b, &t, sizeof(t));
}

static void il_build(fix_t *f, enum shape sh)
{
	struct xfer_ws_infer_layout l = { .size = sizeof(l), .dp = 1, .ep = 1, .tp = 2,
					  .dtype = XFER_WS_DT_BF16 };

	memcpy(ubuf.b, &l, sizeof(l));
}

static void plan_attr_build(fix_t *f, enum shape sh)
{
	/* older: align past the size, so the default 256 */
	struct xfer_ws_plan_attr a = { .size = sizeof(a), .align = 1024 };

	memcpy(ubuf.b, &a, sizeof(a));
}

/* Plan with one of the three from ubuf (which), the others valid. */
static void plan_call(struct __test_metadata *_metadata, fix_t *f, int which, enum shape sh,
		      int want, const char *what)
{
	struct xfer_ws_schedule *s = (struct xfer_ws_schedule *)&s;
	struct xfer_ws_plan_attr pa = { .size = sizeof(pa), .align = 1024 };
	const void *u = ubuf.b;
	int r;

	r = xfer_ws_plan(f->model, which == 0 ? u : &f->tl, which == 1 ? u : &f->il,
			 which == 2 ? u : &pa, &s);
	EXPECT_EQ(want, r) TH_LOG("%s: xfer_ws_plan", what);
	if (want) {
		EXPECT_TRUE(s == NULL || s == (struct xfer_ws_schedule *)&s)
			TH_LOG("%s: schedule made on error", what);
		return;
	}
	if (r)
		return;   /* failed above; no schedule to look at */
	EXPECT_EQ(2, s->ntrainers) TH_LOG("%s", what);
	EXPECT_EQ(2, s->ninfer) TH_LOG("%s", what);
	EXPECT_EQ(which == 2 && sh == OLDER ? 256 : 1024, s->align) TH_LOG("%s", what);
	EXPECT_EQ(sizeof(s->trainer), s->trainer.size) TH_LOG("%s", what);
	EXPECT_EQ(sizeof(s->infer), s->infer.size) TH_LOG("%s", what);
	xfer_ws_schedule_free(s);
}

static void tl_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
		    const char *what)
{
	plan_call(_metadata, f, 0, sh, want, what);
}

static void il_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
		    const char *what)
{
	plan_call(_metadata, f, 1, sh, want, what);
}

static void plan_attr_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
			   const char *what)
{
	plan_call(_metadata, f, 2, sh, want, what);
}

static void cluster_build(fix_t *f, enum shape sh)
{
	struct xfer_ws_cluster c = { .size = sizeof(c), .window = 4, .trainer_nic_gbps = 1 };

	memcpy(ubuf.b, &c, sizeof(c));
}

static void cluster_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
			 const char *what)
{
	struct xfer_ws_sim_result def, r = { .predicted_s = -1 };
	int ret;

	ret = xfer_ws_simulate(f->sched, NULL, &def);
	EXPECT_EQ(0, ret) TH_LOG("%s: xfer_ws_simulate with the defaults: %s", what,
				 xfer_strerror(ret));
	EXPECT_EQ(want, xfer_ws_simulate(f->sched, (const struct xfer_ws_cluster *)ubuf.b, &r))
		TH_LOG("%s: xfer_ws_simulate", what);
	if (want) {
		EXPECT_TRUE(r.predicted_s == -1) TH_LOG("%s: result written on error", what);
		return;
	}
	/* 1 Gbit/s instead of 400 is seen, unless it lay past the older size */
	if (sh == OLDER) {
		EXPECT_TRUE(r.bound_s == def.bound_s)
			TH_LOG("%s: bound %g, default %g", what, r.bound_s, def.bound_s);
	} else {
		EXPECT_TRUE(r.bound_s > 100 * def.bound_s)
			TH_LOG("%s: bound %g, default %g", what, r.bound_s, def.bound_s);
	}
}

/* xfer_ws_exec_attr, xfer_ws_trainer_io -> xfer_ws_trainer_exec_create */

static void exec_attr_build(fix_t *f, enum shape sh)
{
	struct xfer_ws_exec_attr a = { .size = sizeof(a), .window = 8, .flags = XFER_WS_EXEC_STAGE_ALL };

	if (sh == OLDER) {   /* past the older size; read, either is -EINVAL */
		a.flags = 0x80;
		a.threads = 100000;
	}
	memcpy(ubuf.b, &a, sizeof(a));
}

static void io_build(fix_t *f, enum shape sh)
{
	struct xfer_ws_trainer_io io = { .size = sizeof(io), .rank = 0, .e = f->eng,
					 .shard = f->shard, .src_mr = f->arena_mr };

	memcpy(ubuf.b, &io, sizeof(io));
}

static void exec_call(struct __test_metadata *_metadata, fix_t *f, int which, enum shape sh,
		      int want, const char *what)
{
	struct xfer_ws_trainer_io io = { .size = sizeof(io), .rank = 0, .e = f->eng,
					 .shard = f->shard, .src_mr = f->arena_mr };
	struct xfer_ws_exec_attr a = { .size = sizeof(a) };
	xfer_ws_trainer_exec *x = (xfer_ws_trainer_exec *)&x;
	int r;

	r = xfer_ws_trainer_exec_create(f->sched, which == 0 ? (const void *)ubuf.b : &io,
					which == 1 ? (const void *)ubuf.b : &a, &x);
	EXPECT_EQ(want, r) TH_LOG("%s: xfer_ws_trainer_exec_create", what);
	if (want) {
		EXPECT_TRUE(x == NULL) TH_LOG("%s: handle set on error", what);
		return;
	}
	if (r)
		return;   /* failed above; no executor to destroy */
	xfer_ws_trainer_exec_destroy(x);
}

static void io_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
		    const char *what)
{
	exec_call(_metadata, f, 0, sh, want, what);
}

static void exec_attr_call(struct __test_metadata *_metadata, fix_t *f, enum shape sh, int want,
			   const char *what)
{
	exec_call(_metadata, f, 1, sh, want, what);
}

/* ------------------------------------------------------------------ */

static const struct subject engine_attr = {
	"xfer_engine_attr (xfer_engine_create)", sizeof(struct xfer_engine_attr),
	XFER_ENGINE_ATTR_SIZE_VER0, offsetof(struct xfer_engine_attr, num_rails),
	engine_attr_build, engine_attr_call,
};
static const struct subject engine_info = {
	"xfer_engine_info (xfer_engine_query)", sizeof(struct xfer_engine_info),
	XFER_ENGINE_INFO_SIZE_VER0, XFER_ENGINE_INFO_SIZE_VER0, engine_info_build, engine_info_call,
};
static const struct subject mem = {
	"xfer_mem (xfer_mr_reg)", sizeof(struct xfer_mem), XFER_MEM_SIZE_VER0,
	XFER_MEM_SIZE_VER0, mem_build, mem_call,
};
static const struct subject paged = {
	"xfer_paged (xfer_write_paged)", sizeof(struct xfer_paged), XFER_PAGED_SIZE_VER0,
	XFER_PAGED_SIZE_VER0, paged_build, paged_call,
};
static const struct subject notify = {
	"xfer_notify (xfer_imm_expect)", sizeof(struct xfer_notify), XFER_NOTIFY_SIZE_VER0,
	XFER_NOTIFY_SIZE_VER0, notify_build, notify_call,
};
static const struct subject watch = {
	"xfer_watch_attr (xfer_watch_add)", sizeof(struct xfer_watch_attr),
	XFER_WATCH_ATTR_SIZE_VER0, XFER_WATCH_ATTR_SIZE_VER0, watch_build, watch_call,
};
static const struct subject vscatter = {
	"xfer_vscatter_attr (xfer_vscatter_add)", sizeof(struct xfer_vscatter_attr),
	XFER_VSCATTER_ATTR_SIZE_VER0, XFER_VSCATTER_ATTR_SIZE_VER0, vscatter_build, vscatter_call,
};
static const struct subject trainer_layout = {
	"xfer_ws_trainer_layout (xfer_ws_plan)", sizeof(struct xfer_ws_trainer_layout),
	XFER_WS_TRAINER_LAYOUT_SIZE_VER0, 0, tl_build, tl_call,
};
static const struct subject infer_layout = {
	"xfer_ws_infer_layout (xfer_ws_plan)", sizeof(struct xfer_ws_infer_layout),
	XFER_WS_INFER_LAYOUT_SIZE_VER0, 0, il_build, il_call,
};
static const struct subject plan_attr = {
	"xfer_ws_plan_attr (xfer_ws_plan)", sizeof(struct xfer_ws_plan_attr),
	XFER_WS_PLAN_ATTR_SIZE_VER0, XFER_WS_PLAN_ATTR_SIZE_VER0, plan_attr_build, plan_attr_call,
};
static const struct subject cluster = {
	"xfer_ws_cluster (xfer_ws_simulate)", sizeof(struct xfer_ws_cluster),
	XFER_WS_CLUSTER_SIZE_VER0, XFER_WS_CLUSTER_SIZE_VER0, cluster_build, cluster_call,
};
static const struct subject trainer_io = {
	"xfer_ws_trainer_io (xfer_ws_trainer_exec_create)", sizeof(struct xfer_ws_trainer_io),
	XFER_WS_TRAINER_IO_SIZE_VER0, 0, io_build, io_call,
};
static const struct subject exec_attr = {
	"xfer_ws_exec_attr (xfer_ws_trainer_exec_create)", sizeof(struct xfer_ws_exec_attr),
	XFER_WS_EXEC_ATTR_SIZE_VER0, XFER_WS_EXEC_ATTR_SIZE_VER0, exec_attr_build, exec_attr_call,
};

/* Every shape of one subject; each check's log names subject and shape. */
static void run_subject(struct __test_metadata *_metadata, fix_t *f, const struct subject *s)
{
	char what[160];

	for (size_t k = 0; k < ARRAY_SIZE(shapes); k++) {
		enum shape sh = shapes[k].shape;

		if (sh == OLDER && !s->older)
			continue;   /* every field mandatory: no shorter version */
		snprintf(what, sizeof(what), "%s: %s", s->name, shapes[k].name);
		s->build(f, sh);
		shape_apply(s, sh);
		s->call(_metadata, f, sh, shape_want(sh), what);
	}
}

TEST_F(structs, engine_attr) { run_subject(_metadata, self, &engine_attr); }
TEST_F(structs, engine_info) { run_subject(_metadata, self, &engine_info); }
TEST_F(structs, mem) { run_subject(_metadata, self, &mem); }
TEST_F(structs, paged) { run_subject(_metadata, self, &paged); }
TEST_F(structs, notify) { run_subject(_metadata, self, &notify); }
TEST_F(structs, watch) { run_subject(_metadata, self, &watch); }
TEST_F(structs, vscatter) { run_subject(_metadata, self, &vscatter); }
TEST_F(structs, trainer_layout) { run_subject(_metadata, self, &trainer_layout); }
TEST_F(structs, infer_layout) { run_subject(_metadata, self, &infer_layout); }
TEST_F(structs, plan_attr) { run_subject(_metadata, self, &plan_attr); }
TEST_F(structs, cluster) { run_subject(_metadata, self, &cluster); }
TEST_F(structs, trainer_io) { run_subject(_metadata, self, &trainer_io); }
TEST_F(structs, exec_attr) { run_subject(_metadata, self, &exec_attr); }

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

TEST(helper_in)
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
		const char *what = cases[i].name;

		memset(ubuf.b, 0, sizeof(ubuf.b));
		memcpy(ubuf.b, &u, sizeof(u));
		if (cases[i].size < sizeof(u))   /* what an older caller does not have */
			memset(ubuf.b + cases[i].size, 0xee, sizeof(u) - cases[i].size);
		memcpy(ubuf.b, &cases[i].size, sizeof(cases[i].size));
		if (cases[i].dirty >= 0)
			ubuf.b[sizeof(u) + cases[i].dirty] = 1;
		EXPECT_EQ(cases[i].want, xfer_struct_copy_in(&k, sizeof(k), ubuf.b, DEMO_VER0))
			TH_LOG("%s", what);
		EXPECT_EQ(cases[i].want ? 0 : sizeof(k), k.size) TH_LOG("%s", what);
		EXPECT_EQ(cases[i].want ? 0 : 1, k.a) TH_LOG("%s", what);
		EXPECT_EQ(cases[i].b, k.b) TH_LOG("%s", what);
		EXPECT_EQ(cases[i].c, k.c) TH_LOG("%s", what);
	}
}

TEST(helper_out)
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
		const char *what = cases[i].name;
		size_t bad = 0;

		memset(ubuf.b, 0xee, sizeof(ubuf.b));
		memcpy(ubuf.b, &size, sizeof(size));
		EXPECT_EQ(cases[i].want, xfer_struct_copy_out(ubuf.b, &k, sizeof(k), DEMO_VER0))
			TH_LOG("%s", what);
		EXPECT_EQ(cases[i].written, xfer_struct_size(ubuf.b)) TH_LOG("%s: size field", what);
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
		EXPECT_EQ(0, bad) TH_LOG("%s: bytes not as expected", what);
	}
}

/* The engine attr's floor through the helper: attr_copy's defaults are
 * xfer_engine_attr_init's, so a floor-sized attr leaves every one of them. */
TEST(helper_engine_floor)
{
	const uint32_t floor_head[2] = { XFER_ENGINE_ATTR_SIZE_VER0, 0 };   /* size, flags */
	struct xfer_engine_attr k, def;

	memset(ubuf.b, 0xee, sizeof(ubuf.b));   /* what such a caller does not have */
	memcpy(ubuf.b, floor_head, sizeof(floor_head));
	xfer_engine_attr_init(&k);
	xfer_engine_attr_init(&def);
	XT_EXPECT_OK(xfer_struct_copy_in(&k, sizeof(k), ubuf.b, XFER_ENGINE_ATTR_SIZE_VER0));
	EXPECT_TRUE(!memcmp(&k, &def, sizeof(k)))
		TH_LOG("helper in: xfer_engine_attr at its floor: a floor-sized attr changed a default");
}

/*
 * The calls that fill a caller's struct before any size is set
 * (xfer_engine_attr_init, xfer_ws_cluster_defaults, the layout parsers) are
 * macros over _size functions. Called with an older header's size they write
 * no byte past it; with a newer header's size they set that size, and the
 * struct is then accepted by the entry point as the caller's own version.
 */
#define GUARD 0xee

/* Bytes of buf in [from, to) that are not `want`. */
static size_t bytes_not(const uint8_t *buf, size_t from, size_t to, uint8_t want)
{
	size_t bad = 0;

	for (size_t i = from; i < to; i++)
		bad += buf[i] != want;
	return bad;
}

TEST(init_fills_to_the_callers_size)
{
	const size_t older = offsetof(struct xfer_engine_attr, num_rails);  /* size, flags, provider */
	const size_t newer = sizeof(struct xfer_engine_attr) + TAIL;
	struct xfer_engine_attr *a = (struct xfer_engine_attr *)ubuf.b;
	xfer_engine *e = NULL;

	memset(ubuf.b, GUARD, sizeof(ubuf.b));
	xfer_engine_attr_init_size(a, older);
	EXPECT_EQ(older, a->size);
	EXPECT_STREQ("auto", a->provider);
	EXPECT_EQ(0, bytes_not(ubuf.b, older, sizeof(ubuf.b), GUARD))
		TH_LOG("xfer_engine_attr_init_size wrote past an older caller's %zu bytes", older);

	memset(ubuf.b, GUARD, sizeof(ubuf.b));
	xfer_engine_attr_init_size(a, newer);
	EXPECT_EQ(newer, a->size);
	EXPECT_EQ(1, a->num_rails);
	EXPECT_EQ(-1, a->gpu);
	EXPECT_EQ(0, bytes_not(ubuf.b, sizeof(*a), newer, 0))
		TH_LOG("a newer caller's fields not zeroed by init");
	EXPECT_EQ(0, bytes_not(ubuf.b, newer, sizeof(ubuf.b), GUARD))
		TH_LOG("xfer_engine_attr_init_size wrote past a newer caller's %zu bytes", newer);
	a->provider = "local";
	XT_EXPECT_OK(xfer_engine_create(a, &e));
	xfer_engine_destroy(e);

	/* the macro passes the header's sizeof */
	memset(ubuf.b, GUARD, sizeof(ubuf.b));
	xfer_engine_attr_init(a);
	EXPECT_EQ(sizeof(*a), a->size);
}

TEST(cluster_defaults_fill_to_the_callers_size)
{
	const size_t older = offsetof(struct xfer_ws_cluster, infer_nic_gbps);
	struct xfer_ws_cluster *c = (struct xfer_ws_cluster *)ubuf.b, def;

	xfer_ws_cluster_defaults(&def);
	memset(ubuf.b, GUARD, sizeof(ubuf.b));
	xfer_ws_cluster_defaults_size(c, older);
	EXPECT_EQ(older, c->size);
	EXPECT_EQ(def.trainer_nic_gbps, c->trainer_nic_gbps);
	EXPECT_EQ(0, bytes_not(ubuf.b, older, sizeof(ubuf.b), GUARD))
		TH_LOG("xfer_ws_cluster_defaults_size wrote past an older caller's %zu bytes", older);
}

TEST(parsers_fill_to_the_callers_size)
{
	const size_t older = offsetof(struct xfer_ws_trainer_layout, pp);   /* size, dp */
	struct xfer_ws_trainer_layout *t = (struct xfer_ws_trainer_layout *)ubuf.b;
	struct xfer_ws_infer_layout *l = (struct xfer_ws_infer_layout *)ubuf.b;

	memset(ubuf.b, GUARD, sizeof(ubuf.b));
	XT_EXPECT_OK(xfer_ws_trainer_parse_size("dp=4,pp=2", t, older));
	EXPECT_EQ(older, t->size);
	EXPECT_EQ(4, t->dp);
	EXPECT_EQ(0, bytes_not(ubuf.b, older, sizeof(ubuf.b), GUARD))
		TH_LOG("xfer_ws_trainer_parse_size wrote past an older caller's %zu bytes", older);

	/* a newer caller's bytes past the library's struct are the caller's own:
	 * a parser leaves them, and the dtype set before parsing is kept */
	memset(ubuf.b, GUARD, sizeof(ubuf.b));
	memset(l, 0, sizeof(*l));
	l->dtype = XFER_WS_DT_BF16;
	XT_EXPECT_OK(xfer_ws_infer_parse_size("tp=2", l, sizeof(*l) + TAIL));
	EXPECT_EQ(sizeof(*l) + TAIL, l->size);
	EXPECT_EQ(2, l->tp);
	EXPECT_EQ(XFER_WS_DT_BF16, l->dtype);
	EXPECT_EQ(0, bytes_not(ubuf.b, sizeof(*l), sizeof(ubuf.b), GUARD))
		TH_LOG("xfer_ws_infer_parse_size wrote past the library's struct");
}

TEST_HARNESS_MAIN
