package routing

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

func TestReportComparesBoundedWithLeastLoaded(t *testing.T) {
	c := Config{Alphas: []float64{1}, Loads: []float64{0.9}, Policies: []Policy{{"bounded", 1.25}, {Name: "least-loaded"}}, TimeScale: 10}
	rep := &Report{Command: "lorafleet bench routing", Config: c, Capacity: 100, Results: []Result{
		{Policy: Policy{"bounded", 1.25}, Alpha: 1, Load: 0.9, ColdLoads: 40, TTFTP99: 30, MaxLoad: 12, MeanLoad: 10, WithinBound: 0.8},
		{Policy: Policy{Name: "least-loaded"}, Alpha: 1, Load: 0.9, ColdLoads: 200, TTFTP99: 50, MaxLoad: 11, MeanLoad: 10},
	}}
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	// 200 / 40 = 5.0×; 12 ≤ 1.25 × 10 + 1.
	if want := "| 1 | 90% | 5.0× | 30 / 50 | yes | 80% |"; !strings.Contains(string(md), want) {
		t.Errorf("results.md lacks %q:\n%s", want, md)
	}
	again, err := ReadReport(filepath.Join(dir, "results.json"))
	if err != nil || again.Command != rep.Command || len(again.Results) != 2 || again.Results[1] != rep.Results[1] {
		t.Fatalf("read back %+v, %v", again, err)
	}
	for _, f := range []string{"cold_loads_90.png", "ttft_p99_90.png"} {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(fh); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		fh.Close()
	}
}

// The simulated adapters are real PEFT adapters that the worker's loader accepts.
func TestMakeAdapters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "adapters")
	names, err := makeAdapters(dir, "../../testdata/tiny-llama/adapters", 5)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := model.LoadConfig("../../testdata/tiny-llama/model")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 5 || names[4] != "sim-0004" {
		t.Fatalf("names %v", names)
	}
	for _, n := range names {
		if _, err := peft.Load(filepath.Join(dir, n), mc.PEFTBase(), peft.Options{}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if _, err := makeAdapters(filepath.Join(t.TempDir(), "x"), t.TempDir(), 1); err == nil {
		t.Error("a source directory without adapters was accepted")
	}
}
