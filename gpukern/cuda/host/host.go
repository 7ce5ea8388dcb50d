// Package host is the CUDA backend's bookkeeping on the host, kept free of the driver
// (gorgonia.org/cu exits a process that has no GPU) so that it is tested on any machine: the
// launches a step records and the CUDA graphs that replay them (Graphs), the page-locked
// buffer its metadata travels in (Arena), and the metadata tables of the attention and LoRA
// kernels.
package host

import (
	"encoding/binary"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Dims is a launch shape.
type Dims struct{ X, Y, Z int }

// Op is one recorded launch: a kernel (Fn, its CUfunction handle), or (Fn zero) a cuBLAS
// bf16 GEMM whose Cells are out, x, w, m, n, k. Cells hold the kernel's arguments, 8 bytes
// each, as cuLaunchKernel reads them.
type Op struct {
	Fn          uintptr
	Name        string
	Grid, Block Dims
	Shared      int
	Cells       []uint64
	// Side runs the launch on the side stream, after the main stream's launches so far and
	// beside its next ones (a LoRA shrink beside the base GEMM of the same input); Join makes
	// a main-stream launch wait for the side stream's launches so far (the LoRA expand that
	// reads the shrink's output). See Schedule.
	Side, Join bool
}

// Equal reports whether o and p launch the same thing with the same arguments.
func (o *Op) Equal(p *Op) bool {
	return o.Fn == p.Fn && o.Grid == p.Grid && o.Block == p.Block && o.Shared == p.Shared && slices.Equal(o.Cells, p.Cells) &&
		o.Side == p.Side && o.Join == p.Join
}

// Signature hashes everything a graph of ops fixes: the kernels, their shapes and their
// argument values. It hashes an op at a time, from a buffer on the stack: a decode step has
// hundreds of ops, and the GPU waits for this.
func Signature(ops []Op) uint64 {
	h := xxhash.New()
	var stack [64 * 8]byte
	for i := range ops {
		o := &ops[i]
		buf := stack[:0]
		for _, v := range []int{int(o.Fn), o.Grid.X, o.Grid.Y, o.Grid.Z, o.Block.X, o.Block.Y, o.Block.Z, o.Shared, len(o.Cells), flag(o.Side) + 2*flag(o.Join)} {
			buf = binary.LittleEndian.AppendUint64(buf, uint64(v))
		}
		for _, v := range o.Cells {
			buf = binary.LittleEndian.AppendUint64(buf, v)
		}
		_, _ = h.Write(buf)
	}
	return h.Sum64()
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}
