package safetensors

import (
	"fmt"
	"maps"
	"os"
	"sort"
)

// File is an open safetensors file whose header has been validated.
// Its methods are safe for concurrent use.
type File struct {
	f        *os.File
	path     string
	metadata map[string]string
	tensors  map[string]TensorInfo
}

// Open opens and validates path with default Options.
func Open(path string) (*File, error) {
	return OpenWith(path, Options{})
}

// OpenWith opens and validates path.
func OpenWith(path string, opts Options) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	metadata, tensors, err := ParseHeader(f, st.Size(), opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{f: f, path: path, metadata: metadata, tensors: tensors}, nil
}

// Names returns the tensor names, sorted.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.tensors))
	for n := range f.tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Info describes the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Metadata returns a copy of the __metadata__ map (empty when absent).
func (f *File) Metadata() map[string]string {
	return maps.Clone(f.metadata)
}

// Float32 reads the named tensor and converts it to float32 exactly.
func (f *File) Float32(name string) ([]float32, error) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q in %s", ErrNotFound, name, f.path)
	}
	raw := make([]byte, t.Len)
	// The file may have changed since Open; a short read is an error.
	if n, err := f.f.ReadAt(raw, t.Offset); n != len(raw) {
		return nil, fmt.Errorf("safetensors: reading %q from %s: %w", name, f.path, err)
	}
	out := make([]float32, t.NumElements())
	decode(t.DType, raw, out)
	return out, nil
}

// Close closes the underlying file.
func (f *File) Close() error {
	return f.f.Close()
}
