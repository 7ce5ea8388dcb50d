package sample

import (
	"math"
	"sync"
)

// scratch holds the vocabulary-sized buffers of one Sample call. They are pooled rather
// than kept per Sampler so that memory grows with concurrent Sample calls, not with the
// number of sequences (a 152k vocabulary needs about 4 MB of scratch).
type scratch struct {
	work    []float32 // the caller's logits after min_tokens, bias and penalties
	seen    []uint32  // per token id: >= base if it occurs this call; seen-base = output count
	base    uint32    // above every seen value of earlier calls, so seen needs no clearing
	touched []int     // distinct ids of prompt and output
	heap    []float32 // top-k selection
	cands   []cand    // tokens that survive min-p and top-k
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch   { return scratchPool.Get().(*scratch) }
func putScratch(sc *scratch) { scratchPool.Put(sc) }

// grow returns buf resized to n, reusing its memory when it is large enough.
func grow[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}

// penalized reports whether any of the three penalties is on.
func (s *Sampler) penalized() bool {
	rep := s.p.RepetitionPenalty
	return (rep > 0 && rep != 1) || s.p.FrequencyPenalty != 0 || s.p.PresencePenalty != 0
}

// needsEdits reports whether this step's logits differ from the caller's.
func (s *Sampler) needsEdits(generated int) bool {
	return len(s.biasIDs) > 0 || s.penalized() || s.minTokensActive(generated)
}

func (s *Sampler) minTokensActive(generated int) bool {
	return generated < s.p.MinTokens && len(s.masked) > 0
}

// edit copies logits into sc.work and applies, in vLLM's order, the min_tokens mask, the
// logit bias and the penalties. Ids outside the vocabulary are ignored.
func (s *Sampler) edit(sc *scratch, logits []float32, prompt, output []int) []float32 {
	sc.work = grow(sc.work, len(logits))
	work := sc.work
	copy(work, logits)
	if s.minTokensActive(len(output)) {
		negInf := float32(math.Inf(-1))
		for _, id := range s.masked {
			if id >= 0 && id < len(work) {
				work[id] = negInf
			}
		}
	}
	for i, id := range s.biasIDs {
		if id >= 0 && id < len(work) {
			work[id] += s.biasVals[i]
		}
	}
	if s.penalized() {
		s.applyPenalties(sc, work, prompt, output)
	}
	return work
}

// applyPenalties follows vLLM's apply_penalties, in float32 like its tensors: the
// repetition penalty scales every token of prompt ∪ output (positive logits times 1/rep,
// the others times rep), then frequency·count and presence are subtracted for output tokens.
func (s *Sampler) applyPenalties(sc *scratch, work []float32, prompt, output []int) {
	base := sc.count(len(work), prompt, output)
	rep := float32(1)
	if r := s.p.RepetitionPenalty; r > 0 && !math.IsInf(r, 1) {
		rep = float32(r)
	}
	invRep := 1 / rep
	freq, pres := float32(s.p.FrequencyPenalty), float32(s.p.PresencePenalty)
	for _, id := range sc.touched {
		v := work[id]
		if v > 0 {
			v *= invRep
		} else {
			v *= rep
		}
		if n := sc.seen[id] - base; n > 0 {
			v -= freq * float32(n)
			v -= pres
		}
		work[id] = v
	}
}

// count records the distinct ids of prompt and output in sc.touched and their output
// counts in sc.seen (relative to the returned base), in O(len(prompt)+len(output)).
func (sc *scratch) count(vocab int, prompt, output []int) (base uint32) {
	if len(sc.seen) < vocab {
		sc.seen, sc.base = make([]uint32, vocab), 1
	}
	if uint64(sc.base)+uint64(len(output))+1 > math.MaxUint32 {
		clear(sc.seen)
		sc.base = 1
	}
	base = sc.base
	sc.touched = sc.touched[:0]
	for _, id := range prompt {
		if id >= 0 && id < vocab && sc.seen[id] < base {
			sc.seen[id] = base
			sc.touched = append(sc.touched, id)
		}
	}
	for _, id := range output {
		if id < 0 || id >= vocab {
			continue
		}
		if sc.seen[id] < base {
			sc.seen[id] = base
			sc.touched = append(sc.touched, id)
		}
		sc.seen[id]++
	}
	// Values written are at most base+len(output); the next call starts above them.
	sc.base = base + uint32(len(output)) + 1
	return base
}
