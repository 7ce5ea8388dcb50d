package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/worker/model"
)

// The benchmark runs end to end on the CPU backend with the tiny test model's shape, and
// counts the bytes of a step by the model's shapes (worked out by hand for this shape).
func TestRunOnTheCPU(t *testing.T) {
	shape := tinyShape(t)
	cfg := Config{Model: shape, Batches: []int{1, 4}, Adapters: []int{1, 0}, Contexts: []int{8}, Rank: 4,
		Steps: 3, Warmup: 1, PrefillPrompt: 16, PrefillSeqs: 2}
	if n, err := cfg.MaxAdapters(); err != nil || n != 5 { // 4 in the largest batch, 1 spare
		t.Fatalf("MaxAdapters = %d, %v; want 5", n, err)
	}
	rep, err := Run(context.Background(), cpuref.New(1), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Per (batch, context): attention off, LoRA off, then each distinct adapter count.
	want := []struct {
		variant  string
		batch, k int
		bytes    int64
	}{
		{AttentionOff, 1, 0, 238208},
		{LoRAOff, 1, 0, 238208 + 9*256},
		{WithLoRA, 1, 1, 238208 + 17920 + 9*256},
		{AttentionOff, 4, 0, 238208},
		{LoRAOff, 4, 0, 238208 + 4*9*256},
		{WithLoRA, 4, 1, 238208 + 17920 + 4*9*256},
		{WithLoRA, 4, 4, 238208 + 4*17920 + 4*9*256},
	}
	if len(rep.Decode) != len(want) {
		t.Fatalf("%d decode results, want %d: %+v", len(rep.Decode), len(want), rep.Decode)
	}
	for i, w := range want {
		d := rep.Decode[i]
		if d.Variant != w.variant || d.Batch != w.batch || d.Adapters != w.k || d.Context != 8 || d.Bytes != w.bytes {
			t.Errorf("result %d = %s batch %d k %d ctx %d bytes %d; want %+v", i, d.Variant, d.Batch, d.Adapters, d.Context, d.Bytes, w)
		}
		if !(d.StepMS > 0) || d.P90MS < d.StepMS || d.TokensPerS <= 0 || d.RatioToFloor <= 0 {
			t.Errorf("result %d: %+v", i, d)
		}
	}
	if p := rep.Prefill; p.Seqs != 2 || p.Prompt != 16 || !(p.TokensPerS > 0) {
		t.Errorf("prefill %+v", p)
	}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil || !strings.Contains(md.String(), "| 8 | 4 | lora | 4 |") {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}
}

// A batch larger than the reference (the batch 128) is profiled too, with the
// reference profile's adapters, and both tables are in the report.
func TestProfilesTheLargestBatch(t *testing.T) {
	cfg := Config{Model: tinyShape(t), Batches: []int{4, reference + 8}, Adapters: []int{0}, Contexts: []int{8}, Rank: 4,
		Steps: 1, Warmup: 0, PrefillPrompt: 8, PrefillSeqs: 1}
	rep, err := Run(context.Background(), &gpuLike{Backend: cpuref.New(1), flushOps: 64}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range rep.Profiles {
		got = append(got, fmt.Sprintf("b%d k%d c%d", p.Batch, p.Adapters, p.Context))
	}
	if want := []string{"b4 k4 c8", fmt.Sprintf("b%d k4 c8", reference+8)}; !slices.Equal(got, want) {
		t.Errorf("profiles %v, want %v", got, want)
	}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil || strings.Count(md.String(), "Where a decode step's time goes") != 2 ||
		!strings.Contains(md.String(), fmt.Sprintf("(batch %d, 4 adapters, context 8;", reference+8)) {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}
}

// The variants run with min(reference, batch) adapters whatever --adapters lists, so the run
// keeps that many on the backend: with one adapter listed and a batch above the reference, a
// variant's step once indexed past the adapters the run had (a panic).
func TestVariantsHaveTheirAdapters(t *testing.T) {
	cfg := Config{Model: tinyShape(t), Batches: []int{reference + 2}, Adapters: []int{1}, Contexts: []int{8}, Rank: 4,
		Steps: 1, Warmup: 0, PrefillPrompt: 8, PrefillSeqs: 1}
	if n, err := cfg.MaxAdapters(); err != nil || n != reference+1 {
		t.Fatalf("MaxAdapters = %d, %v; want %d (the variants' and a spare)", n, err, reference+1)
	}
	rep, err := Run(context.Background(), &gpuLike{Backend: cpuref.New(1), flushOps: 64}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := rep.find(GraphsOff, reference+2, reference, 8); !ok || !(d.StepMS > 0) {
		t.Errorf("no graphs-off row with %d adapters: %+v", reference, rep.Decode)
	}
	withSettings := cfg
	withSettings.Settings = []string{"lean"}
	if n, err := withSettings.MaxAdapters(); err != nil || n != 2 {
		t.Errorf("with settings (no variants), MaxAdapters = %d, %v; want 2", n, err)
	}
}

// Any mix of batches (over the reference or not, in any order), adapter counts (0: one a row;
// more than the batch) and settings runs to the end: the flags are the user's input.
func TestAnyConfigRuns(t *testing.T) {
	for _, batches := range [][]int{{3}, {reference + 1}, {reference + 8, 2}} {
		for _, adapters := range [][]int{{0}, {1}, {reference + 8}, {5, 5, 0}} {
			for _, settings := range [][]string{nil, {"lean"}} {
				cfg := Config{Model: tinyShape(t), Batches: batches, Adapters: adapters, Contexts: []int{8, 16}, Rank: 4,
					Steps: 1, Warmup: 0, PrefillPrompt: 8, PrefillSeqs: 3, Settings: settings}
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("batches %v, adapters %v, settings %v: panic: %v", batches, adapters, settings, p)
						}
					}()
					if _, err := Run(context.Background(), &gpuLike{Backend: cpuref.New(1), flushOps: 64}, cfg, nil); err != nil {
						t.Errorf("batches %v, adapters %v, settings %v: %v", batches, adapters, settings, err)
					}
				}()
			}
		}
	}
}

