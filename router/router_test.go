package router

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/internal/testutil"
	"github.com/lorafleet/lorafleet/pkg/membership"
	"github.com/lorafleet/lorafleet/worker"
)

// cluster is real workers on loopback behind a router.
type cluster struct {
	r       *Router
	url     string
	workers map[string]string // id → URL
}

func startCluster(t *testing.T, n int, cfg Config) *cluster {
	return startClusterWith(t, n, cfg, nil)
}

func startClusterWith(t *testing.T, n int, cfg Config, mod func(*worker.Config)) *cluster {
	t.Helper()
	cfg.BaseModel = "tiny-llama"
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{r: r, workers: map[string]string{}}
	for i := range n {
		addr := serve(t, newWorker(t, mod).Serve)
		id := fmt.Sprintf("w%d", i)
		r.SetWorker(id, addr, 1)
		cl.workers[id] = "http://" + addr
	}
	cl.url = "http://" + serve(t, r.Serve)
	return cl
}

// newWorker is a worker for the tiny-llama test model and its adapters; mod may change its
// config.
func newWorker(t *testing.T, mod func(*worker.Config)) *worker.Worker {
	t.Helper()
	g, err := golden.Load("tiny-llama")
	if err != nil {
		t.Fatal(err)
	}
	wc := worker.Config{ModelDir: g.ModelDir(), AdaptersDir: g.Dir + "/adapters", ModelName: "tiny-llama", Threads: 1}
	if mod != nil {
		mod(&wc)
	}
	w, err := worker.New(wc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// gossipRouter is a router that learns its workers from gossip, and its membership.
func gossipRouter(t *testing.T) (*Router, *membership.Member) {
	t.Helper()
	r, err := New(Config{BaseModel: "tiny-llama"})
	if err != nil {
		t.Fatal(err)
	}
	self, err := membership.Start(membership.Config{Name: "router", BindAddr: "127.0.0.1", Fast: true,
		Meta: membership.Meta{Role: membership.RoleRouter}, Events: r.Apply})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { self.Shutdown() })
	return r, self
}

// gossip makes a worker join the router's membership.
func gossip(name string, self *membership.Member) func(*worker.Config) {
	return func(c *worker.Config) {
		c.Gossip = worker.Gossip{Name: name, Bind: "127.0.0.1:0", Seeds: []string{self.LocalAddr()}, Fast: true}
	}
}

func serve(t *testing.T, run func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func post(url string, body any, headers ...string) (*http.Response, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return http.DefaultClient.Do(req)
}

func (cl *cluster) complete(t *testing.T, body map[string]any, headers ...string) (status int, out []byte, worker string) {
	t.Helper()
	resp, err := post(cl.url+"/v1/completions", body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header.Get("X-Lorafleet-Worker")
}

func TestAffinityAndBaseModel(t *testing.T) {
	cl := startCluster(t, 3, Config{})
	seen := map[string]map[string]bool{}
	for i := range 24 {
		model := []string{"sql", "chat", "tiny"}[i%3]
		status, body, w := cl.complete(t, map[string]any{"model": model, "prompt": "x", "max_tokens": 2})
		if status != http.StatusOK || w == "" {
			t.Fatalf("%s: %d %s", model, status, body)
		}
		if seen[model] == nil {
			seen[model] = map[string]bool{}
		}
		seen[model][w] = true
	}
	for model, ws := range seen {
		if len(ws) != 1 {
			t.Errorf("sequential requests for %s landed on %v, want one worker", model, ws)
		}
	}
	if status, body, _ := cl.complete(t, map[string]any{"model": "tiny-llama", "prompt": "x", "max_tokens": 2}); status != http.StatusOK {
		t.Errorf("base model: %d %s", status, body)
	}
}

// openStream starts a long stream through the router and returns it once its first token is
// in (or, with wait false, once the headers are).
func (cl *cluster) openStream(t *testing.T, model string, wait bool) (*http.Response, *bufio.Reader) {
	t.Helper()
	resp, err := post(cl.url+"/v1/completions", map[string]any{"model": model, "prompt": "Once", "max_tokens": 480, "ignore_eos": true, "temperature": 0, "stream": true})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	r := bufio.NewReader(resp.Body)
	for wait {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended early: %v", err)
		}
		if strings.HasPrefix(line, "data: {") {
			break
		}
	}
	return resp, r
}

// A hot adapter spills to the next workers, and no worker goes over its cap. The adapter is
// one whose hub download stalls, so every request stays in flight while the test adds more.
func TestHotAdapterSpills(t *testing.T) {
	loads := holdRequests(t, Config{}, 24)
	if len(nonZero(loads)) < 2 {
		t.Fatalf("24 concurrent requests for one adapter did not spill: %v", loads)
	}
	for w, n := range loads {
		if n > 10 { // ceil(1.25 · 24 / 3)
			t.Errorf("%s took %d of 24 concurrent requests, above the cap", w, n)
		}
	}
	t.Logf("24 concurrent requests for one adapter: %v", loads)
}

func nonZero(m map[string]int64) []string {
	var out []string
	for k, v := range m {
		if v > 0 {
			out = append(out, k)
		}
	}
	return out
}

// Streams pass through as they are produced, and a client that goes away stops the worker.
// The worker runs the sim backend, at a modeled H100's ~5 ms per decode step: the tiny model
// on the CPU makes 480 tokens in tens of milliseconds, which the sockets' buffers absorb, so
// it could finish before the test looks.
func TestStreamPassThroughAndDisconnect(t *testing.T) {
	cl := startClusterWith(t, 1, Config{}, func(wc *worker.Config) { wc.Backend = "sim" })
	resp, _ := cl.openStream(t, "sql", true) // a first token long before 480 are generated
	running := func() string {
		r, err := http.Get(cl.workers["w0"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "lorafleet_num_requests_running ") {
				return strings.TrimPrefix(l, "lorafleet_num_requests_running ")
			}
		}
		return "?"
	}
	if got := running(); got != "1" {
		t.Fatalf("worker running %s while the client reads its first token", got)
	}
	resp.Body.Close()
	testutil.Eventually(t, 5*time.Second, "the worker to drop the abandoned stream", func() bool { return running() == "0" })
}

// A worker that refuses connections costs retries, never failed requests, and is ejected.
func TestRetryAndEjection(t *testing.T) {
	cl := startCluster(t, 2, Config{})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there any more
	// Find an id that makes the dead worker the home of "sql".
	for i := 0; ; i++ {
		id := fmt.Sprintf("dead%d", i)
		cl.r.SetWorker(id, deadAddr, 1)
		if cl.r.ring.Candidates("sql", nil)[0] == id {
			break
		}
		cl.r.RemoveWorker(id)
	}
	for i := range 10 {
		if status, body, w := cl.complete(t, map[string]any{"model": "sql", "prompt": "x", "max_tokens": 2}); status != http.StatusOK || strings.HasPrefix(w, "dead") {
			t.Fatalf("request %d: %d %s from %q", i, status, body, w)
		}
	}
	var ejected bool
	for _, w := range clusterState(t, cl) {
		if strings.HasPrefix(w.ID, "dead") {
			ejected = w.Ejected
		}
	}
	if !ejected {
		t.Errorf("the dead worker is not ejected after repeated failures")
	}
}

func clusterState(t *testing.T, cl *cluster) []ClusterWorker {
	t.Helper()
	resp, err := http.Get(cl.url + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Workers []ClusterWorker }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Workers
}

func TestWarmAdapterPreferred(t *testing.T) {
	cl := startCluster(t, 3, Config{})
	home := cl.r.ring.Candidates("chat", nil)
	cl.r.Report(home[2], 0, []string{"chat"}, false) // resident only on its third choice
	if _, _, w := cl.complete(t, map[string]any{"model": "chat", "prompt": "x", "max_tokens": 2}); w != home[2] {
		t.Errorf("chat went to %s, but only %s has it resident (ring order %v)", w, home[2], home)
	}
	cl.r.Report(home[2], 0, nil, true) // draining: never picked
	if _, _, w := cl.complete(t, map[string]any{"model": "chat", "prompt": "x", "max_tokens": 2}); w != home[0] {
		t.Errorf("with no warm worker chat went to %s, want its home %s", w, home[0])
	}
}

func TestTenants(t *testing.T) {
	tenants, err := NewTenants([]TenantSpec{
		{Name: "acme", KeySHA256: HashKey("acme-key"), Adapters: []string{"sql", "t*"}, RequestsPerMinute: 3},
		{Name: "open", KeySHA256: HashKey("open-key"), Concurrency: 1},
		{Name: "tokens", KeySHA256: HashKey("tokens-key"), TokensPerMinute: 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	cl := startCluster(t, 1, Config{Tenants: tenants})
	req := func(model, key string) (int, []byte, http.Header) {
		resp, err := post(cl.url+"/v1/completions", map[string]any{"model": model, "prompt": "x", "max_tokens": 2}, "Authorization", "Bearer "+key)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header
	}
	if s, b, _ := req("sql", ""); s != http.StatusUnauthorized {
		t.Errorf("no key: %d %s", s, b)
	}
	if s, b, _ := req("sql", "wrong"); s != http.StatusUnauthorized {
		t.Errorf("bad key: %d %s", s, b)
	}
	// An adapter outside the allow-list looks exactly like one that does not exist, even
	// while another tenant keeps it resident.
	if s, b, _ := req("chat", "open-key"); s != http.StatusOK {
		t.Fatalf("chat for open: %d %s", s, b)
	}
	s1, hidden, _ := req("chat", "acme-key")
	s2, missing, _ := req("no-such", "open-key")
	if s1 != http.StatusNotFound || s2 != http.StatusNotFound ||
		string(hidden) != strings.ReplaceAll(string(missing), "no-such", "chat") {
		t.Errorf("disallowed: %d %s; missing: %d %s", s1, hidden, s2, missing)
	}
	if s, b, _ := req("sql", "acme-key"); s != http.StatusOK {
		t.Errorf("allowed: %d %s", s, b)
	}
	if s, b, _ := req("tiny", "acme-key"); s != http.StatusOK {
		t.Errorf("allowed by pattern: %d %s", s, b)
	}
	if s, b, _ := req("sql", "acme-key"); s != http.StatusOK {
		t.Errorf("third request: %d %s", s, b)
	}
	// acme has used its 3 requests a minute (the refused one cost nothing).
	if s, b, h := req("sql", "acme-key"); s != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("over the rate: %d %s (Retry-After %q)", s, b, h.Get("Retry-After"))
	}
	// Tokens per minute: max_tokens is charged up front.
	tokens := func(n int) int {
		resp, err := post(cl.url+"/v1/completions", map[string]any{"model": "sql", "prompt": "x", "max_tokens": n}, "Authorization", "Bearer tokens-key")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := tokens(8), tokens(8); a != http.StatusOK || b != http.StatusTooManyRequests {
		t.Errorf("8 then 8 tokens against 10 a minute: %d, %d", a, b)
	}
	// Concurrency 1: a second request while a stream is open is refused.
	resp, err := post(cl.url+"/v1/completions", map[string]any{"model": "sql", "prompt": "x", "max_tokens": 300, "ignore_eos": true, "stream": true}, "Authorization", "Bearer open-key")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if s, b, _ := req("sql", "open-key"); s != http.StatusTooManyRequests {
		t.Errorf("over concurrency: %d %s", s, b)
	}
}

// A stream whose worker dies mid-generation ends with an error event, not a hang.
func TestWorkerDyingMidStream(t *testing.T) {
	cl := startCluster(t, 1, Config{})
	// Put a cuttable TCP relay between the router and the worker.
	relay := newRelay(t, strings.TrimPrefix(cl.workers["w0"], "http://"))
	cl.r.SetWorker("w0", relay.addr, 1)
	resp, r := cl.openStream(t, "sql", true)
	defer resp.Body.Close()
	relay.cut()
	done := make(chan string, 1)
	go func() {
		rest, _ := io.ReadAll(r)
		done <- string(rest)
	}()
	select {
	case rest := <-done:
		if !strings.Contains(rest, `"error"`) || !strings.HasSuffix(rest, "data: [DONE]\n\n") {
			t.Errorf("cut stream ended with ...%q", rest[max(0, len(rest)-200):])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client hangs after its worker died")
	}
}

// relay forwards TCP connections to a target until cut.
type relay struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

func newRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rl := &relay{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			rl.mu.Lock()
			rl.conns = append(rl.conns, c, u)
			rl.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return rl
}

func (rl *relay) cut() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for _, c := range rl.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, as when a process dies
		}
		c.Close()
	}
}

// Workers found by gossip: the router learns them from membership, routes to them, and drops
// one that leaves.
func TestWorkersFoundByGossip(t *testing.T) {
	r, self := gossipRouter(t)
	stops := map[string]context.CancelFunc{}
	for _, name := range []string{"wa", "wb"} {
		w := newWorker(t, gossip(name, self))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Serve(ctx, ln) }()
		stops[name] = cancel
		t.Cleanup(func() { cancel(); <-done })
	}
	url := "http://" + serve(t, r.Serve)
	testutil.Eventually(t, 10*time.Second, "both workers in the ring", func() bool { return len(r.ring.Loads()) == 2 })
	cl := &cluster{r: r, url: url}
	if status, body, w := cl.complete(t, map[string]any{"model": "sql", "prompt": "x", "max_tokens": 2}); status != http.StatusOK || w == "" {
		t.Fatalf("%d %s", status, body)
	}
	stops["wa"]()
	testutil.Eventually(t, 10*time.Second, "the stopped worker to leave the ring", func() bool {
		l := r.ring.Loads()
		return len(l) == 1 && l[0].ID == "wb"
	})
	if status, body, w := cl.complete(t, map[string]any{"model": "sql", "prompt": "x", "max_tokens": 2}); status != http.StatusOK || w != "wb" {
		t.Fatalf("after wa left: %d %s from %s", status, body, w)
	}
}

func TestModelsMergedAndAdminBroadcast(t *testing.T) {
	tenants, err := NewTenants([]TenantSpec{
		{Name: "acme", KeySHA256: HashKey("acme-key"), Adapters: []string{"sql", "t*", "mine"}},
		{Name: "all", KeySHA256: HashKey("all-key")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cl := startClusterWith(t, 2, Config{Tenants: tenants, AdminToken: "adm"}, func(c *worker.Config) { c.AdminToken = "adm" })
	models := func(key string) []string {
		req, _ := http.NewRequest(http.MethodGet, cl.url+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l struct{ Data []struct{ ID string } }
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range l.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := strings.Join(models("all-key"), ","); got != "chat,sql,tiny,tiny-llama" {
		t.Errorf("models for an unrestricted tenant: %s", got)
	}
	if got := strings.Join(models("acme-key"), ","); got != "sql,tiny" {
		t.Errorf("models for acme: %s", got)
	}
	load := map[string]any{"lora_name": "mine", "lora_path": "sql"}
	if resp, err := post(cl.url+"/v1/load_lora_adapter", load, "Authorization", "Bearer wrong"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong admin token: %v %v", resp, err)
	}
	resp, err := post(cl.url+"/v1/load_lora_adapter", load, "Authorization", "Bearer adm")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin load: %v %v", resp, err)
	}
	resp.Body.Close()
	for w, url := range cl.workers { // every worker has it now
		resp, err := post(url+"/v1/completions", map[string]any{"model": "mine", "prompt": "x", "max_tokens": 2})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("worker %s after the broadcast load: %v %v", w, resp, err)
		}
	}
	if got := strings.Join(models("acme-key"), ","); got != "mine,sql,tiny" {
		t.Errorf("models for acme after the load: %s", got)
	}
}

// holdRequests sends n concurrent requests for one adapter whose hub download stalls, so all
// stay in flight, and returns how many each of three workers holds.
func holdRequests(t *testing.T, cfg Config, n int64) map[string]int64 {
	t.Helper()
	stop := make(chan struct{})
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-stop
	}))
	defer hub.Close()
	var wg sync.WaitGroup
	defer wg.Wait() // after release (deferred below, so it runs first)
	var once sync.Once
	release := func() { once.Do(func() { close(stop) }) }
	defer release()
	cl := startClusterWith(t, 3, cfg, func(c *worker.Config) {
		c.HubEndpoint, c.HubCacheDir, c.HubIdleTimeout = hub.URL, t.TempDir(), time.Minute
	})
	for range n {
		wg.Go(func() {
			if resp, err := post(cl.url+"/v1/completions", map[string]any{"model": "hf://org/hot", "prompt": "x", "max_tokens": 2}); err == nil {
				resp.Body.Close()
			}
		})
	}
	var loads map[string]int64
	testutil.Eventually(t, 10*time.Second, "all requests in flight", func() bool {
		loads = map[string]int64{}
		var total int64
		for _, w := range clusterState(t, cl) {
			loads[w.ID] = w.InFlight
			total += w.InFlight
		}
		return total == n
	})
	release()
	return loads
}

// The comparison policies place as their names say.
func TestPolicies(t *testing.T) {
	if loads := holdRequests(t, Config{Policy: PolicyConsistent}, 9); len(nonZero(loads)) != 1 {
		t.Errorf("consistent hashing without a bound spread one adapter: %v", loads)
	}
	if loads := holdRequests(t, Config{Policy: PolicyLeastLoaded}, 9); loads["w0"] != 3 || loads["w1"] != 3 || loads["w2"] != 3 {
		t.Errorf("least-loaded: %v", loads)
	}
	if loads := holdRequests(t, Config{Policy: PolicyRoundRobin}, 9); loads["w0"] != 3 || loads["w1"] != 3 || loads["w2"] != 3 {
		t.Errorf("round-robin: %v", loads)
	}
	if loads := holdRequests(t, Config{Policy: PolicyRandom}, 30); len(nonZero(loads)) < 2 {
		t.Errorf("random: %v", loads)
	}
	if _, err := New(Config{Policy: "fastest"}); err == nil {
		t.Error("unknown policy accepted")
	}
}
