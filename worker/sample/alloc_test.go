// The race detector makes sync.Pool drop items at random, so allocation counts only hold
// in normal builds.

//go:build !race

package sample

import "testing"

func TestAllocationsPerSample(t *testing.T) {
	logits := vocab128k()
	prompt, output := []int{1, 5, 9, 5}, []int{7, 7, 100}
	tests := []struct {
		name string
		set  func(*Params)
	}{
		{"greedy", func(p *Params) { p.Temperature = 0 }},
		{"greedy with penalties and bias", func(p *Params) {
			p.Temperature, p.RepetitionPenalty, p.FrequencyPenalty = 0, 1.2, 0.3
			p.LogitBias = map[int]float64{3: 5}
		}},
		{"top_p", func(p *Params) { p.TopP = 0.9 }},
		{"top_k min_p", func(p *Params) { p.TopK, p.MinP = 50, 0.05 }},
		{"logprobs 0", func(p *Params) { p.Logprobs = 0 }},
	}
	for _, tt := range tests {
		p := DefaultParams()
		p.Seed = seed(1)
		tt.set(&p)
		s := New(p, []int{2})
		s.Sample(logits, prompt, output) // grow the pooled scratch once
		if n := testing.AllocsPerRun(20, func() { s.Sample(logits, prompt, output) }); n != 0 {
			t.Errorf("%s: %v allocations per Sample, want 0", tt.name, n)
		}
	}
}
