package safetensors_test

import (
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// Expected values below were read from the files with Python's struct
// module, independently of this package.

func TestOpenTinyLlamaModel(t *testing.T) {
	f, err := safetensors.Open(filepath.Join(testdata, "tiny-llama/model/model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := f.Names()
	if len(names) != 21 || !slices.IsSorted(names) || names[0] != "lm_head.weight" || names[20] != "model.norm.weight" {
		t.Fatalf("names: %d %v", len(names), names)
	}
	if md := f.Metadata(); !reflect.DeepEqual(md, map[string]string{"format": "pt"}) {
		t.Errorf("metadata %v", md)
	}
	info, ok := f.Info("model.embed_tokens.weight")
	want := safetensors.TensorInfo{Name: "model.embed_tokens.weight", DType: safetensors.BF16,
		Shape: []int{512, 64}, Offset: 8 + 2160 + 65536, Len: 65536}
	if !ok || !reflect.DeepEqual(info, want) || info.NumElements() != 512*64 {
		t.Errorf("Info = %+v, want %+v", info, want)
	}
	checkValues(t, f, "model.layers.0.input_layernorm.weight", 64, map[int]float32{
		0: 0.94140625, 1: 1.03125, 2: 1.0234375, 3: 0.91015625})
	checkValues(t, f, "model.layers.1.mlp.down_proj.weight", 64*160, map[int]float32{
		0: -0.072265625, 1: 0.26171875, 2: -0.298828125})
	if _, err := f.Float32("nope"); !errors.Is(err, safetensors.ErrNotFound) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestOpenAdapters(t *testing.T) {
	f32, err := safetensors.Open(filepath.Join(testdata, "tiny-llama/adapters/tiny/adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f32.Close()
	if n := len(f32.Names()); n != 4 {
		t.Errorf("tiny adapter has %d tensors, want 4", n)
	}
	checkValues(t, f32, "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight", 4*160, map[int]float32{
		0: 0.19355575740337372, 1: 0.11608318984508514, 2: -0.04727957025170326, 639: -0.055840231478214264})

	bf16, err := safetensors.Open(filepath.Join(testdata, "tiny-llama/adapters/chat/adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer bf16.Close()
	checkValues(t, bf16, "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", 32*16, map[int]float32{
		0: -0.000728607177734375, 1: 0.0162353515625, 2: -0.06640625})
}

func checkValues(t *testing.T, f interface {
	Float32(string) ([]float32, error)
}, name string, n int, want map[int]float32) {
	t.Helper()
	got, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%s: %d values, want %d", name, len(got), n)
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("%s[%d] = %v, want %v", name, i, got[i], w)
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	f16 := []byte{0x00, 0x3c, 0x01, 0x00, 0x00, 0xfc} // 1, 2^-24, -Inf
	tensors := []safetensors.Tensor{
		{Name: "w", DType: safetensors.F32, Shape: []int{2, 2}, Data: safetensors.EncodeF32([]float32{1, 2, 3, 4})},
		{Name: "b", DType: safetensors.BF16, Shape: []int{2}, Data: safetensors.EncodeBF16([]float32{0.5, -8})},
		{Name: "h", DType: safetensors.F16, Shape: []int{3}, Data: f16},
		{Name: "s", DType: safetensors.F32, Data: safetensors.EncodeF32([]float32{7})},
	}
	file := encode(t, tensors, map[string]string{"format": "pt", "z": "\"q\""})
	if n := len(file) - 8 - (4*4 + 2*2 + 3*2 + 4); n%8 != 0 {
		t.Errorf("header length %d is not padded to 8", n)
	}
	f, err := safetensors.Open(writeTemp(t, "rt.safetensors", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if md := f.Metadata(); md["z"] != `"q"` || md["format"] != "pt" {
		t.Errorf("metadata %v", md)
	}
	checkValues(t, f, "w", 4, map[int]float32{0: 1, 3: 4})
	checkValues(t, f, "b", 2, map[int]float32{0: 0.5, 1: -8})
	checkValues(t, f, "h", 3, map[int]float32{0: 1, 1: 0x1p-24, 2: float32(negInf())})
	checkValues(t, f, "s", 1, map[int]float32{0: 7})
	if info, _ := f.Info("s"); info.Shape == nil || len(info.Shape) != 0 {
		t.Errorf("scalar shape %#v", info.Shape)
	}
}

func TestWriteRefuses(t *testing.T) {
	ok := safetensors.Tensor{Name: "a", DType: safetensors.F32, Shape: []int{1}, Data: make([]byte, 4)}
	cases := []struct {
		name    string
		tensors []safetensors.Tensor
		want    error
	}{
		{"duplicate", []safetensors.Tensor{ok, ok}, safetensors.ErrDuplicateKey},
		{"metadata name", []safetensors.Tensor{{Name: "__metadata__", DType: "F32", Shape: []int{1}, Data: make([]byte, 4)}}, safetensors.ErrDuplicateKey},
		{"length", []safetensors.Tensor{{Name: "a", DType: "F32", Shape: []int{2}, Data: make([]byte, 4)}}, safetensors.ErrLength},
		{"dtype", []safetensors.Tensor{{Name: "a", DType: "I8", Shape: []int{4}, Data: make([]byte, 4)}}, safetensors.ErrDType},
		{"negative", []safetensors.Tensor{{Name: "a", DType: "F32", Shape: []int{-1}}}, safetensors.ErrNegativeDim},
	}
	for _, c := range cases {
		if err := safetensors.Write(discard{}, c.tensors, nil); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
