// Package sched plans each step of the worker's engine. It is a pure function of the state
// it is given: no goroutines, clocks or I/O, so every policy below is tested on data. The
// engine calls Schedule once per step and applies the Plan in its field order.
//
// Policy:
//   - Continuous batching at the level of iterations. Running sequences go first, oldest
//     Arrival first: each gets min(pending tokens, budget left) — a decode one token, an
//     unfinished prompt its next chunk. MaxBatchTokens bounds the tokens of a step.
//   - Preemption by recompute. A running sequence whose chunk needs more KV blocks than are
//     free preempts running sequences from the newest Arrival backwards, itself last; they
//     release their blocks and start again from the queue. Sequences are planned oldest first,
//     so a victim is never one that already has a chunk. A step that preempted admits nothing.
//   - Admission. Waiting sequences are admitted in Arrival order while the budget,
//     MaxRunning, KV blocks and adapter slots allow; the first chunk is min(Len, budget left).
//     The oldest waiting sequence that cannot get its blocks stops admission (first come,
//     first served on memory: long prompts are not starved by short ones).
//   - Adapter slots. An adapter used by a running sequence is pinned to its slot. Admitting a
//     sequence whose adapter is not resident takes a free slot or evicts the least recently
//     used unpinned adapter. At most Slots adapters are resident after a plan.
//   - No starvation of rare adapters: when the oldest waiting sequence that needs a slot finds
//     every slot pinned, one resident adapter is drained — the one with the fewest running
//     sequences, ties to the least recently used. Nothing new is admitted for it, so its
//     sequences finish, its slot unpins and the waiting adapter loads. Other adapters keep
//     being admitted. The choice is recomputed each step from the state alone.
//   - Prefetch. The adapters of sequences still waiting after admission are loaded into free
//     slots, oldest first, never evicting, so that their uploads overlap the wait.
//   - Uploads in flight. An adapter whose upload has not finished (State.Loading) holds its
//     slot and is never evicted, and nothing is admitted for it until it has landed; the
//     sequences waiting for it keep their place while others are admitted and run. A backend
//     that uploads synchronously never reports one.
//
// Progress: while any sequence is running or waiting, and every sequence's Len fits in the
// whole cache (free blocks plus the blocks of running sequences), each plan has a chunk,
// unless every waiting sequence waits for an upload in flight and none is running.
package sched

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// ErrConfig reports a Config that Validate rejects.
var ErrConfig = errors.New("sched: invalid config")

// Config bounds one step.
type Config struct {
	MaxBatchTokens int // tokens computed per step (prefill chunks plus one per decode). Default 512.
	MaxRunning     int // sequences admitted (holding KV blocks) at once. Default 256.
	Slots          int // device adapter slots; the base model ("") needs none. Default 8.
	BlockSize      int // tokens per KV block. Required.
}

// Validate fills defaults for zero fields and rejects negative ones and a missing BlockSize.
func (c *Config) Validate() error {
	c.fillDefaults()
	return c.check()
}

func (c *Config) fillDefaults() {
	if c.MaxBatchTokens == 0 {
		c.MaxBatchTokens = 512
	}
	if c.MaxRunning == 0 {
		c.MaxRunning = 256
	}
	if c.Slots == 0 {
		c.Slots = 8
	}
}

func (c *Config) check() error {
	switch {
	case c.BlockSize <= 0:
		return fmt.Errorf("%w: BlockSize %d must be positive", ErrConfig, c.BlockSize)
	case c.MaxBatchTokens < 0, c.MaxRunning < 0, c.Slots < 0:
		return fmt.Errorf("%w: negative limit (MaxBatchTokens %d, MaxRunning %d, Slots %d)",
			ErrConfig, c.MaxBatchTokens, c.MaxRunning, c.Slots)
	}
	return nil
}

// Seq is one sequence as the scheduler sees it.
type Seq struct {
	ID       uint64
	Adapter  string // "" = base model
	Arrival  uint64 // smaller = arrived earlier; a preempted sequence keeps its Arrival
	Len      int    // tokens the sequence has now: prompt + generated
	Computed int    // tokens whose K/V are cached (0 while waiting)
	Blocks   int    // KV blocks held (0 while waiting)
}

// State is what the engine knows at the start of a step.
type State struct {
	Running    []Seq    // admitted sequences, any order
	Waiting    []Seq    // queued sequences in Arrival order (the engine keeps it sorted)
	Resident   []string // adapters in device slots, least recently used first
	Loading    []string // resident adapters whose upload has not finished
	FreeBlocks int      // free KV blocks
}

// Chunk is one sequence's work in a step.
type Chunk struct {
	ID uint64
	N  int // compute tokens [Computed, Computed+N) of the sequence
}

