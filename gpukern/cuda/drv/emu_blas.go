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

// BlasPlan is a GEMM shape's cuBLASLt descriptors: in the emulator, the shape.
type BlasPlan struct{ m, n, k int }

// BlasAlgo is one of cuBLASLt's algorithms for a BlasPlan: in the emulator, its index and
// the parts SplitK cut its k into.
type BlasAlgo struct{ id, splits int }

// Splits is the number of parts SplitK cut the algorithm's k into, 0 for an algorithm as Plan
// offered it.
func (a *BlasAlgo) Splits() int { return a.splits }

// SplitK returns a with its k cut into splits parts: in the emulator, the first algorithm
// alone can (it computes as the others do).
func (h *Blas) SplitK(p *BlasPlan, a BlasAlgo, splits int) (BlasAlgo, bool) {
	if p == nil || a.id != 0 || a.splits == splits || splits < 2 {
		return BlasAlgo{}, false
	}
	return BlasAlgo{id: a.id, splits: splits}, true
}

// emuAlgos is how many algorithms the emulator's cuBLASLt offers for a plan; all compute as
// MatMulBF16 does, so that the backend's choice between them never changes a result.
const emuAlgos = 2

// Plan returns the shape's plan and the emulator's algorithms, as gpukern/cuda/cublas does
// the heuristic's.
func (h *Blas) Plan(m, n, k, limit int) (*BlasPlan, []BlasAlgo, error) {
	if m <= 0 || n <= 0 || k <= 0 || m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 || limit <= 0 {
		return nil, nil, fmt.Errorf("cublas: Plan: bad shape m=%d n=%d k=%d or count %d", m, n, k, limit)
	}
	algos := make([]BlasAlgo, min(limit, emuAlgos))
	for i := range algos {
		algos[i].id = i
	}
	return &BlasPlan{m, n, k}, algos, nil
}

// Destroy does nothing.
func (p *BlasPlan) Destroy() {}

// MatMulAlgo computes MatMulBF16's GEMM of p's shape.
func (h *Blas) MatMulAlgo(p *BlasPlan, a *BlasAlgo, out, x, w uintptr, accumulate bool) error {
	if p == nil || a == nil || a.id < 0 || a.id >= emuAlgos {
		return fmt.Errorf("cublas: MatMulAlgo: no plan or algorithm")
	}
	return h.MatMulBF16(out, x, w, p.m, p.n, p.k, accumulate)
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
