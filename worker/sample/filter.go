package sample

import (
	"cmp"
	"math"
	"slices"
)

// cand is a token that survived min-p and top-k, with its unnormalized probability.
type cand struct {
	id int
	w  float64 // exp((logit - max) / temperature)
}

// kthLargest returns the k-th largest value (0 < k < len(values)) with a size-k min-heap:
// one comparison per value once the heap holds large values, O(n log k) at worst, no sort.
// NaNs are skipped.
func (sc *scratch) kthLargest(values []float32, k int) float32 {
	h := grow(sc.heap, k)
	sc.heap = h
	negInf := float32(math.Inf(-1))
	for i := range h {
		h[i] = negInf
	}
	for _, v := range values {
		if v > h[0] {
			h[0] = v
			siftDown(h)
		}
	}
	return h[0]
}

// siftDown restores the min-heap property after h[0] was replaced.
func siftDown(h []float32) {
	i := 0
	for {
		smallest := i
		if l := 2*i + 1; l < len(h) && h[l] < h[smallest] {
			smallest = l
		}
		if r := 2*i + 2; r < len(h) && h[r] < h[smallest] {
			smallest = r
		}
		if smallest == i {
			return
		}
		h[i], h[smallest] = h[smallest], h[i]
		i = smallest
	}
}

// collect gathers the tokens with value >= thr (never -inf or NaN) with their weights
// exp((v-maxV)·invT), and returns them with the weights' sum. Keeping every token tied
// with the threshold matches vLLM's top-k, which masks only logits below the k-th.
func (sc *scratch) collect(values []float32, thr, maxV float32, invT float64) ([]cand, float64) {
	c := grow(sc.cands, len(values))[:0] // full capacity up front: append never reallocates
	total := 0.0
	m := float64(maxV)
	for i, v := range values {
		if v >= thr && !math.IsInf(float64(v), -1) {
			w := expNeg((float64(v) - m) * invT)
			c = append(c, cand{id: i, w: w})
			total += w
		}
	}
	sc.cands = c
	return c, total
}

// pruneLight drops, keeping order, the candidates lighter than eps = (1-p)·total/len(c),
// which cannot be in the top-p set: together they weigh less than (1-p)·total, so the
// heavier ones alone reach p·total. On peaked distributions this leaves few candidates
// for keepTopMass to partition.
func pruneLight(c []cand, eps float64) []cand {
	k := 0
	for _, x := range c {
		c[k] = x // unconditional store, conditional advance: no unpredictable branch
		if x.w >= eps {
			k++
		}
	}
	return c[:k]
}

// keepTopMass reorders c so that c[:n] is the smallest set of the heaviest candidates whose
// weights sum to at least target, and returns n (at least 1). This is vLLM's top-p rule
// (a token is kept while the mass strictly above it is below top_p) computed by
// quickselect on mass instead of a full sort.
func keepTopMass(c []cand, target float64) int {
	lo, hi := 0, len(c)
	for rounds := 0; lo < hi; rounds++ {
		if rounds == 64 { // pathological pivots: finish by sorting what is left
			return lo + sortedPrefix(c[lo:hi], target)
		}
		pivot := medianOf3(c[lo].w, c[(lo+hi)/2].w, c[hi-1].w)
		gt, lt, sumGT := partition3(c[lo:hi], pivot)
		switch {
		case sumGT >= target: // the boundary is among the heavier ones
			hi = lo + gt
		case sumGT+float64(lt-gt)*pivot >= target: // it falls among the ties
			return max(1, lo+gt+tiesNeeded(target-sumGT, pivot, lt-gt))
		default: // all heavier and tied ones are kept; go on with the lighter ones
			target -= sumGT + float64(lt-gt)*pivot
			lo += lt
		}
	}
	return max(1, lo)
}

// partition3 orders c as [w > pivot | w == pivot | w < pivot] and returns the ends of the
// first two groups and the weight of the first.
func partition3(c []cand, pivot float64) (gt, lt int, sumGT float64) {
	i, j := 0, len(c)
	for i < j {
		switch w := c[i].w; {
		case w > pivot:
			sumGT += w
			c[gt], c[i] = c[i], c[gt]
			gt++
			i++
		case w < pivot:
			j--
			c[i], c[j] = c[j], c[i]
		default:
			i++
		}
	}
	return gt, j, sumGT
}

// tiesNeeded is how many of n candidates of weight w it takes to reach need (> 0).
func tiesNeeded(need, w float64, n int) int {
	k := int(math.Ceil(need / w))
	return min(max(k, 1), n)
}

func medianOf3(a, b, c float64) float64 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	return max(a, b)
}

// sortedPrefix sorts c by weight, heaviest first, and returns the prefix reaching target.
func sortedPrefix(c []cand, target float64) int {
	slices.SortFunc(c, func(a, b cand) int { return cmp.Compare(b.w, a.w) })
	acc := 0.0
	for i, x := range c {
		acc += x.w
		if acc >= target {
			return i + 1
		}
	}
	return len(c)
}

func weightSum(c []cand) float64 {
	total := 0.0
	for _, x := range c {
		total += x.w
	}
	return total
}

// pick draws from c in proportion to the weights; u is uniform in [0, 1).
func pick(c []cand, total, u float64) int {
	r := u * total
	acc := 0.0
	for _, x := range c {
		acc += x.w
		if acc > r {
			return x.id
		}
	}
	return c[len(c)-1].id // rounding left r at or above the accumulated total
}
