package peft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Config is the part of PEFT's LoraConfig (adapter_config.json) that this
// package implements. Keys it does not implement are refused when set (see
// ParseConfig); keys that only matter for training are ignored.
type Config struct {
	PeftType            string  // always "LORA"
	BaseModelNameOrPath string  // recorded, not checked
	R                   int     // default rank; PEFT default 8
	LoraAlpha           float64 // default alpha; PEFT default 8
	// TargetModules is the list form of target_modules: a module is
	// targeted when its full path equals an entry or ends with "."+entry.
	TargetModules []string
	// TargetRegex is the string form of target_modules, matched like
	// Python's re.fullmatch against the full module path (for example
	// "model.layers.3.self_attn.q_proj"). "all-linear" (any case) targets
	// every linear module of the base model except lm_head, as in PEFT.
	TargetRegex string
	// ExcludeModules / ExcludeRegex: exclude_modules, list or string form,
	// matched as target_modules; an excluded module is never targeted.
	ExcludeModules []string
	ExcludeRegex   string
	UseRSLoRA      bool // scale alpha/sqrt(r) instead of alpha/r
	// RankPattern and AlphaPattern keep the file's key order: the first key
	// matching a module path by (.*\.)?(key)$ wins (PEFT's get_pattern_key).
	RankPattern  []RankPattern
	AlphaPattern []AlphaPattern
	// LayersToTransform limits list-form targets to these layer indices
	// (an int in the file becomes one element); empty means all layers.
	LayersToTransform []int
	// LayersPattern names the module list holding the layers ("layers");
	// empty means any name, as in PEFT.
	LayersPattern []string
	// FanInFanOut is recorded but ignored: for nn.Linear targets (all of
	// ours) PEFT warns and sets it to False.
	FanInFanOut bool

	m *matchers // compiled patterns
}

// RankPattern is one rank_pattern entry.
type RankPattern struct {
	Key  string
	Rank int
}

// AlphaPattern is one alpha_pattern entry.
type AlphaPattern struct {
	Key   string
	Alpha float64
}

// PEFT's LoraConfig defaults for keys absent from the file.
const (
	defaultR     = 8
	defaultAlpha = 8
)

// refusedKeys are features that change inference and are not implemented;
// each is refused with its own error when set.
var refusedKeys = map[string]error{
	"use_dora":                ErrDoRA,
	"modules_to_save":         ErrModulesToSave,
	"lora_bias":               ErrLoRABias,
	"layer_replication":       ErrLayerReplication,
	"target_parameters":       ErrTargetParameters,
	"trainable_token_indices": ErrTrainableTokens,
	"alora_invocation_tokens": ErrALoRA,
}

// inertKeys only matter for training, bookkeeping, or together with a
// refused feature, so any value is accepted.
var inertKeys = map[string]bool{
	"task_type": true, "peft_version": true, "revision": true, "inference_mode": true,
	"lora_dropout": true, "megatron_core": true, "qalora_group_size": true, "auto_mapping": true,
	"loftq_config": true, "eva_config": true, "corda_config": true, "lora_ga_config": true,
	"ensure_weight_tying": true, "runtime_config": true,
}

// decodedKeys are read into Config (or checked) by decode.
var decodedKeys = map[string]bool{
	"peft_type": true, "base_model_name_or_path": true, "r": true, "lora_alpha": true,
	"target_modules": true, "exclude_modules": true, "use_rslora": true, "rank_pattern": true,
	"alpha_pattern": true, "layers_to_transform": true, "layers_pattern": true,
	"fan_in_fan_out": true, "bias": true, "init_lora_weights": true,
}

// field is one key of a JSON object, in file order.
type field struct {
	key string
	raw json.RawMessage
}

type fields []field

func (fs fields) get(key string) json.RawMessage {
	for _, f := range fs {
		if f.key == key {
			return f.raw
		}
	}
	return nil
}

