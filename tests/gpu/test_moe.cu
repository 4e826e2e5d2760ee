// SPDX-License-Identifier: MIT
/*
 * kernels/moe.cu against the C references of include/xfer_moe.h
 * (lib/moe/ref.c), byte for byte: for each shape, every rank of the group
 * routes and packs its own tokens (on the GPU and on the CPU, compared),
 * one rank unpacks what all of them sent it and packs its expert outputs
 * back, and that rank reduces the outputs that came back to its tokens.
 * Output buffers are filled with a pattern first, so bytes a kernel must
 * not touch are checked too, and so are the pads it must zero.
 *
 * Shapes: DeepSeek-V3 decode (T 128, H 7168, E 256, K 8, EP8) in fp8 and
 * bf16, its prefill T 4096 (route, pack and reduce of one rank), V2-Lite
 * (H 2048, E 64, K 6), odd sizes with unaligned offsets and strides (the
 * kernels' narrow paths), uneven routing (every token to one expert, a rank
 * that receives nothing, a rank with no tokens), -1 slots, a token with no
 * expert, an expert chosen twice by one token, and an out-of-range id
 * (reported through route's bad word at the index where the reference
 * refuses). The DeepSeek-V3 decode kernels are timed (mean of 20 launches).
 *
 * Inputs are finite: the CPU's and the GPU's fmaf may give a NaN different
 * payloads, so a NaN in the combine's outputs would compare its bits
 * loosely; fp8 packing of NaN and Inf is bit-exact and is covered.
 * TAP output; exit 77 when there is no usable GPU. An argument runs only
 * the shapes whose name contains it.
 */
#include <cuda_runtime.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "xfer_moe.h"
#include "moe.h"

static int n_tests, failed;

static void ok(bool c, const char *what, const char *name)
{
	printf("%sok %d - %s: %s\n", c ? "" : "not ", ++n_tests, name, what);
	failed += !c;
}

static uint64_t rng_state;

static uint32_t rnd(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng_state >> 33);
}

/* a finite bf16 of moderate magnitude (|v| < 2^9), some zeros and tiny ones */
static uint16_t rnd_bf16(void)
{
	uint32_t r = rnd();
	uint32_t exp = 127 - 20 + r % 29; /* 2^-20 .. 2^8 */
	uint32_t u = ((r >> 5) & 1u) << 31 | exp << 23 | (rnd() & 0x7f0000u);

	if (r % 97 == 0)
		u = 0;
	return (uint16_t)(u >> 16);
}

