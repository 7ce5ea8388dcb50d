package router

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkRouterOverhead measures the latency the router adds, side by side in one run:
// the same request to a stub worker directly and through the router, on loopback
// (go test -run=NONE -bench=RouterOverhead ./router).
func BenchmarkRouterOverhead(b *testing.B) {
	stub := serveStub(b)
	r, err := New(Config{BaseModel: "base"})
	if err != nil {
		b.Fatal(err)
	}
	r.SetWorker("stub", stub, 1)
	routed := serveHandler(b, r.Handler)
	body := []byte(`{"model":"sql","prompt":"SELECT","max_tokens":4}`)
	for _, target := range []struct{ name, addr string }{{"direct", stub}, {"routed", routed}} {
		b.Run(target.name, func(b *testing.B) {
			client := &fasthttp.HostClient{Addr: target.addr}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI("http://" + target.addr + "/v1/completions")
			req.Header.SetMethod("POST")
			req.SetBody(body)
			var lat []time.Duration
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("%v %d", err, resp.StatusCode())
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		})
	}
}

// serveStub answers every request like a worker's non-streaming completion, at once.
func serveStub(b *testing.B) string {
	reply := []byte(`{"id":"cmpl-1","object":"text_completion","created":1,"model":"sql","choices":[{"index":0,"text":" FROM t","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}`)
	return serveHandler(b, func(c *fasthttp.RequestCtx) {
		c.SetContentType("application/json")
		c.SetBody(reply)
	})
}

func serveHandler(b *testing.B, h fasthttp.RequestHandler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}
