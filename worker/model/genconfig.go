package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// GenerationConfig holds the defaults of generation_config.json that a server applies when a
// request leaves them out, as transformers' generate and vLLM do.
type GenerationConfig struct {
	EOSTokenIDs []int    // replaces config.json's when present
	DoSample    bool     // false: greedy decoding by default
	Temperature *float64 // nil when absent
	TopP        *float64
	TopK        *int
}

// LoadGenerationConfig reads dir/generation_config.json; a missing file gives the zero value
// (greedy, the model's EOS).
func LoadGenerationConfig(dir string) (GenerationConfig, error) {
	path := filepath.Join(dir, "generation_config.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return GenerationConfig{}, nil
	}
	if err != nil {
		return GenerationConfig{}, fmt.Errorf("model: %w", err)
	}
	var raw struct {
		EOSTokenID  json.RawMessage `json:"eos_token_id"`
		DoSample    bool            `json:"do_sample"`
		Temperature *float64        `json:"temperature"`
		TopP        *float64        `json:"top_p"`
		TopK        *int            `json:"top_k"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return GenerationConfig{}, fmt.Errorf("model: %s: %w", path, err)
	}
	eos, err := parseEOS(raw.EOSTokenID)
	if err != nil {
		return GenerationConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return GenerationConfig{EOSTokenIDs: eos, DoSample: raw.DoSample, Temperature: raw.Temperature, TopP: raw.TopP, TopK: raw.TopK}, nil
}
