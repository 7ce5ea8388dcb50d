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
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
)

//go:embed *.cu *.cuh
var files embed.FS

// common is the prelude of every kernel file: the CUDA headers and shared device helpers.
//
//go:embed common.cuh
var common string

// Source is one kernel file.
type Source struct {
	Name    string   // file name, e.g. "attention.cu"
	Text    string   // common.cuh, then the file, with the headers it includes in place
	Options []string // NVRTC options of its first line's "// nvrtc-options:", if any
	Kernels []string // the names of its kernels, in order
}

// kernelDecl matches a kernel's declaration; its first group is the name.
var kernelDecl = regexp.MustCompile(`extern "C" __global__ void (?:__launch_bounds__\([\w, ]+\) )?(\w+)\(`)

// localInclude matches an #include of one of this package's headers; its first group is the
// header's name.
var localInclude = regexp.MustCompile(`(?m)^#include "(\w+\.cuh)"$`)

// optionsLine is a file's first line when it names NVRTC options for its compile.
var optionsLine = regexp.MustCompile(`^// nvrtc-options: (.+)\n`)

// Sources returns every kernel file, by name, each with common.cuh in front of it and the
// headers it includes in their place (with #line directives, so that compiler messages keep
// each file's own line numbers: NVRTC has only the text), and its options.
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
		out[i] = Source{Name: n, Text: fmt.Sprintf("%s\n#line 1 %q\n%s", common, n, inlineHeaders(n, b))}
		for _, m := range kernelDecl.FindAllSubmatch(b, -1) {
			out[i].Kernels = append(out[i].Kernels, string(m[1]))
		}
		if m := optionsLine.FindSubmatch(b); m != nil {
			out[i].Options = strings.Fields(string(m[1]))
		}
	}
	return out
}

// inlineHeaders is file name's text b with each #include of a header of this package replaced
// by the header's text, between #line directives.
func inlineHeaders(name string, b []byte) []byte {
	return localInclude.ReplaceAllFunc(b, func(line []byte) []byte {
		h := string(localInclude.FindSubmatch(line)[1])
		text, err := files.ReadFile(h)
		if err != nil {
			panic(fmt.Sprintf("kernels: %s includes %s, which is not embedded", name, h)) // fixed at build time
		}
		at := bytes.Count(b[:bytes.Index(b, line)], []byte("\n")) + 2 // the line after the #include
		return fmt.Appendf(nil, "#line 1 %q\n%s\n#line %d %q", h, text, at, name)
	})
}
