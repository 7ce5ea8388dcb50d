package sample

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cpuref"
)

func seed(v int64) *int64 { return &v }

func greedyParams() Params {
	p := DefaultParams()
	p.Temperature = 0
	return p
}

func TestGreedy(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name   string
		logits []float32
		want   int
	}{
		{"max", []float32{0.1, 0.7, -3, 0.2}, 1},
		{"ties go to the lowest id", []float32{1, 3, 3, 2, 3}, 1},
		{"tie at id 0", []float32{5, 5}, 0},
		{"NaN is never chosen", []float32{nan, 1, 2, nan}, 2},
		{"all masked", []float32{negInf, negInf}, 0},
		{"single token", []float32{-7}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(greedyParams(), nil).Sample(tt.logits, nil, nil).Token; got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
	if got := New(greedyParams(), nil).Sample(nil, nil, nil).Token; got != -1 {
		t.Errorf("empty logits: got %d, want -1", got)
	}
}

func TestGreedyIgnoresFiltersAndSeed(t *testing.T) {
	p := greedyParams()
	p.TopK, p.TopP, p.MinP, p.Seed = 2, 0.1, 0.9, seed(3)
	p.LogitBias = map[int]float64{0: 2.5}
	logits := []float32{1, 3, 2}
	for range 20 { // 1+2.5 beats 3 every time: no randomness at temperature 0
		if got := New(p, nil).Sample(logits, nil, nil).Token; got != 0 {
			t.Fatalf("got %d, want 0", got)
		}
	}
}

// weights is a 6-token distribution; logitsOf gives logits whose softmax is exactly it.
var weights = []float64{0.4, 0.25, 0.15, 0.1, 0.06, 0.04}

func logitsOf(w []float64) []float32 {
	out := make([]float32, len(w))
	for i, x := range w {
		out[i] = float32(math.Log(x))
	}
	return out
}

// renorm keeps the given ids of w and normalizes them; the rest get 0.
func renorm(w []float64, keep ...int) []float64 {
	out := make([]float64, len(w))
	sum := 0.0
	for _, id := range keep {
		sum += w[id]
	}
	for _, id := range keep {
		out[id] = w[id] / sum
	}
	return out
}

// checkDistribution samples n tokens and checks that tokens with probability 0 never
// appear and that the counts pass a chi-square test with a generous bound.
func checkDistribution(t *testing.T, s *Sampler, logits []float32, want []float64) {
	t.Helper()
	checkDraws(t, func() int { return s.Sample(logits, nil, nil).Token }, want)
}

// checkDeviceDistribution is checkDistribution for sampling on the backend
// (gpukern/cpuref, the CUDA kernel's reference) with the sampler's DeviceParams.
func checkDeviceDistribution(t *testing.T, s *Sampler, logits []float32, want []float64) {
	t.Helper()
	be := cpuref.New(1)
	lt := be.Weight(logits)
	ids := make([]int32, 1)
	checkDraws(t, func() int {
		p, ok := s.DeviceParams(0)
		if !ok {
			t.Fatal("DeviceParams refused plain sampling settings")
		}
		be.Sample(ids, lt, 0, len(logits), []gpukern.SampleParams{p})
		return int(ids[0])
	}, want)
}

func checkDraws(t *testing.T, draw func() int, want []float64) {
	t.Helper()
	const n = 20000
	counts := make([]int, len(want))
	for range n {
		counts[draw()]++
	}
	chi2, dof := 0.0, -1
	for id, q := range want {
		if q == 0 {
			if counts[id] != 0 {
				t.Errorf("token %d sampled %d times, want never (counts %v)", id, counts[id], counts)
			}
			continue
		}
		e := q * n
		chi2 += (float64(counts[id]) - e) * (float64(counts[id]) - e) / e
		dof++
	}
	// For <= 5 degrees of freedom, chi2 > 25 has probability below 2e-4.
	if chi2 > 25 {
		t.Errorf("counts %v do not fit %v: chi2 = %.1f with %d dof", counts, want, chi2, dof)
	}
}

func TestFiltersKeepTheRightSet(t *testing.T) {
	sqrtW := make([]float64, len(weights))
	for i, x := range weights {
		sqrtW[i] = math.Sqrt(x) // temperature 2 takes the square root of the probabilities
	}
	tests := []struct {
		name string
		set  func(*Params)
		want []float64
	}{
		{"plain", func(p *Params) {}, weights},
		{"top_k 3", func(p *Params) { p.TopK = 3 }, renorm(weights, 0, 1, 2)},
		{"top_k -1 is off", func(p *Params) { p.TopK = -1 }, weights},
		// cumulative 0.4 < 0.6, then 0.65 >= 0.6: two tokens
		{"top_p 0.6", func(p *Params) { p.TopP = 0.6 }, renorm(weights, 0, 1)},
		// 0.4, 0.65, 0.80 >= 0.7: three tokens
		{"top_p 0.7", func(p *Params) { p.TopP = 0.7 }, renorm(weights, 0, 1, 2)},
		{"top_p tiny keeps one", func(p *Params) { p.TopP = 1e-9 }, renorm(weights, 0)},
		// threshold 0.3·0.4 = 0.12: 0.15 stays, 0.1 goes
		{"min_p 0.3", func(p *Params) { p.MinP = 0.3 }, renorm(weights, 0, 1, 2)},
		{"min_p 1 keeps the top", func(p *Params) { p.MinP = 1 }, renorm(weights, 0)},
		// min-p first (0.4,0.25,0.15 → 0.5,0.3125,0.1875), then top-p on that: 0.5, 0.8125.
		// Top-p before min-p would keep three.
		{"min_p then top_p", func(p *Params) { p.MinP, p.TopP = 0.3, 0.75 }, renorm(weights, 0, 1)},
		{"top_k then top_p", func(p *Params) { p.TopK, p.TopP = 4, 0.8 }, renorm(weights, 0, 1, 2)},
		{"temperature 2 top_k 4", func(p *Params) { p.Temperature, p.TopK = 2, 4 }, renorm(sqrtW, 0, 1, 2, 3)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			p.Seed = seed(int64(100 + i))
			tt.set(&p)
			checkDistribution(t, New(p, nil), logitsOf(weights), tt.want)
			checkDeviceDistribution(t, New(p, nil), logitsOf(weights), tt.want)
		})
	}
}

