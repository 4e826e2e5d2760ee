// SPDX-License-Identifier: MIT
/*
 * Planner: validity (every destination byte written exactly once, sources
 * held or gathered once) for even and uneven layouts, destination sizes
 * against a count made here from the parameter list, NIC balance, determinism,
 * the file format's round trip, and the validator refusing broken schedules.
 *
 * Balance factors asserted (max / mean bytes): trainer NICs <= 1.15 and
 * inference NICs <= 1.01 for the anchor (Kimi-K2 256 -> 128); for the small
 * uneven layouts trainer NICs <= 2.0 (few, lumpy tensors) and inference NICs
 * as the layout dictates (checked exactly through the byte count).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "xfer_weightsync.h"
#include "ws_models.h"

#define ANCHOR_TIMEOUT_S 30   /* plan + check: 0.7 s here, 1 s under ASan+UBSan */

static uint64_t expected_data_bytes(const xfer_ws_model *m, const struct xfer_ws_infer_layout *l)
{
	size_t n;
	const struct xfer_ws_param *p = xfer_ws_model_params(m, &n);
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t copies = (uint64_t)l->dp * (p[i].expert >= 0 ? 1 : l->ep) * (ws_rule_replicated(&p[i]) ? l->tp : 1);
		uint64_t esz = ws_rule_quantised(&p[i], l->dtype) ? 1 : (p[i].dtype == XFER_WS_DT_F32 ? 4 : 2);

		sum += p[i].rows * p[i].cols * esz * copies;
	}
	return sum;
}

static uint64_t data_bytes(const struct xfer_ws_schedule *s)
{
	uint64_t sum = 0;

	for (uint64_t i = 0; i < s->ntensors; i++)
		sum += s->tensors[i].bytes;
	return sum;
}

static int serialise(const struct xfer_ws_schedule *s, char **buf, size_t *len)
{
	FILE *f = open_memstream(buf, len);
	int rc;

	if (!f)
		return -errno;
	rc = xfer_ws_schedule_save(s, f);
	fclose(f);
	return rc;
}

static int load_buf(const char *buf, size_t len, struct xfer_ws_schedule **s)
{
	char path[] = "/tmp/test_ws_plan.XXXXXX";
	int fd = mkstemp(path), rc;
	FILE *f;

	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w+b");
	if (!f || fwrite(buf, 1, len, f) != len || fflush(f) || fseek(f, 0, SEEK_SET)) {
		rc = -EIO;
	} else {
		rc = xfer_ws_schedule_load(f, s);
	}
	if (f)
		fclose(f);
	unlink(path);
	return rc;
}

struct layout_case {
	const char *model; /* path, or NULL for the tiny model of the case's index */
	const char *trainer, *infer;
	uint32_t dtype;
	uint64_t min_chunk, max_chunk;
};

static const struct layout_case cases[] = {
	{ "models/qwen2.5-0.5b.json", "fsdp=3", "dp=2", XFER_WS_DT_FP8E4M3, 0, 0 },
	{ "models/qwen2.5-0.5b.json", "fsdp=4", "tp=2", XFER_WS_DT_BF16, 0, 0 },
	{ "models/qwen2.5-0.5b.json", "fsdp=3", "tp=2", XFER_WS_DT_FP8E4M3, 0, 0 },
	{ "models/qwen2.5-0.5b.json", "fsdp=5,pp=3,dp=2", "tp=2,dp=3", XFER_WS_DT_FP8E4M3, 1 << 20, 4 << 20 },
	{ NULL /* tiny_mla */, "fsdp=3,ep=3,pp=2", "ep=4,tp=2,dp=2", XFER_WS_DT_FP8E4M3, 4096, 16384 },
	{ NULL /* tiny_mla */, "fsdp=2,ep=5", "ep=5", XFER_WS_DT_FP8E4M3, 0, 0 },
	{ NULL /* tiny_qwen3moe */, "fsdp=4,ep=2,dp=2", "tp=4,ep=3", XFER_WS_DT_BF16, 0, 0 },
	{ NULL /* tiny_qwen3moe */, "fsdp=7", "tp=3,dp=2", XFER_WS_DT_FP8E4M3, 4096, 65536 },
};