// ParseConfig parses adapter_config.json. It refuses, each with its own
// error: peft_type other than LORA; DoRA, modules_to_save, lora_bias,
// layer_replication, target_parameters, trainable_token_indices and aLoRA
// when set; bias other than "none"; init_lora_weights methods that need a
// modified base model; and any other unknown key that is set (unknown keys
// that are null, false, "", [] or {} are ignored). Duplicate keys are refused
// rather than resolved silently.
func ParseConfig(data []byte) (Config, error) {
	fs, err := objectFields(data)
	if err != nil {
		return Config{}, err
	}
	if err := checkKeys(fs); err != nil {
		return Config{}, err
	}
	c := Config{R: defaultR, LoraAlpha: defaultAlpha}
	if err := c.decode(fs); err != nil {
		return Config{}, err
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// objectFields splits a JSON object into its fields, in order, refusing
// duplicate keys (encoding/json would keep the last one silently).
func objectFields(data []byte) (fields, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: not a JSON object", ErrConfig)
	}
	var out fields
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		key, _ := tok.(string) // object keys are always strings
		if seen[key] {
			return nil, fmt.Errorf("%w: duplicate key %q", ErrConfig, key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrConfig, key, err)
		}
		out = append(out, field{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrConfig)
	}
	return out, nil
}

// checkKeys applies the refusals that need no decoding, peft_type first so
// that another method's config is named as such.
func checkKeys(fs fields) error {
	raw := fs.get("peft_type")
	if raw == nil {
		return fmt.Errorf("%w: peft_type is missing", ErrPeftType)
	}
	var peftType string
	if err := json.Unmarshal(raw, &peftType); err != nil || peftType != "LORA" {
		return fmt.Errorf("%w: got %s", ErrPeftType, raw)
	}
	for _, f := range fs {
		if !isSet(f.raw) || decodedKeys[f.key] || inertKeys[f.key] {
			continue
		}
		if err, ok := refusedKeys[f.key]; ok {
			return fmt.Errorf("%w (%s: %s)", err, f.key, f.raw)
		}
		return fmt.Errorf("%w: %q", ErrUnsupportedKey, f.key)
	}
	return nil
}

// isSet reports whether a value is anything but null, false, "", [] or {}.
func isSet(raw json.RawMessage) bool {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return true
	}
	switch b.String() {
	case "null", "false", `""`, "[]", "{}":
		return false
	}
	return true
}

func (c *Config) decode(fs fields) error {
	c.PeftType = "LORA"
	var bias, init string
	var err error
	for _, step := range []struct {
		key string
		dst any
	}{
		{"base_model_name_or_path", &c.BaseModelNameOrPath}, {"r", &c.R}, {"lora_alpha", &c.LoraAlpha},
		{"use_rslora", &c.UseRSLoRA}, {"fan_in_fan_out", &c.FanInFanOut}, {"bias", &bias},
	} {
		if err = unmarshal(fs, step.key, step.dst); err != nil {
			return err
		}
	}
	if bias != "" && bias != "none" {
		return fmt.Errorf("%w: got %q", ErrBias, bias)
	}
	if init, err = initWeights(fs.get("init_lora_weights")); err != nil {
		return err
	}
	if init != "" {
		return fmt.Errorf("%w: %q", ErrInitWeights, init)
	}
	if c.TargetModules, c.TargetRegex, err = stringOrList(fs, "target_modules"); err != nil {
		return err
	}
	if c.ExcludeModules, c.ExcludeRegex, err = stringOrList(fs, "exclude_modules"); err != nil {
		return err
	}
	if c.LayersPattern, err = layersPattern(fs); err != nil {
		return err
	}
	if c.LayersToTransform, err = layersToTransform(fs); err != nil {
		return err
	}
	return c.decodePatterns(fs)
}

// unmarshal decodes key into dst unless it is absent or null (keep default).
func unmarshal(fs fields, key string, dst any) error {
	raw := fs.get(key)
	if raw == nil || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrConfig, key, err)
	}
	return nil
}

