package adapterstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// disk is the disk tier: hub downloads in CacheDir/org/name@rev/, each with a manifest.json
// of its files' sha256 and sizes, bounded in bytes. The manifest's modification time is
// the adapter's last use, so that the order survives a restart.
type disk struct {
	dir string // CacheDir, absolute
	max int64

	mu      sync.Mutex
	entries map[string]*diskEntry // key org/name@rev
	bytes   int64                 // sum over stored entries
}

type diskEntry struct {
	bytes  int64
	used   time.Time
	refs   int  // loads reading or writing the directory; never evicted while > 0
	stored bool // the directory holds a complete download
}

// hubFiles are downloaded and recorded in the manifest.
var hubFiles = []string{configFile, weightsFile}

const (
	manifestFile     = "manifest.json"
	maxManifestBytes = 1 << 20
	tmpPrefix        = ".tmp-"
)

// manifest records a download, to verify it on every read from disk.
type manifest struct {
	Repo     string             `json:"repo"`
	Revision string             `json:"revision"`
	Files    map[string]fileSum `json:"files"`
	Bytes    int64              `json:"bytes"` // sum of the files' sizes
	Fetched  time.Time          `json:"fetched"`
}

type fileSum struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

func openDisk(dir string, max int64) (*disk, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("adapterstore: hub cache directory: %w", err)
	}
	d := &disk{dir: abs, max: max, entries: map[string]*diskEntry{}}
	d.index()
	d.mu.Lock()
	d.evictLocked()
	d.mu.Unlock()
	return d, nil
}

// index records the downloads already in the cache directory and removes the temporary
// directories of interrupted ones.
func (d *disk) index() {
	orgs, _ := os.ReadDir(d.dir)
	for _, org := range orgs {
		if strings.HasPrefix(org.Name(), tmpPrefix) {
			os.RemoveAll(filepath.Join(d.dir, org.Name()))
			continue
		}
		names, _ := os.ReadDir(filepath.Join(d.dir, org.Name()))
		for _, n := range names {
			key := org.Name() + "/" + n.Name()
			if _, err := parseHub(key); err != nil {
				continue
			}
			path := filepath.Join(d.path(key), manifestFile)
			info, err := os.Stat(path)
			if err != nil {
				continue
			}
			m, err := readManifest(path)
			if err != nil {
				continue
			}
			d.entries[key] = &diskEntry{bytes: m.Bytes, used: info.ModTime(), stored: true}
			d.bytes += m.Bytes
		}
	}
}

func (d *disk) path(key string) string { return filepath.Join(d.dir, filepath.FromSlash(key)) }

// acquire keeps key's directory from eviction until release is called.
func (d *disk) acquire(key string) (release func()) {
	d.mu.Lock()
	e := d.entries[key]
	if e == nil {
		e = &diskEntry{}
		d.entries[key] = e
	}
	e.refs++
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		e.refs--
		if !e.stored && e.refs == 0 && d.entries[key] == e {
			delete(d.entries, key)
		}
		d.evictLocked()
		d.mu.Unlock()
	}
}

// stored records that key holds a complete download of n bytes, used now.
func (d *disk) stored(key string, n int64) {
	now := time.Now()
	// Best effort: the time only orders evictions after a restart.
	os.Chtimes(filepath.Join(d.path(key), manifestFile), now, now)
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.entries[key] // acquired, so present
	if e.stored {
		d.bytes -= e.bytes
	}
	e.bytes, e.used, e.stored = n, now, true
	d.bytes += n
}

// evictLocked removes the least recently used downloads beyond max, never one in use.
func (d *disk) evictLocked() {
	if d.bytes <= d.max {
		return
	}
	var keys []string
	for k, e := range d.entries {
		if e.stored && e.refs == 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return d.entries[a].used.Compare(d.entries[b].used) })
	for _, k := range keys {
		if d.bytes <= d.max {
			return
		}
		if os.RemoveAll(d.path(k)) != nil {
			continue
		}
		d.bytes -= d.entries[k].bytes
		delete(d.entries, k)
	}
}

func (d *disk) size() (bytes, adapters int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.entries {
		if e.stored {
			adapters++
		}
	}
	return d.bytes, adapters
}

// verify checks a cached download against its manifest.
func verify(dir string) (manifest, error) {
	m, err := readManifest(filepath.Join(dir, manifestFile))
	if err != nil {
		return manifest{}, err
	}
	for _, f := range hubFiles {
		if err := checkFile(filepath.Join(dir, f), m.Files[f]); err != nil {
			return manifest{}, err
		}
	}
	return m, nil
}

func checkFile(path string, want fileSum) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || info.Size() != want.Size {
		return errors.New("size differs from the manifest")
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return errors.New("sha256 differs from the manifest")
	}
	return nil
}

func readManifest(path string) (manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return manifest{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes))
	if err != nil {
		return manifest{}, err
	}
	return parseManifest(b)
}

// parseManifest accepts a manifest that lists every hub file with a sha256 and a size that
// add up to Bytes.
func parseManifest(b []byte) (manifest, error) {
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return manifest{}, fmt.Errorf("manifest: %w", err)
	}
	var total int64
	for _, f := range hubFiles {
		s, ok := m.Files[f]
		if _, err := hex.DecodeString(s.SHA256); !ok || err != nil || len(s.SHA256) != 2*sha256.Size {
			return manifest{}, fmt.Errorf("manifest: no valid sha256 for %s", f)
		}
		if s.Size < 0 || s.Size > math.MaxInt64-total {
			return manifest{}, fmt.Errorf("manifest: invalid size for %s", f)
		}
		total += s.Size
	}
	if total != m.Bytes {
		return manifest{}, errors.New("manifest: bytes is not the sum of the file sizes")
	}
	return m, nil
}

func writeManifest(dir string, m manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeSynced(filepath.Join(dir, manifestFile), b)
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// replaceDir moves the complete download tmp to dir in one rename, so that a reader or a
// crash never sees part of it.
func replaceDir(tmp, dir string) error {
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	// A stale or corrupted copy; nothing reads it, as only this load holds its key.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