static int plan_case(const struct layout_case *c, int idx, xfer_ws_model **mp, struct xfer_ws_schedule **sp,
		     struct xfer_ws_infer_layout *l)
{
	struct xfer_ws_trainer_layout t;
	struct xfer_ws_plan_attr a = { sizeof(a), 0, c->min_chunk, c->max_chunk, 0, 0 };
	const char *json = idx == 4 || idx == 5 ? tiny_mla : idx >= 6 ? tiny_qwen3moe : NULL;
	int rc;

	rc = json ? xfer_ws_model_parse(json, 0, mp) : xfer_ws_model_load(c->model, 0, mp);
	if (rc)
		return rc;
	memset(l, 0, sizeof(*l));
	l->dtype = c->dtype;
	if ((rc = xfer_ws_trainer_parse(c->trainer, &t)) || (rc = xfer_ws_infer_parse(c->infer, l)))
		return rc;
	return xfer_ws_plan(*mp, &t, l, &a, sp);
}

/* Each layout case planned: model, schedule and inference layout. */
FIXTURE(layout) {
	xfer_ws_model *m;
	struct xfer_ws_schedule *s;
	struct xfer_ws_infer_layout l;
};

FIXTURE_VARIANT(layout) {
	int idx;   /* into cases[] */
};

FIXTURE_VARIANT_ADD(layout, qwen2_5_fsdp3_dp2_fp8) { .idx = 0 };
FIXTURE_VARIANT_ADD(layout, qwen2_5_fsdp4_tp2_bf16) { .idx = 1 };
FIXTURE_VARIANT_ADD(layout, qwen2_5_fsdp3_tp2_fp8) { .idx = 2 };
FIXTURE_VARIANT_ADD(layout, qwen2_5_fsdp5_pp3_dp2_tp2_dp3_fp8_chunks) { .idx = 3 };
FIXTURE_VARIANT_ADD(layout, mla_fsdp3_ep3_pp2_ep4_tp2_dp2_fp8_chunks) { .idx = 4 };
FIXTURE_VARIANT_ADD(layout, mla_fsdp2_ep5_ep5_fp8) { .idx = 5 };
FIXTURE_VARIANT_ADD(layout, qwen3moe_fsdp4_ep2_dp2_tp4_ep3_bf16) { .idx = 6 };
FIXTURE_VARIANT_ADD(layout, qwen3moe_fsdp7_tp3_dp2_fp8_chunks) { .idx = 7 };

FIXTURE_SETUP(layout)
{
	const struct layout_case *c = &cases[variant->idx];
	int rc = plan_case(c, variant->idx, &self->m, &self->s, &self->l);

	ASSERT_EQ(0, rc) TH_LOG("case %d: plan %s -> %s (%s): %d", variant->idx, c->trainer, c->infer,
				xfer_ws_dtype_name(c->dtype), rc);
}

FIXTURE_TEARDOWN(layout)
{
	xfer_ws_schedule_free(self->s);
	xfer_ws_model_free(self->m);
}

TEST_F(layout, every_destination_byte_written_once)
{
	char err[256];
	int rc = xfer_ws_schedule_validate(self->s, err, sizeof(err));

	EXPECT_TRUE(rc == 0) TH_LOG("case %d: every destination byte written exactly once (%s)", variant->idx, err);
}

TEST_F(layout, destination_sizes_match_parameters)
{
	const struct xfer_ws_schedule *s = self->s;

	EXPECT_TRUE(data_bytes(s) == expected_data_bytes(self->m, &self->l))
		TH_LOG("case %d: destination sizes %lu = %lu counted from the parameters", variant->idx,
		       (unsigned long)data_bytes(s), (unsigned long)expected_data_bytes(self->m, &self->l));
}

TEST_F(layout, trainer_nic_balance)
{
	const struct xfer_ws_schedule *s = self->s;
	struct xfer_ws_stats st;

	xfer_ws_schedule_stats(s, &st);
	EXPECT_TRUE(st.trainer_imbalance <= 2.0)
		TH_LOG("case %d: trainer NIC bytes max/mean %.3f <= 2.0 (%lu chunks, %lu gathers)", variant->idx,
		       st.trainer_imbalance, (unsigned long)s->nchunks, (unsigned long)s->ngathers);
}

