package cpuref

import "github.com/lorafleet/lorafleet/gpukern"

// LoRAShrink implements gpukern.Backend.
func (b *Backend) LoRAShrink(v, x gpukern.Tensor, segs []gpukern.LoRASegment, in, vStride int) {
	vs, xs := data(v), data(x)
	width := vStride * numParts(segs)
	for _, s := range segs {
		for p, part := range s.Parts {
			if part.A == nil {
				continue
			}
			a := data(part.A)
			b.parallel(s.End-s.Start, 1, func(lo, hi int) {
				for r := s.Start + lo; r < s.Start+hi; r++ {
					xr := xs[r*in : (r+1)*in]
					vr := vs[r*width+p*vStride:]
					for j := range part.Rank {
						vr[j] = dot(xr, a[j*in:(j+1)*in])
					}
				}
			})
		}
	}
}

// LoRAExpand implements gpukern.Backend.
func (b *Backend) LoRAExpand(delta, v gpukern.Tensor, segs []gpukern.LoRASegment, outDims []int, vStride int) {
	os, vs := data(delta), data(v)
	width, outWidth := vStride*len(outDims), 0
	for _, d := range outDims {
		outWidth += d
	}
	if len(segs) > 0 {
		clear(os[:segs[len(segs)-1].End*outWidth])
	}
	for _, s := range segs {
		off := 0
		for p, part := range s.Parts {
			if part.A != nil {
				bm := data(part.B)
				b.parallel(s.End-s.Start, 1, func(lo, hi int) {
					for r := s.Start + lo; r < s.Start+hi; r++ {
						vr := vs[r*width+p*vStride : r*width+p*vStride+part.Rank]
						or := os[r*outWidth+off : r*outWidth+off+outDims[p]]
						for j := range or {
							or[j] = part.Scale * dot(vr, bm[j*part.Rank:(j+1)*part.Rank])
						}
					}
				})
			}
			off += outDims[p]
		}
	}
}

// numParts is the number of parts of the projection the segments belong to: that of every
// segment with an adapter.
func numParts(segs []gpukern.LoRASegment) int {
	n := 0
	for _, s := range segs {
		n = max(n, len(s.Parts))
	}
	return n
}
