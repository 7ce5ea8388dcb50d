// The CUDA that the kernels use, on the CPU (emu.go): each CUDA thread of a block is a fiber
// (ucontext) on the calling thread, switched at __syncthreads and warp shuffles; blocks run
// one after another. Included before the kernel files, in place of CUDA's headers.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#define LORAFLEET_EMU 1
#define __global__
#define __device__
#define __forceinline__ inline
// One block runs at a time: a static is the block's shared memory. They all lie in one section,
// which emu_launch fills before each block (with 0xff bytes or zeros): on a GPU a block's
// shared memory starts with whatever was there, and a kernel reading what none of its block's
// threads wrote must not find the last block's value.
#define __shared__ static __attribute__((section("emu_shared")))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __restrict__ __restrict

struct dim3 {
	unsigned x, y, z;
};
typedef dim3 uint3;
// The running fiber's coordinates, set by the scheduler before it switches to the fiber.
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
extern unsigned char *emu_dyn_smem;
#define DYNAMIC_SHARED(t, name) t *name = (t *)emu_dyn_smem

struct __nv_bfloat16 {
	uint16_t x;
};
inline float __bfloat162float(__nv_bfloat16 b) {
	uint32_t u = (uint32_t)b.x << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) { // round to nearest even, NaN kept
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40)};
	}
	u += 0x7fffu + ((u >> 16) & 1);
	return __nv_bfloat16{(uint16_t)(u >> 16)};
}
struct alignas(16) uint4 {
	unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
struct alignas(8) float2 {
	float x, y;
};
struct alignas(16) float4 {
	float x, y, z, w;
};
inline float __int_as_float(int i) {
	float f;
	memcpy(&f, &i, 4);
	return f;
}
inline float __uint_as_float(unsigned i) {
	float f;
	memcpy(&f, &i, 4);
	return f;
}
inline unsigned __float_as_uint(float f) {
	unsigned i;
	memcpy(&i, &f, 4);
	return i;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

// __syncthreads names its place in the source, so that threads of a block waiting at two
// different ones (undefined on a GPU: compute-sanitizer's synccheck reports it) are an error.
#define EMU_STR2(x) #x
#define EMU_STR(x) EMU_STR2(x)
#define __syncthreads() emu_syncthreads(__FILE__ ":" EMU_STR(__LINE__))
void emu_syncthreads(const char *site);
// emu_shfl returns v of lane src of the calling warp (every lane of the warp takes part).
uint64_t emu_shfl(uint64_t v, int src);
template <class T> T emu_shfl_as(T v, int src) {
	static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
	uint64_t b = 0;
	memcpy(&b, &v, sizeof(T));
	b = emu_shfl(b, src);
	T out;
	memcpy(&out, &b, sizeof(T));
	return out;
}
// Atomics, fences and cache hints: one thread runs at a time, and memory is the host's. The
// first block of a launch to reach an atomic waits there while the launch's other blocks run
// to their end (emu_atomic), as a GPU may hold it back.
void emu_atomic();
inline int atomicAdd(int *p, int v) {
	int old = *p;
	*p += v;
	emu_atomic();
	return old;
}
inline void __threadfence() {}
inline float __ldcg(const float *p) { return *p; }
inline uint4 __ldcs(const uint4 *p) { return *p; }
inline uint4 __ldg(const uint4 *p) { return *p; }
// A trapping thread fails the launch, as the GPU does.
void __trap();

// d += a·b for the warp's 16×16 a and 16×8 b in bf16, as mma.sync.aligned.m16n8k16.row.col
// .f32.bf16.bf16.f32 (common.cuh), each lane holding its fragments in PTX's layout (every lane
// of the warp takes part).
void mma_bf16(float d[4], const unsigned a[4], const unsigned b[2]);

void emu_full_mask(unsigned mask); // the kernels shuffle with every lane; others are not emulated
template <class T> T __shfl_xor_sync(unsigned mask, T v, int o) {
	emu_full_mask(mask);
	return emu_shfl_as(v, (threadIdx.x & 31) ^ o);
}
template <class T> T __shfl_sync(unsigned mask, T v, int src) {
	emu_full_mask(mask);
	return emu_shfl_as(v, src & 31);
}
template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned d) {
	emu_full_mask(mask);
	int lane = threadIdx.x & 31;
	return emu_shfl_as(v, lane >= (int)d ? lane - (int)d : lane);
}
