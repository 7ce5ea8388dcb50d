package peft_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

// Each case edits the config of a copy of the real chat adapter
// (q_proj and v_proj, layers 0 and 1) and expects its own refusal.
func TestLoadRefusesConfigs(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	cases := []struct {
		name    string
		edit    func(m map[string]any)
		want    error
		mention string
	}{
		{"peft type", func(m map[string]any) { m["peft_type"] = "IA3" }, peft.ErrPeftType, "IA3"},
		{"missing peft type", func(m map[string]any) { delete(m, "peft_type") }, peft.ErrPeftType, ""},
		{"dora", func(m map[string]any) { m["use_dora"] = true }, peft.ErrDoRA, ""},
		{"modules to save", func(m map[string]any) { m["modules_to_save"] = []string{"lm_head"} }, peft.ErrModulesToSave, "lm_head"},
		{"bias all", func(m map[string]any) { m["bias"] = "all" }, peft.ErrBias, "all"},
		{"bias lora_only", func(m map[string]any) { m["bias"] = "lora_only" }, peft.ErrBias, "lora_only"},
		{"lora bias", func(m map[string]any) { m["lora_bias"] = true }, peft.ErrLoRABias, ""},
		{"layer replication", func(m map[string]any) { m["layer_replication"] = [][]int{{0, 2}} }, peft.ErrLayerReplication, ""},
		{"target parameters", func(m map[string]any) { m["target_parameters"] = []string{"mlp.experts.gate_up_proj"} }, peft.ErrTargetParameters, ""},
		{"trainable tokens", func(m map[string]any) { m["trainable_token_indices"] = []int{3, 4} }, peft.ErrTrainableTokens, ""},
		{"alora", func(m map[string]any) { m["alora_invocation_tokens"] = []int{5, 6} }, peft.ErrALoRA, ""},
		{"pissa", func(m map[string]any) { m["init_lora_weights"] = "pissa_niter_4" }, peft.ErrInitWeights, "pissa_niter_4"},
		{"loftq", func(m map[string]any) { m["init_lora_weights"] = "loftq" }, peft.ErrInitWeights, "loftq"},
		{"qalora", func(m map[string]any) { m["use_qalora"] = true }, peft.ErrUnsupportedKey, "use_qalora"},
		{"future key", func(m map[string]any) { m["spectral_config"] = map[string]int{"k": 1} }, peft.ErrUnsupportedKey, "spectral_config"},
		{"embed_tokens target", func(m map[string]any) { m["target_modules"] = []string{"q_proj", "embed_tokens"} }, peft.ErrEmbedding, "model.embed_tokens"},
		{"lm_head target", func(m map[string]any) { m["target_modules"] = []string{"lm_head", "v_proj"} }, peft.ErrLMHead, "lm_head"},
		{"embed regex", func(m map[string]any) { m["target_modules"] = `.*(embed_tokens|q_proj)` }, peft.ErrEmbedding, ""},
		{"unknown target", func(m map[string]any) { m["target_modules"] = []string{"q_proj", "v_proj", "w1"} }, peft.ErrTargetNotFound, `"w1"`},
		{"regex matching nothing", func(m map[string]any) { m["target_modules"] = `.*\.attn\.c_attn` }, peft.ErrTargetNotFound, "c_attn"},
		{"layers out of range", func(m map[string]any) { m["layers_to_transform"] = []int{7} }, peft.ErrTargetNotFound, "7"},
		{"other layers_pattern", func(m map[string]any) { m["layers_to_transform"] = 1; m["layers_pattern"] = "h" }, peft.ErrTargetNotFound, ""},
		{"layers on a regex", func(m map[string]any) { m["target_modules"] = `.*q_proj`; m["layers_to_transform"] = 1 }, peft.ErrConfig, "layers_to_transform"},
		{"pattern without layers", func(m map[string]any) { m["layers_pattern"] = "layers" }, peft.ErrConfig, "layers_pattern"},
		{"bad regex", func(m map[string]any) { m["target_modules"] = `(q_proj` }, peft.ErrConfig, "target_modules"},
		{"wrapped-only regex", func(m map[string]any) { m["target_modules"] = `a)|(.*` }, peft.ErrConfig, "target_modules"},
		{"zero rank", func(m map[string]any) { m["r"] = 0 }, peft.ErrConfig, "r must be positive"},
		{"float rank", func(m map[string]any) { m["r"] = 8.5 }, peft.ErrConfig, "r"},
		{"no targets", func(m map[string]any) { m["target_modules"] = nil }, peft.ErrConfig, "target_modules"},
		{"rank pattern float", func(m map[string]any) { m["rank_pattern"] = raw(`{"q_proj": 4.5}`) }, peft.ErrConfig, "rank_pattern"},
		{"rank pattern zero", func(m map[string]any) { m["rank_pattern"] = raw(`{"q_proj": 0}`) }, peft.ErrConfig, "rank_pattern"},
		{"rank pattern mismatch", func(m map[string]any) { m["rank_pattern"] = raw(`{"v_proj": 8}`) }, peft.ErrShape, "v_proj"},
		{"duplicate key", func(m map[string]any) { m["alpha_pattern"] = raw(`{"q_proj": 4, "q_proj": 8}`) }, peft.ErrConfig, "duplicate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyAdapter(t, "tiny-llama", "chat")
			editConfig(t, dir, c.edit)
			_, err := peft.Load(dir, llamaBase, peft.Options{})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %s", err, c.mention)
			}
		})
	}
}

