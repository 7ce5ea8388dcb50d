package host

// Graph policy.
const (
	MinGraphOps = 16  // flushes of fewer launches run as they are: capturing costs more
	MaxGraphs   = 512 // instantiated graphs kept; a decode step takes one per FlushOps launches, per batch-size bucket
	// maxSeen bounds the sequences remembered as seen once: prefills of every length are
	// seen once each, and a long-running server must not keep them all.
	maxSeen = 4096
)

// Decision is how a flush runs its launches.
type Decision int

const (
	Eager   Decision = iota // kernel by kernel
	Capture                 // captured into a new graph, which is then launched
	Replay                  // an instantiated graph of the same launches
)

// GraphStats counts how flushes ran.
type GraphStats struct {
	Eager    int // flushes launched kernel by kernel
	Captured int // flushes captured into a new graph
	Replayed int // flushes that reused a graph
	Failed   int // captures that failed (the work then ran eagerly)
	// FirstFailure is why the first capture failed.
	FirstFailure error
}

// Graphs decides, flush by flush, between eager launches and CUDA graphs, and keeps the
// instantiated graphs (of handle type E) by launch sequence. A sequence runs eagerly the first
// time it is seen and is captured the second: a one-off (a prefill of some length) is never
// worth capturing, a decode step of a batch size recurs every step.
type Graphs[E comparable] struct {
	Off   bool    // every flush eager
	Free  func(E) // destroys a graph; called once its launches are done
	Stats GraphStats

	seen  map[uint64]bool // sequences run once, eagerly
	execs map[uint64]*graph[E]
	tick  int
}

type graph[E comparable] struct {
	ops   []Op
	exec  E
	used  int  // tick of the last launch, for eviction
	unfit bool // capture failed: always run eagerly
}

// Decide says how to run ops, and for Replay which graph. The caller then runs them that way
// and, for Capture, reports the result with Captured or Failed.
func (c *Graphs[E]) Decide(ops []Op) (d Decision, key uint64, exec E) {
	if c.Off || len(ops) < MinGraphOps {
		c.Stats.Eager++
		return Eager, 0, exec
	}
	if c.seen == nil {
		c.seen, c.execs = map[uint64]bool{}, map[uint64]*graph[E]{}
	}
	key = Signature(ops)
	g := c.execs[key]
	switch {
	case g != nil && g.unfit:
		c.Stats.Eager++
		return Eager, key, exec
	case g != nil && sameOps(g.ops, ops):
		c.tick++
		g.used = c.tick
		c.Stats.Replayed++
		return Replay, key, g.exec
	case !c.seen[key]:
		if len(c.seen) >= maxSeen {
			clear(c.seen)
		}
		c.seen[key] = true
		c.Stats.Eager++
		return Eager, key, exec
	}
	return Capture, key, exec
}

// MustFree reports whether capturing for key first frees graphs (the one of the same hash, or
// the least recently used when full): the caller waits for launched graphs before MakeRoom.
func (c *Graphs[E]) MustFree(key uint64) bool {
	return c.execs[key] != nil || len(c.execs) >= MaxGraphs
}

// MakeRoom frees what MustFree announced.
func (c *Graphs[E]) MakeRoom(key uint64) {
	c.drop(key)
	if len(c.execs) < MaxGraphs {
		return
	}
	var oldest uint64
	best := -1
	for k, g := range c.execs {
		if best < 0 || g.used < best {
			oldest, best = k, g.used
		}
	}
	c.drop(oldest)
	clear(c.seen) // bounded: sequences seen once are forgotten with the graphs
}

func (c *Graphs[E]) drop(key uint64) {
	var zero E
	if g := c.execs[key]; g != nil && g.exec != zero {
		c.Free(g.exec)
	}
	delete(c.execs, key)
}

// Captured keeps the graph captured from ops.
func (c *Graphs[E]) Captured(key uint64, ops []Op, exec E) {
	c.tick++
	c.execs[key] = &graph[E]{ops: ops, exec: exec, used: c.tick}
	c.Stats.Captured++
}

// Failed marks ops as unfit for graphs: they run eagerly from now on.
func (c *Graphs[E]) Failed(key uint64, ops []Op, err error) {
	c.execs[key] = &graph[E]{ops: ops, unfit: true}
	c.Stats.Failed++
	c.Stats.Eager++
	if c.Stats.FirstFailure == nil {
		c.Stats.FirstFailure = err
	}
}

// Close frees every graph; launched ones must be done.
func (c *Graphs[E]) Close() {
	for k := range c.execs {
		c.drop(k)
	}
}

func sameOps(a, b []Op) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(&b[i]) {
			return false
		}
	}
	return true
}
