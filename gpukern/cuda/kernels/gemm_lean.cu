// nvrtc-options: --maxrregcount=112
// gemm_small's kernels of batch bounds 16 and 32 held to 112 registers, so that an SM holds
// two of their blocks and a LoRA block of 128 threads beside them (each of an SM's four parts
// has 16,384 registers: the two blocks' four warps of 112 and the LoRA block's one of 64),
// where gemm_small's 128 fill it (SetLeanGEMM). Launch bounds can only say it by warps of one
// size, which caps them at 96 (a ninth warp a block) and spills; the register cap is an option
// of the whole compile, hence a file of their own (the first line's options, kernels.Sources),
// and ptxas ignores it for a kernel with launch bounds, hence none.
#include "gemm.cuh"

extern "C" __global__ void gemm_lean_m16(GEMM_PARAMS) {
	gemm_small<2, 2>(GEMM_ARGS);
}
extern "C" __global__ void gemm_lean_m32(GEMM_PARAMS) {
	gemm_small<4, 2>(GEMM_ARGS);
}
