// Package hashring places keys (adapter IDs) on workers with consistent hashing with bounded
// loads (Mirrokni, Thorup and Zadimoghaddam, SODA 2018): a key goes to the first worker
// clockwise from its hash whose load is under a cap, so an adapter keeps landing where it is
// warm, and a hot one spills to the next workers instead of overloading one.
//
// Workers have weights (capacities): each gets VNodes virtual nodes per unit of weight, and
// its cap is ceil(c · (L + 1) · w / W), where L is the total load, w its weight, W the total
// weight and c the balance factor. With equal weights that is ceil(c · (L + 1) / n).
package hashring

import (
	"cmp"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Config tunes a Ring. Zero fields take the defaults.
type Config struct {
	// BalanceFactor is c: no worker gets more than c times its share of the load. Default
	// 1.25; must be above 1.
	BalanceFactor float64
	// VNodes is the number of virtual nodes per unit of worker weight. Default 100.
	VNodes int
}

// Ring is safe for concurrent use. Its zero value is not usable: call New.
type Ring struct {
	cfg Config

	mu      sync.Mutex
	points  []point // sorted by hash
	workers map[string]*worker
	weight  int   // total
	load    int64 // total of max(inflight, reported) over workers
}

type point struct {
	hash uint64
	w    *worker
}

type worker struct {
	id       string
	weight   int
	inflight int64 // acquired here and not yet released
	reported int64 // the worker's own count, from its load reports
}

func (w *worker) load() int64 { return max(w.inflight, w.reported) }

// New returns an empty ring.
func New(cfg Config) (*Ring, error) {
	if cfg.BalanceFactor == 0 {
		cfg.BalanceFactor = 1.25
	}
	if cfg.VNodes == 0 {
		cfg.VNodes = 100
	}
	if !(cfg.BalanceFactor > 1) || math.IsInf(cfg.BalanceFactor, 0) || cfg.VNodes < 1 || cfg.VNodes > 10000 {
		return nil, errors.New("hashring: balance factor must be above 1 and vnodes in [1, 10000]")
	}
	return &Ring{cfg: cfg, workers: map[string]*worker{}}, nil
}

// ErrEmpty is returned by Pick when the ring has no workers.
var ErrEmpty = errors.New("hashring: no workers")

// Set adds a worker or changes its weight (values below 1 count as 1). Its load survives.
func (r *Ring) Set(id string, weight int) {
	weight = max(1, min(weight, 1000))
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	if ok && w.weight == weight {
		return
	}
	if ok {
		r.dropPoints(w)
		r.weight -= w.weight
	} else {
		w = &worker{id: id}
		r.workers[id] = w
	}
	w.weight = weight
	r.weight += weight
	for i := range weight * r.cfg.VNodes {
		r.points = append(r.points, point{hash: vnodeHash(id, i), w: w})
	}
	slices.SortFunc(r.points, func(a, b point) int {
		if a.hash != b.hash {
			return cmp.Compare(a.hash, b.hash)
		}
		return cmp.Compare(a.w.id, b.w.id) // ties broken by id so placement does not depend on history
	})
}

func vnodeHash(id string, i int) uint64 {
	var buf [128]byte
	b := append(buf[:0], id...)
	b = append(b, '#')
	b = strconv.AppendInt(b, int64(i), 10)
	return xxhash.Sum64(b)
}

// Remove drops a worker; unknown ids are ignored.
func (r *Ring) Remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	if !ok {
		return
	}
	r.dropPoints(w)
	r.weight -= w.weight
	r.load -= w.load()
	delete(r.workers, id)
}

func (r *Ring) dropPoints(w *worker) {
	r.points = slices.DeleteFunc(r.points, func(p point) bool { return p.w == w })
}

// capOf is the most load w may have before a new key must skip it; r.mu is held.
func (r *Ring) capOf(w *worker) int64 {
	return int64(math.Ceil(r.cfg.BalanceFactor * float64(r.load+1) * float64(w.weight) / float64(r.weight)))
}

// Pick returns the worker for key — the first clockwise from its hash whose load is under
// its cap — and counts one more in-flight request on it; call Release when the request ends.
// Some worker is always under its cap (the caps add up to more than the total load), so Pick
// fails only on an empty ring.
func (r *Ring) Pick(key string) (string, error) {
	return r.PickFunc(key, nil)
}

