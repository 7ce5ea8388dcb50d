package host

import "github.com/lorafleet/lorafleet/gpukern"

// LoRA are the tables of the SGMV kernels (lora.cu) for one launch, with an entry per row and
// part, r·Parts + p: the part's A and B (device addresses), its rank (0: the row has no
// adapter for it) and scale. Their sizes depend on the rows and parts alone, never on how
// many adapters the batch mixes, so a step's metadata keeps its layout whichever adapters it
// serves (Graphs).
type LoRA struct {
	A, B                 []uint64
	Ranks                []int32
	Scales               []float32
	Rows, Parts, MaxRank int
}

// LoRATables makes the tables of segs, with at least minParts parts (the expand writes zeros
// for every part of the projection even where no row has an adapter); addr is a tensor's
// device address.
func LoRATables(segs []gpukern.LoRASegment, minParts int, addr func(gpukern.Tensor) uint64) LoRA {
	var t LoRA
	if len(segs) == 0 {
		return t
	}
	t.Rows, t.Parts = segs[len(segs)-1].End, minParts
	for _, s := range segs {
		t.Parts = max(t.Parts, len(s.Parts)) // that of every segment with an adapter
	}
	n := t.Rows * t.Parts
	t.A, t.B, t.Ranks, t.Scales = make([]uint64, n), make([]uint64, n), make([]int32, n), make([]float32, n)
	for _, s := range segs {
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
	return t
}
