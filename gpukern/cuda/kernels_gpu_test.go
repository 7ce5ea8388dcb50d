//go:build cuda

package cuda_test

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

func TestEmbeddingAndGather(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, s := range []struct{ vocab, dim, rows int }{{50, 64, 3}, {1000, 2048, 17}, {32000, 4096, 40}} {
		ids := make([]int32, s.rows)
		for i := range ids {
			ids[i] = int32(r.IntN(s.vocab))
		}
		table, hidden := weight(randn(r, s.vocab*s.dim, 1)), act(randn(r, s.vocab*s.dim, 1))
		o := out(s.rows * s.dim)
		gpu.Embedding(o.g, table.g, ids, s.dim)
		ref.Embedding(o.r, table.r, ids, s.dim)
		o.compare(t, "embedding", shapeOf(s.rows, s.vocab, s.dim), tolF32)
		o2 := out(s.rows * s.dim)
		gpu.Embedding(o2.g, hidden.g, ids, s.dim)
		ref.Embedding(o2.r, hidden.r, ids, s.dim)
		o2.compare(t, "gather", shapeOf(s.rows, s.vocab, s.dim), tolF32)
		for _, p := range []pair{table, hidden, o, o2} {
			p.free()
		}
	}
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, s := range []struct{ rows, dim int }{{1, 64}, {5, 896}, {33, 4096}, {3, 5120}, {2, 1000}, {2, 10000}} { // 10000: too long to hold in registers
		n := s.rows * s.dim
		shape := shapeOf(s.rows, s.dim)
		w := weight(randn(r, s.dim, 1))
		x, o := act(randn(r, n, 2)), out(n)
		gpu.RMSNorm(o.g, x.g, nil, nil, w.g, s.rows, s.dim, 1e-5)
		ref.RMSNorm(o.r, x.r, nil, nil, w.r, s.rows, s.dim, 1e-5)
		o.compare(t, "rmsnorm", shape, tolF32)
		// The fused residual add, writing x and an output that aliases the residual.
		res := act(randn(r, n, 1))
		gpu.RMSNorm(res.g, x.g, res.g, nil, w.g, s.rows, s.dim, 1e-6)
		ref.RMSNorm(res.r, x.r, res.r, nil, w.r, s.rows, s.dim, 1e-6)
		res.compare(t, "rmsnorm+residual", shape, tolF32)
		x.compare(t, "rmsnorm+residual (x)", shape, tolF32)
		// The residual add with a LoRA delta (x += residual + delta), the output aliasing the
		// residual as the model calls it, then into a separate output.
		res2, delta := act(randn(r, n, 1)), act(randn(r, n, 0.5))
		gpu.RMSNorm(res2.g, x.g, res2.g, delta.g, w.g, s.rows, s.dim, 1e-5)
		ref.RMSNorm(res2.r, x.r, res2.r, delta.r, w.r, s.rows, s.dim, 1e-5)
		res2.compare(t, "rmsnorm+residual+delta (out = residual)", shape, tolF32)
		x.compare(t, "rmsnorm+residual+delta (x)", shape, tolF32)
		delta.compare(t, "rmsnorm+residual+delta (delta unchanged)", shape, 0)
		o2, before := out(n), res2.onGPU(t)
		gpu.RMSNorm(o2.g, x.g, res2.g, delta.g, w.g, s.rows, s.dim, 1e-5)
		ref.RMSNorm(o2.r, x.r, res2.r, delta.r, w.r, s.rows, s.dim, 1e-5)
		o2.compare(t, "rmsnorm+residual+delta", shape, tolF32)
		x.compare(t, "rmsnorm+residual+delta (x, 2nd)", shape, tolF32)
		// Against its own value before: the GPU's and the reference's already differ by rounding.
		record(t, "rmsnorm+residual+delta (residual unchanged)", shape, res2.onGPU(t), before, 0)
		for _, p := range []pair{w, x, o, res, res2, delta, o2} {
			p.free()
		}
	}
}

func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, s := range []struct{ m, n, k int }{{1, 64, 32}, {7, 300, 129}, {33, 4096, 4096}, {256, 11008, 4096}, {5, 32000, 4096}} {
		x, w, o := act(randn(r, s.m*s.k, 1)), weight(randn(r, s.n*s.k, 0.02)), out(s.m*s.n)
		gpu.MatMul(o.g, x.g, w.g, s.m, s.n, s.k)
		ref.MatMul(o.r, x.r, w.r, s.m, s.n, s.k)
		o.compare(t, "matmul (bf16)", shapeOf(s.m, s.n, s.k), tolBF16)
		for _, p := range []pair{x, w, o} {
			p.free()
		}
	}
}

