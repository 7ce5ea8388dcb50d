package sched

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// sim applies plans as the engine does, to test the policy over many steps.
type sim struct {
	cfg      Config
	total    int // KV blocks
	st       State
	maxTok   map[uint64]int // tokens to generate per sequence
	prompt   map[uint64]int
	admitted map[uint64]int // step of first admission
	done     map[uint64]bool
	step     int
	nextID   uint64
}

func newSim(cfg Config, blocks int) *sim {
	return &sim{cfg: cfg, total: blocks, st: State{FreeBlocks: blocks}, maxTok: map[uint64]int{}, prompt: map[uint64]int{},
		admitted: map[uint64]int{}, done: map[uint64]bool{}}
}

func (s *sim) submit(adapter string, prompt, maxTok int) uint64 {
	s.nextID++
	id := s.nextID
	s.maxTok[id], s.prompt[id] = maxTok, prompt
	s.st.Waiting = append(s.st.Waiting, Seq{ID: id, Adapter: adapter, Arrival: id, Len: prompt})
	return id
}

func (s *sim) find(list []Seq, id uint64) int {
	return slices.IndexFunc(list, func(q Seq) bool { return q.ID == id })
}

// run plans and applies one step, checking the plan's invariants.
func (s *sim) run(t *testing.T) {
	t.Helper()
	s.step++
	var p Plan
	Schedule(&s.cfg, &s.st, &p)
	checkPlan(t, &s.cfg, &s.st, &p)
	if len(s.st.Running)+len(s.st.Waiting) > 0 && len(p.Chunks) == 0 {
		t.Fatalf("step %d: no progress with %d running and %d waiting", s.step, len(s.st.Running), len(s.st.Waiting))
	}
	for _, id := range p.Preempt {
		i := s.find(s.st.Running, id)
		q := s.st.Running[i]
		s.st.FreeBlocks += q.Blocks
		q.Computed, q.Blocks = 0, 0
		s.st.Running = slices.Delete(s.st.Running, i, i+1)
		j, _ := slices.BinarySearchFunc(s.st.Waiting, q.Arrival, func(w Seq, a uint64) int { return int(w.Arrival) - int(a) })
		s.st.Waiting = slices.Insert(s.st.Waiting, j, q)
	}
	s.st.Resident = slices.DeleteFunc(s.st.Resident, func(a string) bool { return slices.Contains(p.Evict, a) })
	s.st.Resident = append(s.st.Resident, p.Load...)
	for _, id := range p.Admit {
		i := s.find(s.st.Waiting, id)
		s.st.Running = append(s.st.Running, s.st.Waiting[i])
		s.st.Waiting = slices.Delete(s.st.Waiting, i, i+1)
		if _, ok := s.admitted[id]; !ok {
			s.admitted[id] = s.step
		}
	}
	for _, c := range p.Chunks {
		q := &s.st.Running[s.find(s.st.Running, c.ID)]
		q.Computed += c.N
		blocks := (q.Computed + s.cfg.BlockSize - 1) / s.cfg.BlockSize
		s.st.FreeBlocks -= blocks - q.Blocks
		q.Blocks = blocks
		if q.Computed == q.Len {
			q.Len++ // sampled a token
		}
	}
	s.st.Running = slices.DeleteFunc(s.st.Running, func(q Seq) bool {
		if q.Len-s.prompt[q.ID] < s.maxTok[q.ID] {
			return false
		}
		s.st.FreeBlocks += q.Blocks
		s.done[q.ID] = true
		return true
	})
	if s.st.FreeBlocks < 0 {
		t.Fatalf("step %d: free blocks went negative", s.step)
	}
}

