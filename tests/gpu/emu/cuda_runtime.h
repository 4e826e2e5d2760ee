/* SPDX-License-Identifier: MIT */
/*
 * A CPU stand-in for the parts of the CUDA runtime that kernels/moe.cu and
 * tests/gpu/test_moe.cu use, so that the kernels' logic (indexing, the
 * prefix sums, the warp votes and shuffles, the barriers) runs against the
 * C references on a machine with no GPU (tests/gpu/emu.sh). It checks what
 * a kernel computes, not how fast, and not the GPU's float arithmetic: the
 * kernels' float operations are the IEEE ones the references use
 * (__fmaf_rn is fmaf, __fdiv_rn is /), so a bit-exact pass here is
 * necessary, not sufficient, for one on a GPU.
 *
 * Each CUDA thread of a block is a fiber on one OS thread; blocks run one
 * after another. A fiber starts on its own stack through makecontext and
 * swapcontext, and after that switches with _setjmp/_longjmp, which save no
 * signal mask: swapcontext's two sigprocmask calls per switch were most of
 * the run's time (tests/gpu/emu.sh builds with -U_FORTIFY_SOURCE, whose
 * longjmp check refuses a jump to another stack). One fiber at a time, picked at random,
 * runs until it reaches a barrier (__syncthreads, or the exchange inside a
 * warp vote or shuffle), so that a missing barrier shows up as a wrong
 * result instead of being hidden by one fixed order. A barrier that can
 * never be passed (threads of a block waiting at different ones, a warp
 * vote after some of the warp's lanes returned) aborts, naming the block
 * and the thread.
 *
 * Launches are rewritten by tests/gpu/emu.sh: k<<<g, b, smem, s>>>(args)
 * becomes emu::launch(g, b, smem, s, k)(args). __shared__ becomes static:
 * blocks never overlap, so a static is one block's shared memory.
 */
#ifndef XFER_CUDA_EMU_H
#define XFER_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#define XFER_CUDA_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

typedef enum cudaError {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
} cudaError_t;
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event { int unused; } *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };

struct uint2 { uint32_t x, y; };
struct uint4 { uint32_t x, y, z, w; };
static inline uint2 make_uint2(uint32_t x, uint32_t y) { return uint2{ x, y }; }
static inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return uint4{ x, y, z, w }; }
struct uint3 { unsigned x, y, z; };
struct dim3 {
	unsigned x, y, z;
	dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
enum { RUN, WAIT_BLOCK, WAIT_WARP, DONE };
struct fiber {
	ucontext_t ctx; /* its first entry */
	jmp_buf jb;     /* where it waits */
	bool started;
	int state;
};
struct block_state {
	ucontext_t sched;
	jmp_buf sched_jb;
	std::vector<fiber> f;
	std::vector<char> stacks;
	std::vector<uint64_t> xchg; /* one word per thread for the warp exchanges */
	std::vector<unsigned> order; /* the runnable fibers */
	fiber *cur;
	const std::function<void()> *body;
	uint64_t seed;
};
inline block_state &bs()
{
	static block_state b;
	return b;
}
} // namespace emu

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

