package engine

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

const blockSize = 16

type runner struct {
	cfg      Config
	be       gpukern.Backend
	gate     *gated
	m        *model.Model
	host     *peft.Adapter // the values every adapter is uploaded from
	adapters []*model.Adapter
	rng      *rand.Rand
}

// Variants of a decode measurement.
const (
	WithLoRA     = "lora"
	LoRAOff      = "lora off"
	AttentionOff = "lora and attention off"
	GraphsOff    = "lora, graphs off" // kernels launched one by one (backends with graphs)
	// OneLaunch launches a step's work only once it is all recorded, not in parts as it is
	// recorded (backends that flush in parts): what the GPU gains from working while the host
	// records.
	OneLaunch = "lora, one launch per step"
	OneStream = "lora, one stream" // LoRA kernels after the base GEMMs, not beside them (backends with a side stream)
	// Unprioritized runs the LoRA kernels beside the base GEMMs on a side stream of the same
	// priority, not a higher one (backends with a side stream).
	Unprioritized = "lora, side stream not prioritized"
	// CuBLAS and CuBLASAttentionOff run every GEMM with cuBLAS, none with the backend's own
	// small-batch kernel (backends with one): next to the WithLoRA and AttentionOff rows.
	CuBLAS             = "lora, GEMMs by cuBLAS"
	CuBLASAttentionOff = "lora and attention off, GEMMs by cuBLAS"
	// NotSplit and NotSplitAttentionOff run the backend's own GEMMs with no tile's k cut into
	// chunks (backends that cut them): next to the WithLoRA and AttentionOff rows.
	NotSplit             = "lora, GEMMs not split"
	NotSplitAttentionOff = "lora and attention off, GEMMs not split"
	// Deep and DeepAttentionOff run every GEMM of the backend's own as one block an SM
	// (backends with that kernel): next to the WithLoRA and AttentionOff rows.
	Deep             = "lora, GEMMs one block an SM"
	DeepAttentionOff = "lora and attention off, GEMMs one block an SM"
	// Lean and LeanAttentionOff run the backend's own GEMMs held to fewer registers and the
	// LoRA kernels in smaller blocks, so that an SM holds a LoRA block beside the GEMM's two
	// (backends with such kernels): next to the WithLoRA and AttentionOff rows.
	Lean             = "lora, lean GEMMs beside LoRA blocks"
	LeanAttentionOff = "lora and attention off, lean GEMMs"
	// Timed and TimedAttentionOff run each GEMM that cuBLAS runs with the fastest of its own
	// pick and cuBLASLt's algorithms, timed on the first GEMM of each shape (backends that can):
	// next to the WithLoRA and AttentionOff rows of the largest batch, if the backend's own
	// GEMMs do not take it.
	Timed             = "lora, cuBLAS GEMMs timed"
	TimedAttentionOff = "lora and attention off, cuBLAS GEMMs timed"
	// NotEarly launches each kernel only once the one before it has ended (backends that may
	// start it while that one finishes).
	NotEarly = "lora, no early launch"
	// RoPEApart rotates q and k in a kernel of their own before the attention's, not in the
	// attention kernel (backends that fuse the two).
	RoPEApart = "lora, RoPE apart from attention"
)

// isVariant says whether a decode measurement is a side-by-side variant rather than one of the
// defaults' rows.
func isVariant(variant string) bool {
	return variant != WithLoRA && variant != LoRAOff && variant != AttentionOff
}

// attentionOff says whether a variant runs without attention (its bytes hold no KV).
func attentionOff(variant string) bool {
	return variant == AttentionOff || variant == CuBLASAttentionOff || variant == NotSplitAttentionOff ||
		variant == DeepAttentionOff || variant == TimedAttentionOff || variant == LeanAttentionOff
}

// reference is the reference batch size and adapter count: the graphs-off rows use
// that many adapters (fewer in smaller batches), and the profile and the decode while loading
// run at the largest batch up to it.
const reference = 32

// decodeRun is one decode measurement of a (batch, context): a variant with k adapters.
type decodeRun struct {
	variant string
	k       int
}

