// Package load is an S-LoRA-style open-loop load generator: Gamma-distributed arrivals, an
// adapter per request from a Zipf or power law, prompt and output lengths in tokens, and a
// streaming client that records time to first token, time per output token and end-to-end
// latency of every request.
package load

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
)

// Arrivals draws inter-arrival gaps in seconds: Gamma with mean 1/rate and coefficient of
// variation cv (shape 1/cv², so cv = 1 is a Poisson process).
type Arrivals struct{ g distuv.Gamma }

// NewArrivals returns arrivals at rate requests per second.
func NewArrivals(rate, cv float64, src rand.Source) (*Arrivals, error) {
	if !(rate > 0) || !(cv > 0) || math.IsInf(rate, 0) || math.IsInf(cv, 0) {
		return nil, fmt.Errorf("load: rate and cv must be positive, got %v and %v", rate, cv)
	}
	shape := 1 / (cv * cv)
	return &Arrivals{g: distuv.Gamma{Alpha: shape, Beta: shape * rate, Src: src}}, nil
}

// Next is the gap to the next arrival, in seconds.
func (a *Arrivals) Next() float64 { return a.g.Rand() }

// Popularity picks the adapter of each request among n.
type Popularity struct {
	cdf []float64 // zipf: cumulative probabilities by rank
	pow float64   // power: alpha (0 when zipf)
	n   int
	rng *rand.Rand
}

// ParsePopularity reads "zipf:S" (rank r has probability ∝ 1/r^S) or "power:A" (S-LoRA's
// numpy.random.power(A) scaled to n adapters: A = 1 is uniform, larger A favours high indexes).
func ParsePopularity(spec string, n int, src rand.Source) (*Popularity, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	v, err := strconv.ParseFloat(arg, 64)
	if !ok || err != nil || !(v > 0) || math.IsInf(v, 0) || n < 1 {
		return nil, fmt.Errorf("load: popularity %q: want zipf:S or power:A with a positive number, and at least one adapter", spec)
	}
	p := &Popularity{n: n, rng: rand.New(src)}
	switch kind {
	case "zipf":
		p.cdf = make([]float64, n)
		sum := 0.0
		for r := range n {
			sum += 1 / math.Pow(float64(r+1), v)
			p.cdf[r] = sum
		}
		for r := range p.cdf {
			p.cdf[r] /= sum
		}
	case "power":
		p.pow = v
	default:
		return nil, fmt.Errorf("load: popularity %q: unknown law %q (zipf or power)", spec, kind)
	}
	return p, nil
}

// Next is an adapter index in [0, n).
func (p *Popularity) Next() int {
	u := p.rng.Float64()
	if p.cdf == nil {
		// numpy.random.power(a) is U^(1/a) on [0, 1].
		return min(int(math.Pow(u, 1/p.pow)*float64(p.n)), p.n-1)
	}
	i, _ := slices.BinarySearch(p.cdf, u)
	return min(i, p.n-1)
}

// Lengths draws token counts.
type Lengths struct {
	lo, hi int
	rng    *rand.Rand
}

// ParseLengths reads "uniform:LO,HI" (inclusive).
func ParseLengths(spec string, src rand.Source) (*Lengths, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	a, b, ok := strings.Cut(arg, ",")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if kind != "uniform" || !ok || err1 != nil || err2 != nil || lo < 1 || hi < lo {
		return nil, fmt.Errorf("load: lengths %q: want uniform:LO,HI with 1 <= LO <= HI", spec)
	}
	return &Lengths{lo: lo, hi: hi, rng: rand.New(src)}, nil
}

// Next is a length in [lo, hi].
func (l *Lengths) Next() int { return l.lo + l.rng.IntN(l.hi-l.lo+1) }