// With SetTunedGEMM on, the first cuBLAS GEMM of each shape is timed as cublasGemmEx, as
// each algorithm cuBLASLt's heuristic offers and as the first few of those with k split in
// parts where they can (the emulator's two compute as GemmEx does, and its first splits k in
// each way asked; on a GPU they are cuBLASLt's), the fastest is picked, the results are still
// cuBLAS's, and the profile names the pick: gemm_lt for a cuBLASLt algorithm, gemm for
// GemmEx. A shape is timed once; turned off, every GEMM is GemmEx's again.
func TestTunedGEMM(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	shapes := []struct{ m, n, k int }{{33, 256, 128}, {64, 96, 64}, {128, 512, 256}}
	timed := len(gpu.TunedGEMMs())
	run := func(tuned bool) {
		t.Helper()
		gpu.SetTunedGEMM(tuned)
		defer gpu.SetTunedGEMM(false)
		for _, s := range shapes {
			x, w, o := act(randn(r, s.m*s.k, 1)), weight(randn(r, s.n*s.k, 0.02)), out(s.m*s.n)
			prof, err := gpu.Profile(func() { gpu.MatMul(o.g, x.g, w.g, s.m, s.n, s.k) })
			if err != nil {
				t.Fatal(err)
			}
			ref.MatMul(o.r, x.r, w.r, s.m, s.n, s.k)
			o.compare(t, fmt.Sprintf("matmul (tuned %v)", tuned), shapeOf(s.m, s.n, s.k), tolBF16)
			want := "gemm"
			if i := slices.IndexFunc(gpu.TunedGEMMs(), func(g host.TunedGEMM) bool { return g.M == s.m && g.N == s.n && g.K == s.k }); tuned && i < 0 {
				t.Errorf("%v: not timed", s)
			} else if tuned && gpu.TunedGEMMs()[i].Pick > 0 {
				want = "gemm_lt"
			}
			delete(prof, "to_bf16") // x's conversion
			if name := fmt.Sprintf("%s %d×%d", want, s.n, s.k); prof[name] <= 0 || len(prof) != 1 {
				t.Errorf("%v tuned %v: profile %v, want %s and the conversion alone", s, tuned, prof, name)
			}
			for _, p := range []pair{x, w, o} {
				p.free()
			}
		}
	}
	run(true)
	run(true) // timed already
	run(false)
	log := gpu.TunedGEMMs()[timed:]
	if len(log) != len(shapes) {
		t.Fatalf("%d shapes timed, want each of %d once: %+v", len(log), len(shapes), log)
	}
	emulated := strings.Contains(gpu.Describe(), "emulator")
	for _, g := range log {
		t.Logf("%d×%d×%d: GemmEx then cuBLASLt's algorithms %v (k split %v), picked %d", g.M, g.N, g.K, g.Times, g.Splits, g.Pick)
		if len(g.Times) < 2 || slices.Min(g.Times) <= 0 || g.Pick != host.Fastest(g.Times) || g.Note != "" || g.Refused != 0 {
			t.Errorf("%d×%d×%d: times %v, pick %d, note %q, %d refused; want GemmEx and cuBLASLt's algorithms, all run, the fastest picked",
				g.M, g.N, g.K, g.Times, g.Pick, g.Note, g.Refused)
		}
		// The heuristic's own configurations first (0), then the splits, each one of tuneSplits.
		first := slices.IndexFunc(g.Splits, func(s int) bool { return s != 0 })
		ok := len(g.Splits) == len(g.Times)-1 && first != 0
		for i := max(first, 0); first > 0 && i < len(g.Splits); i++ {
			ok = ok && slices.Contains([]int{2, 3, 4, 6, 8}, g.Splits[i])
		}
		if !ok || emulated && !slices.Equal(g.Splits, []int{0, 0, 2, 3, 4, 6, 8}) {
			t.Errorf("%d×%d×%d: candidates' splits %v for %d times", g.M, g.N, g.K, g.Splits, len(g.Times))
		}
	}
}

// Decode batches of up to 32 rows run gemm_small (gemm_deep where the GEMM has no more blocks
// of 32 columns than the GPU has SMs), which feed the tensor cores straight from their loads
// of w and x (gemm.cuh), with each tile's k cut into chunks where that fills the waves of
// blocks better (gemm_split: host.GEMMSplits); larger ones, and shapes they do not take,
// cuBLAS. With x already in bf16 both sides multiply the same values exactly and differ only
// in the order of fp32 sums, so the tolerance is fp32's: a wrong fragment layout, a lost step
// or chunk of k or a wrong column is far beyond it. Each shape also runs unsplit, with
// gemm_deep alone (split for one block an SM), lean (gemm_lean in place of gemm_small's
// kernels of batches over 8) and with cuBLAS alone, and the profile says
// which kernel ran: the split ones counted by hand for an H100's 132 SMs (264 blocks at once),
// as the emulator has.
func TestSmallGEMM(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 31))
	ran := map[string]bool{}
	for _, s := range []struct {
		m, n, k int
		split   string // the kernel that runs split: gemm_split, or unsplit: gemm_small or gemm_deep
	}{
		{1, 64, 32, "gemm_deep"}, {8, 96, 64, "gemm_deep"}, {9, 160, 96, "gemm_deep"},
		{16, 600, 192, "gemm_deep"},   // 600: the last block overlaps the one before
		{17, 1152, 896, "gemm_deep"},  // 28 steps of k: too few to split
		{32, 512, 1024, "gemm_split"}, // 16 tiles in 2 chunks
		{3, 32, 4096, "gemm_split"},   // 1 tile in 4 chunks
		{32, 96, 11008, "gemm_split"},
		{24, 1000, 1600, "gemm_split"},                                                          // 32 tiles, the last overlapping, in 3 chunks of 16, 17 and 17 steps
		{5, 4800, 64, "gemm_small"}, {16, 4832, 32, "gemm_small"}, {32, 4808, 96, "gemm_small"}, // 150 blocks or more: more than an H100's SMs
		{33, 256, 64, "gemm"}, {8, 300, 136, "gemm"}, {4, 16, 64, "gemm"}, // 33 rows; k not a multiple of 32; n under 32
	} {
		x, w := act(bf16(randn(r, s.m*s.k, 1))), weight(randn(r, s.n*s.k, 0.05))
		shape := shapeOf(s.m, s.n, s.k)
		for _, mode := range []string{"split", "unsplit", "deep", "lean", "cuBLAS"} {
			gpu.SetSmallGEMM(mode != "cuBLAS")
			gpu.SetGEMMSplit(mode != "unsplit")
			gpu.SetDeepGEMM(mode == "deep")
			gpu.SetLeanGEMM(mode == "lean")
			o := out(s.m * s.n)
			prof, err := gpu.Profile(func() { gpu.MatMul(o.g, x.g, w.g, s.m, s.n, s.k) })
			if err != nil {
				t.Fatal(err)
			}
			ref.MatMul(o.r, x.r, w.r, s.m, s.n, s.k)
			kernel := s.split
			switch {
			case mode == "cuBLAS" || s.split == "gemm":
				kernel = "gemm"
			case mode == "deep":
				kernel = "gemm_deep"
			case mode == "lean" && s.m > 8 && s.split != "gemm_deep":
				kernel = "gemm_lean" // split or not as gemm_small would be; unsplit gemm_deep leaves room as it is
			case mode == "unsplit" && (s.n+31)/32 <= gpu.SMs():
				kernel = "gemm_deep"
			case mode == "unsplit":
				kernel = "gemm_small"
			}
			if _, ok := prof[fmt.Sprintf("%s %d×%d", kernel, s.n, s.k)]; !ok {
				t.Errorf("%s, %s: ran %v, want %s", shape, mode, prof, kernel)
			}
			ran[kernel] = true
			o.compare(t, kernel+" (bf16 x)", shape, tolF32)
			o.free()
		}
		for _, p := range []pair{x, w} {
			p.free()
		}
	}
	gpu.SetSmallGEMM(true)
	gpu.SetGEMMSplit(true)
	gpu.SetLeanGEMM(false)
	if gpu.SMs() < 150 && (!ran["gemm_small"] || !ran["gemm_deep"] || !ran["gemm_split"] || !ran["gemm_lean"]) {
		t.Errorf("kernels run: %v; want gemm_small, gemm_deep, gemm_split and gemm_lean", ran)
	}
}

