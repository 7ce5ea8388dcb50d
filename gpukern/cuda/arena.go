//go:build cuda

package cuda

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"
)

// arena carries a step's small metadata (token ids, positions, slots, block tables, adapter
// pointer tables) to the device: appended to page-locked host memory and copied
// asynchronously on the stream, so that kernels queued behind the copy see it and the host
// does not wait. Nothing is overwritten before reset, which Sync calls once the stream is idle.
type arena struct {
	host   unsafe.Pointer
	dev    cu.DevicePtr
	size   int
	used   int
	stream cu.Stream
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
	a.host, a.dev, a.size, a.used = h, d, size, 0
	return nil
}

func (a *arena) reset() { a.used = 0 }

func (a *arena) close() {
	if a == nil || a.host == nil {
		return
	}
	_ = cu.MemFreeHost(a.host)
	_ = cu.MemFree(a.dev)
	a.host, a.dev = nil, 0
}

// put queues a copy of n bytes at src and returns their device address. When the arena is
// full it waits for the stream (whose kernels may still read the old buffer) and grows.
func (a *arena) put(src unsafe.Pointer, n int) (cu.DevicePtr, error) {
	if n == 0 {
		return a.dev, nil
	}
	off := (a.used + 15) &^ 15
	if off+n > a.size {
		if err := a.stream.Synchronize(); err != nil {
			return 0, fmt.Errorf("cuda: a kernel failed: %w", err)
		}
		if err := a.grow(max(2*a.size, n+16)); err != nil {
			return 0, err
		}
		off = 0
	}
	copy(unsafe.Slice((*byte)(unsafe.Add(a.host, off)), n), unsafe.Slice((*byte)(src), n))
	dst := a.dev + cu.DevicePtr(off)
	if err := cu.MemcpyHtoDAsync(dst, unsafe.Add(a.host, off), int64(n), a.stream); err != nil {
		return 0, fmt.Errorf("cuda: copying metadata: %w", err)
	}
	a.used = off + n
	return dst, nil
}

// upload copies v through the arena; a failure is recorded on b and gives a null pointer.
func upload[T int32 | float32 | uint64](b *Backend, v []T) cu.DevicePtr {
	if len(v) == 0 {
		return 0
	}
	p, err := b.meta.put(unsafe.Pointer(&v[0]), len(v)*int(unsafe.Sizeof(v[0])))
	b.fail(err)
	return p
}
