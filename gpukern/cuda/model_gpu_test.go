//go:build cuda

package cuda_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/engine"
	"github.com/lorafleet/lorafleet/worker/model"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// tolModel is the bound on the whole model's last-position logits against the
// float64 reference (bf16 weights and GEMM inputs).
const tolModel = 2e-2

// minGap is the golden greedy_min_gap from which greedy continuations must match: smaller
// gaps between the two best logits are within bf16's reach.
const minGap = 0.1

type gpuFixture struct {
	g        *golden.File
	m        *model.Model
	adapters map[string]*model.Adapter
}

func loadGPUFixture(t *testing.T, set string) *gpuFixture {
	t.Helper()
	g, err := golden.Load(set)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(g.ModelDir(), gpu)
	if err != nil {
		t.Fatal(err)
	}
	f := &gpuFixture{g: g, m: m, adapters: map[string]*model.Adapter{"": nil}}
	for _, name := range g.Adapters() {
		pa, err := peft.Load(g.AdapterDir(name), m.Config.PEFTBase(), peft.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if f.adapters[name], err = m.LoadAdapter(name, pa); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, a := range f.adapters {
			if a != nil {
				m.FreeAdapter(a)
			}
		}
	})
	return f
}

// seq greedily decodes len(c.Greedy) tokens; keep records each step's logits (sampled on the
// host), otherwise the tokens are sampled on the device.
func (f *gpuFixture) seq(c golden.Case, keep bool) *engine.Sequence {
	p := sample.DefaultParams()
	p.Temperature, p.IgnoreEOS = 0, true
	s := &engine.Sequence{Prompt: c.PromptIDs, Adapter: f.adapters[c.Adapter], Sampler: sample.New(p, nil), MaxTokens: len(c.Greedy)}
	if keep {
		s.KeepLogits = engine.LogitsNext
	}
	return s
}

func (f *gpuFixture) run(t *testing.T, seqs ...*engine.Sequence) {
	t.Helper()
	// As the CUDA worker runs it: sampling on the device, decode batches padded to graph buckets.
	e, err := engine.New(f.m, engine.Config{NumBlocks: 256, DeviceSampling: true, PadDecode: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), seqs); err != nil {
		t.Fatal(err)
	}
}

func caseName(c golden.Case) string {
	return fmt.Sprintf("%q+%s", c.Prompt, cmp.Or(c.Adapter, "base"))
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// The full model against Hugging Face's float64 logits, and its greedy continuations.
func TestGoldenOnGPU(t *testing.T) {
	for _, set := range golden.Sets {
		t.Run(set, func(t *testing.T) {
			f := loadGPUFixture(t, set)
			for _, c := range f.g.Cases {
				logged, sampled := f.seq(c, true), f.seq(c, false)
				f.run(t, logged)
				f.run(t, sampled)
				record(t, set+" last logits", caseName(c), logged.Logits[0], f32(c.LastLogits), tolModel)
				if c.GreedyMinGap < minGap {
					continue
				}
				for _, s := range []*engine.Sequence{logged, sampled} {
					if !slices.Equal(s.Output, c.Greedy) {
						t.Errorf("%s: greedy %v, want %v", caseName(c), s.Output, c.Greedy)
					}
				}
			}
		})
	}
}

// A batch mixing every adapter (and the base model) gives each row what it gets alone.
func TestMixedAdapterBatchOnGPU(t *testing.T) {
	for _, set := range golden.Sets {
		t.Run(set, func(t *testing.T) {
			f := loadGPUFixture(t, set)
			var batch []*engine.Sequence
			for _, c := range f.g.Cases {
				batch = append(batch, f.seq(c, true))
			}
			f.run(t, batch...)
			for i, c := range f.g.Cases {
				alone := f.seq(c, true)
				f.run(t, alone)
				for step := range alone.Logits {
					if step < len(batch[i].Logits) {
						record(t, set+" batched vs alone", fmt.Sprintf("%s step %d", caseName(c), step), batch[i].Logits[step], alone.Logits[step], tolModel)
					}
				}
				if c.GreedyMinGap >= minGap && !slices.Equal(batch[i].Output, alone.Output) {
					t.Errorf("%s: batched %v, alone %v", caseName(c), batch[i].Output, alone.Output)
				}
			}
		})
	}
}

// goldenSource serves a golden set's adapters to the engine loop through the real PEFT
// loader, in bf16 as the CUDA worker's host tier holds them.
type goldenSource struct {
	g    *golden.File
	base peft.Base
}

func (s goldenSource) Get(_ context.Context, id string) (*peft.Adapter, error) {
	return peft.Load(s.g.AdapterDir(id), s.base, peft.Options{BF16: true})
}

// The engine loop as the CUDA worker runs it, with one adapter slot and every golden case
// submitted at once: adapters come from a bf16 host tier, are evicted and uploaded in the
// background while the other requests run, and each greedy continuation is still the
// reference's.
func TestLoopOnGPU(t *testing.T) {
	for _, set := range golden.Sets {
		t.Run(set, func(t *testing.T) {
			f := loadGPUFixture(t, set)
			e, err := engine.New(f.m, engine.Config{NumBlocks: 256, DeviceSampling: true, PadDecode: true, Slots: 1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			l := e.Start(ctx, goldenSource{g: f.g, base: f.m.Config.PEFTBase()})
			defer func() { cancel(); <-l.Done() }()
			var wg sync.WaitGroup
			for _, c := range f.g.Cases {
				wg.Go(func() {
					p := sample.DefaultParams()
					p.Temperature, p.IgnoreEOS = 0, true
					st, err := l.Submit(ctx, engine.Request{Prompt: c.PromptIDs, Adapter: c.Adapter, Sampler: sample.New(p, nil), MaxTokens: len(c.Greedy)})
					if err != nil {
						t.Errorf("%s: %v", caseName(c), err)
						return
					}
					var got []int
					for {
						toks, fin, err := st.Recv(ctx, nil)
						for _, r := range toks {
							got = append(got, r.Token)
						}
						if err != nil {
							t.Errorf("%s: %v", caseName(c), err)
							return
						}
						if fin != "" {
							break
						}
					}
					if c.GreedyMinGap >= minGap && !slices.Equal(got, c.Greedy) {
						t.Errorf("%s: greedy %v, want %v", caseName(c), got, c.Greedy)
					}
				})
			}
			wg.Wait()
			if s, n := l.Stats(), len(f.g.Adapters()); s.Loads < uint64(n) || s.Evictions < uint64(n-1) {
				t.Errorf("%d uploads and %d evictions for %d adapters in one slot", s.Loads, s.Evictions, n)
			}
		})
	}
}

// One prefill and one decode step with an adapter, small enough to run under
// compute-sanitizer (scripts/gpu-check.sh runs it there).
func TestSanitizerStep(t *testing.T) {
	f := loadGPUFixture(t, golden.Sets[0])
	var c golden.Case
	for _, c = range f.g.Cases {
		if c.Adapter != "" {
			break
		}
	}
	s := f.seq(c, false)
	s.MaxTokens = 2
	f.run(t, s)
	if len(s.Output) != 2 {
		t.Fatalf("generated %v", s.Output)
	}
}
