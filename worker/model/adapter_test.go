package model

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// An adapter held in bf16 (a bf16 host tier) changes only the rounding: it gives exactly the
// logits of the float32 adapter with every value rounded to bf16 first.
func TestBF16AdapterIsTheRoundedAdapter(t *testing.T) {
	m, err := Load(llamaDir, cpuref.New(1))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "testdata", "tiny-llama", "adapters", "sql")
	rounded, err := peft.Load(dir, m.Config.PEFTBase(), peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range rounded.Weights {
		for _, v := range [][]float32{w.A, w.B} {
			for i, x := range v {
				v[i] = safetensors.BF16ToFloat32(safetensors.Float32ToBF16(x))
			}
		}
	}
	half, err := peft.Load(dir, m.Config.PEFTBase(), peft.Options{BF16: true})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{1, 78, 328, 12, 5}
	var logits [2][]float32
	for i, pa := range []*peft.Adapter{rounded, half} {
		a, err := m.LoadAdapter("sql", pa)
		if err != nil {
			t.Fatal(err)
		}
		logits[i] = withAdapter(t, m, a, ids...)
		m.FreeAdapter(a)
	}
	if !slices.Equal(logits[0], logits[1]) {
		t.Fatal("the bf16 adapter's logits differ from the rounded float32 adapter's")
	}
	if slices.Equal(logits[0], prefill(t, m, ids...)) {
		t.Fatal("the adapter changes nothing: the comparison proves nothing")
	}
}
