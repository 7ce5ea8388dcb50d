// Package model turns a Hugging Face checkpoint (Llama, Mistral, Qwen2 families) into a
// forward pass written once against gpukern, for batches whose rows mix prefill and decode,
// sequences, and LoRA adapters.
package model

import (
	"fmt"
	"math"
	"slices"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// Model is a loaded base model. It is not safe for concurrent use: one Forward at a time.
type Model struct {
	Config Config

	be     gpukern.Backend
	embed  gpukern.Tensor
	norm   gpukern.Tensor
	lmHead gpukern.Tensor // the embedding table when tied
	layers []layer
	shapes [numLinear]linearShape
	cosSin gpukern.Tensor // [MaxPositions, HeadDim]
	ws     workspace
}

type layer struct {
	inNorm, postNorm gpukern.Tensor
	w                [numLinear]gpukern.Tensor
	bias             [numLinear]gpukern.Tensor // nil when the linear has none
}

// Load reads config.json and the safetensors weights in dir onto the backend.
func Load(dir string, be gpukern.Backend) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	ckpt, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	defer ckpt.Close()
	_, lmHead := ckpt.Info("lm_head.weight")
	m, err := build(cfg, be, checkpointWeights(ckpt, be), lmHead)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}

// Build makes a model of shape cfg whose tensors weight makes, for benchmarks that need a
// model's shape and not its values (random weights made on the device).
func Build(cfg Config, be gpukern.Backend, weight WeightFunc) (*Model, error) {
	return build(cfg, be, weight, true)
}

func build(cfg Config, be gpukern.Backend, weight WeightFunc, lmHead bool) (*Model, error) {
	m := &Model{Config: cfg, be: be}
	for l := range numLinear {
		m.shapes[l] = cfg.linearShape(l)
	}
	if err := m.loadWeights(weight, lmHead); err != nil {
		return nil, err
	}
	// An activation buffer, not a weight: the angles must keep float32 precision.
	table := cfg.RoPE.cosSinTable(cfg.MaxPositions, cfg.HeadDim)
	m.cosSin = be.Alloc(len(table))
	be.Upload(m.cosSin, table)
	return m, nil
}

// Backend returns the backend the model runs on.
func (m *Model) Backend() gpukern.Backend { return m.be }

// NewKVCache allocates a paged KV cache of numBlocks blocks of blockSize tokens.
func (m *Model) NewKVCache(numBlocks, blockSize int) *gpukern.KVCache {
	c := &m.Config
	kv := &gpukern.KVCache{NumBlocks: numBlocks, BlockSize: blockSize, KVHeads: c.KVHeads, HeadDim: c.HeadDim}
	n := numBlocks * blockSize * c.KVHeads * c.HeadDim
	for range c.Layers {
		kv.K = append(kv.K, m.be.AllocCache(n))
		kv.V = append(kv.V, m.be.AllocCache(n))
	}
	return kv
}

// AdapterRun is a run of consecutive batch rows that use one adapter; nil is the base model.
type AdapterRun struct {
	Start, End int
	Adapter    *Adapter
}

// Batch is one forward step: every row is a token of some sequence at some position.
type Batch struct {
	Tokens    []int32
	Positions []int32
	Slots     []int32 // KV cache slot of each row
	Seqs      []gpukern.AttnSeq
	Adapters  []AdapterRun // cover all rows, in order
	LogitRows []int32      // rows whose next-token logits are wanted on the host

	// SampleRows are rows whose next token is sampled on the backend with the parameters of
	// the same index in Sample; Forward writes the tokens to Sampled.
	SampleRows []int32
	Sample     []gpukern.SampleParams
	Sampled    []int32
}

