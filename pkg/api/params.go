package api

import (
	"strconv"
)

// Limits checked by Validate. Upper bounds that depend on the model
// (context length, vocabulary) are the worker's to check.
const (
	// DefaultMaxTokens is max_tokens of a completion when absent (OpenAI, vLLM).
	DefaultMaxTokens = 16
	// MaxChoices bounds n × the number of prompts: the sequences one
	// request may start.
	MaxChoices = 128
	// MaxLogprobs is the most logprobs / top_logprobs (vLLM's default
	// max_logprobs, OpenAI's top_logprobs limit).
	MaxLogprobs = 20
	// MaxStop is the most stop strings (OpenAI allows 4, vLLM any number,
	// LoRAX 4 by default).
	MaxStop = 16
	// MaxLogitBias bounds the absolute value of a logit_bias entry (OpenAI).
	MaxLogitBias = 100
)

// StreamOptions is "stream_options".
type StreamOptions struct {
	// IncludeUsage adds a last chunk with "choices": [] and the usage.
	IncludeUsage bool `json:"include_usage,omitempty"`
	// ContinuousUsageStats (vLLM) puts the usage so far in every chunk.
	ContinuousUsageStats bool `json:"continuous_usage_stats,omitempty"`
}

// Params are the fields /v1/completions and /v1/chat/completions share:
// OpenAI's sampling fields and vLLM's extras. A nil pointer is an absent
// field; the defaults are vLLM's.
type Params struct {
	// N is the number of choices per prompt (default 1).
	N *int `json:"n,omitempty"`
	// Temperature: default 1; 0 is greedy.
	Temperature *float64 `json:"temperature,omitempty"`
	// TopP: default 1 (off).
	TopP *float64 `json:"top_p,omitempty"`
	// TopK (vLLM): default off; -1 and 0 both mean off.
	TopK *int `json:"top_k,omitempty"`
	// MinP (vLLM): default 0 (off).
	MinP *float64 `json:"min_p,omitempty"`
	// PresencePenalty: default 0.
	PresencePenalty *float64 `json:"presence_penalty,omitempty"`
	// FrequencyPenalty: default 0.
	FrequencyPenalty *float64 `json:"frequency_penalty,omitempty"`
	// RepetitionPenalty (vLLM): default 1 (off).
	RepetitionPenalty *float64 `json:"repetition_penalty,omitempty"`
	// LogitBias maps token ids, written as decimal strings, to a bias.
	LogitBias map[string]float64 `json:"logit_bias,omitzero"`
	// Seed makes sampling reproducible.
	Seed *int64 `json:"seed,omitempty"`
	// Stop strings end generation; they are not part of the output.
	Stop Stop `json:"stop,omitzero"`
	// StopTokenIDs (vLLM) end generation like EOS.
	StopTokenIDs []int `json:"stop_token_ids,omitzero"`
	// IgnoreEOS (vLLM) keeps generating past EOS.
	IgnoreEOS bool `json:"ignore_eos,omitempty"`
	// MinTokens (vLLM) is how many tokens come before EOS or a stop token may.
	MinTokens int `json:"min_tokens,omitempty"`
	// Stream asks for server-sent events.
	Stream bool `json:"stream,omitempty"`
	// StreamOptions is only allowed with Stream.
	StreamOptions *StreamOptions `json:"stream_options,omitempty"`
	// User is the end user's id; it has no effect.
	User string `json:"user,omitempty"`
}

// NOrDefault is n, 1 when absent.
func (p *Params) NOrDefault() int {
	if p.N == nil {
		return 1
	}
	return *p.N
}

// IncludeUsage reports whether a stream ends with a usage chunk.
func (p *Params) IncludeUsage() bool {
	return p.Stream && p.StreamOptions != nil && p.StreamOptions.IncludeUsage
}

// LogitBiasIDs returns logit_bias keyed by token id; keys that are not
// token ids (refused by Validate) are skipped.
func (p *Params) LogitBiasIDs() map[int]float64 {
	if len(p.LogitBias) == 0 {
		return nil
	}
	m := make(map[int]float64, len(p.LogitBias))
	for k, v := range p.LogitBias {
		if id, err := strconv.Atoi(k); err == nil && id >= 0 {
			m[id] = v
		}
	}
	return m
}

