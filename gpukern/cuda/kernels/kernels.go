// Package kernels holds the CUDA sources of gpukern/cuda's kernels, embedded in the binary and
// compiled at start-up by NVRTC for the GPU's exact architecture (gpukern/cuda/nvrtc). With the
// cudaemu build tag it also runs them on the CPU (emu.go).
//
// Types: activations are fp32 (a GEMM's input is in bf16: written so beside the activation
// by the kernel that made it, or converted by to_bf16 just before the GEMM: gemm_small,
// gemm_deep or cuBLAS; lora_shrink multiplies the fp32 activation); weights, adapters and the
// KV cache are bf16; every reduction accumulates in fp32. Kernels are extern "C" so their names
// survive compilation.
package kernels

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
)

//go:embed *.cu
var files embed.FS

// common is the prelude of every kernel file: the CUDA headers and shared device helpers.
//
//go:embed common.cuh
var common string

// Source is one kernel file.
type Source struct {
	Name    string   // file name, e.g. "attention.cu"
	Text    string   // common.cuh, then the file
	Kernels []string // the names of its kernels, in order
}

// kernelDecl matches a kernel's declaration; its first group is the name.
var kernelDecl = regexp.MustCompile(`extern "C" __global__ void (?:__launch_bounds__\([\w, ]+\) )?(\w+)\(`)

// Sources returns every kernel file, by name, each with common.cuh in front of it (and a #line
// directive, so that compiler messages keep the file's own line numbers).
func Sources() []Source {
	names, err := fs.Glob(files, "*.cu")
	if err != nil {
		panic(err) // the pattern is constant
	}
	slices.Sort(names)
	out := make([]Source, len(names))
	for i, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			panic(err) // embedded at build time
		}
		out[i] = Source{Name: n, Text: fmt.Sprintf("%s\n#line 1 %q\n%s", common, n, b)}
		for _, m := range kernelDecl.FindAllSubmatch(b, -1) {
			out[i].Kernels = append(out[i].Kernels, string(m[1]))
		}
	}
	return out
}
