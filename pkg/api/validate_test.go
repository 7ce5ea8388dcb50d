package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/api"
)

type validator interface{ Validate() error }

// decodeValid decodes body with the decoder that kind names.
func decodeValid(t *testing.T, kind, body string) validator {
	t.Helper()
	var v validator
	var err error
	switch kind {
	case "completion":
		v, err = api.DecodeCompletion([]byte(body))
	case "chat":
		v, err = api.DecodeChat([]byte(body))
	case "tokenize":
		v, err = api.DecodeTokenize([]byte(body))
	case "generate":
		v, err = api.DecodeGenerate([]byte(body))
	}
	if err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

// cmpl and chatBody build bodies around extra fields.
func cmpl(extra string) string { return `{"model":"m","prompt":"p"` + extra + `}` }
func chatBody(extra string) string {
	return `{"model":"m","messages":[{"role":"user","content":"hi"}]` + extra + `}`
}
func gen(params string) string { return `{"inputs":"x","parameters":{` + params + `}}` }

func TestValidateRefuses(t *testing.T) {
	stops := `"s0"` + strings.Repeat(`,"s"`, api.MaxStop)
	cases := []struct {
		kind, body, param, mention string
	}{
		{"completion", cmpl(`,"max_tokens":0`), "max_tokens", "at least 1, got 0"},
		{"completion", cmpl(`,"max_tokens":-5`), "max_tokens", "at least 1"},
		{"completion", cmpl(`,"n":0`), "n", "between 1 and 128"},
		{"completion", cmpl(`,"n":129`), "n", "between 1 and 128"},
		{"completion", `{"model":"m","prompt":["a","b","c"],"n":64}`, "n", "(64 × 3) must be at most 128"},
		{"completion", cmpl(`,"temperature":-0.1`), "temperature", "[0, 2], got -0.1"},
		{"completion", cmpl(`,"temperature":2.01`), "temperature", "[0, 2]"},
		{"completion", cmpl(`,"top_p":0`), "top_p", "(0, 1], got 0"},
		{"completion", cmpl(`,"top_p":1.5`), "top_p", "(0, 1]"},
		{"completion", cmpl(`,"top_k":-2`), "top_k", "got -2"},
		{"completion", cmpl(`,"min_p":-0.5`), "min_p", "[0, 1]"},
		{"completion", cmpl(`,"min_p":1.01`), "min_p", "[0, 1]"},
		{"completion", cmpl(`,"presence_penalty":2.5`), "presence_penalty", "[-2, 2]"},
		{"completion", cmpl(`,"frequency_penalty":-3`), "frequency_penalty", "[-2, 2]"},
		{"completion", cmpl(`,"repetition_penalty":0`), "repetition_penalty", "greater than 0"},
		{"completion", cmpl(`,"logprobs":-1`), "logprobs", "between 0 and 20"},
		{"completion", cmpl(`,"logprobs":21`), "logprobs", "between 0 and 20"},
		{"completion", cmpl(`,"logit_bias":{"abc":1}`), "logit_bias", `token ids, got "abc"`},
		{"completion", cmpl(`,"logit_bias":{"-1":1}`), "logit_bias", "token ids"},
		{"completion", cmpl(`,"logit_bias":{"5":101}`), "logit_bias", "[-100, 100], got 101 for token 5"},
		{"completion", cmpl(`,"logit_bias":{"5":-100.5}`), "logit_bias", "[-100, 100]"},
		{"completion", cmpl(`,"stream_options":{"include_usage":true}`), "stream_options", "only be set when `stream` is true"},
		{"completion", cmpl(`,"stream":false,"stream_options":{}`), "stream_options", "stream"},
		{"completion", cmpl(`,"stop":[` + stops + `]`), "stop", "at most 16 strings, got 17"},
		{"completion", cmpl(`,"stop":""`), "stop", "`stop[0]` must not be empty"},
		{"completion", cmpl(`,"stop":["a",""]`), "stop", "`stop[1]` must not be empty"},
		{"completion", cmpl(`,"stop_token_ids":[1,-1]`), "stop_token_ids", "`stop_token_ids[1]`"},
		{"completion", cmpl(`,"min_tokens":-1`), "min_tokens", "at least 0"},
		{"completion", cmpl(`,"min_tokens":17`), "min_tokens", "(17) must be at most max_tokens (16)"},
		{"completion", cmpl(`,"max_tokens":4,"min_tokens":5`), "min_tokens", "at most max_tokens (4)"},
		{"completion", cmpl(`,"echo":true,"logprobs":1`), "echo", "not supported"},
		{"completion", `{"model":"m","prompt":""}`, "prompt", "`prompt` must not be empty"},
		{"completion", `{"model":"m","prompt":[]}`, "prompt", "`prompt` must not be empty"},
		{"completion", `{"model":"m","prompt":["a",""]}`, "prompt", "`prompt[1]` must not be empty"},
		{"completion", `{"model":"m","prompt":[1,-2]}`, "prompt", "`prompt`[1] must be a token id, got -2"},
		{"completion", `{"model":"m","prompt":[[1],[]]}`, "prompt", "`prompt[1]` must not be empty"},
		{"completion", `{"model":"m","prompt":[[1],[2,-1]]}`, "prompt", "`prompt[1]`[1] must be a token id"},
		{"chat", `{"model":"m","messages":[]}`, "messages", "must not be empty"},
		{"chat", `{"model":"m","messages":[{"content":"x"}]}`, "messages[0].role", "required"},
		{"chat", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"function","content":"x"}]}`, "messages[1].role", `got "function"`},
		{"chat", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"http://x"}}]}]}`,
			"messages[0].content[1].type", `only text content parts are supported, got "image_url"`},
		{"chat", `{"model":"m","messages":[{"role":"user","content":[{"text":"a"}]}]}`, "messages[0].content[0].type", `got ""`},
		{"chat", chatBody(`,"max_tokens":0`), "max_tokens", "at least 1"},
		{"chat", chatBody(`,"max_completion_tokens":0,"max_tokens":5`), "max_completion_tokens", "at least 1"},
		{"chat", chatBody(`,"top_logprobs":3`), "top_logprobs", "requires `logprobs` to be true"},
		{"chat", chatBody(`,"logprobs":true,"top_logprobs":21`), "top_logprobs", "between 0 and 20"},
		{"chat", chatBody(`,"logprobs":true,"top_logprobs":-1`), "top_logprobs", "between 0 and 20"},
		{"chat", chatBody(`,"n":200`), "n", "between 1 and 128"},
		{"chat", chatBody(`,"max_completion_tokens":2,"min_tokens":3`), "min_tokens", "at most max_tokens (2)"},
		{"chat", chatBody(`,"temperature":3`), "temperature", "[0, 2]"},
		{"chat", chatBody(`,"stream_options":{"include_usage":true}`), "stream_options", "stream"},
		{"tokenize", `{"model":"m","messages":[]}`, "messages", "must not be empty"},
		{"tokenize", `{"model":"m","messages":[{"role":"robot","content":"x"}]}`, "messages[0].role", "robot"},
		{"generate", gen(`"max_new_tokens":0`), "parameters.max_new_tokens", "`max_new_tokens` must be strictly positive"},
		{"generate", gen(`"temperature":0`), "parameters.temperature", "`temperature` must be strictly positive"},
		{"generate", gen(`"top_p":1.0`), "parameters.top_p", "`top_p` must be > 0.0 and < 1.0"},
		{"generate", gen(`"top_p":0`), "parameters.top_p", "< 1.0"},
		{"generate", gen(`"top_k":0`), "parameters.top_k", "`top_k` must be strictly positive"},
		{"generate", gen(`"repetition_penalty":-1`), "parameters.repetition_penalty", "strictly positive"},
		{"generate", gen(`"seed":-1`), "parameters.seed", "negative"},
		{"generate", gen(`"stop":[` + stops + `]`), "parameters.stop", "up to 16 stop sequences. Given: 17"},
		{"generate", gen(`"stop":[""]`), "parameters.stop", "must not be empty"},
		{"generate", `{"inputs":"x","stream":true,"parameters":{"decoder_input_details":true}}`,
			"parameters.decoder_input_details", "not supported when streaming"},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d_%s_%s", i, c.kind, c.param), func(t *testing.T) {
			v := decodeValid(t, c.kind, c.body)
			err := v.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %s", c.body)
			}
			wantBadRequest(t, err, c.param, c.mention)
		})
	}
}

