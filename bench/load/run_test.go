package load

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/internal/testutil"
)

// A closed loop keeps exactly Concurrency requests in flight and stops after Requests.
func TestClosedLoop(t *testing.T) {
	var inFlight, most atomic.Int64
	addr := testutil.ServeFastHTTP(t, func(c *fasthttp.RequestCtx) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		inFlight.Add(-1)
		c.SetContentType("text/event-stream")
		c.SetBodyString("data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":1}}\n\ndata: [DONE]\n\n")
	})
	recs, err := Run(context.Background(), Config{URL: "http://" + addr, Duration: time.Minute, Concurrency: 4, Requests: 60,
		Adapters: []string{"a", "b"}, Input: "uniform:8,8", Output: "uniform:1,1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 60 {
		t.Fatalf("%d requests, want 60", len(recs))
	}
	for _, r := range recs {
		if r.Status != 200 || r.CompletionTokens != 1 || r.TTFT <= 0 {
			t.Fatalf("record %+v", r)
		}
	}
	if m := most.Load(); m != 4 {
		t.Errorf("at most %d requests in flight, want 4", m)
	}
}
