package router

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/internal/testutil"
)

// BenchmarkRouterOverhead measures the latency the router adds, side by side in one run:
// the same request to a stub worker directly and through the router, on loopback
// (go test -run=NONE -bench=RouterOverhead ./router).
func BenchmarkRouterOverhead(b *testing.B) {
	stub := testutil.ServeStubWorker(b)
	r, err := New(Config{BaseModel: "base"})
	if err != nil {
		b.Fatal(err)
	}
	r.SetWorker("stub", stub, 1)
	routed := testutil.ServeFastHTTP(b, r.Handler)
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
			testutil.ReportLatencies(b, lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		})
	}
}
