//go:build cuda

package cuda

import (
	"cmp"
	"fmt"

	"github.com/lorafleet/lorafleet/gpukern/cuda/drv"

	"github.com/lorafleet/lorafleet/gpukern/cuda/host"
)

// Kernels are not launched when a gpukern call is made: they are recorded, with their
// metadata written to the page-locked arena, and run together when the host needs a result
// (Download, Sample, Sync), when memory changes hands (Upload, Free, adapter uploads), or once
// Config.FlushOps of them are recorded (host.FirstFlushOps for a step's first), so that the
// GPU starts on a step's first layer while the host records the rest. A flush copies the
// metadata put since the last one in one transfer, beside the work launched before it
// (sendMeta), then launches the recorded work. Work whose launch sequence was seen before (a
// part of a decode step of the same batch-size bucket, with metadata at the same arena
// offsets) runs as one CUDA graph instead of dozens of launches (host.Graphs decides): inside
// a graph each kernel boundary costs about 1 µs on an H100.

// record queues a launch for the next flush. Callers are inside b.do.
func (b *Backend) record(o host.Op) {
	if b.err != nil {
		return // the step has failed already (its metadata may be missing); Sync reports it
	}
	if g := o.Grid; o.Fn != 0 && (g.X <= 0 || g.Y <= 0 || g.Z <= 0) {
		return // nothing to do: an empty batch or no rows of this kind
	}
	if !o.Side {
		b.copy16 = bf16Copy{} // o may write the activation or gemmIn
	}
	b.ops = append(b.ops, o)
	every := b.cfg.FlushOps
	if !b.launched {
		every = min(every, host.FirstFlushOps)
	}
	if every > 0 && host.FlushPoint(b.ops, every) {
		b.flush()
	}
}

// flush copies the recorded work's metadata and launches the work: as a graph where its
// launch sequence has been seen before, else kernel by kernel. Callers are inside b.do.
func (b *Backend) flush() {
	ops := b.ops
	b.ops = nil
	if len(ops) == 0 {
		return
	}
	b.launched = true
	b.fail(b.sendMeta())
	for s, used := range b.slotsUsed {
		if used {
			b.fail(b.pool.waitFor(s))
		}
	}
	clear(b.slotsUsed)
	if b.err != nil {
		return
	}
	if b.prof != nil {
		b.issueTimed(ops)
		return
	}
	switch d, key, exec := b.graphs.Decide(ops); d {
	case host.Eager:
		b.issue(ops)
		b.ops = ops[:0] // launched: the next step records into the same array
	case host.Replay:
		b.fail(drv.LaunchGraph(exec, drv.StreamHandle(b.stream)))
		b.ops = ops[:0]
	case host.Capture:
		b.capture(key, ops) // the graph keeps ops
	}
}

// capture records ops into a graph, launches it and keeps it for the next step of the same
// shape. A failed capture leaves the work to run eagerly, now and for this sequence later.
func (b *Backend) capture(key uint64, ops []host.Op) {
	c := &b.graphs
	if c.MustFree(key) {
		// A graph is destroyed only once its launches are done.
		if err := b.stream.Synchronize(); err != nil {
			b.fail(fmt.Errorf("cuda: a kernel failed: %w", err))
			return
		}
		c.MakeRoom(key)
	}
	stream := drv.StreamHandle(b.stream)
	if err := drv.BeginCapture(stream); err != nil {
		c.Failed(key, ops, err)
		b.issue(ops)
		return
	}
	b.issue(ops)
	exec, err := drv.EndCapture(stream)
	if err != nil || b.err != nil {
		c.Failed(key, ops, cmp.Or(err, b.err))
		b.err = nil // the failure was in capturing, not in the work: run it again, eagerly
		b.issue(ops)
		return
	}
	c.Captured(key, ops, exec)
	b.fail(drv.LaunchGraph(exec, stream))
}

