package api_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/api"
)

// wantBadRequest checks that err is a 400 *api.Error about param whose
// message mentions mention.
func wantBadRequest(t *testing.T, err error, param, mention string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an *api.Error", err)
	}
	if e.Status != 400 || e.Type != "BadRequestError" {
		t.Errorf("status %d type %q, want 400 BadRequestError", e.Status, e.Type)
	}
	if e.Param != param {
		t.Errorf("param %q, want %q (message %q)", e.Param, param, e.Message)
	}
	if !strings.Contains(e.Message, mention) {
		t.Errorf("message %q does not mention %q", e.Message, mention)
	}
}

func TestDecodeCompletionPromptForms(t *testing.T) {
	cases := []struct {
		prompt string
		want   api.Prompt
	}{
		{`"Hello"`, api.Prompt{Form: api.PromptString, Strings: []string{"Hello"}}},
		{`["a", "b"]`, api.Prompt{Form: api.PromptStrings, Strings: []string{"a", "b"}}},
		{`[]`, api.Prompt{Form: api.PromptStrings, Strings: []string{}}},
		{`[1, 2, 3]`, api.Prompt{Form: api.PromptTokens, Tokens: [][]int{{1, 2, 3}}}},
		{`[ -4 ]`, api.Prompt{Form: api.PromptTokens, Tokens: [][]int{{-4}}}},
		{`[[1, 2], [3]]`, api.Prompt{Form: api.PromptTokenLists, Tokens: [][]int{{1, 2}, {3}}}},
		{`[[]]`, api.Prompt{Form: api.PromptTokenLists, Tokens: [][]int{{}}}},
		{`"\ud83d\ude00 \u00e9"`, api.Prompt{Form: api.PromptString, Strings: []string{"😀 é"}}},
	}
	for _, c := range cases {
		r, err := api.DecodeCompletion([]byte(`{"model":"m","prompt":` + c.prompt + `}`))
		if err != nil {
			t.Errorf("%s: %v", c.prompt, err)
			continue
		}
		if !reflect.DeepEqual(r.Prompt, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.prompt, r.Prompt, c.want)
		}
	}
}

