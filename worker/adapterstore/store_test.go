package adapterstore

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/testutil"
	"github.com/lorafleet/lorafleet/pkg/peft"
)

func TestConfigDefaults(t *testing.T) {
	f := newFixture(t)
	c := Config{Root: "r", Base: f.base}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Config{Root: "r", Base: f.base, Endpoint: "https://huggingface.co", MaxFileBytes: 2 << 30,
		IdleTimeout: 30 * time.Second, HostCacheBytes: 4 << 30, DiskCacheBytes: 32 << 30,
		FailureTTL: 30 * time.Second, MaxRank: 64}
	if c.Endpoint != want.Endpoint || c.MaxFileBytes != want.MaxFileBytes || c.IdleTimeout != want.IdleTimeout ||
		c.HostCacheBytes != want.HostCacheBytes || c.DiskCacheBytes != want.DiskCacheBytes ||
		c.FailureTTL != want.FailureTTL || c.MaxRank != want.MaxRank {
		t.Errorf("defaults %+v", c)
	}
	for name, bad := range map[string]Config{
		"no Root":        {Base: f.base},
		"no Base":        {Root: "r"},
		"bad Endpoint":   {Root: "r", Base: f.base, Endpoint: "ftp://x"},
		"no host":        {Root: "r", Base: f.base, Endpoint: "https://"},
		"negative limit": {Root: "r", Base: f.base, HostCacheBytes: -1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, bad)
		}
	}
	if _, err := New(Config{Root: filepath.Join(t.TempDir(), "missing"), Base: f.base}); err == nil {
		t.Error("New accepted a Root that does not exist")
	}
}

// TestOneLoadForConcurrentGets: 32 Gets of a cold adapter make one download; a caller that
// gives up returns at once without failing the others.
func TestOneLoadForConcurrentGets(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	gate := make(chan struct{})
	h.special = func(http.ResponseWriter, *http.Request) bool { <-gate; return false }
	var obs observer
	s := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir, c.Observe = h.URL, t.TempDir(), obs.observe })

	ctx, cancel := context.WithCancel(context.Background())
	quitter := make(chan error, 1)
	go func() { _, err := s.Get(ctx, "hf://org/sql"); quitter <- err }()
	testutil.Eventually(t, 5*time.Second, "the first hub request", func() bool { return h.count() > 0 })
	adapters := make([]*peft.Adapter, 32)
	var wg sync.WaitGroup
	for i := range adapters {
		wg.Go(func() {
			var err error
			if adapters[i], err = s.Get(context.Background(), "hf://org/sql"); err != nil {
				t.Error(err)
			}
		})
	}
	cancel()
	if err := <-quitter; !errors.Is(err, context.Canceled) {
		t.Errorf("the caller that gave up: %v", err)
	}
	close(gate)
	wg.Wait()
	for _, a := range adapters {
		if a == nil || a != adapters[0] {
			t.Fatal("the callers got different adapters")
		}
	}
	if n := h.count(); n != 2 { // adapter_config.json + adapter_model.safetensors
		t.Errorf("%d hub requests, want 2", n)
	}
	if got := obs.take(); strings.Count(got, "hub/ok") != 1 || strings.Contains(got, "error") {
		t.Errorf("observed %q, want one hub/ok", got)
	}
	if _, err := s.Get(ctx, "sql"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.flights) != 0 {
		t.Error("a Get with a cancelled context started a load")
	}
}

// TestFailureMemory: a failed load is returned again without retrying until FailureTTL has
// passed.
func TestFailureMemory(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	var down atomic.Bool
	down.Store(true)
	h.special = func(w http.ResponseWriter, r *http.Request) bool {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
		return down.Load()
	}
	const ttl = 300 * time.Millisecond
	s := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir, c.FailureTTL = h.URL, t.TempDir(), ttl })
	start := time.Now()
	_, first := s.Get(context.Background(), "hf://org/tiny")
	if !errors.Is(first, ErrFetch) {
		t.Fatalf("hub down: %v", first)
	}
	down.Store(false)
	if _, err := s.Get(context.Background(), "hf://org/tiny@main"); err != first || h.count() != 1 {
		t.Errorf("within FailureTTL: %v (first %v), %d hub requests", err, first, h.count())
	}
	testutil.Eventually(t, 5*time.Second, "a retry after FailureTTL", func() bool {
		_, err := s.Get(context.Background(), "hf://org/tiny")
		return err == nil
	})
	if took := time.Since(start); took < ttl {
		t.Errorf("retried after %v, before FailureTTL %v", took, ttl)
	}
}

