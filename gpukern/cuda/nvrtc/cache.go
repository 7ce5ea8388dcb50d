package nvrtc

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
)

// Cache keeps compiled kernels in Dir, keyed by source, architecture and NVRTC version, so
// that only a machine's first start pays for compilation.
type Cache struct{ Dir string }

// Compile returns the cached cubin of src for arch, compiling and storing it when absent.
func (c Cache) Compile(name, src, arch, includeDir string, options ...string) ([]byte, error) {
	major, minor, err := Version()
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d.%d\x00%s\x00%q", src, arch, major, minor, includeDir, options))
	path := filepath.Join(c.Dir, fmt.Sprintf("%s-%s-%x.cubin", filepath.Base(name), arch, key[:12]))
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	}
	cubin, err := Compile(name, src, arch, includeDir, options...)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(path, cubin); err != nil {
		return nil, fmt.Errorf("nvrtc: caching %s: %w", name, err)
	}
	return cubin, nil
}

// writeAtomic writes through a temporary file and a rename, so that a concurrent reader
// never sees half a cubin.
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".cubin-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
