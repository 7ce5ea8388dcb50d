package engine

import (
	"fmt"
	"strings"
)

// Target is one of the GPU performance issue's "done when" bounds, judged on a report of a
// Llama-2-7B-shaped run.
type Target struct {
	Name     string `json:"name"`
	Bound    string `json:"bound"`
	Measured string `json:"measured"` // "not measured" when the report lacks it
	Met      bool   `json:"met"`
}

// The reference configurations.
const (
	targetContext       = 128
	targetFloorRatio    = 1.25  // step time against the floor at batch 32, 32 adapters
	targetLoRACost      = 1.3   // extra step time against the adapters' bytes at the floor's bandwidth
	targetLoRACostOne   = 0.05  // extra step time with one adapter, of the step without
	targetPEFTFactor    = 200   // × PEFT's tok/s with 32 adapters
	targetPEFTBase      = 5     // × PEFT's base-model generate
	targetBatch128TokS  = 12000 // decode tok/s at batch 128 with 32 adapters
	targetUploadMS      = 5     // an adapter's transfer to its slot
	targetLoadingFactor = 1.5   // slowest step while adapters load, of the median without
	// targetBandwidth is the floor's bandwidth in the bounds, set on an H100 whose
	// device-to-device copy measured h100CopyBandwidth (../shared/docs/gpu-path.md).
	targetBandwidth   = 3.0e12
	h100CopyBandwidth = 3.02e12
	// targetCardBytes is the H100 80 GB's memory as the driver reports it (at f384bcb): the
	// card the memory target is for, whatever card the run is on.
	targetCardBytes = 85017493504
)

// judgeBandwidth is the bandwidth the bounds are judged at: the issue's, raised in proportion
// where the card copies faster than the H100 did (an H200), so that no bound is easier to
// meet on a faster card. A report without the measurement (older ones, CPU backends) is
// judged at the issue's.
func (r *Report) judgeBandwidth() float64 {
	return targetBandwidth * max(1, r.CopyBandwidth/h100CopyBandwidth)
}

// Judge judges the report against the bounds. It is empty unless the run was on
// Llama-2-7B's shape, the only one the bounds are for.
func (r *Report) Judge() []Target {
	if r.Model != shapeOf(Llama2()) {
		return nil
	}
	ts := []Target{r.floorTarget()}
	ts = append(ts, r.loraCostTargets()...)
	ts = append(ts, r.peftTargets()...)
	ts = append(ts, r.batch128Target())
	ts = append(ts, r.loadingTargets()...)
	return append(ts, r.memoryTarget())
}

func notMeasured(name, bound string) Target {
	return Target{Name: name, Bound: bound, Measured: "not measured"}
}

func (r *Report) floorTarget() Target {
	name := fmt.Sprintf("batch %d, %d adapters, context %d: step time", reference, reference, targetContext)
	d, ok := r.find(WithLoRA, reference, reference, targetContext)
	if !ok {
		return notMeasured(name, fmt.Sprintf("≤ %.2f × the floor", targetFloorRatio))
	}
	bw := r.judgeBandwidth()
	floor := float64(d.Bytes) / bw * 1e3
	return Target{Name: name, Bound: fmt.Sprintf("≤ %.2f × the floor at %.2f TB/s (%.2f ms) = %.2f ms", targetFloorRatio, bw/1e12, floor, targetFloorRatio*floor),
		Measured: fmt.Sprintf("%.2f ms (%.2f × that floor), %.0f tok/s", d.StepMS, d.StepMS/floor, d.TokensPerS), Met: d.StepMS <= targetFloorRatio*floor}
}

// loraCostTargets: the extra step time with k adapters against LoRA off, at the reference
// batch and context.
func (r *Report) loraCostTargets() []Target {
	var ts []Target
	off, okOff := r.find(LoRAOff, reference, 0, targetContext)
	for _, k := range []int{1, 8, reference} {
		name := fmt.Sprintf("LoRA cost with %d adapter(s) (batch %d, context %d)", k, reference, targetContext)
		d, ok := r.find(WithLoRA, reference, k, targetContext)
		bound := fmt.Sprintf("≤ %.0f%% of the step without", 100*targetLoRACostOne)
		if k > 1 {
			bound = fmt.Sprintf("≤ %.1f × the adapters' bytes at %.2f TB/s", targetLoRACost, r.judgeBandwidth()/1e12)
		}
		if !ok || !okOff {
			ts = append(ts, notMeasured(name, bound))
			continue
		}
		cost := d.StepMS - off.StepMS
		t := Target{Name: name, Measured: fmt.Sprintf("%+.3f ms (%+.1f%%)", cost, 100*cost/off.StepMS)}
		if k == 1 {
			t.Bound, t.Met = bound, cost <= targetLoRACostOne*off.StepMS
		} else {
			limit := targetLoRACost * float64(d.Bytes-off.Bytes) / r.judgeBandwidth() * 1e3
			t.Bound, t.Met = fmt.Sprintf("%s = %.3f ms", bound, limit), cost <= limit
		}
		ts = append(ts, t)
	}
	return ts
}

