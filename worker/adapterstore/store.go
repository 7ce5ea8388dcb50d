// Package adapterstore resolves adapter IDs to checked PEFT adapters: from a local directory
// or a Hugging Face Hub-compatible endpoint, through a host-memory tier and a disk tier (the
// device tier belongs to the engine). Concurrent requests for one cold adapter cause one load;
// a failed load is remembered for a short time.
package adapterstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

// Store is safe for concurrent use. Adapters are loaded and cached under their source: the
// ID itself, hf://org/name@revision for the hub, or the path a registered name points to.
type Store struct {
	cfg   Config
	local *local
	hub   *hub // nil without CacheDir

	mu       sync.Mutex
	host     *lru               // source → parsed adapter
	aliases  map[string]string  // registered name → source
	failures map[string]failure // source → recent failure
	flights  map[string]*flight // source → load in progress

	scanMu   sync.Mutex // guards the directory scan; a scan does not hold mu
	known    []string
	scanned  time.Time
	scanning bool
	scanTTL  time.Duration // knownTTL; shorter in tests
}

// Stats is the size of the caches.
type Stats struct {
	HostBytes    int64 // Adapter.Bytes() of the adapters in memory
	HostAdapters int64
	DiskBytes    int64 // size of the downloaded files in CacheDir
	DiskAdapters int64
}

type failure struct {
	err   error
	until time.Time
}

// flight is one load; its waiters read a and err after done is closed.
type flight struct {
	done chan struct{}
	a    *peft.Adapter
	err  error
}

const (
	// maxFailures bounds the negative cache: beyond it, expired entries are swept and, if
	// none expired, a failure is not remembered (a retry costs less than unbounded memory).
	maxFailures = 4096
	// knownTTL is how old Known's directory scan may be before it starts another.
	knownTTL = 5 * time.Second
)

