//go:build cuda

package cuda

import (
	"fmt"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"
)

// devBuf is a device buffer reused from step to step and grown on demand.
type devBuf struct {
	ptr  drv.DevicePtr
	size int64
}

// scratch holds the backend's own temporaries.
type scratch struct {
	gemmIn devBuf // a GEMM input in bf16: converted, or written beside it by its producer (bf16Copy)
	ids    devBuf // sampled token ids
	blas   devBuf // cuBLAS's workspace

	part      devBuf // split-context attention partials
	partCount devBuf // a split context's parts done per decode row and head, zero between launches

	gemmPart  devBuf // a split GEMM's chunk sums (gemm.cuh's gemm_small)
	gemmCount devBuf // a split GEMM's chunks done per tile, zero between launches
}

func (s *scratch) free() {
	for _, d := range []*devBuf{&s.gemmIn, &s.part, &s.partCount, &s.ids, &s.blas, &s.gemmPart, &s.gemmCount} {
		if d.ptr != 0 {
			_ = drv.MemFree(d.ptr)
			*d = devBuf{}
		}
	}
}

// zeroed is buffer for memory that must hold zeros where no kernel has written: a grown
// buffer is cleared.
func (b *Backend) zeroed(d *devBuf, size int64) drv.DevicePtr {
	before := d.size
	p := b.buffer(d, size)
	if d.size != before && p != 0 {
		b.fail(drv.MemsetD8(p, 0, d.size))
	}
	return p
}

// buffer returns d with room for size bytes. Growing first runs the recorded work and waits
// for it, since it may use the old buffer. Callers are inside b.do.
func (b *Backend) buffer(d *devBuf, size int64) drv.DevicePtr {
	if size <= d.size {
		return d.ptr
	}
	b.flush()
	if err := b.stream.Synchronize(); err != nil {
		b.fail(fmt.Errorf("cuda: a kernel failed: %w", err))
		return 0
	}
	size = max(size, d.size*3/2)
	if d.ptr != 0 {
		_ = drv.MemFree(d.ptr)
		*d = devBuf{}
	}
	p, err := drv.MemAlloc(size)
	if err != nil {
		b.fail(fmt.Errorf("cuda: scratch buffer of %d bytes: %w", size, err))
		return 0
	}
	*d = devBuf{ptr: p, size: size}
	return p
}
