package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Config is one load run. Zero fields take the documented defaults.
type Config struct {
	URL      string        // router or worker base URL. Required.
	Duration time.Duration // how long requests are sent. Required.
	Rate     float64       // requests per second. Required unless Concurrency is set.
	// Concurrency, if positive, runs a closed loop instead: that many clients each send
	// their next request as soon as their last one ends, to measure the most a system
	// serves. Rate and CV are then ignored.
	Concurrency int
	// Requests, if positive, ends a closed loop after that many requests (or Duration,
	// whichever comes first).
	Requests   int
	CV         float64       // coefficient of variation of inter-arrival gaps. Default 1 (Poisson).
	Adapters   []string      // adapter IDs, most popular first. Required.
	Popularity string        // zipf:S or power:A. Default zipf:1.0.
	Input      string        // prompt lengths in tokens. Default uniform:8,512.
	Output     string        // output lengths in tokens. Default uniform:8,512.
	APIKey     string        // sent as a bearer token when set
	Seed       uint64        // fixes the request mix
	SLO        time.Duration // time-to-first-token objective. Default 6 s, as in S-LoRA.
	// Progress, if set, is told of every finished request.
	Progress func()
}

func (c *Config) validate() error {
	if c.URL == "" || c.Duration <= 0 || (c.Rate <= 0 && c.Concurrency <= 0) || len(c.Adapters) == 0 {
		return errors.New("load: URL, a positive duration and rate (or concurrency), and adapters are required")
	}
	if c.CV == 0 {
		c.CV = 1
	}
	if c.Popularity == "" {
		c.Popularity = "zipf:1.0"
	}
	if c.Input == "" {
		c.Input = "uniform:8,512"
	}
	if c.Output == "" {
		c.Output = "uniform:8,512"
	}
	if c.SLO == 0 {
		c.SLO = 6 * time.Second
	}
	return nil
}

// Record is one request's outcome; times are in seconds.
type Record struct {
	Start            float64 `json:"start"` // since the run began
	Adapter          string  `json:"adapter"`
	PromptTokens     int     `json:"prompt_tokens"`
	OutputTokens     int     `json:"output_tokens"` // requested
	CompletionTokens int     `json:"completion_tokens"`
	TTFT             float64 `json:"ttft"`
	TPOT             float64 `json:"tpot"`
	E2E              float64 `json:"e2e"`
	Status           int     `json:"status"`
	Worker           string  `json:"worker"`
	Error            string  `json:"error,omitempty"`
}

// request is one planned request.
type request struct {
	at             time.Duration
	adapter        string
	prompt, output int
}

// mix draws each request's adapter and lengths.
type mix struct {
	adapters []string
	pop      *Popularity
	in, out  *Lengths
}

func newMix(c *Config) (*mix, error) {
	pop, err := ParsePopularity(c.Popularity, len(c.Adapters), rand.NewPCG(c.Seed, 2))
	if err != nil {
		return nil, err
	}
	in, err := ParseLengths(c.Input, rand.NewPCG(c.Seed, 3))
	if err != nil {
		return nil, err
	}
	out, err := ParseLengths(c.Output, rand.NewPCG(c.Seed, 4))
	if err != nil {
		return nil, err
	}
	return &mix{adapters: c.Adapters, pop: pop, in: in, out: out}, nil
}

func (m *mix) next(at time.Duration) request {
	return request{at: at, adapter: m.adapters[m.pop.Next()], prompt: m.in.Next(), output: m.out.Next()}
}

// plan draws the whole run's requests up front, so the mix depends only on the seed.
func plan(c *Config) ([]request, error) {
	arr, err := NewArrivals(c.Rate, c.CV, rand.NewPCG(c.Seed, 1))
	if err != nil {
		return nil, err
	}
	m, err := newMix(c)
	if err != nil {
		return nil, err
	}
	var reqs []request
	for t := arr.Next(); t < c.Duration.Seconds(); t += arr.Next() {
		reqs = append(reqs, m.next(time.Duration(t*float64(time.Second))))
	}
	return reqs, nil
}

