// Package safetensors reads safetensors files and Hugging Face model
// directories (single file or sharded index) and converts F32, F16 and BF16
// tensors to float32.
//
// Every header is validated before any tensor data is read or allocated, with
// the rules of the reference Rust crate: the tensors, sorted by offset, must
// tile the data region exactly (no overlap, no hole, nothing after the last
// tensor), and each byte length must equal product(shape)·dtype size.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"unicode/utf8"
)

// DefaultMaxHeaderBytes is the header cap of the reference Rust crate.
const DefaultMaxHeaderBytes = 100_000_000

// Options configures header parsing.
type Options struct {
	// MaxHeaderBytes caps the JSON header length N. Zero or negative selects
	// DefaultMaxHeaderBytes (100 MB, as the reference reader).
	MaxHeaderBytes int64
}

func (o Options) maxHeader() int64 {
	if o.MaxHeaderBytes <= 0 {
		return DefaultMaxHeaderBytes
	}
	return o.MaxHeaderBytes
}

// TensorInfo locates one tensor in its file.
type TensorInfo struct {
	Name   string
	DType  DType
	Shape  []int
	Offset int64 // absolute byte offset in the file
	Len    int64 // byte length
}

// NumElements is product(Shape); 1 for a scalar.
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// rawEntry is a tensor entry as written in the header, before validation.
type rawEntry struct {
	name    string
	dtype   string
	shape   []int64
	offsets []int64
}

// ParseHeader reads and validates the header of a safetensors file of
// fileSize bytes. It allocates only the header itself (at most
// opts.MaxHeaderBytes), never tensor data.
func ParseHeader(r io.ReaderAt, fileSize int64, opts Options) (metadata map[string]string, tensors map[string]TensorInfo, err error) {
	n, err := headerLen(r, fileSize, opts.maxHeader())
	if err != nil {
		return nil, nil, err
	}
	buf := make([]byte, n)
	if got, err := r.ReadAt(buf, 8); got != len(buf) {
		return nil, nil, fmt.Errorf("safetensors: reading header: %w", err)
	}
	metadata, entries, err := decodeHeader(buf)
	if err != nil {
		return nil, nil, err
	}
	tensors, err = validate(entries, 8+n, fileSize-8-n)
	if err != nil {
		return nil, nil, err
	}
	return metadata, tensors, nil
}

func headerLen(r io.ReaderAt, fileSize, maxN int64) (int64, error) {
	if fileSize < 8 {
		return 0, ErrFileTooSmall
	}
	var lenBuf [8]byte
	if got, err := r.ReadAt(lenBuf[:], 0); got != 8 {
		return 0, fmt.Errorf("safetensors: reading header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > uint64(maxN) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, n, maxN)
	}
	if int64(n) > fileSize-8 {
		return 0, fmt.Errorf("%w: %d header bytes, file has %d", ErrHeaderBeyondFile, n, fileSize)
	}
	return int64(n), nil
}

func decodeHeader(buf []byte) (map[string]string, []rawEntry, error) {
	if !utf8.Valid(buf) {
		return nil, nil, ErrHeaderUTF8
	}
	if len(buf) == 0 || buf[0] != '{' {
		return nil, nil, ErrHeaderStart
	}
	j := newJSONReader(bytes.NewReader(buf), ErrHeaderJSON)
	metadata := map[string]string{}
	var entries []rawEntry
	err := j.object(func(key string) error {
		if key == "__metadata__" {
			return readMetadata(j, metadata)
		}
		e, err := readEntry(j, key)
		entries = append(entries, e)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return metadata, entries, j.end()
}

func readMetadata(j *jsonReader, into map[string]string) error {
	tok, err := j.token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil // "__metadata__": null is accepted as absent, as serde does
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return ErrMetadata
	}
	// Re-enter the object walk without its opening brace already consumed.
	return j.objectBody(func(key string) error {
		v, ok, err := j.str()
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: value of %q", ErrMetadata, key)
		}
		into[key] = v
		return nil
	})
}

func readEntry(j *jsonReader, name string) (rawEntry, error) {
	e := rawEntry{name: name}
	var hasDType, hasShape, hasOffsets bool
	err := j.object(func(key string) error {
		var err error
		switch key {
		case "dtype":
			var ok bool
			e.dtype, ok, err = j.str()
			if err == nil && !ok {
				err = j.errorf("tensor %q: dtype must be a string", name)
			}
			hasDType = true
		case "shape":
			e.shape, err = j.ints()
			hasShape = true
		case "data_offsets":
			e.offsets, err = j.ints()
			hasOffsets = true
		default:
			err = j.skip() // unknown fields are ignored, as serde does
		}
		return err
	})
	if err != nil {
		return e, fmt.Errorf("tensor %q: %w", name, err)
	}
	if !hasDType || !hasShape || !hasOffsets {
		return e, j.errorf("tensor %q: needs dtype, shape and data_offsets", name)
	}
	return e, nil
}

// validate checks every entry against dataSize (the bytes after the header)
// and that, sorted by offset, they tile the data region exactly.
func validate(entries []rawEntry, dataStart, dataSize int64) (map[string]TensorInfo, error) {
	type span struct {
		name       string
		begin, end int64
	}
	spans := make([]span, 0, len(entries))
	tensors := make(map[string]TensorInfo, len(entries))
	for _, e := range entries {
		info, err := checkEntry(e, dataSize)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", e.name, err)
		}
		spans = append(spans, span{e.name, e.offsets[0], e.offsets[1]})
		info.Offset += dataStart
		tensors[e.name] = info
	}
	sort.Slice(spans, func(a, b int) bool {
		if spans[a].begin != spans[b].begin {
			return spans[a].begin < spans[b].begin
		}
		if spans[a].end != spans[b].end {
			return spans[a].end < spans[b].end
		}
		return spans[a].name < spans[b].name
	})
	var covered int64
	for _, s := range spans {
		switch {
		case s.begin < covered:
			return nil, fmt.Errorf("%w: tensor %q starts at %d, previous data ends at %d", ErrOverlap, s.name, s.begin, covered)
		case s.begin > covered:
			return nil, fmt.Errorf("%w: bytes %d..%d before tensor %q are unused", ErrHole, covered, s.begin, s.name)
		}
		covered = s.end
	}
	if covered != dataSize {
		return nil, fmt.Errorf("%w: tensors end at %d, data region has %d bytes", ErrIncompleteBuffer, covered, dataSize)
	}
	return tensors, nil
}

