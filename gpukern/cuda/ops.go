//go:build cuda

package cuda

import (
	"fmt"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// The gpukern.Backend kernels: each puts its metadata in the arena and records its launches
// for the next flush (graph.go); failures surface at the next Sync.

const threads = 256 // block size of the elementwise and row kernels

// Embedding implements gpukern.Backend: a bf16 table is the embedding, an fp32 one the
// hidden states gathered before the LM head.
func (b *Backend) Embedding(out, table gpukern.Tensor, ids []int32, dim int) {
	o, t := dev(out), dev(table)
	b.do(func() {
		a := (&args{}).ptr(o).ptr(t).dptr(upload(b, ids)).i32(dim)
		fn, name := b.fn.gather, "gather"
		if t.bf16 {
			fn, name = b.fn.embedding, "embedding"
		}
		b.launch(name, fn, d2((dim+threads-1)/threads, len(ids)), d1(threads), 0, a)
	})
}

// A LoRA delta comes from the side stream (LoRAExpand): the call that reads one joins it.

// optional is t's device address, or null for a nil t.
func optional(t gpukern.Tensor) drv.DevicePtr {
	if t == nil {
		return 0
	}
	return dev(t).ptr
}

// RMSNorm implements gpukern.Backend; it also writes its output in bf16 for the GEMM that
// follows (bf16Copy).
func (b *Backend) RMSNorm(out, x, residual, delta, w gpukern.Tensor, rows, dim int, eps float32) {
	o, xs, ws := dev(out), dev(x), dev(w)
	b.do(func() {
		out16 := b.gemmInput(rows, dim)
		d := optional(delta)
		a := (&args{}).ptr(o).dptr(out16).ptr(xs).dptr(optional(residual)).dptr(d).ptr(ws).i32(dim).f32(eps)
		op := kernel("rmsnorm", b.fn.rmsnorm, d1(rows), d1(normThreads(dim)), 0, a)
		op.Join = d != 0
		b.record(op)
		b.copy16 = bf16Copy{of: o.ptr, n: rows * dim}
	})
}

// normHeld is NORM_HELD of elementwise.cu: the elements of a row each rmsnorm thread holds.
const normHeld = 8

// normThreads is rmsnorm's block size for rows of dim elements: enough threads to hold a row
// in registers (a warp at least, 1024 at most).
func normThreads(dim int) int {
	return min(1024, max(32, (dim+32*normHeld-1)/(32*normHeld)*32))
}

// elementwise launches a grid-stride kernel over n elements; join when it reads a LoRA delta.
func (b *Backend) elementwise(name string, fn drv.Function, n int, a *args, join bool) {
	b.do(func() {
		op := kernel(name, fn, d1(gridFor(n, threads)), d1(threads), 0, a)
		op.Join = join
		b.record(op)
	})
}

// AddBias implements gpukern.Backend.
func (b *Backend) AddBias(x, bias gpukern.Tensor, rows, dim int) {
	b.elementwise("add_bias", b.fn.addBias, rows*dim, (&args{}).ptr(dev(x)).ptr(dev(bias)).i32(dim).i64(rows*dim), false)
}

// Add implements gpukern.Backend; either input may be a LoRA delta.
func (b *Backend) Add(out, x, y gpukern.Tensor, n int) {
	b.elementwise("add", b.fn.add, n, (&args{}).ptr(dev(out)).ptr(dev(x)).ptr(dev(y)).i64(n), true)
}

// SiLUMul implements gpukern.Backend; it also writes its output in bf16 for the down
// projection's GEMM (bf16Copy).
func (b *Backend) SiLUMul(out, gateUp, delta gpukern.Tensor, rows, dim int) {
	n, o := rows*dim, dev(out)
	b.do(func() {
		out16 := b.gemmInput(rows, dim)
		d := optional(delta)
		a := (&args{}).ptr(o).dptr(out16).ptr(dev(gateUp)).dptr(d).i32(dim).i64(n)
		op := kernel("silu_mul", b.fn.siluMul, d1(gridFor(n, threads)), d1(threads), 0, a)
		op.Join = d != 0
		b.record(op)
		b.copy16 = bf16Copy{of: o.ptr, n: n}
	})
}

// RoPEWriteKV implements gpukern.Backend.
func (b *Backend) RoPEWriteKV(q, qkv, delta gpukern.Tensor, rows, heads int, pos []int32, cosSin gpukern.Tensor, cache *gpukern.KVCache, layer int, slots []int32) {
	qs, in, cs := dev(q), dev(qkv), dev(cosSin)
	kc, vc := dev(cache.K[layer]), dev(cache.V[layer])
	b.do(func() {
		d := optional(delta)
		a := (&args{}).ptr(qs).ptr(in).dptr(d).dptr(upload(b, pos)).ptr(cs).ptr(kc).ptr(vc).dptr(upload(b, slots)).
			i32(heads).i32(cache.KVHeads).i32(cache.HeadDim)
		items := (heads + 2*cache.KVHeads) * cache.HeadDim / 2 // per row: a thread each
		op := kernel("rope_write_kv", b.fn.ropeWriteKV, d2(rows, (items+127)/128), d1(128), 0, a)
		op.Join = d != 0
		b.record(op)
	})
}

// MaxLoRARank is the largest adapter rank the LoRA kernels take: lora_expand holds its group's
// rows of v for one part in the 48 KiB of shared memory a kernel gets without opting in to
// more.
const MaxLoRARank = 48 << 10 / (4 * host.LoRAGroup)

// maxLoRAParts is LORA_MAX_PARTS of lora.cu: the most parts a projection fuses (q, k and v).
const maxLoRAParts = 3

// shrinkJ, expandC and loraThreads are SHRINK_J, EXPAND_C and LORA_THREADS of lora.cu: the
// outputs per block of lora_shrink, the columns per thread of lora_expand, and the block size
// of both (their launch bounds: a larger block would not launch; loraBlock may pick a smaller).
const (
	shrinkJ     = 4
	expandC     = 4
	loraThreads = 256
)

// LoRAShrink implements gpukern.Backend: one launch for every adapter and part of the batch.
func (b *Backend) LoRAShrink(v, x gpukern.Tensor, segs []gpukern.LoRASegment, in, vStride int) {
	vs, xs := dev(v), dev(x)
	b.do(func() {
		t := b.loraTablesOf(segs, 0)
		b.shrunk = segsKey{unsafe.SliceData(segs), len(segs)} // the expand that follows may reuse t
		if t.MaxRank == 0 {
			return // nothing to compute; the expand writes zeros
		}
		a := (&args{}).ptr(vs).ptr(xs).dptr(upload(b, t.A)).dptr(upload(b, t.Ranks)).dptr(upload(b, t.Groups)).
			i32(direct(t)).i32(t.Parts).i32(in).i32(vStride)
		// The grid covers vStride, not this batch's largest rank: it changes less with the
		// adapters a step mixes (blocks past a group's rank return at once). On the side
		// stream: it needs only x, so it runs beside the base GEMM of the same x.
		blocks := t.GridGroups() * t.Parts * ((vStride + shrinkJ - 1) / shrinkJ)
		o := kernel("lora_shrink", b.fn.loraShrink, d1(blocks), d1(b.loraBlock()), 0, a)
		o.Side = !b.loraMain
		b.record(o)
	})
}

// LoRAExpand implements gpukern.Backend.
func (b *Backend) LoRAExpand(delta, v gpukern.Tensor, segs []gpukern.LoRASegment, outDims []int, vStride int) {
	os, vs := dev(delta), dev(v)
	b.do(func() {
		block := b.loraBlock()
		ends, cols := expandRuns(outDims, block)
		t := &b.loraTab
		if key := (segsKey{unsafe.SliceData(segs), len(segs)}); key.first == nil || key != b.shrunk || t.Parts < len(outDims) {
			// Not the segments of the shrink just before (or none of them has an adapter).
			t = b.loraTablesOf(segs, len(outDims))
		}
		b.shrunk = segsKey{}
		if t.Rows == 0 {
			return // no rows
		}
		if t.Parts > maxLoRAParts {
			b.fail(fmt.Errorf("cuda: a LoRA projection of %d fused parts; the kernels take at most %d", t.Parts, maxLoRAParts))
			return
		}
		a := (&args{}).ptr(os).ptr(vs).dptr(upload(b, t.B)).dptr(upload(b, t.Ranks)).dptr(upload(b, t.Scales)).
			dptr(upload(b, t.Groups)).i32(direct(t)).i32(t.Parts).i32(vStride).i32(ends[0]).i32(ends[1]).i32(ends[2])
		// On the side stream after the shrink: it writes a delta, which the call reading the
		// projection's output adds (and so joins the side stream).
		o := kernel("lora_expand", b.fn.loraExpand, d1(t.GridGroups()*cols), d1(block), 4*host.LoRAGroup*vStride, a)
		o.Side = !b.loraMain
		b.record(o)
	})
}

// expandRuns lays a projection's parts out for lora_expand's blocks of block threads: where
// each part's columns end (those of parts it lacks at the last part's end, the delta's width)
// and how many blocks a group of rows has, runs of block·expandC columns of one part. Parts
// past maxLoRAParts are left out (LoRAExpand refuses them).
func expandRuns(outDims []int, block int) (ends [maxLoRAParts]int, cols int) {
	end := 0
	for p := range ends {
		if p < len(outDims) {
			end += outDims[p]
			cols += (outDims[p] + block*expandC - 1) / (block * expandC)
		}
		ends[p] = end
	}
	return ends, cols
}

// direct is the kernels' direct argument: 1 where every group of t is one row.
func direct(t *host.LoRA) int {
	if t.Direct() {
		return 1
	}
	return 0
}

// segsKey identifies the segments a LoRAShrink was given.
type segsKey struct {
	first *gpukern.LoRASegment
	n     int
}

// loraTablesOf makes the tables of segs (host.LoRA.Build) in the backend's scratch, valid
// until the next call, and notes that the recorded work reads their adapters' slots. Callers
// are inside b.do.
func (b *Backend) loraTablesOf(segs []gpukern.LoRASegment, minParts int) *host.LoRA {
	for _, s := range segs {
		for _, part := range s.Parts {
			if part.A != nil {
				b.reads(dev(part.A)) // the segment's adapter: all its parts share a slot
				break
			}
		}
	}
	b.loraTab.Build(segs, minParts, func(t gpukern.Tensor) uint64 { return uint64(dev(t).ptr) })
	return &b.loraTab
}

// Sample implements gpukern.Backend; only the ids come back to the host.
func (b *Backend) Sample(ids []int32, logits gpukern.Tensor, row0, vocab int, params []gpukern.SampleParams) {
	n := len(params)
	if n == 0 {
		return
	}
	greedy := true
	flat := make([]float32, 0, 4*n)
	topK := make([]int32, n)
	for i, p := range params {
		greedy = greedy && p.Temperature <= 0
		flat = append(flat, p.Temperature, p.TopP, p.MinP, p.U)
		topK[i] = p.TopK
	}
	lg := dev(logits).ptr + drv.DevicePtr(4*row0*vocab)
	b.do(func() {
		out := b.buffer(&b.scratch.ids, int64(4*n))
		if greedy {
			b.launch("argmax", b.fn.argmax, d1(n), d1(1024), 0, (&args{}).dptr(out).dptr(lg).i32(vocab))
		} else {
			a := (&args{}).dptr(out).dptr(lg).dptr(upload(b, flat)).dptr(upload(b, topK)).i32(vocab)
			b.launch("sample_rows", b.fn.sampleRows, d1(n), d1(1024), 0, a)
		}
		if b.drain(); b.err != nil {
			return
		}
		b.fail(drv.MemcpyDtoH(unsafe.Pointer(&ids[0]), out, int64(4*n)))
	})
}
