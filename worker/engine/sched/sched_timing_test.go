package sched

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Planning a step of 256 running sequences must stay far below a GPU decode step
// (milliseconds): the target is well under 100 µs, without allocations.
func BenchmarkSchedule(b *testing.B) {
	for _, shuffled := range []bool{false, true} {
		b.Run(fmt.Sprintf("running=256/shuffled=%v", shuffled), func(b *testing.B) {
			cfg, st := bigState(shuffled)
			var p Plan
			b.ReportAllocs()
			for b.Loop() {
				Schedule(&cfg, &st, &p)
			}
		})
	}
}

// bigState has 256 decoding sequences over 8 adapters, all pinned, and a queue of requests
// for resident and cold adapters: admission, slot and drain logic all run.
func bigState(shuffled bool) (Config, State) {
	cfg := Config{MaxBatchTokens: 512, MaxRunning: 384, Slots: 8, BlockSize: 16}
	st := State{FreeBlocks: 1000}
	st.Resident = []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"}
	for i := range 256 {
		ln := 300 + i
		st.Running = append(st.Running, Seq{ID: uint64(i), Adapter: st.Resident[i%8], Arrival: uint64(i),
			Len: ln, Computed: ln - 1, Blocks: ceilDiv(ln-1, 16)})
	}
	if shuffled {
		rand.New(rand.NewPCG(1, 1)).Shuffle(len(st.Running), func(i, j int) {
			st.Running[i], st.Running[j] = st.Running[j], st.Running[i]
		})
	}
	for i := range 32 {
		a := st.Resident[i%8]
		if i%4 == 0 {
			a = fmt.Sprintf("cold%d", i)
		}
		st.Waiting = append(st.Waiting, Seq{ID: uint64(1000 + i), Adapter: a, Arrival: uint64(1000 + i), Len: 40})
	}
	return cfg, st
}

func TestScheduleAllocatesNothingInSteadyState(t *testing.T) {
	for _, shuffled := range []bool{false, true} {
		cfg, st := bigState(shuffled)
		var p Plan
		Schedule(&cfg, &st, &p) // sizes the plan's slices
		if len(p.Admit) == 0 {
			t.Fatal("the state admits nothing: the admission path is not measured")
		}
		if n := testing.AllocsPerRun(100, func() { Schedule(&cfg, &st, &p) }); n != 0 {
			t.Errorf("shuffled=%v: Schedule allocates %v times per call", shuffled, n)
		}
	}
}