// initWeights returns the init_lora_weights method when it is one whose
// saved adapter does not fit the original base model, else "".
func initWeights(raw json.RawMessage) (string, error) {
	var s string
	if raw == nil || json.Unmarshal(raw, new(bool)) == nil { // true, false or null
		return "", nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: init_lora_weights: %v", ErrConfig, err)
	}
	switch strings.ToLower(s) {
	case "gaussian", "eva", "orthogonal": // initialisation only
		return "", nil
	}
	return s, nil
}

// stringOrList decodes a key that PEFT accepts as a string or a list.
func stringOrList(fs fields, key string) (list []string, str string, err error) {
	raw := bytes.TrimSpace(fs.get(key))
	if len(raw) > 0 && raw[0] == '"' {
		err = unmarshal(fs, key, &str)
	} else {
		err = unmarshal(fs, key, &list)
	}
	return list, str, err
}

func layersPattern(fs fields) ([]string, error) {
	list, str, err := stringOrList(fs, "layers_pattern")
	if str != "" {
		list = []string{str}
	}
	return list, err
}

func layersToTransform(fs fields) ([]int, error) {
	raw := bytes.TrimSpace(fs.get("layers_to_transform"))
	if len(raw) > 0 && raw[0] != '[' && string(raw) != "null" {
		var one int
		err := unmarshal(fs, "layers_to_transform", &one)
		return []int{one}, err
	}
	var list []int
	return list, unmarshal(fs, "layers_to_transform", &list)
}

// decodePatterns reads rank_pattern and alpha_pattern keeping key order,
// since the first matching key wins.
func (c *Config) decodePatterns(fs fields) error {
	for _, p := range []struct {
		key string
		add func(k string, raw json.RawMessage) error
	}{
		{"rank_pattern", func(k string, raw json.RawMessage) error {
			var r int
			err := json.Unmarshal(raw, &r)
			c.RankPattern = append(c.RankPattern, RankPattern{k, r})
			return err
		}},
		{"alpha_pattern", func(k string, raw json.RawMessage) error {
			var a float64
			err := json.Unmarshal(raw, &a)
			c.AlphaPattern = append(c.AlphaPattern, AlphaPattern{k, a})
			return err
		}},
	} {
		raw := fs.get(p.key)
		if raw == nil || string(raw) == "null" {
			continue
		}
		entries, err := objectFields(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", p.key, err)
		}
		for _, e := range entries {
			if err := p.add(e.key, e.raw); err != nil {
				return fmt.Errorf("%w: %s[%q]: %v", ErrConfig, p.key, e.key, err)
			}
		}
	}
	return nil
}

// validate mirrors LoraConfig.__post_init__ checks and compiles patterns.
func (c *Config) validate() error {
	switch {
	case c.R <= 0:
		return fmt.Errorf("%w: r must be positive, got %d", ErrConfig, c.R)
	case len(c.TargetModules) == 0 && c.TargetRegex == "":
		return fmt.Errorf("%w: target_modules is missing or empty", ErrConfig)
	case c.TargetRegex != "" && c.LayersToTransform != nil:
		return fmt.Errorf("%w: layers_to_transform cannot be used when target_modules is a string", ErrConfig)
	case c.TargetRegex != "" && c.LayersPattern != nil:
		return fmt.Errorf("%w: layers_pattern cannot be used when target_modules is a string", ErrConfig)
	case len(c.LayersPattern) > 0 && c.LayersToTransform == nil:
		return fmt.Errorf("%w: layers_pattern needs layers_to_transform", ErrConfig)
	case slices.ContainsFunc(c.RankPattern, func(p RankPattern) bool { return p.Rank <= 0 }):
		return fmt.Errorf("%w: rank_pattern ranks must be positive", ErrConfig)
	}
	m, err := compileMatchers(c)
	c.m = m
	return err
}