// Run sends requests and returns a record per request once all have ended: open-loop
// (each request at its planned time, whatever the others do), or a closed loop when
// c.Concurrency is set.
func Run(ctx context.Context, c Config) ([]Record, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	if c.Concurrency > 0 {
		return runClosed(ctx, client, &c)
	}
	reqs, err := plan(&c)
	if err != nil {
		return nil, err
	}
	recs := make([]Record, len(reqs))
	begin := time.Now()
	var wg sync.WaitGroup
	for i, r := range reqs {
		select {
		case <-ctx.Done():
			wg.Wait()
			return recs[:i], ctx.Err()
		case <-time.After(time.Until(begin.Add(r.at))):
		}
		wg.Go(func() {
			recs[i] = send(ctx, client, &c, r, begin)
			if c.Progress != nil {
				c.Progress()
			}
		})
	}
	wg.Wait()
	return recs, nil
}

// runClosed keeps c.Concurrency requests in flight until c.Duration has passed.
func runClosed(ctx context.Context, client *http.Client, c *Config) ([]Record, error) {
	m, err := newMix(c)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var recs []Record
	sent := 0
	begin := time.Now()
	var wg sync.WaitGroup
	for range c.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && time.Since(begin) < c.Duration {
				mu.Lock()
				if c.Requests > 0 && sent == c.Requests {
					mu.Unlock()
					return
				}
				sent++
				r := m.next(time.Since(begin))
				mu.Unlock()
				rec := send(ctx, client, c, r, begin)
				mu.Lock()
				recs = append(recs, rec)
				mu.Unlock()
				if c.Progress != nil {
					c.Progress()
				}
			}
		})
	}
	wg.Wait()
	return recs, ctx.Err()
}

// send makes one streaming completion request and times it.
func send(ctx context.Context, client *http.Client, c *Config, r request, begin time.Time) Record {
	rec := Record{Adapter: r.adapter, PromptTokens: r.prompt, OutputTokens: r.output}
	prompt := make([]int, r.prompt)
	for i := range prompt {
		prompt[i] = 100 + i%100 // byte-level ids every vocabulary has
	}
	body, _ := json.Marshal(map[string]any{
		"model": r.adapter, "prompt": prompt, "max_tokens": r.output, "min_tokens": r.output, "ignore_eos": true,
		"temperature": 0, "stream": true, "stream_options": map[string]bool{"include_usage": true},
	})
	start := time.Now()
	rec.Start = start.Sub(begin).Seconds()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+"/v1/completions", bytes.NewReader(body))
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	req.Header.Set("Content-Type", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	defer resp.Body.Close()
	rec.Status, rec.Worker = resp.StatusCode, resp.Header.Get("X-Lorafleet-Worker")
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		rec.Error = strings.TrimSpace(string(msg))
		return rec
	}
	readStream(resp.Body, start, &rec)
	rec.E2E = time.Since(start).Seconds()
	if rec.CompletionTokens > 1 {
		rec.TPOT = (rec.E2E - rec.TTFT) / float64(rec.CompletionTokens-1)
	}
	return rec
}

// readStream reads SSE events: the first with text is the first token; the usage chunk has
// the token count; an error event is the request's error.
func readStream(body io.Reader, start time.Time, rec *Record) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ev struct {
			Choices []struct{ Text string } `json:"choices"`
			Usage   *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error *struct{ Message string } `json:"error"`
		}
		if json.Unmarshal([]byte(data), &ev) != nil {
			continue
		}
		switch {
		case ev.Error != nil:
			rec.Error = ev.Error.Message
		case ev.Usage != nil:
			rec.CompletionTokens = ev.Usage.CompletionTokens
		case rec.TTFT == 0 && len(ev.Choices) > 0:
			rec.TTFT = time.Since(start).Seconds()
		}
	}
	if err := sc.Err(); err != nil && rec.Error == "" {
		rec.Error = fmt.Sprintf("stream: %v", err)
	}
}
