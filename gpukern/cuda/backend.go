//go:build cuda

// Package cuda implements gpukern.Backend on an NVIDIA GPU, through gpukern/cuda/drv:
// gorgonia.org/cu for the context, memory, streams and launches; the kernels of
// gpukern/cuda/kernels compiled at start-up by NVRTC for the GPU's architecture, with a
// tensor-core GEMM of their own for decode batches and cuBLAS for larger ones. Built with the
// cudaemu tag as well, drv is a CPU emulator instead, which runs this package's GPU tests
// without a GPU.
//
// Types: activations (Alloc) are fp32; weights, adapters and the KV cache are bf16. A GEMM
// input is in bf16 when the GEMM reads it: written so by the kernel that made it, or
// converted just before.
//
// Only a binary built with the cuda tag imports this package: gorgonia.org/cu's init exits
// the process where there is no GPU driver (not with cudaemu, which does not import it).
package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
	"unsafe"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// Config sets up a Backend. Zero fields take the documented defaults.
type Config struct {
	// Device is the GPU's ordinal. Default 0.
	Device int
	// AdapterSlots is how many adapters the preallocated adapter pool holds. Required (> 0).
	AdapterSlots int
	// AdapterSlotElems is the size of one slot in elements: the largest adapter, as
	// SlotElems counts it. Required (> 0).
	AdapterSlotElems int
	// CacheDir keeps compiled kernels between starts. Default: the user cache directory's
	// lorafleet/cubin.
	CacheDir string
	// NoGraphs launches every kernel on its own instead of replaying repeated steps as CUDA
	// graphs. Default false (graphs on).
	NoGraphs bool
	// FlushOps is how many recorded launches are launched before a step ends, so that the
	// GPU works while the host records the rest (host.FlushPoint). Default host.FlushOps.
	FlushOps int
	// NoEarlyLaunch launches every kernel only once the one before it has ended, where the
	// GPU (sm_90 and later) and driver (CUDA 12) could start it while that one finishes
	// (host.Step's Early). Default false (early launches on).
	NoEarlyLaunch bool
}

func (c *Config) validate() error {
	if c.FlushOps == 0 {
		c.FlushOps = host.FlushOps
	}
	if c.Device < 0 || c.AdapterSlots <= 0 || c.AdapterSlotElems <= 0 || c.FlushOps < 0 {
		return fmt.Errorf("cuda: device %d, %d adapter slots of %d elements, flush every %d launches: need a device ≥ 0, a pool and a flush size ≥ 0",
			c.Device, c.AdapterSlots, c.AdapterSlotElems, c.FlushOps)
	}
	if c.CacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("cuda: no kernel cache directory: %w", err)
		}
		c.CacheDir = filepath.Join(dir, "lorafleet", "cubin")
	}
	return nil
}

// Tensor is device memory: fp32, or bf16 for weights, adapters and the KV cache.
type Tensor struct {
	ptr    drv.DevicePtr
	n      int
	bf16   bool
	pooled bool // part of an adapter pool slot: freed with the slot
}

// Len implements gpukern.Tensor.
func (t *Tensor) Len() int { return t.n }

func (t *Tensor) bytes() int64 {
	if t.bf16 {
		return 2 * int64(t.n)
	}
	return 4 * int64(t.n)
}

