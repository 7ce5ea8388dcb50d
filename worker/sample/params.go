package sample

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalidParams is wrapped by every validation failure (a *ParamError).
var ErrInvalidParams = errors.New("sample: invalid sampling parameters")

// NoLogprobs is the Params.Logprobs value that asks for no logprobs at all (vLLM's None).
const NoLogprobs = -1

// MaxLogprobs is the largest Params.Logprobs accepted: vLLM's default max_logprobs and
// OpenAI's top_logprobs limit.
const MaxLogprobs = 20

// Limits from vLLM's SamplingParams and the OpenAI API.
const (
	maxTemperature = 2.0   // vLLM and OpenAI reject temperature > 2
	minTemperature = 0.01  // vLLM raises 0 < temperature < 0.01 to 0.01 to avoid inf/NaN
	maxPenalty     = 2.0   // presence_penalty, frequency_penalty in [-2, 2]
	maxLogitBias   = 100.0 // logit_bias values in [-100, 100]
)

// Params are the per-request sampling settings, named as in the OpenAI API and vLLM.
// The zero value is not the default: use DefaultParams and override fields.
type Params struct {
	// Temperature divides the logits before sampling; 0 means greedy (argmax).
	// Default 1. Valid: [0, 2]. Values in (0, 0.01) act as 0.01, as in vLLM.
	Temperature float64
	// TopK keeps the K highest logits (and any tied with the K-th); 0 or -1 = off (default 0).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability sums to at least
	// TopP. Default 1 (off). Valid: (0, 1].
	TopP float64
	// MinP drops tokens whose probability is below MinP times the top token's.
	// Default 0 (off). Valid: [0, 1].
	MinP float64
	// Seed makes sampling reproducible; nil (or -1, as in vLLM) = seeded at random.
	Seed *int64
	// RepetitionPenalty scales the logits of tokens seen in the prompt or the output:
	// positive logits are divided by it, others multiplied. Default 1 (off). Valid: > 0.
	RepetitionPenalty float64
	// PresencePenalty is subtracted once from the logit of every token in the output.
	// Default 0. Valid: [-2, 2].
	PresencePenalty float64
	// FrequencyPenalty is subtracted per occurrence in the output. Default 0. Valid: [-2, 2].
	FrequencyPenalty float64
	// LogitBias is added to the logits of the given token ids. Valid: ids in the vocabulary,
	// values in [-100, 100] (rejected outside, where vLLM clamps silently).
	LogitBias map[int]float64
	// Logprobs is the number of top logprobs to return besides the chosen token's:
	// NoLogprobs (-1, the default) returns none, 0 only the chosen token's. Valid: [-1, 20].
	Logprobs int
	// MinTokens is the number of tokens to generate before an EOS or stop token may be
	// sampled; until then their logits are -inf. Default 0. Valid: >= 0.
	MinTokens int
	// StopTokenIDs end generation like EOS (vLLM stop_token_ids) and are masked while
	// fewer than MinTokens tokens have been generated. Valid: ids in the vocabulary.
	StopTokenIDs []int
	// IgnoreEOS keeps generating past EOS; it does not lift the MinTokens mask (as in vLLM).
	IgnoreEOS bool
}

// DefaultParams returns vLLM's defaults: temperature 1, top_p 1, top_k off, min_p 0,
// no penalties, no logprobs.
func DefaultParams() Params {
	return Params{
		Temperature:       1,
		TopP:              1,
		RepetitionPenalty: 1,
		Logprobs:          NoLogprobs,
	}
}

// ParamError reports one invalid field; Param is the field's OpenAI / vLLM name, suitable
// for the "param" member of an OpenAI error body.
type ParamError struct {
	Param  string
	Reason string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("sample: invalid %s: %s", e.Param, e.Reason)
}

// Unwrap makes every ParamError match ErrInvalidParams.
func (e *ParamError) Unwrap() error { return ErrInvalidParams }

func paramErr(param, format string, args ...any) error {
	return &ParamError{Param: param, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks every field against vLLM's limits for a vocabulary of vocab tokens and
// returns the first problem as a *ParamError.
func (p Params) Validate(vocab int) error {
	if vocab <= 0 {
		return fmt.Errorf("sample: vocabulary size must be positive, got %d", vocab)
	}
	for _, err := range []error{
		p.validateTemperature(), p.validateFilters(), p.validatePenalties(),
		p.validateCounts(), p.validateTokenIDs(vocab),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

func (p Params) validateTemperature() error {
	if !(p.Temperature >= 0 && p.Temperature <= maxTemperature) { // also rejects NaN
		return paramErr("temperature", "must be in [0, %g], got %g", maxTemperature, p.Temperature)
	}
	return nil
}

func (p Params) validateFilters() error {
	if !(p.TopP > 0 && p.TopP <= 1) {
		return paramErr("top_p", "must be in (0, 1], got %g", p.TopP)
	}
	if p.TopK < -1 {
		return paramErr("top_k", "must be 0 or -1 (off) or at least 1, got %d", p.TopK)
	}
	if !(p.MinP >= 0 && p.MinP <= 1) {
		return paramErr("min_p", "must be in [0, 1], got %g", p.MinP)
	}
	return nil
}

func (p Params) validatePenalties() error {
	if !(p.RepetitionPenalty > 0) || math.IsInf(p.RepetitionPenalty, 1) {
		return paramErr("repetition_penalty", "must be a finite number > 0, got %g", p.RepetitionPenalty)
	}
	if !(math.Abs(p.PresencePenalty) <= maxPenalty) {
		return paramErr("presence_penalty", "must be in [-2, 2], got %g", p.PresencePenalty)
	}
	if !(math.Abs(p.FrequencyPenalty) <= maxPenalty) {
		return paramErr("frequency_penalty", "must be in [-2, 2], got %g", p.FrequencyPenalty)
	}
	return nil
}

func (p Params) validateCounts() error {
	if p.Logprobs < NoLogprobs || p.Logprobs > MaxLogprobs {
		return paramErr("logprobs", "must be in [0, %d] (or -1 for none), got %d", MaxLogprobs, p.Logprobs)
	}
	if p.MinTokens < 0 {
		return paramErr("min_tokens", "must be >= 0, got %d", p.MinTokens)
	}
	return nil
}

func (p Params) validateTokenIDs(vocab int) error {
	for id, bias := range p.LogitBias {
		if id < 0 || id >= vocab {
			return paramErr("logit_bias", "token id %d is outside the vocabulary [0, %d)", id, vocab)
		}
		if !(math.Abs(bias) <= maxLogitBias) {
			return paramErr("logit_bias", "bias for token %d must be in [-100, 100], got %g", id, bias)
		}
	}
	for _, id := range p.StopTokenIDs {
		if id < 0 || id >= vocab {
			return paramErr("stop_token_ids", "token id %d is outside the vocabulary [0, %d)", id, vocab)
		}
	}
	return nil
}
