//go:build cuda

package cuda

import (
	"bytes"
	"fmt"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"gorgonia.org/cu"
)

// arena carries a step's small metadata (token ids, positions, slots, block tables, adapter
// pointer tables) to the device. Values are appended to page-locked host memory as the
// kernels are recorded, and send copies what is new in one asynchronous transfer before the
// recorded kernels are launched. A value already put since the last reset is not put again:
// the layers of a step share their attention and adapter tables. Nothing is overwritten
// before reset, which is called once the stream is idle.
type arena struct {
	host   unsafe.Pointer
	dev    cu.DevicePtr
	size   int
	used   int
	sent   int // bytes [0, sent) are on the device or queued to it
	stream cu.Stream
	index  map[uint64]int // hash of a value → its offset, for this step's values
}

func newArena(size int, stream cu.Stream) (*arena, error) {
	a := &arena{stream: stream, index: map[uint64]int{}}
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
	a.host, a.dev, a.size = h, d, size
	a.reset()
	return nil
}

func (a *arena) reset() {
	a.used, a.sent = 0, 0
	clear(a.index)
}

func (a *arena) close() {
	if a == nil || a.host == nil {
		return
	}
	_ = cu.MemFreeHost(a.host)
	_ = cu.MemFree(a.dev)
	a.host, a.dev = nil, 0
}

func (a *arena) at(off, n int) []byte { return unsafe.Slice((*byte)(unsafe.Add(a.host, off)), n) }

// put appends the n bytes at src and returns the device address they will have; false when
// the arena is full.
func (a *arena) put(src unsafe.Pointer, n int) (cu.DevicePtr, bool) {
	v := unsafe.Slice((*byte)(src), n)
	key := xxhash.Sum64(v)
	if off, ok := a.index[key]; ok && off+n <= a.used && bytes.Equal(a.at(off, n), v) {
		return a.dev + cu.DevicePtr(off), true
	}
	off := (a.used + 15) &^ 15
	if off+n > a.size {
		return 0, false
	}
	copy(a.at(off, n), v)
	a.index[key] = off
	a.used = off + n
	return a.dev + cu.DevicePtr(off), true
}

// send queues the copy of the bytes put since the last send.
func (a *arena) send() error {
	if a.used == a.sent {
		return nil
	}
	err := cu.MemcpyHtoDAsync(a.dev+cu.DevicePtr(a.sent), unsafe.Add(a.host, a.sent), int64(a.used-a.sent), a.stream)
	if err != nil {
		return fmt.Errorf("cuda: copying metadata: %w", err)
	}
	a.sent = a.used
	return nil
}

// upload puts v in the arena and returns its device address; a failure is recorded on b and
// gives a null pointer. When the arena is full, the recorded work (which reads it) runs
// first, then the arena starts over, larger if v needs it. Callers are inside b.do.
func upload[T int32 | float32 | uint64](b *Backend, v []T) cu.DevicePtr {
	if len(v) == 0 {
		return 0
	}
	src, n := unsafe.Pointer(&v[0]), len(v)*int(unsafe.Sizeof(v[0]))
	if p, ok := b.meta.put(src, n); ok {
		return p
	}
	b.drain()
	if n+16 > b.meta.size/2 {
		b.fail(b.meta.grow(max(2*b.meta.size, 2*n+32)))
	}
	p, ok := b.meta.put(src, n)
	if !ok {
		b.fail(fmt.Errorf("cuda: %d bytes of metadata do not fit the arena", n))
	}
	return p
}
