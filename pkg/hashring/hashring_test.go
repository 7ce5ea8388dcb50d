package hashring

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func newRing(t testing.TB, workers int) *Ring {
	t.Helper()
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range workers {
		r.Set(fmt.Sprintf("w%02d", i), 1)
	}
	return r
}

// refOrder is a brute-force reference for the ring order of a key: every worker sorted by the
// clockwise distance from the key's hash to the nearest of its virtual nodes.
func refOrder(weights map[string]int, vnodes int, key string) []string {
	h := xxhash.Sum64String(key)
	dist := map[string]uint64{}
	var ids []string
	for id, w := range weights {
		best := uint64(math.MaxUint64)
		for i := range w * vnodes {
			best = min(best, vnodeHash(id, i)-h) // wraps around: clockwise distance
		}
		dist[id] = best
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if dist[a] != dist[b] {
			return cmp.Compare(dist[a], dist[b])
		}
		return cmp.Compare(a, b)
	})
	return ids
}

// refPick is the bounded-load rule computed from scratch: the first worker in ring order whose
// load is under ceil(c·(L+1)·w/W).
func refPick(weights map[string]int, loads map[string]int64, c float64, vnodes int, key string) string {
	var total int64
	W := 0
	for id, w := range weights {
		total += loads[id]
		W += w
	}
	for _, id := range refOrder(weights, vnodes, key) {
		if float64(loads[id]) < math.Ceil(c*float64(total+1)*float64(weights[id])/float64(W)) {
			return id
		}
	}
	return ""
}

func TestPickMatchesReferenceUnderRandomLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 30 {
		cfg := Config{BalanceFactor: 1.05 + rng.Float64(), VNodes: 1 + rng.IntN(20)}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		weights := map[string]int{}
		for i := range 1 + rng.IntN(8) {
			id := "w" + strconv.Itoa(i)
			weights[id] = 1 + rng.IntN(3)
			r.Set(id, weights[id])
		}
		loads := map[string]int64{}
		for op := range 300 {
			key := "adapter-" + strconv.Itoa(rng.IntN(40))
			if op%3 == 2 { // release something
				for id, l := range loads {
					if l > 0 {
						r.Release(id)
						loads[id]--
						break
					}
				}
				continue
			}
			want := refPick(weights, loads, cfg.BalanceFactor, cfg.VNodes, key)
			got, err := r.Pick(key)
			if err != nil || got != want {
				t.Fatalf("trial %d op %d: Pick(%s) = %s, %v; reference %s (loads %v)", trial, op, key, got, err, want, loads)
			}
			loads[got]++
		}
	}
}

// The cap holds: every Pick lands on a worker whose load was under its cap at that moment,
// and while requests only arrive no worker ever holds more than ceil(c·L/n).
func TestCapAlwaysHolds(t *testing.T) {
	r := newRing(t, 8)
	rng := rand.New(rand.NewPCG(3, 4))
	var held []string
	for op := range 5000 {
		if len(held) > 0 && op > 1000 && rng.IntN(3) == 0 {
			i := rng.IntN(len(held))
			r.Release(held[i])
			held = slices.Delete(held, i, i+1)
			continue
		}
		key := "hot"
		if rng.IntN(4) == 0 {
			key = "k" + strconv.Itoa(rng.IntN(100))
		}
		before := r.Loads()
		id, err := r.Pick(key)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, id)
		for _, w := range before {
			if w.ID == id && w.InFlight >= w.Cap {
				t.Fatalf("op %d: picked %s with %d in flight, cap %d", op, id, w.InFlight, w.Cap)
			}
		}
		if op < 1000 { // arrivals only so far
			for _, w := range r.Loads() {
				if limit := int64(math.Ceil(1.25 * float64(len(held)) / 8)); w.InFlight > limit {
					t.Fatalf("op %d: %s holds %d, above ceil(c·L/n) = %d", op, w.ID, w.InFlight, limit)
				}
			}
		}
	}
}

func owners(t *testing.T, r *Ring, keys int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := range keys {
		k := "adapter-" + strconv.Itoa(i)
		id, err := r.Pick(k)
		if err != nil {
			t.Fatal(err)
		}
		r.Release(id)
		out[k] = id
	}
	return out
}

