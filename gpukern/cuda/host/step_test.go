package host

import (
	"testing"
	"time"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern"
)

// refStep is the bookkeeping the CUDA backend does on the host for one Llama-2-7B decode
// step of the reference batch (32 rows, each with its own rank-16 adapter on all
// seven projections, context 128), as gpukern/cuda's ops record it: the attention plan, then per
// layer the LoRA tables of its four fused projections (shared by their shrink and expand), their
// metadata in the arena, the adapter slots read and 17 launches, with a graph lookup for each
// part of the step flushed (FlushPoint: the first after FirstFlushOps launches, then every
// FlushOps). Until the first flush the GPU waits for the host; after it, the host records
// while the GPU runs.
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

// run records one step as the model calls the backend, launching a part of it whenever
// FlushPoint says so, and returns how long the host took until the first launch: the GPU
// idles that long, and works beside the host for the rest.
func (s *refStep) run() (first time.Duration) {
	start := time.Now()
	s.arena.Reset()
	addr := func(t gpukern.Tensor) uint64 { return uint64(uintptr(unsafe.Pointer(t.(*fakeTensor)))) }
	every := FirstFlushOps
	launch := func(o Op) {
		o.Grid, o.Block = Dims{refRows, 4, 1}, Dims{256, 1, 1}
		s.ops = append(s.ops, o)
		if FlushPoint(s.ops, every) {
			s.flush()
			if first == 0 {
				first, every = time.Since(start), FlushOps
			}
		}
	}
	plan := &s.plan // once per step: every layer passes the same sequences
	plan.Plan(s.seqs, 16)
	lens, tables, blocks, rows := put(&s.arena, plan.RowLen), put(&s.arena, plan.RowTable), put(&s.arena, plan.Blocks), put(&s.arena, plan.DecRows)
	// lora records a projection's shrink and expand (on the side stream) and its GEMM.
	lora := func(l, parts, n, k int) {
		for _, seg := range s.segs[l] { // the slots the step reads: one per adapter
			s.slots[seg.Parts[0].A.(*fakeTensor).adapter] = true
		}
		t := &s.lora // built once: the expand reuses the shrink's tables
		t.Build(s.segs[l], 0, addr)
		launch(Op{Fn: 7, Side: true, Cells: []uint64{50, 51, put(&s.arena, t.A), put(&s.arena, t.Ranks), uint64(t.Parts), 4096, 16}})
		off := make([]int32, parts+1)
		launch(Op{Fn: 8, Side: true, Cells: []uint64{52, 53, put(&s.arena, t.B), put(&s.arena, t.Ranks), put(&s.arena, t.Scales), put(&s.arena, off), uint64(t.Parts), 16}})
		launch(Op{Fn: 2, Cells: []uint64{7, 8, 9, refRows, uint64(n), uint64(k)}})
	}
	for layer := range refLayers {
		launch(Op{Fn: 1, Join: true, Cells: []uint64{1, 2, 3, 4, 5, 6}}) // rmsnorm (+ the last delta)
		lora(0, 3, 12288, 4096)
		launch(Op{Fn: 3, Join: true, Cells: []uint64{10, 11, 12, 13, 14, 15, 16, 17, uint64(layer)}}) // rope + kv write
		launch(Op{Fn: 4, Cells: []uint64{18, 19, 20, lens, tables, blocks, rows, 21, 22, 23}})        // decode attention (one split)
		lora(1, 1, 4096, 4096)
		launch(Op{Fn: 1, Join: true, Cells: []uint64{31, 32, 33, 34, 35, 36}}) // rmsnorm
		lora(2, 2, 22016, 4096)
		launch(Op{Fn: 6, Join: true, Cells: []uint64{40, 41, 42, 43, 44}}) // silu-mul
		lora(3, 1, 4096, 11008)
	}
	s.flush()
	return first
}

// flush decides how the recorded part of the step runs, as the backend's flush does.
func (s *refStep) flush() {
	if d, _, _ := s.graphs.Decide(s.ops); d == Capture {
		s.graphs.Captured(Signature(s.ops), s.ops, 1)
		s.ops = nil // kept by the graph
	}
	_ = Schedule(s.ops)
	s.ops = s.ops[:0]
}

// BenchmarkReferenceStepHost times refStep once its graphs are captured: every iteration
// replays them. ns/op is the host's time per step; first-flush-ns the part of it before the
// GPU gets its first launches.
func BenchmarkReferenceStepHost(b *testing.B) {
	s := newRefStep()
	for range 3 {
		s.run()
	}
	b.ReportAllocs()
	var first time.Duration
	for b.Loop() {
		first += s.run()
	}
	b.ReportMetric(float64(first.Nanoseconds())/float64(b.N), "first-flush-ns")
	if st := s.graphs.Stats; st.Replayed == 0 || st.Captured < 2 {
		b.Fatalf("want a step cut into several graphs, replayed: %+v", st)
	}
}