namespace emu {
static const size_t STACK = 64 * 1024;

inline void yield(int st)
{
	block_state &b = bs();
	fiber *me = b.cur;

	me->state = st;
	if (!_setjmp(me->jb))
		_longjmp(b.sched_jb, 1);
}

inline void entry()
{
	(*bs().body)();
	yield(DONE);
}

inline void die(const char *why, unsigned i)
{
	fprintf(stderr, "cuda emu: block (%u, %u): %s (thread %u)\n", blockIdx.x, blockIdx.y, why, i);
	abort();
}

inline void shuffle(std::vector<unsigned> &v)
{
	block_state &b = bs();

	for (size_t j = v.size(); j > 1; j--) {
		b.seed = b.seed * 6364136223846793005ull + 1442695040888963407ull;
		std::swap(v[j - 1], v[(b.seed >> 33) % j]);
	}
}

/* getcontext returns twice in principle (never here: makecontext replaces
 * where it resumes), so it lives apart from the scheduler's locals. */
__attribute__((noinline)) inline void fiber_init(fiber &f, char *stack)
{
	getcontext(&f.ctx);
	f.ctx.uc_stack.ss_sp = stack;
	f.ctx.uc_stack.ss_size = STACK;
	f.ctx.uc_link = NULL;
	makecontext(&f.ctx, entry, 0);
	f.started = false;
	f.state = RUN;
}

/* Run fiber f until it yields. Its own frame, so that the scheduler's
 * locals are never live across the _setjmp. */
__attribute__((noinline)) inline void resume(block_state &b, fiber &f)
{
	if (_setjmp(b.sched_jb))
		return;
	if (f.started)
		_longjmp(f.jb, 1);
	f.started = true;
	swapcontext(&b.sched, &f.ctx);
}

/* One block. A runnable fiber runs to its next barrier, one at a time,
 * picked so that many interleavings the barriers allow happen: a warp
 * whose lanes all reached a vote goes on, and may write shared memory,
 * before another warp has read what it wrote last time -- which is how a
 * missing barrier shows. A vote opens when every lane of the warp waits at
 * it, __syncthreads when every thread that has not returned does. */
inline void run_block(unsigned nthreads)
{
	block_state &b = bs();
	std::vector<unsigned> &runnable = b.order;
	unsigned nwarps = (nthreads + 31) / 32, done = 0, at_block = 0;
	std::vector<unsigned> at_warp(nwarps, 0), done_warp(nwarps, 0);
	bool ahead;

	b.seed = b.seed * 6364136223846793005ull + 1442695040888963407ull;
	ahead = (b.seed >> 40) % 3 != 0;

	runnable.resize(nthreads);
	for (unsigned i = 0; i < nthreads; i++) {
		fiber_init(b.f[i], &b.stacks[(size_t)i * STACK]);
		runnable[i] = i;
	}
	shuffle(runnable);
	while (done < nthreads) {
		unsigned pick, i, w, lanes;

		if (runnable.empty())
			for (unsigned j = 0; j < nthreads; j++)
				if (b.f[j].state == WAIT_WARP)
					die("a warp waits at a vote or shuffle while other threads wait at __syncthreads", j);
		/* in two blocks of three the fiber released last, so that a
		 * warp runs ahead of the others through its votes (warps do
		 * drift apart on a GPU); else any */
		b.seed = b.seed * 6364136223846793005ull + 1442695040888963407ull;
		pick = ahead ? (unsigned)runnable.size() - 1 : (unsigned)((b.seed >> 33) % runnable.size());
		i = runnable[pick];
		runnable[pick] = runnable.back();
		runnable.pop_back();
		b.cur = &b.f[i];
		threadIdx = uint3{ i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y) };
		resume(b, b.f[i]);

		w = i / 32;
		lanes = nthreads - w * 32 < 32 ? nthreads - w * 32 : 32;
		switch (b.f[i].state) {
		case WAIT_WARP:
			if (done_warp[w])
				die("a warp vote or shuffle after some of its lanes returned", i);
			if (++at_warp[w] == lanes) {
				at_warp[w] = 0;
				for (unsigned l = 0; l < lanes; l++) {
					b.f[w * 32 + l].state = RUN;
					runnable.push_back(w * 32 + l);
				}
			}
			break;
		case DONE:
			done++;
			done_warp[w]++;
			if (at_warp[w])
				die("a lane returned while the others of its warp wait at a vote or shuffle", i);
			break;
		case WAIT_BLOCK:
			at_block++;
			break;
		}
		if (at_block && at_block + done == nthreads) {
			at_block = 0;
			for (unsigned j = 0; j < nthreads; j++)
				if (b.f[j].state == WAIT_BLOCK) {
					b.f[j].state = RUN;
					runnable.push_back(j);
				}
			shuffle(runnable); /* any warp may be the one ahead */
		}
	}
}

