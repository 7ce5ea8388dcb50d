package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrUnsupported is wrapped by every refusal of a config.json field we do not implement.
var ErrUnsupported = errors.New("model: unsupported config")

// Config is the part of a Hugging Face config.json the forward pass needs.
type Config struct {
	ModelType          string
	Architecture       string
	VocabSize          int
	Hidden             int
	Intermediate       int
	Layers             int
	Heads              int
	KVHeads            int // defaults to Heads
	HeadDim            int // defaults to Hidden/Heads
	RMSNormEps         float64
	MaxPositions       int
	TieEmbeddings      bool
	AttentionBias      bool // q/k/v biases; always true for qwen2
	BOSTokenID         int  // -1 when absent
	EOSTokenIDs        []int
	RoPE               RoPEConfig
	DType              string // torch_dtype / dtype, informational
	OProjBias, MLPBias bool
}

// RoPEConfig holds the rotary embedding parameters from either spelling of config.json.
type RoPEConfig struct {
	Theta float64
	Type  string // "default", "linear" or "llama3"
	// Factor applies to linear and llama3; the rest to llama3 only.
	Factor         float64
	LowFreqFactor  float64
	HighFreqFactor float64
	OriginalMaxPos int
}

// rawConfig mirrors config.json. Pointers tell "absent" from zero.
type rawConfig struct {
	Architectures     []string        `json:"architectures"`
	ModelType         string          `json:"model_type"`
	VocabSize         int             `json:"vocab_size"`
	HiddenSize        int             `json:"hidden_size"`
	IntermediateSize  int             `json:"intermediate_size"`
	NumHiddenLayers   int             `json:"num_hidden_layers"`
	NumAttentionHeads int             `json:"num_attention_heads"`
	NumKeyValueHeads  *int            `json:"num_key_value_heads"`
	HeadDim           *int            `json:"head_dim"`
	RMSNormEps        *float64        `json:"rms_norm_eps"`
	MaxPosEmbeddings  int             `json:"max_position_embeddings"`
	TieWordEmbeddings *bool           `json:"tie_word_embeddings"`
	AttentionBias     bool            `json:"attention_bias"`
	MLPBias           bool            `json:"mlp_bias"`
	HiddenAct         string          `json:"hidden_act"`
	BOSTokenID        *int            `json:"bos_token_id"`
	EOSTokenID        json.RawMessage `json:"eos_token_id"`
	TorchDType        string          `json:"torch_dtype"`
	DType             string          `json:"dtype"`
	RopeTheta         *float64        `json:"rope_theta"`
	RopeScaling       *rawRoPE        `json:"rope_scaling"`
	RopeParameters    *rawRoPE        `json:"rope_parameters"`
	UseSlidingWindow  bool            `json:"use_sliding_window"`
	SlidingWindow     *int            `json:"sliding_window"`
	PretrainingTP     int             `json:"pretraining_tp"`
}

type rawRoPE struct {
	RopeTheta      *float64 `json:"rope_theta"`
	Type           string   `json:"type"`
	RopeType       string   `json:"rope_type"`
	Factor         *float64 `json:"factor"`
	LowFreqFactor  *float64 `json:"low_freq_factor"`
	HighFreqFactor *float64 `json:"high_freq_factor"`
	OriginalMaxPos *int     `json:"original_max_position_embeddings"`
}

// families maps model_type to whether it always has q/k/v biases.
var families = map[string]bool{"llama": false, "mistral": false, "qwen2": true}

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("model: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses and validates the contents of a config.json.
func ParseConfig(b []byte) (Config, error) {
	var r rawConfig
	if err := json.Unmarshal(b, &r); err != nil {
		return Config{}, fmt.Errorf("model: config.json: %w", err)
	}
	qkvBias, ok := families[r.ModelType]
	if !ok {
		return Config{}, fmt.Errorf("%w: field model_type: %q (supported: llama, mistral, qwen2)", ErrUnsupported, r.ModelType)
	}
	c := Config{
		ModelType:     r.ModelType,
		VocabSize:     r.VocabSize,
		Hidden:        r.HiddenSize,
		Intermediate:  r.IntermediateSize,
		Layers:        r.NumHiddenLayers,
		Heads:         r.NumAttentionHeads,
		KVHeads:       r.NumAttentionHeads,
		MaxPositions:  r.MaxPosEmbeddings,
		TieEmbeddings: r.TieWordEmbeddings != nil && *r.TieWordEmbeddings,
		AttentionBias: qkvBias || r.AttentionBias,
		OProjBias:     r.ModelType != "qwen2" && r.AttentionBias,
		MLPBias:       r.MLPBias,
		RMSNormEps:    1e-6,
		BOSTokenID:    -1,
		DType:         r.DType,
	}
	if len(r.Architectures) > 0 {
		c.Architecture = r.Architectures[0]
	}
	if c.DType == "" {
		c.DType = r.TorchDType
	}
	if w := r.SlidingWindow; w != nil && *w > 0 && *w < c.MaxPositions && r.ModelType == "mistral" {
		// Mistral 7B v0.1 attends within a 4096-token window; within it full attention is
		// exact, so the context is capped instead of implementing the window.
		c.MaxPositions = *w
	}
	if r.NumKeyValueHeads != nil {
		c.KVHeads = *r.NumKeyValueHeads
	}
	if r.RMSNormEps != nil {
		c.RMSNormEps = *r.RMSNormEps
	}
	if r.BOSTokenID != nil {
		c.BOSTokenID = *r.BOSTokenID
	}
	if c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if r.HeadDim != nil {
		c.HeadDim = *r.HeadDim
	}
	var err error
	if c.EOSTokenIDs, err = parseEOS(r.EOSTokenID); err != nil {
		return Config{}, err
	}
	if c.RoPE, err = parseRoPE(&r); err != nil {
		return Config{}, err
	}
	if err := r.checkUnsupported(); err != nil {
		return Config{}, err
	}
	return c, c.validate()
}

func (r *rawConfig) checkUnsupported() error {
	if r.HiddenAct != "" && r.HiddenAct != "silu" {
		return fmt.Errorf("%w: field hidden_act: %q (only silu)", ErrUnsupported, r.HiddenAct)
	}
	if r.UseSlidingWindow {
		return fmt.Errorf("%w: field use_sliding_window: true", ErrUnsupported)
	}
	if r.PretrainingTP > 1 {
		return fmt.Errorf("%w: field pretraining_tp: %d", ErrUnsupported, r.PretrainingTP)
	}
	return nil
}

func parseEOS(raw json.RawMessage) ([]int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("model: field eos_token_id: want an int or a list of ints, got %s", raw)
	}
	return many, nil
}