// Steps that need the logits on the host are not sampled on the backend.
func TestDeviceParamsRefuseHostOnlySettings(t *testing.T) {
	for name, set := range map[string]func(*Params){
		"logprobs":   func(p *Params) { p.Logprobs = 0 },
		"penalty":    func(p *Params) { p.PresencePenalty = 0.5 },
		"logit bias": func(p *Params) { p.LogitBias = map[int]float64{1: 5} },
		"min tokens": func(p *Params) { p.MinTokens = 3 },
	} {
		p := DefaultParams()
		set(&p)
		if _, ok := New(p, []int{2}).DeviceParams(0); ok {
			t.Errorf("%s: sampled on the backend", name)
		}
	}
	p := DefaultParams()
	p.MinTokens = 3
	if _, ok := New(p, []int{2}).DeviceParams(3); !ok {
		t.Error("min_tokens reached: still refused")
	}
	p = DefaultParams()
	p.Temperature, p.TopK, p.TopP, p.MinP = 0.5, 7, 0.9, 0.05
	got, ok := New(p, nil).DeviceParams(0)
	if !ok || got.Temperature != 0.5 || got.TopK != 7 || got.TopP != 0.9 || got.MinP != 0.05 || got.U < 0 || got.U >= 1 {
		t.Errorf("DeviceParams = %+v, %v", got, ok)
	}
}

func TestTopKKeepsTies(t *testing.T) {
	// vLLM's top-k masks only logits below the k-th largest, so ties with it stay.
	p := DefaultParams()
	p.TopK, p.Seed = 2, seed(7)
	logits := []float32{0, 1, 1, 1, -1}
	w := []float64{0, 1, 1, 1, 0}
	checkDistribution(t, New(p, nil), logits, renorm(w, 1, 2, 3))
}

func TestPenaltiesShapeTheDistribution(t *testing.T) {
	// Frequency penalty ln(2) on a token seen once halves its weight; with equal logits
	// the distribution over {0, 1, 2} becomes 1/2.5 · {1, 0.5, 1}.
	p := DefaultParams()
	p.FrequencyPenalty, p.Seed = math.Ln2, seed(11)
	s := New(p, nil)
	const n = 20000
	counts := make([]int, 3)
	for range n {
		counts[s.Sample([]float32{0, 0, 0}, nil, []int{1}).Token]++
	}
	want := []float64{0.4, 0.2, 0.4}
	for id, q := range want {
		if got := float64(counts[id]) / n; math.Abs(got-q) > 0.02 {
			t.Errorf("token %d frequency %.3f, want %.3f", id, got, q)
		}
	}
}

func TestSeedDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	steps := make([][]float32, 60)
	for i := range steps {
		steps[i] = make([]float32, 500)
		for j := range steps[i] {
			steps[i][j] = float32(rng.NormFloat64())
		}
	}
	run := func(sd *int64) []int {
		p := DefaultParams()
		p.Seed, p.TopP, p.TopK = sd, 0.95, 100
		s := New(p, nil)
		var out []int
		for _, l := range steps {
			out = append(out, s.Sample(l, nil, out).Token)
		}
		return out
	}
	a, b := run(seed(42)), run(seed(42))
	if !slices.Equal(a, b) {
		t.Errorf("same seed gave different tokens:\n%v\n%v", a, b)
	}
	if c := run(seed(43)); slices.Equal(a, c) {
		t.Errorf("seeds 42 and 43 gave the same %d tokens", len(a))
	}
	if x, y := run(nil), run(nil); slices.Equal(x, y) {
		t.Errorf("two unseeded samplers gave the same %d tokens", len(x))
	}
	if x, y := run(seed(-1)), run(seed(-1)); slices.Equal(x, y) {
		t.Errorf("seed -1 (unseeded in vLLM) gave the same tokens twice")
	}
}

