//go:build cuda

package cuda

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// arena carries a step's small metadata to the device: host.Arena lays it out in page-locked
// memory as kernels are recorded, and send copies what is new in one asynchronous transfer
// before the recorded kernels are launched.
type arena struct {
	host.Arena
	hostMem unsafe.Pointer
	dev     cu.DevicePtr
	stream  cu.Stream
}

func newArena(size int, stream cu.Stream) (*arena, error) {
	a := &arena{stream: stream}
	return a, a.grow(size)
}

func (a *arena) grow(size int) error {
	a.close()
	h, err := allocHost(size)
	if err != nil {
		return err
	}
	d, err := cu.MemAlloc(int64(size))
	if err != nil {
		_ = cu.MemFreeHost(h)
		return fmt.Errorf("cuda: metadata buffer of %d bytes: %w", size, err)
	}
	a.hostMem, a.dev = h, d
	a.Buf, a.Base = unsafe.Slice((*byte)(h), size), uint64(d)
	a.Reset()
	return nil
}

func (a *arena) close() {
	if a == nil || a.hostMem == nil {
		return
	}
	_ = cu.MemFreeHost(a.hostMem)
	_ = cu.MemFree(a.dev)
	a.hostMem, a.dev, a.Buf = nil, 0, nil
}

// send queues the copy of the bytes put since the last send.
func (a *arena) send() error {
	off, n := a.Pending()
	if n == 0 {
		return nil
	}
	if err := cu.MemcpyHtoDAsync(a.dev+cu.DevicePtr(off), unsafe.Add(a.hostMem, off), int64(n), a.stream); err != nil {
		return fmt.Errorf("cuda: copying metadata: %w", err)
	}
	return nil
}

// upload puts v in the arena and returns its device address; a failure is recorded on b and
// gives a null pointer. When the arena is full, the recorded work (which reads it) runs
// first, then the arena starts over, larger if v needs it. Callers are inside b.do.
func upload[T int32 | float32 | uint64](b *Backend, v []T) cu.DevicePtr {
	if len(v) == 0 {
		return 0
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(v[0])))
	if p, ok := b.meta.Put(raw); ok {
		return cu.DevicePtr(p)
	}
	b.drain()
	if size := len(b.meta.Buf); len(raw)+16 > size/2 {
		b.fail(b.meta.grow(max(2*size, 2*len(raw)+32)))
	}
	p, ok := b.meta.Put(raw)
	if !ok {
		b.fail(fmt.Errorf("cuda: %d bytes of metadata do not fit the arena", len(raw)))
	}
	return cu.DevicePtr(p)
}
