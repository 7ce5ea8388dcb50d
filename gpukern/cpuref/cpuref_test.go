package cpuref

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern"
)

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) < len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); d > tol*(1+math.Abs(w)) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %v, want %v (|diff| %.3g)", what, i, got[i], w, d)
		}
	}
}

// refMatMul is out[m,n] = x[m,k]·w[n,k]ᵀ in float64.
func refMatMul(x, w []float32, m, n, k int) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				s += float64(x[i*k+p]) * float64(w[j*k+p])
			}
			out[i*n+j] = s
		}
	}
	return out
}

func TestMatMulAgainstFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	be := New(3)
	for _, s := range [][3]int{{1, 1, 1}, {1, 7, 5}, {3, 9, 17}, {4, 2, 8}, {9, 33, 64}, {17, 130, 96}} {
		m, n, k := s[0], s[1], s[2]
		x, w := randSlice(r, m*k), randSlice(r, n*k)
		out := be.Alloc(m * n)
		be.MatMul(out, be.Weight(x), be.Weight(w), m, n, k)
		closeTo(t, fmt.Sprintf("matmul %v", s), out.(*Tensor).data, refMatMul(x, w, m, n, k), 1e-5)
	}
}

// A row's product must be bit-identical whatever the batch around it and the core count.
func TestMatMulBatchInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	m, n, k := 13, 67, 48
	x, w := randSlice(r, m*k), randSlice(r, n*k)
	full := New(4).Alloc(m * n)
	New(4).MatMul(full, New(4).Weight(x), New(4).Weight(w), m, n, k)
	be := New(1)
	for i := range m {
		row := be.Alloc(n)
		be.MatMul(row, be.Weight(x[i*k:(i+1)*k]), be.Weight(w), 1, n, k)
		for j := range n {
			if a, b := row.(*Tensor).data[j], full.(*Tensor).data[i*n+j]; a != b {
				t.Fatalf("row %d col %d: alone %v, in batch %v", i, j, a, b)
			}
		}
	}
}

func TestRMSNormSiLUMulAddBias(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	be := New(2)
	rows, dim := 3, 10
	x, w := randSlice(r, rows*dim), randSlice(r, dim)
	out := be.Alloc(rows * dim)
	be.RMSNorm(out, be.Weight(x), nil, nil, be.Weight(w), rows, dim, 1e-5)
	want := rmsRef(x, w, rows, dim)
	closeTo(t, "rmsnorm", out.(*Tensor).data, want, 1e-6)

	// With a residual (and its LoRA delta): x += residual + delta is kept, and the norm is of
	// the sum; out aliases the residual.
	res, del := randSlice(r, rows*dim), randSlice(r, rows*dim)
	for _, delta := range [][]float32{nil, del} {
		xt, rt := be.Weight(x), be.Weight(res)
		var dt gpukern.Tensor
		if delta != nil {
			dt = be.Weight(delta)
		}
		be.RMSNorm(rt, xt, rt, dt, be.Weight(w), rows, dim, 1e-5)
		sum := make([]float32, rows*dim)
		sum64 := make([]float64, rows*dim)
		for i := range sum {
			d := res[i]
			if delta != nil {
				d += delta[i]
			}
			sum[i] = x[i] + d
			sum64[i] = float64(sum[i])
		}
		closeTo(t, "residual kept", xt.(*Tensor).data, sum64, 0)
		closeTo(t, "rmsnorm of the sum", rt.(*Tensor).data, rmsRef(sum, w, rows, dim), 1e-6)
	}

	// silu_mul over 2 rows of gate (5 values) and up (5 values), fused, plus a delta.
	gu, gd := randSlice(r, 20), randSlice(r, 20)
	for _, delta := range [][]float32{nil, gd} {
		act := be.Alloc(10)
		var dt gpukern.Tensor
		g := slices.Clone(gu)
		if delta != nil {
			dt = be.Weight(delta)
			for i := range g {
				g[i] += delta[i]
			}
		}
		be.SiLUMul(act, be.Weight(gu), dt, 2, 5)
		for i := range want[:10] {
			row, c := i/5, i%5
			gi := float64(g[row*10+c])
			want[i] = gi / (1 + math.Exp(-gi)) * float64(g[row*10+5+c])
		}
		closeTo(t, "silu_mul", act.(*Tensor).data, want[:10], 1e-6)
	}

	xb := be.Weight(x)
	be.AddBias(xb, be.Weight(w), rows, dim)
	for i := range want {
		want[i] = float64(x[i]) + float64(w[i%dim])
	}
	closeTo(t, "add_bias", xb.(*Tensor).data, want, 1e-7)
}

