package sample

import "math"

// expNeg is e^x for x <= 0, about 3x faster than math.Exp with a relative error below
// 1e-8 (far under float32's 6e-8): every softmax here runs over the whole vocabulary.
// x below -708 (including -inf) and NaN give 0.
func expNeg(x float64) float64 {
	if !(x >= -708) {
		return 0
	}
	const (
		log2e = 1.4426950408889634
		ln2   = 0.6931471805599453
	)
	n := math.Floor(x*log2e + 0.5)
	r := x - n*ln2 // |r| <= ln2/2, where a degree-7 Taylor polynomial is accurate to 1e-8
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float64frombits(uint64(int64(n)+1023)<<52) // p · 2^n, n in [-1022, 0]
}

// logSumExp returns log Σ exp(v) in float64; NaNs are skipped.
func logSumExp(values []float32) float64 {
	maxV, _ := maxArg(values)
	m := float64(maxV)
	if math.IsInf(m, 0) {
		return m
	}
	sum := 0.0
	for _, v := range values {
		sum += expNeg(float64(v) - m)
	}
	return m + math.Log(sum)
}

// topN appends to dst the n largest values (as Logprob, still raw logits) with their ids,
// largest first, ties in id order. It keeps dst sorted while scanning, so a value that
// does not beat the current n-th costs one comparison: O(len(values)) for small n.
func topN(dst []TokenLogprob, values []float32, n int) []TokenLogprob {
	n = min(n, len(values))
	for i, v := range values {
		if len(dst) == n && !(v > dst[n-1].Logprob) {
			continue
		}
		if v != v { // NaN
			continue
		}
		if len(dst) < n {
			dst = append(dst, TokenLogprob{})
		}
		// Shift smaller entries down; equal ones stay ahead (lower id first).
		j := len(dst) - 1
		for j > 0 && dst[j-1].Logprob < v {
			dst[j] = dst[j-1]
			j--
		}
		dst[j] = TokenLogprob{Token: i, Logprob: v}
	}
	return dst
}
