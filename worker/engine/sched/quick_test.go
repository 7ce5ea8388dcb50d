package sched

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// Random states the engine could be in keep every promise of a plan.
func TestRandomStatesKeepInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	preempted, admitted, evicted, waited := 0, 0, 0, 0
	for range 20000 {
		cfg, st := randomState(r)
		if err := checkState(&cfg, &st); err != nil {
			t.Fatalf("the generator made a bad state: %v\n%+v", err, st)
		}
		var p Plan
		Schedule(&cfg, &st, &p)
		checkPlan(t, &cfg, &st, &p)
		preempted += min(len(p.Preempt), 1)
		admitted += min(len(p.Admit), 1)
		evicted += min(len(p.Evict), 1)
		if slices.ContainsFunc(st.Waiting, func(q Seq) bool { return slices.Contains(st.Loading, q.Adapter) }) {
			waited++
		}
	}
	// The generator must reach the interesting paths, or the checks above prove little.
	if preempted < 100 || admitted < 100 || evicted < 100 || waited < 100 {
		t.Errorf("plans with preemption %d, admission %d, eviction %d, waiting on an upload %d: the generator misses a path",
			preempted, admitted, evicted, waited)
	}
}

// Inputs the engine never produces (negative counts, Computed past Len, unknown adapters)
// must not make Schedule panic or plan empty or negative chunks.
func TestHostileStatesDoNotPanic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	num := func() int { return r.IntN(41) - 20 }
	for range 5000 {
		cfg := Config{MaxBatchTokens: num(), MaxRunning: num(), Slots: num(), BlockSize: num()}
		st := State{FreeBlocks: num(), Resident: []string{"a", "", "a", "b"}[:r.IntN(5)], Loading: []string{"b", "y", "a"}[:r.IntN(4)]}
		for i := range r.IntN(6) {
			st.Running = append(st.Running, Seq{ID: uint64(i), Adapter: []string{"", "a", "z"}[r.IntN(3)],
				Arrival: uint64(r.IntN(4)), Len: num(), Computed: num(), Blocks: num()})
		}
		for i := range r.IntN(6) {
			st.Waiting = append(st.Waiting, Seq{ID: uint64(10 + i), Adapter: []string{"", "b", "y"}[r.IntN(3)],
				Arrival: uint64(r.IntN(4)), Len: num(), Computed: num(), Blocks: num()})
		}
		var p Plan
		Schedule(&cfg, &st, &p)
		for _, c := range p.Chunks {
			if c.N <= 0 {
				t.Fatalf("chunk %+v for %+v %+v", c, cfg, st)
			}
		}
	}
}

// randomState builds a state the engine could be in: running adapters are resident, blocks
// cover exactly what is computed, every sequence fits in the whole cache. Small limits make
// preemption, slot pressure and draining common.
func randomState(r *rand.Rand) (Config, State) {
	cfg := Config{MaxBatchTokens: 1 + r.IntN(64), MaxRunning: 1 + r.IntN(16), Slots: 1 + r.IntN(4), BlockSize: 1 + r.IntN(8)}
	pool := []string{"a", "b", "c", "d", "e", "f"}
	r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	st := State{Resident: pool[:r.IntN(cfg.Slots+1)], FreeBlocks: r.IntN(30)}
	arrivals := r.Perm(40) // unique, so that "newest" is unambiguous
	for i := range r.IntN(cfg.MaxRunning + 1) {
		st.Running = append(st.Running, randomRunning(r, &cfg, st.Resident, uint64(i+1), uint64(arrivals[i])))
	}
	for i := range r.IntN(12) {
		a := ""
		if r.IntN(4) > 0 {
			a = pool[r.IntN(len(pool))]
		}
		st.Waiting = append(st.Waiting, Seq{ID: uint64(100 + i), Adapter: a, Arrival: uint64(arrivals[20+i]), Len: 1 + r.IntN(50)})
	}
	slices.SortFunc(st.Waiting, func(x, y Seq) int { return cmp.Compare(x.Arrival, y.Arrival) })
	for _, a := range st.Resident { // uploads in flight: no running sequence uses them yet
		if r.IntN(3) == 0 && !slices.ContainsFunc(st.Running, func(q Seq) bool { return q.Adapter == a }) {
			st.Loading = append(st.Loading, a)
		}
	}
	dropUnfit(&cfg, &st)
	return cfg, st
}

