// Package adapterstore resolves adapter IDs to checked PEFT adapters: from a local directory
// or a Hugging Face Hub-compatible endpoint, through a host-memory tier and a disk tier (the
// device tier belongs to the engine). Concurrent requests for one cold adapter cause one load;
// a failed load is remembered for a short time.
package adapterstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

// Config sets up a Store. Zero fields take the documented defaults.
type Config struct {
	Root           string        // local adapter directory. Required.
	CacheDir       string        // hub download cache; hf:// IDs fail without it
	Endpoint       string        // hub endpoint. Default https://huggingface.co
	Token          string        // optional bearer token for the hub
	MaxFileBytes   int64         // per downloaded file. Default 2 GiB
	IdleTimeout    time.Duration // a download receiving nothing this long fails. Default 30 s
	HostCacheBytes int64         // parsed adapters kept in memory. Default 4 GiB
	DiskCacheBytes int64         // downloaded adapters kept on disk. Default 32 GiB
	FailureTTL     time.Duration // how long a failed load is remembered. Default 30 s
	Base           peft.Base     // the base model's layers and modules
	MaxRank        int           // largest LoRA rank accepted. Default 64
	Client         *http.Client  // default: one that refuses redirects to other hosts
	// Observe, if set, sees every Get that hit or loaded: tier "host", "disk" or "hub";
	// result "hit", "ok" or "error".
	Observe func(tier, result string, d time.Duration)
}

func (c *Config) validate() error {
	if c.Root == "" {
		return errors.New("adapterstore: Root is required")
	}
	if c.Endpoint == "" {
		c.Endpoint = "https://huggingface.co"
	}
	c.Endpoint = strings.TrimSuffix(c.Endpoint, "/")
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = 2 << 30
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.HostCacheBytes == 0 {
		c.HostCacheBytes = 4 << 30
	}
	if c.DiskCacheBytes == 0 {
		c.DiskCacheBytes = 32 << 30
	}
	if c.FailureTTL == 0 {
		c.FailureTTL = 30 * time.Second
	}
	if c.MaxRank == 0 {
		c.MaxRank = 64
	}
	if c.MaxFileBytes < 0 || c.IdleTimeout < 0 || c.HostCacheBytes < 0 || c.DiskCacheBytes < 0 || c.FailureTTL < 0 || c.MaxRank < 0 {
		return errors.New("adapterstore: negative limit in config")
	}
	return nil
}

// Store is safe for concurrent use.
type Store struct {
	cfg  Config
	root *os.Root
	abs  string // Root as an absolute path, kept out of client messages
	hub  *hub

	mu       sync.Mutex
	host     *lru               // id → parsed adapter
	aliases  map[string]string  // registered name → path (ID under Root or hf://)
	failures map[string]failure // id → recent failure
	flights  map[string]*flight // loads in progress
	known    []string           // cached directory scan
	scanned  time.Time
}

type failure struct {
	err   error
	until time.Time
}

type flight struct {
	done chan struct{}
	a    *peft.Adapter
	err  error
}

// Stats is the size of the caches.
type Stats struct {
	HostBytes    int64
	HostAdapters int
	DiskBytes    int64
}

