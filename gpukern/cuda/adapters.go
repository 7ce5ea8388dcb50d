//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
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
//
// An upload returns at once: a goroutine of its own (host.Uploads) converts the adapter to
// bf16 in one of two page-locked staging buffers and copies it on the upload stream, so
// neither the conversion nor the transfer holds up the compute stream's steps. Only a step
// that reads a slot still loading waits for it (waitFor); the engine does not schedule one
// until AdapterReady says the upload has landed.
type adapterPool struct {
	base      drv.DevicePtr
	slotElems int
	free      []int
	upload    drv.Stream
	compute   drv.Stream
	stages    [2]stage
	freed     []drv.Event // per slot: the compute work queued before its upload, which may read the old adapter
	ready     []drv.Event // per slot: the end of its last upload
	loading   []bool      // per slot: its upload is one the compute stream has not waited for
	uploads   *host.Uploads
}

// uploadChunk is the most bytes an adapter's transfer copies at once. A copy engine runs the
// copies queued to it one after another, whatever their streams: a step's metadata (a few KB
// a flush, arena.send) queued to the same engine behind an 80 MB adapter would wait for all
// of it, about 1.8 ms on the H100, where in chunks it waits for one at most (about 50 µs).
const uploadChunk = 2 << 20

// stage is a page-locked staging buffer and its last transfer's start and end: the end says
// when the buffer may be written again; both time the transfer (Backend.LastAdapterUpload).
type stage struct {
	buf               unsafe.Pointer // slotElems bf16 values
	copying, uploaded drv.Event
}

func newAdapterPool(slots, slotElems int, ctx drv.Context, compute drv.Stream) (*adapterPool, error) {
	p := &adapterPool{slotElems: slotElems, compute: compute, loading: make([]bool, slots)}
	if err := p.open(slots); err != nil {
		p.close()
		return nil, err
	}
	for i := slots - 1; i >= 0; i-- {
		p.free = append(p.free, i)
	}
	p.uploads = host.NewUploads(len(p.stages), slots, func() error {
		runtime.LockOSThread() // for good: the goroutine ends with the pool
		return drv.SetCurrentContext(ctx)
	})
	return p, nil
}

func (p *adapterPool) open(slots int) error {
	var err error
	size := int64(slots) * int64(p.slotElems) * 2
	if p.base, err = drv.MemAlloc(size); err != nil {
		return fmt.Errorf("cuda: adapter pool of %d slots (%d MiB): %w", slots, size>>20, err)
	}
	if p.upload, err = drv.MakeStream(drv.NonBlocking); err != nil {
		return fmt.Errorf("cuda: upload stream: %w", err)
	}
	for i := range p.stages {
		st := &p.stages[i]
		if st.buf, err = drv.AllocHost(2 * p.slotElems); err != nil {
			return fmt.Errorf("cuda: adapter staging buffer: %w", err)
		}
		if st.copying, err = drv.MakeEvent(drv.DefaultEvent); err != nil {
			return fmt.Errorf("cuda: upload events: %w", err)
		}
		if st.uploaded, err = drv.MakeEvent(drv.DefaultEvent); err != nil {
			return fmt.Errorf("cuda: upload events: %w", err)
		}
	}
	p.freed, p.ready = make([]drv.Event, slots), make([]drv.Event, slots)
	for i := range slots {
		if p.freed[i], err = drv.MakeEvent(drv.DisableTiming); err != nil {
			return fmt.Errorf("cuda: upload events: %w", err)
		}
		if p.ready[i], err = drv.MakeEvent(drv.DisableTiming); err != nil {
			return fmt.Errorf("cuda: upload events: %w", err)
		}
	}
	return nil
}

func (p *adapterPool) close() {
	if p == nil {
		return
	}
	if p.uploads != nil {
		p.uploads.Close() // the queued uploads run first: their buffers and events are in use
	}
	if p.upload != (drv.Stream{}) {
		_ = p.upload.Synchronize()
		_ = p.upload.Destroy()
	}
	events := append(pointers(p.freed), pointers(p.ready)...)
	for i := range p.stages {
		events = append(events, &p.stages[i].copying, &p.stages[i].uploaded)
	}
	for _, e := range events {
		if *e != (drv.Event{}) {
			_ = drv.DestroyEvent(e)
		}
	}
	for _, st := range p.stages {
		if st.buf != nil {
			_ = drv.MemFreeHost(st.buf)
		}
	}
	if p.base != 0 {
		_ = drv.MemFree(p.base)
	}
}

// store takes a free slot for one adapter's tensors and starts their upload. The copy runs
// on the upload stream after the compute work queued so far (which may read the slot's
// previous adapter); the compute stream waits for it only before work that reads the slot
// (waitFor).
func (p *adapterPool) store(data []gpukern.HostTensor) ([]gpukern.Tensor, error) {
	if len(data) == 0 {
		return nil, nil // nothing to hold: no slot taken, none to release
	}
	lens := make([]int, len(data))
	for i, d := range data {
		lens[i] = d.Len()
	}
	need := SlotElems(lens)
	if need > p.slotElems {
		return nil, fmt.Errorf("cuda: adapter of %d elements exceeds a slot of %d (raise the maximum LoRA rank)", need, p.slotElems)
	}
	if len(p.free) == 0 {
		return nil, ErrPoolFull
	}
	slot := p.free[len(p.free)-1]
	if err := p.freed[slot].Record(p.compute); err != nil {
		return nil, fmt.Errorf("cuda: uploading an adapter: %w", err)
	}
	base := p.base + drv.DevicePtr(int64(slot)*int64(p.slotElems)*2)
	ts := make([]gpukern.Tensor, len(data))
	offs := make([]int, len(data))
	off := 0
	for i, n := range lens {
		ts[i] = &Tensor{ptr: base + drv.DevicePtr(2*off), n: n, bf16: true, pooled: true}
		offs[i] = off
		off += (n + align - 1) &^ (align - 1)
	}
	p.uploads.Start(slot, func(u *host.Upload) error { return p.transfer(u, data, offs, base, off) })
	p.free = p.free[:len(p.free)-1]
	p.loading[slot] = true
	return ts, nil
}

