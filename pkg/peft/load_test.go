package peft_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

var (
	attnQV     = []string{"q_proj", "v_proj"}
	attnAll    = []string{"q_proj", "k_proj", "v_proj", "o_proj"}
	allModules = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
)

// Expected ranks and scales come from each adapter_config.json by hand:
// scale = lora_alpha/r, or lora_alpha/sqrt(r) with use_rslora.
func TestLoadRealAdapters(t *testing.T) {
	cases := []struct {
		set, name string
		base      peft.Base
		rank      int
		scale     float32
		layers    []int
		modules   []string
		bytes     int64
	}{
		{"tiny-llama", "chat", llamaBase, 16, 32.0 / 16, []int{0, 1}, attnQV, 2 * 4 * (16*64 + 64*16 + 16*64 + 32*16)},
		{"tiny-llama", "sql", llamaBase, 8, 16.0 / 8, []int{0, 1}, allModules, 2 * 4 * 8 * (64 + 64 + 64 + 32 + 64 + 32 + 64 + 64 + 64 + 160 + 64 + 160 + 160 + 64)},
		{"tiny-llama", "tiny", llamaBase, 4, 8.0 / 2, []int{1}, []string{"o_proj", "down_proj"}, 4 * 4 * (64 + 64 + 160 + 64)},
		{"tiny-qwen2", "legal", qwenBase, 32, 16.0 / 32, []int{0, 1}, attnAll, 2 * 4 * 32 * (96 + 96 + 96 + 32 + 96 + 32 + 96 + 96)},
		{"tiny-qwen2", "support", qwenBase, 8, 16.0 / 8, []int{0, 1}, allModules, 2 * 4 * 8 * (96 + 96 + 96 + 32 + 96 + 32 + 96 + 96 + 96 + 192 + 96 + 192 + 192 + 96)},
	}
	for _, c := range cases {
		t.Run(c.set+"/"+c.name, func(t *testing.T) {
			a, err := peft.Load(filepath.Join(testdata, c.set, "adapters", c.name), c.base, peft.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if a.Config.BaseModelNameOrPath != c.set || a.MaxRank() != c.rank || a.Bytes() != c.bytes {
				t.Errorf("base %q, max rank %d, bytes %d", a.Config.BaseModelNameOrPath, a.MaxRank(), a.Bytes())
			}
			if len(a.Weights) != len(c.layers)*len(c.modules) {
				t.Errorf("%d weights, want %d", len(a.Weights), len(c.layers)*len(c.modules))
			}
			for _, l := range c.layers {
				for _, m := range c.modules {
					checkLoRA(t, a, peft.Target{Layer: l, Module: m}, c.base, c.rank, c.scale)
				}
			}
		})
	}
}

func checkLoRA(t *testing.T, a *peft.Adapter, tg peft.Target, b peft.Base, rank int, scale float32) {
	t.Helper()
	w := a.Weights[tg]
	i := slices.IndexFunc(b.Modules, func(m peft.Module) bool { return m.Name == tg.Module })
	if w == nil || i < 0 {
		t.Fatalf("%+v: not loaded", tg)
	}
	m := b.Modules[i]
	if w.Rank != rank || w.In != m.In || w.Out != m.Out || w.Scale != scale ||
		len(w.A) != rank*m.In || len(w.B) != m.Out*rank {
		t.Errorf("%+v: rank %d in %d out %d scale %v |A| %d |B| %d", tg, w.Rank, w.In, w.Out, w.Scale, len(w.A), len(w.B))
	}
}

// Values read from the files with Python's struct module.
func TestLoadValues(t *testing.T) {
	a, err := peft.Load(filepath.Join(testdata, "tiny-llama/adapters/tiny"), llamaBase, peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	down := a.Weights[peft.Target{Layer: 1, Module: "down_proj"}]
	if down.A[0] != 0.19355575740337372 || down.A[3*160+159] != -0.055840231478214264 ||
		down.B[1*4+0] != -0.004576534498482943 || down.B[63*4+3] != -0.21684662997722626 {
		t.Errorf("down_proj A[0]=%v A[3,159]=%v B[1,0]=%v B[63,3]=%v", down.A[0], down.A[639], down.B[4], down.B[255])
	}
	q, err := peft.Load(filepath.Join(testdata, "tiny-qwen2/adapters/legal"), qwenBase, peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k := q.Weights[peft.Target{Layer: 1, Module: "k_proj"}]
	if k.A[0] != 0.1875 || k.A[32*96-1] != -0.0966796875 {
		t.Errorf("k_proj A[0]=%v A[last]=%v", k.A[0], k.A[32*96-1])
	}
}

// With BF16, A and B are held in bfloat16 only: each value the float32 load's rounded to
// the nearest bf16, in half the bytes. The Qwen2 adapter's values are bf16 already: 0.1875
// is 0x3E40 and -0.0966796875 is 0xBDC6.
func TestLoadBF16(t *testing.T) {
	dir := filepath.Join(testdata, "tiny-qwen2/adapters/legal")
	f32, err := peft.Load(dir, qwenBase, peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bf, err := peft.Load(dir, qwenBase, peft.Options{BF16: true})
	if err != nil {
		t.Fatal(err)
	}
	if bf.Bytes()*2 != f32.Bytes() || len(bf.Weights) != len(f32.Weights) {
		t.Fatalf("bf16 load: %d bytes in %d modules, float32 %d in %d", bf.Bytes(), len(bf.Weights), f32.Bytes(), len(f32.Weights))
	}
	k := bf.Weights[peft.Target{Layer: 1, Module: "k_proj"}]
	if k.A != nil || k.B != nil || k.A16[0] != 0x3E40 || k.A16[32*96-1] != 0xBDC6 {
		t.Errorf("k_proj: float32 %v %v, A16[0] %#x A16[last] %#x", k.A != nil, k.B != nil, k.A16[0], k.A16[32*96-1])
	}
	for tg, w := range f32.Weights {
		got := bf.Weights[tg]
		for i, x := range w.A {
			if got.A16[i] != safetensors.Float32ToBF16(x) {
				t.Fatalf("%+v A[%d]: %#x, want %v rounded", tg, i, got.A16[i], x)
			}
		}
		for i, x := range w.B {
			if got.B16[i] != safetensors.Float32ToBF16(x) {
				t.Fatalf("%+v B[%d]: %#x, want %v rounded", tg, i, got.B16[i], x)
			}
		}
	}
}

func TestLoadRefusesBrokenWeights(t *testing.T) {
	cases := []struct {
		name string
		dir  func(t *testing.T) string
		base peft.Base
		opts peft.Options
		want []error
	}{
		{"truncated", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			path := filepath.Join(dir, "adapter_model.safetensors")
			st, _ := os.Stat(path)
			if err := os.Truncate(path, st.Size()-100); err != nil {
				t.Fatal(err)
			}
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrWeightsFile, safetensors.ErrOutOfBounds}},
		{"wrong shape", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			editTensors(t, dir, func(ts []tensor) []tensor {
				ts[0].shape, ts[0].data = []int{4, 64}, ts[0].data[:4*64] // down_proj A needs in=160
				return ts
			})
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrShape}},
		{"rank 128 above max", rank128, llamaBase, peft.Options{}, []error{peft.ErrRankTooLarge}},
		{"rank 128 above lowered max", rank128, llamaBase, peft.Options{MaxRank: 100}, []error{peft.ErrRankTooLarge}},
		{"other base model", func(t *testing.T) string {
			return copyAdapter(t, "tiny-qwen2", "legal")
		}, llamaBase, peft.Options{}, []error{peft.ErrShape}},
		{"missing lora_B", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			editTensors(t, dir, func(ts []tensor) []tensor { return ts[:3] })
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrMissingTensor}},
		{"stray tensor", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			editTensors(t, dir, func(ts []tensor) []tensor {
				return append(ts, tensor{"base_model.model.model.layers.1.mlp.down_proj.lora_magnitude_vector", safetensors.F32, []int{64}, make([]float32, 64)})
			})
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrStrayTensor}},
		{"untargeted module", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			editTensors(t, dir, func(ts []tensor) []tensor {
				ts[0].name = strings.Replace(ts[0].name, "layers.1", "layers.0", 1) // layer 0 is not transformed
				return ts
			})
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrStrayTensor}},
		{"both spellings", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			editTensors(t, dir, func(ts []tensor) []tensor {
				dup := ts[0]
				dup.name = strings.Replace(dup.name, ".lora_A.weight", ".lora_A.default.weight", 1)
				return append(ts, dup)
			})
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrStrayTensor}},
		{"pickle only", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			os.Remove(filepath.Join(dir, "adapter_model.safetensors"))
			// A pickle opcode stream: never to be read, let alone run.
			if err := os.WriteFile(filepath.Join(dir, "adapter_model.bin"), []byte("\x80\x02cos\nsystem\n."), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrPickle}},
		{"no weights", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			os.Remove(filepath.Join(dir, "adapter_model.safetensors"))
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrNoWeights}},
		{"no config", func(t *testing.T) string {
			dir := copyAdapter(t, "tiny-llama", "tiny")
			os.Remove(filepath.Join(dir, "adapter_config.json"))
			return dir
		}, llamaBase, peft.Options{}, []error{peft.ErrConfig, os.ErrNotExist}},
		{"invalid base", func(t *testing.T) string {
			return copyAdapter(t, "tiny-llama", "tiny")
		}, peft.Base{NumLayers: 2}, peft.Options{}, []error{peft.ErrBase}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := peft.Load(c.dir(t), c.base, c.opts)
			for _, want := range c.want {
				if !errors.Is(err, want) {
					t.Errorf("got %v, want %v", err, want)
				}
			}
		})
	}
}

