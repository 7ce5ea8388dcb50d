//go:build cuda

package cuda

import (
	"fmt"
	"slices"
	"time"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// cuBLAS GEMMs picked by timing (SetTunedGEMM). cublasGemmEx picks its algorithm by a
// heuristic, which for a decode batch's skinny GEMMs (33 to 128 rows against the weights)
// need not pick the fastest: on the H100, cuBLAS streamed the weights at about 2.0 TB/s at
// batch 128 (f384bcb), our own kernels at 2.1 at batch 32. Tuned, the first GEMM of each shape
// that cuBLAS runs is timed, on its own operands, as GemmEx and as each algorithm cuBLASLt's
// heuristic offers, and the shape's GEMMs run the fastest from then on. The heuristic's first
// few algorithms are also timed with their k cut into parts (split-K), where they can be: a
// skinny GEMM has few output tiles (batch 128's o projection: 32 of 128 × 128 against the
// H100's 132 SMs), and parts of k give it more blocks.

// The timing of each candidate: untimed runs, then timed ones whose mean counts; how many of
// cuBLASLt's algorithms are tried (its heuristic's best guesses); and how many of the first
// of those are tried again with k cut in each of tuneSplits parts.
const (
	tuneWarmup     = 2
	tuneRuns       = 10
	tuneAlgos      = 16
	tuneSplitAlgos = 4
)

var tuneSplits = []int{2, 3, 4, 6, 8} // the parts of k a split-K candidate has

// tunedAlgo is a shape's pick among cuBLASLt's algorithms, and its entry in the log.
type tunedAlgo struct {
	plan *drv.BlasPlan
	algo drv.BlasAlgo
	log  int
}

// tuning is SetTunedGEMM's state.
type tuning struct {
	on    bool
	picks map[[3]int]int // by m, n, k: 0 for GemmEx, else 1 + an index into algos
	algos []tunedAlgo
	log   []host.TunedGEMM
}

// SetTunedGEMM runs each GEMM that cuBLAS runs with the fastest of cublasGemmEx and
// cuBLASLt's algorithms, timed on the first GEMM of its shape (on), or with GemmEx (off, the
// default). Benchmarks compare the two.
func (b *Backend) SetTunedGEMM(on bool) {
	b.do(b.flush)
	b.tune.on = on
}

// TunedGEMMs is what the timing found for each shape so far, in the order they were timed.
func (b *Backend) TunedGEMMs() []host.TunedGEMM {
	var log []host.TunedGEMM
	b.do(func() { log = slices.Clone(b.tune.log) })
	return log
}

// gemmAlgo is the cell of a cuBLAS GEMM's op that says how it runs: 0 for GemmEx, else 1 + an
// index into b.tune.algos; a shape seen for the first time while tuning is on is timed first.
// Callers are inside b.do.
func (b *Backend) gemmAlgo(out, x, w drv.DevicePtr, m, n, k int) uint64 {
	if !b.tune.on {
		return 0
	}
	key := [3]int{m, n, k}
	pick, ok := b.tune.picks[key]
	if !ok {
		pick = b.timeGEMMs(out, x, w, m, n, k)
		if b.tune.picks == nil {
			b.tune.picks = map[[3]int]int{}
		}
		b.tune.picks[key] = pick
	}
	return uint64(pick)
}

// timeGEMMs times the m × n × k GEMM of out, x and w as GemmEx and as each of cuBLASLt's
// algorithms, logs the times and returns the pick (gemmAlgo's value). The work recorded so far
// runs first: x is then what the GEMM will read. Callers are inside b.do.
func (b *Backend) timeGEMMs(out, x, w drv.DevicePtr, m, n, k int) int {
	b.drain()
	if b.err != nil {
		return 0
	}
	t := host.TunedGEMM{M: m, N: n, K: k}
	plan, algos, err := b.blas.Plan(m, n, k, tuneAlgos)
	if err != nil {
		t.Note = err.Error()
	}
	for _, a := range algos[:min(len(algos), tuneSplitAlgos)] {
		for _, s := range tuneSplits {
			if v, ok := b.blas.SplitK(plan, a, s); ok {
				algos = append(algos, v)
			}
		}
	}
	gemmEx := func() error { return b.blas.MatMulBF16(uintptr(out), uintptr(x), uintptr(w), m, n, k, false) }
	t.Times = append(t.Times, b.timeRuns(gemmEx))
	for i := range algos {
		lt := func() error { return b.blas.MatMulAlgo(plan, &algos[i], uintptr(out), uintptr(x), uintptr(w), false) }
		t.Times = append(t.Times, b.timeRuns(lt))
		t.Splits = append(t.Splits, algos[i].Splits())
	}
	t.Pick = host.Fastest(t.Times)
	b.tune.log = append(b.tune.log, t)
	if t.Pick == 0 {
		if plan != nil {
			plan.Destroy()
		}
		return 0
	}
	b.tune.algos = append(b.tune.algos, tunedAlgo{plan, algos[t.Pick-1], len(b.tune.log) - 1})
	return len(b.tune.algos)
}

// timeRuns is the mean time of tuneRuns runs of gemm on the stream after tuneWarmup untimed
// ones (Time); 0 where it failed to run or to be timed. Callers are inside b.do, with nothing
// recorded.
func (b *Backend) timeRuns(gemm func() error) time.Duration {
	var err error
	for i := 0; i < tuneWarmup && err == nil; i++ {
		err = gemm()
	}
	d, terr := b.Time(func() {
		for i := 0; i < tuneRuns && err == nil; i++ {
			err = gemm()
		}
	})
	if err != nil || terr != nil || d <= 0 {
		return 0
	}
	return d / tuneRuns
}

// runGEMM runs a cuBLAS GEMM op (out, x, w, m, n, k and gemmAlgo's cell) on the main stream.
// A cuBLASLt algorithm that refuses the call (one may need its operands aligned more than
// this GEMM's are: the heuristic assumes 256 bytes) leaves it to GemmEx, and the log counts
// it. Callers are inside b.do.
func (b *Backend) runGEMM(c []uint64) error {
	out, x, w, m, n, k := uintptr(c[0]), uintptr(c[1]), uintptr(c[2]), int(c[3]), int(c[4]), int(c[5])
	if a := c[6]; a > 0 {
		if a > uint64(len(b.tune.algos)) {
			return fmt.Errorf("no tuned algorithm %d", a)
		}
		t := &b.tune.algos[a-1]
		if b.blas.MatMulAlgo(t.plan, &t.algo, out, x, w, false) == nil {
			return nil
		}
		b.tune.log[t.log].Refused++
	}
	return b.blas.MatMulBF16(out, x, w, m, n, k, false)
}

// freeTuned frees the plans of the tuned shapes. Callers are inside b.do.
func (b *Backend) freeTuned() {
	for _, t := range b.tune.algos {
		t.plan.Destroy()
	}
	b.tune = tuning{}
}
