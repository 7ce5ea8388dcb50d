package load

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var recs []Record
	for i := range 100 {
		// TTFT i ms; 11 tokens; E2E = TTFT + 10 × 5 ms.
		ttft := float64(i) / 1000
		recs = append(recs, Record{Start: float64(i) / 10, Status: 200, CompletionTokens: 11, TTFT: ttft, TPOT: 0.005, E2E: ttft + 0.05})
	}
	recs = append(recs, Record{Start: 1, Status: 429, Error: "busy"})
	s := Summarize(recs, 50*time.Millisecond)
	if s.Requests != 101 || s.OK != 100 {
		t.Fatalf("counts %+v", s)
	}
	// The last request starts at 9.9 s and ends 0.149 s later.
	if math.Abs(s.Seconds-10.049) > 1e-9 || math.Abs(s.TokensPerSec-1100/10.049) > 1e-9 {
		t.Errorf("span %v s, %v tokens/s", s.Seconds, s.TokensPerSec)
	}
	// Empirical quantiles of 0..99 ms: p50 = 49 ms, p90 = 89 ms, p99 = 98 ms.
	if s.TTFT.P50 != 0.049 || s.TTFT.P90 != 0.089 || s.TTFT.P99 != 0.098 {
		t.Errorf("ttft percentiles %+v", s.TTFT)
	}
	// 50 of 101 requests had their first token within 50 ms (the failed one did not).
	if math.Abs(s.SLOAttainment-50.0/101) > 1e-12 {
		t.Errorf("SLO attainment %v", s.SLOAttainment)
	}
	dir := t.TempDir()
	if err := WriteAll(dir, "test", recs, s); err != nil {
		t.Fatal(err)
	}
	csv, err := os.ReadFile(filepath.Join(dir, "results.csv"))
	if err != nil || strings.Count(string(csv), "\n") != 102 {
		t.Errorf("results.csv: %d lines, %v", strings.Count(string(csv), "\n"), err)
	}
	for _, png := range []string{"ttft_cdf.png", "e2e_cdf.png", "throughput.png", "slo.png"} {
		b, err := os.ReadFile(filepath.Join(dir, png))
		if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
			t.Errorf("%s: %d bytes, %v", png, len(b), err)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	if err != nil || !strings.Contains(string(md), "| time to first token | 49.0 | 89.0 | 98.0 |") {
		t.Errorf("summary.md:\n%s (%v)", md, err)
	}
}

// The plan depends only on the seed, and its arrivals stay inside the duration.
func TestPlanIsReproducible(t *testing.T) {
	c := Config{URL: "x", Duration: 20 * time.Second, Rate: 50, Adapters: []string{"a", "b", "c"}, Input: "uniform:8,16", Output: "uniform:4,4", Seed: 9}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	a, err := plan(&c)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := plan(&c)
	if len(a) != len(b) || len(a) < 900 || len(a) > 1100 {
		t.Fatalf("%d and %d requests planned for 1,000 expected", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] || a[i].at >= c.Duration || a[i].output != 4 {
			t.Fatalf("request %d: %+v vs %+v", i, a[i], b[i])
		}
	}
}
