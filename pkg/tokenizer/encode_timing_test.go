package tokenizer

import (
	"strings"
	"testing"
)

// BenchmarkEncode measures encoding throughput (MB/s) on the real Llama 3.1
// tokenizer, over the mixed reference texts (prose, code, CJK, emoji,
// whitespace runs, special tokens).
func BenchmarkEncode(b *testing.B) {
	e := readTokref(b)
	var texts []string
	for _, c := range e.Tokenizers[0].Cases {
		texts = append(texts, c.Text)
	}
	text := strings.Join(texts, "\n")
	tok := realTokenizer(b, e.Tokenizers[0].Name, e.Tokenizers[0].Dir)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(text, true)
	}
}