// A GEMM right after RMSNorm or SiLUMul reads the bf16 copy those kernels write of their
// output; after anything else writes that activation (here an Upload, then another RMSNorm's
// output elsewhere), it converts the activation afresh.
func TestGEMMInputCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	rows, dim, n := 6, 896, 300
	w, norm := weight(randn(r, n*dim, 0.02)), weight(randn(r, dim, 1))
	x, h, o := act(randn(r, rows*dim, 1)), out(rows*dim), out(rows*n)
	gpu.RMSNorm(h.g, x.g, nil, nil, norm.g, rows, dim, 1e-5)
	ref.RMSNorm(h.r, x.r, nil, nil, norm.r, rows, dim, 1e-5)
	gpu.MatMul(o.g, h.g, w.g, rows, n, dim)
	ref.MatMul(o.r, h.r, w.r, rows, n, dim)
	o.compare(t, "matmul after rmsnorm", shapeOf(rows, n, dim), tolBF16)
	fresh := randn(r, rows*dim, 1)
	gpu.RMSNorm(h.g, x.g, nil, nil, norm.g, rows, dim, 1e-5)
	gpu.Upload(h.g, fresh)
	ref.Upload(h.r, fresh)
	gpu.MatMul(o.g, h.g, w.g, rows, n, dim)
	ref.MatMul(o.r, h.r, w.r, rows, n, dim)
	o.compare(t, "matmul after an upload", shapeOf(rows, n, dim), tolBF16)
	other := out(rows * dim)
	gpu.RMSNorm(other.g, x.g, nil, nil, norm.g, rows, dim, 1e-5) // the copy is of other now
	gpu.MatMul(o.g, h.g, w.g, rows, n, dim)
	o.compare(t, "matmul of another activation", shapeOf(rows, n, dim), tolBF16)
	gateUp, act2 := act(randn(r, 2*rows*dim, 2)), out(rows*dim)
	gpu.SiLUMul(act2.g, gateUp.g, nil, rows, dim)
	ref.SiLUMul(act2.r, gateUp.r, nil, rows, dim)
	gpu.MatMul(o.g, act2.g, w.g, rows, n, dim)
	ref.MatMul(o.r, act2.r, w.r, rows, n, dim)
	o.compare(t, "matmul after silu_mul", shapeOf(rows, n, dim), tolBF16)
	for _, p := range []pair{w, norm, x, h, o, other, gateUp, act2} {
		p.free()
	}
}

func TestElementwise(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, s := range []struct{ rows, dim int }{{1, 32}, {9, 1000}, {64, 11008}} {
		n := s.rows * s.dim
		bias := weight(randn(r, s.dim, 1))
		x := act(randn(r, n, 1))
		gpu.AddBias(x.g, bias.g, s.rows, s.dim)
		ref.AddBias(x.r, bias.r, s.rows, s.dim)
		x.compare(t, "add_bias", shapeOf(s.rows, s.dim), tolF32)
		y, o := act(randn(r, n, 1)), out(n)
		gpu.Add(o.g, x.g, y.g, n)
		ref.Add(o.r, x.r, y.r, n)
		o.compare(t, "add", shapeOf(n), tolF32)
		gateUp, h := act(randn(r, 2*n, 2)), out(n)
		gpu.SiLUMul(h.g, gateUp.g, nil, s.rows, s.dim)
		ref.SiLUMul(h.r, gateUp.r, nil, s.rows, s.dim)
		h.compare(t, "silu_mul", shapeOf(s.rows, s.dim), tolF32)
		// With the LoRA delta of gate_up (gate and up each add theirs).
		delta, h2 := act(randn(r, 2*n, 1)), out(n)
		gpu.SiLUMul(h2.g, gateUp.g, delta.g, s.rows, s.dim)
		ref.SiLUMul(h2.r, gateUp.r, delta.r, s.rows, s.dim)
		h2.compare(t, "silu_mul+delta", shapeOf(s.rows, s.dim), tolF32)
		gateUp.compare(t, "silu_mul+delta (gate_up unchanged)", shapeOf(s.rows, s.dim), 0)
		delta.compare(t, "silu_mul+delta (delta unchanged)", shapeOf(s.rows, s.dim), 0)
		for _, p := range []pair{bias, x, y, o, gateUp, h, delta, h2} {
			p.free()
		}
	}
}

