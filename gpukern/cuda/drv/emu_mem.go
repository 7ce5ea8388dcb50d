//go:build cuda && cudaemu

package drv

/*
#include <stdlib.h>
#include <string.h>

// Exactly n bytes, so that under AddressSanitizer (go test -asan) a kernel reading or writing
// past its buffer is reported; 256-byte aligned as cuMemAlloc's are.
static void *emu_alloc(size_t n) {
	void *p = 0;
	return posix_memalign(&p, 256, n) == 0 ? p : 0;
}
*/
import "C"

import (
	"cmp"
	"fmt"
	"slices"
	"unsafe"
)

// Device memory in the emulator: C memory, in allocations kept sorted by address.

// hostOf is the host memory behind device range [p, p+n), which must lie in one allocation.
func hostOf(p DevicePtr, n int64) (unsafe.Pointer, error) {
	i, _ := slices.BinarySearchFunc(emu.allocs, p, func(a allocation, p DevicePtr) int {
		switch {
		case a.start+DevicePtr(a.size) <= p:
			return -1
		case a.start > p:
			return 1
		}
		return 0
	})
	if i == len(emu.allocs) || n < 0 || emu.allocs[i].start > p || int64(p-emu.allocs[i].start)+n > emu.allocs[i].size {
		return nil, fmt.Errorf("CUDA_ERROR_INVALID_VALUE: device range [%#x, +%d) is in no allocation", uintptr(p), n)
	}
	a := emu.allocs[i]
	return unsafe.Add(a.mem, p-a.start), nil
}

// syncRange is hostOf for a synchronous call, which a capture forbids.
func syncRange(p DevicePtr, n int64) (unsafe.Pointer, error) {
	if capturing() {
		return nil, errCapturing
	}
	return hostOf(p, n)
}

// MemAlloc returns size bytes of device memory, 256-byte aligned and filled with 0xff bytes
// (NaN as floats): memory on a GPU starts with whatever was there.
func MemAlloc(size int64) (DevicePtr, error) {
	emu.Lock()
	defer emu.Unlock()
	if capturing() {
		return 0, errCapturing
	}
	if size <= 0 || emu.used+size > emuTotalMemory {
		return 0, fmt.Errorf("CUDA_ERROR_OUT_OF_MEMORY: %d bytes, %d in use", size, emu.used)
	}
	mem := C.emu_alloc(C.size_t(size))
	if mem == nil {
		return 0, fmt.Errorf("CUDA_ERROR_OUT_OF_MEMORY: %d bytes", size)
	}
	C.memset(mem, 0xff, C.size_t(size))
	a := allocation{start: DevicePtr(uintptr(mem)), size: size, mem: mem}
	i, _ := slices.BinarySearchFunc(emu.allocs, a.start, func(x allocation, p DevicePtr) int { return cmp.Compare(x.start, p) })
	emu.allocs = slices.Insert(emu.allocs, i, a)
	emu.used += size
	return a.start, nil
}

// MemFree frees an allocation, once every stream's queued work has run (as cuMemFree waits
// for the device).
func MemFree(p DevicePtr) error {
	emu.Lock()
	defer emu.Unlock()
	if capturing() {
		return errCapturing
	}
	if err := finishAll(); err != nil {
		return err
	}
	i, ok := slices.BinarySearchFunc(emu.allocs, p, func(x allocation, p DevicePtr) int { return cmp.Compare(x.start, p) })
	if !ok {
		return fmt.Errorf("CUDA_ERROR_INVALID_VALUE: freeing %#x, which is no allocation", uintptr(p))
	}
	C.free(emu.allocs[i].mem)
	emu.used -= emu.allocs[i].size
	emu.allocs = slices.Delete(emu.allocs, i, i+1)
	return nil
}

// MemInfo reports the emulated device's free and total memory.
func MemInfo() (free, total int64, err error) {
	emu.Lock()
	defer emu.Unlock()
	return emuTotalMemory - emu.used, emuTotalMemory, nil
}

// MemsetD8 sets n bytes at p to v.
func MemsetD8(p DevicePtr, v byte, n int64) error {
	emu.Lock()
	defer emu.Unlock()
	dst, err := syncRange(p, n)
	if err != nil {
		return err
	}
	C.memset(dst, C.int(v), C.size_t(n))
	return nil
}

// MemcpyHtoD copies n bytes from host memory to the device.
func MemcpyHtoD(dst DevicePtr, src unsafe.Pointer, n int64) error {
	emu.Lock()
	defer emu.Unlock()
	d, err := syncRange(dst, n)
	if err != nil {
		return err
	}
	C.memcpy(d, src, C.size_t(n))
	return nil
}

// MemcpyDtoH copies n bytes from the device to host memory.
func MemcpyDtoH(dst unsafe.Pointer, src DevicePtr, n int64) error {
	emu.Lock()
	defer emu.Unlock()
	s, err := syncRange(src, n)
	if err != nil {
		return err
	}
	C.memcpy(dst, s, C.size_t(n))
	return nil
}

// MemcpyHtoDAsync queues a copy of n bytes of page-locked host memory to the device on s.
func MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, n int64, s Stream) error {
	return copyAsync(dst, func() (unsafe.Pointer, error) { return src, nil }, n, s)
}

// MemcpyDtoDAsync queues a copy of n bytes from device memory to device memory on s.
func MemcpyDtoDAsync(dst, src DevicePtr, n int64, s Stream) error {
	return copyAsync(dst, func() (unsafe.Pointer, error) { return hostOf(src, n) }, n, s)
}

// copyAsync queues a copy of n bytes to the device at dst on s, from where src says when the
// copy runs.
func copyAsync(dst DevicePtr, src func() (unsafe.Pointer, error), n int64, s Stream) error {
	emu.Lock()
	defer emu.Unlock()
	return run(s, func() error {
		d, err := hostOf(dst, n)
		if err != nil {
			return err
		}
		from, err := src()
		if err != nil {
			return err
		}
		C.memmove(d, from, C.size_t(n))
		return nil
	})
}

// AllocHost returns n bytes of host memory (page-locked on a GPU machine).
func AllocHost(n int) (unsafe.Pointer, error) {
	p := C.malloc(C.size_t(max(n, 1)))
	if p == nil {
		return nil, fmt.Errorf("cuMemAllocHost(%d): out of memory", n)
	}
	return p, nil
}

// MemFreeHost frees what AllocHost returned.
func MemFreeHost(p unsafe.Pointer) error {
	C.free(p)
	return nil
}