/* Planning the same case twice gives the same file bytes. */
TEST_F(layout, planning_is_deterministic)
{
	struct xfer_ws_schedule *s2 = NULL;
	struct xfer_ws_infer_layout l;
	xfer_ws_model *m2 = NULL;
	char *b1 = NULL, *b2 = NULL;
	size_t n1 = 0, n2 = 0;
	int rc;

	rc = plan_case(&cases[variant->idx], variant->idx, &m2, &s2, &l) == 0 && serialise(self->s, &b1, &n1) == 0 &&
	     serialise(s2, &b2, &n2) == 0 && n1 == n2 && !memcmp(b1, b2, n1);
	EXPECT_TRUE(rc) TH_LOG("case %d: planning twice gives the same bytes (%zu)", variant->idx, n1);
	free(b1);
	free(b2);
	xfer_ws_schedule_free(s2);
	xfer_ws_model_free(m2);
}

/* save -> load -> save through the file format is exact. */
TEST_F(layout, save_load_round_trip_exact)
{
	const struct xfer_ws_schedule *s = self->s;
	struct xfer_ws_schedule *s2 = NULL;
	char *b1 = NULL, *b2 = NULL;
	size_t n1 = 0, n2 = 0;
	int rc;

	ASSERT_EQ(0, serialise(s, &b1, &n1));
	rc = load_buf(b1, n1, &s2) == 0 && serialise(s2, &b2, &n2) == 0 && n1 == n2 && !memcmp(b1, b2, n1) &&
	     s2->nwrites == s->nwrites && !memcmp(s2->writes, s->writes, s->nwrites * sizeof(*s->writes));
	EXPECT_TRUE(rc) TH_LOG("case %d: save -> load -> save round trip is exact", variant->idx);
	free(b1);
	free(b2);
	xfer_ws_schedule_free(s2);
}

/* The validator must catch what a planner bug would produce: on case 4's
 * schedule (tiny MLA, with gathers), each damage below is refused. */
FIXTURE(validator) {
	xfer_ws_model *m;
	struct xfer_ws_schedule *s;
	char err[256];
};

FIXTURE_SETUP(validator)
{
	struct xfer_ws_infer_layout l;

	ASSERT_EQ(0, plan_case(&cases[4], 4, &self->m, &self->s, &l)) TH_LOG("plan for the validator tests");
}

FIXTURE_TEARDOWN(validator)
{
	xfer_ws_schedule_free(self->s);
	xfer_ws_model_free(self->m);
}

TEST_F(validator, byte_written_twice_refused)
{
	struct xfer_ws_schedule *s = self->s;

	s->writes[1].dst_offset = s->writes[0].dst_offset;
	s->writes[1].dst_rank = s->writes[0].dst_rank;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, self->err, sizeof(self->err)) == -EINVAL)
		TH_LOG("a byte written twice is refused: %s", self->err);
}

/* A shifted write is refused; shifted back, the schedule is valid again. */
TEST_F(validator, shifted_write_refused)
{
	struct xfer_ws_schedule *s = self->s;

	s->writes[2].dst_offset += s->align;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, self->err, sizeof(self->err)) == -EINVAL)
		TH_LOG("a shifted write is refused: %s", self->err);
	s->writes[2].dst_offset -= s->align;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, self->err, sizeof(self->err)) == 0)
		TH_LOG("restored schedule is valid again");
}

/* A chunk moved to a trainer that holds none of its rows, or reading rows
 * shifted from its slice. */
