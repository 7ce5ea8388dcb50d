// Package engine measures the forward pass on a backend, without serving: decode step times
// over a grid of batch sizes, distinct adapters and contexts, each against the memory-bandwidth
// floor of the step (base weights, each distinct adapter and the KV cache read once), the same
// steps with LoRA off and with LoRA and attention off (the GEMM floor), and prefill
// throughput. Weights and adapters are random: only the model's shape matters.
package engine

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
	"github.com/lorafleet/lorafleet/worker/model"
)

//go:embed llama-2-7b.json
var llama2Config []byte

// Llama2 is the shape of Llama-2-7B (hidden 4096, intermediate 11008, 32 layers, 32 heads,
// vocabulary 32000), the GPU performance targets' model.
func Llama2() model.Config {
	c, err := model.ParseConfig(llama2Config)
	if err != nil {
		panic(err) // embedded at build time
	}
	return c
}

// Config is one benchmark run. Zero fields take the documented defaults.
type Config struct {
	Model model.Config // the shape; weights are random
	// Batches are the decode batch sizes. Default 1, 8, 32, 64, 128.
	Batches []int
	// Adapters are the distinct adapters per batch; 0 stands for "as many as rows". Counts
	// above a batch's size are skipped. Default 1, 8, 32, 0.
	Adapters []int
	// Contexts are the tokens already in each sequence's KV cache. Default 128, 512.
	Contexts []int
	// Rank of every adapter, on all seven projections. Default 16.
	Rank int
	// Steps are timed after Warmup untimed ones; the median is reported. Defaults 50 and 5.
	Steps, Warmup int
	// PrefillPrompt tokens in each of PrefillSeqs sequences make one prefill step, each
	// sequence with its own adapter. Defaults 512 and 4.
	PrefillPrompt, PrefillSeqs int
	// Bandwidth is the memory bandwidth of the floor, bytes/s. Default 3.0e12 (the H100's
	// measured copy bandwidth).
	Bandwidth float64
	// Seed for the random weights and tokens. Default 1.
	Seed uint64
	// HostBF16 keeps the adapters' host copy in bf16, as the worker's host tier does for a
	// backend that holds adapters in bf16 (cuda). Default float32.
	HostBF16 bool
	// Settings change the backend's defaults for the whole run, each as its side-by-side
	// variant does (cublas, deep, lean, unsplit, tuned, rope-apart; Report.Winners): such a
	// run measures the rows of the defaults alone, with these in place, and no variants.
	// Default none.
	Settings []string
}

func (c *Config) setDefaults() error {
	def := func(v *[]int, d ...int) {
		if len(*v) == 0 {
			*v = d
		}
	}
	def(&c.Batches, 1, 8, 32, 64, 128)
	def(&c.Adapters, 1, 8, 32, 0)
	def(&c.Contexts, 128, 512)
	for _, f := range []struct {
		v   *int
		def int
	}{{&c.Rank, 16}, {&c.Steps, 50}, {&c.Warmup, 5}, {&c.PrefillPrompt, 512}, {&c.PrefillSeqs, 4}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.Bandwidth == 0 {
		c.Bandwidth = 3.0e12
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Model.Layers == 0 {
		return errors.New("engine bench: no model shape")
	}
	for _, v := range slices.Concat(c.Batches, c.Contexts, []int{c.Rank, c.Steps, c.PrefillPrompt, c.PrefillSeqs}) {
		if v <= 0 {
			return fmt.Errorf("engine bench: sizes must be positive, got %d", v)
		}
	}
	for _, k := range c.Adapters {
		if k < 0 {
			return fmt.Errorf("engine bench: %d adapters", k)
		}
	}
	if err := checkSettings(c.Settings); err != nil {
		return err
	}
	if c.Warmup < 0 || !(c.Bandwidth > 0) {
		return errors.New("engine bench: negative warm-up or bandwidth")
	}
	if need := slices.Max(c.Contexts) + 1; need > c.Model.MaxPositions || c.PrefillPrompt > c.Model.MaxPositions {
		return fmt.Errorf("engine bench: contexts need %d positions, the model has %d", max(need, c.PrefillPrompt), c.Model.MaxPositions)
	}
	return nil
}

// MaxAdapters is the number of adapters the run keeps on the backend at once (the size of a
// GPU backend's adapter pool): the most any step uses, and a spare slot that takes the
// uploads of the decode-while-loading measurement. The variants (a run without Settings) use
// min(reference, batch) adapters, whatever Adapters lists.
func (c *Config) MaxAdapters() (int, error) {
	if err := c.setDefaults(); err != nil {
		return 0, err
	}
	n, top := c.PrefillSeqs, slices.Max(c.Batches)
	for _, k := range c.Adapters {
		if k == 0 {
			k = top
		}
		n = max(n, min(k, top))
	}
	if len(c.Settings) == 0 {
		n = max(n, min(reference, top))
	}
	return n + 1, nil
}

// Timer is implemented by backends that time their own work (CUDA events); others are timed
// by the wall clock around a step, which ends with a Sync.
type Timer interface {
	Time(f func()) (time.Duration, error)
}

// Randomizer is implemented by backends that make random weights in place (a GPU need not
// receive gigabytes from the host).
type Randomizer interface {
	RandomWeight(n int, mean, std float32, seed uint64) gpukern.Tensor
}

// Run measures every configuration on be and returns the results in the order run. When a
// measurement fails, or ctx ends (a time limit, a signal), it returns the error with the
// report of what was measured before (nil when nothing was), so that a long device run keeps
// its results.
func Run(ctx context.Context, be gpukern.Backend, cfg Config, progress func(string)) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := lacking(be, cfg.Settings); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(string) {}
	}
	g := &gated{Backend: be}
	m, err := model.Build(cfg.Model, g, randomWeights(be, cfg.Seed))
	if err != nil {
		return nil, fmt.Errorf("engine bench: %w", err)
	}
	n, _ := cfg.MaxAdapters()
	n-- // the spare slot stays free
	progress(fmt.Sprintf("uploading %d adapters of rank %d", n, cfg.Rank))
	host := randomAdapter(&m.Config, cfg.Rank, cfg.Seed, cfg.HostBF16)
	adapters, err := loadAdapters(m, host, n)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, a := range adapters {
			m.FreeAdapter(a)
		}
	}()
	r := &runner{cfg: cfg, be: be, gate: g, m: m, host: host, adapters: adapters, rng: rand.New(rand.NewPCG(cfg.Seed, 2))}
	rep := &Report{Device: be.Name(), Model: shapeOf(cfg.Model), Rank: cfg.Rank, Bandwidth: cfg.Bandwidth, Steps: cfg.Steps,
		Settings: cfg.Settings}
	defer r.applySettings()()
	if err = r.copyBandwidth(rep, progress); err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	err = r.decodeGrid(ctx, rep, progress)
	if err == nil {
		err = stopped(ctx)
	}
	if err == nil {
		progress(fmt.Sprintf("prefill: %d × %d tokens", cfg.PrefillSeqs, cfg.PrefillPrompt))
		rep.Prefill, err = r.prefill()
	}
	rep.Graphs = r.graphs()
	rep.TimedGEMMs = r.timedGEMMs()
	if d, ok := be.(interface{ Describe() string }); ok {
		rep.Device = d.Describe() // after the runs: what they ended with
	}
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, err
}

