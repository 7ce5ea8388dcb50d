package safetensors_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// Each case is a real crafted broken file, opened from disk.
func TestOpenRefusesBrokenFiles(t *testing.T) {
	const f32x2 = `"dtype":"F32","shape":[2]`
	hugeLen := make([]byte, 16)
	binary.LittleEndian.PutUint64(hugeLen, 200_000_000)
	beyond := make([]byte, 100)
	binary.LittleEndian.PutUint64(beyond, 1000)
	cases := []struct {
		name    string
		file    []byte
		want    error
		mention string // the message must name this
	}{
		{"file too small", []byte{1, 2, 3, 4}, safetensors.ErrFileTooSmall, ""},
		{"header above default cap", hugeLen, safetensors.ErrHeaderTooLarge, "200000000"},
		{"header beyond file", beyond, safetensors.ErrHeaderBeyondFile, "1000"},
		{"empty header", craft("", 0), safetensors.ErrHeaderStart, ""},
		{"leading space", craft(` {}`, 0), safetensors.ErrHeaderStart, ""},
		{"array header", craft(`[]`, 0), safetensors.ErrHeaderStart, ""},
		{"invalid utf-8", craft("{\"\xff\":{}}", 0), safetensors.ErrHeaderUTF8, ""},
		{"truncated json", craft(`{"a":{`+f32x2, 0), safetensors.ErrHeaderJSON, ""},
		{"trailing garbage", craft(`{} x`, 0), safetensors.ErrHeaderJSON, ""},
		{"second object", craft(`{}{}`, 0), safetensors.ErrHeaderJSON, ""},
		{"entry not object", craft(`{"a":[1]}`, 0), safetensors.ErrHeaderJSON, ""},
		{"missing offsets", craft(`{"a":{`+f32x2+`}}`, 8), safetensors.ErrHeaderJSON, "data_offsets"},
		{"shape not integers", craft(`{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}`, 8), safetensors.ErrHeaderJSON, ""},
		{"dtype not string", craft(`{"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}}`, 8), safetensors.ErrHeaderJSON, ""},
		{"duplicate tensor", craft(`{"a":{`+f32x2+`,"data_offsets":[0,8]},"a":{`+f32x2+`,"data_offsets":[8,16]}}`, 16), safetensors.ErrDuplicateKey, `"a"`},
		{"duplicate field", craft(`{"a":{`+f32x2+`,"dtype":"F16","data_offsets":[0,8]}}`, 8), safetensors.ErrDuplicateKey, "dtype"},
		{"duplicate metadata key", craft(`{"__metadata__":{"k":"1","k":"2"}}`, 0), safetensors.ErrDuplicateKey, `"k"`},
		{"metadata number value", craft(`{"__metadata__":{"k":1}}`, 0), safetensors.ErrMetadata, `"k"`},
		{"metadata null value", craft(`{"__metadata__":{"k":null}}`, 0), safetensors.ErrMetadata, ""},
		{"metadata array", craft(`{"__metadata__":["k"]}`, 0), safetensors.ErrMetadata, ""},
		{"dtype I64", craft(`{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, 8), safetensors.ErrDType, "I64"},
		{"negative dim", craft(`{"a":{"dtype":"F32","shape":[-2,-4],"data_offsets":[0,32]}}`, 32), safetensors.ErrNegativeDim, ""},
		{"shape product overflow", craft(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}`, 0), safetensors.ErrOverflow, ""},
		{"byte size overflow", craft(`{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}`, 0), safetensors.ErrOverflow, ""},
		{"dim beyond int64", craft(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,0]}}`, 0), safetensors.ErrOverflow, ""},
		{"offsets reversed", craft(`{"a":{`+f32x2+`,"data_offsets":[8,0]}}`, 8), safetensors.ErrBadOffsets, ""},
		{"one offset", craft(`{"a":{`+f32x2+`,"data_offsets":[8]}}`, 8), safetensors.ErrBadOffsets, ""},
		{"negative offset", craft(`{"a":{`+f32x2+`,"data_offsets":[-8,0]}}`, 8), safetensors.ErrBadOffsets, ""},
		{"outside file", craft(`{"a":{`+f32x2+`,"data_offsets":[0,8]}}`, 4), safetensors.ErrOutOfBounds, `"a"`},
		{"length mismatch", craft(`{"a":{`+f32x2+`,"data_offsets":[0,4]}}`, 4), safetensors.ErrLength, `"a"`},
		{"overlap", craft(`{"a":{`+f32x2+`,"data_offsets":[0,8]},"b":{`+f32x2+`,"data_offsets":[4,12]}}`, 12), safetensors.ErrOverlap, `"b"`},
		{"empty tensor inside another", craft(`{"a":{`+f32x2+`,"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}`, 8), safetensors.ErrOverlap, `"z"`},
		{"hole at start", craft(`{"a":{`+f32x2+`,"data_offsets":[4,12]}}`, 12), safetensors.ErrHole, `"a"`},
		{"hole between", craft(`{"a":{`+f32x2+`,"data_offsets":[0,8]},"b":{`+f32x2+`,"data_offsets":[12,20]}}`, 20), safetensors.ErrHole, `"b"`},
		{"trailing data", craft(`{"a":{`+f32x2+`,"data_offsets":[0,8]}}`, 12), safetensors.ErrIncompleteBuffer, ""},
		{"no tensors but data", craft(`{}`, 4), safetensors.ErrIncompleteBuffer, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "broken.safetensors", c.file)
			f, err := safetensors.Open(path)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %s", err, c.mention)
			}
		})
	}
}