TEST_F(validator, misplaced_chunk_refused)
{
	struct xfer_ws_schedule *s = self->s;
	uint32_t owner;
	uint64_t g;

	for (g = 0; g < s->nchunks; g++)
		if (s->chunks[g].gather_offset == XFER_WS_NO_GATHER)
			break;
	owner = s->chunks[g].owner;
	s->chunks[g].owner = (owner + 1) % s->ntrainers;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, self->err, sizeof(self->err)) == -EINVAL)
		TH_LOG("a chunk listed under another rank is refused: %s", self->err);
	s->chunks[g].owner = owner;
	s->chunks[g].row0 += s->chunks[g].rows;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, self->err, sizeof(self->err)) == -EINVAL)
		TH_LOG("a chunk reading rows shifted from its slice is refused: %s", self->err);
	s->chunks[g].row0 -= s->chunks[g].rows;
}

/* A gather dropped: rows missing. */
TEST_F(validator, missing_gathered_rows_refused)
{
	struct xfer_ws_schedule *s = self->s;

	if (!s->ngathers)
		SKIP(return, "no gathers in this layout");
	s->gathers[0].rows = 0;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, self->err, sizeof(self->err)) == -EINVAL)
		TH_LOG("missing gathered rows are refused: %s", self->err);
}

/* A file with one destination offset flipped, or truncated, does not load;
 * random single-byte damage anywhere is refused or loaded, never a crash
 * (ASan build). */
TEST_F(validator, damaged_files_refused)
{
	struct xfer_ws_schedule *s = self->s, *bad = NULL;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	ASSERT_TRUE(serialise(s, &buf, &len) == 0) TH_LOG("serialise");
	/* layout of the file: magic, header, params, tensors, chunks, writes, ... */
	size_t off = 8 + 104 + s->nparams * sizeof(struct xfer_ws_param) +
		     s->ntensors * sizeof(struct xfer_ws_tensor) +
		     s->nchunks * sizeof(struct xfer_ws_chunk) + 3 * sizeof(struct xfer_ws_write) + 2;

	buf[off] ^= 0x40;
	rc = load_buf(buf, len, &bad);
	EXPECT_TRUE(rc == -EINVAL && !bad) TH_LOG("a corrupted schedule file is refused (%d, offset %zu of %zu)", rc, off, len);
	EXPECT_TRUE(load_buf(buf, 10, &bad) == -EINVAL) TH_LOG("a truncated schedule file is refused");
	buf[off] ^= 0x40;
	{
		uint32_t seed = 99;
		int loaded = 0, refused = 0;

		for (int i = 0; i < 300; i++) {
			size_t at;
			uint8_t old;

			seed = seed * 1103515245u + 12345u;
			at = (seed >> 4) % len;
			old = (uint8_t)buf[at];
			buf[at] = (char)(old ^ (uint8_t)(1u << ((seed >> 28) & 7)));
			if (load_buf(buf, len, &bad) == 0) {
				loaded++;
				xfer_ws_schedule_free(bad);
				bad = NULL;
			} else {
				refused++;
			}
			buf[at] = (char)old;
		}
		EXPECT_TRUE(refused > 0 && loaded + refused == 300)
			TH_LOG("300 damaged files: %d refused, %d still valid (names, padding)", refused, loaded);
	}
	free(buf);
}

/* Layouts the planner must refuse, and layout strings the parsers must refuse. */
TEST(bad_layouts_refused)
{
	struct xfer_ws_trainer_layout t = { sizeof(t), 1, 1, 1, 1 };
	struct xfer_ws_infer_layout l = { sizeof(l), 1, 1, 1, XFER_WS_DT_BF16 };
	struct xfer_ws_schedule *s;
	xfer_ws_model *m;

	ASSERT_TRUE(xfer_ws_model_parse(tiny_mla, 0, &m) == 0) TH_LOG("parse tiny model");
	t.pp = 6;
	EXPECT_TRUE(xfer_ws_plan(m, &t, &l, NULL, &s) == -EINVAL) TH_LOG("more pipeline stages than layers refused");
	t.pp = 1, t.ep = 11;
	EXPECT_TRUE(xfer_ws_plan(m, &t, &l, NULL, &s) == -EINVAL) TH_LOG("trainer EP above the expert count refused");
	t.ep = 1, t.fsdp = 0;
	EXPECT_TRUE(xfer_ws_plan(m, &t, &l, NULL, &s) == -EINVAL) TH_LOG("zero-sized layout refused");
	t.fsdp = 1, l.dtype = 77;
	EXPECT_TRUE(xfer_ws_plan(m, &t, &l, NULL, &s) == -EINVAL) TH_LOG("unknown inference dtype refused");
	EXPECT_TRUE(xfer_ws_trainer_parse("fsdp=16,zz=2", &t) == -EINVAL && xfer_ws_infer_parse("tp=0", &l) == -EINVAL &&
		    xfer_ws_infer_parse("tp=2,", &l) == 0 && xfer_ws_trainer_parse("fsdp", &t) == -EINVAL)
		TH_LOG("layout strings: unknown keys, zero and missing values refused");
	xfer_ws_model_free(m);
}

