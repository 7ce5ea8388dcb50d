package sample

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// refKept transcribes vLLM's pipeline over float64 with full sorts: temperature, min-p on
// the softmax, top-k (ties with the k-th kept), then top-p by ascending cumulative sum
// (mask where cumsum <= 1-p, never the largest). It returns the kept ids in order.
func refKept(logits []float32, p Params) []int {
	n := len(logits)
	v := make([]float64, n)
	for i, x := range logits {
		v[i] = float64(x) / p.Temperature
	}
	if p.MinP > 0 {
		probs := softmax(v)
		pmax := slices.Max(probs)
		for i := range v {
			if probs[i] < p.MinP*pmax {
				v[i] = math.Inf(-1)
			}
		}
	}
	if p.TopK > 0 && p.TopK < n {
		sorted := slices.Clone(v)
		sort.Sort(sort.Reverse(sort.Float64Slice(sorted)))
		kth := sorted[p.TopK-1]
		for i := range v {
			if v[i] < kth {
				v[i] = math.Inf(-1)
			}
		}
	}
	if p.TopP < 1 {
		probs := softmax(v)
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] < probs[idx[b]] })
		cum := 0.0
		for j, id := range idx {
			cum += probs[id]
			if cum <= 1-p.TopP && j != n-1 {
				v[id] = math.Inf(-1)
			}
		}
	}
	var kept []int
	for i, x := range v {
		if !math.IsInf(x, -1) {
			kept = append(kept, i)
		}
	}
	return kept
}

func softmax(v []float64) []float64 {
	m := slices.Max(v)
	out := make([]float64, len(v))
	sum := 0.0
	for i, x := range v {
		out[i] = math.Exp(x - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

func keptIDs(c []cand) []int {
	ids := make([]int, len(c))
	for i, x := range c {
		ids[i] = x.id
	}
	slices.Sort(ids)
	return ids
}

func TestCandidatesMatchSortedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	settings := []struct{ temp, topP, minP float64 }{
		{1, 0.9, 0}, {0.7, 0.5, 0}, {1.3, 0.99, 0.01}, {1, 1, 0.05},
		{0.5, 0.95, 0.001}, {2, 0.3, 0}, {1, 0.999, 0},
	}
	for trial := range 40 {
		vocab := 50 + rng.IntN(3000)
		logits := make([]float32, vocab)
		scale := 0.5 + 4*rng.Float64()
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * scale)
		}
		set := settings[trial%len(settings)]
		p := DefaultParams()
		p.Temperature, p.TopP, p.MinP = set.temp, set.topP, set.minP
		p.TopK = []int{0, 1, 5, 40, vocab - 1, vocab + 10}[trial%6]
		s := New(p, nil)
		c, total, _ := s.candidates(new(scratch), logits)
		want := refKept(logits, p)
		if got := keptIDs(c); !slices.Equal(got, want) {
			t.Fatalf("trial %d (vocab %d, %+v, top_k %d): kept %d tokens, reference %d\n got %v\nwant %v",
				trial, vocab, set, p.TopK, len(got), len(want), got, want)
		}
		if d := math.Abs(total - weightSum(c)); d > 1e-9*total {
			t.Fatalf("trial %d: total %v, sum of weights %v", trial, total, weightSum(c))
		}
	}
}

func TestKeepTopMassWithTies(t *testing.T) {
	// Weights 4, then eight 1s, then 0.5s: target 6.5 needs 4 + three 1s (7 >= 6.5, 6 < 6.5).
	var c []cand
	for i, w := range []float64{1, 0.5, 1, 1, 4, 1, 0.5, 1, 1, 1, 1, 0.5} {
		c = append(c, cand{id: i, w: w})
	}
	n := keepTopMass(c, 6.5)
	if n != 4 {
		t.Fatalf("kept %d, want 4", n)
	}
	got := make([]float64, n)
	for i := range n {
		got[i] = c[i].w
	}
	slices.Sort(got)
	if want := []float64{1, 1, 1, 4}; !slices.Equal(got, want) {
		t.Errorf("kept weights %v, want %v", got, want)
	}
	if n := keepTopMass(c, 1e9); n != len(c) {
		t.Errorf("unreachable target kept %d, want all %d", n, len(c))
	}
	if n := keepTopMass(c, 0); n != 1 {
		t.Errorf("target 0 kept %d, want 1", n)
	}
	// Reaching the target exactly is enough: {4} has mass 4 >= 4, no second token.
	if n := keepTopMass([]cand{{0, 2}, {1, 4}, {2, 1}, {3, 2}}, 4); n != 1 {
		t.Errorf("exact target: kept %d, want 1", n)
	}
	allEqual := []cand{{0, 2}, {1, 2}, {2, 2}, {3, 2}}
	if n := keepTopMass(allEqual, 4.5); n != 3 {
		t.Errorf("equal weights, target 4.5: kept %d, want 3", n)
	}
}

func TestSortedPrefix(t *testing.T) {
	c := []cand{{0, 1}, {1, 3}, {2, 2}, {3, 0.5}}
	if n := sortedPrefix(c, 4.5); n != 2 || c[0].id != 1 || c[1].id != 2 {
		t.Errorf("got n=%d order %v, want 2 and ids 1, 2 first", n, c)
	}
	if n := sortedPrefix(c, 100); n != 4 {
		t.Errorf("unreachable target: got %d, want 4", n)
	}
}

func TestKthLargest(t *testing.T) {
	nan := float32(math.NaN())
	values := []float32{3, nan, -1, 7, 7, 2, negInf, 5}
	sc := new(scratch)
	// Sorted, NaN left out: 7 7 5 3 2 -1 -inf
	for k, want := range map[int]float32{1: 7, 2: 7, 3: 5, 4: 3, 6: -1, 7: negInf} {
		if got := sc.kthLargest(values, k); got != want {
			t.Errorf("k=%d: got %v, want %v", k, got, want)
		}
	}
}

func TestExpNeg(t *testing.T) {
	for x := 0.0; x > -700; x -= 0.01337 {
		want := math.Exp(x)
		if got := expNeg(x); math.Abs(got-want) > 2e-8*want {
			t.Fatalf("expNeg(%v) = %v, want %v", x, got, want)
		}
	}
	for _, x := range []float64{-709, -1e10, math.Inf(-1), math.NaN()} {
		if got := expNeg(x); got != 0 {
			t.Errorf("expNeg(%v) = %v, want 0", x, got)
		}
	}
}

func TestPickEdges(t *testing.T) {
	c := []cand{{4, 1}, {9, 3}}
	for u, want := range map[float64]int{0: 4, 0.24: 4, 0.26: 9, 0.999999: 9} {
		if got := pick(c, 4, u); got != want {
			t.Errorf("pick(u=%v) = %d, want %d", u, got, want)
		}
	}
	if got := pick(c, 4.5, 0.99); got != 9 { // total above the real sum: rounding fallback
		t.Errorf("pick past the sum = %d, want last id 9", got)
	}
}