// validate checks the batch against the model: the engine builds batches, but positions and
// token ids come from users, and a bad one must be an error, not an out-of-range access.
func (m *Model) validate(b *Batch, kv *gpukern.KVCache) error {
	n := len(b.Tokens)
	if n == 0 || len(b.Positions) != n || len(b.Slots) != n {
		return fmt.Errorf("model: batch has %d tokens, %d positions, %d slots", n, len(b.Positions), len(b.Slots))
	}
	for i, t := range b.Tokens {
		if t < 0 || int(t) >= m.Config.VocabSize {
			return fmt.Errorf("model: token id %d outside the vocabulary (%d)", t, m.Config.VocabSize)
		}
		if p := b.Positions[i]; p < 0 || int(p) >= m.Config.MaxPositions {
			return fmt.Errorf("model: position %d outside the context (%d)", p, m.Config.MaxPositions)
		}
		if s := b.Slots[i]; s < 0 || int(s) >= kv.NumBlocks*kv.BlockSize {
			return fmt.Errorf("model: KV slot %d outside the cache", s)
		}
	}
	if err := validateSeqs(b.Seqs, n, kv); err != nil {
		return err
	}
	next := 0
	for _, r := range b.Adapters {
		if r.Start != next || r.End <= r.Start {
			return fmt.Errorf("model: adapter runs do not tile the batch at row %d", next)
		}
		if r.Adapter != nil && r.Adapter.layers == nil {
			return fmt.Errorf("model: adapter %s holds no weights (freed, or shape only)", r.Adapter.ID)
		}
		next = r.End
	}
	if next != n {
		return fmt.Errorf("model: adapter runs cover %d of %d rows", next, n)
	}
	if len(b.Sample) != len(b.SampleRows) {
		return fmt.Errorf("model: %d sample rows with %d sampling parameters", len(b.SampleRows), len(b.Sample))
	}
	for _, r := range slices.Concat(b.LogitRows, b.SampleRows) {
		if r < 0 || int(r) >= n {
			return fmt.Errorf("model: logit row %d outside the batch", r)
		}
	}
	return nil
}

// validateSeqs checks that the sequences tile the batch rows in order and that their block
// tables cover their contexts with blocks of the cache.
func validateSeqs(seqs []gpukern.AttnSeq, rows int, kv *gpukern.KVCache) error {
	next := 0
	for _, s := range seqs {
		if s.QStart != next || s.QLen <= 0 || s.QLen > s.CtxLen {
			return fmt.Errorf("model: sequences do not tile the batch at row %d", next)
		}
		next += s.QLen
		if s.CtxLen > len(s.Blocks)*kv.BlockSize {
			return fmt.Errorf("model: context of %d tokens exceeds its %d blocks", s.CtxLen, len(s.Blocks))
		}
		for _, blk := range s.Blocks {
			if blk < 0 || int(blk) >= kv.NumBlocks {
				return fmt.Errorf("model: KV block %d outside the cache", blk)
			}
		}
	}
	if next != rows {
		return fmt.Errorf("model: sequences cover %d of %d rows", next, rows)
	}
	return nil
}

// Forward runs the batch and returns the logits of LogitRows, [len(LogitRows), VocabSize]; the
// tokens sampled for SampleRows are in b.Sampled.
func (m *Model) Forward(b *Batch, kv *gpukern.KVCache) ([]float32, error) {
	if err := m.validate(b, kv); err != nil {
		return nil, err
	}
	c, be := &m.Config, m.be
	rows := len(b.Tokens)
	heads := slices.Concat(b.LogitRows, b.SampleRows) // rows that go through the LM head
	ws := m.ws.ensure(be, c, rows, len(heads), maxRank(b.Adapters))
	be.Embedding(ws.x, m.embed, b.Tokens, c.Hidden)
	attn := gpukern.AttnParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}
	eps := float32(c.RMSNormEps)
	// Each projection's LoRA delta (nil without adapters) is added by the call that reads the
	// projection's output, so that a GPU backend computes it beside the base GEMM.
	var pending, pendingDelta gpukern.Tensor // the MLP output not yet added to the residual stream x
	for li := range m.layers {
		ly := &m.layers[li]
		segs := loraSegments(&ws.segs, b.Adapters, li)
		be.RMSNorm(ws.h, ws.x, pending, pendingDelta, ly.inNorm, rows, c.Hidden, eps)
		delta := m.project(ws.qkv, ws.h, ly, linQKV, rows, segs)
		gpukern.RoPEAttention(be, ws.attn, ws.q, ws.qkv, delta, rows, b.Positions, m.cosSin, kv, li, b.Slots, b.Seqs, attn)
		delta = m.project(ws.h, ws.attn, ly, linO, rows, segs)

		be.RMSNorm(ws.h, ws.x, ws.h, delta, ly.postNorm, rows, c.Hidden, eps)
		delta = m.project(ws.gateUp, ws.h, ly, linGateUp, rows, segs)
		be.SiLUMul(ws.act, ws.gateUp, delta, rows, c.Intermediate)
		pendingDelta = m.project(ws.h, ws.act, ly, linDown, rows, segs)
		pending = ws.h
	}
	if pending != nil {
		if pendingDelta != nil {
			be.Add(pending, pending, pendingDelta, rows*c.Hidden)
		}
		be.Add(ws.x, ws.x, pending, rows*c.Hidden)
	}
	n := len(heads)
	if n == 0 {
		return nil, be.Sync()
	}
	be.Embedding(ws.last, ws.x, heads, c.Hidden)
	be.RMSNorm(ws.last, ws.last, nil, nil, m.norm, n, c.Hidden, eps)
	be.MatMul(ws.logits, ws.last, m.lmHead, n, c.VocabSize, c.Hidden)
	out := make([]float32, len(b.LogitRows)*c.VocabSize)
	be.Download(out, ws.logits)
	b.Sampled = slices.Grow(b.Sampled[:0], len(b.Sample))[:len(b.Sample)]
	if len(b.Sample) > 0 {
		be.Sample(b.Sampled, ws.logits, len(b.LogitRows), c.VocabSize, b.Sample)
	}
	return out, be.Sync()
}

