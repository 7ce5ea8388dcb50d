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
}

func newArena(size int) (*arena, error) {
	a := &arena{}
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

// send queues the copy of the bytes put since the last send on stream; false if there were
// none.
func (a *arena) send(stream drv.Stream) (bool, error) {
	off, n := a.Pending()
	if n == 0 {
		return false, nil
	}
	if err := drv.MemcpyHtoDAsync(a.dev+drv.DevicePtr(off), unsafe.Add(a.hostMem, off), int64(n), stream); err != nil {
		return false, fmt.Errorf("cuda: copying metadata: %w", err)
	}
	return true, nil
}

// sendMeta queues the copy of the metadata put since the last send on the metadata stream
// and makes the main stream wait for it. On the main stream itself the copy would start only
// once the work launched before it had run, and then wait for the copy engine, which an
// adapter upload may be holding (uploadChunk): a gap in the GPU's work at every flush. On a
// stream of its own it runs while that work does. Nothing in an arena is overwritten before
// the main stream has run all the work of the step (drain), so the copies need no other
// order. Callers are inside b.do.
func (b *Backend) sendMeta() error {
	sent, err := b.meta.send(b.metaStream)
	if err != nil || !sent {
		return err
	}
	if err := b.metaSent.Record(b.metaStream); err != nil {
		return fmt.Errorf("cuda: metadata event: %w", err)
	}
	if err := b.stream.Wait(b.metaSent, 0); err != nil {
		return fmt.Errorf("cuda: waiting for metadata: %w", err)
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
	if err := b.sendMeta(); err != nil {
		b.fail(err)
		return 0
	}
	next, err := newArena(max(2*len(b.meta.Buf), 2*len(raw)+32))
	if err != nil {
		b.fail(err)
		return 0
	}
	b.retired = append(b.retired, b.meta)
	b.meta = next
	p, _ := b.meta.Put(raw) // an empty arena twice v's size holds it
	return drv.DevicePtr(p)
}
