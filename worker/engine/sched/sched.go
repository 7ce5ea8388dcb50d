// Package sched plans each step of the worker's engine. It is a pure function of the state
// it is given: no goroutines, clocks or I/O, so every policy below is tested on data.
//
// Policy:
//   - Running sequences go first, oldest first: a decode takes one token, an unfinished prompt
//     its next chunk, within MaxBatchTokens.
//   - A running sequence whose chunk needs KV blocks that are not free preempts running
//     sequences from the newest backwards (itself last); they are recomputed later. A step that
//     preempted admits nothing.
//   - Waiting sequences are admitted in arrival order while the token budget, MaxRunning, KV
//     blocks and adapter slots allow. The oldest waiting sequence that cannot get its blocks
//     stops admission (first come, first served on memory: long prompts are not starved).
//   - An adapter used by a running sequence is pinned to its slot. Admitting a sequence whose
//     adapter is not resident takes a free slot or evicts the least recently used unpinned one.
//   - Fairness across adapters: when the oldest waiting sequence blocked only by slots exists,
//     one resident adapter is drained (the one with the fewest running sequences, then least
//     recently used): nothing new is admitted for it, so its sequences finish, its slot
//     unpins, and the blocked adapter loads. A hot adapter cannot keep a cold one out.
package sched

import (
	"cmp"
	"errors"
	"slices"
)

// Config bounds one step.
type Config struct {
	MaxBatchTokens int // tokens computed per step (prefill chunks plus one per decode). Default 512.
	MaxRunning     int // sequences admitted at once. Default 256.
	Slots          int // device adapter slots; the base model ("") needs none. Default 8.
	BlockSize      int // tokens per KV block. Required.
}

// Validate fills defaults for zero fields and checks the rest.
func (c *Config) Validate() error {
	if c.MaxBatchTokens == 0 {
		c.MaxBatchTokens = 512
	}
	if c.MaxRunning == 0 {
		c.MaxRunning = 256
	}
	if c.Slots == 0 {
		c.Slots = 8
	}
	if c.MaxBatchTokens < 0 || c.MaxRunning < 0 || c.Slots < 0 || c.BlockSize <= 0 {
		return errors.New("sched: limits must be positive (BlockSize is required)")
	}
	return nil
}

// Seq is one sequence as the scheduler sees it.
type Seq struct {
	ID       uint64
	Adapter  string // "" = base model
	Arrival  uint64 // smaller = earlier; a preempted sequence keeps its Arrival
	Len      int    // tokens the sequence has: prompt + generated
	Computed int    // tokens whose K/V are cached (0 while waiting)
	Blocks   int    // KV blocks held (0 while waiting)
}

// State is what the engine knows at the start of a step.
type State struct {
	Running    []Seq    // admitted sequences, any order
	Waiting    []Seq    // queued sequences in Arrival order
	Resident   []string // adapters in device slots, least recently used first
	FreeBlocks int      // free KV blocks
}

// Chunk is one sequence's work in a step: tokens [Computed, Computed+N).
type Chunk struct {
	ID uint64
	N  int
}

// Plan is what the engine does this step, in this order: release and requeue Preempt, drop
// Evict, upload Load, move Admit to running, compute Chunks.
type Plan struct {
	Preempt []uint64
	Evict   []string
	Load    []string
	Admit   []uint64
	Chunks  []Chunk

	// Scratch space reused across calls so that a steady state allocates nothing.
	order []byArrival
	gone  []bool
	res   []slot
}

// slot is a resident adapter during planning.
type slot struct {
	adapter string
	running int  // sequences using it after this plan
	evicted bool // dropped by this plan
}

// planner holds one call's working state.
type planner struct {
	cfg    *Config
	st     *State
	p      *Plan
	free   int // KV blocks
	budget int // tokens
	drain  string
}

// Schedule plans one step; see the package comment for the policy.
func Schedule(cfg *Config, st *State, plan *Plan) {
	plan.Preempt, plan.Evict, plan.Load = plan.Preempt[:0], plan.Evict[:0], plan.Load[:0]
	plan.Admit, plan.Chunks = plan.Admit[:0], plan.Chunks[:0]
	pl := planner{cfg: cfg, st: st, p: plan, free: st.FreeBlocks, budget: cfg.MaxBatchTokens}
	pl.runRunning()
	pl.loadSlots()
	if len(plan.Preempt) > 0 {
		return // memory is short: let the running sequences finish first
	}
	pl.chooseDrain()
	pl.admit()
}

