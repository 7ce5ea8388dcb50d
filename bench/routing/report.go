package routing

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Write puts results.json, results.md and the plots (cold_loads_NN.png and ttft_p99_NN.png
// per offered load NN%) into dir.
func (rep *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	b, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	var md strings.Builder
	rep.Markdown(&md)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	for _, l := range rep.Config.Loads {
		pct := int(100*l + 0.5)
		if err := rep.barPlot(filepath.Join(dir, fmt.Sprintf("cold_loads_%d.png", pct)), l,
			fmt.Sprintf("Cold adapter loads per 1,000 requests, %d%% load", pct), false, func(r Result) float64 { return r.ColdLoads }); err != nil {
			return err
		}
		if err := rep.barPlot(filepath.Join(dir, fmt.Sprintf("ttft_p99_%d.png", pct)), l,
			fmt.Sprintf("p99 time to first token (ms, modeled H100, log scale), %d%% load", pct), true, func(r Result) float64 { return r.TTFTP99 }); err != nil {
			return err
		}
	}
	return nil
}

// Markdown writes the tables: one per popularity and load, then the check.
func (rep *Report) Markdown(w io.Writer) {
	c := rep.Config
	fmt.Fprintf(w, "# Routing experiments\n\nMade by `%s`.\n\n", rep.Command)
	fmt.Fprintf(w, "%d simulated workers (`lorafleet worker --backend sim`, default H100 + Llama-2-7B profile, time scale %g), "+
		"%d adapters, %d device adapter slots and %d running sequences per worker, prompts %s and outputs %s tokens, "+
		"Poisson arrivals. Each run starts a fresh cluster (router, NATS, memberlist and workers as processes), fills its adapter caches with %d short requests "+
		"(8 prompt tokens, 1 output token, same popularity and policy, closed loop), then measures %v of load. "+
		"Capacity (100%% load) = %.1f requests/s wall clock = %.0f requests/s on the modeled GPUs, measured by a closed loop of %d clients under least-loaded routing. "+
		"Times are the modeled GPU's (wall clock ÷ %g); a worker's load is what the router's bound applies to (the larger of the router's in-flight count and the worker's last report), sampled every 100 ms.\n\n",
		c.Workers, c.TimeScale, c.Adapters, c.Slots, c.MaxRunning, c.Input, c.Output, c.WarmupRequests, c.Duration,
		rep.Capacity, rep.Capacity*c.TimeScale, c.Workers*c.MaxRunning, c.TimeScale)
	for _, a := range c.Alphas {
		for _, l := range c.Loads {
			fmt.Fprintf(w, "## Zipf α = %g, %.0f%% load\n\n", a, 100*l)
			fmt.Fprintln(w, "| policy | cold loads /1k req | disk loads /1k req | TTFT p50 ms | TTFT p99 ms | max load | mean load | samples with max ≤ 1.25·mean+1 | busiest worker share | req/s | errors |")
			fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
			for _, r := range rep.results(a, l) {
				fmt.Fprintf(w, "| %v | %.1f | %.1f | %.0f | %.0f | %.1f | %.1f | %.0f%% | %.2f | %.0f | %d |\n", r.Policy, r.ColdLoads, r.DiskLoads,
					r.TTFTP50, r.TTFTP99, r.MaxLoad, r.MeanLoad, 100*r.WithinBound, r.Busiest, r.Throughput, r.Errors)
			}
			fmt.Fprintln(w)
		}
	}
	rep.check(w)
}

// check compares bounded-load hashing at c = 1.25 with least-loaded, as the issue asks.
func (rep *Report) check(w io.Writer) {
	fmt.Fprintln(w, "## Bounded (c = 1.25) against least-loaded")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Zipf α | load | cold loads: least-loaded ÷ bounded | p99 TTFT ms bounded / least-loaded | bounded: time-averaged max ≤ 1.25·mean+1 | bounded: samples within it |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, a := range rep.Config.Alphas {
		for _, l := range rep.Config.Loads {
			b, okB := rep.find(Policy{"bounded", 1.25}, a, l)
			ll, okL := rep.find(Policy{Name: "least-loaded"}, a, l)
			if !okB || !okL {
				continue
			}
			ratio := "∞"
			if b.ColdLoads > 0 {
				ratio = fmt.Sprintf("%.1f×", ll.ColdLoads/b.ColdLoads)
			}
			fmt.Fprintf(w, "| %g | %.0f%% | %s | %.0f / %.0f | %s | %.0f%% |\n", a, 100*l, ratio, b.TTFTP99, ll.TTFTP99, yesNo(b.MaxLoad <= 1.25*b.MeanLoad+1), 100*b.WithinBound)
		}
	}
	fmt.Fprintln(w)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (rep *Report) results(alpha, load float64) []Result {
	var out []Result
	for _, r := range rep.Results {
		if r.Alpha == alpha && r.Load == load {
			out = append(out, r)
		}
	}
	return out
}

func (rep *Report) find(p Policy, alpha, load float64) (Result, bool) {
	for _, r := range rep.results(alpha, load) {
		if r.Policy == p {
			return r, true
		}
	}
	return Result{}, false
}

// barPlot draws value(result) per policy, one bar group per policy and one colour per
// popularity, at offered load l. On a log axis bars start at 1 (values below show as 1).
func (rep *Report) barPlot(path string, l float64, title string, logY bool, value func(Result) float64) error {
	p := plot.New()
	p.Title.Text = title
	p.Legend.Top, p.Legend.Left = true, true
	base := 0.0
	if logY {
		base = 1
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	pols, alphas := rep.Config.Policies, rep.Config.Alphas
	names := make([]string, len(pols))
	for i, pol := range pols {
		names[i] = pol.String()
	}
	most := base + 1
	width := 0.8 / float64(len(alphas)) // of the unit between policy groups
	for i, a := range alphas {
		var first *plotter.Polygon
		for j, pol := range pols {
			r, ok := rep.find(pol, a, l)
			if !ok {
				continue
			}
			v := max(value(r), base)
			most = max(most, v)
			x := float64(j) - 0.4 + float64(i)*width
			bar, err := plotter.NewPolygon(plotter.XYs{{X: x, Y: base}, {X: x + width, Y: base}, {X: x + width, Y: v}, {X: x, Y: v}})
			if err != nil {
				return fmt.Errorf("routing: %w", err)
			}
			bar.Color, bar.LineStyle.Width = plotutil.Color(i), 0
			p.Add(bar)
			if first == nil {
				first = bar
			}
		}
		if first != nil {
			p.Legend.Add(fmt.Sprintf("Zipf α = %g", a), first)
		}
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(pols))-0.5
	p.Y.Min, p.Y.Max = base, most*1.3 // room for the legend
	if logY {
		p.Y.Max = most * 4
	}
	if err := p.Save(8*vg.Inch, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	return nil
}
