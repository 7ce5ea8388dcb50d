package router

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/lorafleet/lorafleet/pkg/api"
)

type metrics struct {
	reg                               *prometheus.Registry
	decisions                         *prometheus.CounterVec
	retries, ejections, brokenStreams prometheus.Counter
	handler                           fasthttp.RequestHandler
}

func newMetrics(r *Router) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "lorafleet", Subsystem: "router", Name: "decisions_total",
			Help: "Routing decisions: warm (adapter resident), home (first ring worker), spill (a later one), least_loaded (base model)."}, []string{"decision"}),
		retries:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: "lorafleet", Subsystem: "router", Name: "retries_total", Help: "Requests sent again to another worker."}),
		ejections:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: "lorafleet", Subsystem: "router", Name: "ejections_total", Help: "Workers taken out of rotation after repeated failures."}),
		brokenStreams: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "lorafleet", Subsystem: "router", Name: "broken_streams_total", Help: "Streams cut by a failing worker."}),
	}
	inflight := prometheus.NewDesc("lorafleet_router_worker_in_flight", "Requests in flight per worker, as the router counts them.", []string{"worker"}, nil)
	reg.MustRegister(m.decisions, m.retries, m.ejections, m.brokenStreams, collector{desc: inflight, r: r})
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return m
}

// collector reports per-worker in-flight counts at scrape time (workers come and go).
type collector struct {
	desc *prometheus.Desc
	r    *Router
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, w := range c.r.ring.Loads() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(w.InFlight), w.ID)
	}
}

// Handler serves the router's HTTP API.
func (r *Router) Handler(c *fasthttp.RequestCtx) {
	path := string(c.Path())
	if field, ok := generation[path]; ok {
		if !c.IsPost() {
			r.fail(c, false, api.NewError(http.StatusMethodNotAllowed, "", "use POST"))
			return
		}
		r.proxy(c, field)
		return
	}
	switch path {
	case "/healthz":
		c.SetBodyString("ok")
	case "/readyz":
		if len(r.ring.Loads()) == 0 {
			c.SetStatusCode(http.StatusServiceUnavailable)
			c.SetBodyString("no workers")
			return
		}
		c.SetBodyString("ready")
	case "/metrics":
		r.metrics.handler(c)
	case "/cluster":
		r.cluster(c)
	case "/v1/models":
		r.models(c)
	case "/v1/load_lora_adapter", "/v1/unload_lora_adapter":
		if !c.IsPost() {
			r.fail(c, false, api.NewError(http.StatusMethodNotAllowed, "", "use POST"))
			return
		}
		r.admin(c)
	default:
		r.fail(c, false, api.NewError(http.StatusNotFound, "", "no route "+path))
	}
}

// ClusterWorker is one worker in GET /cluster.
type ClusterWorker struct {
	ID       string   `json:"id"`
	Addr     string   `json:"addr"`
	Weight   int      `json:"weight"`
	InFlight int64    `json:"in_flight"`
	Reported int64    `json:"reported_in_flight"`
	Cap      int64    `json:"cap"`
	Adapters []string `json:"resident_adapters"`
	Draining bool     `json:"draining"`
	Ejected  bool     `json:"ejected"`
}

func (r *Router) cluster(c *fasthttp.RequestCtx) {
	out := struct {
		BalanceFactor float64         `json:"balance_factor"`
		Workers       []ClusterWorker `json:"workers"`
	}{BalanceFactor: r.cfg.BalanceFactor, Workers: []ClusterWorker{}}
	for _, l := range r.ring.Loads() {
		cw := ClusterWorker{ID: l.ID, Weight: l.Weight, InFlight: l.InFlight, Reported: l.Reported, Cap: l.Cap}
		if u := r.worker(l.ID); u != nil {
			cw.Addr, cw.Draining = u.addr, u.draining.Load()
			cw.Ejected = time.Now().UnixNano() < u.ejected.Load()
			if a := u.resident.Load(); a != nil {
				cw.Adapters = *a
			}
		}
		out.Workers = append(out.Workers, cw)
	}
	b, _ := json.Marshal(out)
	c.SetContentType("application/json")
	c.SetBody(b)
}

// Serve answers on ln until ctx ends.
func (r *Router) Serve(ctx context.Context, ln net.Listener) error {
	srv := &fasthttp.Server{Handler: r.Handler, Name: "lorafleet-router", MaxRequestBodySize: 16 << 20, CloseOnShutdown: true, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("router: serving: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.ShutdownWithContext(shutCtx)
}
