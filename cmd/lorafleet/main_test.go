package main

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/pkg/tokenizer"
)

// lorafleet runs the command in-process with the given stdin.
func lorafleet(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut})
	return out.String(), errOut.String(), code
}

func idList(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}

func loadGolden(t *testing.T, set string) *golden.File {
	t.Helper()
	g, err := golden.Load(set)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func decodeLogits(t *testing.T, stdout string) [][]float64 {
	t.Helper()
	var got struct{ Logits [][]float64 }
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not {\"logits\": [[...]]}: %v\n%s", err, stdout[:min(200, len(stdout))])
	}
	return got.Logits
}

func maxAbsDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func TestLogitsCommand(t *testing.T) {
	for _, set := range golden.Sets {
		g := loadGolden(t, set)
		for _, c := range g.FullLogits {
			args := []string{"logits", "--model", g.ModelDir(), "--ids", idList(c.PromptIDs)}
			if c.Adapter != "" {
				args = append(args, "--adapter", g.AdapterDir(c.Adapter))
			}
			stdout, stderr, code := lorafleet(t, "", args...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, stderr)
			}
			last := decodeLogits(t, stdout)
			if len(last) != 1 || maxAbsDiff(last[0], c.Logits[len(c.Logits)-1]) > 1e-3 {
				t.Errorf("%s %q: last-position logits differ from the reference", set, c.Adapter)
			}
			stdout, _, _ = lorafleet(t, "", append(args, "--all-positions")...)
			all := decodeLogits(t, stdout)
			if len(all) != len(c.Logits) {
				t.Fatalf("%s %q: %d rows with --all-positions, want %d", set, c.Adapter, len(all), len(c.Logits))
			}
			for pos := range all {
				if d := maxAbsDiff(all[pos], c.Logits[pos]); d > 1e-3 {
					t.Errorf("%s %q position %d: logits differ by %.3g", set, c.Adapter, pos, d)
				}
			}
		}
	}
}

func TestTokenizeCommand(t *testing.T) {
	for _, set := range golden.Sets {
		g := loadGolden(t, set)
		for _, c := range g.TokenizerCases {
			for _, special := range []bool{true, false} {
				args, want := []string{"tokenize", "--model", g.ModelDir()}, c.IDs
				if !special {
					args, want = append(args, "--no-special"), c.IDsNoSpecial
				}
				stdout, stderr, code := lorafleet(t, c.Text, args...)
				var got struct{ IDs []int }
				if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil {
					t.Fatalf("%v on %q: exit %d, %s%s", args, c.Text, code, stdout, stderr)
				}
				if idList(got.IDs) != idList(want) || got.IDs == nil {
					t.Errorf("%s %q special=%v: ids %v, want %v", set, c.Text, special, got.IDs, want)
				}
			}
		}
	}
}

// TestGenerateCommand checks greedy generation from prompt text against the reference
// continuation, for cases whose first 12 tokens contain no EOS (the CLI stops there).
func TestGenerateCommand(t *testing.T) {
	for _, set := range golden.Sets {
		g := loadGolden(t, set)
		tok, err := tokenizer.Load(g.ModelDir())
		if err != nil {
			t.Fatal(err)
		}
		tested := 0
		for _, c := range g.Cases {
			if slices.Contains(c.Greedy, 5) || tested == 3 { // 5 is both models' EOS
				continue
			}
			tested++
			args := []string{"generate", "--model", g.ModelDir(), "--prompt", c.Prompt, "--max-tokens", strconv.Itoa(len(c.Greedy))}
			if c.Adapter != "" {
				args = append(args, "--adapter", g.AdapterDir(c.Adapter))
			}
			stdout, stderr, code := lorafleet(t, "", args...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, stderr)
			}
			if want := tok.Decode(c.Greedy, true) + "\n"; stdout != want {
				t.Errorf("%s %q %q: generated %q, want %q", set, c.Adapter, c.Prompt, stdout, want)
			}
		}
		if tested == 0 {
			t.Fatalf("%s: no golden case without EOS to compare", set)
		}
	}
}

func TestGenerateSeedIsReproducible(t *testing.T) {
	g := loadGolden(t, "tiny-qwen2")
	args := []string{"generate", "--model", g.ModelDir(), "--prompt", "hello", "--max-tokens", "16", "--temperature", "1.0", "--seed", "42"}
	a, _, code1 := lorafleet(t, "", args...)
	b, _, code2 := lorafleet(t, "", args...)
	args[len(args)-1] = "43"
	c, _, _ := lorafleet(t, "", args...)
	if code1 != 0 || code2 != 0 || a != b {
		t.Fatalf("same seed, different output: %q vs %q", a, b)
	}
	if a == c {
		t.Errorf("seeds 42 and 43 gave the same 16 sampled tokens %q", a)
	}
}

func TestCommandErrors(t *testing.T) {
	g := loadGolden(t, "tiny-llama")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"logits", "--ids", "1"}, 2, "--model is required"},
		{[]string{"logits", "--model", g.ModelDir(), "--ids", "1,x"}, 1, "not a token id"},
		{[]string{"logits", "--model", g.ModelDir(), "--ids", "1,99999"}, 1, "outside the vocabulary"},
		{[]string{"logits", "--model", "/nonexistent", "--ids", "1"}, 1, "no such file"},
		{[]string{"logits", "--model", g.ModelDir(), "--adapter", g.ModelDir(), "--ids", "1"}, 1, "adapter"},
		{[]string{"generate", "--model", g.ModelDir(), "--prompt", "x", "--temperature", "9"}, 1, "temperature"},
		{[]string{"generate", "--model", g.ModelDir(), "--prompt", "x", "--max-tokens", "0"}, 1, "max-tokens"},
		{[]string{"tokenize", "--model", g.ModelDir(), "extra"}, 2, "unexpected argument"},
		{[]string{"tokenize", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"bench", "routing", "--policies", "consistent:1.2"}, 1, "only bounded takes a balance factor"},
		{[]string{"bench", "routing", "--zipf", "one"}, 1, "--zipf"},
		{[]string{"bench", "routing", "--policies", "bounded,fastest"}, 1, "fastest"},
		{[]string{"bench", "engine", "--backend", "tpu"}, 1, "neither cpu nor cuda"},
		{[]string{"bench", "engine", "--batches", "1,x"}, 1, "--batches"},
		{[]string{"bench", "engine", "--shape", g.ModelDir() + "/config.json", "--contexts", "100000"}, 1, "positions"},
	} {
		_, stderr, code := lorafleet(t, "", c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.msg)
		}
	}
	for name := range commands {
		_, stderr, code := lorafleet(t, "", name, "--help")
		if code != 0 || !strings.Contains(stderr, "usage: lorafleet "+name) {
			t.Errorf("%s --help: exit %d, stderr %q", name, code, stderr)
		}
	}
	for _, sub := range []string{"load", "routing", "engine"} {
		if _, stderr, code := lorafleet(t, "", "bench", sub, "--help"); code != 0 || !strings.Contains(stderr, "usage: lorafleet bench "+sub) {
			t.Errorf("bench %s --help: exit %d, stderr %q", sub, code, stderr)
		}
	}
	if _, stderr, code := lorafleet(t, "\xff\xfe", "tokenize", "--model", g.ModelDir()); code != 1 || !strings.Contains(stderr, "UTF-8") {
		t.Errorf("invalid UTF-8 on stdin: exit %d, %q", code, stderr)
	}
}
