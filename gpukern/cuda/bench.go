//go:build cuda

package cuda

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
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
	var start, end drv.Event
	var err error
	b.do(func() {
		b.flush()
		if start, err = drv.MakeEvent(drv.DefaultEvent); err == nil {
			if end, err = drv.MakeEvent(drv.DefaultEvent); err == nil {
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
			_ = drv.DestroyEvent(&start)
			_ = drv.DestroyEvent(&end)
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

// copyRuns is how many copies CopyBandwidth times, after one that warms up.
const copyRuns = 9

// copyFill is the byte CopyBandwidth's source holds, to check that the copies arrived.
const copyFill = 0xa5

// CopyBandwidth measures the device memory's bandwidth as a device-to-device copy of n bytes
// sees it: bytes read and written per second, at the median of copyRuns copies. It checks
// the copy's first and last bytes: a copy that moved nothing would time as a fast one.
func (b *Backend) CopyBandwidth(n int64) (float64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("cuda: copy bandwidth: a copy of %d bytes", n)
	}
	var src, dst drv.DevicePtr
	var err error
	b.do(func() {
		if src, err = drv.MemAlloc(n); err == nil {
			if dst, err = drv.MemAlloc(n); err != nil {
				_ = drv.MemFree(src)
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("cuda: copy bandwidth: %w", err)
	}
	defer b.do(func() {
		_ = drv.MemFree(src)
		_ = drv.MemFree(dst)
	})
	b.do(func() { err = drv.MemsetD8(src, copyFill, n) })
	if err != nil {
		return 0, fmt.Errorf("cuda: copy bandwidth: %w", err)
	}
	var copyErr error
	copyOnce := func() {
		b.do(func() { copyErr = cmp.Or(copyErr, drv.MemcpyDtoDAsync(dst, src, n, b.stream)) })
	}
	times := make([]time.Duration, 0, copyRuns)
	for i := range copyRuns + 1 {
		d, err := b.Time(copyOnce)
		if err = cmp.Or(copyErr, err); err != nil {
			return 0, fmt.Errorf("cuda: copy bandwidth: %w", err)
		}
		if i > 0 {
			times = append(times, d)
		}
	}
	if err := b.checkCopy(dst, n); err != nil {
		return 0, fmt.Errorf("cuda: copy bandwidth: %w", err)
	}
	slices.Sort(times)
	median := times[len(times)/2]
	if median <= 0 {
		return 0, fmt.Errorf("cuda: copy bandwidth: a copy of %d bytes took %v, too little to time", n, median)
	}
	return float64(2*n) / median.Seconds(), nil
}

// checkCopy reads back the first and last bytes of a copy of n bytes to dst and checks that
// they hold copyFill.
func (b *Backend) checkCopy(dst drv.DevicePtr, n int64) error {
	var head, tail [64]byte
	k := min(n, int64(len(head)))
	var err error
	b.do(func() {
		if err = drv.MemcpyDtoH(unsafe.Pointer(&head[0]), dst, k); err == nil {
			err = drv.MemcpyDtoH(unsafe.Pointer(&tail[0]), dst+drv.DevicePtr(n-k), k)
		}
	})
	if err != nil {
		return fmt.Errorf("reading the copy back: %w", err)
	}
	for i, c := range append(head[:k], tail[:k]...) {
		if c != copyFill {
			return fmt.Errorf("byte %d of those read back is %#x, not %#x: the copy did not arrive", i, c, copyFill)
		}
	}
	return nil
}

// LastAdapterUpload waits for the last adapter upload and returns the host time spent
// putting it in bf16 into page-locked memory and how long its transfer from there to the
// adapter's slot took.
func (b *Backend) LastAdapterUpload() (prepare, transfer time.Duration, err error) {
	var ms float64
	b.do(func() {
		var u *host.Upload
		if u, err = b.stagedUpload(); err != nil {
			return
		}
		st := &b.pool.stages[u.Buffer]
		if err = st.uploaded.Synchronize(); err == nil {
			ms, err = st.copying.Elapsed(st.uploaded)
		}
		prepare = u.Prepare
	})
	if err != nil {
		return 0, 0, fmt.Errorf("cuda: timing the adapter upload: %w", err)
	}
	return prepare, time.Duration(ms * float64(time.Millisecond)), nil
}

// WaitAdapterStaged waits until the last adapter upload is in bf16 in page-locked memory and
// its transfer queued: what is left of it runs on the copy engine alone.
func (b *Backend) WaitAdapterStaged() error {
	var err error
	b.do(func() { _, err = b.stagedUpload() })
	if err != nil {
		return fmt.Errorf("cuda: staging the adapter upload: %w", err)
	}
	return nil
}

// stagedUpload waits until the latest adapter upload is staged (WaitAdapterStaged) and returns
// it. Callers are inside b.do.
func (b *Backend) stagedUpload() (*host.Upload, error) {
	u := b.pool.uploads.Latest()
	if u == nil {
		return nil, errors.New("no adapter was uploaded")
	}
	return u, u.Wait()
}

// Describe names the GPU, its architecture, the driver's CUDA version and whether kernels
// launch early (Config.NoEarlyLaunch).
func (b *Backend) Describe() string {
	name, err := b.dev.Name()
	if err != nil {
		name = "an NVIDIA GPU"
	}
	v := drv.Version()
	early := "off"
	b.do(func() {
		if b.early {
			early = "on" // still: a driver that refused one turned them off
		}
	})
	return fmt.Sprintf("%s (%s), driver CUDA %d.%d, early launches %s", name, b.arch, v/1000, v%1000/10, early)
}
