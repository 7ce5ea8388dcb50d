// A thin dlopen shim over cuBLAS, so that one binary works with whichever CUDA runtime a
// machine has (cuBLAS's soname carries its major version) and builds without cuBLAS at all.
// The types are declared here rather than taken from cublas_api.h, so no headers are needed:
// cublasHandle_t and cudaStream_t are pointers, the enums ints.
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include "shim.h"

typedef int (*create_fn)(void **);
typedef int (*destroy_fn)(void *);
typedef int (*set_stream_fn)(void *, void *);
typedef int (*set_workspace_fn)(void *, void *, size_t);
typedef int (*gemm_ex_fn)(void *, int, int, int, int, int, const void *, const void *, int, int, const void *, int,
                          int, const void *, void *, int, int, int, int);

// Values of cuBLAS and CUDA enums used below (stable across cuBLAS 11 to 13).
enum {
	OP_N = 0,
	OP_T = 1,
	R_32F = 0,        // cudaDataType CUDA_R_32F
	R_16BF = 14,      // cudaDataType CUDA_R_16BF
	COMPUTE_32F = 68, // cublasComputeType_t CUBLAS_COMPUTE_32F
	GEMM_DEFAULT = -1,
};

static void *lib;
static create_fn create;
static destroy_fn destroy;
static set_stream_fn set_stream;
static set_workspace_fn set_workspace; // optional: older cuBLAS 11 releases lack it
static gemm_ex_fn gemm_ex;

int lf_dlopen_syms(const char *path, void **lib, const char *const names[], void **syms[], int n) {
	if (*lib) {
		return 0;
	}
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (!(*syms[i] = dlsym(h, names[i]))) {
			dlclose(h);
			return -2;
		}
	}
	*lib = h;
	return 0;
}

int lf_cublas_open(const char *path) {
	static const char *const names[] = {"cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasGemmEx"};
	void **syms[] = {(void **)&create, (void **)&destroy, (void **)&set_stream, (void **)&gemm_ex};
	int rc = lf_dlopen_syms(path, &lib, names, syms, 4);
	if (rc == 0 && !set_workspace) {
		set_workspace = (set_workspace_fn)dlsym(lib, "cublasSetWorkspace_v2");
	}
	return rc;
}

const char *lf_cublas_dlerror(void) { return dlerror(); }

int lf_cublas_create(void **handle) { return create(handle); }

int lf_cublas_destroy(void *handle) { return destroy(handle); }

int lf_cublas_set_stream(void *handle, uintptr_t stream) { return set_stream(handle, (void *)stream); }

int lf_cublas_has_set_workspace(void) { return set_workspace != NULL; }

int lf_cublas_set_workspace(void *handle, uintptr_t ptr, size_t bytes) {
	return set_workspace(handle, (void *)ptr, bytes);
}

// Row-major out[m,n] = x[m,k]·w[n,k]ᵀ is column-major outᵀ[n,m] = wᵀ·x with w seen as
// column-major [k,n] (transposed) and x as column-major [k,m]. alpha and beta are host floats,
// cuBLAS's default pointer mode.
int lf_cublas_matmul_bf16(void *handle, uintptr_t out, uintptr_t x, uintptr_t w, int m, int n, int k, float beta) {
	const float alpha = 1.0f;
	return gemm_ex(handle, OP_T, OP_N, n, m, k, &alpha, (const void *)w, R_16BF, k, (const void *)x, R_16BF, k,
	               &beta, (void *)out, R_32F, n, COMPUTE_32F, GEMM_DEFAULT);
}
