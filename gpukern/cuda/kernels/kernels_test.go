package kernels

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
	"github.com/lorafleet/lorafleet/gpukern/cuda/nvrtc"
)

// nvrtcOrSkip returns the CUDA include directory, or skips t where NVRTC or the CUDA headers
// (Debian: nvidia-cuda-dev) are absent. CI installs them and sets LORAFLEET_REQUIRE_NVRTC, so
// that their absence fails rather than skips. Where LORAFLEET_NVRTC_MIN names a major version
// (make check-nvrtc-newer: 12), an older NVRTC fails t: the one wanted is not the one the
// library path gave.
func nvrtcOrSkip(t *testing.T) string {
	t.Helper()
	if err := nvrtc.Open(); err != nil {
		if errors.Is(err, nvrtc.ErrUnavailable) && os.Getenv("LORAFLEET_REQUIRE_NVRTC") == "" {
			t.Skipf("%v (install nvidia-cuda-dev; CI sets LORAFLEET_REQUIRE_NVRTC)", err)
		}
		t.Fatal(err)
	}
	if want := os.Getenv("LORAFLEET_NVRTC_MIN"); want != "" {
		least, err := strconv.Atoi(want)
		if err != nil {
			t.Fatalf("LORAFLEET_NVRTC_MIN=%q: not a major version", want)
		}
		if major, minor, err := nvrtc.Version(); err != nil || major < least {
			t.Fatalf("NVRTC %d.%d (%v) opened, %d or later wanted (LD_LIBRARY_PATH?)", major, minor, err, least)
		}
	}
	inc, err := nvrtc.IncludeDir()
	if err != nil {
		t.Fatal(err)
	}
	return inc
}

// A kernel that does not compile comes back as a CompileError with the compiler's log, and
// the disk cache compiles a source once.
func TestCompileErrorAndCache(t *testing.T) {
	inc := nvrtcOrSkip(t)
	_, err := nvrtc.Compile("broken.cu", `extern "C" __global__ void k(float *x) { x[0] = undefined_name; }`, "sm_80", inc)
	var ce *nvrtc.CompileError
	if !errors.As(err, &ce) || ce.Arch != "sm_80" || !strings.Contains(ce.Log, "undefined_name") {
		t.Fatalf("err = %v", err)
	}
	cache := nvrtc.Cache{Dir: t.TempDir()}
	src := Sources()[0]
	first, err := cache.Compile(src.Name, src.Text, "sm_80", inc)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) < 4 || string(first[1:4]) != "ELF" {
		t.Fatalf("%s: not an ELF cubin", src.Name)
	}
	again, err := cache.Compile(src.Name, src.Text, "sm_80", inc)
	if err != nil || string(again) != string(first) {
		t.Fatalf("cached cubin differs (%v)", err)
	}
	entries, _ := os.ReadDir(cache.Dir)
	if len(entries) != 1 {
		t.Fatalf("cache holds %d files, want 1", len(entries))
	}
}

