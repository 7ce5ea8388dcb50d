// Package testutil holds the helpers tests across the repository share.
package testutil

import (
	"net"
	"slices"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
	"github.com/valyala/fasthttp"
)

// RunNATS starts an embedded NATS server, stopped when the test ends; port -1 picks a free one.
func RunNATS(tb testing.TB, port int) *natsserver.Server {
	tb.Helper()
	opts := natstest.DefaultTestOptions
	opts.Port = port
	s := natstest.RunServer(&opts)
	tb.Cleanup(s.Shutdown)
	return s
}

// Eventually polls cond every few milliseconds until it holds, and fails the test if it
// still does not after timeout. Use it instead of sleeping for a guessed duration.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ServeFastHTTP serves h on a loopback port until the test ends and returns its address.
func ServeFastHTTP(tb testing.TB, h fasthttp.RequestHandler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// stubCompletion is what a worker answers to a short non-streaming completion.
var stubCompletion = []byte(`{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" FROM t","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}`)

// ServeStubWorker serves a stand-in worker that answers every request at once with a
// completion, for measuring what a proxy in front of it adds.
func ServeStubWorker(tb testing.TB) string {
	return ServeFastHTTP(tb, func(c *fasthttp.RequestCtx) {
		c.SetContentType("application/json")
		c.SetBody(stubCompletion)
	})
}

// ReportLatencies reports the p50 and p99 of latencies as benchmark metrics (in µs).
func ReportLatencies(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
