// Compiled (not run) by TestLtMatchesHeader: lt.c's and shim.h's copies of cuBLASLt's types
// and enum values agree with cublasLt.h.
#include <cublasLt.h>
#include <stddef.h>
#include "../lt.c"

_Static_assert(sizeof(lf_lt_algo) == sizeof(cublasLtMatmulAlgo_t), "algo size");
_Static_assert(sizeof(lf_lt_result) == sizeof(cublasLtMatmulHeuristicResult_t), "result size");
_Static_assert(offsetof(lf_lt_result, workspace) == offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize), "workspace");
_Static_assert(offsetof(lf_lt_result, state) == offsetof(cublasLtMatmulHeuristicResult_t, state), "state");
_Static_assert((int)LT_OP_N == (int)CUBLAS_OP_N && (int)LT_OP_T == (int)CUBLAS_OP_T, "ops");
_Static_assert((int)LT_R_32F == (int)CUDA_R_32F && (int)LT_R_16BF == (int)CUDA_R_16BF && (int)LT_COMPUTE_32F == (int)CUBLAS_COMPUTE_32F, "types");
_Static_assert((int)LT_DESC_TRANSA == (int)CUBLASLT_MATMUL_DESC_TRANSA && (int)LT_DESC_TRANSB == (int)CUBLASLT_MATMUL_DESC_TRANSB, "desc");
_Static_assert((int)LT_PREF_MAX_WORKSPACE == (int)CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, "preference");
_Static_assert((int)LT_CAP_SPLITK == (int)CUBLASLT_ALGO_CAP_SPLITK_SUPPORT && (int)LT_CAP_REDUCTION == (int)CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, "capabilities");
_Static_assert((int)LT_CONFIG_SPLITK == (int)CUBLASLT_ALGO_CONFIG_SPLITK_NUM && (int)LT_CONFIG_REDUCTION == (int)CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, "configuration");
_Static_assert((int)LT_REDUCE_INPLACE == (int)CUBLASLT_REDUCTION_SCHEME_INPLACE && (int)LT_REDUCE_COMPUTE == (int)CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE &&
                   (int)LT_REDUCE_OUTPUT == (int)CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE, "reduction schemes");
