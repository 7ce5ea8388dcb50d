package model

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const llamaBase = `"model_type": "llama", "vocab_size": 32, "hidden_size": 64, "intermediate_size": 96,
	"num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 128`

func parse(t *testing.T, body string) (Config, error) {
	t.Helper()
	return ParseConfig([]byte("{" + body + "}"))
}

func TestConfigDefaults(t *testing.T) {
	c, err := parse(t, llamaBase)
	if err != nil {
		t.Fatal(err)
	}
	if c.KVHeads != 4 || c.HeadDim != 16 || c.RoPE.Type != "default" || c.RoPE.Theta != 10000 || c.TieEmbeddings || c.AttentionBias {
		t.Fatalf("defaults wrong: %+v", c)
	}
}

func TestConfigTestdataModels(t *testing.T) {
	for set, want := range map[string]Config{
		"tiny-llama": {Hidden: 64, Heads: 4, KVHeads: 2, HeadDim: 16, TieEmbeddings: false, AttentionBias: false, EOSTokenIDs: []int{5}},
		"tiny-qwen2": {Hidden: 96, Heads: 6, KVHeads: 2, HeadDim: 16, TieEmbeddings: true, AttentionBias: true, EOSTokenIDs: []int{5}},
	} {
		c, err := LoadConfig(filepath.Join("..", "..", "testdata", set, "model"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Hidden != want.Hidden || c.Heads != want.Heads || c.KVHeads != want.KVHeads || c.HeadDim != want.HeadDim ||
			c.TieEmbeddings != want.TieEmbeddings || c.AttentionBias != want.AttentionBias || !slices.Equal(c.EOSTokenIDs, want.EOSTokenIDs) {
			t.Errorf("%s: got %+v", set, c)
		}
	}
}

// Mistral 7B v0.1's config.json: its 4096-token sliding window caps the context.
func TestConfigMistral(t *testing.T) {
	c, err := parse(t, `"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
		"hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
		"max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
		"num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
		"sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 32000`)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxPositions != 4096 || c.KVHeads != 8 || c.HeadDim != 128 || c.DType != "bfloat16" || c.AttentionBias {
		t.Fatalf("mistral config: %+v", c)
	}
}

func TestConfigBothRoPESpellings(t *testing.T) {
	old, err := parse(t, llamaBase+`, "rope_theta": 500000, "rope_scaling": {"type": "linear", "factor": 4}`)
	if err != nil {
		t.Fatal(err)
	}
	neu, err := parse(t, llamaBase+`, "rope_parameters": {"rope_theta": 500000, "rope_type": "linear", "factor": 4}`)
	if err != nil {
		t.Fatal(err)
	}
	if old.RoPE != neu.RoPE || old.RoPE.Theta != 500000 || old.RoPE.Type != "linear" || old.RoPE.Factor != 4 {
		t.Fatalf("spellings disagree: %+v vs %+v", old.RoPE, neu.RoPE)
	}
	inv := old.RoPE.invFreq(16)
	if want := math.Pow(500000, -2.0/16) / 4; math.Abs(inv[1]-want) > 1e-15 {
		t.Fatalf("linear inv_freq[1] = %v, want %v", inv[1], want)
	}
}

// Expected values from Hugging Face's _compute_llama3_parameters, re-run in Python on the
// Llama 3.1 8B settings.
func TestLlama3RoPE(t *testing.T) {
	c, err := parse(t, `"model_type": "llama", "vocab_size": 32, "hidden_size": 4096, "intermediate_size": 96,
		"num_hidden_layers": 1, "num_attention_heads": 32, "max_position_embeddings": 131072, "eos_token_id": [1, 2],
		"rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 8192, "rope_type": "llama3"}`)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.EOSTokenIDs, []int{1, 2}) {
		t.Fatalf("eos list: %v", c.EOSTokenIDs)
	}
	inv := c.RoPE.invFreq(128)
	for i, want := range map[int]float64{0: 1.0, 20: 0.016560440080994446, 29: 0.002166570763503359,
		32: 0.0005248461609929547, 34: 0.00017850781276799638, 40: 3.428102195952591e-05, 63: 3.068925988914511e-07} {
		if math.Abs(inv[i]-want) > 1e-12*math.Max(1, want) {
			t.Errorf("inv_freq[%d] = %v, want %v", i, inv[i], want)
		}
	}
}

func TestConfigRefusals(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{`"model_type": "gpt2"`, "model_type"},
		{llamaBase + `, "rope_scaling": {"rope_type": "yarn", "factor": 4}`, "rope_scaling.rope_type"},
		{llamaBase + `, "rope_parameters": {"rope_type": "dynamic"}`, "rope_parameters.rope_type"},
		{llamaBase + `, "rope_scaling": {"rope_type": "llama3", "factor": 8}`, "rope_scaling"},
		{llamaBase + `, "hidden_act": "gelu"`, "hidden_act"},
		{llamaBase + `, "num_key_value_heads": 3`, "num_key_value_heads"},
		{llamaBase + `, "eos_token_id": "x"`, "eos_token_id"},
		{llamaBase + `, "eos_token_id": 99`, "eos_token_id"},
		{strings.Replace(llamaBase, `"hidden_size": 64`, `"hidden_size": 0`, 1), "hidden_size"},
		{llamaBase + `, "head_dim": 15`, "head_dim"},
	} {
		_, err := parse(t, c.body)
		if err == nil || !strings.Contains(err.Error(), "field "+c.field) {
			t.Errorf("config {%s}: err = %v, want one naming field %s", c.body, err, c.field)
		}
	}
	if _, err := parse(t, `"model_type": "gpt2"`); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unsupported model_type does not wrap ErrUnsupported: %v", err)
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "bert"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "config.json")) || !strings.Contains(err.Error(), "model_type") {
		t.Fatalf("err = %v, want the file path and the field", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, set := range []string{"tiny-llama", "tiny-qwen2"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", set, "model", "config.json")); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("{" + llamaBase + `, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 64}}`))
	f.Add([]byte(`{"model_type": "qwen2", "num_attention_heads": 0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if c.Heads%c.KVHeads != 0 || c.HeadDim <= 0 || c.HeadDim%2 != 0 {
			t.Fatalf("accepted an inconsistent config: %+v", c)
		}
		_ = c.RoPE.invFreq(c.HeadDim)
	})
}