// issue launches ops on the main stream (which may be capturing) and, for side launches, the
// side stream, forked from and joined back to the main one as host.Schedule says.
func (b *Backend) issue(ops []host.Op) {
	for _, s := range host.Schedule(ops) {
		if b.err != nil {
			return
		}
		switch {
		case s.Fork:
			b.fail(b.forked.Record(b.stream))
			b.fail(b.side.Wait(b.forked, 0))
		case s.Join:
			b.fail(b.joined.Record(b.side))
			b.fail(b.stream.Wait(b.joined, 0))
		default:
			b.launchOp(&ops[s.Op], s.Early && b.early)
		}
	}
}

// launchOp launches o, early (host.Step) if early and the driver takes it: a driver that
// refuses turns early launches off.
func (b *Backend) launchOp(o *host.Op, early bool) {
	if o.Fn == 0 {
		if err := b.runGEMM(o.Cells); err != nil {
			b.fail(fmt.Errorf("cuda: GEMM %dx%dx%d: %w", o.Cells[3], o.Cells[4], o.Cells[5], err))
		}
		return
	}
	stream := b.stream
	if o.Side {
		stream = b.side
	}
	a := args{cells: o.Cells}
	fn, g, bl := drv.FuncOf(o.Fn), o.Grid, o.Block
	if early {
		if drv.LaunchEarly(fn, g.X, g.Y, g.Z, bl.X, bl.Y, bl.Z, o.Shared, stream, a.pointers()) == nil {
			return
		}
		b.early, b.earlyOK = false, false // for good; a graph being captured may now fail: it then runs eagerly (capture)
	}
	if err := fn.Launch(g.X, g.Y, g.Z, bl.X, bl.Y, bl.Z, o.Shared, stream, a.pointers()); err != nil {
		b.fail(fmt.Errorf("cuda: launching %s: %w", o.Name, err))
	}
}

// GraphStats reports how recorded work has run since the backend started.
func (b *Backend) GraphStats() host.GraphStats { return b.graphs.Stats }

// SetFlushOps sets how many recorded launches are launched before a step ends
// (Config.FlushOps; n ≤ 0: none, a step's work is launched once it is all recorded) and
// returns the previous setting. Benchmarks compare the two.
func (b *Backend) SetFlushOps(n int) int {
	b.do(b.flush)
	prev := b.cfg.FlushOps
	b.cfg.FlushOps = n
	return prev
}

// SetEarlyLaunch lets kernels start before the one before them ends (on, the default where the
// GPU and driver allow it; Config.NoEarlyLaunch) or not (benchmarks compare the two). Graphs
// hold how their kernels were launched, so they are freed and captured again.
func (b *Backend) SetEarlyLaunch(on bool) {
	b.do(func() {
		if b.drain(); b.err != nil {
			return
		}
		b.graphs.Close()
		b.early = on && b.earlyOK && !b.cfg.NoEarlyLaunch
	})
}

// SetGraphs turns CUDA graphs on or off (benchmarks compare the two).
func (b *Backend) SetGraphs(on bool) {
	b.do(b.flush)
	b.graphs.Off = !on
}

// SetLoRASideStream puts the LoRA kernels on the side stream, beside the base GEMM of the
// same input (the default), or on the compute stream after it (benchmarks compare the two).
func (b *Backend) SetLoRASideStream(on bool) {
	b.do(b.flush)
	b.loraMain = !on
}

// SetLoRASidePriority makes the side stream again, at the greatest priority (the default) or
// at the main stream's (benchmarks compare the two). Graphs hold the priority their kernels
// were captured with, so they are freed and captured again.
func (b *Backend) SetLoRASidePriority(prioritized bool) {
	b.do(func() {
		if b.drain(); b.err != nil {
			return
		}
		b.graphs.Close()
		if err := b.side.Destroy(); err != nil {
			b.fail(fmt.Errorf("cuda: side stream: %w", err))
			return
		}
		b.fail(b.makeSide(prioritized))
	})
}
