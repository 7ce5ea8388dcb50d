// Package engine runs sequences through the model: every step is one forward pass over a
// batch that mixes prefill chunks and decode tokens of sequences with different adapters (or
// none), followed by sampling for the sequences whose input is fully computed.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/kvcache"
	"github.com/lorafleet/lorafleet/worker/model"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// Config sizes the engine.
type Config struct {
	// BlockSize is the number of tokens per KV cache block. Default 16.
	BlockSize int
	// NumBlocks is the KV cache size in blocks. Default: enough for 8 full contexts.
	NumBlocks int
	// MaxBatchTokens caps the rows of one forward pass; longer prompts are prefilled in
	// chunks. Default 512.
	MaxBatchTokens int

	// The serving Loop's limits (Start); the offline Step and Run ignore them.

	// MaxRunning caps the sequences holding KV blocks at once. Default 256.
	MaxRunning int
	// MaxWaiting caps the requests queued and not yet running; beyond it Submit fails with
	// ErrOverloaded at once. Default 1024.
	MaxWaiting int
	// MaxWaitingTokens caps the prompt tokens of those requests. Default 1<<20.
	MaxWaitingTokens int
	// Slots is the number of adapters resident on the device at once. Default 8.
	Slots int

	// DeviceSampling samples on the backend the rows whose logits the host does not need
	// (no logprobs, penalties, logit bias or recorded logits), so that only token ids leave
	// the GPU. Default false: the CPU backend's logits are on the host already.
	DeviceSampling bool
	// PadDecode pads a batch of decode rows alone (one new token per sequence) with idle rows
	// up to the next of 1, 2, 4 and the multiples of 8 (vLLM's CUDA-graph batch sizes), so
	// that a GPU backend replays the same CUDA graphs per bucket while the number of running
	// sequences changes. Idle rows write their KV to one block kept for them. Default false.
	PadDecode bool
}

