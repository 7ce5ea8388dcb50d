package engine

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
	"github.com/lorafleet/lorafleet/worker/model"
)

// What a GPU backend offers beyond gpukern.Backend, measured where it is there.
type (
	// Grapher is a backend that can replay steps as CUDA graphs, and run them without.
	Grapher interface{ SetGraphs(on bool) }
	// SideStreamer runs the LoRA kernels on a side stream beside the base GEMMs, or not, and
	// gives that stream a higher priority than the base GEMMs' (the default), or the same.
	SideStreamer interface {
		SetLoRASideStream(on bool)
		SetLoRASidePriority(prioritized bool)
	}
	// EarlyLauncher lets kernels start before the one before them ends (on), or not.
	EarlyLauncher interface{ SetEarlyLaunch(on bool) }
	// RoPEFuser rotates q and k in the attention kernel of a decode step (on), or in a kernel
	// of their own before it.
	RoPEFuser interface{ SetFusedRoPE(on bool) }
	// Splitter lets the backend's own GEMMs cut a tile's k into chunks where that fills their
	// waves of blocks better (on), or never.
	Splitter interface{ SetGEMMSplit(on bool) }
	// DeepGEMMChooser runs every GEMM of the backend's own as one block an SM, which leaves
	// room for the LoRA kernels' blocks beside it (on), or picks its kernel by the GEMM's shape.
	DeepGEMMChooser interface{ SetDeepGEMM(on bool) }
	// LeanGEMMChooser runs the backend's own GEMMs held to fewer registers and the LoRA
	// kernels in smaller blocks, so that an SM holds a LoRA block beside two of the GEMM's (on),
	// or as usual.
	LeanGEMMChooser interface{ SetLeanGEMM(on bool) }
	// GEMMChooser runs the GEMMs of batches of up to SmallGEMMRows rows with the backend's own
	// kernels (on), or with the vendor library's; larger batches always run the latter.
	GEMMChooser interface {
		SetSmallGEMM(on bool)
		SmallGEMMRows() int
	}
	// GEMMTuner runs each GEMM that the vendor library runs with the fastest of its
	// algorithms, timed on the first GEMM of each shape (on), or with the library's own pick,
	// and reports the timings.
	GEMMTuner interface {
		SetTunedGEMM(on bool)
		TunedGEMMs() []host.TunedGEMM
	}
	// Flusher launches recorded work every n launches (n ≤ 0: only when the step needs a
	// result) and returns the previous setting.
	Flusher interface{ SetFlushOps(n int) int }
	// Uploader times its last adapter upload: putting it in bf16 into page-locked host
	// memory (a copy, or a conversion from float32) and the transfer from there to the slot.
	// WaitAdapterStaged waits for the first of the two: then only the transfer is left.
	Uploader interface {
		LastAdapterUpload() (prepare, transfer time.Duration, err error)
		WaitAdapterStaged() error
	}
	// CopyMeasurer measures the device memory's bandwidth with device-to-device copies of n
	// bytes (bytes read and written per second).
	CopyMeasurer interface {
		CopyBandwidth(n int64) (float64, error)
	}
	// MemInfoer reports the device's free and total memory.
	MemInfoer interface {
		MemInfo() (free, total int64, err error)
	}
	// Profiler times each kernel f launches, by name.
	Profiler interface {
		Profile(f func()) (map[string]time.Duration, error)
	}
	// GraphCounter counts how recorded work ran: eagerly or as CUDA graphs.
	GraphCounter interface{ GraphStats() host.GraphStats }
)

// Graphs is how the run's flushes ran (host.GraphStats, with the first capture failure as
// text).
type Graphs struct {
	Eager        int    `json:"eager"`
	Captured     int    `json:"captured"`
	Replayed     int    `json:"replayed"`
	Failed       int    `json:"failed"`
	FirstFailure string `json:"first_failure,omitempty"`
}

