//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// ErrPoolFull is returned when every adapter slot is taken.
var ErrPoolFull = errors.New("cuda: every adapter slot is in use")

// align is the element alignment of each tensor in a slot (128 bytes of bf16), so that
// kernels can use wide loads.
const align = 64

// SlotElems is the slot size that holds tensors of the given lengths (elements).
func SlotElems(lens []int) int {
	n := 0
	for _, l := range lens {
		n += (l + align - 1) &^ (align - 1)
	}
	return n
}

// adapterPool is one device allocation cut into equal slots, one adapter each (vLLM's
// max_loras × max_lora_rank), so adapters coming and going never fragment device memory.
// Uploads go through a page-locked staging buffer on their own stream, so they overlap with
// the compute stream's steps; only a step that reads a slot still loading waits for it.
type adapterPool struct {
	base      cu.DevicePtr
	slotElems int
	free      []int
	staging   unsafe.Pointer // slotElems bf16 values
	upload    cu.Stream
	copying   cu.Event // the last upload's start, after the compute work it waits for
	uploaded  cu.Event // the last upload's end: the staging buffer is free again
	computed  cu.Event // the compute work queued before an upload: the upload waits for it
	compute   cu.Stream
	ready     []cu.Event   // per slot: the end of its last upload (made on first use)
	loading   map[int]bool // slots whose upload the compute stream has not waited for
}

func newAdapterPool(slots, slotElems int, compute cu.Stream) (*adapterPool, error) {
	p := &adapterPool{slotElems: slotElems, compute: compute, ready: make([]cu.Event, slots), loading: map[int]bool{}}
	var err error
	size := int64(slots) * int64(slotElems) * 2
	if p.base, err = cu.MemAlloc(size); err != nil {
		return nil, fmt.Errorf("cuda: adapter pool of %d slots (%d MiB): %w", slots, size>>20, err)
	}
	if p.staging, err = allocHost(2 * slotElems); err != nil {
		p.close()
		return nil, err
	}
	if p.upload, err = cu.MakeStream(cu.NonBlocking); err != nil {
		p.close()
		return nil, fmt.Errorf("cuda: upload stream: %w", err)
	}
	// copying and uploaded time the transfer (Backend.LastAdapterUpload).
	if p.copying, err = cu.MakeEvent(cu.DefaultEvent); err == nil {
		if p.uploaded, err = cu.MakeEvent(cu.DefaultEvent); err == nil {
			p.computed, err = cu.MakeEvent(cu.DisableTiming)
		}
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("cuda: upload events: %w", err)
	}
	for i := slots - 1; i >= 0; i-- {
		p.free = append(p.free, i)
	}
	return p, nil
}

func (p *adapterPool) close() {
	if p == nil {
		return
	}
	if p.upload != (cu.Stream{}) {
		_ = p.upload.Synchronize()
		_ = p.upload.Destroy()
	}
	for _, e := range append([]*cu.Event{&p.copying, &p.uploaded, &p.computed}, pointers(p.ready)...) {
		if *e != (cu.Event{}) {
			_ = cu.DestroyEvent(e)
		}
	}
	if p.staging != nil {
		_ = cu.MemFreeHost(p.staging)
	}
	if p.base != 0 {
		_ = cu.MemFree(p.base)
	}
}