func randomRunning(r *rand.Rand, cfg *Config, resident []string, id, arrival uint64) Seq {
	ln := 1 + r.IntN(50)
	comp := ln - 1 // decoding
	if r.IntN(3) == 0 {
		comp = r.IntN(ln) // prefilling
	}
	a := ""
	if len(resident) > 0 && r.IntN(4) > 0 {
		a = resident[r.IntN(len(resident))]
	}
	return Seq{ID: id, Adapter: a, Arrival: arrival, Len: ln, Computed: comp, Blocks: ceilDiv(comp, cfg.BlockSize)}
}

// dropUnfit removes the sequences whose Len does not fit in the whole cache (the engine
// refuses them); a removed running sequence's blocks become free.
func dropUnfit(cfg *Config, st *State) {
	total := totalBlocks(st)
	fits := func(q Seq) bool { return ceilDiv(q.Len, cfg.BlockSize) <= total }
	st.Running = slices.DeleteFunc(st.Running, func(q Seq) bool {
		if fits(q) {
			return false
		}
		st.FreeBlocks += q.Blocks
		return true
	})
	st.Waiting = slices.DeleteFunc(st.Waiting, func(q Seq) bool { return !fits(q) })
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func totalBlocks(st *State) int {
	n := st.FreeBlocks
	for _, q := range st.Running {
		n += q.Blocks
	}
	return n
}

// checkState reports what makes st a state the engine does not produce.
func checkState(cfg *Config, st *State) error {
	var errs []error
	ids := map[uint64]bool{}
	for _, q := range slices.Concat(st.Running, st.Waiting) {
		if ids[q.ID] {
			errs = append(errs, fmt.Errorf("id %d twice", q.ID))
		}
		ids[q.ID] = true
	}
	for _, q := range st.Running {
		if q.Computed < 0 || q.Computed > q.Len || q.Blocks != ceilDiv(q.Computed, cfg.BlockSize) {
			errs = append(errs, fmt.Errorf("running %+v: Computed or Blocks do not match", q))
		}
		if q.Adapter != "" && (!slices.Contains(st.Resident, q.Adapter) || slices.Contains(st.Loading, q.Adapter)) {
			errs = append(errs, fmt.Errorf("running %d uses %q, which is not resident or still loading", q.ID, q.Adapter))
		}
	}
	for _, a := range st.Loading {
		if !slices.Contains(st.Resident, a) {
			errs = append(errs, fmt.Errorf("loading %q is not resident", a))
		}
	}
	for i, q := range st.Waiting {
		if q.Len < 1 || q.Computed != 0 || q.Blocks != 0 || (i > 0 && st.Waiting[i-1].Arrival > q.Arrival) {
			errs = append(errs, fmt.Errorf("waiting %+v: empty, holds KV, or out of Arrival order", q))
		}
	}
	if st.FreeBlocks < 0 || len(st.Resident) > cfg.Slots || slices.Contains(st.Resident, "") ||
		len(slices.Compact(slices.Sorted(slices.Values(st.Resident)))) != len(st.Resident) {
		errs = append(errs, fmt.Errorf("free %d, resident %q (slots %d)", st.FreeBlocks, st.Resident, cfg.Slots))
	}
	return errors.Join(errs...)
}

// checkPlan verifies everything a plan promises the engine, for a state checkState accepts.
func checkPlan(t *testing.T, cfg *Config, st *State, p *Plan) {
	t.Helper()
	err := errors.Join(checkPreempt(st, p), checkAdmit(cfg, st, p), checkSlots(cfg, st, p),
		checkChunks(cfg, st, p), checkRunningOrder(cfg, st, p), checkProgress(cfg, st, p))
	if err != nil {
		t.Fatalf("%v\nconfig %+v\nstate %+v\nplan %+v", err, *cfg, *st, *p)
	}
}

// survivors are the running sequences the plan does not preempt, oldest first.
func survivors(st *State, p *Plan) []Seq {
	s := slices.DeleteFunc(slices.Clone(st.Running), func(q Seq) bool { return slices.Contains(p.Preempt, q.ID) })
	slices.SortStableFunc(s, func(x, y Seq) int { return cmp.Compare(x.Arrival, y.Arrival) })
	return s
}

func admitted(st *State, p *Plan) []Seq {
	var s []Seq
	for _, q := range st.Waiting {
		if slices.Contains(p.Admit, q.ID) {
			s = append(s, q)
		}
	}
	return s
}

// checkPreempt: victims are running, distinct, newer than every survivor, and a step that
// preempts admits nothing.
func checkPreempt(st *State, p *Plan) error {
	surv := survivors(st, p)
	for i, id := range p.Preempt {
		j := slices.IndexFunc(st.Running, func(q Seq) bool { return q.ID == id })
		if j < 0 || slices.Contains(p.Preempt[:i], id) {
			return fmt.Errorf("preempted %d is not running, or preempted twice", id)
		}
		if len(surv) > 0 && st.Running[j].Arrival < surv[len(surv)-1].Arrival {
			return fmt.Errorf("preempted %d while the newer %d runs on", id, surv[len(surv)-1].ID)
		}
	}
	if len(p.Preempt) > 0 && len(p.Admit) > 0 {
		return errors.New("admitted in a step that preempted")
	}
	return nil
}

// checkAdmit: admissions are waiting sequences in Arrival order, within MaxRunning, and a
// sequence passed over is not followed by an admission it would have come before: one of
// the same adapter, or any at all if it needs no slot (first come, first served).
func checkAdmit(cfg *Config, st *State, p *Plan) error {
	adm := admitted(st, p)
	if len(adm) != len(p.Admit) || !slices.Equal(ids(adm), p.Admit) {
		return fmt.Errorf("admitted %v: not waiting, twice, or out of order", p.Admit)
	}
	if n := len(survivors(st, p)) + len(adm); len(adm) > 0 && n > cfg.MaxRunning {
		return fmt.Errorf("%d running after the plan, MaxRunning %d", n, cfg.MaxRunning)
	}
	for i, w := range st.Waiting {
		if slices.Contains(p.Admit, w.ID) {
			continue
		}
		for _, v := range st.Waiting[i+1:] {
			if slices.Contains(p.Admit, v.ID) && (w.Adapter == "" || w.Adapter == v.Adapter) {
				return fmt.Errorf("admitted %d but not the older %d", v.ID, w.ID)
			}
		}
	}
	return nil
}

func ids(seqs []Seq) []uint64 {
	var s []uint64
	for _, q := range seqs {
		s = append(s, q.ID)
	}
	return s
}

// checkSlots: evictions are resident and unpinned, loads are new, at most Slots adapters
// are resident afterwards, and every sequence that runs has its adapter resident.
func checkSlots(cfg *Config, st *State, p *Plan) error {
	for i, a := range p.Evict {
		if !slices.Contains(st.Resident, a) || slices.Contains(p.Evict[:i], a) || slices.Contains(p.Load, a) || slices.Contains(st.Loading, a) {
			return fmt.Errorf("evicted %q: not resident, evicted twice, loaded again, or still loading", a)
		}
	}
	for _, q := range admitted(st, p) {
		if slices.Contains(st.Loading, q.Adapter) {
			return fmt.Errorf("admitted %d before its adapter %q finished loading", q.ID, q.Adapter)
		}
	}
	for i, a := range p.Load {
		if a == "" || slices.Contains(st.Resident, a) || slices.Contains(p.Load[:i], a) {
			return fmt.Errorf("loaded %q: the base model, already resident, or loaded twice", a)
		}
	}
	after := slices.DeleteFunc(slices.Clone(st.Resident), func(a string) bool { return slices.Contains(p.Evict, a) })
	after = append(after, p.Load...)
	if len(after) > cfg.Slots {
		return fmt.Errorf("%d adapters resident after the plan, %d slots", len(after), cfg.Slots)
	}
	for _, q := range slices.Concat(survivors(st, p), admitted(st, p)) {
		if q.Adapter != "" && !slices.Contains(after, q.Adapter) {
			return fmt.Errorf("%d runs adapter %q, which is not resident after the plan %q", q.ID, q.Adapter, after)
		}
	}
	return nil
}

// checkChunks: one chunk per running sequence at most, within its pending tokens, within
// the token budget and the blocks that are free or released.
func checkChunks(cfg *Config, st *State, p *Plan) error {
	runs := slices.Concat(survivors(st, p), admitted(st, p))
	tokens, blocks := 0, 0
	for i, c := range p.Chunks {
		j := slices.IndexFunc(runs, func(q Seq) bool { return q.ID == c.ID })
		if j < 0 || slices.ContainsFunc(p.Chunks[:i], func(d Chunk) bool { return d.ID == c.ID }) {
			return fmt.Errorf("chunk for %d, which does not run this step, or twice", c.ID)
		}
		q := runs[j]
		if c.N < 1 || c.N > q.Len-q.Computed {
			return fmt.Errorf("chunk %d:%d outside [1, %d]", c.ID, c.N, q.Len-q.Computed)
		}
		tokens += c.N
		blocks += ceilDiv(q.Computed+c.N, cfg.BlockSize) - q.Blocks
	}
	released := 0
	for _, q := range st.Running {
		if slices.Contains(p.Preempt, q.ID) {
			released += q.Blocks
		}
	}
	if tokens > cfg.MaxBatchTokens || blocks > st.FreeBlocks+released {
		return fmt.Errorf("%d tokens (budget %d), %d blocks (%d free + %d released)", tokens, cfg.MaxBatchTokens, blocks, st.FreeBlocks, released)
	}
	return nil
}

// checkRunningOrder: surviving sequences are served oldest first, each with min(pending,
// budget left), and before any admission.
func checkRunningOrder(cfg *Config, st *State, p *Plan) error {
	left, k := cfg.MaxBatchTokens, 0
	for _, q := range survivors(st, p) {
		want := min(q.Len-q.Computed, left)
		if want == 0 {
			continue
		}
		if k >= len(p.Chunks) || p.Chunks[k] != (Chunk{ID: q.ID, N: want}) {
			return fmt.Errorf("running %d: want chunk %d:%d at position %d", q.ID, q.ID, want, k)
		}
		left -= want
		k++
	}
	return nil
}

// checkProgress: a state with work, where every sequence's Len fits in the whole cache, gets
// at least one chunk, unless nothing runs and every waiting sequence waits for an upload in
// flight: its adapter's, or any, for a slot, when every slot holds one.
func checkProgress(cfg *Config, st *State, p *Plan) error {
	all := slices.Concat(st.Running, st.Waiting)
	fit := !slices.ContainsFunc(all, func(q Seq) bool { return ceilDiv(q.Len, cfg.BlockSize) > totalBlocks(st) })
	slotsLoading := len(st.Resident) >= cfg.Slots && len(st.Loading) == len(st.Resident)
	canGo := func(q Seq) bool {
		return q.Adapter == "" || slices.Contains(st.Resident, q.Adapter) && !slices.Contains(st.Loading, q.Adapter) ||
			!slices.Contains(st.Resident, q.Adapter) && !slotsLoading
	}
	uploads := len(st.Running) == 0 && !slices.ContainsFunc(st.Waiting, canGo)
	if fit && len(all) > 0 && len(p.Chunks) == 0 && !uploads {
		return errors.New("no progress")
	}
	return nil
}
