//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#cgo CFLAGS: -I/usr/local/cuda/include -I/usr/include
#include <cuda.h>
#include <stdint.h>

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

// Stream capture into a CUDA graph. Thread-local mode: only this thread's calls are checked,
// so another goroutine's driver calls (on another OS thread) do not break a capture.
static int lf_begin_capture(uintptr_t s) {
	return (int)cuStreamBeginCapture((CUstream)s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
}
static int lf_end_capture(uintptr_t s, uintptr_t *exec) {
	CUgraph g = 0;
	CUgraphExec e = 0;
	int rc = (int)cuStreamEndCapture((CUstream)s, &g);
	if (rc == 0) {
		rc = (int)cuGraphInstantiateWithFlags(&e, g, 0);
	}
	if (g) {
		cuGraphDestroy(g);
	}
	*exec = (uintptr_t)e;
	return rc;
}
static int lf_graph_launch(uintptr_t e, uintptr_t s) { return (int)cuGraphLaunch((CUgraphExec)e, (CUstream)s); }
static void lf_graph_free(uintptr_t e) { cuGraphExecDestroy((CUgraphExec)e); }
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

// beginCapture starts recording the launches queued on stream into a graph.
func beginCapture(stream uintptr) error {
	if rc := C.lf_begin_capture(C.uintptr_t(stream)); rc != 0 {
		return fmt.Errorf("cuda: cuStreamBeginCapture: %w", driverError(rc))
	}
	return nil
}

// endCapture ends the capture begun on stream and instantiates the graph (cuGraphExec).
func endCapture(stream uintptr) (uintptr, error) {
	var exec C.uintptr_t
	if rc := C.lf_end_capture(C.uintptr_t(stream), &exec); rc != 0 {
		return 0, fmt.Errorf("cuda: capturing a graph: %w", driverError(rc))
	}
	return uintptr(exec), nil
}

// launchGraph queues an instantiated graph on stream.
func launchGraph(exec, stream uintptr) error {
	if rc := C.lf_graph_launch(C.uintptr_t(exec), C.uintptr_t(stream)); rc != 0 {
		return fmt.Errorf("cuda: cuGraphLaunch: %w", driverError(rc))
	}
	return nil
}

// freeGraph destroys an instantiated graph.
func freeGraph(exec uintptr) { C.lf_graph_free(C.uintptr_t(exec)) }

// streamHandle is the CUstream behind s, for cuBLAS.
func streamHandle(s cu.Stream) uintptr { return uintptr(unsafe.Pointer(s.C())) }
