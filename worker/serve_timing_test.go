package worker

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// BenchmarkWorkerThroughput measures generated tokens per second through the HTTP API, with
// concurrent greedy streams over one or three adapters (go test -bench=WorkerThroughput ./worker).
func BenchmarkWorkerThroughput(b *testing.B) {
	const tokens = 64
	for _, adapters := range [][]string{{"sql"}, {"sql", "chat", "tiny"}} {
		for _, conc := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("adapters=%d/concurrency=%d", len(adapters), conc), func(b *testing.B) {
				tw := startWorker(b, "tiny-llama", nil)
				var total time.Duration
				n := 0
				for b.Loop() {
					n++
					start := time.Now()
					var wg sync.WaitGroup
					for i := range conc {
						wg.Go(func() {
							body := map[string]any{"model": adapters[(n*conc+i)%len(adapters)], "prompt": "The quick brown fox", "max_tokens": tokens, "temperature": 0, "ignore_eos": true}
							if status, out, _, err := tw.do("/v1/completions", body); err != nil || status != http.StatusOK {
								b.Errorf("%d %s %v", status, out, err)
							}
						})
					}
					wg.Wait()
					total += time.Since(start)
				}
				b.ReportMetric(float64(b.N*conc*tokens)/total.Seconds(), "tok/s")
			})
		}
	}
}
