package worker

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// brokenAdapters writes adapters that must be refused into the worker's adapters directory.
func brokenAdapters(t *testing.T, tw *testWorker) {
	t.Helper()
	src := tw.golden.AdapterDir("sql")
	st := filepath.Join(src, "adapter_model.safetensors")
	data, err := os.ReadFile(st)
	if err != nil {
		t.Fatal(err)
	}
	writeAdapter := func(name string, files map[string][]byte) {
		dir := filepath.Join(tw.root, name)
		copyDir(t, src, dir)
		for f, b := range files {
			if b == nil {
				if err := os.Remove(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeAdapter("truncated", map[string][]byte{"adapter_model.safetensors": data[:len(data)/2]})
	writeAdapter("overlapping", map[string][]byte{"adapter_model.safetensors": overlapOffsets(t, data)})
	writeAdapter("pickle-only", map[string][]byte{"adapter_model.safetensors": nil, "adapter_model.bin": []byte("\x80\x02}q\x00.")})
	// Qwen2's "support" adapter has rank 8, within the limit: only its shapes are wrong here.
	copyDir(t, filepath.Join(tw.golden.Dir, "..", "tiny-qwen2", "adapters", "support"), filepath.Join(tw.root, "other-base"))
}

// overlapOffsets rewrites a safetensors header so that two same-shaped tensors share bytes.
func overlapOffsets(t *testing.T, data []byte) []byte {
	t.Helper()
	n := binary.LittleEndian.Uint64(data[:8])
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	type entry struct {
		DType   string   `json:"dtype"`
		Shape   []int    `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	byShape := map[string]string{}
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		key, _ := json.Marshal(e.Shape)
		if prev, ok := byShape[string(key)]; ok {
			var p entry
			_ = json.Unmarshal(hdr[prev], &p)
			e.Offsets = p.Offsets
			hdr[name], _ = json.Marshal(e)
			out, _ := json.Marshal(hdr)
			res := binary.LittleEndian.AppendUint64(nil, uint64(len(out)))
			return append(append(res, out...), data[8+n:]...)
		}
		byShape[string(key)] = name
	}
	t.Fatal("no two tensors of the same shape")
	return nil
}

// stallingHub answers hub requests with headers and then nothing until release is called.
func stallingHub(t *testing.T) (url string, release func()) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-stop
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(stop) }) }
	t.Cleanup(func() { release(); srv.Close() })
	return srv.URL, release
}

func TestBadRequestsGetClearErrorsAndServingContinues(t *testing.T) {
	hub, _ := stallingHub(t)
	tw := startWorker(t, "tiny-llama", func(c *Config) {
		c.MaxLoRARank = 8 // chat has rank 16
		c.HubEndpoint, c.HubIdleTimeout = hub, 200*time.Millisecond
	})
	brokenAdapters(t, tw)
	good := map[string]any{"model": "sql", "prompt": "SELECT", "max_tokens": 4, "temperature": 0}
	status, body, _ := tw.post(t, "/v1/completions", good)
	if status != http.StatusOK {
		t.Fatalf("good request before: %d %s", status, body)
	}
	wantText := completionText(t, body)
	completion := func(model string, extra string) string {
		return `{"model":"` + model + `","prompt":"SELECT","max_tokens":4` + extra + `}`
	}
	cases := []struct {
		name, body string
		status     int
		msg        string // a substring of the error message
	}{
		{"malformed JSON", `{"model": "sql", "prompt": `, 400, "JSON"},
		{"not an object", `[1,2]`, 400, ""},
		{"wrong type", completion("sql", `,"temperature":"hot"`), 400, "temperature"},
		{"negative max_tokens", `{"model":"sql","prompt":"x","max_tokens":-3}`, 400, "max_tokens"},
		{"huge max_tokens", `{"model":"sql","prompt":"x","max_tokens":1000000000}`, 400, "maximum context length"},
		{"temperature out of range", completion("sql", `,"temperature":7`), 400, "temperature"},
		{"unknown adapter", completion("nope", ""), 404, "does not exist"},
		{"traversal ../x", completion("../x", ""), 400, ""},
		{"traversal /etc", completion("/etc", ""), 400, ""},
		{"traversal a/../../b", completion("a/../../b", ""), 400, ""},
		{"truncated safetensors", completion("truncated", ""), 400, "truncated"},
		{"overlapping offsets", completion("overlapping", ""), 400, "overlap"},
		{"rank above the maximum", completion("chat", ""), 400, "rank"},
		{"another base model", completion("other-base", ""), 400, "shape"},
		{"pickle-only adapter", completion("pickle-only", ""), 400, "safetensors"},
		{"hub fetch stalls", completion("hf://org/stalled", ""), 504, "timed out"},
		{"invalid UTF-8 prompt", "{\"model\":\"sql\",\"prompt\":\"SEL\xff\xfeECT\",\"max_tokens\":4}", 400, "UTF-8"},
		{"n > 1", completion("sql", `,"n":3`), 400, "n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body, _ := tw.post(t, "/v1/completions", c.body)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			var e struct {
				Error struct {
					Message, Type string
				}
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not an OpenAI error body (%v): %s", err, body)
			}
			if !strings.Contains(strings.ToLower(e.Error.Message), strings.ToLower(c.msg)) {
				t.Errorf("message %q does not mention %q", e.Error.Message, c.msg)
			}
			status, body, _ = tw.post(t, "/v1/completions", good)
			if status != http.StatusOK || completionText(t, body) != wantText {
				t.Fatalf("good request after %s: %d %s", c.name, status, body)
			}
		})
	}
}