// blocksFor is the number of new blocks a chunk of n tokens needs.
func (pl *planner) blocksFor(s *Seq, n int) int {
	bs := pl.cfg.BlockSize
	return max(0, (s.Computed+n+bs-1)/bs-s.Blocks)
}

// runRunning plans the running sequences, oldest first, preempting the newest when blocks
// run out.
func (pl *planner) runRunning() {
	p, run := pl.p, pl.st.Running
	p.sortRunning(run)
	if cap(p.gone) < len(run) {
		p.gone = make([]bool, len(run))
	}
	p.gone = p.gone[:len(run)]
	clear(p.gone)
	newest := len(p.order) - 1 // the next preemption victim, in p.order
	for k, o := range p.order {
		i := o.i
		if p.gone[i] {
			break // everything from here on was preempted
		}
		s := &run[i]
		n := min(s.Len-s.Computed, pl.budget)
		if n <= 0 {
			continue
		}
		need := pl.blocksFor(s, n)
		for need > pl.free && newest >= k {
			v := p.order[newest].i
			newest--
			p.gone[v] = true
			pl.free += run[v].Blocks
			p.Preempt = append(p.Preempt, run[v].ID)
		}
		if p.gone[i] {
			break
		}
		pl.free -= need
		pl.budget -= n
		p.Chunks = append(p.Chunks, Chunk{ID: s.ID, N: n})
	}
}

// byArrival is a running sequence's place in the planning order.
type byArrival struct {
	arrival uint64
	i       int // index in State.Running
}

// sortRunning fills p.order with the running sequences, oldest first, ties by index, so the
// plan does not depend on the order of State.Running.
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
	return a.i - b.i
}

// loadSlots records the resident adapters and how many surviving running sequences pin each.
func (pl *planner) loadSlots() {
	p := pl.p
	p.res = p.res[:0]
	for _, a := range pl.st.Resident {
		p.res = append(p.res, slot{adapter: a})
	}
	for i := range pl.st.Running {
		if s := &pl.st.Running[i]; !p.gone[i] && s.Adapter != "" {
			if j := pl.slotOf(s.Adapter); j >= 0 {
				p.res[j].running++
			}
		}
	}
}

func (pl *planner) slotOf(adapter string) int {
	for j := range pl.p.res {
		if r := &pl.p.res[j]; r.adapter == adapter && !r.evicted {
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
		if !r.evicted && r.running == 0 {
			return j
		}
	}
	return -1
}

// chooseDrain picks the adapter to drain when the oldest sequence that needs a slot cannot
// get one: all slots are full and pinned.
func (pl *planner) chooseDrain() {
	pl.drain = ""
	if pl.occupied() < pl.cfg.Slots || pl.lruUnpinned() >= 0 {
		return
	}
	for i := range pl.st.Waiting {
		if a := pl.st.Waiting[i].Adapter; a != "" && pl.slotOf(a) < 0 {
			best := -1
			for j, r := range pl.p.res {
				if best < 0 || r.running < pl.p.res[best].running {
					best = j
				}
			}
			if best >= 0 {
				pl.drain = pl.p.res[best].adapter
			}
			return
		}
	}
}

// admit moves waiting sequences to running in arrival order.
func (pl *planner) admit() {
	p := pl.p
	running := len(pl.st.Running)
	for i := range pl.st.Waiting {
		s := &pl.st.Waiting[i]
		if running >= pl.cfg.MaxRunning || pl.budget == 0 {
			return
		}
		if s.Adapter != "" && s.Adapter == pl.drain {
			continue
		}
		n := min(s.Len-s.Computed, pl.budget)
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
		p.Admit = append(p.Admit, s.ID)
		p.Chunks = append(p.Chunks, Chunk{ID: s.ID, N: n})
	}
}

// takeSlot makes adapter resident for one more sequence: already there, a free slot, or in
// place of the least recently used unpinned adapter.
func (pl *planner) takeSlot(adapter string) bool {
	if adapter == "" {
		return true
	}
	p := pl.p
	if j := pl.slotOf(adapter); j >= 0 {
		p.res[j].running++
		return true
	}
	if pl.occupied() >= pl.cfg.Slots {
		j := pl.lruUnpinned()
		if j < 0 {
			return false
		}
		p.res[j].evicted = true
		p.Evict = append(p.Evict, p.res[j].adapter)
	}
	p.res = append(p.res, slot{adapter: adapter, running: 1})
	p.Load = append(p.Load, adapter)
	return true
}
