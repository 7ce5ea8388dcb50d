package load

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestArrivalsMeanAndCV(t *testing.T) {
	for _, cv := range []float64{0.5, 1, 2, 4} {
		a, err := NewArrivals(20, cv, rand.NewPCG(1, uint64(cv*10)))
		if err != nil {
			t.Fatal(err)
		}
		const n = 200000
		var sum, sq float64
		for range n {
			x := a.Next()
			sum += x
			sq += x * x
		}
		mean := sum / n
		sd := math.Sqrt(sq/n - mean*mean)
		if math.Abs(mean-1.0/20)/(1.0/20) > 0.02 {
			t.Errorf("cv %v: mean gap %v, want 0.05", cv, mean)
		}
		if got := sd / mean; math.Abs(got-cv)/cv > 0.05 {
			t.Errorf("cv %v: measured cv %v", cv, got)
		}
	}
	if _, err := NewArrivals(0, 1, rand.NewPCG(1, 1)); err == nil {
		t.Error("rate 0 accepted")
	}
}

// Zipf frequencies follow 1/r^s: checked against the exact probabilities.
func TestZipfFrequencies(t *testing.T) {
	for _, s := range []float64{0.8, 1.0, 1.2} {
		const n, draws = 100, 500000
		p, err := ParsePopularity("zipf:"+strconv.FormatFloat(s, 'g', -1, 64), n, rand.NewPCG(2, 3))
		if err != nil {
			t.Fatal(err)
		}
		counts := make([]int, n)
		for range draws {
			counts[p.Next()]++
		}
		h := 0.0
		for r := 1; r <= n; r++ {
			h += 1 / math.Pow(float64(r), s)
		}
		for _, r := range []int{1, 2, 10, 50} {
			want := 1 / math.Pow(float64(r), s) / h
			got := float64(counts[r-1]) / draws
			if sd := math.Sqrt(want * (1 - want) / draws); math.Abs(got-want) > 5*sd {
				t.Errorf("zipf %v: rank %d frequency %.5f, want %.5f ± %.5f", s, r, got, want, 5*sd)
			}
		}
	}
}

// S-LoRA's power law: alpha = 1 is uniform; alpha = 2 gives index i probability (2i+1)/n².
func TestPowerFrequencies(t *testing.T) {
	const n, draws = 10, 400000
	for _, alpha := range []float64{1, 2} {
		p, err := ParsePopularity("power:"+strconv.FormatFloat(alpha, 'g', -1, 64), n, rand.NewPCG(4, 5))
		if err != nil {
			t.Fatal(err)
		}
		counts := make([]int, n)
		for range draws {
			counts[p.Next()]++
		}
		for i := range n {
			// P(i/n <= U^(1/a) < (i+1)/n) = ((i+1)/n)^a - (i/n)^a
			want := math.Pow(float64(i+1)/n, alpha) - math.Pow(float64(i)/n, alpha)
			got := float64(counts[i]) / draws
			if sd := math.Sqrt(want * (1 - want) / draws); math.Abs(got-want) > 5*sd {
				t.Errorf("power %v: index %d frequency %.4f, want %.4f", alpha, i, got, want)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"zipf", "zipf:0", "zipf:-1", "gauss:1", "power:x", "zipf:NaN"} {
		if _, err := ParsePopularity(s, 10, rand.NewPCG(1, 1)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	for _, s := range []string{"uniform:0,5", "uniform:5,4", "normal:1,2", "uniform:8"} {
		if _, err := ParseLengths(s, rand.NewPCG(1, 1)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	l, err := ParseLengths("uniform:8,12", rand.NewPCG(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 1000 {
		v := l.Next()
		if v < 8 || v > 12 {
			t.Fatalf("length %d outside [8, 12]", v)
		}
		seen[v] = true
	}
	if len(seen) != 5 {
		t.Errorf("lengths seen %v", seen)
	}
}