// transfer puts data in bf16 into the upload's staging buffer at offsets offs (elements)
// and copies its first n elements to dst; it runs on the uploads' goroutine.
func (p *adapterPool) transfer(u *host.Upload, data []gpukern.HostTensor, offs []int, dst drv.DevicePtr, n int) error {
	st := &p.stages[u.Buffer]
	// The buffer is reused: wait for its previous transfer to have read it.
	if err := st.uploaded.Synchronize(); err != nil {
		return fmt.Errorf("cuda: previous adapter upload: %w", err)
	}
	start := time.Now()
	stage := unsafe.Slice((*uint16)(st.buf), p.slotElems)
	// Converting tens of millions of values (or copying them, from a bf16 host tier) is the
	// slow part of a load: in parallel, on half the processors, so that the engine's loop
	// always finds one to record its steps on.
	host.ToBF16(stage, data, offs, runtime.GOMAXPROCS(0)/2)
	u.Prepare = time.Since(start)
	steps := []func() error{
		func() error { return p.upload.Wait(p.freed[u.Slot], 0) },
		func() error { return st.copying.Record(p.upload) },
		func() error { return copyInChunks(dst, st.buf, int64(2*n), p.upload) },
		func() error { return st.uploaded.Record(p.upload) },
		func() error { return p.ready[u.Slot].Record(p.upload) },
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return fmt.Errorf("cuda: uploading an adapter: %w", err)
		}
	}
	return nil
}

// copyInChunks queues the copy of n bytes of page-locked memory at src to dst on stream, in
// copies of at most uploadChunk bytes.
func copyInChunks(dst drv.DevicePtr, src unsafe.Pointer, n int64, stream drv.Stream) error {
	for off := int64(0); off < n; off += uploadChunk {
		if err := drv.MemcpyHtoDAsync(dst+drv.DevicePtr(off), unsafe.Add(src, off), min(uploadChunk, n-off), stream); err != nil {
			return err
		}
	}
	return nil
}

// landed reports whether the upload into slot has finished: a step reading the slot
// would not wait. An upload that failed counts as landed, so the step that reads it
// reports the error (waitFor).
func (p *adapterPool) landed(slot int) bool {
	if !p.uploading(slot) {
		return true
	}
	u := p.uploads.Last(slot)
	if !u.Done() {
		return false
	}
	if u.Wait() != nil {
		return true
	}
	return p.ready[slot].Query() != drv.NotReady
}

// uploading reports whether slot's upload is one the compute stream has not waited for; a
// released tensor's slot (slotOf of address 0) is none.
func (p *adapterPool) uploading(slot int) bool {
	return slot >= 0 && slot < len(p.loading) && p.loading[slot]
}

// slotOf is the slot holding a pooled tensor.
func (p *adapterPool) slotOf(t *Tensor) int {
	return int(int64(t.ptr-p.base) / (int64(p.slotElems) * 2))
}

// waitFor makes the compute stream wait for the upload into slot if it is still loading,
// once its transfer is queued.
func (p *adapterPool) waitFor(slot int) error {
	if !p.uploading(slot) {
		return nil
	}
	if err := p.uploads.Last(slot).Wait(); err != nil {
		return err
	}
	if err := p.compute.Wait(p.ready[slot], 0); err != nil {
		return fmt.Errorf("cuda: waiting for an adapter upload: %w", err)
	}
	p.loading[slot] = false
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
func (b *Backend) AdapterWeights(data []gpukern.HostTensor) (ts []gpukern.Tensor, err error) {
	b.do(func() {
		b.flush() // the upload waits for the work recorded so far, which may read the slot
		ts, err = b.pool.store(data)
	})
	return ts, err
}

// AdapterReady reports whether the upload of an adapter's tensors (as AdapterWeights
// returned them) has landed, so that a step reading them would not wait for it.
func (b *Backend) AdapterReady(ts []gpukern.Tensor) bool {
	if len(ts) == 0 {
		return true
	}
	var ok bool
	b.do(func() { ok = b.pool.landed(b.pool.slotOf(dev(ts[0]))) })
	return ok
}

// reads notes that the recorded work reads t: if t is in an adapter slot still loading, the
// next flush makes the compute stream wait for that upload. An adapter's tensors share its
// slot, so one of them stands for all. Callers are inside b.do.
func (b *Backend) reads(t *Tensor) {
	if s := b.pool.slotOf(t); t.pooled && s >= 0 && s < len(b.slotsUsed) {
		b.slotsUsed[s] = true
	}
}

// FreeAdapterWeights implements gpukern.Backend.
func (b *Backend) FreeAdapterWeights(ts []gpukern.Tensor) { b.pool.release(ts) }
