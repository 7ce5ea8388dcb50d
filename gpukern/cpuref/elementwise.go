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
func (b *Backend) RMSNorm(out, x, residual, w gpukern.Tensor, rows, dim int, eps float32) {
	o, xs, ws := data(out), data(x), data(w)
	var res []float32
	if residual != nil {
		res = data(residual)
	}
	b.parallel(rows, max(1, 4096/dim), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := xs[r*dim : (r+1)*dim]
			if res != nil {
				for i, d := range res[r*dim : (r+1)*dim] {
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
func (b *Backend) SiLUMul(out, gate, up gpukern.Tensor, n int) {
	o, g, u := data(out)[:n], data(gate)[:n], data(up)[:n]
	b.parallel(n, 8192, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := float64(g[i])
			o[i] = float32(gi/(1+math.Exp(-gi))) * u[i]
		}
	})
}

// RoPEWriteKV implements gpukern.Backend.
func (b *Backend) RoPEWriteKV(q, k, v gpukern.Tensor, rows, heads int, pos []int32, cosSin gpukern.Tensor, cache *gpukern.KVCache, layer int, slots []int32) {
	rope(data(q), rows, heads, cache.HeadDim, pos, data(cosSin))
	rope(data(k), rows, cache.KVHeads, cache.HeadDim, pos, data(cosSin))
	width := cache.KVHeads * cache.HeadDim
	kc, vc, ks, vs := data(cache.K[layer]), data(cache.V[layer]), data(k), data(v)
	for i, s := range slots {
		copy(kc[int(s)*width:(int(s)+1)*width], ks[i*width:(i+1)*width])
		copy(vc[int(s)*width:(int(s)+1)*width], vs[i*width:(i+1)*width])
	}
}

// rope rotates each head of xs [rows, heads·headDim] by its row's position.
func rope(xs []float32, rows, heads, headDim int, pos []int32, cs []float32) {
	half := headDim / 2
	for r := range rows {
		table := cs[int(pos[r])*headDim : (int(pos[r])+1)*headDim]
		cos, sin := table[:half], table[half:]
		for h := range heads {
			v := xs[(r*heads+h)*headDim : (r*heads+h+1)*headDim]
			x1, x2 := v[:half], v[half:]
			for i := range half {
				a, c := x1[i], x2[i]
				x1[i] = a*cos[i] - c*sin[i]
				x2[i] = c*cos[i] + a*sin[i]
			}
		}
	}
}
