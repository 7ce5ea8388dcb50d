//go:build cuda

package cuda

import (
	"fmt"
	"strings"
	"time"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// Profile runs f with every recorded launch timed by CUDA events around it (eagerly, no
// graphs) and returns the time spent per kernel name; GEMMs are named by their n×k. Each
// interval also holds any gap before its kernel, which is small while the host launches
// faster than the GPU runs.
func (b *Backend) Profile(f func()) (map[string]time.Duration, error) {
	b.do(b.flush)
	b.prof = map[string]time.Duration{}
	defer func() { b.prof = nil }()
	f()
	b.do(b.flush)
	prof := b.prof
	if err := b.Sync(); err != nil {
		return nil, err
	}
	if b.profErr != nil {
		err := b.profErr
		b.profErr = nil
		return nil, err
	}
	return prof, nil
}

// issueTimed launches ops with an event after each and adds their times to b.prof. Callers
// are inside b.do.
func (b *Backend) issueTimed(ops []host.Op) {
	evs := make([]drv.Event, len(ops)+1)
	defer func() {
		for i := range evs {
			if evs[i] != (drv.Event{}) {
				_ = drv.DestroyEvent(&evs[i])
			}
		}
	}()
	for i := range evs {
		var err error
		if evs[i], err = drv.MakeEvent(drv.DefaultEvent); err != nil {
			b.profErr = fmt.Errorf("cuda: profiling events: %w", err)
			b.issue(ops)
			return
		}
	}
	b.fail(evs[0].Record(b.stream))
	for i := range ops {
		b.issue(ops[i : i+1])
		b.fail(evs[i+1].Record(b.stream))
	}
	if err := evs[len(ops)].Synchronize(); err != nil {
		b.fail(fmt.Errorf("cuda: a kernel failed: %w", err))
		return
	}
	for i := range ops {
		ms, err := evs[i].Elapsed(evs[i+1])
		if err != nil {
			b.profErr = fmt.Errorf("cuda: profiling: %w", err)
			return
		}
		name := ops[i].Name
		if ops[i].Fn == 0 || strings.HasPrefix(name, "gemm_") { // cuBLAS's, gemm_small's or gemm_deep's (out, x, w, m, n, k)
			name = fmt.Sprintf("%s %d×%d", name, ops[i].Cells[4], ops[i].Cells[5])
		}
		b.prof[name] += time.Duration(ms * float64(time.Millisecond))
	}
}