// validate checks the ranges; prompts is the number of prompts (1 for
// chat) and maxTokens the effective max_tokens (0 when unbounded).
func (p *Params) validate(prompts, maxTokens int) error {
	checks := []func() error{
		func() error { return p.validateN(prompts) },
		p.validateSampling,
		p.validatePenalties,
		p.validateLogitBias,
		p.validateStop,
		func() error { return p.validateMinTokens(maxTokens) },
		p.validateStream,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (p *Params) validateN(prompts int) error {
	n := p.NOrDefault()
	switch {
	case n < 1 || n > MaxChoices:
		return BadRequest("n", "`n` must be between 1 and %d, got %d", MaxChoices, n)
	case n*prompts > MaxChoices:
		return BadRequest("n", "`n` × the number of prompts (%d × %d) must be at most %d", n, prompts, MaxChoices)
	}
	return nil
}

func (p *Params) validateSampling() error {
	switch {
	case p.Temperature != nil && !(*p.Temperature >= 0 && *p.Temperature <= 2):
		return BadRequest("temperature", "`temperature` must be in [0, 2], got %v", *p.Temperature)
	case p.TopP != nil && !(*p.TopP > 0 && *p.TopP <= 1):
		return BadRequest("top_p", "`top_p` must be in (0, 1], got %v", *p.TopP)
	case p.TopK != nil && *p.TopK < -1:
		return BadRequest("top_k", "`top_k` must be -1 or 0 (disabled) or positive, got %d", *p.TopK)
	case p.MinP != nil && !(*p.MinP >= 0 && *p.MinP <= 1):
		return BadRequest("min_p", "`min_p` must be in [0, 1], got %v", *p.MinP)
	}
	return nil
}

func (p *Params) validatePenalties() error {
	switch {
	case p.PresencePenalty != nil && !(*p.PresencePenalty >= -2 && *p.PresencePenalty <= 2):
		return BadRequest("presence_penalty", "`presence_penalty` must be in [-2, 2], got %v", *p.PresencePenalty)
	case p.FrequencyPenalty != nil && !(*p.FrequencyPenalty >= -2 && *p.FrequencyPenalty <= 2):
		return BadRequest("frequency_penalty", "`frequency_penalty` must be in [-2, 2], got %v", *p.FrequencyPenalty)
	case p.RepetitionPenalty != nil && !(*p.RepetitionPenalty > 0):
		return BadRequest("repetition_penalty", "`repetition_penalty` must be greater than 0, got %v", *p.RepetitionPenalty)
	}
	return nil
}

func (p *Params) validateLogitBias() error {
	for k, v := range p.LogitBias {
		if id, err := strconv.Atoi(k); err != nil || id < 0 {
			return BadRequest("logit_bias", "`logit_bias` keys must be token ids, got %q", k)
		}
		if !(v >= -MaxLogitBias && v <= MaxLogitBias) {
			return BadRequest("logit_bias", "`logit_bias` values must be in [-%d, %d], got %v for token %s", MaxLogitBias, MaxLogitBias, v, k)
		}
	}
	return nil
}

func (p *Params) validateStop() error {
	if len(p.Stop) > MaxStop {
		return BadRequest("stop", "`stop` may hold at most %d strings, got %d", MaxStop, len(p.Stop))
	}
	for i, s := range p.Stop {
		if s == "" {
			return BadRequest("stop", "`stop[%d]` must not be empty", i)
		}
	}
	for i, id := range p.StopTokenIDs {
		if id < 0 {
			return BadRequest("stop_token_ids", "`stop_token_ids[%d]` must be a token id, got %d", i, id)
		}
	}
	return nil
}

func (p *Params) validateMinTokens(maxTokens int) error {
	switch {
	case p.MinTokens < 0:
		return BadRequest("min_tokens", "`min_tokens` must be at least 0, got %d", p.MinTokens)
	case maxTokens > 0 && p.MinTokens > maxTokens:
		return BadRequest("min_tokens", "`min_tokens` (%d) must be at most max_tokens (%d)", p.MinTokens, maxTokens)
	}
	return nil
}

func (p *Params) validateStream() error {
	if p.StreamOptions != nil && !p.Stream {
		return BadRequest("stream_options", "`stream_options` can only be set when `stream` is true")
	}
	return nil
}

func validateMaxTokens(param string, v *int) error {
	if v != nil && *v < 1 {
		return BadRequest(param, "`%s` must be at least 1, got %d", param, *v)
	}
	return nil
}

func validateLogprobs(param string, v *int) error {
	if v != nil && (*v < 0 || *v > MaxLogprobs) {
		return BadRequest(param, "`%s` must be between 0 and %d, got %d", param, MaxLogprobs, *v)
	}
	return nil
}