// refLogSoftmax is log-softmax in float64 with math.Exp, independent of the package.
func refLogSoftmax(logits []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	sum := 0.0
	for _, v := range logits {
		sum += math.Exp(float64(v) - m)
	}
	out := make([]float64, len(logits))
	for i, v := range logits {
		out[i] = float64(v) - m - math.Log(sum)
	}
	return out
}

func TestLogprobsAreRawLogSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, 300)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 4)
	}
	logits[3], logits[17] = 20, 20 // a tie at the top: lower id first
	ref := refLogSoftmax(logits)
	order := make([]int, len(logits))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ref[order[a]] > ref[order[b]] })

	// Penalties, bias and temperature change what is sampled but not the logprobs.
	p := DefaultParams()
	p.Logprobs, p.Temperature, p.Seed = 5, 0.7, seed(9)
	p.RepetitionPenalty, p.LogitBias = 1.3, map[int]float64{3: -50, 100: 30}
	s := New(p, nil)
	for range 5 {
		r := s.Sample(logits, []int{3, 17}, nil)
		if d := math.Abs(float64(r.Logprob) - ref[r.Token]); d > 1e-5 {
			t.Errorf("chosen %d: logprob %v, want %v", r.Token, r.Logprob, ref[r.Token])
		}
		if len(r.Top) != 5 {
			t.Fatalf("got %d top logprobs, want 5", len(r.Top))
		}
		for i, tl := range r.Top {
			if tl.Token != order[i] || math.Abs(float64(tl.Logprob)-ref[order[i]]) > 1e-5 {
				t.Errorf("top[%d] = %+v, want {%d %v}", i, tl, order[i], ref[order[i]])
			}
		}
	}
	if r := s.Sample(logits, nil, nil); r.Top[0].Token != 3 || r.Top[1].Token != 17 {
		t.Errorf("tied top tokens in order %d, %d; want 3, 17", r.Top[0].Token, r.Top[1].Token)
	}
}

func TestLogprobsOptions(t *testing.T) {
	logits := []float32{0, float32(math.Log(3))} // probabilities 1/4, 3/4
	p := greedyParams()
	if r := New(p, nil).Sample(logits, nil, nil); r.Logprob != 0 || r.Top != nil {
		t.Errorf("NoLogprobs: got %+v, want none", r)
	}
	p.Logprobs = 0
	r := New(p, nil).Sample(logits, nil, nil)
	if want := math.Log(0.75); r.Token != 1 || math.Abs(float64(r.Logprob)-want) > 1e-6 || r.Top != nil {
		t.Errorf("Logprobs 0: got %+v, want token 1 logprob %v and no top", r, want)
	}
	p.Logprobs = 20 // more than the vocabulary
	if r := New(p, nil).Sample(logits, nil, nil); len(r.Top) != 2 || r.Top[1].Token != 0 {
		t.Errorf("Logprobs 20 over 2 tokens: got %+v", r.Top)
	}
}

func TestIsStopToken(t *testing.T) {
	p := DefaultParams()
	p.StopTokenIDs = []int{7}
	s := New(p, []int{2, 3})
	for tok, want := range map[int]bool{2: true, 3: true, 7: true, 4: false} {
		if got := s.IsStopToken(tok); got != want {
			t.Errorf("IsStopToken(%d) = %v, want %v", tok, got, want)
		}
	}
	p.IgnoreEOS = true
	s = New(p, []int{2, 3})
	for tok, want := range map[int]bool{2: false, 3: false, 7: true} {
		if got := s.IsStopToken(tok); got != want {
			t.Errorf("IgnoreEOS: IsStopToken(%d) = %v, want %v", tok, got, want)
		}
	}
}

func TestTinyTemperatureActsAsOneHundredth(t *testing.T) {
	// As in vLLM, 0 < T < 0.01 becomes 0.01: logits 0 and 0.05 then differ by 5, so
	// token 0 keeps probability 1/(1+e^5) ≈ 0.0067 instead of e^-50 at T = 0.001.
	p := DefaultParams()
	p.Temperature, p.Seed = 0.001, seed(5)
	q := 1 / (1 + math.Exp(5))
	checkDistribution(t, New(p, nil), []float32{0, 0.05}, []float64{q, 1 - q})
}
