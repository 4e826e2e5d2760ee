/* SPDX-License-Identifier: MIT */
/*
 * The variable-length scatter (xfer_vscatter_add), on every transport
 * variant: one source region, three target processes with two regions each
 * (six destinations, two per peer), and a producer that writes a ring of
 * tables and bumps the watched word, as a GPU stream would. Every byte is
 * checked at the targets (each written segment holds its source bytes, every
 * other byte of each region is still zero) and every row's immediate is
 * counted there: rows with XFER_OP_IMM arrive once each, rows without never.
 *
 * Each firing of a batch writes into its own area of every region (AREAS
 * per region), so the firings of a batch can all be in flight at once and a
 * stray write lands where the zero check sees it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "xt.h"

#define NT 3                     /* target processes */
#define NR 2                     /* regions per target */
#define ND (NT * NR)             /* destinations: target t's region r is t * NR + r */
#define SRC_LEN (1u << 20)
#define AREAS 8                  /* firings checked together */
#define MAX_TABLES 8
#define VQ_MAX 64                /* per target and request: imms, zero imms, segments */

static const uint64_t reg_len[NR] = { 512u << 10, 96u << 10 };

/* ---- the target process ---------------------------------------------- */

/* "Wait for each of imms (count each), check that none of zero arrived,
 * then that the segments hold their source bytes and every other byte of
 * both regions is zero"; the checked segments are zeroed for the next. */
struct vreq {
	uint32_t quit, num_imms, num_zero, num_segs;
	uint64_t seed;
	struct { uint32_t imm, count; } imms[VQ_MAX];
	uint32_t zero[VQ_MAX];
	struct { uint32_t reg; uint32_t pad; uint64_t dst_off, len, start; } segs[VQ_MAX];
};

struct targ {
	const char *prov;
	uint32_t rails;
};

static bool regions_ok(uint8_t *const *buf, const struct vreq *q, bool report)
{
	bool ok = true;

	for (uint32_t r = 0; r < NR && ok; r++) {
		uint8_t *mask = calloc(1, reg_len[r]);

		if (!mask)
			return false;
		for (uint32_t i = 0; i < q->num_segs && ok; i++) {
			int64_t bad;

			if (q->segs[i].reg != r)
				continue;
			bad = xt_verify(buf[r] + q->segs[i].dst_off, q->segs[i].len, q->seed,
					q->segs[i].start);
			if (bad >= 0) {
				if (report)
					fprintf(stderr, "target: region %u segment off %llu len %llu differs at +%lld\n",
						r, (unsigned long long)q->segs[i].dst_off,
						(unsigned long long)q->segs[i].len, (long long)bad);
				ok = false;
			}
			memset(mask + q->segs[i].dst_off, 1, q->segs[i].len);
		}
		for (uint64_t i = 0; i < reg_len[r] && ok; i++) {
			if (!mask[i] && buf[r][i]) {
				if (report)
					fprintf(stderr, "target: region %u byte %llu outside the rows changed\n",
						r, (unsigned long long)i);
				ok = false;
			}
		}
		free(mask);
	}
	return ok;
}

