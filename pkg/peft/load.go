// Package peft loads PEFT LoRA adapters (adapter_config.json +
// adapter_model.safetensors) and checks them against the base model they
// will run on, so that an unusable adapter is refused at load time with an
// error naming the cause.
package peft

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// File names in a PEFT adapter directory.
const (
	configFile     = "adapter_config.json"
	weightsFile    = "adapter_model.safetensors"
	pickleFile     = "adapter_model.bin"
	maxConfigBytes = 1 << 20 // real configs are about 1 KB
	tensorPrefix   = "base_model.model."
	DefaultMaxRank = 64
)

// Module is one linear layer of each decoder layer of the base model.
type Module struct {
	Name    string // "q_proj"
	Path    string // "self_attn.q_proj", relative to model.layers.N
	In, Out int
}

// Base describes the base model: NumLayers decoder layers, each holding
// Modules at model.layers.N.<Path>. model.embed_tokens and lm_head exist too;
// targeting them is refused.
type Base struct {
	NumLayers int
	Modules   []Module
}

// Options configures Load.
type Options struct {
	// MaxRank is the highest LoRA rank accepted; zero or negative selects
	// DefaultMaxRank (64).
	MaxRank int
	// BF16 keeps A and B in bfloat16 (LoRA.A16, B16) rather than float32: half
	// the host memory, for a backend that holds adapters in bf16 anyway.
	BF16 bool
}

func (o Options) maxRank() int {
	if o.MaxRank <= 0 {
		return DefaultMaxRank
	}
	return o.MaxRank
}

// LoRA is the low-rank update of one module: y = W x + Scale · B (A x). A and B
// are in float32, or, loaded with Options.BF16, in bfloat16 in A16 and B16 (A
// and B nil).
type LoRA struct {
	Rank, In, Out int
	Scale         float32
	A             []float32 // [Rank*In], row-major
	B             []float32 // [Out*Rank], row-major
	A16, B16      []uint16  // the same in bfloat16
}

// Target identifies an adapted module.
type Target struct {
	Layer  int
	Module string // Module.Name, e.g. "q_proj"
}

// Adapter is a loaded, validated LoRA adapter.
type Adapter struct {
	Config  Config
	Weights map[Target]*LoRA
}

// MaxRank is the largest rank over all adapted modules.
func (a *Adapter) MaxRank() int {
	r := 0
	for _, w := range a.Weights {
		r = max(r, w.Rank)
	}
	return r
}

// Bytes is the size of all A and B matrices in memory.
func (a *Adapter) Bytes() int64 {
	var n int64
	for _, w := range a.Weights {
		n += 4*int64(len(w.A)+len(w.B)) + 2*int64(len(w.A16)+len(w.B16))
	}
	return n
}

// slot is one targeted module: what the config and base require of it, and
// the adapter tensors found for it.
type slot struct {
	target        Target
	path          string
	rank, in, out int
	scale         float32
	a, b          string // tensor names
}

// Load reads the adapter in dir and validates it against base: every
// target_modules entry must match a module of base, every targeted module
// must have lora_A [rank, in] and lora_B [out, rank] and nothing else may be
// in the file, and ranks must not exceed opts.MaxRank.
func Load(dir string, base Base, opts Options) (*Adapter, error) {
	if err := base.validate(); err != nil {
		return nil, err
	}
	weights, err := weightsPath(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := readConfig(filepath.Join(dir, configFile))
	if err != nil {
		return nil, err
	}
	slots, err := resolve(&cfg, base, opts.maxRank())
	if err != nil {
		return nil, err
	}
	f, err := safetensors.Open(weights)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWeightsFile, err)
	}
	defer f.Close()
	if err := assign(f, slots); err != nil {
		return nil, err
	}
	w, err := readWeights(f, slots, opts.BF16)
	if err != nil {
		return nil, err
	}
	return &Adapter{Config: cfg, Weights: w}, nil
}