// gpuLike is the CPU backend with what bench/engine measures on a GPU backend: graphs to turn
// off, adapter uploads to time, memory to report. It counts live adapters and graph toggles.
type gpuLike struct {
	*cpuref.Backend
	live, loads int
	bf16Loads   int     // loads whose data came in bf16
	graphsOff   []bool  // each SetGraphs call's "off"
	flushOps    int     // as SetFlushOps set it
	flushSets   []int   // each SetFlushOps call's n
	sideSets    []bool  // each SetLoRASideStream call's "on"
	prioSets    []bool  // each SetLoRASidePriority call's "prioritized"
	gemmSets    []bool  // each SetSmallGEMM call's "on"
	splitSets   []bool  // each SetGEMMSplit call's "on"
	deepSets    []bool  // each SetDeepGEMM call's "on"
	tuneSets    []bool  // each SetTunedGEMM call's "on"
	leanSets    []bool  // each SetLeanGEMM call's "on"
	staged      int     // WaitAdapterStaged calls
	earlySets   []bool  // each SetEarlyLaunch call's "on"
	ropeSets    []bool  // each SetFusedRoPE call's "on"
	failLean    bool    // steps fail while SetLeanGEMM is on, as a GPU refusing a kernel would make them
	copies      []int64 // each CopyBandwidth call's size
}

func (g *gpuLike) Sync() error {
	if g.failLean && len(g.leanSets) > 0 && g.leanSets[len(g.leanSets)-1] {
		return errors.New("launch out of resources")
	}
	return g.Backend.Sync()
}

func (g *gpuLike) AdapterWeights(data []gpukern.HostTensor) ([]gpukern.Tensor, error) {
	g.live++
	g.loads++
	if len(data) > 0 && data[0].BF16 != nil {
		g.bf16Loads++
	}
	return g.Backend.AdapterWeights(data)
}

func (g *gpuLike) FreeAdapterWeights(ts []gpukern.Tensor) {
	g.live--
	g.Backend.FreeAdapterWeights(ts)
}