// timedGEMMs is what a GEMMTuner backend timed, in µs.
func (r *runner) timedGEMMs() []TimedGEMM {
	t, ok := r.be.(GEMMTuner)
	if !ok {
		return nil
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	var gs []TimedGEMM
	for _, h := range t.TunedGEMMs() {
		g := TimedGEMM{M: h.M, N: h.N, K: h.K, Splits: h.Splits, Pick: h.Pick, Note: h.Note, Refused: h.Refused}
		if len(h.Times) > 0 {
			g.GemmExUS = us(h.Times[0])
			for _, d := range h.Times[1:] {
				g.AlgosUS = append(g.AlgosUS, us(d))
			}
		}
		gs = append(gs, g)
	}
	return gs
}

func (r *runner) graphs() *Graphs {
	gc, ok := r.be.(GraphCounter)
	if !ok {
		return nil
	}
	s := gc.GraphStats()
	g := &Graphs{Eager: s.Eager, Captured: s.Captured, Replayed: s.Replayed, Failed: s.Failed}
	if s.FirstFailure != nil {
		g.FirstFailure = s.FirstFailure.Error()
	}
	return g
}

// Profile is where one decode step's time goes, kernels timed one by one without graphs.
type Profile struct {
	Batch, Adapters, Context int
	Kernels                  []KernelTime
}

// KernelTime is one kernel's share of a profiled decode step.
type KernelTime struct {
	Name  string  `json:"name"`
	MS    float64 `json:"ms"`
	Share float64 `json:"share"` // of the step's summed kernel times
}

// profile times one decode step of b rows, k adapters and context ctx by kernel, if the
// backend can.
func (r *runner) profile(kv *gpukern.KVCache, b, k, ctx int) (*Profile, error) {
	p, ok := r.be.(Profiler)
	if !ok {
		return nil, nil
	}
	batch := r.decodeBatch(b, k, ctx)
	var serr error
	times, err := p.Profile(func() { serr = r.step(batch, kv) })
	if err = cmp.Or(serr, err); err != nil {
		return nil, fmt.Errorf("engine bench: profiling a decode step: %w", err)
	}
	var total time.Duration
	for _, d := range times {
		total += d
	}
	var ks []KernelTime
	for name, d := range times {
		ks = append(ks, KernelTime{Name: name, MS: ms(d), Share: float64(d) / float64(total)})
	}
	slices.SortFunc(ks, func(a, b KernelTime) int { return cmp.Or(cmp.Compare(b.MS, a.MS), strings.Compare(a.Name, b.Name)) })
	return &Profile{Batch: b, Adapters: k, Context: ctx, Kernels: ks}, nil
}

// Loading is decode while adapters load: before each timed step an adapter the step does
// not use is freed and a new one's upload started, which the backend may overlap with the
// step (as the engine does: a request waits until its adapter has landed).
type Loading struct {
	Batch, Adapters, Context int
	Loads                    int     `json:"loads"`
	AdapterBytes             int64   `json:"adapter_bytes"`
	PrepareMS                float64 `json:"prepare_ms"`    // median host time putting a load in bf16 into page-locked memory
	UploadMS                 float64 `json:"upload_ms"`     // median transfer, host to device slot
	UploadMaxMS              float64 `json:"upload_max_ms"` // slowest transfer
	StepMS                   float64 `json:"step_ms"`       // median step while loading
	StepMaxMS                float64 `json:"step_max_ms"`
	QuietStepMS              float64 `json:"quiet_step_ms"` // median step of the same batch without loads
	// The same number of steps again, each started once its adapter is in page-locked
	// memory, so that only the transfer overlaps it: against StepMS and StepMaxMS, what the
	// host's part of a load costs the steps.
	StagedStepMS    float64 `json:"staged_step_ms"`
	StagedStepMaxMS float64 `json:"staged_step_max_ms"`
}

// Memory is the device memory in use at the run's largest configuration: the model, the
// adapter pool and the KV cache for the largest batch at the longest context.
type Memory struct {
	UsedBytes  int64 `json:"used_bytes"`
	TotalBytes int64 `json:"total_bytes"`
	KVTokens   int   `json:"kv_tokens"` // cache capacity in tokens
	Adapters   int   `json:"device_adapters"`
	// CoversTarget: the run held at least the memory configuration on the device,
	// targetAdapters adapter slots and KV for targetSeqs × targetTokens tokens. (Adapters
	// registered in the host tier take no device memory.)
	CoversTarget bool `json:"covers_target"`
}

// The memory configuration on the device.
const targetAdapters, targetSeqs, targetTokens = 64, 64, 1024

// loading measures Loading at batch b with k adapters and context ctx; quiet is the same
// batch's median step without loads. The spare pool slot (Config.MaxAdapters counts it) takes
// the uploads.
func (r *runner) loading(kv *gpukern.KVCache, b, k, ctx int, quiet float64) (*Loading, error) {
	up, ok := r.be.(Uploader)
	if !ok {
		return nil, nil
	}
	batch := r.decodeBatch(b, k, ctx)
	l := &Loading{Batch: b, Adapters: k, Context: ctx, Loads: r.cfg.Steps, AdapterBytes: r.adapterBytes(), QuietStepMS: quiet}
	steps, prepares, uploads, err := r.stepsWhileLoading(up, batch, kv, false)
	if err != nil {
		return nil, err
	}
	l.PrepareMS, l.UploadMS, l.UploadMaxMS = median(prepares), median(uploads), percentile(uploads, 1)
	l.StepMS, l.StepMaxMS = median(steps), percentile(steps, 1)
	if steps, _, _, err = r.stepsWhileLoading(up, batch, kv, true); err != nil {
		return nil, err
	}
	l.StagedStepMS, l.StagedStepMaxMS = median(steps), percentile(steps, 1)
	return l, nil
}

// stepsWhileLoading times Config.Steps steps of batch, each after a new adapter's upload is
// started (and, if staged, once its values are in page-locked memory), and returns their
// times and the uploads' (ms).
func (r *runner) stepsWhileLoading(up Uploader, batch *model.Batch, kv *gpukern.KVCache, staged bool) (steps, prepares, uploads []float64, err error) {
	var spare *model.Adapter
	defer func() {
		if spare != nil {
			r.m.FreeAdapter(spare)
		}
	}()
	for i := range r.cfg.Steps {
		if spare != nil {
			r.m.FreeAdapter(spare)
			spare = nil
		}
		a, err := r.m.LoadAdapter(fmt.Sprintf("loading-%d", i), r.host)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("engine bench: loading an adapter during decode: %w", err)
		}
		spare = a
		if staged {
			if err := up.WaitAdapterStaged(); err != nil {
				return nil, nil, nil, err
			}
		}
		var serr error
		d, err := r.timed(func() { serr = r.step(batch, kv) })
		if err = cmp.Or(serr, err); err != nil {
			return nil, nil, nil, fmt.Errorf("engine bench: decode while loading: %w", err)
		}
		p, u, err := up.LastAdapterUpload()
		if err != nil {
			return nil, nil, nil, err
		}
		steps = append(steps, ms(d))
		prepares, uploads = append(prepares, ms(p)), append(uploads, ms(u))
	}
	return steps, prepares, uploads, nil
}

