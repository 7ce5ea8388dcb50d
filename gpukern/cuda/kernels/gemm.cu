// Decode's GEMM kernels (gemm.cuh has their code).
#include "gemm.cuh"

// One kernel per batch bound, each with the accumulators of its own tiles: with w loaded two
// steps ahead and two blocks an SM, for GEMMs of more blocks than SMs; with w three steps
// ahead and one block an SM (gemm_deep), for those of fewer, which would otherwise have fewer
// loads in flight than an SM needs to stream at the memory's bandwidth. gemm_deep's launch
// bounds name GEMM_DEEP_BOUND threads, more than it is launched with, to cap its registers at
// 168: given all 255, ptxas takes them and still spills. Each is declared on its own line,
// not by a macro: kernels.Sources finds the kernels by their declarations.
#define GEMM_DEEP_BOUND 384
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) gemm_small_m8(GEMM_PARAMS) {
	gemm_small<1, 2>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) gemm_small_m16(GEMM_PARAMS) {
	gemm_small<2, 2>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) gemm_small_m32(GEMM_PARAMS) {
	gemm_small<4, 2>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_DEEP_BOUND, 1) gemm_deep_m8(GEMM_PARAMS) {
	gemm_small<1, 3>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_DEEP_BOUND, 1) gemm_deep_m16(GEMM_PARAMS) {
	gemm_small<2, 3>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_DEEP_BOUND, 1) gemm_deep_m32(GEMM_PARAMS) {
	gemm_small<4, 3>(GEMM_ARGS);
}
