package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `lorafleet bench routing` on 16 simulated worker processes with the real router, NATS and
// gossip: it measures capacity, runs each policy on a fresh cluster and writes every output.
// Adapter affinity shows even in a short run: with 200 adapters over 16 workers each
// worker's share fits its 32 device slots under bounded-load hashing, while least-loaded
// routing brings most adapters to most workers.
func TestBenchRoutingOnSimulatedWorkers(t *testing.T) {
	g := loadGolden(t, "tiny-llama")
	out := t.TempDir()
	_, stderr, code := lorafleet(t, "", "bench", "routing", "--binary", binary(t), "--model", g.ModelDir(), "--source-adapters", filepath.Join(g.Dir, "adapters"),
		"--workers", "16", "--adapters", "200", "--max-adapters", "32", "--zipf", "1.0", "--load", "0.5", "--policies", "bounded:1.25,least-loaded",
		"--warmup-requests", "2000", "--duration", "4s", "--out", out)
	if code != 0 {
		t.Fatalf("bench routing: exit %d\n%s", code, stderr)
	}
	var rep struct {
		Capacity float64 `json:"capacity_per_s"`
		Results  []struct {
			Policy    string  `json:"policy"`
			Requests  int     `json:"requests"`
			Errors    int     `json:"errors"`
			ColdLoads float64 `json:"cold_loads_per_1000"`
			TTFTP99   float64 `json:"ttft_p99_ms"`
			MeanLoad  float64 `json:"mean_worker_load"`
		} `json:"results"`
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("results.json: %v\n%s", err, b)
	}
	if rep.Capacity <= 0 || len(rep.Results) != 2 {
		t.Fatalf("capacity %v, %d results", rep.Capacity, len(rep.Results))
	}
	cold := map[string]float64{}
	for _, r := range rep.Results {
		if r.Requests < 10 || r.Errors != 0 || r.TTFTP99 <= 0 || r.MeanLoad <= 0 {
			t.Errorf("%s: %+v", r.Policy, r)
		}
		cold[r.Policy] = r.ColdLoads
	}
	t.Logf("cold loads per 1000 requests: bounded %.1f, least-loaded %.1f", cold["bounded"], cold["least-loaded"])
	if !(cold["least-loaded"] > 2*cold["bounded"]) {
		t.Errorf("cold loads per 1000 requests: bounded %.1f, least-loaded %.1f; affinity should save most of them", cold["bounded"], cold["least-loaded"])
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil || !strings.Contains(string(md), "Bounded (c = 1.25) against least-loaded") {
		t.Errorf("results.md: %v\n%s", err, md)
	}
	for _, f := range []string{"cold_loads_50.png", "ttft_p99_50.png"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
