package adapterstore

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

type fixture struct {
	g    *golden.File
	base peft.Base
	root string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	g, err := golden.Load("tiny-llama")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := model.LoadConfig(g.ModelDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, a := range g.Adapters() {
		if err := os.CopyFS(filepath.Join(root, a), os.DirFS(g.AdapterDir(a))); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{g: g, base: cfg.PEFTBase(), root: root}
}

func (f *fixture) store(t *testing.T, mod func(*Config)) *Store {
	t.Helper()
	cfg := Config{Root: f.root, Base: f.base, CacheDir: t.TempDir()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocalAdapters(t *testing.T) {
	f := newFixture(t)
	if err := os.MkdirAll(filepath.Join(f.root, "org"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(f.root, "org", "sql2"), os.DirFS(f.g.AdapterDir("sql"))); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.CopyFS(filepath.Join(outside, "evil"), os.DirFS(f.g.AdapterDir("sql"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "evil"), filepath.Join(f.root, "escape")); err != nil {
		t.Fatal(err)
	}
	s := f.store(t, nil)
	for _, id := range []string{"sql", "org/sql2", "tiny"} {
		a, err := s.Get(context.Background(), id)
		if err != nil || len(a.Weights) == 0 {
			t.Errorf("Get(%q) = %v, %v", id, a, err)
		}
	}
	for id, want := range map[string]error{
		"../x": ErrInvalidID, "/etc": ErrInvalidID, "a/../../b": ErrInvalidID, "a/./b": ErrInvalidID,
		".hidden": ErrInvalidID, "a\\b": ErrInvalidID, "a/b/c": ErrInvalidID, "": ErrInvalidID, "x\x00y": ErrInvalidID,
		"escape": ErrInvalidID, "missing": ErrNotFound, "org/missing": ErrNotFound,
	} {
		if _, err := s.Get(context.Background(), id); !errors.Is(err, want) {
			t.Errorf("Get(%q) = %v, want %v", id, err, want)
		}
	}
	got := strings.Join(s.Known(), ",")
	if got != "chat,org/sql2,sql,tiny" {
		t.Errorf("Known() = %s", got)
	}
}

func TestBrokenAdaptersAreBadAndNameNoServerPath(t *testing.T) {
	f := newFixture(t)
	src := filepath.Join(f.root, "sql", "adapter_model.safetensors")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(f.root, "trunc"), os.DirFS(f.g.AdapterDir("sql"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "trunc", "adapter_model.safetensors"), data[:len(data)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	s := f.store(t, func(c *Config) { c.MaxRank = 8 })
	for id, want := range map[string]error{"trunc": peft.ErrWeightsFile, "chat": peft.ErrRankTooLarge} {
		_, err := s.Get(context.Background(), id)
		if !errors.Is(err, ErrBadAdapter) || !errors.Is(err, want) || strings.Contains(err.Error(), f.root) {
			t.Errorf("Get(%q) = %v, want ErrBadAdapter and %v without the server's path", id, err, want)
		}
	}
	if _, err := s.Get(context.Background(), "sql"); err != nil {
		t.Errorf("a good adapter after bad ones: %v", err)
	}
}

// hubServer serves the golden adapters in Hugging Face Hub layout and counts requests.
type hubServer struct {
	*httptest.Server
	requests atomic.Int64
	token    atomic.Value // last Authorization header
}

func startHub(t *testing.T, f *fixture, extra func(w http.ResponseWriter, r *http.Request) bool) *hubServer {
	t.Helper()
	h := &hubServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		h.token.Store(r.Header.Get("Authorization"))
		if extra != nil && extra(w, r) {
			return
		}
		// /{org}/{name}/resolve/{rev}/{file}
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if len(parts) != 5 || parts[0] != "org" || parts[2] != "resolve" || parts[3] != "main" && parts[3] != "v2" {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, filepath.Join(f.g.AdapterDir(parts[1]), parts[4]))
	}))
	t.Cleanup(h.Close)
	return h
}

func TestHubFetchCachesOnDisk(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f, nil)
	cache := t.TempDir()
	s := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir, c.Token = h.URL, cache, "secret" })
	a, err := s.Get(context.Background(), "hf://org/sql")
	if err != nil || len(a.Weights) == 0 {
		t.Fatalf("hub Get: %v", err)
	}
	if h.token.Load() != "Bearer secret" {
		t.Errorf("Authorization %q", h.token.Load())
	}
	b, err := os.ReadFile(filepath.Join(cache, "org", "sql@main", "manifest.json"))
	if err != nil || !strings.Contains(string(b), `"adapter_model.safetensors":"`) {
		t.Fatalf("manifest: %s %v", b, err)
	}
	// A new store (empty host tier) serves it from disk without the hub.
	before := h.requests.Load()
	s2 := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir = h.URL, cache })
	if _, err := s2.Get(context.Background(), "hf://org/sql"); err != nil || h.requests.Load() != before {
		t.Errorf("second store: %v, %d hub requests", err, h.requests.Load()-before)
	}
	// A corrupted cached file is noticed by its checksum and fetched again.
	st := filepath.Join(cache, "org", "sql@main", "adapter_model.safetensors")
	if err := os.WriteFile(st, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	s3 := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir = h.URL, cache })
	if _, err := s3.Get(context.Background(), "hf://org/sql"); err != nil || h.requests.Load() == before {
		t.Errorf("after corruption: %v, refetched: %v", err, h.requests.Load() != before)
	}
	if _, err := s3.Get(context.Background(), "hf://org/tiny@v2"); err != nil {
		t.Errorf("revision: %v", err)
	}
	if _, err := s3.Get(context.Background(), "hf://org/nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing repo: %v", err)
	}
}

