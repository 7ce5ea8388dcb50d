package adapterstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

// hub downloads adapters from a Hugging Face Hub-compatible endpoint into the disk tier:
// GET {Endpoint}/{org}/{name}/resolve/{rev}/{file}.
type hub struct {
	cfg    *Config
	client *http.Client
	disk   *disk
}

const maxRedirects = 5

var (
	// errMissing is a 404 from the hub, turned into ErrNotFound or ErrBadAdapter by the caller.
	errMissing = errors.New("not on the hub")
	errIdle    = errors.New("idle timeout")
	// hubMissing are the X-Error-Code values with which the Hub says a file is not there;
	// it answers 401 rather than 404 for a missing repository without a token.
	hubMissing = map[string]bool{"RepoNotFound": true, "RevisionNotFound": true, "EntryNotFound": true}
)

func newHub(cfg *Config) (*hub, error) {
	endpoint, err := url.Parse(cfg.Endpoint) // checked by Validate
	if err != nil {
		return nil, fmt.Errorf("adapterstore: Endpoint: %w", err)
	}
	d, err := openDisk(cfg.CacheDir, cfg.DiskCacheBytes)
	if err != nil {
		return nil, err
	}
	return &hub{cfg: cfg, client: newClient(cfg.Client, endpoint, cfg.RedirectHosts), disk: d}, nil
}

// newClient copies c (or a default client) with a CheckRedirect that follows redirects
// within the endpoint's scheme and host, and to the https hosts in allowed without the token.
func newClient(c *http.Client, endpoint *url.URL, allowed []string) *http.Client {
	var client http.Client
	if c != nil {
		client = *c
	} else {
		client.Transport = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}
	}
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		switch {
		case len(via) >= maxRedirects:
			return errors.New("too many redirects")
		case req.URL.Host == endpoint.Host && req.URL.Scheme == endpoint.Scheme:
			return nil
		case req.URL.Scheme == "https" && slices.Contains(allowed, req.URL.Host):
			req.Header.Del("Authorization") // Go keeps it for another port of the same host
			return nil
		case req.Method == http.MethodHead:
			return http.ErrUseLastResponse // the redirect shows that the file exists
		}
		return fmt.Errorf("redirect to another host (%s) refused", req.URL.Host)
	}
	return &client
}

// fetch returns the directory of ref in the disk tier, downloading it unless a copy that
// matches its manifest is there; downloaded says whether it tried the hub. Unless err is set,
// the caller calls release once it no longer reads the directory.
func (h *hub) fetch(ref hubRef) (dir string, downloaded bool, release func(), err error) {
	key := ref.key()
	release = h.disk.acquire(key)
	dir = h.disk.path(key)
	if m, err := verify(dir); err == nil {
		h.disk.stored(key, m.Bytes)
		return dir, false, release, nil
	}
	n, err := h.download(ref, dir)
	if err != nil {
		release()
		return "", true, nil, err
	}
	h.disk.stored(key, n)
	return dir, true, release, nil
}

// download fetches the files into a temporary directory in the cache and renames it to dir.
func (h *hub) download(ref hubRef, dir string) (int64, error) {
	tmp, err := os.MkdirTemp(h.disk.dir, tmpPrefix)
	if err != nil {
		return 0, cacheErr(ref, err)
	}
	defer os.RemoveAll(tmp) // gone already after the rename
	m := manifest{Repo: ref.repo, Revision: ref.rev, Files: map[string]fileSum{}, Fetched: time.Now().UTC()}
	for _, f := range hubFiles {
		sum, err := h.get(ref, f, filepath.Join(tmp, f))
		if errors.Is(err, errMissing) {
			return 0, h.missing(ref, f)
		}
		if err != nil {
			return 0, err
		}
		m.Files[f] = sum
		m.Bytes += sum.Size
	}
	if err := writeManifest(tmp, m); err != nil {
		return 0, cacheErr(ref, err)
	}
	if err := replaceDir(tmp, dir); err != nil {
		return 0, cacheErr(ref, err)
	}
	return m.Bytes, nil
}

// missing explains a file the hub does not have. A repository with only the pickle
// adapter_model.bin is refused as peft refuses it locally, without downloading the pickle.
func (h *hub) missing(ref hubRef, file string) error {
	if file == configFile {
		return fmt.Errorf("%w: %s (no %s on the hub)", ErrNotFound, ref, configFile)
	}
	pickle, err := h.exists(ref, pickleFile)
	switch {
	case err != nil:
		return err
	case pickle:
		return fmt.Errorf("%w: %s: %w", ErrBadAdapter, ref, peft.ErrPickle)
	}
	return fmt.Errorf("%w: %s: %w", ErrBadAdapter, ref, peft.ErrNoWeights)
}