// rank128 rewrites the tiny adapter at rank 128 (config and tensors agree).
func rank128(t *testing.T) string {
	dir := copyAdapter(t, "tiny-llama", "tiny")
	editConfig(t, dir, func(m map[string]any) { m["r"] = 128 })
	editTensors(t, dir, func(ts []tensor) []tensor {
		for i, x := range ts {
			if strings.Contains(x.name, "lora_A") {
				ts[i].shape = []int{128, x.shape[1]}
			} else {
				ts[i].shape = []int{x.shape[0], 128}
			}
			ts[i].data = make([]float32, ts[i].shape[0]*ts[i].shape[1])
		}
		return ts
	})
	return dir
}

func TestLoadRank128WithHigherMax(t *testing.T) {
	a, err := peft.Load(rank128(t), llamaBase, peft.Options{MaxRank: 128})
	if err != nil {
		t.Fatal(err)
	}
	if a.MaxRank() != 128 {
		t.Errorf("max rank %d", a.MaxRank())
	}
}

func TestPickleMessage(t *testing.T) {
	if msg := peft.ErrPickle.Error(); !strings.Contains(msg, "convert") || !strings.Contains(msg, "safetensors") {
		t.Errorf("pickle refusal %q does not say to convert to safetensors", msg)
	}
}

func TestLoadDefaultSpelling(t *testing.T) {
	dir := copyAdapter(t, "tiny-llama", "chat")
	editTensors(t, dir, func(ts []tensor) []tensor {
		for i := range ts {
			ts[i].name = strings.Replace(ts[i].name, ".weight", ".default.weight", 1)
		}
		return ts
	})
	a, err := peft.Load(dir, llamaBase, peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Weights) != 4 {
		t.Errorf("%d weights", len(a.Weights))
	}
}
