package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

const testdata = "../../testdata"

// craft builds file bytes by hand (not with Write) so that tests can hold
// headers the writer refuses: the 8-byte length, header, then data zero bytes.
func craft(header string, data int) []byte {
	b := make([]byte, 8, 8+len(header)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, data)...)
}

// writeTemp writes b to a fresh file in t's temp dir and returns its path.
func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// encode runs safetensors.Write into memory.
func encode(t *testing.T, tensors []safetensors.Tensor, metadata map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, tensors, metadata); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func byteReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func negInf() float64 { return math.Inf(-1) }
