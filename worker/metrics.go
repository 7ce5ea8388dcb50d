package worker

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lorafleet/lorafleet/worker/engine"
)

// metrics uses vLLM's metric names with the lorafleet_ prefix, so existing dashboards carry over.
type metrics struct {
	reg *prometheus.Registry

	promptTokens, generationTokens prometheus.Counter
	requests                       *prometheus.CounterVec // by finished_reason
	ttft, itl, e2e, queue          prometheus.Histogram
	adapterLoads                   *prometheus.CounterVec // by tier, result
	adapterLoadSeconds             *prometheus.HistogramVec
	adapterRequests, adapterTokens *prometheus.CounterVec // by adapter (bounded)
	labels                         adapterLabels
}

// Latency buckets as vLLM uses for time to first token and end-to-end latency.
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	itlBuckets  = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5}
	e2eBuckets  = []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480}
)

func newMetrics(loop func() engine.Stats, store func() (hostBytes, diskBytes int64), maxLabels int) *metrics {
	reg := prometheus.NewRegistry()
	f := factory{reg}
	m := &metrics{
		reg:                reg,
		promptTokens:       f.counter("prompt_tokens_total", "Prompt tokens processed."),
		generationTokens:   f.counter("generation_tokens_total", "Tokens generated."),
		requests:           f.counterVec("request_success_total", "Requests finished, by finish reason.", "finished_reason"),
		ttft:               f.histogram("time_to_first_token_seconds", "Time from arrival to the first generated token.", ttftBuckets),
		itl:                f.histogram("inter_token_latency_seconds", "Time between generated tokens.", itlBuckets),
		e2e:                f.histogram("e2e_request_latency_seconds", "Time from arrival to the last token.", e2eBuckets),
		queue:              f.histogram("request_queue_time_seconds", "Time from arrival to first scheduling.", e2eBuckets),
		adapterLoads:       f.counterVec("adapter_loads_total", "Adapter lookups by tier (host, disk, hub) and result (hit, ok, error).", "tier", "result"),
		adapterLoadSeconds: f.histogramVec("adapter_load_seconds", "Adapter load latency by tier.", ttftBuckets, "tier"),
		adapterRequests:    f.counterVec("adapter_requests_total", "Requests per adapter (the first AdapterLabels adapters seen; the rest are \"other\").", "adapter"),
		adapterTokens:      f.counterVec("adapter_generation_tokens_total", "Generated tokens per adapter (bounded labels as adapter_requests_total).", "adapter"),
		labels:             adapterLabels{max: maxLabels, seen: map[string]struct{}{}},
	}
	stat := func(name, help string, v func(engine.Stats) float64) {
		f.gaugeFunc(name, help, func() float64 { return v(loop()) })
	}
	stat("num_requests_running", "Requests running on the engine.", func(s engine.Stats) float64 { return float64(s.Running) })
	stat("num_requests_waiting", "Requests waiting to run (including adapter loads).", func(s engine.Stats) float64 { return float64(s.Waiting) })
	stat("kv_cache_usage_perc", "Fraction of KV cache blocks in use (0 to 1).", func(s engine.Stats) float64 { return s.KVUsage })
	stat("adapters_resident", "Adapters resident on the device.", func(s engine.Stats) float64 { return float64(s.Resident) })
	stat("adapters_uploading", "Adapters resident on the device whose upload has not landed yet.", func(s engine.Stats) float64 { return float64(s.Uploading) })
	stat("adapter_device_bytes", "Bytes of the adapters resident on the device.", func(s engine.Stats) float64 { return float64(s.DeviceBytes) })
	f.counterFunc("adapter_device_loads_total", "Adapter uploads to the device.", func() float64 { return float64(loop().Loads) })
	f.counterFunc("adapter_evictions_total", "Adapters evicted from the device.", func() float64 { return float64(loop().Evictions) })
	f.counterFunc("num_preemptions_total", "Sequences preempted (to be recomputed) for KV cache space.", func() float64 { return float64(loop().Preemptions) })
	f.gaugeFunc("adapter_host_cache_bytes", "Bytes of parsed adapters in host memory.", func() float64 { h, _ := store(); return float64(h) })
	f.gaugeFunc("adapter_disk_cache_bytes", "Bytes of downloaded adapters on disk.", func() float64 { _, d := store(); return float64(d) })
	return m
}

// observeLoad is the adapter store's hook.
func (m *metrics) observeLoad(tier, result string, d time.Duration) {
	m.adapterLoads.WithLabelValues(tier, result).Inc()
	m.adapterLoadSeconds.WithLabelValues(tier).Observe(d.Seconds())
}

// finished records a request's counts and latencies.
func (m *metrics) finished(adapter string, prompt, generated int, reason string, t engine.Timing, end time.Time) {
	m.promptTokens.Add(float64(prompt))
	m.generationTokens.Add(float64(generated))
	m.requests.WithLabelValues(reason).Inc()
	m.e2e.Observe(end.Sub(t.Arrived).Seconds())
	if !t.Admitted.IsZero() {
		m.queue.Observe(t.Admitted.Sub(t.Arrived).Seconds())
	}
	if !t.FirstToken.IsZero() {
		m.ttft.Observe(t.FirstToken.Sub(t.Arrived).Seconds())
	}
	label := m.labels.label(adapter)
	m.adapterRequests.WithLabelValues(label).Inc()
	m.adapterTokens.WithLabelValues(label).Add(float64(generated))
}

// adapterLabels keeps per-adapter label values bounded: the first max adapters seen get their
// own, the rest share "other".
type adapterLabels struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func (a *adapterLabels) label(adapter string) string {
	if adapter == "" {
		return "base"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.seen[adapter]; ok {
		return adapter
	}
	if len(a.seen) < a.max {
		a.seen[adapter] = struct{}{}
		return adapter
	}
	return "other"
}

// factory registers metrics under the lorafleet_ prefix.
type factory struct{ reg *prometheus.Registry }

func opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: "lorafleet", Name: name, Help: help}
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts(opts(name, help)))
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "lorafleet", Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "lorafleet", Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func (f factory) gaugeFunc(name, help string, v func() float64) {
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts(name, help)), v))
}

func (f factory) counterFunc(name, help string, v func() float64) {
	f.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts(opts(name, help)), v))
}
