package sched

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// sim applies plans as the engine does, to test the policy over many steps: it releases and
// requeues preempted sequences, evicts and loads adapters, grows KV blocks, samples one
// token when a chunk reaches Len, and retires a sequence after maxTok generated tokens.
type sim struct {
	cfg      Config
	st       State
	plan     Plan // reused, as the engine does
	prompt   map[uint64]int
	maxTok   map[uint64]int
	adapter  map[uint64]string
	admitted map[uint64]int // step of first admission
	done     map[uint64]bool
	step     int
	nextID   uint64
	preempts int
}

func newSim(cfg Config, blocks int) *sim {
	return &sim{cfg: cfg, st: State{FreeBlocks: blocks}, prompt: map[uint64]int{}, maxTok: map[uint64]int{},
		adapter: map[uint64]string{}, admitted: map[uint64]int{}, done: map[uint64]bool{}}
}

func (s *sim) submit(adapter string, prompt, maxTok int) uint64 {
	s.nextID++
	id := s.nextID
	s.prompt[id], s.maxTok[id], s.adapter[id] = prompt, maxTok, adapter
	s.st.Waiting = append(s.st.Waiting, Seq{ID: id, Adapter: adapter, Arrival: id, Len: prompt})
	return id
}

// run plans and applies one step, checking the state and the plan.
func (s *sim) run(t *testing.T) {
	t.Helper()
	s.step++
	if err := checkState(&s.cfg, &s.st); err != nil {
		t.Fatalf("step %d: %v", s.step, err)
	}
	p := &s.plan
	Schedule(&s.cfg, &s.st, p)
	checkPlan(t, &s.cfg, &s.st, p)
	for _, id := range p.Preempt {
		s.requeue(take(&s.st.Running, id))
	}
	s.preempts += len(p.Preempt)
	s.st.Resident = slices.DeleteFunc(s.st.Resident, func(a string) bool { return slices.Contains(p.Evict, a) })
	s.st.Resident = append(s.st.Resident, p.Load...)
	for _, id := range p.Admit {
		s.st.Running = append(s.st.Running, take(&s.st.Waiting, id))
		if _, ok := s.admitted[id]; !ok {
			s.admitted[id] = s.step
		}
	}
	for _, c := range p.Chunks {
		s.compute(c)
	}
	s.retire()
}

func take(list *[]Seq, id uint64) Seq {
	i := slices.IndexFunc(*list, func(q Seq) bool { return q.ID == id })
	q := (*list)[i]
	*list = slices.Delete(*list, i, i+1)
	return q
}

func (s *sim) requeue(q Seq) {
	s.st.FreeBlocks += q.Blocks
	q.Computed, q.Blocks = 0, 0
	i, _ := slices.BinarySearchFunc(s.st.Waiting, q.Arrival, func(w Seq, a uint64) int { return cmp.Compare(w.Arrival, a) })
	s.st.Waiting = slices.Insert(s.st.Waiting, i, q)
}

func (s *sim) compute(c Chunk) {
	q := &s.st.Running[slices.IndexFunc(s.st.Running, func(q Seq) bool { return q.ID == c.ID })]
	q.Computed += c.N
	blocks := ceilDiv(q.Computed, s.cfg.BlockSize)
	s.st.FreeBlocks -= blocks - q.Blocks
	q.Blocks = blocks
	if q.Computed == q.Len {
		q.Len++ // sampled a token
	}
	if q.Adapter != "" { // the engine touches an adapter when it runs
		s.st.Resident = append(slices.DeleteFunc(s.st.Resident, func(a string) bool { return a == q.Adapter }), q.Adapter)
	}
}

func (s *sim) retire() {
	s.st.Running = slices.DeleteFunc(s.st.Running, func(q Seq) bool {
		if q.Len-s.prompt[q.ID] < s.maxTok[q.ID] {
			return false
		}
		s.st.FreeBlocks += q.Blocks
		s.done[q.ID] = true
		return true
	})
}