// Plan is what the engine does this step, in this order.
type Plan struct {
	Preempt []uint64 // running sequences to release and requeue (recomputed later)
	Evict   []string // resident adapters to drop; no sequence that runs after the plan uses one
	Load    []string // adapters to upload into slots (after Evict)
	Admit   []uint64 // waiting sequences that start running this step, in Arrival order
	Chunks  []Chunk  // this step's work

	// Scratch space reused across calls so that a steady state allocates nothing.
	order []byArrival
	gone  []bool // by index in State.Running: preempted by this plan
	res   []slot
}

// byArrival is a running sequence's place in the planning order.
type byArrival struct {
	arrival uint64
	i       int // index in State.Running
}

// slot is a resident adapter during planning.
type slot struct {
	adapter string
	running int  // sequences using it after this plan
	evicted bool // dropped by this plan
	loading bool // upload in flight: pinned, admits nothing
}

// planner holds one call's working state.
type planner struct {
	cfg    Config
	st     *State
	p      *Plan
	free   int    // KV blocks
	budget int    // tokens
	drain  string // adapter that admits nothing this step; "" for none
}

// Schedule fills plan for one step (see the package comment), resetting and reusing its
// slices. A cfg that Validate would reject yields an empty plan; zero fields take their
// defaults without changing cfg.
func Schedule(cfg *Config, st *State, plan *Plan) {
	plan.Preempt, plan.Evict, plan.Load = plan.Preempt[:0], plan.Evict[:0], plan.Load[:0]
	plan.Admit, plan.Chunks = plan.Admit[:0], plan.Chunks[:0]
	c := *cfg
	c.fillDefaults()
	if c.check() != nil {
		return
	}
	pl := planner{cfg: c, st: st, p: plan, free: st.FreeBlocks, budget: c.MaxBatchTokens}
	pl.runRunning()
	pl.countPins()
	if len(plan.Preempt) > 0 {
		return // memory is short: let the running sequences finish first
	}
	pl.chooseDrain()
	pl.admit()
	pl.prefetch()
}

// blocksFor is the number of new blocks a chunk of n tokens needs.
func (pl *planner) blocksFor(s *Seq, n int) int {
	bs := pl.cfg.BlockSize
	return max(0, (s.Computed+n+bs-1)/bs-s.Blocks)
}

// runRunning plans the running sequences, oldest first, preempting from the newest backwards
// when blocks run out.
func (pl *planner) runRunning() {
	p, run := pl.p, pl.st.Running
	p.sortRunning(run)
	p.gone = slices.Grow(p.gone[:0], len(run))[:len(run)]
	clear(p.gone)
	newest := len(p.order) - 1 // the next victim, in p.order; those after it are preempted
	for k := 0; k <= newest; k++ {
		s := &run[p.order[k].i]
		n := min(s.Len-s.Computed, pl.budget)
		if n <= 0 {
			continue
		}
		need := pl.blocksFor(s, n)
		for need > pl.free && newest >= k {
			pl.preempt(p.order[newest].i)
			newest--
		}
		if newest < k {
			return // it preempted itself, after every newer sequence
		}
		pl.free -= need
		pl.budget -= n
		p.Chunks = append(p.Chunks, Chunk{ID: s.ID, N: n})
	}
}

func (pl *planner) preempt(i int) {
	s := &pl.st.Running[i]
	pl.p.gone[i] = true
	pl.free += s.Blocks
	pl.p.Preempt = append(pl.p.Preempt, s.ID)
}

// sortRunning fills p.order with the running sequences, oldest first, ties by index, so the
// plan does not depend on the order of State.Running. The engine keeps them in order, so the
// check usually saves the sort.
func (p *Plan) sortRunning(run []Seq) {
	p.order = p.order[:0]
	for i := range run {
		p.order = append(p.order, byArrival{run[i].Arrival, i})
	}
	if !slices.IsSortedFunc(p.order, cmpArrival) {
		slices.SortFunc(p.order, cmpArrival)
	}
}

func cmpArrival(a, b byArrival) int {
	if a.arrival != b.arrival {
		return cmp.Compare(a.arrival, b.arrival)
	}
	return cmp.Compare(a.i, b.i)
}

// countPins records the resident adapters and how many surviving running sequences pin each.
func (pl *planner) countPins() {
	p := pl.p
	p.res = p.res[:0]
	for _, a := range pl.st.Resident {
		p.res = append(p.res, slot{adapter: a, loading: slices.Contains(pl.st.Loading, a)})
	}
	for i := range pl.st.Running {
		if s := &pl.st.Running[i]; !p.gone[i] && s.Adapter != "" {
			if j := pl.slotOf(s.Adapter, false); j >= 0 {
				p.res[j].running++
			}
		}
	}
}