func TestDecodeCompletionFields(t *testing.T) {
	body := `{"model":"sql-lora","prompt":"SELECT","max_tokens":7,"temperature":0.5,"top_p":0.9,
		"n":2,"stop":"\n","stream":true,"stream_options":{"include_usage":true},"seed":-3,
		"logprobs":2,"echo":true,"presence_penalty":0.1,"frequency_penalty":-0.2,
		"logit_bias":{"50256":-100},"user":"u1","top_k":40,"min_p":0.05,"repetition_penalty":1.1,
		"stop_token_ids":[7,8],"ignore_eos":true,"min_tokens":3,
		"unknown_field":{"nested":[1,2]},"suffix":null,"best_of":1,"use_beam_search":false}`
	r, err := api.DecodeCompletion([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := &api.CompletionRequest{
		Model: "sql-lora", Prompt: api.TextPrompt("SELECT"),
		MaxTokens: api.Ptr(7), Logprobs: api.Ptr(2), Echo: true,
		Params: api.Params{
			N: api.Ptr(2), Temperature: api.Ptr(0.5), TopP: api.Ptr(0.9), TopK: api.Ptr(40),
			MinP: api.Ptr(0.05), PresencePenalty: api.Ptr(0.1), FrequencyPenalty: api.Ptr(-0.2),
			RepetitionPenalty: api.Ptr(1.1), LogitBias: map[string]float64{"50256": -100},
			Seed: api.Ptr[int64](-3), Stop: api.Stop{"\n"}, StopTokenIDs: []int{7, 8},
			IgnoreEOS: true, MinTokens: 3, Stream: true,
			StreamOptions: &api.StreamOptions{IncludeUsage: true}, User: "u1",
		},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
	if !r.IncludeUsage() || r.NOrDefault() != 2 || r.MaxTokensOrDefault() != 7 || r.NumLogprobs() != 2 {
		t.Errorf("helpers: usage %v n %d max %d logprobs %d", r.IncludeUsage(), r.NOrDefault(), r.MaxTokensOrDefault(), r.NumLogprobs())
	}
	if got := r.LogitBiasIDs(); !reflect.DeepEqual(got, map[int]float64{50256: -100}) {
		t.Errorf("LogitBiasIDs = %v", got)
	}
}

func TestDecodeCompletionDefaults(t *testing.T) {
	r, err := api.DecodeCompletion([]byte(`{"model":"m","prompt":"p","stop":null,"max_tokens":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxTokensOrDefault() != 16 || r.NOrDefault() != 1 || r.NumLogprobs() != -1 || r.Stop != nil || r.IncludeUsage() {
		t.Errorf("defaults: max %d n %d logprobs %d stop %v usage %v",
			r.MaxTokensOrDefault(), r.NOrDefault(), r.NumLogprobs(), r.Stop, r.IncludeUsage())
	}
	r, err = api.DecodeCompletion([]byte(`{"model":"m","prompt":"p","stop":["a","b"]}`))
	if err != nil || !reflect.DeepEqual(r.Stop, api.Stop{"a", "b"}) {
		t.Errorf("stop list: %v %v", r, err)
	}
}

func TestDecodeChatContentForms(t *testing.T) {
	body := `{"model":"m","messages":[
		{"role":"system","content":"Be brief."},
		{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"name":"ann"},
		{"role":"assistant","content":null},
		{"role":"developer","content":[]}],
		"max_tokens":5,"max_completion_tokens":9,"logprobs":true,"top_logprobs":3}`
	r, err := api.DecodeChat([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []api.ChatMessage{
		{Role: "system", Content: api.TextContent("Be brief.")},
		{Role: "user", Content: api.ChatContent{Parts: []api.ContentPart{{Type: "text", Text: "a"}, {Type: "text", Text: "b"}}}, Name: "ann"},
		{Role: "assistant"},
		{Role: "developer", Content: api.ChatContent{Parts: []api.ContentPart{}}},
	}
	if !reflect.DeepEqual(r.Messages, want) {
		t.Errorf("got %+v\nwant %+v", r.Messages, want)
	}
	if got := r.Messages[1].Content.String(); got != "a\nb" {
		t.Errorf("joined parts = %q, want vLLM's newline join", got)
	}
	if r.MaxTokensOr(100) != 9 || r.NumLogprobs() != 3 {
		t.Errorf("max_completion_tokens must win: %d; logprobs %d", r.MaxTokensOr(100), r.NumLogprobs())
	}
	if err := r.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestChatDefaults(t *testing.T) {
	r, err := api.DecodeChat([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxTokensOr(100) != 4 || r.NumLogprobs() != -1 {
		t.Errorf("max %d logprobs %d", r.MaxTokensOr(100), r.NumLogprobs())
	}
	r.MaxTokens = nil
	r.Logprobs = true
	if r.MaxTokensOr(100) != 100 || r.NumLogprobs() != 0 {
		t.Errorf("unbounded max %d, logprobs without top_logprobs %d", r.MaxTokensOr(100), r.NumLogprobs())
	}
}

func TestDecodeTokenize(t *testing.T) {
	r, err := api.DecodeTokenize([]byte(`{"model":"m","prompt":""}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Prompt == nil || *r.Prompt != "" || !r.AddSpecialTokensOrDefault() || !r.AddGenerationPromptOrDefault() {
		t.Errorf("prompt form defaults: %+v", r)
	}
	r, err = api.DecodeTokenize([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],
		"add_generation_prompt":false,"return_token_strs":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.AddSpecialTokensOrDefault() || r.AddGenerationPromptOrDefault() || !r.ReturnTokenStrs {
		t.Errorf("chat form: special %v genprompt %v strs %v, want false false true",
			r.AddSpecialTokensOrDefault(), r.AddGenerationPromptOrDefault(), r.ReturnTokenStrs)
	}
}

func TestDecodeGenerate(t *testing.T) {
	body := `{"inputs":"Hello","stream":true,"parameters":{"adapter_id":"org/sql","adapter_source":"hub",
		"max_new_tokens":20,"temperature":0.7,"top_p":0.9,"top_k":50,"seed":42,"stop":["\n"],
		"details":true,"do_sample":true,"repetition_penalty":1.2,"return_full_text":true,
		"decoder_input_details":false,"ignore_eos_token":true,"api_token":"ignored","best_of":null}}`
	r, err := api.DecodeGenerate([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := &api.GenerateRequest{Inputs: "Hello", Stream: true, Parameters: api.GenerateParameters{
		AdapterID: "org/sql", AdapterSource: "hub", MaxNewTokens: api.Ptr(20),
		Temperature: api.Ptr(0.7), TopP: api.Ptr(0.9), TopK: api.Ptr(50), Seed: api.Ptr[int64](42),
		Stop: []string{"\n"}, Details: true, DoSample: true, RepetitionPenalty: api.Ptr(1.2),
		ReturnFullText: true, IgnoreEOSToken: true,
	}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
	if r.MaxNewTokensOr(99) != 20 {
		t.Errorf("MaxNewTokensOr = %d", r.MaxNewTokensOr(99))
	}
}

func TestGenerateDefaultsAndSampling(t *testing.T) {
	r, err := api.DecodeGenerate([]byte(`{"inputs":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxNewTokensOr(99) != 99 || r.Sampled() {
		t.Errorf("no parameters: max %d sampled %v, want 99 false", r.MaxNewTokensOr(99), r.Sampled())
	}
	cases := []struct {
		params  string
		sampled bool
	}{
		{`{"temperature":1.0}`, false},
		{`{"temperature":0.5}`, true},
		{`{"top_k":1}`, true},
		{`{"top_p":0.5}`, true},
		{`{"do_sample":true}`, true},
		{`{"repetition_penalty":1.5}`, false},
	}
	for _, c := range cases {
		r, err := api.DecodeGenerate([]byte(`{"inputs":"x","parameters":` + c.params + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if r.Sampled() != c.sampled {
			t.Errorf("%s: Sampled() = %v", c.params, r.Sampled())
		}
	}
}

func TestDecodeLoRAAdmin(t *testing.T) {
	l, err := api.DecodeLoadLoRA([]byte(`{"lora_name":"sql","lora_path":"/adapters/sql"}`))
	if err != nil || l.LoRAName != "sql" || l.LoRAPath != "/adapters/sql" {
		t.Errorf("load: %+v %v", l, err)
	}
	u, err := api.DecodeUnloadLoRA([]byte(`{"lora_name":"sql","lora_int_id":3}`))
	if err != nil || u.LoRAName != "sql" {
		t.Errorf("unload: %+v %v", u, err)
	}
}

type decodeFunc func([]byte) error

var (
	completion = func(b []byte) error { _, err := api.DecodeCompletion(b); return err }
	chat       = func(b []byte) error { _, err := api.DecodeChat(b); return err }
	tokenize   = func(b []byte) error { _, err := api.DecodeTokenize(b); return err }
	generate   = func(b []byte) error { _, err := api.DecodeGenerate(b); return err }
	loadLoRA   = func(b []byte) error { _, err := api.DecodeLoadLoRA(b); return err }
	unloadLoRA = func(b []byte) error { _, err := api.DecodeUnloadLoRA(b); return err }
)

const msgs = `"messages":[{"role":"user","content":"hi"}]`

func TestDecodeRefuses(t *testing.T) {
	cases := []struct {
		name    string
		decode  decodeFunc
		body    string
		param   string
		mention string
	}{
		// Malformed or not an object.
		{"empty body", completion, "  ", "", "empty"},
		{"truncated", completion, `{"model":`, "", "invalid JSON: unexpected end of JSON input (at byte offset 9)"},
		{"trailing comma", chat, `{"model":"m",}`, "", "invalid JSON"},
		{"trailing garbage", generate, `{"inputs":"x"} x`, "", "invalid JSON"},
		{"array body", completion, `[{"model":"m"}]`, "", "must be a JSON object, got array"},
		{"string body", tokenize, `"x"`, "", "must be a JSON object"},
		{"null body", loadLoRA, `null`, "", "must be a JSON object"},
		{"number body", unloadLoRA, ` 7`, "", "must be a JSON object"},
		// Wrong types: the param is the JSON path.
		{"model number", completion, `{"model":1,"prompt":"p"}`, "model", "expected a string, got number"},
		{"max_tokens string", completion, `{"model":"m","prompt":"p","max_tokens":"5"}`, "max_tokens", "expected an integer, got string"},
		{"n fraction", completion, `{"model":"m","prompt":"p","n":1.5}`, "n", "1.5 is not an integer"},
		{"temperature overflow", chat, `{"model":"m",` + msgs + `,"temperature":1e999}`, "temperature", "out of range"},
		{"seed overflow", chat, `{"model":"m",` + msgs + `,"seed":9223372036854775808}`, "seed", "out of range"},
		{"stream string", chat, `{"model":"m",` + msgs + `,"stream":"true"}`, "stream", "expected a boolean"},
		{"include_usage", chat, `{"model":"m",` + msgs + `,"stream":true,"stream_options":{"include_usage":1}}`, "stream_options.include_usage", "boolean"},
		{"logit_bias value", completion, `{"model":"m","prompt":"p","logit_bias":{"5":"x"}}`, "logit_bias.5", "expected a number"},
		{"stop number", completion, `{"model":"m","prompt":"p","stop":5}`, "stop", "a string or an array of strings"},
		{"stop mixed", chat, `{"model":"m",` + msgs + `,"stop":["a",1]}`, "stop", "an array holding a number"},
		{"stop_token_ids strings", completion, `{"model":"m","prompt":"p","stop_token_ids":["1"]}`, "stop_token_ids[0]", "expected an integer"},
		{"prompt object", completion, `{"model":"m","prompt":{}}`, "prompt", "got object"},
		{"prompt mixed", completion, `{"model":"m","prompt":["a",1]}`, "prompt", "an array holding a number"},
		{"prompt ids then string", completion, `{"model":"m","prompt":[1,"a"]}`, "prompt", "array"},
		{"prompt null id", completion, `{"model":"m","prompt":[1,null]}`, "prompt", "holding a null"},
		{"prompt fraction id", completion, `{"model":"m","prompt":[[1.5]]}`, "prompt", "holding 1.5"},
		{"prompt bool", completion, `{"model":"m","prompt":[true]}`, "prompt", "array"},
		{"messages object", chat, `{"model":"m","messages":{}}`, "messages", "expected an array, got object"},
		{"role number", chat, `{"model":"m","messages":[{"role":"user","content":"a"},{"role":2}]}`, "messages[1].role", "expected a string"},
		{"content number", chat, `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages.content", "a string or an array of content parts, got number"},
		{"part type number", chat, `{"model":"m","messages":[{"role":"user","content":[{"type":3}]}]}`, "messages.content", "holding a number"},
		{"parameters array", generate, `{"inputs":"x","parameters":[]}`, "parameters", "expected an object"},
		{"max_new_tokens", generate, `{"inputs":"x","parameters":{"max_new_tokens":"3"}}`, "parameters.max_new_tokens", "integer"},
		{"tgi stop string", generate, `{"inputs":"x","parameters":{"stop":"a"}}`, "parameters.stop", "expected an array"},
		{"lora_path", loadLoRA, `{"lora_name":"a","lora_path":[]}`, "lora_path", "expected a string"},
		{"tokenize prompt list", tokenize, `{"model":"m","prompt":["a"]}`, "prompt", "expected a string"},
		// Missing required fields.
		{"no model", completion, `{"prompt":"p"}`, "model", "`model` is required"},
		{"empty model", chat, `{"model":"",` + msgs + `}`, "model", "required"},
		{"no prompt", completion, `{"model":"m"}`, "prompt", "`prompt` is required"},
		{"null prompt", completion, `{"model":"m","prompt":null}`, "prompt", "required"},
		{"no messages", chat, `{"model":"m"}`, "messages", "`messages` is required"},
		{"tokenize neither", tokenize, `{"model":"m"}`, "prompt", "either `prompt` or `messages`"},
		{"tokenize both", tokenize, `{"model":"m","prompt":"a",` + msgs + `}`, "messages", "not both"},
		{"tokenize no model", tokenize, `{"prompt":"a"}`, "model", "required"},
		{"no inputs", generate, `{"parameters":{}}`, "inputs", "cannot be empty"},
		{"no lora_name", loadLoRA, `{"lora_path":"/a"}`, "lora_name", "required"},
		{"no lora_path", loadLoRA, `{"lora_name":"a"}`, "lora_path", "required"},
		{"unload no name", unloadLoRA, `{}`, "lora_name", "required"},
		// Invalid UTF-8 and lone surrogates, anywhere.
		{"prompt bytes", completion, "{\"model\":\"m\",\"prompt\":\"caf\xe9\"}", "prompt", "prompt is not valid UTF-8"},
		{"prompt list bytes", completion, "{\"model\":\"m\",\"prompt\":[\"ok\",\"\xff\"]}", "prompt[1]", "prompt[1] is not valid UTF-8"},
		{"high surrogate", completion, `{"model":"m","prompt":"a\ud800b"}`, "prompt", "not valid UTF-8"},
		{"low surrogate", completion, `{"model":"m","prompt":"\udc00"}`, "prompt", "not valid UTF-8"},
		{"reversed pair", completion, `{"model":"m","prompt":"\ude00\ud83d"}`, "prompt", "not valid UTF-8"},
		{"surrogate at end", completion, `{"model":"m","prompt":"x\ud83d"}`, "prompt", "not valid UTF-8"},
		{"utf-8 encoded surrogate", completion, "{\"model\":\"m\",\"prompt\":\"\xed\xa0\x80\"}", "prompt", "not valid UTF-8"},
		{"message content", chat, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":\"\xc3\"}]}", "messages[1].content", "not valid UTF-8"},
		{"content part", chat, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"\xff\"}]}]}", "messages[0].content[0].text", "not valid UTF-8"},
		{"inputs", generate, "{\"inputs\":\"\xf0\x9f\x98\"}", "inputs", "inputs is not valid UTF-8"},
		{"model", chat, "{\"model\":\"m\xff\"," + msgs + "}", "model", "not valid UTF-8"},
		{"unknown field", completion, "{\"model\":\"m\",\"prompt\":\"p\",\"x\":[\"\xff\"]}", "x[0]", "not valid UTF-8"},
		{"top-level key", completion, "{\"model\":\"m\",\"prompt\":\"p\",\"\xff\":1}", "", "request body is not valid UTF-8"},
		{"nested key", generate, "{\"inputs\":\"x\",\"parameters\":{\"\xff\":1}}", "parameters", "parameters is not valid UTF-8"},
		// Fields known elsewhere that this server does not implement.
		{"suffix", completion, `{"model":"m","prompt":"p","suffix":"end"}`, "suffix", "`suffix` is not supported"},
		{"best_of", completion, `{"model":"m","prompt":"p","best_of":3}`, "best_of", "not supported"},
		{"beam search", completion, `{"model":"m","prompt":"p","use_beam_search":true}`, "use_beam_search", "not supported"},
		{"json mode", chat, `{"model":"m",` + msgs + `,"response_format":{"type":"json_object"}}`, "response_format", "not supported"},
		{"guided", completion, `{"model":"m","prompt":"p","guided_json":{}}`, "guided_json", "not supported"},
		{"tools", chat, `{"model":"m",` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}]}`, "tools", "not supported"},
		{"tool_choice", chat, `{"model":"m",` + msgs + `,"tool_choice":"required"}`, "tool_choice", "not supported"},
		{"audio out", chat, `{"model":"m",` + msgs + `,"modalities":["text","audio"]}`, "modalities", "not supported"},
		{"chat echo", chat, `{"model":"m",` + msgs + `,"echo":true}`, "echo", "not supported"},
		{"no generation prompt", chat, `{"model":"m",` + msgs + `,"add_generation_prompt":false}`, "add_generation_prompt", "not supported"},
		{"chat template", chat, `{"model":"m",` + msgs + `,"chat_template":"{{x}}"}`, "chat_template", "not supported"},
		{"keep special", completion, `{"model":"m","prompt":"p","skip_special_tokens":false}`, "skip_special_tokens", "not supported"},
		{"stop str in output", chat, `{"model":"m",` + msgs + `,"include_stop_str_in_output":true}`, "include_stop_str_in_output", "not supported"},
		{"prompt_logprobs", completion, `{"model":"m","prompt":"p","prompt_logprobs":0}`, "prompt_logprobs", "not supported"},
		{"escaped key", completion, `{"model":"m","prompt":"p","\u0073uffix":"x"}`, "suffix", "not supported"},
		{"tokenize template", tokenize, `{"model":"m",` + msgs + `,"continue_final_message":true}`, "continue_final_message", "not supported"},
		{"typical_p", generate, `{"inputs":"x","parameters":{"typical_p":0.5}}`, "parameters.typical_p", "`typical_p` is not supported"},
		{"watermark", generate, `{"inputs":"x","parameters":{"watermark":true}}`, "parameters.watermark", "not supported"},
		{"merged adapters", generate, `{"inputs":"x","parameters":{"merged_adapters":{"ids":["a"]}}}`, "parameters.merged_adapters", "not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.decode([]byte(c.body))
			if err == nil {
				t.Fatalf("accepted %s", c.body)
			}
			wantBadRequest(t, err, c.param, c.mention)
		})
	}
}

// The no-op values of fields this server does not implement pass, as
// clients send them by default.
func TestDecodeAcceptsNoOpValues(t *testing.T) {
	bodies := []struct {
		decode decodeFunc
		body   string
	}{
		{completion, `{"model":"m","prompt":"p","suffix":"","best_of":1,"use_beam_search":false,
			"response_format":{"type":"text"},"logits_processors":[],"bad_words":[ ],"skip_special_tokens":true,
			"include_stop_str_in_output":false,"prompt_logprobs":null,"add_special_tokens":true}`},
		{chat, `{"model":"m",` + msgs + `,"tools":[],"tool_choice":"none","functions":null,"function_call":"auto",
			"modalities":["text"],"echo":false,"add_generation_prompt":true,"chat_template_kwargs":{},
			"add_special_tokens":false,"parallel_tool_calls":true,"store":false,"metadata":{"a":"b"},
			"service_tier":"auto","reasoning_effort":"low","stream_options":null}`},
		{tokenize, `{"model":"m","prompt":"p","continue_final_message":true}`}, // template knobs only matter with messages
		{generate, `{"inputs":"x","parameters":{"best_of":1,"typical_p":null,"watermark":false,"truncate":null,
			"apply_chat_template":false}}`},
		{generate, `{"inputs":"x","parameters":null}`},
	}
	for _, b := range bodies {
		if err := b.decode([]byte(b.body)); err != nil {
			t.Errorf("%s: %v", b.body, err)
		}
	}
}

// Token-id prompts are read by a fast path; encoding/json is the reference.
func TestDecodeTokenPromptsMatchEncodingJSON(t *testing.T) {
	for _, p := range []string{
		`[0]`, `[ 1 ,2,	3 ]`, "[\n-0,\r\n7]", `[9223372036854775807]`, `[-9223372036854775808]`,
		`[922337203685477580]`, `[[1, 2] , [ ], [3]]`, `[ [ 5 ] ]`, `[[]]`,
	} {
		r, err := api.DecodeCompletion([]byte(`{"model":"m","prompt":` + p + `}`))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		var want any = &[]int{}
		got := any(&r.Prompt.Tokens[0])
		if r.Prompt.Form == api.PromptTokenLists {
			want, got = &[][]int{}, &r.Prompt.Tokens
		}
		if err := json.Unmarshal([]byte(p), want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, encoding/json reads %v", p, got, want)
		}
	}
	for _, p := range []string{`[1e2]`, `[1.0]`, `[9223372036854775808]`, `[[1],[2.5]]`, `[[1],2]`, `[1,[2]]`} {
		_, err := api.DecodeCompletion([]byte(`{"model":"m","prompt":` + p + `}`))
		wantBadRequest(t, err, "prompt", "prompt")
	}
}
