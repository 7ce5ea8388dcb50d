package routing

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// loads are a worker's adapter load counters.
type loads struct {
	device float64 // uploads to the device: the cold loads that cost a request time
	disk   float64 // loads from disk into host memory (first use on the worker)
}

// scrapeLoads sums the adapter load counters of every worker the router knows.
func (cl *cluster) scrapeLoads(ctx context.Context) (loads, error) {
	v, err := cl.view(ctx)
	if err != nil {
		return loads{}, fmt.Errorf("routing: reading the cluster: %w", err)
	}
	var sum loads
	for _, w := range v.Workers {
		l, err := workerLoads(ctx, w.Addr)
		if err != nil {
			return loads{}, fmt.Errorf("routing: worker %s: %w", w.ID, err)
		}
		sum.device += l.device
		sum.disk += l.disk
	}
	return sum, nil
}

func workerLoads(ctx context.Context, addr string) (loads, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return loads{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return loads{}, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return loads{}, fmt.Errorf("parsing metrics: %w", err)
	}
	var l loads
	if f := fams["lorafleet_adapter_device_loads_total"]; f != nil && len(f.Metric) == 1 {
		l.device = f.Metric[0].GetCounter().GetValue()
	} else {
		return loads{}, fmt.Errorf("no lorafleet_adapter_device_loads_total in its metrics")
	}
	if f := fams["lorafleet_adapter_loads_total"]; f != nil {
		for _, m := range f.Metric {
			if label(m.GetLabel(), "tier") == "disk" && label(m.GetLabel(), "result") == "ok" {
				l.disk = m.GetCounter().GetValue()
			}
		}
	}
	return l, nil
}

func label(ls []*dto.LabelPair, name string) string {
	for _, l := range ls {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// balance is the per-worker load sampled from the router while a run goes on: as the
// router's ring counts it, the larger of its own in-flight count and the worker's last report.
type balance struct {
	mu             sync.Mutex
	samples        int
	sumMax, sumAvg float64
	within         int // samples whose busiest worker had at most 1.25 × the mean + 1
}

// sample polls the router's view of in-flight requests every interval until ctx ends.
func (b *balance) sample(ctx context.Context, cl *cluster, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := cl.view(ctx)
		if err != nil || len(v.Workers) == 0 {
			continue
		}
		var most, total int64
		for _, w := range v.Workers {
			load := max(w.InFlight, w.Reported) // the load the router's cap applies to
			most, total = max(most, load), total+load
		}
		if total == 0 {
			continue // idle moments say nothing about balance
		}
		mean := float64(total) / float64(len(v.Workers))
		b.mu.Lock()
		b.samples++
		b.sumMax += float64(most)
		b.sumAvg += mean
		if float64(most) <= 1.25*mean+1 {
			b.within++
		}
		b.mu.Unlock()
	}
}

// means returns the time-averaged busiest worker's and mean worker's in-flight requests,
// and the fraction of samples within 1.25 × the mean + 1.
func (b *balance) means() (maxLoad, meanLoad, within float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.samples == 0 {
		return 0, 0, 0
	}
	n := float64(b.samples)
	return b.sumMax / n, b.sumAvg / n, float64(b.within) / n
}