// store copies one adapter's tensors into a free slot. The copy runs on the upload stream
// after the compute work queued so far (which may read the slot's previous adapter); the
// compute stream waits for it only before work that reads the slot (waitFor).
func (p *adapterPool) store(data [][]float32) ([]gpukern.Tensor, error) {
	if len(data) == 0 {
		return nil, nil // nothing to hold: no slot taken, none to release
	}
	lens := make([]int, len(data))
	for i, d := range data {
		lens[i] = len(d)
	}
	need := SlotElems(lens)
	if need > p.slotElems {
		return nil, fmt.Errorf("cuda: adapter of %d elements exceeds a slot of %d (raise the maximum LoRA rank)", need, p.slotElems)
	}
	if len(p.free) == 0 {
		return nil, ErrPoolFull
	}
	slot := p.free[len(p.free)-1]
	if p.ready[slot] == (cu.Event{}) {
		e, err := cu.MakeEvent(cu.DisableTiming)
		if err != nil {
			return nil, fmt.Errorf("cuda: upload event: %w", err)
		}
		p.ready[slot] = e
	}
	// The staging buffer is reused: wait for the previous upload to have read it.
	if err := p.uploaded.Synchronize(); err != nil {
		return nil, fmt.Errorf("cuda: previous adapter upload: %w", err)
	}
	stage := unsafe.Slice((*uint16)(p.staging), p.slotElems)
	base := p.base + cu.DevicePtr(int64(slot)*int64(p.slotElems)*2)
	ts := make([]gpukern.Tensor, len(data))
	var wg sync.WaitGroup
	off := 0
	for i, d := range data {
		// Converting tens of millions of values is the slow part of a load: in parallel.
		dst := stage[off : off+len(d)]
		wg.Go(func() {
			for j, x := range d {
				dst[j] = safetensors.Float32ToBF16(x)
			}
		})
		ts[i] = &Tensor{ptr: base + cu.DevicePtr(2*off), n: len(d), bf16: true, pooled: true}
		off += (len(d) + align - 1) &^ (align - 1)
	}
	wg.Wait()
	steps := []func() error{
		func() error { return p.computed.Record(p.compute) },
		func() error { return p.upload.Wait(p.computed, 0) },
		func() error { return p.copying.Record(p.upload) },
		func() error { return cu.MemcpyHtoDAsync(base, p.staging, int64(2*off), p.upload) },
		func() error { return p.uploaded.Record(p.upload) },
		func() error { return p.ready[slot].Record(p.upload) },
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return nil, fmt.Errorf("cuda: uploading an adapter: %w", err)
		}
	}
	p.free = p.free[:len(p.free)-1]
	p.loading[slot] = true
	return ts, nil
}

// slotOf is the slot holding a pooled tensor.
func (p *adapterPool) slotOf(t *Tensor) int {
	return int(int64(t.ptr-p.base) / (int64(p.slotElems) * 2))
}

// waitFor makes the compute stream wait for the uploads of those slots still loading.
func (p *adapterPool) waitFor(slots map[int]bool) error {
	for s := range slots {
		if !p.loading[s] {
			continue
		}
		if err := p.compute.Wait(p.ready[s], 0); err != nil {
			return fmt.Errorf("cuda: waiting for an adapter upload: %w", err)
		}
		delete(p.loading, s)
	}
	return nil
}

func pointers[T any](v []T) []*T {
	ps := make([]*T, len(v))
	for i := range v {
		ps[i] = &v[i]
	}
	return ps
}

// release returns the slot holding ts (as store returned them).
func (p *adapterPool) release(ts []gpukern.Tensor) {
	if len(ts) == 0 {
		return
	}
	p.free = append(p.free, p.slotOf(dev(ts[0])))
	for _, t := range ts {
		dev(t).ptr = 0
	}
}

// AdapterWeights implements gpukern.Backend: one slot of the adapter pool, filled
// asynchronously.
func (b *Backend) AdapterWeights(data [][]float32) (ts []gpukern.Tensor, err error) {
	b.do(func() {
		b.flush() // the upload waits for the work recorded so far, which may read the slot
		ts, err = b.pool.store(data)
	})
	return ts, err
}

// reads notes that the recorded work reads t: if t is in an adapter slot still loading, the
// next flush makes the compute stream wait for that upload. Callers are inside b.do.
func (b *Backend) reads(t *Tensor) {
	if t.pooled {
		b.slotsUsed[b.pool.slotOf(t)] = true
	}
}

// FreeAdapterWeights implements gpukern.Backend.
func (b *Backend) FreeAdapterWeights(ts []gpukern.Tensor) { b.pool.release(ts) }