// decodeGrid measures every (batch, adapters, context) with LoRA, and each (batch, context)
// with LoRA off and with attention off too; at the first context, each batch with graphs off,
// with LoRA on one stream, on an unprioritized side stream, without early launches and
// (batches that the backend's own GEMMs take) with cuBLAS's GEMMs, with its own unsplit, with
// its own one block an SM and with its own lean beside LoRA blocks, or (the largest batch,
// if larger) with cuBLAS's GEMMs timed, each with LoRA and with LoRA and attention off, and
// the reference batch in one launch per step.
// After the first context it reads the device memory in use and measures decode while
// adapters load, before the longer contexts: every target is at the first context, so a run
// cut short (ctx) can still judge them all.
func (r *runner) decodeGrid(ctx context.Context, rep *Report, progress func(string)) error {
	c := &r.cfg
	kv := r.m.NewKVCache(slices.Max(c.Batches)*r.blocksPerSeq(), blockSize)
	defer freeCache(r.be, kv)
	for i, cx := range c.Contexts {
		for _, b := range c.Batches {
			if err := r.decodeRuns(ctx, rep, kv, b, cx, i == 0, progress); err != nil {
				return err
			}
		}
		if i == 0 {
			rep.Memory = r.memory(kv)
			if err := stopped(ctx); err != nil {
				return err
			}
			if err := r.measureLoading(rep, kv, progress); err != nil {
				return err
			}
		}
	}
	return nil
}

// stopped is ctx's error, once it has ended, as the run reports it.
func stopped(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("engine bench: stopped: %w", err)
	}
	return nil
}

// decodeRuns measures batch b at context cx: attention off, LoRA off, each distinct adapter
// count and, in a run without settings, the variants (variantRuns).
func (r *runner) decodeRuns(ctx context.Context, rep *Report, kv *gpukern.KVCache, b, cx int, first bool, progress func(string)) error {
	ks := []int{}
	for _, k := range r.cfg.Adapters {
		if k == 0 {
			k = b
		}
		if k <= b && !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	}
	runs := []decodeRun{{AttentionOff, 0}, {LoRAOff, 0}}
	for _, k := range ks {
		runs = append(runs, decodeRun{WithLoRA, k})
	}
	if len(r.cfg.Settings) == 0 {
		runs = append(runs, r.variantRuns(b, first)...)
	}
	for _, run := range runs {
		if err := stopped(ctx); err != nil {
			return err
		}
		progress(fmt.Sprintf("decode %s: batch %d, %d adapters, context %d", run.variant, b, run.k, cx))
		res, err := r.decode(kv, run.variant, b, run.k, cx)
		if err != nil && isVariant(run.variant) {
			// A variant's failure (a setting the GPU refuses) costs its row alone; one that
			// broke the device fails the next row of the defaults, which stops the run.
			progress(fmt.Sprintf("  failed: %v", err))
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %v", run.variant, err))
			continue
		}
		if err != nil {
			return err
		}
		// Said as it is measured: a run that dies (a crash in a kernel or a library) has
		// written no report, but its log keeps what it measured.
		progress(fmt.Sprintf("  %.3f ms a step (p90 %.3f)", res.StepMS, res.P90MS))
		rep.Decode = append(rep.Decode, res)
	}
	return nil
}