// stale makes an activation holding NaN on both backends: an output that the kernel (and the
// reference) must write everywhere.
func stale(n int) pair {
	p := out(n)
	nan := make([]float32, n)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	ref.Upload(p.r, nan)
	return p
}

// cacheOf makes a one-layer KV cache on both backends with random (bf16-exact) contents.
func cacheOf(r *rand.Rand, blocks, blockSize, kvHeads, hd int) (g, c *gpukern.KVCache) {
	g = &gpukern.KVCache{NumBlocks: blocks, BlockSize: blockSize, KVHeads: kvHeads, HeadDim: hd}
	c = &gpukern.KVCache{NumBlocks: blocks, BlockSize: blockSize, KVHeads: kvHeads, HeadDim: hd}
	n := blocks * blockSize * kvHeads * hd
	for range 2 {
		v := bf16(randn(r, n, 1))
		gt, rt := gpu.AllocCache(n), ref.AllocCache(n)
		gpu.Upload(gt, v)
		ref.Upload(rt, v)
		if g.K == nil {
			g.K, c.K = []gpukern.Tensor{gt}, []gpukern.Tensor{rt}
		} else {
			g.V, c.V = []gpukern.Tensor{gt}, []gpukern.Tensor{rt}
		}
	}
	return g, c
}

func freeCache(g, c *gpukern.KVCache) {
	for _, p := range []pair{{g: g.K[0], r: c.K[0]}, {g: g.V[0], r: c.V[0]}} {
		p.free()
	}
}

func TestRoPEWriteKV(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, s := range []struct{ rows, heads, kvHeads, hd int }{{1, 4, 2, 16}, {19, 14, 2, 64}, {40, 32, 8, 128}} {
		const blocks, bs, maxPos = 8, 16, 128
		gc, rc := cacheOf(r, blocks, bs, s.kvHeads, s.hd)
		cs := act(ropeTable(maxPos, s.hd))
		pos, slots := make([]int32, s.rows), r.Perm(blocks * bs)[:s.rows]
		slots32 := make([]int32, s.rows)
		for i := range pos {
			pos[i], slots32[i] = int32(r.IntN(maxPos)), int32(slots[i])
		}
		qkv := act(randn(r, s.rows*(s.heads+2*s.kvHeads)*s.hd, 1))
		delta := act(randn(r, s.rows*(s.heads+2*s.kvHeads)*s.hd, 0.5))
		// Without and with the LoRA delta of qkv (the second pass overwrites the same slots).
		for _, d := range []pair{{}, delta} {
			name := "rope"
			if d.n > 0 {
				name = "rope+delta"
			}
			q := out(s.rows * s.heads * s.hd)
			gpu.RoPEWriteKV(q.g, qkv.g, d.g, s.rows, s.heads, pos, cs.g, gc, 0, slots32)
			ref.RoPEWriteKV(q.r, qkv.r, d.r, s.rows, s.heads, pos, cs.r, rc, 0, slots32)
			shape := shapeOf(s.rows, s.heads, s.kvHeads, s.hd)
			q.compare(t, name+" (q)", shape, tolF32)
			qkv.compare(t, name+" (qkv unchanged)", shape, 0)
			if d.n > 0 {
				d.compare(t, name+" (delta unchanged)", shape, 0)
			}
			n := blocks * bs * s.kvHeads * s.hd
			pair{g: gc.K[0], r: rc.K[0], n: n}.compare(t, name+": K cache (bf16)", shape, tolBF16)
			pair{g: gc.V[0], r: rc.V[0], n: n}.compare(t, name+": V cache (bf16)", shape, tolBF16)
			q.free()
		}
		freeCache(gc, rc)
		for _, p := range []pair{cs, qkv, delta} {
			p.free()
		}
	}
}