inline void run(dim3 g, dim3 blk, const std::function<void()> &body)
{
	block_state &b = bs();
	unsigned nthreads = blk.x * blk.y * blk.z;

	if (!nthreads || nthreads > 1024 || !g.x || !g.y || !g.z)
		die("bad launch configuration", nthreads);
	b.f.resize(nthreads);
	b.stacks.resize((size_t)nthreads * STACK);
	b.xchg.assign(nthreads, 0);
	b.body = &body;
	gridDim = g;
	blockDim = blk;
	for (unsigned z = 0; z < g.z; z++)
		for (unsigned y = 0; y < g.y; y++)
			for (unsigned x = 0; x < g.x; x++) {
				blockIdx = uint3{ x, y, z };
				run_block(nthreads);
			}
}

template <typename... P> struct launcher {
	dim3 g, b;
	void (*k)(P...);

	template <typename... A> void operator()(A... a) const
	{
		std::function<void()> body = [&] { k(a...); };

		run(g, b, body);
	}
};

template <typename... P>
launcher<P...> launch(dim3 g, dim3 b, size_t, cudaStream_t, void (*k)(P...))
{
	return launcher<P...>{ g, b, k };
}

inline unsigned tid()
{
	return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

/* Every lane publishes v, then reads lane src's. */
inline uint64_t exchange(uint64_t v, unsigned src_lane)
{
	block_state &b = bs();
	unsigned me = tid(), base = me - me % 32;
	uint64_t r;

	b.xchg[me] = v;
	yield(WAIT_WARP);
	r = base + src_lane < b.xchg.size() ? b.xchg[base + src_lane] : v;
	yield(WAIT_WARP); /* nobody overwrites a word before every lane read it */
	return r;
}
} // namespace emu

static inline void __syncthreads(void)
{
	emu::yield(emu::WAIT_BLOCK);
}

static inline unsigned __ballot_sync(unsigned mask, int pred)
{
	emu::block_state &b = emu::bs();
	unsigned me = emu::tid(), base = me - me % 32, r = 0;

	(void)mask;
	b.xchg[me] = pred != 0;
	emu::yield(emu::WAIT_WARP);
	for (unsigned l = 0; l < 32 && base + l < b.xchg.size(); l++)
		r |= (b.xchg[base + l] ? 1u : 0u) << l;
	emu::yield(emu::WAIT_WARP);
	return r;
}

template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
	uint64_t u = 0;
	T r;

	(void)mask;
	static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
	memcpy(&u, &v, sizeof(T));
	u = emu::exchange(u, (emu::tid() % 32) ^ (unsigned)lane_mask);
	memcpy(&r, &u, sizeof(T));
	return r;
}

static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
template <typename T> static inline T __ldg(const T *p) { return *p; }
/* Fibers never run at once: a plain read-modify-write is atomic. */
static inline unsigned atomicAdd(unsigned *p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
static inline unsigned atomicMin(unsigned *p, unsigned v) { unsigned o = *p; *p = v < o ? v : o; return o; }

static inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
static inline const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
template <typename T> static inline cudaError_t cudaMalloc(T **p, size_t n)
{
	*p = (T *)malloc(n ? n : 1);
	return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaFree(const void *p) { free((void *)p); return cudaSuccess; }
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) { memcpy(d, s, n); return cudaSuccess; }
static inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { memset(p, v, n); return cudaSuccess; }
static inline cudaError_t cudaEventCreate(cudaEvent_t *e) { static emu_event ev; *e = &ev; return cudaSuccess; }
static inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = NULL) { return cudaSuccess; }
static inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
static inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t) { *ms = 0; return cudaSuccess; }
static inline cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }

#endif
