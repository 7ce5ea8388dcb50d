package worker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/testutil"
)

// 64 concurrent greedy requests over three adapters and the base model give exactly the text
// each gives alone: batching, adapter segments and preemption change nothing.
func TestBatchingInvariance(t *testing.T) {
	tw := startWorker(t, "tiny-llama", func(c *Config) { c.Engine.NumBlocks = 96 }) // tight: forces preemption
	models := append([]string{"tiny-llama"}, tw.golden.Adapters()...)
	var reqs []map[string]any
	for i := 0; len(reqs) < 64; i++ {
		c := tw.golden.Cases[i%len(tw.golden.Cases)]
		reqs = append(reqs, map[string]any{
			"model": models[i%len(models)], "prompt": c.Prompt, "max_tokens": 40 + i%17,
			"temperature": 0, "ignore_eos": true,
		})
	}
	alone := make([]string, len(reqs))
	for i, r := range reqs {
		status, body, _ := tw.post(t, "/v1/completions", r)
		if status != http.StatusOK {
			t.Fatalf("alone %d: %d %s", i, status, body)
		}
		alone[i] = completionText(t, body)
	}
	together := make([]string, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			status, body, _, err := tw.do("/v1/completions", r)
			if err != nil || status != http.StatusOK {
				t.Errorf("together %d: %d %s (%v)", i, status, body, err)
				return
			}
			var resp struct{ Choices []struct{ Text string } }
			if err := json.Unmarshal(body, &resp); err != nil || len(resp.Choices) != 1 {
				t.Errorf("together %d: %s", i, body)
				return
			}
			together[i] = resp.Choices[0].Text
		})
	}
	wg.Wait()
	for i := range reqs {
		if together[i] != alone[i] {
			t.Errorf("request %d (%v): batched %q, alone %q", i, reqs[i]["model"], together[i], alone[i])
		}
	}
	if s := tw.loop.Stats(); s.Preemptions == 0 {
		t.Logf("no preemption happened (KV cache large enough); invariance checked without it")
	}
}

// openStream starts a streaming completion and returns its reader once the first token has
// arrived (or, with wait false, once the response headers have).
func (tw *testWorker) openStream(t *testing.T, body map[string]any, wait bool) (*http.Response, *bufio.Reader) {
	t.Helper()
	body["stream"] = true
	resp, r := tw.openStreamAt(t, "/v1/completions", body)
	if wait {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended before a token: %v", err)
			}
			if strings.HasPrefix(line, "data: {") {
				break
			}
		}
	}
	return resp, r
}

// openStreamAt posts body to path and returns the open 200 response.
func (tw *testWorker) openStreamAt(t *testing.T, path string, body map[string]any) (*http.Response, *bufio.Reader) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(tw.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("%s: %d %s", path, resp.StatusCode, msg)
	}
	return resp, bufio.NewReader(resp.Body)
}

func longRequest(model string) map[string]any {
	return map[string]any{"model": model, "prompt": "Once upon a time", "max_tokens": 480, "temperature": 0, "ignore_eos": true}
}

// With the queue full, the next request is refused at once. The queue here is four requests
// waiting for an adapter whose hub download stalls: they stay queued as long as the test wants.
func TestOverloadGets429Fast(t *testing.T) {
	hub, release := stallingHub(t)
	tw := startWorker(t, "tiny-llama", func(c *Config) {
		c.Engine.MaxWaiting = 4
		c.HubEndpoint, c.HubIdleTimeout = hub, time.Minute
	})
	queued := make(chan int, 4)
	for range 4 {
		go func() {
			status, _, _, _ := tw.do("/v1/completions", map[string]any{"model": "hf://org/slow", "prompt": "x", "max_tokens": 2})
			queued <- status
		}()
	}
	testutil.Eventually(t, 5*time.Second, "four waiting requests", func() bool { return tw.loop.Stats().Waiting == 4 })
	start := time.Now()
	status, body, hdr := tw.post(t, "/v1/completions", map[string]any{"model": "sql", "prompt": "x", "max_tokens": 2})
	took := time.Since(start)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("full queue: %d (Retry-After %q) %s", status, hdr.Get("Retry-After"), body)
	}
	t.Logf("429 after %v", took)
	if took > 50*time.Millisecond {
		t.Errorf("429 took %v, want < 50ms", took)
	}
	release()
	for range 4 {
		if status := <-queued; status != http.StatusBadGateway {
			t.Errorf("request whose hub download broke off: %d, want 502", status)
		}
	}
	if status, body, _ := tw.post(t, "/v1/completions", map[string]any{"model": "sql", "prompt": "x", "max_tokens": 2}); status != http.StatusOK {
		t.Fatalf("after the overload: %d %s", status, body)
	}
}

