package adapterstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

func TestHubFetchAndDiskCache(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	cache := t.TempDir()
	var obs observer
	hubStore := func(token string) *Store {
		return f.store(t, func(c *Config) {
			c.Endpoint, c.CacheDir, c.Token, c.Observe = h.URL, cache, token, obs.observe
		})
	}
	ctx := context.Background()
	s := hubStore("secret")
	a, err := s.Get(ctx, "hf://org/sql")
	if err != nil || a.MaxRank() != 8 {
		t.Fatalf("hub Get: %v", err)
	}
	wantLog := []string{"GET /org/sql/resolve/main/adapter_config.json", "GET /org/sql/resolve/main/adapter_model.safetensors"}
	if got := h.requests(); !slices.Equal(got, wantLog) {
		t.Errorf("requests %q, want %q", got, wantLog)
	}
	if got := h.authHeaders(); !slices.Equal(got, []string{"Bearer secret", "Bearer secret"}) {
		t.Errorf("Authorization headers %q", got)
	}
	checkManifest(t, f, filepath.Join(cache, "org", "sql@main"), "sql")

	// The same revision, spelled out, is the same adapter in the host tier.
	if b, err := s.Get(ctx, "hf://org/sql@main"); err != nil || b != a {
		t.Errorf("hf://org/sql@main: %v, same adapter: %v", err, b == a)
	}
	// A new store (empty host tier) reads the verified copy on disk, without the hub.
	if _, err := hubStore("").Get(ctx, "hf://org/sql"); err != nil || h.count() != 2 {
		t.Errorf("from disk: %v, %d hub requests", err, h.count())
	}
	if got := obs.take(); got != "hub/ok host/hit disk/ok" {
		t.Errorf("observed %q", got)
	}

	// A corrupted cached file (same size) fails its sha256 and is fetched again.
	cached := filepath.Join(cache, "org", "sql@main", weightsFile)
	data := readFile(t, cached)
	data[len(data)-1] ^= 0xff
	writeFile(t, cached, data)
	if _, err := hubStore("").Get(ctx, "hf://org/sql"); err != nil || h.count() != 4 {
		t.Errorf("after corruption: %v, %d hub requests, want 4", err, h.count())
	}
	if !bytes.Equal(readFile(t, cached), readFile(t, filepath.Join(f.adapter("sql"), weightsFile))) {
		t.Error("the corrupted file was not replaced")
	}
	if got := h.authHeaders()[2:]; !slices.Equal(got, []string{"", ""}) {
		t.Errorf("without a token, Authorization headers %q", got)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(cache, tmpPrefix+"*")); len(leftovers) != 0 {
		t.Errorf("temporary directories left: %q", leftovers)
	}
}

// checkManifest compares a cached download's manifest with sums computed here.
func checkManifest(t *testing.T, f *fixture, dir, adapter string) {
	t.Helper()
	var m struct {
		Repo, Revision string
		Files          map[string]struct {
			SHA256 string
			Size   int64
		}
		Bytes   int64
		Fetched time.Time
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "manifest.json")), &m); err != nil {
		t.Fatal(err)
	}
	if m.Repo != "org/"+adapter || m.Revision != "main" || time.Since(m.Fetched) > time.Minute || m.Bytes != f.fileBytes(t, adapter) {
		t.Errorf("manifest %+v", m)
	}
	for _, file := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		data := readFile(t, filepath.Join(f.adapter(adapter), file))
		sum := sha256.Sum256(data)
		if got := m.Files[file]; got.SHA256 != hex.EncodeToString(sum[:]) || got.Size != int64(len(data)) {
			t.Errorf("manifest entry for %s: %+v", file, got)
		}
		if !bytes.Equal(readFile(t, filepath.Join(dir, file)), data) {
			t.Errorf("cached %s differs from the hub's", file)
		}
	}
}

func TestHubRevisions(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	h.repos["org/a@main"], h.repos["org/a@v2"] = f.adapter("chat"), f.adapter("tiny")
	cache := t.TempDir()
	s := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir = h.URL, cache })
	for id, rank := range map[string]int{"hf://org/a": 16, "hf://org/a@v2": 4} {
		if a, err := s.Get(context.Background(), id); err != nil || a.MaxRank() != rank {
			t.Errorf("Get(%q): %v, want rank %d", id, err, rank)
		}
	}
	for _, dir := range []string{"a@main", "a@v2"} {
		if _, err := os.Stat(filepath.Join(cache, "org", dir, "manifest.json")); err != nil {
			t.Errorf("revision %s not cached: %v", dir, err)
		}
	}
}

