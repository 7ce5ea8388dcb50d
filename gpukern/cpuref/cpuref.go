// Package cpuref implements gpukern.Backend in pure Go with float32 arithmetic on all cores.
// It is the default backend and the reference the CUDA kernels are tested against.
//
// Every output element is computed by one goroutine in a fixed order that does not depend on
// the batch it is part of or on how work is split between cores, so a row's result is
// bit-identical whether it runs alone or in a batch, and whether its prompt was computed in
// one prefill or token by token.
package cpuref

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// Tensor is a host buffer.
type Tensor struct{ data []float32 }

// Len is the number of elements.
func (t *Tensor) Len() int { return len(t.data) }

// Data exposes the buffer (tests and debugging).
func (t *Tensor) Data() []float32 { return t.data }

// Backend is the pure-Go backend.
type Backend struct {
	workers int
}

var _ gpukern.Backend = (*Backend)(nil)

// New returns a backend using up to workers goroutines per kernel (0 = GOMAXPROCS).
func New(workers int) *Backend {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &Backend{workers: workers}
}

// Name implements gpukern.Backend.
func (b *Backend) Name() string { return "cpu" }

// Alloc implements gpukern.Backend.
func (b *Backend) Alloc(n int) gpukern.Tensor { return &Tensor{data: make([]float32, n)} }

// Weight implements gpukern.Backend.
func (b *Backend) Weight(data []float32) gpukern.Tensor {
	return &Tensor{data: append([]float32(nil), data...)}
}

// Free implements gpukern.Backend; the garbage collector reclaims the memory.
func (b *Backend) Free(t gpukern.Tensor) { buf(t).data = nil }

// Upload implements gpukern.Backend.
func (b *Backend) Upload(t gpukern.Tensor, src []float32) { copy(buf(t).data, src) }

// Download implements gpukern.Backend.
func (b *Backend) Download(dst []float32, t gpukern.Tensor) { copy(dst, buf(t).data) }

// Sync implements gpukern.Backend: CPU kernels finish before they return.
func (b *Backend) Sync() error { return nil }

func buf(t gpukern.Tensor) *Tensor {
	c, ok := t.(*Tensor)
	if !ok {
		// Mixing backends is a programming error that no input can cause.
		panic(fmt.Sprintf("cpuref: tensor of type %T from another backend", t))
	}
	return c
}

func data(t gpukern.Tensor) []float32 { return buf(t).data }

// parallel runs fn over [0,n) split into at most b.workers contiguous chunks of at least
// grain items.
func (b *Backend) parallel(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	chunks := min(b.workers, (n+grain-1)/grain)
	if chunks <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	size := (n + chunks - 1) / chunks
	for lo := 0; lo < n; lo += size {
		hi := min(lo+size, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// AllocCache implements gpukern.Backend: the cache is float32 like every other buffer.
func (b *Backend) AllocCache(n int) gpukern.Tensor { return b.Alloc(n) }

// AdapterWeights implements gpukern.Backend: host memory has no pool to run out of. bf16
// data is widened to float32, exactly.
func (b *Backend) AdapterWeights(data []gpukern.HostTensor) ([]gpukern.Tensor, error) {
	ts := make([]gpukern.Tensor, len(data))
	for i, d := range data {
		v := d.F32
		if d.BF16 != nil {
			v = make([]float32, len(d.BF16))
			for j, x := range d.BF16 {
				v[j] = safetensors.BF16ToFloat32(x)
			}
		}
		ts[i] = b.Weight(v)
	}
	return ts, nil
}

// FreeAdapterWeights implements gpukern.Backend.
func (b *Backend) FreeAdapterWeights(ts []gpukern.Tensor) {
	for _, t := range ts {
		b.Free(t)
	}
}