func (b Base) validate() error {
	if b.NumLayers <= 0 || len(b.Modules) == 0 {
		return fmt.Errorf("%w: %d layers, %d modules", ErrBase, b.NumLayers, len(b.Modules))
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for _, m := range b.Modules {
		if m.Name == "" || m.Path == "" || m.In <= 0 || m.Out <= 0 || names[m.Name] || paths[m.Path] {
			return fmt.Errorf("%w: module %+v is empty, repeated or sized ≤ 0", ErrBase, m)
		}
		names[m.Name], paths[m.Path] = true, true
	}
	return nil
}

// weightsPath picks adapter_model.safetensors; a pickle is refused by its
// name alone and never opened.
func weightsPath(dir string) (string, error) {
	st := filepath.Join(dir, weightsFile)
	if _, err := os.Stat(st); err == nil {
		return st, nil
	}
	if _, err := os.Lstat(filepath.Join(dir, pickleFile)); err == nil {
		return "", fmt.Errorf("%w (%s)", ErrPickle, dir)
	}
	return "", fmt.Errorf("%w (%s)", ErrNoWeights, dir)
}

func readConfig(path string) (Config, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if st.Size() > maxConfigBytes {
		return Config{}, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrConfig, path, st.Size(), maxConfigBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return ParseConfig(data)
}

// resolve finds the targeted modules of base and their rank and scale.
func resolve(cfg *Config, base Base, maxRank int) (map[string]*slot, error) {
	keys := moduleKeys(base)
	if err := checkEntriesMatch(cfg, keys); err != nil {
		return nil, err
	}
	slots := map[string]*slot{}
	for _, k := range keys {
		ok, err := cfg.targets(k)
		if err != nil {
			return nil, fmt.Errorf("%w: matching %s: %v", ErrConfig, k.path, err)
		}
		if !ok {
			continue
		}
		if k.err != nil {
			return nil, fmt.Errorf("%w (target_modules %s matches %s)", k.err, targetsString(cfg), k.path)
		}
		s, err := newSlot(cfg, k, maxRank)
		if err != nil {
			return nil, err
		}
		slots[k.path] = s
	}
	if len(slots) == 0 {
		return nil, fmt.Errorf("%w: target modules %s not found in the base model (layers_to_transform %v, layers_pattern %v)",
			ErrTargetNotFound, targetsString(cfg), cfg.LayersToTransform, cfg.LayersPattern)
	}
	return slots, nil
}

func newSlot(cfg *Config, k moduleKey, maxRank int) (*slot, error) {
	rank, alpha, err := cfg.rankAlpha(k.path)
	if err != nil {
		return nil, fmt.Errorf("%w: matching %s: %v", ErrConfig, k.path, err)
	}
	if rank > maxRank {
		return nil, fmt.Errorf("%w: %s has rank %d, maximum %d", ErrRankTooLarge, k.path, rank, maxRank)
	}
	div := float64(rank)
	if cfg.UseRSLoRA {
		div = math.Sqrt(div)
	}
	return &slot{
		target: Target{Layer: k.layer, Module: k.mod.Name},
		path:   k.path, rank: rank, in: k.mod.In, out: k.mod.Out,
		scale: float32(alpha / div),
	}, nil
}

// checkEntriesMatch refuses a target_modules entry (or regex) that matches
// no module of the base model at all, naming it.
func checkEntriesMatch(cfg *Config, keys []moduleKey) error {
	if cfg.m.target != nil {
		for _, k := range keys {
			if ok, err := cfg.m.target.MatchString(k.path); ok || err != nil {
				return err
			}
		}
		return fmt.Errorf("%w: target_modules %q matches no module", ErrTargetNotFound, cfg.TargetRegex)
	}
	for _, e := range cfg.TargetModules {
		if !slices.ContainsFunc(keys, func(k moduleKey) bool { return k.path == e || strings.HasSuffix(k.path, "."+e) }) {
			return fmt.Errorf("%w: target_modules entry %q matches no module", ErrTargetNotFound, e)
		}
	}
	return nil
}

func targetsString(cfg *Config) string {
	if cfg.TargetRegex != "" {
		return fmt.Sprintf("%q", cfg.TargetRegex)
	}
	return fmt.Sprintf("%q", cfg.TargetModules)
}

// assign maps every tensor of f to its slot and checks shapes, before any
// tensor data is read.
func assign(f *safetensors.File, slots map[string]*slot) error {
	for _, name := range f.Names() {
		path, isA, ok := splitTensorName(name)
		s := slots[path]
		if !ok || s == nil {
			return fmt.Errorf("%w: %q is not lora_A/lora_B of a targeted module", ErrStrayTensor, name)
		}
		dst, want := &s.b, []int{s.out, s.rank}
		if isA {
			dst, want = &s.a, []int{s.rank, s.in}
		}
		if *dst != "" {
			return fmt.Errorf("%w: %q and %q are the same weight", ErrStrayTensor, *dst, name)
		}
		*dst = name
		if info, _ := f.Info(name); !slices.Equal(info.Shape, want) {
			return fmt.Errorf("%w: %q has shape %v, want %v (%s: in %d, out %d, rank %d)",
				ErrShape, name, info.Shape, want, path, s.in, s.out, s.rank)
		}
	}
	for _, path := range sortedKeys(slots) {
		if s := slots[path]; s.a == "" || s.b == "" {
			return fmt.Errorf("%w: %s needs lora_A and lora_B", ErrMissingTensor, path)
		}
	}
	return nil
}

// splitTensorName parses base_model.model.<path>.lora_{A,B}[.default].weight.
func splitTensorName(name string) (path string, isA, ok bool) {
	rest, ok := strings.CutPrefix(name, tensorPrefix)
	if !ok {
		return "", false, false
	}
	for _, suffix := range []string{".lora_A.weight", ".lora_A.default.weight", ".lora_B.weight", ".lora_B.default.weight"} {
		if p, found := strings.CutSuffix(rest, suffix); found {
			return p, strings.HasPrefix(suffix, ".lora_A"), true
		}
	}
	return "", false, false
}

func readWeights(f *safetensors.File, slots map[string]*slot, bf16 bool) (map[Target]*LoRA, error) {
	out := make(map[Target]*LoRA, len(slots))
	for _, path := range sortedKeys(slots) {
		s := slots[path]
		a, err := f.Float32(s.a)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrWeightsFile, err)
		}
		b, err := f.Float32(s.b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrWeightsFile, err)
		}
		l := &LoRA{Rank: s.rank, In: s.in, Out: s.out, Scale: s.scale, A: a, B: b}
		if bf16 {
			l.A, l.B, l.A16, l.B16 = nil, nil, safetensors.BF16s(a), safetensors.BF16s(b)
		}
		out[s.target] = l
	}
	return out, nil
}

func sortedKeys(m map[string]*slot) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