func TestSentinelsDistinct(t *testing.T) {
	errs := []error{peft.ErrPickle, peft.ErrNoWeights, peft.ErrWeightsFile, peft.ErrConfig, peft.ErrPeftType,
		peft.ErrDoRA, peft.ErrModulesToSave, peft.ErrBias, peft.ErrLoRABias, peft.ErrLayerReplication,
		peft.ErrTargetParameters, peft.ErrTrainableTokens, peft.ErrALoRA, peft.ErrInitWeights,
		peft.ErrUnsupportedKey, peft.ErrEmbedding, peft.ErrLMHead, peft.ErrTargetNotFound,
		peft.ErrRankTooLarge, peft.ErrMissingTensor, peft.ErrStrayTensor, peft.ErrShape, peft.ErrBase}
	seen := map[string]bool{}
	for _, e := range errs {
		if !strings.HasPrefix(e.Error(), "peft: ") || seen[e.Error()] {
			t.Errorf("sentinel %q is unprefixed or repeated", e)
		}
		seen[e.Error()] = true
	}
}

// loadEdited loads a copy of a real adapter after editing its config.
func loadEdited(t *testing.T, set, name string, b peft.Base, edit func(map[string]any), tensors func([]tensor) []tensor) *peft.Adapter {
	t.Helper()
	dir := copyAdapter(t, set, name)
	editConfig(t, dir, edit)
	if tensors != nil {
		editTensors(t, dir, tensors)
	}
	a, err := peft.Load(dir, b, peft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func targetsOf(a *peft.Adapter) map[peft.Target]bool {
	out := map[peft.Target]bool{}
	for tg := range a.Weights {
		out[tg] = true
	}
	return out
}

func sameTargets(t *testing.T, got *peft.Adapter, want []peft.Target) {
	t.Helper()
	g := targetsOf(got)
	if len(g) != len(want) {
		t.Fatalf("targets %v, want %v", g, want)
	}
	for _, w := range want {
		if !g[w] {
			t.Errorf("missing target %+v (have %v)", w, g)
		}
	}
}

func TestRegexTargetModules(t *testing.T) {
	want := []peft.Target{{0, "q_proj"}, {0, "v_proj"}, {1, "q_proj"}, {1, "v_proj"}}
	for _, re := range []string{
		`model\.layers\.\d+\.self_attn\.(q|v)_proj`,
		`.*\.(?P<which>q|v)_proj`, // Python named group
		`.*(q_proj|v_proj)`,
	} {
		a := loadEdited(t, "tiny-llama", "chat", llamaBase, func(m map[string]any) { m["target_modules"] = re }, nil)
		sameTargets(t, a, want)
		if a.Config.TargetRegex != re || a.Config.TargetModules != nil {
			t.Errorf("config %+v", a.Config)
		}
	}
}

func TestAllLinear(t *testing.T) {
	a := loadEdited(t, "tiny-llama", "sql", llamaBase, func(m map[string]any) { m["target_modules"] = "ALL-LINEAR" }, nil)
	if len(a.Weights) != 14 {
		t.Errorf("%d weights, want 14", len(a.Weights))
	}
}

func TestExactPathTarget(t *testing.T) {
	// An exact path is targeted even outside layers_to_transform, as in PEFT.
	keep := func(ts []tensor) []tensor {
		var out []tensor
		for _, x := range ts {
			if strings.Contains(x.name, "layers.0.self_attn.q_proj") || strings.Contains(x.name, "layers.1.self_attn.v_proj") {
				out = append(out, x)
			}
		}
		return out
	}
	a := loadEdited(t, "tiny-llama", "chat", llamaBase, func(m map[string]any) {
		m["target_modules"] = []string{"model.layers.0.self_attn.q_proj", "v_proj"}
		m["layers_to_transform"] = []int{1}
	}, keep)
	sameTargets(t, a, []peft.Target{{0, "q_proj"}, {1, "v_proj"}})
}

func TestLayersToTransform(t *testing.T) {
	want := []peft.Target{{1, "o_proj"}, {1, "down_proj"}}
	for _, edit := range []func(map[string]any){
		func(m map[string]any) { m["layers_to_transform"] = 1 },
		func(m map[string]any) { m["layers_to_transform"] = 1; m["layers_pattern"] = "layers" },
		func(m map[string]any) {
			m["layers_to_transform"] = []int{1}
			m["layers_pattern"] = []string{"h", "layers"}
		},
	} {
		a := loadEdited(t, "tiny-llama", "tiny", llamaBase, edit, nil)
		sameTargets(t, a, want)
		if w := a.Weights[peft.Target{1, "o_proj"}]; w.Scale != 4 {
			t.Errorf("rslora scale %v, want 8/sqrt(4) = 4", w.Scale)
		}
	}
}

func TestExcludeModules(t *testing.T) {
	drop := func(ts []tensor) []tensor {
		var out []tensor
		for _, x := range ts {
			if !strings.Contains(x.name, "layers.0.mlp.down_proj") {
				out = append(out, x)
			}
		}
		return out
	}
	for _, ex := range []any{[]string{"model.layers.0.mlp.down_proj"}, `model\.layers\.0\.mlp\.down_proj`} {
		a := loadEdited(t, "tiny-llama", "sql", llamaBase, func(m map[string]any) { m["exclude_modules"] = ex }, drop)
		if len(a.Weights) != 13 || a.Weights[peft.Target{0, "down_proj"}] != nil {
			t.Errorf("exclude %v: %d weights", ex, len(a.Weights))
		}
	}
}

// The sql adapter has r=8, lora_alpha=16 on all seven modules.
func TestRankAndAlphaPatterns(t *testing.T) {
	a := loadEdited(t, "tiny-llama", "sql", llamaBase, func(m map[string]any) {
		// First match wins: every q_proj gets rank 4, the layer-0 key never applies.
		m["rank_pattern"] = json.RawMessage(`{"self_attn.q_proj": 4, "model.layers.0.self_attn.q_proj": 2, "mlp\\.(up|gate)_proj": 2}`)
		// "_proj" must not match "q_proj": a key matches whole dot-separated parts.
		m["alpha_pattern"] = json.RawMessage(`{"_proj": 1000, "layers.1.mlp.down_proj": 64}`)
	}, func(ts []tensor) []tensor {
		return cutRank(cutRank(cutRank(ts, "q_proj", 4), "up_proj", 2), "gate_proj", 2)
	})
	want := map[peft.Target]struct {
		rank  int
		scale float32
	}{
		{0, "q_proj"}: {4, 16.0 / 4}, {1, "q_proj"}: {4, 16.0 / 4},
		{0, "up_proj"}: {2, 16.0 / 2}, {1, "gate_proj"}: {2, 16.0 / 2},
		{0, "down_proj"}: {8, 16.0 / 8}, {1, "down_proj"}: {8, 64.0 / 8},
		{1, "v_proj"}: {8, 16.0 / 8},
	}
	for tg, w := range want {
		got := a.Weights[tg]
		if got == nil || got.Rank != w.rank || got.Scale != w.scale {
			t.Errorf("%+v: got %+v, want rank %d scale %v", tg, got, w.rank, w.scale)
		}
	}
	if a.MaxRank() != 8 {
		t.Errorf("max rank %d", a.MaxRank())
	}
	if p := a.Config.RankPattern; len(p) != 3 || p[0].Key != "self_attn.q_proj" || p[2].Rank != 2 {
		t.Errorf("rank_pattern order lost: %+v", p)
	}
}

func TestIgnoredKeys(t *testing.T) {
	a := loadEdited(t, "tiny-llama", "chat", llamaBase, func(m map[string]any) {
		m["fan_in_fan_out"] = true          // PEFT forces False for nn.Linear
		m["some_new_feature"] = nil         // unknown but unset
		m["another_new_flag"] = false       // unknown but unset
		m["init_lora_weights"] = "gaussian" // initialisation only
		m["lora_dropout"] = 0.1             // training only
	}, nil)
	if !a.Config.FanInFanOut || len(a.Weights) != 4 {
		t.Errorf("config %+v, %d weights", a.Config, len(a.Weights))
	}
}

func TestParseConfigRealFiles(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(testdata, "*/adapters/*/adapter_config.json"))
	if err != nil || len(paths) != 5 {
		t.Fatalf("found %v (%v)", paths, err)
	}
	c := mustParseFile(t, filepath.Join(testdata, "tiny-llama/adapters/tiny/adapter_config.json"))
	if c.R != 4 || c.LoraAlpha != 8 || !c.UseRSLoRA || len(c.LayersToTransform) != 1 || c.LayersToTransform[0] != 1 ||
		len(c.TargetModules) != 2 || c.TargetModules[0] != "o_proj" || c.PeftType != "LORA" {
		t.Errorf("tiny config %+v", c)
	}
	for _, p := range paths {
		mustParseFile(t, p)
	}
}
