package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/lorafleet/lorafleet/bench/load"
	"github.com/lorafleet/lorafleet/bench/routing"
	"github.com/lorafleet/lorafleet/router"
)

// runBench dispatches the benchmark tools.
func runBench(args []string, e env) error {
	if len(args) > 0 && args[0] == "load" {
		return runBenchLoad(args[1:], e)
	}
	if len(args) > 0 && args[0] == "routing" {
		return runBenchRouting(args[1:], e)
	}
	if len(args) > 0 && args[0] == "engine" {
		return runBenchEngine(args[1:], e)
	}
	fmt.Fprintln(e.stderr, "usage: lorafleet bench load [flags]      (the S-LoRA-style load generator)")
	fmt.Fprintln(e.stderr, "       lorafleet bench routing [flags]   (routing policies on a cluster of simulated workers)")
	fmt.Fprintln(e.stderr, "       lorafleet bench engine [flags]    (decode and prefill steps of a random model on a backend)")
	fmt.Fprintln(e.stderr, "--help after any lists its flags")
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		return flag.ErrHelp
	}
	return errUsage
}

func runBenchLoad(args []string, e env) error {
	fs := newFlags("bench load", "--url URL --duration D --rate R [--adapters N] [flags]", e)
	var c load.Config
	var n int
	var out, format string
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "router (or worker) base URL")
	fs.DurationVar(&c.Duration, "duration", 60*time.Second, "how long to send requests")
	fs.Float64Var(&c.Rate, "rate", 1, "requests per second")
	fs.Float64Var(&c.CV, "cv", 1, "coefficient of variation of inter-arrival times (1: Poisson)")
	fs.IntVar(&c.Concurrency, "concurrency", 0, "if set, a closed loop of this many clients instead of --rate (measures the most served)")
	fs.IntVar(&n, "adapters", 100, "number of adapters to spread requests over")
	fs.StringVar(&format, "adapter-format", "", "adapter names as a printf format of the index (e.g. sim-%04d); default: the served adapters from /v1/models")
	fs.StringVar(&c.Popularity, "popularity", "zipf:1.0", "adapter popularity: zipf:S or power:A (S-LoRA's numpy.random.power)")
	fs.StringVar(&c.Input, "input", "uniform:8,512", "prompt lengths in tokens")
	fs.StringVar(&c.Output, "output", "uniform:8,512", "output lengths in tokens")
	fs.StringVar(&c.APIKey, "api-key", os.Getenv("LORAFLEET_API_KEY"), "bearer key (default $LORAFLEET_API_KEY)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the request mix")
	fs.DurationVar(&c.SLO, "slo", 6*time.Second, "time-to-first-token objective")
	fs.StringVar(&out, "out", "bench-results", "directory for results.json, results.csv and summary.md")
	if err := parse(fs, args); err != nil {
		return err
	}
	adapters, err := adapterNames(c.URL, c.APIKey, n, format)
	if err != nil {
		return err
	}
	c.Adapters = adapters
	if f, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		total := int64(c.Rate * c.Duration.Seconds())
		if c.Concurrency > 0 {
			total = -1 // unknown: a spinner
		}
		bar := progressbar.Default(total, "requests")
		c.Progress = func() { bar.Add(1) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	recs, err := load.Run(ctx, c)
	if err != nil {
		return err
	}
	s := load.Summarize(recs, c.SLO)
	arrivals := fmt.Sprintf("%.2f req/s, cv %v", c.Rate, c.CV)
	if c.Concurrency > 0 {
		arrivals = fmt.Sprintf("closed loop of %d clients", c.Concurrency)
	}
	title := fmt.Sprintf("%s: %s for %v, %d adapters (%s), input %s, output %s", c.URL, arrivals, c.Duration, len(c.Adapters), c.Popularity, c.Input, c.Output)
	if err := load.WriteAll(out, title, recs, s); err != nil {
		return err
	}
	return s.Markdown(e.stdout, title)
}

