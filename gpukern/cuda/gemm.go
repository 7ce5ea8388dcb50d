//go:build cuda

package cuda

import (
	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// GEMMs: the weight GEMMs of decode batches of up to smallGEMMRows rows run lorafleet's own
// kernels (kernels/gemm.cuh), built to stream the weights: gemm_small, or gemm_deep where the
// GEMM has no more blocks than the GPU has SMs, and gemm_small with each tile's k cut into
// chunks where that fills its waves of blocks better (host.GEMMSplits); larger batches
// (prefill) and shapes they do not take run cuBLAS.

// The sizes of gemm.cuh.
const (
	smallGEMMRows    = 32  // the largest batch they take: gemm_small_m32's and gemm_deep_m32's
	smallGEMMCols    = 32  // GEMM_ROWS: output columns a block computes
	smallGEMMK       = 32  // GEMM_K: k must be a multiple of it
	smallGEMMThreads = 256 // GEMM_THREADS
	smallGEMMPerSM   = 2   // gemm_small's blocks an SM (its launch bounds)
)

// smallGEMMBounds are the batch bounds of gemm_small's and gemm_deep's kernels, in the order
// of functions.gemmSmall and gemmDeep.
var smallGEMMBounds = [...]int{8, 16, smallGEMMRows}

// leanGEMMFrom is the largest batch bound whose gemm_small kernel leaves room for a LoRA block
// of 128 threads beside its two blocks an SM as it is (84 to 90 registers on sm_80 and
// sm_90); those of larger bounds have a lean kernel (gemm_lean.cu, SetLeanGEMM).
const leanGEMMFrom = 8

// bf16Copy says that scratch.gemmIn holds the first n values of the activation at address of
// in bf16, written by the last main-stream kernel recorded (RMSNorm, SiLUMul, Attention): a
// MatMul of that activation reads it instead of converting. Recording any other main-stream
// kernel clears it, since that kernel may write the activation or gemmIn.
type bf16Copy struct {
	of drv.DevicePtr
	n  int
}

// gemmInput returns scratch.gemmIn with room for an activation of rows × cols in bf16, and for
// at least smallGEMMRows rows: gemm_small and gemm_deep read rows up to their batch bound
// (those past the batch, whatever they hold, only make outputs they do not store). Callers
// are inside b.do.
func (b *Backend) gemmInput(rows, cols int) drv.DevicePtr {
	return b.buffer(&b.scratch.gemmIn, 2*int64(max(rows, smallGEMMRows))*int64(cols))
}

// MatMul implements gpukern.Backend on bf16 inputs, accumulating in fp32: gemm_small or
// gemm_deep where they take the shape (smallGEMM), else cuBLAS.
func (b *Backend) MatMul(out, x, w gpukern.Tensor, m, n, k int) {
	o, xs, ws := dev(out), dev(x), dev(w)
	if !ws.bf16 {
		panic("cuda: MatMul weights must come from Weight") // a programming error
	}
	b.do(func() {
		in, padded := xs.ptr, false
		switch {
		case xs.bf16:
		case b.copy16 == bf16Copy{of: xs.ptr, n: m * k}:
			in, padded = b.scratch.gemmIn.ptr, true // made by the kernel that wrote x
		default:
			in, padded = b.gemmInput(m, k), true
			a := (&args{}).dptr(in).ptr(xs).i64(m * k)
			b.launch("to_bf16", b.fn.toBF16, d1(gridFor(m*k, threads)), d1(threads), 0, a)
		}
		if g, ok := b.smallGEMM(m, n, k); ok && padded {
			tiles := smallGEMMBlocks(n)
			var part, count drv.DevicePtr // a split GEMM's scratch (gemm.cuh's gemm_small)
			if g.splits > 1 {
				part = b.buffer(&b.scratch.gemmPart, 4*int64(tiles*g.splits*smallGEMMCols*g.bound))
				count = b.zeroed(&b.scratch.gemmCount, 4*int64(tiles))
			}
			a := (&args{}).ptr(o).dptr(in).ptr(ws).i32(m).i32(n).i32(k).i32(g.splits).dptr(part).dptr(count)
			b.launch(g.name, g.fn, d1(tiles*g.splits), d1(smallGEMMThreads), 0, a)
			return
		}
		// cuBLAS: GemmEx, or the algorithm timing picked for the shape (SetTunedGEMM).
		name, algo := "gemm", b.gemmAlgo(o.ptr, in, ws.ptr, m, n, k)
		if algo > 0 {
			name = "gemm_lt"
		}
		b.record(host.Op{Name: name, Cells: []uint64{uint64(o.ptr), uint64(in), uint64(ws.ptr), uint64(m), uint64(n), uint64(k), algo}})
	})
}

// smallGEMMBlocks is the grid of gemm_small and gemm_deep for n output columns.
func smallGEMMBlocks(n int) int { return (n + smallGEMMCols - 1) / smallGEMMCols }

// smallGEMMKernel is one of our GEMM kernels with its launch's split of k.
type smallGEMMKernel struct {
	name   string // gemm_split (gemm_small's kernel, split), gemm_small, gemm_lean or gemm_deep (split or not)
	fn     drv.Function
	bound  int // its batch bound
	splits int // chunks of k a tile (gemm.cuh's gemm_small); 1: none
}

// smallGEMM is the kernel of lorafleet's own for an m × n × k GEMM, if one takes it (gemm.cuh's
// conditions; the rows' alignment follows from k's, each tensor having an allocation of its
// own): gemm_small split where that fills its waves better (host.GEMMSplits, unless
// SetGEMMSplit turned it off), else gemm_deep where the GEMM has no more blocks than the GPU
// has SMs, else gemm_small, whose kernels above batch 8 SetLeanGEMM swaps for gemm_lean's; or,
// after SetDeepGEMM, always gemm_deep, split for its waves of one block an SM.
func (b *Backend) smallGEMM(m, n, k int) (smallGEMMKernel, bool) {
	if b.cublasOnly || m < 1 || n < smallGEMMCols || k < smallGEMMK || k%smallGEMMK != 0 {
		return smallGEMMKernel{}, false
	}
	tiles, perSM, splits := smallGEMMBlocks(n), smallGEMMPerSM, 1
	if b.deepOnly {
		perSM = 1
	}
	if !b.splitOff {
		splits = host.GEMMSplits(tiles, k/smallGEMMK, perSM*b.sms)
	}
	for i, bound := range smallGEMMBounds {
		switch {
		case m > bound:
			continue
		case b.deepOnly:
			return smallGEMMKernel{"gemm_deep", b.fn.gemmDeep[i], bound, splits}, true
		case tiles <= b.sms && splits == 1: // one block an SM, which leaves room for a LoRA block as it is
			return smallGEMMKernel{"gemm_deep", b.fn.gemmDeep[i], bound, 1}, true
		case b.lean && bound > leanGEMMFrom:
			return smallGEMMKernel{"gemm_lean", b.fn.gemmLean[i], bound, splits}, true
		case splits > 1:
			return smallGEMMKernel{"gemm_split", b.fn.gemmSmall[i], bound, splits}, true
		default:
			return smallGEMMKernel{"gemm_small", b.fn.gemmSmall[i], bound, 1}, true
		}
	}
	return smallGEMMKernel{}, false
}

// SmallGEMMRows is the largest batch whose GEMMs gemm_small and gemm_deep run.
func (b *Backend) SmallGEMMRows() int { return smallGEMMRows }

// SetSmallGEMM runs the GEMMs of batches of up to 32 rows with gemm_small or gemm_deep (on,
// the default) or with cuBLAS (benchmarks compare the two).
func (b *Backend) SetSmallGEMM(on bool) {
	b.do(b.flush)
	b.cublasOnly = !on
}

// SetDeepGEMM runs every GEMM of ours as gemm_deep, one block of 168 registers a thread an SM,
// which leaves an SM room for a block of the LoRA kernels (64 registers) beside it, where
// gemm_small's two blocks take every register (on); or picks gemm_small or gemm_deep by the
// GEMM's shape (off, the default). Benchmarks compare the two: whether the LoRA's blocks
// waiting for room cost more than the loads in flight that the second block brings.
func (b *Backend) SetDeepGEMM(on bool) {
	b.do(b.flush)
	b.deepOnly = on
}

// SetLeanGEMM runs gemm_small's kernels of batch bounds above 8 held to 112 registers
// (gemm_lean, split as gemm_small would be) and the LoRA kernels with blocks of 128 threads,
// so that an SM holds a LoRA block beside the GEMM's two and the side stream's shrink and
// expand run beside the GEMM from its start, not in the gaps its blocks leave (on); or as
// usual (off, the default). Benchmarks compare the two: whether the GEMM loses to its fewer
// registers, or the LoRA kernels to their smaller blocks, more than the LoRA gains.
func (b *Backend) SetLeanGEMM(on bool) {
	b.do(b.flush)
	b.lean = on
}

// loraBlock is the LoRA kernels' block size: loraThreads, or 128 beside lean GEMMs
// (SetLeanGEMM).
func (b *Backend) loraBlock() int {
	if b.lean {
		return loraThreads / 2
	}
	return loraThreads
}

// SetGEMMSplit lets our GEMMs cut a tile's k into chunks where that fills their waves better
// (on, the default), or never (benchmarks compare the two).
func (b *Backend) SetGEMMSplit(on bool) {
	b.do(b.flush)
	b.splitOff = !on
}
