//go:build cuda

package cuda

import (
	"gorgonia.org/cu"

	"github.com/lorafleet/lorafleet/gpukern"
)

// Tile sizes of flash_prefill (FLASH_BQ, FLASH_BK in attention.cu).
const (
	flashBQ = 16
	flashBK = 32
)

// flashSharedBytes is flash_prefill's dynamic shared memory for head size hd: the query tile
// in fp32, the K and V tiles in bf16.
func flashSharedBytes(hd int) int { return hd * (flashBQ*4 + 2*flashBK*2) }

// splitLen is how many context positions one block of decode_split covers: long contexts are
// split so that a decode step keeps every SM busy, short ones take one split.
const splitLen = 512

// attnPlan lays a batch's sequences out for the two attention kernels: prefill rows (any
// sequence with more than one query row) in tiles of up to flashBQ rows, decode rows one
// each. Block tables are padded to a power-of-two width, so that the tables' sizes, and so
// the arena offsets a recorded step's launches point at, stay the same while contexts grow:
// a decode step keeps replaying one CUDA graph.
type attnPlan struct {
	rowLen, rowTable, blocks []int32
	tileRow0, tileRows       []int32
	decRows                  []int32
	maxDecode                int // the longest context of a decode row
}

func planAttention(seqs []gpukern.AttnSeq) attnPlan {
	var p attnPlan
	rows := 0
	for _, s := range seqs {
		rows = max(rows, s.QStart+s.QLen)
	}
	p.rowLen, p.rowTable = make([]int32, rows), make([]int32, rows)
	width := 1
	for _, s := range seqs {
		for width < len(s.Blocks) {
			width *= 2
		}
	}
	p.blocks = make([]int32, len(seqs)*width)
	for i, s := range seqs {
		table := int32(i * width)
		copy(p.blocks[table:], s.Blocks)
		for r := range s.QLen {
			p.rowLen[s.QStart+r] = int32(s.CtxLen - s.QLen + r + 1)
			p.rowTable[s.QStart+r] = table
		}
		if s.QLen == 1 {
			p.decRows = append(p.decRows, int32(s.QStart))
			p.maxDecode = max(p.maxDecode, s.CtxLen)
			continue
		}
		for t := 0; t < s.QLen; t += flashBQ {
			p.tileRow0 = append(p.tileRow0, int32(s.QStart+t))
			p.tileRows = append(p.tileRows, int32(min(flashBQ, s.QLen-t)))
		}
	}
	return p
}

// Attention implements gpukern.Backend: flash_prefill for prefill tiles, decode_split and
// decode_combine for decode rows, in one call for a mixed batch.
func (b *Backend) Attention(out, q gpukern.Tensor, cache *gpukern.KVCache, layer int, seqs []gpukern.AttnSeq, p gpukern.AttnParams) {
	plan := planAttention(seqs)
	os, qs := dev(out), dev(q)
	kc, vc := dev(cache.K[layer]), dev(cache.V[layer])
	b.do(func() {
		rowLen, rowTable, blocks := upload(b, plan.rowLen), upload(b, plan.rowTable), upload(b, plan.blocks)
		if n := len(plan.tileRow0); n > 0 {
			a := (&args{}).ptr(os).ptr(qs).ptr(kc).ptr(vc).dptr(upload(b, plan.tileRow0)).dptr(upload(b, plan.tileRows)).
				dptr(rowLen).dptr(rowTable).dptr(blocks).i32(cache.BlockSize).
				i32(p.Heads).i32(p.KVHeads).i32(p.HeadDim).f32(p.Scale)
			b.launch("flash_prefill", b.fn.flashPrefill, d2(n, p.Heads), d1(128), flashSharedBytes(p.HeadDim), a)
		}
		n := len(plan.decRows)
		if n == 0 {
			return
		}
		splits := max(1, (plan.maxDecode+splitLen-1)/splitLen)
		parts := n * p.Heads * splits
		acc := b.buffer(&b.scratch.part, int64(4*parts*(p.HeadDim+2)))
		ml := acc + cu.DevicePtr(4*parts*p.HeadDim)
		decRows := upload(b, plan.decRows)
		a := (&args{}).dptr(acc).dptr(ml).ptr(qs).ptr(kc).ptr(vc).dptr(decRows).
			dptr(rowLen).dptr(rowTable).dptr(blocks).i32(cache.BlockSize).
			i32(p.Heads).i32(p.KVHeads).i32(p.HeadDim).f32(p.Scale).i32(splitLen)
		b.launch("decode_split", b.fn.decodeSplit, dims{n, p.Heads, splits}, d1(128), 4*(p.HeadDim+2)*4, a)
		a = (&args{}).ptr(os).dptr(acc).dptr(ml).dptr(decRows).i32(p.Heads).i32(p.HeadDim).i32(splits)
		b.launch("decode_combine", b.fn.decodeCombine, d2(n, p.Heads), d1(128), 0, a)
	})
}
