package engine

import (
	"strings"
	"testing"
)

// A Llama-2-7B report with made-up measurements, each verdict worked out by hand: the step
// 7.0 ms against a 6.0 ms floor (1.17×: met); LoRA off 6.2 ms, so LoRA costs 0.25 ms with
// one adapter (4.0%: met), 0.4 ms with 8 (bound 1.3 × 8 × 80 MB / 3 TB/s = 0.277 ms: missed)
// and 0.8 ms with 32 (bound 1.109 ms: met); 4571 tok/s against PEFT's 19.7 (232×: met) and
// 5161 against its base 670 (7.7×: met); batch 128 at 11 ms is 11,636 tok/s (missed); the
// slowest upload 4.2 ms (met); the slowest step while loading 9.0 ms against 7.0 (1.29×:
// met); memory covering the target (met).
func TestJudge(t *testing.T) {
	const adapter = 80e6
	row := func(variant string, b, k int, stepMS float64) Decode {
		bytes := int64(13.2e9 + float64(k)*adapter)
		return Decode{Variant: variant, Batch: b, Adapters: k, Context: 128, StepMS: stepMS, Bytes: bytes,
			FloorMS: 6.0, RatioToFloor: stepMS / 6.0, TokensPerS: float64(b) / stepMS * 1e3}
	}
	r := &Report{Model: shapeOf(Llama2()), Bandwidth: 3e12, Decode: []Decode{
		row(LoRAOff, 32, 0, 6.2), row(WithLoRA, 32, 1, 6.45), row(WithLoRA, 32, 8, 6.6), row(WithLoRA, 32, 32, 7.0),
		row(WithLoRA, 128, 32, 11.0), row(WithLoRA, 32, 32, 99), // the last at another context below
	}}
	r.Decode[5].Context = 512
	r.PEFT = &PEFT{Batch: 32, Cases: []PEFTCase{{Case: "base", TokensPerS: 670}, {Case: "peft", Adapters: 32, TokensPerS: 19.7}}}
	r.Loading = &Loading{AdapterBytes: adapter, UploadMS: 3.1, UploadMaxMS: 4.2, StepMaxMS: 9.0, QuietStepMS: 7.0}
	r.Memory = &Memory{UsedBytes: 60 << 30, TotalBytes: 80 << 30, Adapters: 129, KVTokens: 67584, CoversTarget: true}
	want := []bool{true, true, false, true, true, true, false, true, true, true}
	got := r.Judge()
	if len(got) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(got), len(want), got)
	}
	for i, tg := range got {
		if tg.Met != want[i] || tg.Measured == "not measured" {
			t.Errorf("%s: met %v (%s against %s), want %v", tg.Name, tg.Met, tg.Measured, tg.Bound, want[i])
		}
	}
	if !strings.Contains(got[2].Bound, "0.277 ms") || !strings.Contains(got[3].Bound, "1.109 ms") || !strings.Contains(got[4].Measured, "232×") {
		t.Errorf("bounds or measurements not as worked out: %+v", got[2:5])
	}
	var md strings.Builder
	if err := r.Markdown(&md); err != nil || !strings.Contains(md.String(), "The issue's targets: 8 of 10 met.") {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}

	// Without the PEFT baseline, loading and memory, those targets are not measured, and so
	// not met; on another model shape there is nothing to judge.
	r.PEFT, r.Loading, r.Memory = nil, nil, nil
	for _, tg := range r.Judge()[4:6] {
		if tg.Met || tg.Measured != "not measured" {
			t.Errorf("%s without a baseline: %+v", tg.Name, tg)
		}
	}
	r.Model = "tiny"
	if ts := r.Judge(); ts != nil {
		t.Errorf("targets on another shape: %+v", ts)
	}
}
