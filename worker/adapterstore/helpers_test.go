package adapterstore

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

// fixture is a Root holding copies of the tiny-llama adapters, and the tiny-llama base.
type fixture struct {
	testdata string
	base     peft.Base
	root     string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	td, err := golden.TestdataDir()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := model.LoadConfig(filepath.Join(td, "tiny-llama", "model"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{testdata: td, base: cfg.PEFTBase(), root: t.TempDir()}
	for _, a := range []string{"chat", "sql", "tiny"} {
		copyDir(t, f.adapter(a), filepath.Join(f.root, a))
	}
	return f
}

// adapter is the testdata directory of a tiny-llama adapter.
func (f *fixture) adapter(name string) string {
	return filepath.Join(f.testdata, "tiny-llama", "adapters", name)
}

func (f *fixture) store(t testing.TB, mod func(*Config)) *Store {
	t.Helper()
	cfg := Config{Root: f.root, Base: f.base}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// load parses a testdata adapter directly, for expected sizes and ranks.
func (f *fixture) load(t testing.TB, name string) *peft.Adapter {
	t.Helper()
	a, err := peft.Load(f.adapter(name), f.base, peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// fileBytes is the size of an adapter's downloaded files.
func (f *fixture) fileBytes(t testing.TB, name string) int64 {
	t.Helper()
	var n int64
	for _, file := range hubFiles {
		info, err := os.Stat(filepath.Join(f.adapter(name), file))
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeHub serves adapter directories in Hugging Face Hub layout,
// /{org}/{name}/resolve/{rev}/{file}, and logs every request.
type fakeHub struct {
	*httptest.Server
	repos map[string]string // org/name@rev → directory
	// special, if set, answers a request first; it returns false to leave it to the repos.
	special func(w http.ResponseWriter, r *http.Request) bool

	mu   sync.Mutex
	log  []string // "METHOD path"
	auth []string // Authorization headers
}

func startHub(t testing.TB, f *fixture) *fakeHub {
	t.Helper()
	h := &fakeHub{repos: map[string]string{}}
	for _, a := range []string{"chat", "sql", "tiny"} {
		h.repos["org/"+a+"@main"] = f.adapter(a)
	}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.log = append(h.log, r.Method+" "+r.URL.Path)
	h.auth = append(h.auth, r.Header.Get("Authorization"))
	special := h.special
	h.mu.Unlock()
	if special != nil && special(w, r) {
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) != 5 || parts[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	dir, ok := h.repos[parts[0]+"/"+parts[1]+"@"+parts[3]]
	if !ok {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		http.NotFound(w, r)
		return
	}
	if _, err := os.Stat(filepath.Join(dir, parts[4])); err != nil {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.NotFound(w, r)
		return
	}
	http.ServeFile(w, r, filepath.Join(dir, parts[4]))
}

func (h *fakeHub) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

func (h *fakeHub) count() int { return len(h.requests()) }

func (h *fakeHub) authHeaders() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.auth...)
}

// observer records Observe calls as "tier/result".
type observer struct {
	mu     sync.Mutex
	events []string
}

func (o *observer) observe(tier, result string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d < 0 {
		tier += "(negative duration)"
	}
	o.events = append(o.events, tier+"/"+result)
}

func (o *observer) take() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.Join(o.events, " ")
	o.events = nil
	return s
}

// noPaths fails if an error message shows one of the server's directories.
func noPaths(t testing.TB, err error, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err != nil && strings.Contains(err.Error(), d) {
			t.Errorf("error message shows the server path %s: %v", d, err)
		}
	}
}