// adapterNames returns n adapter IDs: from a format, or the served adapters (sorted).
func adapterNames(url, key string, n int, format string) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("--adapters must be at least 1")
	}
	if format != "" {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf(format, i)
		}
		return names, nil
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(url, "/")+"/v1/models", nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("listing adapters: %w", err)
	}
	defer resp.Body.Close()
	var l struct {
		Data []struct {
			ID     string  `json:"id"`
			Parent *string `json:"parent"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, fmt.Errorf("listing adapters: %w", err)
	}
	var names []string
	for _, m := range l.Data {
		if m.Parent != nil {
			names = append(names, m.ID)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s serves no adapters", url)
	}
	return names[:min(n, len(names))], nil
}

func runBenchRouting(args []string, e env) error {
	fs := newFlags("bench routing", "[--workers N] [--adapters N] [--out DIR] [flags]", e)
	var c routing.Config
	var out, alphas, loads, policies string
	fs.StringVar(&c.Binary, "binary", "", "lorafleet binary the cluster's processes run (default: this one)")
	fs.StringVar(&c.ModelDir, "model", "testdata/tiny-llama/model", "model directory whose config and tokenizer the simulated workers serve")
	fs.StringVar(&c.SourceAdapters, "source-adapters", "testdata/tiny-llama/adapters", "PEFT adapters copied round-robin into the simulated ones")
	fs.StringVar(&c.Profile, "sim-profile", "", "sim profile file (default: the built-in H100 + Llama-2-7B profile)")
	fs.IntVar(&c.Workers, "workers", 16, "simulated workers")
	fs.IntVar(&c.Adapters, "adapters", 1000, "distinct adapters")
	fs.IntVar(&c.Slots, "max-adapters", 384, "device adapter slots per worker (384: 8 GB, a tenth of an H100, of adapters averaging 21 MB)")
	fs.IntVar(&c.MaxRunning, "max-running", 32, "sequences per worker batch")
	fs.Float64Var(&c.TimeScale, "sim-time-scale", 10, "run the modeled GPUs this many times slower than real time")
	fs.StringVar(&alphas, "zipf", "0.8,1.0,1.2", "Zipf exponents of adapter popularity")
	fs.StringVar(&loads, "load", "0.7,0.9", "offered loads as fractions of capacity")
	fs.StringVar(&policies, "policies", "bounded:1.1,bounded:1.25,bounded:1.5,consistent,least-loaded,round-robin,random", "router policies (bounded:C sets the balance factor)")
	fs.StringVar(&c.Input, "input", "uniform:8,256", "prompt lengths in tokens")
	fs.StringVar(&c.Output, "output", "uniform:8,64", "output lengths in tokens")
	fs.IntVar(&c.WarmupRequests, "warmup-requests", 30000, "short requests that fill the adapter caches before each measurement")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "measured load per run")
	fs.Float64Var(&c.Capacity, "capacity", 0, "requests/s (wall clock) at 100% load (0: measure it first)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the request mix")
	fs.StringVar(&out, "out", "bench/results/routing", "directory for results.json, results.md and the plots")
	from := fs.String("from", "", "write the tables and plots of an earlier run's results.json into --out instead of running")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from != "" {
		rep, err := routing.ReadReport(*from)
		if err != nil {
			return err
		}
		return rep.Write(out)
	}
	var err error
	if c.Alphas, err = floats(alphas); err != nil {
		return fmt.Errorf("--zipf: %w", err)
	}
	if c.Loads, err = floats(loads); err != nil {
		return fmt.Errorf("--load: %w", err)
	}
	if c.Policies, err = parsePolicies(policies); err != nil {
		return fmt.Errorf("--policies: %w", err)
	}
	if c.Binary == "" {
		if c.Binary, err = os.Executable(); err != nil {
			return err
		}
	}
	c.Log = e.stdout
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	rep, err := routing.Run(ctx, c)
	if err != nil {
		return err
	}
	rep.Command = strings.TrimSpace("lorafleet bench routing " + strings.Join(args, " "))
	return rep.Write(out)
}

func floats(list string) ([]float64, error) {
	var fs []float64
	for f := range strings.SplitSeq(list, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, err
		}
		fs = append(fs, v)
	}
	return fs, nil
}

func parsePolicies(list string) ([]routing.Policy, error) {
	var ps []routing.Policy
	for p := range strings.SplitSeq(list, ",") {
		name, c, ok := strings.Cut(strings.TrimSpace(p), ":")
		if _, err := router.ParsePolicy(name); err != nil {
			return nil, err
		}
		pol := routing.Policy{Name: name}
		if name == "bounded" {
			pol.Balance = 1.25 // the router's default
		}
		if ok {
			v, err := strconv.ParseFloat(c, 64)
			if err != nil || name != "bounded" || !(v > 1) {
				return nil, fmt.Errorf("%q: only bounded takes a balance factor, above 1 (bounded:1.25)", p)
			}
			pol.Balance = v
		}
		ps = append(ps, pol)
	}
	return ps, nil
}