// The sentinels must be distinct so that each refusal is identifiable.
func TestSentinelsDistinct(t *testing.T) {
	errs := []error{
		safetensors.ErrFileTooSmall, safetensors.ErrHeaderTooLarge, safetensors.ErrHeaderBeyondFile,
		safetensors.ErrHeaderStart, safetensors.ErrHeaderUTF8, safetensors.ErrHeaderJSON,
		safetensors.ErrDuplicateKey, safetensors.ErrMetadata, safetensors.ErrDType,
		safetensors.ErrNegativeDim, safetensors.ErrOverflow, safetensors.ErrBadOffsets,
		safetensors.ErrOutOfBounds, safetensors.ErrLength, safetensors.ErrOverlap, safetensors.ErrHole,
		safetensors.ErrIncompleteBuffer, safetensors.ErrNotFound, safetensors.ErrNoWeights,
		safetensors.ErrIndex, safetensors.ErrShardName, safetensors.ErrShardMissing, safetensors.ErrShardMismatch,
	}
	seen := map[string]bool{}
	for _, e := range errs {
		if !strings.HasPrefix(e.Error(), "safetensors: ") || seen[e.Error()] {
			t.Errorf("sentinel %q is unprefixed or repeated", e)
		}
		seen[e.Error()] = true
	}
}

func TestConfigurableHeaderCap(t *testing.T) {
	file := craft(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8)
	path := writeTemp(t, "ok.safetensors", file)
	if _, err := safetensors.OpenWith(path, safetensors.Options{MaxHeaderBytes: 16}); !errors.Is(err, safetensors.ErrHeaderTooLarge) {
		t.Fatalf("cap 16: got %v, want ErrHeaderTooLarge", err)
	}
	f, err := safetensors.OpenWith(path, safetensors.Options{MaxHeaderBytes: 1 << 10})
	if err != nil {
		t.Fatalf("cap 1 KiB: %v", err)
	}
	f.Close()
}

func TestPaddingAndUnknownFieldsAccepted(t *testing.T) {
	header := `{"__metadata__":null,"a":{"dtype":"BF16","shape":[],"data_offsets":[0,2],"extra":[1,{"x":2}]},` +
		`"e":{"dtype":"F16","shape":[3,0],"data_offsets":[2,2]}}` + "   \t\n "
	file := craft(header, 2)
	md, tensors, err := safetensors.ParseHeader(byteReader(file), int64(len(file)), safetensors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(md) != 0 || len(tensors) != 2 {
		t.Fatalf("metadata %v, tensors %v", md, tensors)
	}
	a := tensors["a"]
	if a.NumElements() != 1 || a.Offset != int64(8+len(header)) || a.Len != 2 {
		t.Errorf("scalar tensor: %+v", a)
	}
	if e := tensors["e"]; e.NumElements() != 0 || e.Len != 0 {
		t.Errorf("empty tensor: %+v", e)
	}
}

// countingReader records the furthest byte read, to show that ParseHeader
// touches only the header even when the header claims huge tensors.
type countingReader struct {
	b    []byte
	last int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.last = max(c.last, off+int64(len(p)))
	return byteReader(c.b).ReadAt(p, off)
}

func TestParseHeaderReadsOnlyHeader(t *testing.T) {
	header := `{"big":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}`
	file := craft(header, 64)
	r := &countingReader{b: file}
	_, _, err := safetensors.ParseHeader(r, int64(len(file)), safetensors.Options{})
	if !errors.Is(err, safetensors.ErrOutOfBounds) {
		t.Fatalf("got %v, want ErrOutOfBounds", err)
	}
	if r.last != int64(8+len(header)) {
		t.Errorf("read up to byte %d, header ends at %d", r.last, 8+len(header))
	}
}
