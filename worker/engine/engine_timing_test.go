package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/lorafleet/lorafleet/internal/golden"
)

// BenchmarkGenerate reports decode tokens/s for batches of sequences spread over the base
// model and every adapter of each test model (prompt of the first golden case, 64 tokens).
func BenchmarkGenerate(b *testing.B) {
	for _, set := range golden.Sets {
		f := loadFixture(b, set)
		names := append([]string{""}, f.g.Adapters()...)
		for _, batch := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/batch=%d", set, batch), func(b *testing.B) {
				tokens := 0
				for b.Loop() {
					e, err := New(f.model, Config{})
					if err != nil {
						b.Fatal(err)
					}
					var seqs []*Sequence
					for i := range batch {
						seqs = append(seqs, &Sequence{Prompt: f.g.Cases[0].PromptIDs, Adapter: f.adapters[names[i%len(names)]], Sampler: greedy(), MaxTokens: 64})
					}
					if err := e.Run(context.Background(), seqs); err != nil {
						b.Fatal(err)
					}
					tokens += 64 * batch
				}
				b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