// A hot adapter with a new request every step cannot keep a cold one out of the only slot:
// the cold one is admitted once the hot sequences running when it arrived have finished.
func TestNoStarvationOfColdAdapter(t *testing.T) {
	const prompt, maxTok = 8, 20
	s := newSim(Config{MaxBatchTokens: 64, MaxRunning: 64, Slots: 1, BlockSize: 4}, 1000)
	for range 5 {
		s.submit("hot", prompt, maxTok)
		s.run(t)
	}
	cold := s.submit("cold", prompt, maxTok)
	arrived := s.step
	for s.step < arrived+200 && !s.done[cold] {
		s.submit("hot", prompt, maxTok)
		s.run(t)
	}
	got, ok := s.admitted[cold]
	// The hot sequences already running need at most maxTok more steps (plus a step for their
	// prefill) to finish and unpin the slot.
	if bound := arrived + maxTok + 2; !ok || got > bound {
		t.Fatalf("cold request admitted at step %d (ok=%v), arrived at %d, bound %d", got, ok, arrived, bound)
	}
	// The hot adapter resumes afterwards: the drain is not permanent.
	for range 3 * maxTok {
		s.submit("hot", prompt, maxTok)
		s.run(t)
	}
	if !s.done[cold] || len(s.st.Running) == 0 || s.st.Running[0].Adapter != "hot" {
		t.Fatalf("after the cold request: done=%v running=%v", s.done[cold], s.st.Running)
	}
}

// Under KV pressure, with preemption, mixed adapters and more work than fits, every sequence
// finishes: no deadlock, no livelock.
func TestEverythingFinishesUnderPressure(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		cfg := Config{MaxBatchTokens: 8 + r.IntN(40), MaxRunning: 2 + r.IntN(10), Slots: 1 + r.IntN(3), BlockSize: 1 + r.IntN(8)}
		maxLen := 40
		s := newSim(cfg, (maxLen+cfg.BlockSize-1)/cfg.BlockSize+r.IntN(20))
		adapters := []string{"", "a", "b", "c", "d"}
		for range 30 {
			s.submit(adapters[r.IntN(len(adapters))], 1+r.IntN(maxLen/2), 1+r.IntN(maxLen/2))
		}
		for s.step < 5000 && len(s.done) < 30 {
			s.run(t)
		}
		if len(s.done) != 30 {
			t.Fatalf("seed %d (%+v): %d of 30 finished after %d steps", seed, cfg, len(s.done), s.step)
		}
	}
}

// randomState builds a state the engine could be in: running adapters are resident, blocks
// cover what is computed, every sequence fits in the cache.
func randomState(r *rand.Rand) (Config, State) {
	cfg := Config{MaxBatchTokens: 1 + r.IntN(64), MaxRunning: 1 + r.IntN(16), Slots: 1 + r.IntN(4), BlockSize: 1 + r.IntN(8)}
	pool := []string{"a", "b", "c", "d", "e", "f"}
	r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	st := State{Resident: pool[:r.IntN(cfg.Slots+1)], FreeBlocks: r.IntN(30)}
	arrivals := r.Perm(40)
	bs := cfg.BlockSize
	total := st.FreeBlocks
	for i := range r.IntN(cfg.MaxRunning + 1) {
		ln := 1 + r.IntN(50)
		comp := ln - 1
		if r.IntN(3) == 0 {
			comp = r.IntN(ln)
		}
		a := ""
		if len(st.Resident) > 0 && r.IntN(4) > 0 {
			a = st.Resident[r.IntN(len(st.Resident))]
		}
		q := Seq{ID: uint64(i + 1), Adapter: a, Arrival: uint64(arrivals[i]), Len: ln, Computed: comp, Blocks: (comp + bs - 1) / bs}
		total += q.Blocks
		st.Running = append(st.Running, q)
	}
	for i := range r.IntN(12) {
		a := ""
		if r.IntN(4) > 0 {
			a = pool[r.IntN(len(pool))]
		}
		st.Waiting = append(st.Waiting, Seq{ID: uint64(100 + i), Adapter: a, Arrival: uint64(arrivals[20+i]), Len: 1 + r.IntN(50)})
	}
	slices.SortFunc(st.Waiting, func(x, y Seq) int { return int(x.Arrival) - int(y.Arrival) })
	fits := func(q Seq) bool { return (q.Len+bs-1)/bs <= total }
	st.Running = slices.DeleteFunc(st.Running, func(q Seq) bool {
		if fits(q) {
			return false
		}
		st.FreeBlocks += q.Blocks // not removed from total: its blocks become free
		return true
	})
	st.Waiting = slices.DeleteFunc(st.Waiting, func(q Seq) bool { return !fits(q) })
	return cfg, st
}

func TestRandomStatesKeepInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 20000 {
		cfg, st := randomState(r)
		var p Plan
		Schedule(&cfg, &st, &p)
		checkPlan(t, &cfg, &st, &p)
		if len(st.Running)+len(st.Waiting) > 0 && len(p.Chunks) == 0 {
			t.Fatalf("no progress: %+v %+v", cfg, st)
		}
	}
}

