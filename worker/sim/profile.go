// Package sim is the worker's simulated backend: the forward pass and adapter loads are
// replaced by a cost model of a real GPU (a Profile), so that the whole worker (API,
// scheduler, adapter tiers, load reports, gossip) runs as it would on that GPU, dozens per CPU
// machine, for cluster experiments. It emits tokens without computing them.
package sim

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Profile is the cost model of one GPU serving one base model. The file format is JSON with
// these fields; README.md beside this file documents it and the default's calibration.
type Profile struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Model is the shape whose costs are modeled (Hugging Face config.json names).
	Model Shape `json:"model"`
	// GEMM is the weight-GEMM time of one step by batch rows, as [rows, milliseconds] points
	// in increasing rows, interpolated linearly between points (and below the first).
	GEMM [][2]float64 `json:"gemm_ms"`
	// GEMMPerRowBeyond is the microseconds each row beyond the last GEMM point adds (the
	// compute-bound slope of prefill).
	GEMMPerRowBeyond float64 `json:"gemm_us_per_row_beyond"`
	// KVReadRate is the bytes per second attention reads the KV cache at.
	KVReadRate float64 `json:"kv_read_bytes_per_s"`
	// LoRAReadRate is the effective bytes per second of reading the weights of the distinct
	// adapters in a step (their kernels included).
	LoRAReadRate float64 `json:"lora_read_bytes_per_s"`
	// HostToDevice is the bytes per second of uploading an adapter to the device.
	HostToDevice float64 `json:"host_to_device_bytes_per_s"`
	// DiskRate is the bytes per second of loading an adapter from disk into host memory.
	DiskRate float64 `json:"disk_bytes_per_s"`
	// HubRate is the bytes per second of downloading an adapter from the hub.
	HubRate float64 `json:"hub_bytes_per_s"`
	// KVCacheTokens is how many tokens the device's KV cache holds; it sizes the worker's
	// KV cache unless the worker sets one.
	KVCacheTokens int `json:"kv_cache_tokens"`
}

// Shape is the modeled base model.
type Shape struct {
	Layers       int `json:"num_hidden_layers"`
	Hidden       int `json:"hidden_size"`
	Intermediate int `json:"intermediate_size"`
	Heads        int `json:"num_attention_heads"`
	KVHeads      int `json:"num_key_value_heads"`
	DTypeBytes   int `json:"dtype_bytes"`
}

//go:embed profiles/h100-llama-2-7b.json
var defaultProfile []byte

// DefaultProfile is an H100 80GB serving Llama-2-7B, calibrated from measurements on the
// project's lent H100.
func DefaultProfile() *Profile {
	p, err := ParseProfile(defaultProfile)
	if err != nil {
		panic(fmt.Sprintf("sim: the built-in profile is invalid: %v", err)) // a build defect
	}
	return p
}

// LoadProfile reads a profile file; "" is the default profile.
func LoadProfile(path string) (*Profile, error) {
	if path == "" {
		return DefaultProfile(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	p, err := ParseProfile(b)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", path, err)
	}
	return p, nil
}

// ParseProfile decodes and checks a profile; unknown fields are an error, so that a
// misspelled one is not silently ignored.
func ParseProfile(b []byte) (*Profile, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if dec.More() {
		return nil, errors.New("profile: data after the JSON object")
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return &p, nil
}

// Limits that keep a hostile profile from overflowing the cost arithmetic.
const (
	maxDim    = 1 << 20
	maxLayers = 1024
	maxDType  = 8
	maxRate   = 1e18
)

func (p *Profile) validate() error {
	m := p.Model
	for _, d := range []struct {
		name string
		v    int
	}{{"num_hidden_layers", m.Layers}, {"hidden_size", m.Hidden}, {"intermediate_size", m.Intermediate},
		{"num_attention_heads", m.Heads}, {"num_key_value_heads", m.KVHeads}, {"dtype_bytes", m.DTypeBytes}} {
		if d.v <= 0 || d.v > maxDim {
			return fmt.Errorf("model.%s must be in 1..%d, got %d", d.name, maxDim, d.v)
		}
	}
	if m.Layers > maxLayers || m.DTypeBytes > maxDType {
		return fmt.Errorf("model: at most %d layers of at most %d-byte values, got %d of %d", maxLayers, maxDType, m.Layers, m.DTypeBytes)
	}
	if m.Hidden%m.Heads != 0 || m.Heads%m.KVHeads != 0 {
		return fmt.Errorf("model: hidden_size %d, num_attention_heads %d and num_key_value_heads %d do not divide", m.Hidden, m.Heads, m.KVHeads)
	}
	if len(p.GEMM) == 0 {
		return errors.New("gemm_ms needs at least one [rows, ms] point")
	}
	for i, pt := range p.GEMM {
		if pt[0] < 1 || pt[0] > maxDim || pt[1] <= 0 || pt[1] > 1e6 {
			return fmt.Errorf("gemm_ms[%d] = %v: rows must be in 1..%d and ms positive", i, pt, maxDim)
		}
		if i > 0 && pt[0] <= p.GEMM[i-1][0] {
			return fmt.Errorf("gemm_ms rows must increase, got %v after %v", pt[0], p.GEMM[i-1][0])
		}
	}
	if p.GEMMPerRowBeyond < 0 || p.GEMMPerRowBeyond > 1e6 {
		return fmt.Errorf("gemm_us_per_row_beyond must be in 0..1e6, got %v", p.GEMMPerRowBeyond)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"kv_read_bytes_per_s", p.KVReadRate}, {"lora_read_bytes_per_s", p.LoRAReadRate}, {"host_to_device_bytes_per_s", p.HostToDevice},
		{"disk_bytes_per_s", p.DiskRate}, {"hub_bytes_per_s", p.HubRate}} {
		if !(r.v >= 1 && r.v <= maxRate) { // also refuses NaN
			return fmt.Errorf("%s must be in 1..%g, got %v", r.name, maxRate, r.v)
		}
	}
	if p.KVCacheTokens <= 0 || p.KVCacheTokens > 1<<30 {
		return fmt.Errorf("kv_cache_tokens must be in 1..%d, got %d", 1<<30, p.KVCacheTokens)
	}
	return nil
}
