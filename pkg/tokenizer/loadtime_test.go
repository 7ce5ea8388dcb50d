//go:build !race

package tokenizer

import (
	"path/filepath"
	"testing"
	"time"
)

// Load time matters at worker start-up. Not built with -race, which slows
// loading several times over.
func TestRealLoadTime(t *testing.T) {
	e := readTokref(t)
	for _, ref := range e.Tokenizers {
		start := time.Now()
		loadTokenizer(t, filepath.Join(tokrefDir, ref.Dir))
		// Generous for a loaded 2-core CI machine; typically a few hundred ms.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: Load took %v", ref.Name, d)
		}
	}
}