// parseRoPE accepts the older rope_theta + rope_scaling spelling and the newer
// rope_parameters one.
func parseRoPE(r *rawConfig) (RoPEConfig, error) {
	rc := RoPEConfig{Theta: 10000, Type: "default", Factor: 1}
	if r.RopeTheta != nil {
		rc.Theta = *r.RopeTheta
	}
	field, p := "rope_scaling", r.RopeScaling
	if r.RopeParameters != nil {
		field, p = "rope_parameters", r.RopeParameters
	}
	if p == nil {
		return rc, nil
	}
	if p.RopeTheta != nil {
		rc.Theta = *p.RopeTheta
	}
	if t := p.RopeType; t != "" {
		rc.Type = t
	} else if p.Type != "" {
		rc.Type = p.Type
	}
	if p.Factor != nil {
		rc.Factor = *p.Factor
	}
	switch rc.Type {
	case "default":
	case "linear":
		if rc.Factor <= 0 {
			return rc, fmt.Errorf("model: field %s.factor: must be > 0", field)
		}
	case "llama3":
		if p.LowFreqFactor == nil || p.HighFreqFactor == nil || p.OriginalMaxPos == nil || p.Factor == nil {
			return rc, fmt.Errorf("model: field %s: llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings", field)
		}
		rc.LowFreqFactor, rc.HighFreqFactor, rc.OriginalMaxPos = *p.LowFreqFactor, *p.HighFreqFactor, *p.OriginalMaxPos
		if rc.Factor <= 0 || rc.LowFreqFactor <= 0 || rc.HighFreqFactor <= rc.LowFreqFactor || rc.OriginalMaxPos <= 0 {
			return rc, fmt.Errorf("model: field %s: llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings > 0", field)
		}
	default:
		return rc, fmt.Errorf("%w: field %s.rope_type: %q (supported: default, linear, llama3)", ErrUnsupported, field, rc.Type)
	}
	if rc.Theta <= 0 {
		return rc, fmt.Errorf("model: field %s.rope_theta: must be > 0", field)
	}
	return rc, nil
}

func (c *Config) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.Hidden}, {"intermediate_size", c.Intermediate},
		{"num_hidden_layers", c.Layers}, {"num_attention_heads", c.Heads}, {"num_key_value_heads", c.KVHeads},
		{"head_dim", c.HeadDim}, {"max_position_embeddings", c.MaxPositions},
	} {
		if f.v <= 0 {
			return fmt.Errorf("model: field %s: must be > 0, got %d", f.name, f.v)
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("model: field num_key_value_heads: %d does not divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("model: field head_dim: %d must be even for rotary embeddings", c.HeadDim)
	}
	if c.RMSNormEps <= 0 {
		return fmt.Errorf("model: field rms_norm_eps: must be > 0")
	}
	// Sizes bound what a hostile config could make us allocate before weights are checked.
	const maxDim = 1 << 20
	if c.Hidden > maxDim || c.Intermediate > maxDim || c.VocabSize > 1<<22 || c.Layers > 1024 || c.MaxPositions > 1<<24 {
		return fmt.Errorf("model: config.json: dimensions out of range")
	}
	for _, id := range c.EOSTokenIDs {
		if id < 0 || id >= c.VocabSize {
			return fmt.Errorf("model: field eos_token_id: %d outside the vocabulary (%d)", id, c.VocabSize)
		}
	}
	return nil
}