// coldAdmission runs a sim where every hot adapter gets a new request each step, submits one
// cold request, and returns the step it arrived before and the step it was admitted in. Its
// limits let every step prefill each new prompt whole and decode every running sequence, so
// a sequence admitted in step a samples its maxTok-th token in step a+maxTok-1 and retires.
func coldAdmission(t *testing.T, slots int, hot ...string) (sim *sim, arrived, admittedAt int, cold uint64) {
	const prompt, maxTok = 8, 20
	s := newSim(Config{MaxBatchTokens: 256, MaxRunning: 128, Slots: slots, BlockSize: 4}, 10000)
	submitHot := func() {
		for _, a := range hot {
			s.submit(a, prompt, maxTok)
		}
	}
	for range 2 * maxTok { // a steady state: maxTok sequences running per hot adapter
		submitHot()
		s.run(t)
	}
	cold = s.submit("cold", prompt, maxTok)
	arrived = s.step
	for s.step < arrived+10*maxTok && !s.done[cold] {
		submitHot()
		s.run(t)
	}
	at, ok := s.admitted[cold]
	if !ok {
		t.Fatalf("the cold request was never admitted")
	}
	return s, arrived, at, cold
}

// A hot adapter with a new request every step cannot keep a cold one out of the only slot.
// From the cold request's arrival the hot adapter admits nothing; the last hot sequence,
// admitted in step arrived, retires after step arrived+maxTok-1, so the cold one is admitted
// in step arrived+maxTok.
func TestColdAdapterIsNotStarved(t *testing.T) {
	const maxTok = 20
	s, arrived, at, cold := coldAdmission(t, 1, "hot")
	if bound := arrived + maxTok; at > bound {
		t.Fatalf("cold request admitted in step %d, arrived before step %d, bound %d", at, arrived+1, bound)
	}
	// The drain ends with it: hot requests are admitted again, and the cold one finishes.
	for range 3 * maxTok {
		s.submit("hot", 8, maxTok)
		s.run(t)
	}
	if !s.done[cold] || !slices.ContainsFunc(s.st.Running, func(q Seq) bool { return q.Adapter == "hot" }) {
		t.Fatalf("after the cold request: done=%v running=%v", s.done[cold], s.st.Running)
	}
}

// With two slots and two hot adapters, one of them drains (the same bound holds: its last
// sequence was admitted in step arrived) while the other keeps being admitted.
func TestColdAdapterIsNotStarvedByTwoHot(t *testing.T) {
	const maxTok = 20
	s, arrived, at, _ := coldAdmission(t, 2, "hot1", "hot2")
	if bound := arrived + maxTok; at > bound {
		t.Fatalf("cold request admitted in step %d, arrived before step %d, bound %d", at, arrived+1, bound)
	}
	kept := map[string]bool{}
	for id, step := range s.admitted {
		if step > arrived && step < at {
			kept[s.adapter[id]] = true
		}
	}
	if len(kept) != 1 || kept["cold"] {
		t.Fatalf("adapters admitted while the cold request waited: %v, want one hot adapter", kept)
	}
}

// Under KV pressure, with preemption, mixed adapters and more work than fits, every sequence
// finishes: no deadlock, no livelock.
func TestEverythingFinishesUnderPressure(t *testing.T) {
	const n, maxLen = 30, 40
	preempts := 0
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		cfg := Config{MaxBatchTokens: 8 + r.IntN(40), MaxRunning: 2 + r.IntN(10), Slots: 1 + r.IntN(3), BlockSize: 1 + r.IntN(8)}
		// The cache holds the longest sequence (prompt + generated ≤ maxLen) and little more.
		s := newSim(cfg, ceilDiv(maxLen, cfg.BlockSize)+r.IntN(20))
		adapters := []string{"", "a", "b", "c", "d"}
		for range n {
			s.submit(adapters[r.IntN(len(adapters))], 1+r.IntN(maxLen/2), 1+r.IntN(maxLen/2))
		}
		for s.step < 5000 && len(s.done) < n {
			s.run(t)
		}
		if len(s.done) != n {
			t.Fatalf("seed %d (%+v): %d of %d finished after %d steps", seed, cfg, len(s.done), n, s.step)
		}
		preempts += s.preempts
	}
	if preempts == 0 {
		t.Fatal("no preemption in any run: the test puts no pressure on the cache")
	}
}
