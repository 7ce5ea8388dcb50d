//go:build cuda && cudaemu

package drv

import (
	"errors"
	"fmt"
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
// What a GPU would refuse and an emulator could let pass is refused here too: copies and
// GEMMs outside any allocation, launches too large for the GPU or with the wrong number of
// arguments, synchronous calls and allocations while a stream is captured, and side-stream
// work a capture ends without joining back. New memory is NaN, so that reads of what nothing
// wrote show; under go test -asan, allocations are exact and a kernel's accesses past them are
// reported. Not emulated: timing, and asynchronous copies racing the host.

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

// SMCount is an H100's.
func SMCount(Device) (int, error) { return 132, nil }

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

// MakeStreamWithPriority creates a stream as MakeStream does: blocks run one at a time
// whatever their stream's priority.
func MakeStreamWithPriority(_ int, flags StreamFlags) (Stream, error) { return MakeStream(flags) }

// StreamPriorityRange is an H100's: 0 the least priority, -5 the greatest.
func StreamPriorityRange() (least, greatest int, err error) { return 0, -5, nil }

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