// gated turns attention (with the KV write) off, for the GEMM floor.
type gated struct {
	gpukern.Backend
	attentionOff bool
}

func (g *gated) RoPEWriteKV(q, qkv, delta gpukern.Tensor, rows, heads int, pos []int32, cosSin gpukern.Tensor, cache *gpukern.KVCache, layer int, slots []int32) {
	if !g.attentionOff {
		g.Backend.RoPEWriteKV(q, qkv, delta, rows, heads, pos, cosSin, cache, layer, slots)
	}
}

// RoPEAttention skips both RoPEAttention's parts as RoPEWriteKV and Attention do, and otherwise
// lets a backend that fuses them do so (gpukern.RoPEAttender).
func (g *gated) RoPEAttention(out, q, qkv, delta gpukern.Tensor, rows int, pos []int32, cosSin gpukern.Tensor, cache *gpukern.KVCache,
	layer int, slots []int32, seqs []gpukern.AttnSeq, p gpukern.AttnParams) {
	if !g.attentionOff {
		gpukern.RoPEAttention(g.Backend, out, q, qkv, delta, rows, pos, cosSin, cache, layer, slots, seqs, p)
	}
}

func (g *gated) Attention(out, q gpukern.Tensor, cache *gpukern.KVCache, layer int, seqs []gpukern.AttnSeq, p gpukern.AttnParams) {
	if !g.attentionOff {
		g.Backend.Attention(out, q, cache, layer, seqs, p)
	}
}

// randomWeights makes matrices of standard deviation 0.02 and vectors (norm weights, biases)
// near 1, so that activations stay finite through the layers.
func randomWeights(be gpukern.Backend, seed uint64) model.WeightFunc {
	n := uint64(0)
	return func(parts ...model.WeightPart) (gpukern.Tensor, error) {
		size := 0
		for _, p := range parts {
			elems := 1
			for _, d := range p.Shape {
				elems *= d
			}
			size += elems
		}
		n++
		mean, std := float32(0), float32(0.02)
		if len(parts[0].Shape) == 1 {
			mean, std = 1, 0.1
		}
		if r, ok := be.(Randomizer); ok {
			return r.RandomWeight(size, mean, std, seed+n), nil
		}
		return be.Weight(randomValues(size, mean, std, seed+n)), nil
	}
}

// randomValues are uniform with the given mean and standard deviation.
func randomValues(n int, mean, std float32, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = mean + std*1.7320508*float32(2*r.Float64()-1)
	}
	return v
}

// randomAdapter is a rank-r adapter on all seven projections of every layer, held in bf16
// if bf16.
func randomAdapter(c *model.Config, rank int, seed uint64, bf16 bool) *peft.Adapter {
	pa := &peft.Adapter{Weights: map[peft.Target]*peft.LoRA{}}
	for li := range c.Layers {
		for p := range model.NumProj {
			in, out := c.Shape(p)
			s := seed + uint64(li*int(model.NumProj)+int(p))*2
			w := &peft.LoRA{Rank: rank, In: in, Out: out, Scale: 2, A: randomValues(rank*in, 0, 0.02, s), B: randomValues(out*rank, 0, 0.02, s+1)}
			if bf16 {
				w.A, w.B, w.A16, w.B16 = nil, nil, safetensors.BF16s(w.A), safetensors.BF16s(w.B)
			}
			pa.Weights[peft.Target{Layer: li, Module: p.Name()}] = w
		}
	}
	return pa
}

// loadAdapters uploads n adapters of pa's values: distinct device copies, so a step reads
// each separately, without making n × its size on the host.
func loadAdapters(m *model.Model, pa *peft.Adapter, n int) ([]*model.Adapter, error) {
	var as []*model.Adapter
	for i := range n {
		a, err := m.LoadAdapter(fmt.Sprintf("bench-%d", i), pa)
		if err != nil {
			for _, a := range as {
				m.FreeAdapter(a)
			}
			return nil, fmt.Errorf("engine bench: adapter %d: %w", i, err)
		}
		as = append(as, a)
	}
	return as, nil
}
