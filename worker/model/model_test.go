package model

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

var llamaDir = filepath.Join("..", "..", "testdata", "tiny-llama", "model")

// prefill returns the last-position logits of ids on the base model.
func prefill(t *testing.T, m *Model, ids ...int32) []float32 {
	t.Helper()
	return withAdapter(t, m, nil, ids...)
}

// withAdapter returns the last-position logits of ids with adapter a (nil: none) on every row.
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

// rewrite copies the model directory with its weights rewritten by edit, which receives
// every tensor as float32 and returns the files to write (name → tensors). Several files
// get a model.safetensors.index.json.
func rewrite(t *testing.T, edit func(names []string, data map[string][]float32, shapes map[string][]int) map[string][]safetensors.Tensor) string {
	t.Helper()
	src, err := safetensors.OpenDir(llamaDir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	data, shapes := map[string][]float32{}, map[string][]int{}
	for _, n := range src.Names() {
		info, _ := src.Info(n)
		shapes[n] = info.Shape
		if data[n], err = src.Float32(n); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for _, f := range []string{"config.json", "generation_config.json"} {
		b, err := os.ReadFile(filepath.Join(llamaDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := edit(src.Names(), data, shapes)
	weightMap := map[string]string{}
	for file, tensors := range files {
		for _, tt := range tensors {
			weightMap[tt.Name] = file
		}
		out, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := safetensors.Write(out, tensors, nil); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	if len(files) > 1 {
		b, err := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func f32Tensor(name string, v []float32, shape []int) safetensors.Tensor {
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: safetensors.EncodeF32(v)}
}

// A sharded F32 copy of the bf16 checkpoint holds the same values, so it must give
// bit-identical logits.
func TestShardedF32CheckpointMatches(t *testing.T) {
	dir := rewrite(t, func(names []string, data map[string][]float32, shapes map[string][]int) map[string][]safetensors.Tensor {
		files := map[string][]safetensors.Tensor{}
		for i, n := range names {
			shard := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[i%2]
			files[shard] = append(files[shard], f32Tensor(n, data[n], shapes[n]))
		}
		return files
	})
	orig, err := Load(llamaDir, cpuref.New(0))
	if err != nil {
		t.Fatal(err)
	}
	sharded, err := Load(dir, cpuref.New(0))
	if err != nil {
		t.Fatal(err)
	}
	a, b := prefill(t, orig, 0, 78, 328, 17), prefill(t, sharded, 0, 78, 328, 17)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("logit %d: bf16 checkpoint %v, sharded f32 copy %v", i, a[i], b[i])
		}
	}
}

func TestLoadRefusesBadWeights(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(n string, v []float32, shape []int) (safetensors.Tensor, bool)
		msg  string
	}{
		{"missing tensor", func(n string, v []float32, s []int) (safetensors.Tensor, bool) {
			return f32Tensor(n, v, s), n != "model.layers.1.mlp.up_proj.weight"
		}, "missing tensor model.layers.1.mlp.up_proj.weight"},
		{"wrong shape", func(n string, v []float32, s []int) (safetensors.Tensor, bool) {
			if n == "model.layers.0.self_attn.k_proj.weight" {
				return f32Tensor(n, v, []int{s[1], s[0]}), true
			}
			return f32Tensor(n, v, s), true
		}, "model.layers.0.self_attn.k_proj.weight has shape [64 32]"},
		{"untied without lm_head", func(n string, v []float32, s []int) (safetensors.Tensor, bool) {
			return f32Tensor(n, v, s), n != "lm_head.weight"
		}, "lm_head.weight"},
	} {
		dir := rewrite(t, func(names []string, data map[string][]float32, shapes map[string][]int) map[string][]safetensors.Tensor {
			var ts []safetensors.Tensor
			for _, n := range names {
				if tt, keep := c.edit(n, data[n], shapes[n]); keep {
					ts = append(ts, tt)
				}
			}
			return map[string][]safetensors.Tensor{"model.safetensors": ts}
		})
		_, err := Load(dir, cpuref.New(1))
		if !errors.Is(err, ErrWeights) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want ErrWeights mentioning %q", c.name, err, c.msg)
		}
	}
}

func TestForwardRejectsBadBatches(t *testing.T) {
	m, err := Load(llamaDir, cpuref.New(1))
	if err != nil {
		t.Fatal(err)
	}
	kv := m.NewKVCache(2, 4)
	good := func() *Batch {
		return &Batch{Tokens: []int32{1, 2}, Positions: []int32{0, 1}, Slots: []int32{0, 1},
			Seqs:     []gpukern.AttnSeq{{QStart: 0, QLen: 2, CtxLen: 2, Blocks: []int32{0}}},
			Adapters: []AdapterRun{{Start: 0, End: 2}}, LogitRows: []int32{1}}
	}
	if _, err := m.Forward(good(), kv); err != nil {
		t.Fatalf("good batch: %v", err)
	}
	for name, mutate := range map[string]func(b *Batch){
		"token id":     func(b *Batch) { b.Tokens[0] = 512 },
		"position":     func(b *Batch) { b.Positions[1] = 512 },
		"slot":         func(b *Batch) { b.Slots[1] = 8 },
		"block":        func(b *Batch) { b.Seqs[0].Blocks[0] = 2 },
		"blocks short": func(b *Batch) { b.Seqs[0].CtxLen = 5; b.Seqs[0].QLen = 2 },
		"seq coverage": func(b *Batch) { b.Seqs[0].QLen = 1 },
		"adapter runs": func(b *Batch) { b.Adapters[0].End = 1 },
		"logit row":    func(b *Batch) { b.LogitRows[0] = 2 },
		"lengths":      func(b *Batch) { b.Slots = b.Slots[:1] },
		"empty":        func(b *Batch) { *b = Batch{} },
		"shape only":   func(b *Batch) { b.Adapters[0].Adapter = ShapeOnly("sim", 8, 1<<20) },
	} {
		b := good()
		mutate(b)
		if _, err := m.Forward(b, kv); err == nil {
			t.Errorf("%s: bad batch accepted", name)
		}
	}
}

// Rows sampled on the backend go through the same LM head as rows whose logits come back:
// greedy settings give each row's argmax, and the logits of the other rows are unchanged by
// the sampled rows next to them.
func TestForwardSamplesOnTheBackend(t *testing.T) {
	m, err := Load(llamaDir, cpuref.New(0))
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{1, 17, 42, 7, 99, 3}
	b := &Batch{Tokens: ids, Adapters: []AdapterRun{{Start: 0, End: len(ids)}},
		Seqs: []gpukern.AttnSeq{{QStart: 0, QLen: len(ids), CtxLen: len(ids), Blocks: []int32{0}}}}
	for i := range ids {
		b.Positions = append(b.Positions, int32(i))
		b.Slots = append(b.Slots, int32(i))
	}
	all := []int32{0, 1, 2, 3, 4, 5}
	b.LogitRows = all
	want, err := m.Forward(b, m.NewKVCache(1, 16))
	if err != nil {
		t.Fatal(err)
	}
	b.LogitRows, b.SampleRows = []int32{2}, []int32{5, 0, 3}
	b.Sample = make([]gpukern.SampleParams, 3) // temperature 0: greedy
	got, err := m.Forward(b, m.NewKVCache(1, 16))
	if err != nil {
		t.Fatal(err)
	}
	vocab := m.Config.VocabSize
	if !slices.Equal(got, want[2*vocab:3*vocab]) {
		t.Error("logits of row 2 changed when other rows were sampled on the backend")
	}
	for i, r := range b.SampleRows {
		row := want[int(r)*vocab : int(r+1)*vocab]
		if best := slices.Index(row, slices.Max(row)); int(b.Sampled[i]) != best {
			t.Errorf("row %d: sampled %d, argmax %d", r, b.Sampled[i], best)
		}
	}
	b.Sample = b.Sample[:2]
	if _, err := m.Forward(b, m.NewKVCache(1, 16)); err == nil {
		t.Error("Forward accepted 3 sample rows with 2 parameter sets")
	}
}
