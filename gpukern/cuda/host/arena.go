package host

import (
	"bytes"

	"github.com/cespare/xxhash/v2"
)

// Arena lays out a step's small metadata (token ids, positions, slots, block tables, adapter
// pointer tables) in a host buffer (page-locked, for asynchronous copies) mirrored at device
// address Base. Values are appended as kernels are recorded; Pending is what a flush copies
// before launching them. A value put again before Reset is not stored twice: the layers of a
// step share their attention and adapter tables. Nothing is overwritten before Reset, which
// the caller calls once the device is done with the buffer.
type Arena struct {
	Buf  []byte // host memory, len = capacity
	Base uint64 // the device address of Buf[0]

	used, sent int
	index      map[uint64]int // hash of a value → its offset, for this step's values
}

// Put appends v (at a 16-byte aligned offset, or where an equal value already is) and returns
// its device address; false when it does not fit.
func (a *Arena) Put(v []byte) (uint64, bool) {
	if a.index == nil {
		a.index = map[uint64]int{}
	}
	key := xxhash.Sum64(v)
	if off, ok := a.index[key]; ok && off+len(v) <= a.used && bytes.Equal(a.Buf[off:off+len(v)], v) {
		return a.Base + uint64(off), true
	}
	off := (a.used + 15) &^ 15
	if off+len(v) > len(a.Buf) {
		return 0, false
	}
	copy(a.Buf[off:], v)
	a.index[key] = off
	a.used = off + len(v)
	return a.Base + uint64(off), true
}

// Pending returns the bytes put since the last call, [off, off+n), to copy to the device.
func (a *Arena) Pending() (off, n int) {
	off, n = a.sent, a.used-a.sent
	a.sent = a.used
	return off, n
}

// Reset starts the buffer over.
func (a *Arena) Reset() {
	a.used, a.sent = 0, 0
	clear(a.index)
}
