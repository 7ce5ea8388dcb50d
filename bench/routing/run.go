// Package routing runs the routing experiments: a cluster of simulated workers (the real
// worker with worker/sim's cost model of an H100), the real router, NATS and memberlist as
// separate processes on loopback, driven by bench/load under each placement policy, adapter
// popularity and offered load; it reports cold adapter loads, time to first token, balance
// and throughput.
package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lorafleet/lorafleet/bench/load"
)

// Policy is a router placement policy (lorafleet router --policy) and, for "bounded", its
// balance factor c.
type Policy struct {
	Name    string  `json:"policy"`
	Balance float64 `json:"balance_factor,omitempty"`
}

func (p Policy) String() string {
	if p.Name == "bounded" {
		return fmt.Sprintf("bounded c=%g", p.Balance)
	}
	return p.Name
}

// DefaultPolicies are the policies the issue compares.
func DefaultPolicies() []Policy {
	return []Policy{{"bounded", 1.1}, {"bounded", 1.25}, {"bounded", 1.5}, {Name: "consistent"}, {Name: "least-loaded"}, {Name: "round-robin"}, {Name: "random"}}
}

// Config is the experiment matrix. Zero fields take the documented defaults.
type Config struct {
	Binary         string `json:"-"` // the lorafleet binary. Required.
	ModelDir       string // the served model's directory (its config and tokenizer). Required.
	SourceAdapters string // PEFT adapters copied round-robin into the Adapters simulated ones. Required.
	Profile        string // sim profile file. Default: the built-in H100 profile.

	Workers    int     // simulated workers. Default 16.
	Adapters   int     // distinct adapters. Default 1000.
	Slots      int     // device adapter slots per worker (--max-adapters). Default 384.
	MaxRunning int     // sequences per worker batch (--max-running). Default 32.
	TimeScale  float64 // sim time scale (--sim-time-scale). Default 10.

	Alphas   []float64 // Zipf exponents of adapter popularity. Default 0.8, 1.0, 1.2.
	Loads    []float64 // offered loads as fractions of capacity. Default 0.7, 0.9.
	Policies []Policy  // Default: DefaultPolicies.

	Input, Output string // lengths in tokens. Default uniform:8,256 and uniform:8,64.
	// WarmupRequests fill the adapter caches before each measurement: short requests (8
	// prompt tokens, 1 output token) from the same popularity, sent by a closed loop through
	// the same policy, so that the caches are in the state the policy leads to rather than
	// empty. Default 30,000.
	WarmupRequests int
	Duration       time.Duration // measured load per run. Default 30 s.
	// Capacity is the requests per second (wall clock) that 100% load means. Default:
	// measured first, as the throughput of a closed loop that fills every worker's batch.
	Capacity float64
	Seed     uint64
	Log      io.Writer `json:"-"` // progress lines. Default: discarded.
}

func (c *Config) setDefaults() error {
	if c.Binary == "" || c.ModelDir == "" || c.SourceAdapters == "" {
		return errors.New("routing: Binary, ModelDir and SourceAdapters are required")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Workers, 16)
	def(&c.Adapters, 1000)
	def(&c.Slots, 384)
	def(&c.MaxRunning, 32)
	if c.TimeScale == 0 {
		c.TimeScale = 10
	}
	if c.Alphas == nil {
		c.Alphas = []float64{0.8, 1.0, 1.2}
	}
	if c.Loads == nil {
		c.Loads = []float64{0.7, 0.9}
	}
	if c.Policies == nil {
		c.Policies = DefaultPolicies()
	}
	if c.Input == "" {
		c.Input = "uniform:8,256"
	}
	if c.Output == "" {
		c.Output = "uniform:8,64"
	}
	def(&c.WarmupRequests, 30000)
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Workers < 1 || c.Adapters < 1 || c.Slots < 1 || c.MaxRunning < 1 || c.TimeScale <= 0 || c.Capacity < 0 || c.Duration <= 0 || c.WarmupRequests < 0 {
		return fmt.Errorf("routing: a size, scale or duration is not positive in %+v", *c)
	}
	for _, l := range c.Loads {
		if l <= 0 {
			return fmt.Errorf("routing: offered load %v is not positive", l)
		}
	}
	return nil
}

