package cpuref

import (
	"math"
	"slices"

	"github.com/lorafleet/lorafleet/gpukern"
)

// Sample implements gpukern.Backend, in float64, following gpukern.SampleParams step by step.
func (b *Backend) Sample(ids []int32, logits gpukern.Tensor, row0, vocab int, params []gpukern.SampleParams) {
	ls := data(logits)[row0*vocab:]
	for r, p := range params {
		ids[r] = int32(sampleRow(ls[r*vocab:(r+1)*vocab], p))
	}
}

// sampleRow draws row's token. A token is valid when its logit is above -inf (so not NaN).
func sampleRow(row []float32, p gpukern.SampleParams) int {
	best, top := 0, float32(math.Inf(-1))
	var valid []float32
	for i, v := range row {
		if v > float32(math.Inf(-1)) {
			valid = append(valid, v)
		}
		if v > top {
			best, top = i, v
		}
	}
	if !(p.Temperature > 0) || len(valid) == 0 {
		return best
	}
	floor := float32(math.Inf(-1)) // valid logits below it are dropped by top-k
	if k := int(p.TopK); k > 0 && k < len(valid) {
		slices.Sort(valid)
		floor = valid[len(valid)-k]
	}
	w := make([]float64, len(row)) // unnormalised probabilities, 0 = dropped
	total := 0.0
	for i, v := range row {
		if v > float32(math.Inf(-1)) && v >= floor {
			w[i] = math.Exp(float64(v-top) / float64(p.Temperature))
			total += w[i]
		}
	}
	if p.MinP > 0 {
		for i := range w {
			if w[i] < float64(p.MinP) { // the most likely token has w = 1
				total -= w[i]
				w[i] = 0
			}
		}
	}
	if p.TopP < 1 {
		kept := slices.DeleteFunc(slices.Clone(w), func(x float64) bool { return x == 0 })
		slices.Sort(kept)
		mass, cut := 0.0, 0.0
		for i := len(kept) - 1; i >= 0; i-- {
			mass += kept[i]
			if mass >= float64(p.TopP)*total {
				cut = kept[i]
				break
			}
		}
		for i := range w {
			if w[i] < cut {
				w[i] = 0
			}
		}
	}
	sum := 0.0
	for _, x := range w {
		sum += x
	}
	target, run, last := float64(p.U)*sum, 0.0, best
	for i, x := range w {
		if x == 0 {
			continue
		}
		run += x
		last = i
		if run > target {
			return i
		}
	}
	return last
}