func (g *gpuLike) SetGraphs(on bool)           { g.graphsOff = append(g.graphsOff, !on) }
func (g *gpuLike) SetLoRASideStream(on bool)   { g.sideSets = append(g.sideSets, on) }
func (g *gpuLike) SetLoRASidePriority(on bool) { g.prioSets = append(g.prioSets, on) }
func (g *gpuLike) SetSmallGEMM(on bool)        { g.gemmSets = append(g.gemmSets, on) }
func (g *gpuLike) SetGEMMSplit(on bool)        { g.splitSets = append(g.splitSets, on) }
func (g *gpuLike) SetDeepGEMM(on bool)         { g.deepSets = append(g.deepSets, on) }
func (g *gpuLike) SetEarlyLaunch(on bool)      { g.earlySets = append(g.earlySets, on) }
func (g *gpuLike) SetFusedRoPE(on bool)        { g.ropeSets = append(g.ropeSets, on) }
func (g *gpuLike) SmallGEMMRows() int          { return 2 }
func (g *gpuLike) SetTunedGEMM(on bool)        { g.tuneSets = append(g.tuneSets, on) }
func (g *gpuLike) SetLeanGEMM(on bool)         { g.leanSets = append(g.leanSets, on) }
func (g *gpuLike) TunedGEMMs() []host.TunedGEMM {
	return []host.TunedGEMM{{M: 4, N: 96, K: 64, Times: []time.Duration{3 * time.Microsecond, 0, 2 * time.Microsecond}, Splits: []int{0, 4}, Pick: 2, Refused: 1},
		{M: 4, N: 64, K: 64, Times: []time.Duration{time.Microsecond}, Note: "no cuBLASLt"}}
}
func (g *gpuLike) SetFlushOps(n int) int {
	prev := g.flushOps
	g.flushOps, g.flushSets = n, append(g.flushSets, n)
	return prev
}
func (g *gpuLike) LastAdapterUpload() (prepare, transfer time.Duration, err error) {
	return 2 * time.Millisecond, time.Millisecond, nil
}
func (g *gpuLike) WaitAdapterStaged() error {
	g.staged++
	return nil
}
func (g *gpuLike) MemInfo() (free, total int64, err error) { return 3 << 30, 8 << 30, nil }
func (g *gpuLike) CopyBandwidth(n int64) (float64, error) {
	g.copies = append(g.copies, n)
	return 2.5e12, nil
}
func (g *gpuLike) GraphStats() host.GraphStats {
	return host.GraphStats{Replayed: 40, Captured: 2, Eager: 9, Failed: 1, FirstFailure: errors.New("capture invalidated")}
}
func (g *gpuLike) Profile(f func()) (map[string]time.Duration, error) {
	f()
	return map[string]time.Duration{"gemm 64×64": 3 * time.Millisecond, "lora_shrink": time.Millisecond}, nil
}

