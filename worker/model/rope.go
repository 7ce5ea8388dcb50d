package model

import "math"

// invFreq returns the rotary inverse frequencies for each pair of a head, after scaling.
func (r RoPEConfig) invFreq(headDim int) []float64 {
	half := headDim / 2
	inv := make([]float64, half)
	for i := range inv {
		inv[i] = math.Pow(r.Theta, -float64(2*i)/float64(headDim))
	}
	switch r.Type {
	case "linear":
		for i := range inv {
			inv[i] /= r.Factor
		}
	case "llama3":
		old := float64(r.OriginalMaxPos)
		lowWavelen, highWavelen := old/r.LowFreqFactor, old/r.HighFreqFactor
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen > lowWavelen:
				inv[i] = f / r.Factor
			case wavelen < highWavelen:
				// high frequencies are kept
			default:
				s := (old/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
				inv[i] = (1-s)*f/r.Factor + s*f
			}
		}
	}
	return inv
}

// cosSinTable returns [positions, headDim]: cos(p·inv) in the first half of each row, sin in
// the second, computed in float64 and rounded once.
func (r RoPEConfig) cosSinTable(positions, headDim int) []float32 {
	inv := r.invFreq(headDim)
	half := headDim / 2
	t := make([]float32, positions*headDim)
	for p := range positions {
		row := t[p*headDim : (p+1)*headDim]
		for i, f := range inv {
			s, c := math.Sincos(float64(p) * f)
			row[i], row[half+i] = float32(c), float32(s)
		}
	}
	return t
}
