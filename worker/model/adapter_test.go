package model

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// withAdapter returns the last-position logits of ids with adapter a on every row.
func withAdapter(t *testing.T, m *Model, a *Adapter, ids ...int32) []float32 {
	t.Helper()
	kv := m.NewKVCache(4, 16)
	b := &Batch{Tokens: ids, Adapters: []AdapterRun{{Start: 0, End: len(ids), Adapter: a}}, LogitRows: []int32{int32(len(ids) - 1)},
		Seqs: []gpukern.AttnSeq{{QStart: 0, QLen: len(ids), CtxLen: len(ids), Blocks: []int32{0, 1, 2, 3}}}}
	for i := range ids {
		b.Positions = append(b.Positions, int32(i))
		b.Slots = append(b.Slots, int32(i))
	}
	logits, err := m.Forward(b, kv)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}

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
