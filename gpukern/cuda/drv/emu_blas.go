//go:build cuda && cudaemu

package drv

import (
	"fmt"
	"math"
	"unsafe"
)

// Blas is cuBLAS in the emulator: GEMMs in Go, queued on the handle's stream.
type Blas struct{ stream uintptr }

// NewBlas creates a handle on the null stream.
func NewBlas() (*Blas, error) { return &Blas{}, nil }

// Destroy does nothing.
func (h *Blas) Destroy() error { return nil }

// SetStream sets the stream the handle's GEMMs are queued on.
func (h *Blas) SetStream(stream uintptr) error {
	h.stream = stream
	return nil
}

// SetWorkspace checks that the workspace is device memory; the emulator needs none.
func (h *Blas) SetWorkspace(ptr uintptr, bytes int64) error {
	emu.Lock()
	defer emu.Unlock()
	_, err := hostOf(DevicePtr(ptr), bytes)
	return err
}

// MatMulBF16 computes row-major out[m,n] (fp32) = x[m,k] (bf16) · w[n,k]ᵀ (bf16) in fp32,
// overwriting out or adding to it, as gpukern/cuda/cublas does.
func (h *Blas) MatMulBF16(out, x, w uintptr, m, n, k int, accumulate bool) error {
	if m <= 0 || n <= 0 || k <= 0 || m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 {
		return fmt.Errorf("cublas: MatMulBF16: bad shape m=%d n=%d k=%d", m, n, k)
	}
	emu.Lock()
	defer emu.Unlock()
	return run(Stream{h.stream}, func() error {
		o, err1 := hostOf(DevicePtr(out), int64(4*m*n))
		xs, err2 := hostOf(DevicePtr(x), int64(2*m*k))
		ws, err3 := hostOf(DevicePtr(w), int64(2*n*k))
		for _, err := range []error{err1, err2, err3} {
			if err != nil {
				return fmt.Errorf("cublas: MatMulBF16 %dx%dx%d: %w", m, n, k, err)
			}
		}
		gemm(unsafe.Slice((*float32)(o), m*n), unsafe.Slice((*uint16)(xs), m*k), unsafe.Slice((*uint16)(ws), n*k), m, n, k, accumulate)
		return nil
	})
}

func gemm(out []float32, x, w []uint16, m, n, k int, accumulate bool) {
	xr := make([]float32, k)
	for i := range m {
		for j := range k {
			xr[j] = bf16(x[i*k+j])
		}
		for c := range n {
			wr := w[c*k : (c+1)*k]
			var s float32
			for j, v := range wr {
				s += xr[j] * bf16(v)
			}
			if accumulate {
				s += out[i*n+c]
			}
			out[i*n+c] = s
		}
	}
}

func bf16(v uint16) float32 { return math.Float32frombits(uint32(v) << 16) }