/* The anchor: Kimi-K2, 256 trainers (FSDP/PP/EP 16/2/8) -> 128 fp8 GPUs
 * (EP32 x 4), planned once per test with the CPU time it took. */
FIXTURE(anchor) {
	xfer_ws_model *m;
	struct xfer_ws_schedule *s;
	struct xfer_ws_infer_layout l;
	double cpu, user;
};

FIXTURE_SETUP(anchor)
{
	struct xfer_ws_trainer_layout t;
	double t0, u0;
	int rc;

	self->l = (struct xfer_ws_infer_layout){ .dtype = XFER_WS_DT_FP8E4M3 };
	ASSERT_EQ(0, xfer_ws_model_load("models/kimi-k2.json", 0, &self->m)) TH_LOG("load Kimi-K2");
	xfer_ws_trainer_parse("fsdp=16,pp=2,ep=8", &t);
	xfer_ws_infer_parse("tp=1,ep=32,dp=4", &self->l);
	t0 = xfer_cpu_s();
	u0 = xfer_user_s();
	rc = xfer_ws_plan(self->m, &t, &self->l, NULL, &self->s);
	self->cpu = xfer_cpu_s() - t0;
	self->user = xfer_user_s() - u0;
	ASSERT_TRUE(rc == 0 && self->s->ntrainers == 256 && self->s->ninfer == 128) TH_LOG("Kimi-K2 256 -> 128 planned");
}

FIXTURE_TEARDOWN(anchor)
{
	xfer_ws_schedule_free(self->s);
	xfer_ws_model_free(self->m);
}

TEST_F_TIMEOUT(anchor, planning_under_1s_user_cpu, ANCHOR_TIMEOUT_S)
{
	TH_LOG("Kimi-K2 planning: %.3f s CPU, of which %.3f s user", self->cpu, self->user);
	if (XT_SANITIZED)
		SKIP(return, "timing under ASan/UBSan is not the product's");
	EXPECT_TRUE(self->user < 1.0)
		TH_LOG("Kimi-K2 planning user CPU %.3f s < 1 s (%.3f s with page faults)", self->user, self->cpu);
}

TEST_F_TIMEOUT(anchor, schedule_valid, ANCHOR_TIMEOUT_S)
{
	char err[256];

	EXPECT_TRUE(xfer_ws_schedule_validate(self->s, err, sizeof(err)) == 0) TH_LOG("Kimi-K2 schedule valid (%s)", err);
}

TEST_F_TIMEOUT(anchor, nic_balance, ANCHOR_TIMEOUT_S)
{
	struct xfer_ws_stats st;

	xfer_ws_schedule_stats(self->s, &st);
	EXPECT_TRUE(st.trainer_imbalance <= 1.15) TH_LOG("Kimi-K2 trainer NIC bytes max/mean %.3f <= 1.15", st.trainer_imbalance);
	EXPECT_TRUE(st.infer_imbalance <= 1.01) TH_LOG("Kimi-K2 inference NIC bytes max/mean %.4f <= 1.01", st.infer_imbalance);
}

TEST_F_TIMEOUT(anchor, destination_sizes_match_parameters, ANCHOR_TIMEOUT_S)
{
	EXPECT_TRUE(data_bytes(self->s) == expected_data_bytes(self->m, &self->l))
		TH_LOG("Kimi-K2 destination sizes match the parameter count");
}

TEST_HARNESS_MAIN
