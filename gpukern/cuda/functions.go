//go:build cuda

package cuda

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
	"github.com/lorafleet/lorafleet/gpukern/cuda/kernels"
)

// functions are the kernels, looked up once after their modules are loaded.
type functions struct {
	embedding, gather, rmsnorm, siluMul, addBias, add, toBF16 drv.Function
	ropeWriteKV, flashPrefill                                 drv.Function
	decodeSplit                                               [len(decodeHeadDims)]drv.Function  // by head size (decodeSplitOf)
	gemmSmall, gemmDeep, gemmLean                             [len(smallGEMMBounds)]drv.Function // by batch bound
	loraShrink, loraExpand                                    drv.Function
	argmax, sampleRows                                        drv.Function
	fillRandom                                                drv.Function
}

// load compiles every kernel source for arch (or takes it from the cache in dir), loads the
// modules and looks the functions up.
func (f *functions) load(dir, arch string) error {
	byName := map[string]*drv.Function{
		"embedding": &f.embedding, "gather": &f.gather, "rmsnorm": &f.rmsnorm, "silu_mul": &f.siluMul,
		"add_bias": &f.addBias, "add": &f.add, "to_bf16": &f.toBF16, "rope_write_kv": &f.ropeWriteKV,
		"flash_prefill": &f.flashPrefill, "lora_shrink": &f.loraShrink, "lora_expand": &f.loraExpand,
		"argmax": &f.argmax, "sample_rows": &f.sampleRows, "fill_random": &f.fillRandom,
	}
	for i, hd := range decodeHeadDims {
		byName[fmt.Sprintf("decode_split_hd%d", hd)] = &f.decodeSplit[i]
	}
	for i, m := range smallGEMMBounds {
		byName[fmt.Sprintf("gemm_small_m%d", m)] = &f.gemmSmall[i]
		byName[fmt.Sprintf("gemm_deep_m%d", m)] = &f.gemmDeep[i]
		if m > leanGEMMFrom {
			byName[fmt.Sprintf("gemm_lean_m%d", m)] = &f.gemmLean[i]
		}
	}
	// Each function is looked up in the module its source declares it in: a lookup that
	// fails is an API error that compute-sanitizer reports.
	for _, src := range kernels.Sources() {
		m, err := drv.LoadModule(src, arch, dir)
		if err != nil {
			return fmt.Errorf("cuda: %w", err)
		}
		for _, name := range src.Kernels {
			dst, ok := byName[name]
			if !ok {
				continue // a kernel the backend does not launch
			}
			if *dst, err = m.Function(name); err != nil {
				return fmt.Errorf("cuda: kernel %s of %s: %w", name, src.Name, err)
			}
			delete(byName, name)
		}
	}
	if len(byName) > 0 {
		return fmt.Errorf("cuda: kernels %v are in no source", slices.Sorted(maps.Keys(byName)))
	}
	// The prefill kernel's tiles need more than 48 KiB of shared memory for large heads.
	if err := drv.AllowSharedMemory(f.flashPrefill, flashSharedBytes(256)); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	return nil
}

// args packs kernel arguments: drv.Function.Launch copies 8 bytes from behind each pointer, so
// every argument gets an 8-byte cell whatever its C type.
type args struct{ cells []uint64 }

func (a *args) ptr(t *Tensor) *args        { return a.raw(uint64(t.ptr)) }
func (a *args) dptr(p drv.DevicePtr) *args { return a.raw(uint64(p)) }
func (a *args) i32(v int) *args            { return a.raw(uint64(uint32(int32(v)))) }
func (a *args) i64(v int) *args            { return a.raw(uint64(int64(v))) }
func (a *args) f32(v float32) *args        { return a.raw(uint64(math.Float32bits(v))) }
func (a *args) raw(v uint64) *args {
	if a.cells == nil {
		a.cells = make([]uint64, 0, 20) // room for every kernel's arguments: one allocation
	}
	a.cells = append(a.cells, v)
	return a
}
func (a *args) pointers() []unsafe.Pointer {
	ps := make([]unsafe.Pointer, len(a.cells))
	for i := range a.cells {
		ps[i] = unsafe.Pointer(&a.cells[i])
	}
	return ps
}

// dims is a launch shape.
type dims = host.Dims

func d1(x int) dims    { return dims{X: x, Y: 1, Z: 1} }
func d2(x, y int) dims { return dims{X: x, Y: y, Z: 1} }

// launch records fn for the next flush (graph.go). Callers are inside b.do.
func (b *Backend) launch(name string, fn drv.Function, grid, block dims, shared int, a *args) {
	b.record(kernel(name, fn, grid, block, shared, a))
}

// kernel is the record of a launch of fn.
func kernel(name string, fn drv.Function, grid, block dims, shared int, a *args) host.Op {
	return host.Op{Fn: drv.FuncHandle(fn), Name: name, Grid: grid, Block: block, Shared: shared, Cells: a.cells}
}

// gridFor is the number of blocks of threads that covers n elements, capped for
// grid-stride kernels.
func gridFor(n, threads int) int { return min((n+threads-1)/threads, 65535) }