func (c *Config) setDefaults(m *model.Config) error {
	if c.BlockSize == 0 {
		c.BlockSize = 16
	}
	if c.NumBlocks == 0 {
		c.NumBlocks = 8 * ((m.MaxPositions + c.BlockSize - 1) / c.BlockSize)
	}
	for _, f := range []struct {
		v   *int
		def int
	}{{&c.MaxBatchTokens, 512}, {&c.MaxRunning, 256}, {&c.MaxWaiting, 1024}, {&c.MaxWaitingTokens, 1 << 20}, {&c.Slots, 8}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.BlockSize < 0 || c.NumBlocks < 0 || c.MaxBatchTokens < 0 || c.MaxRunning < 0 || c.MaxWaiting < 0 || c.MaxWaitingTokens < 0 || c.Slots < 0 {
		return fmt.Errorf("engine: negative size in config %+v", *c)
	}
	return nil
}

// FinishReason says why a sequence ended, with OpenAI's names.
type FinishReason string

// The reasons a sequence finishes.
const (
	FinishStop   FinishReason = "stop"   // a stop token, or OnToken said stop
	FinishLength FinishReason = "length" // MaxTokens or the model's context reached
)

// LogitsMode says which next-token logits a sequence records.
type LogitsMode int

// The logits a sequence can record.
const (
	LogitsNone LogitsMode = iota
	LogitsNext            // the logits each new token is sampled from (the prompt's last position, then each step)
	LogitsAll             // every computed position's, prompt included
)

// Sequence is one generation. Fill the exported input fields; the engine fills the rest.
type Sequence struct {
	Prompt     []int
	Adapter    *model.Adapter  // nil: the base model
	Sampler    *sample.Sampler // nil: compute the prompt only (logits), generate nothing
	MaxTokens  int             // tokens to generate at most
	StopIDs    []int           // tokens that finish the sequence (EOS; leave empty to ignore EOS)
	KeepLogits LogitsMode      // which next-token logits to record in Logits
	// OnToken, if set, sees each generated token; returning false finishes the sequence
	// (stop strings, a disconnected client).
	OnToken func(token int) bool

	Output   []int
	Samples  []sample.Result // one per Output token
	Logits   [][]float32     // recorded next-token logits, per KeepLogits
	Finished bool
	Finish   FinishReason

	kv       kvcache.Table
	computed int // tokens whose K/V are in the cache

	// Serving state, owned by the Loop.
	id, arrival           uint64
	ctx                   context.Context
	stream                *Stream
	adapterID, adapterKey string
	host                  *peft.Adapter
	admitted, admitNow    bool
	delivered             int // Samples handed to the stream
}

// pending is the number of the sequence's tokens not yet in the KV cache.
func (s *Sequence) pending() int { return len(s.Prompt) + len(s.Output) - s.computed }

func (s *Sequence) token(i int) int {
	if i < len(s.Prompt) {
		return s.Prompt[i]
	}
	return s.Output[i-len(s.Prompt)]
}

// Forwarder runs forward passes and holds the adapters resident on its device: a
// *model.Model, or worker/sim's cost model of one. LoadAdapter may return before the upload
// has finished; AdapterReady tells when a step can use the adapter without waiting for it.
type Forwarder interface {
	Forward(b *model.Batch, kv *gpukern.KVCache) ([]float32, error)
	NewKVCache(numBlocks, blockSize int) *gpukern.KVCache
	LoadAdapter(key string, pa *peft.Adapter) (*model.Adapter, error)
	AdapterReady(a *model.Adapter) bool
	FreeAdapter(a *model.Adapter)
}

// Engine owns a forwarder and its KV cache. It is not safe for concurrent use.
type Engine struct {
	cfg  Config
	mc   *model.Config // the model's shape: vocabulary, context
	fwd  Forwarder
	kv   *gpukern.KVCache
	pool *kvcache.Pool
	idle kvcache.Table // the block of PadDecode's idle rows
}

// New returns an engine over m with a KV cache sized by cfg.
func New(m *model.Model, cfg Config) (*Engine, error) { return NewWith(&m.Config, m, cfg) }

// NewWith returns an engine whose forward passes f runs, for a model of shape mc.
func NewWith(mc *model.Config, f Forwarder, cfg Config) (*Engine, error) {
	if err := cfg.setDefaults(mc); err != nil {
		return nil, err
	}
	pool, err := kvcache.NewPool(cfg.NumBlocks, cfg.BlockSize)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e := &Engine{cfg: cfg, mc: mc, fwd: f, kv: f.NewKVCache(cfg.NumBlocks, cfg.BlockSize), pool: pool}
	if cfg.PadDecode {
		if err := pool.Grow(&e.idle, 1); err != nil {
			return nil, fmt.Errorf("engine: the idle rows' KV block: %w", err)
		}
	}
	return e, nil
}

// KVUsage is the fraction of KV cache blocks in use.
func (e *Engine) KVUsage() float64 { return e.pool.Usage() }

// Check validates a sequence before it joins a batch.
func (e *Engine) Check(s *Sequence) error {
	c := e.mc
	if len(s.Prompt) == 0 {
		return errors.New("engine: empty prompt")
	}
	if len(s.Prompt) > c.MaxPositions {
		return fmt.Errorf("engine: prompt of %d tokens exceeds the model's context of %d", len(s.Prompt), c.MaxPositions)
	}
	for _, t := range s.Prompt {
		if t < 0 || t >= c.VocabSize {
			return fmt.Errorf("engine: token id %d outside the vocabulary (%d)", t, c.VocabSize)
		}
	}
	if s.Sampler != nil && s.MaxTokens <= 0 {
		return fmt.Errorf("engine: max tokens must be positive, got %d", s.MaxTokens)
	}
	return nil
}

// Run steps the sequences until all have finished.
func (e *Engine) Run(ctx context.Context, seqs []*Sequence) error {
	for _, s := range seqs {
		if err := e.Check(s); err != nil {
			return err
		}
	}
	for {
		var active []*Sequence
		for _, s := range seqs {
			if !s.Finished {
				active = append(active, s)
			}
		}
		if len(active) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			for _, s := range active {
				e.Release(s)
			}
			return err
		}
		if err := e.Step(active); err != nil {
			return err
		}
	}
}