// maxCopyBytes is the size of the copy that measures the card's bandwidth: a GPU copies
// a gigabyte at full speed, and a test's small model copies no more than its weights.
const maxCopyBytes = 1 << 30

// copyBandwidth measures the device's copy bandwidth into rep, if the backend can.
func (r *runner) copyBandwidth(rep *Report, progress func(string)) error {
	cm, ok := r.be.(CopyMeasurer)
	if !ok {
		return nil
	}
	n := min(r.weightBytes(), maxCopyBytes)
	progress(fmt.Sprintf("copy bandwidth: %.1f MB device to device", float64(n)/1e6))
	bw, err := cm.CopyBandwidth(n)
	if err != nil {
		return fmt.Errorf("engine bench: %w", err)
	}
	rep.CopyBandwidth, rep.CopyBytes = bw, n
	return nil
}

// memory reads the device's memory in use, if the backend reports it.
func (r *runner) memory(kv *gpukern.KVCache) *Memory {
	mi, ok := r.be.(MemInfoer)
	if !ok {
		return nil
	}
	free, total, err := mi.MemInfo()
	if err != nil {
		return nil
	}
	m := &Memory{UsedBytes: total - free, TotalBytes: total, KVTokens: kv.NumBlocks * kv.BlockSize, Adapters: len(r.adapters) + 1}
	m.CoversTarget = m.Adapters >= targetAdapters && m.KVTokens >= targetSeqs*targetTokens
	return m
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
