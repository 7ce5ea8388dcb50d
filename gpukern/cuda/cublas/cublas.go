// Package cublas calls cuBLAS, opened with dlopen so that one binary runs with CUDA 11.x to
// 13.x and builds where CUDA is absent (linking -lcublas would pin one soname). Like
// gpukern/cuda/nvrtc it does not import gorgonia.org/cu, whose init exits without a GPU.
//
// Device memory and streams are passed as uintptr (a CUdeviceptr and a CUstream; stream 0
// is the default stream). cuBLAS uses the CUDA context current on the calling OS thread, so
// callers lock the goroutine to the thread that made the context current.
package cublas

/*
#cgo LDFLAGS: -ldl
#include "shim.h"
#include <stdlib.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"unsafe"
)

// sonames are tried in order: the newest runtime first.
var sonames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}

var (
	openOnce sync.Once
	openErr  error
)

// ErrUnavailable is returned when no usable cuBLAS library is installed.
var ErrUnavailable = errors.New("cublas: no cuBLAS library (libcublas.so.13, .12 or .11) could be opened")

// Open loads cuBLAS; later calls return the first call's result.
func Open() error {
	openOnce.Do(func() {
		var reasons []string
		for _, name := range sonames {
			cname := C.CString(name)
			rc := C.lf_cublas_open(cname)
			C.free(unsafe.Pointer(cname))
			switch rc {
			case 0:
				return
			case -2:
				reasons = append(reasons, name+": lacks cublasCreate_v2, cublasSetStream_v2 or cublasGemmEx")
			default:
				reasons = append(reasons, C.GoString(C.lf_cublas_dlerror()))
			}
		}
		openErr = fmt.Errorf("%w: %v", ErrUnavailable, reasons)
	})
	return openErr
}

// StatusError is a cuBLAS call that returned a status other than CUBLAS_STATUS_SUCCESS.
type StatusError struct {
	Op   string // the cuBLAS function, e.g. "cublasGemmEx"
	Code int    // its cublasStatus_t
}

var statusNames = map[int]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

func (e *StatusError) Error() string {
	if name, ok := statusNames[e.Code]; ok {
		return fmt.Sprintf("cublas: %s: %s (%d)", e.Op, name, e.Code)
	}
	return fmt.Sprintf("cublas: %s: status %d", e.Op, e.Code)
}

func status(op string, rc C.int) error {
	if rc == 0 {
		return nil
	}
	return &StatusError{Op: op, Code: int(rc)}
}

// Handle is a cuBLAS handle, bound to the CUDA context current when it was created.
type Handle struct {
	h unsafe.Pointer // cublasHandle_t; nil once destroyed
}

var errNoHandle = errors.New("cublas: nil or destroyed handle")

// Create makes a handle (cublasCreate_v2). It needs a current CUDA context on the calling OS
// thread; without a GPU or driver it fails with CUBLAS_STATUS_NOT_INITIALIZED.
func Create() (*Handle, error) {
	if err := Open(); err != nil {
		return nil, err
	}
	var h unsafe.Pointer
	if err := status("cublasCreate_v2", C.lf_cublas_create(&h)); err != nil {
		return nil, err
	}
	return &Handle{h: h}, nil
}

// Destroy releases the handle (cublasDestroy_v2); using it afterwards is an error.
func (h *Handle) Destroy() error {
	if h == nil || h.h == nil {
		return errNoHandle
	}
	err := status("cublasDestroy_v2", C.lf_cublas_destroy(h.h))
	h.h = nil
	return err
}

// SetStream makes later calls on h run on stream (cublasSetStream_v2). cuBLAS then reverts to
// its default workspace, so call SetWorkspace after it.
func (h *Handle) SetStream(stream uintptr) error {
	if h == nil || h.h == nil {
		return errNoHandle
	}
	return status("cublasSetStream_v2", C.lf_cublas_set_stream(h.h, C.uintptr_t(stream)))
}

// SetWorkspace gives cuBLAS bytes of device memory at ptr as its workspace
// (cublasSetWorkspace_v2), so that it does not allocate its own, which would break CUDA graph
// capture. It does nothing where cuBLAS predates the call.
func (h *Handle) SetWorkspace(ptr uintptr, bytes int64) error {
	if h == nil || h.h == nil {
		return errNoHandle
	}
	if bytes < 0 {
		return fmt.Errorf("cublas: negative workspace size %d", bytes)
	}
	if C.lf_cublas_has_set_workspace() == 0 {
		return nil
	}
	return status("cublasSetWorkspace_v2", C.lf_cublas_set_workspace(h.h, C.uintptr_t(ptr), C.size_t(bytes)))
}

// MatMulBF16 computes row-major out[m,n] (fp32) = x[m,k] (bf16) · w[n,k]ᵀ (bf16), accumulating
// in fp32, with cublasGemmEx on h's stream. out is overwritten, or added to when accumulate.
// The call is asynchronous: it returns once the work is queued.
func (h *Handle) MatMulBF16(out, x, w uintptr, m, n, k int, accumulate bool) error {
	// Checked here because cuBLAS would read or write through bad arguments, not reject them.
	if m <= 0 || n <= 0 || k <= 0 || m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 {
		return fmt.Errorf("cublas: MatMulBF16: bad shape m=%d n=%d k=%d", m, n, k)
	}
	if out == 0 || x == 0 || w == 0 {
		return fmt.Errorf("cublas: MatMulBF16: null device pointer (out=%#x x=%#x w=%#x)", out, x, w)
	}
	if h == nil || h.h == nil {
		return errNoHandle
	}
	var beta C.float
	if accumulate {
		beta = 1
	}
	rc := C.lf_cublas_matmul_bf16(h.h, C.uintptr_t(out), C.uintptr_t(x), C.uintptr_t(w), C.int(m), C.int(n), C.int(k), beta)
	return status("cublasGemmEx", rc)
}