// New opens the adapter directory and the hub cache.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l, err := openLocal(cfg.Root)
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, local: l, host: newLRU(cfg.HostCacheBytes),
		aliases: map[string]string{}, failures: map[string]failure{}, flights: map[string]*flight{}, scanTTL: knownTTL}
	if cfg.CacheDir != "" {
		if s.hub, err = newHub(&s.cfg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Get returns the adapter, loading it if needed. A cancelled ctx returns ctx.Err() at once
// without cancelling the load, which other callers may be waiting for; a ctx cancelled
// before the call starts nothing.
func (s *Store) Get(ctx context.Context, id string) (*peft.Adapter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	src, err := source(id)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	s.mu.Lock()
	if p, ok := s.aliases[id]; ok {
		src = p
	}
	if a, ok := s.host.get(src); ok {
		s.mu.Unlock()
		s.observe("host", "hit", start)
		return a, nil
	}
	if err := s.failed(src); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	fl := s.join(src)
	s.mu.Unlock()
	return fl.wait(ctx)
}

func (fl *flight) wait(ctx context.Context) (*peft.Adapter, error) {
	select {
	case <-fl.done:
		return fl.a, fl.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// failed returns the remembered failure of src, if any; s.mu is held.
func (s *Store) failed(src string) error {
	f, ok := s.failures[src]
	if !ok {
		return nil
	}
	if time.Now().Before(f.until) {
		return f.err
	}
	delete(s.failures, src)
	return nil
}

// remember records a failed load; s.mu is held.
func (s *Store) remember(src string, err error) {
	if len(s.failures) >= maxFailures {
		now := time.Now()
		maps.DeleteFunc(s.failures, func(_ string, f failure) bool { return now.After(f.until) })
	}
	if len(s.failures) < maxFailures {
		s.failures[src] = failure{err: err, until: time.Now().Add(s.cfg.FailureTTL)}
	}
}

// join returns the load of src in progress, starting one if there is none; s.mu is held.
// The load runs on its own so that no caller's context can cancel it.
func (s *Store) join(src string) *flight {
	if fl, ok := s.flights[src]; ok {
		return fl
	}
	fl := &flight{done: make(chan struct{})}
	s.flights[src] = fl
	go s.load(src, fl)
	return fl
}

func (s *Store) load(src string, fl *flight) {
	start := time.Now()
	a, tier, err := s.loadSource(src)
	if err == nil && s.cfg.Delay != nil {
		time.Sleep(s.cfg.Delay(tier, a))
	}
	s.mu.Lock()
	delete(s.flights, src)
	if err != nil {
		s.remember(src, err)
	} else {
		delete(s.failures, src) // a Register may have loaded it despite a remembered failure
		s.host.put(src, a, a.Bytes())
	}
	s.mu.Unlock()
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.observe(tier, result, start) // before the waiters return, so that metrics are in order
	fl.a, fl.err = a, err
	close(fl.done)
}

func (s *Store) observe(tier, result string, start time.Time) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(tier, result, time.Since(start))
	}
}

// loadSource parses the adapter of a canonical source and says which tier it came from.
func (s *Store) loadSource(src string) (*peft.Adapter, string, error) {
	rest, ok := strings.CutPrefix(src, hubScheme)
	if !ok {
		dir, err := s.local.adapterDir(src)
		if err != nil {
			return nil, "disk", err
		}
		a, err := parse(dir, src, s.cfg.Base, peft.Options{MaxRank: s.cfg.MaxRank, BF16: s.cfg.BF16})
		return a, "disk", err
	}
	if s.hub == nil {
		return nil, "hub", fmt.Errorf("%w: %s: hub adapters are not enabled on this server", ErrInvalidID, src)
	}
	ref, err := parseHub(rest)
	if err != nil {
		return nil, "hub", err
	}
	dir, downloaded, release, err := s.hub.fetch(ref)
	tier := "disk"
	if downloaded {
		tier = "hub"
	}
	if err != nil {
		return nil, tier, err
	}
	defer release()
	a, err := parse(dir, src, s.cfg.Base, peft.Options{MaxRank: s.cfg.MaxRank, BF16: s.cfg.BF16})
	return a, tier, err
}

// Register makes name (a path ID, not hf://) resolve to path (an ID under Root or
// hf://...), as vLLM's load_lora_adapter does. It loads the adapter now, again even if it is
// cached or its last load failed, and registers name only if that succeeds. A cancelled ctx
// returns at once and registers nothing; the load goes on.
func (s *Store) Register(ctx context.Context, name, path string) error {
	if err := validPath(name); err != nil {
		return err
	}
	src, err := source(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	fl := s.join(src) // the host tier keeps serving the old copy until this load replaces it
	s.mu.Unlock()
	if _, err := fl.wait(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.aliases[name] = src
	s.mu.Unlock()
	return nil
}

// Unregister removes a registered name; the adapter it pointed to leaves the host tier.
func (s *Store) Unregister(name string) error {
	if err := validPath(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src, ok := s.aliases[name]
	if !ok {
		return fmt.Errorf("%w: %s was not loaded with load_lora_adapter", ErrNotFound, name)
	}
	delete(s.aliases, name)
	s.host.remove(src)
	delete(s.failures, name) // Get(name) now loads the directory name, if there is one
	return nil
}

// Known lists the registered names and the adapter directories under Root (name and
// org/name holding adapter_config.json), sorted. Only the first call waits for a directory
// scan; later ones use the last scan and, once it is a few seconds old, start another in the
// background (a scan of 1000 adapters takes tens of milliseconds).
func (s *Store) Known() []string {
	s.scanMu.Lock()
	switch {
	case s.scanned.IsZero():
		s.known, s.scanned = s.local.scan(), time.Now()
	case time.Since(s.scanned) > s.scanTTL && !s.scanning:
		s.scanning = true
		go s.rescan()
	}
	ids := slices.Clone(s.known)
	s.scanMu.Unlock()
	s.mu.Lock()
	for name := range s.aliases {
		ids = append(ids, name)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	return slices.Compact(ids)
}

func (s *Store) rescan() {
	ids := s.local.scan()
	s.scanMu.Lock()
	s.known, s.scanned, s.scanning = ids, time.Now(), false
	s.scanMu.Unlock()
}

// Stats reports the cache sizes.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	st := Stats{HostBytes: s.host.bytes, HostAdapters: int64(s.host.len())}
	s.mu.Unlock()
	if s.hub != nil {
		st.DiskBytes, st.DiskAdapters = s.hub.disk.size()
	}
	return st
}