// rmsRef is RMSNorm in float64.
func rmsRef(x, w []float32, rows, dim int) []float64 {
	want := make([]float64, rows*dim)
	for i := range rows {
		var ss float64
		for j := range dim {
			ss += float64(x[i*dim+j]) * float64(x[i*dim+j])
		}
		inv := 1 / math.Sqrt(ss/float64(dim)+1e-5)
		for j := range dim {
			want[i*dim+j] = float64(x[i*dim+j]) * inv * float64(w[j])
		}
	}
	return want
}

// RoPEWriteKV rotates q (2 heads) and k (1 KV head) of a fused qkv row in rotate_half order,
// writes the rotated q, and stores the rotated k and the untouched v at the row's slot.
func TestRoPEWriteKV(t *testing.T) {
	be := New(1)
	headDim, heads := 4, 2
	// Position 1 has angles (0.3, 1.1) for the two pairs.
	cs := []float32{0, 0, 0, 0, float32(math.Cos(0.3)), float32(math.Cos(1.1)), float32(math.Sin(0.3)), float32(math.Sin(1.1))}
	q := []float32{1, 2, 3, 4, -1, 0.5, 2, -3}
	k, v := []float32{0.5, -2, 1.5, 3}, []float32{9, 8, 7, 6}
	rotated := func(x []float32) []float64 {
		var want []float64
		for h := range len(x) / headDim {
			x := x[h*headDim : (h+1)*headDim]
			for i, ang := range []float64{0.3, 1.1} { // pairs (i, i+2)
				want = append(want, float64(x[i])*math.Cos(ang)-float64(x[i+2])*math.Sin(ang))
			}
			for i, ang := range []float64{0.3, 1.1} {
				want = append(want, float64(x[i+2])*math.Cos(ang)+float64(x[i])*math.Sin(ang))
			}
		}
		return want
	}
	cache := &gpukern.KVCache{NumBlocks: 1, BlockSize: 4, KVHeads: 1, HeadDim: headDim,
		K: []gpukern.Tensor{be.Alloc(4 * headDim)}, V: []gpukern.Tensor{be.Alloc(4 * headDim)}}
	qkv := slices.Concat(q, k, v)
	qt, qkvt := be.Alloc(len(q)), be.Weight(qkv)
	be.RoPEWriteKV(qt, qkvt, nil, 1, heads, []int32{1}, be.Weight(cs), cache, 0, []int32{2})
	closeTo(t, "rope q", qt.(*Tensor).data, rotated(q), 1e-6)
	closeTo(t, "k at slot 2", cache.K[0].(*Tensor).data[2*headDim:3*headDim], rotated(k), 1e-6)
	closeTo(t, "v at slot 2", cache.V[0].(*Tensor).data[2*headDim:3*headDim], []float64{9, 8, 7, 6}, 0)
	closeTo(t, "slot 0 untouched", cache.K[0].(*Tensor).data[:headDim], []float64{0, 0, 0, 0}, 0)
	if !slices.Equal(qkvt.(*Tensor).data, qkv) {
		t.Error("qkv changed")
	}

	// With a LoRA delta: q, k and v are qkv + delta, and neither changes.
	delta := []float32{1, 0, -1, 0, 0, 2, 0, 0, 0.5, 0, 0, 0, -9, 0, 1, 0}
	dt := be.Weight(delta)
	be.RoPEWriteKV(qt, qkvt, dt, 1, heads, []int32{1}, be.Weight(cs), cache, 0, []int32{2})
	sum := make([]float32, len(qkv))
	for i := range sum {
		sum[i] = qkv[i] + delta[i]
	}
	closeTo(t, "rope q+delta", qt.(*Tensor).data, rotated(sum[:8]), 1e-6)
	closeTo(t, "k+delta at slot 2", cache.K[0].(*Tensor).data[2*headDim:3*headDim], rotated(sum[8:12]), 1e-6)
	closeTo(t, "v+delta at slot 2", cache.V[0].(*Tensor).data[2*headDim:3*headDim], []float64{0, 8, 8, 6}, 0)
	if !slices.Equal(qkvt.(*Tensor).data, qkv) || !slices.Equal(dt.(*Tensor).data, delta) {
		t.Error("qkv or delta changed")
	}
}