// Every kernel source compiles with NVRTC for the Ampere and Hopper architectures (this needs
// NVRTC and the CUDA headers, not a GPU), with the options its file names, and no kernel
// spills registers to local memory on either (but for a few bytes of gemm_lean's, below),
// while the decode, LoRA and GEMM kernels, whose loads in flight are what stream memory, keep
// no stack frame (an array indexed at run time lives there: lora_expand's
// accumulators did). Launch bounds make ptxas fit a kernel in the registers that its blocks per SM leave
// it, spilling if it must; this is what catches that. The table it logs (go test -v -run
// TestKernelResources) is what bounds how many blocks an SM runs: Nsight Compute on the H100
// found the occupancy it implies.
func TestKernelResources(t *testing.T) {
	inc := nvrtcOrSkip(t)
	major, minor, _ := nvrtc.Version()
	t.Logf("NVRTC %d.%d, headers in %s", major, minor, inc)
	if n := len(Sources()); n < 5 {
		t.Fatalf("%d kernel sources embedded", n)
	}
	for _, arch := range []string{"sm_80", "sm_90"} {
		t.Logf("%s: kernel, registers a thread, static shared bytes a block, stack bytes, spilled bytes", arch)
		for _, s := range Sources() {
			us, err := nvrtc.Resources(s.Name, s.Text, arch, inc, s.Options...)
			if err != nil {
				t.Errorf("%s for %s: %v", s.Name, arch, err)
				continue
			}
			if len(us) != len(s.Kernels) {
				t.Errorf("%s for %s: the compiler reported %d kernels, the source declares %d", s.Name, arch, len(us), len(s.Kernels))
			}
			for _, u := range us {
				t.Logf("  %-20s %3d %6d %4d %4d", u.Kernel, u.Registers, u.SharedBytes, u.StackBytes, u.SpillStores+u.SpillLoads)
				// gemm_lean's register cap is the experiment (SetLeanGEMM): NVRTC 11.8 spills
				// 20 bytes of gemm_lean_m32 for sm_90 at 112 (a stack of 8), which NVRTC 12.5
				// does not; more than that is an error here too.
				spill, stack := 0, 0
				if strings.HasPrefix(u.Kernel, "gemm_lean") {
					spill, stack = 32, 16
				}
				if u.SpillStores+u.SpillLoads > spill {
					t.Errorf("%s for %s spills: %d bytes stored, %d loaded", u.Kernel, arch, u.SpillStores, u.SpillLoads)
				}
				if hot := strings.HasPrefix(u.Kernel, "decode_split") || strings.HasPrefix(u.Kernel, "lora_") || strings.HasPrefix(u.Kernel, "gemm_"); hot && u.StackBytes > stack {
					t.Errorf("%s for %s keeps a stack frame of %d bytes", u.Kernel, arch, u.StackBytes)
				}
			}
		}
	}
}

// A kernel file's include of this package's header becomes the header's text, between #line
// directives that keep both files' line numbers (NVRTC has only the text), and a file's first
// line may name options for its compile. This needs no NVRTC.
func TestSourcesInlineHeadersAndOptions(t *testing.T) {
	header, err := files.ReadFile("gemm.cuh")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Source{}
	for _, s := range Sources() {
		got[s.Name] = s
		if strings.Contains(s.Text, `#include "`) && strings.Contains(s.Text, `.cuh"`) {
			t.Errorf("%s keeps an #include of a header of this package", s.Name)
		}
	}
	for _, name := range []string{"gemm.cu", "gemm_lean.cu"} {
		src, _ := files.ReadFile(name)
		line := 1 + strings.Count(string(src[:strings.Index(string(src), `#include "gemm.cuh"`)]), "\n")
		want := fmt.Sprintf("#line 1 \"gemm.cuh\"\n%s\n#line %d %q\n", header, line+1, name)
		if !strings.Contains(got[name].Text, want) {
			t.Errorf("%s: the header is not in place of line %d's #include", name, line)
		}
	}
	if o := got["gemm_lean.cu"].Options; !slices.Equal(o, []string{"--maxrregcount=112"}) {
		t.Errorf("gemm_lean.cu's options %q, want [--maxrregcount=112]", o)
	}
	if o := got["gemm.cu"].Options; o != nil {
		t.Errorf("gemm.cu's options %q, want none", o)
	}
}

