package cpuref

import "github.com/lorafleet/lorafleet/gpukern"

// MatMul implements gpukern.Backend: out[m,n] = x[m,k] · w[n,k]ᵀ.
//
// Columns (rows of w) are split between cores; within a core a 4×2 register tile reuses each
// loaded x and w value several times. Every element is one sequential sum over k, the same
// in the tile and in the edge loops, so results do not depend on m or on the split.
func (b *Backend) MatMul(out, x, w gpukern.Tensor, m, n, k int) {
	o, xs, ws := data(out), data(x), data(w)
	grain := max(1, 16384/max(1, m*k)) // ≥ ~16k multiply-adds per goroutine
	b.parallel(n, grain, func(lo, hi int) { matmulCols(o, xs, ws, m, n, k, lo, hi) })
}

func matmulCols(o, x, w []float32, m, n, k, lo, hi int) {
	i := 0
	for ; i+4 <= m; i += 4 {
		x0, x1, x2, x3 := x[i*k:i*k+k], x[(i+1)*k:(i+1)*k+k], x[(i+2)*k:(i+2)*k+k], x[(i+3)*k:(i+3)*k+k]
		j := lo
		for ; j+2 <= hi; j += 2 {
			s := tile4x2(x0, x1, x2, x3, w[j*k:j*k+k], w[(j+1)*k:(j+1)*k+k])
			o[i*n+j], o[i*n+j+1] = s[0], s[1]
			o[(i+1)*n+j], o[(i+1)*n+j+1] = s[2], s[3]
			o[(i+2)*n+j], o[(i+2)*n+j+1] = s[4], s[5]
			o[(i+3)*n+j], o[(i+3)*n+j+1] = s[6], s[7]
		}
		for ; j < hi; j++ {
			wj := w[j*k : j*k+k]
			o[i*n+j], o[(i+1)*n+j] = dot(x0, wj), dot(x1, wj)
			o[(i+2)*n+j], o[(i+3)*n+j] = dot(x2, wj), dot(x3, wj)
		}
	}
	for ; i < m; i++ {
		xi := x[i*k : i*k+k]
		for j := lo; j < hi; j++ {
			o[i*n+j] = dot(xi, w[j*k:j*k+k])
		}
	}
}

// tile4x2 returns the eight dot products of rows a0..a3 with rows w0, w1 (row-major 4×2).
func tile4x2(a0, a1, a2, a3, w0, w1 []float32) [8]float32 {
	k := len(w0)
	a0, a1, a2, a3, w1 = a0[:k], a1[:k], a2[:k], a3[:k], w1[:k]
	var s00, s01, s10, s11, s20, s21, s30, s31 float32
	for p := range w0 {
		u, v := w0[p], w1[p]
		s00 += a0[p] * u
		s01 += a0[p] * v
		s10 += a1[p] * u
		s11 += a1[p] * v
		s20 += a2[p] * u
		s21 += a2[p] * v
		s30 += a3[p] * u
		s31 += a3[p] * v
	}
	return [8]float32{s00, s01, s10, s11, s20, s21, s30, s31}
}

// dot is the sequential sum Σ a[p]·b[p], in the same order as tile4x2.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for p := range a {
		s += a[p] * b[p]
	}
	return s
}
