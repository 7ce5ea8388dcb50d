package router

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/lorafleet/lorafleet/pkg/hashring"
)

// Policy is how adapter requests are placed. Bounded is lorafleet's; the others exist to be
// compared with it (bench/routing).
type Policy string

// The placement policies.
const (
	PolicyBounded     Policy = "bounded"      // bounded-load consistent hashing, warm workers first
	PolicyConsistent  Policy = "consistent"   // plain consistent hashing: the adapter's home, loaded or not
	PolicyLeastLoaded Policy = "least-loaded" // the least loaded worker
	PolicyRoundRobin  Policy = "round-robin"
	PolicyRandom      Policy = "random"
)

// ParsePolicy checks a policy name.
func ParsePolicy(s string) (Policy, error) {
	p := Policy(s)
	if !slices.Contains([]Policy{PolicyBounded, PolicyConsistent, PolicyLeastLoaded, PolicyRoundRobin, PolicyRandom}, p) {
		return "", fmt.Errorf("router: unknown policy %q (bounded, consistent, least-loaded, round-robin, random)", s)
	}
	return p, nil
}

// pickOther places a request under one of the comparison policies.
func (r *Router) pickOther(adapter string, ok func(string) bool) (string, string, error) {
	if r.cfg.Policy == PolicyLeastLoaded {
		id, err := r.ring.LeastLoaded(ok)
		return id, "least_loaded", err
	}
	var cands []string
	for _, id := range r.ring.Candidates(adapter, nil) {
		if ok(id) {
			cands = append(cands, id)
		}
	}
	if len(cands) == 0 {
		return "", "", hashring.ErrEmpty
	}
	var id string
	switch r.cfg.Policy {
	case PolicyConsistent:
		id = cands[0]
	case PolicyRoundRobin:
		slices.Sort(cands)
		id = cands[r.rr.Add(1)%uint64(len(cands))]
	default:
		id = cands[rand.IntN(len(cands))]
	}
	r.ring.Acquire(id)
	return id, string(r.cfg.Policy), nil
}
