package cpuref

import (
	"math"

	"github.com/lorafleet/lorafleet/gpukern"
)

// Embedding implements gpukern.Backend.
func (b *Backend) Embedding(out, table gpukern.Tensor, ids []int32, dim int) {
	o, t := data(out), data(table)
	for i, id := range ids {
		copy(o[i*dim:(i+1)*dim], t[int(id)*dim:(int(id)+1)*dim])
	}
}

// RMSNorm implements gpukern.Backend. The mean of squares is accumulated in float64, as
// Hugging Face upcasts before the reduction.
func (b *Backend) RMSNorm(out, x, residual, delta, w gpukern.Tensor, rows, dim int, eps float32) {
	o, xs, ws := data(out), data(x), data(w)
	res, del := optional(residual), optional(delta)
	b.parallel(rows, max(1, 4096/dim), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := xs[r*dim : (r+1)*dim]
			if res != nil {
				for i, d := range res[r*dim : (r+1)*dim] {
					if del != nil {
						d += del[r*dim+i]
					}
					row[i] += d
				}
			}
			var ss float64
			for _, v := range row {
				ss += float64(v) * float64(v)
			}
			inv := float32(1 / math.Sqrt(ss/float64(dim)+float64(eps)))
			dst := o[r*dim : (r+1)*dim]
			for i, v := range row {
				dst[i] = v * inv * ws[i]
			}
		}
	})
}

// AddBias implements gpukern.Backend.
func (b *Backend) AddBias(x, bias gpukern.Tensor, rows, dim int) {
	xs, bs := data(x), data(bias)
	for r := range rows {
		row := xs[r*dim : (r+1)*dim]
		for i := range row {
			row[i] += bs[i]
		}
	}
}

// Add implements gpukern.Backend.
func (b *Backend) Add(out, a, c gpukern.Tensor, n int) {
	o, as, cs := data(out)[:n], data(a)[:n], data(c)[:n]
	for i := range o {
		o[i] = as[i] + cs[i]
	}
}

// SiLUMul implements gpukern.Backend.
func (b *Backend) SiLUMul(out, gateUp, delta gpukern.Tensor, rows, dim int) {
	o, gu, del := data(out), data(gateUp), optional(delta)
	b.parallel(rows, max(1, 8192/dim), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dst, g := o[r*dim:(r+1)*dim], withDelta(gu, del, 2*r*dim, (2*r+2)*dim)
			for i := range dst {
				gi := float64(g[i])
				dst[i] = float32(gi/(1+math.Exp(-gi))) * g[dim+i]
			}
		}
	})
}

// optional is t's data, or nil for a nil t.
func optional(t gpukern.Tensor) []float32 {
	if t == nil {
		return nil
	}
	return data(t)
}

// withDelta is x[lo:hi], plus delta[lo:hi] (in a copy) when delta is not nil.
func withDelta(x, delta []float32, lo, hi int) []float32 {
	if delta == nil {
		return x[lo:hi]
	}
	sum := make([]float32, hi-lo)
	for i := range sum {
		sum[i] = x[lo+i] + delta[lo+i]
	}
	return sum
}

// RoPEWriteKV implements gpukern.Backend.
func (b *Backend) RoPEWriteKV(q, qkv, delta gpukern.Tensor, rows, heads int, pos []int32, cosSin gpukern.Tensor, cache *gpukern.KVCache, layer int, slots []int32) {
	hd, qw, kvw := cache.HeadDim, heads*cache.HeadDim, cache.KVHeads*cache.HeadDim
	qs, in, del, cs := data(q), data(qkv), optional(delta), data(cosSin)
	kc, vc := data(cache.K[layer]), data(cache.V[layer])
	for r := range rows {
		row := withDelta(in, del, r*(qw+2*kvw), (r+1)*(qw+2*kvw))
		table := cs[int(pos[r])*hd : (int(pos[r])+1)*hd]
		s := int(slots[r])
		rope(qs[r*qw:(r+1)*qw], row[:qw], hd, table)
		rope(kc[s*kvw:(s+1)*kvw], row[qw:qw+kvw], hd, table)
		copy(vc[s*kvw:(s+1)*kvw], row[qw+kvw:])
	}
}

// rope writes to dst the heads of src rotated by the cos and sin halves of table.
func rope(dst, src []float32, headDim int, table []float32) {
	half := headDim / 2
	cos, sin := table[:half], table[half:]
	for h := 0; h < len(src); h += headDim {
		x1, x2 := src[h:h+half], src[h+half:h+headDim]
		y1, y2 := dst[h:h+half], dst[h+half:h+headDim]
		for i := range half {
			a, c := x1[i], x2[i]
			y1[i] = a*cos[i] - c*sin[i]
			y2[i] = c*cos[i] + a*sin[i]
		}
	}
}
