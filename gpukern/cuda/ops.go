//go:build cuda

package cuda

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/lorafleet/lorafleet/gpukern"
)

// The gpukern.Backend kernels: each uploads its metadata through the arena and queues its
// launches on the stream; failures surface at the next Sync.

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

// RMSNorm implements gpukern.Backend.
func (b *Backend) RMSNorm(out, x, residual, w gpukern.Tensor, rows, dim int, eps float32) {
	var res cu.DevicePtr
	if residual != nil {
		res = dev(residual).ptr
	}
	o, xs, ws := dev(out), dev(x), dev(w)
	b.do(func() {
		a := (&args{}).ptr(o).ptr(xs).dptr(res).ptr(ws).i32(dim).f32(eps)
		b.launch("rmsnorm", b.fn.rmsnorm, d1(rows), d1(threads), 0, a)
	})
}

// MatMul implements gpukern.Backend with cuBLAS on bf16 inputs, accumulating in fp32.
func (b *Backend) MatMul(out, x, w gpukern.Tensor, m, n, k int) {
	o, xs, ws := dev(out), dev(x), dev(w)
	if !ws.bf16 {
		panic("cuda: MatMul weights must come from Weight") // a programming error
	}
	b.do(func() {
		in := xs.ptr
		if !xs.bf16 {
			in = b.buffer(&b.scratch.gemmIn, int64(2*m*k))
			a := (&args{}).dptr(in).ptr(xs).i64(m * k)
			b.launch("to_bf16", b.fn.toBF16, d1(gridFor(m*k, threads)), d1(threads), 0, a)
		}
		if b.err != nil {
			return
		}
		if err := b.blas.MatMulBF16(uintptr(o.ptr), uintptr(in), uintptr(ws.ptr), m, n, k, false); err != nil {
			b.fail(fmt.Errorf("cuda: GEMM %dx%dx%d: %w", m, n, k, err))
		}
	})
}

// elementwise launches a grid-stride kernel over n elements.
func (b *Backend) elementwise(name string, fn cu.Function, n int, a *args) {
	b.do(func() { b.launch(name, fn, d1(gridFor(n, threads)), d1(threads), 0, a) })
}

// AddBias implements gpukern.Backend.
func (b *Backend) AddBias(x, bias gpukern.Tensor, rows, dim int) {
	b.elementwise("add_bias", b.fn.addBias, rows*dim, (&args{}).ptr(dev(x)).ptr(dev(bias)).i32(dim).i64(rows*dim))
}

// Add implements gpukern.Backend.
func (b *Backend) Add(out, x, y gpukern.Tensor, n int) {
	b.elementwise("add", b.fn.add, n, (&args{}).ptr(dev(out)).ptr(dev(x)).ptr(dev(y)).i64(n))
}

// SiLUMul implements gpukern.Backend.
func (b *Backend) SiLUMul(out, gate, up gpukern.Tensor, n int) {
	b.elementwise("silu_mul", b.fn.siluMul, n, (&args{}).ptr(dev(out)).ptr(dev(gate)).ptr(dev(up)).i64(n))
}

// RoPEWriteKV implements gpukern.Backend.
func (b *Backend) RoPEWriteKV(q, k, v gpukern.Tensor, rows, heads int, pos []int32, cosSin gpukern.Tensor, cache *gpukern.KVCache, layer int, slots []int32) {
	qs, ks, vs, cs := dev(q), dev(k), dev(v), dev(cosSin)
	kc, vc := dev(cache.K[layer]), dev(cache.V[layer])
	b.do(func() {
		a := (&args{}).ptr(qs).ptr(ks).ptr(vs).dptr(upload(b, pos)).ptr(cs).ptr(kc).ptr(vc).dptr(upload(b, slots)).
			i32(heads).i32(cache.KVHeads).i32(cache.HeadDim)
		b.launch("rope_write_kv", b.fn.ropeWriteKV, d1(rows), d1(128), 0, a)
	})
}

// LoRAShrink implements gpukern.Backend: one launch for every adapter of the batch.
func (b *Backend) LoRAShrink(v, x gpukern.Tensor, segs []gpukern.LoRASegment, in, vStride int) {
	t := loraTablesOf(segs)
	if t.maxRank == 0 {
		return
	}
	vs, xs := dev(v), dev(x)
	b.do(func() {
		a := (&args{}).ptr(vs).ptr(xs).dptr(upload(b, t.rowSeg)).dptr(upload(b, t.a)).dptr(upload(b, t.ranks)).i32(in).i32(vStride)
		const warps = threads / 32
		b.launch("lora_shrink", b.fn.loraShrink, d2(len(t.rowSeg), (t.maxRank+warps-1)/warps), d1(threads), 0, a)
	})
}

// LoRAExpand implements gpukern.Backend.
func (b *Backend) LoRAExpand(out, v gpukern.Tensor, segs []gpukern.LoRASegment, outDim, vStride int) {
	t := loraTablesOf(segs)
	if t.maxRank == 0 {
		return
	}
	os, vs := dev(out), dev(v)
	b.do(func() {
		a := (&args{}).ptr(os).ptr(vs).dptr(upload(b, t.rowSeg)).dptr(upload(b, t.b)).dptr(upload(b, t.ranks)).
			dptr(upload(b, t.scales)).i32(outDim).i32(vStride)
		b.launch("lora_expand", b.fn.loraExpand, d2(len(t.rowSeg), (outDim+threads-1)/threads), d1(threads), 4*t.maxRank, a)
	})
}

// loraTables are the per-launch tables of the SGMV kernels: each row's segment (-1: none)
// and each segment's matrices, rank and scale.
type loraTables struct {
	rowSeg, ranks []int32
	a, b          []uint64
	scales        []float32
	maxRank       int
}

func loraTablesOf(segs []gpukern.LoRASegment) loraTables {
	var t loraTables
	if len(segs) == 0 {
		return t
	}
	t.rowSeg = make([]int32, segs[len(segs)-1].End)
	for i := range t.rowSeg {
		t.rowSeg[i] = -1
	}
	for _, s := range segs {
		if s.A == nil {
			continue
		}
		for r := s.Start; r < s.End; r++ {
			t.rowSeg[r] = int32(len(t.ranks))
		}
		t.a = append(t.a, uint64(dev(s.A).ptr))
		t.b = append(t.b, uint64(dev(s.B).ptr))
		t.ranks = append(t.ranks, int32(s.Rank))
		t.scales = append(t.scales, s.Scale)
		t.maxRank = max(t.maxRank, s.Rank)
	}
	return t
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
	lg := dev(logits).ptr + cu.DevicePtr(4*row0*vocab)
	b.do(func() {
		out := b.buffer(&b.scratch.ids, int64(4*n))
		if greedy {
			b.launch("argmax", b.fn.argmax, d1(n), d1(1024), 0, (&args{}).dptr(out).dptr(lg).i32(vocab))
		} else {
			a := (&args{}).dptr(out).dptr(lg).dptr(upload(b, flat)).dptr(upload(b, topK)).i32(vocab)
			b.launch("sample_rows", b.fn.sampleRows, d1(n), d1(1024), 0, a)
		}
		if b.err != nil {
			return
		}
		if err := b.stream.Synchronize(); err != nil {
			b.fail(fmt.Errorf("cuda: a kernel failed: %w", err))
			return
		}
		b.fail(cu.MemcpyDtoH(unsafe.Pointer(&ids[0]), out, int64(4*n)))
	})
}
