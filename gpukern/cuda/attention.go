//go:build cuda

package cuda

import (
	"fmt"
	"slices"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// Tile sizes of flash_prefill (FLASH_BQ, FLASH_BK in attention.cu).
const (
	flashBQ = 16
	flashBK = 32
)

// flashSharedBytes is flash_prefill's dynamic shared memory for head size hd: the query tile
// in fp32, the K and V tiles in bf16.
func flashSharedBytes(hd int) int { return hd * (flashBQ*4 + 2*flashBK*2) }

// MaxHeadDim is the largest head the attention kernels take (attention.cu).
const MaxHeadDim = 256

// decodeHeadDims are the head sizes of attention.cu's decode_split kernels: decode_split_hdN
// takes heads of up to N values.
var decodeHeadDims = [...]int{16, 32, 64, 128, MaxHeadDim}

// decodeSplitOf is the decode_split kernel for heads of hd (at most MaxHeadDim) values.
func (f *functions) decodeSplitOf(hd int) drv.Function {
	i := 0
	for i < len(decodeHeadDims)-1 && hd > decodeHeadDims[i] {
		i++
	}
	return f.decodeSplit[i]
}

// decodeThreads and decodeBlocks are DEC_THREADS and DEC_BLOCKS of attention.cu: decode_split's
// block size, which its launch bounds assume, and the blocks of it an SM holds at once.
const (
	decodeThreads = 128
	decodeBlocks  = 8
)

// RoPEAttention implements gpukern.RoPEAttender: in a step of decode rows alone, decode_split
// rotates its q and k and writes k and v into the cache itself, and no rope_write_kv runs (a
// kernel a layer fewer); otherwise, or after SetFusedRoPE(false), RoPEWriteKV then Attention.
func (b *Backend) RoPEAttention(out, q, qkv, delta gpukern.Tensor, rows int, pos []int32, cosSin gpukern.Tensor, cache *gpukern.KVCache,
	layer int, slots []int32, seqs []gpukern.AttnSeq, p gpukern.AttnParams) {
	decodeOnly := !slices.ContainsFunc(seqs, func(s gpukern.AttnSeq) bool { return s.QLen != 1 })
	if b.ropeApart || !decodeOnly || len(seqs) != rows || len(pos) != rows || len(slots) != rows {
		b.RoPEWriteKV(q, qkv, delta, rows, p.Heads, pos, cosSin, cache, layer, slots)
		b.Attention(out, q, cache, layer, seqs, p)
		return
	}
	rope := &decodeRoPE{qkv: dev(qkv).ptr, delta: optional(delta), cosSin: dev(cosSin).ptr}
	b.attention(out, q, cache, layer, seqs, p, rope, pos, slots)
}

// SetFusedRoPE lets RoPEAttention rotate q and k in decode_split (on, the default), or has it
// run rope_write_kv before the attention always (benchmarks compare the two).
func (b *Backend) SetFusedRoPE(on bool) {
	b.do(b.flush)
	b.ropeApart = !on
}

// decodeRoPE is what decode_split needs to do rope_write_kv's work (RoPEAttention).
type decodeRoPE struct {
	qkv, delta, cosSin, pos, slots drv.DevicePtr
}

// Attention implements gpukern.Backend: flash_prefill for prefill tiles; decode_split, whose
// last split of each row's head combines the parts where contexts are split (host.DecodeSplits),
// for decode rows; in one call for a mixed batch. Both also write the output in bf16 for the o
// projection's GEMM (bf16Copy).
func (b *Backend) Attention(out, q gpukern.Tensor, cache *gpukern.KVCache, layer int, seqs []gpukern.AttnSeq, p gpukern.AttnParams) {
	b.attention(out, q, cache, layer, seqs, p, nil, nil, nil)
}

// attention is Attention, with decode_split doing rope_write_kv's work where rope is non-nil
// (RoPEAttention: decode rows alone, pos and slots by row).
func (b *Backend) attention(out, q gpukern.Tensor, cache *gpukern.KVCache, layer int, seqs []gpukern.AttnSeq, p gpukern.AttnParams,
	rope *decodeRoPE, pos, slots []int32) {
	os, qs := dev(out), dev(q)
	kc, vc := dev(cache.K[layer]), dev(cache.V[layer])
	b.do(func() {
		if p.HeadDim > MaxHeadDim {
			b.fail(fmt.Errorf("cuda: attention over heads of %d values; the kernels take at most %d", p.HeadDim, MaxHeadDim))
			return
		}
		m := b.attnMetaOf(seqs)
		plan := &b.attnPlan
		size := len(plan.RowLen) * p.Heads * p.HeadDim
		out16 := b.gemmInput(len(plan.RowLen), p.Heads*p.HeadDim)
		if n := len(plan.TileRow0); n > 0 {
			a := (&args{}).ptr(os).dptr(out16).ptr(qs).ptr(kc).ptr(vc).dptr(m.tileRow0).dptr(m.tileRows).
				dptr(m.rowLen).dptr(m.rowTable).dptr(m.blocks).i32(cache.BlockSize).
				i32(p.Heads).i32(p.KVHeads).i32(p.HeadDim).f32(p.Scale)
			b.launch("flash_prefill", b.fn.flashPrefill, d2(n, p.Heads), d1(128), flashSharedBytes(p.HeadDim), a)
		}
		if len(plan.DecRows) > 0 {
			if rope != nil {
				rope.pos, rope.slots = upload(b, pos), upload(b, slots)
			}
			b.decode(os.ptr, out16, qs, kc, vc, m, cache.BlockSize, p, rope)
		}
		b.copy16 = bf16Copy{of: os.ptr, n: size}
	})
}

// attnMeta is where the arena holds the tables of b.attnPlan, made of the seqs at key.
type attnMeta struct {
	key                                                   attnKey
	rowLen, rowTable, blocks, tileRow0, tileRows, decRows drv.DevicePtr
}

// attnKey identifies the seqs an Attention call was given.
type attnKey struct {
	first *gpukern.AttnSeq
	n     int
}

// attnMetaOf plans seqs into b.attnPlan and puts its tables in the arena, unless they are the
// seqs of the last call since the arena started over: every layer of a step passes the same
// (gpukern.Backend.Attention), so a step plans once. Callers are inside b.do.
func (b *Backend) attnMetaOf(seqs []gpukern.AttnSeq) *attnMeta {
	key := attnKey{unsafe.SliceData(seqs), len(seqs)}
	if m := &b.attnMeta; key.first != nil && m.key == key {
		return m
	}
	plan := &b.attnPlan
	plan.Plan(seqs, flashBQ)
	b.attnMeta = attnMeta{key: key, rowLen: upload(b, plan.RowLen), rowTable: upload(b, plan.RowTable), blocks: upload(b, plan.Blocks),
		tileRow0: upload(b, plan.TileRow0), tileRows: upload(b, plan.TileRows), decRows: upload(b, plan.DecRows)}
	return &b.attnMeta
}

// decode launches decode_split for the plan's decode rows: where their contexts are split in
// parts, each part goes to scratch and the last of a head's parts to finish combines them;
// where rope is non-nil, its blocks do rope_write_kv's work first. Callers are inside b.do.
func (b *Backend) decode(out, out16 drv.DevicePtr, q, kc, vc *Tensor, m *attnMeta, blockSize int, p gpukern.AttnParams, rope *decodeRoPE) {
	plan := &b.attnPlan
	n := len(plan.DecRows)
	splits := host.DecodeSplits(n, p.Heads, plan.MaxDecode, b.sms*decodeBlocks)
	var acc, ml, count drv.DevicePtr
	if splits > 1 {
		parts := n * p.Heads * splits
		acc = b.buffer(&b.scratch.part, int64(4*parts*(p.HeadDim+2)))
		ml = acc + drv.DevicePtr(4*parts*p.HeadDim)
		count = b.zeroed(&b.scratch.partCount, int64(4*n*p.Heads))
	}
	a := (&args{}).dptr(acc).dptr(ml).dptr(count).dptr(out).dptr(out16).ptr(q).ptr(kc).ptr(vc).dptr(m.decRows).
		dptr(m.rowLen).dptr(m.rowTable).dptr(m.blocks).i32(blockSize).
		i32(p.Heads).i32(p.KVHeads).i32(p.HeadDim).f32(p.Scale)
	if rope == nil {
		rope = &decodeRoPE{}
	}
	a.dptr(rope.qkv).dptr(rope.delta).dptr(rope.pos).dptr(rope.cosSin).dptr(rope.slots)
	op := kernel("decode_split", b.fn.decodeSplitOf(p.HeadDim), dims{X: n, Y: p.Heads, Z: splits}, d1(decodeThreads), (decodeThreads/32)*(p.HeadDim+2)*4, a)
	op.Join = rope.delta != 0 // it adds qkv's LoRA delta, as rope_write_kv would
	b.record(op)
}