static int target_main(int fd, void *argp)
{
	const struct targ *a = argp;
	struct vreq *q = malloc(sizeof(*q));
	uint8_t *buf[NR];
	xfer_mr *mr[NR];
	xfer_engine *e;
	uint32_t peer;
	int failures = 0;

	if (!q || xt_engine(a->prov, a->rails, 3000, &e) || xt_connect(e, fd, &peer))
		return 2;
	for (int r = 0; r < NR; r++) {
		buf[r] = xt_alloc(reg_len[r]);
		if (!buf[r] || xfer_mr_reg(e, buf[r], reg_len[r], NULL, XFER_MR_REMOTE_WRITE, &mr[r]) ||
		    xt_send_mr(fd, mr[r]))
			return 3;
	}
	while (xt_recv(fd, q, sizeof(*q)) == (ssize_t)sizeof(*q) && !q->quit) {
		int32_t verdict = 0;
		uint64_t t0;

		for (uint32_t i = 0; i < q->num_imms; i++) {
			int ret = xfer_imm_wait(e, q->imms[i].imm, q->imms[i].count, 5000);

			if (ret) {
				fprintf(stderr, "target: imm %#x x%u: %s\n", q->imms[i].imm,
					q->imms[i].count, xfer_strerror(ret));
				verdict = -1;
			}
		}
		for (uint32_t i = 0; i < q->num_zero; i++) {
			uint64_t n = xfer_imm_count(e, q->zero[i]);

			if (n) {
				fprintf(stderr, "target: imm %#x of a row without one (or refused) arrived %llu times\n",
					q->zero[i], (unsigned long long)n);
				verdict = -1;
			}
		}
		/* Rows without an immediate have no signal: poll their bytes. */
		t0 = xt_now_us();
		while (!regions_ok(buf, q, false)) {
			if (xt_now_us() - t0 > 3000000) {
				regions_ok(buf, q, true);
				verdict = -1;
				break;
			}
			usleep(1000);
		}
		for (uint32_t i = 0; i < q->num_segs; i++)
			memset(buf[q->segs[i].reg] + q->segs[i].dst_off, 0, q->segs[i].len);
		if (verdict)
			failures++;
		if (xt_send(fd, &verdict, sizeof(verdict)))
			break;
	}
	for (int r = 0; r < NR; r++)
		xfer_mr_dereg(mr[r]);
	xfer_engine_destroy(e);
	return failures ? 1 : 0;
}

/* ---- the initiator ------------------------------------------------------- */

struct rec {
	_Atomic int calls, errors, last;
};

FIXTURE(vscatter) {
	struct targ ta;
	xfer_engine *e;
	xfer_mr *src;
	void *srcbuf;
	xfer_rmr *dst[ND];
	uint32_t peer[NT];
	struct xt_peer child[NT];
	int spawned;
	uint64_t seed, rng;
	uint32_t next_imm;
	struct vreq req[NT];
	volatile uint64_t word, done_word;
	struct xfer_vscatter_row tables[MAX_TABLES * ND];
	struct rec rec;
};

FIXTURE_VARIANT(vscatter) { XT_TRANSPORT; };
XT_TRANSPORT_VARIANTS(vscatter);

FIXTURE_SETUP(vscatter)
{
	XT_REQUIRE_TRANSPORT();
	self->seed = 4242 + variant->rails;
	self->rng = 0x9e3779b97f4a7c15ull ^ variant->rails;
	self->next_imm = 0x7500000;
	self->ta = (struct targ){ variant->provider, variant->rails };
	self->srcbuf = xt_alloc(SRC_LEN);
	ASSERT_TRUE(self->srcbuf != NULL);
	xt_fill(self->srcbuf, SRC_LEN, self->seed, 0);
	for (int t = 0; t < NT; t++) {
		XT_ASSERT_OK(xt_spawn(&self->child[t], target_main, &self->ta));
		self->spawned++;
	}
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 3000, &self->e));
	XT_ASSERT_OK(xfer_mr_reg(self->e, self->srcbuf, SRC_LEN, NULL, 0, &self->src));
	for (int t = 0; t < NT; t++) {
		XT_ASSERT_OK(xt_connect(self->e, self->child[t].fd, &self->peer[t]));
		for (int r = 0; r < NR; r++)
			XT_ASSERT_OK(xt_recv_rmr(self->e, self->peer[t], self->child[t].fd,
						 &self->dst[t * NR + r]));
	}
}