// Result is one policy under one popularity and offered load. Times and throughput are
// the modeled GPU's: wall-clock measurements divided (throughput: multiplied) by TimeScale.
type Result struct {
	Policy
	Alpha float64 `json:"zipf_alpha"`
	Load  float64 `json:"offered_load"`
	Rate  float64 `json:"rate_per_s"` // offered requests per second (wall clock)

	Requests int `json:"requests"`
	Errors   int `json:"errors"`
	// ColdLoads are the adapter uploads to a device per 1,000 requests; DiskLoads the loads
	// from disk into a worker's host memory.
	ColdLoads float64 `json:"cold_loads_per_1000"`
	DiskLoads float64 `json:"disk_loads_per_1000"`
	TTFTP50   float64 `json:"ttft_p50_ms"`
	TTFTP99   float64 `json:"ttft_p99_ms"`
	// MaxLoad and MeanLoad are the busiest and the mean worker's load, averaged over samples
	// every 100 ms. Load is what the router's bound applies to: the larger of the requests it
	// has in flight on the worker and the worker's last load report (running + waiting).
	MaxLoad  float64 `json:"max_worker_load"`
	MeanLoad float64 `json:"mean_worker_load"`
	// WithinBound is the fraction of those samples whose busiest worker had at most
	// 1.25 × the mean + 1 (the bound holds when a request is placed; departures elsewhere
	// can leave a worker above it until its own requests end).
	WithinBound float64 `json:"samples_within_bound"`
	// Busiest is the busiest worker's share of the requests over the mean share.
	Busiest    float64 `json:"busiest_worker_share"`
	Throughput float64 `json:"requests_per_s"`
	Tokens     float64 `json:"tokens_per_s"`
}

// Report is a whole experiment.
type Report struct {
	Command  string   `json:"command"` // the command line that made it
	Config   Config   `json:"config"`
	Capacity float64  `json:"capacity_per_s"` // wall-clock requests per second at 100% load
	Results  []Result `json:"results"`
}

// ReadReport reads the results.json of an earlier run, to write its tables and plots again.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("routing: %s: %w", path, err)
	}
	return &rep, nil
}

// Run measures the capacity (unless given) and then every policy under every popularity and
// load, each on a freshly started cluster.
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := c.setDefaults(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lorafleet-routing-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	names, err := makeAdapters(filepath.Join(dir, "adapters"), c.SourceAdapters, c.Adapters)
	if err != nil {
		return nil, err
	}
	rep := &Report{Config: c, Capacity: c.Capacity}
	if rep.Capacity == 0 {
		if rep.Capacity, err = measureCapacity(ctx, &c, dir, names); err != nil {
			return nil, err
		}
		fmt.Fprintf(c.Log, "capacity: %.1f requests/s (wall clock)\n", rep.Capacity)
	}
	for _, alpha := range c.Alphas {
		for _, l := range c.Loads {
			for _, p := range c.Policies {
				r, err := runOne(ctx, &c, dir, names, p, alpha, l*rep.Capacity)
				if err != nil {
					return nil, fmt.Errorf("routing: %v, zipf %v, load %v: %w", p, alpha, l, err)
				}
				r.Load = l
				rep.Results = append(rep.Results, r)
				fmt.Fprintf(c.Log, "zipf %.1f load %.0f%% %-16v cold/1000 %6.1f  ttft p50 %7.1f ms p99 %7.1f ms  load max %.1f mean %.1f  errors %d\n",
					alpha, 100*l, p, r.ColdLoads, r.TTFTP50, r.TTFTP99, r.MaxLoad, r.MeanLoad, r.Errors)
			}
		}
	}
	return rep, nil
}

// measureCapacity runs a closed loop that keeps every worker's batch full, under
// least-loaded routing at the middle popularity, and returns its throughput.
func measureCapacity(ctx context.Context, c *Config, dir string, names []string) (float64, error) {
	cl, err := startCluster(ctx, c, dir, Policy{Name: "least-loaded"})
	if err != nil {
		return 0, err
	}
	defer cl.stop()
	alpha := c.Alphas[len(c.Alphas)/2]
	if err := warmUp(ctx, c, cl, names, alpha); err != nil {
		return 0, err
	}
	lc := loadConfig(c, cl, names, alpha, 0, c.Duration, c.Seed)
	lc.Concurrency = c.Workers * c.MaxRunning
	recs, err := load.Run(ctx, lc)
	if err != nil {
		return 0, fmt.Errorf("routing: measuring capacity: %w", err)
	}
	s := load.Summarize(recs, lc.SLO)
	if s.OK == 0 {
		return 0, fmt.Errorf("routing: measuring capacity: no request succeeded (first: %+v)", recs[0])
	}
	return s.RequestsPerSec, nil
}

