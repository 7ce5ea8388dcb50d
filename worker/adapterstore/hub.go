package adapterstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

// hub downloads adapters from a Hugging Face Hub-compatible endpoint into the disk tier:
// CacheDir/org/name@rev/ with the files and a manifest.json of their sha256 sums.
type hub struct {
	cfg    *Config
	dir    string
	client *http.Client
	host   string // the endpoint's host: redirects elsewhere are refused

	mu   sync.Mutex // one download or eviction at a time in the cache directory
	busy map[string]bool
}

var hubFiles = []string{"adapter_config.json", "adapter_model.safetensors"}

// manifest records what was downloaded, for verification and eviction.
type manifest struct {
	Repo     string            `json:"repo"`
	Revision string            `json:"revision"`
	SHA256   map[string]string `json:"sha256"`
	Bytes    int64             `json:"bytes"`
	Fetched  time.Time         `json:"fetched"`
}

func newHub(cfg *Config) (*hub, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("adapterstore: hub endpoint %q is not a URL", cfg.Endpoint)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("adapterstore: hub cache: %w", err)
	}
	dir, err := filepath.Abs(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("adapterstore: hub cache: %w", err)
	}
	h := &hub{cfg: cfg, dir: dir, client: cfg.Client, host: u.Host, busy: map[string]bool{}}
	if h.client == nil {
		h.client = &http.Client{}
	}
	c := *h.client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != h.host {
			return fmt.Errorf("redirect to another host (%s) refused", req.URL.Host)
		}
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		return nil
	}
	h.client = &c
	return h, nil
}

// fetch returns the local directory of repo@rev, downloading it unless a verified copy is
// cached.
func (h *hub) fetch(repo, rev string) (string, error) {
	key := repo + "@" + rev
	dir := filepath.Join(h.dir, filepath.FromSlash(key))
	h.mu.Lock()
	h.busy[key] = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.busy, key)
		h.mu.Unlock()
	}()
	if verify(dir) == nil {
		now := time.Now()
		os.Chtimes(filepath.Join(dir, "manifest.json"), now, now) // recently used: evicted last
		return dir, nil
	}
	if err := h.download(repo, rev, dir); err != nil {
		return "", err
	}
	h.evict()
	return dir, nil
}

// download fetches the files into a temporary directory and renames it into place.
func (h *hub) download(repo, rev, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrFetch, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFetch, err)
	}
	defer os.RemoveAll(tmp)
	m := manifest{Repo: repo, Revision: rev, SHA256: map[string]string{}, Fetched: time.Now().UTC()}
	for _, f := range hubFiles {
		sum, n, err := h.get(repo, rev, f, filepath.Join(tmp, f))
		if errors.Is(err, errMissing) && f == "adapter_model.safetensors" {
			if _, _, binErr := h.get(repo, rev, "adapter_model.bin", ""); binErr == nil {
				return fmt.Errorf("%w: %w", ErrBadAdapter, peft.ErrPickle)
			}
		}
		if errors.Is(err, errMissing) {
			return fmt.Errorf("%w: %s@%s has no %s", ErrNotFound, repo, rev, f)
		}
		if err != nil {
			return err
		}
		m.SHA256[f], m.Bytes = sum, m.Bytes+n
	}
	b, _ := json.Marshal(m)
	if err := writeSynced(filepath.Join(tmp, "manifest.json"), b); err != nil {
		return fmt.Errorf("%w: %v", ErrFetch, err)
	}
	os.RemoveAll(dir) // a stale or corrupted copy
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("%w: %v", ErrFetch, err)
	}
	return nil
}

var errMissing = errors.New("not on the hub")

