// Package nvrtc compiles CUDA C++ to device code (cubin) at run time with NVRTC, opened with
// dlopen so that one binary runs with CUDA 11.x to 13.x and builds where CUDA is absent. It
// does not import gorgonia.org/cu (whose init exits without a GPU), so it also runs on
// machines without one: kernels are compile-checked there.
package nvrtc

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"
)

// sonames are tried in order: the newest runtime first.
var sonames = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}

var (
	openOnce sync.Once
	openErr  error
)

// ErrUnavailable is returned when no usable NVRTC library is installed.
var ErrUnavailable = errors.New("nvrtc: no NVRTC library (libnvrtc.so.13, .12 or .11.2) could be opened")

// Open loads NVRTC; later calls return the first call's result.
func Open() error {
	openOnce.Do(func() {
		var reasons []string
		for _, name := range sonames {
			cname := C.CString(name)
			rc := C.lf_nvrtc_open(cname)
			C.free(unsafe.Pointer(cname))
			switch rc {
			case 0:
				return
			case -2:
				reasons = append(reasons, name+": lacks nvrtcGetCUBIN (CUDA older than 11.1)")
			default:
				reasons = append(reasons, C.GoString(C.lf_dlerror()))
			}
		}
		openErr = fmt.Errorf("%w: %v", ErrUnavailable, reasons)
	})
	return openErr
}

// Version is NVRTC's version.
func Version() (major, minor int, err error) {
	if err := Open(); err != nil {
		return 0, 0, err
	}
	var ma, mi C.int
	if rc := C.lf_nvrtc_version(&ma, &mi); rc != 0 {
		return 0, 0, resultError("nvrtcVersion", rc)
	}
	return int(ma), int(mi), nil
}

// CompileError is a compilation that failed; Log is the compiler's output.
type CompileError struct {
	Name, Arch, Log string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("nvrtc: compiling %s for %s:\n%s", e.Name, e.Arch, e.Log)
}

// Compile compiles src (named name in messages) for arch (a real architecture such as
// "sm_90") with includeDir (see IncludeDir) on the include path and the given NVRTC options
// besides, and returns the cubin.
func Compile(name, src, arch, includeDir string, options ...string) ([]byte, error) {
	cubin, _, err := compile(name, src, arch, includeDir, false, options)
	return cubin, err
}

// compile is Compile, also returning the compiler's log; verbose has ptxas report each
// kernel's resources there.
func compile(name, src, arch, includeDir string, verbose bool, options []string) (cubin []byte, log string, err error) {
	if err := Open(); err != nil {
		return nil, "", err
	}
	csrc, cname := C.CString(src), C.CString(name)
	defer C.free(unsafe.Pointer(csrc))
	defer C.free(unsafe.Pointer(cname))
	var prog unsafe.Pointer
	if rc := C.lf_nvrtc_create(&prog, csrc, cname); rc != 0 {
		return nil, "", resultError("nvrtcCreateProgram", rc)
	}
	defer C.lf_nvrtc_destroy(&prog)
	opts := append([]string{"--gpu-architecture=" + arch, "--std=c++17", "-default-device", "-I" + includeDir}, options...)
	if verbose {
		opts = append(opts, "--ptxas-options=-v")
	}
	copts := make([]*C.char, len(opts)) // Go memory holding C pointers may be passed to C
	for i, o := range opts {
		copts[i] = C.CString(o)
		defer C.free(unsafe.Pointer(copts[i]))
	}
	if rc := C.lf_nvrtc_compile(prog, C.int(len(copts)), &copts[0]); rc != 0 {
		return nil, "", &CompileError{Name: name, Arch: arch, Log: programLog(prog)}
	}
	var n C.size_t
	if rc := C.lf_nvrtc_cubin_size(prog, &n); rc != 0 {
		return nil, "", resultError("nvrtcGetCUBINSize", rc)
	}
	if n == 0 {
		return nil, "", fmt.Errorf("nvrtc: %s: no cubin (the architecture must be a real one such as sm_90, not compute_90)", name)
	}
	buf := C.malloc(n)
	defer C.free(buf)
	if rc := C.lf_nvrtc_cubin(prog, (*C.char)(buf)); rc != 0 {
		return nil, "", resultError("nvrtcGetCUBIN", rc)
	}
	return C.GoBytes(buf, C.int(n)), programLog(prog), nil
}

func programLog(prog unsafe.Pointer) string {
	var n C.size_t
	if C.lf_nvrtc_log_size(prog, &n) != 0 || n == 0 {
		return ""
	}
	buf := C.malloc(n)
	defer C.free(buf)
	if C.lf_nvrtc_log(prog, (*C.char)(buf)) != 0 {
		return ""
	}
	return C.GoString((*C.char)(buf))
}

func resultError(call string, rc C.int) error {
	return fmt.Errorf("nvrtc: %s: %s", call, C.GoString(C.lf_nvrtc_error(rc)))
}

// IncludeDir finds the CUDA headers NVRTC needs for cuda_bf16.h: $CUDA_HOME/include, then
// /usr/local/cuda/include, then /usr/include (Debian's nvidia-cuda-dev).
func IncludeDir() (string, error) {
	var dirs []string
	if h := os.Getenv("CUDA_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "include"))
	}
	dirs = append(dirs, "/usr/local/cuda/include", "/usr/include")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "cuda_bf16.h")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("nvrtc: no cuda_bf16.h in %v (set CUDA_HOME)", dirs)
}
