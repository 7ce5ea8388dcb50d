//go:build cuda

package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/gpukern/cuda"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// These tests run on a GPU (the lent GPU machine, through scripts/gpu-check.sh) and, with the
// cudaemu build tag, on the CPU emulator of gpukern/cuda/drv (make emu, in make test): the same
// backend code and kernel sources, without a GPU's timing or concurrency.
// Every kernel is compared with gpukern/cpuref on fresh random inputs; outputs are poisoned
// with NaN first, so an element a kernel fails to write shows as an error.

// Tolerances (relative L2 error) from the GPU backend issue.
const (
	tolBF16 = 1e-2 // paths that round activations to bf16 (the GEMMs)
	tolF32  = 1e-4 // paths that keep fp32 (inputs rounded to bf16 the same way on both sides)
)

var (
	gpu *cuda.Backend
	ref = cpuref.New(0)

	resultsMu sync.Mutex
	results   []string // rows of the table printed at the end
)

func TestMain(m *testing.M) {
	var err error
	// Flushes every 24 launches (not 64): the tiny models' steps are then cut into several
	// graphs, and every check sees launches flushed mid-step.
	gpu, err = cuda.New(cuda.Config{AdapterSlots: 8, AdapterSlotElems: 1 << 22, CacheDir: os.Getenv("LORAFLEET_CUBIN_CACHE"), FlushOps: 24})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cuda backend:", err)
		os.Exit(1)
	}
	fmt.Printf("GPU backend up: %s\n", gpu.Arch())
	code := m.Run()
	gpu.Close()
	fmt.Println("\n| check | shape | rel. L2 error | tolerance | |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range results {
		fmt.Println(r)
	}
	os.Exit(code)
}

// record compares got with want, fails t beyond tol and adds a row to the table.
func record(t *testing.T, check, shape string, got, want []float32, tol float64) {
	t.Helper()
	e := relL2(got, want)
	ok := e <= tol // false for NaN: an unwritten (poisoned) element
	mark := "ok"
	if !ok {
		mark = "FAIL"
		t.Errorf("%s %s: relative L2 error %.3g > %.0e", check, shape, e, tol)
	}
	resultsMu.Lock()
	results = append(results, fmt.Sprintf("| %s | %s | %.2e | %.0e | %s |", check, shape, e, tol, mark))
	resultsMu.Unlock()
}

func relL2(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.NaN()
	}
	var num, den float64
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func randn(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// bf16 rounds v as the GPU stores weights, so that the reference sees the same values.
func bf16(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = safetensors.BF16ToFloat32(safetensors.Float32ToBF16(x))
	}
	return out
}

// pair holds the same buffer on the GPU and on the reference.
type pair struct {
	g, r gpukern.Tensor
	n    int
}

// act makes an fp32 activation holding v on both backends.
func act(v []float32) pair {
	p := pair{g: gpu.Alloc(len(v)), r: ref.Alloc(len(v)), n: len(v)}
	gpu.Upload(p.g, v)
	ref.Upload(p.r, v)
	return p
}

// out makes an activation that the GPU kernel must overwrite: NaN on the GPU.
func out(n int) pair {
	p := pair{g: gpu.Alloc(n), r: ref.Alloc(n), n: n}
	nan := make([]float32, n)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	gpu.Upload(p.g, nan)
	return p
}

// weight makes a bf16 weight on the GPU and its rounded values on the reference.
func weight(v []float32) pair {
	return pair{g: gpu.Weight(v), r: ref.Weight(bf16(v)), n: len(v)}
}

func (p pair) free() {
	gpu.Free(p.g)
	ref.Free(p.r)
}

// compare syncs the GPU and records the two buffers' difference.
func (p pair) compare(t *testing.T, check, shape string, tol float64) {
	t.Helper()
	got, want := p.onGPU(t), make([]float32, p.n)
	ref.Download(want, p.r)
	record(t, check, shape, got, want, tol)
}

// onGPU syncs and returns the GPU buffer's values.
func (p pair) onGPU(t *testing.T) []float32 {
	t.Helper()
	if err := gpu.Sync(); err != nil {
		t.Fatal(err)
	}
	v := make([]float32, p.n)
	gpu.Download(v, p.g)
	return v
}

func shapeOf(dims ...int) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = fmt.Sprint(d)
	}
	return strings.Join(s, "x")
}
