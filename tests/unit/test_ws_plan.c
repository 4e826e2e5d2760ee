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

#include "xfer_weightsync.h"
#include "test_ws_tap.h"
#include "ws_models.h"

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
	const char *model; /* path, or inline JSON when it starts with '{' */
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

static void layouts(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct layout_case *c = &cases[i];
		struct xfer_ws_schedule *s = NULL, *s2 = NULL;
		struct xfer_ws_infer_layout l;
		struct xfer_ws_stats st;
		xfer_ws_model *m = NULL, *m2 = NULL;
		char err[256], *b1 = NULL, *b2 = NULL;
		size_t n1 = 0, n2 = 0;
		int rc = plan_case(c, (int)i, &m, &s, &l);

		EXPECT_TRUE(rc == 0) TH_LOG("case %zu: plan %s -> %s (%s): %d", i, c->trainer, c->infer, xfer_ws_dtype_name(c->dtype), rc);
		if (rc) {
			xfer_ws_model_free(m);
			continue;
		}
		rc = xfer_ws_schedule_validate(s, err, sizeof(err));
		EXPECT_TRUE(rc == 0) TH_LOG("case %zu: every destination byte written exactly once (%s)", i, err);
		EXPECT_TRUE(data_bytes(s) == expected_data_bytes(m, &l)) TH_LOG("case %zu: destination sizes %lu = %lu counted from the parameters", i, (unsigned long)data_bytes(s), (unsigned long)expected_data_bytes(m, &l));
		xfer_ws_schedule_stats(s, &st);
		EXPECT_TRUE(st.trainer_imbalance <= 2.0) TH_LOG("case %zu: trainer NIC bytes max/mean %.3f <= 2.0 (%lu chunks, %lu gathers)", i, st.trainer_imbalance, (unsigned long)s->nchunks, (unsigned long)s->ngathers);
		/* determinism and the round trip through the file format */
		xfer_ws_schedule_free(s2);
		s2 = NULL;
		rc = plan_case(c, (int)i, &m2, &s2, &l) == 0 && serialise(s, &b1, &n1) == 0 &&
		     serialise(s2, &b2, &n2) == 0 && n1 == n2 && !memcmp(b1, b2, n1);
		EXPECT_TRUE(rc) TH_LOG("case %zu: planning twice gives the same bytes (%zu)", i, n1);
		xfer_ws_schedule_free(s2);
		s2 = NULL;
		free(b2);
		b2 = NULL;
		rc = load_buf(b1, n1, &s2) == 0 && serialise(s2, &b2, &n2) == 0 && n1 == n2 && !memcmp(b1, b2, n1) &&
		     s2->nwrites == s->nwrites && !memcmp(s2->writes, s->writes, s->nwrites * sizeof(*s->writes));
		EXPECT_TRUE(rc) TH_LOG("case %zu: save -> load -> save round trip is exact", i);
		free(b1);
		free(b2);
		xfer_ws_schedule_free(s);
		xfer_ws_schedule_free(s2);
		xfer_ws_model_free(m);
		xfer_ws_model_free(m2);
	}
}

/* The validator must catch what a planner bug would produce. */
static void validator(void)
{
	struct xfer_ws_schedule *s;
	struct xfer_ws_infer_layout l;
	xfer_ws_model *m;
	char err[256], *buf = NULL;
	size_t len = 0;
	struct xfer_ws_write w;
	uint32_t owner;
	uint64_t g;
	int rc;

	if (plan_case(&cases[4], 4, &m, &s, &l)) {
		EXPECT_TRUE(0) TH_LOG("plan for the validator tests");
		return;
	}
	w = s->writes[1];
	s->writes[1].dst_offset = s->writes[0].dst_offset;
	s->writes[1].dst_rank = s->writes[0].dst_rank;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, err, sizeof(err)) == -EINVAL) TH_LOG("a byte written twice is refused: %s", err);
	s->writes[1] = w;
	s->writes[2].dst_offset += s->align;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, err, sizeof(err)) == -EINVAL) TH_LOG("a shifted write is refused: %s", err);
	s->writes[2].dst_offset -= s->align;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, err, sizeof(err)) == 0) TH_LOG("restored schedule is valid again");
	/* a chunk moved to a trainer that holds none of its rows */
	for (g = 0; g < s->nchunks; g++)
		if (s->chunks[g].gather_offset == XFER_WS_NO_GATHER)
			break;
	owner = s->chunks[g].owner;
	s->chunks[g].owner = (owner + 1) % s->ntrainers;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, err, sizeof(err)) == -EINVAL) TH_LOG("a chunk listed under another rank is refused: %s", err);
	s->chunks[g].owner = owner;
	s->chunks[g].row0 += s->chunks[g].rows;
	EXPECT_TRUE(xfer_ws_schedule_validate(s, err, sizeof(err)) == -EINVAL) TH_LOG("a chunk reading rows shifted from its slice is refused: %s", err);
	s->chunks[g].row0 -= s->chunks[g].rows;
	/* a gather dropped: rows missing */
	if (s->ngathers) {
		uint64_t rows = s->gathers[0].rows;

		s->gathers[0].rows = 0;
		EXPECT_TRUE(xfer_ws_schedule_validate(s, err, sizeof(err)) == -EINVAL) TH_LOG("missing gathered rows are refused: %s", err);
		s->gathers[0].rows = rows;
	} else {
		SKIP("no gathers in this layout", "missing gathered rows are refused");
	}
	/* a file with one destination offset flipped does not load */
	EXPECT_TRUE(serialise(s, &buf, &len) == 0) TH_LOG("serialise");
	{
		struct xfer_ws_schedule *bad = NULL;
		/* layout of the file: magic, header, params, tensors, chunks, writes, ... */
		size_t off = 8 + 104 + s->nparams * sizeof(struct xfer_ws_param) +
			     s->ntensors * sizeof(struct xfer_ws_tensor) +
			     s->nchunks * sizeof(struct xfer_ws_chunk) + 3 * sizeof(struct xfer_ws_write) + 2;

		buf[off] ^= 0x40;
		rc = load_buf(buf, len, &bad);
		EXPECT_TRUE(rc == -EINVAL && !bad) TH_LOG("a corrupted schedule file is refused (%d, offset %zu of %zu)", rc, off, len);
		EXPECT_TRUE(load_buf(buf, 10, &bad) == -EINVAL) TH_LOG("a truncated schedule file is refused");
		buf[off] ^= 0x40;
		/* random single-byte damage anywhere: refused or loaded, never a crash (ASan build) */
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
			EXPECT_TRUE(refused > 0 && loaded + refused == 300) TH_LOG("300 damaged files: %d refused, %d still valid (names, padding)", refused, loaded);
		}
	}
	free(buf);
	xfer_ws_schedule_free(s);
	xfer_ws_model_free(m);
}

