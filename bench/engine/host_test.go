package engine

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/engine"
	"github.com/lorafleet/lorafleet/worker/model"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// nullBackend computes and stores nothing: a forward pass on it costs only the host work
// above the kernels (worker/model planning a step's calls), which a GPU waits for at every
// decode step.
type nullBackend struct{}

type nullTensor int

func (t nullTensor) Len() int { return int(t) }

func (nullBackend) Name() string                      { return "null" }
func (nullBackend) Alloc(n int) gpukern.Tensor        { return nullTensor(n) }
func (nullBackend) Weight(d []float32) gpukern.Tensor { return nullTensor(len(d)) }
func (nullBackend) AllocCache(n int) gpukern.Tensor   { return nullTensor(n) }
func (nullBackend) AdapterWeights(data []gpukern.HostTensor) ([]gpukern.Tensor, error) {
	ts := make([]gpukern.Tensor, len(data))
	for i, d := range data {
		ts[i] = nullTensor(d.Len())
	}
	return ts, nil
}
func (nullBackend) FreeAdapterWeights([]gpukern.Tensor)             {}
func (nullBackend) Free(gpukern.Tensor)                             {}
func (nullBackend) Upload(gpukern.Tensor, []float32)                {}
func (nullBackend) Download([]float32, gpukern.Tensor)              {}
func (nullBackend) Sync() error                                     { return nil }
func (nullBackend) Embedding(_, _ gpukern.Tensor, _ []int32, _ int) {}
func (nullBackend) MatMul(_, _, _ gpukern.Tensor, _, _, _ int)      {}
func (nullBackend) AddBias(_, _ gpukern.Tensor, _, _ int)           {}
func (nullBackend) Add(_, _, _ gpukern.Tensor, _ int)               {}
func (nullBackend) SiLUMul(_, _, _ gpukern.Tensor, _, _ int)        {}
func (nullBackend) RandomWeight(n int, _, _ float32, _ uint64) gpukern.Tensor {
	return nullTensor(n)
}
func (nullBackend) RMSNorm(_, _, _, _, _ gpukern.Tensor, _, _ int, _ float32) {}
func (nullBackend) RoPEWriteKV(_, _, _ gpukern.Tensor, _, _ int, _ []int32, _ gpukern.Tensor, _ *gpukern.KVCache, _ int, _ []int32) {
}
func (nullBackend) Attention(_, _ gpukern.Tensor, _ *gpukern.KVCache, _ int, _ []gpukern.AttnSeq, _ gpukern.AttnParams) {
}
func (nullBackend) LoRAShrink(_, _ gpukern.Tensor, _ []gpukern.LoRASegment, _, _ int)       {}
func (nullBackend) LoRAExpand(_, _ gpukern.Tensor, _ []gpukern.LoRASegment, _ []int, _ int) {}
func (nullBackend) Sample(ids []int32, _ gpukern.Tensor, _, _ int, _ []gpukern.SampleParams) {
	clear(ids)
}

// BenchmarkModelHostStep is the host time worker/model spends on one Llama-2-7B decode step
// of batch 32 with 32 adapters and context 128, the reference step: the CUDA
// backend's recording comes on top (gpukern/cuda/host's benchmarks).
func BenchmarkModelHostStep(b *testing.B) {
	cfg := Config{Model: Llama2(), Batches: []int{reference}, Adapters: []int{reference}, Contexts: []int{128}, Rank: 16}
	if err := cfg.setDefaults(); err != nil {
		b.Fatal(err)
	}
	var be nullBackend
	m, host, adapters := nullModel(b)
	r := &runner{cfg: cfg, be: be, gate: &gated{Backend: be}, m: m, host: host, adapters: adapters, rng: rand.New(rand.NewPCG(1, 2))}
	kv := m.NewKVCache(reference*r.blocksPerSeq(), blockSize)
	batch := r.decodeBatch(reference, reference, 128)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.step(batch, kv); err != nil {
			b.Fatal(err)
		}
	}
}

// nullModel is Llama-2-7B's shape on nullBackend with reference rank-16 adapters of the
// values of host.
func nullModel(b *testing.B) (m *model.Model, host *peft.Adapter, adapters []*model.Adapter) {
	b.Helper()
	var be nullBackend
	m, err := model.Build(Llama2(), be, randomWeights(be, 1))
	if err != nil {
		b.Fatal(err)
	}
	host = randomAdapter(&m.Config, 16, 1, false)
	if adapters, err = loadAdapters(m, host, reference); err != nil {
		b.Fatal(err)
	}
	return m, host, adapters
}

// BenchmarkEngineHostStep is the host time of one step of worker/engine (scheduling the
// batch, building it, sampling bookkeeping) plus worker/model's, on the reference decode
// batch: 32 sequences of Llama-2-7B shape, each with its own adapter, greedy, 64 tokens each
// after a 128-token prompt. ns/step is per generated token, the prefill steps amortized.
func BenchmarkEngineHostStep(b *testing.B) {
	const tokens = 64
	m, _, adapters := nullModel(b)
	e, err := engine.New(m, engine.Config{NumBlocks: reference * 16, DeviceSampling: true, PadDecode: true})
	if err != nil {
		b.Fatal(err)
	}
	prompt := make([]int, 128)
	for i := range prompt {
		prompt[i] = i + 1
	}
	params := sample.DefaultParams()
	params.Temperature, params.IgnoreEOS = 0, true
	steps := 0
	for b.Loop() {
		seqs := make([]*engine.Sequence, reference)
		for i := range seqs {
			seqs[i] = &engine.Sequence{Prompt: prompt, Adapter: adapters[i], Sampler: sample.New(params, nil), MaxTokens: tokens}
		}
		if err := e.Run(context.Background(), seqs); err != nil {
			b.Fatal(err)
		}
		steps += tokens
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps), "ns/step")
}