func loadConfig(c *Config, cl *cluster, names []string, alpha, rate float64, d time.Duration, seed uint64) load.Config {
	return load.Config{URL: cl.router, Duration: d, Rate: rate, Adapters: names, Popularity: fmt.Sprintf("zipf:%g", alpha),
		Input: c.Input, Output: c.Output, Seed: seed}
}

// warmUp sends c.WarmupRequests short requests in a closed loop that keeps every worker's
// batch full.
func warmUp(ctx context.Context, c *Config, cl *cluster, names []string, alpha float64) error {
	if c.WarmupRequests == 0 {
		return nil
	}
	lc := loadConfig(c, cl, names, alpha, 0, time.Hour, c.Seed+1000)
	lc.Concurrency, lc.Requests = c.Workers*c.MaxRunning, c.WarmupRequests
	lc.Input, lc.Output = "uniform:8,8", "uniform:1,1"
	recs, err := load.Run(ctx, lc)
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if s := load.Summarize(recs, lc.SLO); s.OK < s.Requests {
		return fmt.Errorf("warm-up: %d of %d requests failed", s.Requests-s.OK, s.Requests)
	}
	return nil
}

// runOne starts a cluster for p, warms it up, and measures one run.
func runOne(ctx context.Context, c *Config, dir string, names []string, p Policy, alpha, rate float64) (Result, error) {
	r := Result{Policy: p, Alpha: alpha, Rate: rate}
	cl, err := startCluster(ctx, c, dir, p)
	if err != nil {
		return r, err
	}
	defer cl.stop()
	if err := warmUp(ctx, c, cl, names, alpha); err != nil {
		return r, err
	}
	before, err := cl.scrapeLoads(ctx)
	if err != nil {
		return r, err
	}
	sctx, stopSampling := context.WithCancel(ctx)
	var bal balance
	go bal.sample(sctx, cl, 100*time.Millisecond)
	recs, err := load.Run(ctx, loadConfig(c, cl, names, alpha, rate, c.Duration, c.Seed))
	stopSampling()
	if err != nil {
		return r, err
	}
	after, err := cl.scrapeLoads(ctx)
	if err != nil {
		return r, err
	}
	summarize(&r, c, recs, after.device-before.device, after.disk-before.disk)
	r.MaxLoad, r.MeanLoad, r.WithinBound = bal.means()
	return r, nil
}

// summarize fills r from a run's records and load counts.
func summarize(r *Result, c *Config, recs []load.Record, deviceLoads, diskLoads float64) {
	s := load.Summarize(recs, 6*time.Second)
	r.Requests, r.Errors = s.Requests, s.Requests-s.OK
	if r.Requests > 0 {
		r.ColdLoads = 1000 * deviceLoads / float64(r.Requests)
		r.DiskLoads = 1000 * diskLoads / float64(r.Requests)
	}
	ms := 1000 / c.TimeScale
	r.TTFTP50, r.TTFTP99 = s.TTFT.P50*ms, s.TTFT.P99*ms
	r.Throughput, r.Tokens = s.RequestsPerSec*c.TimeScale, s.TokensPerSec*c.TimeScale
	perWorker := map[string]int{}
	for _, rec := range recs {
		if rec.Worker != "" {
			perWorker[rec.Worker]++
		}
	}
	most := 0
	for _, n := range perWorker {
		most = max(most, n)
	}
	if s.OK > 0 {
		r.Busiest = float64(most) / (float64(s.OK) / float64(c.Workers))
	}
}

// makeAdapters creates dir with n adapters, sim-0000 … (in popularity order for the load),
// each a hard link (or copy) of one of the adapters in src, taken round-robin.
func makeAdapters(dir, src string, n int) ([]string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	var sources []string
	for _, e := range entries {
		if e.IsDir() {
			sources = append(sources, filepath.Join(src, e.Name()))
		}
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("routing: no adapters in %s", src)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("sim-%04d", i)
		if err := linkDir(sources[i%len(sources)], filepath.Join(dir, names[i])); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// linkDir hard-links (or, across file systems, copies) the regular files of src into a new dst.
func linkDir(src, dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if os.Link(from, to) == nil {
			continue
		}
		b, err := os.ReadFile(from)
		if err != nil {
			return fmt.Errorf("routing: %w", err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			return fmt.Errorf("routing: %w", err)
		}
	}
	return nil
}
