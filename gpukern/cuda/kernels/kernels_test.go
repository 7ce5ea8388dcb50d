package kernels

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
	"github.com/lorafleet/lorafleet/gpukern/cuda/nvrtc"
)

// Every kernel source compiles with NVRTC for the Ampere and Hopper architectures. This needs
// NVRTC and the CUDA headers (Debian: nvidia-cuda-dev), not a GPU; CI installs them and sets
// LORAFLEET_REQUIRE_NVRTC so that their absence fails rather than skips.
func TestKernelsCompile(t *testing.T) {
	if err := nvrtc.Open(); err != nil {
		if errors.Is(err, nvrtc.ErrUnavailable) && os.Getenv("LORAFLEET_REQUIRE_NVRTC") == "" {
			t.Skipf("%v (install nvidia-cuda-dev; CI sets LORAFLEET_REQUIRE_NVRTC)", err)
		}
		t.Fatal(err)
	}
	inc, err := nvrtc.IncludeDir()
	if err != nil {
		t.Fatal(err)
	}
	major, minor, _ := nvrtc.Version()
	t.Logf("NVRTC %d.%d, headers in %s", major, minor, inc)
	srcs := Sources()
	if len(srcs) < 5 {
		t.Fatalf("%d kernel sources embedded", len(srcs))
	}
	for _, arch := range []string{"sm_80", "sm_90"} {
		for _, s := range srcs {
			cubin, err := nvrtc.Compile(s.Name, s.Text, arch, inc)
			if err != nil {
				t.Errorf("%s for %s: %v", s.Name, arch, err)
				continue
			}
			if len(cubin) < 4 || string(cubin[1:4]) != "ELF" {
				t.Errorf("%s for %s: not an ELF cubin", s.Name, arch)
			}
		}
	}
}

// A kernel that does not compile comes back as a CompileError with the compiler's log, and
// the disk cache compiles a source once.
func TestCompileErrorAndCache(t *testing.T) {
	if err := nvrtc.Open(); err != nil {
		if os.Getenv("LORAFLEET_REQUIRE_NVRTC") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	inc, err := nvrtc.IncludeDir()
	if err != nil {
		t.Fatal(err)
	}
	_, err = nvrtc.Compile("broken.cu", `extern "C" __global__ void k(float *x) { x[0] = undefined_name; }`, "sm_80", inc)
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
	again, err := cache.Compile(src.Name, src.Text, "sm_80", inc)
	if err != nil || string(again) != string(first) {
		t.Fatalf("cached cubin differs (%v)", err)
	}
	entries, _ := os.ReadDir(cache.Dir)
	if len(entries) != 1 {
		t.Fatalf("cache holds %d files, want 1", len(entries))
	}
}

// The backend (gpukern/cuda) looks these kernels up by name, sizes flash_prefill's shared
// memory and tiles from FLASH_BQ and FLASH_BK, and the LoRA kernels' grids and shared memory
// from SHRINK_J, EXPAND_C and LORA_GROUP, so each is declared once, extern "C", and the sizes
// are the ones it assumes. This needs no NVRTC.
func TestKernelNames(t *testing.T) {
	all, declared := "", map[string]int{}
	for _, s := range Sources() {
		all += s.Text
		for _, k := range s.Kernels {
			declared[k]++
		}
	}
	for _, name := range []string{"embedding", "gather", "rmsnorm", "silu_mul", "add_bias", "add", "to_bf16",
		"rope_write_kv", "flash_prefill", "decode_split", "decode_combine", "lora_shrink", "lora_expand",
		"argmax", "sample_rows", "fill_random"} {
		re := regexp.MustCompile(`extern "C" __global__ void (__launch_bounds__\(\w+\) )?` + name + `\(`)
		if n := len(re.FindAllString(all, -1)); n != 1 || declared[name] != 1 {
			t.Errorf("kernel %s declared %d times, listed %d times in Source.Kernels", name, n, declared[name])
		}
	}
	for _, def := range []string{"#define FLASH_BQ 16 ", "#define FLASH_BK 32 ", "#define SHRINK_J 4\n", "#define EXPAND_C 4\n",
		fmt.Sprintf("#define LORA_GROUP %d\n", host.LoRAGroup)} {
		if !strings.Contains(all, def) {
			t.Errorf("no %q", def)
		}
	}
}
