//go:build cudaemu

package kernels

/*
#cgo CXXFLAGS: -std=c++20 -O2
#include <stddef.h>
#include <stdint.h>

int emu_kernels(void);
const char *emu_kernel_name(int i);
const char *emu_kernel_file(int i);
int emu_kernel_arity(int i);
const char *emu_launch(int i, unsigned gx, unsigned gy, unsigned gz, unsigned block, size_t smem, const uint64_t *args);
*/
import "C"

import (
	"fmt"
	"sync"
)

// With the cudaemu build tag, this package also runs its kernels on the CPU (emu.cpp, emu.h),
// compiled from the same sources as C++: the cuda backend's GPU tests then run in CI, on a
// machine without a GPU, through gpukern/cuda/drv's emulated driver. The emulator is
// exact about what a kernel computes from its arguments and grid (barriers and warp shuffles
// included, with deadlocks and reads of ended lanes reported), not about timing: blocks run
// one at a time and threads only switch at barriers, launches taking turns at how (emu.cpp's
// emu_launch): the order of the blocks and of each block's threads, thread or warp turns, and
// what shared memory starts as, so that code that needs one block to end last or one thread
// to write before another reads, with no barrier between, fails. The first block of a launch
// to reach an atomic waits there while the others run to their end, so that a block counting
// itself done before its threads have written what it counted fails too.

// Emulated is a kernel that the emulator runs.
type Emulated struct {
	Name, File string // e.g. "rmsnorm", "elementwise.cu"
	Args       int    // how many arguments it takes
	id         C.int
}

var emu struct {
	once    sync.Once
	kernels map[string]*Emulated
	mu      sync.Mutex // one launch at a time: the emulator's state is global
}

// EmulatedKernels returns every kernel the emulator runs, by name.
func EmulatedKernels() map[string]*Emulated {
	emu.once.Do(func() {
		emu.kernels = map[string]*Emulated{}
		for i := range C.int(C.emu_kernels()) {
			k := &Emulated{Name: C.GoString(C.emu_kernel_name(i)), File: C.GoString(C.emu_kernel_file(i)), Args: int(C.emu_kernel_arity(i)), id: i}
			emu.kernels[k.Name] = k
		}
	})
	return emu.kernels
}

// Launch runs k over grid with block threads per block (a multiple of 32, at most 1024) and
// shared bytes of dynamic shared memory. An argument is the low bytes of its cell (a pointer
// or a 64-bit integer all 8, an int or a float the first 4), as cuLaunchKernel reads them;
// pointers are host addresses.
func (k *Emulated) Launch(grid [3]int, block, shared int, args []uint64) error {
	if len(args) != k.Args {
		return fmt.Errorf("kernel %s takes %d arguments, launched with %d", k.Name, k.Args, len(args))
	}
	if grid[0] < 1 || grid[1] < 1 || grid[2] < 1 || grid[0] > 1<<31-1 || grid[1] > 65535 || grid[2] > 65535 || shared < 0 {
		return fmt.Errorf("kernel %s: bad launch: grid %v, %d bytes of shared memory", k.Name, grid, shared)
	}
	var argp *C.uint64_t
	if len(args) > 0 {
		argp = (*C.uint64_t)(&args[0])
	}
	emu.mu.Lock()
	defer emu.mu.Unlock()
	if msg := C.emu_launch(k.id, C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]), C.uint(block), C.size_t(shared), argp); msg != nil {
		return fmt.Errorf("kernel %s (grid %v, block %d): %s", k.Name, grid, block, C.GoString(msg))
	}
	return nil
}
