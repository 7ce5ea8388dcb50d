package api_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/api"
)

// sameJSON compares two documents as JSON values, so that key order does
// not matter but null, absent, [] and {} all do.
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad literal: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, compact(want))
	}
}

func compact(s string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(s)) != nil {
		return s
	}
	return b.String()
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := api.AppendJSON(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wire checks that v encodes to want and that a real server's body, which
// may hold fields this package leaves out, decodes to v.
func wire[T any](t *testing.T, v T, want, real string) {
	t.Helper()
	sameJSON(t, encode(t, v), want)
	var got T
	if err := json.Unmarshal([]byte(real), &got); err != nil {
		t.Fatalf("decoding a real body: %v", err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Errorf("real body decodes to %+v\nwant %+v", got, v)
	}
}

func TestWireCompletion(t *testing.T) {
	v := api.CompletionResponse{
		ID: "cmpl-b7d2f0a1", Object: api.ObjectTextCompletion, Created: 1718000000, Model: "sql-lora",
		Choices: []api.CompletionChoice{{Index: 0, Text: " world", FinishReason: api.Ptr(api.FinishLength)}},
		Usage:   &api.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5},
	}
	want := `{"id":"cmpl-b7d2f0a1","object":"text_completion","created":1718000000,"model":"sql-lora",
		"choices":[{"index":0,"text":" world","logprobs":null,"finish_reason":"length"}],
		"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
	// vLLM's body adds stop_reason, prompt_logprobs, system_fingerprint, …
	real := `{"id":"cmpl-b7d2f0a1","object":"text_completion","created":1718000000,"model":"sql-lora",
		"choices":[{"index":0,"text":" world","logprobs":null,"finish_reason":"length","stop_reason":null,
		"token_ids":null,"prompt_logprobs":null,"prompt_token_ids":null}],
		"service_tier":null,"system_fingerprint":null,
		"usage":{"prompt_tokens":3,"total_tokens":5,"completion_tokens":2,"prompt_tokens_details":null},
		"kv_transfer_params":null}`
	wire(t, v, want, real)
}

func TestWireCompletionLogprobs(t *testing.T) {
	v := api.CompletionChoice{Index: 1, Text: " world!", FinishReason: api.Ptr(api.FinishStop),
		Logprobs: &api.CompletionLogprobs{
			Tokens:        []string{" world", "!"},
			TokenLogprobs: []float64{-0.5, -1.25},
			TopLogprobs:   []map[string]float64{{" world": -0.5, " there": -1.5}, {"!": -1.25, ".": -2}},
			TextOffset:    []int{5, 11},
		}}
	want := `{"index":1,"text":" world!","finish_reason":"stop","logprobs":{"text_offset":[5,11],
		"token_logprobs":[-0.5,-1.25],"tokens":[" world","!"],
		"top_logprobs":[{" world":-0.5," there":-1.5},{"!":-1.25,".":-2.0}]}}`
	wire(t, v, want, want)
}

func TestWireCompletionStream(t *testing.T) {
	chunk := api.CompletionResponse{ID: "cmpl-1", Object: api.ObjectTextCompletion, Created: 1, Model: "m",
		Choices: []api.CompletionChoice{{Text: " wor"}}}
	want := `{"id":"cmpl-1","object":"text_completion","created":1,"model":"m",
		"choices":[{"index":0,"text":" wor","logprobs":null,"finish_reason":null}]}`
	wire(t, chunk, want, `{"id":"cmpl-1","object":"text_completion","created":1,"model":"m",
		"choices":[{"index":0,"text":" wor","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}`)

	usage := api.CompletionResponse{ID: "cmpl-1", Object: api.ObjectTextCompletion, Created: 1, Model: "m",
		Usage: &api.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}}
	b := encode(t, usage)
	if !bytes.Contains(b, []byte(`"choices":[]`)) {
		t.Errorf("usage chunk must carry choices: [], got %s", b)
	}
}

func TestWireChat(t *testing.T) {
	v := api.ChatCompletionResponse{
		ID: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", Object: api.ObjectChatCompletion, Created: 1741569952, Model: "m",
		Choices: []api.ChatChoice{{
			Message:      api.ChatMessage{Role: api.RoleAssistant, Content: api.TextContent("Hello! <b>&</b>")},
			FinishReason: api.FinishStop,
		}},
		Usage: &api.Usage{PromptTokens: 19, CompletionTokens: 10, TotalTokens: 29},
	}
	want := `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"m",
		"choices":[{"index":0,"message":{"role":"assistant","content":"Hello! <b>&</b>"},"logprobs":null,"finish_reason":"stop"}],
		"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}`
	// OpenAI's body adds refusal, annotations, token details, service_tier.
	real := `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"m",
		"choices":[{"index":0,"message":{"role":"assistant","content":"Hello! <b>&</b>","refusal":null,"annotations":[]},
		"logprobs":null,"finish_reason":"stop"}],
		"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
		"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},
		"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
		"service_tier":"default","system_fingerprint":null}`
	wire(t, v, want, real)
	if b := encode(t, v); !bytes.Contains(b, []byte("<b>&</b>")) {
		t.Errorf("AppendJSON must not escape HTML, as Python's json.dumps does not: %s", b)
	}
}

func TestWireChatLogprobs(t *testing.T) {
	v := api.ChatLogprobs{Content: []api.ChatTokenLogprob{{
		Token: "Hello", Logprob: -0.31725305, Bytes: []int{72, 101, 108, 108, 111},
		TopLogprobs: []api.ChatTopLogprob{
			{Token: "Hello", Logprob: -0.31725305, Bytes: []int{72, 101, 108, 108, 111}},
			{Token: "Hi", Logprob: -1.3190403, Bytes: []int{72, 105}},
		},
	}}}
	want := `{"content":[{"token":"Hello","logprob":-0.31725305,"bytes":[72,101,108,108,111],
		"top_logprobs":[{"token":"Hello","logprob":-0.31725305,"bytes":[72,101,108,108,111]},
		{"token":"Hi","logprob":-1.3190403,"bytes":[72,105]}]}]}`
	wire(t, v, want, want)
}

func TestWireChatStream(t *testing.T) {
	chunk := func(c ...api.ChatChunkChoice) api.ChatCompletionChunk {
		return api.ChatCompletionChunk{ID: "chatcmpl-123", Object: api.ObjectChatCompletionChunk, Created: 1694268190, Model: "m", Choices: c}
	}
	head := `"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"m"`
	// OpenAI's first delta also has "content":""; an absent content reads the same.
	wire(t, chunk(api.ChatChunkChoice{Delta: api.ChatDelta{Role: api.RoleAssistant}}),
		`{`+head+`,"choices":[{"index":0,"delta":{"role":"assistant"},"logprobs":null,"finish_reason":null}]}`,
		`{`+head+`,"system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`)
	wire(t, chunk(api.ChatChunkChoice{Delta: api.ChatDelta{Content: "Hello"}}),
		`{`+head+`,"choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`,
		`{`+head+`,"choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}`)
	wire(t, chunk(api.ChatChunkChoice{FinishReason: api.Ptr(api.FinishStop)}),
		`{`+head+`,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
		`{`+head+`,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`)
	usage := chunk()
	usage.Usage = &api.Usage{PromptTokens: 9, CompletionTokens: 12, TotalTokens: 21}
	wantUsage := `{` + head + `,"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}`
	sameJSON(t, encode(t, usage), wantUsage)
	var back api.ChatCompletionChunk
	if err := json.Unmarshal([]byte(wantUsage), &back); err != nil || back.Choices == nil || back.Usage == nil {
		t.Errorf("usage chunk decodes to %+v, %v", back, err)
	}
	if b, _ := json.Marshal(usage); !bytes.Contains(b, []byte(`"choices":[]`)) {
		t.Errorf("json.Marshal too must write choices: [], got %s", b)
	}
}

func TestWireModels(t *testing.T) {
	v := api.ModelList{Object: api.ObjectList, Data: []api.Model{
		{ID: "meta-llama/Llama-3.1-8B", Object: api.ObjectModel, Created: 1718000000, OwnedBy: "lorafleet",
			Root: "meta-llama/Llama-3.1-8B", MaxModelLen: 8192},
		{ID: "sql-lora", Object: api.ObjectModel, Created: 1718000000, OwnedBy: "lorafleet",
			Root: "/adapters/sql", Parent: api.Ptr("meta-llama/Llama-3.1-8B"), MaxModelLen: 8192},
	}}
	want := `{"object":"list","data":[
		{"id":"meta-llama/Llama-3.1-8B","object":"model","created":1718000000,"owned_by":"lorafleet",
		 "root":"meta-llama/Llama-3.1-8B","parent":null,"max_model_len":8192},
		{"id":"sql-lora","object":"model","created":1718000000,"owned_by":"lorafleet",
		 "root":"/adapters/sql","parent":"meta-llama/Llama-3.1-8B","max_model_len":8192}]}`
	// vLLM adds a permission list to each card.
	real := strings.ReplaceAll(want, `"max_model_len":8192}`,
		`"max_model_len":8192,"permission":[{"id":"modelperm-1","object":"model_permission","allow_sampling":true}]}`)
	wire(t, v, want, real)
	sameJSON(t, encode(t, api.ModelList{Object: api.ObjectList}), `{"object":"list","data":[]}`)
}

func TestWireTokenize(t *testing.T) {
	v := api.TokenizeResponse{Count: 3, MaxModelLen: 8192, Tokens: []int{128000, 9906, 1917}}
	wire(t, v, `{"count":3,"max_model_len":8192,"tokens":[128000,9906,1917]}`,
		`{"count":3,"max_model_len":8192,"tokens":[128000,9906,1917],"token_strs":null}`)
	sameJSON(t, encode(t, api.TokenizeResponse{}), `{"count":0,"max_model_len":0,"tokens":[]}`)
}

func TestWireGenerate(t *testing.T) {
	v := api.GenerateResponse{GeneratedText: " world!", Details: &api.GenerateDetails{
		FinishReason: api.TGIFinishLength, PromptTokens: 2, GeneratedTokens: 2,
		Tokens: []api.Token{{ID: 1917, Text: " world", Logprob: -0.5}, {ID: 0, Text: "!", Logprob: -1}},
	}}
	want := `{"generated_text":" world!","details":{"finish_reason":"length","prompt_tokens":2,"generated_tokens":2,
		"seed":null,"prefill":[],"tokens":[{"id":1917,"text":" world","logprob":-0.5,"special":false},
		{"id":0,"text":"!","logprob":-1.0,"special":false}]}}`
	sameJSON(t, encode(t, v), want)
	sameJSON(t, encode(t, api.GenerateResponse{GeneratedText: "x"}), `{"generated_text":"x"}`)
	prefill := api.GenerateDetails{FinishReason: api.TGIFinishEOSToken, Seed: api.Ptr[int64](42),
		Prefill: []api.PrefillToken{{ID: 1, Text: "<s>"}, {ID: 15043, Text: "Hello", Logprob: api.Ptr(-2.5)}},
		Tokens:  []api.Token{}}
	wire(t, prefill, `{"finish_reason":"eos_token","prompt_tokens":0,"generated_tokens":0,"seed":42,
		"prefill":[{"id":1,"text":"<s>","logprob":null},{"id":15043,"text":"Hello","logprob":-2.5}],"tokens":[]}`,
		`{"finish_reason":"eos_token","prompt_tokens":0,"generated_tokens":0,"seed":42,
		"prefill":[{"id":1,"text":"<s>","logprob":null},{"id":15043,"text":"Hello","logprob":-2.5}],"tokens":[],"best_of_sequences":null}`)
}

func TestWireGenerateStream(t *testing.T) {
	tok := api.Token{ID: 1917, Text: " world", Logprob: -0.5}
	sameJSON(t, encode(t, api.StreamResponse{Token: tok}),
		`{"token":{"id":1917,"text":" world","logprob":-0.5,"special":false},"generated_text":null,"details":null}`)
	last := api.StreamResponse{Token: api.Token{ID: 2, Text: "</s>", Logprob: -0.1, Special: true},
		GeneratedText: api.Ptr("Hello world"),
		Details:       &api.StreamDetails{FinishReason: api.TGIFinishEOSToken, PromptTokens: 2, GeneratedTokens: 3, Seed: api.Ptr[int64](7)}}
	want := `{"token":{"id":2,"text":"</s>","logprob":-0.1,"special":true},"generated_text":"Hello world",
		"details":{"finish_reason":"eos_token","prompt_tokens":2,"generated_tokens":3,"seed":7}}`
	wire(t, last, want, want)
}

// An accepted request encodes back to the fields a client sent.
func TestWireRequests(t *testing.T) {
	req := api.CompletionRequest{Model: "m", Prompt: api.Prompt{Form: api.PromptTokenLists, Tokens: [][]int{{1, 2}, {}}},
		MaxTokens: api.Ptr(5), Params: api.Params{Stop: api.Stop{}, LogitBias: map[string]float64{}, Stream: true}}
	sameJSON(t, encode(t, req), `{"model":"m","prompt":[[1,2],[]],"max_tokens":5,"stop":[],"logit_bias":{},"stream":true}`)
	sameJSON(t, encode(t, api.CompletionRequest{Model: "m", Prompt: api.TextPrompt("hi")}), `{"model":"m","prompt":"hi"}`)
	sameJSON(t, encode(t, api.CompletionRequest{Model: "m", Prompt: api.TokenPrompt(nil)}), `{"model":"m","prompt":[]}`)
	chat := api.ChatCompletionRequest{Model: "m", Messages: []api.ChatMessage{
		{Role: "user", Content: api.ChatContent{Parts: []api.ContentPart{{Type: "text", Text: "a"}}}},
		{Role: "assistant", Content: api.TextContent("b"), Name: "bot"},
	}, MaxCompletionTokens: api.Ptr(3), Logprobs: true, TopLogprobs: api.Ptr(2)}
	sameJSON(t, encode(t, chat), `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]},
		{"role":"assistant","content":"b","name":"bot"}],"max_completion_tokens":3,"logprobs":true,"top_logprobs":2}`)
	g := api.GenerateRequest{Inputs: "x", Parameters: api.GenerateParameters{AdapterID: "a", MaxNewTokens: api.Ptr(4)}}
	sameJSON(t, encode(t, g), `{"inputs":"x","parameters":{"adapter_id":"a","max_new_tokens":4}}`)
	sameJSON(t, encode(t, api.LoadLoRARequest{LoRAName: "a", LoRAPath: "/p"}), `{"lora_name":"a","lora_path":"/p"}`)
}
