package worker

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/worker/sim"
)

// The worker on the simulated backend serves the API as on the CPU: every requested token
// arrives, adapters go through the store's tiers to the device at their modeled full size,
// and the request takes at least the modeled GPU time.
func TestSimBackendServesWithModeledCosts(t *testing.T) {
	tw := startWorker(t, "tiny-llama", func(c *Config) { c.Backend = "sim" })
	start := time.Now()
	res := tw.complete(t, map[string]any{"model": "sql", "prompt": []int{100, 101, 102}, "max_tokens": 20, "ignore_eos": true})
	took := time.Since(start)
	if want := (sim.DefaultProfile().KVCacheTokens + 15) / 16; tw.cfg.Engine.NumBlocks != want {
		t.Errorf("KV cache of %d blocks, want the profile's %d", tw.cfg.Engine.NumBlocks, want)
	}
	if res.Usage.CompletionTokens != 20 || res.Choices[0].FinishReason != "length" {
		t.Fatalf("completion: %+v", res)
	}
	// 20 steps of at least the batch-of-one GEMM time (4.97 ms), plus the adapter's loads.
	if floor := 20 * 4970 * time.Microsecond; took < floor {
		t.Errorf("request took %v, under the modeled %v", took, floor)
	}
	code, body := tw.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	// sql is rank 8 on all seven projections: on Llama-2-7B that is 8 × 78,080 × 32 layers × 2 bytes.
	if want := "lorafleet_adapter_device_bytes 3.997696e+07"; !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %q", want)
	}
	for _, want := range []string{"lorafleet_adapter_device_loads_total 1", `lorafleet_adapter_loads_total{result="ok",tier="disk"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A chat request works too (the template and tokenizer are the served model's).
	code, b, _ := tw.post(t, "/v1/chat/completions", map[string]any{"model": "chat", "messages": []map[string]string{{"role": "user", "content": "hi"}}, "max_tokens": 5})
	var chat struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &chat) != nil || chat.Usage.CompletionTokens != 5 {
		t.Fatalf("chat: %d %s", code, b)
	}
}

func TestSimBackendConfigErrors(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"unknown backend":    func(c *Config) { c.Backend = "tpu" },
		"missing profile":    func(c *Config) { c.Backend, c.SimProfile = "sim", "/nonexistent/profile.json" },
		"negative timescale": func(c *Config) { c.Backend, c.SimTimeScale = "sim", -1 },
		"memory fraction":    func(c *Config) { c.GPUMemoryFraction = 1.5 },
		"NaN fraction":       func(c *Config) { c.GPUMemoryFraction = math.NaN() },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := Config{ModelDir: "../testdata/tiny-llama/model", AdaptersDir: "../testdata/tiny-llama/adapters"}
			mod(&cfg)
			if _, err := New(cfg, nil); err == nil {
				t.Fatal("New accepted the config")
			}
		})
	}
}

// A binary built without the cuda tag refuses the cuda backend with a message that says how
// to get one.
func TestCUDABackendNeedsTheCUDABuild(t *testing.T) {
	if cudaBuilt {
		t.Skip("this test binary has the CUDA backend")
	}
	cfg := Config{ModelDir: "../testdata/tiny-llama/model", AdaptersDir: "../testdata/tiny-llama/adapters", Backend: "cuda"}
	_, err := New(cfg, nil)
	if !errors.Is(err, errNoCUDA) || !strings.Contains(err.Error(), "make build-cuda") {
		t.Fatalf("New: %v", err)
	}
}
