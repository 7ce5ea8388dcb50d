package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/proc"
)

// The worker as users run it: the built binary in its own process, stopped with SIGTERM
// while a stream is in flight. The stream finishes and the process exits 0.
func TestWorkerProcessDrainsOnSIGTERM(t *testing.T) {
	cmd, addr := startWorkerProcess(t)

	body, _ := json.Marshal(map[string]any{"model": "sql", "prompt": "SELECT", "max_tokens": 200, "temperature": 0, "ignore_eos": true, "stream": true})
	resp, err := http.Post("http://"+addr+"/v1/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for { // up to the first token; lines starting with ':' are SSE comments
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before its first token: %v", err)
		}
		if strings.HasPrefix(line, "data: {") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rest), `"finish_reason":"length"`) || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("the in-flight stream did not finish: ...%s", rest[max(0, len(rest)-300):])
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("worker exited with %v, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not exit after SIGTERM")
	}
}

// Separate processes: two workers and a router in front of them. Each adapter keeps landing on
// one worker, and the base model is served too.
func TestRouterProcessInFrontOfWorkerProcesses(t *testing.T) {
	_, a := startWorkerProcess(t)
	_, b := startWorkerProcess(t)
	_, r := startProcess(t, "router", "router", "--listen", "127.0.0.1:0", "--base-model", "tiny-llama", "--worker", "a="+a, "--worker", "b="+b)
	for _, model := range []string{"sql", "chat", "tiny-llama"} {
		seen := map[string]bool{}
		for range 4 {
			body, _ := json.Marshal(map[string]any{"model": model, "prompt": "SELECT", "max_tokens": 4})
			resp, err := http.Post("http://"+r+"/v1/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"text_completion"`) {
				t.Fatalf("%s through the router: %d %s", model, resp.StatusCode, out)
			}
			seen[resp.Header.Get("X-Lorafleet-Worker")] = true
		}
		if model != "tiny-llama" && len(seen) != 1 {
			t.Errorf("%s went to %v, want one worker", model, seen)
		}
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the lorafleet binary once for the package's tests.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lorafleet-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "lorafleet")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// startProcess runs the binary and returns once its log says where it listens.
func startProcess(t *testing.T, what string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, listenAddr(t, what, stderr)
}

func startWorkerProcess(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	g := loadGolden(t, "tiny-llama")
	return startProcess(t, "worker", "worker", "--model", g.ModelDir(), "--adapters", filepath.Join(g.Dir, "adapters"),
		"--listen", "127.0.0.1:0", "--hf-cache", t.TempDir(), "--model-name", "tiny-llama")
}

// listenAddr reads a process's log until it says where it listens, then keeps draining it.
func listenAddr(t *testing.T, what string, stderr io.Reader) string {
	t.Helper()
	addr, err := proc.ListenAddr(what, stderr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// `lorafleet serve`: NATS, a router and two workers in one process, answering through the
// router; SIGTERM stops all of it cleanly.
func TestServeProcess(t *testing.T) {
	g := loadGolden(t, "tiny-llama")
	cmd, addr := startProcess(t, "router", "serve", "--listen", "127.0.0.1:0", "--workers", "2",
		"--model", g.ModelDir(), "--adapters", filepath.Join(g.Dir, "adapters"))
	workers := map[string]bool{}
	for _, model := range []string{"sql", "chat", "tiny", "model"} {
		body, _ := json.Marshal(map[string]any{"model": model, "prompt": "SELECT", "max_tokens": 4})
		resp, err := http.Post("http://"+addr+"/v1/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", model, resp.StatusCode, out)
		}
		workers[resp.Header.Get("X-Lorafleet-Worker")] = true
	}
	if len(workers) == 0 || workers[""] {
		t.Errorf("answers came from %v", workers)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve exited with %v, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}
