//go:build cuda && cudaemu

package drv

/*
#include <stdlib.h>
#include <string.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/kernels"
)

// The emulated driver (package comment in cuda.go). Device memory is C memory, so a device
// address is a host address that the emulated kernels dereference.
//
// Work on a blocking stream runs when it is queued. Work on a non-blocking stream (the
// backend's side and upload streams) runs as late as CUDA allows: only once something waits
// for it (another stream waiting for an event recorded after it, a synchronization, an event
// query) or memory is freed. Work that reads what such a stream writes without waiting for it
// then reads stale data, and work on it that reads what another stream later overwrites reads
// the newer data: the races a GPU may or may not show, made certain. Work captured into a
// graph runs when the graph is launched, in the order it was queued.
//
// What a GPU would refuse and an emulator could let pass is refused here too: addresses
// outside any allocation, launches too large for the GPU or with the wrong number of
// arguments, synchronous calls and allocations while a stream is captured, and side-stream
// work a capture ends without joining back. Timing and asynchronous copies racing the host
// are not emulated.

type (
	// DevicePtr is a device address: in the emulator, a host one.
	DevicePtr uintptr
	// StreamFlags and EventFlags are accepted and ignored: every stream is ordered with every
	// other, every event is timed.
	StreamFlags int
	EventFlags  int
	// Stream, Event, Function and Module are handles into the emulator's tables; their zero
	// values are none.
	Stream   struct{ h uintptr }
	Event    struct{ h uintptr }
	Function struct{ h uintptr }
	Module   struct{ file string }
	// Context and Device stand for the one emulated GPU.
	Context struct{ retained bool }
	Device  int
	result  int
)

const (
	DefaultStream StreamFlags = 0
	NonBlocking   StreamFlags = 1
	DefaultEvent  EventFlags  = 0
	DisableTiming EventFlags  = 2
	// NotReady is what Event.Query returns for unfinished work: never, in the emulator.
	NotReady result = 600
)

func (r result) Error() string { return fmt.Sprintf("CUDA_ERROR_NOT_READY (%d)", int(r)) }

const (
	emuTotalMemory  = 8 << 30 // what MemInfo reports as the device's memory
	emuStaticShared = 48 << 10
	emuMaxShared    = 227 << 10 // the opt-in limit of an H100
	emuMajor        = 9         // the emulator stands for an H100 (sm_90)
	emuMinor        = 0
)

type stream struct {
	capture      *graph // the graph the stream's work goes to, while captured
	work, joined int    // work queued during the capture; how much of it the origin stream has waited for

	lazy    bool           // non-blocking: work waits in pending until something needs it
	pending []func() error // queued, not run
	queued  int            // work ever queued outside captures; the first queued-len(pending) has run
}

type event struct {
	at     time.Time
	graph  *graph  // recorded during this capture
	from   *stream // recorded on this stream...
	upTo   int     // ...after this much of its captured work
	timing bool
	// Outside captures: the lazy stream it was recorded on, and how much of its work that
	// was.
	lazy *stream
	mark int
}

type graph struct {
	origin  *stream
	streams []*stream
	ops     []func() error
}

type allocation struct {
	start DevicePtr
	size  int64
	mem   unsafe.Pointer
}

var emu = struct {
	sync.Mutex
	next    uintptr
	streams map[uintptr]*stream
	events  map[uintptr]*event
	graphs  map[uintptr]*graph
	funcs   []*kernels.Emulated // Function.h - 1
	shared  map[uintptr]int     // a function's opt-in dynamic shared memory
	allocs  []allocation        // by start
	used    int64
}{streams: map[uintptr]*stream{}, events: map[uintptr]*event{}, graphs: map[uintptr]*graph{}, shared: map[uintptr]int{}}

func handle() uintptr {
	emu.next++
	return emu.next
}

// capturing reports whether any stream is being captured: the calls that a capture forbids
// fail then.
func capturing() bool {
	for _, s := range emu.streams {
		if s.capture != nil {
			return true
		}
	}
	return false
}

var errCapturing = errors.New("CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: a synchronous call or an allocation while a stream is captured")

// run runs op on s now, queues it on a lazy s, or appends it to the graph s is captured
// into.
func run(s Stream, op func() error) error {
	st := emu.streams[s.h]
	switch {
	case s.h != 0 && st == nil:
		return fmt.Errorf("CUDA_ERROR_INVALID_HANDLE: stream %d", s.h)
	case st != nil && st.capture != nil:
		st.capture.ops = append(st.capture.ops, op)
		st.work++
		return nil
	case st != nil && st.lazy:
		st.pending = append(st.pending, op)
		st.queued++
		return nil
	}
	return op()
}

// finish runs st's pending work until the first mark of all it ever queued has run.
func (st *stream) finish(mark int) error {
	for len(st.pending) > 0 && st.queued-len(st.pending) < mark {
		op := st.pending[0]
		st.pending = st.pending[1:]
		if err := op(); err != nil {
			return err
		}
	}
	return nil
}

// finishAll runs every lazy stream's pending work (as a device-wide synchronization does).
func finishAll() error {
	for _, st := range emu.streams {
		if err := st.finish(st.queued); err != nil {
			return err
		}
	}
	return nil
}

// finish runs the lazy work ev was recorded after.
func (ev *event) finish() error {
	if ev.lazy == nil {
		return nil
	}
	return ev.lazy.finish(ev.mark)
}

// hostOf is the host memory behind device range [p, p+n), which must lie in one allocation.
func hostOf(p DevicePtr, n int64) (unsafe.Pointer, error) {
	i, _ := slices.BinarySearchFunc(emu.allocs, p, func(a allocation, p DevicePtr) int {
		switch {
		case a.start+DevicePtr(a.size) <= p:
			return -1
		case a.start > p:
			return 1
		}
		return 0
	})
	if i == len(emu.allocs) || n < 0 || emu.allocs[i].start > p || int64(p-emu.allocs[i].start)+n > emu.allocs[i].size {
		return nil, fmt.Errorf("CUDA_ERROR_INVALID_VALUE: device range [%#x, +%d) is in no allocation", uintptr(p), n)
	}
	a := emu.allocs[i]
	return unsafe.Add(a.mem, p-a.start), nil
}

// NumDevices reports the one emulated GPU.
func NumDevices() (int, error) { return 1, nil }

// GetDevice returns device 0.
func GetDevice(ordinal int) (Device, error) {
	if ordinal != 0 {
		return 0, fmt.Errorf("CUDA_ERROR_INVALID_DEVICE: %d", ordinal)
	}
	return 0, nil
}

// ComputeCapability is that of an H100.
func (Device) ComputeCapability() (major, minor int, err error) { return emuMajor, emuMinor, nil }

// Name names the emulator.
func (Device) Name() (string, error) { return "CPU emulator of an sm_90 GPU", nil }

// RetainPrimaryCtx returns the emulator's context.
func (Device) RetainPrimaryCtx() (Context, error) { return Context{retained: true}, nil }

// ReleasePrimaryCtx does nothing.
func (Device) ReleasePrimaryCtx() error { return nil }

// SetCurrentContext does nothing: the emulator has one context, current on every thread.
func SetCurrentContext(Context) error { return nil }

// Version is the driver API version the emulator stands for.
func Version() int { return 12000 }

// MakeStream creates a stream: a lazy one where flags say non-blocking.
func MakeStream(flags StreamFlags) (Stream, error) {
	emu.Lock()
	defer emu.Unlock()
	h := handle()
	emu.streams[h] = &stream{lazy: flags&NonBlocking != 0}
	return Stream{h}, nil
}

// Destroy runs s's pending work and destroys s.
func (s *Stream) Destroy() error {
	emu.Lock()
	defer emu.Unlock()
	var err error
	if st := emu.streams[s.h]; st != nil {
		err = st.finish(st.queued)
	}
	delete(emu.streams, s.h)
	s.h = 0
	return err
}

// Synchronize runs s's pending work; a captured stream cannot be synchronized.
func (s Stream) Synchronize() error {
	emu.Lock()
	defer emu.Unlock()
	st := emu.streams[s.h]
	if st == nil {
		return nil
	}
	if st.capture != nil {
		return errCapturing
	}
	return st.finish(st.queued)
}

// Wait orders s after e: in a capture, it brings s into e's graph and joins the work e
// covers back into s.
func (s Stream) Wait(e Event, _ uint) error {
	emu.Lock()
	defer emu.Unlock()
	st, ev := emu.streams[s.h], emu.events[e.h]
	if st == nil || ev == nil {
		return fmt.Errorf("CUDA_ERROR_INVALID_HANDLE: stream %d waits for event %d", s.h, e.h)
	}
	if ev.graph == nil || ev.graph.origin.capture != ev.graph {
		return ev.finish() // recorded outside a capture that is going on: s's later work comes after e's
	}
	if st.capture == nil {
		st.capture = ev.graph
		st.work, st.joined = 0, 0
		ev.graph.streams = append(ev.graph.streams, st)
	}
	if ev.from != st {
		ev.from.joined = max(ev.from.joined, ev.upTo)
	}
	return nil
}

// MakeEvent creates an event.
func MakeEvent(flags EventFlags) (Event, error) {
	emu.Lock()
	defer emu.Unlock()
	h := handle()
	emu.events[h] = &event{timing: flags&DisableTiming == 0}
	return Event{h}, nil
}

// DestroyEvent destroys *e.
func DestroyEvent(e *Event) error {
	emu.Lock()
	defer emu.Unlock()
	delete(emu.events, e.h)
	e.h = 0
	return nil
}

// Record marks the point s has reached: now, or in the graph s is captured into.
func (e Event) Record(s Stream) error {
	emu.Lock()
	defer emu.Unlock()
	ev, st := emu.events[e.h], emu.streams[s.h]
	if ev == nil || s.h != 0 && st == nil {
		return fmt.Errorf("CUDA_ERROR_INVALID_HANDLE: event %d on stream %d", e.h, s.h)
	}
	*ev = event{at: time.Now(), timing: ev.timing}
	switch {
	case st != nil && st.capture != nil:
		ev.graph, ev.from, ev.upTo = st.capture, st, st.work
	case st != nil && st.lazy:
		ev.lazy, ev.mark = st, st.queued
	}
	return nil
}

// Query runs the work before e (the GPU gets there on its own) and reports it done.
func (e Event) Query() error { return e.Synchronize() }

// Synchronize runs the work before e.
func (e Event) Synchronize() error {
	emu.Lock()
	defer emu.Unlock()
	ev := emu.events[e.h]
	if ev == nil {
		return fmt.Errorf("CUDA_ERROR_INVALID_HANDLE: event %d", e.h)
	}
	return ev.finish()
}

// Elapsed is the host time between the records of e and end, in milliseconds.
func (e Event) Elapsed(end Event) (float64, error) {
	emu.Lock()
	defer emu.Unlock()
	a, b := emu.events[e.h], emu.events[end.h]
	if a == nil || b == nil || !a.timing || !b.timing || a.at.IsZero() || b.at.IsZero() {
		return 0, fmt.Errorf("CUDA_ERROR_INVALID_HANDLE: events %d, %d not recorded with timing", e.h, end.h)
	}
	return float64(b.at.Sub(a.at)) / 1e6, nil
}

// MemAlloc returns size bytes of device memory, 256-byte aligned and filled with 0xff bytes
// (NaN as floats): memory on a GPU starts with whatever was there.
func MemAlloc(size int64) (DevicePtr, error) {
	emu.Lock()
	defer emu.Unlock()
	if capturing() {
		return 0, errCapturing
	}
	if size <= 0 || emu.used+size > emuTotalMemory {
		return 0, fmt.Errorf("CUDA_ERROR_OUT_OF_MEMORY: %d bytes, %d in use", size, emu.used)
	}
	mem := C.aligned_alloc(256, C.size_t((size+255)&^255))
	if mem == nil {
		return 0, fmt.Errorf("CUDA_ERROR_OUT_OF_MEMORY: %d bytes", size)
	}
	C.memset(mem, 0xff, C.size_t(size))
	a := allocation{start: DevicePtr(uintptr(mem)), size: size, mem: mem}
	i, _ := slices.BinarySearchFunc(emu.allocs, a.start, func(x allocation, p DevicePtr) int { return cmpPtr(x.start, p) })
	emu.allocs = slices.Insert(emu.allocs, i, a)
	emu.used += size
	return a.start, nil
}

func cmpPtr(a, b DevicePtr) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// MemFree frees an allocation, once every stream's queued work has run (as cuMemFree waits
// for the device).
func MemFree(p DevicePtr) error {
	emu.Lock()
	defer emu.Unlock()
	if capturing() {
		return errCapturing
	}
	if err := finishAll(); err != nil {
		return err
	}
	i, ok := slices.BinarySearchFunc(emu.allocs, p, func(x allocation, p DevicePtr) int { return cmpPtr(x.start, p) })
	if !ok {
		return fmt.Errorf("CUDA_ERROR_INVALID_VALUE: freeing %#x, which is no allocation", uintptr(p))
	}
	C.free(emu.allocs[i].mem)
	emu.used -= emu.allocs[i].size
	emu.allocs = slices.Delete(emu.allocs, i, i+1)
	return nil
}

// MemInfo reports the emulated device's free and total memory.
func MemInfo() (free, total int64, err error) {
	emu.Lock()
	defer emu.Unlock()
	return emuTotalMemory - emu.used, emuTotalMemory, nil
}

// MemsetD8 sets n bytes at p to v.
func MemsetD8(p DevicePtr, v byte, n int64) error {
	emu.Lock()
	defer emu.Unlock()
	if capturing() {
		return errCapturing
	}
	dst, err := hostOf(p, n)
	if err != nil {
		return err
	}
	C.memset(dst, C.int(v), C.size_t(n))
	return nil
}

// MemcpyHtoD copies n bytes from host memory to the device.
func MemcpyHtoD(dst DevicePtr, src unsafe.Pointer, n int64) error {
	emu.Lock()
	defer emu.Unlock()
	if capturing() {
		return errCapturing
	}
	d, err := hostOf(dst, n)
	if err != nil {
		return err
	}
	C.memcpy(d, src, C.size_t(n))
	return nil
}

// MemcpyDtoH copies n bytes from the device to host memory.
func MemcpyDtoH(dst unsafe.Pointer, src DevicePtr, n int64) error {
	emu.Lock()
	defer emu.Unlock()
	if capturing() {
		return errCapturing
	}
	s, err := hostOf(src, n)
	if err != nil {
		return err
	}
	C.memcpy(dst, s, C.size_t(n))
	return nil
}

// MemcpyHtoDAsync queues a copy of n bytes of page-locked host memory to the device on s.
func MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, n int64, s Stream) error {
	emu.Lock()
	defer emu.Unlock()
	return run(s, func() error {
		d, err := hostOf(dst, n)
		if err != nil {
			return err
		}
		C.memcpy(d, src, C.size_t(n))
		return nil
	})
}

// AllocHost returns n bytes of host memory (page-locked on a GPU machine).
func AllocHost(n int) (unsafe.Pointer, error) {
	p := C.malloc(C.size_t(max(n, 1)))
	if p == nil {
		return nil, fmt.Errorf("cuMemAllocHost(%d): out of memory", n)
	}
	return p, nil
}

// MemFreeHost frees what AllocHost returned.
func MemFreeHost(p unsafe.Pointer) error {
	C.free(p)
	return nil
}

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
	if by != 1 || bz != 1 || shared > limit {
		return fmt.Errorf("CUDA_ERROR_INVALID_VALUE: launching %s with block %dx%dx%d and %d bytes of shared memory (at most %d)", k.Name, bx, by, bz, shared, limit)
	}
	args := make([]uint64, len(params))
	for i, p := range params {
		args[i] = *(*uint64)(p)
	}
	return run(s, func() error { return k.Launch([3]int{gx, gy, gz}, bx, shared, args) })
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
