package host

// ShrinkRows is the most rows of a LoRA A that one shrink unit of gemm_lora (gemm.cu) covers:
// a tile of 16 rows of an mma.
const ShrinkRows = 16

// MaxShrinkSplits is the most chunks gemm_lora cuts a pair of shrink units' k into.
const MaxShrinkSplits = 8

// ShrinkSplits is how many chunks gemm_lora cuts a shrink's k of steps steps (of GEMM_K) into:
// the most, a power of two up to MaxShrinkSplits, that divides them. Each is a block, an eighth
// of a GEMM block's bytes at most: short enough to run beside the GEMM's blocks rather than
// after them where those are about as many as the GPU's SMs.
func ShrinkSplits(steps int) int {
	s := MaxShrinkSplits
	for s > 1 && steps%s != 0 {
		s /= 2
	}
	return s
}

// ShrinkUnits are the tables of gemm_lora's shrink blocks for one launch: unit u covers up to
// ShrinkRows rows of one part's A of one adapter (A[u], the address of its first row) for the
// rows of x that use it, Meta[4u:4u+4] = {its rows of A, the first and one past the last row
// of x, its first column in a row of v}. Units 2i and 2i + 1 are computed together (pair i,
// whose k gemm_lora cuts into ShrinkSplits blocks): they have as many rows of A and addresses
// less than 2³¹ 16-byte units apart. Pairs counts them; the last entry of Meta, past the
// pairs', is how many of the first are in use (their first unit has rows; a second that is
// empty is not stored): gemm_lora starts the blocks of the pairs not in use after the GEMM's
// blocks, not before.
type ShrinkUnits struct {
	A     []uint64
	Meta  []int32
	Pairs int
}

// MaxShrinkPairs is the pairs of shrink units for rows × parts of rank up to vStride: every
// row its own adapter, each part its own units. It depends on the shape alone,
// never on which adapters a step mixes, so that the launch keeps its layout (Graphs).
func MaxShrinkPairs(rows, parts, vStride int) int {
	units := rows * parts * ((vStride + ShrinkRows - 1) / ShrinkRows)
	return (units + 1) / 2
}

// Build makes the units of t's adapters for an A of in values a row and rows of v of
// parts·vStride values, into MaxShrinkPairs(t.Rows, t.Parts, vStride) pairs; false where
// they do not fit (units of different sizes that cannot pair) or an A is not 16-byte aligned.
func (s *ShrinkUnits) Build(t *LoRA, in, vStride int) bool {
	s.Pairs = MaxShrinkPairs(t.Rows, t.Parts, vStride)
	s.A, s.Meta = zeroed(s.A, 2*s.Pairs), zeroed(s.Meta, 8*s.Pairs+1)
	n := 0 // units placed
	for p := range t.Parts {
		for r0 := 0; r0 < t.Rows; {
			i := r0*t.Parts + p
			r1 := r0 + 1 // the run of rows with the same A
			for r1 < t.Rows && t.A[r1*t.Parts+p] == t.A[i] && t.Ranks[r1*t.Parts+p] == t.Ranks[i] {
				r1++
			}
			for j := 0; j < int(t.Ranks[i]); j += ShrinkRows {
				a := t.A[i] + uint64(2*j*in) // bf16 rows
				rows := min(ShrinkRows, int(t.Ranks[i])-j)
				if a%16 != 0 || in%8 != 0 {
					return false // the kernel loads 16 bytes at a time
				}
				if n%2 == 1 && !pairs(s, n-1, a, rows) {
					n++ // alone in its pair
				}
				if n >= len(s.A) {
					return false
				}
				s.A[n] = a
				copy(s.Meta[4*n:], []int32{int32(rows), int32(r0), int32(r1), int32(p*vStride + j)})
				n++
			}
			r0 = r1
		}
	}
	s.Meta[8*s.Pairs] = int32((n + 1) / 2) // the pairs in use
	return true
}

// pairs says whether a unit of rows rows of A at a (16-byte aligned) may pair with unit u.
func pairs(s *ShrinkUnits, u int, a uint64, rows int) bool {
	d := int64(a-s.A[u]) / 16
	return int(s.Meta[4*u]) == rows && -(1<<31) <= d && d < 1<<31
}