#define CK(call)                                                                          \
	do {                                                                              \
		cudaError_t e_ = (call);                                                  \
		if (e_ != cudaSuccess) {                                                  \
			printf("# %s:%d: %s: %s\n", __FILE__, __LINE__, #call,            \
			       cudaGetErrorString(e_));                                    \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

template <typename T> static T *up(const std::vector<T> &v)
{
	T *d;

	CK(cudaMalloc(&d, v.size() * sizeof(T) + 16));
	CK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
	return d;
}

template <typename T> static std::vector<T> down(const T *d, size_t n)
{
	std::vector<T> v(n);

	CK(cudaDeviceSynchronize());
	CK(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
	return v;
}

enum routing { UNIFORM, HOLES, SKEW };

struct shape {
	const char *name;
	uint32_t R, rank, E, K, H, T, dtype;
	enum routing routing;
	uint32_t skew;       /* extra bytes on offsets and strides: the kernels' narrow paths */
	bool origin_only;    /* route, pack and reduce of one rank (prefill sizes) */
	bool decode_rows;    /* unpack to DeepEP's [L][R*T] rows; else packed with gaps */
	bool timed;
};

struct source {
	struct xfer_moe_layout l;
	uint32_t nt;
	size_t x_stride;
	std::vector<int32_t> topk;
	std::vector<uint16_t> x;
	std::vector<uint32_t> counts, pos;
	std::vector<uint64_t> off;
	std::vector<uint8_t> send;
};

static void route_of(const struct shape &c, uint32_t s, std::vector<int32_t> &topk, uint32_t nt)
{
	uint32_t L = c.E / c.R, K = c.K;

	topk.assign((size_t)nt * K, -1);
	for (uint32_t t = 0; t < nt; t++) {
		int32_t *row = &topk[(size_t)t * K];

		if (c.routing == SKEW) {
			/* all tokens to expert 1, the rest within rank 0: ranks
			 * past 0 receive nothing from this source */
			row[0] = 1 % (int32_t)c.E;
			for (uint32_t k = 1; k < K && k < L; k++)
				row[k] = (int32_t)((k + 1 + s) % L);
			continue;
		}
		for (uint32_t k = 0; k < K; k++) { /* K distinct uniform experts */
			int32_t e;
			bool dup;

			do {
				e = (int32_t)(rnd() % c.E);
				dup = false;
				for (uint32_t j = 0; j < k; j++)
					dup |= row[j] == e;
			} while (dup);
			row[k] = e;
		}
		if (c.routing == HOLES) {
			for (uint32_t k = 0; k < K; k++)
				if (rnd() % 4 == 0)
					row[k] = -1;
			if (t == 0)
				for (uint32_t k = 0; k < K; k++)
					row[k] = -1;
			if (t == 1 && K > 2)
				row[2] = row[1] = (int32_t)(rnd() % c.E); /* chosen twice */
		}
	}
}

static struct xfer_moe_layout layout_of(const struct shape &c, uint32_t rank)
{
	struct xfer_moe_attr a;
	struct xfer_moe_layout l;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.world_size = c.R;
	a.rank = rank;
	a.num_experts = c.E;
	a.top_k = c.K;
	a.hidden = c.H;
	a.max_tokens = c.T;
	a.dispatch_dtype = c.dtype;
	a.combine_dtype = XFER_MOE_BF16;
	if (xfer_moe_layout_get(&a, &l)) {
		printf("# layout: %s\n", xfer_moe_last_error());
		exit(1);
	}
	return l;
}

/* Mean µs of 20 launches of f (after one). */
template <typename F> static double time_us(F f)
{
	cudaEvent_t a, b;
	float ms = 0;

	f();
	CK(cudaEventCreate(&a));
	CK(cudaEventCreate(&b));
	CK(cudaEventRecord(a));
	for (int i = 0; i < 20; i++)
		f();
	CK(cudaEventRecord(b));
	CK(cudaEventSynchronize(b));
	CK(cudaEventElapsedTime(&ms, a, b));
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	return ms * 1e3 / 20;
}

/* Route and pack one source on the CPU (the results stay in src) and, with
 * check, on the GPU, compared. */
static void dispatch_one(const struct shape &c, uint32_t s, struct source &src, bool check, double *us)
{
	const struct xfer_moe_layout *l = &src.l;
	uint32_t R = c.R, L = c.E / c.R, n = src.nt * c.K, bad = 0;
	uint64_t at = c.skew;
	int rc;

	src.counts.assign(c.E, 0);
	src.pos.assign(n, 0);
	rc = xfer_moe_route(l, src.topk.data(), src.nt, src.counts.data(), src.pos.data());
	if (rc) {
		printf("# route: %s\n", xfer_moe_last_error());
		exit(1);
	}
	src.off.assign(R, 0);
	for (uint32_t d = 0; d < R; d++) { /* packed, with a gap after each */
		uint64_t recs = 0;

		for (uint32_t e = 0; e < L; e++)
			recs += src.counts[(size_t)d * L + e];
		src.off[d] = at;
		at += recs * l->record_bytes + 64 + c.skew;
	}
	src.send.assign(at, 0xa5);
	xfer_moe_pack(l, 7, src.x.data(), src.x_stride, src.nt, src.topk.data(), src.pos.data(),
		      src.send.data(), src.off.data());
	if (!check)
		return;

	char what[96];
	int32_t *dtopk = up(src.topk);
	uint16_t *dx = up(src.x);
	uint32_t *dcounts = up(std::vector<uint32_t>(c.E, 0xdeadbeef));
	uint32_t *dpos = up(std::vector<uint32_t>(n + 1, 0xdeadbeef));
	uint32_t *dbad = up(std::vector<uint32_t>(1, 0));
	uint64_t *doff = up(src.off);
	uint8_t *dsend = up(std::vector<uint8_t>(at, 0xa5));

	rc = xfer_moe_route_cuda(l, dtopk, src.nt, dcounts, dpos, dbad, NULL);
	bad = down(dbad, 1)[0];
	snprintf(what, sizeof(what), "rank %u (%u tokens): route's counts and positions equal the reference's",
		 s, src.nt);
	ok(rc == 0 && bad == UINT32_MAX && down(dcounts, c.E) == src.counts && down(dpos, n) == src.pos,
	   what, c.name);
	if (us)
		us[0] = time_us([&] { xfer_moe_route_cuda(l, dtopk, src.nt, dcounts, dpos, dbad, NULL); });
	/* pack from the reference's positions: a wrong route must not make
	 * pack write outside the buffer */
	CK(cudaMemcpy(dpos, src.pos.data(), n * 4, cudaMemcpyHostToDevice));
	rc = xfer_moe_pack_cuda(l, 7, dx, src.x_stride, src.nt, dtopk, dpos, dsend, doff, NULL);
	snprintf(what, sizeof(what), "rank %u: pack's send buffer equals the reference's", s);
	ok(rc == 0 && down(dsend, at) == src.send, what, c.name);
	if (us)
		us[1] = time_us([&] { xfer_moe_pack_cuda(l, 7, dx, src.x_stride, src.nt, dtopk, dpos, dsend, doff, NULL); });
	cudaFree(dtopk), cudaFree(dx), cudaFree(dcounts), cudaFree(dpos), cudaFree(dbad);
	cudaFree(doff), cudaFree(dsend);
}

/* The receiver's side: unpack every source's block, then the combine's pack. */
static void receive(const struct shape &c, std::vector<struct source> &srcs, double *us)
{
	const uint32_t R = c.R, L = c.E / c.R, r = c.rank;
	const struct xfer_moe_layout *l = &srcs[r].l;
	const uint64_t tb = l->token_bytes, S = l->scales, H = c.H;
	std::vector<uint32_t> counts((size_t)R * L);
	std::vector<uint64_t> offset(L), dst_off(R);
	std::vector<const uint8_t *> recs(R), drecs(R);
	std::vector<uint8_t *> dsend(R);
	uint64_t rows = 0, at = c.skew;

	for (uint32_t s = 0; s < R; s++) {
		for (uint32_t e = 0; e < L; e++)
			counts[(size_t)s * L + e] = srcs[s].counts[(size_t)r * L + e];
		recs[s] = srcs[s].send.data() + srcs[s].off[r];
		dsend[s] = up(srcs[s].send);
		drecs[s] = dsend[s] + srcs[s].off[r];
	}
	for (uint32_t e = 0; e < L; e++) {
		uint64_t got = 0;

		for (uint32_t s = 0; s < R; s++)
			got += counts[(size_t)s * L + e];
		if (c.decode_rows) {
			offset[e] = (uint64_t)e * R * c.T;
			rows = offset[e] + (uint64_t)R * c.T;
		} else {
			offset[e] = rows;
			rows += got + 3; /* rows no record fills stay as they were */
		}
	}

	std::vector<uint8_t> x(rows * tb, 0x5a);
	std::vector<float> sc(S ? rows * S : 1, -2.5f);
	std::vector<struct xfer_moe_rec_hdr> hdrs(rows);

	memset(hdrs.data(), 0x3c, rows * sizeof(hdrs[0]));

	uint8_t *dx = up(x);
	float *dsc = up(sc);
	struct xfer_moe_rec_hdr *dhdrs = up(hdrs);
	const uint8_t **drecs_d = up(drecs);
	uint32_t *dcounts = up(counts);
	uint64_t *doffset = up(offset);
	int rc;

	xfer_moe_unpack(l, recs.data(), counts.data(), offset.data(), x.data(), S ? sc.data() : NULL,
			hdrs.data());
	rc = xfer_moe_unpack_cuda(l, drecs_d, dcounts, doffset, dx, S ? dsc : NULL, dhdrs, NULL);
	ok(rc == 0 && down(dx, x.size()) == x && (!S || !memcmp(down(dsc, sc.size()).data(), sc.data(), sc.size() * 4)) &&
		   !memcmp(down(dhdrs, rows).data(), hdrs.data(), rows * sizeof(hdrs[0])),
	   "unpack of every rank's block: x, scales and headers equal the reference's", c.name);
	if (us)
		us[2] = time_us([&] { xfer_moe_unpack_cuda(l, drecs_d, dcounts, doffset, dx, S ? dsc : NULL, dhdrs, NULL); });

	/* the experts' outputs, row for row with x, back to their sources */
	std::vector<uint16_t> y(rows * H);

	for (auto &v : y)
		v = rnd_bf16();
	for (uint32_t s = 0; s < R; s++) {
		uint64_t n = 0;

		for (uint32_t e = 0; e < L; e++)
			n += counts[(size_t)s * L + e];
		dst_off[s] = at;
		at += n * l->combine_bytes + 32 + c.skew;
	}

	std::vector<uint8_t> dst(at, 0x77);
	uint16_t *dy = up(y);
	uint8_t *ddst = up(dst);
	uint64_t *ddst_off = up(dst_off);

	xfer_moe_combine_pack(l, y.data(), counts.data(), offset.data(), dst.data(), dst_off.data());
	rc = xfer_moe_combine_pack_cuda(l, dy, dcounts, doffset, ddst, ddst_off, NULL);
	ok(rc == 0 && down(ddst, at) == dst, "combine_pack: the return buffer equals the reference's", c.name);
	if (us)
		us[3] = time_us([&] { xfer_moe_combine_pack_cuda(l, dy, dcounts, doffset, ddst, ddst_off, NULL); });
	for (uint32_t s = 0; s < R; s++)
		cudaFree(dsend[s]);
	cudaFree(dx), cudaFree(dsc), cudaFree(dhdrs), cudaFree(drecs_d), cudaFree(dcounts);
	cudaFree(doffset), cudaFree(dy), cudaFree(ddst), cudaFree(ddst_off);
}

/* The origin's side: its outputs came back to the positions it sent from. */
static void reduce(const struct shape &c, struct source &src, double *us)
{
	const struct xfer_moe_layout *l = &src.l;
	const uint32_t R = c.R, L = c.E / c.R, H = c.H, n = src.nt * c.K;
	const size_t out_stride = H + 8 + c.skew;
	std::vector<uint64_t> back_off(R);
	std::vector<float> w(n);
	uint64_t at = c.skew;
	int rc;

	for (uint32_t d = 0; d < R; d++) {
		uint64_t recs = 0;

		for (uint32_t e = 0; e < L; e++)
			recs += src.counts[(size_t)d * L + e];
		back_off[d] = at;
		at += recs * l->combine_bytes + 16 + c.skew;
	}

	std::vector<uint8_t> back(at);
	std::vector<uint16_t> out((size_t)src.nt * out_stride + 1, 0x1234);

	for (size_t i = 0; i + 1 < at; i += 2) {
		uint16_t v = rnd_bf16();

		memcpy(&back[i], &v, 2);
	}
	for (auto &v : w)
		v = (float)(rnd() % 100000) / 100000.0f;
	/* Every other token's outputs cancel: y(t, 1) = -y(t, 0), w1 within
	 * 2^-10 of w0, the other weights 0. The sum is then small against
	 * its terms and its fp32 rounding reaches the bf16 result, so a sum
	 * that is not fmaf in k order (a separate multiply and add) gives
	 * other bits in many values, not one in 10^5. */
	for (uint32_t t = 0; t < src.nt && c.K > 1; t += 2) {
		const size_t i0 = (size_t)t * c.K, i1 = i0 + 1;

		if (src.topk[i0] < 0 || src.topk[i1] < 0)
			continue;

		const uint8_t *y0 = &back[back_off[src.topk[i0] / L] + src.pos[i0] * l->combine_bytes];
		uint8_t *y1 = &back[back_off[src.topk[i1] / L] + src.pos[i1] * l->combine_bytes];

		for (uint32_t h = 0; h < H; h++) {
			y1[2 * h] = y0[2 * h];
			y1[2 * h + 1] = y0[2 * h + 1] ^ 0x80; /* the sign */
		}
		w[i1] = w[i0] * (1.0f + (float)(rnd() % 1024 + 1) / 1048576.0f);
		for (uint32_t k = 2; k < c.K; k++)
			w[i0 + k] = 0.0f;
	}

	uint8_t *dback = up(back);
	uint64_t *dback_off = up(back_off);
	int32_t *dtopk = up(src.topk);
	uint32_t *dpos = up(src.pos);
	float *dw = up(w);
	uint16_t *dout = up(out);

	xfer_moe_combine_reduce(l, back.data(), back_off.data(), src.nt, src.topk.data(), src.pos.data(),
				w.data(), out.data(), out_stride);
	rc = xfer_moe_combine_reduce_cuda(l, dback, dback_off, src.nt, dtopk, dpos, dw, dout, out_stride, NULL);
	ok(rc == 0 && down(dout, out.size()) == out, "combine_reduce: out equals the reference's", c.name);
	if (us)
		us[4] = time_us([&] { xfer_moe_combine_reduce_cuda(l, dback, dback_off, src.nt, dtopk, dpos, dw, dout, out_stride, NULL); });
	cudaFree(dback), cudaFree(dback_off), cudaFree(dtopk), cudaFree(dpos), cudaFree(dw), cudaFree(dout);
}

static void run_shape(const struct shape &c)
{
	std::vector<struct source> srcs(c.R);
	double us[5] = { 0 };

	rng_state = 0x9e3779b97f4a7c15ull ^ c.H ^ ((uint64_t)c.E << 20) ^ ((uint64_t)c.dtype << 40);
	for (uint32_t s = 0; s < c.R; s++) {
		struct source &src = srcs[s];

		if (c.origin_only && s != c.rank)
			continue;
		src.l = layout_of(c, s);
		/* a rank with no tokens in the uneven shapes */
		src.nt = c.routing == SKEW && c.R > 1 && s == (c.rank + 1) % c.R ? 0 : c.T;
		src.x_stride = c.H + c.skew;
		src.x.resize((size_t)src.nt * src.x_stride + 1);
		for (auto &v : src.x)
			v = rnd_bf16();
		if (s == c.rank && src.nt > 3 && c.dtype == XFER_MOE_FP8) {
			/* fp8 edge values in token 3: NaN of both signs, Inf, max */
			src.x[3 * src.x_stride + 0] = 0x7fc1;
			src.x[3 * src.x_stride + 1] = 0xffc0;
			src.x[3 * src.x_stride + 2] = 0xff80;
			src.x[3 * src.x_stride + 3] = 0x7f7f;
		}
		route_of(c, s, src.topk, src.nt);
#ifdef XFER_CUDA_EMU
		/* the other ranks' packs only feed the unpack */
		dispatch_one(c, s, src, s == c.rank, NULL);
#else
		dispatch_one(c, s, src, true, c.timed && s == c.rank ? us : NULL);
#endif
	}
	if (!c.origin_only)
		receive(c, srcs, c.timed ? us : NULL);
	reduce(c, srcs[c.rank], c.timed ? us : NULL);
	if (c.timed)
		printf("# %s: route %.1f, pack %.1f, unpack %.1f, combine_pack %.1f, combine_reduce %.1f us"
		       " (mean of 20)\n", c.name, us[0], us[1], us[2], us[3], us[4]);
}

/* An id outside -1 .. E-1: the reference refuses with -EINVAL; the kernel
 * names the lowest such slot through bad. */
static void bad_ids(void)
{
	struct shape c = { "bad ids", 4, 0, 32, 4, 256, 64, XFER_MOE_BF16, UNIFORM, 0, true, false, false };
	struct xfer_moe_layout l = layout_of(c, 0);
	std::vector<int32_t> topk;
	std::vector<uint32_t> counts(c.E), pos(c.T * c.K);
	uint32_t first = 5 * c.K + 2;

	rng_state = 1;
	route_of(c, 0, topk, c.T);
	topk[first] = (int32_t)c.E;
	topk[9 * c.K + 1] = -2;

	int32_t *dtopk = up(topk);
	uint32_t *dcounts = up(counts), *dpos = up(pos), *dbad = up(std::vector<uint32_t>(1, 0));
	int rc = xfer_moe_route_cuda(&l, dtopk, c.T, dcounts, dpos, dbad, NULL);

	ok(xfer_moe_route(&l, topk.data(), c.T, counts.data(), pos.data()) == -EINVAL && rc == 0 &&
		   down(dbad, 1)[0] == first,
	   "route refuses the first out-of-range id at the slot the reference names", c.name);
	topk[first] = 3;
	topk[9 * c.K + 1] = -1;
	CK(cudaMemcpy(dtopk, topk.data(), topk.size() * 4, cudaMemcpyHostToDevice));
	rc = xfer_moe_route_cuda(&l, dtopk, c.T, dcounts, dpos, dbad, NULL);
	ok(rc == 0 && down(dbad, 1)[0] == UINT32_MAX, "bad is UINT32_MAX when every id is valid", c.name);
	ok(xfer_moe_route_cuda(&l, dtopk, c.T + 1, dcounts, dpos, dbad, NULL) == -(int)cudaErrorInvalidValue &&
		   xfer_moe_route(&l, topk.data(), c.T + 1, counts.data(), pos.data()) == -EINVAL,
	   "more tokens than max_tokens: refused, nothing queued", c.name);
	cudaFree(dtopk), cudaFree(dcounts), cudaFree(dpos), cudaFree(dbad);
}

/* argv[1], if given: run only the shapes whose name contains it. */
int main(int argc, char **argv)
{
	int count = 0;
	cudaError_t e = cudaGetDeviceCount(&count);
	const struct shape shapes[] = {
		/* name, R, rank, E, K, H, T, dtype, routing, skew, origin_only, decode_rows, timed */
		{ "DeepSeek-V3 decode fp8 EP8", 8, 3, 256, 8, 7168, 128, XFER_MOE_FP8, UNIFORM, 0, false, false, true },
		{ "DeepSeek-V3 decode bf16 EP8", 8, 5, 256, 8, 7168, 128, XFER_MOE_BF16, HOLES, 0, false, false, true },
		{ "DeepSeek-V3 prefill fp8 EP8 (one rank)", 8, 2, 256, 8, 7168, 4096, XFER_MOE_FP8, UNIFORM, 0, true, false, false },
		{ "V2-Lite fp8 EP4, -1 slots", 4, 1, 64, 6, 2048, 128, XFER_MOE_FP8, HOLES, 0, false, true, false },
		{ "V2-Lite bf16 EP4, uneven", 4, 0, 64, 6, 2048, 128, XFER_MOE_BF16, SKEW, 0, false, true, false },
		{ "fp8 H 640 EP2, unaligned", 2, 1, 6, 4, 640, 37, XFER_MOE_FP8, HOLES, 4, false, false, false },
		{ "fp8 H 384 EP3, odd offsets", 3, 2, 9, 3, 384, 50, XFER_MOE_FP8, UNIFORM, 3, false, true, false },
		{ "bf16 H 136 EP3, odd offsets", 3, 1, 9, 3, 136, 50, XFER_MOE_BF16, HOLES, 1, false, false, false },
		{ "bf16 H 256 EP4, a rank that receives nothing", 4, 2, 16, 4, 256, 40, XFER_MOE_BF16, SKEW, 0, false, true, false },
		{ "bf16 H 64 EP2, 300 tokens", 2, 0, 16, 6, 64, 300, XFER_MOE_BF16, HOLES, 0, false, false, false },
		{ "bf16 H 72 EP1, uneven", 1, 0, 4, 4, 72, 33, XFER_MOE_BF16, SKEW, 2, false, true, false },
	};

	if (e != cudaSuccess || count == 0) {
		printf("SKIP: no usable GPU (cuda error %d: %s)\n", (int)e, cudaGetErrorString(e));
		return 77;
	}
	for (auto c : shapes) {
		if (argc > 1 && !strstr(c.name, argv[1]))
			continue;
#ifdef XFER_CUDA_EMU
		/* tests/gpu/emu.sh runs every CUDA thread as a fiber on the CPU:
		 * the same geometry with fewer tokens (still more than one
		 * chunk of route's scan), no timing */
		if (c.origin_only)
			continue;
		if (c.H > 1024)
			c.T = c.T < 72 ? c.T : 72;
		c.timed = false;
#endif
		run_shape(c);
	}
	if (argc < 2 || strstr("bad ids", argv[1]))
		bad_ids();
	printf("1..%d\n", n_tests);
	return failed ? 1 : 0;
}
