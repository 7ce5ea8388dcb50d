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
	"strings"
	"sync"
	"unsafe"
)

// sonames are tried in order: the newest runtime first.
var sonames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}

var (
	openOnce sync.Once
	openErr  error
	opened   string // the soname Open loaded

	ltOnce sync.Once
	ltErr  error
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
				opened = name
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

// openLt loads cuBLASLt of the cuBLAS that Open loaded (libcublasLt.so.13 beside
// libcublas.so.13); later calls return the first call's result.
func openLt() error {
	ltOnce.Do(func() {
		if ltErr = Open(); ltErr != nil {
			return
		}
		name := "libcublasLt" + strings.TrimPrefix(opened, "libcublas")
		cname := C.CString(name)
		defer C.free(unsafe.Pointer(cname))
		switch C.lf_cublaslt_open(cname) {
		case 0:
		case -2:
			ltErr = fmt.Errorf("cublas: %s lacks a cuBLASLt function the GEMMs use", name)
		default:
			ltErr = fmt.Errorf("cublas: %s", C.GoString(C.lf_cublas_dlerror()))
		}
	})
	return ltErr
}

// Handle is a cuBLAS handle, bound to the CUDA context current when it was created, with a
// cuBLASLt handle made on first use (Plan).
type Handle struct {
	h      unsafe.Pointer // cublasHandle_t; nil once destroyed
	lt     unsafe.Pointer // cublasLtHandle_t, or nil
	stream uintptr        // as SetStream and SetWorkspace set them, for cuBLASLt's calls
	ws     uintptr
	wsLen  int64
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
	if h.lt != nil {
		err = errors.Join(err, status("cublasLtDestroy", C.lf_cublaslt_destroy(h.lt)))
	}
	h.h, h.lt = nil, nil
	return err
}

// SetStream makes later calls on h run on stream (cublasSetStream_v2). cuBLAS then reverts to
// its default workspace, so call SetWorkspace after it.
func (h *Handle) SetStream(stream uintptr) error {
	if h == nil || h.h == nil {
		return errNoHandle
	}
	h.stream = stream
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
	h.ws, h.wsLen = ptr, bytes
	if C.lf_cublas_has_set_workspace() == 0 {
		return nil
	}
	return status("cublasSetWorkspace_v2", C.lf_cublas_set_workspace(h.h, C.uintptr_t(ptr), C.size_t(bytes)))
}

// checkMatMul refuses what cuBLAS would read or write through rather than reject.
func checkMatMul(op string, out, x, w uintptr, m, n, k int) error {
	if m <= 0 || n <= 0 || k <= 0 || m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 {
		return fmt.Errorf("cublas: %s: bad shape m=%d n=%d k=%d", op, m, n, k)
	}
	if out == 0 || x == 0 || w == 0 {
		return fmt.Errorf("cublas: %s: null device pointer (out=%#x x=%#x w=%#x)", op, out, x, w)
	}
	return nil
}

// MatMulBF16 computes row-major out[m,n] (fp32) = x[m,k] (bf16) · w[n,k]ᵀ (bf16), accumulating
// in fp32, with cublasGemmEx on h's stream. out is overwritten, or added to when accumulate.
// The call is asynchronous: it returns once the work is queued.
func (h *Handle) MatMulBF16(out, x, w uintptr, m, n, k int, accumulate bool) error {
	if err := checkMatMul("MatMulBF16", out, x, w, m, n, k); err != nil {
		return err
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

// Plan is one GEMM shape's cuBLASLt descriptors, for MatMulAlgo with one of the algorithms
// Handle.Plan offers. Destroy frees it.
type Plan struct {
	p       C.lf_lt_plan
	m, n, k int
}

// Algo is one of cuBLASLt's algorithms for a Plan.
type Algo struct {
	a      C.lf_lt_algo
	splits int // SplitK's parts of k; 0 for the heuristic's own configuration
}

// Splits is the number of parts SplitK cut the algorithm's k into, 0 for an algorithm as the
// heuristic offered it.
func (a *Algo) Splits() int { return a.splits }

// SplitK returns a with its k cut into splits parts (cuBLASLt's split-K: more blocks for a
// GEMM of few output tiles), the parts added in place, in fp32 or in the output type, whichever
// the algorithm supports first and cuBLASLt's check accepts for p within h's workspace; false
// where none does, or the algorithm cannot split k, or splits it that way already.
func (h *Handle) SplitK(p *Plan, a Algo, splits int) (Algo, bool) {
	if p == nil || h == nil || h.lt == nil || splits < 2 {
		return Algo{}, false
	}
	out := Algo{splits: splits}
	if C.lf_cublaslt_splitk(h.lt, &p.p, &a.a, C.int(splits), C.size_t(h.wsLen), &out.a) != 0 {
		return Algo{}, false
	}
	return out, true
}

// Plan makes the cuBLASLt descriptors of MatMulBF16's m × n × k GEMM and returns them with up
// to limit of the algorithms that cuBLASLt's heuristic offers for them within h's workspace,
// its guess of the best first. The backend times them against MatMulBF16 (cublasGemmEx's
// own pick) and keeps the fastest.
func (h *Handle) Plan(m, n, k, limit int) (*Plan, []Algo, error) {
	if m <= 0 || n <= 0 || k <= 0 || m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 || limit <= 0 || limit > 64 {
		return nil, nil, fmt.Errorf("cublas: Plan: bad shape m=%d n=%d k=%d or count %d", m, n, k, limit)
	}
	if h == nil || h.h == nil {
		return nil, nil, errNoHandle
	}
	if err := openLt(); err != nil {
		return nil, nil, err
	}
	if h.lt == nil {
		if err := status("cublasLtCreate", C.lf_cublaslt_create(&h.lt)); err != nil {
			return nil, nil, err
		}
	}
	p := &Plan{m: m, n: n, k: k}
	if err := status("cublasLtMatmulDescCreate and cublasLtMatrixLayoutCreate", C.lf_cublaslt_plan(&p.p, C.int(m), C.int(n), C.int(k))); err != nil {
		return nil, nil, err
	}
	res := make([]C.lf_lt_result, limit)
	var count C.int
	if err := status("cublasLtMatmulAlgoGetHeuristic", C.lf_cublaslt_algos(h.lt, &p.p, C.size_t(h.wsLen), &res[0], C.int(limit), &count)); err != nil {
		p.Destroy()
		return nil, nil, err
	}
	var algos []Algo
	for _, r := range res[:min(int(count), limit)] {
		if r.state == 0 && int64(r.workspace) <= h.wsLen {
			algos = append(algos, Algo{a: r.algo})
		}
	}
	return p, algos, nil
}

// Destroy frees the plan's descriptors.
func (p *Plan) Destroy() { C.lf_cublaslt_plan_destroy(&p.p) }

// MatMulAlgo computes MatMulBF16's GEMM, of p's shape, with cuBLASLt's algorithm a, on h's
// stream and in its workspace.
func (h *Handle) MatMulAlgo(p *Plan, a *Algo, out, x, w uintptr, accumulate bool) error {
	if p == nil || a == nil {
		return errors.New("cublas: MatMulAlgo: no plan or algorithm")
	}
	if err := checkMatMul("MatMulAlgo", out, x, w, p.m, p.n, p.k); err != nil {
		return err
	}
	if h == nil || h.h == nil || h.lt == nil {
		return errNoHandle
	}
	var beta C.float
	if accumulate {
		beta = 1
	}
	rc := C.lf_cublaslt_matmul(h.lt, &p.p, &a.a, C.uintptr_t(out), C.uintptr_t(x), C.uintptr_t(w), beta,
		C.uintptr_t(h.ws), C.size_t(h.wsLen), C.uintptr_t(h.stream))
	return status("cublasLtMatmul", rc)
}
