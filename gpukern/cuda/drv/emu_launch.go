//go:build cuda && cudaemu

package drv

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/kernels"
)

// Kernels, launches and graphs in the emulator.

// LoadModule "loads" the kernels of src: the emulator has them compiled in.
func LoadModule(src kernels.Source, _, _ string) (Module, error) { return Module{file: src.Name}, nil }

// Function looks a kernel of m up.
func (m Module) Function(name string) (Function, error) {
	k := kernels.EmulatedKernels()[name]
	if k == nil || k.File != m.file {
		return Function{}, fmt.Errorf("CUDA_ERROR_NOT_FOUND: kernel %s in %s", name, m.file)
	}
	emu.Lock()
	defer emu.Unlock()
	if i := slices.Index(emu.funcs, k); i >= 0 {
		return Function{uintptr(i + 1)}, nil
	}
	emu.funcs = append(emu.funcs, k)
	return Function{uintptr(len(emu.funcs))}, nil
}

// FuncHandle and FuncOf convert between a function and an integer (host.Op keeps those).
func FuncHandle(fn Function) uintptr { return fn.h }
func FuncOf(h uintptr) Function      { return Function{h} }

// AllowSharedMemory lets fn use up to n bytes of dynamic shared memory.
func AllowSharedMemory(fn Function, n int) error {
	emu.Lock()
	defer emu.Unlock()
	if n > emuMaxShared {
		return fmt.Errorf("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, %d): CUDA_ERROR_INVALID_VALUE", n)
	}
	emu.shared[fn.h] = n
	return nil
}

// Launch queues fn on s. Like cuLaunchKernel it reads each argument from behind its pointer:
// 8 bytes, of which the kernel takes what its parameter's type needs.
func (fn Function) Launch(gx, gy, gz, bx, by, bz, shared int, s Stream, params []unsafe.Pointer) error {
	emu.Lock()
	defer emu.Unlock()
	if fn.h == 0 || int(fn.h) > len(emu.funcs) {
		return fmt.Errorf("CUDA_ERROR_INVALID_HANDLE: function %d", fn.h)
	}
	k := emu.funcs[fn.h-1]
	limit := emuStaticShared
	if n, ok := emu.shared[fn.h]; ok {
		limit = max(limit, n)
	}
	if by != 1 || bz != 1 {
		return fmt.Errorf("launching %s: a %dx%dx%d block (the emulator runs one-dimensional blocks)", k.Name, bx, by, bz)
	}
	if shared > limit {
		return fmt.Errorf("CUDA_ERROR_INVALID_VALUE: launching %s with %d bytes of dynamic shared memory (at most %d)", k.Name, shared, limit)
	}
	args := make([]uint64, len(params))
	for i, p := range params {
		args[i] = *(*uint64)(p)
	}
	return run(s, func() error { return k.Launch([3]int{gx, gy, gz}, bx, shared, args) })
}

// EarlyLaunch reports that LaunchEarly may be called: the emulator runs a kernel only once
// the one before it has ended, early or not.
func EarlyLaunch() bool { return true }

// LaunchEarly is Launch: the emulator does not overlap kernels.
func LaunchEarly(fn Function, gx, gy, gz, bx, by, bz, shared int, s Stream, params []unsafe.Pointer) error {
	return fn.Launch(gx, gy, gz, bx, by, bz, shared, s, params)
}

// StreamHandle is s as an integer, for cuBLAS and graph captures.
func StreamHandle(s Stream) uintptr { return s.h }

// BeginCapture starts capturing the work queued on stream into a graph.
func BeginCapture(h uintptr) error {
	emu.Lock()
	defer emu.Unlock()
	st := emu.streams[h]
	if st == nil || st.capture != nil {
		return fmt.Errorf("cuStreamBeginCapture: CUDA_ERROR_ILLEGAL_STATE (stream %d)", h)
	}
	g := &graph{origin: st}
	g.streams = []*stream{st}
	st.capture, st.work, st.joined = g, 0, 0
	return nil
}

// EndCapture ends the capture begun on stream and returns the graph. Every other stream
// the capture drew in must have been joined back: the origin waited for all its work.
func EndCapture(h uintptr) (uintptr, error) {
	emu.Lock()
	defer emu.Unlock()
	st := emu.streams[h]
	if st == nil || st.capture == nil || st.capture.origin != st {
		return 0, fmt.Errorf("capturing a graph: CUDA_ERROR_ILLEGAL_STATE (stream %d)", h)
	}
	g := st.capture
	var unjoined error
	for _, s := range g.streams {
		if s != st && s.work > s.joined {
			unjoined = errors.New("capturing a graph: CUDA_ERROR_STREAM_CAPTURE_UNJOINED: a stream's work was not joined back")
		}
		s.capture = nil
	}
	if unjoined != nil {
		return 0, unjoined
	}
	x := handle()
	emu.graphs[x] = g
	return x, nil
}

// LaunchGraph runs a captured graph's work on stream.
func LaunchGraph(exec, h uintptr) error {
	emu.Lock()
	defer emu.Unlock()
	g := emu.graphs[exec]
	if g == nil {
		return fmt.Errorf("cuGraphLaunch: CUDA_ERROR_INVALID_HANDLE (graph %d)", exec)
	}
	return run(Stream{h}, func() error {
		for _, op := range g.ops {
			if err := op(); err != nil {
				return err
			}
		}
		return nil
	})
}

// FreeGraph destroys a graph.
func FreeGraph(exec uintptr) {
	emu.Lock()
	defer emu.Unlock()
	delete(emu.graphs, exec)
}
