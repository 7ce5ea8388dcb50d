package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The worker as users run it: the built binary in its own process, stopped with SIGTERM
// while a stream is in flight. The stream finishes and the process exits 0.
func TestWorkerProcessDrainsOnSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "lorafleet")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	g := loadGolden(t, "tiny-llama")
	cmd := exec.Command(bin, "worker", "--model", g.ModelDir(), "--adapters", filepath.Join(g.Dir, "adapters"),
		"--listen", "127.0.0.1:0", "--hf-cache", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := listenAddr(t, stderr)

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

var listenLine = regexp.MustCompile(`worker listening" addr=(\S+)`)

// listenAddr reads the worker's log until it says where it listens, then keeps draining it.
func listenAddr(t *testing.T, stderr io.Reader) string {
	t.Helper()
	lines := bufio.NewScanner(stderr)
	found := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if m := listenLine.FindStringSubmatch(lines.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case addr := <-found:
		return addr
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never said where it listens")
		return ""
	}
}
