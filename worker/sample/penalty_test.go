package sample

import (
	"math"
	"slices"
	"testing"
)

var negInf = float32(math.Inf(-1))

// editedLogits runs the logit edits of one step and returns a copy of the result.
func editedLogits(p Params, eos []int, logits []float32, prompt, output []int) []float32 {
	s := New(p, eos)
	sc := new(scratch)
	return slices.Clone(s.edit(sc, logits, prompt, output))
}

// All expected values below are worked out by hand; they are exact in float32.
func TestPenaltiesByHand(t *testing.T) {
	logits := []float32{2, -1, 0.5, 3, -0.5, 1}
	tests := []struct {
		name           string
		set            func(*Params)
		prompt, output []int
		want           []float32
	}{
		{
			name:   "repetition over prompt and output",
			set:    func(p *Params) { p.RepetitionPenalty = 2 },
			prompt: []int{0, 1}, output: []int{1, 4, 4},
			// 0: 2>0 → 2/2; 1: -1 → -1·2; 4: -0.5 → -0.5·2
			want: []float32{1, -2, 0.5, 3, -1, 1},
		},
		{
			name:   "repetition below one raises",
			set:    func(p *Params) { p.RepetitionPenalty = 0.5 },
			prompt: []int{3}, output: []int{1},
			// 3: 3/0.5; 1: -1·0.5
			want: []float32{2, -0.5, 0.5, 6, -0.5, 1},
		},
		{
			name:   "frequency counts output only",
			set:    func(p *Params) { p.FrequencyPenalty = 0.5 },
			prompt: []int{0, 3}, output: []int{1, 4, 4, 2},
			// 1: -1-0.5·1; 4: -0.5-0.5·2; 2: 0.5-0.5·1; prompt tokens untouched
			want: []float32{2, -1.5, 0, 3, -1.5, 1},
		},
		{
			name:   "presence once per output token",
			set:    func(p *Params) { p.PresencePenalty = 0.25 },
			prompt: []int{0}, output: []int{1, 4, 4},
			want: []float32{2, -1.25, 0.5, 3, -0.75, 1},
		},
		{
			name:   "negative frequency and presence reward",
			set:    func(p *Params) { p.FrequencyPenalty, p.PresencePenalty = -1, -0.5 },
			output: []int{5, 5},
			want:   []float32{2, -1, 0.5, 3, -0.5, 3.5}, // 1 + 1·2 + 0.5
		},
		{
			name: "bias before penalties",
			set: func(p *Params) {
				p.RepetitionPenalty, p.FrequencyPenalty, p.PresencePenalty = 2, 0.5, 0.25
				p.LogitBias = map[int]float64{3: -4, 1: 3}
			},
			prompt: []int{0, 3}, output: []int{1, 1, 5},
			// 0: 2/2; 1: (-1+3)/2 - 0.5·2 - 0.25; 3: (3-4)·2 (not 3/2-4 = -2.5);
			// 5: 1/2 - 0.5 - 0.25
			want: []float32{1, -0.25, 0.5, -2, -0.5, -0.25},
		},
		{
			name:   "ids outside the vocabulary are ignored",
			set:    func(p *Params) { p.PresencePenalty = 1 },
			prompt: []int{-1, 99}, output: []int{6, -3, 2},
			want: []float32{2, -1, -0.5, 3, -0.5, 1}, // only 2 is valid: 0.5-1
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			tt.set(&p)
			got := editedLogits(p, nil, logits, tt.prompt, tt.output)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMinTokensMasksEOSAndStopTokens(t *testing.T) {
	logits := []float32{1, 5, 2, 4}
	p := DefaultParams()
	p.Temperature = 0
	p.MinTokens = 3
	p.StopTokenIDs = []int{3}
	p.IgnoreEOS = true // vLLM masks EOS during min_tokens even with ignore_eos

	got := editedLogits(p, []int{1}, logits, nil, []int{0, 0})
	if want := []float32{1, negInf, 2, negInf}; !slices.Equal(got, want) {
		t.Errorf("2 of 3 tokens generated: got %v, want %v", got, want)
	}
	s := New(p, []int{1})
	if r := s.Sample(logits, nil, []int{0, 0}); r.Token != 2 {
		t.Errorf("greedy before min_tokens = %d, want 2", r.Token)
	}
	if r := s.Sample(logits, nil, []int{0, 0, 0}); r.Token != 1 {
		t.Errorf("greedy once min_tokens reached = %d, want 1 (EOS)", r.Token)
	}
}

func TestPenaltyBookkeepingAcrossCalls(t *testing.T) {
	// The seen/base scheme must not leak counts from one call into the next, also when the
	// base wraps around.
	p := DefaultParams()
	p.FrequencyPenalty = 1
	s := New(p, nil)
	sc := new(scratch)
	logits := []float32{0, 0, 0}
	first := slices.Clone(s.edit(sc, logits, nil, []int{0, 0, 1}))
	if want := []float32{-2, -1, 0}; !slices.Equal(first, want) {
		t.Fatalf("first call: got %v, want %v", first, want)
	}
	second := slices.Clone(s.edit(sc, logits, nil, []int{0, 2}))
	if want := []float32{-1, 0, -1}; !slices.Equal(second, want) {
		t.Errorf("second call: got %v, want %v", second, want)
	}
	sc.base = math.MaxUint32 - 1 // force the wrap-around path
	third := slices.Clone(s.edit(sc, logits, nil, []int{2}))
	if want := []float32{0, 0, -1}; !slices.Equal(third, want) {
		t.Errorf("after wrap-around: got %v, want %v", third, want)
	}
	fourth := s.edit(sc, logits, nil, []int{1, 1})
	if want := []float32{0, -2, 0}; !slices.Equal(fourth, want) {
		t.Errorf("fourth call: got %v, want %v", fourth, want)
	}
}

func TestSampleLeavesLogitsAlone(t *testing.T) {
	logits := []float32{2, -1, 0.5, 3, -0.5, 1}
	orig := slices.Clone(logits)
	p := DefaultParams()
	p.RepetitionPenalty, p.FrequencyPenalty = 1.5, 0.5
	p.LogitBias = map[int]float64{0: 10}
	p.MinTokens = 10
	p.TopK, p.TopP, p.MinP = 3, 0.9, 0.05
	s := New(p, []int{3})
	for range 10 {
		s.Sample(logits, []int{0, 1}, []int{2, 2})
	}
	if !slices.Equal(logits, orig) {
		t.Errorf("logits changed to %v", logits)
	}
}
