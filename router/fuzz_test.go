package router

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzRequestInfo: request bodies are untrusted. Never panic; for a valid UTF-8 body that
// encoding/json also accepts as an object, the adapter is the string it finds there.
func FuzzRequestInfo(f *testing.F) {
	for _, s := range []string{
		`{"model":"sql","prompt":"x","max_tokens":4}`, `{"inputs":"x","parameters":{"adapter_id":"a/b","max_new_tokens":9}}`,
		`{"model":"base"}`, `[]`, `{"model":1}`, `{"model":"\u00e9","max_tokens":-5}`, `{"max_tokens":1e99}`, `{`, ``,
	} {
		f.Add([]byte(s), "model")
		f.Add([]byte(s), "parameters.adapter_id")
	}
	f.Fuzz(func(t *testing.T, body []byte, field string) {
		adapter, tokens, err := requestInfo(body, field, "base")
		if err != nil {
			return
		}
		if tokens < 0 {
			t.Fatalf("negative token charge %d", tokens)
		}
		var m map[string]any
		// encoding/json replaces invalid UTF-8; the workers refuse it (pkg/api).
		if field != "model" || !utf8.Valid(body) || json.Unmarshal(body, &m) != nil {
			return
		}
		if s, ok := m["model"].(string); ok && s != "base" && s != adapter {
			t.Fatalf("model %q read as %q", s, adapter)
		}
	})
}