// get downloads one file to path (or, with path "", only checks that it exists) and returns
// its sha256 and size.
func (h *hub) get(repo, rev, file, path string) (string, int64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idle := time.AfterFunc(h.cfg.IdleTimeout, cancel)
	defer idle.Stop()
	u := fmt.Sprintf("%s/%s/resolve/%s/%s", h.cfg.Endpoint, repo, url.PathEscape(rev), file)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	if h.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.cfg.Token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return "", 0, h.fetchErr(ctx, repo, file, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", 0, errMissing
	case resp.StatusCode/100 != 2:
		return "", 0, fmt.Errorf("%w: %s/%s: HTTP %d", ErrFetch, repo, file, resp.StatusCode)
	case resp.ContentLength > h.cfg.MaxFileBytes:
		return "", 0, fmt.Errorf("%w: %s/%s is %d bytes, above the %d byte limit", ErrFetch, repo, file, resp.ContentLength, h.cfg.MaxFileBytes)
	case path == "":
		return "", 0, nil
	}
	return h.save(ctx, idle, resp.Body, path, repo, file)
}

// save streams body into path, resetting the idle timer on every read and enforcing the size cap.
func (h *hub) save(ctx context.Context, idle *time.Timer, body io.Reader, path, repo, file string) (string, int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	defer f.Close()
	sum := sha256.New()
	r := &idleReader{r: io.LimitReader(body, h.cfg.MaxFileBytes+1), idle: idle, timeout: h.cfg.IdleTimeout}
	n, err := io.Copy(io.MultiWriter(f, sum), r)
	if err != nil {
		return "", 0, h.fetchErr(ctx, repo, file, err)
	}
	if n > h.cfg.MaxFileBytes {
		return "", 0, fmt.Errorf("%w: %s/%s is above the %d byte limit", ErrFetch, repo, file, h.cfg.MaxFileBytes)
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	return hex.EncodeToString(sum.Sum(nil)), n, nil
}

func (h *hub) fetchErr(ctx context.Context, repo, file string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %s/%s: nothing received for %v", ErrFetchTimeout, repo, file, h.cfg.IdleTimeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is the endpoint's; keep the cause
	}
	return fmt.Errorf("%w: %s/%s: %v", ErrFetch, repo, file, err)
}

type idleReader struct {
	r       io.Reader
	idle    *time.Timer
	timeout time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.idle.Reset(r.timeout)
	}
	return n, err
}

func writeSynced(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// verify checks a cached copy against its manifest.
func verify(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for _, f := range hubFiles {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != m.SHA256[f] {
			return fmt.Errorf("%s: checksum mismatch", f)
		}
	}
	return nil
}

// cached lists the cached adapters with their size and last use, least recently used first.
func (h *hub) cached() []cachedAdapter {
	var out []cachedAdapter
	orgs, _ := os.ReadDir(h.dir)
	for _, org := range orgs {
		names, _ := os.ReadDir(filepath.Join(h.dir, org.Name()))
		for _, n := range names {
			if strings.HasPrefix(n.Name(), ".") {
				continue
			}
			dir := filepath.Join(h.dir, org.Name(), n.Name())
			info, err := os.Stat(filepath.Join(dir, "manifest.json"))
			if err != nil {
				continue
			}
			var m manifest
			if b, err := os.ReadFile(filepath.Join(dir, "manifest.json")); err != nil || json.Unmarshal(b, &m) != nil {
				continue
			}
			out = append(out, cachedAdapter{key: org.Name() + "/" + n.Name(), dir: dir, bytes: m.Bytes, used: info.ModTime()})
		}
	}
	slices.SortFunc(out, func(a, b cachedAdapter) int { return a.used.Compare(b.used) })
	return out
}

type cachedAdapter struct {
	key, dir string
	bytes    int64
	used     time.Time
}

func (h *hub) diskBytes() int64 {
	var n int64
	for _, c := range h.cached() {
		n += c.bytes
	}
	return n
}

// evict removes the least recently used cached adapters beyond DiskCacheBytes, never one
// being fetched or read.
func (h *hub) evict() {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := h.cached()
	var total int64
	for _, c := range all {
		total += c.bytes
	}
	for _, c := range all {
		if total <= h.cfg.DiskCacheBytes {
			return
		}
		if h.busy[c.key] {
			continue
		}
		os.RemoveAll(c.dir)
		total -= c.bytes
	}
}
