package host

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// step is a recorded decode step of n launches whose arguments end in arg (a metadata
// address, say).
func step(n int, arg uint64) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = Op{Fn: uintptr(100 + i%3), Name: "k", Grid: Dims{4, 1, 1}, Block: Dims{128, 1, 1}, Cells: []uint64{7, arg}}
	}
	return ops
}

type recorder struct{ freed []int }

func (r *recorder) free(e int) { r.freed = append(r.freed, e) }

// A launch sequence runs eagerly when first seen, is captured the second time and replayed
// from then on; a sequence differing in one argument is another graph.
func TestGraphsCaptureTheSecondSighting(t *testing.T) {
	r := &recorder{}
	g := Graphs[int]{Free: r.free}
	if d, _, _ := g.Decide(step(40, 1)); d != Eager {
		t.Fatalf("first sighting: %v, want eager", d)
	}
	d, key, _ := g.Decide(step(40, 1))
	if d != Capture {
		t.Fatalf("second sighting: %v, want capture", d)
	}
	g.Captured(key, step(40, 1), 11)
	for range 3 {
		if d, _, exec := g.Decide(step(40, 1)); d != Replay || exec != 11 {
			t.Fatalf("later sightings: %v %d, want replay of 11", d, exec)
		}
	}
	if d, _, _ := g.Decide(step(40, 2)); d != Eager {
		t.Fatalf("another argument: %v, want eager (a new sequence)", d)
	}
	other := step(40, 1)
	other[39].Grid.Z = 2
	if d, _, _ := g.Decide(other); d != Eager {
		t.Fatalf("another grid: %v, want eager", d)
	}
	want := GraphStats{Eager: 3, Captured: 1, Replayed: 3}
	if g.Stats != want {
		t.Errorf("stats %+v, want %+v", g.Stats, want)
	}
	g.Close()
	if !slices.Equal(r.freed, []int{11}) {
		t.Errorf("freed %v, want [11]", r.freed)
	}
}

// Short flushes and Off always run eagerly.
func TestGraphsEagerWhenShortOrOff(t *testing.T) {
	g := Graphs[int]{Free: func(int) {}}
	for range 3 {
		if d, _, _ := g.Decide(step(MinGraphOps-1, 1)); d != Eager {
			t.Fatalf("short flush: %v", d)
		}
	}
	g.Off = true
	for range 3 {
		if d, _, _ := g.Decide(step(40, 1)); d != Eager {
			t.Fatalf("graphs off: %v", d)
		}
	}
}

// A sequence whose capture failed runs eagerly from then on, and the first failure is kept.
func TestGraphsFailedCaptureStaysEager(t *testing.T) {
	g := Graphs[int]{Free: func(int) { t.Error("nothing to free") }}
	g.Decide(step(40, 1))
	_, key, _ := g.Decide(step(40, 1))
	g.Failed(key, step(40, 1), errors.New("operation not permitted when stream is capturing"))
	for range 3 {
		if d, _, _ := g.Decide(step(40, 1)); d != Eager {
			t.Fatalf("after a failed capture: %v, want eager", d)
		}
	}
	if g.Stats.Failed != 1 || g.Stats.FirstFailure == nil {
		t.Errorf("stats %+v", g.Stats)
	}
}

// Beyond MaxGraphs, making room frees the least recently launched graph, and only then.
func TestGraphsEvictTheLeastRecentlyUsed(t *testing.T) {
	r := &recorder{}
	g := Graphs[int]{Free: r.free}
	capture := func(arg uint64, exec int) {
		t.Helper()
		g.Decide(step(20, arg))
		d, key, _ := g.Decide(step(20, arg))
		if d != Capture {
			t.Fatalf("arg %d: %v, want capture", arg, d)
		}
		if g.MustFree(key) {
			g.MakeRoom(key)
		}
		g.Captured(key, step(20, arg), exec)
	}
	for i := range MaxGraphs {
		capture(uint64(i), 1000+i)
	}
	if len(r.freed) != 0 {
		t.Fatalf("freed %v before the cache was full", r.freed)
	}
	g.Decide(step(20, 0)) // graph 0 is now the most recently used; 1 the least
	capture(999, 5000)
	if !slices.Equal(r.freed, []int{1001}) {
		t.Fatalf("freed %v, want [1001] (the least recently launched)", r.freed)
	}
	if d, _, exec := g.Decide(step(20, 0)); d != Replay || exec != 1000 {
		t.Errorf("graph 0: %v %d, want replay of 1000", d, exec)
	}
	if d, _, _ := g.Decide(step(20, 1)); d != Eager {
		t.Errorf("evicted graph 1: %v, want eager (its sighting forgotten)", d)
	}
}

func (d Decision) String() string { return [...]string{"eager", "capture", "replay"}[d] }

func ExampleSignature() {
	a, b := step(3, 1), step(3, 1)
	b[2].Cells[1] = 2
	fmt.Println(Signature(a) == Signature(step(3, 1)), Signature(a) == Signature(b))
	// Output: true false
}

// Sequences seen once (a prefill of each length) are forgotten beyond maxSeen.
func TestGraphsForgetOneOffs(t *testing.T) {
	g := Graphs[int]{Free: func(int) {}}
	for i := range maxSeen + 10 {
		g.Decide(step(20, uint64(i)))
	}
	if len(g.seen) > maxSeen {
		t.Errorf("%d sequences remembered, want at most %d", len(g.seen), maxSeen)
	}
}