// variantRuns are batch b's side-by-side variants: at the first context, with graphs off,
// with LoRA on one stream, on an unprioritized side stream, without early launches, with RoPE
// apart from attention and (batches that the backend's own GEMMs take) with cuBLAS's GEMMs,
// with its own unsplit, with its own one block an SM and with its own lean beside LoRA blocks,
// or (the largest batch, if larger) with cuBLAS's GEMMs timed, and (at the reference batch,
// or the largest below it) in one launch per step.
func (r *runner) variantRuns(b int, first bool) []decodeRun {
	if !first {
		return nil
	}
	var runs []decodeRun
	if _, ok := r.be.(Grapher); ok {
		runs = append(runs, decodeRun{GraphsOff, min(reference, b)})
	}
	if _, ok := r.be.(Flusher); ok && b == r.referenceBatch() {
		runs = append(runs, decodeRun{OneLaunch, b})
	}
	if _, ok := r.be.(SideStreamer); ok {
		runs = append(runs, decodeRun{OneStream, min(reference, b)}, decodeRun{Unprioritized, min(reference, b)})
	}
	if _, ok := r.be.(EarlyLauncher); ok {
		runs = append(runs, decodeRun{NotEarly, min(reference, b)})
	}
	if _, ok := r.be.(RoPEFuser); ok {
		runs = append(runs, decodeRun{RoPEApart, min(reference, b)})
	}
	if g, ok := r.be.(GEMMChooser); ok && b <= g.SmallGEMMRows() {
		runs = append(runs, decodeRun{CuBLASAttentionOff, 0}, decodeRun{CuBLAS, min(reference, b)})
		if _, ok := r.be.(Splitter); ok {
			runs = append(runs, decodeRun{NotSplitAttentionOff, 0}, decodeRun{NotSplit, min(reference, b)})
		}
		if _, ok := r.be.(DeepGEMMChooser); ok {
			runs = append(runs, decodeRun{DeepAttentionOff, 0}, decodeRun{Deep, min(reference, b)})
		}
		if _, ok := r.be.(LeanGEMMChooser); ok {
			runs = append(runs, decodeRun{LeanAttentionOff, 0}, decodeRun{Lean, min(reference, b)})
		}
	}
	// At the largest batch alone, after its other rows: a library that crashed would take the
	// rows after it along.
	if _, ok := r.be.(GEMMTuner); ok && b > r.smallGEMMRows() && b == slices.Max(r.cfg.Batches) {
		runs = append(runs, decodeRun{TimedAttentionOff, 0}, decodeRun{Timed, min(reference, b)})
	}
	return runs
}

// measureLoading profiles one step and runs Loading at batch and adapters reference (or the
// largest batch below) and the first context, the latter next to that configuration's quiet
// median; and profiles one step of the largest batch, if larger, with those adapters (the
// issue's batch-128 target).
func (r *runner) measureLoading(rep *Report, kv *gpukern.KVCache, progress func(string)) error {
	cx, b := r.cfg.Contexts[0], r.referenceBatch()
	quiet, ok := rep.find(WithLoRA, b, b, cx)
	if !ok {
		return nil
	}
	progress(fmt.Sprintf("profile and decode while adapters load: batch %d, %d adapters, context %d", b, b, cx))
	profiled := []int{b}
	if l := slices.Max(r.cfg.Batches); l > b {
		profiled = append(profiled, l)
	}
	for _, pb := range profiled {
		p, err := r.profile(kv, pb, b, cx)
		if err != nil {
			return err
		}
		if p != nil {
			rep.Profiles = append(rep.Profiles, p)
		}
	}
	var err error
	rep.Loading, err = r.loading(kv, b, b, cx, quiet.StepMS)
	return err
}

// smallGEMMRows is the largest batch whose GEMMs the backend's own kernels run (0: none).
func (r *runner) smallGEMMRows() int {
	if g, ok := r.be.(GEMMChooser); ok {
		return g.SmallGEMMRows()
	}
	return 0
}

// referenceBatch is the largest batch up to reference (0 when none is).
func (r *runner) referenceBatch() int {
	b := 0
	for _, n := range r.cfg.Batches {
		if n <= reference {
			b = max(b, n)
		}
	}
	return b
}

// configure sets the backend up for variant, where it has the setting the variant changes,
// and returns what sets the default back.
func (r *runner) configure(variant string) (restore func()) {
	switch variant {
	case GraphsOff:
		return turn(r.be, Grapher.SetGraphs, false)
	case OneLaunch:
		if f, ok := r.be.(Flusher); ok {
			n := f.SetFlushOps(0)
			return func() { f.SetFlushOps(n) }
		}
	case OneStream:
		return turn(r.be, SideStreamer.SetLoRASideStream, false)
	case Unprioritized:
		return turn(r.be, SideStreamer.SetLoRASidePriority, false)
	case NotEarly:
		return turn(r.be, EarlyLauncher.SetEarlyLaunch, false)
	case RoPEApart:
		return turn(r.be, RoPEFuser.SetFusedRoPE, false)
	case NotSplit, NotSplitAttentionOff:
		return turn(r.be, Splitter.SetGEMMSplit, false)
	case Deep, DeepAttentionOff:
		return turn(r.be, DeepGEMMChooser.SetDeepGEMM, true)
	case Lean, LeanAttentionOff:
		return turn(r.be, LeanGEMMChooser.SetLeanGEMM, true)
	case Timed, TimedAttentionOff:
		return turn(r.be, GEMMTuner.SetTunedGEMM, true)
	case CuBLAS, CuBLASAttentionOff:
		return turn(r.be, GEMMChooser.SetSmallGEMM, false)
	}
	return func() {}
}

