// Helpers shared by the kernel files: kernels.Sources puts this file in front of each one
// (NVRTC compiles every file as its own program).
#ifndef LORAFLEET_EMU // emu.h stands in for CUDA's headers in the CPU emulator (emu.go)
#include <cuda_bf16.h>
#endif

// DYNAMIC_SHARED declares the launch's dynamic shared memory as an array of t named name.
#ifndef DYNAMIC_SHARED
#define DYNAMIC_SHARED(t, name) extern __shared__ __align__(16) t name[]
#endif

#define NEG_INF __int_as_float(0xff800000) // NVRTC has no math.h and so no INFINITY

// NOINLINE keeps a device function out of line (g++ has no __noinline__ of CUDA's).
#ifdef LORAFLEET_EMU
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __noinline__
#endif

// x[i], plus d[i] where d is non-null: a projection's output with its LoRA delta, which the
// kernel that reads it adds (rope_write_kv, decode_split).
__device__ __forceinline__ float qkv_at(const float *x, const float *d, size_t i) {
	return d ? x[i] + d[i] : x[i];
}

// The pair of values i and i + half (rotate_half's pairs) of the head that starts at at in a
// qkv row (with its delta, qkv_at), rotated by cos c and sin s (rope_write_kv, decode_split).
__device__ __forceinline__ float2 rope_pair(const float *row, const float *drow, size_t at, int i, int half, float c, float s) {
	const float a = qkv_at(row, drow, at + i), b = qkv_at(row, drow, at + half + i);
	return {a * c - b * s, b * c + a * s};
}

// The sum of v over the warp, in every lane.
__device__ float warp_sum(float v) {
	for (int o = 16; o > 0; o >>= 1) {
		v += __shfl_xor_sync(0xffffffffu, v, o);
	}
	return v;
}

// The two bf16 values packed in a 32-bit word (the lower address in the low half), widened
// exactly to fp32.
__device__ float bf16_lo(unsigned int u) {
	return __uint_as_float(u << 16);
}
__device__ float bf16_hi(unsigned int u) {
	return __uint_as_float(u & 0xffff0000u);
}

// Programmatic dependent launch (sm_90 and later): the backend may launch a kernel while the
// kernel before it in the stream is still running (host.Step's Early). Such a kernel waits
// here until that one has finished and its writes are visible, so nothing before this call
// may read what earlier kernels wrote, or write anything: every kernel calls it first, except
// gemm_small and gemm_deep, which load their first weights before it (gemm_block). Then it
// lets the kernel after it launch early in turn: that one waits for this one's end. Launched
// the usual way, or compiled for an older GPU (or the emulator), it does nothing.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.wait;" : : : "memory");
	asm volatile("griddepcontrol.launch_dependents;" : : : "memory");
#endif
}

#ifndef LORAFLEET_EMU
// d += a·b on the tensor cores for the warp's 16×16 a and 16×8 b in bf16, accumulating in
// fp32: each lane holds its fragments in the layout of PTX's "Matrix Fragments for
// mma.m16n8k16 with floating point type" (emu.cpp spells it out).
__device__ __forceinline__ void mma_bf16(float d[4], const unsigned a[4], const unsigned b[2]) {
	asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
	    "{%0, %1, %2, %3};"
	    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// The 8 bf16 values of a 16-byte load, in address order, widened to fp32.
__device__ __forceinline__ void unpack8(float f[8], uint4 w) {
	unsigned int u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
	for (int e = 0; e < 4; e++) {
		f[2 * e] = bf16_lo(u[e]);
		f[2 * e + 1] = bf16_hi(u[e]);
	}
}
