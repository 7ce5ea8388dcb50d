package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/testutil"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
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