// ropeTable is RoPEWriteKV's cosSin for positions below maxPos.
func ropeTable(maxPos, hd int) []float32 {
	table := make([]float32, maxPos*hd)
	for p := range maxPos {
		for i := range hd / 2 {
			a := float64(p) * math.Pow(10000, -2*float64(i)/float64(hd))
			table[p*hd+i], table[p*hd+hd/2+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	return table
}

// A step whose metadata is many times the backend's 1 MiB metadata arena: the arena fills up
// between the two uploads of one kernel (its positions, then its slots), more than once before
// the Sync, and a larger one must take over without moving what recorded kernels read.
func TestArenaOverflow(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	const rows, heads, hd, maxPos, kernels = 150_000, 1, 2, 64, 6 // 1.2 MB of metadata per kernel
	gc, rc := cacheOf(r, rows, 1, 1, hd)
	cs, qkv := act(ropeTable(maxPos, hd)), act(randn(r, rows*(heads+2)*hd, 1))
	qs := make([]pair, kernels)
	for i := range qs {
		qs[i] = out(rows * heads * hd) // before recording: an upload flushes
	}
	for _, q := range qs {
		pos, slots := make([]int32, rows), make([]int32, rows)
		for i, s := range r.Perm(rows) {
			pos[i], slots[i] = int32(r.IntN(maxPos)), int32(s)
		}
		gpu.RoPEWriteKV(q.g, qkv.g, nil, rows, heads, pos, cs.g, gc, 0, slots)
		ref.RoPEWriteKV(q.r, qkv.r, nil, rows, heads, pos, cs.r, rc, 0, slots)
	}
	shape := shapeOf(kernels, rows)
	for i, q := range qs {
		q.compare(t, fmt.Sprintf("arena overflow: kernel %d (q)", i), shape, tolF32)
		q.free()
	}
	pair{g: gc.K[0], r: rc.K[0], n: rows * hd}.compare(t, "arena overflow: K cache (bf16)", shape, tolBF16)
	pair{g: gc.V[0], r: rc.V[0], n: rows * hd}.compare(t, "arena overflow: V cache (bf16)", shape, tolBF16)
	freeCache(gc, rc)
	cs.free()
	qkv.free()
}

// attnCase is a batch of sequences: qlens[i] query rows of a context of ctxs[i] tokens.
type attnCase struct {
	heads, kvHeads, hd int
	qlens, ctxs        []int
}

// layout lays c's sequences out in a paged cache of blocks of bs positions, each sequence's
// table in blocks out of order, and returns them with the number of blocks and each query
// row's position and cache slot.
func (c attnCase) layout(bs int) (seqs []gpukern.AttnSeq, blocks int, pos, slots []int32) {
	for i, q := range c.qlens {
		nb := (c.ctxs[i] + bs - 1) / bs
		table := make([]int32, nb)
		for j := range table {
			table[j] = int32(blocks + nb - 1 - j)
		}
		blocks += nb
		seqs = append(seqs, gpukern.AttnSeq{QStart: len(pos), QLen: q, CtxLen: c.ctxs[i], Blocks: table})
		for p := c.ctxs[i] - q; p < c.ctxs[i]; p++ {
			pos, slots = append(pos, int32(p)), append(slots, table[p/bs]*int32(bs)+int32(p%bs))
		}
	}
	return seqs, blocks, pos, slots
}

func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, c := range []attnCase{
		{4, 4, 16, []int{5}, []int{5}},                             // one prefill
		{8, 2, 64, []int{1, 1, 1}, []int{1, 17, 300}},              // decode only
		{14, 2, 64, []int{37, 1, 16, 1}, []int{37, 900, 48, 2000}}, // mixed; chunked prefill; split decode
		{32, 8, 128, []int{100, 1, 1}, []int{100, 4000, 513}},      // Llama-3 shapes
		{32, 32, 128, []int{1, 20}, []int{1500, 20}},               // no GQA
		{16, 4, 256, []int{33, 1}, []int{33, 700}},                 // the largest head
		{12, 12, 32, []int{16, 17, 1}, []int{16, 17, 1}},           // tile edges
		{4, 2, 20, []int{1, 3}, []int{70, 3}},                      // hd not a multiple of 8: no 16-byte loads
		{8, 8, 72, []int{1, 1}, []int{600, 9}},                     // lanes past hd
		{4, 2, 16, []int{1, 1}, []int{40, 600}},                    // decode's smallest heads
		{6, 3, 48, []int{1, 2}, []int{530, 2}},                     // lanes past hd, split
	} {
		const bs = 16
		seqs, blocks, pos, _ := c.layout(bs)
		rows := len(pos)
		gc, rc := cacheOf(r, blocks, bs, c.kvHeads, c.hd)
		q, o := act(randn(r, rows*c.heads*c.hd, 1)), out(rows*c.heads*c.hd)
		p := gpukern.AttnParams{Heads: c.heads, KVHeads: c.kvHeads, HeadDim: c.hd, Scale: float32(1 / math.Sqrt(float64(c.hd)))}
		gpu.Attention(o.g, q.g, gc, 0, seqs, p)
		ref.Attention(o.r, q.r, rc, 0, seqs, p)
		o.compare(t, "attention", shapeOf(c.heads, c.kvHeads, c.hd)+" q"+shapeOf(c.qlens...)+" ctx"+shapeOf(c.ctxs...), tolF32)
		freeCache(gc, rc)
		q.free()
		o.free()
	}
	// A head larger than the kernels take is an error at the next Sync, not a wrong result.
	const hd = cuda.MaxHeadDim + 2
	gc, rc := cacheOf(r, 1, 16, 1, hd)
	q, o := act(randn(r, hd, 1)), out(hd)
	gpu.Attention(o.g, q.g, gc, 0, []gpukern.AttnSeq{{QLen: 1, CtxLen: 1, Blocks: []int32{0}}}, gpukern.AttnParams{Heads: 1, KVHeads: 1, HeadDim: hd, Scale: 1})
	if err := gpu.Sync(); err == nil || !strings.Contains(err.Error(), "at most 256") {
		t.Errorf("attention over heads of %d: Sync = %v, want an error", hd, err)
	}
	freeCache(gc, rc)
	q.free()
	o.free()
}

// RoPEAttention gives what RoPEWriteKV and then Attention give: in a step of decode rows alone
// decode_split rotates q and k and writes k and v into the cache itself, with no rope_write_kv
// (one split or several, the new position in any of them, heads sharing a KV head or not, with
// and without qkv's LoRA delta); with a prefill row in the step, or after SetFusedRoPE(false),
// the two kernels run as before. Fused or not, the GPU's outputs and caches agree to fp32's
// tolerance (the same arithmetic, but for where the compiler fuses a multiply and an add: on
// the emulator, to the bit); against the reference, whose cache keeps the new k and v in fp32
// where the GPU's rounds them to bf16, the tolerance is bf16's.
func TestRoPEAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	defer gpu.SetFusedRoPE(true)
	for _, c := range []attnCase{
		{4, 4, 16, []int{1, 1, 1}, []int{1, 5, 40}},   // a first position
		{8, 2, 64, []int{1, 1, 1}, []int{17, 300, 1}}, // GQA
		{6, 3, 48, []int{1, 1}, []int{530, 2}},        // lanes past hd; contexts in parts
		{32, 32, 128, []int{1, 1}, []int{129, 64}},    // Llama-2's heads; parts that fill the GPU
		{8, 2, 64, []int{1, 7}, []int{40, 7}},         // a prefill row: the two kernels
	} {
		const bs = 16
		seqs, blocks, pos, slots := c.layout(bs)
		rows, width, n := len(pos), (c.heads+2*c.kvHeads)*c.hd, blocks*bs*c.kvHeads*c.hd
		cs := act(ropeTable(slices.Max(c.ctxs), c.hd))
		qkv, delta := act(randn(r, rows*width, 1)), act(randn(r, rows*width, 0.5))
		p := gpukern.AttnParams{Heads: c.heads, KVHeads: c.kvHeads, HeadDim: c.hd, Scale: float32(1 / math.Sqrt(float64(c.hd)))}
		shape := shapeOf(c.heads, c.kvHeads, c.hd) + " q" + shapeOf(c.qlens...) + " ctx" + shapeOf(c.ctxs...)
		decodeOnly := slices.Max(c.qlens) == 1
		for _, d := range []pair{{}, delta} {
			var outs, ks, vs [2][]float32 // apart, fused
			for i, fused := range []bool{false, true} {
				gpu.SetFusedRoPE(fused)
				name := fmt.Sprintf("rope+attention (fused %v, delta %v)", fused, d.n > 0)
				gc, rc := cacheOf(rand.New(rand.NewPCG(8, 8)), blocks, bs, c.kvHeads, c.hd) // the same caches each time
				q, o := out(rows*c.heads*c.hd), out(rows*c.heads*c.hd)
				prof, err := gpu.Profile(func() { gpu.RoPEAttention(o.g, q.g, qkv.g, d.g, rows, pos, cs.g, gc, 0, slots, seqs, p) })
				if err != nil {
					t.Fatal(err)
				}
				if _, apart := prof["rope_write_kv"]; apart == (fused && decodeOnly) || prof["decode_split"] <= 0 {
					t.Errorf("%s %s: kernels %v", name, shape, slices.Sorted(maps.Keys(prof)))
				}
				ref.RoPEWriteKV(q.r, qkv.r, d.r, rows, c.heads, pos, cs.r, rc, 0, slots)
				ref.Attention(o.r, q.r, rc, 0, seqs, p)
				o.compare(t, name, shape, tolBF16)
				kp, vp := pair{g: gc.K[0], r: rc.K[0], n: n}, pair{g: gc.V[0], r: rc.V[0], n: n}
				kp.compare(t, name+": K cache", shape, tolBF16)
				vp.compare(t, name+": V cache", shape, tolBF16)
				outs[i], ks[i], vs[i] = o.onGPU(t), kp.onGPU(t), vp.onGPU(t)
				freeCache(gc, rc)
				q.free()
				o.free()
			}
			name := fmt.Sprintf("rope+attention fused against apart (delta %v)", d.n > 0)
			record(t, name, shape, outs[1], outs[0], tolF32)
			record(t, name+": K cache", shape, ks[1], ks[0], tolF32)
			record(t, name+": V cache", shape, vs[1], vs[0], tolF32)
		}
		for _, x := range []pair{cs, qkv, delta} {
			x.free()
		}
	}
}

// loraCase is a batch of segments over a projection of len(outDims) fused parts: rows per
// segment and each segment's rank per part (0: the adapter leaves the part alone; nil: the
// segment has no adapter).
type loraCase struct {
	in      int
	outDims []int
	rows    []int
	ranks   [][]int
}

func TestLoRA(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	cases := []loraCase{
		{64, []int{64}, []int{3}, [][]int{{8}}},
		{896, []int{128}, []int{2, 5, 1, 7}, [][]int{{16}, nil, {128}, {64}}}, // mixed ranks, a base-model segment
		{4096, []int{11008}, []int{1, 1, 1, 1, 1, 1, 1, 1}, [][]int{{16}, {16}, {32}, {8}, {16}, {64}, nil, {16}}},
		{11008, []int{4096}, []int{20, 12}, [][]int{{128}, {8}}},
		// q, k and v with a rank per part (PEFT's rank_pattern) and adapters missing parts.
		{4096, []int{4096, 1024, 1024}, []int{1, 3, 1, 1, 2}, [][]int{{16, 16, 16}, {8, 0, 8}, nil, {64, 32, 0}, {0, 0, 128}}},
		// gate and up.
		{896, []int{4864, 4864}, []int{4, 1, 3}, [][]int{{16, 16}, {0, 32}, {8, 8}}},
		// A rank of 8 whose rows of v are 10 apart: lora_expand reads v one value at a time.
		{256, []int{64}, []int{2, 3}, [][]int{{8}, {10}}},
		// Sizes and ranks that miss the vectorized paths, three parts of unequal widths.
		{130, []int{100, 37, 61}, []int{1, 4, 2}, [][]int{{3, 5, 7}, {8, 0, 24}, nil}},
		// The largest rank: lora_expand's shared memory at its limit (one more is refused).
		{64, []int{8, 8, 8}, []int{5, 2}, [][]int{{cuda.MaxLoRARank, cuda.MaxLoRARank, cuda.MaxLoRARank}, {8, 0, 8}}},
	}
	// Each case with the LoRA kernels' usual blocks, then with the blocks of 128 threads they
	// have beside lean GEMMs (SetLeanGEMM).
	defer gpu.SetLeanGEMM(false)
	for _, lean := range []bool{false, true} {
		gpu.SetLeanGEMM(lean)
		for _, c := range cases {
			parts := len(c.outDims)
			gs, rs, slots, row, maxRank := c.adapters(t, r)
			width := 0
			for _, d := range c.outDims {
				width += d
			}
			x := act(randn(r, row*c.in, 1))
			shape := shapeOf(c.in) + "→" + shapeOf(c.outDims...) + " ranks " + fmt.Sprint(c.ranks) + fmt.Sprintf(" lean %v", lean)
			// The shrink, then the expand of its v. The expand reads no value of v past a part's
			// rank, where the shrink writes none: it is NaN there on the GPU, which would show in
			// the expand's output.
			v := act(make([]float32, row*parts*maxRank))
			gpu.LoRAShrink(v.g, x.g, gs, c.in, maxRank)
			ref.LoRAShrink(v.r, x.r, rs, c.in, maxRank)
			v.compare(t, "lora_shrink", shape, tolF32)
			vg := v.onGPU(t)
			for i, g := range gs {
				for row := g.Start; row < g.End; row++ {
					for p := range parts {
						rank := 0
						if c.ranks[i] != nil {
							rank = c.ranks[i][p]
						}
						for j := rank; j < maxRank; j++ {
							vg[(row*parts+p)*maxRank+j] = float32(math.NaN())
						}
					}
				}
			}
			gpu.Upload(v.g, vg)
			expandAndCheck(t, "lora_expand", shape, stale(row*width), v, gs, rs, c.outDims, width, maxRank)
			for _, ts := range slots {
				gpu.FreeAdapterWeights(ts)
			}
			x.free()
			v.free()
		}
	}
	// A projection of more fused parts than the kernels take is an error at the next Sync.
	v, o := act(make([]float32, 2*4*8)), stale(2*4*8)
	gpu.LoRAExpand(o.g, v.g, []gpukern.LoRASegment{{Start: 0, End: 2}}, []int{8, 8, 8, 8}, 8)
	if err := gpu.Sync(); err == nil || !strings.Contains(err.Error(), "at most 3") {
		t.Errorf("an expand of 4 parts: Sync = %v, want an error", err)
	}
	v.free()
	o.free()
}

// adapters uploads the case's adapters (random, in bf16) to the GPU, each in a slot of its own
// (slots: to free), and returns its segments on the GPU and on the reference, its rows and its
// largest rank (1 at least).
func (c loraCase) adapters(t *testing.T, r *rand.Rand) (gs, rs []gpukern.LoRASegment, slots [][]gpukern.Tensor, row, maxRank int) {
	t.Helper()
	parts := len(c.outDims)
	maxRank = 1
	for i, n := range c.rows {
		g, s := gpukern.LoRASegment{Start: row, End: row + n}, gpukern.LoRASegment{Start: row, End: row + n}
		row += n
		if c.ranks[i] == nil {
			gs, rs = append(gs, g), append(rs, s)
			continue
		}
		g.Parts, s.Parts = make([]gpukern.LoRAPart, parts), make([]gpukern.LoRAPart, parts)
		var data []gpukern.HostTensor // one adapter's A and B of every part it has, in one slot
		for p, rank := range c.ranks[i] {
			if rank > 0 {
				a, b := randn(r, rank*c.in, 0.05), randn(r, c.outDims[p]*rank, 0.05)
				if i%2 == 0 {
					data = append(data, gpukern.HostTensor{F32: a}, gpukern.HostTensor{F32: b})
				} else { // from a bf16 host tier
					data = append(data, gpukern.HostTensor{BF16: safetensors.BF16s(a)}, gpukern.HostTensor{BF16: safetensors.BF16s(b)})
				}
				scale := float32(r.Float64() + 0.5)
				s.Parts[p] = gpukern.LoRAPart{A: ref.Weight(bf16(a)), B: ref.Weight(bf16(b)), Rank: rank, Scale: scale}
				g.Parts[p] = gpukern.LoRAPart{Rank: rank, Scale: scale}
				maxRank = max(maxRank, rank)
			}
		}
		ts, err := gpu.AdapterWeights(data)
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, ts)
		for p := range g.Parts {
			if g.Parts[p].Rank > 0 {
				g.Parts[p].A, g.Parts[p].B, ts = ts[0], ts[1], ts[2:]
			}
		}
		gs, rs = append(gs, g), append(rs, s)
	}
	return gs, rs, slots, row, maxRank
}

