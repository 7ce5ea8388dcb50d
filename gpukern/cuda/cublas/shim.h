#include <stddef.h>
#include <stdint.h>

// lf_dlopen_syms opens the library at path into *lib (once: an open one is kept) and looks
// each of the n names up into *syms[i]: 0, or -1 where it does not open, -2 where a name is
// missing (the library is closed again).
int lf_dlopen_syms(const char *path, void **lib, const char *const names[], void **syms[], int n);
int lf_cublas_open(const char *path);
const char *lf_cublas_dlerror(void);
int lf_cublas_create(void **handle);
int lf_cublas_destroy(void *handle);
int lf_cublas_set_stream(void *handle, uintptr_t stream);
int lf_cublas_has_set_workspace(void);
int lf_cublas_set_workspace(void *handle, uintptr_t ptr, size_t bytes);
int lf_cublas_matmul_bf16(void *handle, uintptr_t out, uintptr_t x, uintptr_t w, int m, int n, int k, float beta);

// cuBLASLt's algorithm descriptor and heuristic result, laid out as cublasLt.h's
// cublasLtMatmulAlgo_t and cublasLtMatmulHeuristicResult_t (testdata/ltcheck.c checks).
typedef struct {
	uint64_t data[8];
} lf_lt_algo;
typedef struct {
	lf_lt_algo algo;
	size_t workspace;
	int state;
	float waves;
	int reserved[4];
} lf_lt_result;
// One GEMM shape's cuBLASLt descriptors: the operation and the layouts of w, x and out.
typedef struct {
	void *desc, *a, *b, *c;
} lf_lt_plan;

int lf_cublaslt_open(const char *path);
int lf_cublaslt_create(void **lt);
int lf_cublaslt_destroy(void *lt);
int lf_cublaslt_plan(lf_lt_plan *p, int m, int n, int k);
void lf_cublaslt_plan_destroy(lf_lt_plan *p);
int lf_cublaslt_algos(void *lt, const lf_lt_plan *p, size_t workspace, lf_lt_result *res, int max, int *count);
int lf_cublaslt_splitk(void *lt, const lf_lt_plan *p, const lf_lt_algo *algo, int splits, size_t workspace,
                       lf_lt_algo *out);
int lf_cublaslt_matmul(void *lt, const lf_lt_plan *p, const lf_lt_algo *algo, uintptr_t out, uintptr_t x, uintptr_t w,
                       float beta, uintptr_t workspace, size_t bytes, uintptr_t stream);
