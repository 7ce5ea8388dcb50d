package sim

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/engine"
	"github.com/lorafleet/lorafleet/worker/model"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// decodeBatch is n decode rows of n sequences with ctx tokens of context each, all with
// adapter a (nil: the base model).
func decodeBatch(n, ctx int, adapters ...*model.Adapter) *model.Batch {
	b := &model.Batch{}
	for i := range n {
		b.Tokens = append(b.Tokens, int32(i))
		b.Seqs = append(b.Seqs, gpukern.AttnSeq{QStart: i, QLen: 1, CtxLen: ctx})
		b.LogitRows = append(b.LogitRows, int32(i))
		var a *model.Adapter
		if len(adapters) > 0 {
			a = adapters[i%len(adapters)]
		}
		b.Adapters = append(b.Adapters, model.AdapterRun{Start: i, End: i + 1, Adapter: a})
	}
	return b
}

// llamaRank16 is a rank-16 adapter on all seven projections of every layer of a model with
// p's shape.
func llamaRank16(p *Profile) *peft.Adapter {
	pa := &peft.Adapter{Weights: map[peft.Target]*peft.LoRA{}}
	for _, m := range []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} {
		for l := range p.Model.Layers {
			pa.Weights[peft.Target{Layer: l, Module: m}] = &peft.LoRA{Rank: 16}
		}
	}
	return pa
}

func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*want {
		t.Errorf("%s = %.4g, want %.4g within %.1f%%", what, got, want, tol*100)
	}
}

// The default profile reproduces what was measured on the H100 (docs/gpu-path.md) and the
// sizes that follow from Llama-2-7B's architecture.
func TestDefaultProfileMatchesH100Measurements(t *testing.T) {
	p := DefaultProfile()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	// Weight GEMMs per decode step, plus reading one token of context per sequence.
	ctx1 := func(n int) float64 { return float64(n) * 524288 / 2.66e12 * 1e3 }
	for _, m := range []struct {
		batch int
		ms    float64
	}{{1, 4.97}, {32, 5.23}, {64, 5.37}, {128, 5.58}, {256, 6.56}} {
		within(t, "step time of a decode batch", ms(p.StepTime(decodeBatch(m.batch, 1))), m.ms+ctx1(m.batch), 0.001)
	}
	// Llama-2-7B: 32 layers × 2 (K and V) × 4096 × 2 bytes per token.
	if got := p.KVBytesPerToken(); got != 524288 {
		t.Errorf("KV bytes per token = %d, want 524288", got)
	}
	// A rank-16 adapter on all 7 projections: 16 × (4·8192 + 3·15104) × 32 layers × 2 bytes.
	if got := p.AdapterBytes(llamaRank16(p)); got != 16*(4*8192+3*15104)*32*2 {
		t.Errorf("rank-16 adapter = %d bytes, want %d", got, 16*(4*8192+3*15104)*32*2)
	}
	// Reading 32 distinct rank-16 adapters' weights took 2.73 ms on the H100.
	var as []*model.Adapter
	for i := range 32 {
		as = append(as, model.ShapeOnly(string(rune('a'+i)), 16, p.AdapterBytes(llamaRank16(p))))
	}
	lora := ms(p.StepTime(decodeBatch(32, 1, as...))) - ms(p.StepTime(decodeBatch(32, 1)))
	within(t, "LoRA cost of 32 distinct rank-16 adapters (ms)", lora, 2.73, 0.10)
	// Attention reads each context token's K and V once: 32 × 1024 tokens × 512 KiB at 2.66 TB/s.
	attn := ms(p.StepTime(decodeBatch(32, 1025))) - ms(p.StepTime(decodeBatch(32, 1)))
	within(t, "attention over 32 × 1024 tokens (ms)", attn, 32*1024*524288/2.66e12*1e3, 0.001)
	// Beyond the last point each row adds the compute-bound slope.
	within(t, "512-row prefill (ms)", ms(p.StepTime(decodeBatch(512, 1))), 6.56+256*0.0195+ctx1(512), 0.001)
}

