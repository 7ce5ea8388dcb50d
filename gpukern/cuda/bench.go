//go:build cuda

package cuda

import (
	"fmt"
	"time"

	"gorgonia.org/cu"

	"github.com/lorafleet/lorafleet/gpukern"
)

// What bench/engine uses beyond gpukern.Backend.

// RandomWeight makes a bf16 weight of n values, uniform with the given mean and standard
// deviation, on the device (a 7B model's weights need not cross from the host).
func (b *Backend) RandomWeight(n int, mean, std float32, seed uint64) gpukern.Tensor {
	t := b.alloc(n, true)
	b.do(func() {
		a := (&args{}).ptr(t).i64(n).f32(mean).f32(std).raw(seed)
		b.launch("fill_random", b.fn.fillRandom, d1(gridFor(n, threads)), d1(threads), 0, a)
	})
	return t
}

// Time runs f and returns the stream's time between events recorded before and after it
// (the work f records included).
func (b *Backend) Time(f func()) (time.Duration, error) {
	var start, end cu.Event
	var err error
	b.do(func() {
		b.flush()
		if start, err = cu.MakeEvent(cu.DefaultEvent); err == nil {
			if end, err = cu.MakeEvent(cu.DefaultEvent); err == nil {
				err = start.Record(b.stream)
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("cuda: timing events: %w", err)
	}
	f()
	var ms float64
	b.do(func() {
		defer func() {
			_ = cu.DestroyEvent(&start)
			_ = cu.DestroyEvent(&end)
		}()
		b.flush()
		if err = end.Record(b.stream); err == nil {
			if err = end.Synchronize(); err == nil {
				ms, err = start.Elapsed(end)
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("cuda: timing: %w", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// LastAdapterUpload waits for the last adapter upload and returns how long its transfer from
// page-locked host memory to the adapter's slot took.
func (b *Backend) LastAdapterUpload() (time.Duration, error) {
	var ms float64
	var err error
	b.do(func() {
		if err = b.pool.uploaded.Synchronize(); err == nil {
			ms, err = b.pool.copying.Elapsed(b.pool.uploaded)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("cuda: timing the adapter upload: %w", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// Describe names the GPU, its architecture and the driver's CUDA version.
func (b *Backend) Describe() string {
	name, err := b.dev.Name()
	if err != nil {
		name = "an NVIDIA GPU"
	}
	v := cu.Version()
	return fmt.Sprintf("%s (%s), driver CUDA %d.%d", name, b.arch, v/1000, v%1000/10)
}
