package load

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Plots writes ttft_cdf.png, e2e_cdf.png, throughput.png and slo.png into dir.
func Plots(dir string, recs []Record, s Summary) error {
	var ttft, e2e []float64
	for _, r := range recs {
		if r.Status == 200 && r.Error == "" {
			ttft, e2e = append(ttft, r.TTFT), append(e2e, r.E2E)
		}
	}
	for _, p := range []struct {
		file, title, x string
		data           []float64
	}{{"ttft_cdf.png", "Time to first token", "seconds", ttft}, {"e2e_cdf.png", "End-to-end latency", "seconds", e2e}} {
		if err := save(filepath.Join(dir, p.file), p.title, p.x, "fraction of requests", cdf(p.data)); err != nil {
			return err
		}
	}
	tput, slo := perSecond(recs, s.SLO.Seconds())
	if err := save(filepath.Join(dir, "throughput.png"), "Throughput", "seconds since start", "generated tokens/s", tput); err != nil {
		return err
	}
	return save(filepath.Join(dir, "slo.png"), fmt.Sprintf("SLO attainment (first token within %v)", s.SLO), "seconds since start", "fraction of requests started", slo)
}

// cdf is the empirical distribution of xs.
func cdf(xs []float64) plotter.XYs {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	pts := make(plotter.XYs, len(xs))
	for i, x := range xs {
		pts[i] = plotter.XY{X: x, Y: float64(i+1) / float64(len(xs))}
	}
	return pts
}

// perSecond buckets generated tokens by completion second, and SLO attainment by start second.
func perSecond(recs []Record, slo float64) (tput, attained plotter.XYs) {
	end := 0.0
	for _, r := range recs {
		end = max(end, r.Start+r.E2E)
	}
	n := int(math.Ceil(end)) + 1
	tokens, started, within := make([]float64, n), make([]float64, n), make([]float64, n)
	for _, r := range recs {
		started[int(r.Start)]++
		if r.Status != 200 || r.Error != "" {
			continue
		}
		tokens[int(r.Start+r.E2E)] += float64(r.CompletionTokens)
		if r.TTFT < slo {
			within[int(r.Start)]++
		}
	}
	for i := range n {
		tput = append(tput, plotter.XY{X: float64(i), Y: tokens[i]})
		if started[i] > 0 {
			attained = append(attained, plotter.XY{X: float64(i), Y: within[i] / started[i]})
		}
	}
	return tput, attained
}

func save(path, title, x, y string, pts plotter.XYs) error {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	if len(pts) > 0 {
		line, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("load: plot %s: %w", path, err)
		}
		p.Add(line, plotter.NewGrid())
	}
	if err := p.Save(6*vg.Inch, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("load: plot %s: %w", path, err)
	}
	return nil
}