// turn sets a backend's on/off setting to on through the interface T that has it, if the
// backend has it, and returns what sets it back.
func turn[T any](be gpukern.Backend, set func(T, bool), on bool) (restore func()) {
	t, ok := be.(T)
	if !ok {
		return func() {}
	}
	set(t, on)
	return func() { set(t, !on) }
}

func (r *runner) blocksPerSeq() int {
	return (max(slices.Max(r.cfg.Contexts)+1, r.cfg.PrefillPrompt) + blockSize - 1) / blockSize
}

// decode times steps of decodeBatch(b, k, ctx) in the variant's configuration.
func (r *runner) decode(kv *gpukern.KVCache, variant string, b, k, ctx int) (Decode, error) {
	batch := r.decodeBatch(b, k, ctx)
	r.gate.attentionOff = attentionOff(variant)
	defer func() { r.gate.attentionOff = false }()
	defer r.configure(variant)()
	times, err := r.time(batch, kv)
	if err != nil {
		return Decode{}, fmt.Errorf("engine bench: decode batch %d, %d adapters, context %d: %w", b, k, ctx, err)
	}
	d := Decode{Variant: variant, Batch: b, Adapters: k, Context: ctx, StepMS: median(times), P90MS: percentile(times, 0.9)}
	d.Bytes = r.weightBytes() + int64(k)*r.adapterBytes()
	if !attentionOff(variant) {
		d.Bytes += int64(b) * int64(ctx+1) * r.kvBytesPerToken()
	}
	d.fill(r.cfg.Bandwidth)
	return d, nil
}

// decodeBatch is one decode step of b sequences of ctx cached tokens, the rows split evenly
// between k adapters (none for k = 0), every token sampled greedily on the backend.
func (r *runner) decodeBatch(b, k, ctx int) *model.Batch {
	batch := &model.Batch{}
	per := r.blocksPerSeq()
	for i := range b {
		blocks := make([]int32, per)
		for j := range blocks {
			blocks[j] = int32(i*per + j)
		}
		batch.Tokens = append(batch.Tokens, int32(r.rng.IntN(r.cfg.Model.VocabSize)))
		batch.Positions = append(batch.Positions, int32(ctx))
		batch.Slots = append(batch.Slots, blocks[ctx/blockSize]*blockSize+int32(ctx%blockSize))
		batch.Seqs = append(batch.Seqs, gpukern.AttnSeq{QStart: i, QLen: 1, CtxLen: ctx + 1, Blocks: blocks})
		batch.SampleRows = append(batch.SampleRows, int32(i))
		batch.Sample = append(batch.Sample, gpukern.SampleParams{}) // greedy
	}
	batch.Adapters = r.runs(b, k)
	return batch
}

// runs splits b rows into k runs of adapters as evenly as possible.
func (r *runner) runs(b, k int) []model.AdapterRun {
	if k == 0 {
		return []model.AdapterRun{{Start: 0, End: b}}
	}
	var runs []model.AdapterRun
	for i := range k {
		start, end := i*b/k, (i+1)*b/k
		runs = append(runs, model.AdapterRun{Start: start, End: end, Adapter: r.adapters[i]})
	}
	return runs
}

