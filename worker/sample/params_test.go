package sample

import (
	"errors"
	"math"
	"testing"
)

func TestValidateAcceptsLimits(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Params)
	}{
		{"defaults", func(p *Params) {}},
		{"greedy", func(p *Params) { p.Temperature = 0 }},
		{"temperature 2", func(p *Params) { p.Temperature = 2 }},
		{"top_k -1", func(p *Params) { p.TopK = -1 }},
		{"top_k above vocab", func(p *Params) { p.TopK = 1000 }},
		{"min_p 1", func(p *Params) { p.MinP = 1 }},
		{"penalty edges", func(p *Params) { p.PresencePenalty, p.FrequencyPenalty = -2, 2 }},
		{"small repetition", func(p *Params) { p.RepetitionPenalty = 1e-3 }},
		{"logprobs 0 and 20", func(p *Params) { p.Logprobs = 20 }},
		{"logprobs 0", func(p *Params) { p.Logprobs = 0 }},
		{"bias edges", func(p *Params) { p.LogitBias = map[int]float64{0: -100, 9: 100} }},
		{"stop ids", func(p *Params) { p.StopTokenIDs = []int{0, 9}; p.MinTokens = 4 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			tt.set(&p)
			if err := p.Validate(10); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		param string
		set   func(*Params)
	}{
		{"temperature", func(p *Params) { p.Temperature = -0.1 }},
		{"temperature", func(p *Params) { p.Temperature = 2.01 }},
		{"temperature", func(p *Params) { p.Temperature = nan }},
		{"top_p", func(p *Params) { p.TopP = 0 }},
		{"top_p", func(p *Params) { p.TopP = 1.5 }},
		{"top_p", func(p *Params) { p.TopP = nan }},
		{"top_k", func(p *Params) { p.TopK = -2 }},
		{"min_p", func(p *Params) { p.MinP = -0.01 }},
		{"min_p", func(p *Params) { p.MinP = 1.01 }},
		{"repetition_penalty", func(p *Params) { p.RepetitionPenalty = 0 }},
		{"repetition_penalty", func(p *Params) { p.RepetitionPenalty = inf }},
		{"repetition_penalty", func(p *Params) { p.RepetitionPenalty = nan }},
		{"presence_penalty", func(p *Params) { p.PresencePenalty = 2.5 }},
		{"presence_penalty", func(p *Params) { p.PresencePenalty = nan }},
		{"frequency_penalty", func(p *Params) { p.FrequencyPenalty = -2.5 }},
		{"logprobs", func(p *Params) { p.Logprobs = 21 }},
		{"logprobs", func(p *Params) { p.Logprobs = -2 }},
		{"min_tokens", func(p *Params) { p.MinTokens = -1 }},
		{"logit_bias", func(p *Params) { p.LogitBias = map[int]float64{10: 1} }},
		{"logit_bias", func(p *Params) { p.LogitBias = map[int]float64{-1: 1} }},
		{"logit_bias", func(p *Params) { p.LogitBias = map[int]float64{3: 100.5} }},
		{"logit_bias", func(p *Params) { p.LogitBias = map[int]float64{3: nan} }},
		{"stop_token_ids", func(p *Params) { p.StopTokenIDs = []int{10} }},
	}
	for _, tt := range tests {
		p := DefaultParams()
		tt.set(&p)
		err := p.Validate(10)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != tt.param || !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%s %+v: got %v, want a ParamError for %s", tt.param, p, err, tt.param)
		}
	}
	if err := DefaultParams().Validate(0); err == nil {
		t.Error("Validate(0): want an error for an empty vocabulary")
	}
}

func TestZeroParamsAreNotDefaults(t *testing.T) {
	var p Params // top_p 0 and repetition_penalty 0 are out of range
	if err := p.Validate(10); err == nil {
		t.Error("zero Params validated")
	}
	d := DefaultParams()
	if d.Temperature != 1 || d.TopP != 1 || d.TopK != 0 || d.MinP != 0 ||
		d.RepetitionPenalty != 1 || d.Logprobs != NoLogprobs || d.Seed != nil {
		t.Errorf("DefaultParams() = %+v", d)
	}
}