func TestCutStreamsFreeEverything(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	idle := tw.loop.Stats().KVUsage
	models := append([]string{"tiny-llama"}, tw.golden.Adapters()...)
	var resps []*http.Response
	var readers []*bufio.Reader
	start := time.Now()
	for i := range 100 {
		resp, r := tw.openStream(t, longRequest(models[i%len(models)]), false)
		resps, readers = append(resps, resp), append(readers, r)
	}
	// Half are cut after their first token (mid-generation), half whenever they are.
	for i := 0; i < 100; i += 2 {
		for {
			line, err := readers[i].ReadString('\n')
			if err != nil {
				t.Fatalf("stream %d ended before its first token: %v", i, err)
			}
			if strings.HasPrefix(line, "data: {") {
				break
			}
		}
	}
	if s := tw.loop.Stats(); s.Running == 0 {
		t.Fatalf("nothing running when the streams are cut: %+v", s)
	}
	opened := time.Now()
	for _, r := range resps {
		r.Body.Close()
	}
	testutil.Eventually(t, 20*time.Second, "every sequence freed", func() bool {
		s := tw.loop.Stats()
		return s.Running == 0 && s.Waiting == 0 && s.KVUsage == idle
	})
	t.Logf("opened 100 streams in %v, all freed %v after cutting them", opened.Sub(start), time.Since(opened))
	if status, body, _ := tw.post(t, "/v1/completions", map[string]any{"model": "sql", "prompt": "x", "max_tokens": 2}); status != http.StatusOK {
		t.Fatalf("after the disconnects: %d %s", status, body)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestLoadUnloadCyclesDoNotLeak(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	auth := []string{"Authorization", "Bearer " + adminToken}
	cycle := func(i int) {
		status, body, _ := tw.post(t, "/v1/load_lora_adapter", map[string]any{"lora_name": "cyc", "lora_path": "sql"}, auth...)
		if status != http.StatusOK {
			t.Fatalf("load %d: %d %s", i, status, body)
		}
		if status, body, _ = tw.post(t, "/v1/completions", map[string]any{"model": "cyc", "prompt": "x", "max_tokens": 1}); status != http.StatusOK {
			t.Fatalf("generate %d: %d %s", i, status, body)
		}
		if status, body, _ = tw.post(t, "/v1/unload_lora_adapter", map[string]any{"lora_name": "cyc"}, auth...); status != http.StatusOK {
			t.Fatalf("unload %d: %d %s", i, status, body)
		}
	}
	for i := range 20 { // warm up pools and caches
		cycle(i)
	}
	baseHeap, baseHost := heapInUse(), tw.store.Stats().HostBytes
	for i := range 1000 {
		cycle(i)
	}
	testutil.Eventually(t, 5*time.Second, "no adapter left on the device", func() bool {
		s := tw.loop.Stats()
		return s.Resident == 0 && s.DeviceBytes == 0
	})
	if host := tw.store.Stats().HostBytes; host != baseHost {
		t.Errorf("host cache %d bytes after 1000 cycles, %d before", host, baseHost)
	}
	// One leaked adapter per cycle would be 1000 × its size (tens of KB): megabytes.
	if grown := int64(heapInUse()) - int64(baseHeap); grown > 2<<20 {
		t.Errorf("heap grew by %d bytes over 1000 load/unload cycles", grown)
	}
	status, body, _ := tw.post(t, "/v1/completions", map[string]any{"model": "cyc", "prompt": "x", "max_tokens": 1})
	if status != http.StatusNotFound {
		t.Errorf("unloaded adapter still served: %d %s", status, body)
	}
}

func TestAdminNeedsToken(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	body := map[string]any{"lora_name": "x", "lora_path": "sql"}
	if status, b, _ := tw.post(t, "/v1/load_lora_adapter", body); status != http.StatusUnauthorized {
		t.Errorf("no token: %d %s", status, b)
	}
	if status, b, _ := tw.post(t, "/v1/load_lora_adapter", body, "Authorization", "Bearer wrong"); status != http.StatusUnauthorized {
		t.Errorf("wrong token: %d %s", status, b)
	}
	if status, b, _ := tw.post(t, "/v1/load_lora_adapter", map[string]any{"lora_name": "x", "lora_path": "../../etc"}, "Authorization", "Bearer "+adminToken); status != http.StatusBadRequest {
		t.Errorf("traversal path: %d %s", status, b)
	}
}

// readAll reads a stream to its end and returns the data lines.
func readEvents(t *testing.T, r *bufio.Reader) []string {
	t.Helper()
	var evs []string
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, "data: ") {
			evs = append(evs, strings.TrimSpace(strings.TrimPrefix(line, "data: ")))
		}
		if err != nil {
			return evs
		}
	}
}

