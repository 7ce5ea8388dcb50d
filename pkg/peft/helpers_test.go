package peft_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

const testdata = "../../testdata"

// base builds the Base of a Llama-style model from its dimensions.
func base(layers, hidden, heads, kvHeads, headDim, inter int) peft.Base {
	q, kv := heads*headDim, kvHeads*headDim
	return peft.Base{NumLayers: layers, Modules: []peft.Module{
		{Name: "q_proj", Path: "self_attn.q_proj", In: hidden, Out: q},
		{Name: "k_proj", Path: "self_attn.k_proj", In: hidden, Out: kv},
		{Name: "v_proj", Path: "self_attn.v_proj", In: hidden, Out: kv},
		{Name: "o_proj", Path: "self_attn.o_proj", In: q, Out: hidden},
		{Name: "gate_proj", Path: "mlp.gate_proj", In: hidden, Out: inter},
		{Name: "up_proj", Path: "mlp.up_proj", In: hidden, Out: inter},
		{Name: "down_proj", Path: "mlp.down_proj", In: inter, Out: hidden},
	}}
}

// Dimensions from testdata/*/model/config.json.
var (
	llamaBase = base(2, 64, 4, 2, 16, 160)
	qwenBase  = base(2, 96, 6, 2, 16, 192)
)

// copyAdapter copies a real adapter directory into a fresh temp dir.
func copyAdapter(t *testing.T, set, name string) string {
	t.Helper()
	src := filepath.Join(testdata, set, "adapters", name)
	dir := t.TempDir()
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// editConfig rewrites dir's adapter_config.json through a generic map;
// values may be json.RawMessage to keep a key order.
func editConfig(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "adapter_config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.MarshalIndent(m, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tensor is a decoded adapter tensor that tests may change.
type tensor struct {
	name  string
	dtype safetensors.DType
	shape []int
	data  []float32
}

func readTensors(t *testing.T, dir string) []tensor {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tensor
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		data, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tensor{name, info.DType, info.Shape, data})
	}
	return out
}

// writeTensors replaces dir's adapter_model.safetensors with pkg/safetensors' Write.
func writeTensors(t *testing.T, dir string, tensors []tensor) {
	t.Helper()
	var st []safetensors.Tensor
	for _, x := range tensors {
		data := safetensors.EncodeF32(x.data)
		if x.dtype == safetensors.BF16 {
			data = safetensors.EncodeBF16(x.data)
		}
		st = append(st, safetensors.Tensor{Name: x.name, DType: x.dtype, Shape: x.shape, Data: data})
	}
	f, err := os.Create(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := safetensors.Write(f, st, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

// editTensors rewrites the weights of dir through edit.
func editTensors(t *testing.T, dir string, edit func([]tensor) []tensor) {
	t.Helper()
	writeTensors(t, dir, edit(readTensors(t, dir)))
}

// cutRank keeps the first r ranks of the lora_A / lora_B tensors whose name
// contains sub: rows of A [rank, in], columns of B [out, rank].
func cutRank(ts []tensor, sub string, r int) []tensor {
	for i, x := range ts {
		if !strings.Contains(x.name, sub) {
			continue
		}
		rows, cols := x.shape[0], x.shape[1]
		if strings.Contains(x.name, "lora_A") {
			ts[i].shape, ts[i].data = []int{r, cols}, x.data[:r*cols]
			continue
		}
		out := make([]float32, 0, rows*r)
		for row := range rows {
			out = append(out, x.data[row*cols:row*cols+r]...)
		}
		ts[i].shape, ts[i].data = []int{rows, r}, out
	}
	return ts
}

func mustParseFile(t *testing.T, path string) peft.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := peft.ParseConfig(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}