// PickFunc is Pick restricted to workers accept allows (nil allows all); it is how callers skip
// workers they know to be failing or draining. When every allowed worker is at its cap it
// takes the least loaded of them; it fails with ErrEmpty when none is allowed.
func (r *Ring) PickFunc(key string, accept func(id string) bool) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, fallback := r.walk(key, accept)
	if w == nil {
		w = fallback
	}
	if w == nil {
		return "", ErrEmpty
	}
	r.acquire(w)
	return w.id, nil
}

// PickUnderCap is PickFunc without the fallback: it reports false, acquiring nothing, when
// no allowed worker is under its cap.
func (r *Ring) PickUnderCap(key string, accept func(id string) bool) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, _ := r.walk(key, accept)
	if w == nil {
		return "", false
	}
	r.acquire(w)
	return w.id, true
}

// walk returns the first allowed worker under its cap in key's ring order, and the allowed
// worker least loaded relative to its weight; r.mu is held.
func (r *Ring) walk(key string, accept func(id string) bool) (under, fallback *worker) {
	n := len(r.points)
	if n == 0 {
		return nil, nil
	}
	start := r.startOf(key)
	for i := range n {
		w := r.points[(start+i)%n].w
		if accept != nil && !accept(w.id) {
			continue
		}
		if w.load() < r.capOf(w) {
			return w, nil
		}
		if fallback == nil || w.load()*int64(fallback.weight) < fallback.load()*int64(w.weight) {
			fallback = w
		}
	}
	return nil, fallback
}

// startOf is the index of the first virtual node clockwise from key's hash (len(r.points)
// when it wraps around); r.mu is held.
func (r *Ring) startOf(key string) int {
	h := xxhash.Sum64String(key)
	i, _ := slices.BinarySearchFunc(r.points, h, func(p point, h uint64) int { return cmp.Compare(p.hash, h) })
	return i
}

// LeastLoaded picks the allowed worker with the least load per unit of weight (ties: by id),
// for requests that have no key (the base model), and acquires it.
func (r *Ring) LeastLoaded(accept func(id string) bool) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *worker
	for _, w := range r.workers {
		if accept != nil && !accept(w.id) {
			continue
		}
		if best == nil {
			best = w
			continue
		}
		a, b := w.load()*int64(best.weight), best.load()*int64(w.weight)
		if a < b || a == b && w.id < best.id {
			best = w
		}
	}
	if best == nil {
		return "", ErrEmpty
	}
	r.acquire(best)
	return best.id, nil
}

func (r *Ring) acquire(w *worker) {
	before := w.load()
	w.inflight++
	r.load += w.load() - before
}

// Release ends a request Pick counted on id.
func (r *Ring) Release(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	if !ok || w.inflight == 0 {
		return
	}
	before := w.load()
	w.inflight--
	r.load += w.load() - before
}

// Report sets the in-flight count a worker reported itself; the ring uses the larger of that
// and its own count.
func (r *Ring) Report(id string, inflight int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	if !ok {
		return
	}
	before := w.load()
	w.reported = max(0, inflight)
	r.load += w.load() - before
}

// Candidates appends to dst the distinct workers in ring order from key's hash (the order
// retries follow), without acquiring anything.
func (r *Ring) Candidates(key string, dst []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.points)
	start := r.startOf(key)
	base := len(dst)
	for i := 0; i < n && len(dst)-base < len(r.workers); i++ {
		if id := r.points[(start+i)%n].w.id; !slices.Contains(dst[base:], id) {
			dst = append(dst, id)
		}
	}
	return dst
}

// WorkerLoad is one worker's state, for /cluster and metrics.
type WorkerLoad struct {
	ID                 string
	Weight             int
	InFlight, Reported int64
	Cap                int64
}

// Loads lists the workers sorted by id.
func (r *Ring) Loads() []WorkerLoad {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]WorkerLoad, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, WorkerLoad{ID: w.id, Weight: w.weight, InFlight: w.inflight, Reported: w.reported, Cap: r.capOf(w)})
	}
	slices.SortFunc(out, func(a, b WorkerLoad) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Acquire counts one more in-flight request on id, for callers that chose the worker
// themselves; unknown ids are ignored. Release it as after Pick.
func (r *Ring) Acquire(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok {
		r.acquire(w)
	}
}
