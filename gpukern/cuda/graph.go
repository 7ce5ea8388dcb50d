//go:build cuda

package cuda

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"gorgonia.org/cu"
)

// Kernels are not launched when a gpukern call is made: they are recorded, with their
// metadata written to the page-locked arena, and run together when the host needs a result
// (Download, Sample, Sync) or memory changes hands (Upload, Free, adapter uploads). A flush
// copies the step's metadata in one transfer, then launches the recorded work. Work whose
// launch sequence was seen before — a decode step of the same batch-size bucket, with
// metadata at the same arena offsets — runs as one CUDA graph instead of hundreds of
// launches: inside a graph each kernel boundary costs about 1 µs on an H100.

// op is one recorded launch: a kernel, or (fn zero) a cuBLAS bf16 GEMM whose cells are out,
// x, w, m, n, k.
type op struct {
	fn          cu.Function
	name        string
	grid, block dims
	shared      int
	cells       []uint64
}

func (o *op) equal(p *op) bool {
	return o.fn == p.fn && o.grid == p.grid && o.block == p.block && o.shared == p.shared && slices.Equal(o.cells, p.cells)
}

// Graph policy.
const (
	minGraphOps = 16 // fewer launches than this run as they are: capturing costs more
	maxGraphs   = 64 // instantiated graphs kept; decode uses one per batch-size bucket
)

// GraphStats counts how recorded work ran, for benchmarks and logs.
type GraphStats struct {
	Eager    int // flushes launched kernel by kernel
	Captured int // flushes captured into a new graph
	Replayed int // flushes that reused a graph
	Failed   int // captures that failed (the work then ran eagerly)
	// FirstFailure is why the first capture failed.
	FirstFailure error
}

// graphCache maps a launch sequence's signature to its instantiated graph.
type graphCache struct {
	off   bool
	seen  map[uint64]bool // signatures run once, eagerly: the second sighting captures
	execs map[uint64]*graph
	stats GraphStats
	tick  int
}

type graph struct {
	ops   []op
	exec  uintptr
	used  int  // tick of the last launch, for eviction
	unfit bool // capture failed: always run eagerly
}

func newGraphCache(off bool) graphCache {
	return graphCache{off: off, seen: map[uint64]bool{}, execs: map[uint64]*graph{}}
}

func (c *graphCache) close() {
	for k, g := range c.execs {
		if g.exec != 0 {
			freeGraph(g.exec)
		}
		delete(c.execs, k)
	}
}

// signature hashes everything a graph fixes: the kernels, their shapes and argument values.
func signature(ops []op) uint64 {
	h := xxhash.New()
	var buf [8]byte
	word := func(v uint64) {
		binary.LittleEndian.PutUint64(buf[:], v)
		_, _ = h.Write(buf[:])
	}
	for i := range ops {
		o := &ops[i]
		word(uint64(*(*uintptr)(unsafe.Pointer(&o.fn)))) // cu.Function holds only its CUfunction
		for _, v := range []int{o.grid.x, o.grid.y, o.grid.z, o.block.x, o.block.y, o.block.z, o.shared, len(o.cells)} {
			word(uint64(v))
		}
		for _, v := range o.cells {
			word(v)
		}
	}
	return h.Sum64()
}

// record queues o for the next flush. Callers are inside b.do.
func (b *Backend) record(o op) {
	if b.err != nil {
		return // the step has failed already (its metadata may be missing); Sync reports it
	}
	b.ops = append(b.ops, o)
}

