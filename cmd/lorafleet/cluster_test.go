package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/proc"
	"github.com/lorafleet/lorafleet/internal/testutil"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// clusterWorkers lists the workers a router's /cluster shows.
func clusterWorkers(t *testing.T, router string) []string {
	t.Helper()
	resp, err := http.Get("http://" + router + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct{ Workers []struct{ ID string } }
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, w := range c.Workers {
		ids = append(ids, w.ID)
	}
	return ids
}

func postCompletion(router string, body map[string]any) (*http.Response, error) {
	b, _ := json.Marshal(body)
	return http.Post("http://"+router+"/v1/completions", "application/json", bytes.NewReader(b))
}

// Separate processes — lorafleet nats, a router and three workers finding each other by
// gossip — with affinity, and kill -9 of a worker under load: its streams end with an error,
// every new request succeeds elsewhere, and membership drops it within 10 s.
func TestClusterOfProcesses(t *testing.T) {
	g := loadGolden(t, "tiny-llama")
	_, natsAddr := startProcess(t, "nats", "nats", "--listen", "127.0.0.1:0")
	seed := freeAddr(t)
	_, router := startProcess(t, "router", "router", "--listen", "127.0.0.1:0", "--base-model", "tiny-llama",
		"--gossip", seed, "--join", seed, "--nats", "nats://"+natsAddr)
	workers := map[string]*os.Process{}
	for _, name := range []string{"wa", "wb", "wc"} {
		cmd, _ := startProcess(t, "worker", "worker", "--model", g.ModelDir(), "--adapters", filepath.Join(g.Dir, "adapters"),
			"--listen", "127.0.0.1:0", "--model-name", "tiny-llama", "--hf-cache", t.TempDir(),
			"--node-name", name, "--gossip", freeAddr(t), "--join", seed, "--nats", "nats://"+natsAddr)
		workers[name] = cmd.Process
	}
	testutil.Eventually(t, 15*time.Second, "three workers in the router", func() bool { return len(clusterWorkers(t, router)) == 3 })

	// Affinity: with load under the cap, every request for an adapter lands on one worker.
	home := ""
	for i := range 12 {
		resp, err := postCompletion(router, map[string]any{"model": "chat", "prompt": "x", "max_tokens": 2})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
		if w := resp.Header.Get("X-Lorafleet-Worker"); home == "" {
			home = w
		} else if w != home {
			t.Fatalf("request %d for chat went to %s, earlier ones to %s", i, w, home)
		}
	}

	// Streams (the first on the home worker, later ones spill past its cap), then kill -9 home.
	var readers []*bufio.Reader
	for range 3 {
		resp, err := postCompletion(router, map[string]any{"model": "chat", "prompt": "x", "max_tokens": 480, "ignore_eos": true, "stream": true})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream: %v %v", resp, err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("X-Lorafleet-Worker") == home {
			readers = append(readers, bufio.NewReader(resp.Body))
		}
	}
	if len(readers) == 0 {
		t.Fatalf("no stream on the home worker %s", home)
	}
	killed := time.Now()
	if err := workers[home].Kill(); err != nil { // SIGKILL: no drain, no leave
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, r := range readers {
		wg.Go(func() {
			done := make(chan string, 1)
			go func() { b, _ := io.ReadAll(r); done <- string(b) }()
			select {
			case rest := <-done:
				if !strings.Contains(rest, `"error"`) {
					t.Errorf("stream %d on the killed worker ended without an error event: ...%q", i, rest[max(0, len(rest)-200):])
				}
			case <-time.After(10 * time.Second):
				t.Errorf("stream %d hangs after its worker was killed", i)
			}
		})
	}
	for i := range 20 {
		resp, err := postCompletion(router, map[string]any{"model": "chat", "prompt": "x", "max_tokens": 2})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Lorafleet-Worker") == home {
			t.Fatalf("request %d after the kill: %d from %q: %s", i, resp.StatusCode, resp.Header.Get("X-Lorafleet-Worker"), b)
		}
	}
	// Requests stopped going to it: after the first failures it was ejected (or already gone).
	ejected := func() bool {
		resp, err := http.Get("http://" + router + "/cluster")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c struct {
			Workers []struct {
				ID      string
				Ejected bool
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
		for _, w := range c.Workers {
			if w.ID == home && !w.Ejected {
				return false
			}
		}
		return true
	}
	if took := time.Since(killed); !ejected() || took > time.Second {
		t.Errorf("the killed worker still takes requests (ejected: %v) %v after the kill", ejected(), took)
	}
	wg.Wait()
	testutil.Eventually(t, 10*time.Second, "membership to drop the killed worker", func() bool {
		for _, id := range clusterWorkers(t, router) {
			if id == home {
				return false
			}
		}
		return true
	})
	t.Logf("killed %s; dropped from the ring %v later", home, time.Since(killed).Round(10*time.Millisecond))
}

// clusterView is the router's /cluster.
type clusterView struct {
	Workers []struct {
		ID       string   `json:"id"`
		InFlight int64    `json:"in_flight"`
		Cap      int64    `json:"cap"`
		Adapters []string `json:"resident_adapters"`
	}
}

func viewCluster(t *testing.T, router string) clusterView {
	t.Helper()
	resp, err := http.Get("http://" + router + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v clusterView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// startCluster runs lorafleet nats on natsAddr, a router and the named workers, as processes.
func startCluster(t *testing.T, natsAddr string, workerArgs []string, names ...string) (router string, nats *os.Process, workers map[string]*os.Process) {
	t.Helper()
	g := loadGolden(t, "tiny-llama")
	natsCmd, _ := startProcess(t, "nats", "nats", "--listen", natsAddr)
	nats = natsCmd.Process
	seed := freeAddr(t)
	_, router = startProcess(t, "router", "router", "--listen", "127.0.0.1:0", "--base-model", "tiny-llama",
		"--gossip", seed, "--join", seed, "--nats", "nats://"+natsAddr)
	workers = map[string]*os.Process{}
	for _, name := range names {
		args := append([]string{"worker", "--model", g.ModelDir(), "--adapters", filepath.Join(g.Dir, "adapters"),
			"--listen", "127.0.0.1:0", "--model-name", "tiny-llama", "--hf-cache", t.TempDir(),
			"--node-name", name, "--gossip", freeAddr(t), "--join", seed, "--nats", "nats://" + natsAddr}, workerArgs...)
		cmd, _ := startProcess(t, "worker", args...)
		workers[name] = cmd.Process
	}
	testutil.Eventually(t, 15*time.Second, "every worker in the router", func() bool { return len(clusterWorkers(t, router)) == len(names) })
	return router, nats, workers
}

// NATS killed for 30 s and restarted under load: no request fails, and reports resume.
func TestNATSOutageUnderLoad(t *testing.T) {
	natsAddr := freeAddr(t)
	router, natsProc, _ := startCluster(t, natsAddr, nil, "wa", "wb")
	resident := func() bool {
		for _, w := range viewCluster(t, router).Workers {
			if len(w.Adapters) > 0 {
				return true
			}
		}
		return false
	}
	stop := make(chan struct{})
	var load sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	count := 0
	load.Go(func() { // steady load through the whole outage
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := postCompletion(router, map[string]any{"model": []string{"sql", "chat", "tiny"}[i%3], "prompt": "x", "max_tokens": 4})
			mu.Lock()
			count++
			if err != nil {
				errs = append(errs, err.Error())
			} else {
				if resp.StatusCode != http.StatusOK {
					errs = append(errs, resp.Status)
				}
				resp.Body.Close()
			}
			mu.Unlock()
		}
	})
	testutil.Eventually(t, 10*time.Second, "reports of resident adapters", resident)
	if err := natsProc.Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "reports to expire without NATS", func() bool { return !resident() })
	time.Sleep(30 * time.Second) // the outage itself: its length is the point of the test
	startProcess(t, "nats", "nats", "--listen", natsAddr)
	testutil.Eventually(t, 20*time.Second, "reports to resume after NATS came back", resident)
	close(stop)
	load.Wait()
	if len(errs) > 0 {
		t.Errorf("%d of %d requests failed during the NATS outage: %v", len(errs), count, errs[:min(5, len(errs))])
	}
	t.Logf("%d requests during a 30 s NATS outage, %d failed", count, len(errs))
}

// A worker cut off from gossip (frozen with SIGSTOP until the cluster declares it dead) comes
// back into the ring on its own once it can talk again: no restart.
func TestPartitionedWorkerRejoins(t *testing.T) {
	router, _, workers := startCluster(t, freeAddr(t), nil, "wa", "wb")
	if err := workers["wb"].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer workers["wb"].Signal(syscall.SIGCONT)
	has := func(id string) bool { return slices.Contains(clusterWorkers(t, router), id) }
	testutil.Eventually(t, 20*time.Second, "the cut-off worker to be dropped", func() bool { return !has("wb") })
	if err := workers["wb"].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	testutil.Eventually(t, 40*time.Second, "the worker to rejoin", func() bool { return has("wb") })
	t.Logf("rejoined %v after the partition healed", time.Since(healed).Round(10*time.Millisecond))
	for i := range 6 {
		resp, err := postCompletion(router, map[string]any{"model": []string{"sql", "chat", "tiny"}[i%3], "prompt": "x", "max_tokens": 2})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("after the partition: %v %v", resp, err)
		}
		resp.Body.Close()
	}
}

// Spill across processes: a hot adapter's concurrent streams spread past its home worker. The
// workers run one sequence at a time, so most streams stay in flight while the test opens more.
func TestHotAdapterSpillsAcrossProcesses(t *testing.T) {
	router, _, _ := startCluster(t, freeAddr(t), []string{"--max-running", "1"}, "wa", "wb", "wc")
	seen := map[string]int{}
	for range 12 {
		resp, err := postCompletion(router, map[string]any{"model": "sql", "prompt": "x", "max_tokens": 480, "ignore_eos": true, "stream": true})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream: %v %v", resp, err)
		}
		defer resp.Body.Close()
		seen[resp.Header.Get("X-Lorafleet-Worker")]++
	}
	// (The cap itself is checked exactly in router's TestHotAdapterSpills, where every request
	// stays in flight; here streams may finish while others are opened.)
	if len(seen) < 2 {
		t.Errorf("12 concurrent streams for one adapter all went to %v", seen)
	}
	t.Logf("12 concurrent streams for one adapter: %v", seen)
}

