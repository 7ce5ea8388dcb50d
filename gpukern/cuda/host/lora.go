package host

import (
	"math/bits"
	"slices"

	"github.com/lorafleet/lorafleet/gpukern"
)

// LoRAGroup is LORA_GROUP of lora.cu: the most rows of one adapter that a block computes.
const LoRAGroup = 4

// LoRA are the tables of the SGMV kernels (lora.cu) for one launch, with an entry per row and
// part, r·Parts + p: the part's A and B (device addresses), its rank (0: the row has no
// adapter for it) and scale; and Groups, the NGroups groups of rows whose blocks compute them
// together, up to LoRAGroup rows of one segment, so that they read its adapter once: each
// group's first row and number of rows, in row order (a row in no segment is a group of its
// own), then zeros (groups of no rows) to 2·Rows entries. The kernels' grids have blocks for
// groups, not rows: at batch 128 with 32 adapters, three rows in four lead no group. Sizes
// depend on the rows and parts alone, never on how many adapters the batch mixes, so a step's
// metadata keeps its layout whichever adapters it serves (Graphs).
type LoRA struct {
	A, B                          []uint64
	Ranks, Groups                 []int32
	Scales                        []float32
	Rows, Parts, MaxRank, NGroups int
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
	t.Groups, t.NGroups = zeroed(t.Groups, 2*t.Rows), 0
	row := 0 // the first row not yet in a group
	for _, s := range segs {
		for ; row < s.Start; row++ {
			t.group(row, 1)
		}
		for ; row < s.End; row += LoRAGroup {
			t.group(row, min(LoRAGroup, s.End-row))
		}
		row = s.End
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

// group appends the group of rows rows from row on.
func (t *LoRA) group(row, rows int) {
	t.Groups[2*t.NGroups], t.Groups[2*t.NGroups+1] = int32(row), int32(rows)
	t.NGroups++
}

// GridGroups is the groups a launch's grid has blocks for: their count rounded up to a power of
// two, at most Rows. A grid sized by the count would change with every adapter mix, and each
// grid is a CUDA graph of its own; rounded, it changes in steps of two at most, and the blocks
// of groups past the count (less than half of them) do nothing.
func (t *LoRA) GridGroups() int {
	if t.NGroups <= 1 {
		return t.NGroups
	}
	return min(t.Rows, 1<<bits.Len(uint(t.NGroups-1)))
}

// Direct says that every group is one row, group g row g: the kernels then need not look the
// group up (batch 32 with 32 adapters).
func (t *LoRA) Direct() bool { return t.Rows > 0 && t.NGroups == t.Rows }

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