func TestDrainFinishesInFlight(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	resp, r := tw.openStream(t, longRequest("sql"), true)
	defer resp.Body.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- tw.stop() }()
	testutil.Eventually(t, 5*time.Second, "/readyz to turn 503", func() bool {
		status, _ := tw.get(t, "/readyz")
		return status == http.StatusServiceUnavailable
	})
	if status, body, _ := tw.post(t, "/v1/completions", map[string]any{"model": "sql", "prompt": "x", "max_tokens": 2}); status != http.StatusServiceUnavailable {
		t.Errorf("new request while draining: %d %s", status, body)
	}
	evs := readEvents(t, r)
	if len(evs) == 0 || evs[len(evs)-1] != "[DONE]" || !strings.Contains(evs[len(evs)-2], `"finish_reason":"length"`) {
		t.Errorf("in-flight stream did not finish normally; last events %q", evs[max(0, len(evs)-2):])
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve after drain: %v", err)
	}
}

func TestDrainTimeoutEndsTheRestWithAnError(t *testing.T) {
	tw := startWorker(t, "tiny-llama", func(c *Config) { c.DrainTimeout, c.Engine.MaxRunning = 50*time.Millisecond, 1 })
	var readers []*bufio.Reader
	for range 8 {
		resp, r := tw.openStream(t, longRequest("sql"), false)
		defer resp.Body.Close()
		readers = append(readers, r)
	}
	if err := tw.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	aborted := 0
	for i, r := range readers {
		evs := readEvents(t, r)
		if len(evs) < 2 || evs[len(evs)-1] != "[DONE]" {
			t.Errorf("stream %d did not end with [DONE]: %q", i, evs)
			continue
		}
		if strings.Contains(evs[len(evs)-2], `"error"`) {
			aborted++
			if !strings.Contains(evs[len(evs)-2], "shutting down") {
				t.Errorf("stream %d: error event %s", i, evs[len(evs)-2])
			}
		}
	}
	if aborted == 0 {
		t.Errorf("no stream was aborted by the 50ms drain timeout")
	}
}

// A request whose adapter is still downloading does not hold up anyone else.
func TestSlowAdapterLoadDoesNotStallOthers(t *testing.T) {
	hub, release := stallingHub(t)
	tw := startWorker(t, "tiny-llama", func(c *Config) { c.HubEndpoint, c.HubIdleTimeout = hub, time.Minute })
	slow := make(chan int, 1)
	go func() {
		status, _, _, _ := tw.do("/v1/completions", map[string]any{"model": "hf://org/slow", "prompt": "x", "max_tokens": 2})
		slow <- status
	}()
	testutil.Eventually(t, 5*time.Second, "the slow request to queue", func() bool { return tw.loop.Stats().Waiting == 1 })
	for _, model := range []string{"sql", "chat", "tiny-llama"} {
		if status, body, _ := tw.post(t, "/v1/completions", map[string]any{"model": model, "prompt": "x", "max_tokens": 8}); status != http.StatusOK {
			t.Fatalf("%s while another adapter loads: %d %s", model, status, body)
		}
	}
	select {
	case status := <-slow:
		t.Fatalf("the slow request ended early: %d", status)
	default:
	}
	release()
	if status := <-slow; status != http.StatusBadGateway {
		t.Errorf("slow request after the hub broke off: %d", status)
	}
}
