package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// Tensor is one tensor to Write; Data holds little-endian elements.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Write writes a safetensors file holding tensors in the given order and
// metadata as __metadata__ (omitted when empty). The header is padded with
// spaces to a multiple of 8 bytes, as the reference writer does. It refuses
// what ParseHeader would refuse: unsupported dtypes, negative dimensions,
// data whose length does not match the shape, and duplicate names.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	header, err := buildHeader(tensors, metadata)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

func buildHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if len(metadata) > 0 {
		writeMetadata(&b, metadata)
	}
	seen := map[string]bool{"__metadata__": true}
	var offset int64
	for i, t := range tensors {
		if seen[t.Name] {
			return nil, fmt.Errorf("%w %q", ErrDuplicateKey, t.Name)
		}
		seen[t.Name] = true
		if err := checkTensor(t); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if i > 0 || len(metadata) > 0 {
			b.WriteByte(',')
		}
		end := offset + int64(len(t.Data))
		fmt.Fprintf(&b, `%s:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`,
			quote(t.Name), t.DType, shapeJSON(t.Shape), offset, end)
		offset = end
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes(), nil
}

func checkTensor(t Tensor) error {
	if t.DType.Size() == 0 {
		return fmt.Errorf("%w %q", ErrDType, t.DType)
	}
	shape := make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		shape[i] = int64(d)
	}
	nbytes, err := byteSize(t.DType, shape)
	if err != nil {
		return err
	}
	if int64(len(t.Data)) != nbytes {
		return fmt.Errorf("%w: %d bytes for %s%v", ErrLength, len(t.Data), t.DType, t.Shape)
	}
	return nil
}

func writeMetadata(b *bytes.Buffer, metadata map[string]string) {
	keys := make([]string, 0, len(metadata))
	for k := range metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b.WriteString(`"__metadata__":{`)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(quote(k) + ":" + quote(metadata[k]))
	}
	b.WriteByte('}')
}

func shapeJSON(shape []int) string {
	if shape == nil {
		shape = []int{} // a scalar is "shape":[], never null
	}
	out, _ := json.Marshal(shape) // []int always marshals
	return string(out)
}

func quote(s string) string {
	out, _ := json.Marshal(s) // strings always marshal
	return string(out)
}