// The edges of every range are inside it.
func TestValidateAcceptsEdges(t *testing.T) {
	stops := `"s0"` + strings.Repeat(`,"s"`, api.MaxStop-1)
	cases := []struct{ kind, body string }{
		{"completion", cmpl(`,"max_tokens":1,"n":128,"temperature":0,"top_p":1,"top_k":-1,"min_p":0,
			"presence_penalty":-2,"frequency_penalty":2,"repetition_penalty":0.01,"logprobs":0,
			"logit_bias":{"0":-100,"007":100},"stop":[` + stops + `],"stop_token_ids":[0],"min_tokens":1`)},
		{"completion", cmpl(`,"temperature":2,"top_k":0,"min_p":1,"logprobs":20,"stream":true,
			"stream_options":{"include_usage":false}`)},
		{"completion", `{"model":"m","prompt":[[0],[1,2]],"n":64}`},
		{"completion", `{"model":"m","prompt":[0],"echo":true,"stream":true}`},
		{"chat", chatBody(`,"logprobs":true,"top_logprobs":20,"max_completion_tokens":1,"min_tokens":1`)},
		{"chat", chatBody(`,"top_logprobs":0`)},
		{"chat", `{"model":"m","messages":[{"role":"system","content":"s"},{"role":"developer","content":"d"},
			{"role":"user","content":[{"type":"text","text":"u"}]},{"role":"assistant","content":null},
			{"role":"tool","content":"t"}]}`},
		{"tokenize", `{"model":"m","prompt":""}`},
		{"generate", gen(`"max_new_tokens":1,"temperature":0.01,"top_p":0.99,"top_k":1,"seed":0,"stop":[` + stops + `]`)},
		{"generate", `{"inputs":"x","parameters":{"decoder_input_details":true}}`},
	}
	for _, c := range cases {
		if err := decodeValid(t, c.kind, c.body).Validate(); err != nil {
			t.Errorf("%s: %v", c.body, err)
		}
	}
}

// Requests built in Go (the load generator) are checked too.
func TestValidateGoBuiltRequests(t *testing.T) {
	wantBadRequest(t, (&api.CompletionRequest{Prompt: api.TextPrompt("p")}).Validate(), "model", "required")
	wantBadRequest(t, (&api.CompletionRequest{Model: "m"}).Validate(), "prompt", "required")
	wantBadRequest(t, (&api.ChatCompletionRequest{Model: "m"}).Validate(), "messages", "required")
	wantBadRequest(t, (&api.GenerateRequest{}).Validate(), "inputs", "empty")
	nan := api.Ptr(0.0)
	*nan /= *nan
	r := &api.CompletionRequest{Model: "m", Prompt: api.TokenPrompt([]int{1}), Params: api.Params{TopP: nan}}
	wantBadRequest(t, r.Validate(), "top_p", "NaN")
	ok := &api.ChatCompletionRequest{Model: "m", Messages: []api.ChatMessage{{Role: api.RoleUser, Content: api.TextContent("hi")}}}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}
