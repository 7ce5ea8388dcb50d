package load

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/gonum/stat"
)

// Summary is a run's aggregate numbers.
type Summary struct {
	Requests, OK   int
	Seconds        float64 // first request to last completion
	RequestsPerSec float64
	TokensPerSec   float64 // generated tokens
	TTFT, TPOT     Percentiles
	E2E            Percentiles
	SLO            time.Duration
	SLOAttainment  float64 // fraction of all requests whose first token came within SLO
}

// Percentiles of a latency, in seconds.
type Percentiles struct{ P50, P90, P99 float64 }

// Summarize aggregates records.
func Summarize(recs []Record, slo time.Duration) Summary {
	s := Summary{Requests: len(recs), SLO: slo}
	var ttft, tpot, e2e []float64
	tokens, end := 0, 0.0
	within := 0
	for _, r := range recs {
		end = max(end, r.Start+r.E2E)
		if r.Status != 200 || r.Error != "" {
			continue
		}
		s.OK++
		tokens += r.CompletionTokens
		ttft, e2e = append(ttft, r.TTFT), append(e2e, r.E2E)
		if r.CompletionTokens > 1 {
			tpot = append(tpot, r.TPOT)
		}
		if r.TTFT < slo.Seconds() {
			within++
		}
	}
	s.Seconds = end
	if end > 0 {
		s.RequestsPerSec, s.TokensPerSec = float64(s.OK)/end, float64(tokens)/end
	}
	if len(recs) > 0 {
		s.SLOAttainment = float64(within) / float64(len(recs))
	}
	s.TTFT, s.TPOT, s.E2E = percentiles(ttft), percentiles(tpot), percentiles(e2e)
	return s
}

func percentiles(xs []float64) Percentiles {
	if len(xs) == 0 {
		return Percentiles{}
	}
	slices.Sort(xs)
	q := func(p float64) float64 { return stat.Quantile(p, stat.Empirical, xs, nil) }
	return Percentiles{P50: q(0.5), P90: q(0.9), P99: q(0.99)}
}

// Markdown writes the summary as a table.
func (s Summary) Markdown(w io.Writer, title string) error {
	ms := func(x float64) string { return strconv.FormatFloat(x*1000, 'f', 1, 64) }
	_, err := fmt.Fprintf(w, `# %s

%d requests, %d succeeded, over %.1f s: %.2f requests/s, %.1f generated tokens/s.
SLO attainment (first token within %v): %.1f%%.

| latency (ms) | p50 | p90 | p99 |
|---|---|---|---|
| time to first token | %s | %s | %s |
| time per output token | %s | %s | %s |
| end to end | %s | %s | %s |
`, title, s.Requests, s.OK, s.Seconds, s.RequestsPerSec, s.TokensPerSec, s.SLO, 100*s.SLOAttainment,
		ms(s.TTFT.P50), ms(s.TTFT.P90), ms(s.TTFT.P99), ms(s.TPOT.P50), ms(s.TPOT.P90), ms(s.TPOT.P99),
		ms(s.E2E.P50), ms(s.E2E.P90), ms(s.E2E.P99))
	return err
}

// WriteAll writes results.json, results.csv, summary.md and the plots into dir.
func WriteAll(dir, title string, recs []Record, s Summary) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	b, err := json.MarshalIndent(struct {
		Summary  Summary  `json:"summary"`
		Requests []Record `json:"requests"`
	}{s, recs}, "", " ")
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := writeCSV(filepath.Join(dir, "results.csv"), recs); err != nil {
		return err
	}
	if err := Plots(dir, recs, s); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "summary.md"))
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	return s.Markdown(f, title)
}

func writeCSV(path string, recs []Record) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write([]string{"start", "adapter", "prompt_tokens", "output_tokens", "completion_tokens", "ttft", "tpot", "e2e", "status", "worker", "error"})
	g := func(x float64) string { return strconv.FormatFloat(x, 'f', 6, 64) }
	for _, r := range recs {
		w.Write([]string{g(r.Start), r.Adapter, strconv.Itoa(r.PromptTokens), strconv.Itoa(r.OutputTokens), strconv.Itoa(r.CompletionTokens),
			g(r.TTFT), g(r.TPOT), g(r.E2E), strconv.Itoa(r.Status), r.Worker, r.Error})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	return nil
}
