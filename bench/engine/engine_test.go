package engine

import (
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/worker/model"
)

// The benchmark runs end to end on the CPU backend with the tiny test model's shape, and
// counts the bytes of a step by the model's shapes (worked out by hand for this shape).
func TestRunOnTheCPU(t *testing.T) {
	root, err := golden.TestdataDir()
	if err != nil {
		t.Fatal(err)
	}
	shape, err := model.LoadConfig(root + "/tiny-llama/model")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Model: shape, Batches: []int{1, 4}, Adapters: []int{1, 0}, Contexts: []int{8}, Rank: 4,
		Steps: 3, Warmup: 1, PrefillPrompt: 16, PrefillSeqs: 2}
	if n, err := cfg.MaxAdapters(); err != nil || n != 4 {
		t.Fatalf("MaxAdapters = %d, %v; want 4", n, err)
	}
	rep, err := Run(cpuref.New(1), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Per (batch, context): attention off, LoRA off, then each distinct adapter count.
	want := []struct {
		variant  string
		batch, k int
		bytes    int64
	}{
		{AttentionOff, 1, 0, 238208},
		{LoRAOff, 1, 0, 238208 + 9*256},
		{WithLoRA, 1, 1, 238208 + 17920 + 9*256},
		{AttentionOff, 4, 0, 238208},
		{LoRAOff, 4, 0, 238208 + 4*9*256},
		{WithLoRA, 4, 1, 238208 + 17920 + 4*9*256},
		{WithLoRA, 4, 4, 238208 + 4*17920 + 4*9*256},
	}
	if len(rep.Decode) != len(want) {
		t.Fatalf("%d decode results, want %d: %+v", len(rep.Decode), len(want), rep.Decode)
	}
	for i, w := range want {
		d := rep.Decode[i]
		if d.Variant != w.variant || d.Batch != w.batch || d.Adapters != w.k || d.Context != 8 || d.Bytes != w.bytes {
			t.Errorf("result %d = %s batch %d k %d ctx %d bytes %d; want %+v", i, d.Variant, d.Batch, d.Adapters, d.Context, d.Bytes, w)
		}
		if !(d.StepMS > 0) || d.P90MS < d.StepMS || d.TokensPerS <= 0 || d.RatioToFloor <= 0 {
			t.Errorf("result %d: %+v", i, d)
		}
	}
	if p := rep.Prefill; p.Seqs != 2 || p.Prompt != 16 || !(p.TokensPerS > 0) {
		t.Errorf("prefill %+v", p)
	}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil || !strings.Contains(md.String(), "| 8 | 4 | lora | 4 |") {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}
}

func TestConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"no model":         {},
		"context too long": {Model: Llama2(), Contexts: []int{5000}},
		"negative batch":   {Model: Llama2(), Batches: []int{-1}},
	} {
		if _, err := c.MaxAdapters(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The PEFT comparison pairs each PEFT case with the decode result at PEFT's batch and the
// shortest context: the base model with LoRA off, k adapters with k adapters.
func TestPEFTTable(t *testing.T) {
	rep := &Report{Decode: []Decode{
		{Variant: LoRAOff, Batch: 32, Context: 128, TokensPerS: 6000},
		{Variant: WithLoRA, Batch: 32, Adapters: 32, Context: 128, TokensPerS: 4000},
		{Variant: WithLoRA, Batch: 32, Adapters: 32, Context: 512, TokensPerS: 1},
		{Variant: WithLoRA, Batch: 8, Adapters: 8, Context: 128, TokensPerS: 1},
	}, PEFT: &PEFT{Device: "H100", Batch: 32, Prompt: 64, NewTokens: 64, Cases: []PEFTCase{{"base", 0, 600}, {"peft", 32, 20}}}}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"| none (base model) | 600.0 | 6000 | 10× |", "| 32 | 20.0 | 4000 | 200× |"} {
		if !strings.Contains(md.String(), row) {
			t.Errorf("no %q in\n%s", row, md.String())
		}
	}
}