// refAttention is causal GQA attention over contiguous K/V in float64.
func refAttention(q, k, v []float32, ctx, qlen, heads, kvHeads, hd int) []float64 {
	out := make([]float64, qlen*heads*hd)
	for i := range qlen {
		see := ctx - qlen + i + 1
		for h := range heads {
			kh := h / (heads / kvHeads)
			sc := make([]float64, see)
			mx := math.Inf(-1)
			for p := range see {
				var s float64
				for d := range hd {
					s += float64(q[(i*heads+h)*hd+d]) * float64(k[(p*kvHeads+kh)*hd+d])
				}
				sc[p] = s / math.Sqrt(float64(hd))
				mx = math.Max(mx, sc[p])
			}
			var sum float64
			for p := range sc {
				sc[p] = math.Exp(sc[p] - mx)
				sum += sc[p]
			}
			for p := range see {
				for d := range hd {
					out[(i*heads+h)*hd+d] += sc[p] / sum * float64(v[(p*kvHeads+kh)*hd+d])
				}
			}
		}
	}
	return out
}

func TestPagedAttentionGQA(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	be := New(2)
	heads, kvHeads, hd, bs := 4, 2, 8, 4
	cache := &gpukern.KVCache{NumBlocks: 8, BlockSize: bs, KVHeads: kvHeads, HeadDim: hd,
		K: []gpukern.Tensor{be.Alloc(8 * bs * kvHeads * hd)}, V: []gpukern.Tensor{be.Alloc(8 * bs * kvHeads * hd)}}
	// Sequence A: 7 tokens of context, 3 query rows (chunked prefill), blocks scattered.
	// Sequence B: decode, 10 tokens of context, 1 query row.
	type seq struct {
		ctx, qlen int
		blocks    []int32
	}
	seqs := []seq{{7, 3, []int32{5, 2}}, {10, 1, []int32{0, 7, 3}}}
	var batch []gpukern.AttnSeq
	var qAll []float32
	var want []float64
	row := 0
	for _, s := range seqs {
		k, v := randSlice(r, s.ctx*kvHeads*hd), randSlice(r, s.ctx*kvHeads*hd)
		slots := make([]int32, s.ctx)
		for p := range slots {
			slots[p] = s.blocks[p/bs]*int32(bs) + int32(p%bs)
		}
		// Position 0 of an identity table: RoPEWriteKV stores k unrotated.
		identity := be.Weight([]float32{1, 1, 1, 1, 0, 0, 0, 0})
		qkv := make([]float32, 0, s.ctx*(heads+2*kvHeads)*hd)
		for p := range s.ctx {
			w := kvHeads * hd
			qkv = append(append(append(qkv, make([]float32, heads*hd)...), k[p*w:(p+1)*w]...), v[p*w:(p+1)*w]...)
		}
		be.RoPEWriteKV(be.Alloc(s.ctx*heads*hd), be.Weight(qkv), nil, s.ctx, heads, make([]int32, s.ctx), identity, cache, 0, slots)
		q := randSlice(r, s.qlen*heads*hd)
		qAll = append(qAll, q...)
		want = append(want, refAttention(q, k, v, s.ctx, s.qlen, heads, kvHeads, hd)...)
		batch = append(batch, gpukern.AttnSeq{QStart: row, QLen: s.qlen, CtxLen: s.ctx, Blocks: s.blocks})
		row += s.qlen
	}
	out := be.Alloc(row * heads * hd)
	be.Attention(out, be.Weight(qAll), cache, 0, batch, gpukern.AttnParams{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))})
	closeTo(t, "attention", out.(*Tensor).data, want, 1e-5)
}

