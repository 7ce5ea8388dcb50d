package tokenizer

import (
	"path/filepath"
	"testing"
)

// Load time matters at worker start-up: each real tokenizer's Load, measured here rather
// than asserted in a timed test (a shared CI machine makes any bound flaky). A few hundred
// ms each on this project's 2-core machine.
func BenchmarkRealLoad(b *testing.B) {
	e := readTokref(b)
	for _, ref := range e.Tokenizers {
		b.Run(ref.Name, func(b *testing.B) {
			for b.Loop() {
				loadTokenizer(b, filepath.Join(tokrefDir, ref.Dir))
			}
		})
	}
}