// On a backend with graphs, a side stream and timed uploads, the run adds the graphs-off and
// one-stream variants at the first context, decode while adapters load (a fresh adapter
// before each timed step, each freed again), and the memory in use.
func TestGPUMeasurements(t *testing.T) {
	shape := tinyShape(t)
	cfg := Config{Model: shape, Batches: []int{2, 4}, Adapters: []int{0}, Contexts: []int{8, 16}, Rank: 4,
		Steps: 3, Warmup: 1, PrefillPrompt: 16, PrefillSeqs: 2, HostBF16: true}
	be := &gpuLike{Backend: cpuref.New(1), flushOps: 64}
	rep, err := Run(context.Background(), be, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var off []string
	for _, d := range rep.Decode {
		if d.Variant == GraphsOff {
			off = append(off, fmt.Sprintf("b%d k%d c%d", d.Batch, d.Adapters, d.Context))
		}
	}
	if want := []string{"b2 k2 c8", "b4 k4 c8"}; !slices.Equal(off, want) {
		t.Errorf("graphs-off runs %v, want %v", off, want)
	}
	if want := []bool{true, false, true, false}; !slices.Equal(be.graphsOff, want) {
		t.Errorf("SetGraphs(off) calls %v, want %v", be.graphsOff, want)
	}
	// The copy bandwidth, measured once with a copy of the tiny model's weights (less than
	// the gigabyte a large model's copy takes).
	weights := (&runner{cfg: cfg}).weightBytes()
	if !slices.Equal(be.copies, []int64{weights}) || rep.CopyBandwidth != 2.5e12 || rep.CopyBytes != weights {
		t.Errorf("copies %v of %d bytes' weights; report %g bytes/s over %d bytes", be.copies, weights, rep.CopyBandwidth, rep.CopyBytes)
	}
	// One launch per step at the largest batch up to the reference, the first context; the
	// backend's setting put back after it.
	var one []string
	for _, d := range rep.Decode {
		if d.Variant == OneLaunch {
			one = append(one, fmt.Sprintf("b%d k%d c%d", d.Batch, d.Adapters, d.Context))
		}
	}
	if want := []string{"b4 k4 c8"}; !slices.Equal(one, want) || !slices.Equal(be.flushSets, []int{0, 64}) {
		t.Errorf("one-launch runs %v with SetFlushOps calls %v; want %v with [0 64]", one, be.flushSets, want)
	}
	// LoRA on one stream, on an unprioritized side stream, and without early launches, for
	// each batch at the first context; the setting put back after each.
	runsOf := func(variant string) (runs []string) {
		for _, d := range rep.Decode {
			if d.Variant == variant {
				runs = append(runs, fmt.Sprintf("b%d k%d c%d", d.Batch, d.Adapters, d.Context))
			}
		}
		return runs
	}
	want := []string{"b2 k2 c8", "b4 k4 c8"}
	if got := runsOf(OneStream); !slices.Equal(got, want) || !slices.Equal(be.sideSets, []bool{false, true, false, true}) {
		t.Errorf("one-stream runs %v with SetLoRASideStream calls %v; want %v with [false true false true]", got, be.sideSets, want)
	}
	if got := runsOf(Unprioritized); !slices.Equal(got, want) || !slices.Equal(be.prioSets, []bool{false, true, false, true}) {
		t.Errorf("unprioritized runs %v with SetLoRASidePriority calls %v; want %v with [false true false true]", got, be.prioSets, want)
	}
	if got := runsOf(NotEarly); !slices.Equal(got, want) || !slices.Equal(be.earlySets, []bool{false, true, false, true}) {
		t.Errorf("no-early-launch runs %v with SetEarlyLaunch calls %v; want %v with [false true false true]", got, be.earlySets, want)
	}
	if got := runsOf(RoPEApart); !slices.Equal(got, want) || !slices.Equal(be.ropeSets, []bool{false, true, false, true}) {
		t.Errorf("RoPE-apart runs %v with SetFusedRoPE calls %v; want %v with [false true false true]", got, be.ropeSets, want)
	}
	// Every variant's row has its default's beside it in the variants table.
	for _, d := range rep.Decode {
		if _, ok := rep.baseFor(d); ok != isVariant(d.Variant) {
			t.Errorf("%s at batch %d: a default row to compare with: %v", d.Variant, d.Batch, ok)
		}
	}
	// cuBLAS's GEMMs, ours unsplit, ours one block an SM and ours lean, each with LoRA and with LoRA and
	// attention off, at the first context, for the batches that the backend's own GEMMs take
	// (up to 2 rows here): at larger ones all would be cuBLAS. Each setting put back after each.
	for _, g := range []struct {
		what              string
		lora, loraAttnOff string
		sets, want        []bool
	}{
		{"cuBLAS (SetSmallGEMM)", CuBLAS, CuBLASAttentionOff, be.gemmSets, []bool{false, true, false, true}},
		{"unsplit (SetGEMMSplit)", NotSplit, NotSplitAttentionOff, be.splitSets, []bool{false, true, false, true}},
		{"one block an SM (SetDeepGEMM)", Deep, DeepAttentionOff, be.deepSets, []bool{true, false, true, false}},
		{"lean (SetLeanGEMM)", Lean, LeanAttentionOff, be.leanSets, []bool{true, false, true, false}},
	} {
		if got := runsOf(g.lora); !slices.Equal(got, []string{"b2 k2 c8"}) {
			t.Errorf("%s runs %v, want [b2 k2 c8]", g.what, got)
		}
		if got := runsOf(g.loraAttnOff); !slices.Equal(got, []string{"b2 k0 c8"}) {
			t.Errorf("%s attention-off runs %v, want [b2 k0 c8]", g.what, got)
		}
		if !slices.Equal(g.sets, g.want) {
			t.Errorf("%s calls %v, want %v", g.what, g.sets, g.want)
		}
	}
	// cuBLAS's GEMMs timed, with LoRA and with LoRA and attention off, at the first context for
	// the batches above those the backend's own GEMMs take, the setting put back after each;
	// the timings reported.
	if got := runsOf(Timed); !slices.Equal(got, []string{"b4 k4 c8"}) || !slices.Equal(runsOf(TimedAttentionOff), []string{"b4 k0 c8"}) ||
		!slices.Equal(be.tuneSets, []bool{true, false, true, false}) {
		t.Errorf("timed-GEMM runs %v and %v with SetTunedGEMM calls %v; want [b4 k4 c8], [b4 k0 c8], [true false true false]",
			got, runsOf(TimedAttentionOff), be.tuneSets)
	}
	if g := rep.TimedGEMMs; len(g) != 2 || g[0].GemmExUS != 3 || !slices.Equal(g[0].AlgosUS, []float64{0, 2}) || !slices.Equal(g[0].Splits, []int{0, 4}) || g[0].Pick != 2 || g[0].Refused != 1 || g[1].Note != "no cuBLASLt" {
		t.Errorf("timed GEMMs %+v", g)
	}
	// The attention-off variants' bytes hold no KV, as the attention-off row's.
	if cub, _ := rep.find(CuBLASAttentionOff, 2, 0, 8); cub.Bytes != rep.Decode[0].Bytes || rep.Decode[0].Variant != AttentionOff {
		t.Errorf("cuBLAS attention-off row counts %d bytes, the attention-off row %+v", cub.Bytes, rep.Decode[0])
	}
	l := rep.Loading
	if l == nil || l.Batch != 4 || l.Adapters != 4 || l.Context != 8 || l.Loads != 3 || l.UploadMS != 1 || !(l.StepMS > 0) || l.PrepareMS != 2 ||
		!(l.StagedStepMS > 0) || l.StagedStepMaxMS < l.StagedStepMS {
		t.Fatalf("loading %+v", l)
	}
	if be.staged != 3 {
		t.Errorf("%d steps started once their adapter was staged, want the second pass's 3", be.staged)
	}
	if quiet, _ := rep.find(WithLoRA, 4, 4, 8); l.QuietStepMS != quiet.StepMS {
		t.Errorf("quiet step %v, want the batch's own median %v", l.QuietStepMS, quiet.StepMS)
	}
	if be.live != 0 || be.loads != 4+2*3 || be.bf16Loads != be.loads {
		t.Errorf("%d adapters left on the backend after %d loads (%d in bf16); want 0 after 10, all in bf16", be.live, be.loads, be.bf16Loads)
	}
	if len(rep.Profiles) != 1 {
		t.Fatalf("%d profiles, want the reference batch's alone (none is larger)", len(rep.Profiles))
	}
	if p := rep.Profiles[0]; p.Batch != 4 || p.Adapters != 4 || len(p.Kernels) != 2 || p.Kernels[0].Name != "gemm 64×64" || p.Kernels[0].Share != 0.75 {
		t.Errorf("profile %+v", p)
	}
	if m := rep.Memory; m == nil || m.UsedBytes != 5<<30 || m.KVTokens != 4*2*blockSize || m.Adapters != 5 || m.CoversTarget {
		t.Errorf("memory %+v", m)
	}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil || !strings.Contains(md.String(), "Decode while adapters load") || !strings.Contains(md.String(), "only its transfer overlaps them") ||
		!strings.Contains(md.String(), "| 4 × 96 × 64 | 3.0 | 2.0 (2 of 2, k in 4 parts) | cuBLASLt 2, k in 4 parts, which refused 1 GEMMs (run by GemmEx) |") || !strings.Contains(md.String(), "| 4 × 64 × 64 | 1.0 | none: no cuBLASLt | GemmEx |") ||
		!strings.Contains(md.String(), "5.0 GiB of 8.0 GiB (less than the memory target's 64 device adapters and KV for 64 sequences × 1024 tokens)") || !strings.Contains(md.String(), "| lora_shrink | 1.000 | 25.0% |") ||
		!sideBySide.MatchString(md.String()) ||
		!strings.Contains(md.String(), "40 flushes replayed a graph, 2 captured one, 9 ran eagerly; 1 captures failed (the first: capture invalidated)") {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}
}

// sideBySide matches rows of the variants table, each variant beside its default: at batch 2,
// which the backend's own GEMMs take, the LoRA-kernel variants, no early launch, and the
// cuBLAS, unsplit, one-block-an-SM and lean variants; at batch 4 the LoRA-kernel variants and
// cuBLAS's GEMMs timed.
var sideBySide = regexp.MustCompile(`\| lora, one stream \| 2 \| 2 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`(.*\n)` +
	`\| lora, no early launch \| 2 \| 2 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora, RoPE apart from attention \| 2 \| 2 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora and attention off, GEMMs by cuBLAS \| 2 \| 0 \| 8 \| [0-9.]+ \| lora and attention off \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora, GEMMs by cuBLAS \| 2 \| 2 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora and attention off, GEMMs not split \| 2 \| 0 \| 8 \| [0-9.]+ \| lora and attention off \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora, GEMMs not split \| 2 \| 2 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora and attention off, GEMMs one block an SM \| 2 \| 0 \| 8 \| [0-9.]+ \| lora and attention off \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora, GEMMs one block an SM \| 2 \| 2 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora and attention off, lean GEMMs \| 2 \| 0 \| 8 \| [0-9.]+ \| lora and attention off \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora, lean GEMMs beside LoRA blocks \| 2 \| 2 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`(.*\n){2}` +
	`\| lora, one stream \| 4 \| 4 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`(.*\n){3}` +
	`\| lora and attention off, cuBLAS GEMMs timed \| 4 \| 0 \| 8 \| [0-9.]+ \| lora and attention off \| [0-9.]+ \| [-+][0-9.]+ \|\n` +
	`\| lora, cuBLAS GEMMs timed \| 4 \| 4 \| 8 \| [0-9.]+ \| lora \| [0-9.]+ \| [-+][0-9.]+ \|\n`)

// tinyShape is the tiny test model's shape.
func tinyShape(t *testing.T) model.Config {
	t.Helper()
	root, err := golden.TestdataDir()
	if err != nil {
		t.Fatal(err)
	}
	shape, err := model.LoadConfig(root + "/tiny-llama/model")
	if err != nil {
		t.Fatal(err)
	}
	return shape
}

func TestConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"no model":         {},
		"context too long": {Model: Llama2(), Contexts: []int{5000}},
		"negative batch":   {Model: Llama2(), Batches: []int{-1}},
		"unknown setting":  {Model: Llama2(), Settings: []string{"lean", "fast"}},
		"repeated setting": {Model: Llama2(), Settings: []string{"tuned", "tuned"}},
		"exclusive":        {Model: Llama2(), Settings: []string{"lean", "tuned", "deep"}},
		"cuBLAS unsplit":   {Model: Llama2(), Settings: []string{"unsplit", "cublas"}},
	} {
		if _, err := c.MaxAdapters(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The PEFT comparison pairs each PEFT case with the decode result at PEFT's batch and the
// shortest context: the base model with LoRA off, k adapters with k adapters.
func TestPEFTTable(t *testing.T) {
	rep := &Report{Decode: []Decode{
		{Variant: LoRAOff, Batch: 32, Context: 128, TokensPerS: 6000},
		{Variant: WithLoRA, Batch: 32, Adapters: 32, Context: 128, TokensPerS: 4000},
		{Variant: WithLoRA, Batch: 32, Adapters: 32, Context: 512, TokensPerS: 1},
		{Variant: WithLoRA, Batch: 8, Adapters: 8, Context: 128, TokensPerS: 1},
	}, PEFT: &PEFT{Device: "H100", Batch: 32, Prompt: 64, NewTokens: 64, Cases: []PEFTCase{{"base", 0, 600}, {"peft", 32, 20}}}}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"| none (base model) | 600.0 | 6000 | 10× |", "| 32 | 20.0 | 4000 | 200× |"} {
		if !strings.Contains(md.String(), row) {
			t.Errorf("no %q in\n%s", row, md.String())
		}
	}
}

// failingSync is the CPU backend with every Sync after the first `ok` failing, as a GPU
// whose kernels start failing part way through a run.
type failingSync struct {
	*cpuref.Backend
	ok int
}

func (f *failingSync) Sync() error {
	if f.ok--; f.ok < 0 {
		return errors.New("an illegal memory access was encountered")
	}
	return f.Backend.Sync()
}

// A run that fails part way returns what it measured before, with the error in the report.
func TestRunFailsPartWay(t *testing.T) {
	cfg := Config{Model: tinyShape(t), Batches: []int{1, 4}, Adapters: []int{1}, Contexts: []int{8}, Rank: 4,
		Steps: 3, Warmup: 1, PrefillPrompt: 16, PrefillSeqs: 2}
	// Building the model syncs once and each decode measurement Warmup+Steps times: the third
	// measurement fails.
	rep, err := Run(context.Background(), &failingSync{Backend: cpuref.New(1), ok: 2*(cfg.Warmup+cfg.Steps) + 1}, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "illegal memory access") {
		t.Fatalf("err = %v, want the backend's failure", err)
	}
	if rep == nil || len(rep.Decode) != 2 || !strings.Contains(rep.Error, "illegal memory access") {
		t.Fatalf("report %+v: want the two measurements made before the failure and its error", rep)
	}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil || !strings.Contains(md.String(), "The run stopped early") {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}
}

// A run whose context ends (a time limit, a signal) stops before its next measurement and
// returns the ones made.
func TestRunStopsWithItsContext(t *testing.T) {
	cfg := Config{Model: tinyShape(t), Batches: []int{1, 4}, Adapters: []int{1}, Contexts: []int{8, 12}, Rank: 4,
		Steps: 3, Warmup: 1, PrefillPrompt: 16, PrefillSeqs: 2}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	rep, err := Run(ctx, cpuref.New(1), cfg, func(string) {
		if calls++; calls == 6 { // "uploading adapters", two measurements and their results, the third's start
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || rep == nil || len(rep.Decode) != 3 || rep.Error == "" {
		t.Fatalf("err %v, report %+v: want the three measurements made before the cancel", err, rep)
	}
}

// A variant whose steps fail costs its own rows alone: the report names them with the error
// and the run measures the rest.
func TestVariantFailsAlone(t *testing.T) {
	cfg := Config{Model: tinyShape(t), Batches: []int{2, 4}, Adapters: []int{0}, Contexts: []int{8}, Rank: 4,
		Steps: 1, Warmup: 0, PrefillPrompt: 8, PrefillSeqs: 1}
	be := &gpuLike{Backend: cpuref.New(1), flushOps: 64, failLean: true}
	rep, err := Run(context.Background(), be, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) != 2 || !strings.HasPrefix(rep.Failed[0], LeanAttentionOff+": ") || !strings.HasPrefix(rep.Failed[1], Lean+": ") ||
		!strings.Contains(rep.Failed[1], "launch out of resources") {
		t.Errorf("failed %q: want the two lean rows with the error", rep.Failed)
	}
	for _, d := range rep.Decode {
		if d.Variant == Lean || d.Variant == LeanAttentionOff {
			t.Errorf("a failed row in the report: %+v", d)
		}
	}
	if _, ok := rep.find(WithLoRA, 4, 4, 8); !ok || rep.Loading == nil || !(rep.Prefill.TokensPerS > 0) {
		t.Errorf("the run stopped at the failure: %d rows, loading %+v, prefill %+v", len(rep.Decode), rep.Loading, rep.Prefill)
	}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil || !strings.Contains(md.String(), "Variants that failed (the run went on without them):\n\n- "+LeanAttentionOff) {
		t.Errorf("markdown (%v):\n%s", err, md.String())
	}
}