// A fused projection of three parts of different output sizes: one adapter with a rank per
// part, rows without an adapter, and an adapter that leaves the middle part alone. The
// expand writes the delta: zero where a row has no adapter for a part, whatever was there.
func TestLoRASegments(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	be := New(2)
	in, stride, rows := 6, 4, 6
	outDims, width := []int{5, 3, 4}, 5+3+4
	x := randSlice(r, rows*in)
	stale := randSlice(r, rows*width)
	type part struct {
		rank  int
		scale float32
		a, b  []float32
	}
	adapter := func(ranks ...int) []part {
		ps := make([]part, len(ranks))
		for p, rank := range ranks {
			if rank > 0 {
				ps[p] = part{rank, float32(p) + 0.5, randSlice(r, rank*in), randSlice(r, outDims[p]*rank)}
			}
		}
		return ps
	}
	runs := []struct {
		start, end int
		parts      []part
	}{{0, 2, adapter(2, 4, 1)}, {2, 3, nil}, {3, 5, adapter(4, 0, 3)}, {5, 6, adapter(1, 1, 4)}}
	var segs []gpukern.LoRASegment
	want := make([]float64, rows*width)
	for _, run := range runs {
		s := gpukern.LoRASegment{Start: run.start, End: run.end}
		off := 0
		for p, pt := range run.parts {
			s.Parts = append(s.Parts, gpukern.LoRAPart{Rank: pt.rank, Scale: pt.scale})
			if pt.rank > 0 {
				s.Parts[p].A, s.Parts[p].B = be.Weight(pt.a), be.Weight(pt.b)
				for i := run.start; i < run.end; i++ {
					ax := refMatMul(x[i*in:(i+1)*in], pt.a, 1, pt.rank, in)
					for j := range outDims[p] {
						var d float64
						for q := range pt.rank {
							d += ax[q] * float64(pt.b[j*pt.rank+q])
						}
						want[i*width+off+j] += float64(pt.scale) * d
					}
				}
			}
			off += outDims[p]
		}
		segs = append(segs, s)
	}
	v, out := be.Alloc(rows*len(outDims)*stride), be.Weight(stale)
	be.LoRAShrink(v, be.Weight(x), segs, in, stride)
	be.LoRAExpand(out, v, segs, outDims, stride)
	closeTo(t, "lora", out.(*Tensor).data, want, 1e-5)
}

func TestEmbeddingGather(t *testing.T) {
	be := New(1)
	table := be.Weight([]float32{0, 1, 10, 11, 20, 21})
	out := be.Alloc(6)
	be.Embedding(out, table, []int32{2, 0, 2}, 2)
	closeTo(t, "embedding", out.(*Tensor).data, []float64{20, 21, 0, 1, 20, 21}, 0)
}

// BenchmarkMatMul reports GFLOP/s for decode-shaped (m=1, 8) and prefill-shaped (m=128)
// products with a 2048×2048 weight.
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	be := New(0)
	n, k := 2048, 2048
	w := be.Weight(randSlice(r, n*k))
	for _, m := range []int{1, 8, 128} {
		b.Run(fmt.Sprintf("m=%d", m), func(b *testing.B) {
			x, out := be.Weight(randSlice(r, m*k)), be.Alloc(m*n)
			for b.Loop() {
				be.MatMul(out, x, w, m, n, k)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// Sample's edge rules (gpukern.SampleParams): greedy takes the first largest valid logit,
// NaN and -inf are never valid, a row with no valid logit gives 0, top-k keeps ties, and the
// variate picks in vocabulary order. (worker/sample's tests check the distribution.)
func TestSampleEdges(t *testing.T) {
	inf, nan := float32(math.Inf(-1)), float32(math.NaN())
	b := New(1)
	for _, c := range []struct {
		name string
		row  []float32
		p    gpukern.SampleParams
		want int32
	}{
		{"greedy first max", []float32{1, 3, 3, 2}, gpukern.SampleParams{}, 1},
		{"greedy skips NaN", []float32{nan, 1, 2}, gpukern.SampleParams{}, 2},
		{"nothing valid", []float32{inf, nan, inf}, gpukern.SampleParams{Temperature: 1, TopP: 1, U: 0.5}, 0},
		{"top-k 1", []float32{0, 5, 1}, gpukern.SampleParams{Temperature: 1, TopP: 1, TopK: 1, U: 0.99}, 1},
		{"top-k 1 keeps ties", []float32{5, 0, 5}, gpukern.SampleParams{Temperature: 1, TopP: 1, TopK: 1, U: 0.99}, 2},
		{"u picks in order", []float32{0, 0, 0, 0}, gpukern.SampleParams{Temperature: 1, TopP: 1, U: 0.6}, 2},
		{"-inf never picked", []float32{inf, 0, inf}, gpukern.SampleParams{Temperature: 1, TopP: 1, U: 0.999}, 1},
		{"min-p drops the tail", []float32{0, -10, 0}, gpukern.SampleParams{Temperature: 1, TopP: 1, MinP: 0.1, U: 0.45}, 0},
		{"top-p of two", []float32{2, 2, 0, 0}, gpukern.SampleParams{Temperature: 1, TopP: 0.5, U: 0.9}, 1},
	} {
		ids := []int32{-1}
		b.Sample(ids, b.Weight(c.row), 0, len(c.row), []gpukern.SampleParams{c.p})
		if ids[0] != c.want {
			t.Errorf("%s: %d, want %d", c.name, ids[0], c.want)
		}
	}
}
