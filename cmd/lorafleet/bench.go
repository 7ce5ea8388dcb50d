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
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/lorafleet/lorafleet/bench/load"
)

// runBench dispatches the benchmark tools.
func runBench(args []string, e env) error {
	if len(args) > 0 && args[0] == "load" {
		return runBenchLoad(args[1:], e)
	}
	fmt.Fprintln(e.stderr, "usage: lorafleet bench load [flags]   (the S-LoRA-style load generator; bench load --help for its flags)")
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
		bar := progressbar.Default(int64(c.Rate*c.Duration.Seconds()), "requests")
		c.Progress = func() { bar.Add(1) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	recs, err := load.Run(ctx, c)
	if err != nil {
		return err
	}
	s := load.Summarize(recs, c.SLO)
	title := fmt.Sprintf("%s: %.2f req/s for %v, cv %v, %d adapters (%s), input %s, output %s", c.URL, c.Rate, c.Duration, c.CV, len(c.Adapters), c.Popularity, c.Input, c.Output)
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
