#include <stddef.h>
#include <stdint.h>

int lf_cublas_open(const char *path);
const char *lf_cublas_dlerror(void);
int lf_cublas_create(void **handle);
int lf_cublas_destroy(void *handle);
int lf_cublas_set_stream(void *handle, uintptr_t stream);
int lf_cublas_has_set_workspace(void);
int lf_cublas_set_workspace(void *handle, uintptr_t ptr, size_t bytes);
int lf_cublas_matmul_bf16(void *handle, uintptr_t out, uintptr_t x, uintptr_t w, int m, int n, int k, float beta);