// The backend (gpukern/cuda) looks these kernels up by name, sizes flash_prefill's shared
// memory and tiles from FLASH_BQ and FLASH_BK, the LoRA kernels' grids and shared memory from
// SHRINK_J, EXPAND_C, LORA_GROUP and LORA_MAX_PARTS, gemm_small's grid and the
// shapes it takes from GEMM_ROWS and GEMM_K, a split GEMM's scratch from GEMM_OUTS, its
// splits from gemm_small's blocks an SM (its launch bounds), launches the kernels with launch bounds with the
// block sizes they name (LORA_THREADS, DEC_THREADS, GEMM_THREADS), and splits decode contexts
// for the blocks an SM holds (DEC_BLOCKS), so each kernel is declared once, extern "C", and
// the sizes are the ones it assumes. This needs no NVRTC.
func TestKernelNames(t *testing.T) {
	all, declared := "", map[string]int{}
	for _, s := range Sources() {
		all += s.Text
		for _, k := range s.Kernels {
			declared[k]++
		}
	}
	for _, name := range []string{"embedding", "gather", "rmsnorm", "silu_mul", "add_bias", "add", "to_bf16",
		"rope_write_kv", "flash_prefill", "decode_split_hd16", "decode_split_hd32", "decode_split_hd64",
		"decode_split_hd128", "decode_split_hd256", "lora_shrink", "lora_expand",
		"argmax", "sample_rows", "fill_random", "gemm_small_m8", "gemm_small_m16", "gemm_small_m32",
		"gemm_deep_m8", "gemm_deep_m16", "gemm_deep_m32", "gemm_lean_m16", "gemm_lean_m32"} {
		re := regexp.MustCompile(`extern "C" __global__ void (__launch_bounds__\([\w, ]+\) )?` + name + `\(`)
		if n := len(re.FindAllString(all, -1)); n != 1 || declared[name] != 1 {
			t.Errorf("kernel %s declared %d times, listed %d times in Source.Kernels", name, n, declared[name])
		}
	}
	for _, def := range []string{"#define FLASH_BQ 16 ", "#define FLASH_BK 32 ", "#define SHRINK_J 4\n", "#define EXPAND_C 4\n",
		fmt.Sprintf("#define LORA_GROUP %d\n", host.LoRAGroup), "#define LORA_THREADS 256\n", "#define DEC_THREADS 128\n", "#define DEC_BLOCKS 8\n", "#define LORA_MAX_PARTS 3\n",
		"#define GEMM_THREADS 256 ", "#define GEMM_ROWS 32 ", "#define GEMM_K 32 ",
		"#define GEMM_OUTS(NT) (2 * (NT) * 4 * 32)\n", "__launch_bounds__(GEMM_THREADS, 2) gemm_small_m8(",
		"__launch_bounds__(GEMM_THREADS, 2) gemm_small_m16(", "__launch_bounds__(GEMM_THREADS, 2) gemm_small_m32("} {
		if !strings.Contains(all, def) {
			t.Errorf("no %q", def)
		}
	}
}

// The backend may launch a kernel before the one before it has ended (host.Step's Early), so
// each must wait for that one (pdl_wait) before anything else: the first statement of its
// body; in gemm_small's, gemm_lean's and gemm_deep's, in gemm_block right after the loads of
// its first weights, before anything reads x.
func TestKernelsWaitForTheOneBefore(t *testing.T) {
	body := regexp.MustCompile(`extern "C" __global__ void (?:__launch_bounds__\([\w, ]+\) )?(\w+)\([^{]*\{\n\s*(\S.*)\n`)
	kernels, all := 0, ""
	for _, s := range Sources() {
		all += s.Text
		for _, m := range body.FindAllStringSubmatch(s.Text, -1) {
			kernels++
			name, first := m[1], m[2]
			gemm := strings.HasPrefix(name, "gemm_")
			if gemm != (first != "pdl_wait();") {
				t.Errorf("%s begins with %q", name, first)
			}
		}
	}
	if kernels != 27 {
		t.Errorf("found %d kernels' bodies, want 27", kernels)
	}
	wait := regexp.MustCompile(`gemm_load_w\(ws\[d\], p, warp \+ d \* W\);\n\t}\n\tpdl_wait\(\);.*\n\tgemm_load_x<NT>\(xs, p, warp\);`)
	if !wait.MatchString(all) {
		t.Error("gemm_block does not wait between its first loads of w and of x")
	}
}