// Backend is the CUDA backend. Like every gpukern.Backend it serves one caller at a time.
type Backend struct {
	cfg        Config
	dev        drv.Device
	ctx        drv.Context
	arch       string // e.g. "sm_90"
	sms        int    // multiprocessors
	stream     drv.Stream
	side       drv.Stream // LoRA kernels beside the main stream's GEMMs (host.Schedule), at a higher priority (makeSide)
	forked     drv.Event  // recorded on stream, waited for by side
	joined     drv.Event  // recorded on side, waited for by stream
	blas       *drv.Blas
	fn         functions
	meta       *arena // per-step metadata, copied on metaStream (sendMeta)
	metaStream drv.Stream
	metaSent   drv.Event // recorded on metaStream after a copy, waited for by stream
	retired    []*arena  // arenas that filled up this step, freed once the stream has run it (upload)
	scratch    scratch   // reusable device buffers
	pool       *adapterPool
	err        error // the first failure since the last Sync

	ops        []host.Op            // recorded, not yet launched (graph.go)
	launched   bool                 // work was launched since the last drain: the step's first flush is past
	graphs     host.Graphs[uintptr] // instantiated graphs (CUgraphExec) by launch sequence
	slotsUsed  []bool               // per adapter pool slot: the recorded work reads it
	copy16     bf16Copy             // a GEMM input already in bf16 (gemm.go)
	loraTab    host.LoRA            // scratch of loraTablesOf
	shrunk     segsKey              // the segments loraTab holds, while the LoRAShrink that made it is the last LoRA call
	loraMain   bool                 // LoRA kernels on the compute stream, not the side stream (SetLoRASideStream)
	cublasOnly bool                 // every GEMM by cuBLAS, none by gemm_small or gemm_deep (SetSmallGEMM)
	splitOff   bool                 // no GEMM's k cut into chunks (SetGEMMSplit)
	deepOnly   bool                 // every GEMM of ours by gemm_deep (SetDeepGEMM)
	lean       bool                 // gemm_lean and LoRA blocks of 128 threads, which fit beside it (SetLeanGEMM)
	tune       tuning               // cuBLAS GEMMs picked by timing (SetTunedGEMM)
	early      bool                 // launches marked Early start before the kernel before them ends (Config.NoEarlyLaunch, SetEarlyLaunch)
	earlyOK    bool                 // the GPU and driver allow it (until the driver refuses one)
	ropeApart  bool                 // RoPEAttention launches rope_write_kv, not decode_split's own (SetFusedRoPE)
	attnPlan   host.Attn            // scratch of Attention
	attnMeta   attnMeta             // where the arena holds attnPlan's tables

	prof    map[string]time.Duration // kernel times, while Profile runs
	profErr error
}

// blasWorkspace is cuBLAS's own device memory: set explicitly, cuBLAS allocates nothing
// while a graph is captured (32 MiB is what it asks for on Hopper).
const blasWorkspace = 32 << 20

var _ gpukern.Backend = (*Backend)(nil)

// New opens the GPU, compiles (or loads from the cache) every kernel and preallocates the
// adapter pool.
func New(cfg Config) (*Backend, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Backend{cfg: cfg, graphs: host.Graphs[uintptr]{Off: cfg.NoGraphs, Free: drv.FreeGraph}, slotsUsed: make([]bool, cfg.AdapterSlots)}
	var err error
	b.do(func() { err = b.open() })
	if err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Backend) open() error {
	n, err := drv.NumDevices()
	if err != nil || b.cfg.Device >= n {
		return fmt.Errorf("cuda: device %d of %d: %v", b.cfg.Device, n, err)
	}
	if b.dev, err = drv.GetDevice(b.cfg.Device); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	major, minor, err := b.dev.ComputeCapability()
	if err != nil {
		return fmt.Errorf("cuda: compute capability: %w", err)
	}
	if major < 8 {
		return fmt.Errorf("cuda: compute capability %d.%d: bf16 kernels need 8.0 (Ampere) or newer", major, minor)
	}
	b.arch = fmt.Sprintf("sm_%d%d", major, minor)
	b.earlyOK = major >= 9 && drv.EarlyLaunch()
	b.early = b.earlyOK && !b.cfg.NoEarlyLaunch
	if b.sms, err = drv.SMCount(b.dev); err != nil {
		return fmt.Errorf("cuda: multiprocessor count: %w", err)
	}
	if b.ctx, err = b.dev.RetainPrimaryCtx(); err != nil {
		return fmt.Errorf("cuda: primary context: %w", err)
	}
	if err := drv.SetCurrentContext(b.ctx); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	// A blocking stream: the synchronous copies on the null stream stay ordered with it.
	if b.stream, err = drv.MakeStream(drv.DefaultStream); err != nil {
		return fmt.Errorf("cuda: stream: %w", err)
	}
	if err := b.makeSide(true); err != nil {
		return err
	}
	if b.metaStream, err = drv.MakeStream(drv.NonBlocking); err != nil {
		return fmt.Errorf("cuda: metadata stream: %w", err)
	}
	for _, e := range []*drv.Event{&b.forked, &b.joined, &b.metaSent} {
		if *e, err = drv.MakeEvent(drv.DisableTiming); err != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("cuda: stream events: %w", err)
	}
	if err := b.fn.load(b.cfg.CacheDir, b.arch); err != nil {
		return err
	}
	if b.blas, err = drv.NewBlas(); err != nil {
		return err
	}
	if err := b.blas.SetStream(drv.StreamHandle(b.stream)); err != nil {
		return err
	}
	ws := b.buffer(&b.scratch.blas, blasWorkspace)
	if err := b.blas.SetWorkspace(uintptr(ws), blasWorkspace); err != nil {
		return err
	}
	if b.meta, err = newArena(1 << 20); err != nil {
		return err
	}
	b.pool, err = newAdapterPool(b.cfg.AdapterSlots, b.cfg.AdapterSlotElems, b.ctx, b.stream)
	return err
}