// expandAndCheck runs LoRAExpand of v on both backends into o, a stale delta buffer (every
// element must be written), compares them, checks that rows without an adapter, and parts an
// adapter lacks, come out exactly 0, and frees o.
func expandAndCheck(t *testing.T, check, shape string, o, v pair, gs, rs []gpukern.LoRASegment, outDims []int, width, vStride int) {
	t.Helper()
	defer o.free()
	gpu.LoRAExpand(o.g, v.g, gs, outDims, vStride)
	ref.LoRAExpand(o.r, v.r, rs, outDims, vStride)
	o.compare(t, check, shape, tolF32)
	got := o.onGPU(t)
	for i, g := range gs {
		off := 0
		for p, d := range outDims {
			if g.Parts == nil || g.Parts[p].Rank == 0 {
				for row := g.Start; row < g.End; row++ {
					for k := range d {
						if e := got[row*width+off+k]; e != 0 {
							t.Errorf("%s %s: segment %d row %d part %d col %d: %g, want 0 (no adapter)", check, shape, i, row, p, k, e)
							break
						}
					}
				}
			}
			off += d
		}
	}
}

// The adapter pool refuses an adapter larger than a slot and a ninth adapter, and a freed
// slot is reused. Uploads run in the background: a download right after one waits for it,
// and AdapterReady turns true once it has landed.
func TestAdapterPool(t *testing.T) {
	f32 := func(vs ...[]float32) []gpukern.HostTensor {
		var hs []gpukern.HostTensor
		for _, v := range vs {
			hs = append(hs, gpukern.HostTensor{F32: v})
		}
		return hs
	}
	if _, err := gpu.AdapterWeights(f32(make([]float32, 1<<22+1))); err == nil {
		t.Error("an adapter larger than a slot was stored")
	}
	var held [][]gpukern.Tensor
	for range 8 {
		ts, err := gpu.AdapterWeights(f32([]float32{1, 2, 3}, []float32{4, 5}))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ts)
	}
	first := make([]float32, 2)
	gpu.Download(first, held[0][1])
	if first[0] != 4 || first[1] != 5 {
		t.Errorf("downloaded right after its upload started: %v, want [4 5]", first)
	}
	if _, err := gpu.AdapterWeights(f32([]float32{1})); !errors.Is(err, cuda.ErrPoolFull) {
		t.Errorf("ninth adapter: %v, want ErrPoolFull", err)
	}
	gpu.FreeAdapterWeights(held[3])
	ts, err := gpu.AdapterWeights(f32([]float32{7, 8, 9}))
	if err != nil {
		t.Fatalf("after a free: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !gpu.AdapterReady(ts) {
		if time.Now().After(deadline) {
			t.Fatal("an upload of 3 values has not landed after 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	got := make([]float32, 3)
	gpu.Download(got, ts[0])
	if got[0] != 7 || got[2] != 9 {
		t.Errorf("reused slot holds %v", got)
	}
	held[3] = ts
	for _, ts := range held {
		gpu.FreeAdapterWeights(ts)
	}
	// An adapter of 8 MB crosses the upload's 2 MiB chunks, and its second tensor starts
	// inside one: every value lands where it belongs.
	big := f32(make([]float32, 3_000_001), make([]float32, 1_000_003))
	for _, h := range big {
		for i := range h.F32 {
			h.F32[i] = float32(i%251 - 125) // exact in bf16
		}
	}
	ts, err = gpu.AdapterWeights(big)
	if err != nil {
		t.Fatal(err)
	}
	// The bench's timings of it: staged (in bf16 in page-locked memory), then landed.
	if err := gpu.WaitAdapterStaged(); err != nil {
		t.Errorf("waiting for the large adapter to be staged: %v", err)
	}
	if prepare, transfer, err := gpu.LastAdapterUpload(); err != nil || prepare <= 0 || transfer < 0 {
		t.Errorf("the large adapter's upload: prepared in %v, transferred in %v (%v)", prepare, transfer, err)
	}
	for i, h := range big {
		got := make([]float32, len(h.F32))
		gpu.Download(got, ts[i])
		for j := range got {
			if got[j] != h.F32[j] {
				t.Fatalf("tensor %d of a large adapter: element %d is %v, want %v", i, j, got[j], h.F32[j])
			}
		}
	}
	gpu.FreeAdapterWeights(ts)
}

func TestSample(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	const rows = 64
	for _, vocab := range []int{50, 32000, 151936} {
		logits := randn(r, rows*vocab, 3)
		for range 5 { // a few -inf, as a min_tokens mask leaves
			logits[r.IntN(rows*vocab)] = float32(math.Inf(-1))
		}
		lt := act(logits)
		params := make([]gpukern.SampleParams, rows)
		stable := 0
		for i := range params {
			p := gpukern.SampleParams{Temperature: float32(r.Float64()*1.5 + 0.1), TopP: 1, U: float32(r.Float64())}
			switch i % 4 {
			case 1:
				p.TopK = int32(1 + r.IntN(50))
			case 2:
				p.TopP = float32(0.5 + r.Float64()/2)
			case 3:
				p.TopK, p.TopP, p.MinP = 40, 0.9, 0.05
			}
			if i < 8 {
				p.Temperature = 0 // greedy rows next to random ones
			}
			params[i] = p
		}
		want, got := make([]int32, rows), make([]int32, rows)
		ref.Sample(want, lt.r, 0, vocab, params)
		gpu.Sample(got, lt.g, 0, vocab, params)
		if err := gpu.Sync(); err != nil {
			t.Fatal(err)
		}
		// A variate within rounding of a boundary between two tokens may go either way in
		// fp32: such rows only need a token the reference could also pick.
		bad := 0
		for i, p := range params {
			lo, hi := p, p
			lo.U, hi.U = max(0, p.U-1e-4), min(0.99999, p.U+1e-4)
			near := make([]int32, 2)
			ref.Sample(near[:1], lt.r, i, vocab, []gpukern.SampleParams{lo})
			ref.Sample(near[1:], lt.r, i, vocab, []gpukern.SampleParams{hi})
			if near[0] == want[i] && near[1] == want[i] {
				stable++
				if got[i] != want[i] {
					bad++
					t.Errorf("vocab %d row %d (%+v): sampled %d, reference %d", vocab, i, p, got[i], want[i])
				}
			} else if got[i] != near[0] && got[i] != near[1] && got[i] != want[i] {
				bad++
				t.Errorf("vocab %d row %d at a boundary: sampled %d, reference %d..%d", vocab, i, got[i], near[0], near[1])
			}
		}
		mismatch := []float32{float32(bad)}
		record(t, "sample (argmax, top-k/top-p/min-p)", shapeOf(rows, vocab), mismatch, []float32{0}, 0)
		if stable < rows/2 {
			t.Errorf("only %d of %d rows away from a boundary", stable, rows)
		}
		lt.free()
	}
}

// TestSampleEveryLaunchTurn samples the same rows in 36 launches in a row and wants the same
// tokens from each: on the emulator, they take every order of threads and warps that its
// launches take turns at (emu.cpp), whatever launch the test starts at, so that a barrier
// missing between two of sample_rows' reductions over the same shared memory, which shows only
// where one warp runs ahead of the others, fails here (TestSample, three launches, would meet
// such a turn only by chance). Its top-k and top-p rows make the kernel reduce many times.
// TestSample checks the tokens against the reference.
func TestSampleEveryLaunchTurn(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const rows, vocab = 4, 300
	lt := act(randn(r, rows*vocab, 3))
	defer lt.free()
	params := make([]gpukern.SampleParams, rows)
	for i := range params {
		params[i] = gpukern.SampleParams{Temperature: 1, TopP: 1, TopK: int32(2 + 5*i), U: (float32(i) + 0.5) / rows}
		if i%2 == 1 {
			params[i].TopP = 0.7
		}
	}
	var first []int32
	for launch := range 36 {
		got := make([]int32, rows)
		gpu.Sample(got, lt.g, 0, vocab, params)
		if err := gpu.Sync(); err != nil {
			t.Fatalf("launch %d: %v", launch, err)
		}
		if first == nil {
			first = got
		} else if !slices.Equal(got, first) {
			t.Fatalf("launch %d sampled %v, the first %v", launch, got, first)
		}
	}
}