// project computes out = in·Wᵀ (+ bias) for linear l and returns each row's LoRA delta of
// it, or nil when no row has an adapter on l. The LoRA calls come first: a GPU backend runs
// them beside the base GEMM, which reads the same input. The delta lives in the workspace
// until the next projection's.
func (m *Model) project(out, in gpukern.Tensor, ly *layer, l linear, rows int, segs [numLinear][]gpukern.LoRASegment) gpukern.Tensor {
	s := &m.shapes[l]
	var delta gpukern.Tensor
	if lora := segs[l]; lora != nil {
		delta = m.ws.delta
		m.be.LoRAShrink(m.ws.loraV, in, lora, s.in, m.ws.rank)
		m.be.LoRAExpand(delta, m.ws.loraV, lora, s.outs, m.ws.rank)
	}
	m.be.MatMul(out, in, ly.w[l], rows, s.out, s.in)
	if ly.bias[l] != nil {
		m.be.AddBias(out, ly.bias[l], rows, s.out)
	}
	return delta
}

// workspace holds the activations of one step, grown when a larger batch arrives.
type workspace struct {
	rows, logitRows, rank int

	x, h, qkv, q, attn, gateUp gpukern.Tensor
	act                        gpukern.Tensor // silu(gate)·up, the input of down
	last, logits               gpukern.Tensor
	loraV                      gpukern.Tensor                   // [rows, maxParts·rank]: LoRA's x·Aᵀ of every part
	delta                      gpukern.Tensor                   // [rows, widest linear]: a projection's LoRA delta
	segs                       [numLinear][]gpukern.LoRASegment // a layer's LoRA segments (loraSegments)
}

func (w *workspace) ensure(be gpukern.Backend, c *Config, rows, logitRows, rank int) *workspace {
	if rows <= w.rows && logitRows <= w.logitRows && rank <= w.rank {
		return w
	}
	for _, t := range []gpukern.Tensor{w.x, w.h, w.qkv, w.q, w.attn, w.gateUp, w.act, w.last, w.logits, w.loraV, w.delta} {
		if t != nil {
			be.Free(t)
		}
	}
	w.rows, w.logitRows, w.rank = max(rows, w.rows), max(logitRows, w.logitRows, 1), max(rank, w.rank, 1)
	r := w.rows
	w.x, w.h = be.Alloc(r*c.Hidden), be.Alloc(r*c.Hidden)
	w.qkv = be.Alloc(r * (c.Heads + 2*c.KVHeads) * c.HeadDim)
	w.q, w.attn = be.Alloc(r*c.Heads*c.HeadDim), be.Alloc(r*c.Heads*c.HeadDim)
	w.gateUp, w.act = be.Alloc(r*2*c.Intermediate), be.Alloc(r*c.Intermediate)
	w.last, w.logits = be.Alloc(w.logitRows*c.Hidden), be.Alloc(w.logitRows*c.VocabSize)
	w.loraV = be.Alloc(r * maxParts * w.rank)
	w.delta = be.Alloc(r * max((c.Heads+2*c.KVHeads)*c.HeadDim, 2*c.Intermediate, c.Hidden))
	return w
}
