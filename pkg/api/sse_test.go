package api_test

import (
	"math"
	"regexp"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/api"
)

func TestSSEFraming(t *testing.T) {
	chunk := api.ChatCompletionChunk{ID: "chatcmpl-1", Object: api.ObjectChatCompletionChunk, Created: 2, Model: "m",
		Choices: []api.ChatChunkChoice{{Delta: api.ChatDelta{Content: "a<b"}}}}
	out, err := api.AppendSSE([]byte("prev"), chunk)
	if err != nil {
		t.Fatal(err)
	}
	want := `prevdata: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":2,"model":"m",` +
		`"choices":[{"index":0,"delta":{"content":"a<b"},"logprobs":null,"finish_reason":null}]}` + "\n\n"
	if string(out) != want {
		t.Errorf("got  %q\nwant %q", out, want)
	}
	if api.SSEDone != "data: [DONE]\n\n" {
		t.Errorf("SSEDone = %q", api.SSEDone)
	}
	e := api.Unavailable("draining")
	if got := string(api.AppendSSEError(nil, e)); got != "data: "+string(e.JSON())+"\n\n" {
		t.Errorf("AppendSSEError = %q", got)
	}
	if got := string(api.AppendTGISSEError(nil, e)); got != `data: {"error":"draining","error_type":"overloaded"}`+"\n\n" {
		t.Errorf("AppendTGISSEError = %q", got)
	}
}

func TestSSEErrorKeepsBuffer(t *testing.T) {
	bad := api.StreamResponse{Token: api.Token{Logprob: math.Inf(-1)}}
	out, err := api.AppendSSE([]byte("kept"), bad)
	if err == nil || string(out) != "kept" {
		t.Errorf("-Inf: got %q, %v; want the buffer unchanged and an error", out, err)
	}
	clamped := api.StreamResponse{Token: api.Token{Logprob: api.ClampLogprob(math.Inf(-1))}}
	if _, err := api.AppendSSE(nil, clamped); err != nil {
		t.Errorf("a clamped logprob must encode: %v", err)
	}
}

func TestClampLogprob(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{math.Inf(-1), -9999}, {math.NaN(), -9999}, {-1e6, -9999}, {-9999, -9999}, {-0.25, -0.25}, {0, 0},
	} {
		if got := api.ClampLogprob(c.in); got != c.want {
			t.Errorf("ClampLogprob(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestNewID(t *testing.T) {
	format := regexp.MustCompile(`^chatcmpl-[0-9A-Za-z]{24}$`)
	seen := make(map[string]bool)
	for range 1000 {
		id := api.NewID(api.ChatIDPrefix)
		if !format.MatchString(id) {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("repeated id %q", id)
		}
		seen[id] = true
	}
	if id := api.NewID(api.CompletionIDPrefix); len(id) != len("cmpl-")+24 {
		t.Errorf("NewID(cmpl-) = %q", id)
	}
}
