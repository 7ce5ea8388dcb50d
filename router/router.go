// Package router is the stateless HTTP front of the fleet: it reads the adapter each request
// names, picks a worker with bounded-load consistent hashing (preferring one where the adapter
// is already resident), and proxies the request, streams included. It learns workers from
// membership and their load from load reports; it never asks a worker on the request path.
package router

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/pkg/hashring"
)

// Config sets up a Router. Zero fields take the documented defaults.
type Config struct {
	// BaseModel is the model name that means "no adapter": such requests go to the least
	// loaded worker.
	BaseModel string
	// BalanceFactor is the ring's c: no worker takes more than c times its share. Default 1.25.
	BalanceFactor float64
	// Policy places adapter requests. Default PolicyBounded; the others are for comparisons.
	Policy Policy
	// Tenants authenticates API keys and applies limits; nil serves everyone.
	Tenants *Tenants
	// AdminToken guards the admin routes (Bearer), which go to every worker with the same
	// token. Empty: the admin routes answer 403.
	AdminToken string
	// MaxAttempts bounds the workers tried for one request. Default 3.
	MaxAttempts int
	// RetryBudget is the fraction of extra requests retries may add. Default 0.2.
	RetryBudget float64
	// EjectAfter consecutive failures take a worker out of rotation for EjectFor.
	// Defaults 3 and 10 s.
	EjectAfter int
	EjectFor   time.Duration
	// UpstreamTimeout bounds connecting and waiting for a worker's response headers.
	// Default 5 minutes (a queued request may wait long for its first byte).
	UpstreamTimeout time.Duration
}

func (c *Config) validate() error {
	if c.BalanceFactor == 0 {
		c.BalanceFactor = 1.25
	}
	if c.Policy == "" {
		c.Policy = PolicyBounded
	}
	if _, err := ParsePolicy(string(c.Policy)); err != nil {
		return err
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	if c.RetryBudget == 0 {
		c.RetryBudget = 0.2
	}
	if c.EjectAfter == 0 {
		c.EjectAfter = 3
	}
	if c.EjectFor == 0 {
		c.EjectFor = 10 * time.Second
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = 5 * time.Minute
	}
	if c.MaxAttempts < 1 || c.RetryBudget < 0 || c.EjectAfter < 1 || c.EjectFor < 0 || c.UpstreamTimeout < 0 {
		return errors.New("router: invalid limits in config")
	}
	return nil
}

// Router is safe for concurrent use.
type Router struct {
	cfg  Config
	ring *hashring.Ring

	mu      sync.RWMutex
	workers map[string]*upstream

	budget  retryBudget
	metrics *metrics
	rr      atomic.Uint64 // PolicyRoundRobin's counter
}

// upstream is one worker.
type upstream struct {
	id, addr string
	client   *fasthttp.HostClient
	fails    atomic.Int32
	ejected  atomic.Int64 // unix nanoseconds until which the worker gets no requests
	resident atomic.Pointer[[]string]
	draining atomic.Bool
}

// New returns a router with no workers.
func New(cfg Config) (*Router, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ring, err := hashring.New(hashring.Config{BalanceFactor: cfg.BalanceFactor})
	if err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, ring: ring, workers: map[string]*upstream{}}
	r.budget.ratio, r.budget.tokens = cfg.RetryBudget, retryBurst
	r.metrics = newMetrics(r)
	return r, nil
}

// SetWorker adds a worker (or changes its address or capacity): membership's join and update.
func (r *Router) SetWorker(id, addr string, capacity int) {
	r.mu.Lock()
	u, ok := r.workers[id]
	if !ok || u.addr != addr {
		u = &upstream{id: id, addr: addr, client: &fasthttp.HostClient{
			Addr: addr, StreamResponseBody: true, MaxIdleConnDuration: time.Minute,
			ReadTimeout: 0, WriteTimeout: r.cfg.UpstreamTimeout, MaxConns: 4096,
		}}
		r.workers[id] = u
	}
	r.mu.Unlock()
	r.ring.Set(id, capacity)
}

// RemoveWorker forgets a worker: membership's leave.
func (r *Router) RemoveWorker(id string) {
	r.mu.Lock()
	delete(r.workers, id)
	r.mu.Unlock()
	r.ring.Remove(id)
}

// Report applies a worker's load report.
func (r *Router) Report(id string, inflight int, adapters []string, draining bool) {
	u := r.worker(id)
	if u == nil {
		return
	}
	a := slices.Clone(adapters)
	u.resident.Store(&a)
	u.draining.Store(draining)
	r.ring.Report(id, int64(inflight))
}

func (r *Router) worker(id string) *upstream {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.workers[id]
}

// usable says whether a worker may get new requests: known, not ejected, not draining.
func (r *Router) usable(id string) bool {
	u := r.worker(id)
	return u != nil && !u.draining.Load() && time.Now().UnixNano() >= u.ejected.Load()
}

// failed counts a failure; enough in a row eject the worker for a while.
func (r *Router) failed(u *upstream) {
	if n := u.fails.Add(1); int(n) >= r.cfg.EjectAfter {
		u.ejected.Store(time.Now().Add(r.cfg.EjectFor).UnixNano())
		u.fails.Store(0)
		r.metrics.ejections.Inc()
	}
}

// retryBudget lets retries add at most ratio extra requests (plus a small burst).
type retryBudget struct {
	mu     sync.Mutex
	ratio  float64
	tokens float64
}

const retryBurst = 10

func (b *retryBudget) request() {
	b.mu.Lock()
	b.tokens = min(b.tokens+b.ratio, retryBurst)
	b.mu.Unlock()
}

func (b *retryBudget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Workers is the number of workers the router knows.
func (r *Router) Workers() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.workers)
}