// makeSide makes the side stream, at the device's greatest stream priority where prioritized
// (else the least, the main stream's). The LoRA kernels run there, and what the main stream
// waits for is their end: prioritized, their blocks go to SMs as soon as the base GEMM's
// leave room, instead of after all of them.
func (b *Backend) makeSide(prioritized bool) error {
	least, greatest, err := drv.StreamPriorityRange()
	if err != nil {
		return fmt.Errorf("cuda: stream priorities: %w", err)
	}
	priority := least
	if prioritized {
		priority = greatest
	}
	if b.side, err = drv.MakeStreamWithPriority(priority, drv.NonBlocking); err != nil {
		return fmt.Errorf("cuda: side stream: %w", err)
	}
	return nil
}

// Close releases the GPU resources; the backend must not be used afterwards.
func (b *Backend) Close() {
	b.do(func() {
		if b.stream != (drv.Stream{}) {
			b.flush()
			_ = b.stream.Synchronize()
		}
		b.graphs.Close()
		b.pool.close()
		b.meta.close()
		b.freeRetired()
		b.freeTuned()
		b.scratch.free()
		if b.blas != nil {
			_ = b.blas.Destroy()
		}
		for _, e := range []*drv.Event{&b.forked, &b.joined, &b.metaSent} {
			if *e != (drv.Event{}) {
				_ = drv.DestroyEvent(e)
			}
		}
		for _, s := range []*drv.Stream{&b.side, &b.metaStream, &b.stream} {
			if *s != (drv.Stream{}) {
				_ = s.Destroy()
			}
		}
		if b.ctx != (drv.Context{}) {
			_ = b.dev.ReleasePrimaryCtx()
		}
	})
}

// do runs f on a locked OS thread with the backend's context current: the driver keeps the
// current context per thread, and Go moves goroutines between threads.
func (b *Backend) do(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if b.ctx != (drv.Context{}) {
		if err := drv.SetCurrentContext(b.ctx); err != nil {
			b.fail(fmt.Errorf("cuda: making the context current: %w", err))
			return
		}
	}
	f()
}