// New opens the adapter directory.
func New(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("adapterstore: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("adapterstore: adapters directory: %w", err)
	}
	s := &Store{cfg: cfg, root: root, abs: abs, host: newLRU(cfg.HostCacheBytes),
		aliases: map[string]string{}, failures: map[string]failure{}, flights: map[string]*flight{}}
	if cfg.CacheDir != "" {
		if s.hub, err = newHub(&s.cfg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Get returns the adapter, loading it if needed. A cancelled ctx returns at once without
// cancelling a load other callers wait for.
func (s *Store) Get(ctx context.Context, id string) (*peft.Adapter, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	start := time.Now()
	s.mu.Lock()
	if a, ok := s.host.get(id); ok {
		s.mu.Unlock()
		s.observe("host", "hit", start)
		return a, nil
	}
	if f, ok := s.failures[id]; ok && time.Now().Before(f.until) {
		s.mu.Unlock()
		return nil, f.err
	}
	fl, ok := s.flights[id]
	if !ok {
		fl = &flight{done: make(chan struct{})}
		s.flights[id] = fl
		path := s.pathOf(id)
		go s.load(id, path, fl)
	}
	s.mu.Unlock()
	select {
	case <-fl.done:
		return fl.a, fl.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pathOf resolves a registered name to its path; s.mu is held.
func (s *Store) pathOf(id string) string {
	if p, ok := s.aliases[id]; ok {
		return p
	}
	return id
}

func (s *Store) load(id, path string, fl *flight) {
	start := time.Now()
	tier := "disk"
	if strings.HasPrefix(path, hubScheme) {
		tier = "hub"
	}
	fl.a, fl.err = s.loadPath(path)
	s.mu.Lock()
	delete(s.flights, id)
	if fl.err != nil {
		s.failures[id] = failure{err: fl.err, until: time.Now().Add(s.cfg.FailureTTL)}
	} else if s.pathOf(id) == path { // not re-registered meanwhile
		s.host.put(id, fl.a, fl.a.Bytes())
	}
	s.mu.Unlock()
	close(fl.done)
	result := "ok"
	if fl.err != nil {
		result = "error"
	}
	s.observe(tier, result, start)
}

func (s *Store) observe(tier, result string, start time.Time) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(tier, result, time.Since(start))
	}
}

// loadPath parses the adapter at a local ID path or an hf:// path.
func (s *Store) loadPath(path string) (*peft.Adapter, error) {
	dir := ""
	if rest, ok := strings.CutPrefix(path, hubScheme); ok {
		if s.hub == nil {
			return nil, fmt.Errorf("%w: %s: no hub cache directory is configured", ErrFetch, path)
		}
		repo, rev, err := parseHub(rest)
		if err != nil {
			return nil, err
		}
		if dir, err = s.hub.fetch(repo, rev); err != nil {
			return nil, err
		}
	} else {
		var err error
		if dir, err = s.localDir(path); err != nil {
			return nil, err
		}
	}
	a, err := peft.Load(dir, s.cfg.Base, peft.Options{MaxRank: s.cfg.MaxRank})
	if err != nil {
		return nil, &badAdapter{msg: ErrBadAdapter.Error() + ": " + s.clean(err.Error()), err: err}
	}
	return a, nil
}

// badAdapter is ErrBadAdapter and the loader's error, with a message free of server paths.
type badAdapter struct {
	msg string
	err error
}

func (e *badAdapter) Error() string   { return e.msg }
func (e *badAdapter) Unwrap() []error { return []error{ErrBadAdapter, e.err} }

// localDir checks, through os.Root (which refuses any path or symlink leaving Root), that the
// adapter's files are inside Root, and returns its directory.
func (s *Store) localDir(id string) (string, error) {
	if err := validPath(id); err != nil {
		return "", err
	}
	if _, err := s.root.Stat(filepath.FromSlash(id)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return "", fmt.Errorf("%w: %s is not inside the adapters directory", ErrInvalidID, id)
	}
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"} {
		_, err := s.root.Stat(filepath.Join(filepath.FromSlash(id), f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%w: %s/%s is not inside the adapters directory", ErrInvalidID, id, f)
		}
	}
	return filepath.Join(s.abs, filepath.FromSlash(id)), nil
}

// clean removes the server's directories from a message meant for clients.
func (s *Store) clean(msg string) string {
	msg = strings.ReplaceAll(msg, s.abs+string(filepath.Separator), "")
	if s.hub != nil {
		msg = strings.ReplaceAll(msg, s.hub.dir+string(filepath.Separator), "")
	}
	return msg
}

// Register makes name resolve to path (an ID under Root or hf://...) after loading it, as
// vLLM's load_lora_adapter does.
func (s *Store) Register(ctx context.Context, name, path string) error {
	if err := validPath(name); err != nil {
		return err
	}
	if err := ValidID(path); err != nil {
		return err
	}
	a, err := s.loadPath(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aliases[name] = path
	delete(s.failures, name)
	s.host.remove(name)
	s.host.put(name, a, a.Bytes())
	return ctx.Err()
}

// Unregister removes a registered name and its host copy.
func (s *Store) Unregister(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.aliases[name]; !ok {
		return fmt.Errorf("%w: %s was not loaded with load_lora_adapter", ErrNotFound, name)
	}
	delete(s.aliases, name)
	delete(s.failures, name)
	s.host.remove(name)
	return nil
}

// Known lists registered names and the adapter directories under Root (name and org/name
// holding adapter_config.json), sorted. The directory scan is cached for a few seconds.
func (s *Store) Known() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.scanned) > 5*time.Second {
		s.known, s.scanned = s.scan(), time.Now()
	}
	out := slices.Clone(s.known)
	for name := range s.aliases {
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (s *Store) scan() []string {
	var ids []string
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		entries, err := os.ReadDir(filepath.Join(s.abs, prefix))
		if err != nil {
			return
		}
		for _, e := range entries {
			id := filepath.ToSlash(filepath.Join(prefix, e.Name()))
			if !e.IsDir() || validPath(id) != nil {
				continue
			}
			if _, err := s.root.Stat(filepath.Join(filepath.FromSlash(id), "adapter_config.json")); err == nil {
				ids = append(ids, id)
			} else if depth == 1 {
				walk(id, 2)
			}
		}
	}
	walk("", 1)
	return ids
}

// Stats reports the cache sizes.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	st := Stats{HostBytes: s.host.bytes, HostAdapters: s.host.len()}
	s.mu.Unlock()
	if s.hub != nil {
		st.DiskBytes = s.hub.diskBytes()
	}
	return st
}
