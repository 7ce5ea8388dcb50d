package engine

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/lorafleet/lorafleet/worker/model"
)

// Report is a run's results, written as JSON and as a markdown table.
type Report struct {
	Device    string  `json:"device"` // GPU (or CPU) and driver, as the backend describes itself
	Commit    string  `json:"commit"`
	Model     string  `json:"model"`
	Rank      int     `json:"rank"`
	Bandwidth float64 `json:"bandwidth_bytes_per_s"` // of the floor
	// CopyBandwidth is the card's, measured by a device-to-device copy of CopyBytes (bytes
	// read and written per second); 0 where the backend cannot measure it.
	CopyBandwidth float64    `json:"copy_bandwidth_bytes_per_s,omitempty"`
	CopyBytes     int64      `json:"copy_bytes,omitempty"`
	Steps         int        `json:"timed_steps"`
	Settings      []string   `json:"settings,omitempty"` // Config.Settings: the defaults changed for the whole run
	Decode        []Decode   `json:"decode"`
	Failed        []string   `json:"failed,omitempty"` // variants whose measurement failed, with the error; the run went on
	Prefill       Prefill    `json:"prefill"`
	Loading       *Loading   `json:"loading,omitempty"`  // decode while adapters load (GPU backends)
	Memory        *Memory    `json:"memory,omitempty"`   // device memory in use (GPU backends)
	Profiles      []*Profile `json:"profiles,omitempty"` // where a decode step's time goes (GPU backends)
	Graphs        *Graphs    `json:"graphs,omitempty"`   // how the steps ran: eagerly or as CUDA graphs
	// TimedGEMMs are the timings behind the "cuBLAS GEMMs timed" rows (GEMMTuner backends).
	TimedGEMMs []TimedGEMM `json:"timed_gemms,omitempty"`
	PEFT       *PEFT       `json:"peft,omitempty"`    // the baseline measured on the same GPU, if given
	Targets    []Target    `json:"targets,omitempty"` // Judge's verdicts, once the report is complete
	// Error is why the run stopped before measuring everything: the report holds what was
	// measured until then.
	Error string `json:"error,omitempty"`
}

// PEFT is the output of bench/baselines/peft_generate.py: transformers + peft generate.
type PEFT struct {
	Device    string     `json:"device"`
	Batch     int        `json:"batch"`
	Prompt    int        `json:"prompt"`
	NewTokens int        `json:"new_tokens"`
	Cases     []PEFTCase `json:"cases"`
}

// PEFTCase is one PEFT measurement.
type PEFTCase struct {
	Case       string  `json:"case"` // "base" or "peft"
	Adapters   int     `json:"adapters"`
	TokensPerS float64 `json:"tokens_per_s"`
}

// Decode is one decode configuration's measurement.
type Decode struct {
	Variant  string  `json:"variant"` // WithLoRA, LoRAOff or AttentionOff
	Batch    int     `json:"batch"`
	Adapters int     `json:"adapters"` // distinct adapters in the batch
	Context  int     `json:"context"`
	StepMS   float64 `json:"step_ms"` // median
	P90MS    float64 `json:"p90_ms"`
	// Bytes is what the step must read at least: base weights, each adapter, the KV cache.
	Bytes        int64   `json:"bytes"`
	FloorMS      float64 `json:"floor_ms"` // Bytes at the report's bandwidth
	RatioToFloor float64 `json:"ratio_to_floor"`
	TokensPerS   float64 `json:"tokens_per_s"`
	AchievedTBs  float64 `json:"achieved_tb_per_s"` // Bytes / StepMS
}

func (d *Decode) fill(bandwidth float64) {
	d.FloorMS = float64(d.Bytes) / bandwidth * 1e3
	d.RatioToFloor = d.StepMS / d.FloorMS
	d.TokensPerS = float64(d.Batch) / (d.StepMS / 1e3)
	d.AchievedTBs = float64(d.Bytes) / (d.StepMS / 1e3) / 1e12
}

// Prefill is the prefill measurement.
type Prefill struct {
	Seqs       int     `json:"seqs"`
	Prompt     int     `json:"prompt_tokens"`
	StepMS     float64 `json:"step_ms"`
	TokensPerS float64 `json:"tokens_per_s"`
}

