package host

import (
	"slices"

	"github.com/lorafleet/lorafleet/gpukern"
)

// LoRAGroup is LORA_GROUP of lora.cu: the most rows of one adapter that a block computes.
const LoRAGroup = 4

// LoRA are the tables of the SGMV kernels (lora.cu) for one launch, with an entry per row and
// part, r·Parts + p: the part's A and B (device addresses), its rank (0: the row has no
// adapter for it) and scale; and one per row, Lead[r]: how many rows, from r on, row r's
// blocks compute (up to LoRAGroup rows of its segment; 0 where an earlier row's blocks
// compute it), so that rows sharing an adapter read it once. Their sizes depend on the rows
// and parts alone, never on how many adapters the batch mixes, so a step's metadata keeps its
// layout whichever adapters it serves (Graphs).
type LoRA struct {
	A, B                 []uint64
	Ranks, Lead          []int32
	Scales               []float32
	Rows, Parts, MaxRank int
}

// Build makes the tables of segs in t, reusing its arrays (a step builds hundreds), with at
// least minParts parts (the expand writes zeros for every part of the projection even where
// no row has an adapter); addr is a tensor's device address.
func (t *LoRA) Build(segs []gpukern.LoRASegment, minParts int, addr func(gpukern.Tensor) uint64) {
	t.Rows, t.Parts = LoRAShape(segs)
	t.MaxRank = 0
	if len(segs) > 0 {
		t.Parts = max(t.Parts, minParts)
	}
	n := t.Rows * t.Parts
	t.A, t.B, t.Ranks, t.Scales = zeroed(t.A, n), zeroed(t.B, n), zeroed(t.Ranks, n), zeroed(t.Scales, n)
	t.Lead = zeroed(t.Lead, t.Rows)
	for r := range t.Lead {
		t.Lead[r] = 1 // a row in no segment is computed alone
	}
	for _, s := range segs {
		for r := s.Start; r < s.End; r++ {
			t.Lead[r] = 0
			if (r-s.Start)%LoRAGroup == 0 {
				t.Lead[r] = int32(min(LoRAGroup, s.End-r))
			}
		}
		for p, part := range s.Parts {
			if part.A == nil {
				continue
			}
			a, b := addr(part.A), addr(part.B)
			for r := s.Start; r < s.End; r++ {
				i := r*t.Parts + p
				t.A[i], t.B[i], t.Ranks[i], t.Scales[i] = a, b, int32(part.Rank), part.Scale
			}
			t.MaxRank = max(t.MaxRank, part.Rank)
		}
	}
}

// LoRAShape is the rows segs cover and the most parts of any (that of every segment with an
// adapter).
func LoRAShape(segs []gpukern.LoRASegment) (rows, parts int) {
	if len(segs) > 0 {
		rows = segs[len(segs)-1].End
	}
	for _, s := range segs {
		parts = max(parts, len(s.Parts))
	}
	return rows, parts
}

// zeroed is s resized to n zeros, in place when it has the capacity.
func zeroed[T any](s []T, n int) []T {
	s = slices.Grow(s[:0], n)[:n]
	clear(s)
	return s
}