// checkPlan verifies everything a plan promises the engine.
func checkPlan(t *testing.T, cfg *Config, st *State, p *Plan) {
	t.Helper()
	byID := map[uint64]Seq{}
	for _, q := range st.Running {
		byID[q.ID] = q
	}
	released := 0
	for _, id := range p.Preempt {
		q, ok := byID[id]
		if !ok {
			t.Fatalf("preempted %d is not running", id)
		}
		released += q.Blocks
		delete(byID, id)
	}
	running := len(byID)
	for _, id := range p.Admit {
		i := slices.IndexFunc(st.Waiting, func(q Seq) bool { return q.ID == id })
		if i < 0 {
			t.Fatalf("admitted %d is not waiting", id)
		}
		byID[id] = st.Waiting[i]
	}
	if running+len(p.Admit) > max(cfg.MaxRunning, len(st.Running)) {
		t.Fatalf("%d running after the plan, MaxRunning %d", running+len(p.Admit), cfg.MaxRunning)
	}
	resident := slices.DeleteFunc(slices.Clone(st.Resident), func(a string) bool { return slices.Contains(p.Evict, a) })
	for _, a := range p.Evict {
		if !slices.Contains(st.Resident, a) {
			t.Fatalf("evicted %q was not resident", a)
		}
	}
	resident = append(resident, p.Load...)
	if len(resident) > cfg.Slots {
		t.Fatalf("%d adapters resident after the plan, %d slots", len(resident), cfg.Slots)
	}
	for _, q := range byID {
		if q.Adapter != "" && !slices.Contains(resident, q.Adapter) {
			t.Fatalf("sequence %d runs adapter %q, which is not resident after the plan (%v)", q.ID, q.Adapter, resident)
		}
	}
	tokens, blocks := 0, 0
	seen := map[uint64]bool{}
	for _, c := range p.Chunks {
		q, ok := byID[c.ID]
		if !ok || seen[c.ID] {
			t.Fatalf("chunk for %d, which does not run this step (or twice)", c.ID)
		}
		seen[c.ID] = true
		if c.N < 1 || c.N > q.Len-q.Computed {
			t.Fatalf("chunk %d:%d outside [1, %d]", c.ID, c.N, q.Len-q.Computed)
		}
		tokens += c.N
		blocks += max(0, (q.Computed+c.N+cfg.BlockSize-1)/cfg.BlockSize-q.Blocks)
	}
	if tokens > cfg.MaxBatchTokens {
		t.Fatalf("%d tokens planned, budget %d", tokens, cfg.MaxBatchTokens)
	}
	if blocks > st.FreeBlocks+released {
		t.Fatalf("%d blocks planned, %d free + %d released", blocks, st.FreeBlocks, released)
	}
}

// Planning a step of 256 running sequences must stay far below a GPU decode step (~5 ms).
func BenchmarkSchedule256(b *testing.B) {
	cfg, st := bigState()
	var p Plan
	b.ReportAllocs()
	for b.Loop() {
		Schedule(&cfg, &st, &p)
	}
}

func bigState() (Config, State) {
	cfg := Config{MaxBatchTokens: 512, MaxRunning: 256, Slots: 8, BlockSize: 16}
	st := State{FreeBlocks: 1000}
	adapters := []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"}
	st.Resident = adapters
	for i := range 256 {
		st.Running = append(st.Running, Seq{ID: uint64(i), Adapter: adapters[i%8], Arrival: uint64(i), Len: 300 + i, Computed: 299 + i, Blocks: (299 + i + 15) / 16})
	}
	for i := range 32 {
		st.Waiting = append(st.Waiting, Seq{ID: uint64(1000 + i), Adapter: "cold" + string(rune('a'+i%4)), Arrival: uint64(1000 + i), Len: 100})
	}
	return cfg, st
}

func TestScheduleAllocatesNothingInSteadyState(t *testing.T) {
	cfg, st := bigState()
	var p Plan
	Schedule(&cfg, &st, &p) // sizes the scratch space
	if n := testing.AllocsPerRun(100, func() { Schedule(&cfg, &st, &p) }); n != 0 {
		t.Errorf("Schedule allocates %v times per call", n)
	}
}