func shapeOf(c model.Config) string {
	return fmt.Sprintf("hidden %d, intermediate %d, %d layers, %d/%d heads of %d, vocabulary %d",
		c.Hidden, c.Intermediate, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.VocabSize)
}

// Markdown writes the report as tables: decode steps with the LoRA cost against LoRA off at
// the same batch and context, then prefill.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Device: %s · commit %s\n\nModel: %s; adapters of rank %d on all seven projections; median of %d steps; floor at %.2f TB/s.\n\n",
		r.Device, r.Commit, r.Model, r.Rank, r.Steps, r.Bandwidth/1e12)
	if r.CopyBandwidth > 0 {
		fmt.Fprintf(&b, "The card's device-to-device copy of %.1f MB (bytes read and written): %.2f TB/s.\n\n", float64(r.CopyBytes)/1e6, r.CopyBandwidth/1e12)
	}
	if len(r.Settings) > 0 {
		fmt.Fprintf(&b, "Settings: %s (`bench engine --with`): every row with these in place of the defaults.\n\n", strings.Join(r.Settings, ", "))
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "**The run stopped early** (what follows was measured before): %s\n\n", r.Error)
	}
	b.WriteString("| context | batch | variant | adapters | step ms (p90) | floor ms | ratio to floor | LoRA cost ms | tok/s | TB/s |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, d := range r.Decode {
		cost := "–"
		if off, ok := r.find(LoRAOff, d.Batch, 0, d.Context); ok && d.Variant == WithLoRA {
			cost = fmt.Sprintf("%+.2f", d.StepMS-off.StepMS)
		}
		fmt.Fprintf(&b, "| %d | %d | %s | %d | %.2f (%.2f) | %.3g | %.2f | %s | %.0f | %.3g |\n",
			d.Context, d.Batch, d.Variant, d.Adapters, d.StepMS, d.P90MS, d.FloorMS, d.RatioToFloor, cost, d.TokensPerS, d.AchievedTBs)
	}
	r.variantsTable(&b)
	if len(r.Failed) > 0 {
		b.WriteString("\nVariants that failed (the run went on without them):\n\n")
		for _, f := range r.Failed {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	p := r.Prefill
	fmt.Fprintf(&b, "\nPrefill: %d prompts of %d tokens, each with its own adapter, in one step: %.1f ms, %.0f tokens/s.\n",
		p.Seqs, p.Prompt, p.StepMS, p.TokensPerS)
	r.loadingAndMemory(&b)
	r.timedGEMMsTable(&b)
	r.peftTable(&b)
	r.targetsTable(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// TimedGEMM is one GEMM shape's timing (host.TunedGEMM): cuBLAS's own pick (GemmEx) and each
// algorithm cuBLASLt's heuristic offered, in its order (0: failed to run), and the pick.
type TimedGEMM struct {
	M        int       `json:"m"`
	N        int       `json:"n"`
	K        int       `json:"k"`
	GemmExUS float64   `json:"gemmex_us"`
	AlgosUS  []float64 `json:"cublaslt_us"`
	Splits   []int     `json:"cublaslt_splits,omitempty"` // each of AlgosUS' parts of k: 0 as the heuristic offered it
	Pick     int       `json:"pick"`                      // 0: GemmEx; i: cuBLASLt's i-th
	Note     string    `json:"note,omitempty"`
	Refused  int       `json:"refused,omitempty"` // GEMMs the pick refused (GemmEx ran them)
}

// splitNote says how cuBLASLt candidate i (from 1) split k, if it did.
func (g *TimedGEMM) splitNote(i int) string {
	if i < 1 || i > len(g.Splits) || g.Splits[i-1] < 2 {
		return ""
	}
	return fmt.Sprintf(", k in %d parts", g.Splits[i-1])
}

// timedGEMMsTable lists the shapes timed for the "cuBLAS GEMMs timed" rows.
func (r *Report) timedGEMMsTable(b *strings.Builder) {
	if len(r.TimedGEMMs) == 0 {
		return
	}
	b.WriteString("\nGEMMs that cuBLAS runs, timed for the \"cuBLAS GEMMs timed\" rows (mean of 10 runs, µs): cuBLAS's own pick (GemmEx) and the fastest of the algorithms cuBLASLt's heuristic offered, then of its first few with k split in parts, with its place among them.\n\n" +
		"| m × n × k | GemmEx µs | fastest cuBLASLt µs (place of) | picked |\n|---|---|---|---|\n")
	for _, g := range r.TimedGEMMs {
		lt, at := "–", 0
		for i, us := range g.AlgosUS {
			if us > 0 && (at == 0 || us < g.AlgosUS[at-1]) {
				at = i + 1
			}
		}
		if at > 0 {
			lt = fmt.Sprintf("%.1f (%d of %d%s)", g.AlgosUS[at-1], at, len(g.AlgosUS), g.splitNote(at))
		} else if g.Note != "" {
			lt = "none: " + g.Note
		}
		pick := "GemmEx"
		if g.Pick > 0 {
			pick = fmt.Sprintf("cuBLASLt %d%s", g.Pick, g.splitNote(g.Pick))
		}
		if g.Refused > 0 {
			pick += fmt.Sprintf(", which refused %d GEMMs (run by GemmEx)", g.Refused)
		}
		fmt.Fprintf(b, "| %d × %d × %d | %.1f | %s | %s |\n", g.M, g.N, g.K, g.GemmExUS, lt, pick)
	}
}

// baseOf is the variant that each side-by-side variant changes one thing of: the first of its
// list measured at the same batch, adapters and context.
var baseOf = map[string][]string{
	GraphsOff: {WithLoRA}, OneLaunch: {WithLoRA}, NotEarly: {WithLoRA}, OneStream: {WithLoRA},
	Unprioritized: {WithLoRA}, CuBLAS: {WithLoRA}, CuBLASAttentionOff: {AttentionOff},
	NotSplit: {WithLoRA}, NotSplitAttentionOff: {AttentionOff}, Deep: {WithLoRA}, DeepAttentionOff: {AttentionOff},
	Timed: {WithLoRA}, TimedAttentionOff: {AttentionOff}, Lean: {WithLoRA}, LeanAttentionOff: {AttentionOff}, RoPEApart: {WithLoRA},
}

// baseFor is the row of the default that d's variant changes one thing of (baseOf), if measured.
func (r *Report) baseFor(d Decode) (Decode, bool) {
	for _, v := range baseOf[d.Variant] {
		if base, ok := r.find(v, d.Batch, d.Adapters, d.Context); ok {
			return base, true
		}
	}
	return Decode{}, false
}

// variantsTable puts each side-by-side variant's step next to the default's of the same batch,
// adapters and context, so that a run says at a glance which choice to keep.
func (r *Report) variantsTable(b *strings.Builder) {
	var rows []string
	for _, d := range r.Decode {
		base, ok := r.baseFor(d)
		if !ok {
			continue
		}
		delta := d.StepMS - base.StepMS
		if math.Abs(delta) < 0.005 {
			delta = 0 // printed +0.00, not -0.00
		}
		rows = append(rows, fmt.Sprintf("| %s | %d | %d | %d | %.2f | %s | %.2f | %+.2f |\n",
			d.Variant, d.Batch, d.Adapters, d.Context, d.StepMS, base.Variant, base.StepMS, delta))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nEach variant against the default it changes one thing of (Δ < 0: the variant is faster):\n\n")
	b.WriteString("| variant | batch | adapters | context | step ms | default | default ms | Δ ms |\n|---|---|---|---|---|---|---|---|\n")
	for _, row := range rows {
		b.WriteString(row)
	}
}

// loadingAndMemory writes the decode-while-loading and memory lines, where measured.
func (r *Report) loadingAndMemory(b *strings.Builder) {
	if l := r.Loading; l != nil {
		fmt.Fprintf(b, "\nDecode while adapters load (batch %d, %d adapters, context %d; before each of %d steps a new adapter of %.0f MB starts uploading in the background):"+
			" putting it in bf16 into page-locked memory %.1f ms median; transfer to the device slot %.2f ms median, %.2f ms slowest; steps %.2f ms median, %.2f ms slowest"+
			" (%.2f× the median without loads). Started once the adapter is in page-locked memory, so that only its transfer overlaps them:"+
			" steps %.2f ms median, %.2f ms slowest (%.2f×).\n",
			l.Batch, l.Adapters, l.Context, l.Loads, float64(l.AdapterBytes)/1e6, l.PrepareMS, l.UploadMS, l.UploadMaxMS,
			l.StepMS, l.StepMaxMS, l.StepMaxMS/l.QuietStepMS, l.StagedStepMS, l.StagedStepMaxMS, l.StagedStepMaxMS/l.QuietStepMS)
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(b, "\nWhere a decode step's time goes (batch %d, %d adapters, context %d; each kernel timed by events, no graph):\n\n| kernel | ms | share |\n|---|---|---|\n",
			p.Batch, p.Adapters, p.Context)
		for _, k := range p.Kernels {
			fmt.Fprintf(b, "| %s | %.3f | %.1f%% |\n", k.Name, k.MS, 100*k.Share)
		}
	}
	if g := r.Graphs; g != nil {
		failure := ""
		if g.FirstFailure != "" {
			failure = " (the first: " + g.FirstFailure + ")"
		}
		fmt.Fprintf(b, "\nCUDA graphs over the run: %d flushes replayed a graph, %d captured one, %d ran eagerly; %d captures failed%s.\n",
			g.Replayed, g.Captured, g.Eager, g.Failed, failure)
	}
	if m := r.Memory; m != nil {
		cover := "less than"
		if m.CoversTarget {
			cover = "at least"
		}
		fmt.Fprintf(b, "\nDevice memory in use with the model, %d adapter slots and a KV cache of %d tokens: %.1f GiB of %.1f GiB"+
			" (%s the memory target's %d device adapters and KV for %d sequences × %d tokens).\n",
			m.Adapters, m.KVTokens, float64(m.UsedBytes)/(1<<30), float64(m.TotalBytes)/(1<<30), cover, targetAdapters, targetSeqs, targetTokens)
	}
}

// peftTable compares decode throughput at PEFT's batch size and the shortest context with
// PEFT's generate (whose time also holds its prefill and contexts up to prompt + new tokens).
func (r *Report) peftTable(b *strings.Builder) {
	if r.PEFT == nil || len(r.Decode) == 0 {
		return
	}
	ctx := r.Decode[0].Context
	for _, d := range r.Decode {
		ctx = min(ctx, d.Context)
	}
	fmt.Fprintf(b, "\nAgainst PEFT on %s (generate, batch %d, prompt %d, %d new tokens); lorafleet: decode steps at batch %d, context %d.\n\n",
		r.PEFT.Device, r.PEFT.Batch, r.PEFT.Prompt, r.PEFT.NewTokens, r.PEFT.Batch, ctx)
	b.WriteString("| adapters | PEFT tok/s | lorafleet tok/s | × PEFT |\n|---|---|---|---|\n")
	for _, c := range r.PEFT.Cases {
		variant, k, name := WithLoRA, c.Adapters, fmt.Sprint(c.Adapters)
		if c.Case == "base" {
			variant, k, name = LoRAOff, 0, "none (base model)"
		}
		if d, ok := r.find(variant, r.PEFT.Batch, k, ctx); ok {
			fmt.Fprintf(b, "| %s | %.1f | %.0f | %.0f× |\n", name, c.TokensPerS, d.TokensPerS, d.TokensPerS/c.TokensPerS)
		}
	}
}

// find is the decode row of variant at batch b, k adapters (0 for the LoRA-off variants)
// and context ctx.
func (r *Report) find(variant string, b, k, ctx int) (Decode, bool) {
	i := slices.IndexFunc(r.Decode, func(d Decode) bool {
		return d.Variant == variant && d.Batch == b && d.Adapters == k && d.Context == ctx
	})
	if i < 0 {
		return Decode{}, false
	}
	return r.Decode[i], true
}
