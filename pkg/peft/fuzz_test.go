package peft_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

func FuzzParseConfig(f *testing.F) {
	// One real config verbatim; the others are small, because the fuzzer
	// minimizes each new input, which stalls it on kilobyte-sized inputs.
	data, err := os.ReadFile(filepath.Join(testdata, "tiny-llama/adapters/tiny/adapter_config.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	for _, s := range []string{
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":"model\\.layers\\.\\d+\\.(?P<m>q|v)_proj"}`,
		`{"peft_type":"LORA","target_modules":["q_proj"],"layers_to_transform":1,"layers_pattern":["layers"]}`,
		`{"peft_type":"LORA","target_modules":["q_proj"],"rank_pattern":{"q_proj":4,"q_proj":2}}`,
		`{"peft_type":"LORA","target_modules":"(a+)+$","alpha_pattern":{"(":1}}`,
		`{"peft_type":"LORA","target_modules":["q_proj"],"use_dora":true,"bias":"all"}`,
		`{"peft_type":"LORA","target_modules":["q_proj"],"init_lora_weights":"pissa"} x`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := peft.ParseConfig(data)
		if err != nil {
			return
		}
		if c.R <= 0 || c.PeftType != "LORA" || (len(c.TargetModules) == 0 && c.TargetRegex == "") {
			t.Fatalf("accepted invalid config %+v", c)
		}
		for _, p := range c.RankPattern {
			if p.Rank <= 0 {
				t.Fatalf("accepted rank_pattern %+v", p)
			}
		}
	})
}