FIXTURE_TEARDOWN(vscatter)
{
	for (int t = 0; t < self->spawned; t++) {
		struct vreq q = { .quit = 1 };

		xt_send(self->child[t].fd, &q, sizeof(q));
		/* a target exits 0 only when every request verified */
		EXPECT_EQ(0, xt_reap(&self->child[t])) TH_LOG("target %d", t);
	}
	for (int d = 0; d < ND; d++)
		xfer_rmr_free(self->dst[d]);
	xfer_mr_dereg(self->src);
	xfer_engine_destroy(self->e);
	free(self->srcbuf);
}

static void on_done(void *ctx, int status)
{
	struct rec *r = ctx;

	if (status)
		atomic_fetch_add(&r->errors, 1);
	atomic_store(&r->last, status);
	atomic_fetch_add(&r->calls, 1);
}

static void reqs_reset(FIXTURE_DATA(vscatter) *c)
{
	for (int t = 0; t < NT; t++) {
		memset(&c->req[t], 0, offsetof(struct vreq, imms));
		c->req[t].seed = c->seed;
	}
}

/* What row d of a firing means at its target: if `lands`, its bytes and
 * (with XFER_OP_IMM) its immediate once; else nothing at all. */
static void expect_row(FIXTURE_DATA(vscatter) *c, int d, const struct xfer_vscatter_row *row,
		       bool lands)
{
	struct vreq *q = &c->req[d / NR];

	if (lands && (row->flags & XFER_OP_IMM)) {
		q->imms[q->num_imms].imm = row->imm;
		q->imms[q->num_imms++].count = 1;
	} else {
		q->zero[q->num_zero++] = row->imm;
	}
	if (lands && row->len) {
		q->segs[q->num_segs].reg = (uint32_t)(d % NR);
		q->segs[q->num_segs].dst_off = row->dst_off;
		q->segs[q->num_segs].len = row->len;
		q->segs[q->num_segs++].start = row->src_off;
	}
}

/* Fill table `tab` with random rows into area `area` of every region:
 * kinds 0 (len 0 with an immediate: the immediate alone) and 1 (len 0
 * without: skipped) come up often; `force` makes rows 0 and 1 those two. */
static void fill_table(FIXTURE_DATA(vscatter) *c, uint32_t tab, uint32_t area, bool force)
{
	struct xfer_vscatter_row *rows = &c->tables[tab * ND];

	for (int d = 0; d < ND; d++) {
		uint64_t alen = reg_len[d % NR] / AREAS;
		uint32_t kind = (uint32_t)(xt_xorshift(&c->rng) % 8);
		struct xfer_vscatter_row *row = &rows[d];

		if (force && d < 2)
			kind = (uint32_t)d;
		row->imm = c->next_imm++;   /* never reused: a count tells which row */
		row->len = kind < 2 ? 0 : 1 + xt_xorshift(&c->rng) % alen;
		row->dst_off = area * alen + xt_xorshift(&c->rng) % (alen - row->len + 1);
		row->src_off = xt_xorshift(&c->rng) % (SRC_LEN - row->len + 1);
		row->flags = kind == 0 || (kind >= 2 && (xt_xorshift(&c->rng) & 1)) ? XFER_OP_IMM : 0;
		expect_row(c, d, row, true);
	}
}

static void verify_all(struct __test_metadata *_metadata, FIXTURE_DATA(vscatter) *c,
		       const char *what)
{
	for (int t = 0; t < NT; t++) {
		int32_t v = -1;

		ASSERT_EQ(0, xt_send(c->child[t].fd, &c->req[t], sizeof(c->req[t])));
		ASSERT_EQ((ssize_t)sizeof(v), xt_recv(c->child[t].fd, &v, sizeof(v)));
		EXPECT_EQ(0, v) TH_LOG("%s: target %d", what, t);
	}
}

/* Wait until *done_word reaches n (the firings' bounded time: each
 * finishes within the peer timeout). */
static bool wait_done_word(volatile uint64_t *w, uint64_t n)
{
	uint64_t t0 = xt_now_us();

	while (__atomic_load_n(w, __ATOMIC_ACQUIRE) < n) {
		if (xt_now_us() - t0 > 20000000)
			return false;
		usleep(200);
	}
	return true;
}