// Release frees the sequence's KV cache blocks and marks it finished.
func (e *Engine) Release(s *Sequence) {
	e.pool.Release(&s.kv)
	s.Finished = true
}

// Step runs one forward pass over the unfinished sequences given: decode tokens first, then
// prefill chunks within MaxBatchTokens. Sequences whose tokens are all computed afterwards
// sample their next token.
func (e *Engine) Step(seqs []*Sequence) error {
	plan, err := e.plan(seqs)
	if err != nil {
		return err
	}
	if len(plan) == 0 {
		return nil
	}
	batch := e.batch(plan)
	logits, err := e.fwd.Forward(batch, e.kv)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.finishStep(plan, logits, batch.Sampled)
	return nil
}

// work is one sequence's share of a step.
type work struct {
	seq        *Sequence
	start, n   int // token positions [start, start+n) computed this step
	firstLogit int // index of its first logit row in the step's logits
	logitRows  int
	sampled    int // index of its token in Batch.Sampled; -1: sampled on the host
}

// plan picks each sequence's tokens for this step and reserves their KV blocks.
func (e *Engine) plan(seqs []*Sequence) ([]work, error) {
	// Decode rows first so that a long prefill cannot starve them of the token budget.
	order := slices.Clone(seqs)
	slices.SortStableFunc(order, func(a, b *Sequence) int { return cmp.Compare(a.pending(), b.pending()) })
	budget := e.cfg.MaxBatchTokens
	var plan []work
	for _, s := range order {
		if s.Finished || s.pending() == 0 || budget == 0 {
			continue
		}
		n := min(s.pending(), budget)
		if err := e.pool.Grow(&s.kv, s.computed+n); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		budget -= n
		plan = append(plan, work{seq: s, start: s.computed, n: n})
	}
	// Rows of one adapter next to each other make fewer, longer LoRA segments.
	slices.SortStableFunc(plan, func(a, b work) int { return byAdapter(a.seq, b.seq) })
	return plan, nil
}

