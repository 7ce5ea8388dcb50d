package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern/cpuref"
)

// A variant wins where, with LoRA, it beats its default by more than winMargin at the largest
// batch it ran at and loses by no more than that at the others; of winners that choose the
// GEMM kernels each its own way, the one faster at that batch stays.
func TestWinners(t *testing.T) {
	// rows: variant → batch → Δ ms against the default (8 ms a step).
	type rows map[string]map[int]float64
	for _, c := range []struct {
		name string
		rows rows
		want []string
	}{
		{"none ran", rows{}, nil},
		{"each its own", rows{
			Lean:     {1: 0.01, 8: 0.04, 32: -0.2},
			Deep:     {1: -0.3, 8: -0.3, 32: -0.1}, // lean saves more at batch 32
			NotSplit: {1: 0.03, 32: -0.1},          // with lean: they do not exclude each other
			CuBLAS:   {32: 0.3},
			Timed:    {128: -0.3},
		}, []string{"lean", "unsplit", "tuned"}},
		{"deep excludes unsplit", rows{Deep: {32: -0.3}, NotSplit: {32: -0.1}}, []string{"deep"}},
		{"unsplit beats deep", rows{Deep: {32: -0.1}, NotSplit: {32: -0.3}}, []string{"unsplit"}},
		{"a loss at another batch", rows{Lean: {1: 0.2, 32: -0.2}}, nil},
		{"within the margin", rows{Lean: {32: -0.04}, Timed: {128: 0.5}}, nil},
		{"a tie: the first of the settings", rows{CuBLAS: {32: -0.2}, Lean: {32: -0.2}}, []string{"cublas"}},
	} {
		rep := &Report{}
		for variant, byBatch := range c.rows {
			for b, delta := range byBatch {
				rep.Decode = append(rep.Decode, Decode{Variant: WithLoRA, Batch: b, Adapters: min(b, reference), Context: 128, StepMS: 8},
					Decode{Variant: variant, Batch: b, Adapters: min(b, reference), Context: 128, StepMS: 8 + delta})
			}
		}
		if got := rep.Winners(); !slices.Equal(got, c.want) {
			t.Errorf("%s: winners %v, want %v", c.name, got, c.want)
		}
		rep.Settings = []string{"lean"}
		if got := rep.Winners(); got != nil {
			t.Errorf("%s: a run with settings has winners %v", c.name, got)
		}
	}
}

// A run with settings makes each once for the whole run, puts the defaults back after it,
// measures the defaults' rows alone and says so in its report.
func TestRunWithSettings(t *testing.T) {
	cfg := Config{Model: tinyShape(t), Batches: []int{2, 4}, Adapters: []int{0}, Contexts: []int{8}, Rank: 4,
		Steps: 2, Warmup: 1, PrefillPrompt: 16, PrefillSeqs: 2, Settings: []string{"lean", "unsplit", "tuned"}}
	be := &gpuLike{Backend: cpuref.New(1), flushOps: 64}
	rep, err := Run(context.Background(), be, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(be.leanSets, []bool{true, false}) || !slices.Equal(be.splitSets, []bool{false, true}) ||
		!slices.Equal(be.tuneSets, []bool{true, false}) || len(be.deepSets)+len(be.gemmSets)+len(be.graphsOff)+len(be.sideSets) != 0 {
		t.Errorf("settings made: lean %v, split %v, tuned %v, deep %v, ours %v, graphs off %v, side stream %v",
			be.leanSets, be.splitSets, be.tuneSets, be.deepSets, be.gemmSets, be.graphsOff, be.sideSets)
	}
	var variants []string
	for _, d := range rep.Decode {
		if !slices.Contains(variants, d.Variant) {
			variants = append(variants, d.Variant)
		}
	}
	if want := []string{AttentionOff, LoRAOff, WithLoRA}; !slices.Equal(variants, want) || len(rep.Decode) != 6 {
		t.Errorf("%d rows of %v; want 6 of %v", len(rep.Decode), variants, want)
	}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil || !strings.Contains(md.String(), "Settings: lean, unsplit, tuned (`bench engine --with`)") ||
		strings.Contains(md.String(), "Each variant against") {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}
}
