package engine

import (
	"strings"
	"testing"
)

// A Llama-2-7B report with made-up measurements, each verdict worked out by hand. A step
// reads 13.2 GB of weights, 80 MB per adapter and 0.5 MiB per token of context: at batch 32
// with 32 adapters, 17.91 GB, a floor of 5.97 ms at 3 TB/s. The step 7.1 ms (1.19×: met);
// LoRA off 6.2 ms, so LoRA costs 0.25 ms with one adapter (4.0%: met), 0.4 ms with 8 (bound
// 1.3 × 8 × 80 MB / 3 TB/s = 0.277 ms: missed) and 0.9 ms with 32 (bound 1.109 ms: met);
// 4507 tok/s against PEFT's 19.7 (229×: met) and 5161 against its base 670 (7.7×: met);
// batch 128 at 10.5 ms is 12,190 tok/s (met); the slowest upload 4.2 ms (met); the slowest
// step while loading 9.0 ms against 7.0 (1.29×: met); memory covering the target (met). The
// card copies at 2.5 TB/s, slower than the H100's 3.02: the bounds stay as the issue set them.
func TestJudge(t *testing.T) {
	const adapter = 80e6
	row := func(variant string, b, k int, stepMS float64) Decode {
		bytes := int64(13.2e9 + float64(k)*adapter + float64(b*128)*(1<<19))
		return Decode{Variant: variant, Batch: b, Adapters: k, Context: 128, StepMS: stepMS, Bytes: bytes,
			TokensPerS: float64(b) / stepMS * 1e3}
	}
	r := &Report{Model: shapeOf(Llama2()), Bandwidth: 3e12, CopyBandwidth: 2.5e12, Decode: []Decode{
		row(LoRAOff, 32, 0, 6.2), row(WithLoRA, 32, 1, 6.45), row(WithLoRA, 32, 8, 6.6), row(WithLoRA, 32, 32, 7.1),
		row(WithLoRA, 128, 32, 10.5), row(WithLoRA, 32, 32, 99), // the last at another context below
	}}
	r.Decode[5].Context = 512
	r.PEFT = &PEFT{Batch: 32, Cases: []PEFTCase{{Case: "base", TokensPerS: 670}, {Case: "peft", Adapters: 32, TokensPerS: 19.7}}}
	r.Loading = &Loading{AdapterBytes: adapter, UploadMS: 3.1, UploadMaxMS: 4.2, StepMaxMS: 9.0, QuietStepMS: 7.0}
	r.Memory = &Memory{UsedBytes: 60 << 30, TotalBytes: 80 << 30, Adapters: 129, KVTokens: 67584, CoversTarget: true}
	got := judged(t, r, []bool{true, true, false, true, true, true, true, true, true, true})
	if !strings.Contains(got[0].Bound, "5.97 ms) = 7.46 ms") || !strings.Contains(got[2].Bound, "0.277 ms") ||
		!strings.Contains(got[3].Bound, "1.109 ms") || !strings.Contains(got[4].Measured, "229×") || got[6].Bound != "≥ 12000" {
		t.Errorf("bounds or measurements not as worked out: %+v", got)
	}
	var md strings.Builder
	if err := r.Markdown(&md); err != nil || !strings.Contains(md.String(), "The issue's targets: 9 of 10 met.") ||
		strings.Contains(md.String(), "This card copies at") {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}

	// The same run on a card that copies at 4.53 TB/s, 1.5 × the H100's 3.02 (an H200), with
	// 141 GiB: judged at 1.5 × 3 TB/s, the floor is 3.98 ms, so 7.1 ms misses 4.97 ms; 32
	// adapters' 0.9 ms misses 1.3 × 2.56 GB / 4.5 TB/s = 0.740 ms; batch 128 must reach
	// 18,000 tok/s; 85 GiB in use fits that card but not the H100's 79.2 GiB. Ratios to PEFT,
	// the upload and loading stay as they were.
	r.CopyBandwidth = 4.53e12
	r.Memory = &Memory{UsedBytes: 85 << 30, TotalBytes: 141 << 30, Adapters: 129, KVTokens: 67584, CoversTarget: true}
	got = judged(t, r, []bool{false, true, false, false, true, true, false, true, true, false})
	if !strings.Contains(got[0].Bound, "at 4.50 TB/s (3.98 ms) = 4.97 ms") || !strings.Contains(got[3].Bound, "0.740 ms") ||
		!strings.HasPrefix(got[6].Bound, "≥ 18000") {
		t.Errorf("bounds on a faster card not as worked out: %+v", got)
	}
	md.Reset()
	if err := r.Markdown(&md); err != nil || !strings.Contains(md.String(), "This card copies at 4.53 TB/s") {
		t.Errorf("markdown on a faster card (%v):\n%s", err, md.String())
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

// judged judges r and checks each verdict against want, and that each was measured.
func judged(t *testing.T, r *Report, want []bool) []Target {
	t.Helper()
	got := r.Judge()
	if len(got) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(got), len(want), got)
	}
	for i, tg := range got {
		if tg.Met != want[i] || tg.Measured == "not measured" {
			t.Errorf("%s: met %v (%s against %s), want %v", tg.Name, tg.Met, tg.Measured, tg.Bound, want[i])
		}
	}
	return got
}