func TestHubFailures(t *testing.T) {
	f := newFixture(t)
	stall := make(chan struct{})
	defer close(stall)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	h := startHub(t, f, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasPrefix(r.URL.Path, "/org/stall/"):
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("{"))
			w.(http.Flusher).Flush()
			<-stall
		case strings.HasPrefix(r.URL.Path, "/org/redirect/"):
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/org/pickle/"):
			if strings.HasSuffix(r.URL.Path, "adapter_model.bin") {
				w.Write([]byte("pickle"))
			} else if strings.HasSuffix(r.URL.Path, "adapter_config.json") {
				http.ServeFile(w, r, filepath.Join(f.g.AdapterDir("sql"), "adapter_config.json"))
			} else {
				http.NotFound(w, r)
			}
		case strings.HasPrefix(r.URL.Path, "/org/error/"):
			http.Error(w, "boom", http.StatusInternalServerError)
		default:
			return false
		}
		return true
	})
	s := f.store(t, func(c *Config) { c.Endpoint, c.IdleTimeout, c.MaxFileBytes = h.URL, 200*time.Millisecond, 4000 })
	start := time.Now()
	if _, err := s.Get(context.Background(), "hf://org/stall"); !errors.Is(err, ErrFetchTimeout) {
		t.Errorf("stalled download: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("stall detected after %v", took)
	}
	for id, want := range map[string]error{
		"hf://org/redirect": ErrFetch, "hf://org/error": ErrFetch, "hf://org/pickle": peft.ErrPickle,
		"hf://org/sql": ErrFetch, // larger than MaxFileBytes
	} {
		if _, err := s.Get(context.Background(), id); !errors.Is(err, want) {
			t.Errorf("Get(%q) = %v, want %v", id, err, want)
		}
	}
}

func TestOneLoadForConcurrentGetsAndFailureMemory(t *testing.T) {
	f := newFixture(t)
	var fail atomic.Bool
	h := startHub(t, f, func(w http.ResponseWriter, r *http.Request) bool {
		time.Sleep(20 * time.Millisecond) // let the callers pile up
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	s := f.store(t, func(c *Config) { c.Endpoint, c.FailureTTL = h.URL, time.Hour })
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if _, err := s.Get(context.Background(), "hf://org/sql"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := h.requests.Load(); n != 2 { // adapter_config.json + adapter_model.safetensors
		t.Errorf("32 concurrent Gets made %d hub requests, want 2", n)
	}
	fail.Store(true)
	if _, err := s.Get(context.Background(), "hf://org/tiny"); !errors.Is(err, ErrFetch) {
		t.Fatalf("hub down: %v", err)
	}
	before := h.requests.Load()
	if _, err := s.Get(context.Background(), "hf://org/tiny"); !errors.Is(err, ErrFetch) || h.requests.Load() != before {
		t.Errorf("a remembered failure should not retry: %v, %d requests", err, h.requests.Load()-before)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "hf://org/chat"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v", err)
	}
}

func TestCacheBounds(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f, nil)
	cache := t.TempDir()
	sql, err := peft.Load(f.g.AdapterDir("sql"), f.base, peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := f.store(t, func(c *Config) {
		c.Endpoint, c.CacheDir = h.URL, cache
		c.HostCacheBytes = sql.Bytes() + 1 // one adapter the size of sql fits
		c.DiskCacheBytes = 1               // keeps only the newest download
	})
	for _, id := range []string{"hf://org/sql", "hf://org/chat"} {
		if _, err := s.Get(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.HostAdapters != 1 || st.HostBytes > sql.Bytes()+1 {
		t.Errorf("host tier %+v, bound %d", st, sql.Bytes()+1)
	}
	if _, err := os.Stat(filepath.Join(cache, "org", "sql@main")); !os.IsNotExist(err) {
		t.Errorf("the older download was not evicted from disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "org", "chat@main", "manifest.json")); err != nil {
		t.Errorf("the newest download was evicted: %v", err)
	}
}

func TestRegister(t *testing.T) {
	f := newFixture(t)
	s := f.store(t, nil)
	if err := s.Register(context.Background(), "alias", "sql"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "alias"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(s.Known(), ","), "alias") {
		t.Errorf("Known() lacks the alias: %v", s.Known())
	}
	if err := s.Register(context.Background(), "x", "../../etc"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("traversal path: %v", err)
	}
	if err := s.Unregister("alias"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "alias"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Unregister: %v", err)
	}
	if err := s.Unregister("alias"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Unregister: %v", err)
	}
	if s.Stats().HostAdapters != 0 {
		t.Errorf("host tier keeps %d adapters", s.Stats().HostAdapters)
	}
}

func FuzzValidID(f *testing.F) {
	for _, s := range []string{"sql", "org/name", "../x", "/etc", "a/../../b", "hf://org/n@rev", "hf://x", ".a", "a//b", "a\\b"} {
		f.Add(s)
	}
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, id string) {
		if ValidID(id) != nil || strings.HasPrefix(id, hubScheme) {
			return
		}
		p := filepath.Join(root, filepath.FromSlash(id))
		if rel, err := filepath.Rel(root, p); err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			t.Fatalf("accepted id %q resolves to %q outside the root", id, p)
		}
	})
}