static struct xfer_vscatter_attr attr_of(FIXTURE_DATA(vscatter) *c, uint32_t num_tables)
{
	return (struct xfer_vscatter_attr){
		.size = sizeof(struct xfer_vscatter_attr), .word = &c->word, .src = c->src,
		.dsts = c->dst, .num_dsts = ND, .num_tables = num_tables, .tables = c->tables,
		.done_word = &c->done_word, .done = { on_done, &c->rec },
	};
}

/* The producer: fires `n` firings from firing `first` on, writing each table
 * only once the firing that used it last is finished (*done_word), as a
 * GPU stream would wait with cuStreamWaitValue64. */
struct producer {
	FIXTURE_DATA(vscatter) *c;
	uint64_t first, n;
	uint32_t num_tables;
	_Atomic int stuck;
};

static void *produce(void *arg)
{
	struct producer *p = arg;

	for (uint64_t f = p->first; f < p->first + p->n; f++) {
		if (f >= p->num_tables && !wait_done_word(&p->c->done_word, f - p->num_tables + 1)) {
			atomic_store(&p->stuck, 1);
			break;
		}
		fill_table(p->c, (uint32_t)(f % p->num_tables), (uint32_t)(f % AREAS), f == 0);
		__atomic_store_n(&p->c->word, f + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* (a) + (d): a producer thread, varying lengths per firing (rows of
 * length 0 with an immediate: the immediate alone; without: nothing), in
 * three batches; every byte and immediate checked, done once per firing,
 * *done_word = the firings. */
TEST_F_TIMEOUT(vscatter, lengths, 120)
{
	struct xfer_vscatter_attr a = attr_of(self, 4);
	xfer_watch *w = NULL;

	XT_ASSERT_OK(xfer_vscatter_add(self->e, &a, &w));
	ASSERT_TRUE(w != NULL);
	for (uint64_t batch = 0; batch < 3; batch++) {
		struct producer p = { self, batch * AREAS, AREAS, 4, 0 };
		pthread_t th;

		reqs_reset(self);
		ASSERT_EQ(0, pthread_create(&th, NULL, produce, &p));
		pthread_join(th, NULL);
		ASSERT_EQ(0, atomic_load(&p.stuck)) TH_LOG("batch %llu: a table never came free",
							    (unsigned long long)batch);
		ASSERT_TRUE(wait_done_word(&self->done_word, (batch + 1) * AREAS));
		verify_all(_metadata, self, "batch");
	}
	EXPECT_EQ(3 * AREAS, __atomic_load_n(&self->done_word, __ATOMIC_ACQUIRE));
	EXPECT_EQ(3 * AREAS, xfer_watch_fired(w));
	EXPECT_EQ(3 * AREAS, atomic_load(&self->rec.calls));
	EXPECT_EQ(0, atomic_load(&self->rec.errors)) TH_LOG("last %d", atomic_load(&self->rec.last));
	XT_EXPECT_OK(xfer_watch_remove(w));
}

/* Fire one and wait for it to finish; its done status. */
static int fire_one(FIXTURE_DATA(vscatter) *c)
{
	uint64_t n = c->word + 1;

	__atomic_store_n(&c->word, n, __ATOMIC_RELEASE);
	if (!wait_done_word(&c->done_word, n))
		return -ETIMEDOUT;
	return atomic_load(&c->rec.last);
}

/* (b): a table with a row past its region (destination or source) is
 * refused whole with -ERANGE, one with unknown row flags with -EINVAL:
 * nothing of it lands (no byte, no immediate) and the watch fires
 * correctly afterwards. */
TEST_F_TIMEOUT(vscatter, refused_tables, 120)
{
	struct xfer_vscatter_attr a = attr_of(self, 1);
	struct xfer_vscatter_row *rows = self->tables;
	xfer_watch *w = NULL;

	XT_ASSERT_OK(xfer_vscatter_add(self->e, &a, &w));
	reqs_reset(self);
	fill_table(self, 0, 0, true);
	EXPECT_EQ(0, fire_one(self));

	struct { int row; uint64_t src_off, dst_off, len; uint32_t flags; int want; } bad[] = {
		/* destination 3 (target 1, region 1) one byte past its end */
		{ 3, 0, reg_len[1] - 10, 11, XFER_OP_IMM, -ERANGE },
		/* the source's last bytes and one more */
		{ 0, SRC_LEN - 5, 0, 6, 0, -ERANGE },
		/* an offset whose sum with len wraps */
		{ 4, 0, UINT64_MAX - 2, 8, XFER_OP_IMM, -ERANGE },
		/* unknown flags */
		{ 2, 0, 0, 16, XFER_OP_IMM | 0x80, -EINVAL },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* every other row good, in an area of its own: none may land */
		fill_table(self, 0, 1 + i, false);
		for (int d = 0; d < ND; d++) {
			struct vreq *q = &self->req[d / NR];

			/* take back what fill_table expected of this table */
			if (rows[d].flags & XFER_OP_IMM)
				q->num_imms--;
			else
				q->num_zero--;
			if (rows[d].len)
				q->num_segs--;
		}
		rows[bad[i].row].src_off = bad[i].src_off;
		rows[bad[i].row].dst_off = bad[i].dst_off;
		rows[bad[i].row].len = bad[i].len;
		rows[bad[i].row].flags = bad[i].flags;
		for (int d = 0; d < ND; d++)
			expect_row(self, d, &rows[d], false);
		EXPECT_EQ(bad[i].want, fire_one(self)) TH_LOG("bad table %u", i);
	}
	fill_table(self, 0, AREAS - 1, false);
	EXPECT_EQ(0, fire_one(self)) TH_LOG("after the refused tables");
	verify_all(_metadata, self, "refused tables");
	EXPECT_EQ(6, atomic_load(&self->rec.calls));
	EXPECT_EQ(4, atomic_load(&self->rec.errors));
	EXPECT_EQ(6, xfer_watch_fired(w));
	EXPECT_EQ(6, __atomic_load_n(&self->done_word, __ATOMIC_ACQUIRE));
	XT_EXPECT_OK(xfer_watch_remove(w));
}

/* (c): the whole ring written, then one store raises the word by its size:
 * every firing lands, each with its own table; twice round the ring. */
TEST_F_TIMEOUT(vscatter, many_bumps, 120)
{
	struct xfer_vscatter_attr a = attr_of(self, MAX_TABLES);
	xfer_watch *w = NULL;

	XT_ASSERT_OK(xfer_vscatter_add(self->e, &a, &w));
	for (uint64_t round = 1; round <= 2; round++) {
		reqs_reset(self);
		for (uint32_t t = 0; t < MAX_TABLES; t++)
			fill_table(self, t, t, round == 1 && t == 0);
		__atomic_store_n(&self->word, round * MAX_TABLES, __ATOMIC_RELEASE);
		ASSERT_TRUE(wait_done_word(&self->done_word, round * MAX_TABLES));
		verify_all(_metadata, self, "the ring at once");
	}
	EXPECT_EQ(2 * MAX_TABLES, xfer_watch_fired(w));
	EXPECT_EQ(2 * MAX_TABLES, atomic_load(&self->rec.calls));
	EXPECT_EQ(0, atomic_load(&self->rec.errors));
	XT_EXPECT_OK(xfer_watch_remove(w));
}

/* (e): bad attributes are refused with -EINVAL and hold nothing. */
/* A kicked scatter (XFER_VSCATTER_F_KICK): the worker may sleep between
 * firings, so each one must be woken by the producer's kick. Every firing
 * is waited for before the next, leaving the worker idle in between. */
TEST_F_TIMEOUT(vscatter, kicked, 120)
{
	struct xfer_vscatter_attr a = attr_of(self, 1);
	xfer_watch *w = NULL;

	a.flags = XFER_VSCATTER_F_KICK;
	EXPECT_EQ(-EINVAL, xfer_watch_kick(NULL));
	XT_ASSERT_OK(xfer_vscatter_add(self->e, &a, &w));
	for (uint64_t n = 1; n <= 8; n++) {
		reqs_reset(self);
		fill_table(self, 0, (uint32_t)(n % 2), n == 1);
		usleep(2000);   /* let the worker go to sleep */
		__atomic_store_n(&self->word, n, __ATOMIC_SEQ_CST);
		XT_ASSERT_OK(xfer_watch_kick(w));
		ASSERT_TRUE(wait_done_word(&self->done_word, n));
		verify_all(_metadata, self, "a kicked firing");
	}
	EXPECT_EQ(8, xfer_watch_fired(w));
	EXPECT_EQ(0, atomic_load(&self->rec.errors));
	XT_EXPECT_OK(xfer_watch_remove(w));
}

TEST_F(vscatter, bad_attributes)
{
	struct xfer_vscatter_attr a;
	xfer_watch *w = NULL;
	xfer_rmr *dsts[ND + 1];
	void *buf2 = xt_alloc(4096);
	xfer_mr *mr2 = NULL, *tmp = NULL;
	xfer_rmr *other = NULL;
	xfer_engine *e2 = NULL;
	uint8_t addr[XFER_ADDR_MAX], desc[XFER_DESC_MAX];
	size_t alen = sizeof(addr), dlen = sizeof(desc);
	uint32_t p2;

	ASSERT_TRUE(buf2 != NULL);
	/* a second engine: a region of its own, and one of ours imported there */
	XT_ASSERT_OK(xt_engine(variant->provider, variant->rails, 3000, &e2));
	XT_ASSERT_OK(xfer_mr_reg(e2, buf2, 4096, NULL, 0, &mr2));
	XT_ASSERT_OK(xfer_engine_address(self->e, addr, &alen));
	XT_ASSERT_OK(xfer_engine_add_peer(e2, addr, alen, &p2));
	XT_ASSERT_OK(xfer_mr_reg(self->e, buf2, 4096, NULL, XFER_MR_REMOTE_WRITE, &tmp));
	XT_ASSERT_OK(xfer_mr_descriptor(tmp, desc, &dlen));
	XT_ASSERT_OK(xfer_rmr_import(e2, p2, desc, dlen, &other));
	memcpy(dsts, self->dst, sizeof(self->dst));

#define REFUSED(what, edit) do { \
	a = attr_of(self, 2); \
	a.src = tmp; \
	edit; \
	w = (xfer_watch *)&w; \
	EXPECT_EQ(-EINVAL, xfer_vscatter_add(self->e, &a, &w)) TH_LOG("%s", what); \
	EXPECT_TRUE(w == NULL) TH_LOG("%s: *out not cleared", what); \
} while (0)
	REFUSED("NULL word", a.word = NULL);
	REFUSED("NULL src", a.src = NULL);
	REFUSED("NULL dsts", a.dsts = NULL);
	REFUSED("NULL tables", a.tables = NULL);
	REFUSED("num_dsts 0", a.num_dsts = 0);
	REFUSED("num_dsts over the maximum", a.num_dsts = XFER_VSCATTER_MAX_DSTS + 1);
	REFUSED("unknown flags", a.flags = XFER_VSCATTER_F_KICK << 1);
	REFUSED("size below the floor", a.size = XFER_VSCATTER_ATTR_SIZE_VER0 - 1);
	REFUSED("a source of another engine", a.src = mr2);
	dsts[ND] = other;
	REFUSED("a destination of another engine", (a.dsts = dsts, a.num_dsts = ND + 1));
	dsts[ND] = NULL;
	REFUSED("a NULL destination", (a.dsts = dsts, a.num_dsts = ND + 1));
#undef REFUSED
	a = attr_of(self, 2);
	EXPECT_EQ(-EINVAL, xfer_vscatter_add(self->e, &a, NULL));
	EXPECT_EQ(-EINVAL, xfer_vscatter_add(NULL, &a, &w));
	EXPECT_EQ(-EINVAL, xfer_vscatter_add(self->e, NULL, &w));
	/* none of the refusals holds the source */
	EXPECT_EQ(0, xfer_mr_dereg(tmp));
	EXPECT_EQ(0, xfer_watch_fired(NULL));
	EXPECT_EQ(-EINVAL, xfer_watch_remove(NULL));
	xfer_rmr_free(other);
	xfer_mr_dereg(mr2);
	xfer_engine_destroy(e2);
	free(buf2);
}

/* (f) + (g): the source cannot be deregistered while the watch exists; a
 * jump past XFER_WATCH_MAX_STEP stops it with -ERANGE (once) and nothing is
 * posted, then or later. */
TEST_F(vscatter, held_source_and_runaway_word)
{
	void *buf2 = xt_alloc(SRC_LEN);
	struct xfer_vscatter_attr a = attr_of(self, 1);
	xfer_watch *w = NULL;
	xfer_mr *src2;

	ASSERT_TRUE(buf2 != NULL);
	memcpy(buf2, self->srcbuf, SRC_LEN);
	XT_ASSERT_OK(xfer_mr_reg(self->e, buf2, SRC_LEN, NULL, 0, &src2));
	a.src = src2;
	XT_ASSERT_OK(xfer_vscatter_add(self->e, &a, &w));
	EXPECT_EQ(-EBUSY, xfer_mr_dereg(src2));

	reqs_reset(self);
	fill_table(self, 0, 0, true);
	for (int d = 0; d < ND; d++) {   /* none of it may land */
		struct vreq *q = &self->req[d / NR];

		q->num_imms = q->num_segs = 0;
		q->num_zero = 0;
	}
	for (int d = 0; d < ND; d++)
		expect_row(self, d, &self->tables[d], false);
	__atomic_store_n(&self->word, (uint64_t)XFER_WATCH_MAX_STEP + 1, __ATOMIC_RELEASE);
	uint64_t t0 = xt_now_us();
	while (!atomic_load(&self->rec.calls) && xt_now_us() - t0 < 5000000)
		usleep(500);
	EXPECT_EQ(1, atomic_load(&self->rec.calls));
	EXPECT_EQ(-ERANGE, atomic_load(&self->rec.last));
	__atomic_store_n(&self->word, (uint64_t)XFER_WATCH_MAX_STEP + 2, __ATOMIC_RELEASE);
	usleep(50000);
	EXPECT_EQ(1, atomic_load(&self->rec.calls)) TH_LOG("a stopped watch fired");
	EXPECT_EQ(0, xfer_watch_fired(w));
	EXPECT_EQ(0, __atomic_load_n(&self->done_word, __ATOMIC_ACQUIRE));
	verify_all(_metadata, self, "after the runaway word");
	EXPECT_EQ(-EBUSY, xfer_mr_dereg(src2)) TH_LOG("a stopped watch still holds its source");
	XT_EXPECT_OK(xfer_watch_remove(w));
	EXPECT_EQ(0, xfer_mr_dereg(src2));
	free(buf2);
}

/* xfer_watch_remove right after bumps: it returns once the firings taken
 * are finished (done ran for each, *done_word says so), and nothing more
 * fires after it. */
TEST_F(vscatter, remove_waits_for_firings)
{
	struct xfer_vscatter_attr a = attr_of(self, MAX_TABLES);
	xfer_watch *w = NULL;
	int calls;

	XT_ASSERT_OK(xfer_vscatter_add(self->e, &a, &w));
	reqs_reset(self);
	for (uint32_t t = 0; t < MAX_TABLES; t++)
		fill_table(self, t, t, t == 0);
	__atomic_store_n(&self->word, MAX_TABLES, __ATOMIC_RELEASE);
	while (!xfer_watch_fired(w))
		usleep(50);
	XT_EXPECT_OK(xfer_watch_remove(w));
	calls = atomic_load(&self->rec.calls);
	EXPECT_LE(1, calls);
	EXPECT_EQ((uint64_t)calls, __atomic_load_n(&self->done_word, __ATOMIC_ACQUIRE));
	EXPECT_EQ(0, atomic_load(&self->rec.errors));
	usleep(50000);
	EXPECT_EQ(calls, atomic_load(&self->rec.calls)) TH_LOG("a removed watch fired");
	/* what was not taken before the removal never goes: those tables' rows
	 * must not land */
	reqs_reset(self);
	for (int f = 0; f < MAX_TABLES; f++)
		for (int d = 0; d < ND; d++)
			expect_row(self, d, &self->tables[f * ND + d], f < calls);
	verify_all(_metadata, self, "after the removal");
}

/* Removed from its own done callback (on the worker, where the removal
 * cannot wait): no firing is taken after it, the firings in flight still
 * finish, and the watch lets go of its source once they have. */
struct self_remover {
	xfer_watch *_Atomic w;
	_Atomic int calls, removed;
};

static void remove_in_done(void *ctx, int status)
{
	struct self_remover *r = ctx;

	(void)status;
	if (atomic_fetch_add(&r->calls, 1) == 0)
		atomic_store(&r->removed, xfer_watch_remove(atomic_load(&r->w)) == 0);
}

TEST_F(vscatter, remove_in_callback)
{
	void *buf2 = xt_alloc(SRC_LEN);
	struct xfer_vscatter_attr a = attr_of(self, MAX_TABLES);
	struct self_remover r = { 0 };
	xfer_watch *w = NULL;
	xfer_mr *src2;
	int ret = -EBUSY;

	ASSERT_TRUE(buf2 != NULL);
	memcpy(buf2, self->srcbuf, SRC_LEN);
	XT_ASSERT_OK(xfer_mr_reg(self->e, buf2, SRC_LEN, NULL, 0, &src2));
	a.src = src2;
	a.done = (struct xfer_done){ remove_in_done, &r };
	XT_ASSERT_OK(xfer_vscatter_add(self->e, &a, &w));
	atomic_store(&r.w, w);
	reqs_reset(self);
	for (uint32_t t = 0; t < MAX_TABLES; t++)
		fill_table(self, t, t, t == 0);
	__atomic_store_n(&self->word, MAX_TABLES, __ATOMIC_RELEASE);
	uint64_t t0 = xt_now_us();
	while ((ret = xfer_mr_dereg(src2)) == -EBUSY && xt_now_us() - t0 < 10000000)
		usleep(1000);
	EXPECT_EQ(0, ret) TH_LOG("the source is still held after the removal");
	EXPECT_EQ(1, atomic_load(&r.removed));
	int calls = atomic_load(&r.calls);

	EXPECT_LE(1, calls);
	EXPECT_EQ((uint64_t)calls, __atomic_load_n(&self->done_word, __ATOMIC_ACQUIRE));
	__atomic_store_n(&self->word, 2 * MAX_TABLES, __ATOMIC_RELEASE);
	usleep(50000);
	EXPECT_EQ(calls, atomic_load(&r.calls)) TH_LOG("a removed watch fired");
	reqs_reset(self);
	for (int f = 0; f < MAX_TABLES; f++)
		for (int d = 0; d < ND; d++)
			expect_row(self, d, &self->tables[f * ND + d], f < calls);
	verify_all(_metadata, self, "after the removal in a callback");
	free(buf2);
}

TEST_HARNESS_MAIN
