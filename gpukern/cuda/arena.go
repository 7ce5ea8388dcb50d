//go:build cuda

package cuda

import (
	"fmt"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// arena carries a step's small metadata to the device: host.Arena lays it out in page-locked
// memory as kernels are recorded, and send copies what is new in one asynchronous transfer
// before the recorded kernels are launched.
type arena struct {
	host.Arena
	hostMem unsafe.Pointer
	dev     drv.DevicePtr
	stream  drv.Stream
}

func newArena(size int, stream drv.Stream) (*arena, error) {
	a := &arena{stream: stream}
	h, err := drv.AllocHost(size)
	if err != nil {
		return nil, fmt.Errorf("cuda: metadata buffer: %w", err)
	}
	d, err := drv.MemAlloc(int64(size))
	if err != nil {
		_ = drv.MemFreeHost(h)
		return nil, fmt.Errorf("cuda: metadata buffer of %d bytes: %w", size, err)
	}
	a.hostMem, a.dev = h, d
	a.Buf, a.Base = unsafe.Slice((*byte)(h), size), uint64(d)
	return a, nil
}

func (a *arena) close() {
	if a == nil || a.hostMem == nil {
		return
	}
	_ = drv.MemFreeHost(a.hostMem)
	_ = drv.MemFree(a.dev)
	a.hostMem, a.dev, a.Buf = nil, 0, nil
}

// send queues the copy of the bytes put since the last send.
func (a *arena) send() error {
	off, n := a.Pending()
	if n == 0 {
		return nil
	}
	if err := drv.MemcpyHtoDAsync(a.dev+drv.DevicePtr(off), unsafe.Add(a.hostMem, off), int64(n), a.stream); err != nil {
		return fmt.Errorf("cuda: copying metadata: %w", err)
	}
	return nil
}

// upload puts v in the arena and returns its device address; a failure is recorded on b and
// gives a null pointer. When the arena is full, one twice as large takes over for the rest of
// the step: the full one is sent now, before the recorded work that reads it is launched, and
// kept until the stream has run that work (drain). Nothing recorded is flushed or moved, so
// the metadata of the kernel being recorded stays where its earlier uploads put it. Callers
// are inside b.do.
func upload[T int32 | float32 | uint64](b *Backend, v []T) drv.DevicePtr {
	if len(v) == 0 {
		return 0
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(v[0])))
	if p, ok := b.meta.Put(raw); ok {
		return drv.DevicePtr(p)
	}
	if err := b.meta.send(); err != nil {
		b.fail(err)
		return 0
	}
	next, err := newArena(max(2*len(b.meta.Buf), 2*len(raw)+32), b.stream)
	if err != nil {
		b.fail(err)
		return 0
	}
	b.retired = append(b.retired, b.meta)
	b.meta = next
	p, _ := b.meta.Put(raw) // an empty arena twice v's size holds it
	return drv.DevicePtr(p)
}
