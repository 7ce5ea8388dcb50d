//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#cgo CFLAGS: -I/usr/local/cuda/include -I/usr/include
#include <cuda.h>

static int lf_alloc_host(void **p, size_t n) { return (int)cuMemAllocHost(p, n); }
static const char *lf_error_name(int rc) {
	const char *s = 0;
	if (cuGetErrorName((CUresult)rc, &s) != CUDA_SUCCESS || !s) {
		return "unknown CUDA error";
	}
	return s;
}
static int lf_max_dynamic_smem(CUfunction f, int n) {
	return (int)cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, n);
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"
)

// The few driver calls gorgonia.org/cu v0.9.6 lacks.

// allocHost returns n bytes of page-locked host memory (cuMemAllocHost), which asynchronous
// copies need; free it with cu.MemFreeHost.
func allocHost(n int) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if rc := C.lf_alloc_host(&p, C.size_t(n)); rc != 0 {
		return nil, fmt.Errorf("cuda: cuMemAllocHost(%d): %w", n, driverError(rc))
	}
	return p, nil
}

// allowSharedMemory lets fn use up to n bytes of dynamic shared memory (above the 48 KiB
// that needs no opt-in).
func allowSharedMemory(fn cu.Function, n int) error {
	// cu.Function is a struct holding only the CUfunction handle.
	f := *(*C.CUfunction)(unsafe.Pointer(&fn))
	if rc := C.lf_max_dynamic_smem(f, C.int(n)); rc != 0 {
		return fmt.Errorf("cuda: cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, %d): %w", n, driverError(rc))
	}
	return nil
}

// driverError names a CUresult.
func driverError(rc C.int) error {
	return fmt.Errorf("%s (%d)", C.GoString(C.lf_error_name(rc)), int(rc))
}

// streamHandle is the CUstream behind s, for cuBLAS.
func streamHandle(s cu.Stream) uintptr { return uintptr(unsafe.Pointer(s.C())) }
