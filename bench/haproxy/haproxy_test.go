// Package haproxy compares lorafleet's router with HAProxy doing the same job: consistent
// hashing with bounded loads (hash-balance-factor 125 = c 1.25) on the adapter, in front of the
// same stub workers on loopback (go test -run=NONE -bench=. ./bench/haproxy; needs haproxy
// from Debian: apt-get install haproxy).
package haproxy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/internal/testutil"

	"github.com/lorafleet/lorafleet/router"
)

const stubs = 4

func BenchmarkProxies(b *testing.B) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		b.Skip("haproxy is not installed (apt-get install haproxy)")
	}
	var upstreams []string
	for range stubs {
		upstreams = append(upstreams, testutil.ServeStubWorker(b))
	}
	r, err := router.New(router.Config{BaseModel: "base"})
	if err != nil {
		b.Fatal(err)
	}
	for i, u := range upstreams {
		r.SetWorker("stub"+strconv.Itoa(i), u, 1)
	}
	targets := []struct{ name, addr string }{
		{"direct", upstreams[0]},
		{"haproxy", startHAProxy(b, upstreams)},
		{"lorafleet", testutil.ServeFastHTTP(b, r.Handler)},
	}
	for _, tg := range targets {
		b.Run(tg.name+"/latency", func(b *testing.B) { latency(b, tg.addr) })
	}
	for _, tg := range targets {
		b.Run(tg.name+"/throughput", func(b *testing.B) { throughput(b, tg.addr) })
	}
}

func request(addr string, i int) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	adapter := "adapter-" + strconv.Itoa(i%100)
	req.SetRequestURI("http://" + addr + "/v1/completions")
	req.Header.SetMethod("POST")
	req.Header.Set("X-Adapter", adapter) // HAProxy's key; lorafleet reads "model" from the body
	req.SetBodyString(`{"model":"` + adapter + `","prompt":"SELECT","max_tokens":4}`)
	return req
}

// latency times sequential requests and reports p50 and p99.
func latency(b *testing.B, addr string) {
	client := &fasthttp.HostClient{Addr: addr}
	resp := fasthttp.AcquireResponse()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		req := request(addr, i)
		t0 := time.Now()
		if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatalf("%v %d", err, resp.StatusCode())
		}
		lat = append(lat, time.Since(t0))
		fasthttp.ReleaseRequest(req)
		i++
	}
	testutil.ReportLatencies(b, lat)
}

// throughput runs 64 concurrent clients and reports requests per second.
func throughput(b *testing.B, addr string) {
	const clients = 64
	client := &fasthttp.HostClient{Addr: addr, MaxConns: clients}
	start := time.Now()
	var wg sync.WaitGroup
	n := b.N
	for c := range clients {
		wg.Go(func() {
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			for i := c; i < n; i += clients {
				req := request(addr, i)
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Errorf("%v %d", err, resp.StatusCode())
					return
				}
				fasthttp.ReleaseRequest(req)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
}

// startHAProxy runs haproxy with the same bounded-load consistent hashing on X-Adapter.
func startHAProxy(b *testing.B, upstreams []string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`global
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind %s
  default_backend workers
backend workers
  balance hdr(X-Adapter)
  hash-type consistent
  hash-balance-factor 125
`, addr)
	for i, u := range upstreams {
		cfg += fmt.Sprintf("  server s%d %s\n", i, u)
	}
	path := filepath.Join(b.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", path)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b.Fatal("haproxy did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