func TestParseProfileRefusesBadFiles(t *testing.T) {
	good := string(defaultProfile)
	for _, c := range []struct{ name, from, to, want string }{
		{"unknown field", `"kv_cache_tokens"`, `"kv_cache_tokenz"`, "unknown field"},
		{"zero layers", `"num_hidden_layers": 32`, `"num_hidden_layers": 0`, "num_hidden_layers"},
		{"heads do not divide", `"num_key_value_heads": 32`, `"num_key_value_heads": 5`, "divide"},
		{"rows not increasing", `[64, 5.37]`, `[16, 5.37]`, "increase"},
		{"no points", `[[1, 4.97], [32, 5.23], [64, 5.37], [128, 5.58], [256, 6.56]]`, `[]`, "at least one"},
		{"zero bandwidth", `"kv_read_bytes_per_s": 2.66e12`, `"kv_read_bytes_per_s": 0`, "kv_read_bytes_per_s"},
		{"negative slope", `"gemm_us_per_row_beyond": 19.5`, `"gemm_us_per_row_beyond": -1`, "gemm_us_per_row_beyond"},
		{"trailing data", "}\n", "} {}", "after"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(good, c.from, c.to, 1)
			if bad == good {
				t.Fatalf("replacement %q not found", c.from)
			}
			if _, err := ParseProfile([]byte(bad)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
	if _, err := LoadProfile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("a missing profile file loaded")
	}
}

func FuzzParseProfile(f *testing.F) {
	f.Add(defaultProfile)
	f.Add([]byte(`{"model":{"num_hidden_layers":1,"hidden_size":8,"intermediate_size":8,"num_attention_heads":2,"num_key_value_heads":1,"dtype_bytes":2},"gemm_ms":[[1,1]],"kv_read_bytes_per_s":1,"lora_read_bytes_per_s":1,"host_to_device_bytes_per_s":1,"disk_bytes_per_s":1,"hub_bytes_per_s":1,"kv_cache_tokens":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProfile(b)
		if err != nil {
			return
		}
		a := model.ShapeOnly("a", 16, p.AdapterBytes(llamaRank16(p)))
		for _, n := range []int{1, 300, 5000} {
			if d := p.StepTime(decodeBatch(n, 4096, a)); d <= 0 {
				t.Fatalf("step time of %d rows = %v", n, d)
			}
		}
		if d := p.LoadTime("disk", a.Bytes()); d < 0 {
			t.Fatalf("load time %v", d)
		}
	})
}

func tinyConfig(t *testing.T) *model.Config {
	t.Helper()
	mc, err := model.LoadConfig("../../testdata/tiny-llama/model")
	if err != nil {
		t.Fatal(err)
	}
	return &mc
}

// recorder replaces the backend's sleep and, for modeled uploads, its clock.
type recorder struct {
	slept []time.Duration
	clock time.Time
}

func (r *recorder) sleep(d time.Duration) { r.slept = append(r.slept, d) }
func (r *recorder) now() time.Time        { return r.clock }

// recorded is a backend for the tiny test model whose sleeps rec records.
func recorded(t *testing.T, p *Profile, timeScale float64) (*Backend, *model.Config, *recorder) {
	t.Helper()
	mc := tinyConfig(t)
	s, err := New(p, mc, timeScale)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{clock: time.Unix(1e9, 0)}
	s.sleep, s.now = rec.sleep, rec.now
	return s, mc, rec
}

func TestForwardWaitsTheScaledStepTimeAndPicksTheNextToken(t *testing.T) {
	p := DefaultProfile()
	s, mc, rec := recorded(t, p, 10)
	b := decodeBatch(4, 100)
	b.Tokens[3] = int32(mc.EOSTokenIDs[0] - 1) // its successor is EOS: skipped
	logits, err := s.Forward(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != 4*mc.VocabSize {
		t.Fatalf("%d logits, want %d", len(logits), 4*mc.VocabSize)
	}
	for i := range 4 {
		row := logits[i*mc.VocabSize : (i+1)*mc.VocabSize]
		want := int(b.Tokens[i]) + 1
		if i == 3 {
			want += 1
		}
		if got := argmax(row); got != want {
			t.Errorf("row %d: picks token %d, want %d", i, got, want)
		}
	}
	want := 10 * p.StepTime(b)
	if len(rec.slept) != 1 || rec.slept[0] > want || rec.slept[0] < want-time.Millisecond {
		t.Fatalf("slept %v, want one sleep of just under %v", rec.slept, want)
	}
	if _, err := New(p, mc, 0); err == nil {
		t.Fatal("time scale 0 accepted")
	}
}

func argmax(v []float32) int {
	return slices.Index(v, slices.Max(v))
}

// The engine runs on the simulated backend as on the model: an adapter's upload lands after
// its modeled time without blocking the caller, and sequences with adapters finish at their
// length limit, each step waiting its modeled time.
func TestEngineRunsOnTheSimulatedBackend(t *testing.T) {
	p := DefaultProfile()
	s, mc, rec := recorded(t, p, 2)
	pa, err := peft.Load("../../testdata/tiny-llama/adapters/sql", mc.PEFTBase(), peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.LoadAdapter("sql", pa)
	if err != nil {
		t.Fatal(err)
	}
	if want := p.AdapterBytes(pa); a.Bytes() != want || a.Rank() != 8 {
		t.Fatalf("device copy: %d bytes rank %d, want %d bytes rank 8", a.Bytes(), a.Rank(), want)
	}
	upload := 2 * p.LoadTime("device", a.Bytes())
	if len(rec.slept) != 0 || s.AdapterReady(a) {
		t.Fatalf("LoadAdapter slept %v, ready at once %v: the modeled upload must run in the background", rec.slept, s.AdapterReady(a))
	}
	rec.clock = rec.clock.Add(upload - time.Microsecond)
	if s.AdapterReady(a) {
		t.Fatalf("ready before its scaled upload time %v", upload)
	}
	rec.clock = rec.clock.Add(time.Microsecond)
	if !s.AdapterReady(a) {
		t.Fatalf("not ready after its scaled upload time %v", upload)
	}
	if d := s.StoreDelay("disk", pa); d != 2*p.LoadTime("disk", a.Bytes()) {
		t.Fatalf("disk delay %v, want %v", d, 2*p.LoadTime("disk", a.Bytes()))
	}
	e, err := engine.NewWith(mc, s, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	greedy := func() *sample.Sampler { return sample.New(sample.Params{}, mc.EOSTokenIDs) }
	seqs := []*engine.Sequence{
		{Prompt: []int{100, 101, 102}, Adapter: a, Sampler: greedy(), MaxTokens: 7},
		{Prompt: []int{7, 8}, Sampler: greedy(), MaxTokens: 3},
	}
	rec.slept = nil
	if err := e.Run(context.Background(), seqs); err != nil {
		t.Fatal(err)
	}
	if got := seqs[0].Output; !slices.Equal(got, []int{103, 104, 105, 106, 107, 108, 109}) || seqs[0].Finish != engine.FinishLength {
		t.Fatalf("sequence 0 output %v (%s)", got, seqs[0].Finish)
	}
	if got := seqs[1].Output; !slices.Equal(got, []int{9, 10, 11}) {
		t.Fatalf("sequence 1 output %v", got)
	}
	if len(rec.slept) != 7 { // one prefill step for both, then six decode steps of the longer
		t.Fatalf("%d steps waited, want 7", len(rec.slept))
	}
}
