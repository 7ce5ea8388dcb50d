package worker

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestLoRAXGenerate(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	c := tw.golden.Cases[len(tw.golden.Cases)-1]
	n := len(c.Greedy)
	want, finish := tw.expectedText(c, n)
	req := map[string]any{"inputs": c.Prompt, "parameters": map[string]any{"adapter_id": c.Adapter, "max_new_tokens": n, "details": true}}
	status, body, _ := tw.post(t, "/generate", req)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	var resp struct {
		GeneratedText string `json:"generated_text"`
		Details       struct {
			FinishReason    string `json:"finish_reason"`
			GeneratedTokens int    `json:"generated_tokens"`
		} `json:"details"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	wantReason := map[string]string{"length": "length", "stop": "eos_token"}[finish]
	if resp.GeneratedText != want || resp.Details.FinishReason != wantReason || resp.Details.GeneratedTokens == 0 {
		t.Errorf("got %+v, want %q (%s)", resp, want, wantReason)
	}

	resp2, r := tw.openStreamAt(t, "/generate_stream", req)
	defer resp2.Body.Close()
	evs := readEvents(t, r)
	var text, last string
	for _, ev := range evs {
		var e struct {
			Token struct {
				Text string `json:"text"`
			} `json:"token"`
			GeneratedText *string `json:"generated_text"`
		}
		if err := json.Unmarshal([]byte(ev), &e); err != nil {
			t.Fatalf("event %s: %v", ev, err)
		}
		text += e.Token.Text
		if e.GeneratedText != nil {
			last = *e.GeneratedText
		}
	}
	if text != want || last != want {
		t.Errorf("stream tokens %q, generated_text %q, want %q", text, last, want)
	}

	status, body, _ = tw.post(t, "/generate", map[string]any{"inputs": "x", "parameters": map[string]any{"adapter_id": "missing"}})
	if status != http.StatusNotFound || !strings.Contains(string(body), `"error"`) {
		t.Errorf("unknown adapter: %d %s", status, body)
	}
}

func TestMetricsExposeVLLMNames(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	if status, body, _ := tw.post(t, "/v1/completions", map[string]any{"model": "sql", "prompt": "SELECT", "max_tokens": 3, "temperature": 0, "ignore_eos": true}); status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	status, body := tw.get(t, "/metrics")
	if status != http.StatusOK {
		t.Fatal(status)
	}
	text := string(body)
	for _, want := range []string{
		"lorafleet_num_requests_running 0", "lorafleet_num_requests_waiting 0", "lorafleet_kv_cache_usage_perc 0",
		"lorafleet_generation_tokens_total 3", "lorafleet_prompt_tokens_total ",
		"lorafleet_time_to_first_token_seconds_count 1", "lorafleet_inter_token_latency_seconds_count 2",
		"lorafleet_e2e_request_latency_seconds_count 1", "lorafleet_request_queue_time_seconds_count 1",
		`lorafleet_adapter_loads_total{result="ok",tier="disk"} 1`, "lorafleet_adapters_resident 1",
		`lorafleet_adapter_requests_total{adapter="sql"} 1`, `lorafleet_request_success_total{finished_reason="length"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestHealthAndReady(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, body := tw.get(t, path); status != http.StatusOK {
			t.Errorf("%s: %d %s", path, status, body)
		}
	}
	if status, body := tw.get(t, "/v1/completions"); status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/completions: %d %s", status, body)
	}
	status, body, _ := tw.post(t, "/tokenize", map[string]any{"model": "tiny-llama", "prompt": tw.golden.TokenizerCases[0].Text})
	var tr struct {
		Tokens []int `json:"tokens"`
		Count  int   `json:"count"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.Count != len(tw.golden.TokenizerCases[0].IDs) {
		t.Errorf("tokenize: %d %s, want ids %v", status, body, tw.golden.TokenizerCases[0].IDs)
	}
}
