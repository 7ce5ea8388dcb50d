package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/bench/engine"
)

// A run's engine.json reported again with a PEFT baseline measured after it keeps the run's
// measurements and adds the baseline's table and verdicts.
func TestBenchEngineReportAgain(t *testing.T) {
	dir := t.TempDir()
	first := tinyBench(t, dir, "--backend", "cpu", "--batches", "2", "--adapters", "1", "--contexts", "8", "--steps", "2",
		"--warmup", "1", "--prefill-prompt", "16", "--prefill-seqs", "1")
	peft := filepath.Join(dir, "peft.json")
	baseline := `{"device": "test", "batch": 2, "prompt": 8, "new_tokens": 4, "cases": [{"case": "base", "adapters": 0, "tokens_per_s": 10}]}`
	if err := os.WriteFile(peft, []byte(baseline), 0o644); err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(dir, "again")
	stdout, stderr, code := lorafleet(t, "", "bench", "engine", "--report", filepath.Join(dir, "engine.json"), "--peft", peft, "--out", again)
	if code != 0 {
		t.Fatalf("bench engine --report: exit %d: %s", code, stderr)
	}
	second := readReport(t, filepath.Join(again, "engine.json"))
	if len(second.Decode) != len(first.Decode) || second.Decode[0] != first.Decode[0] || second.Prefill != first.Prefill {
		t.Errorf("measurements changed: %+v, then %+v", first.Decode, second.Decode)
	}
	if first.PEFT != nil || second.PEFT == nil || second.PEFT.Cases[0].TokensPerS != 10 {
		t.Errorf("PEFT before %+v, after %+v", first.PEFT, second.PEFT)
	}
	md, err := os.ReadFile(filepath.Join(again, "engine.md"))
	if err != nil || string(md) != stdout || !strings.Contains(stdout, "| none (base model) | 10.0 |") {
		t.Errorf("engine.md (%v) and stdout differ or lack the PEFT row:\n%s", err, stdout)
	}
	if _, _, code := lorafleet(t, "", "bench", "engine", "--report", peft); code == 0 {
		t.Error("a report that is not engine.json was accepted")
	}
}

// tinyBenchArgs are `bench engine`'s arguments on the tiny Llama's shape, flags after.
func tinyBenchArgs(flags ...string) []string {
	return append([]string{"bench", "engine", "--shape", "../../testdata/tiny-llama/model/config.json"}, flags...)
}

// tinyBench runs `bench engine` on the tiny Llama's shape with flags, writing into dir, and
// returns its report.
func tinyBench(t *testing.T, dir string, flags ...string) *engine.Report {
	t.Helper()
	if _, stderr, code := lorafleet(t, "", tinyBenchArgs(append(flags, "--out", dir)...)...); code != 0 {
		t.Fatalf("bench engine %v: exit %d: %s", flags, code, stderr)
	}
	return readReport(t, filepath.Join(dir, "engine.json"))
}

func readReport(t *testing.T, path string) *engine.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rep := new(engine.Report)
	if err := json.Unmarshal(b, rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// --winners reads an earlier run's report and prints the settings whose variants won, for
// --with; --with runs the defaults' rows alone with those settings, and refuses unknown ones.
func TestBenchEngineWinnersAndWith(t *testing.T) {
	dir := t.TempDir()
	report := filepath.Join(dir, "engine.json")
	rows := `{"decode": [
		{"variant": "lora", "batch": 32, "adapters": 32, "context": 128, "step_ms": 8.36},
		{"variant": "lora, lean GEMMs beside LoRA blocks", "batch": 32, "adapters": 32, "context": 128, "step_ms": 8.01},
		{"variant": "lora, GEMMs one block an SM", "batch": 32, "adapters": 32, "context": 128, "step_ms": 8.2},
		{"variant": "lora", "batch": 128, "adapters": 32, "context": 128, "step_ms": 12.64},
		{"variant": "lora, cuBLAS GEMMs timed", "batch": 128, "adapters": 32, "context": 128, "step_ms": 12.7}]}`
	if err := os.WriteFile(report, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := lorafleet(t, "", "bench", "engine", "--report", report, "--winners")
	if code != 0 || stdout != "lean\n" {
		t.Errorf("--winners: exit %d, stdout %q (want \"lean\\n\"): %s", code, stdout, stderr)
	}
	if _, _, code := lorafleet(t, "", "bench", "engine", "--winners"); code == 0 {
		t.Error("--winners without --report was accepted")
	}
	if _, _, code := lorafleet(t, "", "bench", "engine", "--report", report, "--with", "lean"); code == 0 {
		t.Error("--with beside --report was accepted")
	}
	args := tinyBenchArgs("--backend", "cpu", "--batches", "2", "--adapters", "1", "--contexts", "8", "--steps", "1", "--warmup", "0",
		"--prefill-prompt", "8", "--prefill-seqs", "1")
	if _, stderr, code := lorafleet(t, "", append(args, "--with", "lean,fast")...); code == 0 || !strings.Contains(stderr, `no setting "fast"`) {
		t.Errorf("--with lean,fast: exit %d: %s", code, stderr)
	}
	if _, stderr, code := lorafleet(t, "", append(args, "--with", "lean")...); code == 0 || !strings.Contains(stderr, `no setting "lean"`) {
		t.Errorf("--with lean on the CPU backend, which has no such setting: exit %d: %s", code, stderr)
	}
}
