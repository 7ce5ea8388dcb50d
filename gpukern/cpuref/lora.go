package cpuref

import "github.com/lorafleet/lorafleet/gpukern"

// LoRAShrink implements gpukern.Backend.
func (b *Backend) LoRAShrink(v, x gpukern.Tensor, segs []gpukern.LoRASegment, in, vStride int) {
	vs, xs := data(v), data(x)
	for _, s := range segs {
		if s.A == nil {
			continue
		}
		a := data(s.A)
		b.parallel(s.End-s.Start, 1, func(lo, hi int) {
			for r := s.Start + lo; r < s.Start+hi; r++ {
				xr := xs[r*in : (r+1)*in]
				for j := range s.Rank {
					vs[r*vStride+j] = dot(xr, a[j*in:(j+1)*in])
				}
			}
		})
	}
}

// LoRAExpand implements gpukern.Backend.
func (b *Backend) LoRAExpand(out, v gpukern.Tensor, segs []gpukern.LoRASegment, outDim, vStride int) {
	os, vs := data(out), data(v)
	for _, s := range segs {
		if s.A == nil {
			continue
		}
		bm := data(s.B)
		b.parallel(s.End-s.Start, 1, func(lo, hi int) {
			for r := s.Start + lo; r < s.Start+hi; r++ {
				vr := vs[r*vStride : r*vStride+s.Rank]
				or := os[r*outDim : (r+1)*outDim]
				for j := range or {
					or[j] += s.Scale * dot(vr, bm[j*s.Rank:(j+1)*s.Rank])
				}
			}
		})
	}
}
