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

// So do their threads, each thread running once: in nine launches in a row, one runs block
// 0's threads first to last, one last to first, and they end with three different threads;
// as fibers (at a barrier) and as plain calls alike.
func TestEmulatedThreadOrder(t *testing.T) {
	const threads = 96
	for _, kernel := range []string{"emu_thread_order", "emu_thread_order_direct"} {
		lasts := map[int32]bool{}
		forward, backward := false, false
		reversed := seq(threads)
		slices.Reverse(reversed)
		for range 9 {
			out := make([]int32, 1+threads)
			if err := EmulatedKernels()[kernel].Launch([3]int{2, 1, 1}, threads, 0, []uint64{addr(out)}); err != nil {
				t.Fatal(err)
			}
			ran := out[1:]
			if int(out[0]) != threads || !slices.Equal(slices.Sorted(slices.Values(ran)), seq(threads)) {
				t.Fatalf("%s: %d threads ran, in the order %v: want each of %d once", kernel, out[0], ran, threads)
			}
			forward = forward || slices.Equal(ran, seq(threads))
			backward = backward || slices.Equal(ran, reversed)
			lasts[ran[threads-1]] = true
		}
		if !forward || !backward || len(lasts) != 3 {
			t.Errorf("%s, nine launches: first to last %v, last to first %v, last threads %v; want both orders and three different last threads",
				kernel, forward, backward, lasts)
		}
	}
}

// In some launches the threads take turns thread by thread, in others warp by warp: a warp
// then runs through its shuffles before the next one starts.
func TestEmulatedWarpTurns(t *testing.T) {
	const threads = 64
	byThread, byWarp := false, false
	for range 36 {
		out := make([]int32, 1+2*threads)
		if err := EmulatedKernels()["emu_warp_turns"].Launch([3]int{2, 1, 1}, threads, 0, []uint64{addr(out)}); err != nil {
			t.Fatal(err)
		}
		if out[0] != 2*threads {
			t.Fatalf("%d records, want %d", out[0], 2*threads)
		}
		// The first half of the records: one warp's two each (warp by warp), or every
		// thread's first (thread by thread).
		warps := map[int32]bool{}
		for _, tid := range out[1 : 1+threads] {
			warps[tid/32] = true
		}
		byWarp = byWarp || len(warps) == 1
		byThread = byThread || len(warps) == 2
	}
	if !byWarp || !byThread {
		t.Errorf("36 launches: warp by warp %v, thread by thread %v; want both", byWarp, byThread)
	}
}

// What these orders are for: a race between a block's threads, whose result the first-to-last
// order alone would never show, shows in some of 36 launches in a row (and, as on a GPU, not in
// every one). emu_racy_broadcast's readers run before its writer (in another order of the
// threads); emu_racy_warps' warps overwrite what the others still have to read (warp by warp).
func TestEmulatorShowsRaces(t *testing.T) {
	const threads = 96
	broadcast, warps := false, false
	for range 36 {
		got := make([]float32, threads)
		if err := EmulatedKernels()["emu_racy_broadcast"].Launch([3]int{1, 1, 1}, threads, 0, []uint64{addr(got)}); err != nil {
			t.Fatal(err)
		}
		broadcast = broadcast || slices.ContainsFunc(got, func(v float32) bool { return v != 1 })
		seen := make([]int32, 2*threads/32)
		if err := EmulatedKernels()["emu_racy_warps"].Launch([3]int{1, 1, 1}, threads, 0, []uint64{addr(seen)}); err != nil {
			t.Fatal(err)
		}
		warps = warps || !slices.Equal(seen, []int32{0, 0, 0, 1, 1, 1})
	}
	if !broadcast || !warps {
		t.Errorf("36 launches: the broadcast's race shown %v, the warps' %v; want both", broadcast, warps)
	}
}

// A race between blocks: a block that counts itself done before all of its threads have
// written their part (emu_racy_count with no barrier) leaves the block that counts last parts to
// read that are not yet written. Blocks run one at a time, but the first to reach an atomic
// waits there while the others run to their end, so the race shows in some of 36 launches in a
// row; with the barrier, in none.
func TestEmulatorShowsRacesBetweenBlocks(t *testing.T) {
	const blocks, threads = 3, 64
	for _, barrier := range []uint64{0, 1} {
		shown := 0
		for range 36 {
			out := make([]int32, 2+blocks*threads)
			if err := EmulatedKernels()["emu_racy_count"].Launch([3]int{blocks, 1, 1}, threads, 0, []uint64{addr(out), barrier}); err != nil {
				t.Fatal(err)
			}
			if out[0] != blocks {
				t.Fatalf("barrier %d: %d blocks counted, want %d", barrier, out[0], blocks)
			}
			if out[1] != blocks*threads {
				shown++
			}
		}
		if barrier == 0 && shown == 0 {
			t.Error("36 launches without the barrier: the last block always read every part; want the race shown")
		}
		if barrier == 1 && shown > 0 {
			t.Errorf("with the barrier, %d of 36 launches read parts not yet written", shown)
		}
	}
}

// A block's static shared memory starts filled with 0xff bytes or with zeros, by turns of nine
// launches, not with the last block's values, whichever order the blocks run in.
func TestEmulatedStaticSharedPoisoned(t *testing.T) {
	seen := map[uint32]bool{}
	for range 18 {
		out := make([]float32, 3)
		if err := EmulatedKernels()["emu_static_shared"].Launch([3]int{3, 1, 1}, 32, 0, []uint64{addr(out)}); err != nil {
			t.Fatal(err)
		}
		b1, b2 := math.Float32bits(out[1]), math.Float32bits(out[2])
		if out[0] != 1 || b1 != b2 || b1 != math.MaxUint32 && b1 != 0 {
			t.Fatalf("block 0 read %v, blocks 1 and 2 %#x and %#x: want 1, then 0xff bytes or zeros", out[0], b1, b2)
		}
		seen[b1] = true
	}
	if len(seen) != 2 {
		t.Errorf("18 launches filled shared memory with %v alone: want 0xff bytes and zeros by turns", seen)
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

// sink makes every slice whose address goes to a kernel (addr) escape to the heap: one on a
// goroutine's stack moves when the stack grows, and the kernel would write where it was.
var sink any

func addr[T any](s []T) uint64 {
	sink = s
	return uint64(uintptr(unsafe.Pointer(&s[0])))
}

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
