//go:build cuda

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/bench/engine"
)

// `bench engine` on the CUDA backend, every variant of it, end to end (make emu: on the
// emulator of gpukern/cuda/drv). bench/engine's own tests check the run's logic against a fake
// backend; this one runs the backend the GPU run will, so that a variant whose setting breaks
// the backend (a kernel not loaded, a graph that cannot be captured, a library call refused)
// fails here rather than in a scarce GPU session. Batch 2 takes our GEMMs and batch 34 cuBLAS's.
func TestBenchEngineOnCUDA(t *testing.T) {
	dir := t.TempDir()
	const steps = 2
	rep := tinyBench(t, dir, "--backend", "cuda", "--batches", "2,34", "--adapters", "0", "--contexts", "8", "--steps", "2",
		"--warmup", "1", "--prefill-prompt", "16", "--prefill-seqs", "2")
	if rep.Error != "" {
		t.Fatalf("report error: %s", rep.Error)
	}
	ran := map[string][]int{} // variant: batches
	for _, d := range rep.Decode {
		if !(d.StepMS > 0) || d.P90MS < d.StepMS {
			t.Errorf("%s at batch %d: step %v ms, p90 %v", d.Variant, d.Batch, d.StepMS, d.P90MS)
		}
		ran[d.Variant] = append(ran[d.Variant], d.Batch)
	}
	for variant, want := range map[string][]int{
		engine.WithLoRA: {2, 34}, engine.LoRAOff: {2, 34}, engine.AttentionOff: {2, 34},
		engine.GraphsOff: {2, 34}, engine.OneStream: {2, 34}, engine.Unprioritized: {2, 34}, engine.NotEarly: {2, 34},
		engine.RoPEApart: {2, 34},
		engine.OneLaunch: {2},
		engine.CuBLAS:    {2}, engine.CuBLASAttentionOff: {2}, engine.NotSplit: {2}, engine.NotSplitAttentionOff: {2},
		engine.Deep: {2}, engine.DeepAttentionOff: {2}, engine.Lean: {2}, engine.LeanAttentionOff: {2},
		engine.Timed: {34}, engine.TimedAttentionOff: {34},
	} {
		if got := ran[variant]; !slices.Equal(got, want) {
			t.Errorf("%q ran at batches %v, want %v", variant, got, want)
		}
	}
	// The timed rows' shapes: cuBLAS's GEMMs at batch 34 (the tiny model's five projections
	// and its LM head), each timed as GemmEx, as the emulator's two cuBLASLt algorithms and as
	// the first of them with k split in 2, 3, 4, 6 and 8 parts.
	if len(rep.TimedGEMMs) < 5 {
		t.Errorf("%d shapes timed, want the 5 of the tiny model's GEMMs: %+v", len(rep.TimedGEMMs), rep.TimedGEMMs)
	}
	for _, g := range rep.TimedGEMMs {
		if g.M != 34 || !(g.GemmExUS > 0) || len(g.AlgosUS) != 7 || slices.Min(g.AlgosUS) <= 0 || !slices.Equal(g.Splits, []int{0, 0, 2, 3, 4, 6, 8}) ||
			g.Pick < 0 || g.Pick > 7 || g.Refused != 0 {
			t.Errorf("timed GEMM %+v", g)
		}
	}
	// The profiles: batch 2 on our GEMMs, batch 34 on cuBLAS's, the LoRA kernels in both.
	if len(rep.Profiles) != 2 {
		t.Fatalf("%d profiles, want batches 2 and 34", len(rep.Profiles))
	}
	for i, p := range rep.Profiles {
		var names []string
		for _, k := range p.Kernels {
			names = append(names, k.Name)
		}
		ours := slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "gemm_") })
		cublas := slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "gemm ") })
		if p.Batch != []int{2, 34}[i] || ours != (i == 0) || cublas != (i == 1) ||
			!slices.Contains(names, "lora_shrink") || !slices.Contains(names, "lora_expand") || !slices.Contains(names, "decode_split") {
			t.Errorf("profile of batch %d: kernels %v", p.Batch, names)
		}
	}
	if g := rep.Graphs; g == nil || g.Failed != 0 || g.Replayed == 0 {
		t.Errorf("graphs %+v: want replays and no failed capture", g)
	}
	if l := rep.Loading; l == nil || l.Loads != steps || !(l.UploadMS > 0) || !(l.StepMS > 0) {
		t.Errorf("loading %+v", l)
	}
	if rep.Memory == nil || rep.Memory.UsedBytes <= 0 || !(rep.Prefill.TokensPerS > 0) || !(rep.CopyBandwidth > 0) || rep.CopyBytes <= 0 {
		t.Errorf("memory %+v, prefill %+v, copy bandwidth %g", rep.Memory, rep.Prefill, rep.CopyBandwidth)
	}
	md, err := os.ReadFile(filepath.Join(dir, "engine.md"))
	if err != nil || !strings.Contains(string(md), "| 34 × ") || !strings.Contains(string(md), "device-to-device copy") {
		t.Errorf("engine.md (%v) lacks the timed GEMMs' table or the copy bandwidth:\n%s", err, md)
	}

	// The winners measured together (gpu-session.sh): the defaults' rows alone, with the
	// settings in place for the whole run.
	rep = tinyBench(t, filepath.Join(dir, "with"), "--backend", "cuda", "--batches", "2,34", "--adapters", "0", "--contexts", "8",
		"--steps", "1", "--warmup", "1", "--prefill-prompt", "16", "--prefill-seqs", "1", "--with", "lean,unsplit,tuned")
	var variants []string
	for _, d := range rep.Decode {
		variants = append(variants, d.Variant)
	}
	defaults := []string{engine.AttentionOff, engine.LoRAOff, engine.WithLoRA}
	if !slices.Equal(rep.Settings, []string{"lean", "unsplit", "tuned"}) || !slices.Equal(variants, slices.Concat(defaults, defaults)) ||
		len(rep.TimedGEMMs) < 5 {
		t.Errorf("--with run: settings %v, rows %v, %d shapes timed", rep.Settings, variants, len(rep.TimedGEMMs))
	}
}