func TestRegister(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	var obs observer
	s := f.store(t, func(c *Config) {
		c.Endpoint, c.CacheDir, c.FailureTTL, c.Observe = h.URL, t.TempDir(), time.Hour, obs.observe
	})
	ctx := context.Background()
	if err := s.Register(ctx, "alias", "sql"); err != nil {
		t.Fatal(err)
	}
	a, err := s.Get(ctx, "alias")
	if b, _ := s.Get(ctx, "sql"); err != nil || a != b {
		t.Errorf("Get(alias): %v; same adapter as sql: %v", err, a == b)
	}
	if got := obs.take(); got != "disk/ok host/hit host/hit" {
		t.Errorf("observed %q, want one load", got)
	}
	// Registering again reloads, so that an updated directory is picked up.
	if err := s.Register(ctx, "alias2", "sql"); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Get(ctx, "alias"); b == a || obs.take() != "disk/ok host/hit" {
		t.Error("Register did not load the adapter again")
	}
	if err := s.Register(ctx, "alias", "hf://org/chat"); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Get(ctx, "alias"); err != nil || a.MaxRank() != 16 {
		t.Errorf("re-pointed alias: %v", err)
	}

	for _, c := range []struct {
		name, path string
		want       error
	}{
		{"x", "../../etc", ErrInvalidID},
		{"hf://org/x", "sql", ErrInvalidID},
		{"../x", "sql", ErrInvalidID},
		{"x", "hf://org", ErrInvalidID},
		{"missing", "missing", ErrNotFound},
		{"nohub", "hf://org/nope", ErrNotFound},
	} {
		if err := s.Register(ctx, c.name, c.path); !errors.Is(err, c.want) {
			t.Errorf("Register(%q, %q) = %v, want %v", c.name, c.path, err, c.want)
		}
	}
	if _, err := s.Get(ctx, "nohub"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed Register left the name registered: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Register(cancelled, "late", "tiny"); !errors.Is(err, context.Canceled) {
		t.Errorf("Register with a cancelled context: %v", err)
	}

	if err := s.Unregister("alias"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "alias"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Unregister: %v", err)
	}
	if err := s.Unregister("alias"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Unregister: %v", err)
	}
	if err := s.Unregister("../x"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Unregister of an invalid name: %v", err)
	}
}

// TestRegisterClearsFailures: Register and Unregister of a name forget its failed load.
func TestRegisterClearsFailures(t *testing.T) {
	f := newFixture(t)
	// Nothing stays in the host tier, so every Get loads or finds the remembered failure.
	s := f.store(t, func(c *Config) { c.FailureTTL, c.HostCacheBytes = time.Hour, 1 })
	ctx := context.Background()
	for _, name := range []string{"later", "back"} {
		if _, err := s.Get(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%q) before its directory exists: %v", name, err)
		}
		copyDir(t, f.adapter("tiny"), filepath.Join(f.root, name))
		if _, err := s.Get(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%q): the failure was not remembered: %v", name, err)
		}
	}
	if err := s.Register(ctx, "later", "later"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "later"); err != nil {
		t.Errorf("after Register: %v", err)
	}
	if err := s.Register(ctx, "back", "sql"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unregister("back"); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Get(ctx, "back"); err != nil || a.MaxRank() != 4 {
		t.Errorf("the directory back after Unregister: %v", err)
	}
}