// flush copies the recorded work's metadata and launches the work: as a graph where its
// launch sequence has been seen before, else kernel by kernel. Callers are inside b.do.
func (b *Backend) flush() {
	ops := b.ops
	b.ops = nil
	if len(ops) == 0 {
		return
	}
	b.fail(b.meta.send())
	b.fail(b.pool.waitFor(b.slotsUsed))
	clear(b.slotsUsed)
	if b.err != nil {
		return
	}
	c := &b.graphs
	if b.prof != nil {
		b.issueTimed(ops)
		return
	}
	if c.off || len(ops) < minGraphOps {
		c.stats.Eager++
		b.issue(ops)
		return
	}
	key := signature(ops)
	g := c.execs[key]
	switch {
	case g != nil && g.unfit:
		c.stats.Eager++
		b.issue(ops)
	case g != nil && slices.EqualFunc(g.ops, ops, func(x, y op) bool { return x.equal(&y) }):
		c.tick++
		g.used = c.tick
		c.stats.Replayed++
		b.fail(launchGraph(g.exec, streamHandle(b.stream)))
	case !c.seen[key]:
		c.seen[key] = true
		c.stats.Eager++
		b.issue(ops)
	default:
		b.capture(key, ops)
	}
}

// capture records ops into a graph, launches it and keeps it for the next step of the same
// shape. A failed capture leaves the work to run eagerly, now and for this signature later.
func (b *Backend) capture(key uint64, ops []op) {
	c := &b.graphs
	if old := c.execs[key]; len(c.execs) >= maxGraphs || old != nil {
		// A graph is destroyed only once its launches are done.
		if err := b.stream.Synchronize(); err != nil {
			b.fail(fmt.Errorf("cuda: a kernel failed: %w", err))
			return
		}
		if old != nil && old.exec != 0 {
			freeGraph(old.exec) // a different launch sequence with the same hash
		}
		delete(c.execs, key)
		if len(c.execs) >= maxGraphs {
			c.evict()
		}
	}
	stream := streamHandle(b.stream)
	g := &graph{ops: ops}
	c.execs[key] = g
	if err := beginCapture(stream); err != nil {
		c.captureFailed(g, err)
		b.issue(ops)
		return
	}
	b.issue(ops)
	exec, err := endCapture(stream)
	if err != nil || b.err != nil {
		c.captureFailed(g, cmp.Or(err, b.err))
		b.err = nil // the failure was in capturing, not in the work: run it again, eagerly
		b.issue(ops)
		return
	}
	g.exec = exec
	c.tick++
	g.used = c.tick
	c.stats.Captured++
	b.fail(launchGraph(exec, stream))
}

func (c *graphCache) captureFailed(g *graph, err error) {
	g.unfit = true
	c.stats.Failed++
	c.stats.Eager++
	if c.stats.FirstFailure == nil {
		c.stats.FirstFailure = err
	}
}

// evict drops the least recently launched graph.
func (c *graphCache) evict() {
	var oldest uint64
	best := -1
	for k, g := range c.execs {
		if best < 0 || g.used < best {
			oldest, best = k, g.used
		}
	}
	if g := c.execs[oldest]; g != nil && g.exec != 0 {
		freeGraph(g.exec)
	}
	delete(c.execs, oldest)
	clear(c.seen) // bounded: signatures seen once are forgotten with the graphs
}

// issue launches ops on the stream (which may be capturing).
func (b *Backend) issue(ops []op) {
	for i := range ops {
		if b.err != nil {
			return
		}
		o := &ops[i]
		if o.fn == (cu.Function{}) {
			c := o.cells
			if err := b.blas.MatMulBF16(uintptr(c[0]), uintptr(c[1]), uintptr(c[2]), int(c[3]), int(c[4]), int(c[5]), false); err != nil {
				b.fail(fmt.Errorf("cuda: GEMM %dx%dx%d: %w", c[3], c[4], c[5], err))
			}
			continue
		}
		a := args{cells: o.cells}
		err := o.fn.Launch(o.grid.x, o.grid.y, o.grid.z, o.block.x, o.block.y, o.block.z, o.shared, b.stream, a.pointers())
		if err != nil {
			b.fail(fmt.Errorf("cuda: launching %s: %w", o.name, err))
		}
	}
}

// GraphStats reports how recorded work has run since the backend started.
func (b *Backend) GraphStats() GraphStats { return b.graphs.stats }

// SetGraphs turns CUDA graphs on or off (benchmarks compare the two).
func (b *Backend) SetGraphs(on bool) {
	b.do(func() { b.flush() })
	b.graphs.off = !on
}