// peftTargets compare decode tok/s at PEFT's batch with its generate, as peftTable does.
func (r *Report) peftTargets() []Target {
	withK := fmt.Sprintf("against PEFT with %d adapters", reference)
	base := "against PEFT's base-model generate"
	boundK, boundBase := fmt.Sprintf("≥ %d× its tok/s", targetPEFTFactor), fmt.Sprintf("≥ %d× its tok/s", targetPEFTBase)
	if r.PEFT == nil {
		return []Target{notMeasured(withK, boundK), notMeasured(base, boundBase)}
	}
	judge := func(name, bound string, factor float64, peftCase string, k int, variant string) Target {
		for _, c := range r.PEFT.Cases {
			if c.Case != peftCase || (peftCase == "peft" && c.Adapters != k) {
				continue
			}
			if d, ok := r.find(variant, r.PEFT.Batch, k, targetContext); ok && c.TokensPerS > 0 {
				x := d.TokensPerS / c.TokensPerS
				return Target{Name: name, Bound: bound, Measured: fmt.Sprintf("%.0f vs %.1f tok/s: %.0f×", d.TokensPerS, c.TokensPerS, x), Met: x >= factor}
			}
		}
		return notMeasured(name, bound)
	}
	return []Target{
		judge(withK, boundK, targetPEFTFactor, "peft", reference, WithLoRA),
		judge(base, boundBase, targetPEFTBase, "base", 0, LoRAOff),
	}
}

func (r *Report) batch128Target() Target {
	name := fmt.Sprintf("batch 128, %d adapters, context %d: decode tok/s", reference, targetContext)
	// The rate is the H100's: a faster card's memory must raise it as much.
	want := targetBatch128TokS * r.judgeBandwidth() / targetBandwidth
	bound := fmt.Sprintf("≥ %.0f", want)
	if want > targetBatch128TokS {
		bound += fmt.Sprintf(" (%d × %.2f / %.2f TB/s)", targetBatch128TokS, r.judgeBandwidth()/1e12, targetBandwidth/1e12)
	}
	d, ok := r.find(WithLoRA, 128, reference, targetContext)
	if !ok {
		return notMeasured(name, bound)
	}
	return Target{Name: name, Bound: bound, Measured: fmt.Sprintf("%.0f (%.2f ms per step)", d.TokensPerS, d.StepMS), Met: d.TokensPerS >= want}
}

func (r *Report) loadingTargets() []Target {
	upload := "an adapter's transfer from page-locked memory to its slot"
	steps := "slowest decode step while adapters load"
	boundUp, boundSteps := fmt.Sprintf("≤ %d ms, the slowest of them", targetUploadMS), fmt.Sprintf("≤ %.1f × the median without loads", targetLoadingFactor)
	l := r.Loading
	if l == nil {
		return []Target{notMeasured(upload, boundUp), notMeasured(steps, boundSteps)}
	}
	return []Target{
		{Name: fmt.Sprintf("%s (%.0f MB)", upload, float64(l.AdapterBytes)/1e6), Bound: boundUp,
			Measured: fmt.Sprintf("%.2f ms median, %.2f ms slowest", l.UploadMS, l.UploadMaxMS), Met: l.UploadMaxMS <= targetUploadMS},
		{Name: steps, Bound: boundSteps, Measured: fmt.Sprintf("%.2f ms against %.2f ms: %.2f×", l.StepMaxMS, l.QuietStepMS, l.StepMaxMS/l.QuietStepMS),
			Met: l.StepMaxMS <= targetLoadingFactor*l.QuietStepMS},
	}
}

func (r *Report) memoryTarget() Target {
	name := fmt.Sprintf("device memory: the model, %d adapters, KV for %d × %d tokens (adapters in the host tier take none)", targetAdapters, targetSeqs, targetTokens)
	bound := fmt.Sprintf("fits in an H100 80 GB's %.1f GiB", float64(targetCardBytes)/(1<<30))
	m := r.Memory
	if m == nil {
		return notMeasured(name, bound)
	}
	measured := fmt.Sprintf("%.1f of %.1f GiB in use with %d adapter slots and KV for %d tokens", float64(m.UsedBytes)/(1<<30), float64(m.TotalBytes)/(1<<30), m.Adapters, m.KVTokens)
	if !m.CoversTarget {
		measured += " (less than the target's configuration)"
	}
	return Target{Name: name, Bound: bound, Measured: measured, Met: m.CoversTarget && m.UsedBytes <= min(m.TotalBytes, targetCardBytes)}
}

// targetsTable writes the targets as a markdown table, if there are any.
func (r *Report) targetsTable(b *strings.Builder) {
	ts := r.Judge()
	if len(ts) == 0 {
		return
	}
	met := 0
	for _, t := range ts {
		if t.Met {
			met++
		}
	}
	fmt.Fprintf(b, "\nThe issue's targets: %d of %d met.\n\n", met, len(ts))
	if bw := r.judgeBandwidth(); bw > targetBandwidth {
		fmt.Fprintf(b, "This card copies at %.2f TB/s, faster than the H100 (%.2f TB/s) the issue's bounds were set on: "+
			"they are judged at %.2f TB/s in place of %.2f, and the batch-128 rate raised as much.\n\n",
			r.CopyBandwidth/1e12, h100CopyBandwidth/1e12, bw/1e12, targetBandwidth/1e12)
	}
	b.WriteString("| target | bound | measured | met |\n|---|---|---|---|\n")
	for _, t := range ts {
		mark := "no"
		if t.Met {
			mark = "yes"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", t.Name, t.Bound, t.Measured, mark)
	}
}