// TestHostTierEviction: parsed adapters beyond HostCacheBytes leave memory, least recently
// used first.
func TestHostTierEviction(t *testing.T) {
	f := newFixture(t)
	tiny, sql, chat := f.load(t, "tiny").Bytes(), f.load(t, "sql").Bytes(), f.load(t, "chat").Bytes()
	if chat > sql {
		t.Fatalf("the test needs chat (%d bytes) no larger than sql (%d)", chat, sql)
	}
	var obs observer
	s := f.store(t, func(c *Config) { c.HostCacheBytes, c.Observe = tiny+sql, obs.observe })
	ctx := context.Background()
	for _, id := range []string{"tiny", "sql", "tiny", "chat", "tiny", "sql"} {
		if _, err := s.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// chat pushed out sql (tiny was used since); sql then pushed out chat.
	if got, want := obs.take(), "disk/ok disk/ok host/hit disk/ok host/hit disk/ok"; got != want {
		t.Errorf("observed %q, want %q", got, want)
	}
	if st := s.Stats(); st.HostAdapters != 2 || st.HostBytes != tiny+sql {
		t.Errorf("stats %+v, want tiny and sql (%d bytes)", st, tiny+sql)
	}
	big := f.store(t, func(c *Config) { c.HostCacheBytes = tiny - 1 })
	if _, err := big.Get(ctx, "tiny"); err != nil || big.Stats().HostAdapters != 0 {
		t.Errorf("an adapter larger than HostCacheBytes: %v, stats %+v", err, big.Stats())
	}
}

// With BF16 the host tier holds adapters in bf16: in half the bytes, so twice as many fit.
func TestHostTierInBF16(t *testing.T) {
	f := newFixture(t)
	tiny, sql := f.load(t, "tiny").Bytes(), f.load(t, "sql").Bytes()
	s := f.store(t, func(c *Config) { c.HostCacheBytes, c.BF16 = (tiny+sql)/2, true })
	ctx := context.Background()
	for _, id := range []string{"tiny", "sql"} {
		a, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for tg, w := range a.Weights {
			if w.A != nil || len(w.A16) != w.Rank*w.In || len(w.B16) != w.Out*w.Rank {
				t.Fatalf("%s %+v: not held in bf16", id, tg)
			}
		}
	}
	if st := s.Stats(); st.HostAdapters != 2 || st.HostBytes != (tiny+sql)/2 {
		t.Errorf("stats %+v, want both adapters in %d bytes", st, (tiny+sql)/2)
	}
}

// Delay (the simulated backend's modeled load time) holds a load back, and only a load:
// host hits are not delayed.
func TestDelayHoldsLoads(t *testing.T) {
	f := newFixture(t)
	var tiers []string
	s := f.store(t, func(c *Config) {
		c.Delay = func(tier string, a *peft.Adapter) time.Duration {
			tiers = append(tiers, tier) // loads of one ID are serialized by the flight
			return 50 * time.Millisecond
		}
	})
	ctx := context.Background()
	start := time.Now()
	if _, err := s.Get(ctx, "tiny"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("a delayed load returned after %v", took)
	}
	if _, err := s.Get(ctx, "tiny"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tiers, []string{"disk"}) {
		t.Errorf("delay asked for tiers %v, want one disk load", tiers)
	}
}

// TestDiskTierEviction: downloads beyond DiskCacheBytes leave the disk, least recently used
// first, never one being read.
func TestDiskTierEviction(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	cache := t.TempDir()
	tiny, sql, chat := f.fileBytes(t, "tiny"), f.fileBytes(t, "sql"), f.fileBytes(t, "chat")
	store := func(limit int64) *Store {
		return f.store(t, func(c *Config) { c.Endpoint, c.CacheDir, c.DiskCacheBytes = h.URL, cache, limit })
	}
	cached := func(name string) bool {
		_, err := os.Stat(filepath.Join(cache, "org", name+"@main", "manifest.json"))
		return err == nil
	}
	ctx := context.Background()
	limit := sql + chat + 100 // room for sql and chat, or sql and tiny, not all three
	s := store(limit)
	for _, id := range []string{"hf://org/tiny", "hf://org/chat"} {
		if _, err := s.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// Read tiny from disk (a new store: empty host tier, index from the cache directory).
	s = store(limit)
	if _, err := s.Get(ctx, "hf://org/tiny"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "hf://org/sql"); err != nil {
		t.Fatal(err)
	}
	if !cached("tiny") || !cached("sql") || cached("chat") {
		t.Errorf("cached tiny %v sql %v chat %v; want chat evicted", cached("tiny"), cached("sql"), cached("chat"))
	}
	if st := s.Stats(); st.DiskBytes != tiny+sql || st.DiskAdapters != 2 {
		t.Errorf("stats %+v, want %d disk bytes", st, tiny+sql)
	}

	// With room for nothing, a download in use stays until released.
	s = store(1)
	if st := s.Stats(); st.DiskAdapters != 0 || cached("tiny") || cached("sql") {
		t.Errorf("a smaller DiskCacheBytes did not evict at start: %+v", st)
	}
	_, _, release, err := s.hub.fetch(hubRef{repo: "org/sql", rev: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "hf://org/chat"); err != nil {
		t.Fatal(err)
	}
	if !cached("sql") || cached("chat") {
		t.Errorf("while sql is in use: cached sql %v chat %v", cached("sql"), cached("chat"))
	}
	release()
	if cached("sql") {
		t.Error("sql stayed after its release")
	}
}

func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"repo":"org/a","revision":"main","files":{"adapter_config.json":{"sha256":"` + strings.Repeat("ab", 32) +
		`","size":3},"adapter_model.safetensors":{"sha256":"` + strings.Repeat("01", 32) + `","size":4}},"bytes":7}`))
	f.Add([]byte(`{"files":{"adapter_config.json":{"size":-1}},"bytes":-1}`))
	f.Add([]byte(`{"files":{"adapter_config.json":{"sha256":"zz","size":9223372036854775807}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			return
		}
		var total int64
		for _, file := range hubFiles {
			s := m.Files[file]
			if len(s.SHA256) != 64 || s.Size < 0 {
				t.Fatalf("accepted %+v for %s", s, file)
			}
			total += s.Size
		}
		if total != m.Bytes || total < 0 {
			t.Fatalf("accepted bytes %d for files adding up to %d", m.Bytes, total)
		}
	})
}