// With no load, adding or removing a worker moves only the keys that must move, about 1/n.
func TestMinimalDisruption(t *testing.T) {
	const keys = 20000
	r := newRing(t, 10)
	before := owners(t, r, keys)
	r.Set("new", 1)
	after := owners(t, r, keys)
	moved := 0
	for k, id := range after {
		if id != before[k] {
			moved++
			if id != "new" {
				t.Fatalf("key %s moved from %s to %s, not to the new worker", k, before[k], id)
			}
		}
	}
	if frac := float64(moved) / keys; frac < 0.5/11 || frac > 2.0/11 {
		t.Errorf("adding an 11th worker moved %.3f of the keys, want about 1/11", frac)
	}
	r.Remove("w03")
	removed := owners(t, r, keys)
	for k, id := range removed {
		if id != after[k] && after[k] != "w03" {
			t.Fatalf("key %s moved from %s to %s though its worker stayed", k, after[k], id)
		}
	}
}

// A hot adapter spills: with many requests in flight for one key they spread in ring order.
func TestHotKeySpillsInRingOrder(t *testing.T) {
	r := newRing(t, 4)
	order := r.Candidates("hot", nil)
	counts := map[string]int{}
	for range 40 {
		id, err := r.Pick("hot")
		if err != nil {
			t.Fatal(err)
		}
		counts[id]++
	}
	if counts[order[0]] == 40 || counts[order[0]] > int(math.Ceil(1.25*40/4)) {
		t.Errorf("no spill: %v (ring order %v)", counts, order)
	}
	if counts[order[0]] < counts[order[3]] {
		t.Errorf("spill ignores ring order: %v (order %v)", counts, order)
	}
}

func TestWeightsAndReports(t *testing.T) {
	r, _ := New(Config{})
	r.Set("small", 1)
	r.Set("big", 3)
	n := map[string]int{}
	for i := range 8000 {
		id, _ := r.Pick("k" + strconv.Itoa(i))
		r.Release(id)
		n[id]++
	}
	if ratio := float64(n["big"]) / float64(n["small"]); ratio < 2 || ratio > 4.5 {
		t.Errorf("weight 3 vs 1 got %v keys (ratio %.2f)", n, ratio)
	}
	// A worker reporting a large load of its own is skipped while over its cap.
	key := "k1"
	first := r.Candidates(key, nil)[0]
	r.Report(first, 1000)
	if id, _ := r.Pick(key); id == first {
		t.Errorf("picked %s although it reported 1000 in flight", first)
	}
	if id, err := r.PickFunc(key, func(id string) bool { return id == first }); err != nil || id != first {
		t.Errorf("PickFunc restricted to %s: %s, %v", first, id, err)
	}
	if _, err := r.PickFunc(key, func(string) bool { return false }); err != ErrEmpty {
		t.Errorf("nothing allowed: %v", err)
	}
	if _, ok := r.PickUnderCap(key, func(id string) bool { return id == first }); ok {
		t.Errorf("PickUnderCap took %s, which is over its cap", first)
	}
	if id, err := r.LeastLoaded(nil); err != nil || id == first {
		t.Errorf("LeastLoaded = %s, %v; %s reported 1000", id, err, first)
	}
	r.Remove("small")
	r.Remove("big")
	if _, err := r.Pick(key); err != ErrEmpty {
		t.Errorf("empty ring: %v", err)
	}
	r.Release("gone") // never panics
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{{BalanceFactor: 1}, {BalanceFactor: 0.5}, {BalanceFactor: math.NaN()}, {VNodes: -1}, {BalanceFactor: math.Inf(1)}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	r := newRing(t, 16)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				id, err := r.Pick("k" + strconv.Itoa((g*31+i)%50))
				if err != nil {
					t.Error(err)
					return
				}
				r.Release(id)
				if i%500 == 0 {
					r.Set("extra"+strconv.Itoa(g), 1+i%3)
				}
			}
		})
	}
	wg.Wait()
	for _, w := range r.Loads() {
		if w.InFlight != 0 {
			t.Errorf("%s has %d in flight after every release", w.ID, w.InFlight)
		}
	}
}

func BenchmarkPick64(b *testing.B) {
	r := newRing(b, 64)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "adapter-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id, _ := r.Pick(keys[i%len(keys)])
		r.Release(id)
		i++
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	r := newRing(t, 64)
	if n := testing.AllocsPerRun(1000, func() {
		id, _ := r.Pick("adapter-7")
		r.Release(id)
	}); n != 0 {
		t.Errorf("Pick+Release allocates %v times", n)
	}
}