// byAdapter orders sequences without an adapter first, then by adapter ID.
func byAdapter(a, b *Sequence) int {
	x, y := a.Adapter, b.Adapter
	if x == nil || y == nil {
		return cmp.Compare(b2i(x != nil), b2i(y != nil))
	}
	return cmp.Compare(x.ID, y.ID)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// batch lays the planned tokens out as model rows.
func (e *Engine) batch(plan []work) *model.Batch {
	b := &model.Batch{}
	for i := range plan {
		w := &plan[i]
		s := w.seq
		row := len(b.Tokens)
		for p := w.start; p < w.start+w.n; p++ {
			b.Tokens = append(b.Tokens, int32(s.token(p)))
			b.Positions = append(b.Positions, int32(p))
			b.Slots = append(b.Slots, e.pool.Slot(&s.kv, p))
		}
		b.Seqs = append(b.Seqs, gpukern.AttnSeq{QStart: row, QLen: w.n, CtxLen: w.start + w.n, Blocks: s.kv.Blocks})
		if runs := b.Adapters; len(runs) > 0 && runs[len(runs)-1].Adapter == s.Adapter {
			b.Adapters[len(runs)-1].End = row + w.n
		} else {
			b.Adapters = append(b.Adapters, model.AdapterRun{Start: row, End: row + w.n, Adapter: s.Adapter})
		}
		w.firstLogit, w.logitRows, w.sampled = len(b.LogitRows), 0, -1
		if p, ok := e.deviceSample(w); ok {
			w.sampled = len(b.Sample)
			b.SampleRows = append(b.SampleRows, int32(row+w.n-1))
			b.Sample = append(b.Sample, p)
			continue
		}
		first := row + w.n - 1 // only the last row predicts a new token...
		if s.KeepLogits == LogitsAll {
			first = row // ...unless every position's logits are wanted
		}
		for r := first; r < row+w.n; r++ {
			b.LogitRows = append(b.LogitRows, int32(r))
		}
		w.logitRows = row + w.n - first
	}
	if e.cfg.PadDecode && len(b.Seqs) == len(b.Tokens) {
		e.pad(b, decodeBucket(len(b.Tokens)))
	}
	return b
}

// decodeBucket is the batch size a decode batch of n rows is padded to: 1, 2, 4, then the
// next multiple of 8.
func decodeBucket(n int) int {
	if n > 4 {
		return (n + 7) &^ 7
	}
	b := 1
	for b < n {
		b *= 2
	}
	return b
}

// pad adds idle rows to b up to rows: token 0 at position 0 of a one-token sequence of the
// idle block, no adapter, no logits.
func (e *Engine) pad(b *model.Batch, rows int) {
	slot := e.pool.Slot(&e.idle, 0)
	for r := len(b.Tokens); r < rows; r++ {
		b.Tokens, b.Positions, b.Slots = append(b.Tokens, 0), append(b.Positions, 0), append(b.Slots, slot)
		b.Seqs = append(b.Seqs, gpukern.AttnSeq{QStart: r, QLen: 1, CtxLen: 1, Blocks: e.idle.Blocks})
		if runs := b.Adapters; len(runs) > 0 && runs[len(runs)-1].Adapter == nil {
			b.Adapters[len(runs)-1].End = r + 1
		} else {
			b.Adapters = append(b.Adapters, model.AdapterRun{Start: r, End: r + 1})
		}
	}
}

// deviceSample returns the backend sampling settings of w's new token, or false when it is
// sampled on the host (or none is sampled this step).
func (e *Engine) deviceSample(w *work) (gpukern.SampleParams, bool) {
	s := w.seq
	if !e.cfg.DeviceSampling || s.Sampler == nil || s.KeepLogits != LogitsNone || w.start+w.n < len(s.Prompt)+len(s.Output) {
		return gpukern.SampleParams{}, false
	}
	return s.Sampler.DeviceParams(len(s.Output))
}

// finishStep records logits, samples and finishes sequences after a forward pass.
func (e *Engine) finishStep(plan []work, logits []float32, sampled []int32) {
	vocab := e.mc.VocabSize
	for _, w := range plan {
		s := w.seq
		s.computed += w.n
		rowLogits := func(i int) []float32 { return logits[(w.firstLogit+i)*vocab : (w.firstLogit+i+1)*vocab] }
		if s.KeepLogits == LogitsAll {
			for i := range w.logitRows {
				s.Logits = append(s.Logits, slices.Clone(rowLogits(i)))
			}
		}
		if s.pending() > 0 {
			continue // prefill continues next step
		}
		if s.KeepLogits == LogitsNext {
			s.Logits = append(s.Logits, slices.Clone(rowLogits(w.logitRows-1)))
		}
		if s.Sampler == nil {
			e.Release(s)
			continue
		}
		var r sample.Result
		if w.sampled >= 0 {
			r.Token = int(sampled[w.sampled])
		} else {
			r = s.Sampler.Sample(rowLogits(w.logitRows-1), s.Prompt, s.Output)
		}
		s.Output = append(s.Output, r.Token)
		s.Samples = append(s.Samples, r)
		e.checkFinished(s, r.Token)
	}
}

func (e *Engine) checkFinished(s *Sequence, tok int) {
	switch {
	case s.Sampler.IsStopToken(tok):
		s.Finish = FinishStop
	case s.OnToken != nil && !s.OnToken(tok):
		s.Finish = FinishStop // the caller's stop: a stop string, a cancelled request
	case len(s.Output) >= s.MaxTokens || len(s.Prompt)+len(s.Output) >= e.mc.MaxPositions:
		s.Finish = FinishLength
	default:
		return
	}
	e.Release(s)
}
