//go:build cuda

package cuda_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/worker/engine"
)

// tolGraph bounds a replayed graph against the same kernels launched one by one: the same
// arithmetic, so only a different cuBLAS algorithm could make them differ at all.
const tolGraph = 1e-6

// A decode step replayed as a CUDA graph, with each step's new tokens, positions, KV slots
// and adapter tables, gives what eager launches give, step by step.
func TestGraphReplayMatchesEager(t *testing.T) {
	for _, set := range golden.Sets {
		t.Run(set, func(t *testing.T) {
			after := loadGPUFixture(t, set).sameOffAndOn(t, set+" graph vs eager", gpu.SetGraphs)
			t.Logf("graphs: %+v", after)
		})
	}
}

// Kernels launched early (host.Step's Early: each starts while the one before it finishes and
// waits for its end itself) give what kernels launched once the one before has ended give,
// graphs captured again after each switch. On a GPU this is what would catch a kernel that
// reads its input before its wait; the emulator runs kernels one after another. The backend
// must still have early launches on at the end: an sm_90 GPU and a CUDA 12 driver take them
// (the emulator stands for one), and a refusal turns them off for good.
func TestEarlyLaunchMatches(t *testing.T) {
	for _, set := range golden.Sets {
		t.Run(set, func(t *testing.T) {
			loadGPUFixture(t, set).sameOffAndOn(t, set+" early vs late launches", gpu.SetEarlyLaunch)
		})
	}
	if d := gpu.Describe(); !strings.HasSuffix(d, "early launches on") {
		t.Errorf("device %q: early launches are off", d)
	}
}

// sameOffAndOn runs batch with a setting off, then on, and checks that the second run
// replayed graphs (captured again after the switch) without a failed capture, and gave the
// same steps. It returns the graph stats after it.
func (f *gpuFixture) sameOffAndOn(t *testing.T, check string, set func(on bool)) host.GraphStats {
	t.Helper()
	set(false)
	off := f.batch(t)
	set(true)
	before := gpu.GraphStats()
	on := f.batch(t)
	after := gpu.GraphStats()
	if after.Failed > before.Failed {
		t.Fatalf("graph capture failed: %v", after.FirstFailure)
	}
	if after.Replayed == before.Replayed {
		t.Fatalf("no step was replayed as a graph (stats before %+v, after %+v)", before, after)
	}
	f.same(t, check, on, off)
	return after
}

// The LoRA kernels (lora_shrink and lora_expand) give the same on the compute stream as on
// the side stream, and on a side stream of the main stream's priority as on the prioritized
// one, graphs captured again after the priority's switch. One model family: none of this
// depends on it.
func TestLoRAVariantsMatch(t *testing.T) {
	set := golden.Sets[0]
	f := loadGPUFixture(t, set)
	side, ran := f.profiledBatch(t)
	if !slices.Contains(ran, "lora_shrink") || !slices.Contains(ran, "lora_expand") {
		t.Errorf("kernels run: %v; want lora_shrink and lora_expand", ran)
	}
	gpu.SetLoRASideStream(false)
	f.same(t, set+" one stream vs side stream", f.batch(t), side)
	gpu.SetLoRASideStream(true)
	gpu.SetLoRASidePriority(false)
	defer gpu.SetLoRASidePriority(true)
	before := gpu.GraphStats()
	f.same(t, set+" unprioritized vs prioritized side stream", f.batch(t), side)
	if after := gpu.GraphStats(); after.Replayed == before.Replayed || after.Captured == before.Captured {
		t.Errorf("no graph was captured again and replayed after the switch (before %+v, after %+v)", before, after)
	}
	if err := gpu.Sync(); err != nil {
		t.Fatal(err)
	}
}

// Our decode GEMMs (gemm_small, gemm_deep), the lean ones beside LoRA blocks of 128 threads
// (SetLeanGEMM) and cuBLAS give a model's steps the same tokens (the bench's "GEMMs by
// cuBLAS" and lean rows compute the same thing). Their sums differ in order, by
// fp32 rounding (TestSmallGEMM), and where that moves an activation across a bf16 rounding
// boundary the next GEMM's input differs by a bf16 step: the logits by up to a few 1e-3 in
// the tiny models, so the tolerance is that of paths that round to bf16.
func TestGEMMKernelsMatch(t *testing.T) {
	set := golden.Sets[0]
	f := loadGPUFixture(t, set)
	ours, ran := f.profiledBatch(t)
	if !slices.ContainsFunc(ran, func(k string) bool { return strings.HasPrefix(k, "gemm_") }) {
		t.Errorf("kernels run: %v; want gemm_small or gemm_deep", ran)
	}
	gpu.SetLeanGEMM(true)
	f.within(t, set+" lean GEMMs and LoRA blocks of 128 threads vs ours", f.batch(t), ours, tolBF16)
	gpu.SetLeanGEMM(false)
	gpu.SetSmallGEMM(false)
	defer gpu.SetSmallGEMM(true)
	f.within(t, set+" cuBLAS vs our GEMMs", f.batch(t), ours, tolBF16)
}

// batch runs every golden case in one batch and returns the sequences.
func (f *gpuFixture) batch(t *testing.T) []*engine.Sequence {
	var seqs []*engine.Sequence
	for _, c := range f.g.Cases {
		seqs = append(seqs, f.seq(c, true))
	}
	f.run(t, seqs...)
	return seqs
}

// profiledBatch runs batch under the backend's profiler and returns the sequences and the
// names of the kernels that ran, sorted.
func (f *gpuFixture) profiledBatch(t *testing.T) ([]*engine.Sequence, []string) {
	t.Helper()
	var seqs []*engine.Sequence
	prof, err := gpu.Profile(func() { seqs = f.batch(t) })
	if err != nil {
		t.Fatal(err)
	}
	return seqs, slices.Sorted(maps.Keys(prof))
}

// same checks that two runs of batch gave the same tokens and, within tolGraph, the same logits.
func (f *gpuFixture) same(t *testing.T, check string, got, want []*engine.Sequence) {
	t.Helper()
	f.within(t, check, got, want, tolGraph)
}

// within checks that two runs of batch gave the same tokens and, within tol, the same logits.
func (f *gpuFixture) within(t *testing.T, check string, got, want []*engine.Sequence, tol float64) {
	t.Helper()
	for i, c := range f.g.Cases {
		if !slices.Equal(got[i].Output, want[i].Output) {
			t.Errorf("%s: %s: %v, want %v", check, caseName(c), got[i].Output, want[i].Output)
		}
		for step := range min(len(got[i].Logits), len(want[i].Logits)) {
			record(t, check, fmt.Sprintf("%s step %d", caseName(c), step), got[i].Logits[step], want[i].Logits[step], tol)
		}
	}
}
