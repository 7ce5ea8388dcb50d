package host

import "github.com/lorafleet/lorafleet/gpukern"

// Attn lays a batch's sequences out for the attention kernels (attention.cu): prefill rows
// (any sequence with more than one query row) in tiles of up to TileRows rows for
// flash_prefill, decode rows one each for decode_split. Block tables are padded to a
// power-of-two width, so that the tables' sizes, and so the arena offsets a recorded step's
// launches point at, stay the same while contexts grow: a decode step keeps replaying one
// CUDA graph.
type Attn struct {
	RowLen   []int32 // per row: the context positions it sees
	RowTable []int32 // per row: the offset of its sequence's block table in Blocks
	Blocks   []int32 // the block tables, Width entries each
	Width    int
	TileRow0 []int32 // per prefill tile: first row and row count
	TileRows []int32
	DecRows  []int32 // the decode rows
	// MaxDecode is the longest context of a decode row.
	MaxDecode int
}

// Plan lays out seqs, which tile the batch's rows in order, in p, reusing its arrays (every
// layer of a step plans).
func (p *Attn) Plan(seqs []gpukern.AttnSeq, tileRows int) {
	rows := 0
	for _, s := range seqs {
		rows = max(rows, s.QStart+s.QLen)
	}
	p.RowLen, p.RowTable = zeroed(p.RowLen, rows), zeroed(p.RowTable, rows)
	p.Width = 1
	for _, s := range seqs {
		for p.Width < len(s.Blocks) {
			p.Width *= 2
		}
	}
	p.Blocks = zeroed(p.Blocks, len(seqs)*p.Width)
	p.TileRow0, p.TileRows, p.DecRows, p.MaxDecode = p.TileRow0[:0], p.TileRows[:0], p.DecRows[:0], 0
	for i, s := range seqs {
		table := int32(i * p.Width)
		copy(p.Blocks[table:], s.Blocks)
		for r := range s.QLen {
			p.RowLen[s.QStart+r] = int32(s.CtxLen - s.QLen + r + 1)
			p.RowTable[s.QStart+r] = table
		}
		if s.QLen == 1 {
			p.DecRows = append(p.DecRows, int32(s.QStart))
			p.MaxDecode = max(p.MaxDecode, s.CtxLen)
			continue
		}
		for t := 0; t < s.QLen; t += tileRows {
			p.TileRow0 = append(p.TileRow0, int32(s.QStart+t))
			p.TileRows = append(p.TileRows, int32(min(tileRows, s.QLen-t)))
		}
	}
}

// Lengths of the parts decode attention splits a row's context into (decode_split's blocks).
const (
	MaxSplitLen = 512 // longer contexts are split so that one long sequence still fills the GPU
	MinSplitLen = 64  // shorter parts cost a block more setup and a bigger combine than they save
)

// DecodeSplits is how many parts decode attention splits each row's context into, for rows
// decode rows of heads heads, the longest of maxCtx positions, on a GPU that runs slots
// decode blocks at once: enough that no part is longer than MaxSplitLen, and, where the
// rows×heads blocks leave most of those slots idle (a small batch), more parts of at least
// MinSplitLen positions, as many as fill the slots in one wave. That count is rounded down to a
// power of two, so that a sequence growing changes it rarely: each change is a new CUDA graph.
func DecodeSplits(rows, heads, maxCtx, slots int) int {
	n := max(1, (maxCtx+MaxSplitLen-1)/MaxSplitLen)
	fill := min(slots/max(1, rows*heads), maxCtx/MinSplitLen)
	for more := 1; more <= fill; more *= 2 {
		n = max(n, more)
	}
	return n
}
