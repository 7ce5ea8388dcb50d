//go:build cuda && !cudaemu

// Package drv is the CUDA that gpukern/cuda calls: the driver API (gorgonia.org/cu and the few
// calls it lacks), cuBLAS (gpukern/cuda/cublas) and kernel modules compiled by NVRTC
// (gpukern/cuda/nvrtc). With the cudaemu build tag, the same API runs on the CPU instead
// (emu.go): device memory is host memory, kernels run in gpukern/cuda/kernels' emulator and
// GEMMs in Go, so that the backend's GPU tests run in CI on a machine without a GPU.
package drv

/*
#cgo LDFLAGS: -lcuda -ldl
#cgo CFLAGS: -I/usr/local/cuda/include -I/usr/include
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

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
		// Kernels keep the priority of the stream they were captured from (the LoRA side
		// stream's is higher) instead of taking the launch stream's; drivers before CUDA 11.7
		// refuse the flag.
		rc = (int)cuGraphInstantiateWithFlags(&e, g, CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY);
		if (rc == CUDA_ERROR_INVALID_VALUE) {
			rc = (int)cuGraphInstantiateWithFlags(&e, g, 0);
		}
	}
	if (g) {
		cuGraphDestroy(g);
	}
	*exec = (uintptr_t)e;
	return rc;
}
// cuLaunchKernelEx (CUDA 12.0 and later drivers), declared here since the headers CI builds
// with (CUDA 11.8) lack it: its structs as CUDA 12's cuda.h lays them out, with the one
// attribute used, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION (6).
typedef struct {
	int id;
	char pad[4];
	union {
		char raw[64];
		void *align;
		int allowed;
	} value;
} lf_launch_attr;
typedef struct {
	unsigned int grid[3], block[3], shared;
	CUstream stream;
	lf_launch_attr *attrs;
	unsigned int num_attrs;
} lf_launch_config;
typedef CUresult (*lf_launch_ex)(const lf_launch_config *, CUfunction, void **, void **);
static lf_launch_ex lf_launch_ex_fn;
static int lf_find_launch_ex(void) {
	void *self = dlopen(0, RTLD_LAZY); // the program and the libraries it links: libcuda among them
	lf_launch_ex_fn = self ? (lf_launch_ex)dlsym(self, "cuLaunchKernelEx") : 0;
	return lf_launch_ex_fn != 0;
}
#define LF_MAX_PARAMS 64
static int lf_launch_early(uintptr_t f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
		unsigned shared, uintptr_t stream, const uint64_t *vals, int n) {
	void *params[LF_MAX_PARAMS];
	if (!lf_launch_ex_fn || n > LF_MAX_PARAMS) {
		return CUDA_ERROR_NOT_SUPPORTED;
	}
	for (int i = 0; i < n; i++) {
		params[i] = (void *)&vals[i];
	}
	lf_launch_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.id = 6;
	attr.value.allowed = 1;
	lf_launch_config c = {{gx, gy, gz}, {bx, by, bz}, shared, (CUstream)stream, &attr, 1};
	return (int)lf_launch_ex_fn(&c, (CUfunction)f, params, 0);
}

static int lf_graph_launch(uintptr_t e, uintptr_t s) { return (int)cuGraphLaunch((CUgraphExec)e, (CUstream)s); }
static void lf_graph_free(uintptr_t e) { cuGraphExecDestroy((CUgraphExec)e); }
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/lorafleet/lorafleet/gpukern/cuda/cublas"
	"github.com/lorafleet/lorafleet/gpukern/cuda/kernels"
	"github.com/lorafleet/lorafleet/gpukern/cuda/nvrtc"
)

// The driver API as gorgonia.org/cu v0.9.6 has it.
type (
	DevicePtr = cu.DevicePtr
	Stream    = cu.Stream
	Event     = cu.Event
	Function  = cu.Function
	Module    = cu.Module
	Context   = cu.CUContext
	Device    = cu.Device
	Blas      = cublas.Handle
	BlasPlan  = cublas.Plan // a GEMM shape's cuBLASLt descriptors
	BlasAlgo  = cublas.Algo // one of cuBLASLt's algorithms for a BlasPlan
)

const (
	DefaultStream = cu.DefaultStream
	NonBlocking   = cu.NonBlocking
	DefaultEvent  = cu.DefaultEvent
	DisableTiming = cu.DisableTiming
	NotReady      = cu.NotReady
)

var (
	NumDevices             = cu.NumDevices
	GetDevice              = cu.GetDevice
	SetCurrentContext      = cu.SetCurrentContext
	MakeStream             = cu.MakeStream
	MakeStreamWithPriority = cu.MakeStreamWithPriority
	StreamPriorityRange    = cu.StreamPriorityRange
	MakeEvent              = cu.MakeEvent
	DestroyEvent           = cu.DestroyEvent
	MemAlloc               = cu.MemAlloc
	MemFree                = cu.MemFree
	MemsetD8               = cu.MemsetD8
	MemcpyHtoD             = cu.MemcpyHtoD
	MemcpyDtoH             = cu.MemcpyDtoH
	MemcpyHtoDAsync        = cu.MemcpyHtoDAsync
	MemcpyDtoDAsync        = cu.MemcpyDtoDAsync
	MemFreeHost            = cu.MemFreeHost
	MemInfo                = cu.MemInfo
	Version                = cu.Version
)

// includeDir is where NVRTC finds the CUDA headers, looked up once.
var includeDir = sync.OnceValues(nvrtc.IncludeDir)

// LoadModule compiles src for arch with NVRTC (or takes the cubin from the cache in
// cacheDir) and loads it.
func LoadModule(src kernels.Source, arch, cacheDir string) (Module, error) {
	inc, err := includeDir()
	if err != nil {
		return Module{}, err
	}
	cubin, err := nvrtc.Cache{Dir: cacheDir}.Compile(src.Name, src.Text, arch, inc, src.Options...)
	if err != nil {
		return Module{}, err
	}
	m, err := cu.LoadData(string(cubin))
	if err != nil {
		return Module{}, fmt.Errorf("loading %s: %w", src.Name, err)
	}
	return m, nil
}

// NewBlas opens cuBLAS and creates a handle.
func NewBlas() (*Blas, error) {
	if err := cublas.Open(); err != nil {
		return nil, err
	}
	return cublas.Create()
}

// FuncHandle is the CUfunction behind fn (cu.Function holds only that), and FuncOf its
// inverse: recorded launches keep functions as integers (host.Op).
func FuncHandle(fn Function) uintptr { return *(*uintptr)(unsafe.Pointer(&fn)) }
func FuncOf(h uintptr) Function      { return *(*Function)(unsafe.Pointer(&h)) }

// The few driver calls gorgonia.org/cu v0.9.6 lacks.

// AllocHost returns n bytes of page-locked host memory (cuMemAllocHost), which asynchronous
// copies need; free it with cu.MemFreeHost.
func AllocHost(n int) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if rc := C.lf_alloc_host(&p, C.size_t(n)); rc != 0 {
		return nil, fmt.Errorf("cuMemAllocHost(%d): %w", n, driverError(rc))
	}
	return p, nil
}

// AllowSharedMemory lets fn use up to n bytes of dynamic shared memory (above the 48 KiB
// that needs no opt-in).
func AllowSharedMemory(fn cu.Function, n int) error {
	// cu.Function is a struct holding only the CUfunction handle.
	f := *(*C.CUfunction)(unsafe.Pointer(&fn))
	if rc := C.lf_max_dynamic_smem(f, C.int(n)); rc != 0 {
		return fmt.Errorf("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, %d): %w", n, driverError(rc))
	}
	return nil
}

// driverError names a CUresult.
func driverError(rc C.int) error {
	return fmt.Errorf("%s (%d)", C.GoString(C.lf_error_name(rc)), int(rc))
}

// BeginCapture starts recording the launches queued on stream into a graph.
func BeginCapture(stream uintptr) error {
	if rc := C.lf_begin_capture(C.uintptr_t(stream)); rc != 0 {
		return fmt.Errorf("cuStreamBeginCapture: %w", driverError(rc))
	}
	return nil
}

// EndCapture ends the capture begun on stream and instantiates the graph (cuGraphExec).
func EndCapture(stream uintptr) (uintptr, error) {
	var exec C.uintptr_t
	if rc := C.lf_end_capture(C.uintptr_t(stream), &exec); rc != 0 {
		return 0, fmt.Errorf("capturing a graph: %w", driverError(rc))
	}
	return uintptr(exec), nil
}

// EarlyLaunch reports whether the driver has cuLaunchKernelEx, which LaunchEarly needs.
var EarlyLaunch = sync.OnceValue(func() bool { return C.lf_find_launch_ex() != 0 })

// LaunchEarly queues fn on s as Launch does, letting it start before the kernel queued before
// it ends (programmatic dependent launch, sm_90 and later): fn must wait for that kernel
// itself before it reads what that one writes (kernels' pdl_wait).
func LaunchEarly(fn Function, gx, gy, gz, bx, by, bz, shared int, s Stream, params []unsafe.Pointer) error {
	vals := make([]uint64, len(params)+1) // never empty: &vals[0] below
	for i, p := range params {
		vals[i] = *(*uint64)(p)
	}
	rc := C.lf_launch_early(C.uintptr_t(FuncHandle(fn)), C.uint(gx), C.uint(gy), C.uint(gz), C.uint(bx), C.uint(by), C.uint(bz),
		C.uint(shared), C.uintptr_t(StreamHandle(s)), (*C.uint64_t)(unsafe.Pointer(&vals[0])), C.int(len(params)))
	if rc != 0 {
		return fmt.Errorf("cuLaunchKernelEx: %w", driverError(rc))
	}
	return nil
}

// LaunchGraph queues an instantiated graph on stream.
func LaunchGraph(exec, stream uintptr) error {
	if rc := C.lf_graph_launch(C.uintptr_t(exec), C.uintptr_t(stream)); rc != 0 {
		return fmt.Errorf("cuGraphLaunch: %w", driverError(rc))
	}
	return nil
}

// FreeGraph destroys an instantiated graph.
func FreeGraph(exec uintptr) { C.lf_graph_free(C.uintptr_t(exec)) }

// SMCount is how many multiprocessors d has.
func SMCount(d Device) (int, error) { return d.Attribute(cu.MultiprocessorCount) }

// StreamHandle is the CUstream behind s, for cuBLAS.
func StreamHandle(s cu.Stream) uintptr { return uintptr(unsafe.Pointer(s.C())) }
