//go:build cudaemu

package kernels

import (
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// The emulator runs every kernel of the sources, from the file it is in: a kernel added to a
// .cu file must be added to emu.cpp's table too.
func TestEmulatorHasEveryKernel(t *testing.T) {
	want := map[string]string{}
	for _, s := range Sources() {
		for _, k := range s.Kernels {
			want[k] = s.Name
		}
	}
	got := 0
	for name, k := range EmulatedKernels() {
		if k.File == "emu.cpp" {
			continue // the emulator's own test kernels
		}
		got++
		if want[name] != k.File {
			t.Errorf("kernel %s emulated from %s, in the sources from %q", name, k.File, want[name])
		}
	}
	if got != len(want) {
		t.Errorf("%d kernels emulated, %d in the sources", got, len(want))
	}
}

// What would hang or be undefined on a GPU is an error, not a hang or a pass.
func TestEmulatorReportsBrokenKernels(t *testing.T) {
	out := make([]int32, 32)
	for name, want := range map[string]string{
		"emu_deadlock":          "deadlock",
		"emu_shuffle_ended":     "a lane that has ended",
		"emu_unmarked_barrier":  "marked barrier-free",
		"emu_partial_mask":      "partial lane mask",
		"emu_divergent_barrier": "different __syncthreads",
		"emu_trap":              "trapped",
	} {
		err := EmulatedKernels()[name].Launch([3]int{2, 1, 1}, 32, 0, []uint64{addr(out)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", name, err, want)
		}
	}
	runtime.KeepAlive(out)
}

// Launches take turns at the order of their blocks, each block running once: in three
// launches in a row, one runs them first to last, and each ends with a different block (which
// block ends last must not decide a result).
func TestEmulatedBlockOrder(t *testing.T) {
	grid := [3]int{5, 3, 2}
	n := grid[0] * grid[1] * grid[2]
	lasts := map[int32]bool{}
	inOrder := false
	for range 3 {
		out := make([]int32, 1+n)
		if err := EmulatedKernels()["emu_block_order"].Launch(grid, 32, 0, []uint64{addr(out)}); err != nil {
			t.Fatal(err)
		}
		ran := out[1:]
		if int(out[0]) != n || !slices.Equal(slices.Sorted(slices.Values(ran)), seq(n)) {
			t.Fatalf("%d blocks ran, in the order %v: want each of %d once", out[0], ran, n)
		}
		inOrder = inOrder || slices.Equal(ran, seq(n))
		lasts[ran[n-1]] = true
	}
	if !inOrder || len(lasts) != 3 {
		t.Errorf("three launches: first to last %v, last blocks %v; want one in order and three different last blocks", inOrder, lasts)
	}
}

// seq is 0, 1, …, n-1.
func seq(n int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = int32(i)
	}
	return s
}

func addr[T any](s []T) uint64 { return uint64(uintptr(unsafe.Pointer(&s[0]))) }

// A grid-stride kernel covers every element whatever the grid; the arguments are read from
// their cells' low bytes.
func TestEmulatedAdd(t *testing.T) {
	const n = 1000
	a, b, out := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range a {
		a[i], b[i], out[i] = float32(i), float32(2*i), float32(math.NaN())
	}
	if err := EmulatedKernels()["add"].Launch([3]int{3, 1, 1}, 64, 0, []uint64{addr(out), addr(a), addr(b), n}); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	for i, v := range out {
		if v != float32(3*i) {
			t.Fatalf("out[%d] = %v, want %d", i, v, 3*i)
		}
	}
}

// argmax reduces a row with warp shuffles and __syncthreads over 1024 threads: the barriers
// must hold every thread until all arrive, or lanes read stale values.
func TestEmulatedBarriers(t *testing.T) {
	const vocab, rows = 5000, 3
	logits := make([]float32, vocab*rows)
	wantIDs := []int32{4999, 0, 1234}
	for r, id := range wantIDs {
		for i := range vocab {
			logits[r*vocab+i] = float32(math.Sin(float64(i + r)))
		}
		logits[r*vocab+int(id)] = 2
	}
	ids := make([]int32, rows)
	if err := EmulatedKernels()["argmax"].Launch([3]int{rows, 1, 1}, 1024, 0, []uint64{addr(ids), addr(logits), vocab}); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(logits)
	for r := range ids {
		if ids[r] != wantIDs[r] {
			t.Errorf("row %d: argmax %d, want %d", r, ids[r], wantIDs[r])
		}
	}
}

// mma_bf16 (gemm.cuh's tensor-core multiply) takes and gives its fragments in PTX's layout for
// mma.m16n8k16: a test kernel that loads them by the documented formulas gets a·b + c.
func TestEmulatedMMA(t *testing.T) {
	var a [16 * 16]uint16
	var b [8 * 16]uint16 // column-major: b[col*16 + row]
	af := func(r, k int) float32 { return float32((r*7+k*3)%11) - 5 }
	bf := func(k, c int) float32 { return float32((k*5+c*2)%9)/4 - 1 }
	for r := range 16 {
		for k := range 16 {
			a[r*16+k] = uint16(math.Float32bits(af(r, k)) >> 16) // small integers and quarters: exact in bf16
		}
	}
	for c := range 8 {
		for k := range 16 {
			b[c*16+k] = uint16(math.Float32bits(bf(k, c)) >> 16)
		}
	}
	d := make([]float32, 16*8)
	if err := EmulatedKernels()["emu_mma"].Launch([3]int{1, 1, 1}, 32, 0, []uint64{addr(d), addr(a[:]), addr(b[:])}); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(&a)
	runtime.KeepAlive(&b)
	for r := range 16 {
		for c := range 8 {
			var want float32
			for k := range 16 {
				want += af(r, k) * bf(k, c)
			}
			if got := d[r*8+c]; got != want {
				t.Errorf("d[%d][%d] = %v, want %v", r, c, got, want)
			}
		}
	}
}

// What the GPU would reject, or what the emulator cannot run, is an error, not a crash.
func TestEmulatedLaunchErrors(t *testing.T) {
	k := EmulatedKernels()["add"]
	x := make([]float32, 4)
	for _, c := range []struct {
		grid        [3]int
		block       int
		args        []uint64
		errContains string
	}{
		{[3]int{1, 1, 1}, 32, []uint64{addr(x), addr(x)}, "takes 4 arguments"},
		{[3]int{0, 1, 1}, 32, []uint64{addr(x), addr(x), addr(x), 4}, "bad launch"},
		{[3]int{1, 70000, 1}, 32, []uint64{addr(x), addr(x), addr(x), 4}, "bad launch"},
		{[3]int{1, 1, 1}, 48, []uint64{addr(x), addr(x), addr(x), 4}, "block size not emulated"},
		{[3]int{1, 1, 1}, 2048, []uint64{addr(x), addr(x), addr(x), 4}, "block size not emulated"},
	} {
		err := k.Launch(c.grid, c.block, 0, c.args)
		if err == nil || !strings.Contains(err.Error(), c.errContains) {
			t.Errorf("grid %v block %d, %d args: err = %v, want %q", c.grid, c.block, len(c.args), err, c.errContains)
		}
	}
}