// checkEntry validates one entry on its own; Offset is relative to the data.
func checkEntry(e rawEntry, dataSize int64) (TensorInfo, error) {
	dt := DType(e.dtype)
	if dt.Size() == 0 {
		return TensorInfo{}, fmt.Errorf("%w %q (supported: F32, F16, BF16)", ErrDType, e.dtype)
	}
	nbytes, err := byteSize(dt, e.shape)
	if err != nil {
		return TensorInfo{}, err
	}
	if len(e.offsets) != 2 || e.offsets[0] < 0 || e.offsets[1] < e.offsets[0] {
		return TensorInfo{}, fmt.Errorf("%w: got %v", ErrBadOffsets, e.offsets)
	}
	begin, end := e.offsets[0], e.offsets[1]
	if end > dataSize {
		return TensorInfo{}, fmt.Errorf("%w: ends at %d, data region has %d bytes", ErrOutOfBounds, end, dataSize)
	}
	if end-begin != nbytes {
		return TensorInfo{}, fmt.Errorf("%w: %d bytes for %s%v (%d expected)", ErrLength, end-begin, dt, e.shape, nbytes)
	}
	shape := make([]int, len(e.shape))
	for i, d := range e.shape {
		shape[i] = int(d)
	}
	return TensorInfo{Name: e.name, DType: dt, Shape: shape, Offset: begin, Len: nbytes}, nil
}

// byteSize is product(shape)·dt.Size(), refusing overflow.
func byteSize(dt DType, shape []int64) (int64, error) {
	numel, err := elements(shape)
	if err != nil {
		return 0, err
	}
	if numel > math.MaxInt64/int64(dt.Size()) {
		return 0, fmt.Errorf("%w: %v × %d bytes", ErrOverflow, shape, dt.Size())
	}
	return numel * int64(dt.Size()), nil
}

// elements is product(shape), refusing negative dimensions and any product
// beyond math.MaxInt (so NumElements and slice lengths cannot overflow).
func elements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: %v", ErrNegativeDim, shape)
		}
		if d != 0 && n > int64(math.MaxInt)/d {
			// A zero later on would make the product fit, but such a shape
			// is still nonsense; refuse it as the reference crate does.
			return 0, fmt.Errorf("%w: %v", ErrOverflow, shape)
		}
		n *= d
	}
	return n, nil
}