// prefill times one step of PrefillSeqs prompts, each with its own adapter.
func (r *runner) prefill() (Prefill, error) {
	c := &r.cfg
	kv := r.m.NewKVCache(c.PrefillSeqs*r.blocksPerSeq(), blockSize)
	defer freeCache(r.be, kv)
	batch := &model.Batch{}
	per := r.blocksPerSeq()
	for s := range c.PrefillSeqs {
		blocks := make([]int32, per)
		for j := range blocks {
			blocks[j] = int32(s*per + j)
		}
		row := len(batch.Tokens)
		for p := range c.PrefillPrompt {
			batch.Tokens = append(batch.Tokens, int32(r.rng.IntN(c.Model.VocabSize)))
			batch.Positions = append(batch.Positions, int32(p))
			batch.Slots = append(batch.Slots, blocks[p/blockSize]*blockSize+int32(p%blockSize))
		}
		batch.Seqs = append(batch.Seqs, gpukern.AttnSeq{QStart: row, QLen: c.PrefillPrompt, CtxLen: c.PrefillPrompt, Blocks: blocks})
		batch.Adapters = append(batch.Adapters, model.AdapterRun{Start: row, End: row + c.PrefillPrompt, Adapter: r.adapters[s%len(r.adapters)]})
		batch.SampleRows = append(batch.SampleRows, int32(row+c.PrefillPrompt-1))
		batch.Sample = append(batch.Sample, gpukern.SampleParams{})
	}
	times, err := r.time(batch, kv)
	if err != nil {
		return Prefill{}, fmt.Errorf("engine bench: prefill: %w", err)
	}
	p := Prefill{Seqs: c.PrefillSeqs, Prompt: c.PrefillPrompt, StepMS: median(times)}
	p.TokensPerS = float64(c.PrefillSeqs*c.PrefillPrompt) / (p.StepMS / 1e3)
	return p, nil
}

// time runs Warmup untimed and Steps timed forward passes of batch and returns the step times
// in milliseconds. Each pass rewrites the same KV slots, so the cache never fills.
func (r *runner) time(batch *model.Batch, kv *gpukern.KVCache) ([]float64, error) {
	for range r.cfg.Warmup {
		if err := r.step(batch, kv); err != nil {
			return nil, err
		}
	}
	times := make([]float64, 0, r.cfg.Steps)
	for range r.cfg.Steps {
		var err error
		d, terr := r.timed(func() { err = r.step(batch, kv) })
		if err != nil || terr != nil {
			return nil, cmp.Or(err, terr)
		}
		times = append(times, ms(d))
	}
	return times, nil
}

// step runs one forward pass and checks its sampled tokens.
func (r *runner) step(batch *model.Batch, kv *gpukern.KVCache) error {
	if _, err := r.m.Forward(batch, kv); err != nil {
		return err
	}
	if slices.ContainsFunc(batch.Sampled, func(id int32) bool { return id < 0 || int(id) >= r.cfg.Model.VocabSize }) {
		return fmt.Errorf("sampled token ids %v outside the vocabulary", batch.Sampled)
	}
	return nil
}

func (r *runner) timed(f func()) (time.Duration, error) {
	if t, ok := r.be.(Timer); ok {
		return t.Time(f)
	}
	start := time.Now()
	f()
	return time.Since(start), nil
}

func freeCache(be gpukern.Backend, kv *gpukern.KVCache) {
	for _, t := range slices.Concat(kv.K, kv.V) {
		be.Free(t)
	}
}

// weightBytes are the bf16 weights a decode step reads: every layer, the final norm and the
// LM head (the embedding table is only gathered from).
func (r *runner) weightBytes() int64 {
	c := &r.cfg.Model
	var n int64
	for p := range model.NumProj {
		in, out := c.Shape(p)
		n += int64(in) * int64(out)
	}
	n = n*int64(c.Layers) + int64(2*c.Layers+1)*int64(c.Hidden) + int64(c.VocabSize)*int64(c.Hidden)
	return 2 * n
}

// adapterBytes is one adapter's bf16 size: rank Rank on all seven projections of every layer.
func (r *runner) adapterBytes() int64 {
	c := &r.cfg.Model
	var n int64
	for p := range model.NumProj {
		in, out := c.Shape(p)
		n += int64(r.cfg.Rank) * int64(in+out)
	}
	return 2 * n * int64(c.Layers)
}

// kvBytesPerToken is the bf16 K and V of one token across layers.
func (r *runner) kvBytesPerToken() int64 {
	c := &r.cfg.Model
	return 2 * 2 * int64(c.Layers) * int64(c.KVHeads) * int64(c.HeadDim)
}

func median(v []float64) float64 { return percentile(v, 0.5) }

func percentile(v []float64, q float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