static void refused(void)
{
	struct xfer_ws_trainer_layout t = { sizeof(t), 1, 1, 1, 1 };
	struct xfer_ws_infer_layout l = { sizeof(l), 1, 1, 1, XFER_WS_DT_BF16 };
	struct xfer_ws_schedule *s;
	xfer_ws_model *m;

	if (xfer_ws_model_parse(tiny_mla, 0, &m)) {
		EXPECT_TRUE(0) TH_LOG("parse tiny model");
		return;
	}
	t.pp = 6;
	EXPECT_TRUE(xfer_ws_plan(m, &t, &l, NULL, &s) == -EINVAL) TH_LOG("more pipeline stages than layers refused");
	t.pp = 1, t.ep = 11;
	EXPECT_TRUE(xfer_ws_plan(m, &t, &l, NULL, &s) == -EINVAL) TH_LOG("trainer EP above the expert count refused");
	t.ep = 1, t.fsdp = 0;
	EXPECT_TRUE(xfer_ws_plan(m, &t, &l, NULL, &s) == -EINVAL) TH_LOG("zero-sized layout refused");
	t.fsdp = 1, l.dtype = 77;
	EXPECT_TRUE(xfer_ws_plan(m, &t, &l, NULL, &s) == -EINVAL) TH_LOG("unknown inference dtype refused");
	EXPECT_TRUE(xfer_ws_trainer_parse("fsdp=16,zz=2", &t) == -EINVAL && xfer_ws_infer_parse("tp=0", &l) == -EINVAL &&
	   xfer_ws_infer_parse("tp=2,", &l) == 0 && xfer_ws_trainer_parse("fsdp", &t) == -EINVAL) TH_LOG("layout strings: unknown keys, zero and missing values refused");
	xfer_ws_model_free(m);
}

/* The anchor: Kimi-K2, 256 trainers (FSDP/PP/EP 16/2/8) -> 128 fp8 GPUs (EP32 x 4). */
static void anchor(void)
{
	struct xfer_ws_trainer_layout t;
	struct xfer_ws_infer_layout l = { .dtype = XFER_WS_DT_FP8E4M3 };
	struct xfer_ws_schedule *s;
	struct xfer_ws_stats st;
	xfer_ws_model *m;
	char err[256];
	double t0, u0, cpu, user;
	int rc;

	if (xfer_ws_model_load("models/kimi-k2.json", 0, &m)) {
		EXPECT_TRUE(0) TH_LOG("load Kimi-K2");
		return;
	}
	xfer_ws_trainer_parse("fsdp=16,pp=2,ep=8", &t);
	xfer_ws_infer_parse("tp=1,ep=32,dp=4", &l);
	t0 = tap_cpu_s();
	u0 = tap_user_s();
	rc = xfer_ws_plan(m, &t, &l, NULL, &s);
	cpu = tap_cpu_s() - t0;
	user = tap_user_s() - u0;
	printf("# Kimi-K2 planning: %.3f s CPU, of which %.3f s user\n", cpu, user);
	EXPECT_TRUE(rc == 0 && s->ntrainers == 256 && s->ninfer == 128) TH_LOG("Kimi-K2 256 -> 128 planned");
	if (rc) {
		xfer_ws_model_free(m);
		return;
	}
	if (TAP_SANITIZED)
		SKIP("timing under ASan/UBSan is not the product's", "Kimi-K2 planning user CPU %.3f s < 1 s", user);
	else
		EXPECT_TRUE(user < 1.0) TH_LOG("Kimi-K2 planning user CPU %.3f s < 1 s (%.3f s with page faults)", user, cpu);
	EXPECT_TRUE(xfer_ws_schedule_validate(s, err, sizeof(err)) == 0) TH_LOG("Kimi-K2 schedule valid (%s)", err);
	xfer_ws_schedule_stats(s, &st);
	EXPECT_TRUE(st.trainer_imbalance <= 1.15) TH_LOG("Kimi-K2 trainer NIC bytes max/mean %.3f <= 1.15", st.trainer_imbalance);
	EXPECT_TRUE(st.infer_imbalance <= 1.01) TH_LOG("Kimi-K2 inference NIC bytes max/mean %.4f <= 1.01", st.infer_imbalance);
	EXPECT_TRUE(data_bytes(s) == expected_data_bytes(m, &l)) TH_LOG("Kimi-K2 destination sizes match the parameter count");
	xfer_ws_schedule_free(s);
	xfer_ws_model_free(m);
}

int main(void)
{
	layouts();
	validator();
	refused();
	anchor();
	return tap_done();
}
