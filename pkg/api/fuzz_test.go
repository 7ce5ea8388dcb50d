package api_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/api"
)

// roundTrip is the property every decoder must keep: it never panics,
// refuses with a 400 *Error, and what it accepts encodes to a body that
// decodes to the same value and validates the same way.
func roundTrip[T interface{ Validate() error }](t *testing.T, body []byte, decode func([]byte) (T, error)) {
	r, err := decode(body)
	if err != nil {
		var e *api.Error
		if !errors.As(err, &e) || e.Status != 400 {
			t.Fatalf("refusal %v is not a 400 *api.Error", err)
		}
		if !json.Valid(e.JSON()) {
			t.Fatalf("error body is not JSON: %q", e.JSON())
		}
		return
	}
	valid := r.Validate()
	again, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("accepted %q but cannot encode it: %v", body, err)
	}
	r2, err := decode(again)
	if err != nil {
		t.Fatalf("accepted %q, re-encoded as %s, refused: %v", body, again, err)
	}
	if !reflect.DeepEqual(r, r2) {
		t.Fatalf("%q decodes to %+v\nits encoding %s to %+v", body, r, again, r2)
	}
	if valid2 := r2.Validate(); (valid == nil) != (valid2 == nil) {
		t.Fatalf("Validate %v before the round trip, %v after", valid, valid2)
	}
}

func FuzzDecodeCompletion(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"Hello","max_tokens":8,"temperature":0.7,"stop":["\n"],"logit_bias":{"50256":-100}}`,
		`{"model":"m","prompt":["a","b"],"n":2,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","prompt":[1,2,3],"logprobs":2,"echo":true,"seed":-1}`,
		`{"model":"m","prompt":[[1],[2,3]],"top_k":-1,"min_p":0.1,"stop":"x","stop_token_ids":[2]}`,
		`{"model":"m","prompt":[ [ 1 , 2 ] , [ ] ],"max_tokens":1}`, `{"model":"m","prompt":[ -0 , 9223372036854775807 ]}`,
		`{"model":"m","prompt":"\ud83d\ude00 caf\u00e9","suffix":null,"best_of":1,"Model":"M"}`,
		`{"model":"m","prompt":"a\ud800"}`,
		"{\"model\":\"m\",\"prompt\":\"\xff\"}",
		`{"model":"m","prompt":[]}`, `[]`, `null`, `{"model":1}`, `{"model":"m","prompt":{"a":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		roundTrip(t, body, api.DecodeCompletion)
	})
}

func FuzzDecodeChat(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":5}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}]}`,
		`{"model":"m","messages":[{"role":"assistant","content":null,"name":"x"}],"logprobs":true,"top_logprobs":2}`,
		`{"model":"m","messages":[{"role":"user","content":[]}],"max_completion_tokens":3,"tools":[],"tool_choice":"none"}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"\udc00"}],"stop":"a","n":3}`,
		`{"model":"m","messages":{}}`, `{"messages":[]}`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		roundTrip(t, body, api.DecodeChat)
	})
}

func FuzzDecodeGenerate(f *testing.F) {
	for _, s := range []string{
		`{"inputs":"Hello","parameters":{"adapter_id":"org/sql","max_new_tokens":20,"temperature":0.7,"top_p":0.9,"details":true}}`,
		`{"inputs":"x","stream":true,"parameters":{"stop":["\n"],"seed":42,"do_sample":true,"top_k":5,"decoder_input_details":true}}`,
		`{"inputs":"x","parameters":{"best_of":2,"watermark":true}}`,
		`{"inputs":"x","parameters":null}`, `{"inputs":""}`, `{"inputs":"\ud800"}`, `{"parameters":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		roundTrip(t, body, api.DecodeGenerate)
	})
}
