package host

import (
	"testing"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern"
)

// refStep is the bookkeeping the CUDA backend does on the host for one Llama-2-7B decode
// step of the reference batch (32 rows, each with its own rank-16 adapter on all
// seven projections, context 128), as gpukern/cuda's ops record it: the attention plan, then per
// layer the LoRA tables of its four fused projections (shared by their shrink and expand), their
// metadata in the arena, the adapter slots read, and 17 launches; then the graph lookup of
// the whole step. The GPU
// waits for this at every decode step, so it is part of the step time.
type refStep struct {
	plan   Attn
	lora   LoRA
	slots  [refRows]bool
	seqs   []gpukern.AttnSeq
	segs   [4][]gpukern.LoRASegment
	arena  Arena
	graphs Graphs[int]
	ops    []Op
}

const refLayers, refRows = 32, 32

// fakeTensor stands for an adapter matrix: the tables need only its address.
type fakeTensor struct{ adapter, matrix int }

func (*fakeTensor) Len() int { return 0 }

func newRefStep() *refStep {
	s := &refStep{arena: Arena{Buf: make([]byte, 1<<20), Base: 1 << 40}}
	s.graphs.Free = func(int) {}
	for i := range refRows {
		blocks := make([]int32, 9)
		for j := range blocks {
			blocks[j] = int32(i*9 + j)
		}
		s.seqs = append(s.seqs, gpukern.AttnSeq{QStart: i, QLen: 1, CtxLen: 129, Blocks: blocks})
	}
	fake := func(a, i int) gpukern.Tensor { return &fakeTensor{a, i} }
	for l, parts := range []int{3, 1, 2, 1} {
		for r := range refRows {
			seg := gpukern.LoRASegment{Start: r, End: r + 1}
			for p := range parts {
				seg.Parts = append(seg.Parts, gpukern.LoRAPart{A: fake(r, 8*l+2*p), B: fake(r, 8*l+2*p+1), Rank: 16, Scale: 2})
			}
			s.segs[l] = append(s.segs[l], seg)
		}
	}
	return s
}

func put[T int32 | float32 | uint64](a *Arena, v []T) uint64 {
	p, ok := a.Put(unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(v[0]))))
	if !ok {
		panic("arena full")
	}
	return p
}

func (s *refStep) run() {
	s.arena.Reset()
	s.ops = s.ops[:0]
	addr := func(t gpukern.Tensor) uint64 { return uint64(uintptr(unsafe.Pointer(t.(*fakeTensor)))) }
	launch := func(fn uintptr, cells ...uint64) {
		s.ops = append(s.ops, Op{Fn: fn, Grid: Dims{refRows, 4, 1}, Block: Dims{256, 1, 1}, Cells: cells})
	}
	plan := &s.plan // once per step: every layer passes the same sequences
	plan.Plan(s.seqs, 16)
	lens, tables, blocks, rows := put(&s.arena, plan.RowLen), put(&s.arena, plan.RowTable), put(&s.arena, plan.Blocks), put(&s.arena, plan.DecRows)
	for layer := range refLayers {
		launch(1, 1, 2, 3, 4, 5, 6)                                   // rmsnorm
		launch(2, 7, 8, 9, uint64(refRows), 12288, 4096)              // gemm
		launch(3, 10, 11, 12, 13, 14, 15, 16, 17, uint64(layer))      // rope + kv write
		launch(4, 18, 19, 20, lens, tables, blocks, rows, 21, 22, 23) // decode attention (one split: no combine)
		launch(2, 28, 29, 30, uint64(refRows), 4096, 4096)            // gemm
		launch(1, 31, 32, 33, 34, 35, 36)                             // rmsnorm
		launch(2, 37, 38, 39, uint64(refRows), 22016, 4096)           // gemm
		launch(6, 40, 41, 42, 43, 44)                                 // silu-mul
		launch(2, 45, 46, 47, uint64(refRows), 4096, 11008)           // gemm
		for l, parts := range []int{3, 1, 2, 1} {
			for _, seg := range s.segs[l] { // the slots the step reads: one per adapter
				s.slots[seg.Parts[0].A.(*fakeTensor).adapter] = true
			}
			t := &s.lora // built once: the expand reuses the shrink's tables
			t.Build(s.segs[l], 0, addr)
			launch(7, 50, 51, put(&s.arena, t.A), put(&s.arena, t.Ranks), uint64(t.Parts), 4096, 16)
			off := make([]int32, parts+1)
			launch(8, 52, 53, put(&s.arena, t.B), put(&s.arena, t.Ranks), put(&s.arena, t.Scales), put(&s.arena, off), uint64(t.Parts), 16)
		}
	}
	if d, _, _ := s.graphs.Decide(s.ops); d == Capture {
		s.graphs.Captured(Signature(s.ops), s.ops, 1)
		s.ops = nil // kept by the graph
	}
	_ = Schedule(s.ops)
}

// BenchmarkReferenceStepHost times refStep once its graph is captured: every iteration
// replays.
func BenchmarkReferenceStepHost(b *testing.B) {
	s := newRefStep()
	for range 3 {
		s.run()
	}
	b.ReportAllocs()
	for b.Loop() {
		s.run()
	}
	if st := s.graphs.Stats; st.Replayed == 0 {
		b.Fatalf("the step never replayed a graph: %+v", st)
	}
}