// A 10-second run of the load generator against `lorafleet serve` produces all its outputs,
// with every request served.
func TestBenchLoadAgainstServe(t *testing.T) {
	g := loadGolden(t, "tiny-llama")
	_, addr := startProcess(t, "router", "serve", "--listen", "127.0.0.1:0", "--workers", "2",
		"--model", g.ModelDir(), "--adapters", filepath.Join(g.Dir, "adapters"))
	out := t.TempDir()
	stdout, stderr, code := lorafleet(t, "", "bench", "load", "--url", "http://"+addr, "--duration", "10s", "--rate", "4",
		"--adapters", "3", "--popularity", "zipf:1.0", "--input", "uniform:8,64", "--output", "uniform:8,64", "--out", out)
	if code != 0 {
		t.Fatalf("bench load: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "requests/s") {
		t.Errorf("summary on stdout:\n%s", stdout)
	}
	var res struct {
		Summary  struct{ Requests, OK int }
		Requests []struct {
			Status           int
			Adapter          string
			CompletionTokens int `json:"completion_tokens"`
			OutputTokens     int `json:"output_tokens"`
			TTFT             float64
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("results.json: %v\n%s", err, b)
	}
	if res.Summary.Requests < 20 || res.Summary.OK != res.Summary.Requests {
		t.Errorf("%d requests, %d succeeded (about 40 expected, all)", res.Summary.Requests, res.Summary.OK)
	}
	adapters := map[string]bool{}
	for _, r := range res.Requests {
		adapters[r.Adapter] = true
		if r.CompletionTokens != r.OutputTokens || r.TTFT <= 0 {
			t.Errorf("request %+v: generated %d of %d tokens", r, r.CompletionTokens, r.OutputTokens)
		}
	}
	if len(adapters) < 2 {
		t.Errorf("requests used adapters %v", adapters)
	}
	for _, f := range []string{"results.csv", "summary.md", "ttft_cdf.png", "e2e_cdf.png", "throughput.png", "slo.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}
