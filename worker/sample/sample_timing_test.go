package sample

import (
	"math/rand/v2"
	"testing"
)

// vocab128k is a Llama-3-sized vocabulary (128256) of normally distributed logits.
func vocab128k() []float32 {
	rng := rand.New(rand.NewPCG(1, 1))
	logits := make([]float32, 128256)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	return logits
}

func benchSample(b *testing.B, set func(*Params)) {
	logits := vocab128k()
	p := DefaultParams()
	p.Seed = seed(1)
	set(&p)
	s := New(p, nil)
	b.ReportAllocs()
	for b.Loop() {
		s.Sample(logits, nil, nil)
	}
}

func BenchmarkGreedy128k(b *testing.B) {
	benchSample(b, func(p *Params) { p.Temperature = 0 })
}

func BenchmarkGreedyLogprobs128k(b *testing.B) {
	benchSample(b, func(p *Params) { p.Temperature, p.Logprobs = 0, 5 })
}

func BenchmarkRandom128k(b *testing.B) {
	benchSample(b, func(p *Params) {})
}

func BenchmarkTopP128k(b *testing.B) {
	benchSample(b, func(p *Params) { p.TopP = 0.9 })
}

func BenchmarkTopK50TopP128k(b *testing.B) {
	benchSample(b, func(p *Params) { p.TopK, p.TopP = 50, 0.9 })
}

func BenchmarkPenalties128k(b *testing.B) {
	logits := vocab128k()
	p := DefaultParams()
	p.Temperature, p.RepetitionPenalty, p.PresencePenalty = 0, 1.1, 0.5
	s := New(p, nil)
	prompt, output := make([]int, 4000), make([]int, 500)
	for i := range prompt {
		prompt[i] = (i * 7919) % len(logits)
	}
	for i := range output {
		output[i] = (i * 104729) % len(logits)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Sample(logits, prompt, output)
	}
}