// fail records the first error since the last Sync; kernels have no error return.
func (b *Backend) fail(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

// Name implements gpukern.Backend.
func (b *Backend) Name() string { return "cuda" }

// Arch is the architecture the kernels were compiled for, e.g. "sm_90".
func (b *Backend) Arch() string { return b.arch }

// SMs is the GPU's number of multiprocessors.
func (b *Backend) SMs() int { return b.sms }

// MemInfo returns the device's free and total memory in bytes.
func (b *Backend) MemInfo() (free, total int64, err error) {
	b.do(func() { free, total, err = drv.MemInfo() })
	return free, total, err
}

// Sync implements gpukern.Backend: it runs the recorded work and waits for it.
func (b *Backend) Sync() error {
	b.do(b.drain)
	err := b.err
	b.err = nil
	return err
}

// drain runs the recorded work, waits for the stream and starts the metadata arena over.
// Callers are inside b.do.
func (b *Backend) drain() {
	b.flush()
	if err := b.stream.Synchronize(); err != nil {
		b.fail(fmt.Errorf("cuda: a kernel failed: %w", err))
	}
	// The stream waited for every metadata copy, unless queuing that wait failed: the arena
	// is written over next, so make sure.
	if err := b.metaStream.Synchronize(); err != nil {
		b.fail(fmt.Errorf("cuda: copying metadata: %w", err))
	}
	b.freeRetired()
	b.meta.Reset()
	b.attnMeta = attnMeta{} // its tables were in the arena
	b.launched = false
}

func (b *Backend) freeRetired() {
	for _, a := range b.retired {
		a.close()
	}
	b.retired = nil
}

func dev(t gpukern.Tensor) *Tensor {
	c, ok := t.(*Tensor)
	if !ok {
		// Mixing backends is a programming error that no input can cause.
		panic(fmt.Sprintf("cuda: tensor of type %T from another backend", t))
	}
	return c
}

// alloc returns n zeroed elements of device memory.
func (b *Backend) alloc(n int, bf16 bool) *Tensor {
	t := &Tensor{n: n, bf16: bf16}
	b.do(func() {
		size := max(t.bytes(), 4)
		p, err := drv.MemAlloc(size)
		if err != nil {
			b.fail(fmt.Errorf("cuda: allocating %d bytes: %w", size, err))
			return
		}
		t.ptr = p
		b.fail(drv.MemsetD8(p, 0, size))
	})
	return t
}

// Alloc implements gpukern.Backend: fp32 activations.
func (b *Backend) Alloc(n int) gpukern.Tensor { return b.alloc(n, false) }

// AllocCache implements gpukern.Backend: the KV cache is bf16.
func (b *Backend) AllocCache(n int) gpukern.Tensor { return b.alloc(n, true) }

// Weight implements gpukern.Backend: weights are stored in bf16.
func (b *Backend) Weight(data []float32) gpukern.Tensor {
	t := b.alloc(len(data), true)
	b.Upload(t, data)
	return t
}

// Free implements gpukern.Backend.
func (b *Backend) Free(t gpukern.Tensor) {
	d := dev(t)
	if d.pooled || d.ptr == 0 {
		return
	}
	b.do(func() {
		b.flush() // recorded work may read t
		b.copy16 = bf16Copy{}
		b.fail(drv.MemFree(d.ptr))
	})
	d.ptr = 0
}

// Upload implements gpukern.Backend: a synchronous copy, ordered after queued kernels.
func (b *Backend) Upload(t gpukern.Tensor, src []float32) {
	d := dev(t)
	if len(src) == 0 {
		return
	}
	if len(src) > d.n {
		panic(fmt.Sprintf("cuda: uploading %d elements into %d", len(src), d.n))
	}
	b.do(func() {
		b.flush() // recorded work may read t's old contents
		b.copy16 = bf16Copy{}
		if d.bf16 {
			raw := toBF16(src)
			b.fail(drv.MemcpyHtoD(d.ptr, unsafe.Pointer(&raw[0]), int64(2*len(raw))))
			return
		}
		b.fail(drv.MemcpyHtoD(d.ptr, unsafe.Pointer(&src[0]), int64(4*len(src))))
	})
}

// Download implements gpukern.Backend; it waits for the queued kernels.
func (b *Backend) Download(dst []float32, t gpukern.Tensor) {
	d := dev(t)
	if len(dst) == 0 {
		return
	}
	b.do(func() {
		if d.pooled { // an adapter's tensor: its upload may still be in flight
			b.fail(b.pool.waitFor(b.pool.slotOf(d)))
		}
		if b.drain(); b.err != nil {
			return
		}
		if d.bf16 {
			raw := make([]uint16, len(dst))
			b.fail(drv.MemcpyDtoH(unsafe.Pointer(&raw[0]), d.ptr, int64(2*len(raw))))
			fromBF16(dst, raw)
			return
		}
		b.fail(drv.MemcpyDtoH(unsafe.Pointer(&dst[0]), d.ptr, int64(4*len(dst))))
	})
}