// get downloads one file to dst and returns its sha256 and size.
func (h *hub) get(ref hubRef, file, dst string) (fileSum, error) {
	w := startWatchdog(h.cfg.IdleTimeout)
	defer w.stop()
	resp, err := h.send(w, http.MethodGet, ref, file)
	if err != nil {
		return fileSum{}, err
	}
	defer resp.Body.Close()
	return h.save(w, resp, dst, ref, file)
}

// exists asks the hub for a file's headers only.
func (h *hub) exists(ref hubRef, file string) (bool, error) {
	w := startWatchdog(h.cfg.IdleTimeout)
	defer w.stop()
	resp, err := h.send(w, http.MethodHead, ref, file)
	if errors.Is(err, errMissing) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// send makes a request under the watchdog and checks the response status.
func (h *hub) send(w *watchdog, method string, ref hubRef, file string) (*http.Response, error) {
	u := h.cfg.Endpoint + "/" + ref.repo + "/resolve/" + url.PathEscape(ref.rev) + "/" + file
	req, err := http.NewRequestWithContext(w.ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFetch, ref, err)
	}
	if h.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.cfg.Token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, h.transferErr(w, ref, file, err)
	}
	if resp.StatusCode == http.StatusNotFound || hubMissing[resp.Header.Get("X-Error-Code")] {
		resp.Body.Close()
		return nil, errMissing
	}
	if resp.StatusCode/100 != 2 && !(method == http.MethodHead && resp.StatusCode/100 == 3) {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s: %s: HTTP %d", ErrFetch, ref, file, resp.StatusCode)
	}
	return resp, nil
}

// save streams the body to dst, refusing it from its Content-Length or once it passes
// MaxFileBytes.
func (h *hub) save(w *watchdog, resp *http.Response, dst string, ref hubRef, file string) (fileSum, error) {
	limit := h.cfg.MaxFileBytes
	if resp.ContentLength > limit {
		return fileSum{}, tooLarge(ref, file, limit)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fileSum{}, cacheErr(ref, err)
	}
	defer f.Close()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), w.reader(io.LimitReader(resp.Body, limit+1)))
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe): // writing the file
		return fileSum{}, cacheErr(ref, err)
	case err != nil:
		return fileSum{}, h.transferErr(w, ref, file, err)
	case n > limit:
		return fileSum{}, tooLarge(ref, file, limit)
	}
	if err := f.Sync(); err != nil {
		return fileSum{}, cacheErr(ref, err)
	}
	if err := f.Close(); err != nil {
		return fileSum{}, cacheErr(ref, err)
	}
	return fileSum{SHA256: hex.EncodeToString(sum.Sum(nil)), Size: n}, nil
}

func tooLarge(ref hubRef, file string, limit int64) error {
	return fmt.Errorf("%w: %s: %s is larger than the %d byte limit", ErrBadAdapter, ref, file, limit)
}

func (h *hub) transferErr(w *watchdog, ref hubRef, file string, err error) error {
	if w.expired() {
		return fmt.Errorf("%w: %s: %s: nothing received for %v", ErrFetchTimeout, ref, file, h.cfg.IdleTimeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the cause, without repeating the URL
	}
	return fmt.Errorf("%w: %s: %s: %v", ErrFetch, ref, file, err)
}

// cacheErr reports a failure to write the cache without the cache's path.
func cacheErr(ref hubRef, err error) error {
	return fmt.Errorf("%w: %s: writing the cache: %s", ErrFetch, ref, fsCause(err))
}

// watchdog cancels a transfer that receives nothing for d: every Read that returns bytes
// restarts its timer.
type watchdog struct {
	ctx   context.Context
	stop  context.CancelFunc
	timer *time.Timer
	d     time.Duration
}

func startWatchdog(d time.Duration) *watchdog {
	ctx, cancel := context.WithCancelCause(context.Background())
	t := time.AfterFunc(d, func() { cancel(errIdle) })
	return &watchdog{ctx: ctx, timer: t, d: d, stop: func() { t.Stop(); cancel(context.Canceled) }}
}

func (w *watchdog) expired() bool { return errors.Is(context.Cause(w.ctx), errIdle) }

func (w *watchdog) reader(r io.Reader) io.Reader { return &idleReader{r: r, w: w} }

type idleReader struct {
	r io.Reader
	w *watchdog
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.w.timer.Reset(r.w.d)
	}
	return n, err
}