func TestHubErrors(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	other := startHub(t, f) // another host, which must never be asked
	misbehave(t, f, h, other.URL)
	cache := t.TempDir()
	s := f.store(t, func(c *Config) {
		c.Endpoint, c.CacheDir, c.MaxFileBytes, c.IdleTimeout = h.URL, cache, 20000, 10*time.Second
	})
	for id, want := range map[string][]error{
		"hf://org/nope":      {ErrNotFound},
		"hf://org/sql@nope":  {ErrNotFound},
		"hf://org/gone":      {ErrNotFound},
		"hf://org/pickle":    {ErrBadAdapter, peft.ErrPickle},
		"hf://org/lfspickle": {ErrBadAdapter, peft.ErrPickle},
		"hf://org/noweights": {ErrBadAdapter, peft.ErrNoWeights},
		"hf://org/trunc":     {ErrBadAdapter, peft.ErrWeightsFile, safetensors.ErrOutOfBounds},
		"hf://org/sql":       {ErrBadAdapter}, // 75 kB, above MaxFileBytes
		"hf://org/declared":  {ErrBadAdapter},
		"hf://org/chunked":   {ErrBadAdapter},
		"hf://org/error":     {ErrFetch},
		"hf://org/private":   {ErrFetch},
		"hf://org/away":      {ErrFetch},
	} {
		start := time.Now()
		_, err := s.Get(context.Background(), id)
		for _, w := range want {
			if !errors.Is(err, w) {
				t.Errorf("Get(%q) = %v, want %v", id, err, w)
			}
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Get(%q) took %v", id, took)
		}
		noPaths(t, err, cache, f.root, f.testdata)
	}
	if _, err := s.Get(context.Background(), "hf://org/moved"); err != nil {
		t.Errorf("a redirect within the endpoint's host: %v", err)
	}
	if n := other.count(); n != 0 {
		t.Errorf("the other host got %d requests", n)
	}
	for _, r := range h.requests() {
		if strings.HasSuffix(r, pickleFile) && !strings.HasPrefix(r, "HEAD ") {
			t.Errorf("the pickle was downloaded: %s", r)
		}
	}
	if _, err := f.store(t, nil).Get(context.Background(), "hf://org/sql"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("hf:// without CacheDir: %v", err)
	}
}

// misbehave adds the hub's broken repositories and answers under org/.
func misbehave(t *testing.T, f *fixture, h *fakeHub, otherURL string) {
	t.Helper()
	sqlWeights := readFile(t, filepath.Join(f.adapter("sql"), weightsFile))
	pickle := t.TempDir()
	writeFile(t, filepath.Join(pickle, configFile), readFile(t, filepath.Join(f.adapter("sql"), configFile)))
	writeFile(t, filepath.Join(pickle, pickleFile), []byte("\x80\x04pickle"))
	noWeights := t.TempDir()
	writeFile(t, filepath.Join(noWeights, configFile), readFile(t, filepath.Join(f.adapter("sql"), configFile)))
	trunc := t.TempDir()
	copyDir(t, f.adapter("tiny"), filepath.Join(trunc, "a"))
	writeFile(t, filepath.Join(trunc, "a", weightsFile), readFile(t, filepath.Join(f.adapter("tiny"), weightsFile))[:3000])
	h.repos["org/pickle@main"], h.repos["org/noweights@main"], h.repos["org/trunc@main"] = pickle, noWeights, filepath.Join(trunc, "a")
	h.special = func(w http.ResponseWriter, r *http.Request) bool {
		switch repo := strings.Join(strings.SplitN(r.URL.Path, "/", 4)[1:3], "/"); repo {
		case "org/error":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "org/private":
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case "org/gone": // how the Hub answers for a missing repository without a token
			w.Header().Set("X-Error-Code", "RepoNotFound")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case "org/declared": // announces a huge file, then sends nothing
			w.Header().Set("Content-Length", "1000000000")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case "org/chunked": // no Content-Length: the size shows only while streaming
			w.WriteHeader(http.StatusOK)
			for chunk := range slices.Chunk(sqlWeights, 4096) {
				w.Write(chunk)
				w.(http.Flusher).Flush()
			}
		case "org/lfspickle": // only the pickle, behind a redirect to another host as on the Hub
			switch filepath.Base(r.URL.Path) {
			case configFile:
				http.ServeFile(w, r, filepath.Join(f.adapter("sql"), configFile))
			case pickleFile:
				http.Redirect(w, r, otherURL+"/lfs/pickle", http.StatusFound)
			default:
				http.NotFound(w, r)
			}
		case "org/away":
			http.Redirect(w, r, otherURL+strings.Replace(r.URL.Path, "/away/", "/tiny/", 1), http.StatusFound)
		case "org/moved":
			http.Redirect(w, r, strings.Replace(r.URL.Path, "/moved/", "/tiny/", 1), http.StatusFound)
		default:
			return false
		}
		return true
	}
}

