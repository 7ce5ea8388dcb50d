//go:build cuda

package cuda

import (
	"slices"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// A projection's LoRA folded into its GEMM (gemm_lora, kernels/gemm.cu). The model records a
// projection as LoRAShrink and LoRAExpand (lora_fused, on the side stream, writing a delta
// that the call reading the projection's output adds), then the MatMul of the same input.
// Where that MatMul is one of our own GEMMs, it takes the lora_fused over: one launch that
// adds the LoRA to the GEMM's output. Our GEMMs take every register of the SMs they run on, so
// a side-stream kernel beside them waits for their blocks to end, and each lora_fused was a
// launch, a ramp and a tail of its own on the step's path; in gemm_lora the shrink streams A
// beside the GEMM's weights and the expand reads B at the end of each block. The delta is then
// never written: the calls given it add nothing (deltaOf).

// shrinkPart is SHRINK_PART of gemm.cu: the floats of a shrink unit's sums of one chunk of k.
const shrinkPart = 32 * host.ShrinkRows

// loraFold is the lora_fused recorded last, while the MatMul of its input may take it over.
type loraFold struct {
	op                  int                   // its index in ops; -1: none
	x, delta            drv.DevicePtr         // its input and the delta it writes
	v, b, ranks, scales drv.DevicePtr         // its v and tables (lora.cu)
	width, in, vStride  int                   // the delta's row, the input's, v's part stride
	first               [maxLoRAParts - 1]int // the first column of parts 1 and 2 (width: no such part)
}

// gemmLoRA records out = x·wᵀ plus the LoRA of the lora_fused recorded last, in place of it,
// where that LoRA is of x (in bf16 at in, padded) and the shape is one gemm_lora takes; false
// where it is not (the caller records the GEMM alone).
func (b *Backend) gemmLoRA(o *Tensor, x, in drv.DevicePtr, ws *Tensor, m, n, k int) bool {
	f := &b.fold
	if b.foldOff || f.op < 0 || f.op != len(b.ops)-1 || f.x != x || f.width != n || f.in != k ||
		b.loraTab.Rows != m || b.loraTab.Parts > maxLoRAParts || !b.units.Build(&b.loraTab, k, f.vStride) {
		return false
	}
	splits := host.ShrinkSplits(k / smallGEMMK)
	shrinks := b.units.Pairs * splits
	kern, ok := b.loraGEMM(m, n, k, shrinks)
	if !ok || !kern.holdsV(m*b.loraTab.Parts*f.vStride) {
		return false
	}
	part, count := b.shrinkBuffers(len(b.units.A), splits)
	if f.op < 0 {
		return false // growing a buffer launched the lora_fused (LoRAShrink grows them first)
	}
	b.ops = b.ops[:f.op] // the lora_fused, which nothing recorded since depends on
	f.op = -1
	a := (&args{}).ptr(o).dptr(in).ptr(ws).i32(m).i32(n).i32(k).dptr(f.v).dptr(upload(b, b.units.A)).
		dptr(upload(b, b.units.Meta)).i32(shrinks).i32(splits).dptr(part).dptr(count).dptr(f.b).dptr(f.ranks).
		dptr(f.scales).i32(f.first[0]).i32(f.first[1]).i32(b.loraTab.Parts).i32(f.vStride).dptr(b.scratch.syncs.ptr + syncBytes)
	b.launch(kern.name, kern.fn, d1(shrinks+smallGEMMBlocks(n)), d1(kern.threads), 0, a)
	if !slices.Contains(b.folded, f.delta) {
		b.folded = append(b.folded, f.delta)
	}
	return true
}

// shrinkBuffers returns gemm_lora's scratch for units shrink units of splits chunks each: their
// sums, and their counts of chunks done (zero between launches). Growing one launches the
// work recorded, so LoRAShrink grows them before it records its own (reserveShrink).
func (b *Backend) shrinkBuffers(units, splits int) (part, count drv.DevicePtr) {
	return b.buffer(&b.scratch.shrinkPart, int64(4*units*splits*shrinkPart)), b.zeroed(&b.scratch.shrinkCount, int64(4*units))
}

// reserveShrink grows gemm_lora's scratch for a LoRA of rows × parts of ranks up to vStride
// over in values, where our GEMMs may take it, before anything of the LoRA is recorded: growing
// launches the work recorded, and would leave the LoRA's reads of adapter slots unnoted
// (Backend.reads). Callers are inside b.do.
func (b *Backend) reserveShrink(rows, parts, vStride, in int) {
	if b.foldOff || b.cublasOnly || rows > smallGEMMRows || in%smallGEMMK != 0 {
		return
	}
	b.shrinkBuffers(2*host.MaxShrinkPairs(rows, parts, vStride), host.ShrinkSplits(in/smallGEMMK))
}

// loraKernel is one of gemm_lora's kernels.
type loraKernel struct {
	name    string
	fn      drv.Function
	threads int
	bound   int // its batch bound
}

// holdsV says whether the kernel's expand can copy a v of that many floats (m · parts ·
// vStride) into the shared memory of its warps' sums (gemm.cu's store_lora): 32 a warp and
// row of its bound, a thread's worth a row. Rank 32 on three parts always fits; a LoRA that
// does not is not folded.
func (k loraKernel) holdsV(floats int) bool { return floats <= k.threads*k.bound }

// loraGEMM is gemm_lora's kernel for an m × n × k GEMM with shrinks shrink blocks, where one
// takes the shape (gemm.cu's conditions, as smallGEMM's): gemm_lora_deep where the grid has
// no more blocks than the GPU has SMs, else gemm_lora_small. At a batch of 32, also where only
// the shrink blocks make the grid larger (o and down): they are short, and once they are done,
// gemm_lora_small_m32's blocks of 4 warps, one an SM, would have half the loads in flight of
// gemm_lora_deep's 8.
func (b *Backend) loraGEMM(m, n, k, shrinks int) (loraKernel, bool) {
	if _, _, ok := b.smallGEMM(m, n, k); !ok {
		return loraKernel{}, false
	}
	blocks := smallGEMMBlocks(n)
	for i, bound := range smallGEMMBounds {
		switch {
		case m > bound:
			continue
		case shrinks+blocks <= b.sms || bound == smallGEMMRows && blocks <= b.sms:
			return loraKernel{"gemm_lora_deep", b.fn.gemmLoRADeep[i], smallGEMMThreads, bound}, true
		case bound == smallGEMMRows:
			return loraKernel{"gemm_lora_small", b.fn.gemmLoRASmall[i], gemmLoRASmall32Threads, bound}, true
		default:
			return loraKernel{"gemm_lora_small", b.fn.gemmLoRASmall[i], smallGEMMThreads, bound}, true
		}
	}
	return loraKernel{}, false
}

// foldStaysLast moves the launch just recorded (one the GEMM needs first: its input's
// conversion) before a lora_fused recorded just before it, which neither depends on, so that
// the GEMM may still take the lora_fused over. Callers are inside b.do.
func (b *Backend) foldStaysLast() {
	if n := len(b.ops); b.fold.op >= 0 && b.fold.op == n-2 {
		b.ops[n-2], b.ops[n-1] = b.ops[n-1], b.ops[n-2]
		b.fold.op = n - 1
	}
}

// deltaOf is the address of a LoRA delta for a kernel that adds it to its projection's
// output: null for none, or where gemm_lora added it there already. Callers are inside b.do.
func (b *Backend) deltaOf(delta gpukern.Tensor) drv.DevicePtr {
	if p := optional(delta); !slices.Contains(b.folded, p) {
		return p
	}
	return 0
}

// unfold notes that the memory at p holds what was written there (an expand's delta, an
// upload), not a delta folded into a GEMM. Callers are inside b.do.
func (b *Backend) unfold(p drv.DevicePtr) {
	b.folded = slices.DeleteFunc(b.folded, func(q drv.DevicePtr) bool { return q == p })
}

// SetLoRAFold folds a projection's LoRA into its GEMM where gemm_lora takes it (on, the
// default), or runs it as lora_fused beside the GEMM (benchmarks compare the two).
func (b *Backend) SetLoRAFold(on bool) {
	b.do(b.flush)
	b.foldOff = !on
}
