package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lorafleet/lorafleet/internal/golden"
)

const adminToken = "test-admin-token"

// testWorker is a worker serving on loopback, with the golden set's adapters copied into a
// temporary adapters directory (so tests can add broken ones next to them).
type testWorker struct {
	*Worker
	url    string
	golden *golden.File
	root   string // adapters directory
	stop   func() error
}

func startWorker(t testing.TB, set string, mod func(*Config)) *testWorker {
	t.Helper()
	gf, err := golden.Load(set)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, name := range gf.Adapters() {
		copyDir(t, gf.AdapterDir(name), filepath.Join(root, name))
	}
	cfg := Config{ModelDir: gf.ModelDir(), AdaptersDir: root, ModelName: set, AdminToken: adminToken, HubCacheDir: t.TempDir(), Threads: 2}
	if mod != nil {
		mod(&cfg)
	}
	w, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- w.Serve(ctx, ln) }()
	var stopped bool
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-served
		}
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testWorker{Worker: w, url: "http://" + ln.Addr().String(), golden: gf, root: root, stop: stop}
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// post sends a JSON body (a string is sent as is) and returns the status, body and headers.
func (tw *testWorker) post(t *testing.T, path string, body any, headers ...string) (int, []byte, http.Header) {
	t.Helper()
	status, out, hdr, err := tw.do(path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return status, out, hdr
}

// do is post for goroutines other than the test's: it returns errors instead of failing.
func (tw *testWorker) do(path string, body any, headers ...string) (int, []byte, http.Header, error) {
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return 0, nil, nil, err
		}
	}
	req, err := http.NewRequest(http.MethodPost, tw.url+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header, err
}

func (tw *testWorker) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(tw.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// expectedText is what greedy decoding of a golden case must produce with at most n tokens:
// the golden continuation, cut at the first EOS, detokenized without special tokens.
func (tw *testWorker) expectedText(c golden.Case, n int) (text string, finish string) {
	ids := c.Greedy[:min(n, len(c.Greedy))]
	finish = "length"
	for i, id := range ids {
		if slices.Contains(tw.eos, id) {
			ids, finish = ids[:i+1], "stop"
			break
		}
	}
	return tw.tok.Decode(ids, true), finish
}

// modelName is the request's model for a golden case: the adapter, or the base model.
func (tw *testWorker) modelName(c golden.Case) string {
	if c.Adapter == "" {
		return tw.cfg.ModelName
	}
	return c.Adapter
}

// completionText is choices[0].text of a /v1/completions response body.
func completionText(t *testing.T, body []byte) string {
	t.Helper()
	var r struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &r); err != nil || len(r.Choices) != 1 {
		t.Fatalf("not a one-choice completion (%v): %s", err, body)
	}
	return r.Choices[0].Text
}

// containsJSON reports whether body's "data" list has an object with all of want's fields.
func containsJSON(t *testing.T, body []byte, want map[string]any) bool {
	t.Helper()
	var r struct {
		Data []map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, obj := range r.Data {
		match := true
		for k, v := range want {
			match = match && obj[k] == v
		}
		if match {
			return true
		}
	}
	return false
}
