// SPDX-License-Identifier: MIT
/*
 * kernels/quant_fp8.cu against the C reference xfer_ws_quant_fp8(), bit for
 * bit (codes and scales): random data in odd shapes with a row stride (the
 * scalar kernel) and in shapes with partial blocks that the vector kernel
 * takes, edge blocks (zeros, bf16 subnormals, +-max, NaN, Inf), and an
 * expert-sized matrix, whose throughput (mean of 20 launches) is printed:
 * the input for xfer-weightsync's --xform-gbs. TAP output;
 * exit 77 when there is no usable GPU (no driver: cudart error 34/35,
 * no device: 100).
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "xfer_weightsync.h"
#include "quant_fp8.h"

static int n, failed;

static void ok(bool c, const char *what)
{
	printf("%sok %d - %s\n", c ? "" : "not ", ++n, what);
	failed += !c;
}

static uint16_t bf16_of(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return (uint16_t)(u >> 16);
}

/* Quantise on the GPU and on the CPU; 1 if every code and scale matches.
 * With gbs, the kernel is launched 20 times and the mean rate returned. */
static bool same(const std::vector<uint16_t> &src, size_t rows, size_t cols, size_t ld, double *gbs)
{
	size_t ns = ((rows + 127) / 128) * ((cols + 127) / 128);
	std::vector<uint8_t> q(rows * cols), qr(rows * cols);
	std::vector<float> s(ns), sr(ns);
	uint16_t *dsrc;
	uint8_t *dq;
	float *ds, ms = 0;
	cudaEvent_t a, b;
	bool good;

	cudaMalloc(&dsrc, src.size() * 2);
	cudaMalloc(&dq, rows * cols);
	cudaMalloc(&ds, ns * 4);
	cudaMemcpy(dsrc, src.data(), src.size() * 2, cudaMemcpyHostToDevice);
	cudaEventCreate(&a);
	cudaEventCreate(&b);
	good = xfer_ws_quant_fp8_cuda(dsrc, rows, cols, ld, dq, cols, ds, 0) == 0;
	good = good && cudaDeviceSynchronize() == cudaSuccess;
	if (gbs) {
		const int reps = 20;

		cudaEventRecord(a);
		for (int i = 0; i < reps; i++)
			good = good && xfer_ws_quant_fp8_cuda(dsrc, rows, cols, ld, dq, cols, ds, 0) == 0;
		cudaEventRecord(b);
		good = good && cudaDeviceSynchronize() == cudaSuccess;
		cudaEventElapsedTime(&ms, a, b);
		*gbs = ms > 0 ? reps * rows * cols * 2 / (ms * 1e-3) / 1e9 : 0;
	}
	cudaMemcpy(q.data(), dq, rows * cols, cudaMemcpyDeviceToHost);
	cudaMemcpy(s.data(), ds, ns * 4, cudaMemcpyDeviceToHost);
	cudaFree(dsrc);
	cudaFree(dq);
	cudaFree(ds);
	xfer_ws_quant_fp8(src.data(), rows, cols, ld, qr.data(), cols, sr.data());
	return good && q == qr && !memcmp(s.data(), sr.data(), ns * 4);
}

int main()
{
	int count = 0;
	cudaError_t e = cudaGetDeviceCount(&count);
	uint32_t seed = 7;
	double gbs = 0;
	char line[160];

	if (e != cudaSuccess || count == 0) {
		printf("SKIP: no usable GPU (cuda error %d: %s)\n", (int)e, cudaGetErrorString(e));
		return 77;
	}
	{
		size_t rows = 300, cols = 257, ld = 263;
		std::vector<uint16_t> src(rows * ld);

		for (auto &v : src) {
			seed = seed * 1103515245u + 12345u;
			v = bf16_of((float)((int)(seed >> 8) % 2000 - 1000) / 1000.0f * (float)(1 << ((seed >> 28) & 7)));
		}
		ok(same(src, rows, cols, ld, NULL), "random 300x257, stride 263: codes and scales bit-exact");
	}
	{
		size_t rows = 300, cols = 264, ld = 272; /* vector kernel, partial blocks both ways */
		std::vector<uint16_t> src(rows * ld);

		for (auto &v : src) {
			seed = seed * 1103515245u + 12345u;
			v = bf16_of((float)((int)(seed >> 8) % 2000 - 1000) / 1000.0f * (float)(1 << ((seed >> 28) & 7)));
		}
		ok(same(src, rows, cols, ld, NULL), "random 300x264, stride 272 (vector kernel): bit-exact");
	}
	{
		std::vector<uint16_t> src(4 * 128 * 128, 0);

		for (int j = 0; j < 128; j++) {
			src[128 * 128 + j] = 0x0001 + j;                 /* bf16 subnormals */
			src[2 * 128 * 128 + j] = j & 1 ? 0x7f7f : 0xff7f; /* +-max */
		}
		src[3 * 128 * 128 + 5] = 0x7fc0; /* NaN */
		src[3 * 128 * 128 + 6] = 0xff80; /* -Inf */
		src[3 * 128 * 128 + 7] = bf16_of(3.0f);
		ok(same(src, 4 * 128, 128, 128, NULL), "zero, subnormal, max, NaN/Inf blocks bit-exact");
	}
	{
		size_t rows = 7168, cols = 2048; /* an expert's down_proj */
		std::vector<uint16_t> src(rows * cols);

		for (auto &v : src) {
			seed = seed * 1103515245u + 12345u;
			v = (uint16_t)(seed >> 16) & 0xbfff; /* finite values of any magnitude */
		}
		same(src, rows, cols, cols, NULL); /* warm-up */
		ok(same(src, rows, cols, cols, &gbs), "7168x2048 (expert down_proj) bit-exact");
		snprintf(line, sizeof(line), "# quantisation (vector kernel): %.1f GB/s of bf16 input", gbs);
		puts(line);
		/* the same rows one element narrower than their stride: scalar kernel */
		ok(same(src, rows, cols - 1, cols, &gbs), "7168x2047, stride 2048 (scalar kernel) bit-exact");
		snprintf(line, sizeof(line), "# quantisation (scalar kernel): %.1f GB/s of bf16 input", gbs);
		puts(line);
	}
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