// TestHubIdleTimeout: a download that stops receiving fails after IdleTimeout; one that
// keeps receiving, however slowly, does not.
func TestHubIdleTimeout(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	config := readFile(t, filepath.Join(f.adapter("tiny"), configFile))
	h.special = func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasPrefix(r.URL.Path, "/org/stall/"): // headers and one byte, then nothing
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("{"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case strings.HasPrefix(r.URL.Path, "/org/silent/"): // not even headers
			<-r.Context().Done()
		case r.URL.Path == "/org/slow/resolve/main/adapter_config.json": // a part every 80 ms
			w.WriteHeader(http.StatusOK)
			for part := range slices.Chunk(config, len(config)/4+1) {
				w.Write(part)
				w.(http.Flusher).Flush()
				time.Sleep(80 * time.Millisecond)
			}
		case strings.HasPrefix(r.URL.Path, "/org/slow/"):
			http.ServeFile(w, r, filepath.Join(f.adapter("tiny"), strings.TrimPrefix(r.URL.Path, "/org/slow/resolve/main/")))
		default:
			return false
		}
		return true
	}
	const idle = 200 * time.Millisecond
	s := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir, c.IdleTimeout = h.URL, t.TempDir(), idle })
	for _, id := range []string{"hf://org/stall", "hf://org/silent"} {
		start := time.Now()
		_, err := s.Get(context.Background(), id)
		if took := time.Since(start); !errors.Is(err, ErrFetchTimeout) || took < idle || took > 10*idle {
			t.Errorf("Get(%q) = %v after %v, want ErrFetchTimeout after about %v", id, err, took, idle)
		}
	}
	start := time.Now()
	if _, err := s.Get(context.Background(), "hf://org/slow"); err != nil || time.Since(start) < idle {
		t.Errorf("a slow but steady download: %v after %v", err, time.Since(start))
	}
}

// TestRedirectHosts: a redirect to a listed https host is followed without the token, as
// the Hub sends LFS files to its CDN.
func TestRedirectHosts(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	var mu sync.Mutex
	var cdnAuth []string
	cdn := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cdnAuth = append(cdnAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		http.ServeFile(w, r, filepath.Join(f.adapter("tiny"), filepath.Base(r.URL.Path)))
	}))
	t.Cleanup(cdn.Close)
	h.special = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/org/lfs/") {
			return false
		}
		http.Redirect(w, r, cdn.URL+"/blobs/"+filepath.Base(r.URL.Path), http.StatusFound)
		return true
	}
	cdnHost := strings.TrimPrefix(cdn.URL, "https://")
	for _, allowed := range []bool{false, true} {
		s := f.store(t, func(c *Config) {
			c.Endpoint, c.CacheDir, c.Token, c.Client = h.URL, t.TempDir(), "secret", cdn.Client()
			if allowed {
				c.RedirectHosts = []string{cdnHost}
			}
		})
		a, err := s.Get(context.Background(), "hf://org/lfs")
		if allowed && (err != nil || a.MaxRank() != 4) || !allowed && !errors.Is(err, ErrFetch) {
			t.Errorf("RedirectHosts %v: %v", allowed, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(cdnAuth, []string{"", ""}) {
		t.Errorf("the CDN got Authorization headers %q; want two requests without", cdnAuth)
	}
}

// TestClientRedirectPolicy: a caller's Client is used, with its CheckRedirect replaced.
func TestClientRedirectPolicy(t *testing.T) {
	f := newFixture(t)
	h := startHub(t, f)
	h.special = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/org/away/") {
			http.Redirect(w, r, "http://example.invalid/x", http.StatusFound)
			return true
		}
		return false
	}
	var used bool
	client := &http.Client{
		Transport:     roundTripper(func(r *http.Request) (*http.Response, error) { used = true; return http.DefaultTransport.RoundTrip(r) }),
		CheckRedirect: func(*http.Request, []*http.Request) error { return nil },
	}
	s := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir, c.Client = h.URL, t.TempDir(), client })
	if _, err := s.Get(context.Background(), "hf://org/away"); !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("redirect to another host: %v", err)
	}
	if !used {
		t.Error("Config.Client was not used")
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var _ http.RoundTripper = roundTripper(nil)

// TestUnreachableHub: a connection failure is ErrFetch.
func TestUnreachableHub(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens at its address now
	s := f.store(t, func(c *Config) { c.Endpoint, c.CacheDir = srv.URL, t.TempDir() })
	if _, err := s.Get(context.Background(), "hf://org/sql"); !errors.Is(err, ErrFetch) {
		t.Errorf("unreachable hub: %v", err)
	}
}