// slotOf finds adapter among the resident (evicted false) or the evicted slots, or -1.
func (pl *planner) slotOf(adapter string, evicted bool) int {
	for j := range pl.p.res {
		if r := &pl.p.res[j]; r.evicted == evicted && r.adapter == adapter {
			return j
		}
	}
	return -1
}

func (pl *planner) occupied() int {
	n := 0
	for _, r := range pl.p.res {
		if !r.evicted {
			n++
		}
	}
	return n
}

// lruUnpinned is the least recently used resident adapter no sequence uses, or -1.
func (pl *planner) lruUnpinned() int {
	for j, r := range pl.p.res {
		if !r.evicted && r.running == 0 && !r.loading {
			return j
		}
	}
	return -1
}

// chooseDrain picks the adapter to drain when the oldest waiting sequence that needs a slot
// cannot get one: every slot is full and pinned.
func (pl *planner) chooseDrain() {
	pl.drain = ""
	if pl.occupied() < pl.cfg.Slots || pl.lruUnpinned() >= 0 {
		return
	}
	i := slices.IndexFunc(pl.st.Waiting, func(s Seq) bool {
		return s.Adapter != "" && pl.slotOf(s.Adapter, false) < 0
	})
	if i < 0 {
		return
	}
	best := -1
	for j, r := range pl.p.res {
		if r.loading {
			continue // about to be used: the sequences waiting for it come first
		}
		if best < 0 || r.running < pl.p.res[best].running { // ties: the least recently used
			best = j
		}
	}
	if best >= 0 {
		pl.drain = pl.p.res[best].adapter
	}
}

// admit moves waiting sequences to running in Arrival order.
func (pl *planner) admit() {
	running := len(pl.st.Running)
	for i := range pl.st.Waiting {
		s := &pl.st.Waiting[i]
		if running >= pl.cfg.MaxRunning || pl.budget == 0 {
			return
		}
		n := min(s.Len-s.Computed, pl.budget)
		if n <= 0 || (s.Adapter != "" && (s.Adapter == pl.drain || pl.loading(s.Adapter))) {
			continue
		}
		need := pl.blocksFor(s, n)
		if need > pl.free {
			return // first come, first served on memory
		}
		if !pl.takeSlot(s.Adapter) {
			continue // every slot is pinned; chooseDrain frees one over the next steps
		}
		pl.free -= need
		pl.budget -= n
		running++
		pl.p.Admit = append(pl.p.Admit, s.ID)
		pl.p.Chunks = append(pl.p.Chunks, Chunk{ID: s.ID, N: n})
	}
}

// loading reports whether adapter is resident with its upload in flight.
func (pl *planner) loading(adapter string) bool {
	j := pl.slotOf(adapter, false)
	return j >= 0 && pl.p.res[j].loading
}

// prefetch loads the adapters of the sequences still waiting into free slots, oldest first,
// never evicting: their uploads then run while they wait, not after they are admitted.
func (pl *planner) prefetch() {
	for i := range pl.st.Waiting {
		a := pl.st.Waiting[i].Adapter
		if pl.occupied() >= pl.cfg.Slots {
			return
		}
		if a == "" || pl.slotOf(a, false) >= 0 || pl.slotOf(a, true) >= 0 {
			continue // the base model, resident, or evicted by this plan for another
		}
		pl.p.res = append(pl.p.res, slot{adapter: a})
		pl.p.Load = append(pl.p.Load, a)
	}
}

// takeSlot makes adapter resident for one more sequence: already there, a free slot, or in
// place of the least recently used unpinned adapter.
func (pl *planner) takeSlot(adapter string) bool {
	if adapter == "" {
		return true
	}
	p := pl.p
	if j := pl.slotOf(adapter, false); j >= 0 {
		p.res[j].running++
		return true
	}
	if !pl.freeSlot() {
		return false
	}
	if j := pl.slotOf(adapter, true); j >= 0 {
		// Evicted earlier in this plan for another adapter: keep it instead of reloading it.
		p.res[j].evicted, p.res[j].running = false, 1
		p.Evict = slices.DeleteFunc(p.Evict, func(a string) bool { return a == adapter })
		return true
	}
	p.res = append(p.res, slot{adapter: adapter, running: 1})
	p.Load = append(p.Load, adapter)
	return true
}

// freeSlot makes room for one more resident adapter, evicting the least recently used
// unpinned one if every slot is taken.
func (pl *planner) freeSlot() bool {
	if pl.occupied() < pl.cfg.Slots {
		return true
	}
	j := pl.lruUnpinned()
	if j < 0 {
		return false
	}
	pl.p.res[j].evicted = true
	pl.p.Evict = append(pl.p.Evict, pl.p.res[j].adapter)
	return true
}
