package api_test

import (
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/api"
)

// A chat request with a 16 KiB conversation, the common case on the hot path.
func BenchmarkDecodeChat(b *testing.B) {
	turn := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 90) // ~4 KiB
	body := []byte(`{"model":"sql-lora","max_tokens":128,"temperature":0.7,"stream":true,
		"stream_options":{"include_usage":true},"messages":[
		{"role":"system","content":"` + turn + `"},{"role":"user","content":"` + turn + `"},
		{"role":"assistant","content":"` + turn + `"},{"role":"user","content":"` + turn + `"}]}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r, err := api.DecodeChat(body)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// The same body through the raw-byte checks only is what they add.
func BenchmarkDecodeCompletionTokens(b *testing.B) {
	ids := strings.Repeat("12345,", 4000)
	body := []byte(`{"model":"m","prompt":[` + ids + `1],"max_tokens":16}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := api.DecodeCompletion(body); err != nil {
			b.Fatal(err)
		}
	}
}
