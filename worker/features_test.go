package worker

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
)

type completionResp struct {
	Choices []struct {
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
		Logprobs     *struct {
			Tokens        []string             `json:"tokens"`
			TokenLogprobs []float64            `json:"token_logprobs"`
			TopLogprobs   []map[string]float64 `json:"top_logprobs"`
		} `json:"logprobs"`
	} `json:"choices"`
	Usage struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

func (tw *testWorker) complete(t *testing.T, body map[string]any) completionResp {
	t.Helper()
	status, out, _ := tw.post(t, "/v1/completions", body)
	if status != http.StatusOK {
		t.Fatalf("%v: %d %s", body, status, out)
	}
	var r completionResp
	if err := json.Unmarshal(out, &r); err != nil || len(r.Choices) != 1 {
		t.Fatalf("%v: %s", err, out)
	}
	return r
}

func TestStopStringEndsGeneration(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	full := tw.complete(t, map[string]any{"model": "sql", "prompt": "SELECT", "max_tokens": 40, "temperature": 0, "ignore_eos": true}).Choices[0].Text
	if len(full) < 12 {
		t.Fatalf("generation too short to cut: %q", full)
	}
	stop := full[len(full)/2 : len(full)/2+3]
	want := full[:strings.Index(full, stop)]
	got := tw.complete(t, map[string]any{"model": "sql", "prompt": "SELECT", "max_tokens": 40, "temperature": 0, "ignore_eos": true, "stop": []string{"@@never@@", stop}})
	if got.Choices[0].Text != want || got.Choices[0].FinishReason != "stop" {
		t.Errorf("stop %q: got %q (%s), want %q", stop, got.Choices[0].Text, got.Choices[0].FinishReason, want)
	}
}

func TestSeedIsReproducible(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	req := func(seed int) string {
		return tw.complete(t, map[string]any{"model": "chat", "prompt": "Once", "max_tokens": 24, "temperature": 1.0, "seed": seed, "ignore_eos": true}).Choices[0].Text
	}
	a, b, c := req(7), req(7), req(8)
	if a != b {
		t.Errorf("seed 7 gave %q then %q", a, b)
	}
	if a == c {
		t.Errorf("seeds 7 and 8 gave the same 24 sampled tokens %q", a)
	}
}

func TestLogprobs(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	r := tw.complete(t, map[string]any{"model": "sql", "prompt": "SELECT", "max_tokens": 6, "temperature": 0, "ignore_eos": true, "logprobs": 2})
	lp := r.Choices[0].Logprobs
	if lp == nil || len(lp.Tokens) != 6 || len(lp.TokenLogprobs) != 6 || len(lp.TopLogprobs) != 6 {
		t.Fatalf("logprobs %+v", lp)
	}
	for i, top := range lp.TopLogprobs {
		best := math.Inf(-1)
		for _, v := range top {
			best = math.Max(best, v)
		}
		// Greedy: the chosen token is the most likely one, with a probability at most 1.
		if len(top) != 2 || lp.TokenLogprobs[i] > 0 || math.Abs(lp.TokenLogprobs[i]-best) > 1e-6 {
			t.Errorf("token %d: logprob %v, top %v", i, lp.TokenLogprobs[i], top)
		}
	}
	if strings.Join(lp.Tokens, "") != r.Choices[0].Text {
		t.Errorf("tokens %q do not spell the text %q", lp.Tokens, r.Choices[0].Text)
	}

	status, body, _ := tw.post(t, "/v1/chat/completions", map[string]any{"model": "chat", "max_tokens": 4, "temperature": 0,
		"logprobs": true, "top_logprobs": 3, "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	var chat struct {
		Choices []struct {
			Logprobs struct {
				Content []struct {
					Logprob     float64 `json:"logprob"`
					TopLogprobs []any   `json:"top_logprobs"`
				} `json:"content"`
			} `json:"logprobs"`
		} `json:"choices"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &chat) != nil || len(chat.Choices) != 1 {
		t.Fatalf("chat logprobs: %d %s", status, body)
	}
	for _, c := range chat.Choices[0].Logprobs.Content {
		if len(c.TopLogprobs) != 3 || c.Logprob > 0 {
			t.Errorf("chat token logprobs %+v", c)
		}
	}
}

func TestPromptLongerThanContextIs400(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	ids := make([]int, tw.mc.MaxPositions+5)
	for i := range ids {
		ids[i] = 100
	}
	status, body, _ := tw.post(t, "/v1/completions", map[string]any{"model": "sql", "prompt": ids})
	if status != http.StatusBadRequest || !strings.Contains(string(body), "maximum context length") {
		t.Errorf("%d %s", status, body)
	}
	status, body, _ = tw.post(t, "/v1/completions", map[string]any{"model": "sql", "prompt": []int{1, 99999}})
	if status != http.StatusBadRequest || !strings.Contains(string(body), "vocabulary") {
		t.Errorf("token outside the vocabulary: %d %s", status, body)
	}
}
